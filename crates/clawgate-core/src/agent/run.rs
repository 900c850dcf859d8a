//! Executing one run: context from the transcript tail, the provider stream with the tool-call
//! loop, the `agent`/`chat` event streams, and the transcript writes that keep a crash from
//! leaving half a reply behind (the assistant message is written once, at the end).

use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use futures_util::StreamExt;
use serde_json::{Value, json};

use clawgate_llm::{
    ChatMessage, ChatRequest, LlmError, ModelRef, RetryPolicy, StopReason, StreamEvent, ToolCall, Usage,
    stream_with_retry,
};
use clawgate_protocol::methods::agent::RunUsage;
use clawgate_store::{
    EntryStatus, NewEntry, RunRecord, RunStore, SessionStore, StartedRun, TranscriptRole, TranscriptStore,
};

use super::transcript::{self, assistant_message, user_message, with_meta};
use super::{
    AbortReason, AbortedRun, AgentService, CompletedRun, ErrorKind, FailedRun, RunOutcome, RunRequest, tools, window,
};
use crate::time::now_ms;

/// Model calls per turn at most (tool round trips included).
const MAX_TOOL_ROUNDS: usize = 8;

/// Emits the `agent` and `chat` events of one run with its own `seq`.
struct Emitter<'a> {
    svc: &'a AgentService,
    run_id: String,
    session_key: String,
    agent_id: String,
    seq: AtomicU64,
}

impl Emitter<'_> {
    fn agent(&self, stream: &str, data: Value) {
        let seq = self.seq.fetch_add(1, Ordering::AcqRel) + 1;
        // sessionKey/agentId are not in the published AgentEvent schema, but the real gateway
        // sends them and clients demultiplex sessions by them (openclaw-node, clawgate-client).
        let payload = json!({
            "runId": self.run_id, "seq": seq, "stream": stream, "ts": now_ms(), "isHeartbeat": false, "data": data,
            "sessionKey": self.session_key, "agentId": self.agent_id,
        });
        self.svc.publish(&self.run_id, "agent", &payload);
        self.svc.inner.events.run_event("agent", &self.session_key, &payload, stream == "assistant");
    }

    fn chat(&self, state: &str, extra: Value) {
        let mut payload = json!({
            "runId": self.run_id, "sessionKey": self.session_key, "agentId": self.agent_id,
            "seq": self.seq.load(Ordering::Acquire).max(1), "state": state,
        });
        if let (Some(p), Some(e)) = (payload.as_object_mut(), extra.as_object()) {
            for (k, v) in e {
                p.insert(k.clone(), v.clone());
            }
        }
        self.svc.publish(&self.run_id, "chat", &payload);
        self.svc.inner.events.run_event("chat", &self.session_key, &payload, state == "delta");
    }

    fn status(&self, phase: &str) {
        self.agent("run_status", json!({"phase": phase}));
        self.chat("status", json!({"phase": phase}));
    }
}

enum Ending {
    Completed { text: String, stop: StopReason, usage: Option<Usage> },
    Aborted { text: String, reason: AbortReason },
    Failed { text: String, error: String, kind: ErrorKind },
}

/// What the lane prepares of a run while claiming it (inside the claim's transaction, so
/// nothing slow): its request decoded, and the user entry written with the claim.
pub(super) struct Prepared {
    req: RunRequest,
    /// The stored message is a stateless run's excerpt.
    cut: bool,
    /// The stored request does not decode.
    unreadable: Option<serde_json::Error>,
}

/// Claims the session's next run and writes its user message in the same store transaction,
/// then executes it. `Ok(false)` when nothing was claimed.
pub(super) async fn start_next(svc: &AgentService, session_key: &str) -> clawgate_store::Result<bool> {
    let begun = Instant::now();
    let owner = svc.inner.cluster.id();
    let start =
        svc.inner.store.start_next(session_key, owner, now_ms(), |record, session| prepare(svc, record, session));
    let Some(started) = start.await? else { return Ok(false) };
    if started.entry.is_some() {
        // The user entry was written by this transaction: timed as the append it replaces.
        svc.inner.metrics.store_op("transcript_append", begun.elapsed());
    }
    execute(svc, started).await;
    Ok(true)
}

