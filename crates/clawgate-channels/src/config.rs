//! `channels.<name>` config, shaped like OpenClaw's: top-level keys are the `default` account;
//! `accounts.<id>` entries inherit them and override what they set.
//!
//! ```json5
//! channels: {
//!   telegram: {
//!     botToken: { env: "TELEGRAM_BOT_TOKEN" },
//!     dmPolicy: "pairing",          // pairing | allowlist | open | disabled
//!     allowFrom: ["123456789", "@alice"],
//!     groupPolicy: "allowlist",     // open | allowlist | disabled
//!     groups: { "-1001234567890": { requireMention: true } },
//!   },
//!   discord: { token: { env: "DISCORD_BOT_TOKEN" }, guilds: { "81384788765712384": { channels: { "*": {} } } } },
//! }
//! ```

use std::collections::BTreeMap;
use std::path::Path;

use clawgate_config::{ChannelAccount, ChannelSection, ChannelsSection, Config, ConfigError, GroupSection, Secret};
use serde_json::{Map, Value};

use crate::model::AccountKey;

pub use clawgate_config::{DmPolicy, GroupPolicy};

/// Rules for one group (Telegram chat id) or guild (Discord), and its channels.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct GroupRule {
    /// `enabled: false` (or Discord `allow: false`) silences it.
    pub enabled: bool,
    /// Answer only when mentioned; `None` inherits.
    pub require_mention: Option<bool>,
    /// Senders allowed here; `None` inherits `groupAllowFrom`.
    pub allow_from: Option<Vec<String>>,
    /// Per-channel rules inside a guild (Discord `channels`), or per-topic (Telegram `topics`).
    pub channels: BTreeMap<String, GroupRule>,
}

/// Per-sender and per-chat inbound limits (messages per minute); 0 disables a limit.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RateLimits {
    /// Messages one sender may send per minute.
    pub per_sender_per_minute: u32,
    /// Messages one chat may send per minute.
    pub per_chat_per_minute: u32,
}

impl Default for RateLimits {
    fn default() -> Self {
        Self { per_sender_per_minute: 20, per_chat_per_minute: 60 }
    }
}

/// The platform settings of one account, merged and resolved. Empty strings count as unset.
#[derive(Clone, Default, PartialEq)]
pub struct AccountSettings {
    /// The agent that answers; `None`: the default agent.
    pub agent: Option<String>,
    /// The platform API root.
    pub api_root: Option<String>,
    /// Telegram: the public webhook URL (webhook mode when set).
    pub webhook_url: Option<String>,
    /// The secret webhook requests are checked with (Telegram `webhookSecret`, LINE
    /// `channelSecret`), resolved. Never logged.
    pub webhook_secret: Option<String>,
    /// Telegram, LINE: the local webhook path (the webhook channel's `path`).
    pub webhook_path: Option<String>,
    /// Telegram: long-poll timeout in seconds.
    pub poll_timeout_seconds: Option<u64>,
    /// Discord: the gateway WebSocket URL.
    pub gateway_url: Option<String>,
    /// WhatsApp: the app secret webhooks are signed with, resolved. Never logged.
    pub app_secret: Option<String>,
    /// WhatsApp: the verify token of the GET handshake, resolved. Never logged.
    pub verify_token: Option<String>,
    /// WhatsApp: the business phone number id.
    pub phone_number_id: Option<String>,
    /// WhatsApp: the Graph API version (`v24.0`).
    pub api_version: Option<String>,
    /// Slack: `socket` or `http` (`None`: socket).
    pub mode: Option<String>,
    /// Slack: the app-level token (`xapp-…`), resolved. Never logged.
    pub app_token: Option<String>,
    /// Slack, HTTP mode: the local path slash commands are POSTed to.
    pub commands_path: Option<String>,
    /// Webhook channel: where replies are POSTed.
    pub outbound_url: Option<String>,
    /// Webhook channel: delivery attempts of one reply before it is dead-lettered.
    pub max_attempts: Option<u32>,
    /// Webhook channel: the first retry's wait, in ms.
    pub retry_base_ms: Option<u64>,
    /// Webhook channel: the longest wait between attempts, in ms.
    pub retry_max_ms: Option<u64>,
    /// Webhook channel: the longest text of one POST, in characters.
    pub max_text_chars: Option<u64>,
    /// Webhook channel: the timeout of one POST, in ms.
    pub timeout_ms: Option<u64>,
    /// OpenClaw keys clawgate does not use, merged like the rest.
    pub extra: Map<String, Value>,
}

