//! `moat scan --clamd` against a real clamd started by scripts/clamd-test.sh.

mod common;
use common::*;
use std::path::PathBuf;
use std::process::Command;

struct Clamd {
    dir: PathBuf,
}

impl Drop for Clamd {
    fn drop(&mut self) {
        let _ = Command::new("bash")
            .arg(repo_root().join("scripts/clamd-test.sh"))
            .arg("stop")
            .arg(&self.dir)
            .status();
    }
}

#[test]
fn clamd_engine_finds_eicar_and_an_unreachable_clamd_is_never_clean() {
    let dir = tempfile::tempdir().unwrap();
    let cdir = dir.path().join("clamd");
    let port = free_port();
    let ok = Command::new("bash")
        .arg(repo_root().join("scripts/clamd-test.sh"))
        .arg("start")
        .arg(&cdir)
        .arg(port.to_string())
        .status()
        .unwrap()
        .success();
    assert!(
        ok,
        "clamd must start (scripts/test-deps.sh installs ClamAV)"
    );
    let guard = Clamd { dir: cdir.clone() };
    let eicar = dir.path().join("eicar.com");
    std::fs::write(&eicar, EICAR).unwrap();
    let clean = dir.path().join("clean.txt");
    std::fs::write(&clean, b"nothing to see").unwrap();
    let addr = format!("127.0.0.1:{port}");

    let out = moat()
        .args(["scan", "--json", "--clamd", &addr])
        .arg(&eicar)
        .arg(&clean)
        .output()
        .unwrap();
    assert_eq!(
        out.status.code(),
        Some(1),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let lines = json_lines(&out);
    let e = lines
        .iter()
        .find(|v| v["path"].as_str().unwrap().ends_with("eicar.com"))
        .unwrap();
    assert_eq!(e["status"], "infected");
    assert_eq!(e["findings"][0]["engine"], "clamd");
    assert!(
        e["findings"][0]["signature"]
            .as_str()
            .unwrap()
            .contains("EICAR")
    );
    let c = lines
        .iter()
        .find(|v| v["path"].as_str().unwrap().ends_with("clean.txt"))
        .unwrap();
    assert_eq!(c["status"], "clean");

    // builtin + clamd together over the unix socket: both engines report.
    let sock = format!("unix:{}", cdir.join("clamd.sock").display());
    let out = moat()
        .args(["scan", "--json", "--clamd", &sock, "--signatures"])
        .arg(cdir.join("db"))
        .arg(&eicar)
        .output()
        .unwrap();
    let v = &json_lines(&out)[0];
    assert_eq!(v["engines"].as_array().unwrap().len(), 2);
    assert_eq!(v["status"], "infected");

    drop(guard);
    let out = moat()
        .args(["scan", "--json", "--clamd", &addr])
        .arg(&clean)
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2));
    let v = &json_lines(&out)[0];
    assert_eq!(
        v["status"], "error",
        "an unreachable clamd is an error, never clean: {v}"
    );
}
