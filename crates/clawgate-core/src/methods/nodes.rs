//! `node.*`: node pairing (`node.pair.*`), the registry (`node.list`, `node.describe`,
//! `node.rename`), `node.invoke` and what a node sends (`node.invoke.result`, `node.event`,
//! `node.skills.update`, `node.pluginTools.update`, `node.runnerInventory.update`).

use serde_json::Value;

use clawgate_protocol::methods::nodes::{
    NoParams, NodeDescribeResult, NodeEventParams, NodeEventResult, NodeIdParams, NodeInvokeParams, NodeInvokeResult,
    NodeInvokeResultAck, NodeInvokeResultParams, NodeListResult, NodePairApproveResult, NodePairListResult,
    NodePairRejectResult, NodePairRemoveResult, NodePairRequestParams, NodePluginToolsUpdateParams,
    NodePluginToolsUpdateResult, NodeRenameParams, NodeRenameResult, NodeRunnerInventoryResult, NodeSkillsUpdateParams,
    NodeSkillsUpdateResult,
};

use crate::dispatch::CallContext;
use crate::error::CoreError;
use crate::nodes::NodeService;
use crate::time::now_ms;

/// `node.pair.list` → `{pending, paired}`.
pub async fn node_pair_list(nodes: &NodeService, _p: NoParams) -> Result<NodePairListResult, CoreError> {
    Ok(nodes.pair_list())
}

/// `node.pair.approve {requestId}` → `{requestId, node}`.
pub async fn node_pair_approve(
    nodes: &NodeService,
    p: NodePairRequestParams,
) -> Result<NodePairApproveResult, CoreError> {
    let node = nodes.approve(&p.request_id).await?;
    Ok(NodePairApproveResult { request_id: p.request_id, node })
}

/// `node.pair.reject {requestId}` → `{requestId, nodeId}`.
pub async fn node_pair_reject(
    nodes: &NodeService,
    p: NodePairRequestParams,
) -> Result<NodePairRejectResult, CoreError> {
    let node_id = nodes.reject(&p.request_id).await?;
    Ok(NodePairRejectResult { request_id: p.request_id, node_id })
}

/// `node.pair.remove {nodeId}` → `{nodeId}`.
pub async fn node_pair_remove(nodes: &NodeService, p: NodeIdParams) -> Result<NodePairRemoveResult, CoreError> {
    nodes.remove(&p.node_id).await?;
    Ok(NodePairRemoveResult { node_id: p.node_id })
}

/// `node.rename {nodeId, displayName}` → `{nodeId, displayName}`.
pub async fn node_rename(nodes: &NodeService, p: NodeRenameParams) -> Result<NodeRenameResult, CoreError> {
    let display_name = nodes.rename(&p.node_id, &p.display_name).await?;
    Ok(NodeRenameResult { node_id: p.node_id, display_name })
}

/// `node.list` → `{ts, nodes}`.
pub async fn node_list(nodes: &NodeService, _p: NoParams) -> Result<NodeListResult, CoreError> {
    Ok(NodeListResult { ts: now_ms(), nodes: nodes.list() })
}

/// `node.describe {nodeId}` → `{ts, …node}`.
pub async fn node_describe(nodes: &NodeService, p: NodeIdParams) -> Result<NodeDescribeResult, CoreError> {
    let id = p.node_id.trim();
    if id.is_empty() {
        return Err(CoreError::invalid("nodeId required"));
    }
    Ok(NodeDescribeResult { ts: now_ms(), node: nodes.describe(id)? })
}

/// `node.invoke {nodeId, command, params?, timeoutMs?, idempotencyKey}` → the node's answer.
pub async fn node_invoke(nodes: &NodeService, p: NodeInvokeParams) -> Result<NodeInvokeResult, CoreError> {
    let node_id = p.node_id.trim();
    let command = p.command.trim();
    if node_id.is_empty() || command.is_empty() {
        return Err(CoreError::invalid("nodeId and command required"));
    }
    nodes.invoke(node_id, command, p.params.as_ref(), p.timeout_ms, &p.idempotency_key).await
}

/// `node.invoke.result` (from the node) → `{ok, ignored?}`.
pub async fn node_invoke_result(
    nodes: &NodeService,
    ctx: &CallContext,
    p: NodeInvokeResultParams,
) -> Result<NodeInvokeResultAck, CoreError> {
    let delivered = nodes.result(&ctx.client, p)?;
    Ok(NodeInvokeResultAck { ok: true, ignored: !delivered })
}

/// `node.event` (from the node) → `{ok, event, handled, reason?}`.
pub async fn node_event(
    nodes: &NodeService,
    ctx: &CallContext,
    p: NodeEventParams,
) -> Result<NodeEventResult, CoreError> {
    nodes.event(&ctx.client, p)
}

/// `node.skills.update {skills}` (from the node) → `{nodeId, skills}`.
pub async fn node_skills_update(
    nodes: &NodeService,
    ctx: &CallContext,
    p: NodeSkillsUpdateParams,
) -> Result<NodeSkillsUpdateResult, CoreError> {
    if p.skills.len() > 64 {
        return Err(CoreError::invalid("invalid node.skills.update params: at most 64 skills"));
    }
    let skills = p.skills.clone();
    let node_id = nodes.update(&ctx.client, |e| e.node_skills = Some(p.skills))?;
    Ok(NodeSkillsUpdateResult { node_id, skills })
}

/// `node.pluginTools.update {tools}` (from the node) → `{nodeId, tools}`.
pub async fn node_plugin_tools_update(
    nodes: &NodeService,
    ctx: &CallContext,
    p: NodePluginToolsUpdateParams,
) -> Result<NodePluginToolsUpdateResult, CoreError> {
    let tools = p.tools.clone();
    let node_id = nodes.update(&ctx.client, |e| e.node_plugin_tools = Some(p.tools))?;
    Ok(NodePluginToolsUpdateResult { node_id, tools })
}

/// `node.runnerInventory.update {protocolFeatures, workerHost, …}` (from the node): refused
/// `UNAVAILABLE … openclaw nodes approve <id>` until an operator approved the node (it retries
/// by itself), then stored.
pub async fn node_runner_inventory_update(
    nodes: &NodeService,
    ctx: &CallContext,
    p: Value,
) -> Result<NodeRunnerInventoryResult, CoreError> {
    if !p.is_object() {
        return Err(CoreError::invalid("invalid node runner inventory"));
    }
    let node_id = crate::nodes::node_id_of(&ctx.client);
    if let Some(message) = nodes.awaiting_approval(&node_id) {
        return Err(CoreError::Unavailable(message));
    }
    let node_id = nodes.update(&ctx.client, |e| e.runner_inventory = Some(p))?;
    Ok(NodeRunnerInventoryResult { ok: true, node_id })
}
