//! cpio: the portable ASCII formats (`odc`, `070707`; `newc` and `crc`,
//! `070701`/`070702`) and the old binary format in either byte order.
//! Regular files only; directories, links and devices are passed over. The
//! archive is read front to back from its blob, one header at a time.

use super::INPUT_BUFFER;
use crate::WalkError;
use crate::walk::{Member, Step, Walker};
use moat_core::Blob;
use std::io::{self, BufReader, Read};

/// Longest member name accepted (PATH_MAX); a longer one is corruption.
const MAX_NAME: u64 = 4096;
const TRAILER: &[u8] = b"TRAILER!!!";
const REGULAR: u64 = 0o100000;
const TYPE_MASK: u64 = 0o170000;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Format {
    Odc,
    Newc,
    BinLe,
    BinBe,
}

impl Format {
    fn of(head: &[u8]) -> Option<Format> {
        if head.starts_with(b"070707") {
            Some(Format::Odc)
        } else if head.starts_with(b"070701") || head.starts_with(b"070702") {
            Some(Format::Newc)
        } else if head.starts_with(&[0xc7, 0x71]) {
            Some(Format::BinLe)
        } else if head.starts_with(&[0x71, 0xc7]) {
            Some(Format::BinBe)
        } else {
            None
        }
    }

    fn header_len(self) -> usize {
        match self {
            Format::Odc => 76,
            Format::Newc => 110,
            Format::BinLe | Format::BinBe => 26,
        }
    }

    /// Name and data are padded to this alignment.
    fn align(self) -> u64 {
        match self {
            Format::Odc => 1,
            Format::Newc => 4,
            Format::BinLe | Format::BinBe => 2,
        }
    }
}

/// What one header says.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Header {
    mode: u64,
    name_len: u64,
    size: u64,
}

fn number(field: &[u8], radix: u32) -> Option<u64> {
    let text = std::str::from_utf8(field).ok()?;
    u64::from_str_radix(text, radix).ok()
}

fn parse_header(format: Format, h: &[u8]) -> Option<Header> {
    match format {
        Format::Odc => {
            if !h.starts_with(b"070707") {
                return None;
            }
            Some(Header {
                mode: number(&h[18..24], 8)?,
                name_len: number(&h[59..65], 8)?,
                size: number(&h[65..76], 8)?,
            })
        }
        Format::Newc => {
            if !(h.starts_with(b"070701") || h.starts_with(b"070702")) {
                return None;
            }
            let field = |i: usize| number(&h[6 + 8 * i..14 + 8 * i], 16);
            Some(Header {
                mode: field(1)?,
                name_len: field(11)?,
                size: field(6)?,
            })
        }
        Format::BinLe | Format::BinBe => {
            let word = |i: usize| {
                let b = [h[2 * i], h[2 * i + 1]];
                u64::from(if format == Format::BinLe {
                    u16::from_le_bytes(b)
                } else {
                    u16::from_be_bytes(b)
                })
            };
            if word(0) != 0o070707 {
                return None;
            }
            Some(Header {
                mode: word(3),
                name_len: word(10),
                size: word(11) << 16 | word(12),
            })
        }
    }
}

/// Whether `head` starts with a whole, sane cpio header and name (the binary
/// magic is only two bytes, so more than the magic is checked).
pub(crate) fn is_cpio(head: &[u8]) -> bool {
    let Some(format) = Format::of(head) else {
        return false;
    };
    let hl = format.header_len();
    let Some(h) = head.get(..hl).and_then(|h| parse_header(format, h)) else {
        return false;
    };
    let Ok(name_len) = usize::try_from(h.name_len) else {
        return false;
    };
    if !(2..=256).contains(&name_len) {
        return false;
    }
    match head.get(hl..hl + name_len) {
        Some(name) => name[name_len - 1] == 0 && !name[..name_len - 1].contains(&0),
        None => false,
    }
}

