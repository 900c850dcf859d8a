//! ComfyUI jobs in the gateway: the [`ComfyService`] handle (config, the worker pool and the
//! dispatcher of `clawgate-comfy`), submitting and cancelling jobs, the job view clients see,
//! and the way results reach the chat that asked.
//!
//! ```text
//! /run tmpl k=v (chat) | comfy.run (WS) | cron | agent tool → template rendered → job row `queued`
//!   → clawgate_comfy::dispatch: worker picked, prompt started and followed, outputs stored
//!   → JobHost (here): `comfy.job` events, each image into the chat's outbox or the web chat
//!     session (idempotent per job and file) → sent once
//! ```
//!
//! The pool and the dispatcher make every ComfyUI decision (which worker, failover, reconcile
//! after a restart); this module only tells clients and delivers, through [`host::Host`]. The
//! chat commands' work is in `commands`, the web chat delivery in `webchat`.

mod commands;
mod config;
mod delivery;
mod host;
mod status;
mod webchat;
mod worker_methods;

use std::collections::BTreeMap;
use std::path::Path;
use std::sync::Arc;

use parking_lot::RwLock;
use serde_json::Value;

use clawgate_comfy::dispatch::{Dispatcher, OutputLimits, WorkerLeases};
use clawgate_comfy::pool::Pool;
use clawgate_comfy::templates::TemplateLibrary;
use clawgate_protocol::methods::comfy::{ComfyJob, ComfyJobOutput, QueuePosition};
use clawgate_store::{JobQuery, JobRecord, JobStatus, JobStore, NewJob};

use crate::channels::Outbox;
use crate::config_service::ConfigService;
use crate::error::CoreError;
use crate::events::Events;
use crate::gateway::Store;
use crate::media::MediaSigner;
use crate::tasks::Tasks;
use crate::time::now_ms;

pub use clawgate_comfy::pool::{OpenClawAuth, Worker, WorkerConfig};
pub(crate) use commands::{APPROVAL_KIND, Decided, LocalSchedules};
pub use config::ComfyConfig;

use host::Host;

/// ComfyUI in the gateway. Cheap to clone: clones share the pool and the dispatcher.
#[derive(Clone)]
pub struct ComfyService {
    inner: Arc<Inner>,
}

struct Inner {
    host: Host,
    config: ConfigService,
    /// Set by [`ComfyService::start`] when `comfy.*` is configured.
    running: RwLock<Option<Running>>,
    /// What [`ComfyService::start`] was given (boot id, state dir), so a reload can start
    /// ComfyUI when the config gains a `comfy` section. `None` before the start.
    started: RwLock<Option<(String, std::path::PathBuf)>>,
    /// One reload at a time (two config changes never interleave their pool swaps).
    reload: tokio::sync::Mutex<()>,
    /// Several gateways on one database: each configured worker is driven by the holder of its
    /// lease. `None`: this gateway drives every worker.
    leases: RwLock<Option<Arc<dyn WorkerLeases>>>,
}

/// ComfyUI as started: its config, workers and dispatcher.
struct Running {
    cfg: Arc<ComfyConfig>,
    dispatcher: Dispatcher<Host>,
}

impl std::fmt::Debug for ComfyService {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ComfyService").field("enabled", &self.enabled()).finish_non_exhaustive()
    }
}

impl ComfyService {
    /// ComfyUI over these handles; off until [`ComfyService::start`].
    pub fn new(
        store: Store,
        events: Events,
        tasks: Tasks,
        outbox: Outbox,
        media: MediaSigner,
        config: ConfigService,
        metrics: crate::metrics::Metrics,
    ) -> Self {
        let host = Host::new(store, events, tasks, outbox, media, config.clone(), metrics);
        Self {
            inner: Arc::new(Inner {
                host,
                config,
                running: RwLock::new(None),
                started: RwLock::new(None),
                reload: tokio::sync::Mutex::new(()),
                leases: RwLock::new(None),
            }),
        }
    }

    /// Share the workers with other gateways: from the next [`ComfyService::start`] on, a
    /// configured worker is driven only while `leases` says this gateway holds it.
    pub fn share_workers(&self, leases: Arc<dyn WorkerLeases>) {
        *self.inner.leases.write() = Some(leases);
    }

