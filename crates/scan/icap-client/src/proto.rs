//! The ICAP language from the client's side, pure functions over bytes:
//! requests (OPTIONS, RESPMOD/REQMOD heads with their encapsulated HTTP
//! head), response heads, `Encapsulated`, chunk lines, OPTIONS values and
//! the detection headers (`X-Infection-Found`, `X-Virus-ID`,
//! `X-Violations-Found`).

use crate::config::{Method, Url};
use std::ops::Range;
use std::time::Duration;

/// Longest response head accepted, and longest encapsulated HTTP head.
pub const MAX_HEAD: usize = 64 * 1024;
/// Headers of one response head at most.
pub const MAX_HEADERS: usize = 100;
/// Longest chunk-size line (size, extensions).
pub const MAX_CHUNK_LINE: usize = 1024;
/// Names reported for one object at most, and their longest length.
const MAX_NAMES: usize = 64;
const MAX_NAME_LEN: usize = 256;
/// The name given to a block (an HTTP 403) that names no threat.
pub const GENERIC_NAME: &str = "ICAP.Blocked";

/// An ICAP response head.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Response {
    pub code: u16,
    pub reason: String,
    /// Header values, trimmed; continuation lines (as in
    /// `X-Violations-Found`) joined to their header with `\n`.
    pub headers: Vec<(String, String)>,
}

impl Response {
    /// The first header of that name (case-insensitive).
    pub fn get(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(k, _)| k.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
    }

    /// Every header of that name.
    pub fn all<'a>(&'a self, name: &'a str) -> impl Iterator<Item = &'a str> + 'a {
        self.headers
            .iter()
            .filter(move |(k, _)| k.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
    }

    /// `Connection: close`.
    pub fn closes(&self) -> bool {
        self.all("connection")
            .any(|v| v.split(',').any(|t| t.trim().eq_ignore_ascii_case("close")))
    }

    /// The ISTag without its quotes.
    pub fn istag(&self) -> Option<String> {
        let v = self.get("istag")?.trim().trim_matches('"').trim();
        (!v.is_empty()).then(|| clean_text(v, 64))
    }
}

/// The end of the head (`\r\n\r\n`) in `buf`: the head's length with it;
/// `None` while incomplete. A head longer than [`MAX_HEAD`] is an error.
pub fn head_len(buf: &[u8]) -> Result<Option<usize>, String> {
    let window = &buf[..buf.len().min(MAX_HEAD)];
    match window.windows(4).position(|w| w == b"\r\n\r\n") {
        Some(i) => Ok(Some(i + 4)),
        None if buf.len() >= MAX_HEAD => {
            Err(format!("ICAP response head longer than {MAX_HEAD} bytes"))
        }
        None => Ok(None),
    }
}

/// Parse a response head (status line and headers, with the empty line).
pub fn parse_response(raw: &[u8]) -> Result<Response, String> {
    let text =
        std::str::from_utf8(raw).map_err(|_| "ICAP response head is not UTF-8".to_string())?;
    let text = text
        .strip_suffix("\r\n\r\n")
        .ok_or("ICAP response head does not end with an empty line")?;
    let mut lines = text.split("\r\n");
    let status = lines.next().unwrap_or_default();
    let mut parts = status.splitn(3, ' ');
    let version = parts.next().unwrap_or_default();
    if !version.starts_with("ICAP/1.") {
        return Err(format!("not an ICAP response: {:?}", shorten(status)));
    }
    let code = parts
        .next()
        .filter(|c| c.len() == 3 && c.bytes().all(|b| b.is_ascii_digit()))
        .and_then(|c| c.parse::<u16>().ok())
        .ok_or_else(|| format!("bad ICAP status line {:?}", shorten(status)))?;
    let reason = parts.next().unwrap_or_default().trim().to_string();
    let mut headers: Vec<(String, String)> = Vec::new();
    for l in lines {
        if l.starts_with([' ', '\t']) {
            let Some((_, v)) = headers.last_mut() else {
                return Err("ICAP response: continuation line before any header".into());
            };
            v.push('\n');
            v.push_str(l.trim());
            continue;
        }
        let (k, v) = l
            .split_once(':')
            .ok_or_else(|| format!("ICAP response header without ':': {:?}", shorten(l)))?;
        if k.is_empty()
            || k.bytes()
                .any(|b| b.is_ascii_whitespace() || b.is_ascii_control())
        {
            return Err(format!("bad ICAP response header name {:?}", shorten(k)));
        }
        if headers.len() == MAX_HEADERS {
            return Err(format!(
                "ICAP response with more than {MAX_HEADERS} headers"
            ));
        }
        headers.push((k.to_string(), v.trim().to_string()));
    }
    Ok(Response {
        code,
        reason,
        headers,
    })
}

