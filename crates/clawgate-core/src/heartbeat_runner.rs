//! `HeartbeatService`: every agent with a heartbeat (see [`crate::heartbeat`]) gets one agent
//! turn per interval in its main session, through the normal agent service; each beat ends in a
//! `heartbeat` event (`{ts, status, reason?, durationMs?, message?}`, contract §6.2/§7) that
//! `last-heartbeat` returns until the next one.
//!
//! `wake` and `/hooks/wake` queue a system event in the session's transcript (durable: the next
//! turn there reads it, which is what `next-heartbeat` means); `mode: "now"` also starts a
//! heartbeat turn in that session at once. `set-heartbeats {enabled}` pauses and resumes the
//! interval beats.
//!
//! Statuses: `ok-token` (the reply was an acknowledgement such as `NO_REPLY`: not delivered),
//! `ok-empty` (no reply), `sent` (never yet: delivery to a chat target is the next step, so a
//! reply with something to say is `skipped` with reason `no-delivery-target` and its text in
//! `message`), `skipped` (`quiet-hours`, `requests-in-flight`, `disabled`), `failed`.

use std::collections::HashMap;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use parking_lot::Mutex;
use serde_json::{Value, json};
use tokio::sync::{Notify, watch};
use tokio::time::Instant;

use clawgate_store::{EntryStatus, RunKind, SessionStore, TranscriptRole, TranscriptStore};

use crate::agent::{AgentService, RunOutcome, RunRequest, transcript};
use crate::error::CoreError;
use crate::events::Events;
use crate::gateway::Store;
use crate::heartbeat::HeartbeatSpec;
use crate::tasks::Tasks;
use crate::time::now_ms;

/// How often the schedule is looked at again (a config reload may add, drop or change a beat).
const RECHECK: Duration = Duration::from_secs(30);
/// Bound on one heartbeat turn (the run's own timeout normally ends it first).
const TURN_LIMIT: Duration = Duration::from_secs(15 * 60);
/// Characters of a reply kept in the event's `message`.
const MESSAGE_PREVIEW: usize = 500;

/// The heartbeat runner. Cheap to clone: clones share one runner.
#[derive(Clone)]
pub struct HeartbeatService {
    inner: Arc<Inner>,
}

struct Inner {
    /// Main sessions and the system events queued in their transcripts.
    store: Store,
    /// Runs the turns; its agents config says who beats and how often.
    agents: AgentService,
    /// The `heartbeat` broadcast and session events.
    events: Events,
    /// The runner's loop runs under it and stops with it.
    tasks: Tasks,
    /// `set-heartbeats`: interval beats run only while set.
    enabled: AtomicBool,
    /// The last beat's event (`last-heartbeat`), kept in memory: a restart starts with none.
    /// A watch, so a caller can wait for the next beat.
    last: watch::Sender<Option<Value>>,
    /// `(agent, session)` pairs a `wake {mode:"now"}` asked to beat; drained by the loop.
    wake_now: Mutex<Vec<(String, String)>>,
    wake: Notify,
}

impl std::fmt::Debug for HeartbeatService {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("HeartbeatService").field("enabled", &self.enabled()).finish_non_exhaustive()
    }
}

/// What a `wake` did with its text.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum WakeOutcome {
    /// Appended to the session as a system event.
    Queued,
    /// The same text was already the session's last entry: not appended again.
    Coalesced,
}

impl WakeOutcome {
    /// The wire word (`eventOutcome`).
    pub fn as_str(self) -> &'static str {
        match self {
            WakeOutcome::Queued => "queued",
            WakeOutcome::Coalesced => "coalesced",
        }
    }
}

impl HeartbeatService {
    /// A runner (enabled, not started) over these handles.
    pub fn new(store: Store, agents: AgentService, events: Events, tasks: Tasks) -> Self {
        Self {
            inner: Arc::new(Inner {
                store,
                agents,
                events,
                tasks,
                enabled: AtomicBool::new(true),
                last: watch::channel(None).0,
                wake_now: Mutex::new(Vec::new()),
                wake: Notify::new(),
            }),
        }
    }

    /// Start the loop under the task tracker.
    pub fn start(&self) {
        self.inner.tasks.spawn("heartbeat", self.clone().run());
    }

    /// Whether interval beats run.
    pub fn enabled(&self) -> bool {
        self.inner.enabled.load(Ordering::Acquire)
    }

    /// `set-heartbeats`: pause or resume interval beats; returns the new state.
    pub fn set_enabled(&self, on: bool) -> bool {
        self.inner.enabled.store(on, Ordering::Release);
        // The loop re-reads the schedule (a resumed runner counts its interval from now).
        self.inner.wake.notify_one();
        on
    }

