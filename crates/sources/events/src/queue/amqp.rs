//! [`EventQueue`] on RabbitMQ (AMQP 0-9-1, no plugins).
//!
//! For a queue name `q` (with the configured prefix `p`) the topology is,
//! all durable and declared on first use:
//!
//! * `pq`: the work queue. [`EventQueue::enqueue`] publishes a persistent
//!   message (`delivery_mode` 2, `message_id` = the job id) on a
//!   confirm-mode channel and returns only once the broker confirmed it.
//! * `pq.delay.<ms>` for `ms` = 100 × 4^k (k = 0..7, 100 ms … 27 min):
//!   queues with that `x-message-ttl` that dead-letter back into `pq`. A
//!   queue-wide TTL (not a per-message one) keeps each delay queue in expiry
//!   order, so a long delay never holds up a short one. A retry carries
//!   `x-moat-visible-at`; a job that comes back into `pq` early is sent on to
//!   the next delay queue for what is left, so any delay is a few hops.
//! * `pq.dead`: dead letters, with `x-moat-reason` and `x-moat-attempts`.
//!
//! A lease is a `basic.get` without auto-ack: the delivery stays unacked
//! (and invisible to every other consumer) while it is leased. If the
//! process dies or its connection drops, the broker hands the job to the
//! next consumer. A lease that runs out in a live process is handed back
//! with `basic.nack` + requeue by a timer ([`EventQueue::extend`] re-arms
//! it). Retry and dead-letter publish the copy (confirmed) before they ack
//! the original, so a crash between the two duplicates a job, never loses it.
//!
//! Attempts: `x-moat-attempts` counts the leases settled by retry; the
//! broker's `redelivered` flag adds one for a lease that ended without
//! settlement (expired, or the holder died).
//!
//! Counts come from `queue.declare-ok`: waiting = ready messages in `pq`;
//! in flight = messages waiting out a delay plus this node's leases
//! (RabbitMQ reports other consumers' unacked messages only through its
//! management API); dead = `pq.dead`. The age of the oldest job is not
//! known without taking it, so `oldest_ms` is `None`.
//!
//! RabbitMQ closes a channel whose delivery stays unacked longer than its
//! `consumer_timeout` (30 min by default); leases longer than that need the
//! broker setting raised.

use super::lock;
use crate::amqp::{REASON_HEADER, connect_confirming, header_i64, header_str, publish_confirmed};
use async_trait::async_trait;
use lapin::options::{BasicAckOptions, BasicGetOptions, BasicNackOptions, QueueDeclareOptions};
use lapin::types::{AMQPValue, FieldTable, LongString, ShortString};
use lapin::{BasicProperties, Channel, Connection};
use moat_db::{DbError, EventQueue, QueueStats, QueuedEvent};
use std::collections::{BTreeSet, HashMap, HashSet};
use std::sync::{Arc, Mutex, Weak};
use std::time::Duration;

const ENQUEUED_HEADER: &str = "x-moat-enqueued-at";
const ATTEMPTS_HEADER: &str = "x-moat-attempts";
const VISIBLE_HEADER: &str = "x-moat-visible-at";
/// The delay queues' TTLs: 100 ms × 4^k.
const LEVELS_MS: [u64; 8] = [100, 400, 1_600, 6_400, 25_600, 102_400, 409_600, 1_638_400];
/// Early jobs forwarded to a delay queue by one `lease` call at most.
const MAX_HOPS_PER_LEASE: usize = 64;
/// Dead letters looked through by [`EventQueue::dead_reason`] at most.
const MAX_DEAD_SCAN: usize = 100_000;

fn broker(op: &'static str) -> impl Fn(lapin::Error) -> DbError {
    move |e| DbError::Broker {
        op,
        detail: e.to_string(),
    }
}

fn now_ms() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| i64::try_from(d.as_millis()).unwrap_or(i64::MAX))
        .unwrap_or(0)
}

/// The delay queue for a wait of `ms`: the longest level not above it (the
/// shortest for less than 100 ms).
fn level_for(ms: u64) -> u64 {
    LEVELS_MS
        .iter()
        .rev()
        .copied()
        .find(|l| *l <= ms)
        .unwrap_or(LEVELS_MS[0])
}

