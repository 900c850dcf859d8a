//! Agent runs: a durable lane per session (one run at a time, later messages queue in the
//! store and run in order), abort, timeouts, waiters, and recovery after a restart.
//!
//! A run is accepted by writing it to the run queue (idempotent on its run id = the client's
//! idempotency key), then a lane worker for its session claims runs one by one and executes
//! them (`run.rs`). Everything a client sees of a run arrives as `agent`/`chat` events.

pub mod config;
mod run;
pub mod tools;
pub mod transcript;

use std::collections::HashMap;
use std::sync::Arc;

use parking_lot::{Mutex, RwLock};
use std::time::Duration;

use serde::{Deserialize, Serialize};
use serde_json::{Value, json};
use tokio::sync::watch;
use tokio_util::sync::CancellationToken;

use clawgate_llm::ProviderRegistry;
use clawgate_protocol::methods::agent::RunUsage;
use clawgate_store::{EnqueueOutcome, RunKind, RunRecord, RunStatus, RunStore, SessionStore};

use crate::error::CoreError;
use crate::gateway::Gateway;
use crate::time::now_ms;

/// Between tries of a storage write or claim that failed for a reason that clears by itself
/// (full disk, I/O error, busy lock): 100 ms doubling to 5 s.
const STORAGE_BACKOFF: clawgate_backoff::Backoff =
    clawgate_backoff::Backoff::new(Duration::from_millis(100), Duration::from_secs(5));

pub use config::AgentsConfig;

/// What a client asked to run.
#[derive(Debug, Clone)]
pub struct RunRequest {
    /// = the idempotency key.
    pub run_id: String,
    /// `agent:<agentId>:<key>`.
    pub session_key: String,
    /// The agent.
    pub agent_id: String,
    /// The user's message.
    pub message: String,
    /// chat.send, agent or HTTP.
    pub kind: RunKind,
    /// Per-run timeout (defaults to `agents.defaults.timeoutSeconds`).
    pub timeout: Option<Duration>,
    /// Extra system prompt text for this run.
    pub extra_system: Option<String>,
    /// `{id, mode}` of the client that sent it (kept in the transcript).
    pub client: Option<Value>,
}

impl RunRequest {
    /// The stored request; `message` is set by the caller (moved, or cut to an excerpt).
    fn to_json_without_message(&self) -> Value {
        json!({
            "agentId": self.agent_id,
            "timeoutMs": self.timeout.map(|d| d.as_millis() as u64),
            "extraSystemPrompt": self.extra_system,
            "client": self.client,
        })
    }

    /// The request of a claimed run; its message is moved out of the record, not copied.
    fn from_record(r: &mut RunRecord) -> Self {
        let message = match r.request.get_mut("message").map(Value::take) {
            Some(Value::String(m)) => m,
            _ => String::new(),
        };
        let q = &r.request;
        Self {
            run_id: r.run_id.clone(),
            session_key: r.session_key.clone(),
            agent_id: q.get("agentId").and_then(Value::as_str).unwrap_or("main").to_owned(),
            message,
            kind: r.kind,
            timeout: q.get("timeoutMs").and_then(Value::as_u64).map(Duration::from_millis),
            extra_system: q.get("extraSystemPrompt").and_then(Value::as_str).map(str::to_owned),
            client: q.get("client").cloned().filter(|c| !c.is_null()),
        }
    }
}

/// How much of a stateless request's message is stored: HTTP calls without a session (a fresh
/// session per request) keep the whole prompt in memory for their one turn and store only this
/// many bytes of it (its end, where the message to answer is), marked as cut. Closes the class
/// "storage grows with the size of requests nobody can read back": upstream answers such calls
/// without keeping them, and a 20 MB prompt must not become 40 MB of database per request.
pub const STATELESS_STORED_BYTES: usize = 64 * 1024;

/// The stored stand-in for a message longer than `cap`: a note saying so, then the message's
/// last `cap` bytes (cut at a character boundary).
pub fn stored_excerpt(message: &str, cap: usize) -> String {
    if message.len() <= cap {
        return message.to_owned();
    }
    let mut start = message.len() - cap;
    while !message.is_char_boundary(start) {
        start += 1;
    }
    format!(
        "[stateless request: {} bytes, only the last {} are stored]\n{}",
        message.len(),
        message.len() - start,
        &message[start..]
    )
}

