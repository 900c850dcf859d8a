//! Running jobs: the dispatcher, starting a prompt on a worker (natively or through the
//! ComfyUI-OpenClaw extension), following it to the end, storing its outputs, failing over, and
//! reconciling after a restart.

use std::path::PathBuf;
use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::Duration;

use serde_json::{Value, json};

use clawgate_comfy::client::{ComfyError, ComfyEvent, HistoryEntry, JobStatus as ComfyStatus};
use clawgate_comfy::openclaw::{BridgeSubmit, FireOutcome, OpenClawClient, OpenClawError};
use clawgate_store::{JobRecord, JobStatus, JobStore};

use crate::gateway::Gateway;
use crate::time::now_ms;

use super::delivery::{deliver_outputs, deliver_text};
use super::worker::{Worker, pick_worker};
use super::{job_event, job_json};

/// How long one job may run on a worker.
const JOB_TIMEOUT: Duration = Duration::from_secs(30 * 60);

/// How often a held job asks an `openclaw` worker whether its approval was decided.
const WORKER_APPROVAL_POLL: Duration = Duration::from_secs(1);

/// Tries of a bridge submit the extension rate-limited (429), waiting its `Retry-After`.
const RATE_LIMITED_TRIES: u32 = 3;

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

pub(super) async fn dispatcher(gw: Arc<Gateway>) {
    let cancel = gw.shutdown_token();
    loop {
        loop {
            let workers = gw.comfy.workers();
            let Some(worker) = pick_worker(&workers) else { break };
            match gw.store.claim_next_queued(&worker.cfg.name, now_ms()).await {
                Ok(Some(job)) => {
                    worker.running.fetch_add(1, Ordering::Relaxed);
                    let (gw2, w2) = (gw.clone(), worker.clone());
                    gw.tasks().spawn("comfy", async move {
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

pub(super) async fn follow(gw: &Arc<Gateway>, worker: &Arc<Worker>, job: JobRecord, prompt_id: String) {
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
                let tasks = gw.tasks().clone();
                tasks.spawn("comfy", async move {
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
    job_event(gw, &job, json!({"outputs": public.outputs}));
}

/// After a restart: jobs left dispatched or running are checked against their worker — finished
/// ones are completed and delivered, lost ones go back to the queue.
pub(super) async fn reconcile(gw: &Arc<Gateway>) {
    let Ok(active) = gw.store.active_jobs().await else { return };
    for job in active {
        let worker = gw.comfy.workers().into_iter().find(|w| Some(&w.cfg.name) == job.worker.as_ref());
        match (worker, job.prompt_id.clone()) {
            (Some(w), Some(prompt)) if w.healthy() => {
                if !w.client.knows_prompt(&prompt).await {
                    // Following it would wait JOB_TIMEOUT for a prompt that never finishes.
                    tracing::warn!(job = %job.id, worker = %w.cfg.name, "the worker no longer knows the job's prompt; requeued");
                    let _ = gw.store.requeue_job(&job.id, "the worker lost the job (restarted?)", now_ms()).await;
                    continue;
                }
                tracing::info!(job = %job.id, worker = %w.cfg.name, "resuming a job that was running at the last shutdown");
                w.running.fetch_add(1, Ordering::Relaxed);
                let gw2 = gw.clone();
                gw.tasks().spawn("comfy", async move {
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
                gw.tasks().spawn("comfy", async move {
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
