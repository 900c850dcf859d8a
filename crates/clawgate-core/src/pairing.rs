//! `PairingService`: device pairing requests, their decisions and the announcements that go
//! with them.
//!
//! Built with what it needs — a [`PairingStore`] and an [`Events`] handle — so every write of a
//! request is followed by its one announcement, and the one lock that serialises a request's
//! writes with its approval lives next to them.

use std::sync::Arc;

use clawgate_protocol::methods::devices::PairDecision;
use clawgate_store::{NewPairingRequest, PairedDevice, PairingDecision, PairingRequest, PairingStore, StoreError};

use crate::events::Events;
use crate::gateway::Store;
use crate::time::now_ms;

/// Pending pairing requests older than this are dropped.
pub const PAIRING_REQUEST_TTL_MS: i64 = 24 * 60 * 60 * 1000;

/// Device pairing: requests, decisions, expiry. Generic over the store so a test can run it on
/// an in-memory one. Cheap to clone (with a cheap store): clones share the lock.
#[derive(Debug, Clone)]
pub struct PairingService<S = Store> {
    store: S,
    events: Events,
    lock: Arc<tokio::sync::Mutex<()>>,
}

impl<S: PairingStore> PairingService<S> {
    /// A service writing to `store` and announcing on `events`.
    pub fn new(store: S, events: Events) -> Self {
        Self { store, events, lock: Arc::default() }
    }

    /// The store of requests, paired devices and their tokens (what `device.*` reads).
    pub fn store(&self) -> &S {
        &self.store
    }

    /// Serialises writes to pending requests with their approval, so the scopes an approver was
    /// checked against are the scopes approved (a reconnect refreshes a pending request's
    /// scopes). Hold it across "check, then write".
    pub fn lock(&self) -> &Arc<tokio::sync::Mutex<()>> {
        &self.lock
    }

    /// Record (or refresh) a device's request and announce it; a `silent` one is approved on
    /// the spot and announced as resolved too. The caller holds [`PairingService::lock`].
    pub async fn request(&self, new: &NewPairingRequest, silent: bool) -> Result<PairingRequest, StoreError> {
        let request = self.store.create_or_refresh_request(new, now_ms()).await?;
        self.events.pair_requested(&request, silent);
        if silent {
            self.store.approve_request(&request.request_id, "silent", now_ms()).await?;
            self.events.pair_resolved(&request.request_id, &request.device_id, PairDecision::Approved);
        }
        Ok(request)
    }

    /// Approve a pending request (pairs its device) and announce it. The caller holds
    /// [`PairingService::lock`] from its scope check to here.
    pub async fn approve(&self, request_id: &str, resolved_by: &str) -> Result<PairedDevice, StoreError> {
        let device = self.store.approve_request(request_id, resolved_by, now_ms()).await?;
        self.events.pair_resolved(request_id, &device.device_id, PairDecision::Approved);
        Ok(device)
    }

    /// Reject a pending request and announce it.
    pub async fn reject(&self, request_id: &str, resolved_by: &str) -> Result<PairingRequest, StoreError> {
        let r = self.store.resolve_request(request_id, PairingDecision::Reject, resolved_by, now_ms()).await?;
        self.events.pair_resolved(request_id, &r.device_id, PairDecision::Rejected);
        Ok(r)
    }

    /// Drop pending requests nobody decided within [`PAIRING_REQUEST_TTL_MS`] of `now`.
    pub async fn expire(&self, now: i64) -> Result<u64, StoreError> {
        self.store.expire_pending(now - PAIRING_REQUEST_TTL_MS).await
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::broadcast::{AuthKind, Broadcaster, ClientHandle, Outbound};
    use crate::presence::PresenceState;
    use clawgate_store::{DeviceStore, SqliteStore};
    use serde_json::Value;

    fn new_request(device: &str) -> NewPairingRequest {
        NewPairingRequest {
            device_id: device.into(),
            public_key: format!("pk-{device}"),
            display_name: None,
            platform: Some("linux".into()),
            device_family: None,
            client_id: Some("cli".into()),
            client_mode: Some("cli".into()),
            role: "operator".into(),
            scopes: vec!["operator.read".into()],
            remote_ip: Some("127.0.0.1".into()),
            reason: "not-paired".into(),
        }
    }

    fn events_seen(rx: &mut tokio::sync::mpsc::UnboundedReceiver<Outbound>) -> Vec<Value> {
        let mut out = Vec::new();
        while let Ok(o) = rx.try_recv() {
            if let Some(t) = o.text() {
                out.push(serde_json::from_str(&t).expect("json frame"));
            }
        }
        out
    }

    /// On an in-memory store: a silent request is stored, approved and announced as requested
    /// then resolved; a rejected one is announced with its decision.
    #[tokio::test]
    async fn requests_and_decisions_are_written_then_announced() {
        let store = SqliteStore::open_in_memory().await.expect("store");
        let clients = Arc::new(Broadcaster::default());
        let (operator, mut rx, _) = ClientHandle::new(
            "c1".into(),
            "operator".into(),
            vec!["operator.pairing".into()],
            None,
            AuthKind::SharedSecret,
            1 << 20,
        );
        clients.add(operator);
        let events = Events::new(clients, Arc::new(PresenceState::new(Value::Null)));
        let pairing = PairingService::new(store.clone(), events);

        let silent = pairing.request(&new_request("d1"), true).await.expect("silent request");
        assert!(store.get_paired("d1").await.expect("read").is_some(), "paired on the spot");
        let seen = events_seen(&mut rx);
        let names: Vec<&str> = seen.iter().filter_map(|e| e["event"].as_str()).collect();
        assert_eq!(names, ["device.pair.requested", "device.pair.resolved"]);
        assert_eq!(seen[0]["payload"]["silent"], true);
        assert_eq!(seen[1]["payload"]["requestId"], silent.request_id.as_str());
        assert_eq!(seen[1]["payload"]["decision"], "approved");

        let pending = pairing.request(&new_request("d2"), false).await.expect("request");
        assert_eq!(store.list_pending().await.expect("list").len(), 1);
        pairing.reject(&pending.request_id, "test").await.expect("reject");
        let seen = events_seen(&mut rx);
        assert_eq!(seen.len(), 2, "{seen:?}");
        assert_eq!(seen[1]["event"], "device.pair.resolved");
        assert_eq!(seen[1]["payload"]["decision"], "rejected");
        assert!(store.list_pending().await.expect("list").is_empty());
    }
}
