//! Validation of gateway frames against the OpenClaw protocol JSON schema.
//!
//! The schema file (`data/openclaw-protocol.schema.json`) holds two definition sets: `definitions`
//! (the published `@openclaw/gateway-protocol@2026.9.1` schema) and
//! `x-openclaw-2026.9.6-definitions` (what `openclaw@2026.9.6` actually ships). We validate against
//! the 2026.9.6 shape of a name and fall back to the 2026.9.1 one, so both sets are merged into one
//! `definitions` object (2026.9.6 wins). The few `$ref`s in the file point to `#/definitions/...`,
//! which then resolve inside that merged set.
//!
//! A frame is checked in two steps: the outer frame (`RequestFrame`/`ResponseFrame`/`EventFrame`,
//! all closed objects), then its payload by known shape: the `res` to `connect` is `HelloOk`, an
//! event by name (`tick` → `TickEvent`, `device.pair.requested` → `DevicePairRequestedEvent`, …), a
//! method result where a `<Method>Result` definition exists, and an error's `details` where a
//! `<DetailsCode>ErrorDetails` definition exists.
//!
//! A few shapes have no definition of their own (the `connect.challenge` payload, the `health`
//! snapshot, `presence`) or a definition that the real 2026.9.6 gateway does not follow (`AgentEvent`
//! lacks `sessionKey`, `agentId`, `sessionId`, `lane`, which every captured agent event carries).
//! Those are written below as "clawgate shapes", each derived from the upstream definitions and
//! checked against the captured transcripts in this module's tests.

use std::collections::{HashMap, HashSet};
use std::fmt;
use std::sync::{Arc, Mutex, OnceLock};

use jsonschema::{Draft, Registry, Validator};
use serde_json::{Map, Value, json};

/// The vendored schema, embedded so tests do not depend on the working directory.
const SCHEMA_JSON: &str = include_str!("../data/openclaw-protocol.schema.json");

/// Base URI of the merged root document inside the registry.
const ROOT_URI: &str = "https://clawgate.invalid/testkit/openclaw-protocol.json";

/// Key of the root document under which the clawgate-specific shapes live.
const SHAPES_KEY: &str = "x-clawgate-shapes";

/// Name of the shape for the `connect.challenge` event payload (no upstream definition).
pub const SHAPE_CONNECT_CHALLENGE: &str = "@connect.challenge";
/// Name of the shape for the health snapshot (`health` event payload; taken from `HelloOk`).
pub const SHAPE_HEALTH_SNAPSHOT: &str = "@health.snapshot";
/// Name of the shape for the `health` method result: the snapshot plus `modelRuntime`.
pub const SHAPE_HEALTH_RESULT: &str = "@health.result";
/// Name of the shape for the `presence` event payload: `{presence: PresenceEntry[]}`.
pub const SHAPE_PRESENCE_EVENT: &str = "@presence.event";
/// Name of the shape for the `system-presence` method result: `PresenceEntry[]`.
pub const SHAPE_SYSTEM_PRESENCE_RESULT: &str = "@system-presence.result";
/// Name of the shape for the `agent` event payload as 2026.9.6 sends it.
pub const SHAPE_AGENT_EVENT: &str = "@agent.event";

/// One failed validation: which shape, which frame, and every error the validator reported.
#[derive(Debug, Clone)]
pub struct SchemaViolation {
    /// The definition or shape name the instance was checked against.
    pub shape: String,
    /// What was being checked, e.g. `res payload of "health"`.
    pub context: String,
    /// `instance path: message` for each error.
    pub errors: Vec<String>,
    /// The whole frame (or instance) that failed, for the failure message.
    pub frame: Value,
}

impl fmt::Display for SchemaViolation {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let mut frame = self.frame.to_string();
        if frame.len() > 2000 {
            let mut cut = 2000;
            while !frame.is_char_boundary(cut) {
                cut -= 1;
            }
            frame.truncate(cut);
            frame.push_str("…(truncated)");
        }
        write!(
            f,
            "schema violation: {} does not match {}: {}; frame: {}",
            self.context,
            self.shape,
            self.errors.join("; "),
            frame
        )
    }
}

