//! NATS JetStream source: a durable pull consumer with explicit acks.
//!
//! Settlement mapping: `ack` = double ack (waits for the server to confirm
//! the ack), `keep_alive` = in-progress (`+WPI`, restarts the ack-wait
//! timer), `retry(delay)` = nak with delay, `attempt` = the server's delivery
//! count, `dead_letter(reason)` = publish the payload through JetStream to
//! `dead_letter_subject` (header `Moat-Dead-Letter-Reason`) and then term.
//! Messages delivered more than `max_deliver` times are dead-lettered by the
//! source itself before they reach the pipeline (a poison message that
//! crashes the worker every time still ends up aside). The consumer that
//! moat creates has no server-side max-deliver, so the server never drops a
//! message silently; moat counts instead.

use crate::{Delivery, EventSource, SourceError};
use async_nats::jetstream::{self, AckKind, consumer::PullConsumer};
use async_trait::async_trait;
use futures_util::StreamExt;
use serde::{Deserialize, Serialize};
use std::time::Duration;

const NAME: &str = "nats";
/// Header carrying the dead-letter reason.
pub const REASON_HEADER: &str = "Moat-Dead-Letter-Reason";
/// Header carrying the subject the dead-lettered message was published to.
pub const ORIGINAL_SUBJECT_HEADER: &str = "Moat-Original-Subject";
/// Header carrying how many times it was delivered.
pub const DELIVERED_HEADER: &str = "Moat-Delivered";

/// `[[bucket.sources.nats]]`: consume S3 events from a JetStream stream.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct NatsConfig {
    /// Server URL(s), e.g. `nats://user:pass@127.0.0.1:4222` (comma-separated
    /// for a cluster).
    pub url: String,
    /// JetStream stream holding the events, e.g. `S3_EVENTS`.
    pub stream: String,
    /// Subjects the stream captures (used only when `create` makes the
    /// stream), e.g. `["s3.events.>"]`. Default: the stream name.
    #[serde(default)]
    pub subjects: Vec<String>,
    /// Durable consumer name. Default `moat`.
    #[serde(default = "default_consumer")]
    pub consumer: String,
    /// Create the stream and the consumer when missing (existing ones are
    /// used as they are). Default true.
    #[serde(default = "default_true")]
    pub create: bool,
    /// Seconds before an unacknowledged message is redelivered (extended by
    /// keep-alives during long scans). Used when creating the consumer.
    /// Default 60.
    #[serde(default = "default_ack_wait")]
    pub ack_wait_secs: u64,
    /// Deliveries after which a message is dead-lettered without being
    /// handed out again. Default 5.
    #[serde(default = "default_max_deliver")]
    pub max_deliver: u32,
    /// Subject dead-lettered messages are published to, through JetStream so
    /// it is durable: a stream must capture it (with `create`, a stream
    /// `<stream>_DEAD` is made for it when none does). It must not be one of
    /// the event subjects. Without it, dead-lettered messages are terminated
    /// (left in the stream, never redelivered) and logged as errors.
    #[serde(default)]
    pub dead_letter_subject: Option<String>,
    /// Messages pulled per request (buffered locally while the pipeline is
    /// busy; their ack-wait runs meanwhile). Default 16.
    #[serde(default = "default_batch")]
    pub batch: usize,
}

fn default_consumer() -> String {
    "moat".into()
}
fn default_true() -> bool {
    true
}
fn default_ack_wait() -> u64 {
    60
}
fn default_max_deliver() -> u32 {
    5
}
fn default_batch() -> usize {
    16
}

impl NatsConfig {
    /// A configuration with the defaults for everything but URL and stream.
    pub fn new(url: &str, stream: &str) -> NatsConfig {
        NatsConfig {
            url: url.into(),
            stream: stream.into(),
            subjects: Vec::new(),
            consumer: default_consumer(),
            create: true,
            ack_wait_secs: default_ack_wait(),
            max_deliver: default_max_deliver(),
            dead_letter_subject: None,
            batch: default_batch(),
        }
    }
}

/// Does the NATS subject pattern `pattern` (with `*` and `>`) match `subject`?
fn subject_matches(pattern: &str, subject: &str) -> bool {
    let mut p = pattern.split('.');
    let mut s = subject.split('.');
    loop {
        match (p.next(), s.next()) {
            (Some(">"), Some(_)) => return true,
            (Some("*"), Some(_)) => {}
            (Some(a), Some(b)) if a == b => {}
            (None, None) => return true,
            _ => return false,
        }
    }
}

fn conn_err(detail: impl std::fmt::Display) -> SourceError {
    SourceError::Connection {
        source_name: NAME,
        detail: detail.to_string(),
    }
}

fn proto_err(detail: impl std::fmt::Display) -> SourceError {
    SourceError::Protocol {
        source_name: NAME,
        detail: detail.to_string(),
    }
}

