//! `[clamd_server]`: listeners, allowed roots, limits, timeouts.

use serde::Deserialize;
use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::path::PathBuf;

/// What an unscannable verdict is answered with.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, Default)]
#[serde(rename_all = "lowercase")]
pub enum UnscannableReply {
    /// `<name>: Heuristics.Encrypted.Zip FOUND` and the like (default):
    /// clients block it as they block a detection.
    #[default]
    Found,
    /// `<name>: Not fully scanned (Heuristics.…) ERROR`.
    Error,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct ClamdServerConfig {
    /// TCP listener, e.g. `127.0.0.1:3310`.
    pub listen: Option<SocketAddr>,
    /// Unix socket path (FILDES works only here).
    pub socket: Option<PathBuf>,
    /// Mode of the Unix socket, octal (default `660`).
    pub socket_mode: String,
    /// SCAN/CONTSCAN/MULTISCAN/ALLMATCHSCAN only below these directories
    /// (symlinks resolved first); empty: every path is denied.
    pub allow_roots: Vec<PathBuf>,
    /// INSTREAM limit (clamd's StreamMaxLength, default 100 MiB).
    pub stream_max_length: u64,
    /// Connections served at once; more wait in the listen queue.
    pub max_connections: usize,
    /// Streams up to this many bytes stay in memory, then go to an anonymous
    /// 0600 file (default 1 MiB).
    pub spool_threshold: usize,
    /// No complete command within this time: `COMMAND READ TIMED OUT` (clamd's CommandReadTimeout, 30 s).
    pub command_timeout_secs: u64,
    /// No stream data within this time: `COMMAND READ TIMED OUT` (clamd's ReadTimeout, 120 s).
    pub read_timeout_secs: u64,
    /// An IDSESSION with no new command for this long is closed (clamd's IdleTimeout, 30 s).
    pub idle_timeout_secs: u64,
    /// Honour SHUTDOWN/QUIT (default off: any local client could stop moat).
    pub enable_shutdown: bool,
    /// `found` (default) or `error`: how content that was not fully
    /// scanned is answered. Never `OK`.
    pub unscannable: UnscannableReply,
    /// Names used instead of the defaults, by reason
    /// (`encrypted`, `too_large`, `limits_exceeded`, `unsupported`, `timeout`).
    pub heuristic_names: BTreeMap<String, String>,
    /// Files scanned at once by MULTISCAN.
    pub multiscan_parallel: usize,
    /// Most files one path command scans (a directory walk stops after).
    pub max_files_per_command: u64,
}

impl Default for ClamdServerConfig {
    fn default() -> Self {
        ClamdServerConfig {
            listen: None,
            socket: None,
            socket_mode: "660".into(),
            allow_roots: Vec::new(),
            stream_max_length: 100 << 20,
            max_connections: 128,
            spool_threshold: 1 << 20,
            command_timeout_secs: 30,
            read_timeout_secs: 120,
            idle_timeout_secs: 30,
            enable_shutdown: false,
            unscannable: UnscannableReply::Found,
            heuristic_names: BTreeMap::new(),
            multiscan_parallel: 4,
            max_files_per_command: 1_000_000,
        }
    }
}

const REASONS: [&str; 5] = [
    "encrypted",
    "too_large",
    "limits_exceeded",
    "unsupported",
    "timeout",
];

impl ClamdServerConfig {
    pub fn validate(&self) -> Result<(), String> {
        if self.listen.is_none() && self.socket.is_none() {
            return Err("give listen (TCP) or socket (Unix), or both".into());
        }
        if self.stream_max_length == 0 {
            return Err("stream_max_length must be greater than 0".into());
        }
        if self.max_connections == 0 || self.multiscan_parallel == 0 {
            return Err("max_connections and multiscan_parallel must be at least 1".into());
        }
        if self.command_timeout_secs == 0
            || self.read_timeout_secs == 0
            || self.idle_timeout_secs == 0
        {
            return Err("timeouts must be at least 1 second".into());
        }
        self.socket_mode_bits()?;
        for k in self.heuristic_names.keys() {
            if !REASONS.contains(&k.as_str()) {
                return Err(format!(
                    "heuristic_names: unknown reason {k:?} (one of {})",
                    REASONS.join(", ")
                ));
            }
        }
        for r in &self.allow_roots {
            if !r.is_absolute() {
                return Err(format!("allow_roots: {} is not absolute", r.display()));
            }
        }
        Ok(())
    }

    pub fn socket_mode_bits(&self) -> Result<u32, String> {
        u32::from_str_radix(self.socket_mode.trim_start_matches("0o"), 8)
            .ok()
            .filter(|m| *m <= 0o777)
            .ok_or_else(|| format!("socket_mode {:?} is not an octal mode", self.socket_mode))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn validation_names_the_problem() {
        assert!(ClamdServerConfig::default().validate().is_err());
        let ok = ClamdServerConfig {
            listen: Some("127.0.0.1:3310".parse().unwrap()),
            ..Default::default()
        };
        ok.validate().unwrap();
        let mut bad = ok.clone();
        bad.socket_mode = "999".into();
        assert!(bad.validate().unwrap_err().contains("socket_mode"));
        let mut bad = ok.clone();
        bad.heuristic_names.insert("encryptd".into(), "x".into());
        assert!(bad.validate().unwrap_err().contains("encryptd"));
        let mut bad = ok;
        bad.allow_roots.push("relative".into());
        assert!(bad.validate().unwrap_err().contains("absolute"));
    }
}
