//! Anthropic Messages (`POST {baseUrl}/v1/messages`, streamed).

use std::collections::BTreeMap;
use std::fmt;

use futures_util::future::BoxFuture;
use reqwest::header::{AUTHORIZATION, HeaderMap, HeaderName, HeaderValue};
use serde_json::{Map, Value, json};
use tokio_util::sync::CancellationToken;

use crate::config::{ConfigError, ModelInfo, ProviderConfig};
use crate::error::{ErrorBody, LlmError, Redactor, classify_stream_error};
use crate::http::{self, Decoder, HttpContext};
use crate::provider::{EventStream, Provider, RemoteModel};
use crate::sse::SseEvent;
use crate::types::{ChatMessage, ChatRequest, StopReason, StreamEvent, Usage};

/// The API version header every request carries.
pub const ANTHROPIC_VERSION: &str = "2023-06-01";
/// `max_tokens` is mandatory for Anthropic; used when neither the request nor the model sets one.
const FALLBACK_MAX_TOKENS: u32 = 4096;

/// A client for the Anthropic Messages API (or a server that copies it).
pub struct Anthropic {
    ctx: HttpContext,
    base_url: reqwest::Url,
    /// Config headers, `anthropic-version`, and the key header (marked sensitive).
    headers: HeaderMap,
    models: Vec<ModelInfo>,
    model_headers: BTreeMap<String, HeaderMap>,
}

impl fmt::Debug for Anthropic {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Anthropic")
            .field("provider", &self.ctx.provider)
            .field("base_url", &self.ctx.base_url_display)
            .finish_non_exhaustive()
    }
}

impl Anthropic {
    /// Builds a client from a provider's config. The key goes in `x-api-key`, or in
    /// `Authorization: Bearer` when the config says `authHeader: true`. A base URL ending in `/v1`
    /// is accepted too (the path `/v1/messages` is added to the API root either way).
    pub fn new(mut config: ProviderConfig) -> Result<Self, ConfigError> {
        let trimmed = config.base_url.trim_end_matches('/');
        if let Some(root) = trimmed.strip_suffix("/v1") {
            config.base_url = root.to_owned();
        }
        let prepared = http::prepare(&config)?;
        let mut headers = prepared.headers;
        headers.insert(HeaderName::from_static("anthropic-version"), HeaderValue::from_static(ANTHROPIC_VERSION));
        if let Some(key) = &config.api_key {
            let bad_key = || ConfigError::new(&config.id, "apiKey", "contains characters not allowed in a header");
            let (name, mut value) = if config.auth_header == Some(true) {
                (AUTHORIZATION, HeaderValue::from_str(&format!("Bearer {key}")).map_err(|_| bad_key())?)
            } else {
                (HeaderName::from_static("x-api-key"), HeaderValue::from_str(key).map_err(|_| bad_key())?)
            };
            value.set_sensitive(true);
            headers.insert(name, value);
        }
        let model_headers = http::model_headers(&config)?;
        Ok(Self { ctx: prepared.ctx, base_url: prepared.base_url, headers, models: config.models, model_headers })
    }

    /// The JSON body for `request`, as sent.
    pub fn request_body(&self, request: &ChatRequest) -> Value {
        let default_max = self.models.iter().find(|m| m.id == request.model).and_then(|m| m.max_tokens);
        build_body(request, default_max.unwrap_or(FALLBACK_MAX_TOKENS))
    }
}

