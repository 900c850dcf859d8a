//! A fake OpenAI-compatible model server (`/v1/chat/completions`, `/v1/models`) on `127.0.0.1:0`.
//!
//! It speaks the real wire format: `chat.completion.chunk` objects as SSE `data:` lines ending in
//! `data: [DONE]`, tool-call deltas keyed by `index` (id and name first, arguments in fragments),
//! a usage chunk with empty `choices` only when the request asked for it with
//! `stream_options.include_usage` (as OpenAI and Ollama do), and a plain `chat.completion` JSON
//! document when the request did not ask to stream. Answers come from a [`Script`] of [`Turn`]s
//! consumed one per chat request, so a test decides exactly what "the model" does: stream text,
//! call tools, trickle slowly, fail with 429/500, break off with an error object, or hang.
//!
//! Every request is recorded ([`FakeOpenAi::requests`]) with its headers and JSON body, so tests
//! can assert what clawgate sent. The fake is bounded: a turn ends after its last chunk, and even
//! a hanging turn ends when the client goes away or the fake is dropped.
//!
//! The default script is what upstream's recorded fake model did (see
//! `contracts/openclaw-live.md` §5): "Hello", " from", " the", " fake", " model", then
//! `finish_reason: "stop"`, a usage chunk and `[DONE]`.

use std::collections::{BTreeMap, VecDeque};
use std::convert::Infallible;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};
use std::time::Duration;

use anyhow::Context;
use axum::Router;
use axum::body::Body;
use axum::extract::Request;
use axum::http::{HeaderMap, HeaderName, HeaderValue, Method, StatusCode, header};
use axum::response::{IntoResponse, Response};
use serde_json::{Value, json};
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;

/// What upstream's recorded fake model streamed.
pub const HELLO_PARTS: [&str; 5] = ["Hello", " from", " the", " fake", " model"];

/// Request bodies above this are refused rather than buffered (the real gateway's biggest request
/// in the recordings was 57 KB; the hostile tests send 25 MiB prompts through it).
const MAX_REQUEST_BODY: usize = 64 * 1024 * 1024;

/// One HTTP request a fake received.
#[derive(Debug, Clone, PartialEq)]
pub struct RecordedRequest {
    /// `GET`, `POST`, …
    pub method: String,
    /// The path, without query.
    pub path: String,
    /// Headers with lower-case names (repeated headers joined with `, `).
    pub headers: BTreeMap<String, String>,
    /// The body as JSON, or `Value::Null` when it was empty or not JSON.
    pub body: Value,
}

impl RecordedRequest {
    /// A header's value, by case-insensitive name.
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers.get(&name.to_ascii_lowercase()).map(String::as_str)
    }
}

/// State shared by the fakes' servers and their handles.
#[derive(Debug, Default)]
pub(crate) struct Shared {
    requests: Mutex<Vec<RecordedRequest>>,
    /// Streamed responses whose body was dropped before its last chunk (the client went away,
    /// or the fake shut down while hanging).
    aborted: AtomicUsize,
    /// Cancelled when the fake is dropped: every pending or hanging body ends.
    pub(crate) shutdown: CancellationToken,
    next_id: AtomicU64,
}

impl Shared {
    fn requests(&self) -> MutexGuard<'_, Vec<RecordedRequest>> {
        self.requests.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// A fresh id suffix for `chatcmpl-…`, `msg_…`, `call_…`.
    pub(crate) fn next_id(&self) -> u64 {
        self.next_id.fetch_add(1, Ordering::Relaxed) + 1
    }
}

/// A running fake server: the listener task plus its shared state. Dropping it stops accepting,
/// and ends every body still streaming.
#[derive(Debug)]
pub(crate) struct FakeServer {
    addr: SocketAddr,
    pub(crate) shared: Arc<Shared>,
    task: JoinHandle<()>,
}

impl FakeServer {
    /// Binds `127.0.0.1:0` and serves `router`, which gets the shared state to record into.
    pub(crate) async fn start(router: impl FnOnce(Arc<Shared>) -> Router) -> anyhow::Result<Self> {
        let shared = Arc::new(Shared::default());
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.context("binding the fake model server")?;
        let addr = listener.local_addr()?;
        let app = router(Arc::clone(&shared));
        let task = tokio::spawn(async move {
            if let Err(e) = axum::serve(listener, app).await {
                tracing::warn!(error = %e, "fake model server stopped");
            }
        });
        Ok(Self { addr, shared, task })
    }

