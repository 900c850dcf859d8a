//! Telegram Bot API (long polling and webhooks), over plain HTTPS with reqwest.
//!
//! Receiving: `run` checks the token with `getMe`, then either long-polls `getUpdates` from
//! exactly one loop (the offset is acknowledged to Telegram, and saved through the [`Ingress`],
//! only after every update before it was recorded) or registers a webhook and leaves receiving to
//! [`TelegramChannel::handle_webhook`], which the gateway's HTTP server calls.
//!
//! The bot token is part of every request URL; it never appears in `Debug`, logs or errors
//! (reqwest errors are stripped of their URL, and anything else is scrubbed of the token).
//! The wire contract is `shared/contracts/telegram-bot-api.md`.

use std::fmt;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use async_trait::async_trait;
use serde::Deserialize;
use serde_json::{Value, json};
use subtle::ConstantTimeEq;
use tokio_util::sync::CancellationToken;

use crate::channel::{Capabilities, Channel, ChannelError, Ingress, SendError, StatusCell, TextMeasure};
use crate::config::AccountConfig;
use crate::model::{AccountKey, ChatKind, Delivered, InboundMedia, InboundMessage, MediaSource, OutboundMessage};
use clawgate_backoff::Backoff;

/// Where the Bot API lives unless `apiRoot` says otherwise.
pub const DEFAULT_API_ROOT: &str = "https://api.telegram.org";
/// Long-poll timeout unless `pollTimeoutSeconds` says otherwise.
pub const DEFAULT_POLL_TIMEOUT_SECS: u64 = 25;
/// The state key of the next `getUpdates` offset.
pub const OFFSET_KEY: &str = "offset";
/// The header Telegram puts the webhook secret in.
pub const SECRET_HEADER: &str = "X-Telegram-Bot-Api-Secret-Token";

const MAX_TEXT: usize = 4096;
const MAX_CAPTION: usize = 1024;
const MAX_PHOTO_BYTES: u64 = 10 * 1024 * 1024;
/// Telegram fetches photos given by URL only up to 5 MB.
const MAX_PHOTO_URL_BYTES: u64 = 5 * 1024 * 1024;
const MAX_UPLOAD_BYTES: u64 = 50 * 1024 * 1024;
/// Update kinds we ask for; edits and the rest are not turned into messages.
const ALLOWED_UPDATES: &[&str] = &["message", "channel_post"];
/// Backoff of the receive loop after a failure.
const RECEIVE_BACKOFF: Backoff = Backoff::new(Duration::from_millis(500), Duration::from_secs(30));
/// An empty poll answer is never followed by the next poll sooner than this: a server that
/// answers at once instead of holding the poll (an emulator, a proxy) must not make us spin.
const MIN_EMPTY_POLL_CYCLE: Duration = Duration::from_secs(1);
/// Timeout of a non-polling call.
const CALL_TIMEOUT: Duration = Duration::from_secs(30);
/// Timeout of an upload.
const UPLOAD_TIMEOUT: Duration = Duration::from_secs(300);

/// Why a webhook request was refused (the crate-wide type; the gateway maps each variant to an
/// HTTP status).
pub use crate::channel::WebhookError;

/// A failed Bot API call.
#[derive(Debug, Clone, PartialEq, Eq)]
enum ApiError {
    /// No answer (connect, timeout, broken body); token-free text.
    Network(String),
    /// An error answer.
    Api { code: u16, description: String, retry_after: Option<u64> },
}

impl fmt::Display for ApiError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            ApiError::Network(e) => write!(f, "network error: {e}"),
            ApiError::Api { code, description, .. } => write!(f, "{code} {description}"),
        }
    }
}

impl ApiError {
    fn to_send_error(&self) -> SendError {
        match self {
            ApiError::Api { code: 429, description, retry_after } => {
                SendError::RetryAfter(Duration::from_secs(retry_after.unwrap_or(1)), description.clone())
            }
            // 401: the token was revoked or changed; the run loop reports it, the outbox keeps the
            // message for when the config is fixed.
            ApiError::Api { code, .. } if *code >= 500 || *code == 401 => SendError::Transient(self.to_string()),
            ApiError::Api { .. } => SendError::Permanent(self.to_string()),
            ApiError::Network(_) => SendError::Transient(self.to_string()),
        }
    }
}

/// The Bot API envelope.
#[derive(Debug, Deserialize)]
struct Envelope {
    ok: bool,
    #[serde(default)]
    result: Option<Value>,
    #[serde(default)]
    error_code: Option<u16>,
    #[serde(default)]
    description: Option<String>,
    #[serde(default)]
    parameters: Option<ResponseParameters>,
}

#[derive(Debug, Deserialize)]
struct ResponseParameters {
    #[serde(default)]
    retry_after: Option<u64>,
}

/// The HTTP client of one bot: the URL root and the token, which `Debug` hides.
struct Api {
    http: reqwest::Client,
    root: String,
    token: String,
}

impl fmt::Debug for Api {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Api").field("root", &self.root).field("token", &"<redacted>").finish()
    }
}

impl Api {
    fn url(&self, method: &str) -> String {
        format!("{}/bot{}/{method}", self.root, self.token)
    }

    /// Remove the token from text that might quote a URL.
    fn scrub(&self, s: &str) -> String {
        if self.token.is_empty() { s.to_owned() } else { s.replace(&self.token, "<redacted>") }
    }

    fn network(&self, e: reqwest::Error) -> ApiError {
        let kind = if e.is_timeout() {
            "timed out"
        } else if e.is_connect() {
            "could not connect"
        } else {
            "request failed"
        };
        ApiError::Network(self.scrub(&format!("{kind}: {}", e.without_url())))
    }

