//! Methods the OpenClaw Control UI calls at start-up. Those for features clawgate does not have
//! (progress cards, the session observer, self-update, the session companion, exec and system-agent
//! approvals, voice, tasks, transcript branches) answer the schema's honest empty states; the types
//! that would carry data are uninhabited, so nothing can pretend to have some. `models.authStatus`
//! and `chat.metadata` carry clawgate's providers, models and commands.

use serde::{Deserialize, Serialize};

/// `progressCard.get {sessionKey}`.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct ProgressCardGetParams {
    /// The session whose card is asked for (not empty).
    pub session_key: String,
}

/// A session's progress card. clawgate's agents keep none, so no value of this type exists.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
pub enum ProgressCard {}

/// `progressCard.get` → `{card: null}`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct ProgressCardGetResult {
    /// The card (never one).
    pub card: Option<ProgressCard>,
}

/// `sessions.observer.visibility {visible}`: whether the UI's session observer is on screen.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SessionsObserverVisibilityParams {
    /// On screen or not.
    pub visible: bool,
}

/// `sessions.observer.visibility` → `{ok: true}`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
pub struct SessionsObserverVisibilityResult {
    /// Always `true`.
    pub ok: bool,
}

/// `update.status {refreshCheckout?}`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct UpdateStatusParams {
    /// Re-read a git checkout's state first (clawgate has no checkout to read).
    #[serde(default)]
    pub refresh_checkout: Option<bool>,
}

/// A pending self-update's marker or an available update. clawgate does not update itself (it
/// is upgraded by its package manager or binary), so no value of this type exists.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
pub enum UpdateInfo {}

/// `update.status` → `{sentinel: null, updateAvailable: null}`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct UpdateStatusResult {
    /// A self-update in progress (never one).
    pub sentinel: Option<UpdateInfo>,
    /// A newer version found (clawgate never checks).
    pub update_available: Option<UpdateInfo>,
}

/// `sessions.companion.state {sessionKey, agentId?}`.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct SessionsCompanionStateParams {
    /// The session (not empty).
    pub session_key: String,
    /// The agent, when the UI names it.
    #[serde(default)]
    pub agent_id: Option<String>,
}

/// A side question asked of a session's companion and its answer. clawgate has no companion, so
/// no value of this type exists.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
pub enum CompanionExchange {}

/// `sessions.companion.state` → `{exchanges: []}`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct SessionsCompanionStateResult {
    /// The companion's exchanges (none).
    pub exchanges: Vec<CompanionExchange>,
}

/// `exec.approval.list`: upstream defines no params; any are ignored.
pub type ExecApprovalListParams = super::AnyParams;

/// A pending exec approval. Exec approvals come from nodes running commands, and clawgate has no
/// nodes yet, so no value of this type exists.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
pub enum ExecApproval {}

/// `exec.approval.list` → `[]` (upstream answers a bare array).
pub type ExecApprovalListResult = Vec<ExecApproval>;

/// `openclaw.approval.list`: upstream defines no params; any are ignored.
pub type OpenclawApprovalListParams = super::AnyParams;

/// A pending approval of the gateway's own system agent. clawgate has no system agent, so no
/// value of this type exists.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
pub enum OpenclawApproval {}

/// `openclaw.approval.list` → `[]` (upstream answers a bare array).
pub type OpenclawApprovalListResult = Vec<OpenclawApproval>;

/// `talk.catalog {provider?, model?}`.
#[derive(Debug, Clone, PartialEq, Eq, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TalkCatalogParams {
    /// Narrow the catalog to one provider.
    #[serde(default)]
    pub provider: Option<String>,
    /// Narrow the catalog to one model.
    #[serde(default)]
    pub model: Option<String>,
}

/// A talk mode, transport or brain, or a speech/transcription/realtime provider. clawgate has no
/// voice features, so no value of this type exists.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
pub enum TalkCapability {}

/// One family of talk providers (speech, transcription, realtime).
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct TalkProviders {
    /// Whether a provider of the family is configured and usable (never).
    pub ready: bool,
    /// The providers (none).
    pub providers: Vec<TalkCapability>,
}

/// `talk.catalog` → the empty catalog: no modes, transports, brains or providers.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct TalkCatalogResult {
    /// Talk modes offered (none).
    pub modes: Vec<TalkCapability>,
    /// Audio transports offered (none).
    pub transports: Vec<TalkCapability>,
    /// Who answers in a talk (none).
    pub brains: Vec<TalkCapability>,
    /// Text-to-speech providers.
    pub speech: TalkProviders,
    /// Speech-to-text providers.
    pub transcription: TalkProviders,
    /// Realtime voice providers.
    pub realtime: TalkProviders,
}

impl TalkCatalogResult {
    /// The catalog of a gateway without voice.
    pub fn empty() -> Self {
        let none = || TalkProviders { ready: false, providers: Vec::new() };
        Self {
            modes: Vec::new(),
            transports: Vec::new(),
            brains: Vec::new(),
            speech: none(),
            transcription: none(),
            realtime: none(),
        }
    }
}

/// A task's state, as `tasks.list` filters on it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum TaskStatus {
    /// Waiting to start.
    Queued,
    /// Started.
    Running,
    /// Finished well.
    Completed,
    /// Finished with an error.
    Failed,
    /// Stopped by someone.
    Cancelled,
    /// Ran out of time.
    TimedOut,
}

