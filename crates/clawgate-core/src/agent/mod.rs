//! Agent runs: a durable lane per session (one run at a time, later messages queue in the
//! store and run in order), abort, timeouts, waiters, and recovery after a restart.
//!
//! A run is accepted by writing it to the run queue (idempotent on its run id = the client's
//! idempotency key), then a lane worker for its session claims runs one by one and executes
//! them (`run.rs`). Everything a client sees of a run arrives as `agent`/`chat` events.

pub mod config;
pub mod context;
mod run;
pub mod tools;
pub mod transcript;
mod window;

pub use window::WindowStats;

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
use crate::events::Events;
use crate::gateway::Store;
use crate::tasks::Tasks;
use crate::time::now_ms;

/// How often a wait for a run of another gateway looks at the store.
const REMOTE_RUN_POLL: Duration = Duration::from_millis(250);

/// Between tries of a storage write or claim that failed for a reason that clears by itself
/// (full disk, I/O error, busy lock): 100 ms doubling to 5 s.
const STORAGE_BACKOFF: clawgate_backoff::Backoff =
    clawgate_backoff::Backoff::new(Duration::from_millis(100), Duration::from_secs(5));

pub use config::AgentsConfig;
pub use context::TurnContext;
pub use tools::{NoComfy, ToolHost};

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
    /// The client's context for this turn, already cut to the cap (kept in the transcript).
    pub context: Option<TurnContext>,
}

/// A run's request as the run queue stores it: the one shape [`AgentService::submit`] writes
/// and a claim, an abort or the recovery reads back (JSON in the run record).
#[derive(Debug, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
struct StoredRequest {
    #[serde(default = "main_agent")]
    agent_id: String,
    timeout_ms: Option<u64>,
    extra_system_prompt: Option<String>,
    client: Option<Value>,
    /// The message, or for a stateless run the stored excerpt of it.
    #[serde(default)]
    message: String,
    /// The message is an excerpt; the whole one is held in memory only.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    message_truncated: bool,
    /// Size of the whole message, when cut.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    message_bytes: Option<usize>,
    /// The client's context, as captured.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    context: Option<TurnContext>,
}

fn main_agent() -> String {
    "main".to_owned()
}

impl StoredRequest {
    /// The agent of a stored request, without reading (or copying) the rest of it.
    fn agent_of(stored: &Value) -> String {
        #[derive(Deserialize)]
        #[serde(rename_all = "camelCase")]
        struct AgentOnly {
            #[serde(default = "main_agent")]
            agent_id: String,
        }
        AgentOnly::deserialize(stored).map(|a| a.agent_id).unwrap_or_else(|_| main_agent())
    }
}

impl RunRequest {
    /// The stored request as JSON, with `message` (the whole message, or a stateless run's
    /// excerpt with `whole_bytes` the size of what was cut) moved in: serialising a
    /// [`StoredRequest`] holding it would copy a message of up to 25 MiB once more.
    fn to_stored(&self, message: String, whole_bytes: Option<usize>) -> Result<Value, serde_json::Error> {
        let mut stored = serde_json::to_value(StoredRequest {
            agent_id: self.agent_id.clone(),
            timeout_ms: self.timeout.map(|d| d.as_millis() as u64),
            extra_system_prompt: self.extra_system.clone(),
            client: self.client.clone(),
            message: String::new(),
            message_truncated: whole_bytes.is_some(),
            message_bytes: whole_bytes,
            context: self.context.clone(),
        })?;
        stored["message"] = Value::String(message);
        Ok(stored)
    }

