//! Exec approvals: a human's yes before a command runs on a node, and the policy that decides
//! when one is needed (upstream's `exec-approvals.json`: security mode, ask mode, allowlists).
//!
//! One approvals engine: an exec approval is a row of the same store table as the ComfyUI and
//! plugin approvals (kind [`EXEC_KIND`]), with the same expiry rule and the same "decided once"
//! guarantee; waiters re-read the store, so a decision made after a restart, from another
//! connection or by another gateway on the same database is seen. The policy is one JSON
//! document in the store, written only over the hash it was read at; a node may have its own
//! (`exec.approvals.node.*`, upstream keeps one per node host), which then decides for commands
//! on that node instead of the gateway's ([`PolicyOf`]).
//!
//! Grants: an allow-always adds an allowlist entry (`source: "allow-always"`, with an id,
//! `commandText` and `lastUsedAt`, updated each time it lets a command run) to the document that
//! decided — the node's own or the gateway's. Revoking one is writing the document without it
//! (`exec.approvals.set`/`exec.approvals.node.set`, as `openclaw approvals allowlist remove`
//! does); the next such command asks again.
//!
//! The policy decision ([`verdict`]) and the allowlist matching ([`pattern_matches`]) are pure
//! functions, unit-tested below; [`ExecApprovals`] adds storage and events.

use std::sync::Arc;
use std::time::Duration;

use serde_json::{Map, Value, json};
use sha2::{Digest, Sha256};

use clawgate_protocol::events::names as ev;
use clawgate_protocol::methods::exec_approvals::{
    ExecApprovalEntry, ExecApprovalResolvedEvent, ExecApprovalsSnapshot, ExecResolvedDefaults,
};
use clawgate_store::{ApprovalRecord, ApprovalStatus, ApprovalStore, NewApproval, StoreError};

use crate::agent::tools::NodeCall;
use crate::broadcast::ClientHandle;
use crate::error::CoreError;
use crate::events::Events;
use crate::gateway::Store;
use crate::nodes::NodeService;
use crate::tasks::Tasks;
use crate::time::now_ms;

/// The store kind of an exec approval; its payload is `{request, grant?}`.
pub const EXEC_KIND: &str = "exec";
/// `exec.approval.request` without `timeoutMs` (upstream's 30 minutes).
pub const DEFAULT_TIMEOUT_MS: u64 = 1_800_000;
/// The longest an exec approval stays open (a week): bounds what a caller can ask for.
pub const MAX_TIMEOUT_MS: u64 = 7 * 24 * 3_600_000;
/// How often a waiter re-reads the approval (as the plugin approvals do).
const WAIT_POLL: Duration = Duration::from_millis(150);
/// What `exec.approvals.get` names as the policy's place: it lives in the store, not a file.
pub const POLICY_PATH: &str = "clawgate-store:exec_approval_policy";
/// The same for a node's own policy (followed by `/<nodeId>`).
pub const NODE_POLICY_PATH: &str = "clawgate-store:exec_node_policies";
/// Attempts at adding an allow-always entry when other writers keep changing the policy.
const GRANT_ATTEMPTS: usize = 5;

/// The three decisions, in upstream's words.
pub const DECISIONS: [&str; 3] = ["allow-once", "allow-always", "deny"];

/// Security mode: what may run at all.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Security {
    /// Nothing runs.
    Deny,
    /// Only allowlisted commands run without asking.
    Allowlist,
    /// Everything may run.
    Full,
}

impl Security {
    fn parse(s: &str) -> Option<Self> {
        match s {
            "deny" => Some(Self::Deny),
            "allowlist" => Some(Self::Allowlist),
            "full" => Some(Self::Full),
            _ => None,
        }
    }

    fn as_str(self) -> &'static str {
        match self {
            Self::Deny => "deny",
            Self::Allowlist => "allowlist",
            Self::Full => "full",
        }
    }
}

/// Ask mode: when a human is asked.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Ask {
    /// Never.
    Off,
    /// When the command is not allowlisted.
    OnMiss,
    /// Every time.
    Always,
}

impl Ask {
    fn parse(s: &str) -> Option<Self> {
        match s {
            "off" => Some(Self::Off),
            "on-miss" => Some(Self::OnMiss),
            "always" => Some(Self::Always),
            _ => None,
        }
    }

    fn as_str(self) -> &'static str {
        match self {
            Self::Off => "off",
            Self::OnMiss => "on-miss",
            Self::Always => "always",
        }
    }
}

/// The policy in force for one agent.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Policy {
    /// What may run.
    pub security: Security,
    /// When to ask.
    pub ask: Ask,
    /// What an unanswered ask falls back to.
    pub ask_fallback: Security,
    /// Upstream's skill auto-allow, kept and reported.
    pub auto_allow_skills: bool,
    /// Allowlist patterns (the agent's and the `*` agent's).
    pub allowlist: Vec<String>,
}

/// clawgate's defaults when the policy says nothing: unlike upstream's host default (`full`,
/// `off`: everything runs unasked), a model's command on a node runs only when allowlisted or
/// approved by a human — the secure default the design asks for.
pub const DEFAULT_POLICY: (Security, Ask, Security) = (Security::Allowlist, Ask::OnMiss, Security::Deny);

