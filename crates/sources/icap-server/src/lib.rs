//! moat-icap-server: an ICAP server (RFC 3507, as Squid and c-icap speak
//! it), so proxies and appliances that adapt HTTP through ICAP get moat's
//! engines, cache, records and fail-closed verdicts by pointing at
//! `icap://host:port/avscan`.
//!
//! * [`proto`]: the request head, `Encapsulated` offsets, encapsulated HTTP
//!   headers, chunk lines (pure, fuzzed).
//! * [`reply`]: OPTIONS, `100 Continue`, `204`, the echoed message, the block
//!   page with `X-Infection-Found`/`X-Virus-ID`/`X-Violations-Found`, errors.
//! * `session`: one connection's requests: preview and `ieof`, the body
//!   spooled to an anonymous 0600 file, the scan through the shared
//!   `ScanService` (source `icap`), the answer by policy.
//!
//! [`IcapServer`] is a [`moat_role::Role`]: built (listener bound) from
//! `[icap_server]`, run until the shutdown, then it stops accepting and
//! lets the requests in flight finish.
#![forbid(unsafe_code)]

pub mod config;
pub mod proto;
pub mod reply;
mod session;

pub use config::{ErrorReply, IcapServerConfig};
pub use session::SOURCE;

use moat_api::ScanService;
use moat_role::{HealthCell, HealthProbe, Role, RoleFuture, RoleHealth, Shutdown};
use session::Ctx;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;
use tokio::net::TcpListener;
use tokio::sync::Semaphore;

#[derive(Debug, thiserror::Error)]
pub enum IcapServerError {
    #[error("invalid [icap_server] configuration: {0}")]
    Config(String),
    #[error("listening on {0}: {1}")]
    Bind(String, std::io::Error),
}

/// The ICAP server role.
pub struct IcapServer {
    cfg: IcapServerConfig,
    service: ScanService,
    tmp_dir: PathBuf,
    tcp: TcpListener,
    health: HealthCell,
}

impl IcapServer {
    /// Validate and bind the listener.
    pub async fn bind(
        cfg: IcapServerConfig,
        service: ScanService,
        tmp_dir: PathBuf,
    ) -> Result<IcapServer, IcapServerError> {
        cfg.validate().map_err(IcapServerError::Config)?;
        let addr = cfg
            .listen
            .ok_or_else(|| IcapServerError::Config("listen is required".into()))?;
        let tcp = TcpListener::bind(addr)
            .await
            .map_err(|e| IcapServerError::Bind(addr.to_string(), e))?;
        let at = tcp.local_addr().map(|a| a.to_string()).unwrap_or_default();
        let mut names = vec![cfg.service.clone()];
        names.extend(cfg.aliases.iter().cloned());
        tracing::info!(listen = %at, services = ?names, preview = cfg.preview, max_body_size = cfg.max_body_size, "ICAP server listening");
        Ok(IcapServer {
            health: HealthCell::new(format!("listening on icap://{at}/{}", cfg.service)),
            cfg,
            service,
            tmp_dir,
            tcp,
        })
    }

    /// The bound address (for `listen = "127.0.0.1:0"`).
    pub fn local_addr(&self) -> Option<SocketAddr> {
        self.tcp.local_addr().ok()
    }
}

impl Role for IcapServer {
    fn name(&self) -> &'static str {
        "icap"
    }

    fn health(&self) -> HealthProbe {
        self.health.probe()
    }

    fn run(self: Box<Self>, shutdown: Shutdown) -> RoleFuture {
        Box::pin(async move {
            let IcapServer {
                cfg,
                service,
                tmp_dir,
                tcp,
                health,
            } = *self;
            let max = cfg.max_connections;
            let ctx = Arc::new(Ctx {
                cfg,
                service,
                tmp_dir,
                shutdown: shutdown.clone(),
            });
            health.set(RoleHealth::ready(health.get().detail));
            let permits = Arc::new(Semaphore::new(max));
            loop {
                // A permit first: past max_connections, clients wait in the
                // listen queue instead of costing a task and a buffer each.
                let permit = tokio::select! {
                    p = permits.clone().acquire_owned() => match p {
                        Ok(p) => p,
                        Err(_) => break,
                    },
                    _ = shutdown.cancelled() => break,
                };
                let stream = tokio::select! {
                    s = tcp.accept() => s,
                    _ = shutdown.cancelled() => break,
                };
                let stream = match stream {
                    Ok((s, _)) => s,
                    Err(e) => {
                        tracing::warn!(error = %e, "ICAP accept failed");
                        tokio::time::sleep(Duration::from_millis(50)).await;
                        continue;
                    }
                };
                let _ = stream.set_nodelay(true);
                let ctx = ctx.clone();
                tokio::spawn(async move {
                    session::serve(stream, ctx).await;
                    drop(permit);
                });
            }
            drop(tcp);
            // Drain: every connection returns its permit when it ends.
            let _ = permits
                .acquire_many(u32::try_from(max).unwrap_or(u32::MAX))
                .await;
            tracing::info!("ICAP server stopped");
            Ok(())
        })
    }
}
