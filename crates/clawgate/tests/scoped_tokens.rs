//! Scoped access tokens and request rate limits (issue 15, item 3), end to end: the real
//! binary, raw protocol clients and a fake model.
//!
//! A `compose:*` token is what a document editor's backend would hold: it may run turns and
//! read chats of `compose:…` sessions and nothing else — no other session's history, listing,
//! subscription or events, no `config.get` — within its request rate; revoking it closes its
//! connection and refuses the next connect.

use std::time::Duration;

use clawgate_testkit::fake_openai::{FakeOpenAi, Script, Turn};
use clawgate_testkit::{RawClient, TestGateway};
use serde_json::{Value, json};

const BIN: &str = env!("CARGO_BIN_EXE_clawgate");
/// Bound on one turn against the fake model (milliseconds on a quiet machine).
const TURN_WAIT: Duration = Duration::from_secs(30);
const CLI_TIMEOUT: Duration = Duration::from_secs(30);

/// The session the scoped token may use, and one it may not.
const COMPOSE: &str = "compose:doc:1:ann";
const MAIN: &str = "agent:main:main";

async fn start(extra: Value) -> (FakeOpenAi, TestGateway) {
    let fake = FakeOpenAi::start(Script::always(Turn::hello())).await.expect("starting the fake model");
    let mut config = json!({
        "models": {"providers": {"fake": {
            "baseUrl": fake.base_url(), "apiKey": "fake-key", "api": "openai-completions",
            "models": [{"id": "fake-model", "name": "Fake Model"}],
        }}},
        "agents": {"defaults": {"model": {"primary": "fake/fake-model"}}},
    });
    clawgate_testkit::raw::merge_patch(&mut config, &extra);
    let gw = TestGateway::builder(BIN).config(config.to_string()).start().await.expect("starting clawgate");
    (fake, gw)
}

/// An operator connection with the gateway token (read, write, admin).
async fn admin(gw: &TestGateway) -> RawClient {
    let mut c = RawClient::connect(&gw.ws_url()).await.expect("websocket");
    c.handshake(gw.token(), &json!({})).await.expect("admin handshake");
    c
}

/// A backend's connection with an access token, asking for every scope it might want.
async fn try_backend(gw: &TestGateway, token: &str) -> (RawClient, Value) {
    let mut c = RawClient::connect(&gw.ws_url()).await.expect("websocket");
    let overrides = json!({
        "client": {"id": "gateway-client", "version": "0.0.1", "platform": "linux", "mode": "backend"},
        "scopes": ["operator.read", "operator.write", "operator.admin"],
    });
    let res = c.try_handshake(Some(token), &overrides).await.expect("connect answered");
    (c, res)
}

async fn backend(gw: &TestGateway, token: &str) -> (RawClient, Value) {
    let (c, res) = try_backend(gw, token).await;
    assert_eq!(res["ok"], true, "the token is admitted: {res}");
    let hello = res["payload"].clone();
    (c, hello)
}

async fn request(c: &mut RawClient, method: &str, params: Value) -> Value {
    c.request(method, Some(params)).await.unwrap_or_else(|e| panic!("{method}: {e:#}"))
}

fn ok_payload(res: &Value) -> &Value {
    assert_eq!(res["ok"], true, "expected an ok response: {res}");
    &res["payload"]
}

/// The error of a refused request, checked to be `code` with `details.code`.
fn refused<'a>(res: &'a Value, code: &str, detail: &str) -> &'a Value {
    assert_eq!(res["ok"], false, "expected a refusal: {res}");
    assert_eq!(res["error"]["code"], code, "{res}");
    assert_eq!(res["error"]["details"]["code"], detail, "{res}");
    &res["error"]
}

async fn create_token(admin: &mut RawClient, params: Value) -> (String, Value) {
    let res = request(admin, "tokens.create", params).await;
    let payload = ok_payload(&res).clone();
    let token = payload["token"].as_str().expect("the secret, once").to_owned();
    assert!(token.starts_with("cgt_"), "{payload}");
    (token, payload)
}

/// The compose backend's token of the issue: turns and chat on `compose:*`, plus listing and
/// subscribing (to show those are narrowed, not just refused).
fn compose_token(rate: Option<&str>) -> Value {
    let mut p = json!({
        "name": "compose",
        "scopes": ["operator.write"],
        "sessions": ["compose:*"],
        "methods": ["agent", "chat.*", "sessions.list", "sessions.subscribe", "sessions.messages.*"],
    });
    if let Some(rate) = rate {
        p["rate"] = json!(rate);
    }
    p
}

