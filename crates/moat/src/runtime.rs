//! What every role of the process shares, built once: directories, engines
//! (with the "engine loaded" and signature-age log lines), the scanner and
//! its reloader, the record store, the metrics recorder; and the runtime
//! helpers (the reload loop, the shutdown signal, `redact`, `restrict`).

use crate::config::Settings;
use anyhow::{Context, Result};
use moat_api::ScanService;
use moat_api::telemetry::{self, PrometheusHandle};
use moat_core::Policy;
use moat_db::ScanStore;
use moat_role::{FnRole, HealthProbe, Role, RoleHealth, Shutdown};
use moat_scanner::{EngineSet, ReloadOutcome, Reloader, Scanner};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

/// The scan core every role of one process shares.
#[derive(Clone)]
pub struct Core {
    pub scanner: Arc<Scanner>,
    pub store: Arc<dyn ScanStore>,
    pub reloader: Arc<Reloader>,
    /// Where spooled bodies and extracted members go (mode 0700).
    pub tmp_dir: PathBuf,
    pub metrics: PrometheusHandle,
    /// Wakes the reload loop (clamd's RELOAD), as SIGHUP does.
    pub reload_now: Arc<tokio::sync::Notify>,
}

/// `[server] tmp_dir`, or `<data_dir>/tmp`.
pub fn default_tmp_dir(s: &Settings) -> PathBuf {
    s.server
        .tmp_dir
        .clone()
        .unwrap_or_else(|| s.data_dir.join("tmp"))
}

impl Core {
    /// Create the data and temporary directories (the latter 0700), install
    /// the metrics recorder, load the engines, open the database.
    pub async fn build(s: &mut Settings, tmp_dir: PathBuf) -> Result<Core> {
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
        let set = load_engines(s).await?;
        let scanner = Arc::new(Scanner::new(set, s.scan.clone()));
        let store = moat_db::open(&s.database_url)
            .await
            .with_context(|| format!("opening database {}", redact(&s.database_url)))?;
        let reloader = Arc::new(Reloader::new(s.engines.clone()));
        Ok(Core {
            scanner,
            store,
            reloader,
            tmp_dir,
            metrics,
            reload_now: Arc::new(tokio::sync::Notify::new()),
        })
    }

    /// The scan service a role scans through, with that role's policy.
    pub fn service(&self, policy: Policy, cache: bool) -> ScanService {
        ScanService {
            scanner: self.scanner.clone(),
            store: self.store.clone(),
            policy,
            cache,
        }
    }

    /// The engine hot-reload loop (poll + SIGHUP) as a role, so it stops with
    /// the others. Its health carries the last reload error, if any (the
    /// previous engines keep serving, so it stays ready).
    pub fn reload_role(&self, poll_secs: u64) -> Box<dyn Role> {
        let reloader = self.reloader.clone();
        let probe: HealthProbe = Arc::new(move || match reloader.last_error() {
            Some(e) => RoleHealth::ready(format!("last reload failed: {e}")),
            None => RoleHealth::ready(format!("polling every {poll_secs}s, SIGHUP")),
        });
        let (scanner, reloader) = (self.scanner.clone(), self.reloader.clone());
        let now = self.reload_now.clone();
        FnRole::new("reload", probe, move |shutdown: Shutdown| async move {
            tokio::select! {
                _ = reload_loop(scanner, reloader, poll_secs, now) => {}
                _ = shutdown.cancelled() => {}
            }
            Ok(())
        })
    }
}

/// Load the configured engines on a blocking thread and log what loaded.
async fn load_engines(s: &Settings) -> Result<EngineSet> {
    let engines = s.engines.clone();
    let set = tokio::task::spawn_blocking(move || {
        let set = moat_scanner::config::build_engine_set(&engines);
        crate::alloc::release_free_memory();
        set
    })
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
    Ok(set)
}

/// Mode 0700 on a directory moat writes temporary files into.
pub fn restrict(dir: &Path) -> Result<()> {
    use std::os::unix::fs::PermissionsExt;
    std::fs::set_permissions(dir, std::fs::Permissions::from_mode(0o700))
        .with_context(|| format!("setting mode 0700 on {}", dir.display()))
}

