//! `node.*`: node pairing, the node registry, invokes routed to a node and the node's own
//! pushes (schema `NodePair*Params`, `NodeListParams`, `NodeDescribeParams`, `NodeRenameParams`,
//! `NodeInvokeParams`, `NodeInvokeResultParams`, `NodeInvokeRequestEvent`, `NodeEventParams`,
//! `NodeEventResult`, `NodeSkillsUpdateParams`, `NodePluginToolsUpdateParams`).

use serde::{Deserialize, Serialize};
use serde_json::Value;

/// Params of a method that takes an empty object (`node.list`, `node.pair.list`).
#[derive(Debug, Clone, Default, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct NoParams {}

/// `node.pair.approve` / `node.pair.reject {requestId}`.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct NodePairRequestParams {
    /// The pending request.
    pub request_id: String,
}

/// `node.pair.remove {nodeId}` and `node.describe {nodeId}`.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct NodeIdParams {
    /// The node (its device id).
    pub node_id: String,
}

/// `node.rename {nodeId, displayName}`.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct NodeRenameParams {
    /// The node.
    pub node_id: String,
    /// Its new display name (trimmed, not empty).
    pub display_name: String,
}

/// `node.rename` → the name now in force.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct NodeRenameResult {
    /// The node.
    pub node_id: String,
    /// Its display name.
    pub display_name: String,
}

/// `node.invoke {nodeId, command, params?, timeoutMs?, idempotencyKey, …}`.
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct NodeInvokeParams {
    /// The node to run it on.
    pub node_id: String,
    /// One of the commands the node declared.
    pub command: String,
    /// The command's params (sent to the node as `paramsJSON`).
    #[serde(default)]
    pub params: Option<Value>,
    /// How long to wait for the node's answer (ms).
    #[serde(default)]
    pub timeout_ms: Option<u64>,
    /// The caller's key for this invoke (handed to the node).
    pub idempotency_key: String,
    /// The session the invoke is for (accepted; unused).
    #[serde(default)]
    pub session_key: Option<String>,
    /// Where the turn came from (accepted; unused).
    #[serde(default)]
    pub turn_source_channel: Option<String>,
    /// Accepted; unused.
    #[serde(default)]
    pub turn_source_to: Option<String>,
    /// Accepted; unused.
    #[serde(default)]
    pub turn_source_account_id: Option<String>,
    /// Accepted; unused.
    #[serde(default)]
    pub turn_source_thread_id: Option<Value>,
}

/// `node.invoke` → the node's answer.
#[derive(Debug, Clone, PartialEq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct NodeInvokeResult {
    /// Always true (a failure is an error response).
    pub ok: bool,
    /// The node.
    pub node_id: String,
    /// The command run.
    pub command: String,
    /// The node's payload (parsed from `payloadJSON` when it sent one).
    pub payload: Value,
    /// The node's payload as it sent it, or `null`.
    #[serde(rename = "payloadJSON")]
    pub payload_json: Option<String>,
}

/// The error a node reports for an invoke.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct NodeError {
    /// Machine code (e.g. `TIMEOUT`, `DISCONNECTED`).
    #[serde(default)]
    pub code: Option<String>,
    /// What went wrong.
    #[serde(default)]
    pub message: Option<String>,
}

/// `node.invoke.result {id, nodeId, ok, payload?, payloadJSON?, error?}` (from the node).
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct NodeInvokeResultParams {
    /// The invoke's id from `node.invoke.request`.
    pub id: String,
    /// The node answering.
    pub node_id: String,
    /// Whether the command succeeded.
    pub ok: bool,
    /// The result as JSON.
    #[serde(default)]
    pub payload: Option<Value>,
    /// The result as a JSON string.
    #[serde(default, rename = "payloadJSON")]
    pub payload_json: Option<Value>,
    /// Why it failed.
    #[serde(default)]
    pub error: Option<NodeError>,
}

