//! Logical signatures (`.ldb`, `.ldu`):
//! `Name;TargetDescriptionBlock;LogicalExpression;Subsig0;Subsig1;...`,
//! read and evaluated as ClamAV 1.4 does (libclamav/readdb.c `load_oneldb`,
//! matcher-ac.c `cli_ac_chklsig`/`lsig_sub_matched`, matcher.c `lsig_eval`).
//!
//! * [`tdb`]: the target description block;
//! * [`expr`]: the logical expression with counts;
//! * body subsignatures: ndb hex (via [`crate::ndb::parse`]) with an optional
//!   `Offset:` and `::i/w/f/a` modifiers, compiled into the same
//!   [`crate::ndb::NdbSet`] as `.ndb` signatures, reporting every match;
//! * [`pcre`]: `Trigger/regex/flags` subsignatures;
//! * [`bytecmp`]: `Ref(>>offset#options#comparisons)` subsignatures.
//!
//! Macro (`${min-max}id$`), fuzzy-image (`fuzzy_img#`) and icon
//! (`IconGroup`) subsignatures, `HandlerType`, and PCRE features the regex
//! engine lacks are counted as unsupported by kind. Evaluation per object
//! follows ClamAV's order: body matches are counted (each distinct match
//! start once), then byte compares, then PCREs (whose triggers see the
//! counts so far), then the expression and the target description block.

pub mod bytecmp;
pub mod expr;
pub mod pcre;
mod set;
pub mod tdb;

pub use set::{LdbSet, ObjectView};

use crate::ndb::{
    self, ByteM, CompiledSig, Elem, NdbLineError, NdbSignature, Offset, anchor, parse::parse_hex,
};
use bytecmp::ByteCmp;
use expr::{Expr, MAX_SUBSIGS};
use pcre::PcreSub;
use tdb::Tdb;

fn bad(msg: impl Into<String>) -> NdbLineError {
    NdbLineError::Malformed(msg.into())
}

/// Split `s` on `delim` as ClamAV's `cli_ldbtokenize`: from token index
/// `skip` on, an unescaped `/` toggles "inside a regex", where `delim` does
/// not split. At most `max` tokens (the rest of the line is dropped, as in C).
pub fn tokenize(s: &[u8], delim: u8, skip: usize, max: usize) -> Vec<&[u8]> {
    let mut toks = Vec::new();
    let mut start = 0;
    let mut in_re = false;
    let mut i = 0;
    while toks.len() < max {
        while i < s.len() {
            let c = s[i];
            if !in_re && c == delim {
                break;
            }
            if toks.len() >= skip && i > 0 && s[i - 1] != b'\\' && c == b'/' {
                in_re = !in_re;
            }
            i += 1;
        }
        toks.push(&s[start..i]);
        if i >= s.len() {
            break;
        }
        i += 1;
        start = i;
    }
    toks
}

/// Rename an ndb unsupported kind for logical signatures.
fn ldb_kind(k: &'static str) -> &'static str {
    match k {
        "ndb_offset_ep" => "ldb_offset_ep",
        "ndb_offset_section" => "ldb_offset_section",
        "ndb_offset_vi" => "ldb_offset_vi",
        "ndb_boundary" => "ldb_boundary",
        "ndb_complex_alternative" => "ldb_complex_alternative",
        "ndb_negated_alternative" => "ldb_negated_alternative",
        "ndb_no_anchor" => "ldb_no_anchor",
        k if k.starts_with("ldb_") => k,
        _ => "ldb_other",
    }
}

fn ldb_err(e: NdbLineError) -> NdbLineError {
    match e {
        NdbLineError::Unsupported(k) => NdbLineError::Unsupported(ldb_kind(k)),
        m => m,
    }
}

/// A subsignature offset (`*`, `n`, `n,m`, `EOF-n[,m]`). EP and section
/// offsets parse in ndb but are counted unsupported here until logical
/// signatures check them against their target (as ClamAV's `cli_caloff`).
pub fn offset(o: &[u8]) -> Result<Offset, NdbLineError> {
    let off = ndb::parse::parse_offset(o).map_err(ldb_err)?;
    match off {
        Offset::Ep { .. } => Err(NdbLineError::Unsupported("ldb_offset_ep")),
        o if o.is_exe_relative() => Err(NdbLineError::Unsupported("ldb_offset_section")),
        o => Ok(o),
    }
}

/// Body-subsignature modifiers (`::i`, `::w`, `::f`, `::a`).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Modifiers {
    pub nocase: bool,
    pub wide: bool,
    pub fullword: bool,
    pub ascii: bool,
}

