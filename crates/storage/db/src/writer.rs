//! Group commit for scan records and verdict-cache entries.
//!
//! Every scan writes a record (a row and two counters, one transaction) and
//! most also write a verdict-cache entry. Written one by one, each is its own
//! transaction with a hop to the driver's connection thread per statement,
//! which is a sixth of a busy protocol server's CPU time. Here the writes of
//! concurrent scans go to one task that puts up to [`BATCH`] of them in one
//! transaction: one multi-row insert for the records, one upsert per table
//! for the counters (summed per bucket, source and status), one for the cache
//! entries, one commit. A lone write goes at once: nothing waits to fill a
//! batch. Each caller still waits for the commit of the transaction that holds
//! its write, so nothing is acknowledged before it is stored. A batch that
//! fails is written again one write at a time, so each caller gets its own
//! write's result; both kinds of write are idempotent (a record is inserted
//! and counted once by id; a cache entry is an upsert).

use crate::sql::{HOUR_MS, MINUTE_MS, err};
use crate::{DbError, ScanRecord};
use sqlx::any::AnyArguments;
use sqlx::query::Query;
use sqlx::{Any, AnyPool, Row};
use std::collections::{BTreeMap, HashMap, HashSet};
use std::sync::Arc;
use tokio::sync::{mpsc, oneshot};

/// Most writes in one transaction (12 bind parameters per record: 768).
pub(crate) const BATCH: usize = 64;
/// Writes waiting for the writer task before callers wait to queue.
const QUEUE: usize = 1024;

/// One write, already serialised (so a write can only fail in the database).
pub(crate) enum Write {
    Record {
        rec: Box<ScanRecord>,
        verdict: String,
        /// Also the verdict-cache entry of the record's content and
        /// fingerprint, written at this time (Unix ms), in the same commit.
        cached_at: Option<i64>,
    },
    Cache {
        sha256: String,
        fingerprint: String,
        verdict: String,
        at: i64,
    },
}

type Reply = oneshot::Sender<Result<(), DbError>>;
type Queued = (Arc<Write>, Reply);

/// The queue to the writer task.
pub(crate) struct Writer {
    tx: Option<mpsc::Sender<Queued>>,
}

impl Writer {
    /// Starts the writer task on the current tokio runtime; without one,
    /// every write is written by its caller.
    pub(crate) fn start(pool: &AnyPool) -> Writer {
        let Ok(rt) = tokio::runtime::Handle::try_current() else {
            return Writer { tx: None };
        };
        let (tx, rx) = mpsc::channel(QUEUE);
        rt.spawn(run(pool.clone(), rx));
        Writer { tx: Some(tx) }
    }

    /// Writes `w` and returns once the transaction holding it has committed.
    /// Should the writer task be gone (its runtime shut down), the caller
    /// writes it itself.
    pub(crate) async fn write(&self, pool: &AnyPool, w: Write) -> Result<(), DbError> {
        let w = Arc::new(w);
        if let Some(tx) = &self.tx {
            let (reply, answer) = oneshot::channel();
            if tx.send((w.clone(), reply)).await.is_ok()
                && let Ok(res) = answer.await
            {
                return res;
            }
        }
        write_batch(pool, std::slice::from_ref(&w)).await
    }
}

async fn run(pool: AnyPool, mut rx: mpsc::Receiver<Queued>) {
    let mut batch: Vec<Queued> = Vec::with_capacity(BATCH);
    while rx.recv_many(&mut batch, BATCH).await > 0 {
        let writes: Vec<Arc<Write>> = batch.iter().map(|(w, _)| w.clone()).collect();
        match write_batch(&pool, &writes).await {
            Ok(()) => {
                for (_, reply) in batch.drain(..) {
                    let _ = reply.send(Ok(()));
                }
            }
            Err(e) => {
                tracing::debug!(error = %e, writes = writes.len(), "batched write failed; writing one by one");
                for (w, reply) in batch.drain(..) {
                    let _ = reply.send(write_alone(&pool, w).await);
                }
            }
        }
    }
}

/// One write in its own transaction; a record whose cache entry fails with
/// it is written again without the entry (the record is what must be kept).
async fn write_alone(pool: &AnyPool, w: Arc<Write>) -> Result<(), DbError> {
    let res = write_batch(pool, std::slice::from_ref(&w)).await;
    match (&*w, res) {
        (
            Write::Record {
                rec,
                verdict,
                cached_at: Some(_),
            },
            Err(e),
        ) => {
            tracing::warn!(error = %e, id = %rec.id, "record with its cache entry failed; recording alone");
            let bare = Arc::new(Write::Record {
                rec: rec.clone(),
                verdict: verdict.clone(),
                cached_at: None,
            });
            write_batch(pool, std::slice::from_ref(&bare)).await
        }
        (_, res) => res,
    }
}

/// `($k+1, ..., $k+width)` for row `row` of a multi-row `VALUES`.
fn placeholders(sql: &mut String, row: usize, width: usize) {
    if row > 0 {
        sql.push_str(", ");
    }
    sql.push('(');
    for c in 0..width {
        if c > 0 {
            sql.push_str(", ");
        }
        sql.push('$');
        sql.push_str(&(row * width + c + 1).to_string());
    }
    sql.push(')');
}

