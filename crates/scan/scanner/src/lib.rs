//! moat-scanner: the scan core's pipeline.
//!
//! ```text
//! Blob ─► sniff type ─► Scope::Whole engines (clamd) ──────────────┐
//!                    └► Scope::Members engines (builtin, yara) ─┐   │
//!                         on the object and, via moat-extract,  │   ├─► aggregate ─► Verdict
//!                         on every member of every container ───┘   │
//! ```
//!
//! * [`Scanner`] scans one blob with the current [`EngineSet`]; the set is
//!   swapped atomically on reload, and in-flight scans finish on the old one.
//! * [`config`] holds the serde configuration of engines and scan limits and
//!   builds engine sets from it.
#![forbid(unsafe_code)]

pub mod config;
mod pipeline;
pub mod reload;
pub mod sniff;

pub use config::{EngineConfig, ScanConfig};
pub use pipeline::{EngineSet, Scanner};
pub use reload::{ReloadOutcome, Reloader};
