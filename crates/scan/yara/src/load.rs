//! Finding, reading and compiling rule files.
//!
//! All readable files are compiled together in one compiler, each in its own
//! namespace. Only when a failing file kept some of its rules (yara-x keeps
//! the rules of a file that compiled before its bad one) is the set compiled
//! a second time without the failing files: a file is loaded whole or not at
//! all, as yara does. The compiled set is
//! cached on disk (see [`crate::cache`]).

use crate::cache::{self, CacheOutcome, Cached};
use sha2::{Digest, Sha256};
use std::fs::File;
use std::io::Read;
use std::path::{Path, PathBuf};
use yara_x::{Compiler, SourceCode};

/// Largest rule file read, in bytes.
const MAX_RULE_FILE: u64 = 64 << 20;
/// Deepest directory level searched under a configured directory.
const MAX_DIR_DEPTH: u32 = 32;
/// Most load errors kept in `EngineInfo::load_errors`.
const MAX_LOAD_ERRORS: usize = 100;
/// Most compile passes: the first with every file, then without the files that
/// failed (a second failure is only possible when removing a file breaks
/// another, which namespaces make impossible; bounded anyway).
const MAX_PASSES: usize = 4;

/// Why rules could not be loaded at all. Problems with single files are not
/// errors: they are reported in `EngineInfo::load_errors`.
#[derive(Debug, thiserror::Error)]
pub enum LoadError {
    #[error("yara rule path {path}: {source}")]
    Path {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("no yara rule file could be read ({failed} failed): {first}")]
    NothingReadable { failed: usize, first: String },
}

/// A readable rule file.
pub(crate) struct RuleFile {
    pub path: PathBuf,
    pub namespace: String,
    pub source: String,
}

/// The outcome of loading: the compiled set and what went wrong on the way.
pub(crate) struct Loaded {
    pub rules: yara_x::Rules,
    /// Rule files in the compiled set.
    pub files: usize,
    pub errors: Vec<String>,
    /// Short hex SHA-256 over the sorted (path, content) of the good files.
    pub signature_version: String,
    /// Whether the compiled set came from the on-disk cache.
    pub cache: CacheOutcome,
}

/// Declare the external variables (see [`crate::EXTERNALS`]) with empty defaults.
pub(crate) fn define_externals(c: &mut Compiler<'_>) -> Result<(), yara_x::errors::VariableError> {
    for name in crate::EXTERNALS {
        c.define_global(name, "")?;
    }
    Ok(())
}

/// A compiler set up as every rule set is compiled: yara 4's regular
/// expression syntax (invalid escapes accepted), the external variables.
fn new_compiler<'a>() -> (Compiler<'a>, Option<String>) {
    let mut c = Compiler::new();
    c.relaxed_re_syntax(true);
    let err = define_externals(&mut c)
        .err()
        .map(|e| format!("defining external variables: {e}"));
    (c, err)
}

