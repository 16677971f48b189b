//! Differential tests for logical signatures (`.ldb`): the library engine
//! against `clamscan --allmatch --no-summary -d SIGS`, file by file, name
//! for name (modulo ClamAV's `.UNOFFICIAL` suffix). Signatures and files
//! are written by the tests. Files are binary (bytes outside printable
//! ASCII around the planted content) so that ClamAV types them as binary
//! data and does not add its text-normalisation pass.

use moat_builtin::BuiltinEngine;
use moat_core::{Blob, Engine, ScanContext};
use std::collections::BTreeSet;
use std::path::Path;
use std::process::Command;

mod common;
use common::clamscan;
use std::time::Duration;

fn moat(engine: &BuiltinEngine, path: &Path) -> BTreeSet<String> {
    let ctx = ScanContext::within(Duration::from_secs(60));
    let blob = Blob::open(path).unwrap();
    engine
        .scan_blob(&blob, None, &ctx)
        .unwrap()
        .hits
        .into_iter()
        .map(|h| h.signature)
        .collect()
}

/// Write `sigs` as one `.ldb` and `files`, run both engines, compare.
/// Returns how many detections agreed.
fn compare(sigs: &str, files: &[(&str, Vec<u8>)]) -> usize {
    let d = tempfile::tempdir().unwrap();
    let sig_path = d.path().join("t.ldb");
    std::fs::write(&sig_path, sigs).unwrap();
    let fdir = d.path().join("files");
    std::fs::create_dir(&fdir).unwrap();
    let mut paths = Vec::new();
    for (n, data) in files {
        let p = fdir.join(n);
        std::fs::write(&p, data).unwrap();
        paths.push(p);
    }
    let want = clamscan(&sig_path, &paths);
    let engine = BuiltinEngine::load("t", std::slice::from_ref(&sig_path)).unwrap();
    let info = engine.info();
    assert!(
        info.load_errors.is_empty(),
        "load errors: {:?}",
        info.load_errors
    );
    let mut agreed = 0;
    for chunk in [usize::MAX, 64] {
        let engine = BuiltinEngine::load("t", std::slice::from_ref(&sig_path))
            .unwrap()
            .with_chunk_size(chunk.min(1 << 20));
        for p in &paths {
            let name = p.file_name().unwrap().to_string_lossy().into_owned();
            let got = moat(&engine, p);
            let expect = want.get(&name).cloned().unwrap_or_default();
            if got != expect {
                for n in got.symmetric_difference(&expect) {
                    let line = sigs.lines().find(|l| l.starts_with(&format!("{n};")));
                    eprintln!("differs: {line:?}");
                }
            }
            assert_eq!(
                got, expect,
                "file {name} (chunk {chunk}): moat (left) vs clamscan (right)"
            );
            agreed += got.len();
        }
    }
    agreed
}

/// Deterministic filler outside printable ASCII (no magic numbers, no text):
/// high bytes, with `00 01` pairs at both ends so that ClamAV's text
/// detection (textdet.c) sees neither ASCII, UTF-8 nor BOM-less UTF-16.
fn filler(n: usize, seed: u64) -> Vec<u8> {
    let mut x = seed.wrapping_mul(0x9e37_79b9_7f4a_7c15) | 1;
    let mut d: Vec<u8> = (0..n)
        .map(|_| {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            0x80 | (x as u8 & 0x7f)
        })
        .collect();
    let mark = [0u8, 1, 0, 1, 0, 1];
    if n >= 2 * mark.len() {
        d[..mark.len()].copy_from_slice(&mark);
        d[n - mark.len()..].copy_from_slice(&mark);
    }
    d
}

/// `filler` with `parts` written at the given offsets.
fn planted(n: usize, seed: u64, parts: &[(usize, &[u8])]) -> Vec<u8> {
    let mut d = filler(n, seed);
    for (at, p) in parts {
        d[*at..*at + p.len()].copy_from_slice(p);
    }
    d
}

fn hexs(s: &[u8]) -> String {
    s.iter().map(|b| format!("{b:02x}")).collect()
}

