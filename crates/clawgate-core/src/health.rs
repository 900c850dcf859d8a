//! `HealthService`: what the gateway says about itself — the health snapshot (refreshed on a
//! timer and on `health {probe:true}`), its public projection, and the `hello-ok` snapshot an
//! admitted client starts from.
//!
//! Built with what it reads (the store for session counts, the settings, the config service for
//! the hash and the watcher's state, [`Events`] for presence and the `health` broadcast), so the
//! handlers of `health`, `status` and the WebSocket handshake need no gateway.

use std::sync::Arc;
use std::time::{Duration, Instant};

use parking_lot::RwLock;
use serde_json::{Value, json};

use clawgate_protocol::hello::{self, Features, HelloAuth, HelloOk, Policy, ServerInfo, Snapshot};
use clawgate_protocol::{events, methods, scopes};
use clawgate_store::{SessionQuery, SessionStore};

use crate::agent::AgentService;
use crate::channels::ChannelService;
use crate::comfy::ComfyService;
use crate::config_service::ConfigService;
use crate::events::Events;
use crate::gateway::Store;
use crate::handshake::Admission;
use crate::settings::{GatewaySettings, SharedSettings};
use crate::time::now_ms;

/// Who this gateway process is: fixed for its lifetime.
#[derive(Debug, Clone)]
pub struct GatewayInfo {
    /// clawgate's version.
    pub version: String,
    /// Changes on every start.
    pub boot_id: String,
    /// Start time (ms since epoch).
    pub started_at_ms: i64,
    started: Instant,
}

impl GatewayInfo {
    /// A process starting now with a fresh boot id.
    pub fn starting_now(version: &str) -> Self {
        Self {
            version: version.to_owned(),
            boot_id: uuid::Uuid::new_v4().to_string(),
            started_at_ms: now_ms(),
            started: Instant::now(),
        }
    }

    /// Time since start.
    pub fn uptime(&self) -> Duration {
        self.started.elapsed()
    }
}

/// The health snapshot and the gateway's self-description. Cheap to clone: clones share the
/// snapshot.
#[derive(Debug, Clone)]
pub struct HealthService {
    inner: Arc<HealthInner>,
}

#[derive(Debug)]
struct HealthInner {
    info: GatewayInfo,
    settings: SharedSettings,
    /// Session counts and the most recent sessions.
    store: Store,
    /// The config hash (admins see it in `hello-ok`) and whether the watcher runs.
    config: ConfigService,
    /// Presence for `hello-ok`, the `health` broadcast.
    events: Events,
    /// The agents (and their heartbeats) and the runs in flight.
    agents: AgentService,
    /// Channel accounts and their connection state.
    channels: ChannelService,
    /// ComfyUI workers (`status.workerPools`).
    comfy: ComfyService,
    /// The gateways sharing the store (`status.cluster`).
    cluster: crate::cluster::Cluster,
    /// The last snapshot (`null` until the first refresh) and its `health` answers, encoded.
    current: RwLock<Current>,
}

/// A snapshot and the wire text of the `health` result made from it, in full and in public form,
/// replaced together on each refresh. `health` is every client's most frequent call: answering
/// it from this text spares a clone of the snapshot's tree and its encoding per call (callgrind:
/// 30 % of the call's instructions).
#[derive(Debug)]
struct Current {
    snapshot: Value,
    /// `None` when the snapshot cannot be an answer (not an object); the handler then says why.
    full: Option<Arc<str>>,
    public: Option<Arc<str>>,
}

impl Current {
    fn of(snapshot: Value) -> Self {
        let encode = |snapshot: Value| {
            let value = health_result(snapshot).ok()?.into_value();
            serde_json::to_string(&value).ok().map(Arc::from)
        };
        let public = encode(public_health(&snapshot));
        Self { full: encode(snapshot.clone()), public, snapshot }
    }
}

/// The `health` result made from a snapshot (full or public).
pub fn health_result(snapshot: Value) -> Result<methods::health::HealthResult, crate::error::CoreError> {
    let snapshot = match snapshot {
        Value::Object(map) => map,
        // No snapshot yet: the answer is `modelRuntime` alone, as it always was.
        Value::Null => Default::default(),
        other => {
            return Err(crate::error::CoreError::internal(format!("health snapshot is not an object: {other}")));
        }
    };
    Ok(methods::health::HealthResult { snapshot, model_runtime: methods::health::ModelRuntime::default() })
}

