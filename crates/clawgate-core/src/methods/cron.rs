//! `cron.list|status|add|update|remove|run|runs`: upstream's automations methods over clawgate's
//! cron store.
//!
//! Wire ↔ store: upstream's `CronJob` is kept as its schema says, with what clawgate runs:
//! `schedule` is `{kind:"cron", expr, tz?}` (`expr` may have a leading seconds field),
//! `{kind:"every", everyMs ≥ 1000, anchorMs?}` or `{kind:"at", at}` (an `at` job runs once, then
//! is removed — `deleteAfterRun`, its default — or disabled);
//! `payload` is `{kind:"agentTurn", message, …}` or clawgate's own `{kind:"comfyRun",
//! templateId, inputs?, prompt?}`; `delivery` `{mode:"announce", channel, to, accountId?,
//! threadId?}` is the chat results go to; `sessionTarget` `isolated` (the job's own session
//! `agent:<agent>:cron:<id>`), `main` or `session:<key>`. The catch-up policy for slots missed
//! while the gateway was down is a clawgate param (`catchUp`: `skip`|`once`|`all`, default
//! `once`) that the job JSON does not echo (upstream's `CronJob` is a closed object).

use serde_json::{Map, Value, json};

use clawgate_protocol::methods::Checked;
use clawgate_protocol::methods::cron::{
    AgentTurnPayload, CronAddParams, CronAddResult, CronDelivery, CronDeliveryParams, CronEnabledFilter,
    CronJob as WireJob, CronJobFields, CronJobState, CronListEntry, CronListParams, CronListResult, CronPayload,
    CronRemoveParams, CronRemoveResult, CronRunLogEntry, CronRunParams, CronRunResult, CronRunStatus, CronRunsParams,
    CronRunsResult, CronSchedule, CronScheduleParams, CronSortBy, CronStatusParams, CronStatusResult, CronUpdateParams,
    CronUpdateResult, SortDir,
};
use clawgate_store::{CronJob, CronRunRecord, CronStore};

use crate::cron::{
    CATCH_UP, CronService, DEFAULT_CATCH_UP, KIND_AGENT_TURN, KIND_COMFY_RUN, SCHEDULE_AT, SCHEDULE_CRON,
    SCHEDULE_EVERY, Schedule,
};
use crate::error::CoreError;
use crate::time::now_ms;

/// Upstream's page size bound for `cron.list` and `cron.runs`.
const MAX_PAGE: usize = 200;

fn invalid(method: &str, why: impl std::fmt::Display) -> CoreError {
    CoreError::invalid(format!("invalid {method} params: {why}"))
}

fn not_found(job_id: &str) -> CoreError {
    CoreError::InvalidRequest {
        message: format!("Automation not found: {job_id}. List automations and retry with a current job id."),
        details: Some(json!({"code": "CRON_JOB_NOT_FOUND", "jobId": job_id})),
    }
}

/// `id`, else `jobId`; a non-empty one.
fn job_id_param(id: Option<String>, job_id: Option<String>, method: &str) -> Result<String, CoreError> {
    id.or(job_id).filter(|s| !s.is_empty()).ok_or_else(|| invalid(method, "missing id"))
}

fn page_bounds(limit: Option<u64>, offset: Option<u64>) -> (usize, usize) {
    let limit = limit.map_or(50, |l| l.clamp(1, MAX_PAGE as u64)) as usize;
    (limit, offset.unwrap_or(0) as usize)
}

fn run_status(s: &str) -> Option<CronRunStatus> {
    match s {
        "ok" => Some(CronRunStatus::Ok),
        "error" => Some(CronRunStatus::Error),
        "skipped" => Some(CronRunStatus::Skipped),
        _ => None,
    }
}

