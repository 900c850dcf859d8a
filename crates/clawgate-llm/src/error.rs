//! What can go wrong when calling a model, sorted by what the caller can do about it.

use std::fmt;
use std::time::{Duration, SystemTime};

use serde_json::Value;

/// A boxed source error (kept for the `source()` chain, never shown to chat users).
pub type BoxError = Box<dyn std::error::Error + Send + Sync>;

/// Which wait ran out.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TimeoutPhase {
    /// Opening the TCP/TLS connection.
    Connect,
    /// Between sending the request and the first byte of the answer's body.
    FirstByte,
    /// Between two chunks of a streamed answer.
    Idle,
}

impl fmt::Display for TimeoutPhase {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Self::Connect => "connecting to the provider",
            Self::FirstByte => "waiting for the provider to start answering",
            Self::Idle => "waiting for the next part of the answer (the stream went silent)",
        })
    }
}

/// A failed model call.
///
/// Messages taken from the provider are cut to a few hundred characters and have the API key
/// masked, so they are safe to log; they are still provider text, so the gateway decides what of it
/// reaches a chat user.
#[derive(Debug, thiserror::Error)]
pub enum LlmError {
    /// The provider refused the credentials (HTTP 401/403): fix `apiKey`.
    #[error("the provider refused the API key (HTTP {status}): {message}")]
    Auth {
        /// 401 or 403.
        status: u16,
        /// The provider's explanation.
        message: String,
    },
    /// Too many requests (HTTP 429): wait `retry_after` (when the provider said) and try again.
    #[error("rate limited by the provider{}: {message}", fmt_retry_after(.retry_after))]
    RateLimited {
        /// From `retry-after-ms` or `Retry-After` (seconds or an HTTP date).
        retry_after: Option<Duration>,
        /// The provider's explanation.
        message: String,
    },
    /// The conversation does not fit the model's context window: compact or trim it.
    #[error("the conversation is too long for the model's context window: {message}")]
    ContextOverflow {
        /// The provider's explanation.
        message: String,
    },
    /// A configured timeout ran out.
    #[error("timed out after {}s {phase}", .after.as_secs_f32())]
    Timeout {
        /// Which wait.
        phase: TimeoutPhase,
        /// The configured limit that ran out.
        after: Duration,
    },
    /// The provider failed on its side: a 5xx or 529 (overloaded) status before the answer began
    /// (`status` set), or an error reported in the middle of a stream or a dropped connection
    /// (`status` is `None`).
    #[error("the provider failed{}: {message}", fmt_status(.status))]
    Upstream {
        /// The HTTP status, when the failure came as one.
        status: Option<u16>,
        /// The provider's explanation.
        message: String,
    },
    /// The provider rejected the request itself (an unknown model, a bad parameter, an exhausted
    /// quota): retrying the same request will not help.
    #[error("the provider rejected the request (HTTP {status}): {message}")]
    BadRequest {
        /// The HTTP status (a 4xx).
        status: u16,
        /// The provider's explanation.
        message: String,
    },
    /// The provider could not be reached at all.
    #[error(
        "cannot reach provider `{provider}` at {base_url} ({detail}); check the provider's baseUrl in the config and \
         that the server is running (for Ollama: start it with `ollama serve`)"
    )]
    Connect {
        /// The provider id from the config.
        provider: String,
        /// The base URL, without credentials or query.
        base_url: String,
        /// The innermost cause, e.g. "Connection refused (os error 111)".
        detail: String,
        /// The full cause.
        #[source]
        source: BoxError,
    },
    /// The provider answered with something that is not the expected stream.
    #[error("the provider sent an answer clawgate cannot read: {message}")]
    Protocol {
        /// What was wrong.
        message: String,
    },
    /// The caller cancelled the call.
    #[error("the model call was cancelled")]
    Cancelled,
}

fn fmt_retry_after(retry_after: &Option<Duration>) -> String {
    match retry_after {
        Some(d) => format!(" (retry after {:.1}s)", d.as_secs_f32()),
        None => String::new(),
    }
}

fn fmt_status(status: &Option<u16>) -> String {
    match status {
        Some(s) => format!(" (HTTP {s})"),
        None => String::new(),
    }
}

