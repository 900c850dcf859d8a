//! A fake WhatsApp Cloud API (the Graph API side) on one `127.0.0.1:0` port, and the webhook
//! deliveries Meta makes to a gateway.
//!
//! Faithful to `shared/contracts/whatsapp-cloud.md` (§5 lists what it must do):
//!
//! - `GET /v{N}/{phone-number-id}`: the number's details (a client's token check).
//! - `POST /v{N}/{phone-number-id}/messages`: bearer token (190 and HTTP 401 when wrong),
//!   `messaging_product: "whatsapp"`, `to`, `type`, `text.body` of 1-4 096 characters,
//!   `image.link` xor `image.id` (an uploaded media id), a caption of at most 1 024 characters,
//!   mark-as-read (`status: "read"`). Free-form messages only within 24 hours of the user's last
//!   inbound message (each webhook message this fake delivers opens or refreshes the window);
//!   outside it error 131047, synchronously (HTTP 400) or, when [`FakeWhatsApp::window_failures_async`]
//!   is on, as an accepted send followed by a `failed` status webhook. Success answers `wamid.` ids.
//! - `POST /v{N}/{phone-number-id}/media`: multipart with `messaging_product` (field or query),
//!   `file` (bytes, filename, MIME type) and an optional `type`; PNG and JPEG images are checked
//!   by their signature and limited to 5 MB; answers `{"id"}`. `GET /v{N}/{media-id}` gives the
//!   media URL, `GET` of that URL (with the bearer) the bytes, `DELETE` removes it.
//! - Errors in Graph's shape (`{"error": {message, type, code, error_data: {messaging_product,
//!   details}, fbtrace_id}}`), by code: rate limits (130429 throughput, 131056 pair) while the
//!   rate-limit switch is on or scripted with [`FakeWhatsApp::fail_next`], and permanent ones.
//!
//! Webhooks go to the callback URL a test configures ([`FakeWhatsApp::set_callback`], what the
//! Meta app dashboard holds): ASCII-only JSON (`\u` escapes), signed with
//! `X-Hub-Signature-256: sha256=<hex HMAC-SHA256(app secret, raw body)>`. Helpers post a text
//! message, redeliver a body byte for byte, post a status-only change, a forged signature, and
//! run the GET verification handshake.
//!
//! Known simplifications: text length is counted in Unicode scalar values (Meta says
//! "characters"); the per-number throughput bucket is a switch rather than a real token bucket;
//! `http://` callback URLs are accepted (tests have no TLS); any `to` is a WhatsApp user.

use std::collections::{HashMap, VecDeque};
use std::net::SocketAddr;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use anyhow::Context as _;
use axum::Router;
use axum::body::Bytes;
use axum::extract::{DefaultBodyLimit, FromRequest, Multipart, Query, Request, State};
use axum::http::{Method, StatusCode, header};
use axum::response::{IntoResponse, Response};
use hmac::{Hmac, Mac};
use serde_json::{Value, json};
use sha2::Sha256;
use tokio::sync::watch;
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;

/// The access token the fake accepts.
pub const DEFAULT_ACCESS_TOKEN: &str = "EAAFakeWhatsAppCloudApiTokenForClawgateTestsZZ";
/// The app secret webhooks are signed with.
pub const DEFAULT_APP_SECRET: &str = "f4k3app5ecret0123456789abcdef01";
/// The verify token the fake sends in the GET handshake.
pub const DEFAULT_VERIFY_TOKEN: &str = "clawgate-verify-token";
/// The business phone number's id (path segment of sends).
pub const PHONE_NUMBER_ID: &str = "106540352242922";
/// The business number as displayed.
pub const DISPLAY_PHONE_NUMBER: &str = "15550783881";
/// The WhatsApp Business Account id (`entry[].id`).
pub const WABA_ID: &str = "102290129340398";
/// The Graph version tests use.
pub const API_VERSION: &str = "v24.0";
/// The webhook signature header.
pub const SIGNATURE_HEADER: &str = "X-Hub-Signature-256";
/// Longest `text.body`, in characters.
pub const MAX_TEXT: usize = 4096;
/// Longest caption.
pub const MAX_CAPTION: usize = 1024;
/// Largest image.
pub const MAX_IMAGE_BYTES: usize = 5 * 1024 * 1024;
/// Largest upload of any kind (documents).
pub const MAX_UPLOAD_BYTES: usize = 100 * 1024 * 1024;
/// The customer-service window.
pub const WINDOW_SECS: i64 = 24 * 3600;

/// Graph error codes the fake answers.
pub mod codes {
    /// Invalid parameter.
    pub const INVALID_PARAMETER: i64 = 100;
    /// Access token invalid or expired.
    pub const ACCESS_TOKEN: i64 = 190;
    /// Temporary service error.
    pub const TEMPORARY: i64 = 2;
    /// Cloud API throughput reached.
    pub const RATE_LIMIT: i64 = 130_429;
    /// Too many messages to the same recipient.
    pub const PAIR_RATE_LIMIT: i64 = 131_056;
    /// More than 24 hours since the user's last message.
    pub const RE_ENGAGEMENT: i64 = 131_047;
    /// Message undeliverable.
    pub const UNDELIVERABLE: i64 = 131_026;
    /// Media upload error.
    pub const MEDIA_UPLOAD: i64 = 131_053;
}

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(PoisonError::into_inner)
}

fn unix_now() -> i64 {
    SystemTime::now().duration_since(UNIX_EPOCH).map(|d| d.as_secs() as i64).unwrap_or(0)
}

