//! Routes and handlers.

use crate::config::ApiConfig;
use crate::error::ApiError;
use crate::scan::{ScanService, record_json};
use crate::telemetry;
use axum::extract::{DefaultBodyLimit, FromRequest, Multipart, Path, Query, Request, State};
use axum::http::{HeaderMap, StatusCode, header};
use axum::middleware::{self, Next};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::{Json, Router};
use futures_util::StreamExt;
use metrics_exporter_prometheus::PrometheusHandle;
use moat_core::{Blob, Spool};
use moat_scanner::Reloader;
use serde::Deserialize;
use serde_json::json;
use std::io::Write;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;
use tokio::sync::Semaphore;

/// Another way to be let read the records API (`GET` only): the portal's
/// admin session, so the dashboard works where `/v1/*` needs tokens.
pub type ReadAccess =
    Arc<dyn Fn(HeaderMap) -> futures_util::future::BoxFuture<'static, bool> + Send + Sync>;

/// Everything a handler needs.
#[derive(Clone)]
pub struct AppState {
    pub service: ScanService,
    pub cfg: Arc<ApiConfig>,
    pub tmp_dir: PathBuf,
    pub limiter: Arc<Semaphore>,
    pub reloader: Option<Arc<Reloader>>,
    pub metrics: Option<PrometheusHandle>,
    /// The process's roles (`/readyz` reports each); none outside `moat serve`.
    pub roles: Option<moat_role::Readiness>,
    /// The durable queues (in the same database: portal jobs, webhook
    /// events; on a broker: the portal's jobs with `queue_url`), for
    /// `/v1/stats/queues`.
    pub queues: Vec<Arc<dyn moat_db::EventQueue>>,
    /// Who else may read (`GET`) the `/v1/*` routes without a token.
    pub read_access: Option<ReadAccess>,
}

impl AppState {
    pub fn new(
        service: ScanService,
        cfg: ApiConfig,
        tmp_dir: PathBuf,
        reloader: Option<Arc<Reloader>>,
        metrics: Option<PrometheusHandle>,
    ) -> AppState {
        let limiter = Arc::new(Semaphore::new(cfg.max_concurrent_scans.max(1)));
        AppState {
            service,
            cfg: Arc::new(cfg),
            tmp_dir,
            limiter,
            reloader,
            metrics,
            roles: None,
            queues: Vec::new(),
            read_access: None,
        }
    }

    /// Let requests `f` admits read (`GET`) the `/v1/*` routes without a token.
    pub fn with_read_access(mut self, f: ReadAccess) -> AppState {
        self.read_access = Some(f);
        self
    }

    /// Report these queues' depth and lag in `/v1/stats/queues` too.
    pub fn with_queues(mut self, queues: Arc<dyn moat_db::EventQueue>) -> AppState {
        self.queues.push(queues);
        self
    }

    /// Report these roles' readiness in `/readyz` too.
    pub fn with_roles(mut self, roles: moat_role::Readiness) -> AppState {
        self.roles = Some(roles);
        self
    }
}

pub fn router(state: AppState) -> Router {
    let v1 = Router::new()
        .route("/v1/scan", post(scan))
        .route("/v1/scans", get(list_scans))
        .route("/v1/scans/{id}", get(get_scan))
        .route("/v1/engines", get(engines))
        .route("/v1/stats/verdicts", get(verdict_stats))
        .route("/v1/stats/queues", get(queue_stats))
        .layer(middleware::from_fn_with_state(state.clone(), require_token))
        // The scan handler streams bodies and enforces max_body_size itself.
        .layer(DefaultBodyLimit::disable());
    Router::new()
        .merge(v1)
        .route("/healthz", get(|| async { "ok\n" }))
        .route("/readyz", get(readyz))
        .route("/metrics", get(metrics_text))
        .with_state(state)
}

async fn require_token(State(st): State<AppState>, req: Request, next: Next) -> Response {
    let header = req
        .headers()
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok());
    if st.cfg.auth.allows(header) {
        return next.run(req).await;
    }
    if req.method() == axum::http::Method::GET
        && let Some(f) = &st.read_access
        && f(req.headers().clone()).await
    {
        return next.run(req).await;
    }
    ApiError::Unauthorized.into_response()
}

#[derive(Deserialize)]
struct ScanQuery {
    /// Display name for a raw body.
    name: Option<String>,
}