pub(crate) fn walk<E>(
    w: &mut Walker<'_, E>,
    blob: &Blob,
    location: &str,
    depth: u32,
) -> Result<(), WalkError<E>> {
    let mut r = Counting {
        inner: BufReader::with_capacity(INPUT_BUFFER, blob.reader()),
        pos: 0,
    };
    let mut head = [0u8; 110];
    let Some(format) = Format::of(&blob.head(8).map_err(WalkError::Io)?) else {
        return Ok(());
    };
    loop {
        if w.stopped {
            return Ok(());
        }
        let hl = format.header_len();
        if let Err(e) = r.read_exact(&mut head[..hl]) {
            w.corrupt(location, format!("cpio header: {e}"));
            return Ok(());
        }
        let Some(h) = parse_header(format, &head[..hl]) else {
            w.corrupt(
                location,
                format!("cpio: bad header at offset {}", r.pos - hl as u64),
            );
            return Ok(());
        };
        if h.name_len == 0 || h.name_len > MAX_NAME {
            w.corrupt(location, format!("cpio: name of {} bytes", h.name_len));
            return Ok(());
        }
        let mut raw = vec![0u8; h.name_len as usize];
        if let Err(e) = r.read_exact(&mut raw) {
            w.corrupt(location, format!("cpio name: {e}"));
            return Ok(());
        }
        let name_bytes = raw.split(|&b| b == 0).next().unwrap_or_default();
        if name_bytes == TRAILER {
            return Ok(());
        }
        if let Err(e) = r.pad(format.align()) {
            w.corrupt(location, format!("cpio name: {e}"));
            return Ok(());
        }
        let name = String::from_utf8_lossy(name_bytes).into_owned();
        let mut data = (&mut r).take(h.size);
        if h.mode & TYPE_MASK == REGULAR {
            let step = w.member(
                Member {
                    reader: &mut data,
                    name: &name,
                    stored_size: h.size,
                    declared_size: Some(h.size),
                },
                location,
                depth + 1,
            )?;
            if step != Step::Next {
                return Ok(());
            }
        }
        // What the walker left unread (a member abandoned at a limit, or
        // not a regular file), then the padding.
        let skipped = io::copy(&mut data, &mut io::sink());
        let left = data.limit();
        if let Err(e) = skipped.and_then(|_| {
            if left > 0 {
                Err(io::ErrorKind::UnexpectedEof.into())
            } else {
                r.pad(format.align())
            }
        }) {
            w.corrupt(&format!("{location}>{name}"), format!("cpio data: {e}"));
            return Ok(());
        }
    }
}

/// A reader that knows its offset, for padding.
struct Counting<R> {
    inner: R,
    pos: u64,
}

impl<R: Read> Read for Counting<R> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        let n = self.inner.read(buf)?;
        self.pos += n as u64;
        Ok(n)
    }
}

impl<R: Read> Counting<R> {
    /// Reads up to the next multiple of `align`.
    fn pad(&mut self, align: u64) -> io::Result<()> {
        let skip = (align - self.pos % align) % align;
        let mut buf = [0u8; 4];
        self.read_exact(&mut buf[..skip as usize])
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_whole_sane_headers_are_cpio() {
        // Binary little-endian: magic, then a 6-byte name "a.exe\0".
        let mut bin = Vec::new();
        for word in [0o070707u16, 0, 0, 0o100644, 0, 0, 1, 0, 0, 0, 6, 0, 3] {
            bin.extend_from_slice(&word.to_le_bytes());
        }
        bin.extend_from_slice(b"a.exe\0abc");
        assert!(is_cpio(&bin));
        assert!(!is_cpio(&bin[..30]));
        let mut no_nul = bin.clone();
        no_nul[26 + 5] = b'x';
        assert!(!is_cpio(&no_nul));
        // Two bytes of magic and anything after it are not cpio.
        assert!(!is_cpio(
            b"\xc7\x71 some binary file that happens to start so"
        ));
        assert!(!is_cpio(b"070707 is a number in this text file, nothing more; see the next line for why it is here at all"));
    }
}
