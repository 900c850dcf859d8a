//! Normalised messages: what every platform's adapter turns its updates into, and what the
//! outbox hands back to it to send.

use std::fmt;
use std::path::PathBuf;

use serde::{Deserialize, Serialize};

/// One configured account of one platform: `telegram/default`, `discord/work`.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
pub struct AccountKey {
    /// Platform id: `telegram`, `discord`, `webchat`, …
    pub channel: String,
    /// Account id within the platform (`default` when the config has no `accounts`).
    pub account: String,
}

impl AccountKey {
    /// Build a key.
    pub fn new(channel: impl Into<String>, account: impl Into<String>) -> Self {
        Self { channel: channel.into(), account: account.into() }
    }
}

impl fmt::Display for AccountKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}/{}", self.channel, self.account)
    }
}

/// What kind of conversation a message arrived in.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum ChatKind {
    /// A one-to-one conversation with the bot.
    Direct,
    /// A group, supergroup, guild channel or thread with several people.
    Group,
    /// A broadcast channel (Telegram channel posts).
    Channel,
}

/// A file attached to an inbound message (not downloaded; the reference is kept).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct InboundMedia {
    /// `photo`, `document`, `audio`, `video`, `voice`, `sticker`, `attachment`.
    pub kind: String,
    /// Platform file reference (Telegram `file_id`, Discord attachment URL).
    pub reference: String,
    /// File name, when the platform gives one.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub filename: Option<String>,
    /// MIME type, when the platform gives one.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub mime_type: Option<String>,
    /// Size in bytes, when the platform gives one.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub size: Option<u64>,
}

/// One message a platform delivered to the bot, normalised.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct InboundMessage {
    /// Platform id (`telegram`, `discord`, …).
    pub channel: String,
    /// Account id within the platform.
    pub account: String,
    /// The platform's message id. Unique per (channel, account) together with `chat_id` on
    /// platforms whose ids are per chat: adapters make this string unique per account (Telegram:
    /// `<chat_id>:<message_id>`; Discord snowflakes are global).
    pub message_id: String,
    /// Conversation id to reply into (Telegram chat id, Discord channel id).
    pub chat_id: String,
    /// Direct, group or channel.
    pub chat_kind: ChatKind,
    /// Conversation title, for logs and session labels.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub chat_title: Option<String>,
    /// Thread / forum topic id (Telegram `message_thread_id`, Discord thread id); replies go to it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub thread_id: Option<String>,
    /// Enclosing space (Discord guild id); `None` on platforms without one.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub space_id: Option<String>,
    /// Sender's stable platform user id.
    pub sender_id: String,
    /// Sender's @username, without the `@`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub sender_username: Option<String>,
    /// Sender's display name.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub sender_name: Option<String>,
    /// The sender is a bot (never answered, to avoid bot loops).
    #[serde(default)]
    pub sender_is_bot: bool,
    /// Text (or caption), with the bot mention left in place.
    pub text: String,
    /// Attached files.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub media: Vec<InboundMedia>,
    /// Platform id of the message this one replies to.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub reply_to: Option<String>,
    /// The replied-to message was the bot's own (counts as addressing the bot in groups).
    #[serde(default)]
    pub reply_to_bot: bool,
    /// User ids mentioned in the message.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub mentions: Vec<String>,
    /// The bot itself was mentioned (or a command was addressed to it, `/cmd@botname`).
    #[serde(default)]
    pub mentions_bot: bool,
    /// When the platform says the message was sent (Unix ms).
    pub sent_at_ms: i64,
    /// The session the sender chose (the webhook channel's `sessionKey`); `None`: the chat's
    /// own session.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub session_key: Option<String>,
    /// Data the sender attached for the model (the webhook channel's `context`), kept with the
    /// message as written.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub context: Option<serde_json::Value>,
}

impl InboundMessage {
    /// The account this message arrived on.
    pub fn account_key(&self) -> AccountKey {
        AccountKey::new(&self.channel, &self.account)
    }

    /// The message addresses the bot: a DM, a mention, or a reply to the bot.
    pub fn addresses_bot(&self) -> bool {
        self.chat_kind == ChatKind::Direct || self.mentions_bot || self.reply_to_bot
    }
}

/// Where a file to send comes from.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", tag = "kind")]
pub enum MediaSource {
    /// A local file (written by the gateway, e.g. a ComfyUI output).
    Path {
        /// Absolute path.
        path: PathBuf,
    },
    /// A URL the platform (or the adapter) fetches.
    Url {
        /// The URL.
        url: String,
    },
}

/// A file to send.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct OutboundMedia {
    /// File name shown to the recipient.
    pub filename: String,
    /// MIME type (`image/png`, …).
    pub content_type: String,
    /// Where the bytes are.
    pub source: MediaSource,
    /// Size in bytes when known (decides Telegram photo vs document).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub size: Option<u64>,
    /// Send as a file, never as an inline photo.
    #[serde(default)]
    pub force_document: bool,
}

/// One platform message to send: a text chunk within the platform's limit, or one file with
/// an optional caption. The outbox stores these one per row; [`crate::chunk`] splits long
/// replies before they are queued.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct OutboundMessage {
    /// Conversation to send into.
    pub chat_id: String,
    /// Thread / forum topic to send into.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub thread_id: Option<String>,
    /// Platform message id to reply to.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub reply_to: Option<String>,
    /// Text (or the caption when `media` is set).
    #[serde(default)]
    pub text: String,
    /// A file to send.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub media: Option<OutboundMedia>,
    /// Send without a notification.
    #[serde(default)]
    pub silent: bool,
    /// The kind of chat it goes to, when the reply answers a message (the webhook channel
    /// tells its backend).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub chat_kind: Option<ChatKind>,
    /// The user it answers (the sender of `reply_to`), when known.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub to: Option<String>,
    /// A key that stays the same for every attempt to send this one message (the outbox sets it
    /// from its row); platforms with idempotent sends use it so a retry after a lost answer is
    /// not delivered twice (LINE `X-Line-Retry-Key`). Not stored: the outbox fills it per send.
    #[serde(default, skip_serializing)]
    pub retry_key: Option<String>,
}

impl OutboundMessage {
    /// A text message into a chat (and thread).
    pub fn text(chat_id: impl Into<String>, thread_id: Option<String>, text: impl Into<String>) -> Self {
        Self {
            chat_id: chat_id.into(),
            thread_id,
            reply_to: None,
            text: text.into(),
            media: None,
            silent: false,
            chat_kind: None,
            to: None,
            retry_key: None,
        }
    }
}

/// What the platform answered when it accepted a send.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Delivered {
    /// The platform's id of the message it created.
    pub message_id: String,
}
