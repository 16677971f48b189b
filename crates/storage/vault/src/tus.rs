//! tus 1.0.0 (core, creation, termination, expiration, checksum with
//! sha256) as an axum router, to be nested under the portal's upload path.
//!
//! The portal decides who may upload what through [`TusHooks`]; this
//! module speaks the protocol and keeps the bytes encrypted (see
//! [`crate::upload`]).
//!
//! * A PATCH body is sealed as it arrives; a dropped connection keeps what
//!   arrived (HEAD reports it). `Upload-Offset` other than the stored offset
//!   → 409; a body past `Upload-Length` → 413 (by `Content-Length` before
//!   reading; in a chunked body at the chunk that crosses it, the bytes
//!   before that chunk being kept).
//! * A PATCH with `Upload-Checksum: sha256 <base64>` is first staged whole,
//!   sealed under a throw-away key in an anonymous 0600 file, then hashed:
//!   a mismatch → 460 and nothing of it is applied.
//! * On the last byte the upload is committed into its vault object and
//!   [`TusHooks::completed`] is called; if that fails the client's next
//!   HEAD or PATCH calls it again before reporting the upload complete.
//! * Only one request works on an upload at a time (HEAD included, so the
//!   offset it reports is settled); another waits up to
//!   [`TusConfig::lock_wait`], then gets 423 (tus clients retry on it).
// Helpers return the finished error Response; they run once per request.
#![allow(clippy::result_large_err)]

use crate::upload::{AppendEnd, UploadGuard, UploadMeta};
use crate::{DataKey, PutInfo, Vault, VaultError, check_name};
use async_trait::async_trait;
use axum::Router;
use axum::body::Body;
use axum::extract::{OriginalUri, Path, Request, State};
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::{head, post};
use base64::Engine as _;
use bytes::Bytes;
use futures_util::StreamExt;
use sha2::Digest as _;
use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::{Duration, SystemTime};

pub const TUS_VERSION: &str = "1.0.0";
pub const TUS_EXTENSIONS: &str = "creation,termination,expiration,checksum";

/// A creation request (POST).
#[derive(Debug, Clone)]
pub struct TusCreate {
    pub length: u64,
    /// `Upload-Metadata`, values base64-decoded (UTF-8; a key without a value maps to "").
    pub metadata: BTreeMap<String, String>,
}

/// Where an upload goes, as the portal decides.
#[derive(Debug, Clone)]
pub struct TusTarget {
    /// Upload id (in the URL): `[A-Za-z0-9_-]{1,128}`.
    pub id: String,
    /// Vault object the finished upload becomes.
    pub object: String,
    pub key: Arc<DataKey>,
    pub max_size: u64,
    /// The upload (if unfinished) is refused with 410 and purged after this.
    pub expires_at: SystemTime,
}

/// A refusal: HTTP status, stable code, message (sent as JSON).
#[derive(Debug, Clone)]
pub struct TusReject {
    pub status: StatusCode,
    pub code: &'static str,
    pub message: String,
}

impl TusReject {
    pub fn new(status: StatusCode, code: &'static str, message: impl Into<String>) -> TusReject {
        TusReject {
            status,
            code,
            message: message.into(),
        }
    }
}

impl IntoResponse for TusReject {
    fn into_response(self) -> Response {
        let body = serde_json::json!({ "error": self.message, "code": self.code });
        (self.status, axum::Json(body)).into_response()
    }
}

#[async_trait]
pub trait TusHooks: Send + Sync + 'static {
    /// POST: may this request start an upload of `req.length` bytes? The
    /// request's extensions carry what the portal's auth layer put there.
    async fn create(&self, req: &TusCreate, ext: &http::Extensions)
    -> Result<TusTarget, TusReject>;
    /// HEAD, PATCH, DELETE: may this request touch upload `id`?
    async fn authorize(&self, id: &str, ext: &http::Extensions) -> Result<TusTarget, TusReject>;
    /// Every byte is stored encrypted in the target's object.
    async fn completed(&self, id: &str, info: &PutInfo) -> Result<(), TusReject>;
    /// DELETE: the upload (and its object, if finished) is about to be
    /// removed; an Err keeps it.
    async fn terminated(&self, id: &str) -> Result<(), TusReject>;
    /// The current `Tus-Max-Size`, when the portal's settings decide it
    /// (they may change while the server runs); default:
    /// [`TusConfig::max_size`].
    async fn max_size(&self) -> Option<u64> {
        None
    }
}