    /// The request of a claimed run, and whether its stored message is only an excerpt. The
    /// request is moved out of the record, not copied.
    fn from_record(r: &mut RunRecord) -> Result<(Self, bool), serde_json::Error> {
        let q = StoredRequest::deserialize(r.request.take())?;
        let req = Self {
            run_id: r.run_id.clone(),
            session_key: r.session_key.clone(),
            agent_id: q.agent_id,
            message: q.message,
            kind: r.kind,
            timeout: q.timeout_ms.map(Duration::from_millis),
            extra_system: q.extra_system_prompt,
            client: q.client,
            context: q.context,
        };
        Ok((req, q.message_truncated))
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

/// What the agent service is built from: the providers and agents a config resolves to. Built
/// (and so checked) once by `config_service::check`, handed to [`AgentService::new`].
#[derive(Debug)]
pub struct AgentSetup {
    registry: ProviderRegistry,
    agents: AgentsConfig,
}

impl AgentSetup {
    /// Resolve `models` and `agents` (and `session`) of a decoded config.
    pub fn from_config(cfg: &clawgate_config::Config, base_dir: &std::path::Path) -> Result<Self, String> {
        Ok(Self {
            registry: config::registry_from_config(&cfg.models, base_dir)?,
            agents: AgentsConfig::from_config(cfg)?,
        })
    }
}

/// Agents, providers and runs: one lane per session, run outcomes, the in-process run feed.
///
/// A cheap-clone handle: clones share one service. Built with exactly what runs need (the
/// store, the broadcasts, the task tracker its lanes run under, the tool host), never the
/// gateway, so it is tested on an in-memory store without one.
#[derive(Clone)]
pub struct AgentService {
    inner: Arc<Inner>,
}

struct Inner {
    /// Run queue, sessions and transcripts.
    store: Store,
    /// `agent`/`chat`/session broadcasts to connected clients.
    events: Events,
    /// Lane workers run under it; its token tells them the gateway is stopping.
    tasks: Tasks,
    /// What the built-in tools reach outside the agent (ComfyUI).
    tools: Arc<dyn ToolHost>,
    /// In-process feed of every run event; receivers filter by run id.
    feed: tokio::sync::broadcast::Sender<Arc<RunEvent>>,
    registry: RwLock<Arc<ProviderRegistry>>,
    agents: RwLock<Arc<AgentsConfig>>,
    active: Mutex<HashMap<String, Arc<Active>>>,
    /// Sessions with a lane worker; the flag says "new work arrived since the worker last looked".
    lanes: Mutex<HashMap<String, bool>>,
    /// Full messages of queued stateless runs, whose stored message is only an excerpt; taken
    /// by the run when it starts, dropped when a run ends without starting.
    unstored: Mutex<HashMap<String, String>>,
    /// Runs in flight and finished, tokens, transcript write latency.
    metrics: crate::metrics::Metrics,
    /// The newest messages of active sessions, so a turn's context is not re-read from the
    /// transcript (`window.rs`).
    windows: window::ContextWindows,
    /// The gateways sharing the store: this one's id owns the runs it claims, and recovery
    /// spares the runs of members still alive.
    cluster: crate::cluster::Cluster,
}

impl std::fmt::Debug for AgentService {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("AgentService")
            .field("active", &self.active_count())
            .field("lanes", &self.inner.lanes.lock().len())
            .finish_non_exhaustive()
    }
}

impl AgentService {
    /// A service over `store`, broadcasting through `events`, running its lanes under `tasks`,
    /// with the providers and agents of `setup`; its tools reach ComfyUI through `tools`.
    pub fn new(
        store: Store,
        events: Events,
        tasks: Tasks,
        setup: AgentSetup,
        tools: Arc<dyn ToolHost>,
        metrics: crate::metrics::Metrics,
    ) -> Self {
        let me = crate::cluster::Member {
            id: uuid::Uuid::new_v4().to_string(),
            version: String::new(),
            started_at_ms: now_ms(),
            listen_addr: String::new(),
        };
        let cluster = crate::cluster::Cluster::new(store.clone(), tasks.clone(), me, Default::default());
        Self::in_cluster(store, events, tasks, setup, tools, metrics, cluster)
    }

