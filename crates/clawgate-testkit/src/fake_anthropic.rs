//! A fake Anthropic Messages server (`/v1/messages`, `/v1/models`) on `127.0.0.1:0`.
//!
//! Streams the real event sequence: `message_start`, `content_block_start` (text or `tool_use`),
//! `ping`, `content_block_delta` (`text_delta` / `input_json_delta`), `content_block_stop`,
//! `message_delta` (stop reason and output usage), `message_stop`; or an `error` event mid-way;
//! or an HTTP failure (429 with `retry-after`, 529 overloaded, 400 prompt too long). Like the real
//! API it answers 400 when `anthropic-version` is missing, and 401 on a wrong `x-api-key` when a key
//! is required. Requests are recorded like [`FakeOpenAi`](crate::fake_openai::FakeOpenAi)'s, and
//! the same bounds apply: hanging answers end when the client leaves or the fake is dropped.

use std::collections::VecDeque;
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};
use std::time::Duration;

use axum::Router;
use axum::extract::Request;
use axum::http::Method;
use axum::response::Response;
use serde_json::{Value, json};

use crate::fake_openai::{
    FakeServer, Frame, Pace, Shared, fragments, hang, json_response, paced_body, record, sse_response,
};
pub use crate::fake_openai::{HELLO_PARTS, RecordedRequest};

/// What the fake does for one `/v1/messages` request.
#[derive(Debug, Clone, PartialEq)]
pub struct Turn {
    kind: TurnKind,
    pace: Pace,
}

#[derive(Debug, Clone, PartialEq)]
enum TurnKind {
    Answer(Answer),
    Status { status: u16, headers: Vec<(String, String)>, body: Value },
    Raw(Vec<String>),
    Hang,
}

#[derive(Debug, Clone, PartialEq)]
struct Answer {
    text: Vec<String>,
    tool_calls: Vec<(String, String)>,
    stop_reason: String,
    input_tokens: u64,
    output_tokens: u64,
    /// After this many content events, send an `error` event and end the body.
    error_after: Option<(usize, Value)>,
    /// After this many content events, stop writing and hang.
    hang_after: Option<usize>,
}

fn error_body(kind: &str, message: &str) -> Value {
    json!({"type": "error", "error": {"type": kind, "message": message}})
}

impl Turn {
    fn answer(answer: Answer) -> Self {
        Self { kind: TurnKind::Answer(answer), pace: Pace::default() }
    }

    /// One text block streamed as `parts`, stop reason `end_turn`.
    pub fn text<S: Into<String>>(parts: impl IntoIterator<Item = S>) -> Self {
        let text: Vec<String> = parts.into_iter().map(Into::into).collect();
        let output_tokens = text.len() as u64 + 1;
        Self::answer(Answer {
            text,
            tool_calls: Vec::new(),
            stop_reason: "end_turn".into(),
            input_tokens: 42,
            output_tokens,
            error_after: None,
            hang_after: None,
        })
    }

    /// [`HELLO_PARTS`].
    pub fn hello() -> Self {
        Self::text(HELLO_PARTS)
    }

    /// One `tool_use` block whose input streams as `input_json_delta` fragments; stop reason
    /// `tool_use`.
    pub fn tool_call(name: impl Into<String>, input_json: impl Into<String>) -> Self {
        Self::tool_calls([(name.into(), input_json.into())])
    }

    /// Several `tool_use` blocks.
    pub fn tool_calls<N: Into<String>, A: Into<String>>(calls: impl IntoIterator<Item = (N, A)>) -> Self {
        let tool_calls: Vec<(String, String)> = calls.into_iter().map(|(n, a)| (n.into(), a.into())).collect();
        let output_tokens = tool_calls.len() as u64 * 8;
        Self::answer(Answer {
            text: Vec::new(),
            tool_calls,
            stop_reason: "tool_use".into(),
            input_tokens: 42,
            output_tokens,
            error_after: None,
            hang_after: None,
        })
    }

    /// Text first, then tool calls, in one answer (what Claude usually does).
    pub fn with_text<S: Into<String>>(mut self, parts: impl IntoIterator<Item = S>) -> Self {
        if let TurnKind::Answer(answer) = &mut self.kind {
            answer.text = parts.into_iter().map(Into::into).collect();
        }
        self
    }

    /// HTTP 429 `rate_limit_error` with `retry-after: <seconds>`.
    pub fn rate_limited(retry_after: impl Into<String>) -> Self {
        Self::status(429, error_body("rate_limit_error", "Number of request tokens has exceeded your rate limit."))
            .header("retry-after", retry_after)
    }

    /// HTTP 529 `overloaded_error`.
    pub fn overloaded() -> Self {
        Self::status(529, error_body("overloaded_error", "Overloaded"))
    }