/// A Graph error answer.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct GraphError {
    /// HTTP status.
    pub http_status: u16,
    /// `error.code`.
    pub code: i64,
    /// The title (goes into `message` as `(#code) title`).
    pub title: String,
    /// `error.error_data.details`.
    pub details: String,
}

impl GraphError {
    fn new(http_status: u16, code: i64, title: &str, details: &str) -> Self {
        Self { http_status, code, title: title.to_owned(), details: details.to_owned() }
    }

    /// 130429: Cloud API throughput reached.
    pub fn rate_limit() -> Self {
        Self::new(400, codes::RATE_LIMIT, "Rate limit hit", "Cloud API message throughput has been reached.")
    }

    /// 131056: too many messages to one recipient.
    pub fn pair_rate_limit() -> Self {
        Self::new(
            400,
            codes::PAIR_RATE_LIMIT,
            "(Business Account, Consumer Account) pair rate limit hit",
            "Too many messages sent from the sender phone number to the same recipient phone number in a short period of time.",
        )
    }

    /// 131047: outside the 24-hour window.
    pub fn re_engagement() -> Self {
        Self::new(
            400,
            codes::RE_ENGAGEMENT,
            "Re-engagement message",
            "Message failed to send because more than 24 hours have passed since the customer last replied to this number.",
        )
    }

    /// 131026: undeliverable.
    pub fn undeliverable() -> Self {
        Self::new(400, codes::UNDELIVERABLE, "Message undeliverable", "Unable to deliver message.")
    }

    /// 100: invalid parameter.
    pub fn invalid_parameter(details: &str) -> Self {
        Self::new(400, codes::INVALID_PARAMETER, "Invalid parameter", details)
    }

    /// 190: the access token is invalid.
    pub fn access_token() -> Self {
        Self::new(401, codes::ACCESS_TOKEN, "Invalid OAuth access token - Cannot parse access token", "")
    }

    /// 2: temporary service error (HTTP 503).
    pub fn temporary() -> Self {
        Self::new(503, codes::TEMPORARY, "Service temporarily unavailable", "")
    }

    /// The answer body.
    pub fn body(&self) -> Value {
        json!({"error": {
            "message": format!("(#{}) {}", self.code, self.title),
            "type": "OAuthException",
            "code": self.code,
            "error_data": {"messaging_product": "whatsapp", "details": self.details},
            "fbtrace_id": "AFakeTraceId0123",
        }})
    }

    fn answer(&self) -> Answer {
        Answer { status: self.http_status, body: self.body() }
    }
}

/// An uploaded file.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Upload {
    /// The media id answered.
    pub id: String,
    /// MIME type.
    pub mime_type: String,
    /// Part filename.
    pub filename: Option<String>,
    /// The bytes.
    pub data: Bytes,
}

/// One request the fake answered.
#[derive(Debug, Clone, PartialEq)]
pub struct GraphCall {
    /// `GET`, `POST`, `DELETE`.
    pub method: String,
    /// The path without the version (`/106540352242922/messages`).
    pub path: String,
    /// The JSON body, or the multipart text fields as strings.
    pub body: Value,
    /// The uploaded file of a media upload.
    pub upload: Option<Upload>,
    /// HTTP status answered.
    pub status: u16,
    /// The answer's body.
    pub response: Value,
    /// When the request arrived.
    pub at: Instant,
}

impl GraphCall {
    /// A `POST …/messages` that sends a message (not a mark-as-read).
    pub fn is_send(&self) -> bool {
        self.method == "POST" && self.path.ends_with("/messages") && self.body.get("status").is_none()
    }

    /// An accepted send.
    pub fn is_accepted_send(&self) -> bool {
        self.is_send() && self.status == 200
    }

    /// `to` of a send.
    pub fn to(&self) -> Option<&str> {
        self.body.get("to").and_then(Value::as_str)
    }

    /// `type` of a send (`text` when absent, as Graph defaults it).
    pub fn kind(&self) -> &str {
        self.body.get("type").and_then(Value::as_str).unwrap_or("text")
    }

    /// `text.body` of a text send.
    pub fn text(&self) -> Option<&str> {
        self.body.get("text")?.get("body")?.as_str()
    }

    /// `error.code` of an error answer.
    pub fn error_code(&self) -> Option<i64> {
        self.response.get("error")?.get("code")?.as_i64()
    }

    /// The `wamid` of an accepted send.
    pub fn wamid(&self) -> Option<&str> {
        self.response.get("messages")?.get(0)?.get("id")?.as_str()
    }
}

/// What the GET verification handshake answered.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Verification {
    /// HTTP status.
    pub status: u16,
    /// The body.
    pub body: String,
    /// The `Content-Type` header.
    pub content_type: Option<String>,
    /// The challenge sent.
    pub challenge: String,
}

impl Verification {
    /// Meta accepts the endpoint: 200 and the challenge echoed as the whole body.
    pub fn accepted(&self) -> bool {
        self.status == 200 && self.body == self.challenge
    }
}

struct Answer {
    status: u16,
    body: Value,
}

#[derive(Default)]
struct Inner {
    calls: Vec<GraphCall>,
    /// Last inbound message time per user (unix seconds): the 24-hour window.
    last_inbound: HashMap<String, i64>,
    fail_next: VecDeque<GraphError>,
    rate_limited: bool,
    window_async: bool,
    auto_statuses: bool,
    media: HashMap<String, Upload>,
    /// Bodies posted to the webhook, by the message or status id they carry.
    posted: HashMap<String, Bytes>,
    /// Message ids posted per sender, in order.
    posted_by: HashMap<String, Vec<String>>,
    callback: Option<String>,
    /// Sends answered while the window was closed, as failed statuses yet to be posted.
    deferred_failures: Vec<(String, String)>,
}

