//! Discord (twilight-gateway + twilight-http).
//!
//! One shard receives over the Gateway; sends go over REST v10. Both endpoints are
//! configurable (`gatewayUrl`, `apiRoot` under `channels.discord`) so a fake can stand in.
//!
//! What twilight does for us, verified by `tests/discord.rs` against the fake: Identify, Resume
//! to READY's `resume_gateway_url` with the last sequence, heartbeating and zombie detection (no
//! message between two heartbeats drops the connection and resumes), op 7 Reconnect and op 9
//! Invalid Session (resume or re-identify), reconnect backoff (`2^(n-1)` s per failed attempt,
//! one shard so no herd to jitter against), and the end of the stream on a fatal close code.
//! What this adapter adds: turning close 4004 and the intent codes into a config error the
//! operator can act on, liveness in [`StatusCell`] (including the drop without a close frame,
//! which twilight reports only as a new Hello), normalising MESSAGE_CREATE, retrying a failed
//! ingress a few times (Discord cannot redeliver an event we already took), and bounding
//! twilight-http's 429 handling (see [`DiscordChannel::send`]).

use std::fmt;
use std::future::IntoFuture;
use std::sync::Arc;
use std::sync::atomic::{AtomicU32, AtomicU64, Ordering};
use std::time::{Duration, Instant};

use async_trait::async_trait;
use serde_json::{Value, json};
use tokio_util::sync::CancellationToken;
use twilight_gateway::{
    CloseFrame, ConfigBuilder, Event, EventTypeFlags, Intents, Shard, ShardId, StreamExt as _,
    error::ReceiveMessageErrorType,
};
use twilight_http::api_error::ApiError;
use twilight_http::error::ErrorType;
use twilight_http_ratelimiting::{Endpoint, Method};
use twilight_model::channel::message::{Message, MessageFlags, MessageReferenceType};
use twilight_model::http::attachment::Attachment;
use twilight_model::id::Id;
use twilight_model::id::marker::{ChannelMarker, MessageMarker, UserMarker};

use crate::channel::{Capabilities, Channel, ChannelError, Ingress, SendError, StatusCell, TextMeasure};
use crate::config::AccountConfig;
use crate::model::{AccountKey, ChatKind, Delivered, InboundMedia, InboundMessage, MediaSource, OutboundMessage};
use clawgate_backoff::Backoff;

/// Longest message content Discord accepts, in characters.
pub const MAX_TEXT: usize = 2000;
/// Discord's default per-file upload limit.
pub const MAX_UPLOAD_BYTES: u64 = 10 * 1024 * 1024;
/// What the gateway session asks for: guild and DM messages, with their content (the Message
/// Content intent is privileged: it must be enabled for the bot in the Developer Portal).
pub const INTENTS: Intents = Intents::GUILD_MESSAGES.union(Intents::DIRECT_MESSAGES).union(Intents::MESSAGE_CONTENT);

/// How many times one inbound message is offered to the ingress before it is given up.
const INGRESS_ATTEMPTS: u32 = 4;
/// The wait between those tries.
const INGRESS_BACKOFF: Backoff = Backoff::new(Duration::from_millis(250), Duration::from_secs(2));
/// Requests per send, counting retries twilight makes after a 429, before the send is handed
/// back to the outbox as [`SendError::RetryAfter`].
const MAX_REQUESTS_PER_SEND: u32 = 3;
/// Wait reported when a 429 left no bucket to read the reset from (global or unscoped limits).
const DEFAULT_RETRY_AFTER: Duration = Duration::from_secs(1);
/// Upper bound on one send, rate-limit waits included.
const SEND_DEADLINE: Duration = Duration::from_secs(30);
/// Events the receive loop deserialises; everything else is skipped unparsed. Close frames are
/// always delivered.
const WANTED: EventTypeFlags = EventTypeFlags::READY
    .union(EventTypeFlags::RESUMED)
    .union(EventTypeFlags::MESSAGE_CREATE)
    .union(EventTypeFlags::GATEWAY_HELLO)
    .union(EventTypeFlags::GATEWAY_HEARTBEAT_ACK)
    .union(EventTypeFlags::GATEWAY_INVALIDATE_SESSION)
    .union(EventTypeFlags::GATEWAY_RECONNECT);

