//! WebSocket error cases, frame by frame, against the real binary (contracts: openclaw-live.md §7,
//! openclaw-protocol.md §1, §2, §3.5, §5; transcripts `err-*.jsonl`).
//!
//! Every frame clawgate sends is checked against the OpenClaw schema by [`RawClient`]; the
//! messages, details and close reasons below are compared byte for byte with what the real
//! gateway sent in the captured transcripts.

use std::time::{Duration, Instant};

use clawgate_testkit::{RawClient, TestGateway, Upgrade, connect_params};
use serde_json::{Value, json};

const BIN: &str = env!("CARGO_BIN_EXE_clawgate");

/// Bound for every single wait in these tests.
const WAIT: Duration = Duration::from_secs(5);

const TOKEN_MISMATCH: &str =
    "unauthorized: gateway token mismatch (use this gateway's gateway.auth.token or pair the device)";
const RATE_LIMITED: &str = "unauthorized: too many failed authentication attempts (retry later)";
const ORIGIN_NOT_ALLOWED: &str =
    "origin not allowed (open the Control UI from the gateway host or allow it in gateway.controlUi.allowedOrigins)";

async fn gateway() -> TestGateway {
    TestGateway::start(BIN).await.unwrap_or_else(|e| panic!("starting clawgate: {e:#}"))
}

async fn gateway_with_config(config: &str) -> TestGateway {
    TestGateway::builder(BIN)
        .config(config)
        .start()
        .await
        .unwrap_or_else(|e| panic!("starting clawgate with {config}: {e:#}"))
}

async fn open(gw: &TestGateway) -> RawClient {
    RawClient::connect(&gw.ws_url()).await.unwrap_or_else(|e| panic!("opening a websocket: {e:#}"))
}

/// A connection that completed the handshake as the local CLI with the right token.
async fn connected(gw: &TestGateway) -> RawClient {
    let mut client = open(gw).await;
    client.handshake(gw.token(), &json!({})).await.unwrap_or_else(|e| panic!("handshake: {e:#}"));
    client
}

/// Asserts a failed `res` and returns its `error`.
fn error_of(res: &Value) -> &Value {
    assert_eq!(res["type"], "res", "{res}");
    assert_eq!(res["ok"], false, "expected an error response: {res}");
    &res["error"]
}

/// The only frames before a handshake failure are the challenge and the error `res`.
fn assert_only_challenge_and(client: &RawClient, res: &Value) {
    let received = client.received();
    assert_eq!(received.len(), 2, "expected exactly challenge + res before the close, got {received:?}");
    assert_eq!(received[0]["event"], "connect.challenge", "{received:?}");
    assert_eq!(&received[1], res);
}

/// After an answered error the socket must still serve requests.
async fn assert_still_open(client: &mut RawClient) {
    let res = client
        .request("health", Some(json!({})))
        .await
        .unwrap_or_else(|e| panic!("the socket should stay open: {e:#}"));
    assert_eq!(res["ok"], true, "{res}");
}

// ---- handshake failures (close the socket) ----

#[tokio::test]
async fn wrong_token_is_refused_with_auth_token_mismatch_and_close_1008() {
    let gw = gateway().await;
    let mut client = open(&gw).await;
    let res = client.try_handshake(Some("WRONG"), &json!({})).await.expect("a res to connect");
    assert_eq!(
        error_of(&res),
        &json!({"code": "INVALID_REQUEST", "message": TOKEN_MISMATCH,
                "details": {"code": "AUTH_TOKEN_MISMATCH", "authReason": "token_mismatch",
                            "canRetryWithDeviceToken": false,
                            "recommendedNextStep": "update_auth_credentials"}})
    );
    let close = client.expect_close(WAIT).await.expect("close");
    assert_eq!(close, (1008, TOKEN_MISMATCH.to_owned()));
    assert_only_challenge_and(&client, &res);
}