struct Shared {
    base: String,
    inner: Mutex<Inner>,
    recorded: watch::Sender<usize>,
    ids: AtomicU64,
    shutdown: CancellationToken,
    webhooks: reqwest::Client,
}

impl Shared {
    fn next_id(&self) -> u64 {
        self.ids.fetch_add(1, Ordering::Relaxed) + 1
    }

    fn wamid(&self) -> String {
        format!("wamid.HBgLMTU1NTA3ODM4ODEVAgARGBI{:016X}", self.next_id())
    }
}

/// The fake Graph API. Dropping it stops the server.
pub struct FakeWhatsApp {
    addr: SocketAddr,
    shared: Arc<Shared>,
    task: JoinHandle<()>,
}

impl Drop for FakeWhatsApp {
    fn drop(&mut self) {
        self.shared.shutdown.cancel();
        self.task.abort();
    }
}

impl FakeWhatsApp {
    /// Bind `127.0.0.1:0` and serve.
    pub async fn start() -> anyhow::Result<FakeWhatsApp> {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.context("binding the fake Graph API")?;
        let addr = listener.local_addr()?;
        let shared = Arc::new(Shared {
            base: format!("http://127.0.0.1:{}", addr.port()),
            inner: Mutex::new(Inner::default()),
            recorded: watch::Sender::new(0),
            ids: AtomicU64::new(0),
            shutdown: CancellationToken::new(),
            webhooks: reqwest::Client::builder().timeout(Duration::from_secs(30)).build()?,
        });
        let app = Router::new()
            .fallback(route)
            .layer(DefaultBodyLimit::max(MAX_UPLOAD_BYTES + 1024 * 1024))
            .with_state(Arc::clone(&shared));
        let shutdown = shared.shutdown.clone();
        let task = tokio::spawn(async move {
            let serve = axum::serve(listener, app).with_graceful_shutdown(shutdown.cancelled_owned());
            if let Err(e) = serve.await {
                tracing::warn!(error = %e, "fake Graph API stopped");
            }
        });
        Ok(FakeWhatsApp { addr, shared, task })
    }

    /// The socket address.
    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// What clawgate's `apiRoot` takes (`http://127.0.0.1:PORT`).
    pub fn api_root(&self) -> String {
        self.shared.base.clone()
    }

    /// The `channels.whatsapp` settings that point an account at this fake (credentials, number,
    /// API root and version).
    pub fn account_config(&self) -> Value {
        json!({
            "accessToken": DEFAULT_ACCESS_TOKEN,
            "appSecret": DEFAULT_APP_SECRET,
            "verifyToken": DEFAULT_VERIFY_TOKEN,
            "phoneNumberId": PHONE_NUMBER_ID,
            "apiRoot": self.api_root(),
            "apiVersion": API_VERSION,
        })
    }

    /// Set the webhook callback URL (the Meta app dashboard's "Callback URL").
    pub fn set_callback(&self, url: impl Into<String>) {
        lock(&self.shared.inner).callback = Some(url.into());
    }

    /// Script errors for the next sends, in order.
    pub fn fail_next(&self, n: usize, error: GraphError) {
        let mut inner = lock(&self.shared.inner);
        for _ in 0..n {
            inner.fail_next.push_back(error.clone());
        }
    }

    /// While on, every send answers 130429 (throughput reached).
    pub fn set_rate_limited(&self, on: bool) {
        lock(&self.shared.inner).rate_limited = on;
    }

    /// Report 131047 asynchronously: the send is accepted and a `failed` status follows by
    /// webhook (instead of an HTTP 400).
    pub fn window_failures_async(&self, on: bool) {
        lock(&self.shared.inner).window_async = on;
    }

    /// Post `sent`/`delivered`/`read` statuses for every accepted send to the callback.
    pub fn auto_statuses(&self, on: bool) {
        lock(&self.shared.inner).auto_statuses = on;
    }

    /// Every request answered so far.
    pub fn calls(&self) -> Vec<GraphCall> {
        lock(&self.shared.inner).calls.clone()
    }

    /// Sends (accepted or not) to one user.
    pub fn sends_to(&self, to: &str) -> Vec<GraphCall> {
        self.calls().into_iter().filter(|c| c.is_send() && c.to() == Some(to)).collect()
    }

    /// Text bodies accepted for one user, in order.
    pub fn texts_to(&self, to: &str) -> Vec<String> {
        self.sends_to(to).into_iter().filter(|c| c.status == 200).filter_map(|c| c.text().map(str::to_owned)).collect()
    }

    /// An uploaded file by media id.
    pub fn media(&self, id: &str) -> Option<Upload> {
        lock(&self.shared.inner).media.get(id).cloned()
    }

    /// Wait until a recorded request matches `pred`; the first match, or an error after `timeout`.
    pub async fn wait_for(&self, pred: impl Fn(&GraphCall) -> bool, timeout: Duration) -> anyhow::Result<GraphCall> {
        let mut rx = self.shared.recorded.subscribe();
        let deadline = tokio::time::Instant::now() + timeout;
        loop {
            let calls = lock(&self.shared.inner).calls.clone();
            if let Some(c) = calls.into_iter().find(|c| pred(c)) {
                return Ok(c);
            }
            match tokio::time::timeout_at(deadline, rx.changed()).await {
                Ok(Ok(())) => {}
                Ok(Err(_)) => anyhow::bail!("fake Graph API stopped"),
                Err(_) => {
                    let seen: Vec<String> = lock(&self.shared.inner)
                        .calls
                        .iter()
                        .map(|c| format!("{} {}→{} {}", c.method, c.path, c.status, c.body))
                        .collect();
                    anyhow::bail!("no matching request within {timeout:?}; requests: {seen:?}")
                }
            }
        }
    }

