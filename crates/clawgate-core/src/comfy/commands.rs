//! What the ComfyUI chat commands (`/run`, `/status <job>`, `/jobs`, `/stop`, `/templates`,
//! `/workers`, `/approvals`, `/approve`, `/reject`, `/schedules`, `/schedule`, `/trace`,
//! `/history`) do; the command registry ([`crate::channels::commands`]) recognises them.
//!
//! clawgate's own queue, approvals and schedules answer first. Workers in mode `openclaw` add
//! what their ComfyUI-OpenClaw extension holds: its jobs view (`/openclaw/jobs`, or the coarse
//! queue count where the host lacks the jobs API), its pending approvals (decided there with
//! `/approve`/`/reject`; an approved one runs at once and its images come to the approving
//! chat), its schedules (`/schedule run|enable|disable` on their `sched_…` ids) and its trace of
//! a job's prompt.

use std::sync::Arc;

use serde_json::{Value, json};

use clawgate_comfy::command::{self, Command, Decision, JobState, QueuePosition, reply};
use clawgate_comfy::openclaw::{JobsView, RemoteApproval};
use clawgate_store::{
    ApprovalRecord, ApprovalStatus, ApprovalStore, CronStore, JobQuery, JobRecord, JobStatus, JobStore, NewApproval,
    NewJob,
};

use crate::channels::commands::CommandCaller;
use crate::error::CoreError;
use crate::methods::approvals;
use crate::time::now_ms;

use super::{ComfyService, Worker};

/// The gateway's own schedules as `/schedule run|enable|disable` reaches them. The cron service
/// runs ComfyUI jobs, so it stands above this one: the command's caller lends it for the call.
pub(crate) trait LocalSchedules: Sync {
    /// Run the schedule now; `false` if there is no such schedule.
    fn run_now(&self, id: &str) -> impl std::future::Future<Output = Result<bool, CoreError>> + Send;
    /// Enable or disable it; `false` if there is no such schedule.
    fn set_enabled(&self, id: &str, on: bool) -> impl std::future::Future<Output = Result<bool, CoreError>> + Send;
}

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

