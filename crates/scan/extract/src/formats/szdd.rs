//! SZDD: files compressed by Microsoft's `COMPRESS.EXE` (`setup.ex_`,
//! `driver.sy_`), still found in Windows installation media and driver
//! packages; `expand.exe` restores them. One member: the LZSS-decoded data,
//! as long as the header says (a shorter stream is corruption).

use super::{INPUT_BUFFER, read_byte};
use crate::WalkError;
use crate::walk::{Member, Walker};
use moat_core::Blob;
use std::io::{self, BufReader, Read};

pub(crate) const MAGIC: [u8; 8] = *b"SZDD\x88\xf0\x27\x33";
const HEADER: usize = 14;
const WINDOW: usize = 4096;

/// The magic and compression mode `A`, the only one defined.
pub(crate) fn is_szdd(head: &[u8]) -> bool {
    head.starts_with(&MAGIC) && head.get(8) == Some(&b'A')
}

pub(crate) fn walk<E>(
    w: &mut Walker<'_, E>,
    blob: &Blob,
    location: &str,
    depth: u32,
) -> Result<(), WalkError<E>> {
    let mut input = BufReader::with_capacity(INPUT_BUFFER, blob.reader());
    let mut header = [0u8; HEADER];
    if let Err(e) = input.read_exact(&mut header) {
        w.corrupt(location, format!("szdd header: {e}"));
        return Ok(());
    }
    let size = u32::from_le_bytes([header[10], header[11], header[12], header[13]]);
    // The name's last character, replaced by `_` when compressed.
    let own = location.rsplit(['>', '/']).next().unwrap_or(location);
    let name = match (own.strip_suffix('_'), header[9]) {
        (Some(stem), c) if c.is_ascii_graphic() => format!("{stem}{}", char::from(c)),
        _ => "data".to_string(),
    };
    let mut reader = Lzss {
        input,
        window: [b' '; WINDOW],
        pos: WINDOW - 16,
        flags: 0,
        bits: 0,
        pending: 0,
        from: 0,
        left: u64::from(size),
    };
    w.member(
        Member {
            reader: &mut reader,
            name: &name,
            stored_size: blob.len().saturating_sub(HEADER as u64),
            declared_size: Some(u64::from(size)),
        },
        location,
        depth + 1,
    )?;
    Ok(())
}

/// The LZSS decoder: a 4 KiB window that starts as spaces at 4080; each
/// flag byte governs eight items, a set bit a literal, a clear bit a
/// 12-bit window position and a 4-bit length (plus 3).
struct Lzss<R> {
    input: R,
    window: [u8; WINDOW],
    pos: usize,
    flags: u8,
    bits: u8,
    /// Bytes of the current match still to copy, and where they come from.
    pending: usize,
    from: usize,
    /// Bytes the header promised that are not out yet.
    left: u64,
}

impl<R: Read> Lzss<R> {
    fn emit(&mut self, b: u8) -> u8 {
        self.window[self.pos] = b;
        self.pos = (self.pos + 1) % WINDOW;
        self.left -= 1;
        b
    }
}

impl<R: Read> Read for Lzss<R> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        let mut n = 0;
        while n < buf.len() && self.left > 0 {
            if self.pending > 0 {
                let b = self.window[self.from];
                self.from = (self.from + 1) % WINDOW;
                self.pending -= 1;
                buf[n] = self.emit(b);
                n += 1;
                continue;
            }
            if self.bits == 0 {
                let Some(f) = read_byte(&mut self.input)? else {
                    break;
                };
                self.flags = f;
                self.bits = 8;
            }
            let literal = self.flags & 1 == 1;
            self.flags >>= 1;
            self.bits -= 1;
            if literal {
                let Some(b) = read_byte(&mut self.input)? else {
                    break;
                };
                buf[n] = self.emit(b);
                n += 1;
            } else {
                let (Some(lo), Some(hi)) =
                    (read_byte(&mut self.input)?, read_byte(&mut self.input)?)
                else {
                    break;
                };
                self.from = usize::from(lo) | usize::from(hi & 0xf0) << 4;
                self.pending = usize::from(hi & 0x0f) + 3;
            }
        }
        Ok(n)
    }
}
