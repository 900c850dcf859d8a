//! Two gateway processes on one PostgreSQL database (issue 16, item 2): events about a session
//! reach clients on whichever gateway they are connected to. A turn sent through gateway B
//! streams to a client on gateway A exactly as to a client on B (every delta and the final, in
//! order) and A's `chat.history` shows it; a client on A scoped to one session hears nothing of
//! another; and when the listening connections are killed mid-stream, the gateways listen again
//! and catch up from the table, losing nothing.
//!
//! Real binaries, the fake OpenAI-compatible model, a real PostgreSQL (`TestPostgres`). Skipped
//! with the reason printed when PostgreSQL is not installed, unless `CLAWGATE_REQUIRE_PEERS` is
//! set (as `scripts/test.sh` does).

use std::time::Duration;

use clawgate_testkit::fake_openai::{FakeOpenAi, HELLO_PARTS, Script, Turn};
use clawgate_testkit::{RawClient, TestGateway, TestPostgres};
use serde_json::{Value, json};

const BIN: &str = env!("CARGO_BIN_EXE_clawgate");
const WAIT: Duration = Duration::from_secs(30);
/// The `application_name` of each gateway's listening connection (`clawgate_store`).
const LISTENER_NAME: &str = "clawgate-events";

/// Two gateways on one fresh database and one fake model, or `None` when the test is skipped.
struct Cluster {
    a: TestGateway,
    b: TestGateway,
    url: String,
    _model: FakeOpenAi,
}

async fn cluster(script: Script) -> Option<Cluster> {
    let url = TestPostgres::shared()?.create_database().expect("create a database");
    let model = FakeOpenAi::start(script).await.expect("fake model");
    let config = json!({
        "models": {"providers": {"fake": {
            "baseUrl": model.base_url(), "apiKey": "fake-key", "api": "openai-completions",
            "models": [{"id": "fake-model", "name": "Fake Model"}],
        }}},
        "agents": {"defaults": {"model": {"primary": "fake/fake-model"}}},
        "storage": {"url": url},
    })
    .to_string();
    let a = TestGateway::builder(BIN).config(config.clone()).start().await.expect("gateway a");
    let b = TestGateway::builder(BIN).config(config).start().await.expect("gateway b");
    let cluster = Cluster { a, b, url, _model: model };
    // Each gateway listens before it reads where to start, and logs it: from then on nothing
    // the other writes is missed.
    for gw in [&cluster.a, &cluster.b] {
        clawgate_testkit::wait::wait_until(WAIT, "the event relay listening", || async {
            gw.read_log().contains("event relay listening").then_some(())
        })
        .await
        .unwrap_or_else(|e| panic!("{e:#}\n{}", gw.describe_output()));
    }
    Some(cluster)
}

async fn connect(gw: &TestGateway, overrides: Value) -> RawClient {
    let mut client = RawClient::connect(&gw.ws_url()).await.unwrap_or_else(|e| panic!("opening a websocket: {e:#}"));
    client.handshake(gw.token(), &overrides).await.unwrap_or_else(|e| panic!("handshake: {e:#}"));
    client
}

async fn send(client: &mut RawClient, session: &str, message: &str, run_id: &str) {
    let ack = client
        .request("chat.send", Some(json!({"sessionKey": session, "message": message, "idempotencyKey": run_id})))
        .await
        .unwrap_or_else(|e| panic!("chat.send: {e:#}"));
    assert_eq!(ack["ok"], true, "{ack}");
}

/// The `chat` payloads of `run_id` a client hears, up to and including its final.
async fn chat_until_final(client: &mut RawClient, run_id: &str, gw: &TestGateway) -> Vec<Value> {
    let mut seen = Vec::new();
    loop {
        let ev = client
            .recv_event("chat", WAIT)
            .await
            .unwrap_or_else(|e| panic!("waiting for {run_id}: {e:#}; so far {seen:?}\n{}", gw.describe_output()));
        let payload = ev["payload"].clone();
        if payload["runId"] != run_id {
            continue;
        }
        let done = payload["state"] == "final";
        seen.push(payload);
        if done {
            return seen;
        }
    }
}

fn delta_text(chat: &[Value]) -> String {
    chat.iter().filter(|c| c["state"] == "delta").filter_map(|c| c["deltaText"].as_str()).collect()
}

fn hello() -> String {
    HELLO_PARTS.concat()
}

