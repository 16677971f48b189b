//! `moat signatures update` and the updater inside `moat serve`, against a
//! local mirror started by the test, serving CVD and CDIFF files the test
//! builds and signs with the committed test key.

// Test files are small and built by the test.
#![allow(clippy::disallowed_methods)]

mod common;
use common::*;
use moat_update::testing::{
    Mirror, Signer, TEST_PUBLIC_KEY_PEM, build_cdiff, build_cvd, diff_script, unpack,
};
use std::path::{Path, PathBuf};
use std::process::{Child, Stdio};
use std::time::{Duration, Instant};

const ONE: &str = "moat-update-marker-one";
const TWO: &str = "moat-update-marker-two";
const THREE: &str = "moat-update-marker-three";

fn ndb(names: &[(&str, &str)]) -> Vec<u8> {
    names
        .iter()
        .map(|(n, m)| format!("{n}:0:*:{}\n", hex::encode(m)))
        .collect::<String>()
        .into_bytes()
}

/// daily version `v`: one signature per marker up to `v`.
fn daily(s: &Signer, v: u64) -> Vec<u8> {
    let sigs = [
        ("Moat.Test.One", ONE),
        ("Moat.Test.Two", TWO),
        ("Moat.Test.Three", THREE),
    ];
    let body = ndb(&sigs[..v as usize]);
    build_cvd(s, "daily", v, &[("daily.ndb", &body), ("daily.hdb", b"")])
}

fn main_db(s: &Signer) -> Vec<u8> {
    build_cvd(
        s,
        "main",
        1,
        &[(
            "main.hdb",
            b"44d88612fea8a8f36de82e1278abb02f:68:Moat.Test.Main\n",
        )],
    )
}

struct Env {
    tmp: tempfile::TempDir,
    mirror: Mirror,
    db: PathBuf,
    cfg: PathBuf,
    signer: Signer,
}

impl Env {
    /// A mirror, a database directory, and a config using both.
    fn new(update_extra: &str) -> Env {
        let tmp = tempfile::tempdir().unwrap();
        let mdir = tmp.path().join("mirror");
        std::fs::create_dir(&mdir).unwrap();
        let mirror = Mirror::start(&mdir);
        let db = tmp.path().join("db");
        let key = tmp.path().join("mirror-key.pem");
        std::fs::write(&key, TEST_PUBLIC_KEY_PEM).unwrap();
        let cfg = tmp.path().join("moat.toml");
        std::fs::write(
            &cfg,
            format!(
                r#"data_dir = "{data}"
[reload]
poll_secs = 0
[[engines]]
type = "builtin"
signatures = ["{db}"]
[signatures.update]
mirror = "{mirror}"
databases = ["main", "daily"]
database_dir = "{db}"
public_key = "{key}"
jitter_secs = 0
interval_secs = 1
user_agent = "moat-test-agent/1"
{update_extra}
"#,
                data = tmp.path().join("data").display(),
                db = db.display(),
                mirror = mirror.url(),
                key = key.display(),
            ),
        )
        .unwrap();
        std::fs::create_dir_all(&db).unwrap();
        Env {
            tmp,
            mirror,
            db,
            cfg,
            signer: Signer::test_key(),
        }
    }