/// The parts of the gateway `status` and `health` report on beside the store and the config.
#[derive(Debug, Clone)]
pub struct Observed {
    /// Agents, heartbeats, runs in flight.
    pub agents: AgentService,
    /// Channel accounts.
    pub channels: ChannelService,
    /// ComfyUI workers.
    pub comfy: ComfyService,
    /// The gateways sharing the store.
    pub cluster: crate::cluster::Cluster,
}

impl HealthService {
    /// A service with no snapshot yet (call [`HealthService::refresh`] before serving).
    pub fn new(
        info: GatewayInfo,
        settings: SharedSettings,
        store: Store,
        config: ConfigService,
        events: Events,
        observed: Observed,
    ) -> Self {
        let Observed { agents, channels, comfy, cluster } = observed;
        Self {
            inner: Arc::new(HealthInner {
                info,
                settings,
                store,
                config,
                events,
                agents,
                channels,
                comfy,
                cluster,
                current: RwLock::new(Current::of(Value::Null)),
            }),
        }
    }

    /// The store this service reads (session counts, its health).
    pub fn store(&self) -> &Store {
        &self.inner.store
    }

    /// The agents and runs this service reports on.
    pub fn agents(&self) -> &AgentService {
        &self.inner.agents
    }

    /// The channel accounts this service reports on.
    pub fn channels(&self) -> &ChannelService {
        &self.inner.channels
    }

    /// The config service (what a restart would change).
    pub fn config(&self) -> &ConfigService {
        &self.inner.config
    }

    /// The ComfyUI workers this service reports on.
    pub fn comfy(&self) -> &ComfyService {
        &self.inner.comfy
    }

    /// The gateways sharing the store.
    pub fn cluster(&self) -> &crate::cluster::Cluster {
        &self.inner.cluster
    }

    /// Version, boot id, start time.
    pub fn info(&self) -> &GatewayInfo {
        &self.inner.info
    }

    /// The settings in force.
    pub fn settings(&self) -> Arc<GatewaySettings> {
        self.inner.settings.get()
    }

    /// The clients and presence this service reports on.
    pub fn events(&self) -> &Events {
        &self.inner.events
    }

    /// The current health snapshot (same shape as the `health` result), in full: only for
    /// callers holding `operator.read` (see [`public_health`] for everyone else).
    pub fn snapshot(&self) -> Value {
        self.inner.current.read().snapshot.clone()
    }

    /// The wire text of the `health` result for the current snapshot (`full` for callers that
    /// may see it whole, else its [`public_health`] form); `None` when the snapshot cannot be
    /// one (the handler reports it).
    pub fn result_text(&self, full: bool) -> Option<Arc<str>> {
        let current = self.inner.current.read();
        if full { current.full.clone() } else { current.public.clone() }
    }

    /// The health snapshot as `client_scopes` may see it: in full for an operator with
    /// `operator.read`, else the [`public_health`] form.
    pub fn snapshot_for(&self, role: &str, client_scopes: &[String]) -> Value {
        let full = self.snapshot();
        if role == clawgate_protocol::connect::roles::OPERATOR && scopes::satisfied(scopes::READ, client_scopes) {
            full
        } else {
            public_health(&full)
        }
    }

    /// Recompute the health snapshot (the `HealthSnapshot` shape of the schema); returns it.
    /// `default_agent_id` comes from the agents in force.
    pub async fn refresh(&self, default_agent_id: &str) -> Value {
        let started = Instant::now();
        let now = now_ms();
        let store = &self.inner.store;
        let path = self.settings().state_dir.join("clawgate.db").display().to_string();
        let count = store.count_sessions().await.unwrap_or(0);
        let recent = recent_sessions(store, None, now).await;
        let sessions = json!({"path": path, "count": count, "recent": recent});
        let agents_cfg = self.inner.agents.agents();
        let mut agents = Vec::new();
        for agent in &agents_cfg.agents {
            // One agent: its sessions are all of them (no second query).
            let (count, recent) = if agents_cfg.agents.len() == 1 {
                (count, recent.clone())
            } else {
                let query =
                    SessionQuery { agent_id: Some(agent.id.clone()), include_archived: true, ..Default::default() };
                let n = store.list_sessions(&query).await.map(|l| l.len() as u64).unwrap_or(0);
                (n, recent_sessions(store, Some(&agent.id), now).await)
            };
            let mut entry = json!({
                "agentId": agent.id,
                "isDefault": agent.id == default_agent_id,
                "heartbeat": heartbeat_entry(agent.heartbeat.as_ref()),
                "sessions": {"path": path, "count": count, "recent": recent},
            });
            if let Some(name) = &agent.name {
                entry["name"] = json!(name);
            }
            agents.push(entry);
        }
        let heartbeat_seconds = agents_cfg
            .get(default_agent_id)
            .and_then(|a| a.heartbeat.as_ref())
            .map_or(0, |h| h.every_ms.div_ceil(1000));
        let (channels, order, labels) = channel_summary(&self.inner.channels.status().await);
        let snapshot = json!({
            "ok": true,
            "ts": now,
            "durationMs": started.elapsed().as_millis() as u64,
            "configReload": {"hotReloadStatus": if self.inner.config.watching() { "active" } else { "disabled" }},
            "channels": channels,
            "channelOrder": order,
            "channelLabels": labels,
            "heartbeatSeconds": heartbeat_seconds,
            "defaultAgentId": default_agent_id,
            "agents": agents,
            "sessions": sessions,
        });
        let current = Current::of(snapshot.clone());
        *self.inner.current.write() = current;
        snapshot
    }

