//! Records of scheduled (cron) jobs and their per-slot run receipts. Plain data: no I/O, no
//! policy.

use serde_json::Value;

/// A scheduled job.
#[derive(Debug, Clone, PartialEq, sqlx::FromRow)]
pub struct CronJob {
    /// Stable id.
    pub id: String,
    /// Display name; lists are ordered by it.
    pub name: String,
    /// What [`schedule`](Self::schedule) holds: `cron` (an expression), `every` (an interval in
    /// milliseconds, as decimal text) or `at` (a time, as given).
    pub schedule_kind: String,
    /// The schedule's own text (see [`schedule_kind`](Self::schedule_kind)). The store does not
    /// parse it.
    pub schedule: String,
    /// An `every` schedule's anchor: its slots are `anchor_ms + k × interval`.
    pub anchor_ms: Option<i64>,
    /// IANA zone the schedule is read in (the gateway's if `None`).
    pub timezone: Option<String>,
    /// Disabled jobs stay stored but do not fire.
    pub enabled: bool,
    /// What firing does (`agentTurn`, `comfyRun`).
    pub kind: String,
    /// The kind's parameters. Opaque to the store.
    pub payload: Value,
    /// Where results go.
    pub deliver_to: Option<Value>,
    /// Slots missed while the gateway was down: `skip`, `once` or `all`.
    pub catch_up: String,
    /// An `at` job is removed once its run succeeded (upstream's `deleteAfterRun`).
    pub delete_after_run: bool,
    /// When it was first stored (kept by later upserts).
    pub created_at_ms: i64,
    /// Last change.
    pub updated_at_ms: i64,
    /// When a slot was last claimed (kept by upserts: run state belongs to the scheduler).
    pub last_run_at_ms: Option<i64>,
    /// Status of the last claimed slot's run (kept by upserts).
    pub last_status: Option<String>,
    /// When it fires next, as the scheduler computed it.
    pub next_run_at_ms: Option<i64>,
}

/// The receipt of one scheduled slot of a cron job: proof that it fired, and how that went.
#[derive(Debug, Clone, PartialEq, Eq, sqlx::FromRow)]
pub struct CronRunRecord {
    /// The cron job.
    pub job_id: String,
    /// The scheduled time this run is for (not when it actually started).
    pub slot_ms: i64,
    /// The caller's id of the run.
    pub run_id: String,
    /// `running`, `ok`, `error` or `skipped`.
    pub status: String,
    /// What the run produced, briefly.
    pub summary: Option<String>,
    /// Why it failed.
    pub error: Option<String>,
    /// When the slot was claimed.
    pub started_at_ms: i64,
    /// When the run finished.
    pub finished_at_ms: Option<i64>,
}

/// `schedule_kind` values a cron job may have.
pub(crate) const CRON_SCHEDULE_KINDS: [&str; 3] = ["cron", "every", "at"];

/// `catch_up` values a cron job may have.
pub(crate) const CRON_CATCH_UP: [&str; 3] = ["skip", "once", "all"];

/// Statuses a cron run may finish with.
pub(crate) const CRON_FINISHED_STATUSES: [&str; 3] = ["ok", "error", "skipped"];