pub(crate) fn load(paths: &[PathBuf], cache_dir: Option<&Path>) -> Result<Loaded, LoadError> {
    let mut candidates: Vec<(PathBuf, String)> = Vec::new();
    let mut errors = Vec::new();
    for root in paths {
        let meta = std::fs::metadata(root).map_err(|source| LoadError::Path {
            path: root.clone(),
            source,
        })?;
        if meta.is_dir() {
            collect_dir(root, root, 0, &mut candidates, &mut errors);
        } else {
            let ns = root
                .file_name()
                .map(|n| n.to_string_lossy().into_owned())
                .unwrap_or_else(|| root.display().to_string());
            candidates.push((root.clone(), ns));
        }
    }
    candidates.sort();
    candidates.dedup_by(|a, b| a.0 == b.0);

    let mut files: Vec<RuleFile> = Vec::new();
    let mut read_failures = 0usize;
    let mut first_failure = None;
    for (path, ns) in candidates {
        match read_bounded(&path) {
            Ok(source) => {
                let namespace = unique_namespace(&files, ns);
                files.push(RuleFile {
                    path,
                    namespace,
                    source,
                });
            }
            Err(e) => {
                read_failures += 1;
                let msg = format!("{}: {e}", path.display());
                first_failure.get_or_insert_with(|| msg.clone());
                errors.push(msg);
            }
        }
    }
    if files.is_empty()
        && read_failures > 0
        && let Some(first) = first_failure
    {
        return Err(LoadError::NothingReadable {
            failed: read_failures,
            first,
        });
    }

    let key = cache::Key::new(paths, &files);
    if let Some(dir) = cache_dir {
        match cache::read(dir, &key) {
            Ok(Some(c)) => {
                errors.extend(c.errors);
                errors.truncate(MAX_LOAD_ERRORS);
                return Ok(Loaded {
                    rules: c.rules,
                    files: c.files,
                    errors,
                    signature_version: c.signature_version,
                    cache: CacheOutcome::Hit,
                });
            }
            Ok(None) => {}
            Err(e) => {
                tracing::warn!(dir = %dir.display(), error = %e, "yara rule cache entry unusable, compiling");
            }
        }
    }

    let compiled = compile(&files);
    let cache_outcome = match cache_dir {
        None => CacheOutcome::Off,
        Some(dir) => {
            let entry = Cached {
                rules: compiled.rules,
                files: compiled.good.len(),
                errors: compiled.errors.clone(),
                signature_version: signature_version(&compiled.good),
            };
            let outcome = match cache::write(dir, &key, &entry) {
                Ok(()) => CacheOutcome::Stored,
                Err(e) => {
                    tracing::warn!(dir = %dir.display(), error = %e, "yara rule cache not written");
                    CacheOutcome::Failed
                }
            };
            errors.extend(entry.errors);
            errors.truncate(MAX_LOAD_ERRORS);
            return Ok(Loaded {
                rules: entry.rules,
                files: entry.files,
                errors,
                signature_version: entry.signature_version,
                cache: outcome,
            });
        }
    };
    errors.extend(compiled.errors);
    errors.truncate(MAX_LOAD_ERRORS);
    Ok(Loaded {
        rules: compiled.rules,
        files: compiled.good.len(),
        errors,
        signature_version: signature_version(&compiled.good),
        cache: cache_outcome,
    })
}

struct Compiled<'a> {
    rules: yara_x::Rules,
    good: Vec<&'a RuleFile>,
    errors: Vec<String>,
}

/// Compile every file together; when a failing file kept some of its rules,
/// compile again without the failing files.
fn compile(files: &[RuleFile]) -> Compiled<'_> {
    let mut good: Vec<&RuleFile> = files.iter().collect();
    let mut errors = Vec::new();
    let mut pass = 0usize;
    loop {
        pass += 1;
        let (mut compiler, ext_err) = new_compiler();
        if pass == 1 {
            errors.extend(ext_err);
        }
        let mut failed = Vec::new();
        for (i, f) in good.iter().enumerate() {
            compiler.new_namespace(&f.namespace);
            if let Err(e) = compiler
                .add_source(SourceCode::from(f.source.as_str()).with_origin(origin(&f.path)))
            {
                let msg = format!("{}: {e}", f.path.display());
                tracing::warn!(path = %f.path.display(), error = %e, "yara rule file rejected");
                errors.push(msg);
                failed.push(i);
            }
        }
        if failed.is_empty() || pass >= MAX_PASSES {
            if !failed.is_empty() {
                // Not expected (namespaces isolate files); never hidden.
                errors.push(format!(
                    "yara rules still failing after {MAX_PASSES} compile passes; the rules of those files that compiled are loaded"
                ));
            }
            return Compiled {
                rules: compiler.build(),
                good,
                errors,
            };
        }
        // yara-x rolls a failing rule back but keeps the rules of the same
        // file that compiled before it. Most broken files keep none (the
        // first rule, or the whole file, does not parse): then this pass's
        // set is already the set of the good files, and compiling them all
        // again (half of a cold load) is not needed.
        let rules = compiler.build();
        let failed_ns: Vec<&str> = failed.iter().map(|&i| good[i].namespace.as_str()).collect();
        let partial = rules.iter().any(|r| failed_ns.contains(&r.namespace()));
        let mut k = 0usize;
        good.retain(|_| {
            let keep = !failed.contains(&k);
            k += 1;
            keep
        });
        if !partial {
            return Compiled {
                rules,
                good,
                errors,
            };
        }
        tracing::debug!(
            pass,
            failed = failed.len(),
            "compiling yara rules again without the failing files (some of their rules compiled)"
        );
    }
}

