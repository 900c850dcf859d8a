//! `chat.send`, `chat.history`, `chat.abort`, `chat.inject`.

use std::collections::{HashMap, HashSet};
use std::sync::LazyLock;

use parking_lot::Mutex;

use serde_json::{Value, json};

use clawgate_protocol::methods::chat::*;
use clawgate_protocol::methods::sessions::{SessionInfo, UnsavedSession};

use clawgate_store::{
    EntryStatus, JobRecord, JobStore, RunKind, RunStore, SessionStore, TranscriptEntry, TranscriptRole, TranscriptStore,
};

use crate::agent::{self, AgentService, RunRequest, Submitted, TurnContext, transcript};
use crate::channels::commands::CommandCaller;
use crate::dispatch::CallContext;
use crate::error::CoreError;
use crate::events::Events;
use crate::gateway::Store;
use crate::media::MediaSigner;
use crate::session_key::SessionKey;
use crate::time::now_ms;

/// The session a WS client names ([`SessionKey`]'s rule): a bare key belongs to `agent_id`, or
/// the default agent.
pub fn session_key(agents: &AgentService, key: &str, agent_id: Option<&str>) -> Result<SessionKey, CoreError> {
    let default_id;
    let agent_id = match agent_id {
        Some(id) => id,
        None => {
            default_id = agents.agents().default_id.clone();
            &default_id
        }
    };
    SessionKey::parse(key, agent_id).map_err(|e| CoreError::invalid(e.to_string()))
}

/// [`session_key`] as `(key, agent id)`, for callers that keep both as strings.
pub fn resolve_session_key(
    agents: &AgentService,
    key: &str,
    agent_id: Option<&str>,
) -> Result<(String, String), CoreError> {
    session_key(agents, key, agent_id).map(SessionKey::into_parts)
}

/// `{id, mode}` of the calling client, kept with its message in the transcript.
pub(crate) fn client_tag(ctx: &CallContext) -> Option<Value> {
    Some(json!({"id": ctx.client.client.0, "mode": ctx.client.client.1}))
}

/// What `chat.send` uses: agent runs, the transcript store, the broadcasts and the chat
/// commands (`/new`, `/run`, … typed in the web chat).
#[derive(Clone, Copy)]
pub struct ChatSend<'a> {
    /// Runs.
    pub agents: &'a AgentService,
    /// Transcripts and runs.
    pub store: &'a Store,
    /// `session.message`, `chat` events.
    pub events: &'a Events,
    /// The chat-command registry.
    pub commands: &'a crate::channels::Commands,
}

/// `chat.send {sessionKey, message, idempotencyKey, agentId?, timeoutMs?, …}` → one ack
/// `{runId, status:"started"}`; the reply streams as `chat`/`agent` events. A repeated
/// idempotency key starts nothing: `in_flight` while running, `ok` after. A ComfyUI command is
/// answered by the gateway instead (`{runId, status:"ok"}` after its `chat` `final`), unless
/// `suppressCommandInterpretation` is set.
pub async fn chat_send(h: ChatSend<'_>, ctx: &CallContext, p: ChatSendParams) -> Result<ChatSendResult, CoreError> {
    let Some(key) = p.session_key else {
        return Err(CoreError::InvalidRequest {
            message: "session mutation target is unavailable".into(),
            details: Some(json!({"code": "SESSION_MUTATION_TARGET_REQUIRED", "method": "chat.send"})),
        });
    };
    // The message was moved out of the request (it may be 25 MiB), never copied.
    let Some(message) = p.message else {
        return Err(CoreError::invalid("invalid chat.send params: must have required property 'message'"));
    };
    let Some(run_id) = p.idempotency_key.filter(|k| !k.is_empty()) else {
        return Err(CoreError::invalid("invalid chat.send params: must have required property 'idempotencyKey'"));
    };
    let (session_key, agent_id) = resolve_session_key(h.agents, &key, p.agent_id.as_deref())?;
    let interpret = p.suppress_command_interpretation != Some(true);
    let context = turn_context(h.agents, p.context, p.work_context)?;
    if context.is_some() && interpret && h.commands.is_command(&message) {
        return Err(CoreError::invalid("Working context is only supported for ordinary chat messages."));
    }
    if interpret && let Some(status) = chat_command(h, ctx, &run_id, &session_key, &agent_id, &message).await? {
        return Ok(ChatSendResult { run_id, status });
    }
    let timeout = p.timeout_ms.filter(|t| *t > 0).map(std::time::Duration::from_millis);
    let req = RunRequest {
        run_id: run_id.clone(),
        session_key,
        agent_id,
        message,
        kind: RunKind::Chat,
        timeout,
        extra_system: None,
        client: client_tag(ctx),
        context,
    };
    let status = match h.agents.submit(req).await? {
        Submitted::Started => ChatSendStatus::Started,
        Submitted::InFlight => ChatSendStatus::InFlight,
        Submitted::Done(_) => ChatSendStatus::Ok,
    };
    Ok(ChatSendResult { run_id, status })
}

