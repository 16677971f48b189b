//! Mail: RFC 5322 messages and mbox files, with MIME parts (RFC 2045–2046).
//!
//! Mail servers hand whole messages to a scanner (Exim's `av_scanner =
//! clamd`, ClamSMTP, milters), so an attachment is only seen if the message
//! is taken apart. Every leaf part is a member, decoded from its
//! Content-Transfer-Encoding (base64, quoted-printable, uuencode; anything
//! else as it is) and named after its file name when it has one. Multipart
//! nesting and attached messages (`message/rfc822`) are followed inline, so
//! all parts of one message are members at the same depth; a decoded part
//! that is itself a container (a zip attachment) is opened as usual. A
//! uuencoded block inside a text part is a member of its own, and each
//! message of an mbox file is read in turn.
//!
//! Streaming and bounded: the message is read line by line from its blob,
//! lines are cut at [`MAX_LINE`] bytes, only the three headers that matter
//! are kept (each capped at [`MAX_HEADER`]), nesting stops at
//! [`MAX_NESTING`] (deeper parts are members as they are). Mail is read
//! leniently, as mail readers do: a missing closing boundary, stray characters
//! in base64 and a header block that ends without a blank line are not
//! errors. What a lenient reading passes over (preambles, epilogues, header
//! lines) is still scanned, since the whole message is scanned as it is too.

use super::{INPUT_BUFFER, drain};
use crate::WalkError;
use crate::walk::{Member, Step, Walker};
use moat_core::Blob;
use std::io::{self, BufRead, BufReader, Read};

/// Longest line handled as one; longer lines are read in pieces.
const MAX_LINE: usize = 64 * 1024;
/// Most bytes kept of one header field (after unfolding).
const MAX_HEADER: usize = 16 * 1024;
/// Deepest nesting of multiparts and attached messages that is followed.
const MAX_NESTING: usize = 32;
/// Decoded bytes gathered per read (a line decodes to 57 bytes of base64).
const OUT_CHUNK: usize = 64 * 1024;

pub(crate) fn walk<E>(
    w: &mut Walker<'_, E>,
    blob: &Blob,
    location: &str,
    depth: u32,
) -> Result<(), WalkError<E>> {
    let mut m = Mail {
        lines: Lines::new(BufReader::with_capacity(INPUT_BUFFER, blob.reader())),
        boundaries: Vec::new(),
        mbox: false,
        nesting: 0,
        parts: 0,
        location,
        depth,
        stored: blob.len(),
    };
    if m.lines.peek().map_err(WalkError::Io)? && m.lines.line.starts_with(b"From ") {
        m.mbox = true;
    }
    loop {
        if m.mbox {
            // The "From " line that opens each message of an mbox.
            m.lines.take();
        }
        m.boundaries.clear();
        m.nesting = 0;
        let end = m.entity(w)?;
        if w.stopped || end != End::NextMessage {
            return Ok(());
        }
    }
}

/// How an entity's body ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum End {
    Eof,
    /// A delimiter line of the enclosing multipart at `level` of the stack.
    Boundary {
        level: usize,
        closing: bool,
    },
    /// An mbox "From " line: the next message begins.
    NextMessage,
}

struct Mail<'l, R> {
    lines: Lines<R>,
    /// Boundaries of the open multiparts, outermost first.
    boundaries: Vec<Vec<u8>>,
    mbox: bool,
    nesting: usize,
    /// Parts seen so far, for the names of parts without a file name.
    parts: u64,
    location: &'l str,
    depth: u32,
    stored: u64,
}

