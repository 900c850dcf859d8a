//! `gateway.trustedProxies` over the real binary (issue 14, item 2): the client address comes
//! from `X-Forwarded-For` only when the TCP peer is a listed proxy. The "proxy" here is simply a
//! loopback client setting the headers, listed (or not) as trusted.

use std::time::Duration;

use clawgate_testkit::{RawClient, TestGateway};
use serde_json::{Value, json};

const BIN: &str = env!("CARGO_BIN_EXE_clawgate");
const TOKEN: &str = "T-trusted-proxies";
const WAIT: Duration = Duration::from_secs(30);
const RATE_LIMITED: &str = "AUTH_RATE_LIMITED";

async fn start(trusted: &[&str]) -> TestGateway {
    let config = json!({"gateway": {
        "trustedProxies": trusted,
        "auth": {"rateLimit": {"maxAttempts": 3, "windowMs": 60000, "lockoutMs": 60000}},
        "http": {"endpoints": {"chatCompletions": {"enabled": true}}},
    }});
    TestGateway::builder(BIN).token(TOKEN).config(config.to_string()).start().await.expect("start clawgate")
}

/// `connect` from 127.0.0.1 carrying `X-Forwarded-For: xff` (none when `None`); the `res` frame.
async fn connect_via(gw: &TestGateway, xff: Option<&str>, token: &str) -> Value {
    let headers: Vec<(&str, &str)> = xff.map(|v| ("X-Forwarded-For", v)).into_iter().collect();
    let mut c = RawClient::connect_with_headers(&gw.ws_url(), &headers).await.unwrap().accepted().unwrap();
    c.try_handshake(Some(token), &json!({})).await.expect("connect answer")
}

fn detail_code(res: &Value) -> &str {
    res["error"]["details"]["code"].as_str().unwrap_or_default()
}

/// Three wrong tokens from `xff`; the fourth attempt (right token) is locked out.
async fn lock_out(gw: &TestGateway, xff: Option<&str>) {
    for i in 0..3 {
        let res = connect_via(gw, xff, &format!("wrong-{i}")).await;
        assert_eq!(res["ok"], false, "{res}");
        assert_ne!(detail_code(&res), RATE_LIMITED, "attempt {i} is not locked out yet: {res}");
    }
    let res = connect_via(gw, xff, TOKEN).await;
    assert_eq!(detail_code(&res), RATE_LIMITED, "{xff:?} is locked out: {res}");
}

#[tokio::test]
async fn clients_behind_a_trusted_proxy_get_their_own_lockout_buckets() {
    let gw = start(&["127.0.0.1"]).await;
    lock_out(&gw, Some("198.51.100.1")).await;
    // Another client through the same proxy, and the proxy host itself, are not locked out.
    let other = connect_via(&gw, Some("198.51.100.2"), TOKEN).await;
    assert_eq!(other["ok"], true, "{other}");
    let spoof_left = connect_via(&gw, Some("198.51.100.1, 198.51.100.3"), TOKEN).await;
    assert_eq!(spoof_left["ok"], true, "the rightmost untrusted hop is the client: {spoof_left}");
    let direct = connect_via(&gw, None, TOKEN).await;
    assert_eq!(direct["ok"], true, "{direct}");
    // The HTTP API keys its lockout by the same forwarded address.
    assert_eq!(models_via(&gw, "198.51.100.1").await, 429);
    assert_eq!(models_via(&gw, "198.51.100.2").await, 200);
}

/// `GET /v1/models` with the right bearer, forwarded for `xff`; the status.
async fn models_via(gw: &TestGateway, xff: &str) -> u16 {
    let url = format!("http://127.0.0.1:{}/v1/models", gw.port());
    let res = reqwest::Client::new()
        .get(url)
        .bearer_auth(TOKEN)
        .header("X-Forwarded-For", xff)
        .timeout(WAIT)
        .send()
        .await
        .expect("answer");
    res.status().as_u16()
}

#[tokio::test]
async fn forwarding_headers_from_an_unlisted_peer_are_ignored() {
    // 127.0.0.2 is the only proxy; the test connects from 127.0.0.1.
    let gw = start(&["127.0.0.2"]).await;
    lock_out(&gw, Some("198.51.100.1")).await;
    // A different forwarded address from the same untrusted peer is the same (locked) bucket.
    let res = connect_via(&gw, Some("198.51.100.2"), TOKEN).await;
    assert_eq!(detail_code(&res), RATE_LIMITED, "spoofed headers do not buy a new bucket: {res}");
    assert_eq!(models_via(&gw, "198.51.100.3").await, 429, "nor over HTTP");
}

#[tokio::test]
async fn a_forwarded_client_gets_no_loopback_privileges() {
    let gw = start(&["127.0.0.1"]).await;
    let admin = json!({"scopes": ["operator.admin"]});
    // The local CLI identity straight over loopback keeps the scopes it asks for...
    let mut direct = RawClient::connect(&gw.ws_url()).await.unwrap();
    let hello = direct.handshake(Some(TOKEN), &admin).await.unwrap();
    assert_eq!(hello["auth"]["scopes"], json!(["operator.admin"]), "{hello}");
    // ...but not through a proxy, even one on loopback naming a loopback client.
    for xff in ["127.0.0.1", "198.51.100.4"] {
        let mut proxied = RawClient::connect_with_headers(&gw.ws_url(), &[("X-Forwarded-For", xff)])
            .await
            .unwrap()
            .accepted()
            .unwrap();
        let hello = proxied.handshake(Some(TOKEN), &admin).await.unwrap();
        assert_eq!(hello["auth"]["scopes"], json!([]), "{xff}: {hello}");
    }
}