    /// Refresh the snapshot and broadcast it with a new health version.
    pub async fn refresh_and_publish(&self, default_agent_id: &str) {
        let snapshot = self.refresh(default_agent_id).await;
        let events = &self.inner.events;
        let version = events.presence().bump_health();
        events.health(&snapshot, version);
    }

    /// Build the `hello-ok` for an admitted client.
    pub fn hello_ok(&self, conn_id: &str, admission: &Admission) -> HelloOk {
        let settings = self.settings();
        let info = &self.inner.info;
        let presence = self.inner.events.presence();
        let admin = admission.scopes.iter().any(|s| s == scopes::ADMIN);
        let cfg = self.inner.config.current();
        HelloOk {
            kind: "hello-ok".into(),
            protocol: clawgate_protocol::PROTOCOL_VERSION,
            server: ServerInfo {
                version: info.version.clone(),
                build_id: Some(format!("clawgate-{}", info.version)),
                boot_id: info.boot_id.clone(),
                // The Control UI compares its own build with the gateway's unless the gateway
                // says it serves a UI from a configured directory (`gateway.controlUi.root`):
                // then whatever build is there is the one meant, never a stale bundle.
                control_ui_build_source: if cfg.config.gateway.control_ui.enabled
                    && cfg.config.gateway.control_ui.root.is_some()
                {
                    "configured".into()
                } else {
                    "bundled".into()
                },
                conn_id: conn_id.to_owned(),
            },
            features: Features {
                methods: methods::advertised().into_iter().map(str::to_owned).collect(),
                events: events::EMITTED.iter().map(|s| s.to_string()).collect(),
                capabilities: hello::CAPABILITIES.iter().map(|s| s.to_string()).collect(),
            },
            snapshot: Snapshot {
                presence: presence.list(),
                health: self.snapshot_for(&admission.role, &admission.scopes),
                state_version: presence.state_version(),
                uptime_ms: info.uptime().as_millis() as u64,
                suspension: json!({"phase": "accepting"}),
                session_defaults: Some({
                    // The agent a bare session key belongs to: clients (the SDK, the UIs) build
                    // full keys from it.
                    let default_agent = self.inner.agents.agents().default_id.clone();
                    json!({"defaultAgentId": default_agent, "mainKey": "main",
                           "mainSessionKey": format!("agent:{default_agent}:main")})
                }),
                auth_mode: Some(settings.auth_mode.as_str().to_owned()),
                applied_config_hash: admin.then(|| cfg.hash.clone()),
                config_path: admin.then(|| settings.config_path.display().to_string()),
                state_dir: admin.then(|| settings.state_dir.display().to_string()),
            },
            auth: HelloAuth {
                method: admission.method.to_owned(),
                role: admission.role.clone(),
                scopes: admission.scopes.clone(),
                device_token: admission.device_token.as_ref().map(|(t, _)| t.clone()),
                issued_at_ms: admission.device_token.as_ref().map(|(_, at)| *at),
            },
            policy: Policy::standard(settings.tick_interval_ms),
        }
    }
}

/// The most recent sessions (of one agent, or all) as the snapshot lists them.
async fn recent_sessions(store: &Store, agent_id: Option<&str>, now: i64) -> Vec<Value> {
    let query = SessionQuery { limit: 5, agent_id: agent_id.map(str::to_owned), ..SessionQuery::default() };
    let sessions = store.list_sessions(&query).await.unwrap_or_default();
    sessions
        .iter()
        .map(|s| json!({"key": s.key, "updatedAt": s.updated_at_ms.max(0), "age": (now - s.updated_at_ms).max(0)}))
        .collect()
}

