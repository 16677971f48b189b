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
}

impl Default for ScanConfig {
    fn default() -> Self {
        ScanConfig {
            timeout_secs: 300,
            max_file_size: 4 << 30,
            archive: moat_extract::Limits::default(),
        }
    }
}

impl ScanConfig {
    pub fn timeout(&self) -> Duration {
        Duration::from_secs(self.timeout_secs.max(1))
    }
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
    },
    /// YARA-X rule files or directories.
    Yara {
        name: Option<String>,
        rules: Vec<PathBuf>,
    },
    /// A clamd daemon: `host:port`, `tcp://host:port` or `unix:/path/clamd.sock`.
    Clamd {
        name: Option<String>,
        address: String,
        #[serde(default = "default_clamd_timeout")]
        timeout_secs: u64,
        #[serde(default)]
        pool_size: Option<usize>,
    },
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
        }
    }

    fn name(&self) -> Option<&str> {
        match self {
            EngineConfig::Builtin { name, .. }
            | EngineConfig::Yara { name, .. }
            | EngineConfig::Clamd { name, .. } => name.as_deref(),
        }
    }

    /// Files and directories whose change should trigger a reload.
    pub fn watched_paths(&self) -> Vec<PathBuf> {
        match self {
            EngineConfig::Builtin { signatures, .. } => signatures.clone(),
            EngineConfig::Yara { rules, .. } => rules.clone(),
            EngineConfig::Clamd { .. } => Vec::new(),
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
    #[error("two engines are named {0:?}; give each a unique name")]
    DuplicateName(String),
    /// Every signature or rule failed to load: scanning with it would pass
    /// everything, so it is refused (at start-up and on reload, where the
    /// previous set stays in use).
    #[error("engine {name:?} loaded nothing: every signature/rule failed ({first_error})")]
    NothingLoaded { name: String, first_error: String },
}

/// The default engine set when nothing is configured: builtin with EICAR only.
pub fn default_engines() -> Vec<EngineConfig> {
    vec![EngineConfig::Builtin {
        name: None,
        signatures: Vec::new(),
        detect_pua: false,
        verify_signatures: true,
    }]
}

/// Build every configured engine. Slow parts (signature loading) run here,
/// beside whatever set is currently serving.
pub fn build_engine_set(cfgs: &[EngineConfig]) -> Result<EngineSet, BuildError> {
    let mut engines: Vec<Arc<dyn Engine>> = Vec::with_capacity(cfgs.len());
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
                ..
            } => {
                let opts = moat_builtin::LoadOptions {
                    detect_pua: *detect_pua,
                    verify_signatures: *verify_signatures,
                };
                let e = if signatures.is_empty() {
                    moat_builtin::BuiltinEngine::eicar_only(&name)
                } else {
                    moat_builtin::BuiltinEngine::load_with(&name, signatures, &opts).map_err(
                        |source| BuildError::Builtin {
                            name: name.clone(),
                            source,
                        },
                    )?
                };
                Arc::new(e)
            }
            EngineConfig::Yara { rules, .. } => {
                Arc::new(moat_yara::YaraEngine::load(&name, rules).map_err(|source| {
                    BuildError::Yara {
                        name: name.clone(),
                        source,
                    }
                })?)
            }
            EngineConfig::Clamd {
                address,
                timeout_secs,
                pool_size,
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
                Arc::new(moat_clamd::ClamdEngine::new(&name, c).map_err(|source| {
                    BuildError::Clamd {
                        name: name.clone(),
                        source,
                    }
                })?)
            }
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
    Ok(EngineSet::new(engines))
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
            }])
            .is_ok()
        );
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
            },
            EngineConfig::Builtin {
                name: None,
                signatures: vec![],
                detect_pua: false,
                verify_signatures: true,
            },
        ])
        .unwrap();
        let names: Vec<_> = set.engines().iter().map(|e| e.name().to_string()).collect();
        assert_eq!(names, vec!["builtin", "builtin-2"]);
        let err = build_engine_set(&[
            EngineConfig::Builtin {
                name: Some("x".into()),
                signatures: vec![],
            },
            EngineConfig::Builtin {
                name: Some("x".into()),
                signatures: vec![],
            },
        ]);
        assert!(matches!(err, Err(BuildError::DuplicateName(_))));
    }
}
