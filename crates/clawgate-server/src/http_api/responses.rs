//! `POST /v1/responses` (OpenResponses): the same agent turn as a chat completion, answered as a
//! `response` object or as its typed event stream. `previous_response_id` continues the session
//! of that response: the response id is the run id, and the run record keeps its session key,
//! so the link survives restarts without a map of our own.

use axum::body::Body;
use axum::extract::{Request, State};
use axum::http::{HeaderMap, Method};
use axum::response::{IntoResponse, Response};
use serde_json::{Value, json};

use clawgate_core::SessionKey;
use clawgate_core::agent::RunRequest;
use clawgate_core::config_service::ConfigService;
use clawgate_core::gateway::Store;
use clawgate_store::{RunKind, RunStore};

use super::error::OpenAiError;
use super::openai::BODY_TIMEOUT;
use super::prompt::{self, Entry, Prompt, Role};
use super::run::{self, Ending, LiveRun, Outcome, Step};
use super::{Api, BodyPermit, gate, now_secs, read_json, sse};

/// Input items may carry files and images inline; upstream allows 20 MB.
const RESPONSES_BODY_LIMIT: usize = 20 * 1024 * 1024;

fn enabled(config: &ConfigService) -> bool {
    config.current().config.gateway.http.endpoints.responses.enabled
}

/// `POST /v1/responses`.
pub(crate) async fn create(State(api): State<Api>, req: Request) -> Response {
    let on = enabled(&api.config);
    let (parts, body) = match gate(&api, req, on, Method::POST).await {
        Ok(ok) => ok,
        Err(refused) => return refused,
    };
    respond(&api, &parts.headers, body).await.unwrap_or_else(IntoResponse::into_response)
}

/// The turn in `input`: a string, or message / `function_call_output` items (typed, or the
/// short `{role, content}` form). Takes `input` so texts are moved out of it, not copied.
fn input_prompt(input: Option<Value>) -> Option<Prompt> {
    match input? {
        Value::String(s) => {
            let message = prompt::trimmed_or_whole(s)?;
            Some(Prompt { message, extra_system: None })
        }
        Value::Array(items) => {
            let mut system = Vec::new();
            let mut entries = Vec::new();
            for mut item in items {
                let kind = item.get("type").and_then(Value::as_str);
                match kind {
                    Some("function_call_output") => {
                        let call = item.get("call_id").and_then(Value::as_str).map(str::to_owned);
                        let output = prompt::trimmed(
                            item.get_mut("output").map(Value::take).map(prompt::content_text).unwrap_or_default(),
                        );
                        if !output.is_empty() {
                            entries.push(Entry::new(Role::Tool, call.as_deref(), output));
                        }
                    }
                    Some("message") | None => {
                        let role = item.get("role").and_then(Value::as_str).map(str::to_owned);
                        let text = prompt::trimmed(
                            item.get_mut("content").map(Value::take).map(prompt::content_text).unwrap_or_default(),
                        );
                        if text.is_empty() {
                            continue;
                        }
                        match role.as_deref() {
                            Some("system" | "developer") => system.push(text),
                            Some("assistant") => entries.push(Entry::new(Role::Assistant, None, text)),
                            Some(_) => entries.push(Entry::new(Role::User, None, text)),
                            None => {}
                        }
                    }
                    // Reasoning items and references carry no turn text.
                    Some(_) => {}
                }
            }
            prompt::build(system, entries)
        }
        _ => None,
    }
}

/// The session of an earlier response, and the agent that owns it.
async fn previous_session(store: &Store, id: &str) -> Result<run::Session, OpenAiError> {
    let unknown = || OpenAiError::invalid(format!("Unknown `previous_response_id`: {id}"));
    if !id.starts_with("resp_") {
        return Err(unknown());
    }
    let record = store
        .get_run(id)
        .await
        .map_err(|e| OpenAiError::internal("cannot look up a response", e))?
        .ok_or_else(unknown)?;
    let (key, agent_id) = SessionKey::from_canonical(&record.session_key).ok_or_else(unknown)?.into_parts();
    Ok(run::Session { key, agent_id, stateless: false })
}

