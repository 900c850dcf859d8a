//! The normalised request and stream-event types every provider speaks.

use serde_json::Value;

/// One model call: what to send, independent of the provider's wire format.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct ChatRequest {
    /// The provider's model id (the part after `provider/` in a [`ModelRef`](crate::ModelRef)).
    pub model: String,
    /// The conversation, oldest first.
    pub messages: Vec<ChatMessage>,
    /// System prompt. OpenAI-compatible servers get it as the first `system` message, Anthropic as
    /// the top-level `system` field.
    pub system: Option<String>,
    /// Tools the model may call. Empty means no `tools` field at all (some local servers reject
    /// an empty array).
    pub tools: Vec<ToolSpec>,
    /// Output token limit. `None` lets the provider decide, except for Anthropic, which requires
    /// one: there the model's configured `maxTokens` (or 4096) is sent.
    pub max_tokens: Option<u32>,
    /// Sampling temperature; `None` leaves the provider default.
    pub temperature: Option<f32>,
}

impl ChatRequest {
    /// A request for `model` with the given messages and nothing else set.
    pub fn new(model: impl Into<String>, messages: Vec<ChatMessage>) -> Self {
        Self { model: model.into(), messages, ..Self::default() }
    }
}

/// A tool the model may call.
#[derive(Debug, Clone, PartialEq)]
pub struct ToolSpec {
    /// Function name, exactly as the model must call it.
    pub name: String,
    /// What the tool does, for the model.
    pub description: String,
    /// JSON Schema of the arguments object.
    pub parameters: Value,
}

/// One message of the conversation.
#[derive(Debug, Clone, PartialEq)]
pub enum ChatMessage {
    /// Extra system instructions in the middle of a conversation. Anthropic has no such role, so
    /// there they are appended to the top-level system prompt.
    System {
        /// The instructions.
        content: String,
    },
    /// What the user said.
    User {
        /// The text.
        content: String,
    },
    /// An earlier model answer.
    Assistant {
        /// Its text (may be empty when it only called tools).
        content: String,
        /// The tools it called, in order.
        tool_calls: Vec<ToolCall>,
    },
    /// The result of running a tool the model called.
    Tool {
        /// The [`ToolCall::id`] this answers.
        tool_call_id: String,
        /// The result, as text.
        content: String,
    },
}

impl ChatMessage {
    /// A system message.
    pub fn system(content: impl Into<String>) -> Self {
        Self::System { content: content.into() }
    }

    /// A user message.
    pub fn user(content: impl Into<String>) -> Self {
        Self::User { content: content.into() }
    }

    /// An assistant message with text only.
    pub fn assistant(content: impl Into<String>) -> Self {
        Self::Assistant { content: content.into(), tool_calls: Vec::new() }
    }

    /// An assistant message that called tools.
    pub fn assistant_with_tools(content: impl Into<String>, tool_calls: Vec<ToolCall>) -> Self {
        Self::Assistant { content: content.into(), tool_calls }
    }

    /// A tool result answering the call with id `tool_call_id`.
    pub fn tool_result(tool_call_id: impl Into<String>, content: impl Into<String>) -> Self {
        Self::Tool { tool_call_id: tool_call_id.into(), content: content.into() }
    }
}

/// A complete tool call, as assembled from a stream by [`StreamAccumulator`](crate::StreamAccumulator)
/// or replayed in an assistant message.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ToolCall {
    /// Provider-assigned call id; tool results refer to it.
    pub id: String,
    /// The tool's name.
    pub name: String,
    /// The arguments as the model wrote them: a JSON text that is usually, but not always, valid.
    pub arguments: String,
}

impl ToolCall {
    /// The arguments parsed as JSON; an empty string (a call without arguments) reads as `{}`.
    pub fn arguments_json(&self) -> Result<Value, serde_json::Error> {
        if self.arguments.trim().is_empty() {
            return Ok(Value::Object(serde_json::Map::new()));
        }
        serde_json::from_str(&self.arguments)
    }
}

/// Why the model stopped.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum StopReason {
    /// It finished its answer (OpenAI `stop`, Anthropic `end_turn` / `stop_sequence`).
    Stop,
    /// It hit the output token limit.
    Length,
    /// It wants tool results before going on.
    ToolCalls,
    /// The provider filtered the output (OpenAI `content_filter`, Anthropic `refusal`).
    ContentFilter,
    /// Anything else, verbatim.
    Other(String),
}

impl StopReason {
    /// Maps an OpenAI `finish_reason`.
    pub fn from_openai(reason: &str) -> Self {
        match reason {
            "stop" | "eos" => Self::Stop,
            "length" => Self::Length,
            "tool_calls" | "function_call" => Self::ToolCalls,
            "content_filter" => Self::ContentFilter,
            other => Self::Other(other.to_owned()),
        }
    }

    /// Maps an Anthropic `stop_reason`.
    pub fn from_anthropic(reason: &str) -> Self {
        match reason {
            "end_turn" | "stop_sequence" => Self::Stop,
            "max_tokens" | "model_context_window_exceeded" => Self::Length,
            "tool_use" => Self::ToolCalls,
            "refusal" => Self::ContentFilter,
            other => Self::Other(other.to_owned()),
        }
    }

    /// The OpenAI spelling, which is also what OpenClaw clients see (`stopReason: "stop"`).
    pub fn as_str(&self) -> &str {
        match self {
            Self::Stop => "stop",
            Self::Length => "length",
            Self::ToolCalls => "tool_calls",
            Self::ContentFilter => "content_filter",
            Self::Other(other) => other,
        }
    }
}

/// Token counts for one call.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Usage {
    /// Prompt tokens, cached ones included.
    pub input_tokens: u64,
    /// Generated tokens.
    pub output_tokens: u64,
    /// Of `input_tokens`, how many were read from the provider's prompt cache.
    pub cache_read_tokens: u64,
    /// Of `input_tokens`, how many were written to the provider's prompt cache (Anthropic).
    pub cache_write_tokens: u64,
}

/// One step of a streamed answer.
///
/// A successful stream is any number of text and tool-call events, at most one [`Usage`](Self::Usage),
/// then exactly one [`Finish`](Self::Finish), which is always last. A failed stream ends with one
/// `Err` instead. Tool calls are numbered `0, 1, …` in the order they start, whatever the provider
/// used internally; every started call gets a [`ToolCallEnd`](Self::ToolCallEnd) before `Finish`.
#[derive(Debug, Clone, PartialEq)]
pub enum StreamEvent {
    /// More answer text.
    TextDelta(String),
    /// The model started a tool call.
    ToolCallStart {
        /// The call's position in this answer.
        index: usize,
        /// The provider's call id.
        id: String,
        /// The tool's name.
        name: String,
    },
    /// More of a tool call's JSON arguments (concatenate the deltas).
    ToolCallArgsDelta {
        /// Which call.
        index: usize,
        /// The next piece of the arguments text.
        delta: String,
    },
    /// A tool call's arguments are complete.
    ToolCallEnd {
        /// Which call.
        index: usize,
    },
    /// Token counts, when the provider reports them.
    Usage(Usage),
    /// The answer is complete.
    Finish {
        /// Why the model stopped.
        stop_reason: StopReason,
    },
}
