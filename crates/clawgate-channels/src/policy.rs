//! The ingress security gate: who may make the bot do anything.
//!
//! Decided per message from the account's config and whether the sender was paired; nothing
//! that is not [`Verdict::Allow`] reaches the agent or the command router.

use crate::config::{AccountConfig, DmPolicy, GroupPolicy, GroupRule};
use crate::model::{ChatKind, InboundMessage};

/// What happens to an inbound message.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Verdict {
    /// Route it (command or agent turn).
    Allow,
    /// An unknown DM sender under `dmPolicy: "pairing"`: answer with a pairing code, run nothing.
    Pair,
    /// Drop it silently; the reason is logged and counted.
    Drop(&'static str),
}

/// Does `list` name this sender? Entries are ids, `@username`s (case-insensitive) or `"*"`;
/// platform prefixes (`telegram:`, `tg:`, `discord:`, `user:`, `whatsapp:`) are ignored, and so is the
/// `+` of a phone number in international form.
pub fn listed(list: &[String], sender_id: &str, username: Option<&str>) -> bool {
    list.iter().any(|entry| {
        let e = entry.trim();
        let e = ["telegram:", "tg:", "discord:", "slack:", "user:", "webchat:", "whatsapp:", "wa:"]
            .iter()
            .find_map(|p| e.strip_prefix(p))
            .unwrap_or(e);
        // WhatsApp ids are numbers in international form without the `+` people write.
        let e = e.strip_prefix('+').filter(|n| !n.is_empty() && n.chars().all(|c| c.is_ascii_digit())).unwrap_or(e);
        if e == "*" || e == sender_id {
            return true;
        }
        match (e.strip_prefix('@'), username) {
            (Some(name), Some(u)) => name.eq_ignore_ascii_case(u.trim_start_matches('@')),
            _ => false,
        }
    })
}

/// Find the rule for a group message: by chat id, then by space (guild) with its per-channel
/// rule, then the `"*"` entry.
fn group_rule<'a>(cfg: &'a AccountConfig, msg: &InboundMessage) -> Option<(&'a GroupRule, Option<&'a GroupRule>)> {
    let sub = |g: &'a GroupRule| {
        let inner = msg.thread_id.as_deref().and_then(|t| g.channels.get(t));
        inner.or_else(|| g.channels.get(&msg.chat_id)).or_else(|| g.channels.get("*"))
    };
    if let Some(g) = cfg.groups.get(&msg.chat_id) {
        return Some((g, sub(g)));
    }
    if let Some(space) = &msg.space_id
        && let Some(g) = cfg.groups.get(space)
    {
        return Some((g, sub(g)));
    }
    cfg.groups.get("*").map(|g| (g, sub(g)))
}