/// The answer to a submit.
#[derive(Debug, Clone)]
pub enum Submitted {
    /// A new run was queued.
    Started,
    /// The same run id is queued or running.
    InFlight,
    /// The same run id already finished; here is its record.
    Done(Box<RunRecord>),
}

/// Why a run was cancelled.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum AbortReason {
    /// Someone stopped it (`chat.abort`, `sessions.reset`, an HTTP client that went away).
    #[default]
    Rpc,
    /// Its timeout passed.
    Timeout,
    /// The gateway is stopping.
    Shutdown,
}

impl AbortReason {
    /// The `stopReason` clients see: `timeout`, else `rpc`.
    pub fn stop_reason(self) -> &'static str {
        match self {
            AbortReason::Timeout => "timeout",
            AbortReason::Rpc | AbortReason::Shutdown => "rpc",
        }
    }
}

/// What kind of failure ended a run (`errorKind` of its `chat` `error` event).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ErrorKind {
    /// The provider refused for rate or quota.
    RateLimit,
    /// The context did not fit the model.
    ContextLength,
    /// The provider did not answer in time.
    Timeout,
    /// Anything else.
    #[default]
    #[serde(other)]
    Unknown,
}

impl ErrorKind {
    /// The wire name.
    pub fn as_str(self) -> &'static str {
        match self {
            ErrorKind::RateLimit => "rate_limit",
            ErrorKind::ContextLength => "context_length",
            ErrorKind::Timeout => "timeout",
            ErrorKind::Unknown => "unknown",
        }
    }
}

/// A completed run, as stored with it.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", default)]
pub struct CompletedRun {
    /// The reply.
    pub text: String,
    /// Why the model stopped (`stop`, `length`, …).
    pub stop_reason: String,
    /// Provider id.
    pub provider: String,
    /// Model id.
    pub model: String,
    /// How long the turn took.
    pub duration_ms: u64,
    /// When it ended (ms since the epoch).
    pub ended_at: i64,
    /// The transcript it was written to.
    pub session_id: String,
    /// Tokens used, when the provider said.
    pub usage: Option<RunUsage>,
}

/// An aborted run, as stored with it. A run aborted while still queued never started: it has
/// no provider, model, duration or transcript, and says `queued`.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", default)]
pub struct AbortedRun {
    /// What was streamed before the abort.
    pub text: String,
    /// `timeout` or `rpc` (see [`AbortReason::stop_reason`]).
    pub stop_reason: String,
    /// Why it was cancelled.
    pub reason: AbortReason,
    /// Provider id.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub provider: Option<String>,
    /// Model id.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub model: Option<String>,
    /// How long it ran.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub duration_ms: Option<u64>,
    /// When it ended (ms since the epoch).
    pub ended_at: i64,
    /// The transcript it was written to.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub session_id: Option<String>,
    /// It never left the queue.
    #[serde(skip_serializing_if = "std::ops::Not::not")]
    pub queued: bool,
}

/// A failed run, as stored with it. A run that failed before its turn began (no session, a
/// lost stateless prompt) has only `error` and `errorKind`.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", default)]
pub struct FailedRun {
    /// What went wrong (safe to show).
    pub error: String,
    /// Its kind.
    pub error_kind: ErrorKind,
    /// What was streamed before the failure.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub text: Option<String>,
    /// Provider id.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub provider: Option<String>,
    /// Model id.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub model: Option<String>,
    /// How long it ran.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub duration_ms: Option<u64>,
    /// When it ended (ms since the epoch).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub ended_at: Option<i64>,
    /// The transcript it was written to.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub session_id: Option<String>,
}

/// Where a run stands, and how it ended: what `agent.wait`, the `agent` final response, the HTTP
/// API, channels and cron read. The terminal variants carry the result stored with the run
/// (the JSON in the run record is their serialisation), so no reader decodes it by key.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum RunOutcome {
    /// Waiting in its session's lane.
    Queued,
    /// Executing (or the wait for it ended first).
    Running,
    /// Answered.
    Completed(CompletedRun),
    /// Cancelled.
    Aborted(AbortedRun),
    /// Failed.
    Failed(FailedRun),
    /// Cut short by a gateway restart (nothing was stored of its end).
    Interrupted,
}

impl RunOutcome {
    /// The status stored for this outcome.
    pub fn status(&self) -> RunStatus {
        match self {
            RunOutcome::Queued => RunStatus::Queued,
            RunOutcome::Running => RunStatus::Running,
            RunOutcome::Completed(_) => RunStatus::Completed,
            RunOutcome::Aborted(_) => RunStatus::Aborted,
            RunOutcome::Failed(_) => RunStatus::Failed,
            RunOutcome::Interrupted => RunStatus::Interrupted,
        }
    }