    /// The last beat's event, if one ran since start.
    pub fn last(&self) -> Option<Value> {
        self.inner.last.borrow().clone()
    }

    /// Every beat's event as it happens (the current value is the last one).
    pub fn subscribe(&self) -> watch::Receiver<Option<Value>> {
        self.inner.last.subscribe()
    }

    /// `wake {mode, text, sessionKey?}` for an agent: the text is queued in the session's
    /// transcript as a system event (the next turn there reads it); with `now` a heartbeat turn
    /// starts in that session at once. `source` names the caller in the entry.
    pub async fn wake(
        &self,
        agent_id: &str,
        session_key: &str,
        text: &str,
        now: bool,
        source: &str,
    ) -> Result<WakeOutcome, CoreError> {
        let store = &self.inner.store;
        let at = now_ms();
        let session = store.ensure_session(session_key, agent_id, at).await?;
        let mode = if now { "now" } else { "next-heartbeat" };
        let last = store.tail(&session.session_id, 1, None).await.unwrap_or_default();
        let same = last.last().is_some_and(|e| {
            e.role == TranscriptRole::System && e.content.get("content").and_then(Value::as_str) == Some(text)
        });
        let outcome = if same {
            WakeOutcome::Coalesced
        } else {
            let event = json!({"role": "system", "content": text, "timestamp": at,
                               "__openclaw": {"source": source, "mode": mode}});
            let entry =
                store.append(&session.session_id, TranscriptRole::System, &event, None, EntryStatus::Final, at).await?;
            self.inner.events.session_message(session_key, &transcript::history_message(&entry));
            self.inner.events.session_changed(session_key, "system-event");
            WakeOutcome::Queued
        };
        if now {
            self.inner.wake_now.lock().push((agent_id.to_owned(), session_key.to_owned()));
            self.inner.wake.notify_one();
        }
        tracing::info!(session = %session_key, mode, outcome = outcome.as_str(), "wake event queued");
        Ok(outcome)
    }

    async fn run(self) {
        let cancel = self.inner.tasks.token();
        // Per agent: its interval and when it beats next.
        let mut schedule: HashMap<String, (u64, Instant)> = HashMap::new();
        let mut was_enabled = self.enabled();
        loop {
            let now = Instant::now();
            let enabled = self.enabled();
            if enabled && !was_enabled {
                schedule.clear();
            }
            was_enabled = enabled;
            let agents = self.inner.agents.agents();
            let beating: Vec<(String, HeartbeatSpec)> =
                agents.agents.iter().filter_map(|a| Some((a.id.clone(), a.heartbeat.clone()?))).collect();
            schedule.retain(|id, _| beating.iter().any(|(b, _)| b == id));
            for (id, spec) in &beating {
                let entry = schedule.entry(id.clone()).or_insert((spec.every_ms, now + ms(spec.every_ms)));
                if entry.0 != spec.every_ms {
                    *entry = (spec.every_ms, now + ms(spec.every_ms));
                }
            }
            let next = if enabled { schedule.values().map(|(_, at)| *at).min() } else { None };
            // Looked at again at least every RECHECK, so a reloaded interval applies soon.
            let until = next.map_or(now + RECHECK, |at| at.min(now + RECHECK));
            tokio::select! {
                _ = cancel.cancelled() => break,
                _ = self.inner.wake.notified() => {
                    let asked: Vec<(String, String)> = std::mem::take(&mut *self.inner.wake_now.lock());
                    for (agent_id, session_key) in asked {
                        let spec = agents.get(&agent_id).and_then(|a| a.heartbeat.clone()).unwrap_or_else(fallback_spec);
                        self.beat(&agent_id, &session_key, &spec).await;
                        if let Some(slot) = schedule.get_mut(&agent_id) {
                            slot.1 = Instant::now() + ms(slot.0);
                        }
                    }
                }
                _ = tokio::time::sleep_until(until) => {
                    if !self.enabled() || next.is_none_or(|at| at > Instant::now()) {
                        continue;
                    }
                    for (id, spec) in &beating {
                        let due = schedule.get(id).is_some_and(|(_, at)| *at <= Instant::now());
                        if due {
                            self.beat(id, &main_session(id), spec).await;
                            schedule.insert(id.clone(), (spec.every_ms, Instant::now() + ms(spec.every_ms)));
                        }
                    }
                }
            }
        }
    }

