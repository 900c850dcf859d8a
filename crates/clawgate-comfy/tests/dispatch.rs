//! The worker pool and the dispatcher against fake ComfyUI servers on loopback, with an
//! in-memory job store: failing over to the next worker, and reconciling after a restart.

use std::collections::HashMap;
use std::future::Future;
use std::path::Path;
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;

use serde_json::{Value, json};
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

use clawgate_comfy::client::ComfyClient;
use clawgate_comfy::dispatch::{Dispatcher, JobChange, JobHost, OutputLimits, WorkerLeases};
use clawgate_comfy::pool::{Pool, WorkerConfig};
use clawgate_config::SecretUrl;
use clawgate_store::{JobRecord, JobStatus, JobStore, NewJob, SqliteStore};
use clawgate_testkit::fake_comfy::FakeComfy;
use clawgate_testkit::wait::wait_until;

const WAIT: Duration = Duration::from_secs(20);

/// Per job, the output file names delivered.
type Deliveries = Arc<Mutex<Vec<(String, Vec<String>)>>>;

/// What the gateway would do, recorded: the changes told to clients and the deliveries.
#[derive(Clone)]
struct TestHost {
    store: SqliteStore,
    tasks: TaskTracker,
    cancel: CancellationToken,
    changes: Arc<Mutex<Vec<(String, JobChange)>>>,
    delivered: Deliveries,
}

impl TestHost {
    async fn new() -> Self {
        Self::on(SqliteStore::open_in_memory().await.expect("in-memory store"))
    }

    /// Another gateway's host on the same job store.
    fn on(store: SqliteStore) -> Self {
        Self {
            store,
            tasks: TaskTracker::new(),
            cancel: CancellationToken::new(),
            changes: Arc::default(),
            delivered: Arc::default(),
        }
    }

    /// The output file names delivered for `job_id`, once delivered.
    fn delivered(&self, job_id: &str) -> Option<Vec<String>> {
        let delivered = self.delivered.lock().unwrap_or_else(PoisonError::into_inner);
        delivered.iter().find(|(id, _)| id == job_id).map(|(_, files)| files.clone())
    }

    fn completed(&self, job_id: &str) -> bool {
        let changes = self.changes.lock().unwrap_or_else(PoisonError::into_inner);
        changes.iter().any(|(id, c)| id == job_id && *c == JobChange::Completed)
    }

    async fn stop(&self) {
        self.cancel.cancel();
        self.tasks.close();
        self.tasks.wait().await;
    }
}

impl JobHost for TestHost {
    type Jobs = SqliteStore;

    fn jobs(&self) -> &SqliteStore {
        &self.store
    }

    fn spawn(&self, task: impl Future<Output = ()> + Send + 'static) {
        self.tasks.spawn(task);
    }

    fn shutdown(&self) -> CancellationToken {
        self.cancel.clone()
    }

    async fn job_changed(&self, job: &JobRecord, change: JobChange) {
        self.changes.lock().unwrap_or_else(PoisonError::into_inner).push((job.id.clone(), change));
    }

    async fn deliver_text(&self, _job: &JobRecord, _key: &str, _text: &str) {}

    async fn deliver_outputs(&self, job: &JobRecord, _problems: &[String]) {
        let files = job
            .outputs
            .as_array()
            .into_iter()
            .flatten()
            .filter_map(|o| Some(o.get("filename")?.as_str()?.to_owned()))
            .collect();
        self.delivered.lock().unwrap_or_else(PoisonError::into_inner).push((job.id.clone(), files));
    }
}

fn workflow(color: u32) -> Value {
    json!({
        "1": {"class_type": "EmptyImage", "inputs": {"width": 16, "height": 16, "batch_size": 1, "color": color}},
        "2": {"class_type": "SaveImage", "inputs": {"images": ["1", 0], "filename_prefix": "pool"}}
    })
}

fn worker(name: &str, fake: &FakeComfy) -> WorkerConfig {
    WorkerConfig {
        name: name.into(),
        url: SecretUrl::new(fake.base_url()),
        mode: "comfyui".into(),
        openclaw: None,
        max_concurrent: 1,
        weight: 1.0,
    }
}

fn dispatcher(host: &TestHost, workers: &[WorkerConfig], media: &Path) -> Dispatcher<TestHost> {
    let pool = Arc::new(Pool::new(workers, &media.join("no-templates"), "clawgate-test"));
    let limits = OutputLimits { media_dir: media.to_owned(), max_images: 8, max_bytes: 1 << 20 };
    Dispatcher::new(pool, host.clone(), limits)
}

