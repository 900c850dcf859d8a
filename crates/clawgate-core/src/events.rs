//! `Events`: the one handle services use to tell connected clients something.
//!
//! Services hold an [`Events`] (cheap to clone) instead of the whole gateway: every broadcast
//! goes through a method here that names the event and builds its payload in one place, and the
//! scope guard, `seq` and slow-consumer policy stay in [`Broadcaster`].
//!
//! Events about shared state (a session's runs and messages, cron, pairing, ComfyUI jobs,
//! approvals: [`StateEvent`]) take two steps, kept apart: [`Events::deliver`] hands one to this
//! gateway's clients, and — when several gateways share a PostgreSQL store — the relay
//! ([`crate::event_relay`]) publishes it for the others, whose relay hands it to
//! [`Events::deliver_relayed`], the same delivery. Events about this gateway itself (tick,
//! presence, health, heartbeat, shutdown, config) are only delivered.

use std::borrow::Cow;
use std::sync::{Arc, OnceLock};

use serde_json::{Value, json};

use clawgate_protocol::connect::ConnectParams;
use clawgate_protocol::events::names as ev;
use clawgate_protocol::events::pairing::{DevicePairRequested, DevicePairResolved, PairDecision};
use clawgate_protocol::frames::StateVersion;
use clawgate_protocol::{close, scopes};
use clawgate_store::PairingRequest;

use crate::broadcast::{Broadcaster, ClientHandle};
use crate::event_relay::{EventRelay, RelayStatus};
use crate::presence::PresenceState;
use crate::time::now_ms;

/// Broadcasts to connected clients. Clones share the same clients and presence.
#[derive(Debug, Clone)]
pub struct Events {
    clients: Arc<Broadcaster>,
    presence: Arc<PresenceState>,
    /// Where events about shared state also go when other gateways share the store; empty on
    /// SQLite (one gateway). Shared by every clone, so setting it once reaches every service.
    relay: Arc<OnceLock<EventRelay>>,
}

impl Events {
    /// Events over these clients and presence state.
    pub fn new(clients: Arc<Broadcaster>, presence: Arc<PresenceState>) -> Self {
        Self { clients, presence, relay: Arc::default() }
    }

    /// The connected clients.
    pub fn clients(&self) -> &Arc<Broadcaster> {
        &self.clients
    }

    /// Presence and health versions.
    pub fn presence(&self) -> &Arc<PresenceState> {
        &self.presence
    }

    /// `tick` to everyone (dropped for slow clients).
    pub fn tick(&self) {
        self.clients.broadcast(ev::TICK, &json!({"ts": now_ms()}), None, true);
    }

    /// `shutdown` to everyone, then every socket closed with 1012.
    pub fn shutdown(&self, reason: &str) {
        self.clients.broadcast(ev::SHUTDOWN, &json!({"reason": reason}), None, false);
        self.clients.close_where(|_| true, close::SERVICE_RESTART, close::REASON_SERVICE_RESTART);
    }

    /// The presence list with its state version.
    pub fn presence_changed(&self, version: StateVersion) {
        self.clients.broadcast(ev::PRESENCE, &json!({"presence": self.presence.list()}), Some(version), true);
    }

    /// A health snapshot: the full form to `operator.read` holders, the public form to everyone
    /// else (each client gets exactly one `health` event).
    pub fn health(&self, snapshot: &Value, version: StateVersion) {
        let public = crate::health::public_health(snapshot);
        self.clients.broadcast_split(ev::HEALTH, scopes::READ, snapshot, &public, Some(version), true);
    }

    /// A `heartbeat` event: in full (with the reply's `message`) to `operator.read` holders,
    /// without it to everyone else (the event has no scope guard, the reply is private).
    pub fn heartbeat(&self, event: &Value) {
        let mut public = event.clone();
        if let Some(m) = public.as_object_mut() {
            m.remove("message");
        }
        self.clients.broadcast_split(ev::HEARTBEAT, scopes::READ, event, &public, None, true);
    }

