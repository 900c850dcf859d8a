//! A fake Slack (Web API, Socket Mode server and the Events API sender) on one `127.0.0.1:0` port.
//!
//! Faithful to `shared/contracts/slack.md` (§2.5 and §5 list what it must do).
//!
//! Web API, under `/api/<method>`, JSON or form bodies: `auth.test`, `chat.postMessage`,
//! `files.getUploadURLExternal` (+ the upload URL it hands out, `/upload/v1/<file id>`) and
//! `files.completeUploadExternal`. Every method checks `Authorization: Bearer <bot token>` (the
//! `token` parameter is accepted too) and answers logical errors as HTTP 200
//! `{"ok":false,"error":…}` with Slack's codes (`not_authed`, `invalid_auth`, `channel_not_found`,
//! `no_text`, `invalid_arguments`, `file_not_found`, `missing_argument`…). `chat.postMessage` has a
//! per-channel token bucket (1 message/s, burst 5 by default) that answers 429 with
//! `Retry-After` and `{"ok":false,"error":"ratelimited"}`; a test can also script the next 429s.
//! Stored text is truncated at 40 000 characters; `ts` values increase. Uploaded bytes are kept
//! so a test can check the PNG that reached a channel.
//!
//! Socket Mode: `apps.connections.open` takes only the app-level token (`xapp-…`) in the
//! `Authorization` header and answers a single-use `ws://…/link/?ticket=…&app_id=…` URL. A
//! socket gets `hello` first, then envelopes; acks (`{"envelope_id"}`) are tracked, and an
//! `events_api` envelope not acked within the ack timeout (3 s; scriptable) is redelivered with a
//! new `envelope_id`, the same `event_id`, `retry_attempt` + 1 and `retry_reason: "timeout"`, up
//! to 3 times, to whichever connection is newest then (an event with no connection open waits for
//! one). Scriptable: `disconnect` (`warning` / `refresh_requested` then a close after a grace,
//! `link_disabled`), an abrupt close without a close frame, a half-open socket (nothing sent,
//! nothing read, no close), and the 10-connection cap. The server pings every connection.
//!
//! Events API over HTTP: the fake signs bodies the way Slack does (`v0` HMAC-SHA256 over
//! `v0:<timestamp>:<body>`), posts `url_verification`, events, and retries with
//! `x-slack-retry-num` / `x-slack-retry-reason`, and can post any bytes with any headers.
//!
//! Slash commands: [`FakeSlack::slash_command`] builds an invocation with Slack's field set
//! (`command`, `text` escaped like message text, `user_id`, `channel_id`, `channel_name`
//! — `directmessage` for `D…` —, `team_id`, `response_url`, a fresh `trigger_id`…). Over HTTP
//! it is POSTed as a signed `application/x-www-form-urlencoded` body (or signed with another
//! secret, for a forgery); Slack does not retry slash commands, and a non-empty 200 body would be
//! shown to the invoker as an ephemeral message, so tests look at the answer's body. In Socket
//! Mode it goes to the newest connection as a `slash_commands` envelope with
//! `accepts_response_payload: true`, never redelivered.
//!
//! Known simplifications: no TLS; one workspace and one app; the workspace-wide posting limit and
//! method tiers other than `chat.postMessage`'s are not modelled.

use std::collections::{HashMap, HashSet, VecDeque};
use std::net::SocketAddr;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use anyhow::Context as _;
use axum::Router;
use axum::body::Bytes;
use axum::extract::ws::{Message as WsMessage, WebSocket, WebSocketUpgrade};
use axum::extract::{DefaultBodyLimit, Path, Query, State};
use axum::http::{HeaderMap, StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use hmac::{Hmac, Mac};
use serde_json::{Value, json};
use sha2::Sha256;
use tokio::sync::mpsc;
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;

/// The default bot token.
pub const DEFAULT_BOT_TOKEN: &str = "xoxb-111-222-fakeslackbottoken";
/// The default app-level token (Socket Mode).
pub const DEFAULT_APP_TOKEN: &str = "xapp-1-A111-222-fakeslackapptoken";
/// The default signing secret (the shape of Slack's: 32 hex digits).
pub const DEFAULT_SIGNING_SECRET: &str = "8f742231b10e8888abcd99eeefff85a5";
/// The bot's user id (`auth.test` `user_id`; mentions read `<@BOT_USER_ID>`).
pub const BOT_USER_ID: &str = "U0CLAWBOT";
/// The bot's bot id (`bot_id` on what it posts).
pub const BOT_ID: &str = "B0CLAWBOT";
/// The workspace.
pub const TEAM_ID: &str = "T0CLAWTEAM";
/// The app.
pub const APP_ID: &str = "A0CLAWAPP";
/// Slack truncates message text past this many characters.
pub const MAX_STORED_TEXT: usize = 40_000;
/// Simultaneous Socket Mode connections per app.
pub const MAX_CONNECTIONS: usize = 10;

type HmacSha256 = Hmac<Sha256>;

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(PoisonError::into_inner)
}

fn unix_secs() -> u64 {
    SystemTime::now().duration_since(UNIX_EPOCH).map(|d| d.as_secs()).unwrap_or(0)
}

/// `v0=` + hex(HMAC-SHA256(signing secret, `v0:<timestamp>:<body>`)): Slack's request signature.
pub fn sign(secret: &str, timestamp: &str, body: &[u8]) -> String {
    let mut mac = <HmacSha256 as Mac>::new_from_slice(secret.as_bytes()).expect("HMAC takes any key");
    mac.update(b"v0:");
    mac.update(timestamp.as_bytes());
    mac.update(b":");
    mac.update(body);
    format!("v0={}", hex::encode(mac.finalize().into_bytes()))
}

/// A message the bot posted (`chat.postMessage`) and Slack accepted.
#[derive(Debug, Clone)]
pub struct Posted {
    /// Conversation id.
    pub channel: String,
    /// Text as stored (truncated at 40 000 characters).
    pub text: String,
    /// The thread it went into.
    pub thread_ts: Option<String>,
    /// Its `ts`.
    pub ts: String,
    /// The whole request, as decoded.
    pub request: Value,
}

