//! Walks arbitrary bytes as a mail message (a header that makes the walker
//! read them as mail, then the fuzzer's bytes) with tight limits. It must
//! never panic, never exceed its limits, and never hand out a member deeper
//! or larger than allowed.
#![no_main]

use libfuzzer_sys::fuzz_target;
use moat_core::Blob;
use moat_extract::{ContainerKind, Limits, detect, walk};

fuzz_target!(|data: &[u8]| {
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
    let mut msg = b"Message-ID: <fuzz@moat>\r\n".to_vec();
    msg.extend_from_slice(data);
    if detect(&msg) != Some(ContainerKind::Mail) {
        return;
    }
    let blob = Blob::from_vec(msg);
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
});
