//! ComfyUI chat commands (`/run`, `/status <job>`, `/jobs`, `/stop`, `/templates`, `/workers`,
//! `/approvals`, `/approve`, `/reject`) for messages that passed the channel gate.

use std::sync::Arc;

use serde_json::{Value, json};

use clawgate_channels::{AccountConfig, InboundMessage, policy::listed};
use clawgate_comfy::command::{self, Command, Decision, JobState, QueuePosition, SenderCtx, reply};
use clawgate_protocol::events::names as events;
use clawgate_store::{
    ApprovalRecord, ApprovalStatus, ApprovalStore, CronStore, JobQuery, JobRecord, JobStatus, JobStore, NewApproval,
};

use crate::error::CoreError;
use crate::gateway::Gateway;
use crate::methods::approvals;
use crate::time::now_ms;

/// The approval kind of a held `/run`; its payload is `{jobId, template}`.
pub(crate) const APPROVAL_KIND: &str = "comfy.run";
/// How long a `/run` approval request waits for an admin.
const APPROVAL_TTL_MS: i64 = 24 * 60 * 60 * 1000;

fn state_of(s: JobStatus) -> JobState {
    match s {
        JobStatus::AwaitingApproval | JobStatus::Queued | JobStatus::Dispatched => JobState::Pending,
        JobStatus::Running => JobState::InProgress,
        JobStatus::Completed => JobState::Completed,
        JobStatus::Failed => JobState::Failed,
        JobStatus::Cancelled => JobState::Cancelled,
    }
}

fn position(p: Option<(u64, u64)>) -> Option<QueuePosition> {
    p.map(|(position, total)| QueuePosition { position: position as usize, total: total as usize })
}