impl<R: BufRead> Mail<'_, R> {
    /// One entity (a message or a part): its headers, then its body, up to
    /// the delimiter that ends it (left unread for the caller).
    fn entity<E>(&mut self, w: &mut Walker<'_, E>) -> Result<End, WalkError<E>> {
        let (h, end) = self.headers().map_err(WalkError::Io)?;
        if let Some(end) = end {
            return Ok(end);
        }
        let (mime, params) = parse_params(&h.content_type);
        // An encoded multipart or attached message (not allowed, but sent)
        // is decoded as one member; its lines are not readable as they are.
        let mode = Mode::of_encoding(&h.encoding);
        if self.nesting >= MAX_NESTING || mode != Mode::Text {
            return self.leaf(w, &h, mode);
        }
        if mime.starts_with("multipart/")
            && let Some(boundary) = param(&params, "boundary").filter(|b| !b.is_empty())
        {
            self.nesting += 1;
            let end = self.multipart(w, boundary.to_vec());
            self.nesting -= 1;
            return end;
        }
        if mime == "message/rfc822" || mime == "message/global" {
            self.nesting += 1;
            let end = self.entity(w);
            self.nesting -= 1;
            return end;
        }
        self.leaf(w, &h, mode)
    }

    fn multipart<E>(
        &mut self,
        w: &mut Walker<'_, E>,
        boundary: Vec<u8>,
    ) -> Result<End, WalkError<E>> {
        self.boundaries.push(boundary);
        let level = self.boundaries.len() - 1;
        // The preamble.
        let mut end = self.skip().map_err(WalkError::Io)?;
        loop {
            if w.stopped {
                return Ok(End::Eof);
            }
            match end {
                End::Boundary { level: l, closing } if l == level => {
                    self.lines.take();
                    if closing {
                        self.boundaries.truncate(level);
                        // The epilogue.
                        return self.skip().map_err(WalkError::Io);
                    }
                    end = self.entity(w)?;
                }
                _ => {
                    self.boundaries.truncate(level);
                    return Ok(end);
                }
            }
        }
    }

    /// A part that is not taken apart further: one member (or, for a text
    /// part holding uuencoded blocks, one member per block and per stretch of
    /// text around them).
    fn leaf<E>(
        &mut self,
        w: &mut Walker<'_, E>,
        h: &Headers,
        mut mode: Mode,
    ) -> Result<End, WalkError<E>> {
        let mut name = file_name(h);
        loop {
            self.parts += 1;
            let part_name = name.take().unwrap_or_else(|| format!("part{}", self.parts));
            let mut reader = Part {
                lines: &mut self.lines,
                boundaries: &self.boundaries,
                mbox: self.mbox,
                mode,
                out: Vec::new(),
                pos: 0,
                held: Vec::new(),
                quad: [0; 4],
                nquad: 0,
                stop: None,
            };
            let step = w.member(
                Member {
                    reader: &mut reader,
                    name: &part_name,
                    stored_size: self.stored,
                    declared_size: None,
                },
                self.location,
                self.depth + 1,
            )?;
            if step != Step::Next {
                return Ok(End::Eof);
            }
            match reader.finish().map_err(WalkError::Io)? {
                Stop::End(end) => return Ok(end),
                Stop::UuBegin(uu_name) => {
                    mode = Mode::Uu;
                    name = Some(uu_name);
                }
                Stop::UuEnd => {
                    // Text may follow the block; an empty rest is not a member.
                    if let Some(end) = self.at_delimiter().map_err(WalkError::Io)? {
                        return Ok(end);
                    }
                    mode = Mode::Text;
                }
            }
        }
    }

    /// The delimiter or end of input the current line is, if it is one.
    fn at_delimiter(&mut self) -> io::Result<Option<End>> {
        if !self.lines.peek()? {
            return Ok(Some(End::Eof));
        }
        Ok(self
            .lines
            .starts
            .then(|| delimiter(&self.boundaries, self.mbox, &self.lines.line))
            .flatten())
    }

    /// Passes over lines up to the next delimiter (left unread) or the end.
    fn skip(&mut self) -> io::Result<End> {
        loop {
            if let Some(end) = self.at_delimiter()? {
                return Ok(end);
            }
            self.lines.take();
        }
    }

    /// Reads a header block and its blank line. A delimiter or the end of
    /// input before the blank line ends the entity without a body.
    fn headers(&mut self) -> io::Result<(Headers, Option<End>)> {
        let mut h = Headers::default();
        let mut current: Option<Field> = None;
        loop {
            if let Some(end) = self.at_delimiter()? {
                return Ok((h, Some(end)));
            }
            let line = &self.lines.line;
            if self.lines.starts {
                let text = trim_eol(line);
                if text.is_empty() {
                    self.lines.take();
                    return Ok((h, None));
                }
                if text[0] == b' ' || text[0] == b'\t' {
                    if let Some(f) = current {
                        h.append(f, text);
                    }
                } else if let Some((name, value)) = header_field(text) {
                    current = Field::of(name);
                    if let Some(f) = current {
                        h.append(f, value);
                    }
                } else {
                    // Not a header: the body starts here (no blank line).
                    return Ok((h, None));
                }
            } else if let Some(f) = current {
                h.append(f, trim_eol(line));
            }
            self.lines.take();
        }
    }
}

