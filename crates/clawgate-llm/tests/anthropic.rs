//! The Anthropic client against the testkit's fake Anthropic server, over real sockets.

mod common;

use std::time::{Duration, Instant};

use clawgate_llm::{
    ANTHROPIC_VERSION, Api, CancellationToken, ChatMessage, ChatRequest, LlmError, StopReason, StreamEvent,
    TimeoutPhase, Timeouts, ToolCall, ToolSpec, collect, stream_with_retry,
};
use clawgate_testkit::fake_anthropic::{FakeAnthropic, HELLO_PARTS, Script, Turn};
use common::{drain, fast_retry, provider, test_timeouts, text_of};
use futures_util::StreamExt;
use serde_json::json;

fn hello_request() -> ChatRequest {
    ChatRequest {
        system: Some("You are a personal assistant.".into()),
        ..ChatRequest::new("claude-fake", vec![ChatMessage::user("Say hello")])
    }
}

#[tokio::test]
async fn text_streams_with_key_version_and_system_prompt() -> anyhow::Result<()> {
    let fake = FakeAnthropic::start(Script::default().require_api_key("sk-ant-fake-0123")).await?;
    let provider = provider(Api::AnthropicMessages, &fake.base_url(), Some("sk-ant-fake-0123"), test_timeouts());

    let (events, error) = drain(provider.stream(hello_request(), CancellationToken::new())).await;

    assert!(error.is_none(), "{error:?}");
    assert_eq!(text_of(&events), HELLO_PARTS);
    assert_eq!(events.last(), Some(&StreamEvent::Finish { stop_reason: StopReason::Stop }));
    let sent = &fake.message_requests()[0];
    assert_eq!(sent.header("x-api-key"), Some("sk-ant-fake-0123"));
    assert_eq!(sent.header("anthropic-version"), Some(ANTHROPIC_VERSION));
    assert!(sent.header("authorization").is_none());
    assert_eq!(sent.body["system"], "You are a personal assistant.");
    assert_eq!(sent.body["stream"], true);
    assert_eq!(sent.body["max_tokens"], 4096, "Anthropic requires max_tokens; the fallback is sent");
    assert_eq!(sent.body["messages"], json!([{"role": "user", "content": [{"type": "text", "text": "Say hello"}]}]));
    Ok(())
}

