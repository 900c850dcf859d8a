//! `exec.approval.request|waitDecision|resolve|list|get`, `exec.approvals.get|set`, and the
//! kind-agnostic `approval.get|resolve` that `openclaw approvals resolve` calls — upstream's
//! shapes and errors (`exec-approval.ts`, `approval.ts`, `exec-approvals.ts` in 2026.9.6) over
//! [`ExecApprovals`], the one approvals engine's exec side.
//!
//! Errors follow upstream: an unknown, decided-elsewhere or expired id is `INVALID_REQUEST
//! "unknown or expired approval id"` with `details.reason: "APPROVAL_NOT_FOUND"` (the kind-
//! agnostic methods say `"approval not found"`); a second resolve with the same decision is ok,
//! with another `"approval already resolved"`.
//!
//! Who sees what ([`crate::exec_approvals::visible_to`], upstream's
//! `isApprovalRecordVisibleToClient`): an approval a caller may not see is, for
//! `exec.approval.list|get|resolve|waitDecision`, as if it did not exist — the same not-found
//! error, so ids cannot be probed.

use serde_json::{Map, Value, json};

use clawgate_protocol::frames::ResponseFrame;
use clawgate_protocol::methods::AnyParams;
use clawgate_protocol::methods::exec_approvals::{
    ApprovalGetParams, ApprovalGetResult, ApprovalResolveParams, ApprovalResolveResult, ApprovalResolver,
    ApprovalSnapshot, ExecApprovalAccepted, ExecApprovalDecisionResult, ExecApprovalEntry, ExecApprovalGetResult,
    ExecApprovalGrantsListParams, ExecApprovalGrantsListResult, ExecApprovalGrantsRevokeParams,
    ExecApprovalGrantsRevokeResult, ExecApprovalIdParams, ExecApprovalRequestParams, ExecApprovalResolveParams,
    ExecApprovalResolveResult, ExecApprovalsGetParams, ExecApprovalsNodeGetParams, ExecApprovalsNodeSetParams,
    ExecApprovalsSetParams, ExecApprovalsSnapshot,
};
use clawgate_store::{ApprovalRecord, ApprovalStatus};

use crate::dispatch::CallContext;
use crate::error::CoreError;
use crate::exec_approvals::{
    DECISIONS, DEFAULT_TIMEOUT_MS, ExecApprovals, Grant, NewExecApproval, PolicyOf, Resolved, allowed_decisions,
    decision_of, request_of,
};
use crate::nodes::NodeService;

/// The longest command text a reviewer is shown (upstream refuses longer ones).
const MAX_COMMAND_CHARS: usize = 8_192;

fn not_found() -> CoreError {
    CoreError::InvalidRequest {
        message: "unknown or expired approval id".into(),
        details: Some(json!({"reason": "APPROVAL_NOT_FOUND",
            "remediation": "Re-request the action; pending approvals are cleared after expiry or restart."})),
    }
}

fn generic_not_found() -> CoreError {
    CoreError::InvalidRequest {
        message: "approval not found".into(),
        details: Some(json!({"reason": "APPROVAL_NOT_FOUND"})),
    }
}

fn already_resolved() -> CoreError {
    CoreError::InvalidRequest {
        message: "approval already resolved".into(),
        details: Some(json!({"reason": "APPROVAL_ALREADY_RESOLVED"})),
    }
}

/// Who is resolving, as stored in `decided_by`: `device:<id>` or `client:<client id>`.
fn resolver_of(ctx: &CallContext) -> String {
    match &ctx.client.device_id {
        Some(device) => format!("device:{device}"),
        None => format!("client:{}", ctx.client.client.0),
    }
}

/// Whether the caller may see (and so resolve or wait for) this exec approval.
fn visible_to(a: &ApprovalRecord, ctx: &CallContext) -> bool {
    crate::exec_approvals::visible_to(a, &ctx.client)
}

fn non_empty(v: &Option<String>) -> Option<&str> {
    v.as_deref().map(str::trim).filter(|s| !s.is_empty())
}

