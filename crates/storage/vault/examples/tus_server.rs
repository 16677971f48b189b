//! A stand-alone tus server over a local vault, for bench/portal_io.sh:
//! uploads at `/files` (any client, no auth), plaintext downloads with
//! `Range` at `GET /objects/{id}`.
//!
//!   cargo run -p moat-vault --example tus_server -- DATA_DIR PORT
#![forbid(unsafe_code)]

use async_trait::async_trait;
use axum::body::Body;
use axum::extract::{Path, State};
use axum::http::{HeaderMap, StatusCode, header};
use axum::response::{IntoResponse, Response};
use moat_vault::{
    BackendConfig, DataKey, PutInfo, TusConfig, TusCreate, TusHooks, TusReject, TusTarget, Vault,
    VaultConfig, tus_router,
};
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, SystemTime};

struct Hooks {
    key: Arc<DataKey>,
    next: AtomicU64,
}

impl Hooks {
    fn target(&self, id: String) -> TusTarget {
        TusTarget {
            object: id.clone(),
            id,
            key: self.key.clone(),
            max_size: 64 << 30,
            expires_at: SystemTime::now() + Duration::from_secs(86_400),
        }
    }
}

#[async_trait]
impl TusHooks for Hooks {
    async fn create(
        &self,
        _req: &TusCreate,
        _ext: &http::Extensions,
    ) -> Result<TusTarget, TusReject> {
        let n = self.next.fetch_add(1, Ordering::Relaxed);
        Ok(self.target(format!("u{}-{n}", std::process::id())))
    }
    async fn authorize(&self, id: &str, _ext: &http::Extensions) -> Result<TusTarget, TusReject> {
        Ok(self.target(id.to_string()))
    }
    async fn completed(&self, id: &str, info: &PutInfo) -> Result<(), TusReject> {
        eprintln!(
            "completed {id} {} bytes sha256 {}",
            info.size,
            hex::encode(info.sha256)
        );
        Ok(())
    }
    async fn terminated(&self, _id: &str) -> Result<(), TusReject> {
        Ok(())
    }
}

fn range(h: &HeaderMap, size: u64) -> Option<(u64, u64)> {
    let v = h
        .get(header::RANGE)?
        .to_str()
        .ok()?
        .strip_prefix("bytes=")?;
    let (a, b) = v.split_once('-')?;
    let a: u64 = a.parse().ok()?;
    let b: u64 = if b.is_empty() {
        size - 1
    } else {
        b.parse().ok()?
    };
    (a <= b && b < size).then_some((a, b + 1))
}

async fn download(
    State((vault, key)): State<(Vault, Arc<DataKey>)>,
    Path(id): Path<String>,
    headers: HeaderMap,
) -> Response {
    let size = match vault.size(&id).await {
        Ok(s) => s,
        Err(e) => return (StatusCode::NOT_FOUND, e.to_string()).into_response(),
    };
    let r = range(&headers, size);
    let stream = match vault.read(&key, &id, r).await {
        Ok(s) => s,
        Err(e) => return (StatusCode::INTERNAL_SERVER_ERROR, e.to_string()).into_response(),
    };
    let (status, len) = match r {
        Some((a, b)) => (StatusCode::PARTIAL_CONTENT, b - a),
        None => (StatusCode::OK, size),
    };
    let mut res = Response::new(Body::from_stream(stream));
    *res.status_mut() = status;
    res.headers_mut().insert(header::CONTENT_LENGTH, len.into());
    if let Some((a, b)) = r
        && let Ok(v) = format!("bytes {a}-{}/{size}", b - 1).parse()
    {
        res.headers_mut().insert(header::CONTENT_RANGE, v);
    }
    res
}

#[tokio::main]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    let mut args = std::env::args().skip(1);
    let dir = args.next().ok_or("usage: tus_server DATA_DIR PORT")?;
    let port: u16 = args
        .next()
        .ok_or("usage: tus_server DATA_DIR PORT")?
        .parse()?;
    let vault = Vault::open(&VaultConfig {
        dir: dir.into(),
        backend: BackendConfig::Local,
    })
    .await?;
    let key = Arc::new(DataKey::generate());
    let hooks = Arc::new(Hooks {
        key: key.clone(),
        next: AtomicU64::new(0),
    });
    let app = axum::Router::new()
        .route("/objects/{id}", axum::routing::get(download))
        .with_state((vault.clone(), key))
        .nest("/files", tus_router(vault, hooks, TusConfig::default()));
    let listener = tokio::net::TcpListener::bind(("127.0.0.1", port)).await?;
    eprintln!("listening on {}", listener.local_addr()?);
    axum::serve(listener, app).await?;
    Ok(())
}