#[tokio::test]
async fn connect_without_auth_or_device_is_refused_with_device_identity_required() {
    let gw = gateway().await;
    let mut client = open(&gw).await;
    let res = client.try_handshake(None, &json!({})).await.expect("a res to connect");
    assert_eq!(
        error_of(&res),
        &json!({"code": "NOT_PAIRED", "message": "device identity required",
                "details": {"code": "DEVICE_IDENTITY_REQUIRED"}})
    );
    let close = client.expect_close(WAIT).await.expect("close");
    assert_eq!(close, (1008, "device identity required".to_owned()));
    assert_only_challenge_and(&client, &res);
}

#[tokio::test]
async fn first_request_other_than_connect_is_refused_and_closed_1008() {
    let gw = gateway().await;
    let mut client = open(&gw).await;
    client.challenge(WAIT).await.expect("challenge");
    let res = client.request("health", Some(json!({}))).await.expect("a res to health");
    let message = "invalid handshake: first request must be connect";
    assert_eq!(res["id"], "r1");
    assert_eq!(error_of(&res), &json!({"code": "INVALID_REQUEST", "message": message}));
    let close = client.expect_close(WAIT).await.expect("close");
    assert_eq!(close, (1008, message.to_owned()));
    assert_only_challenge_and(&client, &res);
}

#[tokio::test]
async fn invalid_json_as_the_first_frame_closes_1000_with_an_empty_reason() {
    let gw = gateway().await;
    let mut client = open(&gw).await;
    client.challenge(WAIT).await.expect("challenge");
    client.send_text("{this is not json").await.expect("send");
    let close = client.expect_close(WAIT).await.expect("close");
    assert_eq!(close, (1000, String::new()));
    assert_eq!(client.received().len(), 1, "nothing but the challenge may be sent: {:?}", client.received());
}

#[tokio::test]
async fn protocol_mismatch_is_refused_with_details_and_close_1002() {
    let gw = gateway().await;
    let mut client = open(&gw).await;
    let res =
        client.try_handshake(gw.token(), &json!({"minProtocol": 5, "maxProtocol": 6})).await.expect("a res to connect");
    assert_eq!(
        error_of(&res),
        &json!({"code": "INVALID_REQUEST", "message": "protocol mismatch",
                "details": {"code": "PROTOCOL_MISMATCH", "clientMinProtocol": 5,
                            "clientMaxProtocol": 6, "expectedProtocol": 4,
                            "minimumProbeProtocol": 3}})
    );
    let close = client.expect_close(WAIT).await.expect("close");
    assert_eq!(close, (1002, "protocol mismatch".to_owned()));
    assert_only_challenge_and(&client, &res);
}

#[tokio::test]
async fn bad_connect_params_are_refused_with_the_validation_message_and_close_1008() {
    let gw = gateway().await;
    let mut client = open(&gw).await;
    client.challenge(WAIT).await.expect("challenge");
    client
        .send_json(&json!({"type": "req", "id": "r1", "method": "connect", "params": {"hello": 1}}))
        .await
        .expect("send");
    let res = client.recv_response("r1", WAIT).await.expect("res");
    let message =
        "invalid connect params: must have required property 'minProtocol'; at root: unexpected property 'hello'";
    assert_eq!(error_of(&res), &json!({"code": "INVALID_REQUEST", "message": message}));
    let close = client.expect_close(WAIT).await.expect("close");
    assert_eq!(close, (1008, message.to_owned()));
    assert_only_challenge_and(&client, &res);
}

#[tokio::test]
async fn preauth_frame_over_64_kib_is_closed_1009() {
    let gw = gateway().await;
    let mut client = open(&gw).await;
    client.challenge(WAIT).await.expect("challenge");
    // The server may close before it read the whole frame; a failed send is fine.
    let _ = client.send_bytes_text(65_537).await;
    let (code, reason) = client.expect_close(WAIT).await.expect("close");
    assert_eq!(code, 1009, "reason: {reason:?}");
    // The contract names the reason "preauth payload too large" (the gateway's own check), but on
    // the wire upstream's `ws` receiver limit (maxPayload 65 536 until hello) fires first and closes
    // with an empty reason; a differential run against openclaw 2026.9.6 saw (1009, "").
    assert!(reason.is_empty() || reason == "preauth payload too large", "unexpected close reason {reason:?}");
    assert_eq!(client.received().len(), 1, "{:?}", client.received());
}

