//! Publish results to a NATS subject, optionally through JetStream.

use crate::{NotifyError, ResultMessage};
use serde::{Deserialize, Serialize};

/// `[notify.nats]`: publish each result to a subject.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct NatsPublishConfig {
    /// `nats://host:4222` (comma-separated for several servers).
    pub url: String,
    /// Subject of every message, e.g. `moat.results`.
    pub subject: String,
    /// Publish through JetStream and wait for the stream's ack (a stream must
    /// capture the subject). Default false: core NATS, flushed to the server.
    #[serde(default)]
    pub jetstream: bool,
}

/// A NATS publisher. async-nats reconnects on its own; a publish during an
/// outage waits for the reconnect or fails with a timeout (JetStream ack).
/// Each message carries `Nats-Msg-Id` = the result's event id, so a
/// JetStream stream's duplicate window drops re-sends.
pub struct NatsPublisher {
    cfg: NatsPublishConfig,
    client: async_nats::Client,
    js: Option<async_nats::jetstream::Context>,
}

impl NatsPublisher {
    pub async fn connect(cfg: &NatsPublishConfig) -> Result<NatsPublisher, NotifyError> {
        let client = async_nats::connect(cfg.url.as_str())
            .await
            .map_err(|e| NotifyError::Nats(format!("connect {}: {e}", cfg.url)))?;
        let js = cfg
            .jetstream
            .then(|| async_nats::jetstream::new(client.clone()));
        Ok(NatsPublisher {
            cfg: cfg.clone(),
            client,
            js,
        })
    }

    /// Publish `msg`; with JetStream, returns once the stream acked it.
    pub async fn publish(&self, msg: &ResultMessage) -> Result<(), NotifyError> {
        let body = serde_json::to_vec(msg)?;
        let mut headers = async_nats::HeaderMap::new();
        headers.insert("Nats-Msg-Id", msg.dedupe_id().as_str());
        headers.insert("Content-Type", "application/json");
        let subject = self.cfg.subject.clone();
        match &self.js {
            Some(js) => {
                let ack = js
                    .publish_with_headers(subject, headers, body.into())
                    .await
                    .map_err(|e| NotifyError::Nats(format!("jetstream publish: {e}")))?;
                ack.await
                    .map_err(|e| NotifyError::Nats(format!("jetstream ack: {e}")))?;
            }
            None => {
                self.client
                    .publish_with_headers(subject, headers, body.into())
                    .await
                    .map_err(|e| NotifyError::Nats(format!("publish: {e}")))?;
                self.client
                    .flush()
                    .await
                    .map_err(|e| NotifyError::Nats(format!("flush: {e}")))?;
            }
        }
        Ok(())
    }
}
