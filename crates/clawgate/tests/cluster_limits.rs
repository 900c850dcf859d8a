//! Two gateways on one PostgreSQL database share what a client carries from one to the other
//! (issue 16, item 2: "pairing, device tokens, idempotency keys and rate-limit counters are
//! shared, so a client may reconnect to any gateway"):
//!
//! - an access token's `--rate` holds across the gateways: used alternately on both, its 11th
//!   request of a `10/min` budget is refused whichever gateway gets it, in the same shape;
//! - an `idempotencyKey` used on one gateway is a repeat on the other (one run, one model call);
//! - a device that asks to pair on one gateway is approved through the other, and its device
//!   token then admits it on both;
//! - an access token revoked through one gateway is cut off on the other too.
//!
//! Skipped with the reason printed when PostgreSQL is not installed, unless
//! `CLAWGATE_REQUIRE_PEERS` is set (as `scripts/test.sh` does).

use std::time::Duration;

use clawgate_client::{Client, ClientError, ClientOptions, DeviceIdentity};
use clawgate_testkit::fake_openai::{FakeOpenAi, Script, Turn};
use clawgate_testkit::{RawClient, TestGateway, TestPostgres, wait_until};
use serde_json::{Value, json};

const BIN: &str = env!("CARGO_BIN_EXE_clawgate");
const WAIT: Duration = Duration::from_secs(60);

fn database_url() -> Option<String> {
    let server = TestPostgres::shared()?;
    Some(server.create_database().expect("create a database"))
}

/// Both gateways' config: the shared database and a fake model.
fn config(url: &str, model: &FakeOpenAi) -> Value {
    json!({
        "models": {"providers": {"fake": {"baseUrl": model.base_url(), "apiKey": "k", "api": "openai-completions",
                                          "models": [{"id": "m"}]}}},
        "agents": {"defaults": {"model": {"primary": "fake/m"}}},
        "storage": {"url": url},
        "cluster": {"leaseTtlMs": 1500, "heartbeatMs": 300},
    })
}

/// Gateways `a` and `b` on one fresh database, with the same gateway token.
async fn two_gateways(script: Script, token: &str) -> Option<(FakeOpenAi, TestGateway, TestGateway)> {
    let url = database_url()?;
    let model = FakeOpenAi::start(script).await.expect("the fake model");
    let cfg = config(&url, &model).to_string();
    let start = || TestGateway::builder(BIN).config(cfg.clone()).token(token).start();
    let a = start().await.expect("gateway a");
    let b = start().await.expect("gateway b");
    Some((model, a, b))
}

/// An operator connection with the gateway token.
async fn operator(gw: &TestGateway) -> RawClient {
    let mut c = RawClient::connect(&gw.ws_url()).await.expect("websocket");
    c.handshake(gw.token(), &json!({})).await.expect("operator handshake");
    c.set_validation(false);
    c
}

async fn request(c: &mut RawClient, method: &str, params: Value) -> Value {
    c.request(method, Some(params)).await.unwrap_or_else(|e| panic!("{method}: {e:#}"))
}

fn ok_payload(res: &Value) -> &Value {
    assert_eq!(res["ok"], true, "expected an ok response: {res}");
    &res["payload"]
}

/// A backend's connection with access token `token`.
async fn backend(gw: &TestGateway, token: &str) -> RawClient {
    let mut c = RawClient::connect(&gw.ws_url()).await.expect("websocket");
    let overrides = json!({
        "client": {"id": "gateway-client", "version": "0.0.1", "platform": "linux", "mode": "backend"},
        "scopes": ["operator.read"],
    });
    let res = c.try_handshake(Some(token), &overrides).await.expect("connect answered");
    assert_eq!(res["ok"], true, "the token is admitted: {res}");
    c.set_validation(false);
    c
}

