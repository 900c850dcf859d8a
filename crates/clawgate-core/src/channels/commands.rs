//! The chat-command registry: every command a chat user can type, registered once (name,
//! aliases, `/help` line, who may use it), one parser, one dispatch for every surface (Telegram,
//! Discord, the web chat's `chat.send`, and any later channel).
//!
//! - Conversation commands, for everyone: `/new` (`/reset`), `/status`, `/help` (`/start`).
//! - ComfyUI commands, while ComfyUI is configured: [`Verb`]'s table (`/run`, `/jobs`, …), each
//!   governed by the `comfy.commands` policy ([`CommandPolicy::may_use`]). `/status <job>` is
//!   ComfyUI's; a bare `/status` is the conversation's, followed by each ComfyUI worker's state
//!   for senders the policy lets use ComfyUI's `/status`.
//!
//! `/help` lists exactly the commands its sender may use, and how to type them on the sender's
//! platform (Slack keeps `/…` for its own commands, so `!name` works as `/name` everywhere).
//! Anything that is not a registered command (an unknown `/word`, a path like `/tmp/x`, ordinary
//! text) goes to the agent.

use std::sync::{Arc, LazyLock};

use serde_json::{Value, json};

use clawgate_channels::{AccountConfig, InboundMessage, policy::listed};
use clawgate_comfy::command::{Command, CommandPolicy, SenderCtx, Verb, parse_args};
use clawgate_store::{SessionStore, StoreError};

use crate::agent::AgentService;
use crate::events::Events;
use crate::gateway::Store;
use crate::time::now_ms;

/// Who sent a command, the conversation it belongs to, and where a job's results go.
#[derive(Debug, Clone)]
pub struct CommandCaller {
    /// `telegram`, `discord`, `webchat`, …
    pub platform: String,
    /// The sender's platform id (for a WS client, its device or client id).
    pub sender_id: String,
    /// The sender's @username, if the platform has one.
    pub sender_username: Option<String>,
    /// The chat it came from (for the web chat, the session key).
    pub chat_id: String,
    /// Runs `/run` without approval (a channel's `allowFrom`; an operator WS client).
    pub trusted: bool,
    /// May use admin commands whatever `comfy.commands.adminUsers` says (an operator WS client).
    pub is_admin: bool,
    /// Where a job's images and notices go (`{channel, account, chatId, threadId}`, or
    /// `{channel: "webchat", sessionKey}`).
    pub deliver_to: Value,
    /// The conversation's session (`/new`, `/status`).
    pub session_key: String,
    /// The agent that answers in it.
    pub agent_id: String,
}

impl CommandCaller {
    /// The sender of a channel message that passed the gate; trusted when the account's
    /// `allowFrom` lists them.
    pub(crate) fn from_channel(cfg: &AccountConfig, msg: &InboundMessage, session_key: &str, agent_id: &str) -> Self {
        Self {
            platform: msg.channel.clone(),
            sender_id: msg.sender_id.clone(),
            sender_username: msg.sender_username.clone(),
            chat_id: msg.chat_id.clone(),
            trusted: listed(&cfg.allow_from, &msg.sender_id, msg.sender_username.as_deref()),
            is_admin: false,
            deliver_to: json!({"channel": msg.channel, "account": msg.account, "chatId": msg.chat_id,
                               "threadId": msg.thread_id}),
            session_key: session_key.to_owned(),
            agent_id: agent_id.to_owned(),
        }
    }

    /// The sender as the `comfy.commands` policy sees them.
    pub(crate) fn sender(&self) -> SenderCtx<'_> {
        SenderCtx {
            platform: &self.platform,
            user_id: &self.sender_id,
            chat_id: &self.chat_id,
            is_admin: self.is_admin,
            trusted: self.trusted,
        }
    }
}

/// What a registered command does.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Action {
    /// The commands this sender may use.
    Help,
    /// A fresh conversation.
    Reset,
    /// The conversation's session and model; with an argument, a ComfyUI job's state.
    Status,
    /// A ComfyUI command.
    Comfy(Verb),
}

/// One registered command.
#[derive(Debug, Clone, Copy)]
struct Spec {
    /// Its name, with the slash.
    name: &'static str,
    /// Its other names, with the slash.
    aliases: &'static [&'static str],
    /// Its line in `/help`.
    help: &'static str,
    action: Action,
}