/// A JetStream pull-consumer source (see the module docs).
pub struct NatsSource {
    cfg: NatsConfig,
    js: jetstream::Context,
    consumer: PullConsumer,
    messages: Option<jetstream::consumer::pull::Stream>,
    /// Consecutive failures, for backoff.
    failures: u32,
}

impl NatsSource {
    /// Connect, make the stream/consumer if `create`, and start pulling.
    pub async fn connect(cfg: &NatsConfig) -> Result<NatsSource, SourceError> {
        if cfg.batch == 0 || cfg.max_deliver == 0 || cfg.ack_wait_secs == 0 {
            return Err(proto_err(
                "batch, max_deliver and ack_wait_secs must be at least 1",
            ));
        }
        let subjects = if cfg.subjects.is_empty() {
            vec![cfg.stream.clone()]
        } else {
            cfg.subjects.clone()
        };
        if let Some(dl) = &cfg.dead_letter_subject
            && subjects.iter().any(|p| subject_matches(p, dl))
        {
            return Err(proto_err(format!(
                "dead_letter_subject {dl:?} is one of the event subjects {subjects:?}: dead letters would loop"
            )));
        }
        let client = async_nats::ConnectOptions::new()
            .name("moat")
            .connect(cfg.url.as_str())
            .await
            .map_err(|e| conn_err(format!("connect {}: {e}", cfg.url)))?;
        let js = jetstream::new(client);
        let stream = if cfg.create {
            js.get_or_create_stream(jetstream::stream::Config {
                name: cfg.stream.clone(),
                subjects,
                ..Default::default()
            })
            .await
            .map_err(|e| conn_err(format!("stream {}: {e}", cfg.stream)))?
        } else {
            js.get_stream(&cfg.stream)
                .await
                .map_err(|e| conn_err(format!("stream {}: {e}", cfg.stream)))?
        };
        let consumer: PullConsumer = if cfg.create {
            stream
                .get_or_create_consumer(
                    &cfg.consumer,
                    jetstream::consumer::pull::Config {
                        durable_name: Some(cfg.consumer.clone()),
                        ack_policy: jetstream::consumer::AckPolicy::Explicit,
                        ack_wait: Duration::from_secs(cfg.ack_wait_secs),
                        // moat counts deliveries and dead-letters itself.
                        max_deliver: -1,
                        ..Default::default()
                    },
                )
                .await
                .map_err(|e| conn_err(format!("consumer {}: {e}", cfg.consumer)))?
        } else {
            stream
                .get_consumer(&cfg.consumer)
                .await
                .map_err(|e| conn_err(format!("consumer {}: {e}", cfg.consumer)))?
        };
        if cfg.create
            && let Some(dl) = &cfg.dead_letter_subject
        {
            ensure_dead_letter_stream(&js, &cfg.stream, dl).await?;
        }
        Ok(NatsSource {
            cfg: cfg.clone(),
            js,
            consumer,
            messages: None,
            failures: 0,
        })
    }

    async fn backoff(&mut self) {
        self.failures = self.failures.saturating_add(1);
        let ms = 200u64.saturating_mul(1 << self.failures.min(6)).min(10_000);
        tokio::time::sleep(Duration::from_millis(ms)).await;
    }

    fn delivery(&self, msg: jetstream::Message, attempt: u32) -> NatsDelivery {
        NatsDelivery {
            msg,
            attempt,
            js: self.js.clone(),
            dead_letter_subject: self.cfg.dead_letter_subject.clone(),
        }
    }
}

/// With `create`, make sure some stream captures the dead-letter subject.
async fn ensure_dead_letter_stream(
    js: &jetstream::Context,
    stream: &str,
    subject: &str,
) -> Result<(), SourceError> {
    let captured = js
        .stream_by_subject(subject)
        .await
        .map(|_| true)
        .unwrap_or(false);
    if !captured {
        let name = format!("{stream}_DEAD");
        js.get_or_create_stream(jetstream::stream::Config {
            name: name.clone(),
            subjects: vec![subject.to_string()],
            ..Default::default()
        })
        .await
        .map_err(|e| conn_err(format!("dead-letter stream {name}: {e}")))?;
    }
    Ok(())
}

#[async_trait]
impl EventSource for NatsSource {
    fn name(&self) -> String {
        format!("nats:{}/{}", self.cfg.stream, self.cfg.consumer)
    }

