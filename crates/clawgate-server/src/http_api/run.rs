//! Agent runs started from HTTP: which agent and session a request targets, following a run's
//! events, reading its outcome, and cancelling it when the HTTP client goes away.

use std::sync::Arc;
use std::time::Duration;

use axum::http::HeaderMap;
use serde_json::{Value, json};
use tokio::sync::broadcast::{self, error::RecvError};

use clawgate_core::agent::AgentService;
use clawgate_core::agent::{AbortReason, ErrorKind, RunEvent, RunOutcome, RunRequest, Submitted};
use clawgate_core::session_key::SessionKeyError;
use clawgate_core::{CoreError, SessionKey};

use super::error::OpenAiError;

/// Longest OpenAI `user` field, in bytes. It is not a session key but part of one
/// (`agent:<id>:<surface>-user:<user>`), and this bound keeps that key within
/// [`SessionKey::MAX_LEN`]; session keys themselves follow [`SessionKey`]'s one rule.
const MAX_USER_LEN: usize = 256;
/// How long to wait for a run's record once its terminal event was seen.
const SETTLE_WAIT: Duration = Duration::from_secs(30);
/// How long one `AgentService::wait` call waits before looping (the run's own timeout bounds it).
const WAIT_SLICE: Duration = Duration::from_secs(60);

/// What the `model` field names.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Target {
    /// `openclaw`, `openclaw/default`: the default agent.
    Default,
    /// `openclaw/<id>`, `openclaw:<id>`, `agent:<id>`.
    Agent(String),
}

/// Parse an agent target; `None` for anything else (`gpt-4`).
pub(crate) fn parse_target(model: &str) -> Option<Target> {
    let model = model.trim();
    if model == "openclaw" {
        return Some(Target::Default);
    }
    let rest = ["openclaw/", "openclaw:", "agent:"].iter().find_map(|p| model.strip_prefix(p))?.trim();
    if rest.is_empty() || rest.contains(['/', ':']) || rest.chars().any(char::is_whitespace) {
        return None;
    }
    Some(if rest == "default" { Target::Default } else { Target::Agent(rest.to_owned()) })
}

/// The message every unusable `model` gets (the real gateway's wording).
pub(crate) const INVALID_MODEL: &str = "Invalid `model`. Use `openclaw` or `openclaw/<agentId>`.";

fn header<'a>(headers: &'a HeaderMap, name: &str) -> Option<&'a str> {
    headers.get(name).and_then(|v| v.to_str().ok()).map(str::trim).filter(|v| !v.is_empty())
}

fn known_agent(agents: &AgentService, id: &str) -> Result<String, OpenAiError> {
    if agents.agents().get(id).is_some() {
        Ok(id.to_owned())
    } else {
        Err(OpenAiError::invalid(format!(
            "Unknown agent `{id}`. Use `openclaw` or `openclaw/<agentId>` with an agent from agents.list."
        )))
    }
}

/// The agent a request runs on: `x-openclaw-agent-id`, else the `model` target.
pub(crate) fn resolve_agent(agents: &AgentService, headers: &HeaderMap, model: &str) -> Result<String, OpenAiError> {
    let target = parse_target(model).ok_or_else(|| OpenAiError::invalid(INVALID_MODEL))?;
    if let Some(id) = header(headers, "x-openclaw-agent-id") {
        return known_agent(agents, id);
    }
    match target {
        Target::Default => Ok(agents.agents().default_id.clone()),
        Target::Agent(id) => known_agent(agents, &id),
    }
}

/// The session a request runs in.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Session {
    /// `agent:<id>:<key>`.
    pub(crate) key: String,
    /// The agent that owns it.
    pub(crate) agent_id: String,
    /// A fresh session per request, which nobody continues: only an excerpt of the prompt is
    /// stored (`AgentService::submit_stateless`).
    pub(crate) stateless: bool,
}

