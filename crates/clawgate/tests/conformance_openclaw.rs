//! The real OpenClaw clients against clawgate (contracts: openclaw-live.md §3 and §12, C1, C2, C5,
//! C7, C9, C11).
//!
//! Each test starts its own clawgate with token auth, puts a [`RecordingProxy`] in front of it,
//! runs one real client (`openclaw` CLI 2026.9.6 or `openclaw-node` 0.14.0, installed from npm by
//! `scripts/install-openclaw.sh`) against the proxy, checks the client's exit code and output, and
//! finally validates every frame clawgate sent against the OpenClaw protocol schema. When npm
//! cannot be reached these tests fail (they never skip).

use std::time::Duration;

use clawgate_testkit::{OpenClawPeers, PeerOutput, RecordingProxy, TestGateway};
use serde_json::{Value, json};

const BIN: &str = env!("CARGO_BIN_EXE_clawgate");

/// The exact reason clawgate must give when a shared token does not match (live notes §7).
const TOKEN_MISMATCH_MESSAGE: &str =
    "unauthorized: gateway token mismatch (use this gateway's gateway.auth.token or pair the device)";

struct Setup {
    gateway: TestGateway,
    proxy: RecordingProxy,
    peers: OpenClawPeers,
}

async fn setup() -> Setup {
    let peers = OpenClawPeers::get().await.unwrap_or_else(|e| panic!("the real OpenClaw clients are required: {e:#}"));
    let gateway = TestGateway::start(BIN).await.unwrap_or_else(|e| panic!("starting clawgate: {e:#}"));
    let proxy = RecordingProxy::start(&gateway.ws_url())
        .await
        .unwrap_or_else(|e| panic!("starting the recording proxy: {e:#}"));
    Setup { gateway, proxy, peers }
}

impl Setup {
    fn token(&self) -> String {
        self.gateway.expect_token().to_owned()
    }

    /// Validates every recorded clawgate frame against the schema; at least `min` frames.
    async fn validate_frames(&self, min: usize) {
        let checked = self.proxy.validate_gateway_frames().await.unwrap_or_else(|e| panic!("{e:#}"));
        assert!(
            checked >= min,
            "expected at least {min} frames from clawgate, recorded {checked}: {:?}",
            self.proxy.records()
        );
    }

    /// The `params` of the first client request with this method.
    fn request_params(&self, method: &str) -> Value {
        self.proxy
            .client_frames()
            .into_iter()
            .find(|(_, f)| f["type"] == "req" && f["method"] == method)
            .map(|(_, f)| f.get("params").cloned().unwrap_or(Value::Null))
            .unwrap_or_else(|| {
                panic!("the client sent no {method:?} request; client frames: {:?}", self.proxy.client_frames())
            })
    }

    /// The `res` frame clawgate sent for the first client request with this method.
    fn response_to(&self, method: &str) -> Value {
        let (conn, req) = self
            .proxy
            .client_frames()
            .into_iter()
            .find(|(_, f)| f["type"] == "req" && f["method"] == method)
            .unwrap_or_else(|| panic!("the client sent no {method:?} request"));
        self.proxy
            .gateway_frames()
            .into_iter()
            .find(|(c, f)| *c == conn && f["type"] == "res" && f["id"] == req["id"])
            .map(|(_, f)| f)
            .unwrap_or_else(|| {
                panic!(
                    "clawgate sent no res to {method:?} (id {}); gateway frames: {:?}",
                    req["id"],
                    self.proxy.gateway_frames()
                )
            })
    }
}