    /// HTTP 400 "prompt is too long".
    pub fn context_overflow() -> Self {
        Self::status(400, error_body("invalid_request_error", "prompt is too long: 215000 tokens > 200000 maximum"))
    }

    /// Any status with a JSON body.
    pub fn status(status: u16, body: Value) -> Self {
        Self { kind: TurnKind::Status { status, headers: Vec::new(), body }, pace: Pace::default() }
    }

    /// 200 with SSE headers, then silence until the client leaves or the fake is dropped.
    pub fn hang() -> Self {
        Self { kind: TurnKind::Hang, pace: Pace::default() }
    }

    /// These strings verbatim as body chunks of an SSE response.
    pub fn raw<S: Into<String>>(chunks: impl IntoIterator<Item = S>) -> Self {
        Self { kind: TurnKind::Raw(chunks.into_iter().map(Into::into).collect()), pace: Pace::default() }
    }

    /// Adds a response header (for status turns).
    pub fn header(mut self, name: impl Into<String>, value: impl Into<String>) -> Self {
        if let TurnKind::Status { headers, .. } = &mut self.kind {
            headers.push((name.into(), value.into()));
        }
        self
    }

    /// Waits `delay` before every event after the first.
    pub fn chunk_delay(mut self, delay: Duration) -> Self {
        self.pace.between = delay;
        self
    }

    /// Waits `delay` before the first event.
    pub fn first_chunk_delay(mut self, delay: Duration) -> Self {
        self.pace.first = delay;
        self
    }

    /// Token counts for `message_start` (input) and `message_delta` (output).
    pub fn usage(mut self, input_tokens: u64, output_tokens: u64) -> Self {
        if let TurnKind::Answer(answer) = &mut self.kind {
            answer.input_tokens = input_tokens;
            answer.output_tokens = output_tokens;
        }
        self
    }

    /// Ends with this `stop_reason`.
    pub fn stop_reason(mut self, reason: impl Into<String>) -> Self {
        if let TurnKind::Answer(answer) = &mut self.kind {
            answer.stop_reason = reason.into();
        }
        self
    }

    /// After `events` content events, sends an `error` event of `kind` (e.g. `overloaded_error`)
    /// and closes the body.
    pub fn error_after(mut self, events: usize, kind: &str, message: &str) -> Self {
        if let TurnKind::Answer(answer) = &mut self.kind {
            answer.error_after = Some((events, error_body(kind, message)));
        }
        self
    }

    /// After `events` content events, goes silent and hangs.
    pub fn hang_after(mut self, events: usize) -> Self {
        if let TurnKind::Answer(answer) = &mut self.kind {
            answer.hang_after = Some(events);
        }
        self
    }
}

/// Turns consumed one per request, then a repeated default (or HTTP 500 when none).
#[derive(Debug, Clone, PartialEq)]
pub struct Script {
    turns: VecDeque<Turn>,
    fallback: Option<Turn>,
    models: Vec<String>,
    api_key: Option<String>,
}

impl Default for Script {
    /// Always [`Turn::hello`], model list `["claude-fake"]`, any or no key accepted.
    fn default() -> Self {
        Self::always(Turn::hello())
    }
}

impl Script {
    /// No turns and no default.
    pub fn new() -> Self {
        Self { turns: VecDeque::new(), fallback: None, models: vec!["claude-fake".into()], api_key: None }
    }

    /// The same turn for every request.
    pub fn always(turn: Turn) -> Self {
        Self::new().otherwise(turn)
    }

    /// Appends a turn, used once.
    pub fn turn(mut self, turn: Turn) -> Self {
        self.turns.push_back(turn);
        self
    }

    /// The turn used once the scripted ones are spent.
    pub fn otherwise(mut self, turn: Turn) -> Self {
        self.fallback = Some(turn);
        self
    }

    /// Model ids for `GET /v1/models`.
    pub fn models<S: Into<String>>(mut self, ids: impl IntoIterator<Item = S>) -> Self {
        self.models = ids.into_iter().map(Into::into).collect();
        self
    }

    /// Answer 401 `authentication_error` unless `x-api-key: <key>` is sent.
    pub fn require_api_key(mut self, key: impl Into<String>) -> Self {
        self.api_key = Some(key.into());
        self
    }

    fn next_turn(&mut self) -> Option<Turn> {
        self.turns.pop_front().or_else(|| self.fallback.clone())
    }
}

struct State {
    shared: Arc<Shared>,
    script: Mutex<Script>,
}

/// A running fake Anthropic server. Dropping it shuts it down.
#[derive(Debug)]
pub struct FakeAnthropic {
    server: FakeServer,
}

