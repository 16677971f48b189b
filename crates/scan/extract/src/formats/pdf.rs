//! PDF: the content of every stream object (page contents, fonts, images,
//! scripts, embedded files), with its filters undone in order as far as they
//! are understood (`FlateDecode`, `LZWDecode`, `RunLengthDecode`,
//! `ASCIIHexDecode`, `ASCII85Decode`; the chain stops at any other, such as
//! an image codec; predictors are not undone). Streams are found by their keyword (`>> stream`
//! after a dictionary), not through the cross-reference table, so damaged
//! and incrementally updated files give up all of their streams.
//!
//! Two passes over the blob, both streaming: one finds the `stream`
//! keywords (at most [`MAX_STREAMS`] kept), then each stream is read from
//! its offset, to its direct `/Length` when that ends at `endstream`, else to
//! the next `endstream`. PDF readers are lenient, so this is too: a stream
//! that does not inflate (damaged) is visited as far as it inflated, and is
//! not a problem; its raw bytes were scanned with the file.
//!
//! Encrypted documents that open without a password (the standard security
//! handler with an empty user password, see [`pdfcrypt`]) have every stream
//! decrypted before its filters; one that needs a password is
//! [`Problem::Encrypted`](crate::Problem::Encrypted), as its streams cannot be read.

use super::pdfcrypt::{self, Security};
use super::{drain, find_all, read_at_full, read_byte};
use crate::WalkError;
use crate::walk::{Member, Step, Walker};
use moat_core::Blob;
use std::io::{self, Read, Seek, SeekFrom};

/// Most stream objects opened in one file (more is a `members` limit).
const MAX_STREAMS: usize = 100_000;
/// Most `/Encrypt` and `/ID` keys looked at.
const MAX_KEYS: usize = 256;
/// How far before `stream` the dictionary is looked for.
const DICT_WINDOW: u64 = 4096;

pub(crate) fn is_pdf(head: &[u8]) -> bool {
    memchr::memmem::find(&head[..head.len().min(1024)], b"%PDF-").is_some()
}

pub(crate) fn walk<E>(
    w: &mut Walker<'_, E>,
    blob: &Blob,
    location: &str,
    depth: u32,
) -> Result<(), WalkError<E>> {
    // Every `endstream` is found once, in the same pass, so that a file of
    // unterminated streams is not searched to its end once per stream.
    let [starts, ends, encrypts, ids] = find_all(
        blob,
        [b"stream", b"endstream", b"/Encrypt", b"/ID"],
        [MAX_STREAMS + 1, 2 * MAX_STREAMS, MAX_KEYS, MAX_KEYS],
    )
    .map_err(WalkError::Io)?;
    let crypt = match pdfcrypt::security(blob, &encrypts, &ids).map_err(WalkError::Io)? {
        Security::Open => None,
        Security::Decrypt(c) => Some(c),
        Security::Locked(why) => {
            tracing::debug!(location, why, "pdf streams are encrypted");
            w.problem(crate::Problem::Encrypted {
                location: location.to_string(),
            });
            return Ok(());
        }
    };
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
            w.limit(location, "members");
            return Ok(());
        }
        let name = match s.object {
            Some((n, g)) => format!("obj{n}.{g}"),
            None => format!("stream{opened}"),
        };
        let mut raw = blob.reader();
        raw.seek(SeekFrom::Start(s.data)).map_err(WalkError::Io)?;
        let mut decoded: Box<dyn Read> = Box::new(io::BufReader::new(raw.take(s.len)));
        if let (Some(c), Some(object)) = (&crypt, s.object)
            && !s.crypt_identity
            && c.encrypts(s.kind.as_deref())
        {
            decoded = c.reader(object, decoded);
        }
        for f in &s.filters {
            decoded = match f {
                Filter::Flate => Box::new(flate2::read::ZlibDecoder::new(decoded)),
                Filter::AsciiHex => Box::new(AsciiHex {
                    inner: decoded,
                    high: None,
                    done: false,
                }),
                Filter::RunLength => Box::new(RunLength {
                    inner: decoded,
                    out: Vec::new(),
                    pos: 0,
                    done: false,
                }),
                Filter::Lzw => Box::new(Lzw::new(decoded)),
                Filter::Ascii85 => Box::new(Ascii85 {
                    inner: decoded,
                    out: [0; 4],
                    have: 0,
                    pos: 0,
                    done: false,
                }),
            };
        }
        let mut r = Lenient {
            inner: decoded,
            location: &name,
        };
        let step = w.member(
            Member {
                reader: &mut r,
                name: &name,
                stored_size: s.len,
                declared_size: None,
            },
            location,
            depth + 1,
        )?;
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
    /// The filters to undo, in order (those understood, up to the first that is not).
    filters: Vec<Filter>,
    object: Option<(u64, u64)>,
    /// The dictionary's `/Type` (cross-reference streams are never encrypted).
    kind: Option<Vec<u8>>,
    /// The chain starts with the `Identity` crypt filter: not encrypted.
    crypt_identity: bool,
}