/// The policy for `agent_id` from a policy document: `defaults`, then `agents.<id>` over it;
/// allowlists of `agents."*"` and `agents.<id>` both apply.
pub fn effective(file: &Value, agent_id: &str) -> Policy {
    let str_at = |v: Option<&Value>, k: &str| v.and_then(|v| v.get(k)).and_then(Value::as_str).map(str::to_owned);
    let defaults = file.get("defaults");
    let agent = file.get("agents").and_then(|a| a.get(agent_id));
    let pick = |k: &str| str_at(agent, k).or_else(|| str_at(defaults, k));
    let security = pick("security").as_deref().and_then(Security::parse).unwrap_or(DEFAULT_POLICY.0);
    let ask = pick("ask").as_deref().and_then(Ask::parse).unwrap_or(DEFAULT_POLICY.1);
    let ask_fallback = pick("askFallback").as_deref().and_then(Security::parse).unwrap_or(DEFAULT_POLICY.2);
    let auto_allow_skills = agent
        .and_then(|a| a.get("autoAllowSkills"))
        .or_else(|| defaults.and_then(|d| d.get("autoAllowSkills")))
        .and_then(Value::as_bool)
        .unwrap_or(false);
    let mut allowlist = Vec::new();
    for key in ["*", agent_id] {
        let entries = file.get("agents").and_then(|a| a.get(key)).and_then(|a| a.get("allowlist"));
        for e in entries.and_then(Value::as_array).into_iter().flatten() {
            if let Some(p) = e.get("pattern").and_then(Value::as_str).filter(|p| !p.trim().is_empty())
                && !allowlist.iter().any(|x| x == p)
            {
                allowlist.push(p.to_owned());
            }
        }
    }
    Policy { security, ask, ask_fallback, auto_allow_skills, allowlist }
}

/// Whether an allowlist pattern covers `subject` (an executable path or name, or a node
/// command name): a glob where `*` is any run of characters and `?` one character. A pattern
/// without `/` also matches the subject's last path component, so `ls` covers `/usr/bin/ls`.
pub fn pattern_matches(pattern: &str, subject: &str) -> bool {
    fn glob(p: &[char], s: &[char]) -> bool {
        // Iterative matcher with one backtrack point: linear for the patterns people write.
        let (mut pi, mut si) = (0, 0);
        let (mut star, mut mark) = (None, 0);
        while si < s.len() {
            if pi < p.len() && (p[pi] == '?' || p[pi] == s[si]) {
                pi += 1;
                si += 1;
            } else if pi < p.len() && p[pi] == '*' {
                star = Some(pi);
                mark = si;
                pi += 1;
            } else if let Some(st) = star {
                pi = st + 1;
                mark += 1;
                si = mark;
            } else {
                return false;
            }
        }
        p[pi..].iter().all(|c| *c == '*')
    }
    let pattern = pattern.trim();
    if pattern.is_empty() {
        return false;
    }
    let p: Vec<char> = pattern.chars().collect();
    if glob(&p, &subject.chars().collect::<Vec<_>>()) {
        return true;
    }
    !pattern.contains('/') && subject.rsplit('/').next().is_some_and(|base| glob(&p, &base.chars().collect::<Vec<_>>()))
}

/// What the policy says about running `subject`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Verdict {
    /// Run it.
    Allow,
    /// Ask a human first.
    Ask,
    /// Refuse; the text says why (for the model).
    Deny(String),
}

/// The policy's answer for `subject`, before any human is asked.
pub fn verdict(policy: &Policy, subject: &str) -> Verdict {
    let listed = policy.allowlist.iter().any(|p| pattern_matches(p, subject));
    match (policy.security, policy.ask) {
        (Security::Deny, _) => Verdict::Deny("exec is disabled by policy (security=deny)".into()),
        (_, Ask::Always) => Verdict::Ask,
        (Security::Full, _) => Verdict::Allow,
        (Security::Allowlist, _) if listed => Verdict::Allow,
        (Security::Allowlist, Ask::OnMiss) => Verdict::Ask,
        (Security::Allowlist, Ask::Off) => Verdict::Deny(format!("{subject} is not on the exec allowlist")),
    }
}

/// What an ask that nobody answered in time comes to, by the policy's `askFallback`.
pub fn fallback(policy: &Policy, subject: &str) -> Verdict {
    let listed = policy.allowlist.iter().any(|p| pattern_matches(p, subject));
    match policy.ask_fallback {
        Security::Full => Verdict::Allow,
        Security::Allowlist if listed => Verdict::Allow,
        _ => Verdict::Deny("the approval request expired unanswered".into()),
    }
}

/// The hash of a policy document (of its canonical JSON text: serde_json keeps maps sorted).
pub fn hash_of(file: &Value) -> String {
    hex::encode(Sha256::digest(file.to_string().as_bytes()))
}

/// The policy document before any was written.
fn empty_file() -> Value {
    json!({"version": 1})
}