/// `exec.approval.request ExecApprovalRequestParams` → `{id, decision, createdAtMs,
/// expiresAtMs}` once decided, or with `decision: null` when it expires. With `twoPhase` a first
/// `res` `{status:"accepted", id, deliveryRoute, createdAtMs, expiresAtMs}` answers at once.
pub async fn exec_approval_request(
    exec: &ExecApprovals,
    ctx: &CallContext,
    p: ExecApprovalRequestParams,
) -> Result<ExecApprovalDecisionResult, CoreError> {
    let host = non_empty(&p.host).unwrap_or_default().to_owned();
    let plan = p.system_run_plan.clone().filter(Value::is_object);
    let plan_str = |k: &str| plan.as_ref().and_then(|pl| pl.get(k)).and_then(Value::as_str).map(str::to_owned);
    let plan_argv: Option<Vec<String>> = plan
        .as_ref()
        .and_then(|pl| pl.get("argv"))
        .and_then(Value::as_array)
        .map(|a| a.iter().filter_map(Value::as_str).map(str::to_owned).collect());
    let argv = plan_argv.or_else(|| p.command_argv.clone()).unwrap_or_default();
    let command = plan_str("commandText")
        .filter(|s| !s.trim().is_empty())
        .or_else(|| non_empty(&p.command).map(str::to_owned))
        .unwrap_or_else(|| argv.join(" "));
    if host == "node" && non_empty(&p.node_id).is_none() {
        return Err(CoreError::invalid("nodeId is required for host=node"));
    }
    if host == "node" && plan.is_none() {
        return Err(CoreError::invalid("systemRunPlan is required for host=node"));
    }
    if command.trim().is_empty() {
        return Err(CoreError::invalid("command is required"));
    }
    if p.id.as_deref().is_some_and(|id| id.starts_with("plugin:")) {
        return Err(CoreError::invalid("approval ids starting with plugin: are reserved"));
    }
    if p.id.as_deref().is_some_and(|id| id.trim().is_empty()) {
        return Err(CoreError::invalid("invalid exec.approval.request params: id must not be empty"));
    }
    if host == "node" && argv.is_empty() {
        return Err(CoreError::invalid("commandArgv is required for host=node"));
    }
    if command.chars().count() > MAX_COMMAND_CHARS {
        return Err(CoreError::InvalidRequest {
            message: "command exceeds exec approval display limit".into(),
            details: Some(json!({"reason": "EXEC_APPROVAL_COMMAND_DISPLAY_LIMIT"})),
        });
    }
    if p.timeout_ms == Some(0) {
        return Err(CoreError::invalid("invalid exec.approval.request params: timeoutMs must be >= 1"));
    }
    let no_always = p.unavailable_decisions.as_ref().is_some_and(|u| u.iter().any(|d| d == "allow-always"));
    let decisions: Vec<&str> = DECISIONS.iter().copied().filter(|d| !(no_always && *d == "allow-always")).collect();
    let agent_id = non_empty(&p.agent_id).map(str::to_owned).or_else(|| plan_str("agentId"));
    let session_key = non_empty(&p.session_key).map(str::to_owned).or_else(|| plan_str("sessionKey"));
    let env_keys: Option<Vec<String>> = p.env.as_ref().map(|e| e.keys().cloned().collect());
    let mut request = Map::new();
    request.insert("command".into(), json!(command));
    if host != "node" && !argv.is_empty() {
        request.insert("commandArgv".into(), json!(argv));
    }
    if let Some(keys) = env_keys.filter(|k| !k.is_empty()) {
        request.insert("envKeys".into(), json!(keys));
    }
    request.insert("systemRunPlan".into(), plan.clone().unwrap_or(Value::Null));
    request.insert("cwd".into(), json!(non_empty(&p.cwd).map(str::to_owned).or_else(|| plan_str("cwd"))));
    request.insert("nodeId".into(), json!((host == "node").then(|| non_empty(&p.node_id)).flatten()));
    request.insert("host".into(), json!((!host.is_empty()).then_some(host.as_str())));
    request.insert("security".into(), json!(non_empty(&p.security)));
    request.insert("ask".into(), json!(non_empty(&p.ask)));
    request.insert("warningText".into(), json!(non_empty(&p.warning_text)));
    request.insert("scope".into(), p.scope.clone().unwrap_or(Value::Null));
    request.insert("allowedDecisions".into(), json!(decisions));
    request.insert("agentId".into(), json!(agent_id));
    request.insert("resolvedPath".into(), json!(non_empty(&p.resolved_path)));
    request.insert("sessionKey".into(), json!(session_key));
    request.insert("sessionId".into(), json!(non_empty(&p.session_id)));
    request.insert("runId".into(), json!(non_empty(&p.run_id)));
    request.insert("toolCallId".into(), json!(non_empty(&p.tool_call_id)));
    request.insert("turnSourceChannel".into(), json!(non_empty(&p.turn_source_channel)));
    request.insert("turnSourceTo".into(), json!(non_empty(&p.turn_source_to)));
    request.insert("turnSourceAccountId".into(), json!(non_empty(&p.turn_source_account_id)));
    request.insert("turnSourceThreadId".into(), p.turn_source_thread_id.clone().unwrap_or(Value::Null));
    // What allow-always adds to the allowlist: the executable (resolved path, else argv[0],
    // else the command's first word), for the agent that asked (all agents when none did).
    let subject = non_empty(&p.resolved_path)
        .map(str::to_owned)
        .or_else(|| argv.first().cloned())
        .or_else(|| command.split_whitespace().next().map(str::to_owned));
    let grant = subject.filter(|_| !no_always).map(|pattern| Grant {
        agent: agent_id.clone().unwrap_or_else(|| "*".into()),
        pattern,
        node: None,
    });
    let new = NewExecApproval {
        id: p.id.clone(),
        request,
        grant,
        timeout_ms: p.timeout_ms.unwrap_or(DEFAULT_TIMEOUT_MS),
        requested_by: json!({"client": ctx.client.client.0, "connId": ctx.client.conn_id,
                             "deviceId": ctx.client.device_id}),
    };
    let record = exec.create(new).await?;
    if p.two_phase == Some(true) {
        let accepted = ExecApprovalAccepted {
            status: "accepted",
            id: record.id.clone(),
            delivery_route: if exec.approval_clients(&record) > 0 { "approval-client" } else { "none" },
            created_at_ms: record.created_at_ms,
            expires_at_ms: record.expires_at_ms,
        };
        let accepted = serde_json::to_value(accepted).map_err(CoreError::internal)?;
        let _ = ctx.client.send(ResponseFrame::ok(ctx.request_id.clone(), accepted).to_text());
    }
    let last = exec.wait(&record.id, record.expires_at_ms).await?.unwrap_or(record);
    Ok(ExecApprovalDecisionResult {
        id: last.id.clone(),
        decision: decision_of(&last),
        created_at_ms: last.created_at_ms,
        expires_at_ms: last.expires_at_ms,
        terminal_reason: None,
    })
}

