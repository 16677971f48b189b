//! Parsing `.ndb` lines: `Name:TargetType:Offset:HexSig[:MinFL[:MaxFL]]`.
//!
//! Supported hex syntax: bytes, `??`, nibble wildcards (`a?`, `?a`), `*`,
//! `{n}`, `{n-m}`, `{n-}`, `{-m}`, `[n-m]`, `(aa|bb|cc)` alternatives (of
//! any lengths, with wildcards) and `!(aa|bb)` negated alternatives of equal
//! length. Offsets: `*`, `n`, `EOF-n`, `EP+n`, `EP-n`, `Sx+n`, `SEx`, `SL+n`,
//! each with an optional `,MaxShift` (the exe-relative ones only for target
//! types 1, 6 and 9, as ClamAV requires). Things that need
//! ClamAV's normalisation are [`NdbLineError::Unsupported`] with a
//! kind to count under, never a silent drop.

use crate::hashdb::{HEX, parse_u64};

/// Most elements one signature may have (bounds the verifier's recursion).
pub const MAX_ELEMS: usize = 1024;
/// Most alternatives in one `( | )` group.
pub const MAX_ALTS: usize = 256;

/// Which files a signature applies to, checked on the object's first bytes.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub enum Target {
    /// 0: any file.
    Any,
    /// 1: PE (`MZ`).
    Pe,
    /// 2: OLE2 compound documents.
    Ole2,
    /// 3: HTML, matched only in the normalised layers (see [`crate::normalize`]).
    Html,
    /// 4: mail, matched in the raw bytes of objects typed as mail.
    Mail,
    /// 5: graphics (PNG, JPEG, GIF, BMP, TIFF).
    Graphics,
    /// 6: ELF.
    Elf,
    /// 7: ASCII text, matched only in the normalised text (see [`crate::normalize`]).
    Ascii,
    /// 9: Mach-O (thin or fat).
    MachO,
    /// 10: PDF (`%PDF-` in the first 1024 bytes).
    Pdf,
    /// 12: Java class files.
    Java,
}

/// How many leading bytes [`Target::accepts`] looks at.
pub const TARGET_HEAD: usize = 1024;

impl Target {
    /// Whether an object starting with `head` (up to [`TARGET_HEAD`] bytes) is of this type.
    pub fn accepts(self, head: &[u8]) -> bool {
        match self {
            Target::Any => true,
            Target::Pe => head.starts_with(b"MZ"),
            Target::Ole2 => head.starts_with(&[0xd0, 0xcf, 0x11, 0xe0, 0xa1, 0xb1, 0x1a, 0xe1]),
            Target::Graphics => {
                head.starts_with(b"\x89PNG")
                    || head.starts_with(&[0xff, 0xd8, 0xff])
                    || head.starts_with(b"GIF8")
                    || head.starts_with(b"BM")
                    || head.starts_with(b"II*\0")
                    || head.starts_with(b"MM\0*")
            }
            Target::Elf => head.starts_with(b"\x7fELF"),
            Target::MachO => [
                [0xfe, 0xed, 0xfa, 0xce],
                [0xfe, 0xed, 0xfa, 0xcf],
                [0xce, 0xfa, 0xed, 0xfe],
                [0xcf, 0xfa, 0xed, 0xfe],
                [0xca, 0xfe, 0xba, 0xbe],
            ]
            .iter()
            .any(|m| head.starts_with(m)),
            Target::Pdf => {
                memchr::memmem::find(&head[..head.len().min(TARGET_HEAD)], b"%PDF-").is_some()
            }
            Target::Java => head.starts_with(&[0xca, 0xfe, 0xba, 0xbe]),
            // Decided by the object's type, not its head: enabled by the
            // scan for the layers they apply to.
            Target::Html | Target::Mail | Target::Ascii => false,
        }
    }
}

/// Where a match must start.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub enum Offset {
    /// `*`
    Any,
    /// `n` (span 0) or `n,m`: start in `n..=n+m`.
    Abs { start: u64, span: u64 },
    /// `EOF-n` or `EOF-n,m`: start in `len-n..=len-n+m`.
    Eof { back: u64, span: u64 },
    /// `EP+n` / `EP-n` (`delta` = ±n), from the entry point's file offset.
    Ep { delta: i64, span: u64 },
    /// `Sx+n`: from the start of section `x` (0-based).
    Section { index: u32, add: u64, span: u64 },
    /// `SEx`: anywhere in section `x` (start in `raw..=raw+rsz+span`).
    SectionWhole { index: u32, span: u64 },
    /// `SL+n`: from the start of the last section.
    LastSection { add: u64, span: u64 },
}

/// What an object's executable headers say, for resolving offsets
/// (ClamAV's `cli_target_info`).
#[derive(Debug, Clone, Default)]
pub enum Layout {
    /// Not an executable type: no header to parse (`status` 0).
    #[default]
    NotExe,
    /// Parsed PE or ELF headers (`status` 1).
    Exe(crate::exe::ExeInfo),
    /// A PE or ELF whose headers did not parse (`status` -1): as in ClamAV,
    /// no `EOF-n` or exe-relative offset resolves for it.
    Broken,
}

