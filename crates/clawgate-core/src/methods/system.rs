//! `system-presence`, `system-event`, `last-heartbeat`.

use serde_json::json;

use clawgate_protocol::methods::system::*;

use crate::dispatch::CallContext;
use crate::error::CoreError;
use crate::events::Events;

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

/// `last-heartbeat` → the last heartbeat event, or `null`: clawgate runs no heartbeat agent yet,
/// so this is honestly `null`.
pub async fn last_heartbeat(_: LastHeartbeatParams) -> Result<LastHeartbeatResult, CoreError> {
    Ok(LastHeartbeatResult)
}
