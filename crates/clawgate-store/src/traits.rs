//! The capabilities the gateway needs from storage. The rest of the gateway depends on these
//! traits, never on a backend, so SQLite and Postgres (and test fakes) are interchangeable.
//!
//! Methods return `impl Future + Send` rather than being `async fn` so callers may hold the
//! futures across `tokio::spawn`.

use std::future::Future;

use crate::{
    DeviceTokenRecord, IdempotencyEntry, InsertOutcome, NewPairingRequest, PairedDevice, PairingDecision,
    PairingRequest, Result,
};

/// Small named settings that must survive restarts.
pub trait KvStore: Send + Sync {
    /// The value stored under `key`.
    fn get(&self, key: &str) -> impl Future<Output = Result<Option<String>>> + Send;

    /// Stores `value` under `key`, replacing any previous value.
    fn set(&self, key: &str, value: &str) -> impl Future<Output = Result<()>> + Send;

    /// The value under `key`; if there is none, stores `init()` first. Atomic: when several
    /// callers race, all of them get the value that was stored first (used for the generated
    /// gateway token, which must never change once handed out). `init` is only called when
    /// the key looks absent, and its result may be discarded if another caller wins.
    fn get_or_init(
        &self,
        key: &str,
        init: impl FnOnce() -> String + Send,
    ) -> impl Future<Output = Result<String>> + Send;
}

/// Devices allowed to connect with their own key.
pub trait DeviceStore: Send + Sync {
    /// Inserts `device`, or replaces every field of the stored record with the same
    /// `device_id`. Tokens issued to the device are kept.
    fn upsert_paired(&self, device: &PairedDevice) -> impl Future<Output = Result<()>> + Send;

    /// The paired device with this id.
    fn get_paired(&self, device_id: &str) -> impl Future<Output = Result<Option<PairedDevice>>> + Send;

    /// All paired devices, oldest pairing first.
    fn list_paired(&self) -> impl Future<Output = Result<Vec<PairedDevice>>> + Send;

    /// Unpairs a device. In one transaction, also deletes its device tokens and its pending
    /// pairing requests (resolved requests stay as history). `false` if it was not paired.
    fn remove_paired(&self, device_id: &str) -> impl Future<Output = Result<bool>> + Send;

    /// Records a successful connect. `false` if the device is not paired.
    fn touch_last_seen(&self, device_id: &str, at_ms: i64) -> impl Future<Output = Result<bool>> + Send;
}

/// Pairing requests waiting for (or resolved by) an operator.
pub trait PairingStore: Send + Sync {
    /// Records that a device asks to pair. If that device already has a *pending* request,
    /// that request is updated with the new role, scopes, reason and metadata and returned
    /// with its original `request_id`, so reconnect loops do not pile up requests. Otherwise a
    /// new pending request with a fresh UUID v4 id is created.
    fn create_or_refresh_request(
        &self,
        new: &NewPairingRequest,
        now_ms: i64,
    ) -> impl Future<Output = Result<PairingRequest>> + Send;

    /// The request with this id, whatever its status.
    fn get_request(&self, request_id: &str) -> impl Future<Output = Result<Option<PairingRequest>>> + Send;

    /// Pending requests, oldest first.
    fn list_pending(&self) -> impl Future<Output = Result<Vec<PairingRequest>>> + Send;

    /// Resolves a pending request and returns it as resolved. [`PairingDecision::Approve`]
    /// pairs the device exactly as [`PairingStore::approve_request`] does, in the same
    /// transaction. Errors: [`crate::StoreError::NotFound`] for an unknown id,
    /// [`crate::StoreError::Conflict`] if it is already resolved.
    fn resolve_request(
        &self,
        request_id: &str,
        decision: PairingDecision,
        resolved_by: &str,
        now_ms: i64,
    ) -> impl Future<Output = Result<PairingRequest>> + Send;

    /// Approves a pending request and pairs its device, in one transaction: the request is
    /// marked approved and the device record is created or updated — its roles and scopes
    /// become the union of what it had and what the request asked for, its metadata is taken
    /// from the request, and `approved_via` is `resolved_by`. Returns the paired device.
    /// Errors as for [`PairingStore::resolve_request`].
    fn approve_request(
        &self,
        request_id: &str,
        resolved_by: &str,
        now_ms: i64,
    ) -> impl Future<Output = Result<PairedDevice>> + Send;

    /// Deletes pending requests last refreshed before `older_than_ms`; returns how many.
    fn expire_pending(&self, older_than_ms: i64) -> impl Future<Output = Result<u64>> + Send;
}

/// Per-device bearer tokens handed out after pairing (`hello-ok.auth.deviceToken`).
pub trait DeviceTokenStore: Send + Sync {
    /// Issues a fresh random token for (`device_id`, `role`), replacing (and so invalidating)
    /// any previous one. Returns the plain token — the only time it exists outside the
    /// client — and its record. [`crate::StoreError::NotFound`] if the device is not paired.
    fn issue(
        &self,
        device_id: &str,
        role: &str,
        scopes: &[String],
        now_ms: i64,
    ) -> impl Future<Output = Result<(String, DeviceTokenRecord)>> + Send;

    /// The live (not revoked) token record of `device_id` that `plain_token` matches, compared
    /// in constant time.
    fn verify(
        &self,
        device_id: &str,
        plain_token: &str,
    ) -> impl Future<Output = Result<Option<DeviceTokenRecord>>> + Send;

    /// Revokes the token of (`device_id`, `role`). `false` if there was no live token.
    fn revoke(&self, device_id: &str, role: &str, now_ms: i64) -> impl Future<Output = Result<bool>> + Send;

    /// Every token record of a device, revoked ones included, ordered by role.
    fn list_for_device(&self, device_id: &str) -> impl Future<Output = Result<Vec<DeviceTokenRecord>>> + Send;
}

/// Remembered outcomes of requests that carry an idempotency key, so a retried request is
/// answered from the record instead of running twice.
pub trait IdempotencyStore: Send + Sync {
    /// The entry under `scope_key`.
    fn get(&self, scope_key: &str) -> impl Future<Output = Result<Option<IdempotencyEntry>>> + Send;

    /// Atomically claims `scope_key`: inserts the entry if the key is new, otherwise returns
    /// the existing entry untouched. Of several concurrent callers exactly one sees
    /// [`InsertOutcome::Inserted`].
    fn insert_if_absent(
        &self,
        scope_key: &str,
        status: &str,
        payload: &serde_json::Value,
        now_ms: i64,
    ) -> impl Future<Output = Result<InsertOutcome>> + Send;

    /// Replaces status and payload of an existing entry. [`crate::StoreError::NotFound`] if
    /// the key is absent (e.g. pruned).
    fn update(
        &self,
        scope_key: &str,
        status: &str,
        payload: &serde_json::Value,
        now_ms: i64,
    ) -> impl Future<Output = Result<()>> + Send;

    /// Deletes entries last updated before `older_than_ms`, then all but the `keep_max` most
    /// recently updated. Returns how many were deleted.
    fn prune(&self, older_than_ms: i64, keep_max: usize) -> impl Future<Output = Result<u64>> + Send;
}

/// Everything the gateway foundation needs from one store. Implemented for every type that
/// has all the capabilities.
pub trait GatewayStore: KvStore + DeviceStore + PairingStore + DeviceTokenStore + IdempotencyStore {}

impl<T> GatewayStore for T where T: KvStore + DeviceStore + PairingStore + DeviceTokenStore + IdempotencyStore {}
