//! Engine and scan configuration (raw serde structs) and the engine-set builder.

use crate::pipeline::EngineSet;
use moat_core::Engine;
use serde::Deserialize;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

/// Scan limits. Every field has a documented default (see `moat.example.toml`).
#[derive(Debug, Clone, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct ScanConfig {
    /// Whole-scan deadline in seconds; past it the verdict is `unscannable/timeout`.
    pub timeout_secs: u64,
    /// Objects larger than this are `unscannable/too_large` without being scanned.
    pub max_file_size: u64,
    /// Archive extraction limits.
    pub archive: moat_extract::Limits,
    /// Signatures built longer ago than this are stale: a warning at load, the
    /// `moat_signatures_age_seconds` metric and a `/readyz` detail. Default 7.
    pub signatures_max_age_days: u64,
    /// Stale signatures make `/readyz` fail (503). Default false.
    pub stale_signatures_unready: bool,
}

impl Default for ScanConfig {
    fn default() -> Self {
        ScanConfig {
            timeout_secs: 300,
            max_file_size: 4 << 30,
            archive: moat_extract::Limits::default(),
            signatures_max_age_days: 7,
            stale_signatures_unready: false,
        }
    }
}

impl ScanConfig {
    pub fn timeout(&self) -> Duration {
        Duration::from_secs(self.timeout_secs.max(1))
    }

    /// How old each engine's signatures are, for engines that read them
    /// from disk, and whether that is older than `signatures_max_age_days`.
    pub fn signature_ages(&self, infos: &[moat_core::EngineInfo]) -> Vec<SignatureAge> {
        let now = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| d.as_secs());
        let max = self.signatures_max_age_days.saturating_mul(86_400);
        infos
            .iter()
            .filter_map(|i| {
                let built = i.built_at?;
                let age_secs = now.saturating_sub(built);
                Some(SignatureAge {
                    engine: i.name.clone(),
                    age_secs,
                    stale: age_secs > max,
                })
            })
            .collect()
    }
}

/// The age of one engine's signatures (see [`ScanConfig::signature_ages`]).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SignatureAge {
    pub engine: String,
    pub age_secs: u64,
    pub stale: bool,
}

/// One configured engine (`[[engines]]` in the config file).
#[derive(Debug, Clone, Deserialize, PartialEq)]
#[serde(tag = "type", rename_all = "snake_case", deny_unknown_fields)]
pub enum EngineConfig {
    /// ClamAV-format signatures (files or directories) plus the built-in EICAR signature.
    Builtin {
        name: Option<String>,
        #[serde(default)]
        signatures: Vec<PathBuf>,
        /// Load the PUA databases (`.hdu`, `.hsu`, `.ndu`, `.ldu`, `.mdu`,
        /// `.msu`); off by default, as in ClamAV.
        #[serde(default)]
        detect_pua: bool,
        /// Refuse `.cvd`/`.cld` databases whose ClamAV digital signatures do
        /// not verify; on by default.
        #[serde(default = "default_true")]
        verify_signatures: bool,
        /// The public key `.cvd`/`.cld` signatures are checked with, for
        /// databases signed by a private mirror (PEM, or ClamAV's `N=`/`E=`
        /// decimal form; one key for headers, `.info` and `.cdiff`).
        /// Default: ClamAV's published keys.
        #[serde(default)]
        public_key: Option<PathBuf>,
        /// Report every matching signature of an object (as `clamscan
        /// --allmatch`); off by default: an object's scan stops at its first
        /// detection, as clamscan and clamd do (same verdict, less work).
        #[serde(default)]
        all_match: bool,
        /// Keep the compiled signature set in a cache directory and read it
        /// from there when the same files are loaded again (a start with
        /// unchanged signatures skips compiling them). Off by default for
        /// the server roles: their reloads share unchanged files with the
        /// running engine, which a set read from the cache cannot offer.
        /// `moat scan` turns it on unless set to `false`.
        #[serde(default)]
        cache: Option<bool>,
        /// Directory of that cache. Default: `$XDG_CACHE_HOME/moat/builtin`
        /// or `~/.cache/moat/builtin`.
        #[serde(default)]
        cache_dir: Option<PathBuf>,
    },
    /// YARA-X rule files or directories.
    Yara {
        name: Option<String>,
        rules: Vec<PathBuf>,
        /// Directory of the compiled-rules cache. Default: `moat serve` (and
        /// the other server roles) `<data_dir>/cache/yara`, other commands
        /// `$XDG_CACHE_HOME/moat/yara` or `~/.cache/moat/yara`.
        #[serde(default)]
        cache_dir: Option<PathBuf>,
        /// `false` compiles the rules at every load (no cache).
        #[serde(default = "default_true")]
        cache: bool,
    },
    /// A clamd daemon: `host:port`, `tcp://host:port` or `unix:/path/clamd.sock`.
    Clamd {
        name: Option<String>,
        address: String,
        #[serde(default = "default_clamd_timeout")]
        timeout_secs: u64,
        #[serde(default)]
        pool_size: Option<usize>,
        /// How long cached verdicts clamd took part in are reused (seconds;
        /// default 3600, 0: never). clamd's VERSION names no database
        /// version for unofficial databases, so this bounds the rest.
        #[serde(default)]
        cache_ttl_secs: Option<u64>,
    },
    /// A local scanner command run per file (e.g. `clamscan`), mapped by exit code.
    Command(moat_command::CommandConfig),
    /// An ICAP service (`icap://host:1344/avscan`), RESPMOD or REQMOD.
    Icap(moat_icap_client::IcapConfig),
}

