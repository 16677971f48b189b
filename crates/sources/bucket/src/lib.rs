//! moat-bucket: the bucket role. Event → HEAD/GET → scan → actions → ack,
//! and backfill of existing objects.
//!
//! * [`config::BucketConfig`]: `[bucket]` (S3, `[[bucket.sources]]`, tags,
//!   policy, quarantine, skip rules, retries).
//! * [`pipeline::Bucket`]: the per-object pipeline and per-delivery settling.
//! * [`watch`]: consume every configured source with bounded concurrency.
//! * [`backfill()`]: list a bucket/prefix and run each object through the
//!   same pipeline, resumable through the object ledger.
#![forbid(unsafe_code)]

pub mod config;
pub mod metrics;
pub mod pipeline;

pub use config::{BucketConfig, PublishConfig, SourceConfig};
pub use pipeline::{Bucket, Failure, ObjectRef, Outcome};

use moat_events::{EventSource, SourceError};
use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;
use tokio::sync::{Semaphore, watch as wch};

/// The opened sources, and the HTTP routes webhook sources need served
/// (`POST /v1/events/s3`; the caller serves them on `bucket.metrics_listen`).
pub struct Opened {
    pub sources: Vec<Box<dyn EventSource>>,
    pub routes: Option<axum::Router>,
}

/// Open every configured source (connecting now, so errors show at start).
/// Webhook sources keep their events in the embedded durable queue in the
/// database at `database_url`.
pub async fn open_sources(cfg: &BucketConfig, database_url: &str) -> Result<Opened, SourceError> {
    let mut out: Vec<Box<dyn EventSource>> = Vec::new();
    let mut routes: Option<axum::Router> = None;
    for s in &cfg.sources {
        match s {
            SourceConfig::Amqp(a) => {
                let mut a = a.clone();
                if a.prefetch == 0 {
                    a.prefetch = u16::try_from(cfg.in_flight()).unwrap_or(u16::MAX);
                }
                out.push(Box::new(moat_events::amqp::AmqpSource::connect(a).await?));
            }
            SourceConfig::Nats(n) => {
                out.push(Box::new(moat_events::nats::NatsSource::connect(n).await?));
            }
            SourceConfig::Sqs(q) => {
                out.push(Box::new(moat_events::sqs::SqsSource::connect(q).await?));
            }
            SourceConfig::Webhook(w) => {
                let queue = moat_db::open_queue(database_url).await.map_err(|e| {
                    SourceError::Connection {
                        source_name: "webhook",
                        detail: format!("opening the durable event queue: {e}"),
                    }
                })?;
                let r = moat_events::webhook::router(queue.clone(), w.clone());
                routes = Some(match routes {
                    Some(prev) => prev.merge(r),
                    None => r,
                });
                out.push(Box::new(moat_events::webhook::QueueSource::new(
                    queue,
                    w.clone(),
                )));
            }
        }
    }
    Ok(Opened {
        sources: out,
        routes,
    })
}

/// Consume every source until `stop` turns true; at most `concurrency`
/// deliveries are in progress across all sources. On stop, waits (up to
/// `grace`) for in-progress deliveries; anything unsettled is redelivered by
/// its broker.
pub async fn watch(
    b: Arc<Bucket>,
    sources: Vec<Box<dyn EventSource>>,
    stop: wch::Receiver<bool>,
    grace: Duration,
) {
    let n = b.cfg.in_flight();
    let sem = Arc::new(Semaphore::new(n));
    let mut tasks = tokio::task::JoinSet::new();
    for mut s in sources {
        let (b, sem, mut stop) = (b.clone(), sem.clone(), stop.clone());
        tasks.spawn(async move {
            let name = s.name();
            tracing::info!(source = %name, "consuming");
            loop {
                let permit = tokio::select! {
                    p = sem.clone().acquire_owned() => match p { Ok(p) => p, Err(_) => break },
                    _ = stop.wait_for(|v| *v) => break,
                };
                let d = tokio::select! {
                    d = s.next() => d,
                    _ = stop.wait_for(|v| *v) => break,
                };
                match d {
                    Ok(d) => {
                        let b = b.clone();
                        tokio::spawn(async move {
                            b.handle(d).await;
                            drop(permit);
                        });
                    }
                    Err(SourceError::Closed(_)) => {
                        tracing::info!(source = %name, "source closed");
                        break;
                    }
                    Err(e) => {
                        tracing::warn!(source = %name, error = %e, "source error");
                        tokio::time::sleep(Duration::from_secs(1)).await;
                    }
                }
            }
        });
    }
    while tasks.join_next().await.is_some() {}
    let all = u32::try_from(n).unwrap_or(u32::MAX);
    if tokio::time::timeout(grace, sem.acquire_many(all))
        .await
        .is_err()
    {
        tracing::warn!("stopping with deliveries still in progress; they will be redelivered");
    }
}

/// What a backfill did.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct Summary {
    /// Objects by final verdict status (including those found already scanned).
    pub by_status: BTreeMap<String, u64>,
    pub listed: u64,
    pub scanned: u64,
    pub already_scanned: u64,
    pub skipped: u64,
    pub missing: u64,
    pub failed: u64,
    pub bytes: u64,
}

