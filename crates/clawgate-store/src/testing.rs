//! The behaviour every store backend must have, as one backend-neutral test suite
//! (DESIGN.md §4: "every store trait has one generic test suite run against both").
//!
//! A backend's tests call [`conformance_suite`] with a function that yields a fresh, empty
//! store; each case gets its own store, so cases never see each other's rows. The cases are
//! also public one by one, and [`for_each_conformance_case!`](crate::for_each_conformance_case)
//! names them all, so a backend runs each as its own named test from the one list. They panic
//! on a failed expectation, like any test.

use std::future::Future;

use serde_json::{Value, json};

use crate::{
    ApprovalRecord, ApprovalStatus, ApprovalStore, CronJob, CronRunRecord, CronStore, JobQuery, JobRecord, JobStatus,
    JobStore, NewApproval, NewJob,
};
use crate::{
    ChannelPairing, ChannelPairingStatus, ChannelStore, InboxRecord, InboxStatus, NewOutbound, OutboxCounts,
    OutboxRecord, OutboxStatus,
};
use crate::{ClusterStore, GatewayRecord, LeaseRecord};
use crate::{
    DeviceStore, DeviceTokenStore, GatewayStore, IdempotencyStore, InsertOutcome, KvStore, NewPairingRequest,
    PairedDevice, PairingDecision, PairingStatus, PairingStore, StoreError,
};
use crate::{
    EnqueueOutcome, EntryStatus, NewEntry, RunKind, RunRecord, RunStatus, RunStore, SessionQuery, SessionRecord,
    SessionStore, TranscriptEntry, TranscriptRole, TranscriptStore,
};
use crate::{UsageGrouping, UsageQuery, UsageStore};

/// A fixed "now" so expectations are exact.
const T0: i64 = 1_700_000_000_000;

fn strings(items: &[&str]) -> Vec<String> {
    items.iter().map(|s| (*s).to_owned()).collect()
}

fn request_for(device_id: &str, role: &str, scopes: &[&str], reason: &str) -> NewPairingRequest {
    NewPairingRequest {
        device_id: device_id.to_owned(),
        public_key: format!("pk-{device_id}"),
        display_name: Some(format!("{device_id} laptop")),
        platform: Some("linux".to_owned()),
        device_family: Some("desktop".to_owned()),
        client_id: Some("cli".to_owned()),
        client_mode: Some("cli".to_owned()),
        role: role.to_owned(),
        scopes: strings(scopes),
        remote_ip: Some("127.0.0.1".to_owned()),
        reason: reason.to_owned(),
    }
}

fn device(device_id: &str) -> PairedDevice {
    PairedDevice {
        device_id: device_id.to_owned(),
        public_key: format!("pk-{device_id}"),
        display_name: Some("phone".to_owned()),
        platform: Some("ios".to_owned()),
        device_family: Some("iPhone".to_owned()),
        client_id: Some("openclaw-ios".to_owned()),
        client_mode: Some("node".to_owned()),
        roles: strings(&["node"]),
        scopes: strings(&["node.invoke"]),
        approved_via: "cli".to_owned(),
        created_at_ms: T0,
        approved_at_ms: T0 + 1,
        last_seen_at_ms: None,
    }
}

async fn paired<S: DeviceStore>(store: &S, device_id: &str) -> PairedDevice {
    let record = device(device_id);
    store.upsert_paired(&record).await.expect("upsert_paired");
    record
}

/// Runs every case, each on a new store from `fresh_store`.
pub async fn conformance_suite<S, F, Fut>(mut fresh_store: F)
where
    S: GatewayStore,
    F: FnMut() -> Fut,
    Fut: Future<Output = S>,
{
    macro_rules! run_each {
        ($($case:ident),* $(,)?) => {
            $($case(&fresh_store().await).await;)*
        };
    }
    crate::for_each_conformance_case!(run_each);
}

/// Calls `$callback! { case, case, … }` with the name of every conformance case in this module,
/// so a backend's test file runs each case as its own named test (on each of its store kinds)
/// and a case added here is picked up everywhere without editing any list:
///
/// ```ignore
/// macro_rules! sqlite_cases {
///     ($($case:ident),* $(,)?) => {
///         $(#[tokio::test]
///         async fn $case() {
///             clawgate_store::testing::$case(&SqliteStore::open_in_memory().await.unwrap()).await;
///         })*
///     };
/// }
/// clawgate_store::for_each_conformance_case!(sqlite_cases);
/// ```
#[macro_export]
macro_rules! for_each_conformance_case {
    ($callback:ident) => {
        $callback! {
            // Key/value.
            kv_get_of_missing_key_is_none,
            kv_set_overwrites_previous_value,
            kv_get_or_init_keeps_the_first_value,
            concurrent_get_or_init_agrees_on_one_value,
            kv_delete_prefix_deletes_only_keys_with_that_prefix,
            // Shared failed-auth lockouts.
            shared_lockouts_extend_and_expire,
            // Shared request-rate buckets.
            rate_buckets_grant_the_burst_then_refill,
            concurrent_rate_takes_never_exceed_the_burst,
            // Paired devices.
            upserted_device_round_trips,
            upsert_replaces_every_field_but_keeps_tokens,
            list_paired_returns_every_device,
            removing_device_revokes_tokens_and_drops_pending_requests,
            removing_unpaired_device_returns_false,
            touch_last_seen_records_connect_time,
            // Pairing requests.
            new_request_is_pending_with_uuid_id,
            duplicate_pending_request_is_refreshed_not_duplicated,
            resolved_request_is_not_refreshed,
            unknown_request_is_none,
            list_pending_shows_only_pending_requests,
            rejecting_request_records_resolution_without_pairing,
            resolving_twice_is_a_conflict,
            resolving_unknown_request_is_not_found,
            approving_request_pairs_device_atomically,
            approving_upgrade_merges_roles_and_scopes,
            resolve_with_approve_pairs_device,
            expire_pending_drops_only_stale_pending_requests,
            // Device tokens.
            issued_token_verifies_for_its_device,
            issuing_for_unpaired_device_is_not_found,
            rotated_token_invalidates_previous,
            tokens_for_different_roles_coexist,
            revoked_token_no_longer_verifies,
            token_does_not_verify_for_another_device,
            wrong_token_does_not_verify,
            list_for_device_includes_revoked_tokens,
            // Idempotency.
            idempotency_get_of_missing_key_is_none,
            insert_if_absent_inserts_once_then_returns_existing,
            concurrent_insert_if_absent_has_exactly_one_winner,
            update_replaces_status_and_payload,
            update_of_missing_key_is_not_found,
            prune_drops_expired_entries_then_caps_count,
            // Sessions.
            ensure_session_creates_once_with_uuid_session_id,
            concurrent_ensure_session_creates_one_session,
            get_session_of_unknown_key_is_none,
            list_sessions_orders_by_most_recent_update,
            list_sessions_filters_by_agent_and_search,
            list_sessions_hides_archived_unless_asked,
            patch_session_merges_meta_and_sets_label,
            bad_or_misdirected_session_patch_is_refused,
            reset_session_starts_a_new_transcript_and_keeps_the_old,
            delete_session_keeps_transcript_unless_asked,
            delete_session_with_transcript_removes_every_generation,
            appending_updates_session_activity_and_count,
            // Transcripts.
            append_assigns_contiguous_seqs_per_session,
            concurrent_appends_never_duplicate_seqs,
            appended_entry_round_trips,
            get_entry_of_unknown_seq_is_none,
            tail_returns_newest_entries_in_ascending_order,
            compact_keeps_newest_entries_and_numbering_continues,
            find_by_run_returns_the_runs_entries_in_order,
            // Runs.
            enqueue_is_idempotent_on_run_id,
            concurrent_enqueue_has_exactly_one_winner,
            claim_next_starts_runs_one_at_a_time_in_enqueue_order,
            concurrent_claims_start_one_run_per_session,
            start_next_claims_and_writes_the_first_entry_together,
            start_next_without_a_session_claims_and_writes_nothing,
            finish_records_outcome_and_frees_the_lane,
            finish_refuses_non_terminal_status_and_second_finish,
            get_run_of_unknown_id_is_none,
            list_queued_sessions_lists_each_waiting_session_once,
            list_queued_runs_lists_waiting_runs_in_queue_order,
            mark_interrupted_running_ends_runs_cut_off_by_a_crash,
            mark_interrupted_running_spares_runs_of_live_gateways,
            prune_finished_drops_only_old_finished_runs,
            // Channels.
            recorded_inbound_round_trips_and_redelivery_is_none,
            concurrent_record_inbound_has_exactly_one_winner,
            pending_inbound_lists_unfinished_rows_oldest_first,
            set_inbound_status_keeps_columns_given_as_none,
            queue_outbound_is_idempotent_and_answers_atomically,
            next_outbound_keeps_per_account_order_and_retry_keeps_the_head,
            outbound_sent_and_failed_transitions,
            outbox_counts_and_queued_accounts,
            list_outbound_filters_by_status,
            prune_channel_rows_drops_only_old_finished_rows,
            channel_pairing_request_is_reused_until_it_expires,
            channel_pairing_code_collision_is_a_conflict,
            resolving_channel_pairing_by_code,
            list_channel_pairings_filters_and_orders,
            removing_channel_pairing_revokes_it,
            // ComfyUI jobs.
            inserted_job_round_trips_and_bad_inserts_conflict,
            claim_takes_queued_jobs_in_enqueue_order,
            concurrent_claims_never_share_a_job,
            queue_position_counts_queued_jobs_by_seq,
            requeue_keeps_place_and_respects_max_attempts,
            job_transitions_are_guarded,
            cancel_returns_the_previous_record_of_unfinished_jobs,
            release_approval_queues_or_cancels_held_jobs,
            adopted_job_runs_on_its_worker_and_is_never_claimed,
            list_jobs_filters_pages_and_counts,
            output_is_marked_delivered_once,
            prune_finished_jobs_drops_only_old_finished_jobs,
            // Approvals.
            approval_is_decided_once_and_keeps_its_reason,
            pending_approval_expires_lazily_and_by_sweep,
            approval_resolved_with_a_word_keeps_it,
            exec_policy_is_written_only_over_its_base,
            node_exec_policies_are_kept_per_node_over_their_base,
            // Cron.
            cron_jobs_upsert_list_enable_and_remove,
            cron_slot_is_claimed_once_under_concurrency,
            cron_run_finishes_once_and_lists_newest_first,
            // Access tokens.
            created_access_token_verifies_and_records_its_use,
            access_token_names_are_unique_among_live_tokens,
            revoked_access_token_no_longer_verifies,
            odd_access_token_texts_never_verify,
            // Cluster.
            gateways_register_heartbeat_and_are_forgotten,
            lease_is_granted_renewed_and_refused_to_others,
            expired_lease_is_taken_over_and_released_only_by_its_holder,
            concurrent_lease_acquires_have_exactly_one_winner,
            removing_a_gateway_releases_its_leases,
            // Usage.
            usage_by_session_quarter_hour_keeps_transcripts_apart,
        }
    };
}

// ---------------------------------------------------------------------------------------------
// KvStore

/// `get` of a key never set is `None`.
pub async fn kv_get_of_missing_key_is_none<S: KvStore>(store: &S) {
    assert_eq!(store.get("absent").await.expect("get"), None);
}

/// `set` replaces the previous value.
pub async fn kv_set_overwrites_previous_value<S: KvStore>(store: &S) {
    store.set("k", "one").await.expect("set");
    store.set("k", "two").await.expect("set");
    assert_eq!(store.get("k").await.expect("get").as_deref(), Some("two"));
}

/// `get_or_init` stores the first value and never calls `init` again once it exists.
pub async fn kv_get_or_init_keeps_the_first_value<S: KvStore>(store: &S) {
    let first = store.get_or_init("gateway.token", || "generated".to_owned()).await.expect("init");
    assert_eq!(first, "generated");
    let mut called = false;
    let second = store
        .get_or_init("gateway.token", || {
            called = true;
            "other".to_owned()
        })
        .await
        .expect("get");
    assert_eq!(second, "generated");
    assert!(!called, "init must not run when the key exists");
    assert_eq!(store.get("gateway.token").await.expect("get").as_deref(), Some("generated"));
}

/// Racing `get_or_init` callers all get the one value that was stored.
pub async fn concurrent_get_or_init_agrees_on_one_value<S: KvStore>(store: &S) {
    let (a, b, c, d) = tokio::join!(
        store.get_or_init("race", || "a".to_owned()),
        store.get_or_init("race", || "b".to_owned()),
        store.get_or_init("race", || "c".to_owned()),
        store.get_or_init("race", || "d".to_owned()),
    );
    let values = [a.expect("a"), b.expect("b"), c.expect("c"), d.expect("d")];
    let stored = store.get("race").await.expect("get").expect("stored");
    assert!(values.iter().all(|v| *v == stored), "{values:?} vs {stored}");
}

/// `delete_prefix` deletes exactly the keys that start with the prefix, taking `%` and `_`
/// literally.
pub async fn kv_delete_prefix_deletes_only_keys_with_that_prefix<S: KvStore>(store: &S) {
    for key in ["channel:telegram:a:offset", "channel:telegram:a:other", "channel:telegram:ab:offset", "channel:x"] {
        store.set(key, "1").await.expect("set");
    }
    store.set("channel:telegram:a_b:offset", "1").await.expect("set");
    store.set("channel:telegram:a%:offset", "1").await.expect("set");
    assert_eq!(store.delete_prefix("channel:telegram:a:").await.expect("delete"), 2);
    assert_eq!(store.get("channel:telegram:a:offset").await.expect("get"), None);
    assert_eq!(store.get("channel:telegram:a:other").await.expect("get"), None);
    for kept in ["channel:telegram:ab:offset", "channel:x", "channel:telegram:a_b:offset", "channel:telegram:a%:offset"]
    {
        assert!(store.get(kept).await.expect("get").is_some(), "{kept} must stay");
    }
    assert_eq!(store.delete_prefix("channel:telegram:a_").await.expect("delete"), 1);
    assert_eq!(store.delete_prefix("nothing:").await.expect("delete"), 0);
}

// ---------------------------------------------------------------------------------------------
// DeviceStore

/// What is upserted is what is read back.
pub async fn upserted_device_round_trips<S: DeviceStore>(store: &S) {
    let record = paired(store, "dev-a").await;
    assert_eq!(store.get_paired("dev-a").await.expect("get"), Some(record));
    assert_eq!(store.get_paired("dev-unknown").await.expect("get"), None);
}

/// A second upsert replaces every field (including clearing optional ones); the device's
/// tokens survive it.
pub async fn upsert_replaces_every_field_but_keeps_tokens<S: DeviceStore + DeviceTokenStore>(store: &S) {
    paired(store, "dev-a").await;
    let (token, _) = store.issue("dev-a", "node", &[], T0).await.expect("issue");
    let replacement = PairedDevice {
        public_key: "pk-rotated".to_owned(),
        display_name: None,
        platform: Some("android".to_owned()),
        device_family: None,
        client_id: None,
        client_mode: None,
        roles: strings(&["node", "operator"]),
        scopes: strings(&["operator.read"]),
        approved_via: "rpc".to_owned(),
        created_at_ms: T0 + 5,
        approved_at_ms: T0 + 6,
        last_seen_at_ms: Some(T0 + 7),
        ..device("dev-a")
    };
    store.upsert_paired(&replacement).await.expect("upsert");
    assert_eq!(store.get_paired("dev-a").await.expect("get"), Some(replacement));
    assert_eq!(store.list_paired().await.expect("list").len(), 1);
    assert!(store.verify("dev-a", &token).await.expect("verify").is_some());
}

/// `list_paired` returns all devices, oldest pairing first.
pub async fn list_paired_returns_every_device<S: DeviceStore>(store: &S) {
    assert!(store.list_paired().await.expect("list").is_empty());
    let later = PairedDevice { created_at_ms: T0 + 10, ..device("dev-b") };
    store.upsert_paired(&later).await.expect("upsert");
    paired(store, "dev-a").await;
    let ids: Vec<String> = store.list_paired().await.expect("list").into_iter().map(|d| d.device_id).collect();
    assert_eq!(ids, strings(&["dev-a", "dev-b"]));
}

/// Removing a device deletes its tokens and pending requests with it; resolved requests stay
/// as history, and other devices are untouched.
pub async fn removing_device_revokes_tokens_and_drops_pending_requests<S>(store: &S)
where
    S: DeviceStore + DeviceTokenStore + PairingStore,
{
    let old =
        store.create_or_refresh_request(&request_for("dev-a", "node", &[], "not-paired"), T0).await.expect("request");
    store.approve_request(&old.request_id, "cli", T0).await.expect("approve");
    let (token, _) = store.issue("dev-a", "node", &[], T0).await.expect("issue");
    let upgrade = store
        .create_or_refresh_request(&request_for("dev-a", "operator", &[], "role-upgrade"), T0 + 1)
        .await
        .expect("upgrade request");
    paired(store, "dev-b").await;
    let (other_token, _) = store.issue("dev-b", "node", &[], T0).await.expect("issue b");

    assert!(store.remove_paired("dev-a").await.expect("remove"));

    assert_eq!(store.get_paired("dev-a").await.expect("get"), None);
    assert_eq!(store.verify("dev-a", &token).await.expect("verify"), None);
    assert!(store.list_for_device("dev-a").await.expect("tokens").is_empty());
    assert_eq!(store.get_request(&upgrade.request_id).await.expect("get"), None);
    assert!(store.list_pending().await.expect("pending").is_empty());
    let history = store.get_request(&old.request_id).await.expect("get").expect("kept");
    assert_eq!(history.status, PairingStatus::Approved);
    assert!(store.verify("dev-b", &other_token).await.expect("verify b").is_some());
}

/// Removing a device that is not paired reports `false` and changes nothing.
pub async fn removing_unpaired_device_returns_false<S: DeviceStore + PairingStore>(store: &S) {
    let pending =
        store.create_or_refresh_request(&request_for("dev-a", "node", &[], "not-paired"), T0).await.expect("request");
    assert!(!store.remove_paired("dev-a").await.expect("remove"));
    assert!(store.get_request(&pending.request_id).await.expect("get").is_some());
}

/// `touch_last_seen` sets only the last-seen time, and reports unknown devices.
pub async fn touch_last_seen_records_connect_time<S: DeviceStore>(store: &S) {
    let before = paired(store, "dev-a").await;
    assert!(store.touch_last_seen("dev-a", T0 + 99).await.expect("touch"));
    let after = store.get_paired("dev-a").await.expect("get").expect("paired");
    assert_eq!(after, PairedDevice { last_seen_at_ms: Some(T0 + 99), ..before });
    assert!(!store.touch_last_seen("dev-unknown", T0).await.expect("touch unknown"));
}

// ---------------------------------------------------------------------------------------------
// PairingStore

/// A first request is pending, has a UUID v4 id and carries what was asked.
pub async fn new_request_is_pending_with_uuid_id<S: PairingStore>(store: &S) {
    let new = request_for("dev-a", "operator", &["operator.read"], "not-paired");
    let request = store.create_or_refresh_request(&new, T0).await.expect("create");
    let id = uuid::Uuid::parse_str(&request.request_id).expect("request id is a UUID");
    assert_eq!(id.get_version_num(), 4);
    assert_eq!(request.status, PairingStatus::Pending);
    assert_eq!(request.device_id, new.device_id);
    assert_eq!(request.public_key, new.public_key);
    assert_eq!(request.display_name, new.display_name);
    assert_eq!(request.platform, new.platform);
    assert_eq!(request.device_family, new.device_family);
    assert_eq!(request.client_id, new.client_id);
    assert_eq!(request.client_mode, new.client_mode);
    assert_eq!(request.role, new.role);
    assert_eq!(request.scopes, new.scopes);
    assert_eq!(request.remote_ip, new.remote_ip);
    assert_eq!(request.reason, new.reason);
    assert_eq!((request.created_at_ms, request.updated_at_ms), (T0, T0));
    assert_eq!((request.resolved_at_ms, request.resolved_by.as_deref()), (None, None));
    assert_eq!(store.get_request(&request.request_id).await.expect("get"), Some(request));
}

/// A device that reconnects while its request is pending refreshes that request (same id,
/// new role/scopes/reason/metadata) instead of adding another.
pub async fn duplicate_pending_request_is_refreshed_not_duplicated<S: PairingStore>(store: &S) {
    let first =
        store.create_or_refresh_request(&request_for("dev-a", "node", &[], "not-paired"), T0).await.expect("first");
    let mut again = request_for("dev-a", "operator", &["operator.admin"], "role-upgrade");
    again.platform = Some("macos".to_owned());
    again.remote_ip = Some("10.0.0.2".to_owned());
    let second = store.create_or_refresh_request(&again, T0 + 500).await.expect("second");

    assert_eq!(second.request_id, first.request_id);
    assert_eq!(second.role, "operator");
    assert_eq!(second.scopes, strings(&["operator.admin"]));
    assert_eq!(second.reason, "role-upgrade");
    assert_eq!(second.platform.as_deref(), Some("macos"));
    assert_eq!(second.remote_ip.as_deref(), Some("10.0.0.2"));
    assert_eq!(second.created_at_ms, T0);
    assert_eq!(second.updated_at_ms, T0 + 500);
    assert_eq!(store.list_pending().await.expect("pending"), vec![second]);
}

/// Once a request is resolved, the next request from the device is a new one.
pub async fn resolved_request_is_not_refreshed<S: PairingStore>(store: &S) {
    let first =
        store.create_or_refresh_request(&request_for("dev-a", "node", &[], "not-paired"), T0).await.expect("first");
    store.resolve_request(&first.request_id, PairingDecision::Reject, "cli", T0 + 1).await.expect("reject");
    let second = store
        .create_or_refresh_request(&request_for("dev-a", "node", &[], "not-paired"), T0 + 2)
        .await
        .expect("second");
    assert_ne!(second.request_id, first.request_id);
    assert_eq!(second.status, PairingStatus::Pending);
    let first_now = store.get_request(&first.request_id).await.expect("get").expect("kept");
    assert_eq!(first_now.status, PairingStatus::Rejected);
}

