//! The scan worker: one job per file on the work queue (the embedded
//! durable queue in the portal's database, or RabbitMQ with
//! `[portal] queue_url`). A job reads the file's
//! plaintext from the vault into a [`Spool`] (memory, then an anonymous 0600
//! file), checks it is the content that was uploaded, scans it through
//! [`moat_api::ScanService`] (source `portal`: all engines, cache, record),
//! records the verdict with its scan record id, settles the package, and
//! only then acknowledges the job. Engine errors are retried with backoff
//! until the package's scan deadline, then the file is `error` and the
//! package `quarantined` with reason `error`. Nothing here ever moves a
//! package out of quarantine.

use crate::error::{PortalError, Result};
use crate::state::{Change, FileStatus, PkgState};
use crate::store::{Actor, now_ms};
use crate::{Portal, SCAN_QUEUE};
use futures_util::StreamExt;
use moat_core::{Spool, Status};
use moat_db::QueuedEvent;
use moat_vault::DataKey;
use serde_json::json;
use std::io::Write;
use std::sync::Arc;
use std::time::Duration;

/// A job stays leased this long; a worker that dies hands it back after it.
const LEASE: Duration = Duration::from_secs(15 * 60);
/// Jobs of a package that never leaves `uploading` are dropped after this
/// many attempts (they are queued just before the package is submitted).
const MAX_WAITS: u32 = 30;

/// Rescan jobs give up after this many engine errors (the package stays
/// as it is: it was cleared by every engine already).
const RESCAN_ATTEMPTS: u32 = 5;

#[derive(serde::Serialize, serde::Deserialize)]
struct Job {
    file: String,
    /// A rescan of a file of an `available` package (new signatures).
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    rescan: bool,
}

pub async fn enqueue(p: &Portal, file_id: &str) -> Result<()> {
    push(p, file_id, false).await
}

/// Queue a rescan of a cleared file (see [`crate::scheduler`]).
pub async fn enqueue_rescan(p: &Portal, file_id: &str) -> Result<()> {
    push(p, file_id, true).await
}

async fn push(p: &Portal, file_id: &str, rescan: bool) -> Result<()> {
    let payload = serde_json::to_vec(&Job {
        file: file_id.to_string(),
        rescan,
    })
    .map_err(|e| PortalError::Internal(e.to_string()))?;
    p.queue.enqueue(SCAN_QUEUE, &payload).await?;
    Ok(())
}

/// Start `cfg.workers` workers; they stop when `stop` turns true.
pub fn spawn(
    p: Arc<Portal>,
    stop: tokio::sync::watch::Receiver<bool>,
) -> Vec<tokio::task::JoinHandle<()>> {
    (0..p.cfg.workers)
        .map(|_| tokio::spawn(run(p.clone(), stop.clone())))
        .collect()
}

async fn run(p: Arc<Portal>, mut stop: tokio::sync::watch::Receiver<bool>) {
    loop {
        if *stop.borrow() {
            return;
        }
        match p.queue.lease(SCAN_QUEUE, LEASE).await {
            Ok(Some(ev)) => handle(&p, ev).await,
            Ok(None) => {
                tokio::select! {
                    _ = p.wake.notified() => {}
                    _ = tokio::time::sleep(Duration::from_millis(500)) => {}
                    _ = stop.changed() => {}
                }
            }
            Err(e) => {
                tracing::warn!(error = %e, "portal worker: leasing a job failed");
                tokio::time::sleep(Duration::from_secs(1)).await;
            }
        }
    }
}

enum Outcome {
    Done,
    Retry(Duration),
    Dead(String),
}

async fn handle(p: &Portal, ev: QueuedEvent) {
    let outcome = match process(p, &ev).await {
        Ok(o) => o,
        Err(e) => {
            // Our own failure (database, storage): try again; the scan
            // deadline still applies when it comes back.
            tracing::warn!(job = %ev.id, error = %e, "portal scan job failed; retrying");
            Outcome::Retry(backoff(p, ev.attempts))
        }
    };
    let r = match outcome {
        Outcome::Done => p.queue.ack(&ev.id).await,
        Outcome::Retry(d) => p.queue.retry(&ev.id, d).await,
        Outcome::Dead(why) => {
            tracing::warn!(job = %ev.id, reason = %why, "portal scan job dead-lettered");
            p.queue.dead(&ev.id, &why).await
        }
    };
    if let Err(e) = r {
        tracing::warn!(job = %ev.id, error = %e, "settling a portal scan job failed; its lease will expire");
    }
}

fn backoff(p: &Portal, attempts: u32) -> Duration {
    let base = p.cfg.retry_base_secs.max(1);
    let secs = base.saturating_mul(1u64 << attempts.saturating_sub(1).min(16));
    Duration::from_secs(secs.min(p.cfg.retry_max_secs.max(1)))
}

