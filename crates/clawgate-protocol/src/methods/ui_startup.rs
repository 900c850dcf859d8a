//! The rest of the Control UI's start-up methods (openclaw 2026.9.6, `openclaw-live.md` §10): the
//! UI calls each only when `hello-ok.features.methods` lists it. Most are about features clawgate
//! does not have — Control UI plugins, session boards, projects, GitHub publishing, session
//! members, pull requests, session groups, discussions, mentions, external session catalogs — and
//! answer the schema's honest empty state; the types that would carry data are uninhabited, so
//! nothing can pretend to have some. `system.info` carries the gateway host's real facts.
//! Params and results follow the schema's `x-openclaw-2026.9.6-definitions` (closed params).

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

/// Something clawgate has none of (a plugin, a widget, a project, a mention, …): no value of this
/// type exists, so a list of them is always empty.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
pub enum Nothing {}

/// Params of a method that takes none: `{}` (closed, as upstream's schema).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct NoParams {}

/// `{sessionKey, agentId?}`, the params of `board.get`, `session.members.listEvidence` and
/// `session.discussion.info`.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct SessionRefParams {
    /// The session (not empty).
    pub session_key: String,
    /// The agent, when the UI names it.
    #[serde(default)]
    pub agent_id: Option<String>,
}

/// `plugins.controlUi.list` → `{revision, plugins: [], diagnostics: []}`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct PluginsControlUiListResult {
    /// Changes when the plugin set changes (clawgate's is always empty).
    pub revision: String,
    /// Control UI plugins (clawgate has no plugin host).
    pub plugins: Vec<Nothing>,
    /// Problems loading plugins.
    pub diagnostics: Vec<Nothing>,
}

/// `board.get` → the session's (empty) board, upstream's `BoardSnapshot`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct BoardSnapshot {
    /// The session asked about.
    pub session_key: String,
    /// The board's revision (0: never edited).
    pub revision: u64,
    /// Board tabs.
    pub tabs: Vec<Nothing>,
    /// Board widgets.
    pub widgets: Vec<Nothing>,
}

/// `projects.list {includeObserved?}`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct ProjectsListParams {
    /// Also list observed checkouts (clawgate has none).
    #[serde(default)]
    pub include_observed: Option<bool>,
}

/// `projects.list` → `{projects: [], recents: []}`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct ProjectsListResult {
    /// Agent workspaces and registered repositories (clawgate's agents have none).
    pub projects: Vec<Nothing>,
    /// Recently used projects and folders.
    pub recents: Vec<Nothing>,
}

/// `sessions.viewers.set {sessionKeys}`: the sessions the UI has on screen.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct SessionsViewersSetParams {
    /// Session keys (at most [`SessionsViewersSetParams::MAX`]).
    pub session_keys: Vec<String>,
}

impl SessionsViewersSetParams {
    /// The most session keys one call may name.
    pub const MAX: usize = 64;
}

/// `sessions.viewers.set` → the keys, echoed.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct SessionsViewersSetResult {
    /// The session keys now on screen.
    pub session_keys: Vec<String>,
}

/// `sessions.github.options {sessionKey, agentId?, idempotencyKey?}`.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct SessionsGithubOptionsParams {
    /// The session (not empty).
    pub session_key: String,
    /// The agent, when the UI names it.
    #[serde(default)]
    pub agent_id: Option<String>,
    /// Ignored: nothing is started.
    #[serde(default)]
    pub idempotency_key: Option<String>,
}

/// `sessions.github.options` → every option `null`: clawgate publishes nothing to GitHub.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct SessionsGithubOptionsResult {
    /// The caller's own GitHub account.
    pub personal: Option<Nothing>,
    /// The gateway's shared GitHub identity.
    pub shared: Option<Nothing>,
    /// A personal publication waiting for confirmation.
    pub pending_personal: Option<Nothing>,
    /// The last shared publication.
    pub latest_shared: Option<Nothing>,
}

/// What the caller may do in a session (upstream's session roles).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum SessionRole {
    /// An operator holding `operator.admin`.
    Admin,
    /// An operator holding `operator.write`.
    Member,
    /// A read-only operator.
    Viewer,
}