fn shorten(s: &str) -> String {
    s.chars().take(120).collect()
}

/// Text safe to show and record: no control characters, bounded.
fn clean_text(s: &str, max: usize) -> String {
    s.chars()
        .map(|c| if c.is_control() { ' ' } else { c })
        .take(max)
        .collect::<String>()
        .trim()
        .to_string()
}

/// The body section of an `Encapsulated` header.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Body {
    None,
    Request,
    Response,
    Options,
}

/// `Encapsulated` of a response: the HTTP heads (ranges in the bytes after
/// the ICAP head) and the body that follows them.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Encapsulated {
    pub req_hdr: Option<Range<usize>>,
    pub res_hdr: Option<Range<usize>>,
    pub body: Option<Body>,
    /// Offset of the body entry: the length of the heads before it.
    pub body_at: usize,
}

impl Encapsulated {
    pub fn has_body(&self) -> bool {
        matches!(
            self.body,
            Some(Body::Request | Body::Response | Body::Options)
        )
    }
}

/// Parse `Encapsulated`: offsets from 0, increasing, heads before the one
/// body entry, which comes last.
pub fn parse_encapsulated(value: &str) -> Result<Encapsulated, String> {
    let bad = || format!("bad Encapsulated header {:?}", shorten(value));
    let mut entries: Vec<(&str, usize)> = Vec::new();
    for item in value.split(',') {
        let (name, off) = item.trim().split_once('=').ok_or_else(bad)?;
        let off = off.trim();
        if off.is_empty() || off.len() > 9 || !off.bytes().all(|b| b.is_ascii_digit()) {
            return Err(bad());
        }
        entries.push((name.trim(), off.parse().map_err(|_| bad())?));
        if entries.len() > 4 {
            return Err(bad());
        }
    }
    let mut enc = Encapsulated::default();
    let mut prev: Option<usize> = None;
    let mut rank = 0;
    for (i, (name, off)) in entries.iter().enumerate() {
        match prev {
            None if *off != 0 => return Err(bad()),
            Some(p) if *off <= p => return Err(bad()),
            _ => {}
        }
        prev = Some(*off);
        let next = entries.get(i + 1).map(|e| e.1);
        let r = match *name {
            "req-hdr" => 1,
            "res-hdr" => 2,
            "req-body" | "res-body" | "null-body" | "opt-body" => 3,
            _ => return Err(bad()),
        };
        if r <= rank {
            return Err(bad());
        }
        rank = r;
        match (*name, next) {
            ("req-hdr", Some(end)) => enc.req_hdr = Some(*off..end),
            ("res-hdr", Some(end)) => enc.res_hdr = Some(*off..end),
            ("req-hdr" | "res-hdr", None) => return Err(bad()),
            (body, None) => {
                enc.body_at = *off;
                enc.body = Some(match body {
                    "req-body" => Body::Request,
                    "res-body" => Body::Response,
                    "opt-body" => Body::Options,
                    _ => Body::None,
                });
            }
            (_, Some(_)) => return Err(bad()),
        }
    }
    if enc.body.is_none() {
        return Err(bad());
    }
    if enc.body_at > 2 * MAX_HEAD {
        return Err(format!(
            "encapsulated HTTP heads longer than {} bytes",
            2 * MAX_HEAD
        ));
    }
    Ok(enc)
}

/// One chunk-size line (without its CRLF): `Some(n)` for data, `None` for
/// the last chunk.
pub fn parse_chunk_line(line: &[u8]) -> Result<Option<u64>, String> {
    let text = std::str::from_utf8(line).map_err(|_| "chunk-size line is not text".to_string())?;
    let size = text.split(';').next().unwrap_or_default().trim();
    if size.is_empty() || size.len() > 15 || !size.bytes().all(|b| b.is_ascii_hexdigit()) {
        return Err(format!("bad chunk size {:?}", shorten(size)));
    }
    let n = u64::from_str_radix(size, 16).map_err(|_| "bad chunk size".to_string())?;
    Ok((n > 0).then_some(n))
}