async fn scan(
    State(st): State<AppState>,
    Query(q): Query<ScanQuery>,
    req: Request,
) -> Result<Response, ApiError> {
    let Ok(_permit) = st.limiter.clone().try_acquire_owned() else {
        metrics::counter!(telemetry::REJECTED, "reason" => "busy").increment(1);
        return Err(ApiError::Busy);
    };
    let limit = st.cfg.max_body_size;
    if let Some(len) = content_length(req.headers())
        && len > limit
    {
        return Err(ApiError::TooLarge(limit));
    }
    let is_multipart = req
        .headers()
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|ct| ct.to_ascii_lowercase().starts_with("multipart/form-data"));
    if is_multipart {
        let mut mp = Multipart::from_request(req, &st)
            .await
            .map_err(|e| ApiError::BadRequest(e.body_text()))?;
        let mut files = Vec::new();
        let mut total: u64 = 0;
        while let Some(mut field) = mp
            .next_field()
            .await
            .map_err(|e| ApiError::BadRequest(format!("multipart: {e}")))?
        {
            let Some(filename) = field.file_name().map(str::to_string) else {
                continue; // a plain form field, not a file
            };
            let mut spool = Spool::new(
                st.cfg.spool_threshold,
                limit.saturating_sub(total),
                &st.tmp_dir,
            );
            while let Some(chunk) = field
                .chunk()
                .await
                .map_err(|e| ApiError::BadRequest(format!("multipart: {e}")))?
            {
                write_chunk(&mut spool, &chunk, limit)?;
            }
            total += spool.len();
            let (blob, sha) = spool
                .finish()
                .map_err(|e| ApiError::Internal(format!("spool: {e}")))?;
            files.push((filename, blob, sha));
        }
        if files.is_empty() {
            return Err(ApiError::BadRequest(
                "multipart body has no file parts".into(),
            ));
        }
        let mut out = Vec::with_capacity(files.len());
        for (name, blob, sha) in files {
            let rec = st.service.scan("api", &name, blob, sha).await?;
            out.push(record_json(&rec));
        }
        Ok(Json(json!({ "files": out })).into_response())
    } else {
        let name = q.name.unwrap_or_else(|| "body".to_string());
        let (blob, sha) = spool_body(req, &st, limit).await?;
        let rec = st.service.scan("api", &name, blob, sha).await?;
        Ok(Json(record_json(&rec)).into_response())
    }
}

fn content_length(h: &HeaderMap) -> Option<u64> {
    h.get(header::CONTENT_LENGTH)?.to_str().ok()?.parse().ok()
}

fn write_chunk(spool: &mut Spool, chunk: &[u8], limit: u64) -> Result<(), ApiError> {
    spool.write_all(chunk).map_err(|e| {
        if spool.is_over_limit() {
            ApiError::TooLarge(limit)
        } else {
            ApiError::Internal(format!("spooling body: {e}"))
        }
    })
}

async fn spool_body(req: Request, st: &AppState, limit: u64) -> Result<(Blob, [u8; 32]), ApiError> {
    let mut spool = Spool::new(st.cfg.spool_threshold, limit, &st.tmp_dir);
    let mut stream = req.into_body().into_data_stream();
    while let Some(chunk) = stream.next().await {
        let chunk = chunk.map_err(|e| ApiError::BadRequest(format!("reading body: {e}")))?;
        write_chunk(&mut spool, &chunk, limit)?;
    }
    spool
        .finish()
        .map_err(|e| ApiError::Internal(format!("spool: {e}")))
}

#[derive(Deserialize)]
struct ListQuery {
    limit: Option<u32>,
    cursor: Option<String>,
    /// Only records from this source.
    source: Option<String>,
    /// Only records with this verdict status.
    status: Option<String>,
}

/// A source or status filter: a short word, or nothing.
fn filter_word(v: Option<String>, what: &str) -> Result<Option<String>, ApiError> {
    match v.filter(|s| !s.is_empty()) {
        None => Ok(None),
        Some(s)
            if s.len() <= 64
                && s.bytes()
                    .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_') =>
        {
            Ok(Some(s))
        }
        Some(_) => Err(ApiError::BadRequest(format!("{what}: not a valid value"))),
    }
}

