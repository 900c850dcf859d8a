//! [`Hub`]: the client's event fan-out, which outlives every connection.
//!
//! Each connection's reader hands its events here. The hub broadcasts each one to
//! [`Client::subscribe_events`](crate::Client::subscribe_events) receivers and routes those that
//! carry a `sessionKey` to the per-session streams registered for that key. Per-session queues
//! are bounded: when one is full the event is dropped and counted, and the stream reports
//! [`SessionEvent::Lagged`] with the count as soon as it has room again, so a slow consumer
//! costs a fixed amount of memory and still learns it missed something. Connection loss and
//! recovery are markers in the same queues ([`SessionEvent::Disconnected`],
//! [`SessionEvent::Reconnected`]), in order with the events around them.

use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};

use tokio::sync::{broadcast, mpsc};

use clawgate_protocol::EventFrame;

use crate::conn::event_session_key;
use crate::session::SessionEvent;

/// One per-session stream's end of the route.
struct Slot {
    id: u64,
    tx: mpsc::Sender<SessionEvent>,
    /// Events dropped since the last one that got through; reported before the next.
    dropped: u64,
}

impl Slot {
    /// Queue `event` (after a pending `Lagged` report); `false` once the stream is gone.
    fn offer(&mut self, event: &SessionEvent) -> bool {
        if self.dropped > 0 {
            match self.tx.try_send(SessionEvent::Lagged(self.dropped)) {
                Ok(()) => self.dropped = 0,
                Err(mpsc::error::TrySendError::Full(_)) => {
                    self.dropped += 1;
                    return true;
                }
                Err(mpsc::error::TrySendError::Closed(_)) => return false,
            }
        }
        match self.tx.try_send(event.clone()) {
            Ok(()) => true,
            Err(mpsc::error::TrySendError::Full(_)) => {
                self.dropped += 1;
                true
            }
            Err(mpsc::error::TrySendError::Closed(_)) => false,
        }
    }
}

#[derive(Default)]
struct Routes {
    next_id: u64,
    by_key: HashMap<String, Vec<Slot>>,
}

/// Event fan-out shared by the client handle, its supervisor and each connection's reader.
pub(crate) struct Hub {
    /// Every event, for `subscribe_events`; taken when the client closes for good so receivers
    /// see the end.
    all: Mutex<Option<broadcast::Sender<EventFrame>>>,
    routes: Mutex<Routes>,
    /// Bound of each per-session queue.
    session_capacity: usize,
    /// Number of times `seq` jumped by more than one, over all connections.
    gaps: AtomicU64,
    /// Number of events those jumps skipped.
    missed: AtomicU64,
}

impl Hub {
    pub(crate) fn new(event_capacity: usize, session_capacity: usize) -> Arc<Hub> {
        let (all, _) = broadcast::channel(event_capacity.max(1));
        Arc::new(Hub {
            all: Mutex::new(Some(all)),
            routes: Mutex::new(Routes::default()),
            session_capacity: session_capacity.max(2),
            gaps: AtomicU64::new(0),
            missed: AtomicU64::new(0),
        })
    }

    fn routes(&self) -> MutexGuard<'_, Routes> {
        // A poisoned lock only means a panic elsewhere mid-update of a map; it is still usable.
        self.routes.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// A receiver of every event from now on (an ended one after the client closed).
    pub(crate) fn subscribe_all(&self) -> broadcast::Receiver<EventFrame> {
        match self.all.lock().unwrap_or_else(|e| e.into_inner()).as_ref() {
            Some(tx) => tx.subscribe(),
            None => broadcast::channel(1).1,
        }
    }

    /// Register a stream for the events whose `sessionKey` is `key`; returns its id (for
    /// [`Hub::unroute`]) and its receiver.
    pub(crate) fn route(&self, key: &str) -> (u64, mpsc::Receiver<SessionEvent>) {
        let (tx, rx) = mpsc::channel(self.session_capacity);
        let mut routes = self.routes();
        routes.next_id += 1;
        let id = routes.next_id;
        routes.by_key.entry(key.to_owned()).or_default().push(Slot { id, tx, dropped: 0 });
        (id, rx)
    }

    /// Forget the stream `id` of `key` (its receiver was dropped).
    pub(crate) fn unroute(&self, key: &str, id: u64) {
        let mut routes = self.routes();
        if let Some(slots) = routes.by_key.get_mut(key) {
            slots.retain(|s| s.id != id);
            if slots.is_empty() {
                routes.by_key.remove(key);
            }
        }
    }

    /// Number of keys with at least one stream.
    #[cfg(test)]
    pub(crate) fn routed_keys(&self) -> usize {
        self.routes().by_key.len()
    }