/// Appends `block` to the last message if it has the same role (Anthropic wants user and
/// assistant turns to alternate, and all tool results of one turn in one user message).
fn push_block(messages: &mut Vec<(&'static str, Vec<Value>)>, role: &'static str, block: Value) {
    match messages.last_mut() {
        Some((last_role, blocks)) if *last_role == role => blocks.push(block),
        _ => messages.push((role, vec![block])),
    }
}

fn build_body(request: &ChatRequest, default_max_tokens: u32) -> Value {
    let mut system: Vec<&str> = request.system.iter().map(String::as_str).collect();
    let mut messages: Vec<(&'static str, Vec<Value>)> = Vec::new();
    for message in &request.messages {
        match message {
            ChatMessage::System { content } => system.push(content),
            // Anthropic rejects empty text blocks, so empty texts are left out.
            ChatMessage::User { content } if content.is_empty() => {}
            ChatMessage::User { content } => {
                push_block(&mut messages, "user", json!({"type": "text", "text": content}))
            }
            ChatMessage::Assistant { content, tool_calls } => {
                if !content.is_empty() {
                    push_block(&mut messages, "assistant", json!({"type": "text", "text": content}));
                }
                for call in tool_calls {
                    push_block(
                        &mut messages,
                        "assistant",
                        json!({"type": "tool_use", "id": call.id, "name": call.name, "input": tool_input(&call.arguments)}),
                    );
                }
            }
            ChatMessage::Tool { tool_call_id, content } => push_block(
                &mut messages,
                "user",
                json!({"type": "tool_result", "tool_use_id": tool_call_id, "content": content}),
            ),
        }
    }
    let messages: Vec<Value> =
        messages.into_iter().map(|(role, content)| json!({"role": role, "content": content})).collect();

    let mut body = Map::new();
    body.insert("model".into(), json!(request.model));
    body.insert("max_tokens".into(), json!(request.max_tokens.unwrap_or(default_max_tokens)));
    body.insert("stream".into(), json!(true));
    if !system.is_empty() {
        body.insert("system".into(), json!(system.join("\n\n")));
    }
    body.insert("messages".into(), Value::Array(messages));
    if !request.tools.is_empty() {
        let tools: Vec<Value> = request
            .tools
            .iter()
            .map(|t| json!({"name": t.name, "description": t.description, "input_schema": t.parameters}))
            .collect();
        body.insert("tools".into(), Value::Array(tools));
    }
    if let Some(temperature) = request.temperature {
        body.insert("temperature".into(), json!(temperature));
    }
    Value::Object(body)
}

/// `tool_use.input` must be an object. Arguments a model streamed are usually one; when they are
/// not (cut off, or not JSON), they are passed along as `{"arguments": "<text>"}` rather than
/// failing every later call of the conversation.
fn tool_input(arguments: &str) -> Value {
    if arguments.trim().is_empty() {
        return json!({});
    }
    match serde_json::from_str::<Value>(arguments) {
        Ok(value @ Value::Object(_)) => value,
        _ => json!({"arguments": arguments}),
    }
}

impl Provider for Anthropic {
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
            .post(http::join_url(&self.base_url, "v1/messages"))
            .headers(headers)
            .header(reqwest::header::ACCEPT, "text/event-stream")
            .json(&self.request_body(request));
        http::event_stream(self.ctx.clone(), http_request, AnthropicDecoder::new(self.ctx.redactor.clone()), cancel)
    }

    fn list_models(&self) -> BoxFuture<'_, Result<Vec<RemoteModel>, LlmError>> {
        Box::pin(async move {
            let request =
                self.ctx.client()?.get(http::join_url(&self.base_url, "v1/models")).headers(self.headers.clone());
            let body = self.ctx.fetch_json(request).await?;
            let data = body
                .get("data")
                .and_then(Value::as_array)
                .ok_or_else(|| LlmError::Protocol { message: "the model list has no `data` array".into() })?;
            Ok(data
                .iter()
                .filter_map(|m| {
                    Some(RemoteModel {
                        id: m.get("id")?.as_str()?.to_owned(),
                        display_name: m.get("display_name").and_then(Value::as_str).map(str::to_owned),
                        owned_by: None,
                    })
                })
                .collect())
        })
    }
}

/// Folds Messages stream events (`message_start`, `content_block_*`, `message_delta`,
/// `message_stop`, `ping`, `error`) into normalised events.
pub(crate) struct AnthropicDecoder {
    redactor: Redactor,
    /// Content-block index → our tool-call index, for `tool_use` blocks still open.
    open_tools: BTreeMap<u64, usize>,
    next_tool: usize,
    usage: Option<Usage>,
    stop_reason: Option<StopReason>,
}

