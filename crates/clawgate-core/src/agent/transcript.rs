//! Transcript display messages (the `chat.history` shapes) and their conversion to model input.

use serde_json::{Value, json};

use clawgate_llm::{ChatMessage, Usage};
use clawgate_store::{TranscriptEntry, TranscriptRole};

/// The stored/display form of a user message; a client's context is kept in
/// `__openclaw.context` (what the model read with it).
pub fn user_message(
    text: impl Into<String>,
    run_id: &str,
    client: Option<&Value>,
    context: Option<&super::TurnContext>,
    ts: i64,
) -> Value {
    // Taken by value: a long message is moved into the transcript entry, not copied.
    let mut m = json!({
        "role": "user",
        "content": Value::String(text.into()),
        "timestamp": ts,
        "idempotencyKey": format!("{run_id}:user"),
    });
    if let Some(c) = client {
        m["__openclaw"] = json!({"senderIsOwner": true, "transport": {"clients": [c]}});
    }
    if let Some(ctx) = context {
        if !m["__openclaw"].is_object() {
            m["__openclaw"] = json!({});
        }
        m["__openclaw"]["context"] = serde_json::to_value(ctx).unwrap_or(Value::Null);
    }
    m
}

/// The stored/display form of an assistant message.
pub fn assistant_message(text: &str, ts: i64) -> Value {
    json!({"role": "assistant", "content": [{"type": "text", "text": text}], "timestamp": ts})
}

/// Add provenance to a finished assistant message.
pub fn with_meta(
    mut m: Value,
    api: &str,
    provider: &str,
    model: &str,
    usage: Option<Usage>,
    stop_reason: &str,
) -> Value {
    m["api"] = json!(api);
    m["provider"] = json!(provider);
    m["model"] = json!(model);
    m["stopReason"] = json!(stop_reason);
    if let Some(u) = usage {
        m["usage"] = usage_json(u);
    }
    m
}

/// Usage in the transcript's shape.
pub fn usage_json(u: Usage) -> Value {
    json!({
        "input": u.input_tokens,
        "output": u.output_tokens,
        "cacheRead": u.cache_read_tokens,
        "cacheWrite": u.cache_write_tokens,
        "totalTokens": u.input_tokens + u.output_tokens,
    })
}

/// The plain text of a display message (string content or text parts).
pub fn text_of(message: &Value) -> String {
    match message.get("content") {
        Some(Value::String(s)) => s.clone(),
        Some(Value::Array(parts)) => parts
            .iter()
            .filter(|p| p.get("type").and_then(Value::as_str) == Some("text"))
            .filter_map(|p| p.get("text")?.as_str())
            .collect::<Vec<_>>()
            .join(""),
        _ => String::new(),
    }
}

/// A stored entry as a `chat.history` message: the display message plus its position.
pub fn history_message(e: &TranscriptEntry) -> Value {
    with_position(e.content.clone(), e)
}

/// [`history_message`] of an entry no longer needed: its content is moved, not copied.
pub fn into_history_message(mut e: TranscriptEntry) -> Value {
    let content = std::mem::take(&mut e.content);
    with_position(content, &e)
}

fn with_position(mut m: Value, e: &TranscriptEntry) -> Value {
    if let Some(obj) = m.as_object_mut() {
        let meta = obj.entry("__openclaw").or_insert_with(|| json!({}));
        if let Some(meta) = meta.as_object_mut() {
            meta.insert("seq".into(), json!(e.seq));
            if e.status != clawgate_store::EntryStatus::Final {
                meta.insert("status".into(), json!(e.status.as_str()));
            }
        }
    }
    m
}

/// Rough token estimate (4 characters per token) used to keep history inside the budget without
/// shipping a tokenizer for every model family.
pub fn estimate_tokens(text: &str) -> usize {
    text.len().div_ceil(4) + 4
}

/// Model input for a stored entry; tool rows and empty messages are left out.
pub fn to_chat_message(e: &TranscriptEntry) -> Option<ChatMessage> {
    let text = text_of(&e.content);
    if text.trim().is_empty() {
        return None;
    }
    match e.role {
        TranscriptRole::User => Some(ChatMessage::user(text)),
        TranscriptRole::Assistant => Some(ChatMessage::assistant(text)),
        TranscriptRole::System => Some(ChatMessage::system(text)),
        TranscriptRole::Tool => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn text_is_read_from_string_and_parts() {
        assert_eq!(text_of(&user_message("hi", "r", None, None, 1)), "hi");
        assert_eq!(text_of(&assistant_message("yo", 1)), "yo");
    }
}