/// Upstream's word for a decided approval (`None` while pending or once expired).
pub fn decision_of(a: &ApprovalRecord) -> Option<String> {
    match a.status {
        ApprovalStatus::Approved => Some(a.decision.clone().unwrap_or_else(|| "allow-once".to_owned())),
        ApprovalStatus::Rejected => Some("deny".to_owned()),
        _ => None,
    }
}

/// The stored request of an exec approval (`{}` if the payload has none).
pub fn request_of(a: &ApprovalRecord) -> Value {
    a.payload.get("request").cloned().unwrap_or_else(|| json!({}))
}

/// The decisions the reviewer may choose for a stored request.
pub fn allowed_decisions(request: &Value) -> Vec<String> {
    match request.get("allowedDecisions").and_then(Value::as_array) {
        Some(list) => list.iter().filter_map(Value::as_str).map(str::to_owned).collect(),
        None => DECISIONS.iter().map(|d| (*d).to_owned()).collect(),
    }
}

/// A pending exec approval as listed and announced.
pub fn entry(a: &ApprovalRecord) -> ExecApprovalEntry {
    ExecApprovalEntry {
        id: a.id.clone(),
        request: request_of(a),
        created_at_ms: a.created_at_ms,
        expires_at_ms: a.expires_at_ms,
        approval_kind: "exec",
    }
}

/// Whose policy document: the gateway's, or one node's own.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PolicyOf<'a> {
    /// The gateway's (`exec.approvals.get|set`).
    Gateway,
    /// The node's with this id (`exec.approvals.node.get|set`).
    Node(&'a str),
}

/// The allowlist entry an allow-always adds: for `agent`, `pattern`, in the policy of `node`
/// (its own) or the gateway's (`None`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Grant {
    /// The agent whose allowlist gets it (`*` for all).
    pub agent: String,
    /// The allowlist pattern.
    pub pattern: String,
    /// The node whose own policy decided, if one did.
    pub node: Option<String>,
}

/// Whether `client` may see this exec approval (upstream's `isApprovalRecordVisibleToClient`):
/// an `operator.admin` client sees every one; any other only those it requested (same device,
/// else same connection) and those nobody in particular asked for (the agent's own tool
/// calls). An access token limited to some sessions sees only approvals of those sessions.
pub fn visible_to(a: &ApprovalRecord, client: &ClientHandle) -> bool {
    sees(a.requested_by.as_ref(), &request_of(a), client)
}

/// [`visible_to`] from the parts of the approval it reads: who asked (`requested_by`) and the
/// request (its `sessionKey`). An event relayed from another gateway carries just these.
pub fn sees(requested_by: Option<&Value>, request: &Value, client: &ClientHandle) -> bool {
    if let Some(access) = client.access().filter(|a| a.restricts_sessions())
        && !request.get("sessionKey").and_then(Value::as_str).is_some_and(|k| access.allows_session(k))
    {
        return false;
    }
    if client.scopes.iter().any(|s| s == clawgate_protocol::scopes::ADMIN) {
        return true;
    }
    let field = |k: &str| requester_field(requested_by, k);
    if let Some(device) = field("deviceId") {
        return client.device_id.as_deref() == Some(device);
    }
    if let Some(conn) = field("connId") {
        return client.conn_id == conn;
    }
    field("client").is_none()
}

/// Whether `client` hears an exec approval event: it [`sees`] the approval, and, when
/// `skip_requester`, it is not the connection that asked (as upstream, the requester's
/// connection is not told of its own request).
pub fn hears(requested_by: Option<&Value>, request: &Value, skip_requester: bool, client: &ClientHandle) -> bool {
    sees(requested_by, request, client)
        && !(skip_requester && requester_field(requested_by, "connId") == Some(client.conn_id.as_str()))
}

/// A non-empty text field of who asked for the approval.
fn requester_field<'a>(requested_by: Option<&'a Value>, key: &str) -> Option<&'a str> {
    requested_by?.get(key).and_then(Value::as_str).map(str::trim).filter(|s| !s.is_empty())
}

/// Whether `client` is one to review this approval: it may see it and did not ask for it on
/// this connection.
fn reviews(a: &ApprovalRecord, client: &ClientHandle) -> bool {
    hears(a.requested_by.as_ref(), &request_of(a), true, client)
}

/// A new exec approval: the request as reviewers see it, and the allowlist entry an
/// allow-always adds.
#[derive(Debug, Clone, PartialEq)]
pub struct NewExecApproval {
    /// The caller's id, or `None` for a fresh one.
    pub id: Option<String>,
    /// The stored request (`command`, `nodeId`, `agentId`, `allowedDecisions`, …).
    pub request: Map<String, Value>,
    /// What allow-always adds to an allowlist.
    pub grant: Option<Grant>,
    /// How long it stays open.
    pub timeout_ms: u64,
    /// Who asked (`{client, connId}` or `{agentId, sessionKey, runId}`).
    pub requested_by: Value,
}