impl Summary {
    /// `moat scan`'s exit codes: 1 infected/suspicious, 2 unscannable/error/failed, else 0.
    pub fn exit_code(&self) -> u8 {
        let n = |k: &str| self.by_status.get(k).copied().unwrap_or(0);
        if n("infected") + n("suspicious") > 0 {
            1
        } else if n("unscannable") + n("error") + self.failed > 0 {
            2
        } else {
            0
        }
    }
}

/// Scan every object of `bucket` under `prefix`. Objects already scanned with
/// the current engine fingerprint are skipped unless `rescan`, so an
/// interrupted backfill resumes where it stopped.
pub async fn backfill(
    b: Arc<Bucket>,
    bucket: &str,
    prefix: &str,
    concurrency: usize,
    rescan: bool,
    progress: bool,
    mut stop: wch::Receiver<bool>,
) -> Result<Summary, Failure> {
    use indicatif::{ProgressBar, ProgressDrawTarget, ProgressStyle};
    let pb = ProgressBar::with_draw_target(
        Some(0),
        if progress {
            ProgressDrawTarget::stderr()
        } else {
            ProgressDrawTarget::hidden()
        },
    );
    pb.set_style(
        ProgressStyle::with_template(
            "{spinner} [{elapsed_precise}] {wide_bar} {binary_bytes}/{binary_total_bytes} ({binary_bytes_per_sec}, ETA {eta}) {msg}",
        )
        .unwrap_or_else(|_| ProgressStyle::default_bar()),
    );
    let (tx, mut rx) = tokio::sync::mpsc::channel::<moat_s3::Listed>(2000);
    let lister = {
        let (b, bucket, prefix) = (b.clone(), bucket.to_string(), prefix.to_string());
        let pb = pb.clone();
        let mut stop = stop.clone();
        tokio::spawn(async move {
            let mut token = None;
            let mut listed = 0u64;
            loop {
                let page = tokio::select! {
                    p = b.s3.list_page(&bucket, &prefix, token.take()) => p,
                    _ = stop.wait_for(|v| *v) => return Ok::<u64, Failure>(listed),
                };
                let (items, next) =
                    page.map_err(|e| Failure(format!("listing s3://{bucket}/{prefix}: {e}")))?;
                for it in items {
                    pb.inc_length(it.size);
                    listed += 1;
                    if tx.send(it).await.is_err() {
                        return Ok(listed);
                    }
                }
                match next {
                    Some(t) => token = Some(t),
                    None => return Ok(listed),
                }
            }
        })
    };
    let sem = Arc::new(Semaphore::new(concurrency.max(1)));
    let mut tasks = tokio::task::JoinSet::new();
    let mut summary = Summary::default();
    let mut done = 0u64;
    let absorb = |s: &mut Summary, r: (u64, Result<Outcome, Failure>)| {
        let (size, r) = r;
        match r {
            Ok(Outcome::Verdict(st)) => {
                s.scanned += 1;
                s.bytes += size;
                *s.by_status.entry(st.as_str().to_string()).or_default() += 1;
            }
            Ok(Outcome::AlreadyScanned(st)) => {
                s.already_scanned += 1;
                if st != "tagged" {
                    *s.by_status.entry(st).or_default() += 1;
                }
            }
            Ok(Outcome::Skipped(_)) => s.skipped += 1,
            Ok(Outcome::Missing) => s.missing += 1,
            Err(_) => s.failed += 1,
        }
    };
    let bucket_s = bucket.to_string();
    loop {
        let it = tokio::select! {
            it = rx.recv() => it,
            _ = stop.wait_for(|v| *v) => None,
        };
        let Some(it) = it else { break };
        let permit = match sem.clone().acquire_owned().await {
            Ok(p) => p,
            Err(_) => break,
        };
        let (b, bucket) = (b.clone(), bucket_s.clone());
        tasks.spawn(async move {
            let o = ObjectRef {
                bucket,
                key: it.key.clone(),
                version_id: None,
                event_ms: None,
                source: "backfill",
            };
            let mut attempt = 1;
            let r = loop {
                match b.process(&o, rescan).await {
                    Err(f) if attempt < b.cfg.retry.max_attempts => {
                        tracing::warn!(key = %o.key, attempt, error = %f, "retrying");
                        tokio::time::sleep(b.cfg.retry.delay(attempt)).await;
                        attempt += 1;
                    }
                    r => break r,
                }
            };
            if let Err(f) = &r {
                tracing::error!(key = %o.key, error = %f, "failed");
            }
            drop(permit);
            (it.size, r)
        });
        while let Some(r) = tasks.try_join_next() {
            if let Ok((size, r)) = r {
                done += 1;
                pb.inc(size);
                absorb(&mut summary, (size, r));
                pb.set_message(format!("{done} objects"));
            }
        }
    }
    drop(rx);
    while let Some(r) = tasks.join_next().await {
        if let Ok((size, r)) = r {
            done += 1;
            pb.inc(size);
            absorb(&mut summary, (size, r));
            pb.set_message(format!("{done} objects"));
        }
    }
    pb.finish_and_clear();
    let listed = match lister.await {
        Ok(Ok(n)) => n,
        Ok(Err(f)) => return Err(f),
        Err(e) => return Err(Failure(format!("listing task failed: {e}"))),
    };
    summary.listed = listed;
    Ok(summary)
}