fn assert_exit(out: &PeerOutput, code: i32) {
    assert_eq!(out.code, Some(code), "{}", out.describe());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn cli_gateway_call_health_prints_the_health_payload() {
    let s = setup().await;
    let out = s
        .peers
        .cli(["gateway", "call", "health", "--url", &s.proxy.ws_url(), "--token", &s.token(), "--json"])
        .run()
        .await
        .expect("running openclaw");
    assert_exit(&out, 0);
    let printed = out.json().expect("JSON output");
    assert_eq!(printed["ok"], true, "{}", out.describe());

    // The CLI prints the res payload unchanged.
    let res = s.response_to("health");
    assert_eq!(res["ok"], true, "{res}");
    assert_eq!(printed, res["payload"]);

    // The plain CLI sends no device, only auth.token, and as the local CLI keeps the scopes it
    // asked for (contract §4.4).
    let connect = s.request_params("connect");
    assert_eq!(connect["client"]["id"], "cli");
    assert_eq!(connect["client"]["mode"], "cli");
    assert!(connect.get("device").is_none(), "{connect}");
    let hello = s.response_to("connect");
    assert_eq!(hello["payload"]["type"], "hello-ok", "{hello}");
    assert_eq!(hello["payload"]["protocol"], 4, "{hello}");
    assert_eq!(hello["payload"]["auth"]["scopes"], connect["scopes"], "{hello}");
    s.validate_frames(3).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn cli_gateway_call_with_a_wrong_token_exits_1_with_auth_token_mismatch() {
    let s = setup().await;
    let out = s
        .peers
        .cli(["gateway", "call", "health", "--url", &s.proxy.ws_url(), "--token", "WRONG", "--json"])
        .run()
        .await
        .expect("running openclaw");
    assert_exit(&out, 1);
    assert!(out.combined().contains("AUTH_TOKEN_MISMATCH"), "{}", out.describe());
    let printed = out.json().expect("JSON output");
    assert_eq!(printed["ok"], false, "{printed}");
    assert_eq!(printed["error"]["type"], "gateway_request_error", "{printed}");
    assert_eq!(printed["error"]["code"], "INVALID_REQUEST", "{printed}");
    assert_eq!(printed["error"]["details"]["code"], "AUTH_TOKEN_MISMATCH", "{printed}");

    // On the wire: the error res, then close 1008 with the message as the reason.
    let res = s.response_to("connect");
    assert_eq!(res["error"]["message"], TOKEN_MISMATCH_MESSAGE, "{res}");
    s.proxy.wait_idle(Duration::from_secs(5)).await.expect("proxy idle");
    let closes = s.proxy.gateway_closes();
    assert!(
        closes.iter().any(|(_, code, reason)| *code == 1008 && reason == TOKEN_MISMATCH_MESSAGE),
        "expected clawgate to close with 1008 {TOKEN_MISMATCH_MESSAGE:?}, got {closes:?}"
    );
    s.validate_frames(2).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn cli_gateway_call_of_an_unknown_method_exits_1_with_invalid_request() {
    let s = setup().await;
    let out = s
        .peers
        .cli(["gateway", "call", "no.such.method", "--url", &s.proxy.ws_url(), "--token", &s.token(), "--json"])
        .run()
        .await
        .expect("running openclaw");
    assert_exit(&out, 1);
    // Byte-for-byte what the real gateway made the CLI print (live notes §3).
    assert_eq!(
        out.json().expect("JSON output"),
        json!({"ok": false, "error": {"type": "gateway_request_error", "code": "INVALID_REQUEST",
               "message": "unknown method: no.such.method", "retryable": false}}),
        "{}",
        out.describe()
    );
    let res = s.response_to("no.such.method");
    assert_eq!(res["error"], json!({"code": "INVALID_REQUEST", "message": "unknown method: no.such.method"}));
    s.validate_frames(3).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn cli_health_with_url_and_token_from_the_environment_exits_0() {
    let s = setup().await;
    let out = s
        .peers
        .cli(["health", "--json"])
        .env("OPENCLAW_GATEWAY_URL", s.proxy.ws_url())
        .env("OPENCLAW_GATEWAY_TOKEN", s.token())
        .run()
        .await
        .expect("running openclaw");
    assert_exit(&out, 0);
    let printed = out.json().expect("JSON output");
    assert_eq!(printed["ok"], true, "{}", out.describe());
    assert_eq!(printed, s.response_to("health")["payload"]);
    // `openclaw health` is a backend client (live notes §3, C5).
    let connect = s.request_params("connect");
    assert_eq!(connect["client"]["id"], "gateway-client", "{connect}");
    assert_eq!(connect["client"]["mode"], "backend", "{connect}");
    s.validate_frames(3).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn cli_logs_returns_clawgates_own_log_lines() {
    let s = setup().await;
    let out = s
        .peers
        .cli(["logs", "--url", &s.proxy.ws_url(), "--token", &s.token(), "--json", "--limit", "5"])
        .run()
        .await
        .expect("running openclaw");
    assert_exit(&out, 0);
    assert_eq!(s.request_params("logs.tail"), json!({"limit": 5, "maxBytes": 250000}));
    let records = out.json_lines();
    let meta = records.first().expect("a meta line first");
    assert_eq!(meta["type"], "meta", "{}", out.describe());
    assert!(meta["file"].as_str().is_some_and(|f| !f.is_empty()), "{meta}");
    let logs: Vec<&Value> = records.iter().filter(|r| r["type"] == "log").collect();
    assert!(
        !logs.is_empty() && logs.len() <= 5,
        "expected 1..=5 parsed log lines, got {}: {}",
        logs.len(),
        out.describe()
    );
    // Every line the CLI parsed must be a line of clawgate's own JSON log file.
    let log_file = s.gateway.read_log();
    for record in &logs {
        let raw = record["raw"].as_str().expect("raw line");
        assert!(serde_json::from_str::<Value>(raw).is_ok(), "not a JSON log line: {raw}");
        assert!(log_file.lines().any(|l| l == raw), "line {raw:?} is not in {}", s.gateway.log_path().display());
    }
    assert!(!records.iter().any(|r| r["type"] == "raw"), "the CLI could not parse some lines: {}", out.describe());
    s.validate_frames(3).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn cli_gateway_probe_connects_in_probe_mode_with_no_scopes() {
    let s = setup().await;
    let out = s
        .peers
        .cli(["gateway", "probe", "--url", &s.proxy.ws_url(), "--token", &s.token(), "--json"])
        .run()
        .await
        .expect("running openclaw");
    assert_exit(&out, 0);
    let printed = out.json().expect("JSON output");
    let target = printed["targets"]
        .as_array()
        .and_then(|t| t.iter().find(|t| t["id"] == "explicit"))
        .unwrap_or_else(|| panic!("no explicit target: {}", out.describe()));
    assert_eq!(target["connect"]["ok"], true, "{target}");
    // Probe clients ask for protocol 3..4 in mode "probe" and are granted no scopes, so the CLI
    // reports a connect-only gateway (live notes §3, C9).
    let connect = s.request_params("connect");
    assert_eq!(connect["minProtocol"], 3, "{connect}");
    assert_eq!(connect["client"]["mode"], "probe", "{connect}");
    let hello = s.response_to("connect");
    assert_eq!(hello["payload"]["auth"]["scopes"], json!([]), "{hello}");
    assert_eq!(target["auth"]["capability"], "connected_no_operator_scope", "{target}");
    // Its follow-up reads are refused for lack of scope, exactly as upstream words it.
    let status = s.response_to("status");
    assert_eq!(
        status["error"],
        json!({"code": "FORBIDDEN", "message": "missing scope: operator.read",
               "details": {"code": "MISSING_SCOPE", "missingScope": "operator.read",
                           "requiredScopes": ["operator.read"]}}),
        "{status}"
    );
    s.validate_frames(3).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn openclaw_node_connects_with_a_v2_device_signature_and_calls_health() {
    let s = setup().await;
    let script = OpenClawPeers::workspace_root().join("tests/node/node-health.mjs");
    let out = s
        .peers
        .node_script(&script)
        .env("GW_URL", s.proxy.ws_url())
        .env("GW_TOKEN", s.token())
        .run()
        .await
        .expect("running node");
    assert_exit(&out, 0);
    let result = out.json().expect("JSON output");
    assert_eq!(result["ok"], true, "{}", out.describe());
    assert_eq!(result["protocol"], 4, "{result}");
    assert_eq!(result["hasHealth"], true, "{result}");
    assert_eq!(result["hasNoSuchMethod"], false, "{result}");
    assert_eq!(result["deviceIdentityWritten"], true, "{result}");
    assert_eq!(result["health"]["ok"], true, "{result}");
    // A device-identified backend on loopback is paired silently with the scopes it asked for.
    assert_eq!(result["scopes"], json!(["operator.read", "operator.write"]), "{result}");

    // The connect carried a signed device whose nonce is the challenge's.
    let connect = s.request_params("connect");
    let device = &connect["device"];
    for key in ["id", "publicKey", "signature", "signedAt", "nonce"] {
        assert!(device.get(key).is_some(), "device.{key} missing: {connect}");
    }
    let challenge = s
        .proxy
        .gateway_frames()
        .into_iter()
        .find(|(_, f)| f["event"] == "connect.challenge")
        .map(|(_, f)| f)
        .expect("clawgate sent a challenge");
    assert_eq!(device["nonce"], challenge["payload"]["nonce"]);
    s.validate_frames(3).await;
}