/// The outcome of [`ExecApprovals::resolve`].
#[derive(Debug, Clone, PartialEq)]
pub enum Resolved {
    /// This call decided it.
    Applied(ApprovalRecord),
    /// It had already been decided (or had expired): the record as it stands.
    AlreadyDecided(ApprovalRecord),
    /// No exec approval with this id.
    NotFound,
}

/// Exec approvals and their policy. Cheap to clone.
#[derive(Clone)]
pub struct ExecApprovals {
    inner: Arc<Inner>,
}

struct Inner {
    store: Store,
    events: Events,
    tasks: Tasks,
}

impl std::fmt::Debug for ExecApprovals {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ExecApprovals").finish_non_exhaustive()
    }
}

impl ExecApprovals {
    /// Built by `Gateway::new` with the store, the events and the task tracker (whose shutdown
    /// ends waits).
    pub fn new(store: Store, events: Events, tasks: Tasks) -> Self {
        Self { inner: Arc::new(Inner { store, events, tasks }) }
    }

    /// Stores a pending exec approval and tells approval operators (`exec.approval.requested`).
    /// An id already used is `INVALID_REQUEST "approval id already pending"`.
    pub async fn create(&self, new: NewExecApproval) -> Result<ApprovalRecord, CoreError> {
        let now = now_ms();
        let id = new.id.unwrap_or_else(|| uuid::Uuid::new_v4().to_string());
        let mut payload = json!({"request": Value::Object(new.request)});
        if let Some(g) = new.grant {
            payload["grant"] = json!({"agentId": g.agent, "pattern": g.pattern});
            if let Some(node) = g.node {
                payload["grant"]["nodeId"] = json!(node);
            }
        }
        let approval = NewApproval {
            id,
            kind: EXEC_KIND.into(),
            payload,
            requested_by: Some(new.requested_by),
            expires_at_ms: now + new.timeout_ms.min(MAX_TIMEOUT_MS) as i64,
        };
        let record = match self.inner.store.create_approval(&approval, now).await {
            Ok(r) => r,
            Err(StoreError::Conflict(_)) => return Err(CoreError::invalid("approval id already pending")),
            Err(e) => return Err(e.into()),
        };
        let event = serde_json::to_value(entry(&record)).map_err(CoreError::internal)?;
        let request = request_of(&record);
        self.inner.events.exec_approval(
            ev::EXEC_APPROVAL_REQUESTED,
            record.requested_by.as_ref(),
            &request,
            true,
            &event,
        );
        Ok(record)
    }

    /// How many clients were told of this new approval: connected operators holding
    /// `operator.approvals` who may see it, its requester's own connection aside.
    pub fn approval_clients(&self, a: &ApprovalRecord) -> usize {
        let clients = self.inner.events.clients().clients();
        clients.iter().filter(|c| c.has_scope(clawgate_protocol::scopes::APPROVALS) && reviews(a, c)).count()
    }

    /// The exec approval with this id as of now (`None` if unknown or of another kind).
    pub async fn get(&self, id: &str) -> Result<Option<ApprovalRecord>, CoreError> {
        Ok(self.inner.store.get_approval(id, now_ms()).await?.filter(|a| a.kind == EXEC_KIND))
    }

    /// Pending exec approvals, newest first.
    pub async fn pending(&self) -> Result<Vec<ApprovalRecord>, CoreError> {
        let list = self.inner.store.list_approvals(Some(ApprovalStatus::Pending), now_ms()).await?;
        Ok(list.into_iter().filter(|a| a.kind == EXEC_KIND).collect())
    }

    /// Re-reads the approval until it is decided, expires, `deadline_ms` passes or the gateway
    /// stops; the last record read (`None` if it vanished).
    pub async fn wait(&self, id: &str, deadline_ms: i64) -> Result<Option<ApprovalRecord>, CoreError> {
        let shutdown = self.inner.tasks.token();
        loop {
            let Some(a) = self.get(id).await? else { return Ok(None) };
            let left = deadline_ms.min(a.expires_at_ms) - now_ms();
            if a.status != ApprovalStatus::Pending || left <= 0 {
                return Ok(Some(a));
            }
            let nap = WAIT_POLL.min(Duration::from_millis(left as u64));
            tokio::select! {
                () = shutdown.cancelled() => return Ok(Some(a)),
                () = tokio::time::sleep(nap) => {}
            }
        }
    }