impl std::error::Error for SchemaViolation {}

/// Compiled access to the OpenClaw protocol schema. Use [`SchemaValidator::global`]; compiling the
/// 3 MB registry once per process is enough, and each shape is compiled once on first use.
pub struct SchemaValidator {
    registry: Registry<'static>,
    /// Names in the merged `definitions` object.
    definitions: HashSet<String>,
    /// Names of the clawgate shapes.
    shapes: HashSet<String>,
    compiled: Mutex<HashMap<String, Arc<Validator>>>,
}

impl fmt::Debug for SchemaValidator {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("SchemaValidator")
            .field("definitions", &self.definitions.len())
            .field("shapes", &self.shapes.len())
            .finish_non_exhaustive()
    }
}

impl SchemaValidator {
    /// The process-wide validator (built on first use).
    ///
    /// # Panics
    /// When the vendored schema cannot be parsed or registered, which is a bug in the testkit.
    pub fn global() -> &'static SchemaValidator {
        static GLOBAL: OnceLock<SchemaValidator> = OnceLock::new();
        GLOBAL.get_or_init(|| SchemaValidator::load().unwrap_or_else(|e| panic!("loading the OpenClaw schema: {e:#}")))
    }

    fn load() -> anyhow::Result<Self> {
        let mut doc: Value = serde_json::from_str(&rust_patterns(SCHEMA_JSON))?;
        let take = |doc: &mut Value, key: &str| -> anyhow::Result<Map<String, Value>> {
            match doc.get_mut(key).map(Value::take) {
                Some(Value::Object(map)) => Ok(map),
                _ => anyhow::bail!("schema has no object at {key:?}"),
            }
        };
        let mut merged = take(&mut doc, "definitions")?;
        for (name, schema) in take(&mut doc, "x-openclaw-2026.9.6-definitions")? {
            merged.insert(name, schema);
        }
        let shapes = clawgate_shapes(&merged)?;
        let definitions = merged.keys().cloned().collect();
        let shape_names = shapes.keys().cloned().collect();
        let root = json!({
            "$schema": "http://json-schema.org/draft-07/schema#",
            "$id": ROOT_URI,
            "definitions": Value::Object(merged),
            SHAPES_KEY: Value::Object(shapes),
        });
        let registry = Registry::new()
            .add(ROOT_URI, root)
            .and_then(|builder| builder.prepare())
            .map_err(|e| anyhow::anyhow!("registering the schema: {e}"))?;
        Ok(SchemaValidator { registry, definitions, shapes: shape_names, compiled: Mutex::new(HashMap::new()) })
    }

    /// Whether the merged definition set (or the clawgate shapes, for names starting with `@`)
    /// has `name`.
    pub fn has_shape(&self, name: &str) -> bool {
        if name.starts_with('@') { self.shapes.contains(name) } else { self.definitions.contains(name) }
    }

    fn compiled(&self, name: &str) -> anyhow::Result<Arc<Validator>> {
        let mut cache = self.compiled.lock().map_err(|_| anyhow::anyhow!("schema cache poisoned"))?;
        if let Some(v) = cache.get(name) {
            return Ok(v.clone());
        }
        anyhow::ensure!(self.has_shape(name), "no schema definition named {name:?}");
        let pointer = if name.starts_with('@') {
            format!("{ROOT_URI}#/{SHAPES_KEY}/{}", escape_pointer(name))
        } else {
            format!("{ROOT_URI}#/definitions/{}", escape_pointer(name))
        };
        let validator = jsonschema::options()
            .with_draft(Draft::Draft7)
            .with_registry(&self.registry)
            .build(&json!({ "$ref": pointer }))
            .map_err(|e| anyhow::anyhow!("compiling schema {name:?}: {e}"))?;
        let validator = Arc::new(validator);
        cache.insert(name.to_owned(), validator.clone());
        Ok(validator)
    }

    /// Validates `instance` against the definition or shape `name`.
    pub fn validate_shape(&self, name: &str, instance: &Value, context: &str) -> Result<(), SchemaViolation> {
        let validator = self.compiled(name).map_err(|e| SchemaViolation {
            shape: name.to_owned(),
            context: context.to_owned(),
            errors: vec![format!("{e:#}")],
            frame: instance.clone(),
        })?;
        let errors: Vec<String> =
            validator.iter_errors(instance).map(|e| format!("at {:?}: {}", e.instance_path().as_str(), e)).collect();
        if errors.is_empty() {
            Ok(())
        } else {
            Err(SchemaViolation {
                shape: name.to_owned(),
                context: context.to_owned(),
                errors,
                frame: instance.clone(),
            })
        }
    }

    /// The shape a successful result of `method` must have, when one is known.
    pub fn result_shape(&self, method: &str) -> Option<String> {
        let special = match method {
            "connect" => Some("HelloOk"),
            "health" => Some(SHAPE_HEALTH_RESULT),
            "system-presence" => Some(SHAPE_SYSTEM_PRESENCE_RESULT),
            "config.schema" => Some("ConfigSchemaResponse"),
            _ => None,
        };
        if let Some(name) = special {
            return Some(name.to_owned());
        }
        let name = format!("{}Result", pascal_case(method));
        self.definitions.contains(&name).then_some(name)
    }

    /// The shape the payload of event `event` must have, when one is known.
    pub fn event_shape(&self, event: &str) -> Option<String> {
        let special = match event {
            "connect.challenge" => Some(SHAPE_CONNECT_CHALLENGE),
            "health" => Some(SHAPE_HEALTH_SNAPSHOT),
            "presence" => Some(SHAPE_PRESENCE_EVENT),
            "agent" => Some(SHAPE_AGENT_EVENT),
            _ => None,
        };
        if let Some(name) = special {
            return Some(name.to_owned());
        }
        let name = format!("{}Event", pascal_case(event));
        self.definitions.contains(&name).then_some(name)
    }

    /// The shape of `error.details` for a given `details.code`, when one is known
    /// (`MISSING_SCOPE` → `MissingScopeErrorDetails`, …).
    pub fn error_details_shape(&self, details_code: &str) -> Option<String> {
        let name: String = details_code
            .split('_')
            .filter(|s| !s.is_empty())
            .map(|word| {
                let lower = word.to_ascii_lowercase();
                let mut chars = lower.chars();
                match chars.next() {
                    Some(first) => first.to_ascii_uppercase().to_string() + chars.as_str(),
                    None => String::new(),
                }
            })
            .collect::<String>()
            + "ErrorDetails";
        self.definitions.contains(&name).then_some(name)
    }

    /// Validates one frame the gateway sent. `request_method` is the method of the request whose
    /// id this frame answers (for `res` frames), when the caller knows it. Returns the names of the
    /// shapes that were checked.
    pub fn validate_server_frame(
        &self,
        frame: &Value,
        request_method: Option<&str>,
    ) -> Result<Vec<String>, SchemaViolation> {
        let mut checked = Vec::new();
        let mut check = |shape: &str, instance: &Value, context: String| {
            self.validate_shape(shape, instance, &context)
                .map_err(|mut v| {
                    // Report the whole frame, not only the payload, to make failures readable.
                    v.frame = frame.clone();
                    v
                })
                .map(|()| checked.push(shape.to_owned()))
        };
        match frame.get("type").and_then(Value::as_str) {
            Some("res") => {
                check("ResponseFrame", frame, "res frame".to_owned())?;
                let ok = frame.get("ok").and_then(Value::as_bool).unwrap_or(false);
                if ok {
                    if let (Some(method), Some(payload)) = (request_method, frame.get("payload"))
                        && let Some(shape) = self.result_shape(method)
                    {
                        check(&shape, payload, format!("res payload of {method:?}"))?;
                    }
                } else if let Some(error) = frame.get("error") {
                    check("ErrorShape", error, "res error".to_owned())?;
                    let details_code = error.get("details").and_then(|d| d.get("code")).and_then(Value::as_str);
                    if let (Some(details), Some(code)) = (error.get("details"), details_code)
                        && let Some(shape) = self.error_details_shape(code)
                    {
                        check(&shape, details, format!("error details {code}"))?;
                    }
                }
            }
            Some("event") => {
                check("EventFrame", frame, "event frame".to_owned())?;
                let name = frame.get("event").and_then(Value::as_str).unwrap_or("");
                if let Some(shape) = self.event_shape(name) {
                    let payload = frame.get("payload").unwrap_or(&Value::Null);
                    check(&shape, payload, format!("payload of event {name:?}"))?;
                }
            }
            // A server never sends requests in this protocol, but if it did the frame must at
            // least be a well-formed request.
            Some("req") => check("RequestFrame", frame, "req frame".to_owned())?,
            _ => {
                return Err(SchemaViolation {
                    shape: "GatewayFrame".to_owned(),
                    context: "frame".to_owned(),
                    errors: vec!["type must be one of \"req\", \"res\", \"event\"".to_owned()],
                    frame: frame.clone(),
                });
            }
        }
        Ok(checked)
    }
}

