//! Entries of the on-disk caches of compiled signature sets (YARA rules,
//! the builtin engine's compiled ClamAV set): naming, integrity and atomic
//! replacement. What an entry's body holds is the caller's business.
//!
//! An entry is named `<set>-<content>.<ext>`: `<set>` identifies the
//! configured set (its paths), `<content>` everything the compiled form
//! depends on. Writing a set's entry removes that set's older entries, so
//! a changed file leaves one entry behind, not one per version; and a
//! directory keeps at most [`MAX_ENTRIES`] entries of a kind, the least
//! recently used removed first (a hit refreshes its entry's modification
//! time), so that sets loaded from ever new paths (temporary directories)
//! do not fill the disk.
//!
//! An entry is the caller's 8-byte magic, the body's length and CRC-32, then
//! the body. A body whose length or checksum does not match (truncated,
//! corrupt) is removed and reported as [`CacheError::Corrupt`]; the caller
//! compiles again. A checksum, not a cryptographic digest: it guards
//! against damage, not tampering, and SHA-256 was a third of reading a
//! 500 MB entry (BENCHMARKS.md, "Compiled-set cache").
//! Entries are written to a temporary file (mode 0600) and renamed into
//! place, so readers never see a partial entry (not synced: an entry a
//! crash tore fails its checksum). The directory is created 0700: the
//! checksum detects corruption, not tampering, so a directory or entry
//! that another user owns, or that its group or others may write, is not
//! used ([`CacheError::Untrusted`]; the caller compiles), as ssh refuses
//! a key file others can write.

use sha2::{Digest, Sha256};
use std::fs::{self, File, OpenOptions};
use std::io::{Read, Write};
use std::os::unix::fs::{DirBuilderExt, OpenOptionsExt};
use std::path::{Path, PathBuf};
use std::time::{SystemTime, UNIX_EPOCH};

/// Most entries of one kind kept in a directory.
pub const MAX_ENTRIES: usize = 16;

/// How a load's compiled set was obtained.
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
    /// Compiled; not written, because reading the entry would cost about
    /// what the compile did (a set made mostly of hashes, at ClamAV's scale).
    NotWorth,
}

impl CacheOutcome {
    pub fn as_str(self) -> &'static str {
        match self {
            CacheOutcome::Off => "off",
            CacheOutcome::Hit => "hit",
            CacheOutcome::Stored => "stored",
            CacheOutcome::Failed => "failed",
            CacheOutcome::NotWorth => "not-worth",
        }
    }
}

#[derive(Debug, thiserror::Error)]
pub enum CacheError {
    #[error("{path}: {source}")]
    Io {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("{path}: corrupt cache entry ({why}), removed")]
    Corrupt { path: PathBuf, why: String },
    #[error("{path}: not used as a cache: {why}")]
    Untrusted { path: PathBuf, why: String },
}

/// `meta` (of a cache directory or entry) may be trusted: owned by this
/// process' user (or root) and writable by no one else.
fn trusted(path: &Path, meta: &fs::Metadata) -> Result<(), CacheError> {
    use std::os::unix::fs::MetadataExt;
    let me = rustix::process::geteuid().as_raw();
    let why = if meta.uid() != me && meta.uid() != 0 {
        format!("owned by uid {}, moat runs as uid {me}", meta.uid())
    } else if meta.mode() & 0o022 != 0 {
        format!(
            "its group or others may write it (mode {:o})",
            meta.mode() & 0o777
        )
    } else {
        return Ok(());
    };
    Err(CacheError::Untrusted {
        path: path.to_path_buf(),
        why,
    })
}

/// The cache directory `dir`, checked by [`trusted`]; `Ok(false)` when it
/// does not exist.
fn trusted_dir(dir: &Path) -> Result<bool, CacheError> {
    match fs::metadata(dir) {
        Ok(m) => trusted(dir, &m).map(|()| true),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(false),
        Err(source) => Err(CacheError::Io {
            path: dir.to_path_buf(),
            source,
        }),
    }
}