/// The turn's context from `chat.send`'s `context` (clawgate's, any keys) or `workContext`
/// (upstream's shape), cut to `agents.defaults.contextMaxChars`.
fn turn_context(
    agents: &AgentService,
    context: Option<Value>,
    work_context: Option<Value>,
) -> Result<Option<TurnContext>, CoreError> {
    let max = agents.agents().context_max_chars;
    match (context.filter(|c| !c.is_null()), work_context.filter(|c| !c.is_null())) {
        (None, None) => Ok(None),
        (Some(_), Some(_)) => {
            Err(CoreError::invalid("invalid chat.send params: send either context or workContext, not both"))
        }
        (Some(Value::Object(map)), None) => TurnContext::capture(map, max).map(Some),
        (Some(_), None) => Err(CoreError::invalid("invalid chat.send params: context must be object")),
        (None, Some(work)) => TurnContext::capture_work_context(work, max).map(Some),
    }
}

/// Run ids of ComfyUI commands being answered by this process: a repeat of one is `in_flight`.
static COMMANDS_IN_FLIGHT: LazyLock<Mutex<HashSet<String>>> = LazyLock::new(Mutex::default);

/// A run id held in [`COMMANDS_IN_FLIGHT`] until dropped.
struct InFlight(String);

impl InFlight {
    fn claim(run_id: &str) -> Option<Self> {
        let mut set = COMMANDS_IN_FLIGHT.lock();
        set.insert(run_id.to_owned()).then(|| Self(run_id.to_owned()))
    }
}

impl Drop for InFlight {
    fn drop(&mut self) {
        COMMANDS_IN_FLIGHT.lock().remove(&self.0);
    }
}

/// A chat command (`/new`, `/status`, `/help`, and while ComfyUI is configured `/run …`,
/// `/jobs`, `/approvals`, …; see [`commands`]) sent with `chat.send` is answered by the gateway,
/// never the model: the message and the reply enter the transcript under the run id
/// (= idempotency key), and clients see the reply as a run's `chat` `final`.
/// `None` when the text is not such a command (the agent takes it).
///
/// A repeated idempotency key runs nothing: the transcript already holds that run's entries
/// (`ok`), or this process is still answering it (`in_flight`). The transcript is the record, so
/// the answer survives restarts; a key that named an agent run stays with the agent.
async fn chat_command(
    h: ChatSend<'_>,
    ctx: &CallContext,
    run_id: &str,
    session_key: &str,
    agent_id: &str,
    message: &str,
) -> Result<Option<ChatSendStatus>, CoreError> {
    if !h.commands.is_command(message) {
        return Ok(None);
    }
    // An unknown agent, or a key an agent run already used: `agent::submit` answers.
    if h.agents.agents().get(agent_id).is_none() || h.store.get_run(run_id).await?.is_some() {
        return Ok(None);
    }
    let Some(_claim) = InFlight::claim(run_id) else { return Ok(Some(ChatSendStatus::InFlight)) };
    let earlier = h.store.find_by_run(run_id).await?;
    let session = h.store.ensure_session(session_key, agent_id, now_ms()).await?;
    if let Some(e) = earlier.first() {
        if e.session_id != session.session_id {
            return Err(CoreError::invalid(format!(
                "idempotencyKey \"{run_id}\" was already used for another session; use a fresh key for each message"
            )));
        }
        return Ok(Some(ChatSendStatus::Ok));
    }
    // chat.send needs operator write access (or its sessions.write twin), and such a client
    // already controls the gateway (sessions, config, the ComfyUI queue through comfy.*): it
    // runs `/run` without approval and may use the admin commands, whatever
    // `comfy.commands.adminUsers` lists for chat platforms.
    let caller = CommandCaller {
        platform: "webchat".into(),
        sender_id: ctx.client.device_id.clone().unwrap_or_else(|| ctx.client.client.0.clone()),
        sender_username: None,
        chat_id: session_key.to_owned(),
        trusted: true,
        is_admin: true,
        deliver_to: json!({"channel": "webchat", "sessionKey": session_key}),
        session_key: session_key.to_owned(),
        agent_id: agent_id.to_owned(),
    };
    let Some(reply) = h.commands.handle(&caller, message).await else { return Ok(None) };
    // `/new` gave the session a new transcript: the command and its reply start it.
    let session = h.store.ensure_session(session_key, agent_id, now_ms()).await?;
    let user = transcript::user_message(message, run_id, client_tag(ctx).as_ref(), None, now_ms());
    let entry = h
        .store
        .append(&session.session_id, TranscriptRole::User, &user, Some(run_id), EntryStatus::Final, now_ms())
        .await?;
    h.events.session_message(session_key, &transcript::history_message(&entry));
    let mut msg = transcript::assistant_message(&reply, now_ms());
    msg["stopReason"] = json!("stop");
    msg["__openclaw"] = json!({"source": "comfy"});
    let entry = append_reply(h.store, &session.session_id, run_id, &msg).await?;
    announce_reply(h.agents, h.events, session_key, agent_id, run_id, &entry);
    Ok(Some(ChatSendStatus::Ok))
}

