//! The HTTP API on the gateway port (contract §8): the OpenAI-compatible `/v1/models`,
//! `/v1/chat/completions` and `/v1/responses` (each behind its config flag), `/tools/invoke`,
//! and the webhooks under `hooks.path`.
//!
//! Handlers check authorization first, bound the body, and turn requests into agent runs through
//! `clawgate_core::agent`; they never touch storage or providers beyond that. Each wire format's
//! errors are built in `error.rs` only. Flags and hook settings are read from the config in force
//! on every request, so a hot reload applies without restarting the listener.

pub(crate) mod auth;
mod error;
mod hooks;
mod openai;
mod prompt;
mod responses;
mod run;
mod tools;

use std::convert::Infallible;
use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::sync::Arc;

use parking_lot::Mutex;
use std::time::Duration;

use axum::Router;
use axum::body::Body;
use axum::extract::{ConnectInfo, Request};
use axum::http::{HeaderMap, HeaderValue, Method, StatusCode, header};
use axum::middleware;
use axum::response::{IntoResponse, Response};
use axum::routing::any;
use futures_util::StreamExt;
use serde_json::Value;
use tokio::sync::{OwnedSemaphorePermit, Semaphore, mpsc};

use clawgate_core::agent::AgentService;
use clawgate_core::auth::FailedAuthLimiter;
use clawgate_core::config_service::ConfigService;
use clawgate_core::gateway::Store;
use clawgate_core::handshake::AuthService;
use clawgate_core::heartbeat_runner::HeartbeatService;

use crate::AppState;
use axum::extract::FromRef;

use run::{LiveRun, Step};

/// State of the HTTP API handlers.
#[derive(Debug, Clone)]
pub(crate) struct Api {
    /// Agent runs: chat completions, responses, hook runs, `/tools/invoke`.
    agents: AgentService,
    /// Runs read back (`previous_response_id`) and the sessions hook wake events land in.
    store: Store,
    /// Hook wake events: queued in the session, `now` starts a heartbeat turn.
    heartbeat: HeartbeatService,
    /// Endpoint switches and hook settings, read per request (hot-reloaded).
    config: ConfigService,
    /// Bearer checks (the gateway secret and its failed-auth limiter).
    auth: AuthService,
    /// Failed hook tokens per address. Separate from the gateway's limiter: the hook token is a
    /// different secret with its own budget (20 failures a minute, as upstream).
    hook_failures: Arc<Mutex<FailedAuthLimiter>>,
    /// Bytes of request bodies held at once, across every route of the API.
    bodies: Arc<Semaphore>,
}

/// The global budget for request bodies in flight (read, parsed, or feeding a run that is still
/// answering). Closes the class "memory grows with the number of concurrent large bodies": each
/// body holds permits for its bytes from before it is read until its handler (or its event
/// stream) ends, and a body that does not fit is refused with 503 + `Retry-After` in the route's
/// error format instead of being buffered. Per request the handlers keep a small multiple of the
/// body (the bytes, then the parsed value, then the prompt taken out of it), so this budget times
/// that multiple bounds the API's share of memory. Measured multiple: about 3.5 while the model is
/// called (the turn's messages, the request kept for retries, the JSON sent); 40 MiB admits two
/// bodies of the 20 MB maximum at once and keeps the gateway under 250 MB resident.
pub(crate) const BODY_BUDGET_BYTES: usize = 40 * 1024 * 1024;
/// Granularity of budget reservations for bodies without a `Content-Length`.
const BODY_BUDGET_STEP: usize = 256 * 1024;
/// What a refused client is told to wait before retrying.
pub(crate) const BODY_BUDGET_RETRY: Duration = Duration::from_secs(2);

