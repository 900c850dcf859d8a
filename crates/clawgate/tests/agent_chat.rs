//! Agent turns end to end: the real binary, a raw protocol client and a fake model (contracts:
//! openclaw-live.md §5, openclaw-protocol.md §6–7; transcripts `chat-send-raw`,
//! `agent-method-raw`, `chat-abort-raw`).
//!
//! Every test points clawgate at a [`FakeOpenAi`] (or [`FakeAnthropic`]) whose script decides what
//! "the model" does, drives `chat.send`/`agent`/`chat.abort` over a [`RawClient`] (which checks
//! every frame clawgate sends against the OpenClaw schema), and looks at three things: the
//! `agent`/`chat` events, what `chat.history` kept, and what the fake model was sent. The last
//! tests run the `clawgate chat` and `clawgate sessions` subcommands against the same setup.

use std::collections::HashMap;
use std::process::Stdio;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use clawgate_testkit::fake_anthropic::{self, FakeAnthropic};
use clawgate_testkit::fake_openai::{FakeOpenAi, Script, Turn};
use clawgate_testkit::{RawClient, TestGateway, eventually, wait_until};
use serde_json::{Value, json};
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWriteExt};
use tokio::process::{Child, ChildStdin, Command};

const BIN: &str = env!("CARGO_BIN_EXE_clawgate");

/// What the default fake script streams, in five chunks.
const HELLO: &str = "Hello from the fake model";

/// Bound on one whole turn (a fake model answers in milliseconds; CI machines are slow).
const TURN_WAIT: Duration = Duration::from_secs(30);

// ---- setup ----

/// A config with one provider `fake` of the given API kind, used by the default agent.
fn provider_config(base_url: &str, api: &str) -> String {
    json!({
        "models": {"providers": {"fake": {
            "baseUrl": base_url, "apiKey": "fake-key", "api": api,
            "models": [{"id": "fake-model", "name": "Fake Model"}],
        }}},
        "agents": {"defaults": {"model": {"primary": "fake/fake-model"}}},
    })
    .to_string()
}

async fn gateway_for(base_url: &str, api: &str) -> TestGateway {
    let config = provider_config(base_url, api);
    TestGateway::builder(BIN)
        .config(config.clone())
        .start()
        .await
        .unwrap_or_else(|e| panic!("starting clawgate with {config}: {e:#}"))
}

/// A fake OpenAI-compatible model with this script, and a gateway using it.
async fn start(script: Script) -> (FakeOpenAi, TestGateway) {
    let fake = FakeOpenAi::start(script).await.expect("starting the fake model");
    let gw = gateway_for(&fake.base_url(), "openai-completions").await;
    (fake, gw)
}

/// A raw connection that completed the handshake as the local CLI (read, write, admin).
async fn connect(gw: &TestGateway) -> RawClient {
    let mut client = RawClient::connect(&gw.ws_url()).await.unwrap_or_else(|e| panic!("opening a websocket: {e:#}"));
    client.handshake(gw.token(), &json!({})).await.unwrap_or_else(|e| panic!("handshake: {e:#}"));
    client
}

async fn request(client: &mut RawClient, method: &str, params: Value) -> Value {
    client.request(method, Some(params)).await.unwrap_or_else(|e| panic!("{method}: {e:#}"))
}

/// The payload of an ok `res`; fails the test on an error answer.
fn ok_payload(res: &Value) -> &Value {
    assert_eq!(res["ok"], true, "expected an ok response: {res}");
    &res["payload"]
}

async fn chat_send(client: &mut RawClient, session: &str, message: &str, key: &str) -> Value {
    let res =
        request(client, "chat.send", json!({"sessionKey": session, "message": message, "idempotencyKey": key})).await;
    ok_payload(&res).clone()
}

async fn chat_history(client: &mut RawClient, session: &str) -> Vec<Value> {
    let res = request(client, "chat.history", json!({"sessionKey": session, "limit": 100})).await;
    ok_payload(&res)["messages"].as_array().cloned().unwrap_or_else(|| panic!("history without messages: {res}"))
}

/// The plain text of a transcript message (string content or text parts).
fn text_of(message: &Value) -> String {
    match &message["content"] {
        Value::String(s) => s.clone(),
        Value::Array(parts) => parts.iter().filter_map(|p| p["text"].as_str()).collect(),
        _ => String::new(),
    }
}

/// `__openclaw.status` of a history message: absent for a complete message.
fn status_of(message: &Value) -> Option<&str> {
    message["__openclaw"]["status"].as_str()
}

fn roles(messages: &[Value]) -> Vec<&str> {
    messages.iter().map(|m| m["role"].as_str().unwrap_or("?")).collect()
}

// ---- collecting a run's events ----

/// One `agent` or `chat` event as received, with its position among everything collected.
#[derive(Debug, Clone)]
struct RunEvent {
    at: usize,
    event: String,
    payload: Value,
}

/// Events of several runs, read from one connection until each run's `chat` event is terminal.
#[derive(Debug, Default)]
struct Collected {
    runs: HashMap<String, Vec<RunEvent>>,
    /// Every other frame read meanwhile (responses, other runs' events, ticks, …).
    other: Vec<Value>,
}

impl Collected {
    fn of(&self, run_id: &str) -> &[RunEvent] {
        self.runs.get(run_id).map(Vec::as_slice).unwrap_or_default()
    }

    fn chat(&self, run_id: &str) -> Vec<&Value> {
        self.of(run_id).iter().filter(|e| e.event == "chat").map(|e| &e.payload).collect()
    }

    fn agent(&self, run_id: &str, stream: &str) -> Vec<&Value> {
        self.of(run_id)
            .iter()
            .filter(|e| e.event == "agent" && e.payload["stream"] == stream)
            .map(|e| &e.payload)
            .collect()
    }

    /// The concatenated `deltaText` of the run's `chat` deltas.
    fn delta_text(&self, run_id: &str) -> String {
        self.chat(run_id).iter().filter(|c| c["state"] == "delta").filter_map(|c| c["deltaText"].as_str()).collect()
    }

    /// The run's terminal `chat` event (final, aborted or error).
    fn terminal(&self, run_id: &str) -> &Value {
        self.of(run_id)
            .iter()
            .find(|e| is_terminal_chat(&e.event, &e.payload))
            .map(|e| &e.payload)
            .unwrap_or_else(|| panic!("run {run_id} has no terminal chat event: {self:#?}"))
    }

    /// Position of the first event of a run matching `pred`.
    fn position(&self, run_id: &str, pred: impl Fn(&RunEvent) -> bool) -> Option<usize> {
        self.of(run_id).iter().find(|e| pred(e)).map(|e| e.at)
    }
}

