//! `system-presence`, `system-event`, `last-heartbeat`: params and results.

use serde::{Deserialize, Serialize};
use serde_json::Value;

use super::AnyParams;

/// `system-presence` takes no params and ignores any.
pub type SystemPresenceParams = AnyParams;

/// `system-presence` → the presence entries (schema `PresenceEntry[]`). The entries are still
/// built as JSON by the presence registry; typing them is that registry's step.
#[derive(Debug, Clone, PartialEq, Serialize)]
#[serde(transparent)]
pub struct SystemPresenceResult(pub Vec<Value>);

/// `system-event {text, reason?, tags?}`. Unknown fields are ignored, as they always were.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "camelCase", expecting = "struct SystemEventParams")]
pub struct SystemEventParams {
    /// The presence text (must not be blank; checked by the handler).
    pub text: String,
    /// Why (default `event`).
    #[serde(default)]
    pub reason: Option<String>,
    /// Tags (blank ones are dropped).
    #[serde(default)]
    pub tags: Option<Vec<String>>,
}

/// `system-event` → `{ok: true, ts}`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct SystemEventResult {
    /// Always `true`.
    pub ok: bool,
    /// When the presence entry was updated (ms since the epoch).
    pub ts: i64,
}

/// `last-heartbeat` takes no params and ignores any.
pub type LastHeartbeatParams = AnyParams;

/// `last-heartbeat` → the last heartbeat event (`{ts, status, reason?, durationMs?, message?}`)
/// or `null` when none ran since the gateway started.
#[derive(Debug, Clone, Default, PartialEq, Serialize)]
#[serde(transparent)]
pub struct LastHeartbeatResult(pub Option<Value>);

/// `set-heartbeats {enabled}`: pause or resume the interval heartbeats.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(expecting = "struct SetHeartbeatsParams")]
pub struct SetHeartbeatsParams {
    /// Whether interval heartbeats run.
    pub enabled: bool,
}

/// `set-heartbeats` → `{ok: true, enabled}`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
pub struct SetHeartbeatsResult {
    /// Always `true`.
    pub ok: bool,
    /// The state now in force.
    pub enabled: bool,
}

/// When a `wake` takes effect.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum WakeMode {
    /// Start a heartbeat turn now.
    #[serde(rename = "now")]
    Now,
    /// Let the next heartbeat read it.
    #[serde(rename = "next-heartbeat")]
    NextHeartbeat,
}

/// `wake {mode, text, sessionKey?, agentId?}` (schema `WakeParams`, an open object).
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "camelCase", expecting = "struct WakeParams")]
pub struct WakeParams {
    /// When it takes effect.
    pub mode: WakeMode,
    /// The system event's text (must not be blank; checked by the handler).
    pub text: String,
    /// The session (default: the agent's main session).
    #[serde(default)]
    pub session_key: Option<String>,
    /// The agent (default: the default agent).
    #[serde(default)]
    pub agent_id: Option<String>,
}

/// `wake` → `{ok: true, mode, eventOutcome: "queued"|"coalesced"}` (as `/hooks/wake`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct WakeResult {
    /// Always `true`.
    pub ok: bool,
    /// The mode it was queued with.
    pub mode: WakeMode,
    /// `queued`, or `coalesced` when the same text was already waiting.
    pub event_outcome: String,
}
