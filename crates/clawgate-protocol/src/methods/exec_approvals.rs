//! `exec.approval.request|waitDecision|resolve|list|get`, `exec.approvals.get|set` and the
//! kind-agnostic `approval.get|resolve` (what `openclaw approvals resolve` calls): params and
//! results (schema `ExecApprovalRequestParams`, `ExecApprovalResolveParams`,
//! `ExecApprovalGetParams`, `ExecApprovalsSetParams`, `ExecApprovalsSnapshot`,
//! `ApprovalGetParams`, `ApprovalResolveParams`, `ApprovalSnapshot`).
//!
//! The params are closed as upstream's schema is (an unknown field is `INVALID_REQUEST "invalid
//! <method> params: …"`); fields clawgate only keeps and shows stay JSON values.

use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};

/// `exec.approval.request` (schema `ExecApprovalRequestParams`).
#[derive(Debug, Clone, Default, PartialEq, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct ExecApprovalRequestParams {
    /// The caller's id for the approval (one is made up when absent).
    #[serde(default)]
    pub id: Option<String>,
    /// The command text shown to the reviewer.
    #[serde(default)]
    pub command: Option<String>,
    /// The command as argv.
    #[serde(default)]
    pub command_argv: Option<Vec<String>>,
    /// Upstream's system-run plan (`{argv, cwd, commandText, agentId, sessionKey, …}`).
    #[serde(default)]
    pub system_run_plan: Option<Value>,
    /// Environment the command would get (only its keys are kept).
    #[serde(default)]
    pub env: Option<Map<String, Value>>,
    /// Working directory.
    #[serde(default)]
    pub cwd: Option<String>,
    /// The node that would run it (`host: "node"`).
    #[serde(default)]
    pub node_id: Option<String>,
    /// `gateway`, `node`, `sandbox`.
    #[serde(default)]
    pub host: Option<String>,
    /// The security mode in force.
    #[serde(default)]
    pub security: Option<String>,
    /// The ask mode in force.
    #[serde(default)]
    pub ask: Option<String>,
    /// A warning for the reviewer.
    #[serde(default)]
    pub warning_text: Option<String>,
    /// What the command reaches (message send, payment, …).
    #[serde(default)]
    pub scope: Option<Value>,
    /// `["allow-always"]` when that decision is not offered.
    #[serde(default)]
    pub unavailable_decisions: Option<Vec<String>>,
    /// Highlighted spans of the command.
    #[serde(default)]
    pub command_spans: Option<Value>,
    /// The agent asking.
    #[serde(default)]
    pub agent_id: Option<String>,
    /// The executable's resolved path.
    #[serde(default)]
    pub resolved_path: Option<String>,
    /// The session asking.
    #[serde(default)]
    pub session_key: Option<String>,
    /// The session id.
    #[serde(default)]
    pub session_id: Option<String>,
    /// The run asking.
    #[serde(default)]
    pub run_id: Option<String>,
    /// The tool call asking.
    #[serde(default)]
    pub tool_call_id: Option<String>,
    /// Where the turn came from.
    #[serde(default)]
    pub turn_source_channel: Option<String>,
    /// See `turn_source_channel`.
    #[serde(default)]
    pub turn_source_to: Option<String>,
    /// See `turn_source_channel`.
    #[serde(default)]
    pub turn_source_account_id: Option<String>,
    /// See `turn_source_channel` (string or number).
    #[serde(default)]
    pub turn_source_thread_id: Option<Value>,
    /// Reviewer devices (bound only for upstream's internal approval runtime; kept as sent).
    #[serde(default)]
    pub approval_reviewer_device_ids: Option<Vec<String>>,
    /// Upstream delivery knobs, accepted and not used (clawgate delivers to approval clients).
    #[serde(default)]
    pub require_delivery_route: Option<bool>,
    /// See `require_delivery_route`.
    #[serde(default)]
    pub suppress_delivery: Option<bool>,
    /// See `require_delivery_route`.
    #[serde(default)]
    pub deliver_to_approval_clients_only: Option<bool>,
    /// How long the approval stays open (default 1 800 000 ms).
    #[serde(default)]
    pub timeout_ms: Option<u64>,
    /// Answer `{status:"accepted", …}` at once, then the decision.
    #[serde(default)]
    pub two_phase: Option<bool>,
}

