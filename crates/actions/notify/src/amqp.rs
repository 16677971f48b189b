//! Publish results to an AMQP 0-9-1 exchange (RabbitMQ) with publisher
//! confirms.

use crate::{NotifyError, ResultMessage};
use lapin::options::{BasicPublishOptions, ConfirmSelectOptions, ExchangeDeclareOptions};
use lapin::types::FieldTable;
use lapin::{BasicProperties, Channel, Connection, ConnectionProperties, ExchangeKind};
use serde::{Deserialize, Serialize};
use tokio::sync::Mutex;

/// `[notify.amqp]`: publish each result to an exchange.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AmqpPublishConfig {
    /// `amqp://user:pass@host:5672/%2f` (or `amqps://`).
    pub url: String,
    /// Exchange to publish to (the empty string is the default exchange,
    /// where the routing key names a queue).
    pub exchange: String,
    /// Routing key of every message, e.g. `moat.results`.
    #[serde(default)]
    pub routing_key: String,
    /// Declare the exchange (type `topic`, durable) on connect. Default false.
    #[serde(default)]
    pub declare_exchange: bool,
}

struct Link {
    conn: Connection,
    channel: Channel,
}

/// A publisher on one confirm-mode channel. Messages are persistent
/// (delivery mode 2), `application/json`, with `message_id` = the result's
/// event id. `publish` returns once the broker confirmed (acked) the
/// message; a nack is an error. A broken channel or connection is replaced
/// on the next publish (one immediate reconnect attempt per publish).
pub struct AmqpPublisher {
    cfg: AmqpPublishConfig,
    link: Mutex<Option<Link>>,
}

fn amqp_err(what: &str) -> impl FnOnce(lapin::Error) -> NotifyError + '_ {
    move |e| NotifyError::Amqp(format!("{what}: {e}"))
}

impl AmqpPublisher {
    /// Connect, open a confirm channel and declare the exchange if asked.
    pub async fn connect(cfg: &AmqpPublishConfig) -> Result<AmqpPublisher, NotifyError> {
        let link = open_link(cfg).await?;
        Ok(AmqpPublisher {
            cfg: cfg.clone(),
            link: Mutex::new(Some(link)),
        })
    }

    /// Publish `msg` and wait for the broker's confirm.
    pub async fn publish(&self, msg: &ResultMessage) -> Result<(), NotifyError> {
        let body = serde_json::to_vec(msg)?;
        let id = msg.dedupe_id();
        let mut guard = self.link.lock().await;
        for attempt in 0..2 {
            let healthy = guard
                .as_ref()
                .is_some_and(|l| l.conn.status().connected() && l.channel.status().connected());
            if !healthy {
                if let Some(old) = guard.take() {
                    let _ = old.conn.close(320, "reconnecting".into()).await;
                }
                *guard = Some(open_link(&self.cfg).await?);
            }
            let Some(link) = guard.as_ref() else {
                return Err(NotifyError::Amqp("no channel".into()));
            };
            match publish_on(&link.channel, &self.cfg, &body, &id).await {
                Ok(()) => return Ok(()),
                Err(PublishFail::Nack) => {
                    return Err(NotifyError::Amqp(format!(
                        "broker nacked the message to exchange {:?}",
                        self.cfg.exchange
                    )));
                }
                Err(PublishFail::Broken(e)) => {
                    tracing::warn!(error = %e, attempt, "amqp publish failed; reopening the channel");
                    if let Some(old) = guard.take() {
                        let _ = old.conn.close(320, "reconnecting".into()).await;
                    }
                    if attempt == 1 {
                        return Err(NotifyError::Amqp(e.to_string()));
                    }
                }
            }
        }
        Err(NotifyError::Amqp("publish failed".into()))
    }
}

enum PublishFail {
    Nack,
    Broken(lapin::Error),
}

async fn publish_on(
    channel: &Channel,
    cfg: &AmqpPublishConfig,
    body: &[u8],
    id: &str,
) -> Result<(), PublishFail> {
    let props = BasicProperties::default()
        .with_delivery_mode(2)
        .with_content_type("application/json".into())
        .with_message_id(id.into());
    let confirm = channel
        .basic_publish(
            cfg.exchange.as_str().into(),
            cfg.routing_key.as_str().into(),
            BasicPublishOptions {
                mandatory: true,
                ..BasicPublishOptions::default()
            },
            body,
            props,
        )
        .await
        .map_err(PublishFail::Broken)?
        .await
        .map_err(PublishFail::Broken)?;
    if confirm.is_nack() {
        return Err(PublishFail::Nack);
    }
    if confirm.take_message().is_some() {
        // Acked but unroutable: no queue is bound for this routing key. That
        // is a deployment choice (nobody listens), not a failure to retry.
        tracing::warn!(exchange = %cfg.exchange, routing_key = %cfg.routing_key, "amqp result was unroutable (no queue bound)");
    }
    Ok(())
}

async fn open_link(cfg: &AmqpPublishConfig) -> Result<Link, NotifyError> {
    let conn = Connection::connect(&cfg.url, ConnectionProperties::default())
        .await
        .map_err(amqp_err("connect"))?;
    let channel = conn
        .create_channel()
        .await
        .map_err(amqp_err("open channel"))?;
    channel
        .confirm_select(ConfirmSelectOptions::default())
        .await
        .map_err(amqp_err("enable publisher confirms"))?;
    if cfg.declare_exchange && !cfg.exchange.is_empty() {
        channel
            .exchange_declare(
                cfg.exchange.as_str().into(),
                ExchangeKind::Topic,
                ExchangeDeclareOptions {
                    durable: true,
                    ..ExchangeDeclareOptions::default()
                },
                FieldTable::default(),
            )
            .await
            .map_err(amqp_err("declare exchange"))?;
    }
    Ok(Link { conn, channel })
}
