//! LINE Messaging API: webhook in, reply/push out, over plain HTTPS with reqwest.
//!
//! Receiving: LINE POSTs events to the account's webhook path on the gateway's own port; the
//! gateway's HTTP server hands each request to [`LineChannel::handle_webhook`], which checks
//! `x-line-signature` (Base64 HMAC-SHA256 of the raw body under the channel secret, compared in
//! constant time) **before** it parses or logs anything, then records every message event through
//! the [`Ingress`] (deduplicated there by `webhookEventId`) and only then lets the gateway answer
//! 200. A verify request (`events: []`) is answered 200 once its signature holds; an unsigned one
//! is refused like any other unsigned request.
//!
//! Sending: a reply token is good once and for about a minute, and replies are free while pushes
//! count against the monthly allowance, so each send first tries a token kept in memory from the
//! webhook (the one of the message it answers, else the newest unused one of that chat), and falls
//! back to a push when there is none or LINE refuses it. Pushes carry an `X-Line-Retry-Key` made
//! from the outbox row, so a retry after a lost answer is answered 409 ("already accepted"), which
//! counts as delivered, instead of being delivered twice. A reply cannot be made idempotent: if
//! its answer is lost the token is spent and the next attempt pushes, which may repeat that one
//! message (the same window the outbox documents for every platform).
//!
//! Images go as `originalContentUrl`/`previewImageUrl`: LINE fetches them itself, so the
//! gateway must hand this adapter an absolute `https://` URL (built from `gateway.publicUrl`).
//!
//! The access token is only ever in the `Authorization` header; it never appears in `Debug`,
//! logs or errors. The wire contract is `shared/contracts/line.md`.

use std::fmt;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use async_trait::async_trait;
use base64::Engine as _;
use base64::engine::general_purpose::STANDARD as B64;
use hmac::{Hmac, Mac};
use serde_json::{Value, json};
use sha2::{Digest, Sha256};
use tokio_util::sync::CancellationToken;

use crate::channel::{
    Capabilities, Channel, ChannelError, Ingress, SendError, StatusCell, TextMeasure, WebhookError, WebhookRequest,
};
use crate::config::AccountConfig;
use crate::model::{AccountKey, ChatKind, Delivered, InboundMessage, MediaSource, OutboundMessage};
use clawgate_backoff::Backoff;

/// Where the Messaging API lives unless `apiRoot` says otherwise.
pub const DEFAULT_API_ROOT: &str = "https://api.line.me";
/// The webhook path of the `default` account (the connector's and OpenClaw's default); other
/// accounts get `/line/webhook/<account>`.
pub const DEFAULT_WEBHOOK_PATH: &str = "/line/webhook";
/// The header LINE signs webhooks in (its case may change; it is matched case-insensitively).
pub const SIGNATURE_HEADER: &str = "x-line-signature";
/// Longest text message, in UTF-16 code units.
pub const MAX_TEXT: usize = 5000;
/// Largest image LINE fetches as `originalContentUrl`.
pub const MAX_IMAGE_BYTES: u64 = 10 * 1024 * 1024;
/// Longest image URL LINE takes.
pub const MAX_URL_CHARS: usize = 2000;

/// LINE takes a reply token for a minute; we stop using one a little earlier so a request in
/// flight does not arrive just too late.
const REPLY_TOKEN_TTL: Duration = Duration::from_secs(50);
/// Tokens remembered (used or not) before the oldest are forgotten.
const MAX_REPLY_TOKENS: usize = 10_000;
/// The dummy token older verify requests carried; never used.
const DUMMY_REPLY_TOKEN: &str = "00000000000000000000000000000000";
/// LINE documents no `Retry-After` on 429; wait this long before the next attempt.
const RATE_LIMIT_WAIT: Duration = Duration::from_secs(1);
/// Timeout of one API call.
const CALL_TIMEOUT: Duration = Duration::from_secs(30);
/// How long the "loading" animation lasts (5–60 s, a multiple of 5); the router repeats it.
const LOADING_SECONDS: u64 = 20;
/// Backoff of the start-up token check.
const START_BACKOFF: Backoff = Backoff::new(Duration::from_millis(500), Duration::from_secs(60));

type HmacSha256 = Hmac<Sha256>;

