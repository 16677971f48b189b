//! Content-type sniffing from the first bytes.

/// How many leading bytes sniffing looks at.
pub const SNIFF_LEN: usize = 8192;

/// A MIME type for `head` (the first bytes of the content).
pub fn content_type(head: &[u8]) -> String {
    if head.is_empty() {
        return "application/x-empty".to_string();
    }
    if let Some(t) = infer::get(head) {
        return t.mime_type().to_string();
    }
    if head.len() > 262 && &head[257..262] == b"ustar" {
        return "application/x-tar".to_string();
    }
    if looks_like_text(head) {
        return "text/plain".to_string();
    }
    "application/octet-stream".to_string()
}

fn looks_like_text(head: &[u8]) -> bool {
    let sample = &head[..head.len().min(4096)];
    match std::str::from_utf8(sample) {
        Ok(s) => !s.contains('\0'),
        // A multi-byte character cut at the end of the sample is still text.
        Err(e) => e.valid_up_to() + 4 >= sample.len() && !sample[..e.valid_up_to()].contains(&0),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sniffs_common_types() {
        assert_eq!(content_type(b""), "application/x-empty");
        assert_eq!(
            content_type(b"PK\x03\x04\x14\x00\x00\x00"),
            "application/zip"
        );
        assert_eq!(
            content_type(&[0x1f, 0x8b, 8, 0, 0, 0, 0, 0]),
            "application/gzip"
        );
        assert_eq!(content_type(b"hello world\n"), "text/plain");
        assert_eq!(
            content_type(&[0u8, 1, 2, 3, 0xff, 0xfe]),
            "application/octet-stream"
        );
    }
}
