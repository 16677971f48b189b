//! The icap engine: an ICAP (RFC 3507) client, for antivirus services
//! reached over ICAP (c-icap with virus_scan, commercial engines, another
//! moat's `[icap_server]`).
//!
//! [`IcapEngine`] sends each top-level object
//! ([`Scope::Whole`](moat_core::Scope::Whole): the service extracts
//! archives itself) as the body of a RESPMOD (an HTTP response) or a REQMOD
//! (an HTTP `PUT`):
//!
//! * **OPTIONS** first, cached for its `Options-TTL`: `Methods`, `Preview`,
//!   `Allow: 204`, `ISTag`, `Service`.
//! * **Preview** when the service asks for one: the first `Preview` bytes,
//!   then `0; ieof` when that was the whole body (the server then answers
//!   without `100 Continue`), else `0` and, on `100 Continue`, the rest; an
//!   early `204`/`200` is the final answer. Without a preview the whole body
//!   is sent, and an answer arriving meanwhile stops the sending.
//! * The body is streamed chunked from the [`Blob`](moat_core::Blob), never
//!   held whole in memory; `Allow: 204` is always sent.
//! * **Keep-alive pool** of up to `pool_size` idle connections; a pooled
//!   connection found dead before any byte of a response is retried once on
//!   a fresh one. Every read and write is bounded by the scan's deadline.
//!
//! The answer is mapped fail-closed:
//!
//! | the service says                                        | moat gets                      |
//! |---------------------------------------------------------|--------------------------------|
//! | `X-Infection-Found` (`Threat=`), `X-Virus-ID`, `X-Violations-Found` (with a 200 or a 204) | a hit per name (`Heuristics.*`, `PUA.*`: suspicious; `Heuristics.Encrypted.*`, `Heuristics.Limits.Exceeded.*`: unscannable) |
//! | `200` with an encapsulated HTTP `403` naming nothing    | a hit `ICAP.Blocked`           |
//! | `204`                                                   | clean                          |
//! | `200` returning the message unmodified (HTTP status 200, or the `PUT` for REQMOD, and the same body byte for byte) | clean |
//! | any other `200` (a replacement that names nothing)      | [`EngineError::Protocol`](moat_core::EngineError::Protocol) |
//! | `503`                                                   | [`EngineError::Unavailable`](moat_core::EngineError::Unavailable) |
//! | other codes, `100` out of turn, malformed heads         | [`EngineError::Protocol`](moat_core::EngineError::Protocol) |
//! | refused, unreachable, closed                            | [`EngineError::Unavailable`](moat_core::EngineError::Unavailable) |
//! | deadline or `timeout_secs` passed                       | [`EngineError::Timeout`](moat_core::EngineError::Timeout) |
//!
//! `info()` reports the OPTIONS `Service` as the version and the latest
//! ISTag (from OPTIONS, asked again at most every 5 s, or from any
//! response) as the signature version; both are in the fingerprint, so a
//! new ISTag means new verdict-cache keys once the reload loop notices it.
//! `cache_ttl_secs` bounds the life of cached verdicts for servers whose
//! ISTag does not follow their signatures. `health()` sends OPTIONS.
//!
//! All I/O is blocking std sockets with timeouts: `Engine` is called from
//! blocking worker threads.
#![forbid(unsafe_code)]

mod config;
mod conn;
mod engine;
pub mod proto;

pub use config::{ConfigError, DEFAULT_PORT, IcapConfig, Method, Url};
pub use conn::PoolStats;
pub use engine::IcapEngine;
