//! The SQL implementation of [`ScanStore`] over sqlx's `Any` driver.
//!
//! The SQL is written once for both backends: `$n` placeholders (SQLite
//! accepts them too), `BIGINT`/`TEXT` columns, and `ON CONFLICT` upserts.

use crate::writer::{Write, Writer};
use crate::{DbError, ScanFilter, ScanRecord, ScanStore, VerdictCount, VerdictCounts};
use async_trait::async_trait;
use moat_core::Verdict;
use sqlx::any::{AnyPoolOptions, install_default_drivers};
use sqlx::{AnyPool, Row};

const SCHEMA: &[&str] = &[
    "CREATE TABLE IF NOT EXISTS moat_scans (
        id TEXT PRIMARY KEY,
        created_at BIGINT NOT NULL,
        source TEXT NOT NULL,
        name TEXT NOT NULL,
        status TEXT NOT NULL,
        reason TEXT,
        sha256 TEXT NOT NULL,
        size BIGINT NOT NULL,
        fingerprint TEXT NOT NULL,
        cached BIGINT NOT NULL,
        verdict TEXT NOT NULL,
        extra TEXT NOT NULL
    )",
    "CREATE INDEX IF NOT EXISTS moat_scans_sha256 ON moat_scans (sha256)",
    // The dashboard's filters: newest first within one source or one status.
    "CREATE INDEX IF NOT EXISTS moat_scans_source ON moat_scans (source, id)",
    "CREATE INDEX IF NOT EXISTS moat_scans_status ON moat_scans (status, id)",
    // Scans per minute, source and status, kept as records are written, so
    // the verdict chart reads at most a week of minutes, whatever the
    // number of records.
    "CREATE TABLE IF NOT EXISTS moat_scan_counts (
        minute BIGINT NOT NULL,
        source TEXT NOT NULL,
        status TEXT NOT NULL,
        n BIGINT NOT NULL,
        PRIMARY KEY (minute, source, status)
    )",
    // The same per hour, for windows counted in whole hours (a week: 168
    // rows per source and status instead of 10,080).
    "CREATE TABLE IF NOT EXISTS moat_scan_counts_hour (
        hour BIGINT NOT NULL,
        source TEXT NOT NULL,
        status TEXT NOT NULL,
        n BIGINT NOT NULL,
        PRIMARY KEY (hour, source, status)
    )",
    "CREATE TABLE IF NOT EXISTS moat_verdict_cache (
        sha256 TEXT NOT NULL,
        fingerprint TEXT NOT NULL,
        verdict TEXT NOT NULL,
        created_at BIGINT NOT NULL,
        PRIMARY KEY (sha256, fingerprint)
    )",
];

pub struct SqlStore {
    pub(crate) pool: AnyPool,
    backend: &'static str,
    /// Records and cache entries of concurrent scans, committed together.
    writer: Writer,
}

pub(crate) fn err(op: &'static str) -> impl FnOnce(sqlx::Error) -> DbError {
    move |source| DbError::Sqlx { op, source }
}

/// Pool size and SQLite pragmas, per use of the database.
pub(crate) struct Tuning {
    /// Connections to PostgreSQL (SQLite always gets 4).
    pub max_postgres: u32,
    pub busy_timeout_ms: u32,
    /// SQLite `synchronous`: `NORMAL`, or `FULL` where a commit must survive a power cut.
    pub synchronous: &'static str,
}

