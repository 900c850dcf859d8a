//! The webhook channel: a backend (a web app giving its users chat with the agent) talks to the
//! gateway over two signed HTTP directions, no WebSocket and no platform in between.
//!
//! Receiving: the backend POSTs one JSON message to the account's path on the gateway's own port
//! (`/webhook/<account>` unless `path` says otherwise). [`WebhookChannel::handle`] checks
//! `X-Clawgate-Signature: sha256=<hex HMAC-SHA256(secret, "<timestamp>.<raw body>")>` with
//! `X-Clawgate-Timestamp` (Unix seconds, at most [`MAX_SKEW`] away from the gateway's clock, so a
//! captured request cannot be replayed later) over the raw bytes, in constant time, **before** it
//! reads anything else; then the content type, then the body. The message is recorded through
//! the [`Ingress`] under its idempotency key (`id`, or the `Idempotency-Key` header), which the
//! durable inbox keeps unique: a repeat is answered 200 with the same body and never processed
//! again. The first delivery is answered 202 once recorded.
//!
//! Sending: replies come from the durable outbox like every channel's. Each is POSTed to
//! `outboundUrl`, signed the same way, with a stable `id` (also sent as `Idempotency-Key`) so a
//! retry after a lost answer can be recognised by the backend. 2xx is sent; 408, 429, 5xx, a
//! timeout or a refused connection are retried with the shared backoff (`Retry-After` honoured);
//! any other 4xx fails at once. After `maxAttempts` the outbox marks the row failed (the dead
//! letter) with its last error, which `channels.status` shows for the account.
//!
//! The secret is never in `Debug`, logs or errors. The wire format is in `docs/OPERATIONS.md`
//! ("Webhook channel").

use std::fmt;
use std::sync::{Arc, Mutex};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use async_trait::async_trait;
use hmac::{Hmac, Mac};
use serde::Deserialize;
use serde_json::{Value, json};
use sha2::{Digest, Sha256};
use tokio_util::sync::CancellationToken;

use crate::channel::{
    Accepted, Capabilities, Channel, ChannelError, Ingress, RetryPolicy, SendError, StatusCell, TextMeasure,
    WebhookError, WebhookReply, WebhookRequest,
};
use crate::config::AccountConfig;
use crate::model::{AccountKey, ChatKind, Delivered, InboundMessage, MediaSource, OutboundMessage};
use clawgate_backoff::Backoff;

/// The header carrying `sha256=<hex>` of both directions.
pub const SIGNATURE_HEADER: &str = "x-clawgate-signature";
/// The header carrying the Unix time (seconds) the signature covers.
pub const TIMESTAMP_HEADER: &str = "x-clawgate-timestamp";
/// The header that may carry the idempotency key instead of the body's `id`.
pub const IDEMPOTENCY_HEADER: &str = "idempotency-key";
/// The header naming the account on outbound POSTs (one backend may serve several).
pub const ACCOUNT_HEADER: &str = "x-clawgate-account";
/// A request whose timestamp is further than this from the gateway's clock is refused.
pub const MAX_SKEW: Duration = Duration::from_secs(300);
/// Where accounts take inbound POSTs unless `path` is set: `/webhook/<account>`.
pub const DEFAULT_PATH_PREFIX: &str = "/webhook";
/// Delivery attempts of one reply unless `maxAttempts` is set.
pub const DEFAULT_MAX_ATTEMPTS: u32 = 8;
/// The first retry's wait unless `retryBaseMs` is set.
pub const DEFAULT_RETRY_BASE: Duration = Duration::from_secs(1);
/// The longest wait between attempts unless `retryMaxMs` is set.
pub const DEFAULT_RETRY_MAX: Duration = Duration::from_secs(300);
/// The longest text of one outbound POST unless `maxTextChars` is set (longer replies are split).
pub const DEFAULT_MAX_TEXT: usize = 4000;
/// The timeout of one outbound POST unless `timeoutMs` is set.
pub const DEFAULT_TIMEOUT: Duration = Duration::from_secs(10);
/// The largest inbound body (413 above it).
pub const MAX_BODY: usize = 256 * 1024;
/// The largest file handed to the backend (as a signed `/media` link).
pub const MAX_LINKED_FILE_BYTES: u64 = 100 * 1024 * 1024;
/// The longest idempotency key, sender id or chat id.
pub const MAX_ID_CHARS: usize = 256;
/// The longest session key (upstream's limit).
pub const MAX_SESSION_KEY_CHARS: usize = 512;
/// Session keys the gateway keeps for its own sessions; a backend may not write into them.
const RESERVED_SESSION_PREFIXES: [&str; 3] = ["subagent:", "cron:", "acp:"];
/// How much of a backend's error body is kept in the row's last error.
const ERROR_BODY_CHARS: usize = 200;
/// The longest `Retry-After` honoured; a longer one waits this long.
const MAX_RETRY_AFTER: Duration = Duration::from_secs(3600);

type HmacSha256 = Hmac<Sha256>;

