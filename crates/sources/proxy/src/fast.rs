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
//! goes to hyper for the rest of its life ([`Prefixed`]).

use crate::pool::Pool;
use crate::server::{Access, Log, Proxy, error_page};
use bytes::{Buf, Bytes, BytesMut};
use http_body_util::BodyExt;
use hyper::{Method, Response, StatusCode, Version};
use std::io::Write;
use std::net::SocketAddr;
use std::pin::Pin;
use std::task::{Context, Poll};
use std::time::{Duration, Instant};
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt, ReadBuf};
use tokio::net::TcpStream;

/// Headers a request or response head may have on this path; more go to
/// hyper (requests) or are a bad upstream response.
const MAX_HEADERS: usize = 64;
/// Largest upstream response head.
const MAX_RESPONSE_HEAD: usize = 64 << 10;
/// Read size for heads and bodies.
const READ_CHUNK: usize = 16 << 10;

/// Hop-by-hop headers (RFC 9110 7.6.1 and the usual extras), never forwarded.
const HOP_BY_HOP: [&str; 9] = [
    "connection",
    "keep-alive",
    "proxy-connection",
    "te",
    "trailer",
    "transfer-encoding",
    "upgrade",
    "proxy-authenticate",
    "proxy-authorization",
];
/// Request headers moat sets itself.
const REPLACED: [&str; 5] = [
    "expect",
    "x-forwarded-for",
    "x-real-ip",
    "x-forwarded-proto",
    "x-forwarded-host",
];

fn is_one_of(name: &str, set: &[&str]) -> bool {
    set.iter().any(|n| n.eq_ignore_ascii_case(name))
}