impl FakeAnthropic {
    /// Starts the fake on `127.0.0.1:0`.
    pub async fn start(script: Script) -> anyhow::Result<FakeAnthropic> {
        let server = FakeServer::start(|shared| {
            let state = Arc::new(State { shared, script: Mutex::new(script) });
            Router::new().fallback(move |request: Request| {
                let state = Arc::clone(&state);
                async move { handle(&state, request).await }
            })
        })
        .await?;
        Ok(FakeAnthropic { server })
    }

    /// The API root to configure as `baseUrl` (`http://127.0.0.1:PORT`; clients add `/v1/messages`).
    pub fn base_url(&self) -> String {
        format!("http://{}", self.server.addr())
    }

    /// Every request received so far, in order.
    pub fn requests(&self) -> Vec<RecordedRequest> {
        self.server.requests()
    }

    /// Only the `POST /v1/messages` requests.
    pub fn message_requests(&self) -> Vec<RecordedRequest> {
        self.requests().into_iter().filter(|r| r.path == "/v1/messages").collect()
    }

    /// Waits until at least `count` requests have arrived.
    pub async fn wait_for_requests(&self, count: usize, wait: Duration) -> anyhow::Result<Vec<RecordedRequest>> {
        self.server.wait_for_requests(count, wait).await
    }

    /// How many streamed answers were cut off before their last event.
    pub fn aborted_responses(&self) -> usize {
        self.server.aborted_responses()
    }

    /// Waits until at least `count` streamed answers were cut off by the client.
    pub async fn wait_for_aborted(&self, count: usize, wait: Duration) -> anyhow::Result<()> {
        self.server.wait_for_aborted(count, wait).await
    }
}

fn lock(script: &Mutex<Script>) -> MutexGuard<'_, Script> {
    script.lock().unwrap_or_else(PoisonError::into_inner)
}

async fn handle(state: &State, request: Request) -> Response {
    let method = request.method().clone();
    let recorded = match record(&state.shared, request).await {
        Ok(recorded) => recorded,
        Err(response) => return response,
    };
    let (required_key, models) = {
        let script = lock(&state.script);
        (script.api_key.clone(), script.models.clone())
    };
    if let Some(key) = required_key
        && recorded.header("x-api-key") != Some(key.as_str())
    {
        return json_response(401, &[], &error_body("authentication_error", "invalid x-api-key"));
    }
    if recorded.header("anthropic-version").is_none() {
        return json_response(400, &[], &error_body("invalid_request_error", "anthropic-version: header is required"));
    }
    match (method, recorded.path.as_str()) {
        (Method::GET, "/v1/models") => {
            let data: Vec<Value> = models
                .iter()
                .map(|id| json!({"type": "model", "id": id, "display_name": id, "created_at": "2025-01-01T00:00:00Z"}))
                .collect();
            let (first, last) = (models.first(), models.last());
            json_response(200, &[], &json!({"data": data, "has_more": false, "first_id": first, "last_id": last}))
        }
        (Method::POST, "/v1/messages") => {
            let turn = lock(&state.script).next_turn();
            match turn {
                Some(turn) => respond(state, &recorded.body, turn).await,
                None => json_response(500, &[], &error_body("api_error", "fake script exhausted")),
            }
        }
        (_, path) => json_response(404, &[], &error_body("not_found_error", &format!("Not found: {path}"))),
    }
}

async fn respond(state: &State, body: &Value, turn: Turn) -> Response {
    let stream = body.get("stream").and_then(Value::as_bool).unwrap_or(false);
    let model = body.get("model").and_then(Value::as_str).unwrap_or("claude-fake").to_owned();
    let id = format!("msg_fake_{}", state.shared.next_id());
    match turn.kind {
        TurnKind::Status { status, headers, body } => json_response(status, &headers, &body),
        TurnKind::Hang if stream => sse_response(paced_body(vec![Frame::Hang], turn.pace, Arc::clone(&state.shared))),
        TurnKind::Hang => hang(&state.shared).await,
        TurnKind::Raw(chunks) => {
            let frames = chunks.into_iter().map(Frame::Text).collect();
            sse_response(paced_body(frames, turn.pace, Arc::clone(&state.shared)))
        }
        TurnKind::Answer(answer) if stream => {
            sse_response(paced_body(answer_frames(&answer, &id, &model), turn.pace, Arc::clone(&state.shared)))
        }
        TurnKind::Answer(answer) => {
            if !turn.pace.first.is_zero() {
                tokio::time::sleep(turn.pace.first).await;
            }
            json_response(200, &[], &whole_message(&answer, &id, &model))
        }
    }
}

fn event(data: &Value) -> Frame {
    let kind = data.get("type").and_then(Value::as_str).unwrap_or("message");
    Frame::Text(format!("event: {kind}\ndata: {data}\n\n"))
}

fn tool_id(index: usize, id: &str) -> String {
    format!("toolu_fake_{index}_{id}")
}