/// The request of a claimed run and, when its turn can begin, its user message: the message
/// enters the transcript when its run starts, so the transcript reads in turn order even when
/// messages queued behind a running turn. No entry when the request does not decode, the
/// session is gone (the run recreates it and appends as before), or a stateless run's whole
/// message is no longer held (the run fails without one).
fn prepare(
    svc: &AgentService,
    record: &mut RunRecord,
    session: Option<&clawgate_store::SessionRecord>,
) -> (Prepared, Option<NewEntry>) {
    let (mut req, cut, unreadable) = match RunRequest::from_record(record) {
        Ok((req, cut)) => (req, cut, None),
        Err(e) => {
            let req = RunRequest {
                run_id: record.run_id.clone(),
                session_key: record.session_key.clone(),
                agent_id: super::main_agent(),
                message: String::new(),
                kind: record.kind,
                timeout: None,
                extra_system: None,
                client: None,
                context: None,
            };
            (req, false, Some(e))
        }
    };
    let ready = unreadable.is_none() && session.is_some() && (!cut || svc.holds_unstored(&req.run_id));
    let entry = ready.then(|| NewEntry {
        role: TranscriptRole::User,
        // The message goes to the store and from there (the transcript) to the model: the
        // request keeps no copy of it while the turn runs.
        content: user_message(
            std::mem::take(&mut req.message),
            &req.run_id,
            req.client.as_ref(),
            req.context.as_ref(),
            record.created_at_ms,
        ),
        status: EntryStatus::Final,
    });
    (Prepared { req, cut, unreadable }, entry)
}