/// The first of the two `res` frames of a two-phase `exec.approval.request`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct ExecApprovalAccepted {
    /// Always `accepted`.
    pub status: &'static str,
    /// The approval.
    pub id: String,
    /// `approval-client` (operators connected with `operator.approvals`) or `none`.
    pub delivery_route: &'static str,
    /// When it was created.
    pub created_at_ms: i64,
    /// When it expires.
    pub expires_at_ms: i64,
}

/// `exec.approval.request`'s final answer and `exec.approval.waitDecision`'s:
/// `{id, decision, createdAtMs, expiresAtMs}` with `decision` `null` when it expired.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct ExecApprovalDecisionResult {
    /// The approval.
    pub id: String,
    /// `allow-once`, `allow-always`, `deny`, or `null` (expired or still pending).
    pub decision: Option<String>,
    /// When it was created.
    pub created_at_ms: i64,
    /// When it expires.
    pub expires_at_ms: i64,
    /// `timeout` when it expired undecided (waitDecision only).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub terminal_reason: Option<&'static str>,
}

/// `exec.approval.waitDecision {id}` and `exec.approval.get {id}` (schema
/// `ExecApprovalGetParams`).
#[derive(Debug, Clone, Default, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ExecApprovalIdParams {
    /// The approval.
    #[serde(default)]
    pub id: Option<String>,
}

/// `exec.approval.get` → the pending approval as a reviewer sees it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct ExecApprovalGetResult {
    /// The approval.
    pub id: String,
    /// The command text.
    pub command_text: String,
    /// A shorter preview, if any.
    pub command_preview: Option<String>,
    /// What the reviewer may answer.
    pub allowed_decisions: Vec<String>,
    /// Where it would run.
    pub host: Option<String>,
    /// The node, for `host: "node"`.
    pub node_id: Option<String>,
    /// The agent asking.
    pub agent_id: Option<String>,
    /// When it expires.
    pub expires_at_ms: i64,
}

/// A pending approval as `exec.approval.list` lists it and `exec.approval.requested` carries it.
#[derive(Debug, Clone, PartialEq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct ExecApprovalEntry {
    /// The approval.
    pub id: String,
    /// The stored request (`command`, `agentId`, `sessionKey`, `nodeId`, `allowedDecisions`, …).
    pub request: Value,
    /// When it was created.
    pub created_at_ms: i64,
    /// When it expires.
    pub expires_at_ms: i64,
    /// Always `exec`.
    pub approval_kind: &'static str,
}

/// `exec.approval.resolve` (schema `ExecApprovalResolveParams`).
#[derive(Debug, Clone, Default, PartialEq, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct ExecApprovalResolveParams {
    /// The approval.
    #[serde(default)]
    pub id: Option<String>,
    /// `allow-once`, `allow-always` or `deny`.
    #[serde(default)]
    pub decision: Option<String>,
    /// Who resolved it from a chat.
    #[serde(default)]
    pub reviewer: Option<Value>,
    /// Lifetime of a standing grant (accepted; clawgate's allow-always entries last until removed).
    #[serde(default)]
    pub grant_expires_in_days: Option<u32>,
}

/// `exec.approval.resolve` → `{ok: true}`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
pub struct ExecApprovalResolveResult {
    /// Always true.
    pub ok: bool,
}

