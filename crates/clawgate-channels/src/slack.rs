//! Slack: Socket Mode or the Events API over HTTP for receiving, the Web API for sending.
//!
//! `channels.slack.mode` picks how events arrive (contracts/slack.md):
//!
//! - `"socket"` (default): `apps.connections.open` with the app-level token (`xapp-…`) gives a
//!   one-time WebSocket URL; `hello` means connected; every envelope is acknowledged on the socket
//!   it came on, right after the ingress recorded its message (an envelope the ingress could not
//!   take is left unacknowledged, so Slack redelivers it). On a `disconnect` warning or refresh the
//!   new socket is opened (and its `hello` awaited) before the old one is let go, and the old one
//!   is still read and acknowledged until it closes; `link_disabled` stops the account with a
//!   message. Liveness is judged by what arrives, not by the socket being open: we ping every
//!   [`PING_EVERY`] and a socket silent for [`SILENT_LIMIT`] (no frame, no ping, no pong) is
//!   replaced ("no deaf sockets"). Reconnects back off with jitter.
//! - `"http"`: Slack POSTs to `webhookPath` on the gateway's port. The `v0` signature
//!   (HMAC-SHA256 of `v0:<timestamp>:<raw body>` with the signing secret) and the 5-minute
//!   timestamp window are checked, in constant time, before the body is parsed or logged;
//!   `url_verification` is answered with its challenge; events are recorded before the 200.
//!
//! Slash commands (a message starting with `/` never reaches an app as a message: Slack's
//! composer takes it) arrive as signed `application/x-www-form-urlencoded` POSTs at
//! `commandsPath` (default `/slack/commands`; the events URL takes them too) or as
//! `slash_commands` envelopes in Socket Mode. `/run x` becomes the message `/run x` from that
//! user in that conversation, recorded through the same ingress (so the same policies apply)
//! under the id `slash:<trigger_id>` (a replayed body runs once); Slack gets an empty 200 (or
//! the envelope's ack) once it is recorded, which shows the user nothing, and the command's reply
//! is posted with `chat.postMessage` like any other. Slack reserves some names (`/status`), so
//! `/clawgate <command> [args]` ([`UMBRELLA_COMMAND`]) reaches every command.
//!
//! Both paths feed the same normaliser: DMs (`im`), channels and group DMs with mention gating
//! (the bot's user id comes from `auth.test`, or the event's `authorizations`), replies in the
//! message's thread, messages from bots and non-text subtypes dropped, `&amp; &lt; &gt;`
//! decoded. The message id is `<channel>:<ts>`, so a retried delivery (same `event_id`) and the
//! `message` + `app_mention` pair Slack sends for one mention are recorded once.
//!
//! Sends use `chat.postMessage` (chunks of at most [`MAX_TEXT`] characters) and the v2 upload flow
//! for files (`files.getUploadURLExternal`, the upload URL, `files.completeUploadExternal`). A 429
//! becomes [`SendError::RetryAfter`] with Slack's `Retry-After`; `ok:false` errors are mapped to
//! rate limited, transient or permanent.

use std::fmt;
use std::sync::Arc;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use async_trait::async_trait;
use futures_util::{SinkExt as _, StreamExt as _};
use hmac::{Hmac, Mac};
use serde_json::{Value, json};
use sha2::Sha256;
use subtle::ConstantTimeEq as _;
use tokio::net::TcpStream;
use tokio::time::Instant;
use tokio_tungstenite::tungstenite::Message as WsMessage;
use tokio_tungstenite::{MaybeTlsStream, WebSocketStream};
use tokio_util::sync::CancellationToken;

use crate::channel::{
    Capabilities, Channel, ChannelError, Ingress, SendError, StatusCell, TextMeasure, WebhookError, WebhookRequest,
};
use crate::config::AccountConfig;
use crate::model::{AccountKey, ChatKind, Delivered, InboundMessage, MediaSource, OutboundMessage};
use clawgate_backoff::Backoff;

/// Longest `text` per message: Slack advises 4 000 characters (it truncates past 40 000).
pub const MAX_TEXT: usize = 4000;
/// Largest file uploaded (Slack's limit is 1 GB).
pub const MAX_UPLOAD_BYTES: u64 = 1024 * 1024 * 1024;
/// The Web API root.
pub const DEFAULT_API_ROOT: &str = "https://slack.com/api";
/// Where Events API requests arrive in HTTP mode (the default account; others add `/<id>`).
pub const DEFAULT_WEBHOOK_PATH: &str = "/slack/events";
/// Where slash commands arrive in HTTP mode (the default account; others add `/<id>`).
pub const DEFAULT_COMMANDS_PATH: &str = "/slack/commands";
/// The slash command that reaches every chat command: `/clawgate status` is `/status`, and a bare
/// `/clawgate` is `/help`. Slack keeps some names for its own commands (`/status` among them),
/// so an app cannot register those directly.
pub const UMBRELLA_COMMAND: &str = "/clawgate";
/// Message ids of slash commands: `slash:<trigger_id>`.
const SLASH_ID_PREFIX: &str = "slash:";
/// How far a request timestamp may be from now (Slack: 5 minutes).
pub const SIGNATURE_WINDOW_SECS: i64 = 300;
/// How often the adapter pings a Socket Mode socket.
pub const PING_EVERY: Duration = Duration::from_secs(5);
/// A socket from which nothing (frame, ping, pong) arrived for this long is replaced.
pub const SILENT_LIMIT: Duration = Duration::from_secs(12);
/// How long a new socket may take to say `hello`.
const HELLO_TIMEOUT: Duration = Duration::from_secs(10);
/// How long an old socket is still read after its replacement said `hello`.
const OLD_SOCKET_GRACE: Duration = Duration::from_secs(15);
/// Upper bound on one Web API request.
const REQUEST_TIMEOUT: Duration = Duration::from_secs(30);
/// Wait reported for an `ok:false` rate limit that came without `Retry-After`.
const DEFAULT_RETRY_AFTER: Duration = Duration::from_secs(1);
/// Reconnect and `auth.test` retry backoff.
const BACKOFF: Backoff = Backoff::new(Duration::from_secs(1), Duration::from_secs(60));
/// `apps.connections.open` / `auth.test` errors retrying cannot fix (the Node SDK's list, plus
/// revoked and expired tokens).
const UNRECOVERABLE: &[&str] = &[
    "not_authed",
    "invalid_auth",
    "account_inactive",
    "user_removed_from_team",
    "team_disabled",
    "token_revoked",
    "token_expired",
];
/// `ok:false` codes worth retrying later.
const TRANSIENT: &[&str] = &["internal_error", "fatal_error", "service_unavailable", "request_timeout"];
/// Message subtypes that still carry a person's text.
const USER_SUBTYPES: &[&str] = &["thread_broadcast", "file_share", "me_message"];

type HmacSha256 = Hmac<Sha256>;
type Socket = WebSocketStream<MaybeTlsStream<TcpStream>>;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Mode {
    Socket,
    Http,
}

/// One Slack app (workspace installation).
pub struct SlackChannel {
    key: AccountKey,
    mode: Mode,
    /// `xoxb-…`: every Web API call. Never logged.
    bot_token: String,
    /// `xapp-…`: only `apps.connections.open`. Never logged.
    app_token: Option<String>,
    /// HTTP mode: the key of the request signature. Never logged.
    signing_secret: Option<String>,
    /// `apiRoot` without a trailing slash (`https://slack.com/api`).
    api_root: String,
    /// HTTP mode: the path on the gateway's port.
    webhook_path: Option<String>,
    /// HTTP mode: the path slash commands are POSTed to (may equal `webhook_path`).
    commands_path: Option<String>,
    http: reqwest::Client,
    status: StatusCell,
    /// The bot's user id (`auth.test`), to spot mentions and our own messages.
    bot_user: std::sync::Mutex<Option<String>>,
}