/// The HTTP status of an encapsulated response head.
pub fn http_status(raw: &[u8]) -> Option<u16> {
    let mut hs = [httparse::EMPTY_HEADER; MAX_HEADERS];
    let mut r = httparse::Response::new(&mut hs);
    match r.parse(raw) {
        Ok(httparse::Status::Complete(_)) => r.code,
        _ => None,
    }
}

/// The method of an encapsulated request head.
pub fn http_method(raw: &[u8]) -> Option<String> {
    let mut hs = [httparse::EMPTY_HEADER; MAX_HEADERS];
    let mut r = httparse::Request::new(&mut hs);
    match r.parse(raw) {
        Ok(httparse::Status::Complete(_)) => r.method.map(str::to_string),
        _ => None,
    }
}

/// What an OPTIONS response says about the service.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Options {
    pub methods: Vec<String>,
    /// `Preview:` bytes, when the server wants previews.
    pub preview: Option<u64>,
    pub allow_204: bool,
    pub istag: Option<String>,
    /// `Options-TTL`, else an hour.
    pub ttl: Duration,
    /// `Service:`, else `Server:`, for the engine's version.
    pub service: Option<String>,
}

/// When `Options-TTL` is absent (RFC 3507: the answer does not expire),
/// ask again after this long anyway.
pub const DEFAULT_OPTIONS_TTL: Duration = Duration::from_secs(3600);

impl Options {
    /// From a `200` OPTIONS response; any other status is an error.
    pub fn from_response(r: &Response) -> Result<Options, String> {
        if r.code != 200 {
            return Err(format!("OPTIONS answered {} {}", r.code, r.reason));
        }
        let methods = r
            .all("methods")
            .flat_map(|v| v.split([',', '\n']))
            .map(|m| m.trim().to_ascii_uppercase())
            .filter(|m| !m.is_empty())
            .collect();
        let preview = match r.get("preview") {
            None => None,
            Some(v) => Some(
                v.trim()
                    .parse::<u64>()
                    .map_err(|_| format!("OPTIONS Preview {v:?} is not a number"))?,
            ),
        };
        let allow_204 = r
            .all("allow")
            .any(|v| v.split(',').any(|t| t.trim() == "204"));
        let ttl = r
            .get("options-ttl")
            .and_then(|v| v.trim().parse::<u64>().ok())
            .map_or(DEFAULT_OPTIONS_TTL, Duration::from_secs);
        let service = r
            .get("service")
            .or_else(|| r.get("server"))
            .map(|s| clean_text(s, 200))
            .filter(|s| !s.is_empty());
        Ok(Options {
            methods,
            preview,
            allow_204,
            istag: r.istag(),
            ttl,
            service,
        })
    }

    /// Whether the service takes `m`. A server that lists no method is
    /// given the benefit of the doubt: its answer to the request decides.
    pub fn supports(&self, m: Method) -> bool {
        self.methods.is_empty() || self.methods.iter().any(|x| x == m.as_str())
    }
}

/// The threat names in a response's detection headers, in order, without
/// duplicates: `X-Infection-Found` (`Threat=`), `X-Virus-ID`, and the
/// second line of each violation in `X-Violations-Found`.
pub fn threats(r: &Response) -> Vec<String> {
    let mut names: Vec<String> = Vec::new();
    let add = |names: &mut Vec<String>, n: &str| {
        let n = clean_text(n, MAX_NAME_LEN);
        if !n.is_empty() && !names.contains(&n) && names.len() < MAX_NAMES {
            names.push(n);
        }
    };
    let mut flagged = false;
    for v in r.all("x-infection-found") {
        flagged = true;
        let threat = v.split(';').find_map(|p| {
            let (k, val) = p.split_once('=')?;
            k.trim().eq_ignore_ascii_case("threat").then_some(val)
        });
        if let Some(t) = threat {
            add(&mut names, t);
        }
    }
    for v in r.all("x-virus-id") {
        flagged = true;
        add(&mut names, v.lines().next().unwrap_or_default());
    }
    for v in r.all("x-violations-found") {
        let mut lines = v.split('\n').map(str::trim);
        let count = lines
            .next()
            .and_then(|c| c.parse::<u64>().ok())
            .unwrap_or(1);
        if count == 0 {
            continue;
        }
        flagged = true;
        let rest: Vec<&str> = lines.collect();
        for group in rest.chunks(4) {
            if let Some(name) = group.get(1) {
                add(&mut names, name);
            }
        }
    }
    if flagged && names.is_empty() {
        // A detection header whose name could not be read still blocks.
        add(&mut names, GENERIC_NAME);
    }
    names
}

