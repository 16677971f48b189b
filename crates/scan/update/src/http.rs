//! HTTP for the updater: one blocking reqwest client (rustls, certificates
//! verified, optional proxy, custom User-Agent), and the status handling
//! freshclam has: 304 is "not modified", 429 (and 503 with `Retry-After`)
//! and 403 start a cool-down, everything else that is not 2xx is an error.

use std::io::{Read, Write};
use std::time::{Duration, SystemTime};

/// Cool-down after a 429 without `Retry-After` (freshclam: 4 hours).
pub const DEFAULT_RETRY_AFTER: Duration = Duration::from_secs(4 * 3600);
/// Cool-down after a 403 (freshclam: 24 hours).
pub const FORBIDDEN_COOLDOWN: Duration = Duration::from_secs(24 * 3600);
/// Longest cool-down honoured from a `Retry-After` header.
const MAX_RETRY_AFTER: Duration = Duration::from_secs(7 * 86_400);

#[derive(Debug, thiserror::Error)]
pub enum HttpError {
    /// The request could not be made (connection, TLS, proxy, timeout);
    /// `detail` is the error with its causes.
    #[error("{url}: {detail}")]
    Request {
        url: String,
        detail: String,
        #[source]
        source: reqwest::Error,
    },
    #[error("{url}: HTTP {status}")]
    Status { url: String, status: u16 },
    #[error("{url}: not found (HTTP 404)")]
    NotFound { url: String },
    /// The server asked us to come back later (429, 503 with Retry-After, 403).
    #[error("{url}: HTTP {status}, retry after {secs} s")]
    RetryLater { url: String, status: u16, secs: u64 },
    #[error("{url}: larger than the {limit}-byte download limit")]
    TooLarge { url: String, limit: u64 },
    #[error("{url}: reading the body: {source}")]
    Body {
        url: String,
        #[source]
        source: std::io::Error,
    },
    #[error("building the HTTP client: {0}")]
    Client(String),
}

/// A successful response's metadata.
#[derive(Debug, Clone, Default)]
pub struct Got {
    pub status: u16,
    pub etag: Option<String>,
    pub last_modified: Option<String>,
    pub bytes: u64,
}

/// Outcome of a request.
#[derive(Debug)]
pub enum Fetch {
    /// 2xx; the body was written out.
    Ok(Got),
    /// 304 Not Modified.
    NotModified,
}

/// Conditional request headers.
#[derive(Debug, Clone, Default)]
pub struct Conditions {
    pub if_none_match: Option<String>,
    pub if_modified_since: Option<String>,
}

pub struct Client {
    inner: reqwest::blocking::Client,
    max_download: u64,
    proxy: Option<String>,
}

impl Client {
    pub fn new(
        user_agent: &str,
        proxy: Option<&str>,
        timeout: Duration,
        max_download: u64,
    ) -> Result<Client, HttpError> {
        let mut b = reqwest::blocking::Client::builder()
            .user_agent(user_agent)
            .connect_timeout(Duration::from_secs(30))
            .timeout(timeout)
            .redirect(reqwest::redirect::Policy::limited(3));
        if let Some(p) = proxy {
            b = b.proxy(reqwest::Proxy::all(p).map_err(|e| HttpError::Client(e.to_string()))?);
        }
        Ok(Client {
            inner: b.build().map_err(|e| HttpError::Client(e.to_string()))?,
            max_download,
            proxy: proxy.map(str::to_string),
        })
    }

