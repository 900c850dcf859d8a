//! The session, transcript and run cases of the conformance suite (`clawgate_store::testing`)
//! run against SQLite, each as its own test on a fresh in-memory store. (The whole suite,
//! these cases included, also runs on file-backed stores in `sqlite_conformance.rs`.)

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
    append_assigns_contiguous_seqs_per_session,
    concurrent_appends_never_duplicate_seqs,
    appended_entry_round_trips,
    get_entry_of_unknown_seq_is_none,
    tail_returns_newest_entries_in_ascending_order,
    compact_keeps_newest_entries_and_numbering_continues,
    find_by_run_returns_the_runs_entries_in_order,
    enqueue_is_idempotent_on_run_id,
    concurrent_enqueue_has_exactly_one_winner,
    claim_next_starts_runs_one_at_a_time_in_enqueue_order,
    concurrent_claims_start_one_run_per_session,
    finish_records_outcome_and_frees_the_lane,
    finish_refuses_non_terminal_status_and_second_finish,
    get_run_of_unknown_id_is_none,
    list_queued_sessions_lists_each_waiting_session_once,
    mark_interrupted_running_ends_runs_cut_off_by_a_crash,
    prune_finished_drops_only_old_finished_runs,
);
