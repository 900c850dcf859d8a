//! The texts users see, and the views of jobs, approvals, schedules and workers they are made
//! from. Where the connector had a fixed string, it is reproduced exactly.

use super::grammar::{Problem, ScheduleAction, Verb};
use crate::templates::TemplateInfo;

/// A job's state, as the jobs API names them.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum JobState {
    /// Waiting in the queue.
    Pending,
    /// Running.
    InProgress,
    /// Finished with outputs.
    Completed,
    /// Finished with an error.
    Failed,
    /// Stopped.
    Cancelled,
}

impl JobState {
    /// The label users see.
    pub fn label(self) -> &'static str {
        match self {
            Self::Pending => "pending",
            Self::InProgress => "in progress",
            Self::Completed => "completed",
            Self::Failed => "failed",
            Self::Cancelled => "cancelled",
        }
    }
}

/// A job's place in the queue: 1-based `position` of `total` waiting.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct QueuePosition {
    /// 1 is next.
    pub position: usize,
    /// Jobs waiting in all.
    pub total: usize,
}

/// What `/run` submitted.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct JobSubmitted<'a> {
    /// The ComfyUI prompt id.
    pub prompt_id: Option<&'a str>,
    /// The template id.
    pub template: &'a str,
    /// The trace id.
    pub trace_id: Option<&'a str>,
    /// Where it waits, when known.
    pub queue: Option<QueuePosition>,
}

/// One job, for `/status <job>`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct JobView<'a> {
    /// The job id.
    pub id: &'a str,
    /// Its state.
    pub state: JobState,
    /// The template it runs, when known.
    pub template: Option<&'a str>,
    /// Its place in the queue, for pending jobs.
    pub queue: Option<QueuePosition>,
    /// The failure, for failed jobs.
    pub error: Option<&'a str>,
}

/// One pending approval, for `/approvals`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ApprovalSummary<'a> {
    /// The approval id.
    pub id: &'a str,
    /// `pending`, `approved`, …
    pub status: &'a str,
    /// The template it would run.
    pub template: &'a str,
    /// Who asked, when known.
    pub requested_by: Option<&'a str>,
    /// `trigger`, `chatops`, `scheduler`, …
    pub source: &'a str,
}

/// A finished (or failed) job's entry in ComfyUI's `/history/{id}`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HistoryEntry {
    /// `success`, `error`, or `unknown` when absent.
    pub status: String,
    /// ComfyUI's `completed` flag.
    pub completed: bool,
    /// Output images across all nodes.
    pub images: usize,
}

/// One schedule, for `/schedules`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ScheduleSummary {
    /// `sched_…`.
    pub id: String,
    /// Whether it fires.
    pub enabled: bool,
    /// The cron expression, for cron schedules.
    pub cron_expr: Option<String>,
    /// The period, for interval schedules.
    pub interval_sec: Option<u64>,
    /// The template it runs.
    pub template_id: String,
}

/// One ComfyUI worker, for `/workers`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct WorkerSummary<'a> {
    /// The worker's configured name.
    pub name: &'a str,
    /// Whether the last health check succeeded.
    pub online: bool,
    /// Prompts queued or running on it, when known.
    pub queue_remaining: Option<u64>,
}

/// The sender is not on the class's `allowFrom` list.
pub const ACCESS_DENIED_ALLOW_LIST: &str = "[Access Denied] You are not in the allow-list for this command.";
/// An admin-class command from a non-admin.
pub const ACCESS_DENIED_ADMIN: &str = "[Access Denied] This command requires Admin privileges.";
/// An open quote or a trailing backslash.
pub const PARSE_FAILED: &str = "[Error] Parsing command arguments failed (unbalanced quotes?).";
/// `/approvals` with nothing pending.
pub const NO_PENDING_APPROVALS: &str = "No pending approvals.";
/// `/schedules` with none.
pub const NO_SCHEDULES: &str = "No schedules found.";
/// `/jobs` with an empty snapshot.
pub const JOBS_EMPTY: &str = "[Jobs] No jobs in the authoritative snapshot.";
/// `/templates` with none loaded.
pub const NO_TEMPLATES: &str = "No templates available.";
/// `/workers` with none configured.
pub const NO_WORKERS: &str = "No ComfyUI workers configured.";