impl AnthropicDecoder {
    pub(crate) fn new(redactor: Redactor) -> Self {
        Self { redactor, open_tools: BTreeMap::new(), next_tool: 0, usage: None, stop_reason: None }
    }

    /// Reads a `usage` object; fields missing here keep their earlier value (`message_delta`
    /// usually carries only `output_tokens`).
    fn update_usage(&mut self, usage: &Value) {
        let current = self.usage.get_or_insert_with(Usage::default);
        let field = |key: &str| usage.get(key).and_then(Value::as_u64);
        let (uncached, read, write) =
            (field("input_tokens"), field("cache_read_input_tokens"), field("cache_creation_input_tokens"));
        if uncached.is_some() || read.is_some() || write.is_some() {
            let read = read.unwrap_or(current.cache_read_tokens);
            let write = write.unwrap_or(current.cache_write_tokens);
            let previous_uncached =
                current.input_tokens.saturating_sub(current.cache_read_tokens + current.cache_write_tokens);
            // Anthropic's input_tokens excludes cached tokens; ours includes them.
            current.input_tokens = uncached.unwrap_or(previous_uncached) + read + write;
            current.cache_read_tokens = read;
            current.cache_write_tokens = write;
        }
        if let Some(output) = field("output_tokens") {
            current.output_tokens = output;
        }
    }

    fn close_tools(&mut self, out: &mut Vec<StreamEvent>) {
        for (_, index) in std::mem::take(&mut self.open_tools) {
            out.push(StreamEvent::ToolCallEnd { index });
        }
    }

    fn complete(&mut self, out: &mut Vec<StreamEvent>) {
        self.close_tools(out);
        if let Some(usage) = self.usage.take() {
            out.push(StreamEvent::Usage(usage));
        }
        let stop_reason = self.stop_reason.take().unwrap_or(StopReason::Stop);
        out.push(StreamEvent::Finish { stop_reason });
    }
}

