//! `moat serve`: every configured role (the scan API always; the proxy,
//! bucket, … when configured) on embedded defaults (SQLite, local data dir,
//! builtin engine). Wiring only: see [`crate::roles`].

use crate::config::{self, Settings};
use crate::roles;
use crate::runtime::Core;
use anyhow::Result;
use clap::Args;
use moat_role::Supervisor;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::ExitCode;

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
    crate::runtime::block_on(serve(s))??;
    Ok(ExitCode::SUCCESS)
}

/// Build the shared scan core, then every configured role, and run them
/// under one shutdown until SIGTERM/Ctrl-C or a role fails.
async fn serve(mut s: Settings) -> Result<()> {
    roles::api::check(&s)?;
    let tmp_dir = crate::runtime::default_tmp_dir(&s);
    let core = Core::build(&mut s, tmp_dir).await?;
    let mut sup = Supervisor::new(roles::DRAIN);
    roles::build_serve(&mut s, &core, &mut sup).await?;
    tracing::debug!(roles = ?sup.names(), "roles built");
    sup.run(crate::runtime::shutdown_signal()).await?;
    tracing::info!("moat serve stopped");
    Ok(())
}
