//! The error shape of `res` frames and its codes (contract §5.1–5.2).

use serde::{Deserialize, Serialize};
use serde_json::Value;

/// `{code, message, details?, retryable?, retryAfterMs?}` — a closed object.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct ErrorShape {
    /// Top-level code, one of [`codes`].
    pub code: String,
    /// Human-readable message (never empty).
    pub message: String,
    /// Finer reason; `details.code` is one of [`details`].
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub details: Option<Value>,
    /// Whether the same request may succeed later.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub retryable: Option<bool>,
    /// When to retry (ms).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub retry_after_ms: Option<u64>,
}

impl ErrorShape {
    /// An error with a code and message.
    pub fn new(code: &str, message: impl Into<String>) -> Self {
        Self { code: code.to_owned(), message: message.into(), details: None, retryable: None, retry_after_ms: None }
    }

    /// `INVALID_REQUEST` with a message.
    pub fn invalid_request(message: impl Into<String>) -> Self {
        Self::new(codes::INVALID_REQUEST, message)
    }

    /// `UNAVAILABLE` with a message.
    pub fn unavailable(message: impl Into<String>) -> Self {
        Self::new(codes::UNAVAILABLE, message)
    }

    /// `INVALID_REQUEST "unknown method: M"`.
    pub fn unknown_method(method: &str) -> Self {
        Self::invalid_request(format!("unknown method: {method}"))
    }

    /// `FORBIDDEN "missing scope: S"` with `MISSING_SCOPE` details.
    pub fn missing_scope(scope: &str, required: &[&str]) -> Self {
        Self::new(codes::FORBIDDEN, format!("missing scope: {scope}")).with_details(serde_json::json!({
            "code": details::MISSING_SCOPE,
            "missingScope": scope,
            "requiredScopes": required,
        }))
    }

    /// Attach details.
    pub fn with_details(mut self, details: Value) -> Self {
        self.details = Some(details);
        self
    }

    /// Mark retryable, optionally with a delay.
    pub fn retry(mut self, after_ms: Option<u64>) -> Self {
        self.retryable = Some(true);
        self.retry_after_ms = after_ms;
        self
    }

    /// `details.code`, if any.
    pub fn detail_code(&self) -> Option<&str> {
        self.details.as_ref()?.get("code")?.as_str()
    }
}

/// Top-level error codes.
pub mod codes {
    /// Schema/param validation, protocol mismatch, auth failure, unknown method, wrong role.
    pub const INVALID_REQUEST: &str = "INVALID_REQUEST";
    /// Missing scope.
    pub const FORBIDDEN: &str = "FORBIDDEN";
    /// Device identity or pairing required.
    pub const NOT_PAIRED: &str = "NOT_PAIRED";
    /// Busy, starting, draining, internal failure.
    pub const UNAVAILABLE: &str = "UNAVAILABLE";
    /// Approval id missing or expired.
    pub const APPROVAL_NOT_FOUND: &str = "APPROVAL_NOT_FOUND";
}

/// `details.code` values.
pub mod details {
    #![allow(missing_docs)]
    pub const AUTH_REQUIRED: &str = "AUTH_REQUIRED";
    pub const AUTH_UNAUTHORIZED: &str = "AUTH_UNAUTHORIZED";
    pub const AUTH_TOKEN_MISSING: &str = "AUTH_TOKEN_MISSING";
    pub const AUTH_TOKEN_MISMATCH: &str = "AUTH_TOKEN_MISMATCH";
    pub const AUTH_TOKEN_NOT_CONFIGURED: &str = "AUTH_TOKEN_NOT_CONFIGURED";
    pub const AUTH_PASSWORD_MISSING: &str = "AUTH_PASSWORD_MISSING";
    pub const AUTH_PASSWORD_MISMATCH: &str = "AUTH_PASSWORD_MISMATCH";
    pub const AUTH_PASSWORD_NOT_CONFIGURED: &str = "AUTH_PASSWORD_NOT_CONFIGURED";
    pub const AUTH_DEVICE_TOKEN_MISMATCH: &str = "AUTH_DEVICE_TOKEN_MISMATCH";
    pub const AUTH_SCOPE_MISMATCH: &str = "AUTH_SCOPE_MISMATCH";
    pub const AUTH_RATE_LIMITED: &str = "AUTH_RATE_LIMITED";
    pub const CONTROL_UI_ORIGIN_NOT_ALLOWED: &str = "CONTROL_UI_ORIGIN_NOT_ALLOWED";
    pub const PROTOCOL_MISMATCH: &str = "PROTOCOL_MISMATCH";
    pub const CONTROL_UI_DEVICE_IDENTITY_REQUIRED: &str = "CONTROL_UI_DEVICE_IDENTITY_REQUIRED";
    pub const DEVICE_IDENTITY_REQUIRED: &str = "DEVICE_IDENTITY_REQUIRED";
    pub const DEVICE_AUTH_INVALID: &str = "DEVICE_AUTH_INVALID";
    pub const DEVICE_AUTH_DEVICE_ID_MISMATCH: &str = "DEVICE_AUTH_DEVICE_ID_MISMATCH";
    pub const DEVICE_AUTH_SIGNATURE_EXPIRED: &str = "DEVICE_AUTH_SIGNATURE_EXPIRED";
    pub const DEVICE_AUTH_NONCE_REQUIRED: &str = "DEVICE_AUTH_NONCE_REQUIRED";
    pub const DEVICE_AUTH_NONCE_MISMATCH: &str = "DEVICE_AUTH_NONCE_MISMATCH";
    pub const DEVICE_AUTH_SIGNATURE_INVALID: &str = "DEVICE_AUTH_SIGNATURE_INVALID";
    pub const DEVICE_AUTH_PUBLIC_KEY_INVALID: &str = "DEVICE_AUTH_PUBLIC_KEY_INVALID";
    pub const PAIRING_REQUIRED: &str = "PAIRING_REQUIRED";
    pub const MISSING_SCOPE: &str = "MISSING_SCOPE";
}
