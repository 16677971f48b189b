//! The proxy: listeners (plain or TLS, HTTP/1.1 and HTTP/2), routing, the
//! scan gate, forwarding with failover, WebSocket pass-through, response
//! scanning, the admin listener, metrics and the access log.

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

    /// Bind every listener (so a port in use fails start-up), then serve
    /// them, the health checks and the admin listener until the future is
    /// dropped.
    ///
    /// With `workers` > 0 (default: one per CPU) connections are served by
    /// that many threads, each with its own single-threaded runtime and its
    /// own upstream connections, so a request and its upstream exchange stay
    /// on one thread. The listeners are accepted on the calling runtime,
    /// which hands each new connection to the worker with the fewest open
    /// ones: letting workers race for the socket (or `SO_REUSEPORT`) left
    /// one worker with most of a burst of keep-alive connections while the
    /// other idled. Health checks and the admin listener run on the calling
    /// runtime; scans on each worker's blocking pool. With 0, everything
    /// runs on the calling runtime.
    pub async fn run(self, metrics: Option<MetricsRender>) -> Result<(), ProxyError> {
        let workers = self
            .0
            .cfg
            .workers
            .unwrap_or_else(|| std::thread::available_parallelism().map_or(1, |n| n.get()));
        let mut bound = Vec::new();
        for (i, l) in self.0.cfg.listeners.iter().enumerate() {
            let tcp = listen(l.listen).map_err(|e| ProxyError::Bind(l.listen, e))?;
            let tls = match &self.0.certs[i] {
                Some(c) => Some(c.server_config().map_err(ProxyError::Tls)?),
                None => None,
            };
            tracing::info!(listen = %tcp.local_addr().unwrap_or(l.listen), tls = tls.is_some(), workers, "proxy listening");
            bound.push((tcp, tls));
        }
        let admin = match self.0.cfg.admin_listen {
            Some(a) => Some(
                TcpListener::bind(a)
                    .await
                    .map_err(|e| ProxyError::Bind(a, e))?,
            ),
            None => None,
        };
        for p in &self.0.pools {
            if p.cfg.health.is_some() {
                tokio::spawn(health_loop(self.1.clone(), p.clone()));
            }
        }
        let mut tasks: tokio::task::JoinSet<Result<(), ProxyError>> = tokio::task::JoinSet::new();
        if let Some(a) = admin {
            tracing::info!(listen = %a.local_addr().map(|x| x.to_string()).unwrap_or_default(), "proxy admin listening");
            let this = self.clone();
            tasks.spawn(async move {
                this.admin_loop(a, metrics).await;
                Ok(())
            });
        }
        if workers == 0 {
            for (std, tls) in bound {
                let tcp = TcpListener::from_std(std)
                    .map_err(|e| ProxyError::Worker(format!("listener: {e}")))?;
                let this = self.clone();
                tasks.spawn(async move {
                    this.accept_loop(tcp, tls).await;
                    Ok(())
                });
            }
        } else {
            let tls: Vec<_> = bound.iter().map(|(_, t)| t.clone()).collect();
            let mut handles = Vec::new();
            for w in 0..workers {
                let (conns, rx) = tokio::sync::mpsc::unbounded_channel();
                let open = Arc::new(AtomicUsize::new(0));
                handles.push(WorkerHandle {
                    conns,
                    open: open.clone(),
                });
                let (inner, tls) = (self.0.clone(), tls.clone());
                let (tx, done) = tokio::sync::oneshot::channel();
                std::thread::Builder::new()
                    .name(format!("moat-proxy-{w}"))
                    .spawn(move || {
                        let _ = tx.send(worker(inner, tls, rx, open));
                    })
                    .map_err(|e| ProxyError::Worker(format!("starting thread {w}: {e}")))?;
                // A worker only ends on a start-up failure or a panic: the
                // proxy stops rather than serve a share of connections nowhere.
                tasks.spawn(async move {
                    Err(match done.await {
                        Ok(Err(e)) => e,
                        Ok(Ok(())) => ProxyError::Worker(format!("worker {w} stopped")),
                        Err(_) => ProxyError::Worker(format!("worker {w} panicked")),
                    })
                });
            }
            let handles: Arc<[WorkerHandle]> = handles.into();
            for (listener, (std, _)) in bound.into_iter().enumerate() {
                let tcp = TcpListener::from_std(std)
                    .map_err(|e| ProxyError::Worker(format!("listener: {e}")))?;
                tasks.spawn(hand_out(tcp, listener, handles.clone()));
            }
        }
        while let Some(r) = tasks.join_next().await {
            if let Ok(Err(e)) = r {
                return Err(e);
            }
        }
        Ok(())
    }

    async fn accept_loop(self, tcp: TcpListener, tls: Option<Arc<rustls::ServerConfig>>) {
        let acceptor = tls.map(tokio_rustls::TlsAcceptor::from);
        loop {
            let Some((sock, peer)) = accept(&tcp).await else {
                continue;
            };
            tokio::spawn(self.clone().serve_socket(sock, peer, acceptor.clone()));
        }
    }

    /// One accepted connection: the TLS handshake (within the client
    /// timeout) if the listener has TLS, then HTTP until it closes.
    async fn serve_socket(
        self,
        sock: tokio::net::TcpStream,
        peer: SocketAddr,
        acceptor: Option<tokio_rustls::TlsAcceptor>,
    ) {
        let hs = Duration::from_secs(self.0.cfg.client_timeout_secs);
        match acceptor {
            Some(acc) => match tokio::time::timeout(hs, acc.accept(sock)).await {
                Ok(Ok(s)) => self.serve_conn(TokioIo::new(s), peer, true).await,
                Ok(Err(e)) => tracing::debug!(%peer, error = %e, "TLS handshake failed"),
                Err(_) => tracing::debug!(%peer, "TLS handshake timed out"),
            },
            None if self.0.cfg.fast_path => self.serve_plain(sock, peer).await,
            None => self.serve_conn(TokioIo::new(sock), peer, false).await,
        }
    }

    pub(crate) async fn serve_conn<I>(self, io: I, peer: SocketAddr, tls: bool)
    where
        I: hyper::rt::Read + hyper::rt::Write + Unpin + Send + 'static,
    {
        let cfg = &self.0.cfg;
        let mut b = hyper_util::server::conn::auto::Builder::new(TokioExecutor::new());
        b.http1()
            .timer(TokioTimer::new())
            .header_read_timeout(Duration::from_secs(cfg.client_timeout_secs))
            .max_buf_size(cfg.max_header_size.max(8192))
            .keep_alive(true);
        b.http2()
            .timer(TokioTimer::new())
            .max_header_list_size(u32::try_from(cfg.max_header_size).unwrap_or(u32::MAX));
        let this = self.clone();
        let svc = hyper::service::service_fn(move |req| {
            let this = this.clone();
            async move { Ok::<_, Infallible>(this.handle(req, peer, tls).await) }
        });
        if let Err(e) = b.serve_connection_with_upgrades(io, svc).await {
            tracing::debug!(%peer, error = %e, "client connection ended with an error");
        }
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

    /// Scan a spooled request body. `Err` is the response that blocks it.
    async fn scan_request(
        &self,
        parts: &hyper::http::request::Parts,
        content_type: &str,
        blob: &Blob,
        sha: Option<[u8; 32]>,
        html: bool,
        log: &mut Log<'_>,
    ) -> Result<(), Response<Body>> {
        let cfg = &self.0.cfg;
        let name = object_name(parts.uri.path());
        let mut records = Vec::new();
        if let Some(boundary) = body::multipart_boundary(content_type) {
            let boundary = boundary.map_err(|e| body_error(e, html, log))?;
            let files = body::multipart_parts(
                blob,
                &boundary,
                cfg.spool_threshold,
                cfg.max_body_size,
                &self.0.tmp_dir,
            )
            .await
            .map_err(|e| body_error(e, html, log))?;
            for f in files {
                let rec = self.scan_one(&f.name, f.blob, f.sha256, html).await?;
                records.push((f.name, rec));
            }
        } else if body::is_aws_chunked(&parts.headers) {
            let (b, t, l, d) = (
                blob.clone(),
                cfg.spool_threshold,
                cfg.max_body_size,
                self.0.tmp_dir.clone(),
            );
            let decoded =
                tokio::task::spawn_blocking(move || body::decode_aws_chunked(&b, t, l, &d)).await;
            let (payload, psha) = match decoded {
                Ok(Ok(x)) => x,
                Ok(Err(e)) => return Err(body_error(e, html, log)),
                Err(e) => {
                    return Err(body_error(
                        BodyError::Io(std::io::Error::other(e.to_string())),
                        html,
                        log,
                    ));
                }
            };
            let rec = self.scan_one(&name, payload, psha, html).await?;
            records.push((name, rec));
        } else {
            let sha = sha
                .map_or_else(|| blob.sha256(), Ok)
                .map_err(|e| body_error(BodyError::Io(e), html, log))?;
            let rec = self.scan_one(&name, blob.clone(), sha, html).await?;
            records.push((name, rec));
        }
        for (n, r) in &records {
            log.scanned.push((n.clone(), r.verdict.policy_key()));
            metrics::counter!(SCANNED, "status" => r.verdict.status.as_str()).increment(1);
        }
        match blocking(&self.0.service, &records) {
            None => Ok(()),
            Some(i) => {
                log.note = "blocked";
                Err(blocked_page(&records, i, html))
            }
        }
    }

    async fn scan_one(
        &self,
        name: &str,
        blob: Blob,
        sha: [u8; 32],
        html: bool,
    ) -> Result<ScanRecord, Response<Body>> {
        self.0
            .service
            .scan("proxy", name, blob, sha)
            .await
            .map_err(|e| {
                tracing::error!(error = %e, name, "scan failed");
                let mut r = error_page(
                    StatusCode::SERVICE_UNAVAILABLE,
                    html,
                    "the upload could not be scanned; try again later",
                );
                r.headers_mut()
                    .insert(header::RETRY_AFTER, HeaderValue::from_static("30"));
                r
            })
    }

    async fn scan_response(
        &self,
        resp: Response<Body>,
        parts: &hyper::http::request::Parts,
        html: bool,
        log: &mut Log<'_>,
    ) -> Response<Body> {
        let cfg = &self.0.cfg;
        let (mut rparts, rbody) = resp.into_parts();
        let spooled = body::spool(
            rbody,
            cfg.spool_threshold,
            cfg.max_body_size,
            &self.0.tmp_dir,
            Duration::from_secs(cfg.read_timeout_secs),
            true,
        )
        .await;
        let (blob, sha) = match spooled {
            Ok(x) => x,
            Err(BodyError::TooLarge(n)) => {
                log.note = "download_too_large";
                return error_page(
                    StatusCode::FORBIDDEN,
                    html,
                    &format!("the download is larger than {n} bytes and could not be scanned"),
                );
            }
            Err(e) => {
                log.note = "upstream_body_error";
                return error_page(StatusCode::BAD_GATEWAY, html, &e.to_string());
            }
        };
        let name = object_name(parts.uri.path());
        let sha = match sha.map_or_else(|| blob.sha256(), Ok) {
            Ok(s) => s,
            Err(e) => {
                log.note = "upstream_body_error";
                return error_page(StatusCode::BAD_GATEWAY, html, &e.to_string());
            }
        };
        let rec = match self.scan_one(&name, blob.clone(), sha, html).await {
            Ok(r) => r,
            Err(r) => return r,
        };
        log.scanned.push((name.clone(), rec.verdict.policy_key()));
        metrics::counter!(SCANNED, "status" => rec.verdict.status.as_str()).increment(1);
        let records = vec![(name, rec)];
        if let Some(i) = blocking(&self.0.service, &records) {
            log.note = "download_blocked";
            return blocked_page(&records, i, html);
        }
        rparts.headers.remove(header::TRANSFER_ENCODING);
        rparts
            .headers
            .insert(header::CONTENT_LENGTH, HeaderValue::from(blob.len()));
        Response::from_parts(rparts, body::blob_body(blob))
    }

    #[allow(clippy::too_many_arguments)]
    async fn forward<'a>(
        &self,
        parts: &hyper::http::request::Parts,
        mut fwd: Fwd,
        route: &'a Route,
        peer: SocketAddr,
        tls: bool,
        host: &str,
        html: bool,
        log: &mut Log<'a>,
    ) -> Result<Response<Body>, Response<Body>> {
        let pool = &route.pool;
        let idempotent = matches!(
            parts.method,
            Method::GET
                | Method::HEAD
                | Method::OPTIONS
                | Method::PUT
                | Method::DELETE
                | Method::TRACE
        );
        let read_timeout = Duration::from_secs(self.0.cfg.read_timeout_secs);
        let mut tried = Vec::new();
        loop {
            let Some(i) = pool.pick(&tried) else {
                log.note = "upstream_unavailable";
                let mut r = error_page(
                    StatusCode::BAD_GATEWAY,
                    html,
                    "no upstream server could take the request",
                );
                r.headers_mut()
                    .insert(header::RETRY_AFTER, HeaderValue::from_static("5"));
                return Err(r);
            };
            tried.push(i);
            let server = &pool.servers[i];
            log.upstream = &server.url;
            log.attempts += 1;
            if log.attempts > 1 {
                pool.metrics().retries.increment(1);
            }
            let (body, len) = match &mut fwd {
                Fwd::Empty => (body::empty(), None),
                Fwd::Blob(b) => (body::blob_body(b.clone()), Some(b.len())),
                Fwd::Stream(s) => match s.take() {
                    Some(inc) => (inc.map_err(BoxError::from).boxed_unsync(), None),
                    None => (body::empty(), None),
                },
            };
            let req = match upstream_request(parts, server, body, len, peer, tls, host, false) {
                Ok(r) => r,
                Err(e) => {
                    log.note = "bad_request";
                    return Err(error_page(StatusCode::BAD_REQUEST, html, &e));
                }
            };
            let guard = pool.begin(i);
            let t0 = Instant::now();
            let res = tokio::time::timeout(read_timeout, self.1.send(&server.authority, req)).await;
            pool.metrics()
                .upstream_seconds
                .record(t0.elapsed().as_secs_f64());
            let replayable = !matches!(fwd, Fwd::Stream(_));
            match res {
                Ok(Ok((resp, lease))) => {
                    let (mut rp, rb) = resp.into_parts();
                    strip_hop_by_hop(&mut rp.headers);
                    let b = Guarded {
                        inner: rb,
                        _guard: guard,
                        _lease: lease,
                    };
                    return Ok(Response::from_parts(rp, b.boxed_unsync()));
                }
                Ok(Err(e)) => {
                    pool.fail(i);
                    let connect = e.is_connect();
                    let buffered = matches!(fwd, Fwd::Blob(_));
                    tracing::warn!(pool = %pool.name, server = %server.url, error = %error_chain(&e), connect, "upstream request failed");
                    if replayable && (connect || idempotent || buffered) {
                        continue;
                    }
                    log.note = "upstream_error";
                    return Err(error_page(
                        StatusCode::BAD_GATEWAY,
                        html,
                        "the upstream server failed",
                    ));
                }
                Err(_) => {
                    pool.fail(i);
                    tracing::warn!(pool = %pool.name, server = %server.url, "upstream response timed out");
                    if replayable && idempotent {
                        continue;
                    }
                    log.note = "upstream_timeout";
                    return Err(error_page(
                        StatusCode::GATEWAY_TIMEOUT,
                        html,
                        "the upstream server did not answer in time",
                    ));
                }
            }
        }
    }

    #[allow(clippy::too_many_arguments)]
    async fn websocket<'a>(
        &self,
        mut req: Request<Incoming>,
        route: &'a Route,
        peer: SocketAddr,
        tls: bool,
        host: &str,
        html: bool,
        log: &mut Log<'a>,
    ) -> Response<Body> {
        let client_up = hyper::upgrade::on(&mut req);
        let (parts, _) = req.into_parts();
        let pool = &route.pool;
        let mut tried = Vec::new();
        while let Some(i) = pool.pick(&tried) {
            tried.push(i);
            let server = &pool.servers[i];
            log.upstream = &server.url;
            log.attempts += 1;
            let upreq = match upstream_request(
                &parts,
                server,
                body::empty(),
                None,
                peer,
                tls,
                host,
                true,
            ) {
                Ok(r) => r,
                Err(e) => return error_page(StatusCode::BAD_REQUEST, html, &e),
            };
            let res = tokio::time::timeout(
                Duration::from_secs(self.0.cfg.read_timeout_secs),
                self.1.send(&server.authority, upreq),
            )
            .await;
            // The connection is the tunnel's once upgraded; otherwise it
            // goes back to the pool with the response.
            let (mut resp, _lease) = match res {
                Ok(Ok(r)) => r,
                Ok(Err(e)) if e.is_connect() => {
                    pool.fail(i);
                    continue;
                }
                _ => {
                    pool.fail(i);
                    log.note = "upstream_error";
                    return error_page(StatusCode::BAD_GATEWAY, html, "the upstream server failed");
                }
            };
            if resp.status() != StatusCode::SWITCHING_PROTOCOLS {
                let (rp, rb) = resp.into_parts();
                return Response::from_parts(rp, rb.map_err(BoxError::from).boxed_unsync());
            }
            let upstream_up = hyper::upgrade::on(&mut resp);
            let guard = pool.begin(i);
            tokio::spawn(async move {
                let _guard = guard;
                match tokio::try_join!(client_up, upstream_up) {
                    Ok((c, u)) => {
                        let mut c = TokioIo::new(c);
                        let mut u = TokioIo::new(u);
                        if let Err(e) = tokio::io::copy_bidirectional(&mut c, &mut u).await {
                            tracing::debug!(error = %e, "websocket tunnel ended");
                        }
                    }
                    Err(e) => tracing::debug!(error = %e, "websocket upgrade failed"),
                }
            });
            log.note = "upgraded";
            let (rp, _) = resp.into_parts();
            return Response::from_parts(rp, body::empty());
        }
        log.note = "upstream_unavailable";
        error_page(
            StatusCode::BAD_GATEWAY,
            html,
            "no upstream server could take the request",
        )
    }

    async fn admin_loop(self, tcp: TcpListener, metrics: Option<MetricsRender>) {
        loop {
            let Ok((sock, _)) = tcp.accept().await else {
                tokio::time::sleep(Duration::from_millis(50)).await;
                continue;
            };
            let this = self.clone();
            let metrics = metrics.clone();
            tokio::spawn(async move {
                let svc = hyper::service::service_fn(move |req: Request<Incoming>| {
                    let this = this.clone();
                    let metrics = metrics.clone();
                    async move {
                        let r = match req.uri().path() {
                            "/healthz" => text(StatusCode::OK, "ok\n".into()),
                            "/status" => json(StatusCode::OK, &this.status_json()),
                            "/metrics" => match &metrics {
                                Some(m) => text(StatusCode::OK, m()),
                                None => text(StatusCode::NOT_FOUND, "metrics are off\n".into()),
                            },
                            _ => text(StatusCode::NOT_FOUND, "not found\n".into()),
                        };
                        Ok::<_, Infallible>(r)
                    }
                });
                let _ = hyper::server::conn::http1::Builder::new()
                    .serve_connection(TokioIo::new(sock), svc)
                    .await;
            });
        }
    }
}

