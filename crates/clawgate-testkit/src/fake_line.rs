//! A fake LINE Platform (Messaging API) on one `127.0.0.1:0` port.
//!
//! Faithful to `shared/contracts/line.md` (§5 lists what it must do). Outbound, it serves
//! `POST /v2/bot/message/reply`, `POST /v2/bot/message/push`, `POST /v2/bot/chat/loading/start`
//! and `GET /v2/bot/info` (the bot's user id), and enforces the contract's MUSTs: `Authorization: Bearer
//! <channel access token>` (401 otherwise), `Content-Type: application/json` (415), bodies up to
//! 2 MB (413), JSON (400), 1–5 message objects, text of 1–5 000 UTF-16 units, images as two
//! `https://` URLs of at most 2 000 characters, reply tokens used once and within their lifetime
//! (60 s; a redelivered event re-arms its unused token), push only to users, groups and rooms that
//! talked to the bot, `X-Line-Retry-Key` (a UUID; a repeat within 24 h answers 409 with
//! `x-line-accepted-request-id`), an optional monthly push quota, and a switch that answers 429
//! as the rate limiter does. A rejected request sends nothing (all-or-nothing); every answer
//! carries `X-Line-Request-Id`; error bodies are `{"message", "details"?}` with LINE's texts.
//!
//! Inbound, it plays LINE's webhook sender: events are built with fresh `webhookEventId`s
//! (ULIDs), reply tokens and message ids, signed with Base64(HMAC-SHA256(channel secret, raw
//! body)) under a lower-case `x-line-signature`, and POSTed with LINE's 2-second deadline.
//! Tests can post the verify ping (`events: []`), redeliver an event (`isRedelivery: true`, same
//! ids), or post any bytes with any (or no) signature.
//!
//! Images: for every accepted image message the fake fetches `originalContentUrl` and
//! `previewImageUrl` as LINE's servers would, through a mapping the test gives from the public
//! HTTPS origin to the gateway's loopback address, and records whether each answered 200 with a
//! PNG or JPEG within the size limits (10 MB original, 1 MB preview).
//!
//! Known simplifications: no TLS (the origin mapping stands in for it); LINE fetches images when
//! a recipient first views them, the fake right after the send; the rate limit is scripted, not
//! measured; message objects other than text and image are refused.

use std::collections::{HashMap, HashSet};
use std::net::SocketAddr;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use anyhow::Context as _;
use axum::Router;
use axum::body::{Body, to_bytes};
use axum::extract::{Request, State};
use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use base64::Engine as _;
use base64::engine::general_purpose::STANDARD as B64;
use hmac::{Hmac, Mac};
use serde_json::{Value, json};
use sha2::Sha256;
use tokio::sync::watch;
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;

/// The default channel access token.
pub const DEFAULT_TOKEN: &str = "fakeLineChannelAccessToken/ClawgateTests+0123456789=";
/// The default channel secret (32 hex characters, the real shape).
pub const DEFAULT_SECRET: &str = "0f1e2d3c4b5a69788796a5b4c3d2e1f0";
/// The bot's user id (`destination` of every webhook).
pub const BOT_USER_ID: &str = "U0c1a2w3g4a5t6e7b8o9t0000000000aa";
/// Longest text message, in UTF-16 code units.
pub const MAX_TEXT: usize = 5000;
/// Longest image URL.
pub const MAX_URL: usize = 2000;
/// Largest `originalContentUrl` image.
pub const MAX_ORIGINAL_BYTES: usize = 10 * 1024 * 1024;
/// Largest `previewImageUrl` image.
pub const MAX_PREVIEW_BYTES: usize = 1024 * 1024;
/// Largest request body.
pub const MAX_BODY: usize = 2 * 1024 * 1024;
/// How long a reply token may be used after the webhook that carried it.
pub const REPLY_TOKEN_TTL: Duration = Duration::from_secs(60);
/// The signature header, as LINE sends it today.
pub const SIGNATURE_HEADER: &str = "x-line-signature";
/// LINE's webhook deadline: an answer later than this is a `request_timeout`.
pub const WEBHOOK_DEADLINE: Duration = Duration::from_secs(2);

/// 400 for an expired, used or unknown reply token.
pub const INVALID_REPLY_TOKEN: &str = "Invalid reply token";
/// 400 for a push to someone the bot cannot reach.
pub const FAILED_TO_SEND: &str = "Failed to send messages";
/// 429 from the rate limiter.
pub const RATE_LIMITED: &str = "The API rate limit has been exceeded. Try again later.";
/// 429 once the monthly push allowance is used up.
pub const MONTHLY_LIMIT: &str = "You have reached your monthly limit.";
/// 409 for a repeated `X-Line-Retry-Key`.
pub const RETRY_KEY_ACCEPTED: &str = "The retry key is already accepted";
const AUTH_FAILED: &str = "Authentication failed due to the following reason: invalid token. Confirm that the access token in the authorization header is valid.";

