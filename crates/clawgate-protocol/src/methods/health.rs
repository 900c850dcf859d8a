//! `health` and `status`: params and results.

use serde::{Deserialize, Deserializer, Serialize};
use serde_json::{Map, Value};

use super::AnyParams;
use super::system::LastHeartbeatResult;

/// `health {probe?}`. Upstream ignores params it cannot read here, and so does clawgate: any
/// value decodes, and one that is not `{probe?: bool, …}` reads as no params.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct HealthParams {
    /// Refresh the snapshot before answering.
    pub probe: Option<bool>,
}

impl<'de> Deserialize<'de> for HealthParams {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        #[derive(Deserialize)]
        struct Strict {
            #[serde(default)]
            probe: Option<bool>,
        }
        let value = Value::deserialize(deserializer)?;
        Ok(serde_json::from_value::<Strict>(value).map(|s| HealthParams { probe: s.probe }).unwrap_or_default())
    }
}

/// The `modelRuntime` block of `health` and `status`. clawgate has no degraded model runtime
/// to report yet: always `{degraded: false, pendingAgents: []}`.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct ModelRuntime {
    /// Whether the model runtime is degraded.
    pub degraded: bool,
    /// Agents waiting on it.
    pub pending_agents: Vec<String>,
}

/// `health` → the health snapshot (the `hello-ok.snapshot.health` shape, built by the gateway's
/// health monitor) plus `modelRuntime`.
#[derive(Debug, Clone, PartialEq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct HealthResult {
    /// The snapshot's fields; typing them is the health monitor's step.
    #[serde(flatten)]
    pub snapshot: Map<String, Value>,
    /// The model runtime's state.
    pub model_runtime: ModelRuntime,
}

impl HealthResult {
    /// The result as its JSON value, the same as `serde_json::to_value` gives (a later
    /// `modelRuntime` wins over one in the snapshot, as with `flatten`), without encoding the
    /// snapshot's tree a second time: `health` is the most frequent call of every client.
    pub fn into_value(self) -> Value {
        let mut map = self.snapshot;
        let runtime = Value::Object(Map::from_iter([
            ("degraded".to_owned(), Value::Bool(self.model_runtime.degraded)),
            (
                "pendingAgents".to_owned(),
                Value::Array(self.model_runtime.pending_agents.into_iter().map(Value::String).collect()),
            ),
        ]));
        map.insert("modelRuntime".to_owned(), runtime);
        Value::Object(map)
    }
}

/// `status` takes no params and ignores any.
pub type StatusParams = AnyParams;

/// Connection counts in `status`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
pub struct StatusConnections {
    /// All connections.
    pub total: usize,
    /// Operator connections.
    pub operators: usize,
    /// Node connections.
    pub nodes: usize,
}

/// Pairing counts in `status`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
pub struct StatusPairing {
    /// Requests waiting for an operator.
    pub pending: usize,
    /// Paired devices.
    pub paired: usize,
}

/// One recent session in `status` and the health snapshot.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct RecentSession {
    /// The session key.
    pub key: String,
    /// Last update (ms since the epoch).
    pub updated_at: i64,
    /// Time since the last update (ms).
    pub age: i64,
}

/// Session counts in `status`.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct StatusSessions {
    /// Sessions stored (archived ones included).
    pub count: u64,
    /// The most recently updated (at most 5), newest first.
    pub recent: Vec<RecentSession>,
}

/// Agent runs in `status`.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct StatusRuns {
    /// Runs queued or running in this process now.
    pub in_flight: usize,
}

/// The store's health in `status`.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct StatusStore {
    /// Reads and writes work: a cheap query succeeded and no write has failed for a storage
    /// reason since the last one that succeeded.
    pub ok: bool,
    /// Why not (`"disk full: …"` for the last failed write, or the failed query), safe to show.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub reason: Option<String>,
}

