//! The clamd engine: a clamd client over TCP or a Unix socket.
//!
//! [`ClamdEngine`] streams each top-level object to clamd with `INSTREAM`
//! ([`Scope::Whole`](moat_core::Scope::Whole): clamd extracts archives itself) and
//! maps the answer fail-closed:
//!
//! | clamd says                               | moat gets                           |
//! |------------------------------------------|-------------------------------------|
//! | `stream: OK`                             | clean                               |
//! | `stream: NAME FOUND`                     | a hit (`Heuristics.*`, `PUA.*`: suspicious) |
//! | `stream: Heuristics.Encrypted.* FOUND`   | unscannable / encrypted             |
//! | `stream: Heuristics.Limits.Exceeded.* FOUND` | unscannable / limits_exceeded   |
//! | `INSTREAM size limit exceeded. ERROR`    | unscannable / too_large             |
//! | any other `... ERROR`, garbage           | [`EngineError::Protocol`](moat_core::EngineError::Protocol) |
//! | refused, unreachable, closed             | [`EngineError::Unavailable`](moat_core::EngineError::Unavailable) |
//! | deadline or `timeout` passed             | [`EngineError::Timeout`](moat_core::EngineError::Timeout) |
//!
//! For encrypted archives and exceeded limits to be reported at all, run clamd
//! with `AlertEncrypted yes` and `AlertExceedsMax yes`: by default clamd answers
//! `OK` for content it skipped.
//!
//! Connections are pooled as clamd IDSESSION sessions: up to `pool_size` idle
//! sessions are kept, each reused only while younger than `pool_idle_timeout` and
//! still open; a pooled session found dead mid-request is retried once on a fresh
//! connection. `pool_size = 0` uses one connection per scan. `health()` sends
//! PING; `info()` reports VERSION, cached for 5 s (a failed VERSION keeps the last
//! known values and sets `last_reload_error`). With only unofficial databases
//! clamd reports no database version: `signature_version` is then `unreported`.
//! The fingerprint follows VERSION (so a new official database version means
//! new verdict-cache keys); `cache_ttl` (default 1 hour) bounds how long cached
//! verdicts are reused, for the signature changes VERSION does not show.
//!
//! All I/O is blocking std sockets with timeouts: `Engine` is called from
//! blocking worker threads.
#![forbid(unsafe_code)]

mod address;
mod config;
mod engine;
mod instream;
mod pool;
mod reply;
mod stream;
mod version;

pub use address::Address;
pub use config::{ClamdConfig, ConfigError, DEFAULT_CHUNK_SIZE, MAX_CHUNK_SIZE, MIN_CHUNK_SIZE};
pub use engine::ClamdEngine;
pub use pool::PoolStats;
