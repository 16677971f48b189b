//! moat-clamd-server: a clamd-compatible server, so software that speaks
//! clamd (clamdscan, mail servers, Nextcloud, c-icap's virus_scan, client
//! libraries) gets moat's engines, cache, records and fail-closed verdicts by
//! changing one address.
//!
//! * [`proto`]: framing (`z`, `n`, legacy) and the command parser.
//! * [`reply`]: verdicts in clamd's words (fail closed: `OK` only for clean).
//! * `conn`: a TCP or Unix connection; descriptors passed with SCM_RIGHTS.
//! * `session`: one command or an IDSESSION; INSTREAM, FILDES, path scans
//!   under the allowed roots, STATS, VERSION, RELOAD, SHUTDOWN.
//!
//! [`ClamdServer`] is a [`moat_role::Role`]: built (listeners bound) from
//! `[clamd_server]`, run until the shutdown, then it stops accepting, lets
//! the connections in flight finish, and removes its Unix socket.
#![forbid(unsafe_code)]

pub mod config;
mod conn;
pub mod proto;
pub mod reply;
mod session;

pub use config::{ClamdServerConfig, UnscannableReply};
pub use session::{ReloadHook, SOURCE};

use conn::{Conn, Stream};
use moat_api::ScanService;
use moat_role::{HealthCell, HealthProbe, Role, RoleFuture, RoleHealth, Shutdown};
use session::Ctx;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;
use tokio::net::{TcpListener, UnixListener};
use tokio::sync::Semaphore;

#[derive(Debug, thiserror::Error)]
pub enum ClamdServerError {
    #[error("invalid [clamd_server] configuration: {0}")]
    Config(String),
    #[error("allow_roots: {path}: {source}")]
    Root {
        path: String,
        source: std::io::Error,
    },
    #[error("listening on {0}: {1}")]
    Bind(String, std::io::Error),
}

/// The clamd-compatible server role.
pub struct ClamdServer {
    cfg: ClamdServerConfig,
    service: ScanService,
    tmp_dir: PathBuf,
    roots: Vec<PathBuf>,
    reload: Option<ReloadHook>,
    tcp: Option<TcpListener>,
    unix: Option<(UnixListener, PathBuf)>,
    health: HealthCell,
}

impl ClamdServer {
    /// Validate, resolve the allowed roots, bind the listeners.
    pub async fn bind(
        cfg: ClamdServerConfig,
        service: ScanService,
        tmp_dir: PathBuf,
        reload: Option<ReloadHook>,
    ) -> Result<ClamdServer, ClamdServerError> {
        cfg.validate().map_err(ClamdServerError::Config)?;
        let mut roots = Vec::new();
        for r in &cfg.allow_roots {
            roots.push(
                std::fs::canonicalize(r).map_err(|source| ClamdServerError::Root {
                    path: r.display().to_string(),
                    source,
                })?,
            );
        }
        let tcp = match cfg.listen {
            Some(a) => Some(
                TcpListener::bind(a)
                    .await
                    .map_err(|e| ClamdServerError::Bind(a.to_string(), e))?,
            ),
            None => None,
        };
        let unix = match &cfg.socket {
            Some(p) => Some((bind_unix(p, &cfg)?, p.clone())),
            None => None,
        };
        let mut at = Vec::new();
        if let Some(a) = tcp.as_ref().and_then(|t| t.local_addr().ok()) {
            at.push(format!("tcp {a}"));
        }
        if let Some((_, p)) = &unix {
            at.push(format!("unix {}", p.display()));
        }
        tracing::info!(listen = %at.join(", "), allow_roots = ?roots, stream_max_length = cfg.stream_max_length, "clamd server listening");
        Ok(ClamdServer {
            health: HealthCell::new(format!("listening on {}", at.join(", "))),
            cfg,
            service,
            tmp_dir,
            roots,
            reload,
            tcp,
            unix,
        })
    }

    /// The bound TCP address (for `listen = "127.0.0.1:0"`).
    pub fn local_addr(&self) -> Option<SocketAddr> {
        self.tcp.as_ref().and_then(|t| t.local_addr().ok())
    }
}

