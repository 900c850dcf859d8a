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
//!
//! Here: [`ComfyService`] (config, templates, workers), start-up, submitting, cancelling and the
//! job JSON clients see. `worker` holds the workers and their probes, `jobs` the dispatcher and
//! a job's run on a worker, `delivery` the results' way to the chat, `commands` the chat
//! commands' work.

mod commands;
mod config;
mod delivery;
mod jobs;
mod webchat;
mod worker;

use std::collections::BTreeMap;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};

use parking_lot::{Mutex, RwLock};

use serde_json::{Value, json};
use tokio::sync::Notify;

use clawgate_comfy::client::ComfyClient;
use clawgate_comfy::templates::TemplateLibrary;
use clawgate_protocol::methods::comfy::{ComfyJob, ComfyJobOutput, QueuePosition};
use clawgate_store::{JobRecord, JobStatus, JobStore, NewJob};

use crate::error::CoreError;
use crate::gateway::Gateway;
use crate::time::now_ms;

pub(crate) use commands::{APPROVAL_KIND, Decided, decide_approval, run_command};
pub use config::{ComfyConfig, OpenClawAuth, WorkerConfig};
use jobs::{dispatcher, follow, reconcile};
pub use worker::Worker;
use worker::{RemoteInfo, openclaw_client, probe, probe_loop};

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
        self.cfg.read().is_some()
    }

    /// The config in force.
    pub fn config(&self) -> Option<Arc<ComfyConfig>> {
        self.cfg.read().clone()
    }

    /// The loaded templates, reloaded first when a file in the templates directory changed
    /// (so a fixed template is picked up without a restart or a config change).
    pub fn library(&self) -> Option<Arc<TemplateLibrary>> {
        if let Some(cfg) = self.config() {
            let now = dir_fingerprint(&cfg.templates_dir);
            let mut seen = self.templates_seen.lock();
            if seen.as_ref() != Some(&now) {
                *self.library.write() = load_templates(&cfg.templates_dir);
                *seen = Some(now);
            }
        }
        self.library.read().clone()
    }

    /// The workers.
    pub fn workers(&self) -> Vec<Arc<Worker>> {
        self.workers.read().clone()
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
    *gw.comfy.library.write() = load_templates(&cfg.templates_dir);
    *gw.comfy.templates_seen.lock() = Some(seen);
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
    *gw.comfy.workers.write() = workers.clone();
    *gw.comfy.cfg.write() = Some(Arc::new(cfg));
    for w in &workers {
        probe(gw, w).await;
        gw.tasks().spawn("comfy", probe_loop(gw.clone(), w.clone()));
    }
    reconcile(gw).await;
    gw.tasks().spawn("comfy", dispatcher(gw.clone()));
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
    gw.tasks().spawn("comfy", async move {
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

/// A job as clients see it.
pub async fn job_json(gw: &Gateway, job: &JobRecord) -> ComfyJob {
    let position = if job.status == JobStatus::Queued {
        gw.store.queue_position(&job.id).await.ok().flatten().map(|(position, total)| QueuePosition { position, total })
    } else {
        None
    };
    // Each output's URL is a signed `/media/<token>`, good until its expiry, for this job only.
    let mut outputs = Vec::new();
    for o in job.outputs.as_array().into_iter().flatten() {
        let filename = o.get("filename").and_then(Value::as_str).map(str::to_owned);
        let media_url = match &filename {
            Some(name) => gw.media.signed_path(job, name).await,
            None => None,
        };
        outputs.push(ComfyJobOutput { bytes: o.get("bytes").and_then(Value::as_u64), filename, media_url });
    }
    ComfyJob {
        attempts: job.attempts,
        created_at: job.created_at_ms,
        ended_at: job.ended_at_ms,
        error: job.error.clone(),
        id: job.id.clone(),
        inputs: job.inputs.clone(),
        outputs,
        position,
        progress: job.progress.clone(),
        prompt_id: job.prompt_id.clone(),
        started_at: job.started_at_ms,
        status: job.status.as_str().to_owned(),
        template: job.template_id.clone(),
        worker: job.worker.clone(),
    }
}
