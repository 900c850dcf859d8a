//! Connected clients and event delivery.
//!
//! Every client has an outbound queue of pre-serialized frames drained by the server's writer
//! task, plus a byte counter (our `bufferedAmount`). A broadcast serializes its frame once
//! ([`SharedEvent`]: the same bytes queued to every recipient, only the recipient's own `seq`
//! spliced in by its writer), filters recipients by the event's scope guard, and applies
//! the slow-consumer rule: past `maxBufferedBytes` a `dropIfSlow` event is skipped (its `seq`
//! still consumed, so the client sees the gap) and any other frame closes the client with 1008.
//!
//! A close for cause (slow consumer, dead peer) must not wait behind the very bytes the client
//! does not read, so it travels out of band ([`QueueState::abort`]): the writer drops the queue,
//! attempts the close frame briefly and lets go of the socket.

use std::borrow::Cow;
use std::collections::{HashMap, HashSet};
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};

use parking_lot::{Mutex, RwLock};
use serde_json::Value;
use tokio::sync::{Notify, mpsc};
use tokio_util::sync::CancellationToken;

use clawgate_protocol::close;
use clawgate_protocol::events::{self, Guard};
use clawgate_protocol::frames::{StateVersion, event_text_with_seq};
use clawgate_protocol::scopes;

use crate::access_tokens::{ConnAccess, ConnLimits, Rate};

/// What the writer task sends on a client's socket.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Outbound {
    /// A text frame.
    Text(String),
    /// A broadcast event frame shared by every recipient, with this recipient's `seq`: the
    /// writer makes the text ([`SharedEvent::text`]) just before it writes it.
    Event(Arc<SharedEvent>, u64),
    /// A WebSocket ping (keepalive; the reader watches for the pong).
    Ping,
    /// Close the socket with this code and reason, then stop.
    Close(u16, String),
}

impl Outbound {
    /// The text frame this is, if it is one (tests and in-process consumers read frames so).
    pub fn text(&self) -> Option<Cow<'_, str>> {
        match self {
            Outbound::Text(t) => Some(Cow::Borrowed(t)),
            Outbound::Event(ev, seq) => Some(Cow::Owned(ev.text(*seq))),
            Outbound::Ping | Outbound::Close(..) => None,
        }
    }

    /// Bytes this frame counts against the client's buffer (its text's length; 0 for control).
    pub fn queued_len(&self) -> usize {
        match self {
            Outbound::Text(t) => t.len(),
            Outbound::Event(ev, seq) => ev.len_with(*seq),
            Outbound::Ping | Outbound::Close(..) => 0,
        }
    }
}

/// An event frame serialised once per broadcast and queued, behind one `Arc`, to every
/// recipient. The only per-recipient part of an event frame is its `seq`, which the protocol puts
/// after the payload: the frame is kept as the text before it and the text after it, and
/// [`SharedEvent::text`] splices a `seq` in, giving exactly the bytes
/// [`event_text_with_seq`] gives. Fan-out then costs one `Arc` clone per recipient, not one copy
/// of the payload each, and the copy a socket write needs happens on that client's writer task.
#[derive(Debug, PartialEq, Eq)]
pub struct SharedEvent {
    /// `{"type":"event","event":<name>,"payload":<payload>`.
    head: String,
    /// What follows the `seq`: `,"stateVersion":{…}}` or `}`.
    tail: String,
}

/// Between [`SharedEvent::head`] and the `seq` digits.
const SEQ_KEY: &str = ",\"seq\":";

impl SharedEvent {
    /// The frame of `event` with an already serialised payload.
    pub fn new(event: &str, payload_json: &str, state_version: Option<StateVersion>) -> Self {
        // One rule for the frame's bytes: cut the single-recipient form at its `seq`.
        let whole = event_text_with_seq(event, payload_json, 0, state_version);
        let marker = format!("{SEQ_KEY}0");
        match whole.rfind(&marker) {
            Some(at) => Self { head: whole[..at].to_owned(), tail: whole[at + marker.len()..].to_owned() },
            // Not reachable: `event_text_with_seq` always writes the seq after the payload.
            None => Self { head: whole, tail: String::new() },
        }
    }

