//! Presence entries (who is connected) and the health snapshot, each with a version that is
//! bumped on change and attached to the corresponding broadcast as `stateVersion`.

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicU64, Ordering};

use parking_lot::Mutex;
use serde_json::{Value, json};

use clawgate_protocol::connect::ConnectParams;
use clawgate_protocol::frames::StateVersion;

/// The gateway's own entry sorts first.
const SELF_KEY: &str = "\0gateway";

/// Presence lists are capped, as upstream caps them, so one broadcast stays small.
pub const MAX_PRESENCE_ENTRIES: usize = 200;

/// Presence and health state.
#[derive(Debug)]
pub struct PresenceState {
    entries: Mutex<BTreeMap<String, Value>>,
    presence_version: AtomicU64,
    health_version: AtomicU64,
}

impl PresenceState {
    /// Start with the gateway's own entry.
    pub fn new(self_entry: Value) -> Self {
        let mut entries = BTreeMap::new();
        entries.insert(SELF_KEY.to_owned(), self_entry);
        Self { entries: Mutex::new(entries), presence_version: AtomicU64::new(1), health_version: AtomicU64::new(1) }
    }

    /// Current versions.
    pub fn state_version(&self) -> StateVersion {
        StateVersion {
            presence: self.presence_version.load(Ordering::Acquire),
            health: self.health_version.load(Ordering::Acquire),
        }
    }

    /// Bump the health version (after a refresh).
    pub fn bump_health(&self) -> StateVersion {
        self.health_version.fetch_add(1, Ordering::AcqRel);
        self.state_version()
    }

    /// The entries, at most [`MAX_PRESENCE_ENTRIES`] (the gateway's own first).
    pub fn list(&self) -> Vec<Value> {
        self.entries.lock().values().take(MAX_PRESENCE_ENTRIES).cloned().collect()
    }

    /// Whether an entry exists.
    pub fn contains(&self, key: &str) -> bool {
        self.entries.lock().contains_key(key)
    }

    /// Insert or replace an entry; returns the new versions.
    pub fn upsert(&self, key: &str, entry: Value) -> StateVersion {
        self.entries.lock().insert(key.to_owned(), entry);
        self.presence_version.fetch_add(1, Ordering::AcqRel);
        self.state_version()
    }

    /// Update fields of an existing entry (e.g. `system-event` text); false if absent.
    pub fn update(&self, key: &str, f: impl FnOnce(&mut Value)) -> Option<StateVersion> {
        let mut m = self.entries.lock();
        let entry = m.get_mut(key)?;
        f(entry);
        drop(m);
        self.presence_version.fetch_add(1, Ordering::AcqRel);
        Some(self.state_version())
    }

    /// Remove an entry; returns the new versions if something was removed.
    pub fn remove(&self, key: &str) -> Option<StateVersion> {
        let removed = self.entries.lock().remove(key).is_some();
        if removed {
            self.presence_version.fetch_add(1, Ordering::AcqRel);
            Some(self.state_version())
        } else {
            None
        }
    }
}

/// The presence entry of a connecting client (fields as upstream's `PresenceEntry`).
pub fn client_entry(
    p: &ConnectParams,
    device_id: Option<&str>,
    role: &str,
    scopes: &[String],
    ip: &str,
    now: i64,
) -> Value {
    let mut e = json!({
        "clientId": p.client.id,
        "mode": p.client.mode,
        "host": p.client.display_name.as_deref().unwrap_or(&p.client.id),
        "ip": ip,
        "version": p.client.version,
        "platform": p.client.platform,
        "roles": [role],
        "scopes": scopes,
        "reason": "connect",
        "onlineSince": now,
        "ts": now,
        "text": format!("Client: {} · mode {}", p.client.id, p.client.mode),
    });
    if let Some(df) = &p.client.device_family {
        e["deviceFamily"] = json!(df);
    }
    if let Some(inst) = &p.client.instance_id {
        e["instanceId"] = json!(inst);
    }
    if let Some(d) = device_id {
        e["deviceId"] = json!(d);
    }
    // The schema requires non-empty strings where present.
    if let Some(obj) = e.as_object_mut() {
        obj.retain(|_, v| !v.as_str().is_some_and(str::is_empty));
    }
    e
}
