//! moat-notify: telling others about results (webhook, AMQP, NATS).
//!
//! Every channel sends the same JSON document, a [`ResultMessage`]:
//!
//! ```json
//! {
//!   "bucket": "uploads",
//!   "key": "dir/report.pdf",
//!   "version_id": null,
//!   "status": "infected",
//!   "reason": null,
//!   "signatures": ["Win.Test.EICAR_HDB-1"],
//!   "sha256": "275a021b...",
//!   "size": 68,
//!   "scanned_at": "2026-11-22T22:15:07Z",
//!   "engines": [{"name": "builtin", "version": "0.1.0", "status": "infected"}],
//!   "event_id": "4c0b...32 hex"
//! }
//! ```
//!
//! `status` is one of `clean`, `infected`, `suspicious`, `unscannable`,
//! `error`; `reason` is set for `unscannable` (`too_large`, `encrypted`,
//! `limits_exceeded`, `unsupported`, `timeout`). `event_id` (see
//! [`ResultMessage::event_id`]) is the same for every re-send of the same
//! result, so receivers can deduplicate; it is also sent as the
//! `X-Moat-Event-Id`/`Idempotency-Key` headers (webhook), the AMQP
//! `message_id` and the NATS `Nats-Msg-Id` header (JetStream deduplication).
#![forbid(unsafe_code)]

mod amqp;
mod nats;
mod webhook;

pub use amqp::{AmqpPublishConfig, AmqpPublisher};
pub use nats::{NatsPublishConfig, NatsPublisher};
pub use webhook::{
    EVENT_ID_HEADER, IDEMPOTENCY_HEADER, SIGNATURE_HEADER, TIMESTAMP_HEADER, Webhook,
    WebhookConfig, sign, verify_signature,
};

use moat_core::Verdict;
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};
use std::time::{SystemTime, UNIX_EPOCH};

/// A notification failure, with enough detail to log and to dead-letter on.
#[derive(Debug, thiserror::Error)]
pub enum NotifyError {
    /// Bad configuration (URL, TLS setup, ...).
    #[error("notify configuration: {0}")]
    Config(String),
    /// The receiver answered with a status that is not retried (4xx other
    /// than 429, 3xx), or the retries ran out on a 5xx/429.
    #[error("webhook {url}: HTTP {status} after {attempts} attempt(s)")]
    Status {
        url: String,
        status: u16,
        attempts: u32,
    },
    /// Connection failures/timeouts until the retries ran out.
    #[error("webhook {url}: {detail} after {attempts} attempt(s)")]
    Transport {
        url: String,
        detail: String,
        attempts: u32,
    },
    #[error("amqp publish: {0}")]
    Amqp(String),
    #[error("nats publish: {0}")]
    Nats(String),
    #[error("encoding the result: {0}")]
    Encode(#[from] serde_json::Error),
}

/// One engine's part of a result.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct EngineSummary {
    /// Engine name: `builtin`, `clamd`, `yara`.
    pub name: String,
    /// Engine version as reported by the engine (may be empty).
    pub version: String,
    /// The engine's own status (`clean`, `infected`, ...).
    pub status: String,
}

/// The result of scanning one object: the JSON every notifier sends (see
/// the crate documentation for an example).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ResultMessage {
    pub bucket: String,
    pub key: String,
    /// The object version scanned, when the bucket is versioned.
    pub version_id: Option<String>,
    /// `clean`, `infected`, `suspicious`, `unscannable` or `error`.
    pub status: String,
    /// Why it is `unscannable` (`too_large`, `encrypted`, ...).
    pub reason: Option<String>,
    /// Signature/rule names found, deduplicated.
    pub signatures: Vec<String>,
    /// Hex SHA-256 of the object's content.
    pub sha256: String,
    /// Object size in bytes.
    pub size: u64,
    /// When the verdict was produced, RFC 3339 UTC (`2026-11-22T22:15:07Z`).
    pub scanned_at: String,
    pub engines: Vec<EngineSummary>,
    /// Deduplication id; filled in by [`ResultMessage::new`] and
    /// [`ResultMessage::from_verdict`]. Ignored on input if absent.
    #[serde(default)]
    pub event_id: String,
}

impl ResultMessage {
    /// Build a message; `event_id` is derived from the other fields.
    #[allow(clippy::too_many_arguments)]
    pub fn new(
        bucket: &str,
        key: &str,
        version_id: Option<&str>,
        status: &str,
        reason: Option<&str>,
        signatures: Vec<String>,
        sha256: &str,
        size: u64,
        scanned_at: SystemTime,
        engines: Vec<EngineSummary>,
    ) -> ResultMessage {
        let mut m = ResultMessage {
            bucket: bucket.to_string(),
            key: key.to_string(),
            version_id: version_id.map(str::to_string),
            status: status.to_string(),
            reason: reason.map(str::to_string),
            signatures,
            sha256: sha256.to_string(),
            size,
            scanned_at: rfc3339(scanned_at),
            engines,
            event_id: String::new(),
        };
        m.event_id = m.event_id();
        m
    }