    /// Whether the run is over.
    pub fn is_terminal(&self) -> bool {
        self.status().is_terminal()
    }

    /// What the run produced: the reply, or the partial text of an aborted or failed run.
    pub fn text(&self) -> &str {
        match self {
            RunOutcome::Completed(c) => &c.text,
            RunOutcome::Aborted(a) => &a.text,
            RunOutcome::Failed(f) => f.text.as_deref().unwrap_or_default(),
            RunOutcome::Queued | RunOutcome::Running | RunOutcome::Interrupted => "",
        }
    }

    /// The outcome of a run record (status and stored result). A result that does not decode
    /// (written by hand, or damaged) reads as its status with default facts, and is logged.
    pub fn from_record(rec: &RunRecord) -> Self {
        fn decode<T: serde::de::DeserializeOwned + Default>(run_id: &str, result: Option<&Value>) -> T {
            match result.filter(|r| !r.is_null()).map(|r| T::deserialize(r)) {
                Some(Ok(v)) => v,
                Some(Err(e)) => {
                    tracing::warn!(run = %run_id, error = %e, "stored run result does not decode; reading defaults");
                    T::default()
                }
                None => T::default(),
            }
        }
        let result = rec.result.as_ref();
        match rec.status {
            RunStatus::Queued => RunOutcome::Queued,
            RunStatus::Running => RunOutcome::Running,
            RunStatus::Completed => RunOutcome::Completed(decode(&rec.run_id, result)),
            RunStatus::Aborted => RunOutcome::Aborted(decode(&rec.run_id, result)),
            RunStatus::Failed => RunOutcome::Failed(decode(&rec.run_id, result)),
            RunStatus::Interrupted => RunOutcome::Interrupted,
        }
    }

    /// The result JSON stored with a terminal run (`None` for the others).
    pub fn to_stored(&self) -> Option<Value> {
        let value = match self {
            RunOutcome::Completed(c) => serde_json::to_value(c),
            RunOutcome::Aborted(a) => serde_json::to_value(a),
            RunOutcome::Failed(f) => serde_json::to_value(f),
            RunOutcome::Queued | RunOutcome::Running | RunOutcome::Interrupted => return None,
        };
        // Plain structs of strings and numbers: serialising cannot fail.
        value.ok()
    }
}

/// A run that is queued or executing in this process.
#[derive(Debug)]
struct Active {
    session_key: String,
    cancel: CancellationToken,
    /// Why it was cancelled.
    reason: Mutex<Option<AbortReason>>,
    done: watch::Sender<Option<RunOutcome>>,
}

/// One `agent` or `chat` event of a run, as published in-process (the HTTP API streams from
/// these; WS clients get the same payloads as frames).
#[derive(Debug, Clone)]
pub struct RunEvent {
    /// The run.
    pub run_id: String,
    /// `"agent"` or `"chat"`.
    pub event: &'static str,
    /// The event payload.
    pub payload: Value,
}

/// Agent state of the gateway.
#[derive(Debug)]
pub struct AgentService {
    /// In-process feed of every run event; receivers filter by run id.
    events: tokio::sync::broadcast::Sender<Arc<RunEvent>>,
    registry: RwLock<Arc<ProviderRegistry>>,
    agents: RwLock<Arc<AgentsConfig>>,
    active: Mutex<HashMap<String, Arc<Active>>>,
    /// Sessions with a lane worker; the flag says "new work arrived since the worker last looked".
    lanes: Mutex<HashMap<String, bool>>,
    /// Full messages of queued stateless runs, whose stored message is only an excerpt; taken
    /// by the run when it starts, dropped when a run ends without starting.
    unstored: Mutex<HashMap<String, String>>,
}

impl AgentService {
    /// Build from the decoded config (`agents`, `models`, `session`).
    pub fn from_config(cfg: &clawgate_config::Config, base_dir: &std::path::Path) -> Result<Self, String> {
        Ok(Self {
            events: tokio::sync::broadcast::channel(4096).0,
            registry: RwLock::new(Arc::new(config::registry_from_config(&cfg.models, base_dir)?)),
            agents: RwLock::new(Arc::new(AgentsConfig::from_config(cfg)?)),
            active: Mutex::default(),
            lanes: Mutex::default(),
            unstored: Mutex::default(),
        })
    }