    /// An `agent` or `chat` event of a run to operator.read clients (contract §7.2). Tool events
    /// go only to clients that declared the `tool-events` cap or subscribed to the session (tool
    /// arguments and results can be large and private to the conversation).
    pub fn run_event(&self, event: &str, session_key: &str, payload: &Value, drop_if_slow: bool) {
        self.emit(StateEvent::Run {
            event: event.into(),
            session_key: session_key.into(),
            payload: Cow::Borrowed(payload),
            drop_if_slow,
        });
    }

    /// `session.message` to the clients that subscribed to this session's messages.
    pub fn session_message(&self, session_key: &str, message: &Value) {
        self.emit(StateEvent::SessionMessage { session_key: session_key.into(), message: Cow::Borrowed(message) });
    }

    /// `sessions.changed` to the clients that called `sessions.subscribe`.
    pub fn session_changed(&self, session_key: &str, reason: &str) {
        self.emit(StateEvent::SessionChanged { session_key: session_key.into(), reason: reason.into(), ts: now_ms() });
    }

    /// `config.changed` to everyone allowed to hear it: what a config edit or reload applied.
    pub fn config_changed(&self, payload: &Value) {
        self.clients.broadcast(ev::CONFIG_CHANGED, payload, None, false);
    }

    /// Register an admitted client and announce its presence. Short-lived tool connections (the
    /// CLI, backends, probes) get no presence entry, as upstream: announcing every one of them
    /// to every client would make connection storms quadratic.
    pub fn client_connected(&self, client: Arc<ClientHandle>, params: &ConnectParams, ip: &str) {
        if matches!(params.client.mode.as_str(), "cli" | "backend" | "probe") {
            self.clients.add(client);
            return;
        }
        let entry = crate::presence::client_entry(
            params,
            client.device_id.as_deref(),
            &client.role,
            &client.scopes,
            ip,
            now_ms(),
        );
        let key = client.conn_id.clone();
        self.clients.add(client);
        let version = self.presence.upsert(&key, entry);
        self.presence_changed(version);
    }

    /// Forget a client and announce it.
    pub fn client_disconnected(&self, conn_id: &str) {
        if self.clients.remove(conn_id).is_some()
            && let Some(version) = self.presence.remove(conn_id)
        {
            self.presence_changed(version);
        }
    }

    /// A `cron` event to operators with `operator.read`; `null` fields left out.
    pub fn cron(&self, mut payload: Value) {
        if let Some(obj) = payload.as_object_mut() {
            obj.retain(|_, v| !v.is_null());
        }
        self.emit(StateEvent::Payload { kind: PayloadEvent::Cron, payload: Cow::Owned(payload) });
    }

    /// `device.pair.requested` to pairing operators: a new or refreshed request.
    pub fn pair_requested(&self, r: &PairingRequest, silent: bool) {
        let payload = pair_requested_payload(r, silent);
        self.emit(StateEvent::Payload {
            kind: PayloadEvent::DevicePairRequested,
            payload: Cow::Owned(to_value(&payload)),
        });
    }

    /// `device.pair.resolved` to pairing operators: a request was decided.
    pub fn pair_resolved(&self, request_id: &str, device_id: &str, decision: PairDecision) {
        let payload = DevicePairResolved {
            request_id: request_id.to_owned(),
            device_id: device_id.to_owned(),
            decision,
            ts: now_ms(),
        };
        self.emit(StateEvent::Payload {
            kind: PayloadEvent::DevicePairResolved,
            payload: Cow::Owned(to_value(&payload)),
        });
    }

    /// `comfy.job` to operators with `operator.read` (dropped for slow clients): a job's state.
    pub fn comfy_job(&self, payload: &Value) {
        self.emit(StateEvent::Payload { kind: PayloadEvent::ComfyJob, payload: Cow::Borrowed(payload) });
    }

    /// `plugin.approval.requested` (dropped for slow clients): an approval waits for a decision.
    pub fn approval_requested(&self, record: &Value) {
        self.emit(StateEvent::Payload { kind: PayloadEvent::ApprovalRequested, payload: Cow::Borrowed(record) });
    }

    /// `plugin.approval.resolved` (dropped for slow clients): an approval was decided.
    pub fn approval_resolved(&self, payload: &Value) {
        self.emit(StateEvent::Payload { kind: PayloadEvent::ApprovalResolved, payload: Cow::Borrowed(payload) });
    }

