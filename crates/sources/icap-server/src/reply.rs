//! ICAP responses: OPTIONS, `100 Continue`, `204`, the unmodified message
//! echoed back, the block page, and errors. Every response carries the
//! ISTag. Verdicts are turned into threats here, in one place: moat fails
//! closed in ICAP's words, a block page with `X-Infection-Found`,
//! `X-Virus-ID` and `X-Violations-Found` for detections and for content it
//! could not fully scan.

use crate::config::IcapServerConfig;
use crate::proto::Method;
use moat_core::{Reason, Status, Verdict};
use std::collections::BTreeMap;

/// `ICAP/1.0 100 Continue`: send the rest of the body.
pub const CONTINUE: &[u8] = b"ICAP/1.0 100 Continue\r\n\r\n";

/// `"moat-<engine-set fingerprint>"`: changes whenever the engines or their
/// signatures change (ISTag is at most 32 bytes with its quotes).
pub fn istag(fingerprint: &str) -> String {
    let fp: String = fingerprint
        .chars()
        .filter(char::is_ascii_alphanumeric)
        .take(24)
        .collect();
    format!("\"moat-{fp}\"")
}

fn server() -> String {
    format!("moat/{}", env!("CARGO_PKG_VERSION"))
}

fn connection(close: bool) -> &'static str {
    if close { "Connection: close\r\n" } else { "" }
}

/// The OPTIONS response.
pub fn options(cfg: &IcapServerConfig, istag: &str) -> Vec<u8> {
    let mut s = format!(
        "ICAP/1.0 200 OK\r\nMethods: RESPMOD, REQMOD\r\nService: moat {} antivirus\r\nServer: {}\r\nISTag: {istag}\r\nMax-Connections: {}\r\nOptions-TTL: {}\r\nAllow: 204\r\nPreview: {}\r\nTransfer-Preview: *\r\n",
        env!("CARGO_PKG_VERSION"),
        server(),
        cfg.max_connections,
        cfg.options_ttl_secs,
        cfg.preview,
    );
    if !cfg.transfer_ignore.is_empty() {
        s.push_str(&format!(
            "Transfer-Ignore: {}\r\n",
            cfg.transfer_ignore.join(", ")
        ));
    }
    if !cfg.transfer_complete.is_empty() {
        s.push_str(&format!(
            "Transfer-Complete: {}\r\n",
            cfg.transfer_complete.join(", ")
        ));
    }
    s.push_str("Encapsulated: null-body=0\r\n\r\n");
    s.into_bytes()
}

/// A response without a message: errors (`400`, `404`, `405`, `500`, …).
pub fn status(code: u16, reason: &str, istag: &str, close: bool) -> Vec<u8> {
    format!(
        "ICAP/1.0 {code} {reason}\r\nServer: {}\r\nISTag: {istag}\r\n{}Encapsulated: null-body=0\r\n\r\n",
        server(),
        connection(close)
    )
    .into_bytes()
}

/// `204 No Content`: the client uses the message it has.
pub fn no_content(istag: &str, close: bool) -> Vec<u8> {
    format!(
        "ICAP/1.0 204 No Content\r\nServer: {}\r\nISTag: {istag}\r\n{}Encapsulated: null-body=0\r\n\r\n",
        server(),
        connection(close)
    )
    .into_bytes()
}

/// The head of a `200` that returns the message unmodified (when the client
/// did not allow 204): the HTTP headers as received, then (when `body`) the
/// body, chunked, written by the caller.
pub fn echo_head(
    istag: &str,
    method: Method,
    http_head: Option<&[u8]>,
    body: bool,
    close: bool,
) -> Vec<u8> {
    let (hdr, bdy) = match method {
        Method::Reqmod => ("req-hdr", "req-body"),
        _ => ("res-hdr", "res-body"),
    };
    let enc = match (http_head, body) {
        (Some(h), true) => format!("{hdr}=0, {bdy}={}", h.len()),
        (Some(h), false) => format!("{hdr}=0, null-body={}", h.len()),
        (None, true) => format!("{bdy}=0"),
        (None, false) => "null-body=0".to_string(),
    };
    let mut out = format!(
        "ICAP/1.0 200 OK\r\nServer: {}\r\nISTag: {istag}\r\n{}Encapsulated: {enc}\r\n\r\n",
        server(),
        connection(close)
    )
    .into_bytes();
    if let Some(h) = http_head {
        out.extend_from_slice(h);
    }
    out
}

