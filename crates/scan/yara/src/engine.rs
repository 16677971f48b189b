//! [`YaraEngine`]: the compiled rule set behind the [`Engine`] trait.

use crate::cache::CacheOutcome;
use crate::load::{self, LoadError};
use moat_core::{Blob, Engine, EngineError, EngineInfo, EngineScan, Hit, Object, ScanContext};
use std::cell::RefCell;
use std::collections::{BTreeMap, HashMap, HashSet};
use std::os::fd::AsRawFd;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Weak};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};
use yara_x::{MetaValue, Rule, Rules, ScanError, Scanner};

/// YARA-X rules loaded from files and directories.
pub struct YaraEngine {
    name: String,
    rules: Arc<Rules>,
    /// Identifies this engine's scanners in the per-thread pools; the pools
    /// hold a `Weak` of it and drop scanners of engines that are gone.
    id: Arc<u64>,
    /// Rule identifiers defined in more than one namespace: their hits are
    /// qualified with the namespace.
    ambiguous: HashSet<String>,
    info: EngineInfo,
    report: LoadReport,
}

/// How a load went (beyond [`EngineInfo`]).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LoadReport {
    /// Whether the compiled rules came from the on-disk cache.
    pub cache: CacheOutcome,
    /// Rule files in the loaded set.
    pub files: usize,
    /// Wall time of the load.
    pub elapsed: Duration,
}

self_cell::self_cell!(
    /// A yara-x scanner together with the rules it borrows.
    struct OwnedScanner {
        owner: Arc<Rules>,
        #[covariant]
        dependent: Scanner,
    }
);

/// Scanners of one thread, one per live engine.
struct Pooled {
    engine: Weak<u64>,
    id: u64,
    scanner: OwnedScanner,
}

/// Most engines whose scanners one thread keeps.
const MAX_POOLED: usize = 8;

thread_local! {
    /// Each worker thread reuses its scanner (building one costs about as much
    /// as scanning a small object) instead of building one per object.
    static SCANNERS: RefCell<Vec<Pooled>> = const { RefCell::new(Vec::new()) };
}

