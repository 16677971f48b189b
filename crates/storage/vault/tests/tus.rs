//! The tus router served on 127.0.0.1 with test hooks, driven by the real
//! npm `tus-js-client` under node and by raw HTTP requests.
mod common;

use async_trait::async_trait;
use axum::http::StatusCode;
use base64::Engine as _;
use common::{assert_no_plaintext, pattern};
use futures_util::StreamExt;
use moat_vault::{
    BackendConfig, DataKey, PutInfo, TusConfig, TusCreate, TusHooks, TusReject, TusTarget, Vault,
    VaultConfig, tus_router,
};
use sha2::{Digest, Sha256};
use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::{Duration, SystemTime};

#[derive(Clone)]
struct User(String);

#[derive(Default)]
struct Hooks {
    key: Option<Arc<DataKey>>,
    uploads: Mutex<HashMap<String, (String, TusTarget)>>,
    completed: Mutex<Vec<(String, PutInfo)>>,
    terminated: Mutex<Vec<String>>,
    created_meta: Mutex<Vec<std::collections::BTreeMap<String, String>>>,
    next: Mutex<u32>,
    /// The next `completed` call fails (the portal's database was down).
    fail_completed: std::sync::atomic::AtomicBool,
}

const LIMIT: u64 = 64 << 20;

#[async_trait]
impl TusHooks for Hooks {
    async fn create(
        &self,
        req: &TusCreate,
        ext: &http::Extensions,
    ) -> Result<TusTarget, TusReject> {
        let user = ext
            .get::<User>()
            .ok_or_else(|| TusReject::new(StatusCode::UNAUTHORIZED, "auth", "no user"))?;
        if !req.metadata.contains_key("package") {
            return Err(TusReject::new(
                StatusCode::BAD_REQUEST,
                "package",
                "no package",
            ));
        }
        self.created_meta.lock().unwrap().push(req.metadata.clone());
        let n = {
            let mut n = self.next.lock().unwrap();
            *n += 1;
            *n
        };
        let t = TusTarget {
            id: format!("up{n}"),
            object: format!("file{n}"),
            key: self.key.clone().unwrap(),
            max_size: LIMIT,
            expires_at: if req.metadata.contains_key("expired") {
                SystemTime::now() - Duration::from_secs(1)
            } else {
                SystemTime::now() + Duration::from_secs(3600)
            },
        };
        self.uploads
            .lock()
            .unwrap()
            .insert(t.id.clone(), (user.0.clone(), t.clone()));
        Ok(t)
    }

    async fn authorize(&self, id: &str, ext: &http::Extensions) -> Result<TusTarget, TusReject> {
        let user = ext.get::<User>().map(|u| u.0.clone()).unwrap_or_default();
        match self.uploads.lock().unwrap().get(id) {
            Some((owner, t)) if *owner == user => Ok(t.clone()),
            Some(_) => Err(TusReject::new(
                StatusCode::FORBIDDEN,
                "forbidden",
                "not yours",
            )),
            None => Err(TusReject::new(
                StatusCode::NOT_FOUND,
                "not_found",
                "no upload",
            )),
        }
    }

    async fn completed(&self, id: &str, info: &PutInfo) -> Result<(), TusReject> {
        if self
            .fail_completed
            .swap(false, std::sync::atomic::Ordering::SeqCst)
        {
            return Err(TusReject::new(
                StatusCode::SERVICE_UNAVAILABLE,
                "db_down",
                "try again",
            ));
        }
        self.completed.lock().unwrap().push((id.to_string(), *info));
        Ok(())
    }

    async fn terminated(&self, id: &str) -> Result<(), TusReject> {
        self.terminated.lock().unwrap().push(id.to_string());
        self.uploads.lock().unwrap().remove(id);
        Ok(())
    }
}

struct Server {
    base: String,
    vault: Vault,
    hooks: Arc<Hooks>,
    key: Arc<DataKey>,
    dir: tempfile::TempDir,
}

async fn serve(cfg: TusConfig) -> Server {
    let dir = tempfile::tempdir().unwrap();
    let vault = Vault::open(&VaultConfig {
        dir: dir.path().join("data"),
        backend: BackendConfig::Local,
    })
    .await
    .unwrap();
    let key = Arc::new(DataKey::generate());
    let hooks = Arc::new(Hooks {
        key: Some(key.clone()),
        ..Default::default()
    });
    let app = axum::Router::new()
        .nest(
            "/v1/portal/uploads",
            tus_router(vault.clone(), hooks.clone(), cfg),
        )
        // the portal's auth layer: here a header names the user
        .layer(axum::middleware::from_fn(
            |mut req: axum::extract::Request, next: axum::middleware::Next| async move {
                if let Some(u) = req.headers().get("x-user").and_then(|v| v.to_str().ok()) {
                    let u = User(u.to_string());
                    req.extensions_mut().insert(u);
                }
                next.run(req).await
            },
        ));
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move {
        axum::serve(listener, app).await.unwrap();
    });
    Server {
        base: format!("http://{addr}/v1/portal/uploads"),
        vault,
        hooks,
        key,
        dir,
    }
}

