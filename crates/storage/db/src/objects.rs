//! The bucket role's object ledger: one row per object version, with the
//! state of its processing under an engine-set fingerprint.
//!
//! It makes the bucket pipeline idempotent and backfill resumable: an object
//! whose row says `done` with the same ETag and the current fingerprint is
//! not scanned again; one that says `scanned` reuses its recorded verdict and
//! only redoes the (idempotent) actions.

use crate::DbError;
use crate::sql::{SqlStore, err};
use sqlx::{AnyPool, Row};

const SCHEMA: &[&str] = &["CREATE TABLE IF NOT EXISTS moat_bucket_objects (
        bucket TEXT NOT NULL,
        object_key TEXT NOT NULL,
        version TEXT NOT NULL,
        etag TEXT NOT NULL,
        fingerprint TEXT NOT NULL,
        state TEXT NOT NULL,
        status TEXT NOT NULL,
        reason TEXT NOT NULL,
        record_id TEXT NOT NULL,
        action_error TEXT NOT NULL,
        updated_at BIGINT NOT NULL,
        PRIMARY KEY (bucket, object_key, version)
    )"];

/// Where an object is in the pipeline.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ObjectState {
    /// Verdict recorded (`record_id`), actions not (yet) all done.
    Scanned,
    /// Verdict recorded and every action done.
    Done,
    /// Actions failed; `action_error` says why. Retried until dead-lettered.
    ActionFailed,
    /// The object was gone (404) when moat came to fetch it.
    Missing,
    /// Skipped by a skip rule.
    Skipped,
}

impl ObjectState {
    pub fn as_str(self) -> &'static str {
        match self {
            ObjectState::Scanned => "scanned",
            ObjectState::Done => "done",
            ObjectState::ActionFailed => "action_failed",
            ObjectState::Missing => "missing",
            ObjectState::Skipped => "skipped",
        }
    }
    fn parse(s: &str) -> Option<ObjectState> {
        Some(match s {
            "scanned" => ObjectState::Scanned,
            "done" => ObjectState::Done,
            "action_failed" => ObjectState::ActionFailed,
            "missing" => ObjectState::Missing,
            "skipped" => ObjectState::Skipped,
            _ => return None,
        })
    }
}

/// One ledger row. Empty strings stand for "none".
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ObjectRow {
    pub bucket: String,
    pub key: String,
    pub version: String,
    pub etag: String,
    pub fingerprint: String,
    pub state: ObjectState,
    pub status: String,
    pub reason: String,
    pub record_id: String,
    pub action_error: String,
    pub updated_at: i64,
}

#[derive(Clone)]
pub struct ObjectLedger {
    pool: AnyPool,
}

fn now_ms() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_millis() as i64)
        .unwrap_or(0)
}

/// Open the ledger in the database named by `url` (same URLs as [`crate::open`]).
pub async fn open_objects(url: &str) -> Result<ObjectLedger, DbError> {
    let store = SqlStore::open(url).await?;
    let pool = store.pool.clone();
    for stmt in SCHEMA {
        sqlx::query(stmt)
            .execute(&pool)
            .await
            .map_err(err("create schema"))?;
    }
    Ok(ObjectLedger { pool })
}

const COLS: &str = "bucket, object_key, version, etag, fingerprint, state, status, reason, record_id, action_error, updated_at";

impl ObjectLedger {
    pub async fn get(
        &self,
        bucket: &str,
        key: &str,
        version: &str,
    ) -> Result<Option<ObjectRow>, DbError> {
        let row = sqlx::query(&format!(
            "SELECT {COLS} FROM moat_bucket_objects WHERE bucket = $1 AND object_key = $2 AND version = $3"
        ))
        .bind(bucket)
        .bind(key)
        .bind(version)
        .fetch_optional(&self.pool)
        .await
        .map_err(err("read object"))?;
        row.map(|r| to_row(&r)).transpose()
    }

