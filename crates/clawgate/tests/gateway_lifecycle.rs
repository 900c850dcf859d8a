//! The gateway as a process: first start, graceful stop, ticks and presence, config editing and
//! hot reload, password auth, the scope-capping header, HTTP health routes, and the operator
//! commands `config validate` and `doctor`.

use std::process::Command;
use std::time::Duration;

use clawgate_testkit::{RawClient, TestGateway};
use serde_json::{Value, json};

const BIN: &str = env!("CARGO_BIN_EXE_clawgate");
const WAIT: Duration = Duration::from_secs(5);

async fn start(config: &str) -> TestGateway {
    TestGateway::builder(BIN).config(config).start().await.unwrap_or_else(|e| panic!("starting clawgate: {e:#}"))
}

async fn connected(gw: &TestGateway, token: Option<&str>, overrides: Value) -> RawClient {
    let mut c = RawClient::connect(&gw.ws_url()).await.expect("ws open");
    c.handshake(token, &overrides).await.unwrap_or_else(|e| panic!("handshake: {e:#}"));
    c
}

fn ok_payload(res: &Value) -> &Value {
    assert_eq!(res["ok"], true, "expected ok: {res}");
    &res["payload"]
}

#[tokio::test]
async fn first_start_generates_a_private_token_and_says_where_it_is() {
    let gw = TestGateway::builder(BIN).no_token().start().await.expect("start");
    let token_file = gw.state_dir().join("gateway-token");
    let token = std::fs::read_to_string(&token_file).expect("token file written on first start");
    assert!(token.len() >= 32, "token is long and random: {token}");
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        let mode = std::fs::metadata(&token_file).unwrap().permissions().mode() & 0o777;
        assert_eq!(mode, 0o600, "only the owner may read the token");
    }
    let out = gw.describe_output();
    assert!(out.contains(&token_file.display().to_string()), "the banner tells where the token is: {out}");
    assert!(!out.contains(token.trim()), "the token itself is never printed or logged: {out}");
    assert!(!gw.read_log().contains(token.trim()), "the token never reaches the log");
    let mut c = connected(&gw, Some(token.trim()), json!({})).await;
    let res = c.request("health", None).await.expect("health");
    assert_eq!(ok_payload(&res)["ok"], true);
}

#[tokio::test]
async fn token_survives_a_restart() {
    let mut gw = TestGateway::builder(BIN).no_token().start().await.expect("start");
    let before = std::fs::read_to_string(gw.state_dir().join("gateway-token")).expect("token");
    gw.restart().await.expect("restart");
    let after = std::fs::read_to_string(gw.state_dir().join("gateway-token")).expect("token");
    assert_eq!(before, after);
    connected(&gw, Some(after.trim()), json!({})).await;
}

#[test]
fn binding_off_loopback_without_auth_is_refused() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("clawgate.json5"), "{gateway: {bind: \"lan\", auth: {mode: \"none\"}}}").unwrap();
    let out = Command::new(BIN)
        .args(["gateway", "--port", "0", "--state-dir"])
        .arg(dir.path())
        .output()
        .expect("run clawgate");
    assert!(!out.status.success(), "must refuse to start");
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(stderr.contains("refusing to bind") || stderr.contains("without auth"), "says why: {stderr}");
}

#[tokio::test]
async fn sigterm_broadcasts_shutdown_and_closes_with_1012() {
    let mut gw = start("{}").await;
    let token = gw.token().map(str::to_owned);
    let mut c = connected(&gw, token.as_deref(), json!({})).await;
    gw.terminate().await.expect("SIGTERM");
    let ev = c.recv_event("shutdown", WAIT).await.expect("shutdown event");
    assert!(ev["payload"]["reason"].as_str().is_some_and(|r| !r.is_empty()), "{ev}");
    let (code, reason) = c.expect_close(WAIT).await.expect("close");
    assert_eq!((code, reason.as_str()), (1012, "service restart"));
}

#[tokio::test]
async fn ticks_arrive_at_the_advertised_interval_with_per_connection_seq() {
    let gw = start("{gateway: {tickIntervalMs: 300}}").await;
    let mut c = RawClient::connect(&gw.ws_url()).await.expect("ws");
    let hello = c.handshake(gw.token(), &json!({})).await.expect("hello");
    assert_eq!(hello["policy"]["tickIntervalMs"], 300);
    let first = c.recv_event("tick", WAIT).await.expect("tick");
    let second = c.recv_event("tick", WAIT).await.expect("tick");
    let (a, b) = (first["seq"].as_u64().unwrap(), second["seq"].as_u64().unwrap());
    assert!(b > a, "seq grows per connection: {a} then {b}");
    assert!(second["payload"]["ts"].as_i64() >= first["payload"]["ts"].as_i64());
}

