//! What the dispatcher of `clawgate-comfy` gets from the gateway ([`JobHost`]): the job store,
//! the task tracker, `comfy.job` events, and delivery to the chat that asked — a channel's
//! outbox ([`super::delivery`]) or a web chat session ([`super::webchat`]).

use std::future::Future;
use std::sync::Arc;

use serde_json::{Value, json};
use tokio_util::sync::CancellationToken;

use clawgate_comfy::dispatch::{JobChange, JobHost};
use clawgate_protocol::methods::comfy::ComfyJob;
use clawgate_store::JobRecord;

use crate::channels::Outbox;
use crate::config_service::ConfigService;
use crate::events::Events;
use crate::gateway::Store;
use crate::media::MediaSigner;
use crate::tasks::Tasks;
use crate::time::now_ms;

use super::{delivery, webchat};

/// The handles ComfyUI jobs use. Cheap to clone.
#[derive(Clone)]
pub(crate) struct Host {
    store: Store,
    events: Events,
    tasks: Tasks,
    /// Chat platforms' deliveries (store + the account senders' wake-ups).
    pub(super) outbox: Outbox,
    /// Links to stored outputs.
    pub(super) media: MediaSigner,
    /// The agents' default (a web chat session key without an agent belongs to it).
    pub(super) config: ConfigService,
    /// Web chat deliveries check the transcript and append one at a time, so two deliveries of
    /// one key never both find it missing.
    pub(super) webchat_delivering: Arc<tokio::sync::Mutex<()>>,
    /// Job durations.
    metrics: crate::metrics::Metrics,
}

impl Host {
    pub(super) fn new(
        store: Store,
        events: Events,
        tasks: Tasks,
        outbox: Outbox,
        media: MediaSigner,
        config: ConfigService,
        metrics: crate::metrics::Metrics,
    ) -> Self {
        Self { store, events, tasks, outbox, media, config, webchat_delivering: Arc::default(), metrics }
    }

    pub(super) fn store(&self) -> &Store {
        &self.store
    }

    pub(super) fn events(&self) -> &Events {
        &self.events
    }

    pub(super) fn tasks(&self) -> &Tasks {
        &self.tasks
    }

    /// A job as clients see it.
    pub(super) async fn job_view(&self, job: &JobRecord) -> ComfyJob {
        super::job_view(&self.store, &self.media, job).await
    }

    /// Broadcast a `comfy.job` event (state, and `extra` as one more key) to operator clients.
    pub(super) fn job_event(&self, job: &JobRecord, extra: Option<(&str, Value)>) {
        let mut payload = json!({"jobId": job.id, "status": job.status.as_str(), "template": job.template_id,
                                 "worker": job.worker, "promptId": job.prompt_id, "ts": now_ms()});
        if let (Some(p), Some((key, value))) = (payload.as_object_mut(), extra) {
            p.insert(key.to_owned(), value);
        }
        self.events.comfy_job(&payload);
    }
}

impl JobHost for Host {
    type Jobs = Store;

    fn jobs(&self) -> &Store {
        &self.store
    }

    fn spawn(&self, task: impl Future<Output = ()> + Send + 'static) {
        self.tasks.spawn("comfy", task);
    }

    fn shutdown(&self) -> CancellationToken {
        self.tasks.token()
    }

    async fn job_changed(&self, job: &JobRecord, change: JobChange) {
        if matches!(change, JobChange::Completed | JobChange::Failed(_))
            && let (Some(start), Some(end)) = (job.started_at_ms, job.ended_at_ms)
        {
            let ms = u64::try_from(end.saturating_sub(start)).unwrap_or(0);
            self.metrics.comfy_job_finished(std::time::Duration::from_millis(ms));
        }
        let extra = match change {
            JobChange::State => None,
            JobChange::Progress(p) => Some(("progress", p)),
            JobChange::WorkerApproval(id) => Some(("workerApproval", Value::String(id))),
            JobChange::Failed(e) => Some(("error", Value::String(e))),
            // Clients see the outputs as the job view shows them (signed media URLs, no paths).
            JobChange::Completed => {
                let outputs = self.job_view(job).await.outputs;
                Some(("outputs", serde_json::to_value(outputs).unwrap_or(Value::Null)))
            }
        };
        self.job_event(job, extra);
    }

    async fn deliver_text(&self, job: &JobRecord, key: &str, text: &str) {
        if webchat::is_target(job) {
            return webchat::deliver_text(self, job, key, text).await;
        }
        delivery::deliver_text(&self.outbox, job, key, text).await;
    }

    async fn deliver_outputs(&self, job: &JobRecord, problems: &[String]) {
        if webchat::is_target(job) {
            return webchat::deliver_outputs(self, job, problems).await;
        }
        delivery::deliver_outputs(&self.outbox, &self.media, job, problems).await;
    }

    fn crash_point(&self, point: &'static str) {
        clawgate_channels::fault::crash_point(point);
    }
}