/// `exec.approval.waitDecision {id}` → `{id, decision, createdAtMs, expiresAtMs}` once it is
/// decided (at once if it already is); `decision: null, terminalReason: "timeout"` when it
/// expired. Works after a restart: the approval and its decision are in the store.
pub async fn exec_approval_wait_decision(
    exec: &ExecApprovals,
    ctx: &CallContext,
    p: ExecApprovalIdParams,
) -> Result<ExecApprovalDecisionResult, CoreError> {
    let Some(id) = non_empty(&p.id) else { return Err(CoreError::invalid("id is required")) };
    let Some(current) = exec.get(id).await?.filter(|a| visible_to(a, ctx)) else {
        return Err(CoreError::invalid("approval expired or not found"));
    };
    if current.status == ApprovalStatus::Expired {
        return Err(CoreError::invalid("approval expired or not found"));
    }
    let last = exec.wait(id, current.expires_at_ms).await?.unwrap_or(current);
    Ok(ExecApprovalDecisionResult {
        id: last.id.clone(),
        decision: decision_of(&last),
        created_at_ms: last.created_at_ms,
        expires_at_ms: last.expires_at_ms,
        terminal_reason: (last.status == ApprovalStatus::Expired).then_some("timeout"),
    })
}

/// `exec.approval.list {}` → the pending exec approvals the caller may see, newest first
/// (`[{id, request, createdAtMs, expiresAtMs, approvalKind:"exec"}]`).
pub async fn exec_approval_list(
    exec: &ExecApprovals,
    ctx: &CallContext,
    _: AnyParams,
) -> Result<Vec<ExecApprovalEntry>, CoreError> {
    Ok(exec.pending().await?.iter().filter(|a| visible_to(a, ctx)).map(crate::exec_approvals::entry).collect())
}

