//! ClamAV's HTML normaliser (libclamav/htmlnorm.c `cli_html_normalise`,
//! ClamAV 1.4), ported state for state so that the two outputs ClamAV scans
//! are byte-identical:
//!
//! * `nocomment.html`: tags and text lower-cased, comments removed (but kept
//!   inside `<script>`), whitespace runs collapsed, attributes re-quoted with
//!   `"`, character and entity references decoded (code units above 0xff as
//!   `&#xNNNN;`), line breaks dropped;
//! * `notags.html`: the text outside tags, whitespace collapsed, plus the
//!   `href` of `<a>` and the `src` of `<img>`.
//!
//! The input is read in ClamAV's chunks (at most 8191 bytes, NUL bytes
//! dropped, cut back to the last whitespace), because the state machine
//! skips leading whitespace at each chunk and resets a state at chunk
//! boundaries: chunking changes the output and is part of the format.
//!
//! Not reproduced (flagged in [`HtmlOutput::unsupported`], output continues
//! as if the feature were absent): decoding of `jscript.encode` /
//! `vbscript.encode` scripts (ClamAV's screnc decoder). The `javascript` and
//! `rfc2397` outputs are not produced (see the module docs of
//! [`crate::normalize`]). Both outputs are bounded: each is at most twice
//! the input plus the `href`/`src` copies (each at most 1024 bytes).

use super::entities::ENTITIES;

/// ClamAV's `HTML_STR_LENGTH`: longest tag name, attribute name or value kept.
const STR_LEN: usize = 1024;
/// `cli_readchunk`'s buffer size.
const CHUNK: usize = 8192;
/// `HTML_FILE_BUFF_LEN`: the output buffer, whose fill level decides whether
/// a comment's `<` can be taken back.
const OUT_BUFF: usize = 8192;

