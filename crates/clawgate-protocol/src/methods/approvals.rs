//! `plugin.approval.list|request|waitDecision|resolve`: params and results (schema
//! `PluginApprovalRequestParams`, `PluginApprovalResolveParams`; upstream defines no results).
//!
//! Params ignore unknown fields and read a field of the wrong type as absent where clawgate
//! never refused one; the handler refuses the rest with its own messages.

use serde::{Deserialize, Deserializer, Serialize};
use serde_json::{Map, Value};

pub use super::Checked;
use super::lenient;

/// `plugin.approval.list {status?}`: `pending` (the default, what upstream lists), `approved`,
/// `rejected`, `expired` or `all` (clawgate's, to look back at decisions).
#[derive(Debug, Clone, Default, PartialEq, Eq, Deserialize)]
pub struct PluginApprovalListParams {
    /// Which approvals.
    #[serde(default, deserialize_with = "lenient::any")]
    pub status: Option<String>,
}

/// How serious a plugin approval is.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum PluginApprovalSeverity {
    /// Informational.
    Info,
    /// A warning.
    Warning,
    /// Critical.
    Critical,
}

/// `plugin.approval.request` (schema `PluginApprovalRequestParams`).
#[derive(Debug, Clone, Default, PartialEq, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct PluginApprovalRequestParams {
    /// At most 80 characters (required by the handler).
    #[serde(default, deserialize_with = "lenient::any")]
    pub title: Option<String>,
    /// At most 512 characters (required by the handler).
    #[serde(default, deserialize_with = "lenient::any")]
    pub description: Option<String>,
    /// `info`, `warning` or `critical` (`null`: none).
    #[serde(default)]
    pub severity: Checked<PluginApprovalSeverity>,
    /// How long the approval stays open (default 120 000 ms, at most 600 000).
    #[serde(default)]
    pub timeout_ms: Checked<u64>,
    /// Answer `{status:"accepted", …}` at once, then the decision.
    #[serde(default, deserialize_with = "lenient::any")]
    pub two_phase: Option<bool>,
    /// The request's other fields (`pluginId`, `detail`, `toolName`, `allowedDecisions`,
    /// `scope`, `turnSource*`, …), stored and shown to operators as sent: an open object on
    /// purpose, since clawgate only keeps and shows them.
    #[serde(flatten)]
    pub rest: Map<String, Value>,
}

/// `plugin.approval.waitDecision {id, timeoutMs?}`.
#[derive(Debug, Clone, Default, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct PluginApprovalWaitDecisionParams {
    /// The approval (required by the handler).
    #[serde(default, deserialize_with = "lenient::any")]
    pub id: Option<String>,
    /// How long to wait (default and at most 600 000 ms).
    #[serde(default)]
    pub timeout_ms: Checked<u64>,
}

/// Who resolved an approval from a chat (schema `ApprovalChannelReviewer`).
#[derive(Debug, Clone, Default, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct ApprovalReviewer {
    /// The channel (`?` when missing).
    #[serde(default, deserialize_with = "lenient::any")]
    pub channel: Option<String>,
    /// The account (`?` when missing).
    #[serde(default, deserialize_with = "lenient::any")]
    pub account_id: Option<String>,
    /// The sender (`?` when missing).
    #[serde(default, deserialize_with = "lenient::any")]
    pub sender_id: Option<String>,
}

/// `plugin.approval.resolve {id, decision, reviewer?, reason?}` (schema
/// `PluginApprovalResolveParams`; `reason` is clawgate's addition).
#[derive(Debug, Clone, Default, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct PluginApprovalResolveParams {
    /// The approval (required by the handler).
    #[serde(default, deserialize_with = "lenient::any")]
    pub id: Option<String>,
    /// `allow-once` or `deny` (required by the handler).
    #[serde(default, deserialize_with = "lenient::any")]
    pub decision: Option<String>,
    /// Who decided, when not the caller (any value that is not an object names nobody: `?:?:?`).
    #[serde(default, deserialize_with = "reviewer")]
    pub reviewer: Option<ApprovalReviewer>,
    /// Why (kept with the decision).
    #[serde(default, deserialize_with = "lenient::any")]
    pub reason: Option<String>,
}

/// Present (even `null` or not an object) → `Some`, with the fields that decode.
fn reviewer<'de, D: Deserializer<'de>>(deserializer: D) -> Result<Option<ApprovalReviewer>, D::Error> {
    Ok(Some(serde_json::from_value(Value::deserialize(deserializer)?).unwrap_or_default()))
}

/// A decision in upstream's words.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum ApprovalDecision {
    /// Approved (for one job).
    AllowOnce,
    /// Rejected.
    Deny,
}

