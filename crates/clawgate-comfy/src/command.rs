//! The chat command grammar, who may run what, and the reply texts users see.
//!
//! Compatible with the ComfyUI-OpenClaw chat connector (`connector/router_dispatch.py`,
//! `router_execution_handlers.py`): the same commands, argument rules, command classes and reply
//! strings, so users and their muscle memory carry over.
//!
//! # Grammar
//!
//! `/run <template> [key=value ...] [free text] [--approval|--require-approval|-a]`, `/status [job]`,
//! `/jobs` (`/queue`), `/history [job]`, `/stop` (`/cancel`, `/interrupt`) `[job ...]`,
//! `/trace <id>`, `/approvals`, `/approve <id>`, `/reject <id> [reason]`, `/schedules`,
//! `/schedule run|enable|disable <id>`, `/templates`, `/workers`, `/help` (`/start`).
//! The gateway core's chat-command registry recognises the names (case-insensitive, with a
//! `@botname` suffix or a leading `@bot` mention) and hands the rest to [`parse_args`]; the names
//! and aliases come from [`Verb`]. Arguments split like Python's `shlex` in POSIX mode with only `"` as a quote
//! (`k="a b"` is `k=a b`; `'` is an ordinary character; a backslash escapes the next character
//! outside quotes and `"` or `\` inside them). Typographic quotes `“ ”`, which phone keyboards
//! substitute for `"`, count as `"`.
//!
//! # Authorization ([`authorize`])
//!
//! Every command has a class, `public`, `run` or `admin` ([`Verb::default_class`]), which configuration can
//! override per command. If the class has an `allowFrom` list, the sender must be on it (admins are
//! not exempt). Admin-class commands need an admin. A `/run` from a trusted sender (an admin, a
//! sender the channel marks trusted, or one on `trustedUsers`/`trustedChats`) runs directly;
//! anyone else's, and any `/run … --approval`, needs approval.
//!
//! # Configuration: the `comfy.commands` section ([`CommandPolicy::from_config`])
//!
//! ```json
//! {
//!   "adminUsers":   ["telegram:123456789", "discord:80351110224678912"],
//!   "trustedUsers": ["whatsapp:15551234567", "42"],
//!   "trustedChats": ["telegram:-1001234567890"],
//!   "allowFrom":    {"public": [], "run": [], "admin": []},
//!   "overrides":    {"/status": "admin", "stop": "run"}
//! }
//! ```
//!
//! Every key is optional. IDs are strings or integers; `platform:id` matches on that platform
//! only, a bare `id` on any platform (as the connector did; prefer the scoped form, since numeric
//! IDs of different platforms can collide). `overrides` keys are command names with or without
//! `/`, aliases included; values are `public`, `run` or `admin`. Unknown keys, unknown commands
//! and bad classes are errors naming the key, where the connector silently ignored them and left
//! the command at its default class.
//!
//! # Connector bugs fixed (comfyui-openclaw.md §3.10 and nearby)
//!
//! - §3.10.1: `/history <id>` read `status` at the top level of ComfyUI's `/history/{id}` reply;
//!   [`HistoryEntry::from_history_response`] reads `data[id].status`.
//! - §3.10.2: `/schedules` printed `id` and `cron`; [`ScheduleSummary::from_json`] reads
//!   `schedule_id`, `cron_expr` and `interval_sec`.
//! - §3.10.3: free text always went to `positive_prompt`; `/run` keeps it apart
//!   (the `free_text` of [`Command::Run`]) and [`crate::templates::Template::prompt_key`] picks the key
//!   from the template's `allowed_inputs` as intended.
//! - §3.10.4: the `/reject` reason was lost; it is kept in [`Command::Reject`] and echoed in
//!   [`reply::rejected`] so the gateway, which owns approvals, can record it.
//! - §3.10.5: every ordinary message got `Unknown command`; anything that is not a known slash
//!   command goes to the agent. Commands without the slash (`status`, `queue`) are no longer
//!   commands, as they would capture ordinary words.
//! - `/help` listed `/stop` as a general command although it is admin-only; the registry's
//!   `/help` lists only what the sender may use ([`CommandPolicy::may_use`]), overrides included.
//! - Overrides keyed by an alias (`/cancel`) never applied; they now resolve to the command.
//! - `/schedule` answered `Not implemented yet.` to anything but `run`; `enable` and `disable`
//!   are parsed, and the usage text names them.
//! - `/trace` always appended `...`; [`reply::trace`] does only when it cut the text.
//! - IDs typed in chat end up in backend URLs; they are checked against the backend's job-ID
//!   pattern (`[A-Za-z0-9][A-Za-z0-9._:-]{0,127}`) here instead of being trusted.
//!
//! Out of scope here: rate limiting, the command-length check (see [`reply::command_too_long`]),
//! reply truncation per platform (§3.10.7) and rate-limit bucket keys (§3.10.8) belong to the
//! channel layer.

use std::collections::{BTreeMap, BTreeSet};

use serde_json::Value;

/// Flags that force the approval flow for a `/run`.
const APPROVAL_FLAGS: [&str; 3] = ["--approval", "--require-approval", "-a"];

/// Longest job, approval, schedule or template id accepted from chat.
const MAX_ID_LEN: usize = 128;

/// A chat command, as the user wrote it, before authorization.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Command {
    /// `/run <template> [key=value ...] [free text] [--approval]`.
    Run {
        /// The template id.
        template: String,
        /// `key=value` arguments; values stay text until the template types them.
        inputs: BTreeMap<String, String>,
        /// The other words, joined by single spaces, for the template's prompt input.
        free_text: Option<String>,
        /// `--approval`, `--require-approval` or `-a` was given.
        require_approval: bool,
    },
    /// `/status [job]`: the system, or one job.
    Status {
        /// The job, if given.
        job: Option<String>,
    },
    /// `/jobs` (`/queue`).
    Jobs,
    /// `/history [job]`.
    History {
        /// The job, if given.
        job: Option<String>,
    },
    /// `/stop` (`/cancel`, `/interrupt`) `[job ...]`: no ids means the running job.
    Stop {
        /// Job ids, split on spaces and commas.
        jobs: Vec<String>,
    },
    /// `/trace <id>`.
    Trace {
        /// The job or trace id.
        id: String,
    },
    /// `/approvals`: pending approvals.
    Approvals,
    /// `/approve <id>`.
    Approve {
        /// The approval id.
        id: String,
    },
    /// `/reject <id> [reason]`.
    Reject {
        /// The approval id.
        id: String,
        /// Why, if given.
        reason: Option<String>,
    },
    /// `/schedules`.
    Schedules,
    /// `/schedule run|enable|disable <id>`.
    Schedule {
        /// What to do.
        action: ScheduleAction,
        /// The schedule id.
        id: String,
    },
    /// `/templates`.
    Templates,
    /// `/workers`.
    Workers,
    /// `/help` (`/start`).
    Help,
    /// A known command with unusable arguments; answer with [`reply::invalid`] after
    /// authorization, as the connector checked permissions before usage.
    Invalid {
        /// The command.
        verb: Verb,
        /// What is wrong.
        problem: Problem,
    },
}

