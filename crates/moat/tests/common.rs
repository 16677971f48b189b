//! Shared helpers for the binary's integration tests: they run the real `moat`.
#![allow(dead_code)]

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

pub const EICAR: &[u8] = br"X5O!P%@AP[4\PZX54(P^)7CC)7}$EICAR-STANDARD-ANTIVIRUS-TEST-FILE!$H+H*";

pub fn moat() -> Command {
    let mut c = Command::new(env!("CARGO_BIN_EXE_moat"));
    c.env_remove("MOAT_LOG");
    c
}

pub fn repo_root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../..")
        .canonicalize()
        .unwrap()
}

/// `../shared/bench` beside the checkout (or MOAT_SHARED_DIR).
pub fn shared_bench() -> PathBuf {
    let base = std::env::var_os("MOAT_SHARED_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|| repo_root().join("../shared"));
    let p = base.join("bench");
    assert!(
        p.join("gen_sigs.py").exists(),
        "shared generators not found at {}",
        p.display()
    );
    p
}

/// Small signature set + corpus from the shared generators.
pub fn gen_small(dir: &Path) -> (PathBuf, PathBuf) {
    let sigs = dir.join("sigs");
    let corpus = dir.join("corpus");
    let bench = shared_bench();
    let ok = Command::new("python3")
        .arg(bench.join("gen_sigs.py"))
        .arg(&sigs)
        .args(["--hashes", "3000", "--bodies", "300", "--planted", "16"])
        .status()
        .unwrap()
        .success();
    assert!(ok, "gen_sigs.py failed");
    let ok = Command::new("python3")
        .arg(bench.join("gen_corpus.py"))
        .arg(&sigs)
        .arg(&corpus)
        .args([
            "--clean-mib",
            "6",
            "--big-mib",
            "2",
            "--source",
            "/usr/share/doc",
            "--source",
            "/usr/lib/x86_64-linux-gnu",
        ])
        .status()
        .unwrap()
        .success();
    assert!(ok, "gen_corpus.py failed");
    (sigs, corpus)
}

pub fn json_lines(out: &Output) -> Vec<serde_json::Value> {
    String::from_utf8_lossy(&out.stdout)
        .lines()
        .filter(|l| !l.trim().is_empty())
        .map(|l| serde_json::from_str(l).unwrap_or_else(|e| panic!("bad JSON line {l:?}: {e}")))
        .collect()
}

pub fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

/// A zip holding the given members (stored or deflated), built by hand-free means: python's zipfile.
pub fn python(script: &str, args: &[&Path]) {
    let ok = Command::new("python3")
        .arg("-c")
        .arg(script)
        .args(args)
        .status()
        .unwrap()
        .success();
    assert!(ok, "python helper failed: {script}");
}