/// `node.invoke.result` → `{ok: true, ignored?}` (ignored: no invoke was waiting for it).
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct NodeInvokeResultAck {
    /// Always true.
    pub ok: bool,
    /// Late or unknown result, dropped.
    #[serde(skip_serializing_if = "std::ops::Not::not")]
    pub ignored: bool,
}

/// The `node.invoke.request` event sent to the node.
#[derive(Debug, Clone, PartialEq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct NodeInvokeRequestEvent {
    /// The invoke's id; the node answers with it.
    pub id: String,
    /// The node.
    pub node_id: String,
    /// The command.
    pub command: String,
    /// The params as a JSON string.
    #[serde(rename = "paramsJSON", skip_serializing_if = "Option::is_none")]
    pub params_json: Option<String>,
    /// How long the gateway waits.
    pub timeout_ms: u64,
    /// The caller's key.
    pub idempotency_key: String,
}

/// `node.event {event, payload?, payloadJSON?}` (from the node).
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct NodeEventParams {
    /// Event name (e.g. `node.host.stats`).
    pub event: String,
    /// Its payload.
    #[serde(default)]
    pub payload: Option<Value>,
    /// Its payload as a JSON string.
    #[serde(default, rename = "payloadJSON")]
    pub payload_json: Option<String>,
}

/// `node.event` → `{ok, event, handled, reason?}`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct NodeEventResult {
    /// Always true.
    pub ok: bool,
    /// The event's name.
    pub event: String,
    /// Whether the gateway did something with it.
    pub handled: bool,
    /// Why not, when not handled.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub reason: Option<String>,
}

/// `node.skills.update {skills}` (from the node).
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct NodeSkillsUpdateParams {
    /// The skills the node offers (at most 64).
    pub skills: Vec<Value>,
}

/// `node.skills.update` → `{nodeId, skills}`.
#[derive(Debug, Clone, PartialEq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct NodeSkillsUpdateResult {
    /// The node.
    pub node_id: String,
    /// The skills stored.
    pub skills: Vec<Value>,
}

/// `node.pluginTools.update {tools}` (from the node).
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct NodePluginToolsUpdateParams {
    /// The plugin tools the node offers.
    pub tools: Vec<Value>,
}

/// `node.pluginTools.update` → `{nodeId, tools}`.
#[derive(Debug, Clone, PartialEq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct NodePluginToolsUpdateResult {
    /// The node.
    pub node_id: String,
    /// The tools stored.
    pub tools: Vec<Value>,
}

/// `node.runnerInventory.update` → `{nodeId, ok}` once the node is approved.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct NodeRunnerInventoryResult {
    /// Always true.
    pub ok: bool,
    /// The node.
    pub node_id: String,
}

/// A node as `node.list` / `node.describe` show it (upstream's known-node entry: what the
/// live connection announced, merged with its approval).
#[derive(Debug, Clone, PartialEq, Serialize, Default)]
#[serde(rename_all = "camelCase")]
pub struct NodeEntry {
    /// The node's id (its device id).
    pub node_id: String,
    /// Display name (a rename wins over what the node announced).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub display_name: Option<String>,
    /// `client.platform`.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub platform: Option<String>,
    /// `client.version`.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub version: Option<String>,
    /// `client.id`.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub client_id: Option<String>,
    /// `client.mode`.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub client_mode: Option<String>,
    /// `client.deviceFamily`.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub device_family: Option<String>,
    /// Where it connected from.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub remote_ip: Option<String>,
    /// Declared capabilities, sorted.
    pub caps: Vec<String>,
    /// Declared commands, sorted.
    pub commands: Vec<String>,
    /// The node's PATH.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub path_env: Option<String>,
    /// Declared permissions.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub permissions: Option<Value>,
    /// The last `node.host.stats` event (with `updatedAtMs`).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub host_stats: Option<Value>,
    /// Skills it pushed.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub node_skills: Option<Vec<Value>>,
    /// Plugin tools it pushed.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub node_plugin_tools: Option<Vec<Value>>,
    /// Its runner inventory declaration.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub runner_inventory: Option<Value>,
    /// `approved`, `pending-approval`, `pending-reapproval` or `unapproved`.
    pub approval_state: &'static str,
    /// The pending request, when one waits.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub pending_request_id: Option<String>,
    /// When the current connection was made.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub connected_at_ms: Option<i64>,
    /// Last time it connected.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub last_connected_at_ms: Option<i64>,
    /// Last time it went away.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub last_disconnected_at_ms: Option<i64>,
    /// Last request or event from it.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub last_active_at_ms: Option<i64>,
    /// When its last `node.presence.activity` report came.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub presence_updated_at_ms: Option<i64>,
    /// When it was approved.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub approved_at_ms: Option<i64>,
    /// Invokes sent to it and not answered yet (clawgate's own field).
    pub pending_invokes: usize,
    /// Approved as a node.
    pub paired: bool,
    /// Connected now.
    pub connected: bool,
}

