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

/// `last-heartbeat` → the last heartbeat event or `null`. clawgate runs no heartbeat agent yet, so
/// there is no event to carry and this always serialises as `null`; when heartbeats exist this
/// becomes `Option<HeartbeatEvent>`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
pub struct LastHeartbeatResult;
