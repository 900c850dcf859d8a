//! Hostile tests for state, health and parsers (issue 10: defects 10 and 13, media links and
//! crash safety). Each test drives the real binary over real sockets; see `docs/SECURITY.md`,
//! section "State, health and parsers".

use clawgate_testkit::{RawClient, TestGateway};
use serde_json::{Value, json};

const BIN: &str = env!("CARGO_BIN_EXE_clawgate");

/// The session key a Telegram DM gets: it carries the sender's Telegram user id.
const TELEGRAM_SESSION: &str = "agent:main:telegram:direct:987654321";

async fn start(config: &str) -> TestGateway {
    TestGateway::builder(BIN).config(config).start().await.unwrap_or_else(|e| panic!("starting clawgate: {e:#}"))
}

async fn connected(gw: &TestGateway, overrides: Value) -> (RawClient, Value) {
    let mut c = RawClient::connect(&gw.ws_url()).await.expect("ws open");
    let hello = c.handshake(gw.token(), &overrides).await.unwrap_or_else(|e| panic!("handshake: {e:#}"));
    (c, hello)
}

fn ok_payload(res: &Value) -> &Value {
    assert_eq!(res["ok"], true, "expected ok: {res}");
    &res["payload"]
}

/// Private data a scope-less caller must not see in a health snapshot.
fn assert_public(what: &str, health: &Value, state_dir: &std::path::Path) {
    let text = health.to_string();
    assert!(!text.contains("clawgate.db"), "{what}: the database path leaks: {text}");
    assert!(!text.contains(&state_dir.display().to_string()), "{what}: the state dir leaks: {text}");
    assert!(!text.contains("987654321"), "{what}: a Telegram user id leaks: {text}");
    assert!(!text.contains("agent:main:"), "{what}: session keys leak: {text}");
    assert_eq!(health["sessions"]["recent"], json!([]), "{what}: {text}");
}

// ---- defect 13: `health` leaks to clients without scopes ----

#[tokio::test]
async fn health_shows_path_and_session_keys_only_to_operator_read() {
    let gw = start("{}").await;
    let (mut admin, _) = connected(&gw, json!({})).await;
    // A session whose key carries a Telegram user id (the run itself fails: no model is set up).
    let res = admin
        .request("chat.send", Some(json!({"sessionKey": TELEGRAM_SESSION, "message": "hi", "idempotencyKey": "h-1"})))
        .await
        .expect("chat.send");
    ok_payload(&res);
    let full = admin.request("health", Some(json!({"probe": true}))).await.expect("health");
    let full = ok_payload(&full);
    assert!(full["sessions"]["path"].as_str().is_some_and(|p| p.ends_with("clawgate.db")), "{full}");
    assert!(full.to_string().contains(TELEGRAM_SESSION), "an operator.read caller sees the keys: {full}");

    // A client connected with no scopes at all: same shape (schema-checked by RawClient), no
    // private data, in the `health` result and in the hello snapshot.
    let (mut none, hello) = connected(&gw, json!({"scopes": []})).await;
    assert_eq!(hello["auth"]["scopes"], json!([]), "{hello}");
    assert_public("hello-ok snapshot", &hello["snapshot"]["health"], gw.state_dir());
    for params in [None, Some(json!({"probe": true}))] {
        let res = none.request("health", params).await.expect("health");
        let public = ok_payload(&res);
        assert_eq!(public["ok"], true, "{public}");
        assert!(public["sessions"]["count"].as_u64().is_some_and(|n| n >= 1), "the count stays: {public}");
        assert_public("health result", public, gw.state_dir());
    }

    // operator.read alone is enough to see it all.
    let (mut reader, hello) = connected(&gw, json!({"scopes": ["operator.read"]})).await;
    assert!(hello["snapshot"]["health"].to_string().contains(TELEGRAM_SESSION), "{hello}");
    let res = reader.request("health", None).await.expect("health");
    assert!(ok_payload(&res).to_string().contains("clawgate.db"), "{res}");
}