impl Offset {
    /// Whether this offset needs the object's executable layout.
    pub fn is_exe_relative(self) -> bool {
        !matches!(self, Offset::Any | Offset::Abs { .. } | Offset::Eof { .. })
    }

    /// The range `lo..=hi` where a match may start in an object of `len`
    /// bytes with this layout; `None` when it does not resolve (as ClamAV's
    /// `cli_caloff`, the signature then cannot match).
    pub fn resolve(self, len: u64, layout: &Layout) -> Option<(u64, u64)> {
        let exe = match (self, layout) {
            (Offset::Any, _) => return Some((0, u64::MAX)),
            (Offset::Abs { start, span }, _) => return Some((start, start.saturating_add(span))),
            (_, Layout::Broken) => return None,
            (Offset::Eof { back, span }, _) => {
                let s = len.checked_sub(back)?;
                return Some((s, s.saturating_add(span)));
            }
            (_, Layout::NotExe) => return None,
            (_, Layout::Exe(e)) => e,
        };
        let section = |i: u32| exe.sections.get(i as usize);
        let (lo, span) = match self {
            Offset::Ep { delta, span } => {
                let ep = exe.ep?;
                let lo = if delta >= 0 {
                    ep.checked_add(delta.unsigned_abs())?
                } else {
                    ep.checked_sub(delta.unsigned_abs())?
                };
                (lo, span)
            }
            Offset::Section { index, add, span } => {
                (u64::from(section(index)?.raw).checked_add(add)?, span)
            }
            Offset::SectionWhole { index, span } => {
                let s = section(index)?;
                (u64::from(s.raw), u64::from(s.rsz).saturating_add(span))
            }
            Offset::LastSection { add, span } => {
                (u64::from(exe.sections.last()?.raw).checked_add(add)?, span)
            }
            Offset::Any | Offset::Abs { .. } | Offset::Eof { .. } => return None,
        };
        Some((lo, lo.saturating_add(span)))
    }

    /// Whether a match starting at `start` in an object of `len` bytes is
    /// allowed (offsets that need no executable layout).
    pub fn allows(self, start: u64, len: u64) -> bool {
        self.resolve(len, &Layout::NotExe)
            .is_some_and(|(lo, hi)| start >= lo && start <= hi)
    }
}

/// One pattern byte: matches `b` when `b & mask == val`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct ByteM {
    pub val: u8,
    pub mask: u8,
}

impl ByteM {
    pub const fn exact(b: u8) -> ByteM {
        ByteM { val: b, mask: 0xff }
    }

    #[inline]
    pub fn matches(self, b: u8) -> bool {
        b & self.mask == self.val
    }

    pub fn is_exact(self) -> bool {
        self.mask == 0xff
    }
}

/// One element of a body signature.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub enum Elem {
    /// Consecutive bytes, possibly with (nibble) wildcards.
    Seq(#[serde(with = "crate::cache::codec::records")] Vec<ByteM>),
    /// One of these sequences.
    Alt(Vec<Vec<ByteM>>),
    /// `len` bytes equal to none of these (all of length `len`).
    NotAlt(Vec<Vec<u8>>),
    /// Skip `min..=max` bytes (`max: None` = unbounded).
    Gap { min: u64, max: Option<u64> },
}

/// A parsed body signature. `name` borrows from the line.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NdbSignature<'a> {
    pub name: &'a [u8],
    pub target: Target,
    pub offset: Offset,
    pub elems: Vec<Elem>,
    /// `(B)`, `(L)`, `(W)` checks before the first and after the last byte.
    pub edges: Edges,
}

/// A character class marker: `(B)` word boundary, `(L)` line end, `(W)`
/// non-alphanumeric (ClamAV's `matcher-ac.c` specials).
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub enum Bound {
    Boundary,
    Line,
    Word,
}

/// ClamAV's `boundary[]` table: bit 1 = may precede a word, bit 2 = may
/// follow one (`matcher-ac.c`).
fn boundary_class(b: u8) -> u8 {
    match b {
        b'.' | b'<' | b'@' => 1,
        b'\n' | b'\r' | b'"' | b'\'' | b'=' | b'>' => 2,
        b' ' | b'-' | b'/' | b'_' => 3,
        _ => 0,
    }
}

/// Zero-width checks at a signature's ends: `(X)` as the first token,
/// `(X)` or `!(X)` as the last (ClamAV turns those into left/right
/// boundary flags; elsewhere they match one byte of the class).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, serde::Serialize, serde::Deserialize)]
pub struct Edges {
    pub left: Option<Bound>,
    /// The class and whether it is negated.
    pub right: Option<(Bound, bool)>,
}

impl Edges {
    pub fn is_empty(&self) -> bool {
        self.left.is_none() && self.right.is_none()
    }

