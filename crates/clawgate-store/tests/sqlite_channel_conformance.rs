//! The channel cases of the conformance suite (`clawgate_store::testing`) run against SQLite,
//! each as its own test on a fresh in-memory store. (The whole suite, these cases included,
//! also runs on file-backed stores in `sqlite_conformance.rs`.)

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
);