/// The upsert of `rows` verdict-cache entries.
fn cache_sql(rows: usize) -> String {
    let mut sql = String::from(
        "INSERT INTO moat_verdict_cache (sha256, fingerprint, verdict, created_at) VALUES ",
    );
    for i in 0..rows {
        placeholders(&mut sql, i, 4);
    }
    sql.push_str(
        " ON CONFLICT (sha256, fingerprint) DO UPDATE SET verdict = excluded.verdict, created_at = excluded.created_at",
    );
    sql
}

type CacheRows<'a> = HashMap<(&'a str, &'a str), (&'a str, i64)>;

/// [`cache_sql`] with the entries bound.
fn cache_query<'q>(sql: &'q str, caches: &CacheRows<'q>) -> Query<'q, Any, AnyArguments<'q>> {
    let mut q = sqlx::query(sql);
    for ((sha256, fingerprint), (verdict, at)) in caches {
        q = q.bind(*sha256).bind(*fingerprint).bind(*verdict).bind(*at);
    }
    q
}

/// All of `writes` in one transaction.
pub(crate) async fn write_batch(pool: &AnyPool, writes: &[Arc<Write>]) -> Result<(), DbError> {
    // Records once per id; cache entries once per key, the last one winning
    // (PostgreSQL refuses one upsert touching a row twice).
    let mut seen = HashSet::new();
    let mut recs = Vec::new();
    let mut caches: CacheRows = HashMap::new();
    for w in writes {
        match &**w {
            Write::Record {
                rec,
                verdict,
                cached_at,
            } => {
                if seen.insert(rec.id.as_str()) {
                    recs.push((rec, verdict.as_str()));
                }
                if let Some(at) = cached_at {
                    let key = (rec.verdict.sha256.as_str(), rec.fingerprint.as_str());
                    caches.insert(key, (verdict.as_str(), *at));
                }
            }
            Write::Cache {
                sha256,
                fingerprint,
                verdict,
                at,
            } => {
                caches.insert((sha256, fingerprint), (verdict, *at));
            }
        }
    }
    if recs.is_empty() && caches.is_empty() {
        return Ok(());
    }
    if recs.is_empty() {
        // Cache entries alone are one statement: no transaction around it.
        let sql = cache_sql(caches.len());
        let q = cache_query(&sql, &caches);
        q.execute(pool).await.map_err(err("write verdict cache"))?;
        return Ok(());
    }
    let mut tx = pool.begin().await.map_err(err("insert scan"))?;
    let mut sql = String::from(
        "INSERT INTO moat_scans (id, created_at, source, name, status, reason, sha256, size, fingerprint, cached, verdict, extra) VALUES ",
    );
    for i in 0..recs.len() {
        placeholders(&mut sql, i, 12);
    }
    sql.push_str(" ON CONFLICT (id) DO NOTHING RETURNING id");
    let mut q = sqlx::query(&sql);
    for (rec, verdict) in &recs {
        q = q
            .bind(rec.id.as_str())
            .bind(rec.created_at)
            .bind(rec.source.as_str())
            .bind(rec.name.as_str())
            .bind(rec.verdict.status.as_str())
            .bind(rec.verdict.reason.map(|r| r.as_str()))
            .bind(rec.verdict.sha256.as_str())
            .bind(rec.verdict.size as i64)
            .bind(rec.fingerprint.as_str())
            .bind(rec.cached as i64)
            .bind(*verdict)
            .bind(rec.extra.to_string());
    }
    let rows = q.fetch_all(&mut *tx).await.map_err(err("insert scan"))?;
    let mut inserted = HashSet::new();
    for row in &rows {
        let id: String = row.try_get("id").map_err(err("insert scan"))?;
        inserted.insert(id);
    }
    // Counted once: a record written again changes nothing.
    let mut minutes: BTreeMap<(i64, &str, &str), i64> = BTreeMap::new();
    let mut hours: BTreeMap<(i64, &str, &str), i64> = BTreeMap::new();
    for (rec, _) in recs.iter().filter(|(r, _)| inserted.contains(&r.id)) {
        let status = rec.verdict.status.as_str();
        let t = rec.created_at;
        *minutes
            .entry((t - t.rem_euclid(MINUTE_MS), &rec.source, status))
            .or_default() += 1;
        *hours
            .entry((t - t.rem_euclid(HOUR_MS), &rec.source, status))
            .or_default() += 1;
    }
    for (table, col, counts) in [
        ("moat_scan_counts", "minute", &minutes),
        ("moat_scan_counts_hour", "hour", &hours),
    ] {
        if counts.is_empty() {
            continue;
        }
        let mut sql = format!("INSERT INTO {table} ({col}, source, status, n) VALUES ");
        for i in 0..counts.len() {
            placeholders(&mut sql, i, 4);
        }
        sql.push_str(&format!(
            " ON CONFLICT ({col}, source, status) DO UPDATE SET n = {table}.n + excluded.n"
        ));
        let mut q = sqlx::query(&sql);
        for ((at, source, status), n) in counts {
            q = q.bind(*at).bind(*source).bind(*status).bind(*n);
        }
        q.execute(&mut *tx).await.map_err(err("count scan"))?;
    }
    if !caches.is_empty() {
        let sql = cache_sql(caches.len());
        let q = cache_query(&sql, &caches);
        q.execute(&mut *tx)
            .await
            .map_err(err("write verdict cache"))?;
    }
    tx.commit().await.map_err(err("insert scan"))?;
    Ok(())
}