    /// The left check, given the byte before the match (`None` at the
    /// start of the object).
    pub fn left_ok(&self, prev: Option<u8>) -> bool {
        match (self.left, prev) {
            (None, _) | (Some(_), None) => true,
            (Some(Bound::Boundary), Some(p)) => boundary_class(p) & 1 != 0,
            (Some(Bound::Line), Some(p)) => p == b'\n',
            (Some(Bound::Word), Some(p)) => !p.is_ascii_alphanumeric(),
        }
    }

    /// The right check, given the two bytes after the match (`None` past
    /// the end of the object).
    pub fn right_ok(&self, next: Option<u8>, next2: Option<u8>) -> bool {
        let Some((b, negated)) = self.right else {
            return true;
        };
        let hit = match (b, next) {
            (_, None) => true,
            (Bound::Boundary, Some(n)) => boundary_class(n) >= 2,
            (Bound::Line, Some(n)) => n == b'\n' || (n == b'\r' && next2 == Some(b'\n')),
            (Bound::Word, Some(n)) => !n.is_ascii_alphanumeric(),
        };
        hit != negated
    }
}

fn bound_of(inner: &[u8]) -> Option<Bound> {
    match inner {
        b"B" => Some(Bound::Boundary),
        b"L" => Some(Bound::Line),
        b"W" => Some(Bound::Word),
        _ => None,
    }
}

/// One byte of a class inside a signature: `(B)`, `(W)`, `(L)` (which
/// also takes `\r\n`) and the negated `!(B)`, `!(W)`.
fn class_elem(b: Bound, negated: bool) -> Result<Elem, NdbLineError> {
    let bytes = |f: &dyn Fn(u8) -> bool| -> Elem {
        Elem::Alt(
            (0..=255u8)
                .filter(|&x| f(x))
                .map(|x| vec![ByteM::exact(x)])
                .collect(),
        )
    };
    Ok(match (b, negated) {
        (Bound::Boundary, n) => bytes(&|x| (boundary_class(x) != 0) != n),
        (Bound::Word, n) => bytes(&|x| x.is_ascii_alphanumeric() == n),
        (Bound::Line, false) => Elem::Alt(vec![
            vec![ByteM::exact(b'\n')],
            vec![ByteM::exact(b'\r'), ByteM::exact(b'\n')],
        ]),
        (Bound::Line, true) => return Err(NdbLineError::Unsupported("ndb_boundary")),
    })
}

/// Split the `(X)` edge markers off a hex signature and parse the rest,
/// with class markers inside it. A marker next to a `*` or a jump is
/// counted unsupported: ClamAV splits the signature there and the marker
/// becomes an edge check of a part, which this engine does not model.
pub fn parse_hex_edges(s: &[u8]) -> Result<(Vec<Elem>, Edges), NdbLineError> {
    let mut edges = Edges::default();
    let mut mid = s;
    if mid.len() >= 3
        && mid[0] == b'('
        && mid[2] == b')'
        && let Some(b) = bound_of(&mid[1..2])
    {
        edges.left = Some(b);
        mid = &mid[3..];
    }
    let n = mid.len();
    if n >= 3
        && mid[n - 3] == b'('
        && mid[n - 1] == b')'
        && let Some(b) = bound_of(&mid[n - 2..n - 1])
    {
        let negated = n >= 4 && mid[n - 4] == b'!';
        edges.right = Some((b, negated));
        mid = &mid[..n - 3 - usize::from(negated)];
    }
    if mid.first() == Some(&b'!') && class_at(mid, 0).is_some() {
        // A negated class first: clamscan 1.4.6 crashes on it.
        return Err(NdbLineError::Unsupported("ndb_boundary"));
    }
    let gap_edge =
        |c: Option<&u8>| c.is_some_and(|c| matches!(c, b'*' | b'{' | b'[' | b'}' | b']'));
    if (edges.left.is_some() && gap_edge(mid.first()))
        || (edges.right.is_some() && gap_edge(mid.last()))
    {
        return Err(NdbLineError::Unsupported("ndb_boundary"));
    }
    Ok((parse_hex_with(mid, true)?, edges))
}

/// Why an ndb line was not loaded.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum NdbLineError {
    /// Valid ClamAV syntax this engine does not honour; counted under the kind.
    #[error("unsupported ({0})")]
    Unsupported(&'static str),
    /// Not a valid signature.
    #[error("{0}")]
    Malformed(String),
}

fn bad(msg: impl Into<String>) -> NdbLineError {
    NdbLineError::Malformed(msg.into())
}

/// Parse one ndb line (see the module docs).
pub fn parse_ndb_line(line: &str) -> Result<NdbSignature<'_>, NdbLineError> {
    parse_ndb_bytes(line.as_bytes())
}

