//! `comfy.run`, `comfy.jobs.get|list|cancel`, `comfy.templates.list`, `comfy.workers.list`:
//! clawgate's own methods for ComfyUI jobs (there is no upstream counterpart).

use std::collections::BTreeMap;
use std::sync::Arc;

use serde_json::{Value, json};

use clawgate_store::{JobQuery, JobStatus, JobStore};

use crate::dispatch::CallContext;
use crate::error::CoreError;
use crate::gateway::Gateway;

fn need_str<'a>(params: &'a Value, key: &str, method: &str) -> Result<&'a str, CoreError> {
    params
        .get(key)
        .and_then(Value::as_str)
        .filter(|s| !s.is_empty())
        .ok_or_else(|| CoreError::invalid(format!("invalid {method} params: must have required property '{key}'")))
}

/// `comfy.run {templateId, inputs?, prompt?, deliverTo?: {channel, accountId?, chatId, threadId?}}`
/// → `{jobId, status, position}`.
pub async fn run(gw: &Arc<Gateway>, ctx: &CallContext, params: Value) -> Result<Value, CoreError> {
    let template = need_str(&params, "templateId", "comfy.run")?;
    let mut inputs = BTreeMap::new();
    if let Some(obj) = params.get("inputs") {
        let Some(obj) = obj.as_object() else {
            return Err(CoreError::invalid("inputs must be an object of key → value"));
        };
        for (k, v) in obj {
            let text = match v {
                Value::String(s) => s.clone(),
                Value::Number(_) | Value::Bool(_) => v.to_string(),
                _ => return Err(CoreError::invalid(format!("inputs.{k} must be a string, number or boolean"))),
            };
            inputs.insert(k.clone(), text);
        }
    }
    let deliver_to = match params.get("deliverTo") {
        None | Some(Value::Null) => None,
        Some(d) => {
            let channel = need_str(d, "channel", "comfy.run deliverTo")?;
            let chat = d.get("chatId").or_else(|| d.get("to")).and_then(|v| match v {
                Value::String(s) => Some(s.clone()),
                Value::Number(n) => Some(n.to_string()),
                _ => None,
            });
            let Some(chat) = chat else { return Err(CoreError::invalid("deliverTo.chatId is required")) };
            Some(json!({"channel": channel, "account": d.get("accountId").and_then(Value::as_str).unwrap_or("default"),
                        "chatId": chat, "threadId": d.get("threadId").and_then(Value::as_str)}))
        }
    };
    let requested_by = json!({"client": ctx.client.client.0, "mode": ctx.client.client.1});
    let prompt = params.get("prompt").and_then(Value::as_str);
    let (job, pos) = crate::comfy::submit(gw, template, &inputs, prompt, deliver_to, Some(requested_by), None).await?;
    Ok(json!({
        "jobId": job.id,
        "status": job.status.as_str(),
        "position": pos.map(|(p, t)| json!({"position": p, "total": t})),
    }))
}

/// `comfy.jobs.get {jobId}` → `{job}`.
pub async fn jobs_get(gw: &Arc<Gateway>, params: Value) -> Result<Value, CoreError> {
    let id = need_str(&params, "jobId", "comfy.jobs.get")?;
    match gw.store.get_job(id).await? {
        Some(job) => Ok(json!({"job": crate::comfy::job_json(gw, &job).await})),
        None => Err(CoreError::InvalidRequest {
            message: format!("no job {id}"),
            details: Some(json!({"code": "JOB_NOT_FOUND"})),
        }),
    }
}

/// `comfy.jobs.list {status?: [..], limit?}` → `{jobs}` newest first.
pub async fn jobs_list(gw: &Arc<Gateway>, params: Value) -> Result<Value, CoreError> {
    let mut statuses = Vec::new();
    for s in params.get("status").and_then(Value::as_array).into_iter().flatten() {
        let name = s.as_str().unwrap_or_default();
        statuses.push(
            name.parse::<JobStatus>()
                .map_err(|_| CoreError::invalid(format!("status \"{name}\" is not a job status")))?,
        );
    }
    let limit = params.get("limit").and_then(Value::as_u64).unwrap_or(50).clamp(1, 500) as u32;
    let jobs = gw.store.list_jobs(&JobQuery { statuses, limit, before_seq: None }).await?;
    let mut out = Vec::with_capacity(jobs.len());
    for j in &jobs {
        out.push(crate::comfy::job_json(gw, j).await);
    }
    Ok(json!({"jobs": out}))
}

/// `comfy.jobs.cancel {jobId}` → `{jobId, cancelled, status}`.
pub async fn jobs_cancel(gw: &Arc<Gateway>, params: Value) -> Result<Value, CoreError> {
    let id = need_str(&params, "jobId", "comfy.jobs.cancel")?;
    let before = crate::comfy::cancel(gw, id).await?;
    let now = gw.store.get_job(id).await?.map(|j| j.status.as_str().to_owned());
    Ok(json!({"jobId": id, "cancelled": before.is_some(), "status": now}))
}

/// `comfy.templates.list` → `{templates: [{id, description, allowedInputs, defaults}],
/// errors: [{id, error}]}` (`errors`: templates that could not be loaded, by name).
pub async fn templates_list(gw: &Arc<Gateway>) -> Result<Value, CoreError> {
    let lib = gw.comfy.library();
    let list = lib.as_ref().map(|l| l.list()).unwrap_or_default();
    let errors: Vec<Value> = lib
        .as_ref()
        .map(|l| l.problems().iter().map(|p| json!({"id": p.name, "error": p.error})).collect())
        .unwrap_or_default();
    Ok(json!({"templates": list.iter().map(|t| json!({"id": t.id, "description": t.description,
        "allowedInputs": t.allowed_inputs, "defaults": t.defaults})).collect::<Vec<_>>(), "errors": errors}))
}

/// `comfy.workers.list` → `{workers: [{name, url, mode, healthy, queueRemaining, running}]}`.
pub async fn workers_list(gw: &Arc<Gateway>) -> Result<Value, CoreError> {
    Ok(json!({"workers": gw.comfy.workers().iter().map(|w| w.summary()).collect::<Vec<_>>()}))
}
