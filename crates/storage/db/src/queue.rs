//! The embedded durable event queue (the webhook source's store).
//!
//! One table, `moat_event_queue`, in the same database as the scan records
//! (SQLite by default, PostgreSQL by URL), through the same sqlx `Any` setup
//! as [`crate::SqlStore`]. A row is `ready` until acknowledged (deleted) or
//! dead-lettered (`dead`, kept with its reason). Leasing sets `visible_at`
//! to now + lease and counts the attempt; a lease that runs out (the worker
//! crashed) makes the row claimable again, so nothing acknowledged by the
//! webhook is ever lost. Claims are atomic: one `UPDATE ... RETURNING` on a
//! row picked by a subquery (with `FOR UPDATE SKIP LOCKED` on PostgreSQL),
//! so two leasers never get the same event.
//!
//! Times are the application's clock (Unix milliseconds); nodes sharing a
//! PostgreSQL queue should keep their clocks in sync (NTP).

use crate::DbError;
use crate::sql::{Tuning, connect, err};
use async_trait::async_trait;
use sqlx::{AnyPool, Row};
use std::sync::Arc;
use std::time::Duration;

/// One leased event.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct QueuedEvent {
    pub id: String,
    pub payload: Vec<u8>,
    /// Leases so far, this one included (1 on the first delivery).
    pub attempts: u32,
}

/// What one queue holds now (for the dashboard).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct QueueStats {
    pub queue: String,
    /// Claimable now.
    pub waiting: u64,
    /// Leased by a worker, or waiting out a retry delay.
    pub in_flight: u64,
    pub dead: u64,
    /// When the oldest event not yet done (waiting or in flight) was
    /// enqueued, Unix milliseconds: the queue's lag is now minus this.
    pub oldest_ms: Option<i64>,
}

/// A durable queue of opaque payloads, by queue name.
#[async_trait]
pub trait EventQueue: Send + Sync {
    /// Store `payload`; it is committed before this returns. Returns its id.
    async fn enqueue(&self, queue: &str, payload: &[u8]) -> Result<String, DbError>;
    /// Claim the oldest claimable event for `lease`, or `None` when there is
    /// none. Until the lease runs out nobody else gets it.
    async fn lease(&self, queue: &str, lease: Duration) -> Result<Option<QueuedEvent>, DbError>;
    /// Extend a held lease to `lease` from now (long scans).
    async fn extend(&self, id: &str, lease: Duration) -> Result<(), DbError>;
    /// Done: remove it.
    async fn ack(&self, id: &str) -> Result<(), DbError>;
    /// Release it, claimable again after `delay`.
    async fn retry(&self, id: &str, delay: Duration) -> Result<(), DbError>;
    /// Move it aside for good: kept with state `dead` and `reason`.
    async fn dead(&self, id: &str, reason: &str) -> Result<(), DbError>;
    /// Events waiting or leased (not dead) in `queue`.
    async fn depth(&self, queue: &str) -> Result<u64, DbError>;
    /// Dead events kept in `queue`.
    async fn dead_count(&self, queue: &str) -> Result<u64, DbError>;
    /// The reason an event was dead-lettered, if it is dead.
    async fn dead_reason(&self, id: &str) -> Result<Option<String>, DbError>;
    /// Every queue in this database with its depth and oldest event.
    async fn stats(&self) -> Result<Vec<QueueStats>, DbError>;
}

/// Open the queue in the database named by `url` (`sqlite://PATH` or
/// `postgres://...`), creating its table if needed.
pub async fn open_queue(url: &str) -> Result<Arc<dyn EventQueue>, DbError> {
    Ok(Arc::new(SqlQueue::open(url).await?))
}

fn now_ms() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_millis() as i64)
        .unwrap_or(0)
}

fn ms(d: Duration) -> i64 {
    i64::try_from(d.as_millis()).unwrap_or(i64::MAX / 4)
}

/// The SQL implementation of [`EventQueue`].
pub struct SqlQueue {
    pool: AnyPool,
    backend: &'static str,
}