    /// Decides a pending exec approval once. `allow-always` also adds its allowlist entry;
    /// operators hear `exec.approval.resolved`.
    pub async fn resolve(
        &self,
        id: &str,
        decision: &str,
        resolved_by: &str,
        reason: Option<&str>,
    ) -> Result<Resolved, CoreError> {
        let Some(current) = self.get(id).await? else { return Ok(Resolved::NotFound) };
        if current.status != ApprovalStatus::Pending {
            return Ok(Resolved::AlreadyDecided(current));
        }
        let Some(done) = self.inner.store.resolve_approval(id, decision, resolved_by, reason, now_ms()).await? else {
            // Raced: another resolver or the expiry got there first.
            return Ok(match self.get(id).await? {
                Some(a) => Resolved::AlreadyDecided(a),
                None => Resolved::NotFound,
            });
        };
        if decision == "allow-always"
            && let Some(grant) = done.payload.get("grant")
        {
            let agent = grant.get("agentId").and_then(Value::as_str).unwrap_or("*");
            let pattern = grant.get("pattern").and_then(Value::as_str).unwrap_or_default();
            let target = match grant.get("nodeId").and_then(Value::as_str) {
                Some(node) => PolicyOf::Node(node),
                None => PolicyOf::Gateway,
            };
            let command = request_of(&done).get("command").and_then(Value::as_str).map(str::to_owned);
            if !pattern.is_empty() {
                self.add_allowlist_entry(target, agent, pattern, command.as_deref()).await?;
            }
        }
        let event = ExecApprovalResolvedEvent {
            id: done.id.clone(),
            decision: decision_of(&done),
            resolved_by: done.decided_by.clone(),
            ts: done.decided_at_ms.unwrap_or_else(now_ms),
            request: request_of(&done),
        };
        let event = serde_json::to_value(event).map_err(CoreError::internal)?;
        let request = request_of(&done);
        self.inner.events.exec_approval(
            ev::EXEC_APPROVAL_RESOLVED,
            done.requested_by.as_ref(),
            &request,
            false,
            &event,
        );
        Ok(Resolved::Applied(done))
    }

    /// A policy document, its hash and whether one was ever written.
    pub async fn policy_file(&self, of: PolicyOf<'_>) -> Result<(Value, String, bool), CoreError> {
        let stored = match of {
            PolicyOf::Gateway => self.inner.store.exec_policy().await?,
            PolicyOf::Node(node) => self.inner.store.exec_node_policy(node).await?,
        };
        Ok(match stored {
            Some(p) => (p.file, p.hash, true),
            None => {
                let file = empty_file();
                let hash = hash_of(&file);
                (file, hash, false)
            }
        })
    }

    /// Writes a policy document if the stored one is still at `base` (`None`: none stored).
    async fn swap(&self, of: PolicyOf<'_>, base: Option<&str>, file: &Value, hash: &str) -> Result<bool, CoreError> {
        Ok(match of {
            PolicyOf::Gateway => self.inner.store.swap_exec_policy(base, file, hash, now_ms()).await?,
            PolicyOf::Node(node) => self.inner.store.swap_exec_node_policy(node, base, file, hash, now_ms()).await?,
        })
    }

    /// The document that decides for commands on `node`: its own policy once one is set, else
    /// the gateway's; with its hash and which it is.
    pub async fn policy_in_force<'a>(&self, node: &'a str) -> Result<(Value, String, PolicyOf<'a>), CoreError> {
        let (file, hash, exists) = self.policy_file(PolicyOf::Node(node)).await?;
        if exists {
            return Ok((file, hash, PolicyOf::Node(node)));
        }
        let (file, hash, _) = self.policy_file(PolicyOf::Gateway).await?;
        Ok((file, hash, PolicyOf::Gateway))
    }

    /// `exec.approvals.get`'s (or `exec.approvals.node.get`'s) snapshot.
    pub async fn snapshot(&self, of: PolicyOf<'_>) -> Result<ExecApprovalsSnapshot, CoreError> {
        let (file, hash, exists) = self.policy_file(of).await?;
        Ok(snapshot_of(of, file, hash, exists))
    }

    /// Replaces a policy document if it is still at `base_hash` (upstream's rules: once a
    /// policy exists the base hash is required; a stale one is refused).
    pub async fn set_policy(
        &self,
        of: PolicyOf<'_>,
        file: Value,
        base_hash: Option<&str>,
    ) -> Result<ExecApprovalsSnapshot, CoreError> {
        const CHANGED: &str = "exec approvals changed since last load; re-run exec.approvals.get and retry";
        let (_, hash, exists) = self.policy_file(of).await?;
        let base = match (exists, base_hash) {
            (false, Some(b)) if b != hash => return Err(CoreError::invalid(CHANGED)),
            (false, _) => None,
            (true, None) => {
                return Err(CoreError::invalid(
                    "exec approvals base hash required; re-run exec.approvals.get and retry",
                ));
            }
            (true, Some(b)) if b != hash => return Err(CoreError::invalid(CHANGED)),
            (true, Some(b)) => Some(b),
        };
        let new_hash = hash_of(&file);
        if !self.swap(of, base, &file, &new_hash).await? {
            return Err(CoreError::invalid(CHANGED));
        }
        Ok(snapshot_of(of, file, new_hash, true))
    }

    /// Adds `pattern` to an agent's allowlist (`source: "allow-always"`), unless present;
    /// retried over concurrent writers.
    async fn add_allowlist_entry(
        &self,
        of: PolicyOf<'_>,
        agent: &str,
        pattern: &str,
        command: Option<&str>,
    ) -> Result<(), CoreError> {
        for _ in 0..GRANT_ATTEMPTS {
            let (mut file, hash, exists) = self.policy_file(of).await?;
            if !with_allowlist_entry(&mut file, agent, pattern, command, now_ms()) {
                return Ok(());
            }
            let new_hash = hash_of(&file);
            if self.swap(of, exists.then_some(hash.as_str()), &file, &new_hash).await? {
                return Ok(());
            }
        }
        Err(CoreError::Unavailable("exec approvals policy is changing too often; retry".into()))
    }

    /// Notes on the allowlist entry that let `subject` run when it was used last
    /// (`lastUsedAt`, `lastUsedCommand`), so operators see which grants are alive. Best effort:
    /// one write over the hash read with the policy; a concurrent edit wins and this use goes
    /// unrecorded.
    async fn record_use(&self, of: PolicyOf<'_>, mut file: Value, hash: &str, agent: &str, subject: &str, text: &str) {
        if !with_use_recorded(&mut file, agent, subject, text, now_ms()) {
            return;
        }
        let new_hash = hash_of(&file);
        if let Err(e) = self.swap(of, Some(hash), &file, &new_hash).await {
            tracing::warn!(error = %e, "exec approvals: recording an allowlist entry's use failed");
        }
    }
}

