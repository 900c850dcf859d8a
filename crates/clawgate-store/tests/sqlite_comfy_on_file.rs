//! What only a database file can show for the ComfyUI and cron tables: a claimed cron slot and
//! a delivery mark stay claimed across reopening the database, and across two stores open on it
//! at once. (Their conformance cases run in `sqlite_conformance.rs`.)

use std::path::Path;

use clawgate_store::{CronJob, CronStore, JobStatus, JobStore, NewJob, SqliteStore};
use serde_json::json;

async fn on_file(path: &Path) -> SqliteStore {
    SqliteStore::open(path).await.expect("open file store")
}

const T0: i64 = 1_700_000_000_000;

fn daily() -> CronJob {
    CronJob {
        id: "daily".to_owned(),
        name: "daily picture".to_owned(),
        schedule_kind: "cron".to_owned(),
        schedule: "0 9 * * *".to_owned(),
        anchor_ms: None,
        timezone: None,
        enabled: true,
        kind: "comfyRun".to_owned(),
        payload: json!({"templateId": "sdxl-basic"}),
        deliver_to: None,
        catch_up: "once".to_owned(),
        delete_after_run: false,
        created_at_ms: T0,
        updated_at_ms: T0,
        last_run_at_ms: None,
        last_status: None,
        next_run_at_ms: None,
    }
}

fn queued_job(id: &str) -> NewJob {
    NewJob {
        id: id.to_owned(),
        template_id: "sdxl-basic".to_owned(),
        inputs: json!({}),
        workflow: json!({}),
        deliver_to: None,
        requested_by: None,
        approval_id: None,
        max_attempts: 3,
        status: JobStatus::Queued,
    }
}

#[tokio::test]
async fn cron_slot_stays_claimed_across_reopen() {
    let dir = tempfile::tempdir().expect("tempdir");
    let path = dir.path().join("gateway.db");
    let store = on_file(&path).await;
    store.upsert_cron_job(&daily()).await.expect("upsert");
    assert!(store.claim_cron_slot("daily", T0 + 1_000, "run-1", T0 + 1_001).await.expect("claim"));
    store.close().await.expect("close");

    // The restarted scheduler sees the slot as taken, whether or not the run finished.
    let reopened = on_file(&path).await;
    assert!(!reopened.claim_cron_slot("daily", T0 + 1_000, "run-2", T0 + 5_000).await.expect("claim again"));
    assert_eq!(reopened.last_cron_slot("daily").await.expect("last"), Some(T0 + 1_000));
    let runs = reopened.list_cron_runs(Some("daily"), 10).await.expect("runs");
    assert_eq!(runs.iter().map(|r| r.run_id.as_str()).collect::<Vec<_>>(), ["run-1"]);
    assert!(reopened.claim_cron_slot("daily", T0 + 2_000, "run-3", T0 + 5_001).await.expect("next slot"));
    reopened.close().await.expect("close");
}

#[tokio::test]
async fn two_stores_on_one_file_claim_each_slot_and_job_once() {
    // Two pools on one database stand in for two gateway processes (or an old one still
    // shutting down while the new one starts).
    let dir = tempfile::tempdir().expect("tempdir");
    let path = dir.path().join("gateway.db");
    let first = on_file(&path).await;
    let second = on_file(&path).await;
    first.upsert_cron_job(&daily()).await.expect("upsert");
    for id in ["j1", "j2", "j3"] {
        first.insert_job(&queued_job(id), T0).await.expect("insert");
    }

    for slot in 0..20 {
        let slot_ms = T0 + slot * 60_000;
        let (a, b) = tokio::join!(
            first.claim_cron_slot("daily", slot_ms, "a", T0),
            second.claim_cron_slot("daily", slot_ms, "b", T0)
        );
        let (a, b) = (a.expect("claim a"), b.expect("claim b"));
        assert!(a != b, "slot {slot}: exactly one store wins (a={a}, b={b})");
    }
    assert_eq!(second.list_cron_runs(Some("daily"), 100).await.expect("runs").len(), 20);

    let mut claimed = Vec::new();
    for _ in 0..3 {
        let (a, b) = tokio::join!(first.claim_next_queued("wa", T0 + 1), second.claim_next_queued("wb", T0 + 1));
        claimed.extend(a.expect("claim a").into_iter().chain(b.expect("claim b")).map(|j| j.id));
    }
    claimed.sort();
    assert_eq!(claimed, ["j1", "j2", "j3"], "every job claimed exactly once");

    let (a, b) = tokio::join!(
        first.mark_output_delivered("j1", "out.png", T0 + 2),
        second.mark_output_delivered("j1", "out.png", T0 + 2)
    );
    assert!(a.expect("mark a") != b.expect("mark b"), "exactly one store marks the output");
    first.close().await.expect("close");
    second.close().await.expect("close");
}
