//! The DNS TXT version record freshclam reads before any HTTP request.
//!
//! `current.cvd.clamav.net` holds one TXT record of colon-separated fields
//! (libfreshclam's `DNS_UPDATEINFO_*` and `textrecordfield()`):
//!
//! | field | meaning |
//! |---|---|
//! | 0 | newest ClamAV version |
//! | 1 | `main` version |
//! | 2 | `daily` version |
//! | 3 | record time (Unix seconds) |
//! | 4 | version warning flag |
//! | 5 | functionality level |
//! | 6 | `safebrowsing` version (retired) |
//! | 7 | `bytecode` version |
//!
//! e.g. `1.4.3:62:27514:1733911740:1:90:49192:335`. As freshclam, a record
//! older than 12 hours is not trusted, and any problem (no answer, a
//! malformed record, a database without a field) means "ask the mirror":
//! DNS never fails an update, it only saves requests.
//!
//! The lookup uses hickory-resolver on a current-thread Tokio runtime made
//! for the one query: the updater runs on a blocking thread.

use hickory_resolver::Resolver;
use hickory_resolver::config::{NameServerConfig, ResolverConfig, ResolverOpts};
use hickory_resolver::net::runtime::TokioRuntimeProvider;
use hickory_resolver::proto::rr::RData;
use std::net::{IpAddr, SocketAddr};
use std::time::Duration;

/// The record freshclam reads (its `DNSDatabaseInfo` default).
pub const OFFICIAL_TXT: &str = "current.cvd.clamav.net";
/// A record older than this is ignored (libfreshclam's
/// `DNS_WARNING_THRESHOLD_HOURS`).
pub const MAX_RECORD_AGE_SECS: u64 = 12 * 3600;
/// Field of the record time.
const RECORD_TIME: usize = 3;

/// The versions a TXT record announces.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct UpdateInfo {
    /// The record as received.
    pub record: String,
    /// When the record was made (Unix seconds).
    pub record_time: u64,
}

impl UpdateInfo {
    /// The field freshclam reads for `database` (`textrecordfield()`).
    fn field(database: &str) -> Option<usize> {
        match database {
            "main" => Some(1),
            "daily" => Some(2),
            "safebrowsing" => Some(6),
            "bytecode" => Some(7),
            _ => None,
        }
    }

    /// The version announced for `database`; `None` when the record has no
    /// field for it or the field is not a number (then the mirror is asked).
    pub fn version(&self, database: &str) -> Option<u64> {
        let f = Self::field(database)?;
        let v = self.record.split(':').nth(f)?;
        if v.is_empty() || !v.bytes().all(|b| b.is_ascii_digit()) {
            return None;
        }
        v.parse().ok().filter(|v| *v > 0)
    }
}

/// Parse a `current.cvd.clamav.net` record received at `now`: it must have
/// a numeric record time no older than [`MAX_RECORD_AGE_SECS`].
pub fn parse(record: &str, now: u64) -> Result<UpdateInfo, String> {
    let record = record.trim();
    let t = record
        .split(':')
        .nth(RECORD_TIME)
        .ok_or_else(|| format!("TXT record {record:?} has no record time field"))?;
    let record_time: u64 = t
        .parse()
        .map_err(|_| format!("TXT record {record:?}: record time {t:?} is not a number"))?;
    if now.saturating_sub(record_time) > MAX_RECORD_AGE_SECS {
        return Err(format!(
            "TXT record {record:?} is older than {} hours",
            MAX_RECORD_AGE_SECS / 3600
        ));
    }
    Ok(UpdateInfo {
        record: record.to_string(),
        record_time,
    })
}

/// Parse a resolver address: `IP` (port 53) or `IP:PORT` (`[v6]:PORT`).
pub fn parse_resolver(s: &str) -> Result<SocketAddr, String> {
    if let Ok(a) = s.parse::<SocketAddr>() {
        return Ok(a);
    }
    s.parse::<IpAddr>()
        .map(|ip| SocketAddr::new(ip, 53))
        .map_err(|_| format!("dns_resolver {s:?}: expected an IP address, optionally with :port"))
}