/// `exec.approval.get {id}` → a pending approval as a reviewer sees it.
pub async fn exec_approval_get(
    exec: &ExecApprovals,
    ctx: &CallContext,
    p: ExecApprovalIdParams,
) -> Result<ExecApprovalGetResult, CoreError> {
    let Some(id) = non_empty(&p.id) else {
        return Err(CoreError::invalid("invalid exec.approval.get params: must have required property 'id'"));
    };
    let a = exec.get(id).await?;
    let a = a.filter(|a| a.status == ApprovalStatus::Pending && visible_to(a, ctx)).ok_or_else(not_found)?;
    let request = request_of(&a);
    let s = |k: &str| request.get(k).and_then(Value::as_str).map(str::to_owned);
    Ok(ExecApprovalGetResult {
        id: a.id.clone(),
        command_text: s("command").unwrap_or_default(),
        command_preview: s("commandPreview"),
        allowed_decisions: allowed_decisions(&request),
        host: s("host"),
        node_id: s("nodeId"),
        agent_id: s("agentId"),
        expires_at_ms: a.expires_at_ms,
    })
}

/// `exec.approval.resolve {id, decision}` → `{ok: true}`; operators hear
/// `exec.approval.resolved`, and a waiting request or tool call gets the decision.
pub async fn exec_approval_resolve(
    exec: &ExecApprovals,
    ctx: &CallContext,
    p: ExecApprovalResolveParams,
) -> Result<ExecApprovalResolveResult, CoreError> {
    let Some(id) = non_empty(&p.id) else {
        return Err(CoreError::invalid("invalid exec.approval.resolve params: must have required property 'id'"));
    };
    let decision = p.decision.as_deref().unwrap_or_default();
    if !DECISIONS.contains(&decision) {
        return Err(CoreError::invalid("invalid decision"));
    }
    let current = exec.get(id).await?;
    if current.as_ref().is_some_and(|a| !visible_to(a, ctx)) {
        return Err(not_found());
    }
    if let Some(a) = current.filter(|a| a.status == ApprovalStatus::Pending)
        && !allowed_decisions(&request_of(&a)).iter().any(|d| d == decision)
    {
        return Err(CoreError::InvalidRequest {
            message: "allow-always is unavailable for this command".into(),
            details: Some(json!({"reason": "APPROVAL_ALLOW_ALWAYS_UNAVAILABLE"})),
        });
    }
    match exec.resolve(id, decision, &resolver_of(ctx), None).await? {
        Resolved::Applied(_) => Ok(ExecApprovalResolveResult { ok: true }),
        Resolved::AlreadyDecided(a) => match decision_of(&a) {
            Some(d) if d == decision => Ok(ExecApprovalResolveResult { ok: true }),
            Some(_) => Err(already_resolved()),
            None => Err(not_found()),
        },
        Resolved::NotFound => Err(not_found()),
    }
}

