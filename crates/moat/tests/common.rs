//! Shared helpers for the binary's integration tests: they run the real `moat`.
#![allow(dead_code)]

use lapin::options::{
    BasicGetOptions, BasicPublishOptions, ConfirmSelectOptions, ExchangeDeclareOptions,
    QueueDeclareOptions,
};
use lapin::types::{AMQPValue, FieldTable};
use lapin::{BasicProperties, Connection, ConnectionProperties, ExchangeKind};
use moat_db::{ObjectLedger, ObjectState};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::time::{Duration, Instant};

pub const EICAR: &[u8] = br"X5O!P%@AP[4\PZX54(P^)7CC)7}$EICAR-STANDARD-ANTIVIRUS-TEST-FILE!$H+H*";

pub fn moat() -> Command {
    let mut c = Command::new(env!("CARGO_BIN_EXE_moat"));
    c.env_remove("MOAT_LOG");
    c
}

pub fn repo_root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../..")
        .canonicalize()
        .unwrap()
}

/// `../shared/bench` beside the checkout (or MOAT_SHARED_DIR).
pub fn shared_bench() -> PathBuf {
    let base = std::env::var_os("MOAT_SHARED_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|| repo_root().join("../shared"));
    let p = base.join("bench");
    assert!(
        p.join("gen_sigs.py").exists(),
        "shared generators not found at {}",
        p.display()
    );
    p
}

/// Small signature set + corpus from the shared generators.
pub fn gen_small(dir: &Path) -> (PathBuf, PathBuf) {
    let sigs = dir.join("sigs");
    let corpus = dir.join("corpus");
    let bench = shared_bench();
    let ok = Command::new("python3")
        .arg(bench.join("gen_sigs.py"))
        .arg(&sigs)
        .args(["--hashes", "3000", "--bodies", "300", "--planted", "16"])
        .status()
        .unwrap()
        .success();
    assert!(ok, "gen_sigs.py failed");
    let ok = Command::new("python3")
        .arg(bench.join("gen_corpus.py"))
        .arg(&sigs)
        .arg(&corpus)
        .args([
            "--clean-mib",
            "6",
            "--big-mib",
            "2",
            "--source",
            "/usr/share/doc",
            "--source",
            "/usr/lib/x86_64-linux-gnu",
        ])
        .status()
        .unwrap()
        .success();
    assert!(ok, "gen_corpus.py failed");
    (sigs, corpus)
}

pub fn json_lines(out: &Output) -> Vec<serde_json::Value> {
    String::from_utf8_lossy(&out.stdout)
        .lines()
        .filter(|l| !l.trim().is_empty())
        .map(|l| serde_json::from_str(l).unwrap_or_else(|e| panic!("bad JSON line {l:?}: {e}")))
        .collect()
}

pub fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

/// The members of a zip file: (name, bytes), checked by Python's zipfile.
pub fn unzip_file(zip: &Path) -> Vec<(String, Vec<u8>)> {
    let out = Command::new("python3")
        .args(["-c", "import sys,zipfile,json; z=zipfile.ZipFile(sys.argv[1]); assert z.testzip() is None; print(json.dumps([[i.filename, z.read(i).hex()] for i in z.infolist()]))"])
        .arg(zip)
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

/// Send SIGHUP to a child (moat reloads its engines).
pub fn sighup(child: &Child) {
    let pid = child.id().to_string();
    assert!(
        Command::new("kill")
            .args(["-HUP", &pid])
            .status()
            .unwrap()
            .success()
    );
}

/// A zip holding the given members (stored or deflated), built by hand-free means: python's zipfile.
pub fn python(script: &str, args: &[&Path]) {
    let ok = Command::new("python3")
        .arg("-c")
        .arg(script)
        .args(args)
        .status()
        .unwrap()
        .success();
    assert!(ok, "python helper failed: {script}");
}

// --- The bucket role (`moat bucket watch` / `scan`): moto S3, RabbitMQ, the watcher.

pub fn amqp_url() -> String {
    std::env::var("MOAT_TEST_AMQP_URL")
        .unwrap_or_else(|_| "amqp://guest:guest@127.0.0.1:5672/%2f".into())
}

pub fn uniq(prefix: &str) -> String {
    let n = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_nanos();
    format!("{prefix}-{}-{}", std::process::id(), n % 1_000_000_000)
}

/// Kills the child on drop.
pub struct Proc(pub Child);
impl Drop for Proc {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

pub fn wait_port(port: u16, secs: u64) {
    let t = Instant::now();
    while std::net::TcpStream::connect(("127.0.0.1", port)).is_err() {
        assert!(
            t.elapsed() < Duration::from_secs(secs),
            "port {port} never opened"
        );
        std::thread::sleep(Duration::from_millis(100));
    }
}

/// A real SMTP server (Debian's python3-aiosmtpd) storing mail in a
/// Maildir: (server, port, maildir).
pub fn smtp_server(dir: &Path) -> (Proc, u16, PathBuf) {
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

/// The messages delivered to a Maildir so far, as text.
pub fn mails(maildir: &Path) -> Vec<String> {
    let mut paths: Vec<PathBuf> = std::fs::read_dir(maildir.join("new"))
        .map(|rd| rd.flatten().map(|e| e.path()).collect())
        .unwrap_or_default();
    paths.sort();
    paths
        .iter()
        .map(|p| std::fs::read_to_string(p).unwrap_or_default())
        .collect()
}

/// Undo quoted-printable soft line breaks and `=3D` (mail bodies).
pub fn unquote_mail(m: &str) -> String {
    m.replace("=\r\n", "")
        .replace("=\n", "")
        .replace("=3D", "=")
}

/// moto_server on a port it picks itself (moat_testkit::Moto).
pub fn moto() -> (moat_testkit::Moto, String) {
    let m = moat_testkit::Moto::start();
    let endpoint = m.endpoint().to_string();
    (m, endpoint)
}

/// moto_server over HTTPS with the given certificate and key.
pub fn moto_https(cert: &Path, key: &Path) -> (moat_testkit::Moto, String) {
    let m = moat_testkit::Moto::start_tls(cert, key);
    let endpoint = m.endpoint().to_string();
    (m, endpoint)
}

pub async fn s3(endpoint: &str) -> moat_s3::S3 {
    moat_s3::S3::new(&moat_s3::S3Config {
        endpoint: Some(endpoint.into()),
        access_key: Some("testing".into()),
        secret_key: Some("testing".into()),
        ..Default::default()
    })
    .await
    .unwrap()
}

pub async fn put(
    s: &moat_s3::S3,
    bucket: &str,
    key: &str,
    body: Vec<u8>,
    tagging: Option<&str>,
) -> String {
    let out = s
        .client()
        .put_object()
        .bucket(bucket)
        .key(key)
        .set_tagging(tagging.map(str::to_string))
        .body(aws_sdk_s3::primitives::ByteStream::from(body))
        .send()
        .await
        .unwrap();
    out.e_tag()
        .unwrap_or_default()
        .trim_matches('"')
        .to_string()
}

pub async fn mkbucket(s: &moat_s3::S3, b: &str) {
    s.client().create_bucket().bucket(b).send().await.unwrap();
}

pub async fn tags(s: &moat_s3::S3, b: &str, k: &str) -> Vec<(String, String)> {
    s.get_tags(b, k, None).await.unwrap_or_default()
}

pub fn tag<'a>(t: &'a [(String, String)], k: &str) -> Option<&'a str> {
    t.iter().find(|(kk, _)| kk == k).map(|(_, v)| v.as_str())
}

/// The key as MinIO encodes it in events (Go's url.QueryEscape).
pub fn query_escape(s: &str) -> String {
    let mut o = String::new();
    for b in s.bytes() {
        match b {
            b' ' => o.push('+'),
            b'a'..=b'z' | b'A'..=b'Z' | b'0'..=b'9' | b'-' | b'_' | b'.' | b'~' => {
                o.push(b as char)
            }
            _ => o.push_str(&format!("%{b:02X}")),
        }
    }
    o
}

/// Exactly what MinIO publishes to an AMQP target.
pub fn minio_event(name: &str, bucket: &str, key: &str, size: usize, etag: &str) -> Vec<u8> {
    let k = query_escape(key);
    serde_json::json!({
        "EventName": name,
        "Key": format!("{bucket}/{key}"),
        "Records": [{
            "eventVersion": "2.0",
            "eventSource": "minio:s3",
            "awsRegion": "",
            "eventTime": "2026-11-22T22:00:00.000Z",
            "eventName": name,
            "userIdentity": {"principalId": "minioadmin"},
            "requestParameters": {"principalId": "minioadmin", "region": "", "sourceIPAddress": "127.0.0.1"},
            "responseElements": {"x-amz-id-2": "dd9025bab4ad464b049177c95eb6ebf374d3b3fd1af9251148b658df7ac2e3e8",
                "x-amz-request-id": "17CB1A8B3F0F0A4B", "x-minio-deployment-id": "0b3a1c2d",
                "x-minio-origin-endpoint": "http://127.0.0.1:9000"},
            "s3": {
                "s3SchemaVersion": "1.0",
                "configurationId": "Config",
                "bucket": {"name": bucket, "ownerIdentity": {"principalId": "minioadmin"}, "arn": format!("arn:aws:s3:::{bucket}")},
                "object": {"key": k, "size": size, "eTag": etag, "contentType": "application/octet-stream",
                    "userMetadata": {"content-type": "application/octet-stream"}, "sequencer": "17CB1A8B3F2C3D4E"}
            },
            "source": {"host": "127.0.0.1", "port": "", "userAgent": "MinIO (linux; amd64) minio-go/v7.0.70"}
        }]
    })
    .to_string()
    .into_bytes()
}

pub struct Amqp {
    pub ch: lapin::Channel,
    pub _conn: Connection,
}

impl Amqp {
    pub async fn new(exchange: &str) -> Amqp {
        let conn = Connection::connect(&amqp_url(), ConnectionProperties::default())
            .await
            .expect("RabbitMQ at MOAT_TEST_AMQP_URL");
        let ch = conn.create_channel().await.unwrap();
        ch.confirm_select(ConfirmSelectOptions::default())
            .await
            .unwrap();
        ch.exchange_declare(
            exchange.into(),
            ExchangeKind::Topic,
            ExchangeDeclareOptions {
                durable: true,
                ..Default::default()
            },
            FieldTable::default(),
        )
        .await
        .unwrap();
        Amqp { ch, _conn: conn }
    }
    pub async fn publish(&self, exchange: &str, body: &[u8]) {
        let c = self
            .ch
            .basic_publish(
                exchange.into(),
                "bucketlogs".into(),
                BasicPublishOptions::default(),
                body,
                BasicProperties::default().with_content_type("application/json".into()),
            )
            .await
            .unwrap()
            .await
            .unwrap();
        assert!(c.is_ack());
    }
    pub async fn count(&self, queue: &str) -> u32 {
        self.ch
            .queue_declare(
                queue.into(),
                QueueDeclareOptions {
                    passive: true,
                    ..Default::default()
                },
                FieldTable::default(),
            )
            .await
            .map(|q| q.message_count())
            .unwrap_or(0)
    }
    /// Take one dead letter: (body, x-moat-reason).
    pub async fn get(&self, queue: &str) -> Option<(Vec<u8>, String)> {
        let m = self
            .ch
            .basic_get(queue.into(), BasicGetOptions { no_ack: true })
            .await
            .ok()??;
        let reason = m
            .delivery
            .properties
            .headers()
            .as_ref()
            .and_then(|h| h.inner().get("x-moat-reason").cloned())
            .map(|v| match v {
                AMQPValue::LongString(s) => String::from_utf8_lossy(s.as_bytes()).to_string(),
                other => format!("{other:?}"),
            })
            .unwrap_or_default();
        Some((m.delivery.data.clone(), reason))
    }
}

pub async fn wait_for<F, Fut>(what: &str, secs: u64, mut f: F)
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = bool>,
{
    let t = Instant::now();
    loop {
        if f().await {
            return;
        }
        assert!(
            t.elapsed() < Duration::from_secs(secs),
            "timed out waiting for {what}"
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

/// A `moat bucket watch` process (killed on drop) writing its log to `log`.
pub fn watcher(config: &Path, log: &Path, env: &[(&str, &str)]) -> Proc {
    let f = std::fs::File::create(log).unwrap();
    let mut c = moat();
    c.args(["bucket", "watch", "--config"])
        .arg(config)
        .env("MOAT_LOG", "info,moat_bucket=debug")
        .stdout(Stdio::null())
        .stderr(f);
    for (k, v) in env {
        c.env(k, v);
    }
    let mut p = Proc(c.spawn().unwrap());
    // The watcher declares and binds its queue when it starts: events
    // published before that would be unroutable, so wait until it is ready.
    let t = Instant::now();
    while !log_tail(log).contains("moat bucket watch ready") {
        if let Ok(Some(st)) = p.0.try_wait() {
            panic!("moat bucket watch exited ({st}):\n{}", log_tail(log));
        }
        assert!(
            t.elapsed() < Duration::from_secs(90),
            "moat bucket watch not ready:\n{}",
            log_tail(log)
        );
        std::thread::sleep(Duration::from_millis(100));
    }
    p
}

pub fn log_tail(log: &Path) -> String {
    let s = String::from_utf8_lossy(&read_small(log)).to_string();
    let n = s.len().saturating_sub(4000);
    let i = s
        .char_indices()
        .map(|(i, _)| i)
        .find(|&i| i >= n)
        .unwrap_or(s.len());
    s[i..].to_string()
}

pub fn read_small(p: &Path) -> Vec<u8> {
    use std::io::Read;
    let mut v = Vec::new();
    if let Ok(f) = std::fs::File::open(p) {
        #[allow(clippy::disallowed_methods)] // bounded by take()
        let _ = f.take(1 << 20).read_to_end(&mut v);
    }
    v
}

pub struct Env {
    pub dir: tempfile::TempDir,
    pub endpoint: String,
    pub _moto: moat_testkit::Moto,
    pub s3: moat_s3::S3,
    pub bucket: String,
    pub queue: String,
    pub exchange: String,
    pub amqp: Amqp,
}

impl Env {
    pub async fn new() -> Env {
        let dir = tempfile::tempdir().unwrap();
        let (moto, endpoint) = moto();
        let s3 = s3(&endpoint).await;
        let bucket = uniq("up").to_lowercase();
        mkbucket(&s3, &bucket).await;
        let exchange = uniq("minio");
        let amqp = Amqp::new(&exchange).await;
        Env {
            dir,
            endpoint,
            _moto: moto,
            s3,
            bucket,
            queue: uniq("moat-q"),
            exchange,
            amqp,
        }
    }
    pub fn db_url(&self) -> String {
        format!("sqlite://{}/moat.db", self.dir.path().display())
    }
    /// A config file with the S3/AMQP wiring plus `extra` TOML in [bucket].
    pub fn config(&self, name: &str, engines: &str, bucket_extra: &str, tail: &str) -> PathBuf {
        let amqp = format!(
            r#"[[bucket.sources]]
type = "amqp"
url = "{amqp}"
queue = "{q}"
exchange = "{x}"
routing_key = "bucketlogs"
"#,
            amqp = amqp_url(),
            q = self.queue,
            x = self.exchange,
        );
        self.config_sources(name, engines, bucket_extra, &amqp, tail)
    }
    /// A config file with the S3 wiring, `bucket_extra` TOML in [bucket]
    /// and the given `[[bucket.sources]]` tables.
    pub fn config_sources(
        &self,
        name: &str,
        engines: &str,
        bucket_extra: &str,
        sources: &str,
        tail: &str,
    ) -> PathBuf {
        let p = self.dir.path().join(name);
        std::fs::write(
            &p,
            format!(
                r#"data_dir = "{dir}"
{engines}
[bucket]
concurrency = 4
{bucket_extra}
[bucket.s3]
endpoint = "{ep}"
access_key = "testing"
secret_key = "testing"
{sources}
{tail}
"#,
                dir = self.dir.path().display(),
                ep = self.endpoint,
            ),
        )
        .unwrap();
        p
    }
    pub async fn ledger(&self) -> ObjectLedger {
        moat_db::open_objects(&self.db_url()).await.unwrap()
    }
    pub async fn put_and_notify(&self, key: &str, body: Vec<u8>, tagging: Option<&str>) {
        let size = body.len();
        let etag = put(&self.s3, &self.bucket, key, body, tagging).await;
        self.amqp
            .publish(
                &self.exchange,
                &minio_event("s3:ObjectCreated:Put", &self.bucket, key, size, &etag),
            )
            .await;
    }
}

pub async fn state(l: &ObjectLedger, b: &str, k: &str) -> Option<ObjectState> {
    l.get(b, k, "").await.ok().flatten().map(|r| r.state)
}

pub async fn records_named(url: &str, name: &str) -> Vec<moat_db::ScanRecord> {
    let store = moat_db::open(url).await.unwrap();
    let mut out = Vec::new();
    let mut cursor: Option<String> = None;
    loop {
        let page = store.list(500, cursor.as_deref()).await.unwrap();
        if page.is_empty() {
            break;
        }
        cursor = page.last().map(|r| r.id.clone());
        out.extend(page.into_iter().filter(|r| r.name == name));
    }
    out
}

/// A self-signed certificate for localhost/127.0.0.1: DIR/NAME.crt, DIR/NAME.key.
pub fn gen_cert(dir: &Path, name: &str, cn: &str) {
    let ok = Command::new("openssl")
        .args([
            "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "2", "-subj",
        ])
        .arg(format!("/CN={cn}"))
        .args([
            "-addext",
            "subjectAltName=DNS:localhost,IP:127.0.0.1",
            "-keyout",
        ])
        .arg(dir.join(format!("{name}.key")))
        .arg("-out")
        .arg(dir.join(format!("{name}.crt")))
        .stderr(Stdio::null())
        .status()
        .unwrap()
        .success();
    assert!(ok, "openssl failed");
}

/// A private CA (DIR/NAME-ca.crt) and a server certificate it signed for
/// localhost/127.0.0.1 (DIR/NAME.crt, DIR/NAME.key): how a self-hosted
/// MinIO is usually set up, and what rustls insists on (a CA certificate is
/// not accepted as the server's own).
pub fn gen_ca_signed_cert(dir: &Path, name: &str) {
    let f = |suffix: &str| dir.join(format!("{name}{suffix}"));
    let run = |args: Vec<std::ffi::OsString>| {
        let ok = Command::new("openssl")
            .args(args)
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .status()
            .unwrap()
            .success();
        assert!(ok, "openssl failed");
    };
    let os = |s: &str| std::ffi::OsString::from(s);
    run(vec![
        os("req"),
        os("-x509"),
        os("-newkey"),
        os("rsa:2048"),
        os("-nodes"),
        os("-days"),
        os("2"),
        os("-subj"),
        os("/CN=moat test CA"),
        os("-keyout"),
        f("-ca.key").into(),
        os("-out"),
        f("-ca.crt").into(),
    ]);
    run(vec![
        os("req"),
        os("-newkey"),
        os("rsa:2048"),
        os("-nodes"),
        os("-subj"),
        os("/CN=localhost"),
        os("-keyout"),
        f(".key").into(),
        os("-out"),
        f(".csr").into(),
    ]);
    std::fs::write(
        f(".ext"),
        "subjectAltName=DNS:localhost,IP:127.0.0.1\nbasicConstraints=CA:FALSE\n",
    )
    .unwrap();
    run(vec![
        os("x509"),
        os("-req"),
        os("-days"),
        os("2"),
        os("-in"),
        f(".csr").into(),
        os("-CA"),
        f("-ca.crt").into(),
        os("-CAkey"),
        f("-ca.key").into(),
        os("-CAcreateserial"),
        os("-extfile"),
        f(".ext").into(),
        os("-out"),
        f(".crt").into(),
    ]);
}

/// `moat serve --config CFG --data-dir DIR/data` with `toml` written to
/// DIR/moat.toml and stderr in DIR/serve.log; returns once every port in
/// `ports` accepts connections.
pub fn serve_config(dir: &Path, toml: &str, ports: &[u16]) -> (Proc, PathBuf) {
    let cfg = dir.join("moat.toml");
    std::fs::write(&cfg, toml).unwrap();
    let log = dir.join("serve.log");
    let p = Proc(
        moat()
            .args(["serve", "--config"])
            .arg(&cfg)
            .arg("--data-dir")
            .arg(dir.join("data"))
            .stdout(Stdio::null())
            .stderr(Stdio::from(std::fs::File::create(&log).unwrap()))
            .spawn()
            .unwrap(),
    );
    for &port in ports {
        wait_port(port, 60);
    }
    (p, log)
}

/// The `/readyz` report of the API listening on `port`.
pub fn readyz(port: u16) -> serde_json::Value {
    let out = Command::new("curl")
        .args(["-s", &format!("http://127.0.0.1:{port}/readyz")])
        .output()
        .unwrap();
    serde_json::from_slice(&out.stdout).unwrap()
}

/// Everything a server sends on `s` until it closes, at most `max` bytes.
pub fn read_all(
    s: &mut std::net::TcpStream,
    max: u64,
    out: &mut Vec<u8>,
) -> std::io::Result<usize> {
    use std::io::Read;
    #[allow(clippy::disallowed_methods)] // bounded by take()
    let n = s.take(max).read_to_end(out)?;
    Ok(n)
}