/// Answer a ComfyUI command; `None` when the text is not one (or ComfyUI is off), so the
/// message goes on to the chat commands and the agent. `/help` and a bare `/status` stay with
/// the chat commands.
pub async fn handle_chat_command(gw: &Arc<Gateway>, cfg: &AccountConfig, msg: &InboundMessage) -> Option<String> {
    if !gw.comfy.enabled() {
        return None;
    }
    let cmd = command::parse(&msg.text)?;
    if matches!(cmd, Command::Help | Command::Status { job: None }) {
        return None;
    }
    let policy = gw.comfy.config().map(|c| c.policy.clone()).unwrap_or_default();
    let trusted = listed(&cfg.allow_from, &msg.sender_id, msg.sender_username.as_deref());
    let sender =
        SenderCtx { platform: &msg.channel, user_id: &msg.sender_id, chat_id: &msg.chat_id, is_admin: false, trusted };
    let decision = command::authorize(&cmd, &sender, &policy);
    if let Decision::Deny(text) = &decision {
        return Some(text.clone());
    }
    let deliver_to =
        json!({"channel": msg.channel, "account": msg.account, "chatId": msg.chat_id, "threadId": msg.thread_id});
    let requested_by = json!({"channel": msg.channel, "senderId": msg.sender_id, "chatId": msg.chat_id,
                              "username": msg.sender_username});
    let who = format!("{}:{}", msg.channel, msg.sender_id);
    Some(match cmd {
        Command::Invalid { verb, problem } => reply::invalid(verb, &problem),
        Command::Run { template, inputs, free_text, require_approval } => {
            let hold = decision == Decision::NeedsApproval || require_approval;
            let approval_id = hold.then(|| format!("apr_{}", &uuid::Uuid::new_v4().simple().to_string()[..12]));
            match super::submit(
                gw,
                &template,
                &inputs,
                free_text.as_deref(),
                Some(deliver_to),
                Some(requested_by.clone()),
                approval_id.clone(),
            )
            .await
            {
                Err(e) => reply::submission_failed(&e.to_string()),
                Ok((job, pos)) => match approval_id {
                    None => reply::job_submitted(&command::JobSubmitted {
                        prompt_id: Some(&job.id),
                        template: &template,
                        trace_id: Some(&job.id),
                        queue: position(pos),
                    }),
                    Some(aid) => {
                        let expires = now_ms() + APPROVAL_TTL_MS;
                        let new = NewApproval {
                            id: aid.clone(),
                            kind: APPROVAL_KIND.into(),
                            payload: json!({"jobId": job.id, "template": template}),
                            requested_by: Some(requested_by),
                            expires_at_ms: expires,
                        };
                        match gw.store.create_approval(&new, now_ms()).await {
                            Ok(record) => {
                                gw.clients.broadcast(
                                    events::PLUGIN_APPROVAL_REQUESTED,
                                    &approvals::record_json(&record),
                                    None,
                                    true,
                                );
                                reply::approval_requested(
                                    Some(&aid),
                                    Some(&job.id),
                                    Some(&crate::time::rfc3339(expires)),
                                )
                            }
                            Err(e) => reply::submission_failed(&e.to_string()),
                        }
                    }
                },
            }
        }
        Command::Status { job: Some(id) } => match gw.store.get_job(&id).await {
            Ok(Some(job)) => {
                let pos = gw.store.queue_position(&job.id).await.ok().flatten();
                reply::job_status(&command::JobView {
                    id: &job.id,
                    state: state_of(job.status),
                    template: Some(&job.template_id),
                    queue: position(pos),
                    error: job.error.as_deref(),
                })
            }
            Ok(None) => reply::error(&format!("no job {id}")),
            Err(e) => reply::error(&e.to_string()),
        },
        Command::Jobs => {
            let q = JobQuery {
                statuses: vec![
                    JobStatus::Queued,
                    JobStatus::Dispatched,
                    JobStatus::Running,
                    JobStatus::AwaitingApproval,
                ],
                limit: 20,
                before_seq: None,
            };
            match gw.store.list_jobs(&q).await {
                Ok(jobs) => {
                    let items: Vec<(&str, JobState)> =
                        jobs.iter().map(|j| (j.id.as_str(), state_of(j.status))).collect();
                    reply::jobs(jobs.len(), &items)
                }
                Err(e) => reply::error(&e.to_string()),
            }
        }
        Command::Stop { jobs } => {
            let targets: Vec<String> = if jobs.is_empty() {
                let q =
                    JobQuery { statuses: vec![JobStatus::Running, JobStatus::Dispatched], limit: 1, before_seq: None };
                gw.store.list_jobs(&q).await.unwrap_or_default().into_iter().map(|j| j.id).collect()
            } else {
                jobs
            };
            if targets.is_empty() {
                "Nothing is running.".to_owned()
            } else {
                let mut lines = Vec::new();
                for id in targets {
                    match super::cancel(gw, &id).await {
                        Ok(Some(_)) => lines.push(format!("Stopped {id}.")),
                        Ok(None) => lines.push(format!("{id} had already finished.")),
                        Err(e) => lines.push(format!("{id}: {e}")),
                    }
                }
                lines.join("\n")
            }
        }
        Command::Templates => match gw.comfy.library() {
            Some(lib) => reply::templates(&lib.list()),
            None => reply::error("no templates are loaded"),
        },
        Command::Workers => {
            let workers = gw.comfy.workers();
            let items: Vec<command::WorkerSummary<'_>> = workers
                .iter()
                .map(|w| command::WorkerSummary {
                    name: &w.cfg.name,
                    online: w.healthy(),
                    queue_remaining: w.summary()["queueRemaining"].as_u64(),
                })
                .collect();
            reply::workers(&items)
        }
        Command::Approvals => match gw.store.list_approvals(Some(ApprovalStatus::Pending), now_ms()).await {
            Ok(list) => {
                let templates: Vec<String> =
                    list.iter().map(|a| a.payload["template"].as_str().unwrap_or("?").to_owned()).collect();
                let items: Vec<command::ApprovalSummary<'_>> = list
                    .iter()
                    .zip(&templates)
                    .map(|(a, t)| command::ApprovalSummary {
                        id: &a.id,
                        status: "pending",
                        template: t,
                        requested_by: None,
                        source: "chat",
                    })
                    .collect();
                reply::approvals(&items, items.len())
            }
            Err(e) => reply::approvals_failed(&e.to_string()),
        },
        Command::Approve { id } => decide(gw, &id, true, &who, None).await,
        Command::Reject { id, reason } => decide(gw, &id, false, &who, reason.as_deref()).await,
        Command::History { job: Some(id) } => match gw.store.get_job(&id).await {
            Ok(Some(job)) if job.status.is_terminal() => reply::history(
                &job.id,
                &command::HistoryEntry {
                    status: job.status.as_str().to_owned(),
                    completed: job.status == JobStatus::Completed,
                    images: job.outputs.as_array().map_or(0, Vec::len),
                },
            ),
            _ => reply::history_not_found(&id),
        },
        Command::History { job: None } => {
            let q = JobQuery {
                statuses: vec![JobStatus::Completed, JobStatus::Failed, JobStatus::Cancelled],
                limit: 10,
                before_seq: None,
            };
            match gw.store.list_jobs(&q).await {
                Ok(jobs) => {
                    let items: Vec<(&str, JobState)> =
                        jobs.iter().map(|j| (j.id.as_str(), state_of(j.status))).collect();
                    reply::jobs(jobs.len(), &items)
                }
                Err(e) => reply::error(&e.to_string()),
            }
        }
        Command::Trace { id } => match gw.store.get_job(&id).await {
            Ok(Some(job)) => {
                let j = super::job_json(gw, &job).await;
                reply::trace(&id, &serde_json::to_string_pretty(&j).unwrap_or_default())
            }
            Ok(None) => reply::error(&format!("no job {id}")),
            Err(e) => reply::error(&e.to_string()),
        },
        Command::Schedules => match gw.store.list_cron_jobs(true).await {
            Ok(jobs) => {
                let items: Vec<command::ScheduleSummary> = jobs
                    .iter()
                    .map(|j| command::ScheduleSummary {
                        id: j.id.clone(),
                        enabled: j.enabled,
                        cron_expr: Some(j.schedule.clone()),
                        interval_sec: None,
                        template_id: j.payload.get("templateId").and_then(Value::as_str).unwrap_or(&j.kind).to_owned(),
                    })
                    .collect();
                reply::schedules(&items)
            }
            Err(e) => reply::error(&e.to_string()),
        },
        Command::Schedule { action, id } => {
            let done = match action {
                command::ScheduleAction::Run => {
                    crate::methods::cron::cron_run(gw, json!({"id": id})).await.map(|_| true)
                }
                command::ScheduleAction::Enable | command::ScheduleAction::Disable => {
                    let on = action == command::ScheduleAction::Enable;
                    let r = gw.store.set_cron_enabled(&id, on, now_ms()).await.map_err(crate::error::CoreError::from);
                    gw.cron.kick();
                    r
                }
            };
            match done {
                Ok(true) => reply::schedule_done(action, &id),
                Ok(false) => reply::action_failed(&format!("no schedule {id}")),
                Err(e) => reply::action_failed(&e.to_string()),
            }
        }
        other => format!("{} is not available in this gateway yet.", other.verb().name()),
    })
}