/// The `ApprovalSnapshot` of an exec approval (`presentation.kind: "exec"`).
fn snapshot(a: &ApprovalRecord) -> ApprovalSnapshot {
    let request = request_of(a);
    let s = |k: &str| request.get(k).and_then(Value::as_str).map(str::to_owned);
    let presentation = json!({
        "kind": "exec",
        "commandText": s("command").unwrap_or_else(|| "(unknown)".into()),
        "commandPreview": s("commandPreview"),
        "warningText": s("warningText"),
        "host": s("host"),
        "nodeId": s("nodeId"),
        "agentId": s("agentId"),
        "allowedDecisions": allowed_decisions(&request),
    });
    let (status, reason) = match a.status {
        ApprovalStatus::Pending => ("pending", None),
        ApprovalStatus::Approved => ("allowed", Some("user")),
        ApprovalStatus::Rejected => (
            "denied",
            Some(if a.reason.as_deref() == Some("malformed-verdict") { "malformed-verdict" } else { "user" }),
        ),
        ApprovalStatus::Expired => ("expired", Some("timeout")),
    };
    let resolver = a.decided_by.as_deref().map(|by| match by.split_once(':') {
        Some(("device", id)) => ApprovalResolver { kind: "device".into(), id: Some(id.to_owned()) },
        Some((_, id)) => ApprovalResolver { kind: "runtime".into(), id: Some(id.to_owned()) },
        None => ApprovalResolver { kind: "runtime".into(), id: Some(by.to_owned()) },
    });
    ApprovalSnapshot {
        id: a.id.clone(),
        url_path: format!("/approve/{}", urlencoding(&a.id)),
        created_at_ms: a.created_at_ms,
        expires_at_ms: a.expires_at_ms,
        presentation,
        status,
        resolved_at_ms: match a.status {
            ApprovalStatus::Pending => None,
            ApprovalStatus::Expired => Some(a.decided_at_ms.unwrap_or(a.expires_at_ms)),
            _ => a.decided_at_ms,
        },
        decision: decision_of(a),
        reason,
        resolver,
    }
}

/// Percent-encodes an id for a URL path segment (as `encodeURIComponent`).
fn urlencoding(s: &str) -> String {
    let mut out = String::new();
    for b in s.bytes() {
        match b {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'_' | b'.' | b'!' | b'~' | b'*' | b'\'' | b'(' | b')' => {
                out.push(b as char)
            }
            _ => out.push_str(&format!("%{b:02X}")),
        }
    }
    out
}

/// `approval.get {id}` → `{approval: ApprovalSnapshot}` for an exec approval, pending or not.
pub async fn approval_get(exec: &ExecApprovals, p: ApprovalGetParams) -> Result<ApprovalGetResult, CoreError> {
    let Some(id) = p.id.as_deref().filter(|s| !s.is_empty()) else {
        return Err(CoreError::invalid("invalid approval.get params"));
    };
    let a = exec.get(id).await?.ok_or_else(generic_not_found)?;
    Ok(ApprovalGetResult { approval: snapshot(&a) })
}

/// `approval.resolve {id, kind, decision}` → `{applied, approval}`. As upstream, a verdict that
/// does not fit (wrong kind, a decision not offered) is recorded as a deny with reason
/// `malformed-verdict` — it fails closed; a decided approval answers `applied: false`.
pub async fn approval_resolve(
    exec: &ExecApprovals,
    ctx: &CallContext,
    p: ApprovalResolveParams,
) -> Result<ApprovalResolveResult, CoreError> {
    let Some(id) = p.id.as_deref().filter(|s| !s.is_empty()) else { return Err(generic_not_found()) };
    let Some(current) = exec.get(id).await? else { return Err(generic_not_found()) };
    if current.status != ApprovalStatus::Pending {
        return Ok(ApprovalResolveResult { applied: false, approval: snapshot(&current) });
    }
    let requested = p.decision.as_deref().unwrap_or_default();
    let offered = allowed_decisions(&request_of(&current));
    let fits = p.kind.as_deref() == Some("exec")
        && DECISIONS.contains(&requested)
        && (requested == "deny" || offered.iter().any(|d| d == requested));
    let (decision, reason) = if fits { (requested, None) } else { ("deny", Some("malformed-verdict")) };
    match exec.resolve(id, decision, &resolver_of(ctx), reason).await? {
        Resolved::Applied(a) => Ok(ApprovalResolveResult { applied: true, approval: snapshot(&a) }),
        Resolved::AlreadyDecided(a) => Ok(ApprovalResolveResult { applied: false, approval: snapshot(&a) }),
        Resolved::NotFound => Err(generic_not_found()),
    }
}

