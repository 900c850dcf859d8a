//! The capabilities the gateway needs from storage. The rest of the gateway depends on these
//! traits, never on a backend, so SQLite and Postgres (and test fakes) are interchangeable.
//! What each one is for is tabled in the crate docs.
//!
//! Methods return `impl Future + Send` rather than being `async fn` so callers may hold the
//! futures across `tokio::spawn`.

use std::collections::BTreeMap;
use std::future::Future;

use crate::{
    ApprovalRecord, ApprovalStatus, CronJob, CronRunRecord, ExecPolicyRecord, JobQuery, JobRecord, JobStatus,
    NewApproval, NewJob,
};
use crate::{
    ChannelPairing, ChannelPairingStatus, InboxRecord, InboxStatus, NewOutbound, OutboxCounts, OutboxRecord,
    OutboxStatus,
};
use crate::{
    DeviceTokenRecord, IdempotencyEntry, InsertOutcome, NewPairingRequest, PairedDevice, PairingDecision,
    PairingRequest, Result,
};
use crate::{
    EnqueueOutcome, EntryStatus, NewEntry, RunKind, RunRecord, RunStatus, SessionQuery, SessionRecord, StartedRun,
    TranscriptEntry, TranscriptRole,
};
use crate::{GatewayRecord, LeaseRecord};

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

    /// Deletes every key that starts with `prefix` (compared byte for byte: `%` and `_` are
    /// not wildcards); returns how many were deleted. Used to forget what a channel account
    /// kept between runs when it logs out.
    fn delete_prefix(&self, prefix: &str) -> impl Future<Output = Result<u64>> + Send;
}

/// Failed-auth lockouts the gateways of one database share (a lockout started on one gateway is
/// applied by all of them). Addresses are the limiter's bucket texts.
pub trait LockoutStore: Send + Sync {
    /// Records that `bucket` is locked out until `until_ms` (a later lockout of the same bucket
    /// extends it; an earlier one leaves it).
    fn share_lockout(&self, bucket: &str, until_ms: i64) -> impl Future<Output = Result<()>> + Send;

    /// The lockouts still in force at `now_ms`: `(bucket, until_ms)`, at most `limit`, the
    /// longest-lasting first. Expired ones are deleted on the way.
    fn active_lockouts(&self, now_ms: i64, limit: usize) -> impl Future<Output = Result<Vec<(String, i64)>>> + Send;
}

/// Request-rate buckets the gateways of one database share (an access token's `--rate` holds
/// across all of them). A bucket is named by `key` (`token:<id>`) and created full on first use;
/// the arithmetic is [`crate::BucketRate`]'s. Times are microseconds of the caller's wall clock.
pub trait RateBucketStore: Send + Sync {
    /// Takes one token from bucket `key` at `rate`, in one atomic statement: concurrent takers on
    /// any gateway are granted at most the bucket's tokens between them.
    fn take_rate_token(
        &self,
        key: &str,
        rate: crate::BucketRate,
        now_us: i64,
    ) -> impl Future<Output = Result<crate::RateTake>> + Send;

    /// Deletes the buckets that are full again at `now_us` (a missing row is a full bucket);
    /// returns how many.
    fn prune_rate_buckets(&self, now_us: i64) -> impl Future<Output = Result<u64>> + Send;
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
    /// first-enqueued queued one running (`started_at_ms = now_ms`, no owner) and returns it.
    /// `None` if a run is already running or nothing is queued.
    fn claim_next(&self, session_key: &str, now_ms: i64) -> impl Future<Output = Result<Option<RunRecord>>> + Send;

