//! Finding, reading and compiling rule files, one compilation unit per file.

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

/// A rule file that compiled on its own.
pub(crate) struct RuleFile {
    pub path: PathBuf,
    pub namespace: String,
    pub source: String,
}

/// The outcome of loading: the compiled set and what went wrong on the way.
pub(crate) struct Loaded {
    pub rules: yara_x::Rules,
    pub files: Vec<RuleFile>,
    pub errors: Vec<String>,
    /// Short hex SHA-256 over the sorted (path, content) of the good files.
    pub signature_version: String,
}

/// Declare the external variables (see [`crate::EXTERNALS`]) with empty defaults.
pub(crate) fn define_externals(c: &mut Compiler<'_>) -> Result<(), yara_x::errors::VariableError> {
    for name in crate::EXTERNALS {
        c.define_global(name, "")?;
    }
    Ok(())
}

pub(crate) fn load(paths: &[PathBuf]) -> Result<Loaded, LoadError> {
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

    let mut files = Vec::new();
    let mut read_failures = 0usize;
    let mut read_ok = 0usize;
    let mut first_failure = None;
    for (path, ns) in candidates {
        let source = match read_bounded(&path) {
            Ok(s) => {
                read_ok += 1;
                s
            }
            Err(e) => {
                read_failures += 1;
                let msg = format!("{}: {e}", path.display());
                first_failure.get_or_insert_with(|| msg.clone());
                errors.push(msg);
                continue;
            }
        };
        match validate(&path, &source) {
            Ok(()) => files.push(RuleFile {
                path,
                namespace: unique_namespace(&files, ns),
                source,
            }),
            Err(msg) => {
                tracing::warn!(path = %path.display(), error = %msg, "yara rule file rejected");
                errors.push(msg);
            }
        }
    }
    if read_ok == 0
        && read_failures > 0
        && let Some(first) = first_failure
    {
        return Err(LoadError::NothingReadable {
            failed: read_failures,
            first,
        });
    }

    let mut compiler = Compiler::new();
    if let Err(e) = define_externals(&mut compiler) {
        errors.push(format!("defining external variables: {e}"));
    }
    let mut good = Vec::with_capacity(files.len());
    for f in files {
        compiler.new_namespace(&f.namespace);
        match compiler.add_source(SourceCode::from(f.source.as_str()).with_origin(origin(&f.path)))
        {
            Ok(_) => good.push(f),
            // Compiled alone but not together: should not happen, never hidden.
            Err(e) => errors.push(format!("{}: {e}", f.path.display())),
        }
    }
    let rules = compiler.build();
    let signature_version = signature_version(&good);
    errors.truncate(MAX_LOAD_ERRORS);
    Ok(Loaded {
        rules,
        files: good,
        errors,
        signature_version,
    })
}

/// Compile one file alone; the error message names the file.
fn validate(path: &Path, source: &str) -> Result<(), String> {
    let mut c = Compiler::new();
    define_externals(&mut c).map_err(|e| format!("{}: {e}", path.display()))?;
    c.add_source(SourceCode::from(source).with_origin(origin(path)))
        .map(|_| ())
        .map_err(|e| format!("{}: {e}", path.display()))
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

fn signature_version(files: &[RuleFile]) -> String {
    let mut sorted: Vec<&RuleFile> = files.iter().collect();
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
