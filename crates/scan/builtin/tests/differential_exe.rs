//! Differential tests against Debian's `clamscan`: PE section hashes
//! (`.mdb`/`.msb`), import-table hashes (`.imp`) and exe-relative `.ndb`
//! offsets on PE files built at test time with MinGW, an ELF built with gcc,
//! and the PE files of `clamav-testfiles`. Signatures are made from the files
//! by ClamAV's own `sigtool`; both engines scan the same files with the same
//! signature directory and must report the same names per file (modulo
//! ClamAV's `.UNOFFICIAL` suffix). Skips with a printed reason when
//! `clamscan`, `sigtool` or the compilers are missing.
#![allow(clippy::disallowed_methods)] // small test files are read whole

use moat_builtin::BuiltinEngine;
use moat_core::{Blob, ScanContext};
use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

const TESTFILES: &str = "/usr/share/clamav-testfiles";

fn have(cmd: &str) -> bool {
    Command::new(cmd).arg("--version").output().is_ok()
}

fn build(cc: &str, src: &str, out: &Path, extra: &[&str]) -> Option<PathBuf> {
    let c = out.with_extension("c");
    std::fs::write(&c, src).ok()?;
    let r = Command::new(cc)
        .args(extra)
        .arg("-o")
        .arg(out)
        .arg(&c)
        .output()
        .ok()?;
    if !r.status.success() {
        eprintln!("SKIP {cc}: {}", String::from_utf8_lossy(&r.stderr));
        return None;
    }
    Some(out.to_path_buf())
}

/// `(rsz, md5)` of each section with data, and the import hash, from
/// `sigtool --debug`.
/// Section `(rsz, md5)` pairs and the import hash `(md5, size)`.
type Facts = (Vec<(u64, String)>, Option<(String, u64)>);

fn sigtool_facts(file: &Path) -> Facts {
    let run = |opt: &str| {
        let o = Command::new("sigtool")
            .args(["--debug", opt])
            .arg(file)
            .output()
            .unwrap();
        String::from_utf8_lossy(&o.stderr).into_owned()
    };
    let sections = run("--mdb")
        .lines()
        .filter_map(|l| {
            let v = l.split("Section{").nth(1)?.split(": ").nth(1)?;
            let (size, md5) = v.split_once(':')?;
            Some((size.parse().ok()?, md5.trim().to_string()))
        })
        .collect();
    let imp = run("--imp").lines().find_map(|l| {
        let (h, n) = l.split("Imphash: ").nth(1)?.trim().split_once(':')?;
        Some((h.to_string(), n.parse().ok()?))
    });
    (sections, imp)
}

/// Per file, the names `clamscan --allmatch` reports.
fn clamscan(db: &Path, files: &[PathBuf]) -> BTreeMap<PathBuf, BTreeSet<String>> {
    let out = Command::new("clamscan")
        .args(["--allmatch", "--no-summary", "-d"])
        .arg(db)
        .args(files)
        .output()
        .unwrap();
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.code().is_some_and(|c| c <= 1),
        "clamscan failed: {text}{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let mut m: BTreeMap<PathBuf, BTreeSet<String>> =
        files.iter().map(|f| (f.clone(), BTreeSet::new())).collect();
    for l in text.lines() {
        if let Some(rest) = l.strip_suffix(" FOUND")
            && let Some((path, name)) = rest.rsplit_once(": ")
        {
            let name = name.strip_suffix(".UNOFFICIAL").unwrap_or(name);
            m.entry(PathBuf::from(path))
                .or_default()
                .insert(name.to_string());
        }
    }
    m
}

fn moat(db: &Path, files: &[PathBuf]) -> BTreeMap<PathBuf, BTreeSet<String>> {
    let e = BuiltinEngine::load("diff", &[db.to_path_buf()]).unwrap();
    assert_eq!(
        e.load_error_count(),
        0,
        "{:?}",
        moat_core::Engine::info(&e).load_errors
    );
    let ctx = ScanContext::within(Duration::from_secs(60));
    files
        .iter()
        .map(|f| {
            let blob = Blob::open(f).unwrap();
            let r = e.scan_blob(&blob, None, &ctx).unwrap();
            let names = r.hits.into_iter().map(|h| h.signature).collect();
            (f.clone(), names)
        })
        .collect()
}