/// ClamAV's two normalised HTML outputs.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct HtmlOutput {
    pub nocomment: Vec<u8>,
    pub notags: Vec<u8>,
    /// A feature ClamAV handles and this port does not was met (encoded
    /// scripts); the outputs may then differ from ClamAV's.
    pub unsupported: Option<&'static str>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum St {
    Bad,
    Norm,
    EightBit,
    Comment,
    CharRef,
    EntityRefDecode,
    SkipWs,
    TrimWs,
    Tag,
    TagArg,
    TagArgVal,
    TagArgEqual,
    ProcessTag,
    CharRefDecode,
    Rfc2397Type,
    Rfc2397Init,
    Rfc2397Data,
    Rfc2397Finish,
    Rfc2397Esc,
    EscapeChar,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum InTag {
    None,
    Script,
    Style,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Quoted {
    Single,
    Double,
    Not,
}

/// An output file as htmlnorm.c buffers it: `pending` mirrors the fill
/// level of its 8 KiB buffer.
#[derive(Default)]
struct Out {
    data: Vec<u8>,
    pending: usize,
}

impl Out {
    fn c(&mut self, c: u8) {
        if self.pending == OUT_BUFF {
            self.pending = 0;
        }
        self.data.push(c);
        self.pending += 1;
    }

    fn s(&mut self, s: &[u8]) {
        if self.pending + s.len() >= OUT_BUFF {
            self.pending = 0;
        }
        self.data.extend_from_slice(s);
        if s.len() < OUT_BUFF {
            self.pending += s.len();
        }
    }

    /// Take back the last byte if it is still in the buffer.
    fn unput(&mut self) {
        if self.pending > 0 {
            self.pending -= 1;
            self.data.pop();
        }
    }
}

fn is_space(c: u8) -> bool {
    c == b' ' || (9..=13).contains(&c)
}

/// The C string a buffer holds (up to its first NUL).
fn cstr(b: &[u8]) -> &[u8] {
    match memchr::memchr(0, b) {
        Some(i) => &b[..i],
        None => b,
    }
}

fn rewind_to_space(chunk: &[u8]) -> usize {
    let count = chunk.len();
    let mut len = count;
    if len == 0 {
        return count;
    }
    while !is_space(chunk[len - 1]) && len > 1 {
        len -= 1;
    }
    if len == 1 { count } else { len }
}

/// `cli_readchunk` on a memory area.
fn read_chunk(data: &[u8], off: &mut usize) -> Option<Vec<u8>> {
    let start = *off;
    let end = data.len();
    let chunk_len = end.saturating_sub(start).min(CHUNK - 1);
    if chunk_len == 0 {
        return None;
    }
    let mut chunk = Vec::with_capacity(chunk_len);
    let ptr = match memchr::memchr(0, &data[start..start + chunk_len]) {
        None => {
            chunk.extend_from_slice(&data[start..start + chunk_len]);
            *off += chunk_len;
            start + chunk_len
        }
        Some(z) => {
            chunk.extend_from_slice(&data[start..start + z]);
            let mut p = start + z;
            while p < end && chunk.len() < CHUNK - 1 {
                let c = data[p];
                p += 1;
                if c != 0 {
                    chunk.push(c);
                }
            }
            *off += p - start;
            p
        }
    };
    if ptr < end && !is_space(data[ptr]) {
        let n = chunk.len();
        let count = rewind_to_space(&chunk);
        if count < n {
            chunk.truncate(count);
            *off = off.saturating_sub(n - count);
        }
    }
    Some(chunk)
}

/// `entity_norm`/`u16_normalize`: the bytes a UTF-16 code unit becomes.
fn u16_bytes(u: u16, out: &mut Vec<u8>) {
    const HEX: &[u8; 16] = b"0123456789abcdef";
    if u == 0 {
    } else if u < 0xff {
        out.push(u as u8);
    } else if u == 0x3002 || u == 0xff0e || u == 0xfe52 {
        out.push(b'.');
    } else {
        out.extend_from_slice(b"&#x");
        for shift in [12, 8, 4, 0] {
            out.push(HEX[usize::from((u >> shift) & 0xf)]);
        }
        out.push(b';');
    }
}

fn entity(name: &[u8]) -> Option<Vec<u8>> {
    let i = ENTITIES
        .binary_search_by(|(n, _)| n.as_bytes().cmp(name))
        .ok()?;
    let mut v = Vec::new();
    u16_bytes(ENTITIES[i].1, &mut v);
    Some(v)
}

struct Args(Vec<(Vec<u8>, Option<Vec<u8>>)>);

impl Args {
    fn add(&mut self, name: &[u8], value: Option<&[u8]>) {
        let value = value.map(|v| {
            let v = cstr(v);
            match v.first() {
                Some(b'"') => {
                    let inner = &v[1..];
                    inner[..inner.len().saturating_sub(1)].to_vec()
                }
                _ => v.to_vec(),
            }
        });
        self.0.push((cstr(name).to_vec(), value));
    }

    fn value(&self, name: &[u8]) -> Option<&[u8]> {
        self.0
            .iter()
            .find(|(n, _)| n == name)
            .and_then(|(_, v)| v.as_deref())
    }
}

fn push_capped(buf: &mut Vec<u8>, c: u8) {
    if buf.len() < STR_LEN {
        buf.push(c);
    }
}

/// Normalise an HTML document as ClamAV does.
pub fn normalize_html(data: &[u8]) -> HtmlOutput {
    let mut o2 = Out::default();
    let mut text = Out::default();
    let mut unsupported = None;
    let mut state = St::Norm;
    let mut next_state = St::Bad;
    let mut in_tag = InTag::None;
    let mut text_space_written = false;
    let mut binary = false;
    let mut escape = false;
    let mut hex = false;
    let mut quoted = Quoted::Not;
    let mut value: i64 = 0;
    let mut length: u32 = 0;
    let mut mbchar: u32 = 0;
    let mut mbchar2: u32 = 0;
    let mut tag: Vec<u8> = Vec::new();
    let mut tag_arg: Vec<u8> = Vec::new();
    let mut tag_val: Vec<u8> = Vec::new();
    let mut entity_val: Vec<u8> = Vec::new();
    let mut args = Args(Vec::new());
    let mut off = 0usize;
    let mut aborted = false;

    'chunks: while let Some(mut line) = read_chunk(data, &mut off) {
        let mut p = 0usize;
        while p < line.len() && is_space(line[p]) {
            p += 1;
        }
        while p < line.len() {
            let c = line[p];
            if !binary && c == b'\n' {
                line[p] = b' ';
                continue;
            }
            if !binary && c == b'\r' {
                p += 1;
                continue;
            }
            // The byte after the current one, as C's NUL-terminated chunk sees it.
            let next_at = |line: &[u8], i: usize| line.get(i).copied().unwrap_or(0);
            match state {
                St::Bad => {
                    aborted = true;
                    break 'chunks;
                }
                St::SkipWs => {
                    if is_space(c) {
                        p += 1;
                    } else {
                        state = next_state;
                        next_state = St::Bad;
                    }
                }
                St::TrimWs => {
                    if is_space(c) {
                        p += 1;
                    } else {
                        if in_tag == InTag::None {
                            o2.c(b' ');
                        }
                        state = next_state;
                        next_state = St::Bad;
                    }
                }
                St::EightBit => {
                    if c < 0x80 || mbchar >= 0x10000 {
                        if is_full_stop(mbchar, c) {
                            o2.c(b'.');
                            text.c(b'.');
                            if mbchar == 0xA1 {
                                p += 1;
                                mbchar = 0;
                                continue;
                            }
                        } else {
                            let c0 = (mbchar >> 16) as u8;
                            let c1 = (mbchar >> 8) as u8;
                            let c2 = mbchar as u8;
                            if c0 != 0 {
                                o2.c(c0);
                                text.c(c0);
                            }
                            if c0 != 0 || c1 != 0 {
                                o2.c(c1);
                                text.c(c1);
                            }
                            o2.c(c2);
                            // htmlnorm.c writes c1 here, not c2.
                            text.c(c1);
                        }
                        mbchar = 0;
                        state = next_state;
                        next_state = St::Norm;
                    } else {
                        mbchar = (mbchar << 8) | u32::from(c);
                        p += 1;
                    }
                }
                St::Norm => {
                    if c == b'<' {
                        o2.c(b'<');
                        if in_tag == InTag::None && !text_space_written {
                            text.c(b' ');
                            text_space_written = true;
                        }
                        p += 1;
                        state = St::SkipWs;
                        tag.clear();
                        next_state = St::Tag;
                    } else if is_space(c) {
                        if !text_space_written && in_tag == InTag::None {
                            text.c(b' ');
                            text_space_written = true;
                        }
                        state = St::TrimWs;
                        next_state = St::Norm;
                    } else if c == b'&' {
                        if !text_space_written && in_tag == InTag::None {
                            text.c(b' ');
                            text_space_written = true;
                        }
                        state = St::CharRef;
                        next_state = St::Norm;
                        p += 1;
                    } else if c >= 0x80 {
                        state = St::EightBit;
                        next_state = St::Norm;
                        mbchar = u32::from(c);
                        p += 1;
                    } else {
                        let mut l = c.to_ascii_lowercase();
                        if in_tag != InTag::None && l == b'\'' {
                            l = b'"';
                        }
                        o2.c(l);
                        if in_tag == InTag::None {
                            if c < 0x20 {
                                if !text_space_written {
                                    text.c(b' ');
                                    text_space_written = true;
                                }
                            } else {
                                text.c(l);
                                text_space_written = false;
                            }
                        }
                        p += 1;
                    }
                }
                St::Tag => {
                    if tag.is_empty() && c == b'!' {
                        if in_tag != InTag::None {
                            o2.c(b'!');
                        } else {
                            o2.unput();
                        }
                        state = St::Comment;
                        next_state = St::Bad;
                        p += 1;
                    } else if c == b'>' {
                        o2.c(b'>');
                        p += 1;
                        state = St::SkipWs;
                        next_state = St::ProcessTag;
                    } else if !is_space(c) {
                        let l = c.to_ascii_lowercase();
                        o2.c(l);
                        if in_tag != InTag::None && tag.is_empty() && c != b'/' {
                            state = St::Norm;
                        }
                        push_capped(&mut tag, l);
                        p += 1;
                    } else {
                        state = St::SkipWs;
                        tag_arg.clear();
                        next_state = if in_tag == InTag::None {
                            St::TagArg
                        } else {
                            St::ProcessTag
                        };
                    }
                }
                St::TagArg => {
                    if c == b'=' {
                        o2.c(b'=');
                        p += 1;
                        state = St::SkipWs;
                        escape = false;
                        quoted = Quoted::Not;
                        tag_val.clear();
                        next_state = St::TagArgVal;
                    } else if is_space(c) {
                        p += 1;
                        state = St::SkipWs;
                        next_state = St::TagArgEqual;
                    } else if c == b'>' {
                        o2.c(b'>');
                        if !tag_arg.is_empty() {
                            args.add(&tag_arg, None);
                        }
                        p += 1;
                        state = St::ProcessTag;
                        next_state = St::Bad;
                    } else {
                        if tag_arg.is_empty() {
                            o2.c(b' ');
                        }
                        let l = c.to_ascii_lowercase();
                        o2.c(l);
                        push_capped(&mut tag_arg, l);
                        p += 1;
                    }
                }
                St::TagArgEqual => {
                    if c == b'=' {
                        o2.c(b'=');
                        p += 1;
                        state = St::SkipWs;
                        escape = false;
                        quoted = Quoted::Not;
                        tag_val.clear();
                        next_state = St::TagArgVal;
                    } else {
                        if !tag_arg.is_empty() {
                            args.add(&tag_arg, None);
                        }
                        tag_arg.clear();
                        state = St::TagArg;
                        next_state = St::Bad;
                    }
                }
                St::TagArgVal => {
                    if tag_val.as_slice() == b"data:" || tag_val.as_slice() == b"\"data:" {
                        o2.unput();
                        if quoted != Quoted::Not {
                            o2.c(b'"');
                        }
                        tag_val.clear();
                        state = St::Rfc2397Type;
                        next_state = St::TagArg;
                    } else if c == b'&' {
                        state = St::CharRef;
                        next_state = St::TagArgVal;
                        p += 1;
                    } else if c == b'\'' || c == b'"' {
                        let this = if c == b'\'' {
                            Quoted::Single
                        } else {
                            Quoted::Double
                        };
                        if tag_val.is_empty() {
                            quoted = this;
                            o2.c(b'"');
                            push_capped(&mut tag_val, b'"');
                            p += 1;
                        } else if !escape && quoted == this {
                            o2.c(b'"');
                            push_capped(&mut tag_val, b'"');
                            args.add(&tag_arg, Some(&tag_val));
                            p += 1;
                            state = St::SkipWs;
                            tag_arg.clear();
                            next_state = St::TagArg;
                        } else {
                            o2.c(b'"');
                            push_capped(&mut tag_val, b'"');
                            p += 1;
                        }
                    } else if is_space(c) || c == b'>' {
                        if quoted == Quoted::Not {
                            args.add(&tag_arg, Some(&tag_val));
                            state = St::SkipWs;
                            tag_arg.clear();
                            next_state = St::TagArg;
                        } else {
                            o2.c(c);
                            push_capped(&mut tag_val, if is_space(c) { b' ' } else { b'>' });
                            state = St::SkipWs;
                            quoted = Quoted::Not;
                            next_state = St::TagArgVal;
                            p += 1;
                        }
                    } else {
                        if mbchar2 != 0 && (c < 0x80 || mbchar2 >= 0x10000) {
                            if is_full_stop(mbchar2, c) {
                                o2.c(b'.');
                                push_capped(&mut tag_val, b'.');
                                if mbchar2 == 0xA1 {
                                    p += 1;
                                    mbchar2 = 0;
                                    continue;
                                }
                            } else {
                                let c0 = (mbchar2 >> 16) as u8;
                                let c1 = (mbchar2 >> 8) as u8;
                                let c2 = mbchar2 as u8;
                                if c0 != 0 {
                                    o2.c(c0);
                                }
                                if c0 != 0 || c1 != 0 {
                                    o2.c(c1);
                                }
                                o2.c(c2);
                                if c0 != 0 {
                                    push_capped(&mut tag_val, c0);
                                }
                                if c0 != 0 || c1 != 0 {
                                    push_capped(&mut tag_val, c1);
                                }
                                push_capped(&mut tag_val, c2);
                            }
                            mbchar2 = 0;
                        }
                        if c >= 0x80 {
                            mbchar2 = (mbchar2 << 8) | u32::from(c);
                        } else {
                            o2.c(c.to_ascii_lowercase());
                            push_capped(&mut tag_val, c);
                        }
                        p += 1;
                    }
                    // Only the branches above that keep the state read the
                    // next byte; ClamAV does this after every branch.
                    escape = next_at(&line, p) == b'\\';
                }
                St::Comment => {
                    if in_tag != InTag::None && !is_space(c) {
                        let mut l = c.to_ascii_lowercase();
                        if l == b'\'' {
                            l = b'"';
                        }
                        o2.c(l);
                    }
                    if c == b'>' {
                        state = St::SkipWs;
                        next_state = St::Norm;
                    }
                    p += 1;
                }
                St::ProcessTag => {
                    state = St::SkipWs;
                    next_state = St::Norm;
                    let t = cstr(&tag);
                    if t.first() == Some(&b'/') {
                        if t == b"/script" || (t == b"/style" && in_tag == InTag::Style) {
                            in_tag = InTag::None;
                        }
                    } else if t == b"script" {
                        let lang = args.value(b"language");
                        if lang.is_some_and(|v| {
                            v.eq_ignore_ascii_case(b"jscript.encode")
                                || v.eq_ignore_ascii_case(b"vbscript.encode")
                        }) {
                            unsupported = Some("html_encoded_script");
                        }
                        in_tag = InTag::Script;
                    } else if t == b"style" {
                        in_tag = InTag::Style;
                    } else if t == b"%@" {
                        let lang = args.value(b"language");
                        if lang.is_some_and(|v| {
                            v.eq_ignore_ascii_case(b"jscript.encode")
                                || v.eq_ignore_ascii_case(b"vbscript.encode")
                        }) {
                            unsupported = Some("html_encoded_script");
                        }
                    } else if t == b"a" || t == b"img" {
                        let name: &[u8] = if t == b"a" { b"href" } else { b"src" };
                        if let Some(v) = args.value(name).filter(|v| !v.is_empty()) {
                            text.s(v);
                            text.c(b' ');
                            text_space_written = true;
                        }
                    }
                    args.0.clear();
                }
                St::CharRef => {
                    if c == b'#' {
                        value = 0;
                        hex = false;
                        state = St::CharRefDecode;
                        p += 1;
                    } else {
                        state = St::EntityRefDecode;
                    }
                }
                St::EntityRefDecode => {
                    let in_val = next_state == St::TagArgVal;
                    if c == b';' {
                        match entity(&entity_val) {
                            Some(n) => {
                                for &b in &n {
                                    o2.c(b);
                                    if in_val {
                                        push_capped(&mut tag_val, b);
                                    }
                                }
                            }
                            None => {
                                o2.c(b'&');
                                if in_val {
                                    push_capped(&mut tag_val, b'&');
                                }
                                for &b in &entity_val {
                                    let l = b.to_ascii_lowercase();
                                    o2.c(l);
                                    if in_val {
                                        push_capped(&mut tag_val, l);
                                    }
                                }
                                if in_val {
                                    push_capped(&mut tag_val, b';');
                                }
                                o2.c(b';');
                            }
                        }
                        entity_val.clear();
                        state = next_state;
                        next_state = St::Bad;
                        p += 1;
                    } else if (c.is_ascii_alphanumeric() || c == b'_' || c == b':' || c == b'-')
                        && entity_val.len() < STR_LEN
                    {
                        entity_val.push(c);
                        p += 1;
                    } else {
                        if in_val {
                            push_capped(&mut tag_val, b'&');
                        }
                        o2.c(b'&');
                        for &b in &entity_val {
                            let l = b.to_ascii_lowercase();
                            o2.c(l);
                            if in_val {
                                push_capped(&mut tag_val, l);
                            }
                        }
                        state = next_state;
                        next_state = St::Bad;
                        entity_val.clear();
                    }
                }
                St::CharRefDecode => {
                    if value == 0 && (c == b'x' || c == b'X') {
                        hex = true;
                        p += 1;
                    } else if c == b';' {
                        if next_state == St::TagArgVal {
                            push_capped(&mut tag_val, value as u8);
                        }
                        if value < 0x80 {
                            o2.c((value as u8).to_ascii_lowercase());
                        } else {
                            let mut b = Vec::new();
                            u16_bytes(value as u16, &mut b);
                            o2.s(&b);
                        }
                        state = next_state;
                        next_state = St::Bad;
                        p += 1;
                    } else if c.is_ascii_digit() || (hex && c.is_ascii_hexdigit()) {
                        if hex && value < i64::MAX / 16 {
                            value *= 16;
                        } else if value < i64::MAX / 10 {
                            value *= 10;
                        } else {
                            o2.c(value as u8);
                            state = next_state;
                            next_state = St::Bad;
                            p += 1;
                            continue;
                        }
                        let inc = if c.is_ascii_digit() {
                            i64::from(c - b'0')
                        } else {
                            i64::from(c.to_ascii_lowercase() - b'a' + 10)
                        };
                        if value > i64::MAX - inc {
                            o2.c(value as u8);
                            state = next_state;
                            next_state = St::Bad;
                            p += 1;
                            continue;
                        }
                        value += inc;
                        p += 1;
                    } else {
                        o2.c(value as u8);
                        state = next_state;
                        next_state = St::Bad;
                    }
                }
                St::Rfc2397Type => {
                    if c == b'\'' || c == b'"' {
                        let this = if c == b'\'' {
                            Quoted::Single
                        } else {
                            Quoted::Double
                        };
                        if !escape && quoted == this {
                            state = St::SkipWs;
                            tag_arg.clear();
                            next_state = St::TagArg;
                        } else {
                            push_capped(&mut tag_val, b'"');
                        }
                        p += 1;
                    } else if is_space(c) || c == b'>' {
                        if quoted == Quoted::Not {
                            state = St::SkipWs;
                            tag_arg.clear();
                            next_state = St::TagArg;
                        } else {
                            push_capped(&mut tag_val, if is_space(c) { b' ' } else { b'>' });
                            state = St::SkipWs;
                            quoted = Quoted::Not;
                            next_state = St::Rfc2397Type;
                            p += 1;
                        }
                    } else if c == b',' {
                        state = St::Rfc2397Init;
                        next_state = St::Bad;
                        p += 1;
                    } else {
                        push_capped(&mut tag_val, c.to_ascii_lowercase());
                        p += 1;
                    }
                    escape = next_at(&line, p) == b'\\';
                }
                St::Rfc2397Init => {
                    state = St::Rfc2397Data;
                    binary = true;
                }
                St::Rfc2397Data => {
                    if c == b'&' {
                        state = St::CharRef;
                        next_state = St::Rfc2397Data;
                    } else if c == b'%' {
                        length = 0;
                        value = 0;
                        state = St::EscapeChar;
                        next_state = St::Rfc2397Esc;
                    } else if (c == b'\'' && !escape && quoted == Quoted::Single)
                        || (c == b'"' && !escape && quoted == Quoted::Double)
                        || ((is_space(c) || c == b'>') && quoted == Quoted::Not)
                    {
                        state = St::Rfc2397Finish;
                    }
                    p += 1;
                    escape = next_at(&line, p) == b'\\';
                }
                St::Rfc2397Finish => {
                    state = St::SkipWs;
                    escape = false;
                    quoted = Quoted::Not;
                    next_state = St::TagArg;
                    binary = false;
                }
                St::Rfc2397Esc => {
                    state = St::Rfc2397Data;
                }
                St::EscapeChar => {
                    if value < i64::MAX / 16 {
                        value *= 16;
                    } else {
                        state = next_state;
                        next_state = St::Bad;
                        p += 1;
                        continue;
                    }
                    length += 1;
                    if c.is_ascii_hexdigit() {
                        value += if c.is_ascii_digit() {
                            i64::from(c - b'0')
                        } else {
                            i64::from(c.to_ascii_lowercase() - b'a' + 10)
                        };
                    } else {
                        state = next_state;
                    }
                    if length == 2 {
                        state = next_state;
                    }
                    p += 1;
                }
            }
        }
        if next_state == state {
            next_state = St::Bad;
        }
    }
    if !aborted {
        // Unfinished entity at the end of the input.
        match entity(&entity_val) {
            Some(n) => o2.s(&n),
            None => {
                if !entity_val.is_empty() {
                    o2.c(b'&');
                    for &b in &entity_val {
                        o2.c(b.to_ascii_lowercase());
                    }
                }
            }
        }
    }
    HtmlOutput {
        nocomment: o2.data,
        notags: text.data,
        unsupported,
    }
}

