//! WhatsApp Cloud API: webhooks in, Graph API out, over plain HTTPS with reqwest.
//!
//! Receiving is push only: Meta calls the gateway's [`WhatsAppChannel::webhook_path`] with a GET
//! verification handshake once ([`Channel::verify_webhook`]) and a signed POST per batch of
//! events ([`WhatsAppChannel::handle_webhook`]). A POST's `X-Hub-Signature-256` is checked over
//! the raw bytes, in constant time, before anything parses or logs the body; its messages are
//! recorded through the [`Ingress`] (which drops redelivered `wamid`s) before the 200, so Meta
//! redelivers whatever was not recorded. `statuses` (sent/delivered/read/failed) never make a
//! turn; a `failed` one is reported in `channels.status`.
//!
//! Sending: `POST /{version}/{phone-number-id}/messages` with the access token as a bearer; text
//! chunks of at most 4 096 characters, images uploaded to `/{phone-number-id}/media` first (or
//! sent by HTTPS link). Graph errors are classified by `error.code` (never by the title): rate
//! limits wait and retry, server trouble retries with backoff, and the rest — the closed 24-hour
//! customer-service window (131047) above all — are permanent, reported once in words that say
//! what happened. The wire contract is `shared/contracts/whatsapp-cloud.md`.
//!
//! The `run` loop only checks the token and the number (`GET /{version}/{phone-number-id}`) and
//! then marks the account ready; the access token, app secret and verify token never appear in
//! `Debug`, logs or errors.

use std::fmt;
use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use hmac::{Hmac, Mac};
use serde_json::{Value, json};
use sha2::Sha256;
use subtle::ConstantTimeEq;
use tokio_util::sync::CancellationToken;

use crate::channel::{
    Accepted, Capabilities, Channel, ChannelError, Ingress, SendError, StatusCell, TextMeasure, WebhookError,
    WebhookRequest,
};
use crate::config::AccountConfig;
use crate::model::{AccountKey, ChatKind, Delivered, InboundMedia, InboundMessage, MediaSource, OutboundMessage};
use clawgate_backoff::Backoff;

/// Where the Graph API lives unless `apiRoot` says otherwise.
pub const DEFAULT_API_ROOT: &str = "https://graph.facebook.com";
/// The Graph version unless `apiVersion` says otherwise (pinned, as Meta advises).
pub const DEFAULT_API_VERSION: &str = "v24.0";
/// Where the default account's webhook is served unless `webhookPath` says otherwise; other
/// accounts get `/whatsapp/webhook/<account>`.
pub const DEFAULT_WEBHOOK_PATH: &str = "/whatsapp/webhook";
/// The header Meta signs webhook POSTs in.
pub const SIGNATURE_HEADER: &str = "X-Hub-Signature-256";
/// Chat ids of WhatsApp groups carry this prefix (a user's chat id is their `wa_id`).
pub const GROUP_PREFIX: &str = "group:";

const MAX_TEXT: usize = 4096;
const MAX_CAPTION: usize = 1024;
const MAX_IMAGE_BYTES: u64 = 5 * 1024 * 1024;
const MAX_UPLOAD_BYTES: u64 = 100 * 1024 * 1024;
/// Meta's webhook payloads are at most 3 MB.
const MAX_WEBHOOK_BODY: usize = 3 * 1024 * 1024;
/// Longest `hub.challenge` echoed back.
const MAX_CHALLENGE: usize = 256;
const CALL_TIMEOUT: Duration = Duration::from_secs(30);
const UPLOAD_TIMEOUT: Duration = Duration::from_secs(300);
const CHECK_BACKOFF: Backoff = Backoff::new(Duration::from_millis(500), Duration::from_secs(60));

/// Graph error codes this adapter acts on (contract §4.2).
mod code {
    pub const UNKNOWN: i64 = 1;
    pub const TEMPORARY: i64 = 2;
    pub const INVALID_PARAMETER: i64 = 100;
    pub const ACCESS_TOKEN: i64 = 190;
    pub const GRAPH_APP_LIMITS: [i64; 4] = [4, 17, 32, 613];
    pub const WABA_RATE_LIMIT: i64 = 80_007;
    pub const RATE_LIMIT: i64 = 130_429;
    pub const GENERIC: i64 = 131_000;
    pub const SERVICE_UNAVAILABLE: i64 = 131_016;
    pub const UNDELIVERABLE: i64 = 131_026;
    pub const RE_ENGAGEMENT: i64 = 131_047;
    pub const SPAM_RATE_LIMIT: i64 = 131_048;
    pub const PAIR_RATE_LIMIT: i64 = 131_056;
    pub const NUMBER_UPGRADING: i64 = 131_057;
    pub const SERVER_UNAVAILABLE: i64 = 133_004;
}

/// A failed Graph call.
#[derive(Debug, Clone, PartialEq, Eq)]
enum ApiError {
    /// No answer (connect, timeout, broken body); token-free text.
    Network(String),
    /// An error answer. `code` is Graph's `error.code` (0 when the body was not Graph's).
    Graph { http: u16, code: i64, message: String, retry_after: Option<u64> },
}

