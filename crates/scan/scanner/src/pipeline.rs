//! Scan one blob with every engine of the current set and aggregate.

use crate::config::ScanConfig;
use crate::sniff;
use arc_swap::ArcSwap;
use moat_core::{
    Blob, Engine, EngineError, EngineInfo, EngineReport, Finding, Object, Reason, ScanContext,
    Scope, Status, Verdict,
};
use moat_extract::{Entry, WalkError};
use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

/// An immutable set of engines, swapped as a whole on reload.
pub struct EngineSet {
    engines: Vec<Arc<dyn Engine>>,
    /// `info()` of every engine when the set was built: the versions that
    /// scan reports carry and the fingerprint covers. Taken once, so scans
    /// never call `info()` (which for clamd may ask the daemon).
    snapshot: Vec<EngineInfo>,
    /// Every engine's fingerprint when the set was built.
    fingerprints: Vec<String>,
    fingerprint: String,
    /// The smallest `cache_ttl` of the engines.
    cache_ttl: Option<Duration>,
    /// Unix seconds when this set was built.
    pub loaded_at: u64,
    /// The parsed signature parts of the builtin engines, by engine name,
    /// for the next build (a reload) to share.
    builtin_parts: Vec<(String, Arc<moat_builtin::SignatureParts>)>,
}

impl EngineSet {
    pub fn new(engines: Vec<Arc<dyn Engine>>) -> EngineSet {
        use sha2::{Digest, Sha256};
        let fingerprints: Vec<String> = engines.iter().map(|e| e.fingerprint()).collect();
        let mut h = Sha256::new();
        for f in &fingerprints {
            h.update(f.as_bytes());
            h.update([0u8]);
        }
        let fingerprint = hex::encode(&h.finalize()[..12]);
        let snapshot = engines.iter().map(|e| e.info()).collect();
        let cache_ttl = engines.iter().filter_map(|e| e.cache_ttl()).min();
        let loaded_at = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map(|d| d.as_secs())
            .unwrap_or(0);
        EngineSet {
            engines,
            snapshot,
            fingerprints,
            fingerprint,
            cache_ttl,
            loaded_at,
            builtin_parts: Vec::new(),
        }
    }

    /// This set with the builtin engines' signature parts, by engine name.
    pub(crate) fn with_builtin_parts(
        mut self,
        parts: Vec<(String, Arc<moat_builtin::SignatureParts>)>,
    ) -> EngineSet {
        self.builtin_parts = parts;
        self
    }

    /// What a reload can share with the builtin engine `name` of this set.
    pub fn builtin_parts(&self, name: &str) -> Option<Arc<moat_builtin::SignatureParts>> {
        self.builtin_parts
            .iter()
            .find(|(n, _)| n == name)
            .map(|(_, p)| Arc::clone(p))
    }

    pub fn engines(&self) -> &[Arc<dyn Engine>] {
        &self.engines
    }

    /// Identifies engine versions and signature-set versions together: the
    /// verdict cache key is (sha256, fingerprint).
    pub fn fingerprint(&self) -> &str {
        &self.fingerprint
    }

    /// How long a cached verdict of this set may be reused: the smallest
    /// `cache_ttl` of its engines (those whose signatures live elsewhere);
    /// `None` when every engine's fingerprint follows its signatures.
    pub fn cache_ttl(&self) -> Option<Duration> {
        self.cache_ttl
    }

    /// The names of the engines with a `cache_ttl` (clamd, icap) whose live
    /// fingerprint differs from the one this set was built with: their
    /// server's signatures changed (clamd's database version, an ICAP
    /// ISTag), or the server first answered. Asks those engines (blocking).
    pub fn drifted(&self) -> Vec<String> {
        self.engines
            .iter()
            .zip(&self.fingerprints)
            .filter(|(e, fp)| e.cache_ttl().is_some() && e.fingerprint() != **fp)
            .map(|(e, _)| e.name().to_string())
            .collect()
    }

    /// The same engines in a new set, fingerprinted now (nothing reloaded).
    pub fn refreshed(&self) -> EngineSet {
        EngineSet::new(self.engines.clone()).with_builtin_parts(self.builtin_parts.clone())
    }

