//! The pass-through path for plain HTTP/1.1 connections.
//!
//! Most requests through an edge proxy are bodiless GETs with nothing to
//! scan. Through hyper's server and client each of them costs a task switch
//! to the upstream connection's task, a request channel, a response oneshot
//! and a body channel, and a `HeaderMap` built, copied and encoded on both
//! sides: about twice nginx's user-space CPU per request. Here such a
//! request is parsed with `httparse`, its head rewritten straight into the
//! upstream request (hop-by-hop headers out, `X-Forwarded-*` in), sent on a
//! pooled upstream socket that this task drives itself, and the response
//! head rewritten the same way while its body is copied as it arrives (by
//! length, chunk by chunk, or until the server closes), never held whole.
//!
//! Everything else takes the full path: a request with a body (it may need
//! scanning), an upgrade, `Expect`, HTTP/1.0 or HTTP/2, a request hyper must
//! answer with an error (malformed, head too large), no route, or a route
//! that scans responses. The connection, with the bytes read so far, then
//! goes to hyper for the rest of its life ([`crate::linger::Linger`] replays
//! those bytes first).

mod framing;
mod head;

use crate::pool::Pool;
use crate::server::{Access, Log, Proxy, error_page};
use bytes::{Buf, Bytes, BytesMut};
use http_body_util::BodyExt;
use hyper::{Method, Response, StatusCode, Version};
use std::io::Write;
use std::net::SocketAddr;
use std::time::{Duration, Instant};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

use framing::*;
use head::*;

/// Headers a request or response head may have on this path; more go to
/// hyper (requests) or are a bad upstream response.
const MAX_HEADERS: usize = 64;

/// Read size for heads and bodies.
const READ_CHUNK: usize = 16 << 10;

/// What the request head says, once it is known to suit this path.
struct Req<'r> {
    route: &'r crate::server::Route,
    head_len: usize,
    is_head: bool,
    /// moat's own error pages as HTML rather than JSON.
    html: bool,
    /// The client asked to close after this exchange.
    close: bool,
    access: Option<Access>,
}

enum Parsed<'r> {
    /// More bytes are needed.
    Partial,
    /// Not for this path: hyper takes the connection.
    Handoff,
    Ready(Req<'r>),
}

/// Buffers a connection reuses from one exchange to the next.
#[derive(Default)]
struct Scratch {
    /// The client's bytes not yet consumed.
    buf: BytesMut,
    /// The upstream request head.
    head: Vec<u8>,
    /// The upstream's bytes.
    rbuf: BytesMut,
    /// The response head (and first body bytes) for the client.
    out: Vec<u8>,
}

/// Where one exchange leaves the client connection.
enum Next {
    KeepAlive,
    Close,
    Handoff,
}

impl Proxy {
    /// Serve a plain connection on the pass-through path until it closes
    /// or a request needs the full path.
    pub(crate) async fn serve_plain(self, mut sock: TcpStream, peer: SocketAddr) {
        let mut sc = Scratch::default();
        loop {
            match self.exchange(&mut sock, &mut sc, peer).await {
                Next::KeepAlive => continue,
                Next::Close => return,
                Next::Handoff => break,
            }
        }
        self.serve_conn(sc.buf.freeze(), sock, peer, false).await;
    }

    /// Read one request head and, if it suits this path, forward it and
    /// copy the response back.
    async fn exchange(&self, sock: &mut TcpStream, sc: &mut Scratch, peer: SocketAddr) -> Next {
        let Scratch {
            buf,
            head,
            rbuf,
            out,
        } = sc;
        let cfg = &self.0.cfg;
        let deadline = tokio::time::Instant::now() + Duration::from_secs(cfg.client_timeout_secs);
        let req = loop {
            if !buf.is_empty() {
                head.clear();
                match self.parse_request(buf, peer, head) {
                    Parsed::Ready(r) => break r,
                    Parsed::Handoff => return Next::Handoff,
                    Parsed::Partial if buf.len() > cfg.max_header_size => return Next::Handoff,
                    Parsed::Partial => {}
                }
            }
            buf.reserve(READ_CHUNK);
            match tokio::time::timeout_at(deadline, sock.read_buf(buf)).await {
                Ok(Ok(0)) | Ok(Err(_)) => return Next::Close,
                Ok(Ok(_)) => {}
                Err(_) => {
                    tracing::debug!(%peer, "client sent no complete request head in time");
                    return Next::Close;
                }
            }
        };
        buf.advance(req.head_len);
        let start = Instant::now();
        let mut log = Log {
            pool: Some(&req.route.pool),
            ..Log::default()
        };
        let (status, next) = self
            .forward_fast(sock, &req, head, rbuf, out, peer, &mut log)
            .await;
        self.record(&log, status, start, req.access, peer, false);
        next
    }