async fn list_scans(
    State(st): State<AppState>,
    Query(q): Query<ListQuery>,
) -> Result<Response, ApiError> {
    let limit = q.limit.unwrap_or(50).clamp(1, 500);
    let filter = moat_db::ScanFilter {
        source: filter_word(q.source, "source")?,
        status: filter_word(q.status, "status")?,
    };
    let recs = st
        .service
        .store
        .list_where(limit, q.cursor.as_deref(), &filter)
        .await
        .map_err(|e| ApiError::Storage(e.to_string()))?;
    let next = (recs.len() == limit as usize)
        .then(|| recs.last().map(|r| r.id.clone()))
        .flatten();
    let scans: Vec<_> = recs.iter().map(record_json).collect();
    Ok(Json(json!({ "scans": scans, "next_cursor": next })).into_response())
}

#[derive(Deserialize)]
struct StatsQuery {
    window: Option<String>,
}

/// A chart window: its name, total length and bucket width (ms).
fn stats_window(w: Option<&str>) -> Option<(&'static str, i64, i64)> {
    const MIN: i64 = 60_000;
    match w.unwrap_or("hour") {
        "hour" => Some(("hour", 60 * MIN, MIN)),
        "day" => Some(("day", 24 * 60 * MIN, 15 * MIN)),
        "week" => Some(("week", 7 * 24 * 60 * MIN, 60 * MIN)),
        _ => None,
    }
}

/// `GET /v1/stats/verdicts?window=hour|day|week`: scans per time bucket
/// and status (every bucket of the window, zeros included), with totals
/// per status and per source.
async fn verdict_stats(
    State(st): State<AppState>,
    Query(q): Query<StatsQuery>,
) -> Result<Response, ApiError> {
    let Some((name, span, width)) = stats_window(q.window.as_deref()) else {
        return Err(ApiError::BadRequest(
            "window: one of hour, day, week".into(),
        ));
    };
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| i64::try_from(d.as_millis()).unwrap_or(i64::MAX))
        .unwrap_or(0);
    let n = span / width;
    let first = now - now.rem_euclid(width) - (n - 1) * width;
    let counts = st
        .service
        .store
        .verdict_counts(first, width)
        .await
        .map_err(|e| ApiError::Storage(e.to_string()))?;
    let mut buckets: Vec<serde_json::Map<String, serde_json::Value>> =
        (0..n).map(|_| serde_json::Map::new()).collect();
    let mut totals = std::collections::BTreeMap::<String, u64>::new();
    for c in counts.buckets {
        let Ok(i) = usize::try_from((c.bucket - first) / width) else {
            continue;
        };
        let Some(b) = buckets.get_mut(i) else {
            continue;
        };
        b.insert(c.status.clone(), c.count.into());
        *totals.entry(c.status).or_default() += c.count;
    }
    let sources: std::collections::BTreeMap<String, u64> = counts.sources.into_iter().collect();
    let buckets: Vec<_> = buckets
        .into_iter()
        .enumerate()
        .map(|(i, counts)| json!({ "start": first + i as i64 * width, "counts": counts }))
        .collect();
    Ok(Json(json!({
        "window": name,
        "bucket_ms": width,
        "since": first,
        "now": now,
        "buckets": buckets,
        "totals": totals,
        "sources": sources,
    }))
    .into_response())
}

/// `GET /v1/stats/queues`: each durable queue's depth and lag (the age of
/// its oldest event not yet done).
async fn queue_stats(State(st): State<AppState>) -> Result<Response, ApiError> {
    let mut stats = Vec::new();
    for q in &st.queues {
        stats.extend(
            q.stats()
                .await
                .map_err(|e| ApiError::Storage(e.to_string()))?,
        );
    }
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| i64::try_from(d.as_millis()).unwrap_or(i64::MAX))
        .unwrap_or(0);
    let queues: Vec<_> = stats
        .into_iter()
        .map(|s| {
            json!({
                "queue": s.queue,
                "waiting": s.waiting,
                "in_flight": s.in_flight,
                "dead": s.dead,
                "depth": s.waiting + s.in_flight,
                "oldest_at": s.oldest_ms,
                "lag_ms": s.oldest_ms.map(|o| (now - o).max(0)),
            })
        })
        .collect();
    Ok(Json(json!({ "queues": queues })).into_response())
}

async fn get_scan(
    State(st): State<AppState>,
    Path(id): Path<String>,
) -> Result<Response, ApiError> {
    match st
        .service
        .store
        .get(&id)
        .await
        .map_err(|e| ApiError::Storage(e.to_string()))?
    {
        Some(rec) => Ok(Json(record_json(&rec)).into_response()),
        None => Err(ApiError::NotFound),
    }
}

