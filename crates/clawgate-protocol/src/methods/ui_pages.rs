//! Methods the Control UI's pages call for features clawgate does not have, or has only in part
//! (openclaw 2026.9.6): skills (`skills.status`, `skills.search`, `skills.library.list` — clawgate
//! has no skills, no ClawHub and no skill library), execution environments (`environments.list`:
//! the gateway itself and its paired nodes; no cloud workers) and gateway-stored themes
//! (`themes.list`: none). Params follow the schema's `x-openclaw-2026.9.6-definitions` (closed);
//! upstream has no result definitions for these, so the results follow what its handlers return
//! and its pages read. The types that would carry data clawgate lacks are uninhabited
//! ([`Nothing`]), so nothing can pretend to have some.

use serde::{Deserialize, Serialize};

pub use super::ui_startup::{NoParams, Nothing};

/// `skills.status {agentId?, sessionKey?}`.
#[derive(Debug, Clone, PartialEq, Eq, Default, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct SkillsStatusParams {
    /// The agent (default: the default agent).
    #[serde(default)]
    pub agent_id: Option<String>,
    /// A session whose selected skills to report.
    #[serde(default)]
    pub session_key: Option<String>,
}

/// `skills.status` → upstream's skill status report with no skills: clawgate's agents load no
/// skills. Upstream's `workspaceDir` and `managedSkillsDir` are left out: clawgate's agents
/// have neither directory.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct SkillsStatusResult {
    /// The agent reported on.
    pub agent_id: String,
    /// Its skills and their readiness.
    pub skills: Vec<Nothing>,
}

/// `skills.search {query?, limit?}` (a ClawHub search upstream).
#[derive(Debug, Clone, PartialEq, Eq, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SkillsSearchParams {
    /// Search text (not empty when given).
    #[serde(default)]
    pub query: Option<String>,
    /// At most this many results, 1 to 100.
    #[serde(default)]
    pub limit: Option<u64>,
}

/// `skills.search` → `{results: []}` (schema `SkillsSearchResult`): clawgate reaches no skill
/// registry.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct SkillsSearchResult {
    /// Matching registry skills.
    pub results: Vec<Nothing>,
}

/// Which library entries `skills.library.list` shows.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum LibraryScope {
    /// The caller's own.
    Mine,
    /// Shared with the team.
    Team,
    /// Every entry the caller may see.
    All,
}

/// `skills.library.list {sessionKey?, scope?}`.
#[derive(Debug, Clone, PartialEq, Eq, Default, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct SkillsLibraryListParams {
    /// Also report this session's selections (1 to 512 characters).
    #[serde(default)]
    pub session_key: Option<String>,
    /// `mine`, `team` or `all`.
    #[serde(default)]
    pub scope: Option<LibraryScope>,
}

/// Where a new library skill would be saved. clawgate keeps no skill library, so nowhere.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum LibraryTarget {
    /// No target: skills cannot be created.
    Unavailable,
}

/// A session's part of `skills.library.list`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct LibrarySession {
    /// The session asked about.
    pub session_key: String,
    /// Skills pinned to it.
    pub selections: Vec<Nothing>,
    /// Library skills it could attach.
    pub attachable: Vec<Nothing>,
}

/// `skills.library.list` → an empty library nobody can write to.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct SkillsLibraryListResult {
    /// Library entries.
    pub entries: Vec<Nothing>,
    /// The caller's user profile (clawgate has no user profiles: `null`).
    pub profile_id: Option<Nothing>,
    /// Whether several user profiles share the gateway.
    pub multiple_profiles: bool,
    /// Where new skills would go.
    pub default_target: LibraryTarget,
    /// Whether the caller may manage the shared library.
    pub can_manage_workspace: bool,
    /// Upstream's cap on skills a new session selects by default.
    pub default_selection_limit: u32,
    /// The session's selections, when `sessionKey` was given.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub session: Option<LibrarySession>,
}

/// `environments.list` projections.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum EnvironmentsProjection {
    /// Only the cloud-worker profiles, no environments.
    Profiles,
}

/// `environments.list {runtimeId?, projection?, includeDesktopSetup?}`.
#[derive(Debug, Clone, PartialEq, Eq, Default, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct EnvironmentsListParams {
    /// The agent runtime that would be placed (1 to 128 characters; needs `operator.write`).
    #[serde(default)]
    pub runtime_id: Option<String>,
    /// `profiles`: only the worker profiles.
    #[serde(default)]
    pub projection: Option<EnvironmentsProjection>,
    /// Inspect the host's desktop setup (clawgate hosts no desktop: ignored).
    #[serde(default)]
    pub include_desktop_setup: Option<bool>,
}

/// An environment's state (schema `EnvironmentStatus`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum EnvironmentStatus {
    /// Usable now.
    Available,
    /// Known but not usable now (a node that is not connected).
    Unavailable,
}

/// How long an environment lives (schema `trust`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum EnvironmentTrust {
    /// The gateway host or a paired device.
    Persistent,
}

/// One environment (schema `EnvironmentSummary`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct EnvironmentSummary {
    /// `gateway`, or `node:<nodeId>`.
    pub id: String,
    /// `local` (the gateway host) or `node`.
    #[serde(rename = "type")]
    pub kind: &'static str,
    /// Its name for display.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub label: Option<String>,
    /// Whether it can be used now.
    pub status: EnvironmentStatus,
    /// Node's `process.platform` names (`linux`, `darwin`, …).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub platform: Option<String>,
    /// Whether agent sessions run there (the gateway: yes; a node: no).
    pub session_host: bool,
    /// When a node last connected (ms).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub last_connected_at_ms: Option<u64>,
    /// When a node last went away (ms).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub last_disconnected_at_ms: Option<u64>,
    /// Always persistent: clawgate starts no disposable workers.
    pub trust: EnvironmentTrust,
    /// What it offers: the gateway's own abilities, a node's declared caps and commands.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub capabilities: Vec<String>,
}

/// `environments.list` → the gateway host and every known node (upstream's `profiles`, the
/// cloud-worker profiles, are left out: clawgate has none).
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct EnvironmentsListResult {
    /// Gateway first, then nodes.
    pub environments: Vec<EnvironmentSummary>,
}

/// The theme selection in force (`themes.list` `current`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct ThemeSelection {
    /// The theme id (clawgate stores no selection: the UI's default, `claw`).
    pub id: &'static str,
    /// `system`: follow the browser's light or dark preference.
    pub mode: &'static str,
    /// `gateway`: not a user profile's choice (clawgate has no user profiles).
    pub scope: &'static str,
    /// What a profile chose over the gateway's defaults (nothing).
    pub overrides: Overrides,
}

/// A profile's theme overrides: none.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Overrides {}

/// A theme's metadata (upstream's theme descriptor).
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct ThemeDescriptor {
    /// Theme id.
    pub id: &'static str,
    /// Display name.
    pub name: &'static str,
    /// One line about it.
    pub description: &'static str,
    /// `builtin`: it ships inside the Control UI, not with the gateway.
    pub source: &'static str,
    /// The modes it provides.
    pub modes: [&'static str; 2],
}

/// `themes.list {}` → no gateway-stored themes (no imported or plugin themes: the UI then offers
/// its built-in ones), the UI's default theme as the current one.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct ThemesListResult {
    /// The selection in force.
    pub current: ThemeSelection,
    /// The current theme's metadata.
    pub theme: ThemeDescriptor,
    /// Themes stored on the gateway.
    pub themes: Vec<Nothing>,
}
