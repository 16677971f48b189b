//! The scan gate: request bodies (whole, multipart parts, aws-chunked) and
//! responses through the `ScanService`, and the block page a verdict earns.

use super::*;

impl Proxy {
    /// Scan a spooled request body. `Err` is the response that blocks it.
    pub(super) async fn scan_request(
        &self,
        parts: &hyper::http::request::Parts,
        content_type: &str,
        blob: &Blob,
        sha: Option<[u8; 32]>,
        html: bool,
        log: &mut Log<'_>,
    ) -> Result<(), Response<Body>> {
        let cfg = &self.0.cfg;
        let name = object_name(parts.uri.path());
        let mut records = Vec::new();
        if let Some(boundary) = body::multipart_boundary(content_type) {
            let boundary = boundary.map_err(|e| body_error(e, html, log))?;
            let files = body::multipart_parts(
                blob,
                &boundary,
                cfg.spool_threshold,
                cfg.max_body_size,
                &self.0.tmp_dir,
            )
            .await
            .map_err(|e| body_error(e, html, log))?;
            for f in files {
                let rec = self.scan_one(&f.name, f.blob, f.sha256, html).await?;
                records.push((f.name, rec));
            }
        } else if body::is_aws_chunked(&parts.headers) {
            let (b, t, l, d) = (
                blob.clone(),
                cfg.spool_threshold,
                cfg.max_body_size,
                self.0.tmp_dir.clone(),
            );
            let decoded =
                tokio::task::spawn_blocking(move || body::decode_aws_chunked(&b, t, l, &d)).await;
            let (payload, psha) = match decoded {
                Ok(Ok(x)) => x,
                Ok(Err(e)) => return Err(body_error(e, html, log)),
                Err(e) => {
                    return Err(body_error(
                        BodyError::Io(std::io::Error::other(e.to_string())),
                        html,
                        log,
                    ));
                }
            };
            let rec = self.scan_one(&name, payload, psha, html).await?;
            records.push((name, rec));
        } else {
            let sha = sha
                .map_or_else(|| blob.sha256(), Ok)
                .map_err(|e| body_error(BodyError::Io(e), html, log))?;
            let rec = self.scan_one(&name, blob.clone(), sha, html).await?;
            records.push((name, rec));
        }
        for (n, r) in &records {
            log.scanned.push((n.clone(), r.verdict.policy_key()));
            metrics::counter!(SCANNED, "status" => r.verdict.status.as_str()).increment(1);
        }
        match blocking(&self.0.service, &records) {
            None => Ok(()),
            Some(i) => {
                log.note = "blocked";
                Err(blocked_page(&records, i, html))
            }
        }
    }

    pub(super) async fn scan_one(
        &self,
        name: &str,
        blob: Blob,
        sha: [u8; 32],
        html: bool,
    ) -> Result<ScanRecord, Response<Body>> {
        self.0
            .service
            .scan("proxy", name, blob, sha)
            .await
            .map_err(|e| {
                tracing::error!(error = %e, name, "scan failed");
                let mut r = error_page(
                    StatusCode::SERVICE_UNAVAILABLE,
                    html,
                    "the upload could not be scanned; try again later",
                );
                r.headers_mut()
                    .insert(header::RETRY_AFTER, HeaderValue::from_static("30"));
                r
            })
    }

    pub(super) async fn scan_response(
        &self,
        resp: Response<Body>,
        parts: &hyper::http::request::Parts,
        html: bool,
        log: &mut Log<'_>,
    ) -> Response<Body> {
        let cfg = &self.0.cfg;
        let (mut rparts, rbody) = resp.into_parts();
        let spooled = body::spool(
            rbody,
            cfg.spool_threshold,
            cfg.max_body_size,
            &self.0.tmp_dir,
            Duration::from_secs(cfg.read_timeout_secs),
            true,
        )
        .await;
        let (blob, sha) = match spooled {
            Ok(x) => x,
            Err(BodyError::TooLarge(n)) => {
                log.note = "download_too_large";
                return error_page(
                    StatusCode::FORBIDDEN,
                    html,
                    &format!("the download is larger than {n} bytes and could not be scanned"),
                );
            }
            Err(e) => {
                log.note = "upstream_body_error";
                return error_page(StatusCode::BAD_GATEWAY, html, &e.to_string());
            }
        };
        let name = object_name(parts.uri.path());
        let sha = match sha.map_or_else(|| blob.sha256(), Ok) {
            Ok(s) => s,
            Err(e) => {
                log.note = "upstream_body_error";
                return error_page(StatusCode::BAD_GATEWAY, html, &e.to_string());
            }
        };
        let rec = match self.scan_one(&name, blob.clone(), sha, html).await {
            Ok(r) => r,
            Err(r) => return r,
        };
        log.scanned.push((name.clone(), rec.verdict.policy_key()));
        metrics::counter!(SCANNED, "status" => rec.verdict.status.as_str()).increment(1);
        let records = vec![(name, rec)];
        if let Some(i) = blocking(&self.0.service, &records) {
            log.note = "download_blocked";
            return blocked_page(&records, i, html);
        }
        rparts.headers.remove(header::TRANSFER_ENCODING);
        rparts
            .headers
            .insert(header::CONTENT_LENGTH, HeaderValue::from(blob.len()));
        Response::from_parts(rparts, body::blob_body(blob))
    }
}