#[derive(Debug, Clone)]
pub struct TusConfig {
    /// `Tus-Max-Size`; larger `Upload-Length` → 413 before the hooks run.
    pub max_size: u64,
    /// A PATCH body silent this long counts as dropped.
    pub idle_timeout: Duration,
    /// How long a request waits for another one on the same upload.
    pub lock_wait: Duration,
    /// Path the router is reachable under, for `Location`; default: the
    /// request's own path.
    pub base_path: Option<String>,
}

impl Default for TusConfig {
    fn default() -> Self {
        TusConfig {
            max_size: 16 << 30,
            idle_timeout: Duration::from_secs(60),
            lock_wait: Duration::from_secs(10),
            base_path: None,
        }
    }
}

struct St<H> {
    vault: Vault,
    hooks: Arc<H>,
    cfg: TusConfig,
}

/// The tus router: `POST /`, `OPTIONS /`, `HEAD|PATCH|DELETE|OPTIONS /{id}`.
pub fn tus_router<H: TusHooks>(vault: Vault, hooks: Arc<H>, cfg: TusConfig) -> Router {
    let st = Arc::new(St { vault, hooks, cfg });
    Router::new()
        .route("/", post(create::<H>).options(options::<H>))
        .route(
            "/{id}",
            head(head_upload::<H>)
                .patch(patch::<H>)
                .delete(delete::<H>)
                .options(options::<H>),
        )
        .layer(axum::middleware::map_response(tus_resumable))
        .with_state(st)
}

async fn tus_resumable(mut res: Response) -> Response {
    res.headers_mut()
        .insert("tus-resumable", HeaderValue::from_static(TUS_VERSION));
    res
}

fn reject(status: StatusCode, code: &'static str, message: impl Into<String>) -> Response {
    TusReject::new(status, code, message).into_response()
}

fn vault_error(e: VaultError) -> Response {
    match e {
        VaultError::NotFound | VaultError::BadName => {
            reject(StatusCode::NOT_FOUND, "not_found", "no such upload")
        }
        VaultError::TooLarge => reject(StatusCode::PAYLOAD_TOO_LARGE, "too_large", e.to_string()),
        e => {
            tracing::error!(error = %e, "tus upload storage failed");
            reject(
                StatusCode::INTERNAL_SERVER_ERROR,
                "storage_error",
                "the upload could not be stored",
            )
        }
    }
}

fn check_version(h: &HeaderMap) -> Result<(), Response> {
    match h.get("tus-resumable") {
        Some(v) if v == TUS_VERSION => Ok(()),
        _ => {
            let mut r = reject(
                StatusCode::PRECONDITION_FAILED,
                "tus_version",
                "Tus-Resumable: 1.0.0 is required",
            );
            r.headers_mut()
                .insert("tus-version", HeaderValue::from_static(TUS_VERSION));
            Err(r)
        }
    }
}

fn header_u64(h: &HeaderMap, name: &str) -> Option<Result<u64, ()>> {
    let v = h.get(name)?;
    Some(
        v.to_str()
            .ok()
            .filter(|s| !s.is_empty() && s.bytes().all(|b| b.is_ascii_digit()))
            .and_then(|s| s.parse().ok())
            .ok_or(()),
    )
}

/// `key base64,key base64,key` → map. Keys: ASCII without spaces or commas,
/// unique; values: base64 of UTF-8.
pub fn parse_metadata(v: &str) -> Result<BTreeMap<String, String>, String> {
    let mut out = BTreeMap::new();
    if v.trim().is_empty() {
        return Ok(out);
    }
    for pair in v.split(',') {
        let mut it = pair.trim().splitn(2, ' ');
        let key = it.next().unwrap_or("");
        if key.is_empty() || !key.bytes().all(|b| b.is_ascii_graphic()) {
            return Err(format!("invalid metadata key {key:?}"));
        }
        let value = match it.next().map(str::trim) {
            None | Some("") => String::new(),
            Some(b64) => {
                let raw = base64::engine::general_purpose::STANDARD
                    .decode(b64)
                    .map_err(|_| format!("metadata {key}: value is not base64"))?;
                String::from_utf8(raw).map_err(|_| format!("metadata {key}: value is not UTF-8"))?
            }
        };
        if out.insert(key.to_string(), value).is_some() {
            return Err(format!("metadata key {key} repeated"));
        }
    }
    Ok(out)
}