    /// [`AgentService::new`] as a member of `cluster`: its runs are owned by the cluster's id,
    /// and its recovery spares the runs of live peers.
    pub fn in_cluster(
        store: Store,
        events: Events,
        tasks: Tasks,
        setup: AgentSetup,
        tools: Arc<dyn ToolHost>,
        metrics: crate::metrics::Metrics,
        cluster: crate::cluster::Cluster,
    ) -> Self {
        Self {
            inner: Arc::new(Inner {
                store,
                events,
                tasks,
                tools,
                feed: tokio::sync::broadcast::channel(4096).0,
                registry: RwLock::new(Arc::new(setup.registry)),
                agents: RwLock::new(Arc::new(setup.agents)),
                active: Mutex::default(),
                lanes: Mutex::default(),
                unstored: Mutex::default(),
                metrics,
                windows: window::ContextWindows::default(),
                cluster,
            }),
        }
    }

    /// Swap in providers and agents from a new config (hot reload).
    pub fn reload(&self, cfg: &clawgate_config::Config, base_dir: &std::path::Path) -> Result<(), String> {
        let setup = AgentSetup::from_config(cfg, base_dir)?;
        *self.inner.registry.write() = Arc::new(setup.registry);
        *self.inner.agents.write() = Arc::new(setup.agents);
        Ok(())
    }

    /// How often a turn's context came from the in-memory window rather than the transcript.
    pub fn context_window_stats(&self) -> WindowStats {
        self.inner.windows.stats()
    }

    /// Sessions whose context window is in memory.
    pub fn context_windows(&self) -> usize {
        self.inner.windows.len()
    }

    /// Drop the in-memory context window of `session_key` (its next turn reads the transcript).
    /// A reset or delete gives the session a new transcript id, which no window matches, so
    /// this only frees the memory sooner.
    pub fn forget_context(&self, session_key: &str) {
        self.inner.windows.forget(session_key);
    }

    /// Drop every in-memory context window.
    pub fn forget_all_contexts(&self) {
        self.inner.windows.clear();
    }

    /// Subscribe to every run's events (filter by `run_id`). Subscribe *before* submitting so no
    /// event of the run is missed. A receiver that lags loses events (`RecvError::Lagged`).
    pub fn subscribe(&self) -> tokio::sync::broadcast::Receiver<Arc<RunEvent>> {
        self.inner.feed.subscribe()
    }

    pub(crate) fn publish(&self, run_id: &str, event: &'static str, payload: &Value) {
        if self.inner.feed.receiver_count() > 0 {
            let _ =
                self.inner.feed.send(Arc::new(RunEvent { run_id: run_id.to_owned(), event, payload: payload.clone() }));
        }
    }

    /// Providers in force.
    pub fn registry(&self) -> Arc<ProviderRegistry> {
        self.inner.registry.read().clone()
    }

    /// Agents in force.
    pub fn agents(&self) -> Arc<AgentsConfig> {
        self.inner.agents.read().clone()
    }

    /// Whether the gateway is stopping (no new turn starts, waits end).
    pub fn is_stopping(&self) -> bool {
        self.inner.tasks.is_stopping()
    }

    /// Run ids currently queued or running for a session.
    pub fn active_runs(&self, session_key: &str) -> Vec<String> {
        self.inner
            .active
            .lock()
            .iter()
            .filter(|(_, a)| a.session_key == session_key)
            .map(|(id, _)| id.clone())
            .collect()
    }

    /// Runs queued or running per session, by session key: each session is one lane that runs
    /// one turn at a time (`diagnostics.lanes`).
    pub fn lane_depths(&self) -> Vec<(String, usize)> {
        let mut depths = std::collections::BTreeMap::<String, usize>::new();
        for active in self.inner.active.lock().values() {
            *depths.entry(active.session_key.clone()).or_default() += 1;
        }
        depths.into_iter().collect()
    }

    /// Number of runs queued or running.
    pub fn active_count(&self) -> usize {
        self.inner.active.lock().len()
    }