#[tokio::test]
async fn preauth_frame_of_exactly_64_kib_is_not_too_large() {
    let gw = gateway().await;
    let mut client = open(&gw).await;
    client.challenge(WAIT).await.expect("challenge");
    // 65 536 bytes is within the limit; as a first frame that is not a connect request it is a
    // bad handshake (1008), not a size violation (1009).
    client.send_bytes_text(65_536).await.expect("send");
    let (code, reason) = client.expect_close(WAIT).await.expect("close");
    assert_eq!(code, 1008, "reason: {reason:?}");
}

#[tokio::test]
async fn silent_client_is_closed_1000_after_the_handshake_timeout() {
    let gw = gateway_with_config("{gateway: {handshakeTimeoutMs: 1500}}").await;
    let started = Instant::now();
    let mut client = open(&gw).await;
    client.challenge(WAIT).await.expect("challenge");
    let close = client.expect_close(WAIT).await.expect("close");
    let elapsed = started.elapsed();
    assert_eq!(close, (1000, String::new()));
    // Only the lower bound is a fact (the timer never fires early); how late the close comes
    // depends on the machine's load, and `WAIT` already bounds it.
    assert!(elapsed >= Duration::from_millis(1200), "closed after {elapsed:?}, before the 1.5 s handshake timeout");
    assert_eq!(client.received().len(), 1, "{:?}", client.received());
}

#[tokio::test]
async fn origin_outside_allowed_origins_is_refused_with_close_1008() {
    let gw = gateway_with_config("{gateway: {controlUi: {allowedOrigins: ['https://allowed.example']}}}").await;
    let upgrade = RawClient::connect_with_origin(&gw.ws_url(), "https://evil.example").await.expect("upgrade attempt");
    let mut client = match upgrade {
        Upgrade::Accepted(client) => *client,
        Upgrade::Refused { status, body } => panic!(
            "the contract refuses a bad Origin at connect (close 1008), not at the upgrade; got HTTP {status}: {body}"
        ),
    };
    let res = client.try_handshake(gw.token(), &json!({})).await.expect("a res to connect");
    assert_eq!(
        error_of(&res),
        &json!({"code": "INVALID_REQUEST", "message": ORIGIN_NOT_ALLOWED,
                "details": {"code": "CONTROL_UI_ORIGIN_NOT_ALLOWED", "reason": "origin not allowed"}})
    );
    let close = client.expect_close(WAIT).await.expect("close");
    assert_eq!(close, (1008, ORIGIN_NOT_ALLOWED.to_owned()));
}

#[tokio::test]
async fn origin_in_allowed_origins_or_on_loopback_is_accepted() {
    let gw = gateway_with_config("{gateway: {controlUi: {allowedOrigins: ['https://allowed.example']}}}").await;
    let loopback_origin = gw.http_url();
    for origin in ["https://allowed.example", loopback_origin.as_str()] {
        let mut client = RawClient::connect_with_origin(&gw.ws_url(), origin)
            .await
            .expect("upgrade attempt")
            .accepted()
            .unwrap_or_else(|e| panic!("origin {origin}: {e:#}"));
        let res = client.try_handshake(gw.token(), &json!({})).await.expect("a res to connect");
        assert_eq!(res["ok"], true, "origin {origin}: {res}");
    }
}