    /// [`RunStore::claim_next`] and the run's first transcript entry in one transaction: a crash
    /// leaves either the run queued and no entry, or the run running with its entry (never a
    /// running run without it). When a run is claimed, `prepare` is called (inside the
    /// transaction: it must be quick) with the run and its session (`None` if the key has no
    /// session); the entry it returns is appended to that session's current transcript with the
    /// run's id and `created_at_ms = now_ms`, as [`TranscriptStore::append`] would. With no
    /// session the entry is not written ([`StartedRun::entry`] is `None`). `None` when nothing
    /// was claimed (`prepare` is not called). The run records `owner` (the claiming gateway's
    /// id), so recovery never touches a run a live gateway is executing.
    fn start_next<T, F>(
        &self,
        session_key: &str,
        owner: &str,
        now_ms: i64,
        prepare: F,
    ) -> impl Future<Output = Result<Option<StartedRun<T>>>> + Send
    where
        T: Send,
        F: FnOnce(&mut RunRecord, Option<&SessionRecord>) -> (T, Option<NewEntry>) + Send;

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

    /// Every queued run as `(run id, session key)`, in queue order (restart recovery: each is
    /// registered so a waiter or an abort finds it before its lane claims it).
    fn list_queued_runs(&self) -> impl Future<Output = Result<Vec<(String, String)>>> + Send;

    /// Runs still marked running whose gateway is gone were cut off by a crash; marks them
    /// interrupted (`ended_at_ms = now_ms`), freeing their lanes, and returns how many. A
    /// running run with no transcript entry never started its turn: it goes back to the queue
    /// at its place (owner cleared).
    ///
    /// A gateway is gone unless it is registered ([`ClusterStore::upsert_gateway`]) with
    /// `seen_at_ms >= alive_since_ms`; runs with no owner ([`RunStore::claim_next`]) count as
    /// a gone gateway's. Called at startup (after registering, so the caller's own runs are
    /// spared) and periodically, for gateways that die while others run.
    fn mark_interrupted_running(&self, now_ms: i64, alive_since_ms: i64) -> impl Future<Output = Result<u64>> + Send;

    /// Deletes finished runs that ended before `older_than_ms`; queued and running runs stay.
    /// Returns how many were deleted.
    fn prune_finished(&self, older_than_ms: i64) -> impl Future<Output = Result<u64>> + Send;
}

/// Durable chat-channel state: the inbox, the outbox and DM pairing requests.
///
/// # Delivery guarantees
///
/// * **Inbound, at most once.** [`ChannelStore::record_inbound`] is unique on (channel,
///   account, message_id) and is called before anything acts on a message, so a platform that
///   redelivers an update (webhook retry, long-poll offset lost in a crash) gets `None` and the
///   message is not processed twice — for as long as the row is kept:
///   [`ChannelStore::prune_channel_rows`] ends the dedup window of finished rows.
/// * **Reply queued whole or not at all.** [`ChannelStore::queue_outbound`] inserts every chunk
///   of a reply and marks the inbox row answered in one transaction: after a crash an inbox row
///   is either answered with all its chunks queued, or not answered with none of them.
///   Idempotency keys make queueing the same reply again a no-op.
/// * **Outbound, at least once; the duplicate window.** The sender hands a queued row to the
///   platform and then records that with [`ChannelStore::mark_outbound_sent`], a single-row
///   UPDATE. A crash after the platform accepted the message and before that UPDATE committed
///   leaves the row queued, and it is sent again after the restart. That window — one network
///   round trip's result plus one commit, per chunk — is the only place a duplicate message can
///   come from; the store cannot close it because the platform's send is not part of its
///   transaction.
pub trait ChannelStore: Send + Sync {
    /// Records an inbound message as [`InboxStatus::Received`]. `Some(id)` if it is new;
    /// `None` if (channel, account, message_id) was recorded before (and not yet pruned), in
    /// which case nothing changes.
    #[allow(clippy::too_many_arguments)]
    fn record_inbound(
        &self,
        channel: &str,
        account: &str,
        message_id: &str,
        chat_id: &str,
        sender_id: &str,
        message: &serde_json::Value,
        now_ms: i64,
    ) -> impl Future<Output = Result<Option<i64>>> + Send;

    /// The inbox row with this id.
    fn get_inbound(&self, id: i64) -> impl Future<Output = Result<Option<InboxRecord>>> + Send;

