//! A reference relay: the backend of a web app ("Compose", a document editor) that gives its
//! logged-in users chat with a clawgate agent without exposing the gateway.
//!
//! - **One gateway connection** ([`clawgate_client::Client`]) multiplexes every user; it
//!   reconnects by itself when the gateway restarts.
//! - **Its own users**: a users file with argon2 hashes, cookie sessions, and a per-document ACL
//!   file ([`accounts`]). The browser never sees a gateway credential.
//! - **Session keys** `compose:doc:<doc>:<user>` (a private chat per user and document) and
//!   `compose:doc:<doc>:shared` (the document's collaborators together); names are restricted
//!   so a user cannot make a key that is not theirs.
//! - **Context** from the page (title, selection) goes with each message as the gateway's
//!   `context`, which the model reads as untrusted data.
//! - **Streaming** over server-sent events: reply text, a typing indicator, the gateway's
//!   availability; history on (re)open; a per-user message rate limit; "assistant unavailable"
//!   (503) while the gateway is down.

pub mod accounts;

use std::collections::HashMap;
use std::convert::Infallible;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::{Duration, Instant};

use axum::extract::{Path, State};
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::sse::{Event, KeepAlive, Sse};
use axum::response::{Html, IntoResponse, Response};
use axum::routing::{get, post};
use axum::{Json, Router};
use clawgate_client::{ChatSendParams, ChatState, Client, ClientOptions, ConnectionState, SessionEvent};
use parking_lot::Mutex;
use serde::Deserialize;
use serde_json::{Value, json};
use tokio::sync::{Semaphore, mpsc, watch};

pub use accounts::{Accounts, hash_password};

/// The page.
const PAGE: &str = include_str!("page.html");
/// Name of the login cookie.
const COOKIE: &str = "relay_session";
/// Logins kept at most (each a few dozen bytes); past it a new login waits for one to expire.
const MAX_LOGINS: usize = 10_000;
/// How long a login lasts.
const LOGIN_TTL: Duration = Duration::from_secs(12 * 3600);
/// Password checks run at once at most (argon2 costs CPU and 19 MiB each).
const MAX_PASSWORD_CHECKS: usize = 2;
/// Open event streams at most.
const MAX_STREAMS: usize = 512;
/// Characters of a message / title / selection accepted.
const MAX_MESSAGE: usize = 8_000;
const MAX_TITLE: usize = 200;
const MAX_SELECTION: usize = 4_000;

/// Retries of the first connect (the client reconnects by itself after that).
const FIRST_CONNECT: clawgate_backoff::Backoff =
    clawgate_backoff::Backoff::new(Duration::from_millis(200), Duration::from_secs(5));

/// How the relay reaches the gateway.
#[derive(Clone)]
pub struct GatewayLink {
    client: watch::Receiver<Option<Client>>,
}

impl GatewayLink {
    /// Connect in the background (retrying until the gateway answers); the client then keeps
    /// itself connected.
    pub fn spawn(options: ClientOptions) -> Self {
        let (tx, rx) = watch::channel(None);
        tokio::spawn(async move {
            for attempt in 0u32.. {
                match Client::connect(options.clone()).await {
                    Ok(client) => {
                        tracing::info!("connected to the gateway");
                        let _ = tx.send(Some(client));
                        return;
                    }
                    Err(e) => {
                        let delay = FIRST_CONNECT.delay(attempt);
                        tracing::warn!(error = %e, retry_in = ?delay, "the gateway is not reachable yet");
                        tokio::time::sleep(delay).await;
                    }
                }
            }
        });
        Self { client: rx }
    }

    fn client(&self) -> Option<Client> {
        self.client.borrow().clone()
    }

    fn up(&self) -> bool {
        self.client().is_some_and(|c| c.current_state() == ConnectionState::Connected)
    }
}

/// A token bucket per user: `per_minute` messages a minute, bursts up to that many.
#[derive(Debug)]
struct RateLimit {
    per_minute: u32,
    buckets: Mutex<HashMap<String, (f64, Instant)>>,
}

impl RateLimit {
    /// `Ok` to go on, or how long to wait.
    fn take(&self, user: &str) -> Result<(), Duration> {
        let now = Instant::now();
        let cap = f64::from(self.per_minute.max(1));
        let mut buckets = self.buckets.lock();
        let (tokens, at) = buckets.entry(user.to_owned()).or_insert((cap, now));
        *tokens = (*tokens + now.duration_since(*at).as_secs_f64() * cap / 60.0).min(cap);
        *at = now;
        if *tokens >= 1.0 {
            *tokens -= 1.0;
            Ok(())
        } else {
            Err(Duration::from_secs_f64((1.0 - *tokens) * 60.0 / cap))
        }
    }
}