#[tokio::test]
async fn a_client_on_one_gateway_sees_the_streamed_reply_of_a_turn_sent_through_another() {
    let Some(c) = cluster(Script::default()).await else { return };
    let mut on_a = connect(&c.a, json!({})).await;
    let mut on_b = connect(&c.b, json!({})).await;
    let mut sender = connect(&c.b, json!({})).await;
    send(&mut sender, "agent:main:shared", "Say hello", "turn-1").await;

    let heard_on_b = chat_until_final(&mut on_b, "turn-1", &c.b).await;
    let heard_on_a = chat_until_final(&mut on_a, "turn-1", &c.a).await;
    assert_eq!(delta_text(&heard_on_b), hello(), "{heard_on_b:?}");
    assert!(heard_on_b.iter().filter(|p| p["state"] == "delta").count() > 1, "streamed in several deltas");
    assert_eq!(heard_on_a, heard_on_b, "A hears the same deltas and final, in the same order, as B");

    let history = on_a
        .request("chat.history", Some(json!({"sessionKey": "agent:main:shared", "limit": 10})))
        .await
        .expect("chat.history on A");
    assert_eq!(history["ok"], true, "{history}");
    let roles: Vec<&str> = history["payload"]["messages"]
        .as_array()
        .expect("messages")
        .iter()
        .filter_map(|m| m["role"].as_str())
        .collect();
    assert_eq!(roles, ["user", "assistant"], "{history}");
}

#[tokio::test]
async fn a_session_scoped_client_on_another_gateway_hears_only_its_session() {
    let Some(c) = cluster(Script::default()).await else { return };
    let mut plain_on_a = connect(&c.a, json!({})).await;
    let mut scoped_on_a = connect(&c.a, json!({"caps": ["session-scoped-events"]})).await;
    let sub = scoped_on_a.request("sessions.messages.subscribe", Some(json!({"key": "agent:main:mine"}))).await;
    assert_eq!(sub.expect("subscribe")["ok"], true);
    let mut sender = connect(&c.b, json!({})).await;

    // The other session's turn first, relayed in full to A (its plain client hears the final)
    // before the subscribed session's turn starts: had the scoped client been sent any of it,
    // it would be queued before the second turn's events.
    send(&mut sender, "agent:main:other", "Say hello", "other-1").await;
    chat_until_final(&mut plain_on_a, "other-1", &c.a).await;
    send(&mut sender, "agent:main:mine", "Say hello", "mine-1").await;
    let mut heard = Vec::new();
    loop {
        let ev = scoped_on_a.recv_event("chat", WAIT).await.unwrap_or_else(|e| panic!("{e:#}; so far {heard:?}"));
        let payload = ev["payload"].clone();
        assert_eq!(payload["sessionKey"], "agent:main:mine", "a scoped client heard another session: {payload}");
        let done = payload["state"] == "final";
        heard.push(payload);
        if done {
            break;
        }
    }
    assert_eq!(delta_text(&heard), hello());
}

#[tokio::test]
async fn killed_listening_connections_reconnect_and_catch_up_without_losing_an_event() {
    // Slow chunks, so the connections can be killed while the reply streams.
    let parts: Vec<String> = (0..12).map(|i| format!("part{i} ")).collect();
    let script = Script::always(Turn::text(parts.clone()).chunk_delay(Duration::from_millis(150)));
    let Some(c) = cluster(script).await else { return };
    let admin = sqlx::PgPool::connect(&c.url).await.expect("connect as admin");
    let mut on_a = connect(&c.a, json!({})).await;
    let mut on_b = connect(&c.b, json!({})).await;
    let mut sender = connect(&c.b, json!({})).await;
    send(&mut sender, "agent:main:kill", "Stream slowly", "kill-1").await;

    // On every delta B's own client hears, kill both gateways' listening connections: A must
    // reconnect again and again, and read what B wrote meanwhile from the table.
    let mut heard_on_b = Vec::new();
    let mut killed = 0;
    loop {
        let ev = on_b.recv_event("chat", WAIT).await.unwrap_or_else(|e| panic!("{e:#}\n{}", c.b.describe_output()));
        let payload = ev["payload"].clone();
        let done = payload["state"] == "final";
        heard_on_b.push(payload);
        if done {
            break;
        }
        let pids: Vec<bool> = sqlx::query_scalar(
            "SELECT pg_terminate_backend(pid) FROM pg_stat_activity \
             WHERE datname = current_database() AND application_name = $1",
        )
        .bind(LISTENER_NAME)
        .fetch_all(&admin)
        .await
        .expect("terminate the listeners");
        killed += pids.iter().filter(|k| **k).count();
    }
    assert!(killed >= 2, "listening connections were killed mid-stream ({killed})");
    assert_eq!(delta_text(&heard_on_b), parts.concat());

    let heard_on_a = chat_until_final(&mut on_a, "kill-1", &c.a).await;
    assert_eq!(heard_on_a, heard_on_b, "A lost or reordered nothing across the reconnects");
    let log = c.a.read_log();
    assert!(log.contains("listening connection was lost") || log.contains("listening failed"), "A reconnected");
    admin.close().await;
}
