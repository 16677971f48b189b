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
        c.stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped());
        let mut child = c.spawn().unwrap();
        if let Some(s) = stdin {
            child.stdin.take().unwrap().write_all(s.as_bytes()).unwrap();
        }
        drop(child.stdin.take());
        let out = child.wait_with_output().unwrap();
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
    let out = Command::new("python3")
        .args(["-c", "import sys,zipfile,json; z=zipfile.ZipFile(sys.argv[1]); assert z.testzip() is None; print(json.dumps([[i.filename, z.read(i).hex()] for i in z.infolist()]))"])
        .arg(&z)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "not a valid zip: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    let v: Vec<(String, String)> = serde_json::from_slice(&out.stdout).unwrap();
    v.into_iter()
        .map(|(n, hex)| {
            let d = (0..hex.len())
                .step_by(2)
                .map(|i| u8::from_str_radix(&hex[i..i + 2], 16).unwrap())
                .collect();
            (n, d)
        })
        .collect()
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

/// A real SMTP server (Debian's python3-aiosmtpd) storing mail in a Maildir.
fn smtp_server(dir: &Path) -> (Proc, u16, PathBuf) {
    let port = free_port();
    let maildir = dir.join("maildir");
    let child = Command::new("/usr/bin/python3")
        .args([
            "-m",
            "aiosmtpd",
            "-n",
            "-l",
            &format!("127.0.0.1:{port}"),
            "-c",
            "aiosmtpd.handlers.Mailbox",
        ])
        .arg(&maildir)
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("python3-aiosmtpd (scripts/test-deps.sh installs it)");
    wait_port(port, 20);
    (Proc(child), port, maildir)
}

/// The messages in a Maildir, as text.
fn mails(maildir: &Path) -> Vec<String> {
    walk(&maildir.join("new"))
        .iter()
        .map(|p| std::fs::read_to_string(p).unwrap_or_default())
        .collect()
}

#[test]
fn a_clean_package_becomes_available_only_after_scanning_and_downloads_byte_for_byte() {
    let dir = tempfile::tempdir().unwrap();
    let (_smtp, smtp_port, maildir) = smtp_server(dir.path());
    let smtp_url = format!("smtp://127.0.0.1:{smtp_port}");
    let s = start(
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
    let dir = tempfile::tempdir().unwrap();
    let s = start(&dir.path().join("data"), &[]);
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
    let dir = tempfile::tempdir().unwrap();
    let closed = free_port().to_string();
    let addr = format!("127.0.0.1:{closed}");
    let s = start(
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