/// Look up the TXT record of `domain` (the first record's text) through
/// `resolver`, or the system's resolvers (`/etc/resolv.conf`) when `None`.
/// Blocking: call from a blocking thread, never from async code.
pub fn lookup_txt(
    domain: &str,
    resolver: Option<SocketAddr>,
    timeout: Duration,
) -> Result<String, String> {
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .map_err(|e| format!("DNS: starting a runtime: {e}"))?;
    // Built, used and dropped inside the runtime (the resolver spawns its
    // connections' tasks on it).
    let fqdn = format!("{}.", domain.trim_end_matches('.'));
    let lookup = rt.block_on(async move {
        let mut builder = match resolver {
            Some(addr) => {
                let mut ns = NameServerConfig::udp_and_tcp(addr.ip());
                for c in &mut ns.connections {
                    c.port = addr.port();
                }
                Resolver::builder_with_config(
                    ResolverConfig::from_name_servers(vec![ns]),
                    TokioRuntimeProvider::default(),
                )
            }
            None => {
                Resolver::builder_tokio().map_err(|e| format!("DNS: system configuration: {e}"))?
            }
        };
        let opts: &mut ResolverOpts = builder.options_mut();
        opts.timeout = timeout;
        opts.attempts = 2;
        opts.cache_size = 0;
        let r = builder
            .build()
            .map_err(|e| format!("DNS: building the resolver: {e}"))?;
        // A fully qualified name (trailing dot): no search domains.
        tokio::time::timeout(timeout * 3, r.txt_lookup(fqdn.as_str()))
            .await
            .map_err(|_| format!("DNS TXT {domain}: timed out"))?
            .map_err(|e| format!("DNS TXT {domain}: {e}"))
    })?;
    lookup
        .answers()
        .iter()
        .find_map(|rec| match &rec.data {
            RData::TXT(t) => Some(
                t.txt_data
                    .iter()
                    .map(|s| String::from_utf8_lossy(s).into_owned())
                    .collect::<String>(),
            ),
            _ => None,
        })
        .ok_or_else(|| format!("DNS TXT {domain}: no TXT record in the answer"))
}

#[cfg(test)]
mod tests {
    use super::*;

    const NOW: u64 = 1_733_911_740;

    #[test]
    fn fields_are_read_as_freshclam_reads_them() {
        let i = parse("1.4.3:62:27514:1733911740:1:90:49192:335", NOW + 60).unwrap();
        assert_eq!(i.record_time, NOW);
        assert_eq!(i.version("main"), Some(62));
        assert_eq!(i.version("daily"), Some(27514));
        assert_eq!(i.version("bytecode"), Some(335));
        assert_eq!(i.version("safebrowsing"), Some(49192));
        assert_eq!(i.version("urlhaus"), None, "no field: ask the mirror");
    }

    #[test]
    fn stale_or_malformed_records_are_not_trusted() {
        let old = NOW - MAX_RECORD_AGE_SECS - 1;
        assert!(parse(&format!("1.4.3:62:27514:{old}:1:90:0:335"), NOW).is_err());
        assert!(parse("garbage", NOW).is_err());
        assert!(parse("1.4.3:62:27514:soon:1", NOW).is_err());
        // A broken field disables that database's answer only.
        let i = parse(&format!("1.4.3:x62:27514:{NOW}:1:90::"), NOW).unwrap();
        assert_eq!(i.version("main"), None);
        assert_eq!(i.version("daily"), Some(27514));
        assert_eq!(i.version("bytecode"), None);
    }

    #[test]
    fn resolver_addresses_default_to_port_53() {
        assert_eq!(
            parse_resolver("127.0.0.1").unwrap(),
            "127.0.0.1:53".parse().unwrap()
        );
        assert_eq!(
            parse_resolver("127.0.0.1:5353").unwrap(),
            "127.0.0.1:5353".parse().unwrap()
        );
        assert_eq!(parse_resolver("::1").unwrap(), "[::1]:53".parse().unwrap());
        assert!(parse_resolver("dns.example").is_err());
    }
}

#[cfg(test)]
mod config_tests {
    use crate::UpdateConfig;

    #[test]
    fn the_txt_record_is_read_by_default_only_for_the_official_mirror() {
        let mut c = UpdateConfig::default();
        assert_eq!(c.dns_domain(), Some(super::OFFICIAL_TXT));
        c.dns_txt = Some(String::new());
        assert_eq!(c.dns_domain(), None, "\"\" turns it off");
        c.dns_txt = None;
        c.mirror = "https://mirror.example.org/clamav".into();
        assert_eq!(c.dns_domain(), None, "a private mirror");
        c.dns_txt = Some("current.cvd.example.org".into());
        assert_eq!(c.dns_domain(), Some("current.cvd.example.org"));
        c.dns_resolver = Some("resolver".into());
        assert!(c.validate().is_err());
        c.dns_resolver = Some("127.0.0.1:5353".into());
        assert!(c.validate().is_ok());
    }
}