    fn update(&self) -> (i32, String) {
        let out = moat()
            .args(["signatures", "update", "--config"])
            .arg(&self.cfg)
            .output()
            .unwrap();
        let text = format!(
            "{}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
        (out.status.code().unwrap_or(-1), text)
    }

    /// `moat scan` exit code of a file holding `content` (1: infected).
    fn scan(&self, content: &str) -> i32 {
        let f = self.tmp.path().join("sample.txt");
        std::fs::write(&f, format!("xx {content} xx")).unwrap();
        moat()
            .args(["scan", "--config"])
            .arg(&self.cfg)
            .arg(&f)
            .stdout(Stdio::null())
            .status()
            .unwrap()
            .code()
            .unwrap_or(-1)
    }

    fn publish_daily(&self, v: u64) {
        self.mirror.put("daily.cvd", &daily(&self.signer, v));
    }

    /// Publish daily `v` with the cdiff from `v-1` (signed by `cdiff_signer`).
    fn publish_daily_with_cdiff(&self, v: u64, cdiff_signer: &Signer) {
        let script = diff_script(
            &unpack(&daily(&self.signer, v - 1)),
            &unpack(&daily(&self.signer, v)),
        );
        self.mirror.put(
            &format!("daily-{v}.cdiff"),
            &build_cdiff(cdiff_signer, v, &script),
        );
        self.publish_daily(v);
    }

    fn version(&self, name: &str) -> Option<(String, u64)> {
        for ext in ["cld", "cvd"] {
            let p = self.db.join(format!("{name}.{ext}"));
            if let Ok(b) = std::fs::read(&p) {
                let h = moat_builtin_header(&b);
                return Some((ext.to_string(), h));
            }
        }
        None
    }

    fn staging_left(&self) -> Vec<String> {
        std::fs::read_dir(&self.db)
            .unwrap()
            .flatten()
            .map(|e| e.file_name().to_string_lossy().into_owned())
            .filter(|n| n.starts_with(".moat-update-") && !n.starts_with(".moat-update-state"))
            .collect()
    }
}

fn moat_builtin_header(b: &[u8]) -> u64 {
    let text = String::from_utf8_lossy(&b[..512]);
    text.split(':').nth(2).unwrap().parse().unwrap()
}

#[test]
fn first_update_downloads_whole_files_then_applies_cdiffs_and_falls_back_to_the_cvd() {
    let e = Env::new("");
    e.mirror.put("main.cvd", &main_db(&e.signer));
    e.publish_daily(1);
    assert_eq!(e.scan(ONE), 0, "nothing loaded yet");

    // First run: whole files, after a ranged header probe.
    let (code, out) = e.update();
    assert_eq!(code, 0, "{out}");
    assert!(out.contains("daily: updated - -> 1 (cvd"), "{out}");
    assert_eq!(e.version("daily"), Some(("cvd".into(), 1)));
    assert_eq!(e.version("main"), Some(("cvd".into(), 1)));
    let reqs = e.mirror.requests();
    let probe = reqs.iter().find(|r| r.path == "/daily.cvd").unwrap();
    assert_eq!(probe.header("Range"), Some("bytes=0-511"));
    assert_eq!(probe.status, 206);
    assert!(
        reqs.iter()
            .all(|r| r.header("User-Agent") == Some("moat-test-agent/1"))
    );
    assert!(
        reqs.iter()
            .any(|r| r.path == "/daily.cvd" && r.header("Range").is_none())
    );
    assert_eq!(e.scan(ONE), 1, "daily v1 detects marker one");
    assert_eq!(e.scan(TWO), 0);

    // Second run: a cdiff, no whole download; main is unchanged.
    e.publish_daily_with_cdiff(2, &e.signer);
    e.mirror.clear_log();
    let (code, out) = e.update();
    assert_eq!(code, 0, "{out}");
    assert!(out.contains("daily: updated 1 -> 2 (cdiff"), "{out}");
    assert!(out.contains("main: up to date (version 1)"), "{out}");
    assert_eq!(e.version("daily"), Some(("cld".into(), 2)));
    assert!(
        !e.db.join("daily.cvd").exists(),
        "the old cvd is replaced by the cld"
    );
    let reqs = e.mirror.requests();
    assert!(
        reqs.iter()
            .any(|r| r.path == "/daily-2.cdiff" && r.status == 200)
    );
    assert!(
        !reqs
            .iter()
            .any(|r| r.path.ends_with(".cvd") && r.header("Range").is_none()),
        "no whole database downloaded: {reqs:?}"
    );
    // The If-Modified-Since of the probe carries the local build time.
    assert!(
        reqs.iter()
            .all(|r| r.path != "/main.cvd" || r.header("If-Modified-Since").is_some())
    );
    assert_eq!(
        e.scan(TWO),
        1,
        "daily v2 (built from the cdiff) detects marker two"
    );
    assert_eq!(e.scan(ONE), 1);

    // Third run: the cdiff is wrongly signed: refused, the whole cvd is used.
    e.publish_daily_with_cdiff(3, &Signer::wrong_key());
    let (code, out) = e.update();
    assert_eq!(code, 0, "{out}");
    assert!(out.contains("daily: updated 2 -> 3 (cvd"), "{out}");
    assert_eq!(e.version("daily"), Some(("cvd".into(), 3)));
    assert!(!e.db.join("daily.cld").exists());
    assert_eq!(e.scan(THREE), 1);
    assert!(e.staging_left().is_empty(), "{:?}", e.staging_left());

    // Every run is recorded in the state file.
    let state: serde_json::Value =
        serde_json::from_slice(&std::fs::read(e.db.join("moat-update.json")).unwrap()).unwrap();
    let hist = state["history"].as_array().unwrap();
    let daily: Vec<_> = hist.iter().filter(|r| r["database"] == "daily").collect();
    assert_eq!(daily.len(), 3);
    assert_eq!(daily[1]["method"], "cdiff");
    assert_eq!(daily[1]["version"], 2);
    assert_eq!(daily[1]["result"], "updated");
    assert!(
        daily[1]["source"]
            .as_str()
            .unwrap()
            .ends_with("/daily-2.cdiff")
    );
}

#[test]
fn a_429_with_retry_after_is_honoured_across_runs_and_not_retried_early() {
    let e = Env::new("");
    e.mirror.put("main.cvd", &main_db(&e.signer));
    e.publish_daily(1);
    e.mirror.throttle(1, "2");
    let (code, out) = e.update();
    assert_eq!(code, 3, "{out}");
    assert_eq!(
        e.mirror.requests().len(),
        1,
        "nothing after the 429 in the same run"
    );
    // A second run inside the cool-down sends nothing at all.
    let (code, out) = e.update();
    assert_eq!(code, 3, "{out}");
    assert!(out.contains("cool-down"), "{out}");
    assert_eq!(
        e.mirror.requests().len(),
        1,
        "no request before Retry-After ends"
    );
    assert!(e.version("daily").is_none());
    // After it ends, the update goes through.
    std::thread::sleep(Duration::from_millis(2200));
    let (code, out) = e.update();
    assert_eq!(code, 0, "{out}");
    assert_eq!(e.version("daily"), Some(("cvd".into(), 1)));

    // A long Retry-After (an HTTP date is read too) is remembered.
    e.publish_daily(2);
    let later = std::time::SystemTime::now() + Duration::from_secs(3600);
    e.mirror.throttle(1, &httpdate_fmt(later));
    e.mirror.clear_log();
    assert_eq!(e.update().0, 3);
    assert_eq!(e.update().0, 3);
    assert_eq!(e.mirror.requests().len(), 1);
    assert_eq!(e.version("daily"), Some(("cvd".into(), 1)));
}

fn httpdate_fmt(t: std::time::SystemTime) -> String {
    // RFC 7231 IMF-fixdate, via `date` to avoid a test-only dependency.
    let secs = t.duration_since(std::time::UNIX_EPOCH).unwrap().as_secs();
    let out = std::process::Command::new("date")
        .args([
            "-u",
            "-d",
            &format!("@{secs}"),
            "+%a, %d %b %Y %H:%M:%S GMT",
        ])
        .env("LC_ALL", "C")
        .output()
        .unwrap();
    String::from_utf8_lossy(&out.stdout).trim().to_string()
}

#[test]
fn truncated_and_wrongly_signed_databases_are_refused_and_the_old_copy_stays() {
    let e = Env::new("");
    e.mirror.put("main.cvd", &main_db(&e.signer));
    e.publish_daily(1);
    assert_eq!(e.update().0, 0);
    let good = std::fs::read(e.db.join("daily.cvd")).unwrap();

    // Version 2, truncated, and no cdiff on the mirror (404 → whole file).
    let v2 = daily(&e.signer, 2);
    e.mirror.put("daily.cvd", &v2[..v2.len() - 40]);
    let (code, out) = e.update();
    assert_eq!(code, 1, "{out}");
    assert!(out.contains("daily: FAILED, kept version 1"), "{out}");
    assert_eq!(std::fs::read(e.db.join("daily.cvd")).unwrap(), good);

    // Version 2 signed with another key (database and cdiff).
    let wrong = Signer::wrong_key();
    e.mirror.put("daily.cvd", &daily(&wrong, 2));
    let script = diff_script(&unpack(&daily(&e.signer, 1)), &unpack(&daily(&e.signer, 2)));
    e.mirror
        .put("daily-2.cdiff", &build_cdiff(&wrong, 2, &script));
    let (code, out) = e.update();
    assert_eq!(code, 1, "{out}");
    assert!(out.contains("signature"), "{out}");
    assert_eq!(std::fs::read(e.db.join("daily.cvd")).unwrap(), good);
    assert!(!e.db.join("daily.cld").exists());
    assert!(e.staging_left().is_empty(), "{:?}", e.staging_left());
    // Scanning goes on with the previous set.
    assert_eq!(e.scan(ONE), 1);
    assert_eq!(e.scan(TWO), 0);
}

#[test]
fn extra_urls_use_conditional_requests_and_bad_files_are_refused() {
    let tmp_cfg = "extra_urls = [\"MIRROR/extra.ndb\", \"MIRROR/broken.ndb\"]";
    let e = Env::new("");
    let text = std::fs::read_to_string(&e.cfg)
        .unwrap()
        .replace("databases = [\"main\", \"daily\"]", "databases = []")
        + &tmp_cfg.replace("MIRROR", &e.mirror.url())
        + "\n";
    std::fs::write(&e.cfg, text).unwrap();
    e.mirror.put("extra.ndb", &ndb(&[("Moat.Test.Extra", TWO)]));
    e.mirror
        .put("broken.ndb", b"this is not a signature\nnor this\n");
    let (code, out) = e.update();
    assert_eq!(code, 1, "{out}");
    assert!(out.contains("extra.ndb: updated"), "{out}");
    assert!(out.contains("broken.ndb: FAILED"), "{out}");
    assert!(!e.db.join("broken.ndb").exists());
    assert_eq!(e.scan(TWO), 1);
    e.mirror
        .put("broken.ndb", &ndb(&[("Moat.Test.Fixed", THREE)]));
    e.mirror.clear_log();
    let (code, out) = e.update();
    assert_eq!(code, 0, "{out}");
    assert!(out.contains("extra.ndb: up to date"), "{out}");
    let reqs = e.mirror.requests();
    let r = reqs.iter().find(|r| r.path == "/extra.ndb").unwrap();
    assert!(r.header("If-None-Match").is_some());
    assert_eq!(r.status, 304);
    assert_eq!(e.scan(THREE), 1);
}

/// A `.tar.gz` of `files` (relative path, content), made by the system tar.
fn tar_gz(tmp: &Path, files: &[(&str, &str)]) -> Vec<u8> {
    let src = tmp.join(format!("tar-src-{}", fastrand_suffix()));
    for (rel, body) in files {
        let p = src.join(rel);
        std::fs::create_dir_all(p.parent().unwrap()).unwrap();
        std::fs::write(&p, body).unwrap();
    }
    let out = src.with_extension("tar.gz");
    let st = std::process::Command::new("tar")
        .arg("-czf")
        .arg(&out)
        .arg("-C")
        .arg(&src)
        .arg(".")
        .status()
        .unwrap();
    assert!(st.success());
    std::fs::read(out).unwrap()
}

fn fastrand_suffix() -> u128 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_nanos()
}