/// One thing found in a message: what, where, and its X-Infection-Found type
/// (0 a virus or other detection, 2 a container moat could not open).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Threat {
    pub name: String,
    pub file: String,
    pub kind: u8,
}

/// The threats a verdict blocks with: each signature of a detection; a
/// heuristic name in ClamAV's style for unscannable content
/// (`Heuristics.Encrypted.Zip`, …; renamed by `heuristic_names`);
/// `Moat.Engine.Error` for an engine error.
pub fn threats(v: &Verdict, file: &str, names: &BTreeMap<String, String>) -> Vec<Threat> {
    let t = |name: String, kind| Threat {
        name,
        file: file.to_string(),
        kind,
    };
    match v.status {
        Status::Clean => Vec::new(),
        Status::Infected | Status::Suspicious => {
            let mut out: Vec<Threat> = v.signatures().iter().map(|s| t(s.to_string(), 0)).collect();
            if out.is_empty() {
                out.push(t(format!("Moat.{}", v.status.as_str()), 0));
            }
            out
        }
        Status::Unscannable => {
            let reason = v.reason.unwrap_or(Reason::Unsupported);
            vec![t(
                moat_clamd_server::reply::heuristic_name_with(v, reason, names),
                2,
            )]
        }
        Status::Error => vec![t("Moat.Engine.Error".into(), 0)],
    }
}

/// Text safe in a header value (and, for threat names, without `;`).
fn header_text(s: &str, max: usize) -> String {
    s.chars()
        .map(|c| if c.is_control() || c == ';' { ' ' } else { c })
        .take(max)
        .collect::<String>()
        .trim()
        .to_string()
}

fn html_escape(s: &str) -> String {
    let mut o = String::with_capacity(s.len());
    for c in s.chars() {
        match c {
            '<' => o.push_str("&lt;"),
            '>' => o.push_str("&gt;"),
            '&' => o.push_str("&amp;"),
            '"' => o.push_str("&quot;"),
            '\'' => o.push_str("&#39;"),
            c if c.is_control() => o.push(' '),
            c => o.push(c),
        }
    }
    o
}

/// The block response: `200` carrying an HTTP `403` page, with
/// `X-Infection-Found` (the first threat), `X-Virus-ID` and
/// `X-Violations-Found` (every threat, four lines each as c-icap writes them).
pub fn block(istag: &str, status: Status, threats: &[Threat], close: bool) -> Vec<u8> {
    let first = threats
        .first()
        .map(|t| header_text(&t.name, 200))
        .unwrap_or_else(|| "Moat.Blocked".into());
    let kind = threats.first().map(|t| t.kind).unwrap_or(0);
    let items: String = threats
        .iter()
        .map(|t| {
            format!(
                "<li>{} in <code>{}</code></li>\n",
                html_escape(&t.name),
                html_escape(&t.file)
            )
        })
        .collect();
    let page = format!(
        "<!DOCTYPE html>\n<html><head><meta charset=\"utf-8\"><title>Blocked by moat</title></head>\n<body><h1>Blocked</h1>\n<p>moat blocked this transfer ({}).</p>\n<ul>\n{items}</ul>\n</body></html>\n",
        html_escape(status.as_str())
    );
    let http = format!(
        "HTTP/1.1 403 Forbidden\r\nContent-Type: text/html; charset=utf-8\r\nContent-Length: {}\r\nCache-Control: no-store\r\nX-Moat-Verdict: {}\r\n\r\n",
        page.len(),
        status.as_str()
    );
    let mut violations = format!("X-Violations-Found: {}\r\n", threats.len());
    for t in threats {
        violations.push_str(&format!(
            "\t{}\r\n\t{}\r\n\t0\r\n\t2\r\n",
            header_text(&t.file, 200),
            header_text(&t.name, 200)
        ));
    }
    let mut out = format!(
        "ICAP/1.0 200 OK\r\nServer: {}\r\nISTag: {istag}\r\n{}X-Infection-Found: Type={kind}; Resolution=2; Threat={first};\r\nX-Virus-ID: {first}\r\n{violations}Encapsulated: res-hdr=0, res-body={}\r\n\r\n",
        server(),
        connection(close),
        http.len()
    );
    out.push_str(&http);
    out.push_str(&format!("{:x}\r\n{page}\r\n0\r\n\r\n", page.len()));
    out.into_bytes()
}

#[cfg(test)]
mod tests {
    use super::*;
    use moat_core::{EngineReport, Finding};

