//! The cron scheduler: one loop that fires every enabled job at its scheduled slots, exactly
//! once per (job, slot) across restarts, and runs it (an agent turn whose reply goes to a chat,
//! or a ComfyUI template run whose images go to a chat).
//!
//! ```text
//! pass: for each enabled job, slots in (anchor, now]   anchor = max(latest claimed slot, updatedAtMs)
//!   slots at or after this process started → fire each (the loop may wake a little late)
//!   slots before it (missed while down)      → catch-up policy: skip | once (latest) | all
//!   fire = claim_cron_slot (a receipt unique on (job, slot); only the winner runs it)
//!        → `cron` started → agent turn / ComfyUI job → finish_cron_run → `cron` finished
//! sleep until the earliest next slot (≤ 60 s), or until a job changes
//! ```
//!
//! A receipt left `running` by a crash is never re-run (at most once per slot); at start it is
//! finished as `error`, as upstream does with runs a restart interrupted.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

use chrono::{DateTime, TimeZone, Utc};
use croner::Cron;
use croner::parser::{CronParser, Seconds};
use parking_lot::Mutex;
use serde_json::{Value, json};
use tokio::sync::Notify;

use clawgate_channels::{AccountKey, OutboundMessage, chunk_text};
use clawgate_store::{CronJob, CronStore, RunKind};

use crate::agent::tools::{ComfyGenerate, ToolHost};
use crate::agent::{AgentService, RunOutcome, RunRequest};
use crate::channels::Outbox;
use crate::error::CoreError;
use crate::events::Events;
use crate::gateway::Store;
use crate::tasks::Tasks;
use crate::time::now_ms;

/// Job kind: an agent turn (`{message, agentId?, sessionKey?}`).
pub const KIND_AGENT_TURN: &str = "agentTurn";
/// Job kind: a ComfyUI template run (`{templateId, inputs?, prompt?}`).
pub const KIND_COMFY_RUN: &str = "comfyRun";
/// Catch-up policies for slots missed while the gateway was down.
pub const CATCH_UP: [&str; 3] = ["skip", "once", "all"];
/// The policy when none is given: upstream runs a job that became due during downtime once.
pub const DEFAULT_CATCH_UP: &str = "once";

/// At most this many slots of one job are considered per pass (and fired by `all`).
const MAX_SLOTS_PER_PASS: usize = 100;
/// The loop re-checks at least this often (clock jumps, missed notifications).
const MAX_SLEEP: Duration = Duration::from_secs(60);
/// An agent turn of a job may take this long before the run counts as failed.
const AGENT_TURN_LIMIT: Duration = Duration::from_secs(30 * 60);
/// On a shared database, a receipt still `running` this long after its start belongs to a
/// gateway that died mid-run (no run lasts longer): closed as interrupted.
const STALE_RUNNING_MS: i64 = 2 * AGENT_TURN_LIMIT.as_millis() as i64;
/// On a shared database, jobs changed through another gateway are seen within this.
const SHARED_MAX_SLEEP: Duration = Duration::from_secs(5);

/// The cron scheduler: its loop, the runs it fires and what it last saw (for `cron.status`).
/// Cheap to clone (clones share one state). Built with what a run uses: the store, events, the
/// task tracker, the agent service (agent turns), the outbox (replies to chats) and a
/// [`ToolHost`] for ComfyUI jobs, so it never needs the gateway.
#[derive(Clone)]
pub struct CronService {
    inner: Arc<Inner>,
}

struct Inner {
    store: Store,
    events: Events,
    tasks: Tasks,
    agents: AgentService,
    outbox: Outbox,
    /// Queues a `comfyRun` job's ComfyUI job (the same narrow hook the agent's tools use).
    comfy: Arc<dyn ToolHost>,
    /// This process's id (`processInstanceId` of `cron.run`): its cluster id (boot id).
    instance_id: String,
    /// Other gateways share the store and this schedule ([`CronService::shared`]).
    shared: bool,
    /// Job definitions changed or a manual run was asked for: re-plan now.
    kick: Notify,
    state: Mutex<SchedulerState>,
}

impl std::fmt::Debug for CronService {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("CronService").field("state", &*self.inner.state.lock()).finish_non_exhaustive()
    }
}

#[derive(Debug, Default, Clone)]
struct SchedulerState {
    running: bool,
    /// When this process started planning; slots before it were missed during downtime.
    started_at_ms: i64,
    last_pass_at_ms: Option<i64>,
    next_wake_at_ms: Option<i64>,
    last_error: Option<String>,
}

impl CronService {
    /// A scheduler that is not running yet ([`CronService::start`] starts it).
    pub fn new(
        store: Store,
        events: Events,
        tasks: Tasks,
        agents: AgentService,
        outbox: Outbox,
        comfy: Arc<dyn ToolHost>,
        cluster: &crate::cluster::Cluster,
    ) -> Self {
        Self {
            inner: Arc::new(Inner {
                store,
                events,
                tasks,
                agents,
                outbox,
                comfy,
                instance_id: cluster.id().to_owned(),
                shared: !cluster.is_solo(),
                kick: Notify::new(),
                state: Mutex::default(),
            }),
        }
    }

    /// Re-plan now (a job was added, changed or removed).
    pub fn kick(&self) {
        self.inner.kick.notify_one();
    }

    pub(crate) fn store(&self) -> &Store {
        &self.inner.store
    }

    pub(crate) fn events(&self) -> &Events {
        &self.inner.events
    }

    /// The id of the agent a job runs as when it names none.
    pub(crate) fn default_agent(&self) -> String {
        self.inner.agents.agents().default_id.clone()
    }

    /// This process's id, as `cron.run` reports it.
    pub(crate) fn instance_id(&self) -> &str {
        &self.inner.instance_id
    }