/// A file shared by `files.completeUploadExternal`.
#[derive(Debug, Clone)]
pub struct SharedFile {
    /// `F…` id.
    pub id: String,
    /// The `filename` given to `files.getUploadURLExternal`.
    pub filename: String,
    /// Title from `completeUploadExternal` (the filename when none).
    pub title: String,
    /// Where it was shared (`None`: kept private).
    pub channel: Option<String>,
    /// The thread it was shared into.
    pub thread_ts: Option<String>,
    /// `initial_comment`.
    pub comment: Option<String>,
    /// The bytes uploaded.
    pub bytes: Vec<u8>,
}

impl SharedFile {
    /// The bytes start with the PNG signature.
    pub fn is_png(&self) -> bool {
        self.bytes.starts_with(b"\x89PNG\r\n\x1a\n")
    }
}

/// One Web API call, as answered.
#[derive(Debug, Clone)]
pub struct ApiCall {
    /// `chat.postMessage`, `upload`, …
    pub method: String,
    /// HTTP status answered.
    pub status: u16,
    /// The answer body (`Null` for the upload URL).
    pub response: Value,
}

/// What one HTTP push of the Events API got back.
#[derive(Debug, Clone)]
pub struct PushAnswer {
    /// HTTP status.
    pub status: u16,
    /// The body.
    pub body: String,
    /// The `content-type`.
    pub content_type: Option<String>,
}

/// One slash-command invocation, as Slack sends it (see [`FakeSlack::slash_command`]).
#[derive(Debug, Clone)]
pub struct SlashInvocation {
    /// The fields, in Slack's order.
    pub fields: Vec<(String, String)>,
}

impl SlashInvocation {
    fn get(&self, name: &str) -> &str {
        self.fields.iter().find(|(k, _)| k == name).map_or("", |(_, v)| v.as_str())
    }

    /// Its `trigger_id` (unique per invocation).
    pub fn trigger_id(&self) -> &str {
        self.get("trigger_id")
    }

    /// The HTTP body: the fields form-encoded.
    pub fn form_body(&self) -> Vec<u8> {
        url::form_urlencoded::Serializer::new(String::new()).extend_pairs(&self.fields).finish().into_bytes()
    }

    /// The Socket Mode `payload`: the same fields as a JSON object of strings.
    pub fn payload(&self) -> Value {
        Value::Object(self.fields.iter().map(|(k, v)| (k.clone(), Value::String(v.clone()))).collect())
    }
}

/// What ends a Socket Mode connection.
#[derive(Debug)]
enum Control {
    /// Send this text frame.
    Frame(String),
    /// Send `disconnect` with this reason, then close after the grace (`None`: at once).
    Disconnect(String, Option<Duration>),
    /// Drop the TCP connection without a close frame.
    Abort,
    /// Stop sending and reading, keep the TCP connection open.
    HalfOpen,
}

#[derive(Debug)]
struct Conn {
    id: u64,
    tx: mpsc::UnboundedSender<Control>,
    opened: Instant,
}

#[derive(Debug, Clone)]
struct Pending {
    event_id: String,
    payload: Value,
    attempt: u32,
    sent_at: Instant,
}

#[derive(Debug)]
struct Upload {
    filename: String,
    length: usize,
    bytes: Option<Vec<u8>>,
}

#[derive(Debug, Default)]
struct Inner {
    posted: Vec<Posted>,
    calls: Vec<ApiCall>,
    files: Vec<SharedFile>,
    uploads: HashMap<String, Upload>,
    tickets: HashSet<String>,
    conns: Vec<Conn>,
    /// Connections ever opened (hello sent).
    hellos: u64,
    /// Envelopes sent and not acknowledged, by envelope id.
    pending: HashMap<String, Pending>,
    /// `events_api` payloads waiting for a connection.
    queued: VecDeque<(String, Value, u32)>,
    /// Envelope ids acknowledged, in order.
    acks: Vec<String>,
    /// Envelopes sent: (envelope id, event id, retry attempt).
    envelopes: Vec<(String, String, u32)>,
    /// The next `chat.postMessage` calls answered 429 with this `Retry-After`.
    scripted_429: VecDeque<u64>,
    /// The next `apps.connections.open` calls answered 429.
    open_429: u32,
    /// `chat.postMessage` token buckets per channel: (tokens, last refill).
    buckets: HashMap<String, (f64, Instant)>,
    link_disabled: bool,
    /// Acks are read but do not count (as if each arrived after the deadline).
    late_acks: bool,
}

#[derive(Debug)]
struct Shared {
    bot_token: String,
    app_token: String,
    signing_secret: String,
    base: String,
    ack_timeout: Mutex<Duration>,
    max_retries: u32,
    ping_interval: Duration,
    rate_per_sec: f64,
    burst: f64,
    inner: Mutex<Inner>,
    counter: AtomicU64,
    shutdown: CancellationToken,
}

impl Shared {
    fn next(&self) -> u64 {
        self.counter.fetch_add(1, Ordering::SeqCst) + 1
    }

    /// A `ts` greater than every one before: `<unix seconds>.<6-digit sequence>`.
    fn ts(&self) -> String {
        format!("{}.{:06}", unix_secs(), self.next() % 1_000_000)
    }

    fn uuid(&self) -> String {
        let n = self.next();
        format!("{:08x}-{:04x}-4{:03x}-a{:03x}-{:012x}", n as u32, (n >> 8) & 0xffff, n & 0xfff, n & 0xfff, n)
    }
}

/// Options for [`FakeSlack`].
#[derive(Debug, Clone)]
pub struct FakeSlackBuilder {
    bot_token: String,
    app_token: String,
    signing_secret: String,
    ack_timeout: Duration,
    max_retries: u32,
    ping_interval: Duration,
    rate_per_sec: f64,
    burst: f64,
}

impl FakeSlackBuilder {
    /// How long an `events_api` envelope may stay unacknowledged before it is redelivered
    /// (Slack: 3 s).
    pub fn ack_timeout(mut self, wait: Duration) -> Self {
        self.ack_timeout = wait;
        self
    }

    /// How often the server pings each socket.
    pub fn ping_interval(mut self, every: Duration) -> Self {
        self.ping_interval = every;
        self
    }