/// Open a pool on `sqlite://PATH` (created if missing, WAL mode) or
/// `postgres://...`; returns the pool and the backend name.
pub(crate) async fn connect(url: &str, t: Tuning) -> Result<(AnyPool, &'static str), DbError> {
    install_default_drivers();
    let (backend, url) = if let Some(path) = url.strip_prefix("sqlite://") {
        let sep = if path.contains('?') { '&' } else { '?' };
        let url = if path.contains("mode=") {
            url.to_string()
        } else {
            format!("{url}{sep}mode=rwc")
        };
        ("sqlite", url)
    } else if url.starts_with("postgres://") || url.starts_with("postgresql://") {
        ("postgres", url.to_string())
    } else {
        return Err(DbError::Url(url.to_string()));
    };
    let is_sqlite = backend == "sqlite";
    let busy = format!("PRAGMA busy_timeout={}", t.busy_timeout_ms);
    let sync = format!("PRAGMA synchronous={}", t.synchronous);
    // No idle timeout and no maximum lifetime: either makes sqlx (0.8.6 and
    // 0.9.0) run a pool maintenance task whose sweep loops over an idle
    // count that a race can wrap to usize::MAX, spinning a core forever
    // (sqlx issue 3645, fix in pull request 4289, not released). Seen here
    // in CI: `moat portal create-admin` spun for ten minutes after printing
    // its result. Broken PostgreSQL connections are still found before use
    // (`test_before_acquire`). Not for SQLite: there it is a round trip to
    // the connection's thread on every acquire (two per scan, for a file
    // that cannot hang up), and the thread switches are what a busy
    // protocol server spends most on besides the scan itself.
    let pool = AnyPoolOptions::new()
        .max_connections(if is_sqlite { 4 } else { t.max_postgres })
        .test_before_acquire(!is_sqlite)
        .idle_timeout(None)
        .max_lifetime(None)
        .after_connect(move |conn, _| {
            let (busy, sync) = (busy.clone(), sync.clone());
            Box::pin(async move {
                if is_sqlite {
                    sqlx::query("PRAGMA journal_mode=WAL")
                        .execute(&mut *conn)
                        .await?;
                    sqlx::query(&busy).execute(&mut *conn).await?;
                    sqlx::query(&sync).execute(&mut *conn).await?;
                }
                Ok(())
            })
        })
        .connect(&url)
        .await
        .map_err(err("connect"))?;
    Ok((pool, backend))
}

impl SqlStore {
    /// A record, with its verdict-cache entry written at `cached_at` when
    /// given, through the group-commit writer.
    async fn write_record(&self, rec: &ScanRecord, cached_at: Option<i64>) -> Result<(), DbError> {
        let verdict = serde_json::to_string(&rec.verdict).map_err(|source| DbError::Corrupt {
            id: rec.id.clone(),
            source,
        })?;
        let w = Write::Record {
            rec: Box::new(rec.clone()),
            verdict,
            cached_at,
        };
        self.writer.write(&self.pool, w).await
    }

    pub async fn open(url: &str) -> Result<SqlStore, DbError> {
        let (pool, backend) = connect(
            url,
            Tuning {
                max_postgres: 16,
                busy_timeout_ms: 5000,
                synchronous: "NORMAL",
            },
        )
        .await?;
        for stmt in SCHEMA {
            sqlx::query(stmt)
                .execute(&pool)
                .await
                .map_err(err("create schema"))?;
        }
        let writer = Writer::start(&pool);
        Ok(SqlStore {
            pool,
            backend,
            writer,
        })
    }
}

fn row_to_record(row: &sqlx::any::AnyRow) -> Result<ScanRecord, DbError> {
    let id: String = row.try_get("id").map_err(err("read row"))?;
    let verdict: String = row.try_get("verdict").map_err(err("read row"))?;
    let extra: String = row.try_get("extra").map_err(err("read row"))?;
    let verdict: Verdict = serde_json::from_str(&verdict).map_err(|source| DbError::Corrupt {
        id: id.clone(),
        source,
    })?;
    let extra = serde_json::from_str(&extra).unwrap_or(serde_json::Value::Null);
    Ok(ScanRecord {
        created_at: row.try_get("created_at").map_err(err("read row"))?,
        source: row.try_get("source").map_err(err("read row"))?,
        name: row.try_get("name").map_err(err("read row"))?,
        fingerprint: row.try_get("fingerprint").map_err(err("read row"))?,
        cached: row.try_get::<i64, _>("cached").map_err(err("read row"))? != 0,
        id,
        verdict,
        extra,
    })
}

pub(crate) const MINUTE_MS: i64 = 60_000;
pub(crate) const HOUR_MS: i64 = 3_600_000;

/// Now, in Unix milliseconds (the cache's `created_at`).
fn now_ms() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| i64::try_from(d.as_millis()).unwrap_or(i64::MAX))
}

const COLUMNS: &str = "id, created_at, source, name, fingerprint, cached, verdict, extra";

#[async_trait]
impl ScanStore for SqlStore {
    async fn record(&self, rec: &ScanRecord) -> Result<(), DbError> {
        self.write_record(rec, None).await
    }

    async fn record_cached(&self, rec: &ScanRecord) -> Result<(), DbError> {
        self.write_record(rec, Some(now_ms())).await
    }

    async fn get(&self, id: &str) -> Result<Option<ScanRecord>, DbError> {
        let row = sqlx::query(&format!("SELECT {COLUMNS} FROM moat_scans WHERE id = $1"))
            .bind(id)
            .fetch_optional(&self.pool)
            .await
            .map_err(err("get scan"))?;
        row.as_ref().map(row_to_record).transpose()
    }

