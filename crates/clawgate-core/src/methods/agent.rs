//! `agent` (two responses), `agent.wait`, `agent.identity.get`, `agents.list`.

use std::sync::Arc;
use std::time::Duration;

use serde_json::{Value, json};

use clawgate_protocol::frames::ResponseFrame;
use clawgate_store::{RunKind, RunStatus};

use crate::agent::{self, RunOutcome, RunRequest, Submitted};
use crate::dispatch::CallContext;
use crate::error::CoreError;
use crate::gateway::Gateway;
use crate::methods::chat::resolve_session_key;
use crate::time::now_ms;

/// How long `agent` waits for the end of a run it accepted, beyond the run's own timeout.
const AGENT_FINAL_GRACE: Duration = Duration::from_secs(30);

fn final_payload(run_id: &str, outcome: &RunOutcome) -> Result<Value, CoreError> {
    let r = &outcome.result;
    let text = r.get("text").and_then(Value::as_str).unwrap_or("");
    match outcome.status {
        RunStatus::Completed => Ok(json!({
            "runId": run_id,
            "status": "ok",
            "summary": "completed",
            "result": {
                "payloads": [{"text": text, "mediaUrl": null}],
                "meta": {
                    "durationMs": r.get("durationMs"),
                    "agentMeta": {"sessionId": r.get("sessionId"), "provider": r.get("provider"), "model": r.get("model"), "usage": r.get("usage")},
                },
            },
        })),
        RunStatus::Aborted => Ok(json!({
            "runId": run_id, "status": "timeout", "summary": "aborted",
            "stopReason": r.get("stopReason"), "timeoutPhase": if r.get("reason").and_then(Value::as_str) == Some("timeout") { "run" } else { "aborted" },
            "providerStarted": !text.is_empty(),
        })),
        RunStatus::Interrupted => {
            Err(CoreError::Unavailable("the run was interrupted by a gateway restart; send it again".into()))
        }
        _ => Err(CoreError::Unavailable(
            r.get("error").and_then(Value::as_str).unwrap_or("the agent run failed").to_owned(),
        )),
    }
}

/// `agent {message, idempotencyKey, agentId?, sessionKey?, timeout? (s), extraSystemPrompt?}`:
/// first `res` `{runId, sessionKey, agentId, status:"accepted", acceptedAt}`, then (same id) the
/// final result. `runId` = the idempotency key; a repeated key replays the stored result.
pub async fn agent(gw: &Arc<Gateway>, ctx: &CallContext, params: Value) -> Result<Value, CoreError> {
    let message = params.get("message").and_then(Value::as_str).filter(|m| !m.is_empty());
    let Some(message) = message else {
        return Err(CoreError::invalid("invalid agent params: must have required property 'message'"));
    };
    let Some(run_id) = params.get("idempotencyKey").and_then(Value::as_str).filter(|k| !k.is_empty()) else {
        return Err(CoreError::invalid("invalid agent params: must have required property 'idempotencyKey'"));
    };
    let agent_param = params.get("agentId").and_then(Value::as_str);
    let key_param = params.get("sessionKey").and_then(Value::as_str).filter(|k| !k.is_empty()).unwrap_or("main");
    let (session_key, agent_id) = resolve_session_key(gw, key_param, agent_param)?;
    let timeout = params.get("timeout").and_then(Value::as_u64).filter(|t| *t > 0).map(Duration::from_secs);
    let req = RunRequest {
        run_id: run_id.to_owned(),
        session_key: session_key.clone(),
        agent_id: agent_id.clone(),
        message: message.to_owned(),
        kind: RunKind::Agent,
        timeout,
        extra_system: params.get("extraSystemPrompt").and_then(Value::as_str).map(str::to_owned),
        client: Some(json!({"id": ctx.client.client.0, "mode": ctx.client.client.1})),
    };
    let submitted = agent::submit(gw, req).await;
    // Enqueued (or refused): the connection's next ordered request may go while this one waits.
    ctx.end_turn();
    match submitted? {
        Submitted::Done(rec) => {
            let outcome = RunOutcome { status: rec.status, result: rec.result.unwrap_or(Value::Null) };
            return final_payload(run_id, &outcome);
        }
        Submitted::Started | Submitted::InFlight => {}
    }
    let accepted = json!({"runId": run_id, "sessionKey": session_key, "agentId": agent_id, "status": "accepted", "acceptedAt": now_ms()});
    let _ = ctx.client.send(ResponseFrame::ok(ctx.request_id.clone(), accepted).to_text());
    let limit = timeout.unwrap_or(Duration::from_secs(gw.agents.agents().timeout_secs)) + AGENT_FINAL_GRACE;
    // A queued run may wait for earlier ones in its lane; keep waiting while it is alive.
    loop {
        match agent::wait(gw, run_id, limit).await? {
            Some(o) if o.status.is_terminal() => return final_payload(run_id, &o),
            Some(_) if !gw.shutdown_token().is_cancelled() => continue,
            _ => return Err(CoreError::Unavailable("the gateway is stopping; the run did not finish".into())),
        }
    }
}