    /// Insert or replace the row for (bucket, key, version); `updated_at` is set to now.
    pub async fn put(&self, r: &ObjectRow) -> Result<(), DbError> {
        sqlx::query(
            "INSERT INTO moat_bucket_objects (bucket, object_key, version, etag, fingerprint, state, status, reason, record_id, action_error, updated_at)
             VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11)
             ON CONFLICT (bucket, object_key, version) DO UPDATE SET
               etag = excluded.etag, fingerprint = excluded.fingerprint, state = excluded.state,
               status = excluded.status, reason = excluded.reason, record_id = excluded.record_id,
               action_error = excluded.action_error, updated_at = excluded.updated_at",
        )
        .bind(&r.bucket)
        .bind(&r.key)
        .bind(&r.version)
        .bind(&r.etag)
        .bind(&r.fingerprint)
        .bind(r.state.as_str())
        .bind(&r.status)
        .bind(&r.reason)
        .bind(&r.record_id)
        .bind(&r.action_error)
        .bind(now_ms())
        .execute(&self.pool)
        .await
        .map_err(err("write object"))?;
        Ok(())
    }

    /// Rows of a bucket under a key prefix, in key order (at most `limit`).
    pub async fn list(
        &self,
        bucket: &str,
        prefix: &str,
        limit: u32,
    ) -> Result<Vec<ObjectRow>, DbError> {
        let rows = sqlx::query(&format!(
            "SELECT {COLS} FROM moat_bucket_objects WHERE bucket = $1 AND substr(object_key, 1, $2) = $3 ORDER BY object_key, version LIMIT $4"
        ))
        .bind(bucket)
        .bind(prefix.chars().count() as i64)
        .bind(prefix)
        .bind(i64::from(limit))
        .fetch_all(&self.pool)
        .await
        .map_err(err("list objects"))?;
        rows.iter().map(to_row).collect()
    }
}

fn to_row(r: &sqlx::any::AnyRow) -> Result<ObjectRow, DbError> {
    let g = |c: &'static str| r.try_get::<String, _>(c).map_err(err("read object row"));
    let state = g("state")?;
    Ok(ObjectRow {
        bucket: g("bucket")?,
        key: g("object_key")?,
        version: g("version")?,
        etag: g("etag")?,
        fingerprint: g("fingerprint")?,
        state: ObjectState::parse(&state).unwrap_or(ObjectState::ActionFailed),
        status: g("status")?,
        reason: g("reason")?,
        record_id: g("record_id")?,
        action_error: g("action_error")?,
        updated_at: r.try_get("updated_at").map_err(err("read object row"))?,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn row(key: &str, state: ObjectState) -> ObjectRow {
        ObjectRow {
            bucket: "b".into(),
            key: key.into(),
            version: String::new(),
            etag: "e".into(),
            fingerprint: "fp".into(),
            state,
            status: "clean".into(),
            reason: String::new(),
            record_id: "r".into(),
            action_error: String::new(),
            updated_at: 0,
        }
    }

    #[tokio::test]
    async fn ledger_upserts_and_lists() {
        let dir = tempfile::tempdir().unwrap();
        let url = format!("sqlite://{}/moat.db", dir.path().display());
        let l = open_objects(&url).await.unwrap();
        assert!(l.get("b", "a/1", "").await.unwrap().is_none());
        l.put(&row("a/1", ObjectState::Scanned)).await.unwrap();
        l.put(&row("a/1", ObjectState::Done)).await.unwrap();
        l.put(&row("b/2", ObjectState::Missing)).await.unwrap();
        let got = l.get("b", "a/1", "").await.unwrap().unwrap();
        assert_eq!(got.state, ObjectState::Done);
        assert!(got.updated_at > 0);
        let all = l.list("b", "", 100).await.unwrap();
        assert_eq!(all.len(), 2);
        let a = l.list("b", "a/", 100).await.unwrap();
        assert_eq!(a.len(), 1);
        assert_eq!(a[0].key, "a/1");
        // A second open of the same database is fine (idempotent schema).
        let l2 = open_objects(&url).await.unwrap();
        assert_eq!(l2.list("b", "", 100).await.unwrap().len(), 2);
    }
}
