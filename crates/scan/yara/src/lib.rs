//! The yara engine: YARA-X rules from files or directories.
//!
//! * yara-x is built with the modules public rule collections import (`pe`,
//!   `dotnet`, `elf`, `macho`, `lnk`, `math`, `hash`, `string`, `time`,
//!   `console`) and yara 4's regular-expression syntax, so collections written
//!   for yara compile.
//! * Rule files (`.yar`/`.yara`, directories searched recursively) are
//!   compiled together, each in its own namespace named after the file. When
//!   some files fail, they are reported in
//!   [`EngineInfo::load_errors`](moat_core::EngineInfo) with their path and
//!   error, and the set is compiled again without them: one bad file never
//!   disables the others, and a file is loaded whole or not at all.
//! * The compiled set is cached on disk ([`YaraEngine::load_cached`]), keyed
//!   by the files' paths and content hashes, the external variables and the
//!   yara-x version: a restart or a second instance deserializes it instead
//!   of compiling. A changed file invalidates the entry; a corrupt entry is
//!   removed and rebuilt. [`YaraEngine::load_report`] says which happened.
//! * The external variables, strings set for every scanned object:
//!   `filename` (the member's own name), `filepath` (its location inside
//!   containers, e.g. `a.zip>dir/x.exe`), `extension` (of the name,
//!   lower-cased, without the dot), `filetype` (the sniffed MIME type, e.g.
//!   `application/x-dosexec`) and `owner` (always empty: objects arrive as
//!   streams, without a file owner).
//! * Each worker thread reuses its yara-x scanner between objects.
//! * A rule whose metadata has `severity = "suspicious"` or `suspicious = true`
//!   gives a suspicious hit; any other matching rule is malicious.
//! * Hits are named `YARA.<rule>`, or `YARA.<namespace>.<rule>` when the same
//!   rule identifier exists in more than one rule file.
//! * An empty rule set (no rule files) is not an error: the engine loads with
//!   0 rules, which [`EngineInfo::signatures`](moat_core::EngineInfo) shows.
#![forbid(unsafe_code)]

mod cache;
mod engine;
mod load;

#[cfg(test)]
mod tests;

pub use cache::{CacheOutcome, default_cache_dir};
pub use engine::{LoadReport, YaraEngine};
pub use load::LoadError;

/// Names of the external variables every rule may use.
pub const EXTERNALS: [&str; 5] = ["filename", "filepath", "extension", "filetype", "owner"];
