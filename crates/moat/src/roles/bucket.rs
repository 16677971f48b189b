//! The bucket role (`[bucket] enabled = true`): S3 event notifications from
//! every configured source, each new object scanned and acted on; plus its
//! HTTP listener (webhook events, `/healthz`, and `/metrics` when alone).

use crate::config::Settings;
use crate::runtime::Core;
use anyhow::{Context, Result, bail};
use moat_bucket::Bucket;
use moat_events::EventSource;
use moat_role::{HealthProbe, Role, RoleFuture, RoleHealth, Shutdown};
use std::sync::Arc;
use std::time::Duration;
use tokio::net::TcpListener;

/// How long in-flight objects get to finish after the shutdown.
const GRACE: Duration = Duration::from_secs(30);

pub struct BucketRole {
    bucket: Arc<Bucket>,
    sources: Vec<Box<dyn EventSource>>,
    http: Option<(TcpListener, axum::Router)>,
}

/// The bucket role of `moat serve`, when `[bucket] enabled = true`.
pub async fn build(s: &Settings, core: &Core) -> Result<Option<Box<dyn Role>>> {
    let Some(cfg) = s.bucket.as_ref().filter(|b| b.enabled) else {
        return Ok(None);
    };
    if cfg.sources.is_empty() {
        bail!("[bucket] enabled = true but no [[bucket.sources]]");
    }
    Ok(Some(new(s, core, false).await?))
}

/// Build the pipeline, connect every source and bind the HTTP listener.
/// `alone` (`moat bucket watch`): that listener also serves `/metrics`.
pub async fn new(s: &Settings, core: &Core, alone: bool) -> Result<Box<dyn Role>> {
    let cfg = s.bucket.clone().unwrap_or_default();
    let bucket = crate::bucket::build(s, core).await?;
    let opened = moat_bucket::open_sources(&cfg, &s.database_url)
        .await
        .context("connecting the bucket event sources")?;
    let app = match (alone, opened.routes) {
        (true, routes) => {
            let h = core.metrics.clone();
            let app = axum::Router::new().route(
                "/metrics",
                axum::routing::get(move || {
                    let h = h.clone();
                    async move { h.render() }
                }),
            );
            Some(match routes {
                Some(r) => app.merge(r),
                None => app,
            })
        }
        (false, routes) => routes,
    };
    let http = match (cfg.metrics_listen, app) {
        (Some(addr), Some(app)) => {
            let l = TcpListener::bind(addr)
                .await
                .with_context(|| format!("listening on {addr}"))?;
            tracing::info!(listen = %addr, "bucket HTTP listener (metrics, health, webhook events)");
            Some((
                l,
                app.route("/healthz", axum::routing::get(|| async { "ok" })),
            ))
        }
        _ => None,
    };
    tracing::info!(sources = opened.sources.len(), "bucket role started");
    Ok(Box::new(BucketRole {
        bucket,
        sources: opened.sources,
        http,
    }))
}

impl Role for BucketRole {
    fn name(&self) -> &'static str {
        "bucket"
    }

    /// The sources connected at build; each reconnects on its own.
    fn health(&self) -> HealthProbe {
        let n = self.sources.len();
        Arc::new(move || RoleHealth::ready(format!("{n} event source(s)")))
    }

    fn run(self: Box<Self>, shutdown: Shutdown) -> RoleFuture {
        Box::pin(async move {
            let BucketRole {
                bucket,
                sources,
                http,
            } = *self;
            if let Some((l, app)) = http {
                let stop = shutdown.clone();
                tokio::spawn(async move {
                    let r = axum::serve(l, app)
                        .with_graceful_shutdown(async move { stop.cancelled().await })
                        .await;
                    if let Err(e) = r {
                        tracing::error!(error = %e, "bucket HTTP listener failed");
                    }
                });
            }
            moat_bucket::watch(bucket, sources, shutdown.watch(), GRACE).await;
            Ok(())
        })
    }
}
