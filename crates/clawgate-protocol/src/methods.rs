//! Method names and the one static method → scope table (contract §4.3).
//!
//! [`IMPLEMENTED`] lists what clawgate answers; `hello-ok.features.methods` is derived from it, so
//! the advertisement can never drift from the dispatcher. For methods clawgate does not
//! implement, authorization still follows upstream's table (vendored from
//! `openclaw-methods.tsv`): an operator lacking the scope gets `FORBIDDEN`, one holding it gets
//! `unknown method`, exactly as the real gateway orders those checks.
//!
//! The submodules (one per method group, named after it) hold each method's typed params
//! (`Deserialize`) and result (`Serialize`), following the vendored schema's
//! `<Method>Params`/`<Method>Result` definitions where upstream has them. The dispatcher decodes
//! into the params type and encodes the result; a handler never sees raw JSON.

use crate::scopes;

pub mod agent;
pub mod approvals;
pub mod catalog;
pub mod channels;
pub mod chat;
pub mod comfy;
pub mod comfy_worker;
pub mod config;
pub mod control_ui;
pub mod cron;
pub mod devices;
pub mod exec_approvals;
pub mod health;
pub mod logs;
pub mod nodes;
pub mod session_usage;
pub mod sessions;
pub mod system;
pub mod tokens;
pub mod ui_pages;
pub mod ui_startup;
pub mod usage;

/// Params of a method that takes none and ignores whatever is sent (any JSON value decodes).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct AnyParams;

impl<'de> serde::Deserialize<'de> for AnyParams {
    fn deserialize<D: serde::Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        serde::de::IgnoredAny::deserialize(deserializer).map(|_| AnyParams)
    }
}

/// Params read as the hand-written readers read them (`params.get(k)` on whatever was sent): a
/// value that is not an object (`null`, a string, an array) has no fields, so it decodes as `{}`
/// and the handler names what is missing in its own words. The dispatcher decodes into
/// `FieldsOf<P>` for the methods that always answered so.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct FieldsOf<P>(pub P);

impl<'de, P: serde::de::DeserializeOwned> serde::Deserialize<'de> for FieldsOf<P> {
    fn deserialize<D: serde::Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        use serde_json::Value;
        let value = match Value::deserialize(deserializer)? {
            object @ Value::Object(_) => object,
            _ => Value::Object(serde_json::Map::new()),
        };
        serde_json::from_value(value).map(FieldsOf).map_err(serde::de::Error::custom)
    }
}

/// Field decoders for methods that have always read a field only when it has the expected JSON
/// type and ignored it otherwise (`sessionKey: 5` counts as absent, as the hand readers
/// `params.get(k).and_then(Value::as_…)` always treated it). Each is used as
/// `#[serde(default, deserialize_with = "lenient::…")]`.
pub(crate) mod lenient {
    use serde::de::DeserializeOwned;
    use serde::{Deserialize, Deserializer};
    use serde_json::Value;

    /// The value if it decodes as `T`, else `None`.
    pub(crate) fn any<'de, D: Deserializer<'de>, T: DeserializeOwned>(d: D) -> Result<Option<T>, D::Error> {
        Ok(serde_json::from_value(Value::deserialize(d)?).ok())
    }

    /// Like [`any`], keeping presence: absent is `None` (with `#[serde(default)]`), present is
    /// `Some(value)`, where `null` or a value of the wrong type is `Some(None)` — for patch fields
    /// where `null` clears.
    pub(crate) fn nullable<'de, D: Deserializer<'de>, T: DeserializeOwned>(
        d: D,
    ) -> Result<Option<Option<T>>, D::Error> {
        any(d).map(Some)
    }

    /// A chat or thread id, which clients send as a string or a number (read as its decimal
    /// text). Anything else reads as absent; an empty string stays (handlers decide).
    pub(crate) fn id<'de, D: Deserializer<'de>>(d: D) -> Result<Option<String>, D::Error> {
        Ok(match Value::deserialize(d)? {
            Value::String(s) => Some(s),
            Value::Number(n) => Some(n.to_string()),
            _ => None,
        })
    }

    /// Like [`any`] for a list of strings: an array keeps its strings (other items are
    /// dropped, as `filter_map(Value::as_str)` did); anything else reads as absent.
    pub(crate) fn strings<'de, D>(deserializer: D) -> Result<Option<Vec<String>>, D::Error>
    where
        D: serde::Deserializer<'de>,
    {
        Ok(match <Value as serde::Deserialize>::deserialize(deserializer)? {
            Value::Array(items) => Some(
                items
                    .into_iter()
                    .filter_map(|v| match v {
                        Value::String(s) => Some(s),
                        _ => None,
                    })
                    .collect(),
            ),
            _ => None,
        })
    }