const TEXT_TYPES: &str = "[text, image, video, audio, location, sticker, template, imagemap]";

type HmacSha256 = Hmac<Sha256>;

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(PoisonError::into_inner)
}

fn unix_ms() -> i64 {
    SystemTime::now().duration_since(UNIX_EPOCH).map(|d| d.as_millis() as i64).unwrap_or(0)
}

/// Base64(HMAC-SHA256(key = `secret`, message = `body`)): the `x-line-signature` of `body`.
pub fn sign(secret: &str, body: &[u8]) -> String {
    let mut mac = <HmacSha256 as Mac>::new_from_slice(secret.as_bytes()).expect("HMAC takes any key");
    mac.update(body);
    B64.encode(mac.finalize().into_bytes())
}

/// Where an event comes from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Source {
    /// A one-on-one chat with a user.
    User(String),
    /// A group chat; the sender's id.
    Group {
        /// `groupId`.
        group_id: String,
        /// `userId`.
        user_id: String,
    },
    /// A multi-person chat (room); the sender's id.
    Room {
        /// `roomId`.
        room_id: String,
        /// `userId`.
        user_id: String,
    },
}

impl Source {
    /// The chat a reply or push goes to (user, group or room id).
    pub fn chat_id(&self) -> &str {
        match self {
            Source::User(u) => u,
            Source::Group { group_id, .. } => group_id,
            Source::Room { room_id, .. } => room_id,
        }
    }

    fn to_json(&self) -> Value {
        match self {
            Source::User(u) => json!({"type": "user", "userId": u}),
            Source::Group { group_id, user_id } => json!({"type": "group", "groupId": group_id, "userId": user_id}),
            Source::Room { room_id, user_id } => json!({"type": "room", "roomId": room_id, "userId": user_id}),
        }
    }
}

/// A LINE-shaped id: `prefix` + 32 hex digits (`U…` users, `C…` groups, `R…` rooms) derived
/// from `n`, so tests can make many distinct ones.
pub fn line_id(prefix: char, n: u64) -> String {
    format!("{prefix}{:032x}", u128::from(n) * 0x9e37_79b9_7f4a_7c15 + 1)
}

/// How an accepted message reached LINE.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Via {
    /// `/v2/bot/message/reply`.
    Reply,
    /// `/v2/bot/message/push`.
    Push,
}

/// One call to the API, as answered.
#[derive(Debug, Clone)]
pub struct LineCall {
    /// `reply`, `push`, `loading`, or the path of anything else.
    pub endpoint: String,
    /// The HTTP status answered.
    pub status: u16,
    /// The request body (JSON; `Null` when it was not JSON).
    pub body: Value,
    /// The answer body.
    pub response: Value,
    /// `X-Line-Retry-Key`, if sent.
    pub retry_key: Option<String>,
    /// When it arrived.
    pub at: Instant,
}

/// A message LINE accepted and delivered to a chat.
#[derive(Debug, Clone)]
pub struct Delivered {
    /// Reply or push.
    pub via: Via,
    /// The chat (user, group or room id).
    pub to: String,
    /// The message object as sent.
    pub message: Value,
    /// The id LINE gave it.
    pub id: String,
}

impl Delivered {
    /// The text of a text message.
    pub fn text(&self) -> Option<&str> {
        (self.message["type"] == "text").then(|| self.message["text"].as_str()).flatten()
    }
}

/// What fetching one image URL gave.
#[derive(Debug, Clone)]
pub struct FetchedImage {
    /// The URL in the message.
    pub url: String,
    /// `original` or `preview`.
    pub role: &'static str,
    /// HTTP status, or `None` when it could not be fetched.
    pub status: Option<u16>,
    /// `Content-Type` answered.
    pub content_type: Option<String>,
    /// Bytes received.
    pub len: usize,
    /// The bytes start with the PNG signature.
    pub is_png: bool,
    /// Why the fetch is not a valid LINE image, if it is not.
    pub error: Option<String>,
}

/// The outcome of one webhook delivery.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct WebhookOutcome {
    /// The status the bot answered; `None` when it did not answer within [`WEBHOOK_DEADLINE`]
    /// (LINE's `request_timeout`) or could not be reached.
    pub status: Option<u16>,
    /// The answer body.
    pub body: String,
}

#[derive(Debug)]
struct ReplyToken {
    chat: String,
    armed_at: Instant,
    event_at: Instant,
    used: bool,
}

#[derive(Debug, Default)]
struct Inner {
    reply_tokens: HashMap<String, ReplyToken>,
    /// Users, groups and rooms that talked to the bot: push targets.
    reachable: HashSet<String>,
    retry_keys: HashMap<String, (Instant, String, Value)>,
    calls: Vec<LineCall>,
    delivered: Vec<Delivered>,
    fetched: Vec<FetchedImage>,
    /// Scripted 429s: how many of the next reply/push calls get them.
    rate_limit_next: usize,
    /// Pushes left this month (`None`: unlimited).
    quota: Option<u64>,
    webhook_url: Option<String>,
    /// How long reply tokens live (`None`: [`REPLY_TOKEN_TTL`]).
    reply_token_ttl: Option<Duration>,
    /// Public HTTPS origin → where it really is (the gateway's loopback address).
    origin_map: Option<(String, String)>,
}

