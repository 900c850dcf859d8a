//! Device pairing end to end: the real `clawgate` binary as gateway, a Rust client with a fresh
//! Ed25519 identity, and the `clawgate devices …` CLI as the operator who approves it.

use std::io::{BufRead, BufReader};
use std::process::{Child, Command, Stdio};
use std::sync::{Arc, Mutex, mpsc};
use std::time::Duration;

use serde_json::{Value, json};

use clawgate_client::{Client, ClientError, ClientOptions, DeviceIdentity, SignatureVersion};
use clawgate_testkit::schema::SchemaValidator;

const TOKEN: &str = "T-device-pairing-test";
const READY_TIMEOUT: Duration = Duration::from_secs(30);
const CLI_TIMEOUT: Duration = Duration::from_secs(30);

/// The real gateway on a free loopback port, killed on drop.
struct Gateway {
    child: Child,
    url: String,
    stderr: Arc<Mutex<Vec<String>>>,
    /// The gateway's state dir; the CLI runs with it too (its device identity lives there).
    state: tempfile::TempDir,
}

impl Gateway {
    fn start() -> Gateway {
        let state = tempfile::tempdir().unwrap();
        let mut cmd = Command::new(env!("CARGO_BIN_EXE_clawgate"));
        cmd.args(["gateway", "--port", "0", "--bind", "loopback", "--state-dir"])
            .arg(state.path())
            .args(["--token", TOKEN])
            .env("HOME", state.path())
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped());
        for var in [
            "CLAWGATE_URL",
            "CLAWGATE_GATEWAY_TOKEN",
            "CLAWGATE_GATEWAY_PASSWORD",
            "CLAWGATE_STATE_DIR",
            "CLAWGATE_CONFIG",
        ] {
            cmd.env_remove(var);
        }
        let mut child = cmd.spawn().expect("spawn clawgate gateway");

        let stderr = Arc::new(Mutex::new(Vec::new()));
        let err_pipe = child.stderr.take().unwrap();
        let sink = stderr.clone();
        std::thread::spawn(move || {
            for line in BufReader::new(err_pipe).lines().map_while(Result::ok) {
                sink.lock().unwrap().push(line);
            }
        });
        // Keep draining stdout after the ready line so the gateway never blocks on a full pipe.
        let (tx, rx) = mpsc::channel();
        let out_pipe = child.stdout.take().unwrap();
        std::thread::spawn(move || {
            for line in BufReader::new(out_pipe).lines().map_while(Result::ok) {
                if let Some(rest) = line.split("listening on ").nth(1) {
                    let url = rest.split_whitespace().next().unwrap_or_default().to_owned();
                    let _ = tx.send(url);
                }
            }
        });
        let mut gw = Gateway { child, url: String::new(), stderr, state };
        match rx.recv_timeout(READY_TIMEOUT) {
            Ok(url) if url.starts_with("ws://127.0.0.1:") => gw.url = url,
            other => {
                panic!("gateway did not report `listening on ws://127.0.0.1:PORT` ({other:?}); stderr:\n{}", gw.log())
            }
        }
        gw
    }

    fn log(&self) -> String {
        self.stderr.lock().unwrap().join("\n")
    }

    /// Run `clawgate ARGS --url <gw> --token T --state-dir <gw's>` and return (exit code, stdout,
    /// stderr).
    async fn cli(&self, args: &[&str]) -> (i32, String, String) {
        let mut cmd = tokio::process::Command::new(env!("CARGO_BIN_EXE_clawgate"));
        cmd.args(args)
            .args(["--url", &self.url, "--token", TOKEN, "--state-dir"])
            .arg(self.state.path())
            .kill_on_drop(true);
        for var in ["CLAWGATE_URL", "CLAWGATE_GATEWAY_TOKEN", "CLAWGATE_GATEWAY_PASSWORD", "CLAWGATE_STATE_DIR"] {
            cmd.env_remove(var);
        }
        let out = tokio::time::timeout(CLI_TIMEOUT, cmd.output())
            .await
            .unwrap_or_else(|_| panic!("`clawgate {}` did not finish in {CLI_TIMEOUT:?}", args.join(" ")))
            .expect("run clawgate cli");
        (
            out.status.code().unwrap_or(-1),
            String::from_utf8_lossy(&out.stdout).into_owned(),
            String::from_utf8_lossy(&out.stderr).into_owned(),
        )
    }

    /// Like [`cli`](Self::cli), asserting exit 0.
    async fn cli_ok(&self, args: &[&str]) -> String {
        let (code, stdout, stderr) = self.cli(args).await;
        assert_eq!(code, 0, "`clawgate {}` exited {code}\nstdout: {stdout}\nstderr: {stderr}", args.join(" "));
        stdout
    }
}

impl Drop for Gateway {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
        if std::thread::panicking() {
            eprintln!("--- gateway stderr ---\n{}", self.log());
        }
    }
}

