//! `NodeService`: the nodes (`role: "node"` clients such as `openclaw node run`) — who is
//! connected with what it announced, which nodes an operator approved, and the invokes waiting
//! for a node's answer.
//!
//! The flow follows upstream's captures (`../shared/contracts/openclaw-live.md` §11): a node is
//! admitted by the handshake (its device paired as usual), then its *capability surface* waits
//! for an operator: a node pairing request (`node.pair.requested`), approved with
//! `node.pair.approve` (`openclaw nodes approve <requestId>`, `clawgate nodes approve`). Until
//! then its `node.runnerInventory.update` is answered `UNAVAILABLE … run openclaw nodes approve
//! <id>` (the node retries by itself) and nothing may be invoked on it. `node.invoke` sends the
//! node a `node.invoke.request` event and waits for its `node.invoke.result`, bounded by the
//! invoke's timeout; the node leaving fails its pending invokes at once.
//!
//! Pending requests and approvals (with renames) survive a restart: they are kept as one small
//! bounded document in the store's key-value table (`nodes.pairing`), written before an
//! operator's decision is answered. What a node announced live (host stats, inventory) is not
//! kept: it announces it again when it reconnects.
//!
//! Presence: a node's socket is pinged every half `gateway.nodes.presenceTimeoutMs`; a node
//! silent (no frame, no pong) for the whole timeout is closed by the connection's keepalive,
//! which marks it disconnected here and fails its pending invokes at once.

use std::collections::HashMap;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use parking_lot::Mutex;
use serde_json::{Value, json};
use tokio::sync::oneshot;

use clawgate_protocol::connect::{ConnectParams, roles};
use clawgate_protocol::events::names as ev;
use clawgate_protocol::methods::nodes::{
    NodeEntry, NodeError, NodeEventParams, NodeEventResult, NodeInvokeRequestEvent, NodeInvokeResult,
    NodeInvokeResultParams, NodePairListResult, NodePairPending, NodePairResolved, NodePaired,
};

use clawgate_store::KvStore;

use crate::broadcast::ClientHandle;
use crate::error::CoreError;
use crate::events::Events;
use crate::gateway::Store;
use crate::time::now_ms;

/// Most invokes waiting for nodes at once (all nodes); past it `node.invoke` is refused.
pub const MAX_PENDING_INVOKES: usize = 256;
/// Most invokes waiting for one node at once.
pub const MAX_PENDING_INVOKES_PER_NODE: usize = 32;
/// The wait when `node.invoke` names no `timeoutMs`.
pub const DEFAULT_INVOKE_TIMEOUT_MS: u64 = 30_000;
/// The longest wait a caller may ask for.
pub const MAX_INVOKE_TIMEOUT_MS: u64 = 10 * 60 * 1000;
/// Most node pairing requests waiting for an operator.
pub const MAX_PENDING_PAIRINGS: usize = 64;
/// Most approved nodes kept; past it `node.pair.approve` is refused (remove one first).
pub const MAX_PAIRED_NODES: usize = 1024;
/// How long a node may stay silent (no frame, no pong) before it counts as gone, by default
/// (upstream: a ping every 25 s, 25 s for the pong).
pub const DEFAULT_PRESENCE_TIMEOUT_MS: u64 = 50_000;
/// The key-value entry holding pending requests and approvals.
const PAIRING_KEY: &str = "nodes.pairing";

/// The nodes: registry, approvals, pending invokes. Cheap to clone.
#[derive(Debug, Clone)]
pub struct NodeService {
    inner: Arc<Inner>,
}

#[derive(Debug)]
struct Inner {
    events: Events,
    state: Mutex<State>,
    /// Where pending requests and approvals are kept; `None` keeps them in memory only.
    store: Option<Store>,
    /// Writes of the pairing document, one at a time, each of the state as it is then (so the
    /// last write always holds the latest state).
    writes: tokio::sync::Mutex<()>,
    /// `gateway.nodes.presenceTimeoutMs`.
    presence_timeout_ms: AtomicU64,
}

/// The pairing document as stored.
#[derive(Debug, Default, serde::Serialize, serde::Deserialize)]
struct Persisted {
    pending: Vec<NodePairPending>,
    paired: Vec<PersistedPaired>,
}

#[derive(Debug, serde::Serialize, serde::Deserialize)]
struct PersistedPaired {
    #[serde(flatten)]
    paired: NodePaired,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    renamed: Option<String>,
}

#[derive(Debug, Default)]
struct State {
    /// Connected nodes by node id.
    live: HashMap<String, LiveNode>,
    /// Approved nodes by node id.
    approved: HashMap<String, Approved>,
    /// Pending pairing requests by request id.
    pending: HashMap<String, NodePairPending>,
    /// What a node that went away last announced, and when it left.
    gone: HashMap<String, (NodeEntry, i64)>,
    /// Invokes waiting for an answer, by invoke id.
    invokes: HashMap<String, PendingInvoke>,
}

#[derive(Debug)]
struct LiveNode {
    client: Arc<ClientHandle>,
    entry: NodeEntry,
}

#[derive(Debug, Clone)]
struct Approved {
    paired: NodePaired,
    /// A rename wins over the name the node announces.
    renamed: Option<String>,
}

#[derive(Debug)]
struct PendingInvoke {
    node_id: String,
    conn_id: String,
    command: String,
    tx: oneshot::Sender<Answer>,
}

/// What came back for an invoke.
#[derive(Debug)]
struct Answer {
    ok: bool,
    payload: Option<Value>,
    payload_json: Option<String>,
    error: Option<NodeError>,
}

/// Removes an invoke from the waiting set however its wait ends (answer, timeout, the caller
/// going away).
struct InvokeGuard<'a> {
    state: &'a Mutex<State>,
    id: String,
}

impl Drop for InvokeGuard<'_> {
    fn drop(&mut self) {
        self.state.lock().invokes.remove(&self.id);
    }
}

fn sorted(mut v: Vec<String>) -> Vec<String> {
    v.sort();
    v.dedup();
    v
}

/// The id a node is known by: its device id, else its `client.id` (as upstream).
pub fn node_id_of(client: &ClientHandle) -> String {
    client.device_id.clone().unwrap_or_else(|| client.client.0.clone())
}

impl NodeService {
    /// A registry announcing on `events`, keeping its approvals in memory only.
    pub fn new(events: Events) -> Self {
        Self::build(events, None)
    }