fn delay_queue(main: &str, level: u64) -> String {
    format!("{main}.delay.{level}")
}

fn dead_queue(main: &str) -> String {
    format!("{main}.dead")
}

/// The queue name inside a job id (`<uuid>@<queue>`).
fn queue_of(id: &str) -> Option<&str> {
    id.split_once('@').map(|(_, q)| q).filter(|q| !q.is_empty())
}

/// One connection and its confirm-mode channel (publish, get, ack).
struct Link {
    conn: Connection,
    ch: Channel,
    /// Work queues whose topology was declared on this connection.
    declared: Mutex<HashSet<String>>,
}

/// A job this node holds: the delivery stays unacked until settled.
struct Held {
    delivery: lapin::message::Delivery,
    main: String,
    attempts: u32,
    timer: tokio::task::AbortHandle,
}

struct Shared {
    url: String,
    prefix: String,
    link: tokio::sync::Mutex<Option<Arc<Link>>>,
    held: Mutex<HashMap<String, Held>>,
    /// Queue names used by this process (what [`EventQueue::stats`] lists).
    known: Mutex<BTreeSet<String>>,
}

/// Hand a held delivery back to the queue (`basic.nack` with requeue).
async fn requeue(delivery: &lapin::message::Delivery) -> lapin::Result<bool> {
    delivery
        .acker
        .nack(BasicNackOptions {
            requeue: true,
            ..Default::default()
        })
        .await
}

/// The RabbitMQ work queue. Cheap to share behind an `Arc`.
pub struct AmqpQueue {
    s: Arc<Shared>,
}

impl AmqpQueue {
    /// Connect to `url` now (so a wrong URL shows at start-up); queue names
    /// get `prefix` in front. Later connection losses reconnect on the next
    /// call.
    pub async fn connect(url: &str, prefix: &str) -> Result<AmqpQueue, DbError> {
        let q = AmqpQueue {
            s: Arc::new(Shared {
                url: url.to_string(),
                prefix: prefix.to_string(),
                link: tokio::sync::Mutex::new(None),
                held: Mutex::new(HashMap::new()),
                known: Mutex::new(BTreeSet::new()),
            }),
        };
        q.link().await?;
        tracing::info!(url = %super::redact(url), prefix, "work queue on RabbitMQ");
        Ok(q)
    }

    /// Close the connection: every job still leased goes back to the broker
    /// at once (as when the process dies).
    pub async fn close(&self) {
        let link = self.s.link.lock().await.take();
        let held: Vec<Held> = lock(&self.s.held).drain().map(|(_, h)| h).collect();
        for h in &held {
            h.timer.abort();
        }
        if let Some(l) = link {
            let _ = l.conn.close(200, "closing".into()).await;
        }
    }

    async fn link(&self) -> Result<Arc<Link>, DbError> {
        let mut g = self.s.link.lock().await;
        if let Some(l) = g.as_ref()
            && l.conn.status().connected()
            && l.ch.status().connected()
        {
            return Ok(l.clone());
        }
        let (conn, ch) = connect_confirming(&self.s.url)
            .await
            .map_err(broker("connect"))?;
        let l = Arc::new(Link {
            conn,
            ch,
            declared: Mutex::new(HashSet::new()),
        });
        *g = Some(l.clone());
        Ok(l)
    }

    /// The connection and the work queue `queue`'s name on the broker, its
    /// topology declared.
    async fn topology(&self, queue: &str) -> Result<(Arc<Link>, String), DbError> {
        let link = self.link().await?;
        let main = format!("{}{queue}", self.s.prefix);
        if lock(&link.declared).contains(&main) {
            return Ok((link, main));
        }
        count(&link.ch, &main, FieldTable::default()).await?;
        count(&link.ch, &dead_queue(&main), FieldTable::default()).await?;
        for level in LEVELS_MS {
            count(
                &link.ch,
                &delay_queue(&main, level),
                delay_args(&main, level),
            )
            .await?;
        }
        lock(&link.declared).insert(main.clone());
        lock(&self.s.known).insert(queue.to_string());
        Ok((link, main))
    }

