//! Configuration: a TOML file plus `MOAT_*` environment overrides, parsed into
//! raw serde structs and validated into [`Settings`] before anything runs.
//!
//! Environment overrides (applied after the file):
//! * `MOAT_LISTEN`, `MOAT_DATA_DIR`, `MOAT_DATABASE_URL`, `MOAT_MAX_BODY_SIZE`;
//! * `MOAT_AUTH_TOKENS` (comma-separated);
//! * `MOAT_SIGNATURES`, `MOAT_YARA` (comma-separated paths), `MOAT_CLAMD`
//!   (comma-separated addresses): replace the `[[engines]]` list;
//! * `MOAT_LOG_FORMAT` (`text` or `json`);
//! * generic: `MOAT__SECTION__KEY=value` sets `[section] key = value` (the
//!   value is read as TOML when it parses, else as a string), e.g.
//!   `MOAT__SCAN__TIMEOUT_SECS=60`.

use anyhow::{Context, Result, bail};
use moat_api::ApiConfig;
use moat_scanner::{EngineConfig, ScanConfig};
use serde::Deserialize;
use std::path::{Path, PathBuf};

/// The file as written.
#[derive(Debug, Default, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct RawConfig {
    pub data_dir: Option<PathBuf>,
    pub database_url: Option<String>,
    pub server: ApiConfig,
    pub scan: ScanConfig,
    pub engines: Option<Vec<EngineConfig>>,
    pub reload: ReloadConfig,
    pub log: LogConfig,
    /// The edge proxy role; `moat serve` starts its listeners when present.
    pub proxy: Option<moat_proxy::ProxyConfig>,
    pub bucket: Option<moat_bucket::BucketConfig>,
    /// The clamd-compatible server; `moat serve` starts it when present.
    pub clamd_server: Option<moat_clamd_server::ClamdServerConfig>,
    /// The ICAP server; `moat serve` starts it when present.
    pub icap_server: Option<moat_icap_server::IcapServerConfig>,
    pub signatures: SignaturesConfig,
    /// The file-sharing portal role (on by default under `moat serve`).
    pub portal: moat_portal::PortalConfig,
}

/// `[signatures]`.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct SignaturesConfig {
    /// `[signatures.update]`: the updater (`moat signatures update`, and a
    /// background task of `moat serve` when present and enabled).
    pub update: Option<moat_update::UpdateConfig>,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct ReloadConfig {
    /// How often signature and rule files are checked for changes; 0 disables polling (SIGHUP still works).
    pub poll_secs: u64,
}

impl Default for ReloadConfig {
    fn default() -> Self {
        ReloadConfig { poll_secs: 5 }
    }
}

#[derive(Debug, Clone, Default, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct LogConfig {
    /// `text` (default) or `json`.
    pub format: Option<String>,
}

/// Validated settings: what the roles run with.
#[derive(Debug)]
pub struct Settings {
    pub data_dir: PathBuf,
    pub database_url: String,
    pub server: ApiConfig,
    pub scan: ScanConfig,
    pub engines: Vec<EngineConfig>,
    pub reload: ReloadConfig,
    pub log_json: bool,
    pub proxy: Option<moat_proxy::ProxyConfig>,
    /// `[bucket]`, when present (the bucket role).
    pub bucket: Option<moat_bucket::BucketConfig>,
    /// `[clamd_server]`, when present.
    pub clamd_server: Option<moat_clamd_server::ClamdServerConfig>,
    /// `[icap_server]`, when present.
    pub icap_server: Option<moat_icap_server::IcapServerConfig>,
    /// `[signatures.update]`, when present.
    pub signatures_update: Option<moat_update::UpdateConfig>,
    /// `[portal]` (the portal role; `enabled = false` turns it off).
    pub portal: moat_portal::PortalConfig,
}