/// Looking up an id that was never issued gives `None`.
pub async fn unknown_request_is_none<S: PairingStore>(store: &S) {
    let id = uuid::Uuid::new_v4().to_string();
    assert_eq!(store.get_request(&id).await.expect("get"), None);
}

/// `list_pending` lists pending requests oldest first and leaves resolved ones out.
pub async fn list_pending_shows_only_pending_requests<S: PairingStore>(store: &S) {
    let b =
        store.create_or_refresh_request(&request_for("dev-b", "node", &[], "not-paired"), T0 + 10).await.expect("b");
    let a = store.create_or_refresh_request(&request_for("dev-a", "node", &[], "not-paired"), T0).await.expect("a");
    let c =
        store.create_or_refresh_request(&request_for("dev-c", "node", &[], "not-paired"), T0 + 20).await.expect("c");
    store.resolve_request(&c.request_id, PairingDecision::Reject, "rpc", T0 + 30).await.expect("reject c");
    let ids: Vec<String> = store.list_pending().await.expect("pending").into_iter().map(|r| r.request_id).collect();
    assert_eq!(ids, vec![a.request_id, b.request_id]);
}

/// Rejecting records who and when, and pairs nothing.
pub async fn rejecting_request_records_resolution_without_pairing<S>(store: &S)
where
    S: PairingStore + DeviceStore,
{
    let request =
        store.create_or_refresh_request(&request_for("dev-a", "node", &[], "not-paired"), T0).await.expect("create");
    let rejected =
        store.resolve_request(&request.request_id, PairingDecision::Reject, "rpc", T0 + 5).await.expect("reject");
    assert_eq!(rejected.status, PairingStatus::Rejected);
    assert_eq!(rejected.resolved_at_ms, Some(T0 + 5));
    assert_eq!(rejected.resolved_by.as_deref(), Some("rpc"));
    assert_eq!(rejected.request_id, request.request_id);
    assert_eq!(store.get_request(&request.request_id).await.expect("get"), Some(rejected));
    assert_eq!(store.get_paired("dev-a").await.expect("get"), None);
}

/// A resolved request cannot be resolved again, whichever way, and stays as it was.
pub async fn resolving_twice_is_a_conflict<S: PairingStore>(store: &S) {
    let approved =
        store.create_or_refresh_request(&request_for("dev-a", "node", &[], "not-paired"), T0).await.expect("a");
    store.approve_request(&approved.request_id, "cli", T0 + 1).await.expect("approve");
    let again = store.approve_request(&approved.request_id, "cli", T0 + 2).await;
    assert!(matches!(again, Err(StoreError::Conflict(_))), "{again:?}");
    let flip = store.resolve_request(&approved.request_id, PairingDecision::Reject, "rpc", T0 + 2).await;
    assert!(matches!(flip, Err(StoreError::Conflict(_))), "{flip:?}");

    let rejected =
        store.create_or_refresh_request(&request_for("dev-b", "node", &[], "not-paired"), T0).await.expect("b");
    store.resolve_request(&rejected.request_id, PairingDecision::Reject, "rpc", T0 + 1).await.expect("reject");
    let late_approval = store.approve_request(&rejected.request_id, "cli", T0 + 2).await;
    assert!(matches!(late_approval, Err(StoreError::Conflict(_))), "{late_approval:?}");

    let a = store.get_request(&approved.request_id).await.expect("get").expect("a");
    assert_eq!((a.status, a.resolved_at_ms), (PairingStatus::Approved, Some(T0 + 1)));
    let b = store.get_request(&rejected.request_id).await.expect("get").expect("b");
    assert_eq!((b.status, b.resolved_at_ms), (PairingStatus::Rejected, Some(T0 + 1)));
}

/// Resolving an id that does not exist is `NotFound`.
pub async fn resolving_unknown_request_is_not_found<S: PairingStore>(store: &S) {
    let id = uuid::Uuid::new_v4().to_string();
    let approve = store.approve_request(&id, "cli", T0).await;
    assert!(matches!(approve, Err(StoreError::NotFound)), "{approve:?}");
    let reject = store.resolve_request(&id, PairingDecision::Reject, "cli", T0).await;
    assert!(matches!(reject, Err(StoreError::NotFound)), "{reject:?}");
}

/// Approval marks the request approved and creates the paired device from it, together.
pub async fn approving_request_pairs_device_atomically<S: PairingStore + DeviceStore>(store: &S) {
    let new = request_for("dev-a", "operator", &["operator.read", "operator.write"], "not-paired");
    let request = store.create_or_refresh_request(&new, T0).await.expect("create");
    let device = store.approve_request(&request.request_id, "silent", T0 + 3).await.expect("approve");

    let expected = PairedDevice {
        device_id: new.device_id.clone(),
        public_key: new.public_key.clone(),
        display_name: new.display_name.clone(),
        platform: new.platform.clone(),
        device_family: new.device_family.clone(),
        client_id: new.client_id.clone(),
        client_mode: new.client_mode.clone(),
        roles: strings(&["operator"]),
        scopes: strings(&["operator.read", "operator.write"]),
        approved_via: "silent".to_owned(),
        created_at_ms: T0 + 3,
        approved_at_ms: T0 + 3,
        last_seen_at_ms: None,
    };
    assert_eq!(device, expected);
    assert_eq!(store.get_paired("dev-a").await.expect("get"), Some(expected));
    let stored = store.get_request(&request.request_id).await.expect("get").expect("request");
    assert_eq!(stored.status, PairingStatus::Approved);
    assert_eq!(stored.resolved_at_ms, Some(T0 + 3));
    assert_eq!(stored.resolved_by.as_deref(), Some("silent"));
    assert!(store.list_pending().await.expect("pending").is_empty());
}

/// Approving an upgrade keeps what was already approved: roles and scopes become the union,
/// the first pairing time and last-seen time are kept, metadata follows the request.
pub async fn approving_upgrade_merges_roles_and_scopes<S: PairingStore + DeviceStore>(store: &S) {
    let before = PairedDevice {
        roles: strings(&["node"]),
        scopes: strings(&["node.invoke", "operator.read"]),
        last_seen_at_ms: Some(T0 + 2),
        ..device("dev-a")
    };
    store.upsert_paired(&before).await.expect("upsert");
    let mut upgrade = request_for("dev-a", "operator", &["operator.read", "operator.write"], "role-upgrade");
    upgrade.display_name = None;
    let request = store.create_or_refresh_request(&upgrade, T0 + 10).await.expect("create");
    let after = store.approve_request(&request.request_id, "rpc", T0 + 11).await.expect("approve");

    assert_eq!(after.roles, strings(&["node", "operator"]));
    assert_eq!(after.scopes, strings(&["node.invoke", "operator.read", "operator.write"]));
    assert_eq!(after.created_at_ms, before.created_at_ms);
    assert_eq!(after.approved_at_ms, T0 + 11);
    assert_eq!(after.last_seen_at_ms, Some(T0 + 2));
    assert_eq!(after.approved_via, "rpc");
    assert_eq!(after.platform, upgrade.platform);
    assert_eq!(after.display_name, before.display_name, "absent in request: kept");
    assert_eq!(store.get_paired("dev-a").await.expect("get"), Some(after));
}

/// `resolve_request(Approve)` pairs the device just like `approve_request`.
pub async fn resolve_with_approve_pairs_device<S: PairingStore + DeviceStore>(store: &S) {
    let request = store
        .create_or_refresh_request(&request_for("dev-a", "node", &["node.invoke"], "not-paired"), T0)
        .await
        .expect("create");
    let resolved =
        store.resolve_request(&request.request_id, PairingDecision::Approve, "cli", T0 + 1).await.expect("approve");
    assert_eq!(resolved.status, PairingStatus::Approved);
    let device = store.get_paired("dev-a").await.expect("get").expect("paired");
    assert_eq!(device.roles, strings(&["node"]));
    assert_eq!(device.scopes, strings(&["node.invoke"]));
    assert_eq!(device.approved_via, "cli");
}

/// Expiry deletes pending requests not refreshed since the cutoff; refreshed and resolved
/// requests stay.
pub async fn expire_pending_drops_only_stale_pending_requests<S: PairingStore>(store: &S) {
    let stale =
        store.create_or_refresh_request(&request_for("dev-a", "node", &[], "not-paired"), T0).await.expect("stale");
    let refreshed =
        store.create_or_refresh_request(&request_for("dev-b", "node", &[], "not-paired"), T0).await.expect("b");
    store
        .create_or_refresh_request(&request_for("dev-b", "node", &[], "not-paired"), T0 + 100)
        .await
        .expect("refresh b");
    let resolved =
        store.create_or_refresh_request(&request_for("dev-c", "node", &[], "not-paired"), T0).await.expect("c");
    store.resolve_request(&resolved.request_id, PairingDecision::Reject, "cli", T0 + 1).await.expect("reject");

    assert_eq!(store.expire_pending(T0 + 50).await.expect("expire"), 1);
    assert_eq!(store.get_request(&stale.request_id).await.expect("get"), None);
    assert!(store.get_request(&refreshed.request_id).await.expect("get").is_some());
    assert!(store.get_request(&resolved.request_id).await.expect("get").is_some());
    assert_eq!(store.expire_pending(T0 + 50).await.expect("expire again"), 0);
}

// ---------------------------------------------------------------------------------------------
// DeviceTokenStore