    /// Take a held job out of the table (its timer stopped).
    fn take(&self, id: &str) -> Option<Held> {
        let h = lock(&self.s.held).remove(id)?;
        h.timer.abort();
        Some(h)
    }

    /// Publish a copy of a held job to `routing_key` with `headers`, then
    /// ack the original; if the copy cannot be published, hand the original
    /// back (nack with requeue) and fail.
    async fn move_held(
        &self,
        h: Held,
        routing_key: &str,
        headers: FieldTable,
        op: &'static str,
    ) -> Result<(), DbError> {
        let link = self.link().await?;
        let props = h.delivery.properties.clone().with_headers(headers);
        if let Err(e) = publish_confirmed(&link.ch, "", routing_key, &h.delivery.data, props).await
        {
            let _ = requeue(&h.delivery).await;
            return Err(DbError::Broker {
                op,
                detail: e.to_string(),
            });
        }
        h.delivery
            .acker
            .ack(BasicAckOptions::default())
            .await
            .map_err(broker(op))?;
        Ok(())
    }

    async fn counts(&self, queue: &str) -> Result<(u64, u64, u64), DbError> {
        let (link, main) = self.topology(queue).await?;
        let waiting = count(&link.ch, &main, FieldTable::default()).await?;
        let mut delayed = 0;
        for level in LEVELS_MS {
            delayed += count(
                &link.ch,
                &delay_queue(&main, level),
                delay_args(&main, level),
            )
            .await?;
        }
        let held = lock(&self.s.held)
            .values()
            .filter(|h| h.main == main)
            .count() as u64;
        let dead = count(&link.ch, &dead_queue(&main), FieldTable::default()).await?;
        Ok((waiting, delayed + held, dead))
    }
}

fn delay_args(main: &str, level: u64) -> FieldTable {
    let mut a = FieldTable::default();
    a.insert(
        "x-message-ttl".into(),
        AMQPValue::LongLongInt(i64::try_from(level).unwrap_or(i64::MAX)),
    );
    a.insert(
        "x-dead-letter-exchange".into(),
        AMQPValue::LongString(LongString::from("")),
    );
    a.insert(
        "x-dead-letter-routing-key".into(),
        AMQPValue::LongString(LongString::from(main)),
    );
    a
}

/// Declare (durable, idempotent) and return the ready message count.
async fn count(ch: &Channel, name: &str, args: FieldTable) -> Result<u64, DbError> {
    let q = ch
        .queue_declare(
            ShortString::from(name),
            QueueDeclareOptions::durable(),
            args,
        )
        .await
        .map_err(broker("queue.declare"))?;
    Ok(u64::from(q.message_count()))
}

fn headers_of(p: &BasicProperties) -> FieldTable {
    p.headers().clone().unwrap_or_default()
}

/// `h` without the header `name`.
fn without(h: &FieldTable, name: &str) -> FieldTable {
    let mut t = FieldTable::default();
    for (k, v) in h.inner() {
        if k.as_str() != name {
            t.insert(k.clone(), v.clone());
        }
    }
    t
}

/// Hand a lease back when it runs out (the holder is alive but slow or stuck).
fn arm(s: &Arc<Shared>, id: String, lease: Duration) -> tokio::task::AbortHandle {
    let weak: Weak<Shared> = Arc::downgrade(s);
    tokio::spawn(async move {
        tokio::time::sleep(lease).await;
        let Some(s) = weak.upgrade() else { return };
        let held = lock(&s.held).remove(&id);
        if let Some(h) = held {
            tracing::info!(job = %id, "work-queue lease ran out; the job goes back to the queue");
            if let Err(e) = requeue(&h.delivery).await {
                tracing::warn!(job = %id, error = %e, "handing back an expired lease failed; the broker returns it when the channel closes");
            }
        }
    })
    .abort_handle()
}