/// A failed API call.
#[derive(Debug, Clone, PartialEq, Eq)]
enum ApiError {
    /// No answer (connect, timeout, broken body); token-free text.
    Network(String),
    /// An error answer: status, LINE's `message`, and `x-line-accepted-request-id` on a 409.
    Api { status: u16, message: String, accepted_request_id: Option<String> },
}

impl fmt::Display for ApiError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            ApiError::Network(e) => write!(f, "network error: {e}"),
            ApiError::Api { status, message, .. } => write!(f, "{status} {message}"),
        }
    }
}

impl ApiError {
    fn status(&self) -> Option<u16> {
        match self {
            ApiError::Api { status, .. } => Some(*status),
            ApiError::Network(_) => None,
        }
    }

    fn to_send_error(&self) -> SendError {
        match self {
            ApiError::Api { status: 429, message, .. } if message.contains("monthly limit") => SendError::Permanent(
                format!("LINE: {message} (the account's monthly push allowance is used up; replies still work)"),
            ),
            ApiError::Api { status: 429, message, .. } => SendError::RetryAfter(RATE_LIMIT_WAIT, message.clone()),
            // 401: the token was reissued or revoked; the outbox keeps the message for when the
            // config is fixed.
            ApiError::Api { status, .. } if *status >= 500 || *status == 401 => SendError::Transient(self.to_string()),
            ApiError::Api { .. } => SendError::Permanent(format!("LINE refused the message: {self}")),
            ApiError::Network(_) => SendError::Transient(self.to_string()),
        }
    }
}

/// The HTTP client of one channel: the API root and the access token, which `Debug` hides.
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
    fn network(e: reqwest::Error) -> ApiError {
        let kind = if e.is_timeout() {
            "timed out"
        } else if e.is_connect() {
            "could not connect"
        } else {
            "request failed"
        };
        ApiError::Network(format!("{kind}: {}", e.without_url()))
    }

    async fn get(&self, path: &str) -> Result<Value, ApiError> {
        let req = self.http.get(format!("{}{path}", self.root)).bearer_auth(&self.token).timeout(CALL_TIMEOUT);
        self.finish(req).await
    }

    async fn post(&self, path: &str, body: &Value, retry_key: Option<&str>) -> Result<Value, ApiError> {
        let mut req =
            self.http.post(format!("{}{path}", self.root)).bearer_auth(&self.token).json(body).timeout(CALL_TIMEOUT);
        if let Some(key) = retry_key {
            req = req.header("X-Line-Retry-Key", key);
        }
        self.finish(req).await
    }

    async fn finish(&self, req: reqwest::RequestBuilder) -> Result<Value, ApiError> {
        let resp = req.send().await.map_err(Self::network)?;
        let status = resp.status().as_u16();
        let accepted_request_id =
            resp.headers().get("x-line-accepted-request-id").and_then(|v| v.to_str().ok()).map(str::to_owned);
        let body = resp.bytes().await.map_err(Self::network)?;
        let json: Option<Value> = serde_json::from_slice(&body).ok();
        if (200..300).contains(&status) {
            return Ok(json.unwrap_or(Value::Null));
        }
        let message = json
            .as_ref()
            .and_then(|v| v.get("message"))
            .and_then(Value::as_str)
            .map(str::to_owned)
            .unwrap_or_else(|| {
                format!("unexpected answer: {}", String::from_utf8_lossy(&body).chars().take(200).collect::<String>())
            });
        Err(ApiError::Api { status, message, accepted_request_id })
    }
}

/// One reply token from a webhook.
#[derive(Debug)]
struct ReplyToken {
    token: String,
    /// The chat it replies into (user, group or room id).
    chat: String,
    /// The event it came with (our inbound message id).
    event_id: String,
    received: Instant,
    used: bool,
}

/// One LINE Official Account (one channel).
#[derive(Debug)]
pub struct LineChannel {
    key: AccountKey,
    api: Api,
    /// The channel secret; `Debug` shows its length only.
    secret: Secret,
    webhook_path: String,
    status: StatusCell,
    /// Reply tokens of recent webhooks, oldest first; used once each, within
    /// [`REPLY_TOKEN_TTL`]. Only in memory: after a restart every reply is a push.
    reply_tokens: Mutex<Vec<ReplyToken>>,
    /// The bot's own user id (`destination` of the webhooks, `/v2/bot/info`), for mentions.
    bot_user_id: Mutex<Option<String>>,
}

struct Secret(Vec<u8>);

impl fmt::Debug for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "<redacted {} bytes>", self.0.len())
    }
}