    /// The frame's text with this `seq`.
    pub fn text(&self, seq: u64) -> String {
        let mut out = String::with_capacity(self.len_with(seq));
        out.push_str(&self.head);
        out.push_str(SEQ_KEY);
        out.push_str(&seq.to_string());
        out.push_str(&self.tail);
        out
    }

    /// The length of [`SharedEvent::text`] for this `seq`, without making it.
    pub fn len_with(&self, seq: u64) -> usize {
        let digits = seq.checked_ilog10().map_or(1, |d| d as usize + 1);
        self.head.len() + SEQ_KEY.len() + digits + self.tail.len()
    }
}

/// The shared side of one connection's outbound queue: what every sender and the writer task
/// both see. Class closed: a client that does not read must never hold the gateway's memory or
/// its socket for ever, however it stops reading.
#[derive(Debug, Default)]
pub struct QueueState {
    /// Bytes queued and not yet written to the socket (our `bufferedAmount`); the writer
    /// subtracts each frame once written, and the reader stops reading requests while it is high.
    pub queued: AtomicUsize,
    /// Signalled by the writer after each write, for a reader waiting for the queue to drain.
    pub drained: Notify,
    /// Cancelled when the connection must end now: the writer drops every queued frame, tries the
    /// close frame for a moment and lets go of the socket; the reader stops reading.
    pub aborted: CancellationToken,
    /// The close frame to attempt on abort (the first reason wins).
    abort_close: Mutex<Option<(u16, String)>>,
}

impl QueueState {
    /// End the connection at once, jumping the queue, with this close code and reason.
    pub fn abort(&self, code: u16, reason: &str) {
        let mut slot = self.abort_close.lock();
        if slot.is_none() {
            *slot = Some((code, close::truncate_reason(reason)));
        }
        drop(slot);
        self.aborted.cancel();
    }

    /// The close frame an abort asked for.
    pub fn abort_close(&self) -> Option<(u16, String)> {
        self.abort_close.lock().clone()
    }

    /// Bytes queued and not yet written.
    pub fn queued(&self) -> usize {
        self.queued.load(Ordering::Acquire)
    }
}

/// How a client authenticated, so credential changes can find the sockets they invalidate.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AuthKind {
    /// No shared secret (`gateway.auth.mode: none`).
    None,
    /// The shared token or password.
    SharedSecret,
    /// A paired device (signature and/or device token).
    Device,
    /// A scoped access token (`cgt_…`).
    AccessToken,
}

/// Who an admitted connection is.
#[derive(Debug, Clone)]
pub struct ClientIdentity {
    /// Connection id.
    pub conn_id: String,
    /// `operator` or `node`.
    pub role: String,
    /// Granted scopes.
    pub scopes: Vec<String>,
    /// The proven device, if any.
    pub device_id: Option<String>,
    /// How it authenticated.
    pub auth_kind: AuthKind,
    /// `client.id` and `client.mode` from `connect`.
    pub client: (String, String),
    /// Capabilities the client declared (`caps`).
    pub caps: Vec<String>,
    /// The access token's restrictions, when it connected with one.
    pub access: Option<Arc<ConnAccess>>,
    /// Its request rate limit (`gateway.rateLimit.perConnection`).
    pub rate: Option<Rate>,
}

/// One authenticated connection as the rest of the gateway sees it.
#[derive(Debug)]
pub struct ClientHandle {
    /// Connection id (also `hello-ok.server.connId`).
    pub conn_id: String,
    /// `operator` or `node`.
    pub role: String,
    /// Granted scopes.
    pub scopes: Vec<String>,
    /// The device, when the client proved one.
    pub device_id: Option<String>,
    /// How it authenticated.
    pub auth_kind: AuthKind,
    /// `client.id` and `client.mode` from `connect`.
    pub client: (String, String),
    /// Capabilities the client declared (`caps`).
    pub caps: Vec<String>,
    tx: mpsc::UnboundedSender<Outbound>,
    /// Bytes queued, and the out-of-band abort, shared with the writer.
    state: Arc<QueueState>,
    /// Last event `seq` handed out to this client.
    seq: AtomicU64,
    max_buffered: usize,
    /// What this client subscribed to (`sessions.subscribe`, `sessions.messages.subscribe`).
    subs: Mutex<Subscriptions>,
    /// Its request rate limit and access-token restrictions.
    limits: ConnLimits,
}

