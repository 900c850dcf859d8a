//! `channels.status`, `channels.start|stop|logout`, `channels.pairing.list|approve|dismiss` and
//! `send`: params and results (schema `Channels*Params`/`Channels*Result`, `SendParams`).
//!
//! Params ignore unknown fields and read a field of the wrong type as absent, as the
//! hand-written readers did; the handler refuses what is missing with upstream's wording
//! (`invalid send params: must have required property 'to'`).

use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};

use super::lenient;

/// `channels.status {probe?, timeoutMs?, channel?}`.
#[derive(Debug, Clone, Default, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct ChannelsStatusParams {
    /// Probe the platforms first (clawgate's status is always live; accepted and ignored).
    #[serde(default, deserialize_with = "lenient::any")]
    pub probe: Option<bool>,
    /// The probe's bound (ignored, as `probe`).
    #[serde(default, deserialize_with = "lenient::any")]
    pub timeout_ms: Option<u64>,
    /// Only this channel.
    #[serde(default, deserialize_with = "lenient::any")]
    pub channel: Option<String>,
}

/// `channels.status` → the channel snapshot (`ts`, `channelOrder`, `channelLabels`, `channels`,
/// `channelAccounts`, `channelDefaultAccountId`, …). The snapshot is built by the channel
/// service (the same one `hello-ok` and `status` carry); typing it is that service's step, so it
/// is carried as a JSON object here.
#[derive(Debug, Clone, Default, PartialEq, Serialize)]
#[serde(transparent)]
pub struct ChannelsStatusResult(pub Map<String, Value>);

/// `channels.start|stop|logout {channel, accountId?}` (schema `ChannelsStartParams`,
/// `ChannelsStopParams`, `ChannelsLogoutParams`: closed objects with `channel` required). New
/// methods, so they refuse what upstream refuses: a missing `channel`, an unknown field.
#[derive(Debug, Clone, Default, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct ChannelAccountParams {
    /// The channel (`telegram`, `discord`, `slack`, `line`, `whatsapp`).
    pub channel: String,
    /// One account of it; absent (or blank): every account of the channel.
    #[serde(default)]
    pub account_id: Option<String>,
}

/// `channels.start {channel, accountId?}`.
pub type ChannelsStartParams = ChannelAccountParams;
/// `channels.stop {channel, accountId?}`.
pub type ChannelsStopParams = ChannelAccountParams;
/// `channels.logout {channel, accountId?}`.
pub type ChannelsLogoutParams = ChannelAccountParams;

/// Why an operator holds an account stopped.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "camelCase")]
pub enum ChannelHold {
    /// `channels.stop`: until `channels.start` or the gateway's next start.
    Stopped,
    /// `channels.logout`: until `channels.start`, across restarts.
    LoggedOut,
}

/// One account after `channels.start|stop|logout`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct ChannelAccountState {
    /// The account.
    pub account_id: String,
    /// Its receive loop runs.
    pub running: bool,
    /// Why an operator holds it stopped (absent: no hold).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub held: Option<ChannelHold>,
    /// When it last started (ms), if ever in this process.
    pub last_start_at: Option<i64>,
    /// When it last stopped (ms), if ever in this process.
    pub last_stop_at: Option<i64>,
}

/// `channels.start|stop|logout` → `{channel, accountId?, running, accounts[], started? |
/// stopped? | cleared?}`. Upstream's schema has no result for these; the shape keeps upstream's
/// `{channel, accountId, started|stopped|cleared}` fields and adds each affected account's
/// state (a call without `accountId` covers every account of the channel).
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct ChannelsControlResult {
    /// The channel.
    pub channel: String,
    /// The account the call named (absent: it named none, and `accounts` lists them all).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub account_id: Option<String>,
    /// Whether every affected account runs now.
    pub running: bool,
    /// `channels.start`: every affected account runs.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub started: Option<bool>,
    /// `channels.stop`: no affected account runs.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub stopped: Option<bool>,
    /// `channels.logout`: some session state was there and is now forgotten.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub cleared: Option<bool>,
    /// Each affected account.
    pub accounts: Vec<ChannelAccountState>,
}

/// `channels.pairing.list {channel?, accountId?}`.
#[derive(Debug, Clone, Default, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct ChannelsPairingListParams {
    /// Only this channel.
    #[serde(default, deserialize_with = "lenient::any")]
    pub channel: Option<String>,
    /// Only this account.
    #[serde(default, deserialize_with = "lenient::any")]
    pub account_id: Option<String>,
}

/// An account that can pair senders.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct PairingAccount {
    /// The channel.
    pub channel: String,
    /// Its label (`Telegram`).
    pub channel_label: String,
    /// The account.
    pub account_id: String,
    /// Whether an approved sender can be told.
    pub notify_supported: bool,
}

/// What a pairing request knows of its chat.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct PairingRequestMetadata {
    /// The chat the sender wrote from.
    pub chat_id: String,
}

/// A sender waiting for approval (`requestId` is the code they were given).
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct ChannelPairingRequest {
    /// The pairing code.
    pub request_id: String,
    /// The channel.
    pub channel: String,
    /// Its label.
    pub channel_label: String,
    /// The account.
    pub account_id: String,
    /// The sender.
    pub sender_id: String,
    /// The sender's name, else their id.
    pub sender_label: String,
    /// Where they wrote from.
    pub metadata: PairingRequestMetadata,
    /// When they asked (RFC 3339).
    pub created_at: String,
    /// When they were last seen (RFC 3339).
    pub last_seen_at: String,
    /// When the code expires (RFC 3339).
    pub expires_at: String,
    /// Whether they can be told once approved.
    pub notify_supported: bool,
}