    /// `chat.postMessage` per channel: messages per second and burst.
    pub fn post_rate(mut self, per_sec: f64, burst: u32) -> Self {
        self.rate_per_sec = per_sec;
        self.burst = f64::from(burst);
        self
    }

    /// Bind `127.0.0.1:0` and serve.
    pub async fn start(self) -> anyhow::Result<FakeSlack> {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.context("binding the fake Slack")?;
        let addr = listener.local_addr()?;
        let shared = Arc::new(Shared {
            bot_token: self.bot_token,
            app_token: self.app_token,
            signing_secret: self.signing_secret,
            base: format!("127.0.0.1:{}", addr.port()),
            ack_timeout: Mutex::new(self.ack_timeout),
            max_retries: self.max_retries,
            ping_interval: self.ping_interval,
            rate_per_sec: self.rate_per_sec,
            burst: self.burst,
            inner: Mutex::new(Inner::default()),
            counter: AtomicU64::new(0),
            shutdown: CancellationToken::new(),
        });
        let app = Router::new()
            .route("/api/{method}", post(api))
            .route("/upload/v1/{file_id}", post(upload))
            .route("/link/", get(link))
            .route("/link", get(link))
            .layer(DefaultBodyLimit::max(64 * 1024 * 1024))
            .with_state(Arc::clone(&shared));
        let shutdown = shared.shutdown.clone();
        let redeliver = tokio::spawn(redelivery(Arc::clone(&shared)));
        let task = tokio::spawn(async move {
            let serve = axum::serve(listener, app).with_graceful_shutdown(shutdown.cancelled_owned());
            if let Err(e) = serve.await {
                tracing::warn!(error = %e, "fake Slack stopped");
            }
        });
        Ok(FakeSlack { addr, shared, tasks: vec![task, redeliver], http: reqwest::Client::new() })
    }
}

/// A running fake Slack; stops when dropped.
#[derive(Debug)]
pub struct FakeSlack {
    addr: SocketAddr,
    shared: Arc<Shared>,
    tasks: Vec<JoinHandle<()>>,
    http: reqwest::Client,
}

impl Drop for FakeSlack {
    fn drop(&mut self) {
        self.shared.shutdown.cancel();
        for t in &self.tasks {
            t.abort();
        }
    }
}

impl FakeSlack {
    /// Options: ack timeout, ping interval, posting rate.
    pub fn builder() -> FakeSlackBuilder {
        FakeSlackBuilder {
            bot_token: DEFAULT_BOT_TOKEN.to_owned(),
            app_token: DEFAULT_APP_TOKEN.to_owned(),
            signing_secret: DEFAULT_SIGNING_SECRET.to_owned(),
            ack_timeout: Duration::from_secs(3),
            max_retries: 3,
            ping_interval: Duration::from_secs(5),
            rate_per_sec: 1.0,
            burst: 5.0,
        }
    }

    /// A fake with the defaults.
    pub async fn start() -> anyhow::Result<FakeSlack> {
        Self::builder().start().await
    }

    /// The socket address.
    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// The Web API root (`apiRoot`): `http://127.0.0.1:PORT/api`.
    pub fn api_root(&self) -> String {
        format!("http://{}/api", self.shared.base)
    }

    /// The bot token.
    pub fn bot_token(&self) -> &str {
        &self.shared.bot_token
    }

    /// The app-level token.
    pub fn app_token(&self) -> &str {
        &self.shared.app_token
    }

    /// The signing secret.
    pub fn signing_secret(&self) -> &str {
        &self.shared.signing_secret
    }

    /// Change the ack timeout from now on.
    pub fn set_ack_timeout(&self, wait: Duration) {
        *lock(&self.shared.ack_timeout) = wait;
    }

    /// From now on acks arrive "too late": they are recorded but the envelope is still
    /// redelivered after the ack timeout (`false` restores normal acking).
    pub fn set_late_acks(&self, late: bool) {
        lock(&self.shared.inner).late_acks = late;
    }

    /// Messages the bot posted, in order.
    pub fn posted(&self) -> Vec<Posted> {
        lock(&self.shared.inner).posted.clone()
    }

    /// Files shared, in order.
    pub fn files(&self) -> Vec<SharedFile> {
        lock(&self.shared.inner).files.clone()
    }

    /// Every Web API call answered, in order.
    pub fn calls(&self) -> Vec<ApiCall> {
        lock(&self.shared.inner).calls.clone()
    }

    /// Answer the next `n` `chat.postMessage` calls with 429 and `Retry-After: secs`.
    pub fn rate_limit_next_posts(&self, n: usize, secs: u64) {
        lock(&self.shared.inner).scripted_429.extend(std::iter::repeat_n(secs, n));
    }

    /// Answer the next `n` `apps.connections.open` calls with 429.
    pub fn rate_limit_next_opens(&self, n: u32) {
        lock(&self.shared.inner).open_429 += n;
    }

    /// Socket Mode connections open now.
    pub fn open_connections(&self) -> usize {
        lock(&self.shared.inner).conns.len()
    }

    /// `hello`s sent since start (one per accepted connection).
    pub fn hellos(&self) -> u64 {
        lock(&self.shared.inner).hellos
    }

    /// Envelope ids acknowledged, in order.
    pub fn acks(&self) -> Vec<String> {
        lock(&self.shared.inner).acks.clone()
    }

    /// Envelopes sent: (envelope id, event id — a slash command's `trigger_id` —, retry attempt).
    pub fn envelopes(&self) -> Vec<(String, String, u32)> {
        lock(&self.shared.inner).envelopes.clone()
    }

    /// `events_api` envelopes sent and not acknowledged yet.
    pub fn unacked(&self) -> usize {
        lock(&self.shared.inner).pending.len()
    }

    /// A `ts` for a message a user writes (increasing, like Slack's).
    pub fn new_ts(&self) -> String {
        self.shared.ts()
    }

