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
//! Delivery (upstream's `target`/`to`): a reply with something to say is queued in the durable
//! outbox for the target chat, so it survives a restart and is retried like any reply. `last` is
//! the chat the agent last answered a message in (remembered by the router through
//! [`remember_route`], kept in the store); a channel id (`telegram`) goes to `to` on `accountId`
//! (or, without `to`, to the last chat when it is on that channel); `none` delivers nothing. A
//! target that resolves to no chat skips the beat before any model call (`no-route`).
//!
//! Statuses: `ok-token` (the reply was an acknowledgement such as `NO_REPLY` or an edge
//! `HEARTBEAT_OK`: not delivered), `ok-empty` (no reply), `sent` (queued for the target chat; the
//! event names `channel` and `to`), `skipped` (`quiet-hours`, `requests-in-flight`, `no-route`,
//! or `no-delivery-target` for a reply with something to say under `target: "none"`, its text in
//! `message`), `failed`.
//!
//! The last beat's event is kept in the store, so `last-heartbeat` survives a restart. OK-only
//! turns stay in the transcript, as upstream's do (it keeps them "for audit/replay" and only its
//! UI hides them).

use std::collections::HashMap;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use parking_lot::Mutex;
use serde_json::{Value, json};
use tokio::sync::{Notify, watch};
use tokio::time::Instant;

use clawgate_channels::{AccountKey, InboundMessage, OutboundMessage, chunk_text};
use clawgate_store::{EntryStatus, KvStore, RunKind, SessionStore, TranscriptRole, TranscriptStore};

use crate::agent::{AgentService, RunOutcome, RunRequest, transcript};
use crate::channels::Outbox;
use crate::error::CoreError;
use crate::events::Events;
use crate::gateway::Store;
use crate::heartbeat::{HeartbeatSpec, Reply};
use crate::tasks::Tasks;
use crate::time::now_ms;

