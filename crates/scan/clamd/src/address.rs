//! Where clamd listens: a TCP `host:port` or a Unix socket path.
//!
//! Accepted forms:
//! * `tcp://host:port`, `host:port`, `[::1]:3310` (IPv6 needs brackets);
//! * `unix:/path/clamd.sock`, `unix:///path/clamd.sock` or a bare absolute path.

use crate::config::ConfigError;
use std::fmt;
use std::path::PathBuf;

/// Linux `sun_path` holds 108 bytes including the terminating NUL.
const MAX_UNIX_PATH: usize = 107;

/// A parsed clamd address.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Address {
    /// `host` is a name or an IP address, without IPv6 brackets.
    Tcp {
        host: String,
        port: u16,
    },
    Unix(PathBuf),
}

impl Address {
    pub fn parse(raw: &str) -> Result<Address, ConfigError> {
        let s = raw.trim();
        let bad = |reason: &str| ConfigError::Address {
            address: raw.to_string(),
            reason: reason.to_string(),
        };
        if s.is_empty() {
            return Err(bad("empty address"));
        }
        if let Some(rest) = s.strip_prefix("unix:") {
            // `unix:///run/clamd.sock` is the URL spelling of `unix:/run/clamd.sock`.
            let path = rest
                .strip_prefix("//")
                .filter(|p| p.starts_with('/'))
                .unwrap_or(rest);
            return unix_path(path).map_err(bad);
        }
        if s.starts_with('/') {
            return unix_path(s).map_err(bad);
        }
        let hostport = match s.split_once("://") {
            Some(("tcp", rest)) => rest.strip_suffix('/').unwrap_or(rest),
            Some((scheme, _)) => {
                return Err(bad(&format!(
                    "unsupported scheme {scheme:?}: use tcp://host:port, host:port or unix:/path"
                )));
            }
            None => s,
        };
        host_port(hostport).map_err(bad)
    }
}

fn unix_path(path: &str) -> Result<Address, &'static str> {
    if path.is_empty() {
        return Err("empty Unix socket path");
    }
    if !path.starts_with('/') {
        return Err("a Unix socket path must be absolute");
    }
    if path.len() > MAX_UNIX_PATH {
        return Err("Unix socket path longer than 107 bytes");
    }
    if path.contains('\0') {
        return Err("NUL byte in Unix socket path");
    }
    Ok(Address::Unix(PathBuf::from(path)))
}

fn host_port(s: &str) -> Result<Address, &'static str> {
    let (host, port) = if let Some(rest) = s.strip_prefix('[') {
        let (host, after) = rest
            .split_once(']')
            .ok_or("missing ']' after IPv6 address")?;
        let port = after
            .strip_prefix(':')
            .ok_or("missing :port after IPv6 address")?;
        (host, port)
    } else {
        let (host, port) = s
            .rsplit_once(':')
            .ok_or("missing :port (e.g. 127.0.0.1:3310)")?;
        if host.contains(':') {
            return Err("IPv6 addresses need brackets, e.g. [::1]:3310");
        }
        (host, port)
    };
    if host.is_empty() {
        return Err("empty host");
    }
    if host
        .chars()
        .any(|c| c.is_whitespace() || c == '/' || c == '\0')
    {
        return Err("invalid character in host");
    }
    let port: u16 = port
        .parse()
        .map_err(|_| "port is not a number in 1..=65535")?;
    if port == 0 {
        return Err("port 0 is not a valid clamd port");
    }
    Ok(Address::Tcp {
        host: host.to_string(),
        port,
    })
}

impl fmt::Display for Address {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Address::Tcp { host, port } if host.contains(':') => write!(f, "tcp://[{host}]:{port}"),
            Address::Tcp { host, port } => write!(f, "tcp://{host}:{port}"),
            Address::Unix(p) => write!(f, "unix:{}", p.display()),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn tcp(host: &str, port: u16) -> Address {
        Address::Tcp {
            host: host.into(),
            port,
        }
    }

    #[test]
    fn parses_tcp_forms() {
        assert_eq!(
            Address::parse("127.0.0.1:3310").unwrap(),
            tcp("127.0.0.1", 3310)
        );
        assert_eq!(
            Address::parse("tcp://clamd:3310").unwrap(),
            tcp("clamd", 3310)
        );
        assert_eq!(
            Address::parse(" tcp://clamd:3310/ ").unwrap(),
            tcp("clamd", 3310)
        );
        assert_eq!(Address::parse("[::1]:3310").unwrap(), tcp("::1", 3310));
        assert_eq!(
            Address::parse("tcp://[fe80::1]:1").unwrap(),
            tcp("fe80::1", 1)
        );
    }

    #[test]
    fn parses_unix_forms() {
        let want = Address::Unix("/run/clamd.sock".into());
        assert_eq!(Address::parse("unix:/run/clamd.sock").unwrap(), want);
        assert_eq!(Address::parse("unix:///run/clamd.sock").unwrap(), want);
        assert_eq!(Address::parse("/run/clamd.sock").unwrap(), want);
    }

    #[test]
    fn rejects_bad_addresses_with_a_reason() {
        for bad in [
            "",
            "   ",
            "clamd",
            "clamd:",
            "clamd:0",
            "clamd:65536",
            "clamd:port",
            ":3310",
            "::1:3310",
            "[::1]3310",
            "[::1",
            "http://clamd:3310",
            "unix:",
            "unix:relative.sock",
            "tcp://",
        ] {
            let err = Address::parse(bad).unwrap_err();
            assert!(matches!(err, ConfigError::Address { .. }), "{bad:?}: {err}");
            assert!(err.to_string().contains("clamd address"), "{err}");
        }
        let long = format!("unix:/{}", "a".repeat(200));
        assert!(Address::parse(&long).is_err());
    }

    #[test]
    fn displays_canonically() {
        assert_eq!(Address::parse("h:1").unwrap().to_string(), "tcp://h:1");
        assert_eq!(
            Address::parse("[::1]:2").unwrap().to_string(),
            "tcp://[::1]:2"
        );
        assert_eq!(
            Address::parse("/x.sock").unwrap().to_string(),
            "unix:/x.sock"
        );
    }
}