impl Command {
    /// Which command this is.
    pub fn verb(&self) -> Verb {
        match self {
            Self::Run { .. } => Verb::Run,
            Self::Status { .. } => Verb::Status,
            Self::Jobs => Verb::Jobs,
            Self::History { .. } => Verb::History,
            Self::Stop { .. } => Verb::Stop,
            Self::Trace { .. } => Verb::Trace,
            Self::Approvals => Verb::Approvals,
            Self::Approve { .. } => Verb::Approve,
            Self::Reject { .. } => Verb::Reject,
            Self::Schedules => Verb::Schedules,
            Self::Schedule { .. } => Verb::Schedule,
            Self::Templates => Verb::Templates,
            Self::Workers => Verb::Workers,
            Self::Help => Verb::Help,
            Self::Invalid { verb, .. } => *verb,
        }
    }
}

/// What `/schedule` should do.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ScheduleAction {
    /// Run it now.
    Run,
    /// Turn it on.
    Enable,
    /// Turn it off.
    Disable,
}

/// Why a known command's arguments were refused.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Problem {
    /// Required arguments are missing or a subcommand is unknown.
    Usage,
    /// A `"` is not closed or the text ends with `\`.
    UnbalancedQuotes,
    /// An id has characters a backend id cannot have.
    BadId(String),
}

/// A command, named by its canonical (first) alias; what policy is keyed by.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Verb {
    /// `/run`.
    Run,
    /// `/status`.
    Status,
    /// `/jobs`, `/queue`.
    Jobs,
    /// `/history`.
    History,
    /// `/stop`, `/cancel`, `/interrupt`.
    Stop,
    /// `/trace`.
    Trace,
    /// `/approvals`.
    Approvals,
    /// `/approve`.
    Approve,
    /// `/reject`.
    Reject,
    /// `/schedules`.
    Schedules,
    /// `/schedule`.
    Schedule,
    /// `/templates`.
    Templates,
    /// `/workers`.
    Workers,
    /// `/help`, `/start`.
    Help,
}

impl Verb {
    /// Every command, in the order `/help` lists them.
    pub const ALL: [Verb; 14] = [
        Verb::Status,
        Verb::Run,
        Verb::Stop,
        Verb::History,
        Verb::Templates,
        Verb::Help,
        Verb::Jobs,
        Verb::Approvals,
        Verb::Approve,
        Verb::Reject,
        Verb::Schedules,
        Verb::Schedule,
        Verb::Trace,
        Verb::Workers,
    ];

    /// The canonical name, with its slash.
    pub fn name(self) -> &'static str {
        match self {
            Verb::Run => "/run",
            Verb::Status => "/status",
            Verb::Jobs => "/jobs",
            Verb::History => "/history",
            Verb::Stop => "/stop",
            Verb::Trace => "/trace",
            Verb::Approvals => "/approvals",
            Verb::Approve => "/approve",
            Verb::Reject => "/reject",
            Verb::Schedules => "/schedules",
            Verb::Schedule => "/schedule",
            Verb::Templates => "/templates",
            Verb::Workers => "/workers",
            Verb::Help => "/help",
        }
    }

    /// Its other names, with their slash.
    pub fn aliases(self) -> &'static [&'static str] {
        match self {
            Verb::Jobs => &["/queue"],
            Verb::Stop => &["/cancel", "/interrupt"],
            Verb::Help => &["/start"],
            _ => &[],
        }
    }

    /// Looks a command up by name or alias, with or without the slash, in any case.
    pub fn from_name(name: &str) -> Option<Verb> {
        let name = name.strip_prefix('/').unwrap_or(name);
        let is = |n: &str| n.strip_prefix('/').is_some_and(|n| n.eq_ignore_ascii_case(name));
        Verb::ALL.into_iter().find(|v| is(v.name()) || v.aliases().iter().any(|a| is(a)))
    }

    /// The class before overrides (the connector's table; `/templates` is public like `/help`,
    /// `/workers` admin since it describes the infrastructure).
    pub fn default_class(self) -> CommandClass {
        match self {
            Verb::Status | Verb::Help | Verb::History | Verb::Templates => CommandClass::Public,
            Verb::Run => CommandClass::Run,
            Verb::Stop
            | Verb::Approvals
            | Verb::Approve
            | Verb::Reject
            | Verb::Schedules
            | Verb::Schedule
            | Verb::Trace
            | Verb::Jobs
            | Verb::Workers => CommandClass::Admin,
        }
    }

    /// The one-line description in `/help`.
    pub fn help_line(self) -> &'static str {
        match self {
            Verb::Status => "/status [job] - System status, or one job's",
            Verb::Run => "/run <template> [key=value ...] [prompt text] [--approval] - Run a template",
            Verb::Stop => "/stop [job ...] - Stop the running job, or the jobs named",
            Verb::History => "/history <job> - A finished job's result",
            Verb::Templates => "/templates - List templates and their inputs",
            Verb::Help => "/help - This text",
            Verb::Jobs => "/jobs - Jobs in the queue",
            Verb::Approvals => "/approvals - Pending approvals",
            Verb::Approve => "/approve <id> - Approve and run",
            Verb::Reject => "/reject <id> [reason] - Reject",
            Verb::Schedules => "/schedules - List schedules",
            Verb::Schedule => "/schedule <run|enable|disable> <id> - Run or switch a schedule",
            Verb::Trace => "/trace <id> - A job's trace",
            Verb::Workers => "/workers - ComfyUI workers and their queues",
        }
    }

    fn usage(self) -> &'static str {
        match self {
            Verb::Run => "Usage: /run <template_id> [prompt text] [key=value ...] [--approval]",
            Verb::Approve => "Usage: /approve <id>",
            Verb::Reject => "Usage: /reject <id> [reason]",
            Verb::Schedule => "Usage: /schedule <run|enable|disable> <id>",
            Verb::Trace => "Usage: /trace <id>",
            Verb::History => "Usage: /history <prompt_id>",
            other => other.help_line(),
        }
    }
}

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

/// Reads the arguments of `verb` (the text after the command's name; the core's command
/// registry recognises the name). A known command with unusable arguments is
/// [`Command::Invalid`], answered after authorization.
pub fn parse_args(verb: Verb, args: &str) -> Command {
    let Some(args) = tokenize(args) else {
        return Command::Invalid { verb, problem: Problem::UnbalancedQuotes };
    };
    build(verb, args).unwrap_or_else(|problem| Command::Invalid { verb, problem })
}

fn is_quote(c: char) -> bool {
    matches!(c, '"' | '“' | '”')
}

/// POSIX-shlex splitting with `"` as the only quote. `None` on an open quote or trailing `\`.
fn tokenize(s: &str) -> Option<Vec<String>> {
    let mut tokens = Vec::new();
    let mut current = String::new();
    let mut in_token = false;
    let mut quoted = false;
    let mut chars = s.chars().peekable();
    while let Some(c) = chars.next() {
        if quoted {
            if is_quote(c) {
                quoted = false;
            } else if c == '\\' {
                match chars.peek().copied() {
                    Some(n) if is_quote(n) || n == '\\' => {
                        current.push(n);
                        chars.next();
                    }
                    Some(_) => current.push('\\'),
                    None => return None,
                }
            } else {
                current.push(c);
            }
        } else if c.is_whitespace() {
            if in_token {
                tokens.push(std::mem::take(&mut current));
                in_token = false;
            }
        } else if is_quote(c) {
            quoted = true;
            in_token = true;
        } else if c == '\\' {
            current.push(chars.next()?);
            in_token = true;
        } else {
            current.push(c);
            in_token = true;
        }
    }
    if quoted {
        return None;
    }
    if in_token {
        tokens.push(current);
    }
    Some(tokens)
}

