//! The portal role end to end: the real `moat serve` and `moat portal`
//! commands, real HTTP (curl), SQLite and the vault on disk, the builtin
//! engine (and an unreachable clamd for the fail-closed case).

// Files read back are small and written by the test.
#![allow(clippy::disallowed_methods)]

mod common;
use common::*;
use serde_json::{Value, json};
use std::collections::HashMap;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

const ADMIN: &str = "admin@example.com";
const ADMIN_PW: &str = "correct horse battery staple";
/// Longest a `moat portal` command may take before its test fails.
const CLI_LIMIT: Duration = Duration::from_secs(120);

struct Server {
    _child: Proc,
    base: String,
    data: PathBuf,
    env: Vec<(String, String)>,
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
    .env("MOAT__RELOAD__POLL_SECS", "0")
    .env("MOAT__PORTAL__RETRY_BASE_SECS", "1")
    .env("MOAT__PORTAL__SCHEDULER_INTERVAL_SECS", "1")
    .stdout(Stdio::null())
    .stderr(Stdio::from(
        std::fs::File::create(data.with_extension("log")).unwrap(),
    ));
    for (k, v) in env {
        cmd.env(k, v);
    }
    let child = Proc(cmd.spawn().unwrap());
    let s = Server {
        _child: child,
        base: format!("http://127.0.0.1:{port}"),
        data: data.to_path_buf(),
        env: env
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect(),
    };
    let t = Instant::now();
    while t.elapsed() < Duration::from_secs(30) {
        if s.call("GET", "/healthz", &[], Body::None).status == 200 {
            return s;
        }
        std::thread::sleep(Duration::from_millis(100));
    }
    panic!("moat serve did not become healthy: {}", log_of(data));
}

/// `text` without ANSI colour sequences (`ESC [ ... m`).
fn plain(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    let mut chars = text.chars();
    while let Some(c) = chars.next() {
        if c == '\u{1b}' {
            for d in chars.by_ref() {
                if d == 'm' {
                    break;
                }
            }
        } else {
            out.push(c);
        }
    }
    out
}

fn log_of(data: &Path) -> String {
    std::fs::read_to_string(data.with_extension("log")).unwrap_or_default()
}