impl Settings {
    /// `--data-dir`: the directory, and the default SQLite database inside it
    /// unless a database was chosen explicitly (MOAT_DATABASE_URL).
    pub fn set_data_dir(&mut self, d: PathBuf) {
        if std::env::var_os("MOAT_DATABASE_URL").is_none()
            && self.database_url.starts_with("sqlite://./moat-data")
        {
            self.database_url = format!("sqlite://{}", d.join("moat.db").display());
        }
        self.data_dir = d;
    }

    /// The server roles cache compiled YARA rules under their data directory
    /// (`<data_dir>/cache/yara`) unless an engine configures its own.
    pub fn yara_cache_under_data_dir(&mut self) {
        let dir = self.data_dir.join("cache").join("yara");
        for e in &mut self.engines {
            e.default_yara_cache_dir(&dir);
        }
    }
}

/// Read `path` (if given), apply the environment, validate.
pub fn load(path: Option<&Path>) -> Result<Settings> {
    let env: Vec<(String, String)> = std::env::vars()
        .filter(|(k, _)| k.starts_with("MOAT_"))
        .collect();
    load_from(path, &env)
}

pub fn load_from(path: Option<&Path>, env: &[(String, String)]) -> Result<Settings> {
    load_from_with(path, env, |_| Ok(()))
}

/// [`load_from`], with `pre` applied to the parsed file before the `MOAT_*`
/// environment (the bucket role's compatibility aliases use it).
pub fn load_from_with(
    path: Option<&Path>,
    env: &[(String, String)],
    pre: impl FnOnce(&mut toml::Table) -> Result<()>,
) -> Result<Settings> {
    let mut doc: toml::Table = match path {
        Some(p) => {
            let text = read_config(p)?;
            toml::from_str(&text).with_context(|| format!("parsing config file {}", p.display()))?
        }
        None => toml::Table::new(),
    };
    pre(&mut doc)?;
    apply_env(&mut doc, env)?;
    let raw: RawConfig = toml::Value::Table(doc)
        .try_into()
        .with_context(|| match path {
            Some(p) => format!(
                "invalid configuration in {} (or MOAT_* environment)",
                p.display()
            ),
            None => "invalid configuration in MOAT_* environment".to_string(),
        })?;
    validate(raw)
}

fn read_config(p: &Path) -> Result<String> {
    use std::io::Read;
    let f =
        std::fs::File::open(p).with_context(|| format!("opening config file {}", p.display()))?;
    let mut text = String::new();
    #[allow(clippy::disallowed_methods)] // bounded by take()
    f.take(16 << 20)
        .read_to_string(&mut text)
        .with_context(|| format!("reading config file {}", p.display()))?;
    Ok(text)
}

pub(crate) fn set(doc: &mut toml::Table, path: &[&str], value: toml::Value) -> Result<()> {
    let (last, parents) = path.split_last().context("empty key")?;
    let mut t = doc;
    for p in parents {
        let entry = t
            .entry(p.to_string())
            .or_insert_with(|| toml::Value::Table(toml::Table::new()));
        t = match entry {
            toml::Value::Table(tt) => tt,
            _ => bail!("{} is not a table", path.join(".")),
        };
    }
    t.insert(last.to_string(), value);
    Ok(())
}

fn list(v: &str) -> Vec<String> {
    v.split(',')
        .map(str::trim)
        .filter(|s| !s.is_empty())
        .map(str::to_string)
        .collect()
}