    /// Wait for an accepted text to `to` with exactly `text`.
    pub async fn wait_text(&self, to: &str, text: &str, timeout: Duration) -> anyhow::Result<GraphCall> {
        self.wait_for(|c| c.is_accepted_send() && c.to() == Some(to) && c.text() == Some(text), timeout).await
    }

    /// A text message webhook from `from` (a `wa_id`) sent now; opens the user's 24-hour window.
    /// Returns the message's `wamid` and the HTTP status the gateway answered.
    pub async fn post_text(&self, from: &str, name: &str, text: &str) -> anyhow::Result<(String, u16)> {
        self.post_text_at(from, name, text, unix_now()).await
    }

    /// Like [`FakeWhatsApp::post_text`] with the message's `timestamp` (unix seconds): a message
    /// written long ago and delivered late (Meta retries for up to 7 days) leaves the window as
    /// it was then.
    pub async fn post_text_at(&self, from: &str, name: &str, text: &str, ts: i64) -> anyhow::Result<(String, u16)> {
        let wamid = self.shared.wamid();
        let message =
            json!({"from": from, "id": wamid, "timestamp": ts.to_string(), "type": "text", "text": {"body": text}});
        let status = self.post_messages(from, name, vec![message]).await?;
        Ok((wamid, status))
    }

    /// A webhook carrying `messages` from one user (each needs `id` and `timestamp`); opens the
    /// window at the newest timestamp. Returns the HTTP status.
    pub async fn post_messages(&self, from: &str, name: &str, messages: Vec<Value>) -> anyhow::Result<u16> {
        let newest = messages
            .iter()
            .filter_map(|m| m.get("timestamp").and_then(Value::as_str).and_then(|t| t.parse::<i64>().ok()))
            .max();
        if let Some(ts) = newest {
            let mut inner = lock(&self.shared.inner);
            let slot = inner.last_inbound.entry(from.to_owned()).or_insert(ts);
            *slot = (*slot).max(ts);
        }
        let ids: Vec<String> =
            messages.iter().filter_map(|m| m.get("id").and_then(Value::as_str).map(str::to_owned)).collect();
        let value = json!({
            "messaging_product": "whatsapp",
            "metadata": {"display_phone_number": DISPLAY_PHONE_NUMBER, "phone_number_id": PHONE_NUMBER_ID},
            "contacts": [{"profile": {"name": name}, "wa_id": from}],
            "messages": messages,
        });
        let body = envelope(value);
        {
            let mut inner = lock(&self.shared.inner);
            for id in ids {
                inner.posted_by.entry(from.to_owned()).or_default().push(id.clone());
                inner.posted.insert(id, body.clone());
            }
        }
        post_signed(&self.shared, body, Signature::Good).await
    }

    /// The message ids posted from `from` so far (also those whose POST failed), in order.
    pub fn posted_from(&self, from: &str) -> Vec<String> {
        lock(&self.shared.inner).posted_by.get(from).cloned().unwrap_or_default()
    }

    /// POST the exact bytes of an earlier webhook carrying `id` again (Meta's at-least-once
    /// redelivery). Returns the HTTP status.
    pub async fn redeliver(&self, id: &str) -> anyhow::Result<u16> {
        let body =
            lock(&self.shared.inner).posted.get(id).cloned().with_context(|| format!("nothing posted for {id}"))?;
        post_signed(&self.shared, body, Signature::Good).await
    }

    /// Redeliver until the gateway answers 200, waiting longer after each failure (Meta keeps
    /// trying for 7 days; here until `timeout`). Connection errors count as failures.
    pub async fn redeliver_until_ok(&self, id: &str, timeout: Duration) -> anyhow::Result<u32> {
        let deadline = Instant::now() + timeout;
        let mut wait = Duration::from_millis(100);
        let mut attempts = 0;
        loop {
            attempts += 1;
            match self.redeliver(id).await {
                Ok(200) => return Ok(attempts),
                Ok(_) | Err(_) if Instant::now() + wait < deadline => {
                    tokio::time::sleep(wait).await;
                    wait = (wait * 2).min(Duration::from_secs(2));
                }
                Ok(status) => anyhow::bail!("the webhook still answered {status} after {attempts} attempts"),
                Err(e) => return Err(e.context(format!("the webhook still failed after {attempts} attempts"))),
            }
        }
    }

    /// A status-only webhook for a message the business sent. Returns the HTTP status.
    pub async fn post_status(&self, wamid: &str, recipient: &str, status: &str) -> anyhow::Result<u16> {
        let body = envelope(status_value(wamid, recipient, status, None));
        lock(&self.shared.inner).posted.insert(format!("{wamid}:{status}"), body.clone());
        post_signed(&self.shared, body, Signature::Good).await
    }

    /// POST `value` (one change's `value`) as a webhook with a signature made with the wrong
    /// secret. Returns the HTTP status.
    pub async fn post_forged(&self, body: &[u8]) -> anyhow::Result<u16> {
        post_signed(&self.shared, Bytes::copy_from_slice(body), Signature::Forged).await
    }

