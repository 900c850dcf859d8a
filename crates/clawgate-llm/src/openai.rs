//! OpenAI-compatible Chat Completions (`POST {baseUrl}/chat/completions`): OpenAI itself, Ollama,
//! vLLM, llama.cpp's server, LM Studio and the many proxies that copy the shape.

use std::collections::BTreeMap;
use std::fmt;

use futures_util::future::BoxFuture;
use reqwest::header::{AUTHORIZATION, HeaderMap, HeaderValue};
use serde_json::{Map, Value, json};
use tokio_util::sync::CancellationToken;

use crate::config::{ConfigError, MaxTokensField, ModelInfo, ProviderConfig};
use crate::error::{ErrorBody, LlmError, Redactor, classify_stream_error};
use crate::http::{self, Decoder, HttpContext};
use crate::provider::{EventStream, Provider, RemoteModel};
use crate::sse::SseEvent;
use crate::types::{ChatMessage, ChatRequest, StopReason, StreamEvent, Usage};

/// A client for one OpenAI-compatible server.
pub struct OpenAiCompatible {
    ctx: HttpContext,
    base_url: reqwest::Url,
    /// Config headers plus `Authorization`, which is marked sensitive so it never prints.
    headers: HeaderMap,
    models: Vec<ModelInfo>,
    /// Per-model extra headers (`models[].headers`), validated up front.
    model_headers: BTreeMap<String, HeaderMap>,
    /// Whether the server is OpenAI itself, which wants `max_completion_tokens`.
    is_openai: bool,
}

impl fmt::Debug for OpenAiCompatible {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("OpenAiCompatible")
            .field("provider", &self.ctx.provider)
            .field("base_url", &self.ctx.base_url_display)
            .finish_non_exhaustive()
    }
}

impl OpenAiCompatible {
    /// Builds a client from a provider's config. Sends `Authorization: Bearer <apiKey>` when a key
    /// is set, unless the config says `authHeader: false`.
    pub fn new(config: ProviderConfig) -> Result<Self, ConfigError> {
        let prepared = http::prepare(&config)?;
        let mut headers = prepared.headers;
        if let Some(key) = &config.api_key
            && config.auth_header != Some(false)
        {
            let mut value = HeaderValue::from_str(&format!("Bearer {key}"))
                .map_err(|_| ConfigError::new(&config.id, "apiKey", "contains characters not allowed in a header"))?;
            value.set_sensitive(true);
            headers.insert(AUTHORIZATION, value);
        }
        let is_openai = prepared.base_url.host_str() == Some("api.openai.com");
        let model_headers = http::model_headers(&config)?;
        Ok(Self {
            ctx: prepared.ctx,
            base_url: prepared.base_url,
            headers,
            models: config.models,
            model_headers,
            is_openai,
        })
    }

    fn model(&self, id: &str) -> Option<&ModelInfo> {
        self.models.iter().find(|m| m.id == id)
    }

    /// The JSON body for `request`, as sent.
    pub fn request_body(&self, request: &ChatRequest) -> Value {
        let model = self.model(&request.model);
        let field = model.and_then(|m| m.compat.max_tokens_field).unwrap_or(if self.is_openai {
            MaxTokensField::MaxCompletionTokens
        } else {
            MaxTokensField::MaxTokens
        });
        let options = BodyOptions {
            max_tokens_field: field,
            default_max_tokens: model.and_then(|m| m.max_tokens),
            include_usage: model.and_then(|m| m.compat.supports_usage_in_streaming).unwrap_or(true),
        };
        build_body(request, &options)
    }
}

struct BodyOptions {
    max_tokens_field: MaxTokensField,
    default_max_tokens: Option<u32>,
    include_usage: bool,
}