#[test]
fn logical_expressions_and_counts_match_clamscan() {
    let a = hexs(b"ALPHA1");
    let b = hexs(b"BRAVO2");
    let c = hexs(b"CHARL3");
    let sigs = [
        format!("E.And;Engine:51-255,Target:0;0&1;{a};{b}"),
        format!("E.Or;Engine:51-255,Target:0;0|1;{a};{c}"),
        format!("E.Eq2;Engine:51-255,Target:0;0=2;{a}"),
        format!("E.Eq3;Engine:51-255,Target:0;0=3;{a}"),
        format!("E.Gt1;Engine:51-255,Target:0;0>1;{a}"),
        format!("E.Lt2;Engine:51-255,Target:0;0<2&1;{a};{b}"),
        format!("E.Zero;Engine:51-255,Target:0;0=0&1;{c};{b}"),
        format!("E.GroupSum;Engine:51-255,Target:0;(0|1|2)>2;{a};{b};{c}"),
        format!("E.GroupDistinct;Engine:51-255,Target:0;(0|1|2)>1,2;{a};{b};{c}"),
        format!("E.NoPrecedence;Engine:51-255,Target:0;0&1|2;{c};{a};{b}"),
        format!("E.Nested;Engine:51-255,Target:0;((0|1)&(2|0))&1;{a};{b};{c}"),
        format!("E.FileSize;Engine:51-255,Target:0,FileSize:100-300;0;{a}"),
        format!("E.FileSizeBig;Engine:51-255,Target:0,FileSize:5000-9000;0;{a}"),
        format!("E.Newer;Engine:250-255,Target:0;0;{a}"),
        format!("E.Container;Engine:81-255,Container:CL_TYPE_ANY,Target:0;0;{a}"),
        format!("E.ContainerZip;Engine:81-255,Container:CL_TYPE_ZIP,Target:0;0;{a}"),
        format!("E.Offsets;Engine:51-255,Target:0;0&1;10:{a};EOF-20,5:{b}"),
        "E.Wild;Engine:51-255,Target:0;0;414c??4841{1-3}4252*4348(41|42)".to_string(),
        "E.Elf;Engine:51-255,Target:6;0;414c50484131".to_string(),
    ]
    .join("\n");
    let files = vec![
        ("none", planted(256, 1, &[])),
        ("a1", planted(256, 2, &[(10, b"ALPHA1")])),
        (
            "a2b",
            planted(256, 3, &[(20, b"ALPHA1"), (40, b"ALPHA1"), (60, b"BRAVO2")]),
        ),
        (
            "a3",
            planted(256, 4, &[(5, b"ALPHA1"), (50, b"ALPHA1"), (99, b"ALPHA1")]),
        ),
        (
            "ab_c",
            planted(256, 5, &[(10, b"ALPHA1"), (30, b"BRAVO2"), (50, b"CHARL3")]),
        ),
        ("b_only", planted(256, 6, &[(100, b"BRAVO2")])),
        (
            "c_b",
            planted(400, 7, &[(100, b"CHARL3"), (200, b"BRAVO2")]),
        ),
        ("overlap", planted(256, 8, &[(10, b"ALPHA1ALPHA1")])),
        (
            "eof",
            planted(256, 9, &[(10, b"ALPHA1"), (256 - 18, b"BRAVO2")]),
        ),
        (
            "eof_far",
            planted(256, 10, &[(10, b"ALPHA1"), (256 - 30, b"BRAVO2")]),
        ),
        ("wild", planted(256, 11, &[(30, b"ALxHAxxBR..CHA")])),
        ("big", planted(6000, 12, &[(4000, b"ALPHA1")])),
        // More matches than the engine records per object (ndb::MAX_HITS):
        // counts are capped per subsignature, never truncated.
        ("many", {
            let mut d = filler(6 * 70_000 + 64, 14);
            for i in 0..70_000 {
                d[16 + 6 * i..22 + 6 * i].copy_from_slice(b"ALPHA1");
            }
            d
        }),
        (
            "elf",
            [b"\x7fELF".as_slice(), &planted(200, 13, &[(50, b"ALPHA1")])].concat(),
        ),
    ];
    let n = compare(&sigs, &files);
    assert!(n >= 20, "only {n} detections compared");
}

