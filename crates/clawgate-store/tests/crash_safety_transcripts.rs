//! "A crash mid-turn leaves a consistent transcript and run queue."
//!
//! Same technique as `crash_safety.rs`: the parent test re-runs this test binary as a child
//! process that opens a store and plays chat turns as fast as it can from several tasks at
//! once — enqueue a run and append its user message, claim the session's next run, append
//! its reply once and finish it, plus system notes on a transcript that is compacted now and
//! then, and an occasional session reset — then kills it with SIGKILL at different moments.
//! Several tasks share each session, so appends and claims on one session really race.
//!
//! After each kill the parent reopens the store and checks: SQLite finds no damage; every
//! transcript's seqs are contiguous without duplicates (1..n, or k..n for the compacted one)
//! and match its count; every entry, session and run decodes; no run has two replies; every
//! finished run has its reply (appended before the run was finished); at most one run per
//! session was running, and startup recovery turns those into interrupted; and new appends
//! continue each transcript's numbering.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use clawgate_store::{
    EntryStatus, RunKind, RunStatus, RunStore, SessionQuery, SessionStore, SqliteStore, TranscriptRole, TranscriptStore,
};
use serde_json::json;

/// Set (to a database path) only in the child: makes `turn_writer_child_process` write.
const WRITER_DB_ENV: &str = "CLAWGATE_STORE_TURN_WRITER_DB";
/// Round number, so every child writes its own run ids.
const WRITER_ROUND_ENV: &str = "CLAWGATE_STORE_TURN_WRITER_ROUND";
/// Printed by the child once the store is open and recovered.
const READY_MARKER: &str = "CLAWGATE_TURN_WRITER_READY";
/// Printed by the child after each finished iteration, followed by the total so far.
const PROGRESS_MARKER: &str = "CLAWGATE_TURN_WRITER_DONE";
/// Concurrent writer tasks in the child.
const WRITER_TASKS: u64 = 4;
/// Chat sessions the tasks share (fewer than the tasks, so lanes and seqs are contended).
const SESSIONS: u64 = 3;
/// The session whose transcript gets system notes and is compacted.
const COMPACTED_KEY: &str = "agent:main:compacted";
/// What compaction keeps of it.
const COMPACT_KEEP: usize = 25;
/// The child gives up on its own after this long, so an orphan never runs forever.
const CHILD_LIFETIME: Duration = Duration::from_secs(60);

mod common;
use common::{Harness, KillAt};

/// The writer child and its markers.
const HARNESS: Harness = Harness {
    child_test: "turn_writer_child_process",
    db_env: WRITER_DB_ENV,
    round_env: WRITER_ROUND_ENV,
    ready_marker: READY_MARKER,
    progress_marker: PROGRESS_MARKER,
};

fn now_ms() -> i64 {
    SystemTime::now().duration_since(UNIX_EPOCH).map(|d| i64::try_from(d.as_millis()).unwrap_or(i64::MAX)).unwrap_or(0)
}

fn chat_key(k: u64) -> String {
    format!("agent:main:crash-{k}")
}

/// The child's body; a no-op when run as an ordinary test.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn turn_writer_child_process() {
    let Some(path) = std::env::var_os(WRITER_DB_ENV) else {
        return;
    };
    let round = std::env::var(WRITER_ROUND_ENV).unwrap_or_default();
    let store = SqliteStore::open(Path::new(&path)).await.expect("child: open store");
    // What the gateway does at startup: lanes held by the killed process are freed.
    store.mark_interrupted_running(now_ms(), now_ms()).await.expect("child: recover");
    println!("{READY_MARKER}");
    let deadline = Instant::now() + CHILD_LIFETIME;
    let done = Arc::new(AtomicU64::new(0));
    let mut tasks = Vec::new();
    for task in 0..WRITER_TASKS {
        let store = store.clone();
        let done = Arc::clone(&done);
        let round = round.clone();
        tasks.push(tokio::spawn(async move {
            let mut i = 0u64;
            while Instant::now() < deadline {
                play_one_turn(&store, &round, task, i).await;
                let total = done.fetch_add(1, Ordering::SeqCst) + 1;
                println!("{PROGRESS_MARKER} {total}");
                i += 1;
            }
        }));
    }
    for task in tasks {
        task.await.expect("child: writer task");
    }
}

