//! moat-proxy: the edge proxy role. A scanning reverse proxy in front of
//! upstream pools.
//!
//! * [`config`]: the `[proxy]` section (listeners, routes, pools, scan rules, limits).
//! * [`pool`]: balancing (weighted round-robin, least-connections, backups),
//!   passive and active health.
//! * [`body`]: spooling bodies to a [`moat_core::Spool`], multipart parts,
//!   aws-chunked decoding, streaming a spooled body back out byte for byte.
//! * [`Proxy`]: listeners (plain or TLS; HTTP/1.1 and HTTP/2), routing, the
//!   scan gate, forwarding with failover, WebSocket pass-through, response
//!   scanning, the admin listener, metrics and the `moat::access` log.
#![forbid(unsafe_code)]

pub mod body;
pub mod config;
mod fast;
mod linger;
pub mod pool;
mod server;
mod tls;
pub mod upstream;

pub use config::ProxyConfig;
pub use server::{MetricsRender, Proxy, ProxyError};
