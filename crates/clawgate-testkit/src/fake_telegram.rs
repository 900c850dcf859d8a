//! A fake Telegram Bot API on one `127.0.0.1:0` port.
//!
//! Faithful to `shared/contracts/telegram-bot-api.md` (§11 lists what it must do): methods under
//! `/bot<token>/<method>` (case-insensitive, an optional `/test` segment accepted), files under
//! `/file/bot<token>/<file_path>`; parameters from a query string, a urlencoded form, a JSON body or
//! a multipart body, with the "JSON-serialized" parameters decoded from strings; answers in the
//! real envelope with the real descriptions, HTTP status = `error_code`, `Retry-After` on 429.
//!
//! Per bot it keeps an update queue with increasing `update_id`s: `getUpdates` confirms by
//! `offset` (negative offsets too), clamps `limit` to 1-100 and `timeout` to 0-50 s, holds a long
//! poll until an update is queued, raises a too-short timeout the way the real server's
//! anti-busy-loop rule does, answers a superseded long poll 409 (throttled to one conflict every
//! 3 s like the server) and refuses polling while a webhook is set. It records every call (method,
//! decoded parameters, uploaded files, the answer) and the most `getUpdates` requests it ever had in
//! flight at once, so tests can prove a client polls from exactly one loop.
//!
//! Test hooks script failures (`fail_next`: 429 with `retry_after`, 5xx, any error such as 403 "bot
//! was blocked by the user") and webhook delivery (`post_webhook` POSTs an `Update` to the URL the
//! client registered, with its `X-Telegram-Bot-Api-Secret-Token`).
//!
//! Known simplifications: text and caption lengths are counted on the raw string (the real server
//! counts after entity parsing, so with `parse_mode` the fake is stricter); `http://` webhook URLs
//! are accepted (tests have no TLS); any numeric `chat_id` is a reachable chat unless a test
//! scripts otherwise; an over-size photo is refused with `Bad Request: file is too big` (the
//! contract does not name the real text).

use std::collections::{HashMap, HashSet, VecDeque};
use std::net::SocketAddr;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use anyhow::Context as _;
use axum::Router;
use axum::body::{Body, Bytes};
use axum::extract::{DefaultBodyLimit, Form, FromRequest, Multipart, Query, Request, State};
use axum::http::{HeaderValue, Method, StatusCode, header};
use axum::response::{IntoResponse, Response};
use serde_json::{Map, Value, json};
use tokio::sync::{oneshot, watch};
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;

/// The default bot's id.
pub const DEFAULT_BOT_ID: i64 = 7_000_000_001;
/// The default bot's username.
pub const DEFAULT_BOT_USERNAME: &str = "clawgate_test_bot";
/// The token of the default bot (`<bot id>:<secret>`, the real shape).
pub const DEFAULT_TOKEN: &str = "7000000001:AAFakeTelegramSecretForClawgateTests-x1";
/// Longest `sendMessage.text`, in UTF-16 code units.
pub const MAX_TEXT: usize = 4096;
/// Longest caption, in UTF-16 code units.
pub const MAX_CAPTION: usize = 1024;
/// Largest photo upload.
pub const MAX_PHOTO_BYTES: usize = 10 * 1024 * 1024;
/// Largest upload of any other file.
pub const MAX_UPLOAD_BYTES: usize = 50 * 1024 * 1024;
/// The header carrying a webhook's secret token.
pub const SECRET_HEADER: &str = "X-Telegram-Bot-Api-Secret-Token";

/// 409 answered to a long poll superseded by a newer `getUpdates`.
pub const CONFLICT_OTHER_GET_UPDATES: &str =
    "Conflict: terminated by other getUpdates request; make sure that only one bot instance is running";
/// 409 answered to `getUpdates` while a webhook is set.
pub const CONFLICT_WEBHOOK_ACTIVE: &str =
    "Conflict: can't use getUpdates method while webhook is active; use deleteWebhook to delete the webhook first";
/// 409 answered to a long poll pending when `setWebhook` is called.
pub const CONFLICT_SET_WEBHOOK: &str = "Conflict: terminated by setWebhook request";
/// 400 for a text over [`MAX_TEXT`].
pub const TOO_LONG: &str = "Bad Request: message is too long";
/// 403 for a user who blocked the bot.
pub const BLOCKED: &str = "Forbidden: bot was blocked by the user";
/// 400 for an unknown chat.
pub const CHAT_NOT_FOUND: &str = "Bad Request: chat not found";

/// Longest long poll the server holds (`LONG_POLL_MAX_TIMEOUT`).
const MAX_POLL_TIMEOUT: u64 = 50;
/// Conflict answers are sent at most once per this interval; others wait this long first.
const CONFLICT_THROTTLE: Duration = Duration::from_secs(3);
/// Keys whose values are JSON-serialized when the body is not JSON.
const JSON_KEYS: &[&str] =
    &["allowed_updates", "reply_parameters", "link_preview_options", "entities", "caption_entities", "reply_markup"];
/// What `sendChatAction` accepts.
const CHAT_ACTIONS: &[&str] = &[
    "typing",
    "upload_photo",
    "record_video",
    "upload_video",
    "record_voice",
    "upload_voice",
    "upload_document",
    "choose_sticker",
    "find_location",
    "record_video_note",
    "upload_video_note",
];

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(PoisonError::into_inner)
}

fn unix_now() -> i64 {
    SystemTime::now().duration_since(UNIX_EPOCH).map(|d| d.as_secs() as i64).unwrap_or(0)
}

fn utf16_len(s: &str) -> usize {
    s.encode_utf16().count()
}

/// A Telegram user as the fake writes it into updates.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FakeUser {
    /// `id`.
    pub id: i64,
    /// `username`, without the `@`.
    pub username: Option<String>,
    /// `first_name`.
    pub first_name: String,
    /// `is_bot`.
    pub is_bot: bool,
}

impl FakeUser {
    /// A human with a username.
    pub fn new(id: i64, username: &str) -> Self {
        let first = username.chars().next().map(|c| c.to_uppercase().collect::<String>() + &username[c.len_utf8()..]);
        Self {
            id,
            username: Some(username.to_owned()),
            first_name: first.unwrap_or_else(|| "User".into()),
            is_bot: false,
        }
    }

    /// Another bot.
    pub fn bot(id: i64, username: &str) -> Self {
        Self { is_bot: true, ..Self::new(id, username) }
    }

    /// The `User` object.
    pub fn to_json(&self) -> Value {
        let mut v = json!({"id": self.id, "is_bot": self.is_bot, "first_name": self.first_name});
        if let Some(u) = &self.username {
            v["username"] = json!(u);
        }
        v
    }
}

/// A `MessageEntity` of `kind` covering the first occurrence of `needle` in `text`, with offset
/// and length in UTF-16 code units as Telegram counts them. Panics if `needle` is not in `text`
/// (a test bug).
pub fn entity(text: &str, needle: &str, kind: &str) -> Value {
    let Some(at) = text.find(needle) else { panic!("{needle:?} is not in {text:?}") };
    json!({"type": kind, "offset": utf16_len(&text[..at]), "length": utf16_len(needle)})
}

/// A scripted failure for the next calls of one method.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum FakeError {
    /// 429 `Too Many Requests: retry after N`, `parameters.retry_after` and `Retry-After`.
    RetryAfter(u64),
    /// Any error answer: status = `error_code`, the description verbatim.
    Status {
        /// HTTP status and `error_code`.
        code: u16,
        /// `description`.
        description: String,
    },
}

impl FakeError {
    /// 500 `Internal Server Error: …`.
    pub fn server_error() -> Self {
        Self::Status { code: 500, description: "Internal Server Error: fake failure".into() }
    }

    /// 502 `Bad Gateway` (what the real front end answers while the server restarts).
    pub fn bad_gateway() -> Self {
        Self::Status { code: 502, description: "Bad Gateway".into() }
    }

    /// 403 `Forbidden: bot was blocked by the user`.
    pub fn blocked() -> Self {
        Self::Status { code: 403, description: BLOCKED.into() }
    }

    /// 400 `Bad Request: chat not found`.
    pub fn chat_not_found() -> Self {
        Self::Status { code: 400, description: CHAT_NOT_FOUND.into() }
    }

    /// 409 for a superseded long poll.
    pub fn conflict() -> Self {
        Self::Status { code: 409, description: CONFLICT_OTHER_GET_UPDATES.into() }
    }

    fn answer(&self) -> Answer {
        match self {
            FakeError::RetryAfter(s) => Answer::retry_after(*s),
            FakeError::Status { code, description } => Answer::error(*code, description.clone()),
        }
    }
}

/// How a request carried its parameters.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Encoding {
    /// Only a URL query string (or nothing).
    Query,
    /// `application/x-www-form-urlencoded`.
    Form,
    /// `application/json`.
    Json,
    /// `multipart/form-data`.
    Multipart,
}

