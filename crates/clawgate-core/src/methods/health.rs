//! `health` and `status`.

use serde_json::Value;

use clawgate_protocol::methods::health::*;
use clawgate_protocol::methods::system::LastHeartbeatResult;
use clawgate_store::{DeviceStore, PairingStore, SessionQuery, SessionStore};

use crate::agent::AgentService;
use crate::dispatch::CallContext;
use crate::error::CoreError;
use crate::health::{HealthService, channel_summary, health_result, public_health};
use crate::heartbeat_runner::HeartbeatService;
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
    let snapshot =
        if ctx.client.has_scope_across_sessions(clawgate_protocol::scopes::READ) { full } else { public_health(&full) };
    health_result(snapshot)
}

/// `status` → a summary of the gateway: version, uptime, connections, auth, pairing, sessions
/// (counted in the store), runs in flight, channel accounts, the heartbeat, the store's health and
/// the ComfyUI workers.
pub async fn status(
    health: &HealthService,
    pairing: &PairingService,
    heartbeat: &HeartbeatService,
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
    let store = health.store();
    let now = crate::time::now_ms();
    // The count is the cheap query that tells whether the store still reads.
    let counted = store.count_sessions().await;
    let recent = store.list_sessions(&SessionQuery { limit: 5, ..SessionQuery::default() }).await.unwrap_or_default();
    let store_health = match (&counted, store.degraded()) {
        (_, Some(d)) => StatusStore { ok: false, reason: Some(d.reason) },
        (Err(e), None) => {
            tracing::warn!(error = %e, "status: the store did not answer a session count");
            StatusStore { ok: false, reason: Some("storage: the store did not answer a query".into()) }
        }
        (Ok(_), None) => StatusStore { ok: true, reason: None },
    };
    let (channels, order, _) = channel_summary(&health.channels().status().await);
    let agents = health.agents().agents();
    let heartbeat_seconds =
        agents.get(&agents.default_id).and_then(|a| a.heartbeat.as_ref()).map_or(0, |h| h.every_ms.div_ceil(1000));
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
        sessions: StatusSessions {
            count: counted.unwrap_or(0),
            recent: recent
                .into_iter()
                .map(|s| RecentSession { age: (now - s.updated_at_ms).max(0), updated_at: s.updated_at_ms, key: s.key })
                .collect(),
        },
        runs: StatusRuns { in_flight: health.agents().active_count() },
        channels: match channels {
            Value::Object(m) => m,
            _ => Default::default(),
        },
        channel_order: serde_json::from_value(order).unwrap_or_default(),
        heartbeat: LastHeartbeatResult(heartbeat.last()),
        heartbeat_seconds,
        store: store_health,
        worker_pools: StatusWorkerPools { comfy: health.comfy().workers().iter().map(|w| w.summary()).collect() },
        model_runtime: ModelRuntime::default(),
        restart_required: health.config().restart_required(),
        state_dir: admin.then(|| settings.state_dir.display().to_string()),
        config_path: admin.then(|| settings.config_path.display().to_string()),
        cluster: Some(health.cluster().status().await),
    })
}