/// What a node command is, for the policy and the reviewer: `(subject, command text, argv)`.
/// `system.run` is judged by its executable (`params.command[0]`) and shown as its argv; any
/// other command by its name, shown with its params.
pub fn node_subject(command: &str, params: Option<&Value>) -> (String, String, Vec<String>) {
    if command == "system.run" {
        let argv: Vec<String> = params
            .and_then(|p| p.get("command"))
            .and_then(Value::as_array)
            .map(|a| a.iter().filter_map(Value::as_str).map(str::to_owned).collect())
            .unwrap_or_default();
        let raw = params.and_then(|p| p.get("rawCommand")).and_then(Value::as_str).map(str::to_owned);
        let text = raw.unwrap_or_else(|| argv.join(" "));
        let subject = argv.first().cloned().unwrap_or_else(|| text.split_whitespace().next().unwrap_or("").to_owned());
        return (subject, text, argv);
    }
    let text = match params {
        Some(p) if !p.is_null() => format!("{command} {p}"),
        _ => command.to_owned(),
    };
    (command.to_owned(), text, Vec::new())
}

impl ExecApprovals {
    /// The agent's `node_invoke` tool: the policy decides; when it asks, an exec approval is
    /// created and waited for (until decided or expired: then `askFallback` decides); then the
    /// node runs the command through [`NodeService::invoke`]. Errors are text for the model.
    pub async fn guarded_node_invoke(&self, nodes: &NodeService, call: NodeCall) -> Result<Value, String> {
        let node = nodes
            .list()
            .into_iter()
            .find(|n| n.node_id == call.node || n.display_name.as_deref() == Some(call.node.as_str()))
            .ok_or_else(|| format!("unknown node: {}", call.node))?;
        let (subject, command_text, argv) = node_subject(&call.command, call.params.as_ref());
        if subject.is_empty() {
            return Err("system.run needs params.command, the argv to run".into());
        }
        let (file, hash, of) = self.policy_in_force(&node.node_id).await.map_err(|e| e.to_string())?;
        let policy = effective(&file, &call.agent_id);
        let mut decision = None;
        match verdict(&policy, &subject) {
            Verdict::Allow => self.record_use(of, file, &hash, &call.agent_id, &subject, &command_text).await,
            Verdict::Deny(why) => return Err(format!("denied: {why}")),
            Verdict::Ask => {
                let mut request = Map::new();
                request.insert("command".into(), json!(command_text));
                if !argv.is_empty() {
                    request.insert("commandArgv".into(), json!(argv));
                }
                request.insert("host".into(), json!("node"));
                request.insert("nodeId".into(), json!(node.node_id));
                request.insert("nodeCommand".into(), json!(call.command));
                request.insert("agentId".into(), json!(call.agent_id));
                request.insert("sessionKey".into(), json!(call.session_key));
                request.insert("runId".into(), json!(call.run_id));
                request.insert("toolCallId".into(), json!(call.tool_call_id));
                request.insert("security".into(), json!(policy.security.as_str()));
                request.insert("ask".into(), json!(policy.ask.as_str()));
                request.insert("allowedDecisions".into(), json!(DECISIONS));
                let new = NewExecApproval {
                    id: None,
                    request,
                    grant: Some(Grant {
                        agent: call.agent_id.clone(),
                        pattern: subject.clone(),
                        node: match of {
                            PolicyOf::Node(n) => Some(n.to_owned()),
                            PolicyOf::Gateway => None,
                        },
                    }),
                    timeout_ms: DEFAULT_TIMEOUT_MS,
                    requested_by: json!({"agentId": call.agent_id, "sessionKey": call.session_key,
                                         "runId": call.run_id}),
                };
                let record = self.create(new).await.map_err(|e| e.to_string())?;
                let last = self.wait(&record.id, record.expires_at_ms).await.map_err(|e| e.to_string())?;
                let last = last.unwrap_or(record);
                match last.status {
                    ApprovalStatus::Approved => decision = decision_of(&last),
                    ApprovalStatus::Rejected => {
                        return Err(format!(
                            "denied: the operator denied exec approval {} for `{command_text}` on node {}",
                            last.id, node.node_id
                        ));
                    }
                    ApprovalStatus::Pending if self.inner.tasks.token().is_cancelled() => {
                        return Err("the gateway is stopping; the command did not run".into());
                    }
                    _ => match fallback(&policy, &subject) {
                        Verdict::Allow => {}
                        _ => {
                            return Err(format!(
                                "denied: exec approval {} expired unanswered (askFallback {})",
                                last.id,
                                policy.ask_fallback.as_str()
                            ));
                        }
                    },
                }
            }
        }
        let mut params = call.params.clone();
        // The node host checks its own policy too; tell it a human approved, as upstream does.
        if call.command == "system.run"
            && let (Some(Value::Object(p)), Some(d)) = (params.as_mut(), decision.as_deref())
        {
            p.insert("approved".into(), json!(true));
            p.insert("approvalDecision".into(), json!(d));
        }
        let key = uuid::Uuid::new_v4().to_string();
        let result = nodes
            .invoke(&node.node_id, &call.command, params.as_ref(), call.timeout_ms, &key)
            .await
            .map_err(|e| format!("node {} could not run {}: {e}", node.node_id, call.command))?;
        Ok(json!({"ok": true, "nodeId": result.node_id, "command": result.command, "payload": result.payload,
                  "approval": decision}))
    }
}