/// An issued token is a 43-character base64url string that verifies for its device and
/// returns its record.
pub async fn issued_token_verifies_for_its_device<S: DeviceStore + DeviceTokenStore>(store: &S) {
    paired(store, "dev-a").await;
    let scopes = strings(&["operator.read"]);
    let (token, record) = store.issue("dev-a", "operator", &scopes, T0).await.expect("issue");
    assert_eq!(token.len(), 43);
    assert!(token.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_'));
    assert_eq!(record.device_id, "dev-a");
    assert_eq!(record.role, "operator");
    assert_eq!(record.scopes, scopes);
    assert_eq!((record.issued_at_ms, record.revoked_at_ms), (T0, None));
    assert_eq!(store.verify("dev-a", &token).await.expect("verify"), Some(record));
}

/// Tokens are only for paired devices.
pub async fn issuing_for_unpaired_device_is_not_found<S: DeviceTokenStore>(store: &S) {
    let issued = store.issue("dev-unknown", "operator", &[], T0).await;
    assert!(matches!(issued, Err(StoreError::NotFound)), "{issued:?}");
}

/// Issuing again for the same device and role rotates: the old token stops verifying.
pub async fn rotated_token_invalidates_previous<S: DeviceStore + DeviceTokenStore>(store: &S) {
    paired(store, "dev-a").await;
    let (old, _) = store.issue("dev-a", "operator", &[], T0).await.expect("issue");
    let (new, record) = store.issue("dev-a", "operator", &strings(&["operator.write"]), T0 + 1).await.expect("rotate");
    assert_ne!(old, new);
    assert_eq!(store.verify("dev-a", &old).await.expect("verify old"), None);
    assert_eq!(store.verify("dev-a", &new).await.expect("verify new"), Some(record));
    assert_eq!(store.list_for_device("dev-a").await.expect("list").len(), 1);
}

/// A device holds one live token per role; each verifies to its own role.
pub async fn tokens_for_different_roles_coexist<S: DeviceStore + DeviceTokenStore>(store: &S) {
    paired(store, "dev-a").await;
    let (node, _) = store.issue("dev-a", "node", &[], T0).await.expect("node");
    let (operator, _) = store.issue("dev-a", "operator", &[], T0).await.expect("operator");
    let node_record = store.verify("dev-a", &node).await.expect("verify").expect("node");
    let operator_record = store.verify("dev-a", &operator).await.expect("verify").expect("op");
    assert_eq!(node_record.role, "node");
    assert_eq!(operator_record.role, "operator");
}

/// Revocation stops verification, is reported once, and a re-issue works again.
pub async fn revoked_token_no_longer_verifies<S: DeviceStore + DeviceTokenStore>(store: &S) {
    paired(store, "dev-a").await;
    let (token, _) = store.issue("dev-a", "operator", &[], T0).await.expect("issue");
    assert!(store.revoke("dev-a", "operator", T0 + 1).await.expect("revoke"));
    assert_eq!(store.verify("dev-a", &token).await.expect("verify"), None);
    assert!(!store.revoke("dev-a", "operator", T0 + 2).await.expect("revoke again"));
    assert!(!store.revoke("dev-a", "node", T0 + 2).await.expect("revoke never issued"));
    let (fresh, _) = store.issue("dev-a", "operator", &[], T0 + 3).await.expect("reissue");
    assert!(store.verify("dev-a", &fresh).await.expect("verify").is_some());
}

/// A token is bound to its device.
pub async fn token_does_not_verify_for_another_device<S: DeviceStore + DeviceTokenStore>(store: &S) {
    paired(store, "dev-a").await;
    paired(store, "dev-b").await;
    let (token, _) = store.issue("dev-a", "operator", &[], T0).await.expect("issue");
    assert_eq!(store.verify("dev-b", &token).await.expect("verify"), None);
    assert_eq!(store.verify("dev-unknown", &token).await.expect("verify"), None);
}

/// Anything but the issued token fails, including near misses and the empty string.
pub async fn wrong_token_does_not_verify<S: DeviceStore + DeviceTokenStore>(store: &S) {
    paired(store, "dev-a").await;
    let (token, _) = store.issue("dev-a", "operator", &[], T0).await.expect("issue");
    let mut near_miss = token.clone();
    near_miss.pop();
    for candidate in ["", "not-a-token", near_miss.as_str(), &format!("{token}x")] {
        assert_eq!(store.verify("dev-a", candidate).await.expect("verify"), None, "{candidate}");
    }
}

/// `list_for_device` shows live and revoked tokens, by role.
pub async fn list_for_device_includes_revoked_tokens<S: DeviceStore + DeviceTokenStore>(store: &S) {
    paired(store, "dev-a").await;
    assert!(store.list_for_device("dev-a").await.expect("list").is_empty());
    store.issue("dev-a", "operator", &strings(&["operator.read"]), T0).await.expect("op");
    store.issue("dev-a", "node", &[], T0 + 1).await.expect("node");
    store.revoke("dev-a", "operator", T0 + 2).await.expect("revoke");
    let list = store.list_for_device("dev-a").await.expect("list");
    let summary: Vec<(&str, Option<i64>)> = list.iter().map(|r| (r.role.as_str(), r.revoked_at_ms)).collect();
    assert_eq!(summary, vec![("node", None), ("operator", Some(T0 + 2))]);
    assert_eq!(list[1].scopes, strings(&["operator.read"]));
}

// ---------------------------------------------------------------------------------------------
// IdempotencyStore

/// `get` of an unknown key is `None`.
pub async fn idempotency_get_of_missing_key_is_none<S: IdempotencyStore>(store: &S) {
    assert_eq!(store.get("chat.send:absent").await.expect("get"), None);
}

/// The first insert wins; later ones get the stored entry back unchanged.
pub async fn insert_if_absent_inserts_once_then_returns_existing<S: IdempotencyStore>(store: &S) {
    let payload = json!({"runId": "r1"});
    let first = store.insert_if_absent("chat.send:k1", "started", &payload, T0).await.expect("first");
    assert_eq!(first, InsertOutcome::Inserted);
    let second =
        store.insert_if_absent("chat.send:k1", "other", &json!({"runId": "r2"}), T0 + 1).await.expect("second");
    let expected = crate::IdempotencyEntry {
        key: "chat.send:k1".to_owned(),
        payload,
        status: "started".to_owned(),
        created_at_ms: T0,
        updated_at_ms: T0,
    };
    assert_eq!(second, InsertOutcome::Existing(expected.clone()));
    assert_eq!(store.get("chat.send:k1").await.expect("get"), Some(expected));
}

/// Of concurrent claims of one key, exactly one is `Inserted`.
pub async fn concurrent_insert_if_absent_has_exactly_one_winner<S: IdempotencyStore>(store: &S) {
    let payload = json!(null);
    let (a, b, c, d) = tokio::join!(
        store.insert_if_absent("race", "a", &payload, T0),
        store.insert_if_absent("race", "b", &payload, T0),
        store.insert_if_absent("race", "c", &payload, T0),
        store.insert_if_absent("race", "d", &payload, T0),
    );
    let outcomes = [a.expect("a"), b.expect("b"), c.expect("c"), d.expect("d")];
    let winners = outcomes.iter().filter(|o| **o == InsertOutcome::Inserted).count();
    assert_eq!(winners, 1, "{outcomes:?}");
}

/// `update` replaces status and payload and bumps `updated_at_ms`, keeping `created_at_ms`.
pub async fn update_replaces_status_and_payload<S: IdempotencyStore>(store: &S) {
    store.insert_if_absent("k", "started", &json!({}), T0).await.expect("insert");
    let result = json!({"ok": true, "payload": {"text": "hi"}});
    store.update("k", "ok", &result, T0 + 7).await.expect("update");
    let entry = store.get("k").await.expect("get").expect("entry");
    assert_eq!(entry.status, "ok");
    assert_eq!(entry.payload, result);
    assert_eq!((entry.created_at_ms, entry.updated_at_ms), (T0, T0 + 7));
}

/// Updating a key that is not there (never inserted, or pruned) is `NotFound`.
pub async fn update_of_missing_key_is_not_found<S: IdempotencyStore>(store: &S) {
    let updated = store.update("absent", "ok", &json!(1), T0).await;
    assert!(matches!(updated, Err(StoreError::NotFound)), "{updated:?}");
    assert_eq!(store.get("absent").await.expect("get"), None);
}

/// Pruning first drops entries older than the cutoff, then keeps only the newest `keep_max`.
pub async fn prune_drops_expired_entries_then_caps_count<S: IdempotencyStore>(store: &S) {
    for (key, at) in [("old-1", T0), ("old-2", T0 + 1), ("a", T0 + 10), ("b", T0 + 11)] {
        store.insert_if_absent(key, "ok", &json!(key), at).await.expect("insert");
    }
    store.insert_if_absent("c", "started", &json!("c"), T0 + 2).await.expect("insert c");
    // `c` is old by creation but was updated recently, so it is young.
    store.update("c", "ok", &json!("c"), T0 + 12).await.expect("update c");

    assert_eq!(store.prune(T0 + 5, 100).await.expect("prune ttl"), 2);
    assert_eq!(store.get("old-1").await.expect("get"), None);
    assert_eq!(store.get("old-2").await.expect("get"), None);

    assert_eq!(store.prune(T0 + 5, 2).await.expect("prune cap"), 1);
    assert_eq!(store.get("a").await.expect("get"), None, "oldest over the cap goes");
    assert!(store.get("b").await.expect("get").is_some());
    assert!(store.get("c").await.expect("get").is_some());

    assert_eq!(store.prune(T0, 0).await.expect("prune all"), 2);
    assert_eq!(store.get("c").await.expect("get"), None);
}

// ---------------------------------------------------------------------------------------------
// SessionStore

/// Session keys of a query's result, in order.
async fn listed_keys<S: SessionStore>(store: &S, query: &SessionQuery) -> Vec<String> {
    store.list_sessions(query).await.expect("list_sessions").into_iter().map(|s| s.key).collect()
}

/// Appends a plain final user message.
async fn say<S: TranscriptStore>(store: &S, session_id: &str, text: &str, at: i64) -> TranscriptEntry {
    store
        .append(
            session_id,
            TranscriptRole::User,
            &json!({"role": "user", "content": text}),
            None,
            EntryStatus::Final,
            at,
        )
        .await
        .expect("append")
}

/// The first `ensure_session` creates the session (UUID v4 session id, no label, empty meta,
/// no messages); later calls return it unchanged, whatever agent id they pass.
pub async fn ensure_session_creates_once_with_uuid_session_id<S: SessionStore>(store: &S) {
    let created = store.ensure_session("agent:main:main", "main", T0).await.expect("create");
    let id = uuid::Uuid::parse_str(&created.session_id).expect("session id is a UUID");
    assert_eq!(id.get_version_num(), 4);
    let expected = SessionRecord {
        key: "agent:main:main".to_owned(),
        agent_id: "main".to_owned(),
        session_id: created.session_id.clone(),
        label: None,
        meta: json!({}),
        created_at_ms: T0,
        updated_at_ms: T0,
        last_message_at_ms: None,
        message_count: 0,
    };
    assert_eq!(created, expected);
    let again = store.ensure_session("agent:main:main", "other", T0 + 5).await.expect("ensure again");
    assert_eq!(again, expected);
    assert_eq!(store.get_session("agent:main:main").await.expect("get"), Some(expected));
    assert_eq!(store.count_sessions().await.expect("count"), 1);
}

/// Racing `ensure_session` callers all get the one session that was created.
pub async fn concurrent_ensure_session_creates_one_session<S: SessionStore>(store: &S) {
    let (a, b, c, d) = tokio::join!(
        store.ensure_session("agent:main:race", "main", T0),
        store.ensure_session("agent:main:race", "main", T0 + 1),
        store.ensure_session("agent:main:race", "main", T0 + 2),
        store.ensure_session("agent:main:race", "main", T0 + 3),
    );
    let sessions = [a.expect("a"), b.expect("b"), c.expect("c"), d.expect("d")];
    assert!(sessions.iter().all(|s| *s == sessions[0]), "{sessions:?}");
    assert_eq!(store.count_sessions().await.expect("count"), 1);
}

/// Unknown keys have no session.
pub async fn get_session_of_unknown_key_is_none<S: SessionStore>(store: &S) {
    assert_eq!(store.get_session("agent:main:absent").await.expect("get"), None);
}

/// Lists are ordered by last update, newest first (ties by key), and paged by limit/offset.
pub async fn list_sessions_orders_by_most_recent_update<S: SessionStore>(store: &S) {
    assert!(store.list_sessions(&SessionQuery::default()).await.expect("list empty").is_empty());
    store.ensure_session("agent:main:old", "main", T0).await.expect("old");
    store.ensure_session("agent:main:new", "main", T0 + 10).await.expect("new");
    store.ensure_session("agent:main:b-tie", "main", T0 + 5).await.expect("b");
    store.ensure_session("agent:main:a-tie", "main", T0 + 5).await.expect("a");
    store.patch_session("agent:main:old", &json!({"pinned": true}), T0 + 20).await.expect("patch bumps old");

    let all = listed_keys(store, &SessionQuery::default()).await;
    assert_eq!(all, ["agent:main:old", "agent:main:new", "agent:main:a-tie", "agent:main:b-tie"]);
    let page = listed_keys(store, &SessionQuery { limit: 2, offset: 1, ..SessionQuery::default() }).await;
    assert_eq!(page, ["agent:main:new", "agent:main:a-tie"]);
    let past_end = listed_keys(store, &SessionQuery { offset: 10, ..SessionQuery::default() }).await;
    assert!(past_end.is_empty());
    assert!(listed_keys(store, &SessionQuery { limit: 0, ..SessionQuery::default() }).await.is_empty());
}

/// `agent_id` filters exactly; `search` matches a substring of key or label, ignoring ASCII
/// case, with `%` and `_` taken literally.
pub async fn list_sessions_filters_by_agent_and_search<S: SessionStore>(store: &S) {
    store.ensure_session("agent:main:main", "main", T0).await.expect("main");
    store.ensure_session("agent:ops:deploys", "ops", T0 + 1).await.expect("ops");
    store.ensure_session("agent:main:x1", "main", T0 + 2).await.expect("x1");
    store.patch_session("agent:main:x1", &json!({"label": "Weekly 100% Report"}), T0 + 2).await.expect("label");

    let ops = listed_keys(store, &SessionQuery { agent_id: Some("ops".to_owned()), ..SessionQuery::default() }).await;
    assert_eq!(ops, ["agent:ops:deploys"]);
    let search = |text: &str| SessionQuery { search: Some(text.to_owned()), ..SessionQuery::default() };
    assert_eq!(listed_keys(store, &search("DEPLOY")).await, ["agent:ops:deploys"]);
    assert_eq!(listed_keys(store, &search("weekly")).await, ["agent:main:x1"], "label matches");
    assert_eq!(listed_keys(store, &search("100%")).await, ["agent:main:x1"]);
    assert!(listed_keys(store, &search("1_0")).await.is_empty(), "`_` is not a wildcard");
    assert_eq!(listed_keys(store, &search("agent:main")).await, ["agent:main:x1", "agent:main:main"]);
    let both =
        SessionQuery { agent_id: Some("main".to_owned()), search: Some("ops".to_owned()), ..SessionQuery::default() };
    assert!(listed_keys(store, &both).await.is_empty());
}

/// Sessions whose `meta.archived` is `true` are listed only on request; unarchiving brings
/// them back. `count_sessions` counts them either way.
pub async fn list_sessions_hides_archived_unless_asked<S: SessionStore>(store: &S) {
    store.ensure_session("agent:main:live", "main", T0).await.expect("live");
    store.ensure_session("agent:main:gone", "main", T0 + 1).await.expect("gone");
    store.ensure_session("agent:main:odd", "main", T0 + 2).await.expect("odd");
    store.patch_session("agent:main:gone", &json!({"archived": true}), T0 + 3).await.expect("archive");
    store.patch_session("agent:main:odd", &json!({"archived": "yes"}), T0 + 2).await.expect("not a bool");

    assert_eq!(listed_keys(store, &SessionQuery::default()).await, ["agent:main:odd", "agent:main:live"]);
    let with_archived = SessionQuery { include_archived: true, ..SessionQuery::default() };
    assert_eq!(listed_keys(store, &with_archived).await, ["agent:main:gone", "agent:main:odd", "agent:main:live"]);
    assert_eq!(store.count_sessions().await.expect("count"), 3);

    store.patch_session("agent:main:gone", &json!({"archived": false}), T0 + 4).await.expect("unarchive");
    assert_eq!(listed_keys(store, &SessionQuery::default()).await.len(), 3);
}

/// A patch merges into meta (nested objects merge, `null` deletes, arrays replace), sets or
/// clears the label through its `label` key, bumps `updated_at_ms` and keeps everything else.
pub async fn patch_session_merges_meta_and_sets_label<S: SessionStore>(store: &S) {
    let created = store.ensure_session("agent:main:main", "main", T0).await.expect("create");
    let first = store
        .patch_session(
            "agent:main:main",
            &json!({"label": "Work", "model": "fake/fake-model", "thinkingLevel": "low",
                    "ui": {"color": "red", "icon": "star"}, "tags": ["a", "b"]}),
            T0 + 1,
        )
        .await
        .expect("first patch");
    assert_eq!(first.label.as_deref(), Some("Work"));
    assert_eq!(
        first.meta,
        json!({"model": "fake/fake-model", "thinkingLevel": "low", "ui": {"color": "red", "icon": "star"},
               "tags": ["a", "b"]})
    );
    assert_eq!(first.updated_at_ms, T0 + 1);
    assert_eq!((first.session_id.as_str(), first.created_at_ms), (created.session_id.as_str(), T0));

    let second = store
        .patch_session("agent:main:main", &json!({"model": null, "ui": {"color": "blue"}, "tags": ["c"]}), T0 + 2)
        .await
        .expect("second patch");
    assert_eq!(second.label.as_deref(), Some("Work"), "untouched without a label key");
    assert_eq!(second.meta, json!({"thinkingLevel": "low", "ui": {"color": "blue", "icon": "star"}, "tags": ["c"]}));

    let cleared = store.patch_session("agent:main:main", &json!({"label": null}), T0 + 3).await.expect("clear");
    assert_eq!(cleared.label, None);
    assert_eq!(cleared.meta, second.meta);
    assert_eq!(store.get_session("agent:main:main").await.expect("get"), Some(cleared));
}

/// A patch that is not an object, or whose label is neither a string nor `null`, is a
/// `Conflict` and changes nothing; patching an unknown session is `NotFound`.
pub async fn bad_or_misdirected_session_patch_is_refused<S: SessionStore>(store: &S) {
    let created = store.ensure_session("agent:main:main", "main", T0).await.expect("create");
    for patch in [json!(["pinned"]), json!("pinned"), json!({"label": 7, "pinned": true})] {
        let patched = store.patch_session("agent:main:main", &patch, T0 + 1).await;
        assert!(matches!(patched, Err(StoreError::Conflict(_))), "{patch}: {patched:?}");
    }
    assert_eq!(store.get_session("agent:main:main").await.expect("get"), Some(created));
    let unknown = store.patch_session("agent:main:absent", &json!({"pinned": true}), T0).await;
    assert!(matches!(unknown, Err(StoreError::NotFound)), "{unknown:?}");
    assert_eq!(store.count_sessions().await.expect("count"), 1, "a patch never creates a session");
}

/// A reset gives the session a new session id with an empty transcript and keeps its label
/// and meta; the old transcript stays readable under the old id.
pub async fn reset_session_starts_a_new_transcript_and_keeps_the_old<S>(store: &S)
where
    S: SessionStore + TranscriptStore,
{
    store.ensure_session("agent:main:main", "main", T0).await.expect("create");
    let before =
        store.patch_session("agent:main:main", &json!({"label": "Work", "pinned": true}), T0).await.expect("p");
    say(store, &before.session_id, "hello", T0 + 1).await;
    say(store, &before.session_id, "again", T0 + 2).await;

    let reset = store.reset_session("agent:main:main", T0 + 10).await.expect("reset");
    let id = uuid::Uuid::parse_str(&reset.session_id).expect("new session id is a UUID");
    assert_eq!(id.get_version_num(), 4);
    assert_ne!(reset.session_id, before.session_id);
    assert_eq!((reset.message_count, reset.last_message_at_ms), (0, None));
    assert_eq!((reset.label.as_deref(), &reset.meta), (Some("Work"), &json!({"pinned": true})));
    assert_eq!((reset.created_at_ms, reset.updated_at_ms), (T0, T0 + 10));
    assert_eq!(store.get_session("agent:main:main").await.expect("get"), Some(reset.clone()));

    assert_eq!(store.count_entries(&before.session_id).await.expect("old count"), 2);
    assert_eq!(store.tail(&before.session_id, 10, None).await.expect("old tail").len(), 2);
    assert_eq!(say(store, &reset.session_id, "fresh", T0 + 11).await.seq, 1, "new transcript starts at 1");

    let unknown = store.reset_session("agent:main:absent", T0).await;
    assert!(matches!(unknown, Err(StoreError::NotFound)), "{unknown:?}");
}

/// Deleting a session without `delete_transcript` leaves its transcript stored (but the key
/// now names a new, empty session when it is used again).
pub async fn delete_session_keeps_transcript_unless_asked<S>(store: &S)
where
    S: SessionStore + TranscriptStore,
{
    let session = store.ensure_session("agent:main:main", "main", T0).await.expect("create");
    say(store, &session.session_id, "hello", T0 + 1).await;
    assert!(store.delete_session("agent:main:main", false).await.expect("delete"));
    assert_eq!(store.get_session("agent:main:main").await.expect("get"), None);
    assert_eq!(store.count_sessions().await.expect("count"), 0);
    assert_eq!(store.count_entries(&session.session_id).await.expect("kept"), 1);

    let recreated = store.ensure_session("agent:main:main", "main", T0 + 2).await.expect("recreate");
    assert_ne!(recreated.session_id, session.session_id);
    assert_eq!(recreated.message_count, 0);
}

/// Deleting with `delete_transcript` removes every transcript the key has had (the current
/// one and those left by resets) and nothing of other sessions; unknown keys report `false`.
pub async fn delete_session_with_transcript_removes_every_generation<S>(store: &S)
where
    S: SessionStore + TranscriptStore,
{
    let first = store.ensure_session("agent:main:main", "main", T0).await.expect("create");
    say(store, &first.session_id, "one", T0 + 1).await;
    let second = store.reset_session("agent:main:main", T0 + 2).await.expect("reset");
    say(store, &second.session_id, "two", T0 + 3).await;
    let other = store.ensure_session("agent:main:other", "main", T0).await.expect("other");
    say(store, &other.session_id, "keep me", T0 + 1).await;

    assert!(store.delete_session("agent:main:main", true).await.expect("delete"));
    for gone in [&first.session_id, &second.session_id] {
        assert_eq!(store.count_entries(gone).await.expect("count"), 0);
        assert!(store.tail(gone, 10, None).await.expect("tail").is_empty());
    }
    assert_eq!(store.count_entries(&other.session_id).await.expect("other count"), 1);
    assert!(!store.delete_session("agent:main:main", true).await.expect("delete again"));
    assert!(!store.delete_session("agent:main:absent", false).await.expect("delete unknown"));
    assert_eq!(store.count_sessions().await.expect("count"), 1);
}

/// Appending to a session's current transcript updates its message count, last-message time
/// and update time (so active sessions list first).
pub async fn appending_updates_session_activity_and_count<S>(store: &S)
where
    S: SessionStore + TranscriptStore,
{
    let quiet = store.ensure_session("agent:main:quiet", "main", T0 + 50).await.expect("quiet");
    let busy = store.ensure_session("agent:main:busy", "main", T0).await.expect("busy");
    say(store, &busy.session_id, "hi", T0 + 100).await;
    say(store, &busy.session_id, "there", T0 + 101).await;

    let after = store.get_session("agent:main:busy").await.expect("get").expect("busy");
    assert_eq!(after.message_count, 2);
    assert_eq!(after.last_message_at_ms, Some(T0 + 101));
    assert_eq!(after.updated_at_ms, T0 + 101);
    assert_eq!(listed_keys(store, &SessionQuery::default()).await, ["agent:main:busy", "agent:main:quiet"]);
    assert_eq!(store.get_session("agent:main:quiet").await.expect("get"), Some(quiet));
}

// ---------------------------------------------------------------------------------------------
// TranscriptStore

/// Entries of one session are numbered 1, 2, 3, …; each session counts on its own.
pub async fn append_assigns_contiguous_seqs_per_session<S: TranscriptStore>(store: &S) {
    let a: Vec<i64> =
        [say(store, "s-a", "1", T0).await, say(store, "s-a", "2", T0).await].iter().map(|e| e.seq).collect();
    let b = say(store, "s-b", "1", T0).await;
    let a3 = say(store, "s-a", "3", T0).await;
    assert_eq!(a, [1, 2]);
    assert_eq!((b.seq, a3.seq), (1, 3));
    assert_eq!(store.count_entries("s-a").await.expect("count a"), 3);
    assert_eq!(store.count_entries("s-b").await.expect("count b"), 1);
    assert_eq!(store.count_entries("s-none").await.expect("count none"), 0);
}

/// Concurrent appends to one session get distinct, contiguous seqs.
pub async fn concurrent_appends_never_duplicate_seqs<S: TranscriptStore>(store: &S) {
    let racers = tokio::join!(
        say(store, "race", "a", T0),
        say(store, "race", "b", T0),
        say(store, "race", "c", T0),
        say(store, "race", "d", T0),
        say(store, "race", "e", T0),
        say(store, "race", "f", T0),
        say(store, "race", "g", T0),
        say(store, "race", "h", T0),
    );
    let mut seqs = [racers.0, racers.1, racers.2, racers.3, racers.4, racers.5, racers.6, racers.7].map(|e| e.seq);
    seqs.sort_unstable();
    assert_eq!(seqs, [1, 2, 3, 4, 5, 6, 7, 8]);
    let stored: Vec<i64> = store.tail("race", 100, None).await.expect("tail").into_iter().map(|e| e.seq).collect();
    assert_eq!(stored, seqs);
    assert_eq!(store.count_entries("race").await.expect("count"), 8);
}

/// What is appended is what `append` returns and `get_entry` reads back, for every role and
/// status.
pub async fn appended_entry_round_trips<S: TranscriptStore>(store: &S) {
    let assistant = json!({"role": "assistant", "content": [{"type": "text", "text": "Hello"}],
                           "provider": "fake", "model": "fake-model", "usage": {"input": 42, "output": 6},
                           "stopReason": "stop", "timestamp": T0});
    let cases = [
        (
            TranscriptRole::User,
            json!({"role": "user", "content": "Say hello", "timestamp": T0,
                                      "idempotencyKey": "run-1:user"}),
            EntryStatus::Final,
        ),
        (TranscriptRole::Assistant, assistant, EntryStatus::Aborted),
        (TranscriptRole::Tool, json!({"role": "tool", "content": "42"}), EntryStatus::Error),
        (TranscriptRole::System, json!("note"), EntryStatus::Final),
    ];
    for (i, (role, content, status)) in cases.into_iter().enumerate() {
        let at = T0 + i64::try_from(i).expect("small");
        let entry = store.append("s", role, &content, Some("run-1"), status, at).await.expect("append");
        let expected = TranscriptEntry {
            session_id: "s".to_owned(),
            seq: at - T0 + 1,
            role,
            content,
            run_id: Some("run-1".to_owned()),
            status,
            created_at_ms: at,
        };
        assert_eq!(entry, expected);
        assert_eq!(store.get_entry("s", entry.seq).await.expect("get"), Some(expected));
    }
    let no_run = store.append("s", TranscriptRole::User, &json!(1), None, EntryStatus::Final, T0).await.expect("a");
    assert_eq!(no_run.run_id, None);
}

/// Seqs that were never appended (or belong to another session) read as `None`.
pub async fn get_entry_of_unknown_seq_is_none<S: TranscriptStore>(store: &S) {
    say(store, "s", "one", T0).await;
    assert_eq!(store.get_entry("s", 2).await.expect("get"), None);
    assert_eq!(store.get_entry("s", 0).await.expect("get"), None);
    assert_eq!(store.get_entry("other", 1).await.expect("get"), None);
}

/// `tail` returns the newest `limit` entries below `before_seq`, oldest first, so pages are
/// walked backwards by passing the first seq of the previous page.
pub async fn tail_returns_newest_entries_in_ascending_order<S: TranscriptStore>(store: &S) {
    assert!(store.tail("s", 10, None).await.expect("empty").is_empty());
    for i in 1..=10 {
        say(store, "s", &format!("m{i}"), T0 + i).await;
    }
    say(store, "neighbour", "x", T0).await;
    let seqs = |entries: Vec<TranscriptEntry>| entries.into_iter().map(|e| e.seq).collect::<Vec<_>>();

    assert_eq!(seqs(store.tail("s", 3, None).await.expect("last 3")), [8, 9, 10]);
    assert_eq!(seqs(store.tail("s", 3, Some(8)).await.expect("page 2")), [5, 6, 7]);
    assert_eq!(seqs(store.tail("s", 3, Some(3)).await.expect("short page")), [1, 2]);
    assert!(store.tail("s", 3, Some(1)).await.expect("before the first").is_empty());
    assert_eq!(seqs(store.tail("s", 100, None).await.expect("all")), (1..=10).collect::<Vec<_>>());
    assert!(store.tail("s", 0, None).await.expect("limit 0").is_empty());
    assert_eq!(seqs(store.tail("s", usize::MAX, Some(i64::MAX)).await.expect("unbounded")).len(), 10);
    let last = store.tail("s", 1, None).await.expect("newest");
    assert_eq!(last[0].content, json!({"role": "user", "content": "m10"}));
}

/// `compact` keeps the newest `keep_last` entries, reports how many went, and numbering
/// continues after it — even when everything was compacted away.
pub async fn compact_keeps_newest_entries_and_numbering_continues<S: TranscriptStore>(store: &S) {
    for i in 1..=10 {
        say(store, "s", "x", T0 + i).await;
    }
    say(store, "other", "x", T0).await;
    assert_eq!(store.compact("s", 20).await.expect("under cap"), 0);
    assert_eq!(store.compact("s", 4).await.expect("compact"), 6);
    assert_eq!(store.count_entries("s").await.expect("count"), 4);
    let kept: Vec<i64> = store.tail("s", 100, None).await.expect("tail").into_iter().map(|e| e.seq).collect();
    assert_eq!(kept, [7, 8, 9, 10]);
    assert_eq!(store.get_entry("s", 6).await.expect("get"), None);
    assert_eq!(say(store, "s", "next", T0 + 11).await.seq, 11);

    assert_eq!(store.compact("s", 0).await.expect("compact all"), 5);
    assert_eq!(store.count_entries("s").await.expect("count"), 0);
    assert_eq!(say(store, "s", "after", T0 + 12).await.seq, 12, "seqs never restart");
    assert_eq!(store.count_entries("other").await.expect("other"), 1);
    assert_eq!(store.compact("absent", 0).await.expect("unknown"), 0);
}

/// `find_by_run` returns every entry of a run, across sessions, in append order.
pub async fn find_by_run_returns_the_runs_entries_in_order<S: TranscriptStore>(store: &S) {
    let user = json!({"role": "user", "content": "hi"});
    let reply = json!({"role": "assistant", "content": [{"type": "text", "text": "hello"}]});
    store.append("s", TranscriptRole::User, &user, Some("run-1"), EntryStatus::Final, T0).await.expect("user");
    store.append("s", TranscriptRole::User, &user, Some("run-2"), EntryStatus::Final, T0 + 1).await.expect("other");
    store.append("s", TranscriptRole::Assistant, &reply, Some("run-1"), EntryStatus::Final, T0 + 2).await.expect("a");
    store.append("s", TranscriptRole::System, &json!("x"), None, EntryStatus::Final, T0 + 3).await.expect("none");

    let found = store.find_by_run("run-1").await.expect("find");
    let summary: Vec<(i64, TranscriptRole)> = found.iter().map(|e| (e.seq, e.role)).collect();
    assert_eq!(summary, [(1, TranscriptRole::User), (3, TranscriptRole::Assistant)]);
    assert_eq!(found[1].content, reply);
    assert!(store.find_by_run("run-absent").await.expect("find none").is_empty());
}

// ---------------------------------------------------------------------------------------------
// RunStore

async fn queued<S: RunStore>(store: &S, run_id: &str, session_key: &str, at: i64) -> RunRecord {
    match store.enqueue(run_id, session_key, RunKind::Chat, &json!({"message": run_id}), at).await.expect("enqueue") {
        EnqueueOutcome::Inserted(run) => run,
        EnqueueOutcome::Existing(run) => panic!("{run_id} already queued: {run:?}"),
    }
}

/// The first enqueue of a run id queues it; repeats return the stored run untouched.
pub async fn enqueue_is_idempotent_on_run_id<S: RunStore>(store: &S) {
    let request = json!({"message": "hi", "thinking": "low"});
    let first = store.enqueue("run-1", "agent:main:main", RunKind::Agent, &request, T0).await.expect("first");
    let expected = RunRecord {
        run_id: "run-1".to_owned(),
        session_key: "agent:main:main".to_owned(),
        kind: RunKind::Agent,
        status: RunStatus::Queued,
        request,
        result: None,
        created_at_ms: T0,
        started_at_ms: None,
        ended_at_ms: None,
        owner: None,
    };
    assert_eq!(first, EnqueueOutcome::Inserted(expected.clone()));
    let again = store.enqueue("run-1", "agent:main:other", RunKind::Http, &json!({}), T0 + 1).await.expect("again");
    assert_eq!(again, EnqueueOutcome::Existing(expected.clone()));
    assert_eq!(again.record(), &expected);
    assert_eq!(store.get_run("run-1").await.expect("get"), Some(expected));
}

/// Of concurrent enqueues of one run id, exactly one inserts.
pub async fn concurrent_enqueue_has_exactly_one_winner<S: RunStore>(store: &S) {
    let request = json!({});
    let (a, b, c, d) = tokio::join!(
        store.enqueue("race", "s", RunKind::Chat, &request, T0),
        store.enqueue("race", "s", RunKind::Chat, &request, T0),
        store.enqueue("race", "s", RunKind::Chat, &request, T0),
        store.enqueue("race", "s", RunKind::Chat, &request, T0),
    );
    let outcomes = [a.expect("a"), b.expect("b"), c.expect("c"), d.expect("d")];
    let winners = outcomes.iter().filter(|o| matches!(o, EnqueueOutcome::Inserted(_))).count();
    assert_eq!(winners, 1, "{outcomes:?}");
}

/// A session's runs start one at a time in enqueue order (even if an earlier run carries a
/// later timestamp); other sessions' lanes are independent.
pub async fn claim_next_starts_runs_one_at_a_time_in_enqueue_order<S: RunStore>(store: &S) {
    assert_eq!(store.claim_next("s", T0).await.expect("nothing queued"), None);
    queued(store, "r1", "s", T0 + 5).await;
    queued(store, "r2", "s", T0).await;
    queued(store, "other-1", "t", T0).await;

    let first = store.claim_next("s", T0 + 10).await.expect("claim").expect("r1");
    assert_eq!((first.run_id.as_str(), first.status, first.started_at_ms), ("r1", RunStatus::Running, Some(T0 + 10)));
    assert_eq!(store.claim_next("s", T0 + 11).await.expect("lane busy"), None);
    let other = store.claim_next("t", T0 + 11).await.expect("claim t").expect("other lane");
    assert_eq!(other.run_id, "other-1");

    store.finish("r1", RunStatus::Completed, None, T0 + 12).await.expect("finish");
    let second = store.claim_next("s", T0 + 13).await.expect("claim").expect("r2");
    assert_eq!(second.run_id, "r2");
    store.finish("r2", RunStatus::Completed, None, T0 + 14).await.expect("finish");
    assert_eq!(store.claim_next("s", T0 + 15).await.expect("drained"), None);
}

/// `start_next` claims like `claim_next` and writes the entry `prepare` gives into the
/// session's current transcript, under the run's id and at the claim's time; `prepare` sees the
/// run (and may take its request) and the session, and is not called when nothing is claimed.
pub async fn start_next_claims_and_writes_the_first_entry_together<S>(store: &S)
where
    S: RunStore + SessionStore + TranscriptStore,
{
    let session = store.ensure_session("s", "main", T0).await.expect("session");
    let none = store.start_next("s", "gw-a", T0, |_, _| -> ((), Option<NewEntry>) { panic!("nothing to prepare") });
    assert!(none.await.expect("nothing queued").is_none());
    queued(store, "r1", "s", T0 + 1).await;
    queued(store, "r2", "s", T0 + 2).await;

    let started = store
        .start_next("s", "gw-a", T0 + 10, |run, seen| {
            let request = run.request.take();
            let entry = NewEntry {
                role: TranscriptRole::User,
                content: json!({"role": "user", "content": request["message"]}),
                status: EntryStatus::Final,
            };
            ((run.run_id.clone(), seen.map(|s| s.message_count)), Some(entry))
        })
        .await
        .expect("start")
        .expect("r1 starts");
    assert_eq!(started.prepared, ("r1".to_owned(), Some(0)));
    assert_eq!((started.run.status, started.run.started_at_ms), (RunStatus::Running, Some(T0 + 10)));
    assert_eq!(started.run.owner.as_deref(), Some("gw-a"), "the claiming gateway owns the run");
    assert_eq!(started.run.request, Value::Null, "the request is as the preparation left it");
    assert_eq!(started.session.as_ref().map(|s| s.session_id.as_str()), Some(session.session_id.as_str()));
    let expected = TranscriptEntry {
        session_id: session.session_id.clone(),
        seq: 1,
        role: TranscriptRole::User,
        content: json!({"role": "user", "content": "r1"}),
        run_id: Some("r1".to_owned()),
        status: EntryStatus::Final,
        created_at_ms: T0 + 10,
    };
    assert_eq!(started.entry.as_ref(), Some(&expected));
    assert_eq!(store.find_by_run("r1").await.expect("find"), vec![expected]);
    let stored = store.get_run("r1").await.expect("get").expect("r1");
    assert_eq!((stored.status, stored.request), (RunStatus::Running, json!({"message": "r1"})));
    let after = store.get_session("s").await.expect("get").expect("s");
    assert_eq!((after.message_count, after.updated_at_ms), (1, T0 + 10));

    // One run at a time, as with claim_next.
    let busy = store.start_next("s", "gw-a", T0 + 11, |_, _| -> ((), Option<NewEntry>) { panic!("the lane is busy") });
    assert!(busy.await.expect("busy").is_none());
    store.finish("r1", RunStatus::Completed, None, T0 + 12).await.expect("finish");
    // A preparation that gives no entry starts the run and writes nothing.
    let second = store.start_next("s", "gw-a", T0 + 13, |_, _| ((), None)).await.expect("start").expect("r2");
    assert_eq!((second.run.run_id.as_str(), second.entry), ("r2", None));
    assert_eq!(store.count_entries(&session.session_id).await.expect("count"), 1);
}

/// A run whose session is gone (deleted while it waited) starts, but its entry has nowhere to
/// go: nothing is written, and the caller learns so.
pub async fn start_next_without_a_session_claims_and_writes_nothing<S>(store: &S)
where
    S: RunStore + SessionStore + TranscriptStore,
{
    queued(store, "r1", "gone", T0).await;
    let started = store
        .start_next("gone", "gw-a", T0 + 1, |_, seen| {
            let entry = NewEntry { role: TranscriptRole::User, content: json!("hi"), status: EntryStatus::Final };
            (seen.is_none(), Some(entry))
        })
        .await
        .expect("start")
        .expect("r1 starts");
    assert!(started.prepared, "the preparation is told there is no session");
    assert_eq!((started.session, started.entry), (None, None));
    assert_eq!(store.get_run("r1").await.expect("get").map(|r| r.status), Some(RunStatus::Running));
    assert!(store.find_by_run("r1").await.expect("find").is_empty());
}

/// Concurrent claims on one session start exactly one run.
pub async fn concurrent_claims_start_one_run_per_session<S: RunStore>(store: &S) {
    for run_id in ["r1", "r2", "r3", "r4"] {
        queued(store, run_id, "s", T0).await;
    }
    let (a, b, c, d) = tokio::join!(
        store.claim_next("s", T0),
        store.claim_next("s", T0),
        store.claim_next("s", T0),
        store.claim_next("s", T0),
    );
    let claimed: Vec<RunRecord> = [a, b, c, d].into_iter().filter_map(|r| r.expect("claim")).collect();
    assert_eq!(claimed.len(), 1, "{claimed:?}");
    assert_eq!(claimed[0].run_id, "r1");
}

/// `finish` records the terminal status, result and end time; a queued run may be finished
/// directly (aborted before it started), which does not block the lane.
pub async fn finish_records_outcome_and_frees_the_lane<S: RunStore>(store: &S) {
    queued(store, "r1", "s", T0).await;
    queued(store, "r2", "s", T0).await;
    queued(store, "r3", "s", T0).await;
    store.claim_next("s", T0 + 1).await.expect("claim").expect("r1");
    let result = json!({"status": "ok", "summary": "completed", "result": {"payloads": [{"text": "hi"}]}});
    let done = store.finish("r1", RunStatus::Completed, Some(&result), T0 + 2).await.expect("finish");
    assert_eq!(done.status, RunStatus::Completed);
    assert_eq!(done.result, Some(result));
    assert_eq!((done.started_at_ms, done.ended_at_ms), (Some(T0 + 1), Some(T0 + 2)));
    assert_eq!(store.get_run("r1").await.expect("get"), Some(done));

    let skipped = store.finish("r2", RunStatus::Aborted, None, T0 + 3).await.expect("abort queued");
    assert_eq!((skipped.status, skipped.started_at_ms, skipped.result), (RunStatus::Aborted, None, None));
    let next = store.claim_next("s", T0 + 4).await.expect("claim").expect("r3");
    assert_eq!(next.run_id, "r3");
    let failed = store.finish("r3", RunStatus::Failed, Some(&json!({"error": "boom"})), T0 + 5).await.expect("fail");
    assert_eq!(failed.status, RunStatus::Failed);
}

/// Finishing with a non-terminal status or finishing twice is a `Conflict` that changes
/// nothing; unknown runs are `NotFound`.
pub async fn finish_refuses_non_terminal_status_and_second_finish<S: RunStore>(store: &S) {
    queued(store, "r1", "s", T0).await;
    store.claim_next("s", T0 + 1).await.expect("claim").expect("r1");
    for status in [RunStatus::Queued, RunStatus::Running] {
        let refused = store.finish("r1", status, None, T0 + 2).await;
        assert!(matches!(refused, Err(StoreError::Conflict(_))), "{status}: {refused:?}");
    }
    let done = store.finish("r1", RunStatus::Completed, Some(&json!(1)), T0 + 3).await.expect("finish");
    let twice = store.finish("r1", RunStatus::Failed, None, T0 + 4).await;
    assert!(matches!(twice, Err(StoreError::Conflict(_))), "{twice:?}");
    assert_eq!(store.get_run("r1").await.expect("get"), Some(done));
    let unknown = store.finish("absent", RunStatus::Completed, None, T0).await;
    assert!(matches!(unknown, Err(StoreError::NotFound)), "{unknown:?}");
}

/// Unknown run ids read as `None`.
pub async fn get_run_of_unknown_id_is_none<S: RunStore>(store: &S) {
    assert_eq!(store.get_run("absent").await.expect("get"), None);
}

/// Sessions with queued runs are listed once each, the one waiting longest first; sessions
/// whose runs are all running or finished are not.
pub async fn list_queued_sessions_lists_each_waiting_session_once<S: RunStore>(store: &S) {
    assert!(store.list_queued_sessions().await.expect("empty").is_empty());
    queued(store, "b1", "b", T0).await;
    queued(store, "a1", "a", T0).await;
    queued(store, "b2", "b", T0).await;
    queued(store, "c1", "c", T0).await;
    queued(store, "d1", "d", T0).await;
    store.claim_next("c", T0).await.expect("claim").expect("c1 runs");
    store.finish("d1", RunStatus::Aborted, None, T0).await.expect("abort d1");
    assert_eq!(store.list_queued_sessions().await.expect("list"), ["b", "a"]);
}

/// Queued runs are listed with their sessions in queue order; running and finished ones are not.
pub async fn list_queued_runs_lists_waiting_runs_in_queue_order<S: RunStore>(store: &S) {
    assert!(store.list_queued_runs().await.expect("empty").is_empty());
    queued(store, "b1", "b", T0).await;
    queued(store, "a1", "a", T0).await;
    queued(store, "b2", "b", T0).await;
    queued(store, "c1", "c", T0).await;
    store.claim_next("b", T0).await.expect("claim").expect("b1 runs");
    store.finish("c1", RunStatus::Aborted, None, T0).await.expect("abort c1");
    let pair = |r: &str, s: &str| (r.to_owned(), s.to_owned());
    assert_eq!(store.list_queued_runs().await.expect("list"), [pair("a1", "a"), pair("b2", "b")]);
}

/// At startup, runs left running become interrupted (with an end time) once their turn wrote to
/// the transcript, their lanes open up, and nothing else changes; a running run that wrote
/// nothing yet (a crash between the claim and the user message) goes back to the queue at its
/// place, so an acknowledged message is never lost.
pub async fn mark_interrupted_running_ends_runs_cut_off_by_a_crash<S: RunStore + TranscriptStore>(store: &S) {
    queued(store, "r1", "s", T0).await;
    queued(store, "r2", "s", T0).await;
    queued(store, "t1", "t", T0).await;
    queued(store, "u1", "u", T0).await;
    queued(store, "v1", "v", T0).await;
    queued(store, "v2", "v", T0).await;
    for (session, run) in [("s", "r1"), ("t", "t1"), ("u", "u1"), ("v", "v1")] {
        store.claim_next(session, T0 + 1).await.expect("claim").expect(run);
    }
    for run in ["r1", "t1"] {
        store
            .append(&format!("sid-{run}"), TranscriptRole::User, &json!("hi"), Some(run), EntryStatus::Final, T0 + 1)
            .await
            .expect("user message of a started turn");
    }
    store.finish("u1", RunStatus::Completed, None, T0 + 2).await.expect("finish");

    assert_eq!(store.mark_interrupted_running(T0 + 100, T0 + 100).await.expect("mark"), 2);
    let r1 = store.get_run("r1").await.expect("get").expect("r1");
    assert_eq!((r1.status, r1.ended_at_ms), (RunStatus::Interrupted, Some(T0 + 100)));
    let u1 = store.get_run("u1").await.expect("get").expect("u1");
    assert_eq!((u1.status, u1.ended_at_ms), (RunStatus::Completed, Some(T0 + 2)));
    let v1 = store.get_run("v1").await.expect("get").expect("v1");
    assert_eq!((v1.status, v1.ended_at_ms), (RunStatus::Queued, None), "claimed but never started: queued again");
    assert_eq!(store.claim_next("v", T0 + 101).await.expect("claim").map(|r| r.run_id).as_deref(), Some("v1"));
    assert_eq!(store.get_run("r2").await.expect("get").expect("r2").status, RunStatus::Queued);
    assert_eq!(store.claim_next("s", T0 + 101).await.expect("claim").map(|r| r.run_id).as_deref(), Some("r2"));
    store
        .append("sid-r2", TranscriptRole::User, &json!("hi"), Some("r2"), EntryStatus::Final, T0 + 101)
        .await
        .expect("user message");
    store
        .append("sid-v1", TranscriptRole::User, &json!("hi"), Some("v1"), EntryStatus::Final, T0 + 101)
        .await
        .expect("user message");
    assert_eq!(store.mark_interrupted_running(T0 + 200, T0 + 200).await.expect("mark"), 2);
    assert_eq!(store.mark_interrupted_running(T0 + 300, T0 + 300).await.expect("mark again"), 0);
}

/// The periodic sweep of several gateways: a run owned by a gateway seen at or after the
/// cut-off is left running; a run of a gateway seen before it (or never registered) is
/// interrupted, and one that never started its turn is queued again without an owner.
pub async fn mark_interrupted_running_spares_runs_of_live_gateways<S>(store: &S)
where
    S: RunStore + SessionStore + TranscriptStore + ClusterStore,
{
    store.upsert_gateway(&gateway("gw-live", T0 + 50)).await.expect("live");
    store.upsert_gateway(&gateway("gw-dead", T0 + 10)).await.expect("dead");
    let prepare = |_: &mut RunRecord, _: Option<&SessionRecord>| ((), None);
    for (session, run, owner) in
        [("a", "a1", "gw-live"), ("b", "b1", "gw-dead"), ("c", "c1", "gw-gone"), ("d", "d1", "gw-dead")]
    {
        queued(store, run, session, T0).await;
        store.start_next(session, owner, T0 + 1, prepare).await.expect("start").expect(run);
    }
    for run in ["a1", "b1", "c1"] {
        store
            .append(&format!("sid-{run}"), TranscriptRole::User, &json!("hi"), Some(run), EntryStatus::Final, T0 + 1)
            .await
            .expect("user message of a started turn");
    }
    assert_eq!(store.mark_interrupted_running(T0 + 60, T0 + 40).await.expect("sweep"), 2);
    let status = |run: &'static str| async move { store.get_run(run).await.expect("get").expect(run) };
    let a1 = status("a1").await;
    assert_eq!((a1.status, a1.owner.as_deref()), (RunStatus::Running, Some("gw-live")), "a live peer's run");
    assert_eq!(status("b1").await.status, RunStatus::Interrupted);
    assert_eq!(status("c1").await.status, RunStatus::Interrupted, "an unregistered owner is gone");
    let d1 = status("d1").await;
    assert_eq!((d1.status, d1.owner), (RunStatus::Queued, None), "claimed but never started: queued again");
    // Once the live one stops heartbeating, its run goes too.
    assert_eq!(store.mark_interrupted_running(T0 + 200, T0 + 100).await.expect("sweep"), 1);
    assert_eq!(status("a1").await.status, RunStatus::Interrupted);
}

/// Pruning deletes finished runs that ended before the cutoff; queued, running and recently
/// finished runs stay.
pub async fn prune_finished_drops_only_old_finished_runs<S: RunStore>(store: &S) {
    for (run_id, session) in [("old-done", "a"), ("old-failed", "b"), ("recent", "c"), ("running", "d")] {
        queued(store, run_id, session, T0).await;
        store.claim_next(session, T0).await.expect("claim").expect("claimed");
    }
    queued(store, "waiting", "d", T0).await;
    store.finish("old-done", RunStatus::Completed, None, T0 + 1).await.expect("finish");
    store.finish("old-failed", RunStatus::Failed, None, T0 + 2).await.expect("finish");
    store.finish("recent", RunStatus::Aborted, None, T0 + 50).await.expect("finish");

    assert_eq!(store.prune_finished(T0 + 10).await.expect("prune"), 2);
    assert_eq!(store.get_run("old-done").await.expect("get"), None);
    assert_eq!(store.get_run("old-failed").await.expect("get"), None);
    for kept in ["recent", "running", "waiting"] {
        assert!(store.get_run(kept).await.expect("get").is_some(), "{kept}");
    }
    assert_eq!(store.prune_finished(i64::MAX).await.expect("prune all finished"), 1);
    assert!(store.get_run("running").await.expect("get").is_some());
    // A pruned run id is free again: the idempotency window of runs is the prune age.
    assert!(matches!(
        store.enqueue("old-done", "a", RunKind::Chat, &json!({}), T0 + 60).await.expect("re-enqueue"),
        EnqueueOutcome::Inserted(_)
    ));
}

// ---------------------------------------------------------------------------------------------
// ChannelStore

async fn inbound<S: ChannelStore>(store: &S, message_id: &str, at: i64) -> i64 {
    store
        .record_inbound("telegram", "main", message_id, "chat-1", "user-1", &json!({"text": message_id}), at)
        .await
        .expect("record_inbound")
        .expect("new message")
}

fn outbound(key: &str, account: &str) -> NewOutbound {
    NewOutbound {
        idempotency_key: key.to_owned(),
        channel: "telegram".to_owned(),
        account: account.to_owned(),
        chat_id: "chat-1".to_owned(),
        payload: json!({"text": key}),
    }
}

async fn queued_ids<S: ChannelStore>(store: &S, account: &str) -> Vec<String> {
    let rows = store.list_outbound("telegram", account, Some(OutboxStatus::Queued), 100).await.expect("list");
    rows.into_iter().map(|r| r.idempotency_key).collect()
}

async fn pair_request<S: ChannelStore>(store: &S, sender: &str, code: &str, at: i64) -> crate::Result<ChannelPairing> {
    store
        .request_channel_pairing("telegram", "main", sender, Some("Ann"), &format!("dm-{sender}"), code, at, at + 100)
        .await
}

/// A recorded message reads back as recorded; the same (channel, account, message id) again
/// is `None` and changes nothing, while the same id on another account or channel is new.
pub async fn recorded_inbound_round_trips_and_redelivery_is_none<S: ChannelStore>(store: &S) {
    let message = json!({"text": "hello", "from": {"id": 7}});
    let id = store
        .record_inbound("telegram", "main", "m1", "chat-1", "user-7", &message, T0)
        .await
        .expect("record")
        .expect("new");
    let expected = InboxRecord {
        id,
        channel: "telegram".to_owned(),
        account: "main".to_owned(),
        message_id: "m1".to_owned(),
        chat_id: "chat-1".to_owned(),
        sender_id: "user-7".to_owned(),
        message: message.clone(),
        status: InboxStatus::Received,
        reason: None,
        run_id: None,
        session_key: None,
        received_at_ms: T0,
        updated_at_ms: T0,
    };
    assert_eq!(store.get_inbound(id).await.expect("get"), Some(expected.clone()));

    let again = store.record_inbound("telegram", "main", "m1", "chat-2", "user-8", &json!("x"), T0 + 5).await;
    assert_eq!(again.expect("redelivery"), None);
    assert_eq!(store.get_inbound(id).await.expect("get"), Some(expected));

    let other_account = store.record_inbound("telegram", "work", "m1", "c", "u", &message, T0).await.expect("rec");
    let other_channel = store.record_inbound("discord", "main", "m1", "c", "u", &message, T0).await.expect("rec");
    let (a, b) = (other_account.expect("new on another account"), other_channel.expect("new on another channel"));
    assert!(id < a && a < b, "ids ascend: {id} {a} {b}");
    assert_eq!(store.get_inbound(b + 1000).await.expect("get unknown"), None);
}

/// Of several concurrent deliveries of one message, exactly one is recorded as new.
pub async fn concurrent_record_inbound_has_exactly_one_winner<S: ChannelStore>(store: &S) {
    let message = json!({});
    let record = || store.record_inbound("telegram", "main", "dup", "c", "u", &message, T0);
    let racers = tokio::join!(record(), record(), record(), record(), record(), record());
    let results = [racers.0, racers.1, racers.2, racers.3, racers.4, racers.5].map(|r| r.expect("record"));
    assert_eq!(results.iter().filter(|r| r.is_some()).count(), 1, "{results:?}");
    assert_eq!(store.pending_inbound(10).await.expect("pending").len(), 1);
}

/// Restart recovery sees received and routed rows, oldest first, up to the limit; answered
/// and dropped rows are done.
pub async fn pending_inbound_lists_unfinished_rows_oldest_first<S: ChannelStore>(store: &S) {
    assert!(store.pending_inbound(10).await.expect("empty").is_empty());
    let ids: Vec<i64> = {
        let mut ids = Vec::new();
        for (i, message_id) in ["a", "b", "c", "d", "e"].into_iter().enumerate() {
            ids.push(inbound(store, message_id, T0 + i64::try_from(i).expect("small")).await);
        }
        ids
    };
    store.set_inbound_status(ids[0], InboxStatus::Answered, None, None, None, T0 + 10).await.expect("answer a");
    store.set_inbound_status(ids[1], InboxStatus::Routed, None, Some("run-b"), Some("s"), T0 + 10).await.expect("b");
    store.set_inbound_status(ids[3], InboxStatus::Dropped, Some("blocked"), None, None, T0 + 10).await.expect("d");
    let pending: Vec<(String, InboxStatus)> =
        store.pending_inbound(10).await.expect("pending").into_iter().map(|r| (r.message_id, r.status)).collect();
    assert_eq!(
        pending,
        [
            ("b".to_owned(), InboxStatus::Routed),
            ("c".to_owned(), InboxStatus::Received),
            ("e".to_owned(), InboxStatus::Received)
        ]
    );
    let first_two: Vec<i64> = store.pending_inbound(2).await.expect("limited").into_iter().map(|r| r.id).collect();
    assert_eq!(first_two, [ids[1], ids[2]]);
}

/// Setting a status writes the given reason, run id and session key, leaves those given as
/// `None` alone, and is `NotFound` for an unknown row.
pub async fn set_inbound_status_keeps_columns_given_as_none<S: ChannelStore>(store: &S) {
    let id = inbound(store, "m", T0).await;
    store
        .set_inbound_status(id, InboxStatus::Routed, Some("first"), Some("run-1"), Some("agent:main:tg"), T0 + 1)
        .await
        .expect("route");
    store.set_inbound_status(id, InboxStatus::Answered, None, None, None, T0 + 2).await.expect("answer");
    let row = store.get_inbound(id).await.expect("get").expect("row");
    assert_eq!(row.status, InboxStatus::Answered);
    assert_eq!(
        (row.reason.as_deref(), row.run_id.as_deref(), row.session_key.as_deref()),
        (Some("first"), Some("run-1"), Some("agent:main:tg"))
    );
    assert_eq!((row.received_at_ms, row.updated_at_ms), (T0, T0 + 2));
    store.set_inbound_status(id, InboxStatus::Routed, None, Some("run-2"), None, T0 + 3).await.expect("reroute");
    let row = store.get_inbound(id).await.expect("get").expect("row");
    assert_eq!((row.status, row.run_id.as_deref()), (InboxStatus::Routed, Some("run-2")));
    let unknown = store.set_inbound_status(id + 1, InboxStatus::Dropped, None, None, None, T0).await;
    assert!(matches!(unknown, Err(StoreError::NotFound)), "{unknown:?}");
}

/// Queueing inserts the chunks in order with the inbox row they answer and marks that row
/// answered; queueing the same keys again inserts nothing; an unknown inbox row refuses the
/// whole batch.
pub async fn queue_outbound_is_idempotent_and_answers_atomically<S: ChannelStore>(store: &S) {
    let id = inbound(store, "m", T0).await;
    let items = [outbound("r1:0", "main"), outbound("r1:1", "main"), outbound("r1:2", "main")];
    assert_eq!(store.queue_outbound(&items, Some(id), T0 + 5).await.expect("queue"), 3);
    let answered = store.get_inbound(id).await.expect("get").expect("row");
    assert_eq!((answered.status, answered.updated_at_ms), (InboxStatus::Answered, T0 + 5));
    let rows = store.list_outbound("telegram", "main", None, 100).await.expect("list");
    assert_eq!(rows.iter().map(|r| r.idempotency_key.as_str()).collect::<Vec<_>>(), ["r1:0", "r1:1", "r1:2"]);
    assert!(rows.windows(2).all(|w| w[0].id < w[1].id), "ids ascend in slice order");
    let expected = OutboxRecord {
        id: rows[0].id,
        idempotency_key: "r1:0".to_owned(),
        channel: "telegram".to_owned(),
        account: "main".to_owned(),
        chat_id: "chat-1".to_owned(),
        payload: json!({"text": "r1:0"}),
        status: OutboxStatus::Queued,
        attempts: 0,
        next_attempt_at_ms: T0 + 5,
        last_error: None,
        platform_message_id: None,
        inbox_id: Some(id),
        created_at_ms: T0 + 5,
        updated_at_ms: T0 + 5,
    };
    assert_eq!(rows[0], expected);
    assert_eq!(store.outbound_by_key("r1:0").await.expect("by key"), Some(expected));
    assert_eq!(store.outbound_by_key("absent").await.expect("by key"), None);

    // A retried "queue the reply" (after a crash, say) adds only what is new.
    let retried = [outbound("r1:1", "main"), outbound("r1:3", "main")];
    assert_eq!(store.queue_outbound(&retried, Some(id), T0 + 6).await.expect("requeue"), 1);
    assert_eq!(queued_ids(store, "main").await, ["r1:0", "r1:1", "r1:2", "r1:3"]);

    // Not a reply: no inbox row is touched.
    let other = inbound(store, "n", T0).await;
    assert_eq!(store.queue_outbound(&[outbound("notice", "main")], None, T0 + 7).await.expect("notice"), 1);
    assert_eq!(store.outbound_by_key("notice").await.expect("get").expect("row").inbox_id, None);
    assert_eq!(store.get_inbound(other).await.expect("get").expect("row").status, InboxStatus::Received);

    // An unknown inbox row: nothing is queued.
    let refused = store.queue_outbound(&[outbound("orphan", "main")], Some(other + 1000), T0 + 8).await;
    assert!(matches!(refused, Err(StoreError::NotFound)), "{refused:?}");
    assert_eq!(store.outbound_by_key("orphan").await.expect("get"), None);
    assert_eq!(store.queue_outbound(&[], Some(other), T0 + 9).await.expect("empty reply"), 0);
    assert_eq!(store.get_inbound(other).await.expect("get").expect("row").status, InboxStatus::Answered);
}

/// Each account's head is its oldest queued row, whatever its retry time; a retry keeps it
/// the head, and sending or failing it moves on to the next. Accounts do not see each other.
pub async fn next_outbound_keeps_per_account_order_and_retry_keeps_the_head<S: ChannelStore>(store: &S) {
    assert_eq!(store.next_outbound("telegram", "main").await.expect("empty"), None);
    let items = [outbound("a1", "main"), outbound("b1", "work"), outbound("a2", "main"), outbound("a3", "main")];
    store.queue_outbound(&items, None, T0).await.expect("queue");
    let head = |account: &'static str| async move {
        store.next_outbound("telegram", account).await.expect("next").map(|r| r.idempotency_key)
    };
    assert_eq!(head("main").await.as_deref(), Some("a1"));
    assert_eq!(head("work").await.as_deref(), Some("b1"));
    assert_eq!(store.next_outbound("discord", "main").await.expect("other channel"), None);

    let a1 = store.outbound_by_key("a1").await.expect("get").expect("a1");
    store.mark_outbound_retry(a1.id, T0 + 60_000, "429 too many requests", T0 + 1).await.expect("retry");
    let retried = store.next_outbound("telegram", "main").await.expect("next").expect("head");
    assert_eq!(retried.idempotency_key, "a1", "a retried row stays the head");
    assert_eq!(
        (retried.attempts, retried.next_attempt_at_ms, retried.last_error.as_deref(), retried.status),
        (1, T0 + 60_000, Some("429 too many requests"), OutboxStatus::Queued)
    );
    assert_eq!(retried.updated_at_ms, T0 + 1);
    store.mark_outbound_retry(a1.id, T0 + 120_000, "again", T0 + 2).await.expect("retry again");
    assert_eq!(store.outbound_by_key("a1").await.expect("get").expect("a1").attempts, 2);

    store.mark_outbound_sent(a1.id, "tg-1", T0 + 3).await.expect("sent");
    assert_eq!(head("main").await.as_deref(), Some("a2"));
    let a2 = store.outbound_by_key("a2").await.expect("get").expect("a2");
    store.mark_outbound_failed(a2.id, "chat not found", T0 + 4).await.expect("failed");
    assert_eq!(head("main").await.as_deref(), Some("a3"));
    assert_eq!(head("work").await.as_deref(), Some("b1"));
}