enum Fwd {
    Empty,
    Blob(Blob),
    Stream(Option<Incoming>),
}

/// An upstream response body that keeps the server's in-flight count, and
/// its connection out of the pool, until it ends.
struct Guarded {
    inner: Incoming,
    _guard: crate::pool::InFlight,
    _lease: Lease,
}

impl hyper::body::Body for Guarded {
    type Data = Bytes;
    type Error = BoxError;
    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, BoxError>>> {
        Pin::new(&mut self.inner)
            .poll_frame(cx)
            .map_err(BoxError::from)
    }
    fn is_end_stream(&self) -> bool {
        self.inner.is_end_stream()
    }
    fn size_hint(&self) -> hyper::body::SizeHint {
        self.inner.size_hint()
    }
}

/// A listening socket, as a std listener so that any runtime can take it.
fn listen(addr: SocketAddr) -> std::io::Result<std::net::TcpListener> {
    let sock = if addr.is_ipv4() {
        tokio::net::TcpSocket::new_v4()?
    } else {
        tokio::net::TcpSocket::new_v6()?
    };
    sock.set_reuseaddr(true)?;
    sock.bind(addr)?;
    sock.listen(1024)?.into_std()
}

/// The next connection, with Nagle off; `None` after a failed accept (out
/// of file descriptors, say), which is logged and paced.
async fn accept(tcp: &TcpListener) -> Option<(tokio::net::TcpStream, SocketAddr)> {
    match tcp.accept().await {
        Ok((sock, peer)) => {
            let _ = sock.set_nodelay(true);
            Some((sock, peer))
        }
        Err(e) => {
            tracing::warn!(error = %e, "accept failed");
            tokio::time::sleep(Duration::from_millis(50)).await;
            None
        }
    }
}