/// The job as upstream's `CronJob` shapes it.
pub fn job_wire(job: &CronJob) -> WireJob {
    let p = &job.payload;
    let text = |v: Option<&Value>| v.and_then(Value::as_str).map(str::to_owned);
    let payload = match job.kind.as_str() {
        KIND_AGENT_TURN => CronPayload::AgentTurn(AgentTurnPayload {
            kind: KIND_AGENT_TURN,
            message: text(p.get("message")).unwrap_or_default(),
            model: text(p.get("model")),
        }),
        other => CronPayload::Stored {
            kind: other.to_owned(),
            fields: p.as_object().cloned().unwrap_or_default().into_iter().filter(|(k, _)| k != "kind").collect(),
        },
    };
    let session_target = match p.get("sessionKey").and_then(Value::as_str) {
        Some("main") => "main".to_owned(),
        Some(key) => format!("session:{key}"),
        None => "isolated".to_owned(),
    };
    let mut state = CronJobState {
        next_run_at_ms: job.next_run_at_ms.filter(|_| job.enabled),
        last_run_at_ms: job.last_run_at_ms,
        ..CronJobState::default()
    };
    match job.last_status.as_deref() {
        Some("running") => state.running_at_ms = Some(job.last_run_at_ms.unwrap_or(job.updated_at_ms)),
        Some(s) => {
            state.last_run_status = run_status(s);
            state.last_status = state.last_run_status;
        }
        None => {}
    }
    let delivery = job.deliver_to.as_ref().filter(|d| !d.is_null()).map(|d| CronDelivery {
        mode: "announce",
        channel: text(d.get("channel")),
        to: text(d.get("chatId")),
        account_id: text(d.get("account")),
        thread_id: text(d.get("threadId")),
    });
    WireJob {
        id: job.id.clone(),
        agent_id: text(p.get("agentId")),
        name: job.name.clone(),
        enabled: job.enabled,
        created_at_ms: job.created_at_ms,
        updated_at_ms: job.updated_at_ms,
        schedule: schedule_wire(job),
        session_target,
        wake_mode: "now",
        payload,
        delete_after_run: (job.schedule_kind == SCHEDULE_AT).then_some(job.delete_after_run),
        delivery,
        state,
    }
}

/// The job's schedule in upstream's shape (a stored `every` interval that does not read as one
/// shows as it is stored, under `cron`, rather than vanish).
fn schedule_wire(job: &CronJob) -> CronSchedule {
    match (job.schedule_kind.as_str(), job.schedule.trim().parse::<i64>()) {
        (SCHEDULE_EVERY, Ok(every_ms)) => CronSchedule::Every { every_ms, anchor_ms: job.anchor_ms },
        (SCHEDULE_AT, _) => CronSchedule::At { at: job.schedule.clone() },
        _ => CronSchedule::Cron { expr: job.schedule.clone(), tz: job.timezone.clone() },
    }
}

/// Applies `schedule` onto `job`: each kind checked by parsing it as the scheduler will. An
/// `every` without `anchorMs` counts from `now`, or keeps the anchor it had when only its other
/// fields changed; an `at` job is removed after its run unless it says otherwise (upstream's
/// default), and a job that stops being one-shot forgets that.
fn apply_schedule(job: &mut CronJob, s: CronScheduleParams, now: i64, method: &str) -> Result<(), CoreError> {
    let was = job.schedule_kind.clone();
    match s.kind.as_deref() {
        Some(SCHEDULE_CRON) => {
            let expr = s.expr.ok_or_else(|| invalid(method, "schedule.expr is required"))?;
            let tz = s.tz.filter(|t| !t.is_empty());
            Schedule::parse(&expr, tz.as_deref()).map_err(|e| invalid(method, e))?;
            job.schedule = expr.trim().to_owned();
            job.timezone = tz;
            job.anchor_ms = None;
        }
        Some(SCHEDULE_EVERY) => {
            let every = match s.every_ms {
                Checked::Valid(ms) => ms,
                Checked::Absent | Checked::Null => return Err(invalid(method, "schedule.everyMs is required")),
                Checked::Invalid => return Err(invalid(method, "schedule.everyMs must be an integer (milliseconds)")),
            };
            let anchor = match s.anchor_ms {
                Checked::Valid(ms) => ms,
                Checked::Invalid => return Err(invalid(method, "schedule.anchorMs must be an integer (milliseconds)")),
                Checked::Absent | Checked::Null if was == SCHEDULE_EVERY && job.schedule == every.to_string() => {
                    job.anchor_ms.unwrap_or(job.created_at_ms)
                }
                Checked::Absent | Checked::Null => now,
            };
            Schedule::every(every, anchor).map_err(|e| invalid(method, e))?;
            job.schedule = every.to_string();
            job.anchor_ms = Some(anchor);
            job.timezone = None;
        }
        Some(SCHEDULE_AT) => {
            let at = s.at.unwrap_or_default();
            Schedule::at(&at).map_err(|e| invalid(method, e))?;
            job.schedule = at.trim().to_owned();
            job.anchor_ms = None;
            job.timezone = None;
            if was != SCHEDULE_AT {
                job.delete_after_run = true;
            }
        }
        _ => {
            return Err(invalid(
                method,
                "clawgate runs schedule kinds cron ({kind:\"cron\", expr, tz?}), every ({kind:\"every\", everyMs, \
                 anchorMs?}) and at ({kind:\"at\", at})",
            ));
        }
    }
    job.schedule_kind = s.kind.unwrap_or_default();
    if job.schedule_kind != SCHEDULE_AT {
        job.delete_after_run = false;
    }
    Ok(())
}