/// Tracks the requests a client sent on one connection so that the server's `res` frames can be
/// validated against the right result shape.
#[derive(Debug, Default, Clone)]
pub struct ConnectionValidator {
    methods: HashMap<String, String>,
}

impl ConnectionValidator {
    /// A tracker for a new connection.
    pub fn new() -> Self {
        Self::default()
    }

    /// Notes a frame the client sent (only `req` frames with an id matter).
    pub fn note_client_frame(&mut self, frame: &Value) {
        if frame.get("type").and_then(Value::as_str) != Some("req") {
            return;
        }
        if let (Some(id), Some(method)) =
            (frame.get("id").and_then(Value::as_str), frame.get("method").and_then(Value::as_str))
        {
            self.methods.insert(id.to_owned(), method.to_owned());
        }
    }

    /// The method of the request with this id, if the client sent one.
    pub fn method_for(&self, id: &str) -> Option<&str> {
        self.methods.get(id).map(String::as_str)
    }

    /// Validates a frame the server sent on this connection.
    pub fn check_server_frame(&self, frame: &Value) -> Result<Vec<String>, SchemaViolation> {
        let method = frame.get("id").and_then(Value::as_str).and_then(|id| self.method_for(id));
        SchemaValidator::global().validate_server_frame(frame, method)
    }
}