/// `exec.approval.grants.list {limit?}` → `{grants: []}`. Upstream's standing grants are what
/// allow-always mints on a cron job's approval; clawgate mints none: every allow-always (a cron
/// run's included) is an allowlist entry of the policy that decided, listed and revoked there
/// (`exec.approvals.get|set`, `exec.approvals.node.get|set`). So the honest answer is the empty
/// list, and the Control UI's approvals page shows "no standing grants" instead of an error.
pub async fn exec_approval_grants_list(
    p: ExecApprovalGrantsListParams,
) -> Result<ExecApprovalGrantsListResult, CoreError> {
    if p.limit.is_some_and(|l| !(1..=500).contains(&l)) {
        return Err(CoreError::invalid("invalid exec.approval.grants.list params: limit must be between 1 and 500"));
    }
    Ok(ExecApprovalGrantsListResult::default())
}

/// `exec.approval.grants.revoke {grantId}` → `{outcome: "not-found"}`: there are no standing
/// grants to revoke (see [`exec_approval_grants_list`]).
pub async fn exec_approval_grants_revoke(
    p: ExecApprovalGrantsRevokeParams,
) -> Result<ExecApprovalGrantsRevokeResult, CoreError> {
    if non_empty(&p.grant_id).is_none() {
        return Err(CoreError::invalid(
            "invalid exec.approval.grants.revoke params: must have required property 'grantId'",
        ));
    }
    Ok(ExecApprovalGrantsRevokeResult { outcome: "not-found" })
}

/// `exec.approvals.get {}` → `{path, exists, hash, file, resolvedDefaults}`.
pub async fn exec_approvals_get(
    exec: &ExecApprovals,
    _: ExecApprovalsGetParams,
) -> Result<ExecApprovalsSnapshot, CoreError> {
    exec.snapshot(PolicyOf::Gateway).await
}

/// `exec.approvals.set {file, baseHash?}` → the new snapshot. Once a policy exists, `baseHash`
/// (from `exec.approvals.get`) is required and must still be current.
pub async fn exec_approvals_set(
    exec: &ExecApprovals,
    p: ExecApprovalsSetParams,
) -> Result<ExecApprovalsSnapshot, CoreError> {
    let file = checked_file(p.file, "exec.approvals.set")?;
    exec.set_policy(PolicyOf::Gateway, file, non_empty(&p.base_hash)).await
}

/// The node a `exec.approvals.node.*` call names, which must be one the gateway knows (paired
/// or connected).
fn known_node(nodes: &NodeService, node_id: &Option<String>) -> Result<String, CoreError> {
    let Some(node) = non_empty(node_id) else { return Err(CoreError::invalid("nodeId required")) };
    Ok(nodes.describe(node)?.node_id)
}

/// `exec.approvals.node.get {nodeId}` → that node's own policy snapshot (`exists: false` and
/// the empty document until one is set: the gateway's policy decides for it meanwhile).
pub async fn exec_approvals_node_get(
    exec: &ExecApprovals,
    nodes: &NodeService,
    p: ExecApprovalsNodeGetParams,
) -> Result<ExecApprovalsSnapshot, CoreError> {
    let node = known_node(nodes, &p.node_id)?;
    exec.snapshot(PolicyOf::Node(&node)).await
}