/// The request shown for a `/run` held for an admin (a `PluginApprovalRequestParams` of plugin
/// `comfy`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct HeldRunRequest {
    /// Always `comfy`.
    pub plugin_id: &'static str,
    /// `Run ComfyUI template <id>`.
    pub title: String,
    /// Who asked to run what.
    pub description: String,
    /// The stored payload, pretty-printed.
    pub detail: String,
    /// Always [`PluginApprovalSeverity::Warning`].
    pub severity: PluginApprovalSeverity,
    /// The approval kind (`comfy.run`).
    pub tool_name: String,
    /// `allow-once` and `deny`.
    pub allowed_decisions: [&'static str; 2],
    /// The channel it was asked from, if any.
    pub turn_source_channel: Option<String>,
    /// The chat it was asked from, if any.
    pub turn_source_to: Option<String>,
}

/// The request of an approval as operator clients see it.
#[derive(Debug, Clone, PartialEq, Serialize)]
#[serde(untagged)]
pub enum ApprovalRequestView {
    /// A `plugin.approval.request`'s params, as the requester sent them.
    Requested(Map<String, Value>),
    /// A held `/run`.
    HeldRun(HeldRunRequest),
}

/// An approval as operator clients see it (`plugin.approval.list` items and
/// `plugin.approval.requested`): upstream's record, then what clawgate's store knows.
#[derive(Debug, Clone, PartialEq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct PluginApprovalEntry {
    /// The approval.
    pub id: String,
    /// Always `plugin`.
    pub approval_kind: &'static str,
    /// What is asked.
    pub request: ApprovalRequestView,
    /// Created (ms since the epoch).
    pub created_at_ms: i64,
    /// Expires (ms since the epoch).
    pub expires_at_ms: i64,
    /// `pending`, `approved`, `rejected` or `expired`.
    pub status: String,
    /// The decision, `null` while pending or once expired.
    pub decision: Option<ApprovalDecision>,
    /// Why it was decided so.
    pub reason: Option<String>,
    /// Who decided.
    pub resolved_by: Option<String>,
    /// When it was decided.
    pub resolved_at_ms: Option<i64>,
    /// clawgate's approval kind (`comfy.run`, `plugin`).
    pub kind: String,
    /// The stored payload: open, its keys are the kind's (`{jobId, template, …}`, `{request}`).
    pub payload: Value,
}

/// `plugin.approval.list` → the approvals, newest first.
pub type PluginApprovalListResult = Vec<PluginApprovalEntry>;

/// `plugin.approval.resolved` `{id, approvalKind, decision, resolvedBy, ts, reason, status,
/// request}`.
#[derive(Debug, Clone, PartialEq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct PluginApprovalResolvedEvent {
    /// The approval.
    pub id: String,
    /// Always `plugin`.
    pub approval_kind: &'static str,
    /// The decision, `null` once expired.
    pub decision: Option<ApprovalDecision>,
    /// Who decided.
    pub resolved_by: Option<String>,
    /// When (ms since the epoch).
    pub ts: i64,
    /// Why.
    pub reason: Option<String>,
    /// Its status now.
    pub status: String,
    /// What was asked.
    pub request: ApprovalRequestView,
}

/// The first answer of a two-phase `plugin.approval.request`: `{status:"accepted", id,
/// createdAtMs, expiresAtMs}`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct PluginApprovalAccepted {
    /// Always `accepted`.
    pub status: &'static str,
    /// The approval.
    pub id: String,
    /// Created (ms since the epoch).
    pub created_at_ms: i64,
    /// Expires (ms since the epoch).
    pub expires_at_ms: i64,
}

/// `plugin.approval.request` and `plugin.approval.waitDecision` → where the approval stands
/// (`decision` `null` while pending or once expired).
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct PluginApprovalDecisionResult {
    /// The approval.
    pub id: String,
    /// The decision.
    pub decision: Option<ApprovalDecision>,
    /// Created (ms since the epoch).
    pub created_at_ms: i64,
    /// Expires (ms since the epoch).
    pub expires_at_ms: i64,
    /// Its status.
    pub status: String,
    /// Why it was decided so.
    pub reason: Option<String>,
    /// Who decided.
    pub resolved_by: Option<String>,
}

/// `plugin.approval.request` → the decision.
pub type PluginApprovalRequestResult = PluginApprovalDecisionResult;

/// `plugin.approval.waitDecision` → the decision.
pub type PluginApprovalWaitDecisionResult = PluginApprovalDecisionResult;

/// `plugin.approval.resolve` → `{ok, id, decision, status, reason}`, with the held job's
/// `jobId` and `jobStatus` (or `jobError`) for a held `/run`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct PluginApprovalResolveResult {
    /// Always `true`.
    pub ok: bool,
    /// The approval.
    pub id: String,
    /// The decision.
    pub decision: Option<ApprovalDecision>,
    /// Its status now.
    pub status: String,
    /// Why.
    pub reason: Option<String>,
    /// The held job, for a held `/run` (`null` if its payload names none).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub job_id: Option<Option<String>>,
    /// The released or cancelled job's status.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub job_status: Option<String>,
    /// Why the job could not be released or cancelled.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub job_error: Option<String>,
}
