//! The on-disk cache of compiled rule sets.
//!
//! One entry per configured rule set, named `<set>-<content>.yarc`: `<set>`
//! hashes the configured paths, `<content>` hashes everything the compiled
//! rules depend on (each file's path, namespace and SHA-256 of its content,
//! the external variables, the yara-x version and modules, the CPU
//! architecture, this crate's version). A changed rule file gives a new
//! content key: the entry is compiled and written again, and the older entries
//! of the same set are removed.
//!
//! An entry is `MAGIC`, the SHA-256 of the body, then the body: the number of
//! files in the set, the per-file load errors, the signature version and the
//! serialized yara-x rules (with their machine code). A body whose digest does
//! not match (truncated, corrupt) is removed and the set compiled again.
//! Entries are written to a temporary file (mode 0600) and renamed into place,
//! so readers never see a partial entry.
//!
//! Trust: an entry holds machine code that yara-x maps and runs, so the cache
//! directory must be writable only by moat's user (it is created 0700, entries
//! 0600). The digest detects corruption, not tampering.

use crate::load::RuleFile;
use sha2::{Digest, Sha256};
use std::fs::{self, File, OpenOptions};
use std::io::{Read, Write};
use std::os::unix::fs::{DirBuilderExt, OpenOptionsExt};
use std::path::{Path, PathBuf};
use std::time::{SystemTime, UNIX_EPOCH};

const MAGIC: &[u8; 8] = b"MOATYRC1";
const EXT: &str = "yarc";
/// Largest cache entry read, in bytes.
const MAX_ENTRY: u64 = 4 << 30;
/// Compile-time choices that change the compiled rules.
const BUILD: &str =
    "modules=console,dotnet,elf,hash,lnk,macho,math,pe,string,time;relaxed_re;native-code";

/// How the compiled set of a load was obtained.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CacheOutcome {
    /// No cache directory configured: compiled.
    Off,
    /// Read from the cache: nothing compiled.
    Hit,
    /// Compiled and written to the cache.
    Stored,
    /// Compiled; writing the cache failed (logged).
    Failed,
}

impl CacheOutcome {
    pub fn as_str(self) -> &'static str {
        match self {
            CacheOutcome::Off => "off",
            CacheOutcome::Hit => "hit",
            CacheOutcome::Stored => "stored",
            CacheOutcome::Failed => "failed",
        }
    }
}

#[derive(Debug, thiserror::Error)]
pub(crate) enum CacheError {
    #[error("{path}: {source}")]
    Io {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("{path}: corrupt cache entry ({why}), removed")]
    Corrupt { path: PathBuf, why: String },
}

/// The cache file name of one rule set in one state.
pub(crate) struct Key {
    set: String,
    content: String,
}

impl Key {
    pub fn new(roots: &[PathBuf], files: &[RuleFile]) -> Key {
        let mut s = Sha256::new();
        for r in roots {
            field(&mut s, r.to_string_lossy().as_bytes());
        }
        let mut c = Sha256::new();
        field(&mut c, env!("CARGO_PKG_VERSION").as_bytes());
        field(&mut c, yara_x::VERSION.as_bytes());
        field(&mut c, std::env::consts::ARCH.as_bytes());
        field(&mut c, std::env::consts::OS.as_bytes());
        field(&mut c, BUILD.as_bytes());
        for e in crate::EXTERNALS {
            field(&mut c, e.as_bytes());
        }
        for f in files {
            field(&mut c, f.path.to_string_lossy().as_bytes());
            field(&mut c, f.namespace.as_bytes());
            c.update(Sha256::digest(f.source.as_bytes()));
        }
        Key {
            set: hex::encode(&s.finalize()[..8]),
            content: hex::encode(&c.finalize()[..16]),
        }
    }

    fn file_name(&self) -> String {
        format!("{}-{}.{EXT}", self.set, self.content)
    }
}

fn field(h: &mut Sha256, bytes: &[u8]) {
    h.update((bytes.len() as u64).to_le_bytes());
    h.update(bytes);
}

/// A compiled rule set and what its load reported.
pub(crate) struct Cached {
    pub rules: yara_x::Rules,
    pub files: usize,
    pub errors: Vec<String>,
    pub signature_version: String,
}

/// The entry for `key`, `Ok(None)` when there is none.
pub(crate) fn read(dir: &Path, key: &Key) -> Result<Option<Cached>, CacheError> {
    let path = dir.join(key.file_name());
    let io = |source| CacheError::Io {
        path: path.clone(),
        source,
    };
    let file = match File::open(&path) {
        Ok(f) => f,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
        Err(e) => return Err(io(e)),
    };
    let mut buf = Vec::new();
    #[allow(clippy::disallowed_methods)] // bounded by take(MAX_ENTRY + 1)
    file.take(MAX_ENTRY + 1).read_to_end(&mut buf).map_err(io)?;
    match decode(&buf) {
        Ok(c) => Ok(Some(c)),
        Err(why) => {
            let _ = fs::remove_file(&path);
            Err(CacheError::Corrupt { path, why })
        }
    }
}