/// One kind of entry: its magic and file extension.
#[derive(Debug, Clone, Copy)]
pub struct Kind {
    pub magic: &'static [u8; 8],
    pub ext: &'static str,
    /// Largest entry read, in bytes.
    pub max_entry: u64,
}

/// The name of one set's entry in one state.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Key {
    set: String,
    content: String,
}

impl Key {
    /// A key from the digests of the set's identity and of its content.
    pub fn new(set: Sha256, content: Sha256) -> Key {
        Key {
            set: hex::encode(&set.finalize()[..8]),
            content: hex::encode(&content.finalize()[..16]),
        }
    }

    fn file_name(&self, kind: &Kind) -> String {
        format!("{}-{}.{}", self.set, self.content, kind.ext)
    }
}

/// Add a length-prefixed field to a key's digest (so that fields cannot run
/// into each other).
pub fn field(h: &mut Sha256, bytes: &[u8]) {
    h.update((bytes.len() as u64).to_le_bytes());
    h.update(bytes);
}

/// An entry read back, its magic and digest checked.
#[derive(Debug)]
pub struct Entry {
    buf: Vec<u8>,
}

impl Entry {
    /// The body the entry was written with.
    pub fn body(&self) -> &[u8] {
        &self.buf
    }
}

/// The entry for `key`, read whole; `Ok(None)` when there is none.
pub fn read(dir: &Path, kind: &Kind, key: &Key) -> Result<Option<Entry>, CacheError> {
    read_with(dir, kind, key, |r, len| {
        // `len` is the body's checked length (at most max_entry).
        let mut buf = Vec::with_capacity(usize::try_from(len).map_err(|e| e.to_string())?);
        #[allow(clippy::disallowed_methods)]
        // `r` is bounded by the entry's length (at most max_entry)
        r.read_to_end(&mut buf).map_err(|e| e.to_string())?;
        Ok(Entry { buf })
    })
}

/// The entry for `key` as `decode` makes it from the body, read as a
/// stream (never whole in memory); `Ok(None)` when there is none. The
/// checksum is checked once the whole body is read: an entry whose length
/// or checksum does not match, or that `decode` refuses, is removed and
/// reported as corrupt, and what `decode` made of it is dropped. `decode`
/// is given the body's length (checked against the file's, and at most
/// the kind's `max_entry`), so it can size its buffers once.
pub fn read_with<T>(
    dir: &Path,
    kind: &Kind,
    key: &Key,
    decode: impl FnOnce(&mut dyn Read, u64) -> Result<T, String>,
) -> Result<Option<T>, CacheError> {
    if !trusted_dir(dir)? {
        return Ok(None);
    }
    let path = dir.join(key.file_name(kind));
    let io = |source| CacheError::Io {
        path: path.clone(),
        source,
    };
    let mut file = match File::open(&path) {
        Ok(f) => f,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
        Err(e) => return Err(io(e)),
    };
    let meta = file.metadata().map_err(io)?;
    trusted(&path, &meta)?;
    let len = meta.len();
    if len > kind.max_entry {
        return Err(corrupt(path, "larger than the limit".into()));
    }
    let mut head = [0u8; HEADER];
    if file.read_exact(&mut head).is_err() {
        return Err(corrupt(path, "truncated header".into()));
    }
    if head[..8] != kind.magic[..] {
        return Err(corrupt(path, "not an entry of this cache".into()));
    }
    let (crc, body_len) = header_fields(&head);
    if body_len != len - HEADER as u64 {
        return Err(corrupt(path, "length mismatch (truncated)".into()));
    }
    let mut r = Hashing {
        inner: std::io::BufReader::with_capacity(1 << 16, file.take(body_len)),
        hash: crc32fast::Hasher::new(),
    };
    let decoded = decode(&mut r, body_len);
    // The rest of the body counts for the checksum too.
    let rest = std::io::copy(&mut r, &mut std::io::sink());
    if rest.is_err() || r.hash.finalize() != crc {
        return Err(corrupt(path, "checksum mismatch".into()));
    }
    match decoded {
        Ok(v) => {
            // Most recently used: kept longest by `prune`.
            if let Ok(f) = OpenOptions::new().write(true).open(&path) {
                let _ = f.set_modified(SystemTime::now());
            }
            Ok(Some(v))
        }
        Err(why) => Err(corrupt(path, why)),
    }
}