#[derive(Debug)]
struct Shared {
    base: String,
    token: String,
    inner: Mutex<Inner>,
    /// Bumped on every recorded call or fetch, for waiters.
    changed: watch::Sender<u64>,
    ids: AtomicU64,
    http: reqwest::Client,
    shutdown: CancellationToken,
}

impl Shared {
    fn bump(&self) {
        self.changed.send_modify(|n| *n += 1);
    }

    fn next_id(&self) -> u64 {
        self.ids.fetch_add(1, Ordering::Relaxed) + 1
    }

    /// A ULID-shaped id (26 Crockford base32 characters: time, then a counter).
    fn ulid(&self) -> String {
        const ALPHABET: &[u8] = b"0123456789ABCDEFGHJKMNPQRSTVWXYZ";
        let v: u128 = (u128::from(unix_ms() as u64) << 80) | u128::from(self.next_id());
        (0..26).rev().map(|i| ALPHABET[((v >> (i * 5)) & 31) as usize] as char).collect()
    }
}

/// A running fake LINE Platform; stops when dropped.
#[derive(Debug)]
pub struct FakeLine {
    addr: SocketAddr,
    secret: String,
    shared: Arc<Shared>,
    task: JoinHandle<()>,
}

impl Drop for FakeLine {
    fn drop(&mut self) {
        self.shared.shutdown.cancel();
        self.task.abort();
    }
}

impl FakeLine {
    /// Bind `127.0.0.1:0` and serve, with [`DEFAULT_TOKEN`] and [`DEFAULT_SECRET`].
    pub async fn start() -> anyhow::Result<FakeLine> {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.context("binding the fake LINE")?;
        let addr = listener.local_addr()?;
        let shared = Arc::new(Shared {
            base: format!("http://127.0.0.1:{}", addr.port()),
            token: DEFAULT_TOKEN.to_owned(),
            inner: Mutex::new(Inner::default()),
            changed: watch::Sender::new(0),
            ids: AtomicU64::new(0),
            http: reqwest::Client::builder().timeout(Duration::from_secs(30)).build()?,
            shutdown: CancellationToken::new(),
        });
        let app = Router::new().fallback(route).with_state(Arc::clone(&shared));
        let shutdown = shared.shutdown.clone();
        let task = tokio::spawn(async move {
            let serve = axum::serve(listener, app).with_graceful_shutdown(shutdown.cancelled_owned());
            if let Err(e) = serve.await {
                tracing::warn!(error = %e, "fake LINE stopped");
            }
        });
        Ok(FakeLine { addr, secret: DEFAULT_SECRET.to_owned(), shared, task })
    }

    /// The socket address.
    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// What clawgate's `apiRoot` takes (`http://127.0.0.1:PORT`).
    pub fn api_root(&self) -> String {
        self.shared.base.clone()
    }

    /// The channel access token.
    pub fn token(&self) -> &str {
        &self.shared.token
    }

    /// The channel secret.
    pub fn secret(&self) -> &str {
        &self.secret
    }

    /// Where webhooks go (the bot's `webhookPath` on the gateway).
    pub fn set_webhook(&self, url: impl Into<String>) {
        lock(&self.shared.inner).webhook_url = Some(url.into());
    }

    /// Fetch image URLs under `public_origin` (`https://bot.example`) from `real_origin`
    /// (`http://127.0.0.1:PORT`) instead, as a TLS-terminating proxy in front of the gateway would.
    pub fn map_public_origin(&self, public_origin: &str, real_origin: &str) {
        lock(&self.shared.inner).origin_map =
            Some((public_origin.trim_end_matches('/').to_owned(), real_origin.trim_end_matches('/').to_owned()));
    }

    /// Answer the next `n` reply/push calls with 429 (rate limit).
    pub fn rate_limit_next(&self, n: usize) {
        lock(&self.shared.inner).rate_limit_next = n;
    }

    /// Allow only `n` more pushes this month; then 429 "monthly limit".
    pub fn set_push_quota(&self, n: u64) {
        lock(&self.shared.inner).quota = Some(n);
    }

    /// Let reply tokens live `ttl` from now on (zero: every token has expired by the time the
    /// bot uses it, so every answer must be pushed).
    pub fn set_reply_token_ttl(&self, ttl: Duration) {
        lock(&self.shared.inner).reply_token_ttl = Some(ttl);
    }

    /// Make every outstanding reply token too old to use.
    pub fn expire_reply_tokens(&self) {
        let old = Instant::now().checked_sub(REPLY_TOKEN_TTL + Duration::from_secs(1));
        let mut inner = lock(&self.shared.inner);
        for t in inner.reply_tokens.values_mut() {
            if let Some(old) = old {
                t.armed_at = old;
            } else {
                t.used = true;
            }
        }
    }

