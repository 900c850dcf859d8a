//! ComfyUI jobs: the worker pool, the durable job queue's dispatcher, job execution and the
//! delivery of finished images to the chat that asked.
//!
//! ```text
//! /run tmpl k=v (chat) | comfy.run (WS) → template rendered → job row `queued`
//!   → dispatcher: healthy worker with the least outstanding work per weight (maxConcurrent)
//!   → POST /prompt → `running` (progress from ComfyUI's WS, /history polling as fallback)
//!   → outputs fetched from /view into <state>/media/<job>/ → `completed`
//!   → each image into the chat's outbox (idempotent per job and file) → sent once
//! ```
//!
//! A worker that cannot be reached puts its job back in the queue (bounded attempts); after a
//! restart, jobs that were dispatched or running are reconciled with the worker's `/history`.
//!
//! Workers in mode `openclaw` run the ComfyUI-OpenClaw extension: the job is started through
//! the extension (its bridge `submit` with a device token, else `triggers/fire` with the admin
//! token), which renders the template from its own `data/templates`; progress, outputs and
//! cancelling use the same server's native API as mode `comfyui`.
//!
//! Every start carries the job's tag (`<job id>-<attempt>`): in `extra_data` for native
//! ComfyUI, as the idempotency key / trace id for the extension. A gateway that dies after the
//! worker accepted a prompt but before recording it finds that prompt again on restart (native:
//! searched in `/queue` and `/history`; extension: the same key is deduplicated to the same
//! prompt) instead of running the job twice.

mod commands;
mod config;
mod webchat;

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, RwLock};
use std::time::Duration;

use serde_json::{Value, json};
use tokio::sync::Notify;

use clawgate_channels::{AccountKey, MediaSource, OutboundMedia, OutboundMessage};
use clawgate_comfy::client::{ComfyClient, ComfyError, ComfyEvent, HistoryEntry, JobStatus as ComfyStatus};
use clawgate_comfy::openclaw::{BridgeSubmit, DeviceCredentials, FireOutcome, OpenClawClient, OpenClawError};
use clawgate_comfy::templates::TemplateLibrary;
use clawgate_store::{ChannelStore, JobRecord, JobStatus, JobStore, NewJob, NewOutbound};

use crate::error::CoreError;
use crate::gateway::Gateway;
use crate::time::now_ms;

pub(crate) use commands::{APPROVAL_KIND, Decided, decide_approval, run_command};
pub use config::{ComfyConfig, OpenClawAuth, WorkerConfig};

/// How long one job may run on a worker.
const JOB_TIMEOUT: Duration = Duration::from_secs(30 * 60);
/// Health probe period.
const PROBE_EVERY: Duration = Duration::from_secs(5);
/// How often a held job asks an `openclaw` worker whether its approval was decided.
const WORKER_APPROVAL_POLL: Duration = Duration::from_secs(1);
/// Tries of a bridge submit the extension rate-limited (429), waiting its `Retry-After`.
const RATE_LIMITED_TRIES: u32 = 3;

/// One ComfyUI server.
pub struct Worker {
    /// Its config.
    pub cfg: WorkerConfig,
    client: ComfyClient,
    /// The extension's endpoints (mode `openclaw`).
    openclaw: Option<OpenClawClient>,
    healthy: AtomicBool,
    running: AtomicUsize,
    last_error: Mutex<Option<String>>,
    queue_remaining: Mutex<Option<u64>>,
    /// The extension's version and template ids, from its last probe (mode `openclaw`).
    remote: Mutex<RemoteInfo>,
}

#[derive(Debug, Default, Clone)]
struct RemoteInfo {
    version: Option<String>,
    templates: Option<Vec<String>>,
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

impl std::fmt::Debug for Worker {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Worker").field("name", &self.cfg.name).finish()
    }
}

impl Worker {
    /// Did the last probe succeed?
    pub fn healthy(&self) -> bool {
        self.healthy.load(Ordering::Relaxed)
    }

    /// Jobs this gateway runs on it now.
    pub fn running(&self) -> usize {
        self.running.load(Ordering::Relaxed)
    }

    /// The ComfyUI-OpenClaw extension's client (mode `openclaw`).
    pub fn openclaw(&self) -> Option<&OpenClawClient> {
        self.openclaw.as_ref()
    }

    /// The extension's version from the last probe (mode `openclaw`).
    pub fn remote_version(&self) -> Option<String> {
        self.remote.lock().unwrap_or_else(|p| p.into_inner()).version.clone()
    }

    /// `{name, url, mode, healthy, queueRemaining, running}`.
    pub fn summary(&self) -> Value {
        let remote = self.remote.lock().unwrap_or_else(|p| p.into_inner()).clone();
        json!({
            "version": remote.version, "templates": remote.templates,
            "name": self.cfg.name, "url": self.cfg.url, "mode": self.cfg.mode, "healthy": self.healthy(),
            "queueRemaining": *self.queue_remaining.lock().unwrap_or_else(|p| p.into_inner()),
            "running": self.running(), "maxConcurrent": self.cfg.max_concurrent, "weight": self.cfg.weight,
            "lastError": *self.last_error.lock().unwrap_or_else(|p| p.into_inner()),
        })
    }

