//! Reading signature files, directories and containers into one set.
//!
//! Files are split into blocks of [`BLOCK`] bytes ([`BODY_BLOCK`] for body
//! signatures) that are parsed in parallel (rayon); a block owns the lines
//! that start inside it. Each block
//! produces compact results (hash entries, compiled body signatures, names in
//! its own arena, errors with block-local line numbers) that are merged in
//! order, which also turns local line numbers into file line numbers.
//!
//! Only a path that does not exist or cannot be read is fatal
//! ([`LoadError`]). A malformed line is reported (file and line) and skipped;
//! a broken container is reported and whatever was read from it is kept.

use crate::allow::IgnSet;
use crate::cvd;
use crate::hashdb::{
    Buckets, HashBuckets, HashEntry, HashFile, HashKind, HashRuns, HashVecs, Mask, Run, freeze_run,
    parse_hash_bytes,
};
use crate::ldb::{self, CompiledLdb};
use crate::names::NameArena;
use crate::ndb::{self, CompiledSig, NdbLineError, parse_ndb_bytes};
use moat_core::Blob;
use rayon::prelude::*;
use sha2::{Digest, Sha256};
use std::collections::{BTreeMap, HashMap};
use std::path::{Path, PathBuf};
use std::sync::Arc;

mod delta;

/// Bytes per parse block of a hash file (one sorted run per block).
const BLOCK: u64 = 4 << 20;
/// Bytes per parse block of a body or logical signature file: compiling
/// those costs about a hundred times more per byte than parsing hashes, so
/// a file of a few megabytes (ClamAV's `.ndb` and `.ldb` are 1-10 MB) is
/// still split across every core.
const BODY_BLOCK: u64 = 256 << 10;
/// Longest line accepted.
const MAX_LINE: usize = 16 << 20;
/// Error messages kept (the total is counted).
pub(crate) const MAX_ERRORS: usize = 100;
/// Largest `.ign`/`.ign2` file read.
const MAX_IGN_FILE: u64 = 256 << 20;

/// How a signature set is loaded (the builtin engine's options).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LoadOptions {
    /// Load the PUA databases (`.hdu`, `.hsu`, `.ndu`, `.ldu`, `.mdu`,
    /// `.msu`). Off by default, as in ClamAV; skipped ones are counted in
    /// [`moat_core::EngineInfo::skipped`].
    pub detect_pua: bool,
    /// Refuse a `.cvd`/`.cld` whose digital signatures do not verify with
    /// ClamAV's published keys. On by default.
    pub verify_signatures: bool,
    /// The keys `.cvd`/`.cld` signatures are checked with; `None` is
    /// ClamAV's published keys.
    pub public_keys: Option<std::sync::Arc<crate::dsig::Keys>>,
    /// Report every signature that matches an object (`clamscan
    /// --allmatch`, clamd's `ALLMATCHSCAN`); off, a scan stops at the
    /// object's first detection and reports that one name, as clamscan and
    /// clamd do by default (same verdict, much less work on infected
    /// objects). On in this library default (tests and the updater's test
    /// load see every match); the product's engine configuration defaults
    /// to first-match.
    pub all_match: bool,
    /// Keep the compiled set in this directory and read it from there when
    /// the same files are loaded again (see `cache`); a reload that shares
    /// parts with the running engine does not use it. `None`: no cache.
    pub cache_dir: Option<PathBuf>,
}

impl Default for LoadOptions {
    fn default() -> Self {
        LoadOptions {
            detect_pua: false,
            verify_signatures: true,
            public_keys: None,
            all_match: true,
            cache_dir: None,
        }
    }
}

/// A fatal load problem: the signature set was not loaded.
#[derive(Debug, thiserror::Error)]
pub enum LoadError {
    #[error("cannot read signature path {path}: {source}")]
    Io {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("signature path {0} is neither a file nor a directory")]
    NotFileOrDir(PathBuf),
    #[error(
        "signature database {path} failed verification and is refused: {reason} \
         (set verify_signatures = false to load unsigned or modified databases)"
    )]
    Verification { path: PathBuf, reason: String },
}

fn io_err(path: &Path) -> impl FnOnce(std::io::Error) -> LoadError + '_ {
    move |source| LoadError::Io {
        path: path.to_path_buf(),
        source,
    }
}

/// What a signature file holds.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Kind {
    Hash(HashFile),
    Ndb,
    /// `.fp`/`.sfp`: whole-file hashes of trusted files (allow-list).
    Fp,
    /// `.ign`/`.ign2`: names of signatures to drop at load.
    Ign,
    Ldb,
    /// Read and counted under this kind, not loaded.
    Unsupported(&'static str),
}

#[derive(Debug, Clone, Copy)]
struct FileKind {
    kind: Kind,
    pua: bool,
}

enum Class {
    Sig(FileKind),
    Container,
}

const UNSUPPORTED: &[&str] = &[
    "cdb", "idb", "pdb", "gdb", "wdb", "ftm", "crb", "cfg", "info", "cbc", "hwp", "pwdb", "yar",
    "yara", "zmd", "rmd", "sdb", "ndbx",
];

/// The PUA databases: loaded only with [`LoadOptions::detect_pua`].
const PUA_KINDS: &[&str] = &["hdu", "hsu", "ndu", "ldu", "mdu", "msu"];

fn classify(ext: &str) -> Option<Class> {
    let fk = |kind, pua| Some(Class::Sig(FileKind { kind, pua }));
    match ext {
        "hdb" => fk(Kind::Hash(HashFile::Hdb), false),
        "hdu" => fk(Kind::Hash(HashFile::Hdb), true),
        "hsb" => fk(Kind::Hash(HashFile::Hsb), false),
        "hsu" => fk(Kind::Hash(HashFile::Hsb), true),
        "mdb" | "msb" => fk(Kind::Hash(HashFile::Mdb), false),
        "mdu" | "msu" => fk(Kind::Hash(HashFile::Mdb), true),
        "imp" => fk(Kind::Hash(HashFile::Imp), false),
        "ndb" => fk(Kind::Ndb, false),
        "ndu" => fk(Kind::Ndb, true),
        "ldb" => fk(Kind::Ldb, false),
        "ldu" => fk(Kind::Ldb, true),
        "fp" | "sfp" => fk(Kind::Fp, false),
        "ign" | "ign2" => fk(Kind::Ign, false),
        "cvd" | "cld" => Some(Class::Container),
        other => UNSUPPORTED
            .iter()
            .find(|u| **u == other)
            .and_then(|u| fk(Kind::Unsupported(u), PUA_KINDS.contains(u))),
    }
}

/// Whether the loader reads a file of this name (by extension).
pub fn is_signature_file(name: &str) -> bool {
    classify(&ext_of(name)).is_some()
}

fn ext_of(name: &str) -> String {
    match name.rfind('.') {
        Some(i) if i > 0 => name[i + 1..].to_ascii_lowercase(),
        _ => String::new(),
    }
}

/// The parse result of one block (names and lines local to the block).
#[derive(Default)]
struct BlockOut {
    line_starts: u64,
    names: NameArena,
    md5: Vec<HashEntry<16>>,
    sha1: Vec<HashEntry<20>>,
    sha256: Vec<HashEntry<32>>,
    /// `.mdb`/`.msb` section hashes and `.imp` import hashes.
    mdb: HashVecs,
    imp: HashVecs,
    ndb: Vec<CompiledSig>,
    ldb: Vec<CompiledLdb>,
    /// `.fp`/`.sfp` allow-list hashes.
    fp: AllowEntries,
    loaded: u64,
    unsupported: BTreeMap<&'static str, u64>,
    /// Signatures dropped by an `.ign`/`.ign2` list.
    ignored: u64,
    errors: Vec<(u64, String)>,
    error_total: u64,
}

/// Allow-list hashes of one block, by digest type.
#[derive(Default)]
struct AllowEntries {
    md5: Vec<HashEntry<16>>,
    sha1: Vec<HashEntry<20>>,
    sha256: Vec<HashEntry<32>>,
}