    /// An inner `message` event from `user` in `channel`; `channel_type` is `im`, `channel`,
    /// `group` or `mpim`. Text is escaped as Slack does (`&`, `<`, `>`) except mentions, which
    /// the caller writes as `<@U…>` and are kept.
    pub fn message(&self, channel: &str, channel_type: &str, user: &str, text: &str) -> Value {
        let ts = self.new_ts();
        json!({"type": "message", "channel": channel, "channel_type": channel_type, "user": user,
               "text": escape_keeping_mentions(text), "ts": ts, "event_ts": ts, "team": TEAM_ID,
               "client_msg_id": self.shared.uuid()})
    }

    /// The `app_mention` event Slack sends beside `message` (same `ts`), for a mention of the bot.
    pub fn app_mention_of(&self, message: &Value) -> Value {
        let mut e = message.clone();
        e["type"] = json!("app_mention");
        if let Some(o) = e.as_object_mut() {
            o.remove("channel_type");
        }
        e
    }

    /// The outer `event_callback` body of an inner event, with a fresh `event_id`.
    pub fn event_callback(&self, event: Value) -> Value {
        let n = self.shared.next();
        json!({"type": "event_callback", "token": "XXYYZZ", "team_id": TEAM_ID, "api_app_id": APP_ID,
               "event": event, "event_id": format!("Ev{n:010}"), "event_time": unix_secs(),
               "event_context": format!("EC{n:010}"),
               "authorizations": [{"enterprise_id": null, "team_id": TEAM_ID, "user_id": BOT_USER_ID,
                                   "is_bot": true, "is_enterprise_install": false}],
               "is_ext_shared_channel": false, "context_team_id": TEAM_ID, "context_enterprise_id": null})
    }

    /// Socket Mode: deliver an `event_callback` body as an `events_api` envelope to the newest
    /// connection (or when one opens). Returns the `event_id`.
    pub fn send_event(&self, callback: &Value) -> String {
        let event_id = callback["event_id"].as_str().unwrap_or_default().to_owned();
        deliver(&self.shared, event_id.clone(), callback.clone(), 0);
        event_id
    }

    /// Socket Mode: send `disconnect` with `reason` on every open connection; close each after
    /// `close_after` (`None`: leave it open; Slack closes `warning` ones ~10 s later).
    pub fn disconnect_all(&self, reason: &str, close_after: Option<Duration>) {
        let inner = &mut *lock(&self.shared.inner);
        if reason == "link_disabled" {
            inner.link_disabled = true;
        }
        for c in &inner.conns {
            let _ = c.tx.send(Control::Disconnect(reason.to_owned(), close_after));
        }
    }

    /// Socket Mode: drop the newest connection without a close frame.
    pub fn abort_newest(&self) {
        if let Some(c) = lock(&self.shared.inner).conns.iter().max_by_key(|c| c.opened) {
            let _ = c.tx.send(Control::Abort);
        }
    }

    /// Socket Mode: make the newest connection half-open: it stays up but sends nothing (no
    /// events, no pings) and reads nothing (no pongs). It no longer takes envelopes.
    pub fn half_open_newest(&self) {
        let inner = &mut *lock(&self.shared.inner);
        if let Some(i) = inner.conns.iter().enumerate().max_by_key(|(_, c)| c.opened).map(|(i, _)| i) {
            let c = inner.conns.remove(i);
            let _ = c.tx.send(Control::HalfOpen);
        }
    }

    /// Events API: POST `body` to `url` signed now, with `x-slack-retry-num`/`-reason` when
    /// `retry` is given.
    pub async fn push(&self, url: &str, body: &Value, retry: Option<(u32, &str)>) -> anyhow::Result<PushAnswer> {
        let raw = body.to_string().into_bytes();
        let ts = unix_secs().to_string();
        let sig = sign(&self.shared.signing_secret, &ts, &raw);
        let mut headers = vec![
            ("content-type".to_owned(), "application/json".to_owned()),
            ("x-slack-request-timestamp".to_owned(), ts),
            ("x-slack-signature".to_owned(), sig),
        ];
        if let Some((n, reason)) = retry {
            headers.push(("x-slack-retry-num".to_owned(), n.to_string()));
            headers.push(("x-slack-retry-reason".to_owned(), reason.to_owned()));
        }
        self.push_raw(url, raw, &headers).await
    }

    /// Events API: `url_verification` with `challenge`.
    pub async fn push_url_verification(&self, url: &str, challenge: &str) -> anyhow::Result<PushAnswer> {
        let body = json!({"token": "Jhj5dZrVaK7ZwHHjRyZWjbDl", "challenge": challenge, "type": "url_verification"});
        self.push(url, &body, None).await
    }

    /// Events API: deliver an event as Slack does: up to 3 retries (`x-slack-retry-num` 1..3,
    /// `retry_reason` `http_error` or `http_timeout`) while the answer is not a 2xx within 3 s,
    /// none after a non-2xx carrying `x-slack-no-retry: 1`. Returns every answer.
    pub async fn deliver_http(&self, url: &str, body: &Value, retry_delay: Duration) -> Vec<Option<PushAnswer>> {
        let mut out = Vec::new();
        let mut retry: Option<(u32, &str)> = None;
        for attempt in 0..=3u32 {
            let answer = tokio::time::timeout(Duration::from_secs(3), self.push(url, body, retry)).await;
            let (reason, answer) = match answer {
                Ok(Ok(a)) if (200..300).contains(&a.status) => {
                    out.push(Some(a));
                    return out;
                }
                Ok(Ok(a)) => ("http_error", Some(a)),
                Ok(Err(_)) => ("connection_failed", None),
                Err(_) => ("http_timeout", None),
            };
            out.push(answer);
            if attempt == 3 {
                break;
            }
            retry = Some((attempt + 1, reason));
            tokio::time::sleep(retry_delay).await;
        }
        out
    }

    /// POST any bytes with any headers (forged signatures, stale timestamps).
    pub async fn push_raw(&self, url: &str, body: Vec<u8>, headers: &[(String, String)]) -> anyhow::Result<PushAnswer> {
        let mut req = self.http.post(url).body(body);
        for (k, v) in headers {
            req = req.header(k, v);
        }
        let resp = req.send().await.context("posting to the gateway")?;
        let status = resp.status().as_u16();
        let content_type = resp.headers().get(header::CONTENT_TYPE).and_then(|v| v.to_str().ok()).map(str::to_owned);
        let body = resp.text().await.unwrap_or_default();
        Ok(PushAnswer { status, body, content_type })
    }

