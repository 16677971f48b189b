//! How much SIMD would buy the ndb prefilter's per-position probe: the
//! bitmap probe of `crates/scan/builtin/src/ndb/prefilter.rs` (a 2^22-bit
//! map of hashed 4-byte grams, eight positions per step, branchless) in its
//! scalar form and with eight lanes (`std::simd` gather), over the same
//! bytes and the same bitmap, counting the positions whose bit is set.
//! `scalar` is a copy of the eight-at-once step of `GramIndex::scan` (with
//! `slot` and the constants beside it): this file needs nightly and no
//! crates, so it cannot call the real one; change both together.
//! Standalone (nightly, not a workspace member, no crates):
//!
//!     rustc +nightly -O -C target-cpu=native --edition 2024 -o /tmp/simd_probe bench/simd_probe.rs
//!     /tmp/simd_probe FILE_OR_DIR...        # reads up to 256 MiB
//!
//! The bitmap holds 20,000 grams taken from random positions of the data
//! itself, four distinct bytes each (so hits happen as with anchors cut
//! from real files), plus 20,000 random ones. Build it twice to compare
//! with what moat ships (baseline x86-64, no `target-cpu`): the scalar
//! loop of both binaries is the one to compare against.
#![feature(portable_simd)]

use std::simd::prelude::*;
use std::time::Instant;

const K: u32 = 0x9e37_79b1;
const BITS_LOG2: u32 = 22;
const WORDS: usize = 1 << (BITS_LOG2 - 6);
const SHIFT: u32 = 32 - BITS_LOG2;

fn slot(g: u32) -> (usize, u64) {
    let h = g.wrapping_mul(K) >> SHIFT;
    ((h >> 6) as usize & (WORDS - 1), 1u64 << (h & 63))
}

fn read_all(paths: &[String], cap: usize) -> Vec<u8> {
    let mut out = Vec::new();
    let mut stack: Vec<std::path::PathBuf> = paths.iter().map(Into::into).collect();
    while let Some(p) = stack.pop() {
        if out.len() >= cap {
            break;
        }
        if p.is_dir() {
            if let Ok(rd) = std::fs::read_dir(&p) {
                let mut v: Vec<_> = rd.filter_map(|e| e.ok().map(|e| e.path())).collect();
                v.sort();
                stack.extend(v.into_iter().rev());
            }
        } else if let Ok(b) = std::fs::read(&p) {
            out.extend_from_slice(&b[..b.len().min(cap - out.len())]);
        }
    }
    out
}

fn scalar(w: &[u8], bits: &[u64]) -> u64 {
    let mut n = 0u64;
    let mut i = 0;
    while i + 12 <= w.len() {
        let x = u64::from_le_bytes(w[i..i + 8].try_into().unwrap());
        let y = u64::from_le_bytes(w[i + 4..i + 12].try_into().unwrap());
        let mut hit = 0u32;
        for k in 0..4 {
            let (a, ab) = slot((x >> (8 * k)) as u32);
            let (b, bb) = slot((y >> (8 * k)) as u32);
            hit |= u32::from(bits[a] & ab != 0) << k;
            hit |= u32::from(bits[b] & bb != 0) << (k + 4);
        }
        n += u64::from(hit.count_ones());
        i += 8;
    }
    n
}

fn simd(w: &[u8], bits: &[u64]) -> u64 {
    let mut n = 0u64;
    let mut i = 0;
    let k = u32x8::splat(K);
    let mask = usizex8::splat(WORDS - 1);
    while i + 12 <= w.len() {
        let x = u64::from_le_bytes(w[i..i + 8].try_into().unwrap());
        let y = u64::from_le_bytes(w[i + 4..i + 12].try_into().unwrap());
        let g = u32x8::from_array([
            x as u32,
            (x >> 8) as u32,
            (x >> 16) as u32,
            (x >> 24) as u32,
            y as u32,
            (y >> 8) as u32,
            (y >> 16) as u32,
            (y >> 24) as u32,
        ]);
        let h = (g * k) >> u32x8::splat(SHIFT);
        let idx: usizex8 = (h >> u32x8::splat(6)).cast::<usize>() & mask;
        let words = u64x8::gather_or_default(bits, idx);
        let bit = (h & u32x8::splat(63)).cast::<u64>();
        let set = ((words >> bit) & u64x8::splat(1)).simd_ne(u64x8::splat(0));
        n += u64::from(set.to_bitmask().count_ones());
        i += 8;
    }
    n
}

fn main() {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let data = read_all(&args, 256 << 20);
    assert!(data.len() > 1 << 20, "give at least 1 MiB of files");
    let mut bits = vec![0u64; WORDS];
    let mut seed = 0x2545_f491_4f6c_dd1du64;
    let mut next = move || {
        seed ^= seed << 13;
        seed ^= seed >> 7;
        seed ^= seed << 17;
        seed
    };
    // Grams from the data as an anchor chooser would keep them: four
    // distinct bytes (no zero or 0xff runs, no repeated text).
    let mut taken = 0;
    while taken < 20_000 {
        let at = (next() as usize) % (data.len() - 4);
        let g: [u8; 4] = data[at..at + 4].try_into().unwrap();
        if (0..4).any(|i| (i + 1..4).any(|j| g[i] == g[j])) {
            continue;
        }
        let (wd, b) = slot(u32::from_le_bytes(g));
        bits[wd] |= b;
        taken += 1;
    }
    for _ in 0..20_000 {
        let (wd, b) = slot(next() as u32);
        bits[wd] |= b;
    }
    let mb = data.len() as f64 / 1e6;
    for round in 0..3 {
        let t = Instant::now();
        let a = scalar(&data, &bits);
        let ts = t.elapsed().as_secs_f64();
        let t = Instant::now();
        let b = simd(&data, &bits);
        let tv = t.elapsed().as_secs_f64();
        assert_eq!(a, b, "both count the same positions");
        println!(
            "round {round}: {mb:.0} MB, {a} positions set ({:.2} %); scalar {:.0} MB/s, simd {:.0} MB/s ({:.2}x)",
            100.0 * a as f64 / data.len() as f64,
            mb / ts,
            mb / tv,
            ts / tv
        );
    }
}