/// The session a request runs in, and the agent that owns it:
/// `x-openclaw-session-key` when sent (a bare key is put under the agent), else a stable
/// `agent:<id>:<surface>-user:<user>` when `user` is set, else a fresh
/// `agent:<id>:<surface>:<uuid>` (stateless per request, as upstream).
pub(crate) fn resolve_session(
    agents: &AgentService,
    headers: &HeaderMap,
    agent_id: &str,
    surface: &str,
    user: Option<&str>,
) -> Result<Session, OpenAiError> {
    let kept = |key: SessionKey| {
        let (key, agent_id) = key.into_parts();
        Session { key, agent_id, stateless: false }
    };
    if let Some(raw) = header(headers, "x-openclaw-session-key") {
        let key = SessionKey::parse(raw, agent_id).map_err(|e| match e {
            SessionKeyError::Length => OpenAiError::invalid(format!(
                "Invalid `x-openclaw-session-key`: at most {} characters.",
                SessionKey::MAX_LEN
            )),
            SessionKeyError::Malformed(_) => {
                OpenAiError::invalid("Invalid `x-openclaw-session-key`: use `agent:<agentId>:<key>` or a plain key.")
            }
        })?;
        if key.is_reserved() {
            return Err(OpenAiError::invalid(
                "Invalid `x-openclaw-session-key`: the `subagent:`, `cron:` and `acp:` prefixes are reserved.",
            ));
        }
        known_agent(agents, key.agent_id())?;
        return Ok(kept(key));
    }
    if let Some(user) = user.map(str::trim).filter(|u| !u.is_empty()) {
        let invalid =
            || OpenAiError::invalid(format!("Invalid `user`: at most {MAX_USER_LEN} bytes, no control characters."));
        if user.len() > MAX_USER_LEN || user.chars().any(char::is_control) {
            return Err(invalid());
        }
        return SessionKey::for_agent(agent_id, &format!("{surface}-user:{user}")).map(kept).map_err(|_| invalid());
    }
    let key = format!("agent:{agent_id}:{surface}:{}", uuid::Uuid::new_v4());
    Ok(Session { key, agent_id: agent_id.to_owned(), stateless: true })
}

/// Token counts of a finished run.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub(crate) struct Usage {
    pub(crate) input: u64,
    pub(crate) output: u64,
    pub(crate) cache_read: u64,
    pub(crate) total: u64,
}

/// How a run ended.
#[derive(Debug, Clone, PartialEq)]
pub(crate) enum Ending {
    /// Normal end.
    Completed { text: String },
    /// Aborted (someone stopped it, its timeout, shutdown), with what was streamed.
    Aborted { text: String, reason: AbortReason },
    /// The provider (or clawgate) failed.
    Failed { error: String, kind: ErrorKind },
    /// A gateway restart cut it short.
    Interrupted,
}

/// A finished run as the HTTP surfaces report it.
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct Outcome {
    pub(crate) ending: Ending,
    pub(crate) usage: Usage,
}

impl Outcome {
    /// What the run's typed outcome says.
    pub(crate) fn from_run(o: RunOutcome) -> Self {
        let mut usage = Usage::default();
        let ending = match o {
            RunOutcome::Completed(c) => {
                if let Some(u) = c.usage {
                    usage = Usage { input: u.input, output: u.output, cache_read: u.cache_read, total: u.total_tokens };
                }
                Ending::Completed { text: c.text }
            }
            RunOutcome::Aborted(a) => Ending::Aborted { text: a.text, reason: a.reason },
            RunOutcome::Failed(f) => {
                let error = if f.error.is_empty() { "the run failed".to_owned() } else { f.error };
                Ending::Failed { error, kind: f.error_kind }
            }
            RunOutcome::Interrupted => Ending::Interrupted,
            // Never handed here (callers wait for a terminal outcome), but the match must say.
            RunOutcome::Queued | RunOutcome::Running => {
                Ending::Failed { error: "the run has not finished".into(), kind: ErrorKind::Unknown }
            }
        };
        Outcome { ending, usage }
    }