enum Body<'a> {
    None,
    Json(Value),
    Bytes(&'a [u8]),
    /// multipart parts: (file name, content)
    Files(&'a [(&'a str, &'a [u8])]),
}

struct Resp {
    status: u16,
    headers: HashMap<String, Vec<String>>,
    body: Vec<u8>,
}

impl Resp {
    fn json(&self) -> Value {
        serde_json::from_slice(&self.body)
            .unwrap_or_else(|_| json!({ "raw": String::from_utf8_lossy(&self.body) }))
    }
    fn header(&self, k: &str) -> Option<&str> {
        self.headers
            .get(&k.to_ascii_lowercase())
            .and_then(|v| v.first())
            .map(String::as_str)
    }
    fn cookies(&self) -> Vec<&str> {
        self.headers
            .get("set-cookie")
            .map(|v| v.iter().map(String::as_str).collect())
            .unwrap_or_default()
    }
}

impl Server {
    /// One request with curl; `path` may be absolute (a link) or start with `/`.
    fn call(&self, method: &str, path: &str, headers: &[(&str, &str)], body: Body) -> Resp {
        let url = if path.starts_with("http") {
            path.to_string()
        } else {
            format!("{}{path}", self.base)
        };
        if method == "HEAD" {
            return head_raw(&url, headers);
        }
        let tmp = tempfile::tempdir().unwrap();
        let hfile = tmp.path().join("h");
        let bfile = tmp.path().join("b");
        let mut c = Command::new("curl");
        c.args(["-s", "-g", "-X", method, "-D"])
            .arg(&hfile)
            .arg("-o")
            .arg(&bfile)
            .args(["-w", "%{http_code}"]);
        for (k, v) in headers {
            c.arg("-H").arg(format!("{k}: {v}"));
        }
        match body {
            Body::None => {}
            Body::Json(v) => {
                c.args(["-H", "Content-Type: application/json", "--data-binary"])
                    .arg(v.to_string());
            }
            Body::Bytes(b) => {
                let p = tmp.path().join("in");
                std::fs::write(&p, b).unwrap();
                c.arg("--data-binary").arg(format!("@{}", p.display()));
            }
            Body::Files(files) => {
                for (i, (name, data)) in files.iter().enumerate() {
                    let p = tmp.path().join(format!("f{i}"));
                    std::fs::write(&p, data).unwrap();
                    // curl's own quoting of the name: escape quotes and backslashes
                    let n = name.replace('\\', "\\\\").replace('"', "\\\"");
                    c.arg("-F")
                        .arg(format!("file=@{};filename=\"{n}\"", p.display()));
                }
            }
        }
        c.arg(&url);
        let out = c.output().unwrap();
        let status: u16 = String::from_utf8_lossy(&out.stdout)
            .trim()
            .parse()
            .unwrap_or(0);
        Resp {
            status,
            headers: header_map(&std::fs::read_to_string(&hfile).unwrap_or_default()),
            body: std::fs::read(&bfile).unwrap_or_default(),
        }
    }

    fn portal_cli(&self, args: &[&str], stdin: Option<&str>) -> String {
        let mut c = moat();
        c.arg("portal").args(args).arg("--data-dir").arg(&self.data);
        for (k, v) in &self.env {
            c.env(k, v);
        }
        let out = moat_testkit::output_within(&mut c, stdin.unwrap_or("").as_bytes(), CLI_LIMIT);
        assert!(
            out.status.success(),
            "moat portal {args:?}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        String::from_utf8_lossy(&out.stdout).trim().to_string()
    }

    /// The first admin (CLI bootstrap) and a bearer token for it.
    fn admin_token(&self) -> String {
        self.portal_cli(
            &["create-admin", "--email", ADMIN, "--password-stdin"],
            Some(&format!("{ADMIN_PW}\n")),
        );
        self.portal_cli(&["create-token", "--email", ADMIN], None)
    }
}

/// A HEAD request over a plain socket, so that any byte the server sends
/// after the header block is seen (curl -I would stop reading there, and
/// writes the header block itself to its output file).
fn head_raw(url: &str, headers: &[(&str, &str)]) -> Resp {
    use std::io::Read;
    let rest = url.strip_prefix("http://").expect("an http:// URL");
    let (hostport, path) = rest.split_at(rest.find('/').unwrap_or(rest.len()));
    let path = if path.is_empty() { "/" } else { path };
    let mut sock = std::net::TcpStream::connect(hostport).unwrap();
    sock.set_read_timeout(Some(Duration::from_secs(30)))
        .unwrap();
    let mut req = format!("HEAD {path} HTTP/1.1\r\nHost: {hostport}\r\nConnection: close\r\n");
    for (k, v) in headers {
        req.push_str(&format!("{k}: {v}\r\n"));
    }
    req.push_str("\r\n");
    sock.write_all(req.as_bytes()).unwrap();
    let mut raw = Vec::new();
    sock.read_to_end(&mut raw).unwrap();
    let end = raw
        .windows(4)
        .position(|w| w == b"\r\n\r\n")
        .expect("a complete header block");
    let head = String::from_utf8_lossy(&raw[..end]).to_string();
    let status = head
        .lines()
        .next()
        .and_then(|l| l.split_whitespace().nth(1))
        .and_then(|c| c.parse().ok())
        .unwrap_or(0);
    Resp {
        status,
        headers: header_map(&head),
        body: raw[end + 4..].to_vec(),
    }
}

/// Header lines (`Name: value`) by lower-cased name; the status line and
/// anything else without a colon is skipped.
fn header_map(text: &str) -> HashMap<String, Vec<String>> {
    let mut hs: HashMap<String, Vec<String>> = HashMap::new();
    for line in text.lines() {
        if let Some((k, v)) = line.split_once(':') {
            hs.entry(k.trim().to_ascii_lowercase())
                .or_default()
                .push(v.trim().to_string());
        }
    }
    hs
}

fn bearer(t: &str) -> String {
    format!("Bearer {t}")
}

/// A package created with `req` through the API (bearer token).
fn create_package(s: &Server, token: &str, req: Value) -> Value {
    let r = s.call(
        "POST",
        "/v1/portal/packages",
        &[("Authorization", &bearer(token))],
        Body::Json(req),
    );
    assert_eq!(r.status, 201, "{}", r.json());
    r.json()
}

fn b64(s: &str) -> String {
    use std::fmt::Write;
    const T: &[u8; 64] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
    let b = s.as_bytes();
    let mut out = String::new();
    for c in b.chunks(3) {
        let n = (c[0] as u32) << 16
            | (*c.get(1).unwrap_or(&0) as u32) << 8
            | *c.get(2).unwrap_or(&0) as u32;
        for i in 0..4 {
            if i <= c.len() {
                out.write_char(T[(n >> (18 - 6 * i) & 63) as usize] as char)
                    .unwrap();
            } else {
                out.push('=');
            }
        }
    }
    out
}

/// Upload `data` over tus in two PATCHes, asking HEAD for the offset
/// between them (as a client resuming after a dropped connection does).
fn tus_upload(s: &Server, token: &str, package: &str, name: &str, data: &[u8]) -> String {
    let auth = bearer(token);
    let meta = format!("package {},filename {}", b64(package), b64(name));
    let len = data.len().to_string();
    let r = s.call(
        "POST",
        "/v1/portal/uploads",
        &[
            ("Authorization", &auth),
            ("Tus-Resumable", "1.0.0"),
            ("Upload-Length", &len),
            ("Upload-Metadata", &meta),
        ],
        Body::None,
    );
    assert_eq!(r.status, 201, "tus create: {}", r.json());
    let loc = r.header("location").expect("Location").to_string();
    let id = loc.rsplit('/').next().unwrap().to_string();
    let path = format!("/v1/portal/uploads/{id}");
    let half = data.len() / 2;
    let h = [
        ("Authorization", auth.as_str()),
        ("Tus-Resumable", "1.0.0"),
        ("Content-Type", "application/offset+octet-stream"),
    ];
    let r = s.call(
        "PATCH",
        &path,
        &[h[0], h[1], h[2], ("Upload-Offset", "0")],
        Body::Bytes(&data[..half]),
    );
    assert_eq!(r.status, 204, "first PATCH: {}", r.json());
    let r = s.call("HEAD", &path, &[h[0], h[1]], Body::None);
    assert_eq!(r.header("upload-offset"), Some(half.to_string().as_str()));
    // A PATCH at a stale offset is refused.
    let r = s.call(
        "PATCH",
        &path,
        &[h[0], h[1], h[2], ("Upload-Offset", "0")],
        Body::Bytes(b"x"),
    );
    assert_eq!(r.status, 409);
    let off = half.to_string();
    let r = s.call(
        "PATCH",
        &path,
        &[h[0], h[1], h[2], ("Upload-Offset", &off)],
        Body::Bytes(&data[half..]),
    );
    assert_eq!(r.status, 204, "second PATCH: {}", r.json());
    id
}

fn get_package(s: &Server, token: &str, id: &str) -> Value {
    let r = s.call(
        "GET",
        &format!("/v1/portal/packages/{id}"),
        &[("Authorization", &bearer(token))],
        Body::None,
    );
    assert_eq!(r.status, 200, "{}", r.json());
    r.json()
}

fn submit(s: &Server, token: &str, id: &str) -> Value {
    let r = s.call(
        "POST",
        &format!("/v1/portal/packages/{id}/submit"),
        &[("Authorization", &bearer(token))],
        Body::None,
    );
    assert_eq!(r.status, 200, "{}", r.json());
    r.json()
}

fn wait_state(s: &Server, token: &str, id: &str, want: &str, secs: u64) -> Value {
    let t = Instant::now();
    loop {
        let p = get_package(s, token, id);
        if p["state"] == want {
            return p;
        }
        assert!(
            t.elapsed() < Duration::from_secs(secs),
            "package never became {want}: {p}\n{}",
            log_of(&s.data)
        );
        std::thread::sleep(Duration::from_millis(100));
    }
}

fn contains(hay: &[u8], needle: &[u8]) -> bool {
    hay.windows(needle.len()).any(|w| w == needle)
}

/// Every file under `dir`, searched for `needle`.
fn dir_contains(dir: &Path, needle: &[u8]) -> bool {
    walk(dir).iter().any(|p| {
        std::fs::read(p)
            .map(|b| contains(&b, needle))
            .unwrap_or(false)
    })
}

fn walk(dir: &Path) -> Vec<PathBuf> {
    let mut out = Vec::new();
    if let Ok(rd) = std::fs::read_dir(dir) {
        for e in rd.flatten() {
            let p = e.path();
            if p.is_dir() {
                out.extend(walk(&p));
            } else {
                out.push(p);
            }
        }
    }
    out
}

fn unzip(bytes: &[u8]) -> Vec<(String, Vec<u8>)> {
    let dir = tempfile::tempdir().unwrap();
    let z = dir.path().join("p.zip");
    std::fs::write(&z, bytes).unwrap();
    unzip_file(&z)
}

/// Distinct, recognisable, clean content of `n` bytes.
fn content(tag: &str, n: usize) -> Vec<u8> {
    let mut v = Vec::with_capacity(n);
    let mut i = 0u64;
    while v.len() < n {
        v.extend_from_slice(format!("{tag}-{i:08}|").as_bytes());
        i += 1;
    }
    v.truncate(n);
    v
}

/// Where a flow's portal keeps its ciphertext and its work queue: the
/// defaults (the local vault directory, the embedded queue), or S3 on moto
/// and RabbitMQ (`[portal] queue_url`), both through configuration alone.
struct Backends {
    env: Vec<(String, String)>,
    /// moto, its endpoint and the bucket.
    s3: Option<(moat_testkit::Moto, String, String)>,
    /// The broker queue-name prefix of this test (RabbitMQ).
    amqp_prefix: Option<String>,
    /// The subject prefix of this test (NATS JetStream).
    nats_prefix: Option<String>,
}

impl Backends {
    fn local() -> Backends {
        Backends {
            env: Vec::new(),
            s3: None,
            amqp_prefix: None,
            nats_prefix: None,
        }
    }

    /// The local vault, the work queue on NATS JetStream.
    fn nats(_staging: &Path) -> Backends {
        let url =
            std::env::var("MOAT_TEST_NATS_URL").unwrap_or_else(|_| "nats://127.0.0.1:4222".into());
        let prefix = format!("{}.", uniq("moat-test-portal"));
        Backends {
            env: vec![
                ("MOAT__PORTAL__QUEUE_URL".into(), url),
                ("MOAT__PORTAL__QUEUE_PREFIX".into(), prefix.clone()),
            ],
            s3: None,
            amqp_prefix: None,
            nats_prefix: Some(prefix),
        }
    }

    fn rabbitmq_and_s3(staging: &Path) -> Backends {
        let (moto, endpoint) = moto();
        let bucket = "portal-vault".to_string();
        rt().block_on(async { mkbucket(&s3(&endpoint).await, &bucket).await });
        let prefix = format!("{}.", uniq("moat-test-portal"));
        let env = [
            ("MOAT__PORTAL__QUEUE_URL", amqp_url()),
            ("MOAT__PORTAL__QUEUE_PREFIX", prefix.clone()),
            ("MOAT__PORTAL__STORAGE__DIR", staging.display().to_string()),
            ("MOAT__PORTAL__STORAGE__BACKEND__TYPE", "s3".into()),
            ("MOAT__PORTAL__STORAGE__BACKEND__BUCKET", bucket.clone()),
            ("MOAT__PORTAL__STORAGE__BACKEND__PREFIX", "moat/".into()),
            (
                "MOAT__PORTAL__STORAGE__BACKEND__S3__ENDPOINT",
                endpoint.clone(),
            ),
            (
                "MOAT__PORTAL__STORAGE__BACKEND__S3__ACCESS_KEY",
                "testing".into(),
            ),
            (
                "MOAT__PORTAL__STORAGE__BACKEND__S3__SECRET_KEY",
                "testing".into(),
            ),
        ]
        .into_iter()
        .map(|(k, v)| (k.to_string(), v))
        .collect();
        Backends {
            env,
            s3: Some((moto, endpoint, bucket)),
            amqp_prefix: Some(prefix),
            nats_prefix: None,
        }
    }

    fn start(&self, data: &Path, env: &[(&str, &str)]) -> Server {
        let mut all: Vec<(&str, &str)> = env.to_vec();
        all.extend(self.env.iter().map(|(k, v)| (k.as_str(), v.as_str())));
        start(data, &all)
    }

    /// The objects in the moto bucket (name, bytes), or none without S3.
    fn objects(&self) -> Vec<(String, Vec<u8>)> {
        let Some((_, endpoint, bucket)) = &self.s3 else {
            return Vec::new();
        };
        rt().block_on(async {
            let c = s3(endpoint).await;
            let list = c
                .client()
                .list_objects_v2()
                .bucket(bucket)
                .send()
                .await
                .unwrap();
            let mut out = Vec::new();
            for o in list.contents() {
                let key = o.key().unwrap_or_default().to_string();
                let body = c
                    .client()
                    .get_object()
                    .bucket(bucket)
                    .key(&key)
                    .send()
                    .await
                    .unwrap()
                    .body
                    .collect()
                    .await
                    .unwrap()
                    .into_bytes()
                    .to_vec();
                out.push((key, body));
            }
            out
        })
    }

    /// No plaintext in the data directory, nor in the bucket; with S3, the
    /// ciphertext of every file is in the bucket (at least its size).
    fn check_ciphertext_only(&self, s: &Server, files: &[&[u8]]) {
        for f in files {
            let probe = &f[f.len() / 2..(f.len() / 2 + 64).min(f.len())];
            assert!(
                !dir_contains(&s.data, probe),
                "plaintext found in the data directory"
            );
        }
        if self.s3.is_none() {
            return;
        }
        let objects = self.objects();
        assert!(
            objects.len() >= files.len(),
            "{} objects in the bucket for {} files",
            objects.len(),
            files.len()
        );
        for f in files {
            let probe = &f[f.len() / 2..(f.len() / 2 + 64).min(f.len())];
            assert!(
                objects.iter().all(|(_, b)| !contains(b, probe)),
                "plaintext found in the bucket"
            );
            assert!(
                objects
                    .iter()
                    .any(|(k, b)| k.starts_with("moat/") && b.len() >= f.len()),
                "no object in the bucket holds a file of {} bytes",
                f.len()
            );
        }
    }

    /// With RabbitMQ, the jobs went through the broker: its queues exist, are
    /// empty, and the dashboard's queue panel reads them.
    fn check_queue(&self, s: &Server, token: &str) {
        if let Some(prefix) = &self.nats_prefix {
            let (messages, dead) = rt().block_on(async {
                let js = async_nats::jetstream::new(async_nats::connect(nats_url()).await.unwrap());
                let name = nats_stream(prefix, "portal.scan");
                let mut st = js.get_stream(&name).await.expect("the scan stream exists");
                let n = st.info().await.unwrap().state.messages;
                let mut d = js.get_stream(format!("{name}_dead")).await.unwrap();
                (n, d.info().await.unwrap().state.messages)
            });
            assert_eq!((messages, dead), (0, 0), "jobs left on JetStream");
        }
        if self.amqp_prefix.is_none() && self.nats_prefix.is_none() {
            return;
        }
        if let Some(prefix) = &self.amqp_prefix {
            self.check_rabbitmq(prefix);
        }
        let r = s.call(
            "GET",
            "/v1/stats/queues",
            &[("Authorization", &bearer(token))],
            Body::None,
        );
        assert_eq!(r.status, 200, "{}", r.json());
        let v = r.json();
        let scan = v["queues"]
            .as_array()
            .unwrap()
            .iter()
            .find(|q| q["queue"] == "portal.scan")
            .unwrap_or_else(|| panic!("no portal.scan in the dashboard's queues: {v}"))
            .clone();
        assert_eq!(
            (scan["waiting"].as_u64(), scan["dead"].as_u64()),
            (Some(0), Some(0)),
            "{v}"
        );
    }

    fn check_rabbitmq(&self, prefix: &str) {
        let (ready, dead) = rt().block_on(async {
            let conn = lapin::Connection::connect(&amqp_url(), Default::default())
                .await
                .unwrap();
            let ch = conn.create_channel().await.unwrap();
            let passive = lapin::options::QueueDeclareOptions {
                passive: true,
                ..Default::default()
            };
            let main = ch
                .queue_declare(
                    format!("{prefix}portal.scan").as_str().into(),
                    passive,
                    Default::default(),
                )
                .await
                .expect("the scan queue exists on RabbitMQ");
            let dead = ch
                .queue_declare(
                    format!("{prefix}portal.scan.dead").as_str().into(),
                    passive,
                    Default::default(),
                )
                .await
                .expect("the dead-letter queue exists on RabbitMQ");
            (main.message_count(), dead.message_count())
        });
        assert_eq!((ready, dead), (0, 0), "jobs left on the broker");
    }
}

/// Remove the test's broker queues, also when it failed (the server, started
/// after the backends, is stopped first).
impl Drop for Backends {
    fn drop(&mut self) {
        if let Some(prefix) = &self.nats_prefix {
            rt().block_on(async {
                let Ok(c) = async_nats::connect(nats_url()).await else {
                    return;
                };
                let js = async_nats::jetstream::new(c);
                for q in ["portal.scan", "portal.mail"] {
                    let name = nats_stream(prefix, q);
                    let _ = js.delete_stream(&name).await;
                    let _ = js.delete_stream(format!("{name}_dead")).await;
                }
            });
        }
        if let Some(prefix) = &self.amqp_prefix {
            rt().block_on(async {
                let Ok(conn) = lapin::Connection::connect(&amqp_url(), Default::default()).await
                else {
                    return;
                };
                let Ok(ch) = conn.create_channel().await else {
                    return;
                };
                for q in ["portal.scan", "portal.mail"] {
                    let main = format!("{prefix}{q}");
                    let mut all = vec![main.clone(), format!("{main}.dead")];
                    for l in [100, 400, 1_600, 6_400, 25_600, 102_400, 409_600, 1_638_400] {
                        all.push(format!("{main}.delay.{l}"));
                    }
                    for n in all {
                        let _ = ch.queue_delete(n.as_str().into(), Default::default()).await;
                    }
                }
            });
        }
    }
}

fn nats_url() -> String {
    std::env::var("MOAT_TEST_NATS_URL").unwrap_or_else(|_| "nats://127.0.0.1:4222".into())
}

/// The JetStream stream of a work queue (the queue's own naming).
fn nats_stream(prefix: &str, queue: &str) -> String {
    moat_events::queue::nats::stream_name(&format!("{prefix}{queue}"))
}

fn rt() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap()
}

#[test]
fn a_clean_package_becomes_available_only_after_scanning_and_downloads_byte_for_byte() {
    clean_package_flow(|_| Backends::local());
}

#[test]
fn with_rabbitmq_and_s3_a_clean_package_becomes_available_and_downloads_byte_for_byte() {
    clean_package_flow(Backends::rabbitmq_and_s3);
}

#[test]
fn with_nats_jetstream_a_clean_package_becomes_available_and_downloads_byte_for_byte() {
    clean_package_flow(Backends::nats);
}

fn clean_package_flow(backends: impl FnOnce(&Path) -> Backends) {
    let dir = tempfile::tempdir().unwrap();
    let backends = backends(&dir.path().join("staging"));
    let (_smtp, smtp_port, maildir) = smtp_server(dir.path());
    let smtp_url = format!("smtp://127.0.0.1:{smtp_port}");
    let s = backends.start(
        &dir.path().join("data"),
        &[
            ("MOAT__PORTAL__SMTP__URL", &smtp_url),
            ("MOAT__PORTAL__SMTP__FROM", "moat <noreply@example.com>"),
        ],
    );
    let t = s.admin_token();
    let pkg = create_package(
        &s,
        &t,
        json!({ "access": "public", "message": "hello", "recipients": ["bob@example.com"] }),
    );
    assert_eq!(pkg["state"], "uploading");
    let id = pkg["id"].as_str().unwrap();
    let public = pkg["links"]["public"]
        .as_str()
        .expect("links.public")
        .to_string();
    let recipient = pkg["links"]["recipients"][0]["url"]
        .as_str()
        .expect("recipient link")
        .to_string();
    // 200 KiB crosses several 64 KiB encryption segments.
    let a = content("alpha", 200 * 1024 + 17);
    let b = content("bravo", 5000);
    let fa = tus_upload(&s, &t, id, "alpha.bin", &a);
    let r = s.call(
        "POST",
        &format!("/v1/portal/packages/{id}/files"),
        &[("Authorization", &bearer(&t))],
        Body::Files(&[("bravo.txt", &b)]),
    );
    assert_eq!(r.status, 201, "{}", r.json());
    let fb = r.json()["files"][0]["id"].as_str().unwrap().to_string();

    // Before submit, and while uploading, nothing is served.
    let r = s.call("GET", &format!("{public}/files/{fa}"), &[], Body::None);
    assert_eq!(r.status, 403, "{}", r.json());
    assert_eq!(r.json()["error"]["code"], "not_available");
    assert!(!contains(&r.body, &a[..64]));

    assert!(
        mails(&maildir).is_empty(),
        "mail before the package is available"
    );
    let p = submit(&s, &t, id);
    assert!(p["state"] == "scanning" || p["state"] == "available", "{p}");
    let p = wait_state(&s, &t, id, "available", 60);
    // The recipient's mail arrives only now, with their personal link.
    let t0 = Instant::now();
    let mail = loop {
        if let Some(m) = mails(&maildir)
            .into_iter()
            .find(|m| m.contains("bob@example.com"))
        {
            break m;
        }
        assert!(
            t0.elapsed() < Duration::from_secs(20),
            "no mail for bob: {}",
            log_of(&s.data)
        );
        std::thread::sleep(Duration::from_millis(100));
    };
    // The body is quoted-printable: undo soft line breaks and `=3D`.
    let mail = mail
        .replace("=\r\n", "")
        .replace("=\n", "")
        .replace("=3D", "=");
    assert!(
        mail.contains(&recipient),
        "the mail lacks the recipient link: {mail}"
    );
    assert!(mail.contains("hello"));
    for f in p["files"].as_array().unwrap() {
        assert_eq!(f["status"], "clean", "{p}");
        assert!(f["scan_record_id"].is_string(), "{p}");
    }

    // Each file, by the public link and the recipient's link.
    for link in [&public, &recipient] {
        let r = s.call("GET", &format!("{link}/files/{fa}"), &[], Body::None);
        assert_eq!(r.status, 200, "{}", r.json());
        assert!(r.body == a, "alpha differs");
        assert_eq!(r.header("x-content-type-options"), Some("nosniff"));
        assert!(
            r.header("content-disposition")
                .unwrap()
                .starts_with("attachment;")
        );
        let r = s.call("GET", &format!("{link}/files/{fb}"), &[], Body::None);
        assert!(r.status == 200 && r.body == b, "bravo: {}", r.status);
    }
    // A range across a segment boundary, and HEAD.
    let r = s.call(
        "GET",
        &format!("{public}/files/{fa}"),
        &[("Range", "bytes=65530-131080")],
        Body::None,
    );
    assert_eq!(r.status, 206);
    assert_eq!(
        r.header("content-range"),
        Some(format!("bytes 65530-131080/{}", a.len()).as_str())
    );
    assert!(r.body == a[65530..=131080]);
    let r = s.call("HEAD", &format!("{public}/files/{fa}"), &[], Body::None);
    assert_eq!(r.status, 200);
    assert_eq!(
        r.header("content-length"),
        Some(a.len().to_string().as_str())
    );
    assert!(r.body.is_empty());
    // The zip, streamed on the fly.
    let r = s.call("GET", &format!("{public}/zip"), &[], Body::None);
    assert_eq!(r.status, 200);
    let members = unzip(&r.body);
    assert_eq!(members.len(), 2);
    assert!(members.iter().any(|(n, d)| n == "alpha.bin" && *d == a));
    assert!(members.iter().any(|(n, d)| n == "bravo.txt" && *d == b));
    // Signed in (the owner), the internal paths serve too.
    let r = s.call(
        "GET",
        &format!("/v1/portal/packages/{id}/files/{fb}/content"),
        &[("Authorization", &bearer(&t))],
        Body::None,
    );
    assert!(r.status == 200 && r.body == b);

    // Only ciphertext on disk: the plaintext appears nowhere in the data dir.
    assert!(
        !dir_contains(&s.data, &a[1000..1064]),
        "plaintext of alpha found in the data directory"
    );
    assert!(
        !dir_contains(&s.data, &b[1000..1064]),
        "plaintext of bravo found in the data directory"
    );
    // With S3: the ciphertext is in the bucket, no plaintext is (nor in the staging area).
    backends.check_ciphertext_only(&s, &[&a, &b]);
    assert!(!dir_contains(&dir.path().join("staging"), &a[1000..1064]));
    backends.check_queue(&s, &t);

    // The audit has the whole story.
    let r = s.call(
        "GET",
        &format!("/v1/portal/audit?package={id}&limit=100"),
        &[("Authorization", &bearer(&t))],
        Body::None,
    );
    let actions: Vec<String> = r.json()["items"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| e["action"].as_str().unwrap().to_string())
        .collect();
    for want in [
        "package.create",
        "upload.complete",
        "package.submit",
        "scan.verdict",
        "package.available",
        "download",
    ] {
        assert!(
            actions.iter().any(|a| a == want),
            "no {want} in {actions:?}"
        );
    }
}

#[test]
fn an_infected_package_is_quarantined_no_path_serves_a_byte_and_only_an_audited_admin_release_frees_it()
 {
    infected_package_flow(|_| Backends::local());
}

#[test]
fn with_rabbitmq_and_s3_an_infected_package_is_quarantined_and_no_path_serves_a_byte() {
    infected_package_flow(Backends::rabbitmq_and_s3);
}

#[test]
fn with_nats_jetstream_an_infected_package_is_quarantined_and_no_path_serves_a_byte() {
    infected_package_flow(Backends::nats);
}

fn infected_package_flow(backends: impl FnOnce(&Path) -> Backends) {
    let dir = tempfile::tempdir().unwrap();
    let backends = backends(&dir.path().join("staging"));
    let s = backends.start(&dir.path().join("data"), &[]);
    let t = s.admin_token();
    let pkg = create_package(
        &s,
        &t,
        json!({ "access": "public", "recipients": ["eve@example.com"] }),
    );
    let id = pkg["id"].as_str().unwrap().to_string();
    let public = pkg["links"]["public"].as_str().unwrap().to_string();
    let recipient = pkg["links"]["recipients"][0]["url"]
        .as_str()
        .unwrap()
        .to_string();
    let clean = content("clean", 3000);
    let r = s.call(
        "POST",
        &format!("/v1/portal/packages/{id}/files"),
        &[("Authorization", &bearer(&t))],
        Body::Files(&[("clean.txt", &clean), ("eicar.com", EICAR)]),
    );
    assert_eq!(r.status, 201, "{}", r.json());
    let files: Vec<String> = r.json()["files"]
        .as_array()
        .unwrap()
        .iter()
        .map(|f| f["id"].as_str().unwrap().to_string())
        .collect();
    submit(&s, &t, &id);
    let p = wait_state(&s, &t, &id, "quarantined", 60);
    assert_eq!(p["reason"], "infected");
    backends.check_ciphertext_only(&s, &[&clean, EICAR]);
    backends.check_queue(&s, &t);

    // A member (not the owner) signed in by token, for the internal path.
    let r = s.call(
        "POST",
        "/v1/portal/users",
        &[("Authorization", &bearer(&t))],
        Body::Json(
            json!({ "email": "m@example.com", "password": "member password 1", "role": "member" }),
        ),
    );
    assert_eq!(r.status, 201, "{}", r.json());
    let member = s.portal_cli(&["create-token", "--email", "m@example.com"], None);

    let mut paths: Vec<(String, Vec<(&str, String)>)> = Vec::new();
    for f in &files {
        for link in [&public, &recipient] {
            paths.push((format!("{link}/files/{f}"), vec![]));
            paths.push((
                format!("{link}/files/{f}"),
                vec![("Range", "bytes=0-9".to_string())],
            ));
        }
        paths.push((
            format!("/v1/portal/packages/{id}/files/{f}/content"),
            vec![("Authorization", bearer(&t))],
        ));
        paths.push((
            format!("/v1/portal/packages/{id}/files/{f}/content"),
            vec![("Authorization", bearer(&member))],
        ));
    }
    paths.push((format!("{public}/zip"), vec![]));
    paths.push((format!("{recipient}/zip"), vec![]));
    paths.push((
        format!("/v1/portal/packages/{id}/zip"),
        vec![("Authorization", bearer(&t))],
    ));
    for (path, hs) in &paths {
        let hs: Vec<(&str, &str)> = hs.iter().map(|(k, v)| (*k, v.as_str())).collect();
        for method in ["GET", "HEAD"] {
            let r = s.call(method, path, &hs, Body::None);
            assert!(
                r.status == 403 || r.status == 404,
                "{method} {path}: {}",
                r.status
            );
            assert!(
                !contains(&r.body, &EICAR[..20]) && !contains(&r.body, &clean[..20]),
                "{method} {path} served bytes"
            );
        }
    }

    // Release: not by a member, not without the password, not without a reason.
    let url = format!("/v1/portal/packages/{id}/release");
    let r = s.call(
        "POST",
        &url,
        &[("Authorization", &bearer(&member))],
        Body::Json(json!({ "reason": "trust me", "password": "member password 1" })),
    );
    assert_eq!(r.status, 403);
    let r = s.call(
        "POST",
        &url,
        &[("Authorization", &bearer(&t))],
        Body::Json(json!({ "reason": "test file", "password": "wrong password" })),
    );
    assert_eq!(r.status, 403);
    let r = s.call(
        "POST",
        &url,
        &[("Authorization", &bearer(&t))],
        Body::Json(json!({ "reason": "", "password": ADMIN_PW })),
    );
    assert_eq!(r.status, 400);
    assert_eq!(get_package(&s, &t, &id)["state"], "quarantined");
    let r = s.call(
        "POST",
        &url,
        &[("Authorization", &bearer(&t))],
        Body::Json(json!({ "reason": "EICAR test file, expected", "password": ADMIN_PW })),
    );
    assert_eq!(r.status, 200, "{}", r.json());
    assert_eq!(r.json()["state"], "available");
    let r = s.call(
        "GET",
        &format!("{public}/files/{}", files[1]),
        &[],
        Body::None,
    );
    assert!(r.status == 200 && r.body == EICAR);
    // The audit shows who and why.
    let r = s.call(
        "GET",
        &format!("/v1/portal/audit?package={id}&action=package.release"),
        &[("Authorization", &bearer(&t))],
        Body::None,
    );
    let e = &r.json()["items"][0];
    assert_eq!(e["actor_email"], ADMIN);
    assert_eq!(e["detail"]["reason"], "EICAR test file, expected");
    let r = s.call(
        "GET",
        "/v1/portal/audit.csv",
        &[("Authorization", &bearer(&t))],
        Body::None,
    );
    assert_eq!(r.status, 200);
    let csv = String::from_utf8_lossy(&r.body);
    assert!(
        csv.contains("package.release") && csv.contains("EICAR test file, expected"),
        "{csv}"
    );
    assert!(csv.contains("package.release.denied"));
}

#[test]
fn unreachable_engines_keep_a_package_unavailable_then_quarantine_it_with_reason_error() {
    fail_closed_flow(|_| Backends::local());
}

#[test]
fn with_rabbitmq_and_s3_engine_errors_are_retried_through_the_broker_then_quarantined() {
    fail_closed_flow(Backends::rabbitmq_and_s3);
}

fn fail_closed_flow(backends: impl FnOnce(&Path) -> Backends) {
    let dir = tempfile::tempdir().unwrap();
    let backends = backends(&dir.path().join("staging"));
    let closed = free_port().to_string();
    let addr = format!("127.0.0.1:{closed}");
    let s = backends.start(
        &dir.path().join("data"),
        &[
            ("MOAT_CLAMD", &addr),
            ("MOAT__PORTAL__SCAN_DEADLINE_SECS", "4"),
        ],
    );
    let t = s.admin_token();
    let pkg = create_package(&s, &t, json!({ "access": "public" }));
    let id = pkg["id"].as_str().unwrap().to_string();
    let public = pkg["links"]["public"].as_str().unwrap().to_string();
    let data = content("harmless", 100);
    let r = s.call(
        "POST",
        &format!("/v1/portal/packages/{id}/files"),
        &[("Authorization", &bearer(&t))],
        Body::Files(&[("a.txt", &data)]),
    );
    let fid = r.json()["files"][0]["id"].as_str().unwrap().to_string();
    submit(&s, &t, &id);
    std::thread::sleep(Duration::from_millis(1500));
    let p = get_package(&s, &t, &id);
    assert_eq!(p["state"], "scanning", "{p}");
    let r = s.call("GET", &format!("{public}/files/{fid}"), &[], Body::None);
    assert_eq!(r.status, 403);
    let p = wait_state(&s, &t, &id, "quarantined", 30);
    assert_eq!(p["reason"], "error");
    assert_eq!(p["files"][0]["status"], "error");
    let r = s.call("GET", &format!("{public}/files/{fid}"), &[], Body::None);
    assert_eq!(r.status, 403);
    assert!(!contains(&r.body, &data[..20]));
    // The job came back from its retry delays (not only from the
    // scheduler's re-queue at the deadline).
    let log = plain(&log_of(&s.data));
    assert!(
        log.contains("retrying before the scan deadline") && log.contains("attempt=2"),
        "no second attempt: {log}"
    );
    backends.check_queue(&s, &t);
}

/// Log in with a cookie session; returns (session cookie, csrf token).
fn login(s: &Server, email: &str, pw: &str) -> (String, String, Resp) {
    let r = s.call(
        "POST",
        "/v1/portal/auth/login",
        &[("Origin", &s.base)],
        Body::Json(json!({ "email": email, "password": pw })),
    );
    assert_eq!(r.status, 200, "{}", r.json());
    let mut session = String::new();
    let mut csrf = String::new();
    for c in r.cookies() {
        let kv = c.split(';').next().unwrap();
        if let Some(v) = kv.strip_prefix("moat_session=") {
            session = v.to_string();
        }
        if let Some(v) = kv.strip_prefix("moat_csrf=") {
            csrf = v.to_string();
        }
    }
    (session, csrf, r)
}

#[test]
fn cookie_sessions_need_csrf_and_origin_and_members_cannot_reach_each_others_packages() {
    let dir = tempfile::tempdir().unwrap();
    let s = start(&dir.path().join("data"), &[]);
    let t = s.admin_token();
    for m in ["a@example.com", "b@example.com"] {
        let r = s.call(
            "POST",
            "/v1/portal/users",
            &[("Authorization", &bearer(&t))],
            Body::Json(json!({ "email": m, "password": "member password 1" })),
        );
        assert_eq!(r.status, 201);
    }
    let (session, csrf, r) = login(&s, "a@example.com", "member password 1");
    let sc = r
        .cookies()
        .into_iter()
        .find(|c| c.starts_with("moat_session="))
        .unwrap()
        .to_string();
    for flag in ["HttpOnly", "Secure", "SameSite=Strict", "Path=/"] {
        assert!(sc.contains(flag), "session cookie lacks {flag}: {sc}");
    }
    assert_eq!(r.json()["csrf_token"], csrf.as_str());
    let cookie = format!("moat_session={session}; moat_csrf={csrf}");
    let body = || Body::Json(json!({ "access": "internal" }));
    let r = s.call(
        "GET",
        "/v1/portal/auth/me",
        &[("Cookie", &cookie)],
        Body::None,
    );
    assert_eq!(r.json()["email"], "a@example.com");
    // No CSRF token, a wrong one, no Origin, a foreign Origin: 403.
    let r = s.call(
        "POST",
        "/v1/portal/packages",
        &[("Cookie", &cookie), ("Origin", &s.base)],
        body(),
    );
    assert_eq!(
        (r.status, r.json()["error"]["code"].clone()),
        (403, json!("csrf"))
    );
    let r = s.call(
        "POST",
        "/v1/portal/packages",
        &[
            ("Cookie", &cookie),
            ("Origin", &s.base),
            ("X-CSRF-Token", "AAAA"),
        ],
        body(),
    );
    assert_eq!(r.status, 403);
    let r = s.call(
        "POST",
        "/v1/portal/packages",
        &[("Cookie", &cookie), ("X-CSRF-Token", &csrf)],
        body(),
    );
    assert_eq!(r.status, 403);
    let r = s.call(
        "POST",
        "/v1/portal/packages",
        &[
            ("Cookie", &cookie),
            ("Origin", "http://evil.example"),
            ("X-CSRF-Token", &csrf),
        ],
        body(),
    );
    assert_eq!(r.status, 403);
    let r = s.call(
        "POST",
        "/v1/portal/packages",
        &[
            ("Cookie", &cookie),
            ("Origin", &s.base),
            ("X-CSRF-Token", &csrf),
        ],
        Body::Json(json!({ "access": "public" })),
    );
    assert_eq!(r.status, 201, "{}", r.json());
    let pa = r.json();
    let pa_id = pa["id"].as_str().unwrap().to_string();

    // Member b: a's package does not exist for b.
    let tb = s.portal_cli(&["create-token", "--email", "b@example.com"], None);
    let r = s.call(
        "GET",
        &format!("/v1/portal/packages/{pa_id}"),
        &[("Authorization", &bearer(&tb))],
        Body::None,
    );
    assert_eq!(r.status, 404);
    let r = s.call(
        "POST",
        &format!("/v1/portal/packages/{pa_id}/submit"),
        &[("Authorization", &bearer(&tb))],
        Body::None,
    );
    assert_eq!(r.status, 404);
    let r = s.call(
        "POST",
        &format!("/v1/portal/packages/{pa_id}/files"),
        &[("Authorization", &bearer(&tb))],
        Body::Files(&[("x", b"x")]),
    );
    assert_eq!(r.status, 404);
    let r = s.call(
        "GET",
        &format!("/v1/portal/audit?package={pa_id}"),
        &[("Authorization", &bearer(&tb))],
        Body::None,
    );
    assert_eq!(r.status, 404);

    // IDOR across links: b's public link cannot fetch a file of a's package.
    let ta = s.portal_cli(&["create-token", "--email", "a@example.com"], None);
    let r = s.call(
        "POST",
        &format!("/v1/portal/packages/{pa_id}/files"),
        &[("Authorization", &bearer(&ta))],
        Body::Files(&[("secret.txt", b"a's secret content")]),
    );
    let fa = r.json()["files"][0]["id"].as_str().unwrap().to_string();
    submit(&s, &ta, &pa_id);
    wait_state(&s, &ta, &pa_id, "available", 60);
    let pb = create_package(&s, &tb, json!({ "access": "public" }));
    let pb_id = pb["id"].as_str().unwrap().to_string();
    let r = s.call(
        "POST",
        &format!("/v1/portal/packages/{pb_id}/files"),
        &[("Authorization", &bearer(&tb))],
        Body::Files(&[("b.txt", b"b's content")]),
    );
    assert_eq!(r.status, 201);
    submit(&s, &tb, &pb_id);
    wait_state(&s, &tb, &pb_id, "available", 60);
    let link_b = pb["links"]["public"].as_str().unwrap();
    let r = s.call("GET", &format!("{link_b}/files/{fa}"), &[], Body::None);
    assert_eq!(r.status, 404);
    assert!(!contains(&r.body, b"a's secret"));
    let r = s.call(
        "GET",
        &format!("/v1/portal/packages/{pb_id}/files/{fa}/content"),
        &[("Authorization", &bearer(&tb))],
        Body::None,
    );
    assert_eq!(r.status, 404);
    let r = s.call(
        "GET",
        &format!("/v1/portal/packages/{pa_id}/files/{fa}/content"),
        &[("Authorization", &bearer(&tb))],
        Body::None,
    );
    assert_eq!(r.status, 404);

    // Logout revokes the session: the same cookie is no longer signed in.
    let r = s.call(
        "POST",
        "/v1/portal/auth/logout",
        &[
            ("Cookie", &cookie),
            ("Origin", &s.base),
            ("X-CSRF-Token", &csrf),
        ],
        Body::None,
    );
    assert_eq!(r.status, 204);
    let r = s.call(
        "GET",
        "/v1/portal/auth/me",
        &[("Cookie", &cookie)],
        Body::None,
    );
    assert_eq!(r.status, 401);

    // Wrong passwords: 401, then throttled.
    for _ in 0..5 {
        let r = s.call(
            "POST",
            "/v1/portal/auth/login",
            &[],
            Body::Json(json!({ "email": "b@example.com", "password": "nope" })),
        );
        assert_eq!(r.status, 401);
    }
    let r = s.call(
        "POST",
        "/v1/portal/auth/login",
        &[],
        Body::Json(json!({ "email": "b@example.com", "password": "member password 1" })),
    );
    assert_eq!(r.status, 429, "the account is throttled after 5 failures");
}

#[test]
fn hostile_file_names_are_stored_and_served_with_safe_names_and_headers() {
    let dir = tempfile::tempdir().unwrap();
    let s = start(&dir.path().join("data"), &[]);
    let t = s.admin_token();
    let pkg = create_package(&s, &t, json!({ "access": "public" }));
    let id = pkg["id"].as_str().unwrap().to_string();
    let xss = "<img src=x onerror=alert(1)>.txt";
    let r = s.call(
        "POST",
        &format!("/v1/portal/packages/{id}/files"),
        &[("Authorization", &bearer(&t))],
        Body::Files(&[(xss, b"one"), ("../../etc/passwd", b"two")]),
    );
    assert_eq!(r.status, 201, "{}", r.json());
    submit(&s, &t, &id);
    let p = wait_state(&s, &t, &id, "available", 60);
    let names: Vec<&str> = p["files"]
        .as_array()
        .unwrap()
        .iter()
        .map(|f| f["name"].as_str().unwrap())
        .collect();
    assert_eq!(names, vec![xss, "passwd"]);
    let public = p["links"]["public"].as_str().unwrap();
    for f in p["files"].as_array().unwrap() {
        let r = s.call(
            "GET",
            &format!("{public}/files/{}", f["id"].as_str().unwrap()),
            &[],
            Body::None,
        );
        assert_eq!(r.status, 200);
        let cd = r.header("content-disposition").unwrap();
        assert!(cd.starts_with("attachment;"), "{cd}");
        assert!(
            !cd.contains('<') && !cd.contains('/') && !cd.contains(".."),
            "{cd}"
        );
        assert_eq!(r.header("content-type"), Some("application/octet-stream"));
        assert_eq!(r.header("x-content-type-options"), Some("nosniff"));
        assert!(
            r.header("content-security-policy")
                .unwrap()
                .contains("sandbox")
        );
    }
    let r = s.call("GET", &format!("{public}/zip"), &[], Body::None);
    let names: Vec<String> = unzip(&r.body).into_iter().map(|(n, _)| n).collect();
    assert!(
        names.iter().all(|n| !n.contains('/') && !n.contains("..")),
        "{names:?}"
    );
}

#[test]
fn expiry_answers_410_and_purge_deletes_the_ciphertext_but_keeps_the_audit() {
    let dir = tempfile::tempdir().unwrap();
    // A fast clock: a portal day is 5 seconds.
    let s = start(
        &dir.path().join("data"),
        &[
            ("MOAT__PORTAL__DAY_SECS", "5"),
            ("MOAT__PORTAL__PURGE_AFTER_DAYS", "1"),
        ],
    );
    let t = s.admin_token();
    let pkg = create_package(
        &s,
        &t,
        json!({ "access": "public", "expires_in_days": 1, "download_limit": 2, "password": "open sesame" }),
    );
    let id = pkg["id"].as_str().unwrap().to_string();
    let public = pkg["links"]["public"].as_str().unwrap().to_string();
    let data = content("expiring", 70_000);
    let r = s.call(
        "POST",
        &format!("/v1/portal/packages/{id}/files"),
        &[("Authorization", &bearer(&t))],
        Body::Files(&[("e.bin", &data)]),
    );
    let fid = r.json()["files"][0]["id"].as_str().unwrap().to_string();
    submit(&s, &t, &id);
    wait_state(&s, &t, &id, "available", 30);
    let url = format!("{public}/files/{fid}");
    // Password: required, wrong is refused.
    assert_eq!(s.call("GET", &url, &[], Body::None).status, 403);
    assert_eq!(
        s.call("GET", &url, &[("X-Package-Password", "wrong")], Body::None)
            .status,
        403
    );
    // Download limit 2: two downloads, then 410.
    for _ in 0..2 {
        let r = s.call(
            "GET",
            &url,
            &[("X-Package-Password", "open sesame")],
            Body::None,
        );
        assert!(r.status == 200 && r.body == data, "{}", r.status);
    }
    let r = s.call(
        "GET",
        &url,
        &[("X-Package-Password", "open sesame")],
        Body::None,
    );
    assert_eq!(r.status, 410, "{}", r.json());
    // Expiry: 410 on the link; then purge removes the ciphertext.
    let p = wait_state(&s, &t, &id, "expired", 20);
    assert_eq!(p["id"], id.as_str());
    assert_eq!(
        s.call(
            "GET",
            &url,
            &[("X-Package-Password", "open sesame")],
            Body::None
        )
        .status,
        410
    );
    assert_eq!(s.call("GET", &public, &[], Body::None).status, 410);
    wait_state(&s, &t, &id, "purged", 20);
    let objects: Vec<PathBuf> = walk(&s.data.join("portal"))
        .into_iter()
        .filter(|p| p.to_string_lossy().contains(&fid))
        .collect();
    assert!(
        objects.is_empty(),
        "ciphertext left after purge: {objects:?}"
    );
    let r = s.call(
        "GET",
        &format!("/v1/portal/audit?package={id}"),
        &[("Authorization", &bearer(&t))],
        Body::None,
    );
    let actions: Vec<String> = r.json()["items"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| e["action"].as_str().unwrap().to_string())
        .collect();
    for want in [
        "package.create",
        "download",
        "package.expired",
        "package.purged",
    ] {
        assert!(
            actions.iter().any(|a| a == want),
            "no {want} in {actions:?}"
        );
    }
}

// ---- package management (revoke, extend, delete) and users

/// A member account through the admin API, and its bearer token.
fn member(s: &Server, admin: &str, email: &str, pw: &str) -> (String, String) {
    let r = s.call(
        "POST",
        "/v1/portal/users",
        &[("Authorization", &bearer(admin))],
        Body::Json(json!({ "email": email, "password": pw })),
    );
    assert_eq!(r.status, 201, "{}", r.json());
    let id = r.json()["id"].as_str().unwrap().to_string();
    (id, s.portal_cli(&["create-token", "--email", email], None))
}

/// A public package of `token`'s with one file, `available`; (id, link, file id).
fn available_package(s: &Server, token: &str, data: &[u8]) -> (String, String, String) {
    let pkg = create_package(s, token, json!({ "access": "public" }));
    let id = pkg["id"].as_str().unwrap().to_string();
    let link = pkg["links"]["public"].as_str().unwrap().to_string();
    let r = s.call(
        "POST",
        &format!("/v1/portal/packages/{id}/files"),
        &[("Authorization", &bearer(token))],
        Body::Files(&[("shared.bin", data)]),
    );
    assert_eq!(r.status, 201, "{}", r.json());
    let fid = r.json()["files"][0]["id"].as_str().unwrap().to_string();
    submit(s, token, &id);
    wait_state(s, token, &id, "available", 60);
    (id, link, fid)
}

fn audit_actions(s: &Server, token: &str, query: &str) -> Vec<(String, Value)> {
    let r = s.call(
        "GET",
        &format!("/v1/portal/audit?{query}"),
        &[("Authorization", &bearer(token))],
        Body::None,
    );
    assert_eq!(r.status, 200, "{}", r.json());
    r.json()["items"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| (e["action"].as_str().unwrap().to_string(), e.clone()))
        .collect()
}

#[test]
fn a_revoked_package_answers_410_at_once_and_only_its_owner_or_an_admin_may_manage_it() {
    let dir = tempfile::tempdir().unwrap();
    let s = start(&dir.path().join("data"), &[]);
    // The API describes these routes (OpenAPI, served without a session).
    let doc = s
        .call("GET", "/v1/portal/openapi.json", &[], Body::None)
        .json();
    assert_eq!(doc["openapi"], "3.1.0");
    for (path, method) in [
        ("/v1/portal/packages/{id}/revoke", "post"),
        ("/v1/portal/packages/{id}/extend", "post"),
        ("/v1/portal/packages/{id}", "delete"),
        ("/v1/portal/users", "get"),
    ] {
        assert!(doc["paths"][path][method].is_object(), "{method} {path}");
    }
    let t = s.admin_token();
    let (_, ta) = member(&s, &t, "a@example.com", "member password 1");
    let (_, tb) = member(&s, &t, "b@example.com", "member password 2");
    let data = content("revocable", 90_000);
    let (id, link, fid) = available_package(&s, &ta, &data);
    let file_url = format!("{link}/files/{fid}");
    let r = s.call("GET", &file_url, &[], Body::None);
    assert!(r.status == 200 && r.body == data, "{}", r.status);
    let expiry = pkg_expiry(&s, &ta, &id);

    // Another member: the package does not exist for them, whatever they ask.
    let b = bearer(&tb);
    for (method, path, body) in [
        (
            "POST",
            format!("/v1/portal/packages/{id}/revoke"),
            json!({}),
        ),
        (
            "POST",
            format!("/v1/portal/packages/{id}/extend"),
            json!({ "expires_in_days": 3 }),
        ),
        ("DELETE", format!("/v1/portal/packages/{id}"), json!({})),
    ] {
        let r = s.call(method, &path, &[("Authorization", &b)], Body::Json(body));
        assert_eq!(r.status, 404, "{method} {path}: {}", r.json());
    }
    let p = get_package(&s, &ta, &id);
    assert_eq!(p["state"], "available");
    assert_eq!(p["expires_at"], expiry);
    assert_eq!(s.call("GET", &file_url, &[], Body::None).status, 200);

    // The owner revokes: every path answers 410 at once and serves no byte.
    let r = s.call(
        "POST",
        &format!("/v1/portal/packages/{id}/revoke"),
        &[("Authorization", &bearer(&ta))],
        Body::Json(json!({ "reason": "sent to the wrong customer" })),
    );
    assert_eq!(r.status, 200, "{}", r.json());
    assert_eq!(r.json()["state"], "expired");
    assert_eq!(r.json()["reason"], "revoked");
    for (path, headers) in [
        (file_url.clone(), vec![]),
        (file_url.clone(), vec![("Range", "bytes=0-9")]),
        (format!("{link}/zip"), vec![]),
        (link.clone(), vec![]),
    ] {
        let r = s.call("GET", &path, &headers, Body::None);
        assert_eq!(r.status, 410, "GET {path}: {}", r.json());
        assert!(!contains(&r.body, &data[..16]), "{path} served bytes");
    }
    let r = s.call("HEAD", &file_url, &[], Body::None);
    assert_eq!(r.status, 410);
    assert!(!contains(&r.body, &data[..16]));
    let r = s.call(
        "GET",
        &format!("/v1/portal/packages/{id}/files/{fid}/content"),
        &[("Authorization", &bearer(&ta))],
        Body::None,
    );
    assert_eq!(r.status, 410);
    // Nothing is left to revoke or extend.
    for (path, body) in [
        (format!("/v1/portal/packages/{id}/revoke"), json!({})),
        (
            format!("/v1/portal/packages/{id}/extend"),
            json!({ "expires_in_days": 3 }),
        ),
    ] {
        let r = s.call(
            "POST",
            &path,
            &[("Authorization", &bearer(&ta))],
            Body::Json(body),
        );
        assert_eq!(r.status, 409, "{path}: {}", r.json());
    }
    let audit = audit_actions(&s, &t, &format!("package={id}&action=package.revoke"));
    assert_eq!(audit.len(), 1, "{audit:?}");
    assert_eq!(audit[0].1["actor_email"], "a@example.com");
    assert_eq!(audit[0].1["detail"]["from"], "available");
    assert_eq!(audit[0].1["detail"]["reason"], "sent to the wrong customer");

    // An admin may revoke a member's package (one still scanning or
    // uploading too: it never becomes available).
    let pkg = create_package(&s, &tb, json!({ "access": "public" }));
    let bid = pkg["id"].as_str().unwrap();
    let r = s.call(
        "POST",
        &format!("/v1/portal/packages/{bid}/revoke"),
        &[("Authorization", &bearer(&t))],
        Body::None,
    );
    assert_eq!(r.status, 200, "{}", r.json());
    assert_eq!(get_package(&s, &tb, bid)["state"], "expired");
    let r = s.call(
        "GET",
        pkg["links"]["public"].as_str().unwrap(),
        &[],
        Body::None,
    );
    assert_eq!(r.status, 410);
}

fn pkg_expiry(s: &Server, token: &str, id: &str) -> Value {
    get_package(s, token, id)["expires_at"].clone()
}

fn now_ms() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_millis() as i64
}