/// A job, approval, schedule or template id, as the backend's job-ID pattern allows.
fn is_valid_id(s: &str) -> bool {
    let mut chars = s.chars();
    s.len() <= MAX_ID_LEN
        && chars.next().is_some_and(|c| c.is_ascii_alphanumeric())
        && chars.all(|c| c.is_ascii_alphanumeric() || matches!(c, '.' | '_' | ':' | '-'))
}

fn id(token: &str) -> Result<String, Problem> {
    if is_valid_id(token) { Ok(token.to_owned()) } else { Err(Problem::BadId(token.to_owned())) }
}

fn optional_id(args: &[String]) -> Result<Option<String>, Problem> {
    args.first().map(|t| id(t)).transpose()
}

fn required_id(args: &[String]) -> Result<String, Problem> {
    id(args.first().ok_or(Problem::Usage)?)
}

/// A `key=value` key: what template input keys look like.
fn is_input_key(s: &str) -> bool {
    !s.is_empty() && s.chars().all(|c| c.is_ascii_alphanumeric() || matches!(c, '_' | '-' | '.'))
}

fn build(verb: Verb, args: Vec<String>) -> Result<Command, Problem> {
    Ok(match verb {
        Verb::Run => build_run(args)?,
        Verb::Status => Command::Status { job: optional_id(&args)? },
        Verb::Jobs => Command::Jobs,
        Verb::History => Command::History { job: optional_id(&args)? },
        Verb::Stop => {
            let jobs = args
                .iter()
                .flat_map(|t| t.split(','))
                .map(str::trim)
                .filter(|t| !t.is_empty())
                .map(id)
                .collect::<Result<_, _>>()?;
            Command::Stop { jobs }
        }
        Verb::Trace => Command::Trace { id: required_id(&args)? },
        Verb::Approvals => Command::Approvals,
        Verb::Approve => Command::Approve { id: required_id(&args)? },
        Verb::Reject => {
            let id = required_id(&args)?;
            let reason = args[1..].iter().filter(|t| !t.is_empty()).cloned().collect::<Vec<_>>().join(" ");
            Command::Reject { id, reason: (!reason.is_empty()).then_some(reason) }
        }
        Verb::Schedules => Command::Schedules,
        Verb::Schedule => {
            let [action, target, ..] = args.as_slice() else { return Err(Problem::Usage) };
            let action = match action.to_lowercase().as_str() {
                "run" => ScheduleAction::Run,
                "enable" | "on" => ScheduleAction::Enable,
                "disable" | "off" => ScheduleAction::Disable,
                _ => return Err(Problem::Usage),
            };
            Command::Schedule { action, id: id(target)? }
        }
        Verb::Templates => Command::Templates,
        Verb::Workers => Command::Workers,
        Verb::Help => Command::Help,
    })
}

fn build_run(args: Vec<String>) -> Result<Command, Problem> {
    let mut require_approval = false;
    let mut template = None;
    let mut inputs = BTreeMap::new();
    let mut words = Vec::new();
    for token in args {
        if APPROVAL_FLAGS.contains(&token.as_str()) {
            require_approval = true;
            continue;
        }
        if template.is_none() {
            template = Some(id(&token)?);
            continue;
        }
        if let Some((key, value)) = token.split_once('=')
            && is_input_key(key.trim())
        {
            inputs.insert(key.trim().to_owned(), value.trim().to_owned());
            continue;
        }
        if !token.is_empty() {
            words.push(token);
        }
    }
    let template = template.ok_or(Problem::Usage)?;
    let free_text = (!words.is_empty()).then(|| words.join(" "));
    Ok(Command::Run { template, inputs, free_text, require_approval })
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
                    set.scoped.insert((platform.to_ascii_lowercase(), id.to_owned()));
                }
                _ => {
                    set.any_platform.insert(text);
                }
            }
        }
        Ok(set)
    }
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

    fn is_admin(&self, sender: &SenderCtx<'_>) -> bool {
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

/// A job's state, as the jobs API names them.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum JobState {
    /// Waiting in the queue.
    Pending,
    /// Running.
    InProgress,
    /// Finished with outputs.
    Completed,
    /// Finished with an error.
    Failed,
    /// Stopped.
    Cancelled,
}

impl JobState {
    /// The wire name (`pending`, `in_progress`, …).
    pub fn from_wire(s: &str) -> Option<Self> {
        match s {
            "pending" => Some(Self::Pending),
            "in_progress" => Some(Self::InProgress),
            "completed" => Some(Self::Completed),
            "failed" => Some(Self::Failed),
            "cancelled" => Some(Self::Cancelled),
            _ => None,
        }
    }

    /// The label users see.
    pub fn label(self) -> &'static str {
        match self {
            Self::Pending => "pending",
            Self::InProgress => "in progress",
            Self::Completed => "completed",
            Self::Failed => "failed",
            Self::Cancelled => "cancelled",
        }
    }
}

/// A job's place in the queue: 1-based `position` of `total` waiting.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct QueuePosition {
    /// 1 is next.
    pub position: usize,
    /// Jobs waiting in all.
    pub total: usize,
}

/// What `/run` submitted.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct JobSubmitted<'a> {
    /// The ComfyUI prompt id.
    pub prompt_id: Option<&'a str>,
    /// The template id.
    pub template: &'a str,
    /// The trace id.
    pub trace_id: Option<&'a str>,
    /// Where it waits, when known.
    pub queue: Option<QueuePosition>,
}

/// One job, for `/status <job>`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct JobView<'a> {
    /// The job id.
    pub id: &'a str,
    /// Its state.
    pub state: JobState,
    /// The template it runs, when known.
    pub template: Option<&'a str>,
    /// Its place in the queue, for pending jobs.
    pub queue: Option<QueuePosition>,
    /// The failure, for failed jobs.
    pub error: Option<&'a str>,
}

/// One pending approval, for `/approvals`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ApprovalSummary<'a> {
    /// The approval id.
    pub id: &'a str,
    /// `pending`, `approved`, …
    pub status: &'a str,
    /// The template it would run.
    pub template: &'a str,
    /// Who asked, when known.
    pub requested_by: Option<&'a str>,
    /// `trigger`, `chatops`, `scheduler`, …
    pub source: &'a str,
}

/// What `/stop` did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum StopOutcome {
    /// The running job was interrupted.
    GlobalInterrupt,
    /// One job was cancelled through the jobs API.
    Cancelled(String),
    /// One job was interrupted by id because the host has no jobs cancel API.
    TargetedInterrupt(String),
    /// Several jobs were cancelled.
    CancelledMany(usize),
    /// The backend refused.
    Failed(String),
}

/// A finished (or failed) job's entry in ComfyUI's `/history/{id}`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HistoryEntry {
    /// `success`, `error`, or `unknown` when absent.
    pub status: String,
    /// ComfyUI's `completed` flag.
    pub completed: bool,
    /// Output images across all nodes.
    pub images: usize,
}

