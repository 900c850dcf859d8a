//! Who may run what: command classes, the `comfy.commands` section ([`CommandPolicy`]) and
//! [`authorize`].

use std::collections::{BTreeMap, BTreeSet};

use serde_json::Value;

use super::grammar::{Command, Verb};
use super::reply;

/// Who may run a command.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum CommandClass {
    /// Anyone.
    Public,
    /// Anyone, but untrusted senders go through approval.
    Run,
    /// Admins only.
    Admin,
}

impl CommandClass {
    fn parse(s: &str) -> Option<Self> {
        match s {
            "public" => Some(Self::Public),
            "run" => Some(Self::Run),
            "admin" => Some(Self::Admin),
            _ => None,
        }
    }
}

/// The sender of a command, as the channel layer knows them.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SenderCtx<'a> {
    /// `telegram`, `discord`, `line`, `whatsapp`, …
    pub platform: &'a str,
    /// The platform's user id.
    pub user_id: &'a str,
    /// The chat, channel or group the message came from.
    pub chat_id: &'a str,
    /// The channel's own configuration names this sender an admin.
    pub is_admin: bool,
    /// The channel's allowlists (users, chats, groups) include this sender.
    pub trusted: bool,
}

/// What to do with a command.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Decision {
    /// Run it.
    Allow,
    /// Submit it for approval instead of running it.
    NeedsApproval,
    /// Refuse, answering with this text.
    Deny(String),
}

/// A configuration error in the `comfy.commands` section.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("`{key}`: {reason}")]
pub struct PolicyError {
    /// Dotted path of the offending key, e.g. `comfy.commands.overrides./foo`.
    pub key: String,
    /// What is wrong and what is expected.
    pub reason: String,
}

/// A set of sender or chat ids, each on one platform or on all.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
struct IdSet {
    any_platform: BTreeSet<String>,
    scoped: BTreeSet<(String, String)>,
}

impl IdSet {
    fn is_empty(&self) -> bool {
        self.any_platform.is_empty() && self.scoped.is_empty()
    }

    fn contains(&self, platform: &str, id: &str) -> bool {
        self.any_platform.contains(id) || self.scoped.contains(&(platform.to_ascii_lowercase(), id.to_owned()))
    }

    fn parse(value: &Value, key: &str) -> Result<Self, PolicyError> {
        let items = value.as_array().ok_or_else(|| PolicyError {
            key: key.to_owned(),
            reason: "must be an array of ids (strings or integers)".to_owned(),
        })?;
        let mut set = IdSet::default();
        for (i, item) in items.iter().enumerate() {
            let text = match item {
                Value::String(s) => s.trim().to_owned(),
                Value::Number(n) if n.is_i64() || n.is_u64() => n.to_string(),
                _ => String::new(),
            };
            if text.is_empty() {
                return Err(PolicyError {
                    key: format!("{key}[{i}]"),
                    reason: "must be a non-empty string or an integer".to_owned(),
                });
            }
            // `platform:id` only when the prefix looks like a platform name, so ids that
            // contain `:` themselves still work bare.
            match text.split_once(':') {
                Some((platform, id))
                    if !platform.is_empty() && !id.is_empty() && platform.chars().all(|c| c.is_ascii_alphabetic()) =>
                {
                    set.scoped.insert((platform.to_ascii_lowercase(), phone_as_id(id).to_owned()));
                }
                _ => {
                    set.any_platform.insert(phone_as_id(&text).to_owned());
                }
            }
        }
        Ok(set)
    }
}

/// A phone number written the way people do (`+15550100`) as WhatsApp's ids have it (`15550100`,
/// no `+`), as the channels' `allowFrom` lists read it; any other id as it is.
fn phone_as_id(id: &str) -> &str {
    id.strip_prefix('+').filter(|n| !n.is_empty() && n.chars().all(|c| c.is_ascii_digit())).unwrap_or(id)
}

/// Who may run which command; built from the `comfy.commands` section (see the module docs).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct CommandPolicy {
    admin_users: IdSet,
    trusted_users: IdSet,
    trusted_chats: IdSet,
    /// Per class; an empty set means no restriction.
    allow_from: BTreeMap<CommandClass, IdSet>,
    overrides: BTreeMap<Verb, CommandClass>,
}

const SECTION: &str = "comfy.commands";