async fn read_back(v: &Vault, k: &DataKey, object: &str) -> Vec<u8> {
    let mut s = v.read(k, object, None).await.unwrap();
    let mut out = Vec::new();
    while let Some(b) = s.next().await {
        out.extend_from_slice(&b.unwrap());
    }
    out
}

fn node_modules() -> PathBuf {
    let p = std::env::var("MOAT_TEST_NODE_MODULES")
        .map(PathBuf::from)
        .unwrap_or_else(|_| {
            PathBuf::from(std::env::var("HOME").unwrap_or_default())
                .join(".cache/moat-test-node/node_modules")
        });
    assert!(
        p.join("tus-js-client").is_dir(),
        "tus-js-client not found in {} (eval \"$(bash scripts/test-deps.sh)\")",
        p.display()
    );
    p
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tus_js_client_upload_resumes_after_dropped_connection_and_reads_back_byte_for_byte() {
    let modules = node_modules();
    let srv = serve(TusConfig::default()).await;
    let size = 20 * 1024 * 1024 + 4321;
    let data = pattern(size, 42);
    let file = srv.dir.path().join("input.bin");
    std::fs::write(&file, &data).unwrap();
    let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/tus/upload.js");
    // 8 MiB chunks; the proxy cuts the connection 1 MiB into the second
    let chunk: u64 = 8 * 1024 * 1024;
    let cut_after = chunk + 1024 * 1024;
    let t0 = std::time::Instant::now();
    let out = tokio::process::Command::new("node")
        .arg(&script)
        .arg(&srv.base)
        .arg(&file)
        .arg(cut_after.to_string())
        .arg(chunk.to_string())
        .env("NODE_PATH", &modules)
        .output()
        .await
        .expect("running node");
    assert!(
        out.status.success(),
        "node: {}\n{}",
        String::from_utf8_lossy(&out.stderr),
        String::from_utf8_lossy(&out.stdout)
    );
    let r: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    eprintln!("tus-js-client ({:?}): {r}", t0.elapsed());
    assert_eq!(r["cut"], true, "{r}");
    assert_eq!(r["accepted"][0], chunk, "{r}");
    // after the cut the client asked for the offset: the server had kept
    // what arrived of the broken PATCH (all but the request heads' bytes)
    let head = r["headOffsets"][0].as_u64().unwrap();
    assert!(head > cut_after - 4096 && head < cut_after, "{r}");
    let patches: Vec<u64> = r["patchOffsets"]
        .as_array()
        .unwrap()
        .iter()
        .map(|v| v.as_u64().unwrap())
        .collect();
    assert_eq!(patches[..3], [0, chunk, head], "{r}");
    assert!(
        r["url"].as_str().unwrap().starts_with("http://127.0.0.1:"),
        "{r}"
    );

    let done = srv.hooks.completed.lock().unwrap().clone();
    assert_eq!(done.len(), 1);
    let (id, info) = &done[0];
    assert_eq!(info.size, size as u64);
    assert_eq!(info.sha256, <[u8; 32]>::from(Sha256::digest(&data)));
    let meta = srv.hooks.created_meta.lock().unwrap()[0].clone();
    assert_eq!(meta["filename"], "data.bin");
    assert_eq!(meta["package"], "pkg-1");
    let object = srv.hooks.uploads.lock().unwrap()[id].1.object.clone();
    assert_eq!(read_back(&srv.vault, &srv.key, &object).await, data);
    std::fs::remove_file(&file).unwrap();
    assert_no_plaintext(srv.dir.path(), &data);
}

fn tus(req: reqwest::RequestBuilder) -> reqwest::RequestBuilder {
    req.header("Tus-Resumable", "1.0.0")
        .header("x-user", "alice")
}

fn b64(s: &[u8]) -> String {
    base64::engine::general_purpose::STANDARD.encode(s)
}

async fn create(c: &reqwest::Client, base: &str, len: u64) -> String {
    let r = tus(c.post(base))
        .header("Upload-Length", len.to_string())
        .header(
            "Upload-Metadata",
            format!("package {},filename {}", b64(b"p"), b64(b"f.txt")),
        )
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 201);
    assert!(r.headers().contains_key("upload-expires"));
    let loc = r.headers()["location"].to_str().unwrap().to_string();
    assert!(loc.starts_with("/v1/portal/uploads/"), "{loc}");
    let origin = base.trim_end_matches("/v1/portal/uploads");
    format!("{origin}{loc}")
}