/// Magic, CRC-32 of the body (little-endian), body length (little-endian).
const HEADER: usize = 8 + 4 + 8;

fn header_fields(head: &[u8; HEADER]) -> (u32, u64) {
    let mut crc = [0u8; 4];
    crc.copy_from_slice(&head[8..12]);
    let mut len = [0u8; 8];
    len.copy_from_slice(&head[12..20]);
    (u32::from_le_bytes(crc), u64::from_le_bytes(len))
}

/// A reader or writer that checksums what passes through it.
struct Hashing<T> {
    inner: T,
    hash: crc32fast::Hasher,
}

impl<R: Read> Read for Hashing<R> {
    fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
        let n = self.inner.read(buf)?;
        self.hash.update(&buf[..n]);
        Ok(n)
    }
}

impl<W: Write> Write for Hashing<W> {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        let n = self.inner.write(buf)?;
        self.hash.update(&buf[..n]);
        Ok(n)
    }

    fn flush(&mut self) -> std::io::Result<()> {
        self.inner.flush()
    }
}

/// Remove the entry at `dir`/`key` whose body the caller could not decode.
pub fn discard(dir: &Path, kind: &Kind, key: &Key, why: String) -> CacheError {
    corrupt(dir.join(key.file_name(kind)), why)
}

fn corrupt(path: PathBuf, why: String) -> CacheError {
    let _ = fs::remove_file(&path);
    CacheError::Corrupt { path, why }
}

/// Write the entry for `key` atomically (temporary file, mode 0600,
/// renamed), then remove the older entries of the same set.
pub fn write(dir: &Path, kind: &Kind, key: &Key, body: &[u8]) -> Result<(), CacheError> {
    write_with(dir, kind, key, |w| w.write_all(body))
}

/// [`write`] with the body written by `encode` as a stream.
pub fn write_with(
    dir: &Path,
    kind: &Kind,
    key: &Key,
    encode: impl FnOnce(&mut dyn Write) -> std::io::Result<()>,
) -> Result<(), CacheError> {
    let io = |path: &Path| {
        let path = path.to_path_buf();
        move |source| CacheError::Io { path, source }
    };
    fs::DirBuilder::new()
        .recursive(true)
        .mode(0o700)
        .create(dir)
        .map_err(io(dir))?;
    trusted_dir(dir)?;
    let name = key.file_name(kind);
    let final_path = dir.join(&name);
    let nanos = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.subsec_nanos())
        .unwrap_or(0);
    let tmp = dir.join(format!(".{name}.{}.{nanos}.tmp", std::process::id()));
    let result = (|| {
        use std::io::{Seek, SeekFrom};
        let mut f = OpenOptions::new()
            .write(true)
            .create_new(true)
            .mode(0o600)
            .open(&tmp)?;
        f.write_all(&[0u8; HEADER])?;
        let mut w = Hashing {
            inner: std::io::BufWriter::with_capacity(1 << 16, f),
            hash: crc32fast::Hasher::new(),
        };
        encode(&mut w)?;
        let crc = w.hash.finalize();
        let mut f = w.inner.into_inner().map_err(|e| e.into_error())?;
        let body_len = f.stream_position()? - HEADER as u64;
        f.seek(SeekFrom::Start(0))?;
        f.write_all(kind.magic)?;
        f.write_all(&crc.to_le_bytes())?;
        f.write_all(&body_len.to_le_bytes())?;
        // No fsync: an entry torn by a crash fails its checksum and is
        // compiled again, and syncing cost a cold `moat scan` more than
        // its whole compile (BENCHMARKS.md, "Compiled-set cache").
        fs::rename(&tmp, &final_path)
    })();
    if let Err(e) = result {
        let _ = fs::remove_file(&tmp);
        return Err(io(&final_path)(e));
    }
    prune(dir, kind, key);
    Ok(())
}