#[test]
fn extend_moves_the_expiry_within_the_admin_maximum_and_refuses_beyond_it() {
    let dir = tempfile::tempdir().unwrap();
    // A fast clock: a portal day is 3 seconds; packages live 2 days (6 s)
    // unless extended, at most 10 days (30 s).
    let s = start(
        &dir.path().join("data"),
        &[
            ("MOAT__PORTAL__DAY_SECS", "3"),
            ("MOAT__PORTAL__MAX_EXPIRY_DAYS", "10"),
            ("MOAT__PORTAL__DEFAULT_EXPIRY_DAYS", "2"),
        ],
    );
    let t = s.admin_token();
    let data = content("extended", 5000);
    let (id, link, fid) = available_package(&s, &t, &data);
    let before = pkg_expiry(&s, &t, &id).as_i64().unwrap();
    let ext = |body: Value| {
        s.call(
            "POST",
            &format!("/v1/portal/packages/{id}/extend"),
            &[("Authorization", &bearer(&t))],
            Body::Json(body),
        )
    };
    // Beyond the maximum, in the past, or neither form: refused, unchanged.
    for body in [
        json!({ "expires_in_days": 11 }),
        json!({ "expires_in_days": 0 }),
        json!({ "expires_at": now_ms() + 31_000 }),
        json!({ "expires_at": now_ms() - 1000 }),
        json!({}),
        json!({ "expires_in_days": 2, "expires_at": now_ms() + 4000 }),
    ] {
        let r = ext(body.clone());
        assert_eq!(r.status, 400, "{body}: {}", r.json());
        assert_eq!(r.json()["error"]["code"], "bad_request");
    }
    assert_eq!(pkg_expiry(&s, &t, &id).as_i64().unwrap(), before);
    // Within it: the expiry moves, and the link outlives its old expiry.
    let t0 = now_ms();
    let r = ext(json!({ "expires_in_days": 4 }));
    assert_eq!(r.status, 200, "{}", r.json());
    let after = r.json()["expires_at"].as_i64().unwrap();
    assert!(
        after >= t0 + 12_000 && after <= now_ms() + 12_000 && after > before,
        "{before} → {after}"
    );
    let at = now_ms() + 9000;
    let r = ext(json!({ "expires_at": at }));
    assert_eq!(r.status, 200, "{}", r.json());
    assert_eq!(r.json()["expires_at"], at);
    while now_ms() < before + 1500 {
        std::thread::sleep(Duration::from_millis(100));
    }
    let r = s.call("GET", &format!("{link}/files/{fid}"), &[], Body::None);
    assert!(
        r.status == 200 && r.body == data,
        "past the old expiry: {}",
        r.status
    );
    let audit = audit_actions(&s, &t, &format!("package={id}&action=package.extend"));
    assert_eq!(audit.len(), 2, "{audit:?}");
    assert_eq!(audit[0].1["detail"]["to"], at);
    // Once expired, it can no longer be extended.
    wait_state(&s, &t, &id, "expired", 20);
    let r = ext(json!({ "expires_in_days": 2 }));
    assert_eq!(r.status, 409, "{}", r.json());
    assert_eq!(
        s.call("GET", &format!("{link}/files/{fid}"), &[], Body::None)
            .status,
        410
    );
}