impl Decoder for AnthropicDecoder {
    fn event(&mut self, event: SseEvent, out: &mut Vec<StreamEvent>) -> Result<bool, LlmError> {
        if event.data.trim().is_empty() {
            return Ok(false);
        }
        let data: Value = serde_json::from_str(&event.data).map_err(|e| LlmError::Protocol {
            message: format!("an event is not JSON ({e}): {}", self.redactor.clean(&event.data)),
        })?;
        let kind = data.get("type").and_then(Value::as_str).or(event.event.as_deref()).unwrap_or("");
        let block_index = data.get("index").and_then(Value::as_u64).unwrap_or(0);
        match kind {
            "message_start" => {
                if let Some(usage) = data.get("message").and_then(|m| m.get("usage")) {
                    self.update_usage(usage);
                }
            }
            "content_block_start" => {
                let block = data.get("content_block").unwrap_or(&Value::Null);
                match block.get("type").and_then(Value::as_str) {
                    Some("text") => {
                        if let Some(text) = block.get("text").and_then(Value::as_str).filter(|t| !t.is_empty()) {
                            out.push(StreamEvent::TextDelta(text.to_owned()));
                        }
                    }
                    Some("tool_use") => {
                        let name = block.get("name").and_then(Value::as_str).unwrap_or("");
                        if name.is_empty() {
                            return Err(LlmError::Protocol { message: "a tool_use block has no name".into() });
                        }
                        let index = self.next_tool;
                        self.next_tool += 1;
                        let id = block
                            .get("id")
                            .and_then(Value::as_str)
                            .map_or_else(|| format!("toolu_{index}"), str::to_owned);
                        out.push(StreamEvent::ToolCallStart { index, id, name: name.to_owned() });
                        // The real API streams the input and starts with `{}`; a server that puts
                        // the whole input here instead must not lose it.
                        if let Some(input) = block.get("input").and_then(Value::as_object).filter(|i| !i.is_empty()) {
                            out.push(StreamEvent::ToolCallArgsDelta {
                                index,
                                delta: Value::Object(input.clone()).to_string(),
                            });
                        }
                        self.open_tools.insert(block_index, index);
                    }
                    // Thinking blocks and server-side tools are not part of the normalised stream.
                    _ => {}
                }
            }
            "content_block_delta" => {
                let delta = data.get("delta").unwrap_or(&Value::Null);
                match delta.get("type").and_then(Value::as_str) {
                    Some("text_delta") => {
                        if let Some(text) = delta.get("text").and_then(Value::as_str).filter(|t| !t.is_empty()) {
                            out.push(StreamEvent::TextDelta(text.to_owned()));
                        }
                    }
                    Some("input_json_delta") => {
                        let partial = delta.get("partial_json").and_then(Value::as_str).unwrap_or("");
                        if let Some(&index) = self.open_tools.get(&block_index)
                            && !partial.is_empty()
                        {
                            out.push(StreamEvent::ToolCallArgsDelta { index, delta: partial.to_owned() });
                        }
                    }
                    _ => {}
                }
            }
            "content_block_stop" => {
                if let Some(index) = self.open_tools.remove(&block_index) {
                    out.push(StreamEvent::ToolCallEnd { index });
                }
            }
            "message_delta" => {
                if let Some(reason) = data.get("delta").and_then(|d| d.get("stop_reason")).and_then(Value::as_str) {
                    self.stop_reason = Some(StopReason::from_anthropic(reason));
                }
                if let Some(usage) = data.get("usage") {
                    self.update_usage(usage);
                }
            }
            "message_stop" => {
                self.complete(out);
                return Ok(true);
            }
            "error" => {
                let body = ErrorBody::from_value(&data)
                    .unwrap_or_else(|| ErrorBody { message: data.to_string(), ..ErrorBody::default() });
                return Err(classify_stream_error(&body, &self.redactor));
            }
            // `ping` and event types added after this was written.
            _ => {}
        }
        Ok(false)
    }