impl fmt::Display for ApiError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            ApiError::Network(e) => write!(f, "network error: {e}"),
            ApiError::Graph { http, code: 0, message, .. } => write!(f, "HTTP {http}: {message}"),
            ApiError::Graph { code, message, .. } => write!(f, "Graph error {code}: {message}"),
        }
    }
}

impl ApiError {
    /// What the outbox does with it; `to` is the recipient, for the words.
    fn to_send_error(&self, to: &str) -> SendError {
        let ApiError::Graph { http, code, retry_after, .. } = self else {
            return SendError::Transient(self.to_string());
        };
        let wait = |default: u64| Duration::from_secs(retry_after.unwrap_or(default));
        match *code {
            code::RATE_LIMIT => SendError::RetryAfter(wait(1), self.to_string()),
            code::PAIR_RATE_LIMIT => SendError::RetryAfter(wait(6), self.to_string()),
            code::WABA_RATE_LIMIT | code::SPAM_RATE_LIMIT | code::NUMBER_UPGRADING => {
                SendError::RetryAfter(wait(60), self.to_string())
            }
            c if code::GRAPH_APP_LIMITS.contains(&c) => SendError::RetryAfter(wait(60), self.to_string()),
            code::UNKNOWN | code::TEMPORARY | code::GENERIC | code::SERVICE_UNAVAILABLE | code::SERVER_UNAVAILABLE => {
                SendError::Transient(self.to_string())
            }
            // The token was revoked or expired: the outbox keeps the message for when it is fixed.
            code::ACCESS_TOKEN => SendError::Transient(format!(
                "WhatsApp refused the access token ({self}); renew channels.whatsapp.accessToken"
            )),
            code::RE_ENGAGEMENT => SendError::Permanent(window_closed(to, &self.to_string())),
            code::UNDELIVERABLE => SendError::Permanent(format!(
                "WhatsApp cannot deliver to {to} (not a WhatsApp number, the user blocked the business, or an \
                 outdated app): {self}"
            )),
            0 if *http == 429 => SendError::RetryAfter(wait(1), self.to_string()),
            0 if *http >= 500 || *http == 401 => SendError::Transient(self.to_string()),
            _ if *http >= 500 => SendError::Transient(self.to_string()),
            _ => SendError::Permanent(self.to_string()),
        }
    }
}

/// The words for error 131047.
fn window_closed(to: &str, detail: &str) -> String {
    format!(
        "WhatsApp's 24-hour customer-service window is closed for {to}: more than 24 hours have passed since \
         they last wrote, so only an approved template can reach them until they write again; the message is \
         not retried ({detail})"
    )
}

/// The Graph client of one number; `Debug` hides the token.
struct Api {
    http: reqwest::Client,
    root: String,
    version: String,
    phone_number_id: String,
    token: String,
}

impl fmt::Debug for Api {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Api")
            .field("root", &self.root)
            .field("version", &self.version)
            .field("phone_number_id", &self.phone_number_id)
            .field("token", &"<redacted>")
            .finish()
    }
}

impl Api {
    fn url(&self, path: &str) -> String {
        format!("{}/{}/{path}", self.root, self.version)
    }

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

    async fn get(&self, path: &str) -> Result<Value, ApiError> {
        self.finish(self.http.get(self.url(path)).bearer_auth(&self.token).timeout(CALL_TIMEOUT)).await
    }

    async fn post(&self, path: &str, body: &Value) -> Result<Value, ApiError> {
        self.finish(self.http.post(self.url(path)).bearer_auth(&self.token).json(body).timeout(CALL_TIMEOUT)).await
    }

    async fn upload(&self, form: reqwest::multipart::Form) -> Result<Value, ApiError> {
        let path = format!("{}/media", self.phone_number_id);
        let req = self.http.post(self.url(&path)).bearer_auth(&self.token).multipart(form).timeout(UPLOAD_TIMEOUT);
        self.finish(req).await
    }

    async fn finish(&self, req: reqwest::RequestBuilder) -> Result<Value, ApiError> {
        let resp = req.send().await.map_err(|e| self.network(e))?;
        let http = resp.status().as_u16();
        let retry_after = resp
            .headers()
            .get(reqwest::header::RETRY_AFTER)
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.trim().parse::<u64>().ok());
        let body = resp.bytes().await.map_err(|e| self.network(e))?;
        let parsed = serde_json::from_slice::<Value>(&body).ok();
        if let Some(v) = &parsed
            && http < 300
            && v.get("error").is_none()
        {
            return Ok(v.clone());
        }
        let error = parsed.as_ref().and_then(|v| v.get("error"));
        let code = error.and_then(|e| e.get("code")).and_then(Value::as_i64).unwrap_or(0);
        let message = match error {
            Some(e) => {
                let msg = e.get("message").and_then(Value::as_str).unwrap_or("no message");
                match e.pointer("/error_data/details").and_then(Value::as_str).filter(|d| !d.is_empty()) {
                    Some(details) => format!("{msg} ({details})"),
                    None => msg.to_owned(),
                }
            }
            None => {
                let text: String = String::from_utf8_lossy(&body).chars().take(200).collect();
                format!("unexpected answer: {text}")
            }
        };
        Err(ApiError::Graph { http: http.max(300), code, message: self.scrub(&message), retry_after })
    }
}