/// A file part of a multipart request.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SentFile {
    /// Part name (`photo`, `document`, or the `X` of `attach://X`).
    pub field: String,
    /// `filename` of the part's Content-Disposition.
    pub filename: Option<String>,
    /// The part's Content-Type.
    pub content_type: Option<String>,
    /// Size in bytes.
    pub len: usize,
}

/// One API call the fake answered.
#[derive(Debug, Clone, PartialEq)]
pub struct ApiCall {
    /// Method as the client spelled it in the URL.
    pub method: String,
    /// Token from the URL.
    pub token: String,
    /// All parameters, JSON-serialized ones decoded; values of form and multipart fields are
    /// strings as sent.
    pub params: Value,
    /// Uploaded files.
    pub files: Vec<SentFile>,
    /// How the parameters came.
    pub encoding: Encoding,
    /// HTTP status answered.
    pub status: u16,
    /// The answer's body.
    pub response: Value,
    /// When the request arrived.
    pub at: Instant,
}

impl ApiCall {
    /// The method, compared case-insensitively like the server does.
    pub fn is(&self, method: &str) -> bool {
        self.method.eq_ignore_ascii_case(method)
    }

    /// A parameter as a string (numbers rendered).
    pub fn param_str(&self, key: &str) -> Option<String> {
        str_param(self.params.as_object()?, key)
    }

    /// A parameter as an integer (numeric strings parsed).
    pub fn param_i64(&self, key: &str) -> Option<i64> {
        int_param(self.params.as_object()?, key)
    }

    /// The `result` of a successful answer.
    pub fn result(&self) -> Option<&Value> {
        self.response.get("result")
    }
}

/// The webhook a bot registered.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct WebhookInfo {
    /// `url`.
    pub url: String,
    /// `secret_token`.
    pub secret_token: Option<String>,
}

/// An answer before it is written: status, body, and the `Retry-After` header of a 429.
#[derive(Debug)]
struct Answer {
    status: u16,
    body: Value,
    /// The exact text sent (key order as the real server writes it).
    text: String,
    retry_after: Option<u64>,
}