    /// Run a built-in tool outside a run (`/tools/invoke`). Errors are text for the caller.
    pub async fn invoke_tool(&self, name: &str, args: &Value) -> Result<Value, String> {
        tools::invoke_for(self, name, args, tools::ToolCaller::default()).await
    }

    fn register(&self, run_id: &str, session_key: &str) -> Arc<Active> {
        let mut map = self.inner.active.lock();
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
        self.inner.unstored.lock().remove(run_id)
    }

    /// Whether the full message of a stateless run is held (without taking it).
    fn holds_unstored(&self, run_id: &str) -> bool {
        self.inner.unstored.lock().contains_key(run_id)
    }

    fn lookup(&self, run_id: &str) -> Option<Arc<Active>> {
        self.inner.active.lock().get(run_id).cloned()
    }

    fn complete(&self, run_id: &str, outcome: RunOutcome) {
        self.take_unstored(run_id);
        let active = self.inner.active.lock().remove(run_id);
        if let Some(a) = active {
            a.done.send_replace(Some(outcome));
        }
    }

    /// Queue a run (idempotent on `run_id`) and make sure its session's lane is running.
    pub async fn submit(&self, req: RunRequest) -> Result<Submitted, CoreError> {
        self.submit_with(req, None).await
    }

    /// [`AgentService::submit`] for a stateless request (a fresh session nobody continues): the
    /// model gets the whole message, the run queue and the transcript store at most
    /// [`STATELESS_STORED_BYTES`] of it. The full message lives in memory only, so a run a
    /// restart finds still queued fails instead of answering the excerpt.
    pub async fn submit_stateless(&self, req: RunRequest) -> Result<Submitted, CoreError> {
        self.submit_with(req, Some(STATELESS_STORED_BYTES)).await
    }

    async fn submit_with(&self, mut req: RunRequest, cap: Option<usize>) -> Result<Submitted, CoreError> {
        let store = &self.inner.store;
        if self.agents().get(&req.agent_id).is_none() {
            return Err(CoreError::InvalidRequest {
                message: format!("unknown agent id \"{}\"", req.agent_id),
                details: Some(json!({"code": "UNKNOWN_AGENT_ID", "agentId": req.agent_id})),
            });
        }
        let now = now_ms();
        store.ensure_session(&req.session_key, &req.agent_id, now).await?;
        let message = std::mem::take(&mut req.message);
        let whole_bytes = message.len();
        let cut = cap.filter(|&cap| whole_bytes > cap);
        let stored = match cut {
            Some(cap) => {
                let excerpt = stored_excerpt(&message, cap);
                // Held before the run is queued: a lane already running for the session may
                // claim it at once.
                self.inner.unstored.lock().insert(req.run_id.clone(), message);
                req.to_stored(excerpt, Some(whole_bytes))
            }
            None => req.to_stored(message, None),
        };
        let stored = stored.map_err(CoreError::internal)?;
        // Registered once queued and before the caller hears of it, so its waiters and aborts find it.
        let outcome = store.enqueue(&req.run_id, &req.session_key, req.kind, &stored, now).await;
        drop(stored);
        if cut.is_some() && !matches!(outcome, Ok(EnqueueOutcome::Inserted(_))) {
            self.take_unstored(&req.run_id);
        }
        match outcome {
            Ok(EnqueueOutcome::Inserted(_)) => {
                self.register(&req.run_id, &req.session_key);
                self.kick_lane(&req.session_key);
                self.inner.events.session_changed(&req.session_key, "run-queued");
                Ok(Submitted::Started)
            }
            Ok(EnqueueOutcome::Existing(rec)) if rec.session_key != req.session_key => {
                Err(CoreError::invalid(format!(
                    "idempotencyKey \"{}\" was already used for another session; use a fresh key for each message",
                    req.run_id
                )))
            }
            Ok(EnqueueOutcome::Existing(rec)) if rec.status.is_terminal() => Ok(Submitted::Done(Box::new(rec))),
            Ok(EnqueueOutcome::Existing(_)) => Ok(Submitted::InFlight),
            Err(e) => Err(e.into()),
        }
    }

