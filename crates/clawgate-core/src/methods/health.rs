//! `health` and `status`.

use std::sync::Arc;

use serde::Deserialize;
use serde_json::{Value, json};

use clawgate_store::{DeviceStore, PairingStore};

use crate::dispatch::CallContext;
use crate::error::CoreError;
use crate::gateway::Gateway;

#[derive(Debug, Default, Deserialize)]
#[serde(rename_all = "camelCase")]
struct HealthParams {
    #[serde(default)]
    probe: Option<bool>,
}

/// `health {probe?}` → the health snapshot; `probe:true` refreshes it first. Extra params are
/// ignored, as upstream does. `health` needs no scope, so a caller without `operator.read` gets
/// the public form ([`crate::gateway::public_health`]): no database path, no session keys.
pub async fn health(gw: &Arc<Gateway>, ctx: &CallContext, params: Value) -> Result<Value, CoreError> {
    let p: HealthParams = serde_json::from_value(params).unwrap_or_default();
    let full = if p.probe == Some(true) { gw.refresh_health().await } else { gw.health_snapshot() };
    let mut snapshot =
        if ctx.client.has_scope(clawgate_protocol::scopes::READ) { full } else { crate::gateway::public_health(&full) };
    snapshot["modelRuntime"] = json!({"degraded": false, "pendingAgents": []});
    Ok(snapshot)
}

/// `status` → a summary of the gateway: version, uptime, connections, auth, pairing.
pub async fn status(gw: &Arc<Gateway>, ctx: &CallContext) -> Result<Value, CoreError> {
    let settings = gw.settings();
    let clients = gw.clients.clients();
    let nodes = clients.iter().filter(|c| c.role == "node").count();
    let pending = gw.store.list_pending().await?.len();
    let paired = gw.store.list_paired().await?.len();
    let mut out = json!({
        "ok": true,
        "version": gw.version,
        "bootId": gw.boot_id,
        "pid": std::process::id(),
        "startedAt": crate::time::rfc3339(gw.started_at_ms),
        "uptimeMs": gw.uptime().as_millis() as u64,
        "listen": settings.listen_addr,
        "authMode": settings.auth_mode.as_str(),
        "connections": {"total": clients.len(), "operators": clients.len() - nodes, "nodes": nodes},
        "pairing": {"pending": pending, "paired": paired},
        "sessions": {"count": 0},
        "channels": {},
        "heartbeat": null,
        "modelRuntime": {"degraded": false, "pendingAgents": []},
    });
    if ctx.client.has_scope(clawgate_protocol::scopes::ADMIN) {
        out["stateDir"] = json!(settings.state_dir.display().to_string());
        out["configPath"] = json!(settings.config_path.display().to_string());
    }
    Ok(out)
}