/// One WhatsApp Cloud API number.
pub struct WhatsAppChannel {
    key: AccountKey,
    api: Api,
    app_secret: String,
    verify_token: String,
    path: String,
    status: StatusCell,
}

impl fmt::Debug for WhatsAppChannel {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("WhatsAppChannel")
            .field("key", &self.key)
            .field("api", &self.api)
            .field("path", &self.path)
            .field("app_secret", &"<redacted>")
            .field("verify_token", &"<redacted>")
            .finish()
    }
}

fn config_err(key: &AccountKey, msg: impl fmt::Display) -> ChannelError {
    ChannelError::Config(format!("channels.whatsapp ({key}): {msg}"))
}

impl WhatsAppChannel {
    /// Build from a resolved account. Needs `accessToken`, `appSecret`, `verifyToken` and
    /// `phoneNumberId`; `apiRoot` (default [`DEFAULT_API_ROOT`]), `apiVersion` (default
    /// [`DEFAULT_API_VERSION`]) and `webhookPath` are optional.
    pub fn new(cfg: &AccountConfig) -> Result<Self, ChannelError> {
        let key = cfg.key.clone();
        let token = cfg.token.clone().filter(|t| !t.trim().is_empty()).ok_or_else(|| {
            config_err(&key, "accessToken is not set; put a system-user access token in channels.whatsapp.accessToken")
        })?;
        if token.chars().any(char::is_whitespace) {
            return Err(config_err(&key, "accessToken contains spaces; copy it exactly as Meta shows it"));
        }
        let app_secret = cfg.settings.app_secret.clone().ok_or_else(|| {
            config_err(
                &key,
                "appSecret is not set; copy the App secret (App settings → Basic in the Meta console) into \
                 channels.whatsapp.appSecret: webhooks are refused without it",
            )
        })?;
        let verify_token = cfg.settings.verify_token.clone().ok_or_else(|| {
            config_err(
                &key,
                "verifyToken is not set; choose one and type the same string as the webhook's Verify token in the Meta console",
            )
        })?;
        let phone_number_id = cfg.settings.phone_number_id.clone().ok_or_else(|| {
            config_err(&key, "phoneNumberId is not set; copy the Phone number ID from WhatsApp → API Setup")
        })?;
        if phone_number_id.is_empty() || !phone_number_id.chars().all(|c| c.is_ascii_digit()) {
            return Err(config_err(
                &key,
                format!("phoneNumberId {phone_number_id:?} must be the numeric Phone number ID, not the phone number"),
            ));
        }
        let root = cfg.settings.api_root.as_deref().unwrap_or(DEFAULT_API_ROOT).trim_end_matches('/').to_owned();
        if !(root.starts_with("https://") || root.starts_with("http://")) {
            return Err(config_err(&key, format!("apiRoot {root:?} must be an http(s) URL")));
        }
        let version = cfg.settings.api_version.clone().unwrap_or_else(|| DEFAULT_API_VERSION.to_owned());
        let well_formed = version
            .strip_prefix('v')
            .and_then(|v| v.split_once('.'))
            .is_some_and(|(a, b)| a.parse::<u32>().is_ok() && b.parse::<u32>().is_ok());
        if !well_formed {
            return Err(config_err(&key, format!("apiVersion {version:?} must look like \"{DEFAULT_API_VERSION}\"")));
        }
        let path = cfg.settings.webhook_path.clone().unwrap_or_else(|| {
            if key.account == "default" {
                DEFAULT_WEBHOOK_PATH.to_owned()
            } else {
                format!("{DEFAULT_WEBHOOK_PATH}/{}", key.account)
            }
        });
        if !path.starts_with('/') {
            return Err(config_err(&key, format!("webhookPath {path:?} must start with '/'")));
        }
        let http = reqwest::Client::builder()
            .connect_timeout(Duration::from_secs(10))
            .build()
            .map_err(|e| ChannelError::Fatal(format!("building the HTTP client: {e}")))?;
        Ok(Self {
            key,
            api: Api { http, root, version, phone_number_id, token },
            app_secret,
            verify_token,
            path,
            status: StatusCell::new(),
        })
    }

    /// The path on the gateway's port Meta's callback URL must point at.
    pub fn webhook_path(&self) -> &str {
        &self.path
    }