    /// The scheduler's state for `cron.status`.
    pub fn status(&self, jobs: usize) -> clawgate_protocol::methods::cron::CronStatusResult {
        let s = self.inner.state.lock().clone();
        clawgate_protocol::methods::cron::CronStatusResult {
            enabled: s.running,
            storage: "sqlite",
            jobs,
            next_wake_at_ms: s.next_wake_at_ms,
            last_pass_at_ms: s.last_pass_at_ms,
            last_error: s.last_error,
        }
    }

    fn update(&self, f: impl FnOnce(&mut SchedulerState)) {
        f(&mut self.inner.state.lock());
    }
}

/// Schedule kinds (`CronJob::schedule_kind`), as upstream names them.
pub const SCHEDULE_CRON: &str = "cron";
/// Every `everyMs` from an anchor.
pub const SCHEDULE_EVERY: &str = "every";
/// Once, at a time.
pub const SCHEDULE_AT: &str = "at";
/// The shortest `every` interval: the scheduler plans in whole seconds.
pub const MIN_EVERY_MS: i64 = 1000;
/// Upstream's bound on timestamps and intervals (the largest JavaScript date).
pub const MAX_TIME_MS: i64 = 8_640_000_000_000_000;

/// A parsed schedule: when a job's slots are.
#[derive(Debug, Clone)]
pub struct Schedule(Slots);

#[derive(Debug, Clone)]
enum Slots {
    /// A cron pattern (5 fields, or 6 with seconds first) read in a zone (UTC when `None`).
    Cron { cron: Box<Cron>, tz: Option<chrono_tz::Tz> },
    /// `anchor + k × every` for k ≥ 0.
    Every { every: i64, anchor: i64 },
    /// One slot.
    At(i64),
}

impl Schedule {
    /// Parses `expr` read in the IANA zone `tz` (UTC when `None`).
    pub fn parse(expr: &str, tz: Option<&str>) -> Result<Self, String> {
        let cron = CronParser::builder()
            .seconds(Seconds::Optional)
            .build()
            .parse(expr.trim())
            .map_err(|e| format!("invalid cron expression {expr:?}: {e}"))?;
        let tz = match tz.map(str::trim).filter(|t| !t.is_empty()) {
            None => None,
            Some(name) => Some(name.parse::<chrono_tz::Tz>().map_err(|_| format!("unknown time zone {name:?}"))?),
        };
        Ok(Self(Slots::Cron { cron: Box::new(cron), tz }))
    }

    /// Every `every_ms` (≥ [`MIN_EVERY_MS`]) counted from `anchor_ms`.
    pub fn every(every_ms: i64, anchor_ms: i64) -> Result<Self, String> {
        if every_ms < MIN_EVERY_MS {
            return Err(format!("schedule.everyMs must be ≥ {MIN_EVERY_MS}"));
        }
        if every_ms > MAX_TIME_MS {
            return Err(format!("schedule.everyMs must be ≤ {MAX_TIME_MS}"));
        }
        if !(0..=MAX_TIME_MS).contains(&anchor_ms) {
            return Err(format!("schedule.anchorMs must be between 0 and {MAX_TIME_MS}"));
        }
        Ok(Self(Slots::Every { every: every_ms, anchor: anchor_ms }))
    }

    /// Once, at `at` ([`parse_at`]).
    pub fn at(at: &str) -> Result<Self, String> {
        parse_at(at).map(|ms| Self(Slots::At(ms)))
    }

    /// A stored job's schedule.
    pub fn of_job(job: &CronJob) -> Result<Self, String> {
        match job.schedule_kind.as_str() {
            SCHEDULE_EVERY => {
                let every =
                    job.schedule.trim().parse::<i64>().map_err(|_| format!("bad interval {:?}", job.schedule))?;
                Self::every(every, job.anchor_ms.unwrap_or(job.created_at_ms))
            }
            SCHEDULE_AT => Self::at(&job.schedule),
            _ => Self::parse(&job.schedule, job.timezone.as_deref()),
        }
    }

    /// The single slot of a one-shot (`at`) schedule.
    pub fn one_shot_at(&self) -> Option<i64> {
        match self.0 {
            Slots::At(at) => Some(at),
            _ => None,
        }
    }

    /// The first slot strictly after `after_ms`.
    pub fn next_after(&self, after_ms: i64) -> Option<i64> {
        match &self.0 {
            Slots::Cron { cron, tz: Some(tz) } => next_in(cron, *tz, after_ms),
            Slots::Cron { cron, tz: None } => next_in(cron, Utc, after_ms),
            Slots::Every { every, anchor } if after_ms < *anchor => Some(*anchor),
            Slots::Every { every, anchor } => {
                anchor.checked_add(((after_ms - anchor) / every + 1).checked_mul(*every)?).filter(|t| *t <= MAX_TIME_MS)
            }
            Slots::At(at) => (*at > after_ms).then_some(*at),
        }
    }

    /// Slots in `(after_ms, until_ms]`, oldest first, at most the latest `cap`.
    pub fn slots_between(&self, after_ms: i64, until_ms: i64, cap: usize) -> Vec<i64> {
        let mut slots = match &self.0 {
            Slots::Cron { cron, tz: Some(tz) } => latest_in(cron, *tz, after_ms, until_ms, cap),
            Slots::Cron { cron, tz: None } => latest_in(cron, Utc, after_ms, until_ms, cap),
            Slots::Every { every, anchor } => latest_every(*every, *anchor, after_ms, until_ms, cap),
            Slots::At(at) => (*at > after_ms && *at <= until_ms && cap > 0).then_some(*at).into_iter().collect(),
        };
        slots.reverse();
        slots
    }
}