fn yara_rule(name: &str, marker: &str) -> String {
    format!("rule {name} {{ strings: $a = \"{marker}\" condition: $a }}\n")
}

#[test]
fn yara_rule_archives_from_urls_install_whole_and_a_bad_file_disables_nothing_else() {
    let e = Env::new("");
    let text = std::fs::read_to_string(&e.cfg)
        .unwrap()
        .replace("databases = [\"main\", \"daily\"]", "databases = []")
        + &format!(
            "extra_urls = [\"{}/community.tar.gz\"]\n[[engines]]\ntype = \"yara\"\nrules = [\"{}\"]\n",
            e.mirror.url(),
            e.db.display()
        );
    std::fs::write(&e.cfg, text).unwrap();
    // One rule per file; one file does not compile, one is not a rule file.
    e.mirror.put(
        "community.tar.gz",
        &tar_gz(
            e.tmp.path(),
            &[
                ("malware/one.yar", &yara_rule("Moat_Archive_One", ONE)),
                ("broken/bad.yara", "rule Broken { condition: nope( }"),
                ("README.md", "not a rule"),
            ],
        ),
    );
    let (code, out) = e.update();
    assert_eq!(code, 0, "{out}");
    assert!(out.contains("community.tar.gz: updated"), "{out}");
    let installed = e.db.join("community.yara.d");
    assert!(installed.join("malware/one.yar").is_file(), "{out}");
    assert!(!installed.join("README.md").exists());
    assert_eq!(e.scan(ONE), 1, "the rule that compiles is in use");
    assert_eq!(e.scan(TWO), 0);

    // An archive in which nothing compiles is refused; the old rules stay.
    e.mirror.put(
        "community.tar.gz",
        &tar_gz(e.tmp.path(), &[("x.yar", "rule { nope")]),
    );
    let (code, out) = e.update();
    assert_eq!(code, 1, "{out}");
    assert!(out.contains("community.tar.gz: FAILED"), "{out}");
    assert!(installed.join("malware/one.yar").is_file());
    assert_eq!(e.scan(ONE), 1);

    // A new collection replaces the old one whole: the new rule detects,
    // the rule that is gone no longer does.
    e.mirror.put(
        "community.tar.gz",
        &tar_gz(
            e.tmp.path(),
            &[("malware/two.yar", &yara_rule("Moat_Archive_Two", TWO))],
        ),
    );
    let (code, out) = e.update();
    assert_eq!(code, 0, "{out}");
    assert_eq!(e.scan(TWO), 1);
    assert_eq!(e.scan(ONE), 0);
    assert!(!installed.join("malware/one.yar").exists());
    assert!(e.staging_left().is_empty(), "{:?}", e.staging_left());

    // Unchanged on the mirror: a conditional request, nothing reinstalled.
    e.mirror.clear_log();
    let (code, out) = e.update();
    assert_eq!(code, 0, "{out}");
    assert!(out.contains("community.tar.gz: up to date"), "{out}");
    let reqs = e.mirror.requests();
    let r = reqs.iter().find(|r| r.path == "/community.tar.gz").unwrap();
    assert_eq!(r.status, 304);
}