/// The stream whose `stream` keyword is at `at`, if it is one: a dictionary
/// ending in `>>` before it, an end of line after it.
fn stream_at(blob: &Blob, at: u64, ends: &[u64]) -> io::Result<Option<Stream>> {
    let from = at.saturating_sub(DICT_WINDOW);
    let mut before = vec![0u8; (at - from) as usize];
    let n = read_at_full(blob, from, &mut before)?;
    before.truncate(n);
    let before_kw = before.trim_ascii_end();
    // `endstream` is not `stream`.
    if !before_kw.ends_with(b">>") {
        return Ok(None);
    }
    let mut after = [0u8; 2];
    let got = read_at_full(blob, at + 6, &mut after)?;
    let data = match &after[..got] {
        [b'\r', b'\n'] => at + 8,
        [b'\n', ..] | [b'\r', ..] => at + 7,
        _ => return Ok(None),
    };
    let obj = memchr::memmem::rfind(before_kw, b"obj");
    let dict = &before_kw[obj.map_or(0, |i| i + 3)..];
    let object = obj.and_then(|i| object_number(&before_kw[..i]));
    let (filters, crypt_identity) = filters(dict);
    let kind = name_after(dict, b"/Type");
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
        filters,
        object,
        kind,
        crypt_identity,
    }))
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Filter {
    Flate,
    AsciiHex,
    Ascii85,
    RunLength,
    Lzw,
}

/// Most filters applied to one stream.
const MAX_FILTERS: usize = 8;

/// The stream's `/Filter`: one name or an array of them, in the order they
/// are undone. The chain stops at the first filter not understood (image
/// codecs, for one): what the filters before it give is scanned. A leading
/// `/Crypt` filter is the stream's own encryption: with the `Identity`
/// crypt filter (its default) the stream is not encrypted (the second value).
fn filters(dict: &[u8]) -> (Vec<Filter>, bool) {
    let Some(i) = memchr::memmem::find(dict, b"/Filter") else {
        return (Vec::new(), false);
    };
    let rest = dict[i + 7..].trim_ascii_start();
    let (list, single) = match rest.strip_prefix(b"[") {
        Some(inner) => (
            &inner[..inner.iter().position(|&b| b == b']').unwrap_or(inner.len())],
            false,
        ),
        None => (rest, true),
    };
    let mut out = Vec::new();
    let mut crypt_identity = false;
    for (k, name) in list.split(|&b| b == b'/').skip(1).enumerate() {
        let name: Vec<u8> = name
            .iter()
            .take_while(|b| b.is_ascii_alphanumeric())
            .copied()
            .collect();
        if k == 0 && name == b"Crypt" {
            crypt_identity = name_after(dict, b"/Name").is_none_or(|n| n == b"Identity");
            if single {
                break;
            }
            continue;
        }
        let f = match name.as_slice() {
            b"FlateDecode" | b"Fl" => Filter::Flate,
            b"ASCIIHexDecode" | b"AHx" => Filter::AsciiHex,
            b"ASCII85Decode" | b"A85" => Filter::Ascii85,
            b"RunLengthDecode" | b"RL" => Filter::RunLength,
            b"LZWDecode" | b"LZW" => Filter::Lzw,
            _ => break,
        };
        out.push(f);
        if single || out.len() == MAX_FILTERS {
            break;
        }
    }
    (out, crypt_identity)
}

