//! Agent runs started from HTTP: which agent and session a request targets, following a run's
//! events, reading its outcome, and cancelling it when the HTTP client goes away.

use std::sync::Arc;
use std::time::Duration;

use axum::http::HeaderMap;
use serde_json::{Value, json};
use tokio::sync::broadcast::{self, error::RecvError};

use clawgate_core::agent::{self, RunEvent, RunOutcome, RunRequest, Submitted};
use clawgate_core::{CoreError, Gateway};
use clawgate_store::RunStatus;

use super::error::OpenAiError;

/// Session-key prefixes reserved for the gateway's own sessions (contract §8).
const RESERVED_SESSION_PREFIXES: [&str; 3] = ["subagent:", "cron:", "acp:"];
/// Longest `user` or session key a client may name.
const MAX_KEY_LEN: usize = 256;
/// How long to wait for a run's record once its terminal event was seen.
const SETTLE_WAIT: Duration = Duration::from_secs(30);
/// How long one `agent::wait` call waits before looping (the run's own timeout bounds it).
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

fn known_agent(gw: &Gateway, id: &str) -> Result<String, OpenAiError> {
    if gw.agents.agents().get(id).is_some() {
        Ok(id.to_owned())
    } else {
        Err(OpenAiError::invalid(format!(
            "Unknown agent `{id}`. Use `openclaw` or `openclaw/<agentId>` with an agent from agents.list."
        )))
    }
}

/// The agent a request runs on: `x-openclaw-agent-id`, else the `model` target.
pub(crate) fn resolve_agent(gw: &Gateway, headers: &HeaderMap, model: &str) -> Result<String, OpenAiError> {
    let target = parse_target(model).ok_or_else(|| OpenAiError::invalid(INVALID_MODEL))?;
    if let Some(id) = header(headers, "x-openclaw-agent-id") {
        return known_agent(gw, id);
    }
    match target {
        Target::Default => Ok(gw.agents.agents().default_id.clone()),
        Target::Agent(id) => known_agent(gw, &id),
    }
}

/// `agent:<id>:<rest>` split; `None` if the key is not in that form.
pub(crate) fn split_agent_key(key: &str) -> Option<(&str, &str)> {
    let (agent, rest) = key.strip_prefix("agent:")?.split_once(':')?;
    (!agent.is_empty() && !rest.is_empty()).then_some((agent, rest))
}

/// The session a request runs in.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Session {
    /// `agent:<id>:<key>`.
    pub(crate) key: String,
    /// The agent that owns it.
    pub(crate) agent_id: String,
    /// A fresh session per request, which nobody continues: only an excerpt of the prompt is
    /// stored (`agent::submit_stateless`).
    pub(crate) stateless: bool,
}