impl HistoryEntry {
    /// Reads the entry for `prompt_id` from a `/history/{prompt_id}` reply, which ComfyUI wraps
    /// as `{prompt_id: {…}}` (§3.10.1). `None` while the prompt is not in history (`{}`).
    pub fn from_history_response(prompt_id: &str, body: &Value) -> Option<Self> {
        let entry = body.get(prompt_id)?.as_object()?;
        let status = entry.get("status");
        let images = entry
            .get("outputs")
            .and_then(Value::as_object)
            .map(|outputs| {
                outputs.values().filter_map(|o| o.get("images").and_then(Value::as_array)).map(Vec::len).sum()
            })
            .unwrap_or(0);
        Some(Self {
            status: status.and_then(|s| s.get("status_str")).and_then(Value::as_str).unwrap_or("unknown").to_owned(),
            completed: status.and_then(|s| s.get("completed")).and_then(Value::as_bool).unwrap_or(false),
            images,
        })
    }
}

/// One schedule, for `/schedules`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ScheduleSummary {
    /// `sched_…`.
    pub id: String,
    /// Whether it fires.
    pub enabled: bool,
    /// The cron expression, for cron schedules.
    pub cron_expr: Option<String>,
    /// The period, for interval schedules.
    pub interval_sec: Option<u64>,
    /// The template it runs.
    pub template_id: String,
}

impl ScheduleSummary {
    /// Reads one item of `GET /openclaw/schedules`' `schedules[]`, by the names the backend
    /// sends (§3.10.2). `None` without a `schedule_id`.
    pub fn from_json(item: &Value) -> Option<Self> {
        let text = |k: &str| item.get(k).and_then(Value::as_str).map(str::to_owned);
        Some(Self {
            id: text("schedule_id")?,
            enabled: item.get("enabled").and_then(Value::as_bool).unwrap_or(false),
            cron_expr: text("cron_expr").filter(|c| !c.is_empty()),
            interval_sec: item.get("interval_sec").and_then(Value::as_u64),
            template_id: text("template_id").unwrap_or_else(|| "unknown".to_owned()),
        })
    }
}

/// One ComfyUI worker, for `/workers`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct WorkerSummary<'a> {
    /// The worker's configured name.
    pub name: &'a str,
    /// Whether the last health check succeeded.
    pub online: bool,
    /// Prompts queued or running on it, when known.
    pub queue_remaining: Option<u64>,
}

/// The texts users see. Where the connector had a fixed string, it is reproduced exactly.
pub mod reply {
    use super::{
        ApprovalSummary, HistoryEntry, JobState, JobSubmitted, JobView, Problem, QueuePosition, ScheduleAction,
        ScheduleSummary, StopOutcome, Verb, WorkerSummary,
    };
    use crate::templates::TemplateInfo;

    /// The sender is not on the class's `allowFrom` list.
    pub const ACCESS_DENIED_ALLOW_LIST: &str = "[Access Denied] You are not in the allow-list for this command.";
    /// An admin-class command from a non-admin.
    pub const ACCESS_DENIED_ADMIN: &str = "[Access Denied] This command requires Admin privileges.";
    /// Over the per-user or per-chat rate.
    pub const RATE_LIMITED: &str = "[Rate Limited] Too many requests. Please wait a moment.";
    /// An open quote or a trailing backslash.
    pub const PARSE_FAILED: &str = "[Error] Parsing command arguments failed (unbalanced quotes?).";
    /// A handler failed unexpectedly; details go to the log, not the chat.
    pub const INTERNAL_ERROR: &str = "[Internal Error]";
    /// `/approvals` with nothing pending.
    pub const NO_PENDING_APPROVALS: &str = "No pending approvals.";
    /// `/schedules` with none.
    pub const NO_SCHEDULES: &str = "No schedules found.";
    /// `/jobs` with an empty snapshot.
    pub const JOBS_EMPTY: &str = "[Jobs] No jobs in the authoritative snapshot.";
    /// `/jobs` refused by the backend (401/403).
    pub const JOBS_ACCESS_DENIED: &str = "[Jobs] Access denied. Check connector Admin authorization and token posture.";
    /// `/jobs` got a reply it cannot trust.
    pub const JOBS_MALFORMED: &str = "[Jobs] Malformed or unsupported jobs response.";
    /// `/jobs` could not reach the backend.
    pub const JOBS_UNAVAILABLE: &str = "[Jobs] Could not fetch the authoritative jobs snapshot.";
    /// `/templates` with none loaded.
    pub const NO_TEMPLATES: &str = "No templates available.";
    /// `/workers` with none configured.
    pub const NO_WORKERS: &str = "No ComfyUI workers configured.";

    /// Longest trace text shown.
    const TRACE_MAX_CHARS: usize = 1000;
    /// Jobs listed by `/jobs`.
    const JOBS_SHOWN: usize = 5;
    /// Job ids in `/jobs` are cut to this many characters, `...` included.
    const JOB_ID_SHOWN: usize = 24;

    /// A message longer than the configured maximum.
    pub fn command_too_long(len: usize, max: usize) -> String {
        format!("[Error] Command too long ({len} chars). Max: {max}.")
    }

    /// The answer to [`super::Command::Invalid`].
    pub fn invalid(verb: Verb, problem: &Problem) -> String {
        match problem {
            Problem::Usage => verb.usage().to_owned(),
            Problem::UnbalancedQuotes => PARSE_FAILED.to_owned(),
            Problem::BadId(id) => {
                format!("[Error] Invalid id \"{id}\": use letters, digits and . _ : - (at most 128).\n{}", verb.usage())
            }
        }
    }

    /// `[Error] <err>`.
    pub fn error(err: &str) -> String {
        format!("[Error] {err}")
    }

    /// `/status` when the backend answers.
    pub fn system_online(logs: u64, errors: u64, queue: u64) -> String {
        format!("[Online] System Status\n- Logs: {logs}\n- Errors: {errors}\n- Queue: {queue}")
    }

    /// `/status` when it does not.
    pub fn system_offline(err: &str) -> String {
        format!("[Offline] System Status\n- Error: {err}")
    }

    /// `queued, position 3 of 5`.
    pub fn queue_position(queue: QueuePosition) -> String {
        format!("queued, position {} of {}", queue.position, queue.total)
    }

    /// `/run` accepted. A missing field prints as `unknown`, as in the connector.
    pub fn job_submitted(job: &JobSubmitted<'_>) -> String {
        let mut out = format!(
            "[Job Submitted]\nID: {}\nTemplate: {}\nTrace: {}",
            job.prompt_id.unwrap_or("unknown"),
            job.template,
            job.trace_id.unwrap_or("unknown")
        );
        if let Some(queue) = job.queue {
            out.push_str("\nStatus: ");
            out.push_str(&queue_position(queue));
        }
        out
    }

    /// `/run` held for approval.
    pub fn approval_requested(approval_id: Option<&str>, trace_id: Option<&str>, expires_at: Option<&str>) -> String {
        let mut out = format!(
            "[Approval Requested]\nID: {}\nTrace: {}",
            approval_id.unwrap_or("unknown"),
            trace_id.unwrap_or("unknown")
        );
        if let Some(expires) = expires_at {
            out.push_str("\nExpires: ");
            out.push_str(expires);
        }
        out
    }

    /// `/run` refused by a template or the backend.
    pub fn submission_failed(err: &str) -> String {
        format!("[Submission Failed] Reason: {err}")
    }