    fn end_of_body(&mut self, out: &mut Vec<StreamEvent>) -> Result<(), LlmError> {
        if self.stop_reason.is_none() {
            return Err(LlmError::Protocol { message: "the stream ended before message_stop".into() });
        }
        self.complete(out);
        Ok(())
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
        let mut decoder = AnthropicDecoder::new(Redactor::default());
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

    fn sse(events: &[Value]) -> String {
        events.iter().map(|e| format!("event: {}\ndata: {e}\n\n", e["type"].as_str().expect("typed"))).collect()
    }

    #[test]
    fn body_puts_system_on_top_and_tool_results_in_user_turns() {
        let request = ChatRequest {
            model: "claude".into(),
            system: Some("Be brief.".into()),
            messages: vec![
                ChatMessage::system("Extra rule."),
                ChatMessage::user("List files"),
                ChatMessage::assistant_with_tools(
                    "Sure.",
                    vec![
                        ToolCall { id: "toolu_1".into(), name: "ls".into(), arguments: "{\"path\":\".\"}".into() },
                        ToolCall { id: "toolu_2".into(), name: "ls".into(), arguments: String::new() },
                    ],
                ),
                ChatMessage::tool_result("toolu_1", "a.txt"),
                ChatMessage::tool_result("toolu_2", "b.txt"),
            ],
            tools: vec![ToolSpec {
                name: "ls".into(),
                description: "List".into(),
                parameters: json!({"type": "object"}),
            }],
            max_tokens: None,
            temperature: None,
        };
        let body = build_body(&request, 1024);
        assert_eq!(
            body,
            json!({
                "model": "claude",
                "max_tokens": 1024,
                "stream": true,
                "system": "Be brief.\n\nExtra rule.",
                "messages": [
                    {"role": "user", "content": [{"type": "text", "text": "List files"}]},
                    {"role": "assistant", "content": [
                        {"type": "text", "text": "Sure."},
                        {"type": "tool_use", "id": "toolu_1", "name": "ls", "input": {"path": "."}},
                        {"type": "tool_use", "id": "toolu_2", "name": "ls", "input": {}},
                    ]},
                    {"role": "user", "content": [
                        {"type": "tool_result", "tool_use_id": "toolu_1", "content": "a.txt"},
                        {"type": "tool_result", "tool_use_id": "toolu_2", "content": "b.txt"},
                    ]},
                ],
                "tools": [{"name": "ls", "description": "List", "input_schema": {"type": "object"}}],
            })
        );
    }

    #[test]
    fn malformed_tool_arguments_are_wrapped_not_dropped() {
        assert_eq!(tool_input("{\"a\":"), json!({"arguments": "{\"a\":"}));
        assert_eq!(tool_input("[1]"), json!({"arguments": "[1]"}));
    }

    #[test]
    fn text_and_tool_use_stream_maps_to_normalised_events() {
        let body = sse(&[
            json!({"type": "message_start", "message": {"id": "msg_1", "usage": {"input_tokens": 10,
                   "cache_read_input_tokens": 5, "output_tokens": 1}}}),
            json!({"type": "content_block_start", "index": 0, "content_block": {"type": "text", "text": ""}}),
            json!({"type": "ping"}),
            json!({"type": "content_block_delta", "index": 0, "delta": {"type": "text_delta", "text": "Checking"}}),
            json!({"type": "content_block_stop", "index": 0}),
            json!({"type": "content_block_start", "index": 1, "content_block":
                   {"type": "tool_use", "id": "toolu_9", "name": "read", "input": {}}}),
            json!({"type": "content_block_delta", "index": 1, "delta": {"type": "input_json_delta", "partial_json": ""}}),
            json!({"type": "content_block_delta", "index": 1, "delta": {"type": "input_json_delta", "partial_json": "{\"p\":"}}),
            json!({"type": "content_block_delta", "index": 1, "delta": {"type": "input_json_delta", "partial_json": "1}"}}),
            json!({"type": "content_block_stop", "index": 1}),
            json!({"type": "message_delta", "delta": {"stop_reason": "tool_use"}, "usage": {"output_tokens": 7}}),
            json!({"type": "message_stop"}),
        ]);
        assert_eq!(
            decode(&body),
            vec![
                Ok(StreamEvent::TextDelta("Checking".into())),
                Ok(StreamEvent::ToolCallStart { index: 0, id: "toolu_9".into(), name: "read".into() }),
                Ok(StreamEvent::ToolCallArgsDelta { index: 0, delta: "{\"p\":".into() }),
                Ok(StreamEvent::ToolCallArgsDelta { index: 0, delta: "1}".into() }),
                Ok(StreamEvent::ToolCallEnd { index: 0 }),
                Ok(StreamEvent::Usage(Usage {
                    input_tokens: 15,
                    output_tokens: 7,
                    cache_read_tokens: 5,
                    cache_write_tokens: 0
                })),
                Ok(StreamEvent::Finish { stop_reason: StopReason::ToolCalls }),
            ]
        );
    }

    #[test]
    fn error_event_ends_the_stream_classified() {
        let body = sse(&[
            json!({"type": "message_start", "message": {"usage": {"input_tokens": 1}}}),
            json!({"type": "error", "error": {"type": "overloaded_error", "message": "Overloaded"}}),
        ]);
        let items = decode(&body);
        assert!(matches!(items.last(), Some(Err(e)) if e.contains("Overloaded")), "{items:?}");
    }

    #[test]
    fn stream_cut_before_message_stop_is_an_error() {
        let body = sse(&[
            json!({"type": "message_start", "message": {}}),
            json!({"type": "content_block_delta", "index": 0, "delta": {"type": "text_delta", "text": "Hi"}}),
        ]);
        assert!(matches!(decode(&body).last(), Some(Err(e)) if e.contains("message_stop")));
    }
}
