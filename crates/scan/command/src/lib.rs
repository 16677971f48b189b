//! The command engine: runs a local scanner command per object and maps its
//! exit code, fail-closed.
//!
//! `argv` is run directly (no shell). The object reaches the command either as
//! a path to a private (0600) temporary file substituted for `{path}`
//! (`input = "path"`, the default) or on standard input (`input = "stdin"`).
//!
//! | the command                              | moat gets                            |
//! |------------------------------------------|--------------------------------------|
//! | exits with a code in `clean_codes`       | clean                                |
//! | exits with a code in `infected_codes`    | a hit named by `signature_regex` over stdout |
//! | exits with any other code                | [`EngineError::Other`](moat_core::EngineError::Other) |
//! | is killed by a signal (crash)            | [`EngineError::Other`](moat_core::EngineError::Other) |
//! | runs past `timeout_secs` or the deadline | its process group is killed; [`EngineError::Timeout`](moat_core::EngineError::Timeout) (`unscannable/timeout`) |
//! | cannot be started                        | [`EngineError::Unavailable`](moat_core::EngineError::Unavailable) |
//!
//! At most `max_concurrency` commands run at once; a scan waits for a slot
//! until its deadline. `version_argv`, when set, gives the engine's version and
//! signature version (its first output line, cached for a minute) and is the
//! health check (exit 0).
#![forbid(unsafe_code)]

mod config;
mod engine;
mod run;

pub use config::{CommandConfig, ConfigError, Input};
pub use engine::CommandEngine;
