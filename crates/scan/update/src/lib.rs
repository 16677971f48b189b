//! moat-update: signature updates, compatible with ClamAV's mirrors.
//!
//! [`Updater::run`] does for each configured database what freshclam does:
//! 1. the DNS TXT record `current.cvd.clamav.net` (official mirror; any
//!    record or none when configured, [`dns`]) gives the current versions
//!    of `main`, `daily` and `bytecode`: a database already at that version
//!    costs no HTTP request at all. Without a usable record (lookup failed,
//!    malformed or stale, a database it does not list), a ranged GET of the
//!    first 512 bytes of `NAME.cvd` (the header) gives the mirror's
//!    version, with `If-Modified-Since` the local build time;
//! 2. when the local copy is older, `NAME-(v+1).cdiff` .. `NAME-V.cdiff`
//!    are fetched, each signature-checked and applied to the unpacked local
//!    database, and a `.cld` is built from the result; any failure falls
//!    back to the whole `NAME.cvd`;
//! 3. the new file is staged in a private directory inside the database
//!    directory (mode 0700, files 0600), verified (header MD5 and digital
//!    signature, the signed `.info` and every member's size and SHA-256),
//!    loaded into a fresh builtin engine, and only then renamed over the
//!    old one: a truncated, unsigned or wrongly signed download never
//!    replaces a good database.
//!
//! Extra URLs (third-party `.ndb`, `.hdb`, `.ldb`, `.yara` ... files) are
//! fetched with `If-None-Match`/`If-Modified-Since` and staged the same way
//! (test-loaded by the builtin engine, or compiled by YARA-X). A YARA rule
//! archive (`.tar.gz`, `.tgz`, `.zip`) is unpacked with limits ([`rules`]),
//! compiled, and exchanged whole for the previous `<name>.yara.d/`.
//!
//! The mirror's rate limits are honoured: a 429 (or 503 with
//! `Retry-After`) or 403 starts a cool-down that is kept in the state file
//! ([`state::STATE_FILE`]) with the history of every update, so no request
//! goes to that server before it ends, across runs and restarts.
#![forbid(unsafe_code)]

pub mod cdiff;
pub mod config;
pub mod db;
pub mod dns;
pub mod http;
pub mod rules;
pub mod state;
#[cfg(feature = "testing")]
pub mod testing;

pub use config::UpdateConfig;
pub use state::{Record, State};

use http::{Conditions, Fetch, HttpError};
use moat_builtin::dsig::Keys;
use std::fs::File;
use std::os::unix::fs::{OpenOptionsExt, PermissionsExt};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Instant, SystemTime, UNIX_EPOCH};

/// Lock file in the database directory (one updater at a time).
pub const LOCK_FILE: &str = "moat-update.lock";
/// Prefix of the staging directories.
const STAGING_PREFIX: &str = ".moat-update-";
/// More versions behind than this: the whole database instead of cdiffs.
const MAX_CDIFFS: u64 = 500;
/// Largest cdiff downloaded.
const MAX_CDIFF_SIZE: u64 = 256 << 20;
/// Timeout of one DNS attempt (two attempts).
const DNS_TIMEOUT: std::time::Duration = std::time::Duration::from_secs(5);

/// Why an update run could not start.
#[derive(Debug, thiserror::Error)]
pub enum UpdateError {
    #[error("invalid [signatures.update] configuration: {0}")]
    Config(String),
    #[error("reading the public key {path}: {msg}")]
    Key { path: PathBuf, msg: String },
    #[error("database directory {path}: {source}")]
    Dir {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("another update is running on {0} (lock held)")]
    Locked(PathBuf),
    #[error(transparent)]
    Http(#[from] HttpError),
}

/// What happened to one database.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Outcome {
    Updated,
    UpToDate,
    /// Not updated; the previous copy (if any) stays.
    Failed,
    /// No request made: the server asked us to wait.
    Cooldown,
}

impl Outcome {
    pub fn as_str(self) -> &'static str {
        match self {
            Outcome::Updated => "updated",
            Outcome::UpToDate => "up_to_date",
            Outcome::Failed => "failed",
            Outcome::Cooldown => "cooldown",
        }
    }
}

/// The result for one database or extra URL.
#[derive(Debug, Clone)]
pub struct DbReport {
    pub outcome: Outcome,
    pub record: Record,
}

/// The result of a run.
#[derive(Debug, Clone, Default)]
pub struct Report {
    pub databases: Vec<DbReport>,
}

