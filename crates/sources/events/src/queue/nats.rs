//! [`EventQueue`] on NATS JetStream.
//!
//! For a queue name `q` (with the configured prefix `p`, so the subject is
//! `pq`):
//!
//! * a work-queue stream (`pq` with `.` → `_`, retention `workqueue`, file
//!   storage) on the subject `pq`, and one durable pull consumer `moat`
//!   (explicit acks, no delivery limit) shared by every node.
//!   [`EventQueue::enqueue`] publishes with `Nats-Msg-Id` = the job id and
//!   returns once JetStream acknowledged the write.
//! * The consumer's `ack_wait` is the lease: set from the first
//!   [`EventQueue::lease`] on that queue when the consumer is created (15
//!   min if this process enqueues on it before it ever leases). A
//!   holder that dies is thus replaced after `ack_wait`; a lease shorter than
//!   that is handed back early (`nak`) by a timer in the live process, and
//!   [`EventQueue::extend`] sends `in_progress` (the server restarts
//!   `ack_wait`) and re-arms the timer.
//! * retry = `nak` with the delay; attempts = JetStream's delivery count.
//! * dead = publish to `pq.dead.<uuid>` (a limits stream `<stream>_dead`)
//!   with `Moat-Dead-Letter-Reason`, then `term`; the reason is read back by
//!   subject.
//!
//! Counts come from the consumer (waiting = `num_pending`, in flight =
//! `num_ack_pending`, which includes jobs waiting out a retry delay, on every
//! node) and the dead-letter stream; the oldest job is the work stream's
//! first message.

use super::lock;
use crate::nats::{REASON_HEADER, header_safe};
use async_nats::jetstream::{self, AckKind, consumer::PullConsumer};
use async_trait::async_trait;
use futures_util::StreamExt;
use moat_db::{DbError, EventQueue, QueueStats, QueuedEvent};
use std::collections::{BTreeSet, HashMap};
use std::sync::{Arc, Mutex, Weak};
use std::time::Duration;

const ENQUEUED_HEADER: &str = "Moat-Enqueued-At";
const CONSUMER: &str = "moat";
/// A pull that gets no answer in this long is made again, up to
/// [`FETCH_ATTEMPTS`] pulls; then the lease fails (the caller tries again).
/// A loaded server (seen with several test suites sharing two cores) can
/// leave one pull unanswered while answering the next.
const FETCH_TIMEOUT: Duration = Duration::from_secs(10);
const FETCH_ATTEMPTS: u32 = 3;

fn broker(op: &'static str) -> impl Fn(String) -> DbError {
    move |detail| DbError::Broker { op, detail }
}

fn now_ms() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| i64::try_from(d.as_millis()).unwrap_or(i64::MAX))
        .unwrap_or(0)
}

/// A stream name for a subject: `.` and anything else not allowed → `_`.
pub fn stream_name(subject: &str) -> String {
    subject
        .chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() || c == '-' || c == '_' {
                c
            } else {
                '_'
            }
        })
        .collect()
}

/// `(uuid, queue)` of a job id `<uuid>@<queue>`.
fn parse_id(id: &str) -> Option<(&str, &str)> {
    id.split_once('@')
        .filter(|(u, q)| !u.is_empty() && !q.is_empty())
}

struct Topo {
    /// One pull request at a time per queue in this process: concurrent
    /// no-wait fetches on one consumer can stall (seen with 4 leasers).
    fetching: tokio::sync::Mutex<()>,
    stream: jetstream::stream::Stream,
    dead: jetstream::stream::Stream,
    consumer: PullConsumer,
    subject: String,
}

struct Held {
    msg: jetstream::Message,
    timer: tokio::task::AbortHandle,
}

struct Shared {
    js: jetstream::Context,
    prefix: String,
    topo: tokio::sync::Mutex<HashMap<String, Arc<Topo>>>,
    held: Mutex<HashMap<String, Held>>,
    known: Mutex<BTreeSet<String>>,
}

/// The JetStream work queue. Cheap to share behind an `Arc`.
pub struct NatsQueue {
    s: Arc<Shared>,
    client: async_nats::Client,
}

