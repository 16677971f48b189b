//! [`YaraEngine`]: the compiled rule set behind the [`Engine`] trait.

use crate::load::{self, LoadError};
use moat_core::{Blob, Engine, EngineError, EngineInfo, EngineScan, Hit, Object, ScanContext};
use std::collections::{BTreeMap, HashMap, HashSet};
use std::os::fd::AsRawFd;
use std::path::PathBuf;
use std::time::{Instant, SystemTime, UNIX_EPOCH};
use yara_x::{MetaValue, Rule, ScanError, Scanner};

/// YARA-X rules loaded from files and directories.
pub struct YaraEngine {
    name: String,
    rules: yara_x::Rules,
    /// Rule identifiers defined in more than one namespace: their hits are
    /// qualified with the namespace.
    ambiguous: HashSet<String>,
    info: EngineInfo,
}

impl std::fmt::Debug for YaraEngine {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("YaraEngine")
            .field("name", &self.name)
            .field("info", &self.info)
            .finish_non_exhaustive()
    }
}

impl YaraEngine {
    /// Load every rule file in `paths` (files, or directories searched
    /// recursively for `.yar`/`.yara`). Fails only when a path does not exist
    /// or no rule file at all could be read; bad files are skipped and
    /// reported in [`EngineInfo::load_errors`].
    pub fn load(name: &str, paths: &[PathBuf]) -> Result<YaraEngine, LoadError> {
        let started = Instant::now();
        let loaded = load::load(paths)?;
        let mut per_ident: HashMap<&str, usize> = HashMap::new();
        let mut count = 0u64;
        for rule in loaded.rules.iter() {
            count += 1;
            *per_ident.entry(rule.identifier()).or_default() += 1;
        }
        let ambiguous = per_ident
            .into_iter()
            .filter(|(_, n)| *n > 1)
            .map(|(id, _)| id.to_string())
            .collect();
        let info = EngineInfo {
            name: name.to_string(),
            kind: "yara".to_string(),
            version: format!("yara-x {}", yara_x::VERSION),
            signature_version: loaded.signature_version,
            signatures: BTreeMap::from([("yara_rules".to_string(), count)]),
            unsupported: BTreeMap::new(),
            skipped: BTreeMap::new(),
            load_errors: loaded.errors,
            loaded_at: SystemTime::now()
                .duration_since(UNIX_EPOCH)
                .map(|d| d.as_secs())
                .unwrap_or(0),
            last_reload_error: None,
            sources: paths.iter().map(|p| p.display().to_string()).collect(),
            // Rule sets carry no build time of their own.
            built_at: None,
        };
        tracing::info!(
            engine = name,
            rules = count,
            files = loaded.files.len(),
            errors = info.load_errors.len(),
            signature_version = %info.signature_version,
            ms = started.elapsed().as_millis() as u64,
            "yara rules loaded"
        );
        Ok(YaraEngine {
            name: name.to_string(),
            rules: loaded.rules,
            ambiguous,
            info,
        })
    }

    fn signature(&self, rule: &Rule<'_, '_>) -> String {
        if self.ambiguous.contains(rule.identifier()) {
            format!("YARA.{}.{}", rule.namespace(), rule.identifier())
        } else {
            format!("YARA.{}", rule.identifier())
        }
    }
}

/// `severity = "suspicious"` (any case) or `suspicious = true`.
fn is_suspicious(rule: &Rule<'_, '_>) -> bool {
    rule.metadata().any(|(key, value)| match (key, value) {
        ("severity", MetaValue::String(s)) => s.eq_ignore_ascii_case("suspicious"),
        ("suspicious", MetaValue::Bool(b)) => b,
        ("suspicious", MetaValue::String(s)) => s.eq_ignore_ascii_case("true"),
        ("suspicious", MetaValue::Integer(i)) => i != 0,
        _ => false,
    })
}

/// The extension of a member name, lower-cased, without the dot (`""` if none).
fn extension(name: &str) -> String {
    let base = name.rsplit(['/', '\\']).next().unwrap_or(name);
    match base.rsplit_once('.') {
        Some((stem, ext)) if !stem.is_empty() => ext.to_lowercase(),
        _ => String::new(),
    }
}

fn scan_error(e: ScanError) -> EngineError {
    match e {
        ScanError::Timeout => EngineError::Timeout,
        ScanError::OpenError { err, .. } | ScanError::MapError { err, .. } => EngineError::Io(err),
        other => EngineError::Other(format!("yara scan: {other}")),
    }
}

impl Engine for YaraEngine {
    fn name(&self) -> &str {
        &self.name
    }

    fn info(&self) -> EngineInfo {
        self.info.clone()
    }

    fn scan(&self, obj: &Object<'_>, ctx: &ScanContext) -> Result<EngineScan, EngineError> {
        let remaining = ctx.deadline.saturating_duration_since(Instant::now());
        if remaining.is_zero() {
            return Err(EngineError::Timeout);
        }
        let mut scanner = Scanner::new(&self.rules);
        // yara-x counts timeouts in whole seconds (rounded up).
        scanner.set_timeout(remaining);
        let externals = [
            ("filename", obj.name.to_string()),
            ("filepath", obj.location.to_string()),
            ("extension", extension(obj.name)),
            ("filetype", obj.content_type.to_string()),
        ];
        for (ident, value) in externals {
            scanner
                .set_global(ident, value)
                .map_err(|e| EngineError::Other(format!("yara external {ident}: {e}")))?;
        }
        let results = match obj.data {
            Blob::Memory(bytes) => scanner.scan(bytes),
            Blob::File { file, len } => {
                // The blob's file is anonymous: /proc/self/fd names it for
                // yara-x, which reads or maps it; only `len` bytes count.
                let path = format!("/proc/self/fd/{}", file.as_raw_fd());
                scanner.max_scan_size(usize::try_from(*len).unwrap_or(usize::MAX));
                scanner.scan_file(path)
            }
        }
        .map_err(scan_error)?;
        let mut hits: Vec<Hit> = Vec::new();
        for rule in results.matching_rules() {
            let signature = self.signature(&rule);
            if hits.iter().any(|h| h.signature == signature) {
                continue;
            }
            hits.push(Hit {
                signature,
                suspicious: is_suspicious(&rule),
            });
        }
        Ok(EngineScan {
            hits,
            trusted: false,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::extension;

    #[test]
    fn extensions() {
        assert_eq!(extension("a/b/Setup.EXE"), "exe");
        assert_eq!(extension("archive.tar.gz"), "gz");
        assert_eq!(extension(".bashrc"), "");
        assert_eq!(extension("README"), "");
        assert_eq!(extension("dir.d/file"), "");
    }
}