    /// Read `comfy.*`, load the templates, start the probes and the dispatcher, and reconcile
    /// jobs a previous run left dispatched or running. `boot_id` names this gateway to ComfyUI;
    /// outputs are stored under `<state_dir>/media/<job>/`.
    pub async fn start(&self, boot_id: &str, state_dir: &Path) {
        *self.inner.started.write() = Some((boot_id.to_owned(), state_dir.to_owned()));
        let current = self.inner.config.current();
        let cfg = match ComfyConfig::from_config(&current.config, current.base_dir()) {
            Ok(Some(c)) => c,
            Ok(None) => return,
            Err(e) => {
                tracing::error!(error = %e, "comfy config is invalid; ComfyUI jobs are off");
                return;
            }
        };
        let pool = Arc::new(Pool::new(&cfg.workers, &cfg.templates_dir, &format!("clawgate-{boot_id}")));
        let limits =
            OutputLimits { media_dir: state_dir.join("media"), max_images: cfg.max_images, max_bytes: cfg.max_bytes };
        let leases = self.inner.leases.read().clone();
        let dispatcher = match leases {
            Some(leases) => Dispatcher::with_leases(pool, self.inner.host.clone(), limits, leases),
            None => Dispatcher::new(pool, self.inner.host.clone(), limits),
        };
        *self.inner.running.write() = Some(Running { cfg: Arc::new(cfg), dispatcher: dispatcher.clone() });
        dispatcher.start().await;
    }

    /// Apply the `comfy.*` of the config in force to the running gateway, without a restart:
    /// changed workers or templates directory → the pool is rebuilt in place
    /// ([`Dispatcher::replace_pool`]: queued jobs stay queued and go to the new pool, a job
    /// running on a removed worker is followed to its end there); commands, approvals and
    /// delivery limits take effect for the next command or job. A `comfy` section added starts
    /// ComfyUI; one removed stops taking jobs (queued ones wait, running ones finish).
    pub async fn reload(&self) -> ComfyReload {
        let _one = self.inner.reload.lock().await;
        let Some((boot_id, state_dir)) = self.inner.started.read().clone() else {
            return ComfyReload::Failed("the gateway has not started ComfyUI yet".into());
        };
        let current = self.inner.config.current();
        let cfg = match ComfyConfig::from_config(&current.config, current.base_dir()) {
            Ok(c) => c,
            Err(e) => return ComfyReload::Failed(e),
        };
        let running = self.inner.running.read().as_ref().map(|r| (r.cfg.clone(), r.dispatcher.clone()));
        match (cfg, running) {
            (None, None) => ComfyReload::Applied,
            (None, Some((_, dispatcher))) => {
                *self.inner.running.write() = None;
                dispatcher.stop();
                tracing::info!("comfy section removed: ComfyUI jobs are off (queued ones wait, running ones finish)");
                ComfyReload::Restarted { problems: Vec::new() }
            }
            (Some(_), None) => {
                // Starts like at boot, reconciling what an earlier run left unfinished.
                self.start(&boot_id, &state_dir).await;
                if self.enabled() {
                    tracing::info!("comfy section added: ComfyUI jobs are on");
                    ComfyReload::Restarted { problems: Vec::new() }
                } else {
                    ComfyReload::Failed("ComfyUI could not be started (see the log)".into())
                }
            }
            (Some(cfg), Some((old, dispatcher))) => {
                let limits = OutputLimits {
                    media_dir: state_dir.join("media"),
                    max_images: cfg.max_images,
                    max_bytes: cfg.max_bytes,
                };
                let rebuild = cfg.workers != old.workers || cfg.templates_dir != old.templates_dir;
                let mut problems = Vec::new();
                if rebuild {
                    let (pool, p) = Pool::rebuild(
                        Some(&*dispatcher.pool()),
                        &cfg.workers,
                        &cfg.templates_dir,
                        &format!("clawgate-{boot_id}"),
                    );
                    problems = p;
                    dispatcher.replace_pool(Arc::new(pool), limits).await;
                    tracing::info!(
                        workers = cfg.workers.len(),
                        "ComfyUI workers reloaded; queued jobs go to the new pool"
                    );
                } else {
                    dispatcher.replace_limits(limits);
                }
                if let Some(r) = self.inner.running.write().as_mut() {
                    r.cfg = Arc::new(cfg);
                }
                if rebuild { ComfyReload::Restarted { problems } } else { ComfyReload::Applied }
            }
        }
    }

    fn dispatcher(&self) -> Option<Dispatcher<Host>> {
        self.inner.running.read().as_ref().map(|r| r.dispatcher.clone())
    }

    /// Is ComfyUI configured (any worker)?
    pub fn enabled(&self) -> bool {
        self.inner.running.read().is_some()
    }

    /// The config in force.
    pub fn config(&self) -> Option<Arc<ComfyConfig>> {
        self.inner.running.read().as_ref().map(|r| r.cfg.clone())
    }

    /// The loaded templates, reloaded first when a file in the templates directory changed.
    pub fn library(&self) -> Option<Arc<TemplateLibrary>> {
        self.dispatcher()?.pool().library()
    }

    /// The workers: the configured ones, then those that joined by themselves.
    pub fn workers(&self) -> Vec<Arc<Worker>> {
        self.dispatcher()
            .map(|d| {
                let mut all = d.pool().workers().to_vec();
                all.extend(d.joined().workers());
                all
            })
            .unwrap_or_default()
    }

