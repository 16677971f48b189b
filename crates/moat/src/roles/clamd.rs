//! The clamd-compatible server role (`[clamd_server]`): scans through the
//! API's policy and cache setting; RELOAD wakes the engine reload loop.

use crate::config::Settings;
use crate::runtime::Core;
use anyhow::{Context, Result};
use moat_clamd_server::{ClamdServer, ClamdServerConfig};
use moat_role::Role;
use std::sync::Arc;

/// The clamd server of `moat serve`, when `[clamd_server]` is present.
pub async fn build(s: &Settings, core: &Core) -> Result<Option<Box<dyn Role>>> {
    let Some(cfg) = s.clamd_server.clone() else {
        return Ok(None);
    };
    Ok(Some(Box::new(new(cfg, s, core).await?)))
}

/// Bind the server's listeners.
pub async fn new(cfg: ClamdServerConfig, s: &Settings, core: &Core) -> Result<ClamdServer> {
    let service = core.service(s.server.policy.clone(), s.server.cache);
    let now = core.reload_now.clone();
    ClamdServer::bind(
        cfg,
        service,
        core.tmp_dir.clone(),
        Some(Arc::new(move || now.notify_one())),
    )
    .await
    .context("[clamd_server]")
}