fn config_err(key: &AccountKey, msg: impl fmt::Display) -> ChannelError {
    ChannelError::Config(format!("channels.line ({key}): {msg}"))
}

impl LineChannel {
    /// Build from a resolved account. Needs `channelAccessToken` and `channelSecret`; optional
    /// `webhookPath` (default [`DEFAULT_WEBHOOK_PATH`], `/line/webhook/<account>` for accounts
    /// other than `default`) and `apiRoot` (default [`DEFAULT_API_ROOT`]).
    pub fn new(cfg: &AccountConfig) -> Result<Self, ChannelError> {
        let key = cfg.key.clone();
        let token = cfg.token.clone().filter(|t| !t.trim().is_empty()).ok_or_else(|| {
            config_err(
                &key,
                "channelAccessToken is not set; issue one in the LINE Developers console (Messaging API tab) \
                 and put it in channels.line.channelAccessToken",
            )
        })?;
        if token.chars().any(|c| c.is_whitespace() || c.is_control()) {
            return Err(config_err(
                &key,
                "channelAccessToken contains spaces; copy it exactly as the console shows it",
            ));
        }
        let secret = cfg.settings.webhook_secret.clone().filter(|s| !s.trim().is_empty()).ok_or_else(|| {
            config_err(
                &key,
                "channelSecret is not set; copy it from the LINE Developers console (Basic settings tab) into \
                 channels.line.channelSecret: without it webhooks cannot be verified",
            )
        })?;
        let root = cfg.settings.api_root.as_deref().unwrap_or(DEFAULT_API_ROOT).trim_end_matches('/').to_owned();
        if !(root.starts_with("https://") || root.starts_with("http://")) {
            return Err(config_err(&key, format!("apiRoot {root:?} must be an http(s) URL")));
        }
        let webhook_path = match &cfg.settings.webhook_path {
            Some(p) if p.starts_with('/') => p.clone(),
            Some(p) => return Err(config_err(&key, format!("webhookPath {p:?} must start with /"))),
            None if key.account == "default" => DEFAULT_WEBHOOK_PATH.to_owned(),
            None => format!("{DEFAULT_WEBHOOK_PATH}/{}", key.account),
        };
        let http = reqwest::Client::builder()
            .connect_timeout(Duration::from_secs(10))
            .build()
            .map_err(|e| ChannelError::Fatal(format!("building the HTTP client: {e}")))?;
        Ok(Self {
            key,
            api: Api { http, root, token },
            secret: Secret(secret.into_bytes()),
            webhook_path,
            status: StatusCell::new(),
            reply_tokens: Mutex::new(Vec::new()),
            bot_user_id: Mutex::new(None),
        })
    }

    /// Is `signature` (the header's value) Base64(HMAC-SHA256(channel secret, `body`))?
    /// Constant time in the comparison of the MACs.
    pub fn signature_valid(&self, body: &[u8], signature: Option<&str>) -> bool {
        let Some(sig) = signature.and_then(|s| B64.decode(s.trim()).ok()) else { return false };
        let Ok(mut mac) = <HmacSha256 as Mac>::new_from_slice(&self.secret.0) else { return false };
        mac.update(body);
        mac.verify_slice(&sig).is_ok()
    }

    /// Take one webhook delivery: check the signature over the raw bytes first (nothing is
    /// parsed or logged before), then record each message event. `Ok` means answer 200 (also
    /// for the verify request and for events that carry no message).
    pub async fn handle_webhook(
        &self,
        signature: Option<&str>,
        body: &[u8],
        ingress: &dyn Ingress,
    ) -> Result<(), WebhookError> {
        if !self.signature_valid(body, signature) {
            return Err(WebhookError::Unauthorized);
        }
        let payload: Value = serde_json::from_slice(body).map_err(|e| WebhookError::BadRequest(e.to_string()))?;
        let events = payload
            .get("events")
            .and_then(Value::as_array)
            .ok_or_else(|| WebhookError::BadRequest("no events array".into()))?;
        self.status.mark_received();
        if let Some(dest) = payload.get("destination").and_then(Value::as_str).filter(|d| d.starts_with('U')) {
            self.learn_bot_id(dest);
        }
        let bot = self.bot_user_id.lock().unwrap_or_else(|p| p.into_inner()).clone();
        for event in events {
            // Keep the token before the message is recorded: recording starts the route, whose
            // reply may be ready to send at once.
            self.remember_reply_token(event);
            let Some(message) = normalise(&self.key, event, bot.as_deref()) else { continue };
            ingress.deliver(message).await.map_err(|e| WebhookError::Unavailable(e.to_string()))?;
            self.status.mark_inbound();
        }
        Ok(())
    }

