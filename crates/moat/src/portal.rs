//! `moat portal ...`: the portal's administrative commands, and the
//! portal role's start under `moat serve`.

use crate::config::{self, Settings};
use anyhow::{Context, Result, bail};
use clap::{Args, Subcommand};
use moat_api::ScanService;
use std::io::Read;
use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::Arc;

#[derive(Args)]
pub struct PortalArgs {
    /// Configuration file (TOML); `MOAT_*` environment variables override it.
    #[arg(long, global = true)]
    config: Option<PathBuf>,
    /// Data directory (the default SQLite database and key files live there).
    #[arg(long = "data-dir", global = true)]
    data_dir: Option<PathBuf>,
    #[command(subcommand)]
    cmd: PortalCmd,
}

#[derive(Subcommand)]
enum PortalCmd {
    /// Create an admin account (the first-run bootstrap; no default password exists).
    CreateAdmin {
        #[arg(long)]
        email: String,
        /// Read the password from standard input (one line).
        #[arg(long = "password-stdin", required = true)]
        password_stdin: bool,
    },
    /// Print a new API token for a user (`Authorization: Bearer ...`).
    CreateToken {
        #[arg(long)]
        email: String,
        #[arg(long, default_value = "cli")]
        name: String,
    },
    /// Re-wrap every package's data key under a new key-encryption key
    /// (file contents are not touched); then point `portal.kek_file` at it.
    RotateKek {
        /// The new KEK: 64 hex characters or base64 of 32 bytes.
        #[arg(long = "new-kek-file")]
        new_kek_file: PathBuf,
    },
}

fn settings(a: &PortalArgs) -> Result<Settings> {
    let mut s = config::load(a.config.as_deref())?;
    if let Some(d) = &a.data_dir {
        s.set_data_dir(d.clone());
    }
    Ok(s)
}

pub fn run(a: PortalArgs) -> Result<ExitCode> {
    let s = settings(&a)?;
    crate::logging::init(s.log_json, "warn");
    std::fs::create_dir_all(&s.data_dir)
        .with_context(|| format!("creating {}", s.data_dir.display()))?;
    let rt = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .context("starting the runtime")?;
    rt.block_on(async move {
        match a.cmd {
            PortalCmd::CreateAdmin { email, password_stdin } => {
                if !password_stdin {
                    bail!("--password-stdin is required");
                }
                let mut pw = String::new();
                std::io::stdin().take(4096).read_to_string(&mut pw).context("reading the password")?;
                let pw = pw.trim_end_matches(['\n', '\r']).to_string();
                let id = moat_portal::cli::create_admin(&s.database_url, &email, pw).await?;
                println!("created admin {email} ({id})");
            }
            PortalCmd::CreateToken { email, name } => {
                let t = moat_portal::cli::create_token(&s.database_url, &email, &name).await?;
                println!("{t}");
            }
            PortalCmd::RotateKek { new_kek_file } => {
                let old = moat_portal::load_kek(&s.portal, &s.data_dir)?;
                let new = moat_vault::Kek::from_file(&new_kek_file)
                    .with_context(|| format!("reading {}", new_kek_file.display()))?;
                let (done, skipped) = moat_portal::cli::rotate_kek(&s.database_url, &old, &new).await?;
                println!("re-wrapped {done} data keys ({skipped} already under the new KEK); now set portal.kek_file to {}", new_kek_file.display());
            }
        }
        Ok(ExitCode::SUCCESS)
    })
}

/// The running portal: its router (merged into the API listener), the
/// workers and the scheduler.
pub struct PortalRole {
    pub portal: Arc<moat_portal::Portal>,
    pub router: axum::Router,
    tasks: Vec<tokio::task::JoinHandle<()>>,
    stop: tokio::sync::watch::Sender<bool>,
}

impl PortalRole {
    /// Build the role when `[portal]` is enabled.
    pub async fn start(
        s: &Settings,
        service: ScanService,
        tmp_dir: PathBuf,
    ) -> Result<Option<PortalRole>> {
        if !s.portal.enabled {
            return Ok(None);
        }
        let base = format!("http://{}", s.server.listen);
        let portal = moat_portal::Portal::build(
            s.portal.clone(),
            &s.data_dir,
            &s.database_url,
            service,
            tmp_dir,
            base,
        )
        .await
        .context("starting the portal")?;
        let (stop, rx) = tokio::sync::watch::channel(false);
        let mut tasks = moat_portal::worker::spawn(portal.clone(), rx.clone());
        tasks.push(moat_portal::scheduler::spawn(portal.clone(), rx.clone()));
        tasks.extend(moat_portal::mail::spawn(portal.clone(), rx));
        let router = moat_portal::api::router(portal.clone());
        tracing::info!(
            storage = portal.vault.backend_name(),
            workers = s.portal.workers,
            "portal role ready"
        );
        Ok(Some(PortalRole {
            portal,
            router,
            tasks,
            stop,
        }))
    }

    pub async fn shutdown(self) {
        let _ = self.stop.send(true);
        for t in self.tasks {
            let _ = t.await;
        }
    }
}