    /// A text message event from `source`; `mention_bot` adds a mention of the bot (`isSelf`)
    /// at the start of the text, as LINE writes it. Not sent: see [`FakeLine::post_events`].
    pub fn text_event(&self, source: &Source, text: &str, mention_bot: bool) -> Value {
        let mut message = json!({"id": self.shared.next_id().to_string(), "type": "text",
                                  "quoteToken": format!("q{}", self.shared.ulid()), "text": text});
        if mention_bot {
            let handle = "@clawgate";
            message["text"] = json!(format!("{handle} {text}"));
            message["mention"] = json!({"mentionees": [{"index": 0, "length": handle.encode_utf16().count(),
                "type": "user", "userId": BOT_USER_ID, "isSelf": true}]});
        }
        self.event(source, json!({"type": "message", "message": message}))
    }

    /// A text event in a group mentioning someone else (not the bot).
    pub fn text_event_mentioning_other(&self, source: &Source, text: &str, other_user: &str) -> Value {
        let handle = "@someone";
        let message = json!({"id": self.shared.next_id().to_string(), "type": "text",
            "quoteToken": format!("q{}", self.shared.ulid()), "text": format!("{handle} {text}"),
            "mention": {"mentionees": [{"index": 0, "length": handle.len(), "type": "user", "userId": other_user}]}});
        self.event(source, json!({"type": "message", "message": message}))
    }

    /// Any event of `body`'s type from `source`, with the common properties filled in.
    pub fn event(&self, source: &Source, body: Value) -> Value {
        let mut ev = json!({
            "mode": "active",
            "timestamp": unix_ms(),
            "source": source.to_json(),
            "webhookEventId": self.shared.ulid(),
            "deliveryContext": {"isRedelivery": false},
            "replyToken": format!("{:032x}", u128::from(self.shared.next_id()) * 0x5851_f42d_4c95_7f2d + 7),
        });
        if let (Value::Object(ev), Value::Object(body)) = (&mut ev, body) {
            ev.extend(body);
        }
        ev
    }

    /// POST these events as one signed webhook request; reply tokens are armed and the sources
    /// become push targets.
    pub async fn post_events(&self, events: &[Value]) -> anyhow::Result<WebhookOutcome> {
        self.arm(events, false);
        let body = json!({"destination": BOT_USER_ID, "events": events}).to_string();
        let sig = sign(&self.secret, body.as_bytes());
        self.post_raw(body.as_bytes(), Some(&sig)).await
    }

    /// Redeliver `event` as LINE does when the first delivery was not answered 2xx: the same
    /// event with `deliveryContext.isRedelivery: true` (same ids, same reply token, which works
    /// again for a minute if it was not used).
    pub async fn redeliver(&self, event: &Value) -> anyhow::Result<WebhookOutcome> {
        let mut again = event.clone();
        again["deliveryContext"]["isRedelivery"] = json!(true);
        self.arm(std::slice::from_ref(&again), true);
        let body = json!({"destination": BOT_USER_ID, "events": [again]}).to_string();
        let sig = sign(&self.secret, body.as_bytes());
        self.post_raw(body.as_bytes(), Some(&sig)).await
    }

    /// The console's "Verify" request: no events, signed.
    pub async fn post_verify(&self) -> anyhow::Result<WebhookOutcome> {
        self.post_events(&[]).await
    }

    /// POST exactly `body` with `signature` (or none) to the webhook.
    pub async fn post_raw(&self, body: &[u8], signature: Option<&str>) -> anyhow::Result<WebhookOutcome> {
        let url = lock(&self.shared.inner).webhook_url.clone().context("no webhook URL set")?;
        let mut req = self
            .shared
            .http
            .post(&url)
            .timeout(WEBHOOK_DEADLINE)
            .header(header::CONTENT_TYPE, "application/json; charset=utf-8")
            .header(header::USER_AGENT, "LineBotWebhook/2.0")
            .body(body.to_vec());
        if let Some(sig) = signature {
            req = req.header(SIGNATURE_HEADER, sig);
        }
        match req.send().await {
            Ok(resp) => {
                let status = resp.status().as_u16();
                let body = resp.text().await.unwrap_or_default();
                Ok(WebhookOutcome { status: Some(status), body })
            }
            // Timed out, refused, or the connection dropped (the process died): LINE counts it a
            // failed delivery.
            Err(e) => Ok(WebhookOutcome { status: None, body: e.to_string() }),
        }
    }

