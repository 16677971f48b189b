//! Load a signature directory, report load time and memory, then scan files
//! (or directories, recursively) single-threaded and report throughput.
//!
//! `cargo run --release -p moat-builtin --example bench_builtin -- SIGS [--mem] [--first] [--repeat N] PATH...`
//!
//! * `--mem`: load each file into memory before scanning (else scanned via positional reads);
//! * `--first`: first-match mode (stop at a file's first detection, clamscan's default);
//!   default: every match (clamscan --allmatch);
//! * `--repeat N`: scan everything N times (throughput is over all passes);
//! * `--cache DIR`: use the compiled-set cache in DIR (a second run reads it).

use moat_builtin::{BuiltinEngine, LoadOptions};
use moat_core::{Blob, Engine, ScanContext};
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

// The allocator of the `moat` binary (crates/moat/src/alloc.rs): allocation
// costs and RSS figures are those moat has.
#[global_allocator]
static ALLOC: mimalloc::MiMalloc = mimalloc::MiMalloc;

fn status(field: &str) -> String {
    std::fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|s| {
            s.lines()
                .find(|l| l.starts_with(field))
                .map(|l| l[field.len()..].trim().to_string())
        })
        .unwrap_or_else(|| "?".into())
}

/// CPU time of the whole process (all threads), from /proc/self/stat (10 ms ticks).
fn process_cpu() -> Duration {
    let stat = std::fs::read_to_string("/proc/self/stat").unwrap_or_default();
    let after = stat.rsplit(')').next().unwrap_or("");
    let f: Vec<u64> = after
        .split_whitespace()
        .map(|x| x.parse().unwrap_or(0))
        .collect();
    // Fields 14 and 15 (utime, stime) are at 11 and 12 after the ")".
    let ticks = f.get(11).copied().unwrap_or(0) + f.get(12).copied().unwrap_or(0);
    Duration::from_millis(ticks * 10)
}

/// CPU time of this thread in ns, from /proc/thread-self/schedstat.
fn thread_cpu() -> Duration {
    let s = std::fs::read_to_string("/proc/thread-self/schedstat").unwrap_or_default();
    Duration::from_nanos(
        s.split_whitespace()
            .next()
            .and_then(|x| x.parse().ok())
            .unwrap_or(0),
    )
}

fn walk(p: &Path, out: &mut Vec<PathBuf>) {
    if p.is_dir() {
        let mut entries: Vec<PathBuf> = std::fs::read_dir(p)
            .map(|rd| rd.filter_map(|e| e.ok().map(|e| e.path())).collect())
            .unwrap_or_default();
        entries.sort();
        for e in entries {
            walk(&e, out);
        }
    } else if p.is_file() {
        out.push(p.to_path_buf());
    }
}

fn main() {
    let mut args = std::env::args().skip(1);
    let Some(sigs) = args.next() else {
        eprintln!("usage: bench_builtin SIGS [--mem] [--first] [--repeat N] [--cache DIR] PATH...");
        std::process::exit(2);
    };
    let mut mem = false;
    let mut first = false;
    let mut repeat = 1;
    let mut cache_dir = None;
    let mut files = Vec::new();
    while let Some(a) = args.next() {
        match a.as_str() {
            "--mem" => mem = true,
            "--first" => first = true,
            "--repeat" => repeat = args.next().and_then(|n| n.parse().ok()).unwrap_or(1),
            "--cache" => cache_dir = args.next().map(PathBuf::from),
            p => walk(Path::new(p), &mut files),
        }
    }
    let t = Instant::now();
    let c0 = process_cpu();
    let opts = LoadOptions {
        all_match: !first,
        cache_dir,
        ..LoadOptions::default()
    };
    let engine = match BuiltinEngine::load_with("bench", &[PathBuf::from(&sigs)], &opts) {
        Ok(e) => e,
        Err(e) => {
            eprintln!("load failed: {e}");
            std::process::exit(1);
        }
    };
    let load = t.elapsed();
    let load_cpu = process_cpu() - c0;
    let info = engine.info();
    println!(
        "load: {:.3} s wall, {:.2} s CPU (all threads)",
        load.as_secs_f64(),
        load_cpu.as_secs_f64()
    );
    println!("signatures: {:?}", info.signatures);
    println!("unsupported: {:?}", info.unsupported);
    println!("load errors: {}", engine.load_error_count());
    println!("signature_version: {}", info.signature_version);
    println!("compiled set: {}", engine.cache_outcome().as_str());
    println!(
        "anchor index: {:.1} MiB",
        engine.index_bytes() as f64 / 1048576.0
    );
    println!(
        "after load: VmRSS {} VmHWM {}",
        status("VmRSS:"),
        status("VmHWM:")
    );

    if files.is_empty() {
        return;
    }
    let blobs: Vec<(PathBuf, Blob)> = files
        .iter()
        .filter_map(|p| {
            let b = if mem {
                #[allow(clippy::disallowed_methods)] // benchmark input chosen by the operator
                std::fs::read(p).ok().map(Blob::from_vec)
            } else {
                Blob::open(p).ok()
            };
            b.map(|b| (p.clone(), b))
        })
        .collect();
    let ctx = ScanContext::within(Duration::from_secs(3600));
    let mut bytes = 0u64;
    let mut detections = 0usize;
    let mut errors = 0usize;
    let t = Instant::now();
    let tc = thread_cpu();
    for pass in 0..repeat {
        for (p, b) in &blobs {
            bytes += b.len();
            match engine.scan_blob(b, None, &ctx) {
                Ok(r) => {
                    if pass == 0 && !r.hits.is_empty() {
                        detections += 1;
                        if std::env::var_os("BENCH_VERBOSE").is_some() {
                            println!("{}: {:?}", p.display(), r.hits);
                        }
                    }
                }
                Err(e) => {
                    errors += 1;
                    eprintln!("{}: {e}", p.display());
                }
            }
        }
    }
    let secs = t.elapsed().as_secs_f64();
    let cpu = (thread_cpu() - tc).as_secs_f64();
    println!(
        "scanned {} files x{repeat}, {:.1} MiB in {:.3} s: {:.0} MB/s wall, {:.0} MB/s per CPU-second; {} detected, {} errors",
        blobs.len(),
        bytes as f64 / 1048576.0,
        secs,
        bytes as f64 / 1e6 / secs,
        bytes as f64 / 1e6 / cpu,
        detections,
        errors
    );
    println!(
        "after scan: VmRSS {} VmHWM {}",
        status("VmRSS:"),
        status("VmHWM:")
    );
}