/// The `sha256=<hex>` signature of `body` sent at `timestamp` (Unix seconds): HMAC-SHA256 under
/// `secret` of the ASCII timestamp, a `.`, and the raw body bytes.
pub fn sign(secret: &[u8], timestamp: i64, body: &[u8]) -> String {
    let digest = mac(secret, timestamp, body).finalize().into_bytes();
    format!("sha256={}", hex::encode(digest))
}

// HMAC takes keys of any length, so `new_from_slice` cannot fail; this keeps the signature
// functions free of `unwrap` all the same.
fn unreachable_mac() -> HmacSha256 {
    <HmacSha256 as hmac::digest::KeyInit>::new(&Default::default())
}

fn mac(secret: &[u8], timestamp: i64, body: &[u8]) -> HmacSha256 {
    let mut mac = HmacSha256::new_from_slice(secret).unwrap_or_else(|_| unreachable_mac());
    mac.update(timestamp.to_string().as_bytes());
    mac.update(b".");
    mac.update(body);
    mac
}

/// Why a request's signature was refused (all are a 401; the kind is for tests and the one
/// bounded log line).
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum SignatureError {
    /// `X-Clawgate-Signature` or `X-Clawgate-Timestamp` is missing.
    #[error("signature or timestamp header missing")]
    Missing,
    /// The timestamp is not a whole number of seconds, or the signature not `sha256=<64 hex>`.
    #[error("signature or timestamp malformed")]
    Malformed,
    /// The timestamp is more than [`MAX_SKEW`] away from now.
    #[error("timestamp too far from the gateway's clock")]
    Stale,
    /// The HMAC does not match.
    #[error("signature does not match")]
    Mismatch,
}

/// Check a request's signature headers against its raw body at `now` (Unix seconds). The MACs
/// are compared in constant time; nothing of the body is read but its bytes.
pub fn verify(
    secret: &[u8],
    timestamp: Option<&str>,
    signature: Option<&str>,
    body: &[u8],
    now: i64,
) -> Result<(), SignatureError> {
    let (Some(ts), Some(sig)) = (timestamp, signature) else { return Err(SignatureError::Missing) };
    let ts: i64 = ts.trim().parse().map_err(|_| SignatureError::Malformed)?;
    let sig = sig.trim().strip_prefix("sha256=").ok_or(SignatureError::Malformed)?;
    let sig = hex::decode(sig).map_err(|_| SignatureError::Malformed)?;
    if sig.len() != 32 {
        return Err(SignatureError::Malformed);
    }
    if now.abs_diff(ts) > MAX_SKEW.as_secs() {
        return Err(SignatureError::Stale);
    }
    mac(secret, ts, body).verify_slice(&sig).map_err(|_| SignatureError::Mismatch)
}

fn unix_now() -> i64 {
    SystemTime::now().duration_since(UNIX_EPOCH).map(|d| d.as_secs() as i64).unwrap_or(0)
}

/// One inbound message as the backend POSTs it.
#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase")]
struct Wire {
    /// The idempotency key (or the `Idempotency-Key` header).
    #[serde(default)]
    id: Option<String>,
    from: WireFrom,
    #[serde(default)]
    chat: Option<WireChat>,
    text: String,
    #[serde(default)]
    session_key: Option<String>,
    #[serde(default)]
    context: Option<Value>,
}

#[derive(Debug, Deserialize)]
struct WireFrom {
    id: String,
    #[serde(default)]
    name: Option<String>,
}

#[derive(Debug, Deserialize)]
struct WireChat {
    id: String,
    #[serde(rename = "type")]
    kind: WireChatKind,
}

#[derive(Debug, Clone, Copy, Deserialize)]
#[serde(rename_all = "lowercase")]
enum WireChatKind {
    Dm,
    Group,
}

/// The secret, which `Debug` shows by length only.
struct Secret(Vec<u8>);

impl fmt::Debug for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "<redacted {} bytes>", self.0.len())
    }
}

/// One backend (one `channels.webhook` account).
#[derive(Debug)]
pub struct WebhookChannel {
    key: AccountKey,
    secret: Secret,
    /// Where replies are POSTed.
    outbound_url: String,
    path: String,
    http: reqwest::Client,
    timeout: Duration,
    retry: RetryPolicy,
    max_text: usize,
    status: StatusCell,
    /// Senders of recent inbound messages by message id, so a reply in a group can name whom it
    /// answers (`to`) when the router did not. Bounded; only a hint.
    senders: Mutex<std::collections::VecDeque<(String, String)>>,
}

/// How many recent (message id, sender) pairs are remembered.
const MAX_REMEMBERED_SENDERS: usize = 4096;

fn config_err(key: &AccountKey, msg: impl fmt::Display) -> ChannelError {
    ChannelError::Config(format!("channels.webhook ({key}): {msg}"))
}