    /// Hand one event to everyone listening.
    pub(crate) fn deliver(&self, event: EventFrame) {
        let key = event_session_key(&event).map(str::to_owned);
        if let Some(key) = key {
            let mut routes = self.routes();
            if let Some(slots) = routes.by_key.get_mut(&key) {
                let typed = SessionEvent::from_frame(&event);
                slots.retain_mut(|slot| slot.offer(&typed));
                if slots.is_empty() {
                    routes.by_key.remove(&key);
                }
            }
        }
        if let Some(tx) = self.all.lock().unwrap_or_else(|e| e.into_inner()).as_ref() {
            // No subscribers is fine: events are best-effort for those who listen.
            let _ = tx.send(event);
        }
    }

    /// Queue a marker (`Disconnected`, `Reconnected`) on every session stream.
    pub(crate) fn mark_all(&self, marker: SessionEvent) {
        let mut routes = self.routes();
        routes.by_key.retain(|_, slots| {
            slots.retain_mut(|slot| slot.offer(&marker));
            !slots.is_empty()
        });
    }

    /// The client closed for good: end every stream.
    pub(crate) fn close(&self) {
        self.all.lock().unwrap_or_else(|e| e.into_inner()).take();
        self.routes().by_key.clear();
    }

    pub(crate) fn count_gap(&self, skipped: u64) {
        self.gaps.fetch_add(1, Ordering::Relaxed);
        self.missed.fetch_add(skipped, Ordering::Relaxed);
    }

    pub(crate) fn gaps(&self) -> u64 {
        self.gaps.load(Ordering::Relaxed)
    }

    pub(crate) fn missed(&self) -> u64 {
        self.missed.load(Ordering::Relaxed)
    }
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    fn chat(key: &str, text: &str) -> EventFrame {
        EventFrame {
            kind: "event".to_owned(),
            event: "chat".to_owned(),
            payload: Some(json!({"runId": "r1", "sessionKey": key, "state": "delta", "deltaText": text, "seq": 1})),
            seq: None,
            state_version: None,
        }
    }

    fn delta_text(ev: &SessionEvent) -> Option<&str> {
        match ev {
            SessionEvent::Chat(c) => c.delta_text(),
            _ => None,
        }
    }

    #[test]
    fn events_reach_only_the_streams_of_their_session_key() {
        let hub = Hub::new(16, 16);
        let (_, mut a) = hub.route("agent:main:a");
        let (_, mut b) = hub.route("agent:main:b");
        let mut all = hub.subscribe_all();
        hub.deliver(chat("agent:main:a", "for a"));
        hub.deliver(chat("agent:main:b", "for b"));
        hub.deliver(chat("agent:main:c", "for nobody"));
        assert_eq!(delta_text(&a.try_recv().unwrap()), Some("for a"));
        assert!(a.try_recv().is_err());
        assert_eq!(delta_text(&b.try_recv().unwrap()), Some("for b"));
        assert!(b.try_recv().is_err());
        assert_eq!(all.try_recv().unwrap().payload.unwrap()["deltaText"], "for a");
        assert_eq!(all.try_recv().unwrap().payload.unwrap()["deltaText"], "for b");
        assert_eq!(all.try_recv().unwrap().payload.unwrap()["deltaText"], "for nobody");
    }

    #[test]
    fn a_full_stream_drops_and_reports_lagged_with_the_count_in_order() {
        let hub = Hub::new(16, 2);
        let (_, mut rx) = hub.route("k");
        for i in 0..6 {
            hub.deliver(chat("k", &format!("e{i}")));
        }
        // Two fit; four were dropped.
        assert_eq!(delta_text(&rx.try_recv().unwrap()), Some("e0"));
        assert_eq!(delta_text(&rx.try_recv().unwrap()), Some("e1"));
        assert!(rx.try_recv().is_err());
        hub.deliver(chat("k", "e6"));
        match rx.try_recv().unwrap() {
            SessionEvent::Lagged(n) => assert_eq!(n, 4),
            other => panic!("expected Lagged, got {other:?}"),
        }
        assert_eq!(delta_text(&rx.try_recv().unwrap()), Some("e6"));
        assert!(rx.try_recv().is_err());
    }

    #[test]
    fn dropped_streams_are_forgotten_and_markers_reach_every_stream() {
        let hub = Hub::new(16, 4);
        let (id_a, a) = hub.route("a");
        let (_, mut b) = hub.route("b");
        assert_eq!(hub.routed_keys(), 2);
        drop(a);
        hub.deliver(chat("a", "x"));
        assert_eq!(hub.routed_keys(), 1, "a closed receiver is pruned on delivery");
        hub.unroute("a", id_a);
        hub.mark_all(SessionEvent::Disconnected);
        hub.mark_all(SessionEvent::Reconnected);
        assert!(matches!(b.try_recv().unwrap(), SessionEvent::Disconnected));
        assert!(matches!(b.try_recv().unwrap(), SessionEvent::Reconnected));
        hub.close();
        assert_eq!(hub.routed_keys(), 0);
        assert!(matches!(b.try_recv(), Err(mpsc::error::TryRecvError::Disconnected)));
    }
}