    /// Parse the head at the start of `buf`; when it suits this path, write
    /// the upstream request head into `out`.
    fn parse_request(&self, buf: &[u8], peer: SocketAddr, out: &mut Vec<u8>) -> Parsed<'_> {
        let mut headers = [httparse::EMPTY_HEADER; MAX_HEADERS];
        let mut req = httparse::Request::new(&mut headers);
        let head_len = match req.parse(buf) {
            Ok(httparse::Status::Complete(n)) => n,
            Ok(httparse::Status::Partial) => return Parsed::Partial,
            // Malformed, HTTP/2's preface, too many headers: hyper answers.
            Err(_) => return Parsed::Handoff,
        };
        let (Some(method), Some(target), Some(1)) = (req.method, req.path, req.version) else {
            return Parsed::Handoff;
        };
        let is_head = method == "HEAD";
        if !(method == "GET" || is_head || method == "OPTIONS") || !target.starts_with('/') {
            return Parsed::Handoff;
        }
        let mut host = None;
        for h in req.headers.iter() {
            let n = h.name;
            if n.eq_ignore_ascii_case("host") {
                if host.is_some() {
                    return Parsed::Handoff;
                }
                match std::str::from_utf8(h.value) {
                    Ok(v) if !v.is_empty() => host = Some(v),
                    _ => return Parsed::Handoff,
                }
            } else if n.eq_ignore_ascii_case("content-length")
                || n.eq_ignore_ascii_case("transfer-encoding")
                || n.eq_ignore_ascii_case("upgrade")
                || n.eq_ignore_ascii_case("expect")
            {
                return Parsed::Handoff;
            }
        }
        let Some(host) = host else {
            return Parsed::Handoff;
        };
        let path = target.split('?').next().unwrap_or(target);
        let Some(route) = self.route(host, path) else {
            return Parsed::Handoff;
        };
        if route.scan_responses && !is_head {
            return Parsed::Handoff;
        }
        let close = connection_tokens(req.headers).any(|t| t.eq_ignore_ascii_case("close"));
        let html = wants_html(req.headers);
        write_upstream_head(out, method, target, req.headers, peer, host);
        let access =
            tracing::enabled!(target: "moat::access", tracing::Level::INFO).then(|| Access {
                method: Method::from_bytes(method.as_bytes()).unwrap_or(Method::GET),
                path: path.to_string(),
                version: Version::HTTP_11,
                host: host.to_string(),
            });
        Parsed::Ready(Req {
            route,
            head_len,
            is_head,
            html,
            close,
            access,
        })
    }

    /// Send the request to the route's pool (another server on any failure
    /// before the response head: these requests are idempotent and
    /// bodiless) and copy the response to the client.
    #[allow(clippy::too_many_arguments)]
    async fn forward_fast<'a>(
        &self,
        client: &mut TcpStream,
        req: &Req<'a>,
        up_head: &[u8],
        rbuf: &mut BytesMut,
        out: &mut Vec<u8>,
        peer: SocketAddr,
        log: &mut Log<'a>,
    ) -> (u16, Next) {
        let pool: &'a std::sync::Arc<Pool> = &req.route.pool;
        let read_timeout = Duration::from_secs(self.0.cfg.read_timeout_secs);
        let mut tried = Vec::new();
        loop {
            let Some(i) = pool.pick(&tried) else {
                log.note = "upstream_unavailable";
                let mut r = error_page(
                    StatusCode::BAD_GATEWAY,
                    req.html,
                    "no upstream server could take the request",
                );
                r.headers_mut().insert(
                    hyper::header::RETRY_AFTER,
                    hyper::header::HeaderValue::from_static("5"),
                );
                return write_own(client, r, req.is_head, req.close).await;
            };
            tried.push(i);
            let server = &pool.servers[i];
            log.upstream = &server.url;
            log.attempts += 1;
            if log.attempts > 1 {
                pool.metrics().retries.increment(1);
            }
            let guard = pool.begin(i);
            let t0 = Instant::now();
            out.clear();
            let sent = tokio::time::timeout(
                read_timeout,
                self.send_fast(&server.authority, up_head, rbuf, out, req),
            )
            .await;
            pool.metrics()
                .upstream_seconds
                .record(t0.elapsed().as_secs_f64());
            let (up, head) = match sent {
                Ok(Ok(x)) => x,
                Ok(Err(e)) => {
                    pool.fail(i);
                    tracing::warn!(pool = %pool.name, server = %server.url, error = %e, "upstream request failed");
                    continue;
                }
                Err(_) => {
                    pool.fail(i);
                    tracing::warn!(pool = %pool.name, server = %server.url, "upstream response timed out");
                    continue;
                }
            };
            let RespHead::Final {
                head_len,
                status,
                framing,
                reusable,
                close_client,
            } = head
            else {
                // send_fast only returns a final head.
                return (502, Next::Close);
            };
            rbuf.advance(head_len);
            let copied = copy_body(client, up, rbuf, out, framing, read_timeout).await;
            drop(guard);
            let next = match copied {
                Ok(up) => {
                    if let Some(up) = up.filter(|_| reusable) {
                        self.1.put_back_raw(&server.authority, up);
                    }
                    if close_client {
                        Next::Close
                    } else {
                        Next::KeepAlive
                    }
                }
                Err(e) => {
                    tracing::debug!(%peer, server = %server.url, error = %e, "response copy ended early");
                    log.note = "response_incomplete";
                    Next::Close
                }
            };
            return (status, next);
        }
    }

    /// One attempt: a pooled socket (or a new one), the request head, and
    /// the response head rewritten into `out`. A pooled socket that turns
    /// out closed before any response byte is replaced by a new one.
    async fn send_fast(
        &self,
        authority: &std::sync::Arc<str>,
        up_head: &[u8],
        rbuf: &mut BytesMut,
        out: &mut Vec<u8>,
        req: &Req<'_>,
    ) -> Result<(TcpStream, RespHead), String> {
        loop {
            let (mut up, reused) = match self.1.checkout_raw(authority) {
                Some(s) => (s, true),
                None => (
                    Box::pin(self.1.connect_raw(authority))
                        .await
                        .map_err(|e| e.to_string())?,
                    false,
                ),
            };
            rbuf.clear();
            if let Err(e) = up.write_all(up_head).await {
                if reused {
                    continue;
                }
                return Err(format!("sending the request: {e}"));
            }
            // Leaves only when a reused socket turned out closed.
            loop {
                rbuf.reserve(READ_CHUNK);
                match up.read_buf(rbuf).await {
                    Ok(0) | Err(_) if reused && rbuf.is_empty() => break,
                    Ok(0) => return Err("the server closed the connection".into()),
                    Err(e) => return Err(format!("reading the response: {e}")),
                    Ok(_) => {}
                }
                loop {
                    out.clear();
                    match parse_response(rbuf, req.is_head, req.close, out)? {
                        RespHead::Partial if rbuf.len() > MAX_RESPONSE_HEAD => {
                            return Err("response head too large".into());
                        }
                        RespHead::Partial => break,
                        RespHead::Interim(n) => rbuf.advance(n),
                        fin => return Ok((up, fin)),
                    }
                    if rbuf.is_empty() {
                        break;
                    }
                }
            }
        }
    }
}