/// `exec.approval.resolved` event.
#[derive(Debug, Clone, PartialEq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct ExecApprovalResolvedEvent {
    /// The approval.
    pub id: String,
    /// `allow-once`, `allow-always`, `deny`, or `null` (expired).
    pub decision: Option<String>,
    /// Who resolved it.
    pub resolved_by: Option<String>,
    /// When.
    pub ts: i64,
    /// The stored request.
    pub request: Value,
}

/// `approval.get {id}` (schema `ApprovalGetParams`).
#[derive(Debug, Clone, Default, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ApprovalGetParams {
    /// The approval's full id.
    #[serde(default)]
    pub id: Option<String>,
}

/// `approval.resolve {id, kind, decision, reviewer?, grantExpiresInDays?}` (schema
/// `ApprovalResolveParams`).
#[derive(Debug, Clone, Default, PartialEq, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct ApprovalResolveParams {
    /// The approval's full id.
    #[serde(default)]
    pub id: Option<String>,
    /// `exec`, `plugin` or `system-agent`.
    #[serde(default)]
    pub kind: Option<String>,
    /// `allow-once`, `allow-always` or `deny`.
    #[serde(default)]
    pub decision: Option<String>,
    /// Who resolved it from a chat.
    #[serde(default)]
    pub reviewer: Option<Value>,
    /// Lifetime of a standing grant.
    #[serde(default)]
    pub grant_expires_in_days: Option<u32>,
}

/// Who resolved an approval (schema `ApprovalSnapshot.resolver`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct ApprovalResolver {
    /// `device` or `runtime`.
    pub kind: String,
    /// The device id, or the client id.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub id: Option<String>,
}

/// An approval as the kind-agnostic methods show it (schema `ApprovalSnapshot`).
#[derive(Debug, Clone, PartialEq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct ApprovalSnapshot {
    /// The approval.
    pub id: String,
    /// Its deep link in the Control UI (`/approve/<id>`).
    pub url_path: String,
    /// When it was created.
    pub created_at_ms: i64,
    /// When it expires.
    pub expires_at_ms: i64,
    /// `{kind: "exec", commandText, allowedDecisions, …}` or the plugin form.
    pub presentation: Value,
    /// `pending`, `allowed`, `denied` or `expired`.
    pub status: &'static str,
    /// When it was decided or expired (absent while pending).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub resolved_at_ms: Option<i64>,
    /// The decision (allowed and denied only).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub decision: Option<String>,
    /// `user` or `timeout` (absent while pending).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub reason: Option<&'static str>,
    /// Who decided (decided ones only).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub resolver: Option<ApprovalResolver>,
}

/// `approval.get` → `{approval}`.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct ApprovalGetResult {
    /// The approval.
    pub approval: ApprovalSnapshot,
}

/// `approval.resolve` → `{applied, approval}`; `applied: false` when it was already decided.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct ApprovalResolveResult {
    /// Whether this call decided it.
    pub applied: bool,
    /// The approval as it now stands.
    pub approval: ApprovalSnapshot,
}

/// `exec.approvals.get {}` (schema `ExecApprovalsGetParams`).
#[derive(Debug, Clone, Default, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ExecApprovalsGetParams {}

/// `exec.approvals.set {file, baseHash?}` (schema `ExecApprovalsSetParams`).
#[derive(Debug, Clone, Default, PartialEq, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct ExecApprovalsSetParams {
    /// The whole policy document (`{version: 1, defaults?, agents?}`).
    #[serde(default)]
    pub file: Option<Value>,
    /// The hash `exec.approvals.get` returned (required once a policy exists).
    #[serde(default)]
    pub base_hash: Option<String>,
}

/// The effective defaults (schema `ExecApprovalsSnapshot.resolvedDefaults`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct ExecResolvedDefaults {
    /// `deny`, `allowlist` or `full`.
    pub security: String,
    /// `off`, `on-miss` or `always`.
    pub ask: String,
    /// What an unanswered ask falls back to.
    pub ask_fallback: String,
    /// Upstream's skill auto-allow (kept, not used).
    pub auto_allow_skills: bool,
}