    /// Any value, `null` included (`None` only when the field is absent).
    pub(crate) fn present<'de, D: Deserializer<'de>>(d: D) -> Result<Option<Value>, D::Error> {
        Value::deserialize(d).map(Some)
    }
}

/// A param that may be left out, sent as `null`, sent as a `T`, or sent as something else — for
/// params whose wrong values the handler refuses with its own message while `null` means absent.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub enum Checked<T> {
    /// Left out.
    #[default]
    Absent,
    /// Sent as `null`.
    Null,
    /// Sent as a `T`.
    Valid(T),
    /// Sent as something else.
    Invalid,
}

impl<'de, T: serde::de::DeserializeOwned> serde::Deserialize<'de> for Checked<T> {
    fn deserialize<D: serde::Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        use serde_json::Value;
        Ok(match Value::deserialize(deserializer)? {
            Value::Null => Checked::Null,
            v => serde_json::from_value(v).map_or(Checked::Invalid, Checked::Valid),
        })
    }
}

/// What a caller needs to call a method.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Requirement {
    /// Any authenticated client, any role (`health`).
    Exempt,
    /// An operator holding this scope.
    Scope(&'static str),
    /// Only node-role clients.
    Node,
    /// Computed from the params by [`dynamic_scope`].
    Dynamic,
}

/// One row of the method table.
#[derive(Debug, Clone, Copy)]
pub struct MethodSpec {
    /// Wire name.
    pub name: &'static str,
    /// Who may call it.
    pub requirement: Requirement,
    /// Listed in `hello-ok.features.methods`.
    pub advertise: bool,
}

const fn m(name: &'static str, scope: &'static str) -> MethodSpec {
    MethodSpec { name, requirement: Requirement::Scope(scope), advertise: true }
}

/// A `comfy.worker.*` method: only a worker-token connection (scope [`scopes::WORKER`]).
const fn worker(name: &'static str) -> MethodSpec {
    MethodSpec { name, requirement: Requirement::Scope(scopes::WORKER), advertise: false }
}

const fn node(name: &'static str, advertise: bool) -> MethodSpec {
    MethodSpec { name, requirement: Requirement::Node, advertise }
}

/// Node commands only an admin may invoke directly (upstream's `NODE_ADMIN_ONLY_INVOKE_COMMANDS`:
/// they cross a host boundary).
pub const NODE_ADMIN_ONLY_COMMANDS: &[&str] =
    &["browser.proxy", "browser.proxy.upload.v1", "fs.listDir", "terminal.upload"];

