//! Built-in tools the model may call: real, read-only views of clawgate's own state.

use std::sync::Arc;

use serde_json::{Value, json};

use clawgate_llm::ToolSpec;
use clawgate_store::{SessionQuery, SessionStore, TranscriptStore};

use crate::gateway::Gateway;

/// Names of the built-in tools.
pub const SESSIONS_LIST: &str = "sessions_list";
/// See [`SESSIONS_LIST`].
pub const SESSIONS_HISTORY: &str = "sessions_history";
/// See [`SESSIONS_LIST`].
pub const CURRENT_TIME: &str = "current_time";
/// Queue a ComfyUI job from a template (offered only when ComfyUI is configured).
pub const COMFY_GENERATE: &str = "comfy_generate";

/// Specs offered to the model.
pub fn specs(gw: &Gateway) -> Vec<ToolSpec> {
    let mut specs = base_specs();
    if gw.comfy.enabled() {
        let templates: Vec<String> = gw
            .comfy
            .library()
            .map(|l| l.list().into_iter().map(|t| format!("{} ({})", t.id, t.allowed_inputs.join(", "))).collect())
            .unwrap_or_default();
        specs.push(ToolSpec {
            name: COMFY_GENERATE.into(),
            description: format!(
                "Generate an image with ComfyUI from a workflow template; the image is sent to the current chat \
                 when it is ready. Templates (inputs): {}.",
                templates.join("; ")
            ),
            parameters: json!({"type": "object", "required": ["template"], "properties": {
                "template": {"type": "string"},
                "inputs": {"type": "object", "additionalProperties": {"type": ["string", "number", "boolean"]}},
                "prompt": {"type": "string", "description": "free text for the template's prompt input"}}}),
        });
    }
    specs
}

fn base_specs() -> Vec<ToolSpec> {
    vec![
        ToolSpec {
            name: SESSIONS_LIST.into(),
            description: "List chat sessions on this gateway, most recently active first.".into(),
            parameters: json!({"type": "object", "properties": {"limit": {"type": "integer", "minimum": 1, "maximum": 100}}}),
        },
        ToolSpec {
            name: SESSIONS_HISTORY.into(),
            description: "Read the last messages of a chat session by its key.".into(),
            parameters: json!({"type": "object", "required": ["sessionKey"], "properties": {
                "sessionKey": {"type": "string"}, "limit": {"type": "integer", "minimum": 1, "maximum": 50}}}),
        },
        ToolSpec {
            name: CURRENT_TIME.into(),
            description: "The current date and time (UTC, RFC 3339) and Unix time in milliseconds.".into(),
            parameters: json!({"type": "object", "properties": {}}),
        },
    ]
}

/// Whether a tool exists (for `/tools/invoke`).
pub fn exists(name: &str) -> bool {
    matches!(name, SESSIONS_LIST | SESSIONS_HISTORY | CURRENT_TIME | COMFY_GENERATE)
}

/// Run a tool. Errors are returned as text for the model (and `isError`), never panics.
pub async fn invoke(gw: &Arc<Gateway>, name: &str, args: &Value) -> Result<Value, String> {
    invoke_for(gw, name, args, None).await
}

/// Run a tool for a run whose origin (`{id, mode, account?, chatId?, threadId?}` of the client
/// or channel that started it) decides where its outputs go.
pub async fn invoke_for(gw: &Arc<Gateway>, name: &str, args: &Value, origin: Option<&Value>) -> Result<Value, String> {
    match name {
        COMFY_GENERATE => {
            let template = args.get("template").and_then(Value::as_str).ok_or("template is required")?;
            let mut inputs = std::collections::BTreeMap::new();
            for (k, v) in args.get("inputs").and_then(Value::as_object).into_iter().flatten() {
                let text = match v {
                    Value::String(s) => s.clone(),
                    other => other.to_string(),
                };
                inputs.insert(k.clone(), text);
            }
            let deliver_to = origin.filter(|o| o.get("mode").and_then(Value::as_str) == Some("channel")).map(|o| {
                json!({"channel": o.get("id"), "account": o.get("account"), "chatId": o.get("chatId"),
                       "threadId": o.get("threadId")})
            });
            let prompt = args.get("prompt").and_then(Value::as_str);
            let (job, pos) = gw
                .comfy
                .submit(template, &inputs, prompt, deliver_to, origin.cloned(), None)
                .await
                .map_err(|e| e.to_string())?;
            Ok(json!({"jobId": job.id, "status": job.status.as_str(),
                      "position": pos.map(|(p, t)| json!({"position": p, "total": t})),
                      "note": "the image is delivered to the chat when it is ready"}))
        }
        CURRENT_TIME => {
            let now = crate::time::now_ms();
            Ok(json!({"utc": crate::time::rfc3339(now), "unixMs": now}))
        }
        SESSIONS_LIST => {
            let limit = args.get("limit").and_then(Value::as_u64).unwrap_or(20).clamp(1, 100) as usize;
            let rows = gw
                .store
                .list_sessions(&SessionQuery { limit, ..SessionQuery::default() })
                .await
                .map_err(|e| format!("cannot list sessions: {e}"))?;
            Ok(json!({"sessions": rows.iter().map(|s| json!({
                "key": s.key, "agentId": s.agent_id, "label": s.label,
                "updatedAt": s.updated_at_ms, "messageCount": s.message_count,
            })).collect::<Vec<_>>()}))
        }
        SESSIONS_HISTORY => {
            let key = args.get("sessionKey").and_then(Value::as_str).ok_or("sessionKey is required")?;
            let limit = args.get("limit").and_then(Value::as_u64).unwrap_or(20).clamp(1, 50) as usize;
            let Some(session) = gw.store.get_session(key).await.map_err(|e| e.to_string())? else {
                return Err(format!("no session with key {key}"));
            };
            let rows = gw.store.tail(&session.session_id, limit, None).await.map_err(|e| e.to_string())?;
            Ok(json!({"sessionKey": key, "messages": rows.iter().map(|e| json!({
                "role": e.role.as_str(), "text": super::transcript::text_of(&e.content), "seq": e.seq,
            })).collect::<Vec<_>>()}))
        }
        other => Err(format!("unknown tool: {other}")),
    }
}
