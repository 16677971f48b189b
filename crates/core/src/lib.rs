//! moat-core: the vocabulary every other moat crate speaks.
//!
//! * [`verdict`]: the verdict model (status, reason, findings, engine reports).
//! * [`engine`]: the small [`Engine`] trait every detection engine implements.
//! * [`blob`]: content to scan, in memory or in an anonymous 0600 temporary file.
//! * [`disk_cache`]: entries of the on-disk caches of compiled signature sets.
//! * [`policy`]: maps a verdict to an action; the default blocks everything not clean.
//! * [`pool`]: idle connections to remote engines, kept for reuse, and which I/O errors are timeouts or disconnects.
#![forbid(unsafe_code)]

pub mod blob;
pub mod disk_cache;
pub mod engine;
pub mod policy;
pub mod pool;
pub mod verdict;

pub use blob::{Blob, Spool};
pub use engine::{Engine, EngineError, EngineInfo, EngineScan, Hit, Object, ScanContext, Scope};
pub use policy::{Action, Policy};
pub use verdict::{EngineReport, Finding, Reason, Status, Verdict};