async fn respond(api: &Api, headers: &HeaderMap, body: Body) -> Result<Response, OpenAiError> {
    // Held until the answer is complete, like the chat completion's (see `BODY_BUDGET_BYTES`).
    let (mut body, permit) = read_json(&api.bodies, headers, body, RESPONSES_BODY_LIMIT, BODY_TIMEOUT).await?;
    let model = body.get("model").and_then(Value::as_str).unwrap_or("openclaw").to_owned();
    let stream = body.get("stream").and_then(Value::as_bool).unwrap_or(false);
    let agent_id = run::resolve_agent(&api.agents, headers, &model)?;
    let Some(prompt) = input_prompt(body.get_mut("input").map(Value::take)) else {
        return Err(OpenAiError::invalid("Missing user message in `input`."));
    };
    let instructions = body.get("instructions").and_then(Value::as_str).map(str::trim).filter(|s| !s.is_empty());
    let extra: Vec<&str> = instructions.into_iter().chain(prompt.extra_system.as_deref()).collect();
    let extra_system = (!extra.is_empty()).then(|| extra.join("\n\n"));
    let previous = body.get("previous_response_id").and_then(Value::as_str).map(str::trim).filter(|s| !s.is_empty());
    let session = match previous {
        Some(id) if headers.get("x-openclaw-session-key").is_none() => previous_session(&api.store, id).await?,
        _ => {
            let user = body.get("user").and_then(Value::as_str);
            run::resolve_session(&api.agents, headers, &agent_id, "openresponses", user)?
        }
    };
    drop(body);
    let live = LiveRun::start(
        &api.agents,
        RunRequest {
            run_id: format!("resp_{}", uuid::Uuid::new_v4()),
            session_key: session.key,
            agent_id: session.agent_id,
            message: prompt.message,
            kind: RunKind::Http,
            timeout: None,
            extra_system,
            client: Some(run::client_info("openresponses")),
            context: None,
        },
        session.stateless,
    )
    .await?;
    let shape = Shape { id: live.id().to_owned(), item_id: format!("msg_{}", uuid::Uuid::new_v4()), model };
    if stream {
        return Ok(stream_events(live, shape, permit));
    }
    let outcome = live.outcome().await?;
    drop(permit);
    let (status, text) = finished(&outcome)?;
    Ok(axum::Json(shape.resource(status, vec![shape.item(text, "completed")], Some(&outcome))).into_response())
}

/// `completed`, or `incomplete` when someone stopped the run (the partial text is kept); other
/// endings are errors.
fn finished(o: &Outcome) -> Result<(&'static str, &str), OpenAiError> {
    let text = o.reply()?;
    Ok(match o.ending {
        Ending::Aborted { .. } => ("incomplete", text),
        _ => ("completed", text),
    })
}

/// Ids and model shared by every object of one response.
#[derive(Debug, Clone)]
struct Shape {
    id: String,
    item_id: String,
    model: String,
}

impl Shape {
    fn item(&self, text: &str, status: &str) -> Value {
        json!({"type": "message", "id": self.item_id, "role": "assistant", "status": status,
               "content": [{"type": "output_text", "text": text, "annotations": []}], "phase": "final_answer"})
    }

    fn resource(&self, status: &str, output: Vec<Value>, outcome: Option<&Outcome>) -> Value {
        let u = outcome.map(|o| o.usage).unwrap_or_default();
        let mut r = json!({
            "id": self.id, "object": "response", "created_at": now_secs(), "status": status, "model": self.model,
            "output": output,
            "usage": {"input_tokens": u.input, "input_tokens_details": {"cached_tokens": u.cache_read, "cache_write_tokens": 0},
                      "output_tokens": u.output, "output_tokens_details": {"reasoning_tokens": 0}, "total_tokens": u.total},
        });
        if status == "incomplete" {
            r["incomplete_details"] = json!({"reason": "cancelled"});
        }
        r
    }
}

/// Numbers the events of one stream (`sequence_number`).
struct Events {
    next: u64,
}

impl Events {
    fn make(&mut self, kind: &str, mut body: Value) -> (String, Value) {
        body["type"] = json!(kind);
        body["sequence_number"] = json!(self.next);
        self.next += 1;
        (kind.to_owned(), body)
    }
}

