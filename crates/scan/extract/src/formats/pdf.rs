//! PDF: the content of every stream object (page contents, fonts, images,
//! scripts, embedded files), inflated when its filter is `FlateDecode`,
//! as it is otherwise. Streams are found by their keyword (`>> stream`
//! after a dictionary), not through the cross-reference table, so damaged
//! and incrementally updated files give up all of their streams.
//!
//! Two passes over the blob, both streaming: one finds the `stream`
//! keywords (at most [`MAX_STREAMS`] kept), then each stream is read from
//! its offset, to its direct `/Length` when that ends at `endstream`, else to
//! the next `endstream`. PDF readers are lenient, so this is too: a stream
//! that does not inflate (damaged, or encrypted: PDF encryption is not
//! undone here) is visited as far as it inflated, and is not a problem; its
//! raw bytes were scanned with the file.

use crate::WalkError;
use crate::walk::{Member, Step, Walker};
use moat_core::Blob;
use std::io::{self, Read, Seek, SeekFrom};

/// Most stream objects opened in one file (more is a `members` limit).
const MAX_STREAMS: usize = 100_000;
/// How far before `stream` the dictionary is looked for.
const DICT_WINDOW: u64 = 4096;
const CHUNK: usize = 64 * 1024;

pub(crate) fn is_pdf(head: &[u8]) -> bool {
    memchr::memmem::find(&head[..head.len().min(1024)], b"%PDF-").is_some()
}

pub(crate) fn walk<E>(
    w: &mut Walker<'_, E>,
    blob: &Blob,
    location: &str,
    depth: u32,
) -> Result<(), WalkError<E>> {
    let starts = find_all(blob, 0, b"stream", MAX_STREAMS + 1).map_err(WalkError::Io)?;
    // Every `endstream` once, so that a file of unterminated streams is not
    // searched to its end once per stream.
    let ends = find_all(blob, 0, b"endstream", 2 * MAX_STREAMS).map_err(WalkError::Io)?;
    let mut opened = 0usize;
    for at in starts {
        if w.stopped {
            return Ok(());
        }
        let Some(s) = stream_at(blob, at, &ends).map_err(WalkError::Io)? else {
            continue;
        };
        opened += 1;
        if opened > MAX_STREAMS {
            w.problem(crate::Problem::LimitsExceeded {
                location: location.to_string(),
                what: "members".into(),
            });
            return Ok(());
        }
        let name = match s.object {
            Some((n, g)) => format!("obj{n}.{g}"),
            None => format!("stream{opened}"),
        };
        let mut raw = blob.reader();
        raw.seek(SeekFrom::Start(s.data)).map_err(WalkError::Io)?;
        let raw = raw.take(s.len);
        let step = if s.flate {
            let mut r = Lenient {
                inner: flate2::read::ZlibDecoder::new(io::BufReader::new(raw)),
                location: &name,
            };
            w.member(
                Member {
                    reader: &mut r,
                    name: &name,
                    stored_size: s.len,
                    declared_size: None,
                },
                location,
                depth + 1,
            )?
        } else {
            let mut r = raw;
            w.member(
                Member {
                    reader: &mut r,
                    name: &name,
                    stored_size: s.len,
                    declared_size: None,
                },
                location,
                depth + 1,
            )?
        };
        if step == Step::Stop {
            return Ok(());
        }
    }
    Ok(())
}

/// One stream object: where its data starts, how long it is, whether it
/// inflates, and the object number and generation when they were found.
#[derive(Debug, PartialEq, Eq)]
struct Stream {
    data: u64,
    len: u64,
    flate: bool,
    object: Option<(u64, u64)>,
}

/// The stream whose `stream` keyword is at `at`, if it is one: a dictionary
/// ending in `>>` before it, an end of line after it.
fn stream_at(blob: &Blob, at: u64, ends: &[u64]) -> io::Result<Option<Stream>> {
    let from = at.saturating_sub(DICT_WINDOW);
    let mut before = vec![0u8; (at - from) as usize];
    let n = read_full(blob, from, &mut before)?;
    before.truncate(n);
    let before_kw = before.trim_ascii_end();
    // `endstream` is not `stream`.
    if !before_kw.ends_with(b">>") {
        return Ok(None);
    }
    let mut after = [0u8; 2];
    let got = read_full(blob, at + 6, &mut after)?;
    let data = match &after[..got] {
        [b'\r', b'\n'] => at + 8,
        [b'\n', ..] | [b'\r', ..] => at + 7,
        _ => return Ok(None),
    };
    let dict_start = memchr::memmem::rfind(before_kw, b"obj").map_or(0, |i| i + 3);
    let dict = &before_kw[dict_start..];
    let object =
        memchr::memmem::rfind(before_kw, b"obj").and_then(|i| object_number(&before_kw[..i]));
    let flate = filters(dict);
    let end = match direct_length(dict).filter(|&l| data + l <= blob.len()) {
        Some(l) if ends_stream(blob, data + l)? => data + l,
        _ => match ends.get(ends.partition_point(|&e| e < data)) {
            Some(&e) => trim_eol(blob, data, e)?,
            None => blob.len(),
        },
    };
    Ok(Some(Stream {
        data,
        len: end - data,
        flate,
        object,
    }))
}