/// How often the schedule is looked at again (a config reload may add, drop or change a beat).
const RECHECK: Duration = Duration::from_secs(30);
/// Bound on one heartbeat turn (the run's own timeout normally ends it first).
const TURN_LIMIT: Duration = Duration::from_secs(15 * 60);
/// Characters of a reply kept in the event's `message`.
const MESSAGE_PREVIEW: usize = 500;
/// Where the last beat's event is kept (`last-heartbeat` after a restart).
const LAST_KEY: &str = "heartbeat:last";
/// Where an agent's last chat is kept (`target: "last"`), followed by the agent id.
const ROUTE_KEY: &str = "heartbeat:route:";

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
    /// Replies worth delivering go to their chat through it (durable, retried).
    outbox: Outbox,
    /// The runner's loop runs under it and stops with it.
    tasks: Tasks,
    /// `set-heartbeats`: interval beats run only while set.
    enabled: AtomicBool,
    /// The last beat's event (`last-heartbeat`), also kept in the store and read back by
    /// [`HeartbeatService::start`]. A watch, so a caller can wait for the next beat.
    last: watch::Sender<Option<Value>>,
    /// `(agent, session)` pairs a `wake {mode:"now"}` asked to beat; drained by the loop.
    wake_now: Mutex<Vec<(String, String)>>,
    wake: Notify,
    /// Several gateways on one database: interval beats run only on the one this says holds
    /// the heartbeat lease (`None`: always here). Wakes run where they were asked for.
    owner: Mutex<Option<watch::Receiver<bool>>>,
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
    pub fn new(store: Store, agents: AgentService, events: Events, tasks: Tasks, outbox: Outbox) -> Self {
        Self {
            inner: Arc::new(Inner {
                store,
                agents,
                events,
                outbox,
                tasks,
                enabled: AtomicBool::new(true),
                last: watch::channel(None).0,
                wake_now: Mutex::new(Vec::new()),
                wake: Notify::new(),
                owner: Mutex::new(None),
            }),
        }
    }

    /// Read the last beat back from the store, then start the loop under the task tracker.
    pub async fn start(&self) {
        match self.inner.store.get(LAST_KEY).await {
            Ok(Some(text)) => match serde_json::from_str::<Value>(&text) {
                Ok(event) if event.is_object() => {
                    self.inner.last.send_if_modified(|last| last.is_none() && last.replace(event).is_none());
                }
                _ => tracing::warn!("the stored last heartbeat is not an event; last-heartbeat starts empty"),
            },
            Ok(None) => {}
            Err(e) => tracing::warn!(error = %e, "cannot read the last heartbeat; last-heartbeat starts empty"),
        }
        self.inner.tasks.spawn("heartbeat", self.clone().run());
    }

    /// Run interval beats only while `owner` is `true` (this gateway holds the cluster's
    /// heartbeat lease), so several gateways on one database beat once per interval.
    pub fn beat_only_while(&self, owner: watch::Receiver<bool>) {
        *self.inner.owner.lock() = Some(owner);
    }

    fn beats_here(&self) -> bool {
        self.inner.owner.lock().as_ref().is_none_or(|o| *o.borrow())
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
                    if !self.beats_here() {
                        // Another gateway beats; this one keeps the schedule, ready to take over.
                        for (id, spec) in &beating {
                            if schedule.get(id).is_some_and(|(_, at)| *at <= Instant::now()) {
                                schedule.insert(id.clone(), (spec.every_ms, Instant::now() + ms(spec.every_ms)));
                            }
                        }
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
        let result = if !spec.active_at_ms(ts) {
            Beat::skipped("quiet-hours")
        } else if !self.inner.agents.active_runs(session_key).is_empty() {
            Beat::skipped("requests-in-flight")
        } else {
            match self.route(agent_id, spec).await {
                Ok(route) => self.turn(agent_id, session_key, spec, route.as_ref()).await,
                Err(reason) => Beat::skipped(reason),
            }
        };
        let mut event = json!({"ts": ts, "status": result.status, "durationMs": started.elapsed().as_millis() as u64});
        if let Some(reason) = result.reason {
            event["reason"] = json!(reason);
        }
        if let Some(message) = result.message {
            event["message"] = json!(message);
        }
        if let Some(route) = result.sent_to {
            event["channel"] = json!(route.key.channel);
            event["to"] = json!(route.to());
            if route.key.account != "default" {
                event["accountId"] = json!(route.key.account);
            }
        }
        tracing::info!(agent = agent_id, status = result.status, reason = ?event.get("reason"), "heartbeat");
        self.inner.last.send_replace(Some(event.clone()));
        if let Err(e) = self.inner.store.set(LAST_KEY, &event.to_string()).await {
            tracing::warn!(error = %e, "cannot store the last heartbeat; last-heartbeat is lost at a restart");
        }
        self.inner.events.heartbeat(&event);
        event
    }

    /// Where a reply of this beat would go: `Ok(None)` for `target: "none"`, `Err(reason)` when
    /// the target names no chat (the beat is skipped before the model is asked).
    async fn route(&self, agent_id: &str, spec: &HeartbeatSpec) -> Result<Option<Route>, &'static str> {
        let last = || async { last_route(&self.inner.store, agent_id).await };
        let account_ok = |r: &Route| spec.account_id.as_ref().is_none_or(|a| *a == r.key.account);
        match spec.target.as_str() {
            "none" => Ok(None),
            // Upstream's operator DM comes from `commands.ownerAllowFrom`, which clawgate lacks.
            "owner" => Err("no-route"),
            "last" => last().await.filter(account_ok).map(Some).ok_or("no-route"),
            channel => match &spec.to {
                Some(to) => {
                    let account = spec.account_id.as_deref().unwrap_or("default");
                    Ok(Some(Route::parse(AccountKey::new(channel, account), to)))
                }
                None => last().await.filter(|r| r.key.channel == channel && account_ok(r)).map(Some).ok_or("no-route"),
            },
        }
    }

    /// Queue `text` for `route`'s chat in the outbox, idempotent per beat.
    async fn deliver(&self, route: &Route, run_id: &str, text: &str) -> Result<(), String> {
        let outbox = &self.inner.outbox;
        let Some(caps) = outbox.capabilities(&route.key) else {
            return Err(format!("channel account {} is not configured or not running", route.key));
        };
        let messages = chunk_text(text, caps.max_text, caps.measure)
            .into_iter()
            .map(|c| OutboundMessage::text(&route.chat_id, route.thread_id.clone(), c))
            .collect();
        outbox.send(&route.key, run_id, messages).await.map(|_| ()).map_err(|e| e.to_string())
    }

    async fn turn(&self, agent_id: &str, session_key: &str, spec: &HeartbeatSpec, route: Option<&Route>) -> Beat {
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
            context: None,
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
        let deliver = match (&outcome, spec.reply(&text)) {
            (RunOutcome::Completed(_), _) if text.is_empty() => return Beat::ok("ok-empty"),
            (RunOutcome::Completed(_), Reply::Ack) => return Beat::ok("ok-token"),
            (RunOutcome::Completed(_), Reply::Deliver(d)) => d,
            (RunOutcome::Failed(f), _) if !f.error.is_empty() => return Beat::failed(f.error.clone()),
            (other, _) => return Beat::failed(format!("the heartbeat turn ended {}", other.status().as_str())),
        };
        let message = Some(deliver.chars().take(MESSAGE_PREVIEW).collect());
        let Some(route) = route else {
            return Beat { status: "skipped", reason: Some("no-delivery-target".into()), message, sent_to: None };
        };
        match self.deliver(route, &run_id, &deliver).await {
            Ok(()) => Beat { status: "sent", reason: None, message, sent_to: Some(route.clone()) },
            Err(e) => Beat { status: "failed", reason: Some(format!("cannot deliver: {e}")), message, sent_to: None },
        }
    }
}