/// A client's event subscriptions.
#[derive(Debug, Default)]
pub struct Subscriptions {
    /// `sessions.changed` for every session.
    pub sessions: bool,
    /// `session.message` for these session keys.
    pub message_keys: HashSet<String>,
}

/// Returned when a frame could not be queued.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SendError {
    /// The client is over its buffer limit; it has been told to close.
    SlowConsumer,
    /// The connection is gone.
    Closed,
}

impl ClientHandle {
    /// A handle and the receiving end for the writer task. The [`QueueState`] is shared with the
    /// writer, which subtracts each frame's length once written.
    pub fn new(
        conn_id: String,
        role: String,
        scopes: Vec<String>,
        device_id: Option<String>,
        auth_kind: AuthKind,
        max_buffered: usize,
    ) -> (Arc<Self>, mpsc::UnboundedReceiver<Outbound>, Arc<QueueState>) {
        let (tx, rx) = mpsc::unbounded_channel();
        let state = Arc::new(QueueState::default());
        let handle = Arc::new(Self {
            conn_id,
            role,
            scopes,
            device_id,
            auth_kind,
            client: (String::new(), String::new()),
            caps: Vec::new(),
            tx,
            state: state.clone(),
            seq: AtomicU64::new(0),
            max_buffered,
            subs: Mutex::default(),
            limits: ConnLimits::default(),
        });
        (handle, rx, state)
    }

    /// Wrap an existing queue (the server creates the queue before the handshake finishes).
    pub fn with_queue(
        identity: ClientIdentity,
        tx: mpsc::UnboundedSender<Outbound>,
        state: Arc<QueueState>,
        max_buffered: usize,
    ) -> Arc<Self> {
        let ClientIdentity { conn_id, role, scopes, device_id, auth_kind, client, caps, access, rate } = identity;
        Arc::new(Self {
            conn_id,
            role,
            scopes,
            device_id,
            auth_kind,
            client,
            caps,
            tx,
            state,
            seq: AtomicU64::new(0),
            max_buffered,
            subs: Mutex::default(),
            limits: ConnLimits::new(rate, access),
        })
    }

    /// Its request rate limit and access-token restrictions.
    pub fn limits(&self) -> &ConnLimits {
        &self.limits
    }

    /// The access token it connected with, if any.
    pub fn access(&self) -> Option<&Arc<ConnAccess>> {
        self.limits.access.as_ref()
    }

    /// Whether it may hear this event: an access token limited to sessions hears only its own
    /// sessions' events (and nothing once revoked).
    pub fn sees_event(&self, event: &str, payload: &Value) -> bool {
        self.access().is_none_or(|a| a.sees_event(event, payload))
    }

    /// Whether it holds `scope` for data of every session (the private form of `health`, say):
    /// a token limited to sessions never does.
    pub fn has_scope_across_sessions(&self, scope: &str) -> bool {
        self.has_scope(scope) && self.access().is_none_or(|a| !a.restricts_sessions())
    }

    /// Change this client's subscriptions.
    pub fn update_subscriptions(&self, f: impl FnOnce(&mut Subscriptions)) {
        f(&mut self.subs.lock());
    }

    /// Whether this client subscribed to `session.message` for `session_key`. Checked per client
    /// per event, so it reads under the lock instead of copying the subscription set.
    pub fn hears_messages_of(&self, session_key: &str) -> bool {
        self.subs.lock().message_keys.contains(session_key)
    }

    /// Whether this client called `sessions.subscribe`.
    pub fn hears_session_changes(&self) -> bool {
        self.subs.lock().sessions
    }

    /// Whether the client declared capability `cap` in `connect`.
    pub fn has_cap(&self, cap: &str) -> bool {
        self.caps.iter().any(|c| c == cap)
    }

    /// Whether the client holds `scope` (with implications).
    pub fn has_scope(&self, scope: &str) -> bool {
        self.role == clawgate_protocol::connect::roles::OPERATOR && scopes::satisfied(scope, &self.scopes)
    }