impl Report {
    pub fn updated(&self) -> bool {
        self.databases.iter().any(|d| d.outcome == Outcome::Updated)
    }
    pub fn failed(&self) -> bool {
        self.databases.iter().any(|d| d.outcome == Outcome::Failed)
    }
    pub fn cooldown(&self) -> bool {
        self.databases
            .iter()
            .any(|d| d.outcome == Outcome::Cooldown)
    }
}

/// Whether `name` is a plain file name: letters, digits, `.`, `_`, `-`, not
/// starting with `.` (so never `..`, a hidden file or a path).
pub fn valid_name(name: &str) -> bool {
    !name.is_empty()
        && name.len() <= 255
        && !name.starts_with('.')
        && name
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '.' | '_' | '-'))
}

/// The file name an extra URL is saved as (its last path segment), which
/// must be a signature file moat reads.
pub fn extra_file_name(url: &str) -> Result<String, String> {
    let u = reqwest::Url::parse(url).map_err(|e| format!("extra URL {url:?}: {e}"))?;
    if !matches!(u.scheme(), "http" | "https") {
        return Err(format!("extra URL {url:?}: only http(s) is supported"));
    }
    let name = u
        .path_segments()
        .and_then(|mut s| s.next_back())
        .unwrap_or_default()
        .to_string();
    if !valid_name(&name) {
        return Err(format!(
            "extra URL {url:?}: the file name {name:?} must be letters, digits, '.', '_', '-'"
        ));
    }
    let ext = name
        .rsplit('.')
        .next()
        .unwrap_or_default()
        .to_ascii_lowercase();
    if !(moat_builtin::is_signature_file(&name)
        || ext == "yar"
        || ext == "yara"
        || rules::archive(&name).is_some())
    {
        return Err(format!(
            "extra URL {url:?}: {name:?} is not a signature file moat reads (.ndb, .hdb, .hsb, .ldb, .cvd, .yara ...) nor a YARA rule archive (.tar.gz, .tgz, .zip)"
        ));
    }
    Ok(name)
}

fn now() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_secs())
}

/// The User-Agent sent when none is configured.
pub fn default_user_agent() -> String {
    format!("moat/{} (signature updater)", env!("CARGO_PKG_VERSION"))
}

/// Read a public key file ([`moat_builtin::dsig::PublicKey::parse`]).
pub fn read_keys(path: &Path) -> Result<Keys, UpdateError> {
    moat_builtin::dsig::read_key_file(path).map_err(|msg| UpdateError::Key {
        path: path.to_path_buf(),
        msg,
    })
}

pub struct Updater {
    cfg: UpdateConfig,
    dir: PathBuf,
    keys: Arc<Keys>,
    client: http::Client,
}

/// A file staged for installation (in its staging directory, removed on drop).
struct Staged {
    _dir: tempfile::TempDir,
    path: PathBuf,
    version: Option<u64>,
    method: &'static str,
    source: String,
}

/// How a step failed: the server wants us to wait, or anything else.
enum StepError {
    RetryLater { until: u64, reason: String },
    Other(String),
}

impl From<HttpError> for StepError {
    fn from(e: HttpError) -> StepError {
        match e {
            HttpError::RetryLater { secs, .. } => StepError::RetryLater {
                until: now() + secs,
                reason: e.to_string(),
            },
            other => StepError::Other(other.to_string()),
        }
    }
}

impl From<std::io::Error> for StepError {
    fn from(e: std::io::Error) -> StepError {
        StepError::Other(e.to_string())
    }
}

impl Updater {
    /// Check the configuration, read the key, create the database directory.
    pub fn new(cfg: &UpdateConfig, dir: &Path) -> Result<Updater, UpdateError> {
        cfg.validate().map_err(UpdateError::Config)?;
        let keys = match &cfg.public_key {
            Some(p) => read_keys(p)?,
            None => Keys::clamav().clone(),
        };
        std::fs::create_dir_all(dir).map_err(|source| UpdateError::Dir {
            path: dir.to_path_buf(),
            source,
        })?;
        let ua = cfg.user_agent.clone().unwrap_or_else(default_user_agent);
        let client = http::Client::new(
            &ua,
            cfg.proxy.as_deref(),
            cfg.timeout(),
            cfg.max_download_size,
        )?;
        Ok(Updater {
            cfg: cfg.clone(),
            dir: dir.to_path_buf(),
            keys: Arc::new(keys),
            client,
        })
    }

    pub fn database_dir(&self) -> &Path {
        &self.dir
    }