/// [`parse_ndb_line`] on raw bytes (names need not be UTF-8).
pub fn parse_ndb_bytes(line: &[u8]) -> Result<NdbSignature<'_>, NdbLineError> {
    let line = line.trim_ascii();
    let f: Vec<&[u8]> = line.splitn(7, |&b| b == b':').collect();
    if f.len() < 4 {
        return Err(bad(format!(
            "expected Name:TargetType:Offset:HexSig, found {} field(s)",
            f.len()
        )));
    }
    let name = f[0];
    if name.is_empty() {
        return Err(bad("empty signature name"));
    }
    for (i, fl) in f.iter().enumerate().skip(4).take(2) {
        if !fl.is_empty() && parse_u64(fl).is_none() {
            return Err(bad(format!(
                "field {} (functionality level) is not a number: {:?}",
                i + 1,
                String::from_utf8_lossy(fl)
            )));
        }
    }
    let target = parse_target(f[1])?;
    let offset = parse_offset(f[2])?;
    if offset.is_exe_relative() && target == Target::MachO {
        // Valid for ClamAV, but Mach-O headers are not parsed here.
        return Err(NdbLineError::Unsupported("ndb_offset_macho"));
    }
    if offset.is_exe_relative() && !matches!(target, Target::Pe | Target::Elf) {
        // ClamAV refuses these (`cli_caloff`: invalid offset type for target).
        return Err(bad(format!(
            "offset {:?} needs target type 1 (PE), 6 (ELF) or 9 (Mach-O)",
            String::from_utf8_lossy(f[2])
        )));
    }
    let (elems, edges) = parse_hex_edges(f[3])?;
    Ok(NdbSignature {
        name,
        target,
        offset,
        elems,
        edges,
    })
}

pub fn parse_target(t: &[u8]) -> Result<Target, NdbLineError> {
    let n = parse_u64(t).ok_or_else(|| {
        bad(format!(
            "target type {:?} is not a number",
            String::from_utf8_lossy(t)
        ))
    })?;
    Ok(match n {
        0 => Target::Any,
        1 => Target::Pe,
        2 => Target::Ole2,
        3 => Target::Html,
        4 => Target::Mail,
        5 => Target::Graphics,
        6 => Target::Elf,
        7 => Target::Ascii,
        9 => Target::MachO,
        10 => Target::Pdf,
        11 => return Err(NdbLineError::Unsupported("ndb_target_flash")),
        12 => Target::Java,
        _ => return Err(NdbLineError::Unsupported("ndb_target_other")),
    })
}

fn num(s: &[u8], what: &str) -> Result<u64, NdbLineError> {
    parse_u64(s).ok_or_else(|| {
        bad(format!(
            "{what} {:?} is not a number",
            String::from_utf8_lossy(s)
        ))
    })
}

/// Parse an offset field (see the module docs); exe-relative offsets are
/// returned as such and the caller checks them against its target type.
pub fn parse_offset(o: &[u8]) -> Result<Offset, NdbLineError> {
    if o == b"*" {
        return Ok(Offset::Any);
    }
    if o.len() > 64 {
        return Err(bad("offset string longer than 64 bytes"));
    }
    let (body, span) = match o.iter().position(|&b| b == b',') {
        Some(i) => (&o[..i], num(&o[i + 1..], "offset shift")?),
        None => (o, 0),
    };
    if let Some(n) = body.strip_prefix(b"EP+") {
        let n = i64::try_from(num(n, "offset")?).map_err(|_| bad("offset too large"))?;
        return Ok(Offset::Ep { delta: n, span });
    }
    if let Some(n) = body.strip_prefix(b"EP-") {
        let n = i64::try_from(num(n, "offset")?).map_err(|_| bad("offset too large"))?;
        return Ok(Offset::Ep { delta: -n, span });
    }
    if let Some(rest) = body.strip_prefix(b"S") {
        let index = |x: &[u8]| {
            u32::try_from(num(x, "section number")?).map_err(|_| bad("section number too large"))
        };
        if let Some(x) = rest.strip_prefix(b"E") {
            return Ok(Offset::SectionWhole {
                index: index(x)?,
                span,
            });
        }
        if let Some(n) = rest.strip_prefix(b"L+") {
            return Ok(Offset::LastSection {
                add: num(n, "offset")?,
                span,
            });
        }
        if let Some(plus) = rest.iter().position(|&b| b == b'+') {
            return Ok(Offset::Section {
                index: index(&rest[..plus])?,
                add: num(&rest[plus + 1..], "offset")?,
                span,
            });
        }
        return Err(bad(format!(
            "invalid offset {:?}",
            String::from_utf8_lossy(o)
        )));
    }
    if body.starts_with(b"VI") {
        return Err(NdbLineError::Unsupported("ndb_offset_vi"));
    }
    if let Some(n) = body.strip_prefix(b"EOF-") {
        return Ok(Offset::Eof {
            back: num(n, "offset")?,
            span,
        });
    }
    Ok(Offset::Abs {
        start: num(body, "offset")?,
        span,
    })
}

fn hexval(c: u8) -> Option<u8> {
    let v = HEX[c as usize];
    (v < 16).then_some(v)
}