#[tokio::test]
async fn repeated_wrong_tokens_are_rate_limited_with_retry_after() {
    // Loopback is exempt by default (`exemptLoopback: true`, contract §9), so switch it off.
    let gw = gateway_with_config(
        "{gateway: {auth: {rateLimit: {maxAttempts: 3, windowMs: 60000, lockoutMs: 60000, exemptLoopback: false}}}}",
    )
    .await;
    for attempt in 1..=3 {
        let mut client = open(&gw).await;
        let res = client.try_handshake(Some("WRONG"), &json!({})).await.expect("a res to connect");
        assert_eq!(error_of(&res)["details"]["code"], "AUTH_TOKEN_MISMATCH", "attempt {attempt}: {res}");
        client.expect_close(WAIT).await.expect("close");
    }
    // The 4th attempt is refused before the token is even compared, and so is the right token.
    for token in [Some("WRONG"), gw.token()] {
        let mut client = open(&gw).await;
        let res = client.try_handshake(token, &json!({})).await.expect("a res to connect");
        let error = error_of(&res);
        assert_eq!(error["code"], "INVALID_REQUEST", "{res}");
        assert_eq!(error["message"], RATE_LIMITED, "{res}");
        assert_eq!(error["retryable"], true, "{res}");
        let retry_after = error["retryAfterMs"].as_u64().expect("retryAfterMs");
        assert!(retry_after > 0 && retry_after <= 60_000, "retryAfterMs {retry_after}");
        assert_eq!(
            error["details"],
            json!({"code": "AUTH_RATE_LIMITED", "authReason": "rate_limited",
                   "canRetryWithDeviceToken": false, "recommendedNextStep": "wait_then_retry"})
        );
        let close = client.expect_close(WAIT).await.expect("close");
        assert_eq!(close, (1008, RATE_LIMITED.to_owned()));
    }
}

#[tokio::test]
async fn loopback_clients_are_locked_out_by_default_too() {
    // Deliberate difference from upstream, which only delays failed loopback attempts: the
    // issue asks for failed-auth rate limiting that also applies on loopback (local malware can
    // guess too), so `exemptLoopback` defaults to false.
    let gw = gateway_with_config("{gateway: {auth: {rateLimit: {maxAttempts: 3, windowMs: 60000, lockoutMs: 60000}}}}")
        .await;
    for attempt in 1..=3 {
        let mut client = open(&gw).await;
        let res = client.try_handshake(Some("WRONG"), &json!({})).await.expect("a res to connect");
        assert_eq!(error_of(&res)["details"]["code"], "AUTH_TOKEN_MISMATCH", "attempt {attempt}: {res}");
        client.expect_close(WAIT).await.expect("close");
    }
    let mut client = open(&gw).await;
    let res = client.try_handshake(gw.token(), &json!({})).await.expect("a res to connect");
    assert_eq!(error_of(&res)["details"]["code"], "AUTH_RATE_LIMITED", "even the right token waits: {res}");
}

#[tokio::test]
async fn loopback_lockout_can_be_switched_off_with_exempt_loopback() {
    let gw = gateway_with_config(
        "{gateway: {auth: {rateLimit: {maxAttempts: 3, windowMs: 60000, lockoutMs: 60000, exemptLoopback: true}}}}",
    )
    .await;
    for attempt in 1..=4 {
        let mut client = open(&gw).await;
        let res = client.try_handshake(Some("WRONG"), &json!({})).await.expect("a res to connect");
        assert_eq!(error_of(&res)["details"]["code"], "AUTH_TOKEN_MISMATCH", "attempt {attempt}: {res}");
        client.expect_close(WAIT).await.expect("close");
    }
    let mut client = open(&gw).await;
    let res = client.try_handshake(gw.token(), &json!({})).await.expect("a res to connect");
    assert_eq!(res["ok"], true, "{res}");
}

// ---- accepted handshakes and errors after connect (the socket stays open) ----

#[tokio::test]
async fn connect_sent_before_the_challenge_arrives_is_accepted() {
    let gw = gateway().await;
    let mut client = open(&gw).await;
    let id = client.send_connect(gw.token(), &json!({})).await.expect("send connect");
    let res = client.recv_response(&id, WAIT).await.expect("res");
    assert_eq!(res["ok"], true, "{res}");
    assert_eq!(res["payload"]["type"], "hello-ok", "{res}");
    let first = &client.received()[0];
    assert_eq!(first["event"], "connect.challenge", "the challenge is still sent first: {first}");
    assert_still_open(&mut client).await;
}

