//! A service written against the capability traits, not against SQLite, running on an
//! in-memory store: the shape core's services take (`struct Service<S> { store: S }`), checked
//! to compile where it matters — the trait futures are `Send`, so a generic service can hand
//! store calls to `tokio::spawn` — and to behave on `SqliteStore::open_in_memory()`.

use clawgate_store::{CronJob, CronStore, JobStatus, JobStore, NewJob, Result, SqliteStore};
use serde_json::json;

const T0: i64 = 1_700_000_000_000;

/// A toy scheduler that needs two capabilities and nothing else of the store.
#[derive(Clone)]
struct Scheduler<S> {
    store: S,
}

impl<S> Scheduler<S>
where
    S: CronStore + JobStore + Clone + 'static,
{
    /// Claims `slot_ms` of `job_id` on a spawned task and, when it won the slot, queues a job.
    async fn fire(&self, job_id: &str, slot_ms: i64) -> Result<bool> {
        let store = self.store.clone();
        let (job_id, run_id) = (job_id.to_owned(), format!("{job_id}@{slot_ms}"));
        tokio::spawn(async move {
            if !store.claim_cron_slot(&job_id, slot_ms, &run_id, slot_ms).await? {
                return Ok(false);
            }
            let job = NewJob {
                id: run_id,
                template_id: "t".to_owned(),
                inputs: json!({}),
                workflow: json!({}),
                deliver_to: None,
                requested_by: None,
                approval_id: None,
                max_attempts: 1,
                status: JobStatus::Queued,
            };
            store.insert_job(&job, slot_ms).await?;
            Ok(true)
        })
        .await
        .expect("scheduler task")
    }
}

fn nightly() -> CronJob {
    CronJob {
        id: "nightly".to_owned(),
        name: "nightly".to_owned(),
        schedule_kind: "cron".to_owned(),
        schedule: "0 3 * * *".to_owned(),
        anchor_ms: None,
        timezone: None,
        enabled: true,
        kind: "comfyRun".to_owned(),
        payload: json!({}),
        deliver_to: None,
        catch_up: "skip".to_owned(),
        delete_after_run: false,
        created_at_ms: T0,
        updated_at_ms: T0,
        last_run_at_ms: None,
        last_status: None,
        next_run_at_ms: None,
    }
}

#[tokio::test]
async fn generic_service_runs_on_an_in_memory_store() {
    let store = SqliteStore::open_in_memory().await.expect("open in-memory store");
    store.upsert_cron_job(&nightly()).await.expect("upsert");
    let scheduler = Scheduler { store: store.clone() };

    let (first, second) = tokio::join!(scheduler.fire("nightly", T0), scheduler.fire("nightly", T0));
    let (first, second) = (first.expect("fire"), second.expect("fire again"));
    assert!(first != second, "exactly one firing wins the slot");
    assert!(!scheduler.fire("nightly", T0).await.expect("refire"), "a claimed slot never fires again");
    assert!(scheduler.fire("nightly", T0 + 86_400_000).await.expect("next slot"));

    let queued = store.count_by_status().await.expect("counts")["queued"];
    assert_eq!(queued, 2, "one job per won slot");
}