    /// Swap in providers and agents from a new config (hot reload).
    pub fn reload(&self, cfg: &clawgate_config::Config, base_dir: &std::path::Path) -> Result<(), String> {
        let registry = config::registry_from_config(&cfg.models, base_dir)?;
        let agents = AgentsConfig::from_config(cfg)?;
        *self.registry.write() = Arc::new(registry);
        *self.agents.write() = Arc::new(agents);
        Ok(())
    }

    /// Subscribe to every run's events (filter by `run_id`). Subscribe *before* submitting so no
    /// event of the run is missed. A receiver that lags loses events (`RecvError::Lagged`).
    pub fn subscribe(&self) -> tokio::sync::broadcast::Receiver<Arc<RunEvent>> {
        self.events.subscribe()
    }

    pub(crate) fn publish(&self, run_id: &str, event: &'static str, payload: &Value) {
        if self.events.receiver_count() > 0 {
            let _ = self.events.send(Arc::new(RunEvent { run_id: run_id.to_owned(), event, payload: payload.clone() }));
        }
    }

    /// Providers in force.
    pub fn registry(&self) -> Arc<ProviderRegistry> {
        self.registry.read().clone()
    }

    /// Agents in force.
    pub fn agents(&self) -> Arc<AgentsConfig> {
        self.agents.read().clone()
    }

    /// Run ids currently queued or running for a session.
    pub fn active_runs(&self, session_key: &str) -> Vec<String> {
        self.active.lock().iter().filter(|(_, a)| a.session_key == session_key).map(|(id, _)| id.clone()).collect()
    }

    /// Number of runs queued or running.
    pub fn active_count(&self) -> usize {
        self.active.lock().len()
    }

    fn register(&self, run_id: &str, session_key: &str) -> Arc<Active> {
        let mut map = self.active.lock();
        map.entry(run_id.to_owned())
            .or_insert_with(|| {
                Arc::new(Active {
                    session_key: session_key.to_owned(),
                    cancel: CancellationToken::new(),
                    reason: Mutex::new(None),
                    done: watch::channel(None).0,
                })
            })
            .clone()
    }

    /// The full message of a stateless run, if it is still held.
    fn take_unstored(&self, run_id: &str) -> Option<String> {
        self.unstored.lock().remove(run_id)
    }

    fn lookup(&self, run_id: &str) -> Option<Arc<Active>> {
        self.active.lock().get(run_id).cloned()
    }

    fn complete(&self, run_id: &str, outcome: RunOutcome) {
        self.take_unstored(run_id);
        let active = self.active.lock().remove(run_id);
        if let Some(a) = active {
            a.done.send_replace(Some(outcome));
        }
    }
}

/// Queue a run (idempotent on `run_id`) and make sure its session's lane is running.
pub async fn submit(gw: &Arc<Gateway>, req: RunRequest) -> Result<Submitted, CoreError> {
    submit_with(gw, req, None).await
}

/// [`submit`] for a stateless request (a fresh session nobody continues): the model gets the
/// whole message, the run queue and the transcript store at most [`STATELESS_STORED_BYTES`] of
/// it. The full message lives in memory only, so a run a restart finds still queued fails
/// instead of answering the excerpt.
pub async fn submit_stateless(gw: &Arc<Gateway>, req: RunRequest) -> Result<Submitted, CoreError> {
    submit_with(gw, req, Some(STATELESS_STORED_BYTES)).await
}

