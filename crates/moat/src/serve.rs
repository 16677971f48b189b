//! `moat serve`: the scan API on embedded defaults (SQLite, local data dir, builtin engine).

use crate::config::{self, Settings};
use anyhow::{Context, Result};
use clap::Args;
use moat_api::{AppState, ScanService, telemetry};
use moat_scanner::{ReloadOutcome, Reloader, Scanner};
use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::Arc;
use std::time::Duration;

#[derive(Args)]
pub struct ServeArgs {
    /// Configuration file (TOML); `MOAT_*` environment variables override it.
    #[arg(long)]
    config: Option<PathBuf>,
    /// Listen address (overrides the config). Default 127.0.0.1:8080.
    #[arg(long)]
    listen: Option<SocketAddr>,
    /// Data directory for the SQLite database and temporary files. Default ./moat-data.
    #[arg(long = "data-dir")]
    data_dir: Option<PathBuf>,
}

pub fn run(a: ServeArgs) -> Result<ExitCode> {
    let mut s = config::load(a.config.as_deref())?;
    if let Some(l) = a.listen {
        s.server.listen = l;
    }
    if let Some(d) = a.data_dir {
        s.set_data_dir(d);
    }
    s.yara_cache_under_data_dir();
    crate::logging::init(s.log_json, "info");
    let rt = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .context("starting the runtime")?;
    let r = rt.block_on(serve(s));
    rt.shutdown_timeout(Duration::from_secs(5));
    r?;
    Ok(ExitCode::SUCCESS)
}

async fn serve(mut s: Settings) -> Result<()> {
    s.server
        .auth
        .check_listener(&s.server.listen)
        .map_err(anyhow::Error::msg)
        .context("refusing to start")?;
    let tmp_dir = s
        .server
        .tmp_dir
        .clone()
        .unwrap_or_else(|| s.data_dir.join("tmp"));
    for d in [&s.data_dir, &tmp_dir] {
        std::fs::create_dir_all(d).with_context(|| format!("creating {}", d.display()))?;
    }
    restrict(&tmp_dir)?;
    if s.scan.archive.tmp_dir == std::env::temp_dir() {
        s.scan.archive.tmp_dir = tmp_dir.clone();
    }
    let metrics = telemetry::install_recorder()
        .map_err(anyhow::Error::msg)
        .context("installing metrics")?;

    let engines = s.engines.clone();
    let set = tokio::task::spawn_blocking(move || moat_scanner::config::build_engine_set(&engines))
        .await
        .context("engine loading task")?
        .context("loading engines")?;
    let infos = set.infos();
    for i in &infos {
        tracing::info!(engine = %i.name, kind = %i.kind, version = %i.version, signature_version = %i.signature_version,
            signatures = ?i.signatures, unsupported = ?i.unsupported, load_errors = i.load_errors.len(),
            sources = ?i.sources, "engine loaded");
        for e in i.load_errors.iter().take(20) {
            tracing::warn!(engine = %i.name, "{e}");
        }
    }
    for a in s.scan.signature_ages(&infos) {
        let days = a.age_secs as f64 / 86_400.0;
        if a.stale {
            tracing::warn!(engine = %a.engine, age_days = format!("{days:.1}"), max_age_days = s.scan.signatures_max_age_days,
                "signatures are older than the configured maximum age; update them (freshclam or the configured source)");
        } else {
            tracing::info!(engine = %a.engine, age_days = format!("{days:.1}"), "signature age");
        }
    }
    let scanner = Arc::new(Scanner::new(set, s.scan.clone()));
    let store = moat_db::open(&s.database_url)
        .await
        .with_context(|| format!("opening database {}", redact(&s.database_url)))?;
    let reloader = Arc::new(Reloader::new(s.engines.clone()));
    let (bucket_stop, bucket_rx) = tokio::sync::watch::channel(false);
    let bucket_role =
        crate::bucket::start_in_serve(&s, scanner.clone(), store.clone(), bucket_rx).await?;
    let service = ScanService {
        scanner: scanner.clone(),
        store,
        policy: s.server.policy.clone(),
        cache: s.server.cache,
    };
    let portal_role =
        crate::portal::PortalRole::start(&s, service.clone(), tmp_dir.clone()).await?;
    let listen = s.server.listen;
    if let Some(pc) = s.proxy.take().filter(|p| !p.listeners.is_empty()) {
        let m = metrics.clone();
        crate::proxy::spawn(
            pc,
            service.clone(),
            tmp_dir.clone(),
            Some(Arc::new(move || m.render())),
        )?;
    }
    let state = AppState::new(
        service,
        s.server.clone(),
        tmp_dir,
        Some(reloader.clone()),
        Some(metrics),
    );
    let listener = tokio::net::TcpListener::bind(listen)
        .await
        .with_context(|| format!("listening on {listen}"))?;
    tracing::info!(listen = %listener.local_addr().unwrap_or(listen), data_dir = %s.data_dir.display(), database = redact(&s.database_url), "moat serve ready");

    let (update_stop, update_rx) = tokio::sync::watch::channel(false);
    let updates =
        crate::signatures::spawn_in_serve(&s, scanner.clone(), reloader.clone(), update_rx)?;
    tokio::spawn(reload_loop(scanner.clone(), reloader, s.reload.poll_secs));
    let health_state = state.clone();
    tokio::spawn(async move {
        loop {
            let _ = moat_api::check_ready(&health_state).await;
            tokio::time::sleep(Duration::from_secs(15)).await;
        }
    });
    let mut app = moat_api::router(state);
    if let Some(r) = &portal_role {
        app = app.merge(r.router.clone());
    }
    axum::serve(
        listener,
        app.into_make_service_with_connect_info::<SocketAddr>(),
    )
    .with_graceful_shutdown(shutdown_signal())
    .await
    .context("serving HTTP")?;
    if let Some(r) = portal_role {
        r.shutdown().await;
    }
    // An update in progress is dropped (its staging directory is cleaned
    // by the next run); the runtime's shutdown does not wait for it long.
    let _ = update_stop.send(true);
    if let Some(task) = updates {
        task.abort();
    }
    if let Some(task) = bucket_role {
        let _ = bucket_stop.send(true);
        let _ = task.await;
    }
    tracing::info!("moat serve stopped");
    Ok(())
}