    /// Take one webhook POST: check the signature over the raw bytes, then record every message
    /// of every change. `Ok` means answer 200 (also for bodies with nothing to act on).
    pub async fn handle_webhook(
        &self,
        signature: Option<&str>,
        body: &[u8],
        ingress: &dyn Ingress,
    ) -> Result<(), WebhookError> {
        if !signature_matches(&self.app_secret, signature, body) {
            return Err(WebhookError::Unauthorized);
        }
        let event: Value = serde_json::from_slice(body).map_err(|e| WebhookError::BadRequest(e.to_string()))?;
        self.status.mark_received();
        if event.get("object").and_then(Value::as_str) != Some("whatsapp_business_account") {
            return Ok(());
        }
        let mut changes: Vec<&Value> = Vec::new();
        for entry in event.get("entry").and_then(Value::as_array).map(Vec::as_slice).unwrap_or_default() {
            changes.extend(entry.get("changes").and_then(Value::as_array).map(Vec::as_slice).unwrap_or_default());
        }
        for change in changes {
            if change.get("field").and_then(Value::as_str) != Some("messages") {
                continue;
            }
            let Some(value) = change.get("value") else { continue };
            if let Some(number) = value.pointer("/metadata/phone_number_id").and_then(Value::as_str)
                && number != self.api.phone_number_id
            {
                tracing::warn!(account = %self.key, phone_number_id = number,
                    "whatsapp webhook for another phone number id; ignored (check channels.whatsapp.phoneNumberId)");
                continue;
            }
            let list = |k: &str| value.get(k).and_then(Value::as_array).map(Vec::as_slice).unwrap_or_default();
            for status in list("statuses") {
                self.on_status(status);
            }
            for error in list("errors") {
                let text = describe_error(error);
                tracing::warn!(account = %self.key, error = %text, "whatsapp reported an error");
                self.status.mark_error(format!("WhatsApp reported: {text}"));
            }
            let contacts = list("contacts");
            for m in list("messages") {
                let Some(message) = normalise(&self.key, m, contacts) else { continue };
                match ingress.deliver(message).await {
                    Ok(Accepted::New) => self.status.mark_inbound(),
                    Ok(Accepted::Duplicate) => {}
                    Err(e) => return Err(WebhookError::Unavailable(e.to_string())),
                }
            }
        }
        Ok(())
    }

    /// A delivery status of a message we sent: only `failed` matters to anyone.
    fn on_status(&self, status: &Value) {
        let state = status.get("status").and_then(Value::as_str).unwrap_or("");
        let id = status.get("id").and_then(Value::as_str).unwrap_or("?");
        if state != "failed" {
            tracing::debug!(account = %self.key, message = id, status = state, "whatsapp message status");
            return;
        }
        let to = status.get("recipient_id").and_then(Value::as_str).unwrap_or("?");
        let errors: Vec<&Value> = status.get("errors").and_then(Value::as_array).into_iter().flatten().collect();
        let closed = errors.iter().any(|e| e.get("code").and_then(Value::as_i64) == Some(code::RE_ENGAGEMENT));
        let detail = errors.iter().map(|e| describe_error(e)).collect::<Vec<_>>().join("; ");
        let text = if closed {
            format!("message {id} was not delivered: {}", window_closed(to, &detail))
        } else {
            format!("message {id} to {to} was not delivered: {detail}")
        };
        tracing::error!(account = %self.key, error = %text, "whatsapp message failed");
        self.status.mark_error(format!("delivery to chat {to} failed: {text}"));
    }

    /// `true` once `GET /{phone-number-id}` answered; the error to stop on otherwise.
    /// Asks `GET /{phone-number-id}` once whether the access token reaches the number
    /// (`clawgate doctor`): its id and verified name with the display number, or why not.
    pub async fn probe(&self) -> Result<crate::probe::Identity, crate::probe::ProbeError> {
        use crate::probe::{Identity, ProbeError};
        match self.check_number().await {
            Ok(info) => {
                let field = |k: &str| info.get(k).and_then(Value::as_str).map(str::to_owned);
                let name = match (field("verified_name"), field("display_phone_number")) {
                    (Some(n), Some(d)) => Some(format!("{n} ({d})")),
                    (n, d) => n.or(d),
                };
                Ok(Identity { id: self.api.phone_number_id.clone(), name })
            }
            Err(ApiError::Graph { code: code::ACCESS_TOKEN, .. }) | Err(ApiError::Graph { http: 401, .. }) => {
                Err(ProbeError::Rejected(
                    "WhatsApp refused the access token (Graph error 190); check channels.whatsapp.accessToken".into(),
                ))
            }
            Err(ApiError::Graph { code: code::INVALID_PARAMETER, message, .. }) => Err(ProbeError::Config(format!(
                "Graph does not know phone number id {} ({message}); check channels.whatsapp.phoneNumberId",
                self.api.phone_number_id
            ))),
            Err(ApiError::Network(e)) => Err(ProbeError::Unreachable(format!("Graph API at {}: {e}", self.api.root))),
            Err(e) => Err(ProbeError::Failed(format!("GET /{}: {e}", self.api.phone_number_id))),
        }
    }