async fn submit_with(gw: &Arc<Gateway>, mut req: RunRequest, cap: Option<usize>) -> Result<Submitted, CoreError> {
    let agents = gw.agents.agents();
    if agents.get(&req.agent_id).is_none() {
        return Err(CoreError::InvalidRequest {
            message: format!("unknown agent id \"{}\"", req.agent_id),
            details: Some(json!({"code": "UNKNOWN_AGENT_ID", "agentId": req.agent_id})),
        });
    }
    let now = now_ms();
    gw.store.ensure_session(&req.session_key, &req.agent_id, now).await?;
    let mut stored = req.to_json_without_message();
    let cut = cap.filter(|&cap| req.message.len() > cap);
    if let Some(cap) = cut {
        stored["message"] = Value::String(stored_excerpt(&req.message, cap));
        stored["messageTruncated"] = json!(true);
        stored["messageBytes"] = json!(req.message.len());
        // Held before the run is queued: a lane already running for the session may claim it
        // at once.
        let full = std::mem::take(&mut req.message);
        gw.agents.unstored.lock().insert(req.run_id.clone(), full);
    } else {
        stored["message"] = Value::String(std::mem::take(&mut req.message));
    }
    // Register before enqueueing so a waiter or an abort never misses the run.
    let outcome = gw.store.enqueue(&req.run_id, &req.session_key, req.kind, &stored, now).await;
    drop(stored);
    if cut.is_some() && !matches!(outcome, Ok(EnqueueOutcome::Inserted(_))) {
        gw.agents.take_unstored(&req.run_id);
    }
    match outcome {
        Ok(EnqueueOutcome::Inserted(_)) => {
            gw.agents.register(&req.run_id, &req.session_key);
            kick_lane(gw, &req.session_key);
            gw.events.session_changed(&req.session_key, "run-queued");
            Ok(Submitted::Started)
        }
        Ok(EnqueueOutcome::Existing(rec)) if rec.session_key != req.session_key => Err(CoreError::invalid(format!(
            "idempotencyKey \"{}\" was already used for another session; use a fresh key for each message",
            req.run_id
        ))),
        Ok(EnqueueOutcome::Existing(rec)) if rec.status.is_terminal() => Ok(Submitted::Done(Box::new(rec))),
        Ok(EnqueueOutcome::Existing(_)) => Ok(Submitted::InFlight),
        Err(e) => Err(e.into()),
    }
}

/// Start a lane worker for the session unless one runs; tell a running one there is work.
pub fn kick_lane(gw: &Arc<Gateway>, session_key: &str) {
    {
        let mut lanes = gw.agents.lanes.lock();
        if let Some(pending) = lanes.get_mut(session_key) {
            *pending = true;
            return;
        }
        lanes.insert(session_key.to_owned(), false);
    }
    let gw = gw.clone();
    let key = session_key.to_owned();
    gw.clone().tasks().spawn("agent", async move { lane_worker(gw, key).await });
}

async fn lane_worker(gw: Arc<Gateway>, session_key: String) {
    loop {
        if let Some(p) = gw.agents.lanes.lock().get_mut(&session_key) {
            *p = false;
        }
        // A claim that fails for a storage reason is retried (backoff up to 5 s) rather than
        // dropping the lane: queued runs must not wait for another message to the session to
        // start again once the storage recovers.
        let mut attempt = 0u32;
        let mut paused = false;
        loop {
            if gw.shutdown_token().is_cancelled() {
                break;
            }
            match gw.store.claim_next(&session_key, now_ms()).await {
                Ok(Some(record)) => {
                    attempt = 0;
                    paused = false;
                    run::execute(&gw, record).await
                }
                Ok(None) => break,
                Err(e) => {
                    if !paused {
                        tracing::warn!(session = %session_key, error = %e, "cannot claim the next run; retrying");
                        paused = true;
                    }
                    let stop = gw.shutdown_token();
                    tokio::select! {
                        _ = stop.cancelled() => break,
                        _ = tokio::time::sleep(STORAGE_BACKOFF.delay(attempt)) => {}
                    }
                    attempt = attempt.saturating_add(1);
                }
            }
        }
        let mut lanes = gw.agents.lanes.lock();
        match lanes.get(&session_key) {
            Some(true) if !gw.shutdown_token().is_cancelled() => continue,
            _ => {
                lanes.remove(&session_key);
                return;
            }
        }
    }
}

/// Cancel runs of a session (one run id, or all of them). Queued runs never start; the running
/// one stops streaming and ends `aborted` with its partial text. Returns the run ids cancelled.
pub async fn abort(gw: &Arc<Gateway>, session_key: &str, run_id: Option<&str>, reason: AbortReason) -> Vec<String> {
    let targets: Vec<(String, Arc<Active>)> = {
        let map = gw.agents.active.lock();
        map.iter()
            .filter(|(id, a)| a.session_key == session_key && run_id.is_none_or(|r| r == id.as_str()))
            .map(|(id, a)| (id.clone(), a.clone()))
            .collect()
    };
    for (id, a) in &targets {
        a.reason.lock().get_or_insert(reason);
        a.cancel.cancel();
        // A run still waiting in its lane ends now: it never starts, and its message is never
        // written to the transcript. (If the lane claimed it meanwhile, the running turn sees the
        // cancellation and ends as aborted itself; this finish then loses the race harmlessly.)
        if let Ok(Some(rec)) = gw.store.get_run(id).await
            && rec.status == RunStatus::Queued
        {
            let outcome = RunOutcome::Aborted(AbortedRun {
                stop_reason: "rpc".into(),
                reason,
                ended_at: now_ms(),
                queued: true,
                ..AbortedRun::default()
            });
            if gw.store.finish(id, RunStatus::Aborted, outcome.to_stored().as_ref(), now_ms()).await.is_ok() {
                let agent_id = rec.request.get("agentId").and_then(Value::as_str).unwrap_or("main").to_owned();
                let payload = json!({"runId": id, "sessionKey": session_key, "agentId": agent_id, "seq": 1,
                                     "state": "aborted", "stopReason": "rpc"});
                gw.agents.publish(id, "chat", &payload);
                gw.events.run_event("chat", session_key, &payload, false);
                gw.agents.complete(id, outcome);
            }
        }
    }
    targets.into_iter().map(|(id, _)| id).collect()
}

