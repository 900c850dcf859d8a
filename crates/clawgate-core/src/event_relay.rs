//! `EventRelay`: events about shared state reach clients on every gateway of one PostgreSQL
//! database (issue 16), through the database alone — `LISTEN/NOTIFY` carries ids, the events are
//! rows of `cluster_events`.
//!
//! ```text
//! Events::emit ──deliver──▶ this gateway's clients
//!      │
//!      └─publish─▶ bounded queue ─▶ publisher task: many events → one INSERT + one NOTIFY(max id)
//!                                                                     │
//!   other gateway's listener task ◀── NOTIFY ─────────────────────────┘
//!      reads rows (last seen, id] not its own, in id order ──▶ Events::deliver_relayed
//! ```
//!
//! A gateway's name in the relay is its boot id, so a restarted gateway is a new origin and never
//! mistakes another's rows for its own. The listener starts reading at the newest id when it
//! starts (history is the store's business, not the relay's); when its connection drops it
//! listens again and reads everything after the last id it applied, so an outage of the
//! listening connection delays events but loses none that are still in the table. Rows are
//! pruned after [`KEEP`].
//!
//! Bounded everywhere: the queue ([`QUEUE`]; an event that finds it full is dropped and counted,
//! as a slow client's `dropIfSlow` event is), the batch ([`BATCH`]), the page read
//! ([`PAGE`]). Failures back off with jitter and are reported in [`RelayStatus`].

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicI64, AtomicU64, Ordering};
use std::time::Duration;

use clawgate_backoff::Backoff;
use clawgate_store::{ClusterEventListener, PgStore, Wake};
use serde::Serialize;
use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;

use crate::events::{Events, StateEvent};
use crate::tasks::Tasks;
use crate::time::now_ms;

/// Events waiting to be written. Deltas come in bursts; past this, the writer is behind the
/// database by seconds and a new event is dropped rather than held in memory.
pub const QUEUE: usize = 4096;

/// Events written by one INSERT.
pub const BATCH: usize = 256;

/// Rows read by one SELECT when catching up.
pub const PAGE: u32 = 500;

/// How long relayed rows are kept: long enough for a listener to reconnect and catch up.
pub const KEEP: Duration = Duration::from_secs(5 * 60);

/// How often each gateway deletes rows older than [`KEEP`].
const PRUNE_EVERY: Duration = Duration::from_secs(60);

/// Attempts to write one batch before it is dropped (the queue keeps filling meanwhile).
const WRITE_ATTEMPTS: u32 = 3;

/// Waits between failed writes or (re)connects of the listener.
const RETRY: Backoff = Backoff::new(Duration::from_millis(100), Duration::from_secs(5));

/// The relay of one gateway. Cheap to clone; clones share the queue and the counters.
#[derive(Debug, Clone)]
pub struct EventRelay {
    inner: Arc<Inner>,
}

#[derive(Debug)]
struct Inner {
    /// This gateway's name in the relay (its boot id).
    origin: String,
    /// Serialised events for the publisher task.
    queue: mpsc::Sender<String>,
    stats: Stats,
}

/// What the relay has done, for `status`.
#[derive(Debug, Default)]
struct Stats {
    published: AtomicU64,
    applied: AtomicU64,
    dropped: AtomicU64,
    /// Now minus the publish time of the newest row applied, when it was applied (ms; -1: none).
    lag_ms: AtomicI64,
    /// The last id read (applied or skipped as this gateway's own).
    last_id: AtomicI64,
    /// Whether the listener is connected and listening.
    listening: AtomicBool,
    /// Failed writes, reads or connects since the start.
    errors: AtomicU64,
}

/// The relay's state as `status` shows it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct RelayStatus {
    /// This gateway's name in the relay (its boot id).
    pub origin: String,
    /// Whether the listening connection is up.
    pub listening: bool,
    /// Events this gateway wrote for the others.
    pub published: u64,
    /// Events of other gateways delivered to this gateway's clients.
    pub applied: u64,
    /// Events not relayed because the queue was full or the write kept failing.
    pub dropped: u64,
    /// How far behind the newest applied event was when it was applied (ms).
    pub lag_ms: Option<i64>,
    /// The last id read.
    pub last_id: i64,
    /// Failed writes, reads or connects since the start.
    pub errors: u64,
}