/// The session a request runs in, and the agent that owns it:
/// `x-openclaw-session-key` when sent (a bare key is put under the agent), else a stable
/// `agent:<id>:<surface>-user:<user>` when `user` is set, else a fresh
/// `agent:<id>:<surface>:<uuid>` (stateless per request, as upstream).
pub(crate) fn resolve_session(
    gw: &Gateway,
    headers: &HeaderMap,
    agent_id: &str,
    surface: &str,
    user: Option<&str>,
) -> Result<Session, OpenAiError> {
    let kept = |key: String, agent_id: String| Session { key, agent_id, stateless: false };
    if let Some(key) = header(headers, "x-openclaw-session-key") {
        if key.len() > MAX_KEY_LEN {
            return Err(OpenAiError::invalid(format!(
                "Invalid `x-openclaw-session-key`: at most {MAX_KEY_LEN} bytes."
            )));
        }
        let (owner, rest) = match key.strip_prefix("agent:") {
            Some(_) => split_agent_key(key).ok_or_else(|| {
                OpenAiError::invalid("Invalid `x-openclaw-session-key`: use `agent:<agentId>:<key>` or a plain key.")
            })?,
            None => (agent_id, key),
        };
        if RESERVED_SESSION_PREFIXES.iter().any(|p| rest.starts_with(p)) {
            return Err(OpenAiError::invalid(
                "Invalid `x-openclaw-session-key`: the `subagent:`, `cron:` and `acp:` prefixes are reserved.",
            ));
        }
        let owner = known_agent(gw, owner)?;
        return Ok(kept(format!("agent:{owner}:{rest}"), owner));
    }
    if let Some(user) = user.map(str::trim).filter(|u| !u.is_empty()) {
        if user.len() > MAX_KEY_LEN || user.chars().any(char::is_control) {
            return Err(OpenAiError::invalid(format!(
                "Invalid `user`: at most {MAX_KEY_LEN} bytes, no control characters."
            )));
        }
        return Ok(kept(format!("agent:{agent_id}:{surface}-user:{user}"), agent_id.to_owned()));
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
    /// Aborted (`rpc`: someone stopped it; `timeout`; `shutdown`), with what was streamed.
    Aborted { text: String, reason: String },
    /// The provider (or clawgate) failed; `kind` is the run's `errorKind`.
    Failed { error: String, kind: String },
}

/// A finished run as the HTTP surfaces report it.
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct Outcome {
    pub(crate) ending: Ending,
    pub(crate) usage: Usage,
}

impl Outcome {
    /// Read the run record's result.
    pub(crate) fn from_run(o: &RunOutcome) -> Self {
        let r = &o.result;
        let s = |k: &str| r.get(k).and_then(Value::as_str).unwrap_or_default().to_owned();
        let n = |u: &Value, k: &str| u.get(k).and_then(Value::as_u64).unwrap_or(0);
        let usage = match r.get("usage").filter(|u| u.is_object()) {
            Some(u) => Usage {
                input: n(u, "input"),
                output: n(u, "output"),
                cache_read: n(u, "cacheRead"),
                total: u.get("totalTokens").and_then(Value::as_u64).unwrap_or(n(u, "input") + n(u, "output")),
            },
            None => Usage::default(),
        };
        let ending = match o.status {
            RunStatus::Completed => Ending::Completed { text: s("text") },
            RunStatus::Aborted => {
                let reason = r.get("reason").or_else(|| r.get("stopReason")).and_then(Value::as_str).unwrap_or("rpc");
                Ending::Aborted { text: s("text"), reason: reason.to_owned() }
            }
            RunStatus::Failed => {
                let error = r.get("error").and_then(Value::as_str).unwrap_or("the run failed").to_owned();
                Ending::Failed { error, kind: r.get("errorKind").and_then(Value::as_str).unwrap_or("unknown").into() }
            }
            RunStatus::Interrupted => Ending::Failed {
                error: "the run was interrupted by a gateway restart".into(),
                kind: "interrupted".into(),
            },
            RunStatus::Queued | RunStatus::Running => {
                Ending::Failed { error: "the run has not finished".into(), kind: "unknown".into() }
            }
        };
        Outcome { ending, usage }
    }

    /// The reply text for a non-streaming answer, or the error to send instead. An operator's
    /// abort answers with what was produced so far; timeouts and shutdown are errors.
    pub(crate) fn reply(&self) -> Result<&str, OpenAiError> {
        match &self.ending {
            Ending::Completed { text } => Ok(text),
            Ending::Aborted { reason, .. } if reason == "timeout" => Err(OpenAiError::run_timed_out()),
            Ending::Aborted { reason, .. } if reason == "shutdown" => {
                Err(OpenAiError::unavailable("The gateway is shutting down; retry shortly."))
            }
            Ending::Aborted { text, .. } => Ok(text),
            Ending::Failed { error, kind } if kind == "interrupted" => Err(OpenAiError::unavailable(error.clone())),
            Ending::Failed { error, kind } => Err(OpenAiError::run_failed(kind, error)),
        }
    }
}

/// Cancels a run when dropped while armed: the HTTP client went away (its response future or
/// body stream was dropped), so nobody will read the answer and the model call should stop.
#[derive(Debug)]
struct AbortOnDrop {
    gw: Arc<Gateway>,
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
        let (gw, key, id) = (self.gw.clone(), std::mem::take(&mut self.session_key), std::mem::take(&mut self.run_id));
        tracing::info!(run = %id, session = %key, "HTTP client went away; aborting its run");
        self.gw.tasks().spawn("http-api", async move {
            agent::abort(&gw, &key, Some(&id), "rpc").await;
        });
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
    gw: Arc<Gateway>,
    run_id: String,
    events: broadcast::Receiver<Arc<RunEvent>>,
    guard: AbortOnDrop,
}

impl LiveRun {
    /// Queue the run (subscribing first so no event is missed).
    /// Start a run; a `stateless` one stores only an excerpt of its message.
    pub(crate) async fn start(gw: &Arc<Gateway>, req: RunRequest, stateless: bool) -> Result<LiveRun, OpenAiError> {
        let events = gw.agents.subscribe();
        let (run_id, session_key) = (req.run_id.clone(), req.session_key.clone());
        let submitted = if stateless { agent::submit_stateless(gw, req).await } else { agent::submit(gw, req).await };
        match submitted {
            Ok(Submitted::Started | Submitted::InFlight | Submitted::Done(_)) => {}
            Err(CoreError::InvalidRequest { message, .. }) => return Err(OpenAiError::invalid(message)),
            Err(CoreError::Unavailable(message)) => return Err(OpenAiError::unavailable(message)),
            Err(e) => return Err(OpenAiError::internal("cannot queue an HTTP run", e)),
        }
        let guard = AbortOnDrop { gw: gw.clone(), session_key, run_id: run_id.clone(), armed: true };
        Ok(LiveRun { gw: gw.clone(), run_id, events, guard })
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
                    if let Some(o) = agent::wait(&self.gw, &self.run_id, Duration::ZERO)
                        .await
                        .map_err(|e| OpenAiError::internal("cannot read a run", e))?
                        .filter(|o| o.status.is_terminal())
                    {
                        self.guard.armed = false;
                        return Ok(Step::Done(Outcome::from_run(&o)));
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
            let waited = agent::wait(&self.gw, &self.run_id, WAIT_SLICE)
                .await
                .map_err(|e| OpenAiError::internal("cannot read a run", e))?;
            match waited {
                Some(o) if o.status.is_terminal() => {
                    self.guard.armed = false;
                    return Ok(Outcome::from_run(&o));
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
    fn agent_session_keys_split_into_agent_and_rest() {
        assert_eq!(split_agent_key("agent:main:openai:x"), Some(("main", "openai:x")));
        assert_eq!(split_agent_key("agent::x"), None);
        assert_eq!(split_agent_key("agent:main:"), None);
        assert_eq!(split_agent_key("main"), None);
    }

    #[test]
    fn run_results_become_outcomes() {
        let done = RunOutcome {
            status: RunStatus::Completed,
            result: json!({"text": "hi", "usage": {"input": 42, "output": 6, "cacheRead": 1, "totalTokens": 48}}),
        };
        let o = Outcome::from_run(&done);
        assert_eq!(o.ending, Ending::Completed { text: "hi".into() });
        assert_eq!(o.usage, Usage { input: 42, output: 6, cache_read: 1, total: 48 });
        assert_eq!(o.reply().ok(), Some("hi"));

        let failed =
            RunOutcome { status: RunStatus::Failed, result: json!({"error": "no key", "errorKind": "unknown"}) };
        assert!(Outcome::from_run(&failed).reply().is_err());
        let timeout = RunOutcome { status: RunStatus::Aborted, result: json!({"text": "par", "reason": "timeout"}) };
        assert!(Outcome::from_run(&timeout).reply().is_err());
        let stopped = RunOutcome { status: RunStatus::Aborted, result: json!({"text": "par", "reason": "rpc"}) };
        assert_eq!(Outcome::from_run(&stopped).reply().ok(), Some("par"));
    }
}
