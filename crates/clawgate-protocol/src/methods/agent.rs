//! `agent` (two responses), `agent.wait`, `agent.identity.get`, `agents.list`: params and
//! results.
//!
//! Unknown params are ignored and fields are read only when they have their JSON type, as they
//! always were; the required ones are checked while decoding, with the texts clients have
//! always seen (`must have required property 'message'`).

use serde::{Deserialize, Serialize};

use super::{AnyParams, lenient};

/// What `agent` read before checking it.
#[derive(Deserialize)]
#[serde(rename_all = "camelCase", expecting = "struct AgentParams")]
struct AgentRaw {
    #[serde(default, deserialize_with = "lenient::any")]
    message: Option<String>,
    #[serde(default, deserialize_with = "lenient::any")]
    idempotency_key: Option<String>,
    #[serde(default, deserialize_with = "lenient::any")]
    agent_id: Option<String>,
    #[serde(default, deserialize_with = "lenient::any")]
    session_key: Option<String>,
    #[serde(default, deserialize_with = "lenient::any")]
    timeout: Option<u64>,
    #[serde(default, deserialize_with = "lenient::any")]
    extra_system_prompt: Option<String>,
    #[serde(default)]
    context: Option<serde_json::Value>,
}

/// `agent {message, idempotencyKey, agentId?, sessionKey?, timeout? (s), extraSystemPrompt?,
/// context?}`.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize, Default, Serialize)]
#[serde(try_from = "AgentRaw", rename_all = "camelCase")]
pub struct AgentParams {
    /// The user's message (not empty).
    pub message: String,
    /// = the run id (not empty); a repeat replays the stored result.
    pub idempotency_key: String,
    /// The agent of a bare key.
    pub agent_id: Option<String>,
    /// Session key; `None` (also for an empty one) means `main`.
    pub session_key: Option<String>,
    /// Run timeout in seconds; `None` (also for `0`) means the agent's default.
    pub timeout: Option<u64>,
    /// Extra system prompt text for this run.
    pub extra_system_prompt: Option<String>,
    /// clawgate's extension: data the client attaches to this turn (`documentId`, `title`,
    /// `selection`, `outline`, any keys), read by the model as untrusted quoted data. `null` is
    /// no context; anything but an object is refused.
    pub context: Option<serde_json::Map<String, serde_json::Value>>,
}

impl TryFrom<AgentRaw> for AgentParams {
    type Error = &'static str;

    fn try_from(raw: AgentRaw) -> Result<Self, Self::Error> {
        let message = raw.message.filter(|m| !m.is_empty()).ok_or("must have required property 'message'")?;
        let idempotency_key =
            raw.idempotency_key.filter(|k| !k.is_empty()).ok_or("must have required property 'idempotencyKey'")?;
        Ok(Self {
            message,
            idempotency_key,
            agent_id: raw.agent_id,
            session_key: raw.session_key.filter(|k| !k.is_empty()),
            timeout: raw.timeout.filter(|t| *t > 0),
            extra_system_prompt: raw.extra_system_prompt,
            context: match raw.context {
                None | Some(serde_json::Value::Null) => None,
                Some(serde_json::Value::Object(map)) => Some(map),
                Some(_) => return Err("context must be object"),
            },
        })
    }
}

/// The first response's status.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum AcceptedStatus {
    /// The run is queued.
    Accepted,
}

/// `agent`'s first response: `{runId, sessionKey, agentId, status: "accepted", acceptedAt}`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct AgentAccepted {
    /// = the idempotency key.
    pub run_id: String,
    /// The full session key.
    pub session_key: String,
    /// The agent.
    pub agent_id: String,
    /// Always [`AcceptedStatus::Accepted`].
    pub status: AcceptedStatus,
    /// When it was accepted (ms since the epoch).
    pub accepted_at: i64,
}

/// Token counts of a finished run (also `usage` of the stored run result).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", default)]
pub struct RunUsage {
    /// Prompt tokens.
    pub input: u64,
    /// Completion tokens.
    pub output: u64,
    /// Prompt tokens read from the provider's cache.
    pub cache_read: u64,
    /// Prompt tokens written to the provider's cache.
    pub cache_write: u64,
    /// `input + output`.
    pub total_tokens: u64,
}

/// One reply payload of a finished `agent` run.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct AgentPayload {
    /// The reply text.
    pub text: String,
    /// Always `null`: clawgate's agents reply with text.
    pub media_url: Option<String>,
}

/// Who ran the turn.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct AgentMeta {
    /// The transcript the turn was written to.
    pub session_id: String,
    /// Provider id.
    pub provider: String,
    /// Model id.
    pub model: String,
    /// Tokens used; `null` when the provider reported none.
    pub usage: Option<RunUsage>,
}

/// Facts of a finished `agent` run.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct AgentRunMeta {
    /// How long the turn took.
    pub duration_ms: u64,
    /// Who ran it.
    pub agent_meta: AgentMeta,
}

/// `result` of a completed `agent` run.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct AgentRunResult {
    /// The reply (one text payload).
    pub payloads: Vec<AgentPayload>,
    /// Facts of the run.
    pub meta: AgentRunMeta,
}

/// `summary` of an `agent` final response.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum AgentSummary {
    /// The run completed.
    Completed,
    /// The run was aborted or timed out.
    Aborted,
}

/// What cut an aborted `agent` run short.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum TimeoutPhase {
    /// Its timeout.
    Run,
    /// An abort (`chat.abort`, shutdown).
    Aborted,
}

