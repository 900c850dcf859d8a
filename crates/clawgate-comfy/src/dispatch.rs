//! Running jobs: the dispatcher, starting a prompt on a worker (natively or through the
//! ComfyUI-OpenClaw extension), following it to the end, storing its outputs, failing over, and
//! reconciling after a restart.
//!
//! ```text
//! job row `queued` → dispatcher: healthy worker with the least outstanding work per weight
//!   → POST /prompt → `running` (progress from ComfyUI's WS, /history polling as fallback)
//!   → outputs fetched from /view into <media>/<job>/ → delivered → `completed`
//! ```
//!
//! A worker that cannot be reached puts its job back in the queue (bounded attempts); after a
//! restart, jobs that were dispatched or running are checked against their worker's
//! `/history` ([`Dispatcher::reconcile`]).
//!
//! Every start carries the job's tag (`<job id>-<attempt>`): in `extra_data` for native
//! ComfyUI, as the idempotency key / trace id for the extension. A gateway that dies after the
//! worker accepted a prompt but before recording it finds that prompt again on restart (native:
//! searched in `/queue` and `/history`; extension: the same key is deduplicated to the same
//! prompt) instead of running the job twice.
//!
//! What the dispatcher needs of the gateway — the job store, its task tracker, telling clients
//! and delivering to chats — comes through [`JobHost`], which the core implements; nothing here
//! knows of sessions, channels or the gateway.

use std::future::Future;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use parking_lot::{Mutex, RwLock};
use serde_json::{Value, json};
use tokio_util::sync::CancellationToken;

use clawgate_store::{JobRecord, JobStatus, JobStore, NewJob, StoreError};

use clawgate_protocol::methods::comfy_worker::WorkerJob;

use crate::client::{ComfyError, ComfyEvent, HistoryEntry, JobStatus as ComfyStatus};
use crate::joined::{HEARTBEAT_EVERY, JoinRequest, Joined, JoinedLink, MISSED_HEARTBEATS, OutputBounds, Report};
use crate::openclaw::{BridgeSubmit, FireOutcome, OpenClawClient, OpenClawError};
use crate::pool::{Pool, Worker, WorkerError};

/// How long one job may run on a worker.
const JOB_TIMEOUT: Duration = Duration::from_secs(30 * 60);

/// How often a held job asks an `openclaw` worker whether its approval was decided.
const WORKER_APPROVAL_POLL: Duration = Duration::from_secs(1);

/// Tries of a bridge submit the extension rate-limited (429), waiting its `Retry-After`.
const RATE_LIMITED_TRIES: u32 = 3;

/// The dispatcher looks at the queue at least this often, even without a wake-up.
const IDLE_LOOK: Duration = Duration::from_secs(2);

/// What a job's change is, for the `comfy.job` event clients get.
#[derive(Debug, Clone, PartialEq)]
pub enum JobChange {
    /// Its status (or worker, or prompt) changed; the record says how.
    State,
    /// ComfyUI reported progress of its prompt.
    Progress(Value),
    /// Its worker holds it for an approval there (the worker's approval id).
    WorkerApproval(String),
    /// It failed (the reason).
    Failed(String),
    /// It completed; its outputs are in the record.
    Completed,
}

/// What the dispatcher needs of the gateway. Cheap to clone: a clone goes into every task the
/// dispatcher spawns.
pub trait JobHost: Clone + Send + Sync + 'static {
    /// The durable job queue.
    type Jobs: JobStore + 'static;

    /// The job store.
    fn jobs(&self) -> &Self::Jobs;

    /// Run `task` under the gateway's task tracker (shutdown waits for it).
    fn spawn(&self, task: impl Future<Output = ()> + Send + 'static);

    /// Cancelled when the gateway is stopping.
    fn shutdown(&self) -> CancellationToken;

    /// Tell clients about a job's change (`comfy.job`).
    fn job_changed(&self, job: &JobRecord, change: JobChange) -> impl Future<Output = ()> + Send;

    /// Deliver a notice about the job to where it asked its results to go (`job.deliver_to`),
    /// once per `key`.
    fn deliver_text(&self, job: &JobRecord, key: &str, text: &str) -> impl Future<Output = ()> + Send;

    /// Deliver a finished job's stored outputs (`job.outputs`: `{filename, path, bytes}` each)
    /// and a summary naming the `problems` (files that could not be fetched or kept), once.
    fn deliver_outputs(&self, job: &JobRecord, problems: &[String]) -> impl Future<Output = ()> + Send;

    /// A point where a test may kill the process (`CLAWGATE_CRASH_AT`); nothing by default.
    fn crash_point(&self, _point: &'static str) {}
}

/// The right to drive a worker, when several gateways share one job queue and one set of
/// workers: each configured worker is driven — probed, given jobs, its running jobs followed
/// and reconciled — by the one gateway that holds its lease. The core implements it over the
/// cluster's leases; without it (one gateway) every worker is driven.
pub trait WorkerLeases: Send + Sync + 'static {
    /// Ask for worker `name`'s lease and keep asking while a receiver of it lives: the receiver
    /// says whether this gateway holds it now. Asking again for a name already asked for gives
    /// the same state. When every receiver is dropped the lease is let go — which the
    /// dispatcher does when the worker leaves the config or the dispatcher stops (the worker's
    /// lease loop ends).
    fn hold(&self, name: &str) -> tokio::sync::watch::Receiver<bool>;
}