/// Runs `agent` on `session` and returns its final answer (after the `accepted` one).
async fn agent_turn(c: &mut RawClient, session: &str, run_id: &str) -> Value {
    let id = c.next_id();
    let frame = json!({"type": "req", "id": id, "method": "agent",
        "params": {"message": "hi", "idempotencyKey": run_id, "sessionKey": session}});
    c.send_json(&frame).await.expect("send agent");
    let accepted = c.recv_response(&id, TURN_WAIT).await.expect("accepted");
    assert_eq!(ok_payload(&accepted)["status"], "accepted", "{accepted}");
    let fin = c.recv_response(&id, TURN_WAIT).await.expect("final");
    ok_payload(&fin).clone()
}

/// Reads `agent`/`chat` events until the `chat` event of `run_id` is final.
async fn wait_final(c: &mut RawClient, run_id: &str) -> Value {
    loop {
        let ev = c.recv_event("chat", TURN_WAIT).await.expect("a chat event");
        if ev["payload"]["runId"] == run_id && ev["payload"]["state"] == "final" {
            return ev;
        }
    }
}

fn events_of(c: &RawClient) -> Vec<Value> {
    c.received().iter().filter(|f| f["type"] == "event").cloned().collect()
}

#[tokio::test]
async fn a_compose_token_reaches_only_compose_sessions_and_never_hears_others() {
    let (_fake, gw) = start(json!({})).await;
    let mut admin = admin(&gw).await;
    // Something to leak: a turn on the main session before the backend connects.
    let before = request(
        &mut admin,
        "chat.send",
        json!({"sessionKey": MAIN, "message": "secret plans", "idempotencyKey": "main-1"}),
    )
    .await;
    ok_payload(&before);
    wait_final(&mut admin, "main-1").await;

    let (token, created) = create_token(&mut admin, compose_token(None)).await;
    assert_eq!(created["name"], "compose");
    let (mut b, hello) = backend(&gw, &token).await;
    assert_eq!(hello["auth"]["scopes"], json!(["operator.read", "operator.write"]), "never more than the token");
    assert_eq!(hello["auth"]["role"], "operator");

    // Other sessions: no history, no subscription, and only its own in listings.
    let res = request(&mut b, "chat.history", json!({"sessionKey": MAIN})).await;
    let e = refused(&res, "FORBIDDEN", "ACCESS_TOKEN_RESTRICTED");
    assert_eq!(e["details"]["reason"], "session", "{res}");
    let res = request(&mut b, "chat.history", json!({"sessionKey": "main"})).await;
    refused(&res, "FORBIDDEN", "ACCESS_TOKEN_RESTRICTED");
    let res = request(&mut b, "sessions.messages.subscribe", json!({"key": MAIN})).await;
    refused(&res, "FORBIDDEN", "ACCESS_TOKEN_RESTRICTED");
    let res = request(&mut b, "agent", json!({"message": "hi", "idempotencyKey": "x"})).await;
    let e = refused(&res, "FORBIDDEN", "ACCESS_TOKEN_RESTRICTED");
    assert_eq!(e["details"]["reason"], "session-required", "the default session is not its: {res}");
    // Methods outside its patterns, whatever their scope.
    let res = request(&mut b, "config.get", json!({})).await;
    let e = refused(&res, "FORBIDDEN", "ACCESS_TOKEN_RESTRICTED");
    assert_eq!(e["message"], "method not allowed by access token \"compose\": config.get");
    let res = request(&mut b, "tokens.list", json!({})).await;
    assert_eq!(res["error"]["code"], "FORBIDDEN", "{res}");
    // Health answers, in its public form (no session keys).
    let res = request(&mut b, "health", json!({})).await;
    assert!(!ok_payload(&res).to_string().contains(MAIN), "{res}");

    // Its own sessions work: a turn, its history, its subscription.
    let fin = agent_turn(&mut b, COMPOSE, "compose-1").await;
    assert_eq!(fin["status"], "ok", "{fin}");
    let res = request(&mut b, "chat.history", json!({"sessionKey": COMPOSE})).await;
    assert!(!ok_payload(&res)["messages"].as_array().expect("messages").is_empty(), "{res}");
    ok_payload(&request(&mut b, "sessions.messages.subscribe", json!({"key": COMPOSE})).await);
    ok_payload(&request(&mut b, "sessions.subscribe", json!({})).await);
    let res = request(&mut b, "sessions.list", json!({})).await;
    let keys: Vec<&str> =
        ok_payload(&res)["sessions"].as_array().expect("sessions").iter().filter_map(|s| s["key"].as_str()).collect();
    assert_eq!(keys, ["agent:main:compose:doc:1:ann"], "{res}");
    assert_eq!(ok_payload(&res)["totalCount"], 1, "the count says nothing of other sessions: {res}");

    // A turn on the main session while the backend listens: the admin sees it end, and the
    // backend's next answer comes after anything queued to it meanwhile.
    ok_payload(
        &request(&mut admin, "chat.send", json!({"sessionKey": MAIN, "message": "more", "idempotencyKey": "main-2"}))
            .await,
    );
    wait_final(&mut admin, "main-2").await;
    ok_payload(&request(&mut b, "health", json!({})).await);

    let events = events_of(&b);
    assert!(
        events.iter().any(|e| e["event"] == "chat" && e["payload"]["runId"] == "compose-1"),
        "it hears its own session's events"
    );
    for e in &events {
        let text = e.to_string();
        assert!(!text.contains(MAIN) && !text.contains("main-2"), "another session's event reached it: {text}");
        assert!(
            ["connect.challenge", "tick", "health", "chat", "agent", "session.message", "sessions.changed"]
                .contains(&e["event"].as_str().unwrap_or("")),
            "{text}"
        );
    }
}