    /// The reply text for a non-streaming answer, or the error to send instead. An operator's
    /// abort answers with what was produced so far; timeouts and shutdown are errors.
    pub(crate) fn reply(&self) -> Result<&str, OpenAiError> {
        match &self.ending {
            Ending::Completed { text } => Ok(text),
            Ending::Aborted { reason: AbortReason::Timeout, .. } => Err(OpenAiError::run_timed_out()),
            Ending::Aborted { reason: AbortReason::Shutdown, .. } => {
                Err(OpenAiError::unavailable("The gateway is shutting down; retry shortly."))
            }
            Ending::Aborted { text, reason: AbortReason::Rpc } => Ok(text),
            Ending::Interrupted => Err(OpenAiError::unavailable("the run was interrupted by a gateway restart")),
            Ending::Failed { error, kind } => Err(OpenAiError::run_failed(kind.as_str(), error)),
        }
    }
}

/// Cancels a run when dropped while armed: the HTTP client went away (its response future or
/// body stream was dropped), so nobody will read the answer and the model call should stop.
#[derive(Debug)]
struct AbortOnDrop {
    agents: AgentService,
    session_key: String,
    run_id: String,
    armed: bool,
}

impl Drop for AbortOnDrop {
    fn drop(&mut self) {
        if !self.armed {
            return;
        }
        if tokio::runtime::Handle::try_current().is_err() {
            return;
        }
        let (key, id) = (std::mem::take(&mut self.session_key), std::mem::take(&mut self.run_id));
        tracing::info!(run = %id, session = %key, "HTTP client went away; aborting its run");
        self.agents.abort_in_background(key, id, AbortReason::Rpc);
    }
}

/// One step of a followed run.
#[derive(Debug)]
pub(crate) enum Step {
    /// Streamed text.
    Delta(String),
    /// The run is over.
    Done(Outcome),
}

/// A run this request started and follows. Dropping it before the run ended aborts the run.
#[derive(Debug)]
pub(crate) struct LiveRun {
    agents: AgentService,
    run_id: String,
    events: broadcast::Receiver<Arc<RunEvent>>,
    guard: AbortOnDrop,
}

impl LiveRun {
    /// Queue the run (subscribing first so no event is missed).
    /// Start a run; a `stateless` one stores only an excerpt of its message.
    pub(crate) async fn start(agents: &AgentService, req: RunRequest, stateless: bool) -> Result<LiveRun, OpenAiError> {
        let events = agents.subscribe();
        let (run_id, session_key) = (req.run_id.clone(), req.session_key.clone());
        let submitted = if stateless { agents.submit_stateless(req).await } else { agents.submit(req).await };
        match submitted {
            Ok(Submitted::Started | Submitted::InFlight | Submitted::Done(_)) => {}
            Err(CoreError::InvalidRequest { message, .. }) => return Err(OpenAiError::invalid(message)),
            Err(CoreError::Unavailable(message)) => return Err(OpenAiError::unavailable(message)),
            Err(e) => return Err(OpenAiError::internal("cannot queue an HTTP run", e)),
        }
        let guard = AbortOnDrop { agents: agents.clone(), session_key, run_id: run_id.clone(), armed: true };
        Ok(LiveRun { agents: agents.clone(), run_id, events, guard })
    }

    /// The run id.
    pub(crate) fn id(&self) -> &str {
        &self.run_id
    }

    /// The next streamed delta, or the outcome once the run ended.
    pub(crate) async fn next(&mut self) -> Result<Step, OpenAiError> {
        loop {
            match self.events.recv().await {
                Ok(ev) if ev.run_id == self.run_id && ev.event == "chat" => {
                    match ev.payload.get("state").and_then(Value::as_str) {
                        Some("delta") => {
                            if let Some(d) =
                                ev.payload.get("deltaText").and_then(Value::as_str).filter(|d| !d.is_empty())
                            {
                                return Ok(Step::Delta(d.to_owned()));
                            }
                        }
                        Some("final" | "aborted" | "error") => return self.settle(SETTLE_WAIT).await.map(Step::Done),
                        _ => {}
                    }
                }
                Ok(_) => {}
                Err(RecvError::Lagged(missed)) => {
                    // Deltas were lost; the caller reconciles with the final text. If the end was
                    // lost too, the run record has it.
                    tracing::warn!(run = %self.run_id, missed, "HTTP stream fell behind the run's events");
                    if let Some(o) = self
                        .agents
                        .wait(&self.run_id, Duration::ZERO)
                        .await
                        .map_err(|e| OpenAiError::internal("cannot read a run", e))?
                        .filter(|o| o.is_terminal())
                    {
                        self.guard.armed = false;
                        return Ok(Step::Done(Outcome::from_run(o)));
                    }
                }
                Err(RecvError::Closed) => return self.settle(SETTLE_WAIT).await.map(Step::Done),
            }
        }
    }