/// The bounds of channel pairing.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct PairingLimits {
    /// Most pending requests per account.
    pub pending_per_account: u64,
    /// How long a code lives.
    pub ttl_ms: i64,
}

/// `channels.pairing.list` → `{accounts, requests, commandOwnerConfigured, limits}`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct ChannelsPairingListResult {
    /// The running accounts.
    pub accounts: Vec<PairingAccount>,
    /// The pending requests.
    pub requests: Vec<ChannelPairingRequest>,
    /// Whether a command owner is configured (clawgate has none: `false`).
    pub command_owner_configured: bool,
    /// The bounds.
    pub limits: PairingLimits,
}

/// `channels.pairing.approve {channel, accountId, requestId, notify?, bootstrapCommandOwner?}`
/// (the last only changes the scope the call needs).
#[derive(Debug, Clone, Default, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct ChannelsPairingApproveParams {
    /// The channel (required by the handler).
    #[serde(default, deserialize_with = "lenient::any")]
    pub channel: Option<String>,
    /// The account (required by the handler).
    #[serde(default, deserialize_with = "lenient::any")]
    pub account_id: Option<String>,
    /// The pairing code (required by the handler).
    #[serde(default, deserialize_with = "lenient::any")]
    pub request_id: Option<String>,
    /// Tell the sender through the channel.
    #[serde(default, deserialize_with = "lenient::any")]
    pub notify: Option<bool>,
}

/// `channels.pairing.dismiss {channel, accountId, requestId}`.
#[derive(Debug, Clone, Default, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct ChannelsPairingDismissParams {
    /// The channel (required by the handler).
    #[serde(default, deserialize_with = "lenient::any")]
    pub channel: Option<String>,
    /// The account (required by the handler).
    #[serde(default, deserialize_with = "lenient::any")]
    pub account_id: Option<String>,
    /// The pairing code (required by the handler).
    #[serde(default, deserialize_with = "lenient::any")]
    pub request_id: Option<String>,
}

/// Whether the approved sender was told.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum PairingNotification {
    /// Not asked for.
    NotRequested,
    /// Queued to the channel.
    Sent,
    /// The channel could not take it.
    Failed,
}

/// What became of `bootstrapCommandOwner` (clawgate has no command owner).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum CommandOwnerBootstrap {
    /// Not asked for (always, for now).
    NotRequested,
}

/// `channels.pairing.approve` → `{requestId, senderId, notification, commandOwnerBootstrap}`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct ChannelsPairingApproveResult {
    /// The code.
    pub request_id: String,
    /// The approved sender.
    pub sender_id: String,
    /// Whether they were told.
    pub notification: PairingNotification,
    /// Always [`CommandOwnerBootstrap::NotRequested`].
    pub command_owner_bootstrap: CommandOwnerBootstrap,
}

/// `channels.pairing.dismiss` → `{requestId, senderId}`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct ChannelsPairingDismissResult {
    /// The code.
    pub request_id: String,
    /// The dismissed sender.
    pub sender_id: String,
}

/// `send {to, idempotencyKey, message?, mediaUrl?, mediaUrls?, contentType?, channel?,
/// accountId?, threadId?, replyToId?, silent?, forceDocument?, timeoutMs?}` (schema
/// `SendParams`; its other fields are ignored).
#[derive(Debug, Clone, Default, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct SendParams {
    /// The chat (`<channel>:<chat>` picks the channel; required by the handler).
    #[serde(default, deserialize_with = "lenient::any")]
    pub to: Option<String>,
    /// Makes a repeated send a no-op (required by the handler).
    #[serde(default, deserialize_with = "lenient::any")]
    pub idempotency_key: Option<String>,
    /// The text.
    #[serde(default, deserialize_with = "lenient::any")]
    pub message: Option<String>,
    /// One media URL.
    #[serde(default, deserialize_with = "lenient::any")]
    pub media_url: Option<String>,
    /// Media URLs (when `mediaUrl` is absent).
    #[serde(default, deserialize_with = "lenient::strings")]
    pub media_urls: Option<Vec<String>>,
    /// The media's type (default `application/octet-stream`).
    #[serde(default, deserialize_with = "lenient::any")]
    pub content_type: Option<String>,
    /// The channel (when `to` does not say it and several run).
    #[serde(default, deserialize_with = "lenient::any")]
    pub channel: Option<String>,
    /// The channel account (default `default`).
    #[serde(default, deserialize_with = "lenient::any")]
    pub account_id: Option<String>,
    /// The thread, a string or a number.
    #[serde(default, deserialize_with = "lenient::id")]
    pub thread_id: Option<String>,
    /// The message the first part replies to.
    #[serde(default, deserialize_with = "lenient::any")]
    pub reply_to_id: Option<String>,
    /// Send without a notification.
    #[serde(default, deserialize_with = "lenient::any")]
    pub silent: Option<bool>,
    /// Send media as a document.
    #[serde(default, deserialize_with = "lenient::any")]
    pub force_document: Option<bool>,
    /// How long to wait for the platform (default 10 s, at most 120 s).
    #[serde(default, deserialize_with = "lenient::any")]
    pub timeout_ms: Option<u64>,
}

/// Where a sent message stands.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum SendStatus {
    /// The platform accepted every part.
    Sent,
    /// Still in the outbox when the wait ended.
    Queued,
}

/// `send` → `{runId, channel, chatId, status, messageId?}`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct SendResult {
    /// The idempotency key.
    pub run_id: String,
    /// The channel used.
    pub channel: String,
    /// The chat.
    pub chat_id: String,
    /// Where it stands.
    pub status: SendStatus,
    /// The platform's id of the last part, once sent.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub message_id: Option<String>,
}