    /// POST a JSON body; the `result` of a successful answer.
    async fn call(&self, method: &str, body: &Value, timeout: Duration) -> Result<Value, ApiError> {
        let req = self.http.post(self.url(method)).json(body).timeout(timeout);
        self.finish(req).await
    }

    /// POST a multipart body (uploads).
    async fn call_multipart(&self, method: &str, form: reqwest::multipart::Form) -> Result<Value, ApiError> {
        let req = self.http.post(self.url(method)).multipart(form).timeout(UPLOAD_TIMEOUT);
        self.finish(req).await
    }

    async fn finish(&self, req: reqwest::RequestBuilder) -> Result<Value, ApiError> {
        let resp = req.send().await.map_err(|e| self.network(e))?;
        let status = resp.status().as_u16();
        let header_retry = resp
            .headers()
            .get(reqwest::header::RETRY_AFTER)
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.trim().parse::<u64>().ok());
        let body = resp.bytes().await.map_err(|e| self.network(e))?;
        match serde_json::from_slice::<Envelope>(&body) {
            Ok(env) if env.ok && status < 300 => Ok(env.result.unwrap_or(Value::Null)),
            Ok(env) => Err(ApiError::Api {
                code: env.error_code.unwrap_or(if status < 300 { 500 } else { status }),
                description: self.scrub(env.description.as_deref().unwrap_or("no description")),
                retry_after: env.parameters.and_then(|p| p.retry_after).or(header_retry),
            }),
            // Not the envelope (a proxy's page, an emulator's `{"message": …}`): keep a short,
            // token-free excerpt.
            Err(_) => {
                let text = String::from_utf8_lossy(&body);
                let detail = serde_json::from_slice::<Value>(&body)
                    .ok()
                    .and_then(|v| v.get("message").and_then(Value::as_str).map(str::to_owned))
                    .unwrap_or_else(|| text.chars().take(200).collect());
                Err(ApiError::Api {
                    code: if status < 300 { 502 } else { status },
                    description: self.scrub(&format!("unexpected answer (HTTP {status}): {detail}")),
                    retry_after: header_retry,
                })
            }
        }
    }
}

/// The bot's own identity, from `getMe`.
#[derive(Debug, Clone, PartialEq, Eq)]
struct BotIdentity {
    id: i64,
    username: Option<String>,
}

/// How updates reach us.
#[derive(Clone, PartialEq, Eq)]
enum Mode {
    Polling { timeout_secs: u64 },
    Webhook { url: String, secret: String, path: String },
}

impl fmt::Debug for Mode {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Mode::Polling { timeout_secs } => f.debug_struct("Polling").field("timeout_secs", timeout_secs).finish(),
            Mode::Webhook { url, path, .. } => {
                f.debug_struct("Webhook").field("url", url).field("path", path).field("secret", &"<redacted>").finish()
            }
        }
    }
}

/// One Telegram bot account.
#[derive(Debug)]
pub struct TelegramChannel {
    key: AccountKey,
    api: Api,
    mode: Mode,
    status: StatusCell,
    /// Known after the first `getMe`; needed to tell mentions of and replies to the bot.
    me: Mutex<Option<BotIdentity>>,
    /// Held by the one receive loop: a second concurrent `run` would make Telegram answer 409.
    receiving: tokio::sync::Mutex<()>,
}

fn config_err(key: &AccountKey, msg: impl fmt::Display) -> ChannelError {
    ChannelError::Config(format!("channels.telegram ({key}): {msg}"))
}

impl TelegramChannel {
    /// Build from a resolved account. Settings: `apiRoot` (default [`DEFAULT_API_ROOT`]),
    /// `pollTimeoutSeconds` (1-50, default 25), `webhookUrl` + `webhookSecret` (webhook mode),
    /// `webhookPath` (default `/telegram-webhook/<account>`).
    pub fn new(cfg: &AccountConfig) -> Result<Self, ChannelError> {
        let key = cfg.key.clone();
        let token = cfg.token.clone().filter(|t| !t.trim().is_empty()).ok_or_else(|| {
            config_err(&key, "botToken is not set; put the token from @BotFather in channels.telegram.botToken")
        })?;
        if token.contains('/') || token.chars().any(char::is_whitespace) {
            return Err(config_err(&key, "botToken contains '/' or spaces; copy it exactly as @BotFather gave it"));
        }
        let root = cfg.settings.api_root.as_deref().unwrap_or(DEFAULT_API_ROOT).trim_end_matches('/').to_owned();
        if !(root.starts_with("https://") || root.starts_with("http://")) {
            return Err(config_err(&key, format!("apiRoot {root:?} must be an http(s) URL")));
        }
        let mode = match cfg.settings.webhook_url.as_deref() {
            None => Mode::Polling {
                timeout_secs: cfg.settings.poll_timeout_seconds.unwrap_or(DEFAULT_POLL_TIMEOUT_SECS).clamp(1, 50),
            },
            Some(url) => {
                let secret = cfg.settings.webhook_secret.as_deref().ok_or_else(|| {
                    config_err(
                        &key,
                        "webhookUrl is set but webhookSecret is not; set a secret of 1-256 characters A-Z a-z 0-9 _ -",
                    )
                })?;
                if secret.len() > 256 || !secret.chars().all(|c| c.is_ascii_alphanumeric() || c == '_' || c == '-') {
                    return Err(config_err(&key, "webhookSecret must be 1-256 characters of A-Z a-z 0-9 _ -"));
                }
                let path =
                    cfg.settings.webhook_path.clone().unwrap_or_else(|| format!("/telegram-webhook/{}", key.account));
                Mode::Webhook { url: url.to_owned(), secret: secret.to_owned(), path }
            }
        };
        let http = reqwest::Client::builder()
            .connect_timeout(Duration::from_secs(10))
            .build()
            .map_err(|e| ChannelError::Fatal(format!("building the HTTP client: {e}")))?;
        Ok(Self {
            key,
            api: Api { http, root, token },
            mode,
            status: StatusCell::new(),
            me: Mutex::new(None),
            receiving: tokio::sync::Mutex::new(()),
        })
    }