    async fn next(&mut self) -> Result<Box<dyn Delivery>, SourceError> {
        loop {
            if self.messages.is_none() {
                match self
                    .consumer
                    .stream()
                    .max_messages_per_batch(self.cfg.batch)
                    .heartbeat(Duration::from_secs(5))
                    .expires(Duration::from_secs(30))
                    .messages()
                    .await
                {
                    Ok(s) => self.messages = Some(s),
                    Err(e) => {
                        self.backoff().await;
                        return Err(conn_err(format!("pull: {e}")));
                    }
                }
            }
            let Some(messages) = self.messages.as_mut() else {
                continue;
            };
            let msg = match messages.next().await {
                Some(Ok(m)) => m,
                Some(Err(e)) => {
                    // Missed heartbeats (a reconnect), a deleted consumer...:
                    // start a fresh pull after a pause.
                    self.messages = None;
                    self.backoff().await;
                    return Err(conn_err(format!("pull: {e}")));
                }
                None => {
                    self.messages = None;
                    self.backoff().await;
                    return Err(conn_err("pull stream ended; restarting"));
                }
            };
            self.failures = 0;
            let delivered = match msg.info() {
                Ok(info) => info.delivered,
                Err(e) => {
                    // Not a JetStream delivery (no ack subject): nothing to settle.
                    tracing::error!(error = %e, "nats message without JetStream metadata; skipped");
                    continue;
                }
            };
            let attempt = u32::try_from(delivered.max(1)).unwrap_or(u32::MAX);
            let delivery = self.delivery(msg, attempt);
            if attempt > self.cfg.max_deliver {
                let reason = format!(
                    "delivered {attempt} times (max_deliver {})",
                    self.cfg.max_deliver
                );
                tracing::warn!(source = %self.name(), %reason, "dead-lettering");
                if let Err(e) = Box::new(delivery).dead_letter(&reason).await {
                    tracing::error!(error = %e, "dead-lettering failed; the message stays and will come back");
                }
                continue;
            }
            return Ok(Box::new(delivery));
        }
    }
}

/// One JetStream message.
pub struct NatsDelivery {
    msg: jetstream::Message,
    attempt: u32,
    js: jetstream::Context,
    dead_letter_subject: Option<String>,
}

/// Header values may not contain CR/LF; keep the reason on one line.
pub(crate) fn header_safe(s: &str) -> String {
    s.chars()
        .map(|c| if c.is_control() { ' ' } else { c })
        .take(1024)
        .collect()
}

#[async_trait]
impl Delivery for NatsDelivery {
    fn payload(&self) -> &[u8] {
        &self.msg.payload
    }

    fn attempt(&self) -> u32 {
        self.attempt
    }

    fn source(&self) -> &'static str {
        NAME
    }

    async fn keep_alive(&self) -> Result<(), SourceError> {
        self.msg
            .ack_with(AckKind::Progress)
            .await
            .map_err(|e| conn_err(format!("in-progress ack: {e}")))
    }

    async fn ack(self: Box<Self>) -> Result<(), SourceError> {
        self.msg
            .double_ack()
            .await
            .map_err(|e| conn_err(format!("ack: {e}")))
    }

    async fn retry(self: Box<Self>, delay: Duration) -> Result<(), SourceError> {
        self.msg
            .ack_with(AckKind::Nak(Some(delay)))
            .await
            .map_err(|e| conn_err(format!("nak: {e}")))
    }

    async fn dead_letter(self: Box<Self>, reason: &str) -> Result<(), SourceError> {
        match &self.dead_letter_subject {
            Some(subject) => {
                let mut headers = async_nats::HeaderMap::new();
                headers.insert(REASON_HEADER, header_safe(reason).as_str());
                headers.insert(
                    ORIGINAL_SUBJECT_HEADER,
                    header_safe(self.msg.subject.as_str()).as_str(),
                );
                headers.insert(DELIVERED_HEADER, self.attempt.to_string().as_str());
                let ack = self
                    .js
                    .publish_with_headers(subject.clone(), headers, self.msg.payload.clone())
                    .await
                    .map_err(|e| conn_err(format!("dead-letter publish to {subject}: {e}")))?;
                ack.await
                    .map_err(|e| conn_err(format!("dead-letter publish to {subject}: {e}")))?;
            }
            None => {
                tracing::error!(
                    subject = %self.msg.subject,
                    %reason,
                    "nats: no dead_letter_subject configured; terminating the message (it stays in the stream, never redelivered)"
                );
            }
        }
        self.msg
            .double_ack_with(AckKind::Term)
            .await
            .map_err(|e| conn_err(format!("term: {e}")))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn subject_wildcards() {
        assert!(subject_matches("s3.events.>", "s3.events.a.b"));
        assert!(!subject_matches("s3.events.>", "s3.events"));
        assert!(subject_matches("s3.*.x", "s3.y.x"));
        assert!(!subject_matches("s3.*.x", "s3.y.z"));
        assert!(subject_matches("a.b", "a.b"));
        assert!(!subject_matches("a.b", "a.b.c"));
        assert!(!subject_matches("a.b.c", "a.b"));
    }

    #[test]
    fn config_defaults_and_unknown_keys() {
        let c: NatsConfig = serde_json::from_str(r#"{"url":"nats://h","stream":"S"}"#).unwrap();
        assert_eq!(c, NatsConfig::new("nats://h", "S"));
        assert_eq!((c.ack_wait_secs, c.max_deliver, c.batch), (60, 5, 16));
        assert!(
            serde_json::from_str::<NatsConfig>(r#"{"url":"nats://h","stream":"S","bogus":1}"#)
                .is_err()
        );
        assert_eq!(header_safe("a\r\nb"), "a  b");
    }
}