fn system() -> Actor {
    Actor {
        id: Some("system".into()),
        ..Actor::default()
    }
}

/// Read the stored plaintext into a spool and check its digest.
async fn spool_file(
    p: &Portal,
    key: &DataKey,
    object: &str,
    size: u64,
    want_sha: Option<&str>,
) -> std::result::Result<(moat_core::Blob, [u8; 32]), String> {
    let mut spool = Spool::new(p.cfg.spool_memory, size, p.tmp_dir.clone()).reserve(size);
    if size > 0 {
        let mut s = p
            .vault
            .read(key, object, None)
            .await
            .map_err(|e| format!("reading the stored file: {e}"))?;
        while let Some(chunk) = s.next().await {
            let chunk = chunk.map_err(|e| format!("reading the stored file: {e}"))?;
            spool
                .write_all(&chunk)
                .map_err(|e| format!("spooling: {e}"))?;
        }
    }
    let (blob, sha) = spool.finish().map_err(|e| format!("spooling: {e}"))?;
    if want_sha != Some(hex::encode(sha).as_str()) || blob.len() != size {
        return Err("the stored content does not match what was uploaded".into());
    }
    Ok((blob, sha))
}

/// Read a stored file back (checked against its upload digest) and scan
/// it through the scan service (source `portal`). The outer error is the
/// portal's own (the package key); the inner one says why no scan ran.
async fn scan_stored(
    p: &Portal,
    f: &crate::store::FileRow,
    pkg: &crate::store::Package,
) -> Result<std::result::Result<moat_db::ScanRecord, String>> {
    let size = u64::try_from(f.size).unwrap_or(0);
    let key = DataKey::unwrap(&p.kek, &pkg.wrapped_key)
        .map_err(|e| PortalError::Storage(e.to_string()))?;
    Ok(
        match spool_file(p, &key, &f.object, size, f.sha256.as_deref()).await {
            Ok((blob, sha)) => p
                .scan
                .scan("portal", &f.name, blob, sha)
                .await
                .map_err(|e| e.to_string()),
            Err(e) => Err(e),
        },
    )
}

async fn process(p: &Portal, ev: &QueuedEvent) -> Result<Outcome> {
    let Ok(job) = serde_json::from_slice::<Job>(&ev.payload) else {
        return Ok(Outcome::Dead("unreadable job".into()));
    };
    let Some(f) = p.store.file(&job.file).await? else {
        return Ok(Outcome::Done);
    };
    let Some(pkg) = p.store.package(&f.package_id).await? else {
        return Ok(Outcome::Done);
    };
    if job.rescan {
        return rescan(p, ev, &f, &pkg).await;
    }
    match pkg.state {
        PkgState::Scanning => {}
        PkgState::Uploading if ev.attempts < MAX_WAITS => {
            return Ok(Outcome::Retry(Duration::from_secs(2)));
        }
        PkgState::Uploading => return Ok(Outcome::Dead("the package was never submitted".into())),
        _ => return Ok(Outcome::Done),
    }
    if f.status.is_final() {
        settle(p, &pkg.id).await?;
        return Ok(Outcome::Done);
    }
    let deadline = pkg.scan_deadline.unwrap_or(i64::MAX);
    let scanned = scan_stored(p, &f, &pkg).await?;
    let (status, record) = match scanned {
        Ok(rec) => {
            let st = match rec.verdict.status {
                Status::Clean => FileStatus::Clean,
                Status::Infected => FileStatus::Infected,
                Status::Suspicious => FileStatus::Suspicious,
                Status::Unscannable => FileStatus::Unscannable,
                Status::Error => FileStatus::Error,
            };
            (st, Some(rec))
        }
        Err(e) => {
            tracing::warn!(file = %f.id, error = %e, "portal scan could not run");
            (FileStatus::Error, None)
        }
    };
    let rec_id = record.as_ref().map(|r| r.id.clone());
    if status == FileStatus::Error && now_ms() < deadline {
        if let Some(id) = &rec_id {
            p.store.note_attempt(&f.id, id).await?;
        }
        let left = Duration::from_millis(u64::try_from(deadline - now_ms()).unwrap_or(0));
        let d = backoff(p, ev.attempts).min(left + Duration::from_millis(50));
        tracing::info!(file = %f.id, attempt = ev.attempts, retry_in_ms = d.as_millis() as u64, "engine error; retrying before the scan deadline");
        return Ok(Outcome::Retry(d));
    }
    if p.store
        .set_file_verdict(&f.id, status, rec_id.as_deref())
        .await?
    {
        let signatures = record
            .as_ref()
            .map(|r| r.verdict.signatures())
            .unwrap_or_default();
        p.store
            .audit(&system(), "scan.verdict", Some(&pkg.id), Some(&f.id), json!({ "status": status.as_str(), "scan_record_id": rec_id, "signatures": signatures }))
            .await?;
    }
    settle(p, &pkg.id).await?;
    Ok(Outcome::Done)
}