/// Applies upstream-shaped fields of `src` (a `cron.add` params object or a `cron.update`
/// patch) onto `job`. `null` clears optional fields.
fn apply(job: &mut CronJob, src: CronJobFields, method: &str) -> Result<(), CoreError> {
    if let Some(name) = src.name {
        job.name =
            name.filter(|n| !n.trim().is_empty()).ok_or_else(|| invalid(method, "name must be a non-empty string"))?;
    }
    if let Some(enabled) = src.enabled {
        job.enabled = enabled.ok_or_else(|| invalid(method, "enabled must be a boolean"))?;
    }
    if let Some(s) = src.schedule {
        apply_schedule(job, s.unwrap_or_default(), now_ms(), method)?;
    }
    if let Some(d) = src.delete_after_run
        && job.schedule_kind == SCHEDULE_AT
    {
        job.delete_after_run = d;
    }
    if let Some(p) = src.payload {
        let p = p.ok_or_else(|| invalid(method, "payload must be an object"))?;
        let kind = p.get("kind").and_then(Value::as_str).unwrap_or(job.kind.as_str()).to_owned();
        let mut merged =
            if kind == job.kind { job.payload.as_object().cloned().unwrap_or_default() } else { Map::new() };
        for (k, v) in p {
            if k == "kind" {
                continue;
            }
            if v.is_null() {
                merged.remove(&k)
            } else {
                merged.insert(k, v)
            };
        }
        match kind.as_str() {
            KIND_AGENT_TURN if merged.get("message").and_then(Value::as_str).is_some_and(|m| !m.trim().is_empty()) => {}
            KIND_AGENT_TURN => return Err(invalid(method, "payload.message is required")),
            KIND_COMFY_RUN if merged.get("templateId").and_then(Value::as_str).is_some_and(|t| !t.is_empty()) => {}
            KIND_COMFY_RUN => return Err(invalid(method, "payload.templateId is required")),
            other => {
                return Err(invalid(
                    method,
                    format!("clawgate runs payload kinds agentTurn and comfyRun, not {other:?}"),
                ));
            }
        }
        if let Some(inputs) = merged.get("inputs")
            && !inputs.is_object()
        {
            return Err(invalid(method, "payload.inputs must be an object"));
        }
        job.kind = kind;
        job.payload = Value::Object(merged);
    }
    // agentId / sessionKey / sessionTarget live in the payload (the run needs them).
    let mut set_payload = |key: &str, value: Option<&str>| {
        if let Some(obj) = job.payload.as_object_mut() {
            match value {
                Some(v) => obj.insert(key.to_owned(), json!(v)),
                None => obj.remove(key),
            };
        }
    };
    if let Some(a) = src.agent_id {
        set_payload("agentId", a.as_deref().filter(|s| !s.is_empty()));
    }
    if let Some(t) = src.session_target {
        match t.as_str() {
            "isolated" => set_payload("sessionKey", None),
            "main" => set_payload("sessionKey", Some("main")),
            "current" => return Err(invalid(method, "sessionTarget \"current\" needs a calling session; name one")),
            other => match other.strip_prefix("session:").filter(|k| !k.is_empty()) {
                Some(key) => set_payload("sessionKey", Some(key)),
                None => return Err(invalid(method, format!("unknown sessionTarget {other:?}"))),
            },
        }
    }
    if let Some(k) = src.session_key {
        set_payload("sessionKey", k.as_deref().filter(|s| !s.is_empty()));
    }
    if let Some(d) = src.delivery {
        job.deliver_to = d.map(|d| delivery_to_target(d, method)).transpose()?.flatten();
    }
    if let Some(c) = src.catch_up {
        let c = c
            .filter(|c| CATCH_UP.contains(&c.as_str()))
            .ok_or_else(|| invalid(method, "catchUp must be skip, once or all"))?;
        job.catch_up = c;
    }
    Ok(())
}