    /// Current engine information (live: asks each engine now).
    pub fn infos(&self) -> Vec<EngineInfo> {
        self.engines.iter().map(|e| e.info()).collect()
    }
}

/// The scan pipeline. Cheap to share (`Arc<Scanner>`); scans run on the caller's thread.
pub struct Scanner {
    set: ArcSwap<EngineSet>,
    cfg: ScanConfig,
}

/// Per-engine accumulation over the object and its members.
struct Acc {
    status: Status,
    reason: Option<Reason>,
    detail: Option<String>,
    findings: Vec<Finding>,
    nanos: u128,
}

impl Acc {
    fn new() -> Acc {
        Acc {
            status: Status::Clean,
            reason: None,
            detail: None,
            findings: Vec::new(),
            nanos: 0,
        }
    }

    /// Record that this engine could not fully scan something. Errors outrank
    /// unscannable; among unscannable reasons the first one stays.
    fn fail(&mut self, status: Status, reason: Reason, detail: String) {
        let worse = matches!(
            (self.status, status),
            (Status::Clean, _) | (Status::Unscannable, Status::Error)
        );
        if worse {
            self.status = status;
            self.reason = Some(reason);
            self.detail = Some(detail);
        }
    }

    fn error(&mut self, err: &EngineError, location: &str) {
        match err.unscannable_reason() {
            Some(r) => self.fail(Status::Unscannable, r, format!("{location}: {err}")),
            None => self.fail(
                Status::Error,
                Reason::EngineError,
                format!("{location}: {err}"),
            ),
        }
    }

    fn report(self, info: &EngineInfo, engine: &str) -> (EngineReport, Vec<Finding>) {
        let mut status = self.status;
        let mut reason = self.reason;
        let mut detail = self.detail;
        if let Some(worst) = self
            .findings
            .iter()
            .map(|f| f.severity)
            .max_by_key(|s| s.severity())
        {
            if status != Status::Clean {
                // Keep what was not scanned visible next to the detection.
                detail = Some(format!("{} (also: {})", status, detail.unwrap_or_default()));
            }
            status = worst;
            reason = None;
        }
        let report = EngineReport {
            name: engine.to_string(),
            version: info.version.clone(),
            signature_version: info.signature_version.clone(),
            status,
            reason,
            detail,
            duration_ms: (self.nanos / 1_000_000) as u64,
        };
        (report, self.findings)
    }
}

/// Scan one object with one engine; true when the engine trusts the object
/// (its allow-list), whose own hits are then dropped.
fn scan_one(engine: &dyn Engine, obj: &Object<'_>, ctx: &ScanContext, acc: &mut Acc) -> bool {
    let t = Instant::now();
    let r = engine.scan(obj, ctx);
    acc.nanos += t.elapsed().as_nanos();
    match r {
        Ok(scan) if scan.trusted => {
            tracing::debug!(
                engine = engine.name(),
                location = obj.location,
                "trusted by allow-list"
            );
            true
        }
        Ok(scan) => {
            for hit in scan.hits {
                let f = Finding {
                    engine: engine.name().to_string(),
                    signature: hit.signature,
                    location: obj.location.to_string(),
                    severity: if hit.suspicious {
                        Status::Suspicious
                    } else {
                        Status::Infected
                    },
                };
                if !acc.findings.contains(&f) {
                    acc.findings.push(f);
                }
            }
            false
        }
        Err(e) => {
            acc.error(&e, obj.location);
            false
        }
    }
}

/// Why the visitor ended a walk early.
#[derive(Debug, thiserror::Error)]
enum Halt {
    /// An engine failed (a timeout too): the file was not fully scanned.
    #[error("{0}")]
    Engine(EngineError),
    /// First-match mode and every engine has detected something.
    #[error("first match found")]
    Settled,
}

impl Scanner {
    pub fn new(set: EngineSet, cfg: ScanConfig) -> Scanner {
        Scanner {
            set: ArcSwap::from_pointee(set),
            cfg,
        }
    }

    /// The set new scans use.
    pub fn engine_set(&self) -> Arc<EngineSet> {
        self.set.load_full()
    }