#[test]
fn delete_removes_the_ciphertext_from_storage_now_and_keeps_the_audit() {
    let dir = tempfile::tempdir().unwrap();
    let s = start(&dir.path().join("data"), &[]);
    let t = s.admin_token();
    let (_, tm) = member(&s, &t, "m@example.com", "member password 1");
    let data = content("deleted", 150_000);
    let (id, link, fid) = available_package(&s, &tm, &data);
    let stored = |needle: &str| -> Vec<PathBuf> {
        walk(&s.data.join("portal"))
            .into_iter()
            .filter(|p| p.to_string_lossy().contains(needle))
            .collect()
    };
    assert!(!stored(&fid).is_empty(), "the ciphertext is in storage");
    let r = s.call(
        "DELETE",
        &format!("/v1/portal/packages/{id}"),
        &[("Authorization", &bearer(&tm))],
        Body::None,
    );
    assert_eq!(r.status, 204, "{}", r.json());
    let p = get_package(&s, &tm, &id);
    assert_eq!(p["state"], "purged");
    assert_eq!(p["files"][0]["id"], fid.as_str(), "metadata kept");
    assert_eq!(stored(&fid), Vec::<PathBuf>::new(), "ciphertext left");
    for path in [
        format!("{link}/files/{fid}"),
        format!("{link}/zip"),
        link.clone(),
    ] {
        let r = s.call("GET", &path, &[], Body::None);
        assert_eq!(r.status, 410, "{path}");
        assert!(!contains(&r.body, &data[..16]));
    }
    let actions: Vec<String> = audit_actions(&s, &t, &format!("package={id}"))
        .into_iter()
        .map(|(a, _)| a)
        .collect();
    for want in [
        "package.create",
        "package.available",
        "package.delete",
        "package.purged",
    ] {
        assert!(
            actions.iter().any(|a| a == want),
            "no {want} in {actions:?}"
        );
    }
    let r = s.call(
        "DELETE",
        &format!("/v1/portal/packages/{id}"),
        &[("Authorization", &bearer(&tm))],
        Body::None,
    );
    assert_eq!(r.status, 204, "deleting again changes nothing");

    // A package still uploading: its partial tus upload goes too.
    let pkg = create_package(&s, &tm, json!({ "access": "public" }));
    let pid = pkg["id"].as_str().unwrap().to_string();
    let meta = format!("package {},filename {}", b64(&pid), b64("part.bin"));
    let r = s.call(
        "POST",
        "/v1/portal/uploads",
        &[
            ("Authorization", &bearer(&tm)),
            ("Tus-Resumable", "1.0.0"),
            ("Upload-Length", "200000"),
            ("Upload-Metadata", &meta),
        ],
        Body::None,
    );
    assert_eq!(r.status, 201, "{}", r.json());
    let up = r
        .header("location")
        .unwrap()
        .rsplit('/')
        .next()
        .unwrap()
        .to_string();
    let r = s.call(
        "PATCH",
        &format!("/v1/portal/uploads/{up}"),
        &[
            ("Authorization", &bearer(&tm)),
            ("Tus-Resumable", "1.0.0"),
            ("Content-Type", "application/offset+octet-stream"),
            ("Upload-Offset", "0"),
        ],
        Body::Bytes(&data[..100_000]),
    );
    assert_eq!(r.status, 204, "{}", r.json());
    assert!(!stored(&up).is_empty(), "the partial upload is in storage");
    let r = s.call(
        "DELETE",
        &format!("/v1/portal/packages/{pid}"),
        &[("Authorization", &bearer(&tm))],
        Body::None,
    );
    assert_eq!(r.status, 204, "{}", r.json());
    assert_eq!(get_package(&s, &tm, &pid)["state"], "purged");
    assert_eq!(stored(&up), Vec::<PathBuf>::new(), "partial upload left");
}

