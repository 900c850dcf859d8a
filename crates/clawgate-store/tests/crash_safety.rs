//! "A crash at any point leaves a usable database."
//!
//! The parent test re-runs this very test binary as a child process that opens a store and
//! writes as fast as it can (pairing, approving, upgrading, issuing and rotating tokens,
//! unpairing, idempotency entries, pruning) from several tasks at once, then kills it with
//! SIGKILL at different moments — during start-up and migrations on a fresh database, and
//! after various amounts of work on a database that survives every round. After each kill it
//! reopens the store and checks that SQLite finds no damage, that every approved pairing
//! request has its paired device (approval is one transaction), that every row still decodes,
//! and that new writes work.

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use clawgate_store::{
    DeviceStore, DeviceTokenStore, IdempotencyStore, InsertOutcome, KvStore, NewPairingRequest, PairingDecision,
    PairingStatus, PairingStore, SqliteStore,
};
use serde_json::json;

/// Set (to a database path) only in the child: makes `crash_writer_child_process` write.
const WRITER_DB_ENV: &str = "CLAWGATE_STORE_CRASH_WRITER_DB";
/// Round number, so every child writes its own ids.
const WRITER_ROUND_ENV: &str = "CLAWGATE_STORE_CRASH_WRITER_ROUND";
/// Printed by the child once the store is open.
const READY_MARKER: &str = "CLAWGATE_CRASH_WRITER_READY";
/// Printed by the child after each finished iteration, followed by the total so far.
const PROGRESS_MARKER: &str = "CLAWGATE_CRASH_WRITER_DONE";
/// Concurrent writer tasks in the child, so the pool's connections contend for the lock.
const WRITER_TASKS: u64 = 3;
/// The child gives up on its own after this long, so an orphan never runs forever.
const CHILD_LIFETIME: Duration = Duration::from_secs(60);

mod common;
use common::{Harness, KillAt};

/// The writer child and its markers.
const HARNESS: Harness = Harness {
    child_test: "crash_writer_child_process",
    db_env: WRITER_DB_ENV,
    round_env: WRITER_ROUND_ENV,
    ready_marker: READY_MARKER,
    progress_marker: PROGRESS_MARKER,
};

fn now_ms() -> i64 {
    SystemTime::now().duration_since(UNIX_EPOCH).map(|d| i64::try_from(d.as_millis()).unwrap_or(i64::MAX)).unwrap_or(0)
}

fn request(device_id: &str, role: &str, scopes: &[&str], reason: &str) -> NewPairingRequest {
    NewPairingRequest {
        device_id: device_id.to_owned(),
        public_key: format!("pk-{device_id}"),
        display_name: Some("crash test".to_owned()),
        platform: Some("linux".to_owned()),
        device_family: None,
        client_id: Some("cli".to_owned()),
        client_mode: Some("cli".to_owned()),
        role: role.to_owned(),
        scopes: scopes.iter().map(|s| (*s).to_owned()).collect(),
        remote_ip: Some("127.0.0.1".to_owned()),
        reason: reason.to_owned(),
    }
}

