//! `cron.list|status|add|update|remove|run|runs`: params and results.
//!
//! Results follow upstream's `CronJob` and `CronRunLogEntry` as far as clawgate runs them
//! (`schedule` is `cron`, `every` or `at`; `payload` is `agentTurn` or clawgate's own
//! `comfyRun`). Params accept upstream's `Cron*Params` but, as clawgate always did, ignore the
//! fields it does not run and read a field of the wrong type where it never refused one as
//! absent; the handler checks the rest with its own messages (`invalid cron.add params: …`).

use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};

use super::{AnyParams, Checked, lenient};

/// Which jobs `cron.list` shows by their `enabled` flag.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum CronEnabledFilter {
    /// Every job.
    All,
    /// Enabled jobs only (the default without `includeDisabled`).
    Enabled,
    /// Disabled jobs only.
    Disabled,
}

/// The order of `cron.list`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
pub enum CronSortBy {
    /// Next run first (the default); jobs without one last.
    #[serde(rename = "nextRunAtMs")]
    NextRunAtMs,
    /// Least recently updated first.
    #[serde(rename = "updatedAtMs")]
    UpdatedAtMs,
    /// As stored (by name).
    #[serde(rename = "name")]
    Name,
}

/// A sort direction.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum SortDir {
    /// Ascending.
    Asc,
    /// Descending.
    Desc,
}

/// `cron.list {includeDisabled?, enabled?, query?, agentId?, sortBy?, sortDir?, limit?, offset?}`
/// (schema `CronListParams`; its other filters are ignored).
#[derive(Debug, Clone, Default, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct CronListParams {
    /// Show disabled jobs too (when `enabled` is absent).
    #[serde(default, deserialize_with = "lenient::any")]
    pub include_disabled: Option<bool>,
    /// Filter by the enabled flag.
    #[serde(default, deserialize_with = "lenient::any")]
    pub enabled: Option<CronEnabledFilter>,
    /// Case-insensitive substring of the name or id.
    #[serde(default, deserialize_with = "lenient::any")]
    pub query: Option<String>,
    /// Only jobs running as this agent (the default agent for jobs that name none).
    #[serde(default, deserialize_with = "lenient::any")]
    pub agent_id: Option<String>,
    /// Order.
    #[serde(default, deserialize_with = "lenient::any")]
    pub sort_by: Option<CronSortBy>,
    /// Direction.
    #[serde(default, deserialize_with = "lenient::any")]
    pub sort_dir: Option<SortDir>,
    /// Page size (default 50, clamped to 1..=200).
    #[serde(default, deserialize_with = "lenient::any")]
    pub limit: Option<u64>,
    /// Page start.
    #[serde(default, deserialize_with = "lenient::any")]
    pub offset: Option<u64>,
}

/// `cron.status` takes no params and ignores any.
pub type CronStatusParams = AnyParams;

/// `schedule` as sent: `{kind:"cron", expr, tz?}`, `{kind:"every", everyMs, anchorMs?}` or
/// `{kind:"at", at}`; other kinds decode so that the handler can name what it does not run.
#[derive(Debug, Clone, Default, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct CronScheduleParams {
    /// `cron`, `every` or `at` (anything else is refused by the handler).
    #[serde(default, deserialize_with = "lenient::any")]
    pub kind: Option<String>,
    /// `cron`: the expression (5 fields, or 6 with seconds first).
    #[serde(default, deserialize_with = "lenient::any")]
    pub expr: Option<String>,
    /// `cron`: IANA zone (UTC when absent or empty).
    #[serde(default, deserialize_with = "lenient::any")]
    pub tz: Option<String>,
    /// `every`: the interval in milliseconds (the handler checks its type and bounds).
    #[serde(default)]
    pub every_ms: Checked<i64>,
    /// `every`: the time slots count from (ms since the epoch; when the job is saved if absent).
    #[serde(default)]
    pub anchor_ms: Checked<i64>,
    /// `at`: the one time it fires: ISO 8601 (UTC when it has no offset) or ms since the epoch.
    #[serde(default, deserialize_with = "lenient::any")]
    pub at: Option<String>,
}

/// `delivery` as sent: `{mode:"announce", channel, to, accountId?, threadId?}` or
/// `{mode:"none"}`.
#[derive(Debug, Clone, Default, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct CronDeliveryParams {
    /// `announce` or `none` (others are refused by the handler).
    #[serde(default, deserialize_with = "lenient::any")]
    pub mode: Option<String>,
    /// The channel (`last` is not tracked by clawgate).
    #[serde(default, deserialize_with = "lenient::any")]
    pub channel: Option<String>,
    /// The chat id, a string or a number.
    #[serde(default, deserialize_with = "lenient::id")]
    pub to: Option<String>,
    /// The channel account (default `default`).
    #[serde(default, deserialize_with = "lenient::any")]
    pub account_id: Option<String>,
    /// The thread, a string or a number.
    #[serde(default, deserialize_with = "lenient::id")]
    pub thread_id: Option<String>,
}

