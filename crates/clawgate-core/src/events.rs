//! `Events`: the one handle services use to tell connected clients something.
//!
//! Services hold an [`Events`] (cheap to clone) instead of the whole gateway: every broadcast
//! goes through a method here that names the event and builds its payload in one place, and the
//! scope guard, `seq` and slow-consumer policy stay in [`Broadcaster`].

use std::sync::Arc;

use serde_json::{Value, json};

use clawgate_protocol::connect::ConnectParams;
use clawgate_protocol::events::names as ev;
use clawgate_protocol::events::pairing::{DevicePairRequested, DevicePairResolved, PairDecision};
use clawgate_protocol::frames::StateVersion;
use clawgate_protocol::{close, scopes};
use clawgate_store::PairingRequest;

use crate::broadcast::{Broadcaster, ClientHandle};
use crate::presence::PresenceState;
use crate::time::now_ms;

/// Broadcasts to connected clients. Clones share the same clients and presence.
#[derive(Debug, Clone)]
pub struct Events {
    clients: Arc<Broadcaster>,
    presence: Arc<PresenceState>,
}

impl Events {
    /// Events over these clients and presence state.
    pub fn new(clients: Arc<Broadcaster>, presence: Arc<PresenceState>) -> Self {
        Self { clients, presence }
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
        let is_tool = event == ev::AGENT && payload.get("stream").and_then(Value::as_str) == Some("tool");
        if is_tool {
            self.clients.broadcast_filtered(event, payload, None, drop_if_slow, |c| {
                c.has_cap("tool-events") || c.hears_messages_of(session_key)
            });
        } else {
            // Clients that declared `session-scoped-events` only hear the sessions they subscribed to.
            self.clients.broadcast_filtered(event, payload, None, drop_if_slow, |c| {
                !c.has_cap("session-scoped-events") || c.hears_messages_of(session_key)
            });
        }
    }

    /// `session.message` to the clients that subscribed to this session's messages.
    pub fn session_message(&self, session_key: &str, message: &Value) {
        let payload = json!({"sessionKey": session_key, "message": message});
        self.clients
            .broadcast_filtered(ev::SESSION_MESSAGE, &payload, None, false, |c| c.hears_messages_of(session_key));
    }

    /// `sessions.changed` to the clients that called `sessions.subscribe`.
    pub fn session_changed(&self, session_key: &str, reason: &str) {
        let payload = json!({"sessionKey": session_key, "reason": reason, "ts": now_ms()});
        self.clients.broadcast_filtered(ev::SESSIONS_CHANGED, &payload, None, true, |c| c.hears_session_changes());
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
        self.clients.broadcast(ev::CRON, &payload, None, false);
    }

    /// `device.pair.requested` to pairing operators: a new or refreshed request.
    pub fn pair_requested(&self, r: &PairingRequest, silent: bool) {
        let payload = pair_requested_payload(r, silent);
        self.clients.broadcast(ev::DEVICE_PAIR_REQUESTED, &to_value(&payload), None, false);
    }

    /// `device.pair.resolved` to pairing operators: a request was decided.
    pub fn pair_resolved(&self, request_id: &str, device_id: &str, decision: PairDecision) {
        let payload = DevicePairResolved {
            request_id: request_id.to_owned(),
            device_id: device_id.to_owned(),
            decision,
            ts: now_ms(),
        };
        self.clients.broadcast(ev::DEVICE_PAIR_RESOLVED, &to_value(&payload), None, false);
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
}