    /// One heartbeat of `agent_id` in `session_key`: a turn unless skipped; the event is stored
    /// as the last one and broadcast. Returns it.
    pub async fn beat(&self, agent_id: &str, session_key: &str, spec: &HeartbeatSpec) -> Value {
        let started = Instant::now();
        let ts = now_ms();
        let minute = u32::try_from(ts.rem_euclid(86_400_000) / 60_000).unwrap_or(0);
        let result = if !spec.active_at(minute) {
            Beat::skipped("quiet-hours")
        } else if !self.inner.agents.active_runs(session_key).is_empty() {
            Beat::skipped("requests-in-flight")
        } else {
            self.turn(agent_id, session_key, spec).await
        };
        let mut event = json!({"ts": ts, "status": result.status, "durationMs": started.elapsed().as_millis() as u64});
        if let Some(reason) = result.reason {
            event["reason"] = json!(reason);
        }
        if let Some(message) = result.message {
            event["message"] = json!(message);
        }
        tracing::info!(agent = agent_id, status = result.status, reason = ?event.get("reason"), "heartbeat");
        self.inner.last.send_replace(Some(event.clone()));
        self.inner.events.heartbeat(&event);
        event
    }

    async fn turn(&self, agent_id: &str, session_key: &str, spec: &HeartbeatSpec) -> Beat {
        let agents = &self.inner.agents;
        let run_id = format!("heartbeat-{}", uuid::Uuid::new_v4());
        let req = RunRequest {
            run_id: run_id.clone(),
            session_key: session_key.to_owned(),
            agent_id: agent_id.to_owned(),
            message: spec.prompt.clone(),
            kind: RunKind::Agent,
            timeout: None,
            extra_system: Some(
                "This turn is a heartbeat: a periodic check started by the gateway, not a message from a person."
                    .into(),
            ),
            client: Some(json!({"id": "heartbeat", "mode": "heartbeat"})),
        };
        if let Err(e) = agents.submit(req).await {
            return Beat::failed(format!("cannot start the heartbeat turn: {e}"));
        }
        let deadline = Instant::now() + TURN_LIMIT;
        let outcome = loop {
            match agents.wait(&run_id, Duration::from_secs(30)).await {
                Ok(Some(o)) if o.is_terminal() => break o,
                Ok(Some(_)) if Instant::now() < deadline && !self.inner.tasks.is_stopping() => {}
                Ok(Some(_)) => return Beat::failed("the heartbeat turn did not finish in time".into()),
                Ok(None) => return Beat::failed("the heartbeat turn was lost".into()),
                Err(e) => return Beat::failed(e.to_string()),
            }
        };
        let text = outcome.text().trim().to_owned();
        match outcome {
            RunOutcome::Completed(_) if text.is_empty() => Beat::ok("ok-empty"),
            RunOutcome::Completed(_) if spec.is_ack(&text) => Beat::ok("ok-token"),
            RunOutcome::Completed(_) => Beat {
                status: "skipped",
                reason: Some("no-delivery-target".into()),
                message: Some(text.chars().take(MESSAGE_PREVIEW).collect()),
            },
            RunOutcome::Failed(f) if !f.error.is_empty() => Beat::failed(f.error),
            other => Beat::failed(format!("the heartbeat turn ended {}", other.status().as_str())),
        }
    }
}

/// The outcome of one beat, before it becomes the event.
struct Beat {
    status: &'static str,
    reason: Option<String>,
    message: Option<String>,
}

impl Beat {
    fn ok(status: &'static str) -> Self {
        Beat { status, reason: None, message: None }
    }

    fn skipped(reason: &str) -> Self {
        Beat { status: "skipped", reason: Some(reason.to_owned()), message: None }
    }

    fn failed(reason: String) -> Self {
        Beat { status: "failed", reason: Some(reason), message: None }
    }
}

/// An agent's main session key.
pub fn main_session(agent_id: &str) -> String {
    format!("agent:{agent_id}:main")
}

/// The heartbeat a `wake {mode:"now"}` runs for an agent that has none configured: upstream's
/// defaults.
fn fallback_spec() -> HeartbeatSpec {
    HeartbeatSpec {
        every: crate::heartbeat::DEFAULT_EVERY.into(),
        every_ms: 1_800_000,
        prompt: crate::heartbeat::DEFAULT_PROMPT.into(),
        target: crate::heartbeat::DEFAULT_TARGET.into(),
        ack_max_chars: crate::heartbeat::DEFAULT_ACK_MAX_CHARS,
        active_hours: None,
    }
}

fn ms(n: u64) -> Duration {
    Duration::from_millis(n)
}