    /// Wait for the run to end (non-streaming answers).
    pub(crate) async fn outcome(mut self) -> Result<Outcome, OpenAiError> {
        self.settle(Duration::MAX).await
    }

    async fn settle(&mut self, bound: Duration) -> Result<Outcome, OpenAiError> {
        let deadline = tokio::time::Instant::now().checked_add(bound);
        loop {
            let waited = self
                .agents
                .wait(&self.run_id, WAIT_SLICE)
                .await
                .map_err(|e| OpenAiError::internal("cannot read a run", e))?;
            match waited {
                Some(o) if o.is_terminal() => {
                    self.guard.armed = false;
                    return Ok(Outcome::from_run(o));
                }
                Some(_) => {}
                None => return Err(OpenAiError::internal("run vanished", format!("no run {}", self.run_id))),
            }
            if deadline.is_some_and(|d| tokio::time::Instant::now() >= d) {
                return Err(OpenAiError::internal("run did not settle", format!("run {}", self.run_id)));
            }
        }
    }
}

/// The `client` recorded with an HTTP run's user message.
pub(crate) fn client_info(surface: &str) -> Value {
    json!({"id": "gateway-http", "mode": surface})
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn agent_targets_are_parsed_in_every_spelling() {
        assert_eq!(parse_target("openclaw"), Some(Target::Default));
        assert_eq!(parse_target("openclaw/default"), Some(Target::Default));
        assert_eq!(parse_target("openclaw/main"), Some(Target::Agent("main".into())));
        assert_eq!(parse_target("openclaw:beta"), Some(Target::Agent("beta".into())));
        assert_eq!(parse_target("agent:beta"), Some(Target::Agent("beta".into())));
        for bad in ["gpt-4", "openclaw/", "openclaw/a/b", "agent:", "openclawx", "agent:a b"] {
            assert_eq!(parse_target(bad), None, "{bad}");
        }
    }

    #[test]
    fn run_results_become_outcomes() {
        use clawgate_core::agent::{AbortedRun, CompletedRun, FailedRun};
        use clawgate_protocol::methods::agent::RunUsage;
        let usage = RunUsage { input: 42, output: 6, cache_read: 1, cache_write: 0, total_tokens: 48 };
        let done = RunOutcome::Completed(CompletedRun { text: "hi".into(), usage: Some(usage), ..Default::default() });
        let o = Outcome::from_run(done);
        assert_eq!(o.ending, Ending::Completed { text: "hi".into() });
        assert_eq!(o.usage, Usage { input: 42, output: 6, cache_read: 1, total: 48 });
        assert_eq!(o.reply().ok(), Some("hi"));

        let failed = RunOutcome::Failed(FailedRun { error: "no key".into(), ..Default::default() });
        assert!(Outcome::from_run(failed).reply().is_err());
        let aborted = |reason| {
            Outcome::from_run(RunOutcome::Aborted(AbortedRun { text: "par".into(), reason, ..Default::default() }))
        };
        assert!(aborted(AbortReason::Timeout).reply().is_err());
        assert!(aborted(AbortReason::Shutdown).reply().is_err());
        assert_eq!(aborted(AbortReason::Rpc).reply().ok(), Some("par"));
        assert!(Outcome::from_run(RunOutcome::Interrupted).reply().is_err());
    }
}
