//! `chat.send`, `chat.history`, `chat.abort`, `chat.inject`.

use std::sync::Arc;

use serde::Deserialize;
use serde_json::{Value, json};

use clawgate_store::{EntryStatus, RunKind, SessionStore, TranscriptRole, TranscriptStore};

use crate::agent::{self, RunRequest, Submitted, transcript};
use crate::dispatch::CallContext;
use crate::error::{CoreError, parse_params};
use crate::gateway::Gateway;
use crate::time::now_ms;

/// Normalise a session key to `agent:<agentId>:<rest>` (bare keys belong to the given or
/// default agent), and return the agent id it names.
pub fn resolve_session_key(gw: &Gateway, key: &str, agent_id: Option<&str>) -> Result<(String, String), CoreError> {
    let key = key.trim();
    if key.is_empty() || key.len() > 512 {
        return Err(CoreError::invalid("sessionKey must be 1 to 512 characters"));
    }
    if let Some(rest) = key.strip_prefix("agent:") {
        let (id, tail) = rest.split_once(':').unwrap_or((rest, "main"));
        if id.is_empty() || tail.is_empty() {
            return Err(CoreError::invalid(format!("invalid session key \"{key}\": expected agent:<agentId>:<key>")));
        }
        return Ok((format!("agent:{id}:{tail}"), id.to_owned()));
    }
    let agent = agent_id.map(str::to_owned).unwrap_or_else(|| gw.agents.agents().default_id.clone());
    Ok((format!("agent:{agent}:{key}"), agent))
}

fn client_tag(ctx: &CallContext) -> Option<Value> {
    Some(json!({"id": ctx.client.client.0, "mode": ctx.client.client.1}))
}

/// `chat.send {sessionKey, message, idempotencyKey, agentId?, timeoutMs?, …}` → one ack
/// `{runId, status:"started"}`; the reply streams as `chat`/`agent` events. A repeated
/// idempotency key starts nothing: `in_flight` while running, `ok` after.
pub async fn chat_send(gw: &Arc<Gateway>, ctx: &CallContext, params: Value) -> Result<Value, CoreError> {
    let Some(key) = params.get("sessionKey").and_then(Value::as_str) else {
        return Err(CoreError::InvalidRequest {
            message: "session mutation target is unavailable".into(),
            details: Some(json!({"code": "SESSION_MUTATION_TARGET_REQUIRED", "method": "chat.send"})),
        });
    };
    let Some(message) = params.get("message").and_then(Value::as_str) else {
        return Err(CoreError::invalid("invalid chat.send params: must have required property 'message'"));
    };
    let Some(run_id) = params.get("idempotencyKey").and_then(Value::as_str).filter(|k| !k.is_empty()) else {
        return Err(CoreError::invalid("invalid chat.send params: must have required property 'idempotencyKey'"));
    };
    let (session_key, agent_id) = resolve_session_key(gw, key, params.get("agentId").and_then(Value::as_str))?;
    let timeout =
        params.get("timeoutMs").and_then(Value::as_u64).filter(|t| *t > 0).map(std::time::Duration::from_millis);
    let req = RunRequest {
        run_id: run_id.to_owned(),
        session_key,
        agent_id,
        message: message.to_owned(),
        kind: RunKind::Chat,
        timeout,
        extra_system: None,
        client: client_tag(ctx),
    };
    let status = match agent::submit(gw, req).await? {
        Submitted::Started => "started",
        Submitted::InFlight => "in_flight",
        Submitted::Done(_) => "ok",
    };
    Ok(json!({"runId": run_id, "status": status}))
}

#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase")]
struct HistoryParams {
    session_key: String,
    #[serde(default)]
    agent_id: Option<String>,
    #[serde(default)]
    limit: Option<usize>,
    /// Return entries before this transcript seq (paging backwards).
    #[serde(default)]
    pending_before: Option<i64>,
}