    /// Asks `GET /v2/bot/info` once who the access token belongs to (`clawgate doctor`): the
    /// bot's user id and display name, or why not.
    pub async fn probe(&self) -> Result<crate::probe::Identity, crate::probe::ProbeError> {
        use crate::probe::{Identity, ProbeError};
        match self.api.get("/v2/bot/info").await {
            Ok(info) => Ok(Identity {
                id: info.get("userId").and_then(Value::as_str).unwrap_or_default().to_owned(),
                name: info.get("displayName").and_then(Value::as_str).map(str::to_owned),
            }),
            Err(ApiError::Api { status: status @ (401 | 403), .. }) => Err(ProbeError::Rejected(format!(
                "LINE refused the channel access token ({status}); check channels.line.channelAccessToken"
            ))),
            Err(ApiError::Network(e)) => {
                Err(ProbeError::Unreachable(format!("LINE Messaging API at {}: {e}", self.api.root)))
            }
            Err(e) => Err(ProbeError::Failed(format!("/v2/bot/info: {e}"))),
        }
    }

    fn learn_bot_id(&self, id: &str) {
        let mut me = self.bot_user_id.lock().unwrap_or_else(|p| p.into_inner());
        if me.as_deref() != Some(id) {
            *me = Some(id.to_owned());
            self.status.set_bot(id, None);
        }
    }

    fn remember_reply_token(&self, event: &Value) {
        let Some(token) = event.get("replyToken").and_then(Value::as_str).filter(|t| *t != DUMMY_REPLY_TOKEN) else {
            return;
        };
        if event.get("mode").and_then(Value::as_str) == Some("standby") {
            return;
        }
        let Some(chat) = chat_of(event) else { return };
        let event_id = event.get("webhookEventId").and_then(Value::as_str).unwrap_or_default();
        let now = Instant::now();
        let mut tokens = self.reply_tokens.lock().unwrap_or_else(|p| p.into_inner());
        // A redelivered event brings the same token: LINE takes it again only if it was not
        // used, so a used one stays used.
        if tokens.iter().any(|t| t.token == token) {
            return;
        }
        // Forget what can no longer be used (kept a while so a redelivery is known as used).
        tokens.retain(|t| now.duration_since(t.received) < REPLY_TOKEN_TTL * 20);
        if tokens.len() >= MAX_REPLY_TOKENS {
            tokens.remove(0);
        }
        tokens.push(ReplyToken {
            token: token.to_owned(),
            chat: chat.to_owned(),
            event_id: event_id.to_owned(),
            received: now,
            used: false,
        });
    }

    /// A usable reply token for `chat`: the one of the event `reply_to` names, else the newest
    /// unused one of the chat. Marked used as it is taken.
    fn take_reply_token(&self, chat: &str, reply_to: Option<&str>) -> Option<String> {
        let now = Instant::now();
        let mut tokens = self.reply_tokens.lock().unwrap_or_else(|p| p.into_inner());
        let usable = |t: &ReplyToken| !t.used && t.chat == chat && now.duration_since(t.received) < REPLY_TOKEN_TTL;
        let i = reply_to
            .and_then(|id| tokens.iter().position(|t| t.event_id == id && usable(t)))
            .or_else(|| tokens.iter().rposition(usable))?;
        tokens[i].used = true;
        Some(tokens[i].token.clone())
    }

    /// Give back a token LINE did not consume (its answer was an error that sent nothing).
    fn untake_reply_token(&self, token: &str) {
        let mut tokens = self.reply_tokens.lock().unwrap_or_else(|p| p.into_inner());
        if let Some(t) = tokens.iter_mut().find(|t| t.token == token) {
            t.used = false;
        }
    }