/// The comma-separated tokens of `Connection` headers.
fn connection_tokens<'a>(headers: &'a [httparse::Header<'a>]) -> impl Iterator<Item = &'a str> {
    headers
        .iter()
        .filter(|h| h.name.eq_ignore_ascii_case("connection"))
        .filter_map(|h| std::str::from_utf8(h.value).ok())
        .flat_map(|v| v.split(','))
        .map(str::trim)
        .filter(|t| !t.is_empty())
}

/// A header named by a `Connection` token (hop-by-hop by declaration).
fn named_by_connection(headers: &[httparse::Header<'_>], name: &str) -> bool {
    connection_tokens(headers).any(|t| t.eq_ignore_ascii_case(name))
}

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

/// How an upstream response body ends.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Framing {
    /// No body (HEAD, 1xx, 204, 304).
    Empty,
    Length(u64),
    Chunked,
    /// Until the server closes the connection.
    Close,
}

#[derive(Debug, PartialEq, Eq)]
enum RespHead {
    Partial,
    /// An interim 1xx response of this many bytes, dropped.
    Interim(usize),
    Final {
        head_len: usize,
        status: u16,
        framing: Framing,
        /// The upstream socket can take another request afterwards.
        reusable: bool,
        /// The client connection must close afterwards.
        close_client: bool,
    },
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
        let io = Prefixed {
            pre: sc.buf.freeze(),
            io: sock,
        };
        self.serve_conn(hyper_util::rt::TokioIo::new(io), peer, false)
            .await;
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

/// The upstream request head: the request line, the client's headers
/// without hop-by-hop ones and those moat sets, then `X-Forwarded-For`
/// (appended to), `X-Real-IP`, `X-Forwarded-Proto` and `X-Forwarded-Host`.
/// The same rewriting as the full path's `upstream_request`.
fn write_upstream_head(
    out: &mut Vec<u8>,
    method: &str,
    target: &str,
    headers: &[httparse::Header<'_>],
    peer: SocketAddr,
    host: &str,
) {
    out.extend_from_slice(method.as_bytes());
    out.push(b' ');
    out.extend_from_slice(target.as_bytes());
    out.extend_from_slice(b" HTTP/1.1\r\n");
    let has_conn = headers
        .iter()
        .any(|h| h.name.eq_ignore_ascii_case("connection"));
    let mut xff = Vec::new();
    for h in headers {
        if h.name.eq_ignore_ascii_case("x-forwarded-for") {
            if !xff.is_empty() {
                xff.extend_from_slice(b", ");
            }
            xff.extend_from_slice(h.value);
            continue;
        }
        if is_one_of(h.name, &HOP_BY_HOP)
            || is_one_of(h.name, &REPLACED)
            || (has_conn && named_by_connection(headers, h.name))
        {
            continue;
        }
        out.extend_from_slice(h.name.as_bytes());
        out.extend_from_slice(b": ");
        out.extend_from_slice(h.value);
        out.extend_from_slice(b"\r\n");
    }
    out.extend_from_slice(b"x-forwarded-for: ");
    if !xff.is_empty() {
        out.extend_from_slice(&xff);
        out.extend_from_slice(b", ");
    }
    let _ = write!(out, "{}", peer.ip());
    let _ = write!(
        out,
        "\r\nx-real-ip: {}\r\nx-forwarded-proto: http\r\nx-forwarded-host: ",
        peer.ip()
    );
    out.extend_from_slice(host.as_bytes());
    out.extend_from_slice(b"\r\n\r\n");
}

/// Parse an upstream response head at the start of `buf`; for a final
/// response, write the head the client gets into `out`.
fn parse_response(
    buf: &[u8],
    is_head: bool,
    client_close: bool,
    out: &mut Vec<u8>,
) -> Result<RespHead, String> {
    let mut headers = [httparse::EMPTY_HEADER; MAX_HEADERS];
    let mut resp = httparse::Response::new(&mut headers);
    let head_len = match resp.parse(buf) {
        Ok(httparse::Status::Complete(n)) => n,
        Ok(httparse::Status::Partial) => return Ok(RespHead::Partial),
        Err(e) => return Err(format!("malformed response head: {e}")),
    };
    let (Some(status), Some(version)) = (resp.code, resp.version) else {
        return Err("malformed response head".into());
    };
    if status == 101 {
        return Err("101 Switching Protocols to a request that asked for no upgrade".into());
    }
    if (100..200).contains(&status) {
        return Ok(RespHead::Interim(head_len));
    }
    let headers = &*resp.headers;
    let mut length: Option<u64> = None;
    let mut te_chunked = None;
    let mut server_close = version == 0;
    for h in headers {
        if h.name.eq_ignore_ascii_case("content-length") {
            let n = std::str::from_utf8(h.value)
                .ok()
                .and_then(|v| v.trim().parse::<u64>().ok())
                .ok_or("malformed Content-Length")?;
            if length.is_some_and(|l| l != n) {
                return Err("conflicting Content-Length headers".into());
            }
            length = Some(n);
        } else if h.name.eq_ignore_ascii_case("transfer-encoding") {
            // Chunked only if it is the last coding.
            let last = std::str::from_utf8(h.value)
                .ok()
                .and_then(|v| v.rsplit(',').next())
                .map(str::trim);
            te_chunked = Some(last.is_some_and(|t| t.eq_ignore_ascii_case("chunked")));
        }
    }
    for t in connection_tokens(headers) {
        if t.eq_ignore_ascii_case("close") {
            server_close = true;
        } else if version == 0 && t.eq_ignore_ascii_case("keep-alive") {
            server_close = false;
        }
    }
    let framing = if is_head || status == 204 || status == 304 {
        Framing::Empty
    } else {
        match (te_chunked, length) {
            (Some(true), _) if version == 1 => Framing::Chunked,
            (Some(_), _) => Framing::Close,
            (None, Some(n)) => Framing::Length(n),
            (None, None) => Framing::Close,
        }
    };
    // Both Transfer-Encoding and Content-Length: the length is dropped and
    // the connection not reused (RFC 9112 6.3).
    let smuggled = te_chunked.is_some() && length.is_some();
    let reusable = !server_close && framing != Framing::Close && !smuggled;
    let close_client = client_close || framing == Framing::Close;
    let reason = resp.reason.unwrap_or("");
    let _ = write!(out, "HTTP/1.1 {status:03} {reason}\r\n");
    let has_conn = headers
        .iter()
        .any(|h| h.name.eq_ignore_ascii_case("connection"));
    for h in headers {
        let keep_te = h.name.eq_ignore_ascii_case("transfer-encoding") && framing != Framing::Empty;
        let drop_len = smuggled && h.name.eq_ignore_ascii_case("content-length");
        if drop_len
            || (!keep_te && is_one_of(h.name, &HOP_BY_HOP))
            || (has_conn && named_by_connection(headers, h.name))
        {
            continue;
        }
        out.extend_from_slice(h.name.as_bytes());
        out.extend_from_slice(b": ");
        out.extend_from_slice(h.value);
        out.extend_from_slice(b"\r\n");
    }
    if close_client {
        out.extend_from_slice(b"connection: close\r\n");
    }
    out.extend_from_slice(b"\r\n");
    Ok(RespHead::Final {
        head_len,
        status,
        framing,
        reusable,
        close_client,
    })
}

/// Copy the response body after its head (`head`, already rewritten) to
/// the client. `Ok(Some(socket))` when the body ended exactly where the
/// framing says, so the upstream socket may serve another request.
async fn copy_body(
    client: &mut TcpStream,
    mut up: TcpStream,
    rbuf: &mut BytesMut,
    head: &mut Vec<u8>,
    framing: Framing,
    read_timeout: Duration,
) -> Result<Option<TcpStream>, String> {
    let mut end = End::new(framing);
    // The body bytes that came with the head go out in the same write.
    let (n, done) = end.feed(rbuf)?;
    head.extend_from_slice(&rbuf[..n]);
    let mut exact = n == rbuf.len();
    rbuf.advance(n);
    client
        .write_all(head)
        .await
        .map_err(|e| format!("writing to the client: {e}"))?;
    let mut done = done;
    while !done {
        rbuf.clear();
        rbuf.reserve(READ_CHUNK);
        let got = tokio::time::timeout(read_timeout, up.read_buf(rbuf))
            .await
            .map_err(|_| "the upstream body stalled".to_string())?
            .map_err(|e| format!("reading the upstream body: {e}"))?;
        if got == 0 {
            if framing == Framing::Close {
                return Ok(None);
            }
            return Err("the upstream closed before the body ended".into());
        }
        let (n, d) = end.feed(rbuf)?;
        exact = n == rbuf.len();
        done = d;
        client
            .write_all(&rbuf[..n])
            .await
            .map_err(|e| format!("writing to the client: {e}"))?;
    }
    Ok(exact.then_some(up))
}

/// Where a body ends, fed as it arrives.
enum End {
    Empty,
    Length(u64),
    Chunked(Chunked),
    Close,
}

impl End {
    fn new(f: Framing) -> End {
        match f {
            Framing::Empty => End::Empty,
            Framing::Length(n) => End::Length(n),
            Framing::Chunked => End::Chunked(Chunked::default()),
            Framing::Close => End::Close,
        }
    }

    /// How many bytes of `b` belong to the body, and whether it ended.
    fn feed(&mut self, b: &[u8]) -> Result<(usize, bool), String> {
        match self {
            End::Empty => Ok((0, true)),
            End::Length(left) => {
                let n = (*left).min(b.len() as u64);
                *left -= n;
                // n <= b.len(), so it fits in usize.
                Ok((usize::try_from(n).unwrap_or(b.len()), *left == 0))
            }
            End::Chunked(c) => c.feed(b),
            End::Close => Ok((b.len(), false)),
        }
    }
}

/// A chunked body's framing (RFC 9112 7.1), tracked byte by byte except
/// for chunk data, which is skipped in bulk. Forwarded unchanged.
#[derive(Debug, Default)]
struct Chunked {
    state: CState,
    size: u64,
    digits: u32,
    /// Bytes in the current size line or trailer section.
    line: usize,
}

#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
enum CState {
    #[default]
    Size,
    Ext,
    SizeLf,
    Data,
    DataCr,
    DataLf,
    TrailerStart,
    TrailerLine,
    EndLf,
    Done,
}

/// Longest chunk-size line (with extensions) and trailer section.
const MAX_CHUNK_LINE: usize = 4096;
const MAX_TRAILERS: usize = 64 << 10;

impl Chunked {
    fn feed(&mut self, b: &[u8]) -> Result<(usize, bool), String> {
        let mut i = 0;
        while i < b.len() && self.state != CState::Done {
            if self.state == CState::Data {
                let n = self.size.min((b.len() - i) as u64);
                self.size -= n;
                i += usize::try_from(n).unwrap_or(b.len() - i);
                if self.size == 0 {
                    self.state = CState::DataCr;
                }
                continue;
            }
            let c = b[i];
            i += 1;
            self.line += 1;
            let bad = |what: &str| Err(format!("malformed chunked body: {what}"));
            self.state = match self.state {
                CState::Size => match c {
                    b'0'..=b'9' | b'a'..=b'f' | b'A'..=b'F' => {
                        self.digits += 1;
                        if self.digits > 15 {
                            return bad("chunk size too large");
                        }
                        // A hex digit: to_digit cannot fail here.
                        self.size =
                            self.size * 16 + u64::from((c as char).to_digit(16).unwrap_or(0));
                        CState::Size
                    }
                    b';' | b' ' | b'\t' if self.digits > 0 => CState::Ext,
                    b'\r' if self.digits > 0 => CState::SizeLf,
                    b'\n' if self.digits > 0 => self.size_line_end(),
                    _ => return bad("chunk size"),
                },
                CState::Ext => match c {
                    b'\r' => CState::SizeLf,
                    b'\n' => self.size_line_end(),
                    _ if self.line > MAX_CHUNK_LINE => return bad("chunk extension too long"),
                    _ => CState::Ext,
                },
                CState::SizeLf => match c {
                    b'\n' => self.size_line_end(),
                    _ => return bad("chunk size line"),
                },
                CState::DataCr => match c {
                    b'\r' => CState::DataLf,
                    b'\n' => self.next_chunk(),
                    _ => return bad("chunk data longer than its size"),
                },
                CState::DataLf => match c {
                    b'\n' => self.next_chunk(),
                    _ => return bad("chunk end"),
                },
                CState::TrailerStart => match c {
                    b'\r' => CState::EndLf,
                    b'\n' => CState::Done,
                    _ => CState::TrailerLine,
                },
                CState::TrailerLine => match c {
                    b'\n' => CState::TrailerStart,
                    _ if self.line > MAX_TRAILERS => return bad("trailers too large"),
                    _ => CState::TrailerLine,
                },
                CState::EndLf => match c {
                    b'\n' => CState::Done,
                    _ => return bad("trailer section end"),
                },
                CState::Data | CState::Done => self.state,
            };
        }
        Ok((i, self.state == CState::Done))
    }

    fn size_line_end(&mut self) -> CState {
        self.line = 0;
        if self.size == 0 {
            CState::TrailerStart
        } else {
            CState::Data
        }
    }

    fn next_chunk(&mut self) -> CState {
        self.size = 0;
        self.digits = 0;
        self.line = 0;
        CState::Size
    }
}

/// JSON unless the client asks for HTML (a browser) and not JSON, as on
/// the full path.
fn wants_html(headers: &[httparse::Header<'_>]) -> bool {
    let (mut html, mut json) = (false, false);
    for h in headers {
        if h.name.eq_ignore_ascii_case("accept") {
            html |= h
                .value
                .windows(9)
                .any(|w| w.eq_ignore_ascii_case(b"text/html"));
            json |= h.value.windows(4).any(|w| w.eq_ignore_ascii_case(b"json"));
        }
    }
    html && !json
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

/// A connection handed to hyper with the bytes already read from it.
pub(crate) struct Prefixed {
    pre: Bytes,
    io: TcpStream,
}

impl AsyncRead for Prefixed {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<std::io::Result<()>> {
        if !self.pre.is_empty() {
            let n = self.pre.len().min(buf.remaining());
            buf.put_slice(&self.pre[..n]);
            self.pre.advance(n);
            return Poll::Ready(Ok(()));
        }
        Pin::new(&mut self.io).poll_read(cx, buf)
    }
}

impl AsyncWrite for Prefixed {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<std::io::Result<usize>> {
        Pin::new(&mut self.io).poll_write(cx, buf)
    }
    fn poll_write_vectored(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[std::io::IoSlice<'_>],
    ) -> Poll<std::io::Result<usize>> {
        Pin::new(&mut self.io).poll_write_vectored(cx, bufs)
    }
    fn is_write_vectored(&self) -> bool {
        self.io.is_write_vectored()
    }
    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        Pin::new(&mut self.io).poll_flush(cx)
    }
    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        Pin::new(&mut self.io).poll_shutdown(cx)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const CHUNKED: &[u8] =
        b"4\r\nWiki\r\n5;name=\"v\"\r\npedia\r\nE\r\n in\r\n\r\nchunks.\r\n0\r\nX-Sum: 1\r\nX-Other: 2\r\n\r\n";

    #[test]
    fn chunked_end_is_found_however_the_bytes_are_split() {
        let mut msg = CHUNKED.to_vec();
        msg.extend_from_slice(b"HTTP/1.1 200 OK\r\n"); // what follows the body
        for split in 0..msg.len() {
            let mut c = Chunked::default();
            let (a, done_a) = c.feed(&msg[..split]).unwrap();
            let (n, done) = if done_a {
                (a, true)
            } else {
                let (b, d) = c.feed(&msg[split..]).unwrap();
                (a + b, d)
            };
            assert!(done, "split at {split}");
            assert_eq!(n, CHUNKED.len(), "split at {split}");
        }
        // One byte at a time.
        let mut c = Chunked::default();
        let mut n = 0;
        for b in CHUNKED {
            assert!(!c.feed(&[]).unwrap().1);
            n += c.feed(std::slice::from_ref(b)).unwrap().0;
        }
        assert_eq!((n, c.state), (CHUNKED.len(), CState::Done));
        // Bare LF line ends and no trailers.
        let mut c = Chunked::default();
        assert_eq!(c.feed(b"3\nabc\n0\n\nrest").unwrap(), (9, true));
    }

    #[test]
    fn malformed_chunked_bodies_are_errors() {
        for bad in [
            &b"zz\r\n"[..],
            b"\r\n",
            b";ext\r\n",
            b"2\r\nabc\r\n",
            b"2\r\nab\rX",
            b"1\rX",
            b"ffffffffffffffff\r\n",
            b"0\r\n\rX",
        ] {
            let r = Chunked::default().feed(bad);
            assert!(r.is_err(), "{:?} -> {r:?}", String::from_utf8_lossy(bad));
        }
        let long = [b"1;".as_slice(), &[b'e'; 5000]].concat();
        assert!(Chunked::default().feed(&long).is_err());
    }

    fn resp(raw: &str, is_head: bool, client_close: bool) -> (Result<RespHead, String>, String) {
        let mut out = Vec::new();
        let r = parse_response(raw.as_bytes(), is_head, client_close, &mut out);
        (r, String::from_utf8(out).unwrap())
    }

    fn fin(r: Result<RespHead, String>) -> (u16, Framing, bool, bool) {
        match r {
            Ok(RespHead::Final {
                status,
                framing,
                reusable,
                close_client,
                ..
            }) => (status, framing, reusable, close_client),
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn response_heads_are_framed_and_rewritten() {
        // Keep-alive with a length; hop-by-hop and Connection-named headers go.
        let (r, out) = resp(
            "HTTP/1.1 200 OK\r\nContent-Length: 5\r\nConnection: keep-alive, X-Private\r\nX-Private: 1\r\nKeep-Alive: timeout=5\r\nX-Kept: a\r\n\r\nhello",
            false,
            false,
        );
        assert_eq!(fin(r), (200, Framing::Length(5), true, false));
        assert_eq!(
            out,
            "HTTP/1.1 200 OK\r\nContent-Length: 5\r\nX-Kept: a\r\n\r\n"
        );
        // Chunked keeps its Transfer-Encoding (the bytes pass unchanged).
        let (r, out) = resp(
            "HTTP/1.1 201 Created\r\nTransfer-Encoding: gzip, chunked\r\n\r\n",
            false,
            false,
        );
        assert_eq!(fin(r), (201, Framing::Chunked, true, false));
        assert!(
            out.contains("Transfer-Encoding: gzip, chunked\r\n"),
            "{out}"
        );
        // Chunked and a length: the length goes, the socket is not reused.
        let (r, out) = resp(
            "HTTP/1.1 200 OK\r\nContent-Length: 3\r\nTransfer-Encoding: chunked\r\n\r\n",
            false,
            false,
        );
        assert_eq!(fin(r), (200, Framing::Chunked, false, false));
        assert!(
            !out.to_ascii_lowercase().contains("content-length"),
            "{out}"
        );
        // No length: until the server closes, and the client is told so.
        let (r, out) = resp("HTTP/1.1 200 OK\r\nX: y\r\n\r\n", false, false);
        assert_eq!(fin(r), (200, Framing::Close, false, true));
        assert!(out.ends_with("connection: close\r\n\r\n"), "{out}");
        // A coding that is not chunked: until close as well.
        let (r, _) = resp(
            "HTTP/1.1 200 OK\r\nTransfer-Encoding: gzip\r\n\r\n",
            false,
            false,
        );
        assert_eq!(fin(r), (200, Framing::Close, false, true));
        // The server closes; HTTP/1.0 without keep-alive closes.
        let (r, _) = resp(
            "HTTP/1.1 200 OK\r\nContent-Length: 0\r\nConnection: close\r\n\r\n",
            false,
            false,
        );
        assert_eq!(fin(r), (200, Framing::Length(0), false, false));
        let (r, _) = resp("HTTP/1.0 200 OK\r\nContent-Length: 2\r\n\r\n", false, false);
        assert_eq!(fin(r), (200, Framing::Length(2), false, false));
        let (r, _) = resp(
            "HTTP/1.0 200 OK\r\nContent-Length: 2\r\nConnection: keep-alive\r\n\r\n",
            false,
            false,
        );
        assert_eq!(fin(r), (200, Framing::Length(2), true, false));
        // No body for HEAD, 204 and 304, whatever the headers say.
        let (r, out) = resp("HTTP/1.1 200 OK\r\nContent-Length: 99\r\n\r\n", true, false);
        assert_eq!(fin(r), (200, Framing::Empty, true, false));
        assert!(out.contains("Content-Length: 99"), "{out}");
        let (r, _) = resp(
            "HTTP/1.1 304 Not Modified\r\nTransfer-Encoding: chunked\r\n\r\n",
            false,
            false,
        );
        assert_eq!(fin(r).1, Framing::Empty);
        let (r, _) = resp("HTTP/1.1 204 No Content\r\n\r\n", false, false);
        assert_eq!(fin(r).1, Framing::Empty);
        // The client asked to close.
        let (r, out) = resp("HTTP/1.1 200 OK\r\nContent-Length: 0\r\n\r\n", false, true);
        assert_eq!(fin(r), (200, Framing::Length(0), true, true));
        assert!(out.ends_with("connection: close\r\n\r\n"), "{out}");
        // Interim responses are skipped; partial heads wait.
        assert_eq!(
            resp(
                "HTTP/1.1 100 Continue\r\n\r\nHTTP/1.1 200 OK\r\n",
                false,
                false
            )
            .0,
            Ok(RespHead::Interim(25))
        );
        assert_eq!(
            resp("HTTP/1.1 200 OK\r\nContent-Le", false, false).0,
            Ok(RespHead::Partial)
        );
    }

    #[test]
    fn error_pages_follow_accept_like_the_full_path() {
        let h = |v: &'static str| httparse::Header {
            name: "Accept",
            value: v.as_bytes(),
        };
        assert!(!wants_html(&[]));
        assert!(wants_html(&[h(
            "text/html,application/xhtml+xml,*/*;q=0.8"
        )]));
        assert!(wants_html(&[h("TEXT/HTML")]));
        assert!(!wants_html(&[h("application/json, text/html")]));
        assert!(!wants_html(&[h("text/html"), h("application/json")]));
    }

    #[test]
    fn bad_response_heads_are_errors() {
        for bad in [
            "HTTP/1.1 200 OK\r\nContent-Length: 5\r\nContent-Length: 6\r\n\r\n",
            "HTTP/1.1 200 OK\r\nContent-Length: -1\r\n\r\n",
            "HTTP/1.1 101 Switching Protocols\r\nUpgrade: x\r\n\r\n",
            "HTTP/1.1 2000 OK\r\n\r\n",
            "SMTP ready\r\n\r\n",
        ] {
            assert!(resp(bad, false, false).0.is_err(), "{bad:?}");
        }
    }

    #[test]
    fn upstream_head_matches_the_full_path() {
        let raw = b"GET /up?x=1 HTTP/1.1\r\nHost: files.example:8443\r\nConnection: keep-alive, x-secret\r\nX-Secret: 1\r\nX-Forwarded-For: 10.0.0.1\r\nX-Forwarded-For: 10.0.0.2\r\nX-Real-IP: 6.6.6.6\r\nX-Forwarded-Host: evil\r\nTE: trailers\r\nAccept: */*\r\n\r\n";
        let mut headers = [httparse::EMPTY_HEADER; MAX_HEADERS];
        let mut req = httparse::Request::new(&mut headers);
        assert!(req.parse(raw).unwrap().is_complete());
        let peer: SocketAddr = "192.0.2.7:5555".parse().unwrap();
        let mut out = Vec::new();
        write_upstream_head(
            &mut out,
            "GET",
            "/up?x=1",
            req.headers,
            peer,
            "files.example:8443",
        );
        let mut headers = [httparse::EMPTY_HEADER; MAX_HEADERS];
        let mut up = httparse::Request::new(&mut headers);
        assert_eq!(
            up.parse(&out).unwrap(),
            httparse::Status::Complete(out.len())
        );
        assert_eq!(
            (up.method, up.path, up.version),
            (Some("GET"), Some("/up?x=1"), Some(1))
        );
        let mut got: Vec<(String, String)> = up
            .headers
            .iter()
            .map(|h| {
                (
                    h.name.to_ascii_lowercase(),
                    String::from_utf8_lossy(h.value).into_owned(),
                )
            })
            .collect();
        got.sort();
        // The full path, given the same request.
        let mut b = hyper::Request::get("/up?x=1");
        for line in std::str::from_utf8(raw).unwrap().split("\r\n").skip(1) {
            if let Some((n, v)) = line.split_once(": ") {
                b = b.header(n, v);
            }
        }
        let (parts, _) = b.body(()).unwrap().into_parts();
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
        let full = crate::server::upstream_request(
            &parts,
            &pool.servers[0],
            crate::body::empty(),
            None,
            peer,
            false,
            "files.example:8443",
            false,
        )
        .unwrap();
        let mut want: Vec<(String, String)> = full
            .headers()
            .iter()
            .map(|(n, v)| (n.to_string(), v.to_str().unwrap().to_string()))
            .collect();
        want.sort();
        assert_eq!(got, want);
        assert!(got.contains(&(
            "x-forwarded-for".into(),
            "10.0.0.1, 10.0.0.2, 192.0.2.7".into()
        )));
    }
}