fn answer_frames(answer: &Answer, id: &str, model: &str) -> Vec<Frame> {
    let start = json!({"type": "message_start", "message": {
        "id": id, "type": "message", "role": "assistant", "model": model, "content": [],
        "stop_reason": null, "stop_sequence": null,
        "usage": {"input_tokens": answer.input_tokens, "output_tokens": 1}}});
    let mut frames = vec![event(&start)];

    // Content events, each of which may be followed by the scripted error or hang.
    let mut content = Vec::new();
    let mut block = 0;
    if !answer.text.is_empty() {
        content.push(event(&json!({"type": "content_block_start", "index": block,
                                   "content_block": {"type": "text", "text": ""}})));
        content.push(event(&json!({"type": "ping"})));
        for part in &answer.text {
            content.push(event(&json!({"type": "content_block_delta", "index": block,
                                       "delta": {"type": "text_delta", "text": part}})));
        }
        content.push(event(&json!({"type": "content_block_stop", "index": block})));
        block += 1;
    }
    for (n, (name, input)) in answer.tool_calls.iter().enumerate() {
        content.push(event(&json!({"type": "content_block_start", "index": block, "content_block":
                                   {"type": "tool_use", "id": tool_id(n, id), "name": name, "input": {}}})));
        content.push(event(&json!({"type": "content_block_delta", "index": block,
                                   "delta": {"type": "input_json_delta", "partial_json": ""}})));
        for fragment in fragments(input, 3) {
            content.push(event(&json!({"type": "content_block_delta", "index": block,
                                       "delta": {"type": "input_json_delta", "partial_json": fragment}})));
        }
        content.push(event(&json!({"type": "content_block_stop", "index": block})));
        block += 1;
    }
    for (n, frame) in content.into_iter().enumerate() {
        if let Some((after, error)) = &answer.error_after
            && n == *after
        {
            frames.push(event(error));
            return frames;
        }
        if answer.hang_after == Some(n) {
            frames.push(Frame::Hang);
            return frames;
        }
        frames.push(frame);
    }
    if let Some((_, error)) = &answer.error_after {
        frames.push(event(error));
        return frames;
    }
    if answer.hang_after.is_some() {
        frames.push(Frame::Hang);
        return frames;
    }
    frames.push(event(&json!({"type": "message_delta",
                              "delta": {"stop_reason": answer.stop_reason, "stop_sequence": null},
                              "usage": {"output_tokens": answer.output_tokens}})));
    frames.push(event(&json!({"type": "message_stop"})));
    frames
}

fn whole_message(answer: &Answer, id: &str, model: &str) -> Value {
    let mut content = Vec::new();
    if !answer.text.is_empty() {
        content.push(json!({"type": "text", "text": answer.text.concat()}));
    }
    for (n, (name, input)) in answer.tool_calls.iter().enumerate() {
        let input: Value = serde_json::from_str(input).unwrap_or_else(|_| json!({}));
        content.push(json!({"type": "tool_use", "id": tool_id(n, id), "name": name, "input": input}));
    }
    json!({
        "id": id, "type": "message", "role": "assistant", "model": model, "content": content,
        "stop_reason": answer.stop_reason, "stop_sequence": null,
        "usage": {"input_tokens": answer.input_tokens, "output_tokens": answer.output_tokens},
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn kinds(frames: &[Frame]) -> Vec<String> {
        frames
            .iter()
            .map(|f| match f {
                Frame::Text(t) => t.lines().next().unwrap_or_default().trim_start_matches("event: ").to_owned(),
                Frame::Hang => "HANG".into(),
            })
            .collect()
    }

    #[test]
    fn text_then_tool_answer_has_the_real_event_sequence() {
        let Turn { kind: TurnKind::Answer(answer), .. } = Turn::tool_call("ls", "{}").with_text(["Hi"]) else {
            panic!("answer turn")
        };
        assert_eq!(
            kinds(&answer_frames(&answer, "msg_1", "claude")),
            [
                "message_start",
                "content_block_start",
                "ping",
                "content_block_delta",
                "content_block_stop",
                "content_block_start",
                "content_block_delta",
                "content_block_delta",
                "content_block_delta",
                "content_block_stop",
                "message_delta",
                "message_stop",
            ]
        );
    }

    #[test]
    fn error_after_replaces_the_rest_with_an_error_event() {
        let Turn { kind: TurnKind::Answer(answer), .. } =
            Turn::text(["a", "b"]).error_after(3, "overloaded_error", "Overloaded")
        else {
            panic!("answer turn")
        };
        let kinds = kinds(&answer_frames(&answer, "m", "c"));
        assert_eq!(kinds.last().map(String::as_str), Some("error"));
        assert_eq!(kinds.len(), 5);
    }
}