/// A byte pattern pair: two hex digits, `??`, `a?` or `?a`.
fn pair(hi: u8, lo: u8) -> Option<ByteM> {
    let (hv, hm) = if hi == b'?' {
        (0, 0)
    } else {
        (hexval(hi)? << 4, 0xf0)
    };
    let (lv, lm) = if lo == b'?' {
        (0, 0)
    } else {
        (hexval(lo)?, 0x0f)
    };
    Some(ByteM {
        val: hv | lv,
        mask: hm | lm,
    })
}

fn parse_pairs(s: &[u8], at: usize) -> Result<Vec<ByteM>, NdbLineError> {
    if s.is_empty() {
        return Err(bad(format!("empty alternative at position {at}")));
    }
    if s.len() & 1 != 0 {
        return Err(bad(format!(
            "odd number of hex digits in alternative at position {at}"
        )));
    }
    s.chunks_exact(2)
        .map(|p| pair(p[0], p[1]))
        .collect::<Option<Vec<_>>>()
        .ok_or_else(|| bad(format!("bad hex in alternative at position {at}")))
}

fn parse_gap(inner: &[u8], at: usize) -> Result<Elem, NdbLineError> {
    let what = "jump bound";
    match inner.iter().position(|&b| b == b'-') {
        None => {
            let n = num(inner, what)?;
            Ok(Elem::Gap {
                min: n,
                max: Some(n),
            })
        }
        Some(i) => {
            let (a, b) = (&inner[..i], &inner[i + 1..]);
            let min = if a.is_empty() { 0 } else { num(a, what)? };
            let max = if b.is_empty() {
                None
            } else {
                Some(num(b, what)?)
            };
            if a.is_empty() && b.is_empty() {
                return Err(bad(format!("empty jump at position {at}")));
            }
            if max.is_some_and(|m| m < min) {
                return Err(bad(format!(
                    "jump {min}-{max:?} at position {at} has max < min"
                )));
            }
            Ok(Elem::Gap { min, max })
        }
    }
}

/// Find the closing `close` after `open_at`; error if missing.
fn closing(s: &[u8], open_at: usize, close: u8) -> Result<usize, NdbLineError> {
    s[open_at + 1..]
        .iter()
        .position(|&b| b == close)
        .map(|p| open_at + 1 + p)
        .ok_or_else(|| {
            bad(format!(
                "unclosed '{}' at position {open_at}",
                s[open_at] as char
            ))
        })
}

fn parse_alts(inner: &[u8], at: usize) -> Result<Vec<Vec<ByteM>>, NdbLineError> {
    if inner.len() == 1 && inner[0].is_ascii_alphabetic() {
        // (B), (L), (W): word/line boundary markers.
        return Err(NdbLineError::Unsupported("ndb_boundary"));
    }
    if inner
        .iter()
        .any(|&b| matches!(b, b'(' | b'{' | b'[' | b'*' | b'!'))
    {
        return Err(NdbLineError::Unsupported("ndb_complex_alternative"));
    }
    let alts = inner
        .split(|&b| b == b'|')
        .map(|a| parse_pairs(a, at))
        .collect::<Result<Vec<_>, _>>()?;
    if alts.len() > MAX_ALTS {
        return Err(bad(format!(
            "more than {MAX_ALTS} alternatives at position {at}"
        )));
    }
    Ok(alts)
}

/// A class marker `(X)` or `!(X)` starting at `i`: (class, negated, end).
fn class_at(s: &[u8], i: usize) -> Option<(Bound, bool, usize)> {
    let (negated, open) = if s.get(i) == Some(&b'!') {
        (true, i + 1)
    } else {
        (false, i)
    };
    if s.get(open) != Some(&b'(') || s.get(open + 2) != Some(&b')') {
        return None;
    }
    let b = bound_of(s.get(open + 1..open + 2)?)?;
    Some((b, negated, open + 3))
}

fn push_gap(elems: &mut Vec<Elem>, min: u64, max: Option<u64>) {
    if let Some(Elem::Gap { min: m0, max: x0 }) = elems.last_mut() {
        *m0 = m0.saturating_add(min);
        *x0 = match (*x0, max) {
            (Some(a), Some(b)) => Some(a.saturating_add(b)),
            _ => None,
        };
    } else {
        elems.push(Elem::Gap { min, max });
    }
}

/// Append `b` (parsed from the start of `hex`, the rest of the field) to
/// the sequence being built, or start one with room for the rest of the
/// field: the parsed elements are transient (anchoring copies what it
/// keeps), and growing each sequence byte by byte was half of parsing.
fn push_byte(elems: &mut Vec<Elem>, b: ByteM, hex: &[u8]) {
    if let Some(Elem::Seq(v)) = elems.last_mut() {
        v.push(b);
    } else {
        let mut v = Vec::with_capacity((hex.len() / 2).max(1));
        v.push(b);
        elems.push(Elem::Seq(v));
    }
}