#[tokio::test]
async fn rate_limits_answer_unavailable_with_retry_after() {
    let (_fake, gw) = start(json!({"gateway": {"rateLimit": {"perConnection": {"requests": 20, "per": "1m"}}}})).await;
    let mut admin = admin(&gw).await;
    let (token, created) =
        create_token(&mut admin, json!({"name": "tight", "scopes": ["operator.read"], "rate": "3/min"})).await;
    assert_eq!(created["rate"], "3/1m");

    // The token's own limit, shared by its connections.
    let (mut b1, _) = backend(&gw, &token).await;
    let (mut b2, _) = backend(&gw, &token).await;
    ok_payload(&request(&mut b1, "health", json!({})).await);
    ok_payload(&request(&mut b2, "health", json!({})).await);
    ok_payload(&request(&mut b1, "health", json!({})).await);
    let res = request(&mut b2, "health", json!({})).await;
    let e = refused(&res, "UNAVAILABLE", "RATE_LIMITED");
    assert_eq!((e["retryable"].clone(), e["details"]["limit"].clone()), (json!(true), json!("token")), "{res}");
    let after = e["retryAfterMs"].as_u64().expect("retryAfterMs");
    assert!(after > 0 && after <= 60_000, "{res}");

    // The per-connection limit from the config: the admin connection made one request so far.
    let mut refused_at = None;
    for i in 2..=25 {
        let res = request(&mut admin, "health", json!({})).await;
        if res["ok"] == false {
            let e = refused(&res, "UNAVAILABLE", "RATE_LIMITED");
            assert_eq!(e["details"]["limit"], "connection", "{res}");
            assert!(e["retryAfterMs"].as_u64().is_some_and(|ms| ms > 0), "{res}");
            refused_at = Some(i);
            break;
        }
    }
    assert_eq!(refused_at, Some(21), "20 requests a minute, the 21st refused");
    // Another connection has its own bucket.
    let mut other = self::admin(&gw).await;
    ok_payload(&request(&mut other, "health", json!({})).await);
}

