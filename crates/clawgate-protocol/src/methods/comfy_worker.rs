//! `comfy.worker.*`: the methods a ComfyUI worker that joins by itself (`clawgate worker`) calls
//! over its own connection, authenticated with a worker token (scope [`crate::scopes::WORKER`],
//! which allows these methods and nothing else).
//!
//! ```text
//! worker                                   gateway
//!   comfy.worker.join {name, capacity, …} → the pool gains worker `name` (kind `joined`)
//!   comfy.worker.pull {waitMs}            → {job: {jobId, attempt, workflow, tag}} | {job: null}
//!   comfy.worker.progress {jobId, attempt, promptId?, value?, max?} → {continue}
//!   comfy.worker.output {jobId, attempt, filename, offset, data (base64), last} → {bytes}
//!   comfy.worker.done {jobId, attempt, ok, error?, transient?} → {accepted}
//!   comfy.worker.heartbeat {}             → {heartbeatMs}
//! ```
//!
//! The gateway owns the durable queue: a job is handed to one worker at a time, and every report
//! names the job *and* its attempt, so a worker that was given up on (its socket closed, its
//! heartbeats stopped) and comes back cannot complete a job that has since been requeued.

use serde::{Deserialize, Serialize};
use serde_json::Value;

/// Largest decoded output chunk a worker may send in one `comfy.worker.output` (1 MiB).
pub const MAX_OUTPUT_CHUNK: usize = 1 << 20;

/// The longest a `comfy.worker.pull` waits for a job before answering `{job: null}`.
pub const MAX_PULL_WAIT_MS: u64 = 25_000;

/// `comfy.worker.join`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct WorkerJoinParams {
    /// The worker's name (unique among workers; the same name rejoining replaces the old one).
    pub name: String,
    /// The local ComfyUI's version, if known.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub comfy_version: Option<String>,
    /// Template ids the worker has, if it says.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub templates: Option<Vec<String>>,
    /// Jobs it runs at once (1–64).
    pub capacity: usize,
}

/// `comfy.worker.join` → the name it joined as and how often to heartbeat.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct WorkerJoinResult {
    /// The name it joined as.
    pub name: String,
    /// Send `comfy.worker.heartbeat` at least this often (milliseconds).
    pub heartbeat_ms: u64,
    /// It was a rejoin: an entry of that name was replaced.
    pub replaced: bool,
}

/// `comfy.worker.pull`.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct WorkerPullParams {
    /// Wait at most this long for a job (capped at [`MAX_PULL_WAIT_MS`]; default the cap).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub wait_ms: Option<u64>,
}

/// A job handed to a worker.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct WorkerJob {
    /// The job id.
    pub job_id: String,
    /// Its attempt: every report names it.
    pub attempt: u32,
    /// The rendered ComfyUI API-format workflow to `POST /prompt`.
    pub workflow: Value,
    /// `<job id>-<attempt>`: put into the prompt's `extra_data`, so the worker finds its prompt again.
    pub tag: String,
}

/// `comfy.worker.pull` → a job, or `null` when none came within the wait.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct WorkerPullResult {
    /// The job to run.
    pub job: Option<WorkerJob>,
}

/// `comfy.worker.progress`: the prompt started (`promptId`) and/or progressed (`value`/`max`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct WorkerProgressParams {
    /// The job id.
    pub job_id: String,
    /// Its attempt.
    pub attempt: u32,
    /// The local ComfyUI's prompt id, once it accepted the prompt.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub prompt_id: Option<String>,
    /// Steps done.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub value: Option<u64>,
    /// Steps in all.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub max: Option<u64>,
}

/// `comfy.worker.progress` → whether to go on (`false`: the job was cancelled or taken away;
/// interrupt it).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct WorkerProgressResult {
    /// Go on with the job.
    #[serde(rename = "continue")]
    pub go_on: bool,
}

/// `comfy.worker.output`: one chunk of one output file.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct WorkerOutputParams {
    /// The job id.
    pub job_id: String,
    /// Its attempt.
    pub attempt: u32,
    /// The file's name as ComfyUI gave it.
    pub filename: String,
    /// Where this chunk starts in the file (chunks come in order).
    pub offset: u64,
    /// The chunk, base64 (at most [`MAX_OUTPUT_CHUNK`] bytes decoded).
    pub data: String,
    /// The file's last chunk.
    pub last: bool,
}

/// `comfy.worker.output` → bytes of the file received so far.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct WorkerOutputResult {
    /// Bytes of the file received so far.
    pub bytes: u64,
}

/// `comfy.worker.done`: the job ended on the worker.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct WorkerDoneParams {
    /// The job id.
    pub job_id: String,
    /// Its attempt.
    pub attempt: u32,
    /// It completed (its outputs were sent with `comfy.worker.output`).
    pub ok: bool,
    /// Why it failed.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
    /// The failure is the worker's, not the job's (its ComfyUI is unreachable): run the job
    /// elsewhere.
    #[serde(default)]
    pub transient: bool,
}

/// `comfy.worker.done` → whether the report counted (`false`: the job was no longer this
/// worker's, e.g. requeued after it was given up on; nothing changed).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct WorkerDoneResult {
    /// The report counted.
    pub accepted: bool,
}

/// `comfy.worker.heartbeat`: what the worker's last look at its local ComfyUI found.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct WorkerHeartbeatParams {
    /// Why the local ComfyUI did not answer (`null`: it did; the worker takes jobs).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub comfy_error: Option<String>,
    /// Prompts in the local ComfyUI's queue (running and pending).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub queue_remaining: Option<u64>,
}

/// `comfy.worker.heartbeat` → the interval to keep.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct WorkerHeartbeatResult {
    /// Send the next heartbeat within this many milliseconds.
    pub heartbeat_ms: u64,
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn params_round_trip_and_refuse_unknown_fields() {
        let p: WorkerJoinParams = serde_json::from_value(json!({"name": "gpu1", "capacity": 2})).unwrap();
        assert_eq!(p.capacity, 2);
        assert_eq!(serde_json::to_value(&p).unwrap(), json!({"name": "gpu1", "capacity": 2}));
        assert!(serde_json::from_value::<WorkerJoinParams>(json!({"name": "g", "capacity": 1, "x": 1})).is_err());
        let r = WorkerProgressResult { go_on: false };
        assert_eq!(serde_json::to_value(&r).unwrap(), json!({"continue": false}));
        let d: WorkerDoneParams = serde_json::from_value(json!({"jobId": "j", "attempt": 1, "ok": true})).unwrap();
        assert!(!d.transient && d.error.is_none());
    }
}