impl fmt::Debug for SlackChannel {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("SlackChannel")
            .field("key", &self.key)
            .field("mode", &self.mode)
            .field("bot_token", &"<redacted>")
            .field("app_token", &self.app_token.as_ref().map(|_| "<redacted>"))
            .field("signing_secret", &self.signing_secret.as_ref().map(|_| "<redacted>"))
            .field("api_root", &self.api_root)
            .field("webhook_path", &self.webhook_path)
            .field("commands_path", &self.commands_path)
            .finish_non_exhaustive()
    }
}

/// Why a Web API call failed.
#[derive(Debug)]
enum ApiError {
    /// 429 with `Retry-After`, or `ok:false` `ratelimited` / `rate_limited`.
    RateLimited(Duration),
    /// `ok:false` with this code.
    Slack(String),
    /// A status other than 200 and 429.
    Status(u16),
    /// No answer (connect error, timeout, unreadable body).
    Network(String),
}

impl ApiError {
    fn describe(&self, method: &str) -> String {
        match self {
            ApiError::RateLimited(d) => format!("Slack {method}: rate limited for {d:?}"),
            ApiError::Slack(code) => format!("Slack {method}: {code}"),
            ApiError::Status(s) => format!("Slack {method}: HTTP {s}"),
            ApiError::Network(e) => format!("Slack {method}: {e}"),
        }
    }

    /// The one place Web API failures become [`SendError`]s.
    fn into_send_error(self, method: &str) -> SendError {
        let what = self.describe(method);
        match self {
            ApiError::RateLimited(d) => SendError::RetryAfter(d, what),
            ApiError::Slack(code) if TRANSIENT.contains(&code.as_str()) => SendError::Transient(what),
            ApiError::Slack(_) => SendError::Permanent(what),
            ApiError::Status(s) if s >= 500 || s == 408 => SendError::Transient(what),
            ApiError::Status(_) => SendError::Permanent(what),
            ApiError::Network(_) => SendError::Transient(what),
        }
    }
}

/// How a Socket Mode session ended.
enum Ended {
    Cancelled,
    LinkDisabled,
    Lost(String),
}

/// What one frame asks of the session.
enum FrameOutcome {
    Continue,
    Disconnect(String),
    Closed(String),
}

/// One open socket and when something last arrived on it.
struct Conn {
    ws: Socket,
    last_seen: Instant,
}

fn now_secs() -> i64 {
    SystemTime::now().duration_since(UNIX_EPOCH).map(|d| d.as_secs() as i64).unwrap_or(0)
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

/// Check Slack's `v0` request signature: the timestamp within [`SIGNATURE_WINDOW_SECS`] of `now`
/// (both directions) and `v0=` + hex(HMAC-SHA256(secret, `v0:<ts>:<body>`)) equal to the header,
/// compared in constant time.
pub fn verify_signature(secret: &str, timestamp: Option<&str>, signature: Option<&str>, body: &[u8], now: i64) -> bool {
    let (Some(ts), Some(sig)) = (timestamp, signature) else { return false };
    let Ok(at) = ts.trim().parse::<i64>() else { return false };
    if (now - at).abs() > SIGNATURE_WINDOW_SECS {
        return false;
    }
    let Ok(mut mac) = <HmacSha256 as Mac>::new_from_slice(secret.as_bytes()) else { return false };
    mac.update(b"v0:");
    mac.update(ts.trim().as_bytes());
    mac.update(b":");
    mac.update(body);
    let expected = format!("v0={}", hex(&mac.finalize().into_bytes()));
    expected.as_bytes().ct_eq(sig.trim().as_bytes()).into()
}

/// Slack's text escaping undone: `&lt;` `&gt;` `&amp;` (in that order, so `&amp;lt;` stays `&lt;`).
pub fn decode_entities(text: &str) -> String {
    text.replace("&lt;", "<").replace("&gt;", ">").replace("&amp;", "&")
}

/// Text we send: `&`, `<`, `>` escaped, as Slack asks for text that is not markup, except
/// Slack's own tokens (`<@U…>`, `<#C…>`, `<!here>`, `<https://…|label>`), which stay markup so
/// a reply can still mention someone or link.
pub fn escape_text(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    let mut rest = text;
    while let Some(c) = rest.chars().next() {
        if c == '<'
            && let Some(end) = rest.find('>')
            && is_slack_token(&rest[1..end])
        {
            out.push_str(&rest[..=end]);
            rest = &rest[end + 1..];
            continue;
        }
        match c {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            other => out.push(other),
        }
        rest = &rest[c.len_utf8()..];
    }
    out
}

/// The inside of `<…>` is one of Slack's control sequences (no spaces, no nested `<`).
fn is_slack_token(inner: &str) -> bool {
    let plain = !inner.is_empty() && !inner.contains('<') && !inner.contains(char::is_whitespace);
    let label_ok = inner.split_once('|').is_none_or(|(head, _)| !head.contains(char::is_whitespace));
    let head = inner.split('|').next().unwrap_or_default();
    let known = ["@", "#", "!"].iter().any(|p| head.starts_with(p))
        || ["http://", "https://", "mailto:"].iter().any(|p| head.starts_with(p));
    known && label_ok && (plain || (inner.contains('|') && !head.contains(char::is_whitespace)))
}

/// User ids mentioned as `<@U…>` or `<@U…|name>`.
fn mentioned_users(text: &str) -> Vec<String> {
    let mut out = Vec::new();
    let mut rest = text;
    while let Some(i) = rest.find("<@") {
        rest = &rest[i + 2..];
        let Some(end) = rest.find('>') else { break };
        let id = rest[..end].split('|').next().unwrap_or_default();
        if !id.is_empty() && id.chars().all(|c| c.is_ascii_alphanumeric()) && !out.iter().any(|o| o == id) {
            out.push(id.to_owned());
        }
        rest = &rest[end + 1..];
    }
    out
}

/// `<@BOT> /status` → `/status`: the mention that addresses the bot in a channel is not part
/// of what was said (commands must start the text). Other mentions stay.
fn strip_leading_mention(text: &str, bot_user: Option<&str>) -> String {
    let Some(bot) = bot_user else { return text.to_owned() };
    let t = text.trim_start();
    if let Some(rest) = t.strip_prefix("<@").and_then(|r| r.strip_prefix(bot))
        && (rest.starts_with('>') || rest.starts_with('|'))
        && let Some(end) = rest.find('>')
    {
        return rest[end + 1..].trim_start().to_owned();
    }
    text.to_owned()
}

/// Turn one Events API `event_callback` body into an inbound message; `None` for everything that
/// is not a person's text (other events, bots, edits, joins) or that lacks what a reply needs.
pub fn inbound_from_callback(key: &AccountKey, bot_user: Option<&str>, callback: &Value) -> Option<InboundMessage> {
    if callback["type"] != "event_callback" {
        return None;
    }
    let event = &callback["event"];
    let kind = event["type"].as_str()?;
    if kind != "message" && kind != "app_mention" {
        return None;
    }
    if let Some(subtype) = event["subtype"].as_str()
        && !USER_SUBTYPES.contains(&subtype)
    {
        return None;
    }
    // The app's own posts (and every other bot's) carry `bot_id`: answering them would loop.
    if event.get("bot_id").is_some_and(|b| !b.is_null()) {
        return None;
    }
    let user = event["user"].as_str().filter(|u| !u.is_empty())?;
    // Without an `auth.test` answer yet, the installation in the event names the bot.
    let from_event = callback["authorizations"]
        .as_array()
        .and_then(|a| a.iter().find(|x| x["is_bot"] == true))
        .and_then(|x| x["user_id"].as_str());
    let bot_user = bot_user.or(from_event);
    if bot_user == Some(user) {
        return None;
    }
    let channel = event["channel"].as_str().filter(|c| !c.is_empty())?;
    let ts = event["ts"].as_str().filter(|t| !t.is_empty())?;
    let raw = event["text"].as_str().unwrap_or_default();
    let mentions = mentioned_users(raw);
    let mentions_bot = bot_user.is_some_and(|b| mentions.iter().any(|m| m == b));
    let direct = match event["channel_type"].as_str() {
        Some(t) => t == "im",
        None => channel.starts_with('D'),
    };
    let thread_ts = event["thread_ts"].as_str().filter(|t| !t.is_empty());
    // In a channel every answer goes into the message's thread (a new one when it had none);
    // in a DM only when the user wrote in a thread.
    let thread_id = if direct { thread_ts.map(str::to_owned) } else { Some(thread_ts.unwrap_or(ts).to_owned()) };
    let sent_at_ms = ts.split('.').next().and_then(|s| s.parse::<i64>().ok()).unwrap_or(0) * 1000;
    let sender_name = event["user_profile"]["display_name"]
        .as_str()
        .filter(|s| !s.is_empty())
        .or_else(|| event["user_profile"]["real_name"].as_str())
        .map(str::to_owned);
    Some(InboundMessage {
        channel: key.channel.clone(),
        account: key.account.clone(),
        message_id: format!("{channel}:{ts}"),
        chat_id: channel.to_owned(),
        chat_kind: if direct { ChatKind::Direct } else { ChatKind::Group },
        chat_title: None,
        thread_id,
        space_id: callback["team_id"].as_str().map(str::to_owned),
        sender_id: user.to_owned(),
        sender_username: None,
        sender_name,
        sender_is_bot: false,
        text: decode_entities(&strip_leading_mention(raw, bot_user)),
        media: Vec::new(),
        reply_to: None,
        reply_to_bot: false,
        mentions,
        mentions_bot,
        sent_at_ms,
        session_key: None,
        context: None,
    })
}

/// One slash-command invocation: the fields of Slack's form POST, or of a Socket Mode
/// `slash_commands` payload (the same names). `response_url` is not kept: replies go through
/// `chat.postMessage` and the outbox like every other reply.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct SlashCommand {
    /// `/run`, as registered in the app.
    pub command: String,
    /// Everything after the command (Slack escapes `&`, `<`, `>`).
    pub text: String,
    /// Who invoked it.
    pub user_id: String,
    /// Their (deprecated, mutable) name: shown, never used for allowlists.
    pub user_name: Option<String>,
    /// The conversation it was typed in (`C…`, `G…`, `D…`).
    pub channel_id: String,
    /// `directmessage` for DMs, `mpdm-…` for group DMs, else the channel's name.
    pub channel_name: Option<String>,
    /// The workspace.
    pub team_id: Option<String>,
    /// Unique per invocation: the dedupe key.
    pub trigger_id: String,
}