/// Remove the entries of `key`'s set other than `key`'s own, then the
/// least recently used entries of the kind beyond [`MAX_ENTRIES`].
fn prune(dir: &Path, kind: &Kind, key: &Key) {
    let Ok(entries) = fs::read_dir(dir) else {
        return;
    };
    let keep = key.file_name(kind);
    let prefix = format!("{}-", key.set);
    let suffix = format!(".{}", kind.ext);
    let remove = |path: &Path, why: &str| match fs::remove_file(path) {
        Ok(()) => tracing::debug!(entry = %path.display(), why, "cache entry removed"),
        Err(err) => {
            tracing::warn!(entry = %path.display(), error = %err, why, "cache entry not removed")
        }
    };
    let mut others = Vec::new();
    for e in entries.flatten() {
        let name = e.file_name();
        let Some(name) = name.to_str() else { continue };
        if name == keep || !name.ends_with(&suffix) || name.starts_with('.') {
            continue;
        }
        if name.starts_with(&prefix) {
            remove(&e.path(), "older version of the set");
        } else {
            let used = e
                .metadata()
                .and_then(|m| m.modified())
                .unwrap_or(UNIX_EPOCH);
            others.push((used, e.path()));
        }
    }
    if others.len() >= MAX_ENTRIES {
        others.sort();
        let excess = others.len() + 1 - MAX_ENTRIES;
        for (_, path) in others.iter().take(excess) {
            remove(path, "least recently used");
        }
    }
}

/// The default cache directory `sub` of commands other than `moat serve`:
/// `$XDG_CACHE_HOME/moat/<sub>`, else `~/.cache/moat/<sub>`; `None` when
/// neither variable is set (caching is then off).
pub fn default_dir(sub: &str) -> Option<PathBuf> {
    let base = std::env::var_os("XDG_CACHE_HOME")
        .map(PathBuf::from)
        .filter(|p| p.is_absolute())
        .or_else(|| {
            std::env::var_os("HOME")
                .map(PathBuf::from)
                .filter(|p| p.is_absolute())
                .map(|h| h.join(".cache"))
        })?;
    Some(base.join("moat").join(sub))
}

#[cfg(test)]
mod tests {
    use super::*;

    const KIND: Kind = Kind {
        magic: b"MOATTST1",
        ext: "tst",
        max_entry: 1 << 20,
    };

    fn key(set: &str, content: &str) -> Key {
        let (mut s, mut c) = (Sha256::new(), Sha256::new());
        field(&mut s, set.as_bytes());
        field(&mut c, content.as_bytes());
        Key::new(s, c)
    }

    #[test]
    fn an_entry_reads_back_and_a_new_version_replaces_the_old_one() {
        let dir = tempfile::tempdir().unwrap();
        let d = dir.path().join("c");
        let (k1, k2) = (key("set", "v1"), key("set", "v2"));
        assert!(read(&d, &KIND, &k1).unwrap().is_none());
        write(&d, &KIND, &k1, b"first").unwrap();
        write(&d, &KIND, &key("other", "v1"), b"other").unwrap();
        assert_eq!(read(&d, &KIND, &k1).unwrap().unwrap().body(), b"first");
        write(&d, &KIND, &k2, b"second").unwrap();
        assert!(
            read(&d, &KIND, &k1).unwrap().is_none(),
            "old version pruned"
        );
        assert_eq!(read(&d, &KIND, &k2).unwrap().unwrap().body(), b"second");
        assert_eq!(
            read(&d, &KIND, &key("other", "v1"))
                .unwrap()
                .unwrap()
                .body(),
            b"other",
            "another set's entry is kept"
        );
        use std::os::unix::fs::PermissionsExt;
        assert_eq!(
            fs::metadata(&d).unwrap().permissions().mode() & 0o777,
            0o700
        );
        let f = d.join(k2.file_name(&KIND));
        assert_eq!(
            fs::metadata(&f).unwrap().permissions().mode() & 0o777,
            0o600
        );
    }