    /// The HTTP path the gateway should route to [`TelegramChannel::handle_webhook`], in
    /// webhook mode.
    pub fn webhook_path(&self) -> Option<String> {
        match &self.mode {
            Mode::Webhook { path, .. } => Some(path.clone()),
            Mode::Polling { .. } => None,
        }
    }

    /// Take one webhook delivery: check the secret (constant time), parse the `Update`, record
    /// its message. `Ok` means answer 200 (also for updates that carry no message).
    pub async fn handle_webhook(
        &self,
        secret_header: Option<&str>,
        body: &[u8],
        ingress: &dyn Ingress,
    ) -> Result<(), WebhookError> {
        let Mode::Webhook { secret, .. } = &self.mode else { return Err(WebhookError::Unauthorized) };
        let presented = secret_header.unwrap_or("").as_bytes();
        if !bool::from(presented.ct_eq(secret.as_bytes())) {
            return Err(WebhookError::Unauthorized);
        }
        let update: Value = serde_json::from_slice(body).map_err(|e| WebhookError::BadRequest(e.to_string()))?;
        if update.get("update_id").and_then(Value::as_i64).is_none() {
            return Err(WebhookError::BadRequest("no update_id".into()));
        }
        self.status.mark_received();
        let me = match self.identity() {
            Some(me) => me,
            None => self.get_me().await.map_err(|e| WebhookError::Unavailable(e.to_string()))?,
        };
        let Some(message) = normalise(&self.key, &update, &me) else { return Ok(()) };
        ingress.deliver(message).await.map_err(|e| WebhookError::Unavailable(e.to_string()))?;
        self.status.mark_inbound();
        Ok(())
    }

    /// Asks `getMe` once who the token belongs to (`clawgate doctor`): the bot's id and
    /// `@username`, or why not.
    pub async fn probe(&self) -> Result<crate::probe::Identity, crate::probe::ProbeError> {
        use crate::probe::{Identity, ProbeError};
        match self.get_me().await {
            Ok(me) => Ok(Identity { id: me.id.to_string(), name: me.username.map(|u| format!("@{u}")) }),
            Err(ApiError::Api { code: code @ (401 | 404), .. }) => Err(ProbeError::Rejected(format!(
                "Telegram refused the bot token (getMe answered {code}); check channels.telegram.botToken"
            ))),
            Err(ApiError::Network(e)) => Err(ProbeError::Unreachable(format!("Bot API at {}: {e}", self.api.root))),
            Err(e) => Err(ProbeError::Failed(format!("getMe: {e}"))),
        }
    }

    fn identity(&self) -> Option<BotIdentity> {
        self.me.lock().unwrap_or_else(|p| p.into_inner()).clone()
    }

    async fn get_me(&self) -> Result<BotIdentity, ApiError> {
        let me = self.api.call("getMe", &json!({}), CALL_TIMEOUT).await?;
        let id = me.get("id").and_then(Value::as_i64).ok_or_else(|| ApiError::Api {
            code: 502,
            description: "getMe answered without a bot id".into(),
            retry_after: None,
        })?;
        let username = me.get("username").and_then(Value::as_str).map(str::to_owned);
        let identity = BotIdentity { id, username: username.clone() };
        *self.me.lock().unwrap_or_else(|p| p.into_inner()) = Some(identity.clone());
        self.status.set_bot(id.to_string(), username);
        Ok(identity)
    }

    /// Call until it works, the error is fatal, or `cancel` fires (`Ok(None)`).
    async fn retrying<T, F, Fut>(
        &self,
        what: &str,
        cancel: &CancellationToken,
        mut f: F,
    ) -> Result<Option<T>, ChannelError>
    where
        F: FnMut() -> Fut,
        Fut: Future<Output = Result<T, ApiError>>,
    {
        let mut attempt = 0;
        loop {
            let r = tokio::select! {
                _ = cancel.cancelled() => return Ok(None),
                r = f() => r,
            };
            let wait = match r {
                Ok(v) => return Ok(Some(v)),
                Err(ApiError::Api { code: 401, .. }) => return Err(unauthorized()),
                Err(ApiError::Api { code: 404, .. }) if what == "getMe" => {
                    return Err(config_err(
                        &self.key,
                        "the Bot API answered 404 to getMe: check channels.telegram.botToken (and apiRoot)",
                    ));
                }
                Err(ApiError::Api { code, ref description, .. })
                    if (400..500).contains(&code) && code != 429 && code != 409 =>
                {
                    return Err(config_err(&self.key, format!("{what} was refused: {code} {description}")));
                }
                Err(e) => {
                    self.status.mark_error(format!("{what}: {e}"));
                    tracing::warn!(account = %self.key, error = %e, "telegram {what} failed; retrying");
                    retry_wait(&e, attempt)
                }
            };
            attempt += 1;
            if sleep_or_cancel(wait, cancel).await {
                return Ok(None);
            }
        }
    }

    async fn run_webhook(&self, url: &str, secret: &str, cancel: &CancellationToken) -> Result<(), ChannelError> {
        let body = json!({"url": url, "secret_token": secret, "allowed_updates": ALLOWED_UPDATES});
        let set = self.retrying("setWebhook", cancel, || self.api.call("setWebhook", &body, CALL_TIMEOUT)).await?;
        if set.is_none() {
            return Ok(());
        }
        tracing::info!(account = %self.key, "telegram webhook registered");
        self.status.mark_connected();
        cancel.cancelled().await;
        Ok(())
    }