/// The stored delivery target of a `delivery` object (`None` for `mode: "none"`).
fn delivery_to_target(d: CronDeliveryParams, method: &str) -> Result<Option<Value>, CoreError> {
    match d.mode.as_deref() {
        Some("none") => Ok(None),
        Some("announce") => {
            let Some(channel) = d.channel.filter(|c| !c.is_empty() && c != "last") else {
                return Err(invalid(
                    method,
                    "delivery.channel must name a channel (\"last\" is not tracked by clawgate)",
                ));
            };
            let Some(to) = d.to.filter(|t| !t.is_empty()) else {
                return Err(invalid(method, "delivery.to (the chat id) is required"));
            };
            let thread = d.thread_id.filter(|t| !t.is_empty());
            let account = d.account_id.unwrap_or_else(|| "default".to_owned());
            // The store's delivery target (`chatId`/`account`), the same one `comfy.run` stores.
            Ok(Some(json!({"channel": channel, "account": account, "chatId": to, "threadId": thread})))
        }
        Some(other) => Err(invalid(method, format!("delivery.mode {other:?} is not supported (use announce or none)"))),
        None => Err(invalid(method, "delivery.mode is required")),
    }
}

/// The job's next slot after `now`; a one-shot time already past is due now (the scheduler runs
/// it at once unless its receipt says it ran).
fn next_run(job: &CronJob, now: i64) -> Option<i64> {
    let schedule = Schedule::of_job(job).ok()?;
    schedule.next_after(now).or(schedule.one_shot_at())
}

async fn load(cron: &CronService, id: &str) -> Result<CronJob, CoreError> {
    cron.store().get_cron_job(id).await?.ok_or_else(|| not_found(id))
}

/// `cron.list {includeDisabled?, limit?, offset?, query?, enabled?, agentId?, sortBy?, sortDir?}`
/// → `{jobs, total, offset, limit, hasMore, nextOffset, snapshotRevision}`.
pub async fn cron_list(cron: &CronService, params: CronListParams) -> Result<CronListResult, CoreError> {
    let include_disabled = params.include_disabled.unwrap_or(false);
    let filter =
        params.enabled.unwrap_or(if include_disabled { CronEnabledFilter::All } else { CronEnabledFilter::Enabled });
    let query = params.query.map(|q| q.to_lowercase()).filter(|q| !q.is_empty());
    let agent = params.agent_id.as_deref();
    let default_agent = cron.default_agent();
    let agent_of = |j: &CronJob| j.payload.get("agentId").and_then(Value::as_str).unwrap_or(&default_agent).to_owned();
    let mut jobs: Vec<CronJob> = cron
        .store()
        .list_cron_jobs(true)
        .await?
        .into_iter()
        .filter(|j| match filter {
            CronEnabledFilter::Enabled => j.enabled,
            CronEnabledFilter::Disabled => !j.enabled,
            CronEnabledFilter::All => true,
        })
        .filter(|j| query.as_ref().is_none_or(|q| j.name.to_lowercase().contains(q) || j.id.to_lowercase().contains(q)))
        .filter(|j| agent.is_none_or(|a| agent_of(j) == a))
        .collect();
    match params.sort_by.unwrap_or(CronSortBy::NextRunAtMs) {
        CronSortBy::Name => {}
        CronSortBy::UpdatedAtMs => jobs.sort_by_key(|j| j.updated_at_ms),
        CronSortBy::NextRunAtMs => {
            jobs.sort_by_key(|j| (j.next_run_at_ms.filter(|_| j.enabled).unwrap_or(i64::MAX), j.name.clone()))
        }
    }
    if params.sort_dir == Some(SortDir::Desc) {
        jobs.reverse();
    }
    // Changes whenever a listed job is added, removed or edited: lets a paging client notice.
    let revision = jobs.iter().map(|j| j.updated_at_ms).max().unwrap_or(0);
    let snapshot_revision = format!("{}-{revision}", jobs.len());
    let (limit, offset) = page_bounds(params.limit, params.offset);
    let total = jobs.len();
    let page: Vec<CronListEntry> = jobs
        .iter()
        .skip(offset)
        .take(limit)
        .map(|j| CronListEntry { job: job_wire(j), effective_agent_id: agent_of(j) })
        .collect();
    let next = offset.min(total) + page.len();
    Ok(CronListResult {
        jobs: page,
        total,
        offset: offset.min(total),
        limit,
        has_more: next < total,
        next_offset: (next < total).then_some(next),
        snapshot_revision,
    })
}