fn apply_env(doc: &mut toml::Table, env: &[(String, String)]) -> Result<()> {
    let mut engines: Vec<toml::Value> = Vec::new();
    let mut engines_set = false;
    let mut sorted: Vec<&(String, String)> = env.iter().collect();
    sorted.sort();
    for (k, v) in sorted {
        let s = |x: &str| toml::Value::String(x.to_string());
        match k.as_str() {
            "MOAT_LISTEN" => set(doc, &["server", "listen"], s(v))?,
            "MOAT_DATA_DIR" => set(doc, &["data_dir"], s(v))?,
            "MOAT_DATABASE_URL" => set(doc, &["database_url"], s(v))?,
            "MOAT_MAX_BODY_SIZE" => {
                let n: i64 = v
                    .parse()
                    .with_context(|| format!("MOAT_MAX_BODY_SIZE={v:?} is not a number"))?;
                set(doc, &["server", "max_body_size"], toml::Value::Integer(n))?
            }
            "MOAT_AUTH_TOKENS" => set(
                doc,
                &["server", "auth", "tokens"],
                toml::Value::Array(list(v).iter().map(|t| s(t)).collect()),
            )?,
            "MOAT_LOG_FORMAT" => set(doc, &["log", "format"], s(v))?,
            "MOAT_SIGNATURES" | "MOAT_YARA" | "MOAT_CLAMD" => {
                engines_set = true;
                let mut t = toml::Table::new();
                let paths = toml::Value::Array(list(v).iter().map(|p| s(p)).collect());
                match k.as_str() {
                    "MOAT_SIGNATURES" => {
                        t.insert("type".into(), s("builtin"));
                        t.insert("signatures".into(), paths);
                        engines.push(toml::Value::Table(t));
                    }
                    "MOAT_YARA" => {
                        t.insert("type".into(), s("yara"));
                        t.insert("rules".into(), paths);
                        engines.push(toml::Value::Table(t));
                    }
                    _ => {
                        for (i, addr) in list(v).iter().enumerate() {
                            let mut t = toml::Table::new();
                            t.insert("type".into(), s("clamd"));
                            t.insert("address".into(), s(addr));
                            if i > 0 {
                                t.insert("name".into(), s(&format!("clamd-{}", i + 1)));
                            }
                            engines.push(toml::Value::Table(t));
                        }
                    }
                }
            }
            "MOAT_LOG" => {} // read by the log filter
            other if other.starts_with("MOAT__") => {
                let path: Vec<String> = other["MOAT__".len()..]
                    .split("__")
                    .map(|p| p.to_ascii_lowercase())
                    .collect();
                if path.iter().any(|p| p.is_empty()) {
                    bail!("environment variable {other}: empty key segment");
                }
                let value = toml::from_str::<toml::Table>(&format!("v = {v}"))
                    .ok()
                    .and_then(|mut t| t.remove("v"))
                    .unwrap_or_else(|| s(v));
                let refs: Vec<&str> = path.iter().map(String::as_str).collect();
                set(doc, &refs, value)?;
            }
            _ => {}
        }
    }
    if engines_set {
        doc.insert("engines".into(), toml::Value::Array(engines));
    }
    Ok(())
}