/// One Discord bot account.
pub struct DiscordChannel {
    key: AccountKey,
    /// Never logged; `Debug` prints `<redacted>`.
    token: String,
    /// `gatewayUrl`: twilight's proxy URL (first connection and every re-identify; resumes go to
    /// READY's `resume_gateway_url`). `None`: Discord.
    gateway_url: Option<String>,
    /// `apiRoot`, as configured (for `Debug` and error messages).
    api_root: Option<String>,
    http: twilight_http::Client,
    status: StatusCell,
    /// The bot's user id from READY (or `/users/@me`); 0 until known. Used to drop our own
    /// messages and to spot mentions of and replies to the bot.
    bot_id: AtomicU64,
    /// DM channel per user, for `user:<id>` targets (Discord returns the same channel for a
    /// recipient every time, so it is asked once per process).
    dm_channels: std::sync::Mutex<std::collections::HashMap<Id<UserMarker>, Id<ChannelMarker>>>,
}

/// A send target that names a user instead of a channel: `user:<id>` is that user's DM channel
/// (how clawgate writes to an admin it has no conversation with yet).
pub const USER_TARGET_PREFIX: &str = "user:";

impl fmt::Debug for DiscordChannel {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("DiscordChannel")
            .field("key", &self.key)
            .field("token", &"<redacted>")
            .field("gateway_url", &self.gateway_url)
            .field("api_root", &self.api_root)
            .finish_non_exhaustive()
    }
}

/// `http://host:port[/api[/v10]]` → (`host:port`, plain HTTP?) for twilight-http's proxy.
fn parse_api_root(root: &str) -> Result<(String, bool), String> {
    let (use_http, rest) = if let Some(r) = root.strip_prefix("http://") {
        (true, r)
    } else if let Some(r) = root.strip_prefix("https://") {
        (false, r)
    } else {
        return Err(format!("apiRoot \"{root}\" must start with http:// or https://"));
    };
    let rest = rest.trim_end_matches('/');
    let (host, path) = rest.split_once('/').unwrap_or((rest, ""));
    if host.is_empty() || !matches!(path, "" | "api" | "api/v10") {
        return Err(format!(
            "apiRoot \"{root}\" must be a scheme and host like \"https://discord.com\" (the client adds /api/v10)"
        ));
    }
    Ok((host.to_owned(), use_http))
}

fn snowflake<M>(s: &str) -> Option<Id<M>> {
    s.trim().parse::<u64>().ok().and_then(Id::new_checked)
}

impl DiscordChannel {
    /// Build the adapter from `channels.discord[.accounts.<id>]`. Needs `token`; takes
    /// `gatewayUrl` (`ws://` or `wss://`) and `apiRoot` (`http(s)://host[:port]`). Must be called
    /// inside a Tokio runtime: twilight-http starts its rate limiter task here.
    pub fn new(config: &AccountConfig) -> Result<Self, ChannelError> {
        let path = if config.key.account == "default" {
            "channels.discord".to_owned()
        } else {
            format!("channels.discord.accounts.{}", config.key.account)
        };
        let token = config.token.clone().filter(|t| !t.trim().is_empty()).ok_or_else(|| {
            ChannelError::Config(format!("{path}.token is not set; give the bot token of the Discord application"))
        })?;
        let gateway_url = match config.settings.gateway_url.as_deref() {
            None => None,
            Some(u) if u.starts_with("ws://") || u.starts_with("wss://") => Some(u.trim_end_matches('/').to_owned()),
            Some(u) => {
                return Err(ChannelError::Config(format!("{path}.gatewayUrl \"{u}\" must start with ws:// or wss://")));
            }
        };
        let api_root = config.settings.api_root.clone();
        if tokio::runtime::Handle::try_current().is_err() {
            return Err(ChannelError::Fatal("the Discord channel must be created inside a Tokio runtime".to_owned()));
        }
        // rustls needs a process-wide crypto provider before twilight builds its TLS configs;
        // another crate of the binary may have installed one already, which is fine.
        if rustls::crypto::CryptoProvider::get_default().is_none() {
            let _ = rustls::crypto::aws_lc_rs::default_provider().install_default();
        }
        // twilight-http's rate limiter is kept: it reads the bucket headers, waits out an
        // exhausted bucket before sending, and on a 429 waits for the bucket reset and retries.
        // Without it a 429 is retried at once, in a loop. `send` bounds how long that may take.
        let mut http = twilight_http::Client::builder().token(token.clone());
        if let Some(root) = &api_root {
            let (host, use_http) = parse_api_root(root).map_err(|m| ChannelError::Config(format!("{path}.{m}")))?;
            http = http.proxy(host, use_http);
        }
        Ok(Self {
            key: config.key.clone(),
            token,
            gateway_url,
            api_root,
            http: http.build(),
            status: StatusCell::new(),
            bot_id: AtomicU64::new(0),
            dm_channels: std::sync::Mutex::new(std::collections::HashMap::new()),
        })
    }