fn build_body(request: &ChatRequest, options: &BodyOptions) -> Value {
    let mut messages = Vec::with_capacity(request.messages.len() + 1);
    if let Some(system) = &request.system {
        messages.push(json!({"role": "system", "content": system}));
    }
    for message in &request.messages {
        messages.push(match message {
            ChatMessage::System { content } => json!({"role": "system", "content": content}),
            ChatMessage::User { content } => json!({"role": "user", "content": content}),
            ChatMessage::Assistant { content, tool_calls } if tool_calls.is_empty() => {
                json!({"role": "assistant", "content": content})
            }
            ChatMessage::Assistant { content, tool_calls } => {
                let calls: Vec<Value> = tool_calls
                    .iter()
                    .map(|c| json!({"id": c.id, "type": "function", "function": {"name": c.name, "arguments": c.arguments}}))
                    .collect();
                // Several servers reject `""` next to tool calls; `null` is what OpenAI itself sends.
                let content = if content.is_empty() { Value::Null } else { Value::String(content.clone()) };
                json!({"role": "assistant", "content": content, "tool_calls": calls})
            }
            ChatMessage::Tool { tool_call_id, content } => {
                json!({"role": "tool", "tool_call_id": tool_call_id, "content": content})
            }
        });
    }
    let mut body = Map::new();
    body.insert("model".into(), json!(request.model));
    body.insert("messages".into(), Value::Array(messages));
    body.insert("stream".into(), json!(true));
    if options.include_usage {
        body.insert("stream_options".into(), json!({"include_usage": true}));
    }
    if !request.tools.is_empty() {
        let tools: Vec<Value> = request
            .tools
            .iter()
            .map(|t| {
                json!({"type": "function", "function": {"name": t.name, "description": t.description, "parameters": t.parameters}})
            })
            .collect();
        body.insert("tools".into(), Value::Array(tools));
        body.insert("tool_choice".into(), json!("auto"));
    }
    if let Some(max) = request.max_tokens.or(options.default_max_tokens) {
        body.insert(options.max_tokens_field.as_str().into(), json!(max));
    }
    if let Some(temperature) = request.temperature {
        body.insert("temperature".into(), json!(temperature));
    }
    Value::Object(body)
}

impl Provider for OpenAiCompatible {
    fn id(&self) -> &str {
        &self.ctx.provider
    }

    fn stream(&self, request: ChatRequest, cancel: CancellationToken) -> EventStream {
        self.stream_ref(&request, cancel)
    }

    fn stream_ref(&self, request: &ChatRequest, cancel: CancellationToken) -> EventStream {
        let mut headers = self.headers.clone();
        if let Some(extra) = self.model_headers.get(&request.model) {
            headers.extend(extra.clone());
        }
        let client = match self.ctx.client() {
            Ok(client) => client,
            Err(e) => return Box::pin(futures_util::stream::once(async move { Err(e) })),
        };
        let http_request = client
            .post(http::join_url(&self.base_url, "chat/completions"))
            .headers(headers)
            .header(reqwest::header::ACCEPT, "text/event-stream")
            .json(&self.request_body(request));
        http::event_stream(self.ctx.clone(), http_request, OpenAiDecoder::new(self.ctx.redactor.clone()), cancel)
    }

    fn list_models(&self) -> BoxFuture<'_, Result<Vec<RemoteModel>, LlmError>> {
        Box::pin(async move {
            let request =
                self.ctx.client()?.get(http::join_url(&self.base_url, "models")).headers(self.headers.clone());
            let body = self.ctx.fetch_json(request).await?;
            parse_model_list(&body)
        })
    }
}

/// Reads `{"data":[{"id":…,"owned_by":…}]}`; Ollama and llama.cpp add fields we ignore.
fn parse_model_list(body: &Value) -> Result<Vec<RemoteModel>, LlmError> {
    let data = body
        .get("data")
        .and_then(Value::as_array)
        .ok_or_else(|| LlmError::Protocol { message: "the model list has no `data` array".into() })?;
    Ok(data
        .iter()
        .filter_map(|m| {
            Some(RemoteModel {
                id: m.get("id")?.as_str()?.to_owned(),
                display_name: m.get("name").and_then(Value::as_str).map(str::to_owned),
                owned_by: m.get("owned_by").and_then(Value::as_str).map(str::to_owned),
            })
        })
        .collect())
}

/// One tool call being streamed, keyed by the server's `index`.
#[derive(Debug, Default)]
struct PendingCall {
    /// Our normalised index, assigned once the call has a name and is announced.
    index: Option<usize>,
    id: Option<String>,
    name: Option<String>,
    /// Argument text that arrived before the name (rare, but legal).
    early_args: String,
    ended: bool,
}

/// Folds `chat.completion.chunk` objects into events. Tolerates what real servers do: `id` and
/// `created` missing, `finish_reason` only in the last chunk, usage in a chunk with no choices,
/// tool calls without `index` (older Ollama), whole tool calls in one delta, no `[DONE]`.
pub(crate) struct OpenAiDecoder {
    redactor: Redactor,
    calls: BTreeMap<u64, PendingCall>,
    /// The normalised index the next announced call gets.
    next_index: usize,
    finish: Option<StopReason>,
    usage: Option<Usage>,
}