impl LlmError {
    /// Whether trying the same request again may succeed: the provider was unreachable, rate
    /// limited us, or failed with a 5xx/529 before answering. Errors raised while reading a stream
    /// are never retryable here, and [`stream_with_retry`](crate::stream_with_retry) additionally
    /// never retries once an event has been handed to the caller.
    pub fn is_retryable(&self) -> bool {
        match self {
            Self::Connect { .. } | Self::RateLimited { .. } => true,
            Self::Timeout { phase, .. } => *phase == TimeoutPhase::Connect,
            Self::Upstream { status, .. } => status.is_some(),
            _ => false,
        }
    }

    /// How long the provider asked us to wait, if it did.
    pub fn retry_after(&self) -> Option<Duration> {
        match self {
            Self::RateLimited { retry_after, .. } => *retry_after,
            _ => None,
        }
    }
}

/// Longest provider message we keep: enough to diagnose, short enough for a log line.
const MAX_MESSAGE_CHARS: usize = 500;

/// Masks the API key in provider text (some servers echo what they were sent) and cuts it short.
#[derive(Clone, Default)]
pub(crate) struct Redactor {
    secrets: Vec<String>,
}

impl fmt::Debug for Redactor {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Redactor({} secrets)", self.secrets.len())
    }
}

impl Redactor {
    pub(crate) fn new(secrets: impl IntoIterator<Item = String>) -> Self {
        // Very short "keys" (Ollama users often write "ollama" or "x") would mask ordinary words.
        Self { secrets: secrets.into_iter().filter(|s| s.len() >= 8).collect() }
    }

    pub(crate) fn clean(&self, text: &str) -> String {
        let mut text = text.trim().to_owned();
        for secret in &self.secrets {
            if text.contains(secret.as_str()) {
                text = text.replace(secret.as_str(), "[redacted]");
            }
        }
        if text.chars().count() > MAX_MESSAGE_CHARS {
            text = text.chars().take(MAX_MESSAGE_CHARS).collect::<String>() + "…";
        }
        text
    }
}

/// The fields of a provider's JSON error, whichever shape it came in.
#[derive(Debug, Default, PartialEq)]
pub(crate) struct ErrorBody {
    pub(crate) message: String,
    pub(crate) kind: Option<String>,
    pub(crate) code: Option<String>,
}

impl ErrorBody {
    /// Reads `{"error":{"message","type","code"}}` (OpenAI, vLLM, llama.cpp, Anthropic's
    /// `{"type":"error","error":{…}}`) or `{"error":"text"}` (Ollama); anything else is kept as
    /// raw text.
    pub(crate) fn parse(body: &str) -> Self {
        match serde_json::from_str::<Value>(body) {
            Ok(value) => {
                Self::from_value(&value).unwrap_or_else(|| Self { message: body.to_owned(), ..Self::default() })
            }
            Err(_) => Self { message: body.to_owned(), ..Self::default() },
        }
    }

    pub(crate) fn from_value(value: &Value) -> Option<Self> {
        let error = value.get("error").filter(|e| !e.is_null() && *e != false)?;
        if let Some(text) = error.as_str() {
            return Some(Self { message: text.to_owned(), ..Self::default() });
        }
        let text = |key: &str| match error.get(key) {
            Some(Value::String(s)) => Some(s.clone()),
            Some(Value::Number(n)) => Some(n.to_string()),
            _ => None,
        };
        Some(Self {
            message: text("message").unwrap_or_else(|| error.to_string()),
            kind: text("type"),
            code: text("code"),
        })
    }

    fn mentions(&self, needle: &str) -> bool {
        [Some(&self.message), self.kind.as_ref(), self.code.as_ref()]
            .into_iter()
            .flatten()
            .any(|s| s.to_ascii_lowercase().contains(needle))
    }