fn new_job(id: &str, color: u32) -> NewJob {
    NewJob {
        id: id.into(),
        template_id: "solid".into(),
        inputs: json!({}),
        workflow: workflow(color),
        deliver_to: None,
        requested_by: None,
        approval_id: None,
        max_attempts: 3,
        status: JobStatus::Queued,
    }
}

async fn job(host: &TestHost, id: &str) -> JobRecord {
    host.store.get_job(id).await.expect("store").expect("job")
}

#[tokio::test]
async fn a_job_whose_worker_died_runs_on_the_next_worker() -> anyhow::Result<()> {
    let (first, second) = (FakeComfy::start().await?, FakeComfy::start().await?);
    let media = tempfile::tempdir()?;
    let host = TestHost::new().await;
    let d = dispatcher(&host, &[worker("first", &first), worker("second", &second)], media.path());
    d.start().await;
    assert!(d.pool().workers().iter().all(|w| w.healthy()), "both answered the first probe");

    // The first worker dies after its probe: the pool still thinks it healthy and tries it.
    first.kill();
    host.store.insert_job(&new_job("job_a", 0x00FF00), 0).await?;
    d.pool().kick();

    wait_until(WAIT, "the job completed", || async { host.completed("job_a").then_some(()) }).await?;
    let done = job(&host, "job_a").await;
    assert_eq!(done.status, JobStatus::Completed);
    assert_eq!(done.worker.as_deref(), Some("second"));
    assert_eq!(done.attempts, 2, "one try on the dead worker, one on the next");
    assert_eq!(second.completed_count(), 1);
    let dead = d.pool().worker("first").expect("first");
    assert!(!dead.healthy(), "the failed try marked it down");
    assert!(dead.summary().last_error.is_some());
    let files = host.delivered("job_a").expect("delivered");
    assert_eq!(files.len(), 1);
    assert!(media.path().join("job_a").join(&files[0]).is_file(), "the output is stored");
    host.stop().await;
    Ok(())
}

#[tokio::test]
async fn after_a_restart_a_finished_prompt_is_completed_and_a_lost_one_runs_again() -> anyhow::Result<()> {
    let fake = FakeComfy::start().await?;
    let media = tempfile::tempdir()?;
    let host = TestHost::new().await;
    let client = ComfyClient::new(&fake.base_url(), "previous-gateway")?;

    // A previous gateway started `job_done` on the worker and died before hearing it finish;
    // `job_lost` it recorded as running on a prompt the worker no longer knows.
    host.store.insert_job(&new_job("job_done", 0x0000FF), 0).await?;
    host.store.claim_next_queued("gpu", 1).await?.expect("claimed");
    let prompt = client.submit(&workflow(0x0000FF)).await?.prompt_id;
    client.wait_for(&prompt, WAIT, |_| {}).await?;
    host.store.set_job_running("job_done", &prompt, 2).await?;
    host.store.insert_job(&new_job("job_lost", 0xFF0000), 3).await?;
    host.store.claim_next_queued("gpu", 4).await?.expect("claimed");
    host.store.set_job_running("job_lost", "prompt-from-before-a-worker-restart", 5).await?;

    let d = dispatcher(&host, &[worker("gpu", &fake)], media.path());
    d.start().await;

    wait_until(WAIT, "both jobs completed", || async {
        (host.completed("job_done") && host.completed("job_lost")).then_some(())
    })
    .await?;
    let done = job(&host, "job_done").await;
    assert_eq!((done.status, done.attempts), (JobStatus::Completed, 1), "followed, not run again");
    assert_eq!(done.prompt_id.as_deref(), Some(prompt.as_str()));
    let lost = job(&host, "job_lost").await;
    assert_eq!((lost.status, lost.attempts), (JobStatus::Completed, 2), "requeued and run again");
    assert_eq!(fake.submitted().len(), 2, "the finished prompt was not submitted again");
    assert!(host.delivered("job_done").is_some_and(|f| f.len() == 1));
    host.stop().await;
    Ok(())
}

