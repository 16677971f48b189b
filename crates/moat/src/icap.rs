//! `moat icap`: the ICAP server alone. `--listen` and `--service` fill (or
//! replace) the `[icap_server]` section; the engine flags are those of
//! `moat scan`.

use crate::cli_scan::EngineFlags;
use crate::config;
use crate::runtime::Core;
use anyhow::{Result, bail};
use clap::Args;
use moat_role::Supervisor;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::ExitCode;

#[derive(Args)]
pub struct IcapArgs {
    /// Configuration file (TOML); `MOAT_*` environment variables override it.
    #[arg(long)]
    config: Option<PathBuf>,
    /// TCP listen address, e.g. 127.0.0.1:1344.
    #[arg(long)]
    listen: Option<SocketAddr>,
    /// Service name in icap://host:port/<service> (default avscan).
    #[arg(long)]
    service: Option<String>,
    /// Data directory for the SQLite database and spooled bodies. Default ./moat-data.
    #[arg(long = "data-dir")]
    data_dir: Option<PathBuf>,
    #[command(flatten)]
    engines: EngineFlags,
}

pub fn run(a: IcapArgs) -> Result<ExitCode> {
    let mut s = config::load(a.config.as_deref())?;
    if let Some(d) = a.data_dir {
        s.set_data_dir(d);
    }
    if let Some(e) = a.engines.engines() {
        s.engines = e;
    }
    let mut cfg = s.icap_server.take().unwrap_or_default();
    if a.listen.is_some() {
        cfg.listen = a.listen;
    }
    if let Some(name) = a.service {
        cfg.service = name;
    }
    if cfg.listen.is_none() {
        bail!("give --listen, or a configuration with an [icap_server] section");
    }
    s.yara_cache_under_data_dir();
    crate::logging::init(s.log_json, "info");
    crate::runtime::block_on(async move {
        let tmp_dir = crate::runtime::default_tmp_dir(&s);
        let core = Core::build(&mut s, tmp_dir).await?;
        let server = crate::roles::icap::new(cfg, &s, &core).await?;
        let mut sup = Supervisor::new(crate::roles::DRAIN);
        sup.add(core.reload_role(s.reload.poll_secs));
        sup.add(Box::new(server));
        tracing::info!("moat icap ready");
        sup.run(crate::runtime::shutdown_signal()).await?;
        anyhow::Ok(())
    })??;
    Ok(ExitCode::SUCCESS)
}