/// Sent is final and idempotent (the first platform id stays); a sent row cannot be retried
/// or failed; failing twice is harmless; unknown ids are `NotFound`.
pub async fn outbound_sent_and_failed_transitions<S: ChannelStore>(store: &S) {
    store.queue_outbound(&[outbound("s", "main"), outbound("f", "main")], None, T0).await.expect("queue");
    let s = store.outbound_by_key("s").await.expect("get").expect("s").id;
    let f = store.outbound_by_key("f").await.expect("get").expect("f").id;

    store.mark_outbound_sent(s, "tg-100", T0 + 1).await.expect("sent");
    store.mark_outbound_sent(s, "tg-200", T0 + 2).await.expect("sent again is ok");
    let sent = store.outbound_by_key("s").await.expect("get").expect("s");
    assert_eq!(
        (sent.status, sent.platform_message_id.as_deref(), sent.updated_at_ms, sent.attempts),
        (OutboxStatus::Sent, Some("tg-100"), T0 + 1, 0)
    );
    let retry = store.mark_outbound_retry(s, T0 + 10, "late error", T0 + 3).await;
    assert!(matches!(retry, Err(StoreError::Conflict(_))), "{retry:?}");
    let fail = store.mark_outbound_failed(s, "late error", T0 + 3).await;
    assert!(matches!(fail, Err(StoreError::Conflict(_))), "{fail:?}");
    assert_eq!(store.outbound_by_key("s").await.expect("get").expect("s"), sent, "a sent row never changes");

    store.mark_outbound_failed(f, "forbidden", T0 + 4).await.expect("failed");
    store.mark_outbound_failed(f, "forbidden again", T0 + 5).await.expect("failed again is ok");
    let failed = store.outbound_by_key("f").await.expect("get").expect("f");
    assert_eq!(
        (failed.status, failed.attempts, failed.last_error.as_deref(), failed.updated_at_ms),
        (OutboxStatus::Failed, 1, Some("forbidden"), T0 + 4)
    );
    let retry = store.mark_outbound_retry(f, T0 + 10, "x", T0 + 6).await;
    assert!(matches!(retry, Err(StoreError::Conflict(_))), "{retry:?}");
    // The platform's word wins: a row given up on that turns out delivered is sent.
    store.mark_outbound_sent(f, "tg-300", T0 + 7).await.expect("sent after all");
    let late = store.outbound_by_key("f").await.expect("get").expect("f");
    assert_eq!((late.status, late.platform_message_id.as_deref()), (OutboxStatus::Sent, Some("tg-300")));

    let unknown = f.max(s) + 1000;
    assert!(matches!(store.mark_outbound_sent(unknown, "x", T0).await, Err(StoreError::NotFound)));
    assert!(matches!(store.mark_outbound_retry(unknown, T0, "x", T0).await, Err(StoreError::NotFound)));
    assert!(matches!(store.mark_outbound_failed(unknown, "x", T0).await, Err(StoreError::NotFound)));
}

