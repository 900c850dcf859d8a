//! `plugin.approval.list|request|waitDecision|resolve`: the durable approvals (a `/run` held for
//! an admin, or a plugin's own request) shown to OpenClaw operator clients, which know them as
//! plugin approvals.
//!
//! A stored [`ApprovalRecord`] `{id, kind, payload, requested_by, status, reason, expires}`
//! becomes upstream's approval record `{id, approvalKind:"plugin", request, createdAtMs,
//! expiresAtMs}`, where `request` is a `PluginApprovalRequestParams` (for `comfy.run`: plugin
//! `comfy`, the template as title, who asked and the job as description, decisions
//! `allow-once` or `deny`). clawgate adds what the store knows — `status`, `decision`,
//! `reason`, `resolvedBy`, `resolvedAtMs`, `kind`, `payload` — after upstream's fields.
//! Decisions map `allow-once` → approved and `deny` → rejected; `allow-always` is not offered
//! (an approval holds one job).

use std::time::Duration;

use serde_json::{Map, Value, json};

use clawgate_protocol::frames::ResponseFrame;
use clawgate_protocol::methods::approvals::{
    ApprovalDecision, ApprovalRequestView, Checked, HeldRunRequest, PluginApprovalAccepted,
    PluginApprovalDecisionResult, PluginApprovalEntry, PluginApprovalListParams, PluginApprovalListResult,
    PluginApprovalRequestParams, PluginApprovalRequestResult, PluginApprovalResolveParams, PluginApprovalResolveResult,
    PluginApprovalResolvedEvent, PluginApprovalSeverity, PluginApprovalWaitDecisionParams,
    PluginApprovalWaitDecisionResult,
};
use clawgate_store::{ApprovalRecord, ApprovalStatus, ApprovalStore, NewApproval};

use crate::comfy::{APPROVAL_KIND, ComfyService, Decided};
use crate::dispatch::CallContext;
use crate::error::CoreError;
use crate::events::Events;
use crate::gateway::Store;
use crate::tasks::Tasks;
use crate::time::now_ms;

/// The kind of an approval created by `plugin.approval.request`; its payload is `{request}`.
const PLUGIN_KIND: &str = "plugin";
/// `plugin.approval.request` without `timeoutMs`: how long the approval stays open.
const DEFAULT_REQUEST_TIMEOUT_MS: u64 = 120_000;
/// Upper bound of `timeoutMs` (the schema's maximum).
const MAX_TIMEOUT_MS: u64 = 600_000;
/// How often a waiter re-reads the approval. Polling the store (rather than an in-process
/// signal) also sees decisions made from chat (`/approve`) and by expiry.
const WAIT_POLL: Duration = Duration::from_millis(150);
/// The decisions a held job offers.
const DECISIONS: [&str; 2] = ["allow-once", "deny"];

/// A required, non-empty string param, refused with upstream's wording.
fn required<'a>(value: &'a Option<String>, key: &str, method: &str) -> Result<&'a str, CoreError> {
    value
        .as_deref()
        .filter(|s| !s.is_empty())
        .ok_or_else(|| CoreError::invalid(format!("invalid {method} params: must have required property '{key}'")))
}

/// At most `max` characters (the schema bounds titles and descriptions).
fn clip(s: &str, max: usize) -> String {
    if s.chars().count() <= max {
        return s.to_owned();
    }
    let mut out: String = s.chars().take(max - 1).collect();
    out.push('…');
    out
}

/// Who asked, for people: `telegram:200 (@guest)`, `client cli`, or `someone`.
fn requester(rb: Option<&Value>) -> String {
    let Some(rb) = rb else { return "someone".to_owned() };
    let field = |k: &str| rb.get(k).and_then(Value::as_str).filter(|s| !s.is_empty());
    match (field("channel"), field("senderId"), field("client")) {
        (Some(ch), Some(sender), _) => match field("username") {
            Some(u) => format!("{ch}:{sender} (@{u})"),
            None => format!("{ch}:{sender}"),
        },
        (_, _, Some(client)) => format!("client {client}"),
        _ => "someone".to_owned(),
    }
}