impl NatsQueue {
    /// Connect to `url` now; subjects get `prefix` in front (`moat.` →
    /// `moat.portal.scan`).
    pub async fn connect(url: &str, prefix: &str) -> Result<NatsQueue, DbError> {
        let client = async_nats::ConnectOptions::new()
            .name("moat-work-queue")
            .connect(url)
            .await
            .map_err(|e| DbError::Broker {
                op: "connect",
                detail: format!("{}: {e}", super::redact(url)),
            })?;
        tracing::info!(url = %super::redact(url), prefix, "work queue on NATS JetStream");
        Ok(NatsQueue {
            s: Arc::new(Shared {
                js: jetstream::new(client.clone()),
                prefix: prefix.to_string(),
                topo: tokio::sync::Mutex::new(HashMap::new()),
                held: Mutex::new(HashMap::new()),
                known: Mutex::new(BTreeSet::new()),
            }),
            client,
        })
    }

    /// Close the connection without settling anything (as when the process
    /// dies): the jobs it held are redelivered after `ack_wait`.
    pub async fn close(&self) {
        for (_, h) in lock(&self.s.held).drain() {
            h.timer.abort();
        }
        let _ = self.client.drain().await;
    }

    /// The streams and consumer of `queue`, made on first use (`ack_wait`
    /// from `lease` when the consumer is created here).
    async fn topology(&self, queue: &str, lease: Option<Duration>) -> Result<Arc<Topo>, DbError> {
        let mut g = self.s.topo.lock().await;
        if let Some(t) = g.get(queue) {
            return Ok(t.clone());
        }
        let subject = format!("{}{queue}", self.s.prefix);
        let name = stream_name(&subject);
        let js = &self.s.js;
        let stream = js
            .get_or_create_stream(jetstream::stream::Config {
                name: name.clone(),
                subjects: vec![subject.clone()],
                retention: jetstream::stream::RetentionPolicy::WorkQueue,
                ..Default::default()
            })
            .await
            .map_err(|e| DbError::Broker {
                op: "stream",
                detail: format!("{name}: {e}"),
            })?;
        let dead_name = format!("{name}_dead");
        let dead = js
            .get_or_create_stream(jetstream::stream::Config {
                name: dead_name.clone(),
                subjects: vec![format!("{subject}.dead.>")],
                ..Default::default()
            })
            .await
            .map_err(|e| DbError::Broker {
                op: "stream",
                detail: format!("{dead_name}: {e}"),
            })?;
        let ack_wait = lease
            .unwrap_or(Duration::from_secs(15 * 60))
            .max(Duration::from_secs(1));
        let consumer: PullConsumer = stream
            .get_or_create_consumer(
                CONSUMER,
                jetstream::consumer::pull::Config {
                    durable_name: Some(CONSUMER.into()),
                    ack_policy: jetstream::consumer::AckPolicy::Explicit,
                    ack_wait,
                    max_deliver: -1,
                    ..Default::default()
                },
            )
            .await
            .map_err(|e| DbError::Broker {
                op: "consumer",
                detail: format!("{name}/{CONSUMER}: {e}"),
            })?;
        let t = Arc::new(Topo {
            fetching: tokio::sync::Mutex::new(()),
            stream,
            dead,
            consumer,
            subject,
        });
        g.insert(queue.to_string(), t.clone());
        lock(&self.s.known).insert(queue.to_string());
        Ok(t)
    }

    fn take(&self, id: &str) -> Option<Held> {
        let h = lock(&self.s.held).remove(id)?;
        h.timer.abort();
        Some(h)
    }

    async fn counts(&self, queue: &str) -> Result<QueueStats, DbError> {
        let t = self.topology(queue, None).await?;
        let c = t
            .consumer
            .get_info()
            .await
            .map_err(|e| broker("consumer info")(e.to_string()))?;
        let s = t
            .stream
            .get_info()
            .await
            .map_err(|e| broker("stream info")(e.to_string()))?;
        let d = t
            .dead
            .get_info()
            .await
            .map_err(|e| broker("stream info")(e.to_string()))?;
        let oldest_ms = if s.state.messages > 0 {
            t.stream
                .get_raw_message(s.state.first_sequence)
                .await
                .ok()
                .and_then(|m| {
                    m.headers
                        .get(ENQUEUED_HEADER)
                        .and_then(|v| v.as_str().parse::<i64>().ok())
                })
        } else {
            None
        };
        Ok(QueueStats {
            queue: queue.to_string(),
            waiting: c.num_pending,
            in_flight: c.num_ack_pending as u64,
            dead: d.state.messages,
            oldest_ms,
        })
    }
}

