//! [`BuiltinEngine`]: the loaded signature set and the single-pass scan.

use crate::cache::{self, CacheOutcome};
use crate::eicar::{EICAR_NAME, is_eicar};
use crate::exe::{self, PeMode, Src};
use crate::hashdb::{HashDb, HashTable};
use crate::ldb::{LdbSet, ObjectView, tdb::Placement};
use crate::load::{self, LoadError, LoadOptions, MAX_ERRORS, SignatureParts};
use crate::names::NameArena;
use crate::ndb::{Cursor, Layout, NdbScan, NdbSet, Target, parse::TARGET_HEAD};
use crate::normalize::{self, FileKind};
use md5::Md5;
use moat_core::{
    Blob, Engine, EngineError, EngineInfo, EngineScan, Hit, Object, Reason, ScanContext,
};
use sha1::Sha1;
use sha2::{Digest, Sha256};
use std::collections::BTreeMap;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::{Instant, SystemTime, UNIX_EPOCH};

/// Bytes read per chunk.
pub const DEFAULT_CHUNK: usize = 1 << 20;

/// The builtin engine: ClamAV hash and body signatures plus EICAR.
#[derive(Debug)]
pub struct BuiltinEngine {
    name: String,
    names: NameArena,
    hashes: HashDb,
    /// `.fp`/`.sfp`: hashes of trusted files.
    allow: HashDb,
    /// `.mdb`/`.msb` PE section hashes.
    mdb: HashDb,
    /// `.imp` import-table hashes.
    imp: HashDb,
    ndb: NdbSet,
    /// Logical signatures; their body subsignatures live in `ndb`.
    ldb: LdbSet,
    /// Whether some body signature has target 0, 3 or 7 (see `scan_normalised`).
    layer_sigs: bool,
    info: EngineInfo,
    error_total: u64,
    chunk: usize,
    /// Report every matching signature (`clamscan --allmatch`) rather than
    /// stop at an object's first detection.
    all_match: bool,
    /// The parsed parts of the plain hash files and the containers' hash
    /// members (shared with `hashes`, `mdb`, `imp` and `names`), for a
    /// reload to reuse.
    parts: Arc<SignatureParts>,
    /// How the compiled set was obtained ([`LoadOptions::cache_dir`]).
    cache: CacheOutcome,
}

fn now_secs() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_secs())
}

impl BuiltinEngine {
    /// Load signatures from directories (read non-recursively) and files.
    /// Only an unreadable or missing path is an error; bad lines are
    /// reported in [`EngineInfo::load_errors`] and skipped.
    pub fn load(name: &str, paths: &[PathBuf]) -> Result<BuiltinEngine, LoadError> {
        Self::load_with(name, paths, &LoadOptions::default())
    }

    /// [`BuiltinEngine::load`] with explicit options (PUA databases,
    /// database signature verification).
    pub fn load_with(
        name: &str,
        paths: &[PathBuf],
        opts: &LoadOptions,
    ) -> Result<BuiltinEngine, LoadError> {
        Self::load_reusing(name, paths, opts, None)
    }

    /// [`BuiltinEngine::load_with`] for a reload: the hash tables and names
    /// of every plain hash file that did not change since `previous` was
    /// loaded (same path, size, mtime, inode and ctime), and of the hash
    /// members of every `.cvd`/`.cld` that did not change (same file and
    /// header), are shared with it rather than parsed again, so that the
    /// old and the new engine hold them once. A source is parsed again when
    /// the ignore lists read before it (by content) or the PUA option
    /// changed (they decide what it loads). Body signatures are always
    /// rebuilt, and an unchanged container is still read and verified.
    pub fn load_reusing(
        name: &str,
        paths: &[PathBuf],
        opts: &LoadOptions,
        previous: Option<&SignatureParts>,
    ) -> Result<BuiltinEngine, LoadError> {
        let t0 = Instant::now();
        // The compiled-set cache: only for a load that shares nothing with
        // a running engine (a hit has no parts for a later reload to share).
        let cached = match (&opts.cache_dir, previous) {
            (Some(dir), None) => load::input_files(paths)
                .ok()
                .and_then(|inputs| cache::key(paths, &inputs, opts))
                .map(|key| (dir.as_path(), key)),
            _ => None,
        };
        if let Some((dir, key)) = &cached {
            match cache::read(dir, key) {
                Ok(Some(c)) => return Ok(Self::from_cache(name, paths, opts, c, t0)),
                Ok(None) => {}
                Err(e) => {
                    tracing::warn!(engine = name, error = %e, "compiled signature cache entry unusable, compiling")
                }
            }
        }
        let mut l = load::load_paths_reusing(paths, opts, previous)?;
        let allow = HashDb {
            md5: HashTable::build(std::mem::take(&mut l.fp_md5)),
            sha1: HashTable::build(std::mem::take(&mut l.fp_sha1)),
            sha256: HashTable::build(std::mem::take(&mut l.fp_sha256)),
        };
        let mut ndb_sigs = std::mem::take(&mut l.ndb);
        let ldb = LdbSet::build(std::mem::take(&mut l.ldb), &mut ndb_sigs);
        let (md5, sha1, sha256) = (
            std::mem::take(&mut l.md5),
            std::mem::take(&mut l.sha1),
            std::mem::take(&mut l.sha256),
        );
        let (mdb_b, imp_b) = (std::mem::take(&mut l.mdb), std::mem::take(&mut l.imp));
        let ((hashes, (mdb, imp)), ndb) = rayon::join(
            || {
                (
                    HashDb {
                        md5: HashTable::build(md5),
                        sha1: HashTable::build(sha1),
                        sha256: HashTable::build(sha256),
                    },
                    (HashDb::build(mdb_b), HashDb::build(imp_b)),
                )
            },
            || {
                let mut set = NdbSet::build(ndb_sigs);
                set.set_first_match(!opts.all_match);
                for &(sig, cap, track_last) in ldb.hit_caps() {
                    set.limit_hits(sig, cap, track_last);
                }
                set
            },
        );
        l.names.shrink_to_fit();
        let mut signatures = std::mem::take(&mut l.signatures);
        signatures.insert("eicar".into(), 1);
        let mut version = String::new();
        for (stem, v) in &l.versions {
            version.push_str(&format!("{stem}-{v}+"));
        }
        version.push_str(&l.fingerprint_hex());
        let mut load_errors = std::mem::take(&mut l.errors);
        if l.error_total > MAX_ERRORS as u64 {
            load_errors.push(format!(
                "{} more load errors not shown ({} in total)",
                l.error_total - MAX_ERRORS as u64,
                l.error_total
            ));
        }
        tracing::info!(
            engine = name,
            elapsed_ms = t0.elapsed().as_millis() as u64,
            md5 = hashes.md5.len(),
            sha1 = hashes.sha1.len(),
            sha256 = hashes.sha256.len(),
            ndb = ndb.len(),
            ldb = ldb.len(),
            reused_files = l.reused_files,
            delta_files = l.delta_files,
            index_bytes = ndb.index_bytes(),
            load_errors = l.error_total,
            signature_version = %version,
            "builtin signatures loaded"
        );
        let compiled = cache::Compiled {
            names: std::mem::take(&mut l.names),
            hashes,
            allow,
            mdb,
            imp,
            meta: cache::Meta {
                layer_sigs: [Target::Any, Target::Html, Target::Ascii]
                    .iter()
                    .any(|&t| ndb.has_target(t)),
                signature_version: version,
                signatures,
                unsupported: std::mem::take(&mut l.unsupported),
                skipped: std::mem::take(&mut l.skipped),
                load_errors,
                error_total: l.error_total,
            },
            ndb,
            ldb,
        };
        let parts = Arc::new(std::mem::take(&mut l.parts));
        let mut engine = Self::assemble(name, paths, opts, compiled, parts, CacheOutcome::Off);
        let compile = t0.elapsed();
        if let Some((dir, key)) = cached {
            let t1 = Instant::now();
            let bytes = engine.entry_bytes_estimate();
            engine.cache = if !cache::worth_writing(bytes, compile) {
                // Reading it would cost about what compiling did.
                CacheOutcome::NotWorth
            } else {
                match cache::write(dir, &key, &engine.compiled()) {
                    Ok(()) => CacheOutcome::Stored,
                    Err(e) => {
                        tracing::warn!(engine = name, error = %e, "compiled signature cache not written");
                        CacheOutcome::Failed
                    }
                }
            };
            tracing::debug!(
                engine = name,
                elapsed_ms = t1.elapsed().as_millis() as u64,
                compile_ms = compile.as_millis() as u64,
                entry_bytes = bytes as u64,
                outcome = engine.cache.as_str(),
                "compiled signature cache"
            );
        }
        Ok(engine)
    }

    /// About the size of the cache entry of this set: its hash entries,
    /// names and body-signature index.
    fn entry_bytes_estimate(&self) -> usize {
        [&self.hashes, &self.allow, &self.mdb, &self.imp]
            .iter()
            .map(|h| h.cache_bytes())
            .sum::<usize>()
            + self.names.bytes()
            + self.ndb.index_bytes()
    }

