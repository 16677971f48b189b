//! BinHex 4.0 (`.hqx`): the classic Mac encoding, still used to mail and
//! post Mac files. The text between the first `:` and the next is 6-bit
//! encoded and run-length compressed (`0x90`); it holds a header (name,
//! type, fork lengths) and two forks. The data fork is a member named by the
//! file's name, the resource fork (when not empty) another. The CRCs are
//! not checked: a wrong one does not hide any content.

use super::{INPUT_BUFFER, read_byte};
use crate::WalkError;
use crate::walk::{Member, Step, Walker};
use moat_core::Blob;
use std::io::{self, BufRead, BufReader, Read};

pub(crate) const BANNER: &[u8] = b"(This file must be converted with BinHex";
const ALPHABET: &[u8; 64] = b"!\"#$%&'()*+,-012345689@ABCDEFGHIJKLMNPQRSTUVXYZ[`abcdefhijklmpqr";

pub(crate) fn is_binhex(head: &[u8]) -> bool {
    head.windows(BANNER.len()).any(|w| w == BANNER)
}

pub(crate) fn walk<E>(
    w: &mut Walker<'_, E>,
    blob: &Blob,
    location: &str,
    depth: u32,
) -> Result<(), WalkError<E>> {
    let mut d = Decoder {
        input: BufReader::with_capacity(INPUT_BUFFER, blob.reader()),
        state: State::Banner,
        acc: 0,
        bits: 0,
        prev: 0,
        repeat: 0,
    };
    let header = (|| -> io::Result<(String, u32, u32)> {
        let mut n = [0u8; 1];
        d.read_exact(&mut n)?;
        if !(1..=63).contains(&n[0]) {
            return Err(io::Error::new(
                io::ErrorKind::InvalidData,
                "bad name length",
            ));
        }
        let mut name = vec![0u8; usize::from(n[0])];
        d.read_exact(&mut name)?;
        // Version, type, creator, flags, the two lengths, the header CRC.
        let mut rest = [0u8; 21];
        d.read_exact(&mut rest)?;
        let be = |i: usize| u32::from_be_bytes([rest[i], rest[i + 1], rest[i + 2], rest[i + 3]]);
        Ok((String::from_utf8_lossy(&name).into_owned(), be(11), be(15)))
    })();
    let (name, data_len, rsrc_len) = match header {
        Ok(h) => h,
        Err(e) => {
            w.corrupt(location, format!("binhex header: {e}"));
            return Ok(());
        }
    };
    for (fork, len) in [(name.clone(), data_len), (format!("{name}.rsrc"), rsrc_len)] {
        if len == 0 {
            continue;
        }
        let mut data = (&mut d).take(u64::from(len));
        let step = w.member(
            Member {
                reader: &mut data,
                name: &fork,
                stored_size: blob.len(),
                declared_size: Some(u64::from(len)),
            },
            location,
            depth + 1,
        )?;
        if step != Step::Next {
            return Ok(());
        }
        // What the walker left unread, then the fork's CRC.
        let mut crc = [0u8; 2];
        let skipped = io::copy(&mut data, &mut io::sink()).and_then(|_| d.read_exact(&mut crc));
        if let Err(e) = skipped {
            w.corrupt(location, format!("binhex: {e}"));
            return Ok(());
        }
    }
    Ok(())
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum State {
    /// Before the banner line.
    Banner,
    /// After it, before the `:` that starts the data.
    Colon,
    Data,
    Done,
}

/// The decoded byte stream: 6-bit characters to bytes, then run lengths
/// expanded.
struct Decoder<R> {
    input: R,
    state: State,
    acc: u32,
    bits: u32,
    prev: u8,
    repeat: u32,
}

impl<R: BufRead> Decoder<R> {
    /// The next byte of the 6-bit layer.
    fn raw(&mut self) -> io::Result<Option<u8>> {
        let mut banner = 0;
        loop {
            if self.bits >= 8 {
                self.bits -= 8;
                let b = (self.acc >> self.bits) as u8;
                self.acc &= (1 << self.bits) - 1;
                return Ok(Some(b));
            }
            let Some(c) = (match self.state {
                State::Done => None,
                _ => read_byte(&mut self.input)?,
            }) else {
                self.state = State::Done;
                return Ok(None);
            };
            match self.state {
                State::Banner => {
                    banner = if c == BANNER[banner] {
                        banner + 1
                    } else {
                        usize::from(c == BANNER[0])
                    };
                    if banner == BANNER.len() {
                        self.state = State::Colon;
                    }
                }
                State::Colon if c == b':' => self.state = State::Data,
                State::Colon | State::Done => {}
                State::Data => {
                    if c == b':' {
                        self.state = State::Done;
                    } else if let Some(v) = ALPHABET.iter().position(|&a| a == c) {
                        self.acc = self.acc << 6 | v as u32;
                        self.bits += 6;
                    } else if !c.is_ascii_whitespace() {
                        // Nothing after a bad character is read.
                        self.state = State::Done;
                        return Err(io::Error::new(
                            io::ErrorKind::InvalidData,
                            format!("byte {c:#04x} in BinHex data"),
                        ));
                    }
                }
            }
        }
    }

    /// The next byte after run-length expansion: `0x90 n` repeats the byte
    /// before it `n` times in all (`0x90 0` is a literal `0x90`).
    fn byte(&mut self) -> io::Result<Option<u8>> {
        loop {
            if self.repeat > 0 {
                self.repeat -= 1;
                return Ok(Some(self.prev));
            }
            let Some(b) = self.raw()? else {
                return Ok(None);
            };
            if b != 0x90 {
                self.prev = b;
                return Ok(Some(b));
            }
            let Some(n) = self.raw()? else {
                return Ok(None);
            };
            if n == 0 {
                self.prev = 0x90;
                return Ok(Some(0x90));
            }
            // The byte itself was already out once.
            self.repeat = u32::from(n) - 1;
        }
    }
}

impl<R: BufRead> Read for Decoder<R> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        let mut n = 0;
        while n < buf.len() {
            match self.byte() {
                Ok(Some(b)) => {
                    buf[n] = b;
                    n += 1;
                }
                Ok(None) => break,
                Err(e) if n == 0 => return Err(e),
                Err(_) => break,
            }
        }
        Ok(n)
    }
}