    /// A registry that keeps pending requests and approvals in `store`; call
    /// [`NodeService::restore`] before nodes connect.
    pub fn persistent(store: Store, events: Events) -> Self {
        Self::build(events, Some(store))
    }

    fn build(events: Events, store: Option<Store>) -> Self {
        Self {
            inner: Arc::new(Inner {
                events,
                state: Mutex::new(State::default()),
                store,
                writes: tokio::sync::Mutex::new(()),
                presence_timeout_ms: AtomicU64::new(DEFAULT_PRESENCE_TIMEOUT_MS),
            }),
        }
    }

    /// Sets how long a node may stay silent before it counts as gone (`gateway.nodes.
    /// presenceTimeoutMs`); connections made from now on use it.
    pub fn set_presence_timeout(&self, timeout: Duration) {
        let ms = u64::try_from(timeout.as_millis()).unwrap_or(u64::MAX).max(1);
        self.inner.presence_timeout_ms.store(ms, Ordering::Relaxed);
    }

    /// The keepalive of a connection, for a node: ping every half the presence timeout, and
    /// close when it was silent for the whole of it. `None` for other roles (the connection's
    /// own default applies).
    pub fn keepalive(&self, client: &ClientHandle) -> Option<(Duration, Duration)> {
        if client.role != roles::NODE {
            return None;
        }
        let timeout = Duration::from_millis(self.inner.presence_timeout_ms.load(Ordering::Relaxed));
        Some(((timeout / 2).max(Duration::from_millis(1)), timeout))
    }

    /// Loads the pending requests and approvals kept before a restart. A document that cannot
    /// be read is logged and left alone (nothing approved is invented).
    pub async fn restore(&self) -> Result<(), CoreError> {
        let Some(store) = &self.inner.store else { return Ok(()) };
        let Some(text) = store.get(PAIRING_KEY).await? else { return Ok(()) };
        let doc: Persisted = match serde_json::from_str(&text) {
            Ok(doc) => doc,
            Err(e) => {
                tracing::error!(error = %e, key = PAIRING_KEY, "stored node pairings unreadable; starting without them");
                return Ok(());
            }
        };
        let mut st = self.inner.state.lock();
        for p in doc.pending.into_iter().take(MAX_PENDING_PAIRINGS) {
            st.pending.insert(p.request_id.clone(), p);
        }
        for a in doc.paired.into_iter().take(MAX_PAIRED_NODES) {
            st.approved.insert(a.paired.node_id.clone(), Approved { paired: a.paired, renamed: a.renamed });
        }
        tracing::info!(pending = st.pending.len(), paired = st.approved.len(), "node pairings restored");
        Ok(())
    }

    /// Writes the pairing document as the state is now.
    async fn persist(&self) -> Result<(), CoreError> {
        let Some(store) = &self.inner.store else { return Ok(()) };
        let _turn = self.inner.writes.lock().await;
        let text = {
            let st = self.inner.state.lock();
            let mut pending: Vec<NodePairPending> = st.pending.values().cloned().collect();
            pending.sort_by(|a, b| a.ts.cmp(&b.ts).then_with(|| a.request_id.cmp(&b.request_id)));
            let mut paired: Vec<PersistedPaired> = st
                .approved
                .values()
                .map(|a| PersistedPaired { paired: a.paired.clone(), renamed: a.renamed.clone() })
                .collect();
            paired.sort_by(|a, b| a.paired.node_id.cmp(&b.paired.node_id));
            let doc = Persisted { pending, paired };
            serde_json::to_string(&doc).map_err(CoreError::internal_source)?
        };
        store.set(PAIRING_KEY, &text).await?;
        Ok(())
    }

    /// [`NodeService::persist`] in the background, for changes no caller waits on (a node's
    /// new request); a failure is logged.
    fn persist_later(&self) {
        if self.inner.store.is_none() {
            return;
        }
        let svc = self.clone();
        tokio::spawn(async move {
            if let Err(e) = svc.persist().await {
                tracing::warn!(error = %e.log_chain(), "keeping node pairing requests failed");
            }
        });
    }

    /// A client was admitted: a node is registered with what it announced, and asks for
    /// approval unless it has it. Other roles are ignored.
    pub fn connected(&self, client: Arc<ClientHandle>, params: &ConnectParams, ip: &str) {
        if client.role != roles::NODE {
            return;
        }
        let node_id = node_id_of(&client);
        let now = now_ms();
        let entry = NodeEntry {
            node_id: node_id.clone(),
            display_name: params.client.display_name.clone(),
            platform: Some(params.client.platform.clone()),
            version: Some(params.client.version.clone()),
            client_id: Some(params.client.id.clone()),
            client_mode: Some(params.client.mode.clone()),
            device_family: params.client.device_family.clone(),
            remote_ip: Some(ip.to_owned()),
            caps: sorted(params.caps.clone()),
            commands: sorted(params.commands.clone().unwrap_or_default()),
            path_env: params.path_env.clone(),
            permissions: params.permissions.clone(),
            connected_at_ms: Some(now),
            last_connected_at_ms: Some(now),
            last_active_at_ms: Some(now),
            connected: true,
            ..NodeEntry::default()
        };
        let (replaced, requested) = {
            let mut st = self.inner.state.lock();
            st.gone.remove(&node_id);
            let replaced = st.live.insert(node_id.clone(), LiveNode { client: client.clone(), entry: entry.clone() });
            let requested =
                if st.approved.contains_key(&node_id) { None } else { request_pairing(&mut st, &entry, now) };
            (replaced, requested)
        };
        if let Some(old) = replaced {
            // A node that reconnects replaces its older connection: what waited on that one fails.
            self.fail_connection(&node_id, &old.client.conn_id);
        }
        if let Some(request) = requested {
            self.persist_later();
            tracing::info!(node = %short(&node_id), request = %request.request_id, "node awaiting approval");
            self.inner.events.node_pair_requested(&json!(request));
        } else {
            tracing::info!(node = %short(&node_id), "node connected");
        }
    }

    /// A client left: a node's pending invokes fail at once.
    pub fn disconnected(&self, client: &ClientHandle) {
        if client.role != roles::NODE {
            return;
        }
        let node_id = node_id_of(client);
        {
            let mut st = self.inner.state.lock();
            let current = st.live.get(&node_id).is_some_and(|n| n.client.conn_id == client.conn_id);
            if current && let Some(node) = st.live.remove(&node_id) {
                let mut entry = node.entry;
                entry.connected = false;
                entry.connected_at_ms = None;
                st.gone.insert(node_id.clone(), (entry, now_ms()));
            }
        }
        self.fail_connection(&node_id, &client.conn_id);
    }

