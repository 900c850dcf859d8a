//! Honest `status` and `health` (issue 14 item 3): the real binary with a fake model, a fake
//! Telegram and an unreachable ComfyUI worker, asked over a [`RawClient`] (which checks every
//! frame, the `health` result and the hello snapshot included, against the OpenClaw schema).

use std::time::Duration;

use clawgate_testkit::fake_openai::{FakeOpenAi, Script, Turn};
use clawgate_testkit::fake_telegram::FakeTelegram;
use clawgate_testkit::{RawClient, TestGateway, wait_until};
use serde_json::{Value, json};

const BIN: &str = env!("CARGO_BIN_EXE_clawgate");

/// Bound on waiting for a fact (fakes answer in milliseconds; CI machines are slow).
const WAIT: Duration = Duration::from_secs(30);

fn templates_dir() -> String {
    format!("{}/../../templates", env!("CARGO_MANIFEST_DIR"))
}

/// A loopback URL nothing listens on (the port was just released).
fn dead_url() -> String {
    let listener = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
    let port = listener.local_addr().expect("addr").port();
    drop(listener);
    format!("http://127.0.0.1:{port}")
}

async fn connect(gw: &TestGateway) -> RawClient {
    let mut c = RawClient::connect(&gw.ws_url()).await.expect("ws open");
    c.handshake(gw.token(), &json!({})).await.unwrap_or_else(|e| panic!("handshake: {e:#}"));
    c
}

async fn call(c: &mut RawClient, method: &str, params: Value) -> Value {
    let res = c.request(method, Some(params)).await.unwrap_or_else(|e| panic!("{method}: {e:#}"));
    assert_eq!(res["ok"], true, "{method}: {res}");
    res["payload"].clone()
}

/// One call on a fresh connection (for probes polled by `wait_until`).
async fn ask(gw: &TestGateway, method: &str, params: Value) -> Value {
    call(&mut connect(gw).await, method, params).await
}

#[tokio::test]
async fn status_and_health_report_sessions_runs_channels_agents_and_workers() {
    // The first turn hangs, so a run is in flight while we look.
    let model = FakeOpenAi::start(Script::new().turn(Turn::hang()).otherwise(Turn::text(["ok"]))).await.expect("model");
    let tg = FakeTelegram::start().await.expect("fake telegram");
    let config = json!({
        "models": {"providers": {"fake": {"baseUrl": model.base_url(), "apiKey": "k", "api": "openai-completions",
                                          "models": [{"id": "m"}]}}},
        "agents": {"defaults": {"model": {"primary": "fake/m"}, "heartbeat": {"every": "2h", "target": "none"}}},
        "channels": {"telegram": {"botToken": tg.token(), "apiRoot": tg.api_root(), "pollTimeoutSeconds": 1,
                                  "dmPolicy": "open"}},
        "comfy": {"templatesDir": templates_dir(), "workers": [{"name": "w0", "url": dead_url()}]},
    });
    let gw = TestGateway::builder(BIN).config(config.to_string()).start().await.expect("starting clawgate");
    let mut c = connect(&gw).await;

    let sent = call(&mut c, "chat.send", json!({"sessionKey": "main", "message": "hi", "idempotencyKey": "r1"})).await;
    assert_eq!(sent["status"], "started", "{sent}");
    model.wait_for_requests(1, WAIT).await.expect("the turn reached the model");

    let status = call(&mut c, "status", json!({})).await;
    assert_eq!(status["runs"]["inFlight"], 1, "the hanging turn is in flight: {status}");
    assert!(status["sessions"]["count"].as_u64().is_some_and(|n| n >= 1), "{status}");
    assert_eq!(status["sessions"]["recent"][0]["key"], "agent:main:main", "{status}");
    assert_eq!(status["store"], json!({"ok": true}), "{status}");
    assert_eq!(status["heartbeatSeconds"], 7200, "{status}");
    assert_eq!(status["channelOrder"], json!(["telegram"]), "{status}");

    // The Telegram account connects (the fake answers getUpdates); health and status say so.
    let health = wait_until(WAIT, "health shows telegram connected", || async {
        let h = ask(&gw, "health", json!({"probe": true})).await;
        (h["channels"]["telegram"]["accounts"]["default"]["connected"] == true).then_some(h)
    })
    .await
    .unwrap();
    assert_eq!(health["channelOrder"], json!(["telegram"]), "{health}");
    assert!(health["channelLabels"]["telegram"].is_string(), "{health}");
    assert_eq!(health["channels"]["telegram"]["running"], true, "{health}");
    assert_eq!(health["heartbeatSeconds"], 7200, "{health}");
    assert_eq!(health["defaultAgentId"], "main", "{health}");
    let main = &health["agents"][0];
    assert_eq!(main["agentId"], "main", "{health}");
    assert_eq!(main["isDefault"], true, "{health}");
    assert_eq!(
        (&main["heartbeat"]["enabled"], &main["heartbeat"]["every"], &main["heartbeat"]["everyMs"]),
        (&json!(true), &json!("2h"), &json!(7_200_000)),
        "{health}"
    );
    assert!(main["sessions"]["count"].as_u64().is_some_and(|n| n >= 1), "{health}");
    assert_eq!(main["sessions"]["recent"][0]["key"], "agent:main:main", "{health}");

    // The unreachable ComfyUI worker is reported offline with the probe's error.
    let status = wait_until(WAIT, "status shows the comfy worker's probe error", || async {
        let s = ask(&gw, "status", json!({})).await;
        s["workerPools"]["comfy"][0]["lastError"].is_string().then_some(s)
    })
    .await
    .unwrap();
    let worker = &status["workerPools"]["comfy"][0];
    assert_eq!((&worker["name"], &worker["healthy"]), (&json!("w0"), &json!(false)), "{status}");
    assert_eq!(status["channels"]["telegram"]["connected"], true, "{status}");

    // Once the run ends, nothing is in flight.
    call(&mut c, "chat.abort", json!({"sessionKey": "main", "runId": "r1"})).await;
    wait_until(WAIT, "no run in flight", || async {
        (ask(&gw, "status", json!({})).await["runs"]["inFlight"] == 0).then_some(())
    })
    .await
    .unwrap();
}