#[test]
fn a_disabled_user_is_refused_at_once_and_a_password_reset_revokes_sessions() {
    let dir = tempfile::tempdir().unwrap();
    let s = start(&dir.path().join("data"), &[]);
    let t = s.admin_token();
    let admin = bearer(&t);
    let pw = "member password 1";
    let (mid, tm) = member(&s, &t, "m@example.com", pw);
    let (session, _csrf, _) = login(&s, "m@example.com", pw);
    let cookie = |sess: &str| format!("moat_session={sess}");
    let me_cookie = |sess: &str| {
        s.call(
            "GET",
            "/v1/portal/auth/me",
            &[("Cookie", &cookie(sess))],
            Body::None,
        )
        .status
    };
    let me_bearer = || {
        s.call(
            "GET",
            "/v1/portal/packages",
            &[("Authorization", &bearer(&tm))],
            Body::None,
        )
        .status
    };
    let login_status = |p: &str| {
        s.call(
            "POST",
            "/v1/portal/auth/login",
            &[],
            Body::Json(json!({ "email": "m@example.com", "password": p })),
        )
        .status
    };
    let patch = |body: Value| {
        s.call(
            "PATCH",
            &format!("/v1/portal/users/{mid}"),
            &[("Authorization", &admin)],
            Body::Json(body),
        )
    };
    assert_eq!((me_cookie(&session), me_bearer()), (200, 200));

    // A member cannot manage users.
    let r = s.call(
        "GET",
        "/v1/portal/users",
        &[("Authorization", &bearer(&tm))],
        Body::None,
    );
    assert_eq!(r.status, 403);
    let r = s.call(
        "PATCH",
        &format!("/v1/portal/users/{mid}"),
        &[("Authorization", &bearer(&tm))],
        Body::Json(json!({ "role": "admin" })),
    );
    assert_eq!(r.status, 403);

    // Disabled: the session cookie, the bearer token and login are refused at once.
    let r = patch(json!({ "disabled": true }));
    assert_eq!(r.status, 200, "{}", r.json());
    assert_eq!(r.json()["disabled"], true);
    assert_eq!(me_cookie(&session), 401);
    assert_eq!(me_bearer(), 401);
    assert_eq!(login_status(pw), 401);
    // Enabled again: the token works; the old session stays revoked.
    assert_eq!(patch(json!({ "disabled": false })).status, 200);
    assert_eq!(me_bearer(), 200);
    assert_eq!(me_cookie(&session), 401);
    assert_eq!(login_status(pw), 200);

    // Roles; the last admin can be neither demoted nor disabled.
    let r = patch(json!({ "role": "admin" }));
    assert_eq!((r.status, r.json()["role"].clone()), (200, json!("admin")));
    let r = s.call(
        "GET",
        "/v1/portal/users",
        &[("Authorization", &bearer(&tm))],
        Body::None,
    );
    assert_eq!(r.status, 200, "an admin now");
    assert_eq!(patch(json!({ "role": "member" })).status, 200);
    let users = s.call(
        "GET",
        "/v1/portal/users?limit=1",
        &[("Authorization", &admin)],
        Body::None,
    );
    let first = users.json();
    assert_eq!(first["items"][0]["email"], ADMIN);
    let aid = first["items"][0]["id"].as_str().unwrap().to_string();
    let cursor = first["next_cursor"].as_str().unwrap().to_string();
    let next = s
        .call(
            "GET",
            &format!("/v1/portal/users?limit=1&cursor={cursor}"),
            &[("Authorization", &admin)],
            Body::None,
        )
        .json();
    assert_eq!(next["items"][0]["email"], "m@example.com");
    assert_eq!(next["items"][0]["role"], "member");
    for body in [json!({ "role": "member" }), json!({ "disabled": true })] {
        let r = s.call(
            "PATCH",
            &format!("/v1/portal/users/{aid}"),
            &[("Authorization", &admin)],
            Body::Json(body),
        );
        assert_eq!(r.status, 409, "{}", r.json());
    }

    // The admin sets a new password: sessions end, the old password fails.
    let (s2, _, _) = login(&s, "m@example.com", pw);
    assert_eq!(me_cookie(&s2), 200);
    let new_pw = "a brand new password";
    let r = s.call(
        "POST",
        &format!("/v1/portal/users/{mid}/password"),
        &[("Authorization", &admin)],
        Body::Json(json!({ "password": new_pw })),
    );
    assert_eq!(r.status, 200, "{}", r.json());
    assert_eq!(me_cookie(&s2), 401);
    assert_eq!(login_status(pw), 401);
    let (s3, _, _) = login(&s, "m@example.com", new_pw);

    // Or a one-time reset token: sessions end at issue; it works once.
    let r = s.call(
        "POST",
        &format!("/v1/portal/users/{mid}/password"),
        &[("Authorization", &admin)],
        Body::Json(json!({ "reset_token": true })),
    );
    assert_eq!(r.status, 201, "{}", r.json());
    let token = r.json()["reset_token"].as_str().unwrap().to_string();
    assert!(
        r.json()["url"]
            .as_str()
            .unwrap()
            .ends_with(&format!("/reset#{token}"))
    );
    assert_eq!(me_cookie(&s3), 401);
    let chosen = "chosen by the member";
    let redeem = |tok: &str| {
        s.call(
            "POST",
            "/v1/portal/auth/reset",
            &[],
            Body::Json(json!({ "token": tok, "password": chosen })),
        )
        .status
    };
    assert_eq!(redeem(&token), 204);
    assert_eq!(redeem(&token), 403, "a reset token works once");
    login(&s, "m@example.com", chosen);

    let actions: Vec<String> = audit_actions(&s, &t, "limit=1000")
        .into_iter()
        .map(|(a, _)| a)
        .collect();
    for want in [
        "user.disable",
        "user.enable",
        "user.role",
        "user.password.set",
        "user.password.reset_token",
        "user.password.reset",
    ] {
        assert!(
            actions.iter().any(|a| a == want),
            "no {want} in {actions:?}"
        );
    }
}