#[derive(Debug, Default)]
struct Headers {
    content_type: Vec<u8>,
    encoding: Vec<u8>,
    disposition: Vec<u8>,
}

#[derive(Debug, Clone, Copy)]
enum Field {
    ContentType,
    Encoding,
    Disposition,
}

impl Field {
    fn of(name: &[u8]) -> Option<Field> {
        if name.eq_ignore_ascii_case(b"content-type") {
            Some(Field::ContentType)
        } else if name.eq_ignore_ascii_case(b"content-transfer-encoding") {
            Some(Field::Encoding)
        } else if name.eq_ignore_ascii_case(b"content-disposition") {
            Some(Field::Disposition)
        } else {
            None
        }
    }
}

impl Headers {
    fn append(&mut self, f: Field, text: &[u8]) {
        let v = match f {
            Field::ContentType => &mut self.content_type,
            Field::Encoding => &mut self.encoding,
            Field::Disposition => &mut self.disposition,
        };
        if !v.is_empty() {
            v.push(b' ');
        }
        let room = MAX_HEADER.saturating_sub(v.len());
        v.extend_from_slice(&text[..text.len().min(room)]);
    }
}

/// `Name: value` with a name of visible characters; the value trimmed.
fn header_field(text: &[u8]) -> Option<(&[u8], &[u8])> {
    let colon = text.iter().position(|&b| b == b':')?;
    let name = &text[..colon];
    if name.is_empty() || !name.iter().all(|b| b.is_ascii_graphic()) {
        return None;
    }
    Some((name, text[colon + 1..].trim_ascii()))
}

/// The lowercased media type and the parameters (`key` lowercased, values
/// unquoted) of a Content-Type or Content-Disposition value.
fn parse_params(value: &[u8]) -> (String, Vec<(String, Vec<u8>)>) {
    let mut parts = Vec::new();
    let mut cur = Vec::new();
    let mut quoted = false;
    let mut escaped = false;
    for &b in value {
        if escaped {
            cur.push(b);
            escaped = false;
        } else if quoted && b == b'\\' {
            escaped = true;
        } else if b == b'"' {
            quoted = !quoted;
        } else if b == b';' && !quoted {
            parts.push(std::mem::take(&mut cur));
        } else {
            cur.push(b);
        }
    }
    parts.push(cur);
    let mut it = parts.into_iter();
    let mime = it
        .next()
        .map(|m| String::from_utf8_lossy(m.trim_ascii()).to_ascii_lowercase())
        .unwrap_or_default();
    let params = it
        .filter_map(|p| {
            let eq = p.iter().position(|&b| b == b'=')?;
            let key = String::from_utf8_lossy(p[..eq].trim_ascii()).to_ascii_lowercase();
            Some((key, p[eq + 1..].trim_ascii().to_vec()))
        })
        .collect();
    (mime, params)
}

fn param<'p>(params: &'p [(String, Vec<u8>)], key: &str) -> Option<&'p [u8]> {
    params
        .iter()
        .find(|(k, _)| k == key)
        .map(|(_, v)| v.as_slice())
}

/// The part's file name: Content-Disposition's `filename` (or its RFC 2231
/// `filename*`, charset prefix dropped), else Content-Type's `name`.
fn file_name(h: &Headers) -> Option<String> {
    let (_, disp) = parse_params(&h.disposition);
    let (_, ctype) = parse_params(&h.content_type);
    let extended = |params: &[(String, Vec<u8>)], key: &str| {
        param(params, key).map(|v| match v.windows(2).position(|w| w == b"''") {
            Some(i) => v[i + 2..].to_vec(),
            None => v.to_vec(),
        })
    };
    let raw = param(&disp, "filename")
        .map(<[u8]>::to_vec)
        .or_else(|| extended(&disp, "filename*"))
        .or_else(|| param(&ctype, "name").map(<[u8]>::to_vec))
        .or_else(|| extended(&ctype, "name*"))?;
    let name = String::from_utf8_lossy(&raw).into_owned();
    (!name.is_empty()).then_some(name)
}

