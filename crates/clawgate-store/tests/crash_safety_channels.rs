//! "A crash never leaves a reply half-queued."
//!
//! Same technique as `crash_safety.rs`: the parent test re-runs this test binary as a child
//! process that plays the channel pipeline as fast as it can from several tasks at once —
//! record an inbound message (and a redelivery of it), route it, queue its reply of one to four
//! chunks while marking it answered, deliver its account's head of queue (sent, retried or
//! failed), and now and then a DM pairing request and its resolution — then kills it with
//! SIGKILL at different moments.
//!
//! After each kill the parent reopens the store and checks: SQLite finds no damage; every
//! answered inbox row has every chunk of its reply queued and every other inbox row has none
//! (queueing and answering are one transaction); every outbox row belongs to an answered
//! inbox row; within each account only a prefix of the queue was delivered (the sender only
//! ever takes the head); every row decodes; a message recorded before the crash is still
//! recognised as a redelivery; and new writes work.

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use clawgate_store::{ChannelStore, InboxStatus, NewOutbound, OutboxStatus, SqliteStore};
use serde_json::json;

/// Set (to a database path) only in the child: makes `channel_writer_child_process` write.
const WRITER_DB_ENV: &str = "CLAWGATE_STORE_CHANNEL_WRITER_DB";
/// Round number, so every child writes its own message ids.
const WRITER_ROUND_ENV: &str = "CLAWGATE_STORE_CHANNEL_WRITER_ROUND";
/// Printed by the child once the store is open.
const READY_MARKER: &str = "CLAWGATE_CHANNEL_WRITER_READY";
/// Printed by the child after each finished iteration, followed by the total so far.
const PROGRESS_MARKER: &str = "CLAWGATE_CHANNEL_WRITER_DONE";
/// Concurrent writer tasks in the child; each is the only sender of its own account.
const WRITER_TASKS: u64 = 3;
/// The child gives up on its own after this long, so an orphan never runs forever.
const CHILD_LIFETIME: Duration = Duration::from_secs(60);
const CHANNEL: &str = "telegram";

mod common;
use common::{Harness, KillAt};

/// The writer child and its markers.
const HARNESS: Harness = Harness {
    child_test: "channel_writer_child_process",
    db_env: WRITER_DB_ENV,
    round_env: WRITER_ROUND_ENV,
    ready_marker: READY_MARKER,
    progress_marker: PROGRESS_MARKER,
};

fn now_ms() -> i64 {
    SystemTime::now().duration_since(UNIX_EPOCH).map(|d| i64::try_from(d.as_millis()).unwrap_or(i64::MAX)).unwrap_or(0)
}

fn account(task: u64) -> String {
    format!("acct-{task}")
}

/// The child's body; a no-op when run as an ordinary test.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn channel_writer_child_process() {
    let Some(path) = std::env::var_os(WRITER_DB_ENV) else {
        return;
    };
    let round = std::env::var(WRITER_ROUND_ENV).unwrap_or_default();
    let store = SqliteStore::open(Path::new(&path)).await.expect("child: open store");
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
                play_one_message(&store, &round, task, i).await;
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

