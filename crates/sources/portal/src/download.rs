//! Serving bytes of a [`Cleared`] package: one file (whole, a range, or
//! HEAD) or the zip of all its files, streamed from the vault as it is
//! decrypted. Nothing here can run without a [`Cleared`], which only
//! [`crate::gate::Gate::check`] makes.

use crate::Portal;
use crate::error::{PortalError, Result};
use crate::gate::Cleared;
use crate::names::content_disposition;
use crate::store::now_ms;
use crate::zip::{ZipWriter, entry_name};
use axum::body::Body;
use axum::http::{HeaderMap, HeaderValue, Method, StatusCode, header};
use axum::response::Response;
use bytes::Bytes;
use futures_util::StreamExt;
use std::sync::Arc;

/// A parsed single `Range: bytes=` request, as a half-open range.
fn parse_range(h: &HeaderMap, size: u64) -> Result<Option<(u64, u64)>> {
    let Some(v) = h.get(header::RANGE).and_then(|v| v.to_str().ok()) else {
        return Ok(None);
    };
    let Some(spec) = v.trim().strip_prefix("bytes=") else {
        return Ok(None); // another unit: ignore, serve all
    };
    if spec.contains(',') {
        return Ok(None); // several ranges: serve all (allowed by RFC 9110)
    }
    let (a, b) = spec
        .split_once('-')
        .ok_or(PortalError::RangeNotSatisfiable(size))?;
    let (a, b) = (a.trim(), b.trim());
    let bad = || PortalError::RangeNotSatisfiable(size);
    let (start, end) = if a.is_empty() {
        let n: u64 = b.parse().map_err(|_| bad())?;
        if n == 0 {
            return Err(bad());
        }
        (size.saturating_sub(n), size)
    } else {
        let s: u64 = a.parse().map_err(|_| bad())?;
        let e = if b.is_empty() {
            size
        } else {
            b.parse::<u64>()
                .map_err(|_| bad())?
                .saturating_add(1)
                .min(size)
        };
        (s, e)
    };
    if start >= size || start >= end {
        return Err(bad());
    }
    Ok(Some((start, end)))
}

fn safe_headers(h: &mut HeaderMap) {
    h.insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("application/octet-stream"),
    );
    h.insert(
        header::X_CONTENT_TYPE_OPTIONS,
        HeaderValue::from_static("nosniff"),
    );
    h.insert(
        header::CONTENT_SECURITY_POLICY,
        HeaderValue::from_static("default-src 'none'; sandbox"),
    );
    h.insert(
        header::CACHE_CONTROL,
        HeaderValue::from_static("private, no-store"),
    );
    h.insert(
        header::REFERRER_POLICY,
        HeaderValue::from_static("no-referrer"),
    );
}

fn disposition(name: &str) -> HeaderValue {
    HeaderValue::from_str(&content_disposition(name))
        .unwrap_or_else(|_| HeaderValue::from_static("attachment"))
}

/// Count a download against the limit and audit it (GET only, and only
/// once per download: a range that does not start at 0 continues one).
async fn record_download(
    portal: &Portal,
    c: &Cleared,
    file_id: Option<&str>,
    what: &str,
    starts: bool,
) -> Result<()> {
    if !starts {
        return Ok(());
    }
    if c.counts() && !portal.store.count_download(&c.package().id).await? {
        return Err(PortalError::Gone("the download limit is reached"));
    }
    portal
        .store
        .audit(
            c.actor(),
            "download",
            Some(&c.package().id),
            file_id,
            serde_json::json!({ "what": what, "link": c.link_id() }),
        )
        .await?;
    if let Some(l) = c.link_id()
        && portal.store.link_downloaded(l).await?
    {
        let who = c
            .actor()
            .email
            .clone()
            .unwrap_or_else(|| "someone with the public link".into());
        let body = format!(
            "{who} downloaded from package {} for the first time.\n",
            c.package().id
        );
        crate::mail::logged(
            crate::mail::to_sender(portal, c.package(), "First download of your package", body)
                .await,
        );
    }
    metrics::counter!("moat_portal_downloads_total", "what" => what.to_string()).increment(1);
    Ok(())
}

fn vault_err(e: moat_vault::VaultError) -> PortalError {
    match e {
        moat_vault::VaultError::NotFound => {
            PortalError::Storage("the file's content is missing from storage".into())
        }
        e => PortalError::Storage(e.to_string()),
    }
}

/// One file: 200 (all), 206 (a range), or HEAD.
pub async fn file_response(
    portal: &Portal,
    c: &Cleared,
    file_id: &str,
    method: &Method,
    req: &HeaderMap,
) -> Result<Response> {
    let f = c.file(file_id)?;
    let size = u64::try_from(f.size).unwrap_or(0);
    let range = parse_range(req, size)?;
    let (start, end) = range.unwrap_or((0, size));
    let mut resp = Response::new(Body::empty());
    let h = resp.headers_mut();
    safe_headers(h);
    h.insert(header::CONTENT_DISPOSITION, disposition(&f.name));
    h.insert(header::ACCEPT_RANGES, HeaderValue::from_static("bytes"));
    h.insert(header::CONTENT_LENGTH, HeaderValue::from(end - start));
    if let Some(sha) = &f.sha256
        && let Ok(v) = HeaderValue::from_str(&format!("\"{sha}\""))
    {
        h.insert(header::ETAG, v);
    }
    if range.is_some() {
        *resp.status_mut() = StatusCode::PARTIAL_CONTENT;
        if let Ok(v) = HeaderValue::from_str(&format!("bytes {start}-{}/{size}", end - 1)) {
            resp.headers_mut().insert(header::CONTENT_RANGE, v);
        }
    }
    if *method == Method::HEAD {
        return Ok(resp);
    }
    record_download(portal, c, Some(&f.id), "file", start == 0).await?;
    let stream = if size == 0 {
        futures_util::stream::empty::<std::result::Result<Bytes, moat_vault::VaultError>>().boxed()
    } else {
        let mut s = portal
            .vault
            .read(c.key(), &f.object, Some((start, end)))
            .await
            .map_err(vault_err)?;
        // The first segment is authenticated before any header goes out, so
        // a damaged object is an error response rather than a cut body.
        let first = match s.next().await {
            Some(Ok(b)) => b,
            Some(Err(e)) => {
                tracing::error!(file = %f.id, error = %e, "download refused: stored content failed authentication");
                return Err(vault_err(e));
            }
            None => Bytes::new(),
        };
        futures_util::stream::once(async move { Ok(first) })
            .chain(s)
            .boxed()
    };
    *resp.body_mut() = Body::from_stream(stream);
    Ok(resp)
}