/// Which delimiter `line` (at the start of a line) is: the nearest enclosing
/// boundary it names (`--boundary`, then `--` if it closes, then only white
/// space), or an mbox message separator.
fn delimiter(boundaries: &[Vec<u8>], mbox: bool, line: &[u8]) -> Option<End> {
    if mbox && line.starts_with(b"From ") {
        return Some(End::NextMessage);
    }
    let rest = line.strip_prefix(b"--")?;
    boundaries.iter().enumerate().rev().find_map(|(level, b)| {
        let after = rest.strip_prefix(b.as_slice())?;
        let (closing, pad) = match after.strip_prefix(b"--") {
            Some(pad) => (true, pad),
            None => (false, after),
        };
        pad.iter()
            .all(u8::is_ascii_whitespace)
            .then_some(End::Boundary { level, closing })
    })
}

fn trim_eol(line: &[u8]) -> &[u8] {
    let line = line.strip_suffix(b"\n").unwrap_or(line);
    line.strip_suffix(b"\r").unwrap_or(line)
}

/// A line's content and its terminator.
fn split_eol(line: &[u8]) -> (&[u8], &[u8]) {
    let content = trim_eol(line);
    (content, &line[content.len()..])
}

/// The file name of a uuencode `begin 644 name` line.
fn uu_begin(text: &[u8]) -> Option<String> {
    let rest = text.strip_prefix(b"begin ")?;
    let space = rest.iter().position(|&b| b == b' ')?;
    let mode = &rest[..space];
    if !(3..=4).contains(&mode.len()) || !mode.iter().all(|b| (b'0'..=b'7').contains(b)) {
        return None;
    }
    let name = rest[space + 1..].trim_ascii();
    (!name.is_empty()).then(|| String::from_utf8_lossy(name).into_owned())
}

/// Line reader over the message: one line at a time, cut at [`MAX_LINE`].
struct Lines<R> {
    r: R,
    /// The current line with its terminator (if it has one).
    line: Vec<u8>,
    /// `line` begins a line (it is not the rest of one cut at [`MAX_LINE`]).
    starts: bool,
    next_starts: bool,
    /// `line` holds a line not yet taken.
    loaded: bool,
}

impl<R: BufRead> Lines<R> {
    fn new(r: R) -> Self {
        Lines {
            r,
            line: Vec::new(),
            starts: true,
            next_starts: true,
            loaded: false,
        }
    }

    /// Makes the next line current (unless the current one is not taken
    /// yet); false at the end of input.
    fn peek(&mut self) -> io::Result<bool> {
        if self.loaded {
            return Ok(true);
        }
        self.line.clear();
        self.starts = self.next_starts;
        loop {
            let buf = match self.r.fill_buf() {
                Ok(b) => b,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                Err(e) => return Err(e),
            };
            if buf.is_empty() {
                self.next_starts = true;
                break;
            }
            let room = MAX_LINE - self.line.len();
            let window = &buf[..buf.len().min(room)];
            if let Some(i) = window.iter().position(|&b| b == b'\n') {
                self.line.extend_from_slice(&window[..=i]);
                self.r.consume(i + 1);
                self.next_starts = true;
                break;
            }
            let n = window.len();
            self.line.extend_from_slice(window);
            self.r.consume(n);
            if self.line.len() >= MAX_LINE {
                self.next_starts = false;
                break;
            }
        }
        self.loaded = !self.line.is_empty();
        Ok(self.loaded)
    }

