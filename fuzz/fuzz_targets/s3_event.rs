//! S3 event notification parser (MinIO envelope and AWS records): any input
//! gives events or a clear error, never a panic.
#![no_main]

use libfuzzer_sys::fuzz_target;
use moat_events::event::{Disposition, Quarantine, parse};

fuzz_target!(|data: &[u8]| {
    let q = Quarantine {
        bucket: None,
        prefix: "quarantine/".into(),
    };
    if let Ok(p) = parse(data, &q) {
        for o in &p.objects {
            assert!(!o.bucket.is_empty());
            assert!(!o.key.is_empty());
            if o.key.starts_with("quarantine/") {
                assert!(matches!(o.disposition, Disposition::Ignore(_)));
            }
        }
    }
});