    /// Whether the provider is saying the prompt does not fit. There is no standard code, so this
    /// matches what OpenAI, Anthropic, vLLM, llama.cpp, LM Studio and Ollama actually say.
    pub(crate) fn is_context_overflow(&self) -> bool {
        const MARKERS: &[&str] = &[
            "context_length_exceeded",
            "context length",
            "context window",
            "maximum context",
            "context size",
            "exceed_context_size",
            "exceeds the context",
            "prompt is too long",
            "input is too long",
            "too many tokens",
            "reduce the length of the messages",
        ];
        MARKERS.iter().any(|m| self.mentions(m))
    }
}

/// Turns a non-success HTTP answer into the error the caller can act on.
pub(crate) fn classify_status(status: u16, retry_after: Option<Duration>, body: &str, redactor: &Redactor) -> LlmError {
    let parsed = ErrorBody::parse(body);
    let message = redactor.clean(if parsed.message.trim().is_empty() { "(no message)" } else { &parsed.message });
    match status {
        401 | 403 => LlmError::Auth { status, message },
        // OpenAI reports an exhausted balance as 429 too; waiting does not refill it.
        429 if parsed.mentions("insufficient_quota") => LlmError::BadRequest { status, message },
        429 => LlmError::RateLimited { retry_after, message },
        408 | 500..=599 => LlmError::Upstream { status: Some(status), message },
        400..=499 if parsed.is_context_overflow() => LlmError::ContextOverflow { message },
        404 => LlmError::BadRequest {
            status,
            message: format!("{message} (check the model id and the provider's baseUrl)"),
        },
        _ => LlmError::BadRequest { status, message },
    }
}

/// Turns an error object found inside a stream (OpenAI-style `{"error":{…}}` or an Anthropic
/// `error` event) into an error. There is no status to go by, only the error's type and text.
pub(crate) fn classify_stream_error(body: &ErrorBody, redactor: &Redactor) -> LlmError {
    let message = redactor.clean(&body.message);
    if body.is_context_overflow() {
        LlmError::ContextOverflow { message }
    } else if body.mentions("rate_limit") {
        LlmError::RateLimited { retry_after: None, message }
    } else if body.mentions("authentication_error") || body.mentions("permission_error") {
        LlmError::Auth { status: 401, message }
    } else {
        LlmError::Upstream { status: None, message }
    }
}