pub(crate) fn restrict(dir: &std::path::Path) -> Result<()> {
    use std::os::unix::fs::PermissionsExt;
    std::fs::set_permissions(dir, std::fs::Permissions::from_mode(0o700))
        .with_context(|| format!("setting mode 0700 on {}", dir.display()))
}

pub(crate) fn redact(url: &str) -> String {
    match (url.find("://"), url.rfind('@')) {
        (Some(a), Some(b)) if b > a => format!("{}://***@{}", &url[..a], &url[b + 1..]),
        _ => url.to_string(),
    }
}

pub(crate) async fn reload_loop(scanner: Arc<Scanner>, reloader: Arc<Reloader>, poll_secs: u64) {
    use tokio::signal::unix::{SignalKind, signal};
    let mut hup = match signal(SignalKind::hangup()) {
        Ok(h) => Some(h),
        Err(e) => {
            tracing::warn!(error = %e, "cannot listen for SIGHUP");
            None
        }
    };
    let period = Duration::from_secs(poll_secs.max(1));
    loop {
        let forced = tokio::select! {
            _ = async { match hup.as_mut() { Some(h) => { h.recv().await; } None => std::future::pending::<()>().await } } => true,
            _ = tokio::time::sleep(period), if poll_secs > 0 => false,
        };
        let r = reloader.clone();
        let changed = forced
            || tokio::task::spawn_blocking(move || r.changed())
                .await
                .unwrap_or(false);
        if !changed {
            continue;
        }
        if forced {
            tracing::info!("SIGHUP: reloading engines");
        } else {
            tracing::info!("signature or rule files changed: reloading engines");
        }
        let (r, sc) = (reloader.clone(), scanner.clone());
        let outcome = tokio::task::spawn_blocking(move || r.reload(&sc)).await;
        let result = match outcome {
            Ok(ReloadOutcome::Swapped(_)) => "ok",
            _ => "failed",
        };
        metrics::counter!(telemetry::RELOADS, "result" => result).increment(1);
    }
}

pub(crate) async fn shutdown_signal() {
    use tokio::signal::unix::{SignalKind, signal};
    let term = async {
        match signal(SignalKind::terminate()) {
            Ok(mut s) => {
                s.recv().await;
            }
            Err(_) => std::future::pending::<()>().await,
        }
    };
    tokio::select! {
        _ = tokio::signal::ctrl_c() => {},
        _ = term => {},
    }
    tracing::info!("shutting down: finishing in-flight requests");
}
