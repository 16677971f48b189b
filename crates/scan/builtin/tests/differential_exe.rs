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
use std::time::{Duration, Instant};

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
    let ctx = ScanContext {
        deadline: Instant::now() + Duration::from_secs(60),
    };
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
    // The checks are not vacuous: clam.exe's sections are detected.
    if let Some(ce) = files.iter().find(|f| f.ends_with("clam.exe")) {
        assert!(!got[ce].is_empty());
    }
}
