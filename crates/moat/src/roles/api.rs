//! The scan API role (`[server]`): `/v1/*`, `/healthz`, `/readyz` (every
//! role's readiness), `/metrics`.

use crate::config::Settings;
use crate::runtime::Core;
use anyhow::{Context, Result};
use moat_api::AppState;
use moat_role::{HealthCell, HealthProbe, Readiness, Role, RoleFuture, RoleHealth, Shutdown};
use std::sync::Arc;
use std::time::Duration;
use tokio::net::TcpListener;

pub struct ApiRole {
    listener: TcpListener,
    state: AppState,
    /// Routes of other roles served on this listener (the portal's).
    extra: Option<axum::Router>,
    health: HealthCell,
}

/// A non-loopback listener needs tokens (checked before anything loads).
pub fn check(s: &Settings) -> Result<()> {
    s.server
        .auth
        .check_listener(&s.server.listen)
        .map_err(anyhow::Error::msg)
        .context("refusing to start")
}

/// Check the listener against the auth settings and bind it. `extra`:
/// routes of other roles served on the same listener (the portal's);
/// `read`: who else may read `/v1/*` (the portal's admins).
pub async fn build(
    s: &Settings,
    core: &Core,
    roles: Readiness,
    extra: Option<axum::Router>,
    read: Option<moat_api::ReadAccess>,
    broker_queue: Option<Arc<dyn moat_db::EventQueue>>,
) -> Result<Box<dyn Role>> {
    check(s)?;
    let listen = s.server.listen;
    let listener = TcpListener::bind(listen)
        .await
        .with_context(|| format!("listening on {listen}"))?;
    let local = listener.local_addr().unwrap_or(listen);
    // The durable queues (portal jobs, webhook events) live in the same
    // database; the dashboard reads their depth and lag through this.
    let queues = moat_db::open_queue(&s.database_url)
        .await
        .context("opening the durable queues for /v1/stats/queues")?;
    let mut state = AppState::new(
        core.service(s.server.policy.clone(), s.server.cache),
        s.server.clone(),
        core.tmp_dir.clone(),
        Some(core.reloader.clone()),
        Some(core.metrics.clone()),
    )
    .with_roles(roles)
    .with_queues(queues);
    // The portal's jobs on a broker (`portal.queue_url`): the dashboard
    // reads the broker's counts through the portal's own connection.
    if let Some(q) = broker_queue {
        state = state.with_queues(q);
    }
    // The portal's admins read the records API with their session (the dashboard).
    if let Some(r) = read {
        state = state.with_read_access(r);
    }
    tracing::info!(listen = %local, data_dir = %s.data_dir.display(),
        database = crate::runtime::redact(&s.database_url), "moat serve ready");
    Ok(Box::new(ApiRole {
        listener,
        state,
        extra,
        health: HealthCell::new(format!("listening on {local}")),
    }))
}

impl Role for ApiRole {
    fn name(&self) -> &'static str {
        "api"
    }

    fn health(&self) -> HealthProbe {
        self.health.probe()
    }

    fn run(self: Box<Self>, shutdown: Shutdown) -> RoleFuture {
        Box::pin(async move {
            let ApiRole {
                listener,
                state,
                extra,
                health,
            } = *self;
            let detail = health.get().detail;
            health.set(RoleHealth::ready(detail));
            // Keeps the engine-up gauges fresh between /readyz requests.
            let checks = state.clone();
            let stop = shutdown.clone();
            tokio::spawn(async move {
                loop {
                    let _ = moat_api::check_ready(&checks).await;
                    tokio::select! {
                        _ = tokio::time::sleep(Duration::from_secs(15)) => {}
                        _ = stop.cancelled() => return,
                    }
                }
            });
            let stop = shutdown.clone();
            let mut app = moat_api::router(state);
            if let Some(r) = extra {
                app = app.merge(r);
            }
            // The peer address reaches handlers that throttle per IP (portal login).
            axum::serve(
                listener,
                app.into_make_service_with_connect_info::<std::net::SocketAddr>(),
            )
            .with_graceful_shutdown(async move { stop.cancelled().await })
            .await
            .context("serving HTTP")?;
            Ok(())
        })
    }
}