/// The name after `key` in `dict` (`/Type /XRef` gives `XRef`).
fn name_after(dict: &[u8], key: &[u8]) -> Option<Vec<u8>> {
    let i = memchr::memmem::find(dict, key)?;
    let rest = dict[i + key.len()..]
        .trim_ascii_start()
        .strip_prefix(b"/")?;
    Some(
        rest.iter()
            .take_while(|b| b.is_ascii_alphanumeric())
            .copied()
            .collect(),
    )
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
    let n = read_at_full(blob, at, &mut buf)?;
    Ok(buf[..n].trim_ascii_start().starts_with(b"endstream"))
}

/// The end of a stream's data before the `endstream` at `e`: the end of
/// line in front of the keyword belongs to it.
fn trim_eol(blob: &Blob, data: u64, e: u64) -> io::Result<u64> {
    let mut b = [0u8; 2];
    let from = e.saturating_sub(2).max(data);
    let n = read_at_full(blob, from, &mut b[..(e - from) as usize])?;
    Ok(match &b[..n] {
        [b'\r', b'\n'] => e - 2,
        [.., b'\n'] | [.., b'\r'] => e - 1,
        _ => e,
    })
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

/// `ASCIIHexDecode`: pairs of hex digits, white space skipped, `>` ends
/// (a last odd digit is followed by 0).
struct AsciiHex<R> {
    inner: R,
    /// A first digit whose second has not come yet.
    high: Option<u8>,
    done: bool,
}

impl<R: Read> Read for AsciiHex<R> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        let mut n = 0;
        let mut byte = [0u8; 1];
        while n < buf.len() && !self.done {
            if self.inner.read(&mut byte)? == 0 || byte[0] == b'>' {
                self.done = true;
                break;
            }
            let Some(v) = (byte[0] as char).to_digit(16) else {
                continue;
            };
            match self.high.take() {
                Some(h) => {
                    buf[n] = h << 4 | v as u8;
                    n += 1;
                }
                None => self.high = Some(v as u8),
            }
        }
        if self.done
            && n < buf.len()
            && let Some(h) = self.high.take()
        {
            buf[n] = h << 4;
            n += 1;
        }
        Ok(n)
    }
}

/// `ASCII85Decode`: groups of five characters from `!` to `u` for four
/// bytes, `z` for four zero bytes, `~>` ends, white space skipped; a last
/// group of n characters gives n - 1 bytes.
struct Ascii85<R> {
    inner: R,
    out: [u8; 4],
    have: usize,
    pos: usize,
    done: bool,
}

impl<R: Read> Ascii85<R> {
    /// The next group into `out`; false at the end.
    fn group(&mut self) -> io::Result<bool> {
        let mut digits = [b'u'; 5];
        let mut count = 0;
        let mut c = [0u8; 1];
        while count < 5 {
            if self.done || self.inner.read(&mut c)? == 0 || c[0] == b'~' {
                self.done = true;
                break;
            }
            match c[0] {
                b'z' if count == 0 => {
                    self.out = [0; 4];
                    self.have = 4;
                    self.pos = 0;
                    return Ok(true);
                }
                b'!'..=b'u' => {
                    digits[count] = c[0];
                    count += 1;
                }
                _ => {}
            }
        }
        if count < 2 {
            return Ok(false);
        }
        let v = digits
            .iter()
            .fold(0u64, |v, &d| v * 85 + u64::from(d - b'!'));
        let v = u32::try_from(v).unwrap_or(u32::MAX);
        self.out = v.to_be_bytes();
        self.have = count - 1;
        self.pos = 0;
        Ok(true)
    }
}

impl<R: Read> Read for Ascii85<R> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        let mut n = 0;
        while n < buf.len() {
            if self.pos == self.have && !self.group()? {
                break;
            }
            while n < buf.len() && self.pos < self.have {
                buf[n] = self.out[self.pos];
                self.pos += 1;
                n += 1;
            }
        }
        Ok(n)
    }
}

/// `RunLengthDecode`: a length byte L, then L + 1 literal bytes (L < 128)
/// or one byte repeated 257 - L times (L > 128); 128 ends.
struct RunLength<R> {
    inner: R,
    out: Vec<u8>,
    pos: usize,
    done: bool,
}