fn is_terminal_chat(event: &str, payload: &Value) -> bool {
    event == "chat" && matches!(payload["state"].as_str(), Some("final" | "aborted" | "error"))
}

fn is_terminal_lifecycle(event: &str, payload: &Value) -> bool {
    event == "agent"
        && payload["stream"] == "lifecycle"
        && matches!(payload["data"]["phase"].as_str(), Some("end" | "error"))
}

/// A run is over once both its terminal `chat` event and its terminal `agent` lifecycle event
/// arrived (a completed run sends lifecycle `end` first, an aborted or failed one `chat` first).
fn run_is_over(events: &[RunEvent]) -> bool {
    events.iter().any(|e| is_terminal_chat(&e.event, &e.payload))
        && events.iter().any(|e| is_terminal_lifecycle(&e.event, &e.payload))
}

/// Reads frames until every run in `run_ids` is over (see [`run_is_over`]), adding to `into` (so
/// a test can collect in steps). Fails after `wait`.
async fn collect_into(client: &mut RawClient, into: &mut Collected, run_ids: &[&str], wait: Duration) {
    let deadline = Instant::now() + wait;
    let done = |c: &Collected| run_ids.iter().all(|id| run_is_over(c.of(id)));
    while !done(into) {
        let left = deadline.saturating_duration_since(Instant::now());
        let frame = match client.recv_json(left).await {
            Ok(frame) => frame,
            Err(e) => panic!("waiting for runs {run_ids:?} to end: {e:#}\ncollected so far: {into:#?}"),
        };
        let event = frame["event"].as_str().unwrap_or("");
        let run_id = frame["payload"]["runId"].as_str().unwrap_or("");
        if frame["type"] == "event" && matches!(event, "agent" | "chat") && !run_id.is_empty() {
            let at = into.runs.values().map(Vec::len).sum::<usize>() + into.other.len();
            let payload = frame["payload"].clone();
            into.runs.entry(run_id.to_owned()).or_default().push(RunEvent { at, event: event.to_owned(), payload });
        } else {
            into.other.push(frame);
        }
    }
}

async fn collect(client: &mut RawClient, run_ids: &[&str], wait: Duration) -> Collected {
    let mut collected = Collected::default();
    collect_into(client, &mut collected, run_ids, wait).await;
    collected
}

/// Reads until the first `chat` delta of `run_id` arrives (keeping everything in `into`).
async fn wait_for_first_delta(client: &mut RawClient, into: &mut Collected, run_id: &str) {
    let deadline = Instant::now() + TURN_WAIT;
    while !into.chat(run_id).iter().any(|c| c["state"] == "delta") {
        let left = deadline.saturating_duration_since(Instant::now());
        let frame = client.recv_json(left).await.unwrap_or_else(|e| panic!("waiting for a delta of {run_id}: {e:#}"));
        let event = frame["event"].as_str().unwrap_or("").to_owned();
        let frame_run = frame["payload"]["runId"].as_str().unwrap_or("").to_owned();
        if frame["type"] == "event" && matches!(event.as_str(), "agent" | "chat") && !frame_run.is_empty() {
            let at = into.runs.values().map(Vec::len).sum::<usize>() + into.other.len();
            into.runs.entry(frame_run).or_default().push(RunEvent { at, event, payload: frame["payload"].clone() });
        } else {
            into.other.push(frame);
        }
    }
}

/// The checks every completed streamed run must pass: events belong to the run and session, the
/// `agent` seq counts up, deltas add up to the final text, lifecycle start/end bracket the text,
/// and nothing follows the final `chat` event.
fn assert_completed_run(c: &Collected, run_id: &str, session_key: &str, text: &str) {
    let events = c.of(run_id);
    for e in events {
        assert_eq!(e.payload["runId"], run_id, "{e:?}");
    }
    for chat in c.chat(run_id) {
        assert_eq!(chat["sessionKey"], session_key, "{chat}");
        assert_eq!(chat["agentId"], "main", "{chat}");
    }
    let seqs: Vec<u64> =
        events.iter().filter(|e| e.event == "agent").filter_map(|e| e.payload["seq"].as_u64()).collect();
    assert!(seqs.windows(2).all(|w| w[0] < w[1]), "agent seq must count up within a run: {seqs:?}");

    let terminal = c.terminal(run_id);
    assert_eq!(terminal["state"], "final", "run {run_id} did not complete: {terminal}");
    assert_eq!(text_of(&terminal["message"]), text, "{terminal}");
    assert_eq!(terminal["message"]["role"], "assistant", "{terminal}");
    assert_eq!(c.delta_text(run_id), text, "chat deltas must add up to the reply");
    // Each delta carries the cumulative text so far.
    let mut so_far = String::new();
    for delta in c.chat(run_id).iter().filter(|c| c["state"] == "delta") {
        so_far.push_str(delta["deltaText"].as_str().unwrap_or(""));
        assert_eq!(text_of(&delta["message"]), so_far, "{delta}");
    }

    let assistant = c.agent(run_id, "assistant");
    assert!(!assistant.is_empty(), "no agent assistant events for {run_id}");
    let agent_text: String = assistant.iter().filter_map(|a| a["data"]["delta"].as_str()).collect();
    assert_eq!(agent_text, text, "agent assistant deltas must add up to the reply");
    assert_eq!(assistant.last().map(|a| a["data"]["text"].clone()), Some(json!(text)));

    let lifecycle = c.agent(run_id, "lifecycle");
    let phases: Vec<&str> = lifecycle.iter().filter_map(|l| l["data"]["phase"].as_str()).collect();
    assert!(phases.contains(&"start") && phases.last() == Some(&"end"), "lifecycle phases: {phases:?}");
    let start = c.position(run_id, |e| e.event == "agent" && e.payload["data"]["phase"] == "start");
    let first_text = c.position(run_id, |e| e.event == "agent" && e.payload["stream"] == "assistant");
    let end = c.position(run_id, |e| e.event == "agent" && e.payload["data"]["phase"] == "end");
    assert!(start < first_text && first_text < end, "lifecycle start < assistant text < end: {events:#?}");
    let final_at = c.position(run_id, |e| is_terminal_chat(&e.event, &e.payload));
    assert_eq!(final_at, events.last().map(|e| e.at), "nothing of the run may follow its final chat event");
}