#[allow(missing_docs)]
pub mod names {
    pub const CONNECT: &str = "connect";
    pub const HEALTH: &str = "health";
    pub const STATUS: &str = "status";
    pub const SYSTEM_PRESENCE: &str = "system-presence";
    pub const SYSTEM_EVENT: &str = "system-event";
    pub const LAST_HEARTBEAT: &str = "last-heartbeat";
    pub const SET_HEARTBEATS: &str = "set-heartbeats";
    pub const WAKE: &str = "wake";
    pub const LOGS_TAIL: &str = "logs.tail";
    pub const CONFIG_GET: &str = "config.get";
    pub const CONFIG_SCHEMA: &str = "config.schema";
    pub const CONFIG_SET: &str = "config.set";
    pub const CONFIG_PATCH: &str = "config.patch";
    pub const CONFIG_APPLY: &str = "config.apply";
    pub const DEVICE_PAIR_LIST: &str = "device.pair.list";
    pub const DEVICE_PAIR_APPROVE: &str = "device.pair.approve";
    pub const DEVICE_PAIR_REJECT: &str = "device.pair.reject";
    pub const DEVICE_PAIR_REMOVE: &str = "device.pair.remove";
    pub const DEVICE_TOKEN_ROTATE: &str = "device.token.rotate";
    pub const DEVICE_TOKEN_REVOKE: &str = "device.token.revoke";
    pub const NODE_PAIR_LIST: &str = "node.pair.list";
    pub const NODE_PAIR_APPROVE: &str = "node.pair.approve";
    pub const NODE_PAIR_REJECT: &str = "node.pair.reject";
    pub const NODE_PAIR_REMOVE: &str = "node.pair.remove";
    pub const NODE_RENAME: &str = "node.rename";
    pub const NODE_LIST: &str = "node.list";
    pub const NODE_DESCRIBE: &str = "node.describe";
    pub const NODE_INVOKE: &str = "node.invoke";
    pub const NODE_INVOKE_RESULT: &str = "node.invoke.result";
    pub const NODE_EVENT: &str = "node.event";
    pub const NODE_SKILLS_UPDATE: &str = "node.skills.update";
    pub const NODE_PLUGIN_TOOLS_UPDATE: &str = "node.pluginTools.update";
    pub const NODE_RUNNER_INVENTORY_UPDATE: &str = "node.runnerInventory.update";
    pub const CHANNELS_STATUS: &str = "channels.status";
    pub const CHANNELS_START: &str = "channels.start";
    pub const CHANNELS_STOP: &str = "channels.stop";
    pub const CHANNELS_LOGOUT: &str = "channels.logout";
    pub const CHANNELS_PAIRING_LIST: &str = "channels.pairing.list";
    pub const CHANNELS_PAIRING_APPROVE: &str = "channels.pairing.approve";
    pub const CHANNELS_PAIRING_DISMISS: &str = "channels.pairing.dismiss";
    pub const SEND: &str = "send";
    pub const COMFY_RUN: &str = "comfy.run";
    pub const COMFY_JOBS_GET: &str = "comfy.jobs.get";
    pub const COMFY_JOBS_LIST: &str = "comfy.jobs.list";
    pub const COMFY_JOBS_CANCEL: &str = "comfy.jobs.cancel";
    pub const COMFY_TEMPLATES_LIST: &str = "comfy.templates.list";
    pub const COMFY_WORKERS_LIST: &str = "comfy.workers.list";
    pub const COMFY_WORKER_JOIN: &str = "comfy.worker.join";
    pub const COMFY_WORKER_PULL: &str = "comfy.worker.pull";
    pub const COMFY_WORKER_PROGRESS: &str = "comfy.worker.progress";
    pub const COMFY_WORKER_OUTPUT: &str = "comfy.worker.output";
    pub const COMFY_WORKER_DONE: &str = "comfy.worker.done";
    pub const COMFY_WORKER_HEARTBEAT: &str = "comfy.worker.heartbeat";
    pub const CRON_LIST: &str = "cron.list";
    pub const CRON_STATUS: &str = "cron.status";
    pub const CRON_ADD: &str = "cron.add";
    pub const CRON_UPDATE: &str = "cron.update";
    pub const CRON_REMOVE: &str = "cron.remove";
    pub const CRON_RUN: &str = "cron.run";
    pub const CRON_RUNS: &str = "cron.runs";
    pub const AGENT: &str = "agent";
    pub const AGENT_WAIT: &str = "agent.wait";
    pub const AGENT_IDENTITY_GET: &str = "agent.identity.get";
    pub const AGENTS_LIST: &str = "agents.list";
    pub const CHAT_SEND: &str = "chat.send";
    pub const CHAT_HISTORY: &str = "chat.history";
    pub const CHAT_ABORT: &str = "chat.abort";
    pub const CHAT_INJECT: &str = "chat.inject";
    pub const SESSIONS_LIST: &str = "sessions.list";
    pub const SESSIONS_DESCRIBE: &str = "sessions.describe";
    pub const SESSIONS_PREVIEW: &str = "sessions.preview";
    pub const SESSIONS_PATCH: &str = "sessions.patch";
    pub const SESSIONS_RESET: &str = "sessions.reset";
    pub const SESSIONS_DELETE: &str = "sessions.delete";
    pub const SESSIONS_SUBSCRIBE: &str = "sessions.subscribe";
    pub const SESSIONS_MESSAGES_SUBSCRIBE: &str = "sessions.messages.subscribe";
    pub const SESSIONS_MESSAGES_UNSUBSCRIBE: &str = "sessions.messages.unsubscribe";
    pub const COMMANDS_LIST: &str = "commands.list";
    pub const MODELS_LIST: &str = "models.list";
    pub const QUESTION_LIST: &str = "question.list";
    pub const PLUGIN_APPROVAL_LIST: &str = "plugin.approval.list";
    pub const PLUGIN_APPROVAL_REQUEST: &str = "plugin.approval.request";
    pub const PLUGIN_APPROVAL_WAIT_DECISION: &str = "plugin.approval.waitDecision";
    pub const PLUGIN_APPROVAL_RESOLVE: &str = "plugin.approval.resolve";
    pub const TASK_SUGGESTIONS_LIST: &str = "taskSuggestions.list";
    pub const USAGE_STATUS: &str = "usage.status";
    pub const USAGE_COST: &str = "usage.cost";
    pub const PROGRESS_CARD_GET: &str = "progressCard.get";
    pub const SESSIONS_OBSERVER_VISIBILITY: &str = "sessions.observer.visibility";
    pub const UPDATE_STATUS: &str = "update.status";
    pub const CHAT_STARTUP: &str = "chat.startup";
    pub const SESSIONS_COMPANION_STATE: &str = "sessions.companion.state";
    pub const EXEC_APPROVAL_LIST: &str = "exec.approval.list";
    pub const EXEC_APPROVAL_REQUEST: &str = "exec.approval.request";
    pub const EXEC_APPROVAL_WAIT_DECISION: &str = "exec.approval.waitDecision";
    pub const EXEC_APPROVAL_RESOLVE: &str = "exec.approval.resolve";
    pub const EXEC_APPROVAL_GET: &str = "exec.approval.get";
    pub const EXEC_APPROVAL_GRANTS_LIST: &str = "exec.approval.grants.list";
    pub const EXEC_APPROVAL_GRANTS_REVOKE: &str = "exec.approval.grants.revoke";
    pub const EXEC_APPROVALS_GET: &str = "exec.approvals.get";
    pub const EXEC_APPROVALS_SET: &str = "exec.approvals.set";
    pub const EXEC_APPROVALS_NODE_GET: &str = "exec.approvals.node.get";
    pub const EXEC_APPROVALS_NODE_SET: &str = "exec.approvals.node.set";
    pub const APPROVAL_GET: &str = "approval.get";
    pub const APPROVAL_RESOLVE: &str = "approval.resolve";
    pub const OPENCLAW_APPROVAL_LIST: &str = "openclaw.approval.list";
    pub const TALK_CATALOG: &str = "talk.catalog";
    pub const TASKS_LIST: &str = "tasks.list";
    pub const MODELS_AUTH_STATUS: &str = "models.authStatus";
    pub const CHAT_METADATA: &str = "chat.metadata";
    pub const SESSIONS_BRANCHES_LIST: &str = "sessions.branches.list";
    pub const TOKENS_CREATE: &str = "tokens.create";
    pub const TOKENS_LIST: &str = "tokens.list";
    pub const TOKENS_REVOKE: &str = "tokens.revoke";
    pub const PLUGINS_CONTROL_UI_LIST: &str = "plugins.controlUi.list";
    pub const BOARD_GET: &str = "board.get";
    pub const PROJECTS_LIST: &str = "projects.list";
    pub const SESSIONS_VIEWERS_SET: &str = "sessions.viewers.set";
    pub const SESSIONS_GITHUB_OPTIONS: &str = "sessions.github.options";
    pub const SESSION_MEMBERS_LIST_EVIDENCE: &str = "session.members.listEvidence";
    pub const CONTROL_UI_SESSION_PULL_REQUESTS_SUBSCRIBE: &str = "controlUi.sessionPullRequests.subscribe";
    pub const USERS_PREFS_GET: &str = "users.prefs.get";
    pub const USERS_PREFS_SET: &str = "users.prefs.set";
    pub const SESSIONS_GROUPS_LIST: &str = "sessions.groups.list";
    pub const SESSIONS_GROUPS_DEFAULTS: &str = "sessions.groups.defaults";
    pub const SYSTEM_INFO: &str = "system.info";
    pub const SESSION_DISCUSSION_INFO: &str = "session.discussion.info";
    pub const MENTIONS_LIST: &str = "mentions.list";
    pub const SESSIONS_CATALOG_LIST: &str = "sessions.catalog.list";
    pub const PLUGINS_LIST: &str = "plugins.list";
    pub const DIAGNOSTICS_LANES: &str = "diagnostics.lanes";
    pub const PLUGINS_CATALOG_BROWSE: &str = "plugins.catalog.browse";
    pub const SESSIONS_USAGE: &str = "sessions.usage";
    pub const SKILLS_STATUS: &str = "skills.status";
    pub const SKILLS_SEARCH: &str = "skills.search";
    pub const SKILLS_LIBRARY_LIST: &str = "skills.library.list";
    pub const ENVIRONMENTS_LIST: &str = "environments.list";
    pub const THEMES_LIST: &str = "themes.list";
}