/// Start a tus upload of `len` bytes named `name` into `package`.
fn tus_create(s: &Server, token: &str, package: &str, name: &str, len: usize) -> Resp {
    let meta = format!("package {},filename {}", b64(package), b64(name));
    s.call(
        "POST",
        "/v1/portal/uploads",
        &[
            ("Authorization", &bearer(token)),
            ("Tus-Resumable", "1.0.0"),
            ("Upload-Length", &len.to_string()),
            ("Upload-Metadata", &meta),
        ],
        Body::None,
    )
}

/// Send all of `data` to the upload `create` started, in one PATCH.
fn tus_send(s: &Server, token: &str, create: &Resp, data: &[u8]) -> Resp {
    assert_eq!(create.status, 201, "tus create: {}", create.json());
    let loc = create.header("location").expect("Location").to_string();
    s.call(
        "PATCH",
        &loc,
        &[
            ("Authorization", &bearer(token)),
            ("Tus-Resumable", "1.0.0"),
            ("Content-Type", "application/offset+octet-stream"),
            ("Upload-Offset", "0"),
        ],
        Body::Bytes(data),
    )
}

fn put_settings(s: &Server, token: &str, body: Value) -> Resp {
    s.call(
        "PUT",
        "/v1/portal/settings",
        &[("Authorization", &bearer(token))],
        Body::Json(body),
    )
}

/// A tus rejection's or an API error's stable code.
fn error_code(r: &Resp) -> String {
    let v = r.json();
    v["error"]["code"]
        .as_str()
        .or(v["code"].as_str())
        .unwrap_or_default()
        .to_string()
}

#[test]
fn admin_settings_override_the_config_everywhere_are_validated_audited_and_admin_only() {
    let dir = tempfile::tempdir().unwrap();
    let s = start(
        &dir.path().join("data"),
        &[
            (
                "MOAT__PORTAL__SMTP__URL",
                "smtp://mailer:hunter2-secret@127.0.0.1:2525",
            ),
            ("MOAT__PORTAL__SMTP__FROM", "moat <noreply@example.com>"),
        ],
    );
    let t = s.admin_token();
    let (_, tm) = member(&s, &t, "m@example.com", "member password 1");
    let r = s.call(
        "GET",
        "/v1/portal/settings",
        &[("Authorization", &bearer(&t))],
        Body::None,
    );
    assert_eq!(r.status, 200, "{}", r.json());
    let v = r.json();
    assert_eq!(v["settings"]["max_expiry_days"], 30);
    assert_eq!(v["settings"], v["config"]);
    assert_eq!(v["overridden"], json!([]));
    assert!(
        !v["engines"]["engines"].as_array().unwrap().is_empty(),
        "{v}"
    );
    assert_eq!(v["smtp"]["host"], "127.0.0.1");
    assert_eq!(v["smtp"]["port"], 2525);
    let text = String::from_utf8_lossy(&r.body);
    assert!(
        !text.contains("hunter2") && !text.contains("mailer"),
        "{text}"
    );

    // Members may neither read nor change them.
    for (m, body) in [("GET", Body::None), ("PUT", Body::Json(json!({})))] {
        let r = s.call(
            m,
            "/v1/portal/settings",
            &[("Authorization", &bearer(&tm))],
            body,
        );
        assert_eq!((r.status, error_code(&r)), (403, "forbidden".into()), "{m}");
    }
    // A cookie session needs the CSRF token, as every state change does.
    let (session, csrf, _) = login(&s, ADMIN, ADMIN_PW);
    let cookie = format!("moat_session={session}; moat_csrf={csrf}");
    let body = json!({ "quota_bytes": 123 });
    let r = s.call(
        "PUT",
        "/v1/portal/settings",
        &[("Cookie", &cookie), ("Origin", &s.base)],
        Body::Json(body.clone()),
    );
    assert_eq!((r.status, error_code(&r)), (403, "csrf".into()));
    let r = s.call(
        "PUT",
        "/v1/portal/settings",
        &[
            ("Cookie", &cookie),
            ("Origin", &s.base),
            ("X-CSRF-Token", &csrf),
        ],
        Body::Json(body),
    );
    assert_eq!(r.status, 200, "{}", r.json());
    assert_eq!(r.json()["settings"]["quota_bytes"], 123);

    // Invalid values and unknown fields are refused whole.
    for bad in [
        json!({ "default_expiry_days": 31 }),
        json!({ "max_expiry_days": 3 }),
        json!({ "bogus": 1 }),
        json!({ "denied_types": ["<b>"] }),
        json!({ "max_file_size": -1 }),
    ] {
        let r = put_settings(&s, &t, bad.clone());
        assert_eq!(
            (r.status, error_code(&r)),
            (400, "bad_request".into()),
            "{bad}"
        );
    }
    let r = put_settings(
        &s,
        &t,
        json!({ "max_expiry_days": 3, "default_expiry_days": 2, "max_file_size": 100 }),
    );
    assert_eq!(r.status, 200, "{}", r.json());
    let v = r.json();
    assert_eq!(v["settings"]["max_expiry_days"], 3);
    assert_eq!(v["config"]["max_expiry_days"], 30);
    let mut names: Vec<_> = v["overridden"].as_array().unwrap().iter().collect();
    names.sort_by_key(|n| n.to_string());
    assert_eq!(
        names,
        vec![
            "default_expiry_days",
            "max_expiry_days",
            "max_file_size",
            "quota_bytes"
        ]
    );

    // Every reader sees them: what a member is told of their limits...
    let r = s.call(
        "GET",
        "/v1/portal/auth/me",
        &[("Authorization", &bearer(&tm))],
        Body::None,
    );
    let lim = &r.json()["limits"];
    assert_eq!(
        (
            lim["default_expiry_days"].clone(),
            lim["max_expiry_days"].clone(),
            lim["quota_bytes"].clone()
        ),
        (json!(2), json!(3), json!(123)),
        "{}",
        r.json()
    );
    // ...the default and maximum expiry...
    let before = now_ms();
    let pkg = create_package(&s, &tm, json!({ "access": "public" }));
    let days = (pkg["expires_at"].as_i64().unwrap() - before) as f64 / 86_400_000.0;
    assert!((days - 2.0).abs() < 0.01, "default expiry {days} days");
    let id = pkg["id"].as_str().unwrap();
    let r = s.call(
        "POST",
        "/v1/portal/packages",
        &[("Authorization", &bearer(&tm))],
        Body::Json(json!({ "access": "public", "expires_in_days": 4 })),
    );
    assert_eq!(r.status, 400, "{}", r.json());
    assert!(
        r.json()["error"]["message"]
            .as_str()
            .unwrap()
            .contains("1..=3")
    );
    let r = s.call(
        "POST",
        &format!("/v1/portal/packages/{id}/extend"),
        &[("Authorization", &bearer(&tm))],
        Body::Json(json!({ "expires_in_days": 4 })),
    );
    assert_eq!(r.status, 400, "{}", r.json());
    // ...and the size limit, at tus creation (and in OPTIONS) and in multipart.
    let r = tus_create(&s, &tm, id, "big.bin", 101);
    assert_eq!((r.status, error_code(&r)), (413, "too_large".into()));
    let r = s.call(
        "OPTIONS",
        "/v1/portal/uploads",
        &[("Tus-Resumable", "1.0.0")],
        Body::None,
    );
    assert_eq!(r.header("tus-max-size"), Some("100"));
    let big = content("big", 101);
    let r = s.call(
        "POST",
        &format!("/v1/portal/packages/{id}/files"),
        &[("Authorization", &bearer(&tm))],
        Body::Files(&[("big.bin", &big)]),
    );
    assert_eq!((r.status, error_code(&r)), (413, "too_large".into()));
    let ok = tus_create(&s, &tm, id, "small.bin", 100);
    assert_eq!(tus_send(&s, &tm, &ok, &content("small", 100)).status, 204);

    // The change is audited: who, and every old and new value.
    let audit = audit_actions(&s, &t, "action=settings.update");
    assert_eq!(audit.len(), 2, "{audit:?}");
    let last = &audit[0].1;
    assert_eq!(last["actor_email"], ADMIN);
    assert_eq!(
        last["detail"]["changes"]["max_expiry_days"],
        json!({ "old": 30, "new": 3 })
    );
    assert_eq!(
        last["detail"]["changes"]["max_file_size"]["new"],
        json!(100)
    );
    assert_eq!(
        audit[1].1["detail"]["changes"]["quota_bytes"],
        json!({ "old": 0, "new": 123 })
    );

    // null puts the configuration's value back.
    let r = put_settings(
        &s,
        &t,
        json!({ "max_expiry_days": null, "default_expiry_days": null, "max_file_size": null, "quota_bytes": null }),
    );
    assert_eq!(r.status, 200, "{}", r.json());
    assert_eq!(r.json()["overridden"], json!([]));
    assert_eq!(r.json()["settings"], r.json()["config"]);
}