    async fn check_number(&self) -> Result<Value, ApiError> {
        self.api.get(&format!("{}?fields=display_phone_number,verified_name", self.api.phone_number_id)).await
    }

    async fn send_media(&self, message: &OutboundMessage, mut body: Value) -> Result<Value, SendError> {
        let Some(media) = &message.media else { return Err(SendError::Permanent("no media".into())) };
        let image_type = matches!(media.content_type.as_str(), "image/png" | "image/jpeg" | "image/jpg");
        let caption: String = message.text.chars().take(MAX_CAPTION).collect();
        let (kind, mut object) = match &media.source {
            MediaSource::Url { url } => {
                if !url.starts_with("https://") {
                    return Err(SendError::Permanent(format!(
                        "WhatsApp fetches media links only over HTTPS, and {} is not one",
                        media.filename
                    )));
                }
                let image = image_type && !media.force_document && media.size.is_none_or(|s| s <= MAX_IMAGE_BYTES);
                (if image { "image" } else { "document" }, json!({"link": url}))
            }
            MediaSource::Path { path } => {
                let data = tokio::fs::read(path).await.map_err(|e| {
                    SendError::Permanent(format!("cannot read the file to send ({}): {e}", media.filename))
                })?;
                let len = data.len() as u64;
                if len > MAX_UPLOAD_BYTES {
                    return Err(SendError::Permanent(format!(
                        "{} is {len} bytes; WhatsApp takes files of at most 100 MB",
                        media.filename
                    )));
                }
                let image = image_type && !media.force_document && len <= MAX_IMAGE_BYTES;
                let mime = match media.content_type.as_str() {
                    "image/jpg" => "image/jpeg",
                    t if t.contains('/') => t,
                    _ => "application/octet-stream",
                };
                let part = reqwest::multipart::Part::bytes(data)
                    .file_name(media.filename.clone())
                    .mime_str(mime)
                    .map_err(|e| SendError::Permanent(format!("content type {mime:?}: {e}")))?;
                let form = reqwest::multipart::Form::new()
                    .text("messaging_product", "whatsapp")
                    .text("type", mime.to_owned())
                    .part("file", part);
                let to = body.get("to").and_then(Value::as_str).unwrap_or("").to_owned();
                let uploaded = self.api.upload(form).await.map_err(|e| e.to_send_error(&to))?;
                let id = uploaded.get("id").and_then(Value::as_str).ok_or_else(|| {
                    SendError::Transient("WhatsApp accepted the upload but answered without a media id".into())
                })?;
                (if image { "image" } else { "document" }, json!({"id": id}))
            }
        };
        if kind == "document" {
            object["filename"] = json!(media.filename);
        }
        if !caption.trim().is_empty() {
            object["caption"] = json!(caption);
        }
        body["type"] = json!(kind);
        body[kind] = object;
        Ok(body)
    }
}

/// `sha256=<hex>` over `body` with `secret`, compared in constant time.
fn signature_matches(secret: &str, header: Option<&str>, body: &[u8]) -> bool {
    let Some(hex_sig) = header.map(str::trim).and_then(|h| h.strip_prefix("sha256=")) else { return false };
    let Ok(sig) = hex::decode(hex_sig) else { return false };
    let Ok(mut mac) = <Hmac<Sha256> as Mac>::new_from_slice(secret.as_bytes()) else { return false };
    mac.update(body);
    mac.verify_slice(&sig).is_ok()
}

/// `code title: details` of a webhook `errors[]` entry.
fn describe_error(e: &Value) -> String {
    let code = e.get("code").and_then(Value::as_i64).map(|c| c.to_string()).unwrap_or_else(|| "?".into());
    let title = e.get("title").or_else(|| e.get("message")).and_then(Value::as_str).unwrap_or("");
    let details = e.pointer("/error_data/details").and_then(Value::as_str).unwrap_or("");
    let mut out = format!("error {code}");
    if !title.is_empty() {
        out.push_str(&format!(": {title}"));
    }
    if !details.is_empty() && details != title {
        out.push_str(&format!(" ({details})"));
    }
    out.chars().take(500).collect()
}