    /// Start a lane worker for the session unless one runs; tell a running one there is work.
    fn kick_lane(&self, session_key: &str) {
        {
            let mut lanes = self.inner.lanes.lock();
            if let Some(pending) = lanes.get_mut(session_key) {
                *pending = true;
                return;
            }
            lanes.insert(session_key.to_owned(), false);
        }
        let (svc, key) = (self.clone(), session_key.to_owned());
        self.inner.tasks.spawn("agent", async move { svc.lane_worker(key).await });
    }

    async fn lane_worker(self, session_key: String) {
        let stop = self.inner.tasks.token();
        loop {
            if let Some(p) = self.inner.lanes.lock().get_mut(&session_key) {
                *p = false;
            }
            // A claim that fails for a storage reason is retried (backoff up to 5 s) rather than
            // dropping the lane: queued runs must not wait for another message to the session to
            // start again once the storage recovers.
            let mut attempt = 0u32;
            let mut paused = false;
            loop {
                if stop.is_cancelled() {
                    break;
                }
                match run::start_next(&self, &session_key).await {
                    Ok(true) => {
                        attempt = 0;
                        paused = false;
                    }
                    Ok(false) => break,
                    Err(e) => {
                        if !paused {
                            tracing::warn!(session = %session_key, error = %e, "cannot claim the next run; retrying");
                            paused = true;
                        }
                        tokio::select! {
                            _ = stop.cancelled() => break,
                            _ = tokio::time::sleep(STORAGE_BACKOFF.delay(attempt)) => {}
                        }
                        attempt = attempt.saturating_add(1);
                    }
                }
            }
            let mut lanes = self.inner.lanes.lock();
            match lanes.get(&session_key) {
                Some(true) if !stop.is_cancelled() => continue,
                _ => {
                    lanes.remove(&session_key);
                    return;
                }
            }
        }
    }

    /// Cancel runs of a session (one run id, or all of them). Queued runs never start; the
    /// running one stops streaming and ends `aborted` with its partial text. Returns the run ids
    /// cancelled.
    pub async fn abort(&self, session_key: &str, run_id: Option<&str>, reason: AbortReason) -> Vec<String> {
        let store = &self.inner.store;
        let targets: Vec<(String, Arc<Active>)> = {
            let map = self.inner.active.lock();
            map.iter()
                .filter(|(id, a)| a.session_key == session_key && run_id.is_none_or(|r| r == id.as_str()))
                .map(|(id, a)| (id.clone(), a.clone()))
                .collect()
        };
        for (id, a) in &targets {
            a.reason.lock().get_or_insert(reason);
            a.cancel.cancel();
            // A run still waiting in its lane ends now: it never starts, and its message is never
            // written to the transcript. (If the lane claimed it meanwhile, the running turn sees
            // the cancellation and ends as aborted itself; this finish then loses the race
            // harmlessly.)
            if let Ok(Some(rec)) = store.get_run(id).await
                && rec.status == RunStatus::Queued
            {
                let outcome = RunOutcome::Aborted(AbortedRun {
                    stop_reason: "rpc".into(),
                    reason,
                    ended_at: now_ms(),
                    queued: true,
                    ..AbortedRun::default()
                });
                if store.finish(id, RunStatus::Aborted, outcome.to_stored().as_ref(), now_ms()).await.is_ok() {
                    let agent_id = StoredRequest::agent_of(&rec.request);
                    let payload = json!({"runId": id, "sessionKey": session_key, "agentId": agent_id, "seq": 1,
                                         "state": "aborted", "stopReason": "rpc"});
                    self.publish(id, "chat", &payload);
                    self.inner.events.run_event("chat", session_key, &payload, false);
                    self.complete(id, outcome);
                }
            }
        }
        targets.into_iter().map(|(id, _)| id).collect()
    }

