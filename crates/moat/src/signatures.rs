//! `moat signatures update`: the freshclam-compatible updater
//! ([`moat_update`]) from the command line, and the same as a background
//! task of `moat serve` followed by a hot reload.
//!
//! Exit codes of `moat signatures update`: `0` every database is up to date
//! (updated or already current); `1` at least one database could not be
//! updated (its previous copy stays); `2` the updater could not run (bad
//! configuration, unreadable key, another update holding the lock); `3`
//! nothing was requested because a server asked to wait (429/503
//! `Retry-After`, 403) and that cool-down has not ended.

use crate::config;
use anyhow::{Context, Result};
use clap::{Args, Subcommand};
use moat_scanner::{EngineConfig, ReloadOutcome, Reloader, Scanner};
use moat_update::{Outcome, Report, UpdateConfig, Updater};
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::sync::Arc;

#[derive(Args)]
pub struct SignaturesArgs {
    #[command(subcommand)]
    cmd: SignaturesCmd,
}

#[derive(Subcommand)]
enum SignaturesCmd {
    /// Fetch or update the signature databases from the mirror
    /// (`[signatures.update]`): CVD header probe, CDIFF incremental updates,
    /// verified and test-loaded before they replace the old files.
    /// Exit codes: 0 up to date, 1 some database failed (old copy kept),
    /// 2 could not run, 3 the mirror asked to wait (nothing requested).
    Update(UpdateArgs),
}

#[derive(Args)]
pub struct UpdateArgs {
    /// Configuration file (TOML); `MOAT_*` environment variables override it.
    #[arg(long)]
    config: Option<PathBuf>,
    /// Database directory (default: `[signatures.update] database_dir`, else
    /// the builtin engine's directory, else `<data_dir>/signatures`).
    #[arg(long = "database-dir")]
    database_dir: Option<PathBuf>,
    /// Mirror base URL (default: `[signatures.update] mirror`, else
    /// https://database.clamav.net).
    #[arg(long)]
    mirror: Option<String>,
    /// Print the result as JSON (one object per database) instead of text.
    #[arg(long)]
    json: bool,
}

pub fn run(a: SignaturesArgs) -> Result<ExitCode> {
    match a.cmd {
        SignaturesCmd::Update(u) => update(u),
    }
}

fn update(a: UpdateArgs) -> Result<ExitCode> {
    let s = config::load(a.config.as_deref())?;
    crate::logging::init(s.log_json, "warn");
    let mut cfg = match s.signatures_update.clone() {
        Some(c) => c,
        None => {
            let mut c = UpdateConfig::default();
            c.database_dir = Some(database_dir(&c, &s.engines, &s.data_dir));
            c
        }
    };
    if let Some(d) = a.database_dir {
        cfg.database_dir = Some(d);
    }
    if let Some(m) = a.mirror {
        cfg.mirror = m;
    }
    let dir = cfg.database_dir.clone().context("no database directory")?;
    let updater = Updater::new(&cfg, &dir)?;
    let report = updater.run()?;
    print_report(&report, &dir, a.json);
    Ok(exit_code(&report))
}

fn exit_code(r: &Report) -> ExitCode {
    if r.failed() {
        ExitCode::from(1)
    } else if r.cooldown() {
        ExitCode::from(3)
    } else {
        ExitCode::SUCCESS
    }
}

fn print_report(r: &Report, dir: &Path, json: bool) {
    for d in &r.databases {
        let rec = &d.record;
        if json {
            println!("{}", serde_json::to_string(rec).unwrap_or_default());
            continue;
        }
        let v = |v: Option<u64>| v.map_or("-".to_string(), |v| v.to_string());
        match d.outcome {
            Outcome::Updated => println!(
                "{}: updated {} -> {} ({}, {})",
                rec.database,
                v(rec.from_version),
                v(rec.version),
                rec.method,
                rec.source
            ),
            Outcome::UpToDate => {
                println!("{}: up to date (version {})", rec.database, v(rec.version))
            }
            Outcome::Failed => println!(
                "{}: FAILED, kept version {}: {}",
                rec.database,
                v(rec.version),
                rec.detail
            ),
            Outcome::Cooldown => println!("{}: not checked: {}", rec.database, rec.detail),
        }
    }
    if !json {
        println!("database directory: {}", dir.display());
    }
}

/// The database directory: configured, else the first directory the
/// builtin engine loads, else `<data_dir>/signatures`.
pub(crate) fn database_dir(u: &UpdateConfig, engines: &[EngineConfig], data_dir: &Path) -> PathBuf {
    if let Some(d) = &u.database_dir {
        return d.clone();
    }
    engines
        .iter()
        .filter_map(|e| match e {
            EngineConfig::Builtin { signatures, .. } => Some(signatures),
            _ => None,
        })
        .flatten()
        .find(|p| p.is_dir())
        .cloned()
        .unwrap_or_else(|| data_dir.join("signatures"))
}