/// A URL with its user information hidden, for logs and errors.
pub fn redact(url: &str) -> String {
    match (url.find("://"), url.rfind('@')) {
        (Some(a), Some(b)) if b > a => format!("{}://***@{}", &url[..a], &url[b + 1..]),
        _ => url.to_string(),
    }
}

/// Reload the engines when their files change (polled every `poll_secs`,
/// 0 = never), on SIGHUP, or when `now` is notified; at each poll, also
/// take a new engine-set fingerprint when a clamd or ICAP engine reports
/// new signatures. Runs until dropped.
pub async fn reload_loop(
    scanner: Arc<Scanner>,
    reloader: Arc<Reloader>,
    poll_secs: u64,
    now: Arc<tokio::sync::Notify>,
) {
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
            _ = now.notified() => true,
            _ = tokio::time::sleep(period), if poll_secs > 0 => false,
        };
        let r = reloader.clone();
        let changed = forced
            || tokio::task::spawn_blocking(move || r.changed())
                .await
                .unwrap_or(false);
        if !changed {
            // A clamd or ICAP server may have new signatures of its own.
            let (r, sc) = (reloader.clone(), scanner.clone());
            if let Ok(Some(_)) = tokio::task::spawn_blocking(move || r.refresh_remote(&sc)).await {
                metrics::counter!(telemetry::RELOADS, "result" => "remote").increment(1);
            }
            continue;
        }
        if forced {
            tracing::info!("SIGHUP or RELOAD: reloading engines");
        } else {
            tracing::info!("signature or rule files changed: reloading engines");
        }
        let (r, sc) = (reloader.clone(), scanner.clone());
        let outcome = tokio::task::spawn_blocking(move || {
            let outcome = r.reload(&sc);
            crate::alloc::release_free_memory();
            outcome
        })
        .await;
        let result = match outcome {
            Ok(ReloadOutcome::Swapped(_)) => "ok",
            _ => "failed",
        };
        metrics::counter!(telemetry::RELOADS, "result" => result).increment(1);
    }
}

/// Completes on SIGTERM or Ctrl-C.
pub async fn shutdown_signal() {
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

/// How long a command's runtime waits, once the command is done, for the
/// background tasks still running on it before dropping them.
const RUNTIME_EXIT_GRACE: std::time::Duration = std::time::Duration::from_secs(5);

/// Run a command's future on a fresh multi-threaded tokio runtime, then stop
/// the runtime. Background tasks left on it (a connection pool's
/// maintenance task, say) get [`RUNTIME_EXIT_GRACE`] and are then dropped,
/// so a finished command always exits: a plain drop of the runtime waits
/// for them without bound, and sqlx's pool maintenance was seen spinning
/// through a runtime drop for over ten minutes after `moat portal
/// create-admin` had printed its result.
pub fn block_on<F: std::future::Future>(fut: F) -> Result<F::Output> {
    let rt = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .context("starting the runtime")?;
    let out = rt.block_on(fut);
    rt.shutdown_timeout(RUNTIME_EXIT_GRACE);
    Ok(out)
}

#[cfg(test)]
mod tests {
    #[test]
    fn a_command_exits_although_a_background_task_never_ends() {
        let started = std::time::Instant::now();
        let out = super::block_on(async {
            tokio::spawn(async {
                loop {
                    tokio::task::yield_now().await;
                }
            });
            42
        })
        .unwrap();
        assert_eq!(out, 42);
        let took = started.elapsed();
        assert!(took < super::RUNTIME_EXIT_GRACE * 3, "took {took:?}");
    }

    #[test]
    fn redact_hides_user_information_only() {
        assert_eq!(
            super::redact("postgres://u:p@db:5432/moat"),
            "postgres://***@db:5432/moat"
        );
        assert_eq!(
            super::redact("sqlite:///var/lib/moat.db"),
            "sqlite:///var/lib/moat.db"
        );
    }
}