/// Counts are per account and per state; the accounts with queued rows are listed once each,
/// the one waiting longest first.
pub async fn outbox_counts_and_queued_accounts<S: ChannelStore>(store: &S) {
    assert_eq!(store.outbox_counts("telegram", "main").await.expect("empty"), OutboxCounts::default());
    assert!(store.accounts_with_queued_outbound().await.expect("none").is_empty());
    let items = [
        outbound("w1", "work"),
        outbound("m1", "main"),
        outbound("m2", "main"),
        outbound("m3", "main"),
        outbound("m4", "main"),
        outbound("d1", "done"),
    ];
    store.queue_outbound(&items, None, T0).await.expect("queue");
    let id = |key: &'static str| async move { store.outbound_by_key(key).await.expect("get").expect(key).id };
    store.mark_outbound_sent(id("m1").await, "p", T0 + 1).await.expect("sent");
    store.mark_outbound_sent(id("m2").await, "p", T0 + 1).await.expect("sent");
    store.mark_outbound_failed(id("m3").await, "e", T0 + 1).await.expect("failed");
    store.mark_outbound_sent(id("d1").await, "p", T0 + 1).await.expect("sent");
    assert_eq!(
        store.outbox_counts("telegram", "main").await.expect("counts"),
        OutboxCounts { queued: 1, failed: 1, sent: 2 }
    );
    assert_eq!(
        store.outbox_counts("telegram", "work").await.expect("counts"),
        OutboxCounts { queued: 1, failed: 0, sent: 0 }
    );
    let accounts = store.accounts_with_queued_outbound().await.expect("accounts");
    let expected = [("telegram".to_owned(), "work".to_owned()), ("telegram".to_owned(), "main".to_owned())];
    assert_eq!(accounts, expected);
}

/// Listing filters by status (or not), keeps id order and honours the limit.
pub async fn list_outbound_filters_by_status<S: ChannelStore>(store: &S) {
    let items = [outbound("k1", "main"), outbound("k2", "main"), outbound("k3", "main"), outbound("x", "other")];
    store.queue_outbound(&items, None, T0).await.expect("queue");
    let k2 = store.outbound_by_key("k2").await.expect("get").expect("k2").id;
    store.mark_outbound_sent(k2, "p", T0 + 1).await.expect("sent");
    let keys = |rows: Vec<OutboxRecord>| rows.into_iter().map(|r| r.idempotency_key).collect::<Vec<_>>();
    let all = store.list_outbound("telegram", "main", None, 100).await.expect("all");
    assert_eq!(keys(all), ["k1", "k2", "k3"]);
    assert_eq!(queued_ids(store, "main").await, ["k1", "k3"]);
    let sent = store.list_outbound("telegram", "main", Some(OutboxStatus::Sent), 100).await.expect("sent");
    assert_eq!(keys(sent), ["k2"]);
    let failed = store.list_outbound("telegram", "main", Some(OutboxStatus::Failed), 100).await.expect("failed");
    assert!(failed.is_empty());
    let limited = store.list_outbound("telegram", "main", None, 2).await.expect("limited");
    assert_eq!(keys(limited), ["k1", "k2"]);
}

/// Pruning deletes finished rows (answered/dropped inbox, sent/failed outbox) last updated
/// before the cutoff; unfinished and recent rows stay. A pruned message id is new again.
pub async fn prune_channel_rows_drops_only_old_finished_rows<S: ChannelStore>(store: &S) {
    let answered = inbound(store, "answered", T0).await;
    let dropped = inbound(store, "dropped", T0).await;
    let routed = inbound(store, "routed", T0).await;
    let recent = inbound(store, "recent", T0).await;
    store
        .queue_outbound(&[outbound("old-sent", "main"), outbound("old-queued", "main")], Some(answered), T0 + 1)
        .await
        .expect("answer");
    store.set_inbound_status(dropped, InboxStatus::Dropped, Some("blocked"), None, None, T0 + 1).await.expect("drop");
    store.set_inbound_status(routed, InboxStatus::Routed, None, Some("r"), None, T0 + 1).await.expect("route");
    store.set_inbound_status(recent, InboxStatus::Dropped, None, None, None, T0 + 50).await.expect("drop recent");
    store.queue_outbound(&[outbound("old-failed", "main"), outbound("new-sent", "main")], None, T0).await.expect("q");
    let id = |key: &'static str| async move { store.outbound_by_key(key).await.expect("get").expect(key).id };
    store.mark_outbound_sent(id("old-sent").await, "p", T0 + 2).await.expect("sent");
    store.mark_outbound_failed(id("old-failed").await, "e", T0 + 2).await.expect("failed");
    store.mark_outbound_sent(id("new-sent").await, "p", T0 + 50).await.expect("sent");

    assert_eq!(store.prune_channel_rows(T0 + 10).await.expect("prune"), 4);
    assert_eq!(store.get_inbound(answered).await.expect("get"), None);
    assert_eq!(store.get_inbound(dropped).await.expect("get"), None);
    assert!(store.get_inbound(routed).await.expect("get").is_some());
    assert!(store.get_inbound(recent).await.expect("get").is_some());
    assert_eq!(store.outbound_by_key("old-sent").await.expect("get"), None);
    assert_eq!(store.outbound_by_key("old-failed").await.expect("get"), None);
    assert!(store.outbound_by_key("old-queued").await.expect("get").is_some(), "queued rows are never pruned");
    assert!(store.outbound_by_key("new-sent").await.expect("get").is_some());
    assert_eq!(store.prune_channel_rows(T0 + 10).await.expect("prune again"), 0);
    let again = store.record_inbound("telegram", "main", "answered", "chat-1", "user-1", &json!({}), T0 + 60).await;
    let new_id = again.expect("record").expect("a pruned message id is new again");
    assert!(new_id > recent, "ids are not reused: {new_id}");
}

/// A pending, unexpired request is returned unchanged (whatever the new code); once expired
/// (or rejected) a new request replaces it. An approved sender gets its approval back.
pub async fn channel_pairing_request_is_reused_until_it_expires<S: ChannelStore>(store: &S) {
    let first = pair_request(store, "u1", "ABCD1234", T0).await.expect("request");
    let expected = ChannelPairing {
        channel: "telegram".to_owned(),
        account: "main".to_owned(),
        sender_id: "u1".to_owned(),
        sender_name: Some("Ann".to_owned()),
        chat_id: "dm-u1".to_owned(),
        code: "ABCD1234".to_owned(),
        status: ChannelPairingStatus::Pending,
        created_at_ms: T0,
        expires_at_ms: T0 + 100,
        resolved_at_ms: None,
    };
    assert_eq!(first, expected);
    assert!(!store.is_channel_sender_paired("telegram", "main", "u1").await.expect("paired?"));
    let reused = pair_request(store, "u1", "ZZZZ9999", T0 + 99).await.expect("again");
    assert_eq!(reused, expected, "a live request is returned unchanged");

    let renewed = pair_request(store, "u1", "EFGH5678", T0 + 100).await.expect("after expiry");
    assert_eq!(
        (renewed.code.as_str(), renewed.status, renewed.created_at_ms, renewed.expires_at_ms),
        ("EFGH5678", ChannelPairingStatus::Pending, T0 + 100, T0 + 200)
    );
    assert_eq!(store.resolve_channel_pairing("ABCD1234", None, true, T0 + 101).await.expect("old code"), None);

    let rejected = store.resolve_channel_pairing("EFGH5678", None, false, T0 + 101).await.expect("reject");
    assert_eq!(rejected.map(|p| p.status), Some(ChannelPairingStatus::Rejected));
    let retry = pair_request(store, "u1", "IJKL0000", T0 + 102).await.expect("after rejection");
    assert_eq!(
        (retry.status, retry.code.as_str(), retry.resolved_at_ms),
        (ChannelPairingStatus::Pending, "IJKL0000", None)
    );

    let approved = store.resolve_channel_pairing("IJKL0000", None, true, T0 + 103).await.expect("approve");
    let approved = approved.expect("resolved");
    assert_eq!(pair_request(store, "u1", "MNOP1111", T0 + 10_000).await.expect("approved sender"), approved);
}

/// A code held by another sender's live request is a `Conflict` (case-insensitively) that
/// changes nothing; an expired request's code may be taken again.
pub async fn channel_pairing_code_collision_is_a_conflict<S: ChannelStore>(store: &S) {
    pair_request(store, "u1", "SAME0001", T0).await.expect("first");
    for code in ["SAME0001", "same0001"] {
        let clash = pair_request(store, "u2", code, T0 + 1).await;
        assert!(matches!(clash, Err(StoreError::Conflict(_))), "{code}: {clash:?}");
    }
    assert_eq!(store.list_channel_pairings(None, T0 + 1).await.expect("list").len(), 1, "nothing was written");
    let other = pair_request(store, "u2", "OTHER002", T0 + 2).await.expect("another code");
    assert_eq!(other.code, "OTHER002");
    // Once u1's request has expired its code is free.
    let reused = pair_request(store, "u3", "SAME0001", T0 + 100).await.expect("expired code is free");
    assert_eq!((reused.sender_id.as_str(), reused.code.as_str()), ("u3", "SAME0001"));
    let resolved = store.resolve_channel_pairing("SAME0001", None, true, T0 + 101).await.expect("resolve");
    assert_eq!(resolved.map(|p| p.sender_id).as_deref(), Some("u3"));
}

/// Codes resolve case-insensitively, once, only while pending and unexpired, and only on
/// the given channel if one is named. Approval pairs the sender; rejection does not.
pub async fn resolving_channel_pairing_by_code<S: ChannelStore>(store: &S) {
    pair_request(store, "u1", "ABCD1234", T0).await.expect("u1");
    pair_request(store, "u2", "WXYZ9876", T0).await.expect("u2");
    assert_eq!(store.resolve_channel_pairing("NOPE0000", None, true, T0 + 1).await.expect("unknown"), None);
    assert_eq!(store.resolve_channel_pairing("abcd1234", Some("discord"), true, T0 + 1).await.expect("x"), None);

    let approved = store.resolve_channel_pairing("abcd1234", Some("telegram"), true, T0 + 2).await.expect("ok");
    let approved = approved.expect("resolved");
    assert_eq!(
        (approved.sender_id.as_str(), approved.status, approved.resolved_at_ms, approved.code.as_str()),
        ("u1", ChannelPairingStatus::Approved, Some(T0 + 2), "ABCD1234")
    );
    assert!(store.is_channel_sender_paired("telegram", "main", "u1").await.expect("paired"));
    assert!(!store.is_channel_sender_paired("telegram", "other", "u1").await.expect("other account"));
    assert_eq!(store.resolve_channel_pairing("ABCD1234", None, false, T0 + 3).await.expect("twice"), None);
    assert!(store.is_channel_sender_paired("telegram", "main", "u1").await.expect("still paired"));

    let rejected = store.resolve_channel_pairing("WxYz9876", None, false, T0 + 4).await.expect("reject");
    assert_eq!(rejected.map(|p| (p.status, p.resolved_at_ms)), Some((ChannelPairingStatus::Rejected, Some(T0 + 4))));
    assert!(!store.is_channel_sender_paired("telegram", "main", "u2").await.expect("not paired"));

    pair_request(store, "u3", "LATE0000", T0).await.expect("u3");
    assert_eq!(store.resolve_channel_pairing("LATE0000", None, true, T0 + 100).await.expect("expired"), None);
    assert!(!store.is_channel_sender_paired("telegram", "main", "u3").await.expect("not paired"));
}