/// Hand a lease back when it runs out in a live process.
fn arm(s: &Arc<Shared>, id: String, lease: Duration) -> tokio::task::AbortHandle {
    let weak: Weak<Shared> = Arc::downgrade(s);
    tokio::spawn(async move {
        tokio::time::sleep(lease).await;
        let Some(s) = weak.upgrade() else { return };
        let held = lock(&s.held).remove(&id);
        if let Some(h) = held {
            tracing::info!(job = %id, "work-queue lease ran out; the job goes back to the queue");
            if let Err(e) = h.msg.ack_with(AckKind::Nak(None)).await {
                tracing::warn!(job = %id, error = %e, "handing back an expired lease failed; JetStream redelivers it after ack_wait");
            }
        }
    })
    .abort_handle()
}

/// One pull request for at most one message; `None` when there is none.
async fn pull_one(consumer: &PullConsumer) -> Result<Option<jetstream::Message>, DbError> {
    let mut batch = consumer
        .fetch()
        .max_messages(1)
        .messages()
        .await
        .map_err(|e| broker("fetch")(e.to_string()))?;
    batch
        .next()
        .await
        .transpose()
        .map_err(|e| broker("fetch")(e.to_string()))
}

#[async_trait]
impl EventQueue for NatsQueue {
    async fn enqueue(&self, queue: &str, payload: &[u8]) -> Result<String, DbError> {
        let t = self.topology(queue, None).await?;
        let id = format!("{}@{queue}", uuid::Uuid::now_v7());
        let mut h = async_nats::HeaderMap::new();
        h.insert("Nats-Msg-Id", id.as_str());
        h.insert(ENQUEUED_HEADER, now_ms().to_string().as_str());
        self.s
            .js
            .publish_with_headers(t.subject.clone(), h, payload.to_vec().into())
            .await
            .map_err(|e| broker("enqueue")(e.to_string()))?
            .await
            .map_err(|e| broker("enqueue")(e.to_string()))?;
        Ok(id)
    }

    async fn lease(&self, queue: &str, lease: Duration) -> Result<Option<QueuedEvent>, DbError> {
        let t = self.topology(queue, Some(lease)).await?;
        let pulled = {
            let _one = t.fetching.lock().await;
            let mut attempt = 1;
            loop {
                match tokio::time::timeout(FETCH_TIMEOUT, pull_one(&t.consumer)).await {
                    Ok(r) => break r,
                    Err(_) if attempt < FETCH_ATTEMPTS => {
                        tracing::warn!(
                            queue,
                            attempt,
                            "a JetStream pull got no answer; pulling again"
                        );
                        attempt += 1;
                    }
                    Err(_) => break Err(broker("fetch")("no answer from JetStream".into())),
                }
            }
        };
        let Some(msg) = pulled? else {
            return Ok(None);
        };
        let delivered = msg
            .info()
            .map(|i| i.delivered)
            .map_err(|e| broker("fetch")(e.to_string()))?;
        let id = msg
            .headers
            .as_ref()
            .and_then(|h| h.get("Nats-Msg-Id"))
            .map(|v| v.as_str().to_string())
            .filter(|s| parse_id(s).is_some())
            .unwrap_or_else(|| format!("{}@{queue}", uuid::Uuid::now_v7()));
        let payload = msg.payload.to_vec();
        let timer = arm(&self.s, id.clone(), lease);
        let old = lock(&self.s.held).insert(id.clone(), Held { msg, timer });
        if let Some(old) = old {
            old.timer.abort();
        }
        Ok(Some(QueuedEvent {
            id,
            payload,
            attempts: u32::try_from(delivered.max(1)).unwrap_or(u32::MAX),
        }))
    }