/// A refusal's error without the one number that depends on when it was asked (the wait, in
/// `retryAfterMs` and in the message).
fn shape(res: &Value) -> Value {
    assert_eq!(res["ok"], false, "expected a refusal: {res}");
    let mut e = res["error"].clone();
    let after = e["retryAfterMs"].as_u64().expect("retryAfterMs");
    assert!(after > 0 && after <= 60_000, "{res}");
    let message = e["message"].as_str().expect("message").replace(&format!("retry in {after} ms"), "retry in N ms");
    e["message"] = json!(message);
    e["retryAfterMs"] = json!("N");
    e
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_token_rate_holds_across_gateways_whichever_gets_the_eleventh_request() {
    let Some((_model, a, b)) = two_gateways(Script::always(Turn::hello()), "cluster-limits-token-0123456789").await
    else {
        return;
    };
    let mut admin = operator(&a).await;
    let res =
        request(&mut admin, "tokens.create", json!({"name": "backend", "scopes": ["operator.read"], "rate": "10/min"}))
            .await;
    let token = ok_payload(&res)["token"].as_str().expect("the secret").to_owned();

    // The token's connections on both gateways, made before counting starts (a connect is not
    // a request).
    let (mut on_a, mut on_b) = (backend(&a, &token).await, backend(&b, &token).await);
    for i in 0..10 {
        let c = if i % 2 == 0 { &mut on_a } else { &mut on_b };
        ok_payload(&request(c, "health", json!({})).await);
    }
    // Ten requests, five on each: the eleventh is refused on either gateway, and so is the next.
    let on_a_refused = shape(&request(&mut on_a, "health", json!({})).await);
    let on_b_refused = shape(&request(&mut on_b, "health", json!({})).await);
    assert_eq!(on_a_refused, on_b_refused, "the same refusal from both gateways");
    assert_eq!(
        on_a_refused,
        json!({
            "code": "UNAVAILABLE",
            "message": "rate limit exceeded: token allows 10/1m requests (retry in N ms)",
            "retryable": true,
            "retryAfterMs": "N",
            "details": {"code": "RATE_LIMITED", "limit": "token", "requests": 10, "windowMs": 60_000},
        })
    );
    // The gateway token's connections are not limited by the access token's bucket.
    ok_payload(&request(&mut admin, "health", json!({})).await);
}

/// `chat.send` of `message` with `key` on `session`; the ack's payload.
async fn chat_send(c: &mut RawClient, session: &str, key: &str) -> Value {
    let res =
        request(c, "chat.send", json!({"sessionKey": session, "message": "Say hello", "idempotencyKey": key})).await;
    ok_payload(&res).clone()
}

/// Reads `chat` events until the one that ends run `run_id`.
async fn wait_final(c: &mut RawClient, run_id: &str) -> Value {
    loop {
        let ev = c.recv_event("chat", WAIT).await.expect("a chat event");
        if ev["payload"]["runId"] == run_id && ev["payload"]["state"] == "final" {
            return ev;
        }
    }
}

/// Calls of the fake model made for `text`.
fn model_calls(model: &FakeOpenAi, text: &str) -> usize {
    model.chat_requests().iter().filter(|r| r.body.to_string().contains(text)).count()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_idempotency_key_used_on_one_gateway_is_a_repeat_on_the_other() {
    let slow = Turn::hello().chunk_delay(Duration::from_millis(100));
    let Some((model, a, b)) = two_gateways(Script::always(slow), "cluster-idem-token-0123456789").await else {
        return;
    };
    let (mut on_a, mut on_b) = (operator(&a).await, operator(&b).await);

    // chat.send: started on a; the same key on b while it runs starts nothing.
    let session = "agent:main:cluster-idem";
    assert_eq!(chat_send(&mut on_a, session, "idem-chat-1").await["status"], "started");
    let again = chat_send(&mut on_b, session, "idem-chat-1").await;
    assert_eq!(again["runId"], "idem-chat-1", "{again}");
    assert!(matches!(again["status"].as_str(), Some("in_flight" | "ok")), "repeat on b while a runs: {again}");
    wait_final(&mut on_a, "idem-chat-1").await;
    // After the end b answers `ok` (a repeat racing the run's last write may still see
    // `in_flight`; never `started`).
    let on_b = tokio::sync::Mutex::new(&mut on_b);
    wait_until(WAIT, "b answers the finished run's key with ok", || async {
        let after = chat_send(*on_b.lock().await, session, "idem-chat-1").await;
        if after == json!({"runId": "idem-chat-1", "status": "ok"}) {
            return Some(());
        }
        assert_eq!(after, json!({"runId": "idem-chat-1", "status": "in_flight"}), "repeat on b after the end");
        None
    })
    .await
    .unwrap();
    let on_b = on_b.into_inner();
    let history = ok_payload(&request(on_b, "chat.history", json!({"sessionKey": session})).await).clone();
    let roles: Vec<&str> =
        history["messages"].as_array().expect("messages").iter().filter_map(|m| m["role"].as_str()).collect();
    assert_eq!(roles, ["user", "assistant"], "one exchange, seen from b: {history}");

    // agent: run to its end on a; the same key on b replays a's final answer at once.
    let id = on_a.next_id();
    let params = json!({"message": "agent once", "idempotencyKey": "idem-agent-1", "sessionKey": "cluster-agent"});
    on_a.send_json(&json!({"type": "req", "id": id, "method": "agent", "params": params})).await.unwrap();
    assert_eq!(ok_payload(&on_a.recv_response(&id, WAIT).await.unwrap())["status"], "accepted");
    let final_on_a = ok_payload(&on_a.recv_response(&id, WAIT).await.unwrap()).clone();
    assert_eq!(final_on_a["status"], "ok", "{final_on_a}");
    let repeat_on_b = request(on_b, "agent", params).await;
    assert_eq!(ok_payload(&repeat_on_b), &final_on_a, "b answers as a repeat on a would");

    assert_eq!(model_calls(&model, "Say hello"), 1, "one chat run across both gateways");
    assert_eq!(model_calls(&model, "agent once"), 1, "one agent run across both gateways");
}

fn device_opts(gw: &TestGateway, identity: &DeviceIdentity) -> ClientOptions {
    ClientOptions::new(gw.ws_url())
        .scopes(["operator.read"])
        .device(identity.clone())
        .connect_timeout(Duration::from_secs(10))
        .request_timeout(Duration::from_secs(10))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_device_paired_through_one_gateway_connects_to_both_with_its_token() {
    let Some((_model, a, b)) = two_gateways(Script::always(Turn::hello()), "cluster-pair-token-0123456789").await
    else {
        return;
    };
    // The device asks a (no shared secret: not paired silently).
    let device = DeviceIdentity::generate();
    let pending = match Client::connect(device_opts(&a, &device)).await {
        Ok(_) => panic!("an unpaired device was admitted"),
        Err(ClientError::Handshake { error, .. }) => serde_json::to_value(&*error).unwrap(),
        Err(other) => panic!("expected a refused connect, got {other:?}"),
    };
    assert_eq!(pending["details"]["code"], "PAIRING_REQUIRED", "{pending}");
    let request_id = pending["details"]["requestId"].as_str().expect("a request id").to_owned();

    // An operator on b sees the request and approves it.
    let mut admin = operator(&b).await;
    let listing = ok_payload(&request(&mut admin, "device.pair.list", json!({})).await).clone();
    assert!(listing["pending"].as_array().unwrap().iter().any(|r| r["requestId"] == request_id), "{listing}");
    ok_payload(&request(&mut admin, "device.pair.approve", json!({"requestId": request_id})).await);

    // Paired: its key admits it on b, which hands it a device token …
    let first = Client::connect(device_opts(&b, &device)).await.expect("the paired device connects to b");
    let device_token = first.hello().auth.device_token.clone().expect("a device token");
    first.close().await;
    // … that admits it on both gateways.
    for gw in [&b, &a] {
        let c = Client::connect(device_opts(gw, &device).device_token(device_token.clone()))
            .await
            .expect("the device token is valid on every gateway");
        assert_eq!(c.hello().auth.method, "device-token");
        assert!(c.request("status", json!({})).await.is_ok());
        c.close().await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_token_revoked_through_one_gateway_is_cut_off_on_the_other() {
    let Some((_model, a, b)) = two_gateways(Script::always(Turn::hello()), "cluster-revoke-token-0123456789").await
    else {
        return;
    };
    let mut admin = operator(&a).await;
    let res = request(&mut admin, "tokens.create", json!({"name": "backend", "scopes": ["operator.read"]})).await;
    let token = ok_payload(&res)["token"].as_str().expect("the secret").to_owned();
    let mut on_b = backend(&b, &token).await;
    ok_payload(&request(&mut on_b, "health", json!({})).await);

    ok_payload(&request(&mut admin, "tokens.revoke", json!({"token": "backend"})).await);
    // b learns of it on its next cluster heartbeat and closes the connection as a would.
    let (code, reason) = on_b.expect_close(WAIT).await.expect("b closes the revoked token's connection");
    assert_eq!((code, reason.as_str()), (1008, "access token revoked"));
    let mut again = RawClient::connect(&b.ws_url()).await.expect("websocket");
    let res = again.try_handshake(Some(&token), &json!({})).await.expect("connect answered");
    assert_eq!(res["error"]["details"]["code"], "AUTH_TOKEN_MISMATCH", "a new connect on b is refused: {res}");
}