    pub(crate) fn addr(&self) -> SocketAddr {
        self.addr
    }

    pub(crate) fn requests(&self) -> Vec<RecordedRequest> {
        self.shared.requests().clone()
    }

    pub(crate) fn aborted_responses(&self) -> usize {
        self.shared.aborted.load(Ordering::SeqCst)
    }

    pub(crate) async fn wait_for_requests(&self, count: usize, wait: Duration) -> anyhow::Result<Vec<RecordedRequest>> {
        let deadline = tokio::time::Instant::now() + wait;
        loop {
            let requests = self.requests();
            if requests.len() >= count {
                return Ok(requests);
            }
            if tokio::time::Instant::now() >= deadline {
                anyhow::bail!("expected {count} requests within {wait:?}, got {}", requests.len());
            }
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
    }

    pub(crate) async fn wait_for_aborted(&self, count: usize, wait: Duration) -> anyhow::Result<()> {
        let deadline = tokio::time::Instant::now() + wait;
        while self.aborted_responses() < count {
            if tokio::time::Instant::now() >= deadline {
                anyhow::bail!("expected {count} aborted responses within {wait:?}, got {}", self.aborted_responses());
            }
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
        Ok(())
    }
}

impl Drop for FakeServer {
    fn drop(&mut self) {
        self.shared.shutdown.cancel();
        self.task.abort();
    }
}

/// Reads and records a request; returns it for the handler to act on.
pub(crate) async fn record(shared: &Shared, request: Request) -> Result<RecordedRequest, Response> {
    let (parts, body) = request.into_parts();
    let bytes = axum::body::to_bytes(body, MAX_REQUEST_BODY)
        .await
        .map_err(|e| (StatusCode::PAYLOAD_TOO_LARGE, e.to_string()).into_response())?;
    let mut headers = BTreeMap::<String, String>::new();
    for (name, value) in &parts.headers {
        let value = String::from_utf8_lossy(value.as_bytes()).into_owned();
        headers
            .entry(name.as_str().to_owned())
            .and_modify(|existing| {
                existing.push_str(", ");
                existing.push_str(&value);
            })
            .or_insert(value);
    }
    let recorded = RecordedRequest {
        method: parts.method.to_string(),
        path: parts.uri.path().to_owned(),
        headers,
        body: serde_json::from_slice(&bytes).unwrap_or(Value::Null),
    };
    shared.requests().push(recorded.clone());
    Ok(recorded)
}

/// One piece of a scripted response body.
#[derive(Debug, Clone, PartialEq)]
pub(crate) enum Frame {
    /// Bytes to write as one chunk.
    Text(String),
    /// Stop writing and keep the connection open until the client leaves or the fake is dropped.
    Hang,
}

/// When to write each frame.
#[derive(Debug, Clone, Copy, Default, PartialEq)]
pub(crate) struct Pace {
    /// Before the first frame.
    pub(crate) first: Duration,
    /// Before every later frame.
    pub(crate) between: Duration,
}

/// Counts a response as aborted if its body is dropped before the last frame was written.
struct AbortGuard {
    shared: Arc<Shared>,
    completed: bool,
}

impl AbortGuard {
    fn complete(&mut self) {
        self.completed = true;
    }
}

impl Drop for AbortGuard {
    fn drop(&mut self) {
        if !self.completed {
            self.shared.aborted.fetch_add(1, Ordering::SeqCst);
        }
    }
}

/// A streamed body that writes `frames` at `pace`, and ends early when the fake shuts down.
pub(crate) fn paced_body(frames: Vec<Frame>, pace: Pace, shared: Arc<Shared>) -> Body {
    struct State {
        frames: VecDeque<Frame>,
        first: bool,
        pace: Pace,
        shutdown: CancellationToken,
        guard: AbortGuard,
    }
    let state = State {
        frames: frames.into(),
        first: true,
        pace,
        shutdown: shared.shutdown.clone(),
        guard: AbortGuard { shared, completed: false },
    };
    let stream = futures_util::stream::unfold(state, |mut state| async move {
        let Some(frame) = state.frames.pop_front() else {
            state.guard.complete();
            return None;
        };
        let wait = if std::mem::take(&mut state.first) { state.pace.first } else { state.pace.between };
        if !wait.is_zero() {
            tokio::select! {
                () = state.shutdown.cancelled() => return None,
                () = tokio::time::sleep(wait) => {}
            }
        }
        match frame {
            Frame::Text(text) => Some((Ok::<_, Infallible>(text), state)),
            Frame::Hang => {
                state.shutdown.cancelled().await;
                None
            }
        }
    });
    Body::from_stream(stream)
}

/// An SSE response with the headers real servers send.
pub(crate) fn sse_response(body: Body) -> Response {
    let mut response = Response::new(body);
    let headers = response.headers_mut();
    headers.insert(header::CONTENT_TYPE, HeaderValue::from_static("text/event-stream; charset=utf-8"));
    headers.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-cache"));
    response
}

/// A JSON response with a status and extra headers.
pub(crate) fn json_response(status: u16, headers: &[(String, String)], body: &Value) -> Response {
    let status = StatusCode::from_u16(status).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
    let mut response = (status, axum::Json(body.clone())).into_response();
    add_headers(response.headers_mut(), headers);
    response
}

fn add_headers(map: &mut HeaderMap, headers: &[(String, String)]) {
    for (name, value) in headers {
        if let (Ok(name), Ok(value)) = (HeaderName::from_bytes(name.as_bytes()), HeaderValue::from_str(value)) {
            map.insert(name, value);
        }
    }
}

/// A response that never comes: the handler waits until the fake shuts down (or the client's
/// disconnect makes hyper drop it).
pub(crate) async fn hang(shared: &Shared) -> Response {
    shared.shutdown.cancelled().await;
    StatusCode::SERVICE_UNAVAILABLE.into_response()
}

/// Splits `text` into about `pieces` fragments on character boundaries (tool arguments arrive
/// in fragments on the real APIs).
pub(crate) fn fragments(text: &str, pieces: usize) -> Vec<String> {
    let chars: Vec<char> = text.chars().collect();
    if chars.is_empty() {
        return Vec::new();
    }
    let size = chars.len().div_ceil(pieces.max(1));
    chars.chunks(size).map(|c| c.iter().collect()).collect()
}

/// What the fake does for one chat request.
#[derive(Debug, Clone, PartialEq)]
pub struct Turn {
    kind: TurnKind,
    pace: Pace,
}

#[derive(Debug, Clone, PartialEq)]
enum TurnKind {
    Answer(Answer),
    Status {
        status: u16,
        headers: Vec<(String, String)>,
        body: Value,
    },
    Raw(Vec<String>),
    Hang,
    /// Answer with `prefix` + the text of the last user message, in two deltas.
    Echo(String),
}

#[derive(Debug, Clone, PartialEq)]
struct Answer {
    text: Vec<String>,
    tool_calls: Vec<(String, String)>,
    finish_reason: String,
    /// (prompt_tokens, completion_tokens); sent only if the request asked for usage.
    usage: Option<(u64, u64)>,
    /// After this many content chunks, send an `{"error":{…}}` object and end the body.
    error_after: Option<(usize, Value)>,
    /// After this many content chunks, stop writing and hang.
    hang_after: Option<usize>,
    done_marker: bool,
}

impl Answer {
    fn text(text: Vec<String>) -> Self {
        let completion = text.len() as u64 + 1;
        Answer {
            text,
            tool_calls: Vec::new(),
            finish_reason: "stop".into(),
            usage: Some((42, completion)),
            error_after: None,
            hang_after: None,
            done_marker: true,
        }
    }
}

impl Turn {
    fn answer(answer: Answer) -> Self {
        Self { kind: TurnKind::Answer(answer), pace: Pace::default() }
    }

    /// Streams `parts` as content deltas, then `finish_reason: "stop"`, usage and `[DONE]`.
    pub fn text<S: Into<String>>(parts: impl IntoIterator<Item = S>) -> Self {
        Self::answer(Answer::text(parts.into_iter().map(Into::into).collect()))
    }

    /// Streams `prefix` followed by the last user message of the request (its text content), so
    /// each reply names the message it answers — what tests of many concurrent chats need.
    pub fn echo(prefix: impl Into<String>) -> Self {
        Self { kind: TurnKind::Echo(prefix.into()), pace: Pace::default() }
    }

    /// The default answer: [`HELLO_PARTS`].
    pub fn hello() -> Self {
        Self::text(HELLO_PARTS)
    }

    /// Calls one tool: id and name in the first delta, `args_json` in three fragments, then
    /// `finish_reason: "tool_calls"`.
    pub fn tool_call(name: impl Into<String>, args_json: impl Into<String>) -> Self {
        Self::tool_calls([(name.into(), args_json.into())])
    }

    /// Calls several tools (indices 0, 1, …), each streamed like [`Turn::tool_call`].
    pub fn tool_calls<N: Into<String>, A: Into<String>>(calls: impl IntoIterator<Item = (N, A)>) -> Self {
        let tool_calls: Vec<(String, String)> = calls.into_iter().map(|(n, a)| (n.into(), a.into())).collect();
        let completion = tool_calls.len() as u64 * 8;
        Self::answer(Answer {
            text: Vec::new(),
            tool_calls,
            finish_reason: "tool_calls".into(),
            usage: Some((42, completion)),
            error_after: None,
            hang_after: None,
            done_marker: true,
        })
    }

    /// HTTP 429 with `Retry-After: <retry_after>` (seconds or an HTTP date) and OpenAI's body.
    pub fn rate_limited(retry_after: impl Into<String>) -> Self {
        Self::status(429, rate_limit_body()).header("retry-after", retry_after)
    }

    /// HTTP 429 with `retry-after-ms: <ms>` (what OpenAI adds for sub-second waits).
    pub fn rate_limited_ms(ms: u64) -> Self {
        Self::status(429, rate_limit_body()).header("retry-after-ms", ms.to_string())
    }

    /// HTTP 500 with an OpenAI `server_error` body.
    pub fn server_error() -> Self {
        Self::status(
            500,
            json!({"error": {"message": "The server had an error while processing your request.",
                              "type": "server_error", "param": null, "code": null}}),
        )
    }

    /// HTTP 400 `context_length_exceeded`, worded as OpenAI words it.
    pub fn context_overflow() -> Self {
        Self::status(
            400,
            json!({"error": {"message": "This model's maximum context length is 128000 tokens. However, your messages \
                                          resulted in 131072 tokens. Please reduce the length of the messages.",
                              "type": "invalid_request_error", "param": "messages", "code": "context_length_exceeded"}}),
        )
    }

    /// Any status with a JSON body.
    pub fn status(status: u16, body: Value) -> Self {
        Self { kind: TurnKind::Status { status, headers: Vec::new(), body }, pace: Pace::default() }
    }

    /// Answers 200 with SSE headers and then never writes a byte, until the client disconnects or
    /// the fake is dropped.
    pub fn hang() -> Self {
        Self { kind: TurnKind::Hang, pace: Pace::default() }
    }

    /// Writes these strings verbatim as body chunks of an SSE response (for malformed streams).
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

    /// Waits `delay` before every chunk after the first: a slow trickle.
    pub fn chunk_delay(mut self, delay: Duration) -> Self {
        self.pace.between = delay;
        self
    }

    /// Waits `delay` before the first chunk (response headers still go out at once).
    pub fn first_chunk_delay(mut self, delay: Duration) -> Self {
        self.pace.first = delay;
        self
    }

    /// Reports these token counts in the usage chunk.
    pub fn usage(mut self, prompt_tokens: u64, completion_tokens: u64) -> Self {
        if let TurnKind::Answer(answer) = &mut self.kind {
            answer.usage = Some((prompt_tokens, completion_tokens));
        }
        self
    }

    /// Sends no usage chunk even when asked.
    pub fn without_usage(mut self) -> Self {
        if let TurnKind::Answer(answer) = &mut self.kind {
            answer.usage = None;
        }
        self
    }

    /// Ends with this `finish_reason`.
    pub fn finish_reason(mut self, reason: impl Into<String>) -> Self {
        if let TurnKind::Answer(answer) = &mut self.kind {
            answer.finish_reason = reason.into();
        }
        self
    }

    /// After `chunks` content chunks, sends `{"error":{"message":…,"type":"server_error"}}` and
    /// closes the body, as OpenAI does when a generation fails mid-way.
    pub fn error_after(mut self, chunks: usize, message: impl Into<String>) -> Self {
        if let TurnKind::Answer(answer) = &mut self.kind {
            let error =
                json!({"error": {"message": message.into(), "type": "server_error", "param": null, "code": null}});
            answer.error_after = Some((chunks, error));
        }
        self
    }

    /// After `chunks` content chunks, goes silent and hangs (the stream-idle case).
    pub fn hang_after(mut self, chunks: usize) -> Self {
        if let TurnKind::Answer(answer) = &mut self.kind {
            answer.hang_after = Some(chunks);
        }
        self
    }

    /// Ends the body after `finish_reason` (and usage) without `data: [DONE]`, as some servers do.
    pub fn without_done(mut self) -> Self {
        if let TurnKind::Answer(answer) = &mut self.kind {
            answer.done_marker = false;
        }
        self
    }
}

fn rate_limit_body() -> Value {
    json!({"error": {"message": "Rate limit reached for requests. Please try again later.",
                      "type": "requests", "param": null, "code": "rate_limit_exceeded"}})
}

/// The fake's behaviour: turns consumed one per chat request, then a repeated default (or, with no
/// default, HTTP 500 "script exhausted").
#[derive(Debug, Clone, PartialEq)]
pub struct Script {
    turns: VecDeque<Turn>,
    fallback: Option<Turn>,
    models: Vec<String>,
    api_key: Option<String>,
}

impl Default for Script {
    /// Always [`Turn::hello`], model list `["fake-model"]`, any or no API key accepted.
    fn default() -> Self {
        Self::always(Turn::hello())
    }
}

impl Script {
    /// No turns and no default: add them with [`Script::turn`] / [`Script::otherwise`].
    pub fn new() -> Self {
        Self { turns: VecDeque::new(), fallback: None, models: vec!["fake-model".into()], api_key: None }
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

    /// Answer 401 `invalid_api_key` unless `Authorization: Bearer <key>` is sent.
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

/// A running fake OpenAI-compatible server. Dropping it shuts it down.
#[derive(Debug)]
pub struct FakeOpenAi {
    server: FakeServer,
}

impl FakeOpenAi {
    /// Starts the fake on `127.0.0.1:0`.
    pub async fn start(script: Script) -> anyhow::Result<FakeOpenAi> {
        let server = FakeServer::start(|shared| {
            let state = Arc::new(State { shared, script: Mutex::new(script) });
            Router::new().fallback(move |request: Request| {
                let state = Arc::clone(&state);
                async move { handle(&state, request).await }
            })
        })
        .await?;
        Ok(FakeOpenAi { server })
    }

    /// The base URL to configure as the provider's `baseUrl` (`http://127.0.0.1:PORT/v1`).
    pub fn base_url(&self) -> String {
        format!("http://{}/v1", self.server.addr())
    }

    /// Every request received so far, in order (chat completions, model lists, anything else).
    pub fn requests(&self) -> Vec<RecordedRequest> {
        self.server.requests()
    }

    /// Only the `POST /v1/chat/completions` requests.
    pub fn chat_requests(&self) -> Vec<RecordedRequest> {
        self.requests().into_iter().filter(|r| r.path == "/v1/chat/completions").collect()
    }

    /// Waits until at least `count` requests have arrived.
    pub async fn wait_for_requests(&self, count: usize, wait: Duration) -> anyhow::Result<Vec<RecordedRequest>> {
        self.server.wait_for_requests(count, wait).await
    }

    /// How many streamed answers were cut off because the client went away (or the fake was
    /// dropped) before the last chunk.
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

fn openai_error(status: u16, message: &str, kind: &str, code: Option<&str>) -> Response {
    json_response(status, &[], &json!({"error": {"message": message, "type": kind, "param": null, "code": code}}))
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
        && recorded.header("authorization") != Some(format!("Bearer {key}").as_str())
    {
        // Like OpenAI, never echo what was sent.
        return openai_error(401, "Incorrect API key provided.", "invalid_request_error", Some("invalid_api_key"));
    }
    match (method, recorded.path.as_str()) {
        (Method::GET, "/v1/models") => {
            let data: Vec<Value> = models
                .iter()
                .map(
                    |id| json!({"id": id, "object": "model", "created": 1_700_000_000, "owned_by": "clawgate-testkit"}),
                )
                .collect();
            json_response(200, &[], &json!({"object": "list", "data": data}))
        }
        (Method::POST, "/v1/chat/completions") => {
            let turn = lock(&state.script).next_turn();
            match turn {
                Some(turn) => respond(state, &recorded.body, turn).await,
                None => openai_error(500, "fake script exhausted", "server_error", None),
            }
        }
        (_, path) => openai_error(404, &format!("Unknown request URL: {path}"), "invalid_request_error", None),
    }
}

async fn respond(state: &State, body: &Value, turn: Turn) -> Response {
    let stream = body.get("stream").and_then(Value::as_bool).unwrap_or(false);
    let include_usage =
        body.get("stream_options").and_then(|o| o.get("include_usage")).and_then(Value::as_bool).unwrap_or(false);
    let model = body.get("model").and_then(Value::as_str).unwrap_or("fake-model").to_owned();
    let id = format!("chatcmpl-fake-{}", state.shared.next_id());
    let kind = match turn.kind {
        TurnKind::Echo(prefix) => {
            let last = last_user_text(body);
            TurnKind::Answer(Answer::text(vec![prefix, last]))
        }
        other => other,
    };
    match kind {
        TurnKind::Echo(_) => openai_error(500, "echo turn was not expanded", "server_error", None),
        TurnKind::Status { status, headers, body } => json_response(status, &headers, &body),
        TurnKind::Hang if stream => sse_response(paced_body(vec![Frame::Hang], turn.pace, Arc::clone(&state.shared))),
        TurnKind::Hang => hang(&state.shared).await,
        TurnKind::Raw(chunks) => {
            let frames = chunks.into_iter().map(Frame::Text).collect();
            sse_response(paced_body(frames, turn.pace, Arc::clone(&state.shared)))
        }
        TurnKind::Answer(answer) if stream => {
            let frames = answer_frames(&answer, &id, &model, include_usage);
            sse_response(paced_body(frames, turn.pace, Arc::clone(&state.shared)))
        }
        TurnKind::Answer(answer) => {
            if !turn.pace.first.is_zero() {
                tokio::time::sleep(turn.pace.first).await;
            }
            json_response(200, &[], &whole_answer(&answer, &id, &model))
        }
    }
}

/// The text of the last `user` message of a chat completion request.
fn last_user_text(body: &Value) -> String {
    let messages = body.get("messages").and_then(Value::as_array).map(Vec::as_slice).unwrap_or_default();
    let Some(last) = messages.iter().rev().find(|m| m.get("role").and_then(Value::as_str) == Some("user")) else {
        return String::new();
    };
    match last.get("content") {
        Some(Value::String(s)) => s.clone(),
        Some(Value::Array(parts)) => {
            parts.iter().filter_map(|p| p.get("text").and_then(Value::as_str)).collect::<Vec<_>>().join("")
        }
        _ => String::new(),
    }
}

fn chunk(id: &str, model: &str, delta: Value, finish_reason: Option<&str>) -> Frame {
    let chunk = json!({
        "id": id, "object": "chat.completion.chunk", "created": 1_700_000_000, "model": model,
        "system_fingerprint": "fp_fake",
        "choices": [{"index": 0, "delta": delta, "logprobs": null, "finish_reason": finish_reason}],
    });
    Frame::Text(format!("data: {chunk}\n\n"))
}

fn answer_frames(answer: &Answer, id: &str, model: &str, include_usage: bool) -> Vec<Frame> {
    let mut content = Vec::new();
    for part in &answer.text {
        content.push(chunk(id, model, json!({"content": part}), None));
    }
    for (index, (name, args)) in answer.tool_calls.iter().enumerate() {
        let call_id = format!("call_fake_{index}_{id}");
        content.push(chunk(
            id,
            model,
            json!({"tool_calls": [{"index": index, "id": call_id, "type": "function",
                                   "function": {"name": name, "arguments": ""}}]}),
            None,
        ));
        for fragment in fragments(args, 3) {
            content.push(chunk(
                id,
                model,
                json!({"tool_calls": [{"index": index, "function": {"arguments": fragment}}]}),
                None,
            ));
        }
    }

    let mut frames = vec![chunk(id, model, json!({"role": "assistant", "content": ""}), None)];
    for (n, frame) in content.into_iter().enumerate() {
        if let Some((after, error)) = &answer.error_after
            && n == *after
        {
            frames.push(Frame::Text(format!("data: {error}\n\n")));
            return frames;
        }
        if answer.hang_after == Some(n) {
            frames.push(Frame::Hang);
            return frames;
        }
        frames.push(frame);
    }
    if let Some((_, error)) = &answer.error_after {
        frames.push(Frame::Text(format!("data: {error}\n\n")));
        return frames;
    }
    if answer.hang_after.is_some() {
        frames.push(Frame::Hang);
        return frames;
    }
    frames.push(chunk(id, model, json!({}), Some(&answer.finish_reason)));
    if let (true, Some((prompt, completion))) = (include_usage, answer.usage) {
        let usage = json!({
            "id": id, "object": "chat.completion.chunk", "created": 1_700_000_000, "model": model, "choices": [],
            "usage": {"prompt_tokens": prompt, "completion_tokens": completion, "total_tokens": prompt + completion},
        });
        frames.push(Frame::Text(format!("data: {usage}\n\n")));
    }
    if answer.done_marker {
        frames.push(Frame::Text("data: [DONE]\n\n".into()));
    }
    frames
}

fn whole_answer(answer: &Answer, id: &str, model: &str) -> Value {
    let mut message = json!({"role": "assistant", "content": answer.text.concat()});
    if !answer.tool_calls.is_empty() {
        let calls: Vec<Value> = answer
            .tool_calls
            .iter()
            .enumerate()
            .map(|(index, (name, args))| {
                json!({"id": format!("call_fake_{index}_{id}"), "type": "function",
                       "function": {"name": name, "arguments": args}})
            })
            .collect();
        message["tool_calls"] = Value::Array(calls);
    }
    let (prompt, completion) = answer.usage.unwrap_or((0, 0));
    json!({
        "id": id, "object": "chat.completion", "created": 1_700_000_000, "model": model,
        "choices": [{"index": 0, "message": message, "logprobs": null, "finish_reason": answer.finish_reason}],
        "usage": {"prompt_tokens": prompt, "completion_tokens": completion, "total_tokens": prompt + completion},
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn texts(frames: &[Frame]) -> Vec<String> {
        frames
            .iter()
            .map(|f| match f {
                Frame::Text(t) => t.clone(),
                Frame::Hang => "HANG".into(),
            })
            .collect()
    }

    #[test]
    fn hello_turn_streams_like_upstreams_fake() {
        let Turn { kind: TurnKind::Answer(answer), .. } = Turn::hello() else { panic!("answer turn") };
        let frames = texts(&answer_frames(&answer, "chatcmpl-1", "fake-model", true));
        // role, five parts, finish, usage, [DONE]
        assert_eq!(frames.len(), 9);
        assert!(frames[1].contains("\"content\":\"Hello\""));
        assert!(frames[6].contains("\"finish_reason\":\"stop\""));
        assert!(frames[7].contains("\"choices\":[]") && frames[7].contains("\"usage\""));
        assert_eq!(frames[8], "data: [DONE]\n\n");
        let without_usage = answer_frames(&answer, "chatcmpl-1", "fake-model", false);
        assert_eq!(without_usage.len(), 8, "usage only when the request asks for it");
    }

    #[test]
    fn error_and_hang_cut_the_answer_short() {
        let Turn { kind: TurnKind::Answer(answer), .. } = Turn::text(["a", "b", "c"]).error_after(2, "boom") else {
            panic!("answer turn")
        };
        let frames = texts(&answer_frames(&answer, "x", "m", true));
        assert_eq!(frames.len(), 4);
        assert!(frames[3].contains("boom"));
        let Turn { kind: TurnKind::Answer(answer), .. } = Turn::text(["a", "b"]).hang_after(1) else {
            panic!("answer turn")
        };
        assert_eq!(texts(&answer_frames(&answer, "x", "m", true)).last().map(String::as_str), Some("HANG"));
    }

    #[test]
    fn non_streaming_answer_is_one_chat_completion() {
        let Turn { kind: TurnKind::Answer(answer), .. } = Turn::tool_call("ls", "{}").usage(7, 3) else {
            panic!("answer turn")
        };
        let body = whole_answer(&answer, "chatcmpl-9", "m");
        assert_eq!(body["object"], "chat.completion");
        assert_eq!(body["choices"][0]["finish_reason"], "tool_calls");
        assert_eq!(body["choices"][0]["message"]["tool_calls"][0]["function"]["name"], "ls");
        assert_eq!(body["usage"]["total_tokens"], 10);
    }

    #[test]
    fn fragments_cover_the_whole_text() {
        assert_eq!(fragments("{\"path\":\"é.txt\"}", 3).concat(), "{\"path\":\"é.txt\"}");
        assert_eq!(fragments("{}", 3), ["{", "}"]);
        assert!(fragments("", 3).is_empty());
    }
}
