//! `clawgate_store::copy` from a SQLite file into a real PostgreSQL (`TestPostgres`; skipped with
//! the reason printed when PostgreSQL is not installed, unless `CLAWGATE_REQUIRE_PEERS` is set):
//! the copy verifies, ids carry on past the source's, a limited run resumes to the same result,
//! a changed target row is named by the verification and repaired by the next pass, and a
//! target holding another source's copy (or in use by another copy) is refused.

use std::path::Path;

use clawgate_store::copy::{Copier, CopyError, CopyOptions, CopyOutcome, TableCheck};
use clawgate_store::{
    AccessTokenStore, ChannelStore, DeviceStore, DeviceTokenStore, EntryStatus, JobStatus, JobStore, KvStore,
    NewAccessToken, NewJob, NewOutbound, PairedDevice, PgStore, SessionStore, SqliteStore, TranscriptRole,
    TranscriptStore,
};
use clawgate_testkit::TestPostgres;
use serde_json::json;

fn database() -> Option<String> {
    let server = TestPostgres::shared()?;
    Some(server.create_database().expect("create a database"))
}

/// A state file with a bit of everything: settings, a device and its token, two sessions with
/// turns (usage included), inbound and outbound channel rows, a job with a delivered output, an
/// access token; then the oldest channel rows pruned, so SQLite's id counter is past its max id.
async fn fill(path: &Path, sessions: usize) -> SqliteStore {
    let store = SqliteStore::open(path).await.expect("open sqlite");
    store.set("gateway.token", "tok-123").await.expect("kv");
    store
        .upsert_paired(&PairedDevice {
            device_id: "dev-1".into(),
            public_key: "pk".into(),
            display_name: Some("laptop".into()),
            platform: None,
            device_family: None,
            client_id: None,
            client_mode: None,
            roles: vec!["operator".into()],
            scopes: vec!["operator.read".into()],
            approved_via: "cli".into(),
            created_at_ms: 1,
            approved_at_ms: 2,
            last_seen_at_ms: None,
        })
        .await
        .expect("pair");
    store.issue("dev-1", "operator", &["operator.read".into()], 3).await.expect("device token");
    for s in 0..sessions {
        let key = format!("agent:main:s{s}");
        let session = store.ensure_session(&key, "main", 10).await.expect("session");
        for turn in 0..3 {
            let at = 100 + i64::try_from(s * 10 + turn).expect("small");
            store
                .append(
                    &session.session_id,
                    TranscriptRole::User,
                    &json!({"text": format!("q{turn}")}),
                    None,
                    EntryStatus::Final,
                    at,
                )
                .await
                .expect("user");
            // Keys out of order and a float: PostgreSQL's jsonb respells both.
            let reply = json!({"usage": {"output": 7, "input": 5}, "text": format!("a{turn}"), "model": "m", "provider": "p", "temp": 0.5});
            store
                .append(&session.session_id, TranscriptRole::Assistant, &reply, Some("run"), EntryStatus::Final, at + 1)
                .await
                .expect("assistant");
        }
    }
    for m in 0..4 {
        let id = store
            .record_inbound("telegram", "default", &format!("m{m}"), "chat-1", "u1", &json!({"text": "hi"}), 1_000 + m)
            .await
            .expect("inbound")
            .expect("new");
        let reply = NewOutbound {
            idempotency_key: format!("reply-{id}"),
            channel: "telegram".into(),
            account: "default".into(),
            chat_id: "chat-1".into(),
            payload: json!({"text": "hello"}),
        };
        store.queue_outbound(&[reply], Some(id), 1_000 + m).await.expect("outbound");
    }
    let job = store
        .insert_job(
            &NewJob {
                id: "job_1".into(),
                template_id: "txt2img".into(),
                inputs: json!({"prompt": "a cat"}),
                workflow: json!({"3": {"class_type": "KSampler"}}),
                deliver_to: None,
                requested_by: None,
                approval_id: None,
                max_attempts: 2,
                status: JobStatus::Queued,
            },
            2_000,
        )
        .await
        .expect("job");
    store.mark_output_delivered(&job.id, "out.png", 2_001).await.expect("delivery");
    store
        .create_access_token(
            &NewAccessToken {
                name: "compose".into(),
                scopes: vec!["operator.write".into()],
                sessions: vec!["compose:*".into()],
                methods: vec![],
                rate_requests: Some(10),
                rate_per_ms: Some(1_000),
            },
            3_000,
        )
        .await
        .expect("access token");
    // Every channel row is older than this: pruned, so ids 1..=4 are gone but never reused.
    store.prune_channel_rows(i64::MAX).await.expect("prune");
    store
}