#[test]
fn body_modifiers_match_clamscan() {
    let w = hexs(b"Virus");
    let sigs = [
        format!("M.Nocase;Engine:51-255,Target:0;0;{w}::i"),
        format!("M.Case;Engine:51-255,Target:0;0;{w}"),
        format!("M.Wide;Engine:51-255,Target:0;0;{w}::w"),
        format!("M.WideAscii;Engine:51-255,Target:0;0;{w}::wa"),
        format!("M.Full;Engine:51-255,Target:0;0;{w}::f"),
        format!("M.FullNocase;Engine:51-255,Target:0;0;{w}::fi"),
        format!("M.WideFull;Engine:51-255,Target:0;0;{w}::wf"),
        format!("M.NocaseCount;Engine:51-255,Target:0;0=2;{w}::i"),
        format!("M.OffsetNocase;Engine:51-255,Target:0;0;20:{w}::i"),
    ]
    .join("\n");
    let wide: Vec<u8> = b"Virus".iter().flat_map(|&b| [b, 0]).collect();
    let files = vec![
        ("plain", planted(128, 1, &[(20, b"Virus")])),
        ("upper", planted(128, 2, &[(20, b"VIRUS")])),
        ("mixed2", planted(128, 3, &[(20, b"vIrUs"), (60, b"virus")])),
        ("inword", planted(128, 4, &[(20, b"xVirusy")])),
        ("leftword", planted(128, 5, &[(20, b"9Virus.")])),
        ("bounded", planted(128, 6, &[(20, b".Virus.")])),
        ("wide", planted(128, 7, &[(20, &wide)])),
        (
            "widebounded",
            planted(128, 8, &[(20, b"\x00"), (21, &wide), (31, b"!\x00")]),
        ),
        (
            "wideinword",
            planted(128, 9, &[(18, b"a\x00"), (20, &wide), (30, b"b\x00")]),
        ),
        (
            "atstart",
            [b"Virus".as_slice(), &planted(100, 10, &[])].concat(),
        ),
    ];
    compare(&sigs, &files);
}