impl<R: Read> Read for RunLength<R> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        while self.pos == self.out.len() {
            if self.done {
                return Ok(0);
            }
            self.out.clear();
            self.pos = 0;
            match read_byte(&mut self.inner)? {
                None | Some(128) => self.done = true,
                Some(l) if l < 128 => {
                    let mut lit = (&mut self.inner).take(u64::from(l) + 1);
                    let mut b = [0u8; 128];
                    let n = super::read_full(&mut lit, &mut b[..=usize::from(l)])?;
                    self.out.extend_from_slice(&b[..n]);
                }
                Some(l) => match read_byte(&mut self.inner)? {
                    Some(b) => self.out.resize(257 - usize::from(l), b),
                    None => self.done = true,
                },
            }
        }
        Ok(drain(&self.out, &mut self.pos, buf))
    }
}

/// `LZWDecode` as PDF defines it: 9- to 12-bit codes, most significant bit
/// first, 256 clears the table, 257 ends, and the code width grows one code
/// early (`EarlyChange` 1, the default).
struct Lzw<R> {
    inner: R,
    bits: u32,
    nbits: u32,
    width: u32,
    /// Per code: the code before it and its last byte (codes < 258 are bytes).
    prefix: Vec<u16>,
    suffix: Vec<u8>,
    prev: Option<u16>,
    out: Vec<u8>,
    pos: usize,
    done: bool,
}

const LZW_MAX: usize = 4096;

impl<R: Read> Lzw<R> {
    fn new(inner: R) -> Self {
        Lzw {
            inner,
            bits: 0,
            nbits: 0,
            width: 9,
            prefix: (0..258).map(|_| u16::MAX).collect(),
            suffix: (0..=255u8).chain([0, 0]).collect(),
            prev: None,
            out: Vec::new(),
            pos: 0,
            done: false,
        }
    }

    fn code(&mut self) -> io::Result<Option<u16>> {
        while self.nbits < self.width {
            let Some(b) = read_byte(&mut self.inner)? else {
                return Ok(None);
            };
            self.bits = (self.bits << 8 | u32::from(b)) & 0xff_ffff;
            self.nbits += 8;
        }
        self.nbits -= self.width;
        Ok(Some(
            ((self.bits >> self.nbits) & ((1 << self.width) - 1)) as u16,
        ))
    }

    /// Appends the string of `code` to `out`; its first byte.
    fn emit(&mut self, code: u16) -> u8 {
        let start = self.out.len();
        let mut c = code;
        // Walk back through the prefixes (at most the table's size).
        for _ in 0..LZW_MAX {
            self.out.push(self.suffix[usize::from(c)]);
            match self.prefix[usize::from(c)] {
                u16::MAX => break,
                p => c = p,
            }
        }
        self.out[start..].reverse();
        self.out[start]
    }

    fn add(&mut self, prefix: u16, byte: u8) {
        if self.prefix.len() < LZW_MAX {
            self.prefix.push(prefix);
            self.suffix.push(byte);
        }
        if self.prefix.len() + 1 >= 1 << self.width && self.width < 12 {
            self.width += 1;
        }
    }

    /// Decodes one code into `out` (or ends).
    fn step(&mut self) -> io::Result<()> {
        let Some(code) = self.code()? else {
            self.done = true;
            return Ok(());
        };
        match code {
            256 => {
                self.prefix.truncate(258);
                self.suffix.truncate(258);
                self.width = 9;
                self.prev = None;
            }
            257 => self.done = true,
            _ => {
                let size = self.prefix.len() as u16;
                match self.prev {
                    None if code < 256 => {
                        self.emit(code);
                    }
                    Some(prev) if code < size => {
                        let first = self.emit(code);
                        self.add(prev, first);
                    }
                    Some(prev) if code == size => {
                        let first = self.emit(prev);
                        self.out.push(first);
                        self.add(prev, first);
                    }
                    _ => {
                        self.done = true;
                        return Ok(());
                    }
                }
                self.prev = Some(code);
            }
        }
        Ok(())
    }
}

impl<R: Read> Read for Lzw<R> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        while self.pos == self.out.len() {
            if self.done {
                return Ok(0);
            }
            self.out.clear();
            self.pos = 0;
            self.step()?;
        }
        Ok(drain(&self.out, &mut self.pos, buf))
    }
}