/// Execute a started run to its end.
async fn execute(svc: &AgentService, started: StartedRun<Prepared>) {
    let StartedRun { run: record, session, entry, prepared: Prepared { mut req, cut, unreadable } } = started;
    // A stateless run stored only an excerpt; the whole message waits in memory for the model.
    let full = svc.take_unstored(&req.run_id);
    let active = svc.register(&req.run_id, &req.session_key);
    let _in_flight = svc.inner.metrics.run_started();
    let started = Instant::now();
    let started_at = now_ms();
    let em = Emitter {
        svc,
        run_id: req.run_id.clone(),
        session_key: req.session_key.clone(),
        agent_id: req.agent_id.clone(),
        seq: AtomicU64::new(0),
    };
    if let Some(e) = unreadable {
        tracing::warn!(run = %req.run_id, error = %e, "the stored request of a run does not decode");
        let error = format!("the stored request of this run cannot be read ({e}); send the message again");
        return finish_failed(svc, &em, &req, started_at, &error).await;
    }
    let agents = svc.agents();
    let agent = agents.get(&req.agent_id).cloned().unwrap_or_else(|| agents.agents[0].clone());
    let model_str = agents.model_for(&agent);
    let timeout = req.timeout.unwrap_or(Duration::from_secs(agents.timeout_secs));

    // `submit` created the session; only a session deleted while the run waited (or a run
    // recovered from an older database) needs creating again.
    let session = match session {
        Some(s) => s,
        None => match existing_or_new_session(svc, &req).await {
            Ok(s) => s,
            Err(e) => {
                return finish_failed(svc, &em, &req, started_at, &format!("session store unavailable: {e}")).await;
            }
        },
    };
    if cut && full.is_none() {
        let error = "the whole prompt of this stateless request was held in memory only and a restart lost it; send the request again";
        return finish_failed(svc, &em, &req, started_at, error).await;
    }
    // What the model reads of this turn in place of the stored excerpt.
    let whole = full.map(|m| (req.run_id.clone(), m));
    let entry = match entry {
        // Written with the claim.
        Some(entry) => entry,
        None => {
            let user = user_message(
                std::mem::take(&mut req.message),
                &req.run_id,
                req.client.as_ref(),
                req.context.as_ref(),
                record.created_at_ms,
            );
            let append = svc.inner.store.append(
                &session.session_id,
                TranscriptRole::User,
                &user,
                Some(&req.run_id),
                EntryStatus::Final,
                now_ms(),
            );
            match svc.inner.metrics.time_store("transcript_append", append).await {
                Ok(entry) => entry,
                Err(e) => {
                    return finish_failed(svc, &em, &req, started_at, &format!("cannot record the message: {e}")).await;
                }
            }
        }
    };
    drop(record);
    svc.inner.windows.appended(&req.session_key, &session.session_id, &entry);
    svc.inner.events.session_message(&req.session_key, &transcript::into_history_message(entry));

    em.status("preparing_context");
    em.agent("lifecycle", json!({"phase": "start", "startedAt": started_at}));

    let ending = if active.cancel.is_cancelled() {
        let reason = (*active.reason.lock()).unwrap_or_default();
        Ending::Aborted { text: String::new(), reason }
    } else {
        match ModelRef::parse(&model_str) {
            Err(e) => Ending::Failed {
                text: String::new(),
                error: format!(
                    "invalid model \"{model_str}\": {e}; set agents.defaults.model.primary to \"<provider>/<model>\""
                ),
                kind: ErrorKind::Unknown,
            },
            Ok(model) => {
                let deadline = tokio::time::sleep(timeout);
                tokio::pin!(deadline);
                let turn = turn(svc, &em, &req, &agents, &agent, &session.session_id, &model, &active.cancel, whole);
                tokio::pin!(turn);
                tokio::select! {
                    ending = &mut turn => ending,
                    _ = &mut deadline => {
                        active.reason.lock().get_or_insert(AbortReason::Timeout);
                        active.cancel.cancel();
                        turn.await
                    }
                }
            }
        }
    };
    let model_ref = ModelRef::parse(&model_str).ok();
    let (provider, model) = model_ref.map(|m| (m.provider, m.model)).unwrap_or_default();
    let api = svc.registry().config(&provider).map(|c| c.api.as_str()).unwrap_or("openai-completions").to_owned();
    let duration_ms = started.elapsed().as_millis() as u64;
    let ended_at = now_ms();

    let outcome = match ending {
        Ending::Completed { text, stop, usage } => {
            let msg = with_meta(assistant_message(&text, ended_at), &api, &provider, &model, usage, stop.as_str());
            store_assistant(svc, &session.session_id, &req, &msg, EntryStatus::Final).await;
            let outcome = RunOutcome::Completed(CompletedRun {
                text,
                stop_reason: stop.as_str().to_owned(),
                provider,
                model,
                duration_ms,
                ended_at,
                session_id: session.session_id.clone(),
                usage: usage.map(run_usage),
            });
            // The run is recorded as finished before clients hear so: a repeat of its idempotency
            // key right after `final` must see "ok", not "in_flight".
            record_finish(svc, &req.run_id, &outcome).await;
            if let Some(u) = usage {
                em.agent("usage", json!({"inputTokens": u.input_tokens, "outputTokens": u.output_tokens}));
            }
            let text = outcome.text();
            em.agent(
                "lifecycle",
                json!({"phase": "end", "stopReason": stop.as_str(), "aborted": false, "startedAt": started_at, "endedAt": ended_at,
                       "terminalReply": {"disposition": "visible", "text": text}}),
            );
            em.chat("final", json!({"stopReason": stop.as_str(), "message": assistant_message(text, ended_at)}));
            outcome
        }
        Ending::Aborted { text, reason } => {
            let msg = assistant_message(&text, ended_at);
            if !text.is_empty() {
                store_assistant(svc, &session.session_id, &req, &msg, EntryStatus::Aborted).await;
            }
            let stop = reason.stop_reason();
            let outcome = RunOutcome::Aborted(AbortedRun {
                text,
                stop_reason: stop.to_owned(),
                reason,
                provider: Some(provider),
                model: Some(model),
                duration_ms: Some(duration_ms),
                ended_at,
                session_id: Some(session.session_id.clone()),
                queued: false,
            });
            record_finish(svc, &req.run_id, &outcome).await;
            em.chat("aborted", json!({"stopReason": stop, "message": msg}));
            em.agent(
                "lifecycle",
                json!({"phase": "end", "status": "cancelled", "aborted": true, "stopReason": stop, "startedAt": started_at, "endedAt": ended_at}),
            );
            outcome
        }
        Ending::Failed { text, error, kind } => {
            if !text.is_empty() {
                store_assistant(
                    svc,
                    &session.session_id,
                    &req,
                    &assistant_message(&text, ended_at),
                    EntryStatus::Error,
                )
                .await;
            }
            tracing::warn!(run = %req.run_id, session = %req.session_key, error = %error, "run failed");
            let outcome = RunOutcome::Failed(FailedRun {
                error: error.clone(),
                error_kind: kind,
                text: Some(text),
                provider: Some(provider),
                model: Some(model),
                duration_ms: Some(duration_ms),
                ended_at: Some(ended_at),
                session_id: Some(session.session_id.clone()),
            });
            record_finish(svc, &req.run_id, &outcome).await;
            em.chat("error", json!({"errorMessage": error, "errorKind": kind.as_str()}));
            em.agent(
                "lifecycle",
                json!({"phase": "error", "error": error, "startedAt": started_at, "endedAt": ended_at}),
            );
            outcome
        }
    };
    let max = agents.max_transcript_entries;
    if session.message_count as usize > max + max / 10 {
        // The window may hold entries the compaction removes.
        svc.inner.windows.forget(&req.session_key);
        match svc.inner.store.compact(&session.session_id, max).await {
            Ok(n) => tracing::info!(session = %req.session_key, removed = n, "compacted transcript"),
            Err(e) => tracing::warn!(session = %req.session_key, error = %e, "transcript compaction failed"),
        }
    }
    svc.inner.events.session_changed(&req.session_key, "run-finished");
    svc.complete(&req.run_id, outcome);
}