/// Waits for the next `heartbeat` event on this connection; returns its payload.
async fn heartbeat_event(c: &mut RawClient) -> Value {
    c.recv_event("heartbeat", WAIT).await.unwrap_or_else(|e| panic!("a heartbeat event: {e:#}"))["payload"].clone()
}

#[tokio::test]
async fn a_one_second_heartbeat_runs_turns_is_reported_and_can_be_paused_and_woken() {
    let model = FakeOpenAi::start(Script::new().otherwise(Turn::text(["NO_REPLY"]))).await.expect("model");
    let config = json!({
        "models": {"providers": {"fake": {"baseUrl": model.base_url(), "apiKey": "k", "api": "openai-completions",
                                          "models": [{"id": "m"}]}}},
        "agents": {"defaults": {"model": {"primary": "fake/m"}, "heartbeat": {"every": "1s"}}},
        "hooks": {"enabled": true, "token": "hooksecret"},
    });
    let gw = TestGateway::builder(BIN).config(config.to_string()).start().await.expect("starting clawgate");
    let mut c = connect(&gw).await;
    // A client without scopes hears heartbeats too, without the reply's text.
    let mut bare = RawClient::connect(&gw.ws_url()).await.expect("ws open");
    bare.handshake(gw.token(), &json!({"scopes": []})).await.expect("handshake");

    let beat = heartbeat_event(&mut c).await;
    assert_eq!(beat["status"], "ok-token", "NO_REPLY is an acknowledgement: {beat}");
    assert!(beat["ts"].is_i64() && beat["durationMs"].is_u64(), "{beat}");
    let heard = heartbeat_event(&mut bare).await;
    assert!(heard.get("message").is_none() && heard["status"].is_string(), "{heard}");
    let sent = model.requests().first().expect("the heartbeat reached the model").body.to_string();
    assert!(sent.contains("reply NO_REPLY"), "the turn carries the heartbeat prompt: {sent}");

    let last = call(&mut c, "last-heartbeat", json!({})).await;
    assert_eq!(last["status"], "ok-token", "{last}");
    let status = call(&mut c, "status", json!({})).await;
    assert_eq!(status["heartbeatSeconds"], 1, "{status}");
    assert_eq!(status["heartbeat"]["status"], "ok-token", "{status}");
    let history = call(&mut c, "chat.history", json!({"sessionKey": "main", "limit": 10})).await;
    assert!(history["messages"].to_string().contains("NO_REPLY"), "the beat ran in the main session: {history}");

    // Paused, the interval stops; a wake with mode now still starts a turn that reads its text.
    let off = call(&mut c, "set-heartbeats", json!({"enabled": false})).await;
    assert_eq!(off, json!({"ok": true, "enabled": false}));
    let before = model.requests().len();
    let res = reqwest::Client::new()
        .post(format!("{}/hooks/wake", gw.http_url()))
        .bearer_auth("hooksecret")
        .json(&json!({"text": "the backup failed", "mode": "now"}))
        .send()
        .await
        .expect("POST /hooks/wake");
    assert_eq!(res.status(), 200);
    assert_eq!(res.json::<Value>().await.expect("json"), json!({"ok": true, "mode": "now", "eventOutcome": "queued"}));
    // (A beat that had already started when the pause came may land first: look past it.)
    let reached = |text: &'static str| {
        let model = &model;
        async move {
            wait_until(WAIT, format_args!("a turn carrying {text:?} reached the model"), || async {
                model.requests().iter().skip(before).any(|r| r.body.to_string().contains(text)).then_some(())
            })
            .await
            .unwrap()
        }
    };
    reached("the backup failed").await;
    // Over WS too.
    let res = call(&mut c, "wake", json!({"mode": "now", "text": "disk at 95%"})).await;
    assert_eq!(res, json!({"ok": true, "mode": "now", "eventOutcome": "queued"}));
    reached("disk at 95%").await;
    let paused_count = model.requests().len();
    let on = call(&mut c, "set-heartbeats", json!({"enabled": true})).await;
    assert_eq!(on, json!({"ok": true, "enabled": true}));
    model.wait_for_requests(paused_count + 1, WAIT).await.expect("resumed, the interval beats again");
}