/// `session.members.listEvidence` → no members, no identities: clawgate sessions are not shared
/// between user profiles; `role` is what the caller's scopes allow.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct SessionMembersListEvidenceResult {
    /// The session asked about.
    pub session_key: String,
    /// Members added to the session.
    pub members: Vec<Nothing>,
    /// Identities seen in the session.
    pub identities: Vec<Nothing>,
    /// The caller's role.
    pub role: SessionRole,
    /// Visibilities the session may be switched to (clawgate has no session visibility).
    pub allowed_visibilities: Vec<Nothing>,
}

/// `controlUi.sessionPullRequests.subscribe {sessionKeys}`.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct SessionPullRequestsSubscribeParams {
    /// The sessions whose pull requests the UI would follow.
    pub session_keys: Vec<String>,
}

/// `controlUi.sessionPullRequests.subscribe` → `{subscribed: false}`: clawgate sessions open no
/// pull requests, so there is nothing to follow (upstream answers `false` for an empty list too).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
pub struct SessionPullRequestsSubscribeResult {
    /// Whether updates will be sent.
    pub subscribed: bool,
}

/// `users.prefs.get {keys?}`.
#[derive(Debug, Clone, PartialEq, Eq, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct UsersPrefsGetParams {
    /// The preference keys wanted (at most 32).
    #[serde(default)]
    pub keys: Option<Vec<String>>,
}

/// `users.prefs.set {entries, expectedEntries?}`.
#[derive(Debug, Clone, PartialEq, Default, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct UsersPrefsSetParams {
    /// Preferences to store (at most 32).
    pub entries: BTreeMap<String, serde_json::Value>,
    /// Compare-and-set: the values the caller last read.
    #[serde(default)]
    pub expected_entries: Option<BTreeMap<String, serde_json::Value>>,
}

/// The answer of `users.prefs.get` and `users.prefs.set`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(tag = "status", rename_all = "snake_case")]
pub enum UsersPrefsResult {
    /// The caller has no durable user identity to keep preferences under: clawgate has no user
    /// profiles, so the UI keeps its preferences in the browser.
    NoDurableIdentity,
}

/// `sessions.groups.list` → `{groups: [], sectionOrder: []}`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct SessionsGroupsListResult {
    /// Named session groups (clawgate has none).
    pub groups: Vec<Nothing>,
    /// The sidebar's section order.
    pub section_order: Vec<Nothing>,
}

/// `sessions.groups.defaults` → `{defaults: []}`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct SessionsGroupsDefaultsResult {
    /// Per-group working directory defaults.
    pub defaults: Vec<Nothing>,
}

/// `system.info` → the gateway host and process, as upstream's `SystemInfoResult`.
#[derive(Debug, Clone, PartialEq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct SystemInfoResult {
    /// The machine's name (its host name).
    pub machine_name: String,
    /// The host name.
    pub hostname: String,
    /// Node's `process.platform` spelling (`linux`, `darwin`, `win32`, …).
    pub platform: String,
    /// The kernel release.
    pub release: String,
    /// Node's `process.arch` spelling (`x64`, `arm64`, …).
    pub arch: String,
    /// A human label: OS and release.
    pub os_label: String,
    /// Upstream's Node.js version; clawgate is not a Node process, so this names clawgate's
    /// own runtime and version instead (`clawgate 0.1.0 (Rust)`).
    pub node_version: String,
    /// The gateway's process id.
    pub pid: u32,
    /// Changes on every start (the gateway's boot id).
    pub process_instance_id: String,
    /// Time since the gateway started.
    pub uptime_ms: u64,
    /// Logical CPUs.
    pub cpu_count: u32,
    /// The CPU model, when the OS tells.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub cpu_model: Option<String>,
    /// 1, 5 and 15 minute load averages, when the OS tells.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub load_average: Option<[f64; 3]>,
    /// Physical memory.
    pub memory_total_bytes: u64,
    /// Memory available to new work.
    pub memory_free_bytes: u64,
}

