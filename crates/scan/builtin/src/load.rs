//! Reading signature files, directories and containers into one set.
//!
//! Files are split into blocks of [`BLOCK`] bytes that are parsed in
//! parallel (rayon); a block owns the lines that start inside it. Each block
//! produces compact results (hash entries, compiled body signatures, names in
//! its own arena, errors with block-local line numbers) that are merged in
//! order, which also turns local line numbers into file line numbers.
//!
//! Only a path that does not exist or cannot be read is fatal
//! ([`LoadError`]). A malformed line is reported (file and line) and skipped;
//! a broken container is reported and whatever was read from it is kept.

use crate::cvd;
use crate::hashdb::{
    Buckets, HashBuckets, HashEntry, HashFile, HashKind, HashVecs, parse_hash_bytes,
};
use crate::ldb::{self, CompiledLdb};
use crate::names::NameArena;
use crate::ndb::{self, CompiledSig, NdbLineError, parse_ndb_bytes};
use moat_core::Blob;
use rayon::prelude::*;
use sha2::{Digest, Sha256};
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

/// Bytes per parse block.
const BLOCK: u64 = 4 << 20;
/// Longest line accepted.
const MAX_LINE: usize = 16 << 20;
/// Error messages kept (the total is counted).
pub(crate) const MAX_ERRORS: usize = 100;

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
    "cdb", "idb", "fp", "sfp", "ign", "ign2", "pdb", "gdb", "wdb", "ftm", "crb", "cfg", "info",
    "cbc", "hwp", "pwdb", "yar", "yara", "zmd", "rmd", "sdb", "ndbx",
];

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
        "cvd" | "cld" => Some(Class::Container),
        other => UNSUPPORTED
            .iter()
            .find(|u| **u == other)
            .and_then(|u| fk(Kind::Unsupported(u), false)),
    }
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
    loaded: u64,
    unsupported: BTreeMap<&'static str, u64>,
    errors: Vec<(u64, String)>,
    error_total: u64,
}

impl BlockOut {
    fn error(&mut self, line: u64, msg: String) {
        self.error_total += 1;
        if self.errors.len() < MAX_ERRORS {
            self.errors.push((line, msg));
        }
    }