    fn take(&mut self) {
        self.loaded = false;
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Mode {
    /// As it is (7bit, 8bit, binary, unknown encodings), watching for
    /// uuencoded blocks.
    Text,
    Base64,
    QuotedPrintable,
    /// Content-Transfer-Encoding uuencode: lines before `begin` are skipped.
    UuSeek,
    Uu,
}

impl Mode {
    fn of_encoding(value: &[u8]) -> Mode {
        let v = String::from_utf8_lossy(value.trim_ascii()).to_ascii_lowercase();
        match v.as_str() {
            "base64" => Mode::Base64,
            "quoted-printable" => Mode::QuotedPrintable,
            "x-uuencode" | "uuencode" | "x-uue" | "uue" => Mode::UuSeek,
            _ => Mode::Text,
        }
    }
}

/// Why a part's reader stopped.
#[derive(Debug)]
enum Stop {
    End(End),
    /// A text part reached a `begin` line: a uuencoded block follows.
    UuBegin(String),
    /// A uuencoded block's `end` line.
    UuEnd,
}

/// One part's decoded content, read up to the delimiter that ends it.
struct Part<'a, R> {
    lines: &'a mut Lines<R>,
    boundaries: &'a [Vec<u8>],
    mbox: bool,
    mode: Mode,
    out: Vec<u8>,
    pos: usize,
    /// The last line's terminator, written only if more of the part follows
    /// (the line break before a delimiter belongs to the delimiter).
    held: Vec<u8>,
    quad: [u8; 4],
    nquad: usize,
    stop: Option<Stop>,
}

impl<R: BufRead> Read for Part<'_, R> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        loop {
            if self.pos < self.out.len() {
                return Ok(drain(&self.out, &mut self.pos, buf));
            }
            if self.stop.is_some() {
                return Ok(0);
            }
            self.out.clear();
            self.pos = 0;
            // Many lines per read, so the walker copies and hashes in chunks.
            let want = buf.len().min(OUT_CHUNK);
            while self.out.len() < want && self.stop.is_none() {
                self.step()?;
            }
        }
    }
}

impl<R: BufRead> Part<'_, R> {
    /// Reads what the walker left unread (it stops early at a limit) and
    /// says why the part ended.
    fn finish(mut self) -> io::Result<Stop> {
        while self.stop.is_none() {
            self.out.clear();
            self.step()?;
        }
        Ok(self.stop.unwrap_or(Stop::End(End::Eof)))
    }

    /// Decodes one more line into `out`, or sets `stop`.
    fn step(&mut self) -> io::Result<()> {
        if !self.lines.peek()? {
            if matches!(self.mode, Mode::Text | Mode::QuotedPrintable) {
                self.out.append(&mut self.held);
            }
            self.flush_base64();
            self.stop = Some(Stop::End(End::Eof));
            return Ok(());
        }
        let starts = self.lines.starts;
        let line = &self.lines.line;
        if starts && let Some(end) = delimiter(self.boundaries, self.mbox, line) {
            self.flush_base64();
            self.stop = Some(Stop::End(end));
            return Ok(());
        }
        match self.mode {
            Mode::Text => {
                if starts && let Some(name) = uu_begin(trim_eol(line)) {
                    self.stop = Some(Stop::UuBegin(name));
                } else {
                    let (content, eol) = split_eol(line);
                    self.out.append(&mut self.held);
                    self.out.extend_from_slice(content);
                    self.held.extend_from_slice(eol);
                }
            }
            Mode::QuotedPrintable => {
                let (content, eol) = split_eol(line);
                self.out.append(&mut self.held);
                let soft = content.trim_ascii_end().strip_suffix(b"=");
                let decoded = quoted_printable::decode(
                    soft.unwrap_or(content),
                    quoted_printable::ParseMode::Robust,
                )
                .unwrap_or_else(|_| soft.unwrap_or(content).to_vec());
                self.out.extend_from_slice(&decoded);
                if soft.is_none() {
                    self.held.extend_from_slice(eol);
                }
            }
            Mode::Base64 => {
                let text = trim_eol(line);
                if self.nquad == 0
                    && text.len().is_multiple_of(4)
                    && decode_line(text, &mut self.out)
                {
                    self.lines.take();
                    return Ok(());
                }
                for &c in line.iter() {
                    if c == b'=' {
                        flush_base64(&mut self.quad, &mut self.nquad, &mut self.out);
                    } else if let Some(v) = base64_value(c) {
                        self.quad[self.nquad] = v;
                        self.nquad += 1;
                        if self.nquad == 4 {
                            flush_base64(&mut self.quad, &mut self.nquad, &mut self.out);
                        }
                    }
                }
            }
            Mode::UuSeek => {
                if starts && uu_begin(trim_eol(line)).is_some() {
                    self.mode = Mode::Uu;
                }
            }
            Mode::Uu => {
                let text = trim_eol(line);
                if starts && text.trim_ascii_end() == b"end" {
                    self.stop = Some(Stop::UuEnd);
                } else {
                    uu_line(text, &mut self.out);
                }
            }
        }
        self.lines.take();
        Ok(())
    }

    fn flush_base64(&mut self) {
        flush_base64(&mut self.quad, &mut self.nquad, &mut self.out);
    }
}

