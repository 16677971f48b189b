//! Allow-lists: `.ign`/`.ign2` signature-name lists, read before the
//! signatures they drop (the `.fp`/`.sfp` whole-file hash lists are plain hash
//! tables, see `load`).
//!
//! A line of `.ign2` is `Name` or `Name:MD5`, where MD5 is the digest of the
//! signature's whole line (as in its file, without the line end); an old
//! `.ign` line is `db:line:Name`. As ClamAV does it (libclamav/readdb.c,
//! `cli_loadign`, `cli_chkign`, `cli_signorm`):
//! * a signature name is first normalised: a trailing `.{...}` clause or
//!   `.UNOFFICIAL` suffix is cut, and names shorter than 3 bytes are padded
//!   with spaces to 3 (so are listed names);
//! * a listed name drops the signatures whose normalised name is exactly it
//!   (ClamAV looks names up with its Boyer-Moore matcher anchored at the end
//!   of the name; checked against clamscan 1.4.6: a listed suffix or prefix
//!   of a name does not drop it);
//! * with an MD5, only the signature whose line has that MD5 is dropped.

use md5::{Digest, Md5};
use std::collections::HashMap;

/// Most `:`-separated fields of an `.ign`/`.ign2` line.
const MAX_FIELDS: usize = 3;
/// Shortest listed name (shorter ones are padded with spaces).
const MIN_NAME: usize = 3;

/// Why an `.ign`/`.ign2` line was rejected.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum IgnLineError {
    #[error("more than {MAX_FIELDS} ':'-separated fields")]
    TooManyFields,
    #[error("no signature name")]
    NoName,
    #[error("the MD5 of the signature line must be 32 hex digits")]
    BadMd5,
}

/// The names to drop at load, each with the line MD5s it is restricted to
/// (`None`: any line).
#[derive(Debug, Clone, Default)]
pub(crate) struct IgnSet {
    by_name: HashMap<Box<[u8]>, Vec<Option<[u8; 16]>>>,
    len: usize,
}

fn pad(name: &[u8]) -> Vec<u8> {
    let mut v = name.to_vec();
    while v.len() < MIN_NAME {
        v.push(b' ');
    }
    v
}

/// ClamAV's `cli_signorm`: the name an ignore list is matched against.
fn normalise(name: &[u8]) -> std::borrow::Cow<'_, [u8]> {
    let n = name.len();
    if n > 3 && name.last() == Some(&b'}') {
        match memchr::memmem::find(name, b".{") {
            Some(i) => std::borrow::Cow::Owned(pad(&name[..i])),
            None => std::borrow::Cow::Borrowed(name),
        }
    } else if n > 11 && name.ends_with(b".UNOFFICIAL") {
        std::borrow::Cow::Owned(pad(&name[..n - 11]))
    } else if n < MIN_NAME {
        std::borrow::Cow::Owned(pad(name))
    } else {
        std::borrow::Cow::Borrowed(name)
    }
}

/// The bytes a listed MD5 is computed over: the line without its line end.
fn line_md5(line: &[u8]) -> [u8; 16] {
    let mut end = line.len();
    while end > 0 && matches!(line[end - 1], b'\n' | b'\r') {
        end -= 1;
    }
    Md5::digest(&line[..end]).into()
}

impl IgnSet {
    #[cfg(test)]
    pub(crate) fn is_empty(&self) -> bool {
        self.len == 0
    }

    pub(crate) fn len(&self) -> usize {
        self.len
    }

    /// Add one line of an `.ign`/`.ign2` file (comments and blank lines are
    /// the caller's).
    pub(crate) fn add_line(&mut self, line: &[u8]) -> Result<(), IgnLineError> {
        let fields: Vec<&[u8]> = line.split(|&b| b == b':').collect();
        let (name, md5) = match fields.as_slice() {
            [name] => (*name, None),
            [name, md5] => (*name, Some(*md5)),
            [_, _, name] => (*name, None),
            _ => return Err(IgnLineError::TooManyFields),
        };
        if name.is_empty() {
            return Err(IgnLineError::NoName);
        }
        let line_md5 = match md5 {
            None => None,
            Some(h) => {
                let mut d = [0u8; 16];
                if h.len() != 32 || hex::decode_to_slice(h, &mut d).is_err() {
                    return Err(IgnLineError::BadMd5);
                }
                Some(d)
            }
        };
        self.by_name
            .entry(pad(name).into_boxed_slice())
            .or_default()
            .push(line_md5);
        self.len += 1;
        Ok(())
    }

    /// Whether the signature `name`, read from `line`, is dropped.
    pub(crate) fn ignores(&self, name: &[u8], line: &[u8]) -> bool {
        if self.len == 0 {
            return false;
        }
        let Some(cands) = self.by_name.get(normalise(name).as_ref()) else {
            return false;
        };
        let mut digest = None;
        cands.iter().any(|want| match want {
            None => true,
            Some(want) => digest.get_or_insert_with(|| line_md5(line)) == want,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn set(lines: &[&str]) -> IgnSet {
        let mut s = IgnSet::default();
        for l in lines {
            s.add_line(l.as_bytes()).unwrap();
        }
        s
    }

    #[test]
    fn plain_names_drop_exactly_that_name() {
        let s = set(&["Eicar-Test-Signature"]);
        assert!(s.ignores(b"Eicar-Test-Signature", b"x"));
        assert!(s.ignores(b"Eicar-Test-Signature.UNOFFICIAL", b"x"));
        assert!(s.ignores(b"Eicar-Test-Signature.{3}", b"x"));
        // As clamscan 1.4.6: neither a longer name nor a suffix or prefix.
        assert!(!s.ignores(b"Win.Eicar-Test-Signature", b"x"));
        assert!(!s.ignores(b"Eicar-Test-Signature-2", b"x"));
        assert!(!set(&["Test-Signature"]).ignores(b"Eicar-Test-Signature", b"x"));
        assert!(!set(&["Eicar-Test"]).ignores(b"Eicar-Test-Signature", b"x"));
        assert!(!s.ignores(b"Other", b"x"));
    }

    #[test]
    fn md5_restricts_to_one_signature_line() {
        let line = b"Body.A:0:*:41424344";
        let md5 = hex::encode(Md5::digest(line));
        let s = set(&[&format!("Body.A:{md5}")]);
        assert!(s.ignores(b"Body.A", line));
        assert!(s.ignores(b"Body.A", b"Body.A:0:*:41424344\r\n"));
        assert!(!s.ignores(b"Body.A", b"Body.A:0:*:41424345"));
    }

    #[test]
    fn old_ign_format_and_short_names() {
        let s = set(&["daily.ndb:12:Old.Name", "ab"]);
        assert!(s.ignores(b"Old.Name", b""));
        assert!(s.ignores(b"ab", b""));
        assert!(!s.ignores(b"abc", b""));
        assert!(!s.ignores(b"Trojan.Foo.{7}", b""));
    }

    #[test]
    fn malformed_lines_are_rejected() {
        let mut s = IgnSet::default();
        assert_eq!(s.add_line(b"a:b:c:d"), Err(IgnLineError::TooManyFields));
        assert_eq!(s.add_line(b""), Err(IgnLineError::NoName));
        assert_eq!(s.add_line(b"Name:1234"), Err(IgnLineError::BadMd5));
        assert!(s.is_empty());
    }
}