/// Listing filters by status (all if none), leaves out expired requests and puts the newest
/// request first.
pub async fn list_channel_pairings_filters_and_orders<S: ChannelStore>(store: &S) {
    pair_request(store, "old", "CODE0001", T0).await.expect("old");
    pair_request(store, "mid", "CODE0002", T0 + 10).await.expect("mid");
    pair_request(store, "new", "CODE0003", T0 + 20).await.expect("new");
    pair_request(store, "gone", "CODE0004", T0 - 100).await.expect("expires at T0");
    store.resolve_channel_pairing("CODE0002", None, true, T0 + 30).await.expect("approve").expect("mid");
    let senders = |list: Vec<ChannelPairing>| list.into_iter().map(|p| p.sender_id).collect::<Vec<_>>();

    let pending = store.list_channel_pairings(Some(ChannelPairingStatus::Pending), T0 + 40).await.expect("pending");
    assert_eq!(senders(pending), ["new", "old"]);
    let approved = store.list_channel_pairings(Some(ChannelPairingStatus::Approved), T0 + 40).await.expect("ok");
    assert_eq!(senders(approved), ["mid"]);
    let all = store.list_channel_pairings(None, T0 + 40).await.expect("all");
    assert_eq!(senders(all), ["new", "mid", "old"]);
    let rejected = store.list_channel_pairings(Some(ChannelPairingStatus::Rejected), T0 + 40).await.expect("none");
    assert!(rejected.is_empty());
    // Later, old's request has expired too; the approval never expires.
    let later = store.list_channel_pairings(None, T0 + 105).await.expect("later");
    assert_eq!(senders(later), ["new", "mid"]);
}

/// Removing a sender's row revokes an approval (and withdraws a pending request); removing
/// an absent sender is `false`.
pub async fn removing_channel_pairing_revokes_it<S: ChannelStore>(store: &S) {
    pair_request(store, "u1", "ABCD1234", T0).await.expect("request");
    store.resolve_channel_pairing("ABCD1234", None, true, T0 + 1).await.expect("approve").expect("resolved");
    pair_request(store, "u2", "EFGH5678", T0).await.expect("request");
    assert!(store.remove_channel_pairing("telegram", "main", "u1").await.expect("remove"));
    assert!(!store.is_channel_sender_paired("telegram", "main", "u1").await.expect("revoked"));
    assert!(!store.remove_channel_pairing("telegram", "main", "u1").await.expect("remove again"));
    assert!(store.remove_channel_pairing("telegram", "main", "u2").await.expect("withdraw"));
    assert_eq!(store.resolve_channel_pairing("EFGH5678", None, true, T0 + 2).await.expect("gone"), None);
    assert!(store.list_channel_pairings(None, T0 + 2).await.expect("list").is_empty());
    // A revoked sender starts over with a new request.
    let again = pair_request(store, "u1", "IJKL9012", T0 + 3).await.expect("new request");
    assert_eq!(again.status, ChannelPairingStatus::Pending);
}

// ---------------------------------------------------------------------------------------------
// JobStore

fn new_job(id: &str, status: JobStatus, max_attempts: i64) -> NewJob {
    NewJob {
        id: id.to_owned(),
        template_id: "sdxl-basic".to_owned(),
        inputs: json!({"prompt": id}),
        workflow: json!({"3": {"class_type": "KSampler", "inputs": {"seed": 1}}}),
        deliver_to: Some(json!({"channel": "telegram", "account": "main", "chatId": "c1"})),
        requested_by: Some(json!({"sender": "u1"})),
        approval_id: None,
        max_attempts,
        status,
    }
}

async fn job<S: JobStore>(store: &S, id: &str, at: i64) -> JobRecord {
    store.insert_job(&new_job(id, JobStatus::Queued, 2), at).await.expect("insert_job")
}

fn ids(jobs: &[JobRecord]) -> Vec<&str> {
    jobs.iter().map(|j| j.id.as_str()).collect()
}

/// An inserted job reads back as inserted (no attempts, empty outputs); a taken id, a status
/// other than queued or awaiting approval, and `max_attempts < 1` are conflicts that write
/// nothing.
pub async fn inserted_job_round_trips_and_bad_inserts_conflict<S: JobStore>(store: &S) {
    let new = new_job("job_1", JobStatus::Queued, 3);
    let inserted = store.insert_job(&new, T0).await.expect("insert");
    let expected = JobRecord {
        id: "job_1".to_owned(),
        template_id: new.template_id.clone(),
        inputs: new.inputs.clone(),
        workflow: new.workflow.clone(),
        status: JobStatus::Queued,
        worker: None,
        prompt_id: None,
        attempts: 0,
        max_attempts: 3,
        error: None,
        outputs: json!([]),
        deliver_to: new.deliver_to.clone(),
        requested_by: new.requested_by.clone(),
        approval_id: None,
        progress: None,
        created_at_ms: T0,
        updated_at_ms: T0,
        started_at_ms: None,
        ended_at_ms: None,
        seq: inserted.seq,
    };
    assert_eq!(inserted, expected);
    assert_eq!(store.get_job("job_1").await.expect("get"), Some(expected.clone()));
    assert_eq!(store.get_job("job_unknown").await.expect("get unknown"), None);

    let mut again = new_job("job_1", JobStatus::AwaitingApproval, 1);
    again.template_id = "other".to_owned();
    assert!(matches!(store.insert_job(&again, T0 + 1).await, Err(StoreError::Conflict(_))));
    assert!(matches!(
        store.insert_job(&new_job("job_2", JobStatus::Running, 1), T0).await,
        Err(StoreError::Conflict(_))
    ));
    assert!(matches!(
        store.insert_job(&new_job("job_3", JobStatus::Queued, 0), T0).await,
        Err(StoreError::Conflict(_))
    ));
    assert_eq!(store.get_job("job_1").await.expect("get"), Some(expected));
    assert_eq!(store.get_job("job_2").await.expect("get"), None);
    assert_eq!(store.get_job("job_3").await.expect("get"), None);

    let held = store.insert_job(&new_job("job_4", JobStatus::AwaitingApproval, 1), T0).await.expect("held");
    assert_eq!(held.status, JobStatus::AwaitingApproval);
    assert!(held.seq > inserted.seq, "seqs ascend: {} {}", inserted.seq, held.seq);
}

/// An adopted job is running on its worker with its prompt from the start, is never claimed,
/// is reconciled like any active job, and finishes like one; a taken id writes nothing.
pub async fn adopted_job_runs_on_its_worker_and_is_never_claimed<S: JobStore>(store: &S) {
    let adopted = store.adopt_job(&new_job("job_a", JobStatus::Queued, 3), "w2", "p-remote", T0).await.expect("adopt");
    assert_eq!(adopted.status, JobStatus::Running);
    assert_eq!(adopted.worker.as_deref(), Some("w2"));
    assert_eq!(adopted.prompt_id.as_deref(), Some("p-remote"));
    assert_eq!((adopted.attempts, adopted.max_attempts), (1, 1));
    assert_eq!(adopted.started_at_ms, Some(T0));
    assert_eq!(store.claim_next_queued("w1", T0 + 1).await.expect("claim"), None, "not queued");
    assert_eq!(ids(&store.active_jobs().await.expect("active")), vec!["job_a"]);
    assert_eq!(ids(&store.jobs_on_worker("w2").await.expect("on w2")), vec!["job_a"]);
    assert!(matches!(
        store.adopt_job(&new_job("job_a", JobStatus::Queued, 1), "w1", "p-other", T0 + 2).await,
        Err(StoreError::Conflict(_))
    ));
    let done = store.complete_job("job_a", &json!([{"filename": "x.png"}]), T0 + 3).await.expect("complete");
    assert_eq!(done.status, JobStatus::Completed);
    assert_eq!(done.prompt_id.as_deref(), Some("p-remote"));
}

/// Workers claim queued jobs oldest seq first (whatever their timestamps), each claim counting
/// an attempt; held jobs are not claimed.
pub async fn claim_takes_queued_jobs_in_enqueue_order<S: JobStore>(store: &S) {
    assert_eq!(store.claim_next_queued("w1", T0).await.expect("empty"), None);
    job(store, "a", T0 + 50).await;
    store.insert_job(&new_job("held", JobStatus::AwaitingApproval, 1), T0).await.expect("held");
    job(store, "b", T0).await;
    job(store, "c", T0 + 10).await;

    let first = store.claim_next_queued("w1", T0 + 100).await.expect("claim").expect("a");
    assert_eq!(
        (first.id.as_str(), first.status, first.worker.as_deref(), first.attempts, first.updated_at_ms),
        ("a", JobStatus::Dispatched, Some("w1"), 1, T0 + 100)
    );
    let second = store.claim_next_queued("w2", T0 + 101).await.expect("claim").expect("b");
    assert_eq!((second.id.as_str(), second.worker.as_deref()), ("b", Some("w2")));
    let third = store.claim_next_queued("w1", T0 + 102).await.expect("claim").expect("c");
    assert_eq!(third.id, "c");
    assert_eq!(store.claim_next_queued("w1", T0 + 103).await.expect("drained"), None);
    assert_eq!(store.get_job("held").await.expect("get").expect("held").status, JobStatus::AwaitingApproval);
    assert_eq!(ids(&store.jobs_on_worker("w1").await.expect("on w1")), ["a", "c"]);
    assert_eq!(ids(&store.active_jobs().await.expect("active")), ["a", "b", "c"]);
}

/// Concurrent claimers never get the same job, and together they get every queued job.
pub async fn concurrent_claims_never_share_a_job<S: JobStore>(store: &S) {
    for id in ["j1", "j2", "j3", "j4", "j5"] {
        job(store, id, T0).await;
    }
    let claim = |worker: &'static str| store.claim_next_queued(worker, T0 + 1);
    let racers =
        tokio::join!(claim("w1"), claim("w2"), claim("w3"), claim("w4"), claim("w5"), claim("w6"), claim("w7"));
    let results = [racers.0, racers.1, racers.2, racers.3, racers.4, racers.5, racers.6];
    let mut claimed: Vec<JobRecord> = results.into_iter().filter_map(|r| r.expect("claim")).collect();
    claimed.sort_by(|a, b| a.id.cmp(&b.id));
    assert_eq!(ids(&claimed), ["j1", "j2", "j3", "j4", "j5"], "each job claimed exactly once");
    assert!(claimed.iter().all(|j| j.attempts == 1 && j.status == JobStatus::Dispatched), "{claimed:?}");
    let mut workers: Vec<&str> = claimed.iter().filter_map(|j| j.worker.as_deref()).collect();
    workers.sort_unstable();
    workers.dedup();
    assert_eq!(workers.len(), 5, "no worker got two jobs in one claim: {claimed:?}");
}

/// A queued job's position is its rank among queued jobs by seq; other jobs have none.
pub async fn queue_position_counts_queued_jobs_by_seq<S: JobStore>(store: &S) {
    for id in ["a", "b", "c", "d"] {
        job(store, id, T0).await;
    }
    store.insert_job(&new_job("held", JobStatus::AwaitingApproval, 1), T0).await.expect("held");
    assert_eq!(store.queue_position("a").await.expect("a"), Some((1, 4)));
    assert_eq!(store.queue_position("d").await.expect("d"), Some((4, 4)));
    store.claim_next_queued("w", T0 + 1).await.expect("claim").expect("a");
    assert_eq!(store.queue_position("a").await.expect("a"), None, "dispatched jobs are not queued");
    assert_eq!(store.queue_position("b").await.expect("b"), Some((1, 3)));
    store.cancel_job("c", T0 + 2).await.expect("cancel").expect("was queued");
    assert_eq!(store.queue_position("d").await.expect("d"), Some((2, 2)));
    assert_eq!(store.queue_position("held").await.expect("held"), None);
    assert_eq!(store.queue_position("unknown").await.expect("unknown"), None);
}

/// A requeued job with attempts left goes back to the queue in its old place, without worker,
/// prompt or progress but with the error; once its attempts are used up, requeueing fails it.
pub async fn requeue_keeps_place_and_respects_max_attempts<S: JobStore>(store: &S) {
    let a = job(store, "a", T0).await; // max_attempts 2
    job(store, "b", T0).await;
    store.claim_next_queued("w1", T0 + 1).await.expect("claim").expect("a");
    store.set_job_running("a", "prompt-1", T0 + 2).await.expect("running");
    store.set_job_progress("a", &json!({"value": 3, "max": 20}), T0 + 3).await.expect("progress");

    assert_eq!(store.requeue_job("a", "worker lost", T0 + 4).await.expect("requeue"), JobStatus::Queued);
    let requeued = store.get_job("a").await.expect("get").expect("a");
    assert_eq!(
        (requeued.status, requeued.worker, requeued.prompt_id, requeued.progress, requeued.started_at_ms),
        (JobStatus::Queued, None, None, None, None)
    );
    assert_eq!((requeued.seq, requeued.attempts, requeued.error.as_deref()), (a.seq, 1, Some("worker lost")));
    assert_eq!(requeued.ended_at_ms, None);
    assert_eq!(store.queue_position("a").await.expect("pos"), Some((1, 2)), "keeps its place ahead of b");

    let again = store.claim_next_queued("w2", T0 + 5).await.expect("claim").expect("a again");
    assert_eq!((again.id.as_str(), again.attempts, again.worker.as_deref()), ("a", 2, Some("w2")));
    assert_eq!(store.requeue_job("a", "worker lost again", T0 + 6).await.expect("requeue"), JobStatus::Failed);
    let failed = store.get_job("a").await.expect("get").expect("a");
    assert_eq!(
        (failed.status, failed.error.as_deref(), failed.ended_at_ms),
        (JobStatus::Failed, Some("worker lost again"), Some(T0 + 6))
    );
    assert_eq!(store.claim_next_queued("w", T0 + 7).await.expect("claim").expect("b").id, "b");

    // Only a job a worker holds can be requeued.
    job(store, "c", T0).await;
    assert!(matches!(store.requeue_job("c", "x", T0 + 8).await, Err(StoreError::Conflict(_))));
    assert!(matches!(store.requeue_job("a", "x", T0 + 8).await, Err(StoreError::Conflict(_))));
    assert!(matches!(store.requeue_job("unknown", "x", T0 + 8).await, Err(StoreError::NotFound)));
}

/// Transitions follow the state machine: running and completion need a worker to hold the job,
/// nothing leaves a terminal status, an unknown id is not found, and a refused transition
/// changes nothing.
pub async fn job_transitions_are_guarded<S: JobStore>(store: &S) {
    job(store, "a", T0).await;
    let conflict = |r: crate::Result<JobRecord>| matches!(r, Err(StoreError::Conflict(_)));
    assert!(conflict(store.set_job_running("a", "p", T0 + 1).await), "queued cannot run");
    assert!(conflict(store.complete_job("a", &json!([]), T0 + 1).await), "queued cannot complete");
    assert!(conflict(store.set_job_progress("a", &json!({}), T0 + 1).await), "queued has no progress");
    assert!(conflict(store.release_approval("a", true, T0 + 1).await), "queued is not held");
    assert_eq!(store.get_job("a").await.expect("get").expect("a").updated_at_ms, T0);

    store.claim_next_queued("w", T0 + 1).await.expect("claim").expect("a");
    let running = store.set_job_running("a", "prompt-1", T0 + 2).await.expect("running");
    assert_eq!(
        (running.status, running.prompt_id.as_deref(), running.started_at_ms),
        (JobStatus::Running, Some("prompt-1"), Some(T0 + 2))
    );
    let again = store.set_job_running("a", "prompt-1", T0 + 3).await.expect("running again");
    assert_eq!(again.started_at_ms, Some(T0 + 2), "first start is kept");
    let progress = json!({"node": "3", "value": 10, "max": 20});
    let with_progress = store.set_job_progress("a", &progress, T0 + 4).await.expect("progress");
    assert_eq!((with_progress.progress, with_progress.updated_at_ms), (Some(progress), T0 + 4));

    let outputs = json!([{"filename": "a_0001.png", "type": "output"}]);
    let done = store.complete_job("a", &outputs, T0 + 5).await.expect("complete");
    assert_eq!((done.status, done.outputs.clone(), done.ended_at_ms), (JobStatus::Completed, outputs, Some(T0 + 5)));
    assert!(conflict(store.complete_job("a", &json!([]), T0 + 6).await));
    assert!(conflict(store.fail_job("a", "late", T0 + 6).await));
    assert!(conflict(store.set_job_running("a", "p2", T0 + 6).await));
    assert!(conflict(store.set_job_progress("a", &json!({}), T0 + 6).await));
    assert_eq!(store.get_job("a").await.expect("get"), Some(done));

    // fail_job gives up from any unfinished status, a dispatched job may complete directly.
    job(store, "b", T0).await;
    let failed = store.fail_job("b", "template vanished", T0 + 7).await.expect("fail queued");
    assert_eq!((failed.status, failed.error.as_deref()), (JobStatus::Failed, Some("template vanished")));
    job(store, "c", T0).await;
    store.claim_next_queued("w", T0 + 8).await.expect("claim").expect("c");
    assert_eq!(store.complete_job("c", &json!([]), T0 + 9).await.expect("complete").status, JobStatus::Completed);

    assert!(matches!(store.set_job_running("nope", "p", T0).await, Err(StoreError::NotFound)));
    assert!(matches!(store.fail_job("nope", "x", T0).await, Err(StoreError::NotFound)));
    assert!(matches!(store.cancel_job("nope", T0).await, Err(StoreError::NotFound)));
}

/// Cancelling an unfinished job returns it as it was (so the caller sees the worker to
/// interrupt) and ends it; cancelling a finished job returns `None` and changes nothing.
pub async fn cancel_returns_the_previous_record_of_unfinished_jobs<S: JobStore>(store: &S) {
    job(store, "a", T0).await;
    store.claim_next_queued("w1", T0 + 1).await.expect("claim").expect("a");
    let before = store.set_job_running("a", "prompt-a", T0 + 2).await.expect("running");
    let previous = store.cancel_job("a", T0 + 3).await.expect("cancel").expect("was running");
    assert_eq!(previous, before);
    let cancelled = store.get_job("a").await.expect("get").expect("a");
    assert_eq!((cancelled.status, cancelled.ended_at_ms), (JobStatus::Cancelled, Some(T0 + 3)));
    assert_eq!(store.cancel_job("a", T0 + 4).await.expect("cancel again"), None);
    assert_eq!(store.get_job("a").await.expect("get"), Some(cancelled));
    assert!(store.active_jobs().await.expect("active").is_empty());

    let queued = job(store, "b", T0).await;
    assert_eq!(store.cancel_job("b", T0 + 5).await.expect("cancel queued"), Some(queued));
    assert_eq!(store.claim_next_queued("w", T0 + 6).await.expect("claim"), None, "cancelled jobs are not claimed");

    job(store, "c", T0).await;
    store.claim_next_queued("w", T0 + 7).await.expect("claim").expect("c");
    store.complete_job("c", &json!([]), T0 + 8).await.expect("complete");
    assert_eq!(store.cancel_job("c", T0 + 9).await.expect("cancel completed"), None);
    assert_eq!(store.get_job("c").await.expect("get").expect("c").status, JobStatus::Completed);
}

/// A held job is released into the queue when approved and cancelled when rejected, once.
pub async fn release_approval_queues_or_cancels_held_jobs<S: JobStore>(store: &S) {
    let mut held = new_job("held-1", JobStatus::AwaitingApproval, 1);
    held.approval_id = Some("appr-1".to_owned());
    store.insert_job(&held, T0).await.expect("held-1");
    store.insert_job(&new_job("held-2", JobStatus::AwaitingApproval, 1), T0).await.expect("held-2");
    assert_eq!(store.claim_next_queued("w", T0).await.expect("claim"), None);

    let released = store.release_approval("held-1", true, T0 + 1).await.expect("approve");
    assert_eq!(
        (released.status, released.approval_id.as_deref(), released.ended_at_ms),
        (JobStatus::Queued, Some("appr-1"), None)
    );
    assert!(matches!(store.release_approval("held-1", false, T0 + 2).await, Err(StoreError::Conflict(_))));
    let rejected = store.release_approval("held-2", false, T0 + 3).await.expect("reject");
    assert_eq!((rejected.status, rejected.ended_at_ms), (JobStatus::Cancelled, Some(T0 + 3)));
    assert!(matches!(store.release_approval("held-2", true, T0 + 4).await, Err(StoreError::Conflict(_))));
    assert!(matches!(store.release_approval("nope", true, T0 + 4).await, Err(StoreError::NotFound)));
    assert_eq!(store.claim_next_queued("w", T0 + 5).await.expect("claim").expect("released").id, "held-1");
}

