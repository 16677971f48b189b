//! Forwarding: the upstream request (hop-by-hop headers out,
//! `X-Forwarded-*` in), failover across a pool, the guarded response body,
//! and WebSocket tunnels.

use super::*;

impl Proxy {
    #[allow(clippy::too_many_arguments)]
    pub(super) async fn forward<'a>(
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
    pub(super) async fn websocket<'a>(
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
}

pub(super) enum Fwd {
    Empty,
    Blob(Blob),
    Stream(Option<Incoming>),
}

/// An upstream response body that keeps the server's in-flight count, and
/// its connection out of the pool, until it ends.
pub(super) struct Guarded {
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

pub(super) fn is_upgrade<B>(req: &Request<B>) -> bool {
    req.version() == Version::HTTP_11
        && req.headers().contains_key(header::UPGRADE)
        && connection_tokens(req.headers())
            .iter()
            .any(|t| t == "upgrade")
}

pub(super) fn connection_tokens(h: &HeaderMap) -> Vec<String> {
    h.get_all(header::CONNECTION)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(','))
        .map(|t| t.trim().to_ascii_lowercase())
        .filter(|t| !t.is_empty())
        .collect()
}

pub(super) const HOP_BY_HOP: [HeaderName; 9] = [
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

pub(super) fn strip_hop_by_hop(h: &mut HeaderMap) {
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

pub(super) const X_FORWARDED_FOR: HeaderName = HeaderName::from_static("x-forwarded-for");

pub(super) const X_REAL_IP: HeaderName = HeaderName::from_static("x-real-ip");

pub(super) const X_FORWARDED_PROTO: HeaderName = HeaderName::from_static("x-forwarded-proto");

pub(super) const X_FORWARDED_HOST: HeaderName = HeaderName::from_static("x-forwarded-host");

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

pub(super) fn error_chain(e: &dyn std::error::Error) -> String {
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
}
