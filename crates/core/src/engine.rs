//! The engine trait: a name, a scan, a healthcheck. Everything else has a default.
//!
//! Engines are synchronous and are called from blocking worker threads (the
//! async roles use `spawn_blocking`). Long scans watch [`ScanContext::deadline`].

use crate::blob::Blob;
use crate::verdict::Reason;
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;
use std::time::Instant;

/// Which content an engine is given.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Scope {
    /// The top-level object and, separately, every member moat extracts from
    /// containers (builtin, yara).
    Members,
    /// Only the top-level object: the engine extracts by itself (clamd, ICAP).
    Whole,
}

/// One object handed to an engine: the top-level file or an extracted member.
#[derive(Debug, Clone)]
pub struct Object<'a> {
    pub data: &'a Blob,
    /// The member's own name (or the file name of the top-level object).
    pub name: &'a str,
    /// Full location, e.g. `outer.zip>inner.tar>bin/payload`.
    pub location: &'a str,
    /// Sniffed MIME type, e.g. `application/zip`.
    pub content_type: &'a str,
    /// 0 for the top-level object.
    pub depth: u32,
    /// SHA-256 of `data`, when the caller already has it.
    pub sha256: Option<[u8; 32]>,
}

impl<'a> Object<'a> {
    /// A top-level object known by its name alone (no sniffed type, no
    /// digest yet).
    pub fn top(data: &'a Blob, name: &'a str) -> Object<'a> {
        Object {
            data,
            name,
            location: name,
            content_type: "",
            depth: 0,
            sha256: None,
        }
    }
}

/// Per-scan settings shared by every engine.
#[derive(Debug, Clone)]
pub struct ScanContext {
    /// Engines give up with [`EngineError::Timeout`] past this instant.
    pub deadline: Instant,
    /// Report every match even where the engine is configured to stop at
    /// the first detection (clamd's ALLMATCHSCAN).
    pub all_match: bool,
}

impl ScanContext {
    /// A scan that must end within `limit` from now, each engine stopping
    /// where it is configured to (first match unless `all_match`).
    pub fn within(limit: std::time::Duration) -> ScanContext {
        ScanContext {
            deadline: Instant::now() + limit,
            all_match: false,
        }
    }

    pub fn expired(&self) -> bool {
        Instant::now() >= self.deadline
    }
}

/// A single detection by one engine.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Hit {
    pub signature: String,
    /// Marked suspicious (heuristic, or a rule whose metadata says so) rather than malicious.
    pub suspicious: bool,
}

/// What an engine found in one object. Empty `hits` means clean.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct EngineScan {
    pub hits: Vec<Hit>,
    /// The object is on this engine's allow-list (ClamAV `.fp`/`.sfp`): the
    /// engine reports no hit for it, and the pipeline drops this engine's
    /// findings for every member extracted from it.
    pub trusted: bool,
}

/// Why an engine could not give an answer.
#[derive(Debug, thiserror::Error)]
pub enum EngineError {
    #[error("scan timed out")]
    Timeout,
    /// The engine could not fully scan the content for a reason that is not its own fault.
    #[error("unscannable ({reason}): {detail}")]
    Unscannable { reason: Reason, detail: String },
    #[error("engine unavailable: {0}")]
    Unavailable(String),
    #[error("engine protocol error: {0}")]
    Protocol(String),
    #[error("I/O error: {0}")]
    Io(#[from] std::io::Error),
    #[error("{0}")]
    Other(String),
}

impl EngineError {
    /// `Some(reason)` when this error means "unscannable" rather than "engine error".
    pub fn unscannable_reason(&self) -> Option<Reason> {
        match self {
            EngineError::Timeout => Some(Reason::Timeout),
            EngineError::Unscannable { reason, .. } => Some(*reason),
            _ => None,
        }
    }
}

/// What `GET /v1/engines` shows about an engine.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct EngineInfo {
    pub name: String,
    /// `builtin`, `yara`, `clamd`, ...
    pub kind: String,
    pub version: String,
    /// Identifies the loaded signature/rule set; changes whenever it changes.
    pub signature_version: String,
    /// Loaded signatures by kind (`hdb`, `hsb`, `ndb`, `yara_rules`, ...).
    pub signatures: BTreeMap<String, u64>,
    /// Signatures read but not supported, by kind. Never silently dropped.
    pub unsupported: BTreeMap<String, u64>,
    /// Signatures read but deliberately not loaded, by reason and kind
    /// (e.g. `pua:hdu` while PUA detection is off, `ignored` for names on a
    /// `.ign`/`.ign2` list). Not errors.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub skipped: BTreeMap<String, u64>,
    /// Problems found while loading (bad lines, bad rule files), capped.
    pub load_errors: Vec<String>,
    /// Unix seconds of the last successful load.
    pub loaded_at: u64,
    /// Set when the last reload failed (the previous set stays in use).
    pub last_reload_error: Option<String>,
    /// Files and directories the signatures or rules were read from.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub sources: Vec<String>,
    /// Unix seconds when the newest loaded database was built (a CVD/CLD
    /// header's build time, else the newest signature file's modification
    /// time); `None` when nothing was read from disk.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub built_at: Option<u64>,
}

/// A detection engine. Implementations must be cheap to share across threads.
pub trait Engine: Send + Sync {
    /// The configured name (unique within an engine set).
    fn name(&self) -> &str;

    /// Version, signature version and counts. Called often: keep it cheap.
    fn info(&self) -> EngineInfo;

    /// Scan one object. Errors map to verdicts: [`EngineError::unscannable_reason`]
    /// gives `unscannable`, anything else gives `error`. Never "clean" on failure.
    fn scan(&self, obj: &Object<'_>, ctx: &ScanContext) -> Result<EngineScan, EngineError>;

    /// Which content this engine wants; see [`Scope`]. Default: members too.
    fn scope(&self) -> Scope {
        Scope::Members
    }

    /// Whether a file's scan may end at this engine's first detection
    /// (clamscan's default, unless the request asks for every match): the
    /// scanner stops walking a file's members once every engine that says so
    /// has detected something. Default: no, every member is scanned.
    fn first_match(&self) -> bool {
        false
    }

    /// Whether the engine can answer right now (e.g. clamd PING). Default: yes.
    fn health(&self) -> Result<(), EngineError> {
        Ok(())
    }

    /// Changes whenever this engine's answers could change (engine or signature
    /// version); part of the verdict-cache key.
    fn fingerprint(&self) -> String {
        let i = self.info();
        format!("{}:{}:{}", i.name, i.version, i.signature_version)
    }

    /// For an engine whose signatures live elsewhere (a clamd or ICAP
    /// server): how long a verdict it took part in may be reused from the
    /// verdict cache, since its fingerprint may not follow every signature
    /// change. Such engines' live fingerprints are also polled by the reload
    /// loop. `None` (the default): as long as the fingerprint holds.
    fn cache_ttl(&self) -> Option<std::time::Duration> {
        None
    }
}