/// `logs.tail` → `LogsTail`, `system-presence` → `SystemPresence`, `device.pair.requested` →
/// `DevicePairRequested`.
fn pascal_case(name: &str) -> String {
    name.split(['.', '-', '_'])
        .filter(|s| !s.is_empty())
        .map(|part| {
            let mut chars = part.chars();
            match chars.next() {
                Some(first) => first.to_ascii_uppercase().to_string() + chars.as_str(),
                None => String::new(),
            }
        })
        .collect()
}

/// RFC 6901 escaping of one JSON pointer segment.
fn escape_pointer(segment: &str) -> String {
    segment.replace('~', "~0").replace('/', "~1")
}

/// Builds the shapes that have no usable upstream definition (see the module docs).
fn clawgate_shapes(defs: &Map<String, Value>) -> anyhow::Result<Map<String, Value>> {
    let def = |name: &str| -> anyhow::Result<&Value> {
        defs.get(name).ok_or_else(|| anyhow::anyhow!("schema lacks definition {name}"))
    };
    let health = def("HelloOk")?
        .pointer("/properties/snapshot/properties/health")
        .cloned()
        .ok_or_else(|| anyhow::anyhow!("HelloOk has no snapshot.health schema"))?;
    let mut health_result = health.clone();
    // The `health` method adds `modelRuntime` to the snapshot (contract §6, seen in every capture).
    if let Some(Value::Object(props)) = health_result.get_mut("properties") {
        props.insert("modelRuntime".to_owned(), json!({}));
    }
    let mut agent_event = def("AgentEvent")?.clone();
    if let Some(Value::Object(props)) = agent_event.get_mut("properties") {
        for key in ["sessionKey", "sessionId", "agentId", "lane"] {
            props.insert(key.to_owned(), json!({"type": "string", "minLength": 1}));
        }
    }
    let mut shapes = Map::new();
    shapes.insert(
        SHAPE_CONNECT_CHALLENGE.to_owned(),
        json!({
            "type": "object",
            "required": ["nonce", "ts"],
            "properties": {
                "nonce": {"type": "string", "minLength": 1},
                "ts": {"type": "integer", "minimum": 0},
                "capabilities": {"type": "array", "items": {"type": "string", "minLength": 1}}
            },
            "additionalProperties": false
        }),
    );
    shapes.insert(SHAPE_HEALTH_SNAPSHOT.to_owned(), health);
    shapes.insert(SHAPE_HEALTH_RESULT.to_owned(), health_result);
    shapes.insert(
        SHAPE_PRESENCE_EVENT.to_owned(),
        json!({
            "type": "object",
            "required": ["presence"],
            "properties": {
                "presence": {"type": "array", "items": {"$ref": "#/definitions/PresenceEntry"}}
            },
            "additionalProperties": false
        }),
    );
    shapes.insert(
        SHAPE_SYSTEM_PRESENCE_RESULT.to_owned(),
        json!({"type": "array", "items": {"$ref": "#/definitions/PresenceEntry"}}),
    );
    shapes.insert(SHAPE_AGENT_EVENT.to_owned(), agent_event);
    Ok(shapes)
}