/// A connection accepted for a worker: the socket (left non-blocking),
/// the peer and which listener it came in on.
struct Accepted {
    sock: std::net::TcpStream,
    peer: SocketAddr,
    listener: usize,
}

/// How the acceptor reaches one worker, and how many connections it holds.
struct WorkerHandle {
    conns: tokio::sync::mpsc::UnboundedSender<Accepted>,
    open: Arc<AtomicUsize>,
}

/// Accept on one listener and give each connection to the worker holding
/// the fewest (ties in turn).
async fn hand_out(
    tcp: TcpListener,
    listener: usize,
    workers: Arc<[WorkerHandle]>,
) -> Result<(), ProxyError> {
    let n = workers.len();
    let mut next = 0;
    loop {
        let Some((sock, peer)) = accept(&tcp).await else {
            continue;
        };
        let w = (0..n)
            .map(|k| (next + k) % n)
            .min_by_key(|&i| workers[i].open.load(Ordering::Relaxed))
            .unwrap_or(0);
        next = (w + 1) % n;
        let sock = match sock.into_std() {
            Ok(s) => s,
            Err(e) => {
                tracing::warn!(%peer, error = %e, "handing a connection to a worker failed");
                continue;
            }
        };
        workers[w].open.fetch_add(1, Ordering::Relaxed);
        let a = Accepted {
            sock,
            peer,
            listener,
        };
        if workers[w].conns.send(a).is_err() {
            return Err(ProxyError::Worker(format!("worker {w} stopped")));
        }
    }
}