    /// The compiled parts, for the cache.
    fn compiled(&self) -> cache::CompiledRef<'_> {
        cache::CompiledRef {
            names: &self.names,
            hashes: &self.hashes,
            allow: &self.allow,
            mdb: &self.mdb,
            imp: &self.imp,
            ndb: &self.ndb,
            ldb: &self.ldb,
            meta: cache::MetaRef {
                layer_sigs: self.layer_sigs,
                signature_version: &self.info.signature_version,
                signatures: &self.info.signatures,
                unsupported: &self.info.unsupported,
                skipped: &self.info.skipped,
                load_errors: &self.info.load_errors,
                error_total: self.error_total,
            },
        }
    }

    /// An engine from a cache entry: what a load of the same files would
    /// have compiled.
    fn from_cache(
        name: &str,
        paths: &[PathBuf],
        opts: &LoadOptions,
        c: cache::Compiled,
        t0: Instant,
    ) -> BuiltinEngine {
        tracing::info!(
            engine = name,
            elapsed_ms = t0.elapsed().as_millis() as u64,
            ndb = c.ndb.len(),
            ldb = c.ldb.len(),
            load_errors = c.meta.error_total,
            signature_version = %c.meta.signature_version,
            "builtin signatures loaded from the compiled cache"
        );
        Self::assemble(name, paths, opts, c, Arc::default(), CacheOutcome::Hit)
    }

    /// The engine of a compiled (or cached) set.
    fn assemble(
        name: &str,
        paths: &[PathBuf],
        opts: &LoadOptions,
        c: cache::Compiled,
        parts: Arc<SignatureParts>,
        cache: CacheOutcome,
    ) -> BuiltinEngine {
        let m = c.meta;
        BuiltinEngine {
            name: name.to_string(),
            names: c.names,
            hashes: c.hashes,
            allow: c.allow,
            mdb: c.mdb,
            imp: c.imp,
            ndb: c.ndb,
            ldb: c.ldb,
            layer_sigs: m.layer_sigs,
            info: EngineInfo {
                name: name.to_string(),
                kind: "builtin".into(),
                version: env!("CARGO_PKG_VERSION").into(),
                signature_version: m.signature_version,
                signatures: m.signatures,
                unsupported: m.unsupported,
                skipped: m.skipped,
                load_errors: m.load_errors,
                loaded_at: now_secs(),
                last_reload_error: None,
                sources: paths.iter().map(|p| p.display().to_string()).collect(),
                built_at: crate::age::newest_build_time(paths),
            },
            error_total: m.error_total,
            chunk: DEFAULT_CHUNK,
            all_match: opts.all_match,
            parts,
            cache,
        }
    }

    /// How this engine's compiled set was obtained: compiled (`Off`,
    /// `Stored`, `Failed`) or read from the cache (`Hit`).
    pub fn cache_outcome(&self) -> CacheOutcome {
        self.cache
    }

    /// What a reload can share with this engine
    /// ([`BuiltinEngine::load_reusing`]).
    pub fn signature_parts(&self) -> Arc<SignatureParts> {
        Arc::clone(&self.parts)
    }

    /// An engine with only the built-in EICAR signature.
    pub fn eicar_only(name: &str) -> BuiltinEngine {
        let mut signatures = BTreeMap::new();
        signatures.insert("eicar".into(), 1);
        BuiltinEngine {
            name: name.to_string(),
            names: NameArena::default(),
            hashes: HashDb::default(),
            allow: HashDb::default(),
            mdb: HashDb::default(),
            imp: HashDb::default(),
            ndb: NdbSet::empty(),
            ldb: LdbSet::default(),
            layer_sigs: false,
            info: EngineInfo {
                name: name.to_string(),
                kind: "builtin".into(),
                version: env!("CARGO_PKG_VERSION").into(),
                signature_version: "eicar".into(),
                signatures,
                loaded_at: now_secs(),
                ..EngineInfo::default()
            },
            error_total: 0,
            chunk: DEFAULT_CHUNK,
            all_match: true,
            parts: Arc::default(),
            cache: CacheOutcome::Off,
        }
    }

    /// The same engine in first-match (`false`) or all-match mode
    /// ([`LoadOptions::all_match`]); [`BuiltinEngine::eicar_only`] starts in
    /// all-match mode.
    pub fn with_all_match(self, all_match: bool) -> BuiltinEngine {
        BuiltinEngine { all_match, ..self }
    }

    /// Read objects in chunks of `bytes` (at least 16). For tests and benchmarks.
    #[doc(hidden)]
    pub fn with_chunk_size(mut self, bytes: usize) -> BuiltinEngine {
        self.chunk = bytes.max(16);
        self
    }

    /// How many load errors there were (only the first 100 are kept as messages).
    pub fn load_error_count(&self) -> u64 {
        self.error_total
    }

    /// Heap bytes of the body-signature candidate index.
    pub fn index_bytes(&self) -> usize {
        self.ndb.index_bytes()
    }

    fn hit(&self, id: u32) -> Hit {
        Hit {
            signature: String::from_utf8_lossy(self.names.get(id)).into_owned(),
            suspicious: self.names.is_pua(id),
        }
    }

    /// Scan a blob; `sha256` is its digest when the caller knows it.
    pub fn scan_blob(
        &self,
        blob: &Blob,
        sha256: Option<[u8; 32]>,
        ctx: &ScanContext,
    ) -> Result<EngineScan, EngineError> {
        self.scan_placed(blob, sha256, Placement::default(), ctx)
    }

    /// [`Self::scan_blob`] for an object at `place` (its archive depth).
    ///
    /// In first-match mode (`LoadOptions::all_match` off) the scan stops at
    /// the object's first detection and reports that one name; the whole
    /// object is still hashed when the allow-list needs it, since a trusted
    /// object has no detection at all.
    pub fn scan_placed(
        &self,
        blob: &Blob,
        sha256: Option<[u8; 32]>,
        place: Placement,
        ctx: &ScanContext,
    ) -> Result<EngineScan, EngineError> {
        if ctx.expired() {
            return Err(EngineError::Timeout);
        }
        let first = !self.all_match && !ctx.all_match;
        let len = blob.len();
        let head = match blob.as_slice() {
            Some(d) => d[..d.len().min(TARGET_HEAD)].to_vec(),
            None => blob.head(TARGET_HEAD)?,
        };
        let mut hits = Vec::new();
        if is_eicar(&head) {
            hits.push(Hit {
                signature: EICAR_NAME.to_string(),
                suspicious: false,
            });
        }
        // ClamAV's file type decides which layers are scanned with which
        // targets (see `normalize`): HTML's raw bytes are not scanned at all.
        // The allow-list hashes the object itself whatever its type.
        let kind = normalize::classify(&head);
        let raw = normalize::raw_plan(kind);
        let mut hs = Hashers {
            md5: ((raw.scan && self.hashes.md5.wants(len)) || self.allow.md5.wants(len))
                .then(Md5::new),
            sha1: ((raw.scan && self.hashes.sha1.wants(len)) || self.allow.sha1.wants(len))
                .then(Sha1::new),
            sha256: (sha256.is_none()
                && ((raw.scan && self.hashes.sha256.wants(len)) || self.allow.sha256.wants(len)))
            .then(Sha256::new),
        };
        let mut st = self.ndb.start(&head);
        if !first {
            st.report_all();
        }
        // The built-in EICAR does not end a first-match scan: the database's
        // signatures come first, as for clamscan, which has no built-in one
        // (a database's own EICAR signature names the detection).
        let mut detected = false;
        if !detected && (self.ndb.needs_layout() || self.ldb.needs_exe()) {
            st.layout = self.layout(blob, &head)?;
        }
        if let Some(t) = raw.extra {
            st.enable(t);
        }
        let mut need_ndb = !detected && raw.scan && !self.ndb.is_empty();
        let needs_pass = need_ndb || hs.any();
        if needs_pass {
            let deadline = Some(ctx.deadline);
            match blob.as_slice() {
                Some(data) => {
                    let mut cur = Cursor::whole(data, deadline);
                    // `pos`: next anchor position to test; `hashed`: bytes hashed so far.
                    let (mut pos, mut hashed) = (0usize, 0usize);
                    while hashed < data.len() {
                        let end = (pos + self.chunk).min(data.len());
                        hs.update(&data[hashed..end]);
                        hashed = end;
                        if need_ndb {
                            let last = end == data.len();
                            pos += self.ndb.scan_window(
                                &data[pos..end],
                                pos as u64,
                                last,
                                &mut cur,
                                &mut st,
                            )?;
                            if st.done {
                                detected = true;
                                need_ndb = false;
                                hs.keep_only(&self.allow, len);
                                if !hs.any() {
                                    break;
                                }
                            }
                        } else {
                            pos = end;
                        }
                        if ctx.expired() {
                            return Err(EngineError::Timeout);
                        }
                    }
                }
                None => {
                    let overlap = NdbSet::OVERLAP;
                    // Small objects get a buffer of their own size.
                    let chunk = self.chunk.min(usize::try_from(len).unwrap_or(usize::MAX));
                    let mut buf = vec![0u8; overlap + chunk];
                    let mut have = 0usize;
                    let mut pos = 0u64;
                    while pos < len {
                        let n = blob.read_at(pos, &mut buf[have..have + chunk])?;
                        if n == 0 {
                            return Err(EngineError::Io(std::io::Error::new(
                                std::io::ErrorKind::UnexpectedEof,
                                format!("content ended at {pos} of {len} bytes"),
                            )));
                        }
                        hs.update(&buf[have..have + n]);
                        let total = have + n;
                        let mut done = total;
                        if need_ndb {
                            let window = &buf[..total];
                            let base = pos - have as u64;
                            let last = pos + n as u64 >= len;
                            let mut cur = Cursor::windowed(blob, window, base, deadline);
                            done = self
                                .ndb
                                .scan_window(window, base, last, &mut cur, &mut st)?;
                            if st.done {
                                detected = true;
                                need_ndb = false;
                                done = total;
                                hs.keep_only(&self.allow, len);
                            }
                        }
                        pos += n as u64;
                        if !need_ndb && !hs.any() {
                            break;
                        }
                        buf.copy_within(done..total, 0);
                        have = total - done;
                        if ctx.expired() {
                            return Err(EngineError::Timeout);
                        }
                    }
                }
            }
        }
        let md5: Option<[u8; 16]> = hs.md5.map(|h| h.finalize().into());
        let sha1: Option<[u8; 20]> = hs.sha1.map(|h| h.finalize().into());
        let digest: Option<[u8; 32]> = hs.sha256.map(|h| h.finalize().into()).or(sha256);
        if self.trusted(md5.as_ref(), sha1.as_ref(), digest.as_ref(), len) {
            tracing::debug!(engine = %self.name, "allow-listed object: no detection");
            return Ok(EngineScan {
                hits: Vec::new(),
                trusted: true,
            });
        }
        let mut ids = Vec::new();
        if first && detected {
            // EICAR or one body signature.
            ids.extend(st.found.first().copied());
            return Ok(self.finish(hits, ids, first));
        }
        // Hash signatures apply where the raw bytes are scanned.
        if raw.scan {
            lookup_all(
                &self.hashes,
                md5.as_ref(),
                sha1.as_ref(),
                digest.as_ref(),
                len,
                &mut ids,
            );
        }
        ids.extend_from_slice(&st.found);
        if first && !ids.is_empty() {
            return Ok(self.finish(hits, ids, first));
        }
        self.scan_pe_hashes(blob, &head, ctx, &mut ids)?;
        if first && !ids.is_empty() {
            return Ok(self.finish(hits, ids, first));
        }
        if raw.scan && !self.ldb.is_empty() {
            // EntryPoint/NumberOfSections need the executable layout.
            if self.ldb.needs_exe() && matches!(st.layout, Layout::NotExe) {
                st.layout = self.layout(blob, &head)?;
            }
            let exe = match &st.layout {
                Layout::Exe(info) => Some(info),
                _ => None,
            };
            let view = ObjectView {
                blob,
                head: &head,
                extra_target: raw.extra,
                exe,
                place,
            };
            ids.extend(self.evaluate_ldb(&st, &view, ctx)?);
            if first && !ids.is_empty() {
                return Ok(self.finish(hits, ids, first));
            }
        }
        self.scan_normalised(blob, kind, place, ctx, &mut ids)?;
        Ok(self.finish(hits, ids, first))
    }

    /// The scan's answer from the name ids found and the built-in EICAR's
    /// hit, in that order (only the first detection in first-match mode:
    /// EICAR's only when the database found nothing).
    fn finish(&self, eicar: Vec<Hit>, ids: Vec<u32>, first: bool) -> EngineScan {
        let mut hits: Vec<Hit> = Vec::new();
        for h in ids.into_iter().map(|id| self.hit(id)).chain(eicar) {
            if first && !hits.is_empty() {
                break;
            }
            if !hits.iter().any(|x| x.signature == h.signature) {
                hits.push(h);
            }
        }
        if !hits.is_empty() {
            tracing::debug!(engine = %self.name, hits = hits.len(), "builtin detection");
        }
        EngineScan {
            hits,
            trusted: false,
        }
    }

    /// Whether the object's hashes are on the `.fp`/`.sfp` allow-list.
    fn trusted(
        &self,
        md5: Option<&[u8; 16]>,
        sha1: Option<&[u8; 20]>,
        sha256: Option<&[u8; 32]>,
        len: u64,
    ) -> bool {
        let mut ids = Vec::new();
        lookup_all(&self.allow, md5, sha1, sha256, len, &mut ids);
        !ids.is_empty()
    }

    /// Evaluate the logical signatures on one scanned object or layer.
    fn evaluate_ldb(
        &self,
        st: &NdbScan,
        view: &ObjectView<'_>,
        ctx: &ScanContext,
    ) -> Result<Vec<u32>, EngineError> {
        if st.hits_truncated {
            return Err(EngineError::Unscannable {
                reason: Reason::LimitsExceeded,
                detail: format!(
                    "more than {} logical-subsignature matches",
                    crate::ndb::MAX_HITS
                ),
            });
        }
        self.ldb.evaluate(st, view, Some(ctx.deadline))
    }

    /// Scan ClamAV's normalised layers of a text or HTML object (see
    /// [`crate::normalize`]): each layer's body signatures with target 0 and
    /// the layer's target, and its hashes when ClamAV checks them.
    fn scan_normalised(
        &self,
        blob: &Blob,
        kind: FileKind,
        place: Placement,
        ctx: &ScanContext,
        ids: &mut Vec<u32>,
    ) -> Result<(), EngineError> {
        let len = blob.len();
        let any_hash =
            self.hashes.md5.len() + self.hashes.sha1.len() + self.hashes.sha256.len() > 0;
        // Body signatures that can match a layer: target 0, 3 (HTML) or 7 (text).
        let layer_sigs = self.layer_sigs;
        if !normalize::wants_layers(kind, len) || (!layer_sigs && self.ldb.is_empty() && !any_hash)
        {
            return Ok(());
        }
        let owned;
        let data: &[u8] = match blob.as_slice() {
            Some(d) => d,
            None => {
                owned = read_all(blob)?;
                &owned
            }
        };
        for layer in normalize::layers(kind, data) {
            if ctx.expired() {
                return Err(EngineError::Timeout);
            }
            if !self.all_match && !ids.is_empty() {
                return Ok(());
            }
            if layer.hashes {
                let n = layer.data.len() as u64;
                if self.hashes.md5.wants(n) {
                    self.hashes.md5.lookup(&Md5::digest(&layer.data), n, ids);
                }
                if self.hashes.sha1.wants(n) {
                    self.hashes.sha1.lookup(&Sha1::digest(&layer.data), n, ids);
                }
                if self.hashes.sha256.wants(n) {
                    self.hashes
                        .sha256
                        .lookup(&Sha256::digest(&layer.data), n, ids);
                }
            }
            if layer_sigs && self.ldb.is_empty() {
                let found = self.ndb.scan_layer(
                    &layer.data,
                    &[layer.target],
                    Some(ctx.deadline),
                    ctx.all_match,
                )?;
                ids.extend_from_slice(&found);
            } else if !self.ldb.is_empty() {
                // Logical signatures are evaluated per layer, as ClamAV
                // evaluates them per scanned map.
                let st = self.ndb.scan_layer_state(
                    &layer.data,
                    &[layer.target],
                    Some(ctx.deadline),
                    ctx.all_match,
                )?;
                ids.extend_from_slice(&st.found);
                if st.done {
                    // First-match mode: detected in this layer.
                    return Ok(());
                }
                let blob = Blob::from_vec(layer.data);
                let view = ObjectView {
                    blob: &blob,
                    head: &[],
                    extra_target: Some(layer.target),
                    exe: None,
                    place,
                };
                ids.extend(self.evaluate_ldb(&st, &view, ctx)?);
            }
        }
        Ok(())
    }
}