impl WebhookChannel {
    /// Build from a resolved account. Needs `secret` (the `token` of the resolved account) and
    /// `outboundUrl`; the rest has defaults (see the module docs).
    pub fn new(cfg: &AccountConfig) -> Result<Self, ChannelError> {
        let key = cfg.key.clone();
        let secret = cfg.token.clone().filter(|t| !t.is_empty()).ok_or_else(|| {
            config_err(&key, "secret is not set; put a long random string in channels.webhook.secret (the backend signs with it too)")
        })?;
        if secret.len() < 16 {
            return Err(config_err(
                &key,
                "secret is shorter than 16 bytes; use a long random string (e.g. `openssl rand -hex 32`)",
            ));
        }
        let outbound_url = cfg.settings.outbound_url.clone().ok_or_else(|| {
            config_err(&key, "outboundUrl is not set; it is where replies are POSTed (the backend's URL)")
        })?;
        let parsed = url::Url::parse(&outbound_url)
            .map_err(|e| config_err(&key, format!("outboundUrl {outbound_url:?} is not a URL: {e}")))?;
        if !matches!(parsed.scheme(), "http" | "https") || parsed.host_str().is_none() {
            return Err(config_err(&key, format!("outboundUrl {outbound_url:?} must be an http(s) URL")));
        }
        let path = match &cfg.settings.webhook_path {
            Some(p) if p.starts_with('/') => p.clone(),
            Some(p) => return Err(config_err(&key, format!("path {p:?} must start with /"))),
            None => format!("{DEFAULT_PATH_PREFIX}/{}", key.account),
        };
        let s = &cfg.settings;
        let base = s.retry_base_ms.map_or(DEFAULT_RETRY_BASE, Duration::from_millis);
        let cap = s.retry_max_ms.map_or(DEFAULT_RETRY_MAX, Duration::from_millis).max(base);
        let retry = RetryPolicy {
            max_attempts: s.max_attempts.unwrap_or(DEFAULT_MAX_ATTEMPTS).max(1),
            backoff: Backoff::new(base, cap),
        };
        let http = reqwest::Client::builder()
            .connect_timeout(Duration::from_secs(10))
            .redirect(reqwest::redirect::Policy::none())
            .build()
            .map_err(|e| ChannelError::Fatal(format!("building the HTTP client: {e}")))?;
        Ok(Self {
            key,
            secret: Secret(secret.into_bytes()),
            outbound_url,
            path,
            http,
            timeout: s.timeout_ms.map_or(DEFAULT_TIMEOUT, Duration::from_millis),
            retry,
            max_text: s.max_text_chars.map_or(DEFAULT_MAX_TEXT, |n| usize::try_from(n).unwrap_or(usize::MAX)),
            status: StatusCell::new(),
            senders: Mutex::new(std::collections::VecDeque::new()),
        })
    }

    /// `clawgate doctor`'s check: the config holds (it built), and the backend's `outboundUrl`
    /// accepts a connection (nothing is sent: a probe must not post a message). The identity is
    /// the inbound path, named by the backend's address.
    pub async fn probe(&self) -> Result<crate::probe::Identity, crate::probe::ProbeError> {
        use crate::probe::{Identity, ProbeError};
        let url = url::Url::parse(&self.outbound_url).map_err(|e| ProbeError::Config(e.to_string()))?;
        let host = url.host_str().unwrap_or_default().trim_matches(['[', ']']).to_owned();
        let port = url.port_or_known_default().unwrap_or(80);
        let connect = tokio::net::TcpStream::connect((host.as_str(), port));
        match tokio::time::timeout(self.timeout, connect).await {
            Ok(Ok(_)) => {
                Ok(Identity { id: self.path.clone(), name: Some(format!("backend reachable at {host}:{port}")) })
            }
            Ok(Err(e)) => Err(ProbeError::Unreachable(format!(
                "the backend at {host}:{port} (channels.webhook outboundUrl): {e}"
            ))),
            Err(_) => Err(ProbeError::Unreachable(format!(
                "the backend at {host}:{port} (channels.webhook outboundUrl) did not accept a connection in time"
            ))),
        }
    }

    /// Take one inbound POST: signature first (nothing else is read before it holds), then the
    /// content type, then the body; recorded through `ingress` before the 202.
    pub async fn handle(
        &self,
        request: WebhookRequest<'_>,
        ingress: &dyn Ingress,
    ) -> Result<WebhookReply, WebhookError> {
        verify(
            &self.secret.0,
            request.header(TIMESTAMP_HEADER),
            request.header(SIGNATURE_HEADER),
            request.body,
            unix_now(),
        )
        .map_err(|e| {
            tracing::debug!(account = %self.key, reason = %e, "webhook signature refused");
            WebhookError::Unauthorized
        })?;
        self.status.mark_received();
        let json_type = request.header("content-type").is_some_and(|ct| {
            let essence = ct.split(';').next().unwrap_or("").trim();
            essence.eq_ignore_ascii_case("application/json")
        });
        if !json_type {
            return Ok(refusal(415, "Content-Type must be application/json"));
        }
        let message = match self.parse(&request) {
            Ok(m) => m,
            Err(why) => return Ok(refusal(400, &why)),
        };
        let id = message.message_id.clone();
        let sender = message.sender_id.clone();
        let accepted = ingress.deliver(message).await.map_err(|e| WebhookError::Unavailable(e.to_string()))?;
        let body = json!({"accepted": true, "id": id}).to_string();
        Ok(match accepted {
            Accepted::New => {
                self.status.mark_inbound();
                self.remember_sender(id, sender);
                WebhookReply { status: 202, content_type: "application/json", body }
            }
            Accepted::Duplicate => WebhookReply { status: 200, content_type: "application/json", body },
        })
    }