/// What a block parse keeps: the shareable part (hash runs, names,
/// counts) and the body signatures.
struct Parsed {
    part: PartBlock,
    ndb: Vec<CompiledSig>,
    ldb: Vec<CompiledLdb>,
}

/// The results of one parse block that a later load can share when the
/// file did not change: sorted hash runs, the block's names, its counts
/// and errors (lines local to the block).
#[derive(Debug, Clone, Default)]
struct PartBlock {
    line_starts: u64,
    names: NameArena,
    md5: Run<16>,
    sha1: Run<20>,
    sha256: Run<32>,
    mdb: HashRuns,
    imp: HashRuns,
    fp: HashRuns,
    loaded: u64,
    unsupported: BTreeMap<&'static str, u64>,
    ignored: u64,
    errors: Vec<(u64, String)>,
    error_total: u64,
    /// Entries a later version of the file no longer holds (a reload's
    /// delta parse); `None`: all live.
    dead: Option<Mask>,
}

impl BlockOut {
    /// Sort the hash entries (on the parsing thread) and split off the
    /// shareable part.
    fn finish(self) -> Parsed {
        Parsed {
            part: PartBlock {
                line_starts: self.line_starts,
                names: self.names,
                md5: freeze_run(self.md5),
                sha1: freeze_run(self.sha1),
                sha256: freeze_run(self.sha256),
                mdb: self.mdb.freeze(),
                imp: self.imp.freeze(),
                fp: HashVecs {
                    md5: self.fp.md5,
                    sha1: self.fp.sha1,
                    sha256: self.fp.sha256,
                }
                .freeze(),
                loaded: self.loaded,
                unsupported: self.unsupported,
                ignored: self.ignored,
                errors: self.errors,
                error_total: self.error_total,
                dead: None,
            },
            ndb: self.ndb,
            ldb: self.ldb,
        }
    }

    fn error(&mut self, line: u64, msg: String) {
        self.error_total += 1;
        if self.errors.len() < MAX_ERRORS {
            self.errors.push((line, msg));
        }
    }

    /// True (and counted) when an `.ign`/`.ign2` list drops this signature.
    fn ignored(&mut self, ign: &IgnSet, name: &[u8], raw: &[u8]) -> bool {
        let hit = ign.ignores(name, raw);
        self.ignored += u64::from(hit);
        hit
    }

    /// Add one allow-list (`.fp`/`.sfp`) line.
    fn fp_line(&mut self, local: u64, line: &[u8], raw: &[u8], ign: &IgnSet) {
        match parse_hash_bytes(line, HashFile::Hsb) {
            Err(e) => self.error(local, e.to_string()),
            Ok(p) if self.ignored(ign, p.name, raw) => {}
            Ok(p) => {
                let Ok(id) = self.names.push(p.name, false) else {
                    self.error(local, "too many signature names".into());
                    return;
                };
                let fp = &mut self.fp;
                let pushed = match p.kind {
                    HashKind::Md5 => HashEntry::new(&p.digest, p.size, id).map(|e| fp.md5.push(e)),
                    HashKind::Sha1 => {
                        HashEntry::new(&p.digest, p.size, id).map(|e| fp.sha1.push(e))
                    }
                    HashKind::Sha256 => {
                        HashEntry::new(&p.digest, p.size, id).map(|e| fp.sha256.push(e))
                    }
                };
                self.loaded += u64::from(pushed.is_some());
            }
        }
    }

    fn line(
        &mut self,
        raw: &[u8],
        fk: FileKind,
        ign: &IgnSet,
        mut delta: Option<&mut delta::Cursor<'_, '_>>,
    ) {
        self.line_starts += 1;
        let local = self.line_starts;
        let line = raw.trim_ascii();
        if line.is_empty() || line[0] == b'#' {
            return;
        }
        match fk.kind {
            Kind::Unsupported(k) => *self.unsupported.entry(k).or_default() += 1,
            // Ignore lists are read before everything else (`Loaded::read_ign`).
            Kind::Ign => *self.unsupported.entry("ign").or_default() += 1,
            Kind::Fp => self.fp_line(local, line, raw, ign),
            Kind::Hash(file) => match parse_hash_bytes(line, file) {
                Err(e) => self.error(local, e.to_string()),
                Ok(p) if self.ignored(ign, p.name, raw) => {}
                // The previous version of the file holds it: shared.
                Ok(p) if delta.as_mut().is_some_and(|d| d.claim(file, &p)) => {}
                Ok(p) => {
                    let Ok(id) = self.names.push(p.name, fk.pua) else {
                        self.error(local, "too many signature names".into());
                        return;
                    };
                    if matches!(file, HashFile::Mdb | HashFile::Imp) {
                        let v = if file == HashFile::Mdb {
                            &mut self.mdb
                        } else {
                            &mut self.imp
                        };
                        if v.push(&p, id) {
                            self.loaded += 1;
                        }
                        return;
                    }
                    let pushed = match p.kind {
                        HashKind::Md5 => {
                            HashEntry::new(&p.digest, p.size, id).map(|e| self.md5.push(e))
                        }
                        HashKind::Sha1 => {
                            HashEntry::new(&p.digest, p.size, id).map(|e| self.sha1.push(e))
                        }
                        HashKind::Sha256 => {
                            HashEntry::new(&p.digest, p.size, id).map(|e| self.sha256.push(e))
                        }
                    };
                    if pushed.is_some() {
                        self.loaded += 1;
                    }
                }
            },
            Kind::Ndb => match parse_ndb_bytes(line).and_then(|s| {
                let name = s.name;
                ndb::compile(s, 0).map(|c| (name, c))
            }) {
                Err(NdbLineError::Unsupported(k)) => *self.unsupported.entry(k).or_default() += 1,
                Err(NdbLineError::Malformed(m)) => self.error(local, m),
                Ok((name, _)) if self.ignored(ign, name, raw) => {}
                Ok((name, mut c)) => match self.names.push(name, fk.pua) {
                    Ok(id) => {
                        c.name = id;
                        self.ndb.push(c);
                        self.loaded += 1;
                    }
                    Err(_) => self.error(local, "too many signature names".into()),
                },
            },
            Kind::Ldb => match ldb::parse_ldb_bytes(line) {
                Err(NdbLineError::Unsupported(k)) => *self.unsupported.entry(k).or_default() += 1,
                Err(NdbLineError::Malformed(m)) => self.error(local, m),
                Ok(sig) => {
                    let name = sig.name;
                    match ldb::compile(sig, 0) {
                        Err(NdbLineError::Unsupported(k)) => {
                            *self.unsupported.entry(k).or_default() += 1
                        }
                        Err(NdbLineError::Malformed(m)) => self.error(local, m),
                        Ok(mut c) => match self.names.push(name, fk.pua) {
                            Ok(id) => {
                                c.name = id;
                                self.ldb.push(c);
                                self.loaded += 1;
                            }
                            Err(_) => self.error(local, "too many signature names".into()),
                        },
                    }
                }
            },
        }
    }
}

/// Read `buf.len()` bytes at `off` (fewer only at the end).
fn read_full(blob: &Blob, off: u64, buf: &mut [u8]) -> std::io::Result<usize> {
    blob.read_at(off, buf)
}