/// The whole-object digests a scan computes (only those some signature or
/// the allow-list could need for this object's size).
struct Hashers {
    md5: Option<Md5>,
    sha1: Option<Sha1>,
    sha256: Option<Sha256>,
}

impl Hashers {
    fn update(&mut self, data: &[u8]) {
        if let Some(h) = self.md5.as_mut() {
            h.update(data);
        }
        if let Some(h) = self.sha1.as_mut() {
            h.update(data);
        }
        if let Some(h) = self.sha256.as_mut() {
            h.update(data);
        }
    }

    fn any(&self) -> bool {
        self.md5.is_some() || self.sha1.is_some() || self.sha256.is_some()
    }

    /// Drop the digests the allow-list does not need (first-match mode,
    /// once detected: hash signatures cannot add anything).
    fn keep_only(&mut self, allow: &HashDb, len: u64) {
        if !allow.md5.wants(len) {
            self.md5 = None;
        }
        if !allow.sha1.wants(len) {
            self.sha1 = None;
        }
        if !allow.sha256.wants(len) {
            self.sha256 = None;
        }
    }
}

/// The whole content of a blob (callers bound its size).
fn read_all(blob: &Blob) -> Result<Vec<u8>, EngineError> {
    let len = usize::try_from(blob.len())
        .map_err(|_| EngineError::Io(std::io::Error::other("object too large to normalise")))?;
    let mut buf = vec![0u8; len];
    let mut at = 0usize;
    while at < len {
        let n = blob.read_at(at as u64, &mut buf[at..])?;
        if n == 0 {
            return Err(EngineError::Io(std::io::Error::new(
                std::io::ErrorKind::UnexpectedEof,
                format!("content ended at {at} of {len} bytes"),
            )));
        }
        at += n;
    }
    Ok(buf)
}

impl BuiltinEngine {
    /// The executable layout for offsets (`cli_targetinfo`): PE for
    /// `MZ`, ELF for `\x7fELF`, broken when those headers do not parse.
    /// (ClamAV types only `MZ` files as MS-EXE: a `ZM` file, which its PE
    /// parser would accept, is never parsed as a PE.)
    fn layout(&self, blob: &Blob, head: &[u8]) -> Result<Layout, EngineError> {
        let src = Src::new(blob, head);
        let is_exe = head.starts_with(b"MZ") || head.starts_with(b"\x7fELF");
        if !is_exe {
            return Ok(Layout::NotExe);
        }
        match exe::parse(&src, PeMode::Target) {
            Ok(Some(info)) => Ok(Layout::Exe(info)),
            Ok(None) => Ok(Layout::NotExe),
            Err(exe::ExeError::Io(e)) => Err(EngineError::Io(e)),
            Err(e) => {
                tracing::debug!(engine = %self.name, "executable headers not parsed: {e}");
                Ok(Layout::Broken)
            }
        }
    }

    /// `.mdb`/`.msb` and `.imp` signatures on a PE (as `cli_scanpe`): each
    /// section's raw data (`rsz` bytes at `raw`) is hashed, and for PE32
    /// files the import table. A file whose headers ClamAV would refuse
    /// gets neither, as in ClamAV.
    fn scan_pe_hashes(
        &self,
        blob: &Blob,
        head: &[u8],
        ctx: &ScanContext,
        ids: &mut Vec<u32>,
    ) -> Result<(), EngineError> {
        if (self.mdb.is_empty() && self.imp.is_empty()) || !head.starts_with(b"MZ") {
            return Ok(());
        }
        let src = Src::new(blob, head);
        let info = match exe::pe::parse(&src, PeMode::Scan) {
            Ok(i) => i,
            Err(exe::ExeError::Io(e)) => return Err(EngineError::Io(e)),
            Err(e) => {
                tracing::debug!(engine = %self.name, "PE headers not parsed: {e}");
                return Ok(());
            }
        };
        if !self.mdb.is_empty() {
            // File-backed objects are read in chunks (allocated on first use).
            let mut buf = Vec::new();
            for s in info.sections.iter().filter(|s| s.rsz != 0) {
                let size = u64::from(s.rsz);
                if !self.mdb.wants(size) {
                    continue;
                }
                self.mdb.scan_with(Some(size), ids, |sink| {
                    let (mut off, end) = (u64::from(s.raw), u64::from(s.raw) + size);
                    if let Some(data) = blob.as_slice() {
                        // The parser keeps raw..raw+rsz inside the object.
                        let part = data.get(off as usize..end as usize).ok_or_else(|| {
                            EngineError::Other(format!("section at {off} outside the object"))
                        })?;
                        sink(part);
                        return Ok(size);
                    }
                    if buf.is_empty() {
                        buf = vec![0u8; self.chunk.clamp(16, 1 << 20)];
                    }
                    while off < end {
                        let n = ((end - off) as usize).min(buf.len());
                        let got = blob.read_at(off, &mut buf[..n])?;
                        if got != n {
                            return Err(EngineError::Io(std::io::Error::new(
                                std::io::ErrorKind::UnexpectedEof,
                                format!("section data ended at {off}"),
                            )));
                        }
                        sink(&buf[..n]);
                        off += n as u64;
                        if ctx.expired() {
                            return Err(EngineError::Timeout);
                        }
                    }
                    Ok(size)
                })?;
            }
        }
        if !self.imp.is_empty() && !info.pe32plus {
            let r = self.imp.scan_with(None, ids, |sink| {
                exe::imports::import_string(&src, &info, sink).map(u64::from)
            });
            match r {
                Ok(()) => {}
                Err(exe::imports::ImpError::Exe(exe::ExeError::Io(e))) => {
                    return Err(EngineError::Io(e));
                }
                Err(e @ exe::imports::ImpError::TooLarge) => {
                    return Err(EngineError::Unscannable {
                        reason: moat_core::Reason::LimitsExceeded,
                        detail: e.to_string(),
                    });
                }
                Err(e) => tracing::debug!(engine = %self.name, "no import hash: {e}"),
            }
        }
        Ok(())
    }
}