/// Where outputs go and how much of them.
#[derive(Debug, Clone)]
pub struct OutputLimits {
    /// Outputs are stored in `<media_dir>/<job id>/`.
    pub media_dir: PathBuf,
    /// Most images kept per job.
    pub max_images: usize,
    /// Largest image kept.
    pub max_bytes: u64,
}

/// Why starting or following a job failed, and whether another try can help.
#[derive(Debug)]
struct Failure {
    transient: bool,
    message: String,
}

impl From<ComfyError> for Failure {
    fn from(e: ComfyError) -> Self {
        Self { transient: e.is_transient(), message: e.to_string() }
    }
}

impl From<OpenClawError> for Failure {
    fn from(e: OpenClawError) -> Self {
        Self { transient: e.is_transient(), message: e.to_string() }
    }
}

/// A finished job's outputs as they are stored in `<media>/<job>/`, one file at a time, and the
/// files that could not be kept.
struct Outputs {
    limits: OutputLimits,
    dir: PathBuf,
    outputs: Vec<Value>,
    problems: Vec<String>,
}

impl Outputs {
    async fn new(limits: OutputLimits, job_id: &str) -> Self {
        let dir = limits.media_dir.join(job_id);
        let _ = tokio::fs::create_dir_all(&dir).await;
        Self { limits, dir, outputs: Vec::new(), problems: Vec::new() }
    }

    /// Store one file (its name made safe), or name why not.
    async fn keep(&mut self, filename: &str, bytes: &[u8]) {
        if bytes.len() as u64 > self.limits.max_bytes {
            return self.problems.push(format!(
                "{filename} is {} bytes, over the {}-byte limit",
                bytes.len(),
                self.limits.max_bytes
            ));
        }
        let safe: String =
            filename.chars().map(|c| if c.is_ascii_alphanumeric() || "._-".contains(c) { c } else { '_' }).collect();
        let path = self.dir.join(&safe);
        match tokio::fs::write(&path, bytes).await {
            Ok(()) => self.outputs.push(json!({"filename": safe, "path": path, "bytes": bytes.len()})),
            Err(e) => self.problems.push(format!("{filename}: cannot store: {e}")),
        }
    }
}

/// Runs the durable queue's jobs on the pool's workers. Cheap to clone.
pub struct Dispatcher<H> {
    inner: Arc<Inner<H>>,
}

struct Inner<H> {
    /// The workers in force; a config reload swaps in another ([`Dispatcher::replace_pool`]).
    pool: RwLock<Arc<Pool>>,
    /// Workers a reload removed or changed while a job of ours still ran on them: that job is
    /// followed to its end there, and a cancel still reaches it. Dropped once idle.
    retired: Mutex<Vec<Arc<Worker>>>,
    host: H,
    limits: RwLock<OutputLimits>,
    /// Ends the probes of the pool in force (a replaced pool's probes stop with it).
    probes: Mutex<CancellationToken>,
    /// Ends the queue loop and the probes for good ([`Dispatcher::stop`]); jobs already running
    /// are followed to their end.
    stop: CancellationToken,
    /// Workers that joined by themselves (`clawgate worker`); they outlive pool rebuilds.
    joined: Joined,
    /// Several gateways: configured workers are driven only under their lease.
    leases: Option<Arc<dyn WorkerLeases>>,
}

impl<H> Clone for Dispatcher<H> {
    fn clone(&self) -> Self {
        Self { inner: self.inner.clone() }
    }
}

impl<H> std::fmt::Debug for Dispatcher<H> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Dispatcher").field("pool", &*self.inner.pool.read()).finish_non_exhaustive()
    }
}

/// Milliseconds since the Unix epoch (the store's clock).
fn now_ms() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| i64::try_from(d.as_millis()).unwrap_or(i64::MAX))
        .unwrap_or(0)
}

/// This attempt's tag: in `extra_data` (native) or as the idempotency key and trace id
/// (extension). Fits the extension's trace-id pattern `[A-Za-z0-9_-]{1,64}`.
fn job_tag(job: &JobRecord) -> String {
    format!("{}-{}", job.id, job.attempts)
}

impl<H: JobHost> Dispatcher<H> {
    /// A dispatcher over `pool`'s workers.
    pub fn new(pool: Arc<Pool>, host: H, limits: OutputLimits) -> Self {
        Self::build(pool, host, limits, None)
    }