/// Decodes the base64 characters gathered so far (a whole group, or the 2 or
/// 3 before padding or the end).
pub(crate) fn flush_base64(quad: &mut [u8; 4], nquad: &mut usize, out: &mut Vec<u8>) {
    let q = *quad;
    let bytes = [
        q[0] << 2 | q[1] >> 4,
        q[1] << 4 | q[2] >> 2,
        q[2] << 6 | q[3],
    ];
    let n = match *nquad {
        4 => 3,
        3 => 2,
        2 => 1,
        _ => 0,
    };
    out.extend_from_slice(&bytes[..n]);
    *quad = [0; 4];
    *nquad = 0;
}

/// A whole, well-formed base64 line decoded at once (the common case);
/// false, with `out` unchanged, for anything else, which is then decoded
/// character by character.
fn decode_line(text: &[u8], out: &mut Vec<u8>) -> bool {
    use base64::Engine;
    let start = out.len();
    out.resize(start + text.len() / 4 * 3, 0);
    match base64::engine::general_purpose::STANDARD.decode_slice(text, &mut out[start..]) {
        Ok(n) => {
            out.truncate(start + n);
            true
        }
        Err(_) => {
            out.truncate(start);
            false
        }
    }
}

pub(crate) fn base64_value(c: u8) -> Option<u8> {
    match c {
        b'A'..=b'Z' => Some(c - b'A'),
        b'a'..=b'z' => Some(c - b'a' + 26),
        b'0'..=b'9' => Some(c - b'0' + 52),
        b'+' => Some(62),
        b'/' => Some(63),
        _ => None,
    }
}

/// One uuencoded line: a length character, then groups of four characters
/// for three bytes each.
fn uu_line(text: &[u8], out: &mut Vec<u8>) {
    let Some((&first, chars)) = text.split_first() else {
        return;
    };
    let want = usize::from(first.wrapping_sub(b' ') & 0x3f);
    let mut produced = 0;
    for group in chars.chunks(4) {
        let v = |i: usize| u32::from(group.get(i).map_or(0, |c| c.wrapping_sub(b' ') & 0x3f));
        let x = v(0) << 18 | v(1) << 12 | v(2) << 6 | v(3);
        for b in [(x >> 16) as u8, (x >> 8) as u8, x as u8] {
            if produced < want {
                out.push(b);
                produced += 1;
            }
        }
        if produced >= want {
            break;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn uu_lines_decode() {
        let mut out = Vec::new();
        // "Cat" uuencoded.
        uu_line(b"#0V%T", &mut out);
        assert_eq!(out, b"Cat");
        out.clear();
        uu_line(b"`", &mut out);
        assert!(out.is_empty());
    }

    #[test]
    fn params_are_unquoted_and_lowercased() {
        let (mime, p) = parse_params(br#"Multipart/Mixed; Boundary="a;b\"c"; charset=utf-8"#);
        assert_eq!(mime, "multipart/mixed");
        assert_eq!(param(&p, "boundary"), Some(&br#"a;b"c"#[..]));
        assert_eq!(param(&p, "charset"), Some(&b"utf-8"[..]));
    }

    #[test]
    fn uu_begin_lines() {
        assert_eq!(uu_begin(b"begin 644 clam.exe").as_deref(), Some("clam.exe"));
        assert_eq!(uu_begin(b"begin 0755 a b").as_deref(), Some("a b"));
        assert_eq!(uu_begin(b"begin the story"), None);
        assert_eq!(uu_begin(b"begin 644 "), None);
    }

    #[test]
    fn long_lines_are_read_in_pieces() {
        let mut data = vec![b'a'; MAX_LINE + 10];
        data.extend_from_slice(b"\n--b\n");
        let mut l = Lines::new(&data[..]);
        assert!(l.peek().unwrap());
        assert!(l.starts && l.line.len() == MAX_LINE);
        l.take();
        assert!(l.peek().unwrap());
        assert!(!l.starts && l.line.len() == 11);
        l.take();
        assert!(l.peek().unwrap());
        assert!(l.starts && l.line == b"--b\n");
    }
}