fn default_true() -> bool {
    true
}

fn default_clamd_timeout() -> u64 {
    120
}

impl EngineConfig {
    fn kind(&self) -> &'static str {
        match self {
            EngineConfig::Builtin { .. } => "builtin",
            EngineConfig::Yara { .. } => "yara",
            EngineConfig::Clamd { .. } => "clamd",
            EngineConfig::Command(_) => "command",
            EngineConfig::Icap(_) => "icap",
        }
    }

    fn name(&self) -> Option<&str> {
        match self {
            EngineConfig::Builtin { name, .. }
            | EngineConfig::Yara { name, .. }
            | EngineConfig::Clamd { name, .. }
            | EngineConfig::Command(moat_command::CommandConfig { name, .. })
            | EngineConfig::Icap(moat_icap_client::IcapConfig { name, .. }) => name.as_deref(),
        }
    }

    /// Cache a builtin engine's compiled set unless the configuration says
    /// not to (`moat scan`, which never reloads).
    pub fn default_builtin_cache_on(&mut self) {
        if let EngineConfig::Builtin { cache, .. } = self {
            cache.get_or_insert(true);
        }
    }

    /// Give a yara engine without a configured cache directory `dir` (the
    /// server roles keep it under their data directory).
    pub fn default_yara_cache_dir(&mut self, dir: &std::path::Path) {
        if let EngineConfig::Yara { cache_dir, .. } = self
            && cache_dir.is_none()
        {
            *cache_dir = Some(dir.to_path_buf());
        }
    }

    /// Files and directories whose change should trigger a reload.
    pub fn watched_paths(&self) -> Vec<PathBuf> {
        match self {
            EngineConfig::Builtin { signatures, .. } => signatures.clone(),
            EngineConfig::Yara { rules, .. } => rules.clone(),
            EngineConfig::Clamd { .. } | EngineConfig::Command(_) | EngineConfig::Icap(_) => {
                Vec::new()
            }
        }
    }
}

/// Building an engine set failed; the error names the engine.
#[derive(Debug, thiserror::Error)]
pub enum BuildError {
    #[error("engine {name:?} (builtin): {source}")]
    Builtin {
        name: String,
        source: moat_builtin::LoadError,
    },
    #[error("engine {name:?} (yara): {source}")]
    Yara {
        name: String,
        source: moat_yara::LoadError,
    },
    #[error("engine {name:?} (clamd): {source}")]
    Clamd {
        name: String,
        source: moat_clamd::ConfigError,
    },
    #[error("engine {name:?} (command): {source}")]
    Command {
        name: String,
        source: moat_command::ConfigError,
    },
    #[error("engine {name:?} (icap): {source}")]
    Icap {
        name: String,
        source: moat_icap_client::ConfigError,
    },
    #[error("engine {name:?} (builtin): public key {path}: {msg}")]
    Key {
        name: String,
        path: PathBuf,
        msg: String,
    },
    #[error("two engines are named {0:?}; give each a unique name")]
    DuplicateName(String),
    /// Every signature or rule failed to load: scanning with it would pass
    /// everything, so it is refused (at start-up and on reload, where the
    /// previous set stays in use).
    #[error("engine {name:?} loaded nothing: every signature/rule failed ({first_error})")]
    NothingLoaded { name: String, first_error: String },
}