static NEXT_ID: AtomicU64 = AtomicU64::new(1);

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
        Self::load_cached(name, paths, None)
    }

    /// [`YaraEngine::load`] with the compiled set cached in `cache_dir` (see
    /// the crate documentation); `None` compiles every time.
    pub fn load_cached(
        name: &str,
        paths: &[PathBuf],
        cache_dir: Option<&Path>,
    ) -> Result<YaraEngine, LoadError> {
        let started = Instant::now();
        let loaded = load::load(paths, cache_dir)?;
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
        let report = LoadReport {
            cache: loaded.cache,
            files: loaded.files,
            elapsed: started.elapsed(),
        };
        tracing::info!(
            engine = name,
            rules = count,
            files = loaded.files,
            errors = info.load_errors.len(),
            signature_version = %info.signature_version,
            cache = loaded.cache.as_str(),
            ms = report.elapsed.as_millis() as u64,
            "yara rules loaded"
        );
        Ok(YaraEngine {
            name: name.to_string(),
            rules: Arc::new(loaded.rules),
            id: Arc::new(NEXT_ID.fetch_add(1, Ordering::Relaxed)),
            ambiguous,
            info,
            report,
        })
    }

    /// How the load went: from the cache or compiled, how long it took.
    pub fn load_report(&self) -> &LoadReport {
        &self.report
    }

    /// Run `f` with this thread's scanner for this engine (built on first
    /// use). The scanner is taken out of the pool while `f` runs and put back
    /// after, so re-entrant use simply builds another one.
    fn with_scanner<R>(&self, f: impl FnOnce(&mut Scanner<'_>) -> R) -> R {
        let id = *self.id;
        let taken = SCANNERS
            .try_with(|cell| {
                let mut pool = cell.try_borrow_mut().ok()?;
                pool.retain(|p| p.engine.strong_count() > 0);
                let i = pool.iter().position(|p| p.id == id)?;
                Some(pool.swap_remove(i).scanner)
            })
            .ok()
            .flatten();
        let mut scanner = taken
            .unwrap_or_else(|| OwnedScanner::new(Arc::clone(&self.rules), |r| Scanner::new(r)));
        let result = scanner.with_dependent_mut(|_, s| f(s));
        let _ = SCANNERS.try_with(|cell| {
            if let Ok(mut pool) = cell.try_borrow_mut() {
                if pool.len() >= MAX_POOLED {
                    pool.remove(0);
                }
                pool.push(Pooled {
                    engine: Arc::downgrade(&self.id),
                    id,
                    scanner,
                });
            }
        });
        result
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
        let externals = [
            ("filename", obj.name.to_string()),
            ("filepath", obj.location.to_string()),
            ("extension", extension(obj.name)),
            ("filetype", obj.content_type.to_string()),
            ("owner", String::new()),
        ];
        self.with_scanner(|scanner| {
            // yara-x counts timeouts in whole seconds (rounded up).
            scanner.set_timeout(remaining);
            for (ident, value) in externals {
                scanner
                    .set_global(ident, value)
                    .map_err(|e| EngineError::Other(format!("yara external {ident}: {e}")))?;
            }
            let results = match obj.data {
                Blob::Memory(bytes) => {
                    scanner.max_scan_size(usize::MAX);
                    scanner.scan(bytes)
                }
                Blob::File { file, len } => {
                    // The blob's file is anonymous: /proc/self/fd names it for
                    // yara-x, which reads or maps it; only `len` bytes count.
                    let path = format!("/proc/self/fd/{}", file.as_raw_fd());
                    scanner.max_scan_size(usize::try_from(*len).unwrap_or(usize::MAX));
                    scanner.scan_file(path)
                }
            }
            .map_err(scan_error)?;
            Ok(self.hits(results.matching_rules()))
        })
    }
}

impl YaraEngine {
    fn hits<'a, 'r: 'a>(&self, matching: impl Iterator<Item = Rule<'a, 'r>>) -> EngineScan {
        let mut hits: Vec<Hit> = Vec::new();
        for rule in matching {
            let signature = self.signature(&rule);
            if hits.iter().any(|h| h.signature == signature) {
                continue;
            }
            hits.push(Hit {
                signature,
                suspicious: is_suspicious(&rule),
            });
        }
        EngineScan {
            hits,
            trusted: false,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pooled_scanner_is_reused_and_released_with_its_engine() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("r.yar");
        std::fs::write(&p, "rule T { strings: $a = \"x\" condition: $a }").unwrap();
        let a = YaraEngine::load("a", std::slice::from_ref(&p)).unwrap();
        let b = YaraEngine::load("b", std::slice::from_ref(&p)).unwrap();
        let rules_a = Arc::clone(&a.rules);
        let data = Blob::from_vec(b"x".to_vec());
        let obj = Object {
            data: &data,
            name: "f",
            location: "f",
            content_type: "text/plain",
            depth: 0,
            sha256: None,
        };
        let ctx = ScanContext::within(Duration::from_secs(30));
        for _ in 0..3 {
            assert_eq!(a.scan(&obj, &ctx).unwrap().hits.len(), 1);
            // The engine, `rules_a` and this thread's one pooled scanner.
            assert_eq!(Arc::strong_count(&rules_a), 3);
        }
        drop(a);
        assert_eq!(b.scan(&obj, &ctx).unwrap().hits.len(), 1);
        // Scanning with another engine dropped the dead engine's scanner.
        assert_eq!(Arc::strong_count(&rules_a), 1);
    }

    #[test]
    fn extensions() {
        assert_eq!(extension("a/b/Setup.EXE"), "exe");
        assert_eq!(extension("archive.tar.gz"), "gz");
        assert_eq!(extension(".bashrc"), "");
        assert_eq!(extension("README"), "");
        assert_eq!(extension("dir.d/file"), "");
    }
}