    /// A dispatcher of one gateway among several on one job queue: it drives a configured
    /// worker only while it holds that worker's lease.
    pub fn with_leases(pool: Arc<Pool>, host: H, limits: OutputLimits, leases: Arc<dyn WorkerLeases>) -> Self {
        Self::build(pool, host, limits, Some(leases))
    }

    fn build(pool: Arc<Pool>, host: H, limits: OutputLimits, leases: Option<Arc<dyn WorkerLeases>>) -> Self {
        if leases.is_some() {
            for w in pool.workers() {
                w.set_driven(false);
            }
        }
        let stop = host.shutdown().child_token();
        let probes = Mutex::new(stop.child_token());
        Self {
            inner: Arc::new(Inner {
                pool: RwLock::new(pool),
                retired: Mutex::default(),
                host,
                limits: RwLock::new(limits),
                probes,
                stop,
                joined: Joined::default(),
                leases,
            }),
        }
    }

    /// The workers in force.
    pub fn pool(&self) -> Arc<Pool> {
        self.inner.pool.read().clone()
    }

    /// The worker named `name`: in the pool in force, else one a reload retired while a job of
    /// ours still runs on it.
    pub fn worker(&self, name: &str) -> Option<Arc<Worker>> {
        self.pool()
            .worker(name)
            .or_else(|| self.inner.joined.worker(name))
            .or_else(|| self.inner.retired.lock().iter().find(|w| w.cfg.name == name).cloned())
    }

    /// The workers that joined by themselves.
    pub fn joined(&self) -> &Joined {
        &self.inner.joined
    }

    /// A worker joins by itself (`comfy.worker.join`); one of the same name is replaced (its
    /// jobs requeued). Wakes the queue: the new worker has room.
    pub fn join(&self, req: JoinRequest) -> Result<(Arc<Worker>, bool), WorkerError> {
        let name = req.name.clone();
        let joined = self.inner.joined.join(req, now_ms())?;
        tracing::info!(worker = %name, capacity = joined.0.cfg.max_concurrent, rejoined = joined.1,
            "ComfyUI worker joined");
        self.pool().kick();
        Ok(joined)
    }

    /// The worker `name` that joined on connection `conn_id` left (its socket closed): its jobs
    /// go back to the queue.
    pub fn leave(&self, name: &str, conn_id: &str) {
        if self.inner.joined.leave(name, conn_id) {
            tracing::warn!(worker = %name, "ComfyUI worker left; its jobs are requeued");
            self.pool().kick();
        }
    }

    /// Workers a reload retired that still run a job of ours (followed to its end there).
    pub fn retired_workers(&self) -> Vec<Arc<Worker>> {
        let mut retired = self.inner.retired.lock();
        retired.retain(|w| w.running() > 0);
        retired.clone()
    }

    /// Swap in the workers of a changed config without stopping anything: the new pool's
    /// workers are probed first, then it takes the queue — queued jobs stay queued and go to
    /// it. A job running on a worker the new pool no longer has (removed, or its URL, mode or
    /// credentials changed) is followed to its end on that worker; should the worker fail
    /// meanwhile, the job is requeued as on any worker failure and runs on the new pool.
    pub async fn replace_pool(&self, pool: Arc<Pool>, limits: OutputLimits) {
        if self.inner.leases.is_some() {
            // Driven once their lease says so (the lease loops of the new pool, below).
            for w in pool.workers() {
                w.set_driven(false);
            }
        } else {
            futures_util::future::join_all(pool.workers().iter().map(|w| pool.probe(w))).await;
        }
        let old = std::mem::replace(&mut *self.inner.pool.write(), pool.clone());
        *self.inner.limits.write() = limits;
        {
            let mut retired = self.inner.retired.lock();
            retired.retain(|w| w.running() > 0);
            for w in old.workers() {
                if w.running() > 0 && !pool.workers().iter().any(|n| Arc::ptr_eq(n, w)) {
                    tracing::info!(worker = %w.cfg.name, running = w.running(),
                        "ComfyUI worker left the config; its running jobs are followed to their end there");
                    retired.push(w.clone());
                }
            }
        }
        self.spawn_probes(&pool);
        // The queue loop may be waiting on the old pool's wake-up: ring it once, and the new one.
        old.kick();
        pool.kick();
    }

    /// New output limits (a config reload that left the workers as they were), for the jobs
    /// that finish from now on.
    pub fn replace_limits(&self, limits: OutputLimits) {
        *self.inner.limits.write() = limits;
    }

    /// Stop taking jobs from the queue and probing (ComfyUI removed from the config). Queued
    /// jobs stay queued; jobs running now are followed to their end.
    pub fn stop(&self) {
        // Under leases, this also ends every worker's lease loop: its receiver is dropped and
        // the lease let go.
        self.inner.stop.cancel();
    }