/// Whether the stream inflates: `/Filter /FlateDecode` (or `/Fl`), alone or
/// first in an array.
fn filters(dict: &[u8]) -> bool {
    let Some(i) = memchr::memmem::find(dict, b"/Filter") else {
        return false;
    };
    let rest = dict[i + 7..].trim_ascii_start();
    let rest = rest.strip_prefix(b"[").unwrap_or(rest).trim_ascii_start();
    let name: Vec<u8> = rest
        .iter()
        .skip(1)
        .take_while(|b| b.is_ascii_alphanumeric())
        .copied()
        .collect();
    rest.first() == Some(&b'/') && (name == b"FlateDecode" || name == b"Fl")
}

/// `/Length N` when N is a number and not a reference (`N G R`).
fn direct_length(dict: &[u8]) -> Option<u64> {
    let i = memchr::memmem::find(dict, b"/Length")?;
    let rest = dict[i + 7..].trim_ascii_start();
    let digits: Vec<u8> = rest
        .iter()
        .take_while(|b| b.is_ascii_digit())
        .copied()
        .collect();
    let tail = rest[digits.len()..].trim_ascii_start();
    // `12 0 R` is a reference.
    let is_ref = tail.first().is_some_and(u8::is_ascii_digit)
        && tail
            .iter()
            .skip_while(|b| b.is_ascii_digit())
            .find(|b| !b.is_ascii_whitespace())
            == Some(&b'R');
    if digits.is_empty() || is_ref {
        return None;
    }
    std::str::from_utf8(&digits).ok()?.parse().ok()
}

/// `N G` right before `obj`.
fn object_number(text: &[u8]) -> Option<(u64, u64)> {
    let mut words = text.trim_ascii_end().rsplit(|b| b.is_ascii_whitespace());
    let g = std::str::from_utf8(words.next()?).ok()?.parse().ok()?;
    let n = std::str::from_utf8(words.next()?).ok()?.parse().ok()?;
    Some((n, g))
}

/// Whether `endstream` follows `at` (after optional white space).
fn ends_stream(blob: &Blob, at: u64) -> io::Result<bool> {
    let mut buf = [0u8; 16];
    let n = read_full(blob, at, &mut buf)?;
    Ok(buf[..n].trim_ascii_start().starts_with(b"endstream"))
}

/// The end of a stream's data before the `endstream` at `e`: the end of
/// line in front of the keyword belongs to it.
fn trim_eol(blob: &Blob, data: u64, e: u64) -> io::Result<u64> {
    let mut b = [0u8; 2];
    let from = e.saturating_sub(2).max(data);
    let n = read_full(blob, from, &mut b[..(e - from) as usize])?;
    Ok(match &b[..n] {
        [b'\r', b'\n'] => e - 2,
        [.., b'\n'] | [.., b'\r'] => e - 1,
        _ => e,
    })
}

fn read_full(blob: &Blob, mut at: u64, buf: &mut [u8]) -> io::Result<usize> {
    let mut n = 0;
    while n < buf.len() {
        let k = blob.read_at(at, &mut buf[n..])?;
        if k == 0 {
            break;
        }
        n += k;
        at += k as u64;
    }
    Ok(n)
}

/// Offsets of `needle` in `blob` from `from` on, at most `max` of them,
/// read in chunks that overlap by the needle's length.
fn find_all(blob: &Blob, from: u64, needle: &[u8], max: usize) -> io::Result<Vec<u64>> {
    let finder = memchr::memmem::Finder::new(needle);
    let mut found = Vec::new();
    let mut buf = vec![0u8; CHUNK];
    let mut at = from;
    while at < blob.len() && found.len() < max {
        let n = read_full(blob, at, &mut buf)?;
        if n == 0 {
            break;
        }
        for i in finder.find_iter(&buf[..n]) {
            found.push(at + i as u64);
            if found.len() >= max {
                break;
            }
        }
        if at + (n as u64) >= blob.len() {
            break;
        }
        at += (n - (needle.len() - 1)) as u64;
    }
    found.dedup();
    Ok(found)
}

/// A decoder whose error ends its stream quietly: what inflated before it
/// is scanned, the rest is the raw bytes already scanned with the file.
struct Lenient<'a, R> {
    inner: R,
    location: &'a str,
}

impl<R: Read> Read for Lenient<'_, R> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        match self.inner.read(buf) {
            Ok(n) => Ok(n),
            Err(e)
                if matches!(
                    e.kind(),
                    io::ErrorKind::InvalidData
                        | io::ErrorKind::InvalidInput
                        | io::ErrorKind::UnexpectedEof
                ) =>
            {
                tracing::debug!(stream = self.location, error = %e, "pdf stream does not inflate");
                Ok(0)
            }
            Err(e) => Err(e),
        }
    }
}