    async fn run_polling(
        &self,
        ingress: &dyn Ingress,
        timeout_secs: u64,
        cancel: &CancellationToken,
    ) -> Result<(), ChannelError> {
        let empty = json!({});
        if self
            .retrying("deleteWebhook", cancel, || self.api.call("deleteWebhook", &empty, CALL_TIMEOUT))
            .await?
            .is_none()
        {
            return Ok(());
        }
        self.status.mark_connected();
        let mut connected = true;
        let mut offset: Option<i64> =
            ingress.load_state(&self.key, OFFSET_KEY).await.and_then(|s| s.trim().parse().ok());
        // Highest update id recorded in this run: a server that ignores `offset` must not make
        // us record the same update twice.
        let mut recorded_through: Option<i64> = offset.map(|o| o - 1);
        let mut attempt: u32 = 0;
        let poll_timeout = Duration::from_secs(timeout_secs);
        loop {
            let mut body = json!({"timeout": timeout_secs, "allowed_updates": ALLOWED_UPDATES});
            if let Some(o) = offset {
                body["offset"] = json!(o);
            }
            let started = Instant::now();
            let answer = tokio::select! {
                _ = cancel.cancelled() => return Ok(()),
                r = self.api.call("getUpdates", &body, poll_timeout + Duration::from_secs(15)) => r,
            };
            let updates = match answer {
                Ok(v) => v,
                Err(ApiError::Api { code: 401, .. }) => {
                    self.status.mark_disconnected(Some("Telegram refused the bot token (401)".into()));
                    return Err(unauthorized());
                }
                Err(e) => {
                    let msg = format!("getUpdates: {e}");
                    if connected {
                        self.status.mark_disconnected(Some(msg));
                        connected = false;
                    } else {
                        self.status.mark_error(msg);
                    }
                    if matches!(&e, ApiError::Api { code: 409, description, .. } if description.contains("webhook")) {
                        // Someone registered a webhook; we own this bot's updates in polling mode.
                        let _ = self.api.call("deleteWebhook", &json!({}), CALL_TIMEOUT).await;
                    }
                    tracing::warn!(account = %self.key, error = %e, attempt, "telegram poll failed; backing off");
                    let wait = retry_wait(&e, attempt);
                    attempt = attempt.saturating_add(1);
                    if sleep_or_cancel(wait, cancel).await {
                        return Ok(());
                    }
                    continue;
                }
            };
            attempt = 0;
            if connected {
                self.status.mark_received();
            } else {
                self.status.mark_connected();
                connected = true;
            }
            let mut batch: Vec<(i64, Value)> = updates
                .as_array()
                .map(|a| a.iter().filter_map(|u| Some((u.get("update_id")?.as_i64()?, u.clone()))).collect())
                .unwrap_or_default();
            batch.sort_by_key(|(id, _)| *id);
            batch.retain(|(id, _)| recorded_through.is_none_or(|r| *id > r));
            if batch.is_empty() {
                // A held poll that timed out took `poll_timeout`; one that came back at once did
                // not wait for anything, so wait here instead of asking again right away.
                let elapsed = started.elapsed();
                let floor = MIN_EMPTY_POLL_CYCLE.min(poll_timeout);
                if elapsed < floor && sleep_or_cancel(floor - elapsed, cancel).await {
                    return Ok(());
                }
                continue;
            }
            crate::fault::crash_point("telegram.fetched");
            let me = match self.identity() {
                Some(me) => me,
                None => continue,
            };
            let mut next_offset = offset;
            let mut failed = false;
            for (id, update) in &batch {
                if let Some(message) = normalise(&self.key, update, &me) {
                    if let Err(e) = ingress.deliver(message).await {
                        // Not acknowledged: the offset stays at this update, so Telegram sends it
                        // (and everything after it) again.
                        self.status.mark_error(format!("recording update {id}: {e}"));
                        tracing::warn!(account = %self.key, update_id = id, error = %e, "inbound not recorded; will refetch");
                        failed = true;
                        break;
                    }
                    self.status.mark_inbound();
                }
                recorded_through = Some(*id);
                next_offset = Some(id + 1);
            }
            if next_offset != offset
                && let Some(o) = next_offset
            {
                offset = Some(o);
                if let Err(e) = ingress.save_state(&self.key, OFFSET_KEY, &o.to_string()).await {
                    // Telegram learns the offset from the next poll anyway; the saved copy only
                    // spares a refetch after a restart, and the core drops duplicates.
                    self.status.mark_error(format!("saving the offset: {e}"));
                    tracing::warn!(account = %self.key, error = %e, "could not save the telegram offset");
                }
            }
            if failed {
                let wait = RECEIVE_BACKOFF.delay(attempt);
                attempt = attempt.saturating_add(1);
                if sleep_or_cancel(wait, cancel).await {
                    return Ok(());
                }
            }
        }
    }

    async fn send_media(&self, msg: &OutboundMessage, base: Value) -> Result<Value, ApiError> {
        let Some(media) = &msg.media else { return Err(invalid("no media")) };
        let is_image = matches!(media.content_type.as_str(), "image/jpeg" | "image/jpg" | "image/png" | "image/webp");
        let caption = truncate_utf16(&msg.text, MAX_CAPTION);
        match &media.source {
            MediaSource::Url { url } => {
                let photo = is_image && !media.force_document && media.size.is_none_or(|s| s <= MAX_PHOTO_URL_BYTES);
                let (method, field) = if photo { ("sendPhoto", "photo") } else { ("sendDocument", "document") };
                let mut body = base;
                body[field] = json!(url);
                if !caption.is_empty() {
                    body["caption"] = json!(caption);
                }
                self.api.call(method, &body, UPLOAD_TIMEOUT).await
            }
            MediaSource::Path { path } => {
                let data = tokio::fs::read(path)
                    .await
                    .map_err(|e| invalid(&format!("cannot read the file to send ({}): {e}", media.filename)))?;
                let len = data.len() as u64;
                if len > MAX_UPLOAD_BYTES {
                    return Err(invalid(&format!("{} is {len} bytes; Telegram takes at most 50 MB", media.filename)));
                }
                let photo = is_image && !media.force_document && len <= MAX_PHOTO_BYTES;
                let (method, field) = if photo { ("sendPhoto", "photo") } else { ("sendDocument", "document") };
                let content_type = if media.content_type.contains('/') {
                    media.content_type.as_str()
                } else {
                    "application/octet-stream"
                };
                let part = reqwest::multipart::Part::bytes(data)
                    .file_name(media.filename.clone())
                    .mime_str(content_type)
                    .map_err(|e| invalid(&format!("content type {content_type:?}: {e}")))?;
                let mut form = reqwest::multipart::Form::new();
                if let Some(o) = base.as_object() {
                    for (k, v) in o {
                        let text = match v {
                            Value::String(s) => s.clone(),
                            other => other.to_string(),
                        };
                        form = form.text(k.clone(), text);
                    }
                }
                if !caption.is_empty() {
                    form = form.text("caption", caption);
                }
                form = form.part(field, part);
                self.api.call_multipart(method, form).await
            }
        }
    }
}