impl AccountSettings {
    /// The settings as written, for showing them redacted.
    fn shown(&self) -> Map<String, Value> {
        let mut out = self.extra.clone();
        let strings = [
            ("agent", &self.agent),
            ("apiRoot", &self.api_root),
            ("webhookUrl", &self.webhook_url),
            ("webhookSecret", &self.webhook_secret),
            ("webhookPath", &self.webhook_path),
            ("gatewayUrl", &self.gateway_url),
            ("appSecret", &self.app_secret),
            ("verifyToken", &self.verify_token),
            ("phoneNumberId", &self.phone_number_id),
            ("apiVersion", &self.api_version),
            ("mode", &self.mode),
            ("commandsPath", &self.commands_path),
            ("outboundUrl", &self.outbound_url),
        ];
        for (key, value) in strings {
            if let Some(value) = value {
                out.insert(key.to_owned(), Value::String(value.clone()));
            }
        }
        if let Some(n) = self.poll_timeout_seconds {
            out.insert("pollTimeoutSeconds".to_owned(), n.into());
        }
        if let Some(n) = self.max_attempts {
            out.insert("maxAttempts".to_owned(), n.into());
        }
        let numbers = [
            ("retryBaseMs", self.retry_base_ms),
            ("retryMaxMs", self.retry_max_ms),
            ("maxTextChars", self.max_text_chars),
            ("timeoutMs", self.timeout_ms),
        ];
        for (key, value) in numbers {
            if let Some(n) = value {
                out.insert(key.to_owned(), n.into());
            }
        }
        out
    }
}

/// The key a channel's bot token is written under in its config section: what a "no token"
/// message tells the user to set.
pub fn expected_token_key(channel: &str) -> &'static str {
    match channel {
        "telegram" | "slack" => "botToken",
        "line" => "channelAccessToken",
        "whatsapp" => "accessToken",
        "webhook" => "secret",
        _ => "token",
    }
}

/// One account of one platform, resolved (secrets read, account overrides merged). `Debug`
/// hides the token and shows the settings redacted (`webhookSecret`, URL passwords).
#[derive(Clone)]
pub struct AccountConfig {
    /// `telegram/default`.
    pub key: AccountKey,
    /// `enabled: false` keeps the account configured but stopped.
    pub enabled: bool,
    /// The bot token (`botToken`, `token`, LINE's `channelAccessToken` or WhatsApp's `accessToken`;
    /// the webhook channel's HMAC `secret`), resolved. Never logged.
    pub token: Option<String>,
    /// DM policy.
    pub dm_policy: DmPolicy,
    /// Allowed DM senders: user ids, `@usernames`, `"*"`.
    pub allow_from: Vec<String>,
    /// Group policy.
    pub group_policy: GroupPolicy,
    /// Allowed group senders (empty: anyone in an allowed group).
    pub group_allow_from: Vec<String>,
    /// Telegram `groups` / Discord `guilds`.
    pub groups: BTreeMap<String, GroupRule>,
    /// Default mention gating in groups (true unless set).
    pub require_mention: bool,
    /// Inbound limits.
    pub rate_limits: RateLimits,
    /// The platform settings (`apiRoot`, `gatewayUrl`, `webhookUrl`, …).
    pub settings: AccountSettings,
}

impl std::fmt::Debug for AccountConfig {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let section = format!("channels.{}", self.key.channel);
        f.debug_struct("AccountConfig")
            .field("key", &self.key)
            .field("enabled", &self.enabled)
            .field("token", &self.token.as_ref().map(|_| "***"))
            .field("dm_policy", &self.dm_policy)
            .field("allow_from", &self.allow_from)
            .field("group_policy", &self.group_policy)
            .field("group_allow_from", &self.group_allow_from)
            .field("groups", &self.groups)
            .field("require_mention", &self.require_mention)
            .field("rate_limits", &self.rate_limits)
            .field("settings", &clawgate_config::redacted_section(&section, &self.settings.shown()))
            .finish()
    }
}