    /// Check and update every database and extra URL once. Blocking (HTTP,
    /// verification, a test load); call from a blocking thread.
    pub fn run(&self) -> Result<Report, UpdateError> {
        let _lock = self.lock()?;
        self.clean_staging();
        let mut state = State::load(&self.dir);
        let mut report = Report::default();
        let dns = self.dns_info();
        for name in &self.cfg.databases {
            let started = Instant::now();
            let r = self.update_database(&mut state, name, dns.as_ref());
            log(&r, started);
            state.record(r.record.clone());
            report.databases.push(r);
        }
        for url in &self.cfg.extra_urls {
            let started = Instant::now();
            let r = self.update_extra(&mut state, url);
            log(&r, started);
            state.record(r.record.clone());
            report.databases.push(r);
        }
        if let Err(e) = state.save(&self.dir) {
            tracing::warn!(dir = %self.dir.display(), error = %e, "cannot save the update state");
        }
        Ok(report)
    }

    /// The versions announced by the DNS TXT record, when configured and
    /// usable; `None` (ask the mirror) on any failure.
    fn dns_info(&self) -> Option<dns::UpdateInfo> {
        let domain = self.cfg.dns_domain()?;
        if self.cfg.databases.is_empty() {
            return None;
        }
        let resolver = match self.cfg.dns_resolver.as_deref().map(dns::parse_resolver) {
            Some(Ok(a)) => Some(a),
            Some(Err(e)) => {
                tracing::warn!(error = %e, "DNS version lookup skipped; asking the mirror");
                return None;
            }
            None => None,
        };
        match dns::lookup_txt(domain, resolver, DNS_TIMEOUT).and_then(|t| dns::parse(&t, now())) {
            Ok(i) => {
                tracing::info!(domain, record = %i.record, "database versions from DNS");
                Some(i)
            }
            Err(e) => {
                tracing::warn!(domain, error = %e, "DNS version lookup failed; asking the mirror");
                None
            }
        }
    }

    fn lock(&self) -> Result<File, UpdateError> {
        let p = self.dir.join(LOCK_FILE);
        let f = std::fs::OpenOptions::new()
            .create(true)
            .truncate(false)
            .write(true)
            .mode(0o600)
            .open(&p)
            .map_err(|source| UpdateError::Dir {
                path: p.clone(),
                source,
            })?;
        rustix::fs::flock(&f, rustix::fs::FlockOperation::NonBlockingLockExclusive)
            .map_err(|_| UpdateError::Locked(self.dir.clone()))?;
        Ok(f)
    }

    /// Remove staging directories left by an interrupted run (the lock is held).
    fn clean_staging(&self) {
        let Ok(rd) = std::fs::read_dir(&self.dir) else {
            return;
        };
        for e in rd.flatten() {
            if e.file_name().to_string_lossy().starts_with(STAGING_PREFIX)
                && e.file_type().is_ok_and(|t| t.is_dir())
            {
                let _ = std::fs::remove_dir_all(e.path());
            }
        }
    }

    fn staging(&self) -> std::io::Result<tempfile::TempDir> {
        tempfile::Builder::new()
            .prefix(STAGING_PREFIX)
            .tempdir_in(&self.dir)
    }

    fn mirror_url(&self, file: &str) -> String {
        format!("{}/{file}", self.cfg.mirror.trim_end_matches('/'))
    }

    fn update_database(
        &self,
        state: &mut State,
        name: &str,
        dns: Option<&dns::UpdateInfo>,
    ) -> DbReport {
        let local = db::current(&self.dir, name);
        let from = local.as_ref().map(|(_, h)| h.version);
        let mut record = Record {
            time: now(),
            database: name.to_string(),
            from_version: from,
            version: from,
            source: self.mirror_url(&format!("{name}.cvd")),
            ..Record::default()
        };
        let origin = http::origin(&self.cfg.mirror);
        if let Some(c) = state.cooldown(&origin, now()) {
            record.detail = format!(
                "cool-down until {} ({}); nothing requested",
                httpdate::fmt_http_date(UNIX_EPOCH + std::time::Duration::from_secs(c.until)),
                c.reason
            );
            return finish(Outcome::Cooldown, record);
        }
        let announced = dns.and_then(|i| i.version(name));
        if let (Some(v), Some(domain)) = (announced, self.cfg.dns_domain()) {
            record.detail = format!("version {v} announced by DNS TXT {domain}");
        }
        let step = self.database_step(
            name,
            local.as_ref().map(|(p, h)| (p.as_path(), h)),
            announced,
        );
        self.settle(state, origin, record, step, Some(name), |_| {})
    }

