//! `moat serve` end to end: the real binary, real HTTP (curl), SQLite on disk.

mod common;
use common::*;
use std::path::Path;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

struct Server {
    child: Proc,
    base: String,
}

fn start(data: &Path, env: &[(&str, &str)]) -> Server {
    let port = free_port();
    let mut cmd = moat();
    cmd.args([
        "serve",
        "--listen",
        &format!("127.0.0.1:{port}"),
        "--data-dir",
    ])
    .arg(data)
    .env("MOAT__RELOAD__POLL_SECS", "1")
    .stdout(Stdio::null())
    .stderr(Stdio::from(
        std::fs::File::create(data.with_extension("log")).unwrap(),
    ));
    for (k, v) in env {
        cmd.env(k, v);
    }
    let child = Proc(cmd.spawn().unwrap());
    let server = Server {
        child,
        base: format!("http://127.0.0.1:{port}"),
    };
    let t = Instant::now();
    while t.elapsed() < Duration::from_secs(30) {
        if curl(&server, &["-sf", "/healthz"]).0 == 0 {
            return server;
        }
        std::thread::sleep(Duration::from_millis(100));
    }
    panic!(
        "moat serve did not become healthy: {}",
        std::fs::read_to_string(data.with_extension("log")).unwrap_or_default()
    );
}

/// Run curl; paths starting with `/` are made absolute. Returns (exit, http code, body).
fn curl(s: &Server, args: &[&str]) -> (i32, String) {
    let args: Vec<String> = args
        .iter()
        .map(|a| {
            if a.starts_with('/') {
                format!("{}{a}", s.base)
            } else {
                a.to_string()
            }
        })
        .collect();
    let out = Command::new("curl").args(&args).output().unwrap();
    (
        out.status.code().unwrap_or(-1),
        String::from_utf8_lossy(&out.stdout).into_owned(),
    )
}

/// (status code, JSON body)
fn req(s: &Server, args: &[&str]) -> (u16, serde_json::Value) {
    let mut a = vec!["-s", "-o", "-", "-w", "\n%{http_code}"];
    a.extend_from_slice(args);
    let (_, out) = curl(s, &a);
    let (body, code) = out.rsplit_once('\n').unwrap();
    (
        code.parse().unwrap(),
        serde_json::from_str(body).unwrap_or(serde_json::Value::String(body.to_string())),
    )
}

#[test]
fn scan_api_records_caches_and_pages() {
    let dir = tempfile::tempdir().unwrap();
    let s = start(
        &dir.path().join("data"),
        &[("MOAT_MAX_BODY_SIZE", "1000000")],
    );
    let eicar = dir.path().join("eicar.com");
    std::fs::write(&eicar, EICAR).unwrap();
    let clean = dir.path().join("hello.txt");
    std::fs::write(&clean, b"hello world\n").unwrap();

    // Raw body.
    let (code, v) = req(
        &s,
        &[
            "--data-binary",
            &format!("@{}", eicar.display()),
            "/v1/scan?name=eicar.com",
        ],
    );
    assert_eq!(code, 200);
    assert_eq!(v["status"], "infected");
    assert_eq!(v["action"], "block");
    assert_eq!(v["findings"][0]["signature"], "Eicar-Test-Signature");
    assert_eq!(v["cached"], false);
    let first_id = v["id"].as_str().unwrap().to_string();
    // Same content again: answered from the verdict cache, still recorded.
    let (_, v2) = req(
        &s,
        &[
            "--data-binary",
            &format!("@{}", eicar.display()),
            "/v1/scan",
        ],
    );
    assert_eq!(v2["status"], "infected");
    assert_eq!(v2["cached"], true);
    assert_ne!(v2["id"], v["id"]);

    // Multipart with two files and a plain field.
    let (code, v) = req(
        &s,
        &[
            "-F",
            "note=not a file",
            "-F",
            &format!("a=@{}", clean.display()),
            "-F",
            &format!("b=@{}", eicar.display()),
            "/v1/scan",
        ],
    );
    assert_eq!(code, 200);
    let files = v["files"].as_array().unwrap();
    assert_eq!(files.len(), 2);
    assert_eq!(files[0]["name"], "hello.txt");
    assert_eq!(files[0]["status"], "clean");
    assert_eq!(files[0]["action"], "allow");
    assert_eq!(files[1]["name"], "eicar.com");
    assert_eq!(files[1]["status"], "infected");

    // Body over the limit: 413, nothing recorded for it.
    let big = dir.path().join("big.bin");
    std::fs::write(&big, vec![b'a'; 1_500_000]).unwrap();
    let (code, v) = req(
        &s,
        &["--data-binary", &format!("@{}", big.display()), "/v1/scan"],
    );
    assert_eq!(code, 413, "{v}");
    let (code, _) = req(
        &s,
        &[
            "-H",
            "Transfer-Encoding: chunked",
            "--data-binary",
            &format!("@{}", big.display()),
            "/v1/scan",
        ],
    );
    assert_eq!(code, 413);
    // Malformed multipart: 400.
    let (code, _) = req(
        &s,
        &[
            "-H",
            "Content-Type: multipart/form-data; boundary=xyz",
            "--data-binary",
            "--xyz\r\nbroken",
            "/v1/scan",
        ],
    );
    assert_eq!(code, 400);

    // Records: newest first, paginated; one by id.
    let (code, v) = req(&s, &["/v1/scans?limit=2"]);
    assert_eq!(code, 200);
    let scans = v["scans"].as_array().unwrap();
    assert_eq!(scans.len(), 2);
    assert_eq!(scans[0]["name"], "eicar.com");
    assert_eq!(scans[1]["name"], "hello.txt");
    let cursor = v["next_cursor"].as_str().unwrap();
    let (_, v) = req(&s, &[&format!("/v1/scans?limit=10&cursor={cursor}")]);
    assert_eq!(v["scans"].as_array().unwrap().len(), 2);
    assert_eq!(v["next_cursor"], serde_json::Value::Null);
    let (code, v) = req(&s, &[&format!("/v1/scans/{first_id}")]);
    assert_eq!(code, 200);
    assert_eq!(v["id"], first_id.as_str());
    assert_eq!(req(&s, &["/v1/scans/nope"]).0, 404);

    // Engines, readiness, metrics.
    let (_, v) = req(&s, &["/v1/engines"]);
    assert_eq!(v["engines"][0]["kind"], "builtin");
    assert_eq!(v["engines"][0]["signatures"]["eicar"], 1);
    assert_eq!(req(&s, &["/readyz"]).0, 200);
    let (_, text) = curl(&s, &["-s", "/metrics"]);
    assert!(text.contains("moat_scans_total{"), "{text}");
    assert!(text.contains("moat_verdict_cache_hits_total"), "{text}");
    assert!(text.contains("moat_scan_duration_seconds_bucket"), "{text}");
}