fn validate(raw: RawConfig) -> Result<Settings> {
    let data_dir = raw.data_dir.unwrap_or_else(|| PathBuf::from("./moat-data"));
    let database_url = raw
        .database_url
        .filter(|u| !u.trim().is_empty())
        .unwrap_or_else(|| format!("sqlite://{}", data_dir.join("moat.db").display()));
    raw.server
        .policy
        .validate()
        .map_err(anyhow::Error::msg)
        .context("[server.policy]")?;
    if raw.server.max_body_size == 0 {
        bail!("server.max_body_size must be greater than 0");
    }
    let log_json = match raw.log.format.as_deref() {
        None | Some("text") => false,
        Some("json") => true,
        Some(other) => bail!("log.format must be \"text\" or \"json\", not {other:?}"),
    };
    let engines_configured = raw.engines.is_some();
    let mut engines = match raw.engines {
        Some(e) if e.is_empty() => bail!("[[engines]] is empty: configure at least one engine"),
        Some(e) => e,
        None => moat_scanner::config::default_engines(),
    };
    let signatures_update = match raw.signatures.update {
        Some(mut u) => {
            u.validate()
                .map_err(anyhow::Error::msg)
                .context("[signatures.update]")?;
            let dir = crate::signatures::database_dir(&u, &engines, &data_dir);
            crate::signatures::load_updates(&mut engines, &dir, &u, engines_configured);
            u.database_dir = Some(dir);
            Some(u)
        }
        None => None,
    };
    // A [proxy] section with only limits (e.g. from MOAT__PROXY__* with the
    // quick-start flags) is completed by `moat proxy`; validate full ones.
    if let Some(p) = raw.proxy.as_ref().filter(|p| !p.listeners.is_empty()) {
        p.validate()
            .map_err(anyhow::Error::msg)
            .context("[proxy]")?;
    }
    if let Some(b) = &raw.bucket {
        b.validate()
            .map_err(anyhow::Error::msg)
            .context("[bucket]")?;
    }
    // A section with only limits (e.g. from MOAT__CLAMD_SERVER__* with
    // `moat clamd --listen`) is completed by the standalone command, which
    // validates it then; validate full ones here.
    if let Some(c) = raw
        .clamd_server
        .as_ref()
        .filter(|c| c.listen.is_some() || c.socket.is_some())
    {
        c.validate()
            .map_err(anyhow::Error::msg)
            .context("[clamd_server]")?;
    }
    if let Some(c) = raw.icap_server.as_ref().filter(|c| c.listen.is_some()) {
        c.validate()
            .map_err(anyhow::Error::msg)
            .context("[icap_server]")?;
    }
    raw.portal
        .validate()
        .map_err(anyhow::Error::msg)
        .context("[portal]")?;
    Ok(Settings {
        signatures_update,
        portal: raw.portal,
        bucket: raw.bucket,
        clamd_server: raw.clamd_server,
        icap_server: raw.icap_server,
        data_dir,
        database_url,
        server: raw.server,
        scan: raw.scan,
        engines,
        reload: raw.reload,
        log_json,
        proxy: raw.proxy,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn env(pairs: &[(&str, &str)]) -> Vec<(String, String)> {
        pairs
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect()
    }

    #[test]
    fn defaults_are_embedded() {
        let s = load_from(None, &[]).unwrap();
        assert_eq!(s.server.listen.to_string(), "127.0.0.1:8080");
        assert_eq!(s.database_url, "sqlite://./moat-data/moat.db");
        assert_eq!(s.engines, moat_scanner::config::default_engines());
    }

    #[test]
    fn file_then_environment() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("moat.toml");
        std::fs::write(
            &p,
            "data_dir = \"/var/lib/moat\"\n[server]\nlisten = \"127.0.0.1:9000\"\n[[engines]]\ntype = \"clamd\"\naddress = \"127.0.0.1:3310\"\n",
        )
        .unwrap();
        let s = load_from(
            Some(&p),
            &env(&[
                ("MOAT_LISTEN", "127.0.0.1:9999"),
                ("MOAT_AUTH_TOKENS", "a, b"),
                ("MOAT__SCAN__TIMEOUT_SECS", "7"),
            ]),
        )
        .unwrap();
        assert_eq!(s.server.listen.port(), 9999);
        assert_eq!(s.server.auth.tokens, vec!["a", "b"]);
        assert_eq!(s.scan.timeout_secs, 7);
        assert_eq!(s.data_dir, PathBuf::from("/var/lib/moat"));
        assert_eq!(s.engines.len(), 1);
        let s = load_from(
            Some(&p),
            &env(&[("MOAT_SIGNATURES", "/a,/b"), ("MOAT_CLAMD", "x:1,y:2")]),
        )
        .unwrap();
        assert_eq!(s.engines.len(), 3);
    }

    #[test]
    fn bad_configuration_is_a_clear_error() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("moat.toml");
        std::fs::write(&p, "[server]\nlisen = \"x\"\n").unwrap();
        let e = format!("{:#}", load_from(Some(&p), &[]).unwrap_err());
        assert!(e.contains("lisen"), "{e}");
        std::fs::write(&p, "[server.policy.rules]\nunscanable = \"allow\"\n").unwrap();
        let e = format!("{:#}", load_from(Some(&p), &[]).unwrap_err());
        assert!(e.contains("unknown policy key"), "{e}");
        std::fs::write(&p, "[scan.archive]\nmax_dept = 3\n").unwrap();
        let e = format!("{:#}", load_from(Some(&p), &[]).unwrap_err());
        assert!(e.contains("max_dept"), "{e}");
        std::fs::write(&p, "not toml [").unwrap();
        assert!(load_from(Some(&p), &[]).is_err());
        assert!(load_from(Some(Path::new("/nonexistent/moat.toml")), &[]).is_err());
    }
}

