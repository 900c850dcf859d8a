//! Heartbeat delivery over the real binary (issue 14, item 4): a beat's reply goes to its target
//! chat on a [`FakeTelegram`] through the durable outbox, an acknowledgement sends nothing, and
//! `last-heartbeat` survives a restart. Beats are started with `wake {mode: "now"}` (the interval
//! is a day), so no test waits on the clock; the schedule itself is tested on tokio's paused clock
//! in `clawgate-core/tests/heartbeat.rs`.

use std::time::Duration;

use clawgate_testkit::fake_openai::{FakeOpenAi, Script, Turn};
use clawgate_testkit::fake_telegram::FakeTelegram;
use clawgate_testkit::{RawClient, TestGateway};
use serde_json::{Value, json};

const BIN: &str = env!("CARGO_BIN_EXE_clawgate");
const WAIT: Duration = Duration::from_secs(30);

async fn gateway(model: &FakeOpenAi, tg: &FakeTelegram, heartbeat: Value) -> TestGateway {
    let config = json!({
        "models": {"providers": {"fake": {"baseUrl": model.base_url(), "apiKey": "k", "api": "openai-completions",
                                          "models": [{"id": "m"}]}}},
        "agents": {"defaults": {"model": {"primary": "fake/m"}, "heartbeat": heartbeat}},
        "channels": {"telegram": {"botToken": tg.token(), "apiRoot": tg.api_root(), "pollTimeoutSeconds": 1,
                                  "dmPolicy": "open"}},
    });
    TestGateway::builder(BIN).config(config.to_string()).start().await.expect("starting clawgate")
}

async fn connect(gw: &TestGateway) -> RawClient {
    let mut c = RawClient::connect(&gw.ws_url()).await.expect("ws");
    c.handshake(gw.token(), &json!({})).await.expect("handshake");
    c
}

async fn call(c: &mut RawClient, method: &str, params: Value) -> Value {
    let res = c.request(method, Some(params)).await.unwrap_or_else(|e| panic!("{method}: {e:#}"));
    assert_eq!(res["ok"], true, "{method}: {res}");
    res["payload"].clone()
}

/// `wake {mode: "now"}`, then the `heartbeat` event of that beat.
async fn beat_now(c: &mut RawClient) -> Value {
    call(c, "wake", json!({"mode": "now", "text": "check in"})).await;
    c.recv_event("heartbeat", WAIT).await.unwrap_or_else(|e| panic!("a heartbeat event: {e:#}"))["payload"].clone()
}

/// The texts the bot sent to `chat`, in order.
fn texts_to(tg: &FakeTelegram, chat: i64) -> Vec<String> {
    tg.calls("sendMessage")
        .into_iter()
        .filter(|c| c.status == 200 && c.param_i64("chat_id") == Some(chat))
        .filter_map(|c| c.param_str("text"))
        .collect()
}

async fn wait_text(tg: &FakeTelegram, chat: i64, text: &'static str) {
    tg.wait_for_sent(
        move |c| {
            c.is("sendMessage")
                && c.status == 200
                && c.param_i64("chat_id") == Some(chat)
                && c.param_str("text").as_deref() == Some(text)
        },
        WAIT,
    )
    .await
    .unwrap_or_else(|e| panic!("no {text:?} to chat {chat}: {e:#}"));
}

#[tokio::test]
async fn an_alert_goes_to_the_chat_the_agent_last_talked_in_and_an_ok_sends_nothing() {
    let script = Script::new()
        .turn(Turn::text(["hi there"]))
        .turn(Turn::text(["HEARTBEAT_OK"]))
        .turn(Turn::text(["The nightly backup failed twice."]));
    let model = FakeOpenAi::start(script).await.expect("fake model");
    let tg = FakeTelegram::start().await.expect("fake telegram");
    let gw = gateway(&model, &tg, json!({"every": "24h", "target": "last"})).await;
    let mut c = connect(&gw).await;

    let before = beat_now(&mut c).await;
    assert_eq!((&before["status"], &before["reason"]), (&json!("skipped"), &json!("no-route")), "{before}");
    assert_eq!(model.requests().len(), 0, "no chat to tell yet: the model is not asked");

    tg.push_private_message(42, "alice", "hello");
    wait_text(&tg, 42, "hi there").await;

    let ok = beat_now(&mut c).await;
    assert_eq!(ok["status"], "ok-token", "{ok}");
    let alert = beat_now(&mut c).await;
    assert_eq!(
        (&alert["status"], &alert["channel"], &alert["to"]),
        (&json!("sent"), &json!("telegram"), &json!("42")),
        "{alert}"
    );
    assert_eq!(alert["message"], "The nightly backup failed twice.", "{alert}");
    wait_text(&tg, 42, "The nightly backup failed twice.").await;
    // One account's outbox sends in order: had the OK beat queued anything, it would be here.
    assert_eq!(texts_to(&tg, 42), ["hi there", "The nightly backup failed twice."]);
}

#[tokio::test]
async fn an_alert_goes_to_an_explicit_chat_and_last_heartbeat_survives_a_restart() {
    let model = FakeOpenAi::start(Script::new().otherwise(Turn::text(["Disk at 95%."]))).await.expect("fake model");
    let tg = FakeTelegram::start().await.expect("fake telegram");
    let mut gw = gateway(&model, &tg, json!({"every": "24h", "target": "telegram", "to": "777"})).await;
    let mut c = connect(&gw).await;

    let sent = beat_now(&mut c).await;
    assert_eq!((&sent["status"], &sent["to"]), (&json!("sent"), &json!("777")), "{sent}");
    wait_text(&tg, 777, "Disk at 95%.").await;
    assert_eq!(call(&mut c, "last-heartbeat", json!({})).await, sent);
    drop(c);

    gw.restart().await.expect("restart");
    let mut c = connect(&gw).await;
    assert_eq!(call(&mut c, "last-heartbeat", json!({})).await, sent, "the same event after the restart");
    let status = call(&mut c, "status", json!({})).await;
    assert_eq!(status["heartbeat"]["ts"], sent["ts"], "{status}");
}
