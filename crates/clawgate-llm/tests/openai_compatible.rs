//! The OpenAI-compatible client against the testkit's fake OpenAI server, over real sockets.

mod common;

use std::time::{Duration, Instant};

use clawgate_llm::{
    Api, CancellationToken, ChatMessage, ChatRequest, LlmError, ProviderRegistry, RetryPolicy, StopReason,
    StreamAccumulator, StreamEvent, TimeoutPhase, Timeouts, ToolCall, ToolSpec, Usage, collect, stream_with_retry,
};
use clawgate_testkit::fake_openai::{FakeOpenAi, HELLO_PARTS, Script, Turn};
use common::{drain, fast_retry, provider, test_timeouts, text_of};
use futures_util::StreamExt;
use serde_json::json;

fn hello_request() -> ChatRequest {
    ChatRequest {
        system: Some("You are a personal assistant running inside clawgate.".into()),
        ..ChatRequest::new("fake-model", vec![ChatMessage::user("Say hello")])
    }
}

#[tokio::test]
async fn text_streams_in_order_with_usage_and_stop() -> anyhow::Result<()> {
    let fake = FakeOpenAi::start(Script::default()).await?;
    let provider = provider(Api::OpenAiCompletions, &fake.base_url(), Some("fake-key"), test_timeouts());

    let (events, error) = drain(provider.stream(hello_request(), CancellationToken::new())).await;

    assert!(error.is_none(), "{error:?}");
    assert_eq!(text_of(&events), HELLO_PARTS);
    let tail = &events[events.len() - 2..];
    assert!(matches!(tail[0], StreamEvent::Usage(Usage { input_tokens: 42, output_tokens: 6, .. })), "{tail:?}");
    assert_eq!(tail[1], StreamEvent::Finish { stop_reason: StopReason::Stop });

    // What went over the wire matches what the real gateway sent (openclaw-live.md §5).
    let requests = fake.chat_requests();
    assert_eq!(requests.len(), 1);
    let sent = &requests[0];
    assert_eq!(sent.method, "POST");
    assert_eq!(sent.header("authorization"), Some("Bearer fake-key"));
    assert_eq!(sent.header("content-type"), Some("application/json"));
    assert_eq!(sent.body["model"], "fake-model");
    assert_eq!(sent.body["stream"], true);
    assert_eq!(sent.body["stream_options"], json!({"include_usage": true}));
    assert_eq!(sent.body["messages"][0], json!({"role": "system", "content": hello_request().system}));
    assert_eq!(sent.body["messages"][1], json!({"role": "user", "content": "Say hello"}));
    assert!(sent.body.get("tools").is_none());
    Ok(())
}