    /// Sets the row's status and `updated_at_ms`, and `reason`, `run_id` and `session_key`
    /// where they are `Some` (`None` leaves the column as it is). Any transition is allowed:
    /// the policy is core's. [`crate::StoreError::NotFound`] for an unknown id.
    fn set_inbound_status(
        &self,
        id: i64,
        status: InboxStatus,
        reason: Option<&str>,
        run_id: Option<&str>,
        session_key: Option<&str>,
        now_ms: i64,
    ) -> impl Future<Output = Result<()>> + Send;

    /// Received or routed rows, oldest (lowest id) first, at most `limit`: what a restart must
    /// pick up again.
    fn pending_inbound(&self, limit: u32) -> impl Future<Output = Result<Vec<InboxRecord>>> + Send;

    /// In one transaction: inserts every item as [`OutboxStatus::Queued`] (no attempts,
    /// `next_attempt_at_ms = now_ms`, `inbox_id = answers`) in slice order, so ids ascend with
    /// it — an item whose idempotency key is already stored is skipped, whatever that row's
    /// state — and, if `answers` is `Some(id)`, sets that inbox row to
    /// [`InboxStatus::Answered`]. Returns how many rows were newly inserted.
    /// [`crate::StoreError::NotFound`] (and nothing written) if `answers` names no inbox row.
    fn queue_outbound(
        &self,
        items: &[NewOutbound],
        answers: Option<i64>,
        now_ms: i64,
    ) -> impl Future<Output = Result<u64>> + Send;

    /// The oldest (lowest id) queued row of this account, whatever its `next_attempt_at_ms`:
    /// the sender keeps per-account order, so it waits for the head rather than skipping it.
    /// `None` if nothing is queued.
    fn next_outbound(&self, channel: &str, account: &str) -> impl Future<Output = Result<Option<OutboxRecord>>> + Send;

    /// Rows of this account with this status (every status if `None`), oldest first, at most
    /// `limit`. For status reports and tests.
    fn list_outbound(
        &self,
        channel: &str,
        account: &str,
        status: Option<OutboxStatus>,
        limit: u32,
    ) -> impl Future<Output = Result<Vec<OutboxRecord>>> + Send;

    /// The row queued under this idempotency key.
    fn outbound_by_key(&self, idempotency_key: &str) -> impl Future<Output = Result<Option<OutboxRecord>>> + Send;

    /// Records that the platform accepted the row: status sent, `platform_message_id`,
    /// `updated_at_ms`. Exactly one single-row UPDATE, because the time between the platform's
    /// answer and this commit is the duplicate window (see the trait docs) and must stay as
    /// short as one statement. Idempotent: marking a sent row again is `Ok` and keeps the first
    /// platform id. A failed row becomes sent (the platform's word wins).
    /// [`crate::StoreError::NotFound`] for an unknown id.
    fn mark_outbound_sent(
        &self,
        id: i64,
        platform_message_id: &str,
        now_ms: i64,
    ) -> impl Future<Output = Result<()>> + Send;

    /// A delivery attempt failed and will be retried: `attempts += 1`, `next_attempt_at_ms`,
    /// `last_error`, `updated_at_ms`; the row stays queued (and stays its account's head).
    /// Errors: [`crate::StoreError::NotFound`] for an unknown id,
    /// [`crate::StoreError::Conflict`] if the row is no longer queued (a sent row must never
    /// go back to the queue).
    fn mark_outbound_retry(
        &self,
        id: i64,
        next_attempt_at_ms: i64,
        error: &str,
        now_ms: i64,
    ) -> impl Future<Output = Result<()>> + Send;

    /// Delivery is given up: `attempts += 1`, status failed, `last_error`, `updated_at_ms`.
    /// Marking a failed row again is `Ok` and changes nothing. Errors:
    /// [`crate::StoreError::NotFound`] for an unknown id, [`crate::StoreError::Conflict`] for
    /// a sent row.
    fn mark_outbound_failed(&self, id: i64, error: &str, now_ms: i64) -> impl Future<Output = Result<()>> + Send;

    /// How many rows of this account are in each state.
    fn outbox_counts(&self, channel: &str, account: &str) -> impl Future<Output = Result<OutboxCounts>> + Send;

