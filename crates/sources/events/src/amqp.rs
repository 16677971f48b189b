//! RabbitMQ (AMQP 0-9-1) source.
//!
//! * Connects by URL, optionally declares the queue (durable; classic or
//!   quorum) and binds it to an exchange (declared if missing) with a routing
//!   key.
//! * Manual acknowledgements, `basic.qos` prefetch = the scan concurrency.
//! * Reconnects with exponential backoff (0.5 s … 30 s) when the connection or
//!   the consumer ends.
//! * Retries: on a classic queue the message is republished to the queue with
//!   an `x-moat-attempt` header (publisher confirms) and only then acked, so a
//!   crash in between duplicates it rather than losing it; on a quorum queue it
//!   is nacked with requeue and the broker's `x-delivery-count` is the count.
//! * Dead letters: published (with confirms) to the dead-letter exchange
//!   (`<queue>.dlx` by default, fanout, durable) with `x-moat-reason` and
//!   `x-moat-attempts` headers, which routes to `<queue>.dead`; then acked.

use crate::{Delivery, EventSource, SourceError};
use async_trait::async_trait;
use futures_lite::StreamExt;
use lapin::options::{
    BasicAckOptions, BasicConsumeOptions, BasicNackOptions, BasicPublishOptions, BasicQosOptions,
    ConfirmSelectOptions, ExchangeDeclareOptions, QueueBindOptions, QueueDeclareOptions,
};
use lapin::types::{AMQPValue, FieldTable, LongString, ShortString};
use lapin::{Channel, Connection, ConnectionProperties, ExchangeKind};
use serde::Deserialize;
use std::sync::Arc;
use std::time::Duration;

const NAME: &str = "amqp";
/// Header moat keeps the attempt count in (classic queues).
pub const ATTEMPT_HEADER: &str = "x-moat-attempt";
pub const REASON_HEADER: &str = "x-moat-reason";

/// `[[bucket.sources]] type = "amqp"`.
#[derive(Debug, Clone, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct AmqpConfig {
    /// `amqp://user:pass@host:5672/%2f`
    pub url: String,
    pub queue: String,
    /// Declare the queue (durable) if missing. Default true.
    #[serde(default = "yes")]
    pub declare: bool,
    /// Declare the queue as a quorum queue (retries use `x-delivery-count`).
    #[serde(default)]
    pub quorum: bool,
    /// Bind the queue to this exchange (declared durable if missing).
    #[serde(default)]
    pub exchange: Option<String>,
    /// `topic` (default), `direct`, `fanout` or `headers`.
    #[serde(default = "topic")]
    pub exchange_type: String,
    /// Binding key. Default `#`.
    #[serde(default = "hash")]
    pub routing_key: String,
    /// Dead-letter exchange. Default `<queue>.dlx`.
    #[serde(default)]
    pub dead_letter_exchange: Option<String>,
    /// Queue bound to the dead-letter exchange. Default `<queue>.dead`.
    #[serde(default)]
    pub dead_letter_queue: Option<String>,
    /// Prefetch; the bucket role sets it to the scan concurrency when 0.
    #[serde(default)]
    pub prefetch: u16,
}

fn yes() -> bool {
    true
}
fn topic() -> String {
    "topic".into()
}
fn hash() -> String {
    "#".into()
}

impl AmqpConfig {
    pub fn new(url: &str, queue: &str) -> AmqpConfig {
        AmqpConfig {
            url: url.into(),
            queue: queue.into(),
            declare: true,
            quorum: false,
            exchange: None,
            exchange_type: topic(),
            routing_key: hash(),
            dead_letter_exchange: None,
            dead_letter_queue: None,
            prefetch: 0,
        }
    }
    pub fn dlx(&self) -> String {
        self.dead_letter_exchange
            .clone()
            .unwrap_or_else(|| format!("{}.dlx", self.queue))
    }
    pub fn dlq(&self) -> String {
        self.dead_letter_queue
            .clone()
            .unwrap_or_else(|| format!("{}.dead", self.queue))
    }
    fn kind(&self) -> Result<ExchangeKind, SourceError> {
        Ok(match self.exchange_type.as_str() {
            "topic" => ExchangeKind::Topic,
            "direct" => ExchangeKind::Direct,
            "fanout" => ExchangeKind::Fanout,
            "headers" => ExchangeKind::Headers,
            other => {
                return Err(SourceError::Protocol {
                    source_name: NAME,
                    detail: format!("unknown exchange_type {other:?}"),
                });
            }
        })
    }
}