impl EventRelay {
    /// Starts relaying: `events` publishes through the relay from now on, and events of other
    /// gateways on `store` are delivered to its clients. The tasks (publisher, listener, pruner)
    /// run under `tasks` as `event-relay` and stop with it.
    pub fn start(store: PgStore, origin: String, events: &Events, tasks: &Tasks) -> EventRelay {
        let (queue, rx) = mpsc::channel(QUEUE);
        let relay = EventRelay { inner: Arc::new(Inner { origin, queue, stats: Stats::default() }) };
        relay.inner.stats.lag_ms.store(-1, Ordering::Relaxed);
        events.relay_through(relay.clone());
        tasks.spawn("event-relay", relay.clone().publish_loop(store.clone(), rx, tasks.token()));
        tasks.spawn("event-relay", relay.clone().listen_loop(store.clone(), events.clone(), tasks.token()));
        tasks.spawn("event-relay", prune_loop(store, tasks.token()));
        relay
    }

    /// Queues an event for the other gateways; never waits (a full queue drops it).
    pub(crate) fn publish(&self, event: &StateEvent<'_>) {
        let body = match serde_json::to_string(event) {
            Ok(body) => body,
            Err(e) => {
                // Values built in memory: not reachable, but never worth a panic.
                tracing::warn!(error = %e, "cannot serialise an event for the relay");
                return;
            }
        };
        if self.inner.queue.try_send(body).is_err() {
            let before = self.inner.stats.dropped.fetch_add(1, Ordering::Relaxed);
            // One line per thousand drops: a storm of them must not flood the log.
            if before.is_multiple_of(1000) {
                tracing::warn!(dropped = before + 1, "event relay queue full: events not relayed to other gateways");
            }
        }
    }

    /// The relay's counters and connection state.
    pub fn status(&self) -> RelayStatus {
        let s = &self.inner.stats;
        let lag = s.lag_ms.load(Ordering::Relaxed);
        RelayStatus {
            origin: self.inner.origin.clone(),
            listening: s.listening.load(Ordering::Relaxed),
            published: s.published.load(Ordering::Relaxed),
            applied: s.applied.load(Ordering::Relaxed),
            dropped: s.dropped.load(Ordering::Relaxed),
            lag_ms: (lag >= 0).then_some(lag),
            last_id: s.last_id.load(Ordering::Relaxed),
            errors: s.errors.load(Ordering::Relaxed),
        }
    }

    /// Writes queued events in batches until the gateway stops.
    async fn publish_loop(self, store: PgStore, mut rx: mpsc::Receiver<String>, stop: CancellationToken) {
        let mut batch = Vec::with_capacity(BATCH);
        loop {
            // Wait for one event, then take whatever else is already queued, up to a batch.
            let taken = tokio::select! {
                _ = stop.cancelled() => return,
                n = rx.recv_many(&mut batch, BATCH) => n,
            };
            if taken == 0 {
                return;
            }
            self.write(&store, &batch, &stop).await;
            batch.clear();
        }
    }

    /// Writes one batch, retrying a few times; a batch that cannot be written is dropped.
    async fn write(&self, store: &PgStore, batch: &[String], stop: &CancellationToken) {
        let stats = &self.inner.stats;
        for attempt in 0..WRITE_ATTEMPTS {
            match store.publish_cluster_events(&self.inner.origin, batch, now_ms()).await {
                Ok(_) => {
                    stats.published.fetch_add(batch.len() as u64, Ordering::Relaxed);
                    return;
                }
                Err(e) => {
                    stats.errors.fetch_add(1, Ordering::Relaxed);
                    tracing::warn!(error = %e, events = batch.len(), attempt, "cannot write events for other gateways");
                }
            }
            tokio::select! {
                _ = stop.cancelled() => return,
                _ = tokio::time::sleep(RETRY.delay(attempt)) => {}
            }
        }
        stats.dropped.fetch_add(batch.len() as u64, Ordering::Relaxed);
    }