/// A config reload swaps the pool: an unchanged worker is carried over (same health, same
/// running count), a job running on a removed worker is still found there and followed to its
/// end, and queued jobs run on the new pool.
#[tokio::test]
async fn a_replaced_pool_keeps_unchanged_workers_and_follows_a_removed_ones_job_to_its_end() -> anyhow::Result<()> {
    let (a, b, c) = (FakeComfy::start().await?, FakeComfy::start().await?, FakeComfy::start().await?);
    a.set_paused(true);
    let media = tempfile::tempdir()?;
    let host = TestHost::new().await;
    let d = dispatcher(&host, &[worker("a", &a)], media.path());
    d.start().await;
    host.store.insert_job(&new_job("job_a", 1), 0).await?;
    d.pool().kick();
    wait_until(WAIT, "job_a runs on a", || async {
        (job(&host, "job_a").await.status == JobStatus::Running).then_some(())
    })
    .await?;

    // a leaves the config, b and c come in.
    let limits = OutputLimits { media_dir: media.path().to_owned(), max_images: 8, max_bytes: 1 << 20 };
    let (pool, problems) =
        Pool::rebuild(Some(&d.pool()), &[worker("b", &b), worker("c", &c)], &media.path().join("x"), "t");
    assert!(problems.is_empty(), "{problems:?}");
    d.replace_pool(Arc::new(pool), limits.clone()).await;
    assert!(d.pool().worker("a").is_none(), "a is not in the pool");
    assert_eq!(d.retired_workers().len(), 1, "a still runs job_a");
    assert!(d.worker("a").is_some(), "and is found for it");

    // A queued job runs on the new pool.
    host.store.insert_job(&new_job("job_b", 2), 0).await?;
    d.pool().kick();
    wait_until(WAIT, "job_b completed", || async { host.completed("job_b").then_some(()) }).await?;
    assert_ne!(job(&host, "job_b").await.worker.as_deref(), Some("a"));

    // The job on the removed worker is followed to its end there; then a is let go.
    a.set_paused(false);
    wait_until(WAIT, "job_a completed", || async { host.completed("job_a").then_some(()) }).await?;
    assert_eq!(job(&host, "job_a").await.worker.as_deref(), Some("a"));
    wait_until(WAIT, "a is let go", || async { d.retired_workers().is_empty().then_some(()) }).await?;

    // An unchanged worker is the same worker after another reload; a changed one is new.
    let before = d.pool().worker("b").expect("b");
    let mut changed_c = worker("c", &c);
    changed_c.weight = 2.0;
    let (pool, _) = Pool::rebuild(Some(&d.pool()), &[worker("b", &b), changed_c], &media.path().join("x"), "t");
    d.replace_pool(Arc::new(pool), limits).await;
    assert!(Arc::ptr_eq(&before, &d.pool().worker("b").expect("b")), "b carried over");
    assert_eq!(d.pool().worker("c").expect("c").cfg.weight, 2.0);
    host.stop().await;
    Ok(())
}

/// A worker that joined by itself (`clawgate worker`), as the gateway's methods drive it.
fn join(d: &Dispatcher<TestHost>, name: &str, conn: &str) -> Arc<clawgate_comfy::joined::JoinedLink> {
    let req = clawgate_comfy::joined::JoinRequest {
        name: name.into(),
        conn_id: conn.into(),
        comfy_version: Some("0.3.64".into()),
        templates: None,
        capacity: 1,
    };
    let (worker, _) = d.join(req).expect("joined");
    worker.link().expect("a joined worker has a link").clone()
}