    /// The retry key of a push: a UUID derived from the outbox row (the same for every attempt
    /// of one message), or a fresh one.
    fn retry_key(&self, message: &OutboundMessage) -> String {
        let mut h = Sha256::new();
        h.update(self.key.to_string().as_bytes());
        match &message.retry_key {
            Some(k) => h.update(k.as_bytes()),
            None => {
                h.update(format!("{:?}", Instant::now()).as_bytes());
                h.update(serde_json::to_vec(message).unwrap_or_default());
            }
        }
        let d = h.finalize();
        let mut b = [0u8; 16];
        b.copy_from_slice(&d[..16]);
        // Shaped as a version-4 UUID.
        b[6] = (b[6] & 0x0f) | 0x40;
        b[8] = (b[8] & 0x3f) | 0x80;
        let hex: String = b.iter().map(|x| format!("{x:02x}")).collect();
        format!("{}-{}-{}-{}-{}", &hex[0..8], &hex[8..12], &hex[12..16], &hex[16..20], &hex[20..32])
    }

    async fn push(&self, message: &OutboundMessage, messages: &Value) -> Result<Value, ApiError> {
        let key = self.retry_key(message);
        let body = json!({"to": message.chat_id, "messages": messages, "notificationDisabled": message.silent});
        match self.api.post("/v2/bot/message/push", &body, Some(&key)).await {
            // The same retry key was accepted before: a previous attempt got through.
            Err(ApiError::Api { status: 409, accepted_request_id: Some(id), .. }) => {
                tracing::debug!(account = %self.key, "LINE push already accepted under this retry key");
                Ok(json!({"sentMessages": [{"id": format!("accepted:{id}")}]}))
            }
            other => other,
        }
    }
}

/// The chat an event belongs to: group, room, else the user.
fn chat_of(event: &Value) -> Option<&str> {
    let source = event.get("source")?;
    ["groupId", "roomId", "userId"].iter().find_map(|k| source.get(*k).and_then(Value::as_str))
}

/// The message objects for one outbound message: an image (with its caption after it as a
/// text), or a text.
fn message_objects(message: &OutboundMessage) -> Result<Value, SendError> {
    let mut out = Vec::new();
    if let Some(media) = &message.media {
        let url = match &media.source {
            MediaSource::Url { url } if url.starts_with("https://") => url,
            MediaSource::Url { .. } | MediaSource::Path { .. } => {
                return Err(SendError::Permanent(
                    "LINE fetches images from an https:// URL; set gateway.publicUrl to the gateway's public \
                     HTTPS address"
                        .into(),
                ));
            }
        };
        if url.chars().count() > MAX_URL_CHARS {
            return Err(SendError::Permanent(format!("the image URL is over LINE's {MAX_URL_CHARS} characters")));
        }
        if !matches!(media.content_type.as_str(), "image/png" | "image/jpeg" | "image/jpg") {
            return Err(SendError::Permanent(format!(
                "LINE shows only PNG and JPEG images; {} is {}",
                media.filename, media.content_type
            )));
        }
        if media.size.is_some_and(|s| s > MAX_IMAGE_BYTES) {
            return Err(SendError::Permanent(format!("{} is over LINE's 10 MB image limit", media.filename)));
        }
        // The same URL as the preview: LINE's clients show the original scaled down.
        out.push(json!({"type": "image", "originalContentUrl": url, "previewImageUrl": url}));
    }
    if !message.text.trim().is_empty() {
        if message.text.encode_utf16().count() > MAX_TEXT {
            return Err(SendError::Permanent(format!("text over LINE's {MAX_TEXT} characters")));
        }
        out.push(json!({"type": "text", "text": message.text}));
    }
    if out.is_empty() {
        return Err(SendError::Permanent("empty message: nothing to send".into()));
    }
    Ok(Value::Array(out))
}