fn decode(buf: &[u8]) -> Result<Cached, String> {
    if buf.len() as u64 > MAX_ENTRY {
        return Err("larger than the limit".into());
    }
    let body = buf
        .strip_prefix(MAGIC.as_slice())
        .ok_or("not a moat yara cache entry")?;
    let (digest, body) = body.split_at_checked(32).ok_or("truncated header")?;
    if Sha256::digest(body).as_slice() != digest {
        return Err("digest mismatch".into());
    }
    let mut r = Reader(body);
    let files = r.u32()? as usize;
    let n_errors = r.u32()?;
    let mut errors = Vec::new();
    for _ in 0..n_errors {
        errors.push(r.string()?);
    }
    let signature_version = r.string()?;
    let bytes = r.0;
    // Rules::deserialize validates its indices; a panic in it is still a
    // corrupt entry, never a crash of the loader.
    let rules = std::panic::catch_unwind(|| yara_x::Rules::deserialize(bytes))
        .map_err(|_| "yara-x panicked deserializing".to_string())?
        .map_err(|e| format!("yara-x: {e}"))?;
    Ok(Cached {
        rules,
        files,
        errors,
        signature_version,
    })
}

struct Reader<'a>(&'a [u8]);

impl Reader<'_> {
    fn u32(&mut self) -> Result<u32, String> {
        let (n, rest) = self.0.split_first_chunk::<4>().ok_or("truncated body")?;
        self.0 = rest;
        Ok(u32::from_le_bytes(*n))
    }

    fn string(&mut self) -> Result<String, String> {
        let len = self.u32()? as usize;
        let (s, rest) = self.0.split_at_checked(len).ok_or("truncated string")?;
        self.0 = rest;
        String::from_utf8(s.to_vec()).map_err(|_| "string not UTF-8".to_string())
    }
}

fn put_string(out: &mut Vec<u8>, s: &str) {
    let s = &s.as_bytes()[..s.len().min(u32::MAX as usize)];
    out.extend_from_slice(&(s.len() as u32).to_le_bytes());
    out.extend_from_slice(s);
}

/// Write the entry for `key` atomically (temporary file, mode 0600, renamed),
/// then remove the older entries of the same rule set.
pub(crate) fn write(dir: &Path, key: &Key, entry: &Cached) -> Result<(), CacheError> {
    let io = |path: &Path| {
        let path = path.to_path_buf();
        move |source| CacheError::Io { path, source }
    };
    fs::DirBuilder::new()
        .recursive(true)
        .mode(0o700)
        .create(dir)
        .map_err(io(dir))?;
    let rules = entry.rules.serialize().map_err(|e| CacheError::Io {
        path: dir.to_path_buf(),
        source: std::io::Error::other(format!("serializing the rules: {e}")),
    })?;
    let mut body = Vec::with_capacity(rules.len() + 4096);
    body.extend_from_slice(&(entry.files.min(u32::MAX as usize) as u32).to_le_bytes());
    let n_errors = entry.errors.len().min(u32::MAX as usize);
    body.extend_from_slice(&(n_errors as u32).to_le_bytes());
    for e in &entry.errors[..n_errors] {
        put_string(&mut body, e);
    }
    put_string(&mut body, &entry.signature_version);
    body.extend_from_slice(&rules);
    drop(rules);

    let name = key.file_name();
    let final_path = dir.join(&name);
    let nanos = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.subsec_nanos())
        .unwrap_or(0);
    let tmp = dir.join(format!(".{name}.{}.{nanos}.tmp", std::process::id()));
    let result = (|| {
        let mut f = OpenOptions::new()
            .write(true)
            .create_new(true)
            .mode(0o600)
            .open(&tmp)?;
        f.write_all(MAGIC)?;
        f.write_all(&Sha256::digest(&body))?;
        f.write_all(&body)?;
        f.sync_data()?;
        fs::rename(&tmp, &final_path)
    })();
    if let Err(e) = result {
        let _ = fs::remove_file(&tmp);
        return Err(io(&final_path)(e));
    }
    prune(dir, key);
    Ok(())
}

/// Remove the entries of `key`'s rule set other than `key`'s own.
fn prune(dir: &Path, key: &Key) {
    let Ok(entries) = fs::read_dir(dir) else {
        return;
    };
    let keep = key.file_name();
    let prefix = format!("{}-", key.set);
    for e in entries.flatten() {
        let name = e.file_name();
        let Some(name) = name.to_str() else { continue };
        if name != keep && name.starts_with(&prefix) && name.ends_with(EXT) {
            match fs::remove_file(e.path()) {
                Ok(()) => tracing::debug!(entry = name, "stale yara cache entry removed"),
                Err(err) => {
                    tracing::warn!(entry = name, error = %err, "stale yara cache entry not removed")
                }
            }
        }
    }
}

/// The default cache directory of commands other than `moat serve`:
/// `$XDG_CACHE_HOME/moat/yara`, else `~/.cache/moat/yara`; `None` when neither
/// variable is set (caching is then off).
pub fn default_cache_dir() -> Option<PathBuf> {
    let base = std::env::var_os("XDG_CACHE_HOME")
        .map(PathBuf::from)
        .filter(|p| p.is_absolute())
        .or_else(|| {
            std::env::var_os("HOME")
                .map(PathBuf::from)
                .filter(|p| p.is_absolute())
                .map(|h| h.join(".cache"))
        })?;
    Some(base.join("moat").join("yara"))
}