#[tokio::test]
async fn a_joined_workers_job_is_requeued_when_it_leaves_and_completes_once_elsewhere() -> anyhow::Result<()> {
    let media = tempfile::tempdir()?;
    let host = TestHost::new().await;
    let d = dispatcher(&host, &[], media.path());
    d.start().await;
    let first = join(&d, "gpu1", "c1");
    host.store.insert_job(&new_job("job_a", 0), 0).await?;
    d.pool().kick();

    let given = first.pull(WAIT).await.expect("the joined worker gets the job");
    assert_eq!((given.job_id.as_str(), given.attempt, given.tag.as_str()), ("job_a", 1, "job_a-1"));
    assert_eq!(given.workflow, workflow(0));
    first.started("job_a", 1, "p1")?;
    first.progress("job_a", 1, json!({"value": 1, "max": 4}))?;
    wait_until(WAIT, "running on gpu1", || async {
        let j = job(&host, "job_a").await;
        (j.status == JobStatus::Running && j.progress == Some(json!({"value": 1, "max": 4}))).then_some(())
    })
    .await?;
    assert_eq!(job(&host, "job_a").await.worker.as_deref(), Some("gpu1"));

    // Its socket closes: the job goes back to the queue and to the next worker, attempt 2.
    d.leave("gpu1", "c1");
    let second = join(&d, "gpu2", "c2");
    let again = second.pull(WAIT).await.expect("requeued to the other worker");
    assert_eq!(again.attempt, 2);
    assert!(first.done("job_a", 1, Ok(())).is_err(), "the first worker's late completion does not count");
    second.started("job_a", 2, "p2")?;
    assert_eq!(second.output("job_a", 2, "out.png", 0, b"\x89PNG-part-1", false)?, 11);
    second.output("job_a", 2, "out.png", 11, b"-part-2", true)?;
    second.done("job_a", 2, Ok(()))?;
    wait_until(WAIT, "completed", || async { host.completed("job_a").then_some(()) }).await?;
    let done = job(&host, "job_a").await;
    assert_eq!((done.status, done.attempts, done.worker.as_deref()), (JobStatus::Completed, 2, Some("gpu2")));
    assert_eq!(host.delivered("job_a"), Some(vec!["out.png".to_owned()]));
    assert_eq!(std::fs::read(media.path().join("job_a").join("out.png"))?, b"\x89PNG-part-1-part-2");
    assert!(second.done("job_a", 2, Ok(())).is_err(), "completion counts once");

    // A cancelled job is taken back: the worker's next report is refused, so it interrupts.
    host.store.insert_job(&new_job("job_b", 0), 10).await?;
    d.pool().kick();
    let b = second.pull(WAIT).await.expect("the next job");
    second.started(&b.job_id, b.attempt, "p3")?;
    wait_until(WAIT, "job_b running", || async {
        (job(&host, "job_b").await.status == JobStatus::Running).then_some(())
    })
    .await?;
    d.cancel("job_b").await?;
    assert!(!second.progress_allowed("job_b", b.attempt));
    assert_eq!(job(&host, "job_b").await.status, JobStatus::Cancelled);
    assert!(second.done("job_b", b.attempt, Ok(())).is_err());
    host.stop().await;
    Ok(())
}

/// One gateway's view of the cluster's worker leases, set by the test: granted and revoked by
/// hand, as the cluster's lease table would on expiry.
#[derive(Default)]
struct HandLeases {
    held: Mutex<HashMap<String, tokio::sync::watch::Sender<bool>>>,
}

impl HandLeases {
    fn set(&self, name: &str, held: bool) {
        let mut map = self.held.lock().unwrap_or_else(PoisonError::into_inner);
        map.entry(name.to_owned()).or_insert_with(|| tokio::sync::watch::channel(false).0).send_replace(held);
    }

    /// The leases somebody still follows (a receiver lives), by name: what the cluster keeps
    /// asking for; the others it lets go.
    fn followed(&self) -> Vec<String> {
        let map = self.held.lock().unwrap_or_else(PoisonError::into_inner);
        let mut names: Vec<String> =
            map.iter().filter(|(_, tx)| tx.receiver_count() > 0).map(|(name, _)| name.clone()).collect();
        names.sort();
        names
    }
}

impl WorkerLeases for HandLeases {
    fn hold(&self, name: &str) -> tokio::sync::watch::Receiver<bool> {
        let mut map = self.held.lock().unwrap_or_else(PoisonError::into_inner);
        map.entry(name.to_owned()).or_insert_with(|| tokio::sync::watch::channel(false).0).subscribe()
    }
}

fn leased(host: &TestHost, workers: &[WorkerConfig], media: &Path, leases: &Arc<HandLeases>) -> Dispatcher<TestHost> {
    let pool = Arc::new(Pool::new(workers, &media.join("no-templates"), "clawgate-test"));
    let limits = OutputLimits { media_dir: media.to_owned(), max_images: 8, max_bytes: 1 << 20 };
    Dispatcher::with_leases(pool, host.clone(), limits, leases.clone())
}