#[tokio::test]
async fn ui_clients_appear_in_presence_with_state_version() {
    let gw = start("{}").await;
    let token = gw.token().map(str::to_owned);
    let mut watcher = connected(&gw, token.as_deref(), json!({})).await;
    // A UI client (not a CLI/backend/probe) is announced to operator.read watchers.
    let mut c = RawClient::connect(&gw.ws_url()).await.expect("ws");
    let hello = c
        .handshake(token.as_deref(), &json!({"client": {"id": "test", "mode": "test"}, "scopes": ["operator.read"]}))
        .await
        .expect("hello");
    let initial = hello["snapshot"]["stateVersion"]["presence"].as_u64().unwrap();
    let ev = watcher.recv_event("presence", WAIT).await.expect("presence");
    let presence = ev["payload"]["presence"].as_array().expect("list");
    assert!(presence.iter().any(|p| p["mode"] == "gateway"), "the gateway lists itself: {ev}");
    assert!(ev["stateVersion"]["presence"].as_u64().unwrap() >= initial, "{ev}");
    let res = watcher.request("system-presence", None).await.expect("system-presence");
    assert!(ok_payload(&res).as_array().unwrap().len() >= 2, "{res}");
}

#[tokio::test]
async fn config_get_redacts_secrets_and_patch_is_validated_written_and_hot_applied() {
    let gw = TestGateway::builder(BIN)
        .no_token()
        .config("{gateway: {auth: {mode: \"token\", token: \"first-token-123\"}}}")
        .start()
        .await
        .expect("start");
    let mut admin = connected(&gw, Some("first-token-123"), json!({})).await;
    let got = admin.request("config.get", None).await.expect("config.get");
    let cfg = ok_payload(&got);
    assert_eq!(cfg["config"]["gateway"]["auth"]["token"], "__OPENCLAW_REDACTED__", "{cfg}");
    assert!(!got.to_string().contains("first-token-123"), "the secret is never sent back");
    let hash = cfg["hash"].as_str().unwrap().to_owned();

    // Invalid: refused with the key and line, nothing written.
    let bad = admin
        .request("config.patch", Some(json!({"raw": "{gateway: {auth: {mode: \"tokn\"}}}", "baseHash": hash})))
        .await
        .expect("res");
    assert_eq!(bad["ok"], false, "{bad}");
    let msg = bad["error"]["message"].as_str().unwrap();
    assert!(msg.contains("gateway.auth.mode") && msg.contains("did you mean"), "{msg}");
    // A stale baseHash is refused.
    let stale = admin
        .request(
            "config.patch",
            Some(json!({"raw": "{gateway: {auth: {rateLimit: {maxAttempts: 4}}}}", "baseHash": "nope"})),
        )
        .await
        .expect("res");
    assert_eq!(stale["ok"], false, "{stale}");

    // Valid hot change: the new token applies at once and shared-secret clients must reconnect.
    let mut other = connected(&gw, Some("first-token-123"), json!({})).await;
    let ok = admin
        .request(
            "config.patch",
            Some(json!({"raw": "{gateway: {auth: {token: \"second-token-456\"}}}", "baseHash": hash})),
        )
        .await
        .expect("res");
    let applied = ok_payload(&ok);
    assert_eq!(applied["restartRequired"], json!([]), "{applied}");
    let (code, reason) = other.expect_close(WAIT).await.expect("old-secret clients are closed");
    assert_eq!((code, reason.as_str()), (4001, "gateway auth changed"));
    let written = std::fs::read_to_string(gw.config_path().unwrap()).unwrap();
    assert!(written.contains("second-token-456"), "written to the file: {written}");
    let mut fresh = RawClient::connect(&gw.ws_url()).await.unwrap();
    let res = fresh.try_handshake(Some("first-token-123"), &json!({})).await.unwrap();
    assert_eq!(res["error"]["details"]["code"], "AUTH_TOKEN_MISMATCH", "{res}");
    connected(&gw, Some("second-token-456"), json!({})).await;

    // A restart-class key is written but reported as needing a restart.
    let new_hash = ok_payload(
        &connected(&gw, Some("second-token-456"), json!({})).await.request("config.get", None).await.unwrap(),
    )["hash"]
        .as_str()
        .unwrap()
        .to_owned();
    let mut admin2 = connected(&gw, Some("second-token-456"), json!({})).await;
    let res = admin2
        .request("config.patch", Some(json!({"raw": "{gateway: {port: 1}}", "baseHash": new_hash})))
        .await
        .expect("res");
    assert_eq!(ok_payload(&res)["restartRequired"], json!(["gateway.port"]), "{res}");
}