impl Api {
    /// The API's state, with an empty hook limiter and a full body budget.
    pub(crate) fn new(
        agents: AgentService,
        store: Store,
        heartbeat: HeartbeatService,
        config: ConfigService,
        auth: AuthService,
    ) -> Self {
        Self {
            agents,
            store,
            heartbeat,
            config,
            auth,
            hook_failures: Arc::default(),
            bodies: Arc::new(Semaphore::new(BODY_BUDGET_BYTES)),
        }
    }
}

/// Add the HTTP API to the gateway's router. Call after the router's fallback is set: the hooks
/// are matched in a layer in front of everything (their path is configurable and hot-reloaded),
/// so they must wrap the fallback too.
pub(crate) fn mount(router: Router<AppState>, state: &AppState) -> Router<AppState> {
    let api = Api::from_ref(state);
    let routes = Router::new()
        .route("/v1/models", any(openai::list_models))
        .route("/v1/models/{*id}", any(openai::get_model))
        .route("/v1/chat/completions", any(openai::chat_completions))
        .route("/v1/responses", any(responses::create))
        .route("/tools/invoke", any(tools::invoke))
        .layer(middleware::map_response(|r: Response| async move { security_headers(r) }))
        .with_state(api.clone());
    router.merge(routes).layer(middleware::from_fn_with_state(api, hooks::intercept))
}

/// The baseline headers the real gateway puts on every API answer.
fn security_headers(mut response: Response) -> Response {
    let h = response.headers_mut();
    h.insert(header::X_CONTENT_TYPE_OPTIONS, HeaderValue::from_static("nosniff"));
    h.insert(header::REFERRER_POLICY, HeaderValue::from_static("no-referrer"));
    response
}

/// The peer address (unspecified when the server was not started with connect info, e.g. in
/// router unit tests).
pub(crate) fn client_ip(req: &Request) -> IpAddr {
    req.extensions()
        .get::<ConnectInfo<SocketAddr>>()
        .map(|ConnectInfo(addr)| addr.ip())
        .unwrap_or(IpAddr::V4(Ipv4Addr::UNSPECIFIED))
}

/// The checks every bearer-protected endpoint starts with, in the real gateway's order: the
/// endpoint is switched on (else the plain 404 any unknown path gets), the method fits (405), the
/// bearer is right (401, or 429 while locked out). Returns the request's parts and body.
async fn gate(
    api: &Api,
    req: Request,
    enabled: bool,
    method: Method,
) -> Result<(axum::http::request::Parts, Body), Response> {
    if !enabled {
        return Err(error::plain(StatusCode::NOT_FOUND, "Not Found"));
    }
    if req.method() != method {
        return Err(error::method_not_allowed(if method == Method::GET { "GET" } else { "POST" }));
    }
    let ip = client_ip(&req);
    let (parts, body) = req.into_parts();
    if let Err(denied) = auth::check(&api.auth, &parts.headers, ip).await {
        return Err(error::OpenAiError::from(denied).into_response());
    }
    Ok((parts, body))
}

/// Seconds since the epoch, for `created` fields.
fn now_secs() -> i64 {
    clawgate_core::time::now_ms() / 1000
}

/// Why a request body could not be used.
#[derive(Debug, Clone, PartialEq)]
enum BodyError {
    /// Over the endpoint's limit (413).
    TooLarge,
    /// Not received in time (408).
    Timeout,
    /// Not JSON, or the connection broke (400), with a message for the client.
    Invalid(String),
    /// The global body budget is spent (503 with `Retry-After`).
    Busy,
}

/// Budget permits of one request body. Keep it alive as long as anything derived from the body
/// (its parsed value, the prompt built from it) is held; dropping it returns the bytes.
#[derive(Debug, Default)]
#[must_use = "the body's budget is released when this is dropped"]
pub(crate) struct BodyPermit {
    held: Vec<OwnedSemaphorePermit>,
    bytes: usize,
}

