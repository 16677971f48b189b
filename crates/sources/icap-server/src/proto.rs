//! The ICAP request language (RFC 3507): the head (request line and
//! headers), the `Encapsulated` offsets, the encapsulated HTTP headers and
//! the chunk lines of the body. Pure functions over bytes (fuzzed:
//! `fuzz/fuzz_targets/icap_request.rs`).

/// Headers of one ICAP head at most.
pub const MAX_HEADERS: usize = 100;
/// The longest chunk-size line (size, extensions, CRLF).
pub const MAX_CHUNK_LINE: usize = 1024;

/// Why a request is refused, and the ICAP status that says so.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ProtoError {
    /// 400: bad framing, offsets, headers or chunks.
    BadRequest(String),
    /// 501: not OPTIONS, REQMOD or RESPMOD.
    NotImplemented(String),
    /// 505: not `ICAP/1.0`.
    Version,
}

impl ProtoError {
    pub fn status(&self) -> (u16, &'static str) {
        match self {
            ProtoError::BadRequest(_) => (400, "Bad Request"),
            ProtoError::NotImplemented(_) => (501, "Method Not Implemented"),
            ProtoError::Version => (505, "ICAP Version Not Supported"),
        }
    }
}

impl std::fmt::Display for ProtoError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            ProtoError::BadRequest(m) => write!(f, "bad request: {m}"),
            ProtoError::NotImplemented(m) => write!(f, "method not implemented: {m}"),
            ProtoError::Version => f.write_str("ICAP version not supported"),
        }
    }
}

fn bad(m: impl Into<String>) -> ProtoError {
    ProtoError::BadRequest(m.into())
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Method {
    Options,
    Reqmod,
    Respmod,
}

impl Method {
    pub fn as_str(self) -> &'static str {
        match self {
            Method::Options => "OPTIONS",
            Method::Reqmod => "REQMOD",
            Method::Respmod => "RESPMOD",
        }
    }
}

/// An ICAP request head.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Head {
    pub method: Method,
    /// The URI's path without its leading `/` and without a query.
    pub service: String,
    pub headers: Vec<(String, String)>,
}

impl Head {
    /// The first header of that name (case-insensitive).
    pub fn get(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(k, _)| k.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
    }

    /// Whether the client accepts `204` outside a preview (`Allow: 204`).
    pub fn allows_204(&self) -> bool {
        self.headers
            .iter()
            .filter(|(k, _)| k.eq_ignore_ascii_case("allow"))
            .any(|(_, v)| v.split(',').any(|t| t.trim() == "204"))
    }

    /// `Preview: n`, when the client sends a preview. A value that is not a
    /// number is a bad request.
    pub fn preview(&self) -> Result<Option<u64>, ProtoError> {
        match self.get("preview") {
            None => Ok(None),
            Some(v) => v
                .trim()
                .parse::<u64>()
                .map(Some)
                .map_err(|_| bad(format!("Preview: {v:?} is not a number"))),
        }
    }

    /// `Connection: close`.
    pub fn wants_close(&self) -> bool {
        self.headers
            .iter()
            .filter(|(k, _)| k.eq_ignore_ascii_case("connection"))
            .any(|(_, v)| v.split(',').any(|t| t.trim().eq_ignore_ascii_case("close")))
    }
}

/// The end of the head (`\r\n\r\n`) in `buf`: the head's length with it.
/// `None` while incomplete; a head longer than `max` is a bad request.
pub fn head_len(buf: &[u8], max: usize) -> Result<Option<usize>, ProtoError> {
    let window = &buf[..buf.len().min(max)];
    match window.windows(4).position(|w| w == b"\r\n\r\n") {
        Some(i) => Ok(Some(i + 4)),
        None if buf.len() >= max => Err(bad(format!("ICAP head longer than {max} bytes"))),
        None => Ok(None),
    }
}

fn is_token(s: &str) -> bool {
    !s.is_empty()
        && s.bytes()
            .all(|b| b.is_ascii_alphanumeric() || b"!#$%&'*+-.^_`|~".contains(&b))
}

