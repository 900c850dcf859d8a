//! The behaviour every store backend must have, as one backend-neutral test suite
//! (DESIGN.md §4: "every store trait has one generic test suite run against both").
//!
//! A backend's tests call [`conformance_suite`] with a function that yields a fresh, empty
//! store; each case gets its own store, so cases never see each other's rows. The cases are
//! also public one by one, so a backend can run each as its own named test. They panic on a
//! failed expectation, like any test.

use std::future::Future;

use serde_json::json;

use crate::{
    DeviceStore, DeviceTokenStore, GatewayStore, IdempotencyStore, InsertOutcome, KvStore, NewPairingRequest,
    PairedDevice, PairingDecision, PairingStatus, PairingStore, StoreError,
};
use crate::{
    EnqueueOutcome, EntryStatus, RunKind, RunRecord, RunStatus, RunStore, SessionQuery, SessionRecord, SessionStore,
    TranscriptEntry, TranscriptRole, TranscriptStore,
};

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
    // Key/value.
    kv_get_of_missing_key_is_none(&fresh_store().await).await;
    kv_set_overwrites_previous_value(&fresh_store().await).await;
    kv_get_or_init_keeps_the_first_value(&fresh_store().await).await;
    concurrent_get_or_init_agrees_on_one_value(&fresh_store().await).await;
    // Paired devices.
    upserted_device_round_trips(&fresh_store().await).await;
    upsert_replaces_every_field_but_keeps_tokens(&fresh_store().await).await;
    list_paired_returns_every_device(&fresh_store().await).await;
    removing_device_revokes_tokens_and_drops_pending_requests(&fresh_store().await).await;
    removing_unpaired_device_returns_false(&fresh_store().await).await;
    touch_last_seen_records_connect_time(&fresh_store().await).await;
    // Pairing requests.
    new_request_is_pending_with_uuid_id(&fresh_store().await).await;
    duplicate_pending_request_is_refreshed_not_duplicated(&fresh_store().await).await;
    resolved_request_is_not_refreshed(&fresh_store().await).await;
    unknown_request_is_none(&fresh_store().await).await;
    list_pending_shows_only_pending_requests(&fresh_store().await).await;
    rejecting_request_records_resolution_without_pairing(&fresh_store().await).await;
    resolving_twice_is_a_conflict(&fresh_store().await).await;
    resolving_unknown_request_is_not_found(&fresh_store().await).await;
    approving_request_pairs_device_atomically(&fresh_store().await).await;
    approving_upgrade_merges_roles_and_scopes(&fresh_store().await).await;
    resolve_with_approve_pairs_device(&fresh_store().await).await;
    expire_pending_drops_only_stale_pending_requests(&fresh_store().await).await;
    // Device tokens.
    issued_token_verifies_for_its_device(&fresh_store().await).await;
    issuing_for_unpaired_device_is_not_found(&fresh_store().await).await;
    rotated_token_invalidates_previous(&fresh_store().await).await;
    tokens_for_different_roles_coexist(&fresh_store().await).await;
    revoked_token_no_longer_verifies(&fresh_store().await).await;
    token_does_not_verify_for_another_device(&fresh_store().await).await;
    wrong_token_does_not_verify(&fresh_store().await).await;
    list_for_device_includes_revoked_tokens(&fresh_store().await).await;
    // Idempotency.
    idempotency_get_of_missing_key_is_none(&fresh_store().await).await;
    insert_if_absent_inserts_once_then_returns_existing(&fresh_store().await).await;
    concurrent_insert_if_absent_has_exactly_one_winner(&fresh_store().await).await;
    update_replaces_status_and_payload(&fresh_store().await).await;
    update_of_missing_key_is_not_found(&fresh_store().await).await;
    prune_drops_expired_entries_then_caps_count(&fresh_store().await).await;
    // Sessions.
    ensure_session_creates_once_with_uuid_session_id(&fresh_store().await).await;
    concurrent_ensure_session_creates_one_session(&fresh_store().await).await;
    get_session_of_unknown_key_is_none(&fresh_store().await).await;
    list_sessions_orders_by_most_recent_update(&fresh_store().await).await;
    list_sessions_filters_by_agent_and_search(&fresh_store().await).await;
    list_sessions_hides_archived_unless_asked(&fresh_store().await).await;
    patch_session_merges_meta_and_sets_label(&fresh_store().await).await;
    bad_or_misdirected_session_patch_is_refused(&fresh_store().await).await;
    reset_session_starts_a_new_transcript_and_keeps_the_old(&fresh_store().await).await;
    delete_session_keeps_transcript_unless_asked(&fresh_store().await).await;
    delete_session_with_transcript_removes_every_generation(&fresh_store().await).await;
    appending_updates_session_activity_and_count(&fresh_store().await).await;
    // Transcripts.
    append_assigns_contiguous_seqs_per_session(&fresh_store().await).await;
    concurrent_appends_never_duplicate_seqs(&fresh_store().await).await;
    appended_entry_round_trips(&fresh_store().await).await;
    get_entry_of_unknown_seq_is_none(&fresh_store().await).await;
    tail_returns_newest_entries_in_ascending_order(&fresh_store().await).await;
    compact_keeps_newest_entries_and_numbering_continues(&fresh_store().await).await;
    find_by_run_returns_the_runs_entries_in_order(&fresh_store().await).await;
    // Runs.
    enqueue_is_idempotent_on_run_id(&fresh_store().await).await;
    concurrent_enqueue_has_exactly_one_winner(&fresh_store().await).await;
    claim_next_starts_runs_one_at_a_time_in_enqueue_order(&fresh_store().await).await;
    concurrent_claims_start_one_run_per_session(&fresh_store().await).await;
    finish_records_outcome_and_frees_the_lane(&fresh_store().await).await;
    finish_refuses_non_terminal_status_and_second_finish(&fresh_store().await).await;
    get_run_of_unknown_id_is_none(&fresh_store().await).await;
    list_queued_sessions_lists_each_waiting_session_once(&fresh_store().await).await;
    mark_interrupted_running_ends_runs_cut_off_by_a_crash(&fresh_store().await).await;
    prune_finished_drops_only_old_finished_runs(&fresh_store().await).await;
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