/// `exec.approvals.get|set` → the policy (schema `ExecApprovalsSnapshot`).
#[derive(Debug, Clone, PartialEq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct ExecApprovalsSnapshot {
    /// Where it lives (clawgate keeps it in its store, not a file).
    pub path: String,
    /// Whether one was ever set.
    pub exists: bool,
    /// Its hash: the `baseHash` of the next `exec.approvals.set`.
    pub hash: String,
    /// The document.
    pub file: Value,
    /// The defaults in force.
    pub resolved_defaults: ExecResolvedDefaults,
}

/// `exec.approvals.node.get {nodeId}` (schema `ExecApprovalsNodeGetParams`).
#[derive(Debug, Clone, Default, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct ExecApprovalsNodeGetParams {
    /// The node whose policy is read.
    #[serde(default)]
    pub node_id: Option<String>,
}

/// `exec.approvals.node.set {nodeId, file, baseHash?}` (schema `ExecApprovalsNodeSetParams`).
/// The result is an [`ExecApprovalsSnapshot`] (the file-policy form of upstream's
/// `ExecApprovalsNodeSnapshot`).
#[derive(Debug, Clone, Default, PartialEq, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct ExecApprovalsNodeSetParams {
    /// The node whose policy is written.
    #[serde(default)]
    pub node_id: Option<String>,
    /// The whole policy document, as for `exec.approvals.set`.
    #[serde(default)]
    pub file: Option<Value>,
    /// A host-native policy (`{defaultAction?, rules}`), which only a macOS app node keeps.
    #[serde(default)]
    pub native: Option<Value>,
    /// The hash `exec.approvals.node.get` returned (required once the node has a policy).
    #[serde(default)]
    pub base_hash: Option<String>,
}

/// `exec.approval.grants.list {limit?}` (schema `ExecApprovalGrantsListParams`).
#[derive(Debug, Clone, Default, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct ExecApprovalGrantsListParams {
    /// At most this many (1..=500).
    #[serde(default)]
    pub limit: Option<i64>,
}

/// A standing grant: what allow-always on an automation (cron job) approval mints upstream
/// (schema `ExecApprovalStandingGrant`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct ExecApprovalStandingGrant {
    /// Its id (what `exec.approval.grants.revoke` takes).
    pub grant_id: String,
    /// The approval whose allow-always minted it.
    pub minted_by_approval_id: String,
    /// The agent it is for.
    pub agent_id: String,
    /// The cron job it is for.
    pub cron_job_id: String,
    /// That job's name.
    pub cron_job_name: Option<String>,
    /// The command it allows.
    pub command: String,
    /// The directory it allows it in.
    pub cwd: Option<String>,
    /// When it was minted.
    pub created_at_ms: i64,
    /// When it lapses (`null`: until revoked).
    pub expires_at_ms: Option<i64>,
    /// When it was revoked.
    pub revoked_at_ms: Option<i64>,
    /// Who revoked it.
    pub revoked_by: Option<String>,
    /// When it last let a command run.
    pub last_used_at_ms: Option<i64>,
    /// How often it did.
    pub use_count: i64,
}

/// `exec.approval.grants.list` → `{grants}`, newest first.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct ExecApprovalGrantsListResult {
    /// The grants.
    pub grants: Vec<ExecApprovalStandingGrant>,
}

/// `exec.approval.grants.revoke {grantId}` (schema `ExecApprovalGrantsRevokeParams`).
#[derive(Debug, Clone, Default, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct ExecApprovalGrantsRevokeParams {
    /// The grant to revoke.
    #[serde(default)]
    pub grant_id: Option<String>,
}

/// `exec.approval.grants.revoke` → `{outcome: "revoked"|"already-revoked"|"not-found"}`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
pub struct ExecApprovalGrantsRevokeResult {
    /// What happened.
    pub outcome: &'static str,
}