    /// The (channel, account) pairs that have queued rows, the one waiting longest first: at
    /// restart, each is replayed once its channel is ready.
    fn accounts_with_queued_outbound(&self) -> impl Future<Output = Result<Vec<(String, String)>>> + Send;

    /// Deletes answered and dropped inbox rows and sent and failed outbox rows last updated
    /// before `older_than_ms`, in one transaction. Returns how many rows were deleted. Pruned
    /// inbox rows no longer dedup redeliveries, so the prune age is the dedup window.
    fn prune_channel_rows(&self, older_than_ms: i64) -> impl Future<Output = Result<u64>> + Send;

    /// Asks pairing for an unknown DM sender. In one transaction:
    /// * an approved sender's record, or a pending request that has not expired
    ///   (`expires_at_ms > now_ms`), is returned unchanged (the caller checks the status);
    /// * otherwise (no row, an expired request, a rejected one) a pending request with `code`
    ///   is created or replaces the row, created now and expiring at `expires_at_ms`.
    ///
    /// Codes are unique among pending, unexpired requests, compared case-insensitively: if
    /// another sender's request holds `code`, [`crate::StoreError::Conflict`] and nothing
    /// changes — the caller generates another code and retries.
    #[allow(clippy::too_many_arguments)]
    fn request_channel_pairing(
        &self,
        channel: &str,
        account: &str,
        sender_id: &str,
        sender_name: Option<&str>,
        chat_id: &str,
        code: &str,
        now_ms: i64,
        expires_at_ms: i64,
    ) -> impl Future<Output = Result<ChannelPairing>> + Send;

    /// Resolves the pending, unexpired request with this code (case-insensitive), of this
    /// channel if one is given: approved (`approve`) or rejected, `resolved_at_ms = now_ms`.
    /// Returns the resolved record, or `None` if no such request is pending.
    fn resolve_channel_pairing(
        &self,
        code: &str,
        channel: Option<&str>,
        approve: bool,
        now_ms: i64,
    ) -> impl Future<Output = Result<Option<ChannelPairing>>> + Send;

    /// Whether the sender is approved.
    fn is_channel_sender_paired(
        &self,
        channel: &str,
        account: &str,
        sender_id: &str,
    ) -> impl Future<Output = Result<bool>> + Send;

    /// Pairings with this status (all if `None`), newest request first. Expired pending
    /// requests are left out either way: they can no longer be approved.
    fn list_channel_pairings(
        &self,
        status: Option<ChannelPairingStatus>,
        now_ms: i64,
    ) -> impl Future<Output = Result<Vec<ChannelPairing>>> + Send;

    /// Deletes the sender's row, whatever its status (revoking an approval). `true` if there
    /// was one.
    fn remove_channel_pairing(
        &self,
        channel: &str,
        account: &str,
        sender_id: &str,
    ) -> impl Future<Output = Result<bool>> + Send;
}

/// The durable ComfyUI job queue.
///
/// # State machine
///
/// * `insert_job` creates a job as [`JobStatus::Queued`] or, held for an operator,
///   [`JobStatus::AwaitingApproval`].
/// * [`JobStore::release_approval`]: awaiting_approval → queued (approved) or cancelled.
/// * [`JobStore::claim_next_queued`]: the queued job with the smallest seq → dispatched,
///   `attempts + 1`, `worker` set. Atomic: a job is claimed by one worker only.
/// * [`JobStore::set_job_running`]: dispatched or running → running (`prompt_id`).
/// * [`JobStore::set_job_progress`]: dispatched or running, status unchanged.
/// * [`JobStore::complete_job`]: dispatched or running → completed.
/// * [`JobStore::requeue_job`]: dispatched or running → queued (same seq, worker and prompt
///   cleared) if `attempts < max_attempts`, else → failed.
/// * [`JobStore::fail_job`]: any non-terminal → failed.
/// * [`JobStore::cancel_job`]: any non-terminal → cancelled; `Ok(None)` on a terminal job.
///
/// Completed, failed and cancelled are terminal. Any other transition is refused with
/// [`crate::StoreError::Conflict`] and changes nothing; an unknown id is
/// [`crate::StoreError::NotFound`]. Transitions that succeed return the job as it now is
/// (`updated_at_ms = now_ms`; entering a terminal status sets `ended_at_ms`).
pub trait JobStore: Send + Sync {
    /// Inserts a job: no attempts, empty outputs, the next seq.
    /// [`crate::StoreError::Conflict`] (and nothing written) if the id is taken, if `status`
    /// is neither queued nor awaiting approval, or if `max_attempts < 1`.
    fn insert_job(&self, job: &NewJob, now_ms: i64) -> impl Future<Output = Result<JobRecord>> + Send;