/// Lists are newest first, filtered by status and paged by seq; counts cover every status.
pub async fn list_jobs_filters_pages_and_counts<S: JobStore>(store: &S) {
    for id in ["a", "b", "c", "d", "e"] {
        job(store, id, T0).await;
    }
    store.claim_next_queued("w", T0 + 1).await.expect("claim").expect("a");
    store.cancel_job("b", T0 + 2).await.expect("cancel").expect("b");

    let all = store.list_jobs(&JobQuery { statuses: vec![], limit: 10, before_seq: None }).await.expect("all");
    assert_eq!(ids(&all), ["e", "d", "c", "b", "a"]);
    let page = store.list_jobs(&JobQuery { statuses: vec![], limit: 2, before_seq: None }).await.expect("page");
    assert_eq!(ids(&page), ["e", "d"]);
    let next = JobQuery { statuses: vec![], limit: 2, before_seq: Some(page[1].seq) };
    assert_eq!(ids(&store.list_jobs(&next).await.expect("next page")), ["c", "b"]);
    let queued = JobQuery { statuses: vec![JobStatus::Queued], limit: 10, before_seq: None };
    assert_eq!(ids(&store.list_jobs(&queued).await.expect("queued")), ["e", "d", "c"]);
    let mixed = JobQuery { statuses: vec![JobStatus::Cancelled, JobStatus::Dispatched], limit: 10, before_seq: None };
    assert_eq!(ids(&store.list_jobs(&mixed).await.expect("mixed")), ["b", "a"]);

    let counts = store.count_by_status().await.expect("counts");
    let expected: std::collections::BTreeMap<String, u64> = [
        ("awaiting_approval", 0),
        ("queued", 3),
        ("dispatched", 1),
        ("running", 0),
        ("completed", 0),
        ("failed", 0),
        ("cancelled", 1),
    ]
    .into_iter()
    .map(|(s, n)| (s.to_owned(), n))
    .collect();
    assert_eq!(counts, expected);
}

/// Each output of a job is marked delivered once, even by concurrent callers; marking for an
/// unknown job is not found.
pub async fn output_is_marked_delivered_once<S: JobStore>(store: &S) {
    job(store, "a", T0).await;
    job(store, "b", T0).await;
    assert!(store.mark_output_delivered("a", "a_0001.png", T0 + 1).await.expect("first"));
    assert!(!store.mark_output_delivered("a", "a_0001.png", T0 + 2).await.expect("again"));
    let mark = || store.mark_output_delivered("a", "a_0002.png", T0 + 3);
    let racers = tokio::join!(mark(), mark(), mark(), mark());
    let wins = [racers.0, racers.1, racers.2, racers.3].into_iter().filter(|r| *r.as_ref().expect("mark")).count();
    assert_eq!(wins, 1);
    assert!(store.mark_output_delivered("b", "a_0001.png", T0 + 4).await.expect("same name, other job"));
    assert_eq!(store.delivered_outputs("a").await.expect("delivered"), strings(&["a_0001.png", "a_0002.png"]));
    assert_eq!(store.delivered_outputs("b").await.expect("delivered"), strings(&["a_0001.png"]));
    assert!(store.delivered_outputs("c").await.expect("none").is_empty());
    assert!(matches!(store.mark_output_delivered("nope", "x.png", T0).await, Err(StoreError::NotFound)));
}

/// Pruning deletes finished jobs last changed before the cutoff, with their delivery marks,
/// and never an unfinished job.
pub async fn prune_finished_jobs_drops_only_old_finished_jobs<S: JobStore>(store: &S) {
    job(store, "old-done", T0).await;
    job(store, "new-done", T0).await;
    job(store, "old-queued", T0).await;
    store.claim_next_queued("w", T0).await.expect("claim").expect("old-done");
    store.complete_job("old-done", &json!([]), T0 + 1).await.expect("complete");
    store.mark_output_delivered("old-done", "x.png", T0 + 1).await.expect("mark");
    store.fail_job("new-done", "x", T0 + 100).await.expect("fail");
    assert_eq!(store.prune_finished_jobs(T0 + 50).await.expect("prune"), 1);
    assert_eq!(store.get_job("old-done").await.expect("get"), None);
    assert!(store.delivered_outputs("old-done").await.expect("marks").is_empty());
    assert!(store.get_job("new-done").await.expect("get").is_some());
    assert!(store.get_job("old-queued").await.expect("get").is_some());
}

// ---------------------------------------------------------------------------------------------
// ApprovalStore

fn new_approval(id: &str, expires_at_ms: i64) -> NewApproval {
    NewApproval {
        id: id.to_owned(),
        kind: "comfy.run".to_owned(),
        payload: json!({"templateId": "sdxl-basic", "inputs": {"prompt": "a cat"}}),
        requested_by: Some(json!({"channel": "telegram", "sender": "u1"})),
        expires_at_ms,
    }
}

/// A pending approval is decided once — approved or rejected, with who, when and the reason —
/// and of concurrent deciders exactly one wins; an id is used once.
pub async fn approval_is_decided_once_and_keeps_its_reason<S: ApprovalStore>(store: &S) {
    let created = store.create_approval(&new_approval("ap-1", T0 + 1_000), T0).await.expect("create");
    let expected = ApprovalRecord {
        id: "ap-1".to_owned(),
        kind: "comfy.run".to_owned(),
        payload: new_approval("ap-1", 0).payload,
        requested_by: new_approval("ap-1", 0).requested_by,
        status: ApprovalStatus::Pending,
        reason: None,
        decided_by: None,
        created_at_ms: T0,
        expires_at_ms: T0 + 1_000,
        decided_at_ms: None,
        decision: None,
    };
    assert_eq!(created, expected);
    assert_eq!(store.get_approval("ap-1", T0 + 1).await.expect("get"), Some(expected.clone()));
    assert!(matches!(store.create_approval(&new_approval("ap-1", T0 + 5), T0).await, Err(StoreError::Conflict(_))));
    assert_eq!(store.get_approval("nope", T0).await.expect("unknown"), None);

    let rejected = store.decide_approval("ap-1", false, "operator", Some("too big"), T0 + 10).await;
    let rejected = rejected.expect("decide").expect("pending");
    assert_eq!(
        (rejected.status, rejected.decided_by.as_deref(), rejected.reason.as_deref(), rejected.decided_at_ms),
        (ApprovalStatus::Rejected, Some("operator"), Some("too big"), Some(T0 + 10))
    );
    assert_eq!(store.decide_approval("ap-1", true, "other", None, T0 + 11).await.expect("again"), None);
    assert_eq!(store.get_approval("ap-1", T0 + 2_000).await.expect("get"), Some(rejected), "decided never expires");
    assert_eq!(store.decide_approval("nope", true, "op", None, T0).await.expect("unknown"), None);

    store.create_approval(&new_approval("ap-2", T0 + 1_000), T0).await.expect("create");
    let decide = |who: &'static str| store.decide_approval("ap-2", true, who, None, T0 + 20);
    let racers = tokio::join!(decide("a"), decide("b"), decide("c"), decide("d"));
    let winners: Vec<ApprovalRecord> =
        [racers.0, racers.1, racers.2, racers.3].into_iter().filter_map(|r| r.expect("decide")).collect();
    assert_eq!(winners.len(), 1, "{winners:?}");
    assert_eq!(winners[0].status, ApprovalStatus::Approved);
    let stored = store.get_approval("ap-2", T0 + 21).await.expect("get").expect("ap-2");
    assert_eq!(stored.decided_by, winners[0].decided_by);
}

/// A pending approval reads as expired from its expiry on, cannot be decided then, and the
/// sweep writes that down; lists filter by the status as of now.
pub async fn pending_approval_expires_lazily_and_by_sweep<S: ApprovalStore>(store: &S) {
    store.create_approval(&new_approval("soon", T0 + 100), T0).await.expect("soon");
    store.create_approval(&new_approval("later", T0 + 1_000), T0 + 1).await.expect("later");
    store.create_approval(&new_approval("decided", T0 + 100), T0 + 2).await.expect("decided");
    store.decide_approval("decided", true, "op", None, T0 + 50).await.expect("decide").expect("pending");

    let pending = |list: Vec<ApprovalRecord>| list.into_iter().map(|a| a.id).collect::<Vec<_>>();
    let before = store.list_approvals(Some(ApprovalStatus::Pending), T0 + 99).await.expect("list");
    assert_eq!(pending(before), strings(&["later", "soon"]), "newest first");
    let at_expiry = store.get_approval("soon", T0 + 100).await.expect("get").expect("soon");
    assert_eq!(at_expiry.status, ApprovalStatus::Expired);
    assert_eq!(store.decide_approval("soon", true, "op", None, T0 + 100).await.expect("too late"), None);
    let expired = store.list_approvals(Some(ApprovalStatus::Expired), T0 + 100).await.expect("expired");
    assert_eq!(pending(expired), strings(&["soon"]));
    let all = store.list_approvals(None, T0 + 100).await.expect("all");
    assert_eq!(pending(all), strings(&["decided", "later", "soon"]));

    assert_eq!(store.expire_approvals(T0 + 100).await.expect("sweep"), 1);
    assert_eq!(store.expire_approvals(T0 + 100).await.expect("sweep again"), 0);
    let swept = store.get_approval("soon", T0).await.expect("get").expect("soon");
    assert_eq!(swept.status, ApprovalStatus::Expired, "written down, whatever the clock says now");
    assert_eq!(
        store.get_approval("later", T0 + 100).await.expect("get").expect("later").status,
        ApprovalStatus::Pending
    );
    assert_eq!(
        store.get_approval("decided", T0 + 100).await.expect("get").expect("d").status,
        ApprovalStatus::Approved
    );
}

/// An approval resolved with upstream's word keeps it (`allow-always` approves, `deny`
/// rejects), once, and never after expiry; the yes/no path leaves it empty.
pub async fn approval_resolved_with_a_word_keeps_it<S: ApprovalStore>(store: &S) {
    store.create_approval(&new_approval("w-1", T0 + 1_000), T0).await.expect("create");
    let allowed = store.resolve_approval("w-1", "allow-always", "device:d", None, T0 + 5).await.expect("resolve");
    let allowed = allowed.expect("pending");
    assert_eq!(
        (allowed.status, allowed.decision.as_deref(), allowed.decided_by.as_deref()),
        (ApprovalStatus::Approved, Some("allow-always"), Some("device:d"))
    );
    assert_eq!(store.resolve_approval("w-1", "deny", "x", None, T0 + 6).await.expect("again"), None);
    assert_eq!(store.get_approval("w-1", T0 + 7).await.expect("get"), Some(allowed));

    store.create_approval(&new_approval("w-2", T0 + 1_000), T0).await.expect("create");
    let denied = store.resolve_approval("w-2", "deny", "op", Some("no"), T0 + 5).await.expect("resolve");
    let denied = denied.expect("pending");
    assert_eq!((denied.status, denied.decision.as_deref()), (ApprovalStatus::Rejected, Some("deny")));

    store.create_approval(&new_approval("w-3", T0 + 10), T0).await.expect("create");
    assert_eq!(store.resolve_approval("w-3", "allow-once", "op", None, T0 + 10).await.expect("late"), None);
    store.create_approval(&new_approval("w-4", T0 + 10), T0).await.expect("create");
    let yes = store.decide_approval("w-4", true, "op", None, T0 + 1).await.expect("decide").expect("pending");
    assert_eq!(yes.decision, None);
}

/// The exec approvals policy is created once, then replaced only by a writer naming the hash
/// it read; a stale writer changes nothing.
pub async fn exec_policy_is_written_only_over_its_base<S: ApprovalStore>(store: &S) {
    assert_eq!(store.exec_policy().await.expect("read"), None);
    let v1 = json!({"version": 1, "defaults": {"security": "allowlist"}});
    assert!(store.swap_exec_policy(None, &v1, "h1", T0).await.expect("create"));
    assert!(!store.swap_exec_policy(None, &json!({"version": 1}), "hx", T0).await.expect("second create"));
    let stored = store.exec_policy().await.expect("read").expect("written");
    assert_eq!((stored.file, stored.hash.as_str(), stored.updated_at_ms), (v1, "h1", T0));
    let v2 = json!({"version": 1, "agents": {"main": {"allowlist": [{"pattern": "ls"}]}}});
    assert!(!store.swap_exec_policy(Some("stale"), &v2, "h2", T0 + 1).await.expect("stale"));
    assert!(store.swap_exec_policy(Some("h1"), &v2, "h2", T0 + 2).await.expect("over its base"));
    let stored = store.exec_policy().await.expect("read").expect("written");
    assert_eq!((stored.file, stored.hash.as_str()), (v2, "h2"));
}

/// Each node's exec approvals policy has its own row and hash, independent of the gateway's
/// policy and of other nodes'; the same create-once and write-over-base rules.
pub async fn node_exec_policies_are_kept_per_node_over_their_base<S: ApprovalStore>(store: &S) {
    assert_eq!(store.exec_node_policy("n1").await.expect("read"), None);
    let v1 = json!({"version": 1, "defaults": {"security": "full"}});
    assert!(store.swap_exec_node_policy("n1", None, &v1, "h1", T0).await.expect("create"));
    assert!(!store.swap_exec_node_policy("n1", None, &json!({"version": 1}), "hx", T0).await.expect("again"));
    assert_eq!(store.exec_node_policy("n2").await.expect("read"), None, "another node has none");
    assert!(store.swap_exec_node_policy("n2", None, &json!({"version": 1}), "h1", T0).await.expect("n2"));
    let v2 = json!({"version": 1, "agents": {"*": {"allowlist": [{"pattern": "uname"}]}}});
    assert!(!store.swap_exec_node_policy("n1", Some("stale"), &v2, "h2", T0 + 1).await.expect("stale"));
    assert!(store.swap_exec_node_policy("n1", Some("h1"), &v2, "h2", T0 + 2).await.expect("over its base"));
    let stored = store.exec_node_policy("n1").await.expect("read").expect("written");
    assert_eq!((stored.file, stored.hash.as_str(), stored.updated_at_ms), (v2, "h2", T0 + 2));
    let other = store.exec_node_policy("n2").await.expect("read").expect("written");
    assert_eq!((other.file, other.hash.as_str()), (json!({"version": 1}), "h1"));
    assert_eq!(store.exec_policy().await.expect("read"), None, "the gateway's policy is apart");
}

// ---------------------------------------------------------------------------------------------
// CronStore

fn cron_job(id: &str, name: &str, enabled: bool) -> CronJob {
    CronJob {
        id: id.to_owned(),
        name: name.to_owned(),
        schedule_kind: "cron".to_owned(),
        schedule: "0 9 * * *".to_owned(),
        anchor_ms: None,
        timezone: Some("Europe/Berlin".to_owned()),
        enabled,
        kind: "comfyRun".to_owned(),
        payload: json!({"templateId": "sdxl-basic"}),
        deliver_to: Some(json!({"channel": "telegram", "chatId": "c1"})),
        catch_up: "once".to_owned(),
        delete_after_run: false,
        created_at_ms: T0,
        updated_at_ms: T0,
        last_run_at_ms: None,
        last_status: None,
        next_run_at_ms: Some(T0 + 3_600_000),
    }
}

/// Cron jobs round-trip; an upsert replaces the definition but keeps the creation time and
/// the scheduler's run state; lists go by name and hide disabled jobs unless asked.
pub async fn cron_jobs_upsert_list_enable_and_remove<S: CronStore>(store: &S) {
    let daily = cron_job("c1", "daily", true);
    store.upsert_cron_job(&daily).await.expect("upsert");
    assert_eq!(store.get_cron_job("c1").await.expect("get"), Some(daily.clone()));
    assert!(store.claim_cron_slot("c1", T0 + 10, "run-1", T0 + 11).await.expect("claim"));

    let mut edited = cron_job("c1", "daily", true);
    edited.schedule = "30 8 * * *".to_owned();
    edited.catch_up = "skip".to_owned();
    edited.created_at_ms = T0 + 500;
    edited.updated_at_ms = T0 + 500;
    edited.next_run_at_ms = None;
    store.upsert_cron_job(&edited).await.expect("edit");
    let stored = store.get_cron_job("c1").await.expect("get").expect("c1");
    let expected = CronJob {
        created_at_ms: T0,
        last_run_at_ms: Some(T0 + 11),
        last_status: Some("running".to_owned()),
        ..edited.clone()
    };
    assert_eq!(stored, expected);

    let mut bad = cron_job("c9", "bad", true);
    bad.catch_up = "sometimes".to_owned();
    assert!(matches!(store.upsert_cron_job(&bad).await, Err(StoreError::Conflict(_))));
    assert_eq!(store.get_cron_job("c9").await.expect("get"), None);
    let mut bad = cron_job("c9", "bad", true);
    bad.schedule_kind = "hourly".to_owned();
    assert!(matches!(store.upsert_cron_job(&bad).await, Err(StoreError::Conflict(_))));

    // The other schedule kinds keep their fields: an interval with its anchor, a one-shot time
    // that removes its job after a successful run.
    let mut every = cron_job("c7", "every", false);
    (every.schedule_kind, every.schedule, every.anchor_ms) = ("every".to_owned(), "60000".to_owned(), Some(T0 + 5));
    store.upsert_cron_job(&every).await.expect("every");
    assert_eq!(store.get_cron_job("c7").await.expect("get"), Some(every.clone()));
    let mut once = cron_job("c8", "once", false);
    (once.schedule_kind, once.schedule, once.delete_after_run) =
        ("at".to_owned(), "2026-01-01T00:00:00.000Z".to_owned(), true);
    store.upsert_cron_job(&once).await.expect("at");
    assert_eq!(store.get_cron_job("c8").await.expect("get"), Some(once.clone()));
    once.delete_after_run = false;
    store.upsert_cron_job(&once).await.expect("at, kept after its run");
    assert_eq!(store.get_cron_job("c8").await.expect("get"), Some(once));
    assert!(store.remove_cron_job("c7").await.expect("remove c7") && store.remove_cron_job("c8").await.expect("c8"));

    store.upsert_cron_job(&cron_job("c2", "alpha", true)).await.expect("alpha");
    store.upsert_cron_job(&cron_job("c3", "beta", false)).await.expect("beta");
    let names = |jobs: Vec<CronJob>| jobs.into_iter().map(|j| j.name).collect::<Vec<_>>();
    assert_eq!(names(store.list_cron_jobs(false).await.expect("enabled")), strings(&["alpha", "daily"]));
    assert_eq!(names(store.list_cron_jobs(true).await.expect("all")), strings(&["alpha", "beta", "daily"]));

    assert!(store.set_cron_enabled("c3", true, T0 + 600).await.expect("enable"));
    assert!(store.set_cron_enabled("c2", false, T0 + 600).await.expect("disable"));
    assert_eq!(names(store.list_cron_jobs(false).await.expect("enabled")), strings(&["beta", "daily"]));
    assert!(!store.set_cron_enabled("nope", true, T0).await.expect("unknown"));
    assert!(store.set_cron_next_run("c3", Some(T0 + 9_000), T0 + 700).await.expect("next"));
    let beta = store.get_cron_job("c3").await.expect("get").expect("c3");
    assert_eq!((beta.enabled, beta.next_run_at_ms, beta.updated_at_ms), (true, Some(T0 + 9_000), T0 + 700));
    assert!(!store.set_cron_next_run("nope", None, T0).await.expect("unknown"));

    assert!(store.remove_cron_job("c1").await.expect("remove"));
    assert!(!store.remove_cron_job("c1").await.expect("remove again"));
    assert_eq!(store.get_cron_job("c1").await.expect("get"), None);
    assert!(store.list_cron_runs(Some("c1"), 10).await.expect("runs").is_empty(), "receipts go with the job");
}

/// Of concurrent claimers of one slot exactly one wins, and a claimed slot stays claimed;
/// other slots and other jobs are independent; an unknown job is not found.
pub async fn cron_slot_is_claimed_once_under_concurrency<S: CronStore>(store: &S) {
    store.upsert_cron_job(&cron_job("c1", "daily", true)).await.expect("c1");
    store.upsert_cron_job(&cron_job("c2", "other", true)).await.expect("c2");
    let slot = T0 + 60_000;
    let claim = |run_id: &'static str| store.claim_cron_slot("c1", slot, run_id, T0 + 60_001);
    let racers = tokio::join!(claim("r1"), claim("r2"), claim("r3"), claim("r4"), claim("r5"), claim("r6"));
    let results = [racers.0, racers.1, racers.2, racers.3, racers.4, racers.5].map(|r| r.expect("claim"));
    assert_eq!(results.iter().filter(|won| **won).count(), 1, "{results:?}");
    assert!(!store.claim_cron_slot("c1", slot, "late", T0 + 70_000).await.expect("again"));
    let runs = store.list_cron_runs(Some("c1"), 10).await.expect("runs");
    assert_eq!(runs.len(), 1);
    assert_eq!((runs[0].slot_ms, runs[0].status.as_str(), runs[0].started_at_ms), (slot, "running", T0 + 60_001));
    let job = store.get_cron_job("c1").await.expect("get").expect("c1");
    assert_eq!((job.last_run_at_ms, job.last_status.as_deref()), (Some(T0 + 60_001), Some("running")));

    assert!(store.claim_cron_slot("c1", slot + 60_000, "next", T0 + 120_001).await.expect("next slot"));
    assert!(store.claim_cron_slot("c2", slot, "c2-run", T0 + 60_002).await.expect("other job"));
    assert_eq!(store.last_cron_slot("c1").await.expect("last"), Some(slot + 60_000));
    assert_eq!(store.last_cron_slot("c3").await.expect("none"), None);
    assert!(matches!(store.claim_cron_slot("c3", slot, "x", T0).await, Err(StoreError::NotFound)));
}