    /// `/status <job>`.
    pub fn job_status(job: &JobView<'_>) -> String {
        let state = match (job.state, job.queue) {
            (JobState::Pending, Some(queue)) => queue_position(queue),
            (JobState::Pending, None) => "queued".to_owned(),
            (JobState::InProgress, _) => "running".to_owned(),
            (state, _) => state.label().to_owned(),
        };
        let mut out = format!("Job {}: {state}", job.id);
        if let Some(template) = job.template {
            out.push_str("\nTemplate: ");
            out.push_str(template);
        }
        if let (JobState::Failed, Some(err)) = (job.state, job.error) {
            out.push_str("\nError: ");
            out.push_str(err);
        }
        out
    }

    /// `/history <id>` for a prompt in ComfyUI's history.
    pub fn history(id: &str, entry: &HistoryEntry) -> String {
        format!("Job {id}: {}\nImages: {}", entry.status, entry.images)
    }

    /// `/history <id>` for a prompt not (yet) in history.
    pub fn history_not_found(id: &str) -> String {
        format!("Job {id}: not in history (still queued, running, removed, or unknown).")
    }

    /// `/jobs`: the snapshot summary, per-state counts of the returned page, and the first five
    /// jobs. `total` is the backend's total, `jobs` the returned page.
    pub fn jobs(total: usize, jobs: &[(&str, JobState)]) -> String {
        if jobs.is_empty() {
            return JOBS_EMPTY.to_owned();
        }
        let count = |s: JobState| jobs.iter().filter(|(_, state)| *state == s).count();
        let (p, i) = (count(JobState::Pending), count(JobState::InProgress));
        let (c, f, k) = (count(JobState::Completed), count(JobState::Failed), count(JobState::Cancelled));
        let mut out = format!(
            "[Jobs] Authoritative snapshot\nSnapshot total: {total}; returned page: {}\nPage states: Active {} (pending {p}, in progress {i}); Terminal {} (completed {c}, failed {f}, cancelled {k})",
            jobs.len(),
            p + i,
            c + f + k
        );
        for (id, state) in jobs.iter().take(JOBS_SHOWN) {
            out.push_str(&format!("\n- {} \u{2014} {}", cut_id(id), state.label()));
        }
        if jobs.len() > JOBS_SHOWN {
            out.push_str(&format!("\nShowing {JOBS_SHOWN} of {} returned jobs.", jobs.len()));
        }
        out
    }

    fn cut_id(id: &str) -> String {
        if id.chars().count() <= JOB_ID_SHOWN {
            id.to_owned()
        } else {
            let mut out: String = id.chars().take(JOB_ID_SHOWN - 3).collect();
            out.push_str("...");
            out
        }
    }

    /// `/jobs` when only ComfyUI's coarse queue count is available.
    pub fn jobs_fallback(queue_remaining: Option<u64>) -> String {
        match queue_remaining {
            Some(n) if n <= 1_000_000 => {
                format!("[Jobs fallback] Queue remaining: {n} (coarse count; not an authoritative jobs snapshot).")
            }
            _ => "[Jobs fallback] Coarse queue count is unavailable.".to_owned(),
        }
    }

    /// `/stop`.
    pub fn stop(outcome: &StopOutcome) -> String {
        match outcome {
            StopOutcome::GlobalInterrupt => "[Stop] Global Interrupt sent to ComfyUI.".to_owned(),
            StopOutcome::Cancelled(id) => format!("[Stop] Cancellation requested for job {id}."),
            StopOutcome::TargetedInterrupt(id) => {
                format!("[Stop] Targeted interrupt sent for job {id} (jobs cancel unsupported).")
            }
            StopOutcome::CancelledMany(n) => format!("[Stop] Cancellation requested for {n} jobs."),
            StopOutcome::Failed(err) => format!("[Stop Failed] {err}"),
        }
    }