#[test]
fn pcre_and_byte_compare_match_clamscan() {
    let t = hexs(b"TRIG");
    let sigs = [
        format!("P.Simple;Engine:81-255,Target:0;0&1;{t};0/ab+c\\d{{2}}/"),
        format!("P.Nocase;Engine:81-255,Target:0;0&1;{t};0/HELLO/i"),
        format!("P.Global2;Engine:81-255,Target:0;0&1=2;{t};0/ab+c/g"),
        format!("P.NotGlobal2;Engine:81-255,Target:0;0&1=2;{t};0/ab+c/"),
        format!("P.Anchored;Engine:81-255,Target:0;0&1;{t};40:0/abbc/"),
        format!("P.Span;Engine:81-255,Target:0;0&1;{t};35,10:0/abbc/"),
        format!("P.Encompass;Engine:81-255,Target:0;0&1;{t};38,5:0/abbc/e"),
        format!("P.Dot;Engine:81-255,Target:0;0&1;{t};0/x.y/"),
        format!("P.DotAll;Engine:81-255,Target:0;0&1;{t};0/x.y/s"),
        format!(
            "P.Untriggered;Engine:81-255,Target:0;0&1&2;{t};{};1/ab+c/",
            hexs(b"ABSENT")
        ),
        format!("P.Trigger2;Engine:81-255,Target:0;0&1&2;{t};0/ab+c/;1/HELLO/i"),
        format!("P.Class;Engine:81-255,Target:0;0&1;{t};0/[0-9a-f]{{8}}/"),
        format!("B.Bin;Engine:81-255,Target:0;0&1;{t};0(>>4#ib2#=0x0102)"),
        format!("B.BinLe;Engine:81-255,Target:0;0&1;{t};0(>>4#il2#=0x0201)"),
        format!("B.Gt;Engine:81-255,Target:0;0&1;{t};0(>>4#ib2#>0x0100,<0x0200)"),
        format!("B.Dec;Engine:81-255,Target:0;0&1;{t};0(>>6#db3#=123)"),
        format!("B.Hex;Engine:81-255,Target:0;0&1;{t};0(>>6#hb2#=0x1f)"),
        format!("B.Back;Engine:81-255,Target:0;0&1;{t};0(<<2#ib1#=0x55)"),
        format!("B.Last;Engine:81-255,Target:0;0&1;{t};0(>>4#ib1#=7)"),
        format!("B.First;Engine:81-255,Target:0;0&1;{t};0(>>4#ib1#=9)"),
    ]
    .join("\n");
    let files = vec![
        ("trig_only", planted(200, 1, &[(10, b"TRIG")])),
        (
            "abc",
            planted(200, 2, &[(10, b"TRIG"), (40, b"abbc42"), (80, b"HeLLo")]),
        ),
        ("abc_notrig", planted(200, 3, &[(40, b"abbc42")])),
        (
            "abc2",
            planted(200, 4, &[(10, b"TRIG"), (40, b"abbc"), (90, b"abc")]),
        ),
        ("abc_late", planted(200, 5, &[(10, b"TRIG"), (42, b"abbc")])),
        ("dot", planted(200, 6, &[(10, b"TRIG"), (50, b"x\ny")])),
        (
            "hexrun",
            planted(200, 7, &[(10, b"TRIG"), (60, b"deadbeef")]),
        ),
        ("bin", planted(200, 8, &[(8, b"\x55\x00TRIG\x01\x02")])),
        ("dec", planted(200, 9, &[(10, b"TRIG\x00\x00123")])),
        ("hex", planted(200, 10, &[(10, b"TRIG\x00\x001f")])),
        ("bin_gt", planted(200, 11, &[(10, b"TRIG\x01\x80")])),
        // The byte compare reads after the last match of its reference.
        (
            "bin_last",
            planted(
                200,
                12,
                &[(10, b"TRIG\x09"), (50, b"TRIG\x00"), (90, b"TRIG\x07")],
            ),
        ),
        // ... the last one found within ClamAV's first 128 KiB scan
        // buffer: a later match does not replace it (clamscan reads the
        // field after 10 here, not after 150,000).
        (
            "bin_early_and_late",
            planted(200_000, 13, &[(10, b"TRIG\x09"), (150_000, b"TRIG\x07")]),
        ),
    ];
    compare(&sigs, &files);
}

#[test]
fn malformed_lines_are_reported_with_line_numbers_and_the_rest_loads() {
    let d = tempfile::tempdir().unwrap();
    let p = d.path().join("m.ldb");
    std::fs::write(
        &p,
        "Good.One;Target:0;0;41424344\n\
         Bad.Expr;Target:0;0&;41424344\n\
         # comment\n\
         Bad.Count;Target:0;0&1;41424344\n\
         Bad.Hex;Target:0;0;4142434\n\
         Bad.Tdb;Target:x;0;41424344\n\
         Unsup.Macro;Target:0;0&1;41424344;${1-2}0$\n\
         Good.Two;Engine:51-255,Target:0;0;45464748::i\n",
    )
    .unwrap();
    let e = BuiltinEngine::load("t", &[p]).unwrap();
    let info = e.info();
    assert_eq!(info.signatures.get("ldb"), Some(&2));
    assert_eq!(info.unsupported.get("ldb_macro"), Some(&1));
    let lines: Vec<&str> = info
        .load_errors
        .iter()
        .map(|m| m.split(": ").next().unwrap())
        .collect();
    assert_eq!(lines.len(), 4, "{:?}", info.load_errors);
    for (i, l) in [2, 4, 5, 6].iter().enumerate() {
        assert!(
            lines[i].ends_with(&format!("m.ldb:{l}")),
            "{:?}",
            info.load_errors
        );
    }
    let ctx = ScanContext::within(Duration::from_secs(60));
    let r = e
        .scan_blob(&Blob::from_vec(b"..ABCD..efgh".to_vec()), None, &ctx)
        .unwrap();
    let mut names: Vec<String> = r.hits.into_iter().map(|h| h.signature).collect();
    names.sort();
    assert_eq!(names, vec!["Good.One", "Good.Two"]);
}