#[tokio::test]
async fn tool_call_deltas_assemble_into_complete_calls() -> anyhow::Result<()> {
    let turn = Turn::tool_calls([("read", r#"{"path":"notes/todo.md"}"#), ("ls", "{}")]);
    let fake = FakeOpenAi::start(Script::always(turn)).await?;
    let provider = provider(Api::OpenAiCompletions, &fake.base_url(), None, test_timeouts());
    let request = ChatRequest {
        tools: vec![ToolSpec {
            name: "read".into(),
            description: "Read files".into(),
            parameters: json!({"type": "object", "required": ["path"], "properties": {"path": {"type": "string"}}}),
        }],
        ..hello_request()
    };

    let answer = collect(provider.stream(request, CancellationToken::new())).await?;

    assert_eq!(answer.stop_reason, Some(StopReason::ToolCalls));
    assert_eq!(answer.tool_calls.len(), 2);
    assert_eq!(answer.tool_calls[0].name, "read");
    assert_eq!(answer.tool_calls[0].arguments_json()?, json!({"path": "notes/todo.md"}));
    assert!(answer.tool_calls[0].id.starts_with("call_fake_0"));
    assert_eq!(answer.tool_calls[1].name, "ls");
    assert_eq!(answer.tool_calls[1].arguments_json()?, json!({}));

    let sent = &fake.chat_requests()[0];
    assert_eq!(sent.body["tool_choice"], "auto");
    assert_eq!(sent.body["tools"][0]["type"], "function");
    assert_eq!(sent.body["tools"][0]["function"]["name"], "read");
    assert_eq!(sent.body["tools"][0]["function"]["parameters"]["required"], json!(["path"]));
    assert!(sent.header("authorization").is_none(), "no key configured, no Authorization header");
    Ok(())
}

#[tokio::test]
async fn tool_results_go_back_as_tool_messages() -> anyhow::Result<()> {
    let fake = FakeOpenAi::start(Script::default()).await?;
    let provider = provider(Api::OpenAiCompletions, &fake.base_url(), None, test_timeouts());
    let call = ToolCall { id: "call_1".into(), name: "ls".into(), arguments: "{}".into() };
    let request = ChatRequest::new(
        "fake-model",
        vec![
            ChatMessage::user("What is here?"),
            ChatMessage::assistant_with_tools("", vec![call]),
            ChatMessage::tool_result("call_1", "a.txt\nb.txt"),
        ],
    );

    collect(provider.stream(request, CancellationToken::new())).await?;

    let messages = &fake.chat_requests()[0].body["messages"];
    assert_eq!(messages[1]["tool_calls"][0]["id"], "call_1");
    assert_eq!(messages[1]["tool_calls"][0]["function"]["arguments"], "{}");
    assert_eq!(messages[2], json!({"role": "tool", "tool_call_id": "call_1", "content": "a.txt\nb.txt"}));
    Ok(())
}

#[tokio::test]
async fn usage_reports_the_servers_token_counts() -> anyhow::Result<()> {
    let fake = FakeOpenAi::start(Script::always(Turn::text(["ok"]).usage(1234, 56))).await?;
    let provider = provider(Api::OpenAiCompletions, &fake.base_url(), None, test_timeouts());

    let answer = collect(provider.stream(hello_request(), CancellationToken::new())).await?;

    let usage = answer.usage.expect("usage chunk was requested and sent");
    assert_eq!((usage.input_tokens, usage.output_tokens), (1234, 56));
    Ok(())
}

#[tokio::test]
async fn stream_without_done_marker_still_finishes() -> anyhow::Result<()> {
    let fake = FakeOpenAi::start(Script::always(Turn::text(["a", "b"]).without_done())).await?;
    let provider = provider(Api::OpenAiCompletions, &fake.base_url(), None, test_timeouts());

    let answer = collect(provider.stream(hello_request(), CancellationToken::new())).await?;

    assert_eq!((answer.text.as_str(), answer.stop_reason), ("ab", Some(StopReason::Stop)));
    Ok(())
}

#[tokio::test]
async fn rate_limit_waits_for_retry_after_then_retries() -> anyhow::Result<()> {
    let script = Script::new().turn(Turn::rate_limited("1")).otherwise(Turn::hello());
    let fake = FakeOpenAi::start(script).await?;
    let provider = provider(Api::OpenAiCompletions, &fake.base_url(), None, test_timeouts());

    let started = Instant::now();
    let answer = collect(stream_with_retry(provider, hello_request(), CancellationToken::new(), fast_retry())).await?;

    assert_eq!(answer.text, HELLO_PARTS.concat());
    assert_eq!(fake.chat_requests().len(), 2);
    // The policy's own backoff is 10 ms: waiting a second means Retry-After was honoured.
    assert!(started.elapsed() >= Duration::from_millis(950), "{:?}", started.elapsed());
    Ok(())
}

#[tokio::test]
async fn retry_after_ms_is_preferred_for_short_waits() -> anyhow::Result<()> {
    let script = Script::new().turn(Turn::rate_limited_ms(300)).otherwise(Turn::hello());
    let fake = FakeOpenAi::start(script).await?;
    let provider = provider(Api::OpenAiCompletions, &fake.base_url(), None, test_timeouts());

    let started = Instant::now();
    collect(stream_with_retry(provider, hello_request(), CancellationToken::new(), fast_retry())).await?;

    assert!(started.elapsed() >= Duration::from_millis(290), "{:?}", started.elapsed());
    assert_eq!(fake.chat_requests().len(), 2);
    Ok(())
}

#[tokio::test]
async fn rate_limit_without_retry_yields_the_wait_to_the_caller() -> anyhow::Result<()> {
    let fake = FakeOpenAi::start(Script::always(Turn::rate_limited("7"))).await?;
    let provider = provider(Api::OpenAiCompletions, &fake.base_url(), None, test_timeouts());

    let (_, error) = drain(provider.stream(hello_request(), CancellationToken::new())).await;

    match error {
        Some(LlmError::RateLimited { retry_after, .. }) => assert_eq!(retry_after, Some(Duration::from_secs(7))),
        other => panic!("expected RateLimited, got {other:?}"),
    }
    Ok(())
}

#[tokio::test]
async fn server_error_before_the_answer_is_retried() -> anyhow::Result<()> {
    let script = Script::new().turn(Turn::server_error()).turn(Turn::server_error()).otherwise(Turn::hello());
    let fake = FakeOpenAi::start(script).await?;
    let provider = provider(Api::OpenAiCompletions, &fake.base_url(), None, test_timeouts());

    let answer = collect(stream_with_retry(provider, hello_request(), CancellationToken::new(), fast_retry())).await?;

    assert_eq!(answer.text, HELLO_PARTS.concat());
    assert_eq!(fake.chat_requests().len(), 3);
    Ok(())
}

#[tokio::test]
async fn retries_stop_after_max_attempts() -> anyhow::Result<()> {
    let fake = FakeOpenAi::start(Script::always(Turn::server_error())).await?;
    let provider = provider(Api::OpenAiCompletions, &fake.base_url(), None, test_timeouts());

    let (_, error) = drain(stream_with_retry(provider, hello_request(), CancellationToken::new(), fast_retry())).await;

    assert!(matches!(error, Some(LlmError::Upstream { status: Some(500), .. })), "{error:?}");
    assert_eq!(fake.chat_requests().len(), 3);
    Ok(())
}

#[tokio::test]
async fn mid_stream_error_is_reported_and_not_retried() -> anyhow::Result<()> {
    let script = Script::new()
        .turn(Turn::text(["Hel", "lo", " there"]).error_after(2, "The model crashed"))
        .otherwise(Turn::hello());
    let fake = FakeOpenAi::start(script).await?;
    let provider = provider(Api::OpenAiCompletions, &fake.base_url(), None, test_timeouts());

    let (events, error) =
        drain(stream_with_retry(provider, hello_request(), CancellationToken::new(), fast_retry())).await;

    assert_eq!(text_of(&events), ["Hel", "lo"]);
    match error {
        Some(LlmError::Upstream { status: None, message }) => assert!(message.contains("The model crashed")),
        other => panic!("expected a mid-stream Upstream error, got {other:?}"),
    }
    // The stream has ended, and with it every retry it could have made.
    assert_eq!(fake.chat_requests().len(), 1, "half an answer must not be replayed");
    Ok(())
}

#[tokio::test]
async fn context_overflow_is_classified_and_not_retried() -> anyhow::Result<()> {
    let fake = FakeOpenAi::start(Script::always(Turn::context_overflow())).await?;
    let provider = provider(Api::OpenAiCompletions, &fake.base_url(), None, test_timeouts());

    let (_, error) = drain(stream_with_retry(provider, hello_request(), CancellationToken::new(), fast_retry())).await;

    assert!(matches!(error, Some(LlmError::ContextOverflow { .. })), "{error:?}");
    assert_eq!(fake.chat_requests().len(), 1);
    Ok(())
}

#[tokio::test]
async fn wrong_api_key_is_an_auth_error() -> anyhow::Result<()> {
    let fake = FakeOpenAi::start(Script::default().require_api_key("right-key-0123")).await?;
    let provider = provider(Api::OpenAiCompletions, &fake.base_url(), Some("wrong-key-0123"), test_timeouts());

    let (_, error) = drain(stream_with_retry(provider, hello_request(), CancellationToken::new(), fast_retry())).await;

    assert!(matches!(error, Some(LlmError::Auth { status: 401, .. })), "{error:?}");
    assert_eq!(fake.chat_requests().len(), 1, "auth failures are not retried");
    Ok(())
}

#[tokio::test]
async fn silent_stream_ends_with_an_idle_timeout() -> anyhow::Result<()> {
    let fake = FakeOpenAi::start(Script::always(Turn::text(["a", "b", "c"]).hang_after(2))).await?;
    let timeouts = Timeouts { idle: Duration::from_millis(300), ..test_timeouts() };
    let provider = provider(Api::OpenAiCompletions, &fake.base_url(), None, timeouts);

    // The model hangs for ever after "b": an idle-timeout error at all proves the timer fired.
    let (events, error) = drain(provider.stream(hello_request(), CancellationToken::new())).await;

    assert_eq!(text_of(&events), ["a", "b"]);
    assert!(matches!(error, Some(LlmError::Timeout { phase: TimeoutPhase::Idle, .. })), "{error:?}");
    Ok(())
}

#[tokio::test]
async fn hang_before_the_first_byte_ends_with_a_first_byte_timeout() -> anyhow::Result<()> {
    let fake = FakeOpenAi::start(Script::always(Turn::hang())).await?;
    let timeouts = Timeouts { first_byte: Duration::from_millis(300), ..test_timeouts() };
    let provider = provider(Api::OpenAiCompletions, &fake.base_url(), None, timeouts);

    let (events, error) = drain(provider.stream(hello_request(), CancellationToken::new())).await;

    assert!(events.is_empty());
    assert!(matches!(error, Some(LlmError::Timeout { phase: TimeoutPhase::FirstByte, .. })), "{error:?}");
    Ok(())
}

#[tokio::test]
async fn slow_trickle_within_the_idle_limit_completes() -> anyhow::Result<()> {
    let turn = Turn::text(["s", "l", "o", "w"]).chunk_delay(Duration::from_millis(60));
    let fake = FakeOpenAi::start(Script::always(turn)).await?;
    let timeouts = Timeouts { idle: Duration::from_secs(2), ..test_timeouts() };
    let provider = provider(Api::OpenAiCompletions, &fake.base_url(), None, timeouts);

    let answer = collect(provider.stream(hello_request(), CancellationToken::new())).await?;

    assert_eq!(answer.text, "slow");
    Ok(())
}

#[tokio::test]
async fn cancellation_stops_the_request_promptly() -> anyhow::Result<()> {
    let fake = FakeOpenAi::start(Script::always(Turn::text(["first", "never"]).hang_after(1))).await?;
    let provider = provider(Api::OpenAiCompletions, &fake.base_url(), None, test_timeouts());
    let cancel = CancellationToken::new();
    let mut stream = provider.stream(hello_request(), cancel.clone());

    assert_eq!(stream.next().await.transpose()?, Some(StreamEvent::TextDelta("first".into())));
    // The answer hangs after "first": without the cancel nothing more would ever come. The
    // spawned task runs once this (single-threaded) test is parked in `next()`.
    let canceller = cancel.clone();
    tokio::spawn(async move { canceller.cancel() });
    let next = tokio::time::timeout(Duration::from_secs(30), stream.next()).await.expect("the cancel ends the wait");

    assert!(matches!(next, Some(Err(LlmError::Cancelled))), "{next:?}");
    assert!(stream.next().await.is_none());
    drop(stream);
    // The connection is really closed: the fake sees its answer cut off.
    fake.wait_for_aborted(1, Duration::from_secs(5)).await?;
    Ok(())
}

#[tokio::test]
async fn cancellation_during_retry_backoff_returns_at_once() -> anyhow::Result<()> {
    // The provider asks for a 300 s pause, which the policy accepts: only the cancel can end it
    // within the test's bounded wait.
    let fake = FakeOpenAi::start(Script::always(Turn::rate_limited("300"))).await?;
    let provider = provider(Api::OpenAiCompletions, &fake.base_url(), None, test_timeouts());
    let patient = RetryPolicy { cap: Duration::from_secs(600), ..fast_retry() };
    let cancel = CancellationToken::new();
    let canceller = cancel.clone();
    let run = drain(stream_with_retry(provider, hello_request(), cancel, patient));
    let cancel_once_asked = async {
        fake.wait_for_requests(1, Duration::from_secs(10)).await.expect("the first attempt");
        canceller.cancel();
    };
    let ((_, error), ()) =
        tokio::time::timeout(Duration::from_secs(30), async { tokio::join!(run, cancel_once_asked) })
            .await
            .expect("the cancel cuts the 300 s backoff short");

    assert!(matches!(error, Some(LlmError::Cancelled)), "{error:?}");
    assert_eq!(fake.chat_requests().len(), 1, "no attempt after the cancel");
    Ok(())
}

#[tokio::test]
async fn garbage_in_the_stream_is_a_protocol_error() -> anyhow::Result<()> {
    let fake = FakeOpenAi::start(Script::always(Turn::raw([
        "data: {\"choices\":[{\"delta\":{\"content\":\"ok\"}}]}\n\n",
        "data: <html>oops\n\n",
    ])))
    .await?;
    let provider = provider(Api::OpenAiCompletions, &fake.base_url(), None, test_timeouts());

    let (events, error) = drain(provider.stream(hello_request(), CancellationToken::new())).await;

    assert_eq!(text_of(&events), ["ok"]);
    assert!(matches!(error, Some(LlmError::Protocol { .. })), "{error:?}");
    Ok(())
}

#[tokio::test]
async fn refused_connection_tells_the_user_to_check_the_base_url() -> anyhow::Result<()> {
    // A port that was just free: nothing listens there.
    let port = std::net::TcpListener::bind("127.0.0.1:0")?.local_addr()?.port();
    let provider = provider(Api::OpenAiCompletions, &format!("http://127.0.0.1:{port}/v1"), None, test_timeouts());
    let policy = RetryPolicy { max_attempts: 2, ..fast_retry() };

    let (_, error) = drain(stream_with_retry(provider, hello_request(), CancellationToken::new(), policy)).await;

    let error = error.expect("nothing listens");
    assert!(matches!(error, LlmError::Connect { .. }), "{error:?}");
    let message = error.to_string();
    assert!(message.contains(&format!("http://127.0.0.1:{port}/v1")), "{message}");
    assert!(message.contains("baseUrl") && message.contains("ollama serve"), "{message}");
    Ok(())
}

#[tokio::test]
async fn list_models_reads_the_servers_list() -> anyhow::Result<()> {
    let fake = FakeOpenAi::start(Script::default().models(["llama3.2:latest", "qwen3:8b"])).await?;
    let provider = provider(Api::OpenAiCompletions, &fake.base_url(), Some("k"), test_timeouts());

    let models = provider.list_models().await?;

    let ids: Vec<&str> = models.iter().map(|m| m.id.as_str()).collect();
    assert_eq!(ids, ["llama3.2:latest", "qwen3:8b"]);
    assert_eq!(fake.requests()[0].path, "/v1/models");
    Ok(())
}

#[tokio::test]
async fn registry_from_openclaw_config_reaches_the_provider() -> anyhow::Result<()> {
    let fake = FakeOpenAi::start(Script::default()).await?;
    let config = json!({"models": {"providers": {"fake": {
        "baseUrl": fake.base_url(), "apiKey": "fake-key", "api": "openai-completions",
        "headers": {"X-Clawgate-Test": "yes"},
        "models": [{"id": "fake-model", "name": "Fake Model", "reasoning": false, "input": ["text"],
                    "contextWindow": 128000, "maxTokens": 4096}]
    }}}});
    let registry = ProviderRegistry::from_config(&config).map_err(anyhow::Error::msg)?;
    assert!(registry.get("ollama").is_some(), "the built-in Ollama is always there");
    let provider = registry.get("fake").expect("configured");

    let mut acc = StreamAccumulator::new();
    let mut stream = provider.stream(hello_request(), CancellationToken::new());
    while let Some(event) = stream.next().await {
        acc.push(&event?);
    }

    assert_eq!(acc.finish().text, HELLO_PARTS.concat());
    let sent = &fake.chat_requests()[0];
    assert_eq!(sent.header("authorization"), Some("Bearer fake-key"));
    assert_eq!(sent.header("x-clawgate-test"), Some("yes"));
    // The declared maxTokens is sent when the request sets none (local server: `max_tokens`).
    assert_eq!(sent.body["max_tokens"], 4096);
    Ok(())
}