/// Longest trace text shown.
const TRACE_MAX_CHARS: usize = 1000;
/// Jobs listed by `/jobs`.
const JOBS_SHOWN: usize = 5;
/// Job ids in `/jobs` are cut to this many characters, `...` included.
const JOB_ID_SHOWN: usize = 24;

/// The answer to [`super::Command::Invalid`].
pub fn invalid(verb: Verb, problem: &Problem) -> String {
    match problem {
        Problem::Usage => verb.usage().to_owned(),
        Problem::UnbalancedQuotes => PARSE_FAILED.to_owned(),
        Problem::BadId(id) => {
            format!("[Error] Invalid id \"{id}\": use letters, digits and . _ : - (at most 128).\n{}", verb.usage())
        }
    }
}

/// `[Error] <err>`.
pub fn error(err: &str) -> String {
    format!("[Error] {err}")
}

/// `queued, position 3 of 5`.
pub fn queue_position(queue: QueuePosition) -> String {
    format!("queued, position {} of {}", queue.position, queue.total)
}

/// `/run` accepted. A missing field prints as `unknown`, as in the connector.
pub fn job_submitted(job: &JobSubmitted<'_>) -> String {
    let mut out = format!(
        "[Job Submitted]\nID: {}\nTemplate: {}\nTrace: {}",
        job.prompt_id.unwrap_or("unknown"),
        job.template,
        job.trace_id.unwrap_or("unknown")
    );
    if let Some(queue) = job.queue {
        out.push_str("\nStatus: ");
        out.push_str(&queue_position(queue));
    }
    out
}

/// `/run` held for approval.
pub fn approval_requested(approval_id: Option<&str>, trace_id: Option<&str>, expires_at: Option<&str>) -> String {
    let mut out = format!(
        "[Approval Requested]\nID: {}\nTrace: {}",
        approval_id.unwrap_or("unknown"),
        trace_id.unwrap_or("unknown")
    );
    if let Some(expires) = expires_at {
        out.push_str("\nExpires: ");
        out.push_str(expires);
    }
    out
}

/// `/run` refused by a template or the backend.
pub fn submission_failed(err: &str) -> String {
    format!("[Submission Failed] Reason: {err}")
}

/// `/status <job>`.
pub fn job_status(job: &JobView<'_>) -> String {
    let state = match (job.state, job.queue) {
        (JobState::Pending, Some(queue)) => queue_position(queue),
        (JobState::Pending, None) => "queued".to_owned(),
        (JobState::InProgress, _) => "running".to_owned(),
        (state, _) => state.label().to_owned(),
    };
    let mut out = format!("Job {}: {state}", job.id);
    if let Some(template) = job.template {
        out.push_str("\nTemplate: ");
        out.push_str(template);
    }
    if let (JobState::Failed, Some(err)) = (job.state, job.error) {
        out.push_str("\nError: ");
        out.push_str(err);
    }
    out
}

/// `/history <id>` for a prompt in ComfyUI's history.
pub fn history(id: &str, entry: &HistoryEntry) -> String {
    format!("Job {id}: {}\nImages: {}", entry.status, entry.images)
}

/// `/history <id>` for a prompt not (yet) in history.
pub fn history_not_found(id: &str) -> String {
    format!("Job {id}: not in history (still queued, running, removed, or unknown).")
}

