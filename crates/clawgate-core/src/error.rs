//! The one core error, and the one place it becomes a wire error.

use clawgate_protocol::ErrorShape;
use serde_json::Value;

/// What went wrong in a handler, by what the caller can do about it.
#[derive(Debug, thiserror::Error)]
pub enum CoreError {
    /// The params were wrong; the message says how (sent as is).
    #[error("{message}")]
    InvalidRequest {
        /// User-safe message.
        message: String,
        /// Optional details.
        details: Option<Value>,
    },
    /// The thing named does not exist (sent as `INVALID_REQUEST`, as upstream does).
    #[error("{0}")]
    NotFound(String),
    /// Temporarily unable; retry.
    #[error("{0}")]
    Unavailable(String),
    /// The approval id is unknown, already decided or expired (`APPROVAL_NOT_FOUND`).
    #[error("{0}")]
    ApprovalNotFound(String),
    /// The caller lacks a scope this call needs for what it asks (`FORBIDDEN "missing scope: S"`
    /// with `MISSING_SCOPE` details, the closed shape of the contract). `reason` (e.g.
    /// `caller-missing-scope` when a caller tries to grant a scope it does not hold) is for logs.
    #[error("missing scope: {scope} ({reason})")]
    MissingScope {
        /// The scope the caller lacks.
        scope: String,
        /// Why it is needed (logged, not sent: the wire details are a closed object).
        reason: &'static str,
    },
    /// Something broke inside; details are logged, never sent.
    #[error("internal error: {0}")]
    Internal(String),
}

impl CoreError {
    /// Invalid params with a message.
    pub fn invalid(message: impl Into<String>) -> Self {
        CoreError::InvalidRequest { message: message.into(), details: None }
    }

    /// Wrap an internal failure (storage, I/O).
    pub fn internal(e: impl std::fmt::Display) -> Self {
        CoreError::Internal(e.to_string())
    }

    /// The wire error. Internal failures get a correlation id that also goes to the log.
    pub fn to_error_shape(&self, method: &str) -> ErrorShape {
        match self {
            CoreError::InvalidRequest { message, details } => {
                let e = ErrorShape::invalid_request(message.clone());
                match details {
                    Some(d) => e.with_details(d.clone()),
                    None => e,
                }
            }
            CoreError::NotFound(m) => ErrorShape::invalid_request(m.clone()),
            CoreError::MissingScope { scope, .. } => ErrorShape::missing_scope(scope, &[scope.as_str()]),
            CoreError::ApprovalNotFound(m) => {
                ErrorShape::new(clawgate_protocol::error::codes::APPROVAL_NOT_FOUND, m.clone())
            }
            CoreError::Unavailable(m) => ErrorShape::unavailable(m.clone()).retry(Some(1000)),
            CoreError::Internal(detail) => {
                let correlation = uuid::Uuid::new_v4().simple().to_string();
                let correlation = &correlation[..12];
                tracing::error!(method, correlation, error = %detail, "request failed");
                ErrorShape::unavailable(format!(
                    "internal error while handling {method} (ref {correlation}); see the gateway log"
                ))
            }
        }
    }
}

impl From<clawgate_store::StoreError> for CoreError {
    fn from(e: clawgate_store::StoreError) -> Self {
        match e {
            clawgate_store::StoreError::NotFound => CoreError::NotFound("not found".into()),
            clawgate_store::StoreError::Conflict(m) => CoreError::invalid(m),
            // A storage outage (full disk, I/O, busy, closed) is the caller's "retry later", with
            // the reason, not an internal error: it is logged once per episode by the store's
            // health record, not once per request here.
            clawgate_store::StoreError::Unavailable { fault, .. }
                if matches!(
                    fault,
                    clawgate_store::Fault::DiskFull
                        | clawgate_store::Fault::Io
                        | clawgate_store::Fault::Busy
                        | clawgate_store::Fault::Closed
                ) =>
            {
                CoreError::Unavailable(format!("storage unavailable: {fault}; nothing was saved, retry later"))
            }
            other => CoreError::internal(other),
        }
    }
}

/// Decode method params into a typed struct, with upstream-style messages on failure.
pub fn parse_params<T: serde::de::DeserializeOwned>(method: &str, params: Value) -> Result<T, CoreError> {
    serde_json::from_value(params).map_err(|e| CoreError::invalid(format!("invalid {method} params: {e}")))
}