fn parse_checksum(h: &HeaderMap) -> Result<Option<[u8; 32]>, Response> {
    let Some(v) = h.get("upload-checksum") else {
        return Ok(None);
    };
    let bad = |m: &str| reject(StatusCode::BAD_REQUEST, "checksum_header", m.to_string());
    let s = v.to_str().map_err(|_| bad("Upload-Checksum is not text"))?;
    let (alg, b64) = s
        .trim()
        .split_once(' ')
        .ok_or_else(|| bad("Upload-Checksum: expected `sha256 <base64>`"))?;
    if !alg.eq_ignore_ascii_case("sha256") {
        return Err(bad(
            "unsupported checksum algorithm; Tus-Checksum-Algorithm: sha256",
        ));
    }
    let raw = base64::engine::general_purpose::STANDARD
        .decode(b64.trim())
        .map_err(|_| bad("Upload-Checksum: digest is not base64"))?;
    let d: [u8; 32] = raw
        .try_into()
        .map_err(|_| bad("Upload-Checksum: a sha256 digest is 32 bytes"))?;
    Ok(Some(d))
}

fn expires_header(meta: &UploadMeta) -> HeaderValue {
    HeaderValue::from_str(&httpdate::fmt_http_date(meta.expires()))
        .unwrap_or_else(|_| HeaderValue::from_static("Thu, 01 Jan 1970 00:00:00 GMT"))
}

fn no_content(offset: u64, meta: &UploadMeta) -> Response {
    let mut r = StatusCode::NO_CONTENT.into_response();
    let h = r.headers_mut();
    h.insert("upload-offset", HeaderValue::from(offset));
    h.insert("upload-expires", expires_header(meta));
    r
}

async fn options<H: TusHooks>(State(st): State<Arc<St<H>>>) -> Response {
    let max_size = st.hooks.max_size().await.unwrap_or(st.cfg.max_size);
    let mut r = StatusCode::NO_CONTENT.into_response();
    let h = r.headers_mut();
    h.insert("tus-version", HeaderValue::from_static(TUS_VERSION));
    h.insert("tus-extension", HeaderValue::from_static(TUS_EXTENSIONS));
    h.insert("tus-max-size", HeaderValue::from(max_size));
    h.insert("tus-checksum-algorithm", HeaderValue::from_static("sha256"));
    r
}

async fn create<H: TusHooks>(State(st): State<Arc<St<H>>>, req: Request) -> Response {
    let h = req.headers();
    if let Err(r) = check_version(h) {
        return r;
    }
    if h.contains_key("upload-defer-length") {
        return reject(
            StatusCode::BAD_REQUEST,
            "defer_length_unsupported",
            "Upload-Defer-Length is not supported; send Upload-Length",
        );
    }
    let length = match header_u64(h, "upload-length") {
        Some(Ok(n)) => n,
        _ => {
            return reject(
                StatusCode::BAD_REQUEST,
                "upload_length",
                "Upload-Length is required (a non-negative integer)",
            );
        }
    };
    let max_size = st.hooks.max_size().await.unwrap_or(st.cfg.max_size);
    if length > max_size {
        return reject(
            StatusCode::PAYLOAD_TOO_LARGE,
            "too_large",
            format!("Upload-Length exceeds Tus-Max-Size {max_size}"),
        );
    }
    let metadata = match h.get("upload-metadata").map(|v| v.to_str()) {
        None => BTreeMap::new(),
        Some(Ok(v)) => match parse_metadata(v) {
            Ok(m) => m,
            Err(m) => return reject(StatusCode::BAD_REQUEST, "upload_metadata", m),
        },
        Some(Err(_)) => {
            return reject(StatusCode::BAD_REQUEST, "upload_metadata", "not text");
        }
    };
    let target = match st
        .hooks
        .create(&TusCreate { length, metadata }, req.extensions())
        .await
    {
        Ok(t) => t,
        Err(r) => return r.into_response(),
    };
    if check_name(&target.id).is_err() || check_name(&target.object).is_err() {
        tracing::error!(id = %target.id, "tus create hook returned an invalid id or object name");
        let _ = st.hooks.terminated(&target.id).await;
        return reject(
            StatusCode::INTERNAL_SERVER_ERROR,
            "internal",
            "invalid upload id",
        );
    }
    if length > target.max_size {
        let _ = st.hooks.terminated(&target.id).await;
        return reject(
            StatusCode::PAYLOAD_TOO_LARGE,
            "too_large",
            format!(
                "Upload-Length exceeds the limit of {} bytes",
                target.max_size
            ),
        );
    }
    let meta = match st
        .vault
        .upload_create(
            &target.id,
            &target.object,
            &target.key,
            length,
            target.expires_at,
        )
        .await
    {
        Ok(m) => m,
        Err(VaultError::Io(e)) if e.kind() == std::io::ErrorKind::AlreadyExists => {
            return reject(
                StatusCode::CONFLICT,
                "upload_exists",
                "upload id already in use",
            );
        }
        Err(e) => {
            let _ = st.hooks.terminated(&target.id).await;
            return vault_error(e);
        }
    };
    let base = match &st.cfg.base_path {
        Some(b) => b.clone(),
        None => req
            .extensions()
            .get::<OriginalUri>()
            .map(|u| u.path().to_string())
            .unwrap_or_else(|| req.uri().path().to_string()),
    };
    let location = format!("{}/{}", base.trim_end_matches('/'), target.id);
    tracing::info!(upload = %target.id, length, "tus upload created");
    let mut r = StatusCode::CREATED.into_response();
    let hm = r.headers_mut();
    if let Ok(v) = HeaderValue::from_str(&location) {
        hm.insert(header::LOCATION, v);
    }
    hm.insert("upload-offset", HeaderValue::from(0u64));
    hm.insert("upload-expires", expires_header(&meta));
    r
}