    /// Swap in a new set; scans already running finish on the old one, which is
    /// dropped when the last of them ends.
    pub fn swap(&self, set: EngineSet) {
        self.set.store(Arc::new(set));
    }

    /// Swap in `set` only if `current` is still the set in use (so that a
    /// refresh never undoes a reload that happened meanwhile).
    pub fn swap_if_current(&self, current: &Arc<EngineSet>, set: EngineSet) -> bool {
        let prev = self.set.compare_and_swap(current, Arc::new(set));
        Arc::ptr_eq(&*prev, current)
    }

    pub fn config(&self) -> &ScanConfig {
        &self.cfg
    }

    /// Scan `blob`, displayed as `name`. `sha256` may be passed when already known.
    /// Never fails: every problem becomes part of the verdict.
    pub fn scan(&self, blob: &Blob, name: &str, sha256: Option<[u8; 32]>) -> Verdict {
        let set = self.set.load_full();
        self.scan_with(&set, blob, name, sha256)
    }

    pub fn scan_with(
        &self,
        set: &EngineSet,
        blob: &Blob,
        name: &str,
        sha256: Option<[u8; 32]>,
    ) -> Verdict {
        self.scan_with_mode(set, blob, name, sha256, false)
    }

    /// [`Self::scan_with`]; with `all_match`, engines that stop at an
    /// object's first detection report every match instead (clamd's
    /// ALLMATCHSCAN).
    pub fn scan_with_mode(
        &self,
        set: &EngineSet,
        blob: &Blob,
        name: &str,
        sha256: Option<[u8; 32]>,
        all_match: bool,
    ) -> Verdict {
        let start = Instant::now();
        let ctx = ScanContext {
            deadline: start + self.cfg.timeout(),
            all_match,
        };
        let size = blob.len();
        let engines = set.engines();
        let infos = &set.snapshot;
        let mut accs: Vec<Acc> = engines.iter().map(|_| Acc::new()).collect();

        let head = blob.head(sniff::SNIFF_LEN);
        let sha = match sha256 {
            Some(s) => Ok(s),
            None => blob.sha256(),
        };
        let (head, sha) = match (head, sha) {
            (Ok(h), Ok(s)) => (h, s),
            (Err(e), _) | (_, Err(e)) => {
                for acc in &mut accs {
                    acc.fail(
                        Status::Error,
                        Reason::EngineError,
                        format!("reading content: {e}"),
                    );
                }
                return finish(
                    engines,
                    infos,
                    accs,
                    String::new(),
                    size,
                    String::new(),
                    start,
                );
            }
        };
        let content_type = sniff::content_type(&head);
        let sha_hex = hex::encode(sha);

        if size > self.cfg.max_file_size {
            for acc in &mut accs {
                acc.fail(
                    Status::Unscannable,
                    Reason::TooLarge,
                    format!(
                        "{size} bytes exceeds max_file_size {}",
                        self.cfg.max_file_size
                    ),
                );
            }
            return finish(engines, infos, accs, sha_hex, size, content_type, start);
        }

        let root = Object {
            data: blob,
            name,
            location: name,
            content_type: &content_type,
            depth: 0,
            sha256: Some(sha),
        };

        let (whole, members): (Vec<usize>, Vec<usize>) =
            (0..engines.len()).partition(|&i| engines[i].scope() == Scope::Whole);

        // Whole-object engines (network engines, mostly waiting) run on their
        // own thread beside the CPU-bound member engines.
        let whole_accs: Vec<(usize, Acc)> = std::thread::scope(|s| {
            let handle = (!whole.is_empty()).then(|| {
                s.spawn(|| {
                    whole
                        .iter()
                        .map(|&i| {
                            let mut acc = Acc::new();
                            // A whole-object engine has no members to silence.
                            let _trusted = scan_one(engines[i].as_ref(), &root, &ctx, &mut acc);
                            (i, acc)
                        })
                        .collect::<Vec<_>>()
                })
            });
            if !members.is_empty() {
                self.scan_members(engines, &members, &root, &ctx, &mut accs);
            }
            match handle.map(|h| h.join()) {
                Some(Ok(v)) => v,
                Some(Err(_)) => whole
                    .iter()
                    .map(|&i| {
                        let mut acc = Acc::new();
                        acc.fail(Status::Error, Reason::EngineError, "engine panicked".into());
                        (i, acc)
                    })
                    .collect(),
                None => Vec::new(),
            }
        });
        for (i, acc) in whole_accs {
            accs[i] = acc;
        }
        finish(engines, infos, accs, sha_hex, size, content_type, start)
    }

