//! `health` and `status`.

use serde_json::Value;

use clawgate_protocol::methods::health::*;
use clawgate_protocol::methods::system::LastHeartbeatResult;
use clawgate_store::{DeviceStore, PairingStore};

use crate::agent::AgentService;
use crate::dispatch::CallContext;
use crate::error::CoreError;
use crate::health::{HealthService, public_health};
use crate::pairing::PairingService;

/// `health {probe?}` → the health snapshot; `probe:true` refreshes it first. Extra params are
/// ignored, as upstream does. `health` needs no scope, so a caller without `operator.read` gets
/// the public form ([`public_health`]): no database path, no session keys.
pub async fn health(
    health: &HealthService,
    agents: &AgentService,
    ctx: &CallContext,
    p: HealthParams,
) -> Result<HealthResult, CoreError> {
    let full = if p.probe == Some(true) {
        let default_agent = agents.agents().default_id.clone();
        health.refresh(&default_agent).await
    } else {
        health.snapshot()
    };
    let snapshot = if ctx.client.has_scope(clawgate_protocol::scopes::READ) { full } else { public_health(&full) };
    let snapshot = match snapshot {
        Value::Object(map) => map,
        // No snapshot yet: the answer is `modelRuntime` alone, as it always was.
        Value::Null => Default::default(),
        other => return Err(CoreError::internal(format!("health snapshot is not an object: {other}"))),
    };
    Ok(HealthResult { snapshot, model_runtime: ModelRuntime::default() })
}

/// `status` → a summary of the gateway: version, uptime, connections, auth, pairing.
pub async fn status(
    health: &HealthService,
    pairing: &PairingService,
    ctx: &CallContext,
    _: StatusParams,
) -> Result<StatusResult, CoreError> {
    let settings = health.settings();
    let info = health.info();
    let clients = health.events().clients().clients();
    let nodes = clients.iter().filter(|c| c.role == "node").count();
    let pending = pairing.store().list_pending().await?.len();
    let paired = pairing.store().list_paired().await?.len();
    let admin = ctx.client.has_scope(clawgate_protocol::scopes::ADMIN);
    Ok(StatusResult {
        ok: true,
        version: info.version.clone(),
        boot_id: info.boot_id.clone(),
        pid: std::process::id(),
        started_at: crate::time::rfc3339(info.started_at_ms),
        uptime_ms: info.uptime().as_millis() as u64,
        listen: settings.listen_addr.clone(),
        auth_mode: settings.auth_mode.as_str().to_owned(),
        connections: StatusConnections { total: clients.len(), operators: clients.len() - nodes, nodes },
        pairing: StatusPairing { pending, paired },
        sessions: StatusSessions::default(),
        channels: Default::default(),
        heartbeat: LastHeartbeatResult,
        model_runtime: ModelRuntime::default(),
        state_dir: admin.then(|| settings.state_dir.display().to_string()),
        config_path: admin.then(|| settings.config_path.display().to_string()),
    })
}