/// Turn one `messages[]` entry into a message, or `None` when there is nothing to act on
/// (reactions, system messages, unsupported types).
fn normalise(key: &AccountKey, m: &Value, contacts: &[Value]) -> Option<InboundMessage> {
    let s = |v: &Value, k: &str| v.get(k).and_then(Value::as_str).filter(|s| !s.is_empty()).map(str::to_owned);
    let id = s(m, "id")?;
    let from = s(m, "from").or_else(|| s(m, "from_user_id"))?;
    let kind = m.get("type").and_then(Value::as_str).unwrap_or("");
    let mut media = Vec::new();
    let text = match kind {
        "text" => m.pointer("/text/body").and_then(Value::as_str).unwrap_or("").to_owned(),
        "image" | "video" | "audio" | "document" | "sticker" => {
            let o = m.get(kind)?;
            media.push(InboundMedia {
                kind: if kind == "image" { "photo".into() } else { kind.to_owned() },
                reference: s(o, "id")?,
                filename: s(o, "filename"),
                mime_type: s(o, "mime_type"),
                size: None,
            });
            s(o, "caption").unwrap_or_default()
        }
        "button" => m.pointer("/button/text").and_then(Value::as_str).unwrap_or("").to_owned(),
        "interactive" => m
            .pointer("/interactive/button_reply/title")
            .or_else(|| m.pointer("/interactive/list_reply/title"))
            .and_then(Value::as_str)
            .unwrap_or("")
            .to_owned(),
        _ => return None,
    };
    if text.trim().is_empty() && media.is_empty() {
        return None;
    }
    let contact = contacts.iter().find(|c| {
        c.get("wa_id").and_then(Value::as_str) == Some(&from) || c.get("user_id").and_then(Value::as_str) == Some(&from)
    });
    let profile = contact.and_then(|c| c.get("profile"));
    let (chat_id, chat_kind) = match s(m, "group_id") {
        Some(group) => (format!("{GROUP_PREFIX}{group}"), ChatKind::Group),
        None => (from.clone(), ChatKind::Direct),
    };
    let sent_at = m.get("timestamp").and_then(Value::as_str).and_then(|t| t.parse::<i64>().ok()).unwrap_or(0);
    Some(InboundMessage {
        channel: key.channel.clone(),
        account: key.account.clone(),
        message_id: id,
        chat_id,
        chat_kind,
        chat_title: None,
        thread_id: None,
        space_id: None,
        sender_id: from,
        sender_username: profile.and_then(|p| s(p, "username")),
        sender_name: profile.and_then(|p| s(p, "name")),
        sender_is_bot: false,
        text,
        media,
        reply_to: m.pointer("/context/id").and_then(Value::as_str).map(str::to_owned),
        reply_to_bot: false,
        mentions: Vec::new(),
        mentions_bot: false,
        sent_at_ms: sent_at.saturating_mul(1000),
        session_key: None,
        context: None,
    })
}

#[async_trait]
impl Channel for WhatsAppChannel {
    fn key(&self) -> &AccountKey {
        &self.key
    }

    fn capabilities(&self) -> Capabilities {
        Capabilities {
            max_text: MAX_TEXT,
            measure: TextMeasure::Chars,
            max_caption: MAX_CAPTION,
            max_photo_bytes: MAX_IMAGE_BYTES,
            max_upload_bytes: MAX_UPLOAD_BYTES,
            threads: false,
            // The Cloud API's typing indicator belongs to marking one message read; the trait's
            // per-chat indicator has no message to attach it to.
            typing: false,
            typing_interval: Duration::from_secs(25),
        }
    }

    fn status(&self) -> &StatusCell {
        &self.status
    }

    async fn run(&self, _ingress: Arc<dyn Ingress>, cancel: CancellationToken) -> Result<(), ChannelError> {
        let mut attempt = 0u32;
        loop {
            let r = tokio::select! {
                () = cancel.cancelled() => return Ok(()),
                r = self.check_number() => r,
            };
            match r {
                Ok(info) => {
                    let number = info.get("display_phone_number").and_then(Value::as_str).map(str::to_owned);
                    tracing::info!(account = %self.key, number = ?number, webhook = %self.path, "whatsapp number checked");
                    self.status.set_bot(self.api.phone_number_id.clone(), number);
                    self.status.mark_connected();
                    break;
                }
                Err(ApiError::Graph { code: code::ACCESS_TOKEN, .. }) | Err(ApiError::Graph { http: 401, .. }) => {
                    return Err(ChannelError::Unauthorized(
                        "WhatsApp refused the access token (Graph error 190): put a valid system-user token in \
                         channels.whatsapp.accessToken"
                            .into(),
                    ));
                }
                Err(ApiError::Graph { code: code::INVALID_PARAMETER, message, .. }) => {
                    return Err(config_err(
                        &self.key,
                        format!(
                            "Graph does not know phone number id {} ({message}); check phoneNumberId",
                            self.api.phone_number_id
                        ),
                    ));
                }
                Err(e) => {
                    let wait = CHECK_BACKOFF.delay(attempt);
                    attempt = attempt.saturating_add(1);
                    tracing::warn!(account = %self.key, error = %e, retry_in_ms = wait.as_millis() as u64,
                        "cannot reach the WhatsApp Graph API; retrying");
                    self.status.mark_error(format!("checking the number: {e}"));
                    tokio::select! {
                        () = cancel.cancelled() => return Ok(()),
                        () = tokio::time::sleep(wait) => {}
                    }
                }
            }
        }
        cancel.cancelled().await;
        self.status.mark_disconnected(None);
        Ok(())
    }