#[tokio::test]
async fn revoking_a_token_closes_its_connection_and_refuses_the_next() {
    let (_fake, gw) = start(json!({})).await;
    let state = tempfile::tempdir().expect("cli state dir");
    let cli = |args: &[&str]| {
        let mut cmd = tokio::process::Command::new(BIN);
        cmd.args(args)
            .args(["--url", &gw.ws_url(), "--token", gw.token().expect("a gateway token"), "--state-dir"])
            .arg(state.path())
            .kill_on_drop(true);
        for var in ["CLAWGATE_URL", "CLAWGATE_GATEWAY_TOKEN", "CLAWGATE_GATEWAY_PASSWORD", "CLAWGATE_STATE_DIR"] {
            cmd.env_remove(var);
        }
        async move {
            let out = tokio::time::timeout(CLI_TIMEOUT, cmd.output()).await.expect("cli finished").expect("cli ran");
            let stdout = String::from_utf8_lossy(&out.stdout).into_owned();
            assert!(out.status.success(), "stdout: {stdout}\nstderr: {}", String::from_utf8_lossy(&out.stderr));
            stdout
        }
    };
    let created = cli(&[
        "tokens",
        "create",
        "--name",
        "compose",
        "--scopes",
        "operator.write",
        "--sessions",
        "compose:*",
        "--methods",
        "agent,chat.*",
        "--rate",
        "60/min",
    ])
    .await;
    let token = created.split_whitespace().find(|w| w.starts_with("cgt_")).expect("the secret is printed").to_owned();
    assert!(created.contains("only time"), "{created}");
    let listed = cli(&["tokens", "list"]).await;
    assert!(listed.contains("compose") && listed.contains("compose:*") && listed.contains("60/1m"), "{listed}");
    // `cgt_<16 hex id>_<secret>`: the secret may itself hold `_`, so it is cut after the id (a
    // fragment after the last `_` can be a few characters found in any listing by chance).
    let secret = token.get("cgt_".len() + 17..).expect("secret part");
    assert!(secret.len() >= 32, "a whole secret: {token}");
    assert!(!listed.contains(secret) && !listed.contains("cgt_"), "the list never shows the secret: {listed}");

    let (mut b, _) = backend(&gw, &token).await;
    ok_payload(&request(&mut b, "chat.history", json!({"sessionKey": COMPOSE})).await);
    let revoked = cli(&["tokens", "revoke", "compose"]).await;
    assert!(revoked.contains("1 live connection"), "{revoked}");
    let (code, reason) = b.expect_close(Duration::from_secs(10)).await.expect("closed");
    assert_eq!((code, reason.as_str()), (1008, "access token revoked"));

    let (_, res) = try_backend(&gw, &token).await;
    refused(&res, "INVALID_REQUEST", "AUTH_TOKEN_MISMATCH");
    let mut admin = admin(&gw).await;
    let res = request(&mut admin, "tokens.list", json!({"includeRevoked": true})).await;
    let tokens = ok_payload(&res)["tokens"].as_array().expect("tokens").clone();
    assert_eq!(tokens.len(), 1, "{res}");
    assert!(tokens[0]["revokedAt"].as_i64().is_some(), "{res}");
    let res = request(&mut admin, "tokens.list", json!({})).await;
    assert_eq!(ok_payload(&res)["tokens"], json!([]), "live tokens only by default");
    let res = request(&mut admin, "tokens.revoke", json!({"token": "compose"})).await;
    assert_eq!(res["ok"], false, "nothing left to revoke: {res}");
}

#[tokio::test]
async fn odd_tokens_get_the_normal_auth_error_and_nothing_breaks() {
    let (_fake, gw) = start(json!({})).await;
    let mut admin = admin(&gw).await;
    let (token, created) = create_token(&mut admin, compose_token(None)).await;
    let id = created["id"].as_str().expect("id");
    let wrong_secret = format!("cgt_{id}_{}", "A".repeat(43));
    let huge = format!("cgt_{id}_{}", "x".repeat(30_000));
    let truncated = &token[..token.len() - 1];
    let odd =
        ["", "cgt_", wrong_secret.as_str(), huge.as_str(), truncated, "ghp_0123456789abcdef_x", "cgt_ünïcødé_✓🔑"];
    for presented in odd {
        let (_, res) = try_backend(&gw, presented).await;
        let shown = &presented[..presented.len().min(40)];
        assert_eq!(res["ok"], false, "{shown:?} admitted: {res}");
        assert_eq!(res["error"]["code"], "INVALID_REQUEST", "{shown:?}: {res}");
        assert_eq!(res["error"]["details"]["code"], "AUTH_TOKEN_MISMATCH", "{shown:?}: {res}");
    }
    // The gateway is fine and the real token still works.
    ok_payload(&request(&mut admin, "health", json!({})).await);
    backend(&gw, &token).await;
}