#[async_trait]
impl EventQueue for AmqpQueue {
    async fn enqueue(&self, queue: &str, payload: &[u8]) -> Result<String, DbError> {
        let (link, main) = self.topology(queue).await?;
        let id = format!("{}@{queue}", uuid::Uuid::now_v7());
        let mut h = FieldTable::default();
        h.insert(ENQUEUED_HEADER.into(), AMQPValue::LongLongInt(now_ms()));
        h.insert(ATTEMPTS_HEADER.into(), AMQPValue::LongLongInt(0));
        let props = BasicProperties::default()
            .with_delivery_mode(2)
            .with_message_id(ShortString::from(id.as_str()))
            .with_headers(h);
        publish_confirmed(&link.ch, "", &main, payload, props)
            .await
            .map_err(|e| DbError::Broker {
                op: "enqueue",
                detail: e.to_string(),
            })?;
        Ok(id)
    }

    async fn lease(&self, queue: &str, lease: Duration) -> Result<Option<QueuedEvent>, DbError> {
        let (link, main) = self.topology(queue).await?;
        for _ in 0..MAX_HOPS_PER_LEASE {
            let got = link
                .ch
                .basic_get(
                    ShortString::from(main.as_str()),
                    BasicGetOptions { no_ack: false },
                )
                .await
                .map_err(broker("basic.get"))?;
            let Some(m) = got else { return Ok(None) };
            let d = m.delivery;
            let h = headers_of(&d.properties);
            let now = now_ms();
            if let Some(at) = header_i64(&h, VISIBLE_HEADER)
                && at > now
            {
                // Back from a delay queue early: on to the next hop.
                let left = u64::try_from(at - now).unwrap_or(0);
                let to = delay_queue(&main, level_for(left));
                publish_confirmed(&link.ch, "", &to, &d.data, d.properties.clone())
                    .await
                    .map_err(|e| DbError::Broker {
                        op: "delay",
                        detail: e.to_string(),
                    })?;
                d.acker
                    .ack(BasicAckOptions::default())
                    .await
                    .map_err(broker("delay"))?;
                continue;
            }
            let id = d
                .properties
                .message_id()
                .as_ref()
                .map(|s| s.as_str().to_string())
                .filter(|s| queue_of(s).is_some())
                .unwrap_or_else(|| format!("{}@{queue}", uuid::Uuid::now_v7()));
            let before = header_i64(&h, ATTEMPTS_HEADER)
                .and_then(|v| u32::try_from(v).ok())
                .unwrap_or(0);
            let attempts = before
                .saturating_add(1)
                .saturating_add(u32::from(d.redelivered));
            let payload = d.data.clone();
            let timer = arm(&self.s, id.clone(), lease);
            let old = lock(&self.s.held).insert(
                id.clone(),
                Held {
                    delivery: d,
                    main: main.clone(),
                    attempts,
                    timer,
                },
            );
            if let Some(old) = old {
                // A duplicate of a job this node already holds (a crash
                // between republish and ack somewhere): the older copy
                // goes back and will be settled when it comes round.
                old.timer.abort();
                let _ = requeue(&old.delivery).await;
            }
            return Ok(Some(QueuedEvent {
                id,
                payload,
                attempts,
            }));
        }
        Ok(None)
    }

    async fn extend(&self, id: &str, lease: Duration) -> Result<(), DbError> {
        let mut held = lock(&self.s.held);
        if let Some(h) = held.get_mut(id) {
            h.timer.abort();
            h.timer = arm(&self.s, id.to_string(), lease);
        }
        Ok(())
    }

    async fn ack(&self, id: &str) -> Result<(), DbError> {
        let Some(h) = self.take(id) else {
            tracing::debug!(job = %id, "ack of a job this node does not hold");
            return Ok(());
        };
        h.delivery
            .acker
            .ack(BasicAckOptions::default())
            .await
            .map_err(broker("ack"))?;
        Ok(())
    }

    async fn retry(&self, id: &str, delay: Duration) -> Result<(), DbError> {
        let Some(h) = self.take(id) else {
            tracing::debug!(job = %id, "retry of a job this node does not hold");
            return Ok(());
        };
        let mut headers = without(&headers_of(&h.delivery.properties), VISIBLE_HEADER);
        headers.insert(
            ATTEMPTS_HEADER.into(),
            AMQPValue::LongLongInt(i64::from(h.attempts)),
        );
        let ms = u64::try_from(delay.as_millis()).unwrap_or(u64::MAX);
        let to = if ms == 0 {
            h.main.clone()
        } else {
            let at = now_ms().saturating_add(i64::try_from(ms).unwrap_or(i64::MAX / 4));
            headers.insert(VISIBLE_HEADER.into(), AMQPValue::LongLongInt(at));
            delay_queue(&h.main, level_for(ms))
        };
        self.move_held(h, &to, headers, "retry").await
    }