/// Append an assistant message no model wrote (a command's reply, a job's result) under `run_id`.
pub(crate) async fn append_reply(
    store: &Store,
    session_id: &str,
    run_id: &str,
    msg: &Value,
) -> Result<TranscriptEntry, CoreError> {
    Ok(store.append(session_id, TranscriptRole::Assistant, msg, Some(run_id), EntryStatus::Final, now_ms()).await?)
}

/// Tell clients about a reply stored by [`append_reply`] as they hear of a finished run:
/// `session.message`, one `chat` `final` for `run_id` carrying the message, `sessions.changed`.
pub(crate) fn announce_reply(
    agents: &AgentService,
    events: &Events,
    session_key: &str,
    agent_id: &str,
    run_id: &str,
    entry: &TranscriptEntry,
) {
    events.session_message(session_key, &transcript::history_message(entry));
    let payload = json!({"runId": run_id, "sessionKey": session_key, "agentId": agent_id, "seq": 1, "state": "final",
                         "stopReason": "stop", "message": entry.content});
    agents.publish(run_id, "chat", &payload);
    events.run_event("chat", session_key, &payload, false);
    events.session_changed(session_key, "run-finished");
}

/// ComfyUI results in a transcript carry `/media/<token>` links that expire; blocks that name
/// their job and file (`jobId`, `filename`) get a fresh link each time history is read, so an
/// old message's images keep showing while the job and its files exist.
async fn refresh_media_links(store: &Store, media: &MediaSigner, messages: &mut [Value]) {
    // Plain loops: an iterator adapter over `&mut Value` held across these awaits would make
    // the handler's future not `Send`.
    let mut jobs: HashMap<String, Option<JobRecord>> = HashMap::new();
    for m in messages.iter_mut() {
        let Some(Value::Array(parts)) = m.get_mut("content") else { continue };
        for part in parts.iter_mut() {
            let (Some(job_id), Some(file)) = (
                part.get("jobId").and_then(Value::as_str).map(str::to_owned),
                part.get("filename").and_then(Value::as_str).map(str::to_owned),
            ) else {
                continue;
            };
            if !part.get("url").and_then(Value::as_str).is_some_and(|u| u.starts_with("/media/")) {
                continue;
            }
            if !jobs.contains_key(&job_id) {
                let job = store.get_job(&job_id).await.ok().flatten();
                jobs.insert(job_id.clone(), job);
            }
            if let Some(Some(job)) = jobs.get(&job_id)
                && let Some(url) = media.signed_path(job, &file).await
            {
                part["url"] = json!(url);
            }
        }
    }
}