/// `session.discussion.info` → `{state: "none"}`: clawgate sessions have no discussion threads.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
pub struct SessionDiscussionInfoResult {
    /// Always [`DiscussionState::None`].
    pub state: DiscussionState,
}

/// Whether a session has a discussion thread.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum DiscussionState {
    /// It has none and cannot open one.
    None,
}

/// `mentions.list` → `{gatewayInstanceId, revision: 0, items: []}`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct MentionsListResult {
    /// The gateway's boot id: a new one tells the UI to drop what it cached.
    pub gateway_instance_id: String,
    /// Changes when the list changes (it never does).
    pub revision: u64,
    /// Messages that mention the user (clawgate has no user profiles to mention).
    pub items: Vec<Nothing>,
}

/// `sessions.catalog.list {…}`: external session catalogs (Claude Code, Codex, …) on hosts.
#[derive(Debug, Clone, PartialEq, Eq, Default, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct SessionsCatalogListParams {
    /// One catalog only.
    #[serde(default)]
    pub catalog_id: Option<String>,
    /// Only the catalogs, without their sessions.
    #[serde(default)]
    pub metadata_only: Option<bool>,
    /// Paging cursors per host.
    #[serde(default)]
    pub cursors: Option<BTreeMap<String, String>>,
    /// The agent, when the UI names it.
    #[serde(default)]
    pub agent_id: Option<String>,
    /// The UI's id for progress events.
    #[serde(default)]
    pub progress_id: Option<String>,
    /// Answer with what is ready.
    #[serde(default)]
    pub allow_partial_results: Option<bool>,
    /// A search text.
    #[serde(default)]
    pub search: Option<String>,
    /// Sessions per host (at least 1).
    #[serde(default)]
    pub limit_per_host: Option<u64>,
    /// Hosts to ask.
    #[serde(default)]
    pub host_ids: Option<Vec<String>>,
}

/// `sessions.catalog.list` → `{catalogs: []}`: clawgate reads no other agent tool's sessions.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct SessionsCatalogListResult {
    /// Session catalogs.
    pub catalogs: Vec<Nothing>,
}

/// `plugins.list` → `{plugins: [], diagnostics: [], mutationAllowed: false}`: clawgate loads no
/// OpenClaw plugins (its channels are built in) and installs none.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct PluginsListResult {
    /// Installed plugins.
    pub plugins: Vec<Nothing>,
    /// Problems loading them.
    pub diagnostics: Vec<Nothing>,
    /// Whether the caller may install, enable or remove plugins here.
    pub mutation_allowed: bool,
}

/// `diagnostics.lanes` → the command lanes with work, as the debug page shows them.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct DiagnosticsLanesResult {
    /// One row per lane that has a run queued or running.
    pub lanes: Vec<LaneRow>,
}

/// One lane: clawgate runs each session's turns one at a time in the session's own lane.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct LaneRow {
    /// `session:<session key>`.
    pub lane: String,
    /// Runs running (0 or 1).
    pub active_count: usize,
    /// How many may run at once (1).
    pub max_concurrent: usize,
    /// Runs waiting behind the running one.
    pub queued_count: usize,
}

/// `plugins.catalog.browse {query?, searchSource?, intent?, category?, cursor?, pageSize?}`.
#[derive(Debug, Clone, PartialEq, Eq, Default, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct PluginsCatalogBrowseParams {
    /// A search text (at most 200 characters).
    #[serde(default)]
    pub query: Option<String>,
    /// Who searches (`openclaw-control-ui`).
    #[serde(default)]
    pub search_source: Option<String>,
    /// Which listing (`all`, `bundled`, `trending`, `official`, `featured`).
    #[serde(default)]
    pub intent: Option<String>,
    /// A category id.
    #[serde(default)]
    pub category: Option<String>,
    /// The page to continue from.
    #[serde(default)]
    pub cursor: Option<String>,
    /// Items per page (1 to 100).
    #[serde(default)]
    pub page_size: Option<u64>,
}

/// `plugins.catalog.browse` → `{items: []}`: clawgate installs no plugins, so it offers no
/// catalog to install from.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct PluginsCatalogBrowseResult {
    /// Catalog entries.
    pub items: Vec<Nothing>,
}