    fn mark(&self, healthy: bool, error: Option<String>) {
        // Errors from the HTTP client may quote the URL; its password never leaves the worker.
        let error = error.map(|e| self.cfg.url.scrub(&e));
        let was = self.healthy.swap(healthy, Ordering::Relaxed);
        if was != healthy {
            if healthy {
                tracing::info!(worker = %self.cfg.name, "ComfyUI worker is reachable");
            } else {
                tracing::warn!(worker = %self.cfg.name, error = ?error, "ComfyUI worker is unreachable");
            }
        }
        if let Some(e) = error {
            *self.last_error.lock().unwrap_or_else(|p| p.into_inner()) = Some(e);
        }
    }
}

/// ComfyUI state of the gateway.
#[derive(Default)]
pub struct ComfyService {
    cfg: RwLock<Option<Arc<ComfyConfig>>>,
    library: RwLock<Option<Arc<TemplateLibrary>>>,
    /// What the templates directory looked like when `library` was loaded.
    templates_seen: Mutex<Option<DirFingerprint>>,
    workers: RwLock<Vec<Arc<Worker>>>,
    kick: Notify,
}

impl std::fmt::Debug for ComfyService {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ComfyService").finish_non_exhaustive()
    }
}

impl ComfyService {
    /// Is ComfyUI configured (any worker)?
    pub fn enabled(&self) -> bool {
        self.cfg.read().map(|c| c.is_some()).unwrap_or(false)
    }

    /// The config in force.
    pub fn config(&self) -> Option<Arc<ComfyConfig>> {
        self.cfg.read().ok().and_then(|c| c.clone())
    }

    /// The loaded templates, reloaded first when a file in the templates directory changed
    /// (so a fixed template is picked up without a restart or a config change).
    pub fn library(&self) -> Option<Arc<TemplateLibrary>> {
        if let Some(cfg) = self.config() {
            let now = dir_fingerprint(&cfg.templates_dir);
            let mut seen = self.templates_seen.lock().unwrap_or_else(|p| p.into_inner());
            if seen.as_ref() != Some(&now) {
                *self.library.write().unwrap_or_else(|p| p.into_inner()) = load_templates(&cfg.templates_dir);
                *seen = Some(now);
            }
        }
        self.library.read().ok().and_then(|l| l.clone())
    }

    /// The workers.
    pub fn workers(&self) -> Vec<Arc<Worker>> {
        self.workers.read().map(|w| w.clone()).unwrap_or_default()
    }
}

/// Read `comfy.*`, load the templates, start the probes and the dispatcher, and reconcile jobs a
/// previous run left dispatched or running.
pub async fn start(gw: &Arc<Gateway>) {
    let current = gw.config.current();
    let cfg = match ComfyConfig::from_config(&current.config, current.base_dir()) {
        Ok(Some(c)) => c,
        Ok(None) => return,
        Err(e) => {
            tracing::error!(error = %e, "comfy config is invalid; ComfyUI jobs are off");
            return;
        }
    };
    let seen = dir_fingerprint(&cfg.templates_dir);
    *gw.comfy.library.write().unwrap_or_else(|p| p.into_inner()) = load_templates(&cfg.templates_dir);
    *gw.comfy.templates_seen.lock().unwrap_or_else(|p| p.into_inner()) = Some(seen);
    let client_id = format!("clawgate-{}", gw.boot_id);
    let mut workers = Vec::new();
    for w in &cfg.workers {
        match ComfyClient::new(w.url.expose(), client_id.clone()) {
            Ok(client) => {
                let openclaw = match w.openclaw.as_ref().map(|auth| openclaw_client(w.url.expose(), auth)).transpose() {
                    Ok(c) => c,
                    Err(e) => {
                        tracing::error!(worker = %w.name, error = %e, "ComfyUI-OpenClaw worker cannot be used");
                        continue;
                    }
                };
                workers.push(Arc::new(Worker {
                    cfg: w.clone(),
                    client,
                    openclaw,
                    healthy: AtomicBool::new(false),
                    running: AtomicUsize::new(0),
                    last_error: Mutex::new(None),
                    queue_remaining: Mutex::new(None),
                    remote: Mutex::new(RemoteInfo::default()),
                }))
            }
            Err(e) => tracing::error!(worker = %w.name, error = %e, "ComfyUI worker cannot be used"),
        }
    }
    *gw.comfy.workers.write().unwrap_or_else(|p| p.into_inner()) = workers.clone();
    *gw.comfy.cfg.write().unwrap_or_else(|p| p.into_inner()) = Some(Arc::new(cfg));
    for w in &workers {
        probe(gw, w).await;
        tokio::spawn(probe_loop(gw.clone(), w.clone()));
    }
    reconcile(gw).await;
    tokio::spawn(dispatcher(gw.clone()));
}