/// `exec.approvals.node.set {nodeId, file, baseHash?}` → the node's new snapshot; from then on
/// its policy, not the gateway's, decides for commands on it. Same hash rules as
/// `exec.approvals.set`. A host-native policy (`native`, macOS app nodes) is refused: clawgate
/// keeps only the file form.
pub async fn exec_approvals_node_set(
    exec: &ExecApprovals,
    nodes: &NodeService,
    p: ExecApprovalsNodeSetParams,
) -> Result<ExecApprovalsSnapshot, CoreError> {
    let node = known_node(nodes, &p.node_id)?;
    if p.native.is_some() {
        return Err(CoreError::invalid("host-native exec approvals are not supported for this node"));
    }
    let file = checked_file(p.file, "exec.approvals.node.set")?;
    exec.set_policy(PolicyOf::Node(&node), file, non_empty(&p.base_hash)).await
}

/// A policy document as `exec.approvals.set` accepts it: an object at version 1 whose modes are
/// upstream's words.
fn checked_file(file: Option<Value>, method: &str) -> Result<Value, CoreError> {
    let Some(file) = file.filter(Value::is_object) else {
        return Err(CoreError::invalid("exec approvals file is required"));
    };
    if file.get("version").and_then(Value::as_f64) != Some(1.0) {
        return Err(CoreError::invalid(format!("invalid {method} params: file.version must be 1")));
    }
    for (key, mode_ok) in [("security", ["deny", "allowlist", "full"]), ("askFallback", ["deny", "allowlist", "full"])]
        .into_iter()
        .chain([("ask", ["off", "on-miss", "always"])])
    {
        let bad = |v: Option<&Value>| {
            v.and_then(|v| v.get(key)).is_some_and(|m| !m.as_str().is_some_and(|m| mode_ok.contains(&m)))
        };
        let agents = file.get("agents").and_then(Value::as_object);
        if bad(file.get("defaults")) || agents.is_some_and(|a| a.values().any(|v| bad(Some(v)))) {
            return Err(CoreError::invalid(format!(
                "invalid {method} params: {key} must be one of {}",
                mode_ok.join(", ")
            )));
        }
    }
    Ok(file)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn record(status: ApprovalStatus, decision: Option<&str>, decided_by: Option<&str>) -> ApprovalRecord {
        ApprovalRecord {
            id: "a b".into(),
            kind: "exec".into(),
            payload: json!({"request": {"command": "system.which sh", "host": "node", "nodeId": "n1",
                                        "allowedDecisions": ["allow-once", "deny"]}}),
            requested_by: None,
            status,
            reason: None,
            decided_by: decided_by.map(str::to_owned),
            created_at_ms: 1,
            expires_at_ms: 9,
            decided_at_ms: (status != ApprovalStatus::Pending).then_some(5),
            decision: decision.map(str::to_owned),
        }
    }

    #[test]
    fn snapshots_follow_upstream_states() {
        let pending = serde_json::to_value(snapshot(&record(ApprovalStatus::Pending, None, None))).unwrap();
        assert_eq!(pending["status"], "pending");
        assert_eq!(pending["urlPath"], "/approve/a%20b");
        assert_eq!(pending["presentation"]["kind"], "exec");
        assert_eq!(pending["presentation"]["commandText"], "system.which sh");
        assert_eq!(pending["presentation"]["allowedDecisions"], json!(["allow-once", "deny"]));
        assert!(pending.get("decision").is_none() && pending.get("resolvedAtMs").is_none());

        let allowed =
            serde_json::to_value(snapshot(&record(ApprovalStatus::Approved, Some("allow-always"), Some("device:abc"))))
                .unwrap();
        assert_eq!((allowed["status"].as_str(), allowed["decision"].as_str()), (Some("allowed"), Some("allow-always")));
        assert_eq!(allowed["resolver"], json!({"kind": "device", "id": "abc"}));
        assert_eq!(allowed["reason"], "user");

        let expired = serde_json::to_value(snapshot(&record(ApprovalStatus::Expired, None, None))).unwrap();
        assert_eq!((expired["status"].as_str(), expired["reason"].as_str()), (Some("expired"), Some("timeout")));
        assert!(expired.get("decision").is_none());
    }
}
