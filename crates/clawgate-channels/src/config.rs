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

use serde_json::{Map, Value};

use crate::model::AccountKey;

/// Who may talk to the bot in direct messages.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum DmPolicy {
    /// Unknown senders get a pairing code; the owner approves it (`clawgate pairing approve`).
    #[default]
    Pairing,
    /// Only `allowFrom` (and approved pairings).
    Allowlist,
    /// Anyone.
    Open,
    /// No direct messages at all.
    Disabled,
}

/// Which groups the bot answers in.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum GroupPolicy {
    /// Any group the bot is in.
    Open,
    /// Only groups listed in `groups` (a `"*"` entry lists all).
    #[default]
    Allowlist,
    /// Never in groups.
    Disabled,
}

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

/// One account of one platform, resolved (secrets read, account overrides merged). `Debug`
/// hides the token and shows the settings redacted (`webhookSecret`, URL passwords).
#[derive(Clone)]
pub struct AccountConfig {
    /// `telegram/default`.
    pub key: AccountKey,
    /// `enabled: false` keeps the account configured but stopped.
    pub enabled: bool,
    /// The bot token (`botToken` or `token`), resolved. Never logged.
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
    /// The merged raw settings, for platform keys (`apiRoot`, `gatewayUrl`, `webhookUrl`, …).
    pub settings: Map<String, Value>,
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
            .field("settings", &clawgate_config::redacted_section(&section, &self.settings))
            .finish()
    }
}

impl AccountConfig {
    /// A string setting of the merged account config.
    pub fn setting_str(&self, key: &str) -> Option<&str> {
        self.settings.get(key).and_then(Value::as_str).filter(|s| !s.is_empty())
    }

    /// A numeric setting.
    pub fn setting_u64(&self, key: &str) -> Option<u64> {
        self.settings.get(key).and_then(Value::as_u64)
    }

    /// A boolean setting.
    pub fn setting_bool(&self, key: &str) -> Option<bool> {
        self.settings.get(key).and_then(Value::as_bool)
    }
}

/// A config problem, with the key path it is about.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{path}: {message}")]
pub struct ChannelConfigError {
    /// `channels.telegram.accounts.work.dmPolicy`.
    pub path: String,
    /// What is wrong and what to write instead.
    pub message: String,
}

fn err(path: impl Into<String>, message: impl Into<String>) -> ChannelConfigError {
    ChannelConfigError { path: path.into(), message: message.into() }
}

/// Platforms this build knows, in the order they are started.
pub const KNOWN_CHANNELS: &[&str] = &["telegram", "discord", "webchat"];

/// Keys that are about accounts rather than settings.
const ACCOUNT_KEYS: &[&str] = &["accounts", "defaultAccount"];

/// Read every configured account of every platform under `channels` (the whole config root is
/// passed). Secrets (`botToken`, `token`, `webhookSecret` given as `{env}`/`{file}`) are
/// resolved against `base_dir`. Unknown platforms are an error naming the ones known.
pub fn accounts_from_config(root: &Value, base_dir: &Path) -> Result<Vec<AccountConfig>, ChannelConfigError> {
    let Some(channels) = root.get("channels") else { return Ok(Vec::new()) };
    let Some(channels) = channels.as_object() else {
        return Err(err("channels", "must be an object like { telegram: { botToken: … } }"));
    };
    let mut out = Vec::new();
    for (name, section) in channels {
        let path = format!("channels.{name}");
        if name == "defaults" {
            continue;
        }
        if !KNOWN_CHANNELS.contains(&name.as_str()) {
            return Err(err(path, format!("unknown channel; known channels are {}", KNOWN_CHANNELS.join(", "))));
        }
        let Some(section) = section.as_object() else {
            return Err(err(path, "must be an object"));
        };
        let base: Map<String, Value> = section
            .iter()
            .filter(|(k, _)| !ACCOUNT_KEYS.contains(&k.as_str()))
            .map(|(k, v)| (k.clone(), v.clone()))
            .collect();
        match section.get("accounts") {
            None | Some(Value::Null) => out.push(account(name, "default", &base, &path, base_dir)?),
            Some(Value::Object(accounts)) => {
                let has_base_token = base.contains_key("botToken") || base.contains_key("token");
                if has_base_token && !accounts.contains_key("default") {
                    out.push(account(name, "default", &base, &path, base_dir)?);
                }
                for (id, over) in accounts {
                    let apath = format!("{path}.accounts.{id}");
                    let Some(over) = over.as_object() else { return Err(err(apath, "must be an object")) };
                    let mut merged = base.clone();
                    for (k, v) in over {
                        merged.insert(k.clone(), v.clone());
                    }
                    out.push(account(name, id, &merged, &apath, base_dir)?);
                }
            }
            Some(_) => return Err(err(format!("{path}.accounts"), "must be an object of account id → settings")),
        }
    }
    Ok(out)
}