/// `agent`'s final response (same request id as the first). A failed run is an error response
/// instead (`UNAVAILABLE`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "status", rename_all = "lowercase", rename_all_fields = "camelCase")]
pub enum AgentResult {
    /// `{runId, status: "ok", summary: "completed", result}`.
    Ok {
        /// = the idempotency key.
        run_id: String,
        /// [`AgentSummary::Completed`].
        summary: AgentSummary,
        /// The reply and facts.
        result: AgentRunResult,
    },
    /// `{runId, status: "timeout", summary: "aborted", stopReason, timeoutPhase,
    /// providerStarted}`.
    Timeout {
        /// = the idempotency key.
        run_id: String,
        /// [`AgentSummary::Aborted`].
        summary: AgentSummary,
        /// `timeout` or `rpc`.
        stop_reason: String,
        /// What cut it short.
        timeout_phase: TimeoutPhase,
        /// Whether any text was produced.
        provider_started: bool,
    },
}

/// What `agent.wait` read before checking it.
#[derive(Deserialize)]
#[serde(rename_all = "camelCase", expecting = "struct AgentWaitParams")]
struct AgentWaitRaw {
    #[serde(default, deserialize_with = "lenient::any")]
    run_id: Option<String>,
    #[serde(default, deserialize_with = "lenient::any")]
    timeout_ms: Option<u64>,
}

/// `agent.wait {runId, timeoutMs?}`.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(try_from = "AgentWaitRaw")]
pub struct AgentWaitParams {
    /// The run (not empty).
    pub run_id: String,
    /// How long to wait (default 30 s, at most 600 s; applied by the handler).
    pub timeout_ms: Option<u64>,
}

impl TryFrom<AgentWaitRaw> for AgentWaitParams {
    type Error = &'static str;

    fn try_from(raw: AgentWaitRaw) -> Result<Self, Self::Error> {
        let run_id = raw.run_id.filter(|r| !r.is_empty()).ok_or("must have required property 'runId'")?;
        Ok(Self { run_id, timeout_ms: raw.timeout_ms })
    }
}

/// How a reply is shown.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Disposition {
    /// Shown to the user.
    Visible,
}

/// The reply of a completed run.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct TerminalReply {
    /// Always [`Disposition::Visible`].
    pub disposition: Disposition,
    /// The reply text.
    pub text: String,
}

/// `agent.wait` → where the run stands.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(tag = "status", rename_all = "lowercase", rename_all_fields = "camelCase")]
pub enum AgentWaitResult {
    /// Completed.
    Ok {
        /// The run.
        run_id: String,
        /// When it ended (ms since the epoch).
        ended_at: i64,
        /// Why the model stopped.
        stop_reason: String,
        /// Its reply.
        terminal_reply: TerminalReply,
    },
    /// Aborted or timed out.
    Timeout {
        /// The run.
        run_id: String,
        /// When it ended (ms since the epoch).
        ended_at: i64,
        /// `timeout` or `rpc`.
        stop_reason: String,
    },
    /// Failed, or cut short by a restart (then `endedAt` and `error` are `null`).
    Error {
        /// The run.
        run_id: String,
        /// When it ended (ms since the epoch).
        ended_at: Option<i64>,
        /// What went wrong.
        error: Option<String>,
    },
    /// Still queued or running when the wait ended.
    Pending {
        /// The run.
        run_id: String,
    },
}

/// `agent.identity.get {agentId?, sessionKey?}` (each read when a string).
#[derive(Debug, Clone, Default, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct AgentIdentityGetParams {
    /// The agent.
    #[serde(default, deserialize_with = "lenient::any")]
    pub agent_id: Option<String>,
    /// A session whose agent is meant.
    #[serde(default, deserialize_with = "lenient::any")]
    pub session_key: Option<String>,
}

/// Where an agent's name comes from.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum NameSource {
    /// `agents.list[].name`.
    Config,
    /// No name configured: the id.
    Default,
}

/// `agent.identity.get` → `{agentId, name, nameSource}` (schema `AgentIdentityResult`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct AgentIdentityGetResult {
    /// The agent.
    pub agent_id: String,
    /// Its display name.
    pub name: String,
    /// Where the name comes from.
    pub name_source: NameSource,
}

/// `agents.list` takes no params and ignores any.
pub type AgentsListParams = AnyParams;

/// Who owns the agent list (schema `ownership`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum AgentOwnership {
    /// This gateway's config alone.
    Sole,
}

/// How sessions are scoped (schema `scope`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum SessionScope {
    /// One session per sender.
    PerSender,
}

/// What an entry of `agents.list` is.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum AgentKind {
    /// A configured agent.
    Agent,
}

/// An agent's model.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct AgentModel {
    /// `<provider>/<model>`.
    pub primary: String,
}

/// One configured agent.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct AgentEntry {
    /// Its id.
    pub id: String,
    /// Always [`AgentKind::Agent`].
    pub kind: AgentKind,
    /// Its display name, when configured.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub name: Option<String>,
    /// Its model.
    pub model: AgentModel,
}

/// `agents.list` → `{defaultId, ownership, selectionRequired, mainKey, scope, agents}`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct AgentsListResult {
    /// The agent bare session keys belong to.
    pub default_id: String,
    /// Always [`AgentOwnership::Sole`].
    pub ownership: AgentOwnership,
    /// Always `false`: the default agent is used when none is named.
    pub selection_required: bool,
    /// The main session's key under each agent (`main`).
    pub main_key: String,
    /// Always [`SessionScope::PerSender`].
    pub scope: SessionScope,
    /// The configured agents.
    pub agents: Vec<AgentEntry>,
}
