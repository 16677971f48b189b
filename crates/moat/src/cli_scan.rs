//! `moat scan`: scan paths like clamscan, in parallel, with bounded memory.

use crate::config;
use anyhow::{Context, Result};
use clap::Args;
use moat_core::{Blob, Spool, Status, Verdict};
use moat_scanner::{EngineConfig, Scanner};
use serde_json::json;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::sync::mpsc;
use std::time::Instant;

#[derive(Args)]
pub struct ScanArgs {
    /// Configuration file (engines, limits).
    #[arg(long)]
    config: Option<PathBuf>,
    #[command(flatten)]
    engines: EngineFlags,
    /// One JSON object per file on standard output.
    #[arg(long)]
    json: bool,
    /// Files scanned in parallel (default: number of cores).
    #[arg(short = 'j', long = "jobs")]
    jobs: Option<usize>,
    /// Files and directories to scan; `-` reads standard input.
    #[arg(required = true)]
    paths: Vec<PathBuf>,
}

/// The engine flags `moat scan` and `moat clamd` share: given, they replace
/// the configured `[[engines]]`.
#[derive(Args)]
pub struct EngineFlags {
    /// ClamAV signature directory or file for the builtin engine (repeatable).
    #[arg(long = "signatures", value_name = "DIR")]
    signatures: Vec<PathBuf>,
    /// Load ClamAV's PUA databases (.hdu, .hsu, .ndu, ...) for the builtin engine.
    #[arg(long)]
    detect_pua: bool,
    /// Report every matching signature of a file (as clamscan --allmatch);
    /// by default the builtin engine stops at a file's first detection.
    #[arg(long)]
    allmatch: bool,
    /// Load .cvd/.cld databases whose ClamAV digital signatures do not verify.
    #[arg(long)]
    no_verify_signatures: bool,
    /// YARA rule file or directory (repeatable).
    #[arg(long = "yara", value_name = "PATH")]
    yara: Vec<PathBuf>,
    /// clamd address: host:port or unix:/path (repeatable).
    #[arg(long = "clamd", value_name = "ADDR")]
    clamd: Vec<String>,
}

impl EngineFlags {
    pub fn engines(&self) -> Option<Vec<EngineConfig>> {
        engines_from_flags(self)
    }
}

fn engines_from_flags(a: &EngineFlags) -> Option<Vec<EngineConfig>> {
    if a.signatures.is_empty() && a.yara.is_empty() && a.clamd.is_empty() {
        return None;
    }
    let mut e = Vec::new();
    if !a.signatures.is_empty() {
        e.push(EngineConfig::Builtin {
            name: None,
            signatures: a.signatures.clone(),
            detect_pua: a.detect_pua,
            verify_signatures: !a.no_verify_signatures,
            public_key: None,
            all_match: a.allmatch,
            cache: None,
            cache_dir: None,
        });
    }
    if !a.yara.is_empty() {
        e.push(EngineConfig::Yara {
            name: None,
            rules: a.yara.clone(),
            cache_dir: None,
            cache: true,
        });
    }
    for addr in &a.clamd {
        e.push(EngineConfig::Clamd {
            name: None,
            address: addr.clone(),
            timeout_secs: 120,
            pool_size: None,
            cache_ttl_secs: None,
        });
    }
    Some(e)
}

/// One line of output: a verdict, or why the file could not be read.
enum Outcome {
    Scanned(Verdict),
    Unreadable(String),
}

