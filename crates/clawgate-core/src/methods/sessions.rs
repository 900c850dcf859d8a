//! `sessions.list|describe|preview|patch|reset|delete|subscribe`, `sessions.messages.*`.

use std::sync::Arc;

use serde::Deserialize;
use serde_json::{Value, json};

use clawgate_store::{SessionQuery, SessionRecord, SessionStore, TranscriptStore};

use crate::agent::transcript;
use crate::dispatch::CallContext;
use crate::error::{CoreError, parse_params};
use crate::gateway::Gateway;
use crate::methods::chat::resolve_session_key;
use crate::time::now_ms;

fn meta_bool(s: &SessionRecord, k: &str) -> bool {
    s.meta.get(k).and_then(Value::as_bool).unwrap_or(false)
}

/// A session row as the lists and `chat.history.sessionInfo` show it.
pub fn session_info(s: &SessionRecord) -> Value {
    let mut v = json!({
        "key": s.key,
        "sessionId": s.session_id,
        "agentId": s.agent_id,
        "kind": "direct",
        "createdAt": s.created_at_ms,
        "updatedAt": s.updated_at_ms,
        "lastInteractionAt": s.last_message_at_ms,
        "messageCount": s.message_count,
        "archived": meta_bool(s, "archived"),
        "pinned": meta_bool(s, "pinned"),
        "unread": meta_bool(s, "unread"),
        "isMain": s.key.ends_with(":main"),
    });
    if let Some(l) = &s.label {
        v["label"] = json!(l);
    }
    if let Some(obj) = s.meta.as_object() {
        for (k, val) in obj {
            if !v.as_object().is_some_and(|o| o.contains_key(k)) {
                v[k] = val.clone();
            }
        }
    }
    v
}

#[derive(Debug, Default, Deserialize)]
#[serde(rename_all = "camelCase")]
struct ListParams {
    #[serde(default)]
    limit: Option<usize>,
    #[serde(default)]
    offset: Option<usize>,
    #[serde(default)]
    agent_id: Option<String>,
    #[serde(default)]
    search: Option<String>,
    #[serde(default)]
    archived: Option<Value>,
    #[serde(default)]
    include_last_message: Option<bool>,
}

/// `sessions.list {limit?, offset?, agentId?, search?, archived?, includeLastMessage?}`.
pub async fn sessions_list(gw: &Arc<Gateway>, params: Value) -> Result<Value, CoreError> {
    let p: ListParams = parse_params("sessions.list", params)?;
    let limit = p.limit.unwrap_or(50).clamp(1, 1000);
    let offset = p.offset.unwrap_or(0);
    let include_archived =
        matches!(p.archived, Some(Value::Bool(true))) || p.archived.as_ref().and_then(Value::as_str) == Some("all");
    let query = SessionQuery {
        limit: limit + 1,
        offset,
        agent_id: p.agent_id.clone(),
        search: p.search.clone(),
        include_archived,
    };
    let mut rows = gw.store.list_sessions(&query).await?;
    let has_more = rows.len() > limit;
    rows.truncate(limit);
    let total = gw.store.count_sessions().await?;
    let mut sessions = Vec::with_capacity(rows.len());
    for s in &rows {
        let mut v = session_info(s);
        if p.include_last_message == Some(true)
            && let Some(last) = gw.store.tail(&s.session_id, 1, None).await?.pop()
        {
            v["lastMessage"] = transcript::history_message(&last);
        }
        sessions.push(v);
    }
    Ok(json!({
        "ts": now_ms(),
        "count": sessions.len(),
        "totalCount": total,
        "limitApplied": limit,
        "nextOffset": if has_more { json!(offset + limit) } else { Value::Null },
        "hasMore": has_more,
        "sessions": sessions,
    }))
}

#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase")]
struct KeyParams {
    key: String,
    #[serde(default)]
    agent_id: Option<String>,
}

async fn existing(gw: &Arc<Gateway>, key: &str, agent_id: Option<&str>) -> Result<SessionRecord, CoreError> {
    let (key, _) = resolve_session_key(gw, key, agent_id)?;
    gw.store.get_session(&key).await?.ok_or_else(|| CoreError::NotFound(format!("session not found: {key}")))
}

/// `sessions.describe {key}` → `{session}`.
pub async fn sessions_describe(gw: &Arc<Gateway>, params: Value) -> Result<Value, CoreError> {
    let p: KeyParams = parse_params("sessions.describe", params)?;
    let (key, agent_id) = resolve_session_key(gw, &p.key, p.agent_id.as_deref())?;
    match gw.store.get_session(&key).await? {
        Some(s) => Ok(json!({"session": session_info(&s)})),
        // A session the TUI is about to create: describe it as new and empty.
        None => Ok(json!({"session": {"key": key, "agentId": agent_id, "kind": "direct", "messageCount": 0,
                                       "archived": false, "pinned": false, "unread": false, "updatedAt": null}})),
    }
}

#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase")]
struct PreviewParams {
    keys: Vec<String>,
    #[serde(default)]
    limit: Option<usize>,
    #[serde(default)]
    max_chars: Option<usize>,
}