/// Scan a file of an `available` package again (the engine set changed).
/// Only a detection acts: the file takes the new verdict and the package
/// moves `available → quarantined` (one conditional transition), audited
/// and notified. Clean changes nothing; engine errors are retried a few
/// times and then dropped: the file was cleared by every engine before,
/// and a rescan never releases anything.
async fn rescan(
    p: &Portal,
    ev: &QueuedEvent,
    f: &crate::store::FileRow,
    pkg: &crate::store::Package,
) -> Result<Outcome> {
    if pkg.state != PkgState::Available {
        return Ok(Outcome::Done);
    }
    let rec = match scan_stored(p, f, pkg).await? {
        Ok(rec) => rec,
        Err(e) if ev.attempts < RESCAN_ATTEMPTS => {
            tracing::warn!(file = %f.id, error = %e, "portal rescan could not run; retrying");
            return Ok(Outcome::Retry(backoff(p, ev.attempts)));
        }
        Err(e) => {
            tracing::warn!(file = %f.id, error = %e, "portal rescan could not run; giving up");
            return Ok(Outcome::Done);
        }
    };
    let status = match rec.verdict.status {
        Status::Infected => FileStatus::Infected,
        Status::Suspicious => FileStatus::Suspicious,
        Status::Clean => return Ok(Outcome::Done),
        Status::Error if ev.attempts < RESCAN_ATTEMPTS => {
            return Ok(Outcome::Retry(backoff(p, ev.attempts)));
        }
        other => {
            tracing::warn!(file = %f.id, status = ?other, record = %rec.id, "portal rescan gave no verdict; the package stays available");
            return Ok(Outcome::Done);
        }
    };
    if !p.store.set_rescan_detection(&f.id, status, &rec.id).await? {
        return Ok(Outcome::Done);
    }
    p.store
        .audit(
            &system(),
            "scan.verdict",
            Some(&pkg.id),
            Some(&f.id),
            json!({ "status": status.as_str(), "scan_record_id": rec.id, "signatures": rec.verdict.signatures(), "rescan": true }),
        )
        .await?;
    let c = Change {
        reason: Some(status.as_str()),
        ..Change::default()
    };
    if p.store
        .transition(&pkg.id, PkgState::Available, PkgState::Quarantined, c)
        .await?
    {
        tracing::warn!(package = %pkg.id, file = %f.id, status = status.as_str(), "a rescan found a detection; package quarantined");
        p.store
            .audit(
                &system(),
                "package.quarantined",
                Some(&pkg.id),
                None,
                json!({ "reason": status.as_str(), "rescan": true }),
            )
            .await?;
        crate::mail::logged(crate::mail::package_quarantined(p, pkg, status.as_str()).await);
    }
    Ok(Outcome::Done)
}

/// Once every file of a scanning package is decided: all clean →
/// `available`; anything else → `quarantined` with the worst reason.
pub async fn settle(p: &Portal, package_id: &str) -> Result<()> {
    let files = p.store.files(package_id).await?;
    if files.is_empty() || files.iter().any(|f| !f.status.is_final()) {
        return Ok(());
    }
    let worst = [
        FileStatus::Infected,
        FileStatus::Suspicious,
        FileStatus::Unscannable,
        FileStatus::Error,
    ]
    .into_iter()
    .find(|s| files.iter().any(|f| f.status == *s));
    match worst {
        Some(w) => {
            let c = Change {
                reason: Some(w.as_str()),
                ..Change::default()
            };
            if p.store
                .transition(package_id, PkgState::Scanning, PkgState::Quarantined, c)
                .await?
            {
                p.store
                    .audit(
                        &system(),
                        "package.quarantined",
                        Some(package_id),
                        None,
                        json!({ "reason": w.as_str() }),
                    )
                    .await?;
                if let Some(pkg) = p.store.package(package_id).await? {
                    crate::mail::logged(
                        crate::mail::package_quarantined(p, &pkg, w.as_str()).await,
                    );
                }
            }
        }
        None => {
            let all_clean = files
                .iter()
                .all(|f| f.status == FileStatus::Clean && f.scan_record_id.is_some());
            if all_clean
                && p.store
                    .transition(
                        package_id,
                        PkgState::Scanning,
                        PkgState::Available,
                        Change::default(),
                    )
                    .await?
            {
                p.store
                    .audit(
                        &system(),
                        "package.available",
                        Some(package_id),
                        None,
                        json!({ "files": files.len() }),
                    )
                    .await?;
                if let Some(pkg) = p.store.package(package_id).await? {
                    crate::mail::logged(crate::mail::package_available(p, &pkg).await);
                }
            }
        }
    }
    Ok(())
}
