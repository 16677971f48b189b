//! The portal role (`[portal]`, on by default): its routes are served by the
//! API listener; its scan workers, scheduler and mail sender run under the
//! one shutdown.

use crate::config::Settings;
use crate::runtime::Core;
use anyhow::{Context, Result};
use moat_role::{HealthCell, HealthProbe, Role, RoleFuture, RoleHealth, Shutdown};
use std::sync::Arc;

pub struct PortalRole {
    portal: Arc<moat_portal::Portal>,
    workers: usize,
    health: HealthCell,
}

/// What the portal gives the rest of `moat serve`.
pub struct Built {
    pub role: Box<dyn Role>,
    /// The routes the API listener serves for it.
    pub routes: axum::Router,
    /// The records API's read access for its admins (the dashboard).
    pub admins: moat_api::ReadAccess,
    /// Its work queue when that is on a broker (`queue_url`), for the
    /// dashboard's queue panel (the embedded queue is read from the database).
    pub broker_queue: Option<Arc<dyn moat_db::EventQueue>>,
}

/// The portal role and what it shares, when `[portal]` is enabled.
pub async fn build(s: &Settings, core: &Core) -> Result<Option<Built>> {
    if !s.portal.enabled {
        return Ok(None);
    }
    let base = format!("http://{}", s.server.listen);
    let portal = moat_portal::Portal::build(
        s.portal.clone(),
        &s.data_dir,
        &s.database_url,
        core.service(s.server.policy.clone(), s.server.cache),
        core.tmp_dir.clone(),
        base,
    )
    .await
    .context("starting the portal")?;
    // The web UI (pages at `/`) is a client of these routes, beside them.
    let router = moat_portal::api::router(portal.clone()).merge(moat_webui::router());
    tracing::info!(
        storage = portal.vault.backend_name(),
        workers = s.portal.workers,
        queue = match s.portal.queue_url.as_deref() {
            Some(u) if u.starts_with("nats://") || u.starts_with("tls://") => "nats",
            Some(u) if !u.trim().is_empty() => "rabbitmq",
            _ => "embedded",
        },
        "portal role ready"
    );
    let broker_queue = s
        .portal
        .queue_url
        .as_deref()
        .filter(|u| !u.trim().is_empty())
        .map(|_| portal.queue.clone());
    let p = portal.clone();
    let admins: moat_api::ReadAccess = Arc::new(move |headers| {
        let p = p.clone();
        Box::pin(async move { p.admin_reads(&headers).await })
    });
    let role = PortalRole {
        portal,
        workers: s.portal.workers,
        health: HealthCell::new("starting"),
    };
    Ok(Some(Built {
        role: Box::new(role),
        routes: router,
        admins,
        broker_queue,
    }))
}

impl Role for PortalRole {
    fn name(&self) -> &'static str {
        "portal"
    }

    fn health(&self) -> HealthProbe {
        self.health.probe()
    }

    fn run(self: Box<Self>, shutdown: Shutdown) -> RoleFuture {
        Box::pin(async move {
            let PortalRole {
                portal,
                workers,
                health,
            } = *self;
            let rx = shutdown.watch();
            let mut tasks = moat_portal::worker::spawn(portal.clone(), rx.clone());
            tasks.push(moat_portal::scheduler::spawn(portal.clone(), rx.clone()));
            tasks.extend(moat_portal::mail::spawn(portal.clone(), rx));
            health.set(RoleHealth::ready(format!(
                "{workers} scan worker(s), storage {}",
                portal.vault.backend_name()
            )));
            shutdown.cancelled().await;
            for t in tasks {
                let _ = t.await;
            }
            Ok(())
        })
    }
}