    /// Probe the pool's workers every few seconds until it is replaced or the dispatcher stops
    /// (under leases: each worker while its lease is held; the lease loops of a replaced pool
    /// end with its probes, so the lease of a worker that left the config is let go).
    fn spawn_probes(&self, pool: &Arc<Pool>) {
        let token = self.inner.stop.child_token();
        let old = std::mem::replace(&mut *self.inner.probes.lock(), token.clone());
        old.cancel();
        for w in pool.workers() {
            match &self.inner.leases {
                Some(leases) => {
                    let held = leases.hold(&w.cfg.name);
                    self.host().spawn(self.clone().follow_lease(pool.clone(), w.clone(), held, token.clone()));
                }
                None => self.host().spawn(pool.clone().probe_loop(w.clone(), token.clone())),
            }
        }
    }

    /// Drive worker `w` while its lease is held: on gaining it, probe the worker, follow what
    /// the previous holder left running or dispatched on it, and take jobs for it; on losing
    /// it, stop at once (the tasks following its jobs end; the next holder reconciles them).
    async fn follow_lease(
        self,
        pool: Arc<Pool>,
        w: Arc<Worker>,
        mut held: tokio::sync::watch::Receiver<bool>,
        cancel: CancellationToken,
    ) {
        let mut probes: Option<CancellationToken> = None;
        loop {
            let now_held = *held.borrow_and_update();
            if now_held && !w.driven() {
                w.set_driven(true);
                tracing::info!(worker = %w.cfg.name, "driving ComfyUI worker (its lease is ours)");
                pool.probe(&w).await;
                let token = cancel.child_token();
                self.host().spawn(pool.clone().probe_loop(w.clone(), token.clone()));
                probes = Some(token);
                self.reconcile_worker(&w).await;
                pool.kick();
            } else if !now_held && w.driven() {
                tracing::warn!(worker = %w.cfg.name, "lost the ComfyUI worker's lease; another gateway drives it now");
                w.set_driven(false);
                if let Some(token) = probes.take() {
                    token.cancel();
                }
            }
            tokio::select! {
                () = cancel.cancelled() => break,
                changed = held.changed() => if changed.is_err() { break },
            }
        }
        if let Some(token) = probes.take() {
            token.cancel();
        }
    }

    fn host(&self) -> &H {
        &self.inner.host
    }

    fn jobs(&self) -> &H::Jobs {
        self.inner.host.jobs()
    }

    /// Probe every worker once (all at once: a hung worker costs one probe timeout, not one
    /// per worker), keep probing them, reconcile what a previous run left dispatched or
    /// running, then run the queue — all under the host's tasks.
    pub async fn start(&self) {
        let pool = self.pool();
        if self.inner.leases.is_none() {
            futures_util::future::join_all(pool.workers().iter().map(|w| pool.probe(w))).await;
        }
        self.spawn_probes(&pool);
        if self.inner.leases.is_none() {
            // Under leases each worker's jobs are reconciled when its lease is gained.
            self.reconcile().await;
        }
        self.host().spawn(self.clone().run());
        self.host().spawn(self.clone().expire_silent_workers());
    }

    /// Give up on joined workers silent for [`MISSED_HEARTBEATS`] heartbeats: their jobs are
    /// requeued.
    async fn expire_silent_workers(self) {
        let cancel = self.inner.stop.clone();
        loop {
            tokio::select! {
                () = cancel.cancelled() => return,
                () = tokio::time::sleep(HEARTBEAT_EVERY) => {}
            }
            let silence = i64::try_from((HEARTBEAT_EVERY * MISSED_HEARTBEATS).as_millis()).unwrap_or(i64::MAX);
            for name in self.inner.joined.expire(now_ms() - silence) {
                tracing::warn!(worker = %name, "ComfyUI worker stopped heartbeating; its jobs are requeued");
                self.pool().kick();
            }
        }
    }

    /// Claim queued jobs for free workers until none is free or nothing is queued; then wait
    /// for a wake-up (or look again after a while) until shutdown.
    async fn run(self) {
        let cancel = self.inner.stop.clone();
        loop {
            while let Some(worker) = self.pool().pick_with(&self.inner.joined.workers()) {
                match self.jobs().claim_next_queued(&worker.cfg.name, now_ms()).await {
                    Ok(Some(job)) => self.spawn_on(&worker, job, Self::execute),
                    Ok(None) => break,
                    Err(e) => {
                        tracing::error!(error = %e, "cannot claim the next ComfyUI job");
                        break;
                    }
                }
            }
            let pool = self.pool();
            tokio::select! {
                () = cancel.cancelled() => return,
                () = pool.kicked() => {}
                () = tokio::time::sleep(IDLE_LOOK) => {}
            }
        }
    }