impl BodyPermit {
    /// Reserve `n` more bytes of the budget, without waiting.
    fn grow(&mut self, budget: &Arc<Semaphore>, n: usize) -> Result<(), BodyError> {
        if n == 0 {
            return Ok(());
        }
        let n32 = u32::try_from(n).map_err(|_| BodyError::TooLarge)?;
        let permit = budget.clone().try_acquire_many_owned(n32).map_err(|_| BodyError::Busy)?;
        self.held.push(permit);
        self.bytes += n;
        Ok(())
    }
}

/// Read a JSON body of at most `limit` bytes within `within`, inside the global body budget:
/// a declared length is reserved before anything is read (and sizes the buffer exactly), a
/// chunked body reserves as it grows. An empty body reads as `{}`. The raw bytes are dropped
/// once parsed; the permit covers the parsed value and what the caller builds from it.
async fn read_json(
    budget: &Arc<Semaphore>,
    headers: &HeaderMap,
    body: Body,
    limit: usize,
    within: Duration,
) -> Result<(Value, BodyPermit), BodyError> {
    let declared = headers.get(header::CONTENT_LENGTH).and_then(|v| v.to_str().ok()?.parse::<u64>().ok());
    if declared.is_some_and(|n| n > limit as u64) {
        return Err(BodyError::TooLarge);
    }
    let mut permit = BodyPermit::default();
    let declared = declared.map(|n| n as usize);
    if let Some(n) = declared {
        permit.grow(budget, n)?;
    }
    let read = async {
        let mut stream = body.into_data_stream();
        let mut buf: Vec<u8> = Vec::with_capacity(declared.unwrap_or(0));
        while let Some(chunk) = stream.next().await {
            let chunk = chunk.map_err(|e| BodyError::Invalid(format!("cannot read the request body: {e}")))?;
            let len = buf.len() + chunk.len();
            if len > limit {
                return Err(BodyError::TooLarge);
            }
            if len > permit.bytes {
                let want = (len - permit.bytes).next_multiple_of(BODY_BUDGET_STEP).min(limit - permit.bytes);
                permit.grow(budget, want.max(len - permit.bytes))?;
            }
            buf.extend_from_slice(&chunk);
        }
        Ok(buf)
    };
    let bytes = tokio::time::timeout(within, read).await.map_err(|_| BodyError::Timeout)??;
    if bytes.iter().all(u8::is_ascii_whitespace) {
        return Ok((Value::Object(Default::default()), permit));
    }
    let value = serde_json::from_slice(&bytes).map_err(|e| BodyError::Invalid(format!("Invalid JSON body: {e}")))?;
    Ok((value, permit))
}

/// How often an idle event stream gets a comment line, so proxies keep it open and a client
/// that went away is noticed by the failed write.
const SSE_KEEPALIVE: Duration = Duration::from_secs(10);
/// Frames buffered between a stream's producer and the socket.
const SSE_BUFFER: usize = 64;

/// The writing end of a `text/event-stream` response.
#[derive(Debug)]
struct SseSink {
    tx: mpsc::Sender<String>,
}

impl SseSink {
    /// `data: <json>`. `false` once the client is gone.
    async fn data(&self, value: &Value) -> bool {
        self.tx.send(format!("data: {value}\n\n")).await.is_ok()
    }

    /// `event: <name>` + `data: <json>`.
    async fn event(&self, name: &str, value: &Value) -> bool {
        self.tx.send(format!("event: {name}\ndata: {value}\n\n")).await.is_ok()
    }

    /// `data: [DONE]`.
    async fn done(&self) -> bool {
        self.tx.send("data: [DONE]\n\n".to_owned()).await.is_ok()
    }

    /// The run's next step, or `None` once the client has gone away (the caller then returns,
    /// dropping the run, which aborts it). Idle periods are filled with keep-alive comments.
    async fn follow(&self, run: &mut LiveRun) -> Option<Result<Step, error::OpenAiError>> {
        let mut keepalive = tokio::time::interval_at(tokio::time::Instant::now() + SSE_KEEPALIVE, SSE_KEEPALIVE);
        loop {
            tokio::select! {
                () = self.tx.closed() => return None,
                _ = keepalive.tick() => {
                    if self.tx.send(": keepalive\n\n".to_owned()).await.is_err() {
                        return None;
                    }
                }
                step = run.next() => return Some(step),
            }
        }
    }
}