#[cfg(test)]
mod example_tests {
    #[test]
    fn the_example_config_in_the_repo_is_valid() {
        let p = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../../moat.example.toml");
        let s = super::load_from(Some(&p), &[]).unwrap();
        assert_eq!(s.server.listen.to_string(), "127.0.0.1:8080");
        assert_eq!(s.engines.len(), 1);
        assert_eq!(s.scan.archive.max_depth, 16);
        assert!(s.proxy.is_none(), "the [proxy] example is commented out");
    }

    /// The lines between `BEGIN name example` and `END name example` in
    /// moat.example.toml, uncommented, as a configuration file.
    fn uncommented_example(name: &str, dir: &std::path::Path) -> std::path::PathBuf {
        let p = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../../moat.example.toml");
        let text = std::fs::File::open(&p)
            .map(std::io::BufReader::new)
            .map(|r| {
                std::io::BufRead::lines(r)
                    .map_while(Result::ok)
                    .collect::<Vec<_>>()
            })
            .unwrap();
        let start = text
            .iter()
            .position(|l| l.contains(&format!("BEGIN {name} example")))
            .unwrap();
        let end = text
            .iter()
            .position(|l| l.contains(&format!("END {name} example")))
            .unwrap();
        let body: String = text[start + 1..end]
            .iter()
            .filter(|l| !l.starts_with("##"))
            .map(|l| {
                format!(
                    "{}\n",
                    l.strip_prefix("# ").or(l.strip_prefix('#')).unwrap_or(l)
                )
            })
            .collect();
        let f = dir.join(format!("{name}.toml"));
        std::fs::write(&f, body).unwrap();
        f
    }

    /// The commented `[proxy]` example, uncommented, is a valid configuration.
    #[test]
    fn the_commented_proxy_example_is_valid() {
        let dir = tempfile::tempdir().unwrap();
        let f = uncommented_example("proxy", dir.path());
        let s = super::load_from(Some(&f), &[]).unwrap();
        let px = s.proxy.unwrap();
        assert_eq!(px.listeners.len(), 2);
        assert_eq!(px.pools["app"].servers.len(), 3);
        assert!(px.pools["app"].servers[2].backup);
        assert_eq!(px.routes.len(), 2);
    }

    /// The commented `[clamd_server]` example, uncommented, is valid.
    #[test]
    fn the_commented_clamd_server_example_is_valid() {
        let dir = tempfile::tempdir().unwrap();
        let f = uncommented_example("clamd_server", dir.path());
        let s = super::load_from(Some(&f), &[]).unwrap();
        let c = s.clamd_server.unwrap();
        assert_eq!(c.listen.unwrap().port(), 3310);
        assert_eq!(c.stream_max_length, 100 << 20);
        assert!(!c.enable_shutdown);
    }

    /// The commented `[icap_server]` example, uncommented, is valid.
    #[test]
    fn the_commented_icap_server_example_is_valid() {
        let dir = tempfile::tempdir().unwrap();
        let f = uncommented_example("icap_server", dir.path());
        let s = super::load_from(Some(&f), &[]).unwrap();
        let c = s.icap_server.unwrap();
        assert_eq!(c.listen.unwrap().port(), 1344);
        assert!(c.is_service("avscan") && c.is_service("srv_clamav"));
        assert_eq!(c.on_error, moat_icap_server::ErrorReply::IcapError);
    }
}