async fn engines(State(st): State<AppState>) -> Response {
    let set = st.service.scanner.engine_set();
    let reload_error = st.reloader.as_ref().and_then(|r| r.last_error());
    let engines: Vec<_> = set
        .infos()
        .into_iter()
        .map(|mut i| {
            if i.last_reload_error.is_none() {
                i.last_reload_error = reload_error.clone();
            }
            serde_json::to_value(i).unwrap_or_default()
        })
        .collect();
    Json(json!({
        "fingerprint": set.fingerprint(),
        "loaded_at": set.loaded_at,
        "last_reload_error": reload_error,
        "engines": engines,
        "signature_updates": st.reloader.as_ref().and_then(|r| r.updates()),
    }))
    .into_response()
}

/// Check every engine (bounded by a timeout), the database and every role.
pub async fn check_ready(st: &AppState) -> (bool, serde_json::Value) {
    let set = st.service.scanner.engine_set();
    let mut ok = true;
    let mut engines = serde_json::Map::new();
    for e in set.engines() {
        let e2 = e.clone();
        let r = tokio::time::timeout(
            Duration::from_secs(5),
            tokio::task::spawn_blocking(move || e2.health()),
        )
        .await;
        let state = match r {
            Ok(Ok(Ok(()))) => "ok".to_string(),
            Ok(Ok(Err(err))) => err.to_string(),
            Ok(Err(err)) => format!("health check failed: {err}"),
            Err(_) => "health check timed out".to_string(),
        };
        let up = state == "ok";
        metrics::gauge!(telemetry::ENGINE_UP, "engine" => e.name().to_string()).set(if up {
            1.0
        } else {
            0.0
        });
        ok &= up;
        engines.insert(e.name().to_string(), state.into());
    }
    let mut signatures = serde_json::Map::new();
    let scan_cfg = st.service.scanner.config();
    for a in record_signature_ages(st) {
        ok &= !(a.stale && scan_cfg.stale_signatures_unready);
        signatures.insert(
            a.engine,
            json!({ "age_seconds": a.age_secs, "stale": a.stale }),
        );
    }
    let db = match st.service.store.ping().await {
        Ok(()) => "ok".to_string(),
        Err(e) => {
            ok = false;
            e.to_string()
        }
    };
    let mut body =
        json!({ "ready": ok, "engines": engines, "signatures": signatures, "database": db });
    if let Some(r) = &st.roles {
        let (roles_ok, roles) = r.report();
        ok &= roles_ok;
        body["ready"] = ok.into();
        body["roles"] = roles;
    }
    (ok, body)
}

/// Set `moat_signatures_age_seconds` for every engine that read signatures
/// from disk, and return the ages.
fn record_signature_ages(st: &AppState) -> Vec<moat_scanner::config::SignatureAge> {
    let set = st.service.scanner.engine_set();
    let ages = st.service.scanner.config().signature_ages(&set.infos());
    for a in &ages {
        metrics::gauge!(telemetry::SIGNATURES_AGE, "engine" => a.engine.clone())
            .set(a.age_secs as f64);
    }
    ages
}

async fn readyz(State(st): State<AppState>) -> Response {
    let (ok, body) = check_ready(&st).await;
    let code = if ok {
        StatusCode::OK
    } else {
        StatusCode::SERVICE_UNAVAILABLE
    };
    (code, Json(body)).into_response()
}

