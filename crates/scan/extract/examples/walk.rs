//! Walks files as the scanner's extraction does and prints what it found
//! and how fast: `cargo run --release -p moat-extract --example walk -- FILE...`
//! (a benchmark helper: members, bytes materialised, problems, MB/s). With
//! `WALK_LIST=1` each member's location, size and SHA-256 is printed too;
//! with `WALK_DUMP=DIR` each member is written there, named by its SHA-256.

use moat_core::Blob;
use moat_extract::{Limits, detect, walk};
use std::time::Instant;

fn main() -> Result<(), Box<dyn std::error::Error>> {
    for path in std::env::args().skip(1) {
        let blob = Blob::open(std::path::Path::new(&path))?;
        let kind = detect(&blob.head(moat_extract::HEAD_LEN)?).map(|k| k.as_str());
        let start = Instant::now();
        let list = std::env::var_os("WALK_LIST").is_some();
        let dump = std::env::var_os("WALK_DUMP").map(std::path::PathBuf::from);
        let report = walk::<std::io::Error>(&blob, &path, &Limits::default(), &mut |e| {
            let hex: String = e.sha256.iter().map(|b| format!("{b:02x}")).collect();
            if list {
                println!("  {} {} {hex}", e.location, e.data.len());
            }
            if let Some(dir) = &dump {
                let mut out = std::fs::File::create(dir.join(&hex))?;
                std::io::copy(&mut e.data.reader(), &mut out)?;
            }
            Ok(())
        })?;
        let secs = start.elapsed().as_secs_f64();
        println!(
            "{path}: {} ({} bytes): {} members, {} bytes materialised, {} problems, {:.3} s, {:.0} MB/s of input",
            kind.unwrap_or("not a container"),
            blob.len(),
            report.members,
            report.expanded_bytes,
            report.problems.len(),
            secs,
            blob.len() as f64 / secs / 1e6
        );
        for p in &report.problems {
            println!("  {p}");
        }
    }
    Ok(())
}
