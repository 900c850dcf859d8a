//! API keys go to the provider and nowhere else: not into logs at any level, not into errors.
//!
//! These tests capture `tracing` output at TRACE level. They live in their own test binary, where
//! every test installs a capturing subscriber: `tracing` caches per-callsite interest globally, and
//! a parallel test with no subscriber could otherwise make a callsite look disabled.

mod common;

use clawgate_llm::{Api, CancellationToken, ChatMessage, ChatRequest, LlmError, collect, stream_with_retry};
use clawgate_testkit::{fake_anthropic, fake_openai};
use common::{capture_logs, drain, fast_retry, provider, test_timeouts};
use serde_json::json;

fn request(model: &str) -> ChatRequest {
    ChatRequest::new(model, vec![ChatMessage::user("Say hello")])
}

#[tokio::test]
async fn openai_key_is_sent_but_never_logged_or_shown() -> anyhow::Result<()> {
    const KEY: &str = "sk-test-do-not-log-0123456789";
    let (logs, _guard) = capture_logs();
    // A 500 then a good answer (the retry logs a warning), then a 401 whose message echoes the key.
    let script = fake_openai::Script::new()
        .turn(fake_openai::Turn::server_error())
        .turn(fake_openai::Turn::hello())
        .otherwise(fake_openai::Turn::status(
            401,
            json!({"error": {"message": format!("Incorrect API key provided: {KEY}"), "code": "invalid_api_key"}}),
        ));
    let fake = fake_openai::FakeOpenAi::start(script).await?;
    let provider = provider(Api::OpenAiCompletions, &fake.base_url(), Some(KEY), test_timeouts());

    collect(stream_with_retry(provider.clone(), request("fake-model"), CancellationToken::new(), fast_retry())).await?;
    let (_, error) = drain(provider.stream(request("fake-model"), CancellationToken::new())).await;

    assert_eq!(fake.chat_requests()[0].header("authorization"), Some(format!("Bearer {KEY}").as_str()));
    let error = error.expect("the third answer is a 401");
    assert!(matches!(error, LlmError::Auth { status: 401, .. }), "{error:?}");
    let logs = logs.contents();
    assert!(logs.contains("retrying"), "the capture works: {logs}");
    assert!(!logs.contains(KEY), "key leaked into logs: {logs}");
    assert!(!error.to_string().contains(KEY) && !format!("{error:?}").contains(KEY), "{error:?}");
    assert!(!format!("{provider:?}").contains(KEY));
    Ok(())
}

#[tokio::test]
async fn anthropic_key_is_sent_but_never_logged_or_shown() -> anyhow::Result<()> {
    const KEY: &str = "sk-ant-wrong-key-42";
    let (logs, _guard) = capture_logs();
    let script = fake_anthropic::Script::default().require_api_key("sk-ant-right-key-42");
    let fake = fake_anthropic::FakeAnthropic::start(script).await?;
    let provider = provider(Api::AnthropicMessages, &fake.base_url(), Some(KEY), test_timeouts());

    let (_, error) = drain(provider.stream(request("claude-fake"), CancellationToken::new())).await;

    assert_eq!(fake.message_requests()[0].header("x-api-key"), Some(KEY));
    let error = error.expect("wrong key");
    assert!(matches!(error, LlmError::Auth { status: 401, .. }), "{error:?}");
    let logs = logs.contents();
    assert!(logs.contains("model stream failed"), "the capture works: {logs}");
    assert!(!logs.contains(KEY), "key leaked into logs: {logs}");
    assert!(!format!("{error:?}").contains(KEY));
    Ok(())
}
