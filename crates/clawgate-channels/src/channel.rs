//! The Channel trait (one platform account), the Ingress it feeds, and the liveness report.

use std::sync::{Arc, Mutex};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use async_trait::async_trait;
use serde::Serialize;
use tokio::sync::watch;
use tokio_util::sync::CancellationToken;

use crate::model::{AccountKey, Delivered, InboundMessage, OutboundMessage};

/// How a platform counts the length of a text message.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TextMeasure {
    /// UTF-16 code units (Telegram).
    Utf16,
    /// Unicode scalar values (Discord).
    Chars,
}

/// What a channel can do; the router and the outbox shape messages to fit.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Capabilities {
    /// Longest text message the platform accepts.
    pub max_text: usize,
    /// How `max_text` is counted.
    pub measure: TextMeasure,
    /// Longest caption on a file.
    pub max_caption: usize,
    /// Files above this many bytes go as documents rather than inline photos.
    pub max_photo_bytes: u64,
    /// Largest file the platform takes at all.
    pub max_upload_bytes: u64,
    /// Threads / forum topics are kept end to end.
    pub threads: bool,
    /// A typing indicator exists.
    pub typing: bool,
    /// How long one typing indicator lasts; the router repeats it while a turn runs.
    pub typing_interval: Duration,
}

/// Why a send did not happen.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum SendError {
    /// The platform asked us to wait (Telegram 429 `retry_after`, Discord 429 `retry_after`).
    #[error("rate limited; retry after {0:?}: {1}")]
    RetryAfter(Duration, String),
    /// Try again later with backoff (network error, 5xx, channel not connected).
    #[error("temporary failure: {0}")]
    Transient(String),
    /// Retrying cannot help (chat not found, bot blocked, message invalid); reported, not retried.
    #[error("permanent failure: {0}")]
    Permanent(String),
}

/// Why a channel's receive loop stopped.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ChannelError {
    /// The credentials were refused (Telegram 401, Discord close 4004): fix the config.
    #[error("{0}")]
    Unauthorized(String),
    /// The config of this account cannot work (what to change is in the message).
    #[error("{0}")]
    Config(String),
    /// Anything else the loop could not recover from.
    #[error("{0}")]
    Fatal(String),
}

/// How the ingress took a message.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Accepted {
    /// Recorded for the first time; it will be acted on.
    New,
    /// The same (channel, account, message id) was recorded before; dropped.
    Duplicate,
}

/// The ingress could not record a message; the adapter must not acknowledge it to the platform
/// (so the platform redelivers it) and should retry later.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("inbound message not recorded: {0}")]
pub struct IngressError(pub String);

/// Where adapters hand inbound messages. Implemented by the gateway core: `deliver` returns
/// once the message is durably recorded (or known to be a duplicate). Adapters acknowledge a
/// message to the platform (Telegram: the next `offset`; webhooks: the HTTP 200) only after
/// `deliver` returned `Ok`.
#[async_trait]
pub trait Ingress: Send + Sync {
    /// Record one inbound message.
    async fn deliver(&self, message: InboundMessage) -> Result<Accepted, IngressError>;

    /// Load a small durable value of this account (Telegram's update offset); `None` if unset.
    async fn load_state(&self, account: &AccountKey, key: &str) -> Option<String>;

    /// Store a small durable value of this account.
    async fn save_state(&self, account: &AccountKey, key: &str, value: &str) -> Result<(), IngressError>;
}