    fn bot_id(&self) -> Option<Id<UserMarker>> {
        Id::new_checked(self.bot_id.load(Ordering::Relaxed))
    }

    /// Asks `GET /users/@me` once who the token belongs to (`clawgate doctor`): the bot's id
    /// and name, or why not.
    pub async fn probe(&self) -> Result<crate::probe::Identity, crate::probe::ProbeError> {
        use crate::probe::{Identity, ProbeError};
        let root = self.api_root.as_deref().unwrap_or("https://discord.com");
        match self.http.current_user().await {
            Ok(response) => {
                let me = response
                    .model()
                    .await
                    .map_err(|e| ProbeError::Failed(format!("/users/@me answered something unreadable: {e}")))?;
                Ok(Identity { id: me.id.to_string(), name: Some(me.name) })
            }
            Err(e) if is_unauthorized(&e) => Err(ProbeError::from(unauthorized())),
            Err(e) if matches!(e.kind(), ErrorType::RequestError | ErrorType::RequestTimedOut) => {
                Err(ProbeError::Unreachable(format!("Discord API at {root}: {e}")))
            }
            Err(e) => Err(ProbeError::Failed(format!("/users/@me: {e}"))),
        }
    }

    /// Ask `/users/@me` who we are: a refused token fails fast with a clear message instead of
    /// a gateway close; any other failure is left to the gateway.
    async fn check_token(&self) -> Result<(), ChannelError> {
        match self.http.current_user().await {
            Ok(response) => {
                if let Ok(me) = response.model().await {
                    self.bot_id.store(me.id.get(), Ordering::Relaxed);
                    self.status.set_bot(me.id.to_string(), Some(me.name));
                }
                Ok(())
            }
            Err(e) if is_unauthorized(&e) => Err(unauthorized()),
            Err(e) => {
                tracing::warn!(account = %self.key, error = %e, "discord: /users/@me failed; connecting anyway");
                Ok(())
            }
        }
    }

    /// Hand one message to the ingress, retrying a few times with backoff: the gateway has no
    /// redelivery, so a message the ingress never took is lost.
    async fn deliver(&self, ingress: &dyn Ingress, message: InboundMessage, cancel: &CancellationToken) {
        for attempt in 0..INGRESS_ATTEMPTS {
            match ingress.deliver(message.clone()).await {
                Ok(_) => {
                    self.status.mark_inbound();
                    return;
                }
                Err(e) => {
                    tracing::warn!(account = %self.key, message_id = %message.message_id, attempt, error = %e, "discord: ingress refused a message");
                    self.status.mark_error(format!("inbound message not recorded: {e}"));
                    if attempt + 1 < INGRESS_ATTEMPTS {
                        let wait = INGRESS_BACKOFF.delay(attempt);
                        tokio::select! {
                            () = cancel.cancelled() => break,
                            () = tokio::time::sleep(wait) => {}
                        }
                    }
                }
            }
        }
        tracing::error!(account = %self.key, message_id = %message.message_id, chat_id = %message.chat_id, "discord: inbound message dropped after retries");
    }