    /// Run `work` for `job` on `worker` as a task: the worker counts it while it runs, and the
    /// dispatcher looks at the queue again when it ends.
    fn spawn_on<F, Fut>(&self, worker: &Arc<Worker>, job: JobRecord, work: F)
    where
        F: FnOnce(Self, Arc<Worker>, JobRecord) -> Fut + Send + 'static,
        Fut: Future<Output = ()> + Send + 'static,
    {
        let occupied = worker.occupy();
        let (this, w) = (self.clone(), worker.clone());
        // Ends with the lease (several gateways): the job is left as it is in the store, for
        // the worker's next holder to reconcile.
        let driven = worker.drive_token().unwrap_or_default();
        self.host().spawn(async move {
            let id = job.id.clone();
            tokio::select! {
                () = work(this.clone(), w, job) => {}
                () = driven.cancelled() => {
                    tracing::warn!(job = %id, "stopped following the job: this gateway no longer drives its worker");
                }
            }
            drop(occupied);
            this.pool().kick();
        });
    }

    /// Cancel a job: a queued one never starts, a running one is interrupted on its worker.
    /// The job as it was before (`None`: unknown or already finished).
    pub async fn cancel(&self, job_id: &str) -> Result<Option<JobRecord>, StoreError> {
        let before = self.jobs().cancel_job(job_id, now_ms()).await?;
        if let Some(prev) = &before
            && let (Some(wname), Some(prompt)) = (&prev.worker, &prev.prompt_id)
        {
            // A reload may have changed the worker of that name while the job ran on the old
            // one: both hear it (a prompt id is unknown to the other server).
            let retired: Vec<Arc<Worker>> =
                self.inner.retired.lock().iter().filter(|w| w.cfg.name == *wname).cloned().collect();
            if let Some(link) = self.inner.joined.worker(wname).as_ref().and_then(|w| w.link()) {
                // Its next progress report is answered `continue: false`: it interrupts the prompt.
                link.withdraw(job_id);
            }
            for w in self.pool().worker(wname).into_iter().chain(retired) {
                let _ = w.client.cancel_pending(prompt).await;
                let _ = w.client.interrupt_prompt(prompt).await;
            }
        }
        if let Ok(Some(j)) = self.jobs().get_job(job_id).await {
            self.host().job_changed(&j, JobChange::State).await;
        }
        Ok(before)
    }

    /// Records a prompt a worker already runs (an approval granted on a ComfyUI-OpenClaw
    /// worker) as a running job on it, and follows it like any other: progress, outputs,
    /// delivery to `job.deliver_to`, reconciliation after a restart.
    pub async fn adopt(&self, worker: &Arc<Worker>, job: &NewJob, prompt_id: &str) -> Result<JobRecord, StoreError> {
        let record = self.jobs().adopt_job(job, &worker.cfg.name, prompt_id, now_ms()).await?;
        self.host().job_changed(&record, JobChange::State).await;
        let prompt = prompt_id.to_owned();
        self.spawn_on(worker, record.clone(), move |this, w, job| async move { this.follow(&w, job, prompt).await });
        Ok(record)
    }

    async fn execute(self, worker: Arc<Worker>, job: JobRecord) {
        self.host().job_changed(&job, JobChange::State).await;
        if let Some(link) = worker.link().cloned() {
            return self.run_joined(&worker, &link, job).await;
        }
        let prompt_id = match self.start_prompt(&worker, &job).await {
            Ok(Some(p)) => {
                // The worker has the prompt; the store does not know yet. See `resume_start`.
                self.host().crash_point("comfy.prompt_accepted");
                p
            }
            Ok(None) => return,
            Err(f) => return self.job_failed_on_worker(&worker, &job, f).await,
        };
        self.run_prompt(&worker, job, prompt_id).await;
    }