/// The job fields `cron.add` sets and a `cron.update` patch changes. Absent fields are left as
/// they are; `null` clears the nullable ones (`Some(None)`).
#[derive(Debug, Clone, Default, PartialEq, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct CronJobFields {
    /// The job's name (non-empty; `Some(None)`: sent, but not a string).
    #[serde(default, deserialize_with = "lenient::nullable")]
    pub name: Option<Option<String>>,
    /// Whether it fires (`Some(None)`: sent, but not a boolean).
    #[serde(default, deserialize_with = "lenient::nullable")]
    pub enabled: Option<Option<bool>>,
    /// When it fires (`Some(None)`: sent, but not an object).
    #[serde(default, deserialize_with = "lenient::nullable")]
    pub schedule: Option<Option<CronScheduleParams>>,
    /// What it runs: `{kind, …}` (`Some(None)`: sent, but not an object). An open object on
    /// purpose: a patch merges it key by key into the stored payload (`null` removes a key), and
    /// a `comfyRun` payload's keys are the template's; the handler checks the kind and its
    /// required keys.
    #[serde(default, deserialize_with = "lenient::nullable")]
    pub payload: Option<Option<Map<String, Value>>>,
    /// The agent it runs as (`null`, empty or not a string: the default agent).
    #[serde(default, deserialize_with = "lenient::nullable")]
    pub agent_id: Option<Option<String>>,
    /// `isolated`, `main`, `session:<key>` (`current` is refused: there is no calling session).
    #[serde(default, deserialize_with = "lenient::any")]
    pub session_target: Option<String>,
    /// The session it runs in (`null`, empty or not a string: its own).
    #[serde(default, deserialize_with = "lenient::nullable")]
    pub session_key: Option<Option<String>>,
    /// Where its results are announced: `Some(None)` for `null` (nowhere); any other value is
    /// read as a delivery object (a non-object one has no `mode`, which the handler refuses).
    #[serde(default, deserialize_with = "null_or_object")]
    pub delivery: Option<Option<CronDeliveryParams>>,
    /// clawgate's catch-up policy for missed slots: `skip`, `once` or `all` (`Some(None)`: sent,
    /// but not a string).
    #[serde(default, deserialize_with = "lenient::nullable")]
    pub catch_up: Option<Option<String>>,
    /// Remove an `at` job once it ran successfully (default `true` for `at` schedules, as
    /// upstream; not a boolean reads as absent).
    #[serde(default, deserialize_with = "lenient::any")]
    pub delete_after_run: Option<bool>,
}

/// `null` → `Some(None)`; anything else → `Some(Some(_))`, the default when it does not decode.
fn null_or_object<'de, D, T>(deserializer: D) -> Result<Option<Option<T>>, D::Error>
where
    D: serde::Deserializer<'de>,
    T: serde::de::DeserializeOwned + Default,
{
    Ok(Some(match Value::deserialize(deserializer)? {
        Value::Null => None,
        v => Some(serde_json::from_value(v).unwrap_or_default()),
    }))
}

/// `cron.add {name, schedule, payload, sessionTarget?, wakeMode?, delivery?, enabled?, agentId?,
/// catchUp?}` (schema `CronAddParams`; `name`, `schedule` and `payload` are required by the
/// handler, with upstream's message).
pub type CronAddParams = CronJobFields;

/// `cron.update {id|jobId, patch}` (schema `CronUpdateParams`).
#[derive(Debug, Clone, Default, PartialEq, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct CronUpdateParams {
    /// The job (`id` wins over `jobId`).
    #[serde(default, deserialize_with = "lenient::any")]
    pub id: Option<String>,
    /// The job, upstream's other spelling.
    #[serde(default, deserialize_with = "lenient::any")]
    pub job_id: Option<String>,
    /// The fields to change (required by the handler; not an object reads as absent).
    #[serde(default, deserialize_with = "lenient::any")]
    pub patch: Option<CronJobFields>,
}

/// `cron.remove {id|jobId}` (schema `CronRemoveParams`).
#[derive(Debug, Clone, Default, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct CronRemoveParams {
    /// The job (`id` wins over `jobId`).
    #[serde(default, deserialize_with = "lenient::any")]
    pub id: Option<String>,
    /// The job, upstream's other spelling.
    #[serde(default, deserialize_with = "lenient::any")]
    pub job_id: Option<String>,
}