    async fn send(&self, message: &OutboundMessage) -> Result<Delivered, SendError> {
        let (to, group) = match message.chat_id.strip_prefix(GROUP_PREFIX) {
            Some(g) => (g, true),
            None => (message.chat_id.as_str(), false),
        };
        let mut body = json!({
            "messaging_product": "whatsapp",
            "recipient_type": if group { "group" } else { "individual" },
            "to": to,
        });
        if let Some(r) = message.reply_to.as_deref().filter(|r| r.starts_with("wamid.")) {
            body["context"] = json!({"message_id": r});
        }
        let body = if message.media.is_some() {
            self.send_media(message, body).await?
        } else {
            if message.text.trim().is_empty() {
                return Err(SendError::Permanent("empty message: nothing to send".into()));
            }
            body["type"] = json!("text");
            body["text"] = json!({"body": message.text, "preview_url": false});
            body
        };
        let sent = self
            .api
            .post(&format!("{}/messages", self.api.phone_number_id), &body)
            .await
            .map_err(|e| e.to_send_error(to))?;
        let id = sent.pointer("/messages/0/id").and_then(Value::as_str).ok_or_else(|| {
            SendError::Transient("WhatsApp accepted the message but answered without a message id".into())
        })?;
        self.status.mark_outbound();
        Ok(Delivered { message_id: id.to_owned() })
    }

    async fn typing(&self, _chat_id: &str, _thread_id: Option<&str>) -> Result<(), SendError> {
        Ok(())
    }

    fn webhook_path(&self) -> Option<String> {
        Some(self.path.clone())
    }

    async fn handle_webhook(&self, request: WebhookRequest<'_>, ingress: &dyn Ingress) -> Result<(), WebhookError> {
        WhatsAppChannel::handle_webhook(self, request.header(SIGNATURE_HEADER), request.body, ingress).await
    }

    fn verify_webhook(&self, query: &[(String, String)]) -> Result<String, WebhookError> {
        let get = |k: &str| query.iter().find(|(n, _)| n == k).map(|(_, v)| v.as_str());
        let (Some(mode), Some(token)) = (get("hub.mode"), get("hub.verify_token")) else {
            return Err(WebhookError::BadRequest("hub.mode and hub.verify_token are required".into()));
        };
        let token_ok = bool::from(token.as_bytes().ct_eq(self.verify_token.as_bytes()));
        if mode != "subscribe" || !token_ok {
            return Err(WebhookError::Forbidden);
        }
        let challenge = get("hub.challenge")
            .filter(|c| !c.is_empty() && c.len() <= MAX_CHALLENGE && c.chars().all(|ch| ch.is_ascii_graphic()))
            .ok_or_else(|| WebhookError::BadRequest("hub.challenge is missing or not a short token".into()))?;
        tracing::info!(account = %self.key, "whatsapp webhook verified by Meta");
        Ok(challenge.to_owned())
    }

