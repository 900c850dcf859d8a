//! `GET /v1/models`, `GET /v1/models/{id}` and `POST /v1/chat/completions`: agents offered as
//! OpenAI models, and a chat completion as one agent turn.

use std::time::Duration;

use axum::body::Body;
use axum::extract::{Path, Request, State};
use axum::http::{HeaderMap, Method};
use axum::response::{IntoResponse, Response};
use serde_json::{Value, json};

use clawgate_core::agent::AgentService;
use clawgate_core::agent::RunRequest;
use clawgate_core::config_service::ConfigService;
use clawgate_store::RunKind;

use super::error::OpenAiError;
use super::prompt::{self, Entry, Role};
use super::run::{self, LiveRun, Outcome, Step};
use super::{Api, BodyPermit, gate, now_secs, read_json, sse};

/// Chat requests may carry images as data URLs; upstream allows 20 MB.
const CHAT_BODY_LIMIT: usize = 20 * 1024 * 1024;
/// Time allowed to receive a request body.
pub(super) const BODY_TIMEOUT: Duration = Duration::from_secs(30);

/// Whether either OpenAI-compatible surface is on (`/v1/models` serves both).
fn models_enabled(config: &ConfigService) -> bool {
    let cfg = config.current();
    let e = &cfg.config.gateway.http.endpoints;
    e.chat_completions.enabled || e.responses.enabled
}

fn chat_enabled(config: &ConfigService) -> bool {
    config.current().config.gateway.http.endpoints.chat_completions.enabled
}

fn model_object(id: &str) -> Value {
    json!({"id": id, "object": "model", "created": 0, "owned_by": "openclaw", "permission": []})
}

/// `openclaw`, `openclaw/default`, then `openclaw/<agentId>` for every agent.
fn model_ids(agents: &AgentService) -> Vec<String> {
    let agents = agents.agents();
    ["openclaw".to_owned(), "openclaw/default".to_owned()]
        .into_iter()
        .chain(agents.agents.iter().map(|a| format!("openclaw/{}", a.id)))
        .collect()
}

/// `GET /v1/models` — the agent targets, in the real gateway's shape.
pub(crate) async fn list_models(State(api): State<Api>, req: Request) -> Response {
    let enabled = models_enabled(&api.config);
    if let Err(refused) = gate(&api, req, enabled, Method::GET).await {
        return refused;
    }
    let data: Vec<Value> = model_ids(&api.agents).iter().map(|id| model_object(id)).collect();
    axum::Json(json!({"object": "list", "data": data})).into_response()
}

/// `GET /v1/models/{id}` — one agent target (the id may contain `/`, sent raw or as `%2F`).
pub(crate) async fn get_model(State(api): State<Api>, Path(id): Path<String>, req: Request) -> Response {
    let enabled = models_enabled(&api.config);
    if let Err(refused) = gate(&api, req, enabled, Method::GET).await {
        return refused;
    }
    if model_ids(&api.agents).contains(&id) {
        axum::Json(model_object(&id)).into_response()
    } else {
        OpenAiError::model_not_found(&id).into_response()
    }
}

/// `POST /v1/chat/completions` — run the last user message as one agent turn.
pub(crate) async fn chat_completions(State(api): State<Api>, req: Request) -> Response {
    let enabled = chat_enabled(&api.config);
    let (parts, body) = match gate(&api, req, enabled, Method::POST).await {
        Ok(ok) => ok,
        Err(refused) => return refused,
    };
    chat(&api, &parts.headers, body).await.unwrap_or_else(IntoResponse::into_response)
}

/// What a chat completion request asks for.
#[derive(Debug, Clone, PartialEq)]
struct ChatRequest {
    model: String,
    stream: bool,
    include_usage: bool,
    user: Option<String>,
    prompt: Option<prompt::Prompt>,
}

impl ChatRequest {
    /// Lenient like the real gateway: a missing `model` means `openclaw`, fields of the wrong
    /// type are ignored, and only the conversation decides whether there is anything to run.
    /// Consumes the body: message texts are moved out of it and each message is dropped once
    /// read, so a 20 MB prompt is never held twice over (see `BODY_BUDGET_BYTES`).
    fn parse(mut body: Value) -> Self {
        let model = body.get("model").and_then(Value::as_str).unwrap_or("openclaw").to_owned();
        let stream = body.get("stream").and_then(Value::as_bool).unwrap_or(false);
        let include_usage =
            body.get("stream_options").and_then(|o| o.get("include_usage")).and_then(Value::as_bool).unwrap_or(false);
        let user = body.get("user").and_then(Value::as_str).map(str::to_owned);
        let mut system = Vec::new();
        let mut entries = Vec::new();
        let messages = match body.get_mut("messages") {
            Some(Value::Array(messages)) => std::mem::take(messages),
            _ => Vec::new(),
        };
        drop(body);
        for mut m in messages {
            let text =
                prompt::trimmed(m.get_mut("content").map(Value::take).map(prompt::content_text).unwrap_or_default());
            if text.is_empty() {
                continue;
            }
            let name = m.get("name").and_then(Value::as_str);
            match m.get("role").and_then(Value::as_str).map(str::trim) {
                Some("system" | "developer") => system.push(text),
                Some("user") => entries.push(Entry::new(Role::User, name, text)),
                Some("assistant") => entries.push(Entry::new(Role::Assistant, name, text)),
                Some("tool" | "function") => entries.push(Entry::new(Role::Tool, name, text)),
                _ => {}
            }
        }
        let prompt = prompt::build(system, entries);
        ChatRequest { model, stream, include_usage, user, prompt }
    }
}