    /// `node.pair.requested` to pairing operators: a node waits for approval.
    pub fn node_pair_requested(&self, request: &Value) {
        self.emit(StateEvent::Payload { kind: PayloadEvent::NodePairRequested, payload: Cow::Borrowed(request) });
    }

    /// `node.pair.resolved` to pairing operators: a node's request was decided.
    pub fn node_pair_resolved(&self, payload: &Value) {
        self.emit(StateEvent::Payload { kind: PayloadEvent::NodePairResolved, payload: Cow::Borrowed(payload) });
    }

    /// `exec.approval.requested|resolved`, to the clients who may see the approval (here and,
    /// through the relay, on the other gateways).
    pub fn exec_approval(
        &self,
        event: &str,
        requested_by: Option<&Value>,
        request: &Value,
        skip_requester: bool,
        payload: &Value,
    ) {
        self.emit(StateEvent::ExecApproval {
            event: Cow::Borrowed(event),
            requested_by: requested_by.map(Cow::Borrowed),
            request: Cow::Borrowed(request),
            skip_requester,
            payload: Cow::Borrowed(payload),
        });
    }

    /// Sends these events through `relay` too (from now on, for every clone of this handle):
    /// set once, by the composition root, when the store is shared with other gateways.
    pub fn relay_through(&self, relay: EventRelay) {
        if self.relay.set(relay).is_err() {
            tracing::warn!("the event relay was already set; keeping the first");
        }
    }

    /// The relay's state, when events are relayed between gateways.
    pub fn relay_status(&self) -> Option<RelayStatus> {
        self.relay.get().map(EventRelay::status)
    }

    /// An event about shared state: to this gateway's clients, then to the other gateways'
    /// through the relay, when there is one.
    fn emit(&self, event: StateEvent<'_>) {
        self.deliver(&event);
        if let Some(relay) = self.relay.get() {
            relay.publish(&event);
        }
    }

    /// An event another gateway published (read back by the relay): to this gateway's clients
    /// only, through the same filters as if it had happened here.
    pub fn deliver_relayed(&self, event: &StateEvent<'_>) {
        self.deliver(event);
    }

    /// The local delivery of an event about shared state: who hears it, and how.
    fn deliver(&self, event: &StateEvent<'_>) {
        match event {
            StateEvent::Run { event, session_key, payload, drop_if_slow } => {
                let is_tool = event == ev::AGENT && payload.get("stream").and_then(Value::as_str) == Some("tool");
                if is_tool {
                    self.clients.broadcast_filtered(event, payload, None, *drop_if_slow, |c| {
                        c.has_cap("tool-events") || c.hears_messages_of(session_key)
                    });
                } else {
                    // Clients that declared `session-scoped-events` only hear the sessions they
                    // subscribed to.
                    self.clients.broadcast_filtered(event, payload, None, *drop_if_slow, |c| {
                        !c.has_cap("session-scoped-events") || c.hears_messages_of(session_key)
                    });
                }
            }
            StateEvent::SessionMessage { session_key, message } => {
                let payload = json!({"sessionKey": session_key, "message": message});
                self.clients.broadcast_filtered(ev::SESSION_MESSAGE, &payload, None, false, |c| {
                    c.hears_messages_of(session_key)
                });
            }
            StateEvent::SessionChanged { session_key, reason, ts } => {
                let payload = json!({"sessionKey": session_key, "reason": reason, "ts": ts});
                self.clients
                    .broadcast_filtered(ev::SESSIONS_CHANGED, &payload, None, true, |c| c.hears_session_changes());
            }
            StateEvent::ExecApproval { event, requested_by, request, skip_requester, payload } => {
                self.clients.broadcast_filtered(event, payload, None, true, |c| {
                    crate::exec_approvals::hears(requested_by.as_deref(), request, *skip_requester, c)
                });
            }
            // The rest go to everyone the event's scope guard admits.
            StateEvent::Payload { kind, payload } => {
                self.clients.broadcast(kind.name(), payload, None, kind.drop_if_slow());
            }
        }
    }
}