/// Parse the lines that start in `start..end` of `blob`.
fn parse_block(
    blob: &Blob,
    start: u64,
    end: u64,
    fk: FileKind,
    ign: &IgnSet,
    buf: &mut Vec<u8>,
    mut delta: Option<&mut delta::Cursor<'_, '_>>,
) -> std::io::Result<BlockOut> {
    let mut out = BlockOut::default();
    let read_start = start.saturating_sub(1);
    buf.resize((end - read_start) as usize, 0);
    let n = read_full(blob, read_start, buf)?;
    buf.truncate(n);
    let limit = (end - read_start) as usize;
    let mut pos = if start == 0 {
        0
    } else {
        match memchr::memchr(b'\n', buf) {
            Some(i) => i + 1,
            None => return Ok(out),
        }
    };
    // About 80 bytes a line; a delta parse keeps only the added lines.
    let est = (limit / if delta.is_some() { 80 * 32 } else { 80 }).max(16);
    match fk.kind {
        Kind::Hash(HashFile::Hdb) => out.md5.reserve(est),
        Kind::Hash(HashFile::Hsb) => out.sha256.reserve(est),
        Kind::Ndb => out.ndb.reserve(est),
        _ => {}
    }
    out.names = NameArena::with_capacity(est, est * 24);
    while pos < limit && pos < buf.len() {
        let line_end = match memchr::memchr(b'\n', &buf[pos..]) {
            Some(i) => pos + i,
            None => {
                // The last line runs past the block: read on until its end.
                let mut found = None;
                loop {
                    let have = buf.len();
                    if read_start + have as u64 >= blob.len() {
                        break;
                    }
                    if have - pos > MAX_LINE {
                        break;
                    }
                    buf.resize(have + 64 * 1024, 0);
                    let got = read_full(blob, read_start + have as u64, &mut buf[have..])?;
                    buf.truncate(have + got);
                    if got == 0 {
                        break;
                    }
                    if let Some(i) = memchr::memchr(b'\n', &buf[have..]) {
                        found = Some(have + i);
                        break;
                    }
                }
                match found {
                    Some(e) => e,
                    None if buf.len() - pos > MAX_LINE => {
                        out.line_starts += 1;
                        let l = out.line_starts;
                        out.error(l, format!("line longer than {MAX_LINE} bytes"));
                        return Ok(out);
                    }
                    None => buf.len(),
                }
            }
        };
        // A delta parse that gave up is thrown away: stop early.
        if delta.as_ref().is_some_and(|d| d.gave_up()) {
            return Ok(out);
        }
        out.line(&buf[pos..line_end], fk, ign, delta.as_deref_mut());
        pos = line_end + 1;
    }
    out.names.shrink_to_fit();
    Ok(out)
}

/// Everything read so far, merged.
pub(crate) struct Loaded {
    pub(crate) names: NameArena,
    pub(crate) md5: Buckets<16>,
    pub(crate) sha1: Buckets<20>,
    pub(crate) sha256: Buckets<32>,
    pub(crate) mdb: HashBuckets,
    pub(crate) imp: HashBuckets,
    pub(crate) ndb: Vec<CompiledSig>,
    pub(crate) ldb: Vec<CompiledLdb>,
    /// `.fp`/`.sfp` allow-list hashes.
    pub(crate) fp_md5: Buckets<16>,
    pub(crate) fp_sha1: Buckets<20>,
    pub(crate) fp_sha256: Buckets<32>,
    pub(crate) signatures: BTreeMap<String, u64>,
    pub(crate) unsupported: BTreeMap<String, u64>,
    /// Read but deliberately not loaded (PUA gating, ignore lists).
    pub(crate) skipped: BTreeMap<String, u64>,
    /// Names to drop, from every `.ign`/`.ign2` source read so far.
    ign: IgnSet,
    pub(crate) errors: Vec<String>,
    pub(crate) error_total: u64,
    /// Containers loaded: (file stem, header version).
    pub(crate) versions: Vec<(String, u64)>,
    fingerprint: Sha256,
    /// Digest of every ignore list read so far (their text, in order):
    /// parts parsed under the same lists are the same.
    ign_digest: Sha256,
    /// The hash files' and containers' parts, for the next load to reuse.
    pub(crate) parts: SignatureParts,
    /// How many hash sources (plain files and container members) were
    /// shared from the previous load, not parsed.
    pub(crate) reused_files: usize,
    /// How many changed hash sources were parsed against their previous
    /// part (`load/delta.rs`): unchanged lines shared, added ones new.
    pub(crate) delta_files: usize,
}

/// The identity of a signature file: while it is unchanged, a reload
/// shares what was parsed from it.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
struct FileId {
    path: PathBuf,
    len: u64,
    mtime_ns: u128,
    /// Inode, device and change time (Unix): a file rewritten in place
    /// with the same size and a restored mtime still counts as changed.
    ino: u64,
    dev: u64,
    ctime: (i64, i64),
}

impl FileId {
    fn of(path: &Path, meta: &std::fs::Metadata) -> FileId {
        let mtime_ns = meta
            .modified()
            .ok()
            .and_then(|t| t.duration_since(std::time::UNIX_EPOCH).ok())
            .map_or(0, |d| d.as_nanos());
        #[cfg(unix)]
        let (ino, dev, ctime) = {
            use std::os::unix::fs::MetadataExt;
            (meta.ino(), meta.dev(), (meta.ctime(), meta.ctime_nsec()))
        };
        #[cfg(not(unix))]
        let (ino, dev, ctime) = (0, 0, (0, 0));
        FileId {
            path: path.to_path_buf(),
            len: meta.len(),
            mtime_ns,
            ino,
            dev,
            ctime,
        }
    }
}

/// What decides how a hash source is parsed besides the source itself:
/// the PUA option and the ignore lists in force when it is parsed (by
/// content: every `.ign`/`.ign2` text read before it, plain files and
/// container members alike). Parts are shared only between loads with the
/// same policy.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
struct Policy {
    detect_pua: bool,
    ign: [u8; 32],
}

/// An unchanged container: the same file (path, size, mtime, inode,
/// ctime), the same header (version, MD5, digital signature) and the same
/// policy when it is read.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
struct ContainerKey {
    file: FileId,
    version: u64,
    md5: String,
    dsig: String,
    policy: Policy,
}

/// What was parsed from the hash members of one container (`.hdb`,
/// `.hsb`, `.mdb`, `.imp` and their PUA kinds), by member name. Members
/// whose name occurs twice in the archive are not kept.
#[derive(Debug, Default)]
struct ContainerPart {
    members: HashMap<String, Arc<FilePart>>,
}

/// What was parsed from one plain hash file (`.hdb`, `.hsb`, `.mdb`,
/// `.imp` and their PUA kinds): its blocks' sorted runs and names.
#[derive(Debug)]
struct FilePart {
    blocks: Vec<PartBlock>,
}

/// The parts of a loaded signature set that a reload can share: for each
/// plain hash file, by identity (path, size, mtime, inode, ctime), its
/// parsed runs and names, and for each container (`.cvd`/`.cld`), by
/// identity and header, those of its hash members. Held by the engine (the
/// parts are the engine's own tables, shared, not a copy); see
/// [`crate::BuiltinEngine::load_reusing`].
#[derive(Default)]
pub struct SignatureParts {
    policy: Option<Policy>,
    files: HashMap<FileId, Arc<FilePart>>,
    containers: HashMap<ContainerKey, Arc<ContainerPart>>,
}

impl std::fmt::Debug for SignatureParts {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SignatureParts")
            .field("files", &self.files.len())
            .field("containers", &self.containers.len())
            .finish()
    }
}

impl SignatureParts {
    /// How many sources' parts are held (plain hash files and containers'
    /// hash members).
    pub fn len(&self) -> usize {
        self.files.len()
            + self
                .containers
                .values()
                .map(|c| c.members.len())
                .sum::<usize>()
    }

    /// Whether both hold the very same part (not a copy) for the member
    /// `member` of the container named `container`.
    #[cfg(test)]
    pub(crate) fn shares_member(
        &self,
        other: &SignatureParts,
        container: &str,
        member: &str,
    ) -> bool {
        let find = |p: &SignatureParts| {
            p.containers
                .iter()
                .find(|(k, _)| k.file.path.file_name().is_some_and(|n| n == container))
                .and_then(|(_, c)| c.members.get(member).map(Arc::clone))
        };
        matches!((find(self), find(other)), (Some(a), Some(b)) if Arc::ptr_eq(&a, &b))
    }

    /// The part held for the plain file named `file_name`.
    #[cfg(test)]
    fn file_part(&self, file_name: &str) -> Option<&Arc<FilePart>> {
        self.files
            .iter()
            .find(|(id, _)| id.path.file_name().is_some_and(|n| n == file_name))
            .map(|(_, part)| part)
    }