    /// Queue a frame; past the buffer limit the client is aborted as a slow consumer (the close
    /// jumps the queue and the queue is dropped: it would never drain).
    pub fn send(&self, text: String) -> Result<(), SendError> {
        self.queue(Outbound::Text(text))
    }

    /// Queue a broadcast's shared frame with this client's `seq`, as [`ClientHandle::send`].
    pub fn send_shared(&self, event: &Arc<SharedEvent>, seq: u64) -> Result<(), SendError> {
        self.queue(Outbound::Event(event.clone(), seq))
    }

    fn queue(&self, out: Outbound) -> Result<(), SendError> {
        if self.state.aborted.is_cancelled() {
            return Err(SendError::Closed);
        }
        let len = out.queued_len();
        let before = self.state.queued.fetch_add(len, Ordering::AcqRel);
        if before + len > self.max_buffered {
            self.state.queued.fetch_sub(len, Ordering::AcqRel);
            tracing::info!(conn = %self.conn_id, queued = before, "slow consumer: closing");
            self.abort(close::POLICY_VIOLATION, close::REASON_SLOW_CONSUMER);
            return Err(SendError::SlowConsumer);
        }
        self.tx.send(out).map_err(|_| {
            self.state.queued.fetch_sub(len, Ordering::AcqRel);
            SendError::Closed
        })
    }

    /// Whether one more frame of `len` bytes would exceed the buffer limit.
    pub fn would_overflow(&self, len: usize) -> bool {
        self.state.queued() + len > self.max_buffered
    }

    /// End the connection now: queued frames are dropped, the close is attempted briefly.
    pub fn abort(&self, code: u16, reason: &str) {
        self.state.abort(code, reason);
    }

    /// Whether the connection was aborted.
    pub fn is_aborted(&self) -> bool {
        self.state.aborted.is_cancelled()
    }

    /// Resolves once the connection has ended, whichever side ended it (the writer marks the
    /// queue aborted when it lets go of the socket).
    pub async fn closed(&self) {
        self.state.aborted.cancelled().await;
    }

    /// Next event sequence number for this client.
    pub fn next_seq(&self) -> u64 {
        self.seq.fetch_add(1, Ordering::AcqRel) + 1
    }

    /// Ask the writer to send a WebSocket ping.
    pub fn ping(&self) {
        let _ = self.tx.send(Outbound::Ping);
    }

    /// Ask the writer to close the socket.
    pub fn close(&self, code: u16, reason: &str) {
        let _ = self.tx.send(Outbound::Close(code, close::truncate_reason(reason)));
    }

    /// Send an event to this client alone, with its next `seq`.
    pub fn send_event(&self, event: &str, payload: &Value) -> Result<(), SendError> {
        let payload_json = serde_json::to_string(payload).unwrap_or_else(|_| "null".into());
        self.send(event_text_with_seq(event, &payload_json, self.next_seq(), None))
    }
}

/// The set of connected, authenticated clients.
#[derive(Debug, Default)]
pub struct Broadcaster {
    clients: RwLock<HashMap<String, Arc<ClientHandle>>>,
}

impl Broadcaster {
    /// Register a client after `hello-ok`.
    pub fn add(&self, client: Arc<ClientHandle>) {
        self.clients.write().insert(client.conn_id.clone(), client);
    }

    /// Forget a client (on disconnect).
    pub fn remove(&self, conn_id: &str) -> Option<Arc<ClientHandle>> {
        self.clients.write().remove(conn_id)
    }

    /// Number of connected clients.
    pub fn len(&self) -> usize {
        self.clients.read().len()
    }

    /// Whether nobody is connected.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// A snapshot of the connected clients.
    pub fn clients(&self) -> Vec<Arc<ClientHandle>> {
        self.clients.read().values().cloned().collect()
    }

    /// Deliver an event to every client its guard admits. Returns how many received it.
    pub fn broadcast(
        &self,
        event: &str,
        payload: &Value,
        state_version: Option<StateVersion>,
        drop_if_slow: bool,
    ) -> usize {
        self.broadcast_filtered(event, payload, state_version, drop_if_slow, |_| true)
    }