/// Counts a connection against its worker until dropped.
struct Held(Arc<AtomicUsize>);

impl Drop for Held {
    fn drop(&mut self) {
        self.0.fetch_sub(1, Ordering::Relaxed);
    }
}

/// One proxy worker thread: a single-threaded runtime with its own
/// upstream client, serving the connections the acceptor hands it until
/// the process ends.
fn worker(
    inner: Arc<Inner>,
    tls: Vec<Option<Arc<rustls::ServerConfig>>>,
    mut conns: tokio::sync::mpsc::UnboundedReceiver<Accepted>,
    open: Arc<AtomicUsize>,
) -> Result<(), ProxyError> {
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .map_err(|e| ProxyError::Worker(format!("runtime: {e}")))?;
    rt.block_on(async move {
        let client = upstream_client(&inner.cfg);
        let this = Proxy(inner, client);
        let acceptors: Vec<_> = tls
            .into_iter()
            .map(|t| t.map(tokio_rustls::TlsAcceptor::from))
            .collect();
        while let Some(a) = conns.recv().await {
            let held = Held(open.clone());
            let sock = match tokio::net::TcpStream::from_std(a.sock) {
                Ok(s) => s,
                Err(e) => {
                    tracing::warn!(peer = %a.peer, error = %e, "taking over a connection failed");
                    continue;
                }
            };
            let acceptor = acceptors.get(a.listener).cloned().flatten();
            let this = this.clone();
            tokio::spawn(async move {
                let _held = held;
                this.serve_socket(sock, a.peer, acceptor).await;
            });
        }
        Ok(())
    })
}

