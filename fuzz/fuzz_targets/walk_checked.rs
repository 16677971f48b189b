//! The walk both extraction fuzz targets make: tight limits, and the
//! invariants every walk keeps (never a member deeper or larger than
//! allowed, never more members or expanded bytes than the budgets).

use moat_core::Blob;
use moat_extract::{Limits, walk};

pub fn walk_checked(data: Vec<u8>) {
    let limits = Limits {
        max_depth: 4,
        max_members: 64,
        max_expanded_bytes: 8 << 20,
        max_member_size: 4 << 20,
        max_ratio: 100,
        ratio_min_size: 64 << 10,
        spool_threshold: 1 << 20,
        tmp_dir: std::env::temp_dir(),
    };
    let blob = Blob::from_vec(data);
    let result = walk::<std::convert::Infallible>(&blob, "fuzz", &limits, &mut |e| {
        assert!((1..=limits.max_depth).contains(&e.depth));
        assert!(e.data.len() <= limits.max_member_size);
        assert!(e.location.starts_with("fuzz>"));
        Ok(())
    });
    if let Ok(report) = result {
        assert!(report.members <= limits.max_members);
        assert!(report.expanded_bytes <= limits.max_expanded_bytes);
    }
}
