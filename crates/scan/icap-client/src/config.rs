//! `[[engines]] type = "icap"`: where the ICAP service is and how to use it,
//! and the errors building an engine can give.

use serde::Deserialize;
use std::time::Duration;

/// ICAP's registered port.
pub const DEFAULT_PORT: u16 = 1344;

/// Which ICAP method carries the content.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Method {
    /// The content as the body of an HTTP response (a download), the usual
    /// way to ask an antivirus service about a file.
    #[default]
    Respmod,
    /// The content as the body of an HTTP `PUT` request (an upload).
    Reqmod,
}

impl Method {
    pub fn as_str(self) -> &'static str {
        match self {
            Method::Respmod => "RESPMOD",
            Method::Reqmod => "REQMOD",
        }
    }
}

/// One ICAP service.
///
/// ```toml
/// [[engines]]
/// type = "icap"
/// url = "icap://127.0.0.1:1344/avscan"
/// ```
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct IcapConfig {
    /// Engine name; default `icap`.
    pub name: Option<String>,
    /// `icap://host[:port]/service[?args]`; the port defaults to 1344.
    pub url: String,
    /// `respmod` (default) or `reqmod`.
    pub method: Method,
    /// Upper bound for one scan in seconds (the scan's own deadline may be
    /// sooner). Default 120.
    pub timeout_secs: f64,
    /// Bound for establishing a connection; also bounds OPTIONS. Default 5.
    pub connect_timeout_secs: f64,
    /// Idle keep-alive connections kept for reuse; 0: one connection per
    /// scan. Default 4 × CPU cores.
    pub pool_size: usize,
    /// Idle pooled connections older than this are closed instead of
    /// reused (keep it below the server's keep-alive timeout). Default 10.
    pub pool_idle_secs: f64,
    /// How long a verdict this engine took part in may be reused from the
    /// verdict cache, in seconds. The ISTag changes with the server's
    /// signatures only if the server says so; this bounds the rest.
    /// Default 3600; 0: never reused.
    pub cache_ttl_secs: u64,
}

impl Default for IcapConfig {
    fn default() -> Self {
        let cores = std::thread::available_parallelism().map_or(1, |n| n.get());
        IcapConfig {
            name: None,
            url: String::new(),
            method: Method::Respmod,
            timeout_secs: 120.0,
            connect_timeout_secs: 5.0,
            pool_size: 4 * cores,
            pool_idle_secs: 10.0,
            cache_ttl_secs: 3600,
        }
    }
}

/// The checked durations of a config.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Timeouts {
    pub(crate) scan: Duration,
    pub(crate) connect: Duration,
    pub(crate) pool_idle: Duration,
}

impl IcapConfig {
    pub(crate) fn validate(&self) -> Result<(Url, Timeouts), ConfigError> {
        let url = Url::parse(&self.url)?;
        let secs = |name: &'static str, v: f64, zero_ok: bool| {
            let d = Duration::try_from_secs_f64(v).map_err(|_| ConfigError::Duration(name))?;
            if d.is_zero() && !zero_ok {
                return Err(ConfigError::Duration(name));
            }
            Ok(d)
        };
        let t = Timeouts {
            scan: secs("timeout_secs", self.timeout_secs, false)?,
            connect: secs("connect_timeout_secs", self.connect_timeout_secs, false)?,
            pool_idle: secs("pool_idle_secs", self.pool_idle_secs, true)?,
        };
        Ok((url, t))
    }

    pub fn cache_ttl(&self) -> Duration {
        Duration::from_secs(self.cache_ttl_secs)
    }
}

/// A parsed `icap://` URL.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Url {
    /// Without IPv6 brackets.
    pub host: String,
    pub port: u16,
    /// `/service[?args]`, as written.
    pub path: String,
}