/// The `PluginApprovalRequestParams` an operator client is shown for a stored approval.
fn request_of(a: &ApprovalRecord) -> ApprovalRequestView {
    if a.kind == PLUGIN_KIND
        && let Some(Value::Object(req)) = a.payload.get("request")
    {
        return ApprovalRequestView::Requested(req.clone());
    }
    let template = a.payload.get("template").and_then(Value::as_str).unwrap_or("?");
    let job = a.payload.get("jobId").and_then(Value::as_str).unwrap_or("?");
    let who = requester(a.requested_by.as_ref());
    let rb_str = |k: &str| a.requested_by.as_ref().and_then(|r| r.get(k)).and_then(Value::as_str).map(str::to_owned);
    ApprovalRequestView::HeldRun(HeldRunRequest {
        plugin_id: "comfy",
        title: clip(&format!("Run ComfyUI template {template}"), 80),
        description: clip(&format!("{who} asked to run the ComfyUI template \"{template}\" (job {job})."), 512),
        detail: serde_json::to_string_pretty(&a.payload).unwrap_or_default(),
        severity: PluginApprovalSeverity::Warning,
        tool_name: a.kind.clone(),
        allowed_decisions: DECISIONS,
        turn_source_channel: rb_str("channel"),
        turn_source_to: rb_str("chatId"),
    })
}

/// `allow-once` / `deny` for a decided approval, `None` otherwise (upstream's expired).
fn decision_of(status: ApprovalStatus) -> Option<ApprovalDecision> {
    match status {
        ApprovalStatus::Approved => Some(ApprovalDecision::AllowOnce),
        ApprovalStatus::Rejected => Some(ApprovalDecision::Deny),
        _ => None,
    }
}

/// An approval as operator clients see it (list items and `plugin.approval.requested`).
fn entry(a: &ApprovalRecord) -> PluginApprovalEntry {
    PluginApprovalEntry {
        id: a.id.clone(),
        approval_kind: "plugin",
        request: request_of(a),
        created_at_ms: a.created_at_ms,
        expires_at_ms: a.expires_at_ms,
        status: a.status.as_str().to_owned(),
        decision: decision_of(a.status),
        reason: a.reason.clone(),
        resolved_by: a.decided_by.clone(),
        resolved_at_ms: a.decided_at_ms,
        kind: a.kind.clone(),
        payload: a.payload.clone(),
    }
}

/// [`entry`] as the `plugin.approval.requested` event payload.
pub(crate) fn record_json(a: &ApprovalRecord) -> Value {
    serde_json::to_value(entry(a)).unwrap_or_default()
}

/// `plugin.approval.resolved` `{id, decision, resolvedBy, ts, reason, status, request}`.
pub(crate) fn resolved_event(a: &ApprovalRecord) -> Value {
    let event = PluginApprovalResolvedEvent {
        id: a.id.clone(),
        approval_kind: "plugin",
        decision: decision_of(a.status),
        resolved_by: a.decided_by.clone(),
        ts: a.decided_at_ms.unwrap_or_else(now_ms),
        reason: a.reason.clone(),
        status: a.status.as_str().to_owned(),
        request: request_of(a),
    };
    serde_json::to_value(event).unwrap_or_default()
}

fn timeout_param(timeout_ms: &Checked<u64>, default_ms: u64) -> Result<u64, CoreError> {
    match timeout_ms {
        Checked::Absent | Checked::Null => Ok(default_ms),
        Checked::Valid(ms) if *ms >= 1 => Ok((*ms).min(MAX_TIMEOUT_MS)),
        _ => Err(CoreError::invalid("timeoutMs must be an integer of at least 1")),
    }
}

/// Re-read the approval until it is no longer pending, `deadline_ms` passes or the gateway
/// shuts down; the last record read. `None` if it does not exist.
async fn wait_until_decided(
    store: &Store,
    tasks: &Tasks,
    id: &str,
    deadline_ms: i64,
) -> Result<Option<ApprovalRecord>, CoreError> {
    let shutdown = tasks.token();
    loop {
        let Some(a) = store.get_approval(id, now_ms()).await? else { return Ok(None) };
        let left = deadline_ms - now_ms();
        if a.status != ApprovalStatus::Pending || left <= 0 {
            return Ok(Some(a));
        }
        let nap = WAIT_POLL.min(Duration::from_millis(left as u64));
        tokio::select! {
            () = shutdown.cancelled() => return Ok(Some(a)),
            () = tokio::time::sleep(nap) => {}
        }
    }
}

fn decision_result(a: &ApprovalRecord) -> PluginApprovalDecisionResult {
    PluginApprovalDecisionResult {
        id: a.id.clone(),
        decision: decision_of(a.status),
        created_at_ms: a.created_at_ms,
        expires_at_ms: a.expires_at_ms,
        status: a.status.as_str().to_owned(),
        reason: a.reason.clone(),
        resolved_by: a.decided_by.clone(),
    }
}