/// Two gateways on one job queue: only the holder of a worker's lease gives it jobs; when the
/// leases move (the holder died), the new holder follows the jobs left running on the workers to
/// their end and runs the rest — every job submitted to ComfyUI once and completed once.
#[tokio::test]
async fn worker_leases_move_between_gateways_and_every_job_runs_once() -> anyhow::Result<()> {
    let slow = || FakeComfy::builder().job_duration(Duration::from_millis(300)).start();
    let (w0, w1) = (slow().await?, slow().await?);
    let media = tempfile::tempdir()?;
    let a = TestHost::new().await;
    let b = TestHost::on(a.store.clone());
    let workers = [worker("w0", &w0), worker("w1", &w1)];
    let (la, lb) = (Arc::new(HandLeases::default()), Arc::new(HandLeases::default()));
    let da = leased(&a, &workers, media.path(), &la);
    let db = leased(&b, &workers, media.path(), &lb);
    da.start().await;
    db.start().await;
    for w in ["w0", "w1"] {
        la.set(w, true);
    }
    let ids: Vec<String> = (0..6).map(|i| format!("job_{i}")).collect();
    for (i, id) in ids.iter().enumerate() {
        a.store.insert_job(&new_job(id, i as u32), 0).await?;
    }
    da.pool().kick();
    db.pool().kick();

    wait_until(WAIT, "gateway a runs jobs on both workers", || async {
        (w0.running_id().is_some() && w1.running_id().is_some()).then_some(())
    })
    .await?;
    assert!(db.pool().workers().iter().all(|w| !w.driven()), "b drives nothing without the leases");
    // a "dies": its leases expire and b takes them.
    for w in ["w0", "w1"] {
        la.set(w, false);
    }
    wait_until(WAIT, "a stops driving", || async {
        da.pool().workers().iter().all(|w| !w.driven() && w.running() == 0).then_some(())
    })
    .await?;
    for w in ["w0", "w1"] {
        lb.set(w, true);
    }
    wait_until(WAIT, "every job completed", || async {
        for id in &ids {
            if job(&a, id).await.status != JobStatus::Completed {
                return None;
            }
        }
        Some(())
    })
    .await?;
    let submitted: Vec<SubmittedTag> = w0.submitted().iter().chain(w1.submitted().iter()).map(tag).collect();
    for id in &ids {
        let n = submitted.iter().filter(|t| t.job == *id).count();
        assert_eq!(n, 1, "job {id} went to ComfyUI once: {submitted:?}");
        let deliveries = [a.delivered(id).is_some(), b.delivered(id).is_some()];
        assert_eq!(deliveries.iter().filter(|d| **d).count(), 1, "job {id} delivered once: {deliveries:?}");
    }
    assert!(ids.iter().any(|id| b.completed(id)), "b finished the jobs a left");
    a.stop().await;
    b.stop().await;
    Ok(())
}

#[derive(Debug)]
struct SubmittedTag {
    job: String,
}

/// The job a submitted prompt belongs to, from the attempt tag in its `extra_data`.
fn tag(p: &clawgate_testkit::fake_comfy::SubmittedPrompt) -> SubmittedTag {
    let text = p.extra_data.to_string();
    let job = (0..6).map(|i| format!("job_{i}")).find(|id| text.contains(&format!("{id}-"))).unwrap_or_default();
    SubmittedTag { job }
}

/// The dispatcher follows a worker's lease only while it may drive that worker: it drops its
/// receiver — so the cluster lets the lease go — when the worker leaves the config, and every
/// one when it stops (ComfyUI removed from the config).
#[tokio::test]
async fn the_dispatcher_lets_a_workers_lease_go_when_the_worker_leaves_or_it_stops() -> anyhow::Result<()> {
    let (w0, w1) = (FakeComfy::start().await?, FakeComfy::start().await?);
    let media = tempfile::tempdir()?;
    let host = TestHost::new().await;
    let leases = Arc::new(HandLeases::default());
    let d = leased(&host, &[worker("w0", &w0), worker("w1", &w1)], media.path(), &leases);
    d.start().await;
    for w in ["w0", "w1"] {
        leases.set(w, true);
    }
    wait_until(WAIT, "both workers driven", || async { d.pool().workers().iter().all(|w| w.driven()).then_some(()) })
        .await?;
    assert_eq!(leases.followed(), ["w0", "w1"]);

    // w1 leaves the config.
    let limits = OutputLimits { media_dir: media.path().to_owned(), max_images: 8, max_bytes: 1 << 20 };
    let (pool, problems) = Pool::rebuild(Some(&d.pool()), &[worker("w0", &w0)], &media.path().join("x"), "t");
    assert!(problems.is_empty(), "{problems:?}");
    d.replace_pool(Arc::new(pool), limits).await;
    wait_until(WAIT, "w1's lease let go, w0's kept", || async { (leases.followed() == ["w0"]).then_some(()) }).await?;

    d.stop();
    wait_until(WAIT, "every lease let go", || async { leases.followed().is_empty().then_some(()) }).await?;
    host.stop().await;
    Ok(())
}