async fn patch(
    c: &reqwest::Client,
    url: &str,
    offset: u64,
    body: &[u8],
    checksum: Option<String>,
) -> reqwest::Response {
    let mut r = tus(c.patch(url))
        .header("Content-Type", "application/offset+octet-stream")
        .header("Upload-Offset", offset.to_string());
    if let Some(s) = checksum {
        r = r.header("Upload-Checksum", s);
    }
    r.body(body.to_vec()).send().await.unwrap()
}

async fn offset(c: &reqwest::Client, url: &str) -> u64 {
    let r = tus(c.head(url)).send().await.unwrap();
    assert_eq!(r.status(), 200);
    assert_eq!(r.headers()["cache-control"], "no-store");
    assert_eq!(r.headers()["tus-resumable"], "1.0.0");
    r.headers()["upload-offset"]
        .to_str()
        .unwrap()
        .parse()
        .unwrap()
}

#[tokio::test]
async fn tus_protocol_statuses_offsets_checksums_and_termination() {
    let srv = serve(TusConfig {
        max_size: 32 << 20,
        ..Default::default()
    })
    .await;
    let c = reqwest::Client::new();
    let base = &srv.base;

    // OPTIONS advertises the protocol
    let r = c
        .request(reqwest::Method::OPTIONS, base)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 204);
    assert_eq!(r.headers()["tus-version"], "1.0.0");
    assert_eq!(
        r.headers()["tus-extension"],
        "creation,termination,expiration,checksum"
    );
    assert_eq!(
        r.headers()["tus-max-size"],
        (32u64 << 20).to_string().as_str()
    );
    assert_eq!(r.headers()["tus-checksum-algorithm"], "sha256");

    // another protocol version → 412
    let r = c
        .post(base)
        .header("Tus-Resumable", "0.2.2")
        .header("Upload-Length", "5")
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 412);
    assert_eq!(r.headers()["tus-version"], "1.0.0");
    // over Tus-Max-Size at creation → 413, and nothing was created
    let r = tus(c.post(base))
        .header("Upload-Length", (33u64 << 20).to_string())
        .header("Upload-Metadata", format!("package {}", b64(b"p")))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 413);
    assert!(srv.hooks.uploads.lock().unwrap().is_empty());
    // the hooks' own refusal goes out with its status and code
    let r = c
        .post(base)
        .header("Tus-Resumable", "1.0.0")
        .header("Upload-Length", "5")
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 401);
    let body: serde_json::Value = serde_json::from_slice(&r.bytes().await.unwrap()).unwrap();
    assert_eq!(body["code"], "auth");

    let data = pattern(200_000, 3);
    let url = create(&c, base, data.len() as u64).await;
    assert_eq!(offset(&c, &url).await, 0);
    // someone else's request → the hook's 403
    let r = c
        .head(&url)
        .header("Tus-Resumable", "1.0.0")
        .header("x-user", "mallory")
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 403);
    // wrong content type → 415
    let r = tus(c.patch(&url))
        .header("Content-Type", "application/octet-stream")
        .header("Upload-Offset", "0")
        .body(data[..10].to_vec())
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 415);

    let r = patch(&c, &url, 0, &data[..70_000], None).await;
    assert_eq!(r.status(), 204);
    assert_eq!(r.headers()["upload-offset"], "70000");
    assert!(r.headers().contains_key("upload-expires"));
    // an offset that does not match → 409, nothing stored
    let r = patch(&c, &url, 60_000, &data[60_000..80_000], None).await;
    assert_eq!(r.status(), 409);
    assert_eq!(offset(&c, &url).await, 70_000);
    // checksum mismatch → 460, the chunk discarded
    let bad = format!("sha256 {}", b64(&Sha256::digest(b"something else")));
    let r = patch(&c, &url, 70_000, &data[70_000..150_000], Some(bad)).await;
    assert_eq!(r.status().as_u16(), 460);
    assert_eq!(offset(&c, &url).await, 70_000);
    // unknown algorithm → 400
    let r = patch(
        &c,
        &url,
        70_000,
        &data[70_000..71_000],
        Some("md5 AAAA".into()),
    )
    .await;
    assert_eq!(r.status(), 400);
    // matching checksum → applied
    let good = format!("sha256 {}", b64(&Sha256::digest(&data[70_000..150_000])));
    let r = patch(&c, &url, 70_000, &data[70_000..150_000], Some(good)).await;
    assert_eq!(r.status(), 204);
    assert_eq!(r.headers()["upload-offset"], "150000");
    // a body larger than what is left of Upload-Length → 413, nothing stored
    let mut too_much = data[150_000..].to_vec();
    too_much.extend_from_slice(b"extra");
    let r = patch(&c, &url, 150_000, &too_much, None).await;
    assert_eq!(r.status(), 413);
    assert_eq!(offset(&c, &url).await, 150_000);
    assert!(srv.hooks.completed.lock().unwrap().is_empty());
    // the rest completes the upload
    let r = patch(&c, &url, 150_000, &data[150_000..], None).await;
    assert_eq!(r.status(), 204);
    assert_eq!(r.headers()["upload-offset"], "200000");
    assert_eq!(offset(&c, &url).await, 200_000);
    {
        let done = srv.hooks.completed.lock().unwrap();
        assert_eq!(done.len(), 1);
        assert_eq!(done[0].1.sha256, <[u8; 32]>::from(Sha256::digest(&data)));
    }
    let object = "file1";
    assert_eq!(read_back(&srv.vault, &srv.key, object).await, data);
    // a repeated final PATCH (lost response) is answered, not re-completed
    let r = patch(&c, &url, 200_000, b"", None).await;
    assert_eq!(r.status(), 204);
    assert_eq!(srv.hooks.completed.lock().unwrap().len(), 1);

    // a connection that drops in the middle of a PATCH body: what arrived is kept
    let data3 = pattern(100_000, 4);
    let url3 = create(&c, base, data3.len() as u64).await;
    let path3 = url3.trim_start_matches(base.trim_end_matches("/v1/portal/uploads"));
    let addr = base
        .trim_start_matches("http://")
        .split('/')
        .next()
        .unwrap()
        .to_string();
    {
        use tokio::io::AsyncWriteExt;
        let mut sock = tokio::net::TcpStream::connect(&addr).await.unwrap();
        let head = format!(
            "PATCH {path3} HTTP/1.1\r\nHost: {addr}\r\nTus-Resumable: 1.0.0\r\nx-user: alice\r\n\
             Content-Type: application/offset+octet-stream\r\nUpload-Offset: 0\r\n\
             Content-Length: 100000\r\n\r\n"
        );
        sock.write_all(head.as_bytes()).await.unwrap();
        sock.write_all(&data3[..70_000]).await.unwrap();
        sock.flush().await.unwrap();
    } // closed
    let t = std::time::Instant::now();
    while offset(&c, &url3).await != 70_000 {
        assert!(
            t.elapsed() < Duration::from_secs(10),
            "offset never reached 70000"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let r = patch(&c, &url3, 70_000, &data3[70_000..], None).await;
    assert_eq!(r.status(), 204);
    assert_eq!(read_back(&srv.vault, &srv.key, "file2").await, data3);

    // the portal fails to record the completion: the client is told, and
    // its next HEAD completes (again) before reporting the full offset
    let url4 = create(&c, base, 3).await;
    srv.hooks
        .fail_completed
        .store(true, std::sync::atomic::Ordering::SeqCst);
    let r = patch(&c, &url4, 0, b"abc", None).await;
    assert_eq!(r.status(), 503);
    assert_eq!(srv.hooks.completed.lock().unwrap().len(), 2);
    assert_eq!(offset(&c, &url4).await, 3);
    assert_eq!(srv.hooks.completed.lock().unwrap().len(), 3);
    assert_eq!(offset(&c, &url4).await, 3);
    assert_eq!(srv.hooks.completed.lock().unwrap().len(), 3);

    // an expired upload: 410, then purged
    let r = tus(c.post(base))
        .header("Upload-Length", "10")
        .header("Upload-Metadata", format!("package {},expired", b64(b"p")))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 201);
    let url5 = format!(
        "{}{}",
        base.trim_end_matches("/v1/portal/uploads"),
        r.headers()["location"].to_str().unwrap()
    );
    assert_eq!(tus(c.head(&url5)).send().await.unwrap().status(), 410);
    assert_eq!(patch(&c, &url5, 0, b"12", None).await.status(), 410);
    assert_eq!(srv.vault.purge_expired().await.unwrap(), ["up4"]);
    assert_eq!(tus(c.head(&url5)).send().await.unwrap().status(), 404);

    // termination of an unfinished upload
    let url2 = create(&c, base, 10).await;
    assert_eq!(patch(&c, &url2, 0, b"12345", None).await.status(), 204);
    let r = tus(c.delete(&url2)).send().await.unwrap();
    assert_eq!(r.status(), 204);
    assert_eq!(srv.hooks.terminated.lock().unwrap().as_slice(), ["up5"]);
    let r = tus(c.head(&url2)).send().await.unwrap();
    assert_eq!(r.status(), 404);
    let uploads = srv.dir.path().join("data/uploads");
    assert!(!uploads.join("up5.data").exists() && !uploads.join("up5.meta").exists());
    assert_no_plaintext(srv.dir.path(), &data);
}