    /// Whether both hold the very same part (not a copy) for the file
    /// named `file_name`.
    #[cfg(test)]
    pub(crate) fn shares_part(&self, other: &SignatureParts, file_name: &str) -> bool {
        matches!((self.file_part(file_name), other.file_part(file_name)), (Some(a), Some(b)) if Arc::ptr_eq(a, b))
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// How many of the blocks this holds for the file named `file_name`
    /// share their sorted runs (not a copy) with a block `other` holds for
    /// it, and how many blocks this holds for it.
    #[cfg(test)]
    pub(crate) fn shared_blocks(&self, other: &SignatureParts, file_name: &str) -> (usize, usize) {
        let (Some(mine), Some(theirs)) = (self.file_part(file_name), other.file_part(file_name))
        else {
            return (0, 0);
        };
        let same = |a: &PartBlock, b: &PartBlock| {
            (!a.md5.is_empty() && Arc::ptr_eq(&a.md5, &b.md5))
                || (!a.sha256.is_empty() && Arc::ptr_eq(&a.sha256, &b.sha256))
        };
        let shared = mine
            .blocks
            .iter()
            .filter(|a| theirs.blocks.iter().any(|b| same(a, b)))
            .count();
        (shared, mine.blocks.len())
    }

    /// How many sources' parts this holds that are the very same (shared,
    /// not a copy) as one that `other` holds.
    pub fn shared_with(&self, other: &SignatureParts) -> usize {
        let theirs: std::collections::HashSet<*const FilePart> =
            other.all().map(Arc::as_ptr).collect();
        self.all()
            .filter(|p| theirs.contains(&Arc::as_ptr(p)))
            .count()
    }

    /// The part of the plain hash file at `path`, whatever its identity
    /// was when it was parsed.
    fn by_path(&self, path: &Path) -> Option<&FilePart> {
        self.files
            .iter()
            .find(|(id, _)| id.path == path)
            .map(|(_, part)| &**part)
    }

    fn all(&self) -> impl Iterator<Item = &Arc<FilePart>> {
        self.files
            .values()
            .chain(self.containers.values().flat_map(|c| c.members.values()))
    }
}

impl Loaded {
    fn new() -> Loaded {
        Loaded {
            names: NameArena::default(),
            md5: Buckets::default(),
            sha1: Buckets::default(),
            sha256: Buckets::default(),
            mdb: HashBuckets::default(),
            imp: HashBuckets::default(),
            ndb: Vec::new(),
            ldb: Vec::new(),
            fp_md5: Buckets::default(),
            fp_sha1: Buckets::default(),
            fp_sha256: Buckets::default(),
            signatures: BTreeMap::new(),
            unsupported: BTreeMap::new(),
            skipped: BTreeMap::new(),
            ign: IgnSet::default(),
            errors: Vec::new(),
            error_total: 0,
            versions: Vec::new(),
            fingerprint: Sha256::new(),
            ign_digest: Sha256::new(),
            parts: SignatureParts::default(),
            reused_files: 0,
            delta_files: 0,
        }
    }

    pub(crate) fn error(&mut self, msg: String) {
        self.error_total += 1;
        if self.errors.len() < MAX_ERRORS {
            tracing::warn!(target: "moat_builtin", "signature load error: {msg}");
            self.errors.push(msg);
        }
    }

    /// The short hex fingerprint of what was loaded.
    pub(crate) fn fingerprint_hex(&self) -> String {
        hex::encode(&self.fingerprint.clone().finalize()[..8])
    }

    fn note_file(&mut self, path: &Path, meta: &std::fs::Metadata) {
        let mtime = meta
            .modified()
            .ok()
            .and_then(|t| t.duration_since(std::time::UNIX_EPOCH).ok())
            .map_or(0, |d| d.as_nanos());
        let name = path
            .file_name()
            .map(|n| n.to_string_lossy())
            .unwrap_or_default();
        self.fingerprint.update(name.as_bytes());
        self.fingerprint.update([0]);
        self.fingerprint.update(meta.len().to_le_bytes());
        self.fingerprint.update(mtime.to_le_bytes());
    }

    /// Merge the blocks of one source, in order.
    fn absorb(&mut self, label: &str, fk: FileKind, blocks: Vec<Parsed>) {
        let mut line_base = 0u64;
        self.ndb.reserve(blocks.iter().map(|b| b.ndb.len()).sum());
        self.ldb.reserve(blocks.iter().map(|b| b.ldb.len()).sum());
        for b in blocks {
            let Some(base) = self.absorb_part(label, fk, &b.part, &mut line_base) else {
                return;
            };
            self.ndb.extend(b.ndb.into_iter().map(|mut c| {
                c.name += base;
                c
            }));
            self.ldb.extend(b.ldb.into_iter().map(|mut c| {
                c.name += base;
                c
            }));
        }
    }

    /// Merge the blocks of a shared or delta-parsed hash source.
    fn absorb_file_part(&mut self, label: &str, fk: FileKind, part: &FilePart) {
        let mut line_base = 0;
        for b in &part.blocks {
            if self.absorb_part(label, fk, b, &mut line_base).is_none() {
                break;
            }
        }
    }

    /// Merge one block's shareable part (sharing its runs and names);
    /// the base of its name ids, `None` when the arena is full.
    fn absorb_part(
        &mut self,
        label: &str,
        fk: FileKind,
        b: &PartBlock,
        line_base: &mut u64,
    ) -> Option<u32> {
        let kind_key = match fk.kind {
            Kind::Hash(HashFile::Hdb) => "hdb",
            Kind::Hash(HashFile::Hsb) => "hsb",
            Kind::Hash(HashFile::Mdb) => "mdb",
            Kind::Hash(HashFile::Imp) => "imp",
            Kind::Ndb => "ndb",
            Kind::Ldb => "ldb",
            Kind::Fp => "fp",
            Kind::Ign => "ign",
            Kind::Unsupported(_) => "",
        };
        let base = match self.names.append(b.names.clone()) {
            Ok(base) => base,
            Err(_) => {
                self.error(format!(
                    "{label}: more signature names than this engine can hold; rest skipped"
                ));
                return None;
            }
        };
        let dead = b.dead.as_ref();
        self.md5.absorb(&b.md5, base, dead);
        self.sha1.absorb(&b.sha1, base, dead);
        self.sha256.absorb(&b.sha256, base, dead);
        self.mdb.absorb(&b.mdb, base, dead);
        self.imp.absorb(&b.imp, base, dead);
        self.fp_md5.absorb(&b.fp.md5, base, dead);
        self.fp_sha1.absorb(&b.fp.sha1, base, dead);
        self.fp_sha256.absorb(&b.fp.sha256, base, dead);
        if b.ignored > 0 {
            *self.skipped.entry("ignored".into()).or_default() += b.ignored;
        }
        if b.loaded > 0 {
            *self.signatures.entry(kind_key.to_string()).or_default() += b.loaded;
        }
        for (k, n) in &b.unsupported {
            *self.unsupported.entry(k.to_string()).or_default() += n;
        }
        let hidden = b.error_total - b.errors.len() as u64;
        for (line, msg) in &b.errors {
            self.error(format!("{label}:{}: {msg}", *line_base + line));
        }
        // Errors past a block's own cap still count.
        self.error_total += hidden;
        *line_base += b.line_starts;
        Some(base)
    }

    /// Parse one signature source (a file or a container member).
    fn parse_source(&mut self, label: &str, blob: &Blob, fk: FileKind) -> std::io::Result<()> {
        let blocks = parse_blocks(blob, fk, &self.ign)?;
        self.absorb(label, fk, blocks);
        Ok(())
    }

    /// The policy hash sources read from now on are parsed under.
    fn policy(&self, opts: &LoadOptions) -> Policy {
        Policy {
            detect_pua: opts.detect_pua,
            ign: self.ign_digest.clone().finalize().into(),
        }
    }

    /// Add the names of an `.ign`/`.ign2` source to the ignore list.
    fn read_ign(&mut self, label: &str, text: &[u8]) {
        self.ign_digest.update((text.len() as u64).to_le_bytes());
        self.ign_digest.update(text);
        let before = self.ign.len();
        for (i, raw) in text.split(|&b| b == b'\n').enumerate() {
            let line = raw.trim_ascii();
            if line.is_empty() || line[0] == b'#' {
                continue;
            }
            if let Err(e) = self.ign.add_line(line) {
                self.error(format!("{label}:{}: {e}", i + 1));
            }
        }
        let added = (self.ign.len() - before) as u64;
        if added > 0 {
            *self.signatures.entry("ign".into()).or_default() += added;
        }
    }

