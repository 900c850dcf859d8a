//! `system-presence`, `system-event`, `last-heartbeat`.

use serde_json::json;

use clawgate_protocol::methods::system::*;

use crate::agent::AgentService;
use crate::dispatch::CallContext;
use crate::error::CoreError;
use crate::events::Events;
use crate::heartbeat_runner::{HeartbeatService, main_session};

/// `system-presence` → the presence entries.
pub async fn system_presence(events: &Events, _: SystemPresenceParams) -> Result<SystemPresenceResult, CoreError> {
    Ok(SystemPresenceResult(events.presence().list()))
}

/// `system-event {text}` → updates the caller's presence entry and broadcasts `presence`.
pub async fn system_event(
    events: &Events,
    ctx: &CallContext,
    p: SystemEventParams,
) -> Result<SystemEventResult, CoreError> {
    if p.text.trim().is_empty() {
        return Err(CoreError::invalid("invalid system-event params: text must not be empty"));
    }
    let now = crate::time::now_ms();
    let presence = events.presence();
    if !presence.contains(&ctx.client.conn_id) {
        let entry = json!({"clientId": "system-event", "roles": [ctx.client.role], "reason": "event", "ts": now});
        presence.upsert(&ctx.client.conn_id, entry);
    }
    let version = presence
        .update(&ctx.client.conn_id, |e| {
            e["text"] = json!(p.text);
            e["ts"] = json!(now);
            e["lastActivityAt"] = json!(now);
            e["reason"] = json!(p.reason.clone().filter(|r| !r.is_empty()).unwrap_or_else(|| "event".into()));
            if let Some(tags) = &p.tags {
                e["tags"] = json!(tags.iter().filter(|t| !t.is_empty()).collect::<Vec<_>>());
            }
        })
        .ok_or_else(|| CoreError::invalid("caller has no presence entry"))?;
    events.presence_changed(version);
    Ok(SystemEventResult { ok: true, ts: now })
}

/// `last-heartbeat` → the last heartbeat event, or `null` when none ran since the start.
pub async fn last_heartbeat(
    heartbeat: &HeartbeatService,
    _: LastHeartbeatParams,
) -> Result<LastHeartbeatResult, CoreError> {
    Ok(LastHeartbeatResult(heartbeat.last()))
}

/// `set-heartbeats {enabled}` → pauses or resumes the interval heartbeats.
pub async fn set_heartbeats(
    heartbeat: &HeartbeatService,
    p: SetHeartbeatsParams,
) -> Result<SetHeartbeatsResult, CoreError> {
    Ok(SetHeartbeatsResult { ok: true, enabled: heartbeat.set_enabled(p.enabled) })
}

/// `wake {mode, text, sessionKey?, agentId?}` → queues the text as a system event in the session
/// (default: the agent's main session); `now` also starts a heartbeat turn there.
pub async fn wake(heartbeat: &HeartbeatService, agents: &AgentService, p: WakeParams) -> Result<WakeResult, CoreError> {
    let text = p.text.trim();
    if text.is_empty() {
        return Err(CoreError::invalid("invalid wake params: text must not be empty"));
    }
    let (session_key, agent_id) = match p.session_key.as_deref().map(str::trim).filter(|k| !k.is_empty()) {
        Some(key) => crate::methods::chat::resolve_session_key(agents, key, p.agent_id.as_deref())?,
        None => {
            let config = agents.agents();
            let agent = match p.agent_id.as_deref() {
                Some(id) if config.get(id).is_some() => id.to_owned(),
                Some(id) => return Err(CoreError::invalid(format!("invalid wake params: unknown agent \"{id}\""))),
                None => config.default_id.clone(),
            };
            (main_session(&agent), agent)
        }
    };
    let now = p.mode == WakeMode::Now;
    let outcome = heartbeat.wake(&agent_id, &session_key, text, now, "wake").await?;
    Ok(WakeResult { ok: true, mode: p.mode, event_outcome: outcome.as_str().to_owned() })
}