/// The whole package as a zip, built while it streams.
pub async fn zip_response(portal: Arc<Portal>, c: Cleared, method: &Method) -> Result<Response> {
    let mut resp = Response::new(Body::empty());
    let h = resp.headers_mut();
    safe_headers(h);
    let stamp = chrono_free_date(now_ms());
    h.insert(
        header::CONTENT_DISPOSITION,
        disposition(&format!(
            "package-{}-{stamp}.zip",
            &c.package().id[..8.min(c.package().id.len())]
        )),
    );
    h.insert(header::ACCEPT_RANGES, HeaderValue::from_static("none"));
    if *method == Method::HEAD {
        return Ok(resp);
    }
    record_download(&portal, &c, None, "zip", true).await?;
    let (tx, rx) = tokio::sync::mpsc::channel::<std::result::Result<Bytes, std::io::Error>>(4);
    tokio::spawn(async move {
        if let Err(e) = write_zip(&portal, &c, &tx).await {
            tracing::error!(package = %c.package().id, error = %e, "zip download failed");
            let _ = tx.send(Err(std::io::Error::other(e))).await;
        }
    });
    let body = futures_util::stream::unfold(rx, |mut rx| async move {
        rx.recv().await.map(|item| (item, rx))
    });
    *resp.body_mut() = Body::from_stream(body);
    Ok(resp)
}

type Tx = tokio::sync::mpsc::Sender<std::result::Result<Bytes, std::io::Error>>;

async fn write_zip(portal: &Portal, c: &Cleared, tx: &Tx) -> std::result::Result<(), String> {
    let closed = || "client went away".to_string();
    let mut z = ZipWriter::new();
    let mut taken = std::collections::HashSet::new();
    for f in c.files() {
        let size = u64::try_from(f.size).unwrap_or(0);
        let name = entry_name(&f.name, &mut taken);
        tx.send(Ok(Bytes::from(z.begin(&name, size))))
            .await
            .map_err(|_| closed())?;
        if size > 0 {
            let mut s = portal
                .vault
                .read(c.key(), &f.object, None)
                .await
                .map_err(|e| e.to_string())?;
            while let Some(chunk) = s.next().await {
                let chunk = chunk.map_err(|e| format!("file {}: {e}", f.id))?;
                z.data(&chunk);
                tx.send(Ok(chunk)).await.map_err(|_| closed())?;
            }
        }
        tx.send(Ok(Bytes::from(z.end()?)))
            .await
            .map_err(|_| closed())?;
    }
    tx.send(Ok(Bytes::from(z.finish())))
        .await
        .map_err(|_| closed())?;
    Ok(())
}

/// `YYYYMMDD` of a Unix-milliseconds time (civil-from-days, no date crate).
fn chrono_free_date(ms: i64) -> String {
    let days = ms.div_euclid(86_400_000);
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z - era * 146_097;
    let yoe = (doe - doe / 1460 + doe / 36524 - doe / 146_096) / 365;
    let y = yoe + era * 400;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = doy - (153 * mp + 2) / 5 + 1;
    let m = if mp < 10 { mp + 3 } else { mp - 9 };
    let y = if m <= 2 { y + 1 } else { y };
    format!("{y:04}{m:02}{d:02}")
}

#[cfg(test)]
mod tests {
    use super::*;

    fn h(v: &str) -> HeaderMap {
        let mut m = HeaderMap::new();
        m.insert(header::RANGE, HeaderValue::from_str(v).unwrap());
        m
    }

    #[test]
    fn ranges_parse_as_half_open() {
        assert_eq!(parse_range(&HeaderMap::new(), 10).unwrap(), None);
        assert_eq!(parse_range(&h("bytes=0-0"), 10).unwrap(), Some((0, 1)));
        assert_eq!(parse_range(&h("bytes=2-"), 10).unwrap(), Some((2, 10)));
        assert_eq!(parse_range(&h("bytes=-3"), 10).unwrap(), Some((7, 10)));
        assert_eq!(parse_range(&h("bytes=5-100"), 10).unwrap(), Some((5, 10)));
        assert_eq!(parse_range(&h("bytes=0-1,4-5"), 10).unwrap(), None);
        assert!(parse_range(&h("bytes=10-"), 10).is_err());
        assert!(parse_range(&h("bytes=x-"), 10).is_err());
        assert!(parse_range(&h("bytes=-0"), 10).is_err());
    }

    #[test]
    fn dates_are_civil() {
        assert_eq!(chrono_free_date(0), "19700101");
        assert_eq!(chrono_free_date(1_700_000_000_000), "20231114");
    }
}
