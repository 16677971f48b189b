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
//! An entry ([`moat_core::disk_cache`]: magic, checksum, atomic replacement)
//! holds the number of files in the set, the per-file load errors, the
//! signature version and the serialized yara-x rules (with their machine
//! code). A corrupt entry is removed and the set compiled again.
//!
//! Trust: an entry holds machine code that yara-x maps and runs, so the cache
//! directory must be writable only by moat's user (it is created 0700, entries
//! 0600). The checksum detects corruption, not tampering.

use crate::load::RuleFile;
pub use moat_core::disk_cache::CacheOutcome;
use moat_core::disk_cache::{self, CacheError, Kind, field};
use sha2::{Digest, Sha256};
use std::path::{Path, PathBuf};

const KIND: Kind = Kind {
    magic: b"MOATYRC2",
    ext: "yarc",
    max_entry: 4 << 30,
};
/// Compile-time choices that change the compiled rules.
const BUILD: &str =
    "modules=console,dotnet,elf,hash,lnk,macho,math,pe,string,time;relaxed_re;native-code";

/// The cache key of one rule set in one state.
pub(crate) struct Key(disk_cache::Key);

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
        Key(disk_cache::Key::new(s, c))
    }
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
    let Some(entry) = disk_cache::read(dir, &KIND, &key.0)? else {
        return Ok(None);
    };
    match decode(entry.body()) {
        Ok(c) => Ok(Some(c)),
        Err(why) => Err(disk_cache::discard(dir, &KIND, &key.0, why)),
    }
}

fn decode(body: &[u8]) -> Result<Cached, String> {
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

    disk_cache::write(dir, &KIND, &key.0, &body)
}

/// The default cache directory of commands other than `moat serve`:
/// `$XDG_CACHE_HOME/moat/yara`, else `~/.cache/moat/yara`; `None` when neither
/// variable is set (caching is then off).
pub fn default_cache_dir() -> Option<PathBuf> {
    disk_cache::default_dir("yara")
}