/// Adds an allow-always entry to a policy document; `false` if the pattern was already there.
pub fn with_allowlist_entry(file: &mut Value, agent: &str, pattern: &str, command: Option<&str>, now: i64) -> bool {
    if !file.is_object() {
        *file = empty_file();
    }
    let agents = file.as_object_mut().map(|o| o.entry("agents").or_insert_with(|| json!({})));
    let Some(agents) = agents.and_then(Value::as_object_mut) else { return false };
    let slot = agents.entry(agent.to_owned()).or_insert_with(|| json!({}));
    if !slot.is_object() {
        *slot = json!({});
    }
    let list = slot.as_object_mut().map(|o| o.entry("allowlist").or_insert_with(|| json!([])));
    let Some(list) = list.and_then(Value::as_array_mut) else { return false };
    if list.iter().any(|e| e.get("pattern").and_then(Value::as_str) == Some(pattern)) {
        return false;
    }
    let mut e = json!({"id": uuid::Uuid::new_v4().to_string(), "pattern": pattern, "source": "allow-always",
                       "lastUsedAt": now});
    if let Some(c) = command {
        e["commandText"] = json!(c);
    }
    list.push(e);
    true
}

/// Marks the allowlist entry that covers `subject` for `agent` (its own list first, then `*`'s)
/// as used now for `command`; `false` if no entry covers it.
pub fn with_use_recorded(file: &mut Value, agent: &str, subject: &str, command: &str, now: i64) -> bool {
    for key in [agent, "*"] {
        let list = file.get_mut("agents").and_then(|a| a.get_mut(key)).and_then(|a| a.get_mut("allowlist"));
        let Some(list) = list.and_then(Value::as_array_mut) else { continue };
        let hit = list.iter_mut().find(|e| {
            e.get("pattern")
                .and_then(Value::as_str)
                .is_some_and(|p| !p.trim().is_empty() && pattern_matches(p, subject))
        });
        if let Some(Value::Object(entry)) = hit {
            entry.insert("lastUsedAt".into(), json!(now));
            entry.insert("lastUsedCommand".into(), json!(command));
            return true;
        }
    }
    false
}