/// Every method clawgate implements, with its requirement.
pub const IMPLEMENTED: &[MethodSpec] = &[
    MethodSpec { name: names::HEALTH, requirement: Requirement::Exempt, advertise: true },
    m(names::STATUS, scopes::READ),
    m(names::SYSTEM_PRESENCE, scopes::READ),
    m(names::SYSTEM_EVENT, scopes::ADMIN),
    m(names::LAST_HEARTBEAT, scopes::READ),
    m(names::SET_HEARTBEATS, scopes::ADMIN),
    m(names::WAKE, scopes::WRITE),
    m(names::LOGS_TAIL, scopes::READ),
    m(names::CONFIG_GET, scopes::READ),
    m(names::CONFIG_SCHEMA, scopes::READ),
    m(names::CONFIG_SET, scopes::ADMIN),
    m(names::CONFIG_PATCH, scopes::ADMIN),
    m(names::CONFIG_APPLY, scopes::ADMIN),
    m(names::DEVICE_PAIR_LIST, scopes::PAIRING),
    m(names::DEVICE_PAIR_APPROVE, scopes::PAIRING),
    m(names::DEVICE_PAIR_REJECT, scopes::PAIRING),
    m(names::DEVICE_PAIR_REMOVE, scopes::PAIRING),
    m(names::DEVICE_TOKEN_ROTATE, scopes::PAIRING),
    m(names::DEVICE_TOKEN_REVOKE, scopes::PAIRING),
    m(names::NODE_PAIR_LIST, scopes::PAIRING),
    m(names::NODE_PAIR_APPROVE, scopes::PAIRING),
    m(names::NODE_PAIR_REJECT, scopes::PAIRING),
    m(names::NODE_PAIR_REMOVE, scopes::PAIRING),
    m(names::NODE_RENAME, scopes::PAIRING),
    m(names::NODE_LIST, scopes::READ),
    m(names::NODE_DESCRIBE, scopes::READ),
    MethodSpec { name: names::NODE_INVOKE, requirement: Requirement::Dynamic, advertise: true },
    node(names::NODE_INVOKE_RESULT, true),
    node(names::NODE_EVENT, true),
    node(names::NODE_SKILLS_UPDATE, true),
    node(names::NODE_PLUGIN_TOOLS_UPDATE, true),
    // Upstream does not advertise it either (`{ advertise: false }` in its table).
    node(names::NODE_RUNNER_INVENTORY_UPDATE, false),
    m(names::CHANNELS_STATUS, scopes::READ),
    m(names::CHANNELS_START, scopes::ADMIN),
    m(names::CHANNELS_STOP, scopes::ADMIN),
    m(names::CHANNELS_LOGOUT, scopes::ADMIN),
    m(names::CHANNELS_PAIRING_LIST, scopes::PAIRING),
    MethodSpec { name: names::CHANNELS_PAIRING_APPROVE, requirement: Requirement::Dynamic, advertise: true },
    m(names::CHANNELS_PAIRING_DISMISS, scopes::PAIRING),
    m(names::SEND, scopes::WRITE),
    // clawgate's own (no upstream counterpart): ComfyUI jobs.
    m(names::COMFY_RUN, scopes::WRITE),
    m(names::COMFY_JOBS_GET, scopes::READ),
    m(names::COMFY_JOBS_LIST, scopes::READ),
    m(names::COMFY_JOBS_CANCEL, scopes::WRITE),
    m(names::COMFY_TEMPLATES_LIST, scopes::READ),
    m(names::COMFY_WORKERS_LIST, scopes::READ),
    // ComfyUI workers that join by themselves: worker-token connections only, not advertised.
    worker(names::COMFY_WORKER_JOIN),
    worker(names::COMFY_WORKER_PULL),
    worker(names::COMFY_WORKER_PROGRESS),
    worker(names::COMFY_WORKER_OUTPUT),
    worker(names::COMFY_WORKER_DONE),
    worker(names::COMFY_WORKER_HEARTBEAT),
    m(names::CRON_LIST, scopes::READ),
    m(names::CRON_STATUS, scopes::READ),
    m(names::CRON_ADD, scopes::ADMIN),
    m(names::CRON_UPDATE, scopes::ADMIN),
    m(names::CRON_REMOVE, scopes::ADMIN),
    m(names::CRON_RUN, scopes::ADMIN),
    m(names::CRON_RUNS, scopes::READ),
    MethodSpec { name: names::AGENT, requirement: Requirement::Dynamic, advertise: true },
    m(names::AGENT_WAIT, scopes::WRITE),
    m(names::AGENT_IDENTITY_GET, scopes::READ),
    m(names::AGENTS_LIST, scopes::READ),
    m(names::CHAT_SEND, scopes::WRITE),
    m(names::CHAT_HISTORY, scopes::READ),
    m(names::CHAT_ABORT, scopes::WRITE),
    MethodSpec { name: names::CHAT_INJECT, requirement: Requirement::Scope(scopes::ADMIN), advertise: false },
    m(names::SESSIONS_LIST, scopes::READ),
    m(names::SESSIONS_DESCRIBE, scopes::READ),
    m(names::SESSIONS_PREVIEW, scopes::READ),
    MethodSpec { name: names::SESSIONS_PATCH, requirement: Requirement::Dynamic, advertise: true },
    m(names::SESSIONS_RESET, scopes::ADMIN),
    MethodSpec { name: names::SESSIONS_DELETE, requirement: Requirement::Dynamic, advertise: true },
    m(names::SESSIONS_SUBSCRIBE, scopes::READ),
    m(names::SESSIONS_MESSAGES_SUBSCRIBE, scopes::READ),
    m(names::SESSIONS_MESSAGES_UNSUBSCRIBE, scopes::READ),
    m(names::COMMANDS_LIST, scopes::READ),
    m(names::MODELS_LIST, scopes::READ),
    m(names::QUESTION_LIST, scopes::QUESTIONS),
    m(names::PLUGIN_APPROVAL_LIST, scopes::APPROVALS),
    m(names::PLUGIN_APPROVAL_REQUEST, scopes::APPROVALS),
    m(names::PLUGIN_APPROVAL_WAIT_DECISION, scopes::APPROVALS),
    m(names::PLUGIN_APPROVAL_RESOLVE, scopes::APPROVALS),
    m(names::PROGRESS_CARD_GET, scopes::READ),
    m(names::SESSIONS_OBSERVER_VISIBILITY, scopes::READ),
    m(names::UPDATE_STATUS, scopes::ADMIN),
    m(names::CHAT_STARTUP, scopes::READ),
    m(names::SESSIONS_COMPANION_STATE, scopes::READ),
    m(names::EXEC_APPROVAL_LIST, scopes::APPROVALS),
    m(names::EXEC_APPROVAL_REQUEST, scopes::APPROVALS),
    m(names::EXEC_APPROVAL_WAIT_DECISION, scopes::APPROVALS),
    m(names::EXEC_APPROVAL_RESOLVE, scopes::APPROVALS),
    m(names::EXEC_APPROVAL_GET, scopes::APPROVALS),
    m(names::EXEC_APPROVAL_GRANTS_LIST, scopes::APPROVALS),
    m(names::EXEC_APPROVAL_GRANTS_REVOKE, scopes::APPROVALS),
    m(names::EXEC_APPROVALS_GET, scopes::ADMIN),
    m(names::EXEC_APPROVALS_SET, scopes::ADMIN),
    m(names::EXEC_APPROVALS_NODE_GET, scopes::ADMIN),
    m(names::EXEC_APPROVALS_NODE_SET, scopes::ADMIN),
    m(names::APPROVAL_GET, scopes::APPROVALS),
    m(names::APPROVAL_RESOLVE, scopes::APPROVALS),
    m(names::OPENCLAW_APPROVAL_LIST, scopes::APPROVALS),
    m(names::TALK_CATALOG, scopes::READ),
    m(names::TASKS_LIST, scopes::READ),
    m(names::MODELS_AUTH_STATUS, scopes::READ),
    m(names::CHAT_METADATA, scopes::READ),
    m(names::SESSIONS_BRANCHES_LIST, scopes::READ),
    m(names::TASK_SUGGESTIONS_LIST, scopes::READ),
    m(names::USAGE_STATUS, scopes::READ),
    m(names::USAGE_COST, scopes::READ),
    // clawgate's own (no upstream counterpart): scoped access tokens.
    m(names::TOKENS_CREATE, scopes::ADMIN),
    m(names::TOKENS_LIST, scopes::ADMIN),
    m(names::TOKENS_REVOKE, scopes::ADMIN),
    // The rest of the Control UI's start-up methods (`methods/ui_startup.rs`).
    m(names::PLUGINS_CONTROL_UI_LIST, scopes::READ),
    m(names::BOARD_GET, scopes::READ),
    m(names::PROJECTS_LIST, scopes::READ),
    m(names::SESSIONS_VIEWERS_SET, scopes::READ),
    m(names::SESSIONS_GITHUB_OPTIONS, scopes::READ),
    m(names::SESSION_MEMBERS_LIST_EVIDENCE, scopes::READ),
    m(names::CONTROL_UI_SESSION_PULL_REQUESTS_SUBSCRIBE, scopes::READ),
    m(names::USERS_PREFS_GET, scopes::READ),
    m(names::USERS_PREFS_SET, scopes::WRITE),
    m(names::SESSIONS_GROUPS_LIST, scopes::READ),
    m(names::SESSIONS_GROUPS_DEFAULTS, scopes::WRITE),
    m(names::SYSTEM_INFO, scopes::READ),
    m(names::SESSION_DISCUSSION_INFO, scopes::READ),
    m(names::MENTIONS_LIST, scopes::READ),
    m(names::SESSIONS_CATALOG_LIST, scopes::READ),
    m(names::PLUGINS_LIST, scopes::READ),
    m(names::DIAGNOSTICS_LANES, scopes::READ),
    m(names::PLUGINS_CATALOG_BROWSE, scopes::READ),
    // What the Control UI's usage, skills, systems and config pages call (`methods/ui_pages.rs`,
    // `methods/usage.rs`). Upstream does not advertise `sessions.usage` (`{ advertise: false }`).
    MethodSpec { name: names::SESSIONS_USAGE, requirement: Requirement::Scope(scopes::READ), advertise: false },
    m(names::SKILLS_STATUS, scopes::READ),
    m(names::SKILLS_SEARCH, scopes::READ),
    m(names::SKILLS_LIBRARY_LIST, scopes::READ),
    MethodSpec { name: names::ENVIRONMENTS_LIST, requirement: Requirement::Dynamic, advertise: true },
    m(names::THEMES_LIST, scopes::READ),
    // Valid only as the first frame; a second `connect` is answered by the dispatcher.
    MethodSpec { name: names::CONNECT, requirement: Requirement::Scope(scopes::ADMIN), advertise: false },
];

