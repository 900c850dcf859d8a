//! `comfy.run`, `comfy.jobs.get|list|cancel`, `comfy.templates.list`, `comfy.workers.list`:
//! clawgate's own methods (no upstream schema), params and results.
//!
//! Params ignore unknown fields and read a field of the wrong type as absent, as the
//! hand-written readers did; the handler refuses what is missing with its own messages.

use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};

use super::{AnyParams, Checked, lenient};

/// `deliverTo` of `comfy.run`: the chat the results go to.
#[derive(Debug, Clone, Default, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct ComfyDeliverTo {
    /// The channel (required by the handler).
    #[serde(default, deserialize_with = "lenient::any")]
    pub channel: Option<String>,
    /// The chat id, a string or a number.
    #[serde(default, deserialize_with = "lenient::id")]
    pub chat_id: Option<String>,
    /// The chat id, upstream's spelling (when `chatId` is absent).
    #[serde(default, deserialize_with = "lenient::id")]
    pub to: Option<String>,
    /// The channel account (default `default`).
    #[serde(default, deserialize_with = "lenient::any")]
    pub account_id: Option<String>,
    /// The thread.
    #[serde(default, deserialize_with = "lenient::any")]
    pub thread_id: Option<String>,
}

/// `null` or absent → `None`; any other value → its decoding, or the default (every field
/// absent) when it is not an object.
fn object_or_default<'de, D, T>(deserializer: D) -> Result<Option<T>, D::Error>
where
    D: serde::Deserializer<'de>,
    T: serde::de::DeserializeOwned + Default,
{
    Ok(match Value::deserialize(deserializer)? {
        Value::Null => None,
        v => Some(serde_json::from_value(v).unwrap_or_default()),
    })
}

/// `comfy.run {templateId, inputs?, prompt?, deliverTo?}`.
#[derive(Debug, Clone, Default, PartialEq, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct ComfyRunParams {
    /// The template to run (required by the handler).
    #[serde(default, deserialize_with = "lenient::any")]
    pub template_id: Option<String>,
    /// The template's inputs, key → string, number or boolean (`Some(None)`: sent, but not an
    /// object). Open on purpose: the keys are the template's; the handler checks the values.
    #[serde(default, deserialize_with = "lenient::nullable")]
    pub inputs: Option<Option<Map<String, Value>>>,
    /// Free text for the template's prompt input.
    #[serde(default, deserialize_with = "lenient::any")]
    pub prompt: Option<String>,
    /// Where the results go.
    #[serde(default, deserialize_with = "object_or_default")]
    pub deliver_to: Option<ComfyDeliverTo>,
}

/// A job's place in the queue.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
pub struct QueuePosition {
    /// 1-based place.
    pub position: u64,
    /// Jobs waiting.
    pub total: u64,
}

/// `comfy.run` → `{jobId, status, position}`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct ComfyRunResult {
    /// The new job.
    pub job_id: String,
    /// Its status (`queued`, `held`, …).
    pub status: String,
    /// Its place in the queue, `null` when it is not queued.
    pub position: Option<QueuePosition>,
}

/// `comfy.jobs.get {jobId}` and `comfy.jobs.cancel {jobId}`.
#[derive(Debug, Clone, Default, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct ComfyJobIdParams {
    /// The job (required by the handler).
    #[serde(default, deserialize_with = "lenient::any")]
    pub job_id: Option<String>,
}

/// `comfy.jobs.get {jobId}`.
pub type ComfyJobsGetParams = ComfyJobIdParams;

/// `comfy.jobs.cancel {jobId}`.
pub type ComfyJobsCancelParams = ComfyJobIdParams;

/// A job as clients see it (`comfy.jobs.get|list`, `/trace`). Fields are declared in the
/// order of their wire names, so the object reads as it did when it was built as a JSON map.
#[derive(Debug, Clone, PartialEq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct ComfyJob {
    /// Dispatches so far.
    pub attempts: i64,
    /// When it was queued (ms since epoch).
    pub created_at: i64,
    /// When it reached a terminal status.
    pub ended_at: Option<i64>,
    /// The last failure.
    pub error: Option<String>,
    /// The job id.
    pub id: String,
    /// The inputs the template was rendered with.
    pub inputs: Value,
    /// Its stored outputs (empty until completed).
    pub outputs: Vec<ComfyJobOutput>,
    /// Its place in the queue while queued, else `null`.
    pub position: Option<QueuePosition>,
    /// The latest progress report (`{value, max}`), `null` before the first.
    pub progress: Option<Value>,
    /// ComfyUI's id of its prompt.
    pub prompt_id: Option<String>,
    /// When ComfyUI started the current attempt.
    pub started_at: Option<i64>,
    /// Where it stands (`queued`, `running`, `completed`, …).
    pub status: String,
    /// The template it was rendered from.
    pub template: String,
    /// The worker that holds (or last held) it.
    pub worker: Option<String>,
}