/// Parse a head (request line and headers, ending with the empty line).
pub fn parse_head(raw: &[u8]) -> Result<Head, ProtoError> {
    let text = std::str::from_utf8(raw).map_err(|_| bad("head is not UTF-8"))?;
    let text = text
        .strip_suffix("\r\n\r\n")
        .ok_or_else(|| bad("head does not end with an empty line"))?;
    let mut lines = text.split("\r\n");
    let line = lines.next().unwrap_or_default();
    let mut parts = line.split(' ');
    let (Some(method), Some(uri), Some(version), None) =
        (parts.next(), parts.next(), parts.next(), parts.next())
    else {
        return Err(bad("request line is not `METHOD URI ICAP/1.0`"));
    };
    if !version.starts_with("ICAP/") {
        return Err(bad("request line is not `METHOD URI ICAP/1.0`"));
    }
    if version != "ICAP/1.0" {
        return Err(ProtoError::Version);
    }
    let method = match method {
        "OPTIONS" => Method::Options,
        "REQMOD" => Method::Reqmod,
        "RESPMOD" => Method::Respmod,
        m if is_token(m) => return Err(ProtoError::NotImplemented(m.to_string())),
        _ => return Err(bad("method is not a token")),
    };
    let service = service_of(uri)?;
    let mut headers: Vec<(String, String)> = Vec::new();
    for l in lines {
        if l.starts_with([' ', '\t']) {
            // A continuation of the previous header's value.
            let Some((_, v)) = headers.last_mut() else {
                return Err(bad("continuation line before any header"));
            };
            v.push(' ');
            v.push_str(l.trim());
            continue;
        }
        let Some((k, v)) = l.split_once(':') else {
            return Err(bad(format!("header line without ':': {:.64}", l)));
        };
        if !is_token(k) {
            return Err(bad(format!("bad header name {:.64}", k)));
        }
        if headers.len() == MAX_HEADERS {
            return Err(bad(format!("more than {MAX_HEADERS} headers")));
        }
        headers.push((k.to_string(), v.trim().to_string()));
    }
    if headers
        .iter()
        .any(|(_, v)| v.bytes().any(|b| b.is_ascii_control() && b != b'\t'))
    {
        return Err(bad("control character in a header value"));
    }
    Ok(Head {
        method,
        service,
        headers,
    })
}

/// `icap://host[:port]/service[?args]` (or `/service`) → `service`.
fn service_of(uri: &str) -> Result<String, ProtoError> {
    let path = if let Some(rest) = uri.strip_prefix("icap://") {
        match rest.find('/') {
            Some(i) => &rest[i..],
            None => "/",
        }
    } else if uri.starts_with('/') {
        uri
    } else {
        return Err(bad("URI is not icap://host/service"));
    };
    let path = path.split(['?', '#']).next().unwrap_or_default();
    Ok(path.trim_start_matches('/').to_string())
}

/// The body an encapsulated message carries.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum BodyKind {
    /// `null-body`: none.
    None,
    /// `req-body`: the HTTP request's.
    Request,
    /// `res-body`: the HTTP response's.
    Response,
    /// `opt-body`: an OPTIONS body (read and ignored).
    Options,
}

/// Parsed `Encapsulated` offsets: where the HTTP request and response
/// headers lie in the bytes after the ICAP head, and where the body starts.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Encapsulated {
    pub req_hdr: Option<std::ops::Range<usize>>,
    pub res_hdr: Option<std::ops::Range<usize>>,
    pub body: BodyKind,
    /// Offset of the body (= length of the headers before it).
    pub body_at: usize,
}