/// `cron.run {id|jobId, mode?}` (schema `CronRunParams`).
#[derive(Debug, Clone, Default, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct CronRunParams {
    /// The job (`id` wins over `jobId`).
    #[serde(default, deserialize_with = "lenient::any")]
    pub id: Option<String>,
    /// The job, upstream's other spelling.
    #[serde(default, deserialize_with = "lenient::any")]
    pub job_id: Option<String>,
    /// `force` (default), `due` or `if-enabled`; others are refused by the handler by name.
    #[serde(default, deserialize_with = "lenient::any")]
    pub mode: Option<String>,
}

/// `cron.runs {id|jobId?, scope?, runId?, status?, statuses?, sortDir?, limit?, offset?}`
/// (schema `CronRunsParams`; its other filters are ignored).
#[derive(Debug, Clone, Default, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct CronRunsParams {
    /// The job (`id` wins over `jobId`).
    #[serde(default, deserialize_with = "lenient::any")]
    pub id: Option<String>,
    /// The job, upstream's other spelling.
    #[serde(default, deserialize_with = "lenient::any")]
    pub job_id: Option<String>,
    /// `all`, or one job (the default when a job is named).
    #[serde(default, deserialize_with = "lenient::any")]
    pub scope: Option<String>,
    /// Only this run.
    #[serde(default, deserialize_with = "lenient::any")]
    pub run_id: Option<String>,
    /// Only runs with this status (`all`: any).
    #[serde(default, deserialize_with = "lenient::any")]
    pub status: Option<String>,
    /// Only runs with one of these statuses.
    #[serde(default, deserialize_with = "lenient::strings")]
    pub statuses: Option<Vec<String>>,
    /// Newest first (default) or `asc`.
    #[serde(default, deserialize_with = "lenient::any")]
    pub sort_dir: Option<SortDir>,
    /// Page size (default 50, clamped to 1..=200).
    #[serde(default, deserialize_with = "lenient::any")]
    pub limit: Option<u64>,
    /// Page start.
    #[serde(default, deserialize_with = "lenient::any")]
    pub offset: Option<u64>,
}

/// A job's schedule.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(tag = "kind", rename_all = "camelCase")]
pub enum CronSchedule {
    /// `{kind:"cron", expr, tz?}`.
    Cron {
        /// The expression as stored.
        expr: String,
        /// IANA zone, when not UTC.
        #[serde(skip_serializing_if = "Option::is_none")]
        tz: Option<String>,
    },
    /// `{kind:"every", everyMs, anchorMs?}`: every `everyMs` from `anchorMs`.
    #[serde(rename_all = "camelCase")]
    Every {
        /// The interval in milliseconds.
        every_ms: i64,
        /// Slots are `anchorMs + k × everyMs`.
        #[serde(skip_serializing_if = "Option::is_none")]
        anchor_ms: Option<i64>,
    },
    /// `{kind:"at", at}`: once, at that time.
    At {
        /// The time as given.
        at: String,
    },
}

/// What a job runs.
#[derive(Debug, Clone, PartialEq, Serialize)]
#[serde(untagged)]
pub enum CronPayload {
    /// `{kind:"agentTurn", message, model?}`: an agent turn.
    AgentTurn(AgentTurnPayload),
    /// Another stored kind (clawgate's `comfyRun {templateId, inputs?, prompt?}`), shown as
    /// stored: its keys are the template's, so the object stays open.
    Stored {
        /// The payload kind.
        kind: String,
        /// The stored fields.
        #[serde(flatten)]
        fields: Map<String, Value>,
    },
}

/// The `agentTurn` payload.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct AgentTurnPayload {
    /// Always `agentTurn`.
    pub kind: &'static str,
    /// The message the agent gets.
    pub message: String,
    /// The model, when the job names one.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub model: Option<String>,
}

/// `delivery` of a job: the chat its results are announced to.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct CronDelivery {
    /// Always `announce`.
    pub mode: &'static str,
    /// The channel.
    pub channel: Option<String>,
    /// The chat id.
    pub to: Option<String>,
    /// The channel account.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub account_id: Option<String>,
    /// The thread.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub thread_id: Option<String>,
}

/// A finished run's status.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum CronRunStatus {
    /// It ran.
    Ok,
    /// It failed.
    Error,
    /// It was skipped.
    Skipped,
}

/// `state` of a job.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct CronJobState {
    /// The next slot, for an enabled job.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub next_run_at_ms: Option<i64>,
    /// The last run's slot.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub last_run_at_ms: Option<i64>,
    /// Since when it runs, while it runs.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub running_at_ms: Option<i64>,
    /// How the last run ended.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub last_run_status: Option<CronRunStatus>,
    /// The same (upstream's older name).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub last_status: Option<CronRunStatus>,
}