    /// Run `request`, letting twilight's rate limiter retry a 429 at most
    /// `MAX_REQUESTS_PER_SEND - 1` times and within [`SEND_DEADLINE`]; past that the outbox
    /// (which persists the message) does the waiting.
    /// The channel a send goes to: a channel id, or `user:<id>` for that user's DM channel
    /// (`POST /users/@me/channels`, remembered).
    async fn channel_for(&self, target: &str) -> Result<Id<ChannelMarker>, SendError> {
        let Some(user) = target.strip_prefix(USER_TARGET_PREFIX) else {
            return snowflake(target)
                .ok_or_else(|| SendError::Permanent(format!("\"{target}\" is not a Discord channel id")));
        };
        let user: Id<UserMarker> =
            snowflake(user).ok_or_else(|| SendError::Permanent(format!("\"{user}\" is not a Discord user id")))?;
        if let Some(c) = self.dm_channels.lock().unwrap_or_else(|p| p.into_inner()).get(&user) {
            return Ok(*c);
        }
        let request = self.http.create_private_channel(user).into_future();
        let endpoint = Endpoint { method: Method::Post, path: "users/@me/channels".to_owned() };
        let response = self.execute(request, endpoint).await?;
        let bytes = response
            .bytes()
            .await
            .map_err(|e| SendError::Transient(format!("discord: cannot read the DM channel: {e}")))?;
        let channel = serde_json::from_slice::<Value>(&bytes)
            .ok()
            .and_then(|v| v.get("id").and_then(Value::as_str).and_then(snowflake::<ChannelMarker>))
            .ok_or_else(|| SendError::Permanent("discord: the DM channel answer has no id".to_owned()))?;
        self.dm_channels.lock().unwrap_or_else(|p| p.into_inner()).insert(user, channel);
        Ok(channel)
    }

    async fn execute<T: Unpin>(
        &self,
        mut request: twilight_http::response::ResponseFuture<T>,
        endpoint: Endpoint,
    ) -> Result<twilight_http::Response<T>, SendError> {
        let requests = Arc::new(AtomicU32::new(0));
        let counter = Arc::clone(&requests);
        // The pre-flight check runs after every permit, so also before each retry of a 429.
        request.set_pre_flight(move || counter.fetch_add(1, Ordering::SeqCst) < MAX_REQUESTS_PER_SEND);
        match tokio::time::timeout(SEND_DEADLINE, request).await {
            Ok(Ok(response)) => Ok(response),
            Ok(Err(e)) if matches!(e.kind(), ErrorType::RequestCanceled) => Err(self.rate_limited(endpoint).await),
            Ok(Err(e)) => Err(map_http_error(&e)),
            Err(_) => Err(SendError::Transient(format!("Discord did not answer within {SEND_DEADLINE:?}"))),
        }
    }

    async fn rate_limited(&self, endpoint: Endpoint) -> SendError {
        let bucket = match self.http.ratelimiter() {
            Some(limiter) => limiter.bucket(endpoint).await,
            None => None,
        };
        let wait = bucket
            .filter(|b| b.remaining == 0)
            .map(|b| b.reset_at.saturating_duration_since(Instant::now()))
            .filter(|d| !d.is_zero())
            .unwrap_or(DEFAULT_RETRY_AFTER);
        SendError::RetryAfter(wait, "Discord rate limit (429)".to_owned())
    }
}

fn unauthorized() -> ChannelError {
    ChannelError::Unauthorized(
        "Discord refused the bot token (authentication failed); check channels.discord.token".to_owned(),
    )
}

fn is_unauthorized(e: &twilight_http::Error) -> bool {
    match e.kind() {
        ErrorType::Unauthorized => true,
        ErrorType::Response { status, .. } => status.get() == 401,
        _ => false,
    }
}