/// Reads how long a 429/503 asks us to wait: `retry-after-ms` (OpenAI and Anthropic send it, more
/// precise) wins over `Retry-After`, which is either delay-seconds or an HTTP date.
pub(crate) fn parse_retry_after(
    retry_after_ms: Option<&str>,
    retry_after: Option<&str>,
    now: SystemTime,
) -> Option<Duration> {
    if let Some(ms) = retry_after_ms.and_then(|v| v.trim().parse::<f64>().ok())
        && ms.is_finite()
        && ms >= 0.0
    {
        return Some(Duration::from_secs_f64(ms / 1000.0));
    }
    let value = retry_after?.trim();
    if let Ok(secs) = value.parse::<f64>() {
        return (secs.is_finite() && secs >= 0.0).then(|| Duration::from_secs_f64(secs));
    }
    let date = httpdate::parse_http_date(value).ok()?;
    Some(date.duration_since(now).unwrap_or(Duration::ZERO))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn classify(status: u16, body: &str) -> LlmError {
        classify_status(status, None, body, &Redactor::new(["sk-secret-key-123".to_owned()]))
    }

    #[test]
    fn retry_after_accepts_seconds_dates_and_milliseconds() {
        let now = SystemTime::UNIX_EPOCH + Duration::from_secs(1_000_000_000);
        assert_eq!(parse_retry_after(None, Some("7"), now), Some(Duration::from_secs(7)));
        assert_eq!(parse_retry_after(None, Some("1.5"), now), Some(Duration::from_millis(1500)));
        assert_eq!(parse_retry_after(Some("250"), Some("7"), now), Some(Duration::from_millis(250)));
        let later = httpdate::fmt_http_date(now + Duration::from_secs(30));
        assert_eq!(parse_retry_after(None, Some(&later), now), Some(Duration::from_secs(30)));
        let earlier = httpdate::fmt_http_date(now - Duration::from_secs(30));
        assert_eq!(parse_retry_after(None, Some(&earlier), now), Some(Duration::ZERO));
        assert_eq!(parse_retry_after(None, Some("soon"), now), None);
        assert_eq!(parse_retry_after(Some("-5"), None, now), None);
        assert_eq!(parse_retry_after(None, None, now), None);
    }

    #[test]
    fn statuses_map_to_what_the_caller_can_do() {
        assert!(matches!(classify(401, r#"{"error":{"message":"bad key"}}"#), LlmError::Auth { status: 401, .. }));
        assert!(matches!(classify(403, "forbidden"), LlmError::Auth { status: 403, .. }));
        assert!(matches!(classify(429, "{}"), LlmError::RateLimited { .. }));
        assert!(matches!(
            classify(429, r#"{"error":{"message":"You exceeded your current quota","type":"insufficient_quota"}}"#),
            LlmError::BadRequest { status: 429, .. }
        ));
        assert!(matches!(classify(500, "boom"), LlmError::Upstream { status: Some(500), .. }));
        assert!(matches!(
            classify(529, r#"{"type":"error","error":{"type":"overloaded_error","message":"Overloaded"}}"#),
            LlmError::Upstream { status: Some(529), .. }
        ));
        assert!(matches!(classify(400, r#"{"error":{"message":"bad temperature"}}"#), LlmError::BadRequest { .. }));
        match classify(404, r#"{"error":"model \"nope\" not found, try pulling it first"}"#) {
            LlmError::BadRequest { status: 404, message } => assert!(message.contains("not found")),
            other => panic!("unexpected {other:?}"),
        }
    }

    #[test]
    fn context_overflow_is_recognised_across_providers() {
        let bodies = [
            r#"{"error":{"message":"This model's maximum context length is 8192 tokens.","type":"invalid_request_error","code":"context_length_exceeded"}}"#,
            r#"{"type":"error","error":{"type":"invalid_request_error","message":"prompt is too long: 210000 tokens > 200000 maximum"}}"#,
            r#"{"error":{"code":400,"message":"the request exceeds the available context size, try increasing it","type":"exceed_context_size_error"}}"#,
            r#"{"object":"error","message":"x","error":{"message":"This model's maximum context length is 4096 tokens. However, you requested 5000 tokens"}}"#,
        ];
        for body in bodies {
            assert!(matches!(classify(400, body), LlmError::ContextOverflow { .. }), "{body}");
        }
    }

    #[test]
    fn provider_messages_never_carry_the_api_key() {
        let err = classify(401, r#"{"error":{"message":"Incorrect API key provided: sk-secret-key-123"}}"#);
        let text = err.to_string();
        assert!(!text.contains("sk-secret-key-123"), "{text}");
        assert!(text.contains("[redacted]"));
    }

    #[test]
    fn long_provider_messages_are_cut() {
        let err = classify(400, &"x".repeat(10_000));
        assert!(err.to_string().len() < 1_000);
    }

    #[test]
    fn only_failures_before_an_answer_are_retryable() {
        assert!(LlmError::RateLimited { retry_after: None, message: String::new() }.is_retryable());
        assert!(LlmError::Upstream { status: Some(503), message: String::new() }.is_retryable());
        assert!(!LlmError::Upstream { status: None, message: String::new() }.is_retryable());
        assert!(LlmError::Timeout { phase: TimeoutPhase::Connect, after: Duration::from_secs(1) }.is_retryable());
        assert!(!LlmError::Timeout { phase: TimeoutPhase::Idle, after: Duration::from_secs(1) }.is_retryable());
        assert!(!LlmError::ContextOverflow { message: String::new() }.is_retryable());
        assert!(!LlmError::Cancelled.is_retryable());
    }

    #[test]
    fn stream_errors_are_classified_by_type() {
        let r = Redactor::default();
        let overloaded = ErrorBody { message: "Overloaded".into(), kind: Some("overloaded_error".into()), code: None };
        assert!(matches!(classify_stream_error(&overloaded, &r), LlmError::Upstream { status: None, .. }));
        let limited = ErrorBody { message: "slow down".into(), kind: Some("rate_limit_error".into()), code: None };
        assert!(matches!(classify_stream_error(&limited, &r), LlmError::RateLimited { .. }));
    }
}