    /// Like [`Broadcaster::broadcast`], to the admitted clients for which `filter` is true.
    pub fn broadcast_filtered(
        &self,
        event: &str,
        payload: &Value,
        state_version: Option<StateVersion>,
        drop_if_slow: bool,
        filter: impl Fn(&ClientHandle) -> bool,
    ) -> usize {
        let guard = events::guard(event);
        if guard == Guard::Nobody {
            tracing::warn!(event, "refusing to broadcast an event without a scope guard");
            return 0;
        }
        let payload_json = serde_json::to_string(payload).unwrap_or_else(|_| "null".into());
        let frame = Arc::new(SharedEvent::new(event, &payload_json, state_version));
        drop(payload_json);
        let map = self.clients.read();
        let mut delivered = 0;
        for client in map.values() {
            let admitted = match guard {
                Guard::Everyone => true,
                Guard::Scope(scope) => client.has_scope(scope),
                Guard::Nobody => false,
            };
            if !admitted || !filter(client) || !client.sees_event(event, payload) {
                continue;
            }
            let seq = client.next_seq();
            if drop_if_slow && client.would_overflow(frame.len_with(seq)) {
                continue;
            }
            if client.send_shared(&frame, seq).is_ok() {
                delivered += 1;
            }
        }
        delivered
    }

    /// Deliver an event whose payload has a private form: `full` to clients holding `scope`,
    /// `public` to every other client the event's guard admits. Each client gets exactly one of
    /// the two. Returns how many received it.
    pub fn broadcast_split(
        &self,
        event: &str,
        scope: &str,
        full: &Value,
        public: &Value,
        state_version: Option<StateVersion>,
        drop_if_slow: bool,
    ) -> usize {
        self.broadcast_filtered(event, full, state_version, drop_if_slow, |c| c.has_scope_across_sessions(scope))
            + self
                .broadcast_filtered(event, public, state_version, drop_if_slow, |c| !c.has_scope_across_sessions(scope))
    }

