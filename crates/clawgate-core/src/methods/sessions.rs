//! `sessions.list|describe|preview|patch|reset|delete|subscribe`, `sessions.messages.*`.

use serde_json::{Map, Value};

use clawgate_protocol::methods::sessions::*;
use clawgate_store::{SessionQuery, SessionRecord, SessionStore, TranscriptStore};

use crate::agent::{AbortReason, AgentService, transcript};
use crate::dispatch::CallContext;
use crate::error::CoreError;
use crate::events::Events;
use crate::gateway::Store;
use crate::methods::chat::resolve_session_key;
use crate::time::now_ms;

fn meta_bool(s: &SessionRecord, k: &str) -> bool {
    s.meta.get(k).and_then(Value::as_bool).unwrap_or(false)
}

/// A session row as the lists and `chat.history.sessionInfo` show it: the stored facts, then
/// whatever else `sessions.patch` stored (never shadowing a fact).
pub fn session_entry(s: &SessionRecord) -> SessionEntry {
    let label = s.label.clone();
    let meta: Map<String, Value> = s
        .meta
        .as_object()
        .map(|o| {
            o.iter()
                // `label` is a fact only when the record has one; otherwise a stored one shows.
                .filter(|(k, _)| !SessionEntry::FIELDS.contains(&k.as_str()) || (*k == "label" && label.is_none()))
                .map(|(k, v)| (k.clone(), v.clone()))
                .collect()
        })
        .unwrap_or_default();
    SessionEntry {
        key: s.key.clone(),
        session_id: s.session_id.clone(),
        agent_id: s.agent_id.clone(),
        kind: SessionKind::Direct,
        created_at: s.created_at_ms,
        updated_at: s.updated_at_ms,
        last_interaction_at: s.last_message_at_ms,
        message_count: s.message_count,
        archived: meta_bool(s, "archived"),
        pinned: meta_bool(s, "pinned"),
        unread: meta_bool(s, "unread"),
        is_main: s.key.ends_with(":main"),
        label,
        last_message: None,
        meta,
    }
}

/// `sessions.list {limit?, offset?, agentId?, search?, archived?, includeLastMessage?}`.
pub async fn sessions_list(
    agents: &AgentService,
    store: &Store,
    p: SessionsListParams,
) -> Result<SessionsListResult, CoreError> {
    let defaults = session_defaults(agents, p.agent_id.as_deref());
    let limit = p.limit.unwrap_or(50).clamp(1, 1000);
    let offset = p.offset.unwrap_or(0);
    let query = SessionQuery {
        limit: limit + 1,
        offset,
        agent_id: p.agent_id,
        search: p.search,
        include_archived: p.archived.0,
    };
    let mut rows = store.list_sessions(&query).await?;
    let has_more = rows.len() > limit;
    rows.truncate(limit);
    let total = store.count_sessions().await?;
    let mut sessions = Vec::with_capacity(rows.len());
    for s in &rows {
        let mut entry = session_entry(s);
        if p.include_last_message == Some(true)
            && let Some(last) = store.tail(&s.session_id, 1, None).await?.pop()
        {
            entry.meta.remove("lastMessage");
            entry.last_message = Some(transcript::history_message(&last));
        }
        sessions.push(entry);
    }
    Ok(SessionsListResult {
        ts: now_ms(),
        count: sessions.len(),
        total_count: total,
        limit_applied: limit,
        next_offset: has_more.then_some(offset + limit),
        has_more,
        sessions,
        defaults,
    })
}

/// The model a new session of `agent_id` (or the default agent) uses, for `sessions.list`.
fn session_defaults(agents: &AgentService, agent_id: Option<&str>) -> Option<SessionsDefaults> {
    let configured = agents.agents();
    let agent = configured.get(agent_id.unwrap_or(&configured.default_id))?;
    let full = configured.model_for(agent);
    let (provider, model) = full.split_once('/')?;
    let registry = agents.registry();
    let context = registry
        .config(provider)
        .and_then(|c| c.models.iter().find(|m| m.id == model)?.context_window)
        .map(|w| u64::from(w).max(1));
    Some(SessionsDefaults::for_model(provider, model, context))
}

async fn existing(
    agents: &AgentService,
    store: &Store,
    key: &str,
    agent_id: Option<&str>,
) -> Result<SessionRecord, CoreError> {
    let (key, _) = resolve_session_key(agents, key, agent_id)?;
    store.get_session(&key).await?.ok_or_else(|| CoreError::NotFound(format!("session not found: {key}")))
}

/// `sessions.describe {key}` → `{session}`.
pub async fn sessions_describe(
    agents: &AgentService,
    store: &Store,
    p: SessionsDescribeParams,
) -> Result<SessionsDescribeResult, CoreError> {
    let (key, agent_id) = resolve_session_key(agents, &p.key, p.agent_id.as_deref())?;
    let session = match store.get_session(&key).await? {
        Some(s) => SessionInfo::Stored(Box::new(session_entry(&s))),
        // A session the TUI is about to create: describe it as new and empty.
        None => SessionInfo::Unsaved(UnsavedSession {
            key,
            agent_id,
            kind: Some(SessionKind::Direct),
            message_count: Some(0),
            archived: false,
            pinned: false,
            unread: Some(false),
            updated_at: None,
        }),
    };
    Ok(SessionsDescribeResult { session })
}