    fn fail_connection(&self, node_id: &str, conn_id: &str) {
        let failed: Vec<PendingInvoke> = {
            let mut st = self.inner.state.lock();
            let ids: Vec<String> =
                st.invokes.iter().filter(|(_, p)| p.conn_id == conn_id).map(|(id, _)| id.clone()).collect();
            ids.iter().filter_map(|id| st.invokes.remove(id)).collect()
        };
        for p in failed {
            tracing::info!(node = %short(node_id), command = %p.command, "node left with an invoke pending");
            let _ = p.tx.send(Answer {
                ok: false,
                payload: None,
                payload_json: None,
                error: Some(disconnected_error(&p.command)),
            });
        }
    }

    /// `node.pair.list`.
    pub fn pair_list(&self) -> NodePairListResult {
        let st = self.inner.state.lock();
        let mut pending: Vec<NodePairPending> = st.pending.values().cloned().collect();
        pending.sort_by_key(|p| p.ts);
        let mut paired: Vec<NodePaired> = st.approved.values().map(|a| a.paired.clone()).collect();
        paired.sort_by(|a, b| a.node_id.cmp(&b.node_id));
        NodePairListResult { pending, paired }
    }

    /// `node.pair.approve`: the node's announced surface is approved; the node (if connected)
    /// and pairing operators get `node.pair.resolved`.
    pub async fn approve(&self, request_id: &str) -> Result<NodePaired, CoreError> {
        let (paired, client) = {
            let mut st = self.inner.state.lock();
            let Some(request) = st.pending.get(request_id) else {
                return Err(CoreError::invalid("unknown requestId"));
            };
            if st.approved.len() >= MAX_PAIRED_NODES && !st.approved.contains_key(&request.node_id) {
                return Err(CoreError::invalid(format!(
                    "too many approved nodes ({MAX_PAIRED_NODES}); remove one with node.pair.remove first"
                )));
            }
            let request = st.pending.remove(request_id).ok_or_else(|| CoreError::invalid("unknown requestId"))?;
            let paired = NodePaired {
                node_id: request.node_id.clone(),
                display_name: request.display_name.clone(),
                platform: request.platform.clone(),
                version: request.version.clone(),
                caps: request.caps.clone(),
                commands: request.commands.clone(),
                approved_at_ms: now_ms(),
            };
            let renamed = st.approved.get(&request.node_id).and_then(|a| a.renamed.clone());
            st.approved.insert(request.node_id.clone(), Approved { paired: paired.clone(), renamed });
            let client = st.live.get(&request.node_id).map(|n| n.client.clone());
            (paired, client)
        };
        self.persist().await?;
        tracing::info!(node = %short(&paired.node_id), request = request_id, "node approved");
        self.resolved(request_id, &paired.node_id, "approved", client.as_deref());
        Ok(paired)
    }

    /// `node.pair.reject`.
    pub async fn reject(&self, request_id: &str) -> Result<String, CoreError> {
        let (node_id, client) = {
            let mut st = self.inner.state.lock();
            let request = st.pending.remove(request_id).ok_or_else(|| CoreError::invalid("unknown requestId"))?;
            let client = st.live.get(&request.node_id).map(|n| n.client.clone());
            (request.node_id, client)
        };
        self.persist().await?;
        self.resolved(request_id, &node_id, "rejected", client.as_deref());
        Ok(node_id)
    }

    fn resolved(&self, request_id: &str, node_id: &str, decision: &'static str, node: Option<&ClientHandle>) {
        let payload =
            json!(NodePairResolved { request_id: request_id.into(), node_id: node_id.into(), decision, ts: now_ms() });
        if let Some(node) = node {
            let _ = node.send_event(ev::NODE_PAIR_RESOLVED, &payload);
        }
        self.inner.events.node_pair_resolved(&payload);
    }

    /// `node.pair.remove`: forget a node's approval (and any request of it).
    pub async fn remove(&self, node_id: &str) -> Result<(), CoreError> {
        {
            let mut st = self.inner.state.lock();
            let had = st.approved.remove(node_id).is_some();
            let before = st.pending.len();
            st.pending.retain(|_, p| p.node_id != node_id);
            if !had && before == st.pending.len() {
                return Err(CoreError::invalid("unknown nodeId"));
            }
        }
        self.persist().await
    }

    /// `node.rename`: the display name of an approved node.
    pub async fn rename(&self, node_id: &str, display_name: &str) -> Result<String, CoreError> {
        let name = display_name.trim();
        if name.is_empty() {
            return Err(CoreError::invalid("displayName required"));
        }
        {
            let mut st = self.inner.state.lock();
            let approved = st.approved.get_mut(node_id).ok_or_else(|| CoreError::invalid("unknown nodeId"))?;
            approved.renamed = Some(name.to_owned());
            approved.paired.display_name = Some(name.to_owned());
        }
        self.persist().await?;
        Ok(name.to_owned())
    }

    /// `node.list`: connected nodes first, then approved ones that are away, by name.
    pub fn list(&self) -> Vec<NodeEntry> {
        let st = self.inner.state.lock();
        let mut ids: Vec<&String> = st.live.keys().chain(st.approved.keys()).chain(st.gone.keys()).collect();
        ids.sort();
        ids.dedup();
        let mut nodes: Vec<NodeEntry> = ids.into_iter().filter_map(|id| entry_of(&st, id)).collect();
        nodes.sort_by(|a, b| {
            b.connected
                .cmp(&a.connected)
                .then_with(|| a.display_name.cmp(&b.display_name))
                .then_with(|| a.node_id.cmp(&b.node_id))
        });
        nodes
    }

    /// `node.describe`.
    pub fn describe(&self, node_id: &str) -> Result<NodeEntry, CoreError> {
        let st = self.inner.state.lock();
        entry_of(&st, node_id).ok_or_else(|| CoreError::invalid("unknown nodeId"))
    }

    /// The approval message a node's publication gets until it is approved; `None` once it is.
    pub fn awaiting_approval(&self, node_id: &str) -> Option<String> {
        let st = self.inner.state.lock();
        if st.approved.contains_key(node_id) {
            return None;
        }
        Some(match st.pending.values().find(|p| p.node_id == node_id) {
            Some(p) => format!(
                "node capability surface is awaiting operator approval; run `openclaw nodes approve {}` (see `openclaw nodes pending`), then this node retries automatically",
                p.request_id
            ),
            None => "node runner inventory publication is not current; retry after pairing completes".into(),
        })
    }