/// Random logical signatures over a small vocabulary of planted literals,
/// random expressions with counts; random files with 0..3 copies of each
/// literal. Moat and clamscan must agree on every file.
#[test]
fn random_logical_signatures_agree_with_clamscan() {
    let mut x: u64 = 0x1234_5678_9abc_def1;
    let mut rnd = |n: u64| {
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        x % n
    };
    let words: Vec<Vec<u8>> = (0..6)
        .map(|i| format!("W{i}rd{}", (b'a' + i as u8) as char).into_bytes())
        .collect();
    let mut sigs = Vec::new();
    for s in 0..60 {
        let nsub = 1 + rnd(3) as usize;
        let subs: Vec<String> = (0..nsub)
            .map(|_| {
                let w = &words[rnd(words.len() as u64) as usize];
                match rnd(4) {
                    0 => format!("{}::i", hexs(&w.to_ascii_uppercase())),
                    1 => format!("{}??{}", hexs(&w[..2]), hexs(&w[3..])),
                    _ => hexs(w),
                }
            })
            .collect();
        let leaf = |i: usize, r: &mut dyn FnMut(u64) -> u64| match r(5) {
            0 => format!("{i}={}", r(3)),
            1 => format!("{i}>{}", r(2)),
            2 => format!("{i}<{}", 1 + r(2)),
            _ => format!("{i}"),
        };
        let expr = match nsub {
            1 => leaf(0, &mut rnd),
            2 => {
                let op = if rnd(2) == 0 { '&' } else { '|' };
                format!("{}{op}{}", leaf(0, &mut rnd), leaf(1, &mut rnd))
            }
            _ => match rnd(3) {
                0 => format!("(0|1|2)>{},{}", rnd(3), 1 + rnd(2)),
                1 => format!(
                    "({}&{})|{}",
                    leaf(0, &mut rnd),
                    leaf(1, &mut rnd),
                    leaf(2, &mut rnd)
                ),
                _ => "(0|1)=2&2".to_string(),
            },
        };
        sigs.push(format!(
            "R.{s};Engine:51-255,Target:0;{expr};{}",
            subs.join(";")
        ));
    }
    let mut files = Vec::new();
    for f in 0..40 {
        let len = 300 + rnd(500) as usize;
        let mut data = filler(len, 100 + f);
        for w in &words {
            for _ in 0..rnd(3) {
                let at = 6 + rnd((len - w.len() - 12) as u64) as usize;
                let w = if rnd(3) == 0 {
                    w.to_ascii_lowercase()
                } else {
                    w.clone()
                };
                data[at..at + w.len()].copy_from_slice(&w);
            }
        }
        files.push((format!("r{f}"), data));
    }
    let files: Vec<(&str, Vec<u8>)> = files.iter().map(|(n, d)| (n.as_str(), d.clone())).collect();
    let n = compare(&sigs.join("\n"), &files);
    println!("random: {n} detections agreed");
    assert!(n > 20, "too few detections ({n}) for the test to mean much");
}

fn build(cc: &str, src: &str, out: &Path) -> Option<Vec<u8>> {
    let c = out.with_extension("c");
    std::fs::write(&c, src).ok()?;
    let r = Command::new(cc).arg("-o").arg(out).arg(&c).output().ok()?;
    if !r.status.success() {
        println!("note: {cc} failed: {}", String::from_utf8_lossy(&r.stderr));
        return None;
    }
    #[allow(clippy::disallowed_methods)] // a small test binary
    std::fs::read(out).ok()
}