    async fn extend(&self, id: &str, lease: Duration) -> Result<(), DbError> {
        let msg = {
            let mut held = lock(&self.s.held);
            let Some(h) = held.get_mut(id) else {
                return Ok(());
            };
            h.timer.abort();
            h.timer = arm(&self.s, id.to_string(), lease);
            h.msg.clone()
        };
        msg.ack_with(AckKind::Progress)
            .await
            .map_err(|e| broker("in_progress")(e.to_string()))
    }

    async fn ack(&self, id: &str) -> Result<(), DbError> {
        let Some(h) = self.take(id) else {
            return Ok(());
        };
        h.msg
            .double_ack()
            .await
            .map_err(|e| broker("ack")(e.to_string()))
    }

    async fn retry(&self, id: &str, delay: Duration) -> Result<(), DbError> {
        let Some(h) = self.take(id) else {
            return Ok(());
        };
        let kind = if delay.is_zero() {
            AckKind::Nak(None)
        } else {
            AckKind::Nak(Some(delay))
        };
        h.msg
            .ack_with(kind)
            .await
            .map_err(|e| broker("nak")(e.to_string()))
    }

    async fn dead(&self, id: &str, reason: &str) -> Result<(), DbError> {
        let Some(h) = self.take(id) else {
            return Ok(());
        };
        let Some((uuid, queue)) = parse_id(id) else {
            return Err(broker("dead-letter")(format!("job id {id:?}")));
        };
        let t = self.topology(queue, None).await?;
        let mut headers = async_nats::HeaderMap::new();
        headers.insert(REASON_HEADER, header_safe(reason).as_str());
        headers.insert("Moat-Job", id);
        let delivered = h.msg.info().map(|i| i.delivered).unwrap_or(0);
        headers.insert("Moat-Delivered", delivered.to_string().as_str());
        let subject = format!("{}.dead.{uuid}", t.subject);
        let published = async {
            self.s
                .js
                .publish_with_headers(subject, headers, h.msg.payload.clone())
                .await
                .map_err(|e| e.to_string())?
                .await
                .map_err(|e| e.to_string())
        }
        .await;
        if let Err(e) = published {
            // Not stored: give the job back rather than lose it.
            let _ = h.msg.ack_with(AckKind::Nak(None)).await;
            return Err(broker("dead-letter")(e));
        }
        h.msg
            .double_ack_with(AckKind::Term)
            .await
            .map_err(|e| broker("term")(e.to_string()))
    }

    async fn depth(&self, queue: &str) -> Result<u64, DbError> {
        let s = self.counts(queue).await?;
        Ok(s.waiting + s.in_flight)
    }

    async fn dead_count(&self, queue: &str) -> Result<u64, DbError> {
        Ok(self.counts(queue).await?.dead)
    }

    async fn dead_reason(&self, id: &str) -> Result<Option<String>, DbError> {
        let Some((uuid, queue)) = parse_id(id) else {
            return Ok(None);
        };
        let t = self.topology(queue, None).await?;
        match t
            .dead
            .get_last_raw_message_by_subject(&format!("{}.dead.{uuid}", t.subject))
            .await
        {
            Ok(m) => Ok(Some(
                m.headers
                    .get(REASON_HEADER)
                    .map(|v| v.as_str().to_string())
                    .unwrap_or_default(),
            )),
            Err(e) if e.kind() == jetstream::stream::LastRawMessageErrorKind::NoMessageFound => {
                Ok(None)
            }
            Err(e) => Err(broker("read dead letter")(e.to_string())),
        }
    }

    async fn stats(&self) -> Result<Vec<QueueStats>, DbError> {
        let names: Vec<String> = lock(&self.s.known).iter().cloned().collect();
        let mut out = Vec::with_capacity(names.len());
        for q in names {
            out.push(self.counts(&q).await?);
        }
        Ok(out)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn stream_names_have_no_dots_or_wildcards() {
        assert_eq!(stream_name("moat.portal.scan"), "moat_portal_scan");
        assert_eq!(stream_name("a.*.>"), "a____");
    }

    #[test]
    fn job_ids_carry_their_queue() {
        assert_eq!(parse_id("u@portal.mail"), Some(("u", "portal.mail")));
        assert_eq!(parse_id("@q"), None);
        assert_eq!(parse_id("u@"), None);
    }
}