fn conn_err(e: impl std::fmt::Display) -> SourceError {
    SourceError::Connection {
        source_name: NAME,
        detail: e.to_string(),
    }
}

/// Shared by the source and its deliveries.
struct Link {
    /// Kept so the consuming channel lives as long as its deliveries.
    _consume: Channel,
    /// Confirm-mode channel for retries and dead letters.
    publish: Channel,
    _conn: Connection,
}

pub struct AmqpSource {
    cfg: AmqpConfig,
    link: Option<(Arc<Link>, lapin::Consumer)>,
    backoff: Duration,
}

impl AmqpSource {
    /// Connect and set up the topology now, so configuration errors show at
    /// start-up. Later connection losses are retried inside [`EventSource::next`].
    pub async fn connect(cfg: AmqpConfig) -> Result<AmqpSource, SourceError> {
        cfg.kind()?;
        let mut s = AmqpSource {
            cfg,
            link: None,
            backoff: Duration::from_millis(500),
        };
        s.link = Some(s.setup().await?);
        Ok(s)
    }

    async fn setup(&self) -> Result<(Arc<Link>, lapin::Consumer), SourceError> {
        let c = &self.cfg;
        let (conn, publish) = connect_confirming(&c.url).await.map_err(conn_err)?;
        let consume = conn.create_channel().await.map_err(conn_err)?;
        if c.declare {
            let mut args = FieldTable::default();
            if c.quorum {
                args.insert(
                    "x-queue-type".into(),
                    AMQPValue::LongString("quorum".into()),
                );
            }
            consume
                .queue_declare(
                    c.queue.as_str().into(),
                    QueueDeclareOptions::durable(),
                    args,
                )
                .await
                .map_err(conn_err)?;
        }
        if let Some(ex) = &c.exchange {
            consume
                .exchange_declare(
                    ex.as_str().into(),
                    c.kind()?,
                    ExchangeDeclareOptions {
                        durable: true,
                        ..Default::default()
                    },
                    FieldTable::default(),
                )
                .await
                .map_err(conn_err)?;
            consume
                .queue_bind(
                    c.queue.as_str().into(),
                    ex.as_str().into(),
                    c.routing_key.as_str().into(),
                    QueueBindOptions::default(),
                    FieldTable::default(),
                )
                .await
                .map_err(conn_err)?;
        }
        let (dlx, dlq) = (c.dlx(), c.dlq());
        consume
            .exchange_declare(
                dlx.as_str().into(),
                ExchangeKind::Fanout,
                ExchangeDeclareOptions {
                    durable: true,
                    ..Default::default()
                },
                FieldTable::default(),
            )
            .await
            .map_err(conn_err)?;
        consume
            .queue_declare(
                dlq.as_str().into(),
                QueueDeclareOptions::durable(),
                FieldTable::default(),
            )
            .await
            .map_err(conn_err)?;
        consume
            .queue_bind(
                dlq.as_str().into(),
                dlx.as_str().into(),
                "".into(),
                QueueBindOptions::default(),
                FieldTable::default(),
            )
            .await
            .map_err(conn_err)?;
        consume
            .basic_qos(c.prefetch.max(1), BasicQosOptions::default())
            .await
            .map_err(conn_err)?;
        let consumer = consume
            .basic_consume(
                c.queue.as_str().into(),
                "moat".into(),
                BasicConsumeOptions::default(),
                FieldTable::default(),
            )
            .await
            .map_err(conn_err)?;
        tracing::info!(queue = %c.queue, exchange = ?c.exchange, routing_key = %c.routing_key,
            prefetch = c.prefetch.max(1), dead_letter = %dlq, "amqp source connected");
        Ok((
            Arc::new(Link {
                _consume: consume,
                publish,
                _conn: conn,
            }),
            consumer,
        ))
    }
}

#[async_trait]
impl EventSource for AmqpSource {
    fn name(&self) -> String {
        format!("amqp:{}", self.cfg.queue)
    }