/// Names, sizes and modification times of the files in a directory: when it changes, the
/// templates are read again.
type DirFingerprint = Vec<(std::ffi::OsString, u64, Option<std::time::SystemTime>)>;

fn dir_fingerprint(dir: &std::path::Path) -> DirFingerprint {
    let mut out: DirFingerprint = std::fs::read_dir(dir)
        .into_iter()
        .flatten()
        .flatten()
        .filter_map(|e| {
            let meta = e.metadata().ok()?;
            Some((e.file_name(), meta.len(), meta.modified().ok()))
        })
        .collect();
    out.sort();
    out
}

/// Loads the templates directory, template by template: each bad template is logged by name
/// and the good ones are kept.
fn load_templates(dir: &std::path::Path) -> Option<Arc<TemplateLibrary>> {
    match TemplateLibrary::load(dir) {
        Ok(lib) => {
            for problem in lib.problems() {
                tracing::warn!(template = %problem.name, error = %problem.error, "ComfyUI template not loaded");
            }
            tracing::info!(dir = %dir.display(), templates = lib.list().len(), bad = lib.problems().len(),
                "ComfyUI templates loaded");
            Some(Arc::new(lib))
        }
        Err(e) => {
            tracing::error!(dir = %dir.display(), error = %e, "ComfyUI templates could not be loaded");
            None
        }
    }
}

fn openclaw_client(url: &str, auth: &OpenClawAuth) -> Result<OpenClawClient, OpenClawError> {
    let device = match (&auth.device_id, &auth.device_token) {
        (Some(id), Some(token)) => {
            Some(DeviceCredentials { id: id.clone(), token: token.clone(), scopes: auth.device_scopes.clone() })
        }
        _ => None,
    };
    Ok(OpenClawClient::new(url, auth.admin_token.clone(), device)?.with_obs_token(auth.obs_token.clone()))
}

/// An `openclaw` worker is healthy when its extension answers `/openclaw/health`; its template
/// list is read when it comes (back) up, and templates clawgate has that it lacks are named.
async fn probe_extension(gw: &Gateway, w: &Worker, oc: &OpenClawClient) -> Result<(), String> {
    let health = oc.health().await.map_err(|e| e.to_string())?;
    let known = w.remote.lock().unwrap_or_else(|p| p.into_inner()).templates.is_some();
    let templates = if known && w.healthy() {
        None
    } else {
        match oc.templates().await {
            Ok(list) => Some(list.into_iter().map(|t| t.id).collect::<Vec<_>>()),
            Err(e) => {
                tracing::warn!(worker = %w.cfg.name, error = %e, "cannot list the extension's templates");
                None
            }
        }
    };
    let mut remote = w.remote.lock().unwrap_or_else(|p| p.into_inner());
    remote.version = health.version;
    if let Some(ids) = templates {
        if let Some(lib) = gw.comfy.library() {
            let missing: Vec<String> = lib.list().iter().map(|t| t.id.clone()).filter(|id| !ids.contains(id)).collect();
            if !missing.is_empty() {
                tracing::warn!(worker = %w.cfg.name, missing = ?missing,
                    "the worker's ComfyUI-OpenClaw extension lacks these templates; jobs using them fail there — \
                     copy them into its data/templates");
            }
        }
        remote.templates = Some(ids);
    }
    Ok(())
}

async fn probe(gw: &Gateway, w: &Worker) {
    if let Some(oc) = &w.openclaw
        && let Err(e) = probe_extension(gw, w, oc).await
    {
        return w.mark(false, Some(e));
    }
    if w.openclaw.is_none() && !w.healthy() {
        // Coming (back) up: `/system_stats` says it is ComfyUI, and which version.
        match w.client.system_stats().await {
            Ok(stats) => {
                let version = stats.pointer("/system/comfyui_version").and_then(Value::as_str).map(str::to_owned);
                w.remote.lock().unwrap_or_else(|p| p.into_inner()).version = version;
            }
            Err(e) => return w.mark(false, Some(e.to_string())),
        }
    }
    match w.client.queue().await {
        Ok(q) => {
            *w.queue_remaining.lock().unwrap_or_else(|p| p.into_inner()) =
                Some((q.running.len() + q.pending.len()) as u64);
            w.mark(true, None);
        }
        Err(e) => w.mark(false, Some(e.to_string())),
    }
}

async fn probe_loop(gw: Arc<Gateway>, w: Arc<Worker>) {
    let cancel = gw.shutdown_token();
    loop {
        tokio::select! {
            () = cancel.cancelled() => return,
            () = tokio::time::sleep(PROBE_EVERY) => {}
        }
        let was = w.healthy();
        probe(&gw, &w).await;
        if !was && w.healthy() {
            gw.comfy.kick.notify_one();
        }
    }
}