/// `agent.wait {runId, timeoutMs?}` → `{runId, status: "ok"|"error"|"timeout"|"pending", …}`.
pub async fn agent_wait(gw: &Arc<Gateway>, params: Value) -> Result<Value, CoreError> {
    let Some(run_id) = params.get("runId").and_then(Value::as_str).filter(|r| !r.is_empty()) else {
        return Err(CoreError::invalid("invalid agent.wait params: must have required property 'runId'"));
    };
    let timeout = Duration::from_millis(params.get("timeoutMs").and_then(Value::as_u64).unwrap_or(30_000).min(600_000));
    let Some(o) = agent::wait(gw, run_id, timeout).await? else {
        return Err(CoreError::invalid("agent run was not found"));
    };
    let r = &o.result;
    Ok(match o.status {
        RunStatus::Completed => json!({
            "runId": run_id, "status": "ok", "endedAt": r.get("endedAt"), "stopReason": r.get("stopReason"),
            "terminalReply": {"disposition": "visible", "text": r.get("text")},
        }),
        RunStatus::Aborted => {
            json!({"runId": run_id, "status": "timeout", "endedAt": r.get("endedAt"), "stopReason": r.get("stopReason")})
        }
        RunStatus::Failed | RunStatus::Interrupted => {
            json!({"runId": run_id, "status": "error", "endedAt": r.get("endedAt"), "error": r.get("error")})
        }
        RunStatus::Queued | RunStatus::Running => json!({"runId": run_id, "status": "pending"}),
    })
}

/// `agent.identity.get {agentId?, sessionKey?}` → `{agentId, name, nameSource}`.
pub async fn agent_identity_get(gw: &Arc<Gateway>, params: Value) -> Result<Value, CoreError> {
    let agents = gw.agents.agents();
    let id = match (params.get("agentId").and_then(Value::as_str), params.get("sessionKey").and_then(Value::as_str)) {
        (Some(id), _) => id.to_owned(),
        (None, Some(key)) => resolve_session_key(gw, key, None)?.1,
        (None, None) => agents.default_id.clone(),
    };
    let Some(a) = agents.get(&id) else {
        return Err(CoreError::InvalidRequest {
            message: format!("unknown agent id \"{id}\""),
            details: Some(json!({"code": "UNKNOWN_AGENT_ID", "agentId": id})),
        });
    };
    Ok(match &a.name {
        Some(n) => json!({"agentId": a.id, "name": n, "nameSource": "config"}),
        None => json!({"agentId": a.id, "name": a.id, "nameSource": "default"}),
    })
}

/// `agents.list` → `{defaultId, mainKey, scope, agents:[{id, name?, model:{primary}}]}`.
pub async fn agents_list(gw: &Arc<Gateway>) -> Result<Value, CoreError> {
    let agents = gw.agents.agents();
    let list: Vec<Value> = agents
        .agents
        .iter()
        .map(|a| {
            let mut v = json!({"id": a.id, "kind": "agent", "model": {"primary": agents.model_for(a)}});
            if let Some(n) = &a.name {
                v["name"] = json!(n);
            }
            v
        })
        .collect();
    Ok(
        json!({"defaultId": agents.default_id, "ownership": "sole", "selectionRequired": false, "mainKey": "main", "scope": "per-sender", "agents": list}),
    )
}