    /// A joined worker's job: handed to its connection, followed through its reports (started,
    /// progress, outputs, done). The worker leaving ends the reports: the job is requeued like
    /// any job of a worker that failed.
    async fn run_joined(&self, worker: &Arc<Worker>, link: &JoinedLink, job: JobRecord) {
        let limits = self.inner.limits.read().clone();
        let bounds = OutputBounds { max_files: limits.max_images, max_bytes: limits.max_bytes };
        let assignment = WorkerJob {
            job_id: job.id.clone(),
            attempt: u32::try_from(job.attempts).unwrap_or(u32::MAX),
            workflow: job.workflow.clone(),
            tag: job_tag(&job),
        };
        let mut reports = link.assign(assignment, bounds);
        let deadline = tokio::time::Instant::now() + JOB_TIMEOUT;
        let mut job = job;
        let mut started = false;
        loop {
            let report = tokio::select! {
                r = reports.recv() => r,
                () = tokio::time::sleep_until(deadline) => {
                    link.withdraw(&job.id);
                    // Never started there: the worker, not the job, is the problem.
                    let f = Failure { transient: !started, message: format!("the worker did not finish the job within {} s", JOB_TIMEOUT.as_secs()) };
                    return self.job_failed_on_worker(worker, &job, f).await;
                }
            };
            match report {
                Some(Report::Started(prompt_id)) => {
                    match self.jobs().set_job_running(&job.id, &prompt_id, now_ms()).await {
                        Ok(j) => {
                            started = true;
                            job = j;
                            self.host().job_changed(&job, JobChange::State).await;
                        }
                        Err(e) => {
                            tracing::info!(job = %job.id, error = %e, "job no longer runnable; taking it back from the worker");
                            return link.withdraw(&job.id);
                        }
                    }
                }
                Some(Report::Progress(progress)) => {
                    let _ = self.jobs().set_job_progress(&job.id, &progress, now_ms()).await;
                    self.host().job_changed(&job, JobChange::Progress(progress)).await;
                }
                Some(Report::Done(Ok(files))) => {
                    if !started && self.jobs().set_job_running(&job.id, "joined", now_ms()).await.is_err() {
                        return;
                    }
                    let mut kept = Outputs::new(limits, &job.id).await;
                    for (name, bytes) in files {
                        kept.keep(&name, &bytes).await;
                    }
                    return self.complete(job, kept).await;
                }
                Some(Report::Done(Err(crate::joined::JobFailure { message, transient }))) => {
                    return self.job_failed_on_worker(worker, &job, Failure { transient, message }).await;
                }
                None => {
                    // The worker left (or the job was cancelled and taken back).
                    if matches!(self.jobs().get_job(&job.id).await, Ok(Some(ref j)) if j.status.is_terminal()) {
                        return;
                    }
                    let f = Failure { transient: true, message: format!("worker {} left", worker.cfg.name) };
                    return self.job_failed_on_worker(worker, &job, f).await;
                }
            }
        }
    }

    /// The worker accepted `prompt_id` for the job: record it and follow it to the end.
    async fn run_prompt(&self, worker: &Arc<Worker>, job: JobRecord, prompt_id: String) {
        let job = match self.jobs().set_job_running(&job.id, &prompt_id, now_ms()).await {
            Ok(j) => j,
            Err(e) => {
                // Cancelled meanwhile: take it off the worker again.
                tracing::info!(job = %job.id, error = %e, "job no longer runnable; removing it from the worker");
                let _ = worker.client.cancel_pending(&prompt_id).await;
                let _ = worker.client.interrupt_prompt(&prompt_id).await;
                return;
            }
        };
        self.host().job_changed(&job, JobChange::State).await;
        self.follow(worker, job, prompt_id).await;
    }

    /// Starts the job's prompt on the worker; `Ok(None)` when it will not run (its approval on
    /// the worker was refused, or it was cancelled while held there).
    async fn start_prompt(&self, worker: &Arc<Worker>, job: &JobRecord) -> Result<Option<String>, Failure> {
        let tag = job_tag(job);
        let Some(oc) = worker.openclaw() else {
            return Ok(Some(worker.client.submit_tagged(&job.workflow, &tag).await?.prompt_id));
        };
        if oc.has_device() {
            let req = BridgeSubmit {
                template_id: &job.template_id,
                inputs: &job.inputs,
                idempotency_key: &tag,
                session_id: Some(worker.client.client_id()),
                trace_id: Some(&tag),
            };
            let mut tries = 0;
            let submitted = loop {
                tries += 1;
                match oc.bridge_submit(&req).await {
                    // The extension rate-limits before it records the key, so the same key is retried.
                    Err(OpenClawError::Refused { status: 429, retry_after, .. }) if tries < RATE_LIMITED_TRIES => {
                        let wait = retry_after.unwrap_or(Duration::from_secs(2)).min(Duration::from_secs(60));
                        tracing::info!(job = %job.id, worker = %worker.cfg.name, ?wait, "bridge submit rate-limited; waiting");
                        tokio::time::sleep(wait).await;
                    }
                    other => break other?,
                }
            };
            // The extension records a key before it submits: a key whose first submit failed
            // dedupes to no prompt. A new attempt (a new key) is the only way on.
            return submitted.prompt_id.map(Some).ok_or_else(|| Failure {
                transient: true,
                message: format!(
                    "the worker holds submission key {tag} from a try that failed; retrying under a new key"
                ),
            });
        }
        match oc.fire(&job.template_id, &job.inputs, &tag, false).await? {
            FireOutcome::Triggered { prompt_id, .. } => Ok(Some(prompt_id)),
            FireOutcome::Pending { approval_id, expires_at, .. } => {
                self.wait_for_worker_approval(worker, oc, job, &approval_id, expires_at.as_deref()).await
            }
        }
    }

