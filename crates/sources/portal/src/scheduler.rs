//! The scheduler: expires packages at their expiry, purges them after the
//! retention period (ciphertext deleted and checked gone; metadata and audit
//! kept), re-queues scan jobs of packages stuck past their deadline, and
//! removes abandoned uploads. It runs on one node: the holder of a
//! PostgreSQL advisory lock (held on a dedicated connection, so it is
//! released when that node dies and another takes over), or the single
//! process on SQLite.

use crate::state::{Change, FileStatus, PkgState};
use crate::store::{Actor, Package, now_ms};
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

/// Purge an expired package: every file's ciphertext (and any partial
/// upload) is deleted from storage and checked gone, then the package moves
/// `expired → purged`; its rows and audit stay. `Ok(true)` when this call
/// purged it; `Ok(false)` when something is still in storage (the next
/// scheduler pass tries again) or another node purged it first. The
/// scheduler (after the retention) and an owner's delete both use it.
pub async fn purge(p: &Portal, pkg: &Package, actor: &Actor) -> Result<bool> {
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
        // A tus upload's own state (the partial ciphertext of an unfinished
        // one) has the file's id.
        match p.vault.upload_lock(&f.id, Duration::from_secs(5)).await {
            Some(g) => {
                if let Err(e) = p.vault.upload_remove(g).await {
                    tracing::warn!(file = %f.id, error = %e, "purge: removing the upload failed");
                }
            }
            None => tracing::warn!(file = %f.id, "purge: the upload is busy"),
        }
        match p.vault.upload_meta(&f.id).await {
            Ok(None) => {}
            _ => gone = false,
        }
    }
    if !gone {
        return Ok(false);
    }
    let moved = p
        .store
        .transition(
            &pkg.id,
            PkgState::Expired,
            PkgState::Purged,
            Change::default(),
        )
        .await?;
    if moved {
        p.store
            .audit(
                actor,
                "package.purged",
                Some(&pkg.id),
                None,
                json!({ "files": files.len() }),
            )
            .await?;
    }
    Ok(moved)
}

/// One pass of every duty.
/// The engine-set fingerprint the files of available packages were last
/// queued for rescanning under.
const RESCAN_FINGERPRINT: &str = "rescan_fingerprint";

/// When the engine set changed since the last pass (new signatures, another
/// engine), queue a rescan of every file of every available package, then
/// remember the fingerprint. The first pass only remembers it. Queued before
/// the fingerprint is stored, so a crash in between queues them again
/// (a rescan is idempotent) rather than never.
async fn rescan_on_new_signatures(p: &Portal) -> Result<()> {
    let current = p.scan.scanner.engine_set().fingerprint().to_string();
    let last = p.store.named_value(RESCAN_FINGERPRINT).await?;
    if last.as_deref() == Some(current.as_str()) {
        return Ok(());
    }
    let mut queued = 0u64;
    if last.is_some() {
        let mut after = String::new();
        loop {
            let ids = p.store.available_files(&after, 500).await?;
            let Some(last_id) = ids.last().cloned() else {
                break;
            };
            for id in &ids {
                crate::worker::enqueue_rescan(p, id).await?;
            }
            queued += ids.len() as u64;
            after = last_id;
        }
    }
    p.store
        .set_named_value(RESCAN_FINGERPRINT, &current, "system")
        .await?;
    if last.is_none() {
        tracing::info!(fingerprint = %current, "engine set remembered for rescans on new signatures");
    }
    if queued > 0 {
        tracing::info!(files = queued, fingerprint = %current, "engine set changed: available packages queued for rescanning");
        p.wake.notify_waiters();
    }
    Ok(())
}

/// Remind recipients who have not downloaded, once, `reminder_hours`
/// before expiry. The reminder is claimed in the database first, so two
/// schedulers (a leader change mid-pass) never send it twice.
async fn remind(p: &Portal, now: i64) -> Result<()> {
    let hours = i64::try_from(p.cfg.reminder_hours).unwrap_or(i64::MAX);
    let window = p.cfg.days_ms(1).saturating_mul(hours) / 24;
    for (link, pkg_id) in p.store.links_due_reminder(now, window, 200).await? {
        let Some(pkg) = p.store.package(&pkg_id).await? else {
            continue;
        };
        if !p.store.claim_reminder(&link.id).await? {
            continue;
        }
        crate::mail::logged(crate::mail::reminder(p, &pkg, &link).await);
        p.store
            .audit(
                &system(),
                "link.reminded",
                Some(&pkg.id),
                None,
                json!({ "recipient": link.recipient }),
            )
            .await?;
    }
    Ok(())
}

pub async fn tick(p: &Portal, requeued: &mut HashMap<String, i64>) -> Result<()> {
    let now = now_ms();
    for from in [
        PkgState::Uploading,
        PkgState::Scanning,
        PkgState::Available,
        PkgState::Quarantined,
    ] {
        for pkg in p.store.packages_due(from, "expires_at", now, 500).await? {
            let due = Change {
                expired_by: Some(now),
                ..Change::default()
            };
            if p.store
                .transition(&pkg.id, from, PkgState::Expired, due)
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
        purge(p, &pkg, &system()).await?;
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
    // Packages whose files are all decided but which are still scanning:
    // the node that recorded the last verdict died before settling (its
    // job stays leased until the lease runs out). Settling is one
    // conditional transition, so a worker doing the same is harmless.
    for id in p.store.scanning_all_decided(now - 5_000, 500).await? {
        tracing::info!(package = %id, "settling a package whose files were all decided");
        crate::worker::settle(p, &id).await?;
    }
    if p.cfg.rescan_on_update {
        rescan_on_new_signatures(p).await?;
    }
    if p.cfg.reminder_hours > 0 {
        remind(p, now).await?;
    }
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