    /// The normalised message of a signed body, or why it is malformed (a 400's text).
    fn parse(&self, request: &WebhookRequest<'_>) -> Result<InboundMessage, String> {
        let wire: Wire = serde_json::from_slice(request.body).map_err(|e| format!("malformed message: {e}"))?;
        let header_id = request.header(IDEMPOTENCY_HEADER).map(str::trim).filter(|s| !s.is_empty());
        let id = match (wire.id.as_deref().map(str::trim).filter(|s| !s.is_empty()), header_id) {
            (Some(a), Some(b)) if a != b => return Err("id and the Idempotency-Key header differ".into()),
            (Some(a), _) | (None, Some(a)) => a.to_owned(),
            (None, None) => return Err("id is missing: give an idempotency key as id or Idempotency-Key".into()),
        };
        check_id("id", &id)?;
        check_id("from.id", &wire.from.id)?;
        if wire.text.trim().is_empty() {
            return Err("text is empty".into());
        }
        let (chat_id, chat_kind) = match &wire.chat {
            Some(c) => {
                check_id("chat.id", &c.id)?;
                (c.id.clone(), if matches!(c.kind, WireChatKind::Group) { ChatKind::Group } else { ChatKind::Direct })
            }
            None => (wire.from.id.clone(), ChatKind::Direct),
        };
        if let Some(key) = &wire.session_key {
            check_session_key(key)?;
        }
        if wire.context.as_ref().is_some_and(|c| !c.is_object()) {
            return Err("context must be an object".into());
        }
        let sent_at = request.header(TIMESTAMP_HEADER).and_then(|t| t.trim().parse::<i64>().ok()).unwrap_or(0);
        Ok(InboundMessage {
            channel: self.key.channel.clone(),
            account: self.key.account.clone(),
            message_id: id,
            chat_id,
            chat_kind,
            chat_title: None,
            thread_id: None,
            space_id: None,
            sender_id: wire.from.id,
            sender_username: None,
            sender_name: wire.from.name.filter(|n| !n.trim().is_empty()),
            sender_is_bot: false,
            text: wire.text,
            media: Vec::new(),
            reply_to: None,
            reply_to_bot: false,
            mentions: Vec::new(),
            // The backend addresses the agent with every message it posts, in groups too.
            mentions_bot: true,
            sent_at_ms: sent_at.saturating_mul(1000),
            session_key: wire.session_key.map(|k| k.trim().to_owned()),
            context: wire.context,
        })
    }

    fn remember_sender(&self, id: String, sender: String) {
        let mut s = self.senders.lock().unwrap_or_else(|p| p.into_inner());
        if s.len() >= MAX_REMEMBERED_SENDERS {
            s.pop_front();
        }
        s.push_back((id, sender));
    }

    fn sender_of(&self, id: &str) -> Option<String> {
        let s = self.senders.lock().unwrap_or_else(|p| p.into_inner());
        s.iter().rev().find(|(m, _)| m == id).map(|(_, who)| who.clone())
    }

    /// The stable id of one outbound message: the same for every attempt of one outbox row.
    fn outbound_id(&self, message: &OutboundMessage) -> String {
        let mut h = Sha256::new();
        h.update(self.key.to_string().as_bytes());
        h.update(b"\n");
        match &message.retry_key {
            Some(k) => h.update(k.as_bytes()),
            None => {
                h.update(format!("{:?}", std::time::Instant::now()).as_bytes());
                h.update(serde_json::to_vec(message).unwrap_or_default());
            }
        }
        format!("out_{}", hex::encode(&h.finalize()[..16]))
    }

    /// The JSON body of one outbound message.
    fn outbound_body(&self, id: &str, message: &OutboundMessage) -> Result<Value, SendError> {
        let kind = match message.chat_kind {
            Some(ChatKind::Group | ChatKind::Channel) => "group",
            _ => "dm",
        };
        let to = message
            .to
            .clone()
            .or_else(|| message.reply_to.as_deref().and_then(|r| self.sender_of(r)))
            .or_else(|| (kind == "dm").then(|| message.chat_id.clone()));
        let mut body = json!({
            "id": id,
            "inReplyTo": message.reply_to,
            "chat": {"id": message.chat_id, "type": kind},
            "to": to,
            "text": message.text,
        });
        if let Some(media) = &message.media {
            let url = match &media.source {
                MediaSource::Url { url } => url.clone(),
                MediaSource::Path { .. } => {
                    return Err(SendError::Permanent(
                        "files reach the backend as signed /media links; set gateway.publicUrl to the address the \
                         backend reaches the gateway at"
                            .into(),
                    ));
                }
            };
            body["media"] = json!([{"url": url, "mimeType": media.content_type, "filename": media.filename}]);
        }
        Ok(body)
    }
}