fn account(
    channel: &str,
    id: &str,
    s: &Map<String, Value>,
    path: &str,
    base_dir: &Path,
) -> Result<AccountConfig, ChannelConfigError> {
    let enabled = match s.get("enabled") {
        None | Some(Value::Null) => true,
        Some(Value::Bool(b)) => *b,
        Some(_) => return Err(err(format!("{path}.enabled"), "must be true or false")),
    };
    let token_key = if s.contains_key("botToken") { "botToken" } else { "token" };
    let token = match s.get(token_key) {
        None | Some(Value::Null) => None,
        Some(v) => Some(secret(v, &format!("{path}.{token_key}"), base_dir)?),
    };
    let mut settings = s.clone();
    if let Some(v) = s.get("webhookSecret").filter(|v| !v.is_null()) {
        let resolved = secret(v, &format!("{path}.webhookSecret"), base_dir)?;
        settings.insert("webhookSecret".into(), Value::String(resolved));
    }
    settings.remove("botToken");
    settings.remove("token");
    let dm_policy = match s.get("dmPolicy").and_then(Value::as_str) {
        None => DmPolicy::default(),
        Some("pairing") => DmPolicy::Pairing,
        Some("allowlist") => DmPolicy::Allowlist,
        Some("open") => DmPolicy::Open,
        Some("disabled") => DmPolicy::Disabled,
        Some(other) => {
            return Err(err(
                format!("{path}.dmPolicy"),
                format!("\"{other}\" is not a DM policy; use \"pairing\", \"allowlist\", \"open\" or \"disabled\""),
            ));
        }
    };
    let group_policy = match s.get("groupPolicy").and_then(Value::as_str) {
        None => GroupPolicy::default(),
        Some("open") => GroupPolicy::Open,
        Some("allowlist") => GroupPolicy::Allowlist,
        Some("disabled") => GroupPolicy::Disabled,
        Some(other) => {
            return Err(err(
                format!("{path}.groupPolicy"),
                format!("\"{other}\" is not a group policy; use \"open\", \"allowlist\" or \"disabled\""),
            ));
        }
    };
    let allow_from = id_list(s.get("allowFrom"), &format!("{path}.allowFrom"))?;
    let group_allow_from = id_list(s.get("groupAllowFrom"), &format!("{path}.groupAllowFrom"))?;
    let groups_key = if channel == "discord" { "guilds" } else { "groups" };
    let groups = match s.get(groups_key) {
        None | Some(Value::Null) => BTreeMap::new(),
        Some(Value::Object(m)) => {
            let mut g = BTreeMap::new();
            for (gid, rule) in m {
                g.insert(gid.clone(), group_rule(rule, &format!("{path}.{groups_key}.{gid}"))?);
            }
            g
        }
        Some(_) => return Err(err(format!("{path}.{groups_key}"), "must be an object of id → rules")),
    };
    let require_mention = match s.get("requireMention") {
        None | Some(Value::Null) => true,
        Some(Value::Bool(b)) => *b,
        Some(_) => return Err(err(format!("{path}.requireMention"), "must be true or false")),
    };
    let mut rate_limits = RateLimits::default();
    if let Some(r) = s.get("rateLimit").and_then(Value::as_object) {
        if let Some(n) = r.get("perSenderPerMinute").and_then(Value::as_u64) {
            rate_limits.per_sender_per_minute = n.min(u32::MAX as u64) as u32;
        }
        if let Some(n) = r.get("perChatPerMinute").and_then(Value::as_u64) {
            rate_limits.per_chat_per_minute = n.min(u32::MAX as u64) as u32;
        }
    }
    Ok(AccountConfig {
        key: AccountKey::new(channel, id),
        enabled,
        token,
        dm_policy,
        allow_from,
        group_policy,
        group_allow_from,
        groups,
        require_mention,
        rate_limits,
        settings,
    })
}

fn group_rule(v: &Value, path: &str) -> Result<GroupRule, ChannelConfigError> {
    let Some(o) = v.as_object() else {
        return Err(err(path, "must be an object like { requireMention: true }"));
    };
    let enabled = o.get("enabled").or_else(|| o.get("allow")).and_then(Value::as_bool).unwrap_or(true);
    let require_mention = o.get("requireMention").and_then(Value::as_bool);
    let allow_from = match o.get("allowFrom").or_else(|| o.get("users")) {
        None | Some(Value::Null) => None,
        Some(list) => Some(id_list(Some(list), &format!("{path}.allowFrom"))?),
    };
    let mut channels = BTreeMap::new();
    for key in ["channels", "topics"] {
        if let Some(m) = o.get(key).and_then(Value::as_object) {
            for (cid, rule) in m {
                channels.insert(cid.clone(), group_rule(rule, &format!("{path}.{key}.{cid}"))?);
            }
        }
    }
    Ok(GroupRule { enabled, require_mention, allow_from, channels })
}