async fn play_one_message(store: &SqliteStore, round: &str, task: u64, i: u64) {
    let now = now_ms();
    let account = account(task);
    let message_id = format!("m-{round}-{task}-{i}");
    // The reply's chunk count travels with the message, so the parent knows what to expect.
    let chunks = 1 + i % 4;
    let message = json!({"text": format!("hello {i}"), "chunks": chunks});
    let id = store
        .record_inbound(CHANNEL, &account, &message_id, "chat", "user", &message, now)
        .await
        .expect("child: record")
        .expect("child: a new message");
    let redelivered = store.record_inbound(CHANNEL, &account, &message_id, "chat", "user", &message, now).await;
    assert_eq!(redelivered.expect("child: redelivery"), None);

    if i % 9 == 8 {
        store
            .set_inbound_status(id, InboxStatus::Dropped, Some("not allowed"), None, None, now)
            .await
            .expect("child: drop");
    } else {
        let run_id = format!("run-{message_id}");
        store
            .set_inbound_status(id, InboxStatus::Routed, None, Some(&run_id), Some("agent:main:tg"), now)
            .await
            .expect("child: route");
        if i % 6 != 5 {
            let text = "Hello from the fake model. ".repeat(20);
            let items: Vec<NewOutbound> = (0..chunks)
                .map(|c| NewOutbound {
                    idempotency_key: format!("{run_id}:{c}"),
                    channel: CHANNEL.to_owned(),
                    account: account.clone(),
                    chat_id: "chat".to_owned(),
                    payload: json!({"text": text, "chunk": c}),
                })
                .collect();
            let inserted = store.queue_outbound(&items, Some(id), now).await.expect("child: queue");
            assert_eq!(inserted, chunks);
        }
        // Otherwise the run is still going when the next message comes: the row stays routed.
    }

    // The account's sender: deliver the head of the queue.
    if let Some(head) = store.next_outbound(CHANNEL, &account).await.expect("child: next") {
        match i % 5 {
            3 => store.mark_outbound_retry(head.id, now + 10, "429", now).await.expect("child: retry"),
            4 if head.attempts > 0 => store.mark_outbound_failed(head.id, "gone", now).await.expect("child: fail"),
            _ => store.mark_outbound_sent(head.id, &format!("p-{}", head.id), now).await.expect("child: sent"),
        }
    }

    if i.is_multiple_of(10) {
        let sender = format!("dm-{round}-{task}-{i}");
        let code = format!("C{round}X{task}X{i}");
        let pairing = store
            .request_channel_pairing(CHANNEL, &account, &sender, None, "dm", &code, now, now + 60_000)
            .await
            .expect("child: pairing request");
        store
            .resolve_channel_pairing(&pairing.code, Some(CHANNEL), i.is_multiple_of(20), now)
            .await
            .expect("child: resolve");
    }
    if i % 25 == 24 {
        // A cutoff far in the past: exercises the statement without removing what the parent
        // checks.
        store.prune_channel_rows(now - 3_600_000).await.expect("child: prune");
    }
}