/// The default engine set when nothing is configured: the builtin engine
/// with the local ClamAV database when there is one
/// ([`discover_clamav_database`]), plus EICAR.
pub fn default_engines() -> Vec<EngineConfig> {
    vec![EngineConfig::Builtin {
        name: None,
        signatures: discover_clamav_database().into_iter().collect(),
        detect_pua: false,
        verify_signatures: true,
        public_key: None,
        all_match: false,
        cache: None,
        cache_dir: None,
    }]
}

/// A builtin engine with only the EICAR test signature (what
/// [`default_engines`] gives on a machine without ClamAV's database).
pub fn eicar_only_engines() -> Vec<EngineConfig> {
    vec![EngineConfig::Builtin {
        name: None,
        signatures: Vec::new(),
        detect_pua: false,
        verify_signatures: true,
        public_key: None,
        all_match: false,
        cache: None,
        cache_dir: None,
    }]
}

/// Configuration files that may name ClamAV's `DatabaseDirectory`, in the
/// order clamd and freshclam packages install them.
pub const CLAMAV_CONF_FILES: &[&str] = &[
    "/etc/clamav/clamd.conf",
    "/etc/clamav/freshclam.conf",
    "/etc/clamd.d/scan.conf",
    "/etc/freshclam.conf",
    "/usr/local/etc/clamd.conf",
    "/usr/local/etc/freshclam.conf",
    "/usr/local/etc/clamav/clamd.conf",
    "/usr/local/etc/clamav/freshclam.conf",
    "/opt/homebrew/etc/clamav/clamd.conf",
    "/opt/homebrew/etc/clamav/freshclam.conf",
];

/// Where ClamAV keeps its database when no configuration file says otherwise.
pub const CLAMAV_DEFAULT_DB: &str = "/var/lib/clamav";

/// The local ClamAV database directory: the `DatabaseDirectory` of the first
/// of [`CLAMAV_CONF_FILES`] that names one holding signature files, else
/// [`CLAMAV_DEFAULT_DB`] when it holds any. `None` when there is none.
pub fn discover_clamav_database() -> Option<PathBuf> {
    let confs: Vec<PathBuf> = CLAMAV_CONF_FILES.iter().map(PathBuf::from).collect();
    discover_clamav_database_in(&confs, std::path::Path::new(CLAMAV_DEFAULT_DB))
}

/// [`discover_clamav_database`] over the given configuration files and fallback.
pub fn discover_clamav_database_in(
    conf_files: &[PathBuf],
    fallback: &std::path::Path,
) -> Option<PathBuf> {
    let holds_signatures =
        |d: &std::path::Path| d.is_dir() && moat_builtin::age::newest_build_time(&[d]).is_some();
    for conf in conf_files {
        let Ok(text) = std::fs::read_to_string(conf) else {
            continue;
        };
        if let Some(dir) = database_directory(&text)
            && holds_signatures(&dir)
        {
            return Some(dir);
        }
    }
    holds_signatures(fallback).then(|| fallback.to_path_buf())
}

/// The `DatabaseDirectory` setting of a clamd.conf/freshclam.conf text.
fn database_directory(conf: &str) -> Option<PathBuf> {
    conf.lines().find_map(|l| {
        let l = l.trim();
        let rest = l.strip_prefix("DatabaseDirectory")?;
        if !rest.starts_with([' ', '\t']) {
            return None;
        }
        let v = rest.trim().trim_matches('"');
        (!v.is_empty()).then(|| PathBuf::from(v))
    })
}