/// `plugin.approval.list {status?}` → the approvals, newest first. Without `status` only the
/// pending ones (what upstream lists); `status` (`pending`, `approved`, `rejected`,
/// `expired` or `all`) is clawgate's, to look back at decisions and their reasons.
pub async fn plugin_approval_list(
    store: &Store,
    params: PluginApprovalListParams,
) -> Result<PluginApprovalListResult, CoreError> {
    let status = match params.status.as_deref() {
        None => Some(ApprovalStatus::Pending),
        Some("all") => None,
        Some(s) => Some(s.parse::<ApprovalStatus>().map_err(|_| {
            CoreError::invalid(format!("status \"{s}\" is not one of pending, approved, rejected, expired, all"))
        })?),
    };
    let list = store.list_approvals(status, now_ms()).await?;
    // Exec approvals share the table; they are listed by `exec.approval.list`.
    Ok(list.iter().filter(|a| a.kind != crate::exec_approvals::EXEC_KIND).map(entry).collect())
}

/// `plugin.approval.request PluginApprovalRequestParams` → `{id, decision, createdAtMs,
/// expiresAtMs}` once decided or after `timeoutMs` (decision `null`). With `twoPhase` a first
/// `res` `{status:"accepted", id, createdAtMs, expiresAtMs}` answers at once.
pub async fn plugin_approval_request(
    store: &Store,
    events: &Events,
    tasks: &Tasks,
    ctx: &CallContext,
    params: PluginApprovalRequestParams,
) -> Result<PluginApprovalRequestResult, CoreError> {
    const METHOD: &str = "plugin.approval.request";
    let title = required(&params.title, "title", METHOD)?;
    let description = required(&params.description, "description", METHOD)?;
    if title.chars().count() > 80 || description.chars().count() > 512 {
        return Err(CoreError::invalid(format!(
            "invalid {METHOD} params: title is at most 80 characters, description at most 512"
        )));
    }
    if params.severity == Checked::Invalid {
        return Err(CoreError::invalid(format!("invalid {METHOD} params: severity must be info, warning or critical")));
    }
    let timeout_ms = timeout_param(&params.timeout_ms, DEFAULT_REQUEST_TIMEOUT_MS)?;
    // The request as sent, without the call's own `timeoutMs` and `twoPhase`.
    let mut request: Map<String, Value> = params.rest.clone();
    request.insert("title".into(), json!(title));
    request.insert("description".into(), json!(description));
    match params.severity {
        Checked::Valid(s) => request.insert("severity".into(), json!(s)),
        Checked::Null => request.insert("severity".into(), Value::Null),
        Checked::Absent | Checked::Invalid => None,
    };
    request.entry("allowedDecisions").or_insert_with(|| json!(DECISIONS));
    let now = now_ms();
    let new = NewApproval {
        id: format!("apr_{}", &uuid::Uuid::new_v4().simple().to_string()[..12]),
        kind: PLUGIN_KIND.into(),
        payload: json!({"request": request}),
        requested_by: Some(json!({"client": ctx.client.client.0, "connId": ctx.client.conn_id})),
        expires_at_ms: now + timeout_ms as i64,
    };
    let record = store.create_approval(&new, now).await?;
    events.approval_requested(&record_json(&record));
    if params.two_phase == Some(true) {
        let accepted = PluginApprovalAccepted {
            status: "accepted",
            id: record.id.clone(),
            created_at_ms: record.created_at_ms,
            expires_at_ms: record.expires_at_ms,
        };
        let accepted = serde_json::to_value(accepted).map_err(CoreError::internal)?;
        let _ = ctx.client.send(ResponseFrame::ok(ctx.request_id.clone(), accepted).to_text());
    }
    let last = wait_until_decided(store, tasks, &record.id, record.expires_at_ms).await?.unwrap_or(record);
    Ok(decision_result(&last))
}

/// `plugin.approval.waitDecision {id, timeoutMs?}` → `{id, decision, createdAtMs, expiresAtMs,
/// status, reason}`: at once if decided, else when it is decided, expires or `timeoutMs`
/// (default and at most 600 000 ms) passes — then `decision` is `null`, `status` `pending`.
pub async fn plugin_approval_wait_decision(
    store: &Store,
    tasks: &Tasks,
    params: PluginApprovalWaitDecisionParams,
) -> Result<PluginApprovalWaitDecisionResult, CoreError> {
    let id = required(&params.id, "id", "plugin.approval.waitDecision")?;
    let timeout_ms = timeout_param(&params.timeout_ms, MAX_TIMEOUT_MS)?;
    let Some(current) = store.get_approval(id, now_ms()).await? else {
        return Err(CoreError::ApprovalNotFound(format!("unknown approval id {id}")));
    };
    let deadline = (now_ms() + timeout_ms as i64).min(current.expires_at_ms);
    let last = wait_until_decided(store, tasks, id, deadline).await?.unwrap_or(current);
    Ok(decision_result(&last))
}