/// The one place twilight-http errors become [`SendError`]s.
fn map_http_error(e: &twilight_http::Error) -> SendError {
    match e.kind() {
        ErrorType::Response { status, error, .. } => {
            let status = status.get();
            match error {
                ApiError::Ratelimited(r) => SendError::RetryAfter(
                    Duration::try_from_secs_f64(r.retry_after).unwrap_or(DEFAULT_RETRY_AFTER),
                    format!("Discord rate limit: {}", r.message),
                ),
                _ if status == 401 => {
                    SendError::Permanent("Discord refused the bot token (401); check channels.discord.token".to_owned())
                }
                _ if status >= 500 => SendError::Transient(format!("Discord {status}: {error}")),
                ApiError::General(g) => SendError::Permanent(format!("Discord {status} ({}): {}", g.code, g.message)),
                _ => SendError::Permanent(format!("Discord {status}: {error}")),
            }
        }
        ErrorType::Unauthorized => {
            SendError::Permanent("Discord refused the bot token earlier; check channels.discord.token".to_owned())
        }
        ErrorType::RequestError | ErrorType::RequestTimedOut => {
            SendError::Transient(format!("Discord unreachable: {e}"))
        }
        // A body that is not Discord's JSON error shape is a proxy or load balancer page.
        ErrorType::Parsing { .. } => SendError::Transient(format!("Discord answered an unreadable error: {e}")),
        _ => SendError::Permanent(format!("Discord request failed: {e}")),
    }
}

/// The Create Message body. Sent as `payload_json` so twilight does not validate `content`
/// locally: Discord's own 50035 answer is what gets reported, the same as for any other
/// refusal. Mentions parse users only, never `@everyone`/`@here` or roles, whatever the model
/// wrote; replies do not ping the replied-to user.
fn create_message_body(message: &OutboundMessage, attachment: Option<&str>) -> Value {
    let mut content = message.text.clone();
    if let Some(MediaSource::Url { url }) = message.media.as_ref().map(|m| &m.source) {
        // Discord fetches nothing for us; a link unfurls into a preview instead.
        if !content.is_empty() {
            content.push('\n');
        }
        content.push_str(url);
    }
    let mut body = json!({
        "content": content,
        "allowed_mentions": {"parse": ["users"], "replied_user": false},
    });
    if let Some(reply_to) = &message.reply_to {
        body["message_reference"] = json!({"message_id": reply_to, "fail_if_not_exists": false});
    }
    if message.silent {
        body["flags"] = json!(MessageFlags::SUPPRESS_NOTIFICATIONS.bits());
    }
    if let Some(filename) = attachment {
        body["attachments"] = json!([{"id": 0, "filename": filename}]);
    }
    body
}

/// MESSAGE_CREATE → [`InboundMessage`]; `None` for the bot's own messages.
pub fn inbound_from_message(key: &AccountKey, m: &Message, bot_id: Option<Id<UserMarker>>) -> Option<InboundMessage> {
    if bot_id.is_some_and(|b| b == m.author.id) {
        return None;
    }
    let mentions: Vec<String> = m.mentions.iter().map(|u| u.id.to_string()).collect();
    let mentions_bot = bot_id.is_some_and(|b| {
        m.mentions.iter().any(|u| u.id == b)
            || m.content.contains(&format!("<@{b}>"))
            || m.content.contains(&format!("<@!{b}>"))
    });
    let is_reply = m.reference.as_ref().is_some_and(|r| r.kind == MessageReferenceType::Default);
    let reply_to = m.reference.as_ref().filter(|_| is_reply).and_then(|r| r.message_id).map(|id| id.to_string());
    let reply_to_bot = bot_id.is_some_and(|b| m.referenced_message.as_ref().is_some_and(|r| r.author.id == b));
    let voice = m.flags.is_some_and(|f| f.contains(MessageFlags::IS_VOICE_MESSAGE));
    let media = m
        .attachments
        .iter()
        .map(|a| {
            let ct = a.content_type.as_deref().unwrap_or_default();
            let kind = match ct.split('/').next().unwrap_or_default() {
                "image" => "photo",
                "video" => "video",
                "audio" if voice => "voice",
                "audio" => "audio",
                _ => "attachment",
            };
            InboundMedia {
                kind: kind.to_owned(),
                reference: a.url.clone(),
                filename: Some(a.filename.clone()),
                mime_type: a.content_type.clone(),
                size: Some(a.size),
            }
        })
        .collect();
    let sender_name = m
        .member
        .as_ref()
        .and_then(|mb| mb.nick.clone())
        .or_else(|| m.author.global_name.clone())
        .unwrap_or_else(|| m.author.name.clone());
    Some(InboundMessage {
        channel: key.channel.clone(),
        account: key.account.clone(),
        message_id: m.id.to_string(),
        chat_id: m.channel_id.to_string(),
        chat_kind: if m.guild_id.is_some() { ChatKind::Group } else { ChatKind::Direct },
        chat_title: None,
        // A thread is a channel of its own on Discord: `chat_id` already addresses it, and
        // whether a channel is a thread is not in the message (it needs a channel cache).
        thread_id: None,
        space_id: m.guild_id.map(|g| g.to_string()),
        sender_id: m.author.id.to_string(),
        sender_username: Some(m.author.name.clone()),
        sender_name: Some(sender_name),
        // Webhook posts carry a made-up author; they are not people either.
        sender_is_bot: m.author.bot || m.webhook_id.is_some(),
        text: m.content.clone(),
        media,
        reply_to,
        reply_to_bot,
        mentions,
        mentions_bot,
        sent_at_ms: m.timestamp.as_micros() / 1000,
        session_key: None,
        context: None,
    })
}

