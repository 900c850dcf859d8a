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
use crate::{
    EnqueueOutcome, EntryStatus, RunKind, RunRecord, RunStatus, SessionQuery, SessionRecord, TranscriptEntry,
    TranscriptRole,
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

/// Chat sessions: one record per session key, pointing at its current transcript.
pub trait SessionStore: Send + Sync {
    /// The session under `key`, created first if absent (with a fresh UUID v4 session id, no
    /// label and empty meta). Atomic: racing callers all get the one session that was
    /// created. An existing session is returned as it is, even if `agent_id` differs.
    fn ensure_session(
        &self,
        key: &str,
        agent_id: &str,
        now_ms: i64,
    ) -> impl Future<Output = Result<SessionRecord>> + Send;

    /// The session under `key`.
    fn get_session(&self, key: &str) -> impl Future<Output = Result<Option<SessionRecord>>> + Send;

    /// Sessions matching `query`, most recently updated first (ties by key).
    fn list_sessions(&self, query: &SessionQuery) -> impl Future<Output = Result<Vec<SessionRecord>>> + Send;

    /// Applies `patch` (a JSON object) to the session as a JSON merge patch (RFC 7386) of its
    /// meta — objects merge, `null` deletes — except that a `label` key sets (string) or
    /// clears (`null`) the label instead of going into meta. Returns the patched session.
    /// Errors: [`crate::StoreError::NotFound`] for an unknown key,
    /// [`crate::StoreError::Conflict`] if the patch is not an object or its label is neither
    /// a string nor `null`.
    fn patch_session(
        &self,
        key: &str,
        patch: &serde_json::Value,
        now_ms: i64,
    ) -> impl Future<Output = Result<SessionRecord>> + Send;

    /// Starts a new transcript: the session gets a fresh session id (so it shows no messages)
    /// and keeps its label and meta. The old transcript stays stored under the old id.
    /// [`crate::StoreError::NotFound`] for an unknown key.
    fn reset_session(&self, key: &str, now_ms: i64) -> impl Future<Output = Result<SessionRecord>> + Send;

    /// Deletes the session. With `delete_transcript`, also deletes, in the same transaction,
    /// every transcript the key has had (the current one and those left by resets); without,
    /// they stay stored but unreachable through the key. Queued runs are not touched.
    /// `false` if there was no such session.
    fn delete_session(&self, key: &str, delete_transcript: bool) -> impl Future<Output = Result<bool>> + Send;

    /// How many sessions exist, archived ones included.
    fn count_sessions(&self) -> impl Future<Output = Result<u64>> + Send;
}

/// Append-only transcripts, addressed by session id and read in windows.
///
/// Every entry is written whole in one transaction, so a crash leaves each transcript a
/// prefix of what was appended: never a half-written entry, never a gap or a duplicate seq.
/// The gateway builds turn atomicity on that by appending the user message when a run is
/// accepted and the assistant message exactly once, when the run ends (final, or aborted
/// with the partial text): a crash mid-turn leaves the reply absent, never half there.
pub trait TranscriptStore: Send + Sync {
    /// Appends an entry with the next seq of `session_id` (1 for the first; seqs are never
    /// reused, even after [`TranscriptStore::compact`]). If a session currently has this
    /// session id, its `updated_at_ms`, `last_message_at_ms` and `message_count` follow.
    fn append(
        &self,
        session_id: &str,
        role: TranscriptRole,
        content: &serde_json::Value,
        run_id: Option<&str>,
        status: EntryStatus,
        now_ms: i64,
    ) -> impl Future<Output = Result<TranscriptEntry>> + Send;

    /// The newest `limit` entries of `session_id` with a seq below `before_seq` (all seqs if
    /// `None`), in ascending seq order. Reads only those entries, whatever the transcript's
    /// length, so paging backwards with `before_seq = first returned seq` is cheap.
    fn tail(
        &self,
        session_id: &str,
        limit: usize,
        before_seq: Option<i64>,
    ) -> impl Future<Output = Result<Vec<TranscriptEntry>>> + Send;

    /// The entry at `seq`.
    fn get_entry(&self, session_id: &str, seq: i64) -> impl Future<Output = Result<Option<TranscriptEntry>>> + Send;

    /// How many entries `session_id` holds (after any compaction).
    fn count_entries(&self, session_id: &str) -> impl Future<Output = Result<u64>> + Send;

    /// Deletes all but the newest `keep_last` entries of `session_id`; returns how many went.
    /// Later appends continue the seq numbering. See the crate docs for when it is called.
    fn compact(&self, session_id: &str, keep_last: usize) -> impl Future<Output = Result<u64>> + Send;

    /// Every entry carrying `run_id`, in append order (typically the user message and the
    /// reply of one run).
    fn find_by_run(&self, run_id: &str) -> impl Future<Output = Result<Vec<TranscriptEntry>>> + Send;
}

/// The durable per-session lane queue: runs wait in enqueue order and a session runs one at a
/// time, across restarts.
pub trait RunStore: Send + Sync {
    /// Queues a run, idempotently on `run_id` (the request's idempotency key): of several
    /// callers with one run id exactly one sees [`EnqueueOutcome::Inserted`]; the others get
    /// the stored run, untouched, as [`EnqueueOutcome::Existing`].
    fn enqueue(
        &self,
        run_id: &str,
        session_key: &str,
        kind: RunKind,
        request: &serde_json::Value,
        now_ms: i64,
    ) -> impl Future<Output = Result<EnqueueOutcome>> + Send;

    /// Atomically starts the session's next run: if none of its runs is running, marks the
    /// first-enqueued queued one running (`started_at_ms = now_ms`) and returns it. `None` if
    /// a run is already running or nothing is queued.
    fn claim_next(&self, session_key: &str, now_ms: i64) -> impl Future<Output = Result<Option<RunRecord>>> + Send;

    /// Ends a queued or running run with a terminal `status` and optional `result`, freeing the
    /// lane; returns the finished run. Errors: [`crate::StoreError::NotFound`] for an unknown
    /// run, [`crate::StoreError::Conflict`] if `status` is not terminal or the run is already
    /// finished.
    fn finish(
        &self,
        run_id: &str,
        status: RunStatus,
        result: Option<&serde_json::Value>,
        now_ms: i64,
    ) -> impl Future<Output = Result<RunRecord>> + Send;

    /// The run with this id.
    fn get_run(&self, run_id: &str) -> impl Future<Output = Result<Option<RunRecord>>> + Send;

    /// Sessions that have queued runs, each once, the one with the oldest queued run first
    /// (restart recovery: call [`RunStore::claim_next`] for each).
    fn list_queued_sessions(&self) -> impl Future<Output = Result<Vec<String>>> + Send;

    /// At startup: runs still marked running were cut off by a crash; marks them interrupted
    /// (`ended_at_ms = now_ms`), freeing their lanes. Returns how many.
    fn mark_interrupted_running(&self, now_ms: i64) -> impl Future<Output = Result<u64>> + Send;

    /// Deletes finished runs that ended before `older_than_ms`; queued and running runs stay.
    /// Returns how many were deleted.
    fn prune_finished(&self, older_than_ms: i64) -> impl Future<Output = Result<u64>> + Send;
}

/// Everything the gateway needs from one store. Implemented for every type that has all the
/// capabilities.
pub trait GatewayStore:
    KvStore + DeviceStore + PairingStore + DeviceTokenStore + IdempotencyStore + SessionStore + TranscriptStore + RunStore
{
}

impl<T> GatewayStore for T where
    T: KvStore
        + DeviceStore
        + PairingStore
        + DeviceTokenStore
        + IdempotencyStore
        + SessionStore
        + TranscriptStore
        + RunStore
{
}