    fn max_webhook_body(&self) -> usize {
        MAX_WEBHOOK_BODY
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn key() -> AccountKey {
        AccountKey::new("whatsapp", "default")
    }

    fn channel() -> WhatsAppChannel {
        let cfg = crate::config::accounts_from_value(
            &json!({"channels": {"whatsapp": {"accessToken": "EAAtokenSECRET", "appSecret": "appSECRET",
                "verifyToken": "verifySECRET", "phoneNumberId": "123"}}}),
            std::path::Path::new("/"),
        )
        .unwrap()
        .remove(0);
        WhatsAppChannel::new(&cfg).unwrap()
    }

    fn sign(secret: &str, body: &[u8]) -> String {
        let mut mac = <Hmac<Sha256> as Mac>::new_from_slice(secret.as_bytes()).unwrap();
        mac.update(body);
        format!("sha256={}", hex::encode(mac.finalize().into_bytes()))
    }

    #[test]
    fn signatures_cover_the_exact_bytes() {
        let body = br#"{"a":"\u00e9"}"#;
        assert!(signature_matches("s", Some(&sign("s", body)), body));
        assert!(!signature_matches("s", Some(&sign("t", body)), body));
        assert!(!signature_matches("s", Some(&sign("s", body)), r#"{"a":"é"}"#.as_bytes()), "re-serialised body");
        assert!(!signature_matches("s", None, body));
        assert!(!signature_matches("s", Some("sha256=zz"), body));
        assert!(!signature_matches("s", Some(sign("s", body).trim_start_matches("sha256=")), body));
    }

    #[test]
    fn verification_needs_the_mode_and_the_token() {
        let ch = channel();
        let q = |mode: &str, token: &str| {
            vec![
                ("hub.mode".to_owned(), mode.to_owned()),
                ("hub.verify_token".to_owned(), token.to_owned()),
                ("hub.challenge".to_owned(), "1158201444".to_owned()),
            ]
        };
        assert_eq!(ch.verify_webhook(&q("subscribe", "verifySECRET")), Ok("1158201444".to_owned()));
        assert_eq!(ch.verify_webhook(&q("subscribe", "wrong")), Err(WebhookError::Forbidden));
        assert_eq!(ch.verify_webhook(&q("unsubscribe", "verifySECRET")), Err(WebhookError::Forbidden));
        assert!(matches!(ch.verify_webhook(&[]), Err(WebhookError::BadRequest(_))));
        assert_eq!(ch.webhook_path(), DEFAULT_WEBHOOK_PATH);
        let dbg = format!("{ch:?}");
        assert!(!dbg.contains("SECRET"), "{dbg}");
    }

    #[test]
    fn messages_normalise_and_the_rest_is_ignored() {
        let contacts = [json!({"profile": {"name": "Kerry"}, "wa_id": "16315551234"})];
        let m = json!({"from": "16315551234", "id": "wamid.A", "timestamp": "1603059201", "type": "text",
                       "text": {"body": "Hello"}, "context": {"from": "1555", "id": "wamid.Q"}});
        let msg = normalise(&key(), &m, &contacts).unwrap();
        assert_eq!(
            (msg.chat_id.as_str(), msg.sender_id.as_str(), msg.text.as_str()),
            ("16315551234", "16315551234", "Hello")
        );
        assert_eq!(msg.sender_name.as_deref(), Some("Kerry"));
        assert_eq!(msg.sent_at_ms, 1_603_059_201_000);
        assert_eq!(msg.reply_to.as_deref(), Some("wamid.Q"));
        assert_eq!(msg.chat_kind, ChatKind::Direct);
        let img = json!({"from": "1", "id": "wamid.B", "timestamp": "1", "type": "image",
                         "image": {"id": "777", "mime_type": "image/jpeg", "caption": "look"}});
        let msg = normalise(&key(), &img, &[]).unwrap();
        assert_eq!((msg.text.as_str(), msg.media[0].reference.as_str()), ("look", "777"));
        let bsuid = json!({"from_user_id": "US.1", "id": "wamid.C", "timestamp": "1", "type": "text", "text": {"body": "x"},
                           "group_id": "G1"});
        let msg = normalise(&key(), &bsuid, &[]).unwrap();
        assert_eq!((msg.sender_id.as_str(), msg.chat_id.as_str()), ("US.1", "group:G1"));
        for other in [
            json!({"from": "1", "id": "wamid.D", "timestamp": "1", "type": "reaction", "reaction": {"emoji": "👍"}}),
            json!({"from": "1", "id": "wamid.E", "timestamp": "1", "type": "unsupported", "errors": [{"code": 131051}]}),
            json!({"from": "1", "timestamp": "1", "type": "text", "text": {"body": "no id"}}),
            json!({"from": "1", "id": "wamid.F", "type": "text", "text": {"body": "  "}}),
        ] {
            assert!(normalise(&key(), &other, &[]).is_none(), "{other}");
        }
    }

    #[test]
    fn graph_errors_are_classified_by_code() {
        let e = |http: u16, code: i64| ApiError::Graph { http, code, message: "m".into(), retry_after: None };
        assert!(
            matches!(e(400, 130_429).to_send_error("1"), SendError::RetryAfter(d, _) if d == Duration::from_secs(1))
        );
        assert!(
            matches!(e(400, 131_056).to_send_error("1"), SendError::RetryAfter(d, _) if d == Duration::from_secs(6))
        );
        assert!(matches!(e(503, 2).to_send_error("1"), SendError::Transient(_)));
        assert!(matches!(e(401, 190).to_send_error("1"), SendError::Transient(t) if t.contains("accessToken")));
        assert!(matches!(e(400, 131_026).to_send_error("1"), SendError::Permanent(_)));
        assert!(matches!(e(400, 100).to_send_error("1"), SendError::Permanent(_)));
        match e(400, 131_047).to_send_error("4915") {
            SendError::Permanent(t) => {
                assert!(t.contains("24-hour") && t.contains("4915") && t.contains("not retried"))
            }
            other => panic!("{other:?}"),
        }
        assert!(matches!(ApiError::Network("x".into()).to_send_error("1"), SendError::Transient(_)));
    }

    #[test]
    fn config_errors_name_the_missing_key() {
        let build = |wa: Value| {
            let cfg =
                crate::config::accounts_from_value(&json!({"channels": {"whatsapp": wa}}), std::path::Path::new("/"))
                    .unwrap()
                    .remove(0);
            WhatsAppChannel::new(&cfg).map(|_| ()).unwrap_err().to_string()
        };
        let full = json!({"accessToken": "t", "appSecret": "a", "verifyToken": "v", "phoneNumberId": "1"});
        for (k, expect) in
            [("appSecret", "appSecret"), ("verifyToken", "verifyToken"), ("phoneNumberId", "phoneNumberId")]
        {
            let mut wa = full.clone();
            wa.as_object_mut().unwrap().remove(k);
            assert!(build(wa).contains(expect), "{k}");
        }
        let mut wa = full;
        wa["phoneNumberId"] = json!("+1 555 0100");
        assert!(build(wa).contains("numeric"));
    }
}
