//! `moat proxy`: the edge proxy role alone. `--listen` + `--upstream` is the
//! one-line equivalent of a `[proxy]` section with one listener, one pool and
//! one route scanning every POST/PUT/PATCH body. `moat serve` starts the same
//! proxy (see [`crate::roles::proxy`]) when the configuration has a `[proxy]` section.

use crate::config;
use crate::runtime::Core;
use anyhow::{Context, Result, bail};
use clap::Args;
use moat_proxy::ProxyConfig;
use moat_role::Supervisor;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::ExitCode;

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
    crate::runtime::block_on(async move {
        let tmp_dir = crate::runtime::default_tmp_dir(&s);
        let core = Core::build(&mut s, tmp_dir).await?;
        let service = core.service(s.server.policy.clone(), s.server.cache);
        let mut sup = Supervisor::new(crate::roles::DRAIN);
        sup.add(core.reload_role(s.reload.poll_secs));
        sup.add(crate::roles::proxy::new(
            pc,
            service,
            core.tmp_dir.clone(),
            &core,
        )?);
        sup.run(crate::runtime::shutdown_signal()).await?;
        anyhow::Ok(())
    })??;
    Ok(ExitCode::SUCCESS)
}