    async fn list(&self, limit: u32, before: Option<&str>) -> Result<Vec<ScanRecord>, DbError> {
        self.list_where(limit, before, &ScanFilter::default()).await
    }

    async fn list_where(
        &self,
        limit: u32,
        before: Option<&str>,
        filter: &ScanFilter,
    ) -> Result<Vec<ScanRecord>, DbError> {
        let limit = i64::from(limit.clamp(1, 1000));
        let mut conds = Vec::new();
        let mut args: Vec<&str> = Vec::new();
        for (col, v) in [
            ("id <", before),
            ("source =", filter.source.as_deref()),
            ("status =", filter.status.as_deref()),
        ] {
            if let Some(v) = v {
                args.push(v);
                conds.push(format!("{col} ${}", args.len()));
            }
        }
        let wh = if conds.is_empty() {
            String::new()
        } else {
            format!("WHERE {}", conds.join(" AND "))
        };
        let sql = format!(
            "SELECT {COLUMNS} FROM moat_scans {wh} ORDER BY id DESC LIMIT ${}",
            args.len() + 1
        );
        let mut q = sqlx::query(&sql);
        for a in args {
            q = q.bind(a);
        }
        let rows = q
            .bind(limit)
            .fetch_all(&self.pool)
            .await
            .map_err(err("list scans"))?;
        rows.iter().map(row_to_record).collect()
    }

    async fn verdict_counts(
        &self,
        since_ms: i64,
        bucket_ms: i64,
    ) -> Result<VerdictCounts, DbError> {
        // Buckets are whole minutes (the counts' resolution); whole hours
        // read the hourly counts.
        let bucket = bucket_ms.max(MINUTE_MS) / MINUTE_MS * MINUTE_MS;
        let (table, col, unit) = if bucket % HOUR_MS == 0 {
            ("moat_scan_counts_hour", "hour", HOUR_MS)
        } else {
            ("moat_scan_counts", "minute", MINUTE_MS)
        };
        let since = since_ms - since_ms.rem_euclid(unit);
        let rows = sqlx::query(&format!(
            "SELECT ({col} / $2) * $2 AS bucket, status, CAST(SUM(n) AS BIGINT) AS n
               FROM {table} WHERE {col} >= $1
              GROUP BY 1, 2 ORDER BY 1, 2"
        ))
        .bind(since)
        .bind(bucket)
        .fetch_all(&self.pool)
        .await
        .map_err(err("count verdicts"))?;
        let count = |r: &sqlx::any::AnyRow| -> Result<u64, DbError> {
            let n: i64 = r.try_get("n").map_err(err("count verdicts"))?;
            Ok(u64::try_from(n).unwrap_or(0))
        };
        let mut out = VerdictCounts::default();
        for r in &rows {
            out.buckets.push(VerdictCount {
                bucket: r.try_get("bucket").map_err(err("count verdicts"))?,
                status: r.try_get("status").map_err(err("count verdicts"))?,
                count: count(r)?,
            });
        }
        let rows = sqlx::query(&format!(
            "SELECT source, CAST(SUM(n) AS BIGINT) AS n FROM {table} WHERE {col} >= $1
              GROUP BY 1 ORDER BY 1"
        ))
        .bind(since)
        .fetch_all(&self.pool)
        .await
        .map_err(err("count verdicts"))?;
        for r in &rows {
            let source: String = r.try_get("source").map_err(err("count verdicts"))?;
            out.sources.push((source, count(r)?));
        }
        Ok(out)
    }

    async fn cache_get(
        &self,
        sha256: &str,
        fingerprint: &str,
        max_age: Option<std::time::Duration>,
    ) -> Result<Option<Verdict>, DbError> {
        // created_at is in milliseconds.
        let not_before = match max_age {
            Some(age) => std::time::SystemTime::now()
                .checked_sub(age)
                .and_then(|t| t.duration_since(std::time::UNIX_EPOCH).ok())
                .map_or(0, |d| i64::try_from(d.as_millis()).unwrap_or(i64::MAX)),
            None => i64::MIN,
        };
        let row = sqlx::query(
            "SELECT verdict FROM moat_verdict_cache WHERE sha256 = $1 AND fingerprint = $2 AND created_at >= $3",
        )
        .bind(sha256)
        .bind(fingerprint)
        .bind(not_before)
        .fetch_optional(&self.pool)
        .await
        .map_err(err("read verdict cache"))?;
        let Some(row) = row else { return Ok(None) };
        let text: String = row.try_get("verdict").map_err(err("read verdict cache"))?;
        // A cache entry that no longer parses is a miss, not a failure.
        Ok(serde_json::from_str(&text).ok())
    }