/// At startup, runs left running become interrupted (with an end time), their lanes open up,
/// and nothing else changes.
pub async fn mark_interrupted_running_ends_runs_cut_off_by_a_crash<S: RunStore>(store: &S) {
    queued(store, "r1", "s", T0).await;
    queued(store, "r2", "s", T0).await;
    queued(store, "t1", "t", T0).await;
    queued(store, "u1", "u", T0).await;
    store.claim_next("s", T0 + 1).await.expect("claim").expect("r1");
    store.claim_next("t", T0 + 1).await.expect("claim").expect("t1");
    store.claim_next("u", T0 + 1).await.expect("claim").expect("u1");
    store.finish("u1", RunStatus::Completed, None, T0 + 2).await.expect("finish");

    assert_eq!(store.mark_interrupted_running(T0 + 100).await.expect("mark"), 2);
    let r1 = store.get_run("r1").await.expect("get").expect("r1");
    assert_eq!((r1.status, r1.ended_at_ms), (RunStatus::Interrupted, Some(T0 + 100)));
    let u1 = store.get_run("u1").await.expect("get").expect("u1");
    assert_eq!((u1.status, u1.ended_at_ms), (RunStatus::Completed, Some(T0 + 2)));
    assert_eq!(store.get_run("r2").await.expect("get").expect("r2").status, RunStatus::Queued);
    assert_eq!(store.claim_next("s", T0 + 101).await.expect("claim").map(|r| r.run_id).as_deref(), Some("r2"));
    assert_eq!(store.mark_interrupted_running(T0 + 200).await.expect("mark"), 1);
    assert_eq!(store.mark_interrupted_running(T0 + 300).await.expect("mark again"), 0);
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