/// Upstream's approval-id pattern (75 places, e.g. `ApprovalGetResult`) spells "any well-formed
/// UTF-16" with lone-surrogate classes (`[\\uD800-\\uDFFF]`) that no Rust regex engine
/// compiles; a Rust string is always well-formed, so `[\\s\\S]` means the same here.
fn rust_patterns(schema: &str) -> String {
    const JS_ONLY: &str = r#""^(?!\\.{1,2}$)(?:[^\\uD800-\\uDFFF]|[\\uD800-\\uDBFF][\\uDC00-\\uDFFF])+$""#;
    schema.replace(JS_ONLY, r#""^(?!\\.{1,2}$)[\\s\\S]+$""#)
}

#[cfg(test)]
mod tests {
    use super::*;

    const TRANSCRIPTS: &[(&str, &str)] = &[
        ("chat-abort-raw", include_str!("../data/transcripts/chat-abort-raw.jsonl")),
        ("cleanhome-call-unknown-method", include_str!("../data/transcripts/cleanhome-call-unknown-method.jsonl")),
        ("cleanhome-call-wrong-token", include_str!("../data/transcripts/cleanhome-call-wrong-token.jsonl")),
        ("cleanhome-tui-presence", include_str!("../data/transcripts/cleanhome-tui-presence.jsonl")),
        ("cli-gateway-probe", include_str!("../data/transcripts/cli-gateway-probe.jsonl")),
        ("cli-health-env", include_str!("../data/transcripts/cli-health-env.jsonl")),
        ("cli-logs", include_str!("../data/transcripts/cli-logs.jsonl")),
        ("err-after-connect", include_str!("../data/transcripts/err-after-connect.jsonl")),
        ("err-bad-connect-params", include_str!("../data/transcripts/err-bad-connect-params.jsonl")),
        ("err-connect-before-challenge", include_str!("../data/transcripts/err-connect-before-challenge.jsonl")),
        ("err-first-not-connect", include_str!("../data/transcripts/err-first-not-connect.jsonl")),
        ("err-invalid-json", include_str!("../data/transcripts/err-invalid-json.jsonl")),
        ("err-no-auth", include_str!("../data/transcripts/err-no-auth.jsonl")),
        ("err-no-frames-handshake-timeout", include_str!("../data/transcripts/err-no-frames-handshake-timeout.jsonl")),
        ("err-protocol-mismatch", include_str!("../data/transcripts/err-protocol-mismatch.jsonl")),
        ("err-wrong-token", include_str!("../data/transcripts/err-wrong-token.jsonl")),
    ];

    /// Every `gw->client` frame of a transcript, with the method of the request it answers.
    fn server_frames(text: &str) -> Vec<(Value, Option<String>)> {
        let mut trackers: HashMap<u64, ConnectionValidator> = HashMap::new();
        let mut out = Vec::new();
        for line in text.lines().filter(|l| !l.trim().is_empty()) {
            let record: Value = serde_json::from_str(line).expect("transcript line is JSON");
            if record["kind"] != "frame" {
                continue;
            }
            let Some(frame) = record.get("json") else {
                continue;
            };
            let conn = record["conn"].as_u64().unwrap_or(0);
            let tracker = trackers.entry(conn).or_default();
            if record["dir"] == "client->gw" {
                tracker.note_client_frame(frame);
            } else {
                let method =
                    frame.get("id").and_then(Value::as_str).and_then(|id| tracker.method_for(id)).map(str::to_owned);
                out.push((frame.clone(), method));
            }
        }
        out
    }

    fn transcript(name: &str) -> Vec<(Value, Option<String>)> {
        let (_, text) = TRANSCRIPTS.iter().find(|(n, _)| *n == name).expect("known transcript");
        server_frames(text)
    }

    #[test]
    fn every_captured_upstream_frame_passes_validation() {
        let validator = SchemaValidator::global();
        let mut shapes_seen: HashSet<String> = HashSet::new();
        let mut total = 0;
        for (name, text) in TRANSCRIPTS {
            for (frame, method) in server_frames(text) {
                let checked = validator
                    .validate_server_frame(&frame, method.as_deref())
                    .unwrap_or_else(|v| panic!("{name}: {v}"));
                shapes_seen.extend(checked);
                total += 1;
            }
        }
        assert!(total > 60, "only {total} frames in the sample transcripts");
        // The payload checks must actually have run, not only the outer frame checks.
        for shape in [
            "HelloOk",
            "ErrorShape",
            "TickEvent",
            "LogsTailResult",
            "MissingScopeErrorDetails",
            "ChatEvent",
            SHAPE_CONNECT_CHALLENGE,
            SHAPE_HEALTH_SNAPSHOT,
            SHAPE_HEALTH_RESULT,
            SHAPE_PRESENCE_EVENT,
            SHAPE_AGENT_EVENT,
        ] {
            assert!(shapes_seen.contains(shape), "no sample frame was checked against {shape}; seen: {shapes_seen:?}");
        }
    }

    fn hello_ok() -> (Value, Option<String>) {
        transcript("cli-gateway-probe")
            .into_iter()
            .find(|(_, m)| m.as_deref() == Some("connect"))
            .expect("probe transcript has a connect res")
    }

    #[test]
    fn hello_ok_without_protocol_is_rejected() {
        let (mut frame, method) = hello_ok();
        frame["payload"].as_object_mut().expect("payload object").remove("protocol");
        let err = SchemaValidator::global()
            .validate_server_frame(&frame, method.as_deref())
            .expect_err("a hello-ok without protocol must fail");
        assert_eq!(err.shape, "HelloOk");
        assert!(err.errors.iter().any(|e| e.contains("protocol")), "{err}");
    }

    #[test]
    fn hello_ok_with_a_wrong_type_tag_is_rejected() {
        let (mut frame, method) = hello_ok();
        frame["payload"]["type"] = json!("hello");
        assert!(SchemaValidator::global().validate_server_frame(&frame, method.as_deref()).is_err());
    }

    #[test]
    fn unknown_top_level_field_on_an_event_is_rejected() {
        let frame = json!({"type": "event", "event": "tick", "payload": {"ts": 1}, "seq": 1, "extra": true});
        let err = SchemaValidator::global().validate_server_frame(&frame, None).expect_err("frames are closed objects");
        assert_eq!(err.shape, "EventFrame");
    }

    #[test]
    fn tick_with_a_negative_ts_is_rejected() {
        let frame = json!({"type": "event", "event": "tick", "payload": {"ts": -1}, "seq": 1});
        let err = SchemaValidator::global().validate_server_frame(&frame, None).expect_err("ts must be >= 0");
        assert_eq!(err.shape, "TickEvent");
    }

    #[test]
    fn error_with_an_empty_message_is_rejected() {
        let frame =
            json!({"type": "res", "id": "r1", "ok": false, "error": {"code": "INVALID_REQUEST", "message": ""}});
        assert!(SchemaValidator::global().validate_server_frame(&frame, Some("health")).is_err());
    }

    #[test]
    fn missing_scope_details_without_required_scopes_are_rejected() {
        let frame = json!({"type": "res", "id": "r1", "ok": false, "error": {
            "code": "FORBIDDEN", "message": "missing scope: operator.read",
            "details": {"code": "MISSING_SCOPE", "missingScope": "operator.read"}}});
        let err = SchemaValidator::global()
            .validate_server_frame(&frame, Some("status"))
            .expect_err("requiredScopes is required");
        assert_eq!(err.shape, "MissingScopeErrorDetails");
    }

    #[test]
    fn logs_tail_result_with_numeric_lines_is_rejected() {
        let (mut frame, method) = transcript("cli-logs")
            .into_iter()
            .find(|(_, m)| m.as_deref() == Some("logs.tail"))
            .expect("logs transcript has a logs.tail res");
        frame["payload"]["lines"] = json!([1, 2]);
        let err =
            SchemaValidator::global().validate_server_frame(&frame, method.as_deref()).expect_err("lines are strings");
        assert_eq!(err.shape, "LogsTailResult");
    }

    #[test]
    fn challenge_without_nonce_is_rejected() {
        let (mut frame, _) = transcript("err-wrong-token").into_iter().next().expect("first frame is the challenge");
        assert_eq!(frame["event"], "connect.challenge");
        frame["payload"].as_object_mut().expect("payload object").remove("nonce");
        let err = SchemaValidator::global().validate_server_frame(&frame, None).expect_err("nonce is required");
        assert_eq!(err.shape, SHAPE_CONNECT_CHALLENGE);
    }

    #[test]
    fn shape_names_follow_the_upstream_naming() {
        let v = SchemaValidator::global();
        assert_eq!(v.result_shape("logs.tail").as_deref(), Some("LogsTailResult"));
        assert_eq!(v.result_shape("channels.status").as_deref(), Some("ChannelsStatusResult"));
        assert_eq!(v.result_shape("device.token.rotate").as_deref(), Some("DeviceTokenRotateResult"));
        assert_eq!(v.result_shape("config.schema").as_deref(), Some("ConfigSchemaResponse"));
        assert_eq!(v.result_shape("no.such.method"), None);
        assert_eq!(v.event_shape("tick").as_deref(), Some("TickEvent"));
        assert_eq!(v.event_shape("shutdown").as_deref(), Some("ShutdownEvent"));
        assert_eq!(v.event_shape("device.pair.requested").as_deref(), Some("DevicePairRequestedEvent"));
        assert_eq!(v.error_details_shape("MISSING_SCOPE").as_deref(), Some("MissingScopeErrorDetails"));
        assert_eq!(v.error_details_shape("AUTH_TOKEN_MISMATCH"), None);
    }

    #[test]
    fn definitions_prefer_the_2026_9_6_set() {
        // `RequestFrame` gained `expectedProfileId` in 2026.9.6; the 2026.9.1 shape refuses it.
        let frame = json!({"type": "req", "id": "1", "method": "health", "expectedProfileId": "p"});
        SchemaValidator::global()
            .validate_shape("RequestFrame", &frame, "req")
            .expect("2026.9.6 RequestFrame accepts expectedProfileId");
        // Names only in the 2026.9.1 set are still available.
        assert!(SchemaValidator::global().has_shape("DevicePairResolvedEvent"));
    }
}
