//! Scan a spooled body: verdict cache, the scan itself on a blocking thread,
//! the record. Shared by every role that scans over HTTP.

use crate::error::ApiError;
use crate::telemetry;
use moat_core::{Blob, Policy, Reason, Status, Verdict};
use moat_db::{ScanRecord, ScanStore};
use moat_scanner::Scanner;
use std::sync::Arc;

#[derive(Clone)]
pub struct ScanService {
    pub scanner: Arc<Scanner>,
    pub store: Arc<dyn ScanStore>,
    pub policy: Policy,
    pub cache: bool,
}

/// Whether a verdict may be reused for the same content and engine set.
/// Timeouts and engine errors are about this attempt, not the content.
fn cacheable(v: &Verdict) -> bool {
    match v.status {
        Status::Error => false,
        Status::Unscannable => v.reason != Some(Reason::Timeout),
        _ => true,
    }
}

impl ScanService {
    /// Scan (or answer from cache) and record. Fails only when the record
    /// cannot be written: an unrecorded verdict is not given out.
    pub async fn scan(
        &self,
        source: &'static str,
        name: &str,
        blob: Blob,
        sha256: [u8; 32],
    ) -> Result<ScanRecord, ApiError> {
        self.scan_with_extra(source, name, blob, sha256, serde_json::Map::new())
            .await
    }

    /// [`ScanService::scan`], with role-specific fields (e.g. the bucket, key
    /// and version of an object) added to the record's `extra` beside `action`.
    pub async fn scan_with_extra(
        &self,
        source: &'static str,
        name: &str,
        blob: Blob,
        sha256: [u8; 32],
        extra: serde_json::Map<String, serde_json::Value>,
    ) -> Result<ScanRecord, ApiError> {
        self.scan_mode(source, name, blob, sha256, extra, false)
            .await
    }

    /// [`ScanService::scan`] reporting every match, even from engines set to
    /// stop at an object's first detection (clamd's ALLMATCHSCAN). The
    /// verdict cache is neither read (it may hold a first-match verdict) nor
    /// written.
    pub async fn scan_all_matches(
        &self,
        source: &'static str,
        name: &str,
        blob: Blob,
        sha256: [u8; 32],
    ) -> Result<ScanRecord, ApiError> {
        self.scan_mode(source, name, blob, sha256, serde_json::Map::new(), true)
            .await
    }

    async fn scan_mode(
        &self,
        source: &'static str,
        name: &str,
        blob: Blob,
        sha256: [u8; 32],
        mut extra: serde_json::Map<String, serde_json::Value>,
        all_match: bool,
    ) -> Result<ScanRecord, ApiError> {
        let set = self.scanner.engine_set();
        let fp = set.fingerprint().to_string();
        let sha_hex = hex::encode(sha256);
        let mut cached = None;
        // Remote engines (clamd, icap) bound how long their verdicts are
        // reused; zero means never.
        let ttl = set.cache_ttl();
        let cache = self.cache && !all_match && ttl.is_none_or(|t| !t.is_zero());
        if cache {
            match self.store.cache_get(&sha_hex, &fp, ttl).await {
                Ok(v) => cached = v,
                Err(e) => tracing::warn!(error = %e, "verdict cache read failed; scanning"),
            }
        }
        let (verdict, took) = match cached {
            Some(v) => (v, None),
            None => {
                let started = std::time::Instant::now();
                let scanner = self.scanner.clone();
                let owned_name = name.to_string();
                metrics::gauge!(telemetry::INFLIGHT).increment(1.0);
                let res = tokio::task::spawn_blocking(move || {
                    scanner.scan_with_mode(&set, &blob, &owned_name, Some(sha256), all_match)
                })
                .await;
                metrics::gauge!(telemetry::INFLIGHT).decrement(1.0);
                let v = res.map_err(|e| ApiError::Internal(format!("scan task failed: {e}")))?;
                (v, Some(started.elapsed()))
            }
        };
        let was_cached = took.is_none();
        // A fresh verdict goes into the cache in the record's commit.
        let put_cache = cache && !was_cached && cacheable(&verdict);
        telemetry::scanned(source, &verdict, took);
        let action = self.policy.action(&verdict);
        let mut rec = ScanRecord::new(source, name, &fp, was_cached, verdict);
        extra.insert("action".into(), serde_json::json!(action));
        rec.extra = serde_json::Value::Object(extra);
        let recorded = if put_cache {
            self.store.record_cached(&rec).await
        } else {
            self.store.record(&rec).await
        };
        recorded.map_err(|e| ApiError::Storage(format!("could not record the scan: {e}")))?;
        tracing::info!(
            id = %rec.id, source, name, status = %rec.verdict.status,
            reason = rec.verdict.reason.map(|r| r.as_str()).unwrap_or(""),
            signatures = ?rec.verdict.signatures(), sha256 = %rec.verdict.sha256,
            size = rec.verdict.size, cached = was_cached, ms = rec.verdict.duration_ms, "scanned"
        );
        Ok(rec)
    }
}

/// The JSON shape of a record: the verdict's fields plus id, name, action, cached.
pub fn record_json(rec: &ScanRecord) -> serde_json::Value {
    let mut v = serde_json::to_value(&rec.verdict).unwrap_or_default();
    if let Some(obj) = v.as_object_mut() {
        obj.insert("id".into(), rec.id.clone().into());
        obj.insert("name".into(), rec.name.clone().into());
        obj.insert("source".into(), rec.source.clone().into());
        obj.insert("created_at".into(), rec.created_at.into());
        obj.insert("cached".into(), rec.cached.into());
        obj.insert("fingerprint".into(), rec.fingerprint.clone().into());
        if let Some(a) = rec.extra.get("action") {
            obj.insert("action".into(), a.clone());
        }
    }
    v
}

#[cfg(test)]
mod tests {
    use super::*;
    use moat_core::EngineReport;

    fn v(status: Status, reason: Option<Reason>) -> Verdict {
        let e = EngineReport::new("e", status, reason);
        Verdict::aggregate(vec![e], vec![], String::new(), 0, String::new(), 0)
    }

    #[test]
    fn errors_and_timeouts_are_not_cached() {
        assert!(cacheable(&v(Status::Clean, None)));
        assert!(cacheable(&v(Status::Infected, None)));
        assert!(cacheable(&v(Status::Unscannable, Some(Reason::Encrypted))));
        assert!(!cacheable(&v(Status::Unscannable, Some(Reason::Timeout))));
        assert!(!cacheable(&v(Status::Error, Some(Reason::EngineError))));
    }
}