async fn copy_all(source: &Path, url: &str, options: CopyOptions) -> CopyOutcome {
    let copier = Copier::open(source, url).await.expect("open copier");
    copier.prepare().await.expect("prepare");
    let outcome = copier.copy(options, &mut |_| {}).await.expect("copy");
    copier.close().await;
    outcome
}

async fn verify(source: &Path, url: &str) -> Vec<TableCheck> {
    let copier = Copier::open(source, url).await.expect("open copier");
    let checks = copier.verify(100, &mut |_| {}).await.expect("verify");
    copier.close().await;
    checks
}

fn mismatched(checks: &[TableCheck]) -> Vec<&'static str> {
    checks.iter().filter(|c| !c.matches()).map(|c| c.table).collect()
}

#[tokio::test]
async fn a_copy_verifies_and_the_target_carries_on_past_the_source_ids() {
    let Some(url) = database() else { return };
    let dir = tempfile::tempdir().expect("tempdir");
    let path = dir.path().join("clawgate.db");
    let sqlite = fill(&path, 2).await;

    let outcome = copy_all(&path, &url, CopyOptions { batch: 4, limit: None }).await;
    assert!(matches!(outcome, CopyOutcome::Complete { .. }), "{outcome:?}");
    let checks = verify(&path, &url).await;
    assert!(mismatched(&checks).is_empty(), "{checks:#?}");
    let usage = checks.iter().find(|c| c.table == "turn_usage").and_then(|c| c.target).expect("turn_usage");
    assert_eq!(usage.rows, 6, "one usage row per assistant entry, none added by the target's trigger");

    let pg = PgStore::open(&url).await.expect("open postgres");
    assert_eq!(pg.get("gateway.token").await.expect("kv").as_deref(), Some("tok-123"));
    assert!(pg.verify("dev-1", "nonsense").await.expect("verify token").is_none());
    // A new inbound row on PostgreSQL gets an id past SQLite's counter (4, all pruned).
    let id = pg
        .record_inbound("telegram", "default", "m-new", "chat-1", "u1", &json!({"text": "hi"}), 5_000)
        .await
        .expect("inbound")
        .expect("new");
    assert!(id > 4, "ids are never reused: {id}");
    let session = pg.get_session("agent:main:s0").await.expect("get").expect("session");
    let tail = pg.tail(&session.session_id, 10, None).await.expect("tail");
    assert_eq!(tail.len(), 6);
    let entry = pg
        .append(
            &session.session_id,
            TranscriptRole::User,
            &json!({"text": "on postgres"}),
            None,
            EntryStatus::Final,
            9_000,
        )
        .await
        .expect("append after the copy");
    assert_eq!(entry.seq, 7);
    assert_eq!(
        pg.tail(&session.session_id, 10, None).await.expect("tail").last().map(|e| e.content.clone()),
        Some(json!({"text": "on postgres"}))
    );
    pg.close().await.expect("close");
    sqlite.close().await.expect("close");
}

#[tokio::test]
async fn a_limited_copy_resumes_to_the_same_checksums_as_one_run() {
    let Some(straight) = database() else { return };
    let Some(resumed) = database() else { return };
    let dir = tempfile::tempdir().expect("tempdir");
    let path = dir.path().join("clawgate.db");
    fill(&path, 3).await.close().await.expect("close");

    copy_all(&path, &straight, CopyOptions { batch: 5, limit: None }).await;
    let mut stops = 0;
    loop {
        match copy_all(&path, &resumed, CopyOptions { batch: 3, limit: Some(7) }).await {
            CopyOutcome::Stopped { rows } => {
                assert_eq!(rows, 7);
                stops += 1;
            }
            CopyOutcome::Complete { .. } => break,
        }
        assert!(stops < 100, "the copy never finishes");
    }
    assert!(stops >= 3, "the copy was really cut into pieces: {stops}");
    let one = verify(&path, &straight).await;
    let pieces = verify(&path, &resumed).await;
    assert!(mismatched(&pieces).is_empty(), "{pieces:#?}");
    assert_eq!(one, pieces, "the same rows and digests either way");
}