    async fn dead(&self, id: &str, reason: &str) -> Result<(), DbError> {
        let Some(h) = self.take(id) else {
            tracing::debug!(job = %id, "dead-letter of a job this node does not hold");
            return Ok(());
        };
        let mut headers = without(&headers_of(&h.delivery.properties), VISIBLE_HEADER);
        let reason: String = reason.chars().take(1000).collect();
        headers.insert(
            REASON_HEADER.into(),
            AMQPValue::LongString(LongString::from(reason.as_str())),
        );
        headers.insert(
            ATTEMPTS_HEADER.into(),
            AMQPValue::LongLongInt(i64::from(h.attempts)),
        );
        let to = dead_queue(&h.main);
        self.move_held(h, &to, headers, "dead-letter").await
    }

    async fn depth(&self, queue: &str) -> Result<u64, DbError> {
        let (waiting, in_flight, _) = self.counts(queue).await?;
        Ok(waiting + in_flight)
    }

    async fn dead_count(&self, queue: &str) -> Result<u64, DbError> {
        Ok(self.counts(queue).await?.2)
    }

    async fn dead_reason(&self, id: &str) -> Result<Option<String>, DbError> {
        let Some(queue) = queue_of(id) else {
            return Ok(None);
        };
        let (link, main) = self.topology(queue).await?;
        // Look through the dead letters on a channel of its own, then close
        // it: everything taken goes back where it was.
        let ch = link
            .conn
            .create_channel()
            .await
            .map_err(broker("channel.open"))?;
        let dead = dead_queue(&main);
        let mut found = None;
        for _ in 0..MAX_DEAD_SCAN {
            let got = ch
                .basic_get(
                    ShortString::from(dead.as_str()),
                    BasicGetOptions { no_ack: false },
                )
                .await
                .map_err(broker("basic.get"))?;
            let Some(m) = got else { break };
            let d = &m.delivery;
            if d.properties.message_id().as_ref().map(|s| s.as_str()) == Some(id) {
                found =
                    Some(header_str(&headers_of(&d.properties), REASON_HEADER).unwrap_or_default());
                break;
            }
        }
        let _ = ch.close(200, "done".into()).await;
        Ok(found)
    }

    async fn stats(&self) -> Result<Vec<QueueStats>, DbError> {
        let names: Vec<String> = lock(&self.s.known).iter().cloned().collect();
        let mut out = Vec::with_capacity(names.len());
        for queue in names {
            let (waiting, in_flight, dead) = self.counts(&queue).await?;
            out.push(QueueStats {
                queue,
                waiting,
                in_flight,
                dead,
                oldest_ms: None,
            });
        }
        Ok(out)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn delays_take_the_longest_level_that_fits() {
        assert_eq!(level_for(0), 100);
        assert_eq!(level_for(99), 100);
        assert_eq!(level_for(399), 100);
        assert_eq!(level_for(2_000), 1_600);
        assert_eq!(level_for(300_000), 102_400);
        assert_eq!(level_for(u64::MAX), 1_638_400);
        // Any delay is a handful of hops: each takes at most 3/4 of what is left
        // above the level, so 5 minutes is 102.4 s × 2 + 25.6 s × 3 + ….
        let mut left = 300_000u64;
        let mut hops = 0;
        while left >= 100 {
            left -= level_for(left);
            hops += 1;
        }
        assert!(hops <= 20, "{hops}");
    }

    #[test]
    fn job_ids_carry_their_queue() {
        assert_eq!(queue_of("0192-ab@portal.scan"), Some("portal.scan"));
        assert_eq!(queue_of("no-queue"), None);
        assert_eq!(queue_of("x@"), None);
    }
}
