//! ICAP response parsing (the icap engine reading a server's answer): any
//! bytes give a head, "read more" or an error, never a panic; parsed
//! `Encapsulated` offsets are increasing and bounded; threat names are
//! bounded and free of control characters; chunk lines give a size or the
//! last chunk.
#![no_main]

use libfuzzer_sys::fuzz_target;
use moat_icap_client::proto::{
    MAX_HEAD, Options, head_len, http_status, parse_chunk_line, parse_encapsulated, parse_response,
    threats,
};

fuzz_target!(|data: &[u8]| {
    let Ok(Some(n)) = head_len(data) else {
        return;
    };
    assert!(n <= data.len() && n <= MAX_HEAD);
    let Ok(r) = parse_response(&data[..n]) else {
        return;
    };
    for t in threats(&r) {
        assert!(!t.is_empty() && t.chars().count() <= 256);
        assert!(!t.chars().any(char::is_control), "{t:?}");
    }
    let _ = Options::from_response(&r);
    let _ = r.istag();
    let rest = &data[n..];
    if let Some(Ok(enc)) = r.get("encapsulated").map(parse_encapsulated) {
        for h in [enc.req_hdr.clone(), enc.res_hdr.clone()]
            .into_iter()
            .flatten()
        {
            assert!(h.start < h.end && h.end <= enc.body_at);
            if let Some(b) = rest.get(h) {
                let _ = http_status(b);
            }
        }
    }
    for line in rest.split(|b| *b == b'\n').take(64) {
        let line = line.strip_suffix(b"\r").unwrap_or(line);
        if let Ok(Some(size)) = parse_chunk_line(line) {
            assert!(size > 0);
        }
    }
});
