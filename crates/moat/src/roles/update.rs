//! The signature updater role (`[signatures.update]`, when enabled): checks
//! the mirror on a jittered schedule, installs verified databases and hot
//! reloads the engines.

use crate::config::Settings;
use crate::runtime::Core;
use anyhow::Result;
use moat_role::{FnRole, HealthProbe, Role, RoleHealth};
use std::sync::Arc;

pub async fn build(s: &Settings, core: &Core) -> Result<Option<Box<dyn Role>>> {
    let Some((cfg, updater)) = crate::signatures::updater_for_serve(s).await? else {
        return Ok(None);
    };
    let detail = format!("mirror {}, every {} s", cfg.mirror, cfg.interval_secs);
    let probe: HealthProbe = Arc::new(move || RoleHealth::ready(detail.clone()));
    let (scanner, reloader) = (core.scanner.clone(), core.reloader.clone());
    Ok(Some(FnRole::new(
        "signature-updates",
        probe,
        move |shutdown| async move {
            crate::signatures::update_loop(cfg, updater, scanner, reloader, shutdown.watch()).await;
            Ok(())
        },
    )))
}
