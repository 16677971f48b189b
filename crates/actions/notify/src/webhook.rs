//! The notify webhook: an HMAC-signed JSON POST, retried with backoff.
//!
//! What is signed: the exact bytes of the request body (the JSON of a
//! [`ResultMessage`]), nothing else. The header is
//! `X-Moat-Signature: sha256=<lowercase hex HMAC-SHA256(secret, body)>`.
//! `X-Moat-Timestamp` (Unix seconds when the request was sent) is
//! informational and not covered by the signature; the signed body carries
//! its own `scanned_at` for replay checks. `X-Moat-Event-Id` and
//! `Idempotency-Key` both carry [`ResultMessage::event_id`], identical on
//! every retry and re-send of the same result.

use crate::{NotifyError, ResultMessage};
use hmac::{Hmac, Mac};
use serde::{Deserialize, Serialize};
use sha2::Sha256;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

/// `sha256=<hex HMAC-SHA256 of the body>`.
pub const SIGNATURE_HEADER: &str = "X-Moat-Signature";
/// Unix seconds at sending time (not signed).
pub const TIMESTAMP_HEADER: &str = "X-Moat-Timestamp";
/// The result's stable deduplication id.
pub const EVENT_ID_HEADER: &str = "X-Moat-Event-Id";
/// Same value as [`EVENT_ID_HEADER`], for receivers that know this header.
pub const IDEMPOTENCY_HEADER: &str = "Idempotency-Key";

/// Longest wait between two attempts.
const MAX_BACKOFF: Duration = Duration::from_secs(60);

/// `[notify.webhook]`: POST each result as signed JSON.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct WebhookConfig {
    /// Receiver URL (`http://` or `https://`).
    pub url: String,
    /// HMAC-SHA256 key for `X-Moat-Signature`; no signature header without it.
    #[serde(default)]
    pub secret: Option<String>,
    /// Retries after the first attempt on connection errors, timeouts, 5xx
    /// and 429 (other 4xx and 3xx fail at once). Default 5.
    #[serde(default = "default_retries")]
    pub retries: u32,
    /// First backoff in milliseconds, doubled after each failed attempt,
    /// capped at 60 s; a 429/503 `Retry-After` (seconds) is honoured up to
    /// the cap. Default 500.
    #[serde(default = "default_backoff_ms")]
    pub backoff_ms: u64,
    /// Timeout of each attempt (connect + response), seconds. Default 10.
    #[serde(default = "default_timeout_secs")]
    pub timeout_secs: u64,
    /// Also send `clean` results. Default false: only findings, unscannable
    /// and errors are sent.
    #[serde(default)]
    pub report_clean: bool,
}

fn default_retries() -> u32 {
    5
}
fn default_backoff_ms() -> u64 {
    500
}
fn default_timeout_secs() -> u64 {
    10
}

impl WebhookConfig {
    /// A configuration with the defaults for everything but the URL.
    pub fn new(url: &str) -> WebhookConfig {
        WebhookConfig {
            url: url.to_string(),
            secret: None,
            retries: default_retries(),
            backoff_ms: default_backoff_ms(),
            timeout_secs: default_timeout_secs(),
            report_clean: false,
        }
    }
}

/// A configured webhook notifier. Cheap to share (`Arc`) across tasks.
pub struct Webhook {
    cfg: WebhookConfig,
    client: reqwest::Client,
}

/// `sha256=<hex HMAC-SHA256(secret, body)>`, the value of [`SIGNATURE_HEADER`].
pub fn sign(secret: &str, body: &[u8]) -> String {
    // HMAC accepts keys of any length, so this cannot fail.
    let mut mac = match Hmac::<Sha256>::new_from_slice(secret.as_bytes()) {
        Ok(m) => m,
        Err(_) => return String::new(),
    };
    mac.update(body);
    format!("sha256={}", hex::encode(mac.finalize().into_bytes()))
}

/// Check a received [`SIGNATURE_HEADER`] value against `body`, in constant
/// time. For receivers (and tests).
pub fn verify_signature(secret: &str, body: &[u8], header: &str) -> bool {
    let Some(hex_sig) = header.trim().strip_prefix("sha256=") else {
        return false;
    };
    let Ok(sig) = hex::decode(hex_sig) else {
        return false;
    };
    let Ok(mut mac) = Hmac::<Sha256>::new_from_slice(secret.as_bytes()) else {
        return false;
    };
    mac.update(body);
    mac.verify_slice(&sig).is_ok()
}

enum Attempt {
    Done,
    /// Try again, not before the given delay (Retry-After), if any.
    Retry(String, Option<u16>, Option<Duration>),
    Fail(u16),
}

impl Webhook {
    pub fn new(cfg: WebhookConfig) -> Result<Webhook, NotifyError> {
        let url = reqwest::Url::parse(&cfg.url)
            .map_err(|e| NotifyError::Config(format!("webhook url {:?}: {e}", cfg.url)))?;
        if !matches!(url.scheme(), "http" | "https") {
            return Err(NotifyError::Config(format!(
                "webhook url {:?}: scheme must be http or https",
                cfg.url
            )));
        }
        if cfg.timeout_secs == 0 {
            return Err(NotifyError::Config(
                "webhook timeout_secs must be > 0".into(),
            ));
        }
        let client = reqwest::Client::builder()
            .timeout(Duration::from_secs(cfg.timeout_secs))
            .connect_timeout(Duration::from_secs(cfg.timeout_secs))
            // A redirected POST would be re-sent as GET or to another host;
            // a 3xx is a configuration error the operator should see.
            .redirect(reqwest::redirect::Policy::none())
            .user_agent(concat!("moat/", env!("CARGO_PKG_VERSION")))
            .build()
            .map_err(|e| NotifyError::Config(format!("webhook client: {e}")))?;
        Ok(Webhook { cfg, client })
    }