/// A provider's token counts as a run result reports them.
fn run_usage(u: Usage) -> RunUsage {
    RunUsage {
        input: u.input_tokens,
        output: u.output_tokens,
        cache_read: u.cache_read_tokens,
        cache_write: u.cache_write_tokens,
        total_tokens: u.input_tokens + u.output_tokens,
    }
}

fn add_usage(total: &mut Option<Usage>, u: Usage) {
    let e = total.get_or_insert_with(Usage::default);
    e.input_tokens += u.input_tokens;
    e.output_tokens += u.output_tokens;
    e.cache_read_tokens += u.cache_read_tokens;
    e.cache_write_tokens += u.cache_write_tokens;
}

async fn existing_or_new_session(
    svc: &AgentService,
    req: &RunRequest,
) -> clawgate_store::Result<clawgate_store::SessionRecord> {
    let store = &svc.inner.store;
    match store.get_session(&req.session_key).await? {
        Some(s) => Ok(s),
        None => store.ensure_session(&req.session_key, &req.agent_id, now_ms()).await,
    }
}

/// Records a run's end, retrying while the storage is out (full disk, I/O, busy) until it is
/// stored or the gateway stops.
///
/// Class closed: *memory and the store disagreeing after a failed write*. A run whose end was
/// not stored stayed `running` in the store after this process had forgotten it, and the
/// session's lane never claims past a running run — the session was wedged until a restart
/// (recovery marks such runs interrupted). The lane now holds the session until the end is
/// durable, and it continues by itself once space returns.
async fn record_finish(svc: &AgentService, run_id: &str, outcome: &RunOutcome) {
    let status = outcome.status();
    svc.inner.metrics.run_finished(status.as_str());
    let result = outcome.to_stored();
    let result = result.as_ref();
    let stored = until_stored(svc, run_id, "the end of a run", move || async move {
        match svc.inner.metrics.time_store("run_finish", svc.inner.store.finish(run_id, status, result, now_ms())).await
        {
            // Already terminal (e.g. an abort of the queued run won the race): nothing to do.
            Err(clawgate_store::StoreError::Conflict(_)) => Ok(()),
            other => other.map(drop),
        }
    })
    .await;
    if stored.is_none() && !svc.is_stopping() {
        tracing::error!(run = %run_id, "cannot record the end of a run");
    }
}

async fn store_assistant(svc: &AgentService, session_id: &str, req: &RunRequest, msg: &Value, status: EntryStatus) {
    let appended = until_stored(svc, &req.run_id, "the assistant message", move || {
        let append =
            svc.inner.store.append(session_id, TranscriptRole::Assistant, msg, Some(&req.run_id), status, now_ms());
        svc.inner.metrics.time_store("transcript_append", append)
    })
    .await;
    if let Some(entry) = appended {
        svc.inner.windows.appended(&req.session_key, session_id, &entry);
        svc.inner.events.session_message(&req.session_key, &transcript::history_message(&entry));
    }
}

