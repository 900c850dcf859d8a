//! `cron.list|status|add|update|remove|run|runs`: upstream's automations methods over clawgate's
//! cron store.
//!
//! Wire ↔ store: upstream's `CronJob` is kept as its schema says, with what clawgate runs:
//! `schedule` is `{kind:"cron", expr, tz?}` only (`expr` may have a leading seconds field);
//! `payload` is `{kind:"agentTurn", message, …}` or clawgate's own `{kind:"comfyRun",
//! templateId, inputs?, prompt?}`; `delivery` `{mode:"announce", channel, to, accountId?,
//! threadId?}` is the chat results go to; `sessionTarget` `isolated` (the job's own session
//! `agent:<agent>:cron:<id>`), `main` or `session:<key>`. The catch-up policy for slots missed
//! while the gateway was down is a clawgate param (`catchUp`: `skip`|`once`|`all`, default
//! `once`) that the job JSON does not echo (upstream's `CronJob` is a closed object).

use std::sync::Arc;

use serde_json::{Map, Value, json};

use clawgate_store::{CronJob, CronRunRecord, CronStore};

use crate::cron::{self, CATCH_UP, DEFAULT_CATCH_UP, KIND_AGENT_TURN, KIND_COMFY_RUN, Schedule};
use crate::error::CoreError;
use crate::gateway::Gateway;
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

fn job_id_param<'a>(params: &'a Value, method: &str) -> Result<&'a str, CoreError> {
    params
        .get("id")
        .or_else(|| params.get("jobId"))
        .and_then(Value::as_str)
        .filter(|s| !s.is_empty())
        .ok_or_else(|| invalid(method, "missing id"))
}

fn page_bounds(params: &Value) -> (usize, usize) {
    let limit = params.get("limit").and_then(Value::as_u64).map_or(50, |l| l.clamp(1, MAX_PAGE as u64)) as usize;
    let offset = params.get("offset").and_then(Value::as_u64).unwrap_or(0) as usize;
    (limit, offset)
}

/// The job as upstream's `CronJob` shapes it.
pub fn job_json(job: &CronJob) -> Value {
    let mut schedule = json!({"kind": "cron", "expr": job.schedule});
    if let Some(tz) = &job.timezone {
        schedule["tz"] = json!(tz);
    }
    let p = &job.payload;
    let payload = match job.kind.as_str() {
        KIND_AGENT_TURN => {
            let mut out = json!({"kind": KIND_AGENT_TURN, "message": p.get("message").cloned().unwrap_or(json!(""))});
            if let Some(m) = p.get("model").filter(|m| m.is_string()) {
                out["model"] = m.clone();
            }
            out
        }
        other => {
            let mut out = p.as_object().cloned().unwrap_or_default();
            out.insert("kind".into(), json!(other));
            Value::Object(out)
        }
    };
    let session_target = match p.get("sessionKey").and_then(Value::as_str) {
        Some("main") => "main".to_owned(),
        Some(key) => format!("session:{key}"),
        None => "isolated".to_owned(),
    };
    let mut state = Map::new();
    if let Some(n) = job.next_run_at_ms.filter(|_| job.enabled) {
        state.insert("nextRunAtMs".into(), json!(n));
    }
    if let Some(l) = job.last_run_at_ms {
        state.insert("lastRunAtMs".into(), json!(l));
    }
    match job.last_status.as_deref() {
        Some("running") => {
            state.insert("runningAtMs".into(), json!(job.last_run_at_ms.unwrap_or(job.updated_at_ms)));
        }
        Some(s @ ("ok" | "error" | "skipped")) => {
            state.insert("lastRunStatus".into(), json!(s));
            state.insert("lastStatus".into(), json!(s));
        }
        _ => {}
    }
    let mut out = json!({
        "id": job.id,
        "name": job.name,
        "enabled": job.enabled,
        "createdAtMs": job.created_at_ms,
        "updatedAtMs": job.updated_at_ms,
        "schedule": schedule,
        "sessionTarget": session_target,
        "wakeMode": "now",
        "payload": payload,
        "state": Value::Object(state),
    });
    if let Some(agent) = p.get("agentId").and_then(Value::as_str) {
        out["agentId"] = json!(agent);
    }
    if let Some(d) = job.deliver_to.as_ref().filter(|d| !d.is_null()) {
        let mut delivery = json!({"mode": "announce", "channel": d.get("channel"), "to": d.get("chatId")});
        if let Some(a) = d.get("account").filter(|a| a.is_string()) {
            delivery["accountId"] = a.clone();
        }
        if let Some(t) = d.get("threadId").filter(|t| t.is_string()) {
            delivery["threadId"] = t.clone();
        }
        out["delivery"] = delivery;
    }
    out
}

