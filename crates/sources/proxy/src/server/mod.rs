//! The proxy: listeners (plain or TLS, HTTP/1.1 and HTTP/2), routing, the
//! scan gate, forwarding with failover, WebSocket pass-through, response
//! scanning, the admin listener, metrics and the access log.

mod forward;
mod gate;
mod listen;
mod pages;

use crate::body::{self, Body, BodyError, BoxError};
use crate::config::{ProxyConfig, ScanRules};
use crate::pool::Pool;
use crate::tls::CertStore;
use crate::upstream::{Lease, Upstream};
use bytes::Bytes;
use http_body_util::BodyExt;
use hyper::body::{Frame, Incoming};
use hyper::header::{self, HeaderMap, HeaderName, HeaderValue};
use hyper::{Method, Request, Response, StatusCode, Version};
use hyper_util::rt::{TokioExecutor, TokioIo, TokioTimer};
use moat_api::ScanService;
use moat_core::{Action, Blob, Status};
use moat_db::ScanRecord;
use std::convert::Infallible;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::pin::Pin;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::task::{Context, Poll};
use std::time::{Duration, Instant};
use tokio::net::TcpListener;

pub use crate::pool::{REQUEST_SECONDS, REQUESTS};
#[cfg(test)]
pub(crate) use forward::upstream_request;
use forward::*;
use gate::*;
pub(crate) use pages::error_page;
use pages::*;

pub const SCANNED: &str = "moat_proxy_scanned_bodies_total";

#[derive(Debug, thiserror::Error)]
pub enum ProxyError {
    #[error("invalid proxy configuration: {0}")]
    Config(String),
    #[error("TLS: {0}")]
    Tls(String),
    #[error("listening on {0}: {1}")]
    Bind(SocketAddr, std::io::Error),
    #[error("proxy worker: {0}")]
    Worker(String),
}

/// Renders the Prometheus exposition for the admin listener's `/metrics`.
pub type MetricsRender = Arc<dyn Fn() -> String + Send + Sync>;

pub(crate) struct Route {
    host: Option<String>,
    prefix: String,
    pub(crate) pool: Arc<Pool>,
    scan: ScanRules,
    pub(crate) scan_responses: bool,
}

pub(crate) struct Inner {
    pub(crate) cfg: ProxyConfig,
    routes: Vec<Route>,
    pools: Vec<Arc<Pool>>,
    service: ScanService,
    tmp_dir: PathBuf,
    certs: Vec<Option<Arc<CertStore>>>,
}

/// The edge proxy role: shared state and the upstream connection pool of
/// the runtime it serves on (pooled upstream connections belong to one
/// runtime). Cheap to clone.
#[derive(Clone)]
pub struct Proxy(pub(crate) Arc<Inner>, pub(crate) Upstream);

/// The upstream connection pool; its connection tasks run on the runtime
/// that opens them.
fn upstream_client(cfg: &ProxyConfig) -> Upstream {
    Upstream::new(
        Duration::from_secs(cfg.connect_timeout_secs),
        Duration::from_secs(cfg.idle_timeout_secs),
    )
}

/// What the access log line and metrics say about one request.
#[derive(Default)]
pub(crate) struct Log<'a> {
    pub(crate) pool: Option<&'a Pool>,
    pub(crate) upstream: &'a str,
    pub(crate) attempts: u32,
    pub(crate) scanned: Vec<(String, String)>,
    pub(crate) bytes_in: u64,
    pub(crate) note: &'static str,
}

/// What only the access log needs, kept only when it is on.
pub(crate) struct Access {
    pub(crate) method: Method,
    pub(crate) path: String,
    pub(crate) version: Version,
    pub(crate) host: String,
}