/// `sessions.preview {keys, limit?, maxChars? (≥20)}` → the last messages of each session.
pub async fn sessions_preview(gw: &Arc<Gateway>, params: Value) -> Result<Value, CoreError> {
    let p: PreviewParams = parse_params("sessions.preview", params)?;
    let limit = p.limit.unwrap_or(3).clamp(1, 50);
    let max_chars = p.max_chars.unwrap_or(200).max(20);
    let mut previews = Vec::new();
    for raw in p.keys.iter().take(100) {
        let (key, _) = resolve_session_key(gw, raw, None)?;
        let Some(s) = gw.store.get_session(&key).await? else {
            previews.push(json!({"key": key, "status": "missing", "items": []}));
            continue;
        };
        let rows = gw.store.tail(&s.session_id, limit, None).await?;
        let items: Vec<Value> = rows
            .iter()
            .map(|e| {
                let text: String = transcript::text_of(&e.content).chars().take(max_chars).collect();
                json!({"role": e.role.as_str(), "text": text, "seq": e.seq})
            })
            .collect();
        previews.push(json!({"key": key, "status": if items.is_empty() { "empty" } else { "ok" }, "items": items}));
    }
    Ok(json!({"ts": now_ms(), "previews": previews}))
}

/// `sessions.patch {key, label?, pinned?, archived?, unread?, model?, thinkingLevel?, …}` →
/// merges into the session (null clears); broadcasts `sessions.changed`.
pub async fn sessions_patch(gw: &Arc<Gateway>, params: Value) -> Result<Value, CoreError> {
    let Some(obj) = params.as_object() else {
        return Err(CoreError::invalid("invalid sessions.patch params: must be object"));
    };
    let key = obj
        .get("key")
        .and_then(Value::as_str)
        .ok_or_else(|| CoreError::invalid("invalid sessions.patch params: must have required property 'key'"))?;
    let s = existing(gw, key, obj.get("agentId").and_then(Value::as_str)).await?;
    if let Some(expected) = obj.get("expectedSessionId").and_then(Value::as_str)
        && expected != s.session_id
    {
        return Err(CoreError::invalid("session changed since it was read (expectedSessionId mismatch)"));
    }
    if let Some(model) = obj.get("model").and_then(Value::as_str) {
        clawgate_llm::ModelRef::parse(model)
            .map_err(|e| CoreError::invalid(format!("invalid sessions.patch params: model: {e}")))?;
    }
    let mut patch = serde_json::Map::new();
    for (k, v) in obj {
        if !matches!(
            k.as_str(),
            "key"
                | "agentId"
                | "expectedSessionId"
                | "expectedLifecycleRevision"
                | "expectedPermissionMode"
                | "expectedMarkedUnreadAt"
        ) {
            patch.insert(k.clone(), v.clone());
        }
    }
    let updated = gw.store.patch_session(&s.key, &Value::Object(patch), now_ms()).await?;
    gw.broadcast_session_changed(&s.key, "patched");
    Ok(json!({"ok": true, "key": s.key, "session": session_info(&updated)}))
}

/// `sessions.reset {key, reason?}` → a fresh session id (the old transcript is kept on disk but
/// no longer shown or sent to the model).
pub async fn sessions_reset(gw: &Arc<Gateway>, params: Value) -> Result<Value, CoreError> {
    let p: KeyParams = parse_params("sessions.reset", params)?;
    let (key, agent_id) = resolve_session_key(gw, &p.key, p.agent_id.as_deref())?;
    crate::agent::abort(gw, &key, None, "rpc").await;
    gw.store.ensure_session(&key, &agent_id, now_ms()).await?;
    let s = gw.store.reset_session(&key, now_ms()).await?;
    gw.broadcast_session_changed(&key, "reset");
    Ok(json!({"ok": true, "key": key, "sessionId": s.session_id, "session": session_info(&s)}))
}

#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase")]
struct DeleteParams {
    key: String,
    #[serde(default)]
    agent_id: Option<String>,
    #[serde(default)]
    delete_transcript: Option<bool>,
    #[serde(default)]
    archived_only: Option<bool>,
}

/// `sessions.delete {key, deleteTranscript?, archivedOnly?}` → `{ok, key, deleted, archived}`.
pub async fn sessions_delete(gw: &Arc<Gateway>, params: Value) -> Result<Value, CoreError> {
    let p: DeleteParams = parse_params("sessions.delete", params)?;
    let (key, _) = resolve_session_key(gw, &p.key, p.agent_id.as_deref())?;
    if p.archived_only == Some(true)
        && let Some(s) = gw.store.get_session(&key).await?
        && !meta_bool(&s, "archived")
    {
        return Err(CoreError::invalid("session is not archived (archivedOnly)"));
    }
    crate::agent::abort(gw, &key, None, "rpc").await;
    let deleted = gw.store.delete_session(&key, p.delete_transcript.unwrap_or(true)).await?;
    gw.broadcast_session_changed(&key, "deleted");
    Ok(json!({"ok": true, "key": key, "deleted": deleted, "archived": []}))
}

/// `sessions.subscribe` → `sessions.changed` events for this connection.
pub async fn sessions_subscribe(ctx: &CallContext) -> Result<Value, CoreError> {
    ctx.client.update_subscriptions(|s| s.sessions = true);
    Ok(json!({"subscribed": true}))
}

/// `sessions.messages.subscribe|unsubscribe {key}` → `session.message` events for that session.
pub async fn sessions_messages_subscribe(ctx: &CallContext, params: Value, on: bool) -> Result<Value, CoreError> {
    let method = if on { "sessions.messages.subscribe" } else { "sessions.messages.unsubscribe" };
    let key = params
        .get("key")
        .or_else(|| params.get("sessionKey"))
        .and_then(Value::as_str)
        .filter(|k| !k.is_empty())
        .ok_or_else(|| CoreError::invalid(format!("invalid {method} params: must have required property 'key'")))?;
    let key = if key.starts_with("agent:") { key.to_owned() } else { format!("agent:main:{key}") };
    ctx.client.update_subscriptions(|s| {
        if on {
            s.message_keys.insert(key.clone());
        } else {
            s.message_keys.remove(&key);
        }
    });
    Ok(json!({"subscribed": on, "key": key}))
}
