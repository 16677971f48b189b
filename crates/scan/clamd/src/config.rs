//! Configuration of one clamd engine, and the errors building one can give.

use serde::{Deserialize, Deserializer};
use std::time::Duration;

/// Default INSTREAM chunk: large enough to keep syscalls and clamd's per-chunk
/// work low, far below clamd's smallest sensible `StreamMaxLength`.
pub const DEFAULT_CHUNK_SIZE: usize = 256 * 1024;
/// Smallest and largest accepted chunk sizes. clamd refuses (with its "size limit
/// exceeded" answer) any single chunk larger than its `StreamMaxLength`.
pub const MIN_CHUNK_SIZE: usize = 1024;
pub const MAX_CHUNK_SIZE: usize = 8 * 1024 * 1024;

/// How to reach and use one clamd daemon.
///
/// In a config file durations are seconds (integer or fractional):
/// `address`, `timeout_secs`, `connect_timeout_secs`, `chunk_size`, `pool_size`,
/// `pool_idle_secs`, `cache_ttl_secs`.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct ClamdConfig {
    /// `tcp://host:port`, `host:port`, `unix:/path` or an absolute socket path.
    pub address: String,
    /// Upper bound for one scan (the scan's own deadline may be sooner). Default 120 s.
    #[serde(rename = "timeout_secs", deserialize_with = "secs")]
    pub timeout: Duration,
    /// Bound for establishing a connection; also bounds PING and VERSION. Default 5 s.
    #[serde(rename = "connect_timeout_secs", deserialize_with = "secs")]
    pub connect_timeout: Duration,
    /// INSTREAM chunk size in bytes. Default 256 KiB; 1 KiB..=8 MiB.
    pub chunk_size: usize,
    /// Idle IDSESSION connections kept for reuse; 0 disables sessions (one
    /// connection per scan). Default 4 × CPU cores.
    pub pool_size: usize,
    /// Idle pooled connections older than this are closed instead of reused.
    /// Keep it below clamd's `IdleTimeout` (default 30 s). Default 10 s.
    #[serde(rename = "pool_idle_secs", deserialize_with = "secs")]
    pub pool_idle_timeout: Duration,
    /// How long a verdict clamd took part in may be reused from the verdict
    /// cache: clamd's VERSION names the database version only for official
    /// databases, so the engine's fingerprint may miss a signature change.
    /// Default 1 hour; zero: never reused.
    #[serde(rename = "cache_ttl_secs", deserialize_with = "secs")]
    pub cache_ttl: Duration,
}

impl Default for ClamdConfig {
    fn default() -> Self {
        let cores = std::thread::available_parallelism().map_or(1, |n| n.get());
        ClamdConfig {
            address: "127.0.0.1:3310".to_string(),
            timeout: Duration::from_secs(120),
            connect_timeout: Duration::from_secs(5),
            chunk_size: DEFAULT_CHUNK_SIZE,
            pool_size: 4 * cores,
            pool_idle_timeout: Duration::from_secs(10),
            cache_ttl: Duration::from_secs(3600),
        }
    }
}

impl ClamdConfig {
    /// Checks everything except the address (see [`crate::Address::parse`]).
    pub(crate) fn validate(&self) -> Result<(), ConfigError> {
        if !(MIN_CHUNK_SIZE..=MAX_CHUNK_SIZE).contains(&self.chunk_size) {
            return Err(ConfigError::ChunkSize(self.chunk_size));
        }
        for (name, d) in [
            ("timeout", self.timeout),
            ("connect_timeout", self.connect_timeout),
        ] {
            if d.is_zero() {
                return Err(ConfigError::ZeroDuration(name));
            }
        }
        Ok(())
    }
}

/// Why a clamd engine could not be built. Never about clamd being down:
/// creating the engine does not contact clamd.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum ConfigError {
    #[error("invalid clamd address {address:?}: {reason}")]
    Address { address: String, reason: String },
    #[error("clamd chunk_size {0} is outside {MIN_CHUNK_SIZE}..={MAX_CHUNK_SIZE} bytes")]
    ChunkSize(usize),
    #[error("clamd {0} must be greater than zero")]
    ZeroDuration(&'static str),
}

/// Seconds (integer or fractional) into a [`Duration`].
fn secs<'de, D: Deserializer<'de>>(d: D) -> Result<Duration, D::Error> {
    let v = f64::deserialize(d)?;
    Duration::try_from_secs_f64(v)
        .map_err(|_| serde::de::Error::custom(format!("{v} is not a valid number of seconds")))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn deserializes_with_defaults() {
        let c: ClamdConfig = serde_json::from_str(r#"{"address":"unix:/run/c.sock"}"#).unwrap();
        assert_eq!(c.address, "unix:/run/c.sock");
        assert_eq!(c.timeout, Duration::from_secs(120));
        assert_eq!(c.connect_timeout, Duration::from_secs(5));
        assert_eq!(c.chunk_size, DEFAULT_CHUNK_SIZE);
        assert!(c.pool_size >= 4);
        let c: ClamdConfig = serde_json::from_str(
            r#"{"address":"h:1","timeout_secs":2.5,"connect_timeout_secs":1,"pool_size":0}"#,
        )
        .unwrap();
        assert_eq!(c.timeout, Duration::from_millis(2500));
        assert_eq!(c.connect_timeout, Duration::from_secs(1));
        assert_eq!(c.pool_size, 0);
    }

    #[test]
    fn rejects_bad_values() {
        assert!(serde_json::from_str::<ClamdConfig>(r#"{"timeout_secs":-1}"#).is_err());
        assert!(serde_json::from_str::<ClamdConfig>(r#"{"bogus":1}"#).is_err());
        let c = ClamdConfig {
            chunk_size: 10,
            ..Default::default()
        };
        assert_eq!(c.validate(), Err(ConfigError::ChunkSize(10)));
        let c = ClamdConfig {
            timeout: Duration::ZERO,
            ..Default::default()
        };
        assert_eq!(c.validate(), Err(ConfigError::ZeroDuration("timeout")));
    }
}
