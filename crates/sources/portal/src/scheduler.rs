//! The scheduler: expires packages at their expiry, purges them after the
//! retention period (ciphertext deleted and checked gone; metadata and audit
//! kept), re-queues scan jobs of packages stuck past their deadline, and
//! removes abandoned uploads. It runs on one node: the holder of a
//! PostgreSQL advisory lock (held on a dedicated connection, so it is
//! released when that node dies and another takes over), or the single
//! process on SQLite.

use crate::state::{Change, FileStatus, PkgState};
use crate::store::{Actor, now_ms};
use crate::{Portal, error::Result};
use serde_json::json;
use sqlx::Row;
use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

/// The advisory lock key ("moatPSCH").
const LOCK_KEY: i64 = 0x6d6f_6174_5053_4348;

fn system() -> Actor {
    Actor {
        id: Some("system".into()),
        ..Actor::default()
    }
}

pub fn spawn(
    p: Arc<Portal>,
    stop: tokio::sync::watch::Receiver<bool>,
) -> tokio::task::JoinHandle<()> {
    tokio::spawn(run(p, stop))
}

struct Leader {
    conn: Option<sqlx::pool::PoolConnection<sqlx::Any>>,
}

impl Leader {
    /// Whether this node leads now (taking the lock if it is free).
    async fn check(&mut self, p: &Portal) -> bool {
        if p.store.backend() != "postgres" {
            return true;
        }
        if let Some(c) = self.conn.as_mut() {
            // still our connection? (the lock lives as long as it does)
            if sqlx::query("SELECT 1").execute(&mut **c).await.is_ok() {
                return true;
            }
            self.conn = None;
        }
        let Ok(mut c) = p.store.pool().acquire().await else {
            return false;
        };
        let got = sqlx::query("SELECT pg_try_advisory_lock($1) AS ok")
            .bind(LOCK_KEY)
            .fetch_one(&mut *c)
            .await
            .and_then(|r| r.try_get::<bool, _>("ok"));
        match got {
            Ok(true) => {
                tracing::info!("portal scheduler: this node is the leader");
                // Keep the connection out of the pool for as long as we lead.
                self.conn = Some(c);
                true
            }
            _ => false,
        }
    }
}

async fn run(p: Arc<Portal>, mut stop: tokio::sync::watch::Receiver<bool>) {
    let mut leader = Leader { conn: None };
    let mut requeued: HashMap<String, i64> = HashMap::new();
    let period = Duration::from_secs(p.cfg.scheduler_interval_secs.max(1));
    loop {
        if *stop.borrow() {
            return;
        }
        if leader.check(&p).await
            && let Err(e) = tick(&p, &mut requeued).await
        {
            tracing::warn!(error = %e, "portal scheduler pass failed");
        }
        tokio::select! {
            _ = tokio::time::sleep(period) => {}
            _ = stop.changed() => {}
        }
    }
}

/// One pass of every duty.
pub async fn tick(p: &Portal, requeued: &mut HashMap<String, i64>) -> Result<()> {
    let now = now_ms();
    for from in [
        PkgState::Uploading,
        PkgState::Scanning,
        PkgState::Available,
        PkgState::Quarantined,
    ] {
        for pkg in p.store.packages_due(from, "expires_at", now, 500).await? {
            if p.store
                .transition(&pkg.id, from, PkgState::Expired, Change::default())
                .await?
            {
                p.store
                    .audit(
                        &system(),
                        "package.expired",
                        Some(&pkg.id),
                        None,
                        json!({ "from": from.as_str() }),
                    )
                    .await?;
                crate::mail::logged(
                    crate::mail::to_sender(
                        p,
                        &pkg,
                        "Your package expired",
                        format!("Package {} expired; its links no longer work.\n", pkg.id),
                    )
                    .await,
                );
            }
        }
    }
    let retention = p.cfg.days_ms(p.cfg.purge_after_days);
    for pkg in p
        .store
        .packages_due(PkgState::Expired, "updated_at", now - retention, 200)
        .await?
    {
        let files = p.store.files(&pkg.id).await?;
        let mut gone = true;
        for f in &files {
            if let Err(e) = p.vault.delete(&f.object).await {
                tracing::warn!(file = %f.id, error = %e, "purge: deleting ciphertext failed");
            }
            match p.vault.exists(&f.object).await {
                Ok(false) => {}
                _ => gone = false,
            }
        }
        if gone
            && p.store
                .transition(
                    &pkg.id,
                    PkgState::Expired,
                    PkgState::Purged,
                    Change::default(),
                )
                .await?
        {
            p.store
                .audit(
                    &system(),
                    "package.purged",
                    Some(&pkg.id),
                    None,
                    json!({ "files": files.len() }),
                )
                .await?;
        }
    }
    // Scan jobs that should have finished: queue them again (a job for a
    // decided file is acknowledged without work; past the deadline an
    // engine error quarantines).
    for f in p.store.pending_in_scanning(500).await? {
        let Some(pkg) = p.store.package(&f.package_id).await? else {
            continue;
        };
        let overdue = pkg.scan_deadline.is_some_and(|d| now > d + 60_000);
        let recently = requeued.get(&f.id).is_some_and(|t| now - *t < 600_000);
        if overdue && !recently && f.status == FileStatus::Pending {
            crate::worker::enqueue(p, &f.id).await?;
            requeued.insert(f.id.clone(), now);
            tracing::info!(file = %f.id, package = %pkg.id, "re-queued a scan job past its deadline");
        }
    }
    requeued.retain(|_, t| now - *t < 3_600_000);
    p.wake.notify_waiters();
    // Abandoned uploads: the vault deletes their bytes; their rows go too.
    match p.vault.purge_expired().await {
        Ok(ids) => {
            for id in ids {
                if let Some(f) = p.store.file(&id).await?
                    && !f.complete
                {
                    p.store.delete_file(&id).await?;
                    p.store
                        .audit(
                            &system(),
                            "upload.expired",
                            Some(&f.package_id),
                            Some(&id),
                            json!({}),
                        )
                        .await?;
                }
            }
        }
        Err(e) => tracing::warn!(error = %e, "purging abandoned uploads failed"),
    }
    Ok(())
}