async fn health_loop(client: Upstream, pool: Arc<Pool>) {
    let Some(h) = pool.cfg.health.clone() else {
        return;
    };
    loop {
        for (i, s) in pool.servers.iter().enumerate() {
            let req = Request::get(h.path.as_str())
                .header(header::HOST, s.host_header.clone())
                .header(header::USER_AGENT, "moat-proxy-health")
                .body(body::empty());
            let up = match req {
                Ok(req) => matches!(
                    tokio::time::timeout(Duration::from_secs(h.timeout_secs.max(1)), client.send(&s.authority, req)).await,
                    Ok(Ok((r, _))) if r.status().as_u16() == h.expect_status
                ),
                Err(_) => false,
            };
            pool.set_active(i, up);
        }
        tokio::time::sleep(Duration::from_secs(h.interval_secs)).await;
    }
}

/// Index of the record that blocks the request (highest severity), if any.
fn blocking(service: &ScanService, records: &[(String, ScanRecord)]) -> Option<usize> {
    records
        .iter()
        .enumerate()
        .filter(|(_, (_, r))| {
            matches!(
                service.policy.action(&r.verdict),
                Action::Block | Action::Quarantine
            )
        })
        .max_by_key(|(_, (_, r))| r.verdict.status.severity())
        .map(|(i, _)| i)
}