// ---- chat.send ----

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn chat_send_streams_deltas_and_a_final_reply_that_history_keeps() {
    let (fake, gw) = start(Script::default()).await;
    let mut client = connect(&gw).await;
    let session = "agent:main:stream";

    let ack = chat_send(&mut client, session, "Say hello", "stream-1").await;
    assert_eq!(ack["runId"], "stream-1", "{ack}");
    assert_eq!(ack["status"], "started", "{ack}");

    let c = collect(&mut client, &["stream-1"], TURN_WAIT).await;
    assert_completed_run(&c, "stream-1", session, HELLO);
    assert_eq!(c.terminal("stream-1")["stopReason"], "stop");

    let history = chat_history(&mut client, session).await;
    assert_eq!(roles(&history), ["user", "assistant"], "{history:#?}");
    assert_eq!(history[0]["content"], "Say hello", "user content is the plain string: {history:#?}");
    assert_eq!(text_of(&history[1]), HELLO);
    assert_eq!(status_of(&history[1]), None, "a completed reply is stored as final: {history:#?}");

    // One streamed request, with the user's message last.
    let requests = fake.chat_requests();
    assert_eq!(requests.len(), 1, "{requests:#?}");
    let body = &requests[0].body;
    assert_eq!(body["stream"], true, "{body}");
    assert_eq!(body["model"], "fake-model", "{body}");
    assert_eq!(requests[0].header("authorization"), Some("Bearer fake-key"));
    let last = body["messages"].as_array().and_then(|m| m.last()).cloned().unwrap_or_default();
    assert_eq!(last["role"], "user", "{body}");
    assert_eq!(text_of(&last), "Say hello", "{body}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_agent_and_chat_event_names_its_session_and_agent() {
    let (_fake, gw) = start(Script::default()).await;
    let mut client = connect(&gw).await;
    chat_send(&mut client, "agent:main:named", "Say hello", "named-1").await;
    let c = collect(&mut client, &["named-1"], TURN_WAIT).await;
    // Live notes §5: every `agent`/`chat` payload has runId, sessionKey and agentId. Clients
    // route on them: openclaw-node's subscribeMessages and clawgate-client's
    // events_for_session keep only events whose payload.sessionKey matches.
    let unnamed: Vec<String> = c
        .of("named-1")
        .iter()
        .filter(|e| e.payload["sessionKey"] != "agent:main:named" || e.payload["agentId"] != "main")
        .map(|e| format!("{} {}", e.event, e.payload))
        .collect();
    assert!(unnamed.is_empty(), "events without sessionKey/agentId:\n{}", unnamed.join("\n"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_repeated_idempotency_key_starts_one_run() {
    let (fake, gw) = start(Script::always(Turn::hello().chunk_delay(Duration::from_millis(100)))).await;
    let mut client = connect(&gw).await;
    let session = "agent:main:idem";

    let first = chat_send(&mut client, session, "Say hello", "idem-1").await;
    assert_eq!(first["status"], "started", "{first}");
    let again = chat_send(&mut client, session, "Say hello", "idem-1").await;
    assert_eq!(again["runId"], "idem-1", "{again}");
    assert!(matches!(again["status"].as_str(), Some("in_flight" | "ok")), "repeat while running: {again}");

    let c = collect(&mut client, &["idem-1"], TURN_WAIT).await;
    assert_completed_run(&c, "idem-1", session, HELLO);

    // After the end the repeat answers `ok`. The final event is sent a moment before the run is
    // recorded as finished, so a repeat racing it may still see `in_flight`; never `started`.
    {
        let client = tokio::sync::Mutex::new(&mut client);
        wait_until(Duration::from_secs(10), "the finished run answers ok", || async {
            let after = chat_send(*client.lock().await, session, "Say hello", "idem-1").await;
            if after == json!({"runId": "idem-1", "status": "ok"}) {
                return Some(());
            }
            assert_eq!(after, json!({"runId": "idem-1", "status": "in_flight"}), "repeat after the end");
            None
        })
        .await
        .unwrap();
    }

    // No second run: nothing more streams, the model was asked once, history has one exchange.
    client.expect_no_response(Duration::from_millis(800)).await.expect("quiet socket");
    let late: Vec<Value> =
        client.take_pending().into_iter().filter(|f| f["event"] == "chat" || f["event"] == "agent").collect();
    assert!(late.is_empty(), "a repeated key must not start a run: {late:#?}");
    assert_eq!(fake.chat_requests().len(), 1);
    let history = chat_history(&mut client, session).await;
    assert_eq!(roles(&history), ["user", "assistant"], "{history:#?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn chat_abort_mid_stream_ends_aborted_with_the_partial_text_and_history_stays_consistent() {
    let parts = ["Part one.", " Part two.", " Part three.", " Part four.", " Part five."];
    let script = Script::new().turn(Turn::text(parts).chunk_delay(Duration::from_millis(400))).otherwise(Turn::hello());
    let (fake, gw) = start(script).await;
    let mut client = connect(&gw).await;
    let session = "agent:main:abort";

    chat_send(&mut client, session, "Talk slowly", "abort-1").await;
    let mut c = Collected::default();
    wait_for_first_delta(&mut client, &mut c, "abort-1").await;
    let res = request(&mut client, "chat.abort", json!({"sessionKey": session, "runId": "abort-1"})).await;
    let payload = ok_payload(&res);
    assert_eq!(payload["ok"], true, "{res}");
    assert_eq!(payload["aborted"], true, "{res}");
    assert_eq!(payload["runIds"], json!(["abort-1"]), "{res}");

    collect_into(&mut client, &mut c, &["abort-1"], TURN_WAIT).await;
    let terminal = c.terminal("abort-1");
    assert_eq!(terminal["state"], "aborted", "{terminal}");
    assert_eq!(terminal["stopReason"], "rpc", "{terminal}");
    let partial = text_of(&terminal["message"]);
    let full: String = parts.concat();
    assert!(!partial.is_empty() && partial.len() < full.len(), "partial text expected, got {partial:?}");
    assert!(full.starts_with(&partial), "{partial:?} is not a prefix of the reply");
    assert_eq!(c.delta_text("abort-1"), partial, "the aborted message is what was streamed");
    let end = c.agent("abort-1", "lifecycle").into_iter().find(|l| l["data"]["phase"] == "end").cloned();
    assert_eq!(end.as_ref().map(|e| e["data"]["aborted"].clone()), Some(json!(true)), "{:#?}", c.of("abort-1"));
    // The model call was cut off, not left to run to its end.
    fake.wait_for_aborted(1, Duration::from_secs(5)).await.expect("the provider stream is closed on abort");

    // History: the user message, then the partial reply marked aborted (or nothing) — never a
    // half reply that looks complete.
    let history = chat_history(&mut client, session).await;
    assert_eq!(history[0]["role"], "user", "{history:#?}");
    assert_eq!(text_of(&history[0]), "Talk slowly");
    match history.get(1) {
        None => {}
        Some(m) => {
            assert_eq!(m["role"], "assistant", "{history:#?}");
            assert_eq!(status_of(m), Some("aborted"), "{history:#?}");
            assert_eq!(text_of(m), partial, "{history:#?}");
        }
    }
    assert!(history.len() <= 2, "{history:#?}");

    // The session is not stuck: the next message runs normally.
    chat_send(&mut client, session, "Again", "abort-2").await;
    let c = collect(&mut client, &["abort-2"], TURN_WAIT).await;
    assert_completed_run(&c, "abort-2", session, HELLO);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_sessions_stream_at_the_same_time_without_mixing_their_text() {
    let slow = Duration::from_millis(300);
    let script = Script::new()
        .turn(Turn::text(["a1 ", "a2 ", "a3 ", "a4"]).chunk_delay(slow))
        .turn(Turn::text(["b1 ", "b2 ", "b3 ", "b4"]).chunk_delay(slow));
    let (fake, gw) = start(script).await;
    let mut client = connect(&gw).await;

    chat_send(&mut client, "agent:main:left", "Left", "left-1").await;
    // The fake hands out turns in arrival order: make sure "left" got the first one.
    fake.wait_for_requests(1, TURN_WAIT).await.expect("the first model request");
    chat_send(&mut client, "agent:main:right", "Right", "right-1").await;

    let c = collect(&mut client, &["left-1", "right-1"], TURN_WAIT).await;
    assert_completed_run(&c, "left-1", "agent:main:left", "a1 a2 a3 a4");
    assert_completed_run(&c, "right-1", "agent:main:right", "b1 b2 b3 b4");
    // They ran side by side: the second run streamed before the first one ended.
    let right_first = c.position("right-1", |e| e.event == "chat" && e.payload["state"] == "delta");
    let left_final = c.position("left-1", |e| is_terminal_chat(&e.event, &e.payload));
    assert!(right_first < left_final, "sessions must not wait for each other: {c:#?}");

    let left = chat_history(&mut client, "agent:main:left").await;
    let right = chat_history(&mut client, "agent:main:right").await;
    assert_eq!(left.iter().map(text_of).collect::<Vec<_>>(), ["Left", "a1 a2 a3 a4"]);
    assert_eq!(right.iter().map(text_of).collect::<Vec<_>>(), ["Right", "b1 b2 b3 b4"]);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_hanging_model_call_in_one_session_never_delays_another() {
    let (fake, gw) = start(Script::new().turn(Turn::hang()).otherwise(Turn::hello())).await;
    let mut client = connect(&gw).await;

    chat_send(&mut client, "agent:main:stuck", "Hang", "stuck-1").await;
    fake.wait_for_requests(1, TURN_WAIT).await.expect("the hanging request");
    // The stuck turn never ends, so the free one completing at all proves it did not wait.
    chat_send(&mut client, "agent:main:free", "Hello?", "free-1").await;
    let c = collect(&mut client, &["free-1"], Duration::from_secs(10)).await;
    assert_completed_run(&c, "free-1", "agent:main:free", HELLO);
    assert!(
        !c.of("stuck-1")
            .iter()
            .any(|e| is_terminal_chat(&e.event, &e.payload) || is_terminal_lifecycle(&e.event, &e.payload)),
        "the hanging run must still be running: {:#?}",
        c.of("stuck-1")
    );

    // The hanging one can still be aborted; it produced no text, so nothing of it is stored.
    let res = request(&mut client, "chat.abort", json!({"sessionKey": "agent:main:stuck"})).await;
    assert_eq!(ok_payload(&res)["runIds"], json!(["stuck-1"]), "{res}");
    let mut c = c;
    collect_into(&mut client, &mut c, &["stuck-1"], TURN_WAIT).await;
    assert_eq!(c.terminal("stuck-1")["state"], "aborted");
    fake.wait_for_aborted(1, Duration::from_secs(5)).await.expect("the hanging call is dropped on abort");
    let history = chat_history(&mut client, "agent:main:stuck").await;
    assert_eq!(roles(&history), ["user"], "{history:#?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_message_sent_while_a_turn_runs_waits_and_runs_after_it() {
    let script = Script::new()
        .turn(Turn::text(["First ", "answer."]).chunk_delay(Duration::from_millis(400)))
        .turn(Turn::text(["Second ", "answer."]));
    let (fake, gw) = start(script).await;
    let mut client = connect(&gw).await;
    let session = "agent:main:queue";

    chat_send(&mut client, session, "one", "queue-1").await;
    let mut c = Collected::default();
    wait_for_first_delta(&mut client, &mut c, "queue-1").await;
    let second = chat_send(&mut client, session, "two", "queue-2").await;
    assert_eq!(second["runId"], "queue-2", "{second}");
    collect_into(&mut client, &mut c, &["queue-1", "queue-2"], TURN_WAIT).await;

    assert_completed_run(&c, "queue-1", session, "First answer.");
    assert_completed_run(&c, "queue-2", session, "Second answer.");
    let first_end = c.position("queue-1", |e| is_terminal_chat(&e.event, &e.payload));
    let second_text = c.position("queue-2", |e| e.event == "agent" && e.payload["stream"] == "assistant");
    assert!(first_end < second_text, "the queued turn must start after the running one ended: {c:#?}");

    let history = chat_history(&mut client, session).await;
    let texts: Vec<String> = history.iter().map(text_of).collect();
    assert_eq!(texts, ["one", "First answer.", "two", "Second answer."], "{history:#?}");
    // The second model call saw the whole first exchange.
    let requests = fake.chat_requests();
    assert_eq!(requests.len(), 2);
    let sent: Vec<String> = requests[1].body["messages"]
        .as_array()
        .map(|m| m.iter().filter(|m| m["role"] != "system").map(text_of).collect())
        .unwrap_or_default();
    assert_eq!(sent, ["one", "First answer.", "two"], "{:#}", requests[1].body);
}

// ---- agent, agent.wait ----

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn agent_answers_accepted_then_final_with_the_same_id_and_agent_wait_reports_the_end() {
    let (fake, gw) = start(Script::default()).await;
    let mut client = connect(&gw).await;
    let params = json!({"message": "hi", "sessionKey": "agent:main:x", "idempotencyKey": "k1"});

    let id = client.next_id();
    client.send_json(&json!({"type": "req", "id": id, "method": "agent", "params": params})).await.expect("send agent");
    let accepted = client.recv_response(&id, Duration::from_secs(10)).await.expect("accepted res");
    let payload = ok_payload(&accepted);
    assert_eq!(payload["status"], "accepted", "{accepted}");
    assert_eq!(payload["runId"], "k1", "{accepted}");
    assert_eq!(payload["sessionKey"], "agent:main:x", "{accepted}");
    assert_eq!(payload["agentId"], "main", "{accepted}");
    assert!(payload["acceptedAt"].is_i64() || payload["acceptedAt"].is_u64(), "{accepted}");

    let done = client.recv_response(&id, TURN_WAIT).await.expect("final res with the same id");
    let payload = ok_payload(&done);
    assert_eq!(payload["runId"], "k1", "{done}");
    assert_eq!(payload["status"], "ok", "{done}");
    assert_eq!(payload["summary"], "completed", "{done}");
    assert_eq!(payload["result"]["payloads"][0]["text"], HELLO, "{done}");

    // The run's events streamed before the final res.
    let received = client.received().to_vec();
    let final_at = received.iter().position(|f| f == &done).expect("final res received");
    let end_at = received
        .iter()
        .position(|f| f["event"] == "agent" && f["payload"]["runId"] == "k1" && f["payload"]["data"]["phase"] == "end")
        .unwrap_or_else(|| panic!("no lifecycle end for k1: {received:#?}"));
    assert!(end_at < final_at, "lifecycle end before the final res");
    let streamed: String = received
        .iter()
        .filter(|f| f["event"] == "agent" && f["payload"]["runId"] == "k1" && f["payload"]["stream"] == "assistant")
        .filter_map(|f| f["payload"]["data"]["delta"].as_str())
        .collect();
    assert_eq!(streamed, HELLO);

    let waited = request(&mut client, "agent.wait", json!({"runId": "k1", "timeoutMs": 5000})).await;
    let payload = ok_payload(&waited);
    assert_eq!(payload["runId"], "k1", "{waited}");
    assert_eq!(payload["status"], "ok", "{waited}");
    assert_eq!(payload["stopReason"], "stop", "{waited}");

    let unknown = request(&mut client, "agent.wait", json!({"runId": "no-such-run", "timeoutMs": 100})).await;
    assert_eq!(unknown["ok"], false, "{unknown}");
    assert_eq!(unknown["error"]["code"], "INVALID_REQUEST", "{unknown}");
    assert_eq!(unknown["error"]["message"], "agent run was not found", "{unknown}");

    // The same idempotency key replays the stored result without asking the model again.
    let replay = request(&mut client, "agent", params).await;
    let payload = ok_payload(&replay);
    assert_eq!(payload["status"], "ok", "{replay}");
    assert_eq!(payload["result"]["payloads"][0]["text"], HELLO, "{replay}");
    assert_eq!(fake.chat_requests().len(), 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn agent_wait_on_a_running_turn_is_pending_until_it_ends() {
    let (_fake, gw) = start(Script::always(Turn::hello().chunk_delay(Duration::from_millis(300)))).await;
    let mut client = connect(&gw).await;
    chat_send(&mut client, "agent:main:wait", "Say hello", "wait-1").await;

    let early = request(&mut client, "agent.wait", json!({"runId": "wait-1", "timeoutMs": 50})).await;
    let status = ok_payload(&early)["status"].as_str().unwrap_or("").to_owned();
    assert!(status == "pending" || status == "timeout", "a running turn is not done: {early}");

    let waited = client
        .request_with_timeout("agent.wait", Some(json!({"runId": "wait-1", "timeoutMs": 20_000})), TURN_WAIT)
        .await
        .expect("agent.wait");
    assert_eq!(ok_payload(&waited)["status"], "ok", "{waited}");
}

// ---- failures ----

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_provider_error_mid_stream_ends_the_turn_with_a_chat_error() {
    // No fallback turn: a retry would get HTTP 500 "fake script exhausted" and show up below.
    let (fake, gw) = start(Script::new().turn(Turn::hello().error_after(2, "The model fell over"))).await;
    let mut client = connect(&gw).await;
    let session = "agent:main:midfail";

    chat_send(&mut client, session, "Say hello", "midfail-1").await;
    let c = collect(&mut client, &["midfail-1"], TURN_WAIT).await;
    let terminal = c.terminal("midfail-1");
    assert_eq!(terminal["state"], "error", "{terminal}");
    let message = terminal["errorMessage"].as_str().unwrap_or("");
    assert!(message.contains("The model fell over"), "the provider's reason reaches the user: {terminal}");
    assert_eq!(c.delta_text("midfail-1"), "Hello from");
    let lifecycle = c.agent("midfail-1", "lifecycle");
    assert!(lifecycle.iter().any(|l| l["data"]["phase"] == "error"), "{lifecycle:#?}");
    // Text was already shown, so the call is not retried (that would repeat it).
    assert_eq!(fake.chat_requests().len(), 1);

    let history = chat_history(&mut client, session).await;
    assert_eq!(text_of(&history[0]), "Say hello");
    if let Some(m) = history.get(1) {
        assert_eq!(status_of(m), Some("error"), "a failed reply must be marked: {history:#?}");
        assert_eq!(text_of(m), "Hello from", "{history:#?}");
    }
    assert!(history.len() <= 2, "{history:#?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_unreachable_provider_ends_with_an_error_that_says_what_to_configure() {
    let closed_port = {
        let listener = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
        listener.local_addr().expect("addr").port()
    };
    let gw = gateway_for(&format!("http://127.0.0.1:{closed_port}/v1"), "openai-completions").await;
    let mut client = connect(&gw).await;

    chat_send(&mut client, "agent:main:nowhere", "Anyone there?", "nowhere-1").await;
    let c = collect(&mut client, &["nowhere-1"], Duration::from_secs(60)).await;
    let terminal = c.terminal("nowhere-1");
    assert_eq!(terminal["state"], "error", "{terminal}");
    let message = terminal["errorMessage"].as_str().unwrap_or("");
    assert!(
        message.contains("fake") && message.contains("baseUrl") && message.contains(&closed_port.to_string()),
        "the error must name the provider, its address and the setting to fix: {message:?}"
    );
    assert!(!message.contains("fake-key"), "the API key never reaches the user: {message:?}");
}

// ---- tools ----

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_tool_call_runs_the_tool_and_the_next_model_call_gets_its_result() {
    let script = Script::new().turn(Turn::tool_call("current_time", "{}")).turn(Turn::text(["It is ", "now."]));
    let (fake, gw) = start(script).await;
    let mut client = connect(&gw).await;
    // Tool events go to clients that asked for them (cap `tool-events`).
    let mut watcher = RawClient::connect(&gw.ws_url()).await.expect("ws");
    watcher.handshake(gw.token(), &json!({"caps": ["tool-events"]})).await.expect("handshake");
    let session = "agent:main:tools";

    chat_send(&mut client, session, "What time is it?", "tools-1").await;
    let c = collect(&mut client, &["tools-1"], TURN_WAIT).await;
    assert_completed_run(&c, "tools-1", session, "It is now.");
    let w = collect(&mut watcher, &["tools-1"], TURN_WAIT).await;
    let tools: Vec<&Value> = w.agent("tools-1", "tool");
    let tools = if tools.is_empty() { c.agent("tools-1", "tool") } else { tools };
    let start = tools.iter().find(|t| t["data"]["phase"] == "start").unwrap_or_else(|| panic!("no tool start: {w:#?}"));
    assert_eq!(start["data"]["name"], "current_time", "{start}");
    let call_id = start["data"]["toolCallId"].as_str().unwrap_or("").to_owned();
    assert!(!call_id.is_empty(), "{start}");
    let result = tools.iter().find(|t| t["data"]["phase"] == "result").unwrap_or_else(|| panic!("no tool result"));
    assert_eq!(result["data"]["toolCallId"], call_id.as_str(), "{result}");
    assert_eq!(result["data"]["isError"], false, "{result}");

    let requests = fake.chat_requests();
    assert_eq!(requests.len(), 2, "one call for the tool, one for the answer");
    assert!(requests[0].body["tools"].as_array().is_some_and(|t| !t.is_empty()), "tools are offered");
    let messages = requests[1].body["messages"].as_array().cloned().unwrap_or_default();
    let call = messages
        .iter()
        .find(|m| m["role"] == "assistant" && m["tool_calls"].is_array())
        .unwrap_or_else(|| panic!("the assistant's tool call is sent back: {messages:#?}"));
    assert_eq!(call["tool_calls"][0]["id"], call_id.as_str(), "{call}");
    assert_eq!(call["tool_calls"][0]["function"]["name"], "current_time", "{call}");
    let tool = messages
        .iter()
        .find(|m| m["role"] == "tool")
        .unwrap_or_else(|| panic!("the tool result is sent to the model: {messages:#?}"));
    assert_eq!(tool["tool_call_id"], call_id.as_str(), "{tool}");
    assert!(text_of(tool).contains("unixMs"), "the result of current_time: {tool}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tool_events_go_only_to_clients_that_asked_for_them() {
    let script = Script::new().turn(Turn::tool_call("current_time", "{}")).turn(Turn::text(["Done."]));
    let (_fake, gw) = start(script).await;
    let mut sender = connect(&gw).await;
    let mut with_cap = RawClient::connect(&gw.ws_url()).await.expect("ws");
    with_cap.handshake(gw.token(), &json!({"caps": ["tool-events"]})).await.expect("handshake");
    let mut without_cap = connect(&gw).await;

    chat_send(&mut sender, "agent:main:toolcaps", "What time is it?", "toolcaps-1").await;
    let seen_with = collect(&mut with_cap, &["toolcaps-1"], TURN_WAIT).await;
    let seen_without = collect(&mut without_cap, &["toolcaps-1"], TURN_WAIT).await;
    assert!(!seen_with.agent("toolcaps-1", "tool").is_empty(), "a tool-events client gets tool events");
    // Contract §7.3: tool events are not broadcast to everyone.
    assert_eq!(
        seen_without.agent("toolcaps-1", "tool"),
        Vec::<&Value>::new(),
        "a client without the tool-events cap must not get tool events"
    );
    assert_eq!(seen_without.terminal("toolcaps-1")["state"], "final", "it still gets the chat stream");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_turn_that_runs_past_its_timeout_is_stopped_and_ends_the_stream() {
    let (fake, gw) = start(Script::new().turn(Turn::hello().hang_after(2)).otherwise(Turn::hello())).await;
    let mut client = connect(&gw).await;
    let session = "agent:main:slowpoke";
    let res = request(
        &mut client,
        "chat.send",
        json!({"sessionKey": session, "message": "Hurry", "idempotencyKey": "slow-1", "timeoutMs": 1500}),
    )
    .await;
    assert_eq!(ok_payload(&res)["status"], "started", "{res}");
    // The model hangs for ever after two deltas: a terminal event at all is the timeout's work.
    let c = collect(&mut client, &["slow-1"], Duration::from_secs(15)).await;
    let terminal = c.terminal("slow-1");
    assert!(matches!(terminal["state"].as_str(), Some("aborted" | "error")), "{terminal}");
    assert_eq!(terminal["stopReason"], "timeout", "the user is told it timed out: {terminal}");
    assert_eq!(c.delta_text("slow-1"), "Hello from");
    fake.wait_for_aborted(1, Duration::from_secs(5)).await.expect("the model call is dropped at the timeout");

    // The session is free again.
    chat_send(&mut client, session, "Again", "slow-2").await;
    let c = collect(&mut client, &["slow-2"], TURN_WAIT).await;
    assert_completed_run(&c, "slow-2", session, HELLO);
}

// ---- restart ----

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn kill_9_during_a_turn_leaves_a_readable_consistent_history_and_the_session_works_after_restart() {
    let script = Script::new()
        .turn(
            Turn::text(["Never ", "finished ", "because ", "the ", "gateway ", "died."])
                .chunk_delay(Duration::from_millis(400)),
        )
        .otherwise(Turn::hello());
    let (fake, mut gw) = start(script).await;
    let session = "agent:main:crash";
    {
        let mut client = connect(&gw).await;
        chat_send(&mut client, session, "Before the crash", "crash-1").await;
        let mut c = Collected::default();
        wait_for_first_delta(&mut client, &mut c, "crash-1").await;
        gw.kill9().await.expect("kill -9");
    }
    gw.restart().await.expect("restart after kill -9");
    let mut client = connect(&gw).await;

    let history = chat_history(&mut client, session).await;
    assert!(!history.is_empty(), "the user message survives the crash");
    assert_eq!(history[0]["role"], "user", "{history:#?}");
    assert_eq!(text_of(&history[0]), "Before the crash");
    for m in &history[1..] {
        assert_eq!(m["role"], "assistant", "{history:#?}");
        assert!(
            matches!(status_of(m), Some("aborted" | "interrupted" | "error")),
            "a reply cut by the crash must not look complete: {history:#?}"
        );
    }
    assert!(history.len() <= 2, "{history:#?}");
    let waited = request(&mut client, "agent.wait", json!({"runId": "crash-1", "timeoutMs": 100})).await;
    if waited["ok"] == true {
        assert_ne!(waited["payload"]["status"], "ok", "the crashed run did not complete: {waited}");
        assert_ne!(waited["payload"]["status"], "pending", "the crashed run is not still running: {waited}");
    }

    chat_send(&mut client, session, "After the crash", "crash-2").await;
    let c = collect(&mut client, &["crash-2"], TURN_WAIT).await;
    assert_completed_run(&c, "crash-2", session, HELLO);
    let history = chat_history(&mut client, session).await;
    let n = history.len();
    assert!(n >= 3, "{history:#?}");
    assert_eq!(text_of(&history[n - 2]), "After the crash");
    assert_eq!(text_of(&history[n - 1]), HELLO);
    assert_eq!(fake.chat_requests().len(), 2, "the crashed run is not replayed on restart");
}

// ---- other providers ----

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_anthropic_messages_api_streams_the_same_way() {
    let fake = FakeAnthropic::start(fake_anthropic::Script::default()).await.expect("fake anthropic");
    let gw = gateway_for(&fake.base_url(), "anthropic-messages").await;
    let mut client = connect(&gw).await;
    let session = "agent:main:claude";

    chat_send(&mut client, session, "Say hello", "claude-1").await;
    let c = collect(&mut client, &["claude-1"], TURN_WAIT).await;
    assert_completed_run(&c, "claude-1", session, HELLO);
    let history = chat_history(&mut client, session).await;
    assert_eq!(history.iter().map(text_of).collect::<Vec<_>>(), ["Say hello", HELLO]);

    let requests = fake.message_requests();
    assert_eq!(requests.len(), 1, "{requests:#?}");
    assert_eq!(requests[0].header("x-api-key"), Some("fake-key"));
    assert_eq!(requests[0].body["stream"], true, "{}", requests[0].body);
}

// ---- the `clawgate chat` and `clawgate sessions` subcommands ----

/// The connection flags every client subcommand gets in these tests (the gateway's state dir
/// too: the CLI keeps its device identity there, never in the real home).
fn conn_flags(gw: &TestGateway) -> Vec<String> {
    vec![
        "--url".into(),
        gw.ws_url(),
        "--token".into(),
        gw.expect_token().to_owned(),
        "--state-dir".into(),
        gw.state_dir().to_string_lossy().into_owned(),
    ]
}

/// Runs `clawgate ARGS` to completion (bounded) with the gateway's URL and token.
async fn clawgate(gw: &TestGateway, args: &[&str]) -> std::process::Output {
    let mut cmd = Command::new(BIN);
    cmd.args(args)
        .args(conn_flags(gw))
        .env_remove("CLAWGATE_URL")
        .env("NO_COLOR", "1")
        .stdin(Stdio::null())
        .kill_on_drop(true);
    tokio::time::timeout(TURN_WAIT, cmd.output())
        .await
        .unwrap_or_else(|_| panic!("clawgate {args:?} did not finish within {TURN_WAIT:?}"))
        .unwrap_or_else(|e| panic!("running clawgate {args:?}: {e}"))
}

fn describe(out: &std::process::Output) -> String {
    format!(
        "exit {:?}\n--- stdout ---\n{}\n--- stderr ---\n{}",
        out.status.code(),
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    )
}

/// An interactive `clawgate chat` with piped stdin, whose output is collected as it comes.
struct ChatProcess {
    child: Child,
    stdin: Option<ChildStdin>,
    stdout: Arc<Mutex<String>>,
    stderr: Arc<Mutex<String>>,
    /// The drain tasks, which end when their pipe reaches end of file.
    drains: Vec<tokio::task::JoinHandle<()>>,
}

fn drain(mut from: impl AsyncRead + Unpin + Send + 'static) -> (Arc<Mutex<String>>, tokio::task::JoinHandle<()>) {
    let buf = Arc::new(Mutex::new(String::new()));
    let into = Arc::clone(&buf);
    let task = tokio::spawn(async move {
        let mut chunk = [0u8; 4096];
        while let Ok(n) = from.read(&mut chunk).await {
            if n == 0 {
                break;
            }
            if let Ok(mut b) = into.lock() {
                b.push_str(&String::from_utf8_lossy(&chunk[..n]));
            }
        }
    });
    (buf, task)
}

impl ChatProcess {
    fn spawn(gw: &TestGateway, args: &[&str]) -> ChatProcess {
        let mut child = Command::new(BIN)
            .arg("chat")
            .args(args)
            .args(conn_flags(gw))
            .env_remove("CLAWGATE_URL")
            .env("NO_COLOR", "1")
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .kill_on_drop(true)
            .spawn()
            .expect("spawning clawgate chat");
        let stdin = child.stdin.take();
        let (stdout, out_task) = drain(child.stdout.take().expect("stdout"));
        let (stderr, err_task) = drain(child.stderr.take().expect("stderr"));
        ChatProcess { child, stdin, stdout, stderr, drains: vec![out_task, err_task] }
    }

    fn stdout(&self) -> String {
        self.stdout.lock().map(|s| s.clone()).unwrap_or_default()
    }

    fn stderr(&self) -> String {
        self.stderr.lock().map(|s| s.clone()).unwrap_or_default()
    }

    fn describe(&self) -> String {
        format!("--- chat stdout ---\n{}\n--- chat stderr ---\n{}", self.stdout(), self.stderr())
    }

    async fn type_line(&mut self, line: &str) {
        let stdin = self.stdin.as_mut().expect("stdin is open");
        stdin.write_all(format!("{line}\n").as_bytes()).await.expect("writing to clawgate chat");
        stdin.flush().await.expect("flushing stdin");
    }

    /// Waits until stdout satisfies `pred`.
    async fn wait_stdout(&self, what: &str, pred: impl Fn(&str) -> bool) {
        if let Err(e) =
            eventually(TURN_WAIT, format_args!("clawgate chat prints {what}"), || pred(&self.stdout()).then_some(()))
                .await
        {
            panic!("{e:#}\n{}", self.describe());
        }
    }

    async fn wait_exit(&mut self) -> Option<i32> {
        let status = tokio::time::timeout(Duration::from_secs(10), self.child.wait())
            .await
            .unwrap_or_else(|_| panic!("clawgate chat did not exit\n{}", self.describe()))
            .expect("waiting for clawgate chat");
        // The drain tasks have the last bytes once their pipes reach end of file.
        for task in self.drains.drain(..) {
            let _ = tokio::time::timeout(Duration::from_secs(10), task).await;
        }
        status.code()
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn clawgate_chat_with_message_prints_the_reply_and_sessions_show_and_reset_work() {
    let (_fake, gw) = start(Script::default()).await;

    let out = clawgate(&gw, &["chat", "--session", "cli", "--message", "Say hello"]).await;
    assert_eq!(out.status.code(), Some(0), "{}", describe(&out));
    assert_eq!(String::from_utf8_lossy(&out.stdout), format!("{HELLO}\n"), "{}", describe(&out));

    let out = clawgate(&gw, &["sessions", "list"]).await;
    assert_eq!(out.status.code(), Some(0), "{}", describe(&out));
    let listed = String::from_utf8_lossy(&out.stdout).into_owned();
    let row = listed.lines().find(|l| l.starts_with("agent:main:cli ")).unwrap_or_else(|| panic!("{listed}"));
    assert_eq!(row.split_whitespace().nth(1), Some("2"), "two messages: {listed}");
    let out = clawgate(&gw, &["sessions", "list", "--json"]).await;
    let listed: Value = serde_json::from_slice(&out.stdout).unwrap_or_else(|e| panic!("{e}: {}", describe(&out)));
    assert!(listed["sessions"].as_array().is_some_and(|s| s.iter().any(|s| s["key"] == "agent:main:cli")), "{listed}");

    let out = clawgate(&gw, &["sessions", "show", "cli"]).await;
    assert_eq!(out.status.code(), Some(0), "{}", describe(&out));
    let shown = String::from_utf8_lossy(&out.stdout).into_owned();
    let lines: Vec<&str> = shown.lines().collect();
    assert_eq!(lines[0], "Session agent:main:cli: 2 messages", "{shown}");
    let user = lines.iter().position(|l| l.starts_with("user · ")).unwrap_or_else(|| panic!("{shown}"));
    assert_eq!(lines[user + 1], "  Say hello", "{shown}");
    let assistant = lines.iter().position(|l| l.starts_with("assistant · ")).unwrap_or_else(|| panic!("{shown}"));
    assert!(user < assistant, "{shown}");
    assert_eq!(lines[assistant + 1], format!("  {HELLO}"), "{shown}");
    let out = clawgate(&gw, &["sessions", "show", "agent:main:cli", "--limit", "1", "--json"]).await;
    let history: Value = serde_json::from_slice(&out.stdout).unwrap_or_else(|e| panic!("{e}: {}", describe(&out)));
    assert_eq!(history["messages"].as_array().map(Vec::len), Some(1), "{history}");

    let out = clawgate(&gw, &["sessions", "reset", "cli"]).await;
    assert_eq!(out.status.code(), Some(0), "{}", describe(&out));
    assert!(
        String::from_utf8_lossy(&out.stdout).starts_with("Session agent:main:cli starts afresh"),
        "{}",
        describe(&out)
    );
    let out = clawgate(&gw, &["sessions", "show", "cli"]).await;
    assert_eq!(String::from_utf8_lossy(&out.stdout), "Session agent:main:cli has no messages.\n", "{}", describe(&out));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn clawgate_chat_sends_each_line_and_stops_at_exit() {
    let (fake, gw) = start(Script::new().turn(Turn::text(["One."])).turn(Turn::text(["Two."]))).await;
    let mut chat = ChatProcess::spawn(&gw, &["--session", "lines"]);

    chat.type_line("first").await;
    chat.wait_stdout("the first reply", |s| s == "One.\n").await;
    chat.type_line("").await;
    chat.type_line("second").await;
    chat.wait_stdout("the second reply", |s| s == "One.\nTwo.\n").await;
    chat.type_line("/exit").await;
    chat.type_line("never sent").await;
    assert_eq!(chat.wait_exit().await, Some(0), "{}", chat.describe());
    assert_eq!(chat.stdout(), "One.\nTwo.\n", "{}", chat.describe());

    let requests = fake.chat_requests();
    assert_eq!(requests.len(), 2, "the empty line and the line after /exit send nothing");
    let sent: Vec<String> = requests[1].body["messages"]
        .as_array()
        .map(|m| m.iter().filter(|m| m["role"] != "system").map(text_of).collect())
        .unwrap_or_default();
    assert_eq!(sent, ["first", "One.", "second"]);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ctrl_c_during_a_reply_aborts_the_run_and_the_chat_goes_on() {
    let parts = ["Slow ", "reply ", "that ", "gets ", "cut ", "off."];
    let script = Script::new().turn(Turn::text(parts).chunk_delay(Duration::from_millis(400))).otherwise(Turn::hello());
    let (fake, gw) = start(script).await;
    let mut chat = ChatProcess::spawn(&gw, &["--session", "interrupt"]);

    chat.type_line("Talk slowly").await;
    chat.wait_stdout("the start of the reply", |s| s.starts_with("Slow")).await;
    let pid = chat.child.id().expect("pid");
    let status = std::process::Command::new("kill").arg("-INT").arg(pid.to_string()).status().expect("kill -INT");
    assert!(status.success());
    chat.wait_stdout("the end of the cut reply", |s| s.ends_with('\n')).await;
    let stdout = chat.stdout();
    let partial = stdout.strip_suffix('\n').unwrap_or(&stdout).to_owned();
    assert!(parts.concat().starts_with(&partial) && partial.len() < parts.concat().len(), "{}", chat.describe());
    fake.wait_for_aborted(1, Duration::from_secs(5)).await.expect("the model call was stopped");

    // Still chatting: the next line gets a full reply.
    chat.type_line("Now quickly").await;
    chat.wait_stdout("the next reply", |s| s.ends_with(&format!("{HELLO}\n"))).await;
    chat.type_line("/exit").await;
    assert_eq!(chat.wait_exit().await, Some(0), "{}", chat.describe());
    assert!(chat.stderr().contains("[stopped]"), "{}", chat.describe());

    let mut client = connect(&gw).await;
    let history = chat_history(&mut client, "agent:main:interrupt").await;
    let texts: Vec<String> = history.iter().map(text_of).collect();
    assert_eq!(texts.first().map(String::as_str), Some("Talk slowly"), "{history:#?}");
    assert_eq!(texts.last().map(String::as_str), Some(HELLO), "{history:#?}");
    if history.len() == 4 {
        assert_eq!(status_of(&history[1]), Some("aborted"), "{history:#?}");
        assert_eq!(texts[1], partial, "{history:#?}");
    } else {
        assert_eq!(history.len(), 3, "{history:#?}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn clawgate_chat_says_why_a_reply_failed_and_exits_1() {
    let closed_port = {
        let listener = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
        listener.local_addr().expect("addr").port()
    };
    let gw = gateway_for(&format!("http://127.0.0.1:{closed_port}/v1"), "openai-completions").await;
    let out = clawgate(&gw, &["chat", "--message", "Anyone there?"]).await;
    assert_eq!(out.status.code(), Some(1), "{}", describe(&out));
    assert!(out.stdout.is_empty(), "{}", describe(&out));
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(stderr.starts_with("error: cannot reach provider `fake`"), "{}", describe(&out));
    assert!(stderr.contains("baseUrl"), "{}", describe(&out));
}