/// A body subsignature.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BodySub {
    pub offset: Offset,
    pub elems: Vec<Elem>,
    pub mods: Modifiers,
}

/// One subsignature.
#[derive(Debug, Clone)]
pub enum Subsig {
    Body(BodySub),
    Pcre(Box<PcreSub>),
    ByteCmp(ByteCmp),
}

/// A parsed logical signature. `name` borrows from the line.
#[derive(Debug, Clone)]
pub struct LdbSignature<'a> {
    pub name: &'a [u8],
    pub tdb: Tdb,
    pub expr: Expr,
    pub subsigs: Vec<Subsig>,
}

fn parse_body(sub: &[u8]) -> Result<BodySub, NdbLineError> {
    let toks = tokenize(sub, b':', 0, 5);
    let (off, sig, opts) = match toks.len() {
        1 => (None, toks[0], None),
        2 => (Some(toks[0]), toks[1], None),
        3 => (None, toks[0], Some(toks[2])),
        4 => (Some(toks[0]), toks[1], Some(toks[3])),
        _ => return Err(bad("body subsignature: too many ':' fields")),
    };
    let mut mods = Modifiers::default();
    for &o in opts.unwrap_or(&[]) {
        match o {
            b'i' => mods.nocase = true,
            b'w' => mods.wide = true,
            b'f' => mods.fullword = true,
            b'a' => mods.ascii = true,
            _ => {
                return Err(bad(format!(
                    "body subsignature: invalid option {:?}",
                    (o as char).to_string()
                )));
            }
        }
    }
    let offset = match off {
        Some(o) => offset(o)?,
        None => Offset::Any,
    };
    let elems = parse_hex(sig).map_err(ldb_err)?;
    Ok(BodySub {
        offset,
        elems,
        mods,
    })
}

/// Parse one subsignature (index `own` in its signature).
pub fn parse_subsig(sub: &[u8], own: usize) -> Result<Subsig, NdbLineError> {
    if sub.first() == Some(&b'$') {
        return Err(NdbLineError::Unsupported("ldb_macro"));
    }
    if sub.contains(&b'/') {
        return Ok(Subsig::Pcre(Box::new(pcre::parse(sub, own)?)));
    }
    if bytecmp::looks_like(sub) {
        return Ok(Subsig::ByteCmp(bytecmp::parse(sub)?));
    }
    if sub.starts_with(b"fuzzy_img#") {
        return Err(NdbLineError::Unsupported("ldb_fuzzy_image"));
    }
    parse_body(sub).map(Subsig::Body)
}

/// Parse one `.ldb` line (already trimmed, not a comment).
pub fn parse_ldb_bytes(line: &[u8]) -> Result<LdbSignature<'_>, NdbLineError> {
    let line = line.trim_ascii();
    let toks = tokenize(line, b';', 2, MAX_SUBSIGS + 4);
    if toks.len() < 4 {
        return Err(bad(
            "expected Name;TargetDescriptionBlock;LogicalExpression;Subsig0[;...]",
        ));
    }
    let name = toks[0];
    if name.is_empty() {
        return Err(bad("empty signature name"));
    }
    let expr = expr::parse(toks[2])?;
    let nsub = toks.len() - 3;
    if expr.max_id() as usize + 1 != nsub {
        return Err(bad(format!(
            "the logical expression uses subsignatures 0..={} but the line has {nsub}",
            expr.max_id()
        )));
    }
    if nsub > MAX_SUBSIGS {
        return Err(bad(format!("more than {MAX_SUBSIGS} subsignatures")));
    }
    let tdb = tdb::parse(toks[1])?;
    let mut subsigs = Vec::with_capacity(nsub);
    for (i, s) in toks[3..].iter().enumerate() {
        subsigs.push(parse_subsig(s, i).map_err(|e| match e {
            NdbLineError::Malformed(m) => bad(format!("subsignature {i}: {m}")),
            u => u,
        })?);
    }
    Ok(LdbSignature {
        name,
        tdb,
        expr,
        subsigs,
    })
}