#[tokio::test]
async fn editing_the_config_file_is_picked_up_by_the_watcher() {
    let gw = TestGateway::builder(BIN)
        .no_token()
        .config("{gateway: {auth: {mode: \"token\", token: \"watch-token-1\"}}}")
        .start()
        .await
        .expect("start");
    let mut c = connected(&gw, Some("watch-token-1"), json!({})).await;
    std::fs::write(gw.config_path().unwrap(), "{gateway: {auth: {mode: \"token\", token: \"watch-token-2\"}}}")
        .unwrap();
    let (code, _) = c.expect_close(Duration::from_secs(10)).await.expect("closed after the secret changed");
    assert_eq!(code, 4001);
    connected(&gw, Some("watch-token-2"), json!({})).await;
    // A broken edit keeps the previous config in force.
    std::fs::write(gw.config_path().unwrap(), "{gateway: {auth: {mode: ").unwrap();
    clawgate_testkit::eventually(Duration::from_secs(10), "the broken edit is noticed", || {
        gw.read_log().contains("config file changed but is invalid").then_some(())
    })
    .await
    .unwrap();
    connected(&gw, Some("watch-token-2"), json!({})).await;
}

#[tokio::test]
async fn password_mode_accepts_an_argon2id_hash() {
    // Hash made with the same argon2 parameters clawgate uses; the password is "hunter2".
    let hash = clawgate_core::auth::hash_password("hunter2").unwrap();
    let gw = TestGateway::builder(BIN)
        .no_token()
        .config(format!("{{gateway: {{auth: {{mode: \"password\", password: \"{hash}\"}}}}}}"))
        .start()
        .await
        .expect("start");
    let mut c = RawClient::connect(&gw.ws_url()).await.unwrap();
    let ok = c.try_handshake(None, &json!({"auth": {"password": "hunter2"}})).await.unwrap();
    assert_eq!(ok["payload"]["auth"]["method"], "password", "{ok}");
    let mut bad = RawClient::connect(&gw.ws_url()).await.unwrap();
    let res = bad.try_handshake(None, &json!({"auth": {"password": "hunter3"}})).await.unwrap();
    assert_eq!(res["error"]["details"]["code"], "AUTH_PASSWORD_MISMATCH", "{res}");
}

#[tokio::test]
async fn scopes_header_caps_the_granted_scopes() {
    let gw = start("{}").await;
    let upgrade =
        RawClient::connect_with_headers(&gw.ws_url(), &[("x-openclaw-scopes", "operator.read")]).await.unwrap();
    let mut c = upgrade.accepted().unwrap();
    let hello = c.handshake(gw.token(), &json!({})).await.unwrap();
    assert_eq!(hello["auth"]["scopes"], json!(["operator.read"]), "{hello}");
    let res = c.request("config.patch", Some(json!({"raw": "{}"}))).await.unwrap();
    assert_eq!(res["error"]["code"], "FORBIDDEN", "{res}");
}

#[tokio::test]
async fn http_health_routes_and_landing_page_need_no_auth() {
    let gw = start("{}").await;
    let get = |path: &str| {
        let url = format!("{}{path}", gw.http_url());
        async move {
            let out = tokio::process::Command::new("curl").args(["-s", "-i", &url]).output().await.expect("curl");
            String::from_utf8_lossy(&out.stdout).into_owned()
        }
    };
    let h = get("/healthz").await;
    assert!(h.starts_with("HTTP/1.1 200") && h.contains(r#"{"ok":true,"status":"live"}"#), "{h}");
    let r = get("/readyz").await;
    assert!(r.starts_with("HTTP/1.1 200") && r.contains(r#""ready":true"#) && r.contains(r#""failing":[]"#), "{r}");
    let page = get("/").await;
    assert!(page.contains("clawgate") && page.contains("ws://"), "{page}");
    assert!(page.to_ascii_lowercase().contains("x-frame-options: deny"), "{page}");
    let missing = get("/nope").await;
    assert!(missing.starts_with("HTTP/1.1 404"), "{missing}");
}

#[test]
fn config_validate_names_file_line_and_key() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("clawgate.json5");
    std::fs::write(&path, "{\n  gateway: {\n    port: \"eighty\",\n  },\n}\n").unwrap();
    let out = Command::new(BIN).args(["config", "validate", "--config"]).arg(&path).output().unwrap();
    assert_eq!(out.status.code(), Some(1));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("clawgate.json5:3:") && err.contains("gateway.port"), "{err}");
    std::fs::write(&path, "{gateway: {port: 18790}}").unwrap();
    let out = Command::new(BIN).args(["config", "validate", "--config"]).arg(&path).output().unwrap();
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
}

#[test]
fn doctor_reports_problems_with_fixes() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("clawgate.json5"), "{gateway: {auth: {mode: \"bogus\"}}}").unwrap();
    let out = Command::new(BIN).args(["doctor", "--state-dir"]).arg(dir.path()).output().unwrap();
    assert_eq!(out.status.code(), Some(1));
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(text.contains("FAIL") && text.contains("fix:") && text.contains("gateway.auth.mode"), "{text}");
}

