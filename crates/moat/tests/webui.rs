//! The web UI in a real browser: Debian's Chromium driven by npm
//! playwright-core (tests/webui/drive.js) against the real `moat serve`
//! (SQLite, the vault on disk, the builtin engine). Screenshots go to
//! `target/webui-artifacts/`.

// Files read back are small and written by the test.
#![allow(clippy::disallowed_methods)]

mod common;
use common::*;
use serde_json::Value;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

const ADMIN: &str = "admin@example.com";
const ADMIN_PW: &str = "correct horse battery staple";
const EICAR: &[u8] = b"X5O!P%@AP[4\\PZX54(P^)7CC)7}$EICAR-STANDARD-ANTIVIRUS-TEST-FILE!$H+H*";

struct Server {
    child: Child,
    base: String,
    data: PathBuf,
}

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn start(data: &Path) -> Server {
    let port = free_port();
    let child = moat()
        .args([
            "serve",
            "--listen",
            &format!("127.0.0.1:{port}"),
            "--data-dir",
        ])
        .arg(data)
        .env("MOAT__RELOAD__POLL_SECS", "0")
        .env("MOAT__PORTAL__RETRY_BASE_SECS", "1")
        .env("MOAT__PORTAL__SCHEDULER_INTERVAL_SECS", "1")
        .stdout(Stdio::null())
        .stderr(Stdio::from(
            std::fs::File::create(data.with_extension("log")).unwrap(),
        ))
        .spawn()
        .unwrap();
    let s = Server {
        child,
        base: format!("http://127.0.0.1:{port}"),
        data: data.to_path_buf(),
    };
    let t = Instant::now();
    while t.elapsed() < Duration::from_secs(30) {
        let ok = Command::new("curl")
            .args(["-sf", "-o", "/dev/null"])
            .arg(format!("{}/healthz", s.base))
            .status()
            .is_ok_and(|st| st.success());
        if ok {
            s.create_admin();
            return s;
        }
        std::thread::sleep(Duration::from_millis(100));
    }
    panic!("moat serve did not become healthy: {}", log_of(data));
}

fn log_of(data: &Path) -> String {
    std::fs::read_to_string(data.with_extension("log")).unwrap_or_default()
}

impl Server {
    fn create_admin(&self) {
        let mut child = moat()
            .args([
                "portal",
                "create-admin",
                "--email",
                ADMIN,
                "--password-stdin",
            ])
            .arg("--data-dir")
            .arg(&self.data)
            .stdin(Stdio::piped())
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap();
        child
            .stdin
            .take()
            .unwrap()
            .write_all(format!("{ADMIN_PW}\n").as_bytes())
            .unwrap();
        let out = child.wait_with_output().unwrap();
        assert!(
            out.status.success(),
            "create-admin: {}",
            String::from_utf8_lossy(&out.stderr)
        );
    }

    /// One browser scenario (tests/webui/drive.js); its JSON report.
    fn drive(&self, scenario: &str, files: &[&Path]) -> Value {
        let out = artifacts();
        let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/webui/drive.js");
        let files: Vec<String> = files.iter().map(|p| p.display().to_string()).collect();
        let run = Command::new("node")
            .arg(&script)
            .arg(scenario)
            .env("NODE_PATH", node_modules())
            .env("MOAT_BASE", &self.base)
            .env("MOAT_EMAIL", ADMIN)
            .env("MOAT_PASSWORD", ADMIN_PW)
            .env("MOAT_OUT", &out)
            .env("MOAT_FILES", files.join("\n"))
            .output()
            .unwrap();
        let stdout = String::from_utf8_lossy(&run.stdout);
        let report: Value = stdout
            .lines()
            .rev()
            .find_map(|l| serde_json::from_str(l).ok())
            .unwrap_or(Value::Null);
        assert!(
            run.status.success(),
            "browser scenario {scenario} failed: {report:#}\nstderr: {}\nserver log: {}",
            String::from_utf8_lossy(&run.stderr),
            log_of(&self.data)
        );
        assert_eq!(report["dialogs"], serde_json::json!([]), "{report:#}");
        assert_eq!(report["page_errors"], serde_json::json!([]), "{report:#}");
        report
    }
}