    /// Sign as Slack would, for a test that forges or ages headers.
    pub fn sign_now(&self, timestamp: &str, body: &[u8]) -> String {
        sign(&self.shared.signing_secret, timestamp, body)
    }

    /// A slash command `command` (`/run`) with `text`, typed by `user` in `channel` (`C…`, `G…`
    /// or `D…`), with a fresh `trigger_id` and `response_url`.
    pub fn slash_command(&self, channel: &str, user: &str, command: &str, text: &str) -> SlashInvocation {
        let n = self.shared.next();
        let channel_name = if channel.starts_with('D') { "directmessage".to_owned() } else { channel.to_lowercase() };
        let fields = [
            ("token", "gIkuvaNzQIHg97ATvDxqgjtO".to_owned()),
            ("team_id", TEAM_ID.to_owned()),
            ("team_domain", "clawgate-tests".to_owned()),
            ("channel_id", channel.to_owned()),
            ("channel_name", channel_name),
            ("user_id", user.to_owned()),
            ("user_name", user.to_lowercase()),
            ("command", command.to_owned()),
            ("text", escape_keeping_mentions(text)),
            ("api_app_id", APP_ID.to_owned()),
            ("is_enterprise_install", "false".to_owned()),
            ("response_url", format!("https://hooks.slack.com/commands/{TEAM_ID}/{n}/{}", self.shared.uuid())),
            ("trigger_id", format!("{n}.{}.{}", unix_secs(), hex::encode(self.shared.uuid()))),
        ];
        SlashInvocation { fields: fields.into_iter().map(|(k, v)| (k.to_owned(), v)).collect() }
    }

    /// HTTP: POST the invocation to `url` as Slack does: a form body signed now with the signing
    /// secret.
    pub async fn push_slash_command(&self, url: &str, invocation: &SlashInvocation) -> anyhow::Result<PushAnswer> {
        let secret = self.shared.signing_secret.clone();
        self.push_slash_command_signed_with(url, invocation, &secret).await
    }

    /// HTTP: the same POST signed with another `secret` (a forgery).
    pub async fn push_slash_command_signed_with(
        &self,
        url: &str,
        invocation: &SlashInvocation,
        secret: &str,
    ) -> anyhow::Result<PushAnswer> {
        let body = invocation.form_body();
        let ts = unix_secs().to_string();
        let headers = [
            ("content-type".to_owned(), "application/x-www-form-urlencoded".to_owned()),
            ("x-slack-request-timestamp".to_owned(), ts.clone()),
            ("x-slack-signature".to_owned(), sign(secret, &ts, &body)),
        ];
        self.push_raw(url, body, &headers).await
    }

    /// Socket Mode: send the invocation as a `slash_commands` envelope to the newest connection.
    /// Returns the envelope id (see [`FakeSlack::acks`]); Slack does not redeliver slash commands.
    pub fn send_slash_command(&self, invocation: &SlashInvocation) -> anyhow::Result<String> {
        let inner = &mut *lock(&self.shared.inner);
        let conn = inner.conns.iter().max_by_key(|c| c.opened).context("no Socket Mode connection is open")?;
        let envelope_id = self.shared.uuid();
        let frame = json!({"envelope_id": envelope_id, "type": "slash_commands", "accepts_response_payload": true,
                           "payload": invocation.payload()});
        conn.tx.send(Control::Frame(frame.to_string())).ok().context("the connection is closing")?;
        inner.envelopes.push((envelope_id.clone(), invocation.trigger_id().to_owned(), 0));
        Ok(envelope_id)
    }
}

/// Slack's escaping of user text: `&`, `<`, `>`, except `<@U…>` mentions.
fn escape_keeping_mentions(text: &str) -> String {
    let mut out = String::new();
    let mut rest = text;
    while let Some(start) = rest.find("<@") {
        let (before, from) = rest.split_at(start);
        out.push_str(&escape(before));
        match from.find('>') {
            Some(end) => {
                out.push_str(&from[..=end]);
                rest = &from[end + 1..];
            }
            None => {
                out.push_str(&escape(from));
                rest = "";
            }
        }
    }
    out.push_str(&escape(rest));
    out
}

fn escape(s: &str) -> String {
    s.replace('&', "&amp;").replace('<', "&lt;").replace('>', "&gt;")
}

/// Send an `events_api` envelope to the newest connection, or queue it for the next one.
fn deliver(shared: &Shared, event_id: String, payload: Value, attempt: u32) {
    let inner = &mut *lock(&shared.inner);
    let Some(conn) = inner.conns.iter().max_by_key(|c| c.opened) else {
        inner.queued.push_back((event_id, payload, attempt));
        return;
    };
    let envelope_id = shared.uuid();
    let mut frame = json!({"envelope_id": envelope_id, "type": "events_api", "accepts_response_payload": false,
                           "payload": payload});
    if attempt > 0 {
        frame["retry_attempt"] = json!(attempt);
        frame["retry_reason"] = json!("timeout");
    }
    let _ = conn.tx.send(Control::Frame(frame.to_string()));
    inner.envelopes.push((envelope_id.clone(), event_id.clone(), attempt));
    inner.pending.insert(envelope_id, Pending { event_id, payload, attempt, sent_at: Instant::now() });
}

/// Redeliver envelopes not acknowledged within the ack timeout.
async fn redelivery(shared: Arc<Shared>) {
    loop {
        tokio::select! {
            () = shared.shutdown.cancelled() => return,
            () = tokio::time::sleep(Duration::from_millis(50)) => {}
        }
        let timeout = *lock(&shared.ack_timeout);
        let due: Vec<Pending> = {
            let inner = &mut *lock(&shared.inner);
            let ids: Vec<String> = inner
                .pending
                .iter()
                .filter(|(_, p)| p.sent_at.elapsed() >= timeout)
                .map(|(id, _)| id.clone())
                .collect();
            ids.iter().filter_map(|id| inner.pending.remove(id)).collect()
        };
        for p in due {
            if p.attempt < shared.max_retries {
                deliver(&shared, p.event_id, p.payload, p.attempt + 1);
            }
        }
    }
}