impl OpenAiDecoder {
    pub(crate) fn new(redactor: Redactor) -> Self {
        Self { redactor, calls: BTreeMap::new(), next_index: 0, finish: None, usage: None }
    }

    fn chunk(&mut self, chunk: &Value, out: &mut Vec<StreamEvent>) -> Result<(), LlmError> {
        if let Some(error) = ErrorBody::from_value(chunk) {
            return Err(classify_stream_error(&error, &self.redactor));
        }
        if let Some(usage) = chunk.get("usage").filter(|u| u.is_object()) {
            self.usage = Some(parse_usage(usage));
        }
        let Some(choices) = chunk.get("choices").and_then(Value::as_array) else {
            return Ok(());
        };
        // We never ask for n > 1, so only the first choice is ours.
        let Some(choice) = choices.iter().find(|c| c.get("index").and_then(Value::as_u64).unwrap_or(0) == 0) else {
            return Ok(());
        };
        if let Some(delta) = choice.get("delta").or_else(|| choice.get("message")) {
            if let Some(text) = delta.get("content").and_then(Value::as_str)
                && !text.is_empty()
            {
                out.push(StreamEvent::TextDelta(text.to_owned()));
            }
            if let Some(calls) = delta.get("tool_calls").and_then(Value::as_array) {
                for (position, call) in calls.iter().enumerate() {
                    self.tool_call_delta(position as u64, call, out);
                }
            }
        }
        if let Some(reason) = choice.get("finish_reason").and_then(Value::as_str) {
            self.finish = Some(StopReason::from_openai(reason));
            self.end_calls(out)?;
        }
        Ok(())
    }

    fn tool_call_delta(&mut self, position: u64, call: &Value, out: &mut Vec<StreamEvent>) {
        let key = call.get("index").and_then(Value::as_u64).unwrap_or(position);
        let id = call.get("id").and_then(Value::as_str).filter(|s| !s.is_empty());
        let function = call.get("function");
        let name = function.and_then(|f| f.get("name")).and_then(Value::as_str).filter(|s| !s.is_empty());
        let args = function.and_then(|f| f.get("arguments")).and_then(Value::as_str).unwrap_or("");

        // A different id under an index we already used is a new call (servers that send each
        // complete call as `index: 0`): close the old one first.
        if let (Some(id), Some(existing)) = (id, self.calls.get_mut(&key))
            && existing.id.as_deref().is_some_and(|old| old != id)
        {
            if let (Some(index), false) = (existing.index, existing.ended) {
                out.push(StreamEvent::ToolCallEnd { index });
            }
            self.calls.insert(key, PendingCall::default());
        }
        let pending = self.calls.entry(key).or_default();
        if pending.id.is_none() {
            pending.id = id.map(str::to_owned);
        }
        if pending.name.is_none() {
            pending.name = name.map(str::to_owned);
        }
        match (pending.index, &pending.name) {
            (Some(index), _) => {
                if !args.is_empty() {
                    out.push(StreamEvent::ToolCallArgsDelta { index, delta: args.to_owned() });
                }
            }
            (None, Some(name)) => {
                let index = self.next_index;
                self.next_index += 1;
                pending.index = Some(index);
                let id = pending.id.clone().unwrap_or_else(|| format!("call_{index}"));
                out.push(StreamEvent::ToolCallStart { index, id, name: name.clone() });
                let mut early = std::mem::take(&mut pending.early_args);
                early.push_str(args);
                if !early.is_empty() {
                    out.push(StreamEvent::ToolCallArgsDelta { index, delta: early });
                }
            }
            (None, None) => pending.early_args.push_str(args),
        }
    }

    fn end_calls(&mut self, out: &mut Vec<StreamEvent>) -> Result<(), LlmError> {
        for pending in self.calls.values_mut() {
            match pending.index {
                Some(index) if !pending.ended => {
                    pending.ended = true;
                    out.push(StreamEvent::ToolCallEnd { index });
                }
                Some(_) => {}
                None => {
                    return Err(LlmError::Protocol { message: "a tool call arrived without a function name".into() });
                }
            }
        }
        Ok(())
    }