    /// POST a body without `X-Hub-Signature-256`.
    pub async fn post_unsigned(&self, body: &[u8]) -> anyhow::Result<u16> {
        post_signed(&self.shared, Bytes::copy_from_slice(body), Signature::Missing).await
    }

    /// A properly signed webhook of one change `value` (ASCII-escaped like Meta's).
    pub async fn post_value(&self, value: Value) -> anyhow::Result<u16> {
        post_signed(&self.shared, envelope(value), Signature::Good).await
    }

    /// Run Meta's GET verification against the callback with `verify_token` and a fresh
    /// numeric challenge.
    pub async fn verify(&self, verify_token: &str) -> anyhow::Result<Verification> {
        let url = lock(&self.shared.inner).callback.clone().context("no callback URL set")?;
        let challenge = (1_000_000_000 + self.shared.next_id() * 7_919).to_string();
        let resp = self
            .shared
            .webhooks
            .get(&url)
            .query(&[("hub.mode", "subscribe"), ("hub.verify_token", verify_token), ("hub.challenge", &challenge)])
            .send()
            .await
            .context("GET verification")?;
        let status = resp.status().as_u16();
        let content_type = resp.headers().get(header::CONTENT_TYPE).and_then(|v| v.to_str().ok()).map(str::to_owned);
        let body = resp.text().await.unwrap_or_default();
        Ok(Verification { status, body, content_type, challenge })
    }
}

/// `{"object":"whatsapp_business_account","entry":[{"id":WABA,"changes":[{"field":"messages","value":…}]}]}`
/// as ASCII-only JSON.
fn envelope(value: Value) -> Bytes {
    let body = json!({"object": "whatsapp_business_account",
        "entry": [{"id": WABA_ID, "changes": [{"field": "messages", "value": value}]}]});
    Bytes::from(escape_unicode(&body.to_string()))
}

fn status_value(wamid: &str, recipient: &str, status: &str, error: Option<&GraphError>) -> Value {
    let mut s = json!({"id": wamid, "status": status, "timestamp": unix_now().to_string(), "recipient_id": recipient});
    match error {
        Some(e) => {
            s["errors"] = json!([{"code": e.code, "title": e.details, "message": e.title,
                                  "error_data": {"details": e.details}}]);
        }
        None => {
            s["conversation"] = json!({"id": "CONVERSATION_ID", "origin": {"type": "service"}});
            s["pricing"] = json!({"billable": false, "pricing_model": "PMP", "category": "service"});
        }
    }
    json!({
        "messaging_product": "whatsapp",
        "metadata": {"display_phone_number": DISPLAY_PHONE_NUMBER, "phone_number_id": PHONE_NUMBER_ID},
        "statuses": [s],
    })
}

/// Every non-ASCII character as `\uXXXX` (UTF-16 units), the form Meta signs.
pub fn escape_unicode(json: &str) -> String {
    let mut out = String::with_capacity(json.len());
    for c in json.chars() {
        if c.is_ascii() {
            out.push(c);
        } else {
            let mut units = [0u16; 2];
            for u in c.encode_utf16(&mut units) {
                out.push_str(&format!("\\u{u:04x}"));
            }
        }
    }
    out
}

/// `sha256=<lowercase hex HMAC-SHA256(secret, body)>`.
pub fn signature(secret: &str, body: &[u8]) -> String {
    let mut mac = <Hmac<Sha256> as Mac>::new_from_slice(secret.as_bytes()).expect("HMAC takes any key length");
    mac.update(body);
    format!("sha256={}", hex::encode(mac.finalize().into_bytes()))
}

enum Signature {
    Good,
    Forged,
    Missing,
}

async fn post_signed(shared: &Shared, body: Bytes, sig: Signature) -> anyhow::Result<u16> {
    let url = lock(&shared.inner).callback.clone().context("no callback URL set")?;
    let mut req = shared.webhooks.post(&url).header(header::CONTENT_TYPE, "application/json");
    match sig {
        Signature::Good => req = req.header(SIGNATURE_HEADER, signature(DEFAULT_APP_SECRET, &body)),
        Signature::Forged => req = req.header(SIGNATURE_HEADER, signature("not-the-app-secret", &body)),
        Signature::Missing => {}
    }
    let resp = req.body(body).send().await.with_context(|| format!("POST to the webhook {url}"))?;
    Ok(resp.status().as_u16())
}

// ---------------------------------------------------------------------------------------------
// Serving