    /// Records a job that a worker already runs (a prompt started outside this gateway's queue,
    /// e.g. an approval granted on a ComfyUI-OpenClaw worker): inserted as running on
    /// `worker` with `prompt_id`, one attempt, `started_at_ms = now_ms`, so it is followed,
    /// delivered and reconciled like any other. `job.status` is ignored.
    /// [`crate::StoreError::Conflict`] (and nothing written) if the id is taken.
    fn adopt_job(
        &self,
        job: &NewJob,
        worker: &str,
        prompt_id: &str,
        now_ms: i64,
    ) -> impl Future<Output = Result<JobRecord>> + Send;

    /// The job with this id.
    fn get_job(&self, id: &str) -> impl Future<Output = Result<Option<JobRecord>>> + Send;

    /// Jobs matching `query`, newest (highest seq) first.
    fn list_jobs(&self, query: &JobQuery) -> impl Future<Output = Result<Vec<JobRecord>>> + Send;

    /// Where a queued job stands: (its 1-based position among queued jobs by seq, how many are
    /// queued). `None` if the job is unknown or not queued.
    fn queue_position(&self, id: &str) -> impl Future<Output = Result<Option<(u64, u64)>>> + Send;

    /// Atomically claims the oldest queued job for `worker`: dispatched, `attempts + 1`,
    /// `worker` set. Of concurrent claimers each job goes to one. `None` if nothing is queued.
    fn claim_next_queued(&self, worker: &str, now_ms: i64) -> impl Future<Output = Result<Option<JobRecord>>> + Send;

    /// ComfyUI accepted the prompt: running, `prompt_id` set, `started_at_ms` set on the first
    /// call of this attempt. From dispatched or running.
    fn set_job_running(&self, id: &str, prompt_id: &str, now_ms: i64)
    -> impl Future<Output = Result<JobRecord>> + Send;

    /// Replaces the progress report of a dispatched or running job.
    fn set_job_progress(
        &self,
        id: &str,
        progress: &serde_json::Value,
        now_ms: i64,
    ) -> impl Future<Output = Result<JobRecord>> + Send;

    /// The job finished with `outputs` (a JSON array): completed, error cleared. From
    /// dispatched or running.
    fn complete_job(
        &self,
        id: &str,
        outputs: &serde_json::Value,
        now_ms: i64,
    ) -> impl Future<Output = Result<JobRecord>> + Send;

    /// Gives up on a job: failed with `error`. From any non-terminal status.
    fn fail_job(&self, id: &str, error: &str, now_ms: i64) -> impl Future<Output = Result<JobRecord>> + Send;

    /// Cancels a job that has not ended: cancelled. Returns the job as it was *before*, so the
    /// caller sees whether a worker held it (and must be told to interrupt ComfyUI), or
    /// `None` if it had already ended (nothing changes). [`crate::StoreError::NotFound`] for
    /// an unknown id.
    fn cancel_job(&self, id: &str, now_ms: i64) -> impl Future<Output = Result<Option<JobRecord>>> + Send;

    /// The worker lost a dispatched or running job (worker gone, ComfyUI restarted). With
    /// attempts left (`attempts < max_attempts`) the job goes back to queued, keeping its seq
    /// (so it is next in line again), with `worker`, `prompt_id`, `progress` and
    /// `started_at_ms` cleared and `error` recorded; otherwise it fails with `error`. Returns
    /// the new status.
    fn requeue_job(&self, id: &str, error: &str, now_ms: i64) -> impl Future<Output = Result<JobStatus>> + Send;

