//! The webhook source: `POST /v1/events/s3` (MinIO's webhook target, or
//! anything that can POST an S3 event) into the embedded durable queue,
//! and [`QueueSource`], which hands the queued events to the pipeline.
//!
//! The request is answered `200` only after the body is committed to the
//! queue ([`EventQueue::enqueue`]), so an event MinIO saw acknowledged
//! survives a crash of moat. Answers:
//! - `200 {"id": "<queue id>"}`: stored;
//! - `401`: no or wrong bearer token (`Authorization: Bearer <token>`,
//!   compared in constant time); nothing is stored. With no tokens
//!   configured every request is refused (fail closed);
//! - `400`: empty body;
//! - `413`: body over `max_body_bytes`;
//! - `503`: the queue could not store it (the sender retries; MinIO keeps
//!   undelivered events in its `queue_dir`).
//!
//! The body is not parsed here: malformed JSON is accepted and stored like
//! any other event, and the pipeline dead-letters it with the parse error as
//! the reason (state `dead` in the queue table), so bad input is kept for
//! inspection rather than bounced back to a sender that cannot fix it.

use crate::{Delivery, EventSource, SourceError};
use async_trait::async_trait;
use axum::Router;
use axum::body::Bytes;
use axum::extract::{DefaultBodyLimit, State};
use axum::http::{HeaderMap, StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::post;
use moat_db::EventQueue;
use serde::{Deserialize, Serialize};
use std::sync::Arc;
use std::time::Duration;
use subtle::ConstantTimeEq;

const NAME: &str = "webhook";
/// Route served by [`router`].
pub const PATH: &str = "/v1/events/s3";

/// `[bucket.sources.webhook]`: receive S3 events over HTTP into the
/// embedded durable queue.
#[derive(Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct WebhookSourceConfig {
    /// Accepted bearer tokens (several, for rotation). Required: with none,
    /// every request is refused.
    pub tokens: Vec<String>,
    /// Queue name in the `moat_event_queue` table. Default `s3-events`.
    #[serde(default = "default_queue")]
    pub queue: String,
    /// Seconds an event is leased to a worker before it is handed out again
    /// (extended by keep-alives during long scans). Default 60.
    #[serde(default = "default_lease")]
    pub lease_secs: u64,
    /// Deliveries after which an event is dead-lettered without being
    /// handed out again. Default 5.
    #[serde(default = "default_max_attempts")]
    pub max_attempts: u32,
    /// Largest accepted request body, bytes. Default 1 MiB (S3 event
    /// notifications are a few KiB).
    #[serde(default = "default_max_body")]
    pub max_body_bytes: usize,
    /// How often an idle [`QueueSource`] polls the queue, milliseconds.
    /// Default 250.
    #[serde(default = "default_poll")]
    pub poll_ms: u64,
}

impl std::fmt::Debug for WebhookSourceConfig {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("WebhookSourceConfig")
            .field("tokens", &format!("<{} redacted>", self.tokens.len()))
            .field("queue", &self.queue)
            .field("lease_secs", &self.lease_secs)
            .field("max_attempts", &self.max_attempts)
            .field("max_body_bytes", &self.max_body_bytes)
            .field("poll_ms", &self.poll_ms)
            .finish()
    }
}

fn default_queue() -> String {
    "s3-events".into()
}
fn default_lease() -> u64 {
    60
}
fn default_max_attempts() -> u32 {
    5
}
fn default_max_body() -> usize {
    1 << 20
}
fn default_poll() -> u64 {
    250
}

impl WebhookSourceConfig {
    /// The defaults, with these tokens.
    pub fn new(tokens: Vec<String>) -> WebhookSourceConfig {
        WebhookSourceConfig {
            tokens,
            queue: default_queue(),
            lease_secs: default_lease(),
            max_attempts: default_max_attempts(),
            max_body_bytes: default_max_body(),
            poll_ms: default_poll(),
        }
    }

