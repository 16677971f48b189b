//! Container detection by magic bytes.

/// A container format the walker opens.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum ContainerKind {
    Zip,
    Gzip,
    Tar,
    Bzip2,
    Xz,
    Zstd,
    SevenZ,
}

impl ContainerKind {
    pub fn as_str(self) -> &'static str {
        match self {
            ContainerKind::Zip => "zip",
            ContainerKind::Gzip => "gzip",
            ContainerKind::Tar => "tar",
            ContainerKind::Bzip2 => "bzip2",
            ContainerKind::Xz => "xz",
            ContainerKind::Zstd => "zstd",
            ContainerKind::SevenZ => "7z",
        }
    }
}

/// How many leading bytes [`detect`] and [`detect_unsupported_archive`] look at.
pub const HEAD_LEN: usize = 512;

/// The container format of content starting with `head` (give at least
/// [`HEAD_LEN`] bytes when available: tar is recognised by `ustar` at offset 257).
pub fn detect(head: &[u8]) -> Option<ContainerKind> {
    let starts = |m: &[u8]| head.starts_with(m);
    if starts(b"PK\x03\x04") || starts(b"PK\x05\x06") || starts(b"PK\x07\x08") {
        Some(ContainerKind::Zip)
    } else if starts(&[0x1f, 0x8b, 0x08]) {
        Some(ContainerKind::Gzip)
    } else if is_bzip2(head) {
        Some(ContainerKind::Bzip2)
    } else if starts(&[0xfd, b'7', b'z', b'X', b'Z', 0x00]) {
        Some(ContainerKind::Xz)
    } else if starts(&[0x28, 0xb5, 0x2f, 0xfd]) {
        Some(ContainerKind::Zstd)
    } else if starts(&[b'7', b'z', 0xbc, 0xaf, 0x27, 0x1c]) {
        Some(ContainerKind::SevenZ)
    } else if head.get(257..262) == Some(b"ustar") {
        Some(ContainerKind::Tar)
    } else {
        None
    }
}

/// `BZh1`..`BZh9` followed by a block or end-of-stream magic, so that text
/// starting with "BZh9" is not taken for an archive.
fn is_bzip2(head: &[u8]) -> bool {
    const BLOCK: [u8; 6] = [0x31, 0x41, 0x59, 0x26, 0x53, 0x59];
    const END: [u8; 6] = [0x17, 0x72, 0x45, 0x38, 0x50, 0x90];
    head.len() >= 10
        && head.starts_with(b"BZh")
        && (b'1'..=b'9').contains(&head[3])
        && (head[4..10] == BLOCK || head[4..10] == END)
}

/// Archive formats moat recognises but cannot open: `"rar"`.
pub fn detect_unsupported_archive(head: &[u8]) -> Option<&'static str> {
    if head.starts_with(b"Rar!\x1a\x07\x00") || head.starts_with(b"Rar!\x1a\x07\x01\x00") {
        Some("rar")
    } else {
        None
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn magic_bytes() {
        assert_eq!(detect(b"PK\x03\x04rest"), Some(ContainerKind::Zip));
        assert_eq!(detect(b"PK\x05\x06"), Some(ContainerKind::Zip));
        assert_eq!(detect(&[0x1f, 0x8b, 8, 0]), Some(ContainerKind::Gzip));
        assert_eq!(detect(b"\xfd7zXZ\x00"), Some(ContainerKind::Xz));
        assert_eq!(detect(&[0x28, 0xb5, 0x2f, 0xfd]), Some(ContainerKind::Zstd));
        assert_eq!(
            detect(b"BZh91AY&SYxx"),
            Some(ContainerKind::Bzip2),
            "block magic"
        );
        assert_eq!(detect(b"BZh9 is just text"), None);
        let mut tar = vec![0u8; 512];
        tar[257..263].copy_from_slice(b"ustar\0");
        assert_eq!(detect(&tar), Some(ContainerKind::Tar));
        assert_eq!(detect(b"hello"), None);
        assert_eq!(detect(b""), None);
    }

    #[test]
    fn unsupported_magic() {
        assert_eq!(
            detect(b"7z\xbc\xaf\x27\x1c\x00\x04"),
            Some(ContainerKind::SevenZ)
        );
        assert_eq!(
            detect_unsupported_archive(b"7z\xbc\xaf\x27\x1c\x00\x04"),
            None
        );
        assert_eq!(detect_unsupported_archive(b"Rar!\x1a\x07\x00"), Some("rar"));
        assert_eq!(
            detect_unsupported_archive(b"Rar!\x1a\x07\x01\x00"),
            Some("rar")
        );
        assert_eq!(detect_unsupported_archive(b"PK\x03\x04"), None);
    }
}