/// `hello-ok.snapshot.sessionDefaults` names the configured default agent: clients (the SDK, the
/// UIs) build full session keys from it.
#[tokio::test]
async fn hello_ok_session_defaults_name_the_configured_default_agent() {
    let config = json!({"agents": {"default": "writer", "list": [{"id": "writer"}]}}).to_string();
    let gw = TestGateway::builder(BIN).config(config).start().await.expect("starting clawgate");
    let mut client = RawClient::connect(&gw.ws_url()).await.expect("websocket");
    let hello = client.handshake(gw.token(), &json!({})).await.expect("handshake");
    assert_eq!(
        hello["snapshot"]["sessionDefaults"],
        json!({"defaultAgentId": "writer", "mainKey": "main", "mainSessionKey": "agent:writer:main"}),
        "{hello}"
    );
}

/// A `health` answer without the refresh time (`ts`, `durationMs`): the gateway's own periodic
/// refresh may land between two calls.
fn without_time(mut health: Value) -> Value {
    if let Some(map) = health.as_object_mut() {
        map.remove("ts");
        map.remove("durationMs");
    }
    health
}

/// A plain `health` is answered from the latest snapshot's cached encoding: it is the snapshot a
/// `probe` just took (as a tree, equal to the probe's answer), and the next refresh replaces it.
#[tokio::test]
async fn a_plain_health_answers_the_latest_refresh_and_follows_the_next_one() {
    let gw = TestGateway::builder(BIN).start().await.expect("starting clawgate");
    let mut c = connect(&gw).await;

    let probed = without_time(call(&mut c, "health", json!({"probe": true})).await);
    assert!(probed["sessions"]["path"].as_str().is_some_and(|p| p.ends_with("clawgate.db")), "{probed}");
    for params in [json!({}), json!({"probe": false}), json!({"unknown": 1})] {
        assert_eq!(without_time(call(&mut c, "health", params.clone()).await), probed, "health {params}");
    }

    // A new session (its run fails: no model is set up) shows up in the next refresh, and plain
    // calls follow it.
    let before = probed["sessions"]["count"].as_u64().expect("a session count");
    call(&mut c, "chat.send", json!({"sessionKey": "cache-check", "message": "hi", "idempotencyKey": "c-1"})).await;
    let probed = without_time(call(&mut c, "health", json!({"probe": true})).await);
    assert_eq!(probed["sessions"]["count"].as_u64(), Some(before + 1), "{probed}");
    assert!(probed.to_string().contains("agent:main:cache-check"), "{probed}");
    assert_eq!(without_time(call(&mut c, "health", json!({})).await), probed);
}