/// Newest first: `anchor + k × every` (k ≥ 0) in `(after_ms, until_ms]`, at most `cap`.
fn latest_every(every: i64, anchor: i64, after_ms: i64, until_ms: i64, cap: usize) -> Vec<i64> {
    if until_ms < anchor {
        return Vec::new();
    }
    let mut slot = anchor + (until_ms - anchor) / every * every;
    let mut out = Vec::new();
    while slot > after_ms && slot >= anchor && out.len() < cap {
        out.push(slot);
        slot -= every;
    }
    out
}

/// An `at` time as upstream reads it: whole milliseconds since the epoch (digits only), or ISO
/// 8601 — a date (midnight UTC), or a date and time with an optional fraction and offset (UTC
/// when it has none).
pub fn parse_at(at: &str) -> Result<i64, String> {
    use chrono::{NaiveDate, NaiveDateTime};
    let raw = at.trim();
    let bad = || format!("schedule.at must be an ISO 8601 time or milliseconds since the epoch, not {at:?}");
    if raw.is_empty() {
        return Err("schedule.at is required".into());
    }
    let ms = if raw.bytes().all(|b| b.is_ascii_digit()) {
        raw.parse::<i64>().map_err(|_| bad())?
    } else if let Ok(t) = DateTime::parse_from_rfc3339(raw) {
        t.timestamp_millis()
    } else if let Ok(t) = DateTime::parse_from_str(&raw.replace(['Z', 'z'], "+00:00"), "%Y-%m-%dT%H:%M%:z") {
        // No seconds (RFC 3339 needs them).
        t.timestamp_millis()
    } else if let Some(t) = ["%Y-%m-%dT%H:%M:%S%.f", "%Y-%m-%dT%H:%M"]
        .iter()
        .find_map(|f| NaiveDateTime::parse_from_str(&raw.replace('t', "T"), f).ok())
    {
        t.and_utc().timestamp_millis()
    } else if let Ok(d) = NaiveDate::parse_from_str(raw, "%Y-%m-%d") {
        d.and_hms_opt(0, 0, 0).ok_or_else(bad)?.and_utc().timestamp_millis()
    } else {
        return Err(bad());
    };
    if !(0..=MAX_TIME_MS).contains(&ms) {
        return Err(bad());
    }
    Ok(ms)
}

fn at<Z: TimeZone>(zone: Z, ms: i64) -> Option<DateTime<Z>> {
    zone.timestamp_millis_opt(ms).single()
}

fn next_in<Z: TimeZone>(cron: &Cron, zone: Z, after_ms: i64) -> Option<i64> {
    let start = at(zone, after_ms)?;
    cron.find_next_occurrence(&start, false).ok().map(|t| t.timestamp_millis()).filter(|t| *t > after_ms)
}

/// Newest first, walking back from `until_ms` (inclusive): bounded by `cap` however long the gap.
fn latest_in<Z: TimeZone>(cron: &Cron, zone: Z, after_ms: i64, until_ms: i64, cap: usize) -> Vec<i64> {
    // Slots are whole seconds and `iter_before` is exclusive: start one second past the last
    // whole second so that second itself counts.
    let Some(end) = at(zone, until_ms.div_euclid(1000) * 1000 + 1000) else { return Vec::new() };
    let mut out = Vec::new();
    for t in cron.iter_before(end) {
        let ms = t.timestamp_millis();
        if ms <= after_ms || out.len() >= cap {
            break;
        }
        if out.last() != Some(&ms) {
            out.push(ms);
        }
    }
    out
}

/// Which of the due `slots` to fire: every slot from this process's lifetime, and of those
/// missed while down (before `started_at_ms`) what `catch_up` says.
pub fn slots_to_fire(slots: &[i64], started_at_ms: i64, catch_up: &str) -> Vec<i64> {
    let (missed, live): (Vec<i64>, Vec<i64>) = slots.iter().partition(|s| **s < started_at_ms);
    let mut fire = match catch_up {
        "all" => missed,
        "once" => missed.last().copied().into_iter().collect(),
        _ => Vec::new(),
    };
    fire.extend(live);
    fire
}

/// The run id of a job's slot: stable, so a retried submit finds the same run.
pub fn run_id_for(job_id: &str, slot_ms: i64) -> String {
    format!("cron:{job_id}:{slot_ms}")
}

/// The session an agent-turn job talks in when it names none.
pub fn default_session_key(agent_id: &str, job_id: &str) -> String {
    format!("agent:{agent_id}:cron:{job_id}")
}

/// After a failed pass: 1 s doubling to 60 s.
const PASS_BACKOFF: clawgate_backoff::Backoff =
    clawgate_backoff::Backoff::new(Duration::from_secs(1), Duration::from_secs(60));

impl CronService {
    /// Start the scheduler: finish receipts a crash left running, then loop until shutdown.
    pub async fn start(&self) {
        let started = now_ms();
        self.update(|s| {
            s.running = true;
            s.started_at_ms = started;
        });
        // On a database several gateways share, a `running` receipt may be a live peer's run:
        // only those older than any run can last are closed (each pass, below).
        let before = if self.shared() { now_ms() - STALE_RUNNING_MS } else { i64::MAX };
        self.finish_interrupted_all(before).await;
        self.inner.tasks.spawn("cron", self.clone().run_loop(started));
    }

    /// Several gateways run this scheduler on one database (the cluster is not solo): every one
    /// plans and fires, and the receipt's claim (unique on (job, slot)) lets exactly one run each
    /// slot.
    fn shared(&self) -> bool {
        self.inner.shared
    }

    async fn finish_interrupted_all(&self, started_before_ms: i64) {
        match self.inner.store.list_cron_jobs(true).await {
            Ok(jobs) => {
                for job in jobs {
                    self.finish_interrupted(&job.id, started_before_ms).await;
                }
            }
            Err(e) => tracing::error!(error = %e, "cannot read cron jobs"),
        }
    }

