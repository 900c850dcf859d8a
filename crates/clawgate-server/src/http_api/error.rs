//! The HTTP API's error answers, one type per wire format, each converted to a response in
//! exactly one place:
//!
//! - [`OpenAiError`]: `{"error":{"message","type"}}`, used by `/v1/*` and for the bearer-auth
//!   refusals of `/tools/invoke` (the real gateway answers those in this shape too);
//! - [`ToolsError`]: `{"ok":false,"error":{"type","message"}}` for `/tools/invoke`;
//! - [`HookError`]: plain text for the hooks' transport refusals, `{"ok":false,"error":"…"}` for
//!   their payload errors.
//!
//! Internal failures are logged here with a correlation id; the client gets the id, never the
//! underlying text.

use std::time::Duration;

use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use serde_json::json;

use super::{BODY_BUDGET_RETRY, BodyError};

/// `text/plain` answer (`Not Found`, `Method Not Allowed`, …), as the real gateway sends them.
pub(crate) fn plain(status: StatusCode, text: &'static str) -> Response {
    let mut response = (status, text).into_response();
    response.headers_mut().insert(header::CONTENT_TYPE, HeaderValue::from_static("text/plain; charset=utf-8"));
    response
}

/// 405 naming the method to use (`Allow`).
pub(crate) fn method_not_allowed(allow: &'static str) -> Response {
    let mut response = plain(StatusCode::METHOD_NOT_ALLOWED, "Method Not Allowed");
    response.headers_mut().insert(header::ALLOW, HeaderValue::from_static(allow));
    response
}

/// Seconds for `Retry-After`: rounded up, at least one.
fn retry_after_secs(wait: Duration) -> u64 {
    wait.as_millis().div_ceil(1000).max(1) as u64
}

fn set_retry_after(response: &mut Response, wait: Option<Duration>) {
    if let Some(wait) = wait
        && let Ok(value) = HeaderValue::from_str(&retry_after_secs(wait).to_string())
    {
        response.headers_mut().insert(header::RETRY_AFTER, value);
    }
}

/// Logs an internal failure and returns the correlation id to show instead of it.
fn log_internal(what: &str, detail: &str) -> String {
    let id = uuid::Uuid::new_v4().simple().to_string();
    tracing::error!(correlation = %id, error = %detail, "{what}");
    id
}

/// An error in the OpenAI wire format.
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct OpenAiError {
    status: StatusCode,
    message: String,
    kind: &'static str,
    retry_after: Option<Duration>,
}

impl OpenAiError {
    fn new(status: StatusCode, kind: &'static str, message: impl Into<String>) -> Self {
        Self { status, message: message.into(), kind, retry_after: None }
    }

    /// 401, no or wrong bearer.
    pub(crate) fn unauthorized() -> Self {
        Self::new(StatusCode::UNAUTHORIZED, "unauthorized", "Unauthorized")
    }

    /// 429 while the address is locked out after failed attempts.
    pub(crate) fn auth_rate_limited(wait: Duration) -> Self {
        let mut e = Self::new(
            StatusCode::TOO_MANY_REQUESTS,
            "rate_limited",
            "Too many failed authentication attempts. Please try again later.",
        );
        e.retry_after = Some(wait);
        e
    }

    /// 400 `invalid_request_error`; the message says what to change.
    pub(crate) fn invalid(message: impl Into<String>) -> Self {
        Self::new(StatusCode::BAD_REQUEST, "invalid_request_error", message)
    }

    /// 404 for a model id that is not an agent target.
    pub(crate) fn model_not_found(id: &str) -> Self {
        Self::new(StatusCode::NOT_FOUND, "invalid_request_error", format!("The model `{id}` does not exist."))
    }

    /// 413.
    pub(crate) fn too_large() -> Self {
        Self::new(StatusCode::PAYLOAD_TOO_LARGE, "invalid_request_error", "Payload too large")
    }

    /// 408.
    pub(crate) fn body_timeout() -> Self {
        Self::new(StatusCode::REQUEST_TIMEOUT, "invalid_request_error", "Request body timeout")
    }

