//! `moat proxy`: the edge proxy role alone. `--listen` + `--upstream` is the
//! one-line equivalent of a `[proxy]` section with one listener, one pool and
//! one route scanning every POST/PUT/PATCH body. `moat serve` starts the same
//! proxy (see [`spawn`]) when the configuration has a `[proxy]` section.

use crate::config::{self, Settings};
use anyhow::{Context, Result, bail};
use clap::Args;
use moat_api::{ScanService, telemetry};
use moat_proxy::{MetricsRender, Proxy, ProxyConfig};
use moat_scanner::{Reloader, Scanner};
use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::Arc;

#[derive(Args)]
pub struct ProxyArgs {
    /// Configuration file (TOML) with a `[proxy]` section; `MOAT_*` environment variables override it.
    #[arg(long)]
    config: Option<PathBuf>,
    /// Listen address (quick start; replaces the configured listeners, routes and pools).
    #[arg(long)]
    listen: Option<SocketAddr>,
    /// Upstream server `http://host:port` (repeat for a pool).
    #[arg(long = "upstream")]
    upstreams: Vec<String>,
    /// PEM certificate chain for TLS on the quick-start listener (reloaded on SIGHUP).
    #[arg(long = "tls-cert", requires = "tls_key")]
    tls_cert: Option<PathBuf>,
    /// PEM private key for `--tls-cert`.
    #[arg(long = "tls-key", requires = "tls_cert")]
    tls_key: Option<PathBuf>,
    /// Admin listener: /healthz, /status (pools as JSON), /metrics.
    #[arg(long)]
    admin: Option<SocketAddr>,
    /// Data directory for the SQLite database and spilled bodies. Default ./moat-data.
    #[arg(long = "data-dir")]
    data_dir: Option<PathBuf>,
}

pub fn run(a: ProxyArgs) -> Result<ExitCode> {
    let mut s = config::load(a.config.as_deref())?;
    if let Some(d) = a.data_dir {
        s.set_data_dir(d);
    }
    s.yara_cache_under_data_dir();
    let mut pc = match (a.listen, a.upstreams.is_empty()) {
        (Some(l), false) => {
            let base = s.proxy.take().unwrap_or_default();
            let q = ProxyConfig::quick(l, &a.upstreams, a.tls_cert.zip(a.tls_key));
            ProxyConfig {
                listeners: q.listeners,
                routes: q.routes,
                pools: q.pools,
                ..base
            }
        }
        (None, true) => match s.proxy.take() {
            Some(p) => p,
            None => {
                bail!("give --listen and --upstream, or a configuration with a [proxy] section")
            }
        },
        _ => bail!("--listen and --upstream go together"),
    };
    if let Some(admin) = a.admin {
        pc.admin_listen = Some(admin);
    }
    pc.validate().map_err(anyhow::Error::msg).context("proxy")?;
    crate::logging::init(s.log_json, "info");
    let rt = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .context("starting the runtime")?;
    rt.block_on(async move {
        let (service, tmp_dir, scanner, reloader) = build_service(&mut s).await?;
        let metrics = telemetry::install_recorder()
            .map_err(anyhow::Error::msg)
            .context("installing metrics")?;
        let render: MetricsRender = Arc::new(move || metrics.render());
        tokio::spawn(crate::serve::reload_loop(
            scanner,
            reloader,
            s.reload.poll_secs,
        ));
        let proxy = Proxy::new(pc, service, tmp_dir)?;
        spawn_tls_reload(proxy.clone());
        tokio::select! {
            r = proxy.run(Some(render)) => r.context("proxy")?,
            _ = crate::serve::shutdown_signal() => {}
        }
        anyhow::Ok(())
    })?;
    Ok(ExitCode::SUCCESS)
}

/// Engines, scanner, store and the scan service, as `moat serve` builds them.
async fn build_service(
    s: &mut Settings,
) -> Result<(ScanService, PathBuf, Arc<Scanner>, Arc<Reloader>)> {
    let tmp_dir = s
        .server
        .tmp_dir
        .clone()
        .unwrap_or_else(|| s.data_dir.join("tmp"));
    for d in [&s.data_dir, &tmp_dir] {
        std::fs::create_dir_all(d).with_context(|| format!("creating {}", d.display()))?;
    }
    crate::serve::restrict(&tmp_dir)?;
    if s.scan.archive.tmp_dir == std::env::temp_dir() {
        s.scan.archive.tmp_dir = tmp_dir.clone();
    }
    let engines = s.engines.clone();
    let set = tokio::task::spawn_blocking(move || moat_scanner::config::build_engine_set(&engines))
        .await
        .context("engine loading task")?
        .context("loading engines")?;
    for i in set.infos() {
        tracing::info!(engine = %i.name, version = %i.version, signature_version = %i.signature_version, "engine loaded");
    }
    let scanner = Arc::new(Scanner::new(set, s.scan.clone()));
    let store = moat_db::open(&s.database_url)
        .await
        .with_context(|| format!("opening database {}", crate::serve::redact(&s.database_url)))?;
    let reloader = Arc::new(Reloader::new(s.engines.clone()));
    let service = ScanService {
        scanner: scanner.clone(),
        store,
        policy: s.server.policy.clone(),
        cache: s.server.cache,
    };
    Ok((service, tmp_dir, scanner, reloader))
}

/// Start the proxy inside `moat serve` (its listeners, health checks, admin).
pub fn spawn(
    cfg: ProxyConfig,
    service: ScanService,
    tmp_dir: PathBuf,
    metrics: Option<MetricsRender>,
) -> Result<()> {
    let proxy = Proxy::new(cfg, service, tmp_dir)?;
    spawn_tls_reload(proxy.clone());
    tokio::spawn(async move {
        if let Err(e) = proxy.run(metrics).await {
            tracing::error!(error = %e, "edge proxy stopped");
            std::process::exit(2);
        }
    });
    Ok(())
}

/// SIGHUP re-reads the TLS certificates and keys.
fn spawn_tls_reload(proxy: Proxy) {
    use tokio::signal::unix::{SignalKind, signal};
    let Ok(mut hup) = signal(SignalKind::hangup()) else {
        tracing::warn!("cannot listen for SIGHUP: TLS certificates will not be reloaded");
        return;
    };
    tokio::spawn(async move {
        while hup.recv().await.is_some() {
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