#[tokio::test]
async fn session_scoped_clients_only_hear_subscribed_sessions() {
    // No model is reachable here: the run ends with a chat `error` event, which is enough to see
    // who hears about it.
    let gw =
        start("{models: {providers: {ollama: {baseUrl: \"http://127.0.0.1:9/v1\", api: \"openai-completions\"}}}}")
            .await;
    let token = gw.token().map(str::to_owned);
    let mut scoped = connected(&gw, token.as_deref(), json!({"caps": ["session-scoped-events"]})).await;
    let mut plain = connected(&gw, token.as_deref(), json!({})).await;
    let sub = scoped.request("sessions.messages.subscribe", Some(json!({"key": "agent:main:mine"}))).await.unwrap();
    assert_eq!(sub["ok"], true, "{sub}");
    let mut sender = connected(&gw, token.as_deref(), json!({})).await;
    for (key, idem) in [("agent:main:other", "o-1"), ("agent:main:mine", "m-1")] {
        let res = sender
            .request("chat.send", Some(json!({"sessionKey": key, "message": "hi", "idempotencyKey": idem})))
            .await
            .unwrap();
        assert_eq!(res["ok"], true, "{res}");
    }
    // The plain client hears both sessions; the scoped one only its own.
    let mut plain_keys = std::collections::BTreeSet::new();
    while plain_keys.len() < 2 {
        let ev = plain.recv_event("chat", Duration::from_secs(10)).await.expect("chat event");
        plain_keys.insert(ev["payload"]["sessionKey"].as_str().unwrap().to_owned());
    }
    let deadline = tokio::time::Instant::now() + Duration::from_secs(3);
    let mut saw_mine = false;
    while tokio::time::Instant::now() < deadline {
        match scoped.recv_event("chat", Duration::from_millis(500)).await {
            Ok(ev) => {
                let key = ev["payload"]["sessionKey"].as_str().unwrap().to_owned();
                assert_eq!(key, "agent:main:mine", "a session-scoped client heard another session: {ev}");
                saw_mine = true;
            }
            Err(_) if saw_mine => break,
            Err(_) => {}
        }
    }
    assert!(saw_mine, "the subscribed session's events still arrive");
}

/// Services named in the log's "service stopped" lines (the log file is JSON lines).
fn stopped_services(log: &str) -> Vec<String> {
    log.lines()
        .filter_map(|l| serde_json::from_str::<Value>(l).ok())
        .filter(|l| l["message"] == "service stopped")
        .filter_map(|l| l["service"].as_str().map(str::to_owned))
        .collect()
}