impl SlashCommand {
    fn from_fields(get: impl Fn(&str) -> Option<String>) -> Self {
        let text = |k: &str| get(k).unwrap_or_default();
        let opt = |k: &str| get(k).filter(|v| !v.is_empty());
        Self {
            command: text("command"),
            text: text("text"),
            user_id: text("user_id"),
            user_name: opt("user_name"),
            channel_id: text("channel_id"),
            channel_name: opt("channel_name"),
            team_id: opt("team_id"),
            trigger_id: text("trigger_id"),
        }
    }

    /// From the `application/x-www-form-urlencoded` body Slack POSTs.
    pub fn from_form(body: &[u8]) -> Self {
        let pairs: Vec<(String, String)> = url::form_urlencoded::parse(body).into_owned().collect();
        Self::from_fields(|k| pairs.iter().find(|(name, _)| name == k).map(|(_, v)| v.clone()))
    }

    /// From the `payload` of a Socket Mode `slash_commands` envelope.
    pub fn from_payload(payload: &Value) -> Self {
        Self::from_fields(|k| payload[k].as_str().map(str::to_owned))
    }
}

/// What the agent and the command router read for a slash command: `<command> <text>`, and
/// for [`UMBRELLA_COMMAND`] the command named in its text.
fn slash_text(command: &str, text: &str) -> String {
    let text = decode_entities(text.trim());
    if command.eq_ignore_ascii_case(UMBRELLA_COMMAND) {
        let named = text.trim_start_matches('/');
        return if named.is_empty() { "/help".to_owned() } else { format!("/{named}") };
    }
    if text.is_empty() { command.to_owned() } else { format!("{command} {text}") }
}

/// Turn a slash command into the message it stands for, from that user in that conversation;
/// `Err` (what is missing) for an invocation that lacks what a reply or the dedupe needs.
///
/// A slash command is addressed to the app, so in a channel it counts as a mention. A DM reply
/// goes to the user id (`chat.postMessage` to `U…` lands in the app's DM with that user): the
/// command may have been typed in a DM between two people, where the app cannot post.
pub fn inbound_from_slash_command(key: &AccountKey, cmd: &SlashCommand) -> Result<InboundMessage, String> {
    let missing = [
        ("command", cmd.command.starts_with('/')),
        ("user_id", !cmd.user_id.is_empty()),
        ("channel_id", !cmd.channel_id.is_empty()),
        ("trigger_id", !cmd.trigger_id.is_empty()),
    ];
    if let Some((field, _)) = missing.iter().find(|(_, ok)| !ok) {
        return Err(format!("a slash command without {field}"));
    }
    let direct = cmd.channel_id.starts_with('D') || cmd.channel_name.as_deref() == Some("directmessage");
    let sent_at_ms = SystemTime::now().duration_since(UNIX_EPOCH).map(|d| d.as_millis() as i64).unwrap_or(0);
    Ok(InboundMessage {
        channel: key.channel.clone(),
        account: key.account.clone(),
        message_id: format!("{SLASH_ID_PREFIX}{}", cmd.trigger_id),
        chat_id: if direct { cmd.user_id.clone() } else { cmd.channel_id.clone() },
        chat_kind: if direct { ChatKind::Direct } else { ChatKind::Group },
        chat_title: None,
        thread_id: None,
        space_id: cmd.team_id.clone(),
        sender_id: cmd.user_id.clone(),
        sender_username: None,
        sender_name: cmd.user_name.clone(),
        sender_is_bot: false,
        text: slash_text(&cmd.command, &cmd.text),
        media: Vec::new(),
        reply_to: None,
        reply_to_bot: false,
        mentions: Vec::new(),
        mentions_bot: true,
        sent_at_ms,
        session_key: None,
        context: None,
    })
}