/// Parse and check `Encapsulated` for `method`: offsets start at 0 and
/// increase, sections in the order req-hdr, res-hdr, body, exactly one body
/// and last, only the sections the method allows.
pub fn parse_encapsulated(value: &str, method: Method) -> Result<Encapsulated, ProtoError> {
    let mut entries: Vec<(&str, usize)> = Vec::new();
    for item in value.split(',') {
        let item = item.trim();
        let Some((name, off)) = item.split_once('=') else {
            return Err(bad(format!("Encapsulated entry {item:?}")));
        };
        let off = off.trim();
        if off.is_empty() || off.len() > 12 || !off.bytes().all(|b| b.is_ascii_digit()) {
            return Err(bad(format!("Encapsulated offset {off:?}")));
        }
        let off: usize = off
            .parse()
            .map_err(|_| bad(format!("Encapsulated offset {off:?}")))?;
        entries.push((name.trim(), off));
        if entries.len() > 4 {
            return Err(bad("Encapsulated has too many entries"));
        }
    }
    let rank = |n: &str| match n {
        "req-hdr" => Some(0),
        "res-hdr" => Some(1),
        "req-body" | "res-body" | "null-body" | "opt-body" => Some(2),
        _ => None,
    };
    let mut last_rank = -1i32;
    let mut last_off: Option<usize> = None;
    let mut enc = Encapsulated {
        req_hdr: None,
        res_hdr: None,
        body: BodyKind::None,
        body_at: 0,
    };
    let mut body_seen = false;
    for (i, (name, off)) in entries.iter().enumerate() {
        let r = rank(name).ok_or_else(|| bad(format!("Encapsulated section {name:?}")))?;
        if r <= last_rank {
            return Err(bad("Encapsulated sections out of order or repeated"));
        }
        match last_off {
            None if *off != 0 => return Err(bad("Encapsulated does not start at offset 0")),
            Some(p) if *off <= p => return Err(bad("Encapsulated offsets do not increase")),
            _ => {}
        }
        let end = entries.get(i + 1).map(|e| e.1);
        match *name {
            "req-hdr" | "res-hdr" => {
                let Some(end) = end else {
                    return Err(bad("Encapsulated does not end with a body entry"));
                };
                if end <= *off {
                    return Err(bad("Encapsulated offsets do not increase"));
                }
                if *name == "req-hdr" {
                    enc.req_hdr = Some(*off..end);
                } else {
                    enc.res_hdr = Some(*off..end);
                }
            }
            body => {
                body_seen = true;
                enc.body_at = *off;
                enc.body = match body {
                    "req-body" => BodyKind::Request,
                    "res-body" => BodyKind::Response,
                    "opt-body" => BodyKind::Options,
                    _ => BodyKind::None,
                };
            }
        }
        last_rank = r;
        last_off = Some(*off);
    }
    if !body_seen {
        return Err(bad("Encapsulated has no body entry"));
    }
    let ok = match method {
        Method::Options => enc.req_hdr.is_none() && enc.res_hdr.is_none(),
        Method::Reqmod => {
            enc.res_hdr.is_none()
                && enc.req_hdr.is_some()
                && matches!(enc.body, BodyKind::Request | BodyKind::None)
        }
        Method::Respmod => matches!(enc.body, BodyKind::Response | BodyKind::None),
    };
    if !ok || (method != Method::Options && enc.body == BodyKind::Options) {
        return Err(bad(format!(
            "Encapsulated {value:?} is not valid for {}",
            method.as_str()
        )));
    }
    Ok(enc)
}

/// Check encapsulated HTTP headers: a whole request (or response) head,
/// ending with its empty line and nothing after it.
pub fn check_http_head(raw: &[u8], request: bool) -> Result<(), ProtoError> {
    let mut hs = [httparse::EMPTY_HEADER; MAX_HEADERS];
    let r = if request {
        httparse::Request::new(&mut hs).parse(raw)
    } else {
        httparse::Response::new(&mut hs).parse(raw)
    };
    let what = if request { "request" } else { "response" };
    match r {
        Ok(httparse::Status::Complete(n)) if n == raw.len() => Ok(()),
        Ok(httparse::Status::Complete(_)) => Err(bad(format!(
            "encapsulated HTTP {what} headers do not fill their Encapsulated section"
        ))),
        Ok(httparse::Status::Partial) => Err(bad(format!(
            "encapsulated HTTP {what} headers are cut short (Encapsulated offsets)"
        ))),
        Err(e) => Err(bad(format!("encapsulated HTTP {what} headers: {e}"))),
    }
}

/// A header of encapsulated HTTP headers (already checked).
pub fn http_header(raw: &[u8], name: &str) -> Option<String> {
    let text = std::str::from_utf8(raw).ok()?;
    text.split("\r\n").skip(1).find_map(|l| {
        let (k, v) = l.split_once(':')?;
        k.trim()
            .eq_ignore_ascii_case(name)
            .then(|| v.trim().to_string())
    })
}

/// The first line of encapsulated HTTP headers (`GET http://… HTTP/1.1`).
pub fn http_first_line(raw: &[u8]) -> String {
    let end = raw
        .windows(2)
        .position(|w| w == b"\r\n")
        .unwrap_or(raw.len())
        .min(512);
    String::from_utf8_lossy(&raw[..end]).into_owned()
}

/// One chunk-size line.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ChunkLine {
    /// A chunk of this many bytes follows (then CRLF).
    Data(u64),
    /// The last chunk; `ieof`: the preview holds the whole body.
    Last { ieof: bool },
}

