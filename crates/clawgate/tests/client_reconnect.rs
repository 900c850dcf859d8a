//! The SDK under a gateway restart (issue 15, "SDK" test): the real binary, a fake model and one
//! `clawgate-client` connection carrying 20 sessions.
//!
//! Twenty `agent` turns stream their first words and then the fake model holds them; the gateway
//! is stopped (SIGTERM: `shutdown` event, close 1012) and started again on the same port and
//! state dir. Every in-flight turn must resolve — a result or a typed error, never a hang (each
//! wait is bounded and a hang fails the test) — the client must reconnect by itself, and new
//! turns on all twenty sessions must stream to the right session's event stream.

use std::time::Duration;

use clawgate_client::{
    AgentRequest, AgentResult, AgentRun, ChatState, Client, ClientError, ClientOptions, ConnectionState,
    ReconnectPolicy, SessionEvent, SessionEvents, SessionHandle,
};
use clawgate_testkit::TestGateway;
use clawgate_testkit::fake_openai::{FakeOpenAi, Script, Turn};
use futures_util::StreamExt;
use futures_util::future::join_all;
use serde_json::json;
use tokio::time::timeout;

const BIN: &str = env!("CARGO_BIN_EXE_clawgate");

/// Sessions streaming at once.
const SESSIONS: usize = 20;

/// Generous bound on every wait: a hang fails the test instead of stalling it.
const WAIT: Duration = Duration::from_secs(60);

/// The text every first turn streams before the fake model holds it.
const FIRST_WORDS: &str = "Working on it ";

fn provider_config(base_url: &str) -> String {
    json!({
        "models": {"providers": {"fake": {
            "baseUrl": base_url, "apiKey": "fake-key", "api": "openai-completions",
            "models": [{"id": "fake-model", "name": "Fake Model"}],
        }}},
        "agents": {"defaults": {"model": {"primary": "fake/fake-model"}}},
    })
    .to_string()
}

fn key(i: usize) -> String {
    format!("compose:doc:d{i}:user{i}")
}

/// The next event of a session stream, bounded.
async fn next_event(events: &mut SessionEvents) -> SessionEvent {
    timeout(WAIT, events.recv())
        .await
        .unwrap_or_else(|_| panic!("no event on {} within {WAIT:?}", events.key()))
        .unwrap_or_else(|| panic!("event stream of {} ended", events.key()))
}