    /// Store a push from a connected node (`node.skills.update`, `node.pluginTools.update`,
    /// `node.runnerInventory.update`); `unknown nodeId` when this connection is not the node's.
    pub fn update(&self, client: &ClientHandle, f: impl FnOnce(&mut NodeEntry)) -> Result<String, CoreError> {
        let node_id = node_id_of(client);
        let mut st = self.inner.state.lock();
        match st.live.get_mut(&node_id) {
            Some(node) if node.client.conn_id == client.conn_id => {
                f(&mut node.entry);
                node.entry.last_active_at_ms = Some(now_ms());
                Ok(node_id)
            }
            _ => Err(CoreError::invalid("unknown nodeId")),
        }
    }

    /// `node.event` from a node, as upstream's `handleNodeEvent` for what clawgate has:
    /// `node.host.stats` is kept as the node's host stats and relayed to operators as
    /// `node.hostStats`; `node.presence.activity` (from a node granted accessibility, as
    /// upstream) updates its last activity and is relayed as `node.presence`; anything else is
    /// acknowledged `unsupported_event`. A node not approved yet gets upstream's
    /// `PAIRING_CHANGED` (it retries once approved).
    pub fn event(&self, client: &ClientHandle, p: NodeEventParams) -> Result<NodeEventResult, CoreError> {
        let node_id = node_id_of(client);
        if !self.inner.state.lock().approved.contains_key(&node_id) {
            return Err(pairing_changed());
        }
        let payload = match (&p.payload_json, p.payload) {
            (Some(text), _) => serde_json::from_str::<Value>(text).ok(),
            (None, payload) => payload,
        };
        let answer = |handled: bool, reason: &str| NodeEventResult {
            ok: true,
            event: p.event.clone(),
            handled,
            reason: Some(reason.to_owned()),
        };
        let clients = self.inner.events.clients();
        match (p.event.as_str(), payload) {
            ("node.host.stats", Some(Value::Object(mut stats))) => {
                if !valid_host_stats(&stats) {
                    return Ok(answer(false, "invalid_payload"));
                }
                stats.insert("updatedAtMs".into(), json!(now_ms()));
                let host_stats = Value::Object(stats);
                let kept = host_stats.clone();
                if self.update(client, |e| e.host_stats = Some(kept)).is_err() {
                    return Ok(answer(false, "stale_connection"));
                }
                clients.broadcast(
                    ev::NODE_HOST_STATS,
                    &json!({"nodeId": node_id, "hostStats": host_stats}),
                    None,
                    true,
                );
                Ok(answer(true, "updated"))
            }
            ("node.presence.activity", Some(Value::Object(activity))) => {
                let Some(report) = presence_activity(&activity) else {
                    return Ok(answer(false, "invalid_payload"));
                };
                let allowed = {
                    let st = self.inner.state.lock();
                    st.live.get(&node_id).is_some_and(|n| {
                        n.client.conn_id == client.conn_id
                            && n.entry.permissions.as_ref().and_then(|p| p.get("accessibility")) == Some(&json!(true))
                    })
                };
                let now = now_ms();
                match report {
                    None => {
                        let mut cleared = false;
                        if self.update(client, |e| cleared = e.presence_updated_at_ms.take().is_some()).is_err() {
                            return Ok(answer(false, "stale_connection"));
                        }
                        if cleared {
                            let payload =
                                json!({"nodeId": node_id, "lastActiveAtMs": null, "presenceUpdatedAtMs": null});
                            clients.broadcast(ev::NODE_PRESENCE, &payload, None, true);
                        }
                        Ok(answer(true, if cleared { "cleared" } else { "already_clear" }))
                    }
                    Some(_) if !allowed => Ok(answer(false, "permission_required")),
                    Some(idle) => {
                        let idle_ms = i64::try_from(idle).unwrap_or(0).saturating_mul(1000);
                        let active = now.saturating_sub(idle_ms).max(0);
                        let updated = self.update(client, |e| e.presence_updated_at_ms = Some(now));
                        if updated.is_err() {
                            return Ok(answer(false, "stale_connection"));
                        }
                        // `update` stamps activity "now"; the report says how long input was idle.
                        {
                            let mut st = self.inner.state.lock();
                            if let Some(n) = st.live.get_mut(&node_id) {
                                n.entry.last_active_at_ms = Some(active);
                            }
                        }
                        let payload = json!({"nodeId": node_id, "lastActiveAtMs": active, "presenceUpdatedAtMs": now});
                        clients.broadcast(ev::NODE_PRESENCE, &payload, None, true);
                        Ok(answer(true, "updated"))
                    }
                }
            }
            ("node.host.stats" | "node.presence.activity", _) => Ok(answer(false, "invalid_payload")),
            _ => {
                self.update(client, |_| {})?;
                Ok(answer(false, "unsupported_event"))
            }
        }
    }