/// One stored output of a job.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct ComfyJobOutput {
    /// Its size.
    pub bytes: Option<u64>,
    /// Its stored file name.
    pub filename: Option<String>,
    /// A signed `/media/<token>` link to it, good until the token's expiry; `null` when no
    /// link could be signed.
    pub media_url: Option<String>,
}

/// `comfy.jobs.get` → `{job}`.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct ComfyJobsGetResult {
    /// The job.
    pub job: ComfyJob,
}

/// `comfy.jobs.list {status?, limit?}`.
#[derive(Debug, Clone, Default, PartialEq, Eq, Deserialize)]
pub struct ComfyJobsListParams {
    /// Only jobs in these statuses (each must be a job status: an item that is not a string is
    /// refused by the handler, as one that names no status).
    #[serde(default, deserialize_with = "lenient::any")]
    pub status: Option<Vec<Checked<String>>>,
    /// Most jobs (default 50, clamped to 1..=500).
    #[serde(default, deserialize_with = "lenient::any")]
    pub limit: Option<u64>,
}

/// `comfy.jobs.list` → `{jobs}`, newest first (each as in [`ComfyJobsGetResult`]).
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct ComfyJobsListResult {
    /// The jobs.
    pub jobs: Vec<ComfyJob>,
}

/// `comfy.jobs.cancel` → `{jobId, cancelled, status}`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct ComfyJobsCancelResult {
    /// The job named.
    pub job_id: String,
    /// Whether this call cancelled it.
    pub cancelled: bool,
    /// Its status now, `null` if there is no such job.
    pub status: Option<String>,
}

/// `comfy.templates.list` takes no params and ignores any.
pub type ComfyTemplatesListParams = AnyParams;

/// One loadable template.
#[derive(Debug, Clone, PartialEq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct ComfyTemplateEntry {
    /// The template id.
    pub id: String,
    /// Its description, `null` when it has none.
    pub description: Option<String>,
    /// The input keys a caller may set.
    pub allowed_inputs: Vec<String>,
    /// Values used for keys the caller does not set (the template's own keys and values).
    pub defaults: Map<String, Value>,
}

/// A template that could not be loaded.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct ComfyTemplateProblem {
    /// The template id, or the file name.
    pub id: String,
    /// Why it was not loaded.
    pub error: String,
}

/// `comfy.templates.list` → `{templates, errors}`.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct ComfyTemplatesListResult {
    /// The loaded templates, by id.
    pub templates: Vec<ComfyTemplateEntry>,
    /// The ones that could not be loaded.
    pub errors: Vec<ComfyTemplateProblem>,
}

/// `comfy.workers.list` takes no params and ignores any.
pub type ComfyWorkersListParams = AnyParams;

/// One worker as `comfy.workers.list` shows it. Fields are declared in the order of their wire
/// names, so the object reads as it did when it was built as a JSON map.
#[derive(Debug, Clone, PartialEq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct ComfyWorker {
    /// Whether its last probe succeeded.
    pub healthy: bool,
    /// `configured` (listed in `comfy.workers`) or `joined` (a `clawgate worker` that joined by
    /// itself).
    pub kind: String,
    /// The last probe or job error (URL passwords scrubbed), kept after it recovers.
    pub last_error: Option<String>,
    /// A joined worker's last heartbeat (ms since the epoch); `null` for a configured one.
    pub last_heartbeat: Option<i64>,
    /// Jobs this gateway runs on it at once.
    pub max_concurrent: usize,
    /// `comfyui` or `openclaw`.
    pub mode: String,
    /// Its configured name.
    pub name: String,
    /// Prompts in its own queue (running and pending) at the last probe.
    pub queue_remaining: Option<u64>,
    /// Jobs this gateway runs on it now.
    pub running: usize,
    /// The extension's template ids (mode `openclaw`), once read.
    pub templates: Option<Vec<String>>,
    /// Its base URL, any password redacted.
    pub url: String,
    /// ComfyUI's or the extension's version, from its last probe.
    pub version: Option<String>,
    /// Its relative capacity when jobs are spread.
    pub weight: f64,
}

/// `comfy.workers.list` → `{workers}`.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct ComfyWorkersListResult {
    /// One summary per configured worker.
    pub workers: Vec<ComfyWorker>,
}
