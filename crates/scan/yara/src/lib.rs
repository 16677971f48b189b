//! The yara engine: YARA-X rules from files or directories.
//!
//! * Every rule file (`.yar`/`.yara`, directories searched recursively) is
//!   first compiled on its own, so one bad file never disables the others; its
//!   errors land in [`EngineInfo::load_errors`](moat_core::EngineInfo) with the
//!   file's path. The good files are then compiled together, each in its own
//!   namespace named after the file.
//! * The external variables `filename`, `filepath` (the location inside
//!   containers), `extension` (of the name, lower-cased, without the dot) and
//!   `filetype` (the sniffed MIME type) are strings set for every scan.
//! * A rule whose metadata has `severity = "suspicious"` or `suspicious = true`
//!   gives a suspicious hit; any other matching rule is malicious.
//! * Hits are named `YARA.<rule>`, or `YARA.<namespace>.<rule>` when the same
//!   rule identifier exists in more than one rule file.
//! * An empty rule set (no rule files) is not an error: the engine loads with
//!   0 rules, which [`EngineInfo::signatures`](moat_core::EngineInfo) shows.
#![forbid(unsafe_code)]

mod engine;
mod load;

#[cfg(test)]
mod tests;

pub use engine::YaraEngine;
pub use load::LoadError;

/// Names of the external variables every rule may use.
pub const EXTERNALS: [&str; 4] = ["filename", "filepath", "extension", "filetype"];
