//! SQS source: long polling, visibility extension, delete on success.
//!
//! Settlement mapping: `ack` = DeleteMessage, `keep_alive` =
//! ChangeMessageVisibility(visibility_secs), `retry(delay)` =
//! ChangeMessageVisibility(delay) (the message reappears after `delay`),
//! `attempt` = ApproximateReceiveCount, `dead_letter(reason)` = SendMessage
//! of the same body to `dead_letter_queue_url` with the reason in the
//! `moat_dead_letter_reason` message attribute, then DeleteMessage. Without a
//! dead-letter queue the message is left in the queue, hidden for 12 hours,
//! for the queue's own redrive policy, and an error is logged. Messages
//! received more than `max_receive` times are dead-lettered by the source
//! before they reach the pipeline.

use crate::{Delivery, EventSource, SourceError};
use async_trait::async_trait;
use aws_sdk_sqs::Client;
use aws_sdk_sqs::types::{Message, MessageAttributeValue, MessageSystemAttributeName};
use serde::{Deserialize, Serialize};
use std::collections::VecDeque;
use std::time::Duration;

const NAME: &str = "sqs";
/// Message attribute carrying the dead-letter reason.
pub const REASON_ATTRIBUTE: &str = "moat_dead_letter_reason";
/// Message attribute carrying the source queue URL of a dead letter.
pub const ORIGINAL_QUEUE_ATTRIBUTE: &str = "moat_original_queue";
/// How long a message stays hidden when dead-lettered without a DLQ.
const PARK_SECS: i32 = 12 * 3600;

/// `[[bucket.sources.sqs]]`: consume S3 events from an SQS queue.
#[derive(Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SqsConfig {
    /// Queue URL, e.g. `https://sqs.eu-west-1.amazonaws.com/123456789012/s3-events`.
    pub queue_url: String,
    /// Custom endpoint (LocalStack, moto, ElasticMQ); default: AWS's.
    #[serde(default)]
    pub endpoint: Option<String>,
    /// Region. Default `us-east-1`.
    #[serde(default = "default_region")]
    pub region: String,
    /// Static credentials; when absent, the default AWS chain (environment,
    /// profile, web identity, instance metadata) is used.
    #[serde(default)]
    pub access_key_id: Option<String>,
    #[serde(default)]
    pub secret_access_key: Option<String>,
    /// Long-polling wait, 0–20 seconds. Default 20.
    #[serde(default = "default_wait")]
    pub wait_secs: u32,
    /// Visibility timeout set on receive and by each keep-alive, seconds.
    /// Default 60.
    #[serde(default = "default_visibility")]
    pub visibility_secs: u32,
    /// Receives after which a message is dead-lettered without being handed
    /// out again. Default 5.
    #[serde(default = "default_max_receive")]
    pub max_receive: u32,
    /// Queue dead letters are sent to (see the module docs when absent).
    #[serde(default)]
    pub dead_letter_queue_url: Option<String>,
    /// Messages per ReceiveMessage call, 1–10. Default 10.
    #[serde(default = "default_batch")]
    pub batch: u32,
}

impl std::fmt::Debug for SqsConfig {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SqsConfig")
            .field("queue_url", &self.queue_url)
            .field("endpoint", &self.endpoint)
            .field("region", &self.region)
            .field("access_key_id", &self.access_key_id)
            .field(
                "secret_access_key",
                &self.secret_access_key.as_ref().map(|_| "<redacted>"),
            )
            .field("wait_secs", &self.wait_secs)
            .field("visibility_secs", &self.visibility_secs)
            .field("max_receive", &self.max_receive)
            .field("dead_letter_queue_url", &self.dead_letter_queue_url)
            .field("batch", &self.batch)
            .finish()
    }
}

fn default_region() -> String {
    "us-east-1".into()
}
fn default_wait() -> u32 {
    20
}
fn default_visibility() -> u32 {
    60
}
fn default_max_receive() -> u32 {
    5
}
fn default_batch() -> u32 {
    10
}

impl SqsConfig {
    /// A configuration with the defaults for everything but the queue URL.
    pub fn new(queue_url: &str) -> SqsConfig {
        SqsConfig {
            queue_url: queue_url.into(),
            endpoint: None,
            region: default_region(),
            access_key_id: None,
            secret_access_key: None,
            wait_secs: default_wait(),
            visibility_secs: default_visibility(),
            max_receive: default_max_receive(),
            dead_letter_queue_url: None,
            batch: default_batch(),
        }
    }