/// The event stream: created, in_progress, the item and its text part, one delta event per
/// streamed delta, then the `done` events and `response.completed` (or `response.failed`), and
/// `[DONE]`.
fn stream_events(mut live: LiveRun, shape: Shape, permit: BodyPermit) -> Response {
    sse(move |sink| async move {
        let _permit = permit;
        let mut ev = Events { next: 0 };
        let start = shape.resource("in_progress", vec![], None);
        let mut pending = vec![
            ev.make("response.created", json!({"response": start})),
            ev.make("response.in_progress", json!({"response": start})),
            ev.make(
                "response.output_item.added",
                json!({"output_index": 0, "item": {"type": "message", "id": shape.item_id, "role": "assistant",
                                                    "status": "in_progress", "content": []}}),
            ),
            ev.make(
                "response.content_part.added",
                json!({"item_id": shape.item_id, "output_index": 0, "content_index": 0,
                       "part": {"type": "output_text", "text": "", "annotations": []}}),
            ),
        ];
        let mut text = String::new();
        loop {
            for (name, body) in pending.drain(..) {
                if !sink.event(&name, &body).await {
                    return;
                }
            }
            let delta = |ev: &mut Events, d: &str| {
                ev.make(
                    "response.output_text.delta",
                    json!({"item_id": shape.item_id, "output_index": 0, "content_index": 0, "delta": d}),
                )
            };
            let outcome = match sink.follow(&mut live).await {
                None => return,
                Some(Ok(Step::Delta(d))) => {
                    text.push_str(&d);
                    pending.push(delta(&mut ev, &d));
                    continue;
                }
                Some(Ok(Step::Done(outcome))) => Ok(outcome),
                Some(Err(e)) => Err(e),
            };
            match outcome.as_ref().map_err(Clone::clone).and_then(|o| finished(o).map(|f| (o, f))) {
                Ok((outcome, (status, final_text))) => {
                    if let Some(rest) = final_text.strip_prefix(text.as_str()).filter(|r| !r.is_empty()) {
                        pending.push(delta(&mut ev, rest));
                    }
                    let part = json!({"type": "output_text", "text": final_text, "annotations": []});
                    let item = shape.item(final_text, "completed");
                    pending.push(ev.make(
                        "response.output_text.done",
                        json!({"item_id": shape.item_id, "output_index": 0, "content_index": 0, "text": final_text}),
                    ));
                    pending.push(ev.make(
                        "response.content_part.done",
                        json!({"item_id": shape.item_id, "output_index": 0, "content_index": 0, "part": part}),
                    ));
                    pending.push(ev.make("response.output_item.done", json!({"output_index": 0, "item": item})));
                    let name = if status == "incomplete" { "response.incomplete" } else { "response.completed" };
                    let resource = shape.resource(status, vec![item], Some(outcome));
                    pending.push(ev.make(name, json!({"response": resource})));
                }
                Err(e) => {
                    let mut resource = shape.resource("failed", vec![], outcome.as_ref().ok());
                    resource["error"] = json!({"code": e.kind(), "message": e.message()});
                    pending.push(ev.make("response.failed", json!({"response": resource})));
                }
            }
            for (name, body) in pending.drain(..) {
                if !sink.event(&name, &body).await {
                    return;
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
    fn input_is_a_string_or_message_items() {
        assert_eq!(input_prompt(Some(json!("hi"))).map(|p| p.message), Some("hi".into()));
        assert_eq!(input_prompt(Some(json!("  "))), None);
        assert_eq!(input_prompt(None), None);
        let items = json!([
            {"type": "message", "role": "developer", "content": "be brief"},
            {"role": "user", "content": [{"type": "input_text", "text": "hello"}]},
        ]);
        let p = input_prompt(Some(items)).unwrap();
        assert_eq!((p.message.as_str(), p.extra_system.as_deref()), ("hello", Some("be brief")));
        let tool = json!([{"type": "function_call_output", "call_id": "c1", "output": "42"}]);
        assert_eq!(input_prompt(Some(tool)).map(|p| p.message), Some("42".into()));
    }

    #[test]
    fn events_are_numbered_in_order() {
        let mut ev = Events { next: 0 };
        let (name, body) = ev.make("response.created", json!({}));
        assert_eq!((name.as_str(), body["sequence_number"].as_u64()), ("response.created", Some(0)));
        assert_eq!(ev.make("x", json!({})).1["sequence_number"], 1);
    }
}