/// Turn a webhook event into a message, or `None` when it carries nothing to act on (not a
/// text message, or a standby-mode event the bot must not answer).
fn normalise(key: &AccountKey, event: &Value, bot: Option<&str>) -> Option<InboundMessage> {
    if event.get("type").and_then(Value::as_str) != Some("message")
        || event.get("mode").and_then(Value::as_str) == Some("standby")
    {
        return None;
    }
    let m = event.get("message")?;
    if m.get("type").and_then(Value::as_str) != Some("text") {
        return None;
    }
    let text = m.get("text").and_then(Value::as_str).unwrap_or("").to_owned();
    if text.trim().is_empty() {
        return None;
    }
    let event_id = event.get("webhookEventId").and_then(Value::as_str).filter(|s| !s.is_empty())?;
    let source = event.get("source")?;
    let (chat_kind, chat_id) = match source.get("type").and_then(Value::as_str)? {
        "user" => (ChatKind::Direct, source.get("userId")?.as_str()?),
        "group" => (ChatKind::Group, source.get("groupId")?.as_str()?),
        "room" => (ChatKind::Group, source.get("roomId")?.as_str()?),
        _ => return None,
    };
    // In groups the sender is present only for LINE app users; without it the message is the
    // group's (it can still be answered in the group, and allowlists by user never match it).
    let sender_id = source.get("userId").and_then(Value::as_str).unwrap_or(chat_id).to_owned();
    let mut mentions = Vec::new();
    let mut mentions_bot = false;
    let mentionees = m.get("mention").and_then(|x| x.get("mentionees")).and_then(Value::as_array);
    for who in mentionees.into_iter().flatten() {
        let uid = who.get("userId").and_then(Value::as_str);
        let is_self = who.get("isSelf").and_then(Value::as_bool).unwrap_or(false);
        if is_self || (uid.is_some() && uid == bot) {
            mentions_bot = true;
        }
        if let Some(uid) = uid {
            mentions.push(uid.to_owned());
        }
    }
    Some(InboundMessage {
        channel: key.channel.clone(),
        account: key.account.clone(),
        message_id: event_id.to_owned(),
        chat_id: chat_id.to_owned(),
        chat_kind,
        chat_title: None,
        thread_id: None,
        space_id: None,
        sender_id,
        sender_username: None,
        sender_name: None,
        sender_is_bot: false,
        text,
        media: Vec::new(),
        reply_to: m.get("quotedMessageId").and_then(Value::as_str).map(str::to_owned),
        reply_to_bot: false,
        mentions,
        mentions_bot,
        sent_at_ms: event.get("timestamp").and_then(Value::as_i64).unwrap_or(0),
        session_key: None,
        context: None,
    })
}

fn first_message_id(sent: &Value) -> Option<String> {
    let id = sent.get("sentMessages")?.get(0)?.get("id")?;
    id.as_str().map(str::to_owned).or_else(|| id.as_u64().map(|n| n.to_string()))
}

#[async_trait]
impl Channel for LineChannel {
    fn key(&self) -> &AccountKey {
        &self.key
    }

    fn capabilities(&self) -> Capabilities {
        Capabilities {
            max_text: MAX_TEXT,
            measure: TextMeasure::Utf16,
            // A caption goes as a text message after the image.
            max_caption: MAX_TEXT,
            max_photo_bytes: MAX_IMAGE_BYTES,
            max_upload_bytes: MAX_IMAGE_BYTES,
            threads: false,
            typing: true,
            typing_interval: Duration::from_secs(LOADING_SECONDS - 5),
        }
    }

    fn status(&self) -> &StatusCell {
        &self.status
    }

    /// Webhooks arrive through the gateway's HTTP server; this checks the access token
    /// (`/v2/bot/info`, which also names the bot for mention checks), reports the channel ready
    /// and waits.
    async fn run(&self, _ingress: Arc<dyn Ingress>, cancel: CancellationToken) -> Result<(), ChannelError> {
        let mut attempt = 0u32;
        loop {
            let info = tokio::select! {
                () = cancel.cancelled() => return Ok(()),
                r = self.api.get("/v2/bot/info") => r,
            };
            match info {
                Ok(info) => {
                    if let Some(id) = info.get("userId").and_then(Value::as_str) {
                        self.learn_bot_id(id);
                    }
                    break;
                }
                Err(ApiError::Api { status: 401, .. }) => {
                    let msg = "LINE refused the channel access token (401): check channels.line.channelAccessToken";
                    self.status.mark_disconnected(Some(msg.into()));
                    return Err(ChannelError::Unauthorized(msg.into()));
                }
                Err(e) => {
                    self.status.mark_error(format!("checking the access token: {e}"));
                    tracing::warn!(account = %self.key, error = %e, "LINE bot info failed; retrying");
                }
            }
            let wait = START_BACKOFF.delay(attempt);
            attempt = attempt.saturating_add(1);
            tokio::select! {
                () = cancel.cancelled() => return Ok(()),
                () = tokio::time::sleep(wait) => {}
            }
        }
        tracing::info!(account = %self.key, path = %self.webhook_path, "LINE channel ready; webhooks are taken on this path");
        self.status.mark_connected();
        cancel.cancelled().await;
        self.status.mark_disconnected(None);
        Ok(())
    }