    /// Configuration errors, for start-up.
    pub fn validate(&self) -> Result<(), String> {
        if self.tokens.is_empty() || self.tokens.iter().any(|t| t.trim().is_empty()) {
            return Err("webhook source: at least one non-empty token is required".into());
        }
        if self.lease_secs == 0 || self.max_attempts == 0 || self.max_body_bytes == 0 {
            return Err(
                "webhook source: lease_secs, max_attempts and max_body_bytes must be > 0".into(),
            );
        }
        if self.queue.is_empty() {
            return Err("webhook source: queue name is empty".into());
        }
        Ok(())
    }
}

struct Inner {
    queue: Arc<dyn EventQueue>,
    cfg: WebhookSourceConfig,
}

/// The HTTP side: `POST /v1/events/s3` into `queue` (see the module docs).
/// Merge it into a server's router or serve it alone.
pub fn router(queue: Arc<dyn EventQueue>, cfg: WebhookSourceConfig) -> Router {
    if cfg.tokens.is_empty() {
        tracing::error!("webhook source has no tokens: every request will be refused");
    }
    let limit = cfg.max_body_bytes;
    Router::new()
        .route(PATH, post(receive))
        .layer(DefaultBodyLimit::max(limit))
        .with_state(Arc::new(Inner { queue, cfg }))
}

fn authorized(headers: &HeaderMap, tokens: &[String]) -> bool {
    let Some(value) = headers
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
    else {
        return false;
    };
    let Some((scheme, token)) = value.trim().split_once(' ') else {
        return false;
    };
    if !scheme.eq_ignore_ascii_case("bearer") {
        return false;
    }
    let token = token.trim().as_bytes();
    // Check every configured token (no early exit on a match).
    let mut ok = subtle::Choice::from(0u8);
    for t in tokens {
        if !t.is_empty() {
            ok |= t.as_bytes().ct_eq(token);
        }
    }
    ok.into()
}

fn json_error(status: StatusCode, msg: &str) -> Response {
    (status, axum::Json(serde_json::json!({ "error": msg }))).into_response()
}

async fn receive(State(inner): State<Arc<Inner>>, headers: HeaderMap, body: Bytes) -> Response {
    if !authorized(&headers, &inner.cfg.tokens) {
        let mut r = json_error(StatusCode::UNAUTHORIZED, "missing or invalid bearer token");
        r.headers_mut().insert(
            header::WWW_AUTHENTICATE,
            header::HeaderValue::from_static("Bearer"),
        );
        return r;
    }
    if body.is_empty() {
        return json_error(StatusCode::BAD_REQUEST, "empty body: expected an S3 event");
    }
    match inner.queue.enqueue(&inner.cfg.queue, &body).await {
        Ok(id) => {
            tracing::debug!(%id, bytes = body.len(), "webhook event queued");
            (StatusCode::OK, axum::Json(serde_json::json!({ "id": id }))).into_response()
        }
        Err(e) => {
            tracing::error!(error = %e, "webhook event could not be queued");
            json_error(
                StatusCode::SERVICE_UNAVAILABLE,
                "event queue unavailable; retry",
            )
        }
    }
}

/// The pipeline side: leases events from the queue (see the module docs).
pub struct QueueSource {
    queue: Arc<dyn EventQueue>,
    cfg: WebhookSourceConfig,
}

impl QueueSource {
    pub fn new(queue: Arc<dyn EventQueue>, cfg: WebhookSourceConfig) -> QueueSource {
        QueueSource { queue, cfg }
    }
}

fn db_err(detail: impl std::fmt::Display) -> SourceError {
    SourceError::Connection {
        source_name: NAME,
        detail: detail.to_string(),
    }
}

#[async_trait]
impl EventSource for QueueSource {
    fn name(&self) -> String {
        format!("webhook:{}", self.cfg.queue)
    }

