//! `comfy.run`, `comfy.jobs.get|list|cancel`, `comfy.templates.list`, `comfy.workers.list`:
//! clawgate's own methods for ComfyUI jobs (there is no upstream counterpart).

use std::collections::BTreeMap;

use serde_json::{Value, json};

use clawgate_protocol::methods::Checked;
use clawgate_protocol::methods::comfy::{
    ComfyJobsCancelParams, ComfyJobsCancelResult, ComfyJobsGetParams, ComfyJobsGetResult, ComfyJobsListParams,
    ComfyJobsListResult, ComfyRunParams, ComfyRunResult, ComfyTemplateEntry, ComfyTemplateProblem,
    ComfyTemplatesListParams, ComfyTemplatesListResult, ComfyWorkersListParams, ComfyWorkersListResult, QueuePosition,
};
use clawgate_store::{JobQuery, JobStatus};

use crate::comfy::ComfyService;
use crate::dispatch::CallContext;
use crate::error::CoreError;

/// A required, non-empty string param, refused with upstream's wording.
fn required(value: Option<String>, key: &str, method: &str) -> Result<String, CoreError> {
    value
        .filter(|s| !s.is_empty())
        .ok_or_else(|| CoreError::invalid(format!("invalid {method} params: must have required property '{key}'")))
}

/// `comfy.run {templateId, inputs?, prompt?, deliverTo?: {channel, accountId?, chatId, threadId?}}`
/// → `{jobId, status, position}`.
pub async fn run(comfy: &ComfyService, ctx: &CallContext, params: ComfyRunParams) -> Result<ComfyRunResult, CoreError> {
    let template = required(params.template_id, "templateId", "comfy.run")?;
    let mut inputs = BTreeMap::new();
    if let Some(obj) = params.inputs {
        let Some(obj) = obj else {
            return Err(CoreError::invalid("inputs must be an object of key → value"));
        };
        for (k, v) in obj {
            let text = match v {
                Value::String(s) => s,
                Value::Number(_) | Value::Bool(_) => v.to_string(),
                _ => return Err(CoreError::invalid(format!("inputs.{k} must be a string, number or boolean"))),
            };
            inputs.insert(k, text);
        }
    }
    let deliver_to = match params.deliver_to {
        None => None,
        Some(d) => {
            let channel = required(d.channel, "channel", "comfy.run deliverTo")?;
            let Some(chat) = d.chat_id.or(d.to) else { return Err(CoreError::invalid("deliverTo.chatId is required")) };
            // The store's delivery target, the same one `cron` stores.
            Some(json!({"channel": channel, "account": d.account_id.as_deref().unwrap_or("default"),
                        "chatId": chat, "threadId": d.thread_id}))
        }
    };
    let requested_by = json!({"client": ctx.client.client.0, "mode": ctx.client.client.1});
    let (job, pos) =
        comfy.submit(&template, &inputs, params.prompt.as_deref(), deliver_to, Some(requested_by), None).await?;
    Ok(ComfyRunResult {
        job_id: job.id,
        status: job.status.as_str().to_owned(),
        position: pos.map(|(position, total)| QueuePosition { position, total }),
    })
}

/// `comfy.jobs.get {jobId}` → `{job}`.
pub async fn jobs_get(comfy: &ComfyService, params: ComfyJobsGetParams) -> Result<ComfyJobsGetResult, CoreError> {
    let id = required(params.job_id, "jobId", "comfy.jobs.get")?;
    match comfy.get_job(&id).await? {
        Some(job) => Ok(ComfyJobsGetResult { job: comfy.job_view(&job).await }),
        None => Err(CoreError::InvalidRequest {
            message: format!("no job {id}"),
            details: Some(json!({"code": "JOB_NOT_FOUND"})),
        }),
    }
}

/// `comfy.jobs.list {status?: [..], limit?}` → `{jobs}` newest first.
pub async fn jobs_list(comfy: &ComfyService, params: ComfyJobsListParams) -> Result<ComfyJobsListResult, CoreError> {
    let mut statuses = Vec::new();
    for name in params.status.unwrap_or_default() {
        let name = match name {
            Checked::Valid(name) => name,
            _ => String::new(),
        };
        statuses.push(
            name.parse::<JobStatus>()
                .map_err(|_| CoreError::invalid(format!("status \"{name}\" is not a job status")))?,
        );
    }
    let limit = params.limit.unwrap_or(50).clamp(1, 500) as u32;
    let jobs = comfy.list_jobs(&JobQuery { statuses, limit, before_seq: None }).await?;
    let mut out = Vec::with_capacity(jobs.len());
    for j in &jobs {
        out.push(comfy.job_view(j).await);
    }
    Ok(ComfyJobsListResult { jobs: out })
}

/// `comfy.jobs.cancel {jobId}` → `{jobId, cancelled, status}`.
pub async fn jobs_cancel(
    comfy: &ComfyService,
    params: ComfyJobsCancelParams,
) -> Result<ComfyJobsCancelResult, CoreError> {
    let id = required(params.job_id, "jobId", "comfy.jobs.cancel")?;
    let before = comfy.cancel(&id).await?;
    let status = comfy.get_job(&id).await?.map(|j| j.status.as_str().to_owned());
    Ok(ComfyJobsCancelResult { job_id: id, cancelled: before.is_some(), status })
}

/// `comfy.templates.list` → `{templates: [{id, description, allowedInputs, defaults}],
/// errors: [{id, error}]}` (`errors`: templates that could not be loaded, by name).
pub async fn templates_list(
    comfy: &ComfyService,
    _: ComfyTemplatesListParams,
) -> Result<ComfyTemplatesListResult, CoreError> {
    let lib = comfy.library();
    let templates = lib
        .as_ref()
        .map(|l| l.list())
        .unwrap_or_default()
        .into_iter()
        .map(|t| ComfyTemplateEntry {
            id: t.id,
            description: t.description,
            allowed_inputs: t.allowed_inputs,
            defaults: t.defaults.into_iter().collect(),
        })
        .collect();
    let errors = lib
        .as_ref()
        .map(|l| {
            l.problems().iter().map(|p| ComfyTemplateProblem { id: p.name.clone(), error: p.error.clone() }).collect()
        })
        .unwrap_or_default();
    Ok(ComfyTemplatesListResult { templates, errors })
}

/// `comfy.workers.list` → `{workers: [{name, url, mode, healthy, queueRemaining, running}]}`.
pub async fn workers_list(
    comfy: &ComfyService,
    _: ComfyWorkersListParams,
) -> Result<ComfyWorkersListResult, CoreError> {
    Ok(ComfyWorkersListResult { workers: comfy.workers().iter().map(|w| w.summary()).collect() })
}