    fn scan_members(
        &self,
        engines: &[Arc<dyn Engine>],
        members: &[usize],
        root: &Object<'_>,
        ctx: &ScanContext,
        accs: &mut [Acc],
    ) {
        // An engine that trusts the root (allow-list) is silent for all of it.
        let members: Vec<usize> = members
            .iter()
            .copied()
            .filter(|&i| !scan_one(engines[i].as_ref(), root, ctx, &mut accs[i]))
            .collect();
        // In first-match mode (clamscan's and clamd's default) a file's scan
        // ends at its first detection: once every engine has one, the verdict
        // is settled and the walk stops. Suspicious (heuristic) findings do
        // not end it, as in ClamAV, where a signature found later wins.
        let settled = |accs: &[Acc]| {
            !ctx.all_match
                && members.iter().all(|&i| {
                    engines[i].first_match()
                        && accs[i]
                            .findings
                            .iter()
                            .any(|f| f.severity == Status::Infected)
                })
        };
        if members.is_empty() || settled(accs) {
            return;
        }
        let members = members.as_slice();
        // Per engine: the depth of the trusted member being walked, if any.
        // The walk is depth-first and visits a container before its members,
        // so the entries after a trusted one that are deeper are inside it.
        let mut trusted_at: Vec<Option<u32>> = vec![None; engines.len()];
        // Every object is walked: archives are opened, and any other file is
        // searched for the archives embedded in it.
        let mut visit = |entry: &Entry<'_>| -> Result<(), Halt> {
            if ctx.expired() {
                return Err(Halt::Engine(EngineError::Timeout));
            }
            let mhead = entry
                .data
                .head(sniff::SNIFF_LEN)
                .map_err(|e| Halt::Engine(e.into()))?;
            let ctype = sniff::content_type(&mhead);
            let obj = Object {
                data: entry.data,
                name: entry.name,
                location: entry.location,
                content_type: &ctype,
                depth: entry.depth,
                sha256: Some(entry.sha256),
            };
            for &i in members {
                match trusted_at[i] {
                    Some(d) if entry.depth > d => continue,
                    _ => trusted_at[i] = None,
                }
                if scan_one(engines[i].as_ref(), &obj, ctx, &mut accs[i]) {
                    trusted_at[i] = Some(entry.depth);
                }
            }
            if settled(accs) {
                return Err(Halt::Settled);
            }
            Ok(())
        };
        let walked = moat_extract::walk(root.data, root.location, &self.cfg.archive, &mut visit);
        match walked {
            Ok(report) => {
                for p in &report.problems {
                    for &i in members {
                        accs[i].fail(Status::Unscannable, p.reason(), p.detail());
                    }
                }
            }
            // What the rest of the file holds cannot change the verdict.
            Err(WalkError::Visit(Halt::Settled)) => {}
            Err(WalkError::Visit(Halt::Engine(e))) => {
                for &i in members {
                    accs[i].error(&e, root.location);
                }
            }
            Err(e) => {
                for &i in members {
                    accs[i].fail(
                        Status::Error,
                        Reason::EngineError,
                        format!("{}: extraction failed: {e}", root.location),
                    );
                }
            }
        }
    }
}