    /// Turn a step's outcome into its report: install what was staged (then
    /// `on_installed`), remember a mirror's cool-down, or record the failure.
    fn settle(
        &self,
        state: &mut State,
        origin: String,
        mut record: Record,
        step: Result<Option<Staged>, StepError>,
        database: Option<&str>,
        on_installed: impl FnOnce(&mut State),
    ) -> DbReport {
        match step {
            Ok(None) => finish(Outcome::UpToDate, record),
            Ok(Some(staged)) => {
                record.source = staged.source.clone();
                record.method = staged.method.to_string();
                match self.install(&staged, database) {
                    Ok(()) => {
                        record.version = staged.version;
                        on_installed(state);
                        finish(Outcome::Updated, record)
                    }
                    Err(e) => {
                        record.detail = e;
                        finish(Outcome::Failed, record)
                    }
                }
            }
            Err(StepError::RetryLater { until, reason }) => {
                state.cooldowns.insert(
                    origin,
                    state::Cooldown {
                        until,
                        reason: reason.clone(),
                    },
                );
                record.detail = reason;
                finish(Outcome::Cooldown, record)
            }
            Err(StepError::Other(e)) => {
                record.detail = e;
                finish(Outcome::Failed, record)
            }
        }
    }

    /// Find the remote version (`announced` by DNS, else the header probe);
    /// when newer, stage the new database (by cdiffs, else whole). `None`:
    /// up to date.
    fn database_step(
        &self,
        name: &str,
        local: Option<(&Path, &moat_builtin::cvd::CvdHeader)>,
        announced: Option<u64>,
    ) -> Result<Option<Staged>, StepError> {
        let url = self.mirror_url(&format!("{name}.cvd"));
        let remote = match announced {
            Some(v) => v,
            None => match self.probe(&url, local)? {
                Some(v) => v,
                None => return Ok(None),
            },
        };
        self.fetch_newer(name, url, local, remote, announced.is_some())
    }

    /// The ranged GET of the header: the mirror's version, `None` when the
    /// server says not modified since the local copy's build time.
    fn probe(
        &self,
        url: &str,
        local: Option<(&Path, &moat_builtin::cvd::CvdHeader)>,
    ) -> Result<Option<u64>, StepError> {
        let cond = Conditions {
            if_modified_since: local.filter(|(_, h)| h.stime > 0).map(|(_, h)| {
                httpdate::fmt_http_date(UNIX_EPOCH + std::time::Duration::from_secs(h.stime))
            }),
            ..Conditions::default()
        };
        let mut head = Vec::with_capacity(512);
        let remote = match self
            .client
            .get(url, Some((0, 511)), &cond, &mut head, Some(512))?
        {
            Fetch::NotModified if local.is_some() => return Ok(None),
            Fetch::NotModified => {
                return Err(StepError::Other(format!(
                    "{url}: the server says not modified, but there is no local copy"
                )));
            }
            Fetch::Ok(_) => {
                if head.len() < moat_builtin::cvd::HEADER_LEN
                    || head.iter().any(|b| !(b.is_ascii_graphic() || *b == b' '))
                {
                    return Err(StepError::Other(format!(
                        "{url}: malformed database header"
                    )));
                }
                moat_builtin::cvd::parse_header(&head)
                    .map_err(|e| StepError::Other(format!("{url}: {e}")))?
                    .version
            }
        };
        Ok(Some(remote))
    }

    /// Second half of [`Updater::database_step`], once the remote version
    /// is known.
    fn fetch_newer(
        &self,
        name: &str,
        url: String,
        local: Option<(&Path, &moat_builtin::cvd::CvdHeader)>,
        remote: u64,
        announced: bool,
    ) -> Result<Option<Staged>, StepError> {
        if let Some((_, h)) = local
            && h.version >= remote
        {
            return Ok(None);
        }
        tracing::info!(database = name, local = ?local.map(|(_, h)| h.version), remote, "newer database on the mirror");
        if let Some((path, h)) = local
            && self.cfg.cdiffs
            && remote - h.version <= MAX_CDIFFS
        {
            match self.by_cdiffs(name, path, h.version, remote) {
                Ok(s) => return Ok(Some(s)),
                Err(StepError::RetryLater { until, reason }) => {
                    return Err(StepError::RetryLater { until, reason });
                }
                Err(StepError::Other(e)) => {
                    tracing::warn!(database = name, error = %e, "incremental update failed; downloading the whole database");
                }
            }
        }
        let staging = self.staging()?;
        let path = staging.path().join(format!("{name}.cvd"));
        self.download(&url, &path, &Conditions::default(), None)?;
        let hdr = self.check(&path)?;
        if let Some((_, h)) = local
            && hdr.version <= h.version
        {
            if announced {
                // freshclam's "mirror not synchronised": the CDN has not
                // caught up with the DNS record yet; try again next time.
                tracing::warn!(
                    database = name,
                    announced = remote,
                    got = hdr.version,
                    "the mirror does not serve the version DNS announced yet; keeping the local copy"
                );
                return Ok(None);
            }
            return Err(StepError::Other(format!(
                "{url}: the mirror served version {}, not newer than the local {}",
                hdr.version, h.version
            )));
        }
        if hdr.version < remote {
            tracing::warn!(
                database = name,
                advertised = remote,
                got = hdr.version,
                "the mirror served an older version than its header advertised; taking it"
            );
        }
        Ok(Some(Staged {
            _dir: staging,
            path,
            version: Some(hdr.version),
            method: "cvd",
            source: url,
        }))
    }