#[test]
fn tokens_are_required_when_configured_and_for_public_listeners() {
    let dir = tempfile::tempdir().unwrap();
    let s = start(&dir.path().join("data"), &[("MOAT_AUTH_TOKENS", "s3cret")]);
    assert_eq!(req(&s, &["/v1/scans"]).0, 401);
    assert_eq!(
        req(&s, &["-H", "Authorization: Bearer wrong", "/v1/scans"]).0,
        401
    );
    assert_eq!(
        req(&s, &["-H", "Authorization: Bearer s3cret", "/v1/scans"]).0,
        200
    );
    assert_eq!(req(&s, &["/healthz"]).0, 200);

    let out = moat()
        .args(["serve", "--listen", "0.0.0.0:0", "--data-dir"])
        .arg(dir.path().join("d2"))
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&out.stderr).contains("requires auth.tokens"));
}

#[test]
fn hot_reload_swaps_new_signatures_and_keeps_the_old_set_on_failure() {
    let dir = tempfile::tempdir().unwrap();
    let sigs = dir.path().join("sigs");
    std::fs::create_dir(&sigs).unwrap();
    std::fs::write(sigs.join("a.ndb"), "Moat.First:0:*:6669727374\n").unwrap(); // "first"
    let s = start(
        &dir.path().join("data"),
        &[("MOAT_SIGNATURES", sigs.to_str().unwrap())],
    );
    let scan = |body: &str| req(&s, &["--data-binary", body, "/v1/scan"]).1;
    assert_eq!(scan("xx first xx")["status"], "infected");
    assert_eq!(scan("xx second xx")["status"], "clean");
    let fp0 = req(&s, &["/v1/engines"]).1["fingerprint"].clone();

    // A new signature file is picked up by the poller.
    std::fs::write(sigs.join("b.ndb"), "Moat.Second:0:*:7365636f6e64\n").unwrap(); // "second"
    let t = Instant::now();
    while scan("xx second xx")["status"] != "infected" {
        assert!(
            t.elapsed() < Duration::from_secs(20),
            "reload not picked up"
        );
        std::thread::sleep(Duration::from_millis(200));
    }
    let fp1 = req(&s, &["/v1/engines"]).1["fingerprint"].clone();
    assert_ne!(fp0, fp1, "the fingerprint changes with the signature set");

    // The directory disappears: the reload fails, the old set keeps scanning.
    std::fs::rename(&sigs, dir.path().join("moved")).unwrap();
    let t = Instant::now();
    loop {
        let v = req(&s, &["/v1/engines"]).1;
        if !v["last_reload_error"].is_null() {
            assert!(
                v["last_reload_error"].as_str().unwrap().contains("sigs"),
                "{v}"
            );
            break;
        }
        assert!(
            t.elapsed() < Duration::from_secs(20),
            "failed reload not reported"
        );
        std::thread::sleep(Duration::from_millis(200));
    }
    assert_eq!(scan("xx second xx")["status"], "infected");

    // SIGHUP forces a reload: with the directory back, the error clears.
    std::fs::rename(dir.path().join("moved"), &sigs).unwrap();
    sighup(&s.child.0);
    let t = Instant::now();
    while !req(&s, &["/v1/engines"]).1["last_reload_error"].is_null() {
        assert!(
            t.elapsed() < Duration::from_secs(20),
            "SIGHUP reload did not succeed"
        );
        std::thread::sleep(Duration::from_millis(200));
    }
}

#[test]
fn an_unreachable_engine_makes_readyz_fail_and_scans_error_never_clean() {
    let dir = tempfile::tempdir().unwrap();
    let closed = free_port();
    let s = start(
        &dir.path().join("data"),
        &[("MOAT_CLAMD", &format!("127.0.0.1:{closed}"))],
    );
    let (code, v) = req(&s, &["/readyz"]);
    assert_eq!(code, 503, "{v}");
    assert_eq!(v["ready"], false);
    assert_ne!(v["engines"]["clamd"], "ok");
    let (code, v) = req(&s, &["--data-binary", "harmless text", "/v1/scan"]);
    assert_eq!(code, 200);
    assert_eq!(v["status"], "error", "{v}");
    assert_eq!(v["action"], "block");
    // Errors are not cached: the next attempt scans again.
    let (_, v) = req(&s, &["--data-binary", "harmless text", "/v1/scan"]);
    assert_eq!(v["cached"], false);
}
