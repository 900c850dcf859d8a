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

/// `comfy.jobs.get` → `{job}`. The job object is built by the comfy service (signed media
/// URLs, worker, outputs); typing it is that service's step, so it is carried as JSON here.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct ComfyJobsGetResult {
    /// The job.
    pub job: Value,
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
    /// The jobs, as the comfy service shows them.
    pub jobs: Vec<Value>,
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

/// `comfy.workers.list` → `{workers}`. Each worker's summary (`name`, `url`, `mode`, `healthy`,
/// `queueRemaining`, `running`, …) is built by the comfy service's worker pool; typing it is
/// that service's step, so it is carried as JSON here.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct ComfyWorkersListResult {
    /// One summary per configured worker.
    pub workers: Vec<Value>,
}