    /// Close as `error` the job's receipts left `running` that started before `started_before_ms`
    /// (a restart, or a gateway that died mid-run, interrupted them; they are never re-run).
    async fn finish_interrupted(&self, job_id: &str, started_before_ms: i64) {
        let store = &self.inner.store;
        let runs = match store.list_cron_runs(Some(job_id), 200).await {
            Ok(r) => r,
            Err(e) => return tracing::error!(job = job_id, error = %e, "cannot read cron receipts"),
        };
        for r in runs.iter().filter(|r| r.status == "running" && r.started_at_ms < started_before_ms) {
            let msg = "the gateway restarted while this run was in progress";
            if let Err(e) = store.finish_cron_run(job_id, r.slot_ms, "error", None, Some(msg), now_ms()).await {
                tracing::warn!(job = job_id, slot = r.slot_ms, error = %e, "cannot close an interrupted cron run");
            }
        }
    }

    async fn run_loop(self, started_at_ms: i64) {
        let cancel = self.inner.tasks.token();
        let mut failures: u32 = 0;
        let mut swept_at = now_ms();
        loop {
            if self.shared() && now_ms() - swept_at > STALE_RUNNING_MS / 4 {
                // A peer that died mid-run left its receipt `running`.
                swept_at = now_ms();
                self.finish_interrupted_all(swept_at - STALE_RUNNING_MS).await;
            }
            let sleep = match self.pass(started_at_ms).await {
                Ok(next) => {
                    failures = 0;
                    self.update(|s| {
                        s.last_pass_at_ms = Some(now_ms());
                        s.next_wake_at_ms = next;
                        s.last_error = None;
                    });
                    let max = if self.shared() { SHARED_MAX_SLEEP } else { MAX_SLEEP };
                    next.map(|n| Duration::from_millis((n - now_ms()).max(0) as u64)).unwrap_or(max).min(max)
                }
                Err(e) => {
                    failures = failures.saturating_add(1);
                    tracing::error!(error = %e, "cron pass failed");
                    self.update(|s| s.last_error = Some(e.to_string()));
                    PASS_BACKOFF.delay(failures - 1)
                }
            };
            tokio::select! {
                () = cancel.cancelled() => return,
                () = self.inner.kick.notified() => {}
                () = tokio::time::sleep(sleep) => {}
            }
        }
    }
    /// One planning pass: fire what is due, record each job's next slot; the earliest of those.
    async fn pass(&self, started_at_ms: i64) -> Result<Option<i64>, CoreError> {
        let store = &self.inner.store;
        let now = now_ms();
        let mut earliest: Option<i64> = None;
        for job in store.list_cron_jobs(false).await? {
            let schedule = match Schedule::of_job(&job) {
                Ok(s) => s,
                Err(e) => {
                    tracing::warn!(job = %job.id, error = %e, "cron job has an unusable schedule");
                    continue;
                }
            };
            let last = store.last_cron_slot(&job.id).await?.unwrap_or(i64::MIN);
            // Slots before the last change are not this definition's; but a one-shot time that
            // had passed when it was set is due at once (as upstream runs it), and its receipt
            // alone keeps it from firing twice.
            let anchor = if schedule.one_shot_at().is_some() { last } else { last.max(job.updated_at_ms) };
            let due = schedule.slots_between(anchor, now, MAX_SLOTS_PER_PASS);
            // A job defined while this process runs missed nothing while it was down.
            let live_from = if job.updated_at_ms >= started_at_ms { i64::MIN } else { started_at_ms };
            for slot in slots_to_fire(&due, live_from, &job.catch_up) {
                self.fire(&job, slot, run_id_for(&job.id, slot)).await?;
            }
            let next = schedule.next_after(now);
            if next != job.next_run_at_ms {
                // Keep updatedAtMs: it means "definition changed" (and anchors catch-up).
                store.set_cron_next_run(&job.id, next, job.updated_at_ms).await?;
            }
            earliest = match (earliest, next) {
                (Some(a), Some(b)) => Some(a.min(b)),
                (a, b) => a.or(b),
            };
        }
        Ok(earliest)
    }

    /// Claims `slot` of `job` and, if this caller won it, runs the job in the background.
    /// `false` if the slot was claimed before.
    pub async fn fire(&self, job: &CronJob, slot_ms: i64, run_id: String) -> Result<bool, CoreError> {
        match self.inner.store.claim_cron_slot(&job.id, slot_ms, &run_id, now_ms()).await {
            Ok(true) => {}
            Ok(false) => return Ok(false),
            // Removed meanwhile (a one-shot job another gateway ran and removed): nothing to run.
            Err(clawgate_store::StoreError::NotFound) => return Ok(false),
            Err(e) => return Err(e.into()),
        }
        tracing::info!(job = %job.id, slot = slot_ms, run = %run_id, "cron job fired");
        let started = now_ms();
        self.inner.events.cron(json!({"jobId": job.id, "action": "started", "runId": run_id, "runAtMs": slot_ms}));
        let (cron, job) = (self.clone(), job.clone());
        self.inner.tasks.spawn("cron", async move {
            let outcome = match job.kind.as_str() {
                KIND_AGENT_TURN => cron.run_agent_turn(&job, slot_ms, &run_id).await,
                KIND_COMFY_RUN => cron.run_comfy(&job, slot_ms).await,
                other => Err(format!("unknown cron job kind {other:?}")),
            };
            let (status, summary, error) = match &outcome {
                Ok(summary) => ("ok", Some(summary.as_str()), None),
                Err(e) => ("error", None, Some(e.as_str())),
            };
            let finished = now_ms();
            let store = &cron.inner.store;
            if let Err(e) = store.finish_cron_run(&job.id, slot_ms, status, summary, error, finished).await {
                tracing::error!(job = %job.id, slot = slot_ms, error = %e, "cannot record the end of a cron run");
            }
            let after = cron.after_one_shot(&job.id, slot_ms, status == "ok").await;
            let next = store.get_cron_job(&job.id).await.ok().flatten().and_then(|j| j.next_run_at_ms);
            cron.inner.events.cron(
                json!({"jobId": job.id, "action": "finished", "runId": run_id, "runAtMs": slot_ms, "status": status,
                   "summary": summary, "error": error, "durationMs": finished - started, "nextRunAtMs": next}),
            );
            match after {
                Some(OneShotEnd::Removed) => cron.inner.events.cron(json!({"jobId": job.id, "action": "removed"})),
                Some(OneShotEnd::Disabled) => cron.inner.events.cron(json!({"jobId": job.id, "action": "updated"})),
                None => {}
            }
        });
        Ok(true)
    }