/// SIGTERM while a chat run streams (its model never answers) and a cron job fires every second:
/// the stop waits for every service's tasks, so each run records how it ended *before* the store
/// closes. Facts checked: a clean exit, one "service stopped" line per service and none left
/// running, the WAL folded into the database, and after a restart no run or cron receipt that
/// the last process left unfinished.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigterm_during_activity_waits_for_every_service_then_closes_the_store() {
    use clawgate_testkit::fake_openai::{FakeOpenAi, Script, Turn};
    let model = FakeOpenAi::start(Script::new().turn(Turn::hang()).otherwise(Turn::echo("echo: "))).await.unwrap();
    let cfg = json!({
        "models": {"providers": {"fake": {"baseUrl": model.base_url(), "apiKey": "k", "api": "openai-completions",
                                          "models": [{"id": "m"}]}}},
        "agents": {"defaults": {"model": {"primary": "fake/m"}}},
    });
    let mut gw = start(&cfg.to_string()).await;
    let token = gw.token().map(str::to_owned);
    let mut c = connected(&gw, token.as_deref(), json!({})).await;
    let res = c
        .request(
            "chat.send",
            Some(json!({"sessionKey": "agent:main:main", "message": "never answered", "idempotencyKey": "k1"})),
        )
        .await
        .expect("chat.send");
    ok_payload(&res);
    model.wait_for_requests(1, Duration::from_secs(20)).await.expect("the chat run reached the model");
    let job = json!({
        "name": "busy", "schedule": {"kind": "cron", "expr": "* * * * * *"}, "sessionTarget": "isolated",
        "wakeMode": "now", "payload": {"kind": "agentTurn", "message": "tick"}, "catchUp": "skip",
    });
    let res = c.request("cron.add", Some(job)).await.expect("cron.add");
    let job_id = ok_payload(&res)["id"].as_str().expect("job id").to_owned();
    // One slot fully run, and the scheduler still going when the signal lands.
    loop {
        let ev = c.recv_event("cron", Duration::from_secs(20)).await.expect("cron event");
        if ev["payload"]["action"] == "finished" {
            break;
        }
    }

    let status = gw.terminate().await.expect("SIGTERM");
    assert!(status.success(), "clean exit: {status:?}\n{}", gw.describe_output());
    let log = gw.read_log();
    let stopped = stopped_services(&log);
    for service in ["server", "maintenance", "agent", "cron", "ws-requests"] {
        assert!(stopped.iter().any(|s| s == service), "{service} stopped: {stopped:?}");
    }
    assert!(!log.contains("service did not stop in time"), "{}", gw.describe_output());
    assert!(log.contains("every service stopped"), "{}", gw.describe_output());
    let wal = gw.state_dir().join("clawgate.db-wal");
    let wal_len = std::fs::metadata(&wal).map(|m| m.len()).unwrap_or(0);
    assert_eq!(wal_len, 0, "the WAL was checkpointed into the database at close");

    let before = log.len();
    gw.restart().await.expect("restart on the same state dir");
    let mut c = connected(&gw, token.as_deref(), json!({})).await;
    let res = c.request("cron.runs", Some(json!({"id": job_id}))).await.expect("cron.runs");
    let runs = ok_payload(&res)["entries"].as_array().cloned().unwrap_or_default();
    assert!(!runs.is_empty());
    for r in &runs {
        let err = r["error"].as_str().unwrap_or_default();
        assert!(!err.contains("restarted while this run was in progress"), "receipt left unfinished: {r}");
    }
    let log = gw.read_log();
    let restarted = log.get(before..).unwrap_or_default();
    assert!(!restarted.contains("runs were cut short by the last shutdown"), "{restarted}");
    assert!(!restarted.contains("database is locked"), "{restarted}");
}

#[tokio::test]
async fn the_log_file_rotates_by_size_and_keeps_only_the_configured_count() {
    let gw = start(r#"{logging: {level: "debug", rotate: {maxBytes: 4096, keep: 2}}}"#).await;
    let token = gw.token().map(str::to_owned);
    let log = gw.log_path();
    let kept = |n: u32| std::path::PathBuf::from(format!("{}.{n}", log.display()));
    // Each connection logs a few debug lines; keep connecting until the file rotated twice.
    clawgate_testkit::wait_until(Duration::from_secs(60), "two rotations of the log file", || {
        let (url, token, second) = (gw.ws_url(), token.clone(), kept(2));
        async move {
            if second.exists() {
                return Some(());
            }
            let mut c = RawClient::connect(&url).await.ok()?;
            c.handshake(token.as_deref(), &json!({})).await.ok()?;
            c.request("health", None).await.ok()?;
            None
        }
    })
    .await
    .unwrap_or_else(|e| panic!("{e:#}\n{}", gw.describe_output()));
    assert!(!kept(3).exists(), "only `keep` old files are kept");
    for file in [log.clone(), kept(1), kept(2)] {
        let text = std::fs::read_to_string(&file).unwrap_or_default();
        // Only a single line longer than the cap may make a file bigger: it is never split.
        let (bytes, lines) = (text.len(), text.lines().count());
        assert!(bytes <= 4096 || lines == 1, "{} has {lines} lines in {bytes} bytes, over maxBytes", file.display());
        for line in text.lines() {
            serde_json::from_str::<Value>(line)
                .unwrap_or_else(|e| panic!("a torn line in {}: {e}: {line}", file.display()));
        }
    }
}