    fn arm(&self, events: &[Value], redelivery: bool) {
        let now = Instant::now();
        let mut inner = lock(&self.shared.inner);
        for ev in events {
            let chat = ev["source"]["groupId"]
                .as_str()
                .or(ev["source"]["roomId"].as_str())
                .or(ev["source"]["userId"].as_str())
                .unwrap_or_default()
                .to_owned();
            if !chat.is_empty() {
                inner.reachable.insert(chat.clone());
            }
            let Some(token) = ev["replyToken"].as_str() else { continue };
            match inner.reply_tokens.get_mut(token) {
                // A redelivered event's token works again for a minute unless it was used or
                // 20 minutes passed since the event.
                Some(t) if redelivery => t.armed_at = now,
                Some(_) => {}
                None => {
                    inner
                        .reply_tokens
                        .insert(token.to_owned(), ReplyToken { chat, armed_at: now, event_at: now, used: false });
                }
            }
        }
    }

    /// Every API call answered so far.
    pub fn calls(&self) -> Vec<LineCall> {
        lock(&self.shared.inner).calls.clone()
    }

    /// Every message delivered, in order.
    pub fn delivered(&self) -> Vec<Delivered> {
        lock(&self.shared.inner).delivered.clone()
    }

    /// The texts delivered to one chat, in order.
    pub fn texts_to(&self, chat: &str) -> Vec<String> {
        self.delivered().iter().filter(|d| d.to == chat).filter_map(|d| d.text().map(str::to_owned)).collect()
    }

    /// Every image fetch done so far.
    pub fn fetched(&self) -> Vec<FetchedImage> {
        lock(&self.shared.inner).fetched.clone()
    }

    /// Wait until a delivered message matches `pred`.
    pub async fn wait_delivered(
        &self,
        pred: impl Fn(&Delivered) -> bool,
        timeout: Duration,
    ) -> anyhow::Result<Delivered> {
        // Judge a copy: the predicate may itself call back into the fake.
        self.wait(timeout, || {
            let delivered = lock(&self.shared.inner).delivered.clone();
            delivered.into_iter().find(|d| pred(d))
        })
        .await
    }

    /// Wait until a call matches `pred`.
    pub async fn wait_call(&self, pred: impl Fn(&LineCall) -> bool, timeout: Duration) -> anyhow::Result<LineCall> {
        self.wait(timeout, || {
            let calls = lock(&self.shared.inner).calls.clone();
            calls.into_iter().find(|c| pred(c))
        })
        .await
    }

    /// Wait until `n` image fetches are recorded.
    pub async fn wait_fetched(&self, n: usize, timeout: Duration) -> anyhow::Result<Vec<FetchedImage>> {
        self.wait(timeout, || {
            let f = lock(&self.shared.inner).fetched.clone();
            (f.len() >= n).then_some(f)
        })
        .await
    }

    async fn wait<T>(&self, timeout: Duration, mut probe: impl FnMut() -> Option<T>) -> anyhow::Result<T> {
        let mut rx = self.shared.changed.subscribe();
        let deadline = tokio::time::Instant::now() + timeout;
        loop {
            if let Some(v) = probe() {
                return Ok(v);
            }
            match tokio::time::timeout_at(deadline, rx.changed()).await {
                Ok(Ok(())) => {}
                Ok(Err(_)) => anyhow::bail!("fake LINE stopped"),
                Err(_) => {
                    let calls: Vec<String> =
                        self.calls().iter().map(|c| format!("{}→{} {}", c.endpoint, c.status, c.response)).collect();
                    anyhow::bail!("nothing matched within {timeout:?}; calls: {calls:?}")
                }
            }
        }
    }
}

// ---------------------------------------------------------------------------------------------
// The API

/// An answer: status, body, extra headers.
struct Answer {
    status: u16,
    body: Value,
    accepted_request_id: Option<String>,
}

impl Answer {
    fn ok(body: Value) -> Self {
        Self { status: 200, body, accepted_request_id: None }
    }

    fn error(status: u16, message: &str) -> Self {
        Self { status, body: json!({"message": message}), accepted_request_id: None }
    }

    fn invalid(details: Vec<(String, String)>) -> Self {
        let details: Vec<Value> = details.into_iter().map(|(p, m)| json!({"message": m, "property": p})).collect();
        let message = format!("The request body has {} error(s)", details.len());
        Self { status: 400, body: json!({"message": message, "details": details}), accepted_request_id: None }
    }
}

fn respond(shared: &Shared, a: Answer) -> Response {
    let mut resp = (StatusCode::from_u16(a.status).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR), a.body.to_string())
        .into_response();
    let h = resp.headers_mut();
    h.insert(header::CONTENT_TYPE, HeaderValue::from_static("application/json"));
    if let Ok(v) = HeaderValue::from_str(&format!("{:016x}-fake", shared.next_id())) {
        h.insert("x-line-request-id", v);
    }
    if let Some(id) = a.accepted_request_id.and_then(|id| HeaderValue::from_str(&id).ok()) {
        h.insert("x-line-accepted-request-id", id);
    }
    resp
}