    /// The run failed at the model provider. The run's error text is written by clawgate for
    /// operators (it names the config key to fix) and bearer callers are operators, so it is sent.
    pub(crate) fn run_failed(kind: &str, message: &str) -> Self {
        match kind {
            "rate_limit" => Self::new(StatusCode::TOO_MANY_REQUESTS, "rate_limit_error", message),
            "timeout" => Self::new(StatusCode::GATEWAY_TIMEOUT, "timeout", message),
            "context_length" => Self::new(StatusCode::BAD_REQUEST, "invalid_request_error", message),
            _ => Self::new(StatusCode::BAD_GATEWAY, "api_error", message),
        }
    }

    /// The run hit its time limit.
    pub(crate) fn run_timed_out() -> Self {
        Self::new(StatusCode::GATEWAY_TIMEOUT, "timeout", "The agent run timed out (agents.defaults.timeoutSeconds).")
    }

    /// 503 + `Retry-After`: the global budget for request bodies in flight is spent.
    pub(crate) fn busy() -> Self {
        let mut e = Self::new(
            StatusCode::SERVICE_UNAVAILABLE,
            "server_busy",
            "Too many large requests in flight; retry after the time in Retry-After.",
        );
        e.retry_after = Some(BODY_BUDGET_RETRY);
        e
    }

    /// The gateway is stopping.
    pub(crate) fn unavailable(message: impl Into<String>) -> Self {
        Self::new(StatusCode::SERVICE_UNAVAILABLE, "api_error", message)
    }

    /// Something broke inside: logged with a correlation id, which is all the client sees.
    pub(crate) fn internal(what: &str, detail: impl std::fmt::Display) -> Self {
        let id = log_internal(what, &detail.to_string());
        Self::new(StatusCode::INTERNAL_SERVER_ERROR, "api_error", format!("internal error (id {id})"))
    }

    /// The `type` field.
    pub(crate) fn kind(&self) -> &'static str {
        self.kind
    }

    /// The `message` field.
    pub(crate) fn message(&self) -> &str {
        &self.message
    }

    /// The `error` object, for an SSE `data:` line after the stream has started.
    pub(crate) fn body(&self) -> serde_json::Value {
        json!({"error": {"message": self.message, "type": self.kind}})
    }
}

impl IntoResponse for OpenAiError {
    fn into_response(self) -> Response {
        let mut response = (self.status, axum::Json(self.body())).into_response();
        set_retry_after(&mut response, self.retry_after);
        response
    }
}

/// An error of `/tools/invoke`.
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct ToolsError {
    status: StatusCode,
    kind: &'static str,
    message: String,
    retry_after: Option<Duration>,
}

impl ToolsError {
    fn new(status: StatusCode, kind: &'static str, message: impl Into<String>) -> Self {
        Self { status, kind, message: message.into(), retry_after: None }
    }

    /// 400: the request itself is wrong.
    pub(crate) fn invalid(message: impl Into<String>) -> Self {
        Self::new(StatusCode::BAD_REQUEST, "invalid_request", message)
    }

    /// 404: no such tool, or not allowed over HTTP (the real gateway does not tell them apart).
    pub(crate) fn not_available(name: &str) -> Self {
        Self::new(StatusCode::NOT_FOUND, "not_found", format!("Tool not available: {name}"))
    }

    /// 413.
    pub(crate) fn too_large() -> Self {
        Self::new(StatusCode::PAYLOAD_TOO_LARGE, "invalid_request", "Payload too large")
    }

    /// 408.
    pub(crate) fn body_timeout() -> Self {
        Self::new(StatusCode::REQUEST_TIMEOUT, "invalid_request", "Request body timeout")
    }

    /// 503 + `Retry-After`: the global budget for request bodies in flight is spent.
    pub(crate) fn busy() -> Self {
        Self {
            retry_after: Some(BODY_BUDGET_RETRY),
            ..Self::new(StatusCode::SERVICE_UNAVAILABLE, "server_busy", "Too many large requests in flight")
        }
    }