/// What a fatal gateway close means for the operator.
fn fatal_close(code: Option<u16>) -> ChannelError {
    match code {
        Some(4004) => unauthorized(),
        Some(4013) => {
            ChannelError::Config("Discord refused the gateway intents (close 4013 Invalid intents)".to_owned())
        }
        Some(4014) => ChannelError::Config(
            "Discord refused a privileged intent (close 4014): enable the Message Content intent for the bot in the \
             Discord Developer Portal (Bot → Privileged Gateway Intents)"
                .to_owned(),
        ),
        Some(4011) => ChannelError::Fatal(
            "Discord requires sharding for this bot (close 4011); it is in too many guilds for one shard".to_owned(),
        ),
        Some(code) => ChannelError::Fatal(format!("Discord closed the gateway for good (close {code})")),
        None => ChannelError::Fatal("the Discord gateway stream ended".to_owned()),
    }
}

#[async_trait]
impl Channel for DiscordChannel {
    fn key(&self) -> &AccountKey {
        &self.key
    }

    fn capabilities(&self) -> Capabilities {
        Capabilities {
            max_text: MAX_TEXT,
            measure: TextMeasure::Chars,
            max_caption: MAX_TEXT,
            max_photo_bytes: MAX_UPLOAD_BYTES,
            max_upload_bytes: MAX_UPLOAD_BYTES,
            threads: true,
            typing: true,
            // The indicator lasts 10 s; renewing at 8 s keeps it on without a gap.
            typing_interval: Duration::from_secs(8),
        }
    }

    fn status(&self) -> &StatusCell {
        &self.status
    }