    /// `/approvals`.
    pub fn approvals(items: &[ApprovalSummary<'_>], pending_count: usize) -> String {
        if items.is_empty() {
            return NO_PENDING_APPROVALS.to_owned();
        }
        let mut out = format!("Pending Approvals ({pending_count}):");
        for a in items {
            out.push_str(&format!(
                "\n- {} [{}] template={} by={} source={}",
                a.id,
                a.status,
                a.template,
                a.requested_by.unwrap_or("unknown"),
                a.source
            ));
        }
        out
    }

    /// `/approvals` failed.
    pub fn approvals_failed(err: &str) -> String {
        format!("[Error] Failed to list approvals: {err}")
    }

    /// `/approve <id>`: `executed` is the started prompt's id, `execution_error` why it did not
    /// start.
    pub fn approved(id: &str, executed: Option<&str>, execution_error: Option<&str>) -> String {
        match executed {
            Some(prompt_id) => format!("[Approved] {id}\nExecuted: {prompt_id}"),
            None => {
                let mut out = format!("[Approved] {id}\n(Not Executed)");
                if let Some(err) = execution_error {
                    out.push_str("\nError: ");
                    out.push_str(err);
                }
                out
            }
        }
    }

    /// `/reject <id> [reason]`.
    pub fn rejected(id: &str, reason: Option<&str>) -> String {
        match reason {
            Some(reason) => format!("[Rejected] {id}\nReason: {reason}"),
            None => format!("[Rejected] {id}"),
        }
    }

    /// `/approve` or `/reject` refused.
    pub fn action_failed(err: &str) -> String {
        format!("[Failed] {err}")
    }

    /// `/schedules`: `[+|-] <id>: <cron or interval> - <template>`.
    pub fn schedules(items: &[ScheduleSummary]) -> String {
        if items.is_empty() {
            return NO_SCHEDULES.to_owned();
        }
        let mut out = "Schedules:".to_owned();
        for s in items {
            let when = match (&s.cron_expr, s.interval_sec) {
                (Some(cron), _) => cron.clone(),
                (None, Some(secs)) => format!("every {secs}s"),
                (None, None) => "unscheduled".to_owned(),
            };
            let mark = if s.enabled { '+' } else { '-' };
            out.push_str(&format!("\n[{mark}] {}: {when} - {}", s.id, s.template_id));
        }
        out
    }

    /// `/schedule run|enable|disable <id>` succeeded.
    pub fn schedule_done(action: ScheduleAction, id: &str) -> String {
        match action {
            ScheduleAction::Run => format!("[Success] Schedule {id} triggered manually."),
            ScheduleAction::Enable => format!("[Success] Schedule {id} enabled."),
            ScheduleAction::Disable => format!("[Success] Schedule {id} disabled."),
        }
    }

    /// `/trace <id>`: the trace text, cut to 1000 characters with `...` when cut.
    pub fn trace(id: &str, text: &str) -> String {
        if text.chars().count() <= TRACE_MAX_CHARS {
            format!("Trace {id}: {text}")
        } else {
            let cut: String = text.chars().take(TRACE_MAX_CHARS).collect();
            format!("Trace {id}: {cut}...")
        }
    }

    /// `/templates`.
    pub fn templates(items: &[TemplateInfo]) -> String {
        if items.is_empty() {
            return NO_TEMPLATES.to_owned();
        }
        let mut out = "Templates:".to_owned();
        for t in items {
            out.push_str("\n- ");
            out.push_str(&t.id);
            if let Some(description) = &t.description {
                out.push_str(": ");
                out.push_str(description);
            }
            if !t.allowed_inputs.is_empty() {
                let shown: Vec<String> = t
                    .allowed_inputs
                    .iter()
                    .map(|k| match t.defaults.get(k) {
                        Some(serde_json::Value::String(s)) => format!("{k}={s}"),
                        Some(v) => format!("{k}={v}"),
                        None => k.clone(),
                    })
                    .collect();
                out.push_str(&format!(" (inputs: {})", shown.join(", ")));
            }
        }
        out
    }

    /// `/workers`.
    pub fn workers(items: &[WorkerSummary<'_>]) -> String {
        if items.is_empty() {
            return NO_WORKERS.to_owned();
        }
        let mut out = "Workers:".to_owned();
        for w in items {
            let state = if w.online { "online" } else { "offline" };
            match w.queue_remaining {
                Some(n) => out.push_str(&format!("\n- {}: {state}, queue {n}", w.name)),
                None => out.push_str(&format!("\n- {}: {state}", w.name)),
            }
        }
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn run(template: &str, inputs: &[(&str, &str)], free: Option<&str>, approval: bool) -> Command {
        Command::Run {
            template: template.to_owned(),
            inputs: inputs.iter().map(|(k, v)| ((*k).to_owned(), (*v).to_owned())).collect(),
            free_text: free.map(str::to_owned),
            require_approval: approval,
        }
    }

    fn sender(user: &str) -> SenderCtx<'_> {
        SenderCtx { platform: "telegram", user_id: user, chat_id: "-100", is_admin: false, trusted: false }
    }

    /// `/verb args` → the command, as the core's registry hands it over.
    fn parse(text: &str) -> Option<Command> {
        let (name, args) = text.split_once(' ').unwrap_or((text, ""));
        Some(parse_args(Verb::from_name(name.strip_prefix('/')?)?, args))
    }

    fn class_of(cmd: &Command) -> CommandClass {
        cmd.verb().default_class()
    }

    fn policy(section: Value) -> CommandPolicy {
        CommandPolicy::from_config(&section).expect("valid policy")
    }

    #[test]
    fn run_with_quoted_inputs_and_free_text() {
        assert_eq!(
            parse(r#"/run my-template prompt="hello world" steps=20"#),
            Some(run("my-template", &[("prompt", "hello world"), ("steps", "20")], None, false))
        );
        assert_eq!(
            parse("/run sdxl a red fox seed=-1 --approval at dusk"),
            Some(run("sdxl", &[("seed", "-1")], Some("a red fox at dusk"), true))
        );
        assert_eq!(parse("/run -a sdxl"), Some(run("sdxl", &[], None, true)));
        assert_eq!(parse("/run sdxl --require-approval"), Some(run("sdxl", &[], None, true)));
    }

    #[test]
    fn quoting_follows_posix_shlex_with_double_quotes_only() {
        assert_eq!(parse("/run t it's fine"), Some(run("t", &[], Some("it's fine"), false)));
        assert_eq!(parse(r#"/run t k="a \"b\" c""#), Some(run("t", &[("k", r#"a "b" c"#)], None, false)));
        assert_eq!(parse(r#"/run t k="C:\dir""#), Some(run("t", &[("k", r"C:\dir")], None, false)));
        assert_eq!(parse(r"/run t a\ b"), Some(run("t", &[], Some("a b"), false)));
        assert_eq!(parse("/run t k=“smart quotes”"), Some(run("t", &[("k", "smart quotes")], None, false)));
        assert_eq!(parse(r#"/run t "" x"#), Some(run("t", &[], Some("x"), false)));
        for bad in [r#"/run t k="open"#, r"/run t trailing\", r#"/reject apr_1 "why"#] {
            let cmd = parse(bad).expect("a command");
            assert!(matches!(cmd, Command::Invalid { problem: Problem::UnbalancedQuotes, .. }), "{bad}");
            assert_eq!(reply::invalid(cmd.verb(), &Problem::UnbalancedQuotes), reply::PARSE_FAILED);
        }
    }

    #[test]
    fn unicode_text_survives() {
        assert_eq!(
            parse("/run sdxl 猫が 寝ている　🐱 style=水彩"),
            Some(run("sdxl", &[("style", "水彩")], Some("猫が 寝ている 🐱"), false))
        );
        // A token whose "key" is not an input name stays free text.
        assert_eq!(parse("/run t 1+1=2 ok"), Some(run("t", &[], Some("1+1=2 ok"), false)));
    }

    #[test]
    fn run_without_template_is_usage() {
        for text in ["/run", "/run   ", "/run --approval"] {
            let cmd = parse(text).expect("a command");
            assert_eq!(cmd, Command::Invalid { verb: Verb::Run, problem: Problem::Usage }, "{text}");
            assert_eq!(
                reply::invalid(Verb::Run, &Problem::Usage),
                "Usage: /run <template_id> [prompt text] [key=value ...] [--approval]"
            );
        }
        let cmd = parse("/run ../etc x").expect("a command");
        assert_eq!(cmd, Command::Invalid { verb: Verb::Run, problem: Problem::BadId("../etc".to_owned()) });
    }

    #[test]
    fn names_and_aliases_are_found_in_any_case() {
        assert_eq!(Verb::from_name("/HELP"), Some(Verb::Help));
        assert_eq!(Verb::from_name("start"), Some(Verb::Help));
        assert_eq!(Verb::from_name("/Queue"), Some(Verb::Jobs));
        assert_eq!(Verb::from_name("interrupt"), Some(Verb::Stop));
        for name in ["", "/", "//run", "new", "/unknown"] {
            assert_eq!(Verb::from_name(name), None, "{name:?}");
        }
        for verb in Verb::ALL {
            assert_eq!(Verb::from_name(verb.name()), Some(verb));
        }
    }

    #[test]
    fn every_command_parses() {
        let cases: Vec<(&str, Command)> = vec![
            ("/status", Command::Status { job: None }),
            ("/jobs", Command::Jobs),
            ("/queue", Command::Jobs),
            ("/history", Command::History { job: None }),
            ("/history p1", Command::History { job: Some("p1".to_owned()) }),
            ("/stop", Command::Stop { jobs: vec![] }),
            ("/cancel p-1,p-2 p-3", Command::Stop { jobs: vec!["p-1".into(), "p-2".into(), "p-3".into()] }),
            ("/interrupt p-9", Command::Stop { jobs: vec!["p-9".into()] }),
            ("/trace abc", Command::Trace { id: "abc".into() }),
            ("/approvals", Command::Approvals),
            ("/approve apr_1", Command::Approve { id: "apr_1".into() }),
            ("/reject apr_1", Command::Reject { id: "apr_1".into(), reason: None }),
            (
                r#"/reject apr_1 too   "many cats""#,
                Command::Reject { id: "apr_1".into(), reason: Some("too many cats".into()) },
            ),
            ("/schedules", Command::Schedules),
            ("/schedule run sched_1", Command::Schedule { action: ScheduleAction::Run, id: "sched_1".into() }),
            ("/schedule ENABLE s", Command::Schedule { action: ScheduleAction::Enable, id: "s".into() }),
            ("/schedule disable s", Command::Schedule { action: ScheduleAction::Disable, id: "s".into() }),
            ("/templates", Command::Templates),
            ("/workers", Command::Workers),
            ("/help me", Command::Help),
        ];
        for (text, want) in cases {
            assert_eq!(parse(text), Some(want), "{text}");
        }
    }

    #[test]
    fn missing_or_bad_arguments_give_usage() {
        let cases = [
            ("/approve", Verb::Approve, Problem::Usage, "Usage: /approve <id>"),
            ("/reject", Verb::Reject, Problem::Usage, "Usage: /reject <id> [reason]"),
            ("/trace", Verb::Trace, Problem::Usage, "Usage: /trace <id>"),
            ("/schedule run", Verb::Schedule, Problem::Usage, "Usage: /schedule <run|enable|disable> <id>"),
            ("/schedule toggle s", Verb::Schedule, Problem::Usage, "Usage: /schedule <run|enable|disable> <id>"),
        ];
        for (text, verb, problem, usage) in cases {
            let cmd = parse(text).expect("a command");
            assert_eq!(cmd, Command::Invalid { verb, problem: problem.clone() }, "{text}");
            assert_eq!(reply::invalid(verb, &problem), usage);
        }
        let cmd = parse("/stop p/1").expect("a command");
        let Command::Invalid { verb, problem } = cmd else { panic!("not invalid: {cmd:?}") };
        assert_eq!(problem, Problem::BadId("p/1".into()));
        assert!(reply::invalid(verb, &problem).starts_with("[Error] Invalid id \"p/1\""));
        let long = format!("/approve {}", "a".repeat(129));
        assert!(matches!(parse(&long), Some(Command::Invalid { problem: Problem::BadId(_), .. })));
    }

    #[test]
    fn default_classes_match_the_connector() {
        assert_eq!(class_of(&Command::Help), CommandClass::Public);
        assert_eq!(class_of(&Command::Status { job: None }), CommandClass::Public);
        assert_eq!(class_of(&Command::History { job: None }), CommandClass::Public);
        assert_eq!(class_of(&Command::Templates), CommandClass::Public);
        assert_eq!(class_of(&run("t", &[], None, false)), CommandClass::Run);
        for cmd in [
            Command::Stop { jobs: vec![] },
            Command::Approvals,
            Command::Approve { id: "a".into() },
            Command::Reject { id: "a".into(), reason: None },
            Command::Schedules,
            Command::Schedule { action: ScheduleAction::Run, id: "s".into() },
            Command::Trace { id: "t".into() },
            Command::Jobs,
            Command::Workers,
        ] {
            assert_eq!(class_of(&cmd), CommandClass::Admin, "{cmd:?}");
        }
        assert_eq!(class_of(&Command::Invalid { verb: Verb::Approve, problem: Problem::Usage }), CommandClass::Admin);
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

    #[test]
    fn run_and_approval_replies() {
        let job = JobSubmitted { prompt_id: Some("p1"), template: "invert", trace_id: None, queue: None };
        assert_eq!(reply::job_submitted(&job), "[Job Submitted]\nID: p1\nTemplate: invert\nTrace: unknown");
        let queued = JobSubmitted { queue: Some(QueuePosition { position: 3, total: 5 }), trace_id: Some("t1"), ..job };
        assert_eq!(
            reply::job_submitted(&queued),
            "[Job Submitted]\nID: p1\nTemplate: invert\nTrace: t1\nStatus: queued, position 3 of 5"
        );
        assert_eq!(
            reply::approval_requested(Some("apr_1"), Some("t1"), Some("2026-01-01T00:00:00+00:00")),
            "[Approval Requested]\nID: apr_1\nTrace: t1\nExpires: 2026-01-01T00:00:00+00:00"
        );
        assert_eq!(reply::approval_requested(None, None, None), "[Approval Requested]\nID: unknown\nTrace: unknown");
        assert_eq!(reply::submission_failed("boom"), "[Submission Failed] Reason: boom");
        assert_eq!(reply::approved("apr_1", Some("p2"), None), "[Approved] apr_1\nExecuted: p2");
        assert_eq!(reply::approved("apr_1", None, Some("no gpu")), "[Approved] apr_1\n(Not Executed)\nError: no gpu");
        assert_eq!(reply::approved("apr_1", None, None), "[Approved] apr_1\n(Not Executed)");
        assert_eq!(reply::rejected("apr_1", None), "[Rejected] apr_1");
        assert_eq!(reply::rejected("apr_1", Some("off topic")), "[Rejected] apr_1\nReason: off topic");
        assert_eq!(reply::action_failed("nope"), "[Failed] nope");
    }

    #[test]
    fn status_and_error_replies() {
        assert_eq!(reply::system_online(10, 2, 3), "[Online] System Status\n- Logs: 10\n- Errors: 2\n- Queue: 3");
        assert_eq!(reply::system_offline("refused"), "[Offline] System Status\n- Error: refused");
        assert_eq!(reply::command_too_long(5000, 4096), "[Error] Command too long (5000 chars). Max: 4096.");
        assert_eq!(reply::error("x"), "[Error] x");
        assert_eq!(reply::RATE_LIMITED, "[Rate Limited] Too many requests. Please wait a moment.");
        let pending = JobView {
            id: "p1",
            state: JobState::Pending,
            template: Some("invert"),
            queue: Some(QueuePosition { position: 3, total: 5 }),
            error: None,
        };
        assert_eq!(reply::job_status(&pending), "Job p1: queued, position 3 of 5\nTemplate: invert");
        let running = JobView { state: JobState::InProgress, template: None, queue: None, ..pending };
        assert_eq!(reply::job_status(&running), "Job p1: running");
        let failed = JobView { state: JobState::Failed, error: Some("OOM"), template: None, ..pending };
        assert_eq!(reply::job_status(&failed), "Job p1: failed\nError: OOM");
        let queued = JobView { queue: None, template: None, ..pending };
        assert_eq!(reply::job_status(&queued), "Job p1: queued");
    }

    #[test]
    fn history_reads_the_entry_under_the_prompt_id() {
        let body = json!({"p1": {
            "outputs": {"3": {"images": [{"filename": "a.png"}, {"filename": "b.png"}]}, "4": {"text": ["x"]}},
            "status": {"status_str": "success", "completed": true, "messages": []}
        }});
        let entry = HistoryEntry::from_history_response("p1", &body).expect("in history");
        assert_eq!(entry, HistoryEntry { status: "success".into(), completed: true, images: 2 });
        assert_eq!(reply::history("p1", &entry), "Job p1: success\nImages: 2");
        // The connector's flattened reading finds nothing in a real reply, and vice versa.
        assert_eq!(HistoryEntry::from_history_response("p1", &json!({})), None);
        assert_eq!(HistoryEntry::from_history_response("p1", &json!({"status": {"status_str": "success"}})), None);
        let bare = HistoryEntry::from_history_response("p1", &json!({"p1": {}})).expect("entry");
        assert_eq!(bare, HistoryEntry { status: "unknown".into(), completed: false, images: 0 });
        assert!(reply::history_not_found("p1").starts_with("Job p1: not in history"));
    }

    #[test]
    fn jobs_reply_matches_the_connector_summary() {
        assert_eq!(reply::jobs(0, &[]), reply::JOBS_EMPTY);
        let long = "0123456789abcdef0123456789abcdef";
        let jobs = [
            (long, JobState::Pending),
            ("b", JobState::InProgress),
            ("c", JobState::Completed),
            ("d", JobState::Failed),
            ("e", JobState::Cancelled),
            ("f", JobState::Completed),
        ];
        let text = reply::jobs(9, &jobs);
        assert_eq!(
            text,
            "[Jobs] Authoritative snapshot\n\
             Snapshot total: 9; returned page: 6\n\
             Page states: Active 2 (pending 1, in progress 1); Terminal 4 (completed 2, failed 1, cancelled 1)\n\
             - 0123456789abcdef01234... \u{2014} pending\n\
             - b \u{2014} in progress\n\
             - c \u{2014} completed\n\
             - d \u{2014} failed\n\
             - e \u{2014} cancelled\n\
             Showing 5 of 6 returned jobs."
        );
        assert!(text.chars().count() <= 1000);
        assert_eq!(
            reply::jobs_fallback(Some(3)),
            "[Jobs fallback] Queue remaining: 3 (coarse count; not an authoritative jobs snapshot)."
        );
        assert_eq!(reply::jobs_fallback(None), "[Jobs fallback] Coarse queue count is unavailable.");
        assert_eq!(reply::jobs_fallback(Some(1_000_001)), "[Jobs fallback] Coarse queue count is unavailable.");
        assert_eq!(JobState::from_wire("in_progress"), Some(JobState::InProgress));
        assert_eq!(JobState::from_wire("running"), None);
    }

    #[test]
    fn stop_replies() {
        assert_eq!(reply::stop(&StopOutcome::GlobalInterrupt), "[Stop] Global Interrupt sent to ComfyUI.");
        assert_eq!(reply::stop(&StopOutcome::Cancelled("p1".into())), "[Stop] Cancellation requested for job p1.");
        assert_eq!(
            reply::stop(&StopOutcome::TargetedInterrupt("p1".into())),
            "[Stop] Targeted interrupt sent for job p1 (jobs cancel unsupported)."
        );
        assert_eq!(reply::stop(&StopOutcome::CancelledMany(3)), "[Stop] Cancellation requested for 3 jobs.");
        assert_eq!(reply::stop(&StopOutcome::Failed("HTTP 500".into())), "[Stop Failed] HTTP 500");
    }

    #[test]
    fn approvals_replies() {
        assert_eq!(reply::approvals(&[], 0), "No pending approvals.");
        let items = [
            ApprovalSummary {
                id: "apr_1",
                status: "pending",
                template: "invert",
                requested_by: None,
                source: "chatops",
            },
            ApprovalSummary {
                id: "apr_2",
                status: "pending",
                template: "x",
                requested_by: Some("u9"),
                source: "trigger",
            },
        ];
        assert_eq!(
            reply::approvals(&items, 2),
            "Pending Approvals (2):\n- apr_1 [pending] template=invert by=unknown source=chatops\n- apr_2 [pending] template=x by=u9 source=trigger"
        );
        assert_eq!(reply::approvals_failed("HTTP 403"), "[Error] Failed to list approvals: HTTP 403");
    }

    #[test]
    fn schedules_read_backend_field_names() {
        let body = json!({"schedules": [
            {"schedule_id": "sched_a", "template_id": "invert", "trigger_type": "cron", "cron_expr": "*/5 * * * *", "interval_sec": null, "enabled": true},
            {"schedule_id": "sched_b", "template_id": "slow", "trigger_type": "interval", "cron_expr": null, "interval_sec": 300, "enabled": false},
            {"id": "legacy", "cron": "* * * * *"}
        ]});
        let items: Vec<ScheduleSummary> =
            body["schedules"].as_array().expect("array").iter().filter_map(ScheduleSummary::from_json).collect();
        assert_eq!(items.len(), 2);
        assert_eq!(
            reply::schedules(&items),
            "Schedules:\n[+] sched_a: */5 * * * * - invert\n[-] sched_b: every 300s - slow"
        );
        assert_eq!(reply::schedules(&[]), "No schedules found.");
        assert_eq!(reply::schedule_done(ScheduleAction::Run, "s"), "[Success] Schedule s triggered manually.");
        assert_eq!(reply::schedule_done(ScheduleAction::Enable, "s"), "[Success] Schedule s enabled.");
        assert_eq!(reply::schedule_done(ScheduleAction::Disable, "s"), "[Success] Schedule s disabled.");
    }

    #[test]
    fn trace_is_cut_at_1000_characters() {
        assert_eq!(reply::trace("p1", "{}"), "Trace p1: {}");
        let long = "é".repeat(1200);
        let text = reply::trace("p1", &long);
        assert!(text.ends_with("..."));
        assert_eq!(text.chars().count(), "Trace p1: ".len() + 1000 + 3);
    }

    #[test]
    fn templates_and_workers_replies() {
        let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../../templates");
        let lib = crate::templates::TemplateLibrary::load(dir).expect("shipped templates");
        let text = reply::templates(&lib.list());
        assert!(text.starts_with("Templates:\n- invert: "), "{text}");
        assert!(
            text.contains("(inputs: width=256, height=256, color=16711680, batch=1, filename_prefix=clawgate)"),
            "{text}"
        );
        assert_eq!(reply::templates(&[]), reply::NO_TEMPLATES);
        let workers = [
            WorkerSummary { name: "a", online: true, queue_remaining: Some(2) },
            WorkerSummary { name: "b", online: false, queue_remaining: None },
        ];
        assert_eq!(reply::workers(&workers), "Workers:\n- a: online, queue 2\n- b: offline");
        assert_eq!(reply::workers(&[]), reply::NO_WORKERS);
    }
}

/// Property tests: whatever a chat user types, the command parser answers without panicking and
/// what it keeps is bounded by what was typed.
#[cfg(test)]
mod props {
    use super::*;
    use proptest::prelude::*;

    /// Text that looks like commands: a verb, arguments, `key=value` pairs, quotes, mentions.
    fn commandish() -> impl Strategy<Value = String> {
        let word = prop_oneof![
            prop::sample::select(vec![
                "/run",
                "/status",
                "/jobs",
                "/approvals",
                "/approve",
                "/reject",
                "/cancel",
                "/templates",
                "/help",
                "/run@Claw_Bot",
                "@Claw_Bot",
                "@other",
                "seed=1",
                "k=",
                "=v",
                "\"",
                "'",
                "--",
                "\u{202e}",
            ])
            .prop_map(str::to_owned),
            ".{0,12}",
        ];
        prop::collection::vec(word, 0..8).prop_map(|w| w.join(" "))
    }

    proptest! {
        #![proptest_config(ProptestConfig { cases: 1000, failure_persistence: None, ..ProptestConfig::default() })]

        #[test]
        fn arbitrary_text_never_panics_the_parser(text in ".{0,200}") {
            for verb in Verb::ALL {
                let _ = parse_args(verb, &text);
            }
        }

        #[test]
        fn parsed_commands_are_bounded_by_their_input(text in commandish()) {
            for cmd in Verb::ALL.map(|verb| parse_args(verb, &text)) {
                let kept = format!("{cmd:?}").len();
                prop_assert!(kept <= 4 * text.len() + 256, "{kept} bytes kept from {} typed: {cmd:?}", text.len());
            }
        }
    }
}