    async fn next(&mut self) -> Result<Box<dyn Delivery>, SourceError> {
        let lease = Duration::from_secs(self.cfg.lease_secs.max(1));
        let idle = Duration::from_millis(self.cfg.poll_ms.max(10));
        loop {
            let ev = match self.queue.lease(&self.cfg.queue, lease).await {
                Ok(Some(ev)) => ev,
                Ok(None) => {
                    tokio::time::sleep(idle).await;
                    continue;
                }
                Err(e) => {
                    tokio::time::sleep(Duration::from_secs(1)).await;
                    return Err(db_err(format!("lease: {e}")));
                }
            };
            let delivery = QueueDelivery {
                queue: self.queue.clone(),
                id: ev.id,
                payload: ev.payload,
                attempt: ev.attempts,
                lease,
            };
            if delivery.attempt > self.cfg.max_attempts {
                let reason = format!(
                    "delivered {} times (max_attempts {})",
                    delivery.attempt, self.cfg.max_attempts
                );
                tracing::warn!(source = %self.name(), id = %delivery.id, %reason, "dead-lettering");
                if let Err(e) = Box::new(delivery).dead_letter(&reason).await {
                    tracing::error!(error = %e, "dead-lettering failed; the event will come back");
                }
                continue;
            }
            return Ok(Box::new(delivery));
        }
    }
}

/// One leased event.
pub struct QueueDelivery {
    queue: Arc<dyn EventQueue>,
    id: String,
    payload: Vec<u8>,
    attempt: u32,
    lease: Duration,
}

impl QueueDelivery {
    /// The event's id in the queue table.
    pub fn id(&self) -> &str {
        &self.id
    }
}

#[async_trait]
impl Delivery for QueueDelivery {
    fn payload(&self) -> &[u8] {
        &self.payload
    }

    fn attempt(&self) -> u32 {
        self.attempt
    }

    fn source(&self) -> &'static str {
        NAME
    }

    async fn keep_alive(&self) -> Result<(), SourceError> {
        self.queue
            .extend(&self.id, self.lease)
            .await
            .map_err(|e| db_err(format!("extend lease: {e}")))
    }

    async fn ack(self: Box<Self>) -> Result<(), SourceError> {
        self.queue
            .ack(&self.id)
            .await
            .map_err(|e| db_err(format!("ack: {e}")))
    }

    async fn retry(self: Box<Self>, delay: Duration) -> Result<(), SourceError> {
        self.queue
            .retry(&self.id, delay)
            .await
            .map_err(|e| db_err(format!("retry: {e}")))
    }

    async fn dead_letter(self: Box<Self>, reason: &str) -> Result<(), SourceError> {
        self.queue
            .dead(&self.id, reason)
            .await
            .map_err(|e| db_err(format!("dead-letter: {e}")))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn h(v: &str) -> HeaderMap {
        let mut m = HeaderMap::new();
        m.insert(header::AUTHORIZATION, v.parse().unwrap());
        m
    }

    #[test]
    fn bearer_tokens() {
        let tokens = vec!["alpha".to_string(), "beta".to_string()];
        assert!(authorized(&h("Bearer alpha"), &tokens));
        assert!(authorized(&h("bearer beta"), &tokens));
        assert!(!authorized(&h("Bearer alph"), &tokens));
        assert!(!authorized(&h("Bearer alphaa"), &tokens));
        assert!(!authorized(&h("Basic alpha"), &tokens));
        assert!(!authorized(&h("alpha"), &tokens));
        assert!(!authorized(&HeaderMap::new(), &tokens));
        assert!(!authorized(&h("Bearer "), &["".to_string()]));
        assert!(!authorized(&h("Bearer x"), &[]));
    }

    #[test]
    fn config_defaults_and_validation() {
        let c: WebhookSourceConfig = serde_json::from_str(r#"{"tokens":["t"]}"#).unwrap();
        assert_eq!(c, WebhookSourceConfig::new(vec!["t".into()]));
        assert_eq!(c.queue, "s3-events");
        assert!(c.validate().is_ok());
        assert!(WebhookSourceConfig::new(vec![]).validate().is_err());
        assert!(
            WebhookSourceConfig::new(vec![" ".into()])
                .validate()
                .is_err()
        );
        assert!(serde_json::from_str::<WebhookSourceConfig>(r#"{"tokens":[],"x":1}"#).is_err());
        assert!(!format!("{c:?}").contains("\"t\""));
    }
}