    async fn run(&self, ingress: Arc<dyn Ingress>, cancel: CancellationToken) -> Result<(), ChannelError> {
        tokio::select! {
            () = cancel.cancelled() => return Ok(()),
            r = self.check_token() => r?,
        }
        let mut config = ConfigBuilder::new(self.token.clone(), INTENTS);
        if let Some(url) = &self.gateway_url {
            config = config.proxy_url(url.clone());
        }
        let mut shard = Shard::with_config(ShardId::ONE, config.build());
        // Whether the last thing we saw was READY/RESUMED without a close since.
        let mut connected = false;
        let mut last_close: Option<u16> = None;
        loop {
            let item = tokio::select! {
                () = cancel.cancelled() => {
                    // 1000 ends the session (the bot shows offline at once); wait briefly for
                    // the close handshake.
                    shard.close(CloseFrame::NORMAL);
                    let _ = tokio::time::timeout(Duration::from_secs(2), async {
                        while let Some(item) = shard.next_event(EventTypeFlags::empty()).await {
                            if matches!(item, Ok(Event::GatewayClose(_))) {
                                break;
                            }
                        }
                    })
                    .await;
                    if connected {
                        self.status.mark_disconnected(None);
                    }
                    return Ok(());
                }
                item = shard.next_event(WANTED) => item,
            };
            let event = match item {
                None => {
                    if connected {
                        self.status.mark_disconnected(None);
                    }
                    let error = fatal_close(last_close);
                    self.status.mark_error(error.to_string());
                    return Err(error);
                }
                Some(Err(e)) => {
                    match e.kind() {
                        ReceiveMessageErrorType::Reconnect => {
                            tracing::warn!(account = %self.key, error = %e, "discord: gateway connect failed; twilight retries with backoff");
                            self.status.mark_error(format!("gateway connect failed: {e}"));
                        }
                        _ => tracing::warn!(account = %self.key, error = %e, "discord: gateway message not understood"),
                    }
                    continue;
                }
                Some(Ok(event)) => event,
            };
            match event {
                Event::GatewayClose(frame) => {
                    let code = frame.map(|f| f.code);
                    last_close = code;
                    tracing::info!(account = %self.key, ?code, "discord: gateway connection closed");
                    if connected {
                        connected = false;
                        self.status.mark_disconnected(code.map(|c| format!("gateway closed ({c})")));
                    }
                    continue;
                }
                Event::GatewayHello(_) if connected => {
                    // A new connection without a close before it: the old one dropped (EOF),
                    // which twilight does not surface as an event.
                    connected = false;
                    self.status.mark_disconnected(Some("gateway connection dropped".to_owned()));
                }
                Event::Ready(ready) => {
                    self.bot_id.store(ready.user.id.get(), Ordering::Relaxed);
                    self.status.set_bot(ready.user.id.to_string(), Some(ready.user.name.clone()));
                    tracing::info!(account = %self.key, bot = %ready.user.name, "discord: gateway session ready");
                    connected = true;
                    self.status.mark_connected();
                }
                Event::Resumed => {
                    tracing::info!(account = %self.key, "discord: gateway session resumed");
                    connected = true;
                    self.status.mark_connected();
                }
                Event::GatewayInvalidateSession(resumable) => {
                    tracing::info!(account = %self.key, resumable, "discord: session invalidated");
                }
                Event::GatewayReconnect => tracing::info!(account = %self.key, "discord: gateway asked to reconnect"),
                Event::MessageCreate(m) => {
                    self.status.mark_received();
                    if let Some(message) = inbound_from_message(&self.key, &m, self.bot_id()) {
                        self.deliver(ingress.as_ref(), message, &cancel).await;
                    }
                    continue;
                }
                _ => {}
            }
            self.status.mark_received();
        }
    }

    /// `POST /channels/{id}/messages` (into the thread when `thread_id` is set: a Discord thread
    /// is a channel). Files go as multipart `files[0]`.
    async fn send(&self, message: &OutboundMessage) -> Result<Delivered, SendError> {
        let target = message.thread_id.as_deref().unwrap_or(&message.chat_id);
        let channel = self.channel_for(target).await?;
        if let Some(reply_to) = &message.reply_to
            && snowflake::<MessageMarker>(reply_to).is_none()
        {
            return Err(SendError::Permanent(format!("\"{reply_to}\" is not a Discord message id")));
        }
        let file = match &message.media {
            Some(media) => match &media.source {
                MediaSource::Path { path } => {
                    let data = tokio::fs::read(path)
                        .await
                        .map_err(|e| SendError::Permanent(format!("cannot read {}: {e}", path.display())))?;
                    if data.len() as u64 > MAX_UPLOAD_BYTES {
                        return Err(SendError::Permanent(format!(
                            "{} is {} bytes; Discord takes at most {MAX_UPLOAD_BYTES}",
                            media.filename,
                            data.len()
                        )));
                    }
                    Some(Attachment::from_bytes(media.filename.clone(), data, 0))
                }
                MediaSource::Url { .. } => None,
            },
            None => None,
        };
        let body = create_message_body(message, file.as_ref().map(|f| f.filename.as_str()));
        let body = serde_json::to_vec(&body).map_err(|e| SendError::Permanent(e.to_string()))?;
        let files: Vec<Attachment> = file.into_iter().collect();
        let request = self.http.create_message(channel).payload_json(&body).attachments(&files).into_future();
        let endpoint = Endpoint { method: Method::Post, path: format!("channels/{channel}/messages") };
        let response = self.execute(request, endpoint).await?;
        self.status.mark_outbound();
        // Discord created the message: a body we cannot read must not turn into a resend.
        let message_id = match response.bytes().await {
            Ok(bytes) => serde_json::from_slice::<Value>(&bytes)
                .ok()
                .and_then(|v| v.get("id").and_then(Value::as_str).map(str::to_owned))
                .unwrap_or_default(),
            Err(e) => {
                tracing::warn!(account = %self.key, error = %e, "discord: message sent but its id could not be read");
                String::new()
            }
        };
        Ok(Delivered { message_id })
    }