    async fn next(&mut self) -> Result<Box<dyn Delivery>, SourceError> {
        loop {
            if self.link.is_none() {
                match self.setup().await {
                    Ok(l) => {
                        self.link = Some(l);
                        self.backoff = Duration::from_millis(500);
                    }
                    Err(e) => {
                        tracing::warn!(error = %e, retry_in = ?self.backoff, "amqp: reconnect failed");
                        tokio::time::sleep(self.backoff).await;
                        self.backoff = (self.backoff * 2).min(Duration::from_secs(30));
                        continue;
                    }
                }
            }
            let Some((link, consumer)) = self.link.as_mut() else {
                continue;
            };
            match consumer.next().await {
                Some(Ok(d)) => {
                    let attempt = attempt_of(&d, self.cfg.quorum);
                    return Ok(Box::new(AmqpDelivery {
                        link: link.clone(),
                        d,
                        attempt,
                        queue: self.cfg.queue.clone(),
                        dlx: self.cfg.dlx(),
                        quorum: self.cfg.quorum,
                    }));
                }
                Some(Err(e)) => {
                    tracing::warn!(error = %e, "amqp: consumer failed; reconnecting");
                    self.link = None;
                }
                None => {
                    tracing::warn!("amqp: consumer ended; reconnecting");
                    self.link = None;
                }
            }
        }
    }
}

/// Why a confirmed publish did not go through.
#[derive(Debug, thiserror::Error)]
pub(crate) enum Published {
    #[error("publishing: {0}")]
    Failed(lapin::Error),
    #[error("the broker refused the message for {0}")]
    Refused(String),
}

/// Publish on a confirm-mode channel and wait for the broker's confirm: the
/// message is stored (persistent with `delivery_mode` 2) when this returns Ok.
/// Shared by the bucket source's retries and dead letters and the portal's
/// work queue ([`crate::queue::amqp`]).
pub(crate) async fn publish_confirmed(
    ch: &Channel,
    exchange: &str,
    routing_key: &str,
    data: &[u8],
    props: lapin::BasicProperties,
) -> Result<(), Published> {
    let confirm = ch
        .basic_publish(
            ShortString::from(exchange),
            ShortString::from(routing_key),
            BasicPublishOptions::default(),
            data,
            props,
        )
        .await
        .map_err(Published::Failed)?
        .await
        .map_err(Published::Failed)?;
    if !confirm.is_ack() {
        return Err(Published::Refused(format!("{exchange:?}/{routing_key:?}")));
    }
    Ok(())
}

/// Connect and open a channel in confirm mode.
pub(crate) async fn connect_confirming(url: &str) -> Result<(Connection, Channel), lapin::Error> {
    let conn = Connection::connect(url, ConnectionProperties::default()).await?;
    let ch = conn.create_channel().await?;
    ch.confirm_select(ConfirmSelectOptions::default()).await?;
    Ok((conn, ch))
}

pub(crate) fn header_i64(h: &FieldTable, name: &str) -> Option<i64> {
    match h.inner().get(name)? {
        AMQPValue::LongLongInt(v) => Some(*v),
        AMQPValue::LongInt(v) => Some(i64::from(*v)),
        AMQPValue::LongUInt(v) => Some(i64::from(*v)),
        AMQPValue::ShortInt(v) => Some(i64::from(*v)),
        AMQPValue::ShortUInt(v) => Some(i64::from(*v)),
        AMQPValue::ShortShortInt(v) => Some(i64::from(*v)),
        AMQPValue::ShortShortUInt(v) => Some(i64::from(*v)),
        AMQPValue::LongString(s) => std::str::from_utf8(s.as_bytes()).ok()?.parse().ok(),
        _ => None,
    }
}

pub(crate) fn header_str(h: &FieldTable, name: &str) -> Option<String> {
    match h.inner().get(name)? {
        AMQPValue::LongString(s) => Some(String::from_utf8_lossy(s.as_bytes()).into_owned()),
        AMQPValue::ShortString(s) => Some(s.as_str().to_string()),
        _ => None,
    }
}

fn header_u32(h: &FieldTable, name: &str) -> Option<u32> {
    header_i64(h, name).and_then(|v| u32::try_from(v).ok())
}

fn attempt_of(d: &lapin::message::Delivery, quorum: bool) -> u32 {
    let h = d.properties.headers().clone().unwrap_or_default();
    let moat = header_u32(&h, ATTEMPT_HEADER).unwrap_or(1).max(1);
    if quorum {
        // x-delivery-count counts earlier deliveries (absent on the first).
        let broker = header_u32(&h, "x-delivery-count")
            .unwrap_or(0)
            .saturating_add(1);
        moat.max(broker)
    } else {
        moat
    }
}