async fn route(State(shared): State<Arc<Shared>>, req: Request) -> Response {
    let at = Instant::now();
    let path = req.uri().path().to_owned();
    let endpoint = match (req.method().as_str(), path.as_str()) {
        ("POST", "/v2/bot/message/reply") => "reply",
        ("POST", "/v2/bot/message/push") => "push",
        ("POST", "/v2/bot/chat/loading/start") => "loading",
        ("GET", "/v2/bot/info") => "info",
        _ => return respond(&shared, Answer::error(404, "Not found")),
    };
    let headers = req.headers().clone();
    let retry_key = headers.get("x-line-retry-key").and_then(|v| v.to_str().ok()).map(str::to_owned);
    let bytes = to_bytes(Body::new(req.into_body()), MAX_BODY + 1).await.unwrap_or_default();
    let body: Value = serde_json::from_slice(&bytes).unwrap_or(Value::Null);
    let answer = answer(&shared, endpoint, &headers, &bytes, &body, retry_key.as_deref());
    let recorded = LineCall {
        endpoint: endpoint.to_owned(),
        status: answer.status,
        body,
        response: answer.body.clone(),
        retry_key,
        at,
    };
    lock(&shared.inner).calls.push(recorded);
    shared.bump();
    respond(&shared, answer)
}

fn answer(
    shared: &Arc<Shared>,
    endpoint: &str,
    headers: &axum::http::HeaderMap,
    bytes: &[u8],
    body: &Value,
    retry_key: Option<&str>,
) -> Answer {
    let bearer =
        headers.get(header::AUTHORIZATION).and_then(|v| v.to_str().ok()).and_then(|v| v.strip_prefix("Bearer "));
    if bearer != Some(shared.token.as_str()) {
        return Answer::error(401, AUTH_FAILED);
    }
    if endpoint == "info" {
        return Answer::ok(json!({"userId": BOT_USER_ID, "basicId": "@000clawg", "displayName": "clawgate test bot",
                                 "chatMode": "bot", "markAsReadMode": "auto"}));
    }
    let content_type = headers.get(header::CONTENT_TYPE).and_then(|v| v.to_str().ok()).unwrap_or("");
    if !content_type.split(';').next().is_some_and(|t| t.trim().eq_ignore_ascii_case("application/json")) {
        return Answer::error(415, &format!("The content type, {content_type}, is not supported"));
    }
    if bytes.len() > MAX_BODY {
        return Answer::error(413, "Request Entity Too Large");
    }
    if body.is_null() {
        return Answer::error(400, "The request body could not be parsed as JSON (line: 1, column: 1)");
    }
    if endpoint == "loading" {
        let seconds = body["loadingSeconds"].as_u64().unwrap_or(20);
        let chat = body["chatId"].as_str().unwrap_or("");
        if !chat.starts_with('U') || !seconds.is_multiple_of(5) || !(5..=60).contains(&seconds) {
            return Answer::invalid(vec![("chatId".into(), "Invalid chat id or seconds".into())]);
        }
        return Answer { status: 202, body: json!({}), accepted_request_id: None };
    }
    if let Some(bad) = check_messages(&body["messages"]) {
        return bad;
    }
    if let Some(key) = retry_key {
        if endpoint != "push" {
            return Answer::error(400, "The 'X-Line-Retry-Key' header is not supported for this API");
        }
        if !is_uuid(key) {
            return Answer::error(400, "The value for the 'X-Line-Retry-Key' header is invalid");
        }
    }
    let mut inner = lock(&shared.inner);
    if inner.rate_limit_next > 0 {
        inner.rate_limit_next -= 1;
        return Answer::error(429, RATE_LIMITED);
    }
    let now = Instant::now();
    if let Some(key) = retry_key {
        inner.retry_keys.retain(|_, (at, _, _)| now.duration_since(*at) < Duration::from_secs(24 * 3600));
        if let Some((_, request_id, sent)) = inner.retry_keys.get(key) {
            return Answer {
                status: 409,
                body: json!({"message": RETRY_KEY_ACCEPTED, "sentMessages": sent}),
                accepted_request_id: Some(request_id.clone()),
            };
        }
    }
    let (via, to) = if endpoint == "reply" {
        let token = body["replyToken"].as_str().unwrap_or("");
        let ttl = inner.reply_token_ttl.unwrap_or(REPLY_TOKEN_TTL);
        let Some(t) = inner.reply_tokens.get_mut(token) else { return Answer::error(400, INVALID_REPLY_TOKEN) };
        let fresh =
            now.duration_since(t.armed_at) < ttl && now.duration_since(t.event_at) < Duration::from_secs(20 * 60);
        if t.used || !fresh {
            return Answer::error(400, INVALID_REPLY_TOKEN);
        }
        t.used = true;
        (Via::Reply, t.chat.clone())
    } else {
        let to = body["to"].as_str().unwrap_or("").to_owned();
        if !inner.reachable.contains(&to) {
            return Answer::error(400, FAILED_TO_SEND);
        }
        if let Some(q) = inner.quota.as_mut() {
            if *q == 0 {
                return Answer::error(429, MONTHLY_LIMIT);
            }
            *q -= 1;
        }
        (Via::Push, to)
    };
    let mut sent = Vec::new();
    let mut images = Vec::new();
    for m in body["messages"].as_array().into_iter().flatten() {
        let id = (460_000_000_000_000_000u64 + shared.next_id()).to_string();
        sent.push(json!({"id": id, "quoteToken": format!("q{}", shared.ulid())}));
        if m["type"] == "image" {
            images.push((m["originalContentUrl"].as_str().unwrap_or("").to_owned(), "original"));
            images.push((m["previewImageUrl"].as_str().unwrap_or("").to_owned(), "preview"));
        }
        inner.delivered.push(Delivered { via, to: to.clone(), message: m.clone(), id });
    }
    let request_id = format!("{:016x}-accepted", shared.next_id());
    if let Some(key) = retry_key {
        inner.retry_keys.insert(key.to_owned(), (now, request_id, json!(sent)));
    }
    let origin_map = inner.origin_map.clone();
    drop(inner);
    for (url, role) in images {
        let shared = Arc::clone(shared);
        let map = origin_map.clone();
        tokio::spawn(async move {
            let fetched = fetch_image(&shared.http, &url, role, map.as_ref()).await;
            lock(&shared.inner).fetched.push(fetched);
            shared.bump();
        });
    }
    Answer::ok(json!({"sentMessages": sent}))
}

