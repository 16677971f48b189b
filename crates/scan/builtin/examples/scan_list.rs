//! Scan files with a signature directory and print detections the way
//! `clamscan --allmatch --no-summary` does (`FILE: NAME FOUND`), for
//! differential scripts (`scripts/normalize-differential.py`).
//!
//! Usage: `scan_list SIGS FILE...` (file names may also come on stdin, one per line).

use moat_builtin::BuiltinEngine;
use moat_core::{Blob, ScanContext};
use std::io::BufRead;
use std::path::PathBuf;
use std::time::Duration;

fn main() {
    let mut args = std::env::args().skip(1);
    let Some(sigs) = args.next() else {
        eprintln!("usage: scan_list SIGS FILE...");
        std::process::exit(2);
    };
    let engine = match BuiltinEngine::load("diff", &[PathBuf::from(sigs)]) {
        Ok(e) => e,
        Err(e) => {
            eprintln!("load: {e}");
            std::process::exit(2);
        }
    };
    let mut files: Vec<String> = args.collect();
    if files.is_empty() {
        files = std::io::stdin()
            .lock()
            .lines()
            .map_while(Result::ok)
            .collect();
    }
    for f in files {
        let ctx = ScanContext::within(Duration::from_secs(120));
        match Blob::open(f.as_ref())
            .map_err(|e| e.to_string())
            .and_then(|b| engine.scan_blob(&b, None, &ctx).map_err(|e| e.to_string()))
        {
            Ok(r) => {
                for h in r.hits {
                    println!("{f}: {} FOUND", h.signature);
                }
            }
            Err(e) => println!("{f}: ERROR {e}"),
        }
    }
}