/// `cron.status {}` → `{enabled, storage, jobs, nextWakeAtMs, …}`.
pub async fn cron_status(cron: &CronService, _: CronStatusParams) -> Result<CronStatusResult, CoreError> {
    let jobs = cron.store().list_cron_jobs(true).await?.len();
    Ok(cron.status(jobs))
}

/// `cron.add {name, schedule, payload, sessionTarget?, wakeMode?, delivery?, enabled?,
/// agentId?, catchUp?}` → the `CronJob`.
pub async fn cron_add(cron: &CronService, params: CronAddParams) -> Result<CronAddResult, CoreError> {
    const METHOD: &str = "cron.add";
    let present = [
        ("name", params.name.is_some()),
        ("schedule", params.schedule.is_some()),
        ("payload", params.payload.is_some()),
    ];
    if let Some((required, _)) = present.iter().find(|(_, here)| !here) {
        return Err(invalid(METHOD, format!("must have required property '{required}'")));
    }
    let now = now_ms();
    let mut job = CronJob {
        id: uuid::Uuid::new_v4().to_string(),
        name: String::new(),
        schedule_kind: String::new(),
        schedule: String::new(),
        anchor_ms: None,
        timezone: None,
        enabled: true,
        kind: String::new(),
        payload: json!({}),
        deliver_to: None,
        catch_up: DEFAULT_CATCH_UP.to_owned(),
        delete_after_run: false,
        created_at_ms: now,
        updated_at_ms: now,
        last_run_at_ms: None,
        last_status: None,
        next_run_at_ms: None,
    };
    apply(&mut job, params, METHOD)?;
    job.next_run_at_ms = next_run(&job, now);
    cron.store().upsert_cron_job(&job).await?;
    let job = load(cron, &job.id).await?;
    tracing::info!(job = %job.id, name = %job.name, schedule = %job.schedule, "cron job added");
    cron.kick();
    cron.events().cron(json!({"jobId": job.id, "action": "added", "nextRunAtMs": job.next_run_at_ms}));
    Ok(job_wire(&job))
}

/// `cron.update {id|jobId, patch}` → the `CronJob`.
pub async fn cron_update(cron: &CronService, params: CronUpdateParams) -> Result<CronUpdateResult, CoreError> {
    const METHOD: &str = "cron.update";
    let id = job_id_param(params.id, params.job_id, METHOD)?;
    let patch = params.patch.ok_or_else(|| invalid(METHOD, "patch is required"))?;
    let mut job = load(cron, &id).await?;
    apply(&mut job, patch, METHOD)?;
    let now = now_ms();
    job.updated_at_ms = now;
    job.next_run_at_ms = next_run(&job, now);
    cron.store().upsert_cron_job(&job).await?;
    let job = load(cron, &id).await?;
    cron.kick();
    cron.events().cron(json!({"jobId": job.id, "action": "updated", "nextRunAtMs": job.next_run_at_ms}));
    Ok(job_wire(&job))
}

/// `cron.remove {id|jobId}` → `{ok, removed}`; its receipts go with it.
pub async fn cron_remove(cron: &CronService, params: CronRemoveParams) -> Result<CronRemoveResult, CoreError> {
    let id = job_id_param(params.id, params.job_id, "cron.remove")?;
    if !cron.store().remove_cron_job(&id).await? {
        return Err(not_found(&id));
    }
    cron.kick();
    cron.events().cron(json!({"jobId": id, "action": "removed"}));
    Ok(CronRemoveResult { ok: true, removed: true })
}

