//! One error type for the portal and its single mapping to HTTP: a JSON body
//! `{"error": {"code": "...", "message": "..."}}` whose `code` is stable.

use axum::Json;
use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};

#[derive(Debug, thiserror::Error)]
pub enum PortalError {
    #[error("authentication required")]
    Unauthenticated,
    #[error("invalid e-mail or password")]
    BadCredentials,
    #[error("too many attempts; try again later")]
    Throttled,
    #[error("CSRF check failed: {0}")]
    Csrf(&'static str),
    #[error("forbidden: {0}")]
    Forbidden(&'static str),
    #[error("not found")]
    NotFound,
    #[error("the package is not available for download ({0})")]
    NotAvailable(String),
    #[error("gone: {0}")]
    Gone(&'static str),
    #[error("conflict: {0}")]
    Conflict(String),
    #[error("too large: the limit is {0} bytes")]
    TooLarge(u64),
    #[error("over quota: {used} of {quota} bytes are in use; this file needs {needed}")]
    QuotaExceeded { quota: u64, used: u64, needed: u64 },
    #[error("file type not accepted: the content is {0}")]
    TypeRefused(String),
    #[error("invalid request: {0}")]
    BadRequest(String),
    #[error("range not satisfiable")]
    RangeNotSatisfiable(u64),
    #[error("package password required or wrong")]
    PasswordRequired,
    #[error("storage: {0}")]
    Storage(String),
    #[error("database: {0}")]
    Db(String),
    #[error("internal error: {0}")]
    Internal(String),
}

impl PortalError {
    pub fn status(&self) -> StatusCode {
        use PortalError::*;
        match self {
            Unauthenticated | BadCredentials => StatusCode::UNAUTHORIZED,
            Throttled => StatusCode::TOO_MANY_REQUESTS,
            Csrf(_) | Forbidden(_) | NotAvailable(_) | PasswordRequired => StatusCode::FORBIDDEN,
            NotFound => StatusCode::NOT_FOUND,
            Gone(_) => StatusCode::GONE,
            Conflict(_) => StatusCode::CONFLICT,
            TooLarge(_) | QuotaExceeded { .. } => StatusCode::PAYLOAD_TOO_LARGE,
            TypeRefused(_) => StatusCode::UNSUPPORTED_MEDIA_TYPE,
            BadRequest(_) => StatusCode::BAD_REQUEST,
            RangeNotSatisfiable(_) => StatusCode::RANGE_NOT_SATISFIABLE,
            Storage(_) | Db(_) => StatusCode::SERVICE_UNAVAILABLE,
            Internal(_) => StatusCode::INTERNAL_SERVER_ERROR,
        }
    }

    /// The stable machine-readable code.
    pub fn code(&self) -> &'static str {
        use PortalError::*;
        match self {
            Unauthenticated => "unauthenticated",
            BadCredentials => "bad_credentials",
            Throttled => "throttled",
            Csrf(_) => "csrf",
            Forbidden(_) => "forbidden",
            NotFound => "not_found",
            NotAvailable(_) => "not_available",
            Gone(_) => "gone",
            Conflict(_) => "conflict",
            TooLarge(_) => "too_large",
            QuotaExceeded { .. } => "quota_exceeded",
            TypeRefused(_) => "file_type_refused",
            BadRequest(_) => "bad_request",
            RangeNotSatisfiable(_) => "range_not_satisfiable",
            PasswordRequired => "password_required",
            Storage(_) => "storage",
            Db(_) => "database",
            Internal(_) => "internal",
        }
    }
}

impl From<sqlx::Error> for PortalError {
    fn from(e: sqlx::Error) -> Self {
        PortalError::Db(e.to_string())
    }
}

impl From<moat_db::DbError> for PortalError {
    fn from(e: moat_db::DbError) -> Self {
        PortalError::Db(e.to_string())
    }
}

impl IntoResponse for PortalError {
    fn into_response(self) -> Response {
        let status = self.status();
        if status.is_server_error() {
            tracing::warn!(code = self.code(), error = %self, "portal request failed");
        }
        let mut resp = (
            status,
            Json(serde_json::json!({ "error": { "code": self.code(), "message": self.to_string() } })),
        )
            .into_response();
        let h = resp.headers_mut();
        h.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
        if let PortalError::RangeNotSatisfiable(size) = self
            && let Ok(v) = HeaderValue::from_str(&format!("bytes */{size}"))
        {
            h.insert(header::CONTENT_RANGE, v);
        }
        if status == StatusCode::SERVICE_UNAVAILABLE {
            h.insert(header::RETRY_AFTER, HeaderValue::from_static("1"));
        }
        resp
    }
}

pub type Result<T, E = PortalError> = std::result::Result<T, E>;