/// A config problem, with the key path it is about.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{path}: {message}")]
pub struct ChannelConfigError {
    /// `channels.telegram.accounts.work.botToken`.
    pub path: String,
    /// What is wrong and what to write instead.
    pub message: String,
}

fn err(path: impl Into<String>, message: impl Into<String>) -> ChannelConfigError {
    ChannelConfigError { path: path.into(), message: message.into() }
}

/// Platforms this build knows, in the order they are started.
pub const KNOWN_CHANNELS: &[&str] = &["telegram", "discord", "webchat", "line", "whatsapp", "slack", "webhook"];

/// Every configured account of every platform, from the decoded `channels` section (the
/// decoder has already placed every wrong key and value at its file:line). What is left to
/// refuse here needs more than the text: a channel this build has no adapter for, and secrets
/// (`botToken`, `token`, `webhookSecret` as `{env}`/`{file}`) that do not resolve against
/// `base_dir`.
pub fn accounts_from_config(
    channels: &ChannelsSection,
    base_dir: &Path,
) -> Result<Vec<AccountConfig>, ChannelConfigError> {
    if let Some(name) = channels.extra.keys().find(|name| *name != "defaults") {
        return Err(err(
            format!("channels.{name}"),
            format!("unknown channel; known channels are {}", KNOWN_CHANNELS.join(", ")),
        ));
    }
    let mut out = Vec::new();
    for (name, section) in channels.known() {
        if let Some(section) = section {
            channel_accounts(name, section, base_dir, &mut out)?;
        }
    }
    Ok(out)
}

/// [`accounts_from_config`] for a whole config given as JSON (tests, tools): decoded first,
/// the first problem returned with its key path.
pub fn accounts_from_value(root: &Value, base_dir: &Path) -> Result<Vec<AccountConfig>, ChannelConfigError> {
    let config = Config::from_value(root).map_err(|e| match e {
        ConfigError::Invalid { issues } if !issues.is_empty() => {
            let first = &issues[0];
            err(first.key.clone(), first.message.clone())
        }
        other => err("channels", other.to_string()),
    })?;
    accounts_from_config(&config.channels, base_dir)
}

fn channel_accounts(
    name: &str,
    section: &ChannelSection,
    base_dir: &Path,
    out: &mut Vec<AccountConfig>,
) -> Result<(), ChannelConfigError> {
    let path = format!("channels.{name}");
    let base = &section.base;
    let Some(accounts) = &section.accounts else {
        out.push(account(name, "default", base, None, &path, base_dir)?);
        return Ok(());
    };
    let has_base_token = base.bot_token.is_some()
        || base.token.is_some()
        || base.channel_access_token.is_some()
        || base.access_token.is_some()
        || (name == "webhook" && base.outbound_url.is_some());
    if has_base_token && !accounts.contains_key("default") {
        out.push(account(name, "default", base, None, &path, base_dir)?);
    }
    for (id, over) in accounts {
        out.push(account(name, id, base, Some(over), &path, base_dir)?);
    }
    Ok(())
}