/// `cron.run {id|jobId, mode?: force|due|if-enabled}` → `{ok, enqueued, runId}` or
/// `{ok, ran:false, reason}`. A manual run gets its own slot (now), with its own receipt.
pub async fn cron_run(cron: &CronService, params: CronRunParams) -> Result<CronRunResult, CoreError> {
    const METHOD: &str = "cron.run";
    let id = job_id_param(params.id, params.job_id, METHOD)?;
    let job = load(cron, &id).await?;
    let now = now_ms();
    let skip = |reason| {
        Ok(CronRunResult::NotRun { ok: true, ran: false, reason, process_instance_id: cron.instance_id().to_owned() })
    };
    match params.mode.as_deref().unwrap_or("force") {
        "force" => {}
        "if-enabled" if !job.enabled => return skip("disabled"),
        "if-enabled" => {}
        "due" if !job.enabled => return skip("disabled"),
        "due" if job.next_run_at_ms.is_none_or(|n| n > now) => return skip("not-due"),
        "due" => {}
        other => return Err(invalid(METHOD, format!("unknown mode {other:?}"))),
    }
    let run_id = format!("manual:{id}:{now}");
    if !cron.fire(&job, now, run_id.clone()).await? {
        return skip("already-running");
    }
    Ok(CronRunResult::Enqueued { ok: true, enqueued: true, run_id, process_instance_id: cron.instance_id().to_owned() })
}

fn run_entry(r: &CronRunRecord, job_name: Option<&str>) -> CronRunLogEntry {
    CronRunLogEntry {
        ts: r.finished_at_ms.unwrap_or(r.started_at_ms),
        job_id: r.job_id.clone(),
        action: "finished",
        status: r.status.clone(),
        run_id: r.run_id.clone(),
        run_at_ms: r.slot_ms,
        duration_ms: r.finished_at_ms.map(|f| (f - r.started_at_ms).max(0)),
        summary: r.summary.clone(),
        error: r.error.clone(),
        job_name: job_name.map(str::to_owned),
    }
}