fn refusal(status: u16, why: &str) -> WebhookReply {
    WebhookReply {
        status,
        content_type: "application/json",
        body: json!({"accepted": false, "error": why}).to_string(),
    }
}

fn check_id(what: &str, id: &str) -> Result<(), String> {
    if id.trim().is_empty() {
        return Err(format!("{what} is empty"));
    }
    if id.chars().count() > MAX_ID_CHARS {
        return Err(format!("{what} is longer than {MAX_ID_CHARS} characters"));
    }
    if id.chars().any(char::is_control) {
        return Err(format!("{what} contains control characters"));
    }
    Ok(())
}

/// A session key the backend may choose: 1–512 characters, no control characters, not one of
/// the gateway's own sessions (`subagent:`, `cron:`, `acp:`, also under `agent:<id>:`).
fn check_session_key(key: &str) -> Result<(), String> {
    let key = key.trim();
    if key.is_empty() || key.chars().count() > MAX_SESSION_KEY_CHARS {
        return Err(format!("sessionKey must be 1 to {MAX_SESSION_KEY_CHARS} characters"));
    }
    if key.chars().any(char::is_control) {
        return Err("sessionKey contains control characters".into());
    }
    let rest = match key.strip_prefix("agent:") {
        Some(r) => match r.split_once(':') {
            Some((agent, rest)) if !agent.is_empty() && !rest.is_empty() => rest,
            _ if !r.is_empty() && !r.contains(':') => "main",
            _ => return Err(format!("sessionKey {key:?} is malformed: expected agent:<agentId>:<key> or a bare key")),
        },
        None => key,
    };
    if RESERVED_SESSION_PREFIXES.iter().any(|p| rest.starts_with(p)) {
        return Err(format!("sessionKey {key:?} names one of the gateway's own sessions"));
    }
    Ok(())
}

/// The wait a `Retry-After` header asks for (seconds; an HTTP date is not honoured).
fn retry_after(headers: &reqwest::header::HeaderMap) -> Option<Duration> {
    let secs: u64 = headers.get(reqwest::header::RETRY_AFTER)?.to_str().ok()?.trim().parse().ok()?;
    Some(Duration::from_secs(secs).min(MAX_RETRY_AFTER))
}

#[async_trait]
impl Channel for WebhookChannel {
    fn key(&self) -> &AccountKey {
        &self.key
    }

    fn capabilities(&self) -> Capabilities {
        Capabilities {
            max_text: self.max_text,
            measure: TextMeasure::Chars,
            max_caption: self.max_text,
            max_photo_bytes: MAX_LINKED_FILE_BYTES,
            max_upload_bytes: MAX_LINKED_FILE_BYTES,
            threads: false,
            typing: false,
            typing_interval: Duration::from_secs(30),
        }
    }

    fn status(&self) -> &StatusCell {
        &self.status
    }

    /// Inbound POSTs arrive through the gateway's HTTP server; sending needs nothing set up, so
    /// the account is ready at once and stays so (a backend that is down is the outbox's to
    /// retry, not a reason to stop sending to it).
    async fn run(&self, _ingress: Arc<dyn Ingress>, cancel: CancellationToken) -> Result<(), ChannelError> {
        tracing::info!(account = %self.key, path = %self.path, "webhook channel ready; messages are taken on this path");
        self.status.mark_connected();
        cancel.cancelled().await;
        self.status.mark_disconnected(None);
        Ok(())
    }

    async fn send(&self, message: &OutboundMessage) -> Result<Delivered, SendError> {
        let id = self.outbound_id(message);
        let body = serde_json::to_vec(&self.outbound_body(&id, message)?)
            .map_err(|e| SendError::Permanent(format!("cannot encode the message: {e}")))?;
        let ts = unix_now();
        let resp = self
            .http
            .post(&self.outbound_url)
            .timeout(self.timeout)
            .header(reqwest::header::CONTENT_TYPE, "application/json")
            .header(TIMESTAMP_HEADER, ts.to_string())
            .header(SIGNATURE_HEADER, sign(&self.secret.0, ts, &body))
            .header(IDEMPOTENCY_HEADER, &id)
            .header(ACCOUNT_HEADER, &self.key.account)
            .body(body)
            .send()
            .await;
        let resp = match resp {
            Ok(r) => r,
            Err(e) => {
                let kind = if e.is_timeout() {
                    "timed out"
                } else if e.is_connect() {
                    "could not connect"
                } else {
                    "request failed"
                };
                let why = format!("backend {kind}: {}", e.without_url());
                self.status.mark_error(why.clone());
                return Err(SendError::Transient(why));
            }
        };
        let status = resp.status().as_u16();
        let wait = retry_after(resp.headers());
        if (200..300).contains(&status) {
            self.status.mark_outbound();
            return Ok(Delivered { message_id: id });
        }
        let text = resp.text().await.unwrap_or_default();
        let shown: String = text.chars().filter(|c| !c.is_control()).take(ERROR_BODY_CHARS).collect();
        let why = if shown.is_empty() {
            format!("backend answered {status}")
        } else {
            format!("backend answered {status}: {shown}")
        };
        self.status.mark_error(why.clone());
        Err(match (status, wait) {
            (408 | 429 | 500..=599, Some(wait)) => SendError::RetryAfter(wait, why),
            (408 | 429 | 500..=599, None) => SendError::Transient(why),
            _ => SendError::Permanent(why),
        })
    }