/// Every `chat`/`agent` event routed to a session carries that session's key.
fn assert_own_event(events: &SessionEvents, event: &SessionEvent) {
    let payload = match event {
        SessionEvent::Chat(c) => &c.payload,
        SessionEvent::Other(frame) => frame.payload.as_ref().unwrap_or(&serde_json::Value::Null),
        // Typed agent events keep only `data`; markers have no key.
        _ => return,
    };
    assert_eq!(payload["sessionKey"], events.key(), "event routed to the wrong session: {event:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn gateway_restart_under_twenty_streaming_sessions_resolves_every_turn_and_events_resume() {
    // The first 20 model calls stream a few words and hang; every later one echoes its prompt.
    let mut script = Script::new();
    for _ in 0..SESSIONS {
        script = script.turn(Turn::text([FIRST_WORDS, "but never finishing"]).hang_after(1));
    }
    let fake = FakeOpenAi::start(script.otherwise(Turn::echo("echo: "))).await.expect("starting the fake model");
    let mut gw = TestGateway::builder(BIN)
        .config(provider_config(&fake.base_url()))
        .start()
        .await
        .unwrap_or_else(|e| panic!("starting clawgate: {e:#}"));

    let options =
        ClientOptions::new(gw.ws_url()).token(gw.expect_token()).scopes(["operator.read", "operator.write"]).reconnect(
            ReconnectPolicy::default().backoff(Duration::from_millis(50), Duration::from_secs(1)).request_wait(WAIT),
        );
    let client = Client::connect(options).await.expect("connecting the backend client");
    let mut state = client.state();
    let states = tokio::spawn(async move {
        let mut seen = vec![*state.borrow_and_update()];
        while state.changed().await.is_ok() {
            let now = *state.borrow_and_update();
            seen.push(now);
            if now == ConnectionState::Closed {
                break;
            }
        }
        seen
    });

    let sessions: Vec<SessionHandle> = (0..SESSIONS).map(|i| client.session(key(i))).collect();
    let mut streams: Vec<SessionEvents> = sessions.iter().map(SessionHandle::events).collect();

    // ---- twenty turns streaming at once ----
    let started =
        join_all(sessions.iter().enumerate().map(|(i, s)| s.agent(AgentRequest::new(format!("first question {i}")))))
            .await;
    let mut runs: Vec<AgentRun> = started
        .into_iter()
        .enumerate()
        .map(|(i, r)| r.unwrap_or_else(|e| panic!("agent on {}: {e}", key(i))))
        .collect();
    for (i, run) in runs.iter_mut().enumerate() {
        assert_eq!(run.accepted().session_key, streams[i].key(), "the gateway files the session under its full key");
        let first = timeout(WAIT, run.deltas().next()).await.unwrap_or_else(|_| panic!("no delta on {}", key(i)));
        assert_eq!(first.expect("a delta").expect("delta ok"), FIRST_WORDS);
    }
    // Each session's own stream saw its run's text, and nothing of another session.
    for (i, events) in streams.iter_mut().enumerate() {
        loop {
            let event = next_event(events).await;
            assert_own_event(events, &event);
            if let SessionEvent::Chat(c) = &event
                && c.state == ChatState::Delta
            {
                assert_eq!(c.run_id, runs[i].run_id());
                assert_eq!(c.delta_text(), Some(FIRST_WORDS));
                break;
            }
        }
    }
    let waits: Vec<_> = runs.into_iter().map(|run| tokio::spawn(timeout(WAIT, run.wait()))).collect();

    // ---- restart the gateway under them ----
    gw.restart().await.unwrap_or_else(|e| panic!("restarting clawgate: {e:#}"));

    // Every in-flight turn resolved: a typed outcome, never a hang.
    for (i, waited) in join_all(waits).await.into_iter().enumerate() {
        let outcome =
            waited.expect("wait task").unwrap_or_else(|_| panic!("turn on {} still hangs after {WAIT:?}", key(i)));
        match outcome {
            Ok(AgentResult::Timeout { .. }) | Ok(AgentResult::Ok { .. }) => {}
            Err(ClientError::ConnectionLost { method, .. }) => assert_eq!(method, "agent"),
            Err(e @ ClientError::Rpc(_)) => assert!(e.is_transient(), "{}: {e}", key(i)),
            Err(other) => panic!("{}: unexpected outcome {other:?}", key(i)),
        }
    }

    // The client reconnected by itself, and every session stream was told so, in order.
    assert!(client.wait_connected(WAIT).await, "client did not reconnect: {:?}", client.current_state());
    for events in &mut streams {
        let mut disconnected = false;
        loop {
            match next_event(events).await {
                SessionEvent::Disconnected => disconnected = true,
                SessionEvent::Reconnected => break,
                SessionEvent::Lagged(n) => panic!("{} lagged by {n}", events.key()),
                other => assert_own_event(events, &other),
            }
        }
        assert!(disconnected, "{}: Reconnected without Disconnected first", events.key());
    }

    // ---- new turns on all twenty sessions stream to the right streams ----
    let started =
        join_all(sessions.iter().enumerate().map(|(i, s)| s.agent(AgentRequest::new(format!("second question {i}")))))
            .await;
    let mut runs: Vec<AgentRun> = started
        .into_iter()
        .enumerate()
        .map(|(i, r)| r.unwrap_or_else(|e| panic!("agent on {} after the restart: {e}", key(i))))
        .collect();
    for (i, run) in runs.iter_mut().enumerate() {
        let text: String = timeout(WAIT, run.deltas().map(|d| d.expect("delta")).collect::<Vec<_>>())
            .await
            .unwrap_or_else(|_| panic!("deltas of {} did not end", key(i)))
            .concat();
        assert_eq!(text, format!("echo: second question {i}"));
    }
    for (i, run) in runs.into_iter().enumerate() {
        let result = timeout(WAIT, run.wait()).await.expect("final answer in time").expect("turn succeeds");
        let AgentResult::Ok { result, .. } = result else { panic!("{}: {result:?}", key(i)) };
        assert_eq!(result.payloads[0].text, format!("echo: second question {i}"));
    }
    for (i, events) in streams.iter_mut().enumerate() {
        loop {
            let event = next_event(events).await;
            assert_own_event(events, &event);
            if let SessionEvent::Chat(c) = &event
                && c.state == ChatState::Final
                && c.payload.to_string().contains("second question")
            {
                assert!(c.payload.to_string().contains(&format!("echo: second question {i}")), "{event:?}");
                break;
            }
        }
    }

    // What the model saw: 20 first turns, and each second turn once (nothing replayed twice).
    let prompts: Vec<String> = fake.chat_requests().iter().map(|r| r.body.to_string()).collect();
    for i in 0..SESSIONS {
        let asked = prompts.iter().filter(|p| p.contains(&format!("second question {i}\""))).count();
        assert_eq!(asked, 1, "second turn of {} reached the model {asked} times", key(i));
    }

    client.close().await;
    let seen = timeout(WAIT, states).await.expect("state watcher ends").expect("state task");
    assert!(seen.iter().any(|s| matches!(s, ConnectionState::Reconnecting { .. })), "{seen:?}");
    assert_eq!(seen.last(), Some(&ConnectionState::Closed), "{seen:?}");
}

/// The typed `chat.*` helpers decode what the real gateway answers (the derives on
/// `clawgate-protocol`'s result types are what a client relies on).
#[tokio::test]
async fn typed_chat_calls_round_trip_against_the_real_gateway() {
    let fake = FakeOpenAi::start(Script::always(Turn::echo("echo: "))).await.expect("starting the fake model");
    let gw = TestGateway::builder(BIN)
        .config(provider_config(&fake.base_url()))
        .start()
        .await
        .unwrap_or_else(|e| panic!("starting clawgate: {e:#}"));
    let client = Client::connect(ClientOptions::new(gw.ws_url()).token(gw.expect_token()).scopes([
        "operator.read",
        "operator.write",
        "operator.admin",
    ]))
    .await
    .expect("connecting");
    let session = client.session("compose:doc:typed:ann");
    let mut events = session.events();

    let ack = session.chat_send("hello there").await.expect("chat.send");
    assert_eq!(ack.status, clawgate_client::ChatSendStatus::Started);
    loop {
        let event = next_event(&mut events).await;
        assert_own_event(&events, &event);
        if let SessionEvent::Chat(c) = &event
            && c.state == ChatState::Final
        {
            assert_eq!(c.run_id, ack.run_id);
            assert!(c.payload["message"].to_string().contains("echo: hello there"), "{event:?}");
            break;
        }
    }

    let injected = session.chat_inject("A note from the app.", Some("app")).await.expect("chat.inject");
    loop {
        if let SessionEvent::Chat(c) = next_event(&mut events).await
            && c.run_id == format!("inject-{}", injected.message_id)
        {
            break;
        }
    }

    let history = session.chat_history(Some(10)).await.expect("chat.history decodes");
    assert_eq!(history.session_key, "agent:main:compose:doc:typed:ann");
    let text = serde_json::to_string(&history.messages).unwrap();
    for expected in ["hello there", "echo: hello there", "A note from the app."] {
        assert!(text.contains(expected), "{expected:?} not in {text}");
    }

    let aborted = session.chat_abort(None).await.expect("chat.abort decodes");
    assert!(!aborted.aborted && aborted.run_ids.is_empty(), "nothing was running: {aborted:?}");

    // A refused call keeps the gateway's error shape.
    let err = client.session("").chat_history(None).await.expect_err("an empty key is refused");
    assert!(matches!(&err, ClientError::Rpc(e) if e.code == "INVALID_REQUEST"), "{err:?}");
    client.close().await;
}