fn invalid(msg: &str) -> ApiError {
    ApiError::Api { code: 400, description: format!("Bad Request: {msg}"), retry_after: None }
}

fn unauthorized() -> ChannelError {
    ChannelError::Unauthorized(
        "Telegram refused the bot token (401 Unauthorized): check channels.telegram.botToken".into(),
    )
}

/// How long to wait after a failed call: `retry_after` on 429, else capped jittered backoff
/// (409 included: another poller or a webhook is competing for the updates).
fn retry_wait(e: &ApiError, attempt: u32) -> Duration {
    match e {
        ApiError::Api { code: 429, retry_after: Some(s), .. } => {
            Duration::from_secs(*s).max(Duration::from_millis(100))
        }
        _ => RECEIVE_BACKOFF.delay(attempt),
    }
}

/// Sleep; `true` when cancelled first.
async fn sleep_or_cancel(d: Duration, cancel: &CancellationToken) -> bool {
    tokio::select! {
        _ = cancel.cancelled() => true,
        _ = tokio::time::sleep(d) => false,
    }
}

/// The longest prefix of `s` of at most `max` UTF-16 units.
fn truncate_utf16(s: &str, max: usize) -> String {
    let mut used = 0;
    for (i, c) in s.char_indices() {
        used += c.len_utf16();
        if used > max {
            return s[..i].to_owned();
        }
    }
    s.to_owned()
}

/// `chat_id` as Telegram wants it: a number, or `@channelusername`.
fn chat_id_value(chat_id: &str) -> Value {
    chat_id.trim().parse::<i64>().map_or_else(|_| json!(chat_id), |n| json!(n))
}

/// Our message ids are `<chat_id>:<message_id>`; Telegram wants the number.
fn split_message_id(id: &str) -> (Option<&str>, Option<i64>) {
    match id.rsplit_once(':') {
        Some((chat, mid)) => (Some(chat), mid.parse().ok()),
        None => (None, id.parse().ok()),
    }
}

fn utf16_slice(text: &str, offset: usize, length: usize) -> Option<String> {
    let units: Vec<u16> = text.encode_utf16().collect();
    let end = offset.checked_add(length)?;
    units.get(offset..end).map(String::from_utf16_lossy)
}

