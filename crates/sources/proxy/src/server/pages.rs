//! Replies moat writes itself (error pages as HTML or JSON by `Accept`,
//! admin text/JSON) and what is read from the request head to route it.

use super::*;

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

pub(super) fn json(code: StatusCode, v: &serde_json::Value) -> Response<Body> {
    let mut r = Response::new(body::full(v.to_string()));
    *r.status_mut() = code;
    r.headers_mut().insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("application/json"),
    );
    r
}

pub(super) fn text(code: StatusCode, s: String) -> Response<Body> {
    let mut r = Response::new(body::full(s));
    *r.status_mut() = code;
    r.headers_mut().insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("text/plain; charset=utf-8"),
    );
    r
}

pub(super) fn escape(s: &str) -> String {
    s.replace('&', "&amp;")
        .replace('<', "&lt;")
        .replace('>', "&gt;")
        .replace('"', "&quot;")
}

/// JSON unless the client asks for HTML (a browser) and not JSON.
pub(super) fn wants_html(h: &HeaderMap) -> bool {
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

pub(super) fn request_host<B>(req: &Request<B>) -> String {
    req.headers()
        .get(header::HOST)
        .and_then(|v| v.to_str().ok())
        .map(str::to_string)
        .or_else(|| req.uri().authority().map(|a| a.to_string()))
        .unwrap_or_default()
}

/// The host part of a Host header (`[v6]` keeps its brackets), as sent:
/// compare it ignoring ASCII case.
pub(super) fn host_without_port(host: &str) -> &str {
    if host.starts_with('[') {
        host.find(']').map_or("", |i| &host[..=i])
    } else {
        host.split(':').next().unwrap_or("")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

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