/// `chat.history {sessionKey, limit? (1..1000)}` → the last messages, oldest first. Reads one
/// window of the transcript by index; never the whole transcript.
pub async fn chat_history(
    agents: &AgentService,
    store: &Store,
    media: &MediaSigner,
    p: ChatHistoryParams,
) -> Result<ChatHistoryResult, CoreError> {
    let limit = p.limit.unwrap_or(200);
    if !(1..=1000).contains(&limit) {
        return Err(CoreError::invalid("invalid chat.history params: limit must be between 1 and 1000"));
    }
    let (key, agent_id) = resolve_session_key(agents, &p.session_key, p.agent_id.as_deref())?;
    let config = agents.agents();
    let model = config.get(&agent_id).map(|a| config.model_for(a)).unwrap_or_default();
    let defaults = model
        .split_once('/')
        .map(|(provider, model)| HistoryDefaults { model_provider: provider.to_owned(), model: model.to_owned() })
        .unwrap_or_default();
    let Some(session) = store.get_session(&key).await? else {
        let session_info = SessionInfo::Unsaved(UnsavedSession {
            key: key.clone(),
            agent_id,
            kind: None,
            message_count: None,
            archived: false,
            pinned: false,
            unread: None,
            updated_at: None,
        });
        return Ok(ChatHistoryResult {
            session_key: key,
            session_id: None,
            messages: Vec::new(),
            pending_inputs: PendingInputs::none(),
            has_more: false,
            total_messages: 0,
            defaults,
            session_info,
            next_before: None,
            in_flight_run: None,
        });
    };
    let rows = store.tail(&session.session_id, limit, p.pending_before).await?;
    let total = session.message_count;
    let first_seq = rows.first().map(|e| e.seq);
    let has_more = first_seq.is_some_and(|s| s > 1) && (rows.len() as u64) < total;
    let in_flight = agents.active_runs(&key);
    let mut messages: Vec<Value> = rows.iter().map(transcript::history_message).collect();
    refresh_media_links(store, media, &mut messages).await;
    Ok(ChatHistoryResult {
        session_key: key,
        session_id: Some(session.session_id.clone()),
        messages,
        pending_inputs: PendingInputs::none(),
        has_more,
        total_messages: total,
        defaults,
        session_info: SessionInfo::Stored(Box::new(super::sessions::session_entry(&session))),
        next_before: first_seq.filter(|_| has_more),
        in_flight_run: in_flight.into_iter().next().map(|run_id| InFlightRun { run_id }),
    })
}

/// `chat.abort {sessionKey, runId?}` → `{ok, aborted, runIds}`; the run ends with a `chat`
/// `aborted` event carrying the partial text.
pub async fn chat_abort(agents: &AgentService, p: ChatAbortParams) -> Result<ChatAbortResult, CoreError> {
    let (key, _) = resolve_session_key(agents, &p.session_key, p.agent_id.as_deref())?;
    let run_ids = agents.abort(&key, p.run_id.as_deref(), agent::AbortReason::Rpc).await;
    for id in &run_ids {
        let _ = agents.wait(id, std::time::Duration::from_secs(5)).await;
    }
    Ok(ChatAbortResult { ok: true, aborted: !run_ids.is_empty(), run_ids })
}

/// `chat.inject {sessionKey, message, label?}` → appends an assistant message without running
/// the model; `chat` final with `runId: "inject-<messageId>"`.
pub async fn chat_inject(
    agents: &AgentService,
    store: &Store,
    events: &Events,
    p: ChatInjectParams,
) -> Result<ChatInjectResult, CoreError> {
    if p.message.is_empty() {
        return Err(CoreError::invalid("invalid chat.inject params: message must not be empty"));
    }
    if p.label.as_ref().is_some_and(|l| l.chars().count() > 100) {
        return Err(CoreError::invalid("invalid chat.inject params: label must be at most 100 characters"));
    }
    let (key, agent_id) = resolve_session_key(agents, &p.session_key, p.agent_id.as_deref())?;
    let session = store.ensure_session(&key, &agent_id, now_ms()).await?;
    let message_id = uuid::Uuid::new_v4().to_string();
    let mut msg = transcript::assistant_message(&p.message, now_ms());
    msg["__openclaw"] = json!({"id": message_id, "injected": true, "label": p.label});
    let run_id = format!("inject-{message_id}");
    let entry = store
        .append(&session.session_id, TranscriptRole::Assistant, &msg, Some(&run_id), EntryStatus::Final, now_ms())
        .await?;
    events.session_message(&key, &transcript::history_message(&entry));
    events.run_event(
        "chat",
        &key,
        &json!({"runId": run_id, "sessionKey": key, "agentId": agent_id, "seq": 1, "state": "final", "message": msg}),
        false,
    );
    Ok(ChatInjectResult { ok: true, message_id })
}