    /// The message for `verdict` on `bucket`/`key`(/`version_id`).
    pub fn from_verdict(
        bucket: &str,
        key: &str,
        version_id: Option<&str>,
        verdict: &Verdict,
        scanned_at: SystemTime,
    ) -> ResultMessage {
        let engines = verdict
            .engines
            .iter()
            .map(|e| EngineSummary {
                name: e.name.clone(),
                version: e.version.clone(),
                status: e.status.as_str().to_string(),
            })
            .collect();
        ResultMessage::new(
            bucket,
            key,
            version_id,
            verdict.status.as_str(),
            verdict.reason.map(|r| r.as_str()),
            verdict
                .signatures()
                .into_iter()
                .map(str::to_string)
                .collect(),
            &verdict.sha256,
            verdict.size,
            scanned_at,
            engines,
        )
    }

    /// A stable id for this result: the first 32 hex digits of
    /// SHA-256(bucket NUL key NUL version_id NUL sha256 NUL status NUL reason).
    /// It leaves out `scanned_at`, so re-processing the same event (a
    /// redelivery after a crash) produces the same id and receivers can
    /// drop the duplicate.
    pub fn event_id(&self) -> String {
        let mut h = Sha256::new();
        for part in [
            self.bucket.as_str(),
            self.key.as_str(),
            self.version_id.as_deref().unwrap_or(""),
            self.sha256.as_str(),
            self.status.as_str(),
            self.reason.as_deref().unwrap_or(""),
        ] {
            h.update(part.as_bytes());
            h.update([0u8]);
        }
        let mut id = hex::encode(h.finalize());
        id.truncate(32);
        id
    }

    /// The id to send: the stored one, or derived when it is empty.
    pub(crate) fn dedupe_id(&self) -> String {
        if self.event_id.is_empty() {
            self.event_id()
        } else {
            self.event_id.clone()
        }
    }
}

/// RFC 3339 UTC with second precision, e.g. `2026-11-22T22:15:07Z`.
pub fn rfc3339(t: SystemTime) -> String {
    let secs = t
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or(0);
    let days = (secs / 86_400) as i64;
    let rem = secs % 86_400;
    // Civil-from-days (Howard Hinnant), valid for the proleptic Gregorian calendar.
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z - era * 146_097;
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = doy - (153 * mp + 2) / 5 + 1;
    let m = if mp < 10 { mp + 3 } else { mp - 9 };
    let y = yoe + era * 400 + i64::from(m <= 2);
    format!(
        "{y:04}-{m:02}-{d:02}T{:02}:{:02}:{:02}Z",
        rem / 3600,
        (rem % 3600) / 60,
        rem % 60
    )
}

#[cfg(test)]
mod tests {
    use super::*;
    use moat_core::{EngineReport, Finding, Status};
    use std::time::Duration;

    #[test]
    fn rfc3339_formats_known_instants() {
        assert_eq!(rfc3339(UNIX_EPOCH), "1970-01-01T00:00:00Z");
        assert_eq!(
            rfc3339(UNIX_EPOCH + Duration::from_secs(951_782_400)),
            "2000-02-29T00:00:00Z"
        );
        assert_eq!(
            rfc3339(UNIX_EPOCH + Duration::from_secs(1_795_385_707)),
            "2026-11-22T22:15:07Z"
        );
    }

    #[test]
    fn from_verdict_and_stable_event_id() {
        let e = EngineReport::new("builtin", Status::Infected, None);
        let f = Finding {
            engine: "builtin".into(),
            signature: "Eicar-Test".into(),
            location: String::new(),
            severity: Status::Infected,
        };
        let v = Verdict::aggregate(
            vec![e],
            vec![f.clone(), f],
            "ab".repeat(32),
            68,
            "text/plain".into(),
            1,
        );
        let a = ResultMessage::from_verdict("b", "k", Some("v1"), &v, UNIX_EPOCH);
        let b = ResultMessage::from_verdict("b", "k", Some("v1"), &v, SystemTime::now());
        assert_eq!(a.status, "infected");
        assert_eq!(a.signatures, ["Eicar-Test"]);
        assert_eq!(a.engines[0].status, "infected");
        assert_eq!(a.event_id.len(), 32);
        // Same result at another time: same id. Another version: another id.
        assert_eq!(a.event_id, b.event_id);
        let c = ResultMessage::from_verdict("b", "k", Some("v2"), &v, UNIX_EPOCH);
        assert_ne!(a.event_id, c.event_id);
        let json = serde_json::to_value(&a).unwrap();
        assert_eq!(json["scanned_at"], "1970-01-01T00:00:00Z");
        assert_eq!(json["version_id"], "v1");
        let back: ResultMessage = serde_json::from_value(json).unwrap();
        assert_eq!(back, a);
    }
}