    async fn typing(&self, chat_id: &str, thread_id: Option<&str>) -> Result<(), SendError> {
        let target = thread_id.unwrap_or(chat_id);
        let channel = self.channel_for(target).await?;
        let request = self.http.create_typing_trigger(channel).into_future();
        let endpoint = Endpoint { method: Method::Post, path: format!("channels/{channel}/typing") };
        self.execute(request, endpoint).await.map(|_| ())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::OutboundMedia;

    #[test]
    fn api_root_takes_a_host_and_an_optional_api_path() {
        assert_eq!(parse_api_root("http://127.0.0.1:8080"), Ok(("127.0.0.1:8080".into(), true)));
        assert_eq!(parse_api_root("https://discord.com/api/v10/"), Ok(("discord.com".into(), false)));
        assert!(parse_api_root("discord.com").is_err());
        assert!(parse_api_root("https://example.com/proxy/discord").is_err());
    }

    #[test]
    fn body_never_pings_everyone_and_replies_do_not_fail_on_deleted_targets() {
        let mut m = OutboundMessage::text("1", None, "hi @everyone");
        m.reply_to = Some("42".into());
        m.silent = true;
        let body = create_message_body(&m, None);
        assert_eq!(body["allowed_mentions"], json!({"parse": ["users"], "replied_user": false}));
        assert_eq!(body["message_reference"], json!({"message_id": "42", "fail_if_not_exists": false}));
        assert_eq!(body["flags"], json!(1 << 12));
        m.media = Some(OutboundMedia {
            filename: "cat.png".into(),
            content_type: "image/png".into(),
            source: MediaSource::Url { url: "https://e.x/cat.png".into() },
            size: None,
            force_document: false,
        });
        assert_eq!(create_message_body(&m, None)["content"], "hi @everyone\nhttps://e.x/cat.png");
        assert_eq!(create_message_body(&m, Some("a.png"))["attachments"], json!([{"id": 0, "filename": "a.png"}]));
    }

    #[tokio::test]
    async fn debug_does_not_print_the_token() {
        let root = json!({"channels": {"discord": {"token": "sekrit-token-value", "apiRoot": "http://127.0.0.1:9"}}});
        let cfg = crate::config::accounts_from_value(&root, std::path::Path::new("/")).unwrap();
        let ch = DiscordChannel::new(&cfg[0]).unwrap();
        let dbg = format!("{ch:?}");
        assert!(!dbg.contains("sekrit"), "{dbg}");
        assert!(dbg.contains("<redacted>"));
    }

    #[test]
    fn missing_token_and_bad_urls_are_config_errors_naming_the_key() {
        let cfg = |v: Value| {
            crate::config::accounts_from_value(&json!({"channels": {"discord": v}}), std::path::Path::new("/")).unwrap()
        };
        let e = DiscordChannel::new(&cfg(json!({}))[0]).unwrap_err();
        assert!(matches!(&e, ChannelError::Config(m) if m.contains("channels.discord.token")), "{e}");
        let e = DiscordChannel::new(&cfg(json!({"token": "t", "gatewayUrl": "http://x"}))[0]).unwrap_err();
        assert!(matches!(&e, ChannelError::Config(m) if m.contains("gatewayUrl")), "{e}");
    }
}