/// Everything that must hold after a crash.
async fn check_consistent(db: &Path, round: usize) {
    let store = SqliteStore::open(db).await.expect("reopen after crash");
    assert!(store.integrity_check().await.expect("integrity_check"), "round {round}: damaged");

    // Plain SQL finds every row id; every row is then read back through the API.
    let raw = sqlx::SqlitePool::connect_with(sqlx::sqlite::SqliteConnectOptions::new().filename(db).read_only(true))
        .await
        .expect("raw read-only connection");
    let inbox_ids: Vec<i64> =
        sqlx::query_scalar("SELECT id FROM channel_inbox ORDER BY id").fetch_all(&raw).await.expect("inbox ids");
    let mut answered = 0;
    let mut some_message = None;
    for &id in &inbox_ids {
        let row = store.get_inbound(id).await.expect("inbox row decodes").expect("row");
        let keys: Vec<String> = sqlx::query_scalar("SELECT idempotency_key FROM channel_outbox WHERE inbox_id = ?")
            .bind(id)
            .fetch_all(&raw)
            .await
            .expect("reply keys");
        if row.status == InboxStatus::Answered {
            answered += 1;
            let chunks = row.message["chunks"].as_u64().expect("chunk count");
            assert_eq!(
                u64::try_from(keys.len()).expect("fits"),
                chunks,
                "round {round}: answered inbox row {id} has a partial reply {keys:?}"
            );
        } else {
            assert!(keys.is_empty(), "round {round}: {:?} inbox row {id} has reply rows {keys:?}", row.status);
        }
        some_message = Some((row.account, row.message_id));
    }
    let orphans: i64 = sqlx::query_scalar(
        "SELECT COUNT(*) FROM channel_outbox o WHERE NOT EXISTS \
         (SELECT 1 FROM channel_inbox i WHERE i.id = o.inbox_id AND i.status = 'answered')",
    )
    .fetch_one(&raw)
    .await
    .expect("orphans");
    assert_eq!(orphans, 0, "round {round}: outbox rows without their answered inbox row");

    // The sender only ever takes an account's head, so delivered rows precede queued ones.
    let keys: Vec<String> =
        sqlx::query_scalar("SELECT idempotency_key FROM channel_outbox").fetch_all(&raw).await.expect("keys");
    for key in &keys {
        store.outbound_by_key(key).await.expect("outbox row decodes").expect("row");
    }
    for task in 0..WRITER_TASKS {
        let rows = store.list_outbound(CHANNEL, &account(task), None, u32::MAX).await.expect("rows decode");
        let first_queued = rows.iter().position(|r| r.status == OutboxStatus::Queued).unwrap_or(rows.len());
        assert!(
            rows[first_queued..].iter().all(|r| r.status == OutboxStatus::Queued),
            "round {round}: {} delivered out of order",
            account(task)
        );
        let head = store.next_outbound(CHANNEL, &account(task)).await.expect("head decodes");
        assert_eq!(head.map(|r| r.id), rows.get(first_queued).map(|r| r.id), "round {round}: head");
        store.outbox_counts(CHANNEL, &account(task)).await.expect("counts");
    }
    store.accounts_with_queued_outbound().await.expect("queued accounts");
    store.pending_inbound(u32::MAX).await.expect("pending rows decode");
    store.list_channel_pairings(None, 0).await.expect("pairings decode");
    raw.close().await;

    // A message recorded before the crash is still a redelivery; new writes work.
    let now = now_ms();
    if let Some((account, message_id)) = some_message {
        let again = store.record_inbound(CHANNEL, &account, &message_id, "chat", "user", &json!({}), now).await;
        assert_eq!(again.expect("record"), None, "round {round}: dedup lost");
    }
    let id = store
        .record_inbound(CHANNEL, "after", &format!("after-{round}"), "chat", "user", &json!({"chunks": 1}), now)
        .await
        .expect("record after crash")
        .expect("new");
    let item = NewOutbound {
        idempotency_key: format!("after-{round}"),
        channel: CHANNEL.to_owned(),
        account: "after".to_owned(),
        chat_id: "chat".to_owned(),
        payload: json!({}),
    };
    assert_eq!(store.queue_outbound(&[item], Some(id), now).await.expect("queue after crash"), 1);
    let head = store.next_outbound(CHANNEL, "after").await.expect("next").expect("queued");
    store.mark_outbound_sent(head.id, "p", now).await.expect("sent after crash");
    assert!(store.integrity_check().await.expect("integrity_check after writes"));
    store.close().await.expect("close");
    eprintln!("round {round}: ok ({} inbox rows, {answered} answered, {} outbox rows)", inbox_ids.len(), keys.len());
}

#[test]
fn killed_channel_writer_never_leaves_a_reply_half_queued() {
    let dir = tempfile::tempdir().expect("tempdir");
    let runtime = tokio::runtime::Builder::new_current_thread().enable_all().build().expect("runtime");
    let mut round = 0;

    // Fresh databases, killed early: during process start-up, file creation and migrations.
    for delay_ms in [0, 20] {
        let db: PathBuf = dir.path().join(format!("fresh-{delay_ms}/gateway.db"));
        HARNESS.run_and_kill(&db, round, KillAt::AfterSpawn(Duration::from_millis(delay_ms)));
        runtime.block_on(check_consistent(&db, round));
        round += 1;
    }

    // One database that lives through every crash, killed at different amounts of work.
    let shared = dir.path().join("state/gateway.db");
    for target in [0, 1, 17, 150, 6, 300] {
        HARNESS.run_and_kill(&shared, round, KillAt::AfterIterations(target));
        runtime.block_on(check_consistent(&shared, round));
        round += 1;
    }
}
