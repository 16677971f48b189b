//! Parse arbitrary bytes as an ndb line; when it loads, build the matcher
//! and run it over the same bytes (and over a copy with the hex field
//! decoded, so real matches are exercised too).
#![no_main]

use libfuzzer_sys::fuzz_target;
use moat_builtin::ndb::{NdbSet, compile, parse_ndb_bytes};
use std::time::{Duration, Instant};

fuzz_target!(|data: &[u8]| {
    let Ok(sig) = parse_ndb_bytes(data) else {
        return;
    };
    let Ok(compiled) = compile(sig, 0) else {
        return;
    };
    let set = NdbSet::build(vec![compiled]);
    // Pathological jumps may take long: the deadline bounds them (Timeout is fine).
    let deadline = Some(Instant::now() + Duration::from_millis(200));
    let _ = set.scan_slice(data, deadline);
    let literal: Vec<u8> = data
        .rsplit(|&b| b == b':')
        .next()
        .unwrap_or(&[])
        .chunks(2)
        .filter_map(|p| {
            std::str::from_utf8(p)
                .ok()
                .and_then(|s| u8::from_str_radix(s, 16).ok())
        })
        .collect();
    let _ = set.scan_slice(&literal, deadline);
});
