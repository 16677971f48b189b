//! `[proxy]` configuration: listeners, routes, upstream pools, scan rules, limits.

use serde::Deserialize;
use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::path::PathBuf;

#[derive(Debug, Clone, Deserialize, PartialEq)]
#[serde(default, deny_unknown_fields)]
pub struct ProxyConfig {
    pub listeners: Vec<ListenerConfig>,
    pub routes: Vec<RouteConfig>,
    pub pools: BTreeMap<String, PoolConfig>,
    /// `/healthz`, `/status` (pools as JSON) and `/metrics`; off when unset.
    pub admin_listen: Option<SocketAddr>,
    /// Largest request body accepted, in bytes (413 beyond). Default 1 GiB.
    pub max_body_size: u64,
    /// Scanned bodies stay in memory up to this many bytes, then spill to an
    /// anonymous 0600 temporary file. Default 1 MiB.
    pub spool_threshold: usize,
    /// Largest request head (request line + headers) in bytes; 431 beyond. Default 64 KiB.
    pub max_header_size: usize,
    /// Connecting to an upstream server. Default 5 s.
    pub connect_timeout_secs: u64,
    /// Waiting for an upstream's response head. Default 60 s.
    pub read_timeout_secs: u64,
    /// A client must send its request head, and each piece of a scanned body,
    /// within this time (408 / connection closed beyond). Default 30 s.
    pub client_timeout_secs: u64,
    /// Idle keep-alive connections to upstreams are closed after this. Default 60 s.
    pub idle_timeout_secs: u64,
    /// Threads serving the listeners, each with its own single-threaded
    /// runtime and upstream connections; each new connection goes to the
    /// worker holding the fewest.
    /// Default: one per CPU. 0 serves them on the process's shared runtime.
    pub workers: Option<usize>,
    /// Plain-HTTP/1.1 requests that need no scanning (bodiless GET, HEAD,
    /// OPTIONS) go through moat's own lean pass-through path; everything
    /// else, and every request when this is off, through hyper. Default on.
    pub fast_path: bool,
}

impl Default for ProxyConfig {
    fn default() -> Self {
        ProxyConfig {
            listeners: Vec::new(),
            routes: Vec::new(),
            pools: BTreeMap::new(),
            admin_listen: None,
            max_body_size: 1 << 30,
            spool_threshold: 1 << 20,
            max_header_size: 64 << 10,
            connect_timeout_secs: 5,
            read_timeout_secs: 60,
            client_timeout_secs: 30,
            idle_timeout_secs: 60,
            workers: None,
            fast_path: true,
        }
    }
}

#[derive(Debug, Clone, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct ListenerConfig {
    pub listen: SocketAddr,
    /// PEM certificate chain; with `tls_key`, the listener terminates TLS (1.2 and 1.3, ALPN h2 + http/1.1).
    pub tls_cert: Option<PathBuf>,
    pub tls_key: Option<PathBuf>,
}

#[derive(Debug, Clone, Deserialize, PartialEq)]
#[serde(default, deny_unknown_fields)]
pub struct RouteConfig {
    /// Host name to match (without port, case-insensitive); unset matches any host.
    pub host: Option<String>,
    /// Path prefix to match. Default `/`. The longest matching prefix wins.
    pub path_prefix: String,
    /// Name of a pool in `[proxy.pools]`.
    pub pool: String,
    pub scan: ScanRules,
    /// Scan response bodies (downloads) too; an infected download becomes a 403.
    pub scan_responses: bool,
}

impl Default for RouteConfig {
    fn default() -> Self {
        RouteConfig {
            host: None,
            path_prefix: "/".into(),
            pool: String::new(),
            scan: ScanRules::default(),
            scan_responses: false,
        }
    }
}

/// Which request bodies are scanned before they are forwarded.
#[derive(Debug, Clone, Deserialize, PartialEq)]
#[serde(default, deny_unknown_fields)]
pub struct ScanRules {
    pub enabled: bool,
    /// Methods whose bodies are scanned. Default POST, PUT, PATCH.
    pub methods: Vec<String>,
    /// Path patterns (`*` matches any run of characters); empty: every path.
    pub paths: Vec<String>,
    /// Content-type prefixes (e.g. `multipart/form-data`); empty: every type.
    pub content_types: Vec<String>,
}