    /// Count the signatures of a source skipped by policy (PUA gating).
    fn skip_pua(&mut self, ext: &str, lines: u64) {
        if lines > 0 {
            *self.skipped.entry(format!("pua_{ext}")).or_default() += lines;
        }
    }
}

fn parse_blocks(blob: &Blob, fk: FileKind, ign: &IgnSet) -> std::io::Result<Vec<Parsed>> {
    parse_blocks_with(blob, fk, ign, None)
}

/// The block size for sources of this kind.
fn block_size(fk: FileKind) -> u64 {
    match fk.kind {
        Kind::Ndb | Kind::Ldb => BODY_BLOCK,
        _ => BLOCK,
    }
}

/// Parse `blob` in blocks, in parallel; a hash source against the
/// previous load's part when `delta` is given.
fn parse_blocks_with(
    blob: &Blob,
    fk: FileKind,
    ign: &IgnSet,
    delta: Option<&delta::Delta<'_>>,
) -> std::io::Result<Vec<Parsed>> {
    let len = blob.len();
    let block = block_size(fk);
    let n = len.div_ceil(block).max(1);
    (0..n)
        .into_par_iter()
        .map_init(
            || (Vec::new(), delta.map(delta::Delta::cursor)),
            |(buf, cur), i| {
                let (start, end) = (i * block, ((i + 1) * block).min(len));
                parse_block(blob, start, end, fk, ign, buf, cur.as_mut()).map(BlockOut::finish)
            },
        )
        .collect()
}

/// A file to load, found directly or in a directory.
struct Input {
    path: PathBuf,
    meta: std::fs::Metadata,
    ext: String,
}

fn collect_inputs(paths: &[PathBuf], loaded: &mut Loaded) -> Result<Vec<Input>, LoadError> {
    let mut inputs = Vec::new();
    for p in paths {
        let meta = std::fs::metadata(p).map_err(io_err(p))?;
        if meta.is_dir() {
            let mut entries: Vec<PathBuf> = std::fs::read_dir(p)
                .map_err(io_err(p))?
                .map(|e| e.map(|e| e.path()))
                .collect::<Result<_, _>>()
                .map_err(io_err(p))?;
            entries.sort();
            for path in entries {
                let meta = std::fs::metadata(&path).map_err(io_err(&path))?;
                let name = path
                    .file_name()
                    .map(|n| n.to_string_lossy().into_owned())
                    .unwrap_or_default();
                let ext = ext_of(&name);
                if !meta.is_file() || classify(&ext).is_none() {
                    tracing::debug!(path = %path.display(), "not a signature file: skipped");
                    continue;
                }
                inputs.push(Input { path, meta, ext });
            }
        } else if meta.is_file() {
            let name = p
                .file_name()
                .map(|n| n.to_string_lossy().into_owned())
                .unwrap_or_default();
            let ext = ext_of(&name);
            if classify(&ext).is_none() {
                loaded.error(format!(
                    "{}: unknown signature file type {ext:?}: skipped",
                    p.display()
                ));
                continue;
            }
            inputs.push(Input {
                path: p.clone(),
                meta,
                ext,
            });
        } else {
            return Err(LoadError::NotFileOrDir(p.clone()));
        }
    }
    Ok(inputs)
}

fn stem(path: &Path) -> String {
    path.file_stem()
        .map(|s| s.to_string_lossy().into_owned())
        .unwrap_or_default()
}

/// Of `daily.cvd` and `daily.cld` in one directory, keep the newer one.
fn newest_containers(inputs: Vec<Input>) -> Vec<Input> {
    let version = |p: &Path| -> u64 {
        let Ok(f) = std::fs::File::open(p) else {
            return 0;
        };
        let mut h = Vec::with_capacity(cvd::HEADER_LEN);
        use std::io::Read;
        #[allow(clippy::disallowed_methods)] // bounded: 512 bytes
        if f.take(cvd::HEADER_LEN as u64).read_to_end(&mut h).is_err() {
            return 0;
        }
        cvd::parse_header(&h).map_or(0, |h| h.version)
    };
    let mut best: BTreeMap<(PathBuf, String), (u64, Input)> = BTreeMap::new();
    let mut others = Vec::new();
    for i in inputs {
        if i.ext != "cvd" && i.ext != "cld" {
            others.push(i);
            continue;
        }
        let key = (
            i.path.parent().map(Path::to_path_buf).unwrap_or_default(),
            stem(&i.path),
        );
        let v = version(&i.path);
        match best.get(&key) {
            Some((bv, b)) if *bv >= v => {
                tracing::debug!(skipped = %i.path.display(), kept = %b.path.display(), "older container skipped");
            }
            _ => {
                best.insert(key, (v, i));
            }
        }
    }
    others.extend(best.into_values().map(|(_, i)| i));
    others
}

/// Whether sources of this kind are parsed (rather than counted).
fn loads(fk: FileKind, opts: &LoadOptions) -> bool {
    matches!(
        fk.kind,
        Kind::Hash(_) | Kind::Ndb | Kind::Ldb | Kind::Fp | Kind::Ign
    ) && (opts.detect_pua || !fk.pua)
}

/// The identity of an open container and its header (`None` when the
/// header cannot be read: such a container is never shared); the file is
/// rewound.
fn container_key(
    file: &mut std::fs::File,
    path: &Path,
    policy: Policy,
) -> std::io::Result<Option<ContainerKey>> {
    use std::io::{Read, Seek};
    let meta = file.metadata()?;
    let mut h = Vec::with_capacity(cvd::HEADER_LEN);
    #[allow(clippy::disallowed_methods)] // bounded: 512 bytes
    (&mut *file)
        .take(cvd::HEADER_LEN as u64)
        .read_to_end(&mut h)?;
    file.rewind()?;
    Ok(cvd::parse_header(&h).ok().map(|h| ContainerKey {
        file: FileId::of(path, &meta),
        version: h.version,
        md5: h.md5,
        dsig: h.dsig,
        policy,
    }))
}

/// Read one container. The hash members of a container that did not
/// change since `previous` was loaded (same file, header and policy) are
/// shared rather than parsed: the archive is still read (its other
/// members are rebuilt, and it is verified again) but those members are
/// only streamed through.
fn load_container(
    input: &Input,
    loaded: &mut Loaded,
    opts: &LoadOptions,
    previous: Option<&SignatureParts>,
) -> Result<(), LoadError> {
    let mut file = std::fs::File::open(&input.path).map_err(io_err(&input.path))?;
    let key =
        container_key(&mut file, &input.path, loaded.policy(opts)).map_err(io_err(&input.path))?;
    let reuse: Option<&ContainerPart> = key
        .as_ref()
        .and_then(|k| previous?.containers.get(k))
        .map(|c| &**c);
    // A changed container (a new daily): its hash members are parsed
    // against those of the previous load's container at the same path,
    // read under the same policy.
    let before: Option<&ContainerPart> = match (&key, reuse) {
        (Some(k), None) => previous.and_then(|p| {
            p.containers
                .iter()
                .find(|(pk, _)| pk.file.path == k.file.path && pk.policy == k.policy)
                .map(|(_, c)| &**c)
        }),
        _ => None,
    };
    let shared = |fk: FileKind, name: &str| {
        matches!(fk.kind, Kind::Hash(_)) && reuse.is_some_and(|c| c.members.contains_key(name))
    };
    let mut fresh = ContainerPart::default();
    let mut twice = std::collections::HashSet::new();
    let mut keep_part = |name: &str, part: Arc<FilePart>| {
        if fresh.members.insert(name.to_string(), part).is_some() {
            twice.insert(name.to_string());
        }
    };
    let fname = input
        .path
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_default();
    let keep = |name: &str, ext: &str| matches!(classify(ext), Some(Class::Sig(fk)) if loads(fk, opts) && !shared(fk, name));
    let res = cvd::read_container_by_name(file, opts.verify_signatures, keep, |m| {
        let label = format!("{fname}/{}", m.name);
        match (classify(&m.ext), m.data) {
            (Some(Class::Sig(fk)), Some(data)) if fk.kind == Kind::Ign => {
                match data.head(MAX_IGN_FILE as usize) {
                    Ok(text) => loaded.read_ign(&label, &text),
                    Err(e) => loaded.error(format!("{label}: {e}")),
                }
            }
            (Some(Class::Sig(fk)), None) if loads(fk, opts) && shared(fk, &m.name) => {
                let part = reuse.and_then(|c| c.members.get(&m.name));
                if let Some(part) = part {
                    loaded.absorb_file_part(&label, fk, part);
                    loaded.reused_files += 1;
                    keep_part(&m.name, Arc::clone(part));
                }
            }
            (Some(Class::Sig(fk)), Some(blob)) if matches!(fk.kind, Kind::Hash(_)) => {
                let prev = before.and_then(|c| c.members.get(&m.name));
                // A read error falls through to the full parse, which reports it.
                if let Some(prev) = prev
                    && let Ok(Some(part)) = delta::parse_against(&blob, fk, &loaded.ign, prev)
                {
                    loaded.absorb_file_part(&label, fk, &part);
                    loaded.delta_files += 1;
                    keep_part(&m.name, Arc::new(part));
                    return;
                }
                match parse_blocks(&blob, fk, &loaded.ign) {
                    Ok(blocks) => {
                        keep_part(
                            &m.name,
                            Arc::new(FilePart {
                                blocks: blocks.iter().map(|b| b.part.clone()).collect(),
                            }),
                        );
                        loaded.absorb(&label, fk, blocks);
                    }
                    Err(e) => loaded.error(format!("{label}: {e}")),
                }
            }
            (Some(Class::Sig(fk)), Some(data)) => {
                if let Err(e) = loaded.parse_source(&label, &data, fk) {
                    loaded.error(format!("{label}: {e}"));
                }
            }
            (Some(Class::Sig(fk)), None) if fk.pua && !opts.detect_pua => {
                loaded.skip_pua(&m.ext, m.lines)
            }
            (
                Some(Class::Sig(FileKind {
                    kind: Kind::Unsupported(k),
                    ..
                })),
                None,
            ) => {
                if m.lines > 0 {
                    *loaded.unsupported.entry(k.to_string()).or_default() += m.lines;
                }
            }
            _ => tracing::debug!(member = %label, "not a signature file: skipped"),
        }
    });
    let refuse = |reason: String| LoadError::Verification {
        path: input.path.clone(),
        reason,
    };
    match res {
        Ok((h, integrity)) => {
            if let Some(i) = integrity {
                let keys = opts
                    .public_keys
                    .as_deref()
                    .unwrap_or(crate::dsig::Keys::clamav());
                cvd::verify_with(&h, input.ext == "cld", &i, keys)
                    .map_err(|e| refuse(e.to_string()))?;
                tracing::debug!(path = %input.path.display(), "database signature verified");
            }
            loaded.fingerprint.update(h.version.to_le_bytes());
            loaded.versions.push((stem(&input.path), h.version));
            if let Some(key) = key {
                for name in &twice {
                    fresh.members.remove(name);
                }
                loaded.parts.containers.insert(key, Arc::new(fresh));
            }
        }
        // A database that cannot even be read cannot be verified.
        Err(e) if opts.verify_signatures => return Err(refuse(e.to_string())),
        Err(e) => loaded.error(format!("{}: {e}", input.path.display())),
    }
    Ok(())
}

/// Read an `.ign`/`.ign2` file into the ignore list.
fn load_ign_file(input: &Input, loaded: &mut Loaded) -> Result<(), LoadError> {
    use std::io::Read;
    let f = std::fs::File::open(&input.path).map_err(io_err(&input.path))?;
    let mut text = Vec::new();
    #[allow(clippy::disallowed_methods)] // bounded by MAX_IGN_FILE
    f.take(MAX_IGN_FILE)
        .read_to_end(&mut text)
        .map_err(io_err(&input.path))?;
    if text.len() as u64 >= MAX_IGN_FILE {
        loaded.error(format!(
            "{}: larger than {MAX_IGN_FILE} bytes: only the start is read",
            input.path.display()
        ));
    }
    loaded.read_ign(&input.path.display().to_string(), &text);
    Ok(())
}

/// Read every signature source under `paths`, with the default options.
#[cfg(test)]
pub(crate) fn load_paths(paths: &[PathBuf]) -> Result<Loaded, LoadError> {
    load_paths_with(paths, &LoadOptions::default())
}

/// Read every signature source under `paths`. Ignore lists are read first
/// (plain `.ign`/`.ign2` files, then those inside containers, `daily` before
/// the others, as ClamAV orders them), so that they apply to every source.
#[cfg(test)]
pub(crate) fn load_paths_with(paths: &[PathBuf], opts: &LoadOptions) -> Result<Loaded, LoadError> {
    load_paths_reusing(paths, opts, None)
}

/// The output of one plain file.
enum FileOut {
    Parsed(Vec<Parsed>),
    /// Shared from the previous load: the file did not change.
    Reused(Arc<FilePart>),
    /// Parsed against the previous load's part of the same path: its
    /// unchanged lines shared, only the added ones new.
    Delta(FilePart),
    /// A PUA file not loaded: its line count.
    SkippedPua(u64),
}

/// [`load_paths_with`], sharing the parts of `previous` whose file did not
/// change when the policy (ignore lists, allow-lists, containers, PUA
/// option) is the same.
/// The files a load of `paths` reads, in its order (the compiled-set
/// cache's key; the load itself reports the problems).
pub(crate) fn input_files(paths: &[PathBuf]) -> Result<Vec<PathBuf>, LoadError> {
    let mut loaded = Loaded::new();
    Ok(newest_containers(collect_inputs(paths, &mut loaded)?)
        .into_iter()
        .map(|i| i.path)
        .collect())
}

pub(crate) fn load_paths_reusing(
    paths: &[PathBuf],
    opts: &LoadOptions,
    previous: Option<&SignatureParts>,
) -> Result<Loaded, LoadError> {
    let mut loaded = Loaded::new();
    let inputs = newest_containers(collect_inputs(paths, &mut loaded)?);
    for i in &inputs {
        loaded.note_file(&i.path, &i.meta);
    }
    let (mut containers, files): (Vec<Input>, Vec<Input>) = inputs
        .into_iter()
        .partition(|i| i.ext == "cvd" || i.ext == "cld");
    let (ign, files): (Vec<Input>, Vec<Input>) = files
        .into_iter()
        .partition(|i| i.ext == "ign" || i.ext == "ign2");
    for i in &ign {
        load_ign_file(i, &mut loaded)?;
    }
    containers.sort_by_key(|c| (stem(&c.path) != "daily", c.path.clone()));
    for c in &containers {
        load_container(c, &mut loaded, opts, previous)?;
    }
    // Every ignore list is read: plain files are parsed under this policy.
    let policy = loaded.policy(opts);
    let reusable = previous.filter(|p| p.policy.as_ref() == Some(&policy));
    loaded.parts.policy = Some(policy);
    // Plain files: all in parallel (each file in parallel blocks too).
    let ign_set = std::mem::take(&mut loaded.ign);
    type Out = (String, FileKind, Option<FileId>, FileOut);
    let parsed: Vec<Out> = files
        .par_iter()
        .filter_map(|i| match classify(&i.ext) {
            Some(Class::Sig(fk)) => Some((i, fk)),
            _ => None,
        })
        .map(|(i, fk)| {
            let label = i.path.display().to_string();
            if fk.pua && !opts.detect_pua {
                let blob = Blob::open(&i.path).map_err(io_err(&i.path))?;
                let lines = cvd::count_lines(&mut blob.reader()).map_err(io_err(&i.path))?;
                return Ok((i.ext.clone(), fk, None, FileOut::SkippedPua(lines)));
            }
            // Only plain hash files are shared: they hold nearly all the
            // memory; body signatures are rebuilt with the matcher.
            let id = matches!(fk.kind, Kind::Hash(_)).then(|| FileId::of(&i.path, &i.meta));
            if let Some(part) = id
                .as_ref()
                .and_then(|id| reusable.and_then(|p| p.files.get(id)))
            {
                return Ok((label, fk, id, FileOut::Reused(Arc::clone(part))));
            }
            let blob = Blob::open(&i.path).map_err(io_err(&i.path))?;
            // A changed hash file: parsed against what the previous load
            // parsed from the same path, when that pays off.
            let prev = id
                .as_ref()
                .and_then(|id| reusable.and_then(|p| p.by_path(&id.path)));
            if let Some(prev) = prev
                && let Some(part) =
                    delta::parse_against(&blob, fk, &ign_set, prev).map_err(io_err(&i.path))?
            {
                return Ok((label, fk, id, FileOut::Delta(part)));
            }
            let blocks = parse_blocks(&blob, fk, &ign_set).map_err(io_err(&i.path))?;
            Ok((label, fk, id, FileOut::Parsed(blocks)))
        })
        .collect::<Result<_, LoadError>>()?;
    loaded.ign = ign_set;
    for (label, fk, id, out) in parsed {
        match (out, id) {
            (FileOut::Parsed(blocks), Some(id)) => {
                let part = FilePart {
                    blocks: blocks.iter().map(|b| b.part.clone()).collect(),
                };
                loaded.parts.files.insert(id, Arc::new(part));
                loaded.absorb(&label, fk, blocks);
            }
            (FileOut::Parsed(blocks), None) => loaded.absorb(&label, fk, blocks),
            (FileOut::Reused(part), id) => {
                loaded.absorb_file_part(&label, fk, &part);
                loaded.reused_files += 1;
                if let Some(id) = id {
                    loaded.parts.files.insert(id, part);
                }
            }
            (FileOut::Delta(part), id) => {
                loaded.absorb_file_part(&label, fk, &part);
                loaded.delta_files += 1;
                if let Some(id) = id {
                    loaded.parts.files.insert(id, Arc::new(part));
                }
            }
            (FileOut::SkippedPua(lines), _) => loaded.skip_pua(&label, lines),
        }
    }
    Ok(loaded)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::cvd::tests::make_container;

    fn fk(kind: Kind) -> FileKind {
        FileKind { kind, pua: false }
    }

    /// Options for containers made by the tests, which are not signed.
    const UNVERIFIED: LoadOptions = LoadOptions {
        detect_pua: false,
        verify_signatures: false,
        public_keys: None,
        all_match: true,
        cache_dir: None,
    };

    #[test]
    fn blocks_cover_every_line_once_with_file_line_numbers() {
        // Many lines and a tiny block size would need a parameter; instead
        // check block splitting directly on a small blob at odd boundaries.
        let mut text = Vec::new();
        for i in 0..50 {
            if i == 37 {
                text.extend_from_slice(b"garbage line\n");
            } else {
                text.extend_from_slice(format!("{:032x}:{i}:N{i}\n", i).as_bytes());
            }
        }
        let blob = Blob::from_vec(text.clone());
        let len = blob.len();
        for block in [7u64, 64, 100, 1000, len] {
            let n = len.div_ceil(block);
            let blocks: Vec<Parsed> = (0..n)
                .map(|i| {
                    parse_block(
                        &blob,
                        i * block,
                        ((i + 1) * block).min(len),
                        fk(Kind::Hash(HashFile::Hdb)),
                        &IgnSet::default(),
                        &mut Vec::new(),
                        None,
                    )
                    .unwrap()
                    .finish()
                })
                .collect();
            let mut l = Loaded::new();
            l.absorb("t.hdb", fk(Kind::Hash(HashFile::Hdb)), blocks);
            assert_eq!(
                l.md5.0.iter().map(|(r, _, _)| r.len()).sum::<usize>(),
                49,
                "block {block}"
            );
            assert_eq!(l.errors.len(), 1);
            assert!(l.errors[0].starts_with("t.hdb:38: "), "{}", l.errors[0]);
            let mut names: Vec<String> = (0..l.names.len() as u32)
                .map(|i| String::from_utf8_lossy(l.names.get(i)).into_owned())
                .collect();
            names.sort();
            names.dedup();
            assert_eq!(names.len(), 49);
        }
    }

    #[test]
    fn last_line_without_newline_and_crlf() {
        let blob = Blob::from_vec(b"S1:0:*:41424344\r\n\r\nS2:0:*:45464748".to_vec());
        let b = parse_block(
            &blob,
            0,
            blob.len(),
            fk(Kind::Ndb),
            &IgnSet::default(),
            &mut Vec::new(),
            None,
        )
        .unwrap();
        assert_eq!(b.ndb.len(), 2);
        assert_eq!(b.line_starts, 3);
        assert!(b.errors.is_empty());
    }

    #[test]
    fn directory_with_all_kinds() {
        let d = tempfile::tempdir().unwrap();
        let p = d.path();
        std::fs::write(
            p.join("a.hdb"),
            "d41d8cd98f00b204e9800998ecf8427e:0:Empty.Md5\nbad\n",
        )
        .unwrap();
        std::fs::write(
            p.join("a.hsu"),
            "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855:*:PUA.Empty:73\n",
        )
        .unwrap();
        std::fs::write(
            p.join("a.ndb"),
            "B:0:*:41424344
C:1:EP+0:41424344
D:11:*:4142
E:0:EP+0:41424344
",
        )
        .unwrap();
        std::fs::write(
            p.join("a.ldb"),
            "L1;Target:0;0&1;41424344;45464748\nL2;Target:0;0;EP+0:4142\nL3;y\n",
        )
        .unwrap();
        std::fs::write(p.join("README.txt"), "not signatures").unwrap();
        std::fs::create_dir(p.join("sub")).unwrap();
        std::fs::write(p.join("sub/x.hdb"), "zz").unwrap();
        let default = load_paths(&[p.to_path_buf()]).unwrap();
        assert_eq!(default.signatures.get("hsb"), None);
        assert_eq!(default.skipped.get("pua_hsu"), Some(&1));
        let pua = LoadOptions {
            detect_pua: true,
            ..LoadOptions::default()
        };
        let l = load_paths_with(&[p.to_path_buf()], &pua).unwrap();
        assert!(l.skipped.is_empty());
        assert_eq!(l.signatures.get("hdb"), Some(&1));
        assert_eq!(l.signatures.get("hsb"), Some(&1));
        assert_eq!(l.signatures.get("ndb"), Some(&2));
        assert_eq!(l.signatures.get("ldb"), Some(&1));
        assert_eq!(l.ldb.len(), 1);
        assert_eq!(l.unsupported.get("ldb_offset_ep"), Some(&1));
        assert_eq!(l.unsupported.get("ndb_target_flash"), Some(&1));
        // `E:0:EP+0:..`: an entry-point offset on target 0 is malformed.
        assert_eq!(l.error_total, 3);
        for at in ["a.hdb:2:", "a.ldb:3:", "a.ndb:4:"] {
            assert!(
                l.errors.iter().any(|e| e.contains(at)),
                "{at} {:?}",
                l.errors
            );
        }
        assert!(
            l.names
                .is_pua(l.sha256.0[0].0[0].name_id() + l.sha256.0[0].1)
        );
    }

    #[test]
    fn missing_path_is_fatal() {
        let r = load_paths(&[PathBuf::from("/nonexistent/moat/sigs")]);
        assert!(matches!(r, Err(LoadError::Io { .. })));
    }

    #[test]
    fn containers_load_supported_members_and_count_the_rest() {
        let d = tempfile::tempdir().unwrap();
        let c = make_container(
            27001,
            &[
                (
                    "daily.hdb",
                    b"d41d8cd98f00b204e9800998ecf8427e:0:Cvd.Empty\n",
                ),
                ("daily.ndb", b"Cvd.Body:0:*:41424344\nbroken line\n"),
                ("daily.ldb", b"Cvd.Logical;Target:0;0;41424344\nz;w\n"),
                ("daily.info", b"DAILY:1\n"),
                ("COPYING", b"license"),
            ],
            true,
        );
        std::fs::write(d.path().join("daily.cvd"), &c).unwrap();
        // An older .cld of the same database is ignored.
        std::fs::write(
            d.path().join("daily.cld"),
            make_container(26000, &[("daily.hdb", b"junk\n")], false),
        )
        .unwrap();
        let l = load_paths_with(&[d.path().to_path_buf()], &UNVERIFIED).unwrap();
        assert_eq!(l.signatures.get("hdb"), Some(&1));
        assert_eq!(l.signatures.get("ndb"), Some(&1));
        assert_eq!(l.signatures.get("ldb"), Some(&1));
        assert_eq!(l.unsupported.get("info"), Some(&1));
        assert_eq!(l.versions, vec![("daily".to_string(), 27001)]);
        assert_eq!(l.error_total, 2);
        assert!(
            l.errors
                .iter()
                .any(|e| e.starts_with("daily.cvd/daily.ndb:2: ")),
            "{:?}",
            l.errors
        );
        assert!(
            l.errors
                .iter()
                .any(|e| e.starts_with("daily.cvd/daily.ldb:2: ")),
            "{:?}",
            l.errors
        );
    }

    #[test]
    fn plain_tar_cld_loads() {
        let d = tempfile::tempdir().unwrap();
        let path = d.path().join("bytecode.cld");
        std::fs::write(
            &path,
            make_container(9, &[("b.ndb", b"X:0:*:41424344\n")], false),
        )
        .unwrap();
        let l = load_paths_with(&[path], &UNVERIFIED).unwrap();
        assert_eq!(l.signatures.get("ndb"), Some(&1));
        assert_eq!(l.versions, vec![("bytecode".to_string(), 9)]);
    }

    #[test]
    fn corrupt_container_is_reported_not_fatal() {
        let d = tempfile::tempdir().unwrap();
        std::fs::write(d.path().join("main.cvd"), b"not a cvd at all").unwrap();
        std::fs::write(d.path().join("x.ndb"), b"X:0:*:41424344\n").unwrap();
        let l = load_paths_with(&[d.path().to_path_buf()], &UNVERIFIED).unwrap();
        assert_eq!(l.signatures.get("ndb"), Some(&1));
        assert_eq!(l.error_total, 1);
        assert!(l.errors[0].contains("main.cvd"), "{:?}", l.errors);
        // Verified (the default), an unreadable database refuses the load.
        let r = load_paths(&[d.path().to_path_buf()]);
        assert!(
            matches!(&r, Err(LoadError::Verification { path, .. }) if path.ends_with("main.cvd")),
            "{:?}",
            r.err()
        );
    }

    const SIGNED_CVD: &[u8] = include_bytes!("../../testdata/clamav-test-1.cvd");

    fn load_one(name: &str, data: &[u8], opts: &LoadOptions) -> Result<Loaded, LoadError> {
        let d = tempfile::tempdir().unwrap();
        std::fs::write(d.path().join(name), data).unwrap();
        load_paths_with(&[d.path().join(name)], opts)
    }

    fn refusal(r: Result<Loaded, LoadError>) -> String {
        match r {
            Err(LoadError::Verification { reason, .. }) => reason,
            Err(e) => panic!("not a verification error: {e}"),
            Ok(_) => panic!("a tampered database loaded"),
        }
    }

    /// The signed test database as a `.cld`: same header, plain tar body.
    fn as_cld(cvd: &[u8]) -> Vec<u8> {
        use std::io::Read;
        let mut tar = Vec::new();
        #[allow(clippy::disallowed_methods)] // a known 8 KiB test file
        flate2::read::GzDecoder::new(&cvd[cvd::HEADER_LEN..])
            .read_to_end(&mut tar)
            .unwrap();
        [&cvd[..cvd::HEADER_LEN], &tar[..]].concat()
    }

    #[test]
    fn a_signed_cvd_and_its_cld_verify() {
        let opts = LoadOptions::default();
        let l = load_one("test.cvd", SIGNED_CVD, &opts).unwrap();
        assert_eq!(l.versions, vec![("test".to_string(), 1)]);
        let l = load_one("test.cld", &as_cld(SIGNED_CVD), &opts).unwrap();
        assert_eq!(l.versions, vec![("test".to_string(), 1)]);
    }

    #[test]
    fn a_tampered_cvd_is_refused_unless_verification_is_off() {
        // One byte of the compressed body changed.
        let mut body = SIGNED_CVD.to_vec();
        let at = cvd::HEADER_LEN + 100;
        body[at] ^= 1;
        let reason = refusal(load_one("test.cvd", &body, &LoadOptions::default()));
        assert!(
            reason.contains("MD5") || reason.contains("archive error"),
            "{reason}"
        );
        // The header's MD5 changed to match another body: the signature fails.
        let mut header = SIGNED_CVD.to_vec();
        let text = String::from_utf8_lossy(&header[..cvd::HEADER_LEN]).into_owned();
        let md5_at = text.find("a4ab60ae").unwrap();
        header[md5_at] = b'b';
        let reason = refusal(load_one("test.cvd", &header, &LoadOptions::default()));
        assert!(reason.contains("MD5"), "{reason}");
        // With verification off the same file is read.
        let l = load_one("test.cvd", &header, &UNVERIFIED).unwrap();
        assert_eq!(l.versions, vec![("test".to_string(), 1)]);
    }

    #[test]
    fn a_cld_with_a_changed_member_or_info_is_refused() {
        let cld = as_cld(SIGNED_CVD);
        let find = |needle: &[u8]| cld.windows(needle.len()).position(|w| w == needle).unwrap();
        // A member listed in .info, changed: its SHA-256 no longer matches.
        let mut member = cld.clone();
        member[find(b"There must always")] = b't';
        let reason = refusal(load_one("test.cld", &member, &LoadOptions::default()));
        assert!(
            reason.contains("test.ndb") || reason.contains("test.ldb"),
            "{reason}"
        );
        // The .info list itself changed: its signature no longer verifies.
        let mut info = cld.clone();
        info[find(b"test.ndb:240:") + 10] = b'3';
        let reason = refusal(load_one("test.cld", &info, &LoadOptions::default()));
        assert!(reason.contains(".info"), "{reason}");
        // A database member that .info does not list.
        let mut extra = tar::Builder::new(Vec::new());
        let mut h = tar::Header::new_gnu();
        h.set_size(15);
        h.set_mode(0o644);
        h.set_cksum();
        extra
            .append_data(&mut h, "extra.ndb", &b"X:0:*:41424344\n"[..])
            .unwrap();
        let extra = extra.into_inner().unwrap();
        // Put the member in front of the original archive's members.
        let unlisted = [
            &cld[..cvd::HEADER_LEN],
            &extra[..512 + 512],
            &cld[cvd::HEADER_LEN..],
        ]
        .concat();
        let reason = refusal(load_one("test.cld", &unlisted, &LoadOptions::default()));
        assert!(reason.contains("extra.ndb"), "{reason}");
    }

    #[test]
    fn errors_are_capped_but_counted() {
        let d = tempfile::tempdir().unwrap();
        let bad: String = (0..250).map(|i| format!("bad{i}\n")).collect();
        std::fs::write(d.path().join("x.hsb"), bad).unwrap();
        let l = load_paths(&[d.path().to_path_buf()]).unwrap();
        assert_eq!(l.errors.len(), MAX_ERRORS);
        assert_eq!(l.error_total, 250);
    }

    #[test]
    fn fingerprint_changes_with_content() {
        let d = tempfile::tempdir().unwrap();
        std::fs::write(d.path().join("x.ndb"), b"X:0:*:41424344\n").unwrap();
        let a = load_paths(&[d.path().to_path_buf()])
            .unwrap()
            .fingerprint_hex();
        let b = load_paths(&[d.path().to_path_buf()])
            .unwrap()
            .fingerprint_hex();
        assert_eq!(a, b);
        std::fs::write(d.path().join("x.ndb"), b"X:0:*:41424344\nY:0:*:45464748\n").unwrap();
        let c = load_paths(&[d.path().to_path_buf()])
            .unwrap()
            .fingerprint_hex();
        assert_ne!(a, c);
        assert_eq!(a.len(), 16);
    }
}