/// Turn an `Update` into a message, or `None` when it carries nothing to act on.
fn normalise(key: &AccountKey, update: &Value, me: &BotIdentity) -> Option<InboundMessage> {
    let m = update.get("message").or_else(|| update.get("channel_post"))?;
    let chat = m.get("chat")?;
    let chat_id = chat.get("id")?.as_i64()?;
    let message_id = m.get("message_id")?.as_i64()?;
    let chat_kind = match chat.get("type")?.as_str()? {
        "private" => ChatKind::Direct,
        "group" | "supergroup" => ChatKind::Group,
        "channel" => ChatKind::Channel,
        _ => return None,
    };
    let text = m.get("text").or_else(|| m.get("caption")).and_then(Value::as_str).unwrap_or("").to_owned();
    let media = media_of(m);
    if text.is_empty() && media.is_empty() {
        return None;
    }
    let from = m.get("from");
    let sender_chat = m.get("sender_chat");
    let sender_id = from
        .and_then(|f| f.get("id"))
        .or_else(|| sender_chat.and_then(|c| c.get("id")))
        .and_then(Value::as_i64)
        .unwrap_or(chat_id);
    let sender_username =
        from.or(sender_chat).and_then(|f| f.get("username")).and_then(Value::as_str).map(str::to_owned);
    let sender_name = from
        .map(|f| {
            let first = f.get("first_name").and_then(Value::as_str).unwrap_or("");
            match f.get("last_name").and_then(Value::as_str) {
                Some(last) => format!("{first} {last}"),
                None => first.to_owned(),
            }
        })
        .or_else(|| sender_chat.and_then(|c| c.get("title")).and_then(Value::as_str).map(str::to_owned))
        .filter(|s| !s.trim().is_empty());
    let sender_is_bot = from.and_then(|f| f.get("is_bot")).and_then(Value::as_bool).unwrap_or(false);
    let chat_title = chat
        .get("title")
        .and_then(Value::as_str)
        .map(str::to_owned)
        .or_else(|| chat.get("first_name").and_then(Value::as_str).map(str::to_owned));
    let is_topic = m.get("is_topic_message").and_then(Value::as_bool).unwrap_or(false)
        || chat.get("is_forum").and_then(Value::as_bool).unwrap_or(false);
    let thread = m.get("message_thread_id").and_then(Value::as_i64).filter(|_| is_topic);

    // In a forum topic a plain message "replies" to the topic's root; that is not a reply.
    let reply = m.get("reply_to_message").filter(|r| {
        let rid = r.get("message_id").and_then(Value::as_i64);
        !(thread.is_some() && rid.is_some() && rid == thread)
    });
    let reply_to = reply.and_then(|r| r.get("message_id")).and_then(Value::as_i64).map(|r| format!("{chat_id}:{r}"));
    let reply_to_bot =
        reply.and_then(|r| r.get("from")).and_then(|f| f.get("id")).and_then(Value::as_i64) == Some(me.id);

    let mut mentions = Vec::new();
    let mut mentions_bot = false;
    let handle = me.username.as_ref().map(|u| format!("@{u}"));
    let entities = m.get("entities").or_else(|| m.get("caption_entities")).and_then(Value::as_array);
    for e in entities.into_iter().flatten() {
        let kind = e.get("type").and_then(Value::as_str).unwrap_or("");
        let offset = e.get("offset").and_then(Value::as_u64).unwrap_or(0) as usize;
        let length = e.get("length").and_then(Value::as_u64).unwrap_or(0) as usize;
        let span = utf16_slice(&text, offset, length).unwrap_or_default();
        match kind {
            "mention" if handle.as_ref().is_some_and(|h| span.eq_ignore_ascii_case(h)) => {
                mentions_bot = true;
                mentions.push(me.id.to_string());
            }
            "bot_command" => {
                if let (Some(h), Some((_, target))) = (&handle, span.split_once('@'))
                    && h[1..].eq_ignore_ascii_case(target)
                {
                    mentions_bot = true;
                }
            }
            "text_mention" => {
                if let Some(uid) = e.get("user").and_then(|u| u.get("id")).and_then(Value::as_i64) {
                    mentions.push(uid.to_string());
                    mentions_bot |= uid == me.id;
                }
            }
            _ => {}
        }
    }
    mentions.dedup();

    Some(InboundMessage {
        channel: key.channel.clone(),
        account: key.account.clone(),
        message_id: format!("{chat_id}:{message_id}"),
        chat_id: chat_id.to_string(),
        chat_kind,
        chat_title,
        thread_id: thread.map(|t| t.to_string()),
        space_id: None,
        sender_id: sender_id.to_string(),
        sender_username,
        sender_name,
        sender_is_bot,
        text,
        media,
        reply_to,
        reply_to_bot,
        mentions,
        mentions_bot,
        sent_at_ms: m.get("date").and_then(Value::as_i64).unwrap_or(0).saturating_mul(1000),
        session_key: None,
        context: None,
    })
}

fn media_of(m: &Value) -> Vec<InboundMedia> {
    let mut out = Vec::new();
    if let Some(sizes) = m.get("photo").and_then(Value::as_array) {
        // Telegram lists sizes smallest first; pick the largest by area to be safe.
        let area = |p: &Value| {
            p.get("width").and_then(Value::as_u64).unwrap_or(0) * p.get("height").and_then(Value::as_u64).unwrap_or(0)
        };
        if let Some(best) = sizes.iter().max_by_key(|p| area(p))
            && let Some(id) = best.get("file_id").and_then(Value::as_str)
        {
            out.push(InboundMedia {
                kind: "photo".into(),
                reference: id.to_owned(),
                filename: None,
                mime_type: Some("image/jpeg".into()),
                size: best.get("file_size").and_then(Value::as_u64),
            });
        }
    }
    for kind in ["document", "audio", "video", "voice", "sticker"] {
        if let Some(f) = m.get(kind)
            && let Some(id) = f.get("file_id").and_then(Value::as_str)
        {
            out.push(InboundMedia {
                kind: kind.into(),
                reference: id.to_owned(),
                filename: f.get("file_name").and_then(Value::as_str).map(str::to_owned),
                mime_type: f.get("mime_type").and_then(Value::as_str).map(str::to_owned),
                size: f.get("file_size").and_then(Value::as_u64),
            });
        }
    }
    out
}

#[async_trait]
impl Channel for TelegramChannel {
    fn key(&self) -> &AccountKey {
        &self.key
    }

    fn capabilities(&self) -> Capabilities {
        Capabilities {
            max_text: MAX_TEXT,
            measure: TextMeasure::Utf16,
            max_caption: MAX_CAPTION,
            max_photo_bytes: MAX_PHOTO_BYTES,
            max_upload_bytes: MAX_UPLOAD_BYTES,
            threads: true,
            typing: true,
            typing_interval: Duration::from_secs(4),
        }
    }

    fn status(&self) -> &StatusCell {
        &self.status
    }

    async fn run(&self, ingress: Arc<dyn Ingress>, cancel: CancellationToken) -> Result<(), ChannelError> {
        let Ok(_receiving) = self.receiving.try_lock() else {
            return Err(ChannelError::Fatal(format!("{}: run was called while already running", self.key)));
        };
        let result = async {
            let me = self.retrying("getMe", &cancel, || self.get_me()).await?;
            let Some(me) = me else { return Ok(()) };
            tracing::info!(account = %self.key, bot_id = me.id, username = ?me.username, "telegram bot identified");
            match &self.mode {
                Mode::Polling { timeout_secs } => self.run_polling(ingress.as_ref(), *timeout_secs, &cancel).await,
                Mode::Webhook { url, secret, .. } => self.run_webhook(url, secret, &cancel).await,
            }
        }
        .await;
        match &result {
            Ok(()) => self.status.mark_disconnected(None),
            Err(e) => self.status.mark_disconnected(Some(e.to_string())),
        }
        result
    }

