//! `[server]` configuration.

use crate::auth::AuthConfig;
use moat_core::Policy;
use serde::Deserialize;
use std::net::SocketAddr;
use std::path::PathBuf;

#[derive(Debug, Clone, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct ApiConfig {
    /// Address to listen on. Default `127.0.0.1:8080`.
    pub listen: SocketAddr,
    /// Largest accepted request body in bytes (413 beyond). Default 1 GiB.
    pub max_body_size: u64,
    /// Bodies are held in memory up to this many bytes, then spilled to an
    /// anonymous 0600 temporary file. Default 1 MiB.
    pub spool_threshold: usize,
    /// Where spilled bodies go. Default: `<data_dir>/tmp`.
    pub tmp_dir: Option<PathBuf>,
    /// Scans running at once; further requests get 503 with Retry-After. Default: 2 × cores.
    pub max_concurrent_scans: usize,
    /// Answer repeated content from the verdict cache. Default true.
    pub cache: bool,
    pub auth: AuthConfig,
    /// What the `action` field of a verdict says. Default: block all but clean.
    pub policy: Policy,
}

impl Default for ApiConfig {
    fn default() -> Self {
        let cores = std::thread::available_parallelism()
            .map(|n| n.get())
            .unwrap_or(2);
        ApiConfig {
            listen: SocketAddr::from(([127, 0, 0, 1], 8080)),
            max_body_size: 1 << 30,
            spool_threshold: 1 << 20,
            tmp_dir: None,
            max_concurrent_scans: 2 * cores,
            cache: true,
            auth: AuthConfig::default(),
            policy: Policy::default(),
        }
    }
}