/// One platform account: receives into an [`Ingress`], sends what the outbox hands it.
#[async_trait]
pub trait Channel: Send + Sync + 'static {
    /// Which account this is.
    fn key(&self) -> &AccountKey;

    /// Limits and features.
    fn capabilities(&self) -> Capabilities;

    /// Liveness and counters.
    fn status(&self) -> &StatusCell;

    /// Receive until `cancel` fires. Reconnects and backs off by itself; returns an error only
    /// when retrying cannot help (bad token), which the gateway reports in `channels.status`.
    async fn run(&self, ingress: Arc<dyn Ingress>, cancel: CancellationToken) -> Result<(), ChannelError>;

    /// Send one message (a text chunk within [`Capabilities::max_text`], or one file). Returns
    /// only after the platform accepted it.
    async fn send(&self, message: &OutboundMessage) -> Result<Delivered, SendError>;

    /// Show "typing…" in a chat (and thread) once; best effort.
    async fn typing(&self, chat_id: &str, thread_id: Option<&str>) -> Result<(), SendError>;

    /// For accounts that take updates pushed over HTTP (Telegram webhook mode): the path on
    /// the gateway's own port they arrive on. `None` (the default): no webhook.
    fn webhook_path(&self) -> Option<String> {
        None
    }

    /// Handle one webhook POST: check its signature or secret, record its messages through
    /// `ingress`. The gateway answers 200 on `Ok`, so the platform does not redeliver.
    async fn handle_webhook(&self, request: WebhookRequest<'_>, ingress: &dyn Ingress) -> Result<(), WebhookError> {
        let _ = (request, ingress);
        Err(WebhookError::NotFound)
    }

    /// Every path this account takes webhook POSTs on: [`Channel::webhook_path`] (the default),
    /// plus any other the platform posts to (Slack: slash commands at their own URL).
    fn webhook_paths(&self) -> Vec<String> {
        self.webhook_path().into_iter().collect()
    }

    /// Answer a GET on [`Channel::webhook_path`]: a platform's verification handshake
    /// (WhatsApp's `hub.mode`/`hub.verify_token`/`hub.challenge`). `Ok` is the plain-text body
    /// of a 200. Default: no handshake (404).
    fn verify_webhook(&self, query: &[(String, String)]) -> Result<String, WebhookError> {
        let _ = query;
        Err(WebhookError::NotFound)
    }

    /// Largest webhook body this platform sends (default 1 MiB; WhatsApp: 3 MB).
    fn max_webhook_body(&self) -> usize {
        1024 * 1024
    }

    /// How the outbox retries this account's sends: `None` (the default) is the outbox's own
    /// policy; the webhook channel takes `maxAttempts` and its backoff from its config.
    fn retry_policy(&self) -> Option<RetryPolicy> {
        None
    }

    /// Whether every chunk of a reply names the inbound message it answers (`reply_to`), in
    /// direct chats too. Default false: platforms quote the replied-to message, which only helps
    /// in groups. The webhook channel's backend matches replies to requests by it.
    fn replies_name_their_message(&self) -> bool {
        false
    }

    /// The whole answer to a webhook POST, for platforms that choose its status and body (the
    /// webhook channel answers 202 with JSON, 200 for a replay). Default:
    /// [`Channel::webhook_reply`] as a `text/plain` 200.
    async fn webhook_respond(
        &self,
        request: WebhookRequest<'_>,
        ingress: &dyn Ingress,
    ) -> Result<WebhookReply, WebhookError> {
        Ok(match self.webhook_reply(request, ingress).await? {
            Some(text) => WebhookReply { status: 200, content_type: "text/plain; charset=utf-8", body: text },
            None => WebhookReply { status: 200, content_type: "text/plain; charset=utf-8", body: "ok".into() },
        })
    }

    /// [`Channel::handle_webhook`] for platforms whose 200 must carry a body (Slack answers its
    /// `url_verification` with the challenge): `Ok(Some(text))` is sent as a `text/plain` 200,
    /// `Ok(None)` as the usual one. Default: `handle_webhook`, no body.
    async fn webhook_reply(
        &self,
        request: WebhookRequest<'_>,
        ingress: &dyn Ingress,
    ) -> Result<Option<String>, WebhookError> {
        self.handle_webhook(request, ingress).await.map(|()| None)
    }
}

/// How many times, and how far apart, the outbox tries one message of an account.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RetryPolicy {
    /// Attempts in all (the first one included); after the last failure the row is failed
    /// (dead-lettered) with its last error.
    pub max_attempts: u32,
    /// The wait between attempts (a platform's `Retry-After` replaces it for that attempt).
    pub backoff: clawgate_backoff::Backoff,
}

/// A channel's whole answer to a webhook POST ([`Channel::webhook_respond`]).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct WebhookReply {
    /// The HTTP status (2xx or 4xx; errors the gateway counts go as [`WebhookError`]).
    pub status: u16,
    /// Its `Content-Type`.
    pub content_type: &'static str,
    /// The body.
    pub body: String,
}

/// A webhook POST as the gateway received it.
#[derive(Debug, Clone, Copy)]
pub struct WebhookRequest<'a> {
    /// Headers, names lowercase.
    pub headers: &'a [(String, String)],
    /// The raw body.
    pub body: &'a [u8],
}

impl WebhookRequest<'_> {
    /// The first value of a header (name matched case-insensitively).
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers.iter().find(|(k, _)| k.eq_ignore_ascii_case(name)).map(|(_, v)| v.as_str())
    }
}

/// Why a webhook POST was refused; each maps to one HTTP status.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum WebhookError {
    /// This account takes no webhooks (404).
    #[error("no webhook here")]
    NotFound,
    /// Missing or wrong secret / signature (401).
    #[error("webhook secret or signature missing or wrong")]
    Unauthorized,
    /// A verification handshake with a wrong token (403).
    #[error("webhook verification refused")]
    Forbidden,
    /// The body is not what the platform sends (400).
    #[error("malformed webhook body: {0}")]
    BadRequest(String),
    /// Could not record it now; the platform should retry (503).
    #[error("cannot take the update now: {0}")]
    Unavailable(String),
}

fn now_ms() -> i64 {
    SystemTime::now().duration_since(UNIX_EPOCH).map(|d| d.as_millis() as i64).unwrap_or(0)
}