impl Proxy {
    /// Validate the configuration, build pools and load TLS key pairs.
    pub fn new(
        cfg: ProxyConfig,
        service: ScanService,
        tmp_dir: PathBuf,
    ) -> Result<Proxy, ProxyError> {
        cfg.validate().map_err(ProxyError::Config)?;
        let mut pools = Vec::new();
        for (name, pc) in &cfg.pools {
            pools.push(Arc::new(Pool::new(name, pc).map_err(ProxyError::Config)?));
        }
        let mut routes: Vec<Route> = cfg
            .routes
            .iter()
            .filter_map(|r| {
                let pool = pools.iter().find(|p| p.name == r.pool)?.clone();
                Some(Route {
                    host: r.host.as_ref().map(|h| h.to_ascii_lowercase()),
                    prefix: r.path_prefix.clone(),
                    pool,
                    scan: r.scan.clone(),
                    scan_responses: r.scan_responses,
                })
            })
            .collect();
        // Host-specific routes first, then the longest prefix.
        routes.sort_by(|a, b| {
            (b.host.is_some(), b.prefix.len()).cmp(&(a.host.is_some(), a.prefix.len()))
        });
        let mut certs = Vec::new();
        for l in &cfg.listeners {
            certs.push(match (&l.tls_cert, &l.tls_key) {
                (Some(c), Some(k)) => Some(CertStore::open(c, k).map_err(ProxyError::Tls)?),
                _ => None,
            });
        }
        let client = upstream_client(&cfg);
        Ok(Proxy(
            Arc::new(Inner {
                cfg,
                routes,
                pools,
                service,
                tmp_dir,
                certs,
            }),
            client,
        ))
    }

    /// Re-read every listener's certificate and key (SIGHUP). A pair that
    /// fails to load leaves the previous one in use.
    pub fn reload_tls(&self) -> Result<usize, ProxyError> {
        let mut n = 0;
        for c in self.0.certs.iter().flatten() {
            c.reload().map_err(ProxyError::Tls)?;
            n += 1;
        }
        Ok(n)
    }

    /// Pools and servers as JSON (the admin `/status`).
    pub fn status_json(&self) -> serde_json::Value {
        serde_json::json!({ "pools": self.0.pools.iter().map(|p| p.status_json()).collect::<Vec<_>>() })
    }

    /// How many servers of each pool are up: `app 2/3 up, static 1/1 up`.
    pub fn pools_summary(&self) -> String {
        self.0
            .pools
            .iter()
            .map(|p| {
                let up = p.servers.iter().filter(|s| s.is_up()).count();
                format!("{} {up}/{} up", p.name, p.servers.len())
            })
            .collect::<Vec<_>>()
            .join(", ")
    }

    async fn handle(&self, req: Request<Incoming>, peer: SocketAddr, tls: bool) -> Response<Body> {
        let start = Instant::now();
        let host = request_host(&req);
        let access =
            tracing::enabled!(target: "moat::access", tracing::Level::INFO).then(|| Access {
                method: req.method().clone(),
                path: req.uri().path().to_string(),
                version: req.version(),
                host: host.clone(),
            });
        let html = wants_html(req.headers());
        let mut log = Log::default();
        let resp = self.dispatch(req, peer, tls, &host, html, &mut log).await;
        self.record(&log, resp.status().as_u16(), start, access, peer, tls);
        resp
    }

    /// Metrics and the access log line for one finished request.
    pub(crate) fn record(
        &self,
        log: &Log<'_>,
        status: u16,
        start: Instant,
        access: Option<Access>,
        peer: SocketAddr,
        tls: bool,
    ) {
        let secs = start.elapsed().as_secs_f64();
        let pool_name = log.pool.map_or("-", |p| p.name.as_str());
        match log.pool {
            Some(p) => {
                let h = p.metrics();
                h.count_request(&p.name, status);
                h.request_seconds.record(secs);
            }
            None => {
                metrics::counter!(REQUESTS, "pool" => "-", "status" => status.to_string())
                    .increment(1);
                metrics::histogram!(REQUEST_SECONDS, "pool" => "-").record(secs);
            }
        }
        if let Some(Access {
            method,
            path,
            version,
            host,
        }) = access
        {
            let scanned = log
                .scanned
                .iter()
                .map(|(n, s)| format!("{n}:{s}"))
                .collect::<Vec<_>>()
                .join(",");
            tracing::info!(
                target: "moat::access",
                peer = %peer.ip(), method = %method, host = %host, path = %path,
                proto = ?version, tls, status, ms = (secs * 1000.0) as u64, pool = %pool_name,
                upstream = %log.upstream, attempts = log.attempts, bytes_in = log.bytes_in,
                scanned = %scanned, note = log.note, "request"
            );
        }
    }

