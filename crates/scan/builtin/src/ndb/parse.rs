//! Parsing `.ndb` lines: `Name:TargetType:Offset:HexSig[:MinFL[:MaxFL]]`.
//!
//! Supported hex syntax: bytes, `??`, nibble wildcards (`a?`, `?a`), `*`,
//! `{n}`, `{n-m}`, `{n-}`, `{-m}`, `[n-m]`, `(aa|bb|cc)` alternatives (of
//! any lengths, with wildcards) and `!(aa|bb)` negated alternatives of equal
//! length. Offsets: `*`, `n`, `n,m`, `EOF-n`, `EOF-n,m`. Things that need PE
//! parsing or ClamAV's normalisation are [`NdbLineError::Unsupported`] with a
//! kind to count under, never a silent drop.

use crate::hashdb::{HEX, parse_u64};

/// Most elements one signature may have (bounds the verifier's recursion).
pub const MAX_ELEMS: usize = 1024;
/// Most alternatives in one `( | )` group.
pub const MAX_ALTS: usize = 256;

/// Which files a signature applies to, checked on the object's first bytes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Target {
    /// 0: any file.
    Any,
    /// 1: PE (`MZ`).
    Pe,
    /// 2: OLE2 compound documents.
    Ole2,
    /// 5: graphics (PNG, JPEG, GIF, BMP, TIFF).
    Graphics,
    /// 6: ELF.
    Elf,
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
        }
    }
}

/// Where a match must start.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Offset {
    /// `*`
    Any,
    /// `n` (span 0) or `n,m`: start in `n..=n+m`.
    Abs { start: u64, span: u64 },
    /// `EOF-n` or `EOF-n,m`: start in `len-n..=len-n+m`.
    Eof { back: u64, span: u64 },
}

impl Offset {
    /// Whether a match starting at `start` in an object of `len` bytes is allowed.
    pub fn allows(self, start: u64, len: u64) -> bool {
        match self {
            Offset::Any => true,
            Offset::Abs { start: s, span } => start >= s && start - s <= span,
            Offset::Eof { back, span } => match len.checked_sub(back) {
                Some(s) => start >= s && start - s <= span,
                None => false,
            },
        }
    }
}

/// One pattern byte: matches `b` when `b & mask == val`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
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
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Elem {
    /// Consecutive bytes, possibly with (nibble) wildcards.
    Seq(Vec<ByteM>),
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
    let elems = parse_hex(f[3])?;
    Ok(NdbSignature {
        name,
        target,
        offset,
        elems,
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
        3 => return Err(NdbLineError::Unsupported("ndb_target_html")),
        4 => return Err(NdbLineError::Unsupported("ndb_target_mail")),
        5 => Target::Graphics,
        6 => Target::Elf,
        7 => return Err(NdbLineError::Unsupported("ndb_target_ascii")),
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

pub fn parse_offset(o: &[u8]) -> Result<Offset, NdbLineError> {
    if o == b"*" {
        return Ok(Offset::Any);
    }
    if o.starts_with(b"EP+") || o.starts_with(b"EP-") {
        return Err(NdbLineError::Unsupported("ndb_offset_ep"));
    }
    if o.starts_with(b"SL+")
        || o.starts_with(b"SE")
        || (o.first() == Some(&b'S') && o.get(1).is_some_and(u8::is_ascii_digit))
    {
        return Err(NdbLineError::Unsupported("ndb_offset_section"));
    }
    if o.starts_with(b"VI") {
        return Err(NdbLineError::Unsupported("ndb_offset_vi"));
    }
    let (body, eof) = match o.strip_prefix(b"EOF-") {
        Some(rest) => (rest, true),
        None => (o, false),
    };
    let (a, span) = match body.iter().position(|&b| b == b',') {
        Some(i) => (&body[..i], num(&body[i + 1..], "offset span")?),
        None => (body, 0),
    };
    let a = num(a, "offset")?;
    Ok(if eof {
        Offset::Eof { back: a, span }
    } else {
        Offset::Abs { start: a, span }
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

fn push_byte(elems: &mut Vec<Elem>, b: ByteM) {
    if let Some(Elem::Seq(v)) = elems.last_mut() {
        v.push(b);
    } else {
        elems.push(Elem::Seq(vec![b]));
    }
}

/// Parse the hex signature field into elements.
pub fn parse_hex(s: &[u8]) -> Result<Vec<Elem>, NdbLineError> {
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
                push_byte(&mut elems, b);
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
    fn offsets() {
        let off = |o: &str| parse_ndb_line(&format!("N:0:{o}:aabb")).map(|s| s.offset);
        assert_eq!(off("*"), Ok(Offset::Any));
        assert_eq!(off("10"), Ok(Offset::Abs { start: 10, span: 0 }));
        assert_eq!(off("10,5"), Ok(Offset::Abs { start: 10, span: 5 }));
        assert_eq!(off("EOF-20"), Ok(Offset::Eof { back: 20, span: 0 }));
        assert_eq!(off("EOF-20,4"), Ok(Offset::Eof { back: 20, span: 4 }));
        assert_eq!(
            off("EP+10"),
            Err(NdbLineError::Unsupported("ndb_offset_ep"))
        );
        assert_eq!(
            off("EP-10"),
            Err(NdbLineError::Unsupported("ndb_offset_ep"))
        );
        assert_eq!(
            off("S2+4"),
            Err(NdbLineError::Unsupported("ndb_offset_section"))
        );
        assert_eq!(
            off("SL+4"),
            Err(NdbLineError::Unsupported("ndb_offset_section"))
        );
        assert_eq!(
            off("SE1"),
            Err(NdbLineError::Unsupported("ndb_offset_section"))
        );
        assert!(matches!(off("abc"), Err(NdbLineError::Malformed(_))));
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
        assert_eq!(t("3"), Err(NdbLineError::Unsupported("ndb_target_html")));
        assert_eq!(t("4"), Err(NdbLineError::Unsupported("ndb_target_mail")));
        assert_eq!(t("7"), Err(NdbLineError::Unsupported("ndb_target_ascii")));
        assert_eq!(t("42"), Err(NdbLineError::Unsupported("ndb_target_other")));
        assert!(matches!(t("x"), Err(NdbLineError::Malformed(_))));

        assert!(Target::Pe.accepts(b"MZ\x90\0") && !Target::Pe.accepts(b"ZM"));
        assert!(Target::Elf.accepts(b"\x7fELF\x02"));
        assert!(Target::Pdf.accepts(b"junk\n%PDF-1.7"));
        assert!(Target::Graphics.accepts(b"\x89PNG\r\n") && Target::Graphics.accepts(b"GIF89a"));
        assert!(Target::MachO.accepts(&[0xcf, 0xfa, 0xed, 0xfe, 7]));
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