    /// Apply `name-(from+1).cdiff` .. `name-to.cdiff` to the unpacked local
    /// database and build `name.cld`.
    fn by_cdiffs(&self, name: &str, local: &Path, from: u64, to: u64) -> Result<Staged, StepError> {
        let staging = self.staging()?;
        let unpacked = staging.path().join("db");
        std::fs::create_dir(&unpacked)?;
        db::verify(local, &self.keys, Some(&unpacked))
            .map_err(|e| StepError::Other(format!("the local copy: {e}")))?;
        let mut last = String::new();
        for v in from + 1..=to {
            let file = format!("{name}-{v}.cdiff");
            let url = self.mirror_url(&file);
            let path = staging.path().join(&file);
            self.download(&url, &path, &Conditions::default(), Some(MAX_CDIFF_SIZE))?;
            cdiff::apply_file(&path, &unpacked, v, &self.keys.cdiff)
                .map_err(|e| StepError::Other(format!("{url}: {e}")))?;
            std::fs::remove_file(&path)?;
            last = url;
        }
        let out = staging.path().join(format!("{name}.cld"));
        let built =
            db::build_cld(&unpacked, name, &out).map_err(|e| StepError::Other(e.to_string()))?;
        std::fs::remove_dir_all(&unpacked)?;
        if built.version != to {
            return Err(StepError::Other(format!(
                "after the cdiffs the database is version {}, expected {to}",
                built.version
            )));
        }
        let hdr = self.check(&out)?;
        Ok(Staged {
            _dir: staging,
            path: out,
            version: Some(hdr.version),
            method: "cdiff",
            source: last,
        })
    }

    /// GET `url` into a new 0600 file at `path`, at most `cap` bytes (and
    /// at most the configured download limit).
    fn download(
        &self,
        url: &str,
        path: &Path,
        cond: &Conditions,
        cap: Option<u64>,
    ) -> Result<Fetch, StepError> {
        let f = std::fs::OpenOptions::new()
            .write(true)
            .create_new(true)
            .mode(0o600)
            .open(path)?;
        let mut w = std::io::BufWriter::new(f);
        let mut capped = CapWriter {
            inner: &mut w,
            left: cap.unwrap_or(u64::MAX),
        };
        let got = self.client.get(url, None, cond, &mut capped, None)?;
        let f = w.into_inner().map_err(|e| e.into_error())?;
        f.sync_all()?;
        Ok(got)
    }

    /// Verify a staged container and load it into a fresh engine.
    fn check(&self, path: &Path) -> Result<moat_builtin::cvd::CvdHeader, StepError> {
        let hdr =
            db::verify(path, &self.keys, None).map_err(|e| StepError::Other(e.to_string()))?;
        self.test_load(path, false)?;
        Ok(hdr)
    }

    /// Load one staged file as moat would. A signed database (`strict` off)
    /// is refused when it loads nothing but errors; a plain third-party file
    /// (`strict` on) is refused on any malformed line, as freshclam refuses a
    /// database that ClamAV cannot load whole: a half-broken download must
    /// not replace a good copy.
    fn test_load(&self, path: &Path, strict: bool) -> Result<(), StepError> {
        let ext = path
            .extension()
            .map(|e| e.to_string_lossy().to_ascii_lowercase())
            .unwrap_or_default();
        let fail = |m: String| StepError::Other(format!("test load of {}: {m}", path.display()));
        let info = if ext == "yar" || ext == "yara" {
            let e = moat_yara::YaraEngine::load("update-check", &[path.to_path_buf()])
                .map_err(|e| fail(e.to_string()))?;
            moat_core_info(&e)
        } else {
            let opts = moat_builtin::LoadOptions {
                detect_pua: true,
                verify_signatures: true,
                public_keys: Some(self.keys.clone()),
                all_match: true,
                cache_dir: None,
            };
            let e = moat_builtin::BuiltinEngine::load_with(
                "update-check",
                &[path.to_path_buf()],
                &opts,
            )
            .map_err(|e| fail(e.to_string()))?;
            moat_core_info(&e)
        };
        if let Some(first) = info.load_errors.first() {
            if strict {
                return Err(fail(format!(
                    "{} malformed line(s), first: {first}",
                    info.load_errors.len()
                )));
            }
            if info.signatures.values().sum::<u64>() == 0 {
                return Err(fail(format!("nothing loaded: {first}")));
            }
        }
        Ok(())
    }

