//! Records of ComfyUI work: jobs and the operator approvals that may hold them. Plain data: no
//! I/O, no policy.

use serde_json::Value;

stored_enum! {
    /// Where a ComfyUI job stands. See [`crate::JobStore`] for the allowed transitions.
    JobStatus ("job status") {
        /// Held until an operator decides its approval ([`crate::JobStore::release_approval`]).
        AwaitingApproval => "awaiting_approval",
        /// Waiting for a worker, in `seq` order.
        Queued => "queued",
        /// Claimed by a worker, not yet accepted by ComfyUI.
        Dispatched => "dispatched",
        /// ComfyUI accepted the prompt (`prompt_id`) and is executing it.
        Running => "running",
        /// Finished with `outputs`. Terminal.
        Completed => "completed",
        /// Given up on (`error` says why). Terminal.
        Failed => "failed",
        /// Cancelled by a user, or its approval was rejected. Terminal.
        Cancelled => "cancelled",
    }
}

impl JobStatus {
    /// Every status, in the order of the state machine.
    pub const ALL: [JobStatus; 7] = [
        JobStatus::AwaitingApproval,
        JobStatus::Queued,
        JobStatus::Dispatched,
        JobStatus::Running,
        JobStatus::Completed,
        JobStatus::Failed,
        JobStatus::Cancelled,
    ];

    /// Whether no transition leads out of this status.
    pub fn is_terminal(self) -> bool {
        matches!(self, JobStatus::Completed | JobStatus::Failed | JobStatus::Cancelled)
    }

    /// Whether a worker holds the job (dispatched or running).
    pub fn is_active(self) -> bool {
        matches!(self, JobStatus::Dispatched | JobStatus::Running)
    }
}

/// A job to insert.
#[derive(Debug, Clone, PartialEq)]
pub struct NewJob {
    /// Stable, caller-generated id (`job_<uuid>`), unique among all jobs.
    pub id: String,
    /// The template it was rendered from.
    pub template_id: String,
    /// The inputs the template was rendered with, as the user gave them.
    pub inputs: Value,
    /// The rendered ComfyUI workflow (API format), ready to submit.
    pub workflow: Value,
    /// Where the outputs go (`{channel, account, chatId, threadId, inboxId}`).
    pub deliver_to: Option<Value>,
    /// Who asked (connection, device, channel sender), for audit and approvals.
    pub requested_by: Option<Value>,
    /// The approval that holds it, if any.
    pub approval_id: Option<String>,
    /// How many dispatches are tried before [`crate::JobStore::requeue_job`] gives up; at
    /// least 1.
    pub max_attempts: i64,
    /// [`JobStatus::Queued`], or [`JobStatus::AwaitingApproval`] to hold it; nothing else.
    pub status: JobStatus,
}

/// A ComfyUI job as stored.
#[derive(Debug, Clone, PartialEq, sqlx::FromRow)]
pub struct JobRecord {
    /// The caller's id.
    pub id: String,
    /// The template it was rendered from.
    pub template_id: String,
    /// The inputs the template was rendered with.
    pub inputs: Value,
    /// The rendered workflow.
    pub workflow: Value,
    /// Where it stands.
    pub status: JobStatus,
    /// The worker that holds (or last held) it. Cleared when it is requeued.
    pub worker: Option<String>,
    /// ComfyUI's id of the submitted prompt, so a restarted gateway can find it again.
    /// Cleared when it is requeued.
    pub prompt_id: Option<String>,
    /// Dispatches so far (each claim counts one).
    pub attempts: i64,
    /// Dispatches allowed before requeueing turns into failing.
    pub max_attempts: i64,
    /// The last failure (kept across a requeue so a retried job shows why).
    pub error: Option<String>,
    /// What the job produced, a JSON array (empty until completed).
    pub outputs: Value,
    /// Where the outputs go.
    pub deliver_to: Option<Value>,
    /// Who asked.
    pub requested_by: Option<Value>,
    /// The approval that held it.
    pub approval_id: Option<String>,
    /// The latest progress report of the current attempt (opaque to the store).
    pub progress: Option<Value>,
    /// When it was inserted.
    pub created_at_ms: i64,
    /// Last change.
    pub updated_at_ms: i64,
    /// When ComfyUI started executing the current attempt.
    pub started_at_ms: Option<i64>,
    /// When it reached a terminal status.
    pub ended_at_ms: Option<i64>,
    /// Store-assigned enqueue order, ascending and never reused. A requeued job keeps its seq,
    /// and so its place in the queue.
    pub seq: i64,
}

/// Which jobs [`crate::JobStore::list_jobs`] returns.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct JobQuery {
    /// Only jobs with one of these statuses; every status if empty.
    pub statuses: Vec<JobStatus>,
    /// At most this many.
    pub limit: u32,
    /// Only jobs with a smaller seq (paging backwards from the last page's oldest job).
    pub before_seq: Option<i64>,
}

stored_enum! {
    /// Where an operator approval stands.
    ApprovalStatus ("approval status") {
        /// Waiting for an operator, until `expires_at_ms`.
        Pending => "pending",
        /// An operator allowed it.
        Approved => "approved",
        /// An operator refused it (`reason` may say why).
        Rejected => "rejected",
        /// Nobody decided in time.
        Expired => "expired",
    }
}

/// An approval to create.
#[derive(Debug, Clone, PartialEq)]
pub struct NewApproval {
    /// Caller-generated id, unique among all approvals, so the held job can name it before
    /// either is written.
    pub id: String,
    /// What is to be approved (`comfy.run`).
    pub kind: String,
    /// What the operator is shown (template, inputs, …). Opaque to the store.
    pub payload: Value,
    /// Who asked.
    pub requested_by: Option<Value>,
    /// Undecided at this moment, it is expired.
    pub expires_at_ms: i64,
}

/// An operator approval as stored.
#[derive(Debug, Clone, PartialEq, sqlx::FromRow)]
pub struct ApprovalRecord {
    /// The caller's id.
    pub id: String,
    /// What is to be approved.
    pub kind: String,
    /// What the operator is shown.
    pub payload: Value,
    /// Who asked.
    pub requested_by: Option<Value>,
    /// Where it stands. A pending approval read at or after `expires_at_ms` is reported
    /// [`ApprovalStatus::Expired`] even before [`crate::ApprovalStore::expire_approvals`]
    /// writes that down.
    pub status: ApprovalStatus,
    /// Why it was decided so (typically a rejection's reason).
    pub reason: Option<String>,
    /// Who decided.
    pub decided_by: Option<String>,
    /// When it was requested.
    pub created_at_ms: i64,
    /// Undecided at this moment, it is expired.
    pub expires_at_ms: i64,
    /// When it was approved or rejected.
    pub decided_at_ms: Option<i64>,
    /// Upstream's word for the decision (`allow-once`, `allow-always`, `deny`) when it was
    /// made with one ([`crate::ApprovalStore::resolve_approval`]); `None` for approvals decided
    /// yes/no ([`crate::ApprovalStore::decide_approval`]) and undecided ones.
    #[sqlx(default)]
    pub decision: Option<String>,
}

/// The exec approvals policy document (upstream's `exec-approvals.json`) as stored.
#[derive(Debug, Clone, PartialEq)]
pub struct ExecPolicyRecord {
    /// The document (`{version: 1, defaults?, agents?}`). Opaque to the store.
    pub file: Value,
    /// Its hash, as the writer computed it; the next write names it as its base.
    pub hash: String,
    /// When it was written.
    pub updated_at_ms: i64,
}
