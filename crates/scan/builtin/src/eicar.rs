//! The EICAR test file, always detected as `Eicar-Test-Signature`.
//!
//! Detected when an object starts with the 68-byte EICAR string: that covers
//! the canonical file (the string, optionally followed by whitespace, at most
//! 128 bytes) and the string as a body match at offset 0.

/// The EICAR anti-virus test string.
pub const EICAR: &[u8; 68] =
    br"X5O!P%@AP[4\PZX54(P^)7CC)7}$EICAR-STANDARD-ANTIVIRUS-TEST-FILE!$H+H*";

/// The signature name reported for EICAR.
pub const EICAR_NAME: &str = "Eicar-Test-Signature";

/// Whether an object whose first bytes are `head` is the EICAR test file.
pub fn is_eicar(head: &[u8]) -> bool {
    head.starts_with(EICAR)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn detects_plain_padded_and_prefixed() {
        assert!(is_eicar(EICAR));
        assert!(is_eicar(&[EICAR.as_slice(), b"  \r\n"].concat()));
        assert!(is_eicar(&[EICAR.as_slice(), b"trailing data"].concat()));
        assert!(!is_eicar(&EICAR[..67]));
        assert!(!is_eicar(&[b" ".as_slice(), EICAR].concat()));
    }
}