impl Spec {
    /// Who may use it: conversation commands are everyone's; a ComfyUI command is its
    /// `comfy.commands` class's (`/status <job>` included, checked when it runs).
    fn may_use(&self, sender: &SenderCtx<'_>, policy: &CommandPolicy) -> bool {
        match self.action {
            Action::Help | Action::Reset | Action::Status => true,
            Action::Comfy(verb) => policy.may_use(verb, sender).is_ok(),
        }
    }

    fn is_named(&self, name: &str) -> bool {
        let is = |n: &str| n.strip_prefix('/').is_some_and(|n| n.eq_ignore_ascii_case(name));
        is(self.name) || self.aliases.iter().any(|a| is(a))
    }
}

/// The conversation commands.
const CONVERSATION: [Spec; 3] = [
    Spec {
        name: "/new",
        aliases: &["/reset"],
        help: "/new or /reset — start a fresh conversation",
        action: Action::Reset,
    },
    Spec {
        name: "/status",
        aliases: &[],
        help: "/status — this conversation's session and model",
        action: Action::Status,
    },
    Spec { name: "/help", aliases: &["/start"], help: "/help — this list", action: Action::Help },
];

/// `/status`'s line in `/help` for a sender who may also ask about a ComfyUI job.
const STATUS_WITH_JOBS: &str =
    "/status [job] — this conversation's session and model and each ComfyUI worker's state, or a job's state";

/// The commands known while ComfyUI is configured or not.
#[derive(Debug)]
struct Registry {
    specs: Vec<Spec>,
}

static PLAIN: LazyLock<Registry> = LazyLock::new(|| Registry::new(false));
static WITH_COMFY: LazyLock<Registry> = LazyLock::new(|| Registry::new(true));

fn registry(comfy: bool) -> &'static Registry {
    if comfy { &WITH_COMFY } else { &PLAIN }
}

impl Registry {
    fn new(comfy: bool) -> Self {
        let mut specs = CONVERSATION.to_vec();
        if comfy {
            // `/help` and `/status` are registered above; ComfyUI's policy still governs
            // `/status <job>`.
            let comfy_verbs = Verb::ALL.into_iter().filter(|v| !matches!(v, Verb::Help | Verb::Status));
            specs.extend(comfy_verbs.map(|verb| Spec {
                name: verb.name(),
                aliases: verb.aliases(),
                help: verb.help_line(),
                action: Action::Comfy(verb),
            }));
        }
        Self { specs }
    }

    /// `[@bot] /name[@bot] args` → the command and its argument text. `None` when the text is not
    /// a registered command. `!name` is the same as `/name` on every platform: Slack takes a
    /// message that starts with `/` for its own slash commands, so its users need another prefix.
    fn parse<'t>(&self, text: &'t str) -> Option<(&Spec, &'t str)> {
        let (mut head, mut rest) = split_word(text);
        if head.starts_with('@') || (head.starts_with("<@") && head.ends_with('>')) {
            // `@bot /status` in a group; `<@id> /status` as Discord writes a mention.
            (head, rest) = split_word(rest);
        }
        let name = head.strip_prefix('/').or_else(|| head.strip_prefix('!'))?;
        let name = name.split_once('@').map_or(name, |(name, _bot)| name);
        if name.is_empty() {
            return None;
        }
        let spec = self.specs.iter().find(|s| s.is_named(name))?;
        Some((spec, rest.trim()))
    }

    /// The `/help` text: the commands `sender` may use, conversation ones first, then ComfyUI's
    /// by class (admin-only ones last).
    fn help(&self, sender: &SenderCtx<'_>, policy: &CommandPolicy) -> String {
        let comfy = self.specs.iter().any(|s| matches!(s.action, Action::Comfy(_)));
        let mut usable: Vec<&Spec> = self.specs.iter().filter(|s| s.may_use(sender, policy)).collect();
        usable.sort_by_key(|s| match s.action {
            Action::Comfy(verb) => 1 + policy.class_of(verb) as u8,
            _ => 0,
        });
        let mut out = "Commands:".to_owned();
        for spec in usable {
            out.push('\n');
            out.push_str(match spec.action {
                Action::Status if comfy && policy.may_use(Verb::Status, sender).is_ok() => STATUS_WITH_JOBS,
                _ => spec.help,
            });
        }
        if let Some(syntax) = platform_syntax(sender.platform) {
            out.push_str("\n\n");
            out.push_str(syntax);
        }
        out.push_str("\n\nAnything else is sent to the assistant.");
        out
    }
}