fn is_uuid(s: &str) -> bool {
    let parts: Vec<&str> = s.split('-').collect();
    parts.iter().map(|p| p.len()).collect::<Vec<_>>() == [8, 4, 4, 4, 12]
        && parts.iter().all(|p| p.chars().all(|c| c.is_ascii_hexdigit()))
}

/// 1–5 message objects, each valid; the first problems as LINE words them.
fn check_messages(messages: &Value) -> Option<Answer> {
    let Some(list) = messages.as_array() else {
        return Some(Answer::invalid(vec![("messages".into(), "Must not be empty".into())]));
    };
    if list.is_empty() || list.len() > 5 {
        return Some(Answer::invalid(vec![("messages".into(), "Size must be between 1 and 5".into())]));
    }
    let mut details = Vec::new();
    for (i, m) in list.iter().enumerate() {
        let at = |k: &str| format!("messages[{i}].{k}");
        match m["type"].as_str() {
            Some("text") => match m["text"].as_str() {
                None | Some("") => details.push((at("text"), "May not be empty".into())),
                Some(t) if t.encode_utf16().count() > MAX_TEXT => {
                    details.push((at("text"), format!("Length must be between 0 and {MAX_TEXT}")));
                }
                Some(_) => {}
            },
            Some("image") => {
                for k in ["originalContentUrl", "previewImageUrl"] {
                    match m[k].as_str() {
                        None | Some("") => details.push((at(k), "May not be empty".into())),
                        Some(u) if u.chars().count() > MAX_URL => {
                            details.push((at(k), format!("Length must be between 0 and {MAX_URL}")));
                        }
                        Some(u) if !u.starts_with("https://") => {
                            details.push((at(k), "Must be a valid HTTPS URL".into()));
                        }
                        Some(_) => {}
                    }
                }
            }
            _ => details.push((at("type"), format!("Must be one of the following values: {TEXT_TYPES}"))),
        }
    }
    (!details.is_empty()).then(|| Answer::invalid(details))
}