    /// After the run of slot `slot_ms`: if that was the job's one-shot (`at`) slot — of its
    /// definition now, not an earlier one it was edited from — the job is done. It is removed if it
    /// asked for that (`deleteAfterRun`) and succeeded, else disabled, as upstream does; its
    /// receipt keeps the slot from firing again either way.
    async fn after_one_shot(&self, job_id: &str, slot_ms: i64, ok: bool) -> Option<OneShotEnd> {
        let store = &self.inner.store;
        let job = store.get_cron_job(job_id).await.ok().flatten()?;
        if Schedule::of_job(&job).ok()?.one_shot_at() != Some(slot_ms) {
            return None;
        }
        let (end, done) = if ok && job.delete_after_run {
            (OneShotEnd::Removed, store.remove_cron_job(job_id).await)
        } else if job.enabled {
            (OneShotEnd::Disabled, store.set_cron_enabled(job_id, false, now_ms()).await)
        } else {
            return None;
        };
        match done {
            Ok(true) => {
                tracing::info!(job = job_id, slot = slot_ms, outcome = ?end, "one-shot cron job done");
                Some(end)
            }
            Ok(false) => None,
            Err(e) => {
                tracing::error!(job = job_id, error = %e, "cannot retire a one-shot cron job");
                None
            }
        }
    }

    async fn run_agent_turn(&self, job: &CronJob, slot_ms: i64, run_id: &str) -> Result<String, String> {
        let agents = &self.inner.agents;
        let p = &job.payload;
        let message = p.get("message").and_then(Value::as_str).filter(|m| !m.trim().is_empty());
        let Some(message) = message else { return Err("the job's payload has no message".into()) };
        let agent_param = p.get("agentId").and_then(Value::as_str);
        let (session_key, agent_id) = match p.get("sessionKey").and_then(Value::as_str) {
            Some(key) => {
                crate::methods::chat::resolve_session_key(agents, key, agent_param).map_err(|e| e.to_string())?
            }
            None => {
                let agent = agent_param.map(str::to_owned).unwrap_or_else(|| self.default_agent());
                (default_session_key(&agent, &job.id), agent)
            }
        };
        let req = RunRequest {
            run_id: run_id.to_owned(),
            session_key,
            agent_id,
            message: message.to_owned(),
            kind: RunKind::Agent,
            timeout: None,
            extra_system: Some(format!("This turn was started by the scheduled automation \"{}\".", job.name)),
            client: Some(json!({"id": "cron", "mode": "cron", "jobId": job.id, "slotMs": slot_ms})),
            context: None,
        };
        agents.submit(req).await.map_err(|e| format!("cannot start the agent turn: {e}"))?;
        let deadline = tokio::time::Instant::now() + AGENT_TURN_LIMIT;
        let outcome = loop {
            match agents.wait(run_id, Duration::from_secs(30)).await {
                Ok(Some(o)) if o.is_terminal() => break o,
                Ok(Some(_)) if tokio::time::Instant::now() < deadline && !self.inner.tasks.is_stopping() => {}
                Ok(Some(_)) => return Err("the agent turn did not finish in time".into()),
                Ok(None) => return Err("the agent turn was lost".into()),
                Err(e) => return Err(e.to_string()),
            }
        };
        let text = outcome.text().trim().to_owned();
        if !matches!(outcome, RunOutcome::Completed(_)) {
            let err = match &outcome {
                RunOutcome::Failed(f) if !f.error.is_empty() => f.error.as_str(),
                _ => "the agent turn did not complete",
            };
            return Err(format!("{} ({})", err, outcome.status().as_str()));
        }
        if let Some(target) = deliver_target(job)? {
            self.deliver_text(&target, &format!("{}:{slot_ms}", job.id), &text).await?;
        }
        Ok(summarize(&text))
    }

    /// Queue `text` for the target chat through the durable outbox (idempotent per job and
    /// slot).
    async fn deliver_text(&self, t: &Target, idem: &str, text: &str) -> Result<(), String> {
        let text = if text.is_empty() { "(the assistant gave an empty reply)" } else { text };
        let outbox = &self.inner.outbox;
        let Some(caps) = outbox.capabilities(&t.key) else {
            return Err(format!("channel account {} is not configured or not running", t.key));
        };
        let messages = chunk_text(text, caps.max_text, caps.measure)
            .into_iter()
            .map(|c| OutboundMessage::text(&t.chat_id, t.thread_id.clone(), c))
            .collect();
        outbox.send(&t.key, &format!("cron:{idem}"), messages).await.map(|_| ()).map_err(|e| e.to_string())
    }