    /// The operator decided the job's approval: an awaiting job becomes queued (`approved`) or
    /// cancelled.
    fn release_approval(&self, id: &str, approved: bool, now_ms: i64)
    -> impl Future<Output = Result<JobRecord>> + Send;

    /// Dispatched and running jobs held by `worker`, oldest first.
    fn jobs_on_worker(&self, worker: &str) -> impl Future<Output = Result<Vec<JobRecord>>> + Send;

    /// Every dispatched and running job, oldest first: what a restart must reconcile with
    /// the workers.
    fn active_jobs(&self) -> impl Future<Output = Result<Vec<JobRecord>>> + Send;

    /// How many jobs are in each status, keyed by the stored spelling; every status is
    /// present, zero if none.
    fn count_by_status(&self) -> impl Future<Output = Result<BTreeMap<String, u64>>> + Send;

    /// Records that output `filename` of the job was handed to delivery. `true` if this call
    /// marked it, `false` if it was marked before: of concurrent callers exactly one sees
    /// `true`, so each output is delivered once. [`crate::StoreError::NotFound`] for an
    /// unknown job.
    fn mark_output_delivered(
        &self,
        job_id: &str,
        filename: &str,
        now_ms: i64,
    ) -> impl Future<Output = Result<bool>> + Send;

    /// The job's delivered outputs, in the order they were marked.
    fn delivered_outputs(&self, job_id: &str) -> impl Future<Output = Result<Vec<String>>> + Send;

    /// Deletes jobs that ended (completed, failed, cancelled) and were last changed before
    /// `older_than_ms`, with their delivery marks. Returns how many jobs were deleted.
    fn prune_finished_jobs(&self, older_than_ms: i64) -> impl Future<Output = Result<u64>> + Send;
}

/// Operator approvals of actions that need a human's yes (`comfy.run`).
///
/// An approval is pending until it is approved or rejected by
/// [`ApprovalStore::decide_approval`], or until `expires_at_ms`, from which moment on it is
/// expired: every read reports it so, and it can no longer be decided, whether or not
/// [`ApprovalStore::expire_approvals`] has rewritten the row yet.
pub trait ApprovalStore: Send + Sync {
    /// Creates a pending approval. [`crate::StoreError::Conflict`] if the id is taken.
    fn create_approval(
        &self,
        approval: &NewApproval,
        now_ms: i64,
    ) -> impl Future<Output = Result<ApprovalRecord>> + Send;

    /// The approval with this id, as of `now_ms` (a pending one past its expiry is reported
    /// expired).
    fn get_approval(&self, id: &str, now_ms: i64) -> impl Future<Output = Result<Option<ApprovalRecord>>> + Send;

    /// Approvals with this status as of `now_ms` (all if `None`), newest first.
    fn list_approvals(
        &self,
        status: Option<ApprovalStatus>,
        now_ms: i64,
    ) -> impl Future<Output = Result<Vec<ApprovalRecord>>> + Send;

    /// Approves or rejects a pending, unexpired approval, recording who decided, `reason`
    /// and when. Returns the decided record, or `None` if it is unknown, already decided or
    /// expired (nothing changes). Of concurrent deciders exactly one gets `Some`.
    fn decide_approval(
        &self,
        id: &str,
        approve: bool,
        decided_by: &str,
        reason: Option<&str>,
        now_ms: i64,
    ) -> impl Future<Output = Result<Option<ApprovalRecord>>> + Send;

    /// Marks pending approvals whose expiry is at or before `now_ms` as expired. Returns how
    /// many.
    fn expire_approvals(&self, now_ms: i64) -> impl Future<Output = Result<u64>> + Send;

    /// As [`ApprovalStore::decide_approval`], with upstream's word for the decision kept in
    /// [`ApprovalRecord::decision`]: `allow-once` and `allow-always` approve, anything else
    /// (`deny`) rejects. Same rule: pending and unexpired, decided once.
    fn resolve_approval(
        &self,
        id: &str,
        decision: &str,
        decided_by: &str,
        reason: Option<&str>,
        now_ms: i64,
    ) -> impl Future<Output = Result<Option<ApprovalRecord>>> + Send;