    /// Move a staged file into the database directory (mode 0644, as
    /// freshclam leaves them); for a database, then remove its other
    /// container (`NAME.cvd` after a `NAME.cld` was installed, and back).
    fn install(&self, staged: &Staged, database: Option<&str>) -> Result<(), String> {
        let name = staged
            .path
            .file_name()
            .map(|n| n.to_string_lossy().into_owned())
            .unwrap_or_default();
        let dest = self.dir.join(&name);
        if staged.path.is_dir() {
            install_dir(&staged.path, &dest)
                .map_err(|e| format!("installing {}: {e}", dest.display()))?;
        } else {
            std::fs::set_permissions(&staged.path, std::fs::Permissions::from_mode(0o644))
                .and_then(|()| std::fs::rename(&staged.path, &dest))
                .map_err(|e| format!("installing {}: {e}", dest.display()))?;
        }
        if let Some(db) = database {
            for ext in ["cvd", "cld"] {
                let other = self.dir.join(format!("{db}.{ext}"));
                if other != dest && other.exists() {
                    let _ = std::fs::remove_file(&other);
                }
            }
        }
        if let Ok(d) = File::open(&self.dir) {
            let _ = d.sync_all();
        }
        Ok(())
    }

    /// Unpack a YARA rule archive into `out` and compile it as the yara
    /// engine would. Files that do not compile are left out by the engine
    /// (one bad file never disables the rest); an archive with no rule that
    /// compiles is refused.
    fn unpack_rules(&self, kind: rules::Kind, archive: &Path, out: &Path) -> Result<(), StepError> {
        let fail = |m: String| StepError::Other(format!("{}: {m}", archive.display()));
        let u = rules::unpack(kind, archive, out).map_err(|e| fail(e.to_string()))?;
        if u.files == 0 {
            return Err(fail(format!(
                "no .yar/.yara rule file in the archive ({} entries skipped)",
                u.skipped
            )));
        }
        let e = moat_yara::YaraEngine::load("update-check", &[out.to_path_buf()])
            .map_err(|e| fail(e.to_string()))?;
        let info = moat_core_info(&e);
        let loaded: u64 = info.signatures.values().sum();
        if loaded == 0 {
            let first = info.load_errors.first().cloned().unwrap_or_default();
            return Err(fail(format!("no rule compiles: {first}")));
        }
        tracing::info!(
            files = u.files,
            skipped = u.skipped,
            rules = loaded,
            rejected = info.load_errors.len(),
            "yara rule archive unpacked and compiled"
        );
        Ok(())
    }

    fn update_extra(&self, state: &mut State, url: &str) -> DbReport {
        let mut record = Record {
            time: now(),
            source: url.to_string(),
            method: "file".into(),
            ..Record::default()
        };
        let name = match extra_file_name(url) {
            Ok(n) => n,
            Err(e) => {
                record.detail = e;
                return finish(Outcome::Failed, record);
            }
        };
        record.database = name.clone();
        let origin = http::origin(url);
        if let Some(c) = state.cooldown(&origin, now()) {
            record.detail = format!("cool-down ({}); nothing requested", c.reason);
            return finish(Outcome::Cooldown, record);
        }
        let archive = rules::archive(&name);
        let installed = archive.as_ref().map_or(name.as_str(), |(_, d)| d.as_str());
        let dest = self.dir.join(installed);
        let cond = match state.conditional.get(url) {
            Some(v) if dest.exists() && v.file == installed => Conditions {
                if_none_match: v.etag.clone(),
                if_modified_since: v.last_modified.clone(),
            },
            _ => Conditions::default(),
        };
        let step = || -> Result<Option<(Staged, http::Got)>, StepError> {
            let staging = self.staging()?;
            let path = staging.path().join(&name);
            let got = match self.download(url, &path, &cond, None)? {
                Fetch::NotModified => return Ok(None),
                Fetch::Ok(g) => g,
            };
            if got.bytes == 0 {
                return Err(StepError::Other(format!("{url}: empty file")));
            }
            if let Some((kind, dir)) = &archive {
                let out = staging.path().join(dir);
                std::fs::create_dir(&out)?;
                self.unpack_rules(*kind, &path, &out)?;
                std::fs::remove_file(&path)?;
                return Ok(Some((
                    Staged {
                        _dir: staging,
                        path: out,
                        version: None,
                        method: "archive",
                        source: url.to_string(),
                    },
                    got,
                )));
            }
            let container = name.ends_with(".cvd") || name.ends_with(".cld");
            let version = if container {
                Some(self.check(&path)?.version)
            } else {
                self.test_load(&path, true)?;
                None
            };
            Ok(Some((
                Staged {
                    _dir: staging,
                    path,
                    version,
                    method: "file",
                    source: url.to_string(),
                },
                got,
            )))
        };
        let (step, got) = match step() {
            Ok(Some((staged, got))) => (Ok(Some(staged)), Some(got)),
            Ok(None) => (Ok(None), None),
            Err(e) => (Err(e), None),
        };
        self.settle(state, origin, record, step, None, |state| {
            if let Some(got) = got {
                state.conditional.insert(
                    url.to_string(),
                    state::Validators {
                        etag: got.etag,
                        last_modified: got.last_modified,
                        file: installed.to_string(),
                    },
                );
            }
        })
    }
}