fn node_modules() -> PathBuf {
    let p = std::env::var("MOAT_TEST_NODE_MODULES")
        .map(PathBuf::from)
        .unwrap_or_else(|_| {
            PathBuf::from(std::env::var("HOME").unwrap_or_default())
                .join(".cache/moat-test-node/node_modules")
        });
    assert!(
        p.join("playwright-core").is_dir() && Path::new("/usr/bin/chromium").exists(),
        "playwright-core in {} and /usr/bin/chromium are needed (eval \"$(bash scripts/test-deps.sh)\")",
        p.display()
    );
    p
}

/// Screenshots and downloads, kept after the run.
fn artifacts() -> PathBuf {
    let target = std::env::var("CARGO_TARGET_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|_| repo_root().join("target"));
    let dir = target.join("webui-artifacts");
    std::fs::create_dir_all(&dir).unwrap();
    dir
}

fn pattern(n: usize, seed: u32) -> Vec<u8> {
    let mut x = seed.wrapping_mul(2_654_435_761) | 1;
    (0..n)
        .map(|_| {
            x ^= x << 13;
            x ^= x >> 17;
            x ^= x << 5;
            x as u8
        })
        .collect()
}

#[test]
fn sender_shares_two_files_and_recipient_downloads_the_same_bytes() {
    let tmp = tempfile::tempdir().unwrap();
    let s = start(&tmp.path().join("data"));
    let first = tmp.path().join(format!("{}.bin", uniq("report")));
    let second = tmp.path().join("<img src=x onerror=alert(1)>.txt");
    let bytes = pattern(700 * 1024 + 13, 7);
    std::fs::write(&first, &bytes).unwrap();
    std::fs::write(&second, b"plain text\n").unwrap();
    let r = s.drive("share", &[&first, &second]);
    assert_eq!(r["progress_bars"], 2, "{r:#}");
    assert_eq!(r["file_rows"], 2, "{r:#}");
    let url = r["recipient_url"].as_str().unwrap_or_default();
    assert!(
        url.starts_with(&format!("{}/p/", s.base)),
        "the public link opens the recipient page: {r:#}"
    );
    assert!(
        r["csp"].as_str().is_some_and(
            |c| c.contains("script-src 'self'") && c.contains("frame-ancestors 'none'")
        ),
        "{r:#}"
    );
    // Markup in a message and a file name is shown as text (and no dialog opened).
    assert_eq!(
        r["message_shown"], "Hello <script>alert(1)</script> & welcome",
        "{r:#}"
    );
    let names = r["file_names"].as_array().cloned().unwrap_or_default();
    assert!(
        names.contains(&Value::from("<img src=x onerror=alert(1)>.txt")),
        "{r:#}"
    );
    let got = std::fs::read(r["downloaded"].as_str().unwrap()).unwrap();
    assert_eq!(got.len(), bytes.len());
    assert!(got == bytes, "the downloaded bytes equal the upload");
}

#[test]
fn eicar_package_shows_quarantined_and_offers_no_download() {
    let tmp = tempfile::tempdir().unwrap();
    let s = start(&tmp.path().join("data"));
    let f = tmp.path().join("eicar.com");
    std::fs::write(&f, EICAR).unwrap();
    let r = s.drive("eicar", &[&f]);
    let summary = r["summary"].as_str().unwrap_or_default();
    assert!(summary.contains("quarantined"), "{r:#}");
    assert!(
        r["files_text"]
            .as_str()
            .is_some_and(|t| t.to_ascii_lowercase().contains("eicar")),
        "the file's row names the finding: {r:#}"
    );
    assert_eq!(r["download_links"], 0, "{r:#}");
    assert_eq!(r["zip_visible"], false, "{r:#}");
    assert!(
        r["recipient_text"]
            .as_str()
            .is_some_and(|t| t.contains("Nothing can be downloaded")),
        "{r:#}"
    );
}

#[test]
fn sign_in_works_with_the_keyboard_only() {
    let tmp = tempfile::tempdir().unwrap();
    let s = start(&tmp.path().join("data"));
    let r = s.drive("keyboard", &[]);
    assert_eq!(r["second_field"], "password", "{r:#}");
    assert_eq!(r["who"], ADMIN, "{r:#}");
    assert_eq!(r["url"], format!("{}/packages", s.base), "{r:#}");
}