/// Look the digests that were computed up in `db`.
fn lookup_all(
    db: &HashDb,
    md5: Option<&[u8; 16]>,
    sha1: Option<&[u8; 20]>,
    sha256: Option<&[u8; 32]>,
    len: u64,
    ids: &mut Vec<u32>,
) {
    // Strongest digest first: in first-match mode the first name is reported.
    if let Some(d) = sha256.filter(|_| db.sha256.wants(len)) {
        db.sha256.lookup(d, len, ids);
    }
    if let Some(d) = sha1.filter(|_| db.sha1.wants(len)) {
        db.sha1.lookup(d, len, ids);
    }
    if let Some(d) = md5.filter(|_| db.md5.wants(len)) {
        db.md5.lookup(d, len, ids);
    }
}

impl Engine for BuiltinEngine {
    fn first_match(&self) -> bool {
        !self.all_match
    }

    fn name(&self) -> &str {
        &self.name
    }

    /// First-match and all-match engines give different findings for the
    /// same object: the mode is part of the verdict-cache key.
    fn fingerprint(&self) -> String {
        let i = &self.info;
        let mode = if self.all_match { "" } else { ":first-match" };
        format!("{}:{}:{}{mode}", i.name, i.version, i.signature_version)
    }

    fn info(&self) -> EngineInfo {
        self.info.clone()
    }