/// One account: `over` (an `accounts.<id>` entry) over the channel's top-level `base`.
fn account(
    channel: &str,
    id: &str,
    base: &ChannelAccount,
    over: Option<&ChannelAccount>,
    path: &str,
    base_dir: &Path,
) -> Result<AccountConfig, ChannelConfigError> {
    let account_path = over.map(|_| format!("{path}.accounts.{id}"));
    // A value set in the account wins; the path names where it is written.
    let pick = |get: fn(&ChannelAccount) -> bool| match over {
        Some(o) if get(o) => (o, account_path.as_deref().unwrap_or(path)),
        _ => (base, path),
    };
    let merged = |get: fn(&ChannelAccount) -> bool| pick(get).0;
    // `botToken` (Telegram's name) wins over `token` wherever either is written; LINE calls its
    // token `channelAccessToken`.
    let (token, token_at, token_key) = if channel == "webhook" {
        // The webhook channel has no bot token: its HMAC key is its credential.
        let (a, at) = pick(|a| a.secret.is_some());
        (a.secret.as_ref(), at, "secret")
    } else if channel == "line" {
        let (a, at) = pick(|a| a.channel_access_token.is_some());
        (a.channel_access_token.as_ref(), at, "channelAccessToken")
    } else if over.is_some_and(|o| o.bot_token.is_some()) || base.bot_token.is_some() {
        let (a, at) = pick(|a| a.bot_token.is_some());
        (a.bot_token.as_ref(), at, "botToken")
    } else if over.is_some_and(|o| o.token.is_some()) || base.token.is_some() {
        let (a, at) = pick(|a| a.token.is_some());
        (a.token.as_ref(), at, "token")
    } else {
        let (a, at) = pick(|a| a.access_token.is_some());
        (a.access_token.as_ref(), at, "accessToken")
    };
    let token = token.map(|s| resolve(s, &format!("{token_at}.{token_key}"), base_dir)).transpose()?;
    // The secret webhook requests are checked with: Telegram's `webhookSecret`, LINE's
    // `channelSecret`, Slack's `signingSecret` (the keys of their signatures).
    let webhook_secret = if channel == "line" {
        let (owner, at) = pick(|a| a.channel_secret.is_some());
        owner.channel_secret.as_ref().map(|s| resolve(s, &format!("{at}.channelSecret"), base_dir)).transpose()?
    } else if channel == "slack" {
        let (owner, at) = pick(|a| a.signing_secret.is_some());
        owner.signing_secret.as_ref().map(|s| resolve(s, &format!("{at}.signingSecret"), base_dir)).transpose()?
    } else {
        let (owner, at) = pick(|a| a.webhook_secret.is_some());
        owner.webhook_secret.as_ref().map(|s| resolve(s, &format!("{at}.webhookSecret"), base_dir)).transpose()?
    };
    let secret_at = |get: fn(&ChannelAccount) -> &Option<clawgate_config::Secret>, key: &str| {
        let (owner, at) = match over {
            Some(o) if get(o).is_some() => (o, account_path.as_deref().unwrap_or(path)),
            _ => (base, path),
        };
        get(owner).as_ref().map(|s| resolve(s, &format!("{at}.{key}"), base_dir)).transpose()
    };
    let app_secret = secret_at(|a| &a.app_secret, "appSecret")?;
    let verify_token = secret_at(|a| &a.verify_token, "verifyToken")?;
    let (app_owner, app_at) = pick(|a| a.app_token.is_some());
    let app_token =
        app_owner.app_token.as_ref().map(|s| resolve(s, &format!("{app_at}.appToken"), base_dir)).transpose()?;

    let text = |get: fn(&ChannelAccount) -> &Option<String>| {
        over.and_then(|o| get(o).as_ref()).or(get(base).as_ref()).filter(|s| !s.is_empty()).cloned()
    };
    // Slack's per-channel rules (`channels`) are decoded into `groups`.
    let groups: fn(&ChannelAccount) -> &Option<BTreeMap<String, GroupSection>> =
        if channel == "discord" { |a| &a.guilds } else { |a| &a.groups };
    let groups = over.and_then(|o| groups(o).as_ref()).or(groups(base).as_ref());
    let mut rate_limits = RateLimits::default();
    if let Some(r) = &merged(|a| a.rate_limit.is_some()).rate_limit {
        let clamp = |n: u64| u32::try_from(n).unwrap_or(u32::MAX);
        if let Some(n) = r.per_sender_per_minute {
            rate_limits.per_sender_per_minute = clamp(n);
        }
        if let Some(n) = r.per_chat_per_minute {
            rate_limits.per_chat_per_minute = clamp(n);
        }
    }
    // A backend behind the webhook channel is authenticated by its HMAC key and speaks for its
    // own users: DMs and group chats are open unless the config says otherwise.
    let (dm_default, group_default) =
        if channel == "webhook" { (DmPolicy::Open, GroupPolicy::Open) } else { Default::default() };
    let number = |get: fn(&ChannelAccount) -> Option<u64>| over.and_then(get).or(get(base));
    let mut extra = base.extra.clone();
    if let Some(o) = over {
        extra.extend(o.extra.iter().map(|(k, v)| (k.clone(), v.clone())));
    }
    Ok(AccountConfig {
        key: AccountKey::new(channel, id),
        enabled: merged(|a| a.enabled.is_some()).enabled.unwrap_or(true),
        token,
        dm_policy: merged(|a| a.dm_policy.is_some()).dm_policy.unwrap_or(dm_default),
        allow_from: merged(|a| a.allow_from.is_some()).allow_from.clone().unwrap_or_default(),
        group_policy: merged(|a| a.group_policy.is_some()).group_policy.unwrap_or(group_default),
        group_allow_from: merged(|a| a.group_allow_from.is_some()).group_allow_from.clone().unwrap_or_default(),
        groups: groups.map(|g| g.iter().map(|(id, rule)| (id.clone(), group_rule(rule))).collect()).unwrap_or_default(),
        require_mention: merged(|a| a.require_mention.is_some()).require_mention.unwrap_or(true),
        rate_limits,
        settings: AccountSettings {
            agent: text(|a| &a.agent),
            api_root: text(|a| &a.api_root),
            webhook_url: text(|a| &a.webhook_url),
            webhook_secret: webhook_secret.filter(|s| !s.is_empty()),
            // The webhook channel calls its inbound path `path`.
            webhook_path: text(|a| &a.path).or_else(|| text(|a| &a.webhook_path)),
            poll_timeout_seconds: merged(|a| a.poll_timeout_seconds.is_some()).poll_timeout_seconds,
            gateway_url: text(|a| &a.gateway_url),
            app_secret: app_secret.filter(|s| !s.is_empty()),
            verify_token: verify_token.filter(|s| !s.is_empty()),
            phone_number_id: text(|a| &a.phone_number_id),
            api_version: text(|a| &a.api_version),
            mode: text(|a| &a.mode),
            app_token: app_token.filter(|s| !s.is_empty()),
            commands_path: text(|a| &a.commands_path),
            outbound_url: text(|a| &a.outbound_url),
            max_attempts: number(|a| a.max_attempts).map(|n| u32::try_from(n).unwrap_or(u32::MAX)),
            retry_base_ms: number(|a| a.retry_base_ms),
            retry_max_ms: number(|a| a.retry_max_ms),
            max_text_chars: number(|a| a.max_text_chars),
            timeout_ms: number(|a| a.timeout_ms),
            extra,
        },
    })
}