/// A `text/event-stream` response whose frames `produce` writes. The producer runs as its own
/// task; when the client disconnects, hyper drops the body, the sink reports it closed, and the
/// producer's return drops whatever it held (a [`LiveRun`] aborts its run).
fn sse<F, Fut>(produce: F) -> Response
where
    F: FnOnce(SseSink) -> Fut,
    Fut: Future<Output = ()> + Send + 'static,
{
    let (tx, rx) = mpsc::channel::<String>(SSE_BUFFER);
    tokio::spawn(produce(SseSink { tx }));
    let stream = futures_util::stream::unfold(rx, |mut rx| async move {
        rx.recv().await.map(|frame| (Ok::<_, Infallible>(frame), rx))
    });
    let mut response = Response::new(Body::from_stream(stream));
    let h = response.headers_mut();
    h.insert(header::CONTENT_TYPE, HeaderValue::from_static("text/event-stream; charset=utf-8"));
    h.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-cache"));
    h.insert("x-accel-buffering", HeaderValue::from_static("no"));
    response
}

#[cfg(test)]
mod tests {
    use super::*;

    fn len_headers(n: usize) -> HeaderMap {
        let mut h = HeaderMap::new();
        h.insert(header::CONTENT_LENGTH, HeaderValue::from_str(&n.to_string()).unwrap());
        h
    }

    async fn read(budget: &Arc<Semaphore>, h: &HeaderMap, body: &str, limit: usize) -> Result<Value, BodyError> {
        let wait = Duration::from_secs(5);
        read_json(budget, h, Body::from(body.to_owned()), limit, wait).await.map(|(v, _)| v)
    }

    #[tokio::test]
    async fn bodies_are_bounded_and_empty_reads_as_an_object() {
        let b = Arc::new(Semaphore::new(1 << 20));
        assert_eq!(read(&b, &HeaderMap::new(), "", 10).await, Ok(serde_json::json!({})));
        assert_eq!(read(&b, &HeaderMap::new(), "{\"a\":1}", 10).await, Ok(serde_json::json!({"a": 1})));
        // Declared too large: refused before reading.
        assert_eq!(read(&b, &len_headers(11), "x", 10).await, Err(BodyError::TooLarge));
        // Undeclared (chunked) and too large: refused while reading.
        assert_eq!(read(&b, &HeaderMap::new(), &"x".repeat(11), 10).await, Err(BodyError::TooLarge));
        assert!(matches!(read(&b, &HeaderMap::new(), "{", 10).await, Err(BodyError::Invalid(_))));
        // Every permit came back.
        assert_eq!(b.available_permits(), 1 << 20);
    }

    #[tokio::test]
    async fn bodies_in_flight_share_one_budget() {
        let b = Arc::new(Semaphore::new(100));
        let wait = Duration::from_secs(5);
        let (_, held) = read_json(&b, &len_headers(60), Body::from(format!("\"{}\"", "x".repeat(58))), 100, wait)
            .await
            .expect("fits the budget");
        // Declared: refused before reading while the first body is held.
        assert_eq!(read(&b, &len_headers(60), &format!("\"{}\"", "x".repeat(58)), 100).await, Err(BodyError::Busy));
        // Chunked: refused once it outgrows what is left.
        assert_eq!(read(&b, &HeaderMap::new(), &format!("\"{}\"", "x".repeat(58)), 100).await, Err(BodyError::Busy));
        drop(held);
        assert_eq!(b.available_permits(), 100);
        assert!(read(&b, &len_headers(60), &format!("\"{}\"", "x".repeat(58)), 100).await.is_ok());
    }
}