#[tokio::test]
async fn a_changed_target_row_is_named_and_the_next_pass_repairs_it_and_catches_up() {
    let Some(url) = database() else { return };
    let dir = tempfile::tempdir().expect("tempdir");
    let path = dir.path().join("clawgate.db");
    let sqlite = fill(&path, 2).await;
    copy_all(&path, &url, CopyOptions::default()).await;

    let pg = PgStore::open(&url).await.expect("open postgres");
    pg.patch_session("agent:main:s1", &json!({"label": "tampered"}), 1).await.expect("tamper");
    pg.close().await.expect("close");
    assert_eq!(mismatched(&verify(&path, &url).await), vec!["sessions"]);

    // The source moves on too (as under a running gateway): a new turn, a deleted session.
    let s0 = sqlite.get_session("agent:main:s0").await.expect("get").expect("s0");
    sqlite
        .append(&s0.session_id, TranscriptRole::User, &json!({"text": "later"}), None, EntryStatus::Final, 5_000)
        .await
        .expect("append");
    sqlite.delete_session("agent:main:s1", true).await.expect("delete");
    let stale = mismatched(&verify(&path, &url).await);
    assert!(stale.contains(&"transcript_entries") && stale.contains(&"sessions"), "{stale:?}");

    copy_all(&path, &url, CopyOptions { batch: 2, limit: None }).await;
    let checks = verify(&path, &url).await;
    assert!(mismatched(&checks).is_empty(), "{checks:#?}");
    sqlite.close().await.expect("close");
}

#[tokio::test]
async fn a_target_holding_another_copy_or_other_data_is_refused() {
    let Some(url) = database() else { return };
    let Some(used) = database() else { return };
    let dir = tempfile::tempdir().expect("tempdir");
    let first = dir.path().join("first.db");
    let second = dir.path().join("second.db");
    fill(&first, 1).await.close().await.expect("close");
    fill(&second, 1).await.close().await.expect("close");
    copy_all(&first, &url, CopyOptions::default()).await;

    let running = Copier::open(&first, &url).await.expect("open");
    let refused = Copier::open(&first, &url).await.expect_err("a second copy at once");
    assert!(refused.to_string().contains("another clawgate store copy"), "{refused}");
    running.close().await;

    let copier = Copier::open(&second, &url).await.expect("open");
    let refused = copier.prepare().await.expect_err("another source");
    assert!(matches!(refused, CopyError::Refused(_)), "{refused:?}");
    assert!(refused.to_string().contains("first.db"), "names the copy it holds: {refused}");
    copier.close().await;

    let pg = PgStore::open(&used).await.expect("open");
    pg.ensure_session("agent:main:own", "main", 1).await.expect("session");
    pg.close().await.expect("close");
    let copier = Copier::open(&first, &used).await.expect("open");
    let refused = copier.prepare().await.expect_err("data of its own");
    assert!(refused.to_string().contains("sessions"), "names the table: {refused}");
    copier.close().await;
}

/// A copy killed between two tables (the first finished, the next not begun) continues with the
/// next table on the following run instead of starting the pass over.
#[tokio::test]
async fn a_copy_killed_between_two_tables_continues_with_the_next() {
    let Some(url) = database() else { return };
    let dir = tempfile::tempdir().expect("tempdir");
    let path = dir.path().join("clawgate.db");
    fill(&path, 1).await.close().await.expect("close");
    // kv (one row) finishes, paired_devices (one row) is begun: then the run stops.
    let outcome = copy_all(&path, &url, CopyOptions { batch: 100, limit: Some(2) }).await;
    assert_eq!(outcome, CopyOutcome::Stopped { rows: 2 });
    // As if killed right after kv's last batch: paired_devices has no progress yet.
    let pg = PgStore::open(&url).await.expect("open postgres");
    pg.delete_prefix("clawgate.copy.table.paired_devices").await.expect("forget the begun table");
    pg.close().await.expect("close");

    let copier = Copier::open(&path, &url).await.expect("open copier");
    let mut progressed = Vec::new();
    let outcome = copier
        .copy(CopyOptions::default(), &mut |event| {
            if let clawgate_store::copy::CopyEvent::Progress { table, .. } = event {
                progressed.push(table.to_owned());
            }
        })
        .await
        .expect("copy");
    copier.close().await;
    assert!(matches!(outcome, CopyOutcome::Complete { .. }), "{outcome:?}");
    assert!(!progressed.contains(&"kv".to_owned()), "kv was finished and is not copied again: {progressed:?}");
    assert!(progressed.contains(&"paired_devices".to_owned()), "{progressed:?}");
    let checks = verify(&path, &url).await;
    assert!(mismatched(&checks).is_empty(), "{checks:#?}");
}