/// Applies upstream-shaped fields of `src` (a `cron.add` params object or a `cron.update`
/// patch) onto `job`. `null` clears optional fields.
fn apply(job: &mut CronJob, src: &Value, method: &str) -> Result<(), CoreError> {
    if let Some(name) = src.get("name") {
        job.name = name
            .as_str()
            .filter(|n| !n.trim().is_empty())
            .ok_or_else(|| invalid(method, "name must be a non-empty string"))?
            .to_owned();
    }
    if let Some(enabled) = src.get("enabled") {
        job.enabled = enabled.as_bool().ok_or_else(|| invalid(method, "enabled must be a boolean"))?;
    }
    if let Some(s) = src.get("schedule") {
        if s.get("kind").and_then(Value::as_str) != Some("cron") {
            return Err(invalid(method, "clawgate runs schedule.kind \"cron\" only ({kind:\"cron\", expr, tz?})"));
        }
        let expr = s.get("expr").and_then(Value::as_str).ok_or_else(|| invalid(method, "schedule.expr is required"))?;
        let tz = s.get("tz").and_then(Value::as_str).filter(|t| !t.is_empty());
        Schedule::parse(expr, tz).map_err(|e| invalid(method, e))?;
        job.schedule = expr.trim().to_owned();
        job.timezone = tz.map(str::to_owned);
    }
    if let Some(p) = src.get("payload") {
        let kind = p.get("kind").and_then(Value::as_str).unwrap_or(job.kind.as_str()).to_owned();
        let mut merged =
            if kind == job.kind { job.payload.as_object().cloned().unwrap_or_default() } else { Map::new() };
        for (k, v) in p.as_object().ok_or_else(|| invalid(method, "payload must be an object"))? {
            if k == "kind" {
                continue;
            }
            if v.is_null() {
                merged.remove(k)
            } else {
                merged.insert(k.clone(), v.clone())
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
    if let Some(a) = src.get("agentId") {
        set_payload("agentId", a.as_str().filter(|s| !s.is_empty()));
    }
    if let Some(t) = src.get("sessionTarget").and_then(Value::as_str) {
        match t {
            "isolated" => set_payload("sessionKey", None),
            "main" => set_payload("sessionKey", Some("main")),
            "current" => return Err(invalid(method, "sessionTarget \"current\" needs a calling session; name one")),
            other => match other.strip_prefix("session:").filter(|k| !k.is_empty()) {
                Some(key) => set_payload("sessionKey", Some(key)),
                None => return Err(invalid(method, format!("unknown sessionTarget {other:?}"))),
            },
        }
    }
    if let Some(k) = src.get("sessionKey") {
        set_payload("sessionKey", k.as_str().filter(|s| !s.is_empty()));
    }
    if let Some(d) = src.get("delivery") {
        job.deliver_to = delivery_to_target(d, method)?;
    }
    if let Some(c) = src.get("catchUp") {
        let c = c
            .as_str()
            .filter(|c| CATCH_UP.contains(c))
            .ok_or_else(|| invalid(method, "catchUp must be skip, once or all"))?;
        job.catch_up = c.to_owned();
    }
    Ok(())
}

fn delivery_to_target(d: &Value, method: &str) -> Result<Option<Value>, CoreError> {
    if d.is_null() {
        return Ok(None);
    }
    match d.get("mode").and_then(Value::as_str) {
        Some("none") => Ok(None),
        Some("announce") => {
            let channel = d.get("channel").and_then(Value::as_str).filter(|c| !c.is_empty() && *c != "last");
            let Some(channel) = channel else {
                return Err(invalid(
                    method,
                    "delivery.channel must name a channel (\"last\" is not tracked by clawgate)",
                ));
            };
            let to = match d.get("to") {
                Some(Value::String(s)) if !s.is_empty() => s.clone(),
                Some(Value::Number(n)) => n.to_string(),
                _ => return Err(invalid(method, "delivery.to (the chat id) is required")),
            };
            let thread = match d.get("threadId") {
                Some(Value::String(s)) if !s.is_empty() => Some(s.clone()),
                Some(Value::Number(n)) => Some(n.to_string()),
                _ => None,
            };
            let account = d.get("accountId").and_then(Value::as_str).unwrap_or("default");
            Ok(Some(json!({"channel": channel, "account": account, "chatId": to, "threadId": thread})))
        }
        Some(other) => Err(invalid(method, format!("delivery.mode {other:?} is not supported (use announce or none)"))),
        None => Err(invalid(method, "delivery.mode is required")),
    }
}

async fn load(gw: &Gateway, id: &str) -> Result<CronJob, CoreError> {
    gw.store.get_cron_job(id).await?.ok_or_else(|| not_found(id))
}

/// `cron.list {includeDisabled?, limit?, offset?, query?, enabled?, agentId?, sortBy?, sortDir?}`
/// → `{jobs, total, offset, limit, hasMore, nextOffset, snapshotRevision}`.
pub async fn cron_list(gw: &Arc<Gateway>, params: Value) -> Result<Value, CoreError> {
    let include_disabled = params.get("includeDisabled").and_then(Value::as_bool).unwrap_or(false);
    let filter =
        params.get("enabled").and_then(Value::as_str).unwrap_or(if include_disabled { "all" } else { "enabled" });
    let query = params.get("query").and_then(Value::as_str).map(str::to_lowercase).filter(|q| !q.is_empty());
    let agent = params.get("agentId").and_then(Value::as_str);
    let default_agent = gw.agents.agents().default_id.clone();
    let mut jobs: Vec<CronJob> = gw
        .store
        .list_cron_jobs(true)
        .await?
        .into_iter()
        .filter(|j| match filter {
            "enabled" => j.enabled,
            "disabled" => !j.enabled,
            _ => true,
        })
        .filter(|j| query.as_ref().is_none_or(|q| j.name.to_lowercase().contains(q) || j.id.to_lowercase().contains(q)))
        .filter(|j| {
            agent.is_none_or(|a| j.payload.get("agentId").and_then(Value::as_str).unwrap_or(&default_agent) == a)
        })
        .collect();
    match params.get("sortBy").and_then(Value::as_str).unwrap_or("nextRunAtMs") {
        "name" => {}
        "updatedAtMs" => jobs.sort_by_key(|j| j.updated_at_ms),
        _ => jobs.sort_by_key(|j| (j.next_run_at_ms.filter(|_| j.enabled).unwrap_or(i64::MAX), j.name.clone())),
    }
    if params.get("sortDir").and_then(Value::as_str) == Some("desc") {
        jobs.reverse();
    }
    // Changes whenever a listed job is added, removed or edited: lets a paging client notice.
    let revision = jobs.iter().map(|j| j.updated_at_ms).max().unwrap_or(0);
    let revision = format!("{}-{revision}", jobs.len());
    let (limit, offset) = page_bounds(&params);
    let total = jobs.len();
    let page: Vec<Value> = jobs
        .iter()
        .skip(offset)
        .take(limit)
        .map(|j| {
            let mut v = job_json(j);
            v["effectiveAgentId"] = json!(j.payload.get("agentId").and_then(Value::as_str).unwrap_or(&default_agent));
            v
        })
        .collect();
    let next = offset.min(total) + page.len();
    Ok(json!({
        "jobs": page,
        "total": total,
        "offset": offset.min(total),
        "limit": limit,
        "hasMore": next < total,
        "nextOffset": if next < total { json!(next) } else { Value::Null },
        "snapshotRevision": revision,
    }))
}

/// `cron.status {}` → `{enabled, storage, jobs, nextWakeAtMs, …}`.
pub async fn cron_status(gw: &Arc<Gateway>) -> Result<Value, CoreError> {
    let jobs = gw.store.list_cron_jobs(true).await?.len();
    Ok(gw.cron.status(jobs))
}

/// `cron.add {name, schedule, payload, sessionTarget?, wakeMode?, delivery?, enabled?,
/// agentId?, catchUp?}` → the `CronJob`.
pub async fn cron_add(gw: &Arc<Gateway>, params: Value) -> Result<Value, CoreError> {
    const METHOD: &str = "cron.add";
    for required in ["name", "schedule", "payload"] {
        if params.get(required).is_none() {
            return Err(invalid(METHOD, format!("must have required property '{required}'")));
        }
    }
    let now = now_ms();
    let mut job = CronJob {
        id: uuid::Uuid::new_v4().to_string(),
        name: String::new(),
        schedule: String::new(),
        timezone: None,
        enabled: true,
        kind: String::new(),
        payload: json!({}),
        deliver_to: None,
        catch_up: DEFAULT_CATCH_UP.to_owned(),
        created_at_ms: now,
        updated_at_ms: now,
        last_run_at_ms: None,
        last_status: None,
        next_run_at_ms: None,
    };
    apply(&mut job, &params, METHOD)?;
    job.next_run_at_ms = Schedule::parse(&job.schedule, job.timezone.as_deref()).ok().and_then(|s| s.next_after(now));
    gw.store.upsert_cron_job(&job).await?;
    let job = load(gw, &job.id).await?;
    tracing::info!(job = %job.id, name = %job.name, schedule = %job.schedule, "cron job added");
    gw.cron.kick();
    cron::broadcast(gw, json!({"jobId": job.id, "action": "added", "nextRunAtMs": job.next_run_at_ms}));
    Ok(job_json(&job))
}

/// `cron.update {id|jobId, patch}` → the `CronJob`.
pub async fn cron_update(gw: &Arc<Gateway>, params: Value) -> Result<Value, CoreError> {
    const METHOD: &str = "cron.update";
    let id = job_id_param(&params, METHOD)?;
    let patch = params.get("patch").filter(|p| p.is_object()).ok_or_else(|| invalid(METHOD, "patch is required"))?;
    let mut job = load(gw, id).await?;
    apply(&mut job, patch, METHOD)?;
    let now = now_ms();
    job.updated_at_ms = now;
    job.next_run_at_ms = Schedule::parse(&job.schedule, job.timezone.as_deref()).ok().and_then(|s| s.next_after(now));
    gw.store.upsert_cron_job(&job).await?;
    let job = load(gw, id).await?;
    gw.cron.kick();
    cron::broadcast(gw, json!({"jobId": job.id, "action": "updated", "nextRunAtMs": job.next_run_at_ms}));
    Ok(job_json(&job))
}

/// `cron.remove {id|jobId}` → `{ok, removed}`; its receipts go with it.
pub async fn cron_remove(gw: &Arc<Gateway>, params: Value) -> Result<Value, CoreError> {
    let id = job_id_param(&params, "cron.remove")?;
    if !gw.store.remove_cron_job(id).await? {
        return Err(not_found(id));
    }
    gw.cron.kick();
    cron::broadcast(gw, json!({"jobId": id, "action": "removed"}));
    Ok(json!({"ok": true, "removed": true}))
}

/// `cron.run {id|jobId, mode?: force|due|if-enabled}` → `{ok, enqueued, runId}` or
/// `{ok, ran:false, reason}`. A manual run gets its own slot (now), with its own receipt.
pub async fn cron_run(gw: &Arc<Gateway>, params: Value) -> Result<Value, CoreError> {
    const METHOD: &str = "cron.run";
    let id = job_id_param(&params, METHOD)?;
    let job = load(gw, id).await?;
    let now = now_ms();
    let skip = |reason: &str| Ok(json!({"ok": true, "ran": false, "reason": reason, "processInstanceId": gw.boot_id}));
    match params.get("mode").and_then(Value::as_str).unwrap_or("force") {
        "force" => {}
        "if-enabled" if !job.enabled => return skip("disabled"),
        "if-enabled" => {}
        "due" if !job.enabled => return skip("disabled"),
        "due" if job.next_run_at_ms.is_none_or(|n| n > now) => return skip("not-due"),
        "due" => {}
        other => return Err(invalid(METHOD, format!("unknown mode {other:?}"))),
    }
    let run_id = format!("manual:{id}:{now}");
    if !cron::fire(gw, &job, now, run_id.clone()).await? {
        return skip("already-running");
    }
    Ok(json!({"ok": true, "enqueued": true, "runId": run_id, "processInstanceId": gw.boot_id}))
}

fn run_entry(r: &CronRunRecord, job_name: Option<&str>) -> Value {
    let mut e = json!({
        "ts": r.finished_at_ms.unwrap_or(r.started_at_ms),
        "jobId": r.job_id,
        "action": "finished",
        "status": r.status,
        "runId": r.run_id,
        "runAtMs": r.slot_ms,
    });
    if let Some(f) = r.finished_at_ms {
        e["durationMs"] = json!((f - r.started_at_ms).max(0));
    }
    if let Some(s) = &r.summary {
        e["summary"] = json!(s);
    }
    if let Some(err) = &r.error {
        e["error"] = json!(err);
    }
    if let Some(n) = job_name {
        e["jobName"] = json!(n);
    }
    e
}

/// `cron.runs {id|jobId?, scope?, limit?, offset?, status?, statuses?, sortDir?}` → a page of
/// `CronRunLogEntry` (finished runs; `runAtMs` is the scheduled slot) `{entries, total, offset,
/// limit, hasMore, nextOffset}`.
pub async fn cron_runs(gw: &Arc<Gateway>, params: Value) -> Result<Value, CoreError> {
    const METHOD: &str = "cron.runs";
    let job_id = params.get("id").or_else(|| params.get("jobId")).and_then(Value::as_str);
    let scope = params.get("scope").and_then(Value::as_str).unwrap_or(if job_id.is_some() { "job" } else { "all" });
    let job_id = match scope {
        "all" => None,
        _ => Some(job_id.ok_or_else(|| invalid(METHOD, "missing id"))?),
    };
    let names: std::collections::HashMap<String, String> =
        gw.store.list_cron_jobs(true).await?.into_iter().map(|j| (j.id, j.name)).collect();
    if let Some(id) = job_id
        && !names.contains_key(id)
    {
        return Err(not_found(id));
    }
    let mut statuses: Vec<&str> =
        params.get("statuses").and_then(Value::as_array).into_iter().flatten().filter_map(Value::as_str).collect();
    if let Some(s) = params.get("status").and_then(Value::as_str).filter(|s| *s != "all") {
        statuses.push(s);
    }
    let (limit, offset) = page_bounds(&params);
    let run_id = params.get("runId").and_then(Value::as_str);
    let mut runs: Vec<CronRunRecord> = gw
        .store
        .list_cron_runs(job_id, 1000)
        .await?
        .into_iter()
        .filter(|r| r.status != "running")
        .filter(|r| statuses.is_empty() || statuses.contains(&r.status.as_str()))
        .filter(|r| run_id.is_none_or(|id| r.run_id == id))
        .collect();
    if params.get("sortDir").and_then(Value::as_str) == Some("asc") {
        runs.reverse();
    }
    let total = runs.len();
    let entries: Vec<Value> =
        runs.iter().skip(offset).take(limit).map(|r| run_entry(r, names.get(&r.job_id).map(String::as_str))).collect();
    let next = offset.min(total) + entries.len();
    Ok(json!({
        "entries": entries,
        "total": total,
        "offset": offset.min(total),
        "limit": limit,
        "hasMore": next < total,
        "nextOffset": if next < total { json!(next) } else { Value::Null },
    }))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn blank() -> CronJob {
        CronJob {
            id: "j1".into(),
            name: String::new(),
            schedule: String::new(),
            timezone: None,
            enabled: true,
            kind: String::new(),
            payload: json!({}),
            deliver_to: None,
            catch_up: DEFAULT_CATCH_UP.into(),
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
        apply(&mut job, &params, "cron.add").expect("valid");
        assert_eq!((job.schedule.as_str(), job.timezone.as_deref()), ("0 9 * * *", Some("Europe/Berlin")));
        assert_eq!(job.kind, "agentTurn");
        assert_eq!(job.payload, json!({"message": "summarize", "agentId": "ops"}));
        assert_eq!(job.catch_up, "skip");
        assert_eq!(
            job.deliver_to,
            Some(json!({"channel": "telegram", "account": "default", "chatId": "42", "threadId": "7"}))
        );
        let wire = job_json(&job);
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
            json!({"schedule": {"kind": "every", "everyMs": 60000}}),
            json!({"schedule": {"kind": "cron", "expr": "nope"}}),
            json!({"payload": {"kind": "systemEvent", "text": "x"}}),
            json!({"payload": {"kind": "agentTurn"}}),
            json!({"delivery": {"mode": "webhook", "to": "https://x"}}),
            json!({"catchUp": "twice"}),
        ];
        for c in cases {
            assert!(apply(&mut blank(), &c, "cron.add").is_err(), "{c}");
        }
    }

    #[test]
    fn a_patch_merges_the_payload_and_null_clears_delivery() {
        let mut job = blank();
        apply(
            &mut job,
            &json!({"payload": {"kind": "comfyRun", "templateId": "t", "inputs": {"a": 1}},
                    "delivery": {"mode": "announce", "channel": "telegram", "to": 5}}),
            "cron.add",
        )
        .expect("valid");
        apply(&mut job, &json!({"payload": {"inputs": {"a": 2}}, "delivery": null}), "cron.update").expect("valid");
        assert_eq!(job.payload, json!({"templateId": "t", "inputs": {"a": 2}}));
        assert_eq!(job.deliver_to, None);
    }
}