/// Commit (if not yet), tell the portal (if not yet). Returns the final offset.
async fn finish<H: TusHooks>(
    st: &St<H>,
    guard: &mut UploadGuard,
    id: &str,
    key: &DataKey,
) -> Result<u64, Response> {
    let (meta, info) = st
        .vault
        .upload_finish(guard, key)
        .await
        .map_err(vault_error)?;
    if !meta.acked {
        st.hooks
            .completed(id, &info)
            .await
            .map_err(IntoResponse::into_response)?;
        st.vault
            .upload_set_acked(guard)
            .await
            .map_err(vault_error)?;
        tracing::info!(upload = %id, size = info.size, "tus upload complete");
    }
    Ok(meta.length)
}

async fn lock<H: TusHooks>(st: &St<H>, id: &str) -> Result<UploadGuard, Response> {
    st.vault
        .upload_lock(id, st.cfg.lock_wait)
        .await
        .ok_or_else(|| {
            reject(
                StatusCode::LOCKED,
                "upload_busy",
                "another request is writing this upload",
            )
        })
}

fn gone() -> Response {
    reject(StatusCode::GONE, "upload_expired", "the upload has expired")
}

fn not_found() -> Response {
    reject(StatusCode::NOT_FOUND, "not_found", "no such upload")
}

async fn head_upload<H: TusHooks>(
    State(st): State<Arc<St<H>>>,
    Path(id): Path<String>,
    req: Request,
) -> Response {
    if let Err(r) = check_version(req.headers()) {
        return r;
    }
    if check_name(&id).is_err() {
        return not_found();
    }
    let target = match st.hooks.authorize(&id, req.extensions()).await {
        Ok(t) => t,
        Err(r) => return r.into_response(),
    };
    // wait for a PATCH still at work (e.g. one whose client just went
    // away) so that the offset reported is the settled one
    let mut guard = match lock(&st, &id).await {
        Ok(g) => g,
        Err(r) => return r,
    };
    let status = match st.vault.upload_status(&id).await {
        Ok(Some(s)) => s,
        Ok(None) => return not_found(),
        Err(e) => return vault_error(e),
    };
    if status.meta.finished.is_none() && status.meta.expired(SystemTime::now()) {
        return gone();
    }
    let mut offset = status.offset;
    if offset == status.meta.length && !status.meta.acked {
        offset = match finish(&st, &mut guard, &id, &target.key).await {
            Ok(o) => o,
            Err(r) => return r,
        };
    }
    let mut r = StatusCode::OK.into_response();
    let h = r.headers_mut();
    h.insert("upload-offset", HeaderValue::from(offset));
    h.insert("upload-length", HeaderValue::from(status.meta.length));
    h.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    h.insert("upload-expires", expires_header(&status.meta));
    r
}