    /// GET `url` into `out` (at most `limit` bytes of body are read when
    /// given, else at most the download limit, which is an error to exceed).
    pub fn get(
        &self,
        url: &str,
        range: Option<(u64, u64)>,
        cond: &Conditions,
        out: &mut dyn Write,
        limit: Option<u64>,
    ) -> Result<Fetch, HttpError> {
        let mut req = self.inner.get(url);
        if let Some((a, b)) = range {
            req = req.header(reqwest::header::RANGE, format!("bytes={a}-{b}"));
        }
        if let Some(e) = &cond.if_none_match {
            req = req.header(reqwest::header::IF_NONE_MATCH, e);
        }
        if let Some(d) = &cond.if_modified_since {
            req = req.header(reqwest::header::IF_MODIFIED_SINCE, d);
        }
        let resp = req.send().map_err(|source| HttpError::Request {
            url: url.to_string(),
            detail: self.describe(&source),
            source,
        })?;
        let status = resp.status().as_u16();
        let header = |n: reqwest::header::HeaderName| {
            resp.headers()
                .get(n)
                .and_then(|v| v.to_str().ok())
                .map(str::to_string)
        };
        let retry_after = header(reqwest::header::RETRY_AFTER)
            .and_then(|v| parse_retry_after(&v, SystemTime::now()));
        let url_s = url.to_string();
        match status {
            200..=299 => {}
            304 => return Ok(Fetch::NotModified),
            404 => return Err(HttpError::NotFound { url: url_s }),
            429 => {
                let secs = retry_after.unwrap_or(DEFAULT_RETRY_AFTER).as_secs();
                return Err(HttpError::RetryLater {
                    url: url_s,
                    status,
                    secs,
                });
            }
            503 if retry_after.is_some() => {
                let secs = retry_after.unwrap_or_default().as_secs();
                return Err(HttpError::RetryLater {
                    url: url_s,
                    status,
                    secs,
                });
            }
            403 => {
                return Err(HttpError::RetryLater {
                    url: url_s,
                    status,
                    secs: FORBIDDEN_COOLDOWN.as_secs(),
                });
            }
            _ => return Err(HttpError::Status { url: url_s, status }),
        }
        let etag = header(reqwest::header::ETAG);
        let last_modified = header(reqwest::header::LAST_MODIFIED);
        let cap = limit.unwrap_or(self.max_download);
        if limit.is_none() && resp.content_length().is_some_and(|l| l > cap) {
            return Err(HttpError::TooLarge {
                url: url_s,
                limit: cap,
            });
        }
        let body_err = |source| HttpError::Body {
            url: url.to_string(),
            source,
        };
        // One byte past the cap tells "exactly the cap" from "more".
        let mut body = resp.take(cap + u64::from(limit.is_none()));
        let mut buf = vec![0u8; 64 * 1024];
        let mut bytes = 0u64;
        loop {
            let n = body.read(&mut buf).map_err(body_err)?;
            if n == 0 {
                break;
            }
            bytes += n as u64;
            if limit.is_none() && bytes > cap {
                return Err(HttpError::TooLarge {
                    url: url_s,
                    limit: cap,
                });
            }
            out.write_all(&buf[..n]).map_err(body_err)?;
        }
        Ok(Fetch::Ok(Got {
            status,
            etag,
            last_modified,
            bytes,
        }))
    }
}

impl Client {
    /// A request error with its causes ("error sending request" alone says
    /// nothing), naming the proxy when one is configured.
    fn describe(&self, e: &reqwest::Error) -> String {
        let mut msg = e.to_string();
        let mut cause = std::error::Error::source(e);
        while let Some(c) = cause {
            let c_s = c.to_string();
            if !msg.contains(&c_s) {
                msg.push_str(": ");
                msg.push_str(&c_s);
            }
            cause = c.source();
        }
        if let Some(p) = &self.proxy {
            if e.is_connect() {
                msg = format!("cannot connect through proxy {p}: {msg}");
            } else {
                msg = format!("{msg} (through proxy {p})");
            }
        }
        msg
    }
}

/// `Retry-After`: delay seconds or an HTTP date; capped at a week.
pub fn parse_retry_after(v: &str, now: SystemTime) -> Option<Duration> {
    let v = v.trim();
    let d = if let Ok(secs) = v.parse::<u64>() {
        Duration::from_secs(secs)
    } else {
        let at = httpdate::parse_http_date(v).ok()?;
        at.duration_since(now).unwrap_or_default()
    };
    Some(d.min(MAX_RETRY_AFTER))
}

/// `scheme://host[:port]` of a URL (the key of cool-downs).
pub fn origin(url: &str) -> String {
    match reqwest::Url::parse(url) {
        Ok(u) => u.origin().ascii_serialization(),
        Err(_) => url.to_string(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn retry_after_reads_seconds_and_dates() {
        let now = SystemTime::UNIX_EPOCH + Duration::from_secs(1_700_000_000);
        assert_eq!(
            parse_retry_after("120", now),
            Some(Duration::from_secs(120))
        );
        let later = httpdate::fmt_http_date(now + Duration::from_secs(3600));
        assert_eq!(
            parse_retry_after(&later, now),
            Some(Duration::from_secs(3600))
        );
        let past = httpdate::fmt_http_date(now - Duration::from_secs(10));
        assert_eq!(parse_retry_after(&past, now), Some(Duration::ZERO));
        assert_eq!(parse_retry_after("soon", now), None);
        assert_eq!(
            parse_retry_after("99999999", now),
            Some(MAX_RETRY_AFTER),
            "capped"
        );
    }

    #[test]
    fn origin_keeps_scheme_host_and_port() {
        assert_eq!(
            origin("http://127.0.0.1:8080/daily.cvd"),
            "http://127.0.0.1:8080"
        );
        assert_eq!(
            origin("https://database.clamav.net/main.cvd"),
            "https://database.clamav.net"
        );
    }
}