/// ASCII letters compare without case (`::i`), as ClamAV's `CLI_NOCASE`.
fn nocase_byte(b: ByteM) -> ByteM {
    if b.is_exact() && b.val.is_ascii_alphabetic() {
        ByteM {
            val: b.val & 0xdf,
            mask: 0xdf,
        }
    } else {
        b
    }
}

fn is_nocase_letter(b: ByteM) -> bool {
    b.mask == 0xdf && b.val.is_ascii_uppercase()
}

fn nocase(elems: Vec<Elem>) -> Result<Vec<Elem>, NdbLineError> {
    elems
        .into_iter()
        .map(|e| match e {
            Elem::Seq(v) => Ok(Elem::Seq(v.into_iter().map(nocase_byte).collect())),
            Elem::Alt(alts) => Ok(Elem::Alt(
                alts.into_iter()
                    .map(|a| a.into_iter().map(nocase_byte).collect())
                    .collect(),
            )),
            Elem::NotAlt(alts) => {
                if alts.iter().flatten().any(u8::is_ascii_alphabetic) {
                    Err(NdbLineError::Unsupported("ldb_nocase_negated"))
                } else {
                    Ok(Elem::NotAlt(alts))
                }
            }
            g => Ok(g),
        })
        .collect()
}

fn widen_seq(v: &[ByteM]) -> Vec<ByteM> {
    v.iter().flat_map(|&b| [b, ByteM::exact(0)]).collect()
}

/// `::w`: every byte followed by a zero byte (jumps are not widened, as in ClamAV).
fn wide(elems: &[Elem]) -> Vec<Elem> {
    elems
        .iter()
        .map(|e| match e {
            Elem::Seq(v) => Elem::Seq(widen_seq(v)),
            Elem::Alt(alts) => Elem::Alt(alts.iter().map(|a| widen_seq(a)).collect()),
            Elem::NotAlt(alts) => Elem::NotAlt(
                alts.iter()
                    .map(|a| a.iter().flat_map(|&b| [b, 0]).collect())
                    .collect(),
            ),
            g => g.clone(),
        })
        .collect()
}

/// Most case variants expanded for one case-insensitive anchor.
const MAX_CASE_VARIANTS: usize = 16;

/// Anchors for a signature whose letters compare without case: a window of
/// up to 4 fixed bytes, expanded into every case variant.
fn case_pieces(elems: &[Elem]) -> Option<Vec<anchor::Piece>> {
    let usable = |b: ByteM| b.is_exact() || is_nocase_letter(b);
    let mut best: Option<(usize, usize, usize)> = None; // (len, elem, start)
    for (ei, e) in elems.iter().enumerate() {
        let Elem::Seq(v) = e else { continue };
        for s in 0..v.len() {
            let mut w = 0;
            let mut letters = 0;
            while s + w < v.len() && w < 4 && usable(v[s + w]) {
                if is_nocase_letter(v[s + w]) {
                    letters += 1;
                }
                if (1usize << letters) > MAX_CASE_VARIANTS {
                    break;
                }
                w += 1;
            }
            if w >= 2 && best.is_none_or(|b| w > b.0) {
                best = Some((w, ei, s));
            }
        }
    }
    let (w, ei, s) = best?;
    let Elem::Seq(v) = &elems[ei] else {
        return None;
    };
    let window = &v[s..s + w];
    let mut variants: Vec<Vec<u8>> = vec![Vec::with_capacity(w)];
    for &b in window {
        if is_nocase_letter(b) {
            variants = variants
                .into_iter()
                .flat_map(|p| {
                    let mut lo = p.clone();
                    lo.push(b.val | 0x20);
                    let mut up = p;
                    up.push(b.val);
                    [up, lo]
                })
                .collect();
        } else {
            for p in &mut variants {
                p.push(b.val);
            }
        }
    }
    variants
        .iter()
        .map(|bytes| anchor::Piece::new(bytes, (ei, s), (ei, s + w)))
        .collect()
}