/// How commands are typed on a platform, where that differs from a plain `/name`.
fn platform_syntax(platform: &str) -> Option<&'static str> {
    match platform {
        "slack" => Some(
            "On Slack, a message that starts with / goes to Slack's own commands: use the app's slash \
             commands (/clawgate status, or /status where the app registers it), start a message with ! \
             instead (!status, !help), or mention me first in a channel (@bot /status).",
        ),
        "telegram" => Some("In a group, add my name (/status@my_bot) or mention me first (@my_bot /status)."),
        "discord" => Some("In a server channel, mention me first: @bot /status."),
        _ => None,
    }
}

/// The first whitespace-separated word and the rest.
fn split_word(s: &str) -> (&str, &str) {
    let s = s.trim_start();
    s.split_at(s.find(char::is_whitespace).unwrap_or(s.len()))
}

/// The ComfyUI side of the chat commands, as the registry sees it: whether ComfyUI is configured,
/// the `comfy.commands` policy, and running a ComfyUI command. Defined here so the commands
/// depend on this narrow trait, not on the comfy service or the gateway; the composition root
/// implements it.
#[async_trait::async_trait]
pub trait ComfyCommands: Send + Sync + 'static {
    /// Is ComfyUI configured (its commands exist only then)?
    fn enabled(&self) -> bool;

    /// The `comfy.commands` policy in force.
    fn policy(&self) -> CommandPolicy;

    /// Run a ComfyUI command the registry recognised (authorized against `policy` there);
    /// the reply text.
    async fn run(&self, caller: &CommandCaller, policy: &CommandPolicy, cmd: Command) -> String;
}

/// The chat-command dispatcher: every channel and the web chat answer commands through it.
/// Cheap to clone; built with what the commands use.
#[derive(Clone)]
pub struct Commands {
    store: Store,
    events: Events,
    agents: AgentService,
    comfy: Arc<dyn ComfyCommands>,
    /// clawgate's version (`/status`).
    version: Arc<str>,
}

impl std::fmt::Debug for Commands {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Commands").field("comfy", &self.comfy.enabled()).finish_non_exhaustive()
    }
}

impl Commands {
    /// A dispatcher over these services.
    pub fn new(
        store: Store,
        events: Events,
        agents: AgentService,
        comfy: Arc<dyn ComfyCommands>,
        version: &str,
    ) -> Self {
        Self { store, events, agents, comfy, version: version.into() }
    }

    /// Whether `text` is a command the gateway answers (ComfyUI's count only while it is
    /// configured).
    pub(crate) fn is_command(&self, text: &str) -> bool {
        registry(self.comfy.enabled()).parse(text).is_some()
    }

    /// Answers a command; `None` when the text is not one (the agent takes it).
    pub(crate) async fn handle(&self, caller: &CommandCaller, text: &str) -> Option<String> {
        let comfy = self.comfy.enabled();
        let (spec, args) = registry(comfy).parse(text)?;
        let policy = || self.comfy.policy();
        Some(match spec.action {
            Action::Help => registry(comfy).help(&caller.sender(), &policy()),
            Action::Reset => self.reset(caller).await,
            Action::Status => match comfy.then(|| parse_args(Verb::Status, args)) {
                None => self.status(caller).await,
                // The conversation, then each ComfyUI worker for senders who may ask ComfyUI.
                Some(cmd @ Command::Status { job: None }) => {
                    let mut text = self.status(caller).await;
                    let policy = policy();
                    if policy.may_use(Verb::Status, &caller.sender()).is_ok() {
                        text.push_str("\n\n");
                        text.push_str(&self.comfy.run(caller, &policy, cmd).await);
                    }
                    text
                }
                Some(cmd) => self.comfy.run(caller, &policy(), cmd).await,
            },
            Action::Comfy(verb) => self.comfy.run(caller, &policy(), parse_args(verb, args)).await,
        })
    }

    /// `/new`: the session starts a new transcript (or is created).
    async fn reset(&self, caller: &CommandCaller) -> String {
        let (store, now) = (&self.store, now_ms());
        let key = &caller.session_key;
        let r = match store.reset_session(key, now).await {
            Ok(_) => Ok(()),
            Err(StoreError::NotFound) => store.ensure_session(key, &caller.agent_id, now).await.map(|_| ()),
            Err(e) => Err(e),
        };
        match r {
            Ok(()) => {
                self.events.session_changed(key, "reset");
                "Started a new conversation. Earlier messages are no longer part of the context.".to_owned()
            }
            Err(e) => format!("Could not reset the conversation: {e}"),
        }
    }

