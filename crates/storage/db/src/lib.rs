//! moat-db: where scan records and cached verdicts live.
//!
//! [`ScanStore`] is the trait the roles use. [`open`] picks the backend from a
//! URL: `sqlite://PATH` (the embedded default, created if missing, WAL mode)
//! or `postgres://...`. Both run the same SQL through sqlx's `Any` driver; the
//! schema is created on open and is idempotent.
#![forbid(unsafe_code)]

pub mod objects;
mod queue;
mod sql;
mod writer;

use async_trait::async_trait;
use moat_core::Verdict;
use serde_json::Value;
use std::sync::Arc;

pub use objects::{ObjectLedger, ObjectRow, ObjectState, open_objects};
pub use queue::{EventQueue, QueueStats, QueuedEvent, SqlQueue, open_queue};
pub use sql::SqlStore;

/// A connection pool on `sqlite://PATH` (created if missing, WAL mode) or
/// `postgres://...`, with the same setup as the scan store, for roles that
/// keep their own tables in the same database (the portal). Returns the pool
/// and the backend name (`sqlite` or `postgres`).
pub async fn pool(url: &str) -> Result<(sqlx::AnyPool, &'static str), DbError> {
    sql::connect(
        url,
        sql::Tuning {
            max_postgres: 16,
            busy_timeout_ms: 10000,
            synchronous: "FULL",
        },
    )
    .await
}

/// A database error, with what was being done.
#[derive(Debug, thiserror::Error)]
pub enum DbError {
    #[error("unsupported database URL {0:?}: expected sqlite://PATH or postgres://...")]
    Url(String),
    #[error("database {op}: {source}")]
    Sqlx {
        op: &'static str,
        source: sqlx::Error,
    },
    /// A message broker serving as the work queue (RabbitMQ, NATS JetStream).
    #[error("queue broker {op}: {detail}")]
    Broker { op: &'static str, detail: String },
    #[error("stored verdict for {id} is unreadable: {source}")]
    Corrupt {
        id: String,
        source: serde_json::Error,
    },
}

/// One recorded scan.
#[derive(Debug, Clone, PartialEq)]
pub struct ScanRecord {
    /// Time-ordered (UUIDv7), so newest-first is `ORDER BY id DESC`.
    pub id: String,
    /// Unix milliseconds.
    pub created_at: i64,
    /// Which role scanned it: `api`, `cli`, `proxy`, `bucket`, ...
    pub source: String,
    /// The file name or object key as given (display only).
    pub name: String,
    /// The engine-set fingerprint the verdict was produced with.
    pub fingerprint: String,
    /// Answered from the verdict cache rather than scanned again.
    pub cached: bool,
    pub verdict: Verdict,
    /// Role-specific extra data (e.g. the policy action).
    pub extra: Value,
}

impl ScanRecord {
    pub fn new(
        source: &str,
        name: &str,
        fingerprint: &str,
        cached: bool,
        verdict: Verdict,
    ) -> Self {
        let now = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| d.as_millis() as i64)
            .unwrap_or(0);
        ScanRecord {
            id: uuid::Uuid::now_v7().to_string(),
            created_at: now,
            source: source.to_string(),
            name: name.to_string(),
            fingerprint: fingerprint.to_string(),
            cached,
            verdict,
            extra: Value::Null,
        }
    }
}

/// Which records [`ScanStore::list_where`] returns (all when empty).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ScanFilter {
    /// Only this source (`api`, `proxy`, `portal`, ...).
    pub source: Option<String>,
    /// Only this verdict status (`clean`, `infected`, ...).
    pub status: Option<String>,
}

/// Scans recorded in one time bucket with one status.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct VerdictCount {
    /// The bucket's start, Unix milliseconds (a multiple of its width).
    pub bucket: i64,
    pub status: String,
    pub count: u64,
}

/// What [`ScanStore::verdict_counts`] returns: per bucket and status, and
/// per source over the whole window.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct VerdictCounts {
    /// Oldest bucket first, then by status.
    pub buckets: Vec<VerdictCount>,
    /// `(source, scans)` by source name.
    pub sources: Vec<(String, u64)>,
}

/// Storage for scan records and the verdict cache.
#[async_trait]
pub trait ScanStore: Send + Sync {
    /// Record a scan. Idempotent on `id`.
    async fn record(&self, rec: &ScanRecord) -> Result<(), DbError>;
    async fn get(&self, id: &str) -> Result<Option<ScanRecord>, DbError>;
    /// Newest first; `before` is the id of the last record of the previous page.
    async fn list(&self, limit: u32, before: Option<&str>) -> Result<Vec<ScanRecord>, DbError>;
    /// As [`ScanStore::list`], only the records `filter` admits.
    async fn list_where(
        &self,
        limit: u32,
        before: Option<&str>,
        filter: &ScanFilter,
    ) -> Result<Vec<ScanRecord>, DbError>;
    /// Scans recorded since `since_ms` (Unix ms, rounded down to the
    /// minute, or to the hour when `bucket_ms` is whole hours), counted per
    /// bucket of `bucket_ms` (rounded to whole minutes) and status, and per
    /// source. The work is bounded by the minutes (hours) in the window,
    /// not by the number of records.
    async fn verdict_counts(&self, since_ms: i64, bucket_ms: i64)
    -> Result<VerdictCounts, DbError>;
    /// A cached verdict for this content under this engine-set fingerprint,
    /// written at most `max_age` ago when given.
    async fn cache_get(
        &self,
        sha256: &str,
        fingerprint: &str,
        max_age: Option<std::time::Duration>,
    ) -> Result<Option<Verdict>, DbError>;
    async fn cache_put(&self, fingerprint: &str, verdict: &Verdict) -> Result<(), DbError>;
    /// Record a scan and cache its verdict under the record's fingerprint,
    /// in one commit where the store can (a scan otherwise pays two writes
    /// in a row). The record is what must be stored: should the pair fail,
    /// the record is written alone, and the cache entry is only logged.
    async fn record_cached(&self, rec: &ScanRecord) -> Result<(), DbError> {
        if let Err(e) = self.cache_put(&rec.fingerprint, &rec.verdict).await {
            tracing::warn!(error = %e, "verdict cache write failed");
        }
        self.record(rec).await
    }
    /// Cheap liveness check for `/readyz`.
    async fn ping(&self) -> Result<(), DbError>;
    /// `sqlite` or `postgres`.
    fn backend(&self) -> &'static str;
}

/// Open the store named by `url`, creating the schema if needed.
pub async fn open(url: &str) -> Result<Arc<dyn ScanStore>, DbError> {
    Ok(Arc::new(SqlStore::open(url).await?))
}
