//! Load a YARA rule collection as moat does and print one JSON line saying how
//! (bench/yara_load.py runs it cold and warm next to `yara`).
//!
//! `yara_load [--cache-dir DIR | --no-cache] [--scan N] PATH...`
//!
//! `--scan N` also scans N small objects (1 KiB each) on one thread and
//! reports the time per object.
use moat_core::{Blob, Engine, Object, ScanContext};
use moat_yara::YaraEngine;
use std::path::PathBuf;
use std::time::{Duration, Instant};

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let mut cache: Option<PathBuf> = moat_yara::default_cache_dir();
    let mut scan = 0usize;
    let mut paths = Vec::new();
    let mut args = std::env::args().skip(1);
    while let Some(a) = args.next() {
        match a.as_str() {
            "--cache-dir" => cache = Some(args.next().ok_or("--cache-dir DIR")?.into()),
            "--no-cache" => cache = None,
            "--scan" => scan = args.next().ok_or("--scan N")?.parse()?,
            _ => paths.push(PathBuf::from(a)),
        }
    }
    if paths.is_empty() {
        return Err("usage: yara_load [--cache-dir DIR | --no-cache] [--scan N] PATH...".into());
    }
    let t = Instant::now();
    let e = YaraEngine::load_cached("yara", &paths, cache.as_deref())?;
    let load = t.elapsed();
    let info = e.info();
    let mut scan_us = None;
    if scan > 0 {
        let mut x: u32 = 12345;
        let data: Vec<Blob> = (0..64)
            .map(|_| {
                Blob::from_vec(
                    (0..1024)
                        .map(|_| {
                            x = x.wrapping_mul(1_103_515_245).wrapping_add(12345);
                            b"abcdefghijklmnopqrstuvwxyz <>/=.\n"[(x >> 16) as usize % 33]
                        })
                        .collect(),
                )
            })
            .collect();
        let ctx = ScanContext::within(Duration::from_secs(3600));
        let t = Instant::now();
        let mut hits = 0usize;
        for i in 0..scan {
            let obj = Object {
                data: &data[i % data.len()],
                name: "object.txt",
                location: "object.txt",
                content_type: "text/plain",
                depth: 0,
                sha256: None,
            };
            hits += e.scan(&obj, &ctx)?.hits.len();
        }
        scan_us = Some((t.elapsed().as_secs_f64() * 1e6 / scan as f64, hits));
    }
    println!(
        "{{\"cache\":\"{}\",\"load_ms\":{:.1},\"rules\":{},\"files\":{},\"load_errors\":{}{}}}",
        e.load_report().cache.as_str(),
        load.as_secs_f64() * 1000.0,
        info.signatures.values().sum::<u64>(),
        e.load_report().files,
        info.load_errors.len(),
        scan_us
            .map(|(us, hits)| format!(",\"scan_us_per_object\":{us:.1},\"scan_hits\":{hits}"))
            .unwrap_or_default()
    );
    for err in &info.load_errors {
        eprintln!("load error: {err}");
    }
    Ok(())
}