/// Put the staged directory `from` at `to`: a plain rename when `to` does
/// not exist; else an atomic exchange (readers see the old or the new
/// directory, never a mix or nothing), after which the old one sits at
/// `from`, inside the staging directory that is removed on drop.
fn install_dir(from: &Path, to: &Path) -> std::io::Result<()> {
    set_tree_mode(from)?;
    if to.exists() {
        rustix::fs::renameat_with(
            rustix::fs::CWD,
            from,
            rustix::fs::CWD,
            to,
            rustix::fs::RenameFlags::EXCHANGE,
        )?;
    } else {
        std::fs::rename(from, to)?;
    }
    Ok(())
}

/// Directories 0755 and files 0644, as freshclam leaves databases.
fn set_tree_mode(dir: &Path) -> std::io::Result<()> {
    std::fs::set_permissions(dir, std::fs::Permissions::from_mode(0o755))?;
    for e in std::fs::read_dir(dir)? {
        let e = e?;
        let t = e.file_type()?;
        if t.is_dir() {
            set_tree_mode(&e.path())?;
        } else if t.is_file() {
            std::fs::set_permissions(e.path(), std::fs::Permissions::from_mode(0o644))?;
        }
    }
    Ok(())
}

fn moat_core_info(e: &dyn moat_core::Engine) -> moat_core::EngineInfo {
    e.info()
}

/// A writer that fails past `left` bytes.
struct CapWriter<'a, W: std::io::Write> {
    inner: &'a mut W,
    left: u64,
}

impl<W: std::io::Write> std::io::Write for CapWriter<'_, W> {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        if buf.len() as u64 > self.left {
            return Err(std::io::Error::other("file larger than its size limit"));
        }
        let n = self.inner.write(buf)?;
        self.left -= n as u64;
        Ok(n)
    }
    fn flush(&mut self) -> std::io::Result<()> {
        self.inner.flush()
    }
}

fn finish(outcome: Outcome, mut record: Record) -> DbReport {
    record.result = outcome.as_str().to_string();
    DbReport { outcome, record }
}