/// The `comfy.job` event (no upstream name constant: it is clawgate's own).
const COMFY_JOB: &str = "comfy.job";

/// Every event whose subject lives in the shared store — a session's runs and messages, cron,
/// device and node pairing, ComfyUI jobs, approvals — as the call that delivers it. Several
/// gateways on one database relay these to each other (`event_relay`), so a client hears about
/// a session whichever gateway it is connected to; the receiving gateway makes the same call,
/// with the same scope, cap and subscription filters. Events about one gateway itself (tick,
/// health, presence, shutdown, config) are not here: each gateway sends its own.
///
/// Serialised as `{"kind": "<kind>", ...fields}`: a variant's name for the events with routing
/// data, the [`PayloadEvent`]'s name for the rest (`{"kind": "cron", "payload": …}`) — the form
/// every kind had when each was a variant of its own, so gateways of either build read each
/// other's rows during a rolling upgrade. The borrowed forms let a local broadcast build one
/// without copying its payload.
#[derive(Debug, Clone, PartialEq, serde::Serialize, serde::Deserialize)]
#[serde(tag = "kind", rename_all = "camelCase", rename_all_fields = "camelCase")]
pub enum StateEvent<'a> {
    /// An `agent` or `chat` event of a run (see [`Events::run_event`]).
    Run {
        /// `agent` or `chat`.
        event: Cow<'a, str>,
        /// The run's session.
        session_key: Cow<'a, str>,
        /// The event's payload.
        payload: Cow<'a, Value>,
        /// Whether a slow client may miss it.
        drop_if_slow: bool,
    },
    /// `session.message`.
    SessionMessage {
        /// The session.
        session_key: Cow<'a, str>,
        /// The transcript message.
        message: Cow<'a, Value>,
    },
    /// `sessions.changed`.
    SessionChanged {
        /// The session.
        session_key: Cow<'a, str>,
        /// What changed.
        reason: Cow<'a, str>,
        /// When (Unix ms, on the gateway where it changed).
        ts: i64,
    },
    /// `exec.approval.requested` or `exec.approval.resolved`: heard only by clients who may see
    /// the approval, which follows from who asked and the request
    /// ([`crate::exec_approvals::hears`]), so both travel with the event.
    ExecApproval {
        /// Which of the two events.
        event: Cow<'a, str>,
        /// Who asked for the approval (the record's `requested_by`).
        requested_by: Option<Cow<'a, Value>>,
        /// The request (its `sessionKey` limits clients whose token is limited to sessions).
        request: Cow<'a, Value>,
        /// Whether the connection that asked is left out (`requested`: yes).
        skip_requester: bool,
        /// The event's payload.
        payload: Cow<'a, Value>,
    },
    /// An event that is only its payload, to everyone its scope guard admits. Untagged: its own
    /// `kind` field is the tag (read when no variant above matches it).
    #[serde(untagged)]
    Payload {
        /// Which event.
        kind: PayloadEvent,
        /// The payload, as clients get it.
        payload: Cow<'a, Value>,
    },
}

/// The events about shared state that carry nothing but their payload: each one's wire name and
/// whether a slow client may miss it follow from it. Serialised as the `kind` of its
/// [`StateEvent::Payload`].
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "camelCase")]
pub enum PayloadEvent {
    /// `cron` (its payload without `null` fields).
    Cron,
    /// `device.pair.requested`.
    DevicePairRequested,
    /// `device.pair.resolved`.
    DevicePairResolved,
    /// `comfy.job`.
    ComfyJob,
    /// `plugin.approval.requested`.
    ApprovalRequested,
    /// `plugin.approval.resolved`.
    ApprovalResolved,
    /// `node.pair.requested`.
    NodePairRequested,
    /// `node.pair.resolved`.
    NodePairResolved,
}

