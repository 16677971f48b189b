//! Walks files as the scanner's extraction does and prints what it found
//! and how fast: `cargo run --release -p moat-extract --example walk -- FILE...`
//! (a benchmark helper: members, bytes materialised, problems, MB/s).

use moat_core::Blob;
use moat_extract::{Limits, detect, walk};
use std::time::Instant;

fn main() -> Result<(), Box<dyn std::error::Error>> {
    for path in std::env::args().skip(1) {
        let blob = Blob::open(std::path::Path::new(&path))?;
        let kind = detect(&blob.head(moat_extract::HEAD_LEN)?).map(|k| k.as_str());
        let start = Instant::now();
        let report =
            walk::<std::convert::Infallible>(&blob, &path, &Limits::default(), &mut |_| Ok(()))?;
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
