//! The ICAP server role (`[icap_server]`): scans through the API's policy
//! and cache setting, so a detection, unscannable content or an engine
//! error is blocked exactly as the API and the proxy block it.

use crate::config::Settings;
use crate::runtime::Core;
use anyhow::{Context, Result};
use moat_icap_server::{IcapServer, IcapServerConfig};
use moat_role::Role;

/// The ICAP server of `moat serve`, when `[icap_server]` is present.
pub async fn build(s: &Settings, core: &Core) -> Result<Option<Box<dyn Role>>> {
    let Some(cfg) = s.icap_server.clone() else {
        return Ok(None);
    };
    Ok(Some(Box::new(new(cfg, s, core).await?)))
}

/// Bind the server's listener.
pub async fn new(cfg: IcapServerConfig, s: &Settings, core: &Core) -> Result<IcapServer> {
    let service = core.service(s.server.policy.clone(), s.server.cache);
    IcapServer::bind(cfg, service, core.tmp_dir.clone())
        .await
        .context("[icap_server]")
}
