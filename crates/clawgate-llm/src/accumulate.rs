//! Folding a stream of events into the complete answer.

use std::collections::BTreeMap;

use futures_util::StreamExt;

use crate::error::LlmError;
use crate::provider::EventStream;
use crate::types::{ChatMessage, StopReason, StreamEvent, ToolCall, Usage};

/// The complete answer of one call.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct ChatResponse {
    /// All text deltas, concatenated.
    pub text: String,
    /// Every tool call, in the order the model started them.
    pub tool_calls: Vec<ToolCall>,
    /// Token counts, if the provider reported them.
    pub usage: Option<Usage>,
    /// Why the model stopped; `None` only if the stream was cut before `Finish`.
    pub stop_reason: Option<StopReason>,
}

impl ChatResponse {
    /// The answer as an assistant message, ready to append to the conversation.
    pub fn to_message(&self) -> ChatMessage {
        ChatMessage::assistant_with_tools(self.text.clone(), self.tool_calls.clone())
    }
}

/// Folds [`StreamEvent`]s into a [`ChatResponse`] while the caller forwards them elsewhere (say, as
/// live deltas to chat clients). Tool-call argument fragments are joined per call index.
#[derive(Debug, Default)]
pub struct StreamAccumulator {
    text: String,
    calls: BTreeMap<usize, ToolCall>,
    usage: Option<Usage>,
    stop_reason: Option<StopReason>,
}

impl StreamAccumulator {
    /// An empty accumulator.
    pub fn new() -> Self {
        Self::default()
    }

    /// Folds one event.
    pub fn push(&mut self, event: &StreamEvent) {
        match event {
            StreamEvent::TextDelta(delta) => self.text.push_str(delta),
            StreamEvent::ToolCallStart { index, id, name } => {
                let call = self.calls.entry(*index).or_insert_with(|| ToolCall {
                    id: String::new(),
                    name: String::new(),
                    arguments: String::new(),
                });
                call.id.clone_from(id);
                call.name.clone_from(name);
            }
            StreamEvent::ToolCallArgsDelta { index, delta } => {
                // Providers never send arguments before the start, but if one did, keep them.
                self.calls
                    .entry(*index)
                    .or_insert_with(|| ToolCall { id: String::new(), name: String::new(), arguments: String::new() })
                    .arguments
                    .push_str(delta);
            }
            StreamEvent::ToolCallEnd { .. } => {}
            StreamEvent::Usage(usage) => self.usage = Some(*usage),
            StreamEvent::Finish { stop_reason } => self.stop_reason = Some(stop_reason.clone()),
        }
    }

    /// The text so far.
    pub fn text(&self) -> &str {
        &self.text
    }

    /// Whether `Finish` has been seen.
    pub fn is_finished(&self) -> bool {
        self.stop_reason.is_some()
    }

    /// The answer so far (complete once `Finish` was pushed).
    pub fn finish(self) -> ChatResponse {
        ChatResponse {
            text: self.text,
            tool_calls: self.calls.into_values().collect(),
            usage: self.usage,
            stop_reason: self.stop_reason,
        }
    }
}

/// Drives a stream to its end and returns the whole answer, or the error that ended it.
pub async fn collect(mut stream: EventStream) -> Result<ChatResponse, LlmError> {
    let mut acc = StreamAccumulator::new();
    while let Some(event) = stream.next().await {
        acc.push(&event?);
    }
    Ok(acc.finish())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn interleaved_tool_call_fragments_assemble_per_index() {
        let events = [
            StreamEvent::TextDelta("Let me ".into()),
            StreamEvent::TextDelta("check.".into()),
            StreamEvent::ToolCallStart { index: 0, id: "call_a".into(), name: "read".into() },
            StreamEvent::ToolCallStart { index: 1, id: "call_b".into(), name: "ls".into() },
            StreamEvent::ToolCallArgsDelta { index: 0, delta: "{\"path\":".into() },
            StreamEvent::ToolCallArgsDelta { index: 1, delta: "{}".into() },
            StreamEvent::ToolCallArgsDelta { index: 0, delta: "\"a.txt\"}".into() },
            StreamEvent::ToolCallEnd { index: 0 },
            StreamEvent::ToolCallEnd { index: 1 },
            StreamEvent::Usage(Usage { input_tokens: 10, output_tokens: 5, ..Usage::default() }),
            StreamEvent::Finish { stop_reason: StopReason::ToolCalls },
        ];
        let mut acc = StreamAccumulator::new();
        for event in &events {
            acc.push(event);
        }
        assert!(acc.is_finished());
        let response = acc.finish();
        assert_eq!(response.text, "Let me check.");
        assert_eq!(response.tool_calls.len(), 2);
        assert_eq!(response.tool_calls[0].name, "read");
        assert_eq!(response.tool_calls[0].arguments_json().expect("valid"), serde_json::json!({"path": "a.txt"}));
        assert_eq!(response.tool_calls[1].id, "call_b");
        assert_eq!(response.usage.map(|u| u.output_tokens), Some(5));
        assert_eq!(response.stop_reason, Some(StopReason::ToolCalls));
        match response.to_message() {
            ChatMessage::Assistant { content, tool_calls } => {
                assert_eq!(content, "Let me check.");
                assert_eq!(tool_calls.len(), 2);
            }
            other => panic!("unexpected {other:?}"),
        }
    }

    #[test]
    fn empty_arguments_read_as_empty_object() {
        let call = ToolCall { id: "c".into(), name: "n".into(), arguments: String::new() };
        assert_eq!(call.arguments_json().expect("valid"), serde_json::json!({}));
    }
}
