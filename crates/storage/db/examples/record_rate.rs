//! How fast scan records and verdict-cache entries are written, the way the
//! scan service writes them: C concurrent writers, each recording N/C scans
//! (one `cache_put` and one `record` per scan, awaited in turn).
//!
//! ```text
//! cargo run --release -p moat-db --example record_rate -- [URL] [N] [C]
//! ```
//! URL defaults to a SQLite file in a fresh temporary directory. Prints the
//! records per second and the process CPU time per record (user + system,
//! from /proc/self/stat, so it counts the driver's own threads too).
#![forbid(unsafe_code)]

use moat_core::{EngineReport, Status, Verdict};
use moat_db::{ScanRecord, ScanStore};
use std::sync::Arc;
use std::time::Instant;

/// User + system CPU seconds of this process so far (Linux; 100 ticks/s).
fn cpu_seconds() -> f64 {
    let stat = std::fs::read_to_string("/proc/self/stat").unwrap_or_default();
    // Fields after the command name, which is in parentheses.
    let rest = stat.rsplit_once(')').map(|(_, r)| r).unwrap_or("");
    let f: Vec<&str> = rest.split_whitespace().collect();
    let tick = |i: usize| f.get(i).and_then(|v| v.parse::<f64>().ok()).unwrap_or(0.0);
    // utime and stime are fields 14 and 15 of stat: 12 and 13 after ')'.
    (tick(11) + tick(12)) / 100.0
}

#[tokio::main]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    let args: Vec<String> = std::env::args().collect();
    let dir = tempfile::tempdir()?;
    let url = match args.get(1).filter(|a| !a.is_empty()) {
        Some(u) => u.clone(),
        None => format!("sqlite://{}/moat.db", dir.path().display()),
    };
    let n: usize = args.get(2).and_then(|a| a.parse().ok()).unwrap_or(20_000);
    let c: usize = args
        .get(3)
        .and_then(|a| a.parse().ok())
        .unwrap_or(16)
        .max(1);
    let store: Arc<dyn ScanStore> = moat_db::open(&url).await?;
    let cpu0 = cpu_seconds();
    let t0 = Instant::now();
    let mut tasks = Vec::new();
    for w in 0..c {
        let store = store.clone();
        tasks.push(tokio::spawn(async move {
            for i in (w..n).step_by(c) {
                let sha = format!("{i:064x}");
                let e = EngineReport::new("builtin", Status::Clean, None);
                let v = Verdict::aggregate(
                    vec![e],
                    vec![],
                    sha,
                    1234,
                    "application/octet-stream".into(),
                    1,
                );
                store.cache_put("fp", &v).await?;
                let rec = ScanRecord::new("clamd", &format!("file-{i}"), "fp", false, v);
                store.record(&rec).await?;
            }
            Ok::<(), moat_db::DbError>(())
        }));
    }
    for t in tasks {
        t.await??;
    }
    let wall = t0.elapsed().as_secs_f64();
    let cpu = cpu_seconds() - cpu0;
    let backend = store.backend();
    let got = store.verdict_counts(0, 3_600_000).await?;
    println!(
        "{backend}: {n} records by {c} writers in {wall:.2} s: {:.0} records/s, {:.1} µs CPU per record (counted: {})",
        n as f64 / wall,
        cpu * 1e6 / n as f64,
        got.sources.iter().map(|(_, k)| k).sum::<u64>()
    );
    Ok(())
}