impl SlackChannel {
    /// Build the adapter from `channels.slack[.accounts.<id>]`. Needs `botToken`; Socket Mode
    /// (the default) needs `appToken` (`xapp-…`), HTTP mode `signingSecret`.
    pub fn new(config: &AccountConfig) -> Result<Self, ChannelError> {
        let path = if config.key.account == "default" {
            "channels.slack".to_owned()
        } else {
            format!("channels.slack.accounts.{}", config.key.account)
        };
        let bot_token = config.token.clone().filter(|t| !t.trim().is_empty()).ok_or_else(|| {
            ChannelError::Config(format!("{path}.botToken is not set; give the app's Bot User OAuth Token (xoxb-…)"))
        })?;
        let mode = match config.settings.mode.as_deref() {
            None | Some("socket") => Mode::Socket,
            Some("http") => Mode::Http,
            Some(other) => {
                return Err(ChannelError::Config(format!("{path}.mode \"{other}\" must be \"socket\" or \"http\"")));
            }
        };
        let app_token = config.settings.app_token.clone().filter(|t| !t.trim().is_empty());
        let signing_secret = config.settings.webhook_secret.clone().filter(|t| !t.trim().is_empty());
        match mode {
            Mode::Socket => match &app_token {
                None => {
                    return Err(ChannelError::Config(format!(
                        "{path}.appToken is not set; Socket Mode needs an app-level token (xapp-…, scope \
                         connections:write), or set mode: \"http\" with a signingSecret"
                    )));
                }
                Some(t) if !t.starts_with("xapp-") => {
                    return Err(ChannelError::Config(format!(
                        "{path}.appToken must be an app-level token starting with xapp-"
                    )));
                }
                Some(_) => {}
            },
            Mode::Http if signing_secret.is_none() => {
                return Err(ChannelError::Config(format!(
                    "{path}.signingSecret is not set; HTTP mode checks every request with the app's signing secret"
                )));
            }
            Mode::Http => {}
        }
        let api_root = config.settings.api_root.clone().unwrap_or_else(|| DEFAULT_API_ROOT.to_owned());
        if !(api_root.starts_with("http://") || api_root.starts_with("https://")) {
            return Err(ChannelError::Config(format!(
                "{path}.apiRoot \"{api_root}\" must start with http:// or https://"
            )));
        }
        let webhook_path = match mode {
            Mode::Socket => None,
            Mode::Http => {
                let p = config.settings.webhook_path.clone().unwrap_or_else(|| {
                    if config.key.account == "default" {
                        DEFAULT_WEBHOOK_PATH.to_owned()
                    } else {
                        format!("{DEFAULT_WEBHOOK_PATH}/{}", config.key.account)
                    }
                });
                if !p.starts_with('/') {
                    return Err(ChannelError::Config(format!("{path}.webhookPath \"{p}\" must start with /")));
                }
                Some(p)
            }
        };
        let commands_path = match mode {
            Mode::Socket => None,
            Mode::Http => {
                let p = config.settings.commands_path.clone().unwrap_or_else(|| {
                    if config.key.account == "default" {
                        DEFAULT_COMMANDS_PATH.to_owned()
                    } else {
                        format!("{DEFAULT_COMMANDS_PATH}/{}", config.key.account)
                    }
                });
                if !p.starts_with('/') {
                    return Err(ChannelError::Config(format!("{path}.commandsPath \"{p}\" must start with /")));
                }
                Some(p)
            }
        };
        if rustls::crypto::CryptoProvider::get_default().is_none() {
            let _ = rustls::crypto::aws_lc_rs::default_provider().install_default();
        }
        let http = reqwest::Client::builder()
            .timeout(REQUEST_TIMEOUT)
            .connect_timeout(Duration::from_secs(10))
            .build()
            .map_err(|e| ChannelError::Fatal(format!("cannot build the Slack HTTP client: {e}")))?;
        Ok(Self {
            key: config.key.clone(),
            mode,
            bot_token,
            app_token,
            signing_secret,
            api_root: api_root.trim_end_matches('/').to_owned(),
            webhook_path,
            commands_path,
            http,
            status: StatusCell::new(),
            bot_user: std::sync::Mutex::new(None),
        })
    }

    fn bot_user(&self) -> Option<String> {
        self.bot_user.lock().unwrap_or_else(|p| p.into_inner()).clone()
    }

    /// One Web API call: POST `body` (JSON, or a form when `form` is set) with `token`.
    async fn call(
        &self,
        method: &str,
        token: &str,
        body: Option<&Value>,
        form: Option<String>,
    ) -> Result<Value, ApiError> {
        let url = format!("{}/{method}", self.api_root);
        let mut req = self.http.post(url).bearer_auth(token);
        req = match (body, form) {
            (_, Some(form)) => req.header("content-type", "application/x-www-form-urlencoded").body(form),
            (Some(b), None) => req.header("content-type", "application/json; charset=utf-8").body(b.to_string()),
            (None, None) => req.header("content-type", "application/x-www-form-urlencoded"),
        };
        let resp = req.send().await.map_err(|e| ApiError::Network(e.without_url().to_string()))?;
        let status = resp.status().as_u16();
        if status == 429 {
            let wait = resp
                .headers()
                .get("retry-after")
                .and_then(|v| v.to_str().ok())
                .and_then(|v| v.trim().parse::<u64>().ok())
                .map(Duration::from_secs)
                .unwrap_or(DEFAULT_RETRY_AFTER);
            return Err(ApiError::RateLimited(wait));
        }
        if status != 200 {
            return Err(ApiError::Status(status));
        }
        let v: Value =
            resp.json().await.map_err(|e| ApiError::Network(format!("unreadable answer: {}", e.without_url())))?;
        if v["ok"] == true {
            return Ok(v);
        }
        let code = v["error"].as_str().unwrap_or("unknown_error").to_owned();
        if code == "ratelimited" || code == "rate_limited" {
            return Err(ApiError::RateLimited(DEFAULT_RETRY_AFTER));
        }
        Err(ApiError::Slack(code))
    }

    /// Calls `auth.test` once (`clawgate doctor`): the bot's user id and name, or why not.
    pub async fn probe(&self) -> Result<crate::probe::Identity, crate::probe::ProbeError> {
        use crate::probe::{Identity, ProbeError};
        match self.call("auth.test", &self.bot_token, None, None).await {
            Ok(v) => Ok(Identity {
                id: v["user_id"].as_str().unwrap_or_default().to_owned(),
                name: v["user"].as_str().map(str::to_owned),
            }),
            Err(ApiError::Slack(code)) if UNRECOVERABLE.contains(&code.as_str()) => Err(ProbeError::Rejected(format!(
                "Slack refused the bot token ({code}); check channels.slack.botToken"
            ))),
            Err(ApiError::Network(e)) => Err(ProbeError::Unreachable(format!("Slack API at {}: {e}", self.api_root))),
            Err(e) => Err(ProbeError::Failed(e.describe("auth.test"))),
        }
    }

    /// `auth.test` until it answers: the bot's user id. A refused token ends the account.
    async fn who_am_i(&self, cancel: &CancellationToken) -> Result<Option<()>, ChannelError> {
        let mut attempt = 0u32;
        loop {
            let result = tokio::select! {
                () = cancel.cancelled() => return Ok(None),
                r = self.call("auth.test", &self.bot_token, None, None) => r,
            };
            let wait = match result {
                Ok(v) => {
                    if let Some(id) = v["user_id"].as_str() {
                        *self.bot_user.lock().unwrap_or_else(|p| p.into_inner()) = Some(id.to_owned());
                        self.status.set_bot(id, v["user"].as_str().map(str::to_owned));
                    }
                    return Ok(Some(()));
                }
                Err(ApiError::Slack(code)) if UNRECOVERABLE.contains(&code.as_str()) => {
                    return Err(ChannelError::Unauthorized(format!(
                        "Slack refused the bot token ({code}); check channels.slack.botToken"
                    )));
                }
                Err(ApiError::RateLimited(d)) => d,
                Err(e) => {
                    tracing::warn!(account = %self.key, error = %e.describe("auth.test"), "slack: auth.test failed; retrying");
                    self.status.mark_error(e.describe("auth.test"));
                    BACKOFF.delay(attempt)
                }
            };
            attempt = attempt.saturating_add(1);
            tokio::select! {
                () = cancel.cancelled() => return Ok(None),
                () = tokio::time::sleep(wait) => {}
            }
        }
    }