fn id_list(v: Option<&Value>, path: &str) -> Result<Vec<String>, ChannelConfigError> {
    match v {
        None | Some(Value::Null) => Ok(Vec::new()),
        Some(Value::Array(items)) => items
            .iter()
            .map(|i| match i {
                Value::String(s) => Ok(s.trim().to_owned()),
                Value::Number(n) => Ok(n.to_string()),
                _ => Err(err(path, "entries must be user ids (strings or numbers), @usernames or \"*\"")),
            })
            .collect(),
        Some(_) => Err(err(path, "must be a list like [\"123456789\", \"@alice\"]")),
    }
}

fn secret(v: &Value, path: &str, base_dir: &Path) -> Result<String, ChannelConfigError> {
    let s = match v {
        Value::String(s) if s.is_empty() => return Err(err(path, "is empty; set the token or remove the key")),
        Value::String(s) => return Ok(s.clone()),
        Value::Object(o) => match (o.get("env").and_then(Value::as_str), o.get("file").and_then(Value::as_str)) {
            (Some(env), None) => clawgate_config::Secret::Env { env: env.to_owned() },
            (None, Some(file)) => clawgate_config::Secret::File { file: file.into() },
            _ => return Err(err(path, "expected a string, {env: \"NAME\"} or {file: \"path\"}")),
        },
        _ => return Err(err(path, "expected a string, {env: \"NAME\"} or {file: \"path\"}")),
    };
    s.resolve(base_dir).map_err(|e| err(path, e.to_string()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn debug_never_shows_the_token_or_the_webhook_secret() {
        let root = serde_json::json!({"channels": {"telegram": {"botToken": "123:tok_canary", "webhookSecret": "ws_canary",
            "apiRoot": "http://u:pw_canary@127.0.0.1:1"}}});
        let accounts = accounts_from_config(&root, Path::new("/")).unwrap();
        let debug = format!("{accounts:?}");
        for canary in ["tok_canary", "ws_canary", "pw_canary"] {
            assert!(!debug.contains(canary), "{canary} in {debug}");
        }
        assert_eq!(accounts[0].setting_str("webhookSecret"), Some("ws_canary"));
    }
    use serde_json::json;

    #[test]
    fn top_level_is_the_default_account_and_accounts_inherit() {
        let root = json!({"channels": {"telegram": {
            "botToken": "123:abc", "dmPolicy": "allowlist", "allowFrom": [42, "@alice"],
            "apiRoot": "http://127.0.0.1:1",
            "accounts": {"work": {"botToken": "456:def", "dmPolicy": "open"}}
        }}});
        let accts = accounts_from_config(&root, Path::new("/")).unwrap();
        assert_eq!(accts.len(), 2);
        let d = accts.iter().find(|a| a.key.account == "default").unwrap();
        assert_eq!(d.token.as_deref(), Some("123:abc"));
        assert_eq!(d.dm_policy, DmPolicy::Allowlist);
        assert_eq!(d.allow_from, vec!["42", "@alice"]);
        let w = accts.iter().find(|a| a.key.account == "work").unwrap();
        assert_eq!(w.token.as_deref(), Some("456:def"));
        assert_eq!(w.dm_policy, DmPolicy::Open);
        assert_eq!(w.setting_str("apiRoot"), Some("http://127.0.0.1:1"));
        assert!(w.settings.get("botToken").is_none(), "tokens are not kept in settings");
    }

    #[test]
    fn discord_guilds_are_groups() {
        let root = json!({"channels": {"discord": {"token": "t", "guilds": {"g1": {
            "requireMention": false, "users": ["u1"], "channels": {"c1": {"allow": false}}}}}}});
        let a = &accounts_from_config(&root, Path::new("/")).unwrap()[0];
        let g = &a.groups["g1"];
        assert_eq!(g.require_mention, Some(false));
        assert_eq!(g.allow_from.as_deref(), Some(&["u1".to_owned()][..]));
        assert!(!g.channels["c1"].enabled);
    }

    #[test]
    fn errors_name_the_key_and_the_fix() {
        let root = json!({"channels": {"telegram": {"botToken": "x", "dmPolicy": "friends"}}});
        let e = accounts_from_config(&root, Path::new("/")).unwrap_err();
        assert_eq!(e.path, "channels.telegram.dmPolicy");
        assert!(e.message.contains("\"pairing\""));
        let root = json!({"channels": {"telegrm": {}}});
        let e = accounts_from_config(&root, Path::new("/")).unwrap_err();
        assert!(e.message.contains("telegram"), "{e}");
        let root = json!({"channels": {"telegram": {"botToken": {"env": "CLAWGATE_TEST_SURELY_UNSET_VAR"}}}});
        let e = accounts_from_config(&root, Path::new("/")).unwrap_err();
        assert_eq!(e.path, "channels.telegram.botToken");
    }
}