    fn validate(&self) -> Result<(), SourceError> {
        let bad = |d: &str| {
            Err(SourceError::Protocol {
                source_name: NAME,
                detail: d.to_string(),
            })
        };
        if self.wait_secs > 20 {
            return bad("wait_secs must be at most 20");
        }
        if !(1..=10).contains(&self.batch) {
            return bad("batch must be 1 to 10");
        }
        if self.visibility_secs == 0 || self.visibility_secs > 43_200 {
            return bad("visibility_secs must be 1 to 43200");
        }
        if self.max_receive == 0 {
            return bad("max_receive must be at least 1");
        }
        if self.access_key_id.is_some() != self.secret_access_key.is_some() {
            return bad("access_key_id and secret_access_key go together");
        }
        Ok(())
    }
}

/// Build an SQS client from the config (shared by the source and tests).
pub async fn client(cfg: &SqsConfig) -> Client {
    let mut loader = aws_config::defaults(aws_config::BehaviorVersion::latest())
        .region(aws_config::Region::new(cfg.region.clone()));
    if let Some(ep) = &cfg.endpoint {
        loader = loader.endpoint_url(ep);
    }
    if let (Some(ak), Some(sk)) = (&cfg.access_key_id, &cfg.secret_access_key) {
        loader = loader.credentials_provider(aws_sdk_sqs::config::Credentials::new(
            ak.clone(),
            sk.clone(),
            None,
            None,
            "moat-config",
        ));
    }
    Client::new(&loader.load().await)
}

fn conn_err(detail: impl std::fmt::Display) -> SourceError {
    SourceError::Connection {
        source_name: NAME,
        detail: detail.to_string(),
    }
}

