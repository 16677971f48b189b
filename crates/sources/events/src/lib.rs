//! moat-events: where bucket events come from.
//!
//! An [`EventSource`] (RabbitMQ, NATS JetStream, SQS, the webhook's durable
//! queue) hands out [`Delivery`] values. The bucket pipeline settles each one
//! exactly once: [`Delivery::ack`] after the verdict is recorded and every
//! action succeeded, [`Delivery::retry`] when it should be tried again later,
//! [`Delivery::dead_letter`] when it must be moved aside for good (malformed,
//! or too many failed attempts). Dropping a delivery unsettled leaves it with
//! the broker, which redelivers it: a crash never loses an event.
#![forbid(unsafe_code)]

pub mod nats;
pub mod queue;
pub mod sqs;
pub mod webhook;

use async_trait::async_trait;
use std::time::Duration;

/// A source failure. `Closed` means the source will never yield again.
#[derive(Debug, thiserror::Error)]
pub enum SourceError {
    #[error("{source_name}: connection: {detail}")]
    Connection {
        source_name: &'static str,
        detail: String,
    },
    #[error("{source_name}: {detail}")]
    Protocol {
        source_name: &'static str,
        detail: String,
    },
    #[error("{0}: source closed")]
    Closed(&'static str),
}

/// One message from a source, to be settled exactly once.
#[async_trait]
pub trait Delivery: Send + Sync {
    /// The raw message body (an S3 event notification, in principle).
    fn payload(&self) -> &[u8];
    /// 1 on the first delivery, higher on redeliveries, as far as the source
    /// can tell (broker delivery counts, or an attempt header moat keeps).
    fn attempt(&self) -> u32;
    /// Short source kind for logs and metrics: `amqp`, `nats`, `sqs`, `webhook`.
    fn source(&self) -> &'static str;
    /// Keep the message leased while a long scan runs (NATS in-progress,
    /// SQS visibility extension). A no-op where the broker needs nothing.
    async fn keep_alive(&self) -> Result<(), SourceError>;
    /// Done: the verdict is recorded and all actions succeeded.
    async fn ack(self: Box<Self>) -> Result<(), SourceError>;
    /// Give it back to be delivered again, not before `delay` where the source
    /// supports delays. The next delivery's `attempt()` is one higher.
    async fn retry(self: Box<Self>, delay: Duration) -> Result<(), SourceError>;
    /// Move it aside for good (dead-letter exchange, subject, queue or table)
    /// with the reason attached, then settle it.
    async fn dead_letter(self: Box<Self>, reason: &str) -> Result<(), SourceError>;
}

/// A stream of deliveries. Implementations reconnect with backoff on their
/// own; `next` returns an error only for what the caller should log, and
/// `SourceError::Closed` once shut down.
#[async_trait]
pub trait EventSource: Send {
    /// A name for logs, e.g. `amqp:moat-events`.
    fn name(&self) -> String;
    async fn next(&mut self) -> Result<Box<dyn Delivery>, SourceError>;
}

pub mod amqp;
pub mod event;
