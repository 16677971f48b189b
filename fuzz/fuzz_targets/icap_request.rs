//! ICAP request parsing: any bytes give a head, "read more" or a refusal
//! with an ICAP status, never a panic; Encapsulated offsets that parse are
//! increasing and within what was declared; chunk lines give a size or the
//! last chunk.
#![no_main]

use libfuzzer_sys::fuzz_target;
use moat_icap_server::proto::{
    ChunkLine, Method, check_http_head, head_len, line_len, parse_chunk_line, parse_encapsulated,
    parse_head,
};

fuzz_target!(|data: &[u8]| {
    let Ok(Some(n)) = head_len(data, 64 << 10) else {
        return;
    };
    assert!(n <= data.len());
    let mut rest = &data[n..];
    let Ok(head) = parse_head(&data[..n]) else {
        return;
    };
    let _ = head.preview();
    let _ = head.allows_204();
    let Some(v) = head.get("encapsulated") else {
        return;
    };
    let Ok(enc) = parse_encapsulated(v, head.method) else {
        return;
    };
    for r in [enc.req_hdr.clone(), enc.res_hdr.clone()]
        .into_iter()
        .flatten()
    {
        assert!(r.start < r.end && r.end <= enc.body_at);
        if let Some(h) = rest.get(r.clone()) {
            let _ = check_http_head(h, enc.req_hdr.as_ref() == Some(&r));
        }
    }
    if head.method == Method::Options {
        return;
    }
    rest = rest.get(enc.body_at..).unwrap_or_default();
    // Walk the chunks as a session reads them.
    while let Ok(Some(l)) = line_len(rest) {
        match parse_chunk_line(&rest[..l]) {
            Ok(ChunkLine::Data(size)) => {
                assert!(size > 0);
                let skip = (l as u64 + 2).saturating_add(size).saturating_add(2);
                let Ok(skip) = usize::try_from(skip) else {
                    return;
                };
                let Some(r) = rest.get(skip..) else { return };
                rest = r;
            }
            Ok(ChunkLine::Last { .. }) | Err(_) => return,
        }
    }
});