impl PayloadEvent {
    /// The event's name on the wire.
    pub fn name(self) -> &'static str {
        match self {
            Self::Cron => ev::CRON,
            Self::DevicePairRequested => ev::DEVICE_PAIR_REQUESTED,
            Self::DevicePairResolved => ev::DEVICE_PAIR_RESOLVED,
            Self::ComfyJob => COMFY_JOB,
            Self::ApprovalRequested => ev::PLUGIN_APPROVAL_REQUESTED,
            Self::ApprovalResolved => ev::PLUGIN_APPROVAL_RESOLVED,
            Self::NodePairRequested => ev::NODE_PAIR_REQUESTED,
            Self::NodePairResolved => ev::NODE_PAIR_RESOLVED,
        }
    }

    /// Whether a slow client may miss it: `comfy.job` and the approval events; cron and pairing
    /// events always go out.
    pub fn drop_if_slow(self) -> bool {
        matches!(self, Self::ComfyJob | Self::ApprovalRequested | Self::ApprovalResolved)
    }
}

/// The one place a stored pairing request becomes its wire form (schema
/// `DevicePairRequestedEvent`: closed object, optional strings absent rather than empty).
pub fn pair_requested_payload(r: &PairingRequest, silent: bool) -> DevicePairRequested {
    let opt = |v: &Option<String>| DevicePairRequested::non_empty(v.as_deref());
    DevicePairRequested {
        request_id: r.request_id.clone(),
        device_id: r.device_id.clone(),
        public_key: r.public_key.clone(),
        display_name: opt(&r.display_name),
        platform: opt(&r.platform),
        device_family: opt(&r.device_family),
        client_id: opt(&r.client_id),
        client_mode: opt(&r.client_mode),
        role: r.role.clone(),
        roles: vec![r.role.clone()],
        scopes: r.scopes.clone(),
        remote_ip: opt(&r.remote_ip),
        silent,
        is_repair: r.reason != "not-paired",
        ts: r.updated_at_ms,
    }
}

fn to_value<T: serde::Serialize>(v: &T) -> Value {
    // Plain structs of strings, numbers and lists: serialising cannot fail.
    serde_json::to_value(v).unwrap_or(Value::Null)
}

#[cfg(test)]
mod tests {
    use super::*;
    use clawgate_store::PairingStatus;

    fn request(reason: &str) -> PairingRequest {
        PairingRequest {
            request_id: "r1".into(),
            device_id: "d1".into(),
            public_key: "pk".into(),
            display_name: Some(String::new()),
            platform: Some("linux".into()),
            device_family: None,
            client_id: Some("cli".into()),
            client_mode: Some("cli".into()),
            role: "operator".into(),
            scopes: vec!["operator.read".into()],
            remote_ip: Some("127.0.0.1".into()),
            reason: reason.into(),
            status: PairingStatus::Pending,
            created_at_ms: 1,
            updated_at_ms: 2,
            resolved_at_ms: None,
            resolved_by: None,
        }
    }

    /// The event as the schema wants it (and as it went out before it was typed): empty strings
    /// left out, `roles` beside `role`, `isRepair` for anything but a first pairing.
    #[test]
    fn pair_requested_is_the_schema_shape() {
        let v = to_value(&pair_requested_payload(&request("not-paired"), false));
        assert_eq!(
            v,
            json!({"requestId": "r1", "deviceId": "d1", "publicKey": "pk", "platform": "linux", "clientId": "cli",
                   "clientMode": "cli", "role": "operator", "roles": ["operator"], "scopes": ["operator.read"],
                   "remoteIp": "127.0.0.1", "silent": false, "isRepair": false, "ts": 2})
        );
        let repair = to_value(&pair_requested_payload(&request("scope-upgrade"), true));
        assert_eq!((repair["isRepair"].clone(), repair["silent"].clone()), (json!(true), json!(true)));
        let resolved = to_value(&DevicePairResolved {
            request_id: "r1".into(),
            device_id: "d1".into(),
            decision: PairDecision::Rejected,
            ts: 3,
        });
        assert_eq!(resolved, json!({"requestId": "r1", "deviceId": "d1", "decision": "rejected", "ts": 3}));
    }