    fn line(&mut self, line: &[u8], fk: FileKind) {
        self.line_starts += 1;
        let local = self.line_starts;
        let line = line.trim_ascii();
        if line.is_empty() || line[0] == b'#' {
            return;
        }
        match fk.kind {
            Kind::Unsupported(k) => *self.unsupported.entry(k).or_default() += 1,
            Kind::Hash(file) => match parse_hash_bytes(line, file) {
                Err(e) => self.error(local, e.to_string()),
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
            Kind::Ndb => match parse_ndb_bytes(line)
                .and_then(|s| ndb::compile(&s, 0).map(|c| (s.name, c)))
            {
                Err(NdbLineError::Unsupported(k)) => *self.unsupported.entry(k).or_default() += 1,
                Err(NdbLineError::Malformed(m)) => self.error(local, m),
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
    buf: &mut Vec<u8>,
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
    let est = (limit / 80).max(16);
    match fk.kind {
        Kind::Hash(HashFile::Hdb) => out.md5.reserve(est),
        Kind::Hash(HashFile::Hsb) => out.sha256.reserve(est),
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
        out.line(&buf[pos..line_end], fk);
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
    pub(crate) signatures: BTreeMap<String, u64>,
    pub(crate) unsupported: BTreeMap<String, u64>,
    pub(crate) errors: Vec<String>,
    pub(crate) error_total: u64,
    /// Containers loaded: (file stem, header version).
    pub(crate) versions: Vec<(String, u64)>,
    fingerprint: Sha256,
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
            signatures: BTreeMap::new(),
            unsupported: BTreeMap::new(),
            errors: Vec::new(),
            error_total: 0,
            versions: Vec::new(),
            fingerprint: Sha256::new(),
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
    fn absorb(&mut self, label: &str, fk: FileKind, blocks: Vec<BlockOut>) {
        let kind_key = match fk.kind {
            Kind::Hash(HashFile::Hdb) => "hdb",
            Kind::Hash(HashFile::Hsb) => "hsb",
            Kind::Hash(HashFile::Mdb) => "mdb",
            Kind::Hash(HashFile::Imp) => "imp",
            Kind::Ndb => "ndb",
            Kind::Ldb => "ldb",
            Kind::Unsupported(_) => "",
        };
        let mut line_base = 0u64;
        for b in blocks {
            let base = match self.names.append(b.names) {
                Ok(base) => base,
                Err(_) => {
                    self.error(format!(
                        "{label}: more signature names than this engine can hold; rest skipped"
                    ));
                    return;
                }
            };
            self.md5.absorb(b.md5, base);
            self.sha1.absorb(b.sha1, base);
            self.sha256.absorb(b.sha256, base);
            self.mdb.absorb(b.mdb, base);
            self.imp.absorb(b.imp, base);
            self.ndb.extend(b.ndb.into_iter().map(|mut c| {
                c.name += base;
                c
            }));
            self.ldb.extend(b.ldb.into_iter().map(|mut c| {
                c.name += base;
                c
            }));
            if b.loaded > 0 {
                *self.signatures.entry(kind_key.to_string()).or_default() += b.loaded;
            }
            for (k, n) in b.unsupported {
                *self.unsupported.entry(k.to_string()).or_default() += n;
            }
            let hidden = b.error_total - b.errors.len() as u64;
            for (line, msg) in b.errors {
                self.error(format!("{label}:{}: {msg}", line_base + line));
            }
            // Errors past a block's own cap still count.
            self.error_total += hidden;
            line_base += b.line_starts;
        }
    }

    /// Parse one signature source (a file or a container member).
    fn parse_source(&mut self, label: &str, blob: &Blob, fk: FileKind) -> std::io::Result<()> {
        let blocks = parse_blocks(blob, fk)?;
        self.absorb(label, fk, blocks);
        Ok(())
    }
}

fn parse_blocks(blob: &Blob, fk: FileKind) -> std::io::Result<Vec<BlockOut>> {
    let len = blob.len();
    let n = len.div_ceil(BLOCK).max(1);
    (0..n)
        .into_par_iter()
        .map_init(Vec::new, |buf, i| {
            parse_block(blob, i * BLOCK, ((i + 1) * BLOCK).min(len), fk, buf)
        })
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

fn load_container(input: &Input, loaded: &mut Loaded) -> Result<(), LoadError> {
    let file = std::fs::File::open(&input.path).map_err(io_err(&input.path))?;
    let fname = input
        .path
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_default();
    let keep = |ext: &str| {
        matches!(
            classify(ext),
            Some(Class::Sig(FileKind {
                kind: Kind::Hash(_) | Kind::Ndb | Kind::Ldb,
                ..
            }))
        )
    };
    let res = cvd::read_container(file, keep, |m| {
        let label = format!("{fname}/{}", m.name);
        match (classify(&m.ext), m.data) {
            (Some(Class::Sig(fk)), Some(data)) => {
                // In-memory sources cannot fail to read.
                if let Err(e) = loaded.parse_source(&label, &Blob::from_vec(data), fk) {
                    loaded.error(format!("{label}: {e}"));
                }
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
    match res {
        Ok(h) => {
            loaded.fingerprint.update(h.version.to_le_bytes());
            loaded.versions.push((stem(&input.path), h.version));
        }
        Err(e) => loaded.error(format!("{}: {e}", input.path.display())),
    }
    Ok(())
}

/// Read every signature source under `paths`.
pub(crate) fn load_paths(paths: &[PathBuf]) -> Result<Loaded, LoadError> {
    let mut loaded = Loaded::new();
    let inputs = newest_containers(collect_inputs(paths, &mut loaded)?);
    for i in &inputs {
        loaded.note_file(&i.path, &i.meta);
    }
    let (containers, files): (Vec<Input>, Vec<Input>) = inputs
        .into_iter()
        .partition(|i| i.ext == "cvd" || i.ext == "cld");
    // Plain files: all in parallel (each file in parallel blocks too).
    let parsed: Vec<(String, FileKind, Vec<BlockOut>)> = files
        .par_iter()
        .filter_map(|i| match classify(&i.ext) {
            Some(Class::Sig(fk)) => Some((i, fk)),
            _ => None,
        })
        .map(|(i, fk)| {
            let blob = Blob::open(&i.path).map_err(io_err(&i.path))?;
            let blocks = parse_blocks(&blob, fk).map_err(io_err(&i.path))?;
            Ok((i.path.display().to_string(), fk, blocks))
        })
        .collect::<Result<_, LoadError>>()?;
    for (label, fk, blocks) in parsed {
        loaded.absorb(&label, fk, blocks);
    }
    for c in &containers {
        load_container(c, &mut loaded)?;
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
            let blocks: Vec<BlockOut> = (0..n)
                .map(|i| {
                    parse_block(
                        &blob,
                        i * block,
                        ((i + 1) * block).min(len),
                        fk(Kind::Hash(HashFile::Hdb)),
                        &mut Vec::new(),
                    )
                    .unwrap()
                })
                .collect();
            let mut l = Loaded::new();
            l.absorb("t.hdb", fk(Kind::Hash(HashFile::Hdb)), blocks);
            assert_eq!(
                l.md5.0.iter().map(Vec::len).sum::<usize>(),
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
        let b = parse_block(&blob, 0, blob.len(), fk(Kind::Ndb), &mut Vec::new()).unwrap();
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
            "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855:*:PUA.Empty\n",
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
        let l = load_paths(&[p.to_path_buf()]).unwrap();
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
                .is_pua(l.sha256.0.iter().flatten().next().unwrap().name_id())
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
        let l = load_paths(&[d.path().to_path_buf()]).unwrap();
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
        let l = load_paths(&[path]).unwrap();
        assert_eq!(l.signatures.get("ndb"), Some(&1));
        assert_eq!(l.versions, vec![("bytecode".to_string(), 9)]);
    }

    #[test]
    fn corrupt_container_is_reported_not_fatal() {
        let d = tempfile::tempdir().unwrap();
        std::fs::write(d.path().join("main.cvd"), b"not a cvd at all").unwrap();
        std::fs::write(d.path().join("x.ndb"), b"X:0:*:41424344\n").unwrap();
        let l = load_paths(&[d.path().to_path_buf()]).unwrap();
        assert_eq!(l.signatures.get("ndb"), Some(&1));
        assert_eq!(l.error_total, 1);
        assert!(l.errors[0].contains("main.cvd"), "{:?}", l.errors);
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