/// An agent's `heartbeat` in the snapshot (every field the schema requires, also when off).
fn heartbeat_entry(spec: Option<&crate::heartbeat::HeartbeatSpec>) -> Value {
    match spec {
        Some(h) => json!({
            "enabled": true,
            "every": h.every,
            "everyMs": h.every_ms,
            "prompt": h.prompt,
            "target": h.target,
            "ackMaxChars": h.ack_max_chars,
        }),
        None => json!({
            "enabled": false,
            "every": "disabled",
            "everyMs": null,
            "prompt": crate::heartbeat::DEFAULT_PROMPT,
            "target": crate::heartbeat::DEFAULT_TARGET,
            "ackMaxChars": crate::heartbeat::DEFAULT_ACK_MAX_CHARS,
        }),
    }
}

/// The snapshot's `channels`, `channelOrder` and `channelLabels` from `channels.status`'s
/// answer: per channel whether it is configured, running and connected, its last error, and
/// each account's state (configured, running, connected, lastError, healthState).
pub fn channel_summary(status: &Value) -> (Value, Value, Value) {
    let order = status.get("channelOrder").cloned().unwrap_or_else(|| json!([]));
    let labels = status.get("channelLabels").cloned().unwrap_or_else(|| json!({}));
    let mut channels = serde_json::Map::new();
    for ch in order.as_array().into_iter().flatten().filter_map(Value::as_str) {
        let list = status["channelAccounts"][ch].as_array().cloned().unwrap_or_default();
        let mut accounts = serde_json::Map::new();
        for a in &list {
            let id = a["accountId"].as_str().unwrap_or("default").to_owned();
            let mut entry = json!({
                "configured": a["configured"].as_bool().unwrap_or(false),
                "running": a["running"].as_bool().unwrap_or(false),
                "connected": a["connected"].as_bool().unwrap_or(false),
                "lastError": a.get("lastError").cloned().unwrap_or(Value::Null),
            });
            if let Some(state) = a.get("healthState") {
                entry["healthState"] = state.clone();
            }
            accounts.insert(id, entry);
        }
        let any = |k: &str| accounts.values().any(|a| a[k] == true);
        let last_error = accounts.values().find_map(|a| a["lastError"].as_str().map(str::to_owned));
        channels.insert(
            ch.to_owned(),
            json!({
                "configured": any("configured"),
                "running": any("running"),
                "connected": any("connected"),
                "lastError": last_error,
                "accounts": accounts,
            }),
        );
    }
    (Value::Object(channels), order, labels)
}

/// The health snapshot with private data left out, for callers without `operator.read` (probes,
/// nodes, scope-less clients): the same shape and schema (`sessions.path` is a string, `recent` a
/// list) but no database path, no session keys (they carry chat-platform user ids), no agent or
/// channel account details.
///
/// Class closed: *state leaking through an exempt method*. `health` is callable without scopes
/// and its event goes to every client, so everything in it is public unless projected here; the
/// projection is an allowlist, so a field added to the snapshot later stays private by default.
pub fn public_health(full: &Value) -> Value {
    let mut out = json!({
        "ok": full.get("ok").cloned().unwrap_or(json!(true)),
        "channels": {},
        "channelOrder": [],
        "channelLabels": {},
        "agents": [],
        "sessions": {"path": "", "count": full["sessions"]["count"].as_u64().unwrap_or(0), "recent": []},
    });
    for key in ["ts", "durationMs", "configReload", "heartbeatSeconds", "defaultAgentId"] {
        if let Some(v) = full.get(key) {
            out[key] = v.clone();
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_channel_summary_keeps_each_accounts_state_and_the_first_error() {
        let status = json!({
            "channelOrder": ["telegram", "slack"],
            "channelLabels": {"telegram": "Telegram", "slack": "Slack"},
            "channelAccounts": {
                "telegram": [
                    {"accountId": "default", "configured": true, "running": true, "connected": true, "lastError": null,
                     "healthState": "healthy"},
                    {"accountId": "ops", "configured": true, "running": false, "connected": false,
                     "lastError": "getMe: 401 Unauthorized", "healthState": "stopped"},
                ],
                "slack": [{"accountId": "default", "configured": false, "running": false, "connected": false}],
            },
        });
        let (channels, order, labels) = channel_summary(&status);
        assert_eq!(order, json!(["telegram", "slack"]));
        assert_eq!(labels["slack"], "Slack");
        let tg = &channels["telegram"];
        assert_eq!((&tg["configured"], &tg["running"], &tg["connected"]), (&json!(true), &json!(true), &json!(true)));
        assert_eq!(tg["lastError"], "getMe: 401 Unauthorized");
        assert_eq!(tg["accounts"]["ops"]["healthState"], "stopped");
        assert_eq!(channels["slack"]["configured"], false);
        assert_eq!(channels["slack"]["lastError"], Value::Null);
    }
}