/// A claimed run finishes once with its outcome, which becomes the job's last status unless a
/// newer slot was claimed since; receipts list newest first.
pub async fn cron_run_finishes_once_and_lists_newest_first<S: CronStore>(store: &S) {
    store.upsert_cron_job(&cron_job("c1", "daily", true)).await.expect("c1");
    store.upsert_cron_job(&cron_job("c2", "other", true)).await.expect("c2");
    assert!(store.claim_cron_slot("c1", 1_000, "r1", T0).await.expect("claim"));
    assert!(store.claim_cron_slot("c1", 2_000, "r2", T0 + 10).await.expect("claim"));
    assert!(store.claim_cron_slot("c2", 1_000, "o1", T0 + 12).await.expect("claim c2"));
    // Slot 1000's run ends after slot 2000's began: it must not overwrite the newer status.
    store.finish_cron_run("c1", 1_000, "ok", Some("posted 1 image"), None, T0 + 15).await.expect("finish");
    assert_eq!(store.get_cron_job("c1").await.expect("get").expect("c1").last_status.as_deref(), Some("running"));
    let conflict = store.finish_cron_run("c1", 1_000, "error", None, Some("x"), T0 + 16).await;
    assert!(matches!(conflict, Err(StoreError::Conflict(_))), "{conflict:?}");
    assert!(matches!(store.finish_cron_run("c1", 9_999, "ok", None, None, T0).await, Err(StoreError::NotFound)));
    let bad = store.finish_cron_run("c1", 2_000, "running", None, None, T0 + 17).await;
    assert!(matches!(bad, Err(StoreError::Conflict(_))), "{bad:?}");
    store.finish_cron_run("c1", 2_000, "error", None, Some("comfy down"), T0 + 20).await.expect("finish");
    assert_eq!(store.get_cron_job("c1").await.expect("get").expect("c1").last_status.as_deref(), Some("error"));

    let runs = store.list_cron_runs(Some("c1"), 10).await.expect("runs");
    let first = CronRunRecord {
        job_id: "c1".to_owned(),
        slot_ms: 1_000,
        run_id: "r1".to_owned(),
        status: "ok".to_owned(),
        summary: Some("posted 1 image".to_owned()),
        error: None,
        started_at_ms: T0,
        finished_at_ms: Some(T0 + 15),
    };
    let second = CronRunRecord {
        job_id: "c1".to_owned(),
        slot_ms: 2_000,
        run_id: "r2".to_owned(),
        status: "error".to_owned(),
        summary: None,
        error: Some("comfy down".to_owned()),
        started_at_ms: T0 + 10,
        finished_at_ms: Some(T0 + 20),
    };
    assert_eq!(runs, vec![second.clone(), first]);
    let all = store.list_cron_runs(None, 2).await.expect("all");
    assert_eq!(all.iter().map(|r| (r.job_id.as_str(), r.slot_ms)).collect::<Vec<_>>(), [("c2", 1_000), ("c1", 2_000)]);

    // Pruning keeps running receipts and each job's latest, so last_cron_slot survives.
    assert_eq!(store.prune_cron_runs(T0 + 1_000).await.expect("prune"), 1);
    assert_eq!(store.list_cron_runs(Some("c1"), 10).await.expect("runs"), vec![second]);
    assert_eq!(store.last_cron_slot("c1").await.expect("last"), Some(2_000));
    assert_eq!(store.list_cron_runs(Some("c2"), 10).await.expect("c2 runs").len(), 1);
}

// ---------------------------------------------------------------------------------------------
// AccessTokenStore

fn access_token(name: &str) -> crate::NewAccessToken {
    crate::NewAccessToken {
        name: name.to_owned(),
        scopes: strings(&["operator.write"]),
        sessions: strings(&["compose:*"]),
        methods: strings(&["agent", "chat.*"]),
        rate_requests: Some(60),
        rate_per_ms: Some(60_000),
    }
}

/// A created token verifies by its text, returns its record (never the secret) and records
/// when it was last used; the listing shows it without the secret.
pub async fn created_access_token_verifies_and_records_its_use<S: crate::AccessTokenStore>(store: &S) {
    let (text, record) = store.create_access_token(&access_token("compose"), T0).await.expect("create");
    assert!(text.starts_with(crate::ACCESS_TOKEN_PREFIX), "prefixed");
    assert!(text.contains(&record.id), "the text names its record");
    assert_eq!(
        (record.name.as_str(), record.scopes.clone(), record.sessions.clone(), record.methods.clone()),
        ("compose", strings(&["operator.write"]), strings(&["compose:*"]), strings(&["agent", "chat.*"]))
    );
    assert_eq!((record.rate_requests, record.rate_per_ms, record.created_at_ms), (Some(60), Some(60_000), T0));
    assert_eq!((record.last_used_at_ms, record.revoked_at_ms), (None, None));
    let verified = store.verify_access_token(&text, T0 + 5).await.expect("verify").expect("a live token");
    assert_eq!(verified, crate::AccessTokenRecord { last_used_at_ms: Some(T0 + 5), ..record.clone() });
    let listed = store.list_access_tokens().await.expect("list");
    assert_eq!(listed, vec![verified]);
    let debug = format!("{listed:?}");
    // The secret is everything after `cgt_<id>_` (it may itself hold `_`: a part after the last
    // one can be a few characters that appear in any text by chance).
    let secret = text.split_once(&format!("{}_", record.id)).map(|(_, s)| s).expect("a secret part");
    assert!(secret.len() >= 32, "a whole secret: {secret}");
    assert!(!debug.contains(secret), "the secret is never stored or listed");
}

/// Two live tokens cannot share a name; once one is revoked its name is free again.
pub async fn access_token_names_are_unique_among_live_tokens<S: crate::AccessTokenStore>(store: &S) {
    let (_, first) = store.create_access_token(&access_token("compose"), T0).await.expect("create");
    let again = store.create_access_token(&access_token("compose"), T0 + 1).await;
    assert!(matches!(again, Err(StoreError::Conflict(_))), "{again:?}");
    store.create_access_token(&access_token("other"), T0 + 2).await.expect("another name");
    assert!(store.revoke_access_token("compose", T0 + 3).await.expect("revoke").is_some());
    let (_, second) = store.create_access_token(&access_token("compose"), T0 + 4).await.expect("name reused");
    assert_ne!(first.id, second.id);
    let names: Vec<_> =
        store.list_access_tokens().await.expect("list").into_iter().map(|r| (r.name, r.revoked_at_ms)).collect();
    assert_eq!(names, [("compose".to_owned(), Some(T0 + 3)), ("other".to_owned(), None), ("compose".to_owned(), None)]);
}

/// Revoking by id or by name ends the token; revoking again finds nothing.
pub async fn revoked_access_token_no_longer_verifies<S: crate::AccessTokenStore>(store: &S) {
    let (a, a_rec) = store.create_access_token(&access_token("a"), T0).await.expect("create a");
    let (b, _) = store.create_access_token(&access_token("b"), T0).await.expect("create b");
    let revoked = store.revoke_access_token(&a_rec.id, T0 + 1).await.expect("revoke by id").expect("found");
    assert_eq!((revoked.id.as_str(), revoked.revoked_at_ms), (a_rec.id.as_str(), Some(T0 + 1)));
    assert_eq!(store.verify_access_token(&a, T0 + 2).await.expect("verify"), None);
    assert!(store.verify_access_token(&b, T0 + 2).await.expect("verify").is_some(), "b untouched");
    assert!(store.revoke_access_token("b", T0 + 3).await.expect("revoke by name").is_some());
    assert_eq!(store.verify_access_token(&b, T0 + 4).await.expect("verify"), None);
    assert_eq!(store.revoke_access_token("b", T0 + 5).await.expect("again"), None);
    assert_eq!(store.revoke_access_token("nobody", T0 + 5).await.expect("unknown"), None);
}

/// Texts that are not a live token's — empty, huge, another prefix, a wrong secret for a real
/// id, unicode — verify as nothing, never as an error.
pub async fn odd_access_token_texts_never_verify<S: crate::AccessTokenStore>(store: &S) {
    let (text, record) = store.create_access_token(&access_token("compose"), T0).await.expect("create");
    let wrong_secret = format!("{}{}_{}", crate::ACCESS_TOKEN_PREFIX, record.id, "A".repeat(43));
    let huge = format!("{text}{}", "x".repeat(100_000));
    let odd = [
        "",
        "cgt_",
        "cgt__",
        wrong_secret.as_str(),
        huge.as_str(),
        &text[..text.len() - 1],
        "ghp_0123456789abcdef_secret",
        "cgt_ünïcødé_✓",
        "cgt_0123456789abcdef_\u{0}",
    ];
    for presented in odd {
        let got = store.verify_access_token(presented, T0 + 1).await.expect("verify never fails on odd input");
        assert_eq!(got, None, "{:?}", &presented[..presented.len().min(60)]);
    }
    let record = store.list_access_tokens().await.expect("list").remove(0);
    assert_eq!(record.last_used_at_ms, None, "failed attempts are not uses");
}

// ---------------------------------------------------------------------------------------------
// ClusterStore

fn gateway(id: &str, seen_at_ms: i64) -> GatewayRecord {
    GatewayRecord {
        id: id.to_owned(),
        started_at_ms: T0,
        seen_at_ms,
        listen_addr: "127.0.0.1:18789".to_owned(),
        version: "0.1.0".to_owned(),
    }
}

/// A gateway's first upsert registers it, later ones move `seen_at_ms` (and address and
/// version) but keep `started_at_ms`; gateways not seen since a cut-off are forgotten.
pub async fn gateways_register_heartbeat_and_are_forgotten<S: ClusterStore>(store: &S) {
    assert!(store.list_gateways().await.expect("empty").is_empty());
    store.upsert_gateway(&gateway("gw-b", T0)).await.expect("register b");
    store.upsert_gateway(&gateway("gw-a", T0)).await.expect("register a");
    let beat = GatewayRecord {
        started_at_ms: T0 + 999,
        listen_addr: "10.0.0.2:18789".to_owned(),
        version: "0.2.0".to_owned(),
        ..gateway("gw-a", T0 + 2_000)
    };
    store.upsert_gateway(&beat).await.expect("heartbeat a");
    let listed = store.list_gateways().await.expect("list");
    let expected_a = GatewayRecord { started_at_ms: T0, ..beat };
    assert_eq!(listed, vec![expected_a.clone(), gateway("gw-b", T0)], "by id, started_at kept");
    assert_eq!(store.forget_gateways(T0 + 1_000).await.expect("forget"), 1);
    assert_eq!(store.list_gateways().await.expect("list"), vec![expected_a]);
    assert_eq!(store.forget_gateways(T0 + 1_000).await.expect("forget again"), 0);
}

/// A free lease is granted; its holder renews it (keeping when it was first taken) while
/// another holder is refused and changes nothing, until the very moment it expires.
pub async fn lease_is_granted_renewed_and_refused_to_others<S: ClusterStore>(store: &S) {
    assert!(store.try_acquire_lease("channel:telegram:default", "gw-a", 1_000, T0).await.expect("take"));
    assert!(store.try_acquire_lease("channel:telegram:default", "gw-a", 1_000, T0 + 500).await.expect("renew"));
    assert!(!store.try_acquire_lease("channel:telegram:default", "gw-b", 1_000, T0 + 600).await.expect("refused"));
    assert!(!store.try_acquire_lease("channel:telegram:default", "gw-b", 1_000, T0 + 1_499).await.expect("not yet"));
    assert!(store.try_acquire_lease("other", "gw-b", 1_000, T0 + 600).await.expect("another lease is free"));
    let leases = store.list_leases().await.expect("list");
    assert_eq!(
        leases,
        vec![
            LeaseRecord {
                name: "channel:telegram:default".to_owned(),
                holder: "gw-a".to_owned(),
                expires_at_ms: T0 + 1_500,
                acquired_at_ms: T0,
            },
            LeaseRecord {
                name: "other".to_owned(),
                holder: "gw-b".to_owned(),
                expires_at_ms: T0 + 1_600,
                acquired_at_ms: T0 + 600,
            },
        ]
    );
}

/// Once a lease expires another gateway takes it over (a new `acquired_at_ms`), and the old
/// holder can neither renew nor release it any more; a release by the holder frees it at once.
pub async fn expired_lease_is_taken_over_and_released_only_by_its_holder<S: ClusterStore>(store: &S) {
    assert!(store.try_acquire_lease("l", "gw-a", 1_000, T0).await.expect("take"));
    assert!(store.try_acquire_lease("l", "gw-b", 1_000, T0 + 1_000).await.expect("expired at T0+1000: taken over"));
    assert!(!store.try_acquire_lease("l", "gw-a", 1_000, T0 + 1_001).await.expect("the old holder lost it"));
    assert!(!store.release_lease("l", "gw-a").await.expect("release by a non-holder"));
    let lease = store.list_leases().await.expect("list").pop().expect("one lease");
    assert_eq!((lease.holder.as_str(), lease.acquired_at_ms, lease.expires_at_ms), ("gw-b", T0 + 1_000, T0 + 2_000));
    assert!(store.release_lease("l", "gw-b").await.expect("release"));
    assert!(store.list_leases().await.expect("list").is_empty());
    assert!(store.try_acquire_lease("l", "gw-a", 1_000, T0 + 1_002).await.expect("free again"));
}

/// Of several gateways racing for one free lease, and then for the same lease once it expired,
/// exactly one wins each time.
pub async fn concurrent_lease_acquires_have_exactly_one_winner<S: ClusterStore>(store: &S) {
    for (round, now) in [(0, T0), (1, T0 + 5_000)] {
        let holders = ["a", "b", "c", "d"].map(|h| format!("gw-{h}{round}"));
        let (a, b, c, d) = tokio::join!(
            store.try_acquire_lease("race", &holders[0], 1_000, now),
            store.try_acquire_lease("race", &holders[1], 1_000, now),
            store.try_acquire_lease("race", &holders[2], 1_000, now),
            store.try_acquire_lease("race", &holders[3], 1_000, now),
        );
        let granted = [a.expect("a"), b.expect("b"), c.expect("c"), d.expect("d")];
        assert_eq!(granted.iter().filter(|g| **g).count(), 1, "round {round}: {granted:?}");
        let lease = store.list_leases().await.expect("list").pop().expect("one lease");
        assert_eq!(lease.holder, holders[granted.iter().position(|g| *g).expect("a winner")]);
    }
}

/// A gateway that shuts down cleanly takes its row and its leases with it, so a peer takes over
/// at once rather than after the ttl.
pub async fn removing_a_gateway_releases_its_leases<S: ClusterStore>(store: &S) {
    store.upsert_gateway(&gateway("gw-a", T0)).await.expect("register a");
    store.upsert_gateway(&gateway("gw-b", T0)).await.expect("register b");
    assert!(store.try_acquire_lease("x", "gw-a", 60_000, T0).await.expect("a takes x"));
    assert!(store.try_acquire_lease("y", "gw-b", 60_000, T0).await.expect("b takes y"));
    assert!(store.remove_gateway("gw-a").await.expect("remove"));
    assert!(!store.remove_gateway("gw-a").await.expect("remove again"));
    assert_eq!(store.list_gateways().await.expect("list").into_iter().map(|g| g.id).collect::<Vec<_>>(), ["gw-b"]);
    assert!(store.try_acquire_lease("x", "gw-b", 60_000, T0 + 1).await.expect("x is free at once"));
    assert_eq!(
        store.list_leases().await.expect("list").into_iter().map(|l| l.holder).collect::<Vec<_>>(),
        ["gw-b", "gw-b"]
    );
}

/// A shared lockout is listed while in force, a later one extends it, an earlier one does not
/// shorten it, and expired ones are gone.
pub async fn shared_lockouts_extend_and_expire<S: crate::LockoutStore>(store: &S) {
    store.share_lockout("203.0.113.7", 2_000).await.expect("share");
    store.share_lockout("2001:db8::", 1_500).await.expect("share");
    store.share_lockout("203.0.113.7", 1_800).await.expect("an earlier end");
    assert_eq!(
        store.active_lockouts(1_000, 10).await.expect("list"),
        vec![("203.0.113.7".to_owned(), 2_000), ("2001:db8::".to_owned(), 1_500)],
        "longest first; the earlier end did not shorten it"
    );
    store.share_lockout("2001:db8::", 3_000).await.expect("extend");
    assert_eq!(store.active_lockouts(1_000, 1).await.expect("list"), vec![("2001:db8::".to_owned(), 3_000)]);
    assert_eq!(
        store.active_lockouts(2_000, 10).await.expect("list"),
        vec![("2001:db8::".to_owned(), 3_000)],
        "one that ended at 2000 is not in force at 2000"
    );
    assert!(store.active_lockouts(3_000, 10).await.expect("list").is_empty());
}

// ---------------------------------------------------------------------------------------------
// UsageStore

/// `SessionQuarterHour` sums each (quarter hour, transcript, session key, provider, model): a
/// reset's new transcript is apart from the old one, and the key is the whole session key.
pub async fn usage_by_session_quarter_hour_keeps_transcripts_apart<S>(store: &S)
where
    S: UsageStore + SessionStore + TranscriptStore,
{
    const QUARTER: i64 = 900_000;
    let turn = |input: i64| {
        json!({"role": "assistant", "content": "ok", "provider": "p", "model": "m",
               "usage": {"input": input, "output": 1, "cacheRead": 2, "cacheWrite": 3}})
    };
    let key = "agent:main:with space";
    let old = store.ensure_session(key, "main", T0).await.expect("session").session_id;
    let slot = T0 / QUARTER;
    for (input, at) in [(10, T0), (20, T0 + 1), (40, T0 + QUARTER)] {
        store.append(&old, TranscriptRole::Assistant, &turn(input), None, EntryStatus::Final, at).await.expect("a");
    }
    let new = store.reset_session(key, T0 + 2 * QUARTER).await.expect("reset").session_id;
    store.append(&new, TranscriptRole::Assistant, &turn(80), None, EntryStatus::Final, T0 + QUARTER).await.expect("a");
    let query = UsageQuery {
        start_ms: T0,
        end_ms: T0 + 2 * QUARTER,
        agent_id: Some("main".to_owned()),
        session_key: None,
        grouping: UsageGrouping::SessionQuarterHour,
        limit: 10,
    };
    let sums = store.usage_sums(&query).await.expect("sums");
    let mut got: Vec<(String, i64, i64, i64)> =
        sums.rows.iter().map(|r| (r.key.clone(), r.turns, r.input, r.cache_write)).collect();
    got.sort();
    let mut want = vec![
        (format!("{slot} {old} {key}"), 2, 30, 6),
        (format!("{} {old} {key}", slot + 1), 1, 40, 3),
        (format!("{} {new} {key}", slot + 1), 1, 80, 3),
    ];
    want.sort();
    assert_eq!(got, want);
    assert!(!sums.truncated);
    let first = sums.rows.iter().find(|r| r.key.starts_with(&format!("{slot} "))).expect("first slot");
    assert_eq!((first.provider.as_str(), first.model.as_str(), first.last_ts), ("p", "m", T0 + 1));
}

/// A bucket grants its burst at once, refuses the next with the wait until a token is back,
/// refills at the rate, keeps buckets apart by key, and is forgotten once full again.
pub async fn rate_buckets_grant_the_burst_then_refill<S: crate::RateBucketStore>(store: &S) {
    use crate::{BucketRate, RateTake};
    // 3 a second: one token every 1/3 s.
    let rate = BucketRate { requests: 3, per_ms: 1_000 };
    let t0 = 10_000_000;
    for i in 0..3 {
        assert_eq!(store.take_rate_token("token:a", rate, t0).await.expect("take"), RateTake::Granted, "take {i}");
    }
    assert_eq!(
        store.take_rate_token("token:a", rate, t0).await.expect("take"),
        RateTake::Refused { retry_after_us: 333_333 },
        "the fourth waits one interval"
    );
    assert_eq!(
        store.take_rate_token("token:a", rate, t0 + 100_000).await.expect("take"),
        RateTake::Refused { retry_after_us: 233_333 },
        "a refused take takes nothing: the wait only shrinks with time"
    );
    assert_eq!(store.take_rate_token("token:b", rate, t0).await.expect("take"), RateTake::Granted, "another key");
    assert_eq!(store.take_rate_token("token:a", rate, t0 + 333_333).await.expect("take"), RateTake::Granted);
    assert!(matches!(
        store.take_rate_token("token:a", rate, t0 + 333_333).await.expect("take"),
        RateTake::Refused { .. }
    ));
    // A long pause refills to the burst, never beyond it.
    let later = t0 + 60_000_000;
    for _ in 0..3 {
        assert_eq!(store.take_rate_token("token:a", rate, later).await.expect("take"), RateTake::Granted);
    }
    assert!(matches!(store.take_rate_token("token:a", rate, later).await.expect("take"), RateTake::Refused { .. }));
    // `token:b` is full again by `later`; `token:a` is not.
    assert_eq!(store.prune_rate_buckets(later).await.expect("prune"), 1);
    assert_eq!(store.prune_rate_buckets(later + 1_000_000).await.expect("prune"), 1);
    assert_eq!(store.take_rate_token("token:a", rate, later + 1_000_000).await.expect("take"), RateTake::Granted);
}

/// Takes racing on one bucket (as from several gateways) are granted exactly its burst.
pub async fn concurrent_rate_takes_never_exceed_the_burst<S: crate::RateBucketStore>(store: &S) {
    use crate::{BucketRate, RateTake};
    let rate = BucketRate { requests: 3, per_ms: 60_000 };
    let take = || store.take_rate_token("token:race", rate, 1_000_000);
    let racers = tokio::join!(take(), take(), take(), take(), take(), take(), take(), take());
    let answers = [racers.0, racers.1, racers.2, racers.3, racers.4, racers.5, racers.6, racers.7];
    let granted = answers.iter().filter(|a| matches!(a, Ok(RateTake::Granted))).count();
    assert!(answers.iter().all(Result::is_ok), "{answers:?}");
    assert_eq!(granted, 3, "{answers:?}");
}
