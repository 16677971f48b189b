//! Walks arbitrary bytes as one of the formats whose start random bytes
//! rarely hit (the first byte picks a prefix that makes the walker read the
//! rest as mail, RTF, an OLE1 object, TNEF, OLE2, SZDD, BinHex, PDF or cpio) with tight limits. It
//! must never panic, never exceed its limits, and never hand out a member
//! deeper or larger than allowed.
#![no_main]

use libfuzzer_sys::fuzz_target;
use moat_core::Blob;
use moat_extract::{Limits, detect, walk};

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
    let Some((&pick, rest)) = data.split_first() else {
        return;
    };
    let prefix: &[u8] = match pick % 9 {
        0 => b"Message-ID: <fuzz@moat>\r\n",
        1 => b"{\\rtf1 ",
        2 => b"\x01\x05\x00\x00\x02\x00\x00\x00",
        3 => b"\x78\x9f\x3e\x22\x01\x00",
        4 => b"\xd0\xcf\x11\xe0\xa1\xb1\x1a\xe1",
        5 => b"SZDD\x88\xf0\x27\x33A\x00",
        6 => b"(This file must be converted with BinHex 4.0)\r\n:",
        7 => b"%PDF-1.7\n",
        _ => b"070701",
    };
    let mut msg = prefix.to_vec();
    msg.extend_from_slice(rest);
    if detect(&msg).is_none() {
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