    #[test]
    fn a_directory_keeps_the_most_recently_used_entries() {
        let dir = tempfile::tempdir().unwrap();
        let d = dir.path();
        let first = key("set-0", "v");
        write(d, &KIND, &first, b"0").unwrap();
        for i in 1..MAX_ENTRIES {
            write(d, &KIND, &key(&format!("set-{i}"), "v"), b"x").unwrap();
        }
        // Set 1 is now the least recently used: set 0 was just read.
        let old = SystemTime::now() - std::time::Duration::from_secs(3600);
        for i in 0..MAX_ENTRIES {
            let f = d.join(key(&format!("set-{i}"), "v").file_name(&KIND));
            File::options()
                .write(true)
                .open(f)
                .unwrap()
                .set_modified(old)
                .unwrap();
        }
        assert!(read(d, &KIND, &first).unwrap().is_some());
        write(d, &KIND, &key("set-new", "v"), b"n").unwrap();
        assert_eq!(fs::read_dir(d).unwrap().count(), MAX_ENTRIES);
        assert!(
            read(d, &KIND, &first).unwrap().is_some(),
            "recently used: kept"
        );
        assert!(read(d, &KIND, &key("set-new", "v")).unwrap().is_some());
        let gone = (1..MAX_ENTRIES)
            .filter(|i| {
                read(d, &KIND, &key(&format!("set-{i}"), "v"))
                    .unwrap()
                    .is_none()
            })
            .count();
        assert_eq!(gone, 1);
    }

    #[test]
    fn a_corrupt_entry_is_reported_and_removed() {
        let dir = tempfile::tempdir().unwrap();
        let k = key("set", "v1");
        write(dir.path(), &KIND, &k, b"some body bytes").unwrap();
        let f = dir.path().join(k.file_name(&KIND));
        #[allow(clippy::disallowed_methods)] // the test's own small entry
        let mut bytes = fs::read(&f).unwrap();
        let last = bytes.len() - 1;
        bytes[last] ^= 1;
        fs::write(&f, &bytes).unwrap();
        assert!(matches!(
            read(dir.path(), &KIND, &k),
            Err(CacheError::Corrupt { .. })
        ));
        assert!(!f.exists());
        assert!(read(dir.path(), &KIND, &k).unwrap().is_none());
    }

    #[test]
    fn a_directory_or_entry_others_may_write_is_not_used() {
        use std::os::unix::fs::PermissionsExt;
        let dir = tempfile::tempdir().unwrap();
        let d = dir.path().join("c");
        let k = key("set", "v1");
        write(&d, &KIND, &k, b"body").unwrap();
        // An entry another user could have replaced: not read, not removed.
        let f = d.join(k.file_name(&KIND));
        fs::set_permissions(&f, fs::Permissions::from_mode(0o622)).unwrap();
        assert!(matches!(
            read(&d, &KIND, &k),
            Err(CacheError::Untrusted { .. })
        ));
        assert!(f.exists());
        fs::set_permissions(&f, fs::Permissions::from_mode(0o600)).unwrap();
        assert!(read(&d, &KIND, &k).unwrap().is_some());
        // A directory others may write: neither read nor written.
        fs::set_permissions(&d, fs::Permissions::from_mode(0o777)).unwrap();
        assert!(matches!(
            read(&d, &KIND, &k),
            Err(CacheError::Untrusted { .. })
        ));
        assert!(matches!(
            write(&d, &KIND, &key("set", "v2"), b"new"),
            Err(CacheError::Untrusted { .. })
        ));
        assert_eq!(fs::read_dir(&d).unwrap().count(), 1, "nothing written");
    }
}