async fn metrics_text(State(st): State<AppState>) -> Response {
    match &st.metrics {
        Some(h) => {
            record_signature_ages(&st);
            (
                [(header::CONTENT_TYPE, "text/plain; version=0.0.4")],
                h.render(),
            )
                .into_response()
        }
        None => (StatusCode::NOT_FOUND, "metrics disabled\n").into_response(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use axum::body::Body;
    use axum::http::Request as HttpRequest;
    use moat_core::Policy;
    use moat_scanner::{Scanner, config};
    use tower::ServiceExt;

    async fn state(dir: &std::path::Path, cfg: ApiConfig) -> AppState {
        let set = config::build_engine_set(&config::eicar_only_engines()).unwrap();
        let scanner = Arc::new(Scanner::new(set, Default::default()));
        let store = moat_db::open(&format!("sqlite://{}/t.db", dir.display()))
            .await
            .unwrap();
        let service = ScanService {
            scanner,
            store,
            policy: Policy::default(),
            cache: true,
        };
        AppState::new(service, cfg, dir.to_path_buf(), None, None)
    }

    #[tokio::test]
    async fn saturated_scanner_answers_503_with_retry_after() {
        let dir = tempfile::tempdir().unwrap();
        let cfg = ApiConfig {
            max_concurrent_scans: 1,
            ..Default::default()
        };
        let st = state(dir.path(), cfg).await;
        let held = st.limiter.clone().try_acquire_owned().unwrap();
        let app = router(st.clone());
        let req = || {
            HttpRequest::post("/v1/scan")
                .body(Body::from("hello"))
                .unwrap()
        };
        let resp = app.clone().oneshot(req()).await.unwrap();
        assert_eq!(resp.status(), StatusCode::SERVICE_UNAVAILABLE);
        assert_eq!(resp.headers().get(header::RETRY_AFTER).unwrap(), "1");
        drop(held);
        let resp = app.oneshot(req()).await.unwrap();
        assert_eq!(resp.status(), StatusCode::OK);
    }

    #[tokio::test]
    async fn declared_oversize_body_is_refused_before_reading() {
        let dir = tempfile::tempdir().unwrap();
        let cfg = ApiConfig {
            max_body_size: 10,
            ..Default::default()
        };
        let app = router(state(dir.path(), cfg).await);
        let req = HttpRequest::post("/v1/scan")
            .header(header::CONTENT_LENGTH, "11")
            .body(Body::from("01234567890"))
            .unwrap();
        let resp = app.oneshot(req).await.unwrap();
        assert_eq!(resp.status(), StatusCode::PAYLOAD_TOO_LARGE);
    }

    async fn get_json(app: &Router, uri: &str) -> (StatusCode, serde_json::Value) {
        let resp = app
            .clone()
            .oneshot(HttpRequest::get(uri).body(Body::empty()).unwrap())
            .await
            .unwrap();
        let code = resp.status();
        let body = axum::body::to_bytes(resp.into_body(), 1 << 20)
            .await
            .unwrap();
        (code, serde_json::from_slice(&body).unwrap_or_default())
    }

    #[tokio::test]
    async fn verdict_stats_count_the_scans_just_made_and_scans_filter() {
        let dir = tempfile::tempdir().unwrap();
        let app = router(state(dir.path(), ApiConfig::default()).await);
        let eicar = "X5O!P%@AP[4\\PZX54(P^)7CC)7}$EICAR-STANDARD-ANTIVIRUS-TEST-FILE!$H+H*";
        for body in ["hello", "hello again", eicar] {
            let resp = app
                .clone()
                .oneshot(
                    HttpRequest::post("/v1/scan")
                        .body(Body::from(body))
                        .unwrap(),
                )
                .await
                .unwrap();
            assert_eq!(resp.status(), StatusCode::OK);
        }
        for (window, n) in [("hour", 60), ("day", 96), ("week", 168)] {
            let (code, v) = get_json(&app, &format!("/v1/stats/verdicts?window={window}")).await;
            assert_eq!(code, StatusCode::OK, "{v}");
            assert_eq!(v["buckets"].as_array().map(Vec::len), Some(n), "{v}");
            assert_eq!(v["totals"], json!({ "clean": 2, "infected": 1 }), "{v}");
            assert_eq!(v["sources"], json!({ "api": 3 }), "{v}");
            // All in the newest bucket.
            assert_eq!(v["buckets"][n - 1]["counts"]["clean"], 2, "{v}");
        }
        let (code, _) = get_json(&app, "/v1/stats/verdicts?window=year").await;
        assert_eq!(code, StatusCode::BAD_REQUEST);
        let (_, v) = get_json(&app, "/v1/scans?status=infected&source=api").await;
        assert_eq!(v["scans"].as_array().map(Vec::len), Some(1), "{v}");
        assert_eq!(v["scans"][0]["status"], "infected", "{v}");
        let (code, _) = get_json(&app, "/v1/scans?source=a%20b").await;
        assert_eq!(code, StatusCode::BAD_REQUEST);
        let (_, v) = get_json(&app, "/v1/stats/queues").await;
        assert_eq!(v, json!({ "queues": [] }));
    }
}
