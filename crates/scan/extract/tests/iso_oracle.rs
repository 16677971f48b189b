//! ISO 9660 extraction against ClamAV's (apt `clamav`): images built here
//! with a real writer (Debian's `genisoimage`, installed by
//! `scripts/test-deps.sh`) are walked, the MD5 of every file moat extracts
//! becomes an `.hdb` signature, and clamscan must find each in the image,
//! which it can only do if its own extraction (`libclamav/iso9660.c`)
//! produced the same bytes. The images: plain ISO 9660, Rock Ridge,
//! Joliet (whose second tree ClamAV walks too), nested directories, many
//! files, an empty file, a large-ish one, `clam.exe`, a zip (walked into),
//! and the same image in raw 2352-byte CD sectors. `ISO_KEEP=DIR` keeps
//! the images there, to compare with `clamscan --debug --leave-temps`.

mod common;

use common::{clamscan, md5_hex, noise, read, walked};
use std::collections::BTreeSet;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::Command;

const CLAM_EXE: &str = "/usr/share/clamav-testfiles/clam.exe";

/// A deterministic, incompressible-looking filler.
fn filler(n: usize, seed: u32) -> Vec<u8> {
    noise(n, seed.wrapping_mul(2_654_435_761).max(1))
}

fn zip_with(name: &str, data: &[u8]) -> Vec<u8> {
    let mut z = zip::ZipWriter::new(std::io::Cursor::new(Vec::new()));
    z.start_file(name, zip::write::SimpleFileOptions::default())
        .unwrap();
    z.write_all(data).unwrap();
    z.finish().unwrap().into_inner()
}

/// The tree the images hold.
fn source(dir: &Path) {
    let put = |p: &str, d: &[u8]| {
        let p = dir.join(p);
        std::fs::create_dir_all(p.parent().unwrap()).unwrap();
        std::fs::write(p, d).unwrap();
    };
    put("clam.exe", &read(Path::new(CLAM_EXE)));
    put("empty.txt", b"");
    put("readme.txt", b"an ISO 9660 image built by moat's tests\n");
    put("sub/deeper/deepest/big.bin", &filler(300_000, 7));
    put(
        "sub/inner.zip",
        &zip_with("zipped.txt", &b"zipped text\n".repeat(20)),
    );
    for i in 0..40 {
        put(
            &format!("many/f{i:02}.dat"),
            &filler(100 + i * 37, i as u32 + 100),
        );
    }
}

fn genisoimage(src: &Path, out: &Path, opts: &[&str]) {
    let st = Command::new("genisoimage")
        .arg("-quiet")
        .args(opts)
        .arg("-o")
        .arg(out)
        .arg(src)
        .status()
        .expect("genisoimage runs (scripts/test-deps.sh installs it)");
    assert!(st.success(), "genisoimage {opts:?}");
}

/// The image in raw 2352-byte mode 1 sectors (sync, header, data, EDC/ECC
/// left zero), as a `.bin` CD dump holds it.
fn raw_sectors(iso: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity(iso.len() / 2048 * 2352);
    for s in iso.chunks(2048) {
        out.extend_from_slice(b"\x00\xff\xff\xff\xff\xff\xff\xff\xff\xff\xff\x00");
        out.extend_from_slice(&[0, 2, 0, 1]);
        out.extend_from_slice(s);
        out.resize(out.len() + 2048 - s.len() + 288, 0);
    }
    out
}

struct Case {
    file: String,
    /// The image's members (direct, `f>NAME`), and everything walked.
    members: Vec<(String, Vec<u8>)>,
    all: Vec<(String, Vec<u8>)>,
}

fn case(dir: &Path, file: &str, data: &[u8]) -> Case {
    std::fs::write(dir.join(file), data).unwrap();
    let (problems, all) = walked(data);
    assert!(problems.is_empty(), "{file}: {problems:?}");
    let members = all
        .iter()
        // Not the archives carved from the raw image (a file in raw sectors
        // is not one byte range, so its zip is also found that way).
        .filter(|(l, _)| {
            l.starts_with("f>") && l.matches('>').count() == 1 && !l.starts_with("f>embedded@")
        })
        .cloned()
        .collect();
    Case {
        file: file.to_string(),
        members,
        all,
    }
}

fn names(c: &Case) -> BTreeSet<&str> {
    c.members.iter().map(|(l, _)| &l[2..]).collect()
}

#[test]
fn genisoimage_images_match_clamscan() {
    let tmp = tempfile::tempdir().unwrap();
    let keep = std::env::var_os("ISO_KEEP").map(PathBuf::from);
    let dir = keep.as_deref().unwrap_or(tmp.path());
    std::fs::create_dir_all(dir).unwrap();
    let src = dir.join("src");
    source(&src);
    let mut cases = Vec::new();
    for (file, opts) in [
        ("plain.iso", &[][..]),
        ("rr.iso", &["-R"][..]),
        ("joliet.iso", &["-J"][..]),
        ("both.iso", &["-J", "-R"][..]),
    ] {
        let out = dir.join(format!("{file}.tmp"));
        genisoimage(&src, &out, opts);
        let data = read(&out);
        std::fs::remove_file(&out).unwrap();
        if file == "plain.iso" {
            cases.push(case(dir, "raw2352.bin", &raw_sectors(&data)));
        }
        cases.push(case(dir, file, &data));
    }

    let exe = read(Path::new(CLAM_EXE));
    for c in &cases {
        let n = names(c);
        // ISO 9660 names (upper case, `;1` cut) in every tree walked; the
        // Joliet tree's files are the same extents, handed over once.
        for want in [
            "CLAM.EXE",
            "EMPTY.TXT",
            "README.TXT",
            "SUB/INNER.ZIP",
            "SUB/DEEPER/DEEPEST/BIG.BIN",
            "MANY/F00.DAT",
            "MANY/F39.DAT",
        ] {
            assert!(n.contains(want), "{}: {want} not in {n:?}", c.file);
        }
        assert_eq!(c.members.len(), 45, "{}: {n:?}", c.file);
        let get = |name: &str| &c.members.iter().find(|(l, _)| &l[2..] == name).unwrap().1;
        assert_eq!(get("CLAM.EXE"), &exe, "{}", c.file);
        assert!(get("EMPTY.TXT").is_empty());
        assert_eq!(get("SUB/DEEPER/DEEPEST/BIG.BIN"), &filler(300_000, 7));
        assert!(
            c.all.iter().any(
                |(l, d)| l == "f>SUB/INNER.ZIP>zipped.txt" && d == &b"zipped text\n".repeat(20)
            ),
            "{}: the zip is walked into",
            c.file
        );
    }

    // Every non-empty member's MD5 a signature: clamscan finds each in its image.
    // One name per distinct content (the images share files).
    let mut sigs = std::collections::BTreeMap::new();
    let mut want = BTreeSet::new();
    for c in &cases {
        for (_, d) in &c.members {
            if d.is_empty() {
                continue;
            }
            let n = sigs.len();
            let name = sigs
                .entry((md5_hex(d), d.len()))
                .or_insert_with(|| format!("IsoMember{n}"))
                .clone();
            want.insert((c.file.clone(), name));
        }
    }
    let hdb: String = sigs
        .iter()
        .map(|((md5, len), name)| format!("{md5}:{len}:{name}\n"))
        .collect();
    let files: Vec<PathBuf> = cases.iter().map(|c| dir.join(&c.file)).collect();
    let found = clamscan(&hdb, &files);
    let missing: Vec<_> = want.difference(&found).collect();
    assert!(missing.is_empty(), "clamscan did not find {missing:?}");
}
