//! The web UI in a real browser: Debian's Chromium driven by npm
//! playwright-core (tests/webui/drive.js), and Debian's Firefox ESR over
//! WebDriver BiDi (tests/webui/firefox.js), against the real `moat serve`
//! (SQLite, the vault on disk, the builtin engine). Screenshots go to
//! `target/webui-artifacts/`.

// Files read back are small and written by the test.
#![allow(clippy::disallowed_methods)]

mod common;
use common::*;
use serde_json::Value;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

const ADMIN: &str = "admin@example.com";
const ADMIN_PW: &str = "correct horse battery staple";
/// Longest a `moat portal` command may take before its test fails.
const CLI_LIMIT: Duration = Duration::from_secs(120);

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
    start_with(data, None)
}

fn start_with(data: &Path, config: Option<&Path>) -> Server {
    start_env(data, config, &[])
}

/// `moat serve` on a free port, with a config file when given and extra
/// environment.
fn start_env(data: &Path, config: Option<&Path>, env: &[(&str, &str)]) -> Server {
    let port = free_port();
    let mut cmd = moat();
    cmd.arg("serve");
    if let Some(c) = config {
        cmd.arg("--config").arg(c);
    }
    let child = cmd
        .args(["--listen", &format!("127.0.0.1:{port}"), "--data-dir"])
        .arg(data)
        .env("MOAT__RELOAD__POLL_SECS", "0")
        .env("MOAT__PORTAL__RETRY_BASE_SECS", "1")
        .env("MOAT__PORTAL__SCHEDULER_INTERVAL_SECS", "1")
        .envs(env.iter().copied())
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
        let mut c = moat();
        c.args([
            "portal",
            "create-admin",
            "--email",
            ADMIN,
            "--password-stdin",
        ])
        .arg("--data-dir")
        .arg(&self.data);
        let out =
            moat_testkit::output_within(&mut c, format!("{ADMIN_PW}\n").as_bytes(), CLI_LIMIT);
        assert!(
            out.status.success(),
            "create-admin: {}",
            String::from_utf8_lossy(&out.stderr)
        );
    }

    /// One browser scenario (tests/webui/drive.js); its JSON report.
    fn drive(&self, scenario: &str, files: &[&Path]) -> Value {
        self.drive_env(scenario, files, &[])
    }

    /// `moat portal create-token --email E`: a bearer token.
    fn cli_token(&self, email: &str) -> String {
        let mut c = moat();
        c.args(["portal", "create-token", "--email", email, "--data-dir"])
            .arg(&self.data);
        let out = moat_testkit::output_within(&mut c, b"", CLI_LIMIT);
        assert!(
            out.status.success(),
            "create-token: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        String::from_utf8_lossy(&out.stdout).trim().to_string()
    }

    /// One JSON API call with curl and a bearer token: (status, body).
    /// `file` sends a multipart upload instead of `body`.
    fn api(
        &self,
        method: &str,
        path: &str,
        token: &str,
        body: Option<Value>,
        file: Option<&Path>,
    ) -> (u16, Value) {
        let url = if path.starts_with("http") {
            path.to_string()
        } else {
            format!("{}{path}", self.base)
        };
        let mut c = Command::new("curl");
        c.args(["-s", "-X", method, "-w", "\n%{http_code}"]);
        if !token.is_empty() {
            c.arg("-H").arg(format!("Authorization: Bearer {token}"));
        }
        if let Some(b) = body {
            c.args(["-H", "Content-Type: application/json", "--data-binary"])
                .arg(b.to_string());
        }
        if let Some(f) = file {
            c.arg("-F").arg(format!("file=@{}", f.display()));
        }
        let out = c.arg(&url).output().unwrap();
        let text = String::from_utf8_lossy(&out.stdout).to_string();
        let (body, code) = text.rsplit_once('\n').unwrap_or(("", text.as_str()));
        (
            code.trim().parse().unwrap_or(0),
            serde_json::from_str(body).unwrap_or(Value::Null),
        )
    }

    /// `node tests/webui/SCRIPT ARGS...` against this server (signed in as
    /// the admin, artifacts to [`artifacts`]): the last JSON line it
    /// printed, after asserting that it succeeded.
    fn node(&self, script: &str, args: &[&str], env: &[(&str, &str)]) -> Value {
        let path = Path::new(env!("CARGO_MANIFEST_DIR"))
            .join("tests/webui")
            .join(script);
        let run = Command::new("node")
            .arg(&path)
            .args(args)
            .env("NODE_PATH", node_modules())
            .env("MOAT_BASE", &self.base)
            .env("MOAT_EMAIL", ADMIN)
            .env("MOAT_PASSWORD", ADMIN_PW)
            .env("MOAT_OUT", artifacts())
            .envs(env.iter().copied())
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
            "{script} {args:?} failed: {report:#}\nstderr: {}\nserver log: {}",
            String::from_utf8_lossy(&run.stderr),
            log_of(&self.data)
        );
        report
    }

    /// One browser scenario with extra environment for drive.js.
    fn drive_env(&self, scenario: &str, files: &[&Path], env: &[(&str, &str)]) -> Value {
        let files: Vec<String> = files.iter().map(|p| p.display().to_string()).collect();
        let files = files.join("\n");
        let mut env = env.to_vec();
        env.push(("MOAT_FILES", &files));
        let report = self.node("drive.js", &[scenario], &env);
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

/// Screenshots and downloads, kept after the run: `$MOAT_WEBUI_ARTIFACTS`,
/// else `webui-artifacts/` in the target directory (never the source tree).
fn artifacts() -> PathBuf {
    let dir = std::env::var_os("MOAT_WEBUI_ARTIFACTS")
        .filter(|d| !d.is_empty())
        .map(PathBuf::from)
        .unwrap_or_else(|| {
            std::env::var_os("CARGO_TARGET_DIR")
                .map(PathBuf::from)
                .unwrap_or_else(|| repo_root().join("target"))
                .join("webui-artifacts")
        });
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

/// A user with a password, created by the admin through the API.
fn add_member(s: &Server, email: &str, password: &str) {
    let admin = s.cli_token(ADMIN);
    let (st, body) = s.api(
        "POST",
        "/v1/portal/users",
        &admin,
        Some(serde_json::json!({ "email": email, "password": password })),
        None,
    );
    assert_eq!(st, 201, "{body}");
}

/// The first mail to `to` (waiting for it), quoted-printable undone.
fn wait_mail(maildir: &Path, to: &str, s: &Server) -> String {
    let t = Instant::now();
    loop {
        if let Some(m) = mails(maildir).into_iter().find(|m| m.contains(to)) {
            return unquote_mail(&m);
        }
        assert!(
            t.elapsed() < Duration::from_secs(60),
            "no mail for {to}: {}",
            log_of(&s.data)
        );
        std::thread::sleep(Duration::from_millis(100));
    }
}

/// Submit a package through the API and wait (60 s) until it is available.
fn submit_and_wait_available(s: &Server, token: &str, id: &str) {
    let (st, _) = s.api(
        "POST",
        &format!("/v1/portal/packages/{id}/submit"),
        token,
        None,
        None,
    );
    assert_eq!(st, 200);
    let t = Instant::now();
    while s
        .api(
            "GET",
            &format!("/v1/portal/packages/{id}"),
            token,
            None,
            None,
        )
        .1["state"]
        != "available"
    {
        assert!(t.elapsed() < Duration::from_secs(60), "never available");
        std::thread::sleep(Duration::from_millis(200));
    }
}

#[test]
fn three_dropped_files_reach_the_recipient_through_the_mailed_link_and_password() {
    let tmp = tempfile::tempdir().unwrap();
    let (_smtp, smtp_port, maildir) = smtp_server(tmp.path());
    let smtp_url = format!("smtp://127.0.0.1:{smtp_port}");
    let s = start_env(
        &tmp.path().join("data"),
        None,
        &[
            ("MOAT__PORTAL__SMTP__URL", &smtp_url),
            ("MOAT__PORTAL__SMTP__FROM", "moat <noreply@example.com>"),
        ],
    );
    let sender = "sender@example.com";
    let sender_pw = "sender password 1";
    add_member(&s, sender, sender_pw);
    let recipient = "bob@example.com";
    let pkg_pw = "open sesame 42";
    // Three files: one over two tus pieces of 4 MiB (progress between
    // pieces), one small, one empty-ish text.
    let names = [
        "site-survey.bin".to_string(),
        "report.txt".to_string(),
        "notes.txt".to_string(),
    ];
    let contents = [
        pattern(9 * 1024 * 1024 + 77, 5),
        pattern(150 * 1024 + 3, 6),
        b"three files by drag and drop\n".to_vec(),
    ];
    let paths: Vec<PathBuf> = names.iter().map(|n| tmp.path().join(n)).collect();
    for (p, c) in paths.iter().zip(&contents) {
        std::fs::write(p, c).unwrap();
    }
    let refs: Vec<&Path> = paths.iter().map(PathBuf::as_path).collect();
    let r = s.drive_env(
        "dropshare",
        &refs,
        &[
            ("MOAT_EMAIL", sender),
            ("MOAT_PASSWORD", sender_pw),
            ("MOAT_RECIPIENT", recipient),
            ("MOAT_PKG_PASSWORD", pkg_pw),
        ],
    );
    // The drop zone took the dropped files (and showed it was a target).
    assert_eq!(r["drop_accepted"], true, "{r:#}");
    assert_eq!(r["drop_highlighted"], true, "{r:#}");
    assert_eq!(r["drop_highlight_after"], false, "{r:#}");
    assert_eq!(r["listed"], serde_json::json!(names), "{r:#}");
    assert_eq!(
        r["progress_labels"],
        serde_json::json!(
            names
                .iter()
                .map(|n| format!("Upload progress of {n}"))
                .collect::<Vec<_>>()
        ),
        "{r:#}"
    );
    // Per-file progress: every bar ends full and "uploaded"; the large
    // file's bar passed through values in between.
    for n in &names {
        let p = &r["progress"][n];
        let values = p["values"].as_array().cloned().unwrap_or_default();
        assert_eq!(values.last(), Some(&Value::from(1)), "{n}: {r:#}");
        assert_eq!(
            p["notes"].as_array().and_then(|a| a.last()).cloned(),
            Some(Value::from("uploaded")),
            "{n}: {r:#}"
        );
    }
    let large = r["progress"][&names[0]]["values"]
        .as_array()
        .cloned()
        .unwrap_or_default();
    assert!(
        large
            .iter()
            .filter_map(Value::as_f64)
            .any(|v| v > 0.0 && v < 1.0),
        "the large file's progress was shown on the way: {r:#}"
    );
    let large_notes = r["progress"][&names[0]]["notes"]
        .as_array()
        .cloned()
        .unwrap_or_default();
    assert!(
        large_notes
            .iter()
            .filter_map(Value::as_str)
            .any(|t| t.ends_with(" %") && t != "100 %"),
        "a percentage on the way: {r:#}"
    );
    assert!(
        r["summary"]
            .as_str()
            .unwrap_or_default()
            .contains("available"),
        "{r:#}"
    );
    assert_eq!(r["file_rows"], 3, "{r:#}");
    assert!(
        r["list_row"]
            .as_str()
            .is_some_and(|t| t.contains(recipient)),
        "{r:#}"
    );

    // The recipient's mail, with their personal link.
    let mail = wait_mail(&maildir, recipient, &s);
    let link = mail
        .split_whitespace()
        .find(|w| w.starts_with(&format!("{}/", s.base)) && w.contains("/p/"))
        .unwrap_or_else(|| panic!("no link in the mail: {mail}"))
        .to_string();
    assert!(mail.contains("The three files, as promised."), "{mail}");
    assert!(
        !mail.contains(pkg_pw),
        "the package password is not mailed: {mail}"
    );
    let r = s.drive_env(
        "recipient",
        &[],
        &[
            ("MOAT_LINK", &link),
            ("MOAT_PKG_PASSWORD", pkg_pw),
            ("MOAT_DOWNLOAD", &names[1]),
        ],
    );
    assert!(
        r["landed"]
            .as_str()
            .is_some_and(|u| u.starts_with(&format!("{}/p/", s.base))),
        "the mailed link opens the recipient page: {r:#}"
    );
    assert_eq!(r["files_hidden_before"], true, "{r:#}");
    assert_eq!(r["message_shown"], "The three files, as promised.", "{r:#}");
    assert_eq!(r["wrong_password_error"], "Wrong password.", "{r:#}");
    assert_eq!(r["files_hidden_after_wrong"], true, "{r:#}");
    assert_eq!(r["error_hidden"], true, "{r:#}");
    // In the order the uploads started (they run side by side).
    let mut shown: Vec<String> = r["file_names"]
        .as_array()
        .into_iter()
        .flatten()
        .filter_map(|v| v.as_str().map(String::from))
        .collect();
    shown.sort();
    let mut want = names.to_vec();
    want.sort();
    assert_eq!(shown, want, "{r:#}");
    assert_eq!(r["file_suggested"], names[1].as_str(), "{r:#}");
    assert_eq!(r["error_hidden_after"], true, "{r:#}");
    let got = std::fs::read(r["downloaded"].as_str().unwrap_or_default()).unwrap();
    assert_eq!(got.len(), contents[1].len());
    assert!(got == contents[1], "the downloaded file equals the upload");
    let members = unzip_file(Path::new(r["zip"].as_str().unwrap_or_default()));
    assert_eq!(
        members.len(),
        3,
        "{:?}",
        members.iter().map(|m| &m.0).collect::<Vec<_>>()
    );
    for (n, c) in names.iter().zip(&contents) {
        assert!(
            members.iter().any(|(m, d)| m == n && d == c),
            "{n} in the zip with the uploaded bytes"
        );
    }
    // Seen from the server: the two downloads are in the package's log.
    let token = s.cli_token(sender);
    let (st, list) = s.api("GET", "/v1/portal/packages?limit=10", &token, None, None);
    assert_eq!(st, 200, "{list}");
    assert_eq!(list["items"][0]["download_count"], 2, "{list}");
}

#[test]
fn markup_in_a_file_name_and_a_message_is_shown_as_text_under_a_csp_without_inline_script() {
    let tmp = tempfile::tempdir().unwrap();
    let s = start(&tmp.path().join("data"));
    let name = "<img src=x onerror=alert(1)>.txt";
    let message = "<script>alert(1)</script>";
    let f = tmp.path().join(name);
    std::fs::write(&f, b"plain text\n").unwrap();
    // drive() fails the test if any dialog opened or the page threw.
    let r = s.drive_env("markup", &[&f], &[("MOAT_MESSAGE", message)]);
    for (k, v) in r["visible"].as_object().cloned().unwrap_or_default() {
        assert_eq!(v, true, "{k}: the text is shown literally: {r:#}");
    }
    assert_eq!(r["visible"].as_object().map(|o| o.len()), Some(5), "{r:#}");
    assert_eq!(r["message_shown"], message, "{r:#}");
    assert_eq!(r["file_names"], serde_json::json!([name]), "{r:#}");
    assert_eq!(r["list_title"], message, "{r:#}");
    // No element was made of the text: no <img> at all, only the site's
    // own scripts.
    for (page, e) in r["elements"].as_object().cloned().unwrap_or_default() {
        assert_eq!(e["imgs"], 0, "{page}: {r:#}");
        let scripts = e["scripts"].as_array().cloned().unwrap_or_default();
        assert!(
            scripts
                .iter()
                .all(|s| s.as_str().is_some_and(|s| s.starts_with("/static/"))),
            "{page}: {r:#}"
        );
    }
    // The header on every page: scripts only from this origin, nothing
    // inline, no eval, no framing.
    let csp = r["csp"].as_object().cloned().unwrap_or_default();
    assert_eq!(csp.len(), 4, "{r:#}");
    for (page, v) in csp {
        let v = v
            .as_str()
            .unwrap_or_else(|| panic!("{page}: no CSP header: {r:#}"));
        let directives: Vec<&str> = v.split(';').map(str::trim).collect();
        assert!(directives.contains(&"default-src 'none'"), "{page}: {v}");
        assert!(directives.contains(&"script-src 'self'"), "{page}: {v}");
        assert!(
            directives.contains(&"frame-ancestors 'none'"),
            "{page}: {v}"
        );
        assert!(
            !v.contains("unsafe-inline") && !v.contains("unsafe-eval") && !v.contains("nonce-"),
            "{page}: {v}"
        );
    }
    // And the browser enforces it: an inline script and an inline event
    // handler put into the page do not run, and are reported.
    for (page, p) in r["probe"].as_object().cloned().unwrap_or_default() {
        assert_eq!(p["inline_script_ran"], false, "{page}: {r:#}");
        assert_eq!(p["inline_handler_ran"], false, "{page}: {r:#}");
        assert!(p["timed_out"].is_null(), "{page}: {r:#}");
        let v = p["violated"].as_array().cloned().unwrap_or_default();
        assert!(
            v.iter()
                .filter_map(Value::as_str)
                .all(|d| d.starts_with("script-src")),
            "{page}: {r:#}"
        );
    }
}

#[test]
fn an_eicar_package_is_quarantined_then_released_by_the_admin_and_audited() {
    let tmp = tempfile::tempdir().unwrap();
    let s = start(&tmp.path().join("data"));
    let sender = "sender@example.com";
    let sender_pw = "sender password 1";
    add_member(&s, sender, sender_pw);
    let f = tmp.path().join("eicar.com");
    std::fs::write(&f, EICAR).unwrap();
    let reason = "Known test file, needed by the <b>lab</b> & approved";
    let r = s.drive_env(
        "eicar",
        &[&f],
        &[
            ("MOAT_EMAIL", sender),
            ("MOAT_PASSWORD", sender_pw),
            ("MOAT_ADMIN_EMAIL", ADMIN),
            ("MOAT_ADMIN_PASSWORD", ADMIN_PW),
            ("MOAT_RELEASE_REASON", reason),
        ],
    );
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
    // The quarantine page, open before the package existed, shows it
    // without a reload, and its refreshes keep what the admin types.
    assert_eq!(r["empty_before"], true, "{r:#}");
    assert_eq!(r["card_appeared_in_place"], true, "{r:#}");
    assert_eq!(r["empty_hidden_with_card"], true, "{r:#}");
    assert_eq!(r["reason_kept_across_refresh"], reason, "{r:#}");
    // It lists the package with the finding.
    let card = r["quarantine_card"].as_str().unwrap_or_default();
    assert!(
        card.contains("eicar.com") && card.to_ascii_lowercase().contains("eicar-test"),
        "the finding is named: {r:#}"
    );
    // A wrong password releases nothing.
    assert!(
        r["wrong_password_error"]
            .as_str()
            .is_some_and(|t| t.contains("password")),
        "{r:#}"
    );
    assert_eq!(r["still_listed"], 1, "{r:#}");
    assert_eq!(r["error_hidden_after_release"], true, "{r:#}");
    assert_eq!(r["empty_after_release"], true, "{r:#}");
    // The audit page: the release, by the admin, with the reason as text.
    let id = r["package_id"].as_str().unwrap_or_default();
    assert_eq!(r["audit_rows"], 1, "{r:#}");
    let cells = r["audit_cells"].as_array().cloned().unwrap_or_default();
    assert_eq!(cells.get(1), Some(&Value::from(ADMIN)), "{r:#}");
    assert_eq!(cells.get(2), Some(&Value::from("package.release")), "{r:#}");
    assert_eq!(cells.get(3), Some(&Value::from(id)), "{r:#}");
    let detail: Value =
        serde_json::from_str(cells.get(5).and_then(Value::as_str).unwrap_or_default())
            .unwrap_or(Value::Null);
    assert_eq!(detail["reason"], reason, "{r:#}");
    assert_eq!(
        r["denied_rows"], 1,
        "the wrong password is audited too: {r:#}"
    );
    // The sender sees it available and who released it; the recipient
    // gets the file.
    let after = r["summary_after_release"].as_str().unwrap_or_default();
    assert!(
        after.contains("available") && after.contains(ADMIN) && after.contains(reason),
        "{r:#}"
    );
    assert_eq!(r["recipient_links_after_release"], 1, "{r:#}");
    // Seen from the server.
    let token = s.cli_token(ADMIN);
    let (st, pkg) = s.api(
        "GET",
        &format!("/v1/portal/packages/{id}"),
        &token,
        None,
        None,
    );
    assert_eq!(st, 200, "{pkg}");
    assert_eq!(pkg["state"], "available", "{pkg}");
    assert_eq!(pkg["release_reason"], reason, "{pkg}");
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

/// Firefox (Debian's firefox-esr over WebDriver BiDi, tests/webui/firefox.js):
/// sign in, the new-package form, the dashboard with its engine and roles,
/// the settings page; no console error on any of them.
#[test]
fn the_main_pages_work_in_firefox() {
    let tmp = tempfile::tempdir().unwrap();
    let s = start(&tmp.path().join("data"));
    let shot = artifacts().join("dashboard-firefox.png");
    let _ = std::fs::remove_file(&shot);
    let r = s.node("firefox.js", &[], &[]);
    assert!(
        r["browser"].as_str().unwrap_or("").starts_with("firefox "),
        "{r:#}"
    );
    assert_eq!(r["errors"], serde_json::json!([]), "{r:#}");
    assert_eq!(r["signed_in_as"], ADMIN, "{r:#}");
    let labels: Vec<&str> = r["new_labels"]
        .as_array()
        .map(|a| a.iter().filter_map(|v| v.as_str()).collect())
        .unwrap_or_default();
    for want in ["Choose files", "Message", "Who can download", "Recipients"] {
        assert!(labels.contains(&want), "{want}: {r:#}");
    }
    let engines = r["engines"].to_string();
    assert!(
        engines.contains("builtin") && engines.contains("healthy"),
        "{r:#}"
    );
    let roles = r["roles"].to_string();
    assert!(
        roles.contains("portal: ready") && roles.contains("api: ready"),
        "{r:#}"
    );
    assert_eq!(r["settings_title"], "Settings · moat", "{r:#}");
    assert!(
        std::fs::metadata(&shot).is_ok_and(|m| m.len() > 1000),
        "no screenshot at {}",
        shot.display()
    );
}

#[test]
fn an_admin_revokes_a_package_and_disables_a_member_through_the_ui() {
    let tmp = tempfile::tempdir().unwrap();
    let s = start(&tmp.path().join("data"));
    let admin = s.cli_token(ADMIN);
    let member = "member@example.com";
    let member_pw = "member password 1";
    let (st, _) = s.api(
        "POST",
        "/v1/portal/users",
        &admin,
        Some(serde_json::json!({ "email": member, "password": member_pw })),
        None,
    );
    assert_eq!(st, 201);
    let token = s.cli_token(member);
    let (st, pkg) = s.api(
        "POST",
        "/v1/portal/packages",
        &token,
        Some(serde_json::json!({ "access": "public" })),
        None,
    );
    assert_eq!(st, 201, "{pkg}");
    let id = pkg["id"].as_str().unwrap().to_string();
    let link = pkg["links"]["public"].as_str().unwrap().to_string();
    let f = tmp.path().join("shared.txt");
    std::fs::write(&f, b"shared then revoked\n").unwrap();
    let (st, body) = s.api(
        "POST",
        &format!("/v1/portal/packages/{id}/files"),
        &token,
        None,
        Some(&f),
    );
    assert_eq!(st, 201, "{body}");
    let fid = body["files"][0]["id"].as_str().unwrap().to_string();
    submit_and_wait_available(&s, &token, &id);
    assert_eq!(
        s.api("GET", &format!("{link}/files/{fid}"), "", None, None)
            .0,
        200
    );

    let new_pw = "chosen with the reset link";
    let r = s.drive_env(
        "manage",
        &[],
        &[
            ("MOAT_PACKAGE", &id),
            ("MOAT_MEMBER", member),
            ("MOAT_MEMBER_NEW_PASSWORD", new_pw),
        ],
    );
    // Keyboard: Enter on "Revoke links" opens the dialog on Cancel; Tab
    // reaches "Revoke".
    assert_eq!(r["focus_in_dialog"], "Cancel", "{r:#}");
    assert_eq!(r["second_focus"], "Revoke", "{r:#}");
    assert!(
        r["summary"]
            .as_str()
            .unwrap_or_default()
            .contains("expired"),
        "{r:#}"
    );
    assert_eq!(r["revoke_visible"], false, "{r:#}");
    assert_eq!(r["delete_visible"], true, "{r:#}");
    assert_eq!(r["role_label"], "member", "{r:#}");
    // The one-time reset link from the users page: the code is filled in
    // from the fragment (then dropped from the address), and the member
    // signs in with the password chosen there.
    assert!(
        r["reset_link"]
            .as_str()
            .is_some_and(|l| l.starts_with(&format!("{}/reset#mpr_", s.base))),
        "{r:#}"
    );
    assert_eq!(r["reset_code_filled"], true, "{r:#}");
    assert_eq!(r["reset_url_after"], format!("{}/reset", s.base), "{r:#}");
    assert_eq!(r["member_signed_in"], member, "{r:#}");
    assert_eq!(r["member_status"], "disabled", "{r:#}");
    assert_eq!(r["enable_button"], 1, "{r:#}");
    // What the clicks did, seen from outside: the link is gone, the
    // member's token and (new) password no longer work.
    assert_eq!(
        s.api("GET", &format!("{link}/files/{fid}"), "", None, None)
            .0,
        410
    );
    assert_eq!(
        s.api("GET", "/v1/portal/auth/me", &token, None, None).0,
        401
    );
    let (st, _) = s.api(
        "POST",
        "/v1/portal/auth/login",
        "",
        Some(serde_json::json!({ "email": member, "password": new_pw })),
        None,
    );
    assert_eq!(st, 401, "a disabled member cannot sign in");
}

#[test]
fn an_admin_changes_settings_in_the_page_and_they_take_effect() {
    let tmp = tempfile::tempdir().unwrap();
    let s = start(&tmp.path().join("data"));
    // A Windows program named .txt: refused by content once executables are denied.
    let f = tmp.path().join("notes.txt");
    let mut exe = b"MZ\x90\x00\x03\x00\x00\x00\x04\x00\x00\x00\xff\xff\x00\x00".to_vec();
    exe.extend(pattern(4000, 3));
    std::fs::write(&f, &exe).unwrap();
    let r = s.drive("settings", &[&f]);
    assert!(r["engine_rows"].as_u64().unwrap_or(0) >= 1, "{r:#}");
    assert!(
        r["smtp_text"]
            .as_str()
            .is_some_and(|t| t.contains("Not configured")),
        "{r:#}"
    );
    assert_eq!(r["max_before"], "30", "{r:#}");
    assert!(
        r["error_shown"]
            .as_str()
            .is_some_and(|t| t.contains("default_expiry_days")),
        "a refused value is explained: {r:#}"
    );
    assert_eq!(r["error_hidden"], true, "{r:#}");
    assert_eq!(r["max_after_reload"], "3", "{r:#}");
    assert_eq!(r["denied_after_reload"], "executable", "{r:#}");
    assert!(
        r["max_hint"].as_str().is_some_and(|t| t.contains("30")),
        "the configuration's value is shown beside: {r:#}"
    );
    assert_eq!(r["public_after_reload"], false, "{r:#}");
    assert_eq!(r["password_policy_after_reload"], true, "{r:#}");
    // The new-package page offers the admin's default and says the maximum,
    // only the access modes the policy allows, and a required password for links.
    assert_eq!(
        r["access_options"],
        serde_json::json!(["recipients", "internal"]),
        "{r:#}"
    );
    assert_eq!(r["password_required"], true, "{r:#}");
    assert!(
        r["password_label"]
            .as_str()
            .is_some_and(|t| t.contains("required")),
        "{r:#}"
    );
    assert_eq!(r["password_required_internal"], false, "{r:#}");
    assert_eq!(r["new_default_expiry"], "2", "{r:#}");
    assert_eq!(r["new_expiry_hint"], "At most 3 days.", "{r:#}");
    assert!(
        r["expiry_error"]
            .as_str()
            .is_some_and(|t| t.contains("1..=3")),
        "{r:#}"
    );
    assert!(
        r["upload_error"]
            .as_str()
            .is_some_and(|t| t.contains("415")),
        "{r:#}"
    );
    // Seen from outside too: the API has the new values and the audit the change.
    let admin = s.cli_token(ADMIN);
    let (st, v) = s.api("GET", "/v1/portal/settings", &admin, None, None);
    assert_eq!(st, 200);
    assert_eq!(v["settings"]["max_expiry_days"], 3);
    assert_eq!(
        v["settings"]["denied_types"],
        serde_json::json!(["executable"])
    );
    assert_eq!(
        v["settings"]["access_modes"],
        serde_json::json!(["recipients", "internal"])
    );
    assert_eq!(v["settings"]["require_password"], true);
    let (st, a) = s.api(
        "GET",
        "/v1/portal/audit?action=settings.update",
        &admin,
        None,
        None,
    );
    assert_eq!(st, 200);
    assert_eq!(
        a["items"][0]["detail"]["changes"]["max_expiry_days"],
        serde_json::json!({ "old": 30, "new": 3 })
    );
}

#[test]
fn dashboard_charts_the_scans_just_made_and_shows_an_unreachable_engine_as_unhealthy() {
    let tmp = tempfile::tempdir().unwrap();
    // A second engine whose health check runs a script: renaming the
    // script away makes the engine unreachable.
    let probe = tmp.path().join("probe.sh");
    std::fs::write(&probe, "#!/bin/sh\necho 'probe 1.0'\nexit 0\n").unwrap();
    {
        use std::os::unix::fs::PermissionsExt;
        std::fs::set_permissions(&probe, std::fs::Permissions::from_mode(0o755)).unwrap();
    }
    let cfg = tmp.path().join("moat.toml");
    let p = format!("{:?}", probe.display().to_string());
    std::fs::write(
        &cfg,
        format!(
            "[server.auth]\ntokens = [\"dash-token\"]\n\n\
             [[engines]]\ntype = \"builtin\"\nsignatures = []\n\n\
             [[engines]]\ntype = \"command\"\nname = \"probe\"\nargv = [{p}, \"{{path}}\"]\n\
             version_argv = [{p}, \"--version\"]\n"
        ),
    )
    .unwrap();
    let s = start_with(&tmp.path().join("data"), Some(&cfg));
    // Two clean scans and one infected through the scan API.
    for (name, body) in [
        ("a.txt", &b"first clean file"[..]),
        ("b.txt", b"second clean file"),
        ("eicar.com", EICAR),
    ] {
        let f = tmp.path().join(name);
        std::fs::write(&f, body).unwrap();
        let out = Command::new("curl")
            .args([
                "-sf",
                "-H",
                "Authorization: Bearer dash-token",
                "--data-binary",
            ])
            .arg(format!("@{}", f.display()))
            .arg(format!("{}/v1/scan?name={name}", s.base))
            .output()
            .unwrap();
        assert!(out.status.success(), "scanning {name}");
    }
    // The records API needs the token; the dashboard reads it with the
    // admin's session (below), nobody else without one.
    for path in ["/v1/scans", "/v1/engines", "/v1/stats/verdicts?window=hour"] {
        assert_eq!(s.api("GET", path, "", None, None).0, 401, "{path}");
    }
    let member = "member@example.com";
    let admin = s.cli_token(ADMIN);
    let (st, _) = s.api(
        "POST",
        "/v1/portal/users",
        &admin,
        Some(serde_json::json!({ "email": member, "password": "member password 1" })),
        None,
    );
    assert_eq!(st, 201);
    let member_token = s.cli_token(member);
    assert_eq!(
        s.api("GET", "/v1/scans", &member_token, None, None).0,
        401,
        "a member's portal token does not open the records API"
    );
    assert_eq!(s.api("GET", "/v1/scans", &admin, None, None).0, 200);
    let r = s.drive_env(
        "dashboard",
        &[],
        &[("MOAT_ENGINE_SCRIPT", &probe.display().to_string())],
    );
    let want = serde_json::json!({ "clean": 2, "infected": 1 });
    assert_eq!(
        r["counts"],
        serde_json::json!({ "clean": 2, "infected": 1, "suspicious": 0, "unscannable": 0, "error": 0 }),
        "{r:#}"
    );
    assert_eq!(r["chart"], want, "the bars add up to the counts: {r:#}");
    assert_eq!(r["week_chart"], want, "{r:#}");
    assert_eq!(r["hour_buckets"], "60", "{r:#}");
    assert_eq!(r["scan_rows"], 3, "{r:#}");
    assert_eq!(r["infected_rows"], 1, "{r:#}");
    assert_eq!(r["engine_health_before"], "healthy", "{r:#}");
    assert!(
        r["engine_health_after"]
            .as_str()
            .is_some_and(|h| h.starts_with("unhealthy")),
        "{r:#}"
    );
    assert!(
        r["unhealthy_after_ms"]
            .as_u64()
            .is_some_and(|ms| ms < 10_000),
        "an unreachable engine shows within seconds: {r:#}"
    );
    assert!(
        r["roles_text"]
            .as_str()
            .is_some_and(|t| t.contains("portal: ready") && t.contains("api: ready")),
        "{r:#}"
    );
}

#[test]
fn an_upload_interrupted_by_a_page_reload_resumes_from_the_stored_offset() {
    let tmp = tempfile::tempdir().unwrap();
    let s = start(&tmp.path().join("data"));
    const MIB: u64 = 1024 * 1024;
    let f = tmp.path().join("large.bin");
    let bytes = pattern(14 * MIB as usize + 4321, 11);
    std::fs::write(&f, &bytes).unwrap();
    let r = s.drive("resume", &[&f]);
    // The server kept the two pieces sent before the reload.
    let stored = r["stored_uploads"].as_array().cloned().unwrap_or_default();
    assert_eq!(stored.len(), 1, "{r:#}");
    assert_eq!(stored[0]["status"], 200, "{r:#}");
    let kept = stored[0]["offset"].as_u64().unwrap_or(0);
    assert_eq!(kept, 8 * MIB, "{r:#}");
    assert!(
        r["resume_text"]
            .as_str()
            .is_some_and(|t| t.contains("large.bin")),
        "{r:#}"
    );
    // After the reload the upload went on from there: no piece was sent
    // from offset 0 again, and only the rest of the file was sent.
    let patches = r["patches"].as_array().cloned().unwrap_or_default();
    let after: Vec<_> = patches
        .iter()
        .filter(|p| p["after_reload"] == true)
        .collect();
    assert!(!after.is_empty(), "{r:#}");
    assert_eq!(after[0]["offset"].as_u64(), Some(kept), "{r:#}");
    let sent_after: u64 = after.iter().filter_map(|p| p["bytes"].as_u64()).sum();
    assert_eq!(sent_after, bytes.len() as u64 - kept, "{r:#}");
    // One package, one file, available, and the same bytes come back.
    assert_eq!(r["file_rows"], 1, "{r:#}");
    assert_eq!(r["draft_left"], serde_json::json!([]), "{r:#}");
    let id = r["package_id"].as_str().unwrap_or_default().to_string();
    let token = s.cli_token(ADMIN);
    let (st, pkg) = s.api(
        "GET",
        &format!("/v1/portal/packages/{id}"),
        &token,
        None,
        None,
    );
    assert_eq!(st, 200, "{pkg}");
    assert_eq!(pkg["files"].as_array().map(Vec::len), Some(1), "{pkg}");
    let (st, list) = s.api("GET", "/v1/portal/packages?limit=10", &token, None, None);
    assert_eq!(st, 200);
    assert_eq!(
        list["items"].as_array().map(Vec::len),
        Some(1),
        "the resumed upload went into the same package: {list}"
    );
    let fid = pkg["files"][0]["id"].as_str().unwrap_or_default();
    let link = pkg["links"]["public"].as_str().unwrap_or_default();
    let link = if link.starts_with('/') {
        format!("{}{link}", s.base)
    } else {
        link.to_string()
    };
    let got = tmp.path().join("got.bin");
    let ok = Command::new("curl")
        .args(["-sf", "-o"])
        .arg(&got)
        .arg(format!("{link}/files/{fid}"))
        .status()
        .unwrap();
    assert!(ok.success(), "{pkg}");
    assert!(std::fs::read(&got).unwrap() == bytes, "the bytes match");
}

#[test]
fn main_pages_fit_a_phone_screen_and_every_control_is_reachable_by_keyboard() {
    let tmp = tempfile::tempdir().unwrap();
    let s = start(&tmp.path().join("data"));
    let token = s.cli_token(ADMIN);
    let (st, pkg) = s.api(
        "POST",
        "/v1/portal/packages",
        &token,
        Some(serde_json::json!({ "access": "public", "message": "A rather long message without spaces: aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa" })),
        None,
    );
    assert_eq!(st, 201, "{pkg}");
    let id = pkg["id"].as_str().unwrap().to_string();
    let link = pkg["links"]["public"].as_str().unwrap().to_string();
    let f = tmp
        .path()
        .join("a-file-with-a-long-name-that-could-push-the-page-wider.txt");
    std::fs::write(&f, b"phone\n").unwrap();
    let (st, body) = s.api(
        "POST",
        &format!("/v1/portal/packages/{id}/files"),
        &token,
        None,
        Some(&f),
    );
    assert_eq!(st, 201, "{body}");
    submit_and_wait_available(&s, &token, &id);
    let token_part = link.rsplit('/').next().unwrap_or_default();
    let page = format!("{}/p/{token_part}", s.base);
    let r = s.drive_env(
        "phone",
        &[],
        &[("MOAT_PACKAGE", &id), ("MOAT_LINK_PAGE", &page)],
    );
    let pages = r["pages"].as_object().cloned().unwrap_or_default();
    assert_eq!(pages.len(), 9, "{r:#}");
    for (name, p) in &pages {
        assert_eq!(p["overflow"], false, "{name} scrolls sideways: {p:#}");
        assert_eq!(
            p["missing"],
            serde_json::json!([]),
            "{name}: Tab misses controls: {p:#}"
        );
        assert_eq!(
            p["unoutlined"],
            serde_json::json!([]),
            "{name}: focus not visible: {p:#}"
        );
        assert!(
            p["controls"].as_array().is_some_and(|c| !c.is_empty()),
            "{name}: {p:#}"
        );
    }
}