fn blocked_page(records: &[(String, ScanRecord)], i: usize, html: bool) -> Response<Body> {
    let (name, rec) = &records[i];
    let v = &rec.verdict;
    let (status, retry) = match v.status {
        Status::Error => (StatusCode::SERVICE_UNAVAILABLE, true),
        _ => (StatusCode::FORBIDDEN, false),
    };
    let sigs = v.signatures();
    let mut resp = if html {
        let what = match v.status {
            Status::Infected | Status::Suspicious => {
                format!("{} ({})", v.status, sigs.join(", "))
            }
            Status::Error => "could not be scanned (engine error); try again later".to_string(),
            _ => format!("could not be scanned ({})", v.policy_key()),
        };
        let page = format!(
            "<!doctype html><html><head><title>{code}</title></head><body><h1>{code}</h1><p>Blocked by moat: <b>{}</b> {}.</p><p>Scan id {}</p></body></html>\n",
            escape(name),
            escape(&what),
            escape(&rec.id),
            code = status
        );
        let mut r = Response::new(body::full(page));
        r.headers_mut().insert(
            header::CONTENT_TYPE,
            HeaderValue::from_static("text/html; charset=utf-8"),
        );
        r
    } else {
        let files: Vec<serde_json::Value> = records
            .iter()
            .map(|(n, r)| {
                serde_json::json!({
                    "name": n,
                    "status": r.verdict.status,
                    "reason": r.verdict.reason,
                    "signatures": r.verdict.signatures(),
                    "sha256": r.verdict.sha256,
                    "scan_id": r.id,
                })
            })
            .collect();
        let j = serde_json::json!({
            "error": if retry { "scan_unavailable" } else { "blocked" },
            "status": v.status,
            "reason": v.reason,
            "file": name,
            "signatures": sigs,
            "files": files,
        });
        let mut r = Response::new(body::full(j.to_string()));
        r.headers_mut().insert(
            header::CONTENT_TYPE,
            HeaderValue::from_static("application/json"),
        );
        r
    };
    *resp.status_mut() = status;
    if retry {
        resp.headers_mut()
            .insert(header::RETRY_AFTER, HeaderValue::from_static("30"));
    }
    resp
}

fn body_error(e: BodyError, html: bool, log: &mut Log) -> Response<Body> {
    let (code, note) = match &e {
        BodyError::TooLarge(_) => (StatusCode::PAYLOAD_TOO_LARGE, "too_large"),
        BodyError::Timeout(_) => (StatusCode::REQUEST_TIMEOUT, "client_timeout"),
        BodyError::Client(_) => (StatusCode::BAD_REQUEST, "client_error"),
        BodyError::Malformed(_) => (StatusCode::BAD_REQUEST, "malformed"),
        BodyError::Io(_) => (StatusCode::SERVICE_UNAVAILABLE, "spool_error"),
    };
    log.note = note;
    if code == StatusCode::SERVICE_UNAVAILABLE {
        tracing::error!(error = %e, "spooling a body failed");
    }
    let mut r = error_page(code, html, &e.to_string());
    if code == StatusCode::REQUEST_TIMEOUT || code == StatusCode::PAYLOAD_TOO_LARGE {
        r.headers_mut()
            .insert(header::CONNECTION, HeaderValue::from_static("close"));
    }
    r
}