/// The relay's state.
#[derive(Clone)]
pub struct Relay {
    accounts: Arc<Accounts>,
    gateway: GatewayLink,
    logins: Arc<Mutex<HashMap<String, (String, Instant)>>>,
    password_checks: Arc<Semaphore>,
    streams: Arc<Semaphore>,
    limit: Arc<RateLimit>,
}

impl Relay {
    /// A relay for these accounts over this gateway link, `per_minute` messages per user.
    pub fn new(accounts: Accounts, gateway: GatewayLink, per_minute: u32) -> Self {
        Self {
            accounts: Arc::new(accounts),
            gateway,
            logins: Arc::default(),
            password_checks: Arc::new(Semaphore::new(MAX_PASSWORD_CHECKS)),
            streams: Arc::new(Semaphore::new(MAX_STREAMS)),
            limit: Arc::new(RateLimit { per_minute, buckets: Mutex::default() }),
        }
    }

    /// The HTTP routes.
    pub fn router(self) -> Router {
        Router::new()
            .route("/", get(|| async { Html(PAGE) }))
            .route("/api/login", post(login))
            .route("/api/logout", post(logout))
            .route("/api/me", get(me))
            .route("/api/docs/{doc}/chats/{chat}/history", get(history))
            .route("/api/docs/{doc}/chats/{chat}/messages", post(send))
            .route("/api/docs/{doc}/chats/{chat}/events", get(events))
            .with_state(self)
    }

    fn user_of(&self, headers: &HeaderMap) -> Option<String> {
        let token = login_token(headers)?;
        let mut logins = self.logins.lock();
        match logins.get(token) {
            Some((user, until)) if *until > Instant::now() => Some(user.clone()),
            Some(_) => {
                logins.remove(token);
                None
            }
            None => None,
        }
    }
}

/// The login cookie's value, if the request carries one.
fn login_token(headers: &HeaderMap) -> Option<&str> {
    let cookies = headers.get(header::COOKIE)?.to_str().ok()?;
    cookies.split(';').find_map(|c| c.trim().strip_prefix(COOKIE)?.strip_prefix('='))
}

/// Serve the relay on `addr` until the process ends; prints the address it listens on.
pub async fn serve(relay: Relay, addr: SocketAddr) -> anyhow::Result<()> {
    let listener = tokio::net::TcpListener::bind(addr).await?;
    let local = listener.local_addr()?;
    println!("compose-relay listening on http://{local}/");
    tracing::info!(%local, "listening");
    axum::serve(listener, relay.router()).await?;
    Ok(())
}

fn error(status: StatusCode, message: &str) -> Response {
    (status, Json(json!({"error": message}))).into_response()
}

fn unavailable() -> Response {
    let mut r = error(
        StatusCode::SERVICE_UNAVAILABLE,
        "assistant unavailable: the gateway cannot be reached right now; try again in a moment",
    );
    r.headers_mut().insert(header::RETRY_AFTER, HeaderValue::from_static("2"));
    r
}

#[derive(Deserialize)]
struct LoginBody {
    user: String,
    password: String,
}

async fn login(State(relay): State<Relay>, Json(body): Json<LoginBody>) -> Response {
    if body.user.len() > 64 || body.password.len() > 1024 {
        return error(StatusCode::UNAUTHORIZED, "wrong user or password");
    }
    let Ok(permit) = tokio::time::timeout(Duration::from_secs(5), relay.password_checks.clone().acquire_owned()).await
    else {
        return error(StatusCode::TOO_MANY_REQUESTS, "too many logins at once; try again");
    };
    let accounts = relay.accounts.clone();
    let user = body.user.clone();
    let ok = tokio::task::spawn_blocking(move || {
        let _permit = permit;
        accounts.verify(&user, &body.password)
    })
    .await
    .unwrap_or(false);
    if !ok {
        return error(StatusCode::UNAUTHORIZED, "wrong user or password");
    }
    let token = format!("{}{}", uuid::Uuid::new_v4().simple(), uuid::Uuid::new_v4().simple());
    {
        let mut logins = relay.logins.lock();
        let now = Instant::now();
        logins.retain(|_, (_, until)| *until > now);
        if logins.len() >= MAX_LOGINS {
            return error(StatusCode::SERVICE_UNAVAILABLE, "too many active logins; try again later");
        }
        logins.insert(token.clone(), (body.user.clone(), now + LOGIN_TTL));
    }
    let cookie = format!("{COOKIE}={token}; HttpOnly; SameSite=Strict; Path=/; Max-Age={}", LOGIN_TTL.as_secs());
    let mut r = Json(json!({"user": body.user, "documents": relay.accounts.documents_of(&body.user)})).into_response();
    if let Ok(v) = HeaderValue::from_str(&cookie) {
        r.headers_mut().insert(header::SET_COOKIE, v);
    }
    r
}