    /// Deltas of a session reach the clients scoped to it and every unscoped operator, and
    /// nobody else; the scoped client's subscription to another session does not leak it.
    #[test]
    fn run_deltas_reach_scoped_clients_of_their_session_and_unscoped_operators() {
        use crate::broadcast::{AuthKind, ClientIdentity};
        let clients = Arc::new(Broadcaster::default());
        let events = Events::new(clients.clone(), Arc::new(PresenceState::new(json!({}))));
        let mut rxs = Vec::new();
        for (id, caps, sub) in [
            ("plain", vec![], None),
            ("plain-subscribed", vec![], Some("agent:main:b")),
            ("scoped-a", vec!["session-scoped-events".to_owned()], Some("agent:main:a")),
            ("scoped-b", vec!["session-scoped-events".to_owned()], Some("agent:main:b")),
        ] {
            let (tx, rx) = tokio::sync::mpsc::unbounded_channel();
            let identity = ClientIdentity {
                conn_id: id.into(),
                role: "operator".into(),
                scopes: vec!["operator.read".into()],
                device_id: None,
                auth_kind: AuthKind::SharedSecret,
                client: ("cli".into(), "cli".into()),
                caps,
                access: None,
                rate: None,
            };
            let c = ClientHandle::with_queue(identity, tx, Arc::default(), 1 << 20);
            if let Some(key) = sub {
                c.update_subscriptions(|s| {
                    s.message_keys.insert(key.to_owned());
                });
            }
            clients.add(c);
            rxs.push((id, rx));
        }
        let delta = json!({"runId": "r", "sessionKey": "agent:main:a", "state": "delta", "deltaText": "hi"});
        events.run_event("chat", "agent:main:a", &delta, true);
        let heard: Vec<(&str, usize)> = rxs
            .iter_mut()
            .map(|(id, rx)| {
                let mut n = 0;
                while let Ok(o) = rx.try_recv() {
                    let frame: Value = serde_json::from_str(&o.text().expect("a text frame")).expect("JSON");
                    assert_eq!(frame["payload"], delta, "{id}");
                    n += 1;
                }
                (*id, n)
            })
            .collect();
        assert_eq!(heard, [("plain", 1), ("plain-subscribed", 1), ("scoped-a", 1), ("scoped-b", 0)]);
    }