pub fn run(a: ScanArgs) -> Result<ExitCode> {
    crate::logging::init(false, "warn");
    let settings = config::load(a.config.as_deref())?;
    let mut engines = a.engines.engines().unwrap_or(settings.engines);
    // A scan never reloads: its builtin engines read the compiled set from
    // the cache when their files have not changed since the last run.
    for e in &mut engines {
        e.default_builtin_cache_on();
    }
    let t0 = Instant::now();
    let build = || {
        let set = moat_scanner::config::build_engine_set(&engines);
        crate::alloc::release_free_memory();
        set
    };
    // Returning freed pages at once keeps a signature load's transients out
    // of the peak, but yara-x's compiler grows and frees large vectors all
    // the time: purged at once, every page is faulted in again (a quarter of
    // a cold rule compile went to the kernel). With YARA rules, the compiler
    // sets the peak anyway, so the delay stays.
    let set = if engines
        .iter()
        .any(|e| matches!(e, EngineConfig::Yara { .. }))
    {
        build()
    } else {
        crate::alloc::with_immediate_purge(build)
    }
    .context("loading engines")?;
    let load_time = t0.elapsed();
    let infos = set.infos();
    for i in &infos {
        for e in i.load_errors.iter().take(20) {
            eprintln!("moat: warning: {}: {e}", i.name);
        }
        if i.load_errors.len() > 20 {
            eprintln!(
                "moat: warning: {}: {} more load errors",
                i.name,
                i.load_errors.len() - 20
            );
        }
    }
    let ages = settings.scan.signature_ages(&infos);
    for i in infos.iter().filter(|i| !i.sources.is_empty()) {
        let n: u64 = i.signatures.values().sum();
        let age = ages
            .iter()
            .find(|a| a.engine == i.name)
            .map_or(String::new(), |a| {
                format!(", built {:.1} days ago", a.age_secs as f64 / 86_400.0)
            });
        eprintln!(
            "moat: {}: {n} signatures from {}{age}",
            i.name,
            i.sources.join(", ")
        );
    }
    for a in ages.iter().filter(|a| a.stale) {
        eprintln!(
            "moat: warning: {}: signatures are {:.0} days old (more than {}); update them",
            a.engine,
            a.age_secs as f64 / 86_400.0,
            settings.scan.signatures_max_age_days
        );
    }
    let scanner = Scanner::new(set, settings.scan);
    let jobs = a
        .jobs
        .unwrap_or_else(|| {
            std::thread::available_parallelism()
                .map(|n| n.get())
                .unwrap_or(2)
        })
        .max(1);

    let (path_tx, path_rx) = mpsc::sync_channel::<PathBuf>(jobs * 4);
    let path_rx = std::sync::Mutex::new(path_rx);
    let (out_tx, out_rx) = mpsc::sync_channel::<(PathBuf, Outcome)>(jobs * 4);
    let mut summary = Summary::default();
    let started = Instant::now();
    let json_out = a.json;

    std::thread::scope(|s| {
        let walker_out = out_tx.clone();
        let paths = a.paths.clone();
        s.spawn(move || {
            for p in paths {
                walk(&p, &path_tx, &walker_out);
            }
        });
        for _ in 0..jobs {
            let out = out_tx.clone();
            let rx = &path_rx;
            let scanner = &scanner;
            s.spawn(move || {
                loop {
                    let next = match rx.lock() {
                        Ok(r) => r.recv(),
                        Err(_) => return,
                    };
                    let Ok(path) = next else { return };
                    let outcome = scan_path(scanner, &path);
                    if out.send((path, outcome)).is_err() {
                        return;
                    }
                }
            });
        }
        drop(out_tx);
        let stdout = std::io::stdout();
        let mut w = std::io::BufWriter::new(stdout.lock());
        for (path, outcome) in out_rx {
            summary.add(&outcome);
            let _ = print(&mut w, &path, &outcome, json_out);
            if !json_out {
                let _ = w.flush();
            }
        }
        let _ = w.flush();
    });

    let known: u64 = infos
        .iter()
        .map(|i| i.signatures.values().sum::<u64>())
        .sum();
    eprintln!("\n----------- SCAN SUMMARY -----------");
    eprintln!(
        "Engines: {}",
        infos
            .iter()
            .map(|i| format!("{} {} ({})", i.name, i.version, i.signature_version))
            .collect::<Vec<_>>()
            .join(", ")
    );
    eprintln!("Known signatures: {known}");
    eprintln!("Engine load time: {:.3} s", load_time.as_secs_f64());
    eprintln!("Scanned files: {}", summary.files);
    eprintln!("Infected files: {}", summary.infected);
    eprintln!("Suspicious files: {}", summary.suspicious);
    eprintln!("Unscannable files: {}", summary.unscannable);
    eprintln!("Errors: {}", summary.errors);
    let secs = started.elapsed().as_secs_f64();
    eprintln!("Data scanned: {:.2} MB", summary.bytes as f64 / 1e6);
    eprintln!(
        "Time: {secs:.3} s ({:.1} MB/s)",
        summary.bytes as f64 / 1e6 / secs.max(1e-9)
    );
    // The process ends here: freeing the engines' signature tables one
    // allocation at a time is work the exit does anyway (measured in
    // BENCHMARKS.md, "Loading at realistic scale").
    std::mem::forget(scanner);
    Ok(ExitCode::from(summary.exit_code()))
}