/// Upstream's method table (openclaw 2026.9.6), tab-separated: name, family, scope, since, policy.
const UPSTREAM_TSV: &str = include_str!("../data/openclaw-methods.tsv");

/// The spec of a method clawgate implements.
pub fn implemented(name: &str) -> Option<&'static MethodSpec> {
    IMPLEMENTED.iter().find(|s| s.name == name)
}

/// Names advertised in `hello-ok.features.methods`.
pub fn advertised() -> Vec<&'static str> {
    IMPLEMENTED.iter().filter(|s| s.advertise).map(|s| s.name).collect()
}

fn upstream_requirement(name: &str) -> Option<Requirement> {
    UPSTREAM_TSV.lines().find_map(|line| {
        let mut cols = line.split('\t');
        if cols.next()? != name {
            return None;
        }
        let scope = cols.nth(1)?;
        Some(match scope {
            "node" => Requirement::Node,
            "dynamic" => Requirement::Dynamic,
            other => Requirement::Scope(scopes::ALL.iter().copied().find(|s| *s == other).unwrap_or(scopes::ADMIN)),
        })
    })
}

/// The scope a dynamic method needs for these params (contract §4.3). Methods clawgate does
/// not implement resolve to admin.
pub fn dynamic_scope(method: &str, params: &serde_json::Value) -> &'static str {
    let keys_within =
        |allowed: &[&str]| params.as_object().is_none_or(|o| o.keys().all(|k| allowed.contains(&k.as_str())));
    match method {
        // Approving a sender needs pairing; also making them the command owner needs admin.
        names::CHANNELS_PAIRING_APPROVE => {
            if params.get("bootstrapCommandOwner").and_then(|v| v.as_bool()) == Some(true) {
                scopes::ADMIN
            } else {
                scopes::PAIRING
            }
        }
        names::NODE_INVOKE => {
            let command = params.get("command").and_then(|c| c.as_str()).unwrap_or("");
            if NODE_ADMIN_ONLY_COMMANDS.contains(&command) { scopes::ADMIN } else { scopes::WRITE }
        }
        names::AGENT => {
            let msg = params.get("message").and_then(|m| m.as_str()).unwrap_or("").trim_start().to_ascii_lowercase();
            let is_reset = ["/new", "/reset"].iter().any(|c| {
                msg.strip_prefix(c).is_some_and(|rest| rest.is_empty() || rest.starts_with(char::is_whitespace))
            });
            if is_reset { scopes::ADMIN } else { scopes::WRITE }
        }
        names::SESSIONS_PATCH => {
            const ALLOWED: &[&str] = &[
                "key",
                "agentId",
                "expectedSessionId",
                "expectedLifecycleRevision",
                "expectedPermissionMode",
                "expectedMarkedUnreadAt",
                "label",
                "autoLabel",
                "icon",
                "color",
                "category",
                "boardFace",
                "boardPresentation",
                "pinned",
                "archived",
                "unread",
                "model",
                "agentRuntime",
                "thinkingLevel",
                "fastMode",
                "permissionMode",
            ];
            let full = params.get("permissionMode").and_then(|v| v.as_str()) == Some("full");
            if full || params.get("sandboxMode").is_some() || !keys_within(ALLOWED) {
                scopes::ADMIN
            } else {
                scopes::WRITE
            }
        }
        // Placing a runtime (`runtimeId`) needs write; listing needs read.
        names::ENVIRONMENTS_LIST => {
            if params.get("runtimeId").and_then(|v| v.as_str()).is_some_and(|s| !s.is_empty()) {
                scopes::WRITE
            } else {
                scopes::READ
            }
        }
        names::SESSIONS_DELETE => {
            const ALLOWED: &[&str] = &["key", "agentId", "deleteTranscript", "expectedSessionId", "archivedOnly"];
            let archived_only = params.get("archivedOnly").and_then(|v| v.as_bool()) == Some(true);
            if archived_only && keys_within(ALLOWED) { scopes::WRITE } else { scopes::ADMIN }
        }
        _ => scopes::ADMIN,
    }
}