pub(crate) fn error_page(code: StatusCode, html: bool, msg: &str) -> Response<Body> {
    let mut r = if html {
        let page = format!(
            "<!doctype html><html><head><title>{code}</title></head><body><h1>{code}</h1><p>{}</p></body></html>\n",
            escape(msg)
        );
        let mut r = Response::new(body::full(page));
        r.headers_mut().insert(
            header::CONTENT_TYPE,
            HeaderValue::from_static("text/html; charset=utf-8"),
        );
        r
    } else {
        json(code, &serde_json::json!({ "error": msg }))
    };
    *r.status_mut() = code;
    r
}

fn json(code: StatusCode, v: &serde_json::Value) -> Response<Body> {
    let mut r = Response::new(body::full(v.to_string()));
    *r.status_mut() = code;
    r.headers_mut().insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("application/json"),
    );
    r
}

fn text(code: StatusCode, s: String) -> Response<Body> {
    let mut r = Response::new(body::full(s));
    *r.status_mut() = code;
    r.headers_mut().insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("text/plain; charset=utf-8"),
    );
    r
}

fn escape(s: &str) -> String {
    s.replace('&', "&amp;")
        .replace('<', "&lt;")
        .replace('>', "&gt;")
        .replace('"', "&quot;")
}

/// JSON unless the client asks for HTML (a browser) and not JSON.
fn wants_html(h: &HeaderMap) -> bool {
    if !h.contains_key(header::ACCEPT) {
        return false;
    }
    let accept = h
        .get_all(header::ACCEPT)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .collect::<Vec<_>>()
        .join(",")
        .to_ascii_lowercase();
    accept.contains("text/html") && !accept.contains("json")
}

fn request_host<B>(req: &Request<B>) -> String {
    req.headers()
        .get(header::HOST)
        .and_then(|v| v.to_str().ok())
        .map(str::to_string)
        .or_else(|| req.uri().authority().map(|a| a.to_string()))
        .unwrap_or_default()
}

/// The host part of a Host header (`[v6]` keeps its brackets), as sent:
/// compare it ignoring ASCII case.
fn host_without_port(host: &str) -> &str {
    if host.starts_with('[') {
        host.find(']').map_or("", |i| &host[..=i])
    } else {
        host.split(':').next().unwrap_or("")
    }
}

/// The object name recorded for a body: the request path (S3: /bucket/key).
fn object_name(path: &str) -> String {
    if path.is_empty() {
        "/".into()
    } else {
        path.to_string()
    }
}

fn is_upgrade<B>(req: &Request<B>) -> bool {
    req.version() == Version::HTTP_11
        && req.headers().contains_key(header::UPGRADE)
        && connection_tokens(req.headers())
            .iter()
            .any(|t| t == "upgrade")
}

fn connection_tokens(h: &HeaderMap) -> Vec<String> {
    h.get_all(header::CONNECTION)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(','))
        .map(|t| t.trim().to_ascii_lowercase())
        .filter(|t| !t.is_empty())
        .collect()
}

const HOP_BY_HOP: [HeaderName; 9] = [
    header::CONNECTION,
    HeaderName::from_static("keep-alive"),
    HeaderName::from_static("proxy-connection"),
    header::TE,
    header::TRAILER,
    header::TRANSFER_ENCODING,
    header::UPGRADE,
    header::PROXY_AUTHENTICATE,
    header::PROXY_AUTHORIZATION,
];

fn strip_hop_by_hop(h: &mut HeaderMap) {
    if h.contains_key(header::CONNECTION) {
        for t in connection_tokens(h) {
            if let Ok(n) = HeaderName::from_bytes(t.as_bytes()) {
                h.remove(n);
            }
        }
    }
    for n in &HOP_BY_HOP {
        h.remove(n);
    }
}

const X_FORWARDED_FOR: HeaderName = HeaderName::from_static("x-forwarded-for");
const X_REAL_IP: HeaderName = HeaderName::from_static("x-real-ip");
const X_FORWARDED_PROTO: HeaderName = HeaderName::from_static("x-forwarded-proto");
const X_FORWARDED_HOST: HeaderName = HeaderName::from_static("x-forwarded-host");