/// Write a response moat made itself (an error page) on this path.
async fn write_own(
    client: &mut TcpStream,
    resp: Response<crate::body::Body>,
    is_head: bool,
    close: bool,
) -> (u16, Next) {
    let (parts, body) = resp.into_parts();
    let body = match body.collect().await {
        Ok(b) => b.to_bytes(),
        Err(_) => Bytes::new(),
    };
    let mut out = Vec::with_capacity(256 + body.len());
    let _ = write!(
        out,
        "HTTP/1.1 {} {}\r\n",
        parts.status.as_str(),
        parts.status.canonical_reason().unwrap_or("")
    );
    for (n, v) in &parts.headers {
        out.extend_from_slice(n.as_str().as_bytes());
        out.extend_from_slice(b": ");
        out.extend_from_slice(v.as_bytes());
        out.extend_from_slice(b"\r\n");
    }
    let _ = write!(out, "content-length: {}\r\n", body.len());
    if close {
        out.extend_from_slice(b"connection: close\r\n");
    }
    out.extend_from_slice(b"\r\n");
    if !is_head {
        out.extend_from_slice(&body);
    }
    let status = parts.status.as_u16();
    match client.write_all(&out).await {
        Ok(()) if !close => (status, Next::KeepAlive),
        _ => (status, Next::Close),
    }
}