impl CommandPolicy {
    /// Reads the `comfy.commands` section; `null` gives the defaults (no admins, no allow-lists,
    /// no overrides: admin commands are refused to everyone the channel does not mark admin).
    pub fn from_config(section: &Value) -> Result<Self, PolicyError> {
        let map = match section {
            Value::Null => return Ok(Self::default()),
            Value::Object(map) => map,
            _ => return Err(PolicyError { key: SECTION.to_owned(), reason: "must be an object".to_owned() }),
        };
        let mut policy = Self::default();
        for (key, value) in map {
            let at = format!("{SECTION}.{key}");
            match key.as_str() {
                "adminUsers" => policy.admin_users = IdSet::parse(value, &at)?,
                "trustedUsers" => policy.trusted_users = IdSet::parse(value, &at)?,
                "trustedChats" => policy.trusted_chats = IdSet::parse(value, &at)?,
                "allowFrom" => {
                    let classes = value.as_object().ok_or_else(|| PolicyError {
                        key: at.clone(),
                        reason: "must be an object with `public`, `run` and/or `admin` id lists".to_owned(),
                    })?;
                    for (class_name, ids) in classes {
                        let class = CommandClass::parse(class_name).ok_or_else(|| PolicyError {
                            key: format!("{at}.{class_name}"),
                            reason: "unknown class; use `public`, `run` or `admin`".to_owned(),
                        })?;
                        policy.allow_from.insert(class, IdSet::parse(ids, &format!("{at}.{class_name}"))?);
                    }
                }
                "overrides" => {
                    let entries = value.as_object().ok_or_else(|| PolicyError {
                        key: at.clone(),
                        reason: "must be an object mapping command names to `public`, `run` or `admin`".to_owned(),
                    })?;
                    for (name, class) in entries {
                        let key = format!("{at}.{name}");
                        let verb = Verb::from_name(name.trim())
                            .ok_or_else(|| PolicyError { key: key.clone(), reason: "unknown command".to_owned() })?;
                        let class = class.as_str().and_then(CommandClass::parse).ok_or_else(|| PolicyError {
                            key: key.clone(),
                            reason: "must be \"public\", \"run\" or \"admin\"".to_owned(),
                        })?;
                        policy.overrides.insert(verb, class);
                    }
                }
                _ => {
                    return Err(PolicyError {
                        key: at,
                        reason: "unknown key; known: adminUsers, trustedUsers, trustedChats, allowFrom, overrides"
                            .to_owned(),
                    });
                }
            }
        }
        Ok(policy)
    }

    /// The class of a command, overrides applied.
    pub fn class_of(&self, verb: Verb) -> CommandClass {
        self.overrides.get(&verb).copied().unwrap_or(verb.default_class())
    }

    /// Whether `sender` is an admin: the channel says so (an operator client) or `adminUsers`
    /// lists them on their platform. What an admin may stop, a non-admin may stop only when
    /// they asked for it (`/stop`).
    pub fn is_admin(&self, sender: &SenderCtx<'_>) -> bool {
        sender.is_admin || self.admin_users.contains(sender.platform, sender.user_id)
    }

    /// The admins (`adminUsers`) with an id on `platform`: entries scoped to it
    /// (`telegram:123`) and unscoped ones (`123`), sorted, each once.
    pub fn admins_on(&self, platform: &str) -> Vec<String> {
        let platform = platform.to_ascii_lowercase();
        let scoped = self.admin_users.scoped.iter().filter(|(p, _)| *p == platform).map(|(_, id)| id.clone());
        let all: BTreeSet<String> = self.admin_users.any_platform.iter().cloned().chain(scoped).collect();
        all.into_iter().collect()
    }