    async fn run_comfy(&self, job: &CronJob, slot_ms: i64) -> Result<String, String> {
        let p = &job.payload;
        let template = p.get("templateId").and_then(Value::as_str).filter(|t| !t.is_empty());
        let Some(template) = template else { return Err("the job's payload has no templateId".into()) };
        let mut inputs = BTreeMap::new();
        for (k, v) in p.get("inputs").and_then(Value::as_object).into_iter().flatten() {
            let text = match v {
                Value::String(s) => s.clone(),
                other => other.to_string(),
            };
            inputs.insert(k.clone(), text);
        }
        let deliver_to = deliver_target(job)?.map(|t| {
            json!({"channel": t.key.channel, "account": t.key.account, "chatId": t.chat_id, "threadId": t.thread_id})
        });
        let request = ComfyGenerate {
            template: template.to_owned(),
            inputs,
            prompt: p.get("prompt").and_then(Value::as_str).map(str::to_owned),
            deliver_to,
            requested_by: Some(json!({"client": "cron", "mode": "cron", "jobId": job.id, "slotMs": slot_ms})),
        };
        let queued =
            self.inner.comfy.comfy_generate(request).await.map_err(|e| format!("cannot queue the ComfyUI job: {e}"))?;
        Ok(format!("queued ComfyUI job {}", queued.job_id))
    }
}

/// What became of a one-shot job after its run.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum OneShotEnd {
    /// Removed (`deleteAfterRun` and it succeeded).
    Removed,
    /// Kept, disabled.
    Disabled,
}

fn summarize(text: &str) -> String {
    const MAX: usize = 200;
    match text.char_indices().nth(MAX) {
        Some((i, _)) => format!("{}…", &text[..i]),
        None => text.to_owned(),
    }
}

/// Where a job's results go: `deliver_to = {channel, account, chatId, threadId?}`.
struct Target {
    key: AccountKey,
    chat_id: String,
    thread_id: Option<String>,
}

