//! The roles `moat serve` runs, each in one shape: a config section, a
//! `build()` that binds and connects (so start-up fails early and clearly),
//! and a [`moat_role::Role`] that runs under the one shutdown and reports its
//! readiness into `/readyz`.
//!
//! Adding a role: its config section in [`crate::config`], a module here
//! with `build(&Settings, &Core) -> Result<Option<Box<dyn Role>>>` (`None`
//! when not configured), and one line in [`build_serve`].

pub mod api;
pub mod bucket;
pub mod clamd;
pub mod icap;
pub mod portal;
pub mod proxy;
pub mod update;

use crate::config::Settings;
use crate::runtime::Core;
use anyhow::Result;
use moat_role::Supervisor;
use std::time::Duration;

/// How long roles get to finish in-flight work after SIGTERM (the bucket
/// role's own grace for in-flight objects is 30 s).
pub const DRAIN: Duration = Duration::from_secs(35);

/// Build every role `moat serve` is configured for, in start order. The
/// API role comes last: its `/readyz` reports all the others.
pub async fn build_serve(s: &mut Settings, core: &Core, sup: &mut Supervisor) -> Result<()> {
    sup.add(core.reload_role(s.reload.poll_secs));
    if let Some(r) = bucket::build(s, core).await? {
        sup.add(r);
    }
    if let Some(r) = proxy::build(s, core)? {
        sup.add(r);
    }
    if let Some(r) = clamd::build(s, core).await? {
        sup.add(r);
    }
    if let Some(r) = icap::build(s, core).await? {
        sup.add(r);
    }
    if let Some(r) = update::build(s, core).await? {
        sup.add(r);
    }
    let mut extra = None;
    let mut read = None;
    let mut broker_queue = None;
    if let Some(p) = portal::build(s, core).await? {
        sup.add(p.role);
        extra = Some(p.routes);
        read = Some(p.admins);
        broker_queue = p.broker_queue;
    }
    sup.add(api::build(s, core, sup.readiness(), extra, read, broker_queue).await?);
    Ok(())
}