/// Runs a write until it succeeds, retrying with backoff (100 ms doubling to 5 s) while it fails
/// for a storage reason that clears by itself (full disk, I/O error, busy lock). `None` when it
/// failed for another reason (logged) or the gateway is stopping. Writes passed here are single
/// transactions, so a failed attempt left nothing behind and retrying cannot double them.
async fn until_stored<T, F, Fut>(svc: &AgentService, run_id: &str, what: &str, mut write: F) -> Option<T>
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = clawgate_store::Result<T>>,
{
    use clawgate_store::Fault;
    let mut attempt = 0u32;
    let mut waited = false;
    loop {
        match write().await {
            Ok(v) => {
                if waited {
                    tracing::info!(run = %run_id, what, "stored after the storage recovered");
                }
                return Some(v);
            }
            Err(e) if matches!(e.fault(), Some(Fault::DiskFull | Fault::Io | Fault::Busy)) => {
                if !waited {
                    tracing::warn!(run = %run_id, what, error = %e, "cannot store yet; retrying until the storage recovers");
                    waited = true;
                }
                let stop = svc.inner.tasks.token();
                tokio::select! {
                    _ = stop.cancelled() => return None,
                    _ = tokio::time::sleep(super::STORAGE_BACKOFF.delay(attempt)) => {}
                }
                attempt = attempt.saturating_add(1);
            }
            Err(e) => {
                tracing::error!(run = %run_id, what, error = ?e, "cannot store");
                return None;
            }
        }
    }
}

async fn finish_failed(svc: &AgentService, em: &Emitter<'_>, req: &RunRequest, started_at: i64, error: &str) {
    let outcome = RunOutcome::Failed(FailedRun { error: error.to_owned(), ..FailedRun::default() });
    record_finish(svc, &req.run_id, &outcome).await;
    em.chat("error", json!({"errorMessage": error, "errorKind": ErrorKind::Unknown.as_str()}));
    em.agent("lifecycle", json!({"phase": "error", "error": error, "startedAt": started_at, "endedAt": now_ms()}));
    svc.complete(&req.run_id, outcome);
}

/// The history sent to the model: the newest transcript entries that fit the token budget
/// (`window::select`). From the session's in-memory window when it has one reaching back far
/// enough; else read backwards from the store a page at a time (never the whole transcript),
/// which also rebuilds the window. `whole` is `(run id, message)` of a stateless run: its user
/// entry stored an excerpt, the model reads the whole message.
async fn context(
    svc: &AgentService,
    session_key: &str,
    session_id: &str,
    budget_tokens: usize,
    mut whole: Option<(String, String)>,
) -> Result<Vec<ChatMessage>, String> {
    let windows = &svc.inner.windows;
    if let Some(messages) = windows.context(session_key, session_id, budget_tokens, &mut whole) {
        return Ok(messages);
    }
    const PAGE: usize = 50;
    let mut read: Vec<clawgate_store::TranscriptEntry> = Vec::new();
    let mut before: Option<i64> = None;
    loop {
        let tail = svc.inner.store.tail(session_id, PAGE, before);
        let mut page = svc.inner.metrics.time_store("transcript_tail", tail).await.map_err(|e| e.to_string())?;
        page.reverse();
        let reached_start = page.len() < PAGE;
        before = page.last().map(|e| e.seq).or(before);
        read.extend(page);
        // Pages come newest first; `read` stays newest first.
        let picked = window::select(window::messages_of(&read), reached_start, budget_tokens, &mut whole);
        if let Some(messages) = picked {
            let last_seq = read.first().map_or(0, |e| e.seq);
            windows.rebuild(session_key, session_id, last_seq, read, reached_start);
            return Ok(messages);
        }
    }
}

/// Why a run was cancelled ([`AbortReason::Rpc`] when nobody said).
fn cancel_reason(svc: &AgentService, run_id: &str) -> AbortReason {
    svc.lookup(run_id).and_then(|a| *a.reason.lock()).unwrap_or_default()
}

fn classify(e: &LlmError) -> ErrorKind {
    match e {
        LlmError::RateLimited { .. } => ErrorKind::RateLimit,
        LlmError::ContextOverflow { .. } => ErrorKind::ContextLength,
        LlmError::Timeout { .. } => ErrorKind::Timeout,
        _ => ErrorKind::Unknown,
    }
}