    /// `node.invoke`: send the command to the node and wait for its answer, at most
    /// `timeout_ms`.
    pub async fn invoke(
        &self,
        node_id: &str,
        command: &str,
        params: Option<&Value>,
        timeout_ms: Option<u64>,
        idempotency_key: &str,
    ) -> Result<NodeInvokeResult, CoreError> {
        if command == "system.execApprovals.get" || command == "system.execApprovals.set" {
            return Err(CoreError::invalid(
                "node.invoke does not allow system.execApprovals.*; use exec.approvals.node.*",
            ));
        }
        let timeout_ms = timeout_ms.unwrap_or(DEFAULT_INVOKE_TIMEOUT_MS).min(MAX_INVOKE_TIMEOUT_MS);
        let id = uuid::Uuid::new_v4().to_string();
        let (tx, rx) = oneshot::channel();
        let client = {
            let mut st = self.inner.state.lock();
            let Some(node) = st.live.get(node_id) else {
                return Err(if st.approved.contains_key(node_id) || st.gone.contains_key(node_id) {
                    not_connected()
                } else {
                    CoreError::invalid(format!("unknown nodeId: {node_id}"))
                });
            };
            if !st.approved.contains_key(node_id) {
                return Err(CoreError::Unavailable(format!(
                    "node {node_id} is awaiting operator approval (openclaw nodes approve / clawgate nodes approve)"
                )));
            }
            if !node.entry.commands.iter().any(|c| c == command) {
                return Err(CoreError::invalid(format!(
                    "node command not allowed: the node did not declare \"{command}\" (declared: {})",
                    node.entry.commands.join(", ")
                )));
            }
            let client = node.client.clone();
            if st.invokes.len() >= MAX_PENDING_INVOKES
                || st.invokes.values().filter(|p| p.node_id == node_id).count() >= MAX_PENDING_INVOKES_PER_NODE
            {
                return Err(CoreError::Unavailable("too many node invokes pending; retry later".into()));
            }
            st.invokes.insert(
                id.clone(),
                PendingInvoke {
                    node_id: node_id.to_owned(),
                    conn_id: client.conn_id.clone(),
                    command: command.to_owned(),
                    tx,
                },
            );
            client
        };
        let _guard = InvokeGuard { state: &self.inner.state, id: id.clone() };
        let request = NodeInvokeRequestEvent {
            id: id.clone(),
            node_id: node_id.to_owned(),
            command: command.to_owned(),
            params_json: params.map(|p| p.to_string()),
            timeout_ms,
            idempotency_key: idempotency_key.to_owned(),
        };
        if client.send_event(ev::NODE_INVOKE_REQUEST, &json!(request)).is_err() {
            return Err(not_connected());
        }
        let answer = match tokio::time::timeout(Duration::from_millis(timeout_ms), rx).await {
            Ok(Ok(answer)) => answer,
            Ok(Err(_)) => return Err(node_failed(Some(disconnected_error(command)))),
            Err(_) => {
                return Err(node_failed(Some(NodeError {
                    code: Some("TIMEOUT".into()),
                    message: Some("node invoke timed out".into()),
                })));
            }
        };
        if !answer.ok {
            return Err(node_failed(answer.error));
        }
        let payload = match &answer.payload_json {
            Some(text) => serde_json::from_str(text).unwrap_or_else(|_| json!({ "payloadJSON": text })),
            None => answer.payload.unwrap_or(Value::Null),
        };
        Ok(NodeInvokeResult {
            ok: true,
            node_id: node_id.to_owned(),
            command: command.to_owned(),
            payload,
            payload_json: answer.payload_json,
        })
    }

    /// `node.invoke.result` from a node: hand it to the waiting invoke. `Ok(false)` when none
    /// waits (late or unknown: ignored, as upstream).
    pub fn result(&self, client: &ClientHandle, p: NodeInvokeResultParams) -> Result<bool, CoreError> {
        if node_id_of(client) != p.node_id {
            return Err(CoreError::invalid("nodeId mismatch"));
        }
        let pending = {
            let mut st = self.inner.state.lock();
            match st.invokes.get(&p.id) {
                Some(w) if w.node_id == p.node_id && w.conn_id == client.conn_id => st.invokes.remove(&p.id),
                _ => None,
            }
        };
        let Some(pending) = pending else {
            tracing::debug!(id = %p.id, node = %short(&p.node_id), "late invoke result ignored");
            return Ok(false);
        };
        // Upstream's normalisation: a non-string `payloadJSON` is the payload itself.
        let (payload, payload_json) = match p.payload_json {
            Some(Value::String(s)) => (p.payload, Some(s)),
            Some(Value::Null) | None => (p.payload, None),
            Some(other) => (p.payload.or(Some(other)), None),
        };
        Ok(pending.tx.send(Answer { ok: p.ok, payload, payload_json, error: p.error }).is_ok())
    }

    /// How many invokes wait for an answer.
    pub fn pending_invokes(&self) -> usize {
        self.inner.state.lock().invokes.len()
    }
}

/// A new pairing request for a connected, unapproved node, unless one waits already (then
/// refreshed with what the node announced now) or too many wait.
fn request_pairing(st: &mut State, entry: &NodeEntry, now: i64) -> Option<NodePairPending> {
    if let Some(existing) = st.pending.values_mut().find(|p| p.node_id == entry.node_id) {
        existing.caps = entry.caps.clone();
        existing.commands = entry.commands.clone();
        existing.display_name = entry.display_name.clone();
        existing.remote_ip = entry.remote_ip.clone();
        return Some(existing.clone());
    }
    if st.pending.len() >= MAX_PENDING_PAIRINGS {
        tracing::warn!(node = %short(&entry.node_id), "too many node pairing requests pending; not recording another");
        return None;
    }
    let request = NodePairPending {
        request_id: uuid::Uuid::new_v4().to_string(),
        node_id: entry.node_id.clone(),
        display_name: entry.display_name.clone(),
        platform: entry.platform.clone(),
        version: entry.version.clone(),
        client_id: entry.client_id.clone(),
        client_mode: entry.client_mode.clone(),
        device_family: entry.device_family.clone(),
        remote_ip: entry.remote_ip.clone(),
        caps: entry.caps.clone(),
        commands: entry.commands.clone(),
        ts: now,
    };
    st.pending.insert(request.request_id.clone(), request.clone());
    Some(request)
}

/// A node's failed invoke as the caller sees it (upstream's
/// `respondUnavailableOnNodeInvokeErrorWithProvenance`): `UNAVAILABLE "<code>: <message>"` with
/// the node's own error passed through as `details.nodeError`.
fn node_failed(error: Option<NodeError>) -> CoreError {
    let code = error.as_ref().and_then(|e| e.code.clone()).filter(|c| !c.trim().is_empty());
    let text = error
        .as_ref()
        .and_then(|e| e.message.clone())
        .filter(|m| !m.trim().is_empty())
        .unwrap_or_else(|| "node invoke failed".into());
    let message = match code {
        Some(code) => format!("{}: {text}", code.trim()),
        None => text,
    };
    CoreError::UnavailableWith {
        message,
        details: json!({ "nodeError": error, "nodeCommandDispatched": true }),
        retryable: false,
    }
}

/// The invoke's node is not connected (upstream's `NOT_CONNECTED` shape): nothing was sent.
fn not_connected() -> CoreError {
    CoreError::UnavailableWith {
        message: "node not connected".into(),
        details: json!({
            "code": "NOT_CONNECTED",
            "nodeError": {"code": "NOT_CONNECTED", "message": "node not connected"},
            "nodeCommandDispatched": false,
        }),
        retryable: false,
    }
}

fn disconnected_error(command: &str) -> NodeError {
    NodeError { code: Some("DISCONNECTED".into()), message: Some(format!("node disconnected ({command})")) }
}