impl SqlQueue {
    pub async fn open(url: &str) -> Result<SqlQueue, DbError> {
        // An acknowledged webhook must survive a power cut, not only a
        // crash: SQLite syncs the WAL on every commit.
        let (pool, backend) = connect(
            url,
            Tuning {
                max_postgres: 8,
                busy_timeout_ms: 10000,
                synchronous: "FULL",
            },
        )
        .await?;
        let is_sqlite = backend == "sqlite";
        let blob = if is_sqlite { "BLOB" } else { "BYTEA" };
        let schema = [
            format!(
                "CREATE TABLE IF NOT EXISTS moat_event_queue (
                    id TEXT PRIMARY KEY,
                    queue TEXT NOT NULL,
                    payload {blob} NOT NULL,
                    state TEXT NOT NULL,
                    attempts BIGINT NOT NULL,
                    visible_at BIGINT NOT NULL,
                    created_at BIGINT NOT NULL,
                    updated_at BIGINT NOT NULL,
                    reason TEXT
                )"
            ),
            "CREATE INDEX IF NOT EXISTS moat_event_queue_claim ON moat_event_queue (queue, state, visible_at)".to_string(),
        ];
        for stmt in &schema {
            sqlx::query(stmt)
                .execute(&pool)
                .await
                .map_err(err("create queue schema"))?;
        }
        Ok(SqlQueue { pool, backend })
    }

    /// `sqlite` or `postgres`.
    pub fn backend(&self) -> &'static str {
        self.backend
    }

    async fn set_visible(&self, id: &str, at: i64, op: &'static str) -> Result<(), DbError> {
        sqlx::query(
            "UPDATE moat_event_queue SET visible_at = $1, updated_at = $2 WHERE id = $3 AND state = 'ready'",
        )
        .bind(at)
        .bind(now_ms())
        .bind(id)
        .execute(&self.pool)
        .await
        .map_err(err(op))?;
        Ok(())
    }

    async fn count(&self, queue: &str, state: &str) -> Result<u64, DbError> {
        let row = sqlx::query(
            "SELECT COUNT(*) AS n FROM moat_event_queue WHERE queue = $1 AND state = $2",
        )
        .bind(queue)
        .bind(state)
        .fetch_one(&self.pool)
        .await
        .map_err(err("count queue"))?;
        let n: i64 = row.try_get("n").map_err(err("count queue"))?;
        Ok(u64::try_from(n).unwrap_or(0))
    }
}

#[async_trait]
impl EventQueue for SqlQueue {
    async fn enqueue(&self, queue: &str, payload: &[u8]) -> Result<String, DbError> {
        let id = uuid::Uuid::now_v7().to_string();
        let now = now_ms();
        sqlx::query(
            "INSERT INTO moat_event_queue (id, queue, payload, state, attempts, visible_at, created_at, updated_at, reason)
             VALUES ($1, $2, $3, 'ready', 0, $4, $4, $4, NULL)",
        )
        .bind(&id)
        .bind(queue)
        .bind(payload.to_vec())
        .bind(now)
        .execute(&self.pool)
        .await
        .map_err(err("enqueue"))?;
        Ok(id)
    }

    async fn lease(&self, queue: &str, lease: Duration) -> Result<Option<QueuedEvent>, DbError> {
        let now = now_ms();
        let lock = if self.backend == "postgres" {
            "FOR UPDATE SKIP LOCKED"
        } else {
            ""
        };
        // The outer WHERE repeats the claimability test so that a row
        // re-checked after a concurrent claim (PostgreSQL READ COMMITTED)
        // is not claimed twice.
        let sql = format!(
            "UPDATE moat_event_queue
                SET visible_at = $1, attempts = attempts + 1, updated_at = $2
              WHERE id = (SELECT id FROM moat_event_queue
                           WHERE queue = $3 AND state = 'ready' AND visible_at <= $2
                           ORDER BY visible_at, id LIMIT 1 {lock})
                AND state = 'ready' AND visible_at <= $2
            RETURNING id, payload, attempts"
        );
        let row = sqlx::query(&sql)
            .bind(now.saturating_add(ms(lease)))
            .bind(now)
            .bind(queue)
            .fetch_optional(&self.pool)
            .await
            .map_err(err("lease"))?;
        let Some(row) = row else { return Ok(None) };
        let attempts: i64 = row.try_get("attempts").map_err(err("lease"))?;
        Ok(Some(QueuedEvent {
            id: row.try_get("id").map_err(err("lease"))?,
            payload: row.try_get("payload").map_err(err("lease"))?,
            attempts: u32::try_from(attempts.max(1)).unwrap_or(u32::MAX),
        }))
    }