    /// The extension holds every trigger for approval (`OPENCLAW_REQUIRE_APPROVAL_FOR_TRIGGERS`):
    /// tell the chat, then wait until it is approved (its executed prompt is the job's), refused
    /// or expired, or the job is cancelled here.
    async fn wait_for_worker_approval(
        &self,
        worker: &Worker,
        oc: &OpenClawClient,
        job: &JobRecord,
        approval_id: &str,
        expires_at: Option<&str>,
    ) -> Result<Option<String>, Failure> {
        tracing::info!(job = %job.id, worker = %worker.cfg.name, approval = %approval_id, "the worker holds the job for approval");
        self.host().job_changed(job, JobChange::WorkerApproval(approval_id.to_owned())).await;
        let text = format!(
            "[Approval Requested]\nWorker {} holds job {} for approval.\nApproval ID: {approval_id}\nExpires: {}\nAn admin can /approve {approval_id}",
            worker.cfg.name,
            job.id,
            expires_at.unwrap_or("unknown")
        );
        self.host().deliver_text(job, &format!("job:{}:worker-approval:{approval_id}", job.id), &text).await;
        let cancel = self.host().shutdown();
        let deadline = tokio::time::Instant::now() + JOB_TIMEOUT;
        loop {
            tokio::select! {
                () = cancel.cancelled() => return Ok(None),
                () = tokio::time::sleep(WORKER_APPROVAL_POLL) => {}
            }
            if !matches!(self.jobs().get_job(&job.id).await, Ok(Some(ref j)) if !j.status.is_terminal()) {
                return Ok(None);
            }
            match oc.approval(approval_id).await {
                Ok(Some(a)) if a.status == "approved" => {
                    if let Some(prompt) = a.executed_prompt_id {
                        return Ok(Some(prompt));
                    }
                }
                Ok(Some(a)) if a.status == "pending" => {}
                Ok(Some(a)) => {
                    let why = format!("the worker's approval {approval_id} was {}", a.status);
                    let _ = self.jobs().fail_job(&job.id, &why, now_ms()).await;
                    self.notify_failure(job, &why).await;
                    return Ok(None);
                }
                Ok(None) => {
                    return Err(Failure {
                        transient: false,
                        message: format!("the worker forgot approval {approval_id}"),
                    });
                }
                Err(e) if e.is_transient() => tracing::debug!(job = %job.id, error = %e, "approval poll failed"),
                Err(e) => return Err(e.into()),
            }
            if tokio::time::Instant::now() > deadline {
                return Err(Failure {
                    transient: false,
                    message: format!("approval {approval_id} was not decided in time"),
                });
            }
        }
    }

    /// Follow the prompt to its end (progress stored and told as it comes), then finish the job.
    async fn follow(&self, worker: &Arc<Worker>, job: JobRecord, prompt_id: String) {
        let (host, reported) = (self.host().clone(), job.clone());
        let entry = worker
            .client
            .wait_for(&prompt_id, JOB_TIMEOUT, move |ev| {
                if let ComfyEvent::Progress { value, max, .. } = ev {
                    let progress = json!({"value": value, "max": max});
                    let (h, job) = (host.clone(), reported.clone());
                    host.spawn(async move {
                        let _ = h.jobs().set_job_progress(&job.id, &progress, now_ms()).await;
                        h.job_changed(&job, JobChange::Progress(progress)).await;
                    });
                }
            })
            .await;
        match entry {
            Ok(entry) => self.finish(worker, job, entry).await,
            Err(e) => self.job_failed_on_worker(worker, &job, e.into()).await,
        }
    }

    async fn job_failed_on_worker(&self, worker: &Worker, job: &JobRecord, e: Failure) {
        if e.transient {
            worker.mark(false, Some(e.message.clone()));
            match self.jobs().requeue_job(&job.id, &e.message, now_ms()).await {
                Ok(JobStatus::Queued) => {
                    tracing::warn!(job = %job.id, worker = %worker.cfg.name, error = %e.message, "worker failed; job requeued");
                    self.pool().kick();
                }
                Ok(_) => {
                    tracing::error!(job = %job.id, error = %e.message, "job failed on every attempt");
                    self.notify_failure(job, &e.message).await;
                }
                Err(err) => tracing::error!(job = %job.id, error = %err, "cannot requeue job"),
            }
        } else {
            let _ = self.jobs().fail_job(&job.id, &e.message, now_ms()).await;
            self.notify_failure(job, &e.message).await;
        }
    }

    async fn notify_failure(&self, job: &JobRecord, error: &str) {
        if let Ok(Some(j)) = self.jobs().get_job(&job.id).await {
            self.host().job_changed(&j, JobChange::Failed(error.to_owned())).await;
        }
        let text = format!("[Job Failed]\nID: {}\nTemplate: {}\nError: {error}", job.id, job.template_id);
        self.host().deliver_text(job, &format!("job:{}:failed", job.id), &text).await;
    }