fn origin(path: &Path) -> String {
    path.display().to_string()
}

/// Files ending in `.yar`/`.yara` (any case) under `dir`. Symlinked files are
/// followed, symlinked directories are not (no loops).
fn collect_dir(
    root: &Path,
    dir: &Path,
    depth: u32,
    out: &mut Vec<(PathBuf, String)>,
    errors: &mut Vec<String>,
) {
    if depth > MAX_DIR_DEPTH {
        errors.push(format!(
            "{}: directory nesting too deep, skipped",
            dir.display()
        ));
        return;
    }
    let entries = match std::fs::read_dir(dir) {
        Ok(e) => e,
        Err(e) => {
            errors.push(format!("{}: {e}", dir.display()));
            return;
        }
    };
    for entry in entries {
        let entry = match entry {
            Ok(e) => e,
            Err(e) => {
                errors.push(format!("{}: {e}", dir.display()));
                continue;
            }
        };
        // Hidden entries are not rules: `.git`, editors' files, and the
        // signature updater's staging directories (`.moat-update-*`),
        // whose half-written contents must never be loaded.
        if entry.file_name().to_string_lossy().starts_with('.') {
            continue;
        }
        let path = entry.path();
        let Ok(kind) = entry.file_type() else {
            continue;
        };
        if kind.is_dir() {
            collect_dir(root, &path, depth + 1, out, errors);
        } else if is_rule_file(&path) && (kind.is_file() || path.is_file()) {
            let ns = path
                .strip_prefix(root)
                .unwrap_or(&path)
                .to_string_lossy()
                .into_owned();
            out.push((path, ns));
        }
    }
}

fn is_rule_file(path: &Path) -> bool {
    path.extension()
        .and_then(|e| e.to_str())
        .is_some_and(|e| e.eq_ignore_ascii_case("yar") || e.eq_ignore_ascii_case("yara"))
}

/// Read a rule file of at most [`MAX_RULE_FILE`] bytes as UTF-8.
fn read_bounded(path: &Path) -> std::io::Result<String> {
    let file = File::open(path)?;
    let mut buf = Vec::new();
    #[allow(clippy::disallowed_methods)] // bounded by take(MAX_RULE_FILE + 1)
    file.take(MAX_RULE_FILE + 1).read_to_end(&mut buf)?;
    if buf.len() as u64 > MAX_RULE_FILE {
        return Err(std::io::Error::other(format!(
            "rule file larger than {MAX_RULE_FILE} bytes"
        )));
    }
    String::from_utf8(buf).map_err(|_| std::io::Error::other("rule file is not valid UTF-8"))
}

/// A namespace not yet taken (two configured directories may hold files with
/// the same relative name).
fn unique_namespace(taken: &[RuleFile], wanted: String) -> String {
    let used = |n: &str| taken.iter().any(|f| f.namespace == n);
    if !used(&wanted) {
        return wanted;
    }
    (2..)
        .map(|i| format!("{wanted}#{i}"))
        .find(|n| !used(n))
        .unwrap_or(wanted)
}

fn signature_version(files: &[&RuleFile]) -> String {
    let mut sorted: Vec<&RuleFile> = files.to_vec();
    sorted.sort_by(|a, b| a.path.cmp(&b.path));
    let mut h = Sha256::new();
    for f in sorted {
        let p = f.path.to_string_lossy();
        h.update((p.len() as u64).to_le_bytes());
        h.update(p.as_bytes());
        h.update((f.source.len() as u64).to_le_bytes());
        h.update(f.source.as_bytes());
    }
    hex::encode(&h.finalize()[..6])
}