async fn play_one_turn(store: &SqliteStore, round: &str, task: u64, i: u64) {
    let now = now_ms();
    let key = chat_key((task + i) % SESSIONS);
    let session = store.ensure_session(&key, "main", now).await.expect("child: ensure");

    // Accepting a run: queue it and record the user's message.
    let run_id = format!("run-{round}-{task}-{i}");
    let message = format!("message {i} from task {task}");
    store.enqueue(&run_id, &key, RunKind::Chat, &json!({ "message": message }), now).await.expect("child: enqueue");
    let user =
        json!({"role": "user", "content": message, "timestamp": now, "idempotencyKey": format!("{run_id}:user")});
    store
        .append(&session.session_id, TranscriptRole::User, &user, Some(&run_id), EntryStatus::Final, now)
        .await
        .expect("child: append user");

    // Running the lane's next run (perhaps another task's, or one left by a killed child):
    // the reply is appended once, whole, and only then is the run finished.
    if let Some(run) = store.claim_next(&key, now).await.expect("child: claim") {
        let aborted = i % 7 == 6;
        let text = "Hello from the fake model. ".repeat(1 + usize::try_from(i % 40).unwrap_or(0) * 10);
        let reply = json!({"role": "assistant", "content": [{"type": "text", "text": text}],
                           "provider": "fake", "model": "fake-model", "usage": {"input": 42, "output": 6},
                           "stopReason": if aborted { "aborted" } else { "stop" }, "timestamp": now});
        let (entry_status, run_status) = if aborted {
            (EntryStatus::Aborted, RunStatus::Aborted)
        } else {
            (EntryStatus::Final, RunStatus::Completed)
        };
        let current = store.ensure_session(&key, "main", now).await.expect("child: session");
        store
            .append(&current.session_id, TranscriptRole::Assistant, &reply, Some(&run.run_id), entry_status, now)
            .await
            .expect("child: append reply");
        store
            .finish(&run.run_id, run_status, Some(&json!({"status": "ok", "text": text.len()})), now)
            .await
            .expect("child: finish");
    }

    // Noise on a transcript that is compacted as it grows.
    let compacted = store.ensure_session(COMPACTED_KEY, "main", now).await.expect("child: compacted session");
    let note = json!({"role": "system", "content": format!("note {round}-{task}-{i}")});
    store
        .append(&compacted.session_id, TranscriptRole::System, &note, None, EntryStatus::Final, now)
        .await
        .expect("child: append note");
    if i % 10 == 9 {
        store.compact(&compacted.session_id, COMPACT_KEEP).await.expect("child: compact");
    }
    if task == 0 && i % 50 == 49 {
        store.reset_session(&chat_key(0), now).await.expect("child: reset");
    }
}