/// What a caller needs to call `method`: clawgate's table, then upstream's, then admin (unknown
/// methods resolve to admin, as upstream does).
pub fn requirement(method: &str) -> Requirement {
    implemented(method)
        .map(|s| s.requirement)
        .or_else(|| upstream_requirement(method))
        .unwrap_or(Requirement::Scope(scopes::ADMIN))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn health_is_exempt_and_connect_is_not_advertised() {
        assert_eq!(requirement("health"), Requirement::Exempt);
        assert!(!advertised().contains(&"connect"));
        assert!(advertised().contains(&"health"));
    }

    #[test]
    fn unimplemented_upstream_methods_keep_upstream_scope() {
        // `tts.status` is upstream (operator.read) and not implemented here.
        assert_eq!(requirement("tts.status"), Requirement::Scope(scopes::READ));
        assert_eq!(requirement("node.event"), Requirement::Node);
        assert_eq!(requirement("no.such.method"), Requirement::Scope(scopes::ADMIN));
    }

    #[test]
    fn dynamic_scopes_follow_the_params() {
        use serde_json::json;
        assert_eq!(dynamic_scope("agent", &json!({"message": "hi"})), scopes::WRITE);
        assert_eq!(dynamic_scope("agent", &json!({"message": "/RESET now"})), scopes::ADMIN);
        assert_eq!(dynamic_scope("agent", &json!({"message": "/newish"})), scopes::WRITE);
        assert_eq!(dynamic_scope("sessions.patch", &json!({"key": "k", "label": "x"})), scopes::WRITE);
        assert_eq!(dynamic_scope("sessions.patch", &json!({"key": "k", "sendPolicy": "deny"})), scopes::ADMIN);
        assert_eq!(dynamic_scope("sessions.delete", &json!({"key": "k", "archivedOnly": true})), scopes::WRITE);
        assert_eq!(dynamic_scope("sessions.delete", &json!({"key": "k"})), scopes::ADMIN);
        assert_eq!(dynamic_scope("environments.list", &json!({})), scopes::READ);
        assert_eq!(dynamic_scope("environments.list", &json!({"runtimeId": ""})), scopes::READ);
        assert_eq!(dynamic_scope("environments.list", &json!({"runtimeId": "codex"})), scopes::WRITE);
    }

    #[test]
    fn implemented_scopes_match_upstream_table() {
        for spec in IMPLEMENTED {
            // health is exempt here; comfy.* and tokens.* are clawgate's own methods.
            if spec.name == names::HEALTH || spec.name.starts_with("comfy.") || spec.name.starts_with("tokens.") {
                continue;
            }
            assert_eq!(Some(spec.requirement), upstream_requirement(spec.name), "{}", spec.name);
        }
    }
}
