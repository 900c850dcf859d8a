//! Asking a platform who a configured account is, once, without starting it: `clawgate doctor`
//! uses this to tell a refused token from a platform it cannot reach. Each adapter has a
//! `probe` that makes its one identity call (Telegram `getMe`, Discord `GET /users/@me`, Slack
//! `auth.test`, LINE `GET /v2/bot/info`, WhatsApp `GET /{phone-number-id}`) through the same
//! request code it runs with. The webhook channel has no identity to ask for: its check is its
//! config and a connection to the backend's `outboundUrl`.

use crate::config::AccountConfig;
use crate::{ChannelError, discord, line, slack, telegram, webhook, whatsapp};

/// Who the platform says the credentials belong to.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Identity {
    /// The platform's id of the bot (or, for WhatsApp, the phone number id).
    pub id: String,
    /// The name people see: `@username`, the bot's name, or the display phone number.
    pub name: Option<String>,
}

/// Why a probe did not name the bot, sorted by what the operator does about it.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ProbeError {
    /// The platform refused the credentials: replace the token. The text names the key.
    #[error("{0}")]
    Rejected(String),
    /// The platform could not be reached (connect, timeout, TLS): the text says which.
    #[error("{0}")]
    Unreachable(String),
    /// The account's config cannot work (a missing or malformed setting).
    #[error("{0}")]
    Config(String),
    /// The platform answered, but not with the bot (an unexpected status or body).
    #[error("{0}")]
    Failed(String),
}

impl From<ChannelError> for ProbeError {
    fn from(e: ChannelError) -> Self {
        match e {
            ChannelError::Unauthorized(m) => ProbeError::Rejected(m),
            ChannelError::Config(m) => ProbeError::Config(m),
            ChannelError::Fatal(m) => ProbeError::Failed(m),
        }
    }
}

/// Builds the account's adapter (checking its config as the gateway would) and asks the
/// platform who it is. Must run inside a Tokio runtime (Discord's client needs one).
pub async fn probe_account(cfg: &AccountConfig) -> Result<Identity, ProbeError> {
    match cfg.key.channel.as_str() {
        "telegram" => telegram::TelegramChannel::new(cfg)?.probe().await,
        "discord" => discord::DiscordChannel::new(cfg)?.probe().await,
        "slack" => slack::SlackChannel::new(cfg)?.probe().await,
        "line" => line::LineChannel::new(cfg)?.probe().await,
        "whatsapp" => whatsapp::WhatsAppChannel::new(cfg)?.probe().await,
        "webhook" => webhook::WebhookChannel::new(cfg)?.probe().await,
        other => Err(ProbeError::Config(format!("channels.{other}: no identity check for this platform"))),
    }
}