    /// Workers in mode `openclaw`.
    fn openclaw_workers(&self) -> Vec<Arc<Worker>> {
        self.dispatcher().map(|d| d.pool().openclaw_workers()).unwrap_or_default()
    }

    /// Wake the dispatcher: a job may have become runnable (an approval released it).
    pub fn kick(&self) {
        if let Some(d) = self.dispatcher() {
            d.pool().kick();
        }
    }

    fn store(&self) -> &Store {
        self.inner.host.store()
    }

    fn events(&self) -> &Events {
        self.inner.host.events()
    }

    /// Render a template and queue a job. Returns the job and its queue position.
    pub async fn submit(
        &self,
        template: &str,
        inputs: &BTreeMap<String, String>,
        free_text: Option<&str>,
        deliver_to: Option<Value>,
        requested_by: Option<Value>,
        hold_for_approval: Option<String>,
    ) -> Result<(JobRecord, Option<(u64, u64)>), CoreError> {
        let Some(dispatcher) = self.dispatcher() else {
            return Err(CoreError::Unavailable("ComfyUI is not configured; add comfy.workers to the config".into()));
        };
        let lib = dispatcher
            .pool()
            .library()
            .ok_or_else(|| CoreError::Unavailable("no ComfyUI templates are loaded".into()))?;
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
        let job = self.store().insert_job(&new, now_ms()).await?;
        // Announce it before anything else awaits: a worker loop that is already polling may
        // claim the row at once, and its `dispatched` must not reach clients before `queued`.
        self.inner.host.job_event(&job, None);
        let pos = self.store().queue_position(&job.id).await.ok().flatten();
        dispatcher.pool().kick();
        Ok((job, pos))
    }

    /// Records a prompt a worker already runs (an approval granted on a ComfyUI-OpenClaw
    /// worker) as a running job on it, and follows it like any other.
    pub(crate) async fn adopt_prompt(
        &self,
        worker: &Arc<Worker>,
        job: &NewJob,
        prompt_id: &str,
    ) -> Result<JobRecord, CoreError> {
        let dispatcher = self.dispatcher().ok_or_else(|| CoreError::Unavailable("ComfyUI is not configured".into()))?;
        Ok(dispatcher.adopt(worker, job, prompt_id).await?)
    }

    /// Cancel a job: a queued one never starts, a running one is interrupted on its worker.
    pub async fn cancel(&self, job_id: &str) -> Result<Option<JobRecord>, CoreError> {
        match self.dispatcher() {
            Some(d) => Ok(d.cancel(job_id).await?),
            // Without workers nothing runs: the queue row is all there is to cancel.
            None => {
                let before = self.store().cancel_job(job_id, now_ms()).await?;
                if let Ok(Some(j)) = self.store().get_job(job_id).await {
                    self.inner.host.job_event(&j, None);
                }
                Ok(before)
            }
        }
    }

    /// The job with this id.
    pub async fn get_job(&self, id: &str) -> Result<Option<JobRecord>, CoreError> {
        Ok(self.store().get_job(id).await?)
    }

    /// Jobs, newest first.
    pub async fn list_jobs(&self, query: &JobQuery) -> Result<Vec<JobRecord>, CoreError> {
        Ok(self.store().list_jobs(query).await?)
    }

    /// A job as clients see it.
    pub async fn job_view(&self, job: &JobRecord) -> ComfyJob {
        self.inner.host.job_view(job).await
    }
}

/// What a `comfy.*` reload did ([`ComfyService::reload`]).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ComfyReload {
    /// Nothing needed restarting: the new settings (commands, approvals, delivery limits) are
    /// in force for the next command or job.
    Applied,
    /// The worker pool was rebuilt, started or stopped. `problems` names each configured worker
    /// that could not be used (left out of the pool).
    Restarted {
        /// One line per worker left out, naming it and why.
        problems: Vec<String>,
    },
    /// Nothing changed; the previous ComfyUI setup stays in force.
    Failed(String),
}

/// A job as clients see it: its queue place while queued, and a signed `/media/<token>` link
/// (good until its expiry, for this job only) for each output — never a local path.
async fn job_view(store: &Store, media: &MediaSigner, job: &JobRecord) -> ComfyJob {
    let position = if job.status == JobStatus::Queued {
        store.queue_position(&job.id).await.ok().flatten().map(|(position, total)| QueuePosition { position, total })
    } else {
        None
    };
    let mut outputs = Vec::new();
    for o in job.outputs.as_array().into_iter().flatten() {
        let filename = o.get("filename").and_then(Value::as_str).map(str::to_owned);
        let media_url = match &filename {
            Some(name) => media.signed_path(job, name).await,
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