async fn logout(State(relay): State<Relay>, headers: HeaderMap) -> Response {
    if let Some(token) = login_token(&headers) {
        relay.logins.lock().remove(token);
    }
    StatusCode::NO_CONTENT.into_response()
}

async fn me(State(relay): State<Relay>, headers: HeaderMap) -> Response {
    match relay.user_of(&headers) {
        Some(user) => Json(json!({
            "user": user, "documents": relay.accounts.documents_of(&user), "gateway": relay.gateway.up(),
        }))
        .into_response(),
        None => error(StatusCode::UNAUTHORIZED, "log in first"),
    }
}

/// The session key of a chat the user may open, or the answer refusing it.
fn chat_key(relay: &Relay, headers: &HeaderMap, doc: &str, chat: &str) -> Result<(String, String), Response> {
    let user = relay.user_of(headers).ok_or_else(|| error(StatusCode::UNAUTHORIZED, "log in first"))?;
    if !accounts::is_name(doc) || !relay.accounts.may_open(&user, doc) {
        return Err(error(StatusCode::FORBIDDEN, "you have no access to this document"));
    }
    let key = match chat {
        "private" => format!("compose:doc:{doc}:{user}"),
        "shared" => format!("compose:doc:{doc}:{}", accounts::SHARED),
        _ => return Err(error(StatusCode::NOT_FOUND, "no such chat: use private or shared")),
    };
    Ok((user, key))
}

/// The text of a transcript message (string content or text parts).
fn text_of(message: &Value) -> String {
    match message.get("content") {
        Some(Value::String(s)) => s.clone(),
        Some(Value::Array(parts)) => parts.iter().filter_map(|p| p.get("text")?.as_str()).collect(),
        _ => String::new(),
    }
}

async fn history(
    State(relay): State<Relay>,
    headers: HeaderMap,
    Path((doc, chat)): Path<(String, String)>,
) -> Response {
    let (_, key) = match chat_key(&relay, &headers, &doc, &chat) {
        Ok(k) => k,
        Err(r) => return r,
    };
    let Some(client) = relay.gateway.client() else { return unavailable() };
    match client.session(key).chat_history(Some(100)).await {
        Ok(h) => {
            let messages: Vec<Value> = h
                .messages
                .iter()
                .filter(|m| matches!(m.get("role").and_then(Value::as_str), Some("user" | "assistant")))
                .map(|m| json!({"role": m["role"], "text": text_of(m)}))
                .collect();
            Json(json!({"messages": messages})).into_response()
        }
        Err(e) if e.is_transient() => unavailable(),
        Err(e) => error(StatusCode::BAD_GATEWAY, &format!("the gateway refused: {e}")),
    }
}

#[derive(Deserialize)]
struct SendBody {
    text: String,
    #[serde(default)]
    title: Option<String>,
    #[serde(default)]
    selection: Option<String>,
}

async fn send(
    State(relay): State<Relay>,
    headers: HeaderMap,
    Path((doc, chat)): Path<(String, String)>,
    Json(body): Json<SendBody>,
) -> Response {
    let (user, key) = match chat_key(&relay, &headers, &doc, &chat) {
        Ok(k) => k,
        Err(r) => return r,
    };
    let text = body.text.trim();
    if text.is_empty() || text.chars().count() > MAX_MESSAGE {
        return error(StatusCode::BAD_REQUEST, &format!("a message has 1 to {MAX_MESSAGE} characters"));
    }
    if let Err(wait) = relay.limit.take(&user) {
        let mut r = (
            StatusCode::TOO_MANY_REQUESTS,
            Json(json!({"error": "too many messages; slow down", "retryAfterMs": wait.as_millis() as u64})),
        )
            .into_response();
        if let Ok(v) = HeaderValue::from_str(&wait.as_secs().max(1).to_string()) {
            r.headers_mut().insert(header::RETRY_AFTER, v);
        }
        return r;
    }
    let cut = |s: Option<String>, n: usize| s.map(|s| s.chars().take(n).collect::<String>()).filter(|s| !s.is_empty());
    let mut context = serde_json::Map::new();
    context.insert("documentId".into(), json!(doc));
    context.insert("from".into(), json!(user));
    context.insert("chat".into(), json!(chat));
    if let Some(t) = cut(body.title, MAX_TITLE) {
        context.insert("title".into(), json!(t));
    }
    if let Some(s) = cut(body.selection, MAX_SELECTION) {
        context.insert("selection".into(), json!(s));
    }
    // In the shared chat the model must know who is speaking.
    let message = if chat == "shared" { format!("[{user}] {text}") } else { text.to_owned() };
    let Some(client) = relay.gateway.client().filter(|_| relay.gateway.up()) else { return unavailable() };
    let params = ChatSendParams {
        message: Some(message),
        idempotency_key: Some(uuid::Uuid::new_v4().to_string()),
        context: Some(Value::Object(context)),
        ..ChatSendParams::default()
    };
    match client.session(key).chat_send_with(params).await {
        Ok(r) => (StatusCode::ACCEPTED, Json(json!({"runId": r.run_id}))).into_response(),
        Err(e) if e.is_transient() => unavailable(),
        Err(e) => error(StatusCode::BAD_GATEWAY, &format!("the gateway refused the message: {e}")),
    }
}