    /// What the relay writes is what it reads back: every kind survives its JSON form, and the
    /// form names the kind (the rows are readable in `psql`).
    #[test]
    fn state_events_round_trip_through_their_relayed_form() {
        let payload = json!({"runId": "r", "state": "delta", "deltaText": "hi"});
        let mut all = vec![
            StateEvent::Run {
                event: "chat".into(),
                session_key: "agent:main:a".into(),
                payload: Cow::Borrowed(&payload),
                drop_if_slow: true,
            },
            StateEvent::SessionMessage { session_key: "k".into(), message: Cow::Owned(json!({"role": "user"})) },
            StateEvent::SessionChanged { session_key: "k".into(), reason: "patch".into(), ts: 7 },
            StateEvent::ExecApproval {
                event: "exec.approval.requested".into(),
                requested_by: Some(Cow::Owned(json!({"connId": "c-1", "client": "cli"}))),
                request: Cow::Owned(json!({"command": "ls", "sessionKey": "agent:main:a"})),
                skip_requester: true,
                payload: Cow::Owned(json!({"id": "a-1"})),
            },
            StateEvent::ExecApproval {
                event: "exec.approval.resolved".into(),
                requested_by: None,
                request: Cow::Owned(json!({})),
                skip_requester: false,
                payload: Cow::Owned(json!({"id": "a-2"})),
            },
        ];
        all.extend(
            PAYLOAD_EVENTS
                .iter()
                .map(|&(kind, _)| StateEvent::Payload { kind, payload: Cow::Owned(json!({"id": kind.name()})) }),
        );
        for event in &all {
            let text = serde_json::to_string(event).expect("serialise");
            let back: StateEvent<'static> = serde_json::from_str(&text).expect("read back");
            assert_eq!(&back, event, "{text}");
        }
        let run = serde_json::to_value(&all[0]).expect("serialise");
        assert_eq!(
            run,
            json!({"kind": "run", "event": "chat", "sessionKey": "agent:main:a", "payload": payload, "dropIfSlow": true})
        );
        for bad in [r#"{"kind":"fromTheFuture","payload":{}}"#, r#"{"kind":"run","payload":{}}"#, r#"{"payload":{}}"#] {
            assert!(serde_json::from_str::<StateEvent<'static>>(bad).is_err(), "{bad}");
        }
    }

    /// Every payload-only kind with the `kind` the previous build (one variant per kind) wrote
    /// for it.
    const PAYLOAD_EVENTS: [(PayloadEvent, &str); 8] = [
        (PayloadEvent::Cron, "cron"),
        (PayloadEvent::DevicePairRequested, "devicePairRequested"),
        (PayloadEvent::DevicePairResolved, "devicePairResolved"),
        (PayloadEvent::ComfyJob, "comfyJob"),
        (PayloadEvent::ApprovalRequested, "approvalRequested"),
        (PayloadEvent::ApprovalResolved, "approvalResolved"),
        (PayloadEvent::NodePairRequested, "nodePairRequested"),
        (PayloadEvent::NodePairResolved, "nodePairResolved"),
    ];

    /// A rolling upgrade mixes builds on one database: the payload-only events are written
    /// exactly as the build with one variant per kind wrote them, and its rows read as they did.
    #[test]
    fn payload_events_keep_the_relayed_form_of_the_previous_build() {
        for (kind, old_kind) in PAYLOAD_EVENTS {
            let old_row = format!(r#"{{"kind":"{old_kind}","payload":{{"jobId":"j","n":1}}}}"#);
            let event = StateEvent::Payload { kind, payload: Cow::Owned(json!({"jobId": "j", "n": 1})) };
            assert_eq!(serde_json::to_string(&event).expect("serialise"), old_row);
            let read: StateEvent<'static> = serde_json::from_str(&old_row).expect("an old row reads");
            assert_eq!(read, event);
        }
    }

    /// Each payload-only event goes out under its wire name, and only the ones a slow client may
    /// miss are dropped for it.
    #[test]
    fn payload_events_go_out_under_their_names_with_their_slow_client_policy() {
        let names: Vec<(&str, bool)> = PAYLOAD_EVENTS.iter().map(|(k, _)| (k.name(), k.drop_if_slow())).collect();
        assert_eq!(
            names,
            [
                (ev::CRON, false),
                (ev::DEVICE_PAIR_REQUESTED, false),
                (ev::DEVICE_PAIR_RESOLVED, false),
                ("comfy.job", true),
                (ev::PLUGIN_APPROVAL_REQUESTED, true),
                (ev::PLUGIN_APPROVAL_RESOLVED, true),
                (ev::NODE_PAIR_REQUESTED, false),
                (ev::NODE_PAIR_RESOLVED, false),
            ]
        );
    }

    /// A relayed delta goes through the same filters as a local one: the client scoped to
    /// another session does not hear it.
    #[test]
    fn a_relayed_run_event_is_filtered_like_a_local_one() {
        use crate::broadcast::{AuthKind, ClientIdentity};
        let clients = Arc::new(Broadcaster::default());
        let events = Events::new(clients.clone(), Arc::new(PresenceState::new(json!({}))));
        let mut rxs = Vec::new();
        for (id, sub) in [("scoped-a", "agent:main:a"), ("scoped-b", "agent:main:b")] {
            let (tx, rx) = tokio::sync::mpsc::unbounded_channel();
            let identity = ClientIdentity {
                conn_id: id.into(),
                role: "operator".into(),
                scopes: vec!["operator.read".into()],
                device_id: None,
                auth_kind: AuthKind::SharedSecret,
                client: ("cli".into(), "cli".into()),
                caps: vec!["session-scoped-events".to_owned()],
                access: None,
                rate: None,
            };
            let c = ClientHandle::with_queue(identity, tx, Arc::default(), 1 << 20);
            c.update_subscriptions(|s| {
                s.message_keys.insert(sub.to_owned());
            });
            clients.add(c);
            rxs.push(rx);
        }
        let relayed = r#"{"kind":"run","event":"chat","sessionKey":"agent:main:a","payload":{"state":"final"},"dropIfSlow":false}"#;
        events.deliver_relayed(&serde_json::from_str(relayed).expect("a relayed event"));
        let heard: Vec<usize> = rxs.iter_mut().map(|rx| std::iter::from_fn(|| rx.try_recv().ok()).count()).collect();
        assert_eq!(heard, [1, 0]);
    }
}