/// Decide. `paired` says the sender was approved through a pairing code before.
pub fn gate(cfg: &AccountConfig, msg: &InboundMessage, paired: bool) -> Verdict {
    if msg.sender_is_bot {
        return Verdict::Drop("sender is a bot");
    }
    let username = msg.sender_username.as_deref();
    match msg.chat_kind {
        ChatKind::Direct => match cfg.dm_policy {
            DmPolicy::Disabled => Verdict::Drop("direct messages are disabled"),
            DmPolicy::Open => Verdict::Allow,
            DmPolicy::Allowlist if paired || listed(&cfg.allow_from, &msg.sender_id, username) => Verdict::Allow,
            DmPolicy::Allowlist => Verdict::Drop("sender not in allowFrom"),
            DmPolicy::Pairing if paired || listed(&cfg.allow_from, &msg.sender_id, username) => Verdict::Allow,
            DmPolicy::Pairing => Verdict::Pair,
        },
        ChatKind::Group | ChatKind::Channel => {
            if cfg.group_policy == GroupPolicy::Disabled {
                return Verdict::Drop("groups are disabled");
            }
            let rule = group_rule(cfg, msg);
            if cfg.group_policy == GroupPolicy::Allowlist && rule.is_none() {
                return Verdict::Drop("group not allowlisted");
            }
            let (group, channel) = match rule {
                Some((g, c)) => (Some(g), c),
                None => (None, None),
            };
            if group.is_some_and(|g| !g.enabled) || channel.is_some_and(|c| !c.enabled) {
                return Verdict::Drop("group or channel disabled");
            }
            // A guild with per-channel rules only allows the channels it lists.
            if let Some(g) = group
                && !g.channels.is_empty()
                && channel.is_none()
            {
                return Verdict::Drop("channel not allowlisted in this guild");
            }
            let allow = channel
                .and_then(|c| c.allow_from.as_ref())
                .or_else(|| group.and_then(|g| g.allow_from.as_ref()))
                .unwrap_or(&cfg.group_allow_from);
            if !allow.is_empty() && !listed(allow, &msg.sender_id, username) {
                return Verdict::Drop("sender not allowed in this group");
            }
            let require_mention = channel
                .and_then(|c| c.require_mention)
                .or_else(|| group.and_then(|g| g.require_mention))
                .unwrap_or(cfg.require_mention);
            if require_mention && !msg.addresses_bot() {
                return Verdict::Drop("not addressed to the bot");
            }
            Verdict::Allow
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::accounts_from_value;
    use serde_json::json;
    use std::path::Path;

    fn cfg(v: serde_json::Value) -> AccountConfig {
        accounts_from_value(&json!({"channels": {"telegram": v}}), Path::new("/")).unwrap().remove(0)
    }

    fn dm(sender: &str) -> InboundMessage {
        InboundMessage {
            channel: "telegram".into(),
            account: "default".into(),
            message_id: "1".into(),
            chat_id: sender.into(),
            chat_kind: ChatKind::Direct,
            chat_title: None,
            thread_id: None,
            space_id: None,
            sender_id: sender.into(),
            sender_username: Some("Alice".into()),
            sender_name: None,
            sender_is_bot: false,
            text: "hi".into(),
            media: vec![],
            reply_to: None,
            reply_to_bot: false,
            mentions: vec![],
            mentions_bot: false,
            sent_at_ms: 0,
            session_key: None,
            context: None,
        }
    }

    fn group(chat: &str, mentioned: bool) -> InboundMessage {
        InboundMessage { chat_id: chat.into(), chat_kind: ChatKind::Group, mentions_bot: mentioned, ..dm("7") }
    }

    #[test]
    fn dm_policies() {
        let c = cfg(json!({"botToken": "t", "dmPolicy": "allowlist", "allowFrom": ["42", "@alice"]}));
        assert_eq!(gate(&c, &dm("42"), false), Verdict::Allow);
        assert_eq!(gate(&c, &dm("7"), false), Verdict::Allow, "@alice matches case-insensitively");
        let mut stranger = dm("8");
        stranger.sender_username = Some("mallory".into());
        assert_eq!(gate(&c, &stranger, false), Verdict::Drop("sender not in allowFrom"));
        assert_eq!(gate(&c, &stranger, true), Verdict::Allow, "paired senders pass");
        let p = cfg(json!({"botToken": "t"}));
        assert_eq!(gate(&p, &stranger, false), Verdict::Pair, "pairing is the default");
        let d = cfg(json!({"botToken": "t", "dmPolicy": "disabled", "allowFrom": ["*"]}));
        assert!(matches!(gate(&d, &dm("42"), false), Verdict::Drop(_)));
        let mut bot = dm("42");
        bot.sender_is_bot = true;
        assert!(matches!(gate(&cfg(json!({"botToken": "t", "dmPolicy": "open"})), &bot, false), Verdict::Drop(_)));
    }

    #[test]
    fn groups_need_allowlisting_and_mentions() {
        let c = cfg(json!({"botToken": "t", "groups": {"-100": {}, "-200": {"requireMention": false}}}));
        assert_eq!(gate(&c, &group("-100", true), false), Verdict::Allow);
        assert_eq!(gate(&c, &group("-100", false), false), Verdict::Drop("not addressed to the bot"));
        assert_eq!(gate(&c, &group("-200", false), false), Verdict::Allow);
        assert_eq!(gate(&c, &group("-300", true), false), Verdict::Drop("group not allowlisted"));
        let open = cfg(json!({"botToken": "t", "groupPolicy": "open"}));
        assert_eq!(gate(&open, &group("-300", true), false), Verdict::Allow);
        let star = cfg(json!({"botToken": "t", "groups": {"*": {"allowFrom": ["99"]}}}));
        assert_eq!(gate(&star, &group("-300", true), false), Verdict::Drop("sender not allowed in this group"));
    }
}
