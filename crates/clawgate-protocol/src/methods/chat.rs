//! `chat.send`, `chat.history`, `chat.abort`, `chat.inject`: params and results.

use serde::{Deserialize, Serialize};
use serde_json::Value;

use super::lenient;
use super::sessions::SessionInfo;

/// `chat.send {sessionKey, message, idempotencyKey, agentId?, timeoutMs?,
/// suppressCommandInterpretation?, …}`. Unknown fields are ignored.
///
/// Every field is read only when it has its JSON type (as it always was), and the required ones
/// are checked by the handler in the order clients have always seen: a missing `sessionKey` is
/// `SESSION_MUTATION_TARGET_REQUIRED` (with details, which a decode error cannot carry), then
/// `message`, then `idempotencyKey`. The message (up to the frame limit) is moved out of the
/// request, never copied.
#[derive(Debug, Clone, Default, PartialEq, Eq, Deserialize, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct ChatSendParams {
    /// Session key (a bare key belongs to `agentId` or the default agent).
    #[serde(default, deserialize_with = "lenient::any")]
    pub session_key: Option<String>,
    /// The user's message.
    #[serde(default, deserialize_with = "lenient::any")]
    pub message: Option<String>,
    /// = the run id; a repeat starts nothing.
    #[serde(default, deserialize_with = "lenient::any")]
    pub idempotency_key: Option<String>,
    /// The agent of a bare key.
    #[serde(default, deserialize_with = "lenient::any")]
    pub agent_id: Option<String>,
    /// Run timeout in ms (0: the agent's default).
    #[serde(default, deserialize_with = "lenient::any")]
    pub timeout_ms: Option<u64>,
    /// `true`: a ComfyUI command is sent to the agent as text instead of being answered.
    #[serde(default, deserialize_with = "lenient::any")]
    pub suppress_command_interpretation: Option<bool>,
    /// clawgate's extension: data the client attaches to this turn (any keys), read by the model
    /// as untrusted quoted data; checked by the handler (an object, or `null`).
    #[serde(default)]
    pub context: Option<serde_json::Value>,
    /// Upstream's working context (`{page, title?, selection?, …}`, 2026.9.6), read the same way.
    #[serde(default)]
    pub work_context: Option<serde_json::Value>,
}

/// Where a `chat.send` stands.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ChatSendStatus {
    /// A run was queued; its reply streams as events.
    Started,
    /// The same idempotency key is still running.
    InFlight,
    /// The same idempotency key already finished (or a command was answered).
    Ok,
}

/// `chat.send` → `{runId, status}`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct ChatSendResult {
    /// = the idempotency key.
    pub run_id: String,
    /// What happened.
    pub status: ChatSendStatus,
}

/// `chat.history {sessionKey, agentId?, limit? (1..1000), pendingBefore?}`. Unknown fields are
/// ignored.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize, Serialize)]
#[serde(rename_all = "camelCase", expecting = "struct HistoryParams")]
pub struct ChatHistoryParams {
    /// Session key.
    pub session_key: String,
    /// The agent of a bare key.
    #[serde(default)]
    pub agent_id: Option<String>,
    /// Messages to return (default 200; 1..=1000, checked by the handler).
    #[serde(default)]
    pub limit: Option<usize>,
    /// Return entries before this transcript seq (paging backwards).
    #[serde(default)]
    pub pending_before: Option<i64>,
}

/// A queued input not yet in the transcript. clawgate stores a message when its run starts and
/// shows queued runs nowhere else, so no value of this type exists.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum PendingInput {}

/// `pendingInputs` (schema `ChatPendingInputsPage`): always empty.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct PendingInputs {
    /// None.
    pub items: Vec<PendingInput>,
    /// `0`.
    pub total: u64,
}

impl PendingInputs {
    /// The empty page.
    pub fn none() -> Self {
        Self { items: Vec::new(), total: 0 }
    }
}

/// The model a session's agent uses, split as clients show it (empty when unknown).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct HistoryDefaults {
    /// Provider id.
    pub model_provider: String,
    /// Model id at the provider.
    pub model: String,
}

/// The run of the session still going.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct InFlightRun {
    /// Its run id.
    pub run_id: String,
}

/// `chat.history` → a window of the transcript, oldest first.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct ChatHistoryResult {
    /// The full session key.
    pub session_key: String,
    /// The current transcript's id; absent for a session not stored yet.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub session_id: Option<String>,
    /// Transcript messages as stored (open objects: role, content, usage, `__openclaw`, …).
    pub messages: Vec<Value>,
    /// Queued inputs (none).
    pub pending_inputs: PendingInputs,
    /// Older messages exist.
    pub has_more: bool,
    /// Messages in the transcript.
    pub total_messages: u64,
    /// The agent's model.
    pub defaults: HistoryDefaults,
    /// The session.
    pub session_info: SessionInfo,
    /// The `pendingBefore` of the previous page, when `hasMore`.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub next_before: Option<i64>,
    /// The session's running (or first queued) run.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub in_flight_run: Option<InFlightRun>,
}

/// `chat.abort {sessionKey, agentId?, runId?, preserveSideRuns?}` (closed, as the schema's).
#[derive(Debug, Clone, PartialEq, Eq, Deserialize, Serialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields, expecting = "struct AbortParams")]
pub struct ChatAbortParams {
    /// Session key.
    pub session_key: String,
    /// The agent of a bare key.
    #[serde(default)]
    pub agent_id: Option<String>,
    /// Only this run (default: every run of the session).
    #[serde(default)]
    pub run_id: Option<String>,
    /// Accepted and ignored: clawgate has no side runs.
    #[serde(default)]
    pub preserve_side_runs: Option<bool>,
}

/// `chat.abort` → `{ok: true, aborted, runIds}`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct ChatAbortResult {
    /// Always `true`.
    pub ok: bool,
    /// Whether any run was cancelled.
    pub aborted: bool,
    /// The runs cancelled.
    pub run_ids: Vec<String>,
}

/// `chat.inject {sessionKey, agentId?, message, label?}` (closed, as the schema's).
#[derive(Debug, Clone, PartialEq, Eq, Deserialize, Serialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields, expecting = "struct InjectParams")]
pub struct ChatInjectParams {
    /// Session key.
    pub session_key: String,
    /// The agent of a bare key.
    #[serde(default)]
    pub agent_id: Option<String>,
    /// The assistant text to append (not empty).
    pub message: String,
    /// A label (at most 100 characters).
    #[serde(default)]
    pub label: Option<String>,
}

/// `chat.inject` → `{ok: true, messageId}`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct ChatInjectResult {
    /// Always `true`.
    pub ok: bool,
    /// The appended message's id (its run id is `inject-<messageId>`).
    pub message_id: String,
}