pub struct AmqpDelivery {
    link: Arc<Link>,
    d: lapin::message::Delivery,
    attempt: u32,
    queue: String,
    dlx: String,
    quorum: bool,
}

impl AmqpDelivery {
    async fn publish_confirmed(
        &self,
        exchange: &str,
        routing_key: &str,
        headers: FieldTable,
    ) -> Result<(), SourceError> {
        let props = self
            .d
            .properties
            .clone()
            .with_headers(headers)
            .with_delivery_mode(2);
        publish_confirmed(
            &self.link.publish,
            exchange,
            routing_key,
            &self.d.data,
            props,
        )
        .await
        .map_err(|e| match e {
            Published::Failed(e) => conn_err(e),
            refused @ Published::Refused(_) => SourceError::Protocol {
                source_name: NAME,
                detail: refused.to_string(),
            },
        })
    }

    fn headers(&self) -> FieldTable {
        self.d.properties.headers().clone().unwrap_or_default()
    }

    async fn ack_now(&self) -> Result<(), SourceError> {
        self.d
            .acker
            .ack(BasicAckOptions::default())
            .await
            .map(|_| ())
            .map_err(conn_err)
    }
}

#[async_trait]
impl Delivery for AmqpDelivery {
    fn payload(&self) -> &[u8] {
        &self.d.data
    }
    fn attempt(&self) -> u32 {
        self.attempt
    }
    fn source(&self) -> &'static str {
        NAME
    }
    async fn keep_alive(&self) -> Result<(), SourceError> {
        // An unacked AMQP message stays with this consumer while the channel lives.
        Ok(())
    }
    async fn ack(self: Box<Self>) -> Result<(), SourceError> {
        self.ack_now().await
    }
    async fn retry(self: Box<Self>, delay: Duration) -> Result<(), SourceError> {
        // The message stays unacked (and safe with the broker) during the delay.
        tokio::time::sleep(delay).await;
        if self.quorum {
            return self
                .d
                .acker
                .nack(BasicNackOptions {
                    requeue: true,
                    ..Default::default()
                })
                .await
                .map(|_| ())
                .map_err(conn_err);
        }
        let mut h = self.headers();
        h.insert(
            ATTEMPT_HEADER.into(),
            AMQPValue::LongLongInt(i64::from(self.attempt) + 1),
        );
        self.publish_confirmed("", &self.queue, h).await?;
        self.ack_now().await
    }
    async fn dead_letter(self: Box<Self>, reason: &str) -> Result<(), SourceError> {
        let mut h = self.headers();
        let reason: String = reason.chars().take(1000).collect();
        h.insert(
            REASON_HEADER.into(),
            AMQPValue::LongString(LongString::from(reason.as_str())),
        );
        h.insert(
            "x-moat-attempts".into(),
            AMQPValue::LongLongInt(i64::from(self.attempt)),
        );
        h.insert(
            "x-moat-queue".into(),
            AMQPValue::LongString(LongString::from(self.queue.as_str())),
        );
        self.publish_confirmed(&self.dlx, &self.queue, h).await?;
        self.ack_now().await
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn config_defaults() {
        let c: AmqpConfig = serde_json::from_str(r#"{"url":"amqp://x","queue":"q"}"#).unwrap();
        assert_eq!(c, AmqpConfig::new("amqp://x", "q"));
        assert_eq!(c.dlx(), "q.dlx");
        assert_eq!(c.dlq(), "q.dead");
        assert!(
            serde_json::from_str::<AmqpConfig>(r#"{"url":"amqp://x","queue":"q","qeue":1}"#)
                .is_err()
        );
        let mut c = c;
        c.exchange_type = "bogus".into();
        assert!(c.kind().is_err());
    }

    #[test]
    fn attempt_headers() {
        let mut h = FieldTable::default();
        assert_eq!(header_u32(&h, ATTEMPT_HEADER), None);
        h.insert(ATTEMPT_HEADER.into(), AMQPValue::LongLongInt(3));
        assert_eq!(header_u32(&h, ATTEMPT_HEADER), Some(3));
        h.insert(ATTEMPT_HEADER.into(), AMQPValue::LongLongInt(-3));
        assert_eq!(header_u32(&h, ATTEMPT_HEADER), None);
        h.insert("x-delivery-count".into(), AMQPValue::LongString("2".into()));
        assert_eq!(header_u32(&h, "x-delivery-count"), Some(2));
    }
}