async fn patch<H: TusHooks>(
    State(st): State<Arc<St<H>>>,
    Path(id): Path<String>,
    req: Request,
) -> Response {
    let h = req.headers();
    if let Err(r) = check_version(h) {
        return r;
    }
    if h.get(header::CONTENT_TYPE)
        .is_none_or(|v| v != "application/offset+octet-stream")
    {
        return reject(
            StatusCode::UNSUPPORTED_MEDIA_TYPE,
            "content_type",
            "Content-Type: application/offset+octet-stream is required",
        );
    }
    let claimed = match header_u64(h, "upload-offset") {
        Some(Ok(n)) => n,
        _ => {
            return reject(
                StatusCode::BAD_REQUEST,
                "upload_offset",
                "Upload-Offset is required (a non-negative integer)",
            );
        }
    };
    let checksum = match parse_checksum(h) {
        Ok(c) => c,
        Err(r) => return r,
    };
    let content_length = match header_u64(h, "content-length") {
        Some(Ok(n)) => Some(n),
        Some(Err(())) => {
            return reject(
                StatusCode::BAD_REQUEST,
                "content_length",
                "bad Content-Length",
            );
        }
        None => None,
    };
    if check_name(&id).is_err() {
        return not_found();
    }
    let target = match st.hooks.authorize(&id, req.extensions()).await {
        Ok(t) => t,
        Err(r) => return r.into_response(),
    };
    let body = req.into_body();
    // A task of its own: hyper drops the handler when the client goes
    // away, and what arrived before must still be made durable.
    let work = tokio::spawn(async move {
        patch_locked(&st, &id, &target, claimed, checksum, content_length, body).await
    });
    match work.await {
        Ok(r) => r,
        Err(e) => {
            tracing::error!(error = %e, "tus PATCH task failed");
            reject(
                StatusCode::INTERNAL_SERVER_ERROR,
                "internal",
                "internal error",
            )
        }
    }
}

async fn patch_locked<H: TusHooks>(
    st: &St<H>,
    id: &str,
    target: &TusTarget,
    claimed: u64,
    checksum: Option<[u8; 32]>,
    content_length: Option<u64>,
    body: Body,
) -> Response {
    let mut guard = match lock(st, id).await {
        Ok(g) => g,
        Err(r) => return r,
    };
    let status = match st.vault.upload_status(id).await {
        Ok(Some(s)) => s,
        Ok(None) => return not_found(),
        Err(e) => return vault_error(e),
    };
    let meta = status.meta;
    if meta.finished.is_none() && meta.expired(SystemTime::now()) {
        return gone();
    }
    if claimed != status.offset {
        return reject(
            StatusCode::CONFLICT,
            "offset_mismatch",
            format!(
                "Upload-Offset {claimed} does not match the stored offset {}",
                status.offset
            ),
        );
    }
    let room = meta.length - status.offset;
    if content_length.is_some_and(|n| n > room) {
        return reject(
            StatusCode::PAYLOAD_TOO_LARGE,
            "exceeds_length",
            format!("the body is larger than the {room} bytes left of Upload-Length"),
        );
    }
    if status.offset == meta.length {
        // nothing left to send: complete (again) and report
        return match finish(st, &mut guard, id, &target.key).await {
            Ok(o) => no_content(o, &meta),
            Err(r) => r,
        };
    }
    let appended = match checksum {
        None => {
            st.vault
                .upload_append(
                    &mut guard,
                    &target.key,
                    &meta,
                    body.into_data_stream(),
                    st.cfg.idle_timeout,
                )
                .await
        }
        Some(want) => {
            let staged = match stage(st, body, room).await {
                Ok(s) => s,
                Err(r) => return r,
            };
            if staged.sha256 != want {
                tracing::info!(upload = %id, "checksum mismatch: PATCH body discarded");
                return reject(
                    StatusCode::from_u16(460).unwrap_or(StatusCode::BAD_REQUEST),
                    "checksum_mismatch",
                    "the body does not match Upload-Checksum; nothing was stored",
                );
            }
            st.vault
                .upload_append(
                    &mut guard,
                    &target.key,
                    &meta,
                    staged.stream,
                    st.cfg.idle_timeout,
                )
                .await
        }
    };
    match appended {
        Err(e) => vault_error(e),
        Ok((AppendEnd::Overflow, _)) => reject(
            StatusCode::PAYLOAD_TOO_LARGE,
            "exceeds_length",
            "the body is larger than Upload-Length",
        ),
        Ok((AppendEnd::Interrupted, offset)) => reject(
            StatusCode::BAD_REQUEST,
            "body_interrupted",
            format!("the body broke off; {offset} bytes are stored, resume from there"),
        ),
        Ok((AppendEnd::Complete, offset)) if offset == meta.length => {
            match finish(st, &mut guard, id, &target.key).await {
                Ok(o) => no_content(o, &meta),
                Err(r) => r,
            }
        }
        Ok((AppendEnd::Complete, offset)) => no_content(offset, &meta),
    }
}