    /// The exec approvals policy document, `None` until one is written.
    fn exec_policy(&self) -> impl Future<Output = Result<Option<ExecPolicyRecord>>> + Send;

    /// Writes the exec approvals policy if the stored one's hash is still `base_hash` (with
    /// `None`: only if none is stored yet). `false` (nothing written) when another writer got
    /// there first; the caller re-reads and decides again.
    fn swap_exec_policy(
        &self,
        base_hash: Option<&str>,
        file: &serde_json::Value,
        hash: &str,
        now_ms: i64,
    ) -> impl Future<Output = Result<bool>> + Send;

    /// One node's own exec approvals policy document, `None` until one is written for it.
    fn exec_node_policy(&self, node_id: &str) -> impl Future<Output = Result<Option<ExecPolicyRecord>>> + Send;

    /// As [`ApprovalStore::swap_exec_policy`], for the policy of node `node_id`.
    fn swap_exec_node_policy(
        &self,
        node_id: &str,
        base_hash: Option<&str>,
        file: &serde_json::Value,
        hash: &str,
        now_ms: i64,
    ) -> impl Future<Output = Result<bool>> + Send;
}

/// Scheduled jobs and their run receipts.
///
/// Exactly-once firing: the scheduler computes a job's due slots (scheduled times) and claims
/// each with [`CronStore::claim_cron_slot`], which inserts a receipt unique on (job, slot).
/// Only the caller that gets `true` runs it; a restart, a second scheduler or a retry finds the
/// receipt and does not. A crash after the claim and before the run finished leaves the
/// receipt `running` — the slot is not fired again (at most once per slot).
pub trait CronStore: Send + Sync {
    /// Stores `job`, or replaces the definition of the stored job with its id: every field
    /// but `created_at_ms` (kept from the first store), `last_run_at_ms` and `last_status`
    /// (the scheduler's, kept). [`crate::StoreError::Conflict`] if `catch_up` is not `skip`,
    /// `once` or `all`.
    fn upsert_cron_job(&self, job: &CronJob) -> impl Future<Output = Result<()>> + Send;

    /// The cron job with this id.
    fn get_cron_job(&self, id: &str) -> impl Future<Output = Result<Option<CronJob>>> + Send;

    /// Cron jobs ordered by name (ties by id); disabled ones only if `include_disabled`.
    fn list_cron_jobs(&self, include_disabled: bool) -> impl Future<Output = Result<Vec<CronJob>>> + Send;

    /// Deletes the job and its run receipts. `false` if there was no such job.
    fn remove_cron_job(&self, id: &str) -> impl Future<Output = Result<bool>> + Send;

    /// Enables or disables the job. `false` if there is no such job.
    fn set_cron_enabled(&self, id: &str, enabled: bool, now_ms: i64) -> impl Future<Output = Result<bool>> + Send;

    /// Records when the job fires next (`None`: not scheduled). `false` if there is no such
    /// job.
    fn set_cron_next_run(
        &self,
        id: &str,
        next_run_at_ms: Option<i64>,
        now_ms: i64,
    ) -> impl Future<Output = Result<bool>> + Send;

    /// Claims the job's slot `slot_ms` for run `run_id`: inserts a `running` receipt and sets
    /// the job's `last_run_at_ms = now_ms` and `last_status = running`, in one transaction.
    /// `true` if this caller won the slot; `false` if it was claimed before (ever, across
    /// restarts — until the receipt is pruned). [`crate::StoreError::NotFound`] for an
    /// unknown job.
    fn claim_cron_slot(
        &self,
        job_id: &str,
        slot_ms: i64,
        run_id: &str,
        now_ms: i64,
    ) -> impl Future<Output = Result<bool>> + Send;

    /// Records how the slot's run ended — `status` is `ok`, `error` or `skipped` — on its
    /// receipt and as the job's `last_status`. Errors: [`crate::StoreError::Conflict`] for
    /// another status or a receipt that is already finished, [`crate::StoreError::NotFound`]
    /// if the slot was never claimed.
    #[allow(clippy::too_many_arguments)]
    fn finish_cron_run(
        &self,
        job_id: &str,
        slot_ms: i64,
        status: &str,
        summary: Option<&str>,
        error: Option<&str>,
        now_ms: i64,
    ) -> impl Future<Output = Result<()>> + Send;