/// The healthy worker with room and the least outstanding work per unit of weight.
fn pick_worker(workers: &[Arc<Worker>]) -> Option<Arc<Worker>> {
    workers
        .iter()
        .filter(|w| w.healthy() && w.running() < w.cfg.max_concurrent)
        .min_by(|a, b| {
            let la = (a.running() as f64 + 1.0) / a.cfg.weight;
            let lb = (b.running() as f64 + 1.0) / b.cfg.weight;
            la.partial_cmp(&lb).unwrap_or(std::cmp::Ordering::Equal)
        })
        .cloned()
}

async fn dispatcher(gw: Arc<Gateway>) {
    let cancel = gw.shutdown_token();
    loop {
        loop {
            let workers = gw.comfy.workers();
            let Some(worker) = pick_worker(&workers) else { break };
            match gw.store.claim_next_queued(&worker.cfg.name, now_ms()).await {
                Ok(Some(job)) => {
                    worker.running.fetch_add(1, Ordering::Relaxed);
                    let (gw2, w2) = (gw.clone(), worker.clone());
                    tokio::spawn(async move {
                        execute(&gw2, &w2, job).await;
                        w2.running.fetch_sub(1, Ordering::Relaxed);
                        gw2.comfy.kick.notify_one();
                    });
                }
                Ok(None) => break,
                Err(e) => {
                    tracing::error!(error = %e, "cannot claim the next ComfyUI job");
                    break;
                }
            }
        }
        tokio::select! {
            () = cancel.cancelled() => return,
            () = gw.comfy.kick.notified() => {}
            () = tokio::time::sleep(Duration::from_secs(2)) => {}
        }
    }
}

/// Broadcast a `comfy.job` event (state and progress) to operator clients.
fn job_event(gw: &Gateway, job: &JobRecord, extra: Value) {
    let mut payload = json!({"jobId": job.id, "status": job.status.as_str(), "template": job.template_id,
                             "worker": job.worker, "promptId": job.prompt_id, "ts": now_ms()});
    if let (Some(p), Some(e)) = (payload.as_object_mut(), extra.as_object()) {
        for (k, v) in e {
            p.insert(k.clone(), v.clone());
        }
    }
    gw.clients.broadcast("comfy.job", &payload, None, true);
}

/// This attempt's tag: in `extra_data` (native) or as the idempotency key and trace id
/// (extension). Fits the extension's trace-id pattern `[A-Za-z0-9_-]{1,64}`.
fn job_tag(job: &JobRecord) -> String {
    format!("{}-{}", job.id, job.attempts)
}

async fn execute(gw: &Arc<Gateway>, worker: &Arc<Worker>, job: JobRecord) {
    job_event(gw, &job, json!({}));
    let prompt_id = match start_prompt(gw, worker, &job).await {
        Ok(Some(p)) => {
            // The worker has the prompt; the store does not know yet. See `resume_start`.
            clawgate_channels::fault::crash_point("comfy.prompt_accepted");
            p
        }
        Ok(None) => return,
        Err(f) => return job_failed_on_worker(gw, worker, &job, f).await,
    };
    run_prompt(gw, worker, job, prompt_id).await;
}

/// The worker accepted `prompt_id` for the job: record it and follow it to the end.
async fn run_prompt(gw: &Arc<Gateway>, worker: &Arc<Worker>, job: JobRecord, prompt_id: String) {
    let job = match gw.store.set_job_running(&job.id, &prompt_id, now_ms()).await {
        Ok(j) => j,
        Err(e) => {
            // Cancelled meanwhile: take it off the worker again.
            tracing::info!(job = %job.id, error = %e, "job no longer runnable; removing it from the worker");
            let _ = worker.client.cancel_pending(&prompt_id).await;
            let _ = worker.client.interrupt_prompt(&prompt_id).await;
            return;
        }
    };
    job_event(gw, &job, json!({}));
    follow(gw, worker, job, prompt_id).await;
}

/// Starts the job's prompt on the worker; `Ok(None)` when it will not run (its approval on the
/// worker was refused, or it was cancelled while held there).
async fn start_prompt(gw: &Arc<Gateway>, worker: &Arc<Worker>, job: &JobRecord) -> Result<Option<String>, Failure> {
    let tag = job_tag(job);
    let Some(oc) = &worker.openclaw else {
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
            message: format!("the worker holds submission key {tag} from a try that failed; retrying under a new key"),
        });
    }
    match oc.fire(&job.template_id, &job.inputs, &tag, false).await? {
        FireOutcome::Triggered { prompt_id, .. } => Ok(Some(prompt_id)),
        FireOutcome::Pending { approval_id, expires_at, .. } => {
            wait_for_worker_approval(gw, worker, oc, job, &approval_id, expires_at.as_deref()).await
        }
    }
}

