//! Parse arbitrary bytes as hdb and hsb lines; check what comes back.
#![no_main]

use libfuzzer_sys::fuzz_target;
use moat_builtin::hashdb::{HashFile, parse_hash_bytes};

fuzz_target!(|data: &[u8]| {
    for file in [HashFile::Hdb, HashFile::Hsb, HashFile::Mdb, HashFile::Imp] {
        if let Ok(p) = parse_hash_bytes(data, file) {
            assert!(!p.name.is_empty());
            assert!(!p.name.contains(&b':'));
            assert!(matches!(p.kind.len(), 16 | 20 | 32));
        }
    }
});