/// A device with no shared token: only its key (and later its device token) speaks for it.
fn device_options(gw: &Gateway, identity: &DeviceIdentity, version: SignatureVersion) -> ClientOptions {
    ClientOptions::new(&gw.url)
        .scopes(["operator.read"])
        .device(identity.clone())
        .signature_version(version)
        .connect_timeout(Duration::from_secs(10))
        .request_timeout(Duration::from_secs(10))
}

/// Connect expecting `NOT_PAIRED`/`PAIRING_REQUIRED` and close 1008; returns the request id.
async fn expect_pairing_required(opts: ClientOptions, identity: &DeviceIdentity) -> String {
    let err = Client::connect(opts).await.expect_err("an unpaired device must not be admitted");
    let ClientError::Handshake { error, close_code, close_reason } = &err else {
        panic!("expected a refused connect, got {err:?}");
    };
    assert_eq!(error.code, "NOT_PAIRED", "error shape: {error:?}");
    assert_eq!(err.detail_code(), Some("PAIRING_REQUIRED"), "error shape: {error:?}");
    let details = error.details.as_ref().unwrap();
    assert_eq!(details["reason"], "not-paired", "details: {details}");
    assert_eq!(details["deviceId"], identity.device_id(), "details: {details}");
    let request_id = details["requestId"].as_str().filter(|id| !id.is_empty()).expect("details.requestId").to_owned();
    assert_eq!(*close_code, Some(1008), "close reason: {close_reason:?}");
    assert_eq!(
        close_reason.as_deref(),
        Some(format!("pairing required: device is not approved yet (requestId: {request_id})").as_str())
    );
    request_id
}

/// `devices list --json` shows the request for this device.
async fn assert_listed(gw: &Gateway, request_id: &str, identity: &DeviceIdentity) {
    let stdout = gw.cli_ok(&["devices", "list", "--json"]).await;
    let listing: Value = serde_json::from_str(stdout.trim()).unwrap_or_else(|e| panic!("not JSON ({e}): {stdout}"));
    let pending = listing["pending"].as_array().unwrap_or_else(|| panic!("no pending array: {listing}"));
    let request = pending
        .iter()
        .find(|r| r["requestId"] == request_id)
        .unwrap_or_else(|| panic!("request {request_id} not listed: {listing}"));
    assert_eq!(request["deviceId"], identity.device_id());
    assert_eq!(request["publicKey"], identity.public_key_b64url());
    assert_eq!(request["role"], "operator");
    assert_eq!(request["scopes"], json!(["operator.read"]));
    // Upstream lists pending requests as `DevicePairRequested[]`: the closed object of the
    // `device.pair.requested` event, nothing beside its fields.
    for entry in pending {
        if let Err(v) = SchemaValidator::global().validate_shape("DevicePairRequestedEvent", entry, "device.pair.list")
        {
            panic!("a pending entry is not a DevicePairRequested: {v:?}");
        }
    }
    assert_eq!((request["isRepair"].clone(), request["silent"].clone()), (json!(false), json!(false)));
    assert_eq!(request["roles"], json!(["operator"]));
}

#[tokio::test]
async fn unpaired_v3_device_is_approved_with_the_cli_and_uses_its_device_token_until_revoked() {
    let gw = Gateway::start();
    let identity = DeviceIdentity::generate();
    let opts = || device_options(&gw, &identity, SignatureVersion::V3);

    let request_id = expect_pairing_required(opts(), &identity).await;
    assert_listed(&gw, &request_id, &identity).await;
    let table = gw.cli_ok(&["devices", "list"]).await;
    assert!(table.contains(&request_id), "human listing shows the request id:\n{table}");

    gw.cli_ok(&["devices", "approve", &request_id]).await;

    let client = Client::connect(opts()).await.expect("approved device is admitted");
    let auth = &client.hello().auth;
    assert_eq!(auth.role, "operator");
    assert!(auth.scopes.iter().any(|s| s == "operator.read"), "granted scopes: {:?}", auth.scopes);
    let device_token = auth.device_token.clone().expect("hello-ok.auth.deviceToken after approval");
    client.close().await;

    let client = Client::connect(opts().device_token(&device_token)).await.expect("device token is accepted");
    assert_eq!(client.hello().auth.method, "device-token");
    let health = client.request("health", json!({})).await.expect("health");
    assert_eq!(health["ok"], true, "health: {health}");

    let listing: Value = serde_json::from_str(gw.cli_ok(&["devices", "list", "--json"]).await.trim()).unwrap();
    assert!(
        listing["paired"].as_array().unwrap().iter().any(|d| d["deviceId"] == identity.device_id()),
        "approved device is listed as paired: {listing}"
    );
    assert!(listing["pending"].as_array().unwrap().iter().all(|r| r["requestId"] != request_id.as_str()));

    gw.cli_ok(&["devices", "revoke", identity.device_id()]).await;
    let closed = tokio::time::timeout(Duration::from_secs(5), client.closed())
        .await
        .expect("revoking the device closes its open connection");
    assert_eq!(closed.code, Some(4001), "close: {closed}");

    let err =
        Client::connect(opts().device_token(&device_token)).await.expect_err("revoked device token must not work");
    let ClientError::Handshake { close_code, .. } = &err else { panic!("expected a refused connect, got {err:?}") };
    assert_eq!(*close_code, Some(1008), "refusal: {err:?}");
}