impl Url {
    pub fn parse(raw: &str) -> Result<Url, ConfigError> {
        let bad = |why: &str| ConfigError::Url {
            url: raw.to_string(),
            reason: why.to_string(),
        };
        let rest = raw
            .trim()
            .strip_prefix("icap://")
            .ok_or_else(|| bad("must start with icap:// (icaps is not supported)"))?;
        let (authority, path) = match rest.find('/') {
            Some(i) => (&rest[..i], &rest[i..]),
            None => return Err(bad("no service path, e.g. icap://host:1344/avscan")),
        };
        if path.len() < 2 {
            return Err(bad("no service path, e.g. icap://host:1344/avscan"));
        }
        if path
            .bytes()
            .any(|b| b.is_ascii_whitespace() || b.is_ascii_control() || b == b'#')
        {
            return Err(bad(
                "the service path holds a space, control character or '#'",
            ));
        }
        let (host, port) = if let Some(r) = authority.strip_prefix('[') {
            let (h, after) = r.split_once(']').ok_or_else(|| bad("missing ']'"))?;
            match after {
                "" => (h, None),
                p => (h, Some(p.strip_prefix(':').ok_or_else(|| bad("bad port"))?)),
            }
        } else {
            match authority.rsplit_once(':') {
                Some((h, p)) => (h, Some(p)),
                None => (authority, None),
            }
        };
        if host.is_empty()
            || host
                .bytes()
                .any(|b| b.is_ascii_whitespace() || b.is_ascii_control() || b == b'@')
        {
            return Err(bad("bad or empty host"));
        }
        let port = match port {
            None => DEFAULT_PORT,
            Some(p) => match p.parse::<u16>() {
                Ok(n) if n > 0 => n,
                _ => return Err(bad("port is not a number in 1..=65535")),
            },
        };
        Ok(Url {
            host: host.to_string(),
            port,
            path: path.to_string(),
        })
    }

    /// `host:port` (IPv6 in brackets), for the `Host` header and messages.
    pub fn authority(&self) -> String {
        if self.host.contains(':') {
            format!("[{}]:{}", self.host, self.port)
        } else {
            format!("{}:{}", self.host, self.port)
        }
    }
}

impl std::fmt::Display for Url {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "icap://{}{}", self.authority(), self.path)
    }
}

/// Why an icap engine could not be built. Never about the server being
/// down: building the engine does not contact it.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum ConfigError {
    #[error("invalid ICAP url {url:?}: {reason}")]
    Url { url: String, reason: String },
    #[error("icap {0} must be a positive number of seconds")]
    Duration(&'static str),
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn urls_parse_with_default_port_and_query() {
        let u = Url::parse("icap://127.0.0.1/avscan").unwrap();
        assert_eq!(
            (u.host.as_str(), u.port, u.path.as_str()),
            ("127.0.0.1", 1344, "/avscan")
        );
        let u = Url::parse("icap://av.example:11344/srv?allow204=on&mode=simple").unwrap();
        assert_eq!(u.port, 11344);
        assert_eq!(u.path, "/srv?allow204=on&mode=simple");
        assert_eq!(
            u.to_string(),
            "icap://av.example:11344/srv?allow204=on&mode=simple"
        );
        let u = Url::parse("icap://[::1]:2/x").unwrap();
        assert_eq!(
            (u.host.as_str(), u.authority().as_str()),
            ("::1", "[::1]:2")
        );
        for bad in [
            "",
            "http://a/avscan",
            "icaps://a/avscan",
            "icap://a",
            "icap://a/",
            "icap://:1/x",
            "icap://a:0/x",
            "icap://a:port/x",
            "icap://a/x y",
            "icap://u@a/x",
            "icap://[::1/x",
        ] {
            assert!(Url::parse(bad).is_err(), "{bad:?}");
        }
    }

    #[test]
    fn config_deserializes_with_defaults_and_checks_durations() {
        let c: IcapConfig = serde_json::from_str(r#"{"url":"icap://h/avscan"}"#).unwrap();
        assert_eq!(c.method, Method::Respmod);
        assert_eq!(c.cache_ttl(), Duration::from_secs(3600));
        assert!(c.pool_size >= 4);
        let (u, t) = c.validate().unwrap();
        assert_eq!(u.port, 1344);
        assert_eq!(t.scan, Duration::from_secs(120));
        let c: IcapConfig = serde_json::from_str(
            r#"{"url":"icap://h/x","method":"reqmod","timeout_secs":2.5,"pool_size":0,"cache_ttl_secs":0}"#,
        )
        .unwrap();
        assert_eq!(c.method, Method::Reqmod);
        assert_eq!(c.validate().unwrap().1.scan, Duration::from_millis(2500));
        assert!(serde_json::from_str::<IcapConfig>(r#"{"url":"x","bogus":1}"#).is_err());
        assert!(serde_json::from_str::<IcapConfig>(r#"{"method":"get"}"#).is_err());
        let c = IcapConfig {
            url: "icap://h/x".into(),
            timeout_secs: 0.0,
            ..Default::default()
        };
        assert_eq!(
            c.validate().unwrap_err(),
            ConfigError::Duration("timeout_secs")
        );
        let c = IcapConfig {
            url: "icap://h/x".into(),
            connect_timeout_secs: -1.0,
            ..Default::default()
        };
        assert!(c.validate().is_err());
    }
}