/// Bind the Unix socket, replacing a stale socket file (never another kind
/// of file), with the configured mode.
fn bind_unix(
    p: &std::path::Path,
    cfg: &ClamdServerConfig,
) -> Result<UnixListener, ClamdServerError> {
    use std::os::unix::fs::{FileTypeExt, PermissionsExt};
    let err = |e| ClamdServerError::Bind(p.display().to_string(), e);
    if let Ok(m) = std::fs::symlink_metadata(p) {
        if !m.file_type().is_socket() {
            return Err(err(std::io::Error::new(
                std::io::ErrorKind::AlreadyExists,
                "exists and is not a socket",
            )));
        }
        if std::os::unix::net::UnixStream::connect(p).is_ok() {
            return Err(err(std::io::Error::new(
                std::io::ErrorKind::AddrInUse,
                "another server is answering on this socket",
            )));
        }
        std::fs::remove_file(p).map_err(err)?;
    }
    let l = UnixListener::bind(p).map_err(err)?;
    let mode = cfg.socket_mode_bits().map_err(ClamdServerError::Config)?;
    std::fs::set_permissions(p, std::fs::Permissions::from_mode(mode)).map_err(err)?;
    Ok(l)
}

impl Role for ClamdServer {
    fn name(&self) -> &'static str {
        "clamd"
    }

    fn health(&self) -> HealthProbe {
        self.health.probe()
    }

    fn run(self: Box<Self>, shutdown: Shutdown) -> RoleFuture {
        Box::pin(async move {
            let ClamdServer {
                cfg,
                service,
                tmp_dir,
                roots,
                reload,
                tcp,
                unix,
                health,
            } = *self;
            let max = cfg.max_connections;
            let ctx = Arc::new(Ctx {
                cfg,
                service,
                tmp_dir,
                roots,
                reload,
                shutdown: shutdown.clone(),
                live: AtomicUsize::new(0),
            });
            health.set(RoleHealth::ready(health.get().detail));
            let (unix, socket_path) = match unix {
                Some((l, p)) => (Some(l), Some(p)),
                None => (None, None),
            };
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
                    s = accept_tcp(tcp.as_ref()) => s.map(Stream::Tcp),
                    s = accept_unix(unix.as_ref()) => s.map(Stream::Unix),
                    _ = shutdown.cancelled() => break,
                };
                let Some(stream) = stream else { continue };
                let ctx = ctx.clone();
                tokio::spawn(async move {
                    ctx.live.fetch_add(1, Ordering::Relaxed);
                    session::serve(Conn::new(stream), ctx.clone()).await;
                    ctx.live.fetch_sub(1, Ordering::Relaxed);
                    drop(permit);
                });
            }
            drop(tcp);
            drop(unix);
            // Drain: every connection returns its permit when it ends.
            let _ = permits
                .acquire_many(u32::try_from(max).unwrap_or(u32::MAX))
                .await;
            if let Some(p) = socket_path {
                let _ = std::fs::remove_file(p);
            }
            tracing::info!("clamd server stopped");
            Ok(())
        })
    }
}

/// The next TCP connection; `None` after a failed accept (logged, paced).
/// Never completes without a listener.
async fn accept_tcp(l: Option<&TcpListener>) -> Option<tokio::net::TcpStream> {
    let Some(l) = l else {
        return std::future::pending().await;
    };
    match l.accept().await {
        Ok((s, _)) => {
            let _ = s.set_nodelay(true);
            Some(s)
        }
        Err(e) => {
            tracing::warn!(error = %e, "clamd accept failed");
            tokio::time::sleep(Duration::from_millis(50)).await;
            None
        }
    }
}

async fn accept_unix(l: Option<&UnixListener>) -> Option<tokio::net::UnixStream> {
    let Some(l) = l else {
        return std::future::pending().await;
    };
    match l.accept().await {
        Ok((s, _)) => Some(s),
        Err(e) => {
            tracing::warn!(error = %e, "clamd accept failed (unix)");
            tokio::time::sleep(Duration::from_millis(50)).await;
            None
        }
    }
}