    /// A bare `/status`: the conversation's session, agent, model and runs.
    async fn status(&self, caller: &CommandCaller) -> String {
        let (key, agent_id) = (&caller.session_key, &caller.agent_id);
        let agents = self.agents.agents();
        let model = agents.get(agent_id).map(|a| agents.model_for(a)).unwrap_or_else(|| "(unknown)".to_owned());
        let (count, active) = match self.store.get_session(key).await {
            Ok(Some(s)) => (s.message_count, self.agents.active_runs(key).len()),
            _ => (0, 0),
        };
        format!(
            "Session: {key}\nAgent: {agent_id}\nModel: {model}\nMessages: {count}\nRunning: {active}\nGateway: clawgate {}",
            self.version
        )
    }
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    fn names(text: &str, comfy: bool) -> Option<(&'static str, &str)> {
        registry(comfy).parse(text).map(|(spec, args)| (spec.name, args))
    }

    fn sender(user: &str) -> SenderCtx<'_> {
        SenderCtx { platform: "telegram", user_id: user, chat_id: "-100", is_admin: false, trusted: false }
    }

    fn policy(section: Value) -> CommandPolicy {
        CommandPolicy::from_config(&section).expect("valid policy")
    }

    #[test]
    fn parses_names_aliases_bot_suffixes_and_mentions() {
        assert_eq!(names("/new", false), Some(("/new", "")));
        assert_eq!(names("/RESET", false), Some(("/new", "")));
        assert_eq!(names("  /Status@my_bot extra words ", false), Some(("/status", "extra words")));
        assert_eq!(names("@my_bot /status p-1", true), Some(("/status", "p-1")));
        assert_eq!(names("/start", false), Some(("/help", "")));
        assert_eq!(names("/help@MyBot", true), Some(("/help", "")));
        assert_eq!(names("/queue", true), Some(("/jobs", "")));
        assert_eq!(names("/cancel p-1,p-2", true), Some(("/stop", "p-1,p-2")));
        assert_eq!(names("/interrupt", true), Some(("/stop", "")));
        assert_eq!(names(r#"/run t k="a b""#, true), Some(("/run", r#"t k="a b""#)));
    }

    #[test]
    fn ordinary_text_unknown_commands_and_paths_go_to_the_agent() {
        for text in
            ["", "   ", "hello /new", "status", "/", "/ run x", "/unknown arg", "// run", "@bot hi", "/path/to/file"]
        {
            assert_eq!(names(text, true), None, "{text:?}");
        }
        // ComfyUI's commands exist only while ComfyUI is configured.
        for text in ["/run invert", "/jobs", "/approve apr_1", "/queue"] {
            assert_eq!(names(text, false), None, "{text:?}");
            assert!(names(text, true).is_some(), "{text:?}");
        }
    }

    #[test]
    fn every_command_and_alias_is_registered_once() {
        let reg = registry(true);
        let mut seen = std::collections::BTreeSet::new();
        for spec in &reg.specs {
            for name in std::iter::once(&spec.name).chain(spec.aliases) {
                assert!(seen.insert(name.to_ascii_lowercase()), "{name} registered twice");
                assert_eq!(names(name, true).map(|(n, _)| n), Some(spec.name), "{name}");
            }
        }
        for verb in Verb::ALL {
            assert!(seen.contains(verb.name()), "{} is reachable", verb.name());
        }
    }

    #[test]
    fn help_without_comfy_lists_the_conversation_commands() {
        let line = SenderCtx { platform: "line", ..sender("1") };
        assert_eq!(
            registry(false).help(&line, &CommandPolicy::default()),
            "Commands:\n/new or /reset — start a fresh conversation\n/status — this conversation's session and model\n\
             /help — this list\n\nAnything else is sent to the assistant."
        );
    }

    #[test]
    fn bang_is_a_command_prefix_and_discord_mentions_are_skipped() {
        assert_eq!(names("!status", true), Some(("/status", "")));
        assert_eq!(names("!RUN invert seed=1", true), Some(("/run", "invert seed=1")));
        assert_eq!(names("@bot !stop p-1", true), Some(("/stop", "p-1")));
        assert_eq!(names("<@220000000000000009> /status", true), Some(("/status", "")));
        assert_eq!(names("<@220000000000000009> !help", false), Some(("/help", "")));
        for text in ["!", "! status", "!!status", "!unknown", "wow!", "!important news", "<@1>", "<@1> hello"] {
            assert_eq!(names(text, true), None, "{text:?}");
        }
    }

    #[test]
    fn help_shows_each_platforms_syntax() {
        let p = policy(json!({"adminUsers": ["slack:U1", "telegram:1"]}));
        let reg = registry(true);
        let on = |platform: &'static str, user: &'static str| SenderCtx { platform, ..sender(user) };
        let slack = reg.help(&on("slack", "U2"), &p);
        assert!(
            slack.contains("/clawgate status") && slack.contains("start a message with ! instead (!status, !help)"),
            "{slack}"
        );
        let telegram = reg.help(&on("telegram", "2"), &p);
        assert!(telegram.contains("/status@my_bot") && !telegram.contains("!status"), "{telegram}");
        let discord = reg.help(&on("discord", "2"), &p);
        assert!(discord.contains("mention me first: @bot /status"), "{discord}");
        for plain in ["line", "whatsapp", "webchat"] {
            let text = reg.help(&on(plain, "2"), &p);
            assert_eq!(text.split("\n\n").count(), 2, "no syntax note on {plain}: {text}");
        }
        assert_eq!(slack.split("\n\n").count(), 3, "{slack}");
        // The list is the same everywhere; admin commands only for the platform's admins.
        let commands = |text: &str| -> Vec<String> {
            text.lines().filter(|l| l.starts_with('/')).map(|l| l.split(' ').next().unwrap_or("").to_owned()).collect()
        };
        assert_eq!(commands(&slack), commands(&telegram));
        assert!(!commands(&slack).iter().any(|c| c == "/approve"), "{slack}");
        let slack_admin = reg.help(&on("slack", "U1"), &p);
        assert!(commands(&slack_admin).iter().any(|c| c == "/approve"), "{slack_admin}");
        assert!(!commands(&reg.help(&on("slack", "1"), &p)).iter().any(|c| c == "/approve"), "telegram's admin id");
    }

    #[test]
    fn help_lists_what_each_sender_may_use() {
        let p = policy(json!({"adminUsers": ["telegram:1"]}));
        let reg = registry(true);
        let lines = |s: &SenderCtx<'_>| -> Vec<String> {
            reg.help(s, &p)
                .lines()
                .filter(|l| l.starts_with('/'))
                .map(|l| l.split(' ').next().unwrap_or("").to_owned())
                .collect()
        };
        let guest = lines(&sender("2"));
        assert_eq!(guest, ["/new", "/status", "/help", "/history", "/templates", "/run"], "{guest:?}");
        let admin = lines(&sender("1"));
        for name in ["/new", "/run", "/jobs", "/approvals", "/approve", "/reject", "/stop", "/workers", "/trace"] {
            assert!(admin.iter().any(|l| l == name), "{name} for the admin: {admin:?}");
        }
        assert!(admin.iter().position(|l| l == "/run") < admin.iter().position(|l| l == "/approve"), "admin-only last");
        let web = SenderCtx { platform: "webchat", is_admin: true, ..sender("device") };
        assert_eq!(lines(&web).len(), reg.specs.len(), "an operator client may use everything");
        assert!(reg.help(&sender("2"), &p).contains(STATUS_WITH_JOBS));
    }

    #[test]
    fn help_follows_overrides_and_allow_lists() {
        let reg = registry(true);
        let open = policy(json!({"overrides": {"stop": "public", "run": "admin"}}));
        let text = reg.help(&sender("2"), &open);
        assert!(text.contains("\n/stop "), "{text}");
        assert!(!text.contains("\n/run "), "{text}");
        let listed = policy(json!({"allowFrom": {"public": ["telegram:7"]}}));
        let text = reg.help(&sender("8"), &listed);
        assert!(!text.contains("/templates") && !text.contains("job"), "{text}");
        assert!(text.contains("\n/new ") && text.contains("\n/status — "), "conversation commands stay: {text}");
        assert!(reg.help(&sender("7"), &listed).contains("/templates"));
    }
}
