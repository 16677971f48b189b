//! moat-api: the scan API role of `moat serve`.
//!
//! | route | what |
//! |---|---|
//! | `POST /v1/scan` | raw body (one verdict) or multipart/form-data (`{"files": [...]}`) |
//! | `GET /v1/scans?limit=&cursor=&source=&status=` | recorded scans, newest first |
//! | `GET /v1/scans/{id}` | one record |
//! | `GET /v1/engines` | engines, versions, signature counts, reload state |
//! | `GET /v1/stats/verdicts?window=hour\|day\|week` | scans per time bucket and status, per source |
//! | `GET /v1/stats/queues` | durable queues: depth, in flight, dead, lag |
//! | `GET /healthz`, `GET /readyz`, `GET /metrics` | liveness, readiness, Prometheus |
//!
//! `/v1/*` requires a bearer token whenever tokens are configured (a `GET`
//! is also let through when [`ReadAccess`] admits it: the portal's admin
//! session, for the dashboard); the binary
//! refuses to listen on a non-loopback address without tokens (see
//! [`AuthConfig::check_listener`]).
#![forbid(unsafe_code)]

mod auth;
mod config;
mod error;
mod routes;
mod scan;
pub mod telemetry;

pub use auth::AuthConfig;
pub use config::ApiConfig;
pub use error::ApiError;
pub use routes::{AppState, ReadAccess, check_ready, router};
pub use scan::ScanService;