/// `cron.runs {id|jobId?, scope?, limit?, offset?, status?, statuses?, sortDir?}` → a page of
/// `CronRunLogEntry` (finished runs; `runAtMs` is the scheduled slot) `{entries, total, offset,
/// limit, hasMore, nextOffset}`.
pub async fn cron_runs(cron: &CronService, params: CronRunsParams) -> Result<CronRunsResult, CoreError> {
    const METHOD: &str = "cron.runs";
    let job_id = params.id.or(params.job_id);
    let scope = params.scope.as_deref().unwrap_or(if job_id.is_some() { "job" } else { "all" });
    let job_id = match scope {
        "all" => None,
        _ => Some(job_id.ok_or_else(|| invalid(METHOD, "missing id"))?),
    };
    let names: std::collections::HashMap<String, String> =
        cron.store().list_cron_jobs(true).await?.into_iter().map(|j| (j.id, j.name)).collect();
    if let Some(id) = &job_id
        && !names.contains_key(id)
    {
        return Err(not_found(id));
    }
    let mut statuses: Vec<String> = params.statuses.unwrap_or_default();
    if let Some(s) = params.status.filter(|s| s != "all") {
        statuses.push(s);
    }
    let (limit, offset) = page_bounds(params.limit, params.offset);
    let run_id = params.run_id.as_deref();
    let mut runs: Vec<CronRunRecord> = cron
        .store()
        .list_cron_runs(job_id.as_deref(), 1000)
        .await?
        .into_iter()
        .filter(|r| r.status != "running")
        .filter(|r| statuses.is_empty() || statuses.contains(&r.status))
        .filter(|r| run_id.is_none_or(|id| r.run_id == id))
        .collect();
    if params.sort_dir == Some(SortDir::Asc) {
        runs.reverse();
    }
    let total = runs.len();
    let entries: Vec<CronRunLogEntry> =
        runs.iter().skip(offset).take(limit).map(|r| run_entry(r, names.get(&r.job_id).map(String::as_str))).collect();
    let next = offset.min(total) + entries.len();
    Ok(CronRunsResult {
        entries,
        total,
        offset: offset.min(total),
        limit,
        has_more: next < total,
        next_offset: (next < total).then_some(next),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn fields(v: Value) -> CronJobFields {
        serde_json::from_value(v).expect("decodes")
    }

    fn blank() -> CronJob {
        CronJob {
            id: "j1".into(),
            name: String::new(),
            schedule_kind: String::new(),
            schedule: String::new(),
            anchor_ms: None,
            timezone: None,
            enabled: true,
            kind: String::new(),
            payload: json!({}),
            deliver_to: None,
            catch_up: DEFAULT_CATCH_UP.into(),
            delete_after_run: false,
            created_at_ms: 1,
            updated_at_ms: 1,
            last_run_at_ms: None,
            last_status: None,
            next_run_at_ms: None,
        }
    }

    #[test]
    fn upstream_add_params_round_trip_through_the_store_model() {
        let mut job = blank();
        let params = json!({
            "name": "daily digest", "schedule": {"kind": "cron", "expr": "0 9 * * *", "tz": "Europe/Berlin"},
            "sessionTarget": "isolated", "wakeMode": "now", "agentId": "ops",
            "payload": {"kind": "agentTurn", "message": "summarize"},
            "delivery": {"mode": "announce", "channel": "telegram", "to": "42", "threadId": "7"},
            "catchUp": "skip",
        });
        apply(&mut job, fields(params), "cron.add").expect("valid");
        assert_eq!((job.schedule.as_str(), job.timezone.as_deref()), ("0 9 * * *", Some("Europe/Berlin")));
        assert_eq!(job.kind, "agentTurn");
        assert_eq!(job.payload, json!({"message": "summarize", "agentId": "ops"}));
        assert_eq!(job.catch_up, "skip");
        assert_eq!(
            job.deliver_to,
            Some(json!({"channel": "telegram", "account": "default", "chatId": "42", "threadId": "7"}))
        );
        let wire = serde_json::to_value(job_wire(&job)).unwrap();
        assert_eq!(wire["schedule"], json!({"kind": "cron", "expr": "0 9 * * *", "tz": "Europe/Berlin"}));
        assert_eq!(wire["payload"], json!({"kind": "agentTurn", "message": "summarize"}));
        assert_eq!(wire["agentId"], "ops");
        assert_eq!(wire["sessionTarget"], "isolated");
        assert_eq!(
            wire["delivery"],
            json!({"mode": "announce", "channel": "telegram", "to": "42", "accountId": "default", "threadId": "7"})
        );
    }

    #[test]
    fn unsupported_upstream_shapes_are_refused_with_a_reason() {
        let cases = [
            json!({"schedule": {"kind": "every", "everyMs": 999}}),
            json!({"schedule": {"kind": "every", "everyMs": "60000"}}),
            json!({"schedule": {"kind": "every"}}),
            json!({"schedule": {"kind": "every", "everyMs": 60000, "anchorMs": -1}}),
            json!({"schedule": {"kind": "at", "at": "tomorrow at nine"}}),
            json!({"schedule": {"kind": "at"}}),
            json!({"schedule": {"kind": "on-exit", "command": "true"}}),
            json!({"schedule": {"kind": "cron", "expr": "nope"}}),
            json!({"payload": {"kind": "systemEvent", "text": "x"}}),
            json!({"payload": {"kind": "agentTurn"}}),
            json!({"delivery": {"mode": "webhook", "to": "https://x"}}),
            json!({"catchUp": "twice"}),
        ];
        for c in cases {
            assert!(apply(&mut blank(), fields(c.clone()), "cron.add").is_err(), "{c}");
        }
    }

    #[test]
    fn a_patch_merges_the_payload_and_null_clears_delivery() {
        let mut job = blank();
        apply(
            &mut job,
            fields(json!({"payload": {"kind": "comfyRun", "templateId": "t", "inputs": {"a": 1}},
                    "delivery": {"mode": "announce", "channel": "telegram", "to": 5}})),
            "cron.add",
        )
        .expect("valid");
        apply(&mut job, fields(json!({"payload": {"inputs": {"a": 2}}, "delivery": null})), "cron.update")
            .expect("valid");
        assert_eq!(job.payload, json!({"templateId": "t", "inputs": {"a": 2}}));
        assert_eq!(job.deliver_to, None);
    }
}