#[allow(clippy::too_many_arguments)]
pub(crate) fn upstream_request(
    parts: &hyper::http::request::Parts,
    server: &crate::pool::Server,
    body: Body,
    len: Option<u64>,
    peer: SocketAddr,
    tls: bool,
    host: &str,
    upgrade: bool,
) -> Result<Request<Body>, String> {
    // Origin form (`/path?query`): what an HTTP/1.1 server expects.
    let uri = hyper::Uri::from(
        parts
            .uri
            .path_and_query()
            .cloned()
            .unwrap_or_else(|| hyper::http::uri::PathAndQuery::from_static("/")),
    );
    let mut headers = parts.headers.clone();
    let upgrade_value = headers.get(header::UPGRADE).cloned();
    strip_hop_by_hop(&mut headers);
    headers.remove(header::EXPECT);
    if let Some(n) = len {
        headers.insert(header::CONTENT_LENGTH, HeaderValue::from(n));
    }
    if upgrade && let Some(u) = upgrade_value {
        headers.insert(header::CONNECTION, HeaderValue::from_static("upgrade"));
        headers.insert(header::UPGRADE, u);
    }
    let ip = peer.ip().to_string();
    let xff = {
        let prior: Vec<&str> = parts
            .headers
            .get_all(&X_FORWARDED_FOR)
            .iter()
            .filter_map(|v| v.to_str().ok())
            .collect();
        if prior.is_empty() {
            ip.clone()
        } else {
            format!("{}, {ip}", prior.join(", "))
        }
    };
    let hv = |s: &str| HeaderValue::from_str(s).map_err(|e| format!("header value: {e}"));
    headers.insert(X_FORWARDED_FOR, hv(&xff)?);
    headers.insert(X_REAL_IP, hv(&ip)?);
    headers.insert(
        X_FORWARDED_PROTO,
        HeaderValue::from_static(if tls { "https" } else { "http" }),
    );
    // The client's Host header (already among the copied headers) is
    // reused as is; only an HTTP/2 request's :authority needs converting.
    let host_value = match parts.headers.get(header::HOST) {
        Some(v) => Some(v.clone()),
        None if !host.is_empty() => Some(hv(host)?),
        None => None,
    };
    match host_value {
        Some(v) => {
            headers.insert(header::HOST, v.clone());
            headers.insert(X_FORWARDED_HOST, v);
        }
        // No Host at all (HTTP/1.0): name the upstream, as HTTP/1.1 requires.
        None => {
            headers.insert(header::HOST, server.host_header.clone());
        }
    }
    let mut req = Request::new(body);
    *req.method_mut() = parts.method.clone();
    *req.uri_mut() = uri;
    *req.version_mut() = Version::HTTP_11;
    *req.headers_mut() = headers;
    Ok(req)
}

fn error_chain(e: &dyn std::error::Error) -> String {
    let mut s = e.to_string();
    let mut cur = e.source();
    while let Some(c) = cur {
        s.push_str(": ");
        s.push_str(&c.to_string());
        cur = c.source();
    }
    s
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn forwarded_headers_and_hop_by_hop() {
        let req = Request::post("/up?x=1")
            .header("host", "files.example:8443")
            .header("connection", "keep-alive, x-secret")
            .header("x-secret", "1")
            .header("transfer-encoding", "chunked")
            .header("x-forwarded-for", "10.0.0.1")
            .header("expect", "100-continue")
            .body(())
            .unwrap();
        let (parts, _) = req.into_parts();
        let peer: SocketAddr = "192.0.2.7:5555".parse().unwrap();
        let pool = Pool::new(
            "p",
            &crate::config::PoolConfig {
                servers: vec![crate::config::ServerConfig {
                    url: "http://10.1.1.1:80".into(),
                    weight: 1,
                    backup: false,
                }],
                ..Default::default()
            },
        )
        .unwrap();
        let r = upstream_request(
            &parts,
            &pool.servers[0],
            body::empty(),
            Some(42),
            peer,
            true,
            "files.example:8443",
            false,
        )
        .unwrap();
        let h = r.headers();
        assert_eq!(r.uri().to_string(), "/up?x=1");
        assert_eq!(h["host"], "files.example:8443");
        assert_eq!(h["x-forwarded-for"], "10.0.0.1, 192.0.2.7");
        assert_eq!(h["x-real-ip"], "192.0.2.7");
        assert_eq!(h["x-forwarded-proto"], "https");
        assert_eq!(h["x-forwarded-host"], "files.example:8443");
        assert_eq!(h["content-length"], "42");
        for gone in ["connection", "x-secret", "transfer-encoding", "expect"] {
            assert!(!h.contains_key(gone), "{gone} forwarded");
        }
    }

    #[test]
    fn accept_negotiation_and_hosts() {
        let mut h = HeaderMap::new();
        assert!(!wants_html(&h));
        h.insert(
            "accept",
            "text/html,application/xhtml+xml,*/*;q=0.8".parse().unwrap(),
        );
        assert!(wants_html(&h));
        h.insert("accept", "application/json, text/html".parse().unwrap());
        assert!(!wants_html(&h));
        assert_eq!(host_without_port("Files.Example:443"), "Files.Example");
        assert_eq!(host_without_port("files.example"), "files.example");
        assert_eq!(host_without_port("[::1]:80"), "[::1]");
    }
}
