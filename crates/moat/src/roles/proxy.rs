//! The edge proxy role (`[proxy]`): its listeners, health checks, admin
//! listener, and TLS reload on SIGHUP.

use crate::config::Settings;
use crate::runtime::Core;
use anyhow::Result;
use moat_api::ScanService;
use moat_proxy::{MetricsRender, Proxy, ProxyConfig};
use moat_role::{HealthProbe, Role, RoleFuture, RoleHealth, Shutdown};
use std::path::PathBuf;
use std::sync::Arc;

pub struct ProxyRole {
    proxy: Proxy,
    metrics: Option<MetricsRender>,
}

/// The proxy of `moat serve`, when `[proxy]` has listeners. The proxy
/// scans with the API's policy and cache setting.
pub fn build(s: &mut Settings, core: &Core) -> Result<Option<Box<dyn Role>>> {
    let Some(pc) = s.proxy.take().filter(|p| !p.listeners.is_empty()) else {
        return Ok(None);
    };
    let service = core.service(s.server.policy.clone(), s.server.cache);
    Ok(Some(new(pc, service, core.tmp_dir.clone(), core)?))
}

/// A proxy role from a complete configuration (`moat proxy` builds its own).
pub fn new(
    cfg: ProxyConfig,
    service: ScanService,
    tmp_dir: PathBuf,
    core: &Core,
) -> Result<Box<dyn Role>> {
    let proxy = Proxy::new(cfg, service, tmp_dir)?;
    let m = core.metrics.clone();
    Ok(Box::new(ProxyRole {
        proxy,
        metrics: Some(Arc::new(move || m.render())),
    }))
}

impl Role for ProxyRole {
    fn name(&self) -> &'static str {
        "proxy"
    }

    /// Ready while it runs (a listener that cannot bind stops the process);
    /// the detail says how many servers of each pool are up.
    fn health(&self) -> HealthProbe {
        let p = self.proxy.clone();
        Arc::new(move || RoleHealth::ready(p.pools_summary()))
    }

    fn run(self: Box<Self>, shutdown: Shutdown) -> RoleFuture {
        Box::pin(async move {
            let ProxyRole { proxy, metrics } = *self;
            spawn_tls_reload(proxy.clone(), shutdown.clone());
            tokio::select! {
                r = proxy.run(metrics) => r?,
                _ = shutdown.cancelled() => {}
            }
            Ok(())
        })
    }
}

/// SIGHUP re-reads the TLS certificates and keys.
fn spawn_tls_reload(proxy: Proxy, shutdown: Shutdown) {
    use tokio::signal::unix::{SignalKind, signal};
    let Ok(mut hup) = signal(SignalKind::hangup()) else {
        tracing::warn!("cannot listen for SIGHUP: TLS certificates will not be reloaded");
        return;
    };
    tokio::spawn(async move {
        loop {
            tokio::select! {
                r = hup.recv() => if r.is_none() { return },
                _ = shutdown.cancelled() => return,
            }
            match proxy.reload_tls() {
                Ok(0) => {}
                Ok(n) => tracing::info!(listeners = n, "SIGHUP: TLS certificates reloaded"),
                Err(e) => {
                    tracing::error!(error = %e, "SIGHUP: TLS reload failed; keeping the previous certificates")
                }
            }
        }
    });
}
