//! The three frame types (`req`, `res`, `event`), all closed objects (contract §2).

use serde::{Deserialize, Serialize};
use serde_json::Value;

use crate::error::ErrorShape;
use crate::validate::{STR1, Ty, opt, req, validate_object};

/// A client request.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct RequestFrame {
    /// Client-chosen id, echoed in the response.
    pub id: String,
    /// Method name.
    pub method: String,
    /// Parameters; handlers see `{}` when absent.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub params: Option<Value>,
    /// W3C trace context, ignored when malformed.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub traceparent: Option<String>,
    /// Profile-binding precondition.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub expected_profile_id: Option<String>,
}

impl RequestFrame {
    /// The params, or an empty object when the client left them out.
    pub fn params_or_empty(&self) -> Value {
        self.params.clone().unwrap_or_else(|| Value::Object(Default::default()))
    }

    /// Move the params out (an empty object when absent), leaving `None`: a 25 MiB frame's
    /// params are then held once, by the handler, not twice for the life of the request.
    pub fn take_params(&mut self) -> Value {
        self.params.take().unwrap_or_else(|| Value::Object(Default::default()))
    }
}

const REQUEST_FIELDS: &[crate::validate::Field] = &[
    req("type", Ty::Const("req")),
    req("id", STR1),
    req("method", STR1),
    opt("params", Ty::Any),
    opt("traceparent", Ty::Str { min: 0, max: Some(128) }),
    opt("expectedProfileId", Ty::Str { min: 1, max: Some(128) }),
];

/// Why an inbound text frame is not a usable request.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum FrameError {
    /// The text is not JSON at all.
    #[error("invalid JSON: {0}")]
    Json(String),
    /// JSON, but not a valid request frame. `id` is the frame's id when it had a usable one.
    #[error("invalid request frame: {message}")]
    Invalid {
        /// The id to answer with (`"invalid"` when absent).
        id: Option<String>,
        /// AJV-style list of problems.
        message: String,
    },
}

impl FrameError {
    /// The `res.id` to use when answering this error (`"invalid"` when the frame had none).
    pub fn response_id(&self) -> String {
        match self {
            FrameError::Invalid { id: Some(id), .. } => id.clone(),
            _ => "invalid".to_owned(),
        }
    }

    /// The error shape sent back: `INVALID_REQUEST "invalid request frame: …"`.
    pub fn to_error_shape(&self) -> ErrorShape {
        ErrorShape::invalid_request(self.to_string())
    }
}

/// Parse and validate one inbound text frame as a request (the only type clients send).
pub fn parse_request_frame(text: &str) -> Result<RequestFrame, FrameError> {
    let value: Value = serde_json::from_str(text).map_err(|e| FrameError::Json(e.to_string()))?;
    parse_request_value(value)
}

/// Validate an already-parsed JSON value as a request frame.
pub fn parse_request_value(value: Value) -> Result<RequestFrame, FrameError> {
    let errors = validate_object(&value, REQUEST_FIELDS);
    if !errors.is_empty() {
        let id = value.get("id").and_then(Value::as_str).filter(|s| !s.is_empty()).map(str::to_owned);
        return Err(FrameError::Invalid { id, message: errors.join("; ") });
    }
    serde_json::from_value(value).map_err(|e| FrameError::Invalid { id: None, message: e.to_string() })
}

/// A response to a request.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ResponseFrame {
    /// Always `"res"`.
    #[serde(rename = "type")]
    pub kind: String,
    /// The request's id.
    pub id: String,
    /// Success flag.
    pub ok: bool,
    /// Result payload.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub payload: Option<Value>,
    /// Error when `!ok`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub error: Option<ErrorShape>,
}

impl ResponseFrame {
    /// A successful response.
    pub fn ok(id: impl Into<String>, payload: Value) -> Self {
        Self { kind: "res".into(), id: id.into(), ok: true, payload: Some(payload), error: None }
    }

    /// A failed response.
    pub fn err(id: impl Into<String>, error: ErrorShape) -> Self {
        Self { kind: "res".into(), id: id.into(), ok: false, payload: None, error: Some(error) }
    }

    /// Serialize to the wire text.
    pub fn to_text(&self) -> String {
        // Serializing a struct of strings and JSON values cannot fail.
        serde_json::to_string(self).unwrap_or_default()
    }