    /// [`AgentService::abort`] of one run, from code that cannot wait (a `Drop`): runs as a task
    /// of the service, so the shutdown waits for it.
    pub fn abort_in_background(&self, session_key: String, run_id: String, reason: AbortReason) {
        let svc = self.clone();
        self.inner.tasks.spawn("agent", async move {
            svc.abort(&session_key, Some(&run_id), reason).await;
        });
    }

    /// Wait until a run ends or `timeout` passes (then: `Running`). `None`: unknown run.
    ///
    /// Every queued or running run of this process is registered ([`AgentService::submit`],
    /// and [`AgentService::recover`] for the runs a restart found queued), so a wait sleeps on
    /// the run's outcome; the store answers for runs that ended (or were never here). A run of
    /// another gateway sharing the store is followed in the store until it ends or `timeout`
    /// passes; one still queued there is taken into this gateway's lane (its gateway may have
    /// died before starting it, and a waiter is here).
    pub async fn wait(&self, run_id: &str, timeout: Duration) -> Result<Option<RunOutcome>, CoreError> {
        let deadline = tokio::time::Instant::now() + timeout;
        if let Some(active) = self.lookup(run_id) {
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
            match waited {
                Ok(Some(o)) => return Ok(Some(o)),
                Err(_) => {
                    // Another gateway's lane may have claimed it (several gateways, one session):
                    // then its end is only in the store.
                    if let Some(rec) = self.inner.store.get_run(run_id).await?
                        && rec.status.is_terminal()
                    {
                        let outcome = RunOutcome::from_record(&rec);
                        self.complete(run_id, outcome.clone());
                        return Ok(Some(outcome));
                    }
                    return Ok(Some(RunOutcome::Running));
                }
                Ok(None) => {}
            }
        }
        loop {
            let Some(rec) = self.inner.store.get_run(run_id).await? else { return Ok(None) };
            let outcome = RunOutcome::from_record(&rec);
            if outcome.is_terminal() {
                return Ok(Some(outcome));
            }
            if rec.status == RunStatus::Queued && !self.is_stopping() && self.lookup(run_id).is_none() {
                tracing::info!(run = %run_id, session = %rec.session_key, "taking over a queued run of another gateway");
                self.register(run_id, &rec.session_key);
                self.kick_lane(&rec.session_key);
                let left = deadline.saturating_duration_since(tokio::time::Instant::now());
                return Box::pin(self.wait(run_id, left)).await;
            }
            let now = tokio::time::Instant::now();
            if now >= deadline || self.is_stopping() {
                return Ok(Some(outcome));
            }
            tokio::time::sleep((deadline - now).min(REMOTE_RUN_POLL)).await;
        }
    }

    /// After a restart: runs a crash left "running" become "interrupted" (their partial reply
    /// was never stored); every queued run is registered (a waiter sleeps on it, an abort finds
    /// it) and its session gets its lane back.
    pub async fn recover(&self) -> Result<(), CoreError> {
        let store = &self.inner.store;
        let now = now_ms();
        let interrupted = store.mark_interrupted_running(now, self.inner.cluster.alive_since(now)).await?;
        if interrupted > 0 {
            tracing::warn!(interrupted, "runs were cut short by the last shutdown; marked interrupted");
        }
        let queued = store.list_queued_runs().await?;
        let mut sessions: Vec<&str> = Vec::new();
        for (run_id, session_key) in &queued {
            self.register(run_id, session_key);
            if !sessions.contains(&session_key.as_str()) {
                sessions.push(session_key);
            }
        }
        for key in sessions {
            tracing::info!(session = %key, "resuming queued runs");
            self.kick_lane(key);
        }
        Ok(())
    }

    /// Cancel everything (shutdown): running turns end as aborted, queued ones stay queued.
    pub fn cancel_all(&self) {
        for a in self.inner.active.lock().values() {
            a.reason.lock().get_or_insert(AbortReason::Shutdown);
            a.cancel.cancel();
        }
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