    /// Whether `sender` may use `verb` at all (its class's `allowFrom` list, admin-only
    /// classes); `Err` holds the refusal users see. A `/run` allowed here may still need
    /// approval ([`authorize`]).
    pub fn may_use(&self, verb: Verb, sender: &SenderCtx<'_>) -> Result<(), &'static str> {
        let class = self.class_of(verb);
        if let Some(allowed) = self.allow_from.get(&class).filter(|set| !set.is_empty())
            && !allowed.contains(sender.platform, sender.user_id)
        {
            return Err(reply::ACCESS_DENIED_ALLOW_LIST);
        }
        if class == CommandClass::Admin && !self.is_admin(sender) {
            return Err(reply::ACCESS_DENIED_ADMIN);
        }
        Ok(())
    }

    fn is_trusted(&self, sender: &SenderCtx<'_>) -> bool {
        self.is_admin(sender)
            || sender.trusted
            || self.trusted_users.contains(sender.platform, sender.user_id)
            || self.trusted_chats.contains(sender.platform, sender.chat_id)
    }
}

/// Decides whether `sender` may run `cmd` now, must go through approval, or is refused.
pub fn authorize(cmd: &Command, sender: &SenderCtx<'_>, policy: &CommandPolicy) -> Decision {
    if let Err(denied) = policy.may_use(cmd.verb(), sender) {
        return Decision::Deny(denied.to_owned());
    }
    if let Command::Run { require_approval, .. } = cmd
        && (*require_approval || !policy.is_trusted(sender))
    {
        return Decision::NeedsApproval;
    }
    Decision::Allow
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;
    use crate::command::Problem;
    use crate::command::reply;
    use crate::command::test_support::run;

    fn sender(user: &str) -> SenderCtx<'_> {
        SenderCtx { platform: "telegram", user_id: user, chat_id: "-100", is_admin: false, trusted: false }
    }

    fn policy(section: Value) -> CommandPolicy {
        CommandPolicy::from_config(&section).expect("valid policy")
    }

    #[test]
    fn overrides_resolve_aliases_and_apply() {
        let p = policy(json!({"overrides": {"/STATUS": "admin", "cancel": "public", "run": "admin"}}));
        assert_eq!(p.class_of(Verb::Status), CommandClass::Admin);
        assert_eq!(p.class_of(Verb::Stop), CommandClass::Public);
        assert_eq!(p.class_of(Verb::Run), CommandClass::Admin);
        assert_eq!(p.class_of(Verb::Help), CommandClass::Public);
        assert_eq!(
            authorize(&Command::Status { job: None }, &sender("1"), &p),
            Decision::Deny(reply::ACCESS_DENIED_ADMIN.into())
        );
        assert_eq!(authorize(&Command::Stop { jobs: vec![] }, &sender("1"), &p), Decision::Allow);
        assert_eq!(
            authorize(&run("t", &[], None, false), &sender("1"), &p),
            Decision::Deny(reply::ACCESS_DENIED_ADMIN.into())
        );
    }

    #[test]
    fn authorize_matrix() {
        let p = policy(json!({
            "adminUsers": ["telegram:1", 2],
            "trustedUsers": ["discord:3"],
            "trustedChats": ["telegram:-100trusted"],
        }));
        let admin = sender("1");
        let bare_admin = SenderCtx { platform: "discord", ..sender("2") };
        let channel_admin = SenderCtx { is_admin: true, ..sender("9") };
        let stranger = sender("5");
        let channel_trusted = SenderCtx { trusted: true, ..sender("5") };
        let config_trusted = SenderCtx { platform: "discord", ..sender("3") };
        let trusted_chat = SenderCtx { chat_id: "-100trusted", ..sender("6") };
        let wrong_platform_admin = SenderCtx { platform: "discord", ..sender("1") };
        let wrong_platform_trusted = sender("3");

        let direct = run("t", &[], None, false);
        let forced = run("t", &[], None, true);
        let deny_admin = Decision::Deny(reply::ACCESS_DENIED_ADMIN.into());
        let cases = [
            (&admin, &direct, Decision::Allow),
            (&admin, &forced, Decision::NeedsApproval),
            (&admin, &Command::Approvals, Decision::Allow),
            (&bare_admin, &Command::Approvals, Decision::Allow),
            (&channel_admin, &Command::Jobs, Decision::Allow),
            (&channel_admin, &direct, Decision::Allow),
            (&stranger, &direct, Decision::NeedsApproval),
            (&stranger, &Command::Help, Decision::Allow),
            (&stranger, &Command::Jobs, deny_admin.clone()),
            (&channel_trusted, &direct, Decision::Allow),
            (&channel_trusted, &Command::Approvals, deny_admin.clone()),
            (&config_trusted, &direct, Decision::Allow),
            (&trusted_chat, &direct, Decision::Allow),
            (&trusted_chat, &forced, Decision::NeedsApproval),
            (&wrong_platform_admin, &Command::Approvals, deny_admin.clone()),
            (&wrong_platform_trusted, &direct, Decision::NeedsApproval),
        ];
        for (who, cmd, want) in cases {
            assert_eq!(authorize(cmd, who, &p), want, "{who:?} {cmd:?}");
        }
        // A `/run` usage error is answered, not sent for approval.
        let usage = Command::Invalid { verb: Verb::Run, problem: Problem::Usage };
        assert_eq!(authorize(&usage, &stranger, &p), Decision::Allow);
    }