    /// `apps.connections.open`, connect, and wait for `hello`.
    async fn open_socket(&self) -> Result<Socket, ApiError> {
        let token = self.app_token.as_deref().unwrap_or_default();
        let v = self.call("apps.connections.open", token, None, None).await?;
        let url = v["url"].as_str().ok_or_else(|| ApiError::Network("answer without a url".to_owned()))?;
        let (mut ws, _) = tokio::time::timeout(HELLO_TIMEOUT, tokio_tungstenite::connect_async(url))
            .await
            .map_err(|_| ApiError::Network("WebSocket connect timed out".to_owned()))?
            .map_err(|e| ApiError::Network(format!("WebSocket connect failed: {e}")))?;
        let deadline = Instant::now() + HELLO_TIMEOUT;
        loop {
            let frame = tokio::time::timeout_at(deadline, ws.next())
                .await
                .map_err(|_| ApiError::Network("no hello from Slack".to_owned()))?;
            match frame {
                Some(Ok(WsMessage::Text(text))) => {
                    let v: Value = serde_json::from_str(text.as_str()).unwrap_or(Value::Null);
                    if v["type"] == "hello" {
                        return Ok(ws);
                    }
                    return Err(ApiError::Network(format!("first frame was not hello but {}", v["type"])));
                }
                Some(Ok(WsMessage::Close(_))) | None => {
                    return Err(ApiError::Network("socket closed before hello".to_owned()));
                }
                Some(Ok(_)) => {}
                Some(Err(e)) => return Err(ApiError::Network(format!("socket failed before hello: {e}"))),
            }
        }
    }

    /// Hand one message to the ingress; `false` when it could not be recorded (not acked then).
    async fn record(&self, ingress: &dyn Ingress, message: InboundMessage) -> bool {
        match ingress.deliver(message).await {
            Ok(_) => {
                self.status.mark_inbound();
                true
            }
            Err(e) => {
                tracing::warn!(account = %self.key, error = %e, "slack: ingress refused a message; Slack will redeliver it");
                self.status.mark_error(e.to_string());
                false
            }
        }
    }

    /// Act on one frame of `conn`: record and acknowledge envelopes on that same socket.
    async fn on_frame(
        &self,
        conn: &mut Conn,
        frame: Option<Result<WsMessage, tokio_tungstenite::tungstenite::Error>>,
        ingress: &dyn Ingress,
    ) -> FrameOutcome {
        let text = match frame {
            None => return FrameOutcome::Closed("Slack closed the socket".to_owned()),
            Some(Err(e)) => return FrameOutcome::Closed(format!("socket failed: {e}")),
            Some(Ok(WsMessage::Close(f))) => {
                return FrameOutcome::Closed(format!(
                    "Slack closed the socket{}",
                    f.map(|f| format!(" ({})", u16::from(f.code))).unwrap_or_default()
                ));
            }
            Some(Ok(WsMessage::Text(t))) => t,
            Some(Ok(_)) => {
                conn.last_seen = Instant::now();
                self.status.mark_received();
                return FrameOutcome::Continue;
            }
        };
        conn.last_seen = Instant::now();
        self.status.mark_received();
        let Ok(v) = serde_json::from_str::<Value>(text.as_str()) else {
            tracing::warn!(account = %self.key, "slack: a Socket Mode frame is not JSON; ignored");
            return FrameOutcome::Continue;
        };
        match v["type"].as_str().unwrap_or_default() {
            "hello" => FrameOutcome::Continue,
            "disconnect" => FrameOutcome::Disconnect(v["reason"].as_str().unwrap_or("unknown").to_owned()),
            kind => {
                let Some(envelope_id) = v["envelope_id"].as_str() else { return FrameOutcome::Continue };
                let message = match kind {
                    "events_api" => inbound_from_callback(&self.key, self.bot_user().as_deref(), &v["payload"]),
                    "slash_commands" => {
                        match inbound_from_slash_command(&self.key, &SlashCommand::from_payload(&v["payload"])) {
                            Ok(m) => Some(m),
                            Err(why) => {
                                tracing::warn!(account = %self.key, %why, "slack: a slash command envelope ignored");
                                None
                            }
                        }
                    }
                    // Interactions are not handled; acking stops their retries.
                    _ => None,
                };
                if let Some(message) = message
                    && !self.record(ingress, message).await
                {
                    return FrameOutcome::Continue;
                }
                // An empty ack: Slack shows the invoker nothing; a command's reply is posted.
                let ack = json!({"envelope_id": envelope_id}).to_string();
                if let Err(e) = conn.ws.send(WsMessage::Text(ack.into())).await {
                    return FrameOutcome::Closed(format!("cannot acknowledge on the socket: {e}"));
                }
                FrameOutcome::Continue
            }
        }
    }