/// The start of a Windows program (an MZ header is what the sniffer reads).
fn exe_bytes() -> Vec<u8> {
    let mut v = b"MZ\x90\x00\x03\x00\x00\x00\x04\x00\x00\x00\xff\xff\x00\x00".to_vec();
    v.extend(content("program", 2000));
    v
}

/// A PNG signature and header chunk, then filler.
fn png_bytes() -> Vec<u8> {
    let mut v = b"\x89PNG\r\n\x1a\n\x00\x00\x00\x0dIHDR\x00\x00\x00\x01\x00\x00\x00\x01\x08\x02\x00\x00\x00".to_vec();
    v.extend(content("pixels", 2000));
    v
}

#[test]
fn file_types_are_judged_by_sniffed_content_never_by_name_and_refused_files_are_not_kept() {
    let dir = tempfile::tempdir().unwrap();
    let s = start(&dir.path().join("data"), &[]);
    let t = s.admin_token();
    let (_, tm) = member(&s, &t, "m@example.com", "member password 1");
    let r = put_settings(&s, &t, json!({ "denied_types": ["executable"] }));
    assert_eq!(r.status, 200, "{}", r.json());
    let pkg = create_package(&s, &tm, json!({ "access": "public" }));
    let id = pkg["id"].as_str().unwrap().to_string();
    let link = pkg["links"]["public"].as_str().unwrap().to_string();

    // An EXE named .txt (and sent as text/plain) is refused over tus...
    let exe = exe_bytes();
    let c = tus_create(&s, &tm, &id, "notes.txt", exe.len());
    let r = tus_send(&s, &tm, &c, &exe);
    assert_eq!(
        (r.status, error_code(&r)),
        (415, "file_type_refused".into()),
        "{}",
        r.json()
    );
    // ...and as a multipart part; a text file is accepted.
    let text = content("plain text", 3000);
    let r = s.call(
        "POST",
        &format!("/v1/portal/packages/{id}/files"),
        &[("Authorization", &bearer(&tm))],
        Body::Files(&[("readme.txt", &text), ("setup.txt", &exe)]),
    );
    assert_eq!(
        (r.status, error_code(&r)),
        (415, "file_type_refused".into()),
        "{}",
        r.json()
    );
    assert!(
        r.json()["error"]["message"]
            .as_str()
            .unwrap()
            .contains("application/vnd.microsoft.portable-executable")
    );
    let files = get_package(&s, &tm, &id)["files"].clone();
    let names: Vec<_> = files
        .as_array()
        .unwrap()
        .iter()
        .map(|f| f["name"].clone())
        .collect();
    assert_eq!(
        names,
        vec![json!("readme.txt")],
        "the refused files are not kept"
    );
    assert!(
        !dir_contains(&s.data.join("portal"), &exe[..16]),
        "no plaintext anywhere, as ever"
    );
    let refused = audit_actions(&s, &t, &format!("package={id}&action=upload.refused"));
    assert_eq!(refused.len(), 2, "{refused:?}");
    // The ciphertext of the refused files is gone: only readme.txt's object
    // remains in the vault.
    let objects = walk(&s.data.join("portal").join("vault").join("objects"));
    assert_eq!(objects.len(), 1, "{objects:?}");

    // Only images allowed: a PNG named .exe is accepted, text named .png is not.
    let r = put_settings(
        &s,
        &t,
        json!({ "denied_types": null, "allowed_types": ["image/*"] }),
    );
    assert_eq!(r.status, 200, "{}", r.json());
    let pkg2 = create_package(&s, &tm, json!({ "access": "public" }));
    let id2 = pkg2["id"].as_str().unwrap().to_string();
    let link2 = pkg2["links"]["public"].as_str().unwrap().to_string();
    let png = png_bytes();
    let c = tus_create(&s, &tm, &id2, "picture.exe", png.len());
    let r = tus_send(&s, &tm, &c, &png);
    assert_eq!(r.status, 204, "{}", r.json());
    let c = tus_create(&s, &tm, &id2, "fake.png", text.len());
    let r = tus_send(&s, &tm, &c, &text);
    assert_eq!(
        (r.status, error_code(&r)),
        (415, "file_type_refused".into())
    );
    let done = audit_actions(&s, &t, &format!("package={id2}&action=upload.complete"));
    assert_eq!(done[0].1["detail"]["type"], "image/png");
    submit(&s, &tm, &id2);
    let p = wait_state(&s, &tm, &id2, "available", 60);
    assert_eq!(p["files"].as_array().unwrap().len(), 1);
    let fid = p["files"][0]["id"].as_str().unwrap();
    let r = s.call("GET", &format!("{link2}/files/{fid}"), &[], Body::None);
    assert_eq!(r.status, 200);
    assert!(r.body == png, "the accepted PNG downloads byte for byte");
    let _ = link;
}

#[test]
fn the_quota_counts_every_unpurged_package_from_tus_creation_and_multipart_bytes() {
    let dir = tempfile::tempdir().unwrap();
    let s = start(
        &dir.path().join("data"),
        &[("MOAT__PORTAL__QUOTA_BYTES", "1000")],
    );
    let t = s.admin_token();
    let (_, tm) = member(&s, &t, "m@example.com", "member password 1");
    let a = create_package(&s, &tm, json!({ "access": "public" }));
    let a = a["id"].as_str().unwrap().to_string();
    let r = tus_create(&s, &tm, &a, "x.bin", 1001);
    assert_eq!(
        (r.status, error_code(&r)),
        (413, "quota_exceeded".into()),
        "{}",
        r.json()
    );
    let c = tus_create(&s, &tm, &a, "a.bin", 600);
    assert_eq!(tus_send(&s, &tm, &c, &content("a", 600)).status, 204);
    submit(&s, &tm, &a);
    wait_state(&s, &tm, &a, "available", 60);

    // Another package: the first one's bytes still count.
    let b = create_package(&s, &tm, json!({ "access": "public" }));
    let b = b["id"].as_str().unwrap().to_string();
    let r = tus_create(&s, &tm, &b, "b.bin", 500);
    assert_eq!((r.status, error_code(&r)), (413, "quota_exceeded".into()));
    // A started upload reserves its declared size before any byte arrives.
    let reserved = tus_create(&s, &tm, &b, "b.bin", 400);
    assert_eq!(reserved.status, 201, "{}", reserved.json());
    let one = [b'x'];
    let r = s.call(
        "POST",
        &format!("/v1/portal/packages/{b}/files"),
        &[("Authorization", &bearer(&tm))],
        Body::Files(&[("c.bin", &one)]),
    );
    assert_eq!(
        (r.status, error_code(&r)),
        (413, "quota_exceeded".into()),
        "{}",
        r.json()
    );
    // The admin's setting overrides the config: a larger quota admits more,
    // and the multipart stream is cut where the quota ends.
    let r = put_settings(&s, &t, json!({ "quota_bytes": 1500 }));
    assert_eq!(r.status, 200);
    let fits = content("fits", 400);
    let r = s.call(
        "POST",
        &format!("/v1/portal/packages/{b}/files"),
        &[("Authorization", &bearer(&tm))],
        Body::Files(&[("fits.bin", &fits)]),
    );
    assert_eq!(r.status, 201, "{}", r.json());
    let over = content("over", 200);
    let r = s.call(
        "POST",
        &format!("/v1/portal/packages/{b}/files"),
        &[("Authorization", &bearer(&tm))],
        Body::Files(&[("over.bin", &over)]),
    );
    assert_eq!((r.status, error_code(&r)), (413, "quota_exceeded".into()));
    // Purging the first package frees its bytes.
    let r = s.call(
        "DELETE",
        &format!("/v1/portal/packages/{a}"),
        &[("Authorization", &bearer(&tm))],
        Body::None,
    );
    assert_eq!(r.status, 204, "{}", r.json());
    let r = s.call(
        "POST",
        &format!("/v1/portal/packages/{b}/files"),
        &[("Authorization", &bearer(&tm))],
        Body::Files(&[("over.bin", &over)]),
    );
    assert_eq!(r.status, 201, "{}", r.json());
}

#[test]
fn rotate_kek_keeps_every_file_readable_and_the_old_kek_opens_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    let s = start(&data, &[]);
    let t = s.admin_token();
    let one = content("first package", 300_000);
    let two = content("second package", 70_001);
    let (id1, link1, f1) = available_package(&s, &t, &one);
    let (_, link2, f2) = available_package(&s, &t, &two);
    // The links' paths (each restart listens on another port).
    let path = |l: &str| l[s.base.len()..].to_string();
    let (link1, link2) = (path(&link1), path(&link2));
    let new_kek = dir.path().join("new.kek");
    std::fs::write(&new_kek, format!("{}\n", "5a".repeat(32))).unwrap();
    let kek_arg = new_kek.display().to_string();
    let out = s.portal_cli(&["rotate-kek", "--new-kek-file", &kek_arg], None);
    assert!(out.contains("re-wrapped 2 data keys"), "{out}");
    // Repeating it (an interrupted run) finds every key done.
    let out = s.portal_cli(&["rotate-kek", "--new-kek-file", &kek_arg], None);
    assert!(out.contains("re-wrapped 0 data keys (2 already"), "{out}");
    drop(s);

    // Under the new KEK every file downloads byte for byte.
    let s = start(&data, &[("MOAT__PORTAL__KEK_FILE", &kek_arg)]);
    for (link, fid, want) in [(&link1, &f1, &one), (&link2, &f2, &two)] {
        let r = s.call("GET", &format!("{link}/files/{fid}"), &[], Body::None);
        assert_eq!(r.status, 200, "{}", r.json());
        assert!(&r.body == want, "the bytes after rotation");
    }
    let r = s.call("GET", &format!("{link1}/zip"), &[], Body::None);
    assert_eq!(r.status, 200);
    assert_eq!(unzip(&r.body)[0].1, one);
    let audit = audit_actions(&s, &t, "action=settings.rotate_kek");
    assert_eq!(audit.len(), 2, "{audit:?}");
    drop(s);

    // The old KEK (still in <data>/portal/kek) opens nothing: an error, no byte.
    let s = start(&data, &[]);
    for (link, fid) in [(&link1, &f1), (&link2, &f2)] {
        let r = s.call("GET", &format!("{link}/files/{fid}"), &[], Body::None);
        assert!(r.status >= 500, "{} {}", r.status, r.json());
        assert!(!contains(&r.body, b"package-0000"), "no plaintext");
    }
    let r = s.call("GET", &format!("{link1}/zip"), &[], Body::None);
    assert!(
        r.status >= 500 || !contains(&r.body, b"first package"),
        "the zip serves no byte of the files: {}",
        r.status
    );
    let _ = id1;
}

/// A fresh database on the test PostgreSQL (`MOAT_TEST_POSTGRES_URL`,
/// started by scripts/test-deps.sh), so the scheduler's advisory lock is
/// this test's alone; its URL.
fn pg_database(name: &str) -> String {
    let base = std::env::var("MOAT_TEST_POSTGRES_URL")
        .unwrap_or_else(|_| "postgres://postgres@127.0.0.1:5432/test".into());
    let db = format!("moat_{name}_{}", std::process::id());
    for sql in [
        format!("DROP DATABASE IF EXISTS {db} WITH (FORCE)"),
        format!("CREATE DATABASE {db}"),
    ] {
        let st = Command::new("psql")
            .arg(&base)
            .args(["-q", "-v", "ON_ERROR_STOP=1", "-c", &sql])
            .status()
            .expect("psql");
        assert!(st.success(), "PostgreSQL must be running: {sql}");
    }
    let (server, _) = base.rsplit_once('/').expect("a database in the URL");
    format!("{server}/{db}")
}

fn leads(data: &Path) -> bool {
    log_of(data).contains("portal scheduler: this node is the leader")
}