async fn fetch_image(
    http: &reqwest::Client,
    url: &str,
    role: &'static str,
    map: Option<&(String, String)>,
) -> FetchedImage {
    let mut out = FetchedImage {
        url: url.to_owned(),
        role,
        status: None,
        content_type: None,
        len: 0,
        is_png: false,
        error: None,
    };
    let real = match map {
        Some((public, real)) if url.starts_with(&format!("{public}/")) => format!("{real}{}", &url[public.len()..]),
        _ => {
            out.error = Some("not reachable: the URL is not under the public origin the test mapped".into());
            return out;
        }
    };
    let resp = match http.get(&real).send().await {
        Ok(r) => r,
        Err(e) => {
            out.error = Some(format!("fetch failed: {e}"));
            return out;
        }
    };
    out.status = Some(resp.status().as_u16());
    out.content_type = resp.headers().get(header::CONTENT_TYPE).and_then(|v| v.to_str().ok()).map(str::to_owned);
    let bytes = resp.bytes().await.unwrap_or_default();
    out.len = bytes.len();
    out.is_png = bytes.starts_with(b"\x89PNG\r\n\x1a\n");
    let is_jpeg = bytes.starts_with(&[0xff, 0xd8, 0xff]);
    let limit = if role == "original" { MAX_ORIGINAL_BYTES } else { MAX_PREVIEW_BYTES };
    out.error = if out.status != Some(200) {
        Some(format!("HTTP {}", out.status.unwrap_or(0)))
    } else if !(out.is_png || is_jpeg) {
        Some("not a PNG or JPEG".into())
    } else if out.len > limit {
        Some(format!("{} bytes is over the {role} limit of {limit}", out.len))
    } else {
        None
    };
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    async fn post(fake: &FakeLine, path: &str, token: &str, body: Value, retry_key: Option<&str>) -> (u16, Value) {
        let mut req = reqwest::Client::new().post(format!("{}{path}", fake.api_root())).bearer_auth(token).json(&body);
        if let Some(k) = retry_key {
            req = req.header("X-Line-Retry-Key", k);
        }
        let resp = req.send().await.unwrap();
        assert!(resp.headers().contains_key("x-line-request-id"));
        let status = resp.status().as_u16();
        (status, resp.json().await.unwrap_or(Value::Null))
    }

    #[test]
    fn signatures_are_base64_hmac_sha256_of_the_raw_body() {
        // Computed independently: printf '%s' '{"events":[]}' | openssl dgst -sha256 -hmac secret -binary | base64
        assert_eq!(sign("secret", br#"{"events":[]}"#), "pkK1lVPJPiJ+wPLziRD79xIxohl8AImYM8AEeM7IbzQ=");
        assert_ne!(sign("secret", br#"{"events": []}"#), sign("secret", br#"{"events":[]}"#));
    }

    #[tokio::test]
    async fn reply_tokens_are_single_use_and_pushes_need_a_known_chat() {
        let fake = FakeLine::start().await.unwrap();
        let user = Source::User(line_id('U', 1));
        let ev = fake.text_event(&user, "hi", false);
        fake.arm(std::slice::from_ref(&ev), false);
        let token = ev["replyToken"].as_str().unwrap();
        let msg = json!([{"type": "text", "text": "hello"}]);
        let (s, _) =
            post(&fake, "/v2/bot/message/reply", "wrong", json!({"replyToken": token, "messages": msg}), None).await;
        assert_eq!(s, 401);
        let (s, body) =
            post(&fake, "/v2/bot/message/reply", fake.token(), json!({"replyToken": token, "messages": msg}), None)
                .await;
        assert_eq!(s, 200, "{body}");
        let (s, body) =
            post(&fake, "/v2/bot/message/reply", fake.token(), json!({"replyToken": token, "messages": msg}), None)
                .await;
        assert_eq!((s, body["message"].as_str()), (400, Some(INVALID_REPLY_TOKEN)));
        let (s, body) =
            post(&fake, "/v2/bot/message/push", fake.token(), json!({"to": line_id('U', 2), "messages": msg}), None)
                .await;
        assert_eq!((s, body["message"].as_str()), (400, Some(FAILED_TO_SEND)));
        let key = "123e4567-e89b-12d3-a456-426614174000";
        let push = json!({"to": user.chat_id(), "messages": msg});
        assert_eq!(post(&fake, "/v2/bot/message/push", fake.token(), push.clone(), Some(key)).await.0, 200);
        let (s, body) = post(&fake, "/v2/bot/message/push", fake.token(), push.clone(), Some(key)).await;
        assert_eq!((s, body["message"].as_str()), (409, Some(RETRY_KEY_ACCEPTED)));
        assert_eq!(fake.texts_to(user.chat_id()), vec!["hello", "hello"], "reply + one push; the 409 sent nothing");
        fake.rate_limit_next(1);
        assert_eq!(post(&fake, "/v2/bot/message/push", fake.token(), push, None).await.0, 429);
    }

    #[tokio::test]
    async fn message_objects_are_checked_all_or_nothing() {
        let fake = FakeLine::start().await.unwrap();
        let user = Source::User(line_id('U', 1));
        let ev = fake.text_event(&user, "hi", false);
        fake.arm(std::slice::from_ref(&ev), false);
        let token = ev["replyToken"].as_str().unwrap();
        let long = "あ".repeat(MAX_TEXT + 1);
        let bad = json!([{"type": "text", "text": "ok"}, {"type": "text", "text": long},
                         {"type": "image", "originalContentUrl": "http://x/a.png", "previewImageUrl": "https://x/a.png"}]);
        let (s, body) =
            post(&fake, "/v2/bot/message/reply", fake.token(), json!({"replyToken": token, "messages": bad}), None)
                .await;
        assert_eq!(s, 400);
        assert_eq!(body["message"], "The request body has 2 error(s)", "{body}");
        assert_eq!(body["details"][1]["property"], "messages[2].originalContentUrl");
        let six: Vec<Value> = (0..6).map(|i| json!({"type": "text", "text": i.to_string()})).collect();
        let (s, _) =
            post(&fake, "/v2/bot/message/reply", fake.token(), json!({"replyToken": token, "messages": six}), None)
                .await;
        assert_eq!(s, 400);
        assert!(fake.delivered().is_empty(), "nothing sent, and the token is still good");
        let ok = json!([{"type": "text", "text": "fine"}]);
        let (s, _) =
            post(&fake, "/v2/bot/message/reply", fake.token(), json!({"replyToken": token, "messages": ok}), None)
                .await;
        assert_eq!(s, 200);
    }
}
