//! RTF: the embedded objects (`\objdata`, hex-encoded OLE1 objects) that
//! documents carry, and that malicious RTF files use to deliver executables
//! and exploits. Each `\objdata` group is a member, decoded from hex as it
//! streams; the decoded object is then opened as OLE1 (see `ole1`). The
//! rest of the document is text, scanned as it is with the document.
//!
//! Read front to back, one byte at a time through a buffer; control words
//! are cut at [`MAX_WORD`] characters. Inside `\objdata`, white space,
//! control words and nested groups are passed over, as RTF readers do (and
//! as writers that hide objects from scanners rely on).

use super::{INPUT_BUFFER, drain, read_byte};
use crate::WalkError;
use crate::walk::{Member, Step, Walker};
use moat_core::Blob;
use std::io::{self, BufRead, BufReader, Read};

/// Longest control word (letters) or parameter (digits) read as one.
const MAX_WORD: usize = 32;
/// Decoded bytes handed out per read.
const OUT_CHUNK: usize = 16 * 1024;

pub(crate) fn is_rtf(head: &[u8]) -> bool {
    head.starts_with(b"{\\rtf")
}

pub(crate) fn walk<E>(
    w: &mut Walker<'_, E>,
    blob: &Blob,
    location: &str,
    depth: u32,
) -> Result<(), WalkError<E>> {
    let mut lex = Lexer {
        r: BufReader::with_capacity(INPUT_BUFFER, blob.reader()),
        peeked: None,
        depth: 0,
    };
    let mut objects = 0u64;
    loop {
        if w.stopped {
            return Ok(());
        }
        let Some(b) = lex.next().map_err(WalkError::Io)? else {
            return Ok(());
        };
        match b {
            b'{' => lex.depth += 1,
            b'}' => lex.depth = lex.depth.saturating_sub(1),
            b'\\' => {
                if lex.control().map_err(WalkError::Io)? != Control::Word(*b"objdata") {
                    continue;
                }
                objects += 1;
                let mut obj = ObjData {
                    depth: lex.depth,
                    lex: &mut lex,
                    nibble: None,
                    out: Vec::new(),
                    pos: 0,
                    done: false,
                };
                let step = w.member(
                    Member {
                        reader: &mut obj,
                        name: &format!("objdata{objects}"),
                        stored_size: blob.len(),
                        declared_size: None,
                    },
                    location,
                    depth + 1,
                )?;
                if step != Step::Next {
                    return Ok(());
                }
                obj.finish().map_err(WalkError::Io)?;
            }
            _ => {}
        }
    }
}

#[derive(Debug, PartialEq, Eq)]
enum Control {
    /// `\objdata` (the only word that matters here).
    Word([u8; 7]),
    Other,
}

struct Lexer<R> {
    r: R,
    peeked: Option<u8>,
    depth: usize,
}

impl<R: BufRead> Lexer<R> {
    fn next(&mut self) -> io::Result<Option<u8>> {
        match self.peeked.take() {
            Some(b) => Ok(Some(b)),
            None => read_byte(&mut self.r),
        }
    }

    /// The rest of a control word or symbol after its backslash: letters,
    /// an optional signed number, and the space that ends it.
    fn control(&mut self) -> io::Result<Control> {
        let Some(first) = self.next()? else {
            return Ok(Control::Other);
        };
        if !first.is_ascii_alphabetic() {
            if first == b'\'' {
                // \'hh: one character given in hex.
                for _ in 0..2 {
                    match self.next()? {
                        Some(c) if c.is_ascii_hexdigit() => {}
                        other => {
                            self.peeked = other;
                            break;
                        }
                    }
                }
            }
            return Ok(Control::Other);
        }
        let mut word = vec![first];
        let mut next = self.next()?;
        while let Some(c) = next.filter(u8::is_ascii_alphabetic) {
            if word.len() < MAX_WORD {
                word.push(c);
            }
            next = self.next()?;
        }
        if next == Some(b'-') {
            next = self.next()?;
        }
        let mut digits = 0;
        while next.is_some_and(|c| c.is_ascii_digit()) && digits < MAX_WORD {
            digits += 1;
            next = self.next()?;
        }
        if next != Some(b' ') {
            self.peeked = next;
        }
        Ok(match <[u8; 7]>::try_from(word.as_slice()) {
            Ok(w) if &w == b"objdata" => Control::Word(w),
            _ => Control::Other,
        })
    }
}

/// The decoded bytes of one `\objdata` group, up to the brace that closes
/// the group holding it.
struct ObjData<'a, R> {
    lex: &'a mut Lexer<R>,
    /// Depth of the group `\objdata` is in.
    depth: usize,
    nibble: Option<u8>,
    out: Vec<u8>,
    pos: usize,
    done: bool,
}

impl<R: BufRead> Read for ObjData<'_, R> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        loop {
            if self.pos < self.out.len() {
                return Ok(drain(&self.out, &mut self.pos, buf));
            }
            if self.done {
                return Ok(0);
            }
            self.out.clear();
            self.pos = 0;
            self.fill()?;
        }
    }
}

impl<R: BufRead> ObjData<'_, R> {
    /// Decodes up to [`OUT_CHUNK`] bytes into `out`, or ends the group.
    fn fill(&mut self) -> io::Result<()> {
        while self.out.len() < OUT_CHUNK {
            let Some(b) = self.lex.next()? else {
                self.done = true;
                return Ok(());
            };
            match b {
                b'{' => self.lex.depth += 1,
                b'}' => {
                    self.lex.depth = self.lex.depth.saturating_sub(1);
                    if self.lex.depth < self.depth {
                        self.done = true;
                        return Ok(());
                    }
                }
                b'\\' => {
                    self.lex.control()?;
                }
                // Nested groups (`{\*\comment ...}`) are passed over.
                _ if self.lex.depth > self.depth => {}
                _ => {
                    let Some(v) = hex_value(b) else { continue };
                    match self.nibble.take() {
                        Some(high) => self.out.push(high << 4 | v),
                        None => self.nibble = Some(v),
                    }
                }
            }
        }
        Ok(())
    }

    /// Reads what the walker left unread, up to the end of the group.
    fn finish(mut self) -> io::Result<()> {
        while !self.done {
            self.out.clear();
            self.fill()?;
        }
        Ok(())
    }
}

fn hex_value(b: u8) -> Option<u8> {
    match b {
        b'0'..=b'9' => Some(b - b'0'),
        b'a'..=b'f' => Some(b - b'a' + 10),
        b'A'..=b'F' => Some(b - b'A' + 10),
        _ => None,
    }
}