/// The extension holds every trigger for approval (`OPENCLAW_REQUIRE_APPROVAL_FOR_TRIGGERS`):
/// tell the chat, then wait until it is approved (its executed prompt is the job's), refused or
/// expired, or the job is cancelled here.
async fn wait_for_worker_approval(
    gw: &Arc<Gateway>,
    worker: &Worker,
    oc: &OpenClawClient,
    job: &JobRecord,
    approval_id: &str,
    expires_at: Option<&str>,
) -> Result<Option<String>, Failure> {
    tracing::info!(job = %job.id, worker = %worker.cfg.name, approval = %approval_id, "the worker holds the job for approval");
    job_event(gw, job, json!({"workerApproval": approval_id}));
    let text = format!(
        "[Approval Requested]\nWorker {} holds job {} for approval.\nApproval ID: {approval_id}\nExpires: {}\nAn admin can /approve {approval_id}",
        worker.cfg.name,
        job.id,
        expires_at.unwrap_or("unknown")
    );
    deliver_text(gw, job, &format!("job:{}:worker-approval:{approval_id}", job.id), &text).await;
    let cancel = gw.shutdown_token();
    let deadline = tokio::time::Instant::now() + JOB_TIMEOUT;
    loop {
        tokio::select! {
            () = cancel.cancelled() => return Ok(None),
            () = tokio::time::sleep(WORKER_APPROVAL_POLL) => {}
        }
        if !matches!(gw.store.get_job(&job.id).await, Ok(Some(ref j)) if !j.status.is_terminal()) {
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
                let _ = gw.store.fail_job(&job.id, &why, now_ms()).await;
                notify_failure(gw, job, &why).await;
                return Ok(None);
            }
            Ok(None) => {
                return Err(Failure { transient: false, message: format!("the worker forgot approval {approval_id}") });
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

async fn follow(gw: &Arc<Gateway>, worker: &Arc<Worker>, job: JobRecord, prompt_id: String) {
    let store = gw.store.clone();
    let gw2 = gw.clone();
    let job2 = job.clone();
    let entry = worker
        .client
        .wait_for(&prompt_id, JOB_TIMEOUT, move |ev| {
            if let ComfyEvent::Progress { value, max, .. } = ev {
                let progress = json!({"value": value, "max": max});
                let (store, id) = (store.clone(), job2.id.clone());
                let gw = gw2.clone();
                let job = job2.clone();
                tokio::spawn(async move {
                    let _ = store.set_job_progress(&id, &progress, now_ms()).await;
                    job_event(&gw, &job, json!({"progress": progress}));
                });
            }
        })
        .await;
    match entry {
        Ok(entry) => finish(gw, worker, job, entry).await,
        Err(e) => job_failed_on_worker(gw, worker, &job, e.into()).await,
    }
}

async fn job_failed_on_worker(gw: &Arc<Gateway>, worker: &Worker, job: &JobRecord, e: Failure) {
    if e.transient {
        worker.mark(false, Some(e.message.clone()));
        match gw.store.requeue_job(&job.id, &e.message, now_ms()).await {
            Ok(JobStatus::Queued) => {
                tracing::warn!(job = %job.id, worker = %worker.cfg.name, error = %e.message, "worker failed; job requeued");
                gw.comfy.kick.notify_one();
            }
            Ok(_) => {
                tracing::error!(job = %job.id, error = %e.message, "job failed on every attempt");
                notify_failure(gw, job, &e.message).await;
            }
            Err(err) => tracing::error!(job = %job.id, error = %err, "cannot requeue job"),
        }
    } else {
        let _ = gw.store.fail_job(&job.id, &e.message, now_ms()).await;
        notify_failure(gw, job, &e.message).await;
    }
}

async fn notify_failure(gw: &Arc<Gateway>, job: &JobRecord, error: &str) {
    if let Ok(Some(j)) = gw.store.get_job(&job.id).await {
        job_event(gw, &j, json!({"error": error}));
    }
    let text = format!("[Job Failed]\nID: {}\nTemplate: {}\nError: {error}", job.id, job.template_id);
    deliver_text(gw, job, &format!("job:{}:failed", job.id), &text).await;
}

fn media_dir(gw: &Gateway, job_id: &str) -> PathBuf {
    gw.settings().state_dir.join("media").join(job_id)
}

async fn finish(gw: &Arc<Gateway>, worker: &Worker, job: JobRecord, entry: HistoryEntry) {
    match &entry.status {
        ComfyStatus::Completed => {}
        ComfyStatus::Failed { message, .. } => {
            let _ = gw.store.fail_job(&job.id, message, now_ms()).await;
            return notify_failure(gw, &job, message).await;
        }
        ComfyStatus::Interrupted => {
            let _ = gw.store.cancel_job(&job.id, now_ms()).await;
            return;
        }
        ComfyStatus::Other { status_str } => {
            let _ = gw.store.fail_job(&job.id, &format!("ComfyUI status {status_str}"), now_ms()).await;
            return notify_failure(gw, &job, &format!("ComfyUI ended the job with status {status_str:?}")).await;
        }
    }
    let cfg = gw.comfy.config();
    let max_images = cfg.as_ref().map_or(8, |c| c.max_images);
    let max_bytes = cfg.as_ref().map_or(50 * 1024 * 1024, |c| c.max_bytes);
    let dir = media_dir(gw, &job.id);
    let _ = tokio::fs::create_dir_all(&dir).await;
    let mut outputs = Vec::new();
    let mut problems = Vec::new();
    for file in entry.outputs.iter().filter(|f| f.kind == "output").take(max_images) {
        match worker.client.view(file).await {
            Ok(bytes) if bytes.len() as u64 > max_bytes => {
                problems.push(format!("{} is {} bytes, over the {max_bytes}-byte limit", file.filename, bytes.len()))
            }
            Ok(bytes) => {
                let safe: String = file
                    .filename
                    .chars()
                    .map(|c| if c.is_ascii_alphanumeric() || "._-".contains(c) { c } else { '_' })
                    .collect();
                let path = dir.join(&safe);
                match tokio::fs::write(&path, &bytes).await {
                    Ok(()) => outputs.push(json!({"filename": safe, "path": path, "bytes": bytes.len()})),
                    Err(e) => problems.push(format!("{}: cannot store: {e}", file.filename)),
                }
            }
            Err(e) => problems.push(format!("{}: cannot fetch: {e}", file.filename)),
        }
    }
    let outputs = Value::Array(outputs);
    clawgate_channels::fault::crash_point("comfy.outputs_stored");
    // Delivery is queued before the job is marked completed: a crash in between leaves the job
    // running, so the restart's reconcile finishes it again and the idempotent outbox keys
    // (`job:<id>:<file>`) drop the repeat. The other order lost the images for good: a
    // completed job is never reconciled.
    if matches!(gw.store.get_job(&job.id).await, Ok(Some(ref j)) if j.status == JobStatus::Running) {
        let mut done = job.clone();
        done.outputs = outputs.clone();
        deliver_outputs(gw, &done, &problems).await;
    }
    clawgate_channels::fault::crash_point("comfy.delivery_queued");
    let job = match gw.store.complete_job(&job.id, &outputs, now_ms()).await {
        Ok(j) => j,
        Err(e) => {
            tracing::warn!(job = %job.id, error = %e, "job finished but could not be marked completed");
            return;
        }
    };
    // Clients see the outputs as `job_json` shows them (signed media URLs, no local paths).
    let public = job_json(gw, &job).await;
    job_event(gw, &job, json!({"outputs": public["outputs"]}));
}

fn deliver_target(job: &JobRecord) -> Option<(AccountKey, String, Option<String>)> {
    let d = job.deliver_to.as_ref()?;
    let channel = d.get("channel")?.as_str()?;
    let account = d.get("account").and_then(Value::as_str).unwrap_or("default");
    let chat = d.get("chatId")?.as_str()?.to_owned();
    let thread = d.get("threadId").and_then(Value::as_str).map(str::to_owned);
    Some((AccountKey::new(channel, account), chat, thread))
}

async fn deliver_text(gw: &Arc<Gateway>, job: &JobRecord, key: &str, text: &str) {
    if webchat::is_target(job) {
        return webchat::deliver_text(gw, job, key, text).await;
    }
    let Some((account, chat, thread)) = deliver_target(job) else { return };
    let msg = OutboundMessage::text(&chat, thread, text);
    let item = NewOutbound {
        idempotency_key: key.to_owned(),
        channel: account.channel.clone(),
        account: account.account.clone(),
        chat_id: chat,
        payload: serde_json::to_value(&msg).unwrap_or(Value::Null),
    };
    if let Err(e) = gw.store.queue_outbound(&[item], None, now_ms()).await {
        tracing::error!(job = %job.id, error = %e, "cannot queue the job notice");
    }
    crate::channels::kick_outbox(gw, &account);
}

/// Queue every stored output of a completed job for its chat (each once: the outbox key is the
/// job and file), then a summary line naming anything that could not be delivered.
pub(crate) async fn deliver_outputs(gw: &Arc<Gateway>, job: &JobRecord, problems: &[String]) {
    if webchat::is_target(job) {
        return webchat::deliver_outputs(gw, job, problems).await;
    }
    let Some((account, chat, thread)) = deliver_target(job) else { return };
    let mut items = Vec::new();
    for out in job.outputs.as_array().into_iter().flatten() {
        let (Some(name), Some(path)) =
            (out.get("filename").and_then(Value::as_str), out.get("path").and_then(Value::as_str))
        else {
            continue;
        };
        let mut msg = OutboundMessage::text(&chat, thread.clone(), "");
        msg.media = Some(OutboundMedia {
            filename: name.to_owned(),
            content_type: if name.ends_with(".png") { "image/png".into() } else { "application/octet-stream".into() },
            source: MediaSource::Path { path: PathBuf::from(path) },
            size: out.get("bytes").and_then(Value::as_u64),
            force_document: false,
        });
        items.push(NewOutbound {
            idempotency_key: format!("job:{}:{name}", job.id),
            channel: account.channel.clone(),
            account: account.account.clone(),
            chat_id: chat.clone(),
            payload: serde_json::to_value(&msg).unwrap_or(Value::Null),
        });
    }
    let mut text = format!("[Job Completed]\nID: {}\nTemplate: {}\nImages: {}", job.id, job.template_id, items.len());
    for p in problems {
        text.push_str(&format!("\nNot delivered: {p}"));
    }
    let msg = OutboundMessage::text(&chat, thread, text);
    items.push(NewOutbound {
        idempotency_key: format!("job:{}:done", job.id),
        channel: account.channel.clone(),
        account: account.account.clone(),
        chat_id: chat,
        payload: serde_json::to_value(&msg).unwrap_or(Value::Null),
    });
    if let Err(e) = gw.store.queue_outbound(&items, None, now_ms()).await {
        tracing::error!(job = %job.id, error = %e, "cannot queue the job's images");
    }
    crate::channels::kick_outbox(gw, &account);
}

/// After a restart: jobs left dispatched or running are checked against their worker — finished
/// ones are completed and delivered, lost ones go back to the queue.
async fn reconcile(gw: &Arc<Gateway>) {
    let Ok(active) = gw.store.active_jobs().await else { return };
    for job in active {
        let worker = gw.comfy.workers().into_iter().find(|w| Some(&w.cfg.name) == job.worker.as_ref());
        match (worker, job.prompt_id.clone()) {
            (Some(w), Some(prompt)) if w.healthy() => {
                if !worker_knows(&w, &prompt).await {
                    // Following it would wait JOB_TIMEOUT for a prompt that never finishes.
                    tracing::warn!(job = %job.id, worker = %w.cfg.name, "the worker no longer knows the job's prompt; requeued");
                    let _ = gw.store.requeue_job(&job.id, "the worker lost the job (restarted?)", now_ms()).await;
                    continue;
                }
                tracing::info!(job = %job.id, worker = %w.cfg.name, "resuming a job that was running at the last shutdown");
                w.running.fetch_add(1, Ordering::Relaxed);
                let gw2 = gw.clone();
                tokio::spawn(async move {
                    follow(&gw2, &w, job, prompt).await;
                    w.running.fetch_sub(1, Ordering::Relaxed);
                    gw2.comfy.kick.notify_one();
                });
            }
            (Some(w), None) if w.healthy() => {
                // Dispatched: the gateway may have died after the worker accepted the prompt
                // and before recording it. The attempt's tag finds that prompt (or the
                // extension dedupes the same key to it) instead of running the job twice.
                tracing::info!(job = %job.id, worker = %w.cfg.name, "resuming a job that was being started at the last shutdown");
                w.running.fetch_add(1, Ordering::Relaxed);
                let gw2 = gw.clone();
                tokio::spawn(async move {
                    resume_start(&gw2, &w, job).await;
                    w.running.fetch_sub(1, Ordering::Relaxed);
                    gw2.comfy.kick.notify_one();
                });
            }
            _ => {
                let _ =
                    gw.store.requeue_job(&job.id, "gateway restarted before the worker took the job", now_ms()).await;
            }
        }
    }
}

async fn resume_start(gw: &Arc<Gateway>, w: &Arc<Worker>, job: JobRecord) {
    if w.openclaw.is_none() {
        match w.client.find_tagged(&job_tag(&job)).await {
            Ok(Some(prompt)) => {
                tracing::info!(job = %job.id, prompt = %prompt, "found the job's prompt on its worker; following it");
                return run_prompt(gw, w, job, prompt).await;
            }
            Ok(None) => {}
            Err(e) => return job_failed_on_worker(gw, w, &job, e.into()).await,
        }
    }
    execute(gw, w, job).await;
}

/// Whether `prompt` is pending, running or finished on `w`. The queue is read before the
/// history: a prompt leaves the queue only into the history, so one finishing in between is not
/// missed. An unreachable worker counts as knowing it (following then fails over as usual).
async fn worker_knows(w: &Worker, prompt: &str) -> bool {
    match w.client.queue().await {
        Ok(q) if q.running.iter().chain(&q.pending).any(|p| p == prompt) => return true,
        Ok(_) => {}
        Err(_) => return true,
    }
    !matches!(w.client.history(prompt).await, Ok(None))
}

/// Render a template and queue a job. Returns the job and its queue position.
pub async fn submit(
    gw: &Arc<Gateway>,
    template: &str,
    inputs: &BTreeMap<String, String>,
    free_text: Option<&str>,
    deliver_to: Option<Value>,
    requested_by: Option<Value>,
    hold_for_approval: Option<String>,
) -> Result<(JobRecord, Option<(u64, u64)>), CoreError> {
    if !gw.comfy.enabled() {
        return Err(CoreError::Unavailable("ComfyUI is not configured; add comfy.workers to the config".into()));
    }
    let lib = gw.comfy.library().ok_or_else(|| CoreError::Unavailable("no ComfyUI templates are loaded".into()))?;
    let rendered = lib.render(template, inputs, free_text).map_err(|e| CoreError::invalid(e.to_string()))?;
    let id = format!("job_{}", uuid::Uuid::new_v4().simple());
    let status = if hold_for_approval.is_some() { JobStatus::AwaitingApproval } else { JobStatus::Queued };
    let new = NewJob {
        id,
        template_id: template.to_owned(),
        inputs: serde_json::to_value(&rendered.inputs).unwrap_or(Value::Null),
        workflow: rendered.workflow,
        deliver_to,
        requested_by,
        approval_id: hold_for_approval,
        max_attempts: 3,
        status,
    };
    let job = gw.store.insert_job(&new, now_ms()).await?;
    let pos = gw.store.queue_position(&job.id).await.ok().flatten();
    job_event(gw, &job, json!({}));
    gw.comfy.kick.notify_one();
    Ok((job, pos))
}

/// Records a prompt a worker already runs (an approval granted on a ComfyUI-OpenClaw worker) as
/// a running job on it, and follows it like any other: progress, outputs, delivery to
/// `job.deliver_to`, reconciliation after a restart.
pub(crate) async fn adopt_prompt(
    gw: &Arc<Gateway>,
    worker: &Arc<Worker>,
    job: &NewJob,
    prompt_id: &str,
) -> Result<JobRecord, CoreError> {
    let record = gw.store.adopt_job(job, &worker.cfg.name, prompt_id, now_ms()).await?;
    job_event(gw, &record, json!({}));
    worker.running.fetch_add(1, Ordering::Relaxed);
    let (gw2, w2, job2, prompt) = (gw.clone(), worker.clone(), record.clone(), prompt_id.to_owned());
    tokio::spawn(async move {
        follow(&gw2, &w2, job2, prompt).await;
        w2.running.fetch_sub(1, Ordering::Relaxed);
        gw2.comfy.kick.notify_one();
    });
    Ok(record)
}

/// Cancel a job: a queued one never starts, a running one is interrupted on its worker.
pub async fn cancel(gw: &Arc<Gateway>, job_id: &str) -> Result<Option<JobRecord>, CoreError> {
    let before = gw.store.cancel_job(job_id, now_ms()).await?;
    if let Some(prev) = &before
        && let (Some(wname), Some(prompt)) = (&prev.worker, &prev.prompt_id)
        && let Some(w) = gw.comfy.workers().into_iter().find(|w| &w.cfg.name == wname)
    {
        let _ = w.client.cancel_pending(prompt).await;
        let _ = w.client.interrupt_prompt(prompt).await;
    }
    if let Ok(Some(j)) = gw.store.get_job(job_id).await {
        job_event(gw, &j, json!({}));
    }
    Ok(before)
}

/// The JSON clients see for a job.
pub async fn job_json(gw: &Gateway, job: &JobRecord) -> Value {
    let position = if job.status == JobStatus::Queued {
        gw.store.queue_position(&job.id).await.ok().flatten().map(|(p, t)| json!({"position": p, "total": t}))
    } else {
        None
    };
    // Each output's URL is a signed `/media/<token>`, good until its expiry, for this job only.
    let mut outputs = Vec::new();
    for o in job.outputs.as_array().into_iter().flatten() {
        let url = match o.get("filename").and_then(Value::as_str) {
            Some(name) => crate::media::signed_path(gw, job, name).await,
            None => None,
        };
        outputs.push(json!({"filename": o.get("filename"), "mediaUrl": url, "bytes": o.get("bytes")}));
    }
    json!({
        "id": job.id, "status": job.status.as_str(), "template": job.template_id, "inputs": job.inputs,
        "worker": job.worker, "promptId": job.prompt_id, "position": position, "attempts": job.attempts,
        "error": job.error, "progress": job.progress, "outputs": outputs,
        "createdAt": job.created_at_ms, "startedAt": job.started_at_ms, "endedAt": job.ended_at_ms,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn worker(name: &str, max: usize, weight: f64, running: usize, healthy: bool) -> Arc<Worker> {
        Arc::new(Worker {
            cfg: WorkerConfig {
                name: name.into(),
                url: clawgate_config::SecretUrl::new("http://127.0.0.1:1"),
                mode: "comfyui".into(),
                openclaw: None,
                max_concurrent: max,
                weight,
            },
            client: ComfyClient::new("http://127.0.0.1:1", "t").unwrap(),
            openclaw: None,
            healthy: AtomicBool::new(healthy),
            running: AtomicUsize::new(running),
            last_error: Mutex::new(None),
            queue_remaining: Mutex::new(None),
            remote: Mutex::new(RemoteInfo::default()),
        })
    }

    #[test]
    fn picks_the_least_loaded_healthy_worker_with_room() {
        let ws = vec![worker("a", 2, 1.0, 1, true), worker("b", 2, 1.0, 0, true), worker("c", 5, 1.0, 0, false)];
        assert_eq!(pick_worker(&ws).unwrap().cfg.name, "b");
        let ws = vec![worker("a", 1, 1.0, 1, true), worker("b", 1, 1.0, 1, true)];
        assert!(pick_worker(&ws).is_none(), "everyone is full");
        let ws = vec![worker("small", 4, 1.0, 1, true), worker("big", 4, 3.0, 2, true)];
        assert_eq!(
            pick_worker(&ws).unwrap().cfg.name,
            "big",
            "weight 3 with 2 running is lighter than weight 1 with 1"
        );
    }
}