/// `plugin.approval.resolve {id, decision: "allow-once"|"deny", reviewer?, reason?}` →
/// `{ok:true, id, decision, status, reason, jobId?, jobStatus?}`. Approving releases a held
/// job to the queue; denying cancels it and keeps `reason` (clawgate's addition to the params).
pub async fn plugin_approval_resolve(
    comfy: &ComfyService,
    ctx: &CallContext,
    params: PluginApprovalResolveParams,
) -> Result<PluginApprovalResolveResult, CoreError> {
    const METHOD: &str = "plugin.approval.resolve";
    let id = required(&params.id, "id", METHOD)?;
    let approve = match required(&params.decision, "decision", METHOD)? {
        "allow-once" => true,
        "deny" => false,
        "allow-always" => {
            return Err(CoreError::invalid(
                "invalid decision: allow-always is not offered (an approval holds one job); use allow-once or deny",
            ));
        }
        other => return Err(CoreError::invalid(format!("invalid decision: {other:?}; use allow-once or deny"))),
    };
    let reason = params.reason.as_deref().map(str::trim).filter(|r| !r.is_empty());
    let who = match &params.reviewer {
        Some(r) => {
            let part = |v: &Option<String>| v.clone().unwrap_or_else(|| "?".to_owned());
            format!("{}:{}:{}", part(&r.channel), part(&r.account_id), part(&r.sender_id))
        }
        None => match &ctx.client.device_id {
            Some(device) => format!("device:{device}"),
            None => format!("client:{}", ctx.client.client.0),
        },
    };
    let Some(Decided { approval, job }) = comfy.decide_approval(id, approve, &who, reason).await? else {
        return Err(CoreError::ApprovalNotFound(format!(
            "no pending approval {id} (unknown, already decided or expired)"
        )));
    };
    let mut out = PluginApprovalResolveResult {
        ok: true,
        id: approval.id.clone(),
        decision: decision_of(approval.status),
        status: approval.status.as_str().to_owned(),
        reason: approval.reason.clone(),
        job_id: None,
        job_status: None,
        job_error: None,
    };
    if approval.kind == APPROVAL_KIND {
        out.job_id = Some(approval.payload.get("jobId").and_then(Value::as_str).map(str::to_owned));
        match job {
            Some(Ok(j)) => out.job_status = Some(j.status.as_str().to_owned()),
            Some(Err(e)) => out.job_error = Some(e),
            None => {}
        }
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn record(status: ApprovalStatus, reason: Option<&str>) -> ApprovalRecord {
        ApprovalRecord {
            id: "apr_1".into(),
            kind: "comfy.run".into(),
            payload: json!({"jobId": "job_1", "template": "invert"}),
            requested_by: Some(json!({"channel": "telegram", "senderId": "200", "chatId": "200", "username": "guest"})),
            status,
            reason: reason.map(str::to_owned),
            decided_by: None,
            created_at_ms: 10,
            expires_at_ms: 20,
            decided_at_ms: None,
            decision: None,
        }
    }

    #[test]
    fn a_held_run_is_a_plugin_approval_request() {
        let v = record_json(&record(ApprovalStatus::Pending, None));
        assert_eq!(v["approvalKind"], "plugin");
        assert_eq!(v["createdAtMs"], 10);
        assert_eq!(v["expiresAtMs"], 20);
        let req = &v["request"];
        assert_eq!(req["pluginId"], "comfy");
        assert_eq!(req["title"], "Run ComfyUI template invert");
        assert_eq!(
            req["description"],
            "telegram:200 (@guest) asked to run the ComfyUI template \"invert\" (job job_1)."
        );
        assert_eq!(req["allowedDecisions"], json!(["allow-once", "deny"]));
        assert_eq!(req["turnSourceChannel"], "telegram");
        assert_eq!(v["decision"], Value::Null);
    }

    #[test]
    fn decisions_map_onto_upstream_words_and_keep_the_reason() {
        let v = record_json(&record(ApprovalStatus::Rejected, Some("not today")));
        assert_eq!((v["decision"].as_str(), v["reason"].as_str()), (Some("deny"), Some("not today")));
        assert_eq!(resolved_event(&record(ApprovalStatus::Approved, None))["decision"], "allow-once");
        assert_eq!(decision_of(ApprovalStatus::Expired), None);
    }

    #[test]
    fn long_titles_are_clipped_to_the_schema_bounds() {
        let long = "x".repeat(200);
        assert_eq!(clip(&long, 80).chars().count(), 80);
        assert_eq!(clip("short", 80), "short");
    }
}