    /// Serve sockets until one is lost, Socket Mode is disabled, or `cancel` fires.
    async fn serve(&self, ws: Socket, ingress: &dyn Ingress, cancel: &CancellationToken) -> Ended {
        let mut current = Conn { ws, last_seen: Instant::now() };
        // The socket being replaced: still read (and acked on) until it closes or its grace ends.
        let mut old: Option<(Conn, Instant)> = None;
        let mut tick = tokio::time::interval(PING_EVERY);
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            tokio::select! {
                () = cancel.cancelled() => {
                    let _ = current.ws.close(None).await;
                    if let Some((mut o, _)) = old.take() {
                        let _ = o.ws.close(None).await;
                    }
                    return Ended::Cancelled;
                }
                _ = tick.tick() => {
                    let silent = current.last_seen.elapsed();
                    if silent > SILENT_LIMIT {
                        return Ended::Lost(format!("nothing from Slack for {}s; replacing the socket", silent.as_secs()));
                    }
                    if let Err(e) = current.ws.send(WsMessage::Ping(b"clawgate".to_vec().into())).await {
                        return Ended::Lost(format!("cannot ping the socket: {e}"));
                    }
                    if old.as_ref().is_some_and(|(_, until)| Instant::now() >= *until)
                        && let Some((mut o, _)) = old.take()
                    {
                        let _ = o.ws.close(None).await;
                    }
                }
                frame = current.ws.next() => {
                    match self.on_frame(&mut current, frame, ingress).await {
                        FrameOutcome::Continue => {}
                        FrameOutcome::Closed(why) => return Ended::Lost(why),
                        FrameOutcome::Disconnect(reason) if reason == "link_disabled" => return Ended::LinkDisabled,
                        FrameOutcome::Disconnect(reason) => {
                            tracing::info!(account = %self.key, %reason, "slack: disconnect asked; opening the next socket first");
                            let next = tokio::select! {
                                () = cancel.cancelled() => return Ended::Cancelled,
                                r = self.open_socket() => r,
                            };
                            match next {
                                Ok(ws) => {
                                    let previous = std::mem::replace(&mut current, Conn { ws, last_seen: Instant::now() });
                                    if let Some((mut o, _)) = old.replace((previous, Instant::now() + OLD_SOCKET_GRACE)) {
                                        let _ = o.ws.close(None).await;
                                    }
                                    self.status.mark_received();
                                }
                                Err(e) => {
                                    // Keep the old socket until it closes; the reconnect loop takes over then.
                                    tracing::warn!(account = %self.key, error = %e.describe("apps.connections.open"),
                                        "slack: cannot open the replacement socket yet");
                                    self.status.mark_error(e.describe("apps.connections.open"));
                                }
                            }
                        }
                    }
                }
                frame = async {
                    match old.as_mut() {
                        Some((o, _)) => o.ws.next().await,
                        None => std::future::pending().await,
                    }
                }, if old.is_some() => {
                    if let Some((o, _)) = old.as_mut() {
                        match self.on_frame(o, frame, ingress).await {
                            FrameOutcome::Continue | FrameOutcome::Disconnect(_) => {}
                            FrameOutcome::Closed(_) => old = None,
                        }
                    }
                }
            }
        }
    }

    async fn run_socket(&self, ingress: Arc<dyn Ingress>, cancel: CancellationToken) -> Result<(), ChannelError> {
        let mut attempt = 0u32;
        loop {
            let opened = tokio::select! {
                () = cancel.cancelled() => return Ok(()),
                r = self.open_socket() => r,
            };
            let wait = match opened {
                Ok(ws) => {
                    attempt = 0;
                    tracing::info!(account = %self.key, "slack: Socket Mode connected");
                    self.status.mark_connected();
                    match self.serve(ws, ingress.as_ref(), &cancel).await {
                        Ended::Cancelled => {
                            self.status.mark_disconnected(None);
                            return Ok(());
                        }
                        Ended::LinkDisabled => {
                            let msg = "Socket Mode is turned off for this Slack app (disconnect: link_disabled); turn \
                                       it on under Settings → Socket Mode, or use mode: \"http\""
                                .to_owned();
                            self.status.mark_disconnected(Some(msg.clone()));
                            return Err(ChannelError::Config(msg));
                        }
                        Ended::Lost(why) => {
                            tracing::warn!(account = %self.key, reason = %why, "slack: socket lost; reconnecting");
                            self.status.mark_disconnected(Some(why));
                            // Reconnect at once after a lost socket; back off only if that fails.
                            Duration::ZERO
                        }
                    }
                }
                Err(ApiError::Slack(code)) if UNRECOVERABLE.contains(&code.as_str()) => {
                    return Err(ChannelError::Unauthorized(format!(
                        "Slack refused the app-level token ({code}); check channels.slack.appToken"
                    )));
                }
                Err(ApiError::RateLimited(d)) => {
                    self.status.mark_error("apps.connections.open rate limited");
                    d
                }
                Err(e) => {
                    let what = e.describe("apps.connections.open");
                    tracing::warn!(account = %self.key, error = %what, "slack: cannot open a socket; backing off");
                    self.status.mark_error(what);
                    let d = BACKOFF.delay(attempt);
                    attempt = attempt.saturating_add(1);
                    d
                }
            };
            tokio::select! {
                () = cancel.cancelled() => return Ok(()),
                () = tokio::time::sleep(wait) => {}
            }
        }
    }

    /// A signed form POST: a slash command, recorded before the answer, which is an empty 200
    /// (Slack shows the invoker nothing; the reply is posted). An interaction payload (`payload=`)
    /// and Slack's certificate check of a command URL (`ssl_check=1`) are acknowledged and ignored.
    async fn slash_over_http(&self, body: &[u8], ingress: &dyn Ingress) -> Result<Option<String>, WebhookError> {
        self.status.mark_received();
        let cmd = SlashCommand::from_form(body);
        if cmd.command.is_empty()
            && url::form_urlencoded::parse(body).any(|(k, v)| k == "payload" || (k == "ssl_check" && v == "1"))
        {
            return Ok(Some(String::new()));
        }
        let message = inbound_from_slash_command(&self.key, &cmd).map_err(WebhookError::BadRequest)?;
        ingress.deliver(message).await.map_err(|e| WebhookError::Unavailable(e.to_string()))?;
        self.status.mark_inbound();
        Ok(Some(String::new()))
    }

    /// The v2 upload: get an upload URL, POST the bytes, complete into the chat (and thread).
    async fn upload(&self, message: &OutboundMessage, thread_ts: Option<&str>) -> Result<Delivered, SendError> {
        let Some(media) = &message.media else { return Err(SendError::Permanent("no file to upload".to_owned())) };
        let MediaSource::Path { path } = &media.source else {
            return Err(SendError::Permanent("only local files are uploaded".to_owned()));
        };
        let data = tokio::fs::read(path)
            .await
            .map_err(|e| SendError::Permanent(format!("cannot read {}: {e}", path.display())))?;
        if data.is_empty() || data.len() as u64 > MAX_UPLOAD_BYTES {
            return Err(SendError::Permanent(format!(
                "{} is {} bytes; Slack takes 1 byte to {MAX_UPLOAD_BYTES}",
                media.filename,
                data.len()
            )));
        }
        let form = url::form_urlencoded::Serializer::new(String::new())
            .append_pair("filename", &media.filename)
            .append_pair("length", &data.len().to_string())
            .finish();
        const GET_URL: &str = "files.getUploadURLExternal";
        let v = self.call(GET_URL, &self.bot_token, None, Some(form)).await.map_err(|e| e.into_send_error(GET_URL))?;
        let (Some(upload_url), Some(file_id)) = (v["upload_url"].as_str(), v["file_id"].as_str()) else {
            return Err(SendError::Transient(format!("Slack {GET_URL}: answer without upload_url or file_id")));
        };
        let resp = self
            .http
            .post(upload_url)
            .header("content-type", media.content_type.as_str())
            .body(data)
            .send()
            .await
            .map_err(|e| SendError::Transient(format!("Slack upload: {}", e.without_url())))?;
        if resp.status().as_u16() != 200 {
            return Err(SendError::Transient(format!("Slack upload: HTTP {}", resp.status().as_u16())));
        }
        let mut body = json!({"files": [{"id": file_id, "title": media.filename}], "channel_id": message.chat_id});
        if let Some(t) = thread_ts {
            body["thread_ts"] = json!(t);
        }
        if !message.text.trim().is_empty() {
            body["initial_comment"] = json!(escape_text(&message.text));
        }
        const COMPLETE: &str = "files.completeUploadExternal";
        self.call(COMPLETE, &self.bot_token, Some(&body), None).await.map_err(|e| e.into_send_error(COMPLETE))?;
        self.status.mark_outbound();
        Ok(Delivered { message_id: file_id.to_owned() })
    }
}