/// A job as upstream's `CronJob` shapes it (`cron.add`, `cron.update`).
#[derive(Debug, Clone, PartialEq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct CronJob {
    /// Job id.
    pub id: String,
    /// The agent it runs as, when it names one.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub agent_id: Option<String>,
    /// Name.
    pub name: String,
    /// Whether it fires.
    pub enabled: bool,
    /// Created (ms since the epoch).
    pub created_at_ms: i64,
    /// Last changed (ms since the epoch).
    pub updated_at_ms: i64,
    /// When it fires.
    pub schedule: CronSchedule,
    /// `isolated`, `main` or `session:<key>`.
    pub session_target: String,
    /// Always `now`.
    pub wake_mode: &'static str,
    /// What it runs.
    pub payload: CronPayload,
    /// An `at` job that is removed once it ran successfully.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub delete_after_run: Option<bool>,
    /// Where results are announced.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub delivery: Option<CronDelivery>,
    /// Run state.
    pub state: CronJobState,
}

/// `cron.add` → the job (the schema's `CronAddResult` is `CronJob | {created, job}`).
pub type CronAddResult = CronJob;

/// `cron.update` → the job.
pub type CronUpdateResult = CronJob;

/// One job of `cron.list`: the job and the agent it runs as.
#[derive(Debug, Clone, PartialEq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct CronListEntry {
    /// The job.
    #[serde(flatten)]
    pub job: CronJob,
    /// Its `agentId`, or the default agent.
    pub effective_agent_id: String,
}

/// `cron.list` → a page of jobs.
#[derive(Debug, Clone, PartialEq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct CronListResult {
    /// The page.
    pub jobs: Vec<CronListEntry>,
    /// Jobs matching the filters.
    pub total: usize,
    /// The page's start.
    pub offset: usize,
    /// The page size.
    pub limit: usize,
    /// Whether more follow.
    pub has_more: bool,
    /// The next page's start, `null` on the last page.
    pub next_offset: Option<usize>,
    /// Changes whenever a listed job is added, removed or edited.
    pub snapshot_revision: String,
}

/// `cron.status` → the scheduler's state.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct CronStatusResult {
    /// Whether the scheduler runs.
    pub enabled: bool,
    /// Always `sqlite`.
    pub storage: &'static str,
    /// Stored jobs.
    pub jobs: usize,
    /// When it next wakes.
    pub next_wake_at_ms: Option<i64>,
    /// When its last pass ended.
    pub last_pass_at_ms: Option<i64>,
    /// Its last error.
    pub last_error: Option<String>,
}

/// `cron.remove` → `{ok: true, removed: true}`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
pub struct CronRemoveResult {
    /// Always `true`.
    pub ok: bool,
    /// Always `true` (a missing job is an error).
    pub removed: bool,
}

/// `cron.run` → enqueued, or why not.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(untagged)]
pub enum CronRunResult {
    /// `{ok, enqueued: true, runId, processInstanceId}`.
    #[serde(rename_all = "camelCase")]
    Enqueued {
        /// Always `true`.
        ok: bool,
        /// Always `true`.
        enqueued: bool,
        /// The run.
        run_id: String,
        /// This gateway process (its boot id).
        process_instance_id: String,
    },
    /// `{ok, ran: false, reason, processInstanceId}`.
    #[serde(rename_all = "camelCase")]
    NotRun {
        /// Always `true`.
        ok: bool,
        /// Always `false`.
        ran: bool,
        /// `disabled`, `not-due` or `already-running`.
        reason: &'static str,
        /// This gateway process (its boot id).
        process_instance_id: String,
    },
}

/// One finished run (schema `CronRunLogEntry`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct CronRunLogEntry {
    /// When it finished (started, if it has not).
    pub ts: i64,
    /// The job.
    pub job_id: String,
    /// Always `finished`.
    pub action: &'static str,
    /// How it ended (`ok`, `error`, `skipped`).
    pub status: String,
    /// The run.
    pub run_id: String,
    /// The scheduled slot.
    pub run_at_ms: i64,
    /// How long it took.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub duration_ms: Option<i64>,
    /// What it produced.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub summary: Option<String>,
    /// Why it failed.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
    /// The job's name, while it exists.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub job_name: Option<String>,
}

/// `cron.runs` → a page of finished runs.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct CronRunsResult {
    /// The page.
    pub entries: Vec<CronRunLogEntry>,
    /// Runs matching the filters.
    pub total: usize,
    /// The page's start.
    pub offset: usize,
    /// The page size.
    pub limit: usize,
    /// Whether more follow.
    pub has_more: bool,
    /// The next page's start, `null` on the last page.
    pub next_offset: Option<usize>,
}