async fn route(State(shared): State<Arc<Shared>>, req: Request) -> Response {
    let at = Instant::now();
    let method = req.method().clone();
    let path = req.uri().path().to_owned();
    let authorized = req
        .headers()
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.strip_prefix("Bearer "))
        .is_some_and(|t| t == DEFAULT_ACCESS_TOKEN);
    if method == Method::GET && path.starts_with("/download/") {
        return download(&shared, &path, authorized);
    }
    let segments: Vec<&str> = path.trim_matches('/').split('/').collect();
    let versioned = segments.first().is_some_and(|v| valid_version(v));
    let rest: Vec<String> = segments.iter().skip(1).map(|s| (*s).to_owned()).collect();
    let short_path = format!("/{}", rest.join("/"));
    let query: Vec<(String, String)> =
        Query::<Vec<(String, String)>>::try_from_uri(req.uri()).map(|Query(q)| q).unwrap_or_default();
    let mut body = Value::Null;
    let mut upload = None;
    let answer = if !versioned {
        GraphError::new(400, 2500, "Unknown path components", &format!("{path} has no Graph version")).answer()
    } else if !authorized {
        GraphError::access_token().answer()
    } else {
        match (method.as_str(), rest.iter().map(String::as_str).collect::<Vec<_>>().as_slice()) {
            ("GET", [id]) if *id == PHONE_NUMBER_ID => Answer {
                status: 200,
                body: json!({"verified_name": "Clawgate Test", "display_phone_number": "+1 555-078-3881",
                             "id": PHONE_NUMBER_ID, "quality_rating": "GREEN"}),
            },
            ("POST", [id, "messages"]) if *id == PHONE_NUMBER_ID => match read_json(req).await {
                Ok(v) => {
                    body = v;
                    send(&shared, &body)
                }
                Err(e) => e.answer(),
            },
            ("POST", [id, "media"]) if *id == PHONE_NUMBER_ID => match read_upload(&shared, req, &query).await {
                Ok((fields, up)) => {
                    body = fields;
                    let id = up.id.clone();
                    lock(&shared.inner).media.insert(id.clone(), up.clone());
                    upload = Some(up);
                    Answer { status: 200, body: json!({"id": id}) }
                }
                Err(e) => e.answer(),
            },
            ("GET", [id]) => match lock(&shared.inner).media.get(*id) {
                Some(m) => Answer {
                    status: 200,
                    body: json!({"messaging_product": "whatsapp", "url": format!("{}/download/{}", shared.base, m.id),
                                 "mime_type": m.mime_type, "sha256": hex::encode(<Sha256 as sha2::Digest>::digest(&m.data)),
                                 "file_size": m.data.len().to_string(), "id": m.id}),
                },
                None => no_object(id),
            },
            ("DELETE", [id]) => match lock(&shared.inner).media.remove(*id) {
                Some(_) => Answer { status: 200, body: json!({"success": true}) },
                None => no_object(id),
            },
            (_, [id, ..]) => no_object(id),
            _ => no_object(""),
        }
    };
    let mut inner = lock(&shared.inner);
    inner.calls.push(GraphCall {
        method: method.to_string(),
        path: short_path,
        body,
        upload,
        status: answer.status,
        response: answer.body.clone(),
        at,
    });
    let n = inner.calls.len();
    drop(inner);
    shared.recorded.send_replace(n);
    let deferred = std::mem::take(&mut lock(&shared.inner).deferred_failures);
    let auto = lock(&shared.inner).auto_statuses;
    if !deferred.is_empty() || (auto && answer.status == 200) {
        spawn_statuses(&shared, deferred, if auto { answer.body.clone() } else { Value::Null });
    }
    (StatusCode::from_u16(answer.status).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR), axum::Json(answer.body))
        .into_response()
}

/// Post the status webhooks a send causes, after its answer.
fn spawn_statuses(shared: &Arc<Shared>, failures: Vec<(String, String)>, accepted: Value) {
    let shared = Arc::clone(shared);
    tokio::spawn(async move {
        for (wamid, to) in failures {
            let body = envelope(status_value(&wamid, &to, "failed", Some(&GraphError::re_engagement())));
            let _ = post_signed(&shared, body, Signature::Good).await;
        }
        let (Some(wamid), Some(to)) = (
            accepted.pointer("/messages/0/id").and_then(Value::as_str),
            accepted.pointer("/contacts/0/wa_id").and_then(Value::as_str),
        ) else {
            return;
        };
        for status in ["sent", "delivered", "read"] {
            let _ = post_signed(&shared, envelope(status_value(wamid, to, status, None)), Signature::Good).await;
        }
    });
}

fn valid_version(v: &str) -> bool {
    v.strip_prefix('v')
        .and_then(|n| n.split_once('.'))
        .is_some_and(|(a, b)| !a.is_empty() && !b.is_empty() && a.parse::<u32>().is_ok() && b.parse::<u32>().is_ok())
}

fn no_object(id: &str) -> Answer {
    GraphError::new(
        400,
        codes::INVALID_PARAMETER,
        "Unsupported request",
        &format!("Object with ID '{id}' does not exist, cannot be loaded due to missing permissions, or does not support this operation"),
    )
    .answer()
}

fn download(shared: &Shared, path: &str, authorized: bool) -> Response {
    if !authorized {
        return (StatusCode::UNAUTHORIZED, axum::Json(GraphError::access_token().body())).into_response();
    }
    let id = path.trim_start_matches("/download/");
    match lock(&shared.inner).media.get(id) {
        Some(m) => ([(header::CONTENT_TYPE, m.mime_type.clone())], m.data.clone()).into_response(),
        None => StatusCode::NOT_FOUND.into_response(),
    }
}

async fn read_json(req: Request) -> Result<Value, GraphError> {
    let body = Bytes::from_request(req, &()).await.map_err(|_| GraphError::invalid_parameter("unreadable body"))?;
    match serde_json::from_slice::<Value>(&body) {
        Ok(v @ Value::Object(_)) => Ok(v),
        _ => Err(GraphError::invalid_parameter("The request body must be a JSON object")),
    }
}

fn send(shared: &Shared, p: &Value) -> Answer {
    match check_send(shared, p) {
        Ok(answer) => answer,
        Err(e) => e.answer(),
    }
}

