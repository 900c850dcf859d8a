//! `progressCard.get`, `sessions.observer.visibility`, `update.status`, `sessions.companion.state`:
//! methods the OpenClaw Control UI calls at start-up for features clawgate does not have (progress
//! cards, the session observer, self-update, the session companion). Their results are the schema's honest empty states; the types that
//! would carry data are uninhabited, so nothing can pretend to have some.

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