/// One compiled form of a body subsignature (the wide and the ASCII form
/// of `::wa` are two).
#[derive(Debug, Clone)]
pub struct BodyVariant {
    pub sub: u8,
    pub fullword: bool,
    pub wide: bool,
    pub sig: CompiledSig,
}

fn compile_variant(
    target: ndb::Target,
    offset: Offset,
    elems: Vec<Elem>,
    case_insensitive: bool,
) -> Result<CompiledSig, NdbLineError> {
    let elems = if case_insensitive {
        nocase(elems)?
    } else {
        elems
    };
    let nsig = NdbSignature {
        name: b"",
        target,
        offset,
        elems,
        edges: ndb::Edges::default(),
    };
    match ndb::compile_or_elems(nsig, 0) {
        Ok(c) => Ok(c),
        // No exact anchor: case-insensitive letters are expanded instead.
        Err(elems) if case_insensitive => {
            let pieces = case_pieces(&elems).ok_or(NdbLineError::Unsupported("ldb_no_anchor"))?;
            Ok(CompiledSig {
                name: 0,
                target,
                offset,
                elems,
                pieces,
                rest: Vec::new(),
                all_matches: true,
                edges: ndb::Edges::default(),
            })
        }
        Err(_) => Err(ldb_err(NdbLineError::Unsupported("ndb_no_anchor"))),
    }
}

/// A logical signature ready for an [`LdbSet`]; body variants go into the
/// engine's [`crate::ndb::NdbSet`].
#[derive(Debug, Clone)]
pub struct CompiledLdb {
    /// Name id.
    pub name: u32,
    pub tdb: Tdb,
    pub expr: Expr,
    pub nsub: u8,
    pub body: Vec<BodyVariant>,
    pub pcres: Vec<(u8, PcreSub)>,
    pub bytecmps: Vec<(u8, ByteCmp)>,
}

/// Compile a parsed logical signature.
pub fn compile(sig: LdbSignature<'_>, name: u32) -> Result<CompiledLdb, NdbLineError> {
    let mut body = Vec::new();
    let mut pcres = Vec::new();
    let mut bytecmps = Vec::new();
    let nsub = sig.subsigs.len() as u8;
    for (i, s) in sig.subsigs.into_iter().enumerate() {
        let i = i as u8;
        match s {
            Subsig::Body(b) => {
                let m = b.mods;
                if m.wide {
                    body.push(BodyVariant {
                        sub: i,
                        fullword: m.fullword,
                        wide: true,
                        sig: compile_variant(sig.tdb.target, b.offset, wide(&b.elems), m.nocase)?,
                    });
                }
                if !m.wide || m.ascii {
                    body.push(BodyVariant {
                        sub: i,
                        fullword: m.fullword,
                        wide: false,
                        sig: compile_variant(sig.tdb.target, b.offset, b.elems, m.nocase)?,
                    });
                }
            }
            Subsig::Pcre(p) => pcres.push((i, *p)),
            Subsig::ByteCmp(b) => bytecmps.push((i, b)),
        }
    }
    Ok(CompiledLdb {
        name,
        tdb: sig.tdb,
        expr: sig.expr,
        nsub,
        body,
        pcres,
        bytecmps,
    })
}