    /// The wire text of a successful response whose payload is already encoded: the same bytes
    /// as `ResponseFrame::ok(id, payload).to_text()`, for answers served from a cached encoding
    /// (the `health` snapshot), which would otherwise be decoded into a tree only to be encoded
    /// again.
    pub fn ok_text(id: &str, payload_json: &str) -> String {
        let id = serde_json::to_string(id).unwrap_or_else(|_| "\"\"".to_owned());
        let mut out = String::with_capacity(payload_json.len() + id.len() + 40);
        out.push_str("{\"type\":\"res\",\"id\":");
        out.push_str(&id);
        out.push_str(",\"ok\":true,\"payload\":");
        out.push_str(payload_json);
        out.push('}');
        out
    }
}

/// `{presence, health}` versions attached to presence/health events.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct StateVersion {
    /// Bumped on every presence change.
    pub presence: u64,
    /// Bumped on every health refresh.
    pub health: u64,
}

/// A server event.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct EventFrame {
    /// Always `"event"`.
    #[serde(rename = "type")]
    pub kind: String,
    /// Event name.
    pub event: String,
    /// Payload.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub payload: Option<Value>,
    /// Per-connection sequence number (broadcasts only).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub seq: Option<u64>,
    /// State versions (presence/health events).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub state_version: Option<StateVersion>,
}

impl EventFrame {
    /// A targeted event without `seq`.
    pub fn new(event: &str, payload: Value) -> Self {
        Self { kind: "event".into(), event: event.to_owned(), payload: Some(payload), seq: None, state_version: None }
    }

    /// Serialize to the wire text.
    pub fn to_text(&self) -> String {
        serde_json::to_string(self).unwrap_or_default()
    }
}

/// Build the wire text of a broadcast event from a payload serialized once, adding this
/// recipient's `seq`. Broadcasts go to many clients: serializing the payload once and splicing
/// the per-client number keeps fan-out cost per recipient to a small string copy.
pub fn event_text_with_seq(event: &str, payload_json: &str, seq: u64, state_version: Option<StateVersion>) -> String {
    let name = serde_json::to_string(event).unwrap_or_else(|_| "\"\"".to_owned());
    let mut out = String::with_capacity(payload_json.len() + name.len() + 80);
    out.push_str("{\"type\":\"event\",\"event\":");
    out.push_str(&name);
    out.push_str(",\"payload\":");
    out.push_str(payload_json);
    out.push_str(",\"seq\":");
    out.push_str(&seq.to_string());
    if let Some(sv) = state_version {
        out.push_str(&format!(",\"stateVersion\":{{\"presence\":{},\"health\":{}}}", sv.presence, sv.health));
    }
    out.push('}');
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn a_response_from_an_encoded_payload_is_the_same_text_as_one_from_its_tree() {
        let payload = json!({"ok": true, "sessions": {"count": 3, "path": "/tmp/a \"b\""}, "list": [1, null, "ü"]});
        for id in ["1", "", "req-\"quoted\"\\n", "ü\u{1}"] {
            let encoded = serde_json::to_string(&payload).unwrap();
            assert_eq!(ResponseFrame::ok_text(id, &encoded), ResponseFrame::ok(id, payload.clone()).to_text());
        }
    }

    #[test]
    fn frame_without_id_is_answered_with_id_invalid() {
        let err = parse_request_frame(r#"{"type":"req","method":"health"}"#).unwrap_err();
        assert_eq!(err.response_id(), "invalid");
        assert_eq!(err.to_string(), "invalid request frame: must have required property 'id'");
    }

    #[test]
    fn bogus_type_reports_missing_method_and_constant() {
        let err = parse_request_frame(r#"{"type":"bogus","id":"r7"}"#).unwrap_err();
        assert_eq!(err.response_id(), "r7");
        assert_eq!(
            err.to_string(),
            "invalid request frame: must have required property 'method'; at /type: must be equal to constant"
        );
    }

    #[test]
    fn unknown_top_level_field_is_rejected() {
        let err = parse_request_frame(r#"{"type":"req","id":"1","method":"health","x":1}"#).unwrap_err();
        assert!(err.to_string().contains("unexpected property 'x'"));
    }

    #[test]
    fn not_json_is_a_json_error() {
        assert!(matches!(parse_request_frame("{nope"), Err(FrameError::Json(_))));
    }

    #[test]
    fn params_may_be_left_out() {
        let f = parse_request_frame(r#"{"type":"req","id":"1","method":"health"}"#).unwrap();
        assert_eq!(f.params_or_empty(), json!({}));
    }

    #[test]
    fn spliced_event_text_is_valid_json_with_seq() {
        let text =
            event_text_with_seq("presence", r#"{"presence":[]}"#, 7, Some(StateVersion { presence: 2, health: 1 }));
        let v: Value = serde_json::from_str(&text).unwrap();
        assert_eq!(
            v,
            json!({"type":"event","event":"presence","payload":{"presence":[]},"seq":7,"stateVersion":{"presence":2,"health":1}})
        );
    }
}