    /// Run receipts, of one job or of all, newest claim first, at most `limit`.
    fn list_cron_runs(
        &self,
        job_id: Option<&str>,
        limit: u32,
    ) -> impl Future<Output = Result<Vec<CronRunRecord>>> + Send;

    /// The latest claimed slot of the job: where catch-up starts after a restart.
    fn last_cron_slot(&self, job_id: &str) -> impl Future<Output = Result<Option<i64>>> + Send;

    /// Deletes finished receipts that were claimed before `older_than_ms`, keeping each job's
    /// latest receipt so [`CronStore::last_cron_slot`] survives. Returns how many.
    fn prune_cron_runs(&self, older_than_ms: i64) -> impl Future<Output = Result<u64>> + Send;
}

/// Several gateways on one database: who is there, and who holds which lease.
///
/// On SQLite there is only one member (the state lock keeps a second process off the file), but
/// the methods behave the same, so the code above them runs unchanged on both backends.
///
/// Every timestamp is the caller's clock (ms); gateways sharing a database are expected to keep
/// their clocks in step (NTP), as lease expiry compares one gateway's "now" with another's.
pub trait ClusterStore: Send + Sync {
    /// Inserts the gateway's row, or updates it (`seen_at_ms`, address, version; `started_at_ms`
    /// is kept from the first write): the registration and every heartbeat.
    fn upsert_gateway(&self, gateway: &GatewayRecord) -> impl Future<Output = Result<()>> + Send;

    /// Every registered gateway, by id.
    fn list_gateways(&self) -> impl Future<Output = Result<Vec<GatewayRecord>>> + Send;

    /// Deletes the gateway's row and releases every lease it holds (a clean shutdown: its peers
    /// take over at once instead of after the ttl). `false` if there was no row.
    fn remove_gateway(&self, id: &str) -> impl Future<Output = Result<bool>> + Send;

    /// Deletes gateways last seen before `seen_before_ms`; returns how many.
    fn forget_gateways(&self, seen_before_ms: i64) -> impl Future<Output = Result<u64>> + Send;

    /// Takes or renews the lease `name` for `holder` until `now_ms + ttl_ms`, in one atomic
    /// statement: granted (`true`) if nobody holds it, if `holder` already does (a renewal keeps
    /// `acquired_at_ms`), or if the holder's lease expired (`expires_at_ms <= now_ms`: a take
    /// over). Otherwise nothing changes and the answer is `false`. Of concurrent callers racing
    /// for a free or expired lease exactly one gets `true`.
    fn try_acquire_lease(
        &self,
        name: &str,
        holder: &str,
        ttl_ms: i64,
        now_ms: i64,
    ) -> impl Future<Output = Result<bool>> + Send;

    /// Gives the lease up if `holder` holds it (expired or not). `true` if it did.
    fn release_lease(&self, name: &str, holder: &str) -> impl Future<Output = Result<bool>> + Send;

    /// Every lease row, expired ones included, by name.
    fn list_leases(&self) -> impl Future<Output = Result<Vec<LeaseRecord>>> + Send;
}

/// Everything the gateway needs from one store. Implemented for every type that has all the
/// capabilities.
pub trait GatewayStore:
    KvStore
    + DeviceStore
    + PairingStore
    + DeviceTokenStore
    + IdempotencyStore
    + SessionStore
    + TranscriptStore
    + RunStore
    + ChannelStore
    + JobStore
    + ApprovalStore
    + CronStore
    + crate::UsageStore
    + crate::AccessTokenStore
    + ClusterStore
    + LockoutStore
    + RateBucketStore
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
        + ChannelStore
        + JobStore
        + ApprovalStore
        + CronStore
        + crate::UsageStore
        + crate::AccessTokenStore
        + ClusterStore
        + LockoutStore
        + RateBucketStore
{
}