fn sse(name: &str, data: Value) -> Event {
    Event::default().event(name).data(data.to_string())
}

async fn events(State(relay): State<Relay>, headers: HeaderMap, Path((doc, chat)): Path<(String, String)>) -> Response {
    let (_, key) = match chat_key(&relay, &headers, &doc, &chat) {
        Ok(k) => k,
        Err(r) => return r,
    };
    let Ok(permit) = relay.streams.clone().try_acquire_owned() else {
        return error(StatusCode::SERVICE_UNAVAILABLE, "too many open chats; close one");
    };
    let (tx, rx) = mpsc::channel::<Event>(64);
    let mut link = relay.gateway.client.clone();
    tokio::spawn(async move {
        let _permit = permit;
        // Until the first connection, say the assistant is unavailable.
        let client = loop {
            if let Some(c) = link.borrow_and_update().clone() {
                break c;
            }
            if tx.send(sse("status", json!({"gateway": "unavailable"}))).await.is_err() {
                return;
            }
            tokio::select! {
                changed = link.changed() => if changed.is_err() { return },
                _ = tx.closed() => return,
            }
        };
        let mut state = client.state();
        let mut events = client.session(key).events();
        let up = |s: &ConnectionState| if *s == ConnectionState::Connected { "connected" } else { "unavailable" };
        let first = up(&state.borrow_and_update());
        if tx.send(sse("status", json!({"gateway": first}))).await.is_err() {
            return;
        }
        loop {
            let event = tokio::select! {
                _ = tx.closed() => return,
                changed = state.changed() => {
                    if changed.is_err() { return }
                    let now = up(&state.borrow_and_update());
                    sse("status", json!({"gateway": now}))
                }
                ev = events.recv() => match ev {
                    None => return,
                    Some(SessionEvent::Chat(c)) => match c.state {
                        ChatState::Delta => sse("delta", json!({"runId": c.run_id, "text": c.delta_text().unwrap_or_default()})),
                        ChatState::Final => sse("final", json!({"runId": c.run_id, "text": text_of(&c.payload["message"])})),
                        ChatState::Error | ChatState::Aborted => sse("failed", json!({
                            "runId": c.run_id, "message": c.error_message().unwrap_or("the reply stopped"),
                        })),
                        _ => continue,
                    },
                    Some(SessionEvent::Agent(a)) if a.stream == "lifecycle" && a.phase() == Some("start") => {
                        sse("typing", json!({"runId": a.run_id, "on": true}))
                    }
                    Some(SessionEvent::Agent(a)) if a.is_terminal() => sse("typing", json!({"runId": a.run_id, "on": false})),
                    Some(SessionEvent::Lagged(_) | SessionEvent::Reconnected) => sse("resync", json!({})),
                    Some(SessionEvent::Disconnected) => sse("status", json!({"gateway": "unavailable"})),
                    Some(_) => continue,
                },
            };
            if tx.send(event).await.is_err() {
                return;
            }
        }
    });
    let stream =
        futures_util::stream::unfold(rx, |mut rx| async move { rx.recv().await.map(|e| (Ok::<_, Infallible>(e), rx)) });
    Sse::new(stream).keep_alive(KeepAlive::default()).into_response()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_rate_limit_refills_and_says_how_long_to_wait() {
        let limit = RateLimit { per_minute: 2, buckets: Mutex::default() };
        assert!(limit.take("ann").is_ok());
        assert!(limit.take("ann").is_ok());
        let wait = limit.take("ann").expect_err("third within a minute");
        assert!(wait > Duration::from_secs(20) && wait <= Duration::from_secs(30), "{wait:?}");
        assert!(limit.take("bob").is_ok(), "per user");
    }
}
