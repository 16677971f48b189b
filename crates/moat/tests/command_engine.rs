//! The command engine end to end: `moat scan` with `[[engines]] type = "command"`
//! running the real `clamscan`, and commands that hang, crash or exit oddly.

mod common;
use common::*;
use std::path::Path;
use std::time::{Duration, Instant};

/// Writes a config with one command engine given as TOML lines.
fn config(dir: &Path, name: &str, engine: &str) -> std::path::PathBuf {
    let p = dir.join(name);
    std::fs::write(&p, format!("[[engines]]\ntype = \"command\"\n{engine}\n")).unwrap();
    p
}

fn scan(cfg: &Path, files: &[&Path]) -> (Option<i32>, Vec<serde_json::Value>, String) {
    let out = moat()
        .args(["scan", "--json", "--config"])
        .arg(cfg)
        .args(files)
        .output()
        .unwrap();
    (
        out.status.code(),
        json_lines(&out),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

fn toml_str(p: &Path) -> String {
    format!("{:?}", p.display().to_string())
}

#[test]
fn real_clamscan_finds_eicar_and_passes_a_clean_file() {
    let dir = tempfile::tempdir().unwrap();
    // clamscan has no built-in EICAR detection: a one-line hash database
    // (MD5:size:name) of the 68-byte EICAR file.
    let db = dir.path().join("test.hdb");
    std::fs::write(&db, "44d88612fea8a8f36de82e1278abb02f:68:Moat.Test.EICAR\n").unwrap();
    let eicar = dir.path().join("eicar.com");
    std::fs::write(&eicar, EICAR).unwrap();
    let clean = dir.path().join("clean.txt");
    std::fs::write(&clean, b"nothing to see here").unwrap();
    let cfg = config(
        dir.path(),
        "clamscan.toml",
        &format!(
            "argv = [\"clamscan\", \"--no-summary\", \"-d\", {}, \"{{path}}\"]\n\
             version_argv = [\"clamscan\", \"--version\"]\ntimeout_secs = 60",
            toml_str(&db)
        ),
    );
    let (code, lines, err) = scan(&cfg, &[&eicar, &clean]);
    assert_eq!(code, Some(1), "{err}");
    let find = |suffix: &str| {
        lines
            .iter()
            .find(|v| v["path"].as_str().unwrap().ends_with(suffix))
            .unwrap()
            .clone()
    };
    let e = find("eicar.com");
    assert_eq!(e["status"], "infected", "{e}");
    assert_eq!(e["findings"][0]["engine"], "command");
    let sig = e["findings"][0]["signature"].as_str().unwrap();
    assert!(sig.starts_with("Moat.Test.EICAR"), "{sig}");
    let c = find("clean.txt");
    assert_eq!(c["status"], "clean", "{c}");
}

#[test]
fn a_command_past_its_timeout_is_killed_and_unscannable() {
    let dir = tempfile::tempdir().unwrap();
    let marker = dir.path().join("survived");
    let file = dir.path().join("f.txt");
    std::fs::write(&file, b"data").unwrap();
    // The grandchild would create the marker after 3 s if the process group
    // were not killed at the timeout.
    let script = format!("(sleep 3; touch {}) & sleep 60", marker.display());
    let cfg = config(
        dir.path(),
        "sleep.toml",
        &format!("argv = [\"sh\", \"-c\", {script:?}, \"s\", \"{{path}}\"]\ntimeout_secs = 1"),
    );
    let start = Instant::now();
    let (code, lines, err) = scan(&cfg, &[&file]);
    assert!(
        start.elapsed() < Duration::from_secs(20),
        "{:?}",
        start.elapsed()
    );
    assert_ne!(code, Some(0), "{err}");
    assert_eq!(lines[0]["status"], "unscannable", "{}", lines[0]);
    assert_eq!(lines[0]["reason"], "timeout", "{}", lines[0]);
    std::thread::sleep(Duration::from_secs(4));
    assert!(
        !marker.exists(),
        "a process of the timed-out command survived"
    );
}

#[test]
fn a_crash_or_an_unmapped_exit_code_is_an_error_never_clean() {
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("f.txt");
    std::fs::write(&file, b"data").unwrap();
    for (name, script) in [
        ("crash", "kill -SEGV $$"),
        ("abort", "kill -ABRT $$"),
        ("code2", "echo 'cannot open database' >&2; exit 2"),
    ] {
        let cfg = config(
            dir.path(),
            &format!("{name}.toml"),
            &format!("argv = [\"sh\", \"-c\", {script:?}, \"s\", \"{{path}}\"]"),
        );
        let (code, lines, err) = scan(&cfg, &[&file]);
        assert_ne!(code, Some(0), "{name}: {err}");
        assert_ne!(code, Some(1), "{name}: {err}");
        assert_eq!(lines[0]["status"], "error", "{name}: {}", lines[0]);
    }
}

#[test]
fn content_on_standard_input_reaches_clamscan() {
    let dir = tempfile::tempdir().unwrap();
    let db = dir.path().join("test.hdb");
    std::fs::write(&db, "44d88612fea8a8f36de82e1278abb02f:68:Moat.Test.EICAR\n").unwrap();
    let eicar = dir.path().join("eicar.com");
    std::fs::write(&eicar, EICAR).unwrap();
    let cfg = config(
        dir.path(),
        "stdin.toml",
        &format!(
            "argv = [\"clamscan\", \"--no-summary\", \"-d\", {}, \"-\"]\ninput = \"stdin\"",
            toml_str(&db)
        ),
    );
    let (code, lines, err) = scan(&cfg, &[&eicar]);
    assert_eq!(code, Some(1), "{err}");
    let sig = lines[0]["findings"][0]["signature"].as_str().unwrap();
    assert!(sig.starts_with("Moat.Test.EICAR"), "{sig}");
}

/// The commented `[[engines]] type = "command"` example in moat.example.toml,
/// uncommented, is accepted, names the engine and never passes EICAR (the
/// system clamscan may lack a database: then an error, still not clean).
#[test]
fn the_commented_example_config_runs_and_never_passes_eicar() {
    let dir = tempfile::tempdir().unwrap();
    let text = std::fs::read_to_string(repo_root().join("moat.example.toml")).unwrap();
    let start = text.find("--- BEGIN command example ---").unwrap();
    let end = text.find("--- END command example ---").unwrap();
    let body: String = text[start..end]
        .lines()
        .skip(1)
        .filter(|l| !l.starts_with("##"))
        .map(|l| format!("{}\n", l.strip_prefix("# ").unwrap_or(l)))
        .collect();
    let cfg = dir.path().join("example.toml");
    std::fs::write(&cfg, body).unwrap();
    let eicar = dir.path().join("eicar.com");
    std::fs::write(&eicar, EICAR).unwrap();
    let (code, lines, err) = scan(&cfg, &[&eicar]);
    assert_eq!(lines.len(), 1, "the example config must load: {err}");
    assert_ne!(code, Some(0), "{err}");
    let status = lines[0]["status"].as_str().unwrap();
    assert!(status == "infected" || status == "error", "{}", lines[0]);
    if status == "infected" {
        assert_eq!(lines[0]["findings"][0]["engine"], "clamscan");
    }
}