fn group_rule(g: &GroupSection) -> GroupRule {
    let mut channels = BTreeMap::new();
    for rules in [&g.channels, &g.topics].into_iter().flatten() {
        channels.extend(rules.iter().map(|(id, rule)| (id.clone(), group_rule(rule))));
    }
    GroupRule {
        enabled: g.enabled.or(g.allow).unwrap_or(true),
        require_mention: g.require_mention,
        allow_from: g.allow_from.clone().or_else(|| g.users.clone()),
        channels,
    }
}

fn resolve(secret: &Secret, path: &str, base_dir: &Path) -> Result<String, ChannelConfigError> {
    secret.resolve(base_dir).map_err(|e| err(path, e.to_string()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn debug_never_shows_the_token_or_the_webhook_secret() {
        let root = serde_json::json!({"channels": {"telegram": {"botToken": "123:tok_canary", "webhookSecret": "ws_canary",
            "apiRoot": "http://u:pw_canary@127.0.0.1:1"}}});
        let accounts = accounts_from_value(&root, Path::new("/")).unwrap();
        let debug = format!("{accounts:?}");
        for canary in ["tok_canary", "ws_canary", "pw_canary"] {
            assert!(!debug.contains(canary), "{canary} in {debug}");
        }
        assert_eq!(accounts[0].settings.webhook_secret.as_deref(), Some("ws_canary"));
    }
    use serde_json::json;

    #[test]
    fn top_level_is_the_default_account_and_accounts_inherit() {
        let root = json!({"channels": {"telegram": {
            "botToken": "123:abc", "dmPolicy": "allowlist", "allowFrom": [42, "@alice"],
            "apiRoot": "http://127.0.0.1:1",
            "accounts": {"work": {"botToken": "456:def", "dmPolicy": "open"}}
        }}});
        let accts = accounts_from_value(&root, Path::new("/")).unwrap();
        assert_eq!(accts.len(), 2);
        let d = accts.iter().find(|a| a.key.account == "default").unwrap();
        assert_eq!(d.token.as_deref(), Some("123:abc"));
        assert_eq!(d.dm_policy, DmPolicy::Allowlist);
        assert_eq!(d.allow_from, vec!["42", "@alice"]);
        let w = accts.iter().find(|a| a.key.account == "work").unwrap();
        assert_eq!(w.token.as_deref(), Some("456:def"));
        assert_eq!(w.dm_policy, DmPolicy::Open);
        assert_eq!(w.settings.api_root.as_deref(), Some("http://127.0.0.1:1"));
        assert!(w.settings.extra.is_empty(), "tokens are not kept in settings");
    }

    #[test]
    fn discord_guilds_are_groups() {
        let root = json!({"channels": {"discord": {"token": "t", "guilds": {"g1": {
            "requireMention": false, "users": ["u1"], "channels": {"c1": {"allow": false}}}}}}});
        let a = &accounts_from_value(&root, Path::new("/")).unwrap()[0];
        let g = &a.groups["g1"];
        assert_eq!(g.require_mention, Some(false));
        assert_eq!(g.allow_from.as_deref(), Some(&["u1".to_owned()][..]));
        assert!(!g.channels["c1"].enabled);
    }

    #[test]
    fn errors_name_the_key_and_the_fix() {
        let root = json!({"channels": {"telegram": {"botToken": "x", "dmPolicy": "friends"}}});
        let e = accounts_from_value(&root, Path::new("/")).unwrap_err();
        assert_eq!(e.path, "channels.telegram.dmPolicy");
        assert!(e.message.contains("\"pairing\""));
        let root = json!({"channels": {"telegrm": {}}});
        let e = accounts_from_value(&root, Path::new("/")).unwrap_err();
        assert!(e.message.contains("telegram"), "{e}");
        let root = json!({"channels": {"telegram": {"botToken": {"env": "CLAWGATE_TEST_SURELY_UNSET_VAR"}}}});
        let e = accounts_from_value(&root, Path::new("/")).unwrap_err();
        assert_eq!(e.path, "channels.telegram.botToken");
    }
    #[test]
    fn accounts_inherit_typed_settings_and_secrets_are_placed_where_written() {
        let root = json!({"channels": {"telegram": {
            "botToken": "1:a", "webhookUrl": "https://x/h", "webhookSecret": "s1", "rateLimit": {"perChatPerMinute": 5},
            "groups": {"-1": {"requireMention": false, "topics": {"7": {"enabled": false}}}}, "streaming": "off",
            "accounts": {"work": {"webhookSecret": {"env": "CLAWGATE_TEST_SURELY_UNSET_VAR"}}, "home": {"agent": "coder", "apiRoot": ""}}
        }}});
        let e = accounts_from_value(&root, Path::new("/")).unwrap_err();
        assert_eq!(e.path, "channels.telegram.accounts.work.webhookSecret");
        let mut root = root;
        root["channels"]["telegram"]["accounts"]["work"]["webhookSecret"] = json!("s2");
        let accts = accounts_from_value(&root, Path::new("/")).unwrap();
        let home = accts.iter().find(|a| a.key.account == "home").unwrap();
        assert_eq!(home.token.as_deref(), Some("1:a"));
        assert_eq!(home.settings.agent.as_deref(), Some("coder"));
        assert_eq!(home.settings.api_root, None, "an empty string is unset");
        assert_eq!(home.settings.webhook_secret.as_deref(), Some("s1"));
        assert_eq!(home.settings.extra["streaming"], "off");
        assert_eq!(home.rate_limits, RateLimits { per_sender_per_minute: 20, per_chat_per_minute: 5 });
        assert!(!home.groups["-1"].channels["7"].enabled);
        let work = accts.iter().find(|a| a.key.account == "work").unwrap();
        assert_eq!(work.settings.webhook_secret.as_deref(), Some("s2"));
    }
}