/// Percent-encode a file name for the encapsulated request line.
fn url_path(name: &str) -> String {
    let mut out = String::from("/");
    for b in name.bytes().take(256) {
        if b.is_ascii_alphanumeric() || b"-._~".contains(&b) {
            out.push(b as char);
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
    out
}

/// A MIME type safe for a header, else `application/octet-stream`.
fn content_type(ct: &str) -> &str {
    let ok = !ct.is_empty()
        && ct.len() <= 100
        && ct.contains('/')
        && ct
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b"/+-.".contains(&b));
    if ok { ct } else { "application/octet-stream" }
}

fn user_agent() -> String {
    format!("moat/{}", env!("CARGO_PKG_VERSION"))
}

/// An OPTIONS request.
pub fn options_request(url: &Url) -> Vec<u8> {
    format!(
        "OPTIONS {url} ICAP/1.0\r\nHost: {}\r\nUser-Agent: {}\r\nEncapsulated: null-body=0\r\n\r\n",
        url.authority(),
        user_agent()
    )
    .into_bytes()
}

/// The head of a RESPMOD or REQMOD request (ICAP head and encapsulated
/// HTTP heads); the chunked body follows.
pub fn modify_request(
    url: &Url,
    method: Method,
    preview: Option<u64>,
    name: &str,
    ctype: &str,
    len: u64,
) -> Vec<u8> {
    let path = url_path(name);
    let ctype = content_type(ctype);
    let (http, encapsulated) = match method {
        Method::Respmod => {
            let req = format!("GET {path} HTTP/1.1\r\nHost: moat.scan\r\n\r\n");
            let res = format!(
                "HTTP/1.1 200 OK\r\nContent-Type: {ctype}\r\nContent-Length: {len}\r\n\r\n"
            );
            let enc = format!(
                "req-hdr=0, res-hdr={}, res-body={}",
                req.len(),
                req.len() + res.len()
            );
            (format!("{req}{res}"), enc)
        }
        Method::Reqmod => {
            let req = format!(
                "PUT {path} HTTP/1.1\r\nHost: moat.scan\r\nContent-Type: {ctype}\r\nContent-Length: {len}\r\n\r\n"
            );
            let enc = format!("req-hdr=0, req-body={}", req.len());
            (req, enc)
        }
    };
    let preview = preview
        .map(|p| format!("Preview: {p}\r\n"))
        .unwrap_or_default();
    let head = format!(
        "{} {url} ICAP/1.0\r\nHost: {}\r\nUser-Agent: {}\r\nAllow: 204\r\n{preview}Encapsulated: {encapsulated}\r\n\r\n{http}",
        method.as_str(),
        url.authority(),
        user_agent(),
    );
    head.into_bytes()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn resp(s: &str) -> Response {
        parse_response(s.as_bytes()).unwrap()
    }

    #[test]
    fn response_heads_parse_with_continuations() {
        let r = resp(
            "ICAP/1.0 200 OK\r\nServer: C-ICAP/0.5.10\r\nISTag: \"CI0001-abc\"\r\nX-Violations-Found: 1\r\n\t-\r\n\tWin.Test.EICAR_HDB-1\r\n\t0\r\n\t0\r\nEncapsulated: res-hdr=0, res-body=108\r\n\r\n",
        );
        assert_eq!((r.code, r.reason.as_str()), (200, "OK"));
        assert_eq!(r.istag().as_deref(), Some("CI0001-abc"));
        assert_eq!(
            r.get("x-violations-found"),
            Some("1\n-\nWin.Test.EICAR_HDB-1\n0\n0")
        );
        assert!(!r.closes());
        let r = resp("ICAP/1.0 204\r\nConnection: keep-alive, close\r\n\r\n");
        assert_eq!((r.code, r.reason.as_str()), (204, ""));
        assert!(r.closes() && r.istag().is_none());
        for bad in [
            "HTTP/1.1 200 OK\r\n\r\n",
            "ICAP/1.0 2000 OK\r\n\r\n",
            "ICAP/1.0 abc OK\r\n\r\n",
            "ICAP/1.0 200 OK\r\n continued\r\n\r\n",
            "ICAP/1.0 200 OK\r\nno colon\r\n\r\n",
            "ICAP/1.0 200 OK\r\n",
        ] {
            assert!(parse_response(bad.as_bytes()).is_err(), "{bad:?}");
        }
        assert_eq!(head_len(b"ICAP/1.0 204 x\r\n\r\nrest"), Ok(Some(18)));
        assert_eq!(head_len(b"ICAP/1.0 204 x\r\n"), Ok(None));
        assert!(head_len(&vec![b'a'; MAX_HEAD]).is_err());
    }

    #[test]
    fn encapsulated_in_responses() {
        let e = parse_encapsulated("res-hdr=0, res-body=108").unwrap();
        assert_eq!(
            (e.res_hdr, e.body, e.body_at),
            (Some(0..108), Some(Body::Response), 108)
        );
        let e = parse_encapsulated("req-hdr=0, res-hdr=40, null-body=90").unwrap();
        assert_eq!(e.req_hdr, Some(0..40));
        assert!(!e.has_body());
        let e = parse_encapsulated("null-body=0").unwrap();
        assert_eq!(e.body, Some(Body::None));
        let e = parse_encapsulated("opt-body=0").unwrap();
        assert!(e.has_body());
        for bad in [
            "",
            "res-hdr=0",
            "res-hdr=5, res-body=10",
            "res-hdr=0, res-body=0",
            "res-body=0, res-hdr=10",
            "res-hdr=0, req-hdr=5, null-body=9",
            "res-hdr=0, x-body=9",
            "res-hdr=0, res-body=-1",
            "res-hdr=0, res-body=99999999999",
            "null-body=0, res-body=5",
        ] {
            assert!(parse_encapsulated(bad).is_err(), "{bad:?}");
        }
    }

    #[test]
    fn chunk_lines() {
        assert_eq!(parse_chunk_line(b"1a"), Ok(Some(26)));
        assert_eq!(parse_chunk_line(b"400; ext"), Ok(Some(1024)));
        assert_eq!(parse_chunk_line(b"0"), Ok(None));
        assert_eq!(parse_chunk_line(b"0; ieof"), Ok(None));
        for bad in [&b""[..], b"x", b"-1", b"1111111111111111", b"\xff"] {
            assert!(parse_chunk_line(bad).is_err(), "{bad:?}");
        }
    }

    #[test]
    fn encapsulated_http_heads() {
        assert_eq!(
            http_status(b"HTTP/1.1 403 Forbidden\r\nA: b\r\n\r\n"),
            Some(403)
        );
        assert_eq!(http_status(b"HTTP/1.0 200 OK\r\n\r\n"), Some(200));
        assert_eq!(http_status(b"HTTP/1.1 403 Forbidden\r\n"), None);
        assert_eq!(http_status(b"garbage\r\n\r\n"), None);
        assert_eq!(
            http_method(b"PUT /x HTTP/1.1\r\n\r\n").as_deref(),
            Some("PUT")
        );
        assert_eq!(http_method(b"HTTP/1.1 200 OK\r\n\r\n"), None);
    }

    #[test]
    fn options_values() {
        let o = Options::from_response(&resp(
            "ICAP/1.0 200 OK\r\nMethods: RESPMOD, REQMOD\r\nService: C-ICAP/0.5.10 server - Antivirus service\r\nISTag: \"CI0001-XYZ\"\r\nOptions-TTL: 60\r\nPreview: 1024\r\nAllow: 204\r\nEncapsulated: null-body=0\r\n\r\n",
        ))
        .unwrap();
        assert_eq!(o.methods, vec!["RESPMOD", "REQMOD"]);
        assert_eq!(o.preview, Some(1024));
        assert!(o.allow_204 && o.supports(Method::Reqmod));
        assert_eq!(o.istag.as_deref(), Some("CI0001-XYZ"));
        assert_eq!(o.ttl, Duration::from_secs(60));
        assert_eq!(
            o.service.as_deref(),
            Some("C-ICAP/0.5.10 server - Antivirus service")
        );
        let o =
            Options::from_response(&resp("ICAP/1.0 200 OK\r\nMethods: RESPMOD\r\n\r\n")).unwrap();
        assert_eq!(
            (o.preview, o.allow_204, o.ttl),
            (None, false, DEFAULT_OPTIONS_TTL)
        );
        assert!(!o.supports(Method::Reqmod));
        assert!(Options::from_response(&resp("ICAP/1.0 404 Service Not Found\r\n\r\n")).is_err());
        assert!(Options::from_response(&resp("ICAP/1.0 200 OK\r\nPreview: lots\r\n\r\n")).is_err());
    }

    #[test]
    fn threats_come_from_every_detection_header() {
        // c-icap virus_scan.
        let r = resp(
            "ICAP/1.0 200 OK\r\nX-Infection-Found: Type=0; Resolution=2; Threat=Win.Test.EICAR_HDB-1.UNOFFICIAL;\r\nX-Violations-Found: 1\r\n\t-\r\n\tWin.Test.EICAR_HDB-1.UNOFFICIAL\r\n\t0\r\n\t0\r\n\r\n",
        );
        assert_eq!(threats(&r), vec!["Win.Test.EICAR_HDB-1.UNOFFICIAL"]);
        // moat's own server: two violations and X-Virus-ID.
        let r = resp(
            "ICAP/1.0 200 OK\r\nX-Infection-Found: Type=0; Resolution=2; Threat=A;\r\nX-Virus-ID: A\r\nX-Violations-Found: 2\r\n\tf\r\n\tA\r\n\t0\r\n\t2\r\n\tf\r\n\tB\r\n\t0\r\n\t2\r\n\r\n",
        );
        assert_eq!(threats(&r), vec!["A", "B"]);
        // squidclamav-style: only X-Virus-ID.
        let r = resp("ICAP/1.0 200 OK\r\nX-Virus-ID: Eicar-Signature\r\n\r\n");
        assert_eq!(threats(&r), vec!["Eicar-Signature"]);
        // A detection header without a readable name still counts.
        let r = resp("ICAP/1.0 200 OK\r\nX-Infection-Found: Type=0; Resolution=2;\r\n\r\n");
        assert_eq!(threats(&r), vec![GENERIC_NAME]);
        let r = resp("ICAP/1.0 200 OK\r\nX-Violations-Found: 0\r\n\r\n");
        assert!(threats(&r).is_empty());
        assert!(threats(&resp("ICAP/1.0 204 No Content\r\n\r\n")).is_empty());
    }

    #[test]
    fn requests_carry_offsets_preview_and_allow_204() {
        let url = Url::parse("icap://127.0.0.1:1344/avscan").unwrap();
        let head = modify_request(
            &url,
            Method::Respmod,
            Some(1024),
            "a b/ü.exe",
            "application/x-dosexec",
            5000,
        );
        let s = String::from_utf8(head).unwrap();
        let (icap, http) = s.split_once("\r\n\r\n").unwrap();
        assert!(icap.starts_with("RESPMOD icap://127.0.0.1:1344/avscan ICAP/1.0\r\n"));
        assert!(icap.contains("\r\nAllow: 204\r\nPreview: 1024\r\n"));
        let enc = parse_encapsulated(icap.rsplit_once("Encapsulated: ").unwrap().1).unwrap();
        assert_eq!(enc.body_at, http.len());
        let res = &http.as_bytes()[enc.res_hdr.clone().unwrap()];
        assert_eq!(http_status(res), Some(200));
        assert!(http.starts_with("GET /a%20b%2F%C3%BC.exe HTTP/1.1\r\n"));
        assert!(http.contains("Content-Length: 5000\r\n"));
        let head = modify_request(&url, Method::Reqmod, None, "x", "bad\r\ntype", 3);
        let s = String::from_utf8(head).unwrap();
        assert!(!s.contains("Preview"));
        assert!(s.contains("Encapsulated: req-hdr=0, req-body="));
        assert!(s.ends_with("Content-Type: application/octet-stream\r\nContent-Length: 3\r\n\r\n"));
        let http = s.split_once("\r\n\r\n").unwrap().1;
        assert_eq!(http_method(http.as_bytes()).as_deref(), Some("PUT"));
    }
}