    async fn finish(&self, worker: &Worker, job: JobRecord, entry: HistoryEntry) {
        match &entry.status {
            ComfyStatus::Completed => {}
            ComfyStatus::Failed { message, .. } => {
                let _ = self.jobs().fail_job(&job.id, message, now_ms()).await;
                return self.notify_failure(&job, message).await;
            }
            ComfyStatus::Interrupted => {
                let _ = self.jobs().cancel_job(&job.id, now_ms()).await;
                return;
            }
            ComfyStatus::Other { status_str } => {
                let _ = self.jobs().fail_job(&job.id, &format!("ComfyUI status {status_str}"), now_ms()).await;
                return self.notify_failure(&job, &format!("ComfyUI ended the job with status {status_str:?}")).await;
            }
        }
        let limits = self.inner.limits.read().clone();
        let mut kept = Outputs::new(limits, &job.id).await;
        for file in entry.outputs.iter().filter(|f| f.kind == "output").take(kept.limits.max_images) {
            match worker.client.view(file).await {
                Ok(bytes) => kept.keep(&file.filename, &bytes).await,
                Err(e) => kept.problems.push(format!("{}: cannot fetch: {e}", file.filename)),
            }
        }
        self.complete(job, kept).await;
    }

    /// Stored outputs go to the chat, then the job is marked completed.
    async fn complete(&self, job: JobRecord, kept: Outputs) {
        let Outputs { outputs, problems, .. } = kept;
        let outputs = Value::Array(outputs);
        self.host().crash_point("comfy.outputs_stored");
        // Delivery is queued before the job is marked completed: a crash in between leaves the
        // job running, so the restart's reconcile finishes it again and the idempotent delivery
        // keys (`job:<id>:<file>`) drop the repeat. The other order lost the images for good: a
        // completed job is never reconciled.
        if matches!(self.jobs().get_job(&job.id).await, Ok(Some(ref j)) if j.status == JobStatus::Running) {
            let mut done = job.clone();
            done.outputs = outputs.clone();
            self.host().deliver_outputs(&done, &problems).await;
        }
        self.host().crash_point("comfy.delivery_queued");
        match self.jobs().complete_job(&job.id, &outputs, now_ms()).await {
            Ok(job) => self.host().job_changed(&job, JobChange::Completed).await,
            Err(e) => tracing::warn!(job = %job.id, error = %e, "job finished but could not be marked completed"),
        }
    }

    /// After a restart: jobs left dispatched or running are checked against their worker —
    /// finished ones are completed and delivered, lost ones go back to the queue.
    pub async fn reconcile(&self) {
        let Ok(active) = self.jobs().active_jobs().await else { return };
        for job in active {
            let worker = job.worker.as_deref().and_then(|name| self.pool().worker(name));
            self.reconcile_job(worker, job).await;
        }
    }

    /// What a worker's previous holder (another gateway, dead or cut off) left dispatched or
    /// running on it, checked as after a restart: only this gateway drives the worker now.
    async fn reconcile_worker(&self, w: &Arc<Worker>) {
        let Ok(active) = self.jobs().active_jobs().await else { return };
        for job in active.into_iter().filter(|j| j.worker.as_deref() == Some(w.cfg.name.as_str())) {
            tracing::info!(job = %job.id, worker = %w.cfg.name, "taking over a job left on the worker");
            self.reconcile_job(Some(w.clone()), job).await;
        }
    }

    async fn reconcile_job(&self, worker: Option<Arc<Worker>>, job: JobRecord) {
        match (worker, job.prompt_id.clone()) {
            (Some(w), Some(prompt)) if w.healthy() => {
                if !w.client.knows_prompt(&prompt).await {
                    // Following it would wait JOB_TIMEOUT for a prompt that never finishes.
                    tracing::warn!(job = %job.id, worker = %w.cfg.name, "the worker no longer knows the job's prompt; requeued");
                    let _ = self.jobs().requeue_job(&job.id, "the worker lost the job (restarted?)", now_ms()).await;
                    return;
                }
                tracing::info!(job = %job.id, worker = %w.cfg.name, "resuming a job that was running at the last shutdown");
                self.spawn_on(&w, job, move |this, w, job| async move { this.follow(&w, job, prompt).await });
            }
            (Some(w), None) if w.healthy() => {
                // Dispatched: the gateway may have died after the worker accepted the prompt
                // and before recording it. The attempt's tag finds that prompt (or the
                // extension dedupes the same key to it) instead of running the job twice.
                tracing::info!(job = %job.id, worker = %w.cfg.name, "resuming a job that was being started at the last shutdown");
                self.spawn_on(&w, job, Self::resume_start);
            }
            _ => {
                let _ = self
                    .jobs()
                    .requeue_job(&job.id, "gateway restarted before the worker took the job", now_ms())
                    .await;
            }
        }
    }

    async fn resume_start(self, w: Arc<Worker>, job: JobRecord) {
        if w.openclaw().is_none() {
            match w.client.find_tagged(&job_tag(&job)).await {
                Ok(Some(prompt)) => {
                    tracing::info!(job = %job.id, prompt = %prompt, "found the job's prompt on its worker; following it");
                    return self.run_prompt(&w, job, prompt).await;
                }
                Ok(None) => {}
                Err(e) => return self.job_failed_on_worker(&w, &job, e.into()).await,
            }
        }
        self.execute(w, job).await;
    }
}