    /// 500: the tool ran and failed. Tool errors are written for the model to read (they name
    /// the bad argument or the missing session), so they are sent as they are.
    pub(crate) fn tool_failed(message: String) -> Self {
        Self::new(StatusCode::INTERNAL_SERVER_ERROR, "tool_error", message)
    }
}

impl IntoResponse for ToolsError {
    fn into_response(self) -> Response {
        let body = json!({"ok": false, "error": {"type": self.kind, "message": self.message}});
        let mut response = (self.status, axum::Json(body)).into_response();
        set_retry_after(&mut response, self.retry_after);
        response
    }
}

/// An error of the hooks endpoints.
#[derive(Debug, Clone, PartialEq)]
pub(crate) enum HookError {
    /// A transport-level refusal in plain text (401, 404, 405, the `?token=` 400).
    Plain(StatusCode, &'static str),
    /// 429 after too many failed tokens.
    Throttled(Duration),
    /// 503 + `Retry-After`: the global budget for request bodies in flight is spent.
    Busy,
    /// A payload problem: `{"ok":false,"error":"…"}`.
    Payload(StatusCode, String),
    /// Something broke inside.
    Internal(String),
}

impl HookError {
    /// 400 with a message.
    pub(crate) fn bad_request(message: impl Into<String>) -> Self {
        HookError::Payload(StatusCode::BAD_REQUEST, message.into())
    }
}

impl IntoResponse for HookError {
    fn into_response(self) -> Response {
        match self {
            HookError::Plain(StatusCode::METHOD_NOT_ALLOWED, _) => method_not_allowed("POST"),
            HookError::Plain(status, text) => plain(status, text),
            HookError::Throttled(wait) => {
                let mut response = plain(StatusCode::TOO_MANY_REQUESTS, "Too Many Requests");
                set_retry_after(&mut response, Some(wait));
                response
            }
            HookError::Busy => {
                let mut response = plain(StatusCode::SERVICE_UNAVAILABLE, "Service Unavailable");
                set_retry_after(&mut response, Some(BODY_BUDGET_RETRY));
                response
            }
            HookError::Payload(status, message) => {
                (status, axum::Json(json!({"ok": false, "error": message}))).into_response()
            }
            HookError::Internal(detail) => {
                let id = log_internal("hook request failed", &detail);
                let body = json!({"ok": false, "error": format!("internal error (id {id})")});
                (StatusCode::INTERNAL_SERVER_ERROR, axum::Json(body)).into_response()
            }
        }
    }
}

impl From<BodyError> for OpenAiError {
    fn from(e: BodyError) -> Self {
        match e {
            BodyError::TooLarge => OpenAiError::too_large(),
            BodyError::Timeout => OpenAiError::body_timeout(),
            BodyError::Invalid(message) => OpenAiError::invalid(message),
            BodyError::Busy => OpenAiError::busy(),
        }
    }
}

impl From<BodyError> for ToolsError {
    fn from(e: BodyError) -> Self {
        match e {
            BodyError::TooLarge => ToolsError::too_large(),
            BodyError::Timeout => ToolsError::body_timeout(),
            BodyError::Invalid(message) => ToolsError::invalid(message),
            BodyError::Busy => ToolsError::busy(),
        }
    }
}

impl From<BodyError> for HookError {
    fn from(e: BodyError) -> Self {
        match e {
            BodyError::TooLarge => HookError::Payload(StatusCode::PAYLOAD_TOO_LARGE, "payload too large".into()),
            BodyError::Timeout => HookError::Payload(StatusCode::REQUEST_TIMEOUT, "request body timeout".into()),
            BodyError::Invalid(message) => HookError::Payload(StatusCode::BAD_REQUEST, message),
            BodyError::Busy => HookError::Busy,
        }
    }
}

// The core's errors, mapped by kind in one place per wire format. Messages of caller errors
// are sent as they are (they say what to change); internal ones only as a correlation id.

impl From<clawgate_core::CoreError> for OpenAiError {
    fn from(e: clawgate_core::CoreError) -> Self {
        use clawgate_core::ErrorKind as K;
        match e.kind() {
            K::InvalidRequest | K::NotFound | K::ApprovalNotFound => OpenAiError::invalid(e.to_string()),
            K::Unavailable => OpenAiError::unavailable(e.to_string()),
            K::Forbidden => OpenAiError::new(StatusCode::FORBIDDEN, "permission_error", e.to_string()),
            K::Internal => OpenAiError::internal("request failed", e.log_chain()),
        }
    }
}

impl From<clawgate_core::CoreError> for HookError {
    fn from(e: clawgate_core::CoreError) -> Self {
        use clawgate_core::ErrorKind as K;
        match e.kind() {
            K::InvalidRequest | K::NotFound | K::ApprovalNotFound => HookError::bad_request(e.to_string()),
            K::Unavailable => HookError::Payload(StatusCode::SERVICE_UNAVAILABLE, e.to_string()),
            K::Forbidden => HookError::Payload(StatusCode::FORBIDDEN, e.to_string()),
            K::Internal => HookError::Internal(e.log_chain()),
        }
    }
}

impl From<clawgate_core::CoreError> for ToolsError {
    fn from(e: clawgate_core::CoreError) -> Self {
        use clawgate_core::ErrorKind as K;
        match e.kind() {
            K::InvalidRequest | K::NotFound | K::ApprovalNotFound => ToolsError::invalid(e.to_string()),
            K::Unavailable => ToolsError::new(StatusCode::SERVICE_UNAVAILABLE, "unavailable", e.to_string()),
            K::Forbidden => ToolsError::new(StatusCode::FORBIDDEN, "forbidden", e.to_string()),
            K::Internal => {
                let id = log_internal("tool request failed", &e.log_chain());
                ToolsError::new(StatusCode::INTERNAL_SERVER_ERROR, "internal", format!("internal error (id {id})"))
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn retry_after_rounds_up_to_whole_seconds() {
        assert_eq!(retry_after_secs(Duration::from_millis(1)), 1);
        assert_eq!(retry_after_secs(Duration::from_millis(1001)), 2);
        assert_eq!(retry_after_secs(Duration::ZERO), 1);
    }

    #[test]
    fn provider_failures_map_to_gateway_statuses() {
        assert_eq!(OpenAiError::run_failed("unknown", "x").status, StatusCode::BAD_GATEWAY);
        assert_eq!(OpenAiError::run_failed("rate_limit", "x").status, StatusCode::TOO_MANY_REQUESTS);
        assert_eq!(OpenAiError::run_failed("timeout", "x").status, StatusCode::GATEWAY_TIMEOUT);
    }

    #[test]
    fn core_errors_map_by_kind_and_never_leak_internal_text() {
        use clawgate_core::CoreError;
        let e = OpenAiError::from(CoreError::invalid("sessionKey must be 1 to 512 characters"));
        assert_eq!((e.status, e.kind), (StatusCode::BAD_REQUEST, "invalid_request_error"));
        assert_eq!(e.message, "sessionKey must be 1 to 512 characters");
        let e = OpenAiError::from(CoreError::Unavailable("gateway stopping".into()));
        assert_eq!(e.status, StatusCode::SERVICE_UNAVAILABLE);
        let e = OpenAiError::from(CoreError::internal("disk path /srv/secret"));
        assert_eq!(e.status, StatusCode::INTERNAL_SERVER_ERROR);
        assert!(!e.message.contains("/srv/secret"), "{}", e.message);
        assert!(
            matches!(HookError::from(CoreError::invalid("bad")), HookError::Payload(StatusCode::BAD_REQUEST, m) if m == "bad")
        );
        assert!(matches!(HookError::from(CoreError::internal("x")), HookError::Internal(_)));
        let t = ToolsError::from(CoreError::internal("db path /srv/secret"));
        assert_eq!(t.status, StatusCode::INTERNAL_SERVER_ERROR);
        assert!(!t.message.contains("/srv/secret"));
    }
}
