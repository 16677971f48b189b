//! `moat proxy` end to end: the real binary between curl / boto3 / raw
//! sockets and real upstream HTTP servers (`proxy_upstream.py`, moto) on
//! 127.0.0.1. The upstreams log the SHA-256 of every body they receive.

mod common;
use common::*;
use sha2::{Digest, Sha256};
use std::io::{Read, Write};
use std::net::TcpStream;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

struct Proc(Child);

impl Drop for Proc {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

struct Upstream {
    proc: Option<Proc>,
    port: u16,
    log: PathBuf,
    name: String,
}

impl Upstream {
    fn start(dir: &Path, name: &str) -> Upstream {
        let mut u = Upstream {
            proc: None,
            port: free_port(),
            log: dir.join(format!("{name}.bodies")),
            name: name.to_string(),
        };
        u.restart();
        u
    }

    fn restart(&mut self) {
        let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/proxy_upstream.py");
        let child = Command::new("python3")
            .arg(script)
            .arg(self.port.to_string())
            .arg(&self.log)
            .arg(&self.name)
            .stdout(Stdio::null())
            .spawn()
            .unwrap();
        self.proc = Some(Proc(child));
        wait_for(&format!("upstream {}", self.name), || {
            http_code(&[&format!("{}/health", self.url())]) == "200"
        });
    }

    fn kill(&mut self) {
        self.proc = None;
    }

    fn url(&self) -> String {
        format!("http://127.0.0.1:{}", self.port)
    }

    /// "METHOD PATH SHA256 LEN" lines.
    fn bodies(&self) -> Vec<String> {
        std::fs::read_to_string(&self.log)
            .unwrap_or_default()
            .lines()
            .map(str::to_string)
            .collect()
    }
}

struct Moat {
    proc: Proc,
    port: u16,
    admin: u16,
    log: PathBuf,
}

impl Moat {
    /// `moat proxy` with `args` (quick start flags or --config), an admin listener and a data dir.
    fn start(dir: &Path, args: &[&str], env: &[(&str, &str)], port: u16) -> Moat {
        let admin = free_port();
        let log = dir.join(format!("moat-{port}.log"));
        let mut cmd = moat();
        cmd.arg("proxy")
            .args(args)
            .args(["--admin", &format!("127.0.0.1:{admin}"), "--data-dir"])
            .arg(dir.join("data"))
            .env("MOAT_LOG_FORMAT", "json")
            .stdout(Stdio::null())
            .stderr(Stdio::from(std::fs::File::create(&log).unwrap()));
        for (k, v) in env {
            cmd.env(k, v);
        }
        let m = Moat {
            proc: Proc(cmd.spawn().unwrap()),
            port,
            admin,
            log,
        };
        wait_for("moat proxy", || {
            http_code(&[&format!("http://127.0.0.1:{admin}/healthz")]) == "200"
        });
        m
    }

    fn quick(dir: &Path, upstreams: &[&Upstream], env: &[(&str, &str)]) -> Moat {
        let port = free_port();
        let listen = format!("127.0.0.1:{port}");
        let mut args = vec!["--listen".to_string(), listen];
        for u in upstreams {
            args.push("--upstream".into());
            args.push(u.url());
        }
        let a: Vec<&str> = args.iter().map(String::as_str).collect();
        Moat::start(dir, &a, env, port)
    }

    fn url(&self, path: &str) -> String {
        format!("http://127.0.0.1:{}{path}", self.port)
    }

    fn status(&self) -> serde_json::Value {
        let out = Command::new("curl")
            .args(["-sf", &format!("http://127.0.0.1:{}/status", self.admin)])
            .output()
            .unwrap();
        serde_json::from_slice(&out.stdout).unwrap_or_default()
    }

    fn metrics(&self) -> String {
        let out = Command::new("curl")
            .args(["-sf", &format!("http://127.0.0.1:{}/metrics", self.admin)])
            .output()
            .unwrap();
        String::from_utf8_lossy(&out.stdout).into_owned()
    }

    fn vm_hwm_kib(&self) -> u64 {
        let s = std::fs::read_to_string(format!("/proc/{}/status", self.proc.0.id())).unwrap();
        s.lines()
            .find(|l| l.starts_with("VmHWM:"))
            .and_then(|l| l.split_whitespace().nth(1))
            .and_then(|n| n.parse().ok())
            .unwrap()
    }

    fn log(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }

    fn still_serves(&self) {
        assert_eq!(
            http_code(&[&self.url("/still-alive")]),
            "200",
            "proxy stopped serving: {}",
            self.log()
        );
    }
}

fn wait_for(what: &str, mut f: impl FnMut() -> bool) {
    let t = Instant::now();
    while t.elapsed() < Duration::from_secs(60) {
        if f() {
            return;
        }
        std::thread::sleep(Duration::from_millis(100));
    }
    panic!("{what} did not become ready");
}

/// curl returning just the HTTP status code.
fn http_code(args: &[&str]) -> String {
    let out = Command::new("curl")
        .args([
            "-s",
            "-o",
            "/dev/null",
            "-w",
            "%{http_code}",
            "--max-time",
            "60",
        ])
        .args(args)
        .output()
        .unwrap();
    String::from_utf8_lossy(&out.stdout).into_owned()
}

/// curl returning (status code, body).
fn curl(args: &[&str]) -> (String, String) {
    let out = Command::new("curl")
        .args(["-s", "-o", "-", "-w", "\n%{http_code}", "--max-time", "120"])
        .args(args)
        .output()
        .unwrap();
    let s = String::from_utf8_lossy(&out.stdout).into_owned();
    let (body, code) = s.rsplit_once('\n').unwrap_or(("", ""));
    (code.to_string(), body.to_string())
}

/// Read until the peer closes, an error or 1 MiB.
fn read_until_closed(s: &mut TcpStream) -> Vec<u8> {
    let mut out = Vec::new();
    let mut buf = [0u8; 4096];
    while out.len() < 1 << 20 {
        match s.read(&mut buf) {
            Ok(0) | Err(_) => break,
            Ok(n) => out.extend_from_slice(&buf[..n]),
        }
    }
    out
}

fn sha_hex(b: &[u8]) -> String {
    hex::encode(Sha256::digest(b))
}

fn pseudo_random(n: usize, seed: u32) -> Vec<u8> {
    let mut x = seed.wrapping_mul(2654435761).max(1);
    (0..n)
        .map(|_| {
            x ^= x << 13;
            x ^= x >> 17;
            x ^= x << 5;
            x as u8
        })
        .collect()
}

/// A multipart/form-data body with one text field and the given files.
fn multipart(boundary: &str, files: &[(&str, &[u8])]) -> Vec<u8> {
    let mut b = Vec::new();
    b.extend_from_slice(
        format!(
            "--{boundary}\r\nContent-Disposition: form-data; name=\"comment\"\r\n\r\nhello\r\n"
        )
        .as_bytes(),
    );
    for (i, (name, data)) in files.iter().enumerate() {
        b.extend_from_slice(
            format!("--{boundary}\r\nContent-Disposition: form-data; name=\"file{i}\"; filename=\"{name}\"\r\nContent-Type: application/octet-stream\r\n\r\n").as_bytes(),
        );
        b.extend_from_slice(data);
        b.extend_from_slice(b"\r\n");
    }
    b.extend_from_slice(format!("--{boundary}--\r\n").as_bytes());
    b
}

#[test]
fn uploads_are_scanned_blocked_or_forwarded_byte_exact() {
    let dir = tempfile::tempdir().unwrap();
    let ups = [
        Upstream::start(dir.path(), "a"),
        Upstream::start(dir.path(), "b"),
    ];
    let m = Moat::quick(dir.path(), &[&ups[0], &ups[1]], &[]);
    let seen = || ups.iter().map(|u| u.bodies()).collect::<Vec<_>>().concat();

    // Multipart EICAR from curl -F: 403 JSON naming the file and the signature; nothing forwarded.
    let eicar = dir.path().join("eicar.com.txt");
    std::fs::write(&eicar, EICAR).unwrap();
    let clean_txt = dir.path().join("notes.txt");
    std::fs::write(&clean_txt, b"nothing to see").unwrap();
    let (code, body) = curl(&[
        "-F",
        &format!("doc=@{}", clean_txt.display()),
        "-F",
        &format!("file=@{}", eicar.display()),
        &m.url("/upload"),
    ]);
    assert_eq!(code, "403", "{body}");
    let j: serde_json::Value = serde_json::from_str(&body).unwrap();
    assert_eq!(j["status"], "infected");
    assert_eq!(j["file"], "eicar.com.txt");
    assert!(
        j["signatures"][0]
            .as_str()
            .unwrap()
            .to_lowercase()
            .contains("eicar"),
        "{j}"
    );
    assert_eq!(
        j["files"].as_array().unwrap().len(),
        2,
        "every file part is scanned: {j}"
    );
    // A browser gets a short HTML page naming file and signature.
    let (code, html) = curl(&[
        "-H",
        "Accept: text/html,*/*;q=0.8",
        "-F",
        &format!("file=@{}", eicar.display()),
        &m.url("/upload"),
    ]);
    assert_eq!(code, "403");
    assert!(
        html.contains("<html") && html.contains("eicar.com.txt") && html.contains("Eicar"),
        "{html}"
    );
    // Raw EICAR body: 403 too.
    let (code, _) = curl(&[
        "-X",
        "PUT",
        "--data-binary",
        &format!("@{}", eicar.display()),
        &m.url("/objects/x.bin"),
    ]);
    assert_eq!(code, "403");
    assert!(
        seen().is_empty(),
        "an upstream received a blocked body: {:?}",
        seen()
    );

    // Clean multipart with 3 files (one spills to disk): 200, upstream got exactly the client's bytes.
    let big = pseudo_random(3 << 20, 7);
    let small = pseudo_random(1000, 8);
    let body = multipart(
        "moatBOUNDARY42",
        &[
            ("a.bin", &big),
            ("b.txt", b"hello world"),
            ("c.dat", &small),
        ],
    );
    let body_file = dir.path().join("multipart.body");
    std::fs::write(&body_file, &body).unwrap();
    let (code, resp) = curl(&[
        "-H",
        "Content-Type: multipart/form-data; boundary=moatBOUNDARY42",
        "--data-binary",
        &format!("@{}", body_file.display()),
        &m.url("/upload?x=1"),
    ]);
    assert_eq!(code, "200", "{resp}");
    let j: serde_json::Value = serde_json::from_str(&resp).unwrap();
    assert_eq!(j["sha256"], sha_hex(&body));
    assert!(
        seen()
            .iter()
            .any(|l| l == &format!("POST /upload?x=1 {} {}", sha_hex(&body), body.len())),
        "{:?}",
        seen()
    );
    // curl -F with 3 clean files, chunked transfer encoding from the client, and HTTP/2 prior knowledge.
    let (code, _) = curl(&[
        "-F",
        &format!("a=@{}", clean_txt.display()),
        "-F",
        &format!("b=@{}", body_file.display()),
        "-F",
        &format!("c=@{}", clean_txt.display()),
        &m.url("/upload"),
    ]);
    assert_eq!(code, "200");
    let raw = pseudo_random(200_000, 9);
    let raw_file = dir.path().join("raw.bin");
    std::fs::write(&raw_file, &raw).unwrap();
    let (code, resp) = curl(&[
        "-T",
        &raw_file.display().to_string(),
        "-H",
        "Transfer-Encoding: chunked",
        &m.url("/objects/raw.bin"),
    ]);
    assert_eq!(code, "200", "{resp}");
    assert!(resp.contains(&sha_hex(&raw)), "{resp}");
    let (code, resp) = curl(&[
        "--http2-prior-knowledge",
        "--data-binary",
        &format!("@{}", raw_file.display()),
        &m.url("/h2"),
    ]);
    assert_eq!(code, "200", "{resp}");
    assert!(resp.contains(&sha_hex(&raw)), "{resp}");
    let (code, _) = curl(&[
        "--http2-prior-knowledge",
        "--data-binary",
        &format!("@{}", eicar.display()),
        &m.url("/h2"),
    ]);
    assert_eq!(code, "403");

    // Forwarded headers, Host preserved, hop-by-hop removed.
    let (code, resp) = curl(&[
        "-H",
        "Host: files.example:8443",
        "-H",
        "X-Forwarded-For: 198.51.100.9",
        "-H",
        "Connection: keep-alive, X-Drop-Me",
        "-H",
        "X-Drop-Me: 1",
        &m.url("/echo"),
    ]);
    assert_eq!(code, "200");
    let j: serde_json::Value = serde_json::from_str(&resp).unwrap();
    let h = &j["headers"];
    assert_eq!(h["host"], "files.example:8443");
    assert_eq!(h["x-forwarded-for"], "198.51.100.9, 127.0.0.1");
    assert_eq!(h["x-real-ip"], "127.0.0.1");
    assert_eq!(h["x-forwarded-proto"], "http");
    assert_eq!(h["x-forwarded-host"], "files.example:8443");
    assert!(h.get("x-drop-me").is_none(), "{h}");
    // Round-robin: both upstreams answered.
    let servers: std::collections::BTreeSet<String> = (0..4)
        .map(|_| {
            serde_json::from_str::<serde_json::Value>(&curl(&[&m.url("/rr")]).1).unwrap()["server"]
                .as_str()
                .unwrap()
                .to_string()
        })
        .collect();
    assert_eq!(servers.len(), 2, "{servers:?}");

    // Every scanned body is recorded and counted; the access log is JSON.
    let metrics = m.metrics();
    assert!(
        metrics.contains("moat_proxy_scanned_bodies_total{status=\"infected\"}"),
        "{metrics}"
    );
    assert!(
        metrics
            .lines()
            .any(|l| l.starts_with("moat_scans_total{") && l.contains("source=\"proxy\"")),
        "{metrics}"
    );
    assert!(
        metrics.contains("moat_proxy_request_duration_seconds_bucket"),
        "{metrics}"
    );
    assert!(metrics.contains("moat_proxy_upstream_up"), "{metrics}");
    let log = m.log();
    let access: Vec<serde_json::Value> = log
        .lines()
        .filter_map(|l| serde_json::from_str::<serde_json::Value>(l).ok())
        .filter(|v| v["target"] == "moat::access")
        .collect();
    assert!(
        access
            .iter()
            .any(|v| v["status"] == 403 && v["note"] == "blocked"),
        "{log}"
    );
    assert!(
        access
            .iter()
            .any(|v| v["status"] == 200 && v["path"] == "/upload"),
        "{log}"
    );
}

#[test]
fn bad_input_gets_clear_errors_and_the_proxy_keeps_serving() {
    let dir = tempfile::tempdir().unwrap();
    let up = Upstream::start(dir.path(), "a");
    let m = Moat::quick(
        dir.path(),
        &[&up],
        &[
            ("MOAT__PROXY__MAX_BODY_SIZE", "100000"),
            ("MOAT__PROXY__CLIENT_TIMEOUT_SECS", "2"),
            // The listeners on the main runtime (no worker threads).
            ("MOAT__PROXY__WORKERS", "0"),
        ],
    );
    // Malformed multipart: the closing boundary never comes.
    let (code, body) = curl(&[
        "-H",
        "Content-Type: multipart/form-data; boundary=XX",
        "--data-binary",
        "--XX\r\nContent-Disposition: form-data; name=\"f\"; filename=\"a\"\r\n\r\nabc",
        &m.url("/upload"),
    ]);
    assert_eq!(code, "400", "{body}");
    assert!(body.contains("multipart"), "{body}");
    let (code, _) = curl(&[
        "-H",
        "Content-Type: multipart/form-data",
        "--data-binary",
        "x",
        &m.url("/upload"),
    ]);
    assert_eq!(code, "400", "multipart without a boundary");
    m.still_serves();
    // Too large: declared, and chunked without a length (counted while spooling).
    let big = dir.path().join("big.bin");
    std::fs::write(&big, vec![b'a'; 200_000]).unwrap();
    let (code, _) = curl(&[
        "--data-binary",
        &format!("@{}", big.display()),
        &m.url("/up"),
    ]);
    assert_eq!(code, "413");
    let (code, _) = curl(&[
        "-H",
        "Transfer-Encoding: chunked",
        "--data-binary",
        &format!("@{}", big.display()),
        &m.url("/up"),
    ]);
    assert_eq!(code, "413");
    m.still_serves();
    // Headers too large.
    let huge = format!("X-Huge: {}", "h".repeat(100_000));
    assert_eq!(http_code(&["-H", &huge, &m.url("/")]), "431");
    m.still_serves();
    // A slow client: the head arrives, the body stalls -> 408 after the client timeout.
    let mut s = TcpStream::connect(("127.0.0.1", m.port)).unwrap();
    s.set_read_timeout(Some(Duration::from_secs(20))).unwrap();
    s.write_all(b"POST /slow HTTP/1.1\r\nHost: x\r\nContent-Length: 1000\r\n\r\nonly a little")
        .unwrap();
    let t = Instant::now();
    let resp = read_until_closed(&mut s);
    let resp = String::from_utf8_lossy(&resp);
    assert!(resp.starts_with("HTTP/1.1 408"), "{resp}");
    assert!(t.elapsed() < Duration::from_secs(15));
    // A client that never finishes its head is disconnected.
    let mut s = TcpStream::connect(("127.0.0.1", m.port)).unwrap();
    s.set_read_timeout(Some(Duration::from_secs(20))).unwrap();
    s.write_all(b"GET / HTTP/1.1\r\nHost: x\r\n").unwrap();
    let t = Instant::now();
    let _ = read_until_closed(&mut s);
    assert!(
        t.elapsed() < Duration::from_secs(15),
        "slow head not timed out"
    );
    m.still_serves();
    assert!(up.bodies().is_empty(), "{:?}", up.bodies());
}

#[test]
fn a_one_gib_streamed_upload_passes_with_bounded_memory() {
    let dir = tempfile::tempdir().unwrap();
    let up = Upstream::start(dir.path(), "a");
    let m = Moat::quick(
        dir.path(),
        &[&up],
        &[("MOAT__PROXY__MAX_BODY_SIZE", "2147483648")],
    );
    const N: u64 = 1 << 30;
    let t = Instant::now();
    let out = Command::new("bash")
        .arg("-c")
        .arg(format!(
            "head -c {N} /dev/urandom | tee >(sha256sum > {d}/sent.sha) | curl -s -o {d}/resp.json -w '%{{http_code}}' -T - -H 'Content-Type: application/octet-stream' --max-time 600 {url}",
            d = dir.path().display(),
            url = m.url("/objects/big.bin")
        ))
        .output()
        .unwrap();
    let code = String::from_utf8_lossy(&out.stdout).into_owned();
    let hwm = m.vm_hwm_kib();
    println!(
        "1 GiB upload through moat proxy: {:?}, proxy VmHWM {} MiB",
        t.elapsed(),
        hwm / 1024
    );
    assert_eq!(code, "200", "{}", m.log());
    let sha_file = dir.path().join("sent.sha");
    wait_for("sha256sum", || {
        std::fs::read_to_string(&sha_file).is_ok_and(|s| s.len() >= 64)
    });
    let sent = std::fs::read_to_string(&sha_file).unwrap();
    let sent = sent.split_whitespace().next().unwrap();
    assert_eq!(
        up.bodies(),
        vec![format!("PUT /objects/big.bin {sent} {N}")]
    );
    assert!(hwm < 200 * 1024, "proxy RSS peaked at {} MiB", hwm / 1024);
    // No spilled body is left behind.
    let left: Vec<_> = std::fs::read_dir(dir.path().join("data/tmp"))
        .unwrap()
        .collect();
    assert!(left.is_empty(), "{left:?}");
}

#[test]
fn failover_passive_marking_and_active_recovery() {
    let dir = tempfile::tempdir().unwrap();
    let mut a = Upstream::start(dir.path(), "a");
    let b = Upstream::start(dir.path(), "b");
    let port = free_port();
    let cfg = dir.path().join("moat.toml");
    std::fs::write(
        &cfg,
        format!(
            r#"
[proxy]
connect_timeout_secs = 2
read_timeout_secs = 10
# More workers than CPUs: passive marks and health are shared by all of them.
workers = 3
[[proxy.listeners]]
listen = "127.0.0.1:{port}"
[proxy.pools.app]
balance = "least_conn"
max_fails = 1
fail_timeout_secs = 300
servers = [{{ url = "{a}" }}, {{ url = "{b}" }}]
[proxy.pools.app.health]
path = "/health"
interval_secs = 1
timeout_secs = 1
[[proxy.routes]]
pool = "app"
[[proxy.routes]]
path_prefix = "/download/"
pool = "app"
scan_responses = true
"#,
            a = a.url(),
            b = b.url()
        ),
    )
    .unwrap();
    let m = Moat::start(dir.path(), &["--config", cfg.to_str().unwrap()], &[], port);
    let server_up = |m: &Moat, i: usize| m.status()["pools"][0]["servers"][i]["up"].as_bool();

    // Response scanning on the download route.
    assert_eq!(http_code(&[&m.url("/download/eicar")]), "403");
    assert_eq!(http_code(&[&m.url("/download/clean")]), "200");

    // A steady stream of GETs and buffered POSTs from two clients.
    let stop = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
    let url = m.url("/steady");
    let workers: Vec<_> = (0..2)
        .map(|w| {
            let (stop, url) = (stop.clone(), url.clone());
            std::thread::spawn(move || {
                let (mut ok, mut failed) = (0u32, Vec::new());
                let mut i = 0u32;
                while !stop.load(std::sync::atomic::Ordering::Relaxed) {
                    i += 1;
                    let code = if (i + w).is_multiple_of(2) {
                        http_code(&[&url])
                    } else {
                        http_code(&["--data-binary", &format!("body {w} {i}"), &url])
                    };
                    if code == "200" {
                        ok += 1
                    } else {
                        failed.push(code)
                    }
                }
                (ok, failed)
            })
        })
        .collect();
    std::thread::sleep(Duration::from_secs(2));
    let a_before = a.bodies().len();
    assert!(a_before > 0, "a took no traffic before the kill");
    a.kill();
    wait_for("a marked down", || server_up(&m, 0) == Some(false));
    std::thread::sleep(Duration::from_secs(2));
    let st = m.status();
    assert_eq!(
        st["pools"][0]["servers"][0]["active_check_up"], false,
        "{st}"
    );
    assert_eq!(st["pools"][0]["servers"][1]["up"], true, "{st}");
    // Back on the same port: the active check brings it back (the passive ban would last 300 s).
    a.restart();
    wait_for("a recovered", || server_up(&m, 0) == Some(true));
    let a_back = a.bodies().len();
    std::thread::sleep(Duration::from_secs(2));
    stop.store(true, std::sync::atomic::Ordering::Relaxed);
    let mut total = 0;
    for w in workers {
        let (ok, failed) = w.join().unwrap();
        assert!(
            failed.is_empty(),
            "failed requests during failover: {failed:?}\n{}",
            m.log()
        );
        total += ok;
    }
    println!("failover: {total} requests, none failed");
    assert!(
        a.bodies().len() > a_back,
        "a took no traffic after recovering"
    );
    let log = m.log();
    assert!(
        log.contains("upstream marked down (passive)")
            || log.contains("active health check failing"),
        "{log}"
    );
    assert!(log.contains("active health check passing"), "{log}");
    assert!(
        m.metrics().contains("moat_proxy_upstream_up{pool=\"app\""),
        "metrics"
    );
}

#[test]
fn tls_termination_http2_sighup_reload_and_websocket() {
    let dir = tempfile::tempdir().unwrap();
    let up = Upstream::start(dir.path(), "a");
    let mkcert = |name: &str, cn: &str| gen_cert(dir.path(), name, cn);
    mkcert("one", "moat-one");
    mkcert("two", "moat-two");
    let (cert, key) = (dir.path().join("tls.crt"), dir.path().join("tls.key"));
    std::fs::copy(dir.path().join("one.crt"), &cert).unwrap();
    std::fs::copy(dir.path().join("one.key"), &key).unwrap();
    let port = free_port();
    let listen = format!("127.0.0.1:{port}");
    let m = Moat::start(
        dir.path(),
        &[
            "--listen",
            &listen,
            "--upstream",
            &up.url(),
            "--tls-cert",
            cert.to_str().unwrap(),
            "--tls-key",
            key.to_str().unwrap(),
        ],
        &[],
        port,
    );
    let https = format!("https://localhost:{port}");
    let ca1 = dir.path().join("one.crt");
    let resolve = format!("localhost:{port}:127.0.0.1");
    let tls = |ca: &Path, extra: &[&str], path: &str| -> (String, String) {
        let out = Command::new("curl")
            .args([
                "-s",
                "-o",
                "/dev/null",
                "-w",
                "%{http_code} %{http_version}",
                "--max-time",
                "30",
            ])
            .args(["--resolve", &resolve, "--cacert", ca.to_str().unwrap()])
            .args(extra)
            .arg(format!("{https}{path}"))
            .output()
            .unwrap();
        let s = String::from_utf8_lossy(&out.stdout).into_owned();
        let (code, ver) = s.split_once(' ').unwrap_or(("", ""));
        (code.to_string(), ver.to_string())
    };
    assert_eq!(tls(&ca1, &["--http2"], "/"), ("200".into(), "2".into()));
    assert_eq!(
        tls(&ca1, &["--http1.1", "--tlsv1.2", "--tls-max", "1.2"], "/"),
        ("200".into(), "1.1".into())
    );
    assert_eq!(tls(&ca1, &["--tlsv1.3"], "/"), ("200".into(), "2".into()));
    let eicar = dir.path().join("eicar.txt");
    std::fs::write(&eicar, EICAR).unwrap();
    let form = format!("f=@{}", eicar.display());
    assert_eq!(tls(&ca1, &["--http2", "-F", &form], "/upload").0, "403");
    // X-Forwarded-Proto says https.
    let (code, body) = curl(&[
        "--resolve",
        &resolve,
        "--cacert",
        ca1.to_str().unwrap(),
        &format!("{https}/echo"),
    ]);
    assert_eq!(code, "200");
    assert!(body.contains("\"x-forwarded-proto\": \"https\""), "{body}");

    // SIGHUP reload: swap the files, signal, the new certificate is served.
    std::fs::copy(dir.path().join("two.crt"), &cert).unwrap();
    std::fs::copy(dir.path().join("two.key"), &key).unwrap();
    let ok = Command::new("kill")
        .args(["-HUP", &m.proc.0.id().to_string()])
        .status()
        .unwrap()
        .success();
    assert!(ok);
    let ca2 = dir.path().join("two.crt");
    wait_for("reloaded certificate", || tls(&ca2, &[], "/").0 == "200");
    assert_ne!(
        tls(&ca1, &[], "/").0,
        "200",
        "the old certificate is still served"
    );
    assert!(m.log().contains("TLS certificates reloaded"));

    // WebSocket through a plain listener: handshake, then bytes both ways.
    let plain = Moat::quick(dir.path(), &[&up], &[]);
    let mut s = TcpStream::connect(("127.0.0.1", plain.port)).unwrap();
    s.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
    s.write_all(b"GET /ws HTTP/1.1\r\nHost: x\r\nConnection: Upgrade\r\nUpgrade: websocket\r\nSec-WebSocket-Version: 13\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n\r\n").unwrap();
    let mut head = Vec::new();
    let mut byte = [0u8; 1];
    while !head.ends_with(b"\r\n\r\n") {
        assert_eq!(s.read(&mut byte).unwrap(), 1, "closed during handshake");
        head.push(byte[0]);
    }
    let head = String::from_utf8_lossy(&head);
    assert!(head.starts_with("HTTP/1.1 101"), "{head}");
    assert!(head.contains("s3pPLMBiTxaQ9kYGzzhZRbK+xOo="), "{head}");
    for msg in [&b"\x81\x05hello"[..], &b"second frame, longer"[..]] {
        s.write_all(msg).unwrap();
        let mut back = vec![0u8; msg.len()];
        s.read_exact(&mut back).unwrap();
        assert_eq!(back, msg);
    }
}

#[test]
fn aws_chunked_put_object_from_boto3_through_the_proxy_to_moto() {
    let python = std::env::var("MOAT_TEST_PYTHON").unwrap_or_else(|_| "python3".into());
    let dir = tempfile::tempdir().unwrap();
    let moto_server = moat_testkit::Moto::start();
    let moto = moto_server.endpoint().to_string();
    let port = free_port();
    let listen = format!("127.0.0.1:{port}");
    // botocore sends aws-chunked (STREAMING-UNSIGNED-PAYLOAD-TRAILER) only over HTTPS.
    gen_cert(dir.path(), "s3", "localhost");
    let (cert, key) = (dir.path().join("s3.crt"), dir.path().join("s3.key"));
    let m = Moat::start(
        dir.path(),
        &[
            "--listen",
            &listen,
            "--upstream",
            &moto,
            "--tls-cert",
            cert.to_str().unwrap(),
            "--tls-key",
            key.to_str().unwrap(),
        ],
        &[],
        port,
    );
    let script = r#"
import sys, boto3, botocore
from botocore.config import Config
proxy, moto, eicar, ca = sys.argv[1], sys.argv[2], sys.argv[3].encode(), sys.argv[4]
kw = dict(region_name="us-east-1", aws_access_key_id="test", aws_secret_access_key="test")
cfg = Config(s3={"addressing_style": "path", "payload_signing_enabled": False},
             request_checksum_calculation="when_supported")
s3 = boto3.client("s3", endpoint_url=proxy, config=cfg, verify=ca, **kw)
direct = boto3.client("s3", endpoint_url=moto, config=Config(s3={"addressing_style": "path"}), **kw)
seen = []
def note(request, **_):
    seen.append((request.headers.get("Content-Encoding"), request.headers.get("x-amz-content-sha256")))
s3.meta.events.register("before-send.s3.PutObject", note)
s3.create_bucket(Bucket="uploads")
try:
    s3.put_object(Bucket="uploads", Key="eicar.com", Body=eicar)
    print("EICAR ACCEPTED")
except botocore.exceptions.ClientError as e:
    print("eicar", e.response["ResponseMetadata"]["HTTPStatusCode"])
clean = bytes(range(256)) * 4096 + b"tail"
s3.put_object(Bucket="uploads", Key="dir/clean.bin", Body=clean)
got = direct.get_object(Bucket="uploads", Key="dir/clean.bin")["Body"].read()
print("clean", got == clean, len(got))
keys = [o["Key"] for o in direct.list_objects_v2(Bucket="uploads").get("Contents", [])]
print("keys", ",".join(keys))
print("encodings", seen)
"#;
    let out = Command::new(&python)
        .args(["-c", script, &format!("https://localhost:{port}"), &moto])
        .arg(std::str::from_utf8(EICAR).unwrap())
        .arg(&cert)
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    println!("{stdout}");
    assert!(
        out.status.success(),
        "{stdout}\n{}\n{}",
        String::from_utf8_lossy(&out.stderr),
        m.log()
    );
    assert!(stdout.contains("eicar 403"), "{stdout}");
    assert!(stdout.contains("clean True 1048580"), "{stdout}");
    assert!(stdout.contains("keys dir/clean.bin\n"), "{stdout}");
    assert!(
        stdout.contains("aws-chunked") || stdout.contains("STREAMING-"),
        "boto3 did not use aws-chunked: {stdout}"
    );
}

/// One HTTP/1.1 response read off a keep-alive connection: status, headers
/// (lower-cased names) and the body (chunked decoded; trailers dropped).
/// `head_only` for the answer to a HEAD.
fn read_response(
    s: &mut TcpStream,
    buf: &mut Vec<u8>,
    head_only: bool,
) -> (u16, Vec<(String, String)>, Vec<u8>) {
    fn fill(s: &mut TcpStream, buf: &mut Vec<u8>) {
        let mut chunk = [0u8; 65536];
        let n = s.read(&mut chunk).unwrap();
        assert!(n > 0, "connection closed mid-response");
        buf.extend_from_slice(&chunk[..n]);
    }
    fn line(s: &mut TcpStream, buf: &mut Vec<u8>) -> String {
        loop {
            if let Some(i) = buf.windows(2).position(|w| w == b"\r\n") {
                let l = String::from_utf8(buf[..i].to_vec()).unwrap();
                buf.drain(..i + 2);
                return l;
            }
            fill(s, buf);
        }
    }
    fn take(s: &mut TcpStream, buf: &mut Vec<u8>, n: usize) -> Vec<u8> {
        while buf.len() < n {
            fill(s, buf);
        }
        buf.drain(..n).collect()
    }
    let status_line = line(s, buf);
    let status: u16 = status_line.split(' ').nth(1).unwrap().parse().unwrap();
    let mut headers = Vec::new();
    loop {
        let l = line(s, buf);
        if l.is_empty() {
            break;
        }
        let (n, v) = l.split_once(':').unwrap();
        headers.push((n.trim().to_ascii_lowercase(), v.trim().to_string()));
    }
    let get = |n: &str| headers.iter().find(|(k, _)| k == n).map(|(_, v)| v.clone());
    let mut body = Vec::new();
    if head_only {
    } else if get("transfer-encoding").is_some_and(|t| t.contains("chunked")) {
        loop {
            let size = line(s, buf);
            let size = usize::from_str_radix(size.split(';').next().unwrap().trim(), 16).unwrap();
            if size == 0 {
                while !line(s, buf).is_empty() {}
                break;
            }
            body.extend(take(s, buf, size));
            assert_eq!(line(s, buf), "");
        }
    } else if let Some(n) = get("content-length") {
        body = take(s, buf, n.parse().unwrap());
    } else {
        body = std::mem::take(buf);
        body.extend(read_until_closed(s));
    }
    (status, headers, body)
}

/// What `proxy_upstream.py` sends for `/bytes/N`.
fn upstream_bytes(n: usize) -> Vec<u8> {
    let mut out = Vec::with_capacity(n + 32);
    let mut i = 0;
    while out.len() < n {
        out.extend_from_slice(&Sha256::digest(format!("{n}:{i}").as_bytes()));
        i += 1;
    }
    out.truncate(n);
    out
}

#[test]
fn pass_through_framings_keep_alive_pipelining_and_hand_off_to_the_full_path() {
    // The lean pass-through path (default) and hyper's full path must
    // behave the same.
    for fast in ["true", "false"] {
        pass_through(fast);
    }
}

fn pass_through(fast_path: &str) {
    let dir = tempfile::tempdir().unwrap();
    let up = Upstream::start(dir.path(), "a");
    let m = Moat::quick(dir.path(), &[&up], &[("MOAT__PROXY__FAST_PATH", fast_path)]);
    let mut s = TcpStream::connect(("127.0.0.1", m.port)).unwrap();
    s.set_read_timeout(Some(Duration::from_secs(20))).unwrap();
    let mut buf = Vec::new();
    let get = |path: &str, extra: &str| {
        format!("GET {path} HTTP/1.1\r\nHost: files.example\r\n{extra}\r\n").into_bytes()
    };

    // A chunked body (extensions, a trailer, a chunk larger than a read)
    // arrives whole, and the connection serves the next request after it.
    s.write_all(&get("/chunked", "")).unwrap();
    let (code, h, body) = read_response(&mut s, &mut buf, false);
    assert_eq!(code, 200);
    assert!(
        h.iter()
            .any(|(n, v)| n == "transfer-encoding" && v == "chunked")
    );
    let mut want = b"first chunk\nsecond;\r\n".to_vec();
    want.extend(std::iter::repeat_n(b'x', 70000));
    assert_eq!(body, want);

    // Headers: hop-by-hop and Connection-named ones gone, X-Forwarded-For
    // appended, the others set; Host kept.
    s.write_all(&get(
        "/echo?q=1",
        "X-Forwarded-For: 10.0.0.1\r\nConnection: keep-alive, x-secret\r\nX-Secret: 1\r\nX-Real-IP: 6.6.6.6\r\nKeep-Alive: timeout=5\r\nX-Kept: yes\r\n",
    ))
    .unwrap();
    let (code, _, body) = read_response(&mut s, &mut buf, false);
    assert_eq!(code, 200);
    let j: serde_json::Value = serde_json::from_slice(&body).unwrap();
    let eh = &j["headers"];
    assert_eq!(j["path"], "/echo?q=1");
    assert_eq!(eh["host"], "files.example");
    assert_eq!(eh["x-forwarded-for"], "10.0.0.1, 127.0.0.1");
    assert_eq!(eh["x-real-ip"], "127.0.0.1");
    assert_eq!(eh["x-forwarded-proto"], "http");
    assert_eq!(eh["x-forwarded-host"], "files.example");
    assert_eq!(eh["x-kept"], "yes");
    for gone in ["x-secret", "keep-alive"] {
        assert!(eh.get(gone).is_none(), "{gone} forwarded: {eh}");
    }

    // A body of several reads, byte for byte.
    let n = 3_000_000;
    s.write_all(&get(&format!("/bytes/{n}"), "")).unwrap();
    let (code, _, body) = read_response(&mut s, &mut buf, false);
    assert_eq!(code, 200);
    assert_eq!(sha_hex(&body), sha_hex(&upstream_bytes(n)));

    // HEAD: the length header, no body; then two pipelined requests in one
    // write, answered in order.
    s.write_all(b"HEAD /bytes/10 HTTP/1.1\r\nHost: files.example\r\n\r\n")
        .unwrap();
    let (code, h, body) = read_response(&mut s, &mut buf, true);
    assert_eq!(code, 200);
    assert!(h.iter().any(|(n, v)| n == "content-length" && v == "10"));
    assert!(body.is_empty());
    s.write_all(&[get("/bytes/5", ""), get("/bytes/7", "")].concat())
        .unwrap();
    assert_eq!(read_response(&mut s, &mut buf, false).2, upstream_bytes(5));
    assert_eq!(read_response(&mut s, &mut buf, false).2, upstream_bytes(7));

    // A request with a body goes to the full path (scanned, forwarded), and
    // the connection keeps working there.
    s.write_all(b"POST /up HTTP/1.1\r\nHost: files.example\r\nContent-Type: text/plain\r\nContent-Length: 5\r\n\r\nhello")
        .unwrap();
    let (code, _, body) = read_response(&mut s, &mut buf, false);
    assert_eq!(code, 200, "{}", String::from_utf8_lossy(&body));
    assert_eq!(up.bodies().len(), 1, "{:?}", up.bodies());
    s.write_all(&get("/bytes/9", "")).unwrap();
    assert_eq!(read_response(&mut s, &mut buf, false).2, upstream_bytes(9));

    // A body ended by the server closing: all of it, framed for the client
    // either by closing its connection too (pass-through path) or chunked
    // (hyper).
    let mut s = TcpStream::connect(("127.0.0.1", m.port)).unwrap();
    s.set_read_timeout(Some(Duration::from_secs(20))).unwrap();
    let mut buf = Vec::new();
    s.write_all(&get("/until-close", "")).unwrap();
    let (code, h, body) = read_response(&mut s, &mut buf, false);
    assert_eq!(code, 200);
    assert!(
        h.iter().any(|(n, v)| (n == "connection" && v == "close")
            || (n == "transfer-encoding" && v == "chunked")),
        "{h:?}"
    );
    assert_eq!(
        body,
        b"no length, ends when the server closes\n".repeat(1000)
    );

    // Metrics count these requests like any other; with the upstream gone
    // the answer is moat's own 502 with Retry-After, as JSON.
    let metrics = m.metrics();
    assert!(
        metrics.contains("moat_proxy_requests_total{pool=\"default\",status=\"200\"}"),
        "{metrics}"
    );
    let mut up = up;
    up.kill();
    let out = Command::new("curl")
        .args(["-s", "-i", "--max-time", "30", &m.url("/x")])
        .output()
        .unwrap();
    let out = String::from_utf8_lossy(&out.stdout).to_ascii_lowercase();
    assert!(out.starts_with("http/1.1 502"), "{out}");
    assert!(out.contains("retry-after: 5"), "{out}");
    assert!(out.contains("content-type: application/json"), "{out}");
    assert!(
        out.contains("\"error\":\"no upstream server could take the request\""),
        "{out}"
    );
}