impl ComfyService {
    /// Runs a ComfyUI command the registry ([`crate::channels::commands`]) recognised: authorized
    /// by `policy` first, then answered from clawgate's queue, approvals and schedules and the
    /// `openclaw` workers.
    pub(crate) async fn run_command(
        &self,
        caller: &CommandCaller,
        policy: &command::CommandPolicy,
        cmd: Command,
        schedules: &impl LocalSchedules,
    ) -> String {
        let decision = command::authorize(&cmd, &caller.sender(), policy);
        if let Decision::Deny(text) = &decision {
            return text.clone();
        }
        let deliver_to = caller.deliver_to.clone();
        let requested_by = json!({"channel": caller.platform, "senderId": caller.sender_id, "chatId": caller.chat_id,
                              "username": caller.sender_username});
        let who = format!("{}:{}", caller.platform, caller.sender_id);
        match cmd {
            Command::Invalid { verb, problem } => reply::invalid(verb, &problem),
            Command::Run { template, inputs, free_text, require_approval } => {
                let hold = decision == Decision::NeedsApproval || require_approval;
                let approval_id = hold.then(|| format!("apr_{}", &uuid::Uuid::new_v4().simple().to_string()[..12]));
                match self
                    .submit(
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
                            match self.store().create_approval(&new, now_ms()).await {
                                Ok(record) => {
                                    self.events().approval_requested(&approvals::record_json(&record));
                                    self.notify_admins(caller, policy, &aid, &template).await;
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
            Command::Status { job: Some(id) } => match self.store().get_job(&id).await {
                Ok(Some(job)) => {
                    let pos = self.store().queue_position(&job.id).await.ok().flatten();
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
            Command::Status { job: None } => super::status::workers_status(&self.workers()).await,
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
                let mut out = match self.store().list_jobs(&q).await {
                    Ok(jobs) => {
                        let items: Vec<(&str, JobState)> =
                            jobs.iter().map(|j| (j.id.as_str(), state_of(j.status))).collect();
                        reply::jobs(jobs.len(), &items)
                    }
                    Err(e) => reply::error(&e.to_string()),
                };
                for line in self.worker_jobs().await {
                    out.push('\n');
                    out.push_str(&line);
                }
                out
            }
            Command::Stop { jobs } => self.stop(caller, policy, jobs).await,
            Command::Templates => match self.library() {
                Some(lib) => {
                    let mut text = reply::templates(&lib.list());
                    for p in lib.problems() {
                        text.push_str(&format!("\n! {} could not be loaded: {}", p.name, short_error(&p.error)));
                    }
                    text
                }
                None => reply::error("no templates are loaded"),
            },
            Command::Workers => {
                let workers = self.workers();
                let items: Vec<command::WorkerSummary<'_>> = workers
                    .iter()
                    .map(|w| command::WorkerSummary {
                        name: &w.cfg.name,
                        online: w.healthy(),
                        queue_remaining: w.summary().queue_remaining,
                    })
                    .collect();
                reply::workers(&items)
            }
            Command::Approvals => match self.store().list_approvals(Some(ApprovalStatus::Pending), now_ms()).await {
                Ok(list) => {
                    // (id, template, requested by, source) of clawgate's own, then each worker's.
                    let mut rows: Vec<(String, String, Option<String>, String)> = list
                        .iter()
                        .filter(|a| a.kind != crate::exec_approvals::EXEC_KIND)
                        .map(|a| {
                            let by = requester(a.requested_by.as_ref());
                            (
                                a.id.clone(),
                                a.payload["template"].as_str().unwrap_or("?").to_owned(),
                                by,
                                "chat".to_owned(),
                            )
                        })
                        .collect();
                    let mut failures = Vec::new();
                    for (w, found) in self.worker_approvals().await {
                        match found {
                            Ok(remote) => rows.extend(remote.into_iter().map(|a| {
                                let source =
                                    format!("worker {} ({})", w.cfg.name, a.source.as_deref().unwrap_or("openclaw"));
                                (a.approval_id, a.template_id, None, source)
                            })),
                            Err(e) => failures.push(format!("worker {}: {e}", w.cfg.name)),
                        }
                    }
                    let items: Vec<command::ApprovalSummary<'_>> = rows
                        .iter()
                        .map(|(id, template, by, source)| command::ApprovalSummary {
                            id,
                            status: "pending",
                            template,
                            requested_by: by.as_deref(),
                            source,
                        })
                        .collect();
                    let mut out = reply::approvals(&items, items.len());
                    for f in failures {
                        out.push_str(&format!("\n(could not list approvals on {f})"));
                    }
                    out
                }
                Err(e) => reply::approvals_failed(&e.to_string()),
            },
            Command::Approve { id } => self.decide(&id, true, &who, None, &deliver_to, &requested_by).await,
            Command::Reject { id, reason } => {
                self.decide(&id, false, &who, reason.as_deref(), &deliver_to, &requested_by).await
            }
            Command::History { job: Some(id) } => match self.store().get_job(&id).await {
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
                match self.store().list_jobs(&q).await {
                    Ok(jobs) => {
                        let items: Vec<(&str, JobState)> =
                            jobs.iter().map(|j| (j.id.as_str(), state_of(j.status))).collect();
                        reply::jobs(jobs.len(), &items)
                    }
                    Err(e) => reply::error(&e.to_string()),
                }
            }
            Command::Trace { id } => match self.store().get_job(&id).await {
                Ok(Some(job)) => {
                    let j = self.job_view(&job).await;
                    let mut text = self.worker_trace(&job).await.unwrap_or_default();
                    text.push_str(&serde_json::to_string_pretty(&j).unwrap_or_default());
                    reply::trace(&id, &text)
                }
                Ok(None) => reply::error(&format!("no job {id}")),
                Err(e) => reply::error(&e.to_string()),
            },
            Command::Schedules => match self.store().list_cron_jobs(true).await {
                Ok(jobs) => {
                    let items: Vec<command::ScheduleSummary> = jobs
                        .iter()
                        .map(|j| command::ScheduleSummary {
                            id: j.id.clone(),
                            enabled: j.enabled,
                            cron_expr: (j.schedule_kind == crate::cron::SCHEDULE_CRON).then(|| j.schedule.clone()),
                            interval_sec: (j.schedule_kind == crate::cron::SCHEDULE_EVERY)
                                .then(|| j.schedule.parse::<u64>().ok().map(|ms| ms / 1000))
                                .flatten(),
                            template_id: j
                                .payload
                                .get("templateId")
                                .and_then(Value::as_str)
                                .unwrap_or(&j.kind)
                                .to_owned(),
                        })
                        .collect();
                    let mut items = items;
                    let mut failures = Vec::new();
                    for w in self.openclaw_workers() {
                        let Some(oc) = w.openclaw() else { continue };
                        match oc.schedules().await {
                            // The extension's field names (the Python connector read `id`/`cron`).
                            Ok(list) => items.extend(list.into_iter().map(|s| command::ScheduleSummary {
                                id: s.schedule_id,
                                enabled: s.enabled,
                                cron_expr: s.cron_expr.filter(|_| s.trigger_type == "cron"),
                                interval_sec: s.interval_sec,
                                template_id: format!("{} (worker {})", s.template_id, w.cfg.name),
                            })),
                            Err(e) => {
                                failures.push(format!("\n(could not list schedules on worker {}: {e})", w.cfg.name))
                            }
                        }
                    }
                    let mut out = reply::schedules(&items);
                    out.extend(failures);
                    out
                }
                Err(e) => reply::error(&e.to_string()),
            },
            Command::Schedule { action, id } if !self.is_local_schedule(&id).await => {
                self.worker_schedule(action, &id).await
            }
            Command::Schedule { action, id } => {
                let done = match action {
                    command::ScheduleAction::Run => schedules.run_now(&id).await,
                    command::ScheduleAction::Enable | command::ScheduleAction::Disable => {
                        schedules.set_enabled(&id, action == command::ScheduleAction::Enable).await
                    }
                };
                match done {
                    Ok(true) => reply::schedule_done(action, &id),
                    Ok(false) => reply::action_failed(&format!("no schedule {id}")),
                    Err(e) => reply::action_failed(&e.to_string()),
                }
            }
            other => format!("{} is not available in this gateway yet.", other.verb().name()),
        }
    }
}

/// Jobs `/stop` without ids looks at (running or dispatched to a worker); a bound on the work one
/// command does, far above what a pool runs at once.
const STOP_ALL_LIMIT: u32 = 500;

/// Job ids one `/stop` may name.
const STOP_IDS_MAX: usize = 50;

/// Lines `/stop` lists before it only counts.
const STOP_LINES_SHOWN: usize = 20;

/// `channel:senderId` of a stored `requested_by` (the form chat commands name a sender in).
fn requester(requested_by: Option<&Value>) -> Option<String> {
    let r = requested_by?;
    Some(format!("{}:{}", r.get("channel")?.as_str()?, r.get("senderId")?.as_str()?))
}

/// Whether `caller` asked for `job` (the same platform and sender id in its `requested_by`).
fn asked_for(job: &JobRecord, caller: &CommandCaller) -> bool {
    let Some(by) = &job.requested_by else { return false };
    by.get("channel").and_then(Value::as_str) == Some(caller.platform.as_str())
        && by.get("senderId").and_then(Value::as_str) == Some(caller.sender_id.as_str())
}

/// The jobs in `running` that `caller` may stop: every one for an admin, their own for anyone
/// else.
fn stoppable(running: Vec<JobRecord>, caller: &CommandCaller, admin: bool) -> (Vec<JobRecord>, usize) {
    let total = running.len();
    let mine: Vec<JobRecord> = running.into_iter().filter(|j| admin || asked_for(j, caller)).collect();
    let others = total - mine.len();
    (mine, others)
}

/// The `/stop` reply: one line per job (the first [`STOP_LINES_SHOWN`]), then, for several, how
/// many were stopped.
fn stop_reply(lines: &[(bool, String)]) -> String {
    let mut shown: Vec<&str> = lines.iter().take(STOP_LINES_SHOWN).map(|(_, l)| l.as_str()).collect();
    let more = lines.len().saturating_sub(STOP_LINES_SHOWN);
    let more_line = format!("…and {more} more");
    if more > 0 {
        shown.push(&more_line);
    }
    let mut out = shown.join("\n");
    if lines.len() > 1 {
        let stopped = lines.iter().filter(|(ok, _)| *ok).count();
        out.push_str(&format!("\nStopped {stopped} of {} jobs.", lines.len()));
    }
    out
}

impl ComfyService {
    /// `/stop [job ...]`. Without ids, every running or dispatched job the sender may stop (the
    /// connector's global interrupt, limited to what is theirs unless they are an admin); with
    /// ids, those jobs, under the same rule.
    async fn stop(&self, caller: &CommandCaller, policy: &command::CommandPolicy, ids: Vec<String>) -> String {
        let admin = policy.is_admin(&caller.sender());
        let mut refused = Vec::new();
        let targets: Vec<String> = if ids.is_empty() {
            let q = JobQuery {
                statuses: vec![JobStatus::Running, JobStatus::Dispatched],
                limit: STOP_ALL_LIMIT,
                before_seq: None,
            };
            let running = match self.store().list_jobs(&q).await {
                Ok(list) => list,
                Err(e) => return reply::error(&e.to_string()),
            };
            let (mine, others) = stoppable(running, caller, admin);
            if mine.is_empty() {
                return if others > 0 { "Nothing of yours is running." } else { "Nothing is running." }.to_owned();
            }
            mine.into_iter().map(|j| j.id).collect()
        } else {
            let mut ids = ids;
            let mut seen = std::collections::HashSet::new();
            ids.retain(|id| seen.insert(id.clone()));
            if ids.len() > STOP_IDS_MAX {
                return reply::error(&format!(
                    "name at most {STOP_IDS_MAX} jobs at once, or none to stop all of yours"
                ));
            }
            let mut ok = Vec::new();
            for id in ids {
                match self.store().get_job(&id).await {
                    Ok(Some(job)) if !admin && !asked_for(&job, caller) => {
                        refused.push((false, format!("{id}: you may stop only jobs you asked for.")))
                    }
                    _ => ok.push(id),
                }
            }
            ok
        };
        // Each cancel may wait on its worker; a dead one must not hold up the others.
        let mut lines = futures_util::future::join_all(targets.iter().map(|id| async move {
            match self.cancel(id).await {
                Ok(Some(_)) => (true, format!("Stopped {id}.")),
                Ok(None) => (false, format!("{id} had already finished.")),
                Err(e) => (false, format!("{id}: {e}")),
            }
        }))
        .await;
        lines.extend(refused);
        stop_reply(&lines)
    }
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

impl ComfyService {
    /// Decide a pending approval, release (approved) or cancel (rejected) the job it holds, and
    /// announce `plugin.approval.resolved`. `None` if the approval is unknown, already decided or
    /// expired. Shared by the chat commands and `plugin.approval.resolve`.
    pub(crate) async fn decide_approval(
        &self,
        id: &str,
        approve: bool,
        who: &str,
        reason: Option<&str>,
    ) -> Result<Option<Decided>, CoreError> {
        let Some(approval) = self.store().decide_approval(id, approve, who, reason, now_ms()).await? else {
            return Ok(None);
        };
        let job = match (approval.kind.as_str(), approval.payload["jobId"].as_str()) {
            (APPROVAL_KIND, Some(job_id)) => {
                Some(self.store().release_approval(job_id, approve, now_ms()).await.map_err(|e| e.to_string()))
            }
            _ => None,
        };
        if !approve && let Some(Ok(job)) = &job {
            self.tell_requester_rejected(&approval, job, who, reason).await;
        }
        self.events().approval_resolved(&approvals::resolved_event(&approval));
        self.kick();
        Ok(Some(Decided { approval, job }))
    }

    /// Tell the requester of a rejected `/run` in the chat they asked from (the connector left
    /// them waiting), unless they rejected it themselves. Once per approval (outbox key).
    async fn tell_requester_rejected(
        &self,
        approval: &ApprovalRecord,
        job: &JobRecord,
        who: &str,
        reason: Option<&str>,
    ) {
        if requester(approval.requested_by.as_ref()).as_deref() == Some(who) {
            return;
        }
        let mut text =
            format!("{}\nYour /run {} was not approved.", reply::rejected(&approval.id, reason), job.template_id);
        if reason.is_none() {
            text.push_str(" No reason was given.");
        }
        use clawgate_comfy::dispatch::JobHost as _;
        self.inner.host.deliver_text(job, &format!("job:{}:rejected", job.id), &text).await;
    }

    /// Decide an approval from chat and word the outcome for the chat. An id clawgate does not
    /// hold is looked for on the `openclaw` workers.
    async fn decide(
        &self,
        id: &str,
        approve: bool,
        who: &str,
        reason: Option<&str>,
        deliver_to: &Value,
        requested_by: &Value,
    ) -> String {
        if matches!(self.store().get_approval(id, now_ms()).await, Ok(None))
            && let Some(reply) = self.decide_on_worker(id, approve, who, reason, deliver_to, requested_by).await
        {
            return reply;
        }
        match self.decide_approval(id, approve, who, reason).await {
            Ok(Some(Decided { job, .. })) => match (approve, job) {
                (true, Some(Ok(job))) => reply::approved(id, Some(&job.id), None),
                (true, Some(Err(e))) => reply::approved(id, None, Some(&e)),
                (true, None) => reply::approved(id, None, None),
                (false, _) => reply::rejected(id, reason),
            },
            Ok(None) => {
                reply::action_failed(&format!("no pending approval {id} (it may have expired or been decided)"))
            }
            Err(e) => reply::action_failed(&e.to_string()),
        }
    }

    /// One line per `openclaw` worker for `/jobs`: its jobs view, or the coarse queue count where
    /// the host has no jobs API (501/503).
    async fn worker_jobs(&self) -> Vec<String> {
        let mut lines = Vec::new();
        for w in self.openclaw_workers() {
            let Some(oc) = w.openclaw() else { continue };
            lines.push(match oc.jobs().await {
                Ok(JobsView::Jobs { jobs, total }) => {
                    let count = |s: &str| jobs.iter().filter(|j| j.status == s).count();
                    format!(
                        "Worker {}: {} pending, {} in progress, {} completed ({total} in its jobs list)",
                        w.cfg.name,
                        count("pending"),
                        count("in_progress"),
                        count("completed")
                    )
                }
                Ok(JobsView::QueueOnly { queue_remaining }) => {
                    format!("Worker {}: {}", w.cfg.name, reply::jobs_fallback(Some(queue_remaining)))
                }
                Err(e) => format!("Worker {}: jobs unavailable ({e})", w.cfg.name),
            });
        }
        lines
    }

    /// Each `openclaw` worker's pending approvals.
    async fn worker_approvals(
        &self,
    ) -> Vec<(Arc<Worker>, Result<Vec<RemoteApproval>, clawgate_comfy::openclaw::OpenClawError>)> {
        let mut out = Vec::new();
        for w in self.openclaw_workers() {
            let Some(oc) = w.openclaw() else { continue };
            let found = oc.approvals(Some("pending")).await;
            out.push((w, found));
        }
        out
    }

    /// The extension's trace of the job's prompt (only bridge submits record one), as a first line
    /// for `/trace`.
    async fn worker_trace(&self, job: &JobRecord) -> Option<String> {
        let prompt = job.prompt_id.as_deref()?;
        let w = self.workers().into_iter().find(|w| Some(&w.cfg.name) == job.worker.as_ref())?;
        let oc = w.openclaw()?;
        Some(match oc.trace(prompt).await {
            Ok(Some(t)) => {
                let events: Vec<String> = t.events.iter().map(|e| e.event.clone()).collect();
                format!(
                    "worker {} trace {}: {}\n",
                    w.cfg.name,
                    t.trace_id.as_deref().unwrap_or("-"),
                    if events.is_empty() { "no events".to_owned() } else { events.join(", ") }
                )
            }
            Ok(None) => format!("worker {} has no trace of prompt {prompt}\n", w.cfg.name),
            Err(e) => format!("worker {} trace unavailable: {e}\n", w.cfg.name),
        })
    }

    /// `/approve`/`/reject` of an approval an `openclaw` worker holds; `None` when no worker knows
    /// the id. An approved one runs there at once; clawgate adopts its prompt as a job whose images
    /// come to this chat.
    async fn decide_on_worker(
        &self,
        id: &str,
        approve: bool,
        who: &str,
        reason: Option<&str>,
        deliver_to: &Value,
        requested_by: &Value,
    ) -> Option<String> {
        let mut found = None;
        for w in self.openclaw_workers() {
            let Some(oc) = w.openclaw() else { continue };
            if let Ok(Some(a)) = oc.approval(id).await {
                found = Some((w, a));
                break;
            }
        }
        let (w, approval) = found?;
        let oc = w.openclaw()?;
        if !approve {
            return Some(match oc.reject(id, Some(who), reason).await {
                Ok(_) => reply::rejected(id, reason),
                Err(e) => reply::action_failed(&format!("worker {}: {e}", w.cfg.name)),
            });
        }
        let outcome = match oc.approve(id, Some(who), true).await {
            Ok(o) => o,
            Err(e) => return Some(reply::action_failed(&format!("worker {}: {e}", w.cfg.name))),
        };
        let Some(prompt) = outcome.prompt_id.filter(|_| outcome.executed) else {
            return Some(reply::approved(id, None, outcome.execution_error.as_deref()));
        };
        // A job of ours that the worker held for approval (its trace id is our tag) picks the
        // prompt up itself and delivers to the chat that asked.
        if let Some(job) = self.held_job(&approval).await {
            return Some(format!(
                "{}\nJob {} continues on worker {}",
                reply::approved(id, Some(&prompt), None),
                job.id,
                w.cfg.name
            ));
        }
        let new = NewJob {
            id: format!("job_{}", uuid::Uuid::new_v4().simple()),
            template_id: approval.template_id.clone(),
            inputs: approval.inputs.clone(),
            workflow: Value::Null,
            deliver_to: Some(deliver_to.clone()),
            requested_by: Some(requested_by.clone()),
            approval_id: Some(id.to_owned()),
            max_attempts: 1,
            status: JobStatus::Running,
        };
        Some(match self.adopt_prompt(&w, &new, &prompt).await {
            Ok(job) => {
                format!("{}\nJob: {} on worker {}", reply::approved(id, Some(&prompt), None), job.id, w.cfg.name)
            }
            Err(e) => {
                format!("{}\n(its images cannot be delivered here: {e})", reply::approved(id, Some(&prompt), None))
            }
        })
    }

    async fn is_local_schedule(&self, id: &str) -> bool {
        self.openclaw_workers().is_empty() || matches!(self.store().get_cron_job(id).await, Ok(Some(_)))
    }

    /// `/schedule run|enable|disable` of a schedule an `openclaw` worker holds.
    async fn worker_schedule(&self, action: command::ScheduleAction, id: &str) -> String {
        for w in self.openclaw_workers() {
            let Some(oc) = w.openclaw() else { continue };
            let Ok(list) = oc.schedules().await else { continue };
            let Some(sched) = list.into_iter().find(|s| s.schedule_id == id) else { continue };
            let done = match action {
                command::ScheduleAction::Run => oc.run_schedule(id).await,
                command::ScheduleAction::Enable | command::ScheduleAction::Disable => {
                    let want = action == command::ScheduleAction::Enable;
                    if sched.enabled == want { Ok(()) } else { oc.toggle_schedule(id).await.map(|_| ()) }
                }
            };
            return match done {
                Ok(()) => format!("{} (worker {})", reply::schedule_done(action, id), w.cfg.name),
                Err(e) => reply::action_failed(&format!("worker {}: {e}", w.cfg.name)),
            };
        }
        reply::action_failed(&format!("no schedule {id}"))
    }

    /// The unfinished job of ours whose start the worker held with `approval` (its trace id is the
    /// job's tag, `<job id>-<attempt>`).
    async fn held_job(&self, approval: &RemoteApproval) -> Option<JobRecord> {
        let trace = approval.raw.get("trace_id").and_then(Value::as_str)?;
        let (job_id, _attempt) = trace.rsplit_once('-')?;
        match self.store().get_job(job_id).await {
            Ok(Some(job)) if !job.status.is_terminal() => Some(job),
            _ => None,
        }
    }

    /// Tells each admin (`comfy.commands.adminUsers`) on the requester's platform about a held
    /// `/run`, with the commands that decide it, in a private message through the outbox (once per
    /// approval and admin; where that chat is: [`admin_private_chat`]). The web chat has no
    /// private chat to write to: its admins see requests with `/approvals`, and WS clients through
    /// `plugin.approval.requested`.
    async fn notify_admins(
        &self,
        caller: &CommandCaller,
        policy: &command::CommandPolicy,
        approval_id: &str,
        template: &str,
    ) {
        let account = caller.deliver_to.get("account").and_then(Value::as_str).unwrap_or("default").to_owned();
        let who = match &caller.sender_username {
            Some(u) => format!("{}:{} (@{u})", caller.platform, caller.sender_id),
            None => format!("{}:{}", caller.platform, caller.sender_id),
        };
        let text = format!(
            "[Approval Requested]\nID: {approval_id}\nTemplate: {template}\nRequested by: {who}\n\
         Approve: /approve {approval_id}\nReject: /reject {approval_id} <reason>"
        );
        let items: Vec<clawgate_store::NewOutbound> = policy
            .admins_on(&caller.platform)
            .into_iter()
            .filter_map(|admin| {
                let chat = admin_private_chat(&caller.platform, &admin)?;
                // An admin asking for approval of their own run needs no notice of it.
                if admin == caller.sender_id || chat == caller.sender_id {
                    return None;
                }
                let msg = clawgate_channels::OutboundMessage::text(&chat, None, text.clone());
                Some(clawgate_store::NewOutbound {
                    idempotency_key: format!("approval:{approval_id}:{admin}"),
                    channel: caller.platform.clone(),
                    account: account.clone(),
                    chat_id: chat,
                    payload: serde_json::to_value(&msg).unwrap_or(Value::Null),
                })
            })
            .collect();
        if items.is_empty() {
            return;
        }
        if let Err(e) = self.inner.host.outbox.queue(&items, None).await {
            tracing::error!(approval = %approval_id, error = %e, "cannot notify the admins");
        }
    }
}

/// The chat an admin's approval notice goes to on `platform`; `None` where there is none a bot
/// can write to (the web chat) or the id cannot be one of that platform's users.
///
/// - Telegram: a user id is also their private chat's id. LINE pushes to a user id (once the
///   admin added the bot as a friend).
/// - Discord: the adapter opens the DM channel for a `user:<id>` target.
/// - Slack: `chat.postMessage` takes a user id (`U…`, `W…` on Enterprise Grid) as the channel
///   and posts in the app's DM with them.
/// - WhatsApp: the admin's `wa_id` (the number without `+`). A free-form message reaches them
///   only within 24 hours of their last message to the business; outside that window Graph
///   refuses it (131047) and the outbox records a permanent failure that says so, not retried.
///   The admin still finds the request with `/approvals` once they write.
fn admin_private_chat(platform: &str, admin: &str) -> Option<String> {
    match platform {
        "telegram" | "line" => Some(admin.to_owned()),
        "discord" => Some(format!("{}{admin}", clawgate_channels::discord::USER_TARGET_PREFIX)),
        "slack" => {
            let user =
                admin.starts_with(['U', 'W']) && admin.len() > 1 && admin.chars().all(|c| c.is_ascii_alphanumeric());
            user.then(|| admin.to_owned())
        }
        "whatsapp" => {
            let wa_id = admin.strip_prefix('+').unwrap_or(admin);
            (!wa_id.is_empty() && wa_id.chars().all(|c| c.is_ascii_digit())).then(|| wa_id.to_owned())
        }
        _ => None,
    }
}

/// A template load error for a chat reply: paths are cut to their file name (chat users do not
/// see the gateway's directories).
fn short_error(error: &str) -> String {
    error
        .split(' ')
        .map(|word| match word.rfind('/') {
            Some(i) if word.starts_with('/') || word.contains(":/") => &word[i + 1..],
            _ => word,
        })
        .collect::<Vec<_>>()
        .join(" ")
}

#[cfg(test)]
mod tests {
    use super::*;

    fn caller(platform: &str, sender: &str) -> CommandCaller {
        CommandCaller {
            platform: platform.into(),
            sender_id: sender.into(),
            sender_username: None,
            chat_id: sender.into(),
            trusted: false,
            is_admin: false,
            deliver_to: Value::Null,
            session_key: "s".into(),
            agent_id: "main".into(),
        }
    }

    fn job(id: &str, requested_by: Option<Value>) -> JobRecord {
        JobRecord {
            id: id.into(),
            template_id: "invert".into(),
            inputs: json!({}),
            workflow: json!({}),
            status: JobStatus::Running,
            worker: Some("w0".into()),
            prompt_id: Some(format!("p-{id}")),
            attempts: 1,
            max_attempts: 3,
            error: None,
            outputs: json!([]),
            deliver_to: None,
            requested_by,
            approval_id: None,
            progress: None,
            created_at_ms: 0,
            updated_at_ms: 0,
            started_at_ms: None,
            ended_at_ms: None,
            seq: 0,
        }
    }

    #[test]
    fn a_non_admin_may_stop_only_what_they_asked_for() {
        let by = |channel: &str, sender: &str| Some(json!({"channel": channel, "senderId": sender, "chatId": "1"}));
        let running = vec![
            job("a", by("telegram", "200")),
            job("b", by("telegram", "100")),
            job("c", by("discord", "200")),
            job("d", None),
            job("e", Some(json!({"channel": "telegram", "senderId": 200}))),
        ];
        let ids =
            |(jobs, others): (Vec<JobRecord>, usize)| (jobs.into_iter().map(|j| j.id).collect::<Vec<_>>(), others);
        let guest = caller("telegram", "200");
        assert_eq!(ids(stoppable(running.clone(), &guest, false)), (vec!["a".to_owned()], 4));
        assert_eq!(ids(stoppable(running.clone(), &guest, true)).0, ["a", "b", "c", "d", "e"], "an admin stops all");
        assert_eq!(ids(stoppable(Vec::new(), &guest, false)), (Vec::new(), 0));
    }

    #[test]
    fn the_stop_reply_lists_each_job_and_counts_several() {
        assert_eq!(stop_reply(&[(true, "Stopped a.".into())]), "Stopped a.");
        assert_eq!(
            stop_reply(&[(true, "Stopped a.".into()), (false, "b had already finished.".into())]),
            "Stopped a.\nb had already finished.\nStopped 1 of 2 jobs."
        );
        let many: Vec<(bool, String)> = (0..STOP_LINES_SHOWN + 3).map(|i| (true, format!("Stopped j{i}."))).collect();
        let text = stop_reply(&many);
        assert_eq!(text.lines().count(), STOP_LINES_SHOWN + 2, "{text}");
        assert!(text.ends_with("\n…and 3 more\nStopped 23 of 23 jobs."), "{text}");
    }

    #[test]
    fn admins_are_written_to_where_each_platform_takes_a_private_message() {
        let cases = [
            ("telegram", "100", Some("100")),
            ("line", "U4af4980629", Some("U4af4980629")),
            ("discord", "220000000000000001", Some("user:220000000000000001")),
            ("slack", "U0ADMIN", Some("U0ADMIN")),
            ("slack", "W0GRIDADMIN", Some("W0GRIDADMIN")),
            ("whatsapp", "15550100", Some("15550100")),
            ("whatsapp", "+15550100", Some("15550100")),
            // Ids that cannot be a user there (an unscoped admin of another platform).
            ("slack", "100", None),
            ("slack", "U", None),
            ("whatsapp", "U0ADMIN", None),
            ("whatsapp", "+", None),
            // The web chat has no private chat a bot writes to.
            ("webchat", "device-1", None),
        ];
        for (platform, admin, want) in cases {
            assert_eq!(admin_private_chat(platform, admin).as_deref(), want, "{platform}:{admin}");
        }
    }
}