/// What an unapproved node's `node.event` gets (upstream: its connection has no current
/// pairing generation): retry once approved.
fn pairing_changed() -> CoreError {
    CoreError::UnavailableWith {
        message: "node pairing changed while invocation was active".into(),
        details: json!({ "code": "PAIRING_CHANGED" }),
        retryable: true,
    }
}

/// Upstream's `NodeHostStatsPayloadSchema`: a closed object with sane counts, free never above
/// total, disk values paired.
fn valid_host_stats(stats: &serde_json::Map<String, Value>) -> bool {
    const KEYS: &[&str] =
        &["cpuCount", "loadAverage", "memoryTotalBytes", "memoryFreeBytes", "diskTotalBytes", "diskAvailableBytes"];
    let uint = |k: &str| stats.get(k).and_then(Value::as_u64);
    if stats.keys().any(|k| !KEYS.contains(&k.as_str())) {
        return false;
    }
    let cpus_ok = uint("cpuCount").is_some_and(|n| (1..=4096).contains(&n));
    let memory_ok = matches!((uint("memoryTotalBytes"), uint("memoryFreeBytes")), (Some(t), Some(f)) if f <= t);
    let disk_ok = match (stats.get("diskTotalBytes"), stats.get("diskAvailableBytes")) {
        (None, None) => true,
        _ => matches!((uint("diskTotalBytes"), uint("diskAvailableBytes")), (Some(t), Some(a)) if a <= t),
    };
    let load_ok = match stats.get("loadAverage") {
        None => true,
        Some(Value::Array(l)) => {
            l.len() == 3 && l.iter().all(|x| x.as_f64().is_some_and(|x| (0.0..=100_000.0).contains(&x)))
        }
        Some(_) => false,
    };
    cpus_ok && memory_ok && disk_ok && load_ok
}

/// Upstream's `NodePresenceActivityPayloadSchema`: `{idleSeconds, source?, saturated?}` or
/// `{action: "clear"}`. `Some(None)` is a clear, `Some(Some(idle))` a report.
fn presence_activity(v: &serde_json::Map<String, Value>) -> Option<Option<u64>> {
    if v.len() == 1 && v.get("action").and_then(Value::as_str) == Some("clear") {
        return Some(None);
    }
    if v.keys().any(|k| !["idleSeconds", "source", "saturated"].contains(&k.as_str())) {
        return None;
    }
    let source_ok = v.get("source").is_none_or(|s| s == "app" || s == "system");
    let saturated_ok = v.get("saturated").is_none_or(Value::is_boolean);
    let idle = v.get("idleSeconds").and_then(Value::as_u64).filter(|n| *n <= 2_592_000)?;
    (source_ok && saturated_ok).then_some(Some(idle))
}

fn entry_of(st: &State, node_id: &str) -> Option<NodeEntry> {
    let approved = st.approved.get(node_id);
    let pending = st.pending.values().find(|p| p.node_id == node_id);
    let mut entry = if let Some(live) = st.live.get(node_id) {
        live.entry.clone()
    } else if let Some((gone, at)) = st.gone.get(node_id) {
        let mut e = gone.clone();
        e.last_disconnected_at_ms = Some(*at);
        e
    } else {
        let a = approved?;
        NodeEntry {
            node_id: node_id.to_owned(),
            display_name: a.paired.display_name.clone(),
            platform: a.paired.platform.clone(),
            version: a.paired.version.clone(),
            caps: a.paired.caps.clone(),
            commands: a.paired.commands.clone(),
            ..NodeEntry::default()
        }
    };
    if let Some(name) = approved.and_then(|a| a.renamed.clone()) {
        entry.display_name = Some(name);
    }
    entry.paired = approved.is_some();
    entry.pending_invokes = st.invokes.values().filter(|p| p.node_id == node_id).count();
    entry.approved_at_ms = approved.map(|a| a.paired.approved_at_ms);
    entry.pending_request_id = pending.map(|p| p.request_id.clone());
    entry.approval_state = match (approved.is_some(), pending.is_some()) {
        (true, true) => "pending-reapproval",
        (false, true) => "pending-approval",
        (true, false) => "approved",
        (false, false) => "unapproved",
    };
    Some(entry)
}