#[allow(clippy::too_many_arguments)]
async fn turn(
    svc: &AgentService,
    em: &Emitter<'_>,
    req: &RunRequest,
    agents: &super::AgentsConfig,
    agent: &super::config::AgentDef,
    session_id: &str,
    model: &ModelRef,
    cancel: &tokio_util::sync::CancellationToken,
    whole: Option<(String, String)>,
) -> Ending {
    let registry = svc.registry();
    let Some(provider) = registry.get(&model.provider) else {
        let known: Vec<&str> = registry.ids().collect();
        return Ending::Failed {
            text: String::new(),
            error: format!(
                "no provider \"{}\" is configured (known: {}); add models.providers.{} with baseUrl and api, or set agents.defaults.model.primary",
                model.provider,
                known.join(", "),
                model.provider
            ),
            kind: ErrorKind::Unknown,
        };
    };
    let budget = registry
        .model(model)
        .and_then(|m| m.context_window)
        .map(|w| (w as usize).saturating_sub(4096) / 2)
        .unwrap_or(super::config::DEFAULT_CONTEXT_TOKENS);
    let mut messages = match context(svc, &req.session_key, session_id, budget, whole).await {
        Ok(m) => m,
        Err(e) => {
            return Ending::Failed {
                text: String::new(),
                error: format!("cannot read the transcript: {e}"),
                kind: ErrorKind::Unknown,
            };
        }
    };
    let mut system = agents.system_prompt_for(agent);
    if let Some(extra) = &req.extra_system {
        system.push_str("\n\n");
        system.push_str(extra);
    }
    em.status("starting_model");
    em.agent("lifecycle", json!({"phase": "model", "provider": model.provider, "model": model.model}));
    let mut text = String::new();
    let mut usage: Option<Usage> = None;
    let item_id = format!("{}:1", req.run_id);
    for _round in 0..MAX_TOOL_ROUNDS {
        let request = ChatRequest {
            model: model.model.clone(),
            messages: messages.clone(),
            system: Some(system.clone()),
            tools: tools::specs(&*svc.inner.tools),
            max_tokens: None,
            temperature: None,
        };
        let mut stream = stream_with_retry(provider.clone(), request, cancel.child_token(), RetryPolicy::default());
        // The accumulator assembles this round's text, tool calls, usage and stop reason; the
        // loop adds what only the gateway does with each event (streaming it to clients).
        let mut round = clawgate_llm::StreamAccumulator::new();
        loop {
            let next = tokio::select! {
                n = stream.next() => n,
                _ = cancel.cancelled() => return Ending::Aborted { text, reason: cancel_reason(svc, &req.run_id) },
            };
            let event = match next {
                None => break,
                Some(Ok(event)) => event,
                Some(Err(LlmError::Cancelled)) => {
                    return Ending::Aborted { text, reason: cancel_reason(svc, &req.run_id) };
                }
                Some(Err(e)) => {
                    let kind = classify(&e);
                    return Ending::Failed { text, error: e.to_string(), kind };
                }
            };
            round.push(&event);
            match event {
                StreamEvent::TextDelta(delta) if !delta.is_empty() => {
                    text.push_str(&delta);
                    em.agent("assistant", json!({"text": text, "delta": delta, "itemId": item_id}));
                    em.chat("delta", json!({"deltaText": delta, "message": assistant_message(&text, now_ms())}));
                }
                StreamEvent::Usage(u) => {
                    svc.inner.metrics.tokens(u.input_tokens, u.output_tokens);
                    add_usage(&mut usage, u)
                }
                _ => {}
            }
        }
        let round = round.finish();
        let stop = round.stop_reason.clone().unwrap_or(StopReason::Stop);
        if round.tool_calls.is_empty() {
            return Ending::Completed { text, stop, usage };
        }
        // Tool round trip: record the call, run each tool, feed the results back.
        let calls: Vec<ToolCall> = round.tool_calls.clone();
        messages.push(round.to_message());
        for call in calls {
            let args = call.arguments_json().unwrap_or(Value::Null);
            em.agent("tool", json!({"phase": "start", "name": call.name, "toolCallId": call.id, "args": args}));
            let caller = tools::ToolCaller {
                origin: req.client.as_ref(),
                agent_id: Some(&agent.id),
                session_key: Some(&req.session_key),
                run_id: Some(&req.run_id),
                tool_call_id: Some(&call.id),
            };
            let (result, is_error) = match tools::invoke_for(svc, &call.name, &args, caller).await {
                Ok(v) => (v, false),
                Err(e) => (json!({"error": e}), true),
            };
            em.agent(
                "tool",
                json!({"phase": "result", "name": call.name, "toolCallId": call.id, "isError": is_error, "result": result, "meta": {}}),
            );
            messages.push(ChatMessage::tool_result(call.id.clone(), result.to_string()));
        }
    }
    Ending::Completed { text, stop: StopReason::Other("tool_rounds_exhausted".into()), usage }
}