    pub fn config(&self) -> &WebhookConfig {
        &self.cfg
    }

    /// Whether `msg` would be sent (clean results only with `report_clean`).
    pub fn wants(&self, msg: &ResultMessage) -> bool {
        msg.status != "clean" || self.cfg.report_clean
    }

    /// POST `msg`. `Ok(())` once the receiver answered 2xx, or at once when
    /// the result is clean and `report_clean` is off.
    pub async fn send(&self, msg: &ResultMessage) -> Result<(), NotifyError> {
        if !self.wants(msg) {
            return Ok(());
        }
        let body = serde_json::to_vec(msg)?;
        let event_id = msg.dedupe_id();
        let signature = self.cfg.secret.as_deref().map(|s| sign(s, &body));
        let mut backoff = Duration::from_millis(self.cfg.backoff_ms);
        let mut attempts = 0u32;
        loop {
            attempts += 1;
            let outcome = self.attempt(&body, &event_id, signature.as_deref()).await;
            let (detail, status, retry_after) = match outcome {
                Attempt::Done => return Ok(()),
                Attempt::Fail(status) => {
                    return Err(NotifyError::Status {
                        url: self.cfg.url.clone(),
                        status,
                        attempts,
                    });
                }
                Attempt::Retry(d, s, ra) => (d, s, ra),
            };
            if attempts > self.cfg.retries {
                return Err(match status {
                    Some(status) => NotifyError::Status {
                        url: self.cfg.url.clone(),
                        status,
                        attempts,
                    },
                    None => NotifyError::Transport {
                        url: self.cfg.url.clone(),
                        detail,
                        attempts,
                    },
                });
            }
            let wait = retry_after
                .map_or(backoff, |ra| ra.max(backoff))
                .min(MAX_BACKOFF);
            tracing::warn!(url = %self.cfg.url, attempt = attempts, %detail, wait_ms = wait.as_millis() as u64, "webhook delivery failed, retrying");
            tokio::time::sleep(wait).await;
            backoff = (backoff * 2).min(MAX_BACKOFF);
        }
    }

    async fn attempt(&self, body: &[u8], event_id: &str, signature: Option<&str>) -> Attempt {
        let ts = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map(|d| d.as_secs())
            .unwrap_or(0);
        let mut req = self
            .client
            .post(&self.cfg.url)
            .header(reqwest::header::CONTENT_TYPE, "application/json")
            .header(TIMESTAMP_HEADER, ts.to_string())
            .header(EVENT_ID_HEADER, event_id)
            .header(IDEMPOTENCY_HEADER, event_id)
            .body(body.to_vec());
        if let Some(sig) = signature {
            req = req.header(SIGNATURE_HEADER, sig);
        }
        match req.send().await {
            Ok(resp) => {
                let status = resp.status();
                if status.is_success() {
                    Attempt::Done
                } else if status.is_server_error() || status.as_u16() == 429 {
                    let retry_after = resp
                        .headers()
                        .get(reqwest::header::RETRY_AFTER)
                        .and_then(|v| v.to_str().ok())
                        .and_then(|v| v.trim().parse::<u64>().ok())
                        .map(Duration::from_secs);
                    Attempt::Retry(format!("HTTP {status}"), Some(status.as_u16()), retry_after)
                } else {
                    tracing::error!(url = %self.cfg.url, %status, "webhook rejected the notification; not retrying");
                    Attempt::Fail(status.as_u16())
                }
            }
            Err(e) => {
                let mut detail = e.to_string();
                let mut src = std::error::Error::source(&e);
                while let Some(s) = src {
                    detail.push_str(": ");
                    detail.push_str(&s.to_string());
                    src = s.source();
                }
                Attempt::Retry(detail, None, None)
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn signature_round_trip_and_rejections() {
        let sig = sign("k", b"body");
        assert!(sig.starts_with("sha256="));
        assert_eq!(sig.len(), 7 + 64);
        assert!(verify_signature("k", b"body", &sig));
        assert!(!verify_signature("k", b"body!", &sig));
        assert!(!verify_signature("other", b"body", &sig));
        assert!(!verify_signature("k", b"body", "sha256=zz"));
        assert!(!verify_signature("k", b"body", &sig[7..]));
        assert!(!verify_signature("k", b"body", ""));
        // RFC 4231 test case 2.
        assert_eq!(
            sign("Jefe", b"what do ya want for nothing?"),
            "sha256=5bdcc146bf60754e6a042426089575c75a003f089d2739839dec58b964ec3843"
        );
    }

    #[test]
    fn config_defaults_and_unknown_keys() {
        let c: WebhookConfig = serde_json::from_str(r#"{"url":"http://x/"}"#).unwrap();
        assert_eq!(c, WebhookConfig::new("http://x/"));
        assert_eq!((c.retries, c.backoff_ms, c.timeout_secs), (5, 500, 10));
        assert!(!c.report_clean);
        assert!(serde_json::from_str::<WebhookConfig>(r#"{"url":"http://x/","retry":1}"#).is_err());
        assert!(Webhook::new(WebhookConfig::new("ftp://x/")).is_err());
        assert!(Webhook::new(WebhookConfig::new("not a url")).is_err());
    }
}