/// Whether the multi-byte character gathered so far (`mb`, before byte `c`)
/// is one htmlnorm.c writes as `.`: the ideographic and full-width full
/// stops, the small full stop, and `\xA1` before `C`, `D` or `O`.
fn is_full_stop(mb: u32, c: u8) -> bool {
    matches!(mb, 0xE38082 | 0xEFBC8E | 0xEFB992) || (mb == 0xA1 && matches!(c, 0x43 | 0x44 | 0x4F))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn n(s: &[u8]) -> HtmlOutput {
        normalize_html(s)
    }

    #[test]
    fn comments_tags_case_and_whitespace() {
        let o = n(b"<html><body>\n<!-- a comment -->\n<P>Hello   WORLD For More Inform</P>\n<script>var X = 1;</script></body></html>\n");
        assert_eq!(
            o.nocomment,
            b"<html><body><p>hello world for more inform</p><script>varx=1;</script></body></html>"
                .to_vec()
        );
        assert_eq!(o.notags, b" hello world for more inform ".to_vec());
        assert_eq!(o.unsupported, None);
    }

    #[test]
    fn entities_and_character_references_are_decoded() {
        let o = n(b"<p>A&amp;B &#65;&#x42; &hearts; &nosuch; &#x263a;</p>");
        assert_eq!(
            o.nocomment,
            b"<p>a&b ab &#x2665; &nosuch; &#x263a;</p>".to_vec()
        );
    }

    #[test]
    fn attributes_are_requoted_and_links_go_to_notags() {
        let o = n(b"<A HREF='http://X.example/Y' Title=T>link</a>");
        assert_eq!(
            o.nocomment,
            b"<a href=\"http://x.example/y\" title=t>link</a>".to_vec()
        );
        assert_eq!(o.notags, b" http://X.example/Y link ".to_vec());
    }

    #[test]
    fn encoded_script_is_flagged() {
        let o = n(b"<script language=\"JScript.Encode\">#@~^AAAAAA==^#~@</script>");
        assert_eq!(o.unsupported, Some("html_encoded_script"));
    }

    #[test]
    fn nul_bytes_are_dropped_and_input_is_chunked() {
        let mut big = b"<p>".to_vec();
        for i in 0..5000 {
            big.extend_from_slice(format!("Word{i} ").as_bytes());
        }
        big.push(0);
        big.extend_from_slice(b"END</p>");
        let o = n(&big);
        assert!(o.nocomment.ends_with(b"word4999 end</p>"));
        assert!(!o.nocomment.contains(&0));
    }
}