fn ok_false(error: &str) -> Value {
    json!({"ok": false, "error": error})
}

/// Arguments of a Web API call: JSON or form body, `token` parameter included.
fn arguments(headers: &HeaderMap, body: &Bytes) -> Option<serde_json::Map<String, Value>> {
    let ct = headers.get(header::CONTENT_TYPE).and_then(|v| v.to_str().ok()).unwrap_or("");
    if body.is_empty() {
        return Some(serde_json::Map::new());
    }
    if ct.starts_with("application/json") {
        return serde_json::from_slice::<Value>(body).ok()?.as_object().cloned();
    }
    let pairs: Vec<(String, String)> = url::form_urlencoded::parse(body).into_owned().collect();
    Some(pairs.into_iter().map(|(k, v)| (k, Value::String(v))).collect())
}

fn bearer(headers: &HeaderMap) -> Option<String> {
    headers
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.strip_prefix("Bearer "))
        .map(str::to_owned)
}

fn str_arg<'a>(args: &'a serde_json::Map<String, Value>, key: &str) -> Option<&'a str> {
    args.get(key).and_then(Value::as_str).filter(|s| !s.is_empty())
}

fn answer(shared: &Shared, method: &str, status: StatusCode, body: Value) -> Response {
    lock(&shared.inner).calls.push(ApiCall {
        method: method.to_owned(),
        status: status.as_u16(),
        response: body.clone(),
    });
    (status, axum::Json(body)).into_response()
}

/// `POST /api/<method>`.
async fn api(
    State(shared): State<Arc<Shared>>,
    Path(method): Path<String>,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    let Some(args) = arguments(&headers, &body) else {
        return answer(&shared, &method, StatusCode::OK, ok_false("invalid_form_data"));
    };
    let token = bearer(&headers).or_else(|| str_arg(&args, "token").map(str::to_owned));
    if method == "apps.connections.open" {
        return connections_open(&shared, bearer(&headers));
    }
    match token {
        None => return answer(&shared, &method, StatusCode::OK, ok_false("not_authed")),
        Some(t) if t != shared.bot_token => {
            return answer(&shared, &method, StatusCode::OK, ok_false("invalid_auth"));
        }
        Some(_) => {}
    }
    let (status, body) = match method.as_str() {
        "auth.test" => (
            StatusCode::OK,
            json!({"ok": true, "url": "https://clawgate-tests.slack.com/", "team": "Clawgate Tests",
                   "user": "clawbot", "team_id": TEAM_ID, "user_id": BOT_USER_ID, "bot_id": BOT_ID,
                   "is_enterprise_install": false}),
        ),
        "chat.postMessage" => post_message(&shared, &args),
        "files.getUploadURLExternal" => get_upload_url(&shared, &args),
        "files.completeUploadExternal" => complete_upload(&shared, &args),
        _ => (StatusCode::OK, ok_false("unknown_method")),
    };
    let retry_after = (status == StatusCode::TOO_MANY_REQUESTS).then(|| body["retry_after"].as_u64().unwrap_or(1));
    let mut body = body;
    if let Some(o) = body.as_object_mut() {
        o.remove("retry_after");
    }
    let mut resp = answer(&shared, &method, status, body);
    if let Some(secs) = retry_after
        && let Ok(v) = secs.to_string().parse()
    {
        resp.headers_mut().insert(header::RETRY_AFTER, v);
    }
    resp
}

fn connections_open(shared: &Shared, token: Option<String>) -> Response {
    const M: &str = "apps.connections.open";
    let Some(token) = token else {
        return answer(shared, M, StatusCode::OK, ok_false("missing_args"));
    };
    if !token.starts_with("xapp-") || token != shared.app_token {
        return answer(shared, M, StatusCode::OK, ok_false("invalid_auth"));
    }
    let limited = {
        let mut inner = lock(&shared.inner);
        let limited = inner.open_429 > 0;
        inner.open_429 = inner.open_429.saturating_sub(1);
        limited
    };
    {
        if limited {
            let mut resp = answer(shared, M, StatusCode::TOO_MANY_REQUESTS, ok_false("ratelimited"));
            resp.headers_mut().insert(header::RETRY_AFTER, axum::http::HeaderValue::from_static("1"));
            return resp;
        }
    }
    let ticket = shared.uuid();
    lock(&shared.inner).tickets.insert(ticket.clone());
    let url = format!("ws://{}/link/?ticket={ticket}&app_id={APP_ID}", shared.base);
    answer(shared, M, StatusCode::OK, json!({"ok": true, "url": url}))
}

fn post_message(shared: &Shared, args: &serde_json::Map<String, Value>) -> (StatusCode, Value) {
    let Some(channel) = str_arg(args, "channel") else {
        return (StatusCode::OK, ok_false("channel_not_found"));
    };
    let text = str_arg(args, "text").map(str::to_owned);
    let has_blocks = args.get("blocks").is_some_and(|b| !b.is_null());
    if text.is_none() && !has_blocks {
        return (StatusCode::OK, ok_false("no_text"));
    }
    let valid_channel = channel.len() > 1 && matches!(channel.as_bytes()[0], b'C' | b'D' | b'G' | b'U');
    if !valid_channel {
        return (StatusCode::OK, ok_false("channel_not_found"));
    }
    let inner = &mut *lock(&shared.inner);
    if let Some(secs) = inner.scripted_429.pop_front() {
        return (StatusCode::TOO_MANY_REQUESTS, json!({"ok": false, "error": "ratelimited", "retry_after": secs}));
    }
    let now = Instant::now();
    let bucket = inner.buckets.entry(channel.to_owned()).or_insert((shared.burst, now));
    bucket.0 = (bucket.0 + now.duration_since(bucket.1).as_secs_f64() * shared.rate_per_sec).min(shared.burst);
    bucket.1 = now;
    if bucket.0 < 1.0 {
        let wait = ((1.0 - bucket.0) / shared.rate_per_sec).ceil().max(1.0) as u64;
        return (StatusCode::TOO_MANY_REQUESTS, json!({"ok": false, "error": "ratelimited", "retry_after": wait}));
    }
    bucket.0 -= 1.0;
    let thread_ts = str_arg(args, "thread_ts").map(str::to_owned);
    let ts = shared.ts();
    let stored: String = text.unwrap_or_default().chars().take(MAX_STORED_TEXT).collect();
    inner.posted.push(Posted {
        channel: channel.to_owned(),
        text: stored.clone(),
        thread_ts: thread_ts.clone(),
        ts: ts.clone(),
        request: Value::Object(args.clone()),
    });
    let mut message = json!({"text": stored, "bot_id": BOT_ID, "type": "message", "subtype": "bot_message", "ts": ts});
    if let Some(t) = thread_ts {
        message["thread_ts"] = json!(t);
    }
    (StatusCode::OK, json!({"ok": true, "channel": channel, "ts": ts, "message": message}))
}