    async fn send(&self, message: &OutboundMessage) -> Result<Delivered, SendError> {
        let mut base = json!({"chat_id": chat_id_value(&message.chat_id)});
        if let Some(t) = &message.thread_id {
            base["message_thread_id"] = t.parse::<i64>().map_or_else(|_| json!(t), |n| json!(n));
        }
        if let Some(r) = &message.reply_to {
            let (chat, mid) = split_message_id(r);
            if let Some(mid) = mid {
                let mut rp = json!({"message_id": mid, "allow_sending_without_reply": true});
                if let Some(c) = chat.filter(|c| *c != message.chat_id) {
                    rp["chat_id"] = chat_id_value(c);
                }
                base["reply_parameters"] = rp;
            }
        }
        if message.silent {
            base["disable_notification"] = json!(true);
        }
        let result = if message.media.is_some() {
            self.send_media(message, base).await
        } else {
            if message.text.trim().is_empty() {
                return Err(SendError::Permanent("empty message: nothing to send".into()));
            }
            base["text"] = json!(message.text);
            self.api.call("sendMessage", &base, CALL_TIMEOUT).await
        };
        let sent = result.map_err(|e| e.to_send_error())?;
        let mid = sent.get("message_id").and_then(Value::as_i64).ok_or_else(|| {
            SendError::Transient("Telegram accepted the message but answered without a message_id".into())
        })?;
        let chat = sent.get("chat").and_then(|c| c.get("id")).and_then(Value::as_i64).map(|c| c.to_string());
        self.status.mark_outbound();
        Ok(Delivered { message_id: format!("{}:{mid}", chat.unwrap_or_else(|| message.chat_id.clone())) })
    }

    async fn typing(&self, chat_id: &str, thread_id: Option<&str>) -> Result<(), SendError> {
        let mut body = json!({"chat_id": chat_id_value(chat_id), "action": "typing"});
        if let Some(t) = thread_id {
            body["message_thread_id"] = t.parse::<i64>().map_or_else(|_| json!(t), |n| json!(n));
        }
        match self.api.call("sendChatAction", &body, Duration::from_secs(10)).await {
            Ok(_) => Ok(()),
            Err(e) => {
                tracing::debug!(account = %self.key, error = %e, "telegram typing indicator failed");
                Err(e.to_send_error())
            }
        }
    }

    fn webhook_path(&self) -> Option<String> {
        TelegramChannel::webhook_path(self)
    }