fn finish(
    engines: &[Arc<dyn Engine>],
    infos: &[EngineInfo],
    accs: Vec<Acc>,
    sha256: String,
    size: u64,
    content_type: String,
    start: Instant,
) -> Verdict {
    let mut reports = Vec::with_capacity(accs.len());
    let mut findings = Vec::new();
    for ((acc, info), engine) in accs.into_iter().zip(infos).zip(engines) {
        let (r, f) = acc.report(info, engine.name());
        reports.push(r);
        findings.extend(f);
    }
    Verdict::aggregate(
        reports,
        findings,
        sha256,
        size,
        content_type,
        start.elapsed().as_millis() as u64,
    )
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::{EngineConfig, ScanConfig, build_engine_set, eicar_only_engines};
    use moat_core::{EngineScan, Hit};
    use std::io::Write;

    const EICAR: &[u8] = br"X5O!P%@AP[4\PZX54(P^)7CC)7}$EICAR-STANDARD-ANTIVIRUS-TEST-FILE!$H+H*";

    /// An engine that always answers the same way (stands in for a broken or slow engine).
    struct Fixed(fn() -> Result<EngineScan, EngineError>, Scope);

    impl Engine for Fixed {
        fn name(&self) -> &str {
            "fixed"
        }
        fn info(&self) -> EngineInfo {
            EngineInfo {
                name: "fixed".into(),
                ..Default::default()
            }
        }
        fn scan(&self, _: &Object<'_>, _: &ScanContext) -> Result<EngineScan, EngineError> {
            (self.0)()
        }
        fn scope(&self) -> Scope {
            self.1
        }
    }

    fn builtin_plus(extra: Option<Fixed>) -> Scanner {
        let set = build_engine_set(&eicar_only_engines()).unwrap();
        let mut engines: Vec<Arc<dyn Engine>> = set.engines().to_vec();
        if let Some(e) = extra {
            engines.push(Arc::new(e));
        }
        Scanner::new(EngineSet::new(engines), ScanConfig::default())
    }

    fn zip_with(name: &str, data: &[u8]) -> Blob {
        let mut buf = std::io::Cursor::new(Vec::new());
        let mut z = zip::ZipWriter::new(&mut buf);
        z.start_file(name, zip::write::SimpleFileOptions::default())
            .unwrap();
        z.write_all(data).unwrap();
        z.finish().unwrap();
        Blob::from_vec(buf.into_inner())
    }

    /// A remote-style engine whose signature version can be changed.
    struct Remote {
        version: std::sync::atomic::AtomicU64,
        ttl: Option<std::time::Duration>,
    }

    impl Engine for Remote {
        fn name(&self) -> &str {
            "remote"
        }
        fn info(&self) -> EngineInfo {
            EngineInfo {
                name: "remote".into(),
                signature_version: self
                    .version
                    .load(std::sync::atomic::Ordering::SeqCst)
                    .to_string(),
                ..Default::default()
            }
        }
        fn scan(&self, _: &Object<'_>, _: &ScanContext) -> Result<EngineScan, EngineError> {
            Ok(EngineScan::default())
        }
        fn cache_ttl(&self) -> Option<std::time::Duration> {
            self.ttl
        }
    }

    #[test]
    fn a_remote_engines_live_fingerprint_change_is_seen_and_refreshed() {
        use std::sync::atomic::Ordering;
        use std::time::Duration;
        let remote = Arc::new(Remote {
            version: 1.into(),
            ttl: Some(Duration::from_secs(60)),
        });
        let local = Arc::new(Remote {
            version: 1.into(),
            ttl: None,
        });
        let slower = Arc::new(Remote {
            version: 1.into(),
            ttl: Some(Duration::from_secs(600)),
        });
        let set = EngineSet::new(vec![remote.clone(), local.clone(), slower]);
        assert_eq!(set.cache_ttl(), Some(Duration::from_secs(60)));
        assert!(set.drifted().is_empty());
        // Engines without a TTL are not polled: their reload is the file watcher's.
        local.version.store(2, Ordering::SeqCst);
        assert!(set.drifted().is_empty());
        remote.version.store(2, Ordering::SeqCst);
        assert_eq!(set.drifted(), vec!["remote"]);
        let fresh = set.refreshed();
        assert_ne!(fresh.fingerprint(), set.fingerprint());
        assert!(fresh.drifted().is_empty());
        assert_eq!(fresh.snapshot[0].signature_version, "2");
        // Without remote engines: no TTL.
        let plain = build_engine_set(&eicar_only_engines()).unwrap();
        assert_eq!(plain.cache_ttl(), None);
        // A swap only replaces the set it was computed from.
        let scanner = Scanner::new(set, ScanConfig::default());
        let current = scanner.engine_set();
        let fresh = current.refreshed();
        let fp = fresh.fingerprint().to_string();
        scanner.swap(plain);
        assert!(!scanner.swap_if_current(&current, fresh));
        assert_ne!(scanner.engine_set().fingerprint(), fp);
        let current = scanner.engine_set();
        assert!(scanner.swap_if_current(&current, current.refreshed()));
    }

    #[test]
    fn finds_eicar_inside_a_zip_with_its_location() {
        let v = builtin_plus(None).scan(&zip_with("dir/eicar.com", EICAR), "outer.zip", None);
        assert_eq!(v.status, Status::Infected);
        assert_eq!(v.findings[0].location, "outer.zip>dir/eicar.com");
        assert_eq!(v.content_type, "application/zip");
        assert_eq!(v.sha256.len(), 64);
    }

    #[test]
    fn an_engine_error_is_never_clean_and_infected_still_wins() {
        let broken = || {
            Fixed(
                || Err(EngineError::Unavailable("connection refused".into())),
                Scope::Whole,
            )
        };
        let s = builtin_plus(Some(broken()));
        let v = s.scan(&Blob::from_vec(b"harmless".to_vec()), "a.txt", None);
        assert_eq!(v.status, Status::Error);
        assert_eq!(v.reason, Some(Reason::EngineError));
        assert!(
            v.engines[1]
                .detail
                .as_deref()
                .unwrap()
                .contains("connection refused")
        );
        let v = s.scan(&Blob::from_vec(EICAR.to_vec()), "e.com", None);
        assert_eq!(v.status, Status::Infected);
    }

    #[test]
    fn timeouts_and_unscannable_answers_keep_their_reason() {
        let s = builtin_plus(Some(Fixed(|| Err(EngineError::Timeout), Scope::Members)));
        let v = s.scan(&Blob::from_vec(b"harmless".to_vec()), "a.txt", None);
        assert_eq!(
            (v.status, v.reason),
            (Status::Unscannable, Some(Reason::Timeout))
        );
        let ok = || {
            Ok(EngineScan {
                hits: vec![Hit {
                    signature: "Heur.X".into(),
                    suspicious: true,
                }],
                trusted: false,
            })
        };
        let s = builtin_plus(Some(Fixed(ok, Scope::Whole)));
        let v = s.scan(&Blob::from_vec(b"harmless".to_vec()), "a.txt", None);
        assert_eq!(v.status, Status::Suspicious);
    }

    #[test]
    fn oversize_objects_are_too_large_without_scanning() {
        let set = build_engine_set(&eicar_only_engines()).unwrap();
        let cfg = ScanConfig {
            max_file_size: 10,
            ..ScanConfig::default()
        };
        let v = Scanner::new(set, cfg).scan(&Blob::from_vec(EICAR.to_vec()), "e.com", None);
        assert_eq!(
            (v.status, v.reason),
            (Status::Unscannable, Some(Reason::TooLarge))
        );
        assert!(v.findings.is_empty());
    }

    #[test]
    fn encrypted_members_make_the_file_unscannable() {
        let mut buf = std::io::Cursor::new(Vec::new());
        let mut z = zip::ZipWriter::new(&mut buf);
        z.start_file("a.txt", zip::write::SimpleFileOptions::default())
            .unwrap();
        z.write_all(b"plain").unwrap();
        z.finish().unwrap();
        let mut raw = buf.into_inner();
        raw[6] |= 1; // local header: encrypted
        let cd = raw.windows(4).position(|w| w == b"PK\x01\x02").unwrap();
        raw[cd + 8] |= 1; // central directory: encrypted
        let v = builtin_plus(None).scan(&Blob::from_vec(raw), "enc.zip", None);
        assert_eq!(
            (v.status, v.reason),
            (Status::Unscannable, Some(Reason::Encrypted))
        );
    }

    /// A zip of `(name, data)` members (stored, so their bytes are visible).
    fn zip_of(members: &[(&str, &[u8])]) -> Vec<u8> {
        let mut buf = std::io::Cursor::new(Vec::new());
        let mut z = zip::ZipWriter::new(&mut buf);
        for (name, data) in members {
            z.start_file(*name, zip::write::SimpleFileOptions::default())
                .unwrap();
            z.write_all(data).unwrap();
        }
        z.finish().unwrap();
        buf.into_inner()
    }

    #[test]
    fn an_allow_listed_member_silences_itself_and_its_members_but_not_its_siblings() {
        // trusted.zip holds EICAR; beside it, a second EICAR and a zip whose
        // member is also EICAR. Only trusted.zip (by SHA-256, .sfp) is allowed.
        let trusted = zip_of(&[("inner/eicar.com", EICAR)]);
        let outer = zip_of(&[
            ("trusted.zip", &trusted),
            ("loose.com", EICAR),
            ("other.zip", &zip_of(&[("eicar.com", EICAR)])),
        ]);
        let sha = Blob::from_vec(trusted.clone()).sha256().unwrap();
        let d = tempfile::tempdir().unwrap();
        std::fs::write(
            d.path().join("local.sfp"),
            format!("{}:{}:Trusted.Zip\n", hex::encode(sha), trusted.len()),
        )
        .unwrap();
        let cfg = EngineConfig::Builtin {
            name: None,
            signatures: vec![d.path().to_path_buf()],
            detect_pua: false,
            verify_signatures: true,
            public_key: None,
            all_match: false,
            cache: None,
            cache_dir: None,
        };
        let s = Scanner::new(build_engine_set(&[cfg]).unwrap(), ScanConfig::default());
        let v = all_matches(&s, &outer, "outer.zip");
        let mut locations: Vec<&str> = v.findings.iter().map(|f| f.location.as_str()).collect();
        locations.sort();
        assert_eq!(
            locations,
            vec!["outer.zip>loose.com", "outer.zip>other.zip>eicar.com"]
        );
        // First match: the first detection after the silenced member.
        let v = s.scan(&Blob::from_vec(outer.clone()), "outer.zip", None);
        assert_eq!(v.status, Status::Infected);
        assert_eq!(v.findings.len(), 1);
        assert_eq!(v.findings[0].location, "outer.zip>loose.com");
        // The trusted file scanned by itself: clean, members included.
        let v = all_matches(&s, &trusted, "trusted.zip");
        assert_eq!(v.status, Status::Clean, "{:?}", v.findings);
        // Without the allow-list the trusted member is found too.
        let plain = build_engine_set(&eicar_only_engines()).unwrap();
        let v = all_matches(&Scanner::new(plain, ScanConfig::default()), &outer, "o.zip");
        assert_eq!(v.findings.len(), 3);
    }

    fn all_matches(s: &Scanner, data: &[u8], name: &str) -> Verdict {
        s.scan_with_mode(
            &s.engine_set(),
            &Blob::from_vec(data.to_vec()),
            name,
            None,
            true,
        )
    }

    #[test]
    fn first_match_mode_ends_a_files_scan_at_its_first_detection() {
        // As clamscan and clamd without --allmatch: one detection per file,
        // and what follows it is not opened (the third member is a zip that
        // would be unscannable: encrypted).
        let mut encrypted = zip_of(&[("secret.txt", b"hidden")]);
        encrypted[6] |= 1; // local header: encrypted
        let cd = encrypted
            .windows(4)
            .position(|w| w == b"PK\x01\x02")
            .unwrap();
        encrypted[cd + 8] |= 1; // central directory: encrypted
        let outer = zip_of(&[
            ("a/eicar.com", EICAR),
            ("b/eicar.com", EICAR),
            ("c/locked.zip", &encrypted),
        ]);
        let s = builtin_plus(None);
        let v = s.scan(&Blob::from_vec(outer.clone()), "o.zip", None);
        assert_eq!(v.status, Status::Infected);
        let locations: Vec<&str> = v.findings.iter().map(|f| f.location.as_str()).collect();
        assert_eq!(locations, vec!["o.zip>a/eicar.com"]);
        // Every match, and the encrypted member still reported beside them.
        let v = all_matches(&s, &outer, "o.zip");
        assert_eq!(v.status, Status::Infected);
        let locations: Vec<&str> = v.findings.iter().map(|f| f.location.as_str()).collect();
        assert_eq!(locations, vec!["o.zip>a/eicar.com", "o.zip>b/eicar.com"]);
        let detail = v.engines[0].detail.clone().unwrap_or_default();
        assert!(detail.contains("encrypted"), "{detail}");
    }
}