/// A chat a heartbeat reply goes to.
#[derive(Debug, Clone, PartialEq, Eq)]
struct Route {
    key: AccountKey,
    chat_id: String,
    thread_id: Option<String>,
}

impl Route {
    /// From upstream's `to`: `<chat>` or `<chat>:topic:<thread>`.
    fn parse(key: AccountKey, to: &str) -> Self {
        match to.split_once(":topic:") {
            Some((chat, thread)) => Route { key, chat_id: chat.to_owned(), thread_id: Some(thread.to_owned()) },
            None => Route { key, chat_id: to.to_owned(), thread_id: None },
        }
    }

    /// Upstream's `to` for this chat.
    fn to(&self) -> String {
        match &self.thread_id {
            Some(t) => format!("{}:topic:{t}", self.chat_id),
            None => self.chat_id.clone(),
        }
    }
}

/// Remember that `agent_id` last talked in `msg`'s chat (what `target: "last"` delivers to).
/// The router calls it for every message that starts an agent turn; a failure is logged only
/// (the heartbeat then goes to the previous chat, or is skipped).
pub async fn remember_route(store: &Store, agent_id: &str, msg: &InboundMessage) {
    let value =
        json!({"channel": msg.channel, "account": msg.account, "chatId": msg.chat_id, "threadId": msg.thread_id});
    if let Err(e) = store.set(&format!("{ROUTE_KEY}{agent_id}"), &value.to_string()).await {
        tracing::warn!(agent = agent_id, error = %e, "cannot remember the agent's last chat for its heartbeat");
    }
}

/// The chat `agent_id` last talked in, if any was remembered.
async fn last_route(store: &Store, agent_id: &str) -> Option<Route> {
    let text = store.get(&format!("{ROUTE_KEY}{agent_id}")).await.ok()??;
    let v: Value = serde_json::from_str(&text).ok()?;
    let s = |k: &str| v.get(k).and_then(Value::as_str).filter(|s| !s.is_empty()).map(str::to_owned);
    Some(Route {
        key: AccountKey::new(&s("channel")?, &s("account")?),
        chat_id: s("chatId")?,
        thread_id: s("threadId"),
    })
}

/// The outcome of one beat, before it becomes the event.
struct Beat {
    status: &'static str,
    reason: Option<String>,
    message: Option<String>,
    /// The chat the reply was queued for (`sent`).
    sent_to: Option<Route>,
}

impl Beat {
    fn ok(status: &'static str) -> Self {
        Beat { status, reason: None, message: None, sent_to: None }
    }

    fn skipped(reason: &str) -> Self {
        Beat { status: "skipped", reason: Some(reason.to_owned()), message: None, sent_to: None }
    }

    fn failed(reason: String) -> Self {
        Beat { status: "failed", reason: Some(reason), message: None, sent_to: None }
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
        to: None,
        account_id: None,
        ack_max_chars: crate::heartbeat::DEFAULT_ACK_MAX_CHARS,
        active_hours: None,
    }
}

fn ms(n: u64) -> Duration {
    Duration::from_millis(n)
}