fn short(id: &str) -> &str {
    &id[..id.len().min(12)]
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::broadcast::{AuthKind, Broadcaster, ClientIdentity, Outbound, QueueState};
    use crate::presence::PresenceState;
    use tokio::sync::mpsc;

    fn node_params(commands: &[&str]) -> ConnectParams {
        serde_json::from_value(json!({
            "minProtocol": 4, "maxProtocol": 4,
            "client": {"id": "node-host", "displayName": "n1", "version": "1", "platform": "linux", "mode": "node"},
            "role": "node", "scopes": [], "caps": ["system"], "commands": commands,
        }))
        .expect("params")
    }

    fn node_client(conn: &str, device: &str) -> (Arc<ClientHandle>, mpsc::UnboundedReceiver<Outbound>) {
        let (tx, rx) = mpsc::unbounded_channel();
        let identity = ClientIdentity {
            conn_id: conn.into(),
            role: "node".into(),
            scopes: vec![],
            device_id: Some(device.into()),
            auth_kind: AuthKind::SharedSecret,
            client: ("node-host".into(), "node".into()),
            caps: vec![],
            access: None,
            rate: None,
        };
        (ClientHandle::with_queue(identity, tx, Arc::new(QueueState::default()), 1 << 20), rx)
    }

    fn service() -> NodeService {
        NodeService::new(Events::new(Arc::new(Broadcaster::default()), Arc::new(PresenceState::new(Value::Null))))
    }

    async fn next_request(rx: &mut mpsc::UnboundedReceiver<Outbound>) -> Value {
        loop {
            let out = rx.recv().await.expect("frame");
            if let Some(t) = out.text() {
                let v: Value = serde_json::from_str(&t).expect("json");
                if v["event"] == ev::NODE_INVOKE_REQUEST {
                    return v["payload"].clone();
                }
            }
        }
    }

    async fn approve_only_request(nodes: &NodeService) {
        let list = nodes.pair_list();
        assert_eq!(list.pending.len(), 1);
        nodes.approve(&list.pending[0].request_id).await.expect("approve");
    }

    #[tokio::test]
    async fn an_unapproved_node_is_listed_pending_and_cannot_be_invoked() {
        let nodes = service();
        let (c, _rx) = node_client("c1", "dev1");
        nodes.connected(c.clone(), &node_params(&["system.which"]), "127.0.0.1");
        let listed = nodes.list();
        assert_eq!(listed.len(), 1);
        assert_eq!(listed[0].approval_state, "pending-approval");
        assert!(listed[0].connected && !listed[0].paired);
        assert!(nodes.awaiting_approval("dev1").expect("waiting").contains("openclaw nodes approve"));
        let err = nodes.invoke("dev1", "system.which", None, Some(1000), "k").await.unwrap_err();
        assert!(err.to_string().contains("awaiting operator approval"), "{err}");
        approve_only_request(&nodes).await;
        assert!(nodes.awaiting_approval("dev1").is_none());
        assert_eq!(nodes.describe("dev1").expect("describe").approval_state, "approved");
    }

    #[tokio::test]
    async fn an_invoke_is_answered_with_the_nodes_result() {
        let nodes = service();
        let (c, mut rx) = node_client("c1", "dev1");
        nodes.connected(c.clone(), &node_params(&["system.which"]), "127.0.0.1");
        approve_only_request(&nodes).await;
        let n2 = nodes.clone();
        let call = tokio::spawn(async move {
            n2.invoke("dev1", "system.which", Some(&json!({"bins": ["sh"]})), Some(60_000), "k1").await
        });
        let req = next_request(&mut rx).await;
        assert_eq!(req["command"], "system.which");
        assert_eq!(req["paramsJSON"], r#"{"bins":["sh"]}"#);
        let params: NodeInvokeResultParams = serde_json::from_value(json!({
            "id": req["id"], "nodeId": "dev1", "ok": true, "payloadJSON": r#"{"bins":{"sh":"/bin/sh"}}"#,
        }))
        .expect("params");
        assert!(nodes.result(&c, params.clone()).expect("result"));
        let out = call.await.expect("join").expect("invoke");
        assert_eq!(out.payload, json!({"bins": {"sh": "/bin/sh"}}));
        assert_eq!(nodes.pending_invokes(), 0);
        // The same answer again is late: ignored.
        assert!(!nodes.result(&c, params).expect("late"));
    }

    #[tokio::test]
    async fn a_node_leaving_fails_its_pending_invoke_at_once() {
        let nodes = service();
        let (c, mut rx) = node_client("c1", "dev1");
        nodes.connected(c.clone(), &node_params(&["system.run"]), "127.0.0.1");
        approve_only_request(&nodes).await;
        let n2 = nodes.clone();
        let call = tokio::spawn(async move { n2.invoke("dev1", "system.run", None, Some(600_000), "k").await });
        next_request(&mut rx).await;
        nodes.disconnected(&c);
        let err = call.await.expect("join").unwrap_err();
        assert_eq!(err.to_string(), "DISCONNECTED: node disconnected (system.run)");
        let shape = err.to_error_shape("node.invoke");
        assert_eq!(
            shape.details,
            Some(json!({"nodeError": {"code": "DISCONNECTED", "message": "node disconnected (system.run)"},
                        "nodeCommandDispatched": true}))
        );
        assert_eq!(nodes.pending_invokes(), 0);
        let listed = nodes.describe("dev1").expect("still known");
        assert!(!listed.connected && listed.paired);
    }

    #[tokio::test(start_paused = true)]
    async fn an_invoke_nobody_answers_times_out() {
        let nodes = service();
        let (c, _rx) = node_client("c1", "dev1");
        nodes.connected(c, &node_params(&["system.which"]), "127.0.0.1");
        approve_only_request(&nodes).await;
        let err = nodes.invoke("dev1", "system.which", None, Some(50), "k").await.unwrap_err();
        assert_eq!(err.to_string(), "TIMEOUT: node invoke timed out");
        assert_eq!(nodes.pending_invokes(), 0);
    }

    #[tokio::test]
    async fn undeclared_commands_unknown_nodes_and_foreign_results_are_refused() {
        let nodes = service();
        let (c, _rx) = node_client("c1", "dev1");
        nodes.connected(c.clone(), &node_params(&["system.which"]), "127.0.0.1");
        approve_only_request(&nodes).await;
        let err = nodes.invoke("dev1", "system.run", None, None, "k").await.unwrap_err();
        assert!(err.to_string().contains("did not declare \"system.run\""), "{err}");
        let err = nodes.invoke("nope", "system.which", None, None, "k").await.unwrap_err();
        assert_eq!(err.to_string(), "unknown nodeId: nope");
        let p: NodeInvokeResultParams =
            serde_json::from_value(json!({"id": "x", "nodeId": "other", "ok": true})).expect("params");
        assert_eq!(nodes.result(&c, p).unwrap_err().to_string(), "nodeId mismatch");
        assert_eq!(nodes.rename("dev1", "  desk  ").await.expect("rename"), "desk");
        assert_eq!(nodes.describe("dev1").expect("d").display_name.as_deref(), Some("desk"));
        assert!(nodes.rename("nope", "x").await.is_err());
    }

    #[tokio::test]
    async fn a_nodes_error_is_passed_through_as_details_node_error() {
        let nodes = service();
        let (c, mut rx) = node_client("c1", "dev1");
        nodes.connected(c.clone(), &node_params(&["system.run"]), "127.0.0.1");
        approve_only_request(&nodes).await;
        let n2 = nodes.clone();
        let call = tokio::spawn(async move { n2.invoke("dev1", "system.run", None, Some(60_000), "k").await });
        let req = next_request(&mut rx).await;
        let p: NodeInvokeResultParams = serde_json::from_value(json!({
            "id": req["id"], "nodeId": "dev1", "ok": false,
            "error": {"code": "SYSTEM_RUN_DENIED", "message": "denied by policy"},
        }))
        .expect("params");
        assert!(nodes.result(&c, p).expect("result"));
        let shape = call.await.expect("join").unwrap_err().to_error_shape("node.invoke");
        assert_eq!(
            (shape.code.as_str(), shape.message.as_str()),
            ("UNAVAILABLE", "SYSTEM_RUN_DENIED: denied by policy")
        );
        assert_eq!(
            shape.details,
            Some(json!({"nodeError": {"code": "SYSTEM_RUN_DENIED", "message": "denied by policy"},
                        "nodeCommandDispatched": true}))
        );
        assert_eq!(shape.retryable, None, "upstream does not mark a node's failure retryable");
    }

    fn event(name: &str, payload: Value) -> NodeEventParams {
        serde_json::from_value(json!({"event": name, "payloadJSON": payload.to_string()})).expect("event params")
    }

    #[tokio::test]
    async fn node_events_are_kept_and_relayed_as_upstream_answers_them() {
        let nodes = service();
        let (c, _rx) = node_client("c1", "dev1");
        nodes.connected(c.clone(), &node_params(&[]), "127.0.0.1");
        let stats = json!({"cpuCount": 2, "memoryTotalBytes": 100, "memoryFreeBytes": 40});
        // Not approved yet: upstream's PAIRING_CHANGED, retryable.
        let shape = nodes.event(&c, event("node.host.stats", stats.clone())).unwrap_err().to_error_shape("node.event");
        assert_eq!(shape.message, "node pairing changed while invocation was active");
        assert_eq!(shape.details, Some(json!({"code": "PAIRING_CHANGED"})));
        assert_eq!(shape.retryable, Some(true));
        approve_only_request(&nodes).await;

        let out = nodes.event(&c, event("node.host.stats", stats)).expect("stats");
        assert_eq!((out.handled, out.reason.as_deref()), (true, Some("updated")));
        let kept = nodes.describe("dev1").expect("node").host_stats.expect("host stats");
        assert_eq!(kept["cpuCount"], 2);
        assert!(kept["updatedAtMs"].is_i64());
        let bad = json!({"cpuCount": 2, "memoryTotalBytes": 10, "memoryFreeBytes": 40});
        let out = nodes.event(&c, event("node.host.stats", bad)).expect("answered");
        assert_eq!((out.handled, out.reason.as_deref()), (false, Some("invalid_payload")));

        // Input activity needs the accessibility permission the node declared (it did not).
        let out = nodes.event(&c, event("node.presence.activity", json!({"idleSeconds": 5}))).expect("answered");
        assert_eq!((out.handled, out.reason.as_deref()), (false, Some("permission_required")));
        let out = nodes.event(&c, event("node.presence.activity", json!({"action": "clear"}))).expect("answered");
        assert_eq!((out.handled, out.reason.as_deref()), (true, Some("already_clear")));

        let out = nodes.event(&c, event("made.up", json!({}))).expect("answered");
        assert_eq!((out.handled, out.reason.as_deref()), (false, Some("unsupported_event")));
    }

    #[test]
    fn host_stats_follow_upstreams_schema() {
        let ok = |v: Value| valid_host_stats(v.as_object().expect("object"));
        assert!(ok(json!({"cpuCount": 2, "memoryTotalBytes": 10, "memoryFreeBytes": 4,
                          "diskTotalBytes": 9, "diskAvailableBytes": 3, "loadAverage": [0.5, 1, 2]})));
        assert!(!ok(json!({"cpuCount": 0, "memoryTotalBytes": 10, "memoryFreeBytes": 4})));
        assert!(!ok(json!({"cpuCount": 2, "memoryTotalBytes": 10, "memoryFreeBytes": 4, "diskTotalBytes": 9})));
        assert!(!ok(json!({"cpuCount": 2, "memoryTotalBytes": 10, "memoryFreeBytes": 4, "extra": 1})));
        assert!(!ok(json!({"cpuCount": 2, "memoryTotalBytes": 10, "memoryFreeBytes": 4, "loadAverage": [1, 2]})));
    }

    #[tokio::test]
    async fn pending_requests_approvals_and_renames_survive_a_restart() {
        let store = Store::open_in_memory().await.expect("store");
        let events = || Events::new(Arc::new(Broadcaster::default()), Arc::new(PresenceState::new(Value::Null)));
        let first = NodeService::persistent(store.clone(), events());
        let (a, _ra) = node_client("c1", "dev-a");
        let (b, _rb) = node_client("c2", "dev-b");
        first.connected(a.clone(), &node_params(&["system.which"]), "127.0.0.1");
        first.connected(b.clone(), &node_params(&["system.run"]), "127.0.0.1");
        let a_request = first.pair_list().pending.iter().find(|p| p.node_id == "dev-a").expect("a").request_id.clone();
        first.approve(&a_request).await.expect("approve a");
        first.rename("dev-a", "desk").await.expect("rename");

        // A new service on the same store: as after a restart, before any node reconnects.
        let second = NodeService::persistent(store.clone(), events());
        second.restore().await.expect("restore");
        let list = second.pair_list();
        assert_eq!(list.paired.len(), 1);
        assert_eq!(list.paired[0].node_id, "dev-a");
        assert_eq!(list.paired[0].display_name.as_deref(), Some("desk"));
        assert_eq!(list.paired[0].commands, vec!["system.which".to_owned()]);
        assert_eq!(list.pending.len(), 1, "b's request waited through the restart");
        assert_eq!(list.pending[0].node_id, "dev-b");
        let b_request = list.pending[0].request_id.clone();
        let listed = second.describe("dev-a").expect("a known while away");
        assert!(listed.paired && !listed.connected);
        assert_eq!(listed.display_name.as_deref(), Some("desk"));

        // b reconnects: the same request, not a second one; approving it is kept too.
        let (b2, _rb2) = node_client("c3", "dev-b");
        second.connected(b2, &node_params(&["system.run"]), "127.0.0.1");
        assert_eq!(second.pair_list().pending.len(), 1);
        assert_eq!(second.pair_list().pending[0].request_id, b_request);
        second.approve(&b_request).await.expect("approve b");
        second.remove("dev-a").await.expect("remove a");

        let third = NodeService::persistent(store, events());
        third.restore().await.expect("restore");
        let ids: Vec<String> = third.pair_list().paired.into_iter().map(|p| p.node_id).collect();
        assert_eq!(ids, vec!["dev-b".to_owned()]);
        assert!(third.pair_list().pending.is_empty());
    }

    #[test]
    fn only_nodes_get_the_presence_keepalive() {
        let nodes = service();
        nodes.set_presence_timeout(Duration::from_millis(3000));
        let (c, _rx) = node_client("c1", "dev1");
        assert_eq!(nodes.keepalive(&c), Some((Duration::from_millis(1500), Duration::from_millis(3000))));
        let (tx, _rx2) = mpsc::unbounded_channel();
        let identity = ClientIdentity {
            conn_id: "op".into(),
            role: "operator".into(),
            scopes: vec![],
            device_id: None,
            auth_kind: AuthKind::SharedSecret,
            client: ("cli".into(), "cli".into()),
            caps: vec![],
            access: None,
            rate: None,
        };
        let op = ClientHandle::with_queue(identity, tx, Arc::new(QueueState::default()), 1 << 20);
        assert_eq!(nodes.keepalive(&op), None);
    }
}
