//! Shared by the integration tests.
#![allow(dead_code, clippy::disallowed_methods)] // files the tests just wrote
use std::collections::HashSet;
use std::path::{Path, PathBuf};

/// Deterministic incompressible bytes.
pub fn pattern(n: usize, seed: u64) -> Vec<u8> {
    let mut x = seed | 1;
    (0..n)
        .map(|_| {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            x as u8
        })
        .collect()
}

/// Every file under `dir`.
pub fn files(dir: &Path) -> Vec<PathBuf> {
    let mut out = vec![dir.to_path_buf()];
    let mut i = 0;
    while i < out.len() {
        if out[i].is_dir() {
            for e in std::fs::read_dir(&out[i]).unwrap() {
                out.push(e.unwrap().path());
            }
        }
        i += 1;
    }
    out.into_iter().filter(|p| p.is_file()).collect()
}

/// Does any 32-byte window of `plain` taken every 1021 bytes occur in
/// `hay`? (A hash of each window's first 8 bytes, then a full compare.)
pub fn contains_plaintext(hay: &[u8], plain: &[u8]) -> bool {
    const W: usize = 32;
    if plain.len() < W || hay.len() < W {
        return false;
    }
    let needles: Vec<&[u8]> = (0..=plain.len() - W)
        .step_by(1021)
        .map(|i| &plain[i..i + W])
        .collect();
    let heads: HashSet<u64> = needles
        .iter()
        .map(|n| u64::from_le_bytes(n[..8].try_into().unwrap()))
        .collect();
    (0..=hay.len() - W).any(|i| {
        let h = u64::from_le_bytes(hay[i..i + 8].try_into().unwrap());
        heads.contains(&h) && needles.iter().any(|n| *n == &hay[i..i + W])
    })
}

/// No file under `dir` holds any of `plain`'s sampled windows.
pub fn assert_no_plaintext(dir: &Path, plain: &[u8]) {
    let all = files(dir);
    assert!(!all.is_empty(), "nothing stored under {}", dir.display());
    for f in all {
        let bytes = std::fs::read(&f).unwrap();
        assert!(
            !contains_plaintext(&bytes, plain),
            "plaintext found in {}",
            f.display()
        );
    }
}

#[test]
fn the_plaintext_search_finds_what_is_there() {
    let p = pattern(100_000, 5);
    let mut hay = pattern(50_000, 6);
    assert!(!contains_plaintext(&hay, &p));
    hay.extend_from_slice(&p[40_000..41_100]);
    assert!(contains_plaintext(&hay, &p));
}
