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
    /// Unable, with machine-readable details the caller branches on (a node's own error as
    /// `details.nodeError`, `details.code: "PAIRING_CHANGED"`), sent as upstream shapes them:
    /// `retryable` only where upstream marks it.
    #[error("{message}")]
    UnavailableWith {
        /// User-safe message.
        message: String,
        /// The wire error's `details` (user-safe: built from what the peer sent or constants).
        details: Value,
        /// Whether the wire error says `retryable: true`.
        retryable: bool,
    },
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
    /// Something broke inside; the source is kept for the log (with its chain), never sent.
    #[error("internal error: {0}")]
    Internal(#[source] Box<dyn std::error::Error + Send + Sync + 'static>),
}

/// What kind of failure a [`CoreError`] is, for the error mappers of each wire (WS
/// `ErrorShape`, the HTTP APIs' formats): they decide by kind, never by message text.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ErrorKind {
    /// The caller sent something wrong; the message says what.
    InvalidRequest,
    /// The thing named does not exist.
    NotFound,
    /// Temporarily unable; retrying later may work.
    Unavailable,
    /// The approval id is unknown, decided or expired.
    ApprovalNotFound,
    /// The caller lacks a scope.
    Forbidden,
    /// A fault inside the gateway.
    Internal,
}

impl CoreError {
    /// Invalid params with a message.
    pub fn invalid(message: impl Into<String>) -> Self {
        CoreError::InvalidRequest { message: message.into(), details: None }
    }

    /// An internal failure described by a message (the text is logged, never sent).
    pub fn internal(e: impl std::fmt::Display) -> Self {
        CoreError::Internal(e.to_string().into())
    }

    /// An internal failure that keeps its source error (and its chain) for the log.
    pub fn internal_source(e: impl std::error::Error + Send + Sync + 'static) -> Self {
        CoreError::Internal(Box::new(e))
    }

    /// The kind of failure, for the wire mappers.
    pub fn kind(&self) -> ErrorKind {
        match self {
            CoreError::InvalidRequest { .. } => ErrorKind::InvalidRequest,
            CoreError::NotFound(_) => ErrorKind::NotFound,
            CoreError::Unavailable(_) | CoreError::UnavailableWith { .. } => ErrorKind::Unavailable,
            CoreError::ApprovalNotFound(_) => ErrorKind::ApprovalNotFound,
            CoreError::MissingScope { .. } => ErrorKind::Forbidden,
            CoreError::Internal(_) => ErrorKind::Internal,
        }
    }

    /// The internal failure with its whole source chain, for a log line.
    pub fn log_chain(&self) -> String {
        let mut text = self.to_string();
        let mut source = std::error::Error::source(self);
        while let Some(e) = source {
            let next = e.to_string();
            if !text.ends_with(&next) {
                text.push_str(": ");
                text.push_str(&next);
            }
            source = e.source();
        }
        text
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
            CoreError::UnavailableWith { message, details, retryable } => {
                let e = ErrorShape::unavailable(message.clone()).with_details(details.clone());
                if *retryable { e.retry(None) } else { e }
            }
            CoreError::Internal(_) => {
                let correlation = uuid::Uuid::new_v4().simple().to_string();
                let correlation = &correlation[..12];
                tracing::error!(method, correlation, error = %self.log_chain(), "request failed");
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
            other => CoreError::internal_source(other),
        }
    }
}

/// Decode method params into a typed struct, with upstream-style messages on failure.
pub fn parse_params<T: serde::de::DeserializeOwned>(method: &str, params: Value) -> Result<T, CoreError> {
    serde_json::from_value(params).map_err(|e| CoreError::invalid(format!("invalid {method} params: {e}")))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_store_fault_keeps_its_source_and_kind() {
        let e = CoreError::from(clawgate_store::StoreError::Corrupt("bad row in runs".into()));
        assert_eq!(e.kind(), ErrorKind::Internal);
        assert!(std::error::Error::source(&e).is_some(), "the store error is kept as the source");
        assert!(e.log_chain().contains("bad row in runs"), "{}", e.log_chain());
    }

    #[test]
    fn internal_details_are_logged_but_never_sent() {
        let e = CoreError::internal("secret path /var/lib/x");
        let shape = e.to_error_shape("status");
        assert_eq!(shape.code, "UNAVAILABLE");
        assert!(!shape.message.contains("/var/lib/x"), "{}", shape.message);
        assert!(shape.message.starts_with("internal error while handling status (ref "), "{}", shape.message);
    }

    #[test]
    fn unavailable_with_details_carries_them_to_the_wire() {
        let e = CoreError::UnavailableWith {
            message: "X: y".into(),
            details: serde_json::json!({"nodeError": {"code": "X", "message": "y"}}),
            retryable: false,
        };
        assert_eq!(e.kind(), ErrorKind::Unavailable);
        let shape = e.to_error_shape("node.invoke");
        assert_eq!((shape.code.as_str(), shape.message.as_str()), ("UNAVAILABLE", "X: y"));
        assert_eq!(shape.details, Some(serde_json::json!({"nodeError": {"code": "X", "message": "y"}})));
        assert_eq!(shape.retryable, None);
        let e = CoreError::UnavailableWith { message: "m".into(), details: serde_json::json!({}), retryable: true };
        assert_eq!((e.to_error_shape("x").retryable, e.to_error_shape("x").retry_after_ms), (Some(true), None));
    }

    #[test]
    fn kinds_follow_the_variant() {
        assert_eq!(CoreError::invalid("x").kind(), ErrorKind::InvalidRequest);
        assert_eq!(CoreError::NotFound("x".into()).kind(), ErrorKind::NotFound);
        assert_eq!(CoreError::Unavailable("x".into()).kind(), ErrorKind::Unavailable);
        assert_eq!(
            CoreError::MissingScope { scope: "operator.admin".into(), reason: "r" }.kind(),
            ErrorKind::Forbidden
        );
    }
}