fn check_send(shared: &Shared, p: &Value) -> Result<Answer, GraphError> {
    let s = |k: &str| p.get(k).and_then(Value::as_str);
    if s("messaging_product") != Some("whatsapp") {
        return Err(GraphError::invalid_parameter("The parameter messaging_product is required."));
    }
    if s("status") == Some("read") {
        if s("message_id").is_none_or(|m| !m.starts_with("wamid.")) {
            return Err(GraphError::invalid_parameter("message_id is required to mark a message as read"));
        }
        return Ok(Answer { status: 200, body: json!({"success": true}) });
    }
    let Some(to) = s("to").filter(|t| !t.is_empty()) else {
        return Err(GraphError::invalid_parameter("The parameter to is required."));
    };
    if let Some(rt) = s("recipient_type")
        && rt != "individual"
        && rt != "group"
    {
        return Err(GraphError::invalid_parameter("recipient_type must be individual or group"));
    }
    let kind = s("type").unwrap_or("text");
    match kind {
        "text" => {
            let body = p.pointer("/text/body").and_then(Value::as_str).unwrap_or("");
            if body.is_empty() {
                return Err(GraphError::invalid_parameter("The parameter text['body'] is required."));
            }
            if body.chars().count() > MAX_TEXT {
                return Err(GraphError::invalid_parameter(&format!(
                    "Param text['body'] must be at most {MAX_TEXT} characters long."
                )));
            }
        }
        "image" | "document" => {
            let Some(media) = p.get(kind).and_then(Value::as_object) else {
                return Err(GraphError::invalid_parameter(&format!("The parameter {kind} is required.")));
            };
            let link = media.get("link").and_then(Value::as_str);
            let id = media.get("id").and_then(Value::as_str);
            match (link, id) {
                (Some(_), Some(_)) | (None, None) => {
                    return Err(GraphError::invalid_parameter(&format!(
                        "Exactly one of {kind}['link'] and {kind}['id'] is required."
                    )));
                }
                (Some(l), None) if !l.starts_with("https://") => {
                    return Err(GraphError::invalid_parameter("Media links must be public HTTPS URLs."));
                }
                (None, Some(id)) => {
                    let inner = lock(&shared.inner);
                    let Some(m) = inner.media.get(id) else {
                        return Err(GraphError::invalid_parameter(&format!("Invalid media id {id}")));
                    };
                    if kind == "image" && !matches!(m.mime_type.as_str(), "image/png" | "image/jpeg") {
                        return Err(GraphError::invalid_parameter("image messages take image/jpeg or image/png"));
                    }
                }
                _ => {}
            }
            if media.get("caption").and_then(Value::as_str).is_some_and(|c| c.chars().count() > MAX_CAPTION) {
                return Err(GraphError::invalid_parameter(&format!(
                    "Param {kind}['caption'] must be at most {MAX_CAPTION} characters long."
                )));
            }
        }
        "template" => {
            if p.pointer("/template/name").and_then(Value::as_str).is_none() {
                return Err(GraphError::invalid_parameter("The parameter template['name'] is required."));
            }
        }
        other => return Err(GraphError::invalid_parameter(&format!("Unsupported message type {other}"))),
    }
    let mut inner = lock(&shared.inner);
    if let Some(e) = inner.fail_next.pop_front() {
        return Err(e);
    }
    if inner.rate_limited {
        return Err(GraphError::rate_limit());
    }
    let open = inner.last_inbound.get(to).is_some_and(|t| unix_now() - t < WINDOW_SECS);
    let wamid = shared.wamid();
    if kind != "template" && !open {
        if !inner.window_async {
            return Err(GraphError::re_engagement());
        }
        inner.deferred_failures.push((wamid.clone(), to.to_owned()));
    }
    Ok(Answer {
        status: 200,
        body: json!({"messaging_product": "whatsapp", "contacts": [{"input": to, "wa_id": to}],
                     "messages": [{"id": wamid, "message_status": "accepted"}]}),
    })
}