    async fn typing(&self, _chat_id: &str, _thread_id: Option<&str>) -> Result<(), SendError> {
        Ok(())
    }

    fn webhook_path(&self) -> Option<String> {
        Some(self.path.clone())
    }

    fn max_webhook_body(&self) -> usize {
        MAX_BODY
    }

    fn retry_policy(&self) -> Option<RetryPolicy> {
        Some(self.retry)
    }

    fn replies_name_their_message(&self) -> bool {
        true
    }

    async fn webhook_respond(
        &self,
        request: WebhookRequest<'_>,
        ingress: &dyn Ingress,
    ) -> Result<WebhookReply, WebhookError> {
        self.handle(request, ingress).await
    }

    async fn handle_webhook(&self, request: WebhookRequest<'_>, ingress: &dyn Ingress) -> Result<(), WebhookError> {
        self.handle(request, ingress).await.map(|_| ())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::channel::IngressError;
    use crate::config::accounts_from_value;

    const SECRET: &str = "0123456789abcdef0123456789abcdef";

    fn channel(extra: Value) -> WebhookChannel {
        let mut section = json!({"secret": SECRET, "outboundUrl": "http://127.0.0.1:9/replies"});
        if let (Some(s), Value::Object(extra)) = (section.as_object_mut(), extra) {
            s.extend(extra);
        }
        let root = json!({"channels": {"webhook": section}});
        WebhookChannel::new(&accounts_from_value(&root, std::path::Path::new("/")).unwrap()[0]).unwrap()
    }

    /// An ingress that keeps what it is given and knows ids it has seen.
    #[derive(Default)]
    struct Recorder(Mutex<Vec<InboundMessage>>);

    #[async_trait]
    impl Ingress for Recorder {
        async fn deliver(&self, message: InboundMessage) -> Result<Accepted, IngressError> {
            let mut seen = self.0.lock().unwrap();
            if seen.iter().any(|m| m.message_id == message.message_id) {
                return Ok(Accepted::Duplicate);
            }
            seen.push(message);
            Ok(Accepted::New)
        }
        async fn load_state(&self, _: &AccountKey, _: &str) -> Option<String> {
            None
        }
        async fn save_state(&self, _: &AccountKey, _: &str, _: &str) -> Result<(), IngressError> {
            Ok(())
        }
    }

    fn headers(ts: i64, body: &[u8], secret: &str) -> Vec<(String, String)> {
        vec![
            ("content-type".into(), "application/json".into()),
            (TIMESTAMP_HEADER.into(), ts.to_string()),
            (SIGNATURE_HEADER.into(), sign(secret.as_bytes(), ts, body)),
        ]
    }

    #[test]
    fn the_signature_covers_the_timestamp_and_the_raw_bytes() {
        let body = br#"{"id":"1","from":{"id":"u"},"text":"hi"}"#;
        let now = 1_800_000_000;
        let sig = sign(SECRET.as_bytes(), now, body);
        assert!(sig.starts_with("sha256=") && sig.len() == 7 + 64, "{sig}");
        let ts = now.to_string();
        assert_eq!(verify(SECRET.as_bytes(), Some(&ts), Some(&sig), body, now), Ok(()));
        assert_eq!(verify(SECRET.as_bytes(), Some(&ts), Some(&sig), body, now + 299), Ok(()), "within the skew");
        let reserialised = br#"{"id":"1","from":{"id":"u"},"text": "hi"}"#;
        assert_eq!(verify(SECRET.as_bytes(), Some(&ts), Some(&sig), reserialised, now), Err(SignatureError::Mismatch));
        let later = (now + 1).to_string();
        assert_eq!(verify(SECRET.as_bytes(), Some(&later), Some(&sig), body, now), Err(SignatureError::Mismatch));
        assert_eq!(verify(b"another secret", Some(&ts), Some(&sig), body, now), Err(SignatureError::Mismatch));
        assert_eq!(verify(SECRET.as_bytes(), Some(&ts), Some(&sig), body, now + 301), Err(SignatureError::Stale));
        assert_eq!(verify(SECRET.as_bytes(), Some(&ts), Some(&sig), body, now - 301), Err(SignatureError::Stale));
        assert_eq!(verify(SECRET.as_bytes(), None, Some(&sig), body, now), Err(SignatureError::Missing));
        assert_eq!(verify(SECRET.as_bytes(), Some(&ts), None, body, now), Err(SignatureError::Missing));
        let bare = sig.trim_start_matches("sha256=");
        assert_eq!(verify(SECRET.as_bytes(), Some(&ts), Some(bare), body, now), Err(SignatureError::Malformed));
        assert_eq!(verify(SECRET.as_bytes(), Some("soon"), Some(&sig), body, now), Err(SignatureError::Malformed));
        assert_eq!(
            verify(SECRET.as_bytes(), Some(&ts), Some("sha256=abcd"), body, now),
            Err(SignatureError::Malformed)
        );
    }

    #[test]
    fn the_signature_matches_the_documented_openssl_recipe() {
        // printf '%s' '1800000000.{"a":1}' | openssl dgst -sha256 -hmac 'k' (see OPERATIONS.md)
        let mut mac = HmacSha256::new_from_slice(b"k").unwrap();
        mac.update(b"1800000000.{\"a\":1}");
        let expected = format!("sha256={}", hex::encode(mac.finalize().into_bytes()));
        assert_eq!(sign(b"k", 1_800_000_000, br#"{"a":1}"#), expected);
    }

    #[tokio::test]
    async fn a_signed_message_is_recorded_once_and_a_replay_gets_the_same_answer() {
        let ch = channel(json!({}));
        let ingress = Recorder::default();
        let body = br#"{"id":"m1","from":{"id":"ann","name":"Ann"},"chat":{"id":"doc-7","type":"group"},
            "text":"hello","sessionKey":"compose:doc:7:ann","context":{"title":"T"}}"#;
        let h = headers(unix_now(), body, SECRET);
        let first = ch.handle(WebhookRequest { headers: &h, body }, &ingress).await.unwrap();
        assert_eq!(first.status, 202);
        let again = ch.handle(WebhookRequest { headers: &h, body }, &ingress).await.unwrap();
        assert_eq!((again.status, again.body.as_str()), (200, first.body.as_str()));
        let seen = ingress.0.lock().unwrap().clone();
        assert_eq!(seen.len(), 1);
        let m = &seen[0];
        assert_eq!((m.chat_id.as_str(), m.chat_kind, m.sender_id.as_str()), ("doc-7", ChatKind::Group, "ann"));
        assert_eq!(m.session_key.as_deref(), Some("compose:doc:7:ann"));
        assert_eq!(m.context, Some(json!({"title": "T"})));
        assert!(m.addresses_bot());
    }

    #[tokio::test]
    async fn nothing_is_read_before_the_signature_holds() {
        let ch = channel(json!({}));
        let ingress = Recorder::default();
        let body = b"not json at all";
        let forged = headers(unix_now(), body, "a secret that is not the account's");
        let r = ch.handle(WebhookRequest { headers: &forged, body }, &ingress).await;
        assert_eq!(r, Err(WebhookError::Unauthorized), "a forged request is a 401, not a 400");
        let stale = headers(unix_now() - 600, body, SECRET);
        assert_eq!(
            ch.handle(WebhookRequest { headers: &stale, body }, &ingress).await,
            Err(WebhookError::Unauthorized)
        );
        let signed = headers(unix_now(), body, SECRET);
        let r = ch.handle(WebhookRequest { headers: &signed, body }, &ingress).await.unwrap();
        assert_eq!(r.status, 400, "{r:?}");
        let mut wrong_type = signed.clone();
        wrong_type[0].1 = "text/plain".into();
        assert_eq!(ch.handle(WebhookRequest { headers: &wrong_type, body }, &ingress).await.unwrap().status, 415);
        assert!(ingress.0.lock().unwrap().is_empty());
    }

    #[tokio::test]
    async fn malformed_messages_say_what_is_wrong() {
        let ch = channel(json!({}));
        let ingress = Recorder::default();
        let cases: [(&str, &str); 7] = [
            (r#"{"from":{"id":"u"},"text":"hi"}"#, "id is missing"),
            (r#"{"id":"1","text":"hi"}"#, "from"),
            (r#"{"id":"1","from":{"id":"u"},"text":"  "}"#, "text is empty"),
            (r#"{"id":"1","from":{"id":"u"},"chat":{"id":"c","type":"room"},"text":"hi"}"#, "unknown variant"),
            (r#"{"id":"1","from":{"id":"u"},"text":"hi","sessionKey":"cron:nightly"}"#, "gateway's own sessions"),
            (r#"{"id":"1","from":{"id":"u"},"text":"hi","sessionKey":"agent:main:subagent:x"}"#, "own sessions"),
            (r#"{"id":"1","from":{"id":"u"},"text":"hi","context":"a string"}"#, "context must be an object"),
        ];
        for (body, expected) in cases {
            let h = headers(unix_now(), body.as_bytes(), SECRET);
            let r = ch.handle(WebhookRequest { headers: &h, body: body.as_bytes() }, &ingress).await.unwrap();
            assert_eq!(r.status, 400, "{body}");
            assert!(r.body.contains(expected), "{body}: {}", r.body);
        }
        // The key may come as a header; a body id that disagrees with it is refused.
        let body = br#"{"from":{"id":"u"},"text":"hi"}"#;
        let mut h = headers(unix_now(), body, SECRET);
        h.push((IDEMPOTENCY_HEADER.into(), "hdr-1".into()));
        assert_eq!(ch.handle(WebhookRequest { headers: &h, body }, &ingress).await.unwrap().status, 202);
        let body = br#"{"id":"other","from":{"id":"u"},"text":"hi"}"#;
        let mut h = headers(unix_now(), body, SECRET);
        h.push((IDEMPOTENCY_HEADER.into(), "hdr-2".into()));
        assert_eq!(ch.handle(WebhookRequest { headers: &h, body }, &ingress).await.unwrap().status, 400);
        assert_eq!(ingress.0.lock().unwrap().len(), 1);
    }

    #[test]
    fn outbound_bodies_name_the_chat_the_message_and_the_user() {
        let ch = channel(json!({}));
        ch.remember_sender("m1".into(), "ann".into());
        let mut m = OutboundMessage::text("doc-7", None, "hi all");
        m.reply_to = Some("m1".into());
        m.chat_kind = Some(ChatKind::Group);
        m.retry_key = Some("outbox:3:reply:2:0".into());
        let id = ch.outbound_id(&m);
        assert_eq!(id, ch.outbound_id(&m), "stable across attempts");
        let body = ch.outbound_body(&id, &m).unwrap();
        assert_eq!(body["chat"], json!({"id": "doc-7", "type": "group"}));
        assert_eq!((body["inReplyTo"].clone(), body["to"].clone()), (json!("m1"), json!("ann")));
        let dm = OutboundMessage::text("bob", None, "hi");
        let body = ch.outbound_body("x", &dm).unwrap();
        assert_eq!((body["chat"]["type"].clone(), body["to"].clone()), (json!("dm"), json!("bob")));
        assert!(body.get("media").is_none());
    }

    #[tokio::test]
    async fn the_doctor_probe_connects_to_the_backend_without_posting() {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let port = listener.local_addr().unwrap().port();
        let up = channel(json!({"outboundUrl": format!("http://127.0.0.1:{port}/replies")}));
        let me = up.probe().await.unwrap();
        assert_eq!(me.id, "/webhook/default");
        drop(listener);
        let down = channel(json!({"outboundUrl": format!("http://127.0.0.1:{port}/replies")}));
        assert!(
            matches!(down.probe().await, Err(crate::probe::ProbeError::Unreachable(m)) if m.contains("outboundUrl"))
        );
    }

    #[test]
    fn config_errors_name_the_key_and_debug_hides_the_secret() {
        let root = json!({"channels": {"webhook": {"outboundUrl": "http://127.0.0.1:9/r", "secret": "short"}}});
        let e = WebhookChannel::new(&accounts_from_value(&root, std::path::Path::new("/")).unwrap()[0]).unwrap_err();
        assert!(e.to_string().contains("16 bytes"), "{e}");
        let root = json!({"channels": {"webhook": {"outboundUrl": "ftp://x/r", "secret": SECRET}}});
        let e = accounts_from_value(&root, std::path::Path::new("/")).unwrap_err();
        assert_eq!(e.path, "channels.webhook.outboundUrl");
        let root = json!({"channels": {"webhook": {"outboundUrl": "http://x/r", "secret": SECRET, "maxAttempts": 0}}});
        assert_eq!(
            accounts_from_value(&root, std::path::Path::new("/")).unwrap_err().path,
            "channels.webhook.maxAttempts"
        );
        let ch = channel(json!({"maxAttempts": 3, "retryBaseMs": 10, "retryMaxMs": 50, "path": "/hooks/app"}));
        assert_eq!(ch.retry_policy().map(|p| p.max_attempts), Some(3));
        assert_eq!(ch.webhook_path().as_deref(), Some("/hooks/app"));
        assert_eq!(channel(json!({})).webhook_path().as_deref(), Some("/webhook/default"));
        let debug = format!("{ch:?}");
        assert!(!debug.contains(SECRET), "{debug}");
        let accts = accounts_from_value(
            &json!({"channels": {"webhook": {"secret": SECRET, "outboundUrl": "http://x/r",
                "accounts": {"app2": {"outboundUrl": "http://y/r"}}}}}),
            std::path::Path::new("/"),
        )
        .unwrap();
        assert_eq!(accts.len(), 2, "the top level is the default account, app2 inherits its secret");
        assert!(accts.iter().all(|a| a.dm_policy == crate::DmPolicy::Open), "backends speak for their own users");
        assert!(!format!("{accts:?}").contains(SECRET));
    }
}
