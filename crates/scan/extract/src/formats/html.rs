//! HTML: the payloads of `data:` URIs (RFC 2397), which pages use to carry
//! whole files inline (HTML smuggling hides downloads this way). Each one
//! is a member `data-uri-N`, decoded from base64 (forgiving: white space
//! skipped) or from percent-encoding, as ClamAV's HTML normaliser extracts
//! them (its `rfc2397` layer). A URI ends at a quote, `<`, `>` or `)` (and,
//! when not base64, at white space); its header is at most 256 bytes of
//! media type and parameters before the comma.

use super::mail::{base64_value, flush_base64};
use super::{INPUT_BUFFER, drain};
use crate::WalkError;
use crate::walk::{Member, Step, Walker};
use moat_core::Blob;
use std::io::{self, BufRead, BufReader, Read};

const MAX_HEADER: usize = 256;
/// Tags that make content HTML when one is near its start (ClamAV's HTML
/// file types start with these).
const TAGS: &[&[u8]] = &[
    b"<html",
    b"<!doctype html",
    b"<head",
    b"<body",
    b"<script",
    b"<iframe",
    b"<a href",
    b"<img",
    b"<object",
    b"<table",
    b"<meta",
    b"<div",
];

pub(crate) fn is_html(head: &[u8]) -> bool {
    let lower = head.to_ascii_lowercase();
    TAGS.iter()
        .any(|t| memchr::memmem::find(&lower, t).is_some())
}

fn ends(b: u8) -> bool {
    matches!(b, b'"' | b'\'' | b'<' | b'>' | b')' | b'`')
}

pub(crate) fn walk<E>(
    w: &mut Walker<'_, E>,
    blob: &Blob,
    location: &str,
    depth: u32,
) -> Result<(), WalkError<E>> {
    let mut r = BufReader::with_capacity(INPUT_BUFFER, blob.reader());
    let mut count = 0usize;
    while !w.stopped {
        if !find_scheme(&mut r).map_err(WalkError::Io)? {
            return Ok(());
        }
        let Some(base64) = header(&mut r).map_err(WalkError::Io)? else {
            continue;
        };
        count += 1;
        let name = format!("data-uri-{count}");
        let mut uri = DataUri {
            src: &mut r,
            base64,
            done: false,
            quad: [0; 4],
            nquad: 0,
            out: Vec::new(),
            pos: 0,
        };
        let step = w.member(
            Member {
                reader: &mut uri,
                name: &name,
                stored_size: blob.len(),
                declared_size: None,
            },
            location,
            depth + 1,
        )?;
        if step == Step::Stop {
            return Ok(());
        }
        // What a limit left of the URI is passed over, to its end.
        io::copy(&mut uri, &mut io::sink()).map_err(WalkError::Io)?;
    }
    Ok(())
}

/// Reads up to and including the next `data:` (any case); false at the end.
fn find_scheme(r: &mut impl BufRead) -> io::Result<bool> {
    const SCHEME: &[u8] = b"data:";
    let mut matched = 0;
    loop {
        let buf = r.fill_buf()?;
        if buf.is_empty() {
            return Ok(false);
        }
        let mut used = 0;
        for &b in buf {
            used += 1;
            let l = b.to_ascii_lowercase();
            matched = if l == SCHEME[matched] {
                matched + 1
            } else {
                usize::from(l == b'd')
            };
            if matched == SCHEME.len() {
                r.consume(used);
                return Ok(true);
            }
        }
        r.consume(used);
    }
}

/// The header up to the comma: whether the data is base64, or `None` when
/// what follows `data:` is not a data URI.
fn header(r: &mut impl BufRead) -> io::Result<Option<bool>> {
    let mut h = Vec::new();
    loop {
        let buf = r.fill_buf()?;
        let Some(&b) = buf.first() else {
            return Ok(None);
        };
        if b == b',' {
            r.consume(1);
            let lower = h.to_ascii_lowercase();
            return Ok(Some(lower.ends_with(b";base64")));
        }
        if ends(b) || b.is_ascii_whitespace() || h.len() == MAX_HEADER {
            return Ok(None);
        }
        h.push(b);
        r.consume(1);
    }
}

/// One URI's data, decoded as it is read.
struct DataUri<'a, R> {
    src: &'a mut R,
    base64: bool,
    done: bool,
    quad: [u8; 4],
    nquad: usize,
    out: Vec<u8>,
    pos: usize,
}

impl<R: BufRead> DataUri<'_, R> {
    /// Decodes what the source's buffer holds of the URI into `out`.
    fn fill(&mut self) -> io::Result<()> {
        self.out.clear();
        self.pos = 0;
        let buf = self.src.fill_buf()?;
        if buf.is_empty() {
            self.done = true;
        }
        let mut used = 0;
        let mut i = 0;
        while i < buf.len() {
            let b = buf[i];
            if ends(b) || (!self.base64 && b.is_ascii_whitespace()) {
                self.done = true;
                break;
            }
            i += 1;
            used = i;
            if self.base64 {
                if let Some(v) = base64_value(b) {
                    self.quad[self.nquad] = v;
                    self.nquad += 1;
                    if self.nquad == 4 {
                        flush_base64(&mut self.quad, &mut self.nquad, &mut self.out);
                    }
                }
            } else if b == b'%' {
                // A percent escape split across buffers is taken literally.
                let hex = buf
                    .get(i..i + 2)
                    .and_then(|h| std::str::from_utf8(h).ok())
                    .and_then(|h| u8::from_str_radix(h, 16).ok());
                match hex {
                    Some(v) => {
                        self.out.push(v);
                        i += 2;
                        used = i;
                    }
                    None => self.out.push(b),
                }
            } else {
                self.out.push(b);
            }
        }
        self.src.consume(used);
        if self.done && self.base64 {
            flush_base64(&mut self.quad, &mut self.nquad, &mut self.out);
        }
        Ok(())
    }
}

impl<R: BufRead> Read for DataUri<'_, R> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        while self.pos == self.out.len() {
            if self.done {
                return Ok(0);
            }
            self.fill()?;
        }
        Ok(drain(&self.out, &mut self.pos, buf))
    }
}