    /// Close every client matching `pred` with a code and reason.
    pub fn close_where(&self, pred: impl Fn(&ClientHandle) -> bool, code: u16, reason: &str) -> usize {
        let mut n = 0;
        for c in self.clients() {
            if pred(&c) {
                c.close(code, reason);
                n += 1;
            }
        }
        n
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn client(id: &str, scopes: &[&str], max: usize) -> (Arc<ClientHandle>, mpsc::UnboundedReceiver<Outbound>) {
        let (h, rx, _) = ClientHandle::new(
            id.into(),
            "operator".into(),
            scopes.iter().map(|s| s.to_string()).collect(),
            None,
            AuthKind::SharedSecret,
            max,
        );
        (h, rx)
    }

    fn next_text(rx: &mut mpsc::UnboundedReceiver<Outbound>) -> Value {
        match rx.try_recv() {
            Ok(o @ (Outbound::Text(_) | Outbound::Event(..))) => serde_json::from_str(&o.text().unwrap()).unwrap(),
            other => panic!("expected text, got {other:?}"),
        }
    }

    #[test]
    fn health_events_carry_private_data_only_to_readers() {
        let b = Broadcaster::default();
        let (reader, mut r_rx) = client("a", &["operator.read"], 1 << 20);
        let (none, mut n_rx) = client("b", &[], 1 << 20);
        b.add(reader);
        b.add(none);
        let full = json!({"ok": true, "ts": 5, "sessions": {"path": "/state/clawgate.db", "count": 1,
            "recent": [{"key": "agent:main:telegram:direct:4242", "updatedAt": 1, "age": 2}]}});
        let public = crate::health::public_health(&full);
        let sv = Some(StateVersion { presence: 1, health: 2 });
        assert_eq!(b.broadcast_split("health", scopes::READ, &full, &public, sv, true), 2);
        let r = next_text(&mut r_rx);
        assert_eq!(r["payload"]["sessions"]["path"], "/state/clawgate.db");
        let n = next_text(&mut n_rx);
        let text = n.to_string();
        assert!(!text.contains("clawgate.db") && !text.contains("4242"), "{text}");
        assert_eq!(n["payload"]["sessions"]["count"], 1);
        assert!(r_rx.try_recv().is_err() && n_rx.try_recv().is_err(), "one health event each");
    }

    #[test]
    fn events_are_filtered_by_scope_and_numbered_per_client() {
        let b = Broadcaster::default();
        let (reader, mut r_rx) = client("a", &["operator.read"], 1 << 20);
        let (none, mut n_rx) = client("b", &[], 1 << 20);
        b.add(reader);
        b.add(none);
        assert_eq!(b.broadcast("tick", &json!({"ts": 1}), None, true), 2);
        assert_eq!(
            b.broadcast("presence", &json!({"presence": []}), Some(StateVersion { presence: 3, health: 1 }), true),
            1
        );
        assert_eq!(next_text(&mut r_rx)["seq"], 1);
        let p = next_text(&mut r_rx);
        assert_eq!((p["seq"].as_u64(), p["stateVersion"]["presence"].as_u64()), (Some(2), Some(3)));
        assert_eq!(next_text(&mut n_rx)["event"], "tick");
        assert!(n_rx.try_recv().is_err(), "a client without scopes gets no presence");
    }

    #[test]
    fn slow_consumer_drops_droppable_events_but_keeps_seq_and_closes_on_others() {
        let b = Broadcaster::default();
        let (c, mut rx) = client("a", &["operator.read"], 120);
        b.add(c.clone());
        b.broadcast("tick", &json!({"ts": 1}), None, true); // ~50 bytes, fits
        b.broadcast("tick", &json!({"ts": 2}), None, true); // fits
        b.broadcast("tick", &json!({"ts": 3}), None, true); // over 120: dropped, seq 3 consumed
        b.broadcast("tick", &json!({"ts": 4}), None, false); // not droppable: closes
        assert_eq!(next_text(&mut rx)["seq"], 1);
        assert_eq!(next_text(&mut rx)["seq"], 2);
        assert!(rx.try_recv().is_err(), "the close does not queue behind unsent frames");
        assert!(c.is_aborted(), "it travels out of band");
        assert_eq!(c.state.abort_close(), Some((1008, "slow consumer".into())));
        assert_eq!(c.send("late".into()), Err(SendError::Closed), "nothing more is queued");
        assert_eq!(c.next_seq(), 5, "dropped and refused events still consumed their seq");
    }

    #[test]
    fn a_shared_event_frame_is_the_single_recipient_frame_byte_for_byte() {
        let sv = Some(StateVersion { presence: 2, health: 9 });
        for (event, payload, sv) in [("presence", r#"{"presence":[]}"#, sv), ("chat", r#"{"a":",\"seq\":0"}"#, None)] {
            let shared = SharedEvent::new(event, payload, sv);
            for seq in [0, 1, 9, 10, 99, 100, 12_345, u64::MAX] {
                let text = shared.text(seq);
                assert_eq!(text, event_text_with_seq(event, payload, seq, sv));
                assert_eq!(shared.len_with(seq), text.len(), "seq {seq}");
            }
        }
    }

    #[test]
    fn a_broadcast_queues_one_frame_shared_by_every_recipient() {
        let b = Broadcaster::default();
        let (a, mut a_rx) = client("a", &["operator.read"], 1 << 20);
        let (c, mut c_rx) = client("c", &["operator.read"], 1 << 20);
        b.add(a.clone());
        b.add(c);
        a.next_seq(); // the two clients are at different seqs
        assert_eq!(b.broadcast("chat", &json!({"state": "delta"}), None, true), 2);
        let (Ok(Outbound::Event(fa, sa)), Ok(Outbound::Event(fc, sc))) = (a_rx.try_recv(), c_rx.try_recv()) else {
            panic!("event frames expected");
        };
        assert!(Arc::ptr_eq(&fa, &fc), "serialised once, shared by both");
        assert_eq!((sa, sc), (2, 1));
        assert_eq!(fa.text(sa), r#"{"type":"event","event":"chat","payload":{"state":"delta"},"seq":2}"#);
        assert_eq!(a.state.queued(), fa.len_with(2), "the buffer counts the bytes the writer will send");
    }
}