    fn complete(&mut self, out: &mut Vec<StreamEvent>) -> Result<(), LlmError> {
        self.end_calls(out)?;
        if let Some(usage) = self.usage.take() {
            out.push(StreamEvent::Usage(usage));
        }
        // Lenient servers end with `[DONE]` but no finish_reason; infer the obvious one.
        let inferred = if self.next_index > 0 { StopReason::ToolCalls } else { StopReason::Stop };
        let stop_reason = self.finish.take().unwrap_or(inferred);
        out.push(StreamEvent::Finish { stop_reason });
        Ok(())
    }
}

fn parse_usage(usage: &Value) -> Usage {
    let count = |v: Option<&Value>| v.and_then(Value::as_u64).unwrap_or(0);
    Usage {
        input_tokens: count(usage.get("prompt_tokens")),
        output_tokens: count(usage.get("completion_tokens")),
        cache_read_tokens: count(usage.get("prompt_tokens_details").and_then(|d| d.get("cached_tokens"))),
        cache_write_tokens: 0,
    }
}

impl Decoder for OpenAiDecoder {
    fn event(&mut self, event: SseEvent, out: &mut Vec<StreamEvent>) -> Result<bool, LlmError> {
        let data = event.data.trim();
        if data == "[DONE]" {
            self.complete(out)?;
            return Ok(true);
        }
        if data.is_empty() {
            return Ok(false);
        }
        let chunk: Value = serde_json::from_str(data).map_err(|e| LlmError::Protocol {
            message: format!("a stream chunk is not JSON ({e}): {}", self.redactor.clean(data)),
        })?;
        self.chunk(&chunk, out)?;
        Ok(false)
    }

    fn end_of_body(&mut self, out: &mut Vec<StreamEvent>) -> Result<(), LlmError> {
        if self.finish.is_none() {
            return Err(LlmError::Protocol {
                message: "the stream ended before the model finished (no finish_reason, no [DONE])".into(),
            });
        }
        self.complete(out)
    }