fn snapshot_of(of: PolicyOf<'_>, file: Value, hash: String, exists: bool) -> ExecApprovalsSnapshot {
    let d = effective(&file, "\u{0}defaults");
    ExecApprovalsSnapshot {
        path: match of {
            PolicyOf::Gateway => POLICY_PATH.to_owned(),
            PolicyOf::Node(node) => format!("{NODE_POLICY_PATH}/{node}"),
        },
        exists,
        hash,
        file,
        resolved_defaults: ExecResolvedDefaults {
            security: d.security.as_str().to_owned(),
            ask: d.ask.as_str().to_owned(),
            ask_fallback: d.ask_fallback.as_str().to_owned(),
            auto_allow_skills: d.auto_allow_skills,
        },
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn policy(security: Security, ask: Ask, allow: &[&str]) -> Policy {
        Policy {
            security,
            ask,
            ask_fallback: Security::Deny,
            auto_allow_skills: false,
            allowlist: allow.iter().map(|s| (*s).to_owned()).collect(),
        }
    }

    #[test]
    fn patterns_are_globs_and_bare_names_match_basenames() {
        assert!(pattern_matches("ls", "/usr/bin/ls"));
        assert!(pattern_matches("/usr/bin/*", "/usr/bin/ls"));
        assert!(!pattern_matches("/usr/bin/*", "/bin/ls"));
        assert!(pattern_matches("system.wh?ch", "system.which"));
        assert!(pattern_matches("git*", "git-upload-pack"));
        assert!(!pattern_matches("ls", "lsblk"));
        assert!(!pattern_matches("  ", "x"));
        assert!(pattern_matches("a*b*c", "aXbYc"));
        assert!(!pattern_matches("a*b*c", "aXbY"));
    }

    #[test]
    fn the_policy_decides_allow_ask_or_deny() {
        assert_eq!(verdict(&policy(Security::Allowlist, Ask::OnMiss, &["ls"]), "/bin/ls"), Verdict::Allow);
        assert_eq!(verdict(&policy(Security::Allowlist, Ask::OnMiss, &[]), "rm"), Verdict::Ask);
        assert_eq!(verdict(&policy(Security::Allowlist, Ask::Always, &["rm"]), "rm"), Verdict::Ask);
        assert!(matches!(verdict(&policy(Security::Allowlist, Ask::Off, &[]), "rm"), Verdict::Deny(_)));
        assert_eq!(verdict(&policy(Security::Full, Ask::OnMiss, &[]), "rm"), Verdict::Allow);
        assert!(matches!(verdict(&policy(Security::Deny, Ask::Always, &["rm"]), "rm"), Verdict::Deny(_)));
        let mut full_fallback = policy(Security::Allowlist, Ask::OnMiss, &[]);
        assert!(matches!(fallback(&full_fallback, "rm"), Verdict::Deny(_)));
        full_fallback.ask_fallback = Security::Full;
        assert_eq!(fallback(&full_fallback, "rm"), Verdict::Allow);
    }

    #[test]
    fn agent_settings_override_defaults_and_allowlists_add_up() {
        let file = json!({"version": 1, "defaults": {"security": "full", "ask": "off"},
            "agents": {"main": {"ask": "always", "allowlist": [{"pattern": "ls"}]},
                       "*": {"allowlist": [{"pattern": "cat"}, {"pattern": "ls"}]}}});
        let main = effective(&file, "main");
        assert_eq!((main.security, main.ask, main.ask_fallback), (Security::Full, Ask::Always, Security::Deny));
        assert_eq!(main.allowlist, vec!["cat".to_owned(), "ls".to_owned()]);
        let other = effective(&file, "other");
        assert_eq!((other.security, other.ask), (Security::Full, Ask::Off));
        let empty = effective(&json!({"version": 1}), "main");
        assert_eq!((empty.security, empty.ask, empty.ask_fallback), DEFAULT_POLICY);
        let junk = effective(&json!({"defaults": {"security": "yolo"}}), "main");
        assert_eq!(junk.security, DEFAULT_POLICY.0, "an unknown mode reads as the default");
    }

    #[test]
    fn allow_always_adds_one_entry_per_pattern() {
        let mut file = json!({"version": 1});
        assert!(with_allowlist_entry(&mut file, "main", "system.which", Some("system.which sh"), 5));
        assert!(!with_allowlist_entry(&mut file, "main", "system.which", None, 6));
        let list = &file["agents"]["main"]["allowlist"];
        assert_eq!(list.as_array().map(Vec::len), Some(1));
        assert_eq!(list[0]["source"], "allow-always");
        assert_eq!(list[0]["commandText"], "system.which sh");
        assert_eq!(effective(&file, "main").allowlist, vec!["system.which".to_owned()]);
        assert_ne!(hash_of(&file), hash_of(&json!({"version": 1})));
    }

    #[test]
    fn a_use_is_noted_on_the_entry_that_allowed_it() {
        let mut file = json!({"version": 1, "agents": {
            "main": {"allowlist": [{"id": "a", "pattern": "/usr/bin/*"}]},
            "*": {"allowlist": [{"id": "b", "pattern": "system.which"}]}}});
        assert!(with_use_recorded(&mut file, "main", "system.which", "system.which sh", 7));
        let all = &file["agents"]["*"]["allowlist"][0];
        assert_eq!((all["lastUsedAt"].as_i64(), all["lastUsedCommand"].as_str()), (Some(7), Some("system.which sh")));
        assert!(file["agents"]["main"]["allowlist"][0].get("lastUsedAt").is_none());
        assert!(with_use_recorded(&mut file, "main", "/usr/bin/ls", "/usr/bin/ls -l", 8));
        assert_eq!(file["agents"]["main"]["allowlist"][0]["lastUsedAt"], 8);
        assert!(!with_use_recorded(&mut file, "main", "rm", "rm -rf /", 9), "nothing covers rm");
        assert!(!with_use_recorded(&mut json!({"version": 1}), "main", "ls", "ls", 9));
    }

    #[test]
    fn system_run_is_judged_by_its_executable_and_others_by_name() {
        let (subject, text, argv) = node_subject("system.run", Some(&json!({"command": ["/bin/echo", "hi"]})));
        assert_eq!((subject.as_str(), text.as_str(), argv.len()), ("/bin/echo", "/bin/echo hi", 2));
        let (subject, text, argv) = node_subject("system.which", Some(&json!({"bins": ["sh"]})));
        assert_eq!((subject.as_str(), text.as_str()), ("system.which", r#"system.which {"bins":["sh"]}"#));
        assert!(argv.is_empty());
        assert_eq!(node_subject("system.run", None).0, "");
    }
}