    #[test]
    fn allow_lists_bind_admins_too() {
        let p = policy(json!({
            "adminUsers": ["1"],
            "allowFrom": {"admin": ["telegram:7"], "public": ["1", "7"]},
        }));
        let deny_list = Decision::Deny(reply::ACCESS_DENIED_ALLOW_LIST.into());
        assert_eq!(authorize(&Command::Approvals, &sender("1"), &p), deny_list);
        // On the list but not an admin: still refused.
        assert_eq!(authorize(&Command::Approvals, &sender("7"), &p), Decision::Deny(reply::ACCESS_DENIED_ADMIN.into()));
        assert_eq!(authorize(&Command::Help, &sender("8"), &p), deny_list);
        assert_eq!(authorize(&Command::Help, &sender("7"), &p), Decision::Allow);
        // No list for `run`: untrusted users still get approval.
        assert_eq!(authorize(&run("t", &[], None, false), &sender("8"), &p), Decision::NeedsApproval);
    }

    #[test]
    fn phone_numbers_are_matched_without_their_plus() {
        let p = policy(json!({"adminUsers": ["whatsapp:+15550100", "+15550111", "telegram:+x"]}));
        let wa = |id| SenderCtx { platform: "whatsapp", ..sender(id) };
        assert_eq!(authorize(&Command::Approvals, &wa("15550100"), &p), Decision::Allow);
        assert_eq!(authorize(&Command::Approvals, &wa("15550111"), &p), Decision::Allow);
        assert_eq!(p.admins_on("whatsapp"), vec!["15550100", "15550111"]);
        // Only a `+` before digits is dropped.
        assert_eq!(p.admins_on("telegram"), vec!["+x", "15550111"]);
    }

    #[test]
    fn admins_on_a_platform_include_unscoped_ids_once() {
        let p = policy(json!({"adminUsers": ["telegram:5", "discord:6", "7", "Telegram:7"]}));
        assert_eq!(p.admins_on("telegram"), vec!["5", "7"]);
        assert_eq!(p.admins_on("discord"), vec!["6", "7"]);
        assert_eq!(p.admins_on("slack"), vec!["7"]);
        assert!(CommandPolicy::default().admins_on("telegram").is_empty());
    }

    #[test]
    fn default_policy_denies_admin_commands() {
        let p = CommandPolicy::from_config(&Value::Null).expect("null is default");
        assert_eq!(p, CommandPolicy::default());
        assert_eq!(authorize(&Command::Jobs, &sender("1"), &p), Decision::Deny(reply::ACCESS_DENIED_ADMIN.into()));
    }

    #[test]
    fn policy_errors_name_the_key() {
        let cases = [
            (json!([]), "`comfy.commands`"),
            (json!({"admins": []}), "`comfy.commands.admins`: unknown key"),
            (json!({"adminUsers": "1"}), "`comfy.commands.adminUsers`"),
            (json!({"adminUsers": ["1", ""]}), "`comfy.commands.adminUsers[1]`"),
            (json!({"trustedUsers": [true]}), "`comfy.commands.trustedUsers[0]`"),
            (json!({"trustedChats": [1.5]}), "`comfy.commands.trustedChats[0]`"),
            (json!({"allowFrom": []}), "`comfy.commands.allowFrom`"),
            (json!({"allowFrom": {"owner": []}}), "`comfy.commands.allowFrom.owner`"),
            (json!({"allowFrom": {"run": [null]}}), "`comfy.commands.allowFrom.run[0]`"),
            (json!({"overrides": []}), "`comfy.commands.overrides`"),
            (json!({"overrides": {"/nope": "admin"}}), "`comfy.commands.overrides./nope`: unknown command"),
            (json!({"overrides": {"/run": "root"}}), "`comfy.commands.overrides./run`"),
        ];
        for (section, want) in cases {
            let err = CommandPolicy::from_config(&section).expect_err("must be refused");
            assert!(err.to_string().starts_with(want), "{section}: {err}");
        }
    }
}