    fn whole_json(&mut self, body: Value, out: &mut Vec<StreamEvent>) -> Result<(), LlmError> {
        self.chunk(&body, out)?;
        if body.get("choices").and_then(Value::as_array).is_none_or(|c| c.is_empty()) {
            return Err(LlmError::Protocol { message: "the answer has no choices".into() });
        }
        self.complete(out)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::sse::SseParser;
    use crate::types::{ToolCall, ToolSpec};

    fn decode(body: &str) -> Vec<Result<StreamEvent, String>> {
        let mut parser = SseParser::new();
        let mut events = Vec::new();
        parser.push(body.as_bytes(), &mut events).expect("within limits");
        parser.finish(&mut events).expect("within limits");
        let mut decoder = OpenAiDecoder::new(Redactor::default());
        let mut items = Vec::new();
        for event in events {
            let mut out = Vec::new();
            let done = decoder.event(event, &mut out);
            items.extend(out.into_iter().map(Ok));
            match done {
                Ok(true) => return items,
                Ok(false) => {}
                Err(e) => {
                    items.push(Err(e.to_string()));
                    return items;
                }
            }
        }
        let mut out = Vec::new();
        let ended = decoder.end_of_body(&mut out);
        items.extend(out.into_iter().map(Ok));
        if let Err(e) = ended {
            items.push(Err(e.to_string()));
        }
        items
    }

    fn frames(chunks: &[Value]) -> String {
        chunks.iter().map(|c| format!("data: {c}\n\n")).collect()
    }

    #[test]
    fn body_matches_what_openclaw_sends() {
        let request = ChatRequest {
            model: "fake-model".into(),
            system: Some("You are a personal assistant".into()),
            messages: vec![
                ChatMessage::user("Say hello"),
                ChatMessage::assistant_with_tools(
                    "",
                    vec![ToolCall { id: "call_1".into(), name: "ls".into(), arguments: "{}".into() }],
                ),
                ChatMessage::tool_result("call_1", "a.txt"),
            ],
            tools: vec![ToolSpec {
                name: "ls".into(),
                description: "List directories".into(),
                parameters: json!({"type": "object", "properties": {}}),
            }],
            max_tokens: None,
            temperature: Some(0.5),
        };
        let options = BodyOptions {
            max_tokens_field: MaxTokensField::MaxCompletionTokens,
            default_max_tokens: Some(4096),
            include_usage: true,
        };
        let body = build_body(&request, &options);
        assert_eq!(
            body,
            json!({
                "model": "fake-model",
                "messages": [
                    {"role": "system", "content": "You are a personal assistant"},
                    {"role": "user", "content": "Say hello"},
                    {"role": "assistant", "content": null, "tool_calls": [
                        {"id": "call_1", "type": "function", "function": {"name": "ls", "arguments": "{}"}}
                    ]},
                    {"role": "tool", "tool_call_id": "call_1", "content": "a.txt"},
                ],
                "stream": true,
                "stream_options": {"include_usage": true},
                "tools": [{"type": "function", "function": {
                    "name": "ls", "description": "List directories", "parameters": {"type": "object", "properties": {}}
                }}],
                "tool_choice": "auto",
                "max_completion_tokens": 4096,
                "temperature": 0.5,
            })
        );
    }

    #[test]
    fn body_without_tools_has_no_tools_field() {
        let options =
            BodyOptions { max_tokens_field: MaxTokensField::MaxTokens, default_max_tokens: None, include_usage: false };
        let body = build_body(&ChatRequest::new("m", vec![ChatMessage::user("hi")]), &options);
        assert!(body.get("tools").is_none());
        assert!(body.get("tool_choice").is_none());
        assert!(body.get("stream_options").is_none());
        assert!(body.get("max_tokens").is_none());
    }

    #[test]
    fn text_usage_and_finish_come_out_in_order() {
        let body = frames(&[
            json!({"choices": [{"index": 0, "delta": {"role": "assistant", "content": ""}}]}),
            json!({"choices": [{"index": 0, "delta": {"content": "Hello"}}]}),
            json!({"choices": [{"index": 0, "delta": {"content": " world"}, "finish_reason": null}]}),
            json!({"choices": [{"index": 0, "delta": {}, "finish_reason": "stop"}]}),
            json!({"choices": [], "usage": {"prompt_tokens": 12, "completion_tokens": 2,
                   "prompt_tokens_details": {"cached_tokens": 4}}}),
        ]) + "data: [DONE]\n\n";
        let items = decode(&body);
        assert_eq!(
            items,
            vec![
                Ok(StreamEvent::TextDelta("Hello".into())),
                Ok(StreamEvent::TextDelta(" world".into())),
                Ok(StreamEvent::Usage(Usage {
                    input_tokens: 12,
                    output_tokens: 2,
                    cache_read_tokens: 4,
                    cache_write_tokens: 0
                })),
                Ok(StreamEvent::Finish { stop_reason: StopReason::Stop }),
            ]
        );
    }

    #[test]
    fn tool_call_fragments_are_keyed_by_index() {
        let body = frames(&[
            json!({"choices": [{"index": 0, "delta": {"tool_calls": [
                {"index": 0, "id": "call_a", "type": "function", "function": {"name": "read", "arguments": ""}}]}}]}),
            json!({"choices": [{"index": 0, "delta": {"tool_calls": [
                {"index": 1, "id": "call_b", "type": "function", "function": {"name": "ls", "arguments": "{}"}}]}}]}),
            json!({"choices": [{"index": 0, "delta": {"tool_calls": [{"index": 0, "function": {"arguments": "{\"pa"}}]}}]}),
            json!({"choices": [{"index": 0, "delta": {"tool_calls": [{"index": 0, "function": {"arguments": "th\":1}"}}]}}]}),
            json!({"choices": [{"index": 0, "delta": {}, "finish_reason": "tool_calls"}]}),
        ]) + "data: [DONE]\n\n";
        let items = decode(&body);
        assert_eq!(
            items,
            vec![
                Ok(StreamEvent::ToolCallStart { index: 0, id: "call_a".into(), name: "read".into() }),
                Ok(StreamEvent::ToolCallStart { index: 1, id: "call_b".into(), name: "ls".into() }),
                Ok(StreamEvent::ToolCallArgsDelta { index: 1, delta: "{}".into() }),
                Ok(StreamEvent::ToolCallArgsDelta { index: 0, delta: "{\"pa".into() }),
                Ok(StreamEvent::ToolCallArgsDelta { index: 0, delta: "th\":1}".into() }),
                Ok(StreamEvent::ToolCallEnd { index: 0 }),
                Ok(StreamEvent::ToolCallEnd { index: 1 }),
                Ok(StreamEvent::Finish { stop_reason: StopReason::ToolCalls }),
            ]
        );
    }

    #[test]
    fn calls_without_index_and_reused_indices_stay_separate() {
        // Older Ollama: each complete call in its own chunk, no `index`, no [DONE].
        let body = frames(&[
            json!({"choices": [{"delta": {"tool_calls": [
                {"id": "call_1", "function": {"name": "a", "arguments": "{\"x\":1}"}}]}}]}),
            json!({"choices": [{"delta": {"tool_calls": [
                {"id": "call_2", "function": {"name": "b", "arguments": "{}"}}]}}]}),
            json!({"choices": [{"delta": {}, "finish_reason": "stop"}]}),
        ]);
        let items = decode(&body);
        assert_eq!(
            items,
            vec![
                Ok(StreamEvent::ToolCallStart { index: 0, id: "call_1".into(), name: "a".into() }),
                Ok(StreamEvent::ToolCallArgsDelta { index: 0, delta: "{\"x\":1}".into() }),
                Ok(StreamEvent::ToolCallEnd { index: 0 }),
                Ok(StreamEvent::ToolCallStart { index: 1, id: "call_2".into(), name: "b".into() }),
                Ok(StreamEvent::ToolCallArgsDelta { index: 1, delta: "{}".into() }),
                Ok(StreamEvent::ToolCallEnd { index: 1 }),
                Ok(StreamEvent::Finish { stop_reason: StopReason::Stop }),
            ]
        );
    }

    #[test]
    fn mid_stream_error_object_ends_the_stream_with_that_error() {
        let body = frames(&[
            json!({"choices": [{"index": 0, "delta": {"content": "Hel"}}]}),
            json!({"error": {"message": "The server had an error", "type": "server_error"}}),
        ]);
        let items = decode(&body);
        assert_eq!(items[0], Ok(StreamEvent::TextDelta("Hel".into())));
        assert!(matches!(&items[1], Err(e) if e.contains("The server had an error")));
        assert_eq!(items.len(), 2);
    }

    #[test]
    fn truncated_stream_is_an_error_not_a_short_answer() {
        let body = frames(&[json!({"choices": [{"index": 0, "delta": {"content": "Hel"}}]})]);
        let items = decode(&body);
        assert!(matches!(items.last(), Some(Err(e)) if e.contains("ended before")));
    }

    #[test]
    fn garbage_chunk_is_a_protocol_error() {
        let items = decode("data: {not json\n\n");
        assert!(matches!(items.last(), Some(Err(e)) if e.contains("not JSON")));
    }

    #[test]
    fn done_without_finish_reason_still_finishes() {
        let body = frames(&[json!({"choices": [{"delta": {"content": "x"}}]})]) + "data: [DONE]";
        let items = decode(&body);
        assert_eq!(items.last(), Some(&Ok(StreamEvent::Finish { stop_reason: StopReason::Stop })));
    }

    #[test]
    fn whole_json_answer_becomes_the_same_events() {
        let mut decoder = OpenAiDecoder::new(Redactor::default());
        let mut out = Vec::new();
        let body = json!({
            "id": "x", "object": "chat.completion",
            "choices": [{"index": 0, "message": {"role": "assistant", "content": "Hi",
                "tool_calls": [{"id": "c", "type": "function", "function": {"name": "ls", "arguments": "{}"}}]},
                "finish_reason": "tool_calls"}],
            "usage": {"prompt_tokens": 3, "completion_tokens": 1}
        });
        decoder.whole_json(body, &mut out).expect("valid");
        assert_eq!(out[0], StreamEvent::TextDelta("Hi".into()));
        assert_eq!(out[1], StreamEvent::ToolCallStart { index: 0, id: "c".into(), name: "ls".into() });
        assert_eq!(out.last(), Some(&StreamEvent::Finish { stop_reason: StopReason::ToolCalls }));
    }

    #[test]
    fn model_list_reads_ids() {
        let list = parse_model_list(&json!({"object": "list", "data": [
            {"id": "llama3.2:latest", "object": "model", "owned_by": "library"}, {"bad": true}
        ]}))
        .expect("valid");
        assert_eq!(list.len(), 1);
        assert_eq!(list[0].id, "llama3.2:latest");
        assert_eq!(list[0].owned_by.as_deref(), Some("library"));
    }
}
