//! Request and response heads on the fast path: the upstream request head
//! (the same rewriting as the full path), the response head parsed,
//! checked, framed and rewritten.

use super::*;

/// Largest upstream response head.
pub(super) const MAX_RESPONSE_HEAD: usize = 64 << 10;

/// Hop-by-hop headers (RFC 9110 7.6.1 and the usual extras), never forwarded.
pub(super) const HOP_BY_HOP: [&str; 9] = [
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
pub(super) const REPLACED: [&str; 5] = [
    "expect",
    "x-forwarded-for",
    "x-real-ip",
    "x-forwarded-proto",
    "x-forwarded-host",
];

pub(super) fn is_one_of(name: &str, set: &[&str]) -> bool {
    set.iter().any(|n| n.eq_ignore_ascii_case(name))
}

/// The comma-separated tokens of `Connection` headers.
pub(super) fn connection_tokens<'a>(
    headers: &'a [httparse::Header<'a>],
) -> impl Iterator<Item = &'a str> {
    headers
        .iter()
        .filter(|h| h.name.eq_ignore_ascii_case("connection"))
        .filter_map(|h| std::str::from_utf8(h.value).ok())
        .flat_map(|v| v.split(','))
        .map(str::trim)
        .filter(|t| !t.is_empty())
}

/// A header named by a `Connection` token (hop-by-hop by declaration).
pub(super) fn named_by_connection(headers: &[httparse::Header<'_>], name: &str) -> bool {
    connection_tokens(headers).any(|t| t.eq_ignore_ascii_case(name))
}

/// How an upstream response body ends.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Framing {
    /// No body (HEAD, 1xx, 204, 304).
    Empty,
    Length(u64),
    Chunked,
    /// Until the server closes the connection.
    Close,
}

#[derive(Debug, PartialEq, Eq)]
pub(super) enum RespHead {
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

/// The upstream request head: the request line, the client's headers
/// without hop-by-hop ones and those moat sets, then `X-Forwarded-For`
/// (appended to), `X-Real-IP`, `X-Forwarded-Proto` and `X-Forwarded-Host`.
/// The same rewriting as the full path's `upstream_request`.
pub(super) fn write_upstream_head(
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
pub(super) fn parse_response(
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

/// JSON unless the client asks for HTML (a browser) and not JSON, as on
/// the full path.
pub(super) fn wants_html(headers: &[httparse::Header<'_>]) -> bool {
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

#[cfg(test)]
mod tests {
    use super::*;

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