    async fn cache_put(&self, fingerprint: &str, verdict: &Verdict) -> Result<(), DbError> {
        let text = serde_json::to_string(verdict).map_err(|source| DbError::Corrupt {
            id: verdict.sha256.clone(),
            source,
        })?;
        let w = Write::Cache {
            sha256: verdict.sha256.clone(),
            fingerprint: fingerprint.to_string(),
            verdict: text,
            at: now_ms(),
        };
        self.writer.write(&self.pool, w).await
    }

    async fn ping(&self) -> Result<(), DbError> {
        sqlx::query("SELECT 1")
            .execute(&self.pool)
            .await
            .map_err(err("ping"))?;
        Ok(())
    }

    fn backend(&self) -> &'static str {
        self.backend
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use moat_core::{EngineReport, Status};
    use std::sync::Arc;

    pub(crate) fn verdict(sha: &str, status: Status) -> Verdict {
        let e = EngineReport::new("builtin", status, None);
        Verdict::aggregate(vec![e], vec![], sha.into(), 3, "text/plain".into(), 1)
    }

    #[tokio::test]
    async fn sqlite_records_pages_and_caches() {
        let dir = tempfile::tempdir().unwrap();
        let url = format!("sqlite://{}/moat.db", dir.path().display());
        let store = SqlStore::open(&url).await.unwrap();
        assert_eq!(store.backend(), "sqlite");
        let mut ids = Vec::new();
        for i in 0..5 {
            let rec = ScanRecord::new(
                "api",
                &format!("f{i}"),
                "fp",
                false,
                verdict(&format!("{i:064}"), Status::Clean),
            );
            store.record(&rec).await.unwrap();
            // Recording twice is harmless.
            store.record(&rec).await.unwrap();
            ids.push(rec.id);
        }
        let page = store.list(2, None).await.unwrap();
        assert_eq!(
            page.iter().map(|r| r.name.as_str()).collect::<Vec<_>>(),
            ["f4", "f3"]
        );
        let page2 = store.list(2, Some(&page[1].id)).await.unwrap();
        assert_eq!(
            page2.iter().map(|r| r.name.as_str()).collect::<Vec<_>>(),
            ["f2", "f1"]
        );
        let got = store.get(&ids[0]).await.unwrap().unwrap();
        assert_eq!(got.name, "f0");
        assert!(store.get("nope").await.unwrap().is_none());

        let v = verdict(&"a".repeat(64), Status::Infected);
        assert!(
            store
                .cache_get(&v.sha256, "fp", None)
                .await
                .unwrap()
                .is_none()
        );
        store.cache_put("fp", &v).await.unwrap();
        store.cache_put("fp", &v).await.unwrap();
        assert_eq!(
            store.cache_get(&v.sha256, "fp", None).await.unwrap(),
            Some(v.clone())
        );
        assert!(
            store
                .cache_get(&v.sha256, "other-fp", None)
                .await
                .unwrap()
                .is_none()
        );
        // An entry older than the asked maximum age is a miss.
        let hour = std::time::Duration::from_secs(3600);
        assert!(
            store
                .cache_get(&v.sha256, "fp", Some(hour))
                .await
                .unwrap()
                .is_some()
        );
        std::thread::sleep(std::time::Duration::from_millis(30));
        let short = std::time::Duration::from_millis(10);
        assert!(
            store
                .cache_get(&v.sha256, "fp", Some(short))
                .await
                .unwrap()
                .is_none()
        );
        // Reopening finds the same data (schema creation is idempotent).
        drop(store);
        let store = SqlStore::open(&url).await.unwrap();
        assert_eq!(store.list(10, None).await.unwrap().len(), 5);
    }