/// Build every configured engine. Slow parts (signature loading) run here,
/// beside whatever set is currently serving.
pub fn build_engine_set(cfgs: &[EngineConfig]) -> Result<EngineSet, BuildError> {
    build_engine_set_after(cfgs, None)
}

/// [`build_engine_set`] for a reload: each builtin engine shares the parsed
/// parts of unchanged signature sources (plain hash files, containers' hash
/// members) with the engine of the same name in `previous`, the set still
/// serving, instead of holding them twice (issue 15). Reuse is decided by
/// the sources' identity, so a foreign or stale `previous` can only make a
/// build parse more, never load something else.
pub fn build_engine_set_after(
    cfgs: &[EngineConfig],
    previous: Option<&EngineSet>,
) -> Result<EngineSet, BuildError> {
    let mut engines: Vec<Arc<dyn Engine>> = Vec::with_capacity(cfgs.len());
    let mut builtin_parts = Vec::new();
    let mut names: Vec<String> = Vec::new();
    for cfg in cfgs {
        let name = match cfg.name() {
            Some(n) => n.to_string(),
            None => {
                let kind = cfg.kind();
                let mut n = kind.to_string();
                let mut k = 2;
                while names.contains(&n) {
                    n = format!("{kind}-{k}");
                    k += 1;
                }
                n
            }
        };
        if names.contains(&name) {
            return Err(BuildError::DuplicateName(name));
        }
        names.push(name.clone());
        let engine: Arc<dyn Engine> = match cfg {
            EngineConfig::Builtin {
                signatures,
                detect_pua,
                verify_signatures,
                public_key,
                all_match,
                cache,
                cache_dir,
                ..
            } => {
                let public_keys = match public_key {
                    Some(p) => Some(Arc::new(moat_builtin::dsig::read_key_file(p).map_err(
                        |msg| BuildError::Key {
                            name: name.clone(),
                            path: p.clone(),
                            msg,
                        },
                    )?)),
                    None => None,
                };
                let opts = moat_builtin::LoadOptions {
                    detect_pua: *detect_pua,
                    verify_signatures: *verify_signatures,
                    public_keys,
                    all_match: *all_match,
                    cache_dir: if cache.unwrap_or(false) {
                        cache_dir.clone().or_else(moat_builtin::default_cache_dir)
                    } else {
                        None
                    },
                };
                let e = if signatures.is_empty() {
                    moat_builtin::BuiltinEngine::eicar_only(&name).with_all_match(*all_match)
                } else {
                    let previous = previous.and_then(|s| s.builtin_parts(&name));
                    let e = moat_builtin::BuiltinEngine::load_reusing(
                        &name,
                        signatures,
                        &opts,
                        previous.as_deref(),
                    )
                    .map_err(|source| BuildError::Builtin {
                        name: name.clone(),
                        source,
                    })?;
                    builtin_parts.push((name.clone(), e.signature_parts()));
                    e
                };
                Arc::new(e)
            }
            EngineConfig::Yara {
                rules,
                cache_dir,
                cache,
                ..
            } => {
                let dir = if *cache {
                    cache_dir.clone().or_else(moat_yara::default_cache_dir)
                } else {
                    None
                };
                Arc::new(
                    moat_yara::YaraEngine::load_cached(&name, rules, dir.as_deref()).map_err(
                        |source| BuildError::Yara {
                            name: name.clone(),
                            source,
                        },
                    )?,
                )
            }
            EngineConfig::Clamd {
                address,
                timeout_secs,
                pool_size,
                cache_ttl_secs,
                ..
            } => {
                let mut c = moat_clamd::ClamdConfig {
                    address: address.clone(),
                    timeout: Duration::from_secs(*timeout_secs),
                    ..Default::default()
                };
                if let Some(p) = pool_size {
                    c.pool_size = *p;
                }
                if let Some(t) = cache_ttl_secs {
                    c.cache_ttl = Duration::from_secs(*t);
                }
                Arc::new(moat_clamd::ClamdEngine::new(&name, c).map_err(|source| {
                    BuildError::Clamd {
                        name: name.clone(),
                        source,
                    }
                })?)
            }
            EngineConfig::Command(c) => Arc::new(
                moat_command::CommandEngine::new(&name, c.clone()).map_err(|source| {
                    BuildError::Command {
                        name: name.clone(),
                        source,
                    }
                })?,
            ),
            EngineConfig::Icap(c) => Arc::new(
                moat_icap_client::IcapEngine::new(&name, c.clone()).map_err(|source| {
                    BuildError::Icap {
                        name: name.clone(),
                        source,
                    }
                })?,
            ),
        };
        let info = engine.info();
        if info.signatures.values().sum::<u64>() == 0 && !info.load_errors.is_empty() {
            return Err(BuildError::NothingLoaded {
                name,
                first_error: info.load_errors[0].clone(),
            });
        }
        engines.push(engine);
    }
    Ok(EngineSet::new(engines).with_builtin_parts(builtin_parts))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_tagged_engine_list() {
        #[derive(Deserialize)]
        struct W {
            engines: Vec<EngineConfig>,
        }
        let w: W = toml_like(
            r#"{"engines":[{"type":"builtin","signatures":["/sigs"]},{"type":"clamd","address":"127.0.0.1:3310"}]}"#,
        );
        assert_eq!(w.engines.len(), 2);
        assert_eq!(w.engines[1].kind(), "clamd");
        let bad: Result<W, _> = serde_json::from_str(r#"{"engines":[{"type":"nope"}]}"#);
        assert!(bad.is_err());
        let w: W = serde_json::from_str(
            r#"{"engines":[{"type":"command","name":"cs","argv":["clamscan","{path}"],"timeout_secs":5}]}"#,
        )
        .unwrap();
        assert_eq!(w.engines[0].kind(), "command");
        assert_eq!(w.engines[0].name(), Some("cs"));
        let set = build_engine_set(&w.engines).unwrap();
        assert_eq!(set.infos()[0].kind, "command");
        let bad: W =
            serde_json::from_str(r#"{"engines":[{"type":"command","argv":["x"]}]}"#).unwrap();
        let err = match build_engine_set(&bad.engines) {
            Ok(_) => panic!("a command without {{path}} must be refused"),
            Err(e) => e.to_string(),
        };
        assert!(err.contains("(command)") && err.contains("{path}"), "{err}");
        let bad: Result<W, _> =
            serde_json::from_str(r#"{"engines":[{"type":"command","argv":["x"],"nope":1}]}"#);
        assert!(bad.is_err());
    }

    #[test]
    fn icap_and_clamd_engines_carry_their_cache_ttl() {
        #[derive(Deserialize)]
        struct W {
            engines: Vec<EngineConfig>,
        }
        // Building does not contact the servers (nothing listens on port 9).
        let w: W = serde_json::from_str(
            r#"{"engines":[{"type":"icap","name":"av","url":"icap://127.0.0.1:9/avscan","method":"reqmod","cache_ttl_secs":30,"connect_timeout_secs":0.2},
                           {"type":"clamd","address":"127.0.0.1:9","cache_ttl_secs":60}]}"#,
        )
        .unwrap();
        assert_eq!(w.engines[0].kind(), "icap");
        assert_eq!(w.engines[0].name(), Some("av"));
        let set = build_engine_set(&w.engines).unwrap();
        assert_eq!(set.infos()[0].kind, "icap");
        assert_eq!(set.cache_ttl(), Some(Duration::from_secs(30)));
        let bad: W =
            serde_json::from_str(r#"{"engines":[{"type":"icap","url":"http://x/avscan"}]}"#)
                .unwrap();
        let err = match build_engine_set(&bad.engines) {
            Ok(_) => panic!("an http:// url must be refused"),
            Err(e) => e.to_string(),
        };
        assert!(err.contains("(icap)") && err.contains("icap://"), "{err}");
        assert!(
            serde_json::from_str::<W>(
                r#"{"engines":[{"type":"icap","url":"icap://h/x","nope":1}]}"#
            )
            .is_err()
        );
    }

    #[test]
    fn a_rebuild_after_the_serving_set_shares_its_builtin_parts() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(
            dir.path().join("a.hdb"),
            "d41d8cd98f00b204e9800998ecf8427e:0:Empty.Md5\n",
        )
        .unwrap();
        let name = "builtin-parts-test";
        let cfgs = vec![EngineConfig::Builtin {
            name: Some(name.into()),
            signatures: vec![dir.path().to_path_buf()],
            detect_pua: false,
            verify_signatures: true,
            public_key: None,
            all_match: false,
            cache: None,
            cache_dir: None,
        }];
        let first = build_engine_set(&cfgs).unwrap();
        let parts = first
            .builtin_parts(name)
            .expect("the builtin engine's parts");
        assert_eq!(parts.len(), 1);
        // A reload builds beside the serving set and shares with it.
        let second = build_engine_set_after(&cfgs, Some(&first)).unwrap();
        let second_parts = second.builtin_parts(name).unwrap();
        assert_eq!(second_parts.shared_with(&parts), 1);
        // The parts follow the set through a refresh.
        let refreshed = second.refreshed();
        assert_eq!(
            refreshed.builtin_parts(name).unwrap().shared_with(&parts),
            1
        );
        // Without a previous set nothing is shared.
        let third = build_engine_set(&cfgs).unwrap();
        assert_eq!(third.builtin_parts(name).unwrap().shared_with(&parts), 0);
        assert!(third.builtin_parts("other").is_none());
    }

    #[test]
    fn an_engine_whose_every_rule_failed_is_refused() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(
            dir.path().join("bad.yar"),
            "rule Broken { condition: $nope }",
        )
        .unwrap();
        let err = build_engine_set(&[EngineConfig::Yara {
            name: None,
            rules: vec![dir.path().to_path_buf()],
            cache_dir: None,
            cache: false,
        }]);
        match err {
            Err(BuildError::NothingLoaded { name, first_error }) => {
                assert_eq!(name, "yara");
                assert!(first_error.contains("bad.yar"), "{first_error}");
            }
            Err(e) => panic!("unexpected error {e}"),
            Ok(_) => panic!("an engine with no rules and errors must be refused"),
        }
        // An empty rule directory is fine: nothing failed.
        let empty = tempfile::tempdir().unwrap();
        assert!(
            build_engine_set(&[EngineConfig::Yara {
                name: None,
                rules: vec![empty.path().to_path_buf()],
                cache_dir: None,
                cache: false,
            }])
            .is_ok()
        );
    }

    #[test]
    fn clamav_database_is_found_through_conf_then_default_dir() {
        let root = tempfile::tempdir().unwrap();
        let db = root.path().join("db");
        let fallback = root.path().join("lib-clamav");
        std::fs::create_dir_all(&db).unwrap();
        std::fs::create_dir_all(&fallback).unwrap();
        let conf = root.path().join("clamd.conf");
        std::fs::write(
            &conf,
            format!(
                "# DatabaseDirectory /nope\nLogSyslog yes\nDatabaseDirectory {}\n",
                db.display()
            ),
        )
        .unwrap();
        let missing_conf = root.path().join("absent.conf");
        let confs = vec![missing_conf, conf];
        // Neither directory holds signatures yet: nothing to load.
        assert_eq!(discover_clamav_database_in(&confs, &fallback), None);
        // Updater state alone is not a database.
        std::fs::write(fallback.join("freshclam.dat"), b"x").unwrap();
        assert_eq!(discover_clamav_database_in(&confs, &fallback), None);
        std::fs::write(fallback.join("daily.hdb"), b"").unwrap();
        assert_eq!(
            discover_clamav_database_in(&confs, &fallback),
            Some(fallback.clone())
        );
        // The configured DatabaseDirectory wins once it holds a database.
        std::fs::write(db.join("main.ndb"), b"").unwrap();
        assert_eq!(discover_clamav_database_in(&confs, &fallback), Some(db));
    }

    #[test]
    fn default_engines_load_a_discovered_database() {
        let root = tempfile::tempdir().unwrap();
        std::fs::write(
            root.path().join("local.hdb"),
            "44d88612fea8a8f36de82e1278abb02f:68:Moat.Test.Eicar.Hash\n",
        )
        .unwrap();
        let dir = discover_clamav_database_in(&[], root.path()).unwrap();
        let set = build_engine_set(&[EngineConfig::Builtin {
            name: None,
            signatures: vec![dir],
            detect_pua: false,
            verify_signatures: true,
            public_key: None,
            all_match: false,
            cache: None,
            cache_dir: None,
        }])
        .unwrap();
        let info = &set.infos()[0];
        assert_eq!(info.signatures.get("hdb"), Some(&1));
        assert_eq!(info.sources, vec![root.path().display().to_string()]);
        assert!(info.built_at.is_some());
    }

    #[test]
    fn signatures_older_than_the_limit_are_stale() {
        let now = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .unwrap()
            .as_secs();
        let info = |name: &str, built_at| moat_core::EngineInfo {
            name: name.into(),
            built_at,
            ..Default::default()
        };
        let cfg = ScanConfig::default();
        let ages = cfg.signature_ages(&[
            info("fresh", Some(now - 86_400)),
            info("old", Some(now - 8 * 86_400)),
            info("remote", None),
        ]);
        assert_eq!(ages.len(), 2, "engines without files have no age: {ages:?}");
        assert!(!ages[0].stale && ages[0].age_secs >= 86_400);
        assert!(ages[1].stale && ages[1].engine == "old");
    }

    #[test]
    fn yara_engine_caches_compiled_rules_in_its_cache_dir() {
        let dir = tempfile::tempdir().unwrap();
        let rules = dir.path().join("r.yar");
        std::fs::write(&rules, "rule T { condition: true }").unwrap();
        let cache = dir.path().join("data").join("cache").join("yara");
        let mut cfg: EngineConfig =
            serde_json::from_value(serde_json::json!({"type": "yara", "rules": [rules]})).unwrap();
        // Parsed with caching on and no directory; the server roles fill one in.
        cfg.default_yara_cache_dir(&cache);
        assert_eq!(
            cfg,
            EngineConfig::Yara {
                name: None,
                rules: vec![rules.clone()],
                cache_dir: Some(cache.clone()),
                cache: true,
            }
        );
        build_engine_set(std::slice::from_ref(&cfg)).unwrap();
        let entries: Vec<_> = std::fs::read_dir(&cache).unwrap().flatten().collect();
        assert_eq!(entries.len(), 1);
        // An explicit directory is kept; `cache = false` writes nothing.
        let mut explicit = cfg.clone();
        explicit.default_yara_cache_dir(&dir.path().join("other"));
        assert_eq!(explicit, cfg);
        let off = EngineConfig::Yara {
            name: None,
            rules: vec![rules],
            cache_dir: Some(dir.path().join("off")),
            cache: false,
        };
        build_engine_set(&[off]).unwrap();
        assert!(!dir.path().join("off").exists());
    }

    fn toml_like<T: serde::de::DeserializeOwned>(s: &str) -> T {
        serde_json::from_str(s).unwrap()
    }

    #[test]
    fn default_names_are_unique_and_explicit_duplicates_fail() {
        let set = build_engine_set(&[
            EngineConfig::Builtin {
                name: None,
                signatures: vec![],
                detect_pua: false,
                verify_signatures: true,
                public_key: None,
                all_match: false,
                cache: None,
                cache_dir: None,
            },
            EngineConfig::Builtin {
                name: None,
                signatures: vec![],
                detect_pua: false,
                verify_signatures: true,
                public_key: None,
                all_match: false,
                cache: None,
                cache_dir: None,
            },
        ])
        .unwrap();
        let names: Vec<_> = set.engines().iter().map(|e| e.name().to_string()).collect();
        assert_eq!(names, vec!["builtin", "builtin-2"]);
        let err = build_engine_set(&[
            EngineConfig::Builtin {
                name: Some("x".into()),
                signatures: vec![],
                detect_pua: false,
                verify_signatures: true,
                public_key: None,
                all_match: false,
                cache: None,
                cache_dir: None,
            },
            EngineConfig::Builtin {
                name: Some("x".into()),
                signatures: vec![],
                detect_pua: false,
                verify_signatures: true,
                public_key: None,
                all_match: false,
                cache: None,
                cache_dir: None,
            },
        ]);
        assert!(matches!(err, Err(BuildError::DuplicateName(_))));
    }
}