/// What deciding an approval did.
#[derive(Debug)]
pub(crate) struct Decided {
    /// The approval as decided.
    pub approval: ApprovalRecord,
    /// For a `comfy.run` approval, its job as released (queued) or cancelled, or why it could
    /// not be.
    pub job: Option<Result<JobRecord, String>>,
}

/// Decide a pending approval, release (approved) or cancel (rejected) the job it holds, and
/// announce `plugin.approval.resolved`. `None` if the approval is unknown, already decided or
/// expired. Shared by the chat commands and `plugin.approval.resolve`.
pub(crate) async fn decide_approval(
    gw: &Arc<Gateway>,
    id: &str,
    approve: bool,
    who: &str,
    reason: Option<&str>,
) -> Result<Option<Decided>, CoreError> {
    let Some(approval) = gw.store.decide_approval(id, approve, who, reason, now_ms()).await? else {
        return Ok(None);
    };
    let job = match (approval.kind.as_str(), approval.payload["jobId"].as_str()) {
        (APPROVAL_KIND, Some(job_id)) => {
            Some(gw.store.release_approval(job_id, approve, now_ms()).await.map_err(|e| e.to_string()))
        }
        _ => None,
    };
    gw.clients.broadcast(events::PLUGIN_APPROVAL_RESOLVED, &approvals::resolved_event(&approval), None, true);
    gw.comfy.kick.notify_one();
    Ok(Some(Decided { approval, job }))
}

/// Decide an approval from chat and word the outcome for the chat.
async fn decide(gw: &Arc<Gateway>, id: &str, approve: bool, who: &str, reason: Option<&str>) -> String {
    match decide_approval(gw, id, approve, who, reason).await {
        Ok(Some(Decided { job, .. })) => match (approve, job) {
            (true, Some(Ok(job))) => reply::approved(id, Some(&job.id), None),
            (true, Some(Err(e))) => reply::approved(id, None, Some(&e)),
            (true, None) => reply::approved(id, None, None),
            (false, _) => reply::rejected(id, reason),
        },
        Ok(None) => reply::action_failed(&format!("no pending approval {id} (it may have expired or been decided)")),
        Err(e) => reply::action_failed(&e.to_string()),
    }
}