fn walk(p: &Path, tx: &mpsc::SyncSender<PathBuf>, out: &mpsc::SyncSender<(PathBuf, Outcome)>) {
    if p == Path::new("-") {
        let _ = tx.send(p.to_path_buf());
        return;
    }
    for entry in walkdir::WalkDir::new(p)
        .follow_links(false)
        .sort_by_file_name()
    {
        match entry {
            Ok(e) if e.file_type().is_file() => {
                if tx.send(e.into_path()).is_err() {
                    return;
                }
            }
            // Links given on the command line are followed; found while walking, skipped (like clamscan).
            Ok(e) if e.depth() == 0 && e.path_is_symlink() => {
                let _ = tx.send(e.into_path());
            }
            Ok(_) => {}
            Err(err) => {
                let path = err
                    .path()
                    .map(Path::to_path_buf)
                    .unwrap_or_else(|| p.to_path_buf());
                let msg = err
                    .io_error()
                    .map(|e| e.to_string())
                    .unwrap_or_else(|| err.to_string());
                let _ = out.send((path, Outcome::Unreadable(msg)));
            }
        }
    }
}

fn scan_path(scanner: &Scanner, path: &Path) -> Outcome {
    if path == Path::new("-") {
        let tmp = scanner.config().archive.tmp_dir.clone();
        let mut spool = Spool::new(1 << 20, u64::MAX, tmp);
        let mut stdin = std::io::stdin().lock();
        return match std::io::copy(&mut stdin, &mut spool).and_then(|_| spool.finish()) {
            Ok((blob, sha)) => Outcome::Scanned(scanner.scan(&blob, "stdin", Some(sha))),
            Err(e) => Outcome::Unreadable(format!("reading standard input: {e}")),
        };
    }
    match Blob::open(path) {
        Ok(blob) => Outcome::Scanned(scanner.scan(&blob, &path.display().to_string(), None)),
        Err(e) => Outcome::Unreadable(e.to_string()),
    }
}

fn print(w: &mut impl Write, path: &Path, o: &Outcome, json_out: bool) -> std::io::Result<()> {
    let shown = if path == Path::new("-") {
        "stdin".to_string()
    } else {
        path.display().to_string()
    };
    if json_out {
        let line = match o {
            Outcome::Scanned(v) => json!({
                "path": shown,
                "status": v.status,
                "reason": v.reason,
                "findings": v.findings.iter().map(|f| json!({
                    "engine": f.engine, "signature": f.signature, "location": f.location,
                })).collect::<Vec<_>>(),
                "sha256": v.sha256,
                "size": v.size,
                "content_type": v.content_type,
                "duration_ms": v.duration_ms,
                "engines": v.engines,
            }),
            Outcome::Unreadable(e) => json!({
                "path": shown, "status": "error", "reason": "unreadable", "error": e,
                "findings": [], "sha256": null, "size": null, "duration_ms": 0,
            }),
        };
        return writeln!(w, "{line}");
    }
    match o {
        Outcome::Scanned(v) => match v.status {
            Status::Clean => writeln!(w, "{shown}: OK"),
            Status::Infected | Status::Suspicious => {
                for sig in v.signatures() {
                    writeln!(w, "{shown}: {sig} FOUND")?;
                }
                Ok(())
            }
            Status::Unscannable => {
                let reason = v.reason.map(|r| r.as_str()).unwrap_or("unknown");
                writeln!(w, "{shown}: unscannable ({reason})")
            }
            Status::Error => {
                let detail = v
                    .engines
                    .iter()
                    .filter_map(|e| e.detail.as_deref())
                    .next()
                    .unwrap_or("engine error");
                writeln!(w, "{shown}: ERROR: {detail}")
            }
        },
        Outcome::Unreadable(e) => writeln!(w, "{shown}: ERROR: {e}"),
    }
}

#[derive(Default)]
struct Summary {
    files: u64,
    infected: u64,
    suspicious: u64,
    unscannable: u64,
    errors: u64,
    bytes: u64,
}

impl Summary {
    fn add(&mut self, o: &Outcome) {
        self.files += 1;
        match o {
            Outcome::Scanned(v) => {
                self.bytes += v.size;
                match v.status {
                    Status::Clean => {}
                    Status::Infected => self.infected += 1,
                    Status::Suspicious => self.suspicious += 1,
                    Status::Unscannable => self.unscannable += 1,
                    Status::Error => self.errors += 1,
                }
            }
            Outcome::Unreadable(_) => self.errors += 1,
        }
    }

    /// 1 if anything infected or suspicious; else 2 if anything unscannable or errored; else 0.
    fn exit_code(&self) -> u8 {
        if self.infected + self.suspicious > 0 {
            1
        } else if self.unscannable + self.errors > 0 {
            2
        } else {
            0
        }
    }
}