/// `/jobs`: the snapshot summary, per-state counts of the returned page, and the first five
/// jobs. `total` is the backend's total, `jobs` the returned page.
pub fn jobs(total: usize, jobs: &[(&str, JobState)]) -> String {
    if jobs.is_empty() {
        return JOBS_EMPTY.to_owned();
    }
    let count = |s: JobState| jobs.iter().filter(|(_, state)| *state == s).count();
    let (p, i) = (count(JobState::Pending), count(JobState::InProgress));
    let (c, f, k) = (count(JobState::Completed), count(JobState::Failed), count(JobState::Cancelled));
    let mut out = format!(
        "[Jobs] Authoritative snapshot\nSnapshot total: {total}; returned page: {}\nPage states: Active {} (pending {p}, in progress {i}); Terminal {} (completed {c}, failed {f}, cancelled {k})",
        jobs.len(),
        p + i,
        c + f + k
    );
    for (id, state) in jobs.iter().take(JOBS_SHOWN) {
        out.push_str(&format!("\n- {} \u{2014} {}", cut_id(id), state.label()));
    }
    if jobs.len() > JOBS_SHOWN {
        out.push_str(&format!("\nShowing {JOBS_SHOWN} of {} returned jobs.", jobs.len()));
    }
    out
}

fn cut_id(id: &str) -> String {
    if id.chars().count() <= JOB_ID_SHOWN {
        id.to_owned()
    } else {
        let mut out: String = id.chars().take(JOB_ID_SHOWN - 3).collect();
        out.push_str("...");
        out
    }
}

/// `/jobs` when only ComfyUI's coarse queue count is available.
pub fn jobs_fallback(queue_remaining: Option<u64>) -> String {
    match queue_remaining {
        Some(n) if n <= 1_000_000 => {
            format!("[Jobs fallback] Queue remaining: {n} (coarse count; not an authoritative jobs snapshot).")
        }
        _ => "[Jobs fallback] Coarse queue count is unavailable.".to_owned(),
    }
}