/// Everything that must hold after a crash.
async fn check_consistent(db: &Path, round: usize) {
    let store = SqliteStore::open(db).await.expect("reopen after crash");
    assert!(store.integrity_check().await.expect("integrity_check"), "round {round}: damaged");

    // Plain SQL finds what the API has no "list everything" for (transcript ids, run ids) and
    // asks the aggregate questions; every row is then read back through the API.
    let raw = sqlx::SqlitePool::connect_with(sqlx::sqlite::SqliteConnectOptions::new().filename(db).read_only(true))
        .await
        .expect("raw read-only connection");
    let duplicates: Vec<(String, i64)> =
        sqlx::query_as("SELECT session_id, seq FROM transcript_entries GROUP BY session_id, seq HAVING COUNT(*) > 1")
            .fetch_all(&raw)
            .await
            .expect("duplicate seqs");
    assert!(duplicates.is_empty(), "round {round}: duplicate seqs {duplicates:?}");

    // Every transcript: contiguous seqs, matching count, every entry decodes.
    let sessions = store
        .list_sessions(&SessionQuery { include_archived: true, ..SessionQuery::default() })
        .await
        .expect("sessions decode");
    let compacted_ids: Vec<String> =
        sqlx::query_scalar("SELECT session_id FROM transcript_heads WHERE session_key = ?")
            .bind(COMPACTED_KEY)
            .fetch_all(&raw)
            .await
            .expect("compacted ids");
    let transcript_ids: Vec<String> =
        sqlx::query_scalar("SELECT DISTINCT session_id FROM transcript_entries").fetch_all(&raw).await.expect("ids");
    let mut entries_checked = 0;
    for session_id in &transcript_ids {
        let entries = store.tail(session_id, usize::MAX, None).await.expect("entries decode");
        let seqs: Vec<i64> = entries.iter().map(|e| e.seq).collect();
        let first = if compacted_ids.contains(session_id) { seqs[0] } else { 1 };
        let expected: Vec<i64> = (first..first + i64::try_from(seqs.len()).expect("fits")).collect();
        assert_eq!(seqs, expected, "round {round}: transcript {session_id} is not contiguous");
        let count = store.count_entries(session_id).await.expect("count");
        assert_eq!(count, u64::try_from(entries.len()).expect("fits"), "round {round}: {session_id} count");
        entries_checked += entries.len();
    }
    for session in &sessions {
        let count = store.count_entries(&session.session_id).await.expect("count");
        assert_eq!(session.message_count, count, "round {round}: {} message_count", session.key);
    }

    // Runs: every run decodes; no run has two replies or two user messages; every finished
    // run has its reply, with the matching status.
    let run_ids: Vec<String> = sqlx::query_scalar("SELECT run_id FROM runs").fetch_all(&raw).await.expect("run ids");
    let mut statuses = BTreeMap::new();
    for run_id in &run_ids {
        let run = store.get_run(run_id).await.expect("run decodes").expect("run");
        *statuses.entry(run.status.as_str()).or_insert(0) += 1;
        let entries = store.find_by_run(run_id).await.expect("run entries decode");
        let replies: Vec<_> = entries.iter().filter(|e| e.role == TranscriptRole::Assistant).collect();
        let users = entries.iter().filter(|e| e.role == TranscriptRole::User).count();
        assert!(replies.len() <= 1 && users <= 1, "round {round}: {run_id} has {entries:?}");
        match run.status {
            RunStatus::Completed | RunStatus::Aborted => {
                let reply = replies.first().unwrap_or_else(|| panic!("round {round}: finished {run_id} has no reply"));
                let expected =
                    if run.status == RunStatus::Completed { EntryStatus::Final } else { EntryStatus::Aborted };
                assert_eq!(reply.status, expected, "round {round}: {run_id}");
                assert!(run.result.is_some() && run.ended_at_ms.is_some(), "round {round}: {run_id}");
            }
            // A reply may exist: the crash can fall between appending it and finishing.
            RunStatus::Running | RunStatus::Interrupted => assert!(run.started_at_ms.is_some()),
            RunStatus::Queued => assert!(replies.is_empty(), "round {round}: queued {run_id} has a reply"),
            // Only the parent's recovery below fails runs, without a reply.
            RunStatus::Failed => assert!(run.result.is_some(), "round {round}: {run_id}"),
        }
    }
    let running_lanes: Vec<(String, i64)> = sqlx::query_as(
        "SELECT session_key, COUNT(*) FROM runs WHERE status = 'running' GROUP BY session_key HAVING COUNT(*) > 1",
    )
    .fetch_all(&raw)
    .await
    .expect("running lanes");
    assert!(running_lanes.is_empty(), "round {round}: several runs running in one lane {running_lanes:?}");
    raw.close().await;

    // Startup recovery frees every lane; queued runs can be claimed again.
    let now = now_ms();
    store.mark_interrupted_running(now, now).await.expect("recover");
    for session in &sessions {
        let claimed = store.claim_next(&session.key, now).await.expect("claim after crash");
        if let Some(run) = claimed {
            let result = json!({"error": "recovered after crash"});
            store.finish(&run.run_id, RunStatus::Failed, Some(&result), now).await.expect("finish after crash");
        }
    }

    // And every transcript carries on where it stopped.
    for session in &sessions {
        let last = store.tail(&session.session_id, 1, None).await.expect("tail").first().map_or(0, |e| e.seq);
        let next = store
            .append(&session.session_id, TranscriptRole::System, &json!("after crash"), None, EntryStatus::Final, now)
            .await
            .expect("append after crash");
        assert_eq!(next.seq, last + 1, "round {round}: {} numbering", session.key);
    }
    assert!(store.integrity_check().await.expect("integrity_check after writes"));
    store.close().await.expect("close");
    eprintln!(
        "round {round}: ok ({} transcripts, {entries_checked} entries, {} runs {statuses:?})",
        transcript_ids.len(),
        run_ids.len()
    );
}

#[test]
fn killed_turn_writer_leaves_consistent_transcripts_and_runs() {
    let dir = tempfile::tempdir().expect("tempdir");
    let runtime = tokio::runtime::Builder::new_current_thread().enable_all().build().expect("runtime");
    let mut round = 0;

    // Fresh databases, killed early: during process start-up, file creation and migrations.
    for delay_ms in [0, 10, 40] {
        let db: PathBuf = dir.path().join(format!("fresh-{delay_ms}/gateway.db"));
        HARNESS.run_and_kill(&db, round, KillAt::AfterSpawn(Duration::from_millis(delay_ms)));
        runtime.block_on(check_consistent(&db, round));
        round += 1;
    }

    // One database that lives through every crash, killed at different amounts of work.
    let shared = dir.path().join("state/gateway.db");
    for target in [0, 1, 15, 120, 6, 250] {
        HARNESS.run_and_kill(&shared, round, KillAt::AfterIterations(target));
        runtime.block_on(check_consistent(&shared, round));
        round += 1;
    }
}