#[tokio::test]
async fn unknown_method_after_connect_is_answered_and_the_socket_stays_open() {
    let gw = gateway().await;
    let mut client = connected(&gw).await;
    let res = client.request("no.such.method", Some(json!({}))).await.expect("res");
    assert_eq!(error_of(&res), &json!({"code": "INVALID_REQUEST", "message": "unknown method: no.such.method"}));
    assert_still_open(&mut client).await;
}

#[tokio::test]
async fn request_without_an_id_gets_a_response_with_id_invalid() {
    let gw = gateway().await;
    let mut client = connected(&gw).await;
    client.send_json(&json!({"type": "req", "method": "health", "params": {}})).await.expect("send");
    let res = client.recv_response("invalid", WAIT).await.expect("res");
    assert_eq!(
        error_of(&res),
        &json!({"code": "INVALID_REQUEST",
                "message": "invalid request frame: must have required property 'id'"})
    );
    assert_still_open(&mut client).await;
}

#[tokio::test]
async fn frame_with_a_bogus_type_is_an_invalid_request_frame() {
    let gw = gateway().await;
    let mut client = connected(&gw).await;
    client.send_json(&json!({"type": "bogus", "id": "r7"})).await.expect("send");
    let res = client.recv_response("r7", WAIT).await.expect("res");
    assert_eq!(
        error_of(&res),
        &json!({"code": "INVALID_REQUEST",
                "message": "invalid request frame: must have required property 'method'; at /type: must be equal to constant"})
    );
    assert_still_open(&mut client).await;
}

#[tokio::test]
async fn second_connect_is_refused_and_the_socket_stays_open() {
    let gw = gateway().await;
    let mut client = connected(&gw).await;
    let res = client.request("connect", Some(connect_params(gw.token(), &json!({})))).await.expect("res");
    assert_eq!(
        error_of(&res),
        &json!({"code": "INVALID_REQUEST", "message": "connect is only valid as the first request"})
    );
    assert_still_open(&mut client).await;
}

#[tokio::test]
async fn invalid_json_after_connect_is_ignored() {
    let gw = gateway().await;
    let mut client = connected(&gw).await;
    client.send_text("{not json after connect").await.expect("send");
    client.expect_no_response(Duration::from_millis(1500)).await.expect("no answer and no close");
    assert_still_open(&mut client).await;
}

#[tokio::test]
async fn frames_over_64_kib_are_fine_after_connect() {
    let gw = gateway().await;
    let mut client = connected(&gw).await;
    // `health` ignores extra params (live notes §7), so a padded request must just work.
    let res = client.request("health", Some(json!({"pad": "x".repeat(100_000)}))).await.expect("res");
    assert_eq!(res["ok"], true, "{res}");
}

#[tokio::test]
async fn probe_client_gets_no_scopes_and_is_forbidden_from_status() {
    let gw = gateway().await;
    let mut client = open(&gw).await;
    let hello = client
        .handshake(
            gw.token(),
            &json!({"minProtocol": 3, "client": {"mode": "probe", "version": "dev"},
                    "scopes": ["operator.read"]}),
        )
        .await
        .expect("probe clients may connect with protocol 3..4");
    assert_eq!(hello["protocol"], 4, "{hello}");
    assert_eq!(hello["auth"]["scopes"], json!([]), "{hello}");
    let res = client.request("status", None).await.expect("res");
    assert_eq!(
        error_of(&res),
        &json!({"code": "FORBIDDEN", "message": "missing scope: operator.read",
                "details": {"code": "MISSING_SCOPE", "missingScope": "operator.read",
                            "requiredScopes": ["operator.read"]}})
    );
    // `health` needs no scope.
    assert_still_open(&mut client).await;
}