/// Parse the hex signature field into elements (class markers `(B)`,
/// `(L)`, `(W)` are counted unsupported; `.ndb` lines go through
/// [`parse_hex_edges`]).
pub fn parse_hex(s: &[u8]) -> Result<Vec<Elem>, NdbLineError> {
    parse_hex_with(s, false)
}

fn parse_hex_with(s: &[u8], classes: bool) -> Result<Vec<Elem>, NdbLineError> {
    let mut elems: Vec<Elem> = Vec::new();
    let mut i = 0;
    while i < s.len() {
        if elems.len() > MAX_ELEMS {
            return Err(bad(format!("more than {MAX_ELEMS} elements")));
        }
        let c = s[i];
        match c {
            b'*' => {
                push_gap(&mut elems, 0, None);
                i += 1;
            }
            b'{' | b'[' => {
                let close = if c == b'{' { b'}' } else { b']' };
                let j = closing(s, i, close)?;
                match parse_gap(&s[i + 1..j], i)? {
                    Elem::Gap { min, max } => push_gap(&mut elems, min, max),
                    other => elems.push(other),
                }
                i = j + 1;
            }
            b'(' | b'!' if classes && class_at(s, i).is_some() => {
                let Some((b, negated, end)) = class_at(s, i) else {
                    return Err(bad(format!("bad class marker at position {i}")));
                };
                let prev = i.checked_sub(1);
                let next_gap = matches!(s.get(end), Some(b'*' | b'{' | b'['));
                let prev_gap = prev
                    .and_then(|p| s.get(p))
                    .is_some_and(|c| matches!(c, b'*' | b'}' | b']'));
                if next_gap || prev_gap {
                    return Err(NdbLineError::Unsupported("ndb_boundary"));
                }
                elems.push(class_elem(b, negated)?);
                i = end;
            }
            b'(' => {
                let j = closing(s, i, b')')?;
                let alts = parse_alts(&s[i + 1..j], i)?;
                elems.push(Elem::Alt(alts));
                i = j + 1;
            }
            b'!' => {
                if s.get(i + 1) != Some(&b'(') {
                    return Err(bad(format!("'!' not followed by '(' at position {i}")));
                }
                let j = closing(s, i + 1, b')')?;
                let alts = parse_alts(&s[i + 2..j], i)?;
                let len = alts[0].len();
                if alts
                    .iter()
                    .any(|a| a.len() != len || a.iter().any(|b| !b.is_exact()))
                {
                    return Err(NdbLineError::Unsupported("ndb_negated_alternative"));
                }
                let alts = alts
                    .into_iter()
                    .map(|a| a.into_iter().map(|b| b.val).collect())
                    .collect();
                elems.push(Elem::NotAlt(alts));
                i = j + 1;
            }
            _ => {
                let Some(&lo) = s.get(i + 1) else {
                    return Err(bad(format!("odd number of hex digits at position {i}")));
                };
                let b = pair(c, lo).ok_or_else(|| {
                    bad(format!(
                        "unexpected {:?} at position {i} of the hex signature",
                        String::from_utf8_lossy(&s[i..i + 2])
                    ))
                })?;
                push_byte(&mut elems, b, &s[i..]);
                i += 2;
            }
        }
    }
    if elems.len() > MAX_ELEMS {
        return Err(bad(format!("more than {MAX_ELEMS} elements")));
    }
    if !elems.iter().any(|e| !matches!(e, Elem::Gap { .. })) {
        return Err(bad("empty hex signature"));
    }
    Ok(elems)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ex(bytes: &[u8]) -> Elem {
        Elem::Seq(bytes.iter().map(|&b| ByteM::exact(b)).collect())
    }

    #[test]
    fn plain_line() {
        let s = parse_ndb_line("Test.Sig:0:*:deadBEEF").unwrap();
        assert_eq!(s.name, b"Test.Sig");
        assert_eq!(s.target, Target::Any);
        assert_eq!(s.offset, Offset::Any);
        assert_eq!(s.elems, vec![ex(&[0xde, 0xad, 0xbe, 0xef])]);
    }

    #[test]
    fn wildcards_and_nibbles() {
        let e = parse_hex(b"aa??b??c").unwrap();
        assert_eq!(
            e,
            vec![Elem::Seq(vec![
                ByteM::exact(0xaa),
                ByteM { val: 0, mask: 0 },
                ByteM {
                    val: 0xb0,
                    mask: 0xf0
                },
                ByteM {
                    val: 0x0c,
                    mask: 0x0f
                },
            ])]
        );
    }

    #[test]
    fn jumps() {
        let g = |min, max| Elem::Gap { min, max };
        assert_eq!(
            parse_hex(b"aa*bb").unwrap(),
            vec![ex(&[0xaa]), g(0, None), ex(&[0xbb])]
        );
        assert_eq!(parse_hex(b"aa{4}bb").unwrap()[1], g(4, Some(4)));
        assert_eq!(parse_hex(b"aa{2-7}bb").unwrap()[1], g(2, Some(7)));
        assert_eq!(parse_hex(b"aa{3-}bb").unwrap()[1], g(3, None));
        assert_eq!(parse_hex(b"aa{-9}bb").unwrap()[1], g(0, Some(9)));
        assert_eq!(parse_hex(b"aa[1-4]bb").unwrap()[1], g(1, Some(4)));
        // Adjacent jumps merge.
        assert_eq!(parse_hex(b"aa{1-2}{3}bb").unwrap()[1], g(4, Some(5)));
        assert!(parse_hex(b"aa{5-2}bb").is_err());
        assert!(parse_hex(b"aa{-}bb").is_err());
        assert!(parse_hex(b"aa{x}bb").is_err());
        assert!(parse_hex(b"aa{3bb").is_err());
    }

    #[test]
    fn alternatives() {
        let e = parse_hex(b"aa(bb|cc|ddee|f?)11").unwrap();
        assert_eq!(
            e[1],
            Elem::Alt(vec![
                vec![ByteM::exact(0xbb)],
                vec![ByteM::exact(0xcc)],
                vec![ByteM::exact(0xdd), ByteM::exact(0xee)],
                vec![ByteM {
                    val: 0xf0,
                    mask: 0xf0
                }],
            ])
        );
        let n = parse_hex(b"aa!(bb|cc)11").unwrap();
        assert_eq!(n[1], Elem::NotAlt(vec![vec![0xbb], vec![0xcc]]));
        assert_eq!(
            parse_hex(b"aa!(bb|ccdd)11"),
            Err(NdbLineError::Unsupported("ndb_negated_alternative"))
        );
        assert_eq!(
            parse_hex(b"aa(B)bb"),
            Err(NdbLineError::Unsupported("ndb_boundary"))
        );
        assert!(matches!(
            parse_hex(b"aa(bb|)cc"),
            Err(NdbLineError::Malformed(_))
        ));
        assert!(matches!(
            parse_hex(b"aa(bbcc"),
            Err(NdbLineError::Malformed(_))
        ));
        assert!(matches!(
            parse_hex(b"aa!bb"),
            Err(NdbLineError::Malformed(_))
        ));
    }

    #[test]
    fn boundary_markers_become_edges_or_byte_classes() {
        let (e, edges) = parse_hex_edges(b"(B)4142(W)43!(L)").unwrap();
        assert_eq!(edges.left, Some(Bound::Boundary));
        assert_eq!(edges.right, Some((Bound::Line, true)));
        assert_eq!(e.len(), 3);
        let Elem::Alt(w) = &e[1] else { panic!("{e:?}") };
        assert_eq!(w.len(), 256 - 62);
        // Left edge: start of object or a byte that may precede a word.
        assert!(edges.left_ok(None) && edges.left_ok(Some(b' ')) && !edges.left_ok(Some(b'a')));
        // Negated right edge: not at a line end.
        assert!(!edges.right_ok(Some(b'\n'), None) && !edges.right_ok(Some(b'\r'), Some(b'\n')));
        assert!(edges.right_ok(Some(b'\r'), Some(b'x')) && !edges.right_ok(None, None));
        // Next to a jump, or `!(X)` first, or `!(L)` inside: unsupported.
        for s in [
            &b"(B)*4142"[..],
            b"4142{2-3}(W)",
            b"41(B)*42",
            b"!(W)4142",
            b"41!(L)42",
        ] {
            assert_eq!(
                parse_hex_edges(s),
                Err(NdbLineError::Unsupported("ndb_boundary")),
                "{}",
                String::from_utf8_lossy(s)
            );
        }
        // Logical signatures (parse_hex) still count them unsupported.
        assert_eq!(
            parse_hex(b"41(B)42"),
            Err(NdbLineError::Unsupported("ndb_boundary"))
        );
    }

    #[test]
    fn offsets() {
        let off = |o: &str| parse_ndb_line(&format!("N:0:{o}:aabb")).map(|s| s.offset);
        assert_eq!(off("*"), Ok(Offset::Any));
        assert_eq!(off("10"), Ok(Offset::Abs { start: 10, span: 0 }));
        assert_eq!(off("10,5"), Ok(Offset::Abs { start: 10, span: 5 }));
        assert_eq!(off("EOF-20"), Ok(Offset::Eof { back: 20, span: 0 }));
        assert_eq!(off("EOF-20,4"), Ok(Offset::Eof { back: 20, span: 4 }));
        let pe = |o: &str| parse_ndb_line(&format!("N:1:{o}:aabb")).map(|s| s.offset);
        assert_eq!(pe("EP+10"), Ok(Offset::Ep { delta: 10, span: 0 }));
        assert_eq!(
            pe("EP-10,3"),
            Ok(Offset::Ep {
                delta: -10,
                span: 3
            })
        );
        assert_eq!(
            pe("S2+4"),
            Ok(Offset::Section {
                index: 2,
                add: 4,
                span: 0
            })
        );
        assert_eq!(pe("SL+4,9"), Ok(Offset::LastSection { add: 4, span: 9 }));
        assert_eq!(pe("SE1"), Ok(Offset::SectionWhole { index: 1, span: 0 }));
        assert_eq!(
            parse_ndb_line("N:6:SE0,16:aabb").map(|s| s.offset),
            Ok(Offset::SectionWhole { index: 0, span: 16 })
        );
        // Exe-relative offsets need a PE or ELF target (ClamAV refuses the line).
        for o in ["EP+10", "S2+4", "SE1", "SL+0"] {
            assert!(matches!(off(o), Err(NdbLineError::Malformed(_))), "{o}");
        }
        assert_eq!(
            parse_ndb_line("N:9:EP+0:aabb").map(|s| s.offset),
            Err(NdbLineError::Unsupported("ndb_offset_macho"))
        );
        for o in ["EP+", "EP+x", "S+4", "Sx+4", "S1", "SEx", "SL+", "EP+1,x"] {
            assert!(matches!(pe(o), Err(NdbLineError::Malformed(_))), "{o}");
        }
        assert!(matches!(off("EOF+3"), Err(NdbLineError::Malformed(_))));

        let eof = Offset::Eof { back: 10, span: 2 };
        assert!(eof.allows(90, 100) && eof.allows(92, 100) && !eof.allows(93, 100));
        assert!(!eof.allows(0, 5));
        let abs = Offset::Abs { start: 4, span: 1 };
        assert!(!abs.allows(3, 9) && abs.allows(4, 9) && abs.allows(5, 9) && !abs.allows(6, 9));
    }

    #[test]
    fn targets() {
        let t = |n: &str| parse_ndb_line(&format!("N:{n}:*:aabb")).map(|s| s.target);
        assert_eq!(t("0"), Ok(Target::Any));
        assert_eq!(t("1"), Ok(Target::Pe));
        assert_eq!(t("2"), Ok(Target::Ole2));
        assert_eq!(t("5"), Ok(Target::Graphics));
        assert_eq!(t("6"), Ok(Target::Elf));
        assert_eq!(t("9"), Ok(Target::MachO));
        assert_eq!(t("10"), Ok(Target::Pdf));
        assert_eq!(t("12"), Ok(Target::Java));
        assert_eq!(t("3"), Ok(Target::Html));
        assert_eq!(t("4"), Ok(Target::Mail));
        assert_eq!(t("7"), Ok(Target::Ascii));
        assert_eq!(t("11"), Err(NdbLineError::Unsupported("ndb_target_flash")));
        assert_eq!(t("42"), Err(NdbLineError::Unsupported("ndb_target_other")));
        assert!(matches!(t("x"), Err(NdbLineError::Malformed(_))));

        assert!(Target::Pe.accepts(b"MZ\x90\0") && !Target::Pe.accepts(b"ZM"));
        assert!(Target::Elf.accepts(b"\x7fELF\x02"));
        assert!(Target::Pdf.accepts(b"junk\n%PDF-1.7"));
        assert!(Target::Graphics.accepts(b"\x89PNG\r\n") && Target::Graphics.accepts(b"GIF89a"));
        assert!(Target::MachO.accepts(&[0xcf, 0xfa, 0xed, 0xfe, 7]));
        // Type-decided targets never match on the head alone.
        for t in [Target::Html, Target::Mail, Target::Ascii] {
            assert!(!t.accepts(b"<html><body>") && !t.accepts(b"From: x\n"));
        }
        assert!(Target::Ole2.accepts(&[0xd0, 0xcf, 0x11, 0xe0, 0xa1, 0xb1, 0x1a, 0xe1, 0]));
        assert!(!Target::Ole2.accepts(&[0xd0, 0xcf]));
    }

    #[test]
    fn fields_and_flevels() {
        assert!(parse_ndb_line("N:0:*:aabb:51:255").is_ok());
        assert!(parse_ndb_line("N:0:*:aabb:51").is_ok());
        assert!(matches!(
            parse_ndb_line("N:0:*:aabb:x"),
            Err(NdbLineError::Malformed(_))
        ));
        assert!(matches!(
            parse_ndb_line("N:0:*"),
            Err(NdbLineError::Malformed(_))
        ));
        assert!(matches!(
            parse_ndb_line(":0:*:aabb"),
            Err(NdbLineError::Malformed(_))
        ));
        assert!(matches!(
            parse_ndb_line("N:0:*:"),
            Err(NdbLineError::Malformed(_))
        ));
        assert!(matches!(
            parse_ndb_line("N:0:*:*"),
            Err(NdbLineError::Malformed(_))
        ));
        assert!(matches!(
            parse_ndb_line("N:0:*:aab"),
            Err(NdbLineError::Malformed(_))
        ));
        assert!(matches!(
            parse_ndb_line("N:0:*:aaxx"),
            Err(NdbLineError::Malformed(_))
        ));
    }
}