fn deliver_target(job: &CronJob) -> Result<Option<Target>, String> {
    let Some(d) = job.deliver_to.as_ref().filter(|d| !d.is_null()) else { return Ok(None) };
    let s = |k: &str| d.get(k).and_then(Value::as_str).filter(|v| !v.is_empty()).map(str::to_owned);
    let (Some(channel), Some(chat_id)) = (s("channel"), s("chatId")) else {
        return Err("the job's delivery target needs a channel and a chat".into());
    };
    let account = s("account").unwrap_or_else(|| "default".into());
    Ok(Some(Target { key: AccountKey::new(&channel, &account), chat_id, thread_id: s("threadId") }))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn seconds_field_is_optional_and_slots_are_exact() {
        let every2s = Schedule::parse("*/2 * * * * *", None).expect("6 fields");
        assert_eq!(every2s.next_after(1_000), Some(2_000));
        assert_eq!(every2s.next_after(2_000), Some(4_000));
        assert_eq!(every2s.slots_between(1_000, 8_500, 100), vec![2_000, 4_000, 6_000, 8_000]);
        assert_eq!(every2s.slots_between(4_000, 8_000, 100), vec![6_000, 8_000]);
        assert_eq!(every2s.slots_between(0, 20_000, 3), vec![16_000, 18_000, 20_000]);
        let minutely = Schedule::parse("* * * * *", None).expect("5 fields");
        assert_eq!(minutely.next_after(1), Some(60_000));
        assert!(Schedule::parse("not a cron", None).is_err());
        assert!(Schedule::parse("* * * * *", Some("Mars/Olympus")).is_err());
    }

    #[test]
    fn zones_shift_the_slots() {
        // 09:00 in Berlin on 2024-01-15 (UTC+1) is 08:00 UTC.
        let s = Schedule::parse("0 9 * * *", Some("Europe/Berlin")).expect("valid");
        let jan15 = 1_705_276_800_000; // 2024-01-15T00:00:00Z
        assert_eq!(s.next_after(jan15), Some(jan15 + 8 * 3_600_000));
    }

    #[test]
    fn every_slots_count_from_the_anchor() {
        let s = Schedule::every(2_000, 10_000).expect("valid");
        assert_eq!(s.next_after(0), Some(10_000), "before the anchor: the anchor itself");
        assert_eq!(s.next_after(10_000), Some(12_000));
        assert_eq!(s.next_after(12_001), Some(14_000));
        assert_eq!(s.slots_between(0, 15_000, 100), vec![10_000, 12_000, 14_000]);
        assert_eq!(s.slots_between(10_000, 14_000, 100), vec![12_000, 14_000], "(after, until]");
        assert_eq!(s.slots_between(0, 30_000, 2), vec![28_000, 30_000], "the latest `cap`");
        assert!(s.slots_between(0, 9_999, 100).is_empty());
        assert_eq!(s.one_shot_at(), None);
        assert_eq!(Schedule::every(999, 0).unwrap_err(), "schedule.everyMs must be ≥ 1000");
        assert!(Schedule::every(1_000, -1).is_err());
        assert_eq!(Schedule::every(1_000, MAX_TIME_MS).expect("valid").next_after(MAX_TIME_MS), None, "no overflow");
    }

    #[test]
    fn an_at_schedule_has_one_slot() {
        let s = Schedule::at("1970-01-01T00:00:05Z").expect("valid");
        assert_eq!(s.one_shot_at(), Some(5_000));
        assert_eq!(s.next_after(4_999), Some(5_000));
        assert_eq!(s.next_after(5_000), None);
        assert_eq!(s.slots_between(0, 10_000, 100), vec![5_000]);
        assert!(s.slots_between(5_000, 10_000, 100).is_empty(), "claimed: never again");
        assert!(s.slots_between(0, 4_999, 100).is_empty(), "not yet");
    }

    #[test]
    fn at_times_read_as_upstream_reads_them() {
        let nine = 1_796_720_400_000; // 2026-12-08T09:00:00Z
        for text in [
            "2026-12-08T09:00:00.000Z",
            "2026-12-08T09:00:00Z",
            "2026-12-08T10:00:00+01:00",
            "2026-12-08T09:00:00",
            "2026-12-08T09:00",
            "2026-12-08T10:00+01:00",
            " 1796720400000 ",
        ] {
            assert_eq!(parse_at(text), Ok(nine), "{text}");
        }
        assert_eq!(parse_at("2026-12-08"), Ok(nine - 9 * 3_600_000), "a date is midnight UTC");
        for bad in ["", "tomorrow", "2026-13-01T00:00:00Z", "2026-02-30", "-5", "99999999999999999999"] {
            assert!(parse_at(bad).is_err(), "{bad:?}");
        }
        assert!(parse_at("soon").unwrap_err().contains("schedule.at must be an ISO 8601 time"));
    }

    #[test]
    fn catch_up_policy_applies_only_to_slots_missed_while_down() {
        let slots = [1_000, 2_000, 3_000, 4_000];
        assert_eq!(slots_to_fire(&slots, 3_000, "skip"), vec![3_000, 4_000]);
        assert_eq!(slots_to_fire(&slots, 3_000, "once"), vec![2_000, 3_000, 4_000]);
        assert_eq!(slots_to_fire(&slots, 3_000, "all"), vec![1_000, 2_000, 3_000, 4_000]);
        assert_eq!(slots_to_fire(&slots, 9_000, "once"), vec![4_000]);
        assert!(slots_to_fire(&slots, 9_000, "skip").is_empty());
    }

    /// A scheduler on an in-memory store whose ComfyUI hook records what it is asked to queue,
    /// and an operator connection that sees its `cron` events.
    struct Bench {
        cron: CronService,
        store: Store,
        queued: tokio::sync::mpsc::UnboundedReceiver<ComfyGenerate>,
        events: tokio::sync::mpsc::UnboundedReceiver<crate::broadcast::Outbound>,
    }

    struct RecordingComfy(tokio::sync::mpsc::UnboundedSender<ComfyGenerate>);

    #[async_trait::async_trait]
    impl ToolHost for RecordingComfy {
        fn comfy_templates(&self) -> Option<Vec<crate::agent::tools::TemplateInfo>> {
            None
        }

        async fn comfy_generate(&self, job: ComfyGenerate) -> Result<crate::agent::tools::ComfyQueued, String> {
            let _ = self.0.send(job);
            Ok(crate::agent::tools::ComfyQueued { job_id: "job_1".into(), status: "queued".into(), position: None })
        }
    }

    impl Bench {
        async fn new() -> Self {
            use crate::broadcast::{AuthKind, Broadcaster, ClientHandle};
            let store = clawgate_store::AnyStore::open_in_memory().await.expect("store");
            let clients = Arc::new(Broadcaster::default());
            let events = Events::new(clients.clone(), Arc::new(crate::presence::PresenceState::new(json!({}))));
            let tasks = Tasks::new();
            let (tx, queued) = tokio::sync::mpsc::unbounded_channel();
            let comfy: Arc<dyn ToolHost> = Arc::new(RecordingComfy(tx));
            let config = clawgate_config::Config::default();
            let setup = crate::agent::AgentSetup::from_config(&config, std::path::Path::new(".")).expect("agents");
            let agents = AgentService::new(
                store.clone(),
                events.clone(),
                tasks.clone(),
                setup,
                comfy.clone(),
                Default::default(),
            );
            let outbox = Outbox::new(store.clone(), Default::default());
            let me = crate::cluster::Member {
                id: "test".into(),
                version: String::new(),
                started_at_ms: 0,
                listen_addr: String::new(),
            };
            let cluster = crate::cluster::Cluster::new(store.clone(), tasks.clone(), me, Default::default());
            let cron = CronService::new(store.clone(), events, tasks, agents, outbox, comfy, &cluster);
            let scopes = ["operator.admin", "operator.read"].map(String::from).to_vec();
            let (client, events, _) =
                ClientHandle::new("c".into(), "operator".into(), scopes, None, AuthKind::SharedSecret, 1 << 20);
            clients.add(client);
            Self { cron, store, queued, events }
        }

        async fn add_job(&self, updated_at_ms: i64, catch_up: &str) -> CronJob {
            let job = CronJob {
                id: "nightly".into(),
                name: "nightly render".into(),
                schedule_kind: SCHEDULE_CRON.into(),
                schedule: "* * * * * *".into(),
                anchor_ms: None,
                timezone: None,
                enabled: true,
                kind: KIND_COMFY_RUN.into(),
                payload: json!({"templateId": "invert", "inputs": {"strength": 2}}),
                deliver_to: None,
                catch_up: catch_up.into(),
                delete_after_run: false,
                created_at_ms: updated_at_ms,
                updated_at_ms,
                last_run_at_ms: None,
                last_status: None,
                next_run_at_ms: None,
            };
            self.store.upsert_cron_job(&job).await.expect("job stored");
            job
        }

        /// The next `cron` event's payload.
        async fn next_cron_event(&mut self) -> Value {
            loop {
                let out = self.events.recv().await.expect("the broadcaster is alive");
                if let Some(text) = out.text() {
                    let frame: Value = serde_json::from_str(&text).expect("a JSON frame");
                    if frame["event"] == "cron" {
                        return frame["payload"].clone();
                    }
                }
            }
        }
    }

    #[tokio::test]
    async fn a_slot_fires_once_and_its_comfy_run_leaves_a_receipt() {
        let mut b = Bench::new().await;
        let job = b.add_job(0, "once").await;
        assert!(b.cron.fire(&job, 5_000, run_id_for(&job.id, 5_000)).await.expect("fired"));
        assert!(!b.cron.fire(&job, 5_000, run_id_for(&job.id, 5_000)).await.expect("claimed before"), "once per slot");

        let asked = b.queued.recv().await.expect("the ComfyUI hook is asked");
        assert_eq!((asked.template.as_str(), asked.inputs["strength"].as_str()), ("invert", "2"));
        assert_eq!(
            asked.requested_by,
            Some(json!({"client": "cron", "mode": "cron", "jobId": "nightly", "slotMs": 5_000}))
        );
        let started = b.next_cron_event().await;
        assert_eq!(
            (started["action"].as_str(), started["runId"].as_str()),
            (Some("started"), Some("cron:nightly:5000"))
        );
        let finished = b.next_cron_event().await;
        assert_eq!(finished["action"], "finished", "{finished}");
        assert_eq!(finished["status"], "ok", "{finished}");
        assert_eq!(finished["summary"], "queued ComfyUI job job_1", "{finished}");
        let runs = b.store.list_cron_runs(Some("nightly"), 10).await.expect("receipts");
        assert_eq!(runs.len(), 1, "{runs:?}");
        assert_eq!((runs[0].slot_ms, runs[0].status.as_str()), (5_000, "ok"));
        assert!(b.queued.try_recv().is_err(), "the second fire queued nothing");
    }

    /// Stores the bench's job as a one-shot at `at_ms`, defined at `defined_ms`.
    async fn one_shot(b: &Bench, at_ms: i64, defined_ms: i64, delete_after_run: bool) {
        let mut job = b.add_job(defined_ms, "skip").await;
        (job.schedule_kind, job.schedule, job.delete_after_run) =
            (SCHEDULE_AT.into(), at_ms.to_string(), delete_after_run);
        b.store.upsert_cron_job(&job).await.expect("job stored");
    }

    #[tokio::test]
    async fn an_at_time_already_past_when_set_fires_once_then_its_job_is_disabled() {
        let mut b = Bench::new().await;
        let now = now_ms();
        // Defined while this process runs: not "missed while down", so `skip` does not apply.
        one_shot(&b, now - 5_000, now, false).await;
        assert_eq!(b.cron.pass(now - 60_000).await.expect("a pass"), None, "nothing after it");
        let asked = b.queued.recv().await.expect("the slot fires");
        assert_eq!(asked.requested_by.as_ref().map(|r| r["slotMs"].clone()), Some(json!(now - 5_000)));
        assert_eq!(b.next_cron_event().await["action"], "started");
        assert_eq!(b.next_cron_event().await["status"], "ok");
        let updated = b.next_cron_event().await;
        assert_eq!(updated, json!({"jobId": "nightly", "action": "updated"}));
        let job = b.store.get_cron_job("nightly").await.expect("read").expect("kept");
        assert!(!job.enabled, "a one-shot job that ran is disabled");

        // Enabled again (its time unchanged), it does not fire again: the receipt says it ran.
        b.store.set_cron_enabled("nightly", true, now_ms()).await.expect("enable");
        b.cron.pass(now - 60_000).await.expect("a pass");
        assert_eq!(b.store.list_cron_runs(Some("nightly"), 10).await.expect("receipts").len(), 1);
        assert!(b.queued.try_recv().is_err(), "fired once");
    }

    #[tokio::test]
    async fn an_at_job_that_asks_for_it_is_removed_after_its_run() {
        let mut b = Bench::new().await;
        let now = now_ms();
        one_shot(&b, now - 1_000, now - 120_000, true).await;
        // Defined before this process started and missed while down: `skip` skips it.
        b.cron.pass(now).await.expect("a pass");
        assert!(b.store.list_cron_runs(Some("nightly"), 10).await.expect("receipts").is_empty());
        // Under `once` it runs once, and the job goes.
        let mut job = b.store.get_cron_job("nightly").await.expect("read").expect("the job");
        job.catch_up = "once".into();
        b.store.upsert_cron_job(&job).await.expect("stored");
        b.cron.pass(now).await.expect("a pass");
        b.queued.recv().await.expect("the slot fires");
        assert_eq!(b.next_cron_event().await["action"], "started");
        assert_eq!(b.next_cron_event().await["action"], "finished");
        assert_eq!(b.next_cron_event().await, json!({"jobId": "nightly", "action": "removed"}));
        assert_eq!(b.store.get_cron_job("nightly").await.expect("read"), None);
        b.cron.pass(now).await.expect("a pass");
        assert!(b.queued.try_recv().is_err(), "fired once");
    }

    #[tokio::test]
    async fn a_pass_after_downtime_fires_only_the_latest_missed_slot_under_catch_up_once() {
        let mut b = Bench::new().await;
        let now = now_ms();
        b.add_job(now - 60_000, "once").await;
        // Every slot so far was missed "while down": this process starts planning after them.
        let next = b.cron.pass(now + 3_600_000).await.expect("a pass");
        assert!(next.is_some_and(|n| n > now), "the next slot is planned: {next:?}");

        let asked = b.queued.recv().await.expect("one slot fires");
        let slot = asked.requested_by.as_ref().and_then(|r| r["slotMs"].as_i64()).expect("its slot");
        assert!(slot > now - 60_000 && slot <= now_ms(), "the latest missed slot: {slot}");
        assert_eq!(b.next_cron_event().await["action"], "started");
        assert_eq!(b.next_cron_event().await["action"], "finished");
        let runs = b.store.list_cron_runs(Some("nightly"), 100).await.expect("receipts");
        assert_eq!(runs.len(), 1, "one receipt, not one per missed slot: {runs:?}");
        let job = b.store.get_cron_job("nightly").await.expect("read").expect("the job");
        assert_eq!(job.next_run_at_ms, next, "the job's next slot is recorded");
        assert!(b.queued.try_recv().is_err(), "nothing else was queued");
    }
}