#[tokio::test]
async fn unpaired_v2_device_is_approved_and_gets_a_working_device_token() {
    let gw = Gateway::start();
    let identity = DeviceIdentity::generate();
    let opts = || device_options(&gw, &identity, SignatureVersion::V2);

    let request_id = expect_pairing_required(opts(), &identity).await;
    assert_listed(&gw, &request_id, &identity).await;
    gw.cli_ok(&["devices", "approve", &request_id]).await;

    let client = Client::connect(opts()).await.expect("approved v2 device is admitted");
    let device_token = client.hello().auth.device_token.clone().expect("hello-ok.auth.deviceToken");
    client.close().await;

    let client = Client::connect(opts().device_token(&device_token)).await.expect("device token is accepted");
    assert_eq!(client.hello().auth.method, "device-token");
    client.request("health", json!({})).await.expect("health");
    client.close().await;
}

#[tokio::test]
async fn rejected_device_is_still_refused() {
    let gw = Gateway::start();
    let identity = DeviceIdentity::generate();
    let opts = || device_options(&gw, &identity, SignatureVersion::V3);

    let request_id = expect_pairing_required(opts(), &identity).await;
    let stdout = gw.cli_ok(&["devices", "reject", &request_id, "--json"]).await;
    let answer: Value = serde_json::from_str(stdout.trim()).unwrap();
    assert_eq!(answer["decision"], "rejected", "{answer}");

    let err = Client::connect(opts()).await.expect_err("a rejected device is not admitted");
    assert_eq!(err.detail_code(), Some("PAIRING_REQUIRED"), "{err:?}");
}

#[tokio::test]
async fn cli_call_prints_payloads_and_gateway_errors_with_exit_codes() {
    let gw = Gateway::start();

    let stdout = gw.cli_ok(&["call", "health", "--json"]).await;
    assert_eq!(stdout.lines().count(), 1, "--json prints one line: {stdout}");
    let health: Value = serde_json::from_str(stdout.trim()).unwrap();
    assert_eq!(health["ok"], true, "{health}");

    let (code, stdout, _) = gw.cli(&["call", "no.such.method", "--json"]).await;
    assert_eq!(code, 1);
    let error: Value = serde_json::from_str(stdout.trim()).unwrap();
    assert_eq!(error["ok"], false, "{error}");
    assert_eq!(error["error"]["code"], "INVALID_REQUEST", "{error}");

    let status = gw.cli_ok(&["status"]).await;
    assert!(status.contains("auth: token"), "{status}");
    assert!(status.contains("pairing: 0 pending requests"), "{status}");
}

#[tokio::test]
async fn cli_explains_a_wrong_token_and_a_gateway_that_is_not_running() {
    let gw = Gateway::start();
    let out = tokio::process::Command::new(env!("CARGO_BIN_EXE_clawgate"))
        .args(["call", "health", "--url", &gw.url, "--token", "wrong", "--state-dir"])
        .arg(gw.state.path())
        .env_remove("CLAWGATE_GATEWAY_TOKEN")
        .output()
        .await
        .unwrap();
    assert_eq!(out.status.code(), Some(1));
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(stderr.contains("Check the token"), "{stderr}");

    let port = {
        let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        l.local_addr().unwrap().port()
    };
    let out = tokio::process::Command::new(env!("CARGO_BIN_EXE_clawgate"))
        .args(["status", "--url", &format!("ws://127.0.0.1:{port}"), "--token", "x", "--state-dir"])
        .arg(gw.state.path())
        .output()
        .await
        .unwrap();
    assert_eq!(out.status.code(), Some(1));
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(stderr.contains("Is `clawgate gateway` running on that port?"), "{stderr}");
}

/// Silent pairing is for clients on this machine: a device with the right token connecting
/// straight to loopback is admitted at once, but the same connect relayed by a same-host
/// reverse proxy (it carries `X-Forwarded-For`) comes from anywhere and must be approved first.
#[tokio::test]
async fn loopback_silent_pairing_does_not_extend_to_clients_behind_a_local_proxy() {
    let gw = Gateway::start();
    let direct = DeviceIdentity::generate();
    let client = Client::connect(device_options(&gw, &direct, SignatureVersion::V3).token(TOKEN))
        .await
        .expect("a direct local device with the token is paired silently");
    drop(client);

    let proxied = DeviceIdentity::generate();
    let opts =
        device_options(&gw, &proxied, SignatureVersion::V3).token(TOKEN).header("X-Forwarded-For", "203.0.113.7");
    let request_id = expect_pairing_required(opts, &proxied).await;
    assert_listed(&gw, &request_id, &proxied).await;
}
