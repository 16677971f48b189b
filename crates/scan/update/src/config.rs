//! `[signatures.update]`: where databases come from and where they go.

use serde::Deserialize;
use std::path::PathBuf;
use std::time::Duration;

/// The official ClamAV database mirror (a CDN).
pub const DEFAULT_MIRROR: &str = "https://database.clamav.net";

/// Updater configuration. Every field has a default (see `moat.example.toml`).
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct UpdateConfig {
    /// Run the updater as a background task of `moat serve`. Default true
    /// when the section is present.
    pub enabled: bool,
    /// Base URL of the mirror serving `NAME.cvd` and `NAME-VERSION.cdiff`.
    pub mirror: String,
    /// Databases fetched from the mirror.
    pub databases: Vec<String>,
    /// Further databases fetched by URL (third-party `.ndb`, `.hdb`, `.hsb`,
    /// `.ldb`, `.fp`, `.ign2`, `.cvd`, `.yara` ... files); saved under the
    /// URL's last path segment, refreshed with conditional requests. A
    /// `.tar.gz`/`.tgz`/`.zip` is a YARA rule collection, unpacked (rule
    /// files only) into `<name>.yara.d/` and replaced whole.
    pub extra_urls: Vec<String>,
    /// The database directory (where moat loads from). Default: the first
    /// directory of the builtin engine, else `<data_dir>/signatures`.
    pub database_dir: Option<PathBuf>,
    /// Seconds between checks in `moat serve` (freshclam's default is 12
    /// checks a day).
    pub interval_secs: u64,
    /// Up to this many seconds are added at random to every wait (and
    /// before the first check), so that a fleet does not hit the mirror at
    /// the same moment.
    pub jitter_secs: u64,
    /// HTTP(S) proxy URL for every request, e.g. `http://proxy:3128`.
    /// Default: none (the `HTTPS_PROXY`/`HTTP_PROXY` environment is honoured).
    pub proxy: Option<String>,
    /// User-Agent header. Default `moat/VERSION`.
    pub user_agent: Option<String>,
    /// Public key the databases must be signed with, for private mirrors
    /// that sign their own (PEM, or ClamAV's `N=`/`E=` decimal form; one key
    /// for `.cvd` headers, `.info` members and `.cdiff` files). Default:
    /// ClamAV's published keys.
    pub public_key: Option<PathBuf>,
    /// Apply `.cdiff` incremental updates (freshclam's ScriptedUpdates).
    pub cdiffs: bool,
    /// Timeout of one request, seconds.
    pub timeout_secs: u64,
    /// DNS TXT record giving the current versions before any HTTP request,
    /// as freshclam's `DNSDatabaseInfo` (`main`, `daily`, `bytecode`; a
    /// database already at that version costs no request at all). Default:
    /// `current.cvd.clamav.net` with the official mirror, none with any
    /// other (a private mirror's versions need not match it); `""` turns it
    /// off. A failed lookup or a malformed record falls back to the CVD
    /// header probe.
    pub dns_txt: Option<String>,
    /// DNS server for that lookup, `IP` or `IP:PORT`. Default: the system's
    /// resolvers (`/etc/resolv.conf`).
    pub dns_resolver: Option<String>,
    /// Largest file downloaded, bytes.
    pub max_download_size: u64,
}

impl Default for UpdateConfig {
    fn default() -> Self {
        UpdateConfig {
            enabled: true,
            mirror: DEFAULT_MIRROR.to_string(),
            databases: vec!["main".into(), "daily".into(), "bytecode".into()],
            extra_urls: Vec::new(),
            database_dir: None,
            interval_secs: 2 * 3600,
            jitter_secs: 300,
            proxy: None,
            user_agent: None,
            public_key: None,
            cdiffs: true,
            timeout_secs: 600,
            dns_txt: None,
            dns_resolver: None,
            max_download_size: 2 << 30,
        }
    }
}

impl UpdateConfig {
    /// Check what can be checked without I/O.
    pub fn validate(&self) -> Result<(), String> {
        let m = self.mirror.trim_end_matches('/');
        if !(m.starts_with("http://") || m.starts_with("https://")) {
            return Err(format!("mirror {:?} must be an http(s) URL", self.mirror));
        }
        for d in &self.databases {
            if !crate::valid_name(d) || d.contains('.') {
                return Err(format!(
                    "database name {d:?}: letters, digits and '_' only (e.g. \"daily\")"
                ));
            }
        }
        for u in &self.extra_urls {
            crate::extra_file_name(u)?;
        }
        if self.interval_secs == 0 {
            return Err("interval_secs must be greater than 0".into());
        }
        // The official mirror asks for no more than a check an hour.
        if m == DEFAULT_MIRROR && self.interval_secs < 3600 {
            return Err(format!(
                "interval_secs = {} checks the official mirror more than once an hour; use 3600 or more",
                self.interval_secs
            ));
        }
        if self.timeout_secs == 0 {
            return Err("timeout_secs must be greater than 0".into());
        }
        if let Some(r) = &self.dns_resolver {
            crate::dns::parse_resolver(r)?;
        }
        Ok(())
    }

    /// The TXT record to read, if any (see [`UpdateConfig::dns_txt`]).
    pub fn dns_domain(&self) -> Option<&str> {
        match self.dns_txt.as_deref() {
            Some(d) if d.trim().is_empty() => None,
            Some(d) => Some(d.trim()),
            None if self.mirror.trim_end_matches('/') == DEFAULT_MIRROR => {
                Some(crate::dns::OFFICIAL_TXT)
            }
            None => None,
        }
    }

    pub fn timeout(&self) -> Duration {
        Duration::from_secs(self.timeout_secs.max(1))
    }

    /// The wait before the first check: up to `jitter_secs`.
    pub fn first_wait(&self) -> Duration {
        Duration::from_secs(fastrand::u64(0..=self.jitter_secs))
    }

    /// The wait before the next check: the interval plus up to `jitter_secs`.
    pub fn next_wait(&self) -> Duration {
        Duration::from_secs(self.interval_secs + fastrand::u64(0..=self.jitter_secs))
    }
}
