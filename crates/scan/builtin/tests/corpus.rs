//! End to end: generate a signature set and a corpus with the project's
//! benchmark generators, load the set, scan every non-archive file and check
//! the manifest's ground truth (archives belong to the extraction crate:
//! they are scanned only to check nothing fails).

use moat_builtin::BuiltinEngine;
use moat_core::{Blob, ScanContext};
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

fn bench_dir() -> Option<PathBuf> {
    let candidates = [
        std::env::var_os("MOAT_BENCH_DIR").map(PathBuf::from),
        Some(Path::new(env!("CARGO_MANIFEST_DIR")).join("../../../../shared/bench")),
        Some(PathBuf::from("/work/shared/bench")),
    ];
    candidates
        .into_iter()
        .flatten()
        .find(|d| d.join("gen_sigs.py").is_file())
}

fn run(cmd: &mut Command) {
    let out = cmd.output().expect("run generator");
    assert!(
        out.status.success(),
        "{cmd:?} failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
}

fn is_archive(rel: &str) -> bool {
    rel.ends_with(".zip") || rel.ends_with(".gz")
}

#[test]
fn generated_corpus_ground_truth() {
    if Command::new("python3").arg("--version").output().is_err() {
        println!("note: python3 not found; corpus test skipped");
        return;
    }
    let bench = bench_dir().expect("shared/bench with gen_sigs.py and gen_corpus.py");
    let tmp = tempfile::tempdir().unwrap();
    let sigs = tmp.path().join("sigs");
    let corpus = tmp.path().join("corpus");
    run(Command::new("python3")
        .arg(bench.join("gen_sigs.py"))
        .arg(&sigs)
        .args(["--hashes", "2000", "--bodies", "200"]));
    let source = if Path::new("/usr/share/doc").is_dir() {
        "/usr/share/doc"
    } else {
        "/usr/lib"
    };
    run(Command::new("python3")
        .arg(bench.join("gen_corpus.py"))
        .arg(&sigs)
        .arg(&corpus)
        .args(["--clean-mib", "4", "--big-mib", "2", "--source", source]));

    let engine = BuiltinEngine::load("builtin", std::slice::from_ref(&sigs)).unwrap();
    let info = moat_core::Engine::info(&engine);
    assert!(info.load_errors.is_empty(), "{:?}", info.load_errors);
    assert_eq!(info.signatures.get("ndb"), Some(&201));
    assert!(info.unsupported.is_empty(), "{:?}", info.unsupported);

    let manifest: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(corpus.join("manifest.json")).unwrap())
            .unwrap();
    let ctx = ScanContext::within(Duration::from_secs(600));
    let (mut clean, mut infected, mut archives) = (0, 0, 0);
    for (rel, entry) in manifest.as_object().unwrap() {
        let path = corpus.join(rel);
        let blob = Blob::open(&path).unwrap();
        let got = engine.scan_blob(&blob, None, &ctx).unwrap();
        let names: Vec<&str> = got.hits.iter().map(|h| h.signature.as_str()).collect();
        if entry["expect"] == "clean" {
            assert!(names.is_empty(), "{rel}: clean file flagged as {names:?}");
            clean += 1;
            continue;
        }
        if is_archive(rel) {
            archives += 1;
            continue;
        }
        for want in entry["signatures"].as_array().unwrap() {
            let want = want.as_str().unwrap();
            let ok = if want == "EICAR" {
                names
                    .iter()
                    .any(|n| n.to_ascii_lowercase().contains("eicar"))
            } else {
                names.contains(&want)
            };
            assert!(ok, "{rel}: expected {want}, got {names:?}");
        }
        // The in-memory path finds the same.
        #[allow(clippy::disallowed_methods)] // small generated test files
        let mem = Blob::from_vec(std::fs::read(&path).unwrap());
        assert_eq!(engine.scan_blob(&mem, None, &ctx).unwrap(), got, "{rel}");
        infected += 1;
    }
    println!("corpus: {clean} clean, {infected} infected checked, {archives} archives scanned");
    assert!(clean > 0 && infected > 100 && archives > 0);
}