#[test]
fn two_nodes_on_postgres_run_one_scheduler_and_the_survivor_takes_over_after_sigkill() {
    let dir = tempfile::tempdir().unwrap();
    let url = pg_database("sched");
    let kek = dir.path().join("kek");
    std::fs::write(&kek, "ab".repeat(32)).unwrap();
    let (kek_s, shared) = (
        kek.display().to_string(),
        dir.path().join("vault").display().to_string(),
    );
    let env = [
        ("MOAT_DATABASE_URL", url.as_str()),
        (
            "MOAT__PORTAL__SECRET",
            "a shared session secret of 32+ characters",
        ),
        ("MOAT__PORTAL__KEK_FILE", kek_s.as_str()),
        ("MOAT__PORTAL__STORAGE__DIR", shared.as_str()),
        ("MOAT__PORTAL__DAY_SECS", "8"),
        ("MOAT__PORTAL__SCAN_DEADLINE_SECS", "2"),
        ("MOAT_LOG", "info"),
    ];
    let da = dir.path().join("a");
    let db = dir.path().join("b");
    let a = start(&da, &env);
    let b = start(&db, &env);
    // Exactly one node leads (the other keeps trying the lock).
    let t = Instant::now();
    while !(leads(&da) || leads(&db)) && t.elapsed() < Duration::from_secs(20) {
        std::thread::sleep(Duration::from_millis(100));
    }
    std::thread::sleep(Duration::from_secs(3));
    assert!(
        leads(&da) ^ leads(&db),
        "exactly one scheduler: a={} b={}",
        leads(&da),
        leads(&db)
    );
    let (leader, survivor, sdata) = if leads(&da) { (a, b, db) } else { (b, a, da) };
    let t = leader.admin_token();
    // Packages that expire soon, and packages whose scan jobs are queued
    // on the leader just before it dies.
    let mut expiring = Vec::new();
    for i in 0..3 {
        let p = create_package(
            &leader,
            &t,
            json!({ "access": "public", "expires_in_days": 1 }),
        );
        let id = p["id"].as_str().unwrap().to_string();
        let c = tus_create(&leader, &t, &id, "e.txt", 100);
        assert_eq!(
            tus_send(&leader, &t, &c, &content(&format!("e{i}"), 100)).status,
            204
        );
        expiring.push(id);
    }
    let mut scanning = Vec::new();
    for i in 0..4 {
        let p = create_package(
            &leader,
            &t,
            json!({ "access": "public", "expires_in_days": 30 }),
        );
        let id = p["id"].as_str().unwrap().to_string();
        let c = tus_create(&leader, &t, &id, "s.txt", 20_000);
        assert_eq!(
            tus_send(&leader, &t, &c, &content(&format!("s{i}"), 20_000)).status,
            204
        );
        scanning.push(id);
    }
    for id in &scanning {
        submit(&leader, &t, id);
    }
    drop(leader); // SIGKILL
    let t0 = Instant::now();
    while !leads(&sdata) {
        assert!(
            t0.elapsed() < Duration::from_secs(30),
            "the survivor never took the scheduler over: {}",
            log_of(&sdata)
        );
        std::thread::sleep(Duration::from_millis(200));
    }
    // The survivor's scheduler expires the packages, each once...
    for id in &expiring {
        wait_state(&survivor, &t, id, "expired", 60);
        let n = audit_actions(
            &survivor,
            &t,
            &format!("package={id}&action=package.expired"),
        );
        assert_eq!(n.len(), 1, "expired once: {n:?}");
    }
    // ...and no scan job is lost: jobs the dead node held are queued again.
    for id in &scanning {
        let p = wait_state(&survivor, &t, id, "available", 150);
        assert_eq!(p["files"][0]["status"], "clean");
    }
    std::thread::sleep(Duration::from_secs(3));
    for id in &expiring {
        let n = audit_actions(
            &survivor,
            &t,
            &format!("package={id}&action=package.expired"),
        );
        assert_eq!(n.len(), 1, "still expired once: {n:?}");
    }
    drop(survivor);
    drop_pg_database(&url);
}

fn drop_pg_database(url: &str) {
    let base = std::env::var("MOAT_TEST_POSTGRES_URL")
        .unwrap_or_else(|_| "postgres://postgres@127.0.0.1:5432/test".into());
    if let Some((_, db)) = url.rsplit_once('/') {
        let _ = Command::new("psql")
            .arg(&base)
            .args([
                "-q",
                "-c",
                &format!("DROP DATABASE IF EXISTS {db} WITH (FORCE)"),
            ])
            .status();
    }
}

#[test]
fn a_rescan_on_new_signatures_quarantines_an_available_package_that_now_matches() {
    let dir = tempfile::tempdir().unwrap();
    let (_smtp, smtp_port, maildir) = smtp_server(dir.path());
    let smtp_url = format!("smtp://127.0.0.1:{smtp_port}");
    let sigs = dir.path().join("sigs");
    std::fs::create_dir(&sigs).unwrap();
    std::fs::write(
        sigs.join("a.ndb"),
        "Moat.Other:0:*:6e6f742d696e2d616e792d66696c65\n",
    )
    .unwrap();
    let data = dir.path().join("data");
    let s = start(
        &data,
        &[
            ("MOAT_SIGNATURES", sigs.to_str().unwrap()),
            ("MOAT__PORTAL__RESCAN_ON_UPDATE", "true"),
            ("MOAT__PORTAL__SMTP__URL", &smtp_url),
            ("MOAT__PORTAL__SMTP__FROM", "moat <noreply@example.com>"),
        ],
    );
    let t = s.admin_token();
    let mut ids = Vec::new();
    for (name, body) in [
        ("later.txt", content("later-detected-marker", 3000)),
        ("plain.txt", content("plain", 3000)),
    ] {
        let p = create_package(&s, &t, json!({ "access": "public" }));
        let id = p["id"].as_str().unwrap().to_string();
        tus_upload(&s, &t, &id, name, &body);
        submit(&s, &t, &id);
        wait_state(&s, &t, &id, "available", 60);
        ids.push((id, p["links"]["public"].as_str().unwrap().to_string()));
    }
    // The scheduler remembers the engine set the packages were cleared by.
    let t0 = Instant::now();
    while !log_of(&data).contains("engine set remembered for rescans") {
        assert!(t0.elapsed() < Duration::from_secs(30), "{}", log_of(&data));
        std::thread::sleep(Duration::from_millis(100));
    }
    // New signatures that match the first package's file, picked up by a reload.
    let marker = b"later-detected-marker";
    let hex: String = marker.iter().map(|b| format!("{b:02x}")).collect();
    std::fs::write(sigs.join("b.ndb"), format!("Moat.Rescan.Found:0:*:{hex}\n")).unwrap();
    sighup(&s._child.0);
    let p = wait_state(&s, &t, &ids[0].0, "quarantined", 60);
    assert_eq!(p["reason"], "infected", "{p}");
    assert_eq!(p["files"][0]["status"], "infected", "{p}");
    // Nothing of it is served any more.
    let fid = p["files"][0]["id"].as_str().unwrap();
    let r = s.call("GET", &format!("{}/files/{fid}", ids[0].1), &[], Body::None);
    assert_eq!(r.status, 403, "{}", r.json());
    assert!(!contains(&r.body, marker));
    // Audited as a rescan, once, with the new signature's name.
    let q = audit_actions(
        &s,
        &t,
        &format!("package={}&action=package.quarantined", ids[0].0),
    );
    assert_eq!(q.len(), 1, "{q:?}");
    assert_eq!(q[0].1["detail"]["rescan"], true, "{q:?}");
    let v = audit_actions(&s, &t, &format!("package={}&action=scan.verdict", ids[0].0));
    assert!(
        v.iter()
            .any(|(_, e)| e.to_string().contains("Moat.Rescan.Found")),
        "{v:?}"
    );
    // The admin is told.
    let t0 = Instant::now();
    while !mails(&maildir)
        .iter()
        .any(|m| m.contains(ADMIN) && m.contains("quarantined"))
    {
        assert!(t0.elapsed() < Duration::from_secs(30), "no quarantine mail");
        std::thread::sleep(Duration::from_millis(200));
    }
    // The other package still matches nothing and stays available.
    assert_eq!(get_package(&s, &t, &ids[1].0)["state"], "available");
    let fid = get_package(&s, &t, &ids[1].0)["files"][0]["id"]
        .as_str()
        .unwrap()
        .to_string();
    let r = s.call("GET", &format!("{}/files/{fid}", ids[1].1), &[], Body::None);
    assert_eq!(r.status, 200);
}

#[test]
fn recipients_who_have_not_downloaded_get_one_reminder_before_expiry() {
    let dir = tempfile::tempdir().unwrap();
    let (_smtp, smtp_port, maildir) = smtp_server(dir.path());
    let smtp_url = format!("smtp://127.0.0.1:{smtp_port}");
    // A day of 30 s: the package lives 30 s, reminders go 8 "hours" (10 s)
    // before. A package that becomes available inside that window gets no
    // reminder (by design), so upload and scan get 20 s: with a 12 s day
    // (8 s) a cold CI run, every test binary busy on two cores, missed it.
    let s = start(
        &dir.path().join("data"),
        &[
            ("MOAT__PORTAL__DAY_SECS", "30"),
            ("MOAT__PORTAL__REMINDER_HOURS", "8"),
            ("MOAT__PORTAL__SMTP__URL", &smtp_url),
            ("MOAT__PORTAL__SMTP__FROM", "moat <noreply@example.com>"),
        ],
    );
    let t = s.admin_token();
    let p = create_package(
        &s,
        &t,
        json!({ "access": "recipients", "message": "the quarterly figures",
                "recipients": ["ann@example.com", "ben@example.com"], "expires_in_days": 1 }),
    );
    let id = p["id"].as_str().unwrap().to_string();
    let link_of = |who: &str| {
        p["links"]["recipients"]
            .as_array()
            .unwrap()
            .iter()
            .find(|l| l["email"] == who)
            .and_then(|l| l["url"].as_str())
            .unwrap_or_else(|| panic!("no link for {who}: {p}"))
            .to_string()
    };
    let (ann, ben) = (link_of("ann@example.com"), link_of("ben@example.com"));
    let fid = tus_upload(&s, &t, &id, "figures.txt", &content("figures", 4000));
    submit(&s, &t, &id);
    let pkg = wait_state(&s, &t, &id, "available", 20);
    // Ben downloads; Ann does not.
    let r = s.call("GET", &format!("{ben}/files/{fid}"), &[], Body::None);
    assert_eq!(r.status, 200, "{}", r.json());
    let expires_at = pkg["expires_at"].as_i64().unwrap();
    wait_state(&s, &t, &id, "expired", 60);
    let reminders: Vec<String> = mails(&maildir)
        .into_iter()
        .map(|m| unquote_mail(&m))
        .filter(|m| m.contains("Reminder"))
        .collect();
    assert_eq!(
        reminders.len(),
        1,
        "one reminder, for Ann only: {reminders:?}"
    );
    assert!(reminders[0].contains("ann@example.com"), "{}", reminders[0]);
    assert!(
        reminders[0].contains(&ann),
        "the reminder carries Ann's link"
    );
    assert!(reminders[0].contains("the quarterly figures"));
    let audit = audit_actions(&s, &t, &format!("package={id}&action=link.reminded"));
    assert_eq!(audit.len(), 1, "{audit:?}");
    assert_eq!(audit[0].1["detail"]["recipient"], "ann@example.com");
    let at = audit[0].1["at"].as_i64().unwrap();
    assert!(
        at < expires_at,
        "reminded before expiry ({at} vs {expires_at})"
    );
}

#[test]
fn the_admins_sharing_policy_refuses_disallowed_access_modes_and_links_without_a_password() {
    let dir = tempfile::tempdir().unwrap();
    let s = start(&dir.path().join("data"), &[]);
    let t = s.admin_token();
    let (_, tm) = member(&s, &t, "m@example.com", "member password 1");
    let put = |body: Value| {
        s.call(
            "PUT",
            "/v1/portal/settings",
            &[("Authorization", &bearer(&t))],
            Body::Json(body),
        )
    };
    // An empty or unknown set of modes is refused and changes nothing.
    for bad in [json!([]), json!(["everyone"])] {
        let r = put(json!({ "access_modes": bad }));
        assert_eq!(r.status, 400, "{}", r.json());
    }
    let r = put(json!({ "require_password": true, "access_modes": ["recipients", "internal"] }));
    assert_eq!(r.status, 200, "{}", r.json());
    assert_eq!(r.json()["settings"]["require_password"], true);
    // Members see the policy with their limits.
    let me = s.call(
        "GET",
        "/v1/portal/auth/me",
        &[("Authorization", &bearer(&tm))],
        Body::None,
    );
    assert_eq!(
        me.json()["limits"]["access_modes"],
        json!(["recipients", "internal"])
    );
    assert_eq!(me.json()["limits"]["require_password"], true);
    let create = |req: Value| {
        s.call(
            "POST",
            "/v1/portal/packages",
            &[("Authorization", &bearer(&tm))],
            Body::Json(req),
        )
    };
    let r = create(json!({ "access": "public", "password": "a package password" }));
    assert_eq!(r.status, 400, "{}", r.json());
    assert!(
        r.json()["error"]["message"]
            .as_str()
            .unwrap()
            .contains("does not allow")
    );
    let r = create(json!({ "access": "recipients", "recipients": ["r@example.com"] }));
    assert_eq!(r.status, 400, "{}", r.json());
    assert!(
        r.json()["error"]["message"]
            .as_str()
            .unwrap()
            .contains("requires a password")
    );
    let r = create(
        json!({ "access": "recipients", "recipients": ["r@example.com"], "password": "a package password" }),
    );
    assert_eq!(r.status, 201, "{}", r.json());
    assert_eq!(r.json()["has_password"], true);
    assert_eq!(create(json!({ "access": "internal" })).status, 201);
    // Back to the configuration: public links without a password again.
    let r = put(json!({ "require_password": null, "access_modes": null }));
    assert_eq!(r.status, 200, "{}", r.json());
    assert_eq!(create(json!({ "access": "public" })).status, 201);
    // The change is audited with old and new values.
    let a = audit_actions(&s, &t, "action=settings.update");
    assert!(
        a.iter()
            .any(|(_, e)| e["detail"]["changes"]["access_modes"]["new"]
                == json!(["recipients", "internal"])),
        "{a:?}"
    );
}