    /// Listens for other gateways' events and delivers them, reconnecting (and catching up) when
    /// the connection drops, until the gateway stops.
    async fn listen_loop(self, store: PgStore, events: Events, stop: CancellationToken) {
        // Where this gateway starts: nothing before its own start is delivered.
        let mut last: Option<i64> = None;
        let mut failures = 0u32;
        loop {
            let session = self.listen_once(&store, &events, &mut last, &mut failures, &stop).await;
            self.inner.stats.listening.store(false, Ordering::Relaxed);
            if let Err(e) = session {
                self.inner.stats.errors.fetch_add(1, Ordering::Relaxed);
                tracing::warn!(error = %e, failures, "event relay: listening failed; reconnecting");
            }
            if stop.is_cancelled() {
                return;
            }
            tokio::select! {
                _ = stop.cancelled() => return,
                _ = tokio::time::sleep(RETRY.delay(failures)) => {}
            }
            failures = failures.saturating_add(1);
        }
    }

    /// One listening connection: listen, catch up, then follow notifications until the stop
    /// (`Ok`) or an error the connection does not survive.
    async fn listen_once(
        &self,
        store: &PgStore,
        events: &Events,
        last: &mut Option<i64>,
        failures: &mut u32,
        stop: &CancellationToken,
    ) -> clawgate_store::Result<()> {
        let mut listener: ClusterEventListener = tokio::select! {
            _ = stop.cancelled() => return Ok(()),
            l = store.cluster_event_listener() => l?,
        };
        // Listening before reading where to start: whatever is written after this read is
        // notified, so nothing falls in between.
        let mut wake = Wake::Reconnected;
        loop {
            let up_to = match wake {
                Wake::Notified(id) => id,
                Wake::Reconnected => store.latest_cluster_event_id().await?,
            };
            match *last {
                None => {
                    tracing::info!(from_id = up_to, "event relay listening");
                    *last = Some(up_to);
                    self.inner.stats.last_id.store(up_to, Ordering::Relaxed);
                }
                Some(ref mut seen) if up_to > *seen => self.catch_up(store, events, seen, up_to).await?,
                Some(_) => {}
            }
            if wake == Wake::Reconnected {
                self.inner.stats.listening.store(true, Ordering::Relaxed);
                *failures = 0;
            }
            wake = tokio::select! {
                _ = stop.cancelled() => return Ok(()),
                w = listener.next() => w?,
            };
            if wake == Wake::Reconnected {
                tracing::info!("event relay: the listening connection was lost and is back; catching up");
            }
        }
    }

    /// Delivers the other gateways' events after `*after` up to `up_to`, page by page, in id
    /// order, moving `*after` past each page delivered (so a failure midway redelivers nothing).
    async fn catch_up(
        &self,
        store: &PgStore,
        events: &Events,
        after: &mut i64,
        up_to: i64,
    ) -> clawgate_store::Result<()> {
        let stats = &self.inner.stats;
        loop {
            let page = store.cluster_events_between(*after, up_to, &self.inner.origin, PAGE).await?;
            for row in &page {
                match serde_json::from_str::<StateEvent<'static>>(&row.body) {
                    Ok(event) => {
                        events.deliver_relayed(&event);
                        stats.applied.fetch_add(1, Ordering::Relaxed);
                    }
                    // A newer gateway's kind of event, or a damaged row: skipped, never fatal.
                    Err(e) => tracing::warn!(id = row.id, error = %e, "event relay: skipping an event it cannot read"),
                }
                stats.lag_ms.store((now_ms() - row.created_at).max(0), Ordering::Relaxed);
            }
            let full = page.len() == PAGE as usize;
            *after = match page.last() {
                Some(row) if full => row.id,
                _ => up_to,
            };
            stats.last_id.store(*after, Ordering::Relaxed);
            if !full {
                return Ok(());
            }
        }
    }
}