/// The position of the first CRLF in `buf` (a line's length without it);
/// `None` while incomplete; a line longer than [`MAX_CHUNK_LINE`] is bad.
pub fn line_len(buf: &[u8]) -> Result<Option<usize>, ProtoError> {
    let window = &buf[..buf.len().min(MAX_CHUNK_LINE)];
    match window.windows(2).position(|w| w == b"\r\n") {
        Some(i) => Ok(Some(i)),
        None if buf.len() >= MAX_CHUNK_LINE => Err(bad("chunk-size line too long")),
        None => Ok(None),
    }
}

/// Parse a chunk-size line (without its CRLF): hex size, then extensions
/// (`; ieof` on the last chunk of a complete preview).
pub fn parse_chunk_line(line: &[u8]) -> Result<ChunkLine, ProtoError> {
    let text = std::str::from_utf8(line).map_err(|_| bad("chunk-size line is not text"))?;
    let (size, ext) = match text.split_once(';') {
        Some((s, e)) => (s.trim_end(), Some(e)),
        None => (text.trim_end(), None),
    };
    if size.is_empty() || size.len() > 16 || !size.bytes().all(|b| b.is_ascii_hexdigit()) {
        return Err(bad(format!("bad chunk size {:.32}", size)));
    }
    let n = u64::from_str_radix(size, 16).map_err(|_| bad("bad chunk size"))?;
    if n > 0 {
        return Ok(ChunkLine::Data(n));
    }
    let ieof = ext.is_some_and(|e| e.split(';').any(|t| t.trim() == "ieof"));
    Ok(ChunkLine::Last { ieof })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn head(s: &str) -> Result<Head, ProtoError> {
        parse_head(s.as_bytes())
    }

    #[test]
    fn heads_parse_with_services_headers_and_continuations() {
        let h = head("RESPMOD icap://127.0.0.1:1344/avscan?x=1 ICAP/1.0\r\nHost: a\r\nAllow: 204, 206\r\nPreview: 1024\r\nEncapsulated: req-hdr=0,\r\n res-hdr=10, res-body=20\r\n\r\n").unwrap();
        assert_eq!(h.method, Method::Respmod);
        assert_eq!(h.service, "avscan");
        assert!(h.allows_204());
        assert_eq!(h.preview(), Ok(Some(1024)));
        assert_eq!(
            h.get("ENCAPSULATED"),
            Some("req-hdr=0, res-hdr=10, res-body=20")
        );
        assert!(!h.wants_close());
        let h = head("OPTIONS /srv_clamav ICAP/1.0\r\nConnection: close\r\n\r\n").unwrap();
        assert_eq!(h.service, "srv_clamav");
        assert!(h.wants_close() && !h.allows_204());
        assert_eq!(h.preview(), Ok(None));
    }

    #[test]
    fn bad_heads_get_the_right_status() {
        let st = |s: &str| head(s).unwrap_err().status().0;
        assert_eq!(st("GET / HTTP/1.1\r\n\r\n"), 400);
        assert_eq!(st("PATCH icap://a/avscan ICAP/1.0\r\n\r\n"), 501);
        assert_eq!(st("OPTIONS icap://a/avscan ICAP/2.0\r\n\r\n"), 505);
        assert_eq!(
            st("OPTIONS icap://a/avscan ICAP/1.0\r\nno colon\r\n\r\n"),
            400
        );
        assert_eq!(st("OPTIONS icap://a/avscan ICAP/1.0\r\n cont\r\n\r\n"), 400);
        assert_eq!(
            st("OPTIONS icap://a/avscan ICAP/1.0\r\nA: b\0c\r\n\r\n"),
            400
        );
        assert_eq!(st("OPTIONS ftp://a/avscan ICAP/1.0\r\n\r\n"), 400);
        assert_eq!(
            head("REQMOD icap://a/x ICAP/1.0\r\nPreview: lots\r\n\r\n")
                .unwrap()
                .preview()
                .unwrap_err()
                .status()
                .0,
            400
        );
        let many: String = (0..=MAX_HEADERS).map(|i| format!("H{i}: v\r\n")).collect();
        assert_eq!(st(&format!("OPTIONS /a ICAP/1.0\r\n{many}\r\n")), 400);
    }

    #[test]
    fn the_head_ends_at_the_empty_line_within_the_limit() {
        assert_eq!(
            head_len(b"OPTIONS /a ICAP/1.0\r\n\r\nrest", 100),
            Ok(Some(23))
        );
        assert_eq!(head_len(b"OPTIONS /a ICAP/1.0\r\n", 100), Ok(None));
        assert!(head_len(&[b'a'; 100], 100).is_err());
    }

    #[test]
    fn encapsulated_offsets_are_checked() {
        let e =
            parse_encapsulated("req-hdr=0, res-hdr=137, res-body=296", Method::Respmod).unwrap();
        assert_eq!(e.req_hdr, Some(0..137));
        assert_eq!(e.res_hdr, Some(137..296));
        assert_eq!(e.body, BodyKind::Response);
        assert_eq!(e.body_at, 296);
        let e = parse_encapsulated("req-hdr=0, null-body=170", Method::Reqmod).unwrap();
        assert_eq!(e.body, BodyKind::None);
        assert_eq!(e.body_at, 170);
        let e = parse_encapsulated("res-hdr=0, res-body=50", Method::Respmod).unwrap();
        assert_eq!(e.req_hdr, None);
        let e = parse_encapsulated("null-body=0", Method::Options).unwrap();
        assert_eq!(e.body_at, 0);
        for (v, m) in [
            ("req-hdr=10, req-body=20", Method::Reqmod), // not from 0
            ("req-hdr=0, req-body=0", Method::Reqmod),   // not increasing
            ("req-body=0, req-hdr=10", Method::Reqmod),  // order
            ("req-hdr=0, res-hdr=10", Method::Respmod),  // no body
            ("req-hdr=0, res-body=10", Method::Reqmod),  // wrong body
            ("req-hdr=0, res-hdr=5, res-body=9", Method::Reqmod), // res-hdr in REQMOD
            ("null-body=0", Method::Reqmod),             // REQMOD without req-hdr
            ("req-hdr=0, req-body=x", Method::Reqmod),
            ("req-hdr=0, req-body=-1", Method::Reqmod),
            ("req-hdr=0, req-body=99999999999999999", Method::Reqmod),
            ("req-hdr=0, foo=3, req-body=9", Method::Reqmod),
            ("req-hdr", Method::Reqmod),
            ("", Method::Respmod),
        ] {
            assert!(
                matches!(parse_encapsulated(v, m), Err(ProtoError::BadRequest(_))),
                "{v:?}"
            );
        }
    }

    #[test]
    fn encapsulated_http_heads_must_fill_their_section() {
        check_http_head(b"GET http://a/b HTTP/1.1\r\nHost: a\r\n\r\n", true).unwrap();
        check_http_head(b"HTTP/1.1 200 OK\r\nContent-Length: 3\r\n\r\n", false).unwrap();
        assert!(check_http_head(b"GET http://a/b HTTP/1.1\r\nHost: a\r\n", true).is_err());
        assert!(check_http_head(b"GET / HTTP/1.1\r\n\r\nextra", true).is_err());
        assert!(check_http_head(b"HTTP/1.1 200 OK\r\n\r\n", true).is_err());
        let h = b"POST /up HTTP/1.1\r\nContent-Type: multipart/form-data; boundary=x\r\n\r\n";
        assert_eq!(
            http_header(h, "content-type").as_deref(),
            Some("multipart/form-data; boundary=x")
        );
        assert_eq!(http_first_line(h), "POST /up HTTP/1.1");
    }

    #[test]
    fn chunk_lines_sizes_and_ieof() {
        assert_eq!(parse_chunk_line(b"1a"), Ok(ChunkLine::Data(26)));
        assert_eq!(parse_chunk_line(b"400;ext=1"), Ok(ChunkLine::Data(1024)));
        assert_eq!(parse_chunk_line(b"0"), Ok(ChunkLine::Last { ieof: false }));
        assert_eq!(
            parse_chunk_line(b"0; ieof"),
            Ok(ChunkLine::Last { ieof: true })
        );
        assert_eq!(
            parse_chunk_line(b"FFFFFFFF"),
            Ok(ChunkLine::Data(0xFFFF_FFFF))
        );
        for l in [&b""[..], b"x", b"-1", b"11111111111111111", b" 5", b"\xff"] {
            assert!(parse_chunk_line(l).is_err(), "{l:?}");
        }
        assert_eq!(line_len(b"5\r\nhello"), Ok(Some(1)));
        assert_eq!(line_len(b"5"), Ok(None));
        assert!(line_len(&[b'1'; MAX_CHUNK_LINE]).is_err());
    }
}