    async fn extend(&self, id: &str, lease: Duration) -> Result<(), DbError> {
        self.set_visible(id, now_ms().saturating_add(ms(lease)), "extend lease")
            .await
    }

    async fn ack(&self, id: &str) -> Result<(), DbError> {
        sqlx::query("DELETE FROM moat_event_queue WHERE id = $1 AND state = 'ready'")
            .bind(id)
            .execute(&self.pool)
            .await
            .map_err(err("ack"))?;
        Ok(())
    }

    async fn retry(&self, id: &str, delay: Duration) -> Result<(), DbError> {
        self.set_visible(id, now_ms().saturating_add(ms(delay)), "retry")
            .await
    }

    async fn dead(&self, id: &str, reason: &str) -> Result<(), DbError> {
        sqlx::query(
            "UPDATE moat_event_queue SET state = 'dead', reason = $1, updated_at = $2 WHERE id = $3",
        )
        .bind(reason)
        .bind(now_ms())
        .bind(id)
        .execute(&self.pool)
        .await
        .map_err(err("dead-letter"))?;
        Ok(())
    }

    async fn depth(&self, queue: &str) -> Result<u64, DbError> {
        self.count(queue, "ready").await
    }

    async fn dead_count(&self, queue: &str) -> Result<u64, DbError> {
        self.count(queue, "dead").await
    }

    async fn dead_reason(&self, id: &str) -> Result<Option<String>, DbError> {
        let row =
            sqlx::query("SELECT reason FROM moat_event_queue WHERE id = $1 AND state = 'dead'")
                .bind(id)
                .fetch_optional(&self.pool)
                .await
                .map_err(err("read dead letter"))?;
        match row {
            Some(r) => Ok(r.try_get("reason").map_err(err("read dead letter"))?),
            None => Ok(None),
        }
    }

    async fn stats(&self) -> Result<Vec<QueueStats>, DbError> {
        let rows = sqlx::query(
            "SELECT queue,
                    CASE WHEN state <> 'ready' THEN 'dead' WHEN visible_at > $1 THEN 'in_flight' ELSE 'waiting' END AS k,
                    COUNT(*) AS n, MIN(created_at) AS oldest
               FROM moat_event_queue GROUP BY 1, 2 ORDER BY 1, 2",
        )
        .bind(now_ms())
        .fetch_all(&self.pool)
        .await
        .map_err(err("queue stats"))?;
        let mut out: Vec<QueueStats> = Vec::new();
        for r in &rows {
            let queue: String = r.try_get("queue").map_err(err("queue stats"))?;
            let k: String = r.try_get("k").map_err(err("queue stats"))?;
            let n: i64 = r.try_get("n").map_err(err("queue stats"))?;
            let oldest: i64 = r.try_get("oldest").map_err(err("queue stats"))?;
            if out.last().is_none_or(|q| q.queue != queue) {
                out.push(QueueStats {
                    queue,
                    waiting: 0,
                    in_flight: 0,
                    dead: 0,
                    oldest_ms: None,
                });
            }
            let Some(q) = out.last_mut() else { continue };
            let n = u64::try_from(n).unwrap_or(0);
            match k.as_str() {
                "dead" => q.dead = n,
                "in_flight" => q.in_flight = n,
                _ => q.waiting = n,
            }
            if k != "dead" {
                q.oldest_ms = Some(q.oldest_ms.map_or(oldest, |o| o.min(oldest)));
            }
        }
        Ok(out)
    }
}
