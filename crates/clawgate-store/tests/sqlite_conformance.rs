//! The backend-neutral conformance suite (`clawgate_store::testing`) run against SQLite: each
//! case as its own test on a fresh in-memory store, and the whole suite on file-backed stores
//! (WAL, a real connection pool, so the concurrency cases really race).

use clawgate_store::SqliteStore;
use clawgate_store::testing;

async fn in_memory() -> SqliteStore {
    SqliteStore::open_in_memory().await.expect("open in-memory store")
}

macro_rules! sqlite_cases {
    ($($case:ident),* $(,)?) => {
        $(
            #[tokio::test]
            async fn $case() {
                testing::$case(&in_memory().await).await;
            }
        )*
    };
}

sqlite_cases!(
    kv_get_of_missing_key_is_none,
    kv_set_overwrites_previous_value,
    kv_get_or_init_keeps_the_first_value,
    concurrent_get_or_init_agrees_on_one_value,
    upserted_device_round_trips,
    upsert_replaces_every_field_but_keeps_tokens,
    list_paired_returns_every_device,
    removing_device_revokes_tokens_and_drops_pending_requests,
    removing_unpaired_device_returns_false,
    touch_last_seen_records_connect_time,
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
    issued_token_verifies_for_its_device,
    issuing_for_unpaired_device_is_not_found,
    rotated_token_invalidates_previous,
    tokens_for_different_roles_coexist,
    revoked_token_no_longer_verifies,
    token_does_not_verify_for_another_device,
    wrong_token_does_not_verify,
    list_for_device_includes_revoked_tokens,
    idempotency_get_of_missing_key_is_none,
    insert_if_absent_inserts_once_then_returns_existing,
    concurrent_insert_if_absent_has_exactly_one_winner,
    update_replaces_status_and_payload,
    update_of_missing_key_is_not_found,
    prune_drops_expired_entries_then_caps_count,
);

#[tokio::test]
async fn whole_suite_passes_on_file_backed_stores() {
    let dir = tempfile::tempdir().expect("tempdir");
    let mut n = 0;
    testing::conformance_suite(|| {
        n += 1;
        let path = dir.path().join(format!("case-{n}.db"));
        async move { SqliteStore::open(&path).await.expect("open file store") }
    })
    .await;
}

#[tokio::test]
async fn whole_suite_passes_on_in_memory_stores() {
    testing::conformance_suite(in_memory).await;
}