/// `EntryPoint` and `NumberOfSections` on PE and ELF files: signatures for
/// every 1 KiB entry-point bin and every section count, so that both
/// engines must agree on each file's exact bin and count.
#[test]
fn executable_target_description_matches_clamscan() {
    let d = tempfile::tempdir().unwrap();
    let prog = "#include <stdio.h>\nint main(void){puts(\"LDBMARK-4711\");return 0;}\n";
    let mut files: Vec<(String, Vec<u8>)> = Vec::new();
    if let Some(pe) = build("x86_64-w64-mingw32-gcc", prog, &d.path().join("p.exe")) {
        files.push(("mingw.exe".into(), pe));
    }
    if let Some(elf) = build("gcc", prog, &d.path().join("p.elf")) {
        files.push(("gcc.elf".into(), elf));
    }
    #[allow(clippy::disallowed_methods)] // a small test file
    if let Ok(clam) = std::fs::read("/usr/share/clamav-testfiles/clam.exe") {
        files.push(("clam.exe".into(), clam));
    }
    files.push((
        "fake_mz".into(),
        [b"MZ".as_slice(), &filler(300, 3)].concat(),
    ));
    if files.len() < 2 {
        println!("note: no compilers nor clamav-testfiles; test skipped");
        return;
    }
    let mut sigs = vec![
        "X.Pe;Engine:51-255,Target:1;0;0:4d5a".to_string(),
        "X.Elf;Engine:51-255,Target:6;0;0:7f454c46".to_string(),
        format!("X.Mark;Engine:51-255,Target:0;0;{}", hexs(b"LDBMARK-4711")),
    ];
    for (t, magic) in [(1, "4d5a"), (6, "7f454c46")] {
        for k in 0..256u32 {
            sigs.push(format!(
                "X.Ep{t}.{k};Engine:51-255,Target:{t},EntryPoint:{}-{};0;0:{magic}",
                k * 1024,
                k * 1024 + 1023
            ));
        }
        for n in 0..40 {
            sigs.push(format!(
                "X.Nos{t}.{n};Engine:51-255,Target:{t},NumberOfSections:{n}-{n};0;0:{magic}"
            ));
        }
        sigs.push(format!(
            "X.Both{t};Engine:51-255,Target:{t},EntryPoint:0-1000000,NumberOfSections:1-99;0;0:{magic}"
        ));
    }
    let files: Vec<(&str, Vec<u8>)> = files.iter().map(|(n, d)| (n.as_str(), d.clone())).collect();
    let n = compare(&sigs.join("\n"), &files);
    println!("executables: {n} detections agreed");
    assert!(n >= 8, "too few detections ({n})");
}

/// Text and HTML objects: ClamAV evaluates logical signatures on each
/// scanned layer (raw text, its normalised text; HTML's normalised layers),
/// with targets 0, 3 (HTML) and 7 (ASCII).
#[test]
fn logical_signatures_on_text_and_html_layers_match_clamscan() {
    let sigs = [
        format!(
            "T.Any;Engine:51-255,Target:0;0&1;{};{}",
            hexs(b"Hello"),
            hexs(b"WORLD")
        ),
        format!(
            "T.Lower;Engine:51-255,Target:0;0&1;{};{}",
            hexs(b"hello"),
            hexs(b"world")
        ),
        format!("T.Ascii;Engine:51-255,Target:7;0;{}", hexs(b"hello world")),
        format!("T.AsciiCount;Engine:51-255,Target:7;0=2;{}", hexs(b"hello")),
        format!(
            "T.Html;Engine:51-255,Target:3;0&1;{};{}",
            hexs(b"<script"),
            hexs(b"evil(")
        ),
        format!(
            "T.HtmlNocase;Engine:51-255,Target:0;0;{}::i",
            hexs(b"EVIL(")
        ),
        format!(
            "T.Pcre;Engine:81-255,Target:0;0&1;{};0/hel+o\\s+world/i",
            hexs(b"ello")
        ),
        format!("T.Empty;Engine:51-255,Target:3;0<1;{}", hexs(b"absent!")),
    ]
    .join("\n");
    let files = vec![
        ("plain.txt", b"Say Hello   WORLD and hello world\n".to_vec()),
        ("twice.txt", b"hello there, HELLO again\n".to_vec()),
        (
            "page.html",
            b"<html><body><!-- Hello --><SCRIPT>Evil(1)</SCRIPT>hello world</body></html>\n"
                .to_vec(),
        ),
    ];
    let n = compare(&sigs, &files);
    println!("layers: {n} detections agreed");
    assert!(n >= 6, "too few detections ({n})");
}