/// `tasks.list`'s `status`: one state or several.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(untagged)]
pub enum TaskStatusFilter {
    /// One state.
    One(TaskStatus),
    /// Any of these states.
    Any(Vec<TaskStatus>),
}

/// Which time `tasks.list` sorts by.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "camelCase")]
pub enum TaskSort {
    /// Last change.
    UpdatedAt,
    /// End time.
    EndedAt,
}

/// `tasks.list {status?, agentId?, sessionKey?, limit?, cursor?, sortBy?}`.
#[derive(Debug, Clone, PartialEq, Eq, Default, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct TasksListParams {
    /// Only tasks in these states.
    #[serde(default)]
    pub status: Option<TaskStatusFilter>,
    /// Only this agent's tasks.
    #[serde(default)]
    pub agent_id: Option<String>,
    /// Only this session's tasks.
    #[serde(default)]
    pub session_key: Option<String>,
    /// At most this many (1–500).
    #[serde(default)]
    pub limit: Option<u32>,
    /// Where the previous page ended.
    #[serde(default)]
    pub cursor: Option<String>,
    /// The order.
    #[serde(default)]
    pub sort_by: Option<TaskSort>,
}

/// A background task (sub-agent, CLI run, flow). clawgate keeps no task registry, so no value of
/// this type exists.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
pub enum TaskEntry {}

/// `tasks.list` → `{tasks: []}`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct TasksListResult {
    /// The tasks (none).
    pub tasks: Vec<TaskEntry>,
}

/// `models.authStatus {refresh?, agentId?}`.
#[derive(Debug, Clone, PartialEq, Eq, Default, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct ModelsAuthStatusParams {
    /// Re-check credentials first (clawgate's come from the config, so there is nothing to refresh).
    #[serde(default)]
    pub refresh: Option<bool>,
    /// The agent whose view is asked for (must exist).
    #[serde(default)]
    pub agent_id: Option<String>,
}

/// How a provider's credentials stand. clawgate's come from the config and never expire.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum ProviderAuthState {
    /// Configured; nothing to log in to and nothing that expires.
    Static,
}

/// Where a provider's API key comes from.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum ApiKeySourceKind {
    /// `models.providers.<id>.apiKey`.
    Config,
}

/// `apiKey` of a provider entry: only where the key comes from, never the key.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
pub struct ApiKeySource {
    /// Where.
    pub source: ApiKeySourceKind,
}

/// A saved login (OAuth account, token profile). clawgate has no auth profiles, so no value of
/// this type exists.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
pub enum AuthProfile {}

/// One provider clawgate can call.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct ProviderAuth {
    /// Provider id (`models.providers.<id>`, or the built-in `ollama`).
    pub provider: String,
    /// The name shown (the id: clawgate has no other).
    pub display_name: String,
    /// Always [`ProviderAuthState::Static`].
    pub status: ProviderAuthState,
    /// Saved logins (none).
    pub profiles: Vec<AuthProfile>,
    /// Set when the provider has an API key; absent for one that needs none (a local server).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub api_key: Option<ApiKeySource>,
}

/// `models.authStatus` → `{ts, providers}`. No `providerCapabilities`: the UI offers quick key
/// set-up and logins only when they are listed, and clawgate has neither.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct ModelsAuthStatusResult {
    /// When this was read (ms since the epoch).
    pub ts: i64,
    /// Every provider clawgate can call, by id.
    pub providers: Vec<ProviderAuth>,
}

/// `chat.metadata {agentId?, authProfileId?, sessionKey?}` (not both `sessionKey` and
/// `authProfileId`).
#[derive(Debug, Clone, PartialEq, Eq, Default, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct ChatMetadataParams {
    /// The agent (must exist; the default agent when absent).
    #[serde(default)]
    pub agent_id: Option<String>,
    /// A saved model account to preview (clawgate has none, so any is refused).
    #[serde(default)]
    pub auth_profile_id: Option<String>,
    /// The session whose view is asked for.
    #[serde(default)]
    pub session_key: Option<String>,
}

/// `chat.metadata` → what the chat composer offers: the models one may pick and the chat
/// commands clawgate understands.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct ChatMetadataResult {
    /// As `models.list`.
    pub models: Vec<super::catalog::ModelEntry>,
    /// As `commands.list`.
    pub commands: Vec<super::catalog::CommandEntry>,
    /// Whether agents may spawn and wait on sub-agents (clawgate's cannot).
    pub swarm_enabled: bool,
}

/// `sessions.branches.list {sessionKey, agentId?}`.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct SessionsBranchesListParams {
    /// The session (not empty).
    pub session_key: String,
    /// The agent, when the UI names it.
    #[serde(default)]
    pub agent_id: Option<String>,
}

/// A branch of a session's transcript left by a rewind or fork. clawgate's transcripts are linear
/// (no rewind, no fork), so no value of this type exists.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
pub enum SessionBranch {}

/// `sessions.branches.list` → `{branches: []}`, the UI's own state before it asks.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct SessionsBranchesListResult {
    /// Other branches to switch to (none).
    pub branches: Vec<SessionBranch>,
}