impl Answer {
    fn ok(result: Value) -> Self {
        let text = format!(r#"{{"ok":true,"result":{result}}}"#);
        Self { status: 200, body: json!({"ok": true, "result": result}), text, retry_after: None }
    }

    fn ok_described(result: Value, description: &str) -> Self {
        let text = format!(r#"{{"ok":true,"result":{result},"description":{}}}"#, json!(description));
        Self {
            status: 200,
            body: json!({"ok": true, "result": result, "description": description}),
            text,
            retry_after: None,
        }
    }

    fn error(code: u16, description: impl Into<String>) -> Self {
        let description = description.into();
        let text = format!(r#"{{"ok":false,"error_code":{code},"description":{}}}"#, json!(description));
        Self {
            status: code,
            body: json!({"ok": false, "error_code": code, "description": description}),
            text,
            retry_after: None,
        }
    }

    fn bad_request(detail: &str) -> Self {
        Self::error(400, format!("Bad Request: {detail}"))
    }

    fn retry_after(secs: u64) -> Self {
        let description = format!("Too Many Requests: retry after {secs}");
        let text = format!(
            r#"{{"ok":false,"error_code":429,"description":{},"parameters":{{"retry_after":{secs}}}}}"#,
            json!(description)
        );
        Self {
            status: 429,
            body: json!({"ok": false, "error_code": 429, "description": description, "parameters": {"retry_after": secs}}),
            text,
            retry_after: Some(secs),
        }
    }

    fn into_response(self) -> Response {
        let status = StatusCode::from_u16(self.status).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
        let mut resp = (status, [(header::CONTENT_TYPE, "application/json")], self.text).into_response();
        if let Some(s) = self.retry_after {
            resp.headers_mut().insert(header::RETRY_AFTER, HeaderValue::from(s));
        }
        resp
    }
}

/// A stored file, for `getFile` and the download route.
#[derive(Debug, Clone)]
struct StoredFile {
    path: String,
    data: Bytes,
}

/// The long poll currently held for one bot.
#[derive(Debug)]
struct HeldPoll {
    id: u64,
    /// Answers the held request 409 with this description.
    abort: oneshot::Sender<&'static str>,
}

#[derive(Debug)]
struct Bot {
    user: FakeUser,
    queue: VecDeque<Value>,
    next_update_id: i64,
    /// `allowed_updates` of the last call that set it; `None` is the default set.
    allowed: Option<Vec<String>>,
    webhook: Option<WebhookInfo>,
    held: Option<HeldPoll>,
    /// Offset and time of the previous `getUpdates` (for the anti-busy-loop rule).
    last_poll: Option<(i64, Instant)>,
    last_conflict: Option<Instant>,
    /// Bumped whenever an update is queued; held polls wait on it.
    queued: watch::Sender<u64>,
}

impl Bot {
    fn new(user: FakeUser) -> Self {
        Self {
            user,
            queue: VecDeque::new(),
            next_update_id: 100_000_001,
            allowed: None,
            webhook: None,
            held: None,
            last_poll: None,
            last_conflict: None,
            queued: watch::Sender::new(0),
        }
    }

    fn allows(&self, kind: &str) -> bool {
        match &self.allowed {
            Some(list) if !list.is_empty() => list.iter().any(|k| k == kind),
            _ => !matches!(kind, "chat_member" | "message_reaction" | "message_reaction_count"),
        }
    }
}

#[derive(Debug, Default)]
struct Inner {
    bots: HashMap<String, Bot>,
    calls: Vec<ApiCall>,
    failures: HashMap<String, VecDeque<FakeError>>,
    /// Sticky errors for sends into a chat (`forbid_chat`).
    forbidden: HashMap<i64, FakeError>,
    /// Last message id used in each chat.
    message_ids: HashMap<i64, i64>,
    /// Messages that exist, per chat (reply targets).
    messages: HashMap<i64, HashSet<i64>>,
    /// Text of the bot's own messages, for `editMessageText`.
    bot_texts: HashMap<(i64, i64), String>,
    /// Chats seen in pushed updates.
    chats: HashMap<i64, Value>,
    files: HashMap<String, StoredFile>,
    poll_in_flight: usize,
    max_poll_in_flight: usize,
}

impl Inner {
    fn next_message_id(&mut self, chat: i64) -> i64 {
        let id = self.message_ids.entry(chat).or_insert(0);
        *id += 1;
        self.messages.entry(chat).or_default().insert(*id);
        *id
    }

    fn chat_json(&self, chat: i64) -> Value {
        self.chats.get(&chat).cloned().unwrap_or_else(|| {
            if chat > 0 {
                json!({"id": chat, "type": "private", "first_name": "User"})
            } else if chat < -1_000_000_000_000 {
                json!({"id": chat, "type": "supergroup", "title": "Supergroup"})
            } else {
                json!({"id": chat, "type": "group", "title": "Group"})
            }
        })
    }
}

#[derive(Debug)]
struct Shared {
    base: String,
    inner: Mutex<Inner>,
    /// Bumped on every recorded call (for `wait_for_sent`).
    recorded: watch::Sender<u64>,
    poll_ids: AtomicU64,
    file_ids: AtomicU64,
    shutdown: CancellationToken,
}

impl Shared {
    fn record(&self, call: ApiCall) {
        lock(&self.inner).calls.push(call);
        self.recorded.send_modify(|n| *n += 1);
    }

    fn store_file(&self, data: Bytes, dir: &str, ext: &str) -> (String, String) {
        let n = self.file_ids.fetch_add(1, Ordering::SeqCst) + 1;
        let file_id = format!("AgACAgFake{n:08}");
        let path = format!("{dir}/file_{n}.{ext}");
        lock(&self.inner).files.insert(file_id.clone(), StoredFile { path: path.clone(), data });
        (file_id, path)
    }
}

/// Counts a `getUpdates` as in flight for as long as its handler runs (also when the client
/// hangs up and the handler is dropped).
struct InFlight(Arc<Shared>);

impl InFlight {
    fn enter(shared: &Arc<Shared>) -> Self {
        let mut inner = lock(&shared.inner);
        inner.poll_in_flight += 1;
        inner.max_poll_in_flight = inner.max_poll_in_flight.max(inner.poll_in_flight);
        drop(inner);
        Self(Arc::clone(shared))
    }
}

impl Drop for InFlight {
    fn drop(&mut self) {
        let mut inner = lock(&self.0.inner);
        inner.poll_in_flight = inner.poll_in_flight.saturating_sub(1);
    }
}

/// A running fake Bot API; stops when dropped.
#[derive(Debug)]
pub struct FakeTelegram {
    addr: SocketAddr,
    shared: Arc<Shared>,
    http: reqwest::Client,
    task: JoinHandle<()>,
}

impl Drop for FakeTelegram {
    fn drop(&mut self) {
        self.shared.shutdown.cancel();
        self.task.abort();
    }
}

impl FakeTelegram {
    /// Bind `127.0.0.1:0` and serve, with the default bot ([`DEFAULT_TOKEN`]).
    pub async fn start() -> anyhow::Result<FakeTelegram> {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.context("binding the fake Telegram")?;
        let addr = listener.local_addr()?;
        let mut inner = Inner::default();
        inner.bots.insert(DEFAULT_TOKEN.to_owned(), Bot::new(FakeUser::bot(DEFAULT_BOT_ID, DEFAULT_BOT_USERNAME)));
        let shared = Arc::new(Shared {
            base: format!("http://127.0.0.1:{}", addr.port()),
            inner: Mutex::new(inner),
            recorded: watch::Sender::new(0),
            poll_ids: AtomicU64::new(0),
            file_ids: AtomicU64::new(0),
            shutdown: CancellationToken::new(),
        });
        let app = Router::new()
            .fallback(route)
            // Room for a request over the 50 MB upload limit, so the fake answers 413 itself.
            .layer(DefaultBodyLimit::max(MAX_UPLOAD_BYTES + 4 * 1024 * 1024))
            .with_state(Arc::clone(&shared));
        let shutdown = shared.shutdown.clone();
        let task = tokio::spawn(async move {
            let serve = axum::serve(listener, app).with_graceful_shutdown(shutdown.cancelled_owned());
            if let Err(e) = serve.await {
                tracing::warn!(error = %e, "fake Telegram stopped");
            }
        });
        let http = reqwest::Client::builder().timeout(Duration::from_secs(30)).build()?;
        Ok(FakeTelegram { addr, shared, http, task })
    }

    /// The socket address.
    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// What clawgate's `apiRoot` takes (`http://127.0.0.1:PORT`, no trailing slash).
    pub fn api_root(&self) -> String {
        self.shared.base.clone()
    }

    /// The default bot's token.
    pub fn token(&self) -> &'static str {
        DEFAULT_TOKEN
    }

    /// The default bot's `User`.
    pub fn bot_user(&self) -> FakeUser {
        FakeUser::bot(DEFAULT_BOT_ID, DEFAULT_BOT_USERNAME)
    }

    /// Add another bot; returns its token (`<id>:<secret>`).
    pub fn add_bot(&self, id: i64, username: &str) -> String {
        let token = format!("{id}:AAFakeSecretFor{id}");
        lock(&self.shared.inner).bots.insert(token.clone(), Bot::new(FakeUser::bot(id, username)));
        token
    }

    /// Queue a raw update for the default bot, giving it the next `update_id` when it has none.
    /// Returns the `update_id`; the update is dropped (never delivered) when its kind is not in
    /// the bot's `allowed_updates`, as Telegram does.
    pub fn push_update(&self, update: Value) -> i64 {
        self.push_update_for(DEFAULT_TOKEN, update)
    }

    /// [`FakeTelegram::push_update`] for another bot.
    pub fn push_update_for(&self, token: &str, mut update: Value) -> i64 {
        let mut inner = lock(&self.shared.inner);
        let Some(bot) = inner.bots.get_mut(token) else { panic!("push_update_for: no bot with that token") };
        let id = match update.get("update_id").and_then(Value::as_i64) {
            Some(id) => {
                bot.next_update_id = bot.next_update_id.max(id + 1);
                id
            }
            None => {
                let id = bot.next_update_id;
                bot.next_update_id += 1;
                update["update_id"] = json!(id);
                id
            }
        };
        let kind = update.as_object().and_then(|o| o.keys().find(|k| *k != "update_id").cloned()).unwrap_or_default();
        if bot.allows(&kind) {
            bot.queue.push_back(update);
            bot.queued.send_modify(|n| *n += 1);
        }
        id
    }

    /// Queue a `message` update for a message object, filling `message_id` (next in its chat)
    /// and `date` when missing. Returns `(update_id, message_id)`.
    pub fn push_message(&self, mut message: Value) -> (i64, i64) {
        let chat_id = message["chat"]["id"].as_i64().unwrap_or(0);
        let message_id = {
            let mut inner = lock(&self.shared.inner);
            inner.chats.insert(chat_id, message["chat"].clone());
            match message.get("message_id").and_then(Value::as_i64) {
                Some(id) => {
                    inner.messages.entry(chat_id).or_default().insert(id);
                    let last = inner.message_ids.entry(chat_id).or_insert(0);
                    *last = (*last).max(id);
                    id
                }
                None => inner.next_message_id(chat_id),
            }
        };
        message["message_id"] = json!(message_id);
        if message.get("date").is_none() {
            message["date"] = json!(unix_now());
        }
        (self.push_update(json!({"message": message})), message_id)
    }

    /// A user writes to the bot in a private chat (chat id = user id). Returns the `update_id`.
    pub fn push_private_message(&self, user_id: i64, username: &str, text: &str) -> i64 {
        let user = FakeUser::new(user_id, username);
        let chat = json!({"id": user_id, "type": "private", "first_name": user.first_name, "username": username});
        self.push_message(json!({"from": user.to_json(), "chat": chat, "text": text})).0
    }

    /// A user writes in a supergroup (`thread_id`: into that forum topic, which makes the chat a
    /// forum). `entities` are `MessageEntity` objects (see [`entity`]). Returns `(update_id,
    /// message_id)`.
    pub fn push_group_message(
        &self,
        chat_id: i64,
        from: &FakeUser,
        text: &str,
        thread_id: Option<i64>,
        entities: Vec<Value>,
    ) -> (i64, i64) {
        let mut chat = json!({"id": chat_id, "type": "supergroup", "title": "Test Group"});
        let mut message = json!({"from": from.to_json(), "text": text});
        if let Some(t) = thread_id {
            chat["is_forum"] = json!(true);
            message["message_thread_id"] = json!(t);
            message["is_topic_message"] = json!(true);
        }
        message["chat"] = chat;
        if !entities.is_empty() {
            message["entities"] = Value::Array(entities);
        }
        self.push_message(message)
    }

    /// Store a file the client can fetch with `getFile` and the download route; returns its
    /// `file_id`.
    pub fn add_file(&self, data: impl Into<Bytes>, file_path_ext: &str) -> String {
        self.shared.store_file(data.into(), "documents", file_path_ext).0
    }

    /// Answer the next `n` calls of `method` (case-insensitive) with `error`. Scripts for the
    /// same method queue up.
    pub fn fail_next(&self, method: &str, n: usize, error: FakeError) {
        let mut inner = lock(&self.shared.inner);
        let q = inner.failures.entry(method.to_ascii_lowercase()).or_default();
        q.extend(std::iter::repeat_n(error, n));
    }

    /// Answer every send into `chat_id` with `error` until [`FakeTelegram::allow_chat`].
    pub fn forbid_chat(&self, chat_id: i64, error: FakeError) {
        lock(&self.shared.inner).forbidden.insert(chat_id, error);
    }

    /// Undo [`FakeTelegram::forbid_chat`].
    pub fn allow_chat(&self, chat_id: i64) {
        lock(&self.shared.inner).forbidden.remove(&chat_id);
    }

    /// Every call answered so far, in order.
    pub fn sent(&self) -> Vec<ApiCall> {
        lock(&self.shared.inner).calls.clone()
    }

    /// The calls of one method (case-insensitive).
    pub fn calls(&self, method: &str) -> Vec<ApiCall> {
        lock(&self.shared.inner).calls.iter().filter(|c| c.is(method)).cloned().collect()
    }

    /// Wait until a recorded call matches `pred`; the first match, or an error after `timeout`.
    pub async fn wait_for_sent(&self, pred: impl Fn(&ApiCall) -> bool, timeout: Duration) -> anyhow::Result<ApiCall> {
        let mut rx = self.shared.recorded.subscribe();
        let deadline = tokio::time::Instant::now() + timeout;
        loop {
            // Judge a copy: the predicate may itself call back into the fake.
            let calls = lock(&self.shared.inner).calls.clone();
            if let Some(c) = calls.into_iter().find(|c| pred(c)) {
                return Ok(c);
            }
            match tokio::time::timeout_at(deadline, rx.changed()).await {
                Ok(Ok(())) => {}
                Ok(Err(_)) => anyhow::bail!("fake Telegram stopped"),
                Err(_) => anyhow::bail!("no matching call within {timeout:?}; calls: {:?}", self.methods()),
            }
        }
    }

    fn methods(&self) -> Vec<String> {
        lock(&self.shared.inner).calls.iter().map(|c| format!("{}→{}", c.method, c.status)).collect()
    }

    /// The most `getUpdates` requests that were ever in flight at the same time.
    pub fn max_concurrent_get_updates(&self) -> usize {
        lock(&self.shared.inner).max_poll_in_flight
    }

    /// Updates queued for the default bot and not yet confirmed by an `offset`.
    pub fn pending_updates(&self) -> usize {
        lock(&self.shared.inner).bots.get(DEFAULT_TOKEN).map_or(0, |b| b.queue.len())
    }

    /// The default bot's webhook, if one is set.
    pub fn webhook(&self) -> Option<WebhookInfo> {
        lock(&self.shared.inner).bots.get(DEFAULT_TOKEN).and_then(|b| b.webhook.clone())
    }

    /// POST `update` (given the next `update_id` when it has none) to the default bot's
    /// webhook with its secret header, as Telegram delivers; returns the HTTP status the
    /// webhook answered. Telegram repeats a delivery answered with anything but 2XX; a test
    /// does that by calling this again with the same update.
    pub async fn post_webhook(&self, mut update: Value) -> anyhow::Result<u16> {
        let hook = self.webhook().context("no webhook is set")?;
        if update.get("update_id").is_none() {
            let mut inner = lock(&self.shared.inner);
            let bot = inner.bots.get_mut(DEFAULT_TOKEN).context("default bot")?;
            update["update_id"] = json!(bot.next_update_id);
            bot.next_update_id += 1;
        }
        let mut req = self.http.post(&hook.url).json(&update);
        if let Some(secret) = &hook.secret_token {
            req = req.header(SECRET_HEADER, secret);
        }
        let resp = req.send().await.with_context(|| format!("POST to the webhook {}", hook.url))?;
        Ok(resp.status().as_u16())
    }
}

// ---------------------------------------------------------------------------------------------
// Request parsing

fn int_param(p: &Map<String, Value>, key: &str) -> Option<i64> {
    match p.get(key)? {
        Value::Number(n) => n.as_i64(),
        Value::String(s) => s.trim().parse().ok(),
        _ => None,
    }
}

fn str_param(p: &Map<String, Value>, key: &str) -> Option<String> {
    match p.get(key)? {
        Value::String(s) => Some(s.clone()),
        Value::Number(n) => Some(n.to_string()),
        Value::Bool(b) => Some(b.to_string()),
        _ => None,
    }
}

fn bool_param(p: &Map<String, Value>, key: &str) -> bool {
    match p.get(key) {
        Some(Value::Bool(b)) => *b,
        Some(Value::String(s)) => matches!(s.as_str(), "true" | "True" | "1"),
        Some(Value::Number(n)) => n.as_i64() == Some(1),
        _ => false,
    }
}

/// A multipart file part.
#[derive(Debug, Clone)]
struct FilePart {
    info: SentFile,
    data: Bytes,
}

struct Parsed {
    params: Map<String, Value>,
    files: Vec<FilePart>,
    encoding: Encoding,
}

async fn parse_request(req: Request) -> Result<Parsed, Answer> {
    let mut params = Map::new();
    if let Ok(Query(pairs)) = Query::<Vec<(String, String)>>::try_from_uri(req.uri()) {
        for (k, v) in pairs {
            params.insert(k, Value::String(v));
        }
    }
    let content_type =
        req.headers().get(header::CONTENT_TYPE).and_then(|v| v.to_str().ok()).unwrap_or("").to_ascii_lowercase();
    let mut files = Vec::new();
    let mut encoding = Encoding::Query;
    if req.method() == Method::POST {
        if content_type.starts_with("multipart/form-data") {
            encoding = Encoding::Multipart;
            let mut mp = Multipart::from_request(req, &())
                .await
                .map_err(|e| Answer::bad_request(&format!("can't parse multipart body: {e}")))?;
            loop {
                let field = match mp.next_field().await {
                    Ok(Some(f)) => f,
                    Ok(None) => break,
                    Err(e) => return Err(Answer::bad_request(&format!("can't parse multipart body: {e}"))),
                };
                let name = field.name().unwrap_or_default().to_owned();
                let filename = field.file_name().map(str::to_owned);
                let ct = field.content_type().map(str::to_owned);
                let data = field.bytes().await.map_err(|e| Answer::bad_request(&format!("can't read part: {e}")))?;
                if filename.is_some() {
                    let info = SentFile { field: name, filename, content_type: ct, len: data.len() };
                    files.push(FilePart { info, data });
                } else {
                    params.insert(name, Value::String(String::from_utf8_lossy(&data).into_owned()));
                }
            }
        } else if content_type.starts_with("application/json") {
            encoding = Encoding::Json;
            let body = Bytes::from_request(req, &()).await.map_err(|_| Answer::bad_request("can't read body"))?;
            if !body.is_empty() {
                match serde_json::from_slice::<Value>(&body) {
                    Ok(Value::Object(o)) => params.extend(o),
                    Ok(_) => return Err(Answer::bad_request("JSON body must be an object")),
                    Err(e) => return Err(Answer::bad_request(&format!("can't parse JSON body: {e}"))),
                }
            }
        } else if content_type.starts_with("application/x-www-form-urlencoded") {
            encoding = Encoding::Form;
            let Form(pairs) = Form::<Vec<(String, String)>>::from_request(req, &())
                .await
                .map_err(|e| Answer::bad_request(&format!("can't parse form body: {e}")))?;
            for (k, v) in pairs {
                params.insert(k, Value::String(v));
            }
        }
    }
    // "JSON-serialized" parameters arrive as strings outside JSON bodies.
    for key in JSON_KEYS {
        if let Some(Value::String(s)) = params.get(*key) {
            match serde_json::from_str::<Value>(s) {
                Ok(v) => {
                    params.insert((*key).to_owned(), v);
                }
                Err(_) => return Err(Answer::bad_request(&format!("can't parse {key} JSON object"))),
            }
        }
    }
    Ok(Parsed { params, files, encoding })
}

/// SERVER token syntax: `<positive bot id, no leading 0>:<secret>`, at most 80 characters.
fn token_well_formed(token: &str) -> bool {
    let Some((id, secret)) = token.split_once(':') else { return false };
    token.len() <= 80 && !secret.is_empty() && !id.starts_with('0') && id.parse::<i64>().is_ok_and(|n| n > 0)
}

// ---------------------------------------------------------------------------------------------
// Routing

/// Every request: `/bot<token>/<method>`, `/bot<token>/test/<method>`,
/// `/file/bot<token>/<file_path>`; anything else 404.
async fn route(State(shared): State<Arc<Shared>>, req: Request) -> Response {
    let path = req.uri().path().to_owned();
    if let Some(rest) = path.strip_prefix("/file/bot") {
        return download(&shared, rest);
    }
    let Some(rest) = path.strip_prefix("/bot") else {
        return Answer::error(404, "Not Found").into_response();
    };
    let (token, method) = match rest.split_once('/') {
        Some((t, m)) => (t.to_owned(), m.strip_prefix("test/").unwrap_or(m).to_owned()),
        None => return Answer::error(404, "Not Found").into_response(),
    };
    if method.is_empty() || method.contains('/') {
        return Answer::error(404, "Not Found").into_response();
    }
    let at = Instant::now();
    let answer = match parse_request(req).await {
        Err(a) => (a, None),
        Ok(parsed) => {
            let answer = call(&shared, &token, &method, &parsed).await;
            (answer, Some(parsed))
        }
    };
    let (answer, parsed) = answer;
    let (params, files, encoding) = match parsed {
        Some(p) => (Value::Object(p.params), p.files.into_iter().map(|f| f.info).collect(), p.encoding),
        None => (Value::Null, Vec::new(), Encoding::Query),
    };
    shared.record(ApiCall {
        method,
        token,
        params,
        files,
        encoding,
        status: answer.status,
        response: answer.body.clone(),
        at,
    });
    answer.into_response()
}

/// Check the token, apply scripted failures, dispatch by lower-cased method name.
async fn call(shared: &Arc<Shared>, token: &str, method: &str, req: &Parsed) -> Answer {
    if !token_well_formed(token) {
        return Answer::error(401, "Unauthorized: invalid token specified");
    }
    let lower = method.to_ascii_lowercase();
    {
        let mut inner = lock(&shared.inner);
        if !inner.bots.contains_key(token) {
            return Answer::error(401, "Unauthorized");
        }
        if let Some(err) = inner.failures.get_mut(&lower).and_then(VecDeque::pop_front) {
            return err.answer();
        }
    }
    let p = &req.params;
    match lower.as_str() {
        "getme" => get_me(shared, token),
        "getupdates" => get_updates(shared, token, p).await,
        "sendmessage" => send_message(shared, token, p),
        "sendphoto" => send_file(shared, token, p, &req.files, "photo"),
        "senddocument" => send_file(shared, token, p, &req.files, "document"),
        "sendchataction" => send_chat_action(p),
        "editmessagetext" => edit_message_text(shared, token, p),
        "setwebhook" => set_webhook(shared, token, p),
        "deletewebhook" => delete_webhook(shared, token, p),
        "getwebhookinfo" => get_webhook_info(shared, token),
        "getfile" => get_file(shared, p),
        _ => Answer::error(404, "Not Found: method not found"),
    }
}

/// `GET /file/bot<token>/<file_path>`.
fn download(shared: &Shared, rest: &str) -> Response {
    let Some((token, file_path)) = rest.split_once('/') else {
        return Answer::error(404, "Not Found").into_response();
    };
    let inner = lock(&shared.inner);
    if !inner.bots.contains_key(token) {
        return Answer::error(401, "Unauthorized").into_response();
    }
    match inner.files.values().find(|f| f.path == file_path) {
        Some(f) => (StatusCode::OK, Body::from(f.data.clone())).into_response(),
        None => Answer::error(404, "Not Found").into_response(),
    }
}

// ---------------------------------------------------------------------------------------------
// Methods

/// `getMe`: the bot's `User` with the bot-only fields.
fn get_me(shared: &Shared, token: &str) -> Answer {
    let inner = lock(&shared.inner);
    let Some(bot) = inner.bots.get(token) else { return Answer::error(401, "Unauthorized") };
    let mut me = bot.user.to_json();
    me["can_join_groups"] = json!(true);
    me["can_read_all_group_messages"] = json!(false);
    me["supports_inline_queries"] = json!(false);
    Answer::ok(me)
}

/// `getUpdates`: confirm by offset, answer queued updates at once, else hold the poll.
async fn get_updates(shared: &Arc<Shared>, token: &str, p: &Map<String, Value>) -> Answer {
    let _in_flight = InFlight::enter(shared);
    let offset = int_param(p, "offset").unwrap_or(0);
    let mut limit = int_param(p, "limit").unwrap_or(100).clamp(1, 100) as usize;
    let mut timeout = int_param(p, "timeout").unwrap_or(0).clamp(0, MAX_POLL_TIMEOUT as i64) as u64;
    let (poll_id, mut abort_rx, mut queued_rx) = {
        let mut inner = lock(&shared.inner);
        let Some(bot) = inner.bots.get_mut(token) else { return Answer::error(401, "Unauthorized") };
        if bot.webhook.is_some() {
            return Answer::error(409, CONFLICT_WEBHOOK_ACTIVE);
        }
        if let Some(list) = p.get("allowed_updates") {
            let list: Vec<String> = list
                .as_array()
                .map(|a| a.iter().filter_map(|v| v.as_str().map(str::to_owned)).collect())
                .unwrap_or_default();
            bot.allowed = Some(list);
        }
        if offset > 0 {
            bot.queue.retain(|u| u["update_id"].as_i64().unwrap_or(0) >= offset);
        } else if offset < 0 {
            let keep = offset.unsigned_abs() as usize;
            while bot.queue.len() > keep {
                bot.queue.pop_front();
            }
        }
        // SERVER anti-busy-loop: the same offset again within 3 s raises a short timeout to 3 s;
        // within 0.5 s it also forces limit 1.
        let now = Instant::now();
        if let Some((last_offset, last_at)) = bot.last_poll
            && last_offset == offset
        {
            let since = now.duration_since(last_at);
            if since < Duration::from_secs(3) && timeout < 3 {
                timeout = 3;
            }
            if since < Duration::from_millis(500) {
                limit = 1;
            }
        }
        bot.last_poll = Some((offset, now));
        if !bot.queue.is_empty() {
            return Answer::ok(Value::Array(bot.queue.iter().take(limit).cloned().collect()));
        }
        if timeout == 0 {
            return Answer::ok(json!([]));
        }
        let poll_id = shared.poll_ids.fetch_add(1, Ordering::SeqCst);
        let (abort_tx, abort_rx) = oneshot::channel();
        if let Some(old) = bot.held.replace(HeldPoll { id: poll_id, abort: abort_tx }) {
            let _ = old.abort.send(CONFLICT_OTHER_GET_UPDATES);
        }
        (poll_id, abort_rx, bot.queued.subscribe())
    };
    let deadline = tokio::time::Instant::now() + Duration::from_secs(timeout);
    let answer = loop {
        tokio::select! {
            reason = &mut abort_rx => {
                let Ok(reason) = reason else { break Answer::ok(json!([])) };
                // SERVER: at most one conflict answer per 3 s; later ones are delayed.
                let delay = {
                    let mut inner = lock(&shared.inner);
                    match inner.bots.get_mut(token) {
                        Some(bot) => {
                            let now = Instant::now();
                            let d = match bot.last_conflict {
                                Some(t) if now.duration_since(t) < CONFLICT_THROTTLE => CONFLICT_THROTTLE,
                                _ => Duration::ZERO,
                            };
                            bot.last_conflict = Some(now + d);
                            d
                        }
                        None => Duration::ZERO,
                    }
                };
                tokio::time::sleep(delay).await;
                return Answer::error(409, reason);
            }
            changed = queued_rx.changed() => {
                if changed.is_err() {
                    break Answer::ok(json!([]));
                }
                let inner = lock(&shared.inner);
                if let Some(bot) = inner.bots.get(token)
                    && !bot.queue.is_empty()
                {
                    break Answer::ok(Value::Array(bot.queue.iter().take(limit).cloned().collect()));
                }
            }
            _ = tokio::time::sleep_until(deadline) => break Answer::ok(json!([])),
        }
    };
    let mut inner = lock(&shared.inner);
    if let Some(bot) = inner.bots.get_mut(token)
        && bot.held.as_ref().is_some_and(|h| h.id == poll_id)
    {
        bot.held = None;
    }
    answer
}

/// Parse `chat_id`; `@username` chats are not modelled.
fn chat_param(p: &Map<String, Value>) -> Result<i64, Answer> {
    match p.get("chat_id") {
        None => Err(Answer::bad_request("chat_id is empty")),
        Some(_) => int_param(p, "chat_id").ok_or_else(|| Answer::error(400, CHAT_NOT_FOUND)),
    }
}

/// Common checks of a send: the chat is reachable, the reply target exists unless
/// `allow_sending_without_reply`. Returns the reply target to put in the message.
fn check_send(inner: &Inner, chat: i64, p: &Map<String, Value>) -> Result<Option<i64>, Answer> {
    if let Some(err) = inner.forbidden.get(&chat) {
        return Err(err.answer());
    }
    let (reply_to, allow_missing) = match p.get("reply_parameters") {
        Some(rp) => (
            rp.get("message_id").and_then(|v| v.as_i64().or_else(|| v.as_str().and_then(|s| s.parse().ok()))),
            rp.get("allow_sending_without_reply").and_then(Value::as_bool).unwrap_or(false),
        ),
        None => (int_param(p, "reply_to_message_id"), bool_param(p, "allow_sending_without_reply")),
    };
    match reply_to {
        Some(id) if inner.messages.get(&chat).is_some_and(|m| m.contains(&id)) => Ok(Some(id)),
        Some(_) if allow_missing => Ok(None),
        Some(_) => Err(Answer::bad_request("message to be replied not found")),
        None => Ok(None),
    }
}

/// The `Message` the bot just sent.
fn bot_message(inner: &mut Inner, bot: &FakeUser, chat: i64, p: &Map<String, Value>, reply_to: Option<i64>) -> Value {
    let message_id = inner.next_message_id(chat);
    let mut m = json!({
        "message_id": message_id,
        "from": bot.to_json(),
        "chat": inner.chat_json(chat),
        "date": unix_now(),
    });
    if let Some(t) = int_param(p, "message_thread_id") {
        m["message_thread_id"] = json!(t);
        if inner.chats.get(&chat).and_then(|c| c["is_forum"].as_bool()) == Some(true) {
            m["is_topic_message"] = json!(true);
        }
    }
    if let Some(r) = reply_to {
        m["reply_to_message"] = json!({"message_id": r, "chat": inner.chat_json(chat), "date": unix_now()});
    }
    m
}

fn bot_of(inner: &Inner, token: &str) -> Option<FakeUser> {
    inner.bots.get(token).map(|b| b.user.clone())
}

/// `sendMessage`: text 1-4096 UTF-16 units.
fn send_message(shared: &Shared, token: &str, p: &Map<String, Value>) -> Answer {
    let chat = match chat_param(p) {
        Ok(c) => c,
        Err(a) => return a,
    };
    let text = str_param(p, "text").unwrap_or_default();
    if text.trim().is_empty() {
        return Answer::bad_request("message text is empty");
    }
    if utf16_len(&text) > MAX_TEXT {
        return Answer::error(400, TOO_LONG);
    }
    let mut inner = lock(&shared.inner);
    let reply_to = match check_send(&inner, chat, p) {
        Ok(r) => r,
        Err(a) => return a,
    };
    let Some(bot) = bot_of(&inner, token) else { return Answer::error(401, "Unauthorized") };
    let mut m = bot_message(&mut inner, &bot, chat, p, reply_to);
    m["text"] = json!(text);
    if let Some(e) = p.get("entities") {
        m["entities"] = e.clone();
    }
    let id = m["message_id"].as_i64().unwrap_or(0);
    inner.bot_texts.insert((chat, id), text);
    Answer::ok(m)
}

/// `sendPhoto` / `sendDocument`: a `file_id`, an HTTP URL, or a multipart upload (the part named
/// like the parameter, or `attach://<part>`).
fn send_file(shared: &Shared, token: &str, p: &Map<String, Value>, files: &[FilePart], kind: &str) -> Answer {
    let chat = match chat_param(p) {
        Ok(c) => c,
        Err(a) => return a,
    };
    let caption = str_param(p, "caption").unwrap_or_default();
    if utf16_len(&caption) > MAX_CAPTION {
        return Answer::bad_request("message caption is too long");
    }
    let reference = str_param(p, kind);
    let part = match reference.as_deref().and_then(|r| r.strip_prefix("attach://")) {
        Some(name) => files.iter().find(|f| f.info.field == name),
        None if reference.is_none() => files.iter().find(|f| f.info.field == kind),
        None => None,
    };
    let (file_id, size, name, mime) = match (part, reference) {
        (Some(f), _) => {
            let limit = if kind == "photo" { MAX_PHOTO_BYTES } else { MAX_UPLOAD_BYTES };
            if f.data.len() > MAX_UPLOAD_BYTES {
                return Answer::error(413, "Request Entity Too Large");
            }
            if f.data.len() > limit {
                return Answer::bad_request("file is too big");
            }
            let ext = f.info.filename.as_deref().and_then(|n| n.rsplit_once('.')).map_or("bin", |(_, e)| e);
            let dir = if kind == "photo" { "photos" } else { "documents" };
            let (id, _) = shared.store_file(f.data.clone(), dir, ext);
            (id, f.data.len() as u64, f.info.filename.clone(), f.info.content_type.clone())
        }
        (None, Some(r)) if r.starts_with("http://") || r.starts_with("https://") => {
            let name = r.rsplit('/').next().map(str::to_owned);
            (format!("AgACAgUrl{}", shared.file_ids.fetch_add(1, Ordering::SeqCst) + 1), 0, name, None)
        }
        (None, Some(r)) if lock(&shared.inner).files.contains_key(&r) => (r, 0, None, None),
        (None, Some(_)) => return Answer::bad_request("wrong file identifier/HTTP URL specified"),
        (None, None) => return Answer::bad_request(&format!("there is no {kind} in the request")),
    };
    let mut inner = lock(&shared.inner);
    let reply_to = match check_send(&inner, chat, p) {
        Ok(r) => r,
        Err(a) => return a,
    };
    let Some(bot) = bot_of(&inner, token) else { return Answer::error(401, "Unauthorized") };
    let mut m = bot_message(&mut inner, &bot, chat, p, reply_to);
    if kind == "photo" {
        m["photo"] = json!([
            {"file_id": format!("{file_id}-s"), "file_unique_id": format!("{file_id}-us"), "width": 90, "height": 90},
            {"file_id": file_id, "file_unique_id": format!("{file_id}-u"), "width": 1280, "height": 1280, "file_size": size},
        ]);
    } else {
        let mut d = json!({"file_id": file_id, "file_unique_id": format!("{file_id}-u"), "file_size": size});
        if let Some(n) = name {
            d["file_name"] = json!(n);
        }
        if let Some(m) = mime {
            d["mime_type"] = json!(m);
        }
        m["document"] = d;
    }
    if !caption.is_empty() {
        m["caption"] = json!(caption);
    }
    Answer::ok(m)
}

/// `sendChatAction`: a known action; returns True.
fn send_chat_action(p: &Map<String, Value>) -> Answer {
    if let Err(a) = chat_param(p) {
        return a;
    }
    match str_param(p, "action") {
        Some(a) if CHAT_ACTIONS.contains(&a.as_str()) => Answer::ok(json!(true)),
        _ => Answer::bad_request("wrong parameter action in request"),
    }
}

/// `editMessageText` of one of the bot's own messages.
fn edit_message_text(shared: &Shared, token: &str, p: &Map<String, Value>) -> Answer {
    let chat = match chat_param(p) {
        Ok(c) => c,
        Err(a) => return a,
    };
    let Some(message_id) = int_param(p, "message_id") else { return Answer::bad_request("message_id is empty") };
    let text = str_param(p, "text").unwrap_or_default();
    if text.trim().is_empty() {
        return Answer::bad_request("message text is empty");
    }
    if utf16_len(&text) > MAX_TEXT {
        return Answer::bad_request("MESSAGE_TOO_LONG");
    }
    let mut inner = lock(&shared.inner);
    let Some(bot) = bot_of(&inner, token) else { return Answer::error(401, "Unauthorized") };
    match inner.bot_texts.get(&(chat, message_id)) {
        None => Answer::bad_request("message to edit not found"),
        Some(old) if *old == text => Answer::bad_request(
            "message is not modified: specified new message content and reply markup are exactly the same as a current content and reply markup of the message",
        ),
        Some(_) => {
            inner.bot_texts.insert((chat, message_id), text.clone());
            Answer::ok(json!({
                "message_id": message_id, "from": bot.to_json(), "chat": inner.chat_json(chat),
                "date": unix_now(), "edit_date": unix_now(), "text": text,
            }))
        }
    }
}

/// `setWebhook`: empty url removes; a pending long poll is answered 409.
fn set_webhook(shared: &Shared, token: &str, p: &Map<String, Value>) -> Answer {
    let url = str_param(p, "url").unwrap_or_default();
    let secret = str_param(p, "secret_token").filter(|s| !s.is_empty());
    if let Some(s) = &secret
        && (s.len() > 256 || !s.chars().all(|c| c.is_ascii_alphanumeric() || c == '_' || c == '-'))
    {
        return Answer::bad_request("secret token contains unallowed characters");
    }
    if !(url.is_empty() || url.starts_with("https://") || url.starts_with("http://")) {
        return Answer::bad_request("bad webhook: An HTTPS URL must be provided for webhook");
    }
    let mut inner = lock(&shared.inner);
    let Some(bot) = inner.bots.get_mut(token) else { return Answer::error(401, "Unauthorized") };
    if bool_param(p, "drop_pending_updates") {
        bot.queue.clear();
    }
    if let Some(list) = p.get("allowed_updates").and_then(Value::as_array) {
        bot.allowed = Some(list.iter().filter_map(|v| v.as_str().map(str::to_owned)).collect());
    }
    if url.is_empty() {
        let had = bot.webhook.take().is_some();
        return Answer::ok_described(
            json!(true),
            if had { "Webhook was deleted" } else { "Webhook is already deleted" },
        );
    }
    if let Some(held) = bot.held.take() {
        let _ = held.abort.send(CONFLICT_SET_WEBHOOK);
    }
    let new = WebhookInfo { url, secret_token: secret };
    let same = bot.webhook.as_ref() == Some(&new);
    bot.webhook = Some(new);
    Answer::ok_described(json!(true), if same { "Webhook is already set" } else { "Webhook was set" })
}

/// `deleteWebhook`.
fn delete_webhook(shared: &Shared, token: &str, p: &Map<String, Value>) -> Answer {
    let mut inner = lock(&shared.inner);
    let Some(bot) = inner.bots.get_mut(token) else { return Answer::error(401, "Unauthorized") };
    if bool_param(p, "drop_pending_updates") {
        bot.queue.clear();
    }
    let had = bot.webhook.take().is_some();
    Answer::ok_described(json!(true), if had { "Webhook was deleted" } else { "Webhook is already deleted" })
}

/// `getWebhookInfo`.
fn get_webhook_info(shared: &Shared, token: &str) -> Answer {
    let inner = lock(&shared.inner);
    let Some(bot) = inner.bots.get(token) else { return Answer::error(401, "Unauthorized") };
    let mut info = json!({
        "url": bot.webhook.as_ref().map_or("", |w| w.url.as_str()),
        "has_custom_certificate": false,
        "pending_update_count": bot.queue.len(),
    });
    if bot.webhook.is_some() {
        info["max_connections"] = json!(40);
        if let Some(a) = &bot.allowed {
            info["allowed_updates"] = json!(a);
        }
    }
    Answer::ok(info)
}

/// `getFile`: files uploaded through the fake or added with [`FakeTelegram::add_file`].
fn get_file(shared: &Shared, p: &Map<String, Value>) -> Answer {
    let Some(id) = str_param(p, "file_id") else { return Answer::bad_request("file_id is empty") };
    let inner = lock(&shared.inner);
    match inner.files.get(&id) {
        Some(f) => Answer::ok(json!({
            "file_id": id, "file_unique_id": format!("{id}-u"), "file_size": f.data.len(), "file_path": f.path,
        })),
        None => Answer::bad_request("wrong file_id or the file is temporarily unavailable"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn url(tg: &FakeTelegram, method: &str) -> String {
        format!("{}/bot{}/{method}", tg.api_root(), tg.token())
    }

    async fn body(resp: reqwest::Response) -> (u16, Value) {
        let status = resp.status().as_u16();
        (status, resp.json().await.expect("JSON answer"))
    }

    #[tokio::test]
    async fn get_me_answers_in_every_encoding_and_methods_are_case_insensitive() {
        let tg = FakeTelegram::start().await.unwrap();
        let http = reqwest::Client::new();
        let (s, v) = body(http.get(url(&tg, "getMe")).send().await.unwrap()).await;
        assert_eq!((s, v["ok"].as_bool()), (200, Some(true)));
        assert_eq!(v["result"]["username"], DEFAULT_BOT_USERNAME);
        assert_eq!(v["result"]["is_bot"], true);
        let (s, _) = body(http.post(url(&tg, "GETME")).send().await.unwrap()).await;
        assert_eq!(s, 200);

        // The same sendMessage four ways.
        tg.push_private_message(42, "alice", "hi");
        let q = http.get(url(&tg, "sendMessage")).query(&[("chat_id", "42"), ("text", "q")]).send().await.unwrap();
        let f = http.post(url(&tg, "sendMessage")).form(&[("chat_id", "42"), ("text", "f")]).send().await.unwrap();
        let j = http.post(url(&tg, "sendMessage")).json(&json!({"chat_id": 42, "text": "j"})).send().await.unwrap();
        let form = reqwest::multipart::Form::new().text("chat_id", "42").text("text", "m");
        let m = http.post(url(&tg, "sendMessage")).multipart(form).send().await.unwrap();
        for r in [q, f, j, m] {
            let (s, v) = body(r).await;
            assert_eq!(s, 200, "{v}");
        }
        let sends = tg.calls("sendMessage");
        let encodings: Vec<Encoding> = sends.iter().map(|c| c.encoding).collect();
        assert_eq!(encodings, [Encoding::Query, Encoding::Form, Encoding::Json, Encoding::Multipart]);
        let ids: Vec<i64> = sends.iter().map(|c| c.result().unwrap()["message_id"].as_i64().unwrap()).collect();
        assert_eq!(ids, [2, 3, 4, 5], "message ids continue the chat's sequence after the user's message 1");
    }

    #[tokio::test]
    async fn bad_paths_tokens_and_methods_get_the_real_errors() {
        let tg = FakeTelegram::start().await.unwrap();
        let http = reqwest::Client::new();
        let (s, v) = body(http.get(format!("{}/nothing", tg.api_root())).send().await.unwrap()).await;
        assert_eq!((s, v), (404, json!({"ok": false, "error_code": 404, "description": "Not Found"})));
        let (s, v) = body(http.get(url(&tg, "frobnicate")).send().await.unwrap()).await;
        assert_eq!((s, v["description"].as_str()), (404, Some("Not Found: method not found")));
        let (s, v) = body(http.get(format!("{}/bot123:nope/getMe", tg.api_root())).send().await.unwrap()).await;
        assert_eq!((s, v["description"].as_str()), (401, Some("Unauthorized")));
        let (s, v) = body(http.get(format!("{}/botnocolon/getMe", tg.api_root())).send().await.unwrap()).await;
        assert_eq!((s, v["description"].as_str()), (401, Some("Unauthorized: invalid token specified")));
        let other = tg.add_bot(555, "other_bot");
        let (s, v) = body(http.get(format!("{}/bot{other}/getMe", tg.api_root())).send().await.unwrap()).await;
        assert_eq!((s, v["result"]["id"].as_i64()), (200, Some(555)));
    }

    #[tokio::test]
    async fn offset_confirms_and_unconfirmed_updates_come_again() {
        let tg = FakeTelegram::start().await.unwrap();
        let http = reqwest::Client::new();
        let a = tg.push_private_message(1, "a", "one");
        let b = tg.push_private_message(1, "a", "two");
        let (_, v) = body(http.get(url(&tg, "getUpdates")).send().await.unwrap()).await;
        assert_eq!(v["result"].as_array().unwrap().len(), 2);
        let (_, v) =
            body(http.post(url(&tg, "getUpdates")).json(&json!({"offset": a + 1})).send().await.unwrap()).await;
        let ids: Vec<i64> = v["result"].as_array().unwrap().iter().map(|u| u["update_id"].as_i64().unwrap()).collect();
        assert_eq!(ids, [b], "update a is confirmed, b is not");
        assert_eq!(tg.pending_updates(), 1);
        let c = tg.push_private_message(1, "a", "three");
        let (_, v) = body(http.post(url(&tg, "getUpdates")).form(&[("offset", "-1")]).send().await.unwrap()).await;
        assert_eq!(v["result"][0]["update_id"].as_i64(), Some(c), "negative offset keeps the last one");
        assert_eq!(tg.pending_updates(), 1);
        // allowed_updates arrives JSON-serialized in a form and filters what is queued next.
        let (s, _) = body(
            http.post(url(&tg, "getUpdates"))
                .form(&[("offset", (c + 1).to_string()), ("allowed_updates", r#"["channel_post"]"#.into())])
                .send()
                .await
                .unwrap(),
        )
        .await;
        assert_eq!(s, 200);
        assert_eq!(tg.calls("getUpdates").last().unwrap().params["allowed_updates"], json!(["channel_post"]));
        tg.push_private_message(1, "a", "filtered out");
        assert_eq!(tg.pending_updates(), 0);
    }

    #[tokio::test]
    async fn long_poll_is_held_until_an_update_arrives() {
        let tg = FakeTelegram::start().await.unwrap();
        let http = reqwest::Client::new();
        let poll = http.post(url(&tg, "getUpdates")).json(&json!({"timeout": 10})).send();
        let started = Instant::now();
        let pusher = async {
            tokio::time::sleep(Duration::from_millis(300)).await;
            tg.push_private_message(7, "bob", "wake up")
        };
        let (resp, id) = tokio::join!(poll, pusher);
        let (_, v) = body(resp.unwrap()).await;
        assert_eq!(v["result"][0]["update_id"].as_i64(), Some(id));
        let took = started.elapsed();
        assert!(took >= Duration::from_millis(250) && took < Duration::from_secs(5), "{took:?}");
        // An empty long poll returns [] after its timeout.
        let started = Instant::now();
        let (_, v) = body(
            http.post(url(&tg, "getUpdates")).json(&json!({"offset": id + 1, "timeout": 1})).send().await.unwrap(),
        )
        .await;
        assert_eq!(v["result"], json!([]));
        assert!(started.elapsed() >= Duration::from_millis(900));
    }

    #[tokio::test]
    async fn a_second_poll_supersedes_the_first_with_409_and_is_counted() {
        let tg = FakeTelegram::start().await.unwrap();
        let http = reqwest::Client::new();
        let first = http.post(url(&tg, "getUpdates")).json(&json!({"timeout": 5})).send();
        let second = async {
            tokio::time::sleep(Duration::from_millis(200)).await;
            http.post(url(&tg, "getUpdates")).json(&json!({"timeout": 1})).send().await
        };
        let (first, second) = tokio::join!(first, second);
        let (s, v) = body(first.unwrap()).await;
        assert_eq!((s, v["description"].as_str()), (409, Some(CONFLICT_OTHER_GET_UPDATES)));
        assert_eq!(body(second.unwrap()).await.0, 200);
        assert_eq!(tg.max_concurrent_get_updates(), 2);
    }

    #[tokio::test]
    async fn scripted_failures_come_first_then_normal_answers() {
        let tg = FakeTelegram::start().await.unwrap();
        let http = reqwest::Client::new();
        tg.fail_next("sendMessage", 1, FakeError::RetryAfter(7));
        tg.fail_next("sendMessage", 1, FakeError::blocked());
        let send = || http.post(url(&tg, "sendMessage")).json(&json!({"chat_id": 5, "text": "x"})).send();
        let r = send().await.unwrap();
        assert_eq!(r.headers().get("retry-after").unwrap(), "7");
        let (s, v) = body(r).await;
        assert_eq!(s, 429);
        assert_eq!(
            v,
            json!({"ok": false, "error_code": 429, "description": "Too Many Requests: retry after 7", "parameters": {"retry_after": 7}})
        );
        let (s, v) = body(send().await.unwrap()).await;
        assert_eq!((s, v["description"].as_str()), (403, Some(BLOCKED)));
        assert_eq!(body(send().await.unwrap()).await.0, 200);
        tg.forbid_chat(5, FakeError::chat_not_found());
        assert_eq!(body(send().await.unwrap()).await.0, 400);
    }

    #[tokio::test]
    async fn send_message_enforces_the_limit_and_keeps_thread_and_reply() {
        let tg = FakeTelegram::start().await.unwrap();
        let http = reqwest::Client::new();
        let (_, root) = tg.push_group_message(-1001, &FakeUser::new(3, "carol"), "topic msg", Some(77), vec![]);
        let long = "é".repeat(MAX_TEXT + 1);
        let (s, v) = body(
            http.post(url(&tg, "sendMessage")).json(&json!({"chat_id": -1001, "text": long})).send().await.unwrap(),
        )
        .await;
        assert_eq!((s, v["description"].as_str()), (400, Some(TOO_LONG)));
        let fits = "😀".repeat(MAX_TEXT / 2);
        let req = json!({"chat_id": -1001, "text": fits, "message_thread_id": 77, "parse_mode": "HTML",
            "reply_parameters": {"message_id": root}});
        let (s, v) = body(http.post(url(&tg, "sendMessage")).json(&req).send().await.unwrap()).await;
        assert_eq!(s, 200, "{v}");
        assert_eq!(v["result"]["message_thread_id"], 77);
        assert_eq!(v["result"]["is_topic_message"], true);
        assert_eq!(v["result"]["reply_to_message"]["message_id"].as_i64(), Some(root));
        let call = tg.calls("sendMessage").pop().unwrap();
        assert_eq!(call.param_str("parse_mode").as_deref(), Some("HTML"));
        // A missing reply target fails unless allowed.
        let req = json!({"chat_id": -1001, "text": "x", "reply_parameters": {"message_id": 999}});
        let (s, _) = body(http.post(url(&tg, "sendMessage")).json(&req).send().await.unwrap()).await;
        assert_eq!(s, 400);
        let req = json!({"chat_id": -1001, "text": "x", "reply_parameters": {"message_id": 999, "allow_sending_without_reply": true}});
        let (s, _) = body(http.post(url(&tg, "sendMessage")).json(&req).send().await.unwrap()).await;
        assert_eq!(s, 200);
    }

    #[tokio::test]
    async fn uploads_are_captured_and_photo_size_is_limited() {
        let tg = FakeTelegram::start().await.unwrap();
        let http = reqwest::Client::new();
        let part = reqwest::multipart::Part::bytes(vec![1u8; 1000]).file_name("cat.png").mime_str("image/png").unwrap();
        let form = reqwest::multipart::Form::new().text("chat_id", "9").text("caption", "a cat").part("photo", part);
        let (s, v) = body(http.post(url(&tg, "sendPhoto")).multipart(form).send().await.unwrap()).await;
        assert_eq!(s, 200, "{v}");
        let file_id = v["result"]["photo"][1]["file_id"].as_str().unwrap().to_owned();
        let call = tg.calls("sendPhoto").pop().unwrap();
        assert_eq!(call.files[0].field, "photo");
        assert_eq!(call.files[0].filename.as_deref(), Some("cat.png"));
        assert_eq!(call.files[0].len, 1000);
        assert_eq!(call.param_str("caption").as_deref(), Some("a cat"));
        // getFile and the download route give the bytes back.
        let (_, f) = body(http.get(url(&tg, "getFile")).query(&[("file_id", &file_id)]).send().await.unwrap()).await;
        let path = f["result"]["file_path"].as_str().unwrap();
        let bytes = http
            .get(format!("{}/file/bot{}/{path}", tg.api_root(), tg.token()))
            .send()
            .await
            .unwrap()
            .bytes()
            .await
            .unwrap();
        assert_eq!(bytes.len(), 1000);

        let big = reqwest::multipart::Part::bytes(vec![0u8; MAX_PHOTO_BYTES + 1]).file_name("big.png");
        let form = reqwest::multipart::Form::new().text("chat_id", "9").part("photo", big);
        let (s, _) = body(http.post(url(&tg, "sendPhoto")).multipart(form).send().await.unwrap()).await;
        assert_eq!(s, 400);
        let big = reqwest::multipart::Part::bytes(vec![0u8; MAX_PHOTO_BYTES + 1]).file_name("big.png");
        let form = reqwest::multipart::Form::new().text("chat_id", "9").text("document", "attach://f").part("f", big);
        let (s, v) = body(http.post(url(&tg, "sendDocument")).multipart(form).send().await.unwrap()).await;
        assert_eq!(s, 200, "{v}");
        assert_eq!(v["result"]["document"]["file_size"].as_u64(), Some(MAX_PHOTO_BYTES as u64 + 1));
    }

    #[tokio::test]
    async fn webhook_blocks_polling_and_receives_posted_updates_with_the_secret() {
        let tg = FakeTelegram::start().await.unwrap();
        let http = reqwest::Client::new();
        // A tiny receiver that records the secret header.
        // (secret header, body) of each delivery.
        type Deliveries = Arc<Mutex<Vec<(Option<String>, Value)>>>;
        let got: Deliveries = Arc::default();
        let sink = Arc::clone(&got);
        let app = Router::new().route(
            "/hook",
            axum::routing::post(move |headers: axum::http::HeaderMap, body: Bytes| {
                let sink = Arc::clone(&sink);
                async move {
                    let secret = headers.get(SECRET_HEADER).and_then(|v| v.to_str().ok()).map(str::to_owned);
                    lock(&sink).push((secret, serde_json::from_slice(&body).unwrap_or(Value::Null)));
                    StatusCode::OK
                }
            }),
        );
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let hook = format!("http://{}/hook", listener.local_addr().unwrap());
        tokio::spawn(async move { axum::serve(listener, app).await });

        let (s, v) = body(
            http.post(url(&tg, "setWebhook"))
                .form(&[("url", hook.as_str()), ("secret_token", "s3cr3t")])
                .send()
                .await
                .unwrap(),
        )
        .await;
        assert_eq!((s, v["description"].as_str()), (200, Some("Webhook was set")));
        let (s, v) = body(http.get(url(&tg, "getUpdates")).send().await.unwrap()).await;
        assert_eq!((s, v["description"].as_str()), (409, Some(CONFLICT_WEBHOOK_ACTIVE)));
        let (_, v) = body(http.get(url(&tg, "getWebhookInfo")).send().await.unwrap()).await;
        assert_eq!(v["result"]["url"], hook);
        let status = tg
            .post_webhook(
                json!({"message": {"message_id": 1, "date": 1, "chat": {"id": 1, "type": "private"}, "text": "hi"}}),
            )
            .await
            .unwrap();
        assert_eq!(status, 200);
        let got = lock(&got).clone();
        assert_eq!(got[0].0.as_deref(), Some("s3cr3t"));
        assert!(got[0].1["update_id"].as_i64().is_some());
        let (_, v) = body(http.post(url(&tg, "deleteWebhook")).send().await.unwrap()).await;
        assert_eq!(v["description"], "Webhook was deleted");
        assert!(tg.webhook().is_none());
    }

    #[tokio::test]
    async fn edit_message_text_and_chat_actions() {
        let tg = FakeTelegram::start().await.unwrap();
        let http = reqwest::Client::new();
        let (_, v) =
            body(http.post(url(&tg, "sendMessage")).json(&json!({"chat_id": 3, "text": "a"})).send().await.unwrap())
                .await;
        let id = v["result"]["message_id"].as_i64().unwrap();
        let edit = |text: &'static str| {
            http.post(url(&tg, "editMessageText")).json(&json!({"chat_id": 3, "message_id": id, "text": text})).send()
        };
        assert_eq!(body(edit("b").await.unwrap()).await.0, 200);
        let (s, v) = body(edit("b").await.unwrap()).await;
        assert_eq!(s, 400);
        assert!(v["description"].as_str().unwrap().starts_with("Bad Request: message is not modified"));
        let (s, _) = body(
            http.post(url(&tg, "sendChatAction"))
                .json(&json!({"chat_id": 3, "action": "typing"}))
                .send()
                .await
                .unwrap(),
        )
        .await;
        assert_eq!(s, 200);
        let (s, _) = body(
            http.post(url(&tg, "sendChatAction"))
                .json(&json!({"chat_id": 3, "action": "dancing"}))
                .send()
                .await
                .unwrap(),
        )
        .await;
        assert_eq!(s, 400);
    }

    #[test]
    fn entities_count_utf16_units() {
        let e = entity("😀 hi @clawgate_test_bot", "@clawgate_test_bot", "mention");
        assert_eq!(e, json!({"type": "mention", "offset": 6, "length": 18}));
    }
}