/// Full error chain of an SDK error (the top level is often just "service error").
fn chain(e: &(dyn std::error::Error + 'static)) -> String {
    let mut s = e.to_string();
    let mut src = e.source();
    while let Some(c) = src {
        s.push_str(": ");
        s.push_str(&c.to_string());
        src = c.source();
    }
    s
}

/// An SQS long-polling source (see the module docs).
pub struct SqsSource {
    cfg: SqsConfig,
    client: Client,
    buffer: VecDeque<Message>,
    failures: u32,
}

impl SqsSource {
    /// Build the client and check the queue is reachable (GetQueueAttributes).
    pub async fn connect(cfg: &SqsConfig) -> Result<SqsSource, SourceError> {
        cfg.validate()?;
        let client = client(cfg).await;
        client
            .get_queue_attributes()
            .queue_url(&cfg.queue_url)
            .attribute_names(aws_sdk_sqs::types::QueueAttributeName::QueueArn)
            .send()
            .await
            .map_err(|e| conn_err(format!("queue {}: {}", cfg.queue_url, chain(&e))))?;
        Ok(SqsSource {
            cfg: cfg.clone(),
            client,
            buffer: VecDeque::new(),
            failures: 0,
        })
    }

    async fn receive(&mut self) -> Result<(), SourceError> {
        let out = self
            .client
            .receive_message()
            .queue_url(&self.cfg.queue_url)
            .max_number_of_messages(self.cfg.batch as i32)
            .wait_time_seconds(self.cfg.wait_secs as i32)
            .visibility_timeout(self.cfg.visibility_secs as i32)
            .message_system_attribute_names(MessageSystemAttributeName::ApproximateReceiveCount)
            .send()
            .await
            .map_err(|e| conn_err(format!("receive: {}", chain(&e))))?;
        self.buffer.extend(out.messages.unwrap_or_default());
        Ok(())
    }
}

#[async_trait]
impl EventSource for SqsSource {
    fn name(&self) -> String {
        format!("sqs:{}", self.cfg.queue_url)
    }

    async fn next(&mut self) -> Result<Box<dyn Delivery>, SourceError> {
        loop {
            let Some(msg) = self.buffer.pop_front() else {
                if let Err(e) = self.receive().await {
                    self.failures = self.failures.saturating_add(1);
                    let ms = 200u64.saturating_mul(1 << self.failures.min(6)).min(10_000);
                    tokio::time::sleep(Duration::from_millis(ms)).await;
                    return Err(e);
                }
                self.failures = 0;
                continue;
            };
            let Some(receipt) = msg.receipt_handle().map(str::to_string) else {
                tracing::error!("sqs message without a receipt handle; skipped");
                continue;
            };
            let attempt = msg
                .attributes()
                .and_then(|a| a.get(&MessageSystemAttributeName::ApproximateReceiveCount))
                .and_then(|v| v.parse::<u32>().ok())
                .unwrap_or(1)
                .max(1);
            let delivery = SqsDelivery {
                body: msg.body.unwrap_or_default(),
                receipt,
                attempt,
                client: self.client.clone(),
                queue_url: self.cfg.queue_url.clone(),
                dead_letter_queue_url: self.cfg.dead_letter_queue_url.clone(),
                visibility_secs: self.cfg.visibility_secs,
            };
            if attempt > self.cfg.max_receive {
                let reason = format!(
                    "received {attempt} times (max_receive {})",
                    self.cfg.max_receive
                );
                tracing::warn!(source = %self.name(), %reason, "dead-lettering");
                if let Err(e) = Box::new(delivery).dead_letter(&reason).await {
                    tracing::error!(error = %e, "dead-lettering failed; the message will come back");
                }
                continue;
            }
            return Ok(Box::new(delivery));
        }
    }
}

/// One SQS message.
pub struct SqsDelivery {
    body: String,
    receipt: String,
    attempt: u32,
    client: Client,
    queue_url: String,
    dead_letter_queue_url: Option<String>,
    visibility_secs: u32,
}

impl SqsDelivery {
    async fn set_visibility(&self, secs: i32) -> Result<(), SourceError> {
        self.client
            .change_message_visibility()
            .queue_url(&self.queue_url)
            .receipt_handle(&self.receipt)
            .visibility_timeout(secs)
            .send()
            .await
            .map_err(|e| conn_err(format!("change visibility: {}", chain(&e))))?;
        Ok(())
    }

    async fn delete(&self) -> Result<(), SourceError> {
        self.client
            .delete_message()
            .queue_url(&self.queue_url)
            .receipt_handle(&self.receipt)
            .send()
            .await
            .map_err(|e| conn_err(format!("delete: {}", chain(&e))))?;
        Ok(())
    }
}

fn string_attr(v: &str) -> Result<MessageAttributeValue, SourceError> {
    MessageAttributeValue::builder()
        .data_type("String")
        .string_value(v)
        .build()
        .map_err(|e| SourceError::Protocol {
            source_name: NAME,
            detail: format!("message attribute: {e}"),
        })
}

#[async_trait]
impl Delivery for SqsDelivery {
    fn payload(&self) -> &[u8] {
        self.body.as_bytes()
    }

    fn attempt(&self) -> u32 {
        self.attempt
    }

    fn source(&self) -> &'static str {
        NAME
    }

    async fn keep_alive(&self) -> Result<(), SourceError> {
        self.set_visibility(self.visibility_secs as i32).await
    }

    async fn ack(self: Box<Self>) -> Result<(), SourceError> {
        self.delete().await
    }

    async fn retry(self: Box<Self>, delay: Duration) -> Result<(), SourceError> {
        let secs = delay.as_secs().min(43_200) as i32;
        self.set_visibility(secs).await
    }

    async fn dead_letter(self: Box<Self>, reason: &str) -> Result<(), SourceError> {
        let Some(dlq) = &self.dead_letter_queue_url else {
            tracing::error!(
                queue = %self.queue_url,
                %reason,
                "sqs: no dead_letter_queue_url configured; leaving the message hidden for 12 h for the queue's redrive policy"
            );
            return self.set_visibility(PARK_SECS).await;
        };
        // Attribute values are limited (256 KiB for the whole message); a
        // reason is short, but cap it anyway.
        let reason: String = reason.chars().take(1024).collect();
        self.client
            .send_message()
            .queue_url(dlq)
            .message_body(&self.body)
            .message_attributes(REASON_ATTRIBUTE, string_attr(&reason)?)
            .message_attributes(ORIGINAL_QUEUE_ATTRIBUTE, string_attr(&self.queue_url)?)
            .send()
            .await
            .map_err(|e| conn_err(format!("send to dead-letter queue {dlq}: {}", chain(&e))))?;
        self.delete().await
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn config_defaults_validation_and_redaction() {
        let c: SqsConfig = serde_json::from_str(r#"{"queue_url":"http://q"}"#).unwrap();
        assert_eq!(c, SqsConfig::new("http://q"));
        assert!(c.validate().is_ok());
        assert!(serde_json::from_str::<SqsConfig>(r#"{"queue_url":"q","x":1}"#).is_err());
        let long = SqsConfig {
            wait_secs: 21,
            ..SqsConfig::new("q")
        };
        assert!(long.validate().is_err());
        let half = SqsConfig {
            access_key_id: Some("a".into()),
            ..SqsConfig::new("q")
        };
        assert!(half.validate().is_err());
        let secret = SqsConfig {
            access_key_id: Some("a".into()),
            secret_access_key: Some("hunter2".into()),
            ..SqsConfig::new("q")
        };
        assert!(!format!("{secret:?}").contains("hunter2"));
    }
}