/// `sessions.preview {keys, limit?, maxChars? (≥20)}` → the last messages of each session.
pub async fn sessions_preview(
    agents: &AgentService,
    store: &Store,
    p: SessionsPreviewParams,
) -> Result<SessionsPreviewResult, CoreError> {
    let limit = p.limit.unwrap_or(3).clamp(1, 50);
    let max_chars = p.max_chars.unwrap_or(200).max(20);
    let mut previews = Vec::new();
    for raw in p.keys.iter().take(100) {
        let (key, _) = resolve_session_key(agents, raw, None)?;
        let Some(s) = store.get_session(&key).await? else {
            previews.push(SessionPreview { key, status: PreviewStatus::Missing, items: Vec::new() });
            continue;
        };
        let rows = store.tail(&s.session_id, limit, None).await?;
        let items: Vec<PreviewItem> = rows
            .iter()
            .map(|e| PreviewItem {
                role: e.role.as_str().to_owned(),
                text: transcript::text_of(&e.content).chars().take(max_chars).collect(),
                seq: e.seq,
            })
            .collect();
        let status = if items.is_empty() { PreviewStatus::Empty } else { PreviewStatus::Ok };
        previews.push(SessionPreview { key, status, items });
    }
    Ok(SessionsPreviewResult { ts: now_ms(), previews })
}

/// `sessions.patch {key, label?, pinned?, archived?, unread?, model?, thinkingLevel?, …}` →
/// merges into the session (null clears); broadcasts `sessions.changed`.
pub async fn sessions_patch(
    agents: &AgentService,
    store: &Store,
    events: &Events,
    p: SessionsPatchParams,
) -> Result<SessionsPatchResult, CoreError> {
    let s = existing(agents, store, &p.key, p.agent_id.as_deref()).await?;
    if let Some(expected) = &p.expected_session_id
        && *expected != s.session_id
    {
        return Err(CoreError::invalid("session changed since it was read (expectedSessionId mismatch)"));
    }
    if let Some(model) = p.patch.get("model").and_then(Value::as_str) {
        clawgate_llm::ModelRef::parse(model)
            .map_err(|e| CoreError::invalid(format!("invalid sessions.patch params: model: {e}")))?;
    }
    let updated = store.patch_session(&s.key, &Value::Object(p.patch), now_ms()).await?;
    events.session_changed(&s.key, "patched");
    Ok(SessionsPatchResult { ok: true, session: session_entry(&updated), key: s.key })
}

/// `sessions.reset {key, reason?}` → a fresh session id (the old transcript is kept on disk but
/// no longer shown or sent to the model).
pub async fn sessions_reset(
    agents: &AgentService,
    store: &Store,
    events: &Events,
    p: SessionsResetParams,
) -> Result<SessionsResetResult, CoreError> {
    let (key, agent_id) = resolve_session_key(agents, &p.key, p.agent_id.as_deref())?;
    agents.abort(&key, None, AbortReason::Rpc).await;
    store.ensure_session(&key, &agent_id, now_ms()).await?;
    let s = store.reset_session(&key, now_ms()).await?;
    events.session_changed(&key, "reset");
    Ok(SessionsResetResult { ok: true, key, session_id: s.session_id.clone(), session: session_entry(&s) })
}

/// `sessions.delete {key, deleteTranscript?, archivedOnly?}` → `{ok, key, deleted, archived}`.
pub async fn sessions_delete(
    agents: &AgentService,
    store: &Store,
    events: &Events,
    p: SessionsDeleteParams,
) -> Result<SessionsDeleteResult, CoreError> {
    let (key, _) = resolve_session_key(agents, &p.key, p.agent_id.as_deref())?;
    if p.archived_only == Some(true)
        && let Some(s) = store.get_session(&key).await?
        && !meta_bool(&s, "archived")
    {
        return Err(CoreError::invalid("session is not archived (archivedOnly)"));
    }
    agents.abort(&key, None, AbortReason::Rpc).await;
    let deleted = store.delete_session(&key, p.delete_transcript.unwrap_or(true)).await?;
    events.session_changed(&key, "deleted");
    Ok(SessionsDeleteResult { ok: true, key, deleted, archived: Vec::new() })
}

/// `sessions.subscribe` → `sessions.changed` events for this connection.
pub async fn sessions_subscribe(
    ctx: &CallContext,
    _: SessionsSubscribeParams,
) -> Result<SessionsSubscribeResult, CoreError> {
    ctx.client.update_subscriptions(|s| s.sessions = true);
    Ok(SessionsSubscribeResult { subscribed: true })
}

/// `sessions.messages.subscribe|unsubscribe {key}` → `session.message` events for that session.
pub async fn sessions_messages_subscribe(
    agents: &AgentService,
    ctx: &CallContext,
    p: SessionsMessagesParams,
    on: bool,
) -> Result<SessionsMessagesResult, CoreError> {
    // The key events are sent under: a bare key is the default agent's (it used to be put under
    // `main` whatever the default agent, and `agent:x` was kept as is, so neither heard a thing).
    let (key, _) = resolve_session_key(agents, &p.key, None)?;
    ctx.client.update_subscriptions(|s| {
        if on {
            s.message_keys.insert(key.clone());
        } else {
            s.message_keys.remove(&key);
        }
    });
    Ok(SessionsMessagesResult { subscribed: on, key })
}