/// The child's body; a no-op when run as an ordinary test.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn crash_writer_child_process() {
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
        let prefix = format!("{round}-{task}");
        tasks.push(tokio::spawn(async move {
            let mut i = 0u64;
            while Instant::now() < deadline {
                write_one_iteration(&store, &prefix, i).await;
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

async fn write_one_iteration(store: &SqliteStore, prefix: &str, i: u64) {
    let now = now_ms();
    let keep = format!("keep-{prefix}-{i}");
    let first = store
        .create_or_refresh_request(&request(&keep, "operator", &["operator.read"], "not-paired"), now)
        .await
        .expect("child: request");
    if i % 2 == 1 {
        store
            .create_or_refresh_request(
                &request(&keep, "operator", &["operator.read", "operator.write"], "not-paired"),
                now,
            )
            .await
            .expect("child: refresh");
    }
    store.approve_request(&first.request_id, "silent", now).await.expect("child: approve");
    store.issue(&keep, "operator", &["operator.read".to_owned()], now).await.expect("child: issue");
    if i.is_multiple_of(3) {
        let upgrade = store
            .create_or_refresh_request(&request(&keep, "node", &["node.invoke"], "role-upgrade"), now)
            .await
            .expect("child: upgrade request");
        store.approve_request(&upgrade.request_id, "rpc", now).await.expect("child: upgrade");
        store.issue(&keep, "node", &[], now).await.expect("child: node token");
        store.issue(&keep, "operator", &[], now).await.expect("child: rotate");
    }
    store.touch_last_seen(&keep, now).await.expect("child: touch");

    let temp = format!("tmp-{prefix}-{i}");
    let temp_request = store
        .create_or_refresh_request(&request(&temp, "node", &[], "not-paired"), now)
        .await
        .expect("child: temp request");
    if i % 5 == 4 {
        store
            .resolve_request(&temp_request.request_id, PairingDecision::Reject, "cli", now)
            .await
            .expect("child: reject");
    } else {
        store.approve_request(&temp_request.request_id, "cli", now).await.expect("child: approve");
        store.issue(&temp, "node", &[], now).await.expect("child: temp token");
        store.remove_paired(&temp).await.expect("child: unpair");
    }

    let key = format!("idem-{prefix}-{i}");
    let outcome = store.insert_if_absent(&key, "started", &json!({ "i": i }), now).await.expect("child: claim");
    assert_eq!(outcome, InsertOutcome::Inserted);
    store.update(&key, "ok", &json!({ "i": i, "reply": "x".repeat(200) }), now).await.expect("child: complete");
    store.set(&format!("writer.{prefix}.last"), &i.to_string()).await.expect("child: kv");
    if i % 25 == 24 {
        store.prune(now - 2_000, 400).await.expect("child: prune");
        store.expire_pending(now - 60_000).await.expect("child: expire");
    }
}

/// Everything that must hold after a crash.
async fn check_usable(db: &Path, round: usize) {
    let store = SqliteStore::open(db).await.expect("reopen after crash");
    assert!(store.integrity_check().await.expect("integrity_check"), "round {round}: damaged");

    // Rows are read by the store API where it can list them, and found with plain SQL where
    // the API has no "list everything" (approved requests, idempotency keys).
    let raw = sqlx::SqlitePool::connect_with(sqlx::sqlite::SqliteConnectOptions::new().filename(db).read_only(true))
        .await
        .expect("raw read-only connection");
    let approved: Vec<String> = sqlx::query_scalar(
        "SELECT request_id FROM pairing_requests WHERE status = 'approved' \
         AND device_id LIKE 'keep-%'",
    )
    .fetch_all(&raw)
    .await
    .expect("approved requests");
    for request_id in &approved {
        let request = store.get_request(request_id).await.expect("request decodes").expect("row");
        assert_eq!(request.status, PairingStatus::Approved);
        let device = store
            .get_paired(&request.device_id)
            .await
            .expect("device decodes")
            .unwrap_or_else(|| panic!("round {round}: approved {request_id} has no device"));
        assert!(device.roles.contains(&request.role), "round {round}: {request_id} role lost");
        assert!(request.scopes.iter().all(|s| device.scopes.contains(s)), "round {round}: {request_id} scopes lost");
    }
    for device in store.list_paired().await.expect("paired devices decode") {
        store.list_for_device(&device.device_id).await.expect("tokens decode");
    }
    store.list_pending().await.expect("pending requests decode");
    let keys: Vec<String> =
        sqlx::query_scalar("SELECT key FROM idempotency").fetch_all(&raw).await.expect("idempotency keys");
    for key in &keys {
        IdempotencyStore::get(&store, key).await.expect("idempotency entry decodes");
    }
    raw.close().await;

    // And the store takes new writes.
    let now = now_ms();
    let device_id = format!("after-crash-{round}");
    let new = store
        .create_or_refresh_request(&request(&device_id, "operator", &["operator.read"], "not-paired"), now)
        .await
        .expect("new request");
    store.approve_request(&new.request_id, "cli", now).await.expect("approve after crash");
    let (token, _) = store.issue(&device_id, "operator", &[], now).await.expect("issue after crash");
    assert!(store.verify(&device_id, &token).await.expect("verify").is_some());
    let key = format!("after-crash-{round}");
    let claimed = store.insert_if_absent(&key, "ok", &json!({}), now).await.expect("claim");
    assert_eq!(claimed, InsertOutcome::Inserted);
    store.set("after-crash", &round.to_string()).await.expect("kv set");
    assert!(store.integrity_check().await.expect("integrity_check after writes"));
    store.close().await.expect("close");
    eprintln!("round {round}: ok ({} approved requests checked, {} idempotency entries)", approved.len(), keys.len());
}

#[test]
fn killed_writer_leaves_a_usable_database() {
    let dir = tempfile::tempdir().expect("tempdir");
    let runtime = tokio::runtime::Builder::new_current_thread().enable_all().build().expect("runtime");
    let mut round = 0;

    // Fresh databases, killed early: during process start-up, file creation and migrations.
    for delay_ms in [0, 5, 15, 40, 80] {
        let db: PathBuf = dir.path().join(format!("fresh-{delay_ms}/gateway.db"));
        HARNESS.run_and_kill(&db, round, KillAt::AfterSpawn(Duration::from_millis(delay_ms)));
        runtime.block_on(check_usable(&db, round));
        round += 1;
    }

    // One database that lives through every crash, killed at different amounts of work.
    let shared = dir.path().join("state/gateway.db");
    for target in [0, 1, 10, 60, 150, 7, 300] {
        HARNESS.run_and_kill(&shared, round, KillAt::AfterIterations(target));
        runtime.block_on(check_usable(&shared, round));
        round += 1;
    }
}