#[async_trait]
impl Channel for SlackChannel {
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
            // Bots have no typing indicator on the Events API.
            typing: false,
            typing_interval: Duration::from_secs(5),
        }
    }

    fn status(&self) -> &StatusCell {
        &self.status
    }

    async fn run(&self, ingress: Arc<dyn Ingress>, cancel: CancellationToken) -> Result<(), ChannelError> {
        if self.who_am_i(&cancel).await?.is_none() {
            return Ok(());
        }
        match self.mode {
            Mode::Socket => self.run_socket(ingress, cancel).await,
            Mode::Http => {
                // Events arrive through `webhook_reply`; Slack is reachable and the token good.
                self.status.mark_connected();
                cancel.cancelled().await;
                self.status.mark_disconnected(None);
                Ok(())
            }
        }
    }

    /// `chat.postMessage` into the chat, in the thread when there is one; a file by upload.
    async fn send(&self, message: &OutboundMessage) -> Result<Delivered, SendError> {
        // `reply_to` is `<channel>:<ts>` (our message ids): its ts roots a thread. A slash
        // command (`slash:<trigger_id>`) is no message, so there is nothing to thread under.
        let thread_ts = message.thread_id.clone().or_else(|| {
            message
                .reply_to
                .as_deref()
                .filter(|r| !r.starts_with(SLASH_ID_PREFIX))
                .and_then(|r| r.rsplit(':').next())
                .map(str::to_owned)
        });
        if message.media.as_ref().is_some_and(|m| matches!(m.source, MediaSource::Path { .. })) {
            return self.upload(message, thread_ts.as_deref()).await;
        }
        let mut text = message.text.clone();
        if let Some(m) = &message.media
            && let MediaSource::Url { url } = &m.source
        {
            text = if text.is_empty() { url.clone() } else { format!("{text}\n{url}") };
        }
        if text.trim().is_empty() {
            return Err(SendError::Permanent("nothing to send (empty text)".to_owned()));
        }
        let mut body = json!({"channel": message.chat_id, "text": escape_text(&text)});
        if let Some(t) = &thread_ts {
            body["thread_ts"] = json!(t);
        }
        const POST: &str = "chat.postMessage";
        let v = self.call(POST, &self.bot_token, Some(&body), None).await.map_err(|e| e.into_send_error(POST))?;
        self.status.mark_outbound();
        Ok(Delivered { message_id: v["ts"].as_str().unwrap_or_default().to_owned() })
    }

    async fn typing(&self, _chat_id: &str, _thread_id: Option<&str>) -> Result<(), SendError> {
        Ok(())
    }

    fn webhook_path(&self) -> Option<String> {
        self.webhook_path.clone()
    }

    /// The events path and the slash-commands path (HTTP mode).
    fn webhook_paths(&self) -> Vec<String> {
        let mut paths: Vec<String> = self.webhook_path.iter().chain(&self.commands_path).cloned().collect();
        paths.dedup();
        paths
    }

    async fn handle_webhook(&self, request: WebhookRequest<'_>, ingress: &dyn Ingress) -> Result<(), WebhookError> {
        self.webhook_reply(request, ingress).await.map(|_| ())
    }

    /// An Events API request or a slash command: signature first, then (by content type) the
    /// command's form, or `url_verification` or the event.
    async fn webhook_reply(
        &self,
        request: WebhookRequest<'_>,
        ingress: &dyn Ingress,
    ) -> Result<Option<String>, WebhookError> {
        let Some(secret) = self.signing_secret.as_deref().filter(|_| self.mode == Mode::Http) else {
            return Err(WebhookError::NotFound);
        };
        let ts = request.header("x-slack-request-timestamp");
        let sig = request.header("x-slack-signature");
        if !verify_signature(secret, ts, sig, request.body, now_secs()) {
            return Err(WebhookError::Unauthorized);
        }
        let form = request
            .header("content-type")
            .is_some_and(|ct| ct.trim_start().to_ascii_lowercase().starts_with("application/x-www-form-urlencoded"));
        if form {
            return self.slash_over_http(request.body, ingress).await;
        }
        let body: Value = serde_json::from_slice(request.body)
            .map_err(|_| WebhookError::BadRequest("the body is not JSON".to_owned()))?;
        match body["type"].as_str() {
            Some("url_verification") => {
                let challenge = body["challenge"]
                    .as_str()
                    .ok_or_else(|| WebhookError::BadRequest("url_verification without a challenge".to_owned()))?;
                Ok(Some(challenge.to_owned()))
            }
            Some("event_callback") => {
                self.status.mark_received();
                if let Some(retry) = request.header("x-slack-retry-num") {
                    tracing::debug!(account = %self.key, retry, reason = request.header("x-slack-retry-reason"),
                        event_id = body["event_id"].as_str(), "slack: a retried event (recorded once by its message id)");
                }
                let bot = self.bot_user();
                if let Some(message) = inbound_from_callback(&self.key, bot.as_deref(), &body) {
                    ingress.deliver(message).await.map_err(|e| WebhookError::Unavailable(e.to_string()))?;
                    self.status.mark_inbound();
                }
                Ok(None)
            }
            _ => Ok(None),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn key() -> AccountKey {
        AccountKey::new("slack", "default")
    }

    fn callback(event: Value) -> Value {
        json!({"type": "event_callback", "team_id": "T1", "event_id": "Ev1", "event": event,
               "authorizations": [{"user_id": "UBOT", "is_bot": true}]})
    }

    #[test]
    fn signature_is_checked_with_the_window_both_ways() {
        let body = b"token=xyzz0WbapA4vBCDEFasx0q6G&team_id=T1DC2JH3J&team_domain=testteamnow&channel_id=G8PSS9T3V&channel_name=foobar&user_id=U2CERLKJA&user_name=roadrunner&command=%2Fwebhook-collect&text=&response_url=https%3A%2F%2Fhooks.slack.com%2Fcommands%2FT1DC2JH3J%2F397700885554%2F96rGlfmibIGlgcZRskXaIFfN&trigger_id=398738663015.47445629121.803a0bc887a14d10d2c447fce8b6703c";
        let secret = "8f742231b10e8888abcd99yyyzzz85a5";
        let sig = "v0=a2114d57b48eac39b9ad189dd8316235a7b4a8d21a10bd27519666489c69b503";
        let at = 1_531_420_618;
        assert!(verify_signature(secret, Some("1531420618"), Some(sig), body, at));
        assert!(verify_signature(secret, Some("1531420618"), Some(sig), body, at + 300));
        assert!(!verify_signature(secret, Some("1531420618"), Some(sig), body, at + 301), "stale");
        assert!(!verify_signature(secret, Some("1531420618"), Some(sig), body, at - 301), "future");
        assert!(!verify_signature("other", Some("1531420618"), Some(sig), body, at));
        assert!(!verify_signature(secret, Some("1531420618"), Some("v0=00"), body, at));
        assert!(!verify_signature(secret, None, Some(sig), body, at));
        assert!(!verify_signature(secret, Some("1531420618"), None, body, at));
    }

    #[test]
    fn dm_channel_and_thread_messages_are_normalised() {
        let dm = callback(json!({"type": "message", "channel": "D1", "channel_type": "im", "user": "U1",
                                  "text": "a &amp; b &lt;c&gt;", "ts": "1700000000.000100"}));
        let m = inbound_from_callback(&key(), None, &dm).unwrap();
        assert_eq!(m.chat_kind, ChatKind::Direct);
        assert_eq!(m.text, "a & b <c>");
        assert_eq!(m.message_id, "D1:1700000000.000100");
        assert_eq!(m.thread_id, None);
        assert_eq!(m.sent_at_ms, 1_700_000_000_000);

        let ch = callback(json!({"type": "app_mention", "channel": "C1", "user": "U1",
                                  "text": "<@UBOT> hi", "ts": "1700000000.000200"}));
        let m = inbound_from_callback(&key(), None, &ch).unwrap();
        assert_eq!(m.text, "hi", "the addressing mention is not part of the text");
        assert_eq!(m.chat_kind, ChatKind::Group);
        assert!(m.mentions_bot, "the bot id comes from authorizations");
        assert_eq!(m.thread_id.as_deref(), Some("1700000000.000200"), "a channel reply opens a thread");

        let reply = callback(json!({"type": "message", "channel": "C1", "channel_type": "channel", "user": "U1",
                                     "text": "more", "ts": "1700000000.000300", "thread_ts": "1700000000.000200"}));
        let m = inbound_from_callback(&key(), Some("UBOT"), &reply).unwrap();
        assert_eq!(m.thread_id.as_deref(), Some("1700000000.000200"));
        assert!(!m.mentions_bot);
    }

    #[test]
    fn bots_edits_and_our_own_messages_are_dropped() {
        let base = json!({"type": "message", "channel": "C1", "user": "U1", "text": "x", "ts": "1.2"});
        let mut bot = base.clone();
        bot["bot_id"] = json!("B1");
        let mut edit = base.clone();
        edit["subtype"] = json!("message_changed");
        let mut own = base.clone();
        own["user"] = json!("UBOT");
        for e in [bot, edit, own] {
            assert!(inbound_from_callback(&key(), Some("UBOT"), &callback(e.clone())).is_none(), "{e}");
        }
        let mut broadcast = base;
        broadcast["subtype"] = json!("thread_broadcast");
        assert!(inbound_from_callback(&key(), Some("UBOT"), &callback(broadcast)).is_some());
    }

    #[test]
    fn outbound_text_is_escaped_but_slack_tokens_stay_markup() {
        assert_eq!(escape_text("a < b && c > d"), "a &lt; b &amp;&amp; c &gt; d");
        assert_eq!(
            escape_text("hi <@U1> see <https://x.y/z|the page> <!here>"),
            "hi <@U1> see <https://x.y/z|the page> <!here>"
        );
        assert_eq!(escape_text("<b>bold</b> <@U1"), "&lt;b&gt;bold&lt;/b&gt; &lt;@U1");
        assert_eq!(escape_text("é <#C1>"), "é <#C1>");
    }

    #[test]
    fn a_slash_command_is_the_message_it_stands_for() {
        let body = b"token=x&team_id=T1&team_domain=t&channel_id=C1&channel_name=general&user_id=U1&user_name=alice\
&command=%2Frun&text=invert+color%3D255+a+%26amp%3B+b&api_app_id=A1&is_enterprise_install=false\
&response_url=https%3A%2F%2Fhooks.slack.com%2Fcommands%2FT1%2F1%2Fx&trigger_id=13345224609.738474920.8088930838d88f008e0";
        let cmd = SlashCommand::from_form(body);
        assert_eq!(cmd.command, "/run");
        assert_eq!(cmd.user_name.as_deref(), Some("alice"));
        let m = inbound_from_slash_command(&key(), &cmd).unwrap();
        assert_eq!(m.text, "/run invert color=255 a & b");
        assert_eq!((m.chat_id.as_str(), m.chat_kind), ("C1", ChatKind::Group));
        assert_eq!(m.message_id, "slash:13345224609.738474920.8088930838d88f008e0");
        assert!(m.mentions_bot, "a slash command is addressed to the app");
        assert_eq!((m.thread_id, m.reply_to), (None, None));
        assert_eq!((m.sender_id.as_str(), m.sender_username), ("U1", None), "names never feed allowlists");
        assert_eq!(m.space_id.as_deref(), Some("T1"));

        // In a DM the reply goes to the user (the app's DM with them), whichever DM it was typed in.
        let dm = SlashCommand::from_payload(&json!({"command": "/help", "text": "", "user_id": "U2",
            "channel_id": "D9", "channel_name": "directmessage", "trigger_id": "1.2.3"}));
        let m = inbound_from_slash_command(&key(), &dm).unwrap();
        assert_eq!((m.chat_id.as_str(), m.chat_kind, m.text.as_str()), ("U2", ChatKind::Direct, "/help"));

        let mut no_trigger = dm.clone();
        no_trigger.trigger_id.clear();
        let e = inbound_from_slash_command(&key(), &no_trigger).unwrap_err();
        assert!(e.contains("trigger_id"), "{e}");
        let mut no_slash = dm;
        no_slash.command = "help".into();
        assert!(inbound_from_slash_command(&key(), &no_slash).is_err());
    }

    #[test]
    fn the_umbrella_command_names_the_command_in_its_text() {
        assert_eq!(slash_text("/clawgate", "status"), "/status");
        assert_eq!(slash_text("/clawgate", " status 12 "), "/status 12");
        assert_eq!(slash_text("/clawgate", "/jobs"), "/jobs");
        assert_eq!(slash_text("/clawgate", ""), "/help");
        assert_eq!(slash_text("/stop", ""), "/stop");
        assert_eq!(slash_text("/run", "x &lt;y&gt;"), "/run x <y>");
    }

    #[test]
    fn http_mode_takes_slash_commands_at_their_own_path_or_the_events_path() {
        let cfg = |v: Value| {
            crate::config::accounts_from_value(&json!({"channels": {"slack": v}}), std::path::Path::new("/")).unwrap()
        };
        let base = json!({"botToken": "xoxb-1", "mode": "http", "signingSecret": "s"});
        let ch = SlackChannel::new(&cfg(base.clone())[0]).unwrap();
        assert_eq!(ch.webhook_paths(), vec![DEFAULT_WEBHOOK_PATH.to_owned(), DEFAULT_COMMANDS_PATH.to_owned()]);
        let mut same = base.clone();
        same["commandsPath"] = json!("/slack/events");
        assert_eq!(SlackChannel::new(&cfg(same)[0]).unwrap().webhook_paths(), vec!["/slack/events".to_owned()]);
        let mut bad = base.clone();
        bad["commandsPath"] = json!("slack/commands");
        let e = SlackChannel::new(&cfg(bad)[0]).unwrap_err();
        assert!(matches!(&e, ChannelError::Config(m) if m.contains("commandsPath")), "{e}");
        let accounts = cfg(json!({"botToken": "xoxb-1", "mode": "http", "signingSecret": "s",
                                   "accounts": {"work": {}}}));
        let work = accounts.iter().find(|a| a.key.account == "work").unwrap();
        assert!(SlackChannel::new(work).unwrap().webhook_paths().contains(&"/slack/commands/work".to_owned()));
        let socket = SlackChannel::new(&cfg(json!({"botToken": "xoxb-1", "appToken": "xapp-1"}))[0]).unwrap();
        assert!(socket.webhook_paths().is_empty());
    }

    #[test]
    fn ok_false_errors_map_to_what_the_outbox_can_do() {
        assert!(
            matches!(ApiError::RateLimited(Duration::from_secs(3)).into_send_error("m"), SendError::RetryAfter(d, _) if d == Duration::from_secs(3))
        );
        assert!(matches!(ApiError::Slack("internal_error".into()).into_send_error("m"), SendError::Transient(_)));
        assert!(matches!(ApiError::Slack("channel_not_found".into()).into_send_error("m"), SendError::Permanent(_)));
        assert!(matches!(ApiError::Status(503).into_send_error("m"), SendError::Transient(_)));
        assert!(matches!(ApiError::Network("x".into()).into_send_error("m"), SendError::Transient(_)));
    }

    #[test]
    fn config_needs_the_token_of_its_mode_and_debug_hides_secrets() {
        let cfg = |v: Value| {
            crate::config::accounts_from_value(&json!({"channels": {"slack": v}}), std::path::Path::new("/")).unwrap()
        };
        let e = SlackChannel::new(&cfg(json!({"botToken": "xoxb-1"}))[0]).unwrap_err();
        assert!(matches!(&e, ChannelError::Config(m) if m.contains("channels.slack.appToken")), "{e}");
        let bad = json!({"channels": {"slack": {"botToken": "xoxb-1", "mode": "websocket"}}});
        let e = crate::config::accounts_from_value(&bad, std::path::Path::new("/")).unwrap_err();
        assert!(e.path.ends_with("slack.mode") && e.message.contains("\"socket\" or \"http\""), "{e}");
        let e = SlackChannel::new(&cfg(json!({"botToken": "xoxb-1", "mode": "http"}))[0]).unwrap_err();
        assert!(matches!(&e, ChannelError::Config(m) if m.contains("signingSecret")), "{e}");
        let ch = SlackChannel::new(&cfg(json!({"botToken": "xoxb-sekrit", "appToken": "xapp-sekrit"}))[0]).unwrap();
        assert_eq!(ch.webhook_path(), None);
        let dbg = format!("{ch:?}");
        assert!(!dbg.contains("sekrit"), "{dbg}");
        let ch = SlackChannel::new(
            &cfg(json!({"botToken": "xoxb-1", "mode": "http", "signingSecret": "sekrit-signing"}))[0],
        )
        .unwrap();
        assert_eq!(ch.webhook_path().as_deref(), Some(DEFAULT_WEBHOOK_PATH));
        assert!(!format!("{ch:?}").contains("sekrit"));
    }
}
