//! File names: what is stored (a display name, never a path) and what goes
//! into `Content-Disposition`.

/// The last path component, without control characters, at most 255 bytes;
/// `file` when nothing usable is left.
pub fn safe_name(name: &str) -> String {
    let last = name.rsplit(['/', '\\']).next().unwrap_or("");
    let mut s: String = last.chars().filter(|c| !c.is_control()).collect();
    s = s.trim().to_string();
    if s.len() > 255 {
        let mut cut = 255;
        while !s.is_char_boundary(cut) {
            cut -= 1;
        }
        s.truncate(cut);
    }
    if s.is_empty() || s == "." || s == ".." {
        "file".to_string()
    } else {
        s
    }
}

/// `attachment; filename="ascii"; filename*=UTF-8''percent-encoded`: the
/// quoted fallback keeps only safe ASCII, the RFC 5987 form keeps the name.
pub fn content_disposition(name: &str) -> String {
    let name = safe_name(name);
    let ascii: String = name
        .chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() || " .-_()+,".contains(c) {
                c
            } else {
                '_'
            }
        })
        .collect();
    let mut enc = String::new();
    for b in name.bytes() {
        if b.is_ascii_alphanumeric() || b"-._~".contains(&b) {
            enc.push(b as char);
        } else {
            enc.push_str(&format!("%{b:02X}"));
        }
    }
    format!("attachment; filename=\"{ascii}\"; filename*=UTF-8''{enc}")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_lose_paths_and_controls() {
        assert_eq!(safe_name("../../etc/passwd"), "passwd");
        assert_eq!(safe_name("..\\..\\boot.ini"), "boot.ini");
        assert_eq!(safe_name("a\r\nb.txt"), "ab.txt");
        assert_eq!(safe_name(".."), "file");
        assert_eq!(safe_name("dir/"), "file");
        assert_eq!(
            safe_name("<img src=x onerror=alert(1)>.txt"),
            "<img src=x onerror=alert(1)>.txt"
        );
    }

    #[test]
    fn content_disposition_quotes_nothing_dangerous() {
        let h = content_disposition("<img src=x onerror=alert(1)>.txt");
        assert!(
            h.starts_with("attachment; filename=\"_img src_x onerror_alert(1)_.txt\""),
            "{h}"
        );
        assert!(!h[h.find("filename*").unwrap()..].contains('<'));
        let h = content_disposition("a\"b;c.txt");
        assert!(h.contains("filename=\"a_b_c.txt\""), "{h}");
        assert!(http::HeaderValue::from_str(&content_disposition("名前.txt")).is_ok());
    }
}