#[tokio::test]
async fn tool_use_blocks_assemble_into_calls_with_text_and_usage() -> anyhow::Result<()> {
    let turn =
        Turn::tool_calls([("read", r#"{"path":"a.txt"}"#), ("ls", "")]).with_text(["Let me look."]).usage(900, 33);
    let fake = FakeAnthropic::start(Script::always(turn)).await?;
    let provider = provider(Api::AnthropicMessages, &fake.base_url(), None, test_timeouts());
    let request = ChatRequest {
        tools: vec![ToolSpec {
            name: "read".into(),
            description: "Read".into(),
            parameters: json!({"type": "object"}),
        }],
        ..hello_request()
    };

    let answer = collect(provider.stream(request, CancellationToken::new())).await?;

    assert_eq!(answer.text, "Let me look.");
    assert_eq!(answer.stop_reason, Some(StopReason::ToolCalls));
    assert_eq!(answer.tool_calls.len(), 2);
    assert_eq!(answer.tool_calls[0].name, "read");
    assert_eq!(answer.tool_calls[0].arguments_json()?, json!({"path": "a.txt"}));
    assert_eq!(answer.tool_calls[1].arguments_json()?, json!({}));
    let usage = answer.usage.expect("usage");
    assert_eq!((usage.input_tokens, usage.output_tokens), (900, 33));
    let sent = &fake.message_requests()[0];
    assert_eq!(
        sent.body["tools"][0],
        json!({"name": "read", "description": "Read", "input_schema": {"type": "object"}})
    );
    Ok(())
}

#[tokio::test]
async fn tool_results_go_back_as_tool_result_blocks() -> anyhow::Result<()> {
    let fake = FakeAnthropic::start(Script::default()).await?;
    let provider = provider(Api::AnthropicMessages, &fake.base_url(), None, test_timeouts());
    let call = ToolCall { id: "toolu_1".into(), name: "ls".into(), arguments: "{\"path\":\".\"}".into() };
    let request = ChatRequest::new(
        "claude-fake",
        vec![
            ChatMessage::user("What is here?"),
            ChatMessage::assistant_with_tools("", vec![call]),
            ChatMessage::tool_result("toolu_1", "a.txt"),
        ],
    );

    collect(provider.stream(request, CancellationToken::new())).await?;

    let messages = &fake.message_requests()[0].body["messages"];
    assert_eq!(
        messages[1],
        json!({"role": "assistant", "content": [{"type": "tool_use", "id": "toolu_1", "name": "ls", "input": {"path": "."}}]})
    );
    assert_eq!(
        messages[2],
        json!({"role": "user", "content": [{"type": "tool_result", "tool_use_id": "toolu_1", "content": "a.txt"}]})
    );
    Ok(())
}

#[tokio::test]
async fn overloaded_and_rate_limited_answers_are_retried() -> anyhow::Result<()> {
    let script = Script::new().turn(Turn::overloaded()).turn(Turn::rate_limited("1")).otherwise(Turn::hello());
    let fake = FakeAnthropic::start(script).await?;
    let provider = provider(Api::AnthropicMessages, &fake.base_url(), None, test_timeouts());

    let started = Instant::now();
    let answer = collect(stream_with_retry(provider, hello_request(), CancellationToken::new(), fast_retry())).await?;

    assert_eq!(answer.text, HELLO_PARTS.concat());
    assert_eq!(fake.message_requests().len(), 3);
    assert!(started.elapsed() >= Duration::from_millis(950), "retry-after honoured: {:?}", started.elapsed());
    Ok(())
}

#[tokio::test]
async fn error_event_mid_stream_is_reported_and_not_retried() -> anyhow::Result<()> {
    let script = Script::new()
        .turn(Turn::text(["Hel", "lo"]).error_after(4, "overloaded_error", "Overloaded"))
        .otherwise(Turn::hello());
    let fake = FakeAnthropic::start(script).await?;
    let provider = provider(Api::AnthropicMessages, &fake.base_url(), None, test_timeouts());

    let (events, error) =
        drain(stream_with_retry(provider, hello_request(), CancellationToken::new(), fast_retry())).await;

    assert_eq!(text_of(&events), ["Hel", "lo"]);
    assert!(matches!(error, Some(LlmError::Upstream { status: None, .. })), "{error:?}");
    // The stream has ended, and with it every retry it could have made.
    assert_eq!(fake.message_requests().len(), 1);
    Ok(())
}

#[tokio::test]
async fn prompt_too_long_is_a_context_overflow() -> anyhow::Result<()> {
    let fake = FakeAnthropic::start(Script::always(Turn::context_overflow())).await?;
    let provider = provider(Api::AnthropicMessages, &fake.base_url(), None, test_timeouts());

    let (_, error) = drain(stream_with_retry(provider, hello_request(), CancellationToken::new(), fast_retry())).await;

    assert!(matches!(error, Some(LlmError::ContextOverflow { .. })), "{error:?}");
    assert_eq!(fake.message_requests().len(), 1);
    Ok(())
}

#[tokio::test]
async fn wrong_key_is_an_auth_error() -> anyhow::Result<()> {
    let fake = FakeAnthropic::start(Script::default().require_api_key("sk-ant-right-key-42")).await?;
    let provider = provider(Api::AnthropicMessages, &fake.base_url(), Some("sk-ant-wrong-key-42"), test_timeouts());

    let (_, error) = drain(stream_with_retry(provider, hello_request(), CancellationToken::new(), fast_retry())).await;

    assert!(matches!(error, Some(LlmError::Auth { status: 401, .. })), "{error:?}");
    assert_eq!(fake.message_requests().len(), 1, "auth failures are not retried");
    Ok(())
}

#[tokio::test]
async fn silent_stream_ends_with_an_idle_timeout() -> anyhow::Result<()> {
    let fake = FakeAnthropic::start(Script::always(Turn::text(["a", "b"]).hang_after(4))).await?;
    let timeouts = Timeouts { idle: Duration::from_millis(300), ..test_timeouts() };
    let provider = provider(Api::AnthropicMessages, &fake.base_url(), None, timeouts);

    let (events, error) = drain(provider.stream(hello_request(), CancellationToken::new())).await;

    assert_eq!(text_of(&events), ["a", "b"]);
    assert!(matches!(error, Some(LlmError::Timeout { phase: TimeoutPhase::Idle, .. })), "{error:?}");
    Ok(())
}

#[tokio::test]
async fn cancellation_stops_the_request_promptly() -> anyhow::Result<()> {
    let fake = FakeAnthropic::start(Script::always(Turn::text(["first", "never"]).hang_after(3))).await?;
    let provider = provider(Api::AnthropicMessages, &fake.base_url(), None, test_timeouts());
    let cancel = CancellationToken::new();
    let mut stream = provider.stream(hello_request(), cancel.clone());

    assert_eq!(stream.next().await.transpose()?, Some(StreamEvent::TextDelta("first".into())));
    cancel.cancel();

    // The model hangs for ever after "first": ending at all proves the cancel stopped the
    // request (the bound only keeps a regression from hanging the suite).
    let next = tokio::time::timeout(Duration::from_secs(30), stream.next()).await;
    assert!(matches!(next, Ok(Some(Err(LlmError::Cancelled)))), "{next:?}");
    assert!(stream.next().await.is_none());
    drop(stream);
    fake.wait_for_aborted(1, Duration::from_secs(5)).await?;
    Ok(())
}

#[tokio::test]
async fn list_models_reads_the_servers_list() -> anyhow::Result<()> {
    let fake = FakeAnthropic::start(Script::default().models(["claude-a", "claude-b"])).await?;
    let provider = provider(Api::AnthropicMessages, &fake.base_url(), None, test_timeouts());

    let models = provider.list_models().await?;

    assert_eq!(models.iter().map(|m| m.id.as_str()).collect::<Vec<_>>(), ["claude-a", "claude-b"]);
    assert_eq!(models[0].display_name.as_deref(), Some("claude-a"));
    Ok(())
}

#[tokio::test]
async fn base_url_with_v1_suffix_is_accepted() -> anyhow::Result<()> {
    let fake = FakeAnthropic::start(Script::default()).await?;
    let provider = provider(Api::AnthropicMessages, &format!("{}/v1/", fake.base_url()), None, test_timeouts());

    collect(provider.stream(hello_request(), CancellationToken::new())).await?;

    assert_eq!(fake.requests()[0].path, "/v1/messages");
    Ok(())
}