async fn read_upload(shared: &Shared, req: Request, query: &[(String, String)]) -> Result<(Value, Upload), GraphError> {
    let is_multipart = req
        .headers()
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v.to_ascii_lowercase().starts_with("multipart/form-data"));
    if !is_multipart {
        return Err(GraphError::invalid_parameter("Media uploads are multipart/form-data"));
    }
    let mut mp = Multipart::from_request(req, &()).await.map_err(|e| GraphError::invalid_parameter(&format!("{e}")))?;
    let mut fields = serde_json::Map::new();
    for (k, v) in query {
        fields.insert(k.clone(), json!(v));
    }
    let mut file = None;
    loop {
        let field = match mp.next_field().await {
            Ok(Some(f)) => f,
            Ok(None) => break,
            Err(e) => return Err(GraphError::invalid_parameter(&format!("can't parse multipart body: {e}"))),
        };
        let name = field.name().unwrap_or_default().to_owned();
        let filename = field.file_name().map(str::to_owned);
        let ct = field.content_type().map(str::to_owned);
        let data = field.bytes().await.map_err(|e| GraphError::invalid_parameter(&format!("{e}")))?;
        if name == "file" {
            file = Some((filename, ct, data));
        } else {
            fields.insert(name, json!(String::from_utf8_lossy(&data)));
        }
    }
    if fields.get("messaging_product").and_then(Value::as_str) != Some("whatsapp") {
        return Err(GraphError::invalid_parameter("The parameter messaging_product is required."));
    }
    let Some((filename, part_type, data)) = file else {
        return Err(GraphError::invalid_parameter("The parameter file is required."));
    };
    let mime = fields.get("type").and_then(Value::as_str).map(str::to_owned).or(part_type).unwrap_or_default();
    let media_err = |d: &str| GraphError::new(400, codes::MEDIA_UPLOAD, "Media upload error", d);
    match mime.as_str() {
        "image/png" if !data.starts_with(b"\x89PNG\r\n\x1a\n") || data.get(12..16) != Some(b"IHDR") => {
            return Err(media_err("The file is not a PNG image."));
        }
        "image/jpeg" if !data.starts_with(&[0xFF, 0xD8, 0xFF]) => {
            return Err(media_err("The file is not a JPEG image."));
        }
        "image/png" | "image/jpeg" if data.len() > MAX_IMAGE_BYTES => {
            return Err(media_err("Images are limited to 5 MB."));
        }
        "" => return Err(media_err("The file has no MIME type.")),
        _ => {}
    }
    if data.len() > MAX_UPLOAD_BYTES {
        return Err(media_err("Files are limited to 100 MB."));
    }
    let id = format!("{}", 900_000_000_000_000 + shared.next_id());
    Ok((Value::Object(fields), Upload { id, mime_type: mime, filename, data }))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn escapes_like_the_sdk() {
        assert_eq!(escape_unicode(r#"{"a":"é😀"}"#), r#"{"a":"\u00e9\ud83d\ude00"}"#);
        let v: Value = serde_json::from_str(&escape_unicode(r#"{"a":"é😀"}"#)).unwrap();
        assert_eq!(v["a"], "é😀");
    }

    #[test]
    fn signature_is_lowercase_hex_of_the_raw_body() {
        // HMAC-SHA256("key", "The quick brown fox jumps over the lazy dog"), RFC 4231-style vector.
        assert_eq!(
            signature("key", b"The quick brown fox jumps over the lazy dog"),
            "sha256=f7bc83f430538424b13298e6aa6fb143ef4d59a14946175997479dbc2d1a3cd8"
        );
    }

    #[tokio::test]
    async fn sends_check_token_window_and_limits() {
        let wa = FakeWhatsApp::start().await.unwrap();
        let http = reqwest::Client::new();
        let url = format!("{}/{API_VERSION}/{PHONE_NUMBER_ID}/messages", wa.api_root());
        let text = |to: &str, body: &str| {
            json!({"messaging_product": "whatsapp", "recipient_type": "individual", "to": to, "type": "text",
                   "text": {"body": body, "preview_url": false}})
        };
        let post = |token: &'static str, body: Value| {
            let (http, url) = (http.clone(), url.clone());
            async move {
                let r = http.post(url).bearer_auth(token).json(&body).send().await.unwrap();
                (r.status().as_u16(), r.json::<Value>().await.unwrap())
            }
        };
        let (status, body) = post("wrong", text("1", "hi")).await;
        assert_eq!((status, body["error"]["code"].as_i64()), (401, Some(190)));
        // No inbound message yet: the window is closed.
        let (status, body) = post(DEFAULT_ACCESS_TOKEN, text("1", "hi")).await;
        assert_eq!((status, body["error"]["code"].as_i64()), (400, Some(codes::RE_ENGAGEMENT)), "{body}");
        lock(&wa.shared.inner).last_inbound.insert("1".into(), unix_now());
        let (status, body) = post(DEFAULT_ACCESS_TOKEN, text("1", "hi")).await;
        assert_eq!(status, 200, "{body}");
        assert!(body["messages"][0]["id"].as_str().unwrap().starts_with("wamid."));
        let (status, body) = post(DEFAULT_ACCESS_TOKEN, text("1", &"x".repeat(MAX_TEXT + 1))).await;
        assert_eq!((status, body["error"]["code"].as_i64()), (400, Some(100)));
        let (status, _) = post(DEFAULT_ACCESS_TOKEN, text("1", &"é".repeat(MAX_TEXT))).await;
        assert_eq!(status, 200, "4 096 characters, more bytes");
        wa.set_rate_limited(true);
        let (_, body) = post(DEFAULT_ACCESS_TOKEN, text("1", "hi")).await;
        assert_eq!(body["error"]["code"].as_i64(), Some(codes::RATE_LIMIT));
        wa.set_rate_limited(false);
        let image = json!({"messaging_product": "whatsapp", "to": "1", "type": "image",
                           "image": {"link": "https://x/a.png", "id": "1"}});
        let (status, _) = post(DEFAULT_ACCESS_TOKEN, image).await;
        assert_eq!(status, 400, "link and id together");
        // Upload: a PNG passes, bytes that are not one do not.
        let png = b"\x89PNG\r\n\x1a\n\0\0\0\rIHDR\0\0\0\x01\0\0\0\x01\x08\x02\0\0\0".to_vec();
        let upload = |data: Vec<u8>| {
            let form = reqwest::multipart::Form::new()
                .text("messaging_product", "whatsapp")
                .text("type", "image/png")
                .part("file", reqwest::multipart::Part::bytes(data).file_name("a.png").mime_str("image/png").unwrap());
            http.post(format!("{}/{API_VERSION}/{PHONE_NUMBER_ID}/media", wa.api_root()))
                .bearer_auth(DEFAULT_ACCESS_TOKEN)
                .multipart(form)
                .send()
        };
        let r = upload(png).await.unwrap();
        assert_eq!(r.status(), 200);
        let id = r.json::<Value>().await.unwrap()["id"].as_str().unwrap().to_owned();
        let r = upload(b"not a png".to_vec()).await.unwrap();
        assert_eq!(r.json::<Value>().await.unwrap()["error"]["code"].as_i64(), Some(codes::MEDIA_UPLOAD));
        let image = json!({"messaging_product": "whatsapp", "to": "1", "type": "image", "image": {"id": id}});
        assert_eq!(post(DEFAULT_ACCESS_TOKEN, image).await.0, 200);
    }
}