/// `status.cluster` (clawgate's own): the gateways sharing the store and the leases they hold.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct StatusCluster {
    /// The answering gateway's id (its boot id).
    pub id: String,
    /// `single` (SQLite: this gateway alone) or `shared` (PostgreSQL: possibly several).
    pub mode: String,
    /// `cluster.heartbeatMs`.
    pub heartbeat_ms: u64,
    /// `cluster.leaseTtlMs`.
    pub lease_ttl_ms: u64,
    /// Every registered gateway, the answering one included.
    pub gateways: Vec<StatusClusterGateway>,
    /// The leases held now.
    pub leases: Vec<StatusClusterLease>,
    /// Why the registry could not be read, if it could not.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
}

/// One gateway in `status.cluster.gateways`.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct StatusClusterGateway {
    /// Its boot id.
    pub id: String,
    /// Where it listens.
    pub addr: String,
    /// Its version.
    pub version: String,
    /// When it started (ms since the epoch).
    pub started_at_ms: i64,
    /// Heard from within the lease ttl.
    pub alive: bool,
    /// Since its last heartbeat (ms).
    pub seen_ago_ms: i64,
    /// It is the gateway answering.
    #[serde(rename = "self")]
    pub is_self: bool,
}

/// One lease in `status.cluster.leases`.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct StatusClusterLease {
    /// What it guards (`channel:telegram:default`).
    pub name: String,
    /// The holding gateway's id.
    pub holder: String,
    /// Until it expires unless renewed (ms); `null` on a single gateway, whose leases never
    /// expire.
    pub expires_in_ms: Option<i64>,
}

/// Worker pools in `status` (upstream's `workerPools`): clawgate's are the ComfyUI workers.
#[derive(Debug, Clone, Default, PartialEq, Serialize)]
pub struct StatusWorkerPools {
    /// Every configured ComfyUI worker: online (`healthy`), its queue, our jobs on it.
    pub comfy: Vec<super::comfy::ComfyWorker>,
}

/// `status` → a summary of the gateway.
#[derive(Debug, Clone, PartialEq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct StatusResult {
    /// Always `true`.
    pub ok: bool,
    /// clawgate's version.
    pub version: String,
    /// This process's boot id.
    pub boot_id: String,
    /// Process id.
    pub pid: u32,
    /// Start time (RFC 3339).
    pub started_at: String,
    /// Uptime (ms).
    pub uptime_ms: u64,
    /// The listen address.
    pub listen: String,
    /// The auth mode (`token`, `password`, `none`, …).
    pub auth_mode: String,
    /// Connection counts.
    pub connections: StatusConnections,
    /// Pairing counts.
    pub pairing: StatusPairing,
    /// Session counts.
    pub sessions: StatusSessions,
    /// Agent runs.
    pub runs: StatusRuns,
    /// Per channel: configured, running, connected, last error and each account's state.
    pub channels: Map<String, Value>,
    /// Channels in display order.
    pub channel_order: Vec<String>,
    /// The last heartbeat (`null` until one ran).
    pub heartbeat: LastHeartbeatResult,
    /// The default agent's heartbeat interval in seconds (0: it does not beat).
    pub heartbeat_seconds: u64,
    /// The store's health.
    pub store: StatusStore,
    /// The ComfyUI workers.
    pub worker_pools: StatusWorkerPools,
    /// The model runtime's state.
    pub model_runtime: ModelRuntime,
    /// Config keys changed since the start that take effect only after a restart of clawgate
    /// (empty when the running process is what the config file says).
    pub restart_required: Vec<String>,
    /// The state directory (admins only).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub state_dir: Option<String>,
    /// The config file (admins only).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub config_path: Option<String>,
    /// The gateways sharing the store (clawgate's own; absent when unknown).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub cluster: Option<StatusCluster>,
}

#[cfg(test)]
mod into_value_tests {
    use super::*;

    #[test]
    fn into_value_is_what_serde_gives() {
        let snapshot =
            serde_json::json!({"ok": true, "ts": 5, "channels": {"a": {"x": [1, 2]}}, "modelRuntime": "old"});
        let Value::Object(snapshot) = snapshot else { unreachable!() };
        for runtime in [ModelRuntime::default(), ModelRuntime { degraded: true, pending_agents: vec!["main".into()] }] {
            let r = HealthResult { snapshot: snapshot.clone(), model_runtime: runtime };
            assert_eq!(r.clone().into_value(), serde_json::to_value(&r).unwrap());
        }
    }
}