fn log(r: &DbReport, started: Instant) {
    let rec = &r.record;
    let ms = started.elapsed().as_millis() as u64;
    match r.outcome {
        Outcome::Updated => {
            tracing::info!(database = %rec.database, from = ?rec.from_version, version = ?rec.version, method = %rec.method, source = %rec.source, ms, "database updated")
        }
        Outcome::UpToDate => {
            tracing::info!(database = %rec.database, version = ?rec.version, ms, "database up to date")
        }
        Outcome::Cooldown => {
            tracing::warn!(database = %rec.database, detail = %rec.detail, "database not checked: the server asked to wait")
        }
        Outcome::Failed => {
            tracing::error!(database = %rec.database, version = ?rec.version, error = %rec.detail, "database update failed; the previous copy stays")
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::testing::{Signer, build_cdiff, build_cvd, diff_script, unpack};
    use moat_builtin::dsig;

    #[test]
    fn test_signatures_verify_with_the_test_key_only() {
        let s = Signer::test_key();
        let keys = Keys::single(s.public().clone());
        let md5 = [0xabu8; 16];
        let sig = s.sign_md5(&md5);
        assert!(dsig::verify_md5_with(&keys.cvd, &hex::encode(md5), &sig));
        assert!(
            !dsig::verify_md5(&hex::encode(md5), &sig),
            "not ClamAV's key"
        );
        let sha = [7u8; 32];
        let sig = s.sign_sha256(&sha);
        assert!(dsig::verify_sha256_with(&keys.info, &sha, &sig));
        assert!(!dsig::verify_sha256_with(&keys.info, &[8u8; 32], &sig));
        let wrong = Signer::wrong_key().sign_sha256(&sha);
        assert!(!dsig::verify_sha256_with(&keys.info, &sha, &wrong));
    }

    fn daily(s: &Signer, v: u64) -> Vec<u8> {
        let body: String = (1..=v)
            .map(|i| format!("Sig.{i}:0:*:41414141{i:02x}\n"))
            .collect();
        build_cvd(s, "daily", v, &[("daily.ndb", body.as_bytes())])
    }

    #[test]
    fn a_cdiff_chain_rebuilds_the_new_database_as_a_cld_that_verifies() {
        let s = Signer::test_key();
        let keys = Keys::single(s.public().clone());
        let d = tempfile::tempdir().unwrap();
        let v1 = d.path().join("daily.cvd");
        std::fs::write(&v1, daily(&s, 1)).unwrap();
        assert_eq!(db::verify(&v1, &keys, None).unwrap().version, 1);
        assert!(db::verify(&v1, Keys::clamav(), None).is_err());
        let unpacked = d.path().join("u");
        std::fs::create_dir(&unpacked).unwrap();
        db::verify(&v1, &keys, Some(&unpacked)).unwrap();
        for v in 2..=3 {
            let script = diff_script(&unpack(&daily(&s, v - 1)), &unpack(&daily(&s, v)));
            let p = d.path().join(format!("daily-{v}.cdiff"));
            std::fs::write(&p, build_cdiff(&s, v, &script)).unwrap();
            cdiff::apply_file(&p, &unpacked, v, &keys.cdiff).unwrap();
        }
        // The same cdiff under another version number is refused.
        let p = d.path().join("daily-3.cdiff");
        assert!(matches!(
            cdiff::apply_file(&p, &unpacked, 4, &keys.cdiff),
            Err(cdiff::CdiffError::WrongVersion { .. })
        ));
        let out = d.path().join("daily.cld");
        assert_eq!(db::build_cld(&unpacked, "daily", &out).unwrap().version, 3);
        assert_eq!(db::verify(&out, &keys, None).unwrap().version, 3);
        let want = unpack(&daily(&s, 3));
        #[allow(clippy::disallowed_methods)] // a small test file
        let got = unpack(&std::fs::read(&out).unwrap());
        let files = |v: &[(String, Vec<u8>)]| {
            let mut v: Vec<_> = v.iter().filter(|(n, _)| n != "COPYING").cloned().collect();
            v.sort();
            v
        };
        assert_eq!(files(&got), files(&want));
    }

    #[test]
    fn a_tampered_or_wrongly_signed_cdiff_is_refused() {
        let s = Signer::test_key();
        let keys = Keys::single(s.public().clone());
        let d = tempfile::tempdir().unwrap();
        let script = "OPEN x.ndb\nADD a\nCLOSE\n";
        let mut good = build_cdiff(&s, 2, script);
        let p = d.path().join("x.cdiff");
        std::fs::write(&p, build_cdiff(&Signer::wrong_key(), 2, script)).unwrap();
        assert!(matches!(
            cdiff::apply_file(&p, d.path(), 2, &keys.cdiff),
            Err(cdiff::CdiffError::BadSignature)
        ));
        good[20] ^= 1;
        std::fs::write(&p, &good).unwrap();
        assert!(cdiff::apply_file(&p, d.path(), 2, &keys.cdiff).is_err());
        assert!(!d.path().join("x.ndb").exists(), "nothing applied");
    }

    #[test]
    fn extra_urls_need_a_plain_signature_file_name() {
        assert_eq!(extra_file_name("https://h/x/junk.ndb").unwrap(), "junk.ndb");
        assert_eq!(
            extra_file_name("http://h/MiscreantPunch099-Low.ldb").unwrap(),
            "MiscreantPunch099-Low.ldb"
        );
        assert!(extra_file_name("https://h/x/").is_err());
        assert!(extra_file_name("https://h/x/readme.txt").is_err());
        assert!(extra_file_name("ftp://h/x.ndb").is_err());
        assert!(extra_file_name("https://h/.hidden.ndb").is_err());
        assert_eq!(
            extra_file_name("https://h/r/rules.yara").unwrap(),
            "rules.yara"
        );
    }
}