/// What `channels.status` reports for one account.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct ChannelSnapshot {
    /// The receive path is up (long poll answering, gateway session READY).
    pub connected: bool,
    /// Sends may go out (the outbox is replayed only while this is true).
    pub ready: bool,
    /// Last time anything arrived from the platform: a poll answer, a heartbeat ACK, an event.
    /// This, not an open socket, is what says the channel is alive.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub last_received_at: Option<i64>,
    /// Last inbound chat message.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub last_inbound_at: Option<i64>,
    /// Last message the platform accepted from us.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub last_outbound_at: Option<i64>,
    /// Last error, in words.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub last_error: Option<String>,
    /// When `last_error` happened.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub last_error_at: Option<i64>,
    /// The bot's own user id / username once known (Telegram getMe, Discord READY).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub bot_id: Option<String>,
    /// The bot's username.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub bot_username: Option<String>,
    /// Reconnects since start.
    pub reconnects: u64,
    /// Inbound messages seen since start.
    pub inbound_count: u64,
    /// Messages sent since start.
    pub outbound_count: u64,
}

/// Shared, cheap-to-update liveness of one account. Adapters update it; the gateway reads
/// snapshots and waits on [`StatusCell::ready`] before replaying the outbox.
#[derive(Debug)]
pub struct StatusCell {
    inner: Mutex<ChannelSnapshot>,
    ready: watch::Sender<bool>,
}

impl Default for StatusCell {
    fn default() -> Self {
        Self::new()
    }
}

impl StatusCell {
    /// A channel that has not connected yet.
    pub fn new() -> Self {
        Self { inner: Mutex::new(ChannelSnapshot::default()), ready: watch::Sender::new(false) }
    }

    fn update(&self, f: impl FnOnce(&mut ChannelSnapshot)) {
        let mut g = self.inner.lock().unwrap_or_else(|p| p.into_inner());
        f(&mut g);
    }

    /// A copy of the current state.
    pub fn snapshot(&self) -> ChannelSnapshot {
        self.inner.lock().unwrap_or_else(|p| p.into_inner()).clone()
    }

    /// Watch readiness.
    pub fn ready(&self) -> watch::Receiver<bool> {
        self.ready.subscribe()
    }

    /// Is the channel ready to send?
    pub fn is_ready(&self) -> bool {
        *self.ready.borrow()
    }

    /// The receive path came up (and sending may start).
    pub fn mark_connected(&self) {
        let now = now_ms();
        self.update(|s| {
            s.connected = true;
            s.ready = true;
            s.last_received_at = Some(now);
        });
        self.ready.send_if_modified(|r| !std::mem::replace(r, true));
    }

    /// The receive path went down (reconnecting); sends wait.
    pub fn mark_disconnected(&self, error: Option<String>) {
        let now = now_ms();
        self.update(|s| {
            s.connected = false;
            s.ready = false;
            s.reconnects += 1;
            if let Some(e) = error {
                s.last_error = Some(e);
                s.last_error_at = Some(now);
            }
        });
        self.ready.send_if_modified(|r| std::mem::replace(r, false));
    }

    /// Something arrived from the platform (poll answer, heartbeat ACK).
    pub fn mark_received(&self) {
        let now = now_ms();
        self.update(|s| s.last_received_at = Some(now));
    }

    /// A chat message arrived.
    pub fn mark_inbound(&self) {
        let now = now_ms();
        self.update(|s| {
            s.last_received_at = Some(now);
            s.last_inbound_at = Some(now);
            s.inbound_count += 1;
        });
    }

    /// The platform accepted a message from us.
    pub fn mark_outbound(&self) {
        let now = now_ms();
        self.update(|s| {
            s.last_outbound_at = Some(now);
            s.outbound_count += 1;
        });
    }

    /// Record an error without changing connectivity.
    pub fn mark_error(&self, error: impl Into<String>) {
        let now = now_ms();
        let error = error.into();
        self.update(|s| {
            s.last_error = Some(error);
            s.last_error_at = Some(now);
        });
    }

    /// Remember the bot's identity.
    pub fn set_bot(&self, id: impl Into<String>, username: Option<String>) {
        let id = id.into();
        self.update(|s| {
            s.bot_id = Some(id);
            s.bot_username = username;
        });
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn readiness_follows_connectivity() {
        let s = StatusCell::new();
        let mut rx = s.ready();
        assert!(!*rx.borrow());
        s.mark_connected();
        rx.changed().await.unwrap();
        assert!(*rx.borrow());
        s.mark_disconnected(Some("boom".into()));
        assert!(!s.is_ready());
        let snap = s.snapshot();
        assert_eq!(snap.reconnects, 1);
        assert_eq!(snap.last_error.as_deref(), Some("boom"));
    }
}