    pub(crate) fn route(&self, host: &str, path: &str) -> Option<&Route> {
        let bare = host_without_port(host);
        self.0.routes.iter().find(|r| {
            r.host
                .as_deref()
                .is_none_or(|h| h.eq_ignore_ascii_case(bare))
                && path.starts_with(r.prefix.as_str())
        })
    }

    async fn dispatch<'a>(
        &'a self,
        req: Request<Incoming>,
        peer: SocketAddr,
        tls: bool,
        host: &str,
        html: bool,
        log: &mut Log<'a>,
    ) -> Response<Body> {
        let cfg = &self.0.cfg;
        let Some(route) = self.route(host, req.uri().path()) else {
            log.note = "no_route";
            return error_page(
                StatusCode::NOT_FOUND,
                html,
                "no route for this host and path",
            );
        };
        log.pool = Some(&route.pool);
        // The scan, upgrade and response-scan paths are boxed so that the
        // common pass-through request's future stays small (it is moved on
        // every request).
        if is_upgrade(&req) {
            return Box::pin(self.websocket(req, route, peer, tls, host, html, log)).await;
        }
        let declared = req
            .headers()
            .get(header::CONTENT_LENGTH)
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.trim().parse::<u64>().ok());
        if declared.is_some_and(|n| n > cfg.max_body_size) {
            log.note = "too_large";
            return error_page(
                StatusCode::PAYLOAD_TOO_LARGE,
                html,
                &format!("the body is larger than {} bytes", cfg.max_body_size),
            );
        }
        let content_type = req
            .headers()
            .get(header::CONTENT_TYPE)
            .and_then(|v| v.to_str().ok())
            .unwrap_or("")
            .to_string();
        let has_body = !body::is_empty_body(req.body());
        let scan = has_body
            && route
                .scan
                .matches(req.method().as_str(), req.uri().path(), &content_type);
        let (parts, incoming) = req.into_parts();
        let fwd = if scan {
            let idle = Duration::from_secs(cfg.client_timeout_secs);
            // Multipart and aws-chunked bodies are hashed part by part.
            let whole = body::multipart_boundary(&content_type).is_none()
                && !body::is_aws_chunked(&parts.headers);
            let spooled = Box::pin(body::spool(
                incoming,
                cfg.spool_threshold,
                cfg.max_body_size,
                &self.0.tmp_dir,
                idle,
                whole,
            ))
            .await;
            let (blob, sha) = match spooled {
                Ok(x) => x,
                Err(e) => return body_error(e, html, log),
            };
            log.bytes_in = blob.len();
            if let Err(resp) =
                Box::pin(self.scan_request(&parts, &content_type, &blob, sha, html, log)).await
            {
                return resp;
            }
            Fwd::Blob(blob)
        } else if has_body {
            Fwd::Stream(Some(incoming))
        } else {
            Fwd::Empty
        };
        let resp = match self
            .forward(&parts, fwd, route, peer, tls, host, html, log)
            .await
        {
            Ok(r) => r,
            Err(r) => return r,
        };
        if route.scan_responses && parts.method == Method::GET && resp.status().is_success() {
            return Box::pin(self.scan_response(resp, &parts, html, log)).await;
        }
        resp
    }
}