fn get_upload_url(shared: &Shared, args: &serde_json::Map<String, Value>) -> (StatusCode, Value) {
    let Some(filename) = str_arg(args, "filename") else {
        return (StatusCode::OK, ok_false("invalid_arguments"));
    };
    let length = match args.get("length") {
        Some(Value::Number(n)) => n.as_u64(),
        Some(Value::String(s)) => s.parse().ok(),
        _ => None,
    };
    let Some(length) = length else {
        return (StatusCode::OK, ok_false("invalid_arguments"));
    };
    if length == 0 {
        return (StatusCode::OK, ok_false("missing_argument"));
    }
    let id = format!("F{:010}", shared.next());
    lock(&shared.inner)
        .uploads
        .insert(id.clone(), Upload { filename: filename.to_owned(), length: length as usize, bytes: None });
    let url = format!("http://{}/upload/v1/{id}", shared.base);
    (StatusCode::OK, json!({"ok": true, "upload_url": url, "file_id": id}))
}

/// `POST <upload_url>`: the bytes, raw or as a multipart `filename` part. 200 = stored.
async fn upload(
    State(shared): State<Arc<Shared>>,
    Path(file_id): Path<String>,
    Query(_q): Query<HashMap<String, String>>,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    let ct = headers.get(header::CONTENT_TYPE).and_then(|v| v.to_str().ok()).unwrap_or("").to_owned();
    let bytes = if let Some(boundary) = ct.strip_prefix("multipart/form-data; boundary=") {
        match first_multipart_part(&body, boundary.trim_matches('"')) {
            Some(b) => b,
            None => return (StatusCode::BAD_REQUEST, "bad multipart body").into_response(),
        }
    } else {
        body.to_vec()
    };
    let inner = &mut *lock(&shared.inner);
    let status = match inner.uploads.get_mut(&file_id) {
        None => StatusCode::NOT_FOUND,
        Some(u) if u.bytes.is_some() => StatusCode::BAD_REQUEST,
        Some(u) if u.length != bytes.len() => StatusCode::BAD_REQUEST,
        Some(u) => {
            u.bytes = Some(bytes);
            StatusCode::OK
        }
    };
    inner.calls.push(ApiCall { method: "upload".to_owned(), status: status.as_u16(), response: Value::Null });
    (status, format!("OK - {}", body.len())).into_response()
}

/// The content of the first part of a multipart body.
fn first_multipart_part(body: &[u8], boundary: &str) -> Option<Vec<u8>> {
    let delim = format!("--{boundary}");
    let start = find(body, delim.as_bytes())? + delim.len();
    let rest = &body[start..];
    let head_end = find(rest, b"\r\n\r\n")? + 4;
    let content = &rest[head_end..];
    let end = find(content, format!("\r\n--{boundary}").as_bytes())?;
    Some(content[..end].to_vec())
}

fn find(hay: &[u8], needle: &[u8]) -> Option<usize> {
    hay.windows(needle.len()).position(|w| w == needle)
}

fn complete_upload(shared: &Shared, args: &serde_json::Map<String, Value>) -> (StatusCode, Value) {
    let files = match args.get("files") {
        Some(Value::Array(a)) => a.clone(),
        Some(Value::String(s)) => match serde_json::from_str::<Value>(s) {
            Ok(Value::Array(a)) => a,
            _ => return (StatusCode::OK, ok_false("invalid_arguments")),
        },
        _ => return (StatusCode::OK, ok_false("invalid_arguments")),
    };
    if files.is_empty() {
        return (StatusCode::OK, ok_false("invalid_arguments"));
    }
    let channel = str_arg(args, "channel_id").or_else(|| str_arg(args, "channels")).map(str::to_owned);
    if let Some(c) = &channel
        && !(c.len() > 1 && matches!(c.as_bytes()[0], b'C' | b'D' | b'G'))
    {
        return (StatusCode::OK, ok_false("channel_not_found"));
    }
    let thread_ts = str_arg(args, "thread_ts").map(str::to_owned);
    let comment = str_arg(args, "initial_comment").map(str::to_owned);
    let inner = &mut *lock(&shared.inner);
    let mut done = Vec::new();
    for f in &files {
        let Some(id) = f["id"].as_str() else { return (StatusCode::OK, ok_false("invalid_arguments")) };
        match inner.uploads.get(id) {
            Some(u) if u.bytes.is_some() => {}
            _ => return (StatusCode::OK, ok_false("file_not_found")),
        }
        done.push((id.to_owned(), f["title"].as_str().map(str::to_owned)));
    }
    let mut out = Vec::new();
    for (id, title) in done {
        let Some(u) = inner.uploads.remove(&id) else { continue };
        let title = title.unwrap_or_else(|| u.filename.clone());
        out.push(json!({"id": id, "title": title}));
        inner.files.push(SharedFile {
            id,
            filename: u.filename,
            title,
            channel: channel.clone(),
            thread_ts: thread_ts.clone(),
            comment: comment.clone(),
            bytes: u.bytes.unwrap_or_default(),
        });
    }
    (StatusCode::OK, json!({"ok": true, "files": out}))
}