/// Index of the record that blocks the request (highest severity), if any.
pub(super) fn blocking(service: &ScanService, records: &[(String, ScanRecord)]) -> Option<usize> {
    records
        .iter()
        .enumerate()
        .filter(|(_, (_, r))| {
            matches!(
                service.policy.action(&r.verdict),
                Action::Block | Action::Quarantine
            )
        })
        .max_by_key(|(_, (_, r))| r.verdict.status.severity())
        .map(|(i, _)| i)
}

pub(super) fn blocked_page(
    records: &[(String, ScanRecord)],
    i: usize,
    html: bool,
) -> Response<Body> {
    let (name, rec) = &records[i];
    let v = &rec.verdict;
    let (status, retry) = match v.status {
        Status::Error => (StatusCode::SERVICE_UNAVAILABLE, true),
        _ => (StatusCode::FORBIDDEN, false),
    };
    let sigs = v.signatures();
    let mut resp = if html {
        let what = match v.status {
            Status::Infected | Status::Suspicious => {
                format!("{} ({})", v.status, sigs.join(", "))
            }
            Status::Error => "could not be scanned (engine error); try again later".to_string(),
            _ => format!("could not be scanned ({})", v.policy_key()),
        };
        let page = format!(
            "<!doctype html><html><head><title>{code}</title></head><body><h1>{code}</h1><p>Blocked by moat: <b>{}</b> {}.</p><p>Scan id {}</p></body></html>\n",
            escape(name),
            escape(&what),
            escape(&rec.id),
            code = status
        );
        let mut r = Response::new(body::full(page));
        r.headers_mut().insert(
            header::CONTENT_TYPE,
            HeaderValue::from_static("text/html; charset=utf-8"),
        );
        r
    } else {
        let files: Vec<serde_json::Value> = records
            .iter()
            .map(|(n, r)| {
                serde_json::json!({
                    "name": n,
                    "status": r.verdict.status,
                    "reason": r.verdict.reason,
                    "signatures": r.verdict.signatures(),
                    "sha256": r.verdict.sha256,
                    "scan_id": r.id,
                })
            })
            .collect();
        let j = serde_json::json!({
            "error": if retry { "scan_unavailable" } else { "blocked" },
            "status": v.status,
            "reason": v.reason,
            "file": name,
            "signatures": sigs,
            "files": files,
        });
        let mut r = Response::new(body::full(j.to_string()));
        r.headers_mut().insert(
            header::CONTENT_TYPE,
            HeaderValue::from_static("application/json"),
        );
        r
    };
    *resp.status_mut() = status;
    if retry {
        resp.headers_mut()
            .insert(header::RETRY_AFTER, HeaderValue::from_static("30"));
    }
    resp
}

pub(super) fn body_error(e: BodyError, html: bool, log: &mut Log) -> Response<Body> {
    let (code, note) = match &e {
        BodyError::TooLarge(_) => (StatusCode::PAYLOAD_TOO_LARGE, "too_large"),
        BodyError::Timeout(_) => (StatusCode::REQUEST_TIMEOUT, "client_timeout"),
        BodyError::Client(_) => (StatusCode::BAD_REQUEST, "client_error"),
        BodyError::Malformed(_) => (StatusCode::BAD_REQUEST, "malformed"),
        BodyError::Io(_) => (StatusCode::SERVICE_UNAVAILABLE, "spool_error"),
    };
    log.note = note;
    if code == StatusCode::SERVICE_UNAVAILABLE {
        tracing::error!(error = %e, "spooling a body failed");
    }
    let mut r = error_page(code, html, &e.to_string());
    if code == StatusCode::REQUEST_TIMEOUT || code == StatusCode::PAYLOAD_TOO_LARGE {
        r.headers_mut()
            .insert(header::CONNECTION, HeaderValue::from_static("close"));
    }
    r
}

/// The object name recorded for a body: the request path (S3: /bucket/key).
pub(super) fn object_name(path: &str) -> String {
    if path.is_empty() {
        "/".into()
    } else {
        path.to_string()
    }
}