/// Parse and compile one line; for tests and fuzzing.
pub fn compile_line(line: &[u8], name: u32) -> Result<CompiledLdb, NdbLineError> {
    compile(parse_ldb_bytes(line)?, name)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tokenize_respects_regex_slashes() {
        assert_eq!(
            tokenize(b"a;b;c;d", b';', 2, 10),
            vec![&b"a"[..], b"b", b"c", b"d"]
        );
        assert_eq!(
            tokenize(b"N;T;0;0/a;b/i", b';', 2, 10),
            vec![&b"N"[..], b"T", b"0", b"0/a;b/i"]
        );
        // Escaped slashes stay inside the regex.
        assert_eq!(
            tokenize(b"N;T;0;0/a\\/;b/", b';', 2, 10),
            vec![&b"N"[..], b"T", b"0", b"0/a\\/;b/"]
        );
        assert_eq!(tokenize(b"a;;", b';', 0, 10), vec![&b"a"[..], b"", b""]);
    }

    #[test]
    fn parses_a_full_line() {
        let s = parse_ldb_bytes(
            b"Sig.A;Engine:51-255,Target:1;(0&1)|2;41424344;10:45464748::i;0/abc/;0(>>4#ib2#>1)",
        );
        // Four subsignatures but the expression only names 0..=2: an error.
        assert!(matches!(s, Err(NdbLineError::Malformed(_))), "{s:?}");
        let s = parse_ldb_bytes(
            b"Sig.A;Engine:51-255,Target:1;((0&1)|2)&3;41424344;10:45464748::i;0/abc/;0(>>4#ib2#>1)",
        )
        .unwrap();
        assert_eq!(s.name, b"Sig.A");
        assert_eq!(s.subsigs.len(), 4);
        let Subsig::Body(b) = &s.subsigs[1] else {
            panic!()
        };
        assert_eq!(b.offset, Offset::Abs { start: 10, span: 0 });
        assert!(b.mods.nocase && !b.mods.wide);
        assert!(matches!(s.subsigs[2], Subsig::Pcre(_)));
        assert!(matches!(s.subsigs[3], Subsig::ByteCmp(_)));
    }

    #[test]
    fn unsupported_subsignatures_by_kind() {
        let k = |l: &str| match parse_ldb_bytes(l.as_bytes()) {
            Err(NdbLineError::Unsupported(k)) => k,
            o => panic!("{l}: {o:?}"),
        };
        assert_eq!(k("N;Target:0;0&1;41424344;${1-2}0$"), "ldb_macro");
        assert_eq!(
            k("N;Engine:150-255,Target:5;0&1;41424344;fuzzy_img#af2ad01ed42993c7"),
            "ldb_fuzzy_image"
        );
        assert_eq!(k("N;Target:0;0;EP+0:41424344"), "ldb_offset_ep");
        assert_eq!(k("N;Target:0;0;4142(B)4344"), "ldb_boundary");
        assert_eq!(k("N;Target:0;0&1;41424344;0/(?=a)/"), "ldb_pcre_lookaround");
    }

    #[test]
    fn malformed_lines() {
        for l in [
            "N;Target:0;0",
            ";Target:0;0;4142",
            "N;Target:0;0&1;4142",
            "N;Target:0;0;41424",
            "N;Target:0;0;4142::q",
            "N;Target:0;0;1:2:3:4:5",
            "N;;0;4142",
        ] {
            assert!(
                matches!(
                    parse_ldb_bytes(l.as_bytes()),
                    Err(NdbLineError::Malformed(_))
                ),
                "{l}"
            );
        }
    }

    #[test]
    fn wide_and_nocase_transforms() {
        let e = parse_hex(b"4142{2}43").unwrap();
        let w = wide(&e);
        assert_eq!(
            w,
            vec![
                Elem::Seq(vec![
                    ByteM::exact(0x41),
                    ByteM::exact(0),
                    ByteM::exact(0x42),
                    ByteM::exact(0)
                ]),
                Elem::Gap {
                    min: 2,
                    max: Some(2)
                },
                Elem::Seq(vec![ByteM::exact(0x43), ByteM::exact(0)]),
            ]
        );
        let n = nocase(parse_hex(b"612e").unwrap()).unwrap();
        assert_eq!(
            n,
            vec![Elem::Seq(vec![
                ByteM {
                    val: 0x41,
                    mask: 0xdf
                },
                ByteM::exact(0x2e)
            ])]
        );
        assert!(nocase_byte(ByteM::exact(b'a')).matches(b'A'));
        assert!(!nocase_byte(ByteM::exact(b'a')).matches(b'a' ^ 0x80));
    }

    #[test]
    fn case_insensitive_text_gets_case_variant_anchors() {
        let c = compile_line(b"N;Target:0;0;68656c6c6f::i", 0).unwrap();
        assert_eq!(c.body.len(), 1);
        let pieces = &c.body[0].sig.pieces;
        assert_eq!(pieces.len(), 16);
        assert!(pieces.iter().any(|p| p.bytes() == b"hell"));
        assert!(pieces.iter().any(|p| p.bytes() == b"HELL"));
        let wa = compile_line(b"N;Target:0;0;68656c6c6f::wa", 0).unwrap();
        assert_eq!(wa.body.len(), 2);
        assert!(wa.body[0].wide && !wa.body[1].wide);
    }

    /// Deterministic stand-in for the fuzz target (fuzz/fuzz_targets/ldb_parse.rs):
    /// mutated signature lines never panic the parser, and those that load
    /// evaluate on data without panicking.
    #[test]
    fn mutated_lines_never_panic() {
        use crate::ndb::NdbSet;
        use moat_core::Blob;
        let seeds: [&[u8]; 5] = [
            b"A;Engine:51-255,Target:0;(0&1)|2>1,1;41424344;10,4:4545??46{1-3}4747::iwfa;0/a[b-d]+$/gi",
            b"B;Engine:81-255,Target:1,EntryPoint:1-9,NumberOfSections:1-2;0&1;EOF-4:4142;0(>>2#ib2#=5,>1)",
            b"C;Target:0;((0|1)=2)&(2<3);aa(bb|cc)!(dd|ee)*ff;1:6162::i;1/x.y/sme",
            b"D;Engine:51-255,Container:CL_TYPE_ANY,Intermediates:CL_TYPE_ZIP>CL_TYPE_ANY,Target:0;0;4142",
            b"E;Target:0;0=0&1;4142;0/(a|b){2,5}c*/U",
        ];
        let specials = b"(){}[]/;:#|&=<>,!?*-\\0123456789abcdefiwfa$^.+";
        let mut x: u64 = 0x2545_f491_4f6c_dd1d;
        let mut rnd = |n: usize| {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            (x % n as u64) as usize
        };
        let data = b"\x00ABCDxxEFGHabcab  bbbbc x\ny AAAA\x02\x05 aaBBcc";
        for s in seeds {
            let r = compile_line(s, 0);
            assert!(r.is_ok(), "{}: {:?}", String::from_utf8_lossy(s), r.err());
        }
        let (mut ok, mut err) = (0, 0);
        for round in 0..3000 {
            let mut line = seeds[round % seeds.len()].to_vec();
            for _ in 0..1 + rnd(4) {
                let at = rnd(line.len() + 1);
                match rnd(4) {
                    0 if at < line.len() => {
                        line.remove(at);
                    }
                    1 if at < line.len() => line[at] = specials[rnd(specials.len())],
                    2 => line.insert(at, specials[rnd(specials.len())]),
                    _ => line.truncate(at),
                }
            }
            match compile_line(&line, 0) {
                Ok(c) => {
                    ok += 1;
                    let mut sigs = Vec::new();
                    let set = LdbSet::build(vec![c], &mut sigs);
                    let ndb = NdbSet::build(sigs);
                    let st = ndb.scan_slice_state(data, None).unwrap();
                    let blob = Blob::from_vec(data.to_vec());
                    let view = ObjectView {
                        blob: &blob,
                        head: data,
                        extra_target: None,
                        exe: None,
                        place: tdb::Placement::default(),
                    };
                    set.evaluate(&st, &view, None).unwrap();
                }
                Err(_) => err += 1,
            }
        }
        assert!(ok > 50 && err > 100, "ok {ok}, err {err}");
    }
}
