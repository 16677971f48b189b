//! What the oracle tests share: reading Debian's test files, walking a file
//! into its members, and asking clamscan which `.hdb` hashes it reports.
// Each test crate includes this module and uses part of it.
#![allow(dead_code)]

use moat_core::Blob;
use moat_extract::{Limits, Problem, walk};
use std::collections::BTreeSet;
use std::io::Read;
use std::path::{Path, PathBuf};
use std::process::Command;

/// A test file (clamav-testfiles), at most 64 MiB.
#[allow(clippy::disallowed_methods)] // bounded by take()
pub fn read(path: &Path) -> Vec<u8> {
    let mut v = Vec::new();
    std::fs::File::open(path)
        .unwrap_or_else(|e| panic!("{}: {e} (scripts/test-deps.sh installs it)", path.display()))
        .take(64 << 20)
        .read_to_end(&mut v)
        .unwrap();
    v
}

pub fn md5_hex(d: &[u8]) -> String {
    use md5::Digest;
    md5::Md5::digest(d)
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect()
}

/// The walk of `file` (located as `f`): its problems and the members,
/// (location, bytes).
#[allow(clippy::disallowed_methods)] // test files of a few KiB
pub fn walked(file: &[u8]) -> (Vec<Problem>, Vec<(String, Vec<u8>)>) {
    let mut out = Vec::new();
    let report = walk::<std::convert::Infallible>(
        &Blob::from_vec(file.to_vec()),
        "f",
        &Limits::default(),
        &mut |e| {
            let mut v = Vec::new();
            e.data.reader().read_to_end(&mut v).unwrap();
            out.push((e.location.to_string(), v));
            Ok(())
        },
    )
    .unwrap();
    (report.problems, out)
}

/// clamscan's detections with `hdb` as the only database: (file name, name).
pub fn clamscan(hdb: &str, files: &[PathBuf]) -> BTreeSet<(String, String)> {
    let dir = tempfile::tempdir().unwrap();
    let db = dir.path().join("oracle.hdb");
    std::fs::write(&db, hdb).unwrap();
    let out = Command::new("clamscan")
        .args(["--no-summary", "--allmatch", "-d"])
        .arg(&db)
        .args(files)
        .output()
        .expect("clamscan (apt clamav) runs");
    String::from_utf8_lossy(&out.stdout)
        .lines()
        .filter_map(|l| {
            let (path, rest) = l.rsplit_once(": ")?;
            let name = rest.strip_suffix(" FOUND")?;
            let name = name.strip_suffix(".UNOFFICIAL").unwrap_or(name);
            let file = Path::new(path).file_name()?.to_string_lossy().into_owned();
            Some((file, name.to_string()))
        })
        .collect()
}

/// Bytes that do not compress: a fixed xorshift sequence from `x` (not 0).
pub fn noise(n: usize, mut x: u32) -> Vec<u8> {
    (0..n)
        .map(|_| {
            x ^= x << 13;
            x ^= x >> 17;
            x ^= x << 5;
            x as u8
        })
        .collect()
}