/// Wait until a run ends or `timeout` passes. `None`: unknown run.
pub async fn wait(gw: &Arc<Gateway>, run_id: &str, timeout: Duration) -> Result<Option<RunOutcome>, CoreError> {
    let active = match gw.agents.lookup(run_id) {
        Some(active) => Some(active),
        None => match gw.store.get_run(run_id).await? {
            // A run queued before a restart is registered only once its lane claims it. Without
            // a registration this wait answered "queued" at once, and a caller waiting in a loop
            // (a cron turn behind another run of its session) spun on the store. Register it and
            // sleep on its outcome like any other run.
            Some(r) if !r.status.is_terminal() => {
                let active = gw.agents.register(run_id, &r.session_key);
                // It may have ended between the read and the registration: then nobody will
                // complete this registration, so drop it and answer from the store.
                if let Some(done) = gw.store.get_run(run_id).await?.filter(|r| r.status.is_terminal()) {
                    gw.agents.active.lock().remove(run_id);
                    return Ok(Some(RunOutcome::from_record(&done)));
                }
                Some(active)
            }
            other => return Ok(other.map(|r| RunOutcome::from_record(&r))),
        },
    };
    if let Some(active) = active {
        let mut rx = active.done.subscribe();
        let waited = tokio::time::timeout(timeout, async {
            loop {
                if let Some(o) = rx.borrow_and_update().clone() {
                    return Some(o);
                }
                if rx.changed().await.is_err() {
                    return rx.borrow().clone();
                }
            }
        })
        .await;
        if let Ok(Some(o)) = waited {
            return Ok(Some(o));
        }
        if waited.is_err() {
            return Ok(Some(RunOutcome::Running));
        }
    }
    Ok(gw.store.get_run(run_id).await?.map(|r| RunOutcome::from_record(&r)))
}

/// After a restart: runs a crash left "running" become "interrupted" (their partial reply was
/// never stored), and sessions with queued runs get their lanes back.
pub async fn recover(gw: &Arc<Gateway>) -> Result<(), CoreError> {
    let now = now_ms();
    let interrupted = gw.store.mark_interrupted_running(now).await?;
    if interrupted > 0 {
        tracing::warn!(interrupted, "runs were cut short by the last shutdown; marked interrupted");
    }
    for key in gw.store.list_queued_sessions().await? {
        tracing::info!(session = %key, "resuming queued runs");
        kick_lane(gw, &key);
    }
    Ok(())
}

/// Cancel everything (shutdown): running turns end as aborted, queued ones stay queued.
pub fn cancel_all(gw: &Gateway) {
    for a in gw.agents.active.lock().values() {
        a.reason.lock().get_or_insert(AbortReason::Shutdown);
        a.cancel.cancel();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn stored_excerpts_keep_the_end_and_say_they_are_cut() {
        assert_eq!(stored_excerpt("short", 10), "short");
        let cut = stored_excerpt(&format!("{}END", "x".repeat(100)), 10);
        assert!(cut.starts_with("[stateless request: 103 bytes, only the last 10 are stored]\n"), "{cut}");
        assert!(cut.ends_with("xxxxxxxEND"), "{cut}");
        // Never splits a character: the cut moves forward to the next boundary.
        let cut = stored_excerpt(&"é".repeat(10), 5);
        assert!(cut.ends_with("éé") && !cut.ends_with("éééé"), "{cut}");
        assert!(cut.contains("only the last 4 are stored"), "{cut}");
    }
}