    async fn send(&self, message: &OutboundMessage) -> Result<Delivered, SendError> {
        let messages = message_objects(message)?;
        if let Some(token) = self.take_reply_token(&message.chat_id, message.reply_to.as_deref()) {
            let body = json!({"replyToken": token, "messages": messages, "notificationDisabled": message.silent});
            match self.api.post("/v2/bot/message/reply", &body, None).await {
                Ok(sent) => {
                    self.status.mark_outbound();
                    return Ok(Delivered { message_id: first_message_id(&sent).unwrap_or_else(|| "reply".into()) });
                }
                // Expired, used, or unknown: push instead.
                Err(ApiError::Api { status: 400, ref message, .. }) if message.contains("reply token") => {
                    tracing::debug!(account = %self.key, "LINE refused the reply token; pushing instead");
                }
                // An error answer sends nothing, so the token is still good (429, 5xx with a body).
                Err(e @ ApiError::Api { .. }) if e.status().is_some_and(|s| s == 429 || s >= 500) => {
                    self.untake_reply_token(&token);
                    return Err(e.to_send_error());
                }
                // No answer: the token may be spent; the next attempt pushes.
                Err(e) => return Err(e.to_send_error()),
            }
        }
        let sent = self.push(message, &messages).await.map_err(|e| e.to_send_error())?;
        self.status.mark_outbound();
        Ok(Delivered { message_id: first_message_id(&sent).unwrap_or_else(|| "push".into()) })
    }

    async fn typing(&self, chat_id: &str, _thread_id: Option<&str>) -> Result<(), SendError> {
        // The loading animation exists in one-on-one chats only.
        if !chat_id.starts_with('U') {
            return Ok(());
        }
        let body = json!({"chatId": chat_id, "loadingSeconds": LOADING_SECONDS});
        self.api.post("/v2/bot/chat/loading/start", &body, None).await.map(|_| ()).map_err(|e| {
            tracing::debug!(account = %self.key, error = %e, "LINE loading animation failed");
            e.to_send_error()
        })
    }

    fn webhook_path(&self) -> Option<String> {
        Some(self.webhook_path.clone())
    }