const PE_SRC: &str = r#"#include <windows.h>
#include <stdio.h>
int main(void) { printf("moat %lu\n", GetTickCount()); Sleep(1); return 0; }
"#;

/// Packed test files: ClamAV unpacks these (UPX, FSG, MEW, ...) and also
/// matches signatures on the unpacked layer, which moat does not do yet.
fn unpacked_by_clamav(p: &Path) -> bool {
    let n = p.file_name().and_then(|n| n.to_str()).unwrap_or("");
    n != "clam.exe" && n.starts_with("clam")
}

#[test]
fn section_and_import_hashes_match_clamscan() {
    if !have("clamscan") || !have("sigtool") {
        eprintln!("SKIP: clamscan/sigtool not installed (apt clamav)");
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let mut files: Vec<PathBuf> = Vec::new();
    match build(
        "x86_64-w64-mingw32-gcc",
        PE_SRC,
        &dir.path().join("m.exe"),
        &["-O1", "-s"],
    ) {
        Some(p) => files.push(p),
        None => eprintln!("SKIP part: no MinGW (apt gcc-mingw-w64-x86-64)"),
    }
    match std::fs::read_dir(TESTFILES) {
        Ok(rd) => {
            let mut t: Vec<PathBuf> = rd
                .filter_map(|e| e.ok().map(|e| e.path()))
                .filter(|p| p.extension().is_some_and(|x| x == "exe"))
                .collect();
            t.sort();
            files.extend(t);
        }
        Err(_) => eprintln!("SKIP part: {TESTFILES} missing (apt clamav-testfiles)"),
    }
    if files.is_empty() {
        eprintln!("SKIP: no PE files");
        return;
    }
    // The first PE with `ZM` instead of `MZ`: ClamAV's PE parser accepts
    // it, but its file typing does not make it a PE, so nothing matches.
    let zm = dir.path().join("zm.exe");
    let mut data = std::fs::read(&files[0]).unwrap();
    data[..2].copy_from_slice(b"ZM");
    std::fs::write(&zm, data).unwrap();
    files.push(zm.clone());
    let db = dir.path().join("db");
    std::fs::create_dir(&db).unwrap();
    let (mut mdb, mut msb, mut imp) = (String::new(), String::new(), String::new());
    // ClamAV reports one name per (hash, size) key even when several
    // signatures share it; the sets here have no duplicate keys.
    let mut seen = BTreeSet::new();
    for (i, f) in files.iter().enumerate() {
        let (sections, imphash) = sigtool_facts(f);
        for (j, (size, md5)) in sections.iter().enumerate() {
            if !seen.insert(md5.clone()) {
                continue;
            }
            mdb.push_str(&format!("{size}:{md5}:Mdb.F{i}.S{j}\n"));
            if j == 0 {
                // Wildcard size (needs functionality level 73).
                msb.push_str(&format!("*:{md5}:Msb.Any.F{i}:73\n"));
            }
        }
        if let Some((h, n)) = imphash.filter(|(h, n)| *n > 0 && seen.insert(h.clone())) {
            imp.push_str(&format!("{h}:{n}:Imp.F{i}\n{h}:*:Imp.Any.F{i}\n"));
        }
    }
    // SHA-1 and SHA-256 section and import hashes of the files whose
    // layout parses here (clamscan judges whether the bytes are right).
    for (i, f) in files
        .iter()
        .enumerate()
        .filter(|(_, f)| !unpacked_by_clamav(f))
    {
        use moat_builtin::exe::{self, PeMode, Src};
        use sha1::Sha1;
        use sha2::{Digest, Sha256};
        let data = std::fs::read(f).unwrap();
        let blob = Blob::from_vec(data.clone());
        let src = Src::new(&blob, &[]);
        let Ok(Some(info)) = exe::parse(&src, PeMode::Scan) else {
            continue;
        };
        for (j, s) in info.sections.iter().enumerate().filter(|(_, s)| s.rsz != 0) {
            let body = &data[s.raw as usize..(s.raw + s.rsz) as usize];
            let h1 = hex::encode(Sha1::digest(body));
            let h2 = hex::encode(Sha256::digest(body));
            if seen.insert(h2.clone()) {
                msb.push_str(&format!(
                    "{}:{h1}:Sha1.F{i}.S{j}\n{}:{h2}:Sha256.F{i}.S{j}\n",
                    s.rsz, s.rsz
                ));
            }
        }
        if !info.pe32plus {
            let mut h = Sha256::new();
            if let Ok(n) = exe::imports::import_string(&src, &info, |p| h.update(p))
                && n > 0
            {
                imp.push_str(&format!(
                    "{}:{n}:ImpSha256.F{i}\n",
                    hex::encode(h.finalize())
                ));
            }
        }
    }
    assert!(!mdb.is_empty(), "sigtool produced no section hashes");
    std::fs::write(db.join("t.mdb"), &mdb).unwrap();
    std::fs::write(db.join("t.msb"), &msb).unwrap();
    std::fs::write(db.join("t.imp"), &imp).unwrap();
    let want = clamscan(&db, &files);
    let got = moat(&db, &files);
    let mut compared = 0;
    for f in &files {
        let (w, g) = (&want[f], &got[f]);
        if unpacked_by_clamav(f) {
            // Everything moat reports, clamscan reports too; clamscan may
            // report more (signatures matching the unpacked layer).
            assert!(g.is_subset(w), "{}: moat {g:?} clamscan {w:?}", f.display());
            if g != w {
                eprintln!(
                    "{}: only clamscan (unpacked layer): {:?}",
                    f.display(),
                    w - g
                );
            }
        } else {
            assert_eq!(g, w, "{}", f.display());
            compared += 1;
        }
    }
    assert!(compared >= 1 || !Path::new(TESTFILES).exists());
    assert!(got[&zm].is_empty(), "{:?}", got[&zm]);
    let count =
        |m: &BTreeMap<PathBuf, BTreeSet<String>>| m.values().map(BTreeSet::len).sum::<usize>();
    eprintln!(
        "section/import hashes: {} files ({compared} compared exactly), {} signatures, moat {} / clamscan {} detections",
        files.len(),
        mdb.lines().count() + msb.lines().count() + imp.lines().count(),
        count(&got),
        count(&want)
    );
    // The checks are not vacuous: SHA-256 section hashes match, and
    // clam.exe's sections and SHA-256 import hash are detected.
    assert!(got.values().flatten().any(|n| n.starts_with("Sha256.")));
    assert!(got.values().flatten().any(|n| n.starts_with("Sha1.")));
    if let Some(ce) = files.iter().find(|f| f.ends_with("clam.exe")) {
        assert!(
            got[ce].iter().any(|n| n.starts_with("Mdb.")),
            "{:?}",
            got[ce]
        );
        assert!(
            got[ce].iter().any(|n| n.starts_with("ImpSha256.")),
            "{:?}",
            got[ce]
        );
    }
}

const ELF_SRC: &str = "#include <stdio.h>\nint main(void) { puts(\"moat\"); return 0; }\n";

/// `n` bytes at `off` as a hex signature body, if inside the file.
fn hex_at(data: &[u8], off: u64, n: usize) -> Option<String> {
    let off = usize::try_from(off).ok()?;
    data.get(off..off + n).map(hex::encode)
}

#[test]
fn exe_relative_ndb_offsets_match_clamscan() {
    use moat_builtin::exe::{self, PeMode, Src};
    if !have("clamscan") {
        eprintln!("SKIP: clamscan not installed (apt clamav)");
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let mut files: Vec<PathBuf> = Vec::new();
    if let Some(p) = build(
        "x86_64-w64-mingw32-gcc",
        PE_SRC,
        &dir.path().join("m.exe"),
        &["-O1", "-s"],
    ) {
        files.push(p);
    }
    if let Some(p) = build("gcc", ELF_SRC, &dir.path().join("e.elf"), &["-O1"]) {
        files.push(p);
    }
    for n in ["clam.exe", "clam-upx.exe", "clam-petite.exe"] {
        let p = Path::new(TESTFILES).join(n);
        if p.exists() {
            files.push(p);
        }
    }
    // An MZ file whose PE headers do not parse, and a plain file: EOF-n
    // resolves only on the plain one (ClamAV's target info status -1).
    let tail = b"\x11\x22\x33\x44moat-tail-bytes";
    let broken = dir.path().join("broken.exe");
    std::fs::write(&broken, [b"MZ".as_slice(), &[0u8; 100], tail].concat()).unwrap();
    let plain = dir.path().join("plain.bin");
    std::fs::write(&plain, [b"plain".as_slice(), &[0u8; 100], tail].concat()).unwrap();
    files.push(broken);
    files.push(plain);
    let mut ndb = format!("Eof.Tail:0:EOF-{}:{}\n", tail.len(), hex::encode(tail));
    ndb.push_str(&format!(
        "EofPe.Tail:1:EOF-{}:{}\n",
        tail.len(),
        hex::encode(tail)
    ));
    let mut with_layout = 0;
    for (i, f) in files.iter().enumerate() {
        let data = std::fs::read(f).unwrap();
        let blob = Blob::from_vec(data.clone());
        let Ok(Some(info)) = exe::parse(&Src::new(&blob, &[]), PeMode::Target) else {
            continue;
        };
        with_layout += 1;
        let t = if info.kind == exe::ExeKind::Pe { 1 } else { 6 };
        let other = 7 - t; // the other executable target: must not match
        let ep = info.ep.unwrap();
        let mut add = |name: String, target: u32, off: String, at: u64| {
            if let Some(h) = hex_at(&data, at, 12) {
                ndb.push_str(&format!("{name}:{target}:{off}:{h}\n"));
            }
        };
        add(format!("Ep0.F{i}"), t, "EP+0".into(), ep);
        add(format!("Ep7.F{i}"), t, "EP+7".into(), ep + 7);
        add(format!("EpOther.F{i}"), other, "EP+0".into(), ep);
        add(format!("EpWrong.F{i}"), t, "EP+1".into(), ep);
        if ep >= 3 {
            add(format!("EpMinus.F{i}"), t, "EP-3".into(), ep - 3);
        }
        add(format!("EpShift.F{i}"), t, "EP+0,16".into(), ep + 9);
        add(format!("EpShiftShort.F{i}"), t, "EP+0,4".into(), ep + 9);
        let n = info.sections.len();
        for (j, s) in info
            .sections
            .iter()
            .enumerate()
            .filter(|(_, s)| s.rsz >= 64)
        {
            let raw = u64::from(s.raw);
            add(format!("S{j}Plus.F{i}"), t, format!("S{j}+16"), raw + 16);
            add(
                format!("SE{j}.F{i}"),
                t,
                format!("SE{j}"),
                raw + u64::from(s.rsz) / 2,
            );
            if j + 1 == n {
                add(format!("SL.F{i}"), t, "SL+8".into(), raw + 8);
            }
        }
        // A section index past the table never resolves.
        add(format!("SPast.F{i}"), t, format!("S{n}+0"), ep);
    }
    assert!(with_layout >= 1 || files.len() == 2, "no executable parsed");
    let db = dir.path().join("db");
    std::fs::create_dir(&db).unwrap();
    std::fs::write(db.join("t.ndb"), &ndb).unwrap();
    let want = clamscan(&db, &files);
    let got = moat(&db, &files);
    for f in &files {
        let (w, g) = (&want[f], &got[f]);
        if unpacked_by_clamav(f) {
            assert!(g.is_subset(w), "{}: moat {g:?} clamscan {w:?}", f.display());
        } else {
            assert_eq!(g, w, "{}", f.display());
        }
    }
    let plain_hits = &got[&dir.path().join("plain.bin")];
    assert!(plain_hits.contains("Eof.Tail"), "{plain_hits:?}");
    let total: usize = got.values().map(BTreeSet::len).sum();
    eprintln!(
        "exe offsets: {} signatures, {total} detections agreed",
        ndb.lines().count()
    );
}

/// `(B)`, `(L)`, `(W)` at a signature's ends (zero-width checks) and inside
/// it (one byte of the class), plain and negated, on words in many
/// surroundings: the same files detected by the same names as clamscan.
#[test]
fn boundary_markers_match_clamscan() {
    if !have("clamscan") {
        eprintln!("SKIP: clamscan not installed (apt clamav)");
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let w = "6d6f6174"; // "moat"
    let x = "787978"; // "xyx"
    let sigs = [
        ("LeftB", format!("(B){w}")),
        ("RightB", format!("{w}(B)")),
        ("BothW", format!("(W){w}(W)")),
        ("RightNotW", format!("{w}!(W)")),
        ("RightNotB", format!("{w}!(B)")),
        ("LeftL", format!("(L){w}")),
        ("RightL", format!("{w}(L)")),
        ("MidB", format!("{w}(B){x}")),
        ("MidW", format!("{w}(W){x}")),
        ("MidL", format!("{w}(L){x}")),
        ("MidNotB", format!("{w}!(B){x}")),
        ("MidNotW", format!("{w}!(W){x}")),
        // Split at `*`: the left check belongs to the first part, the
        // right one to the last.
        ("StarLeftB", format!("(B){w}*{x}")),
        ("StarRightW", format!("{w}*{x}(W)")),
        // Not `!(W)` first: clamscan 1.4.6 crashes on it (moat counts it
        // unsupported).
    ];
    let ndb: String = sigs
        .iter()
        .map(|(n, h)| format!("Bound.{n}:0:*:{h}\n"))
        .collect();
    let db = dir.path().join("db");
    std::fs::create_dir(&db).unwrap();
    std::fs::write(db.join("b.ndb"), &ndb).unwrap();
    let contexts: &[&[u8]] = &[
        b"moat",
        b" moat ",
        b"xmoatx",
        b"\nmoat\n",
        b"moat\r\nxyx",
        b".moat=",
        b"moat-xyx",
        b"moat_xyx",
        b"moat\nxyx",
        b"moat xyx",
        b"moatAxyx",
        b"moat.xyx",
        b"<moat>",
        b"@moat'",
        b"/moat/",
        b"1moat2",
        b"\"moat\"",
        b"moat\rx",
        b"-moat_",
        b"moat\r\n",
        b"\tmoat\t",
        b"xmoat moat xyxz",
        b"amoat.xyx moat xyx ",
        b"moat xyxa xyx.",
    ];
    let mut files = Vec::new();
    for (i, c) in contexts.iter().enumerate() {
        // Binary lead-in so both scan the raw bytes only, then the same
        // context again at the very start and end of a file.
        let p = dir.path().join(format!("b{i}.bin"));
        std::fs::write(
            &p,
            [&[0u8, 1, 2, 0xff, 0xfe][..], c, &[0u8, 3, 0xff]].concat(),
        )
        .unwrap();
        files.push(p);
        let p = dir.path().join(format!("e{i}.bin"));
        std::fs::write(&p, [c, &[0u8, 0, 0, 0][..], c].concat()).unwrap();
        files.push(p);
    }
    let want = clamscan(&db, &files);
    let got = moat(&db, &files);
    let mut agreed = 0;
    for f in &files {
        assert_eq!(
            got[f],
            want[f],
            "{}: {:?}",
            f.display(),
            std::fs::read(f).unwrap()
        );
        agreed += got[f].len();
    }
    assert!(
        agreed > 20,
        "only {agreed} detections: the test is not exercising much"
    );
    eprintln!(
        "boundaries: {} signatures, {} files, {agreed} detections agreed",
        sigs.len(),
        files.len()
    );
}