/// `chat.history {sessionKey, limit? (1..1000)}` → the last messages, oldest first. Reads one
/// window of the transcript by index; never the whole transcript.
pub async fn chat_history(gw: &Arc<Gateway>, params: Value) -> Result<Value, CoreError> {
    let p: HistoryParams = parse_params("chat.history", params)?;
    let limit = p.limit.unwrap_or(200);
    if !(1..=1000).contains(&limit) {
        return Err(CoreError::invalid("invalid chat.history params: limit must be between 1 and 1000"));
    }
    let (key, agent_id) = resolve_session_key(gw, &p.session_key, p.agent_id.as_deref())?;
    let agents = gw.agents.agents();
    let model = agents.get(&agent_id).map(|a| agents.model_for(a)).unwrap_or_default();
    let (provider, model_id) = model.split_once('/').map(|(a, b)| (a.to_owned(), b.to_owned())).unwrap_or_default();
    let defaults = json!({"modelProvider": provider, "model": model_id});
    let Some(session) = gw.store.get_session(&key).await? else {
        return Ok(json!({
            "sessionKey": key, "messages": [], "pendingInputs": {"items": [], "total": 0}, "hasMore": false,
            "totalMessages": 0, "defaults": defaults,
            "sessionInfo": {"key": key, "agentId": agent_id, "archived": false, "pinned": false, "updatedAt": null},
        }));
    };
    let rows = gw.store.tail(&session.session_id, limit, p.pending_before).await?;
    let total = session.message_count;
    let first_seq = rows.first().map(|e| e.seq);
    let has_more = first_seq.is_some_and(|s| s > 1) && (rows.len() as u64) < total;
    let in_flight = gw.agents.active_runs(&key);
    let mut out = json!({
        "sessionKey": key,
        "sessionId": session.session_id,
        "messages": rows.iter().map(transcript::history_message).collect::<Vec<_>>(),
        "pendingInputs": {"items": [], "total": 0},
        "hasMore": has_more,
        "totalMessages": total,
        "defaults": defaults,
        "sessionInfo": super::sessions::session_info(&session),
    });
    if has_more && let Some(s) = first_seq {
        out["nextBefore"] = json!(s);
    }
    if let Some(run) = in_flight.first() {
        out["inFlightRun"] = json!({"runId": run});
    }
    Ok(out)
}

#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
struct AbortParams {
    session_key: String,
    #[serde(default)]
    agent_id: Option<String>,
    #[serde(default)]
    run_id: Option<String>,
    #[serde(default)]
    #[allow(dead_code)]
    preserve_side_runs: Option<bool>,
}

/// `chat.abort {sessionKey, runId?}` → `{ok, aborted, runIds}`; the run ends with a `chat`
/// `aborted` event carrying the partial text.
pub async fn chat_abort(gw: &Arc<Gateway>, params: Value) -> Result<Value, CoreError> {
    let p: AbortParams = parse_params("chat.abort", params)?;
    let (key, _) = resolve_session_key(gw, &p.session_key, p.agent_id.as_deref())?;
    let run_ids = agent::abort(gw, &key, p.run_id.as_deref(), "rpc").await;
    for id in &run_ids {
        let _ = agent::wait(gw, id, std::time::Duration::from_secs(5)).await;
    }
    Ok(json!({"ok": true, "aborted": !run_ids.is_empty(), "runIds": run_ids}))
}

#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
struct InjectParams {
    session_key: String,
    #[serde(default)]
    agent_id: Option<String>,
    message: String,
    #[serde(default)]
    label: Option<String>,
}

/// `chat.inject {sessionKey, message, label?}` → appends an assistant message without running
/// the model; `chat` final with `runId: "inject-<messageId>"`.
pub async fn chat_inject(gw: &Arc<Gateway>, params: Value) -> Result<Value, CoreError> {
    let p: InjectParams = parse_params("chat.inject", params)?;
    if p.message.is_empty() {
        return Err(CoreError::invalid("invalid chat.inject params: message must not be empty"));
    }
    if p.label.as_ref().is_some_and(|l| l.chars().count() > 100) {
        return Err(CoreError::invalid("invalid chat.inject params: label must be at most 100 characters"));
    }
    let (key, agent_id) = resolve_session_key(gw, &p.session_key, p.agent_id.as_deref())?;
    let session = gw.store.ensure_session(&key, &agent_id, now_ms()).await?;
    let message_id = uuid::Uuid::new_v4().to_string();
    let mut msg = transcript::assistant_message(&p.message, now_ms());
    msg["__openclaw"] = json!({"id": message_id, "injected": true, "label": p.label});
    let run_id = format!("inject-{message_id}");
    let entry = gw
        .store
        .append(&session.session_id, TranscriptRole::Assistant, &msg, Some(&run_id), EntryStatus::Final, now_ms())
        .await?;
    gw.broadcast_session_message(&key, &transcript::history_message(&entry));
    gw.broadcast_run_event(
        "chat",
        &key,
        &json!({"runId": run_id, "sessionKey": key, "agentId": agent_id, "seq": 1, "state": "final", "message": msg}),
        false,
    );
    Ok(json!({"ok": true, "messageId": message_id}))
}