async fn chat(api: &Api, headers: &HeaderMap, body: Body) -> Result<Response, OpenAiError> {
    // The permit lives until the answer is complete (moved into the event stream when streaming):
    // the prompt taken from the body is held by the run until then.
    let (body, permit) = read_json(&api.bodies, headers, body, CHAT_BODY_LIMIT, BODY_TIMEOUT).await?;
    let req = ChatRequest::parse(body);
    let agent_id = run::resolve_agent(&api.agents, headers, &req.model)?;
    let Some(prompt) = req.prompt else {
        return Err(OpenAiError::invalid("Missing user message in `messages`."));
    };
    let session = run::resolve_session(&api.agents, headers, &agent_id, "openai", req.user.as_deref())?;
    let id = format!("chatcmpl_{}", uuid::Uuid::new_v4());
    let live = LiveRun::start(
        &api.agents,
        RunRequest {
            run_id: id,
            session_key: session.key,
            agent_id: session.agent_id,
            message: prompt.message,
            kind: RunKind::Http,
            timeout: None,
            extra_system: prompt.extra_system,
            client: Some(run::client_info("openai")),
            context: None,
        },
        session.stateless,
    )
    .await?;
    if req.stream {
        return Ok(stream(live, req.model, req.include_usage, permit));
    }
    let id = live.id().to_owned();
    let outcome = live.outcome().await?;
    drop(permit);
    let text = outcome.reply()?;
    Ok(axum::Json(json!({
        "id": id,
        "object": "chat.completion",
        "created": now_secs(),
        "model": req.model,
        "choices": [{"index": 0, "message": {"role": "assistant", "content": text}, "finish_reason": "stop"}],
        "usage": usage_json(&outcome),
    }))
    .into_response())
}

fn usage_json(o: &Outcome) -> Value {
    json!({"prompt_tokens": o.usage.input, "completion_tokens": o.usage.output, "total_tokens": o.usage.total})
}

/// The streamed answer: a role chunk, one chunk per delta, a finish chunk, the usage chunk when
/// asked for, `[DONE]`. A failed run sends an `error` object instead of the finish chunk.
fn stream(mut live: LiveRun, model: String, include_usage: bool, permit: BodyPermit) -> Response {
    let id = live.id().to_owned();
    let created = now_secs();
    let chunk = move |delta: Value, finish: Option<&str>| {
        json!({"id": id, "object": "chat.completion.chunk", "created": created, "model": model,
               "choices": [{"index": 0, "delta": delta, "finish_reason": finish}]})
    };
    sse(move |sink| async move {
        let _permit = permit;
        if !sink.data(&chunk(json!({"role": "assistant"}), None)).await {
            return;
        }
        let mut streamed = String::new();
        loop {
            let outcome = match sink.follow(&mut live).await {
                None => return,
                Some(Ok(Step::Delta(delta))) => {
                    streamed.push_str(&delta);
                    if !sink.data(&chunk(json!({"content": delta}), None)).await {
                        return;
                    }
                    continue;
                }
                Some(Ok(Step::Done(outcome))) => outcome,
                Some(Err(e)) => {
                    let _ = sink.data(&e.body()).await;
                    let _ = sink.done().await;
                    return;
                }
            };
            match outcome.reply() {
                Ok(text) => {
                    // Deltas this stream missed (it fell behind) are sent as one chunk.
                    if let Some(rest) = text.strip_prefix(streamed.as_str()).filter(|r| !r.is_empty())
                        && !sink.data(&chunk(json!({"content": rest}), None)).await
                    {
                        return;
                    }
                    if !sink.data(&chunk(json!({}), Some("stop"))).await {
                        return;
                    }
                    if include_usage {
                        let mut usage = chunk(json!({}), None);
                        usage["choices"] = json!([]);
                        usage["usage"] = usage_json(&outcome);
                        if !sink.data(&usage).await {
                            return;
                        }
                    }
                }
                Err(e) => {
                    if !sink.data(&e.body()).await {
                        return;
                    }
                }
            }
            let _ = sink.done().await;
            return;
        }
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn chat_requests_take_the_last_user_message_and_system_text() {
        let r = ChatRequest::parse(json!({
            "model": "openclaw/main", "stream": true, "stream_options": {"include_usage": true}, "user": "u1",
            "messages": [{"role": "system", "content": "be brief"}, {"role": "user", "content": [{"type": "text", "text": "hi"}]}],
        }));
        assert_eq!(r.model, "openclaw/main");
        assert!(r.stream && r.include_usage);
        assert_eq!(r.user.as_deref(), Some("u1"));
        let p = r.prompt.unwrap();
        assert_eq!((p.message.as_str(), p.extra_system.as_deref()), ("hi", Some("be brief")));
    }

    #[test]
    fn a_request_without_user_text_has_nothing_to_run() {
        assert_eq!(ChatRequest::parse(json!({"model": "openclaw/default"})).prompt, None);
        assert_eq!(ChatRequest::parse(json!({"messages": "nope"})).prompt, None);
        assert_eq!(ChatRequest::parse(json!({"messages": [{"role": "user", "content": "  "}]})).prompt, None);
        assert_eq!(ChatRequest::parse(json!([])).model, "openclaw");
    }
}