struct Staged {
    stream: crate::ByteStream,
    sha256: [u8; 32],
}

/// Read a whole PATCH body (at most `room` bytes) sealed under a throw-away
/// key into an anonymous 0600 file; return its digest and a stream that
/// decrypts it again.
async fn stage<H: TusHooks>(st: &St<H>, body: Body, room: u64) -> Result<Staged, Response> {
    use crate::crypto::ObjectCipher;
    use tokio::io::AsyncSeekExt;
    let key = DataKey::generate();
    let io = |e: std::io::Error| vault_error(VaultError::Io(e));
    let file = tempfile::tempfile_in(&st.vault.inner.staging).map_err(io)?;
    let mut out = crate::sink::BlockFile::new(file);
    let cipher = ObjectCipher::new(&key);
    let mut head = out.buffer();
    head.extend_from_slice(cipher.header());
    out.write(head).await.map_err(vault_error)?;
    let mut sealer = crate::Sealer::new(cipher, 0, &[], Some(sha2::Sha256::new()), out);
    let mut s = body.into_data_stream();
    loop {
        let chunk: Bytes = match tokio::time::timeout(st.cfg.idle_timeout, s.next()).await {
            Ok(Some(Ok(c))) => c,
            Ok(None) => break,
            Ok(Some(Err(_))) | Err(_) => {
                return Err(reject(
                    StatusCode::BAD_REQUEST,
                    "body_interrupted",
                    "the body broke off; a checksummed PATCH is applied whole or not at all",
                ));
            }
        };
        if sealer.offset() + chunk.len() as u64 > room {
            return Err(reject(
                StatusCode::PAYLOAD_TOO_LARGE,
                "exceeds_length",
                "the body is larger than Upload-Length",
            ));
        }
        sealer.push(&chunk).await.map_err(vault_error)?;
    }
    let (size, sha, file) = sealer.finish().await.map_err(vault_error)?;
    let mut file = tokio::fs::File::from_std(file);
    file.rewind().await.map_err(io)?;
    let mut header = [0u8; crate::crypto::HEADER_LEN];
    tokio::io::AsyncReadExt::read_exact(&mut file, &mut header)
        .await
        .map_err(io)?;
    let cipher = ObjectCipher::from_header(&key, &header).map_err(vault_error)?;
    let plan = crate::Plan::new(size, None).map_err(vault_error)?;
    let src: crate::backend::BoxRead = Box::new(file);
    Ok(Staged {
        stream: crate::decrypt_stream(cipher, src, plan),
        sha256: sha.unwrap_or_default(),
    })
}

async fn delete<H: TusHooks>(
    State(st): State<Arc<St<H>>>,
    Path(id): Path<String>,
    req: Request,
) -> Response {
    if let Err(r) = check_version(req.headers()) {
        return r;
    }
    if check_name(&id).is_err() {
        return not_found();
    }
    if let Err(r) = st.hooks.authorize(&id, req.extensions()).await {
        return r.into_response();
    }
    let guard = match lock(&st, &id).await {
        Ok(g) => g,
        Err(r) => return r,
    };
    let meta = match st.vault.upload_meta(&id).await {
        Ok(Some(m)) => m,
        Ok(None) => return not_found(),
        Err(e) => return vault_error(e),
    };
    if let Err(r) = st.hooks.terminated(&id).await {
        return r.into_response();
    }
    if meta.finished.is_some()
        && let Err(e) = st.vault.delete(&meta.object).await
    {
        return vault_error(e);
    }
    if let Err(e) = st.vault.upload_remove(guard).await {
        return vault_error(e);
    }
    tracing::info!(upload = %id, "tus upload terminated");
    StatusCode::NO_CONTENT.into_response()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn metadata_parsing() {
        let m = parse_metadata(
            "filename d29ybGRfZG9taW5hdGlvbl9wbGFuLnBkZg==,is_confidential,package YWJj",
        )
        .unwrap();
        assert_eq!(m["filename"], "world_domination_plan.pdf");
        assert_eq!(m["is_confidential"], "");
        assert_eq!(m["package"], "abc");
        assert!(parse_metadata("a !!!").is_err());
        assert!(parse_metadata("a YQ==,a YQ==").is_err());
        assert!(parse_metadata("").unwrap().is_empty());
        assert!(parse_metadata("x /w==").is_err(), "not UTF-8");
    }
}