/// `node.list` → `{ts, nodes}` (connected first, then by name).
#[derive(Debug, Clone, PartialEq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct NodeListResult {
    /// When the list was taken.
    pub ts: i64,
    /// The known nodes.
    pub nodes: Vec<NodeEntry>,
}

/// `node.describe` → `{ts, …node}`.
#[derive(Debug, Clone, PartialEq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct NodeDescribeResult {
    /// When it was taken.
    pub ts: i64,
    /// The node.
    #[serde(flatten)]
    pub node: NodeEntry,
}

/// A pending node pairing request (`node.pair.list`, `node.pair.requested`); also how the
/// gateway keeps it across restarts.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct NodePairPending {
    /// The request's id (what `openclaw nodes approve` takes).
    pub request_id: String,
    /// The node.
    pub node_id: String,
    /// Its display name.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub display_name: Option<String>,
    /// `client.platform`.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub platform: Option<String>,
    /// `client.version`.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub version: Option<String>,
    /// `client.id`.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub client_id: Option<String>,
    /// `client.mode`.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub client_mode: Option<String>,
    /// `client.deviceFamily`.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub device_family: Option<String>,
    /// Where it connected from.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub remote_ip: Option<String>,
    /// Declared capabilities.
    pub caps: Vec<String>,
    /// Declared commands.
    pub commands: Vec<String>,
    /// When the request was made.
    pub ts: i64,
}

/// An approved node (`node.pair.list`, `node.pair.approve`); also how the gateway keeps it
/// across restarts.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct NodePaired {
    /// The node.
    pub node_id: String,
    /// Its display name.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub display_name: Option<String>,
    /// `client.platform`.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub platform: Option<String>,
    /// `client.version`.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub version: Option<String>,
    /// Approved capabilities.
    pub caps: Vec<String>,
    /// Approved commands.
    pub commands: Vec<String>,
    /// When it was approved.
    pub approved_at_ms: i64,
}

/// `node.pair.list` → `{pending, paired}`.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct NodePairListResult {
    /// Requests waiting for an operator.
    pub pending: Vec<NodePairPending>,
    /// Approved nodes.
    pub paired: Vec<NodePaired>,
}

/// `node.pair.approve` → `{requestId, node}`.
#[derive(Debug, Clone, PartialEq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct NodePairApproveResult {
    /// The request approved.
    pub request_id: String,
    /// The node now approved.
    pub node: NodePaired,
}

/// `node.pair.reject` → `{requestId, nodeId}`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct NodePairRejectResult {
    /// The request rejected.
    pub request_id: String,
    /// Its node.
    pub node_id: String,
}

/// `node.pair.remove` → `{nodeId}`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct NodePairRemoveResult {
    /// The node removed.
    pub node_id: String,
}

/// The `node.pair.resolved` event (to pairing operators and the node).
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct NodePairResolved {
    /// The request.
    pub request_id: String,
    /// Its node.
    pub node_id: String,
    /// `approved` or `rejected`.
    pub decision: &'static str,
    /// When.
    pub ts: i64,
}