impl Default for ScanRules {
    fn default() -> Self {
        ScanRules {
            enabled: true,
            methods: vec!["POST".into(), "PUT".into(), "PATCH".into()],
            paths: Vec::new(),
            content_types: Vec::new(),
        }
    }
}

impl ScanRules {
    pub fn matches(&self, method: &str, path: &str, content_type: &str) -> bool {
        self.enabled
            && self.methods.iter().any(|m| m.eq_ignore_ascii_case(method))
            && (self.paths.is_empty() || self.paths.iter().any(|p| glob(p, path)))
            && (self.content_types.is_empty()
                || self.content_types.iter().any(|c| {
                    content_type
                        .to_ascii_lowercase()
                        .starts_with(&c.to_ascii_lowercase())
                }))
    }
}

/// `*` matches any run of characters (including `/`); everything else is literal.
pub fn glob(pattern: &str, s: &str) -> bool {
    let p = pattern.as_bytes();
    let s = s.as_bytes();
    let (mut pi, mut si) = (0, 0);
    let (mut star, mut mark) = (None, 0);
    while si < s.len() {
        if pi < p.len() && p[pi] == b'*' {
            star = Some(pi);
            mark = si;
            pi += 1;
        } else if pi < p.len() && p[pi] == s[si] {
            pi += 1;
            si += 1;
        } else if let Some(st) = star {
            pi = st + 1;
            mark += 1;
            si = mark;
        } else {
            return false;
        }
    }
    while pi < p.len() && p[pi] == b'*' {
        pi += 1;
    }
    pi == p.len()
}

#[derive(Debug, Clone, Copy, Deserialize, PartialEq, Eq, Default)]
#[serde(rename_all = "snake_case")]
pub enum Balance {
    #[default]
    RoundRobin,
    LeastConn,
}

#[derive(Debug, Clone, Deserialize, PartialEq)]
#[serde(default, deny_unknown_fields)]
pub struct PoolConfig {
    pub servers: Vec<ServerConfig>,
    pub balance: Balance,
    /// Failed attempts within `fail_timeout_secs` that take a server out (nginx `max_fails`). Default 1.
    pub max_fails: u32,
    /// The failure window and how long a failed server stays out (nginx `fail_timeout`). Default 10 s.
    pub fail_timeout_secs: u64,
    /// Active health checks; off when unset.
    pub health: Option<HealthConfig>,
}

impl Default for PoolConfig {
    fn default() -> Self {
        PoolConfig {
            servers: Vec::new(),
            balance: Balance::RoundRobin,
            max_fails: 1,
            fail_timeout_secs: 10,
            health: None,
        }
    }
}

#[derive(Debug, Clone, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct ServerConfig {
    /// `http://host:port` (upstreams speak HTTP/1.1 in clear on the internal network).
    pub url: String,
    #[serde(default = "one")]
    pub weight: u32,
    /// Used only when every non-backup server is down.
    #[serde(default)]
    pub backup: bool,
}

fn one() -> u32 {
    1
}

#[derive(Debug, Clone, Deserialize, PartialEq)]
#[serde(default, deny_unknown_fields)]
pub struct HealthConfig {
    pub path: String,
    pub interval_secs: u64,
    pub timeout_secs: u64,
    /// Status a healthy server answers. Default 200.
    pub expect_status: u16,
}

impl Default for HealthConfig {
    fn default() -> Self {
        HealthConfig {
            path: "/".into(),
            interval_secs: 5,
            timeout_secs: 2,
            expect_status: 200,
        }
    }
}