/// `GET /link/?ticket=…&app_id=…`: a Socket Mode connection.
async fn link(
    State(shared): State<Arc<Shared>>,
    Query(q): Query<HashMap<String, String>>,
    ws: WebSocketUpgrade,
) -> Response {
    let ticket = q.get("ticket").cloned().unwrap_or_default();
    {
        let inner = &mut *lock(&shared.inner);
        if !inner.tickets.remove(&ticket) || q.get("app_id").map(String::as_str) != Some(APP_ID) {
            return (StatusCode::UNAUTHORIZED, "invalid or used ticket").into_response();
        }
        if inner.conns.len() >= MAX_CONNECTIONS {
            return (StatusCode::TOO_MANY_REQUESTS, "too many connections").into_response();
        }
    }
    ws.on_upgrade(move |socket| connection(shared, socket))
}

async fn connection(shared: Arc<Shared>, mut ws: WebSocket) {
    let (tx, mut rx) = mpsc::unbounded_channel();
    let id = shared.next();
    let hello = {
        let inner = &mut *lock(&shared.inner);
        let n = inner.conns.len() + 1;
        json!({"type": "hello", "num_connections": n, "connection_info": {"app_id": APP_ID},
               "debug_info": {"host": format!("applink-fake-{id}"), "started": "2026-12-07 00:00:00.000",
                              "build_number": 54, "approximate_connection_time": 3600}})
    };
    if ws.send(WsMessage::Text(hello.to_string().into())).await.is_err() {
        return;
    }
    {
        let queued: Vec<_> = {
            let mut inner = lock(&shared.inner);
            inner.hellos += 1;
            inner.conns.push(Conn { id, tx, opened: Instant::now() });
            inner.queued.drain(..).collect()
        };
        for (event_id, payload, attempt) in queued {
            deliver(&shared, event_id, payload, attempt);
        }
    }
    let mut ping = tokio::time::interval(shared.ping_interval);
    ping.tick().await;
    let mut close_at: Option<tokio::time::Instant> = None;
    loop {
        let close_sleep = async {
            match close_at {
                Some(at) => tokio::time::sleep_until(at).await,
                None => std::future::pending().await,
            }
        };
        tokio::select! {
            () = shared.shutdown.cancelled() => break,
            () = close_sleep => {
                let _ = ws.send(WsMessage::Close(None)).await;
                break;
            }
            _ = ping.tick() => {
                if ws.send(WsMessage::Ping(Bytes::from_static(b"fake-slack"))).await.is_err() {
                    break;
                }
            }
            ctl = rx.recv() => match ctl {
                None => break,
                Some(Control::Frame(text)) => {
                    if ws.send(WsMessage::Text(text.into())).await.is_err() {
                        break;
                    }
                }
                Some(Control::Disconnect(reason, after)) => {
                    let frame = json!({"type": "disconnect", "reason": reason,
                                       "debug_info": {"host": format!("applink-fake-{id}")}});
                    let _ = ws.send(WsMessage::Text(frame.to_string().into())).await;
                    if reason == "link_disabled" {
                        let _ = ws.send(WsMessage::Close(None)).await;
                        break;
                    }
                    if let Some(after) = after {
                        close_at = Some(tokio::time::Instant::now() + after);
                    }
                }
                Some(Control::Abort) => break,
                Some(Control::HalfOpen) => {
                    // Nothing more is sent or read; the socket stays up until the fake stops.
                    remove_conn(&shared, id);
                    shared.shutdown.cancelled().await;
                    return;
                }
            },
            msg = ws.recv() => match msg {
                None | Some(Err(_)) | Some(Ok(WsMessage::Close(_))) => break,
                Some(Ok(WsMessage::Text(text))) => {
                    if let Ok(v) = serde_json::from_str::<Value>(text.as_str())
                        && let Some(envelope_id) = v["envelope_id"].as_str()
                    {
                        let inner = &mut *lock(&shared.inner);
                        if !inner.late_acks {
                            inner.pending.remove(envelope_id);
                        }
                        inner.acks.push(envelope_id.to_owned());
                    }
                }
                Some(Ok(_)) => {}
            },
        }
    }
    remove_conn(&shared, id);
}

fn remove_conn(shared: &Shared, id: u64) {
    lock(&shared.inner).conns.retain(|c| c.id != id);
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn signature_matches_slacks_known_answer() {
        // docs.slack.dev "Verifying requests from Slack", the worked example.
        let body = b"token=xyzz0WbapA4vBCDEFasx0q6G&team_id=T1DC2JH3J&team_domain=testteamnow&channel_id=G8PSS9T3V&channel_name=foobar&user_id=U2CERLKJA&user_name=roadrunner&command=%2Fwebhook-collect&text=&response_url=https%3A%2F%2Fhooks.slack.com%2Fcommands%2FT1DC2JH3J%2F397700885554%2F96rGlfmibIGlgcZRskXaIFfN&trigger_id=398738663015.47445629121.803a0bc887a14d10d2c447fce8b6703c";
        assert_eq!(
            sign("8f742231b10e8888abcd99yyyzzz85a5", "1531420618", body),
            "v0=a2114d57b48eac39b9ad189dd8316235a7b4a8d21a10bd27519666489c69b503"
        );
    }

    #[tokio::test]
    async fn a_slash_command_carries_slacks_fields_form_encoded() {
        let slack = FakeSlack::start().await.unwrap();
        let a = slack.slash_command("D0X", "U0X", "/run", "invert a=1 & b");
        let b = slack.slash_command("C0X", "U0X", "/run", "");
        assert_ne!(a.trigger_id(), b.trigger_id());
        let parsed: Vec<(String, String)> = url::form_urlencoded::parse(&a.form_body()).into_owned().collect();
        assert_eq!(parsed, a.fields);
        assert_eq!(a.get("text"), "invert a=1 &amp; b");
        assert_eq!((a.get("channel_name"), b.get("channel_name")), ("directmessage", "c0x"));
        assert_eq!(a.payload()["command"], "/run");
        assert!(slack.send_slash_command(&a).is_err(), "no socket open");
    }

    #[test]
    fn user_text_is_escaped_but_mentions_are_kept() {
        assert_eq!(escape_keeping_mentions("<@U1> a & b <c>"), "<@U1> a &amp; b &lt;c&gt;");
    }
}
