//! `[icap_server]`: listener, service names, preview, limits, timeouts.

use serde::Deserialize;
use std::collections::BTreeMap;
use std::net::SocketAddr;

/// What an engine error is answered with.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, Default)]
#[serde(rename_all = "snake_case")]
pub enum ErrorReply {
    /// ICAP `500 Server Error` (default): a client with `bypass=off` (Squid's
    /// default) then answers its own error page, never the content.
    #[default]
    IcapError,
    /// The HTTP 403 block page, as for a detection: blocked even by clients
    /// that bypass a failing ICAP service.
    BlockPage,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct IcapServerConfig {
    /// TCP listener, e.g. `127.0.0.1:1344` (ICAP's port).
    pub listen: Option<SocketAddr>,
    /// The service name in `icap://host:port/<service>` (default `avscan`).
    pub service: String,
    /// Other names answered as the same service (e.g. `srv_clamav`, `virus_scan`).
    pub aliases: Vec<String>,
    /// `Preview:` offered in OPTIONS (bytes; default 1024).
    pub preview: u64,
    /// File extensions the client should send whole without a preview
    /// (`Transfer-Complete`). `Transfer-Preview: *` covers the rest.
    pub transfer_complete: Vec<String>,
    /// File extensions the client need not send at all (`Transfer-Ignore`).
    /// Empty by default: everything is scanned.
    pub transfer_ignore: Vec<String>,
    /// `Options-TTL:` (seconds).
    pub options_ttl_secs: u64,
    /// Connections served at once (`Max-Connections:`); more wait in the listen queue.
    pub max_connections: usize,
    /// Largest encapsulated body scanned; larger ones are unscannable
    /// (`too_large`) and answered by policy (default: blocked).
    pub max_body_size: u64,
    /// Largest ICAP head, and largest encapsulated HTTP headers (each).
    pub max_header_size: usize,
    /// No data within this time in the middle of a request: the connection closes.
    pub read_timeout_secs: u64,
    /// A kept-alive connection with no new request for this long is closed.
    pub idle_timeout_secs: u64,
    /// How an engine error is answered (`icap_error` or `block_page`).
    pub on_error: ErrorReply,
    /// Threat names used for unscannable content instead of the defaults
    /// (`Heuristics.Encrypted.Zip`, …), by reason.
    pub heuristic_names: BTreeMap<String, String>,
}

impl Default for IcapServerConfig {
    fn default() -> Self {
        IcapServerConfig {
            listen: None,
            service: "avscan".into(),
            aliases: Vec::new(),
            preview: 1024,
            transfer_complete: Vec::new(),
            transfer_ignore: Vec::new(),
            options_ttl_secs: 3600,
            max_connections: 128,
            max_body_size: 100 << 20,
            max_header_size: 64 << 10,
            read_timeout_secs: 60,
            idle_timeout_secs: 60,
            on_error: ErrorReply::IcapError,
            heuristic_names: BTreeMap::new(),
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

/// A service name or file extension: what may appear in a URI path or an
/// OPTIONS list without quoting.
fn token(s: &str) -> bool {
    !s.is_empty()
        && s.len() <= 64
        && s.bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b'.'))
}

impl IcapServerConfig {
    pub fn validate(&self) -> Result<(), String> {
        if self.listen.is_none() {
            return Err("listen is required (e.g. \"127.0.0.1:1344\")".into());
        }
        for s in std::iter::once(&self.service).chain(&self.aliases) {
            if !token(s) {
                return Err(format!(
                    "service name {s:?}: letters, digits, '-', '_' and '.' only"
                ));
            }
        }
        for e in self.transfer_complete.iter().chain(&self.transfer_ignore) {
            if !token(e) || e == "*" {
                return Err(format!("transfer extension {e:?} is not a plain extension"));
            }
        }
        if self.max_connections == 0 || self.max_body_size == 0 {
            return Err("max_connections and max_body_size must be at least 1".into());
        }
        if self.max_header_size < 1024 {
            return Err("max_header_size must be at least 1024".into());
        }
        if self.read_timeout_secs == 0 || self.idle_timeout_secs == 0 {
            return Err("timeouts must be at least 1 second".into());
        }
        if self.preview > 1 << 20 {
            return Err("preview must be at most 1 MiB".into());
        }
        for k in self.heuristic_names.keys() {
            if !REASONS.contains(&k.as_str()) {
                return Err(format!(
                    "heuristic_names: unknown reason {k:?} (one of {})",
                    REASONS.join(", ")
                ));
            }
        }
        Ok(())
    }

    /// Whether `name` is this service (its name or an alias).
    pub fn is_service(&self, name: &str) -> bool {
        self.service == name || self.aliases.iter().any(|a| a == name)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn validation_names_the_problem() {
        assert!(
            IcapServerConfig::default()
                .validate()
                .unwrap_err()
                .contains("listen")
        );
        let ok = IcapServerConfig {
            listen: Some("127.0.0.1:1344".parse().unwrap()),
            aliases: vec!["srv_clamav".into()],
            ..Default::default()
        };
        ok.validate().unwrap();
        assert!(ok.is_service("avscan") && ok.is_service("srv_clamav"));
        assert!(!ok.is_service("other"));
        let mut bad = ok.clone();
        bad.service = "a/b".into();
        assert!(bad.validate().unwrap_err().contains("a/b"));
        let mut bad = ok.clone();
        bad.transfer_ignore.push("*".into());
        assert!(bad.validate().is_err());
        let mut bad = ok;
        bad.heuristic_names.insert("encryptd".into(), "x".into());
        assert!(bad.validate().unwrap_err().contains("encryptd"));
    }
}