struct Serve(Child);
impl Drop for Serve {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

fn post_scan(port: u16, body: &str) -> String {
    let out = std::process::Command::new("curl")
        .args([
            "-s",
            "--data-binary",
            body,
            &format!("http://127.0.0.1:{port}/v1/scan"),
        ])
        .output()
        .unwrap();
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap_or_default();
    v["status"].as_str().unwrap_or("").to_string()
}

fn wait_status(port: u16, body: &str, want: &str, log: &Path) {
    let t = Instant::now();
    while post_scan(port, body) != want {
        assert!(
            t.elapsed() < Duration::from_secs(30),
            "{body:?} never became {want}: {}",
            std::fs::read_to_string(log).unwrap_or_default()
        );
        std::thread::sleep(Duration::from_millis(200));
    }
}

#[test]
fn a_running_serve_updates_and_reloads_without_restart() {
    // DNS (inside serve's blocking task) gives main's version; the record
    // has no daily field, so daily is probed over HTTP.
    let dns_port = free_dns_port();
    let e = Env::new(&format!(
        "dns_txt = \"current.cvd.clamav.net\"\ndns_resolver = \"127.0.0.1:{dns_port}\""
    ));
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs();
    let _dns = dnsmasq(dns_port, &format!("1.4.3:1::{now}:1:90:0:335"));
    e.mirror.put("main.cvd", &main_db(&e.signer));
    e.publish_daily(1);
    let port = free_port();
    let log = e.tmp.path().join("serve.log");
    let child = moat()
        .args(["serve", "--config"])
        .arg(&e.cfg)
        .args(["--listen", &format!("127.0.0.1:{port}")])
        .stdout(Stdio::null())
        .stderr(Stdio::from(std::fs::File::create(&log).unwrap()))
        .spawn()
        .unwrap();
    let _s = Serve(child);
    wait_port(port, 30);
    // The first check at start downloads daily 1; the reload that follows
    // comes from the updater (file polling is off).
    wait_status(port, ONE, "infected", &log);
    assert_eq!(post_scan(port, TWO), "clean");
    e.publish_daily_with_cdiff(2, &e.signer);
    wait_status(port, TWO, "infected", &log);
    assert_eq!(post_scan(port, ONE), "infected");
    // The reload after the daily update shared main's hash tables (main.cvd
    // did not change) rather than parsing them again.
    let text = strip_ansi(&std::fs::read_to_string(&log).unwrap());
    let last_load = text
        .lines()
        .rfind(|l| l.contains("builtin signatures loaded"))
        .unwrap_or_default();
    assert!(last_load.contains("reused_files=1"), "{text}");
    let out = std::process::Command::new("curl")
        .args(["-s", &format!("http://127.0.0.1:{port}/v1/engines")])
        .output()
        .unwrap();
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    let results = v["signature_updates"]["last_results"].as_array().unwrap();
    assert!(
        results
            .iter()
            .any(|r| r["database"] == "daily" && r["version"] == 2),
        "{v}"
    );
    assert_eq!(e.version("daily"), Some(("cld".into(), 2)));
    let reqs = e.mirror.requests();
    assert!(
        reqs.iter()
            .any(|r| r.path == "/daily.cvd" && r.header("Range").is_some())
    );
    assert!(
        !reqs
            .iter()
            .any(|r| r.path == "/main.cvd" && r.header("Range").is_some()),
        "main's version came from DNS: {reqs:?}"
    );
}

/// `s` without terminal colour sequences (`ESC [ ... m`).
fn strip_ansi(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    let mut chars = s.chars();
    while let Some(c) = chars.next() {
        if c == '\x1b' {
            chars.by_ref().find(|&d| d == 'm');
        } else {
            out.push(c);
        }
    }
    out
}

// --- DNS TXT version records (freshclam's current.cvd.clamav.net), served
// by a real DNS server (dnsmasq) started by the test.

/// dnsmasq on 127.0.0.1:`port` answering `current.cvd.clamav.net` with `txt`.
fn dnsmasq(port: u16, txt: &str) -> Proc {
    let bin = ["/usr/sbin/dnsmasq", "/usr/bin/dnsmasq"]
        .into_iter()
        .find(|p| Path::new(p).exists())
        .unwrap_or("dnsmasq");
    let child = std::process::Command::new(bin)
        .args([
            "--no-daemon",
            "--conf-file=/dev/null",
            "--no-hosts",
            "--no-resolv",
            "--bind-interfaces",
            "--listen-address=127.0.0.1",
            "--pid-file=",
            "--log-queries",
            "--log-facility=-",
        ])
        .arg(format!("--port={port}"))
        .arg(format!("--txt-record=current.cvd.clamav.net,{txt}"))
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap_or_else(|e| panic!("dnsmasq ({bin}): {e}; run scripts/test-deps.sh"));
    let p = Proc(child);
    wait_port(port, 10);
    p
}

/// A port free for both TCP and UDP on 127.0.0.1.
fn free_dns_port() -> u16 {
    loop {
        let p = free_port();
        if std::net::UdpSocket::bind(("127.0.0.1", p)).is_ok() {
            return p;
        }
    }
}

fn txt(main: u64, daily: u64) -> String {
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs();
    format!("1.4.3:{main}:{daily}:{now}:1:90:0:335")
}

#[test]
fn a_dns_txt_record_saying_current_means_no_http_request_and_newer_fetches_cdiffs() {
    let port = free_dns_port();
    let e = Env::new(&format!(
        "dns_txt = \"current.cvd.clamav.net\"\ndns_resolver = \"127.0.0.1:{port}\""
    ));
    e.mirror.put("main.cvd", &main_db(&e.signer));
    e.publish_daily(1);
    let dns = dnsmasq(port, &txt(1, 1));

    // No local copy: the versions come from DNS, the files from the mirror
    // (no ranged header probe).
    let (code, out) = e.update();
    assert_eq!(code, 0, "{out}");
    assert_eq!(e.version("daily"), Some(("cvd".into(), 1)));
    let reqs = e.mirror.requests();
    assert!(
        reqs.iter().all(|r| r.header("Range").is_none()),
        "no header probe when DNS gives the version: {reqs:?}"
    );

    // DNS says current: not a single HTTP request.
    e.mirror.clear_log();
    let (code, out) = e.update();
    assert_eq!(code, 0, "{out}");
    assert!(out.contains("daily: up to date (version 1)"), "{out}");
    assert!(out.contains("main: up to date (version 1)"), "{out}");
    assert_eq!(e.mirror.requests().len(), 0, "{:?}", e.mirror.requests());

    // DNS says daily 2: the cdiff is fetched, still no probe.
    drop(dns);
    e.publish_daily_with_cdiff(2, &e.signer);
    let dns = dnsmasq(port, &txt(1, 2));
    e.mirror.clear_log();
    let (code, out) = e.update();
    assert_eq!(code, 0, "{out}");
    assert!(out.contains("daily: updated 1 -> 2 (cdiff"), "{out}");
    let paths: Vec<String> = e.mirror.requests().into_iter().map(|r| r.path).collect();
    assert_eq!(paths, vec!["/daily-2.cdiff".to_string()]);
    assert_eq!(e.scan(TWO), 1);

    // DNS down: the header probe decides, and the update still works.
    drop(dns);
    e.publish_daily_with_cdiff(3, &e.signer);
    e.mirror.clear_log();
    let (code, out) = e.update();
    assert_eq!(code, 0, "{out}");
    assert!(out.contains("daily: updated 2 -> 3 (cdiff"), "{out}");
    let reqs = e.mirror.requests();
    assert!(
        reqs.iter()
            .any(|r| r.path == "/daily.cvd" && r.header("Range") == Some("bytes=0-511")),
        "fell back to the header probe: {reqs:?}"
    );
    assert_eq!(e.scan(THREE), 1);
}

#[test]
fn a_malformed_or_stale_dns_record_falls_back_to_the_header_probe() {
    let port = free_dns_port();
    let e = Env::new(&format!(
        "dns_txt = \"current.cvd.clamav.net\"\ndns_resolver = \"127.0.0.1:{port}\""
    ));
    e.mirror.put("main.cvd", &main_db(&e.signer));
    e.publish_daily(1);
    assert_eq!(e.update().0, 0);
    for (record, want) in [
        ("this is not a version record".to_string(), 2),
        // A record made long ago that says daily 2 is current.
        ("1.4.3:1:2:1000000000:1:90:0:335".to_string(), 3),
    ] {
        e.publish_daily_with_cdiff(want, &e.signer);
        let _dns = dnsmasq(port, &record);
        e.mirror.clear_log();
        let (code, out) = e.update();
        assert_eq!(code, 0, "{record}: {out}");
        let reqs = e.mirror.requests();
        assert!(
            reqs.iter()
                .any(|r| r.header("Range") == Some("bytes=0-511")),
            "{record}: the mirror was asked: {reqs:?}"
        );
        assert_eq!(e.version("daily").map(|v| v.1), Some(want));
    }
}

// --- Through an HTTP proxy: a real Squid started by the test.

/// Squid on a free port forwarding (never caching) for localhost; its
/// directory holds `access.log`.
fn squid(dir: &Path) -> (Proc, u16) {
    use std::os::unix::fs::PermissionsExt;
    let bin = ["/usr/sbin/squid", "/usr/bin/squid"]
        .into_iter()
        .find(|p| Path::new(p).exists())
        .expect("squid (scripts/test-deps.sh installs it)");
    let port = free_port();
    std::fs::create_dir_all(dir).unwrap();
    // Squid started as root runs as `proxy`: it must write its files.
    std::fs::set_permissions(dir, std::fs::Permissions::from_mode(0o777)).unwrap();
    let conf = dir.join("squid.conf");
    std::fs::write(
        &conf,
        format!(
            "http_port 127.0.0.1:{port}
http_access allow localhost
http_access deny all
cache deny all
pid_filename {d}/squid.pid
cache_log {d}/cache.log
access_log stdio:{d}/access.log
shutdown_lifetime 1 seconds
",
            d = dir.display()
        ),
    )
    .unwrap();
    let p = Proc(
        std::process::Command::new(bin)
            .args(["-N", "-f"])
            .arg(&conf)
            .stdout(Stdio::null())
            .stderr(Stdio::from(
                std::fs::File::create(dir.join("stderr.log")).unwrap(),
            ))
            .spawn()
            .unwrap(),
    );
    let t = Instant::now();
    while std::net::TcpStream::connect(("127.0.0.1", port)).is_err() {
        assert!(
            t.elapsed() < Duration::from_secs(30),
            "squid did not start: {}\n{}",
            log_tail(&dir.join("stderr.log")),
            log_tail(&dir.join("cache.log"))
        );
        std::thread::sleep(Duration::from_millis(100));
    }
    (p, port)
}

#[test]
fn updates_go_through_the_configured_http_proxy_and_fail_cleanly_when_it_is_down() {
    let sq = tempfile::tempdir().unwrap();
    let (proxy, port) = squid(&sq.path().join("squid"));
    let e = Env::new(&format!("proxy = \"http://127.0.0.1:{port}\""));
    e.mirror.put("main.cvd", &main_db(&e.signer));
    e.publish_daily(1);

    let (code, out) = e.update();
    assert_eq!(code, 0, "{out}");
    assert_eq!(e.version("daily"), Some(("cvd".into(), 1)));
    // Every request reached the mirror through Squid (its Via header) ...
    let reqs = e.mirror.requests();
    assert!(!reqs.is_empty());
    assert!(
        reqs.iter()
            .all(|r| r.header("Via").is_some_and(|v| v.contains("squid"))),
        "{reqs:?}"
    );
    // ... and Squid logged them.
    let log = sq.path().join("squid/access.log");
    let want = format!("{}/daily.cvd", e.mirror.url());
    let t = Instant::now();
    loop {
        let text = std::fs::read_to_string(&log).unwrap_or_default();
        if text.contains(&want) && text.contains("/main.cvd") {
            break;
        }
        assert!(
            t.elapsed() < Duration::from_secs(10),
            "squid's access log lacks {want}: {text}"
        );
        std::thread::sleep(Duration::from_millis(100));
    }

    // The proxy goes away: the update fails, says why, and the old
    // database stays in place and in use.
    drop(proxy);
    e.publish_daily_with_cdiff(2, &e.signer);
    e.mirror.clear_log();
    let (code, out) = e.update();
    assert_eq!(code, 1, "{out}");
    assert!(out.contains("daily: FAILED, kept version 1"), "{out}");
    assert!(
        out.contains(&format!("proxy http://127.0.0.1:{port}")),
        "the error names the proxy: {out}"
    );
    assert!(
        e.mirror.requests().is_empty(),
        "nothing went around the proxy"
    );
    assert_eq!(e.version("daily"), Some(("cvd".into(), 1)));
    assert_eq!(e.scan(ONE), 1, "the old database still detects");
    assert!(e.staging_left().is_empty(), "{:?}", e.staging_left());
}