    fn verdict(status: Status, reason: Option<Reason>, sigs: &[&str]) -> Verdict {
        let e = EngineReport::new("builtin", status, reason);
        let f = sigs
            .iter()
            .map(|s| Finding {
                engine: "builtin".into(),
                signature: s.to_string(),
                location: String::new(),
                severity: status,
            })
            .collect();
        Verdict::aggregate(vec![e], f, String::new(), 1, "application/zip".into(), 0)
    }

    #[test]
    fn istag_is_quoted_and_at_most_32_bytes() {
        let t = istag("0123456789abcdef01234567ffff");
        assert_eq!(t, "\"moat-0123456789abcdef01234567\"");
        assert!(t.len() <= 32);
        assert_ne!(istag("aaaa"), istag("aaab"));
    }

    #[test]
    fn options_announce_methods_preview_and_204() {
        let cfg = IcapServerConfig {
            transfer_ignore: vec!["mp4".into()],
            ..Default::default()
        };
        let o = String::from_utf8(options(&cfg, "\"t\"")).unwrap();
        for want in [
            "ICAP/1.0 200 OK\r\n",
            "Methods: RESPMOD, REQMOD\r\n",
            "ISTag: \"t\"\r\n",
            "Preview: 1024\r\n",
            "Allow: 204\r\n",
            "Transfer-Preview: *\r\n",
            "Transfer-Ignore: mp4\r\n",
            "Options-TTL: 3600\r\n",
            "Max-Connections: 128\r\n",
            "Encapsulated: null-body=0\r\n\r\n",
        ] {
            assert!(o.contains(want), "{want:?} in {o}");
        }
        assert!(!o.contains("Transfer-Complete"));
    }

    #[test]
    fn detections_and_unscannable_content_are_named() {
        let names = BTreeMap::new();
        let v = verdict(Status::Infected, None, &["Eicar-Test-Signature", "Two"]);
        let t = threats(&v, "http://a/x", &names);
        assert_eq!(t.len(), 2);
        assert_eq!(t[0].name, "Eicar-Test-Signature");
        let v = verdict(Status::Unscannable, Some(Reason::Encrypted), &[]);
        let t = threats(&v, "f", &names);
        assert_eq!(t[0].name, "Heuristics.Encrypted.Zip");
        assert_eq!(t[0].kind, 2);
        assert!(threats(&verdict(Status::Clean, None, &[]), "f", &names).is_empty());
    }

    #[test]
    fn the_block_page_is_well_formed_and_cannot_be_forged() {
        let t = vec![Threat {
            name: "Evil;\r\nX-Injected: 1".into(),
            file: "<script>".into(),
            kind: 0,
        }];
        let b = String::from_utf8(block("\"t\"", Status::Infected, &t, false)).unwrap();
        let (icap, rest) = b.split_once("\r\n\r\n").unwrap();
        assert!(
            icap.contains("X-Infection-Found: Type=0; Resolution=2; Threat=Evil   X-Injected: 1;")
        );
        assert!(!icap.contains("\nX-Injected"));
        assert!(icap.contains(
            "X-Violations-Found: 1\r\n\t<script>\r\n\tEvil   X-Injected: 1\r\n\t0\r\n\t2\r\n"
        ));
        let off: usize = icap.rsplit_once("res-body=").unwrap().1.parse().unwrap();
        let http = &rest[..off];
        assert!(http.starts_with("HTTP/1.1 403 Forbidden\r\n") && http.ends_with("\r\n\r\n"));
        assert!(rest[off..].ends_with("\r\n0\r\n\r\n"));
        assert!(rest.contains("&lt;script&gt;") && !rest.contains("<script>"));
    }

    #[test]
    fn echo_keeps_the_http_head_and_points_at_the_body() {
        let h = b"HTTP/1.1 200 OK\r\n\r\n";
        let e = echo_head("\"t\"", Method::Respmod, Some(h), true, false);
        let s = String::from_utf8(e).unwrap();
        assert!(s.contains("Encapsulated: res-hdr=0, res-body=19\r\n\r\nHTTP/1.1 200 OK\r\n\r\n"));
        let e = echo_head(
            "\"t\"",
            Method::Reqmod,
            Some(b"GET / HTTP/1.1\r\n\r\n"),
            false,
            true,
        );
        let s = String::from_utf8(e).unwrap();
        assert!(s.contains("Connection: close\r\n") && s.contains("req-hdr=0, null-body=18"));
    }
}
