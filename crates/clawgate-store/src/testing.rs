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