/// Make the builtin engine load what the updater writes: the database
/// directory is created when missing (so that every command can load it
/// before the first update); with the default engines it is added to the
/// builtin engine; a builtin engine loading it checks signatures with the
/// updater's public key unless it names its own.
pub(crate) fn load_updates(
    engines: &mut [EngineConfig],
    dir: &Path,
    u: &UpdateConfig,
    configured: bool,
) {
    if let Err(e) = std::fs::create_dir_all(dir) {
        tracing::debug!(dir = %dir.display(), error = %e, "cannot create the signature update directory");
    }
    let mut loaded = false;
    for e in engines.iter_mut() {
        if let EngineConfig::Builtin {
            signatures,
            public_key,
            ..
        } = e
            && signatures.iter().any(|p| p == dir)
        {
            loaded = true;
            if public_key.is_none() {
                public_key.clone_from(&u.public_key);
            }
        }
    }
    if loaded || configured {
        return;
    }
    if let Some(EngineConfig::Builtin {
        signatures,
        public_key,
        ..
    }) = engines
        .iter_mut()
        .find(|e| matches!(e, EngineConfig::Builtin { .. }))
    {
        signatures.push(dir.to_path_buf());
        if public_key.is_none() {
            public_key.clone_from(&u.public_key);
        }
    }
}

/// Whether some builtin engine loads `dir`.
fn loaded_by_builtin(engines: &[EngineConfig], dir: &Path) -> bool {
    engines.iter().any(|e| {
        matches!(e, EngineConfig::Builtin { signatures, .. } if signatures.iter().any(|p| p == dir))
    })
}

/// The updater of `moat serve` when `[signatures.update]` is present and
/// enabled (run by [`update_loop`] as the `signature-updates` role).
pub(crate) async fn updater_for_serve(
    s: &config::Settings,
) -> Result<Option<(UpdateConfig, Arc<Updater>)>> {
    let Some(cfg) = s.signatures_update.clone().filter(|c| c.enabled) else {
        return Ok(None);
    };
    let dir = cfg
        .database_dir
        .clone()
        .unwrap_or_else(|| s.data_dir.join("signatures"));
    if !loaded_by_builtin(&s.engines, &dir) {
        tracing::warn!(dir = %dir.display(), "no builtin engine loads the signature update directory; updates will not be used until one does");
    }
    // The updater's HTTP client is a blocking one, which must not be built
    // (or dropped) on an async worker.
    let (c, d) = (cfg.clone(), dir.clone());
    let updater = tokio::task::spawn_blocking(move || Updater::new(&c, &d))
        .await
        .context("[signatures.update]")?
        .context("[signatures.update]")?;
    let updater = Arc::new(updater);
    tracing::info!(mirror = %cfg.mirror, databases = ?cfg.databases, extra_urls = cfg.extra_urls.len(), dir = %dir.display(),
        interval_secs = cfg.interval_secs, "signature updates enabled");
    Ok(Some((cfg, updater)))
}

/// A check at start (after up to `jitter_secs`), then every
/// `interval_secs` plus jitter; an update is followed by a hot reload.
/// Ends when `stop` turns true.
pub(crate) async fn update_loop(
    cfg: UpdateConfig,
    updater: Arc<Updater>,
    scanner: Arc<Scanner>,
    reloader: Arc<Reloader>,
    mut stop: tokio::sync::watch::Receiver<bool>,
) {
    let mut wait = cfg.first_wait();
    loop {
        tokio::select! {
            _ = tokio::time::sleep(wait) => {}
            _ = stop.changed() => break,
        }
        if *stop.borrow() {
            break;
        }
        wait = cfg.next_wait();
        let u = updater.clone();
        let report = match tokio::task::spawn_blocking(move || u.run()).await {
            Ok(Ok(r)) => r,
            Ok(Err(e)) => {
                tracing::error!(error = %e, "signature update could not run");
                continue;
            }
            Err(e) => {
                tracing::error!(error = %e, "signature update task failed");
                continue;
            }
        };
        let records: Vec<&moat_update::Record> =
            report.databases.iter().map(|d| &d.record).collect();
        reloader.set_updates(serde_json::json!({
            "database_dir": updater.database_dir(),
            "mirror": cfg.mirror,
            "last_check": records.first().map(|r| r.time),
            "last_results": records,
        }));
        if report.updated() {
            let (r, sc) = (reloader.clone(), scanner.clone());
            // The update's test load and the reload both leave freed memory.
            let reload = move || {
                let outcome = r.reload_now(&sc);
                crate::alloc::release_free_memory();
                outcome
            };
            match tokio::task::spawn_blocking(reload).await {
                Ok(ReloadOutcome::Swapped(fp)) => {
                    tracing::info!(fingerprint = %fp, "updated signatures are in use")
                }
                Ok(ReloadOutcome::Failed(e)) => {
                    tracing::error!(error = %e, "reload after the signature update failed; the previous set stays in use")
                }
                Err(e) => tracing::error!(error = %e, "reload task failed"),
            }
        }
    }
    // The blocking HTTP client inside must not be dropped on an async worker.
    let _ = tokio::task::spawn_blocking(move || drop(updater)).await;
}