    async fn handle_webhook(
        &self,
        request: crate::channel::WebhookRequest<'_>,
        ingress: &dyn Ingress,
    ) -> Result<(), WebhookError> {
        TelegramChannel::handle_webhook(self, request.header(SECRET_HEADER), request.body, ingress).await
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn me() -> BotIdentity {
        BotIdentity { id: 99, username: Some("Claw_Bot".into()) }
    }

    fn key() -> AccountKey {
        AccountKey::new("telegram", "default")
    }

    #[test]
    fn mentions_commands_and_text_mentions_address_the_bot() {
        let text = "hi @claw_bot and @other";
        let u = json!({"update_id": 1, "message": {"message_id": 5, "date": 10, "chat": {"id": -100, "type": "group", "title": "G"},
            "from": {"id": 1, "is_bot": false, "first_name": "A"}, "text": text,
            "entities": [{"type": "mention", "offset": 3, "length": 9}, {"type": "mention", "offset": 17, "length": 6}]}});
        let m = normalise(&key(), &u, &me()).unwrap();
        assert!(m.mentions_bot);
        assert_eq!(m.chat_kind, ChatKind::Group);
        assert_eq!(m.message_id, "-100:5");
        assert_eq!(m.sent_at_ms, 10_000);

        let u = json!({"update_id": 2, "message": {"message_id": 6, "date": 10, "chat": {"id": -100, "type": "supergroup"},
            "from": {"id": 1, "is_bot": false, "first_name": "A"}, "text": "/start@CLAW_BOT now",
            "entities": [{"type": "bot_command", "offset": 0, "length": 15}]}});
        assert!(normalise(&key(), &u, &me()).unwrap().mentions_bot);
        let u = json!({"update_id": 3, "message": {"message_id": 7, "date": 10, "chat": {"id": -100, "type": "supergroup"},
            "from": {"id": 1, "first_name": "A"}, "text": "/start@someone_else",
            "entities": [{"type": "bot_command", "offset": 0, "length": 19}]}});
        assert!(!normalise(&key(), &u, &me()).unwrap().mentions_bot);
        let u = json!({"update_id": 4, "message": {"message_id": 8, "date": 10, "chat": {"id": -100, "type": "supergroup"},
            "from": {"id": 1, "first_name": "A"}, "text": "😀 Claw",
            "entities": [{"type": "text_mention", "offset": 3, "length": 4, "user": {"id": 99, "is_bot": true, "first_name": "Claw"}}]}});
        let m = normalise(&key(), &u, &me()).unwrap();
        assert!(m.mentions_bot);
        assert_eq!(m.mentions, vec!["99"]);
    }

    #[test]
    fn topic_root_is_not_a_reply_but_a_reply_to_the_bot_is() {
        let u = json!({"update_id": 1, "message": {"message_id": 50, "date": 1, "message_thread_id": 40, "is_topic_message": true,
            "chat": {"id": -1001, "type": "supergroup", "is_forum": true}, "from": {"id": 1, "first_name": "A"}, "text": "in topic",
            "reply_to_message": {"message_id": 40, "date": 1, "chat": {"id": -1001, "type": "supergroup"}, "from": {"id": 99, "is_bot": true, "first_name": "B"}}}});
        let m = normalise(&key(), &u, &me()).unwrap();
        assert_eq!(m.thread_id.as_deref(), Some("40"));
        assert_eq!(m.reply_to, None);
        assert!(!m.reply_to_bot);
        let u = json!({"update_id": 2, "message": {"message_id": 51, "date": 1, "chat": {"id": -5, "type": "group"},
            "message_thread_id": 30, "from": {"id": 1, "first_name": "A"}, "text": "reply",
            "reply_to_message": {"message_id": 30, "date": 1, "chat": {"id": -5, "type": "group"}, "from": {"id": 99, "is_bot": true, "first_name": "B"}}}});
        let m = normalise(&key(), &u, &me()).unwrap();
        assert_eq!(m.thread_id, None, "a reply thread outside a forum is not a topic");
        assert_eq!(m.reply_to.as_deref(), Some("-5:30"));
        assert!(m.reply_to_bot);
    }

    #[test]
    fn media_captions_and_service_messages() {
        let u = json!({"update_id": 1, "message": {"message_id": 1, "date": 1, "chat": {"id": 7, "type": "private", "first_name": "Al"},
            "from": {"id": 7, "is_bot": false, "first_name": "Al", "last_name": "B", "username": "al"}, "caption": "look",
            "photo": [{"file_id": "small", "file_unique_id": "s", "width": 90, "height": 90},
                      {"file_id": "big", "file_unique_id": "b", "width": 1280, "height": 960, "file_size": 12345}]}});
        let m = normalise(&key(), &u, &me()).unwrap();
        assert_eq!(m.text, "look");
        assert_eq!(m.media[0].reference, "big");
        assert_eq!(m.sender_name.as_deref(), Some("Al B"));
        assert_eq!(m.chat_kind, ChatKind::Direct);
        let service = json!({"update_id": 2, "message": {"message_id": 2, "date": 1, "chat": {"id": -5, "type": "group"},
            "new_chat_members": [{"id": 3, "is_bot": false, "first_name": "C"}]}});
        assert!(normalise(&key(), &service, &me()).is_none());
        let other = json!({"update_id": 3, "callback_query": {"id": "x"}});
        assert!(normalise(&key(), &other, &me()).is_none());
    }

    #[test]
    fn debug_and_errors_never_show_the_token() {
        let mut cfg = crate::config::accounts_from_value(
            &json!({"channels": {"telegram": {"botToken": "123:SECRETSECRET", "webhookUrl": "https://x/y", "webhookSecret": "hooksecret"}}}),
            std::path::Path::new("/"),
        )
        .unwrap()
        .remove(0);
        let ch = TelegramChannel::new(&cfg).unwrap();
        let dbg = format!("{ch:?}");
        assert!(!dbg.contains("SECRETSECRET") && !dbg.contains("hooksecret"), "{dbg}");
        assert_eq!(ch.api.scrub("https://api/bot123:SECRETSECRET/getMe"), "https://api/bot<redacted>/getMe");
        assert_eq!(ch.webhook_path().as_deref(), Some("/telegram-webhook/default"));
        cfg.token = None;
        assert!(matches!(TelegramChannel::new(&cfg), Err(ChannelError::Config(_))));
    }

    #[test]
    fn caption_truncation_counts_utf16() {
        assert_eq!(truncate_utf16("😀😀", 3), "😀");
        assert_eq!(truncate_utf16("abc", 5), "abc");
    }

    /// Property tests: any JSON a webhook or `getUpdates` delivers is turned into a message or
    /// ignored, never a panic, and the message keeps no more than the update carried.
    mod props {
        use super::*;
        use proptest::prelude::*;

        fn json_value() -> impl Strategy<Value = Value> {
            let leaf = prop_oneof![
                Just(Value::Null),
                any::<bool>().prop_map(Value::Bool),
                any::<i64>().prop_map(|n| serde_json::json!(n)),
                (-1e3f64..1e3).prop_map(|f| serde_json::json!(f)),
                ".{0,24}".prop_map(Value::String),
            ];
            leaf.prop_recursive(4, 48, 6, |inner| {
                let key = prop::sample::select(vec![
                    "message",
                    "channel_post",
                    "chat",
                    "id",
                    "type",
                    "title",
                    "message_id",
                    "from",
                    "is_bot",
                    "username",
                    "first_name",
                    "text",
                    "caption",
                    "entities",
                    "offset",
                    "length",
                    "user",
                    "message_thread_id",
                    "reply_to_message",
                    "photo",
                    "date",
                ]);
                prop_oneof![
                    prop::collection::vec(inner.clone(), 0..5).prop_map(Value::Array),
                    prop::collection::btree_map(key, inner, 0..8)
                        .prop_map(|m| Value::Object(m.into_iter().map(|(k, v)| (k.to_owned(), v)).collect())),
                ]
            })
        }

        /// A plausible update with arbitrary text, entities and ids.
        fn update() -> impl Strategy<Value = Value> {
            (
                any::<i64>(),
                any::<i64>(),
                ".{0,80}",
                prop::collection::vec((0usize..100, 0usize..100), 0..4),
                json_value(),
            )
                .prop_map(|(chat, from, text, entities, extra)| {
                    let entities: Vec<Value> = entities
                        .into_iter()
                        .map(|(o, l)| serde_json::json!({"type": "mention", "offset": o, "length": l}))
                        .collect();
                    serde_json::json!({"update_id": 1, "message": {
                        "message_id": 7, "date": 1, "chat": {"id": chat, "type": "private"},
                        "from": {"id": from, "is_bot": false, "first_name": "A"},
                        "text": text, "entities": entities, "extra": extra,
                    }})
                })
        }

        proptest! {
            #![proptest_config(ProptestConfig { cases: 512, failure_persistence: None, ..ProptestConfig::default() })]

            #[test]
            fn arbitrary_json_never_panics(v in json_value()) {
                let _ = normalise(&key(), &v, &me());
                let _ = normalise(&key(), &serde_json::json!({"message": v}), &me());
            }

            #[test]
            fn updates_never_panic_and_stay_bounded(u in update()) {
                if let Some(m) = normalise(&key(), &u, &me()) {
                    let kept = format!("{m:?}").len();
                    prop_assert!(kept <= 4 * u.to_string().len() + 512, "{kept} bytes from {}", u);
                }
            }
        }
    }
}