/// Deletes relayed rows older than [`KEEP`] every [`PRUNE_EVERY`] until the gateway stops.
async fn prune_loop(store: PgStore, stop: CancellationToken) {
    loop {
        tokio::select! {
            _ = stop.cancelled() => return,
            _ = tokio::time::sleep(PRUNE_EVERY) => {}
        }
        match store.prune_cluster_events(now_ms() - KEEP.as_millis() as i64).await {
            Ok(0) => {}
            Ok(n) => tracing::debug!(rows = n, "event relay: pruned old events"),
            Err(e) => tracing::warn!(error = %e, "event relay: cannot prune old events"),
        }
    }
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use serde_json::{Value, json};
    use tokio::sync::mpsc::UnboundedReceiver;

    use super::*;
    use crate::broadcast::{AuthKind, Broadcaster, ClientHandle, ClientIdentity, Outbound};
    use crate::presence::PresenceState;

    const WAIT: Duration = Duration::from_secs(20);

    /// One gateway's events on `store`, relaying as `origin`, with one operator client.
    fn gateway(store: &PgStore, origin: &str) -> (Events, Tasks, EventRelay, UnboundedReceiver<Outbound>) {
        let clients = Arc::new(Broadcaster::default());
        let events = Events::new(clients.clone(), Arc::new(PresenceState::new(json!({}))));
        let (tx, rx) = tokio::sync::mpsc::unbounded_channel();
        let identity = ClientIdentity {
            conn_id: format!("client-of-{origin}"),
            role: "operator".into(),
            scopes: vec!["operator.read".into()],
            device_id: None,
            auth_kind: AuthKind::SharedSecret,
            client: ("cli".into(), "cli".into()),
            caps: vec![],
            access: None,
            rate: None,
        };
        clients.add(ClientHandle::with_queue(identity, tx, Arc::default(), 1 << 20));
        let tasks = Tasks::new();
        let relay = EventRelay::start(store.clone(), origin.to_owned(), &events, &tasks);
        (events, tasks, relay, rx)
    }

    /// The next `chat` payload a client hears, within [`WAIT`].
    async fn next_chat(rx: &mut UnboundedReceiver<Outbound>) -> Value {
        loop {
            let frame = tokio::time::timeout(WAIT, rx.recv()).await.expect("an event in time").expect("queue open");
            let frame: Value = serde_json::from_str(&frame.text().expect("text")).expect("JSON");
            if frame["event"] == "chat" {
                return frame["payload"].clone();
            }
        }
    }

    /// The next frame of event `name` a client hears, within [`WAIT`].
    async fn next_event(rx: &mut UnboundedReceiver<Outbound>, name: &str) -> Value {
        loop {
            let frame = tokio::time::timeout(WAIT, rx.recv()).await.expect("an event in time").expect("queue open");
            let frame: Value = serde_json::from_str(&frame.text().expect("text")).expect("JSON");
            if frame["event"] == name {
                return frame["payload"].clone();
            }
        }
    }

    async fn until_listening(relay: &EventRelay) {
        let deadline = tokio::time::Instant::now() + WAIT;
        while !relay.status().listening {
            assert!(tokio::time::Instant::now() < deadline, "the relay never listened: {:?}", relay.status());
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
    }

    /// A run's events on gateway A reach B's client in order, and A's own client hears each one
    /// once (its own rows are not delivered back to it).
    #[tokio::test]
    async fn run_events_reach_the_other_gateways_clients_in_order_and_never_echo() {
        let Some(server) = clawgate_testkit::TestPostgres::shared() else { return };
        let url = server.create_database().expect("database");
        let store = PgStore::open(&url).await.expect("store");
        let (a, a_tasks, a_relay, mut a_rx) = gateway(&store, "gateway-a");
        let (b, b_tasks, b_relay, mut b_rx) = gateway(&store, "gateway-b");
        until_listening(&a_relay).await;
        until_listening(&b_relay).await;

        let deltas: Vec<Value> = (0..40).map(|i| json!({"runId": "r1", "state": "delta", "seq": i})).collect();
        for d in &deltas {
            a.run_event("chat", "agent:main:x", d, true);
        }
        for d in &deltas {
            assert_eq!(&next_chat(&mut b_rx).await, d, "B hears A's deltas in order");
        }
        // A marker from B: once A hears it, A's listener has read past every row of A's own.
        let marker = json!({"runId": "r2", "state": "final"});
        b.run_event("chat", "agent:main:y", &marker, false);
        for d in &deltas {
            assert_eq!(&next_chat(&mut a_rx).await, d, "A's client hears its own deltas locally");
        }
        assert_eq!(next_chat(&mut a_rx).await, marker, "and then B's marker, with no echo in between");
        assert_eq!(next_chat(&mut b_rx).await, marker, "B's own client hears it once, locally");

        // The counters move just after the write or the delivery a client sees: wait for them.
        let counts = |s: RelayStatus| (s.published, s.applied, s.dropped, s.lag_ms.is_some());
        let deadline = tokio::time::Instant::now() + WAIT;
        while (counts(a_relay.status()), counts(b_relay.status())) != ((40, 1, 0, true), (1, 40, 0, true)) {
            let now = (a_relay.status(), b_relay.status());
            assert!(tokio::time::Instant::now() < deadline, "the relays' counters: {now:?}");
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
        assert!(a_tasks.shutdown(WAIT).await.is_empty(), "the relay's tasks stop");
        assert!(b_tasks.shutdown(WAIT).await.is_empty(), "the relay's tasks stop");
        store.close().await.expect("close");
    }

    /// The payload-only events (one `StateEvent` variant for all of them) cross to the other
    /// gateway under their own names, payload intact (the two its operator client may hear).
    #[tokio::test]
    async fn payload_only_events_reach_the_other_gateway_under_their_names() {
        let Some(server) = clawgate_testkit::TestPostgres::shared() else { return };
        let url = server.create_database().expect("database");
        let store = PgStore::open(&url).await.expect("store");
        let (a, a_tasks, a_relay, _a_rx) = gateway(&store, "gateway-a");
        let (_b, b_tasks, b_relay, mut b_rx) = gateway(&store, "gateway-b");
        until_listening(&a_relay).await;
        until_listening(&b_relay).await;

        let job = json!({"jobId": "j1", "status": "running", "progress": 0.5});
        a.comfy_job(&job);
        assert_eq!(next_event(&mut b_rx, "comfy.job").await, job);
        let cron = json!({"jobId": "c1", "action": "finished", "status": "ok"});
        a.cron(cron.clone());
        assert_eq!(next_event(&mut b_rx, "cron").await, cron);

        assert!(a_tasks.shutdown(WAIT).await.is_empty(), "the relay's tasks stop");
        assert!(b_tasks.shutdown(WAIT).await.is_empty(), "the relay's tasks stop");
        store.close().await.expect("close");
    }

    /// An exec approval event crosses to the other gateway with who asked for it, so there too
    /// only the clients who may see the approval hear it.
    #[tokio::test]
    async fn exec_approval_events_reach_the_other_gateways_reviewers_only() {
        let Some(server) = clawgate_testkit::TestPostgres::shared() else { return };
        let url = server.create_database().expect("database");
        let store = PgStore::open(&url).await.expect("store");
        let (a, a_tasks, a_relay, _a_rx) = gateway(&store, "gateway-a");
        let (b, b_tasks, b_relay, _b_rx) = gateway(&store, "gateway-b");
        let (tx, mut reviewer) = tokio::sync::mpsc::unbounded_channel();
        let identity = ClientIdentity {
            conn_id: "reviewer-on-b".into(),
            role: "operator".into(),
            scopes: vec!["operator.approvals".into()],
            device_id: Some("device-r".into()),
            auth_kind: AuthKind::SharedSecret,
            client: ("cli".into(), "cli".into()),
            caps: vec![],
            access: None,
            rate: None,
        };
        b.clients().add(ClientHandle::with_queue(identity, tx, Arc::default(), 1 << 20));
        until_listening(&a_relay).await;
        until_listening(&b_relay).await;

        // Another device's request: not this (non-admin) reviewer's to see.
        let other = json!({"deviceId": "device-other", "connId": "c-9", "client": "cli"});
        a.exec_approval("exec.approval.requested", Some(&other), &json!({}), true, &json!({"id": "hidden"}));
        // The agent's own request (nobody in particular asked): every approvals reviewer sees it.
        a.exec_approval("exec.approval.requested", None, &json!({"command": "ls"}), true, &json!({"id": "shown"}));
        a.exec_approval("exec.approval.resolved", None, &json!({}), false, &json!({"id": "shown", "decision": "deny"}));
        let mut heard = Vec::new();
        while heard.len() < 2 {
            let frame = tokio::time::timeout(WAIT, reviewer.recv()).await.expect("an event in time").expect("open");
            let frame: Value = serde_json::from_str(&frame.text().expect("text")).expect("JSON");
            heard.push((frame["event"].as_str().unwrap_or_default().to_owned(), frame["payload"]["id"].clone()));
        }
        assert_eq!(
            heard,
            [
                ("exec.approval.requested".to_owned(), json!("shown")),
                ("exec.approval.resolved".to_owned(), json!("shown"))
            ],
            "the hidden request was published first: had it been delivered it would come first"
        );

        assert!(a_tasks.shutdown(WAIT).await.is_empty(), "the relay's tasks stop");
        assert!(b_tasks.shutdown(WAIT).await.is_empty(), "the relay's tasks stop");
        store.close().await.expect("close");
    }
}