    fn scan(&self, obj: &Object<'_>, ctx: &ScanContext) -> Result<EngineScan, EngineError> {
        let place = Placement { depth: obj.depth };
        self.scan_placed(obj.data, obj.sha256, place, ctx)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::eicar::EICAR;
    use std::io::Write;
    use std::path::Path;
    use std::time::Duration;

    fn ctx() -> ScanContext {
        ScanContext::within(Duration::from_secs(60))
    }

    fn names(r: &EngineScan) -> Vec<&str> {
        r.hits.iter().map(|h| h.signature.as_str()).collect()
    }

    /// A deterministic pseudo-random buffer (xorshift).
    fn noise(n: usize, seed: u64) -> Vec<u8> {
        let mut x = seed | 1;
        (0..n)
            .map(|_| {
                x ^= x << 13;
                x ^= x >> 7;
                x ^= x << 17;
                x as u8
            })
            .collect()
    }

    fn engine_with(files: &[(&str, &str)]) -> (tempfile::TempDir, BuiltinEngine) {
        engine_with_opts(files, &LoadOptions::default())
    }

    fn engine_with_pua(files: &[(&str, &str)]) -> (tempfile::TempDir, BuiltinEngine) {
        let opts = LoadOptions {
            detect_pua: true,
            ..LoadOptions::default()
        };
        engine_with_opts(files, &opts)
    }

    fn engine_with_opts(
        files: &[(&str, &str)],
        opts: &LoadOptions,
    ) -> (tempfile::TempDir, BuiltinEngine) {
        let d = tempfile::tempdir().unwrap();
        for (n, c) in files {
            std::fs::write(d.path().join(n), c).unwrap();
        }
        let e = BuiltinEngine::load_with("test", &[d.path().to_path_buf()], opts).unwrap();
        (d, e)
    }

    fn file_blob(data: &[u8]) -> Blob {
        let mut f = tempfile::tempfile().unwrap();
        f.write_all(data).unwrap();
        let len = data.len() as u64;
        Blob::File {
            file: std::sync::Arc::new(f),
            len,
        }
    }

    /// A set of every compiled kind the cache holds: bodies, logical
    /// signatures with PCRE and byte-compare subsignatures, hashes.
    fn cache_set() -> Vec<(&'static str, String)> {
        let md5 = |d: &[u8]| hex::encode(Md5::digest(d));
        vec![
            ("b.ndb", NDB.to_string()),
            (
                "l.ldb",
                "L.Pcre;Engine:81-255,Target:0;0&1;6b6579776f7264;0/ab+c[0-9]{3}/i\n\
                 L.Cmp;Engine:81-255,Target:0;0&1;4d41524b;0(>>4#ib2#=0x4142)\n"
                    .to_string(),
            ),
            ("h.hdb", format!("{}:14:Hash.A\n", md5(b"hashed content"))),
            ("bad.hdb", "nonsense\n".to_string()),
        ]
    }

    fn cache_inputs() -> Vec<Vec<u8>> {
        let mut long = noise(500, 3);
        long.extend((1u8..=0x18).collect::<Vec<u8>>());
        vec![
            long,
            b"xx keyword yy ABBBc123 zz".to_vec(),
            b"hashed content".to_vec(),
            b"..MARKBA..".to_vec(),
            noise(4000, 9),
        ]
    }

    /// A signature directory holding [`cache_set`], and an empty cache directory.
    fn cache_fixture() -> (tempfile::TempDir, tempfile::TempDir) {
        let sigs = tempfile::tempdir().unwrap();
        for (n, c) in cache_set() {
            std::fs::write(sigs.path().join(n), c).unwrap();
        }
        (sigs, tempfile::tempdir().unwrap())
    }

    fn cached_load(sigs: &Path, cache: &Path) -> BuiltinEngine {
        let opts = LoadOptions {
            cache_dir: Some(cache.to_path_buf()),
            ..LoadOptions::default()
        };
        BuiltinEngine::load_with("test", &[sigs.to_path_buf()], &opts).unwrap()
    }

    fn entries(cache: &Path) -> usize {
        std::fs::read_dir(cache).map_or(0, |d| d.count())
    }

    #[test]
    fn a_set_read_from_the_compiled_cache_scans_as_the_compiled_one() {
        let (sigs, cache) = cache_fixture();
        let fresh = cached_load(sigs.path(), cache.path());
        assert_eq!(fresh.cache_outcome(), CacheOutcome::Stored);
        let hit = cached_load(sigs.path(), cache.path());
        assert_eq!(hit.cache_outcome(), CacheOutcome::Hit);
        assert_eq!(entries(cache.path()), 1);
        let (a, b) = (fresh.info(), hit.info());
        assert_eq!(a.signature_version, b.signature_version);
        assert_eq!(a.signatures, b.signatures);
        assert_eq!(a.unsupported, b.unsupported);
        assert_eq!(a.load_errors, b.load_errors);
        assert!(
            !b.load_errors.is_empty(),
            "the bad line is reported from the cache too"
        );
        for (i, data) in cache_inputs().iter().enumerate() {
            for blob in [Blob::from_vec(data.clone()), file_blob(data)] {
                let x = fresh.scan_blob(&blob, None, &ctx()).unwrap();
                let y = hit.scan_blob(&blob, None, &ctx()).unwrap();
                assert_eq!(names(&x), names(&y), "input {i}");
                let want: &[&str] = match i {
                    0 => &["Body.Long"],
                    1 => &["L.Pcre"],
                    2 => &["Hash.A"],
                    _ => &[],
                };
                for w in want {
                    assert!(names(&y).contains(w), "input {i}: {:?}", names(&y));
                }
            }
        }
        let eicar = Blob::from_vec(EICAR.to_vec());
        assert_eq!(
            names(&hit.scan_blob(&eicar, None, &ctx()).unwrap()),
            vec!["Eicar-Test-Signature"]
        );
    }

    #[test]
    fn a_changed_signature_file_compiles_again_and_replaces_the_cached_set() {
        let (sigs, cache) = cache_fixture();
        let first = cached_load(sigs.path(), cache.path());
        assert_eq!(first.cache_outcome(), CacheOutcome::Stored);
        let data = b"the new signature's bytes 99887766554433".to_vec();
        assert!(
            names(
                &first
                    .scan_blob(&Blob::from_vec(data.clone()), None, &ctx())
                    .unwrap()
            )
            .is_empty()
        );
        std::fs::write(
            sigs.path().join("new.ndb"),
            "Body.New:0:*:3939383837373636353534343333\n",
        )
        .unwrap();
        let second = cached_load(sigs.path(), cache.path());
        assert_eq!(second.cache_outcome(), CacheOutcome::Stored);
        assert_eq!(entries(cache.path()), 1, "the older entry is removed");
        let r = second
            .scan_blob(&Blob::from_vec(data), None, &ctx())
            .unwrap();
        assert_eq!(names(&r), vec!["Body.New"]);
        assert_eq!(
            cached_load(sigs.path(), cache.path()).cache_outcome(),
            CacheOutcome::Hit
        );
    }

    #[test]
    fn a_corrupt_cache_entry_is_compiled_again() {
        let (sigs, cache) = cache_fixture();
        cached_load(sigs.path(), cache.path());
        let entry = std::fs::read_dir(cache.path())
            .unwrap()
            .next()
            .unwrap()
            .unwrap()
            .path();
        #[allow(clippy::disallowed_methods)] // the test's own small entry
        let mut bytes = std::fs::read(&entry).unwrap();
        bytes.truncate(bytes.len() / 2);
        std::fs::write(&entry, bytes).unwrap();
        let again = cached_load(sigs.path(), cache.path());
        assert_eq!(again.cache_outcome(), CacheOutcome::Stored);
        let r = again
            .scan_blob(&Blob::from_vec(b"hashed content".to_vec()), None, &ctx())
            .unwrap();
        assert_eq!(names(&r), vec!["Hash.A"]);
        assert_eq!(
            cached_load(sigs.path(), cache.path()).cache_outcome(),
            CacheOutcome::Hit
        );
    }

    #[test]
    fn a_reload_sharing_parts_does_not_use_the_compiled_cache() {
        let (sigs, cache) = cache_fixture();
        let opts = LoadOptions {
            cache_dir: Some(cache.path().to_path_buf()),
            ..LoadOptions::default()
        };
        let paths = [sigs.path().to_path_buf()];
        let first = BuiltinEngine::load_with("test", &paths, &opts).unwrap();
        let parts = first.signature_parts();
        let reload = BuiltinEngine::load_reusing("test", &paths, &opts, Some(&parts)).unwrap();
        assert_eq!(reload.cache_outcome(), CacheOutcome::Off);
        assert!(reload.parts.shares_part(&first.parts, "h.hdb"));
    }

    const NDB: &str = "Body.Long:0:*:0102030405060708090a0b0c0d0e0f101112131415161718\n\
                       Body.Star:0:*:5a5a5a5a5a5a*7a7a7a7a7a7a\n\
                       Body.Eof:0:EOF-8:6565656565656565\n\
                       Body.Pua:0:*:7071727374757677\n";

    #[test]
    fn eicar_only_detects_eicar_in_memory_and_file() {
        let e = BuiltinEngine::eicar_only("b");
        for blob in [
            Blob::from_vec(EICAR.to_vec()),
            file_blob(&[EICAR.as_slice(), b"\r\n"].concat()),
        ] {
            let r = e.scan_blob(&blob, None, &ctx()).unwrap();
            assert_eq!(names(&r), vec!["Eicar-Test-Signature"]);
        }
        assert!(
            e.scan_blob(&Blob::from_vec(b"hello".to_vec()), None, &ctx())
                .unwrap()
                .hits
                .is_empty()
        );
        let i = e.info();
        assert_eq!(i.kind, "builtin");
        assert_eq!(i.signatures.get("eicar"), Some(&1));
    }

    #[test]
    fn hits_across_chunk_boundaries_memory_and_file() {
        let (_d, e) = engine_with(&[("b.ndb", NDB)]);
        let sig: Vec<u8> = (1..=0x18).collect();
        for chunk in [64usize, 100, 4096] {
            let e2 = BuiltinEngine::load("t", &[_d.path().to_path_buf()])
                .unwrap()
                .with_chunk_size(chunk);
            for at in [0usize, 50, 60, 63, 64, 90, 1000, 8190] {
                let mut data = vec![0x11u8; 10_000];
                data[at..at + sig.len()].copy_from_slice(&sig);
                for blob in [Blob::from_vec(data.clone()), file_blob(&data)] {
                    let r = e2.scan_blob(&blob, None, &ctx()).unwrap();
                    assert_eq!(names(&r), vec!["Body.Long"], "chunk {chunk} at {at}");
                }
            }
        }
        drop(e);
    }

    #[test]
    fn short_and_alternative_anchors_across_tiny_chunks() {
        let ndb = "Short2:0:*:c3d4\nShort3:0:*:a1(b2|b3)\nAltExp:0:*:e1(f2f3|f4)e5\n";
        let (d, _) = engine_with(&[("s.ndb", ndb)]);
        let e = BuiltinEngine::load("t", &[d.path().to_path_buf()])
            .unwrap()
            .with_chunk_size(16);
        for (pat, name) in [
            (&[0xc3u8, 0xd4][..], "Short2"),
            (&[0xa1, 0xb3][..], "Short3"),
            (&[0xe1, 0xf4, 0xe5][..], "AltExp"),
            (&[0xe1, 0xf2, 0xf3, 0xe5][..], "AltExp"),
        ] {
            for at in 0..40 {
                let mut data = vec![0u8; 45];
                data[at..at + pat.len()].copy_from_slice(pat);
                for blob in [Blob::from_vec(data.clone()), file_blob(&data)] {
                    let r = e.scan_blob(&blob, None, &ctx()).unwrap();
                    assert_eq!(names(&r), vec![name], "{name} at {at}");
                }
            }
        }
        // At the very end of the object.
        let data = vec![0, 0, 0, 0xc3, 0xd4];
        assert_eq!(
            names(&e.scan_blob(&file_blob(&data), None, &ctx()).unwrap()),
            vec!["Short2"]
        );
    }

    #[test]
    fn star_signature_spanning_many_chunks_in_a_file() {
        let (d, _) = engine_with(&[("b.ndb", NDB)]);
        let e = BuiltinEngine::load("t", &[d.path().to_path_buf()])
            .unwrap()
            .with_chunk_size(256);
        let mut data = vec![0u8; 200_000];
        data[100..106].copy_from_slice(b"ZZZZZZ");
        data[150_000..150_006].copy_from_slice(b"zzzzzz");
        let r = e.scan_blob(&file_blob(&data), None, &ctx()).unwrap();
        assert_eq!(names(&r), vec!["Body.Star"]);
    }

    #[test]
    fn late_hit_at_end_of_big_object_and_eof_offset() {
        let (_d, e) = engine_with(&[("b.ndb", NDB)]);
        let mut data = noise(5 << 20, 7);
        // Binary data for ClamAV's type detection (random bytes usually
        // pass as UTF-16 text, whose normalised layer drops the final NUL).
        data[..4].copy_from_slice(&[0, 1, 0, 2]);
        let n = data.len();
        data[n - 8..].copy_from_slice(b"eeeeeeee");
        for blob in [Blob::from_vec(data.clone()), file_blob(&data)] {
            assert_eq!(
                names(&e.scan_blob(&blob, None, &ctx()).unwrap()),
                vec!["Body.Eof"]
            );
        }
        // Same bytes one position earlier: not at EOF-8.
        data[n - 9..n - 1].copy_from_slice(b"eeeeeeee");
        data[n - 1] = 0;
        assert!(
            e.scan_blob(&Blob::from_vec(data), None, &ctx())
                .unwrap()
                .hits
                .is_empty()
        );
    }

    #[test]
    fn no_false_positive_on_random_data() {
        let (_d, e) = engine_with(&[("b.ndb", NDB)]);
        for seed in 1..4 {
            let data = noise(3 << 20, seed);
            assert!(
                e.scan_blob(&Blob::from_vec(data), None, &ctx())
                    .unwrap()
                    .hits
                    .is_empty()
            );
        }
    }

    #[test]
    fn hash_signatures_md5_sha1_sha256_and_wildcard() {
        let body = b"some file body";
        let md5 = hex::encode(Md5::digest(body));
        let sha1 = hex::encode(Sha1::digest(body));
        let sha256 = hex::encode(Sha256::digest(body));
        let other = hex::encode(Sha256::digest(b"other"));
        let hdb = format!("{md5}:{}:H.Md5\n", body.len());
        let hsb = format!(
            "{sha1}:*:H.Sha1:73\n{sha256}:{}:H.Sha256\n{other}:5:H.Other\n",
            body.len()
        );
        let hsu = format!("{sha256}:*:PUA.H.Sha256:73\n");
        let (_d, e) = engine_with_pua(&[("a.hdb", &hdb), ("a.hsb", &hsb), ("a.hsu", &hsu)]);
        let blob = Blob::from_vec(body.to_vec());
        let r = e.scan_blob(&blob, None, &ctx()).unwrap();
        let mut got = names(&r);
        got.sort();
        assert_eq!(got, vec!["H.Md5", "H.Sha1", "H.Sha256", "PUA.H.Sha256"]);
        assert!(
            r.hits
                .iter()
                .find(|h| h.signature == "PUA.H.Sha256")
                .unwrap()
                .suspicious
        );
        // A caller-supplied SHA-256 is used as is.
        let r = e.scan_blob(&blob, Some([0; 32]), &ctx()).unwrap();
        assert!(!names(&r).contains(&"H.Sha256"));
        // Wrong size: the exact-size signatures do not match.
        let longer = Blob::from_vec([body.as_slice(), b"!"].concat());
        assert!(e.scan_blob(&longer, None, &ctx()).unwrap().hits.is_empty());
        let i = e.info();
        assert_eq!(i.signatures.get("hdb"), Some(&1));
        assert_eq!(i.signatures.get("hsb"), Some(&4));
    }

    #[test]
    #[allow(clippy::disallowed_methods)] // a 544-byte test file
    fn pe_section_and_import_hashes_with_pua_twins() {
        let p = "/usr/share/clamav-testfiles/clam.exe";
        let Ok(data) = std::fs::read(p) else {
            eprintln!("SKIP: {p} missing (apt clamav-testfiles)");
            return;
        };
        // From `sigtool --mdb` / `--imp` on clam.exe.
        let sect = "512:23db1dd3f77fae25610b6a32701313ae";
        let (_d, e) = engine_with_pua(&[
            ("a.mdb", &format!("{sect}:Sect.Md5\n")),
            ("a.msu", &format!("{sect}:PUA.Sect\n")),
            ("a.imp", "98c88d882f01a3f6ac1e5f7dfd761624:39:Imp.Md5\n"),
        ]);
        for blob in [file_blob(&data), Blob::from_vec(data.clone())] {
            let r = e.scan_blob(&blob, None, &ctx()).unwrap();
            let mut got: Vec<(&str, bool)> = r
                .hits
                .iter()
                .map(|h| (h.signature.as_str(), h.suspicious))
                .collect();
            got.sort();
            assert_eq!(
                got,
                vec![("Imp.Md5", false), ("PUA.Sect", true), ("Sect.Md5", false)]
            );
        }
        assert_eq!(e.info().signatures.get("mdb"), Some(&2));
        assert_eq!(e.info().signatures.get("imp"), Some(&1));
        // The same bytes without the MZ header match nothing.
        let mut other = data.clone();
        other[0] = b'N';
        assert!(
            e.scan_blob(&Blob::from_vec(other), None, &ctx())
                .unwrap()
                .hits
                .is_empty()
        );
    }

    #[test]
    fn pua_body_signature_is_suspicious() {
        let (_d, e) = engine_with_pua(&[("p.ndu", "PUA.Body:0:*:7071727374757677\n")]);
        let r = e
            .scan_blob(&Blob::from_vec(b"..pqrstuvw..".to_vec()), None, &ctx())
            .unwrap();
        assert_eq!(
            r.hits,
            vec![Hit {
                signature: "PUA.Body".into(),
                suspicious: true
            }]
        );
    }

    #[test]
    fn deadline_expiry_is_a_timeout() {
        let (_d, e) = engine_with(&[("b.ndb", NDB)]);
        let e = e.with_chunk_size(4096);
        let past = ScanContext {
            deadline: Instant::now(),
            all_match: false,
        };
        let blob = Blob::from_vec(noise(1 << 20, 3));
        assert!(matches!(
            e.scan_blob(&blob, None, &past),
            Err(EngineError::Timeout)
        ));
        // Expiring mid-scan: a deadline shortly ahead on a large file.
        let big = file_blob(&noise(64 << 20, 5));
        let soon = ScanContext::within(Duration::from_millis(5));
        std::thread::sleep(Duration::from_millis(6));
        assert!(matches!(
            e.scan_blob(&big, None, &soon),
            Err(EngineError::Timeout)
        ));
    }

    #[test]
    fn truncated_file_is_an_error_not_clean() {
        let (_d, e) = engine_with(&[("b.ndb", NDB)]);
        let f = tempfile::tempfile().unwrap();
        f.set_len(100).unwrap();
        let blob = Blob::File {
            file: std::sync::Arc::new(f),
            len: 1000,
        };
        assert!(matches!(
            e.scan_blob(&blob, None, &ctx()),
            Err(EngineError::Io(_))
        ));
    }

    #[test]
    fn engine_trait_and_info() {
        let (_d, e) = engine_with(&[("b.ndb", NDB), ("bad.hdb", "nonsense\n")]);
        let data = Blob::from_vec(EICAR.to_vec());
        let obj = Object {
            data: &data,
            name: "eicar.com",
            location: "eicar.com",
            content_type: "text/plain",
            depth: 0,
            sha256: None,
        };
        assert_eq!(
            names(&Engine::scan(&e, &obj, &ctx()).unwrap()),
            vec!["Eicar-Test-Signature"]
        );
        let i = e.info();
        assert_eq!(i.name, "test");
        assert_eq!(i.signatures.get("ndb"), Some(&4));
        assert_eq!(i.load_errors.len(), 1);
        assert!(
            i.load_errors[0].contains("bad.hdb:1:"),
            "{:?}",
            i.load_errors
        );
        assert_eq!(i.signature_version.len(), 16);
        assert!(e.fingerprint().starts_with("test:"));
        assert_eq!(e.load_error_count(), 1);
    }

    #[test]
    fn pua_databases_load_only_with_detect_pua_and_are_counted_as_skipped() {
        let files = [
            ("p.ndu", "PUA.Body:0:*:7071727374757677\n"),
            ("p.ldu", "PUA.L;Engine:51-255,Target:0;0;41424344\n"),
            ("b.ndb", "Body.A:0:*:6162636465666768\n"),
        ];
        let data = Blob::from_vec(b"..pqrstuvw..abcdefgh".to_vec());
        let (_d, off) = engine_with(&files);
        assert_eq!(
            names(&off.scan_blob(&data, None, &ctx()).unwrap()),
            vec!["Body.A"]
        );
        let i = off.info();
        assert_eq!(i.skipped.get("pua_ndu"), Some(&1));
        assert_eq!(i.skipped.get("pua_ldu"), Some(&1));
        assert!(i.load_errors.is_empty() && !i.signatures.contains_key("ldb"));
        let (_d, on) = engine_with_pua(&files);
        let r = on.scan_blob(&data, None, &ctx()).unwrap();
        let mut got = names(&r);
        got.sort();
        assert_eq!(got, vec!["Body.A", "PUA.Body"]);
        assert!(on.info().skipped.is_empty());
        assert_eq!(on.info().signatures.get("ldb"), Some(&1));
    }

    #[test]
    fn fp_and_sfp_hashes_trust_a_file_and_silence_its_detections() {
        let body = b"xx abcdefgh xx".to_vec();
        let other = b"yy abcdefgh yy".to_vec();
        let md5 = hex::encode(Md5::digest(&body));
        let sha256 = hex::encode(Sha256::digest(&other));
        let ndb = "Body.A:0:*:6162636465666768\n";
        let (_d, e) = engine_with(&[
            ("b.ndb", ndb),
            ("x.fp", &format!("{md5}:{}:Trusted.Md5\n", body.len())),
            ("x.sfp", &format!("{sha256}:*:Trusted.Sha256:73\n")),
        ]);
        for data in [&body, &other] {
            let r = e
                .scan_blob(&Blob::from_vec(data.clone()), None, &ctx())
                .unwrap();
            assert!(r.trusted && r.hits.is_empty(), "{r:?}");
        }
        // A caller-supplied SHA-256 is used for the allow-list too.
        let r = e
            .scan_blob(
                &Blob::from_vec(other.clone()),
                Some(Sha256::digest(&other).into()),
                &ctx(),
            )
            .unwrap();
        assert!(r.trusted);
        // Any other content is scanned as usual.
        let r = e
            .scan_blob(&Blob::from_vec(b"zz abcdefgh".to_vec()), None, &ctx())
            .unwrap();
        assert!(!r.trusted);
        assert_eq!(names(&r), vec!["Body.A"]);
        assert_eq!(e.info().signatures.get("fp"), Some(&2));
    }

    #[test]
    fn a_reload_shares_the_tables_of_unchanged_files_and_reads_changed_ones() {
        let md5 = |d: &[u8]| hex::encode(Md5::digest(d));
        let d = tempfile::tempdir().unwrap();
        let write = |n: &str, c: String| std::fs::write(d.path().join(n), c).unwrap();
        write(
            "big.hdb",
            format!("{}:3:Hash.Big\n{}:4:Hash.Big2\n", md5(b"big"), md5(b"big2")),
        );
        write("small.hsb", format!("{}:3:Hash.Old\n", md5(b"old")));
        let paths = [d.path().to_path_buf()];
        let opts = LoadOptions::default();
        let scan = |e: &BuiltinEngine, data: &[u8]| -> Vec<String> {
            let r = e
                .scan_blob(&Blob::from_vec(data.to_vec()), None, &ctx())
                .unwrap();
            names(&r).into_iter().map(String::from).collect()
        };
        let old = BuiltinEngine::load_with("t", &paths, &opts).unwrap();
        assert_eq!(old.signature_parts().len(), 2);
        // One file changes (another size: the same size within one mtime
        // tick would look unchanged) and a new file sorts first, so the
        // shared file's names get another base.
        write("small.hsb", format!("{}:3:Hash.Newer\n", md5(b"new")));
        write("a.hdb", format!("{}:1:Hash.A\n", md5(b"a")));
        let new =
            BuiltinEngine::load_reusing("t", &paths, &opts, Some(&old.signature_parts())).unwrap();
        assert!(new.parts.shares_part(&old.parts, "big.hdb"));
        assert!(!new.parts.shares_part(&old.parts, "small.hsb"));
        assert_eq!(scan(&new, b"big"), vec!["Hash.Big"]);
        assert_eq!(scan(&new, b"big2"), vec!["Hash.Big2"]);
        assert_eq!(scan(&new, b"new"), vec!["Hash.Newer"]);
        assert_eq!(scan(&new, b"a"), vec!["Hash.A"]);
        assert!(scan(&new, b"old").is_empty());
        assert_eq!(new.info().signatures.get("hdb"), Some(&3));
        assert_eq!(new.info().signatures.get("hsb"), Some(&1));
        // The old engine keeps serving what it loaded.
        assert_eq!(scan(&old, b"old"), vec!["Hash.Old"]);
        assert_eq!(scan(&old, b"big"), vec!["Hash.Big"]);
        drop(old);
        assert_eq!(scan(&new, b"big2"), vec!["Hash.Big2"]);
        // Loading again with nothing changed shares every file.
        let same =
            BuiltinEngine::load_reusing("t", &paths, &opts, Some(&new.signature_parts())).unwrap();
        for f in ["a.hdb", "big.hdb", "small.hsb"] {
            assert!(same.parts.shares_part(&new.parts, f), "{f}");
        }
    }

    /// Options for the tests' containers, which are not signed.
    fn unverified() -> LoadOptions {
        LoadOptions {
            verify_signatures: false,
            ..LoadOptions::default()
        }
    }

    fn scan_names(e: &BuiltinEngine, data: &[u8]) -> Vec<String> {
        let r = e
            .scan_blob(&Blob::from_vec(data.to_vec()), None, &ctx())
            .unwrap();
        names(&r).into_iter().map(String::from).collect()
    }

    /// `main.cvd` of version `version`: hashes of "big" and "big2", a body
    /// signature, and a member not loaded.
    fn main_cvd(version: u64, big_name: &str) -> Vec<u8> {
        let md5 = |d: &[u8]| hex::encode(Md5::digest(d));
        let sha = |d: &[u8]| hex::encode(Sha256::digest(d));
        crate::cvd::tests::make_container(
            version,
            &[
                (
                    "main.hdb",
                    format!("{}:3:{big_name}\n", md5(b"big")).as_bytes(),
                ),
                (
                    "main.hsb",
                    format!("{}:4:Hash.Big2\n", sha(b"big2")).as_bytes(),
                ),
                ("main.ndb", b"Body.Main:0:*:6d61696e626f6479\n"),
                ("main.info", b"MAIN:1\n"),
            ],
            true,
        )
    }

    /// `daily.cvd` of version `version`: one hash, and optional ignore list.
    fn daily_cvd(version: u64, hashed: &[u8], name: &str, ign2: Option<&str>) -> Vec<u8> {
        let hdb = format!(
            "{}:{}:{name}\n",
            hex::encode(Md5::digest(hashed)),
            hashed.len()
        );
        let mut members: Vec<(&str, &[u8])> = vec![("daily.hdb", hdb.as_bytes())];
        if let Some(i) = ign2 {
            members.push(("daily.ign2", i.as_bytes()));
        }
        crate::cvd::tests::make_container(version, &members, true)
    }

    #[test]
    fn a_daily_update_shares_the_unchanged_main_container_and_reads_the_new_daily() {
        let d = tempfile::tempdir().unwrap();
        let put = |n: &str, c: &[u8]| std::fs::write(d.path().join(n), c).unwrap();
        put("main.cvd", &main_cvd(62, "Hash.Big"));
        put("daily.cvd", &daily_cvd(27000, b"old", "Hash.Old", None));
        put(
            "local.hdb",
            format!("{}:5:Hash.Local\n", hex::encode(Md5::digest(b"local"))).as_bytes(),
        );
        let paths = [d.path().to_path_buf()];
        let opts = unverified();
        let old = BuiltinEngine::load_with("t", &paths, &opts).unwrap();
        // main.hdb, main.hsb, daily.hdb and local.hdb.
        assert_eq!(old.signature_parts().len(), 4);
        // The update: a new daily (another version, another signature).
        put("daily.cvd", &daily_cvd(27001, b"newer", "Hash.Newer", None));
        let new =
            BuiltinEngine::load_reusing("t", &paths, &opts, Some(&old.signature_parts())).unwrap();
        assert!(new.parts.shares_member(&old.parts, "main.cvd", "main.hdb"));
        assert!(new.parts.shares_member(&old.parts, "main.cvd", "main.hsb"));
        assert!(
            !new.parts
                .shares_member(&old.parts, "daily.cvd", "daily.hdb")
        );
        assert!(new.parts.shares_part(&old.parts, "local.hdb"));
        assert_eq!(scan_names(&new, b"newer"), vec!["Hash.Newer"]);
        assert!(scan_names(&new, b"old").is_empty());
        assert_eq!(scan_names(&new, b"big"), vec!["Hash.Big"]);
        assert_eq!(scan_names(&new, b"big2"), vec!["Hash.Big2"]);
        assert_eq!(scan_names(&new, b"local"), vec!["Hash.Local"]);
        // Body signatures of the shared container are rebuilt.
        assert_eq!(scan_names(&new, b"xx mainbody xx"), vec!["Body.Main"]);
        assert_eq!(new.info().signatures.get("hdb"), Some(&3));
        assert_eq!(new.info().signatures.get("hsb"), Some(&1));
        assert_eq!(new.info().signatures.get("ndb"), Some(&1));
        assert_eq!(new.info().unsupported.get("info"), Some(&1));
        let version = &new.info().signature_version;
        assert!(version.starts_with("daily-27001+main-62+"), "{version}");
        // The same files loaded fresh give the same signature version.
        let fresh = BuiltinEngine::load_with("t", &paths, &opts).unwrap();
        assert_eq!(&fresh.info().signature_version, version);
        assert_ne!(&old.info().signature_version, version);
        // The old engine keeps serving what it loaded.
        assert_eq!(scan_names(&old, b"old"), vec!["Hash.Old"]);
        drop(old);
        assert_eq!(scan_names(&new, b"big"), vec!["Hash.Big"]);
        // Nothing changed: every member is shared.
        let same =
            BuiltinEngine::load_reusing("t", &paths, &opts, Some(&new.signature_parts())).unwrap();
        for (c, m) in [("main.cvd", "main.hdb"), ("daily.cvd", "daily.hdb")] {
            assert!(same.parts.shares_member(&new.parts, c, m), "{c}/{m}");
        }
    }

    #[test]
    fn a_changed_main_container_or_a_new_ignore_list_in_daily_is_read_again() {
        let d = tempfile::tempdir().unwrap();
        let put = |n: &str, c: &[u8]| std::fs::write(d.path().join(n), c).unwrap();
        put("main.cvd", &main_cvd(62, "Hash.Big"));
        put("daily.cvd", &daily_cvd(27000, b"old", "Hash.Old", None));
        let paths = [d.path().to_path_buf()];
        let opts = unverified();
        let first = BuiltinEngine::load_with("t", &paths, &opts).unwrap();
        // main changes (a new version renames a signature).
        put("main.cvd", &main_cvd(63, "Hash.Bigger"));
        let second =
            BuiltinEngine::load_reusing("t", &paths, &opts, Some(&first.signature_parts()))
                .unwrap();
        assert!(
            !second
                .parts
                .shares_member(&first.parts, "main.cvd", "main.hdb")
        );
        assert!(
            second
                .parts
                .shares_member(&first.parts, "daily.cvd", "daily.hdb")
        );
        assert_eq!(scan_names(&second, b"big"), vec!["Hash.Bigger"]);
        assert!(second.info().signature_version.contains("main-63+"));
        // A daily that ignores one of main's signatures: main is parsed
        // again under the new list.
        put(
            "daily.cvd",
            &daily_cvd(27001, b"old", "Hash.Old", Some("Hash.Bigger\n")),
        );
        let third =
            BuiltinEngine::load_reusing("t", &paths, &opts, Some(&second.signature_parts()))
                .unwrap();
        assert!(
            !third
                .parts
                .shares_member(&second.parts, "main.cvd", "main.hdb")
        );
        assert!(scan_names(&third, b"big").is_empty());
        assert_eq!(scan_names(&third, b"big2"), vec!["Hash.Big2"]);
        assert_eq!(third.info().skipped.get("ignored"), Some(&1));
        // The same list in the next daily: main is shared again.
        put(
            "daily.cvd",
            &daily_cvd(27002, b"newest", "Hash.Newest", Some("Hash.Bigger\n")),
        );
        let fourth =
            BuiltinEngine::load_reusing("t", &paths, &opts, Some(&third.signature_parts()))
                .unwrap();
        assert!(
            fourth
                .parts
                .shares_member(&third.parts, "main.cvd", "main.hdb")
        );
        assert!(scan_names(&fourth, b"big").is_empty());
        assert_eq!(scan_names(&fourth, b"newest"), vec!["Hash.Newest"]);
        assert_eq!(fourth.info().skipped.get("ignored"), Some(&1));
    }

    /// `count` lines of `kind` hashes of `d{i}` named `H.{i}`, some with
    /// another name, each line as a hash file holds it.
    fn hash_lines(range: std::ops::Range<usize>, sha: bool) -> Vec<String> {
        range
            .map(|i| {
                let data = format!("d{i}");
                let digest = if sha {
                    hex::encode(Sha256::digest(data.as_bytes()))
                } else {
                    hex::encode(Md5::digest(data.as_bytes()))
                };
                format!("{digest}:{}:H.{i}", data.len())
            })
            .collect()
    }

    /// What scanning `d0`..`d{n}` reports, object by object.
    fn verdicts(e: &BuiltinEngine, n: usize) -> Vec<Vec<String>> {
        (0..n)
            .map(|i| {
                let mut v = scan_names(e, format!("d{i}").as_bytes());
                v.sort();
                v
            })
            .collect()
    }

    #[test]
    fn a_changed_hash_file_shares_its_unchanged_lines_and_detects_as_a_fresh_load() {
        let d = tempfile::tempdir().unwrap();
        let paths = [d.path().to_path_buf()];
        let opts = LoadOptions {
            all_match: true,
            ..LoadOptions::default()
        };
        let write = |lines: &[String]| {
            std::fs::write(d.path().join("big.hsb"), lines.join("\n") + "\n").unwrap()
        };
        // MD5 and SHA-256 lines, one line twice.
        let mut lines = hash_lines(0..300, false);
        lines.extend(hash_lines(300..600, true));
        lines.push(lines[5].clone());
        write(&lines);
        let old = BuiltinEngine::load_with("t", &paths, &opts).unwrap();

        // An update: lines deleted (one copy of the doubled one among
        // them), one renamed, a malformed line, lines added.
        let mut next = lines.clone();
        next[101] = next[101].replace("H.", "Renamed.");
        // Same digest and name, another size: not the same signature.
        next[150] = next[150].replace(":4:H.150", ":99:H.150");
        assert!(next[150].contains(":99:"));
        next.remove(400);
        next.remove(10);
        next.remove(5);
        next.insert(200, "not a hash line".into());
        next.extend(hash_lines(600..620, false));
        write(&next);
        let new =
            BuiltinEngine::load_reusing("t", &paths, &opts, Some(&old.signature_parts())).unwrap();
        let fresh = BuiltinEngine::load_with("t", &paths, &opts).unwrap();
        let (shared, blocks) = new.parts.shared_blocks(&old.parts, "big.hsb");
        assert!(shared >= 1 && blocks == shared + 1, "{shared} of {blocks}");
        assert_eq!(verdicts(&new, 630), verdicts(&fresh, 630));
        assert_eq!(scan_names(&new, b"d10"), Vec::<String>::new());
        assert_eq!(scan_names(&new, b"d5"), vec!["H.5"]);
        assert_eq!(scan_names(&new, b"d101"), vec!["Renamed.101"]);
        assert_eq!(scan_names(&new, b"d610"), vec!["H.610"]);
        assert!(scan_names(&new, b"d150").is_empty());
        assert_eq!(new.info().signatures, fresh.info().signatures);
        assert_eq!(new.info().load_errors, fresh.info().load_errors);
        assert!(
            new.info().load_errors[0].contains("big.hsb:201:"),
            "{:?}",
            new.info().load_errors
        );
        // The old engine still serves its own set.
        assert_eq!(scan_names(&old, b"d10"), vec!["H.10"]);
        assert_eq!(scan_names(&old, b"d101"), vec!["H.101"]);

        // A second update on top of the first: masks compose.
        next.remove(50);
        next.push(lines[10].clone());
        write(&next);
        let third =
            BuiltinEngine::load_reusing("t", &paths, &opts, Some(&new.signature_parts())).unwrap();
        let fresh = BuiltinEngine::load_with("t", &paths, &opts).unwrap();
        assert!(third.parts.shared_blocks(&old.parts, "big.hsb").0 >= 1);
        assert_eq!(verdicts(&third, 630), verdicts(&fresh, 630));
        assert_eq!(scan_names(&third, b"d10"), vec!["H.10"]);
        assert_eq!(third.info().signatures, fresh.info().signatures);
        drop((old, new));
        assert_eq!(verdicts(&third, 630), verdicts(&fresh, 630));
    }

    #[test]
    fn a_hash_file_rewritten_entirely_keeps_no_block_of_dead_entries() {
        let d = tempfile::tempdir().unwrap();
        let paths = [d.path().to_path_buf()];
        let opts = LoadOptions::default();
        let file = d.path().join("big.hdb");
        std::fs::write(&file, hash_lines(0..5000, false).join("\n")).unwrap();
        let old = BuiltinEngine::load_with("t", &paths, &opts).unwrap();
        std::fs::write(&file, hash_lines(5000..10000, false).join("\n")).unwrap();
        let new =
            BuiltinEngine::load_reusing("t", &paths, &opts, Some(&old.signature_parts())).unwrap();
        // Nothing shared, and no block of dead entries kept.
        assert_eq!(new.parts.shared_blocks(&old.parts, "big.hdb").0, 0);
        assert_eq!(new.parts.shared_blocks(&new.parts, "big.hdb"), (1, 1));
        assert_eq!(scan_names(&new, b"d7000"), vec!["H.7000"]);
        assert!(scan_names(&new, b"d10").is_empty());
        assert_eq!(new.info().signatures.get("hdb"), Some(&5000));
    }

    #[test]
    fn a_changed_ignore_list_or_pua_option_disables_reuse() {
        let md5 = |d: &[u8]| hex::encode(Md5::digest(d));
        let d = tempfile::tempdir().unwrap();
        std::fs::write(
            d.path().join("big.hdb"),
            format!("{}:3:Hash.Big\n", md5(b"big")),
        )
        .unwrap();
        let paths = [d.path().to_path_buf()];
        let opts = LoadOptions::default();
        let first = BuiltinEngine::load_with("t", &paths, &opts).unwrap();
        std::fs::write(d.path().join("local.ign2"), "Hash.Big\n").unwrap();
        let second =
            BuiltinEngine::load_reusing("t", &paths, &opts, Some(&first.signature_parts()))
                .unwrap();
        assert!(!second.parts.shares_part(&first.parts, "big.hdb"));
        let blob = Blob::from_vec(b"big".to_vec());
        assert!(names(&second.scan_blob(&blob, None, &ctx()).unwrap()).is_empty());
        assert_eq!(second.info().skipped.get("ignored"), Some(&1));
        assert_eq!(
            names(&first.scan_blob(&blob, None, &ctx()).unwrap()),
            vec!["Hash.Big"]
        );
        // Another PUA option: nothing shared either.
        let pua = LoadOptions {
            detect_pua: true,
            ..LoadOptions::default()
        };
        let third = BuiltinEngine::load_reusing("t", &paths, &pua, Some(&second.signature_parts()))
            .unwrap();
        assert!(!third.parts.shares_part(&second.parts, "big.hdb"));
        assert!(names(&third.scan_blob(&blob, None, &ctx()).unwrap()).is_empty());
    }

    #[test]
    fn ign2_names_are_dropped_at_load_with_or_without_line_md5() {
        let ndb_b = "Body.B:0:*:6162636465666768";
        let line_md5 = hex::encode(Md5::digest(ndb_b.as_bytes()));
        let body_md5 = hex::encode(Md5::digest(b"hashed"));
        let (_d, e) = engine_with(&[
            (
                "b.ndb",
                &format!("Body.A:0:*:6162636465666768\n{ndb_b}\nBody.C:0:*:6162636465666768\n"),
            ),
            ("h.hdb", &format!("{body_md5}:6:Hash.X\n")),
            (
                "local.ign2",
                &format!(
                    "Body.A\nBody.B:{line_md5}\nBody.C:{}\nHash.X\n",
                    "0".repeat(32)
                ),
            ),
        ]);
        let r = e
            .scan_blob(&Blob::from_vec(b"abcdefgh".to_vec()), None, &ctx())
            .unwrap();
        // Body.C's listed MD5 is not its line's: it stays.
        assert_eq!(names(&r), vec!["Body.C"]);
        assert!(
            e.scan_blob(&Blob::from_vec(b"hashed".to_vec()), None, &ctx())
                .unwrap()
                .hits
                .is_empty()
        );
        let i = e.info();
        assert_eq!(i.skipped.get("ignored"), Some(&3));
        assert_eq!(i.signatures.get("ign"), Some(&4));
        assert_eq!(i.signatures.get("ndb"), Some(&1));
    }

    fn sorted_names(r: &EngineScan) -> Vec<String> {
        let mut v: Vec<String> = r.hits.iter().map(|h| h.signature.clone()).collect();
        v.sort();
        v
    }

    fn first_match_engine(files: &[(&str, &str)]) -> (tempfile::TempDir, BuiltinEngine) {
        let opts = LoadOptions {
            all_match: false,
            ..LoadOptions::default()
        };
        engine_with_opts(files, &opts)
    }

    #[test]
    fn first_match_reports_one_name_where_all_match_reports_every_one() {
        let body = b"xx abcdefgh xx 0123456789 xx".to_vec();
        let hsb = format!(
            "{}:{}:Hash.C\n",
            hex::encode(Sha256::digest(&body)),
            body.len()
        );
        let files = [
            (
                "b.ndb",
                "Body.A:0:*:6162636465666768\nBody.B:0:*:30313233343536373839\n",
            ),
            ("h.hsb", hsb.as_str()),
        ];
        let (_d, all) = engine_with(&files);
        let (_d2, first) = first_match_engine(&files);
        for blob in [Blob::from_vec(body.clone()), file_blob(&body)] {
            let every = sorted_names(&all.scan_blob(&blob, None, &ctx()).unwrap());
            assert_eq!(every, vec!["Body.A", "Body.B", "Hash.C"]);
            let one = first.scan_blob(&blob, None, &ctx()).unwrap();
            // The first detection in the object, one of all-match's names.
            assert_eq!(names(&one), vec!["Body.A"]);
            assert!(!one.trusted);
            // A request for every match (clamd's ALLMATCHSCAN) gets them all
            // from the first-match engine too.
            let asked = ScanContext {
                all_match: true,
                ..ctx()
            };
            let every2 = sorted_names(&first.scan_blob(&blob, None, &asked).unwrap());
            assert_eq!(every2, every);
        }
        // Only the later signature: still found, alone.
        let late = b"yy 0123456789".to_vec();
        for e in [&all, &first] {
            assert_eq!(
                names(
                    &e.scan_blob(&Blob::from_vec(late.clone()), None, &ctx())
                        .unwrap()
                ),
                vec!["Body.B"]
            );
        }
        // Only the hash: the whole object is hashed in both modes.
        let hashed_only = b"only the hash matches this".to_vec();
        let hsb2 = format!(
            "{}:{}:Hash.D\n",
            hex::encode(Sha256::digest(&hashed_only)),
            hashed_only.len()
        );
        let (_d3, first2) = first_match_engine(&[("h.hsb", &hsb2), files[0]]);
        let r = first2
            .scan_blob(&Blob::from_vec(hashed_only), None, &ctx())
            .unwrap();
        assert_eq!(names(&r), vec!["Hash.D"]);
        // Clean data is clean in both modes.
        let clean = Blob::from_vec(b"nothing to see".to_vec());
        assert!(all.scan_blob(&clean, None, &ctx()).unwrap().hits.is_empty());
        assert!(
            first
                .scan_blob(&clean, None, &ctx())
                .unwrap()
                .hits
                .is_empty()
        );
        // The mode is part of the verdict-cache key.
        assert_ne!(all.fingerprint(), first.fingerprint());
    }

    #[test]
    fn first_match_still_honours_the_allow_list_after_an_early_detection() {
        // The detection is in the first bytes; the trusted digest covers
        // the whole (large) object, so it must still be hashed to the end.
        let mut body = noise(3 << 20, 9);
        body[..4].copy_from_slice(&[0, 1, 0, 2]);
        body[10..18].copy_from_slice(b"abcdefgh");
        let md5 = hex::encode(Md5::digest(&body));
        let fp = format!("{md5}:{}:Trusted.Big\n", body.len());
        let (_d, e) = first_match_engine(&[
            ("b.ndb", NDB),
            ("x.fp", &fp),
            ("a.ndb", "Body.A:0:*:6162636465666768\n"),
        ]);
        let e = e.with_chunk_size(4096);
        for blob in [Blob::from_vec(body.clone()), file_blob(&body)] {
            let r = e.scan_blob(&blob, None, &ctx()).unwrap();
            assert!(r.trusted && r.hits.is_empty(), "{r:?}");
        }
        body[5] ^= 1;
        for blob in [Blob::from_vec(body.clone()), file_blob(&body)] {
            let r = e.scan_blob(&blob, None, &ctx()).unwrap();
            assert!(!r.trusted);
            assert_eq!(names(&r), vec!["Body.A"]);
        }
    }

    #[test]
    fn first_match_decides_count_expressions_on_the_whole_object() {
        // `0=2`: exactly two matches. A first-match scan must not decide
        // after the second match when a third one follows.
        let ldb = "L.Two;Engine:51-255,Target:0;0=2;41424344\n\
                   L.Many;Engine:51-255,Target:0;0>2;51525354\n";
        let (_d, all) = engine_with(&[("l.ldb", ldb)]);
        let (_d2, first) = first_match_engine(&[("l.ldb", ldb)]);
        for (data, want) in [
            (&b"ABCD.ABCD"[..], vec!["L.Two"]),
            (b"ABCD.ABCD.ABCD", vec![]),
            (b"QRST.QRST", vec![]),
            (b"QRST.QRST.QRST", vec!["L.Many"]),
        ] {
            for e in [&all, &first] {
                let r = e
                    .scan_blob(&Blob::from_vec(data.to_vec()), None, &ctx())
                    .unwrap();
                assert_eq!(names(&r), want, "{:?}", String::from_utf8_lossy(data));
            }
        }
        // Both logical signatures true: one name in first-match mode.
        let both = b"ABCD.ABCD.QRST.QRST.QRST".to_vec();
        let every = sorted_names(
            &all.scan_blob(&Blob::from_vec(both.clone()), None, &ctx())
                .unwrap(),
        );
        assert_eq!(every, vec!["L.Many", "L.Two"]);
        let one = first
            .scan_blob(&Blob::from_vec(both), None, &ctx())
            .unwrap();
        assert_eq!(one.hits.len(), 1);
        assert!(every.contains(&one.hits[0].signature));
    }

    #[test]
    fn first_match_names_eicar_by_the_databases_signature_as_clamscan_does() {
        // clamscan has no built-in EICAR: with a database signature for it,
        // that signature names the detection; moat's own name comes only
        // when the database has none (and beside it with all matches).
        let ndb = "Body.E:0:*:45494341522d5354414e44\n"; // "EICAR-STAND"
        let hdb = format!(
            "{}:{}:Hash.E\n",
            hex::encode(Md5::digest(EICAR)),
            EICAR.len()
        );
        let blob = Blob::from_vec(EICAR.to_vec());
        for (sigs, db_name) in [
            (("e.ndb", ndb.to_string()), "Body.E"),
            (("e.hdb", hdb), "Hash.E"),
        ] {
            let files = [(sigs.0, sigs.1.as_str())];
            let (_d, all) = engine_with(&files);
            let (_d2, first) = first_match_engine(&files);
            let every = sorted_names(&all.scan_blob(&blob, None, &ctx()).unwrap());
            let mut want = vec![db_name, "Eicar-Test-Signature"];
            want.sort();
            assert_eq!(every, want);
            assert_eq!(
                names(&first.scan_blob(&blob, None, &ctx()).unwrap()),
                vec![db_name]
            );
        }
        let (_d, other) = first_match_engine(&[("o.ndb", "Body.O:0:*:0102030405060708\n")]);
        assert_eq!(
            names(&other.scan_blob(&blob, None, &ctx()).unwrap()),
            vec!["Eicar-Test-Signature"]
        );
    }
}