impl ProxyConfig {
    /// The quick-start equivalent: one listener, one pool of `upstreams`, one route scanning every POST/PUT/PATCH body.
    pub fn quick(
        listen: SocketAddr,
        upstreams: &[String],
        tls: Option<(PathBuf, PathBuf)>,
    ) -> ProxyConfig {
        let (tls_cert, tls_key) = match tls {
            Some((c, k)) => (Some(c), Some(k)),
            None => (None, None),
        };
        let mut pools = BTreeMap::new();
        pools.insert(
            "default".to_string(),
            PoolConfig {
                servers: upstreams
                    .iter()
                    .map(|u| ServerConfig {
                        url: u.clone(),
                        weight: 1,
                        backup: false,
                    })
                    .collect(),
                ..PoolConfig::default()
            },
        );
        ProxyConfig {
            listeners: vec![ListenerConfig {
                listen,
                tls_cert,
                tls_key,
            }],
            routes: vec![RouteConfig {
                pool: "default".into(),
                ..RouteConfig::default()
            }],
            pools,
            ..ProxyConfig::default()
        }
    }

    /// Check references and values; the message names the offending key.
    pub fn validate(&self) -> Result<(), String> {
        if self.listeners.is_empty() {
            return Err("proxy.listeners is empty".into());
        }
        for l in &self.listeners {
            if l.tls_cert.is_some() != l.tls_key.is_some() {
                return Err(format!(
                    "proxy listener {}: tls_cert and tls_key go together",
                    l.listen
                ));
            }
        }
        if self.routes.is_empty() {
            return Err("proxy.routes is empty".into());
        }
        for r in &self.routes {
            if !self.pools.contains_key(&r.pool) {
                return Err(format!(
                    "proxy route {:?}: unknown pool {:?}",
                    r.path_prefix, r.pool
                ));
            }
            if !r.path_prefix.starts_with('/') {
                return Err(format!(
                    "proxy route path_prefix {:?} must start with /",
                    r.path_prefix
                ));
            }
        }
        for (name, p) in &self.pools {
            if p.servers.is_empty() {
                return Err(format!("proxy pool {name:?} has no servers"));
            }
            for s in &p.servers {
                crate::pool::parse_upstream(&s.url)
                    .map_err(|e| format!("proxy pool {name:?}: {e}"))?;
                if s.weight == 0 {
                    return Err(format!(
                        "proxy pool {name:?}: server {} has weight 0",
                        s.url
                    ));
                }
            }
            if p.max_fails == 0 {
                return Err(format!("proxy pool {name:?}: max_fails must be at least 1"));
            }
            if let Some(h) = &p.health
                && (h.interval_secs == 0 || !h.path.starts_with('/'))
            {
                return Err(format!(
                    "proxy pool {name:?}: health needs interval_secs > 0 and a path starting with /"
                ));
            }
        }
        if self.max_body_size == 0 || self.max_header_size < 8192 {
            return Err("proxy.max_body_size must be > 0 and max_header_size >= 8192".into());
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn glob_matches() {
        assert!(glob("/upload*", "/upload/a/b"));
        assert!(glob("*.zip", "/x/y.zip"));
        assert!(glob("/a/*/c", "/a/b/c"));
        assert!(!glob("/a/*/c", "/a/b/d"));
        assert!(glob("*", ""));
        assert!(!glob("/x", "/xy"));
    }

    #[test]
    fn rules_match_method_path_type() {
        let r = ScanRules {
            paths: vec!["/up*".into()],
            content_types: vec!["multipart/".into()],
            ..ScanRules::default()
        };
        assert!(r.matches("post", "/upload", "Multipart/form-data; boundary=x"));
        assert!(!r.matches("GET", "/upload", "multipart/form-data"));
        assert!(!r.matches("POST", "/other", "multipart/form-data"));
        assert!(!r.matches("POST", "/upload", "application/json"));
        assert!(ScanRules::default().matches("PUT", "/", ""));
    }

    #[test]
    fn validation_names_the_problem() {
        let mut c = ProxyConfig::quick(
            "127.0.0.1:1".parse().unwrap(),
            &["http://127.0.0.1:2".into()],
            None,
        );
        assert!(c.validate().is_ok());
        c.routes[0].pool = "nope".into();
        assert!(c.validate().unwrap_err().contains("nope"));
        let c = ProxyConfig::quick("127.0.0.1:1".parse().unwrap(), &["ftp://x".into()], None);
        assert!(c.validate().is_err());
        let c = ProxyConfig::quick("127.0.0.1:1".parse().unwrap(), &[], None);
        assert!(c.validate().unwrap_err().contains("no servers"));
    }
}