/// `/approvals`.
pub fn approvals(items: &[ApprovalSummary<'_>], pending_count: usize) -> String {
    if items.is_empty() {
        return NO_PENDING_APPROVALS.to_owned();
    }
    let mut out = format!("Pending Approvals ({pending_count}):");
    for a in items {
        out.push_str(&format!(
            "\n- {} [{}] template={} by={} source={}",
            a.id,
            a.status,
            a.template,
            a.requested_by.unwrap_or("unknown"),
            a.source
        ));
    }
    out
}

/// `/approvals` failed.
pub fn approvals_failed(err: &str) -> String {
    format!("[Error] Failed to list approvals: {err}")
}

/// `/approve <id>`: `executed` is the started prompt's id, `execution_error` why it did not
/// start.
pub fn approved(id: &str, executed: Option<&str>, execution_error: Option<&str>) -> String {
    match executed {
        Some(prompt_id) => format!("[Approved] {id}\nExecuted: {prompt_id}"),
        None => {
            let mut out = format!("[Approved] {id}\n(Not Executed)");
            if let Some(err) = execution_error {
                out.push_str("\nError: ");
                out.push_str(err);
            }
            out
        }
    }
}

/// `/reject <id> [reason]`.
pub fn rejected(id: &str, reason: Option<&str>) -> String {
    match reason {
        Some(reason) => format!("[Rejected] {id}\nReason: {reason}"),
        None => format!("[Rejected] {id}"),
    }
}

/// `/approve` or `/reject` refused.
pub fn action_failed(err: &str) -> String {
    format!("[Failed] {err}")
}

/// `/schedules`: `[+|-] <id>: <cron or interval> - <template>`.
pub fn schedules(items: &[ScheduleSummary]) -> String {
    if items.is_empty() {
        return NO_SCHEDULES.to_owned();
    }
    let mut out = "Schedules:".to_owned();
    for s in items {
        let when = match (&s.cron_expr, s.interval_sec) {
            (Some(cron), _) => cron.clone(),
            (None, Some(secs)) => format!("every {secs}s"),
            (None, None) => "unscheduled".to_owned(),
        };
        let mark = if s.enabled { '+' } else { '-' };
        out.push_str(&format!("\n[{mark}] {}: {when} - {}", s.id, s.template_id));
    }
    out
}

/// `/schedule run|enable|disable <id>` succeeded.
pub fn schedule_done(action: ScheduleAction, id: &str) -> String {
    match action {
        ScheduleAction::Run => format!("[Success] Schedule {id} triggered manually."),
        ScheduleAction::Enable => format!("[Success] Schedule {id} enabled."),
        ScheduleAction::Disable => format!("[Success] Schedule {id} disabled."),
    }
}

/// `/trace <id>`: the trace text, cut to 1000 characters with `...` when cut.
pub fn trace(id: &str, text: &str) -> String {
    if text.chars().count() <= TRACE_MAX_CHARS {
        format!("Trace {id}: {text}")
    } else {
        let cut: String = text.chars().take(TRACE_MAX_CHARS).collect();
        format!("Trace {id}: {cut}...")
    }
}

/// `/templates`.
pub fn templates(items: &[TemplateInfo]) -> String {
    if items.is_empty() {
        return NO_TEMPLATES.to_owned();
    }
    let mut out = "Templates:".to_owned();
    for t in items {
        out.push_str("\n- ");
        out.push_str(&t.id);
        if let Some(description) = &t.description {
            out.push_str(": ");
            out.push_str(description);
        }
        if !t.allowed_inputs.is_empty() {
            let shown: Vec<String> = t
                .allowed_inputs
                .iter()
                .map(|k| match t.defaults.get(k) {
                    Some(serde_json::Value::String(s)) => format!("{k}={s}"),
                    Some(v) => format!("{k}={v}"),
                    None => k.clone(),
                })
                .collect();
            out.push_str(&format!(" (inputs: {})", shown.join(", ")));
        }
    }
    out
}

/// `/workers`.
pub fn workers(items: &[WorkerSummary<'_>]) -> String {
    if items.is_empty() {
        return NO_WORKERS.to_owned();
    }
    let mut out = "Workers:".to_owned();
    for w in items {
        let state = if w.online { "online" } else { "offline" };
        match w.queue_remaining {
            Some(n) => out.push_str(&format!("\n- {}: {state}, queue {n}", w.name)),
            None => out.push_str(&format!("\n- {}: {state}", w.name)),
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn run_and_approval_replies() {
        let job = JobSubmitted { prompt_id: Some("p1"), template: "invert", trace_id: None, queue: None };
        assert_eq!(job_submitted(&job), "[Job Submitted]\nID: p1\nTemplate: invert\nTrace: unknown");
        let queued = JobSubmitted { queue: Some(QueuePosition { position: 3, total: 5 }), trace_id: Some("t1"), ..job };
        assert_eq!(
            job_submitted(&queued),
            "[Job Submitted]\nID: p1\nTemplate: invert\nTrace: t1\nStatus: queued, position 3 of 5"
        );
        assert_eq!(
            approval_requested(Some("apr_1"), Some("t1"), Some("2026-01-01T00:00:00+00:00")),
            "[Approval Requested]\nID: apr_1\nTrace: t1\nExpires: 2026-01-01T00:00:00+00:00"
        );
        assert_eq!(approval_requested(None, None, None), "[Approval Requested]\nID: unknown\nTrace: unknown");
        assert_eq!(submission_failed("boom"), "[Submission Failed] Reason: boom");
        assert_eq!(approved("apr_1", Some("p2"), None), "[Approved] apr_1\nExecuted: p2");
        assert_eq!(approved("apr_1", None, Some("no gpu")), "[Approved] apr_1\n(Not Executed)\nError: no gpu");
        assert_eq!(approved("apr_1", None, None), "[Approved] apr_1\n(Not Executed)");
        assert_eq!(rejected("apr_1", None), "[Rejected] apr_1");
        assert_eq!(rejected("apr_1", Some("off topic")), "[Rejected] apr_1\nReason: off topic");
        assert_eq!(action_failed("nope"), "[Failed] nope");
    }

    #[test]
    fn status_and_error_replies() {
        assert_eq!(error("x"), "[Error] x");
        let pending = JobView {
            id: "p1",
            state: JobState::Pending,
            template: Some("invert"),
            queue: Some(QueuePosition { position: 3, total: 5 }),
            error: None,
        };
        assert_eq!(job_status(&pending), "Job p1: queued, position 3 of 5\nTemplate: invert");
        let running = JobView { state: JobState::InProgress, template: None, queue: None, ..pending };
        assert_eq!(job_status(&running), "Job p1: running");
        let failed = JobView { state: JobState::Failed, error: Some("OOM"), template: None, ..pending };
        assert_eq!(job_status(&failed), "Job p1: failed\nError: OOM");
        let queued = JobView { queue: None, template: None, ..pending };
        assert_eq!(job_status(&queued), "Job p1: queued");
        let done = HistoryEntry { status: "completed".into(), completed: true, images: 2 };
        assert_eq!(history("p1", &done), "Job p1: completed\nImages: 2");
        assert!(history_not_found("p1").starts_with("Job p1: not in history"));
    }

    #[test]
    fn jobs_reply_matches_the_connector_summary() {
        assert_eq!(jobs(0, &[]), JOBS_EMPTY);
        let long = "0123456789abcdef0123456789abcdef";
        let page = [
            (long, JobState::Pending),
            ("b", JobState::InProgress),
            ("c", JobState::Completed),
            ("d", JobState::Failed),
            ("e", JobState::Cancelled),
            ("f", JobState::Completed),
        ];
        let text = jobs(9, &page);
        assert_eq!(
            text,
            "[Jobs] Authoritative snapshot\n\
             Snapshot total: 9; returned page: 6\n\
             Page states: Active 2 (pending 1, in progress 1); Terminal 4 (completed 2, failed 1, cancelled 1)\n\
             - 0123456789abcdef01234... \u{2014} pending\n\
             - b \u{2014} in progress\n\
             - c \u{2014} completed\n\
             - d \u{2014} failed\n\
             - e \u{2014} cancelled\n\
             Showing 5 of 6 returned jobs."
        );
        assert!(text.chars().count() <= 1000);
        assert_eq!(
            jobs_fallback(Some(3)),
            "[Jobs fallback] Queue remaining: 3 (coarse count; not an authoritative jobs snapshot)."
        );
        assert_eq!(jobs_fallback(None), "[Jobs fallback] Coarse queue count is unavailable.");
        assert_eq!(jobs_fallback(Some(1_000_001)), "[Jobs fallback] Coarse queue count is unavailable.");
    }

    #[test]
    fn approvals_replies() {
        assert_eq!(approvals(&[], 0), "No pending approvals.");
        let items = [
            ApprovalSummary {
                id: "apr_1",
                status: "pending",
                template: "invert",
                requested_by: None,
                source: "chatops",
            },
            ApprovalSummary {
                id: "apr_2",
                status: "pending",
                template: "x",
                requested_by: Some("u9"),
                source: "trigger",
            },
        ];
        assert_eq!(
            approvals(&items, 2),
            "Pending Approvals (2):\n- apr_1 [pending] template=invert by=unknown source=chatops\n- apr_2 [pending] template=x by=u9 source=trigger"
        );
        assert_eq!(approvals_failed("HTTP 403"), "[Error] Failed to list approvals: HTTP 403");
    }

    #[test]
    fn trace_is_cut_at_1000_characters() {
        assert_eq!(trace("p1", "{}"), "Trace p1: {}");
        let long = "é".repeat(1200);
        let text = trace("p1", &long);
        assert!(text.ends_with("..."));
        assert_eq!(text.chars().count(), "Trace p1: ".len() + 1000 + 3);
    }

    #[test]
    fn templates_and_workers_replies() {
        let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../../templates");
        let lib = crate::templates::TemplateLibrary::load(dir).expect("shipped templates");
        let text = templates(&lib.list());
        assert!(text.starts_with("Templates:\n- invert: "), "{text}");
        assert!(
            text.contains("(inputs: width=256, height=256, color=16711680, batch=1, filename_prefix=clawgate)"),
            "{text}"
        );
        assert_eq!(templates(&[]), NO_TEMPLATES);
        let listed = [
            WorkerSummary { name: "a", online: true, queue_remaining: Some(2) },
            WorkerSummary { name: "b", online: false, queue_remaining: None },
        ];
        assert_eq!(workers(&listed), "Workers:\n- a: online, queue 2\n- b: offline");
        assert_eq!(workers(&[]), NO_WORKERS);
    }
}