    #[tokio::test]
    async fn rejects_unknown_urls() {
        assert!(matches!(
            SqlStore::open("mysql://x").await,
            Err(DbError::Url(_))
        ));
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 4)]
    async fn concurrent_writes_are_all_stored_and_each_record_counted_once() {
        let dir = tempfile::tempdir().unwrap();
        let url = format!("sqlite://{}/moat.db", dir.path().display());
        let store = Arc::new(SqlStore::open(&url).await.unwrap());
        let recs: Vec<ScanRecord> = (0..300)
            .map(|i| {
                let status = if i % 3 == 0 {
                    Status::Infected
                } else {
                    Status::Clean
                };
                let src = if i % 2 == 0 { "clamd" } else { "icap" };
                ScanRecord::new(
                    src,
                    &format!("f{i}"),
                    "fp",
                    false,
                    verdict(&format!("{i:064x}"), status),
                )
            })
            .collect();
        // Every record written twice and cached, by 300 concurrent writers;
        // half cache apart from the record, half with it.
        let mut tasks = Vec::new();
        for (i, rec) in recs.iter().cloned().enumerate() {
            let store = store.clone();
            tasks.push(tokio::spawn(async move {
                if i % 2 == 0 {
                    store.cache_put("fp", &rec.verdict).await.unwrap();
                    store.record(&rec).await.unwrap();
                } else {
                    store.record_cached(&rec).await.unwrap();
                }
                store.record(&rec).await.unwrap();
            }));
        }
        for t in tasks {
            t.await.unwrap();
        }
        assert_eq!(store.list(1000, None).await.unwrap().len(), 300);
        for rec in &recs {
            let got = store.get(&rec.id).await.unwrap().unwrap();
            assert_eq!(
                (got.name.as_str(), got.verdict.status),
                (rec.name.as_str(), rec.verdict.status)
            );
            let cached = store
                .cache_get(&rec.verdict.sha256, "fp", None)
                .await
                .unwrap()
                .unwrap();
            assert_eq!(cached.status, rec.verdict.status);
        }
        for bucket in [60_000, 3_600_000] {
            let c = store.verdict_counts(0, bucket).await.unwrap();
            let by_status = |s: &str| {
                c.buckets
                    .iter()
                    .filter(|b| b.status == s)
                    .map(|b| b.count)
                    .sum::<u64>()
            };
            assert_eq!(
                (by_status("infected"), by_status("clean")),
                (100, 200),
                "bucket {bucket}"
            );
            let mut sources = c.sources.clone();
            sources.sort();
            assert_eq!(
                sources,
                [("clamd".to_string(), 150), ("icap".to_string(), 150)]
            );
        }
    }

    #[tokio::test]
    async fn a_record_whose_cache_entry_fails_is_still_recorded() {
        let dir = tempfile::tempdir().unwrap();
        let url = format!("sqlite://{}/moat.db", dir.path().display());
        let store = SqlStore::open(&url).await.unwrap();
        let rec = ScanRecord::new(
            "clamd",
            "f",
            "fp",
            false,
            verdict(&"a".repeat(64), Status::Clean),
        );
        store.record_cached(&rec).await.unwrap();
        assert!(store.get(&rec.id).await.unwrap().is_some());
        let cached = store
            .cache_get(&rec.verdict.sha256, "fp", None)
            .await
            .unwrap();
        assert_eq!(cached.map(|v| v.status), Some(Status::Clean));
        // Without a cache table, the pair fails; the record alone does not.
        sqlx::query("DROP TABLE moat_verdict_cache")
            .execute(&store.pool)
            .await
            .unwrap();
        let rec = ScanRecord::new(
            "clamd",
            "g",
            "fp",
            false,
            verdict(&"b".repeat(64), Status::Infected),
        );
        store.record_cached(&rec).await.unwrap();
        let got = store.get(&rec.id).await.unwrap().unwrap();
        assert_eq!(got.verdict.status, Status::Infected);
        let c = store.verdict_counts(0, 60_000).await.unwrap();
        assert_eq!(c.sources, [("clamd".to_string(), 2)]);
    }

    #[test]
    fn a_store_outliving_the_runtime_that_opened_it_still_records() {
        let dir = tempfile::tempdir().unwrap();
        let url = format!("sqlite://{}/moat.db", dir.path().display());
        let first = tokio::runtime::Runtime::new().unwrap();
        let store = first.block_on(SqlStore::open(&url)).unwrap();
        // The writer task ended with its runtime.
        drop(first);
        let second = tokio::runtime::Runtime::new().unwrap();
        let rec = ScanRecord::new(
            "cli",
            "f",
            "fp",
            false,
            verdict(&"b".repeat(64), Status::Clean),
        );
        second.block_on(store.record(&rec)).unwrap();
        assert_eq!(
            second.block_on(store.get(&rec.id)).unwrap().unwrap().name,
            "f"
        );
    }
}