    async fn handle_webhook(&self, request: WebhookRequest<'_>, ingress: &dyn Ingress) -> Result<(), WebhookError> {
        LineChannel::handle_webhook(self, request.header(SIGNATURE_HEADER), request.body, ingress).await
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::accounts_from_value;

    fn channel() -> LineChannel {
        let root = json!({"channels": {"line": {"channelAccessToken": "tok", "channelSecret": "s3cret"}}});
        LineChannel::new(&accounts_from_value(&root, std::path::Path::new("/")).unwrap()[0]).unwrap()
    }

    fn key() -> AccountKey {
        AccountKey::new("line", "default")
    }

    #[test]
    fn signatures_are_checked_over_the_raw_bytes() {
        let ch = channel();
        let body = br#"{"destination":"U1","events":[]}"#;
        let mut mac = <HmacSha256 as Mac>::new_from_slice(b"s3cret").unwrap();
        mac.update(body);
        let good = B64.encode(mac.finalize().into_bytes());
        assert!(ch.signature_valid(body, Some(&good)));
        assert!(!ch.signature_valid(br#"{"destination":"U1","events": []}"#, Some(&good)), "re-serialised body");
        assert!(!ch.signature_valid(body, None));
        assert!(!ch.signature_valid(body, Some("not base64!")));
        assert!(!ch.signature_valid(body, Some(&B64.encode([0u8; 32]))));
    }

    #[test]
    fn groups_need_the_bot_mentioned_by_is_self_or_by_id() {
        let ev = |mention: Value| {
            json!({"type": "message", "mode": "active", "timestamp": 5, "webhookEventId": "01E",
                "source": {"type": "group", "groupId": "C1", "userId": "U2"}, "replyToken": "r",
                "message": {"id": "1", "type": "text", "text": "@bot hi", "mention": {"mentionees": [mention]}}})
        };
        let m = normalise(&key(), &ev(json!({"index": 0, "length": 4, "type": "user", "isSelf": true})), None).unwrap();
        assert!(m.mentions_bot && m.chat_kind == ChatKind::Group && m.chat_id == "C1" && m.sender_id == "U2");
        assert_eq!(m.message_id, "01E");
        let by_id = ev(json!({"index": 0, "length": 4, "type": "user", "userId": "Ubot"}));
        assert!(normalise(&key(), &by_id, Some("Ubot")).unwrap().mentions_bot);
        assert!(!normalise(&key(), &by_id, Some("Uother")).unwrap().mentions_bot);
        let mut standby = ev(json!({}));
        standby["mode"] = json!("standby");
        assert!(normalise(&key(), &standby, None).is_none(), "standby events are never answered");
    }

    #[test]
    fn reply_tokens_are_taken_once_and_prefer_the_answered_event() {
        let ch = channel();
        for (id, token) in [("e1", "t1"), ("e2", "t2")] {
            ch.remember_reply_token(
                &json!({"replyToken": token, "webhookEventId": id, "source": {"type": "user", "userId": "U1"}}),
            );
        }
        ch.remember_reply_token(&json!({"replyToken": DUMMY_REPLY_TOKEN, "source": {"type": "user", "userId": "U1"}}));
        assert_eq!(ch.take_reply_token("U1", Some("e1")).as_deref(), Some("t1"));
        assert_eq!(ch.take_reply_token("U1", Some("e1")).as_deref(), Some("t2"), "else the newest unused");
        assert_eq!(ch.take_reply_token("U1", None), None);
        assert_eq!(ch.take_reply_token("U9", None), None, "never another chat's token");
        ch.untake_reply_token("t2");
        assert_eq!(ch.take_reply_token("U1", None).as_deref(), Some("t2"));
        // A redelivery of a used token does not make it usable again.
        ch.remember_reply_token(
            &json!({"replyToken": "t1", "webhookEventId": "e1", "source": {"type": "user", "userId": "U1"}}),
        );
        assert_eq!(ch.take_reply_token("U1", None), None);
    }

    #[test]
    fn retry_keys_are_stable_uuids_per_outbox_row() {
        let ch = channel();
        let mut m = OutboundMessage::text("U1", None, "hi");
        m.retry_key = Some("outbox:7:reply:3:0".into());
        let a = ch.retry_key(&m);
        assert_eq!(a, ch.retry_key(&m));
        assert_eq!(a.len(), 36);
        assert_eq!(&a[14..15], "4");
        m.retry_key = Some("outbox:8:reply:3:1".into());
        assert_ne!(a, ch.retry_key(&m));
    }

    #[test]
    fn images_need_an_https_url_and_text_fits_5000_units() {
        use crate::model::OutboundMedia;
        let mut m = OutboundMessage::text("U1", None, "caption");
        m.media = Some(OutboundMedia {
            filename: "a.png".into(),
            content_type: "image/png".into(),
            source: MediaSource::Path { path: "/tmp/a.png".into() },
            size: Some(10),
            force_document: false,
        });
        assert!(matches!(message_objects(&m), Err(SendError::Permanent(e)) if e.contains("gateway.publicUrl")));
        if let Some(media) = m.media.as_mut() {
            media.source = MediaSource::Url { url: "https://bot.example/media/t".into() };
        }
        let objs = message_objects(&m).unwrap();
        assert_eq!(objs[0]["type"], "image");
        assert_eq!(objs[0]["previewImageUrl"], "https://bot.example/media/t");
        assert_eq!(objs[1]["text"], "caption");
        let long = OutboundMessage::text("U1", None, "😀".repeat(2501));
        assert!(message_objects(&long).is_err(), "5002 UTF-16 units");
    }

    #[test]
    fn config_errors_name_the_key() {
        let root = json!({"channels": {"line": {"channelAccessToken": "tok"}}});
        let e = LineChannel::new(&accounts_from_value(&root, std::path::Path::new("/")).unwrap()[0]).unwrap_err();
        assert!(e.to_string().contains("channelSecret"), "{e}");
        let root = json!({"channels": {"line": {"channelAccessToken": "tok_canary", "channelSecret": "sec_canary",
            "accounts": {"shop": {"channelAccessToken": "tok2_canary"}}}}});
        let accts = accounts_from_value(&root, std::path::Path::new("/")).unwrap();
        let shop = accts.iter().find(|a| a.key.account == "shop").unwrap();
        assert_eq!(shop.settings.webhook_secret.as_deref(), Some("sec_canary"), "inherited");
        let ch = LineChannel::new(shop).unwrap();
        assert_eq!(ch.webhook_path().as_deref(), Some("/line/webhook/shop"));
        let debug = format!("{accts:?} {ch:?}");
        for canary in ["tok_canary", "sec_canary", "tok2_canary"] {
            assert!(!debug.contains(canary), "{canary} in {debug}");
        }
    }
}
