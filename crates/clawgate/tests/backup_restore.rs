//! `clawgate backup` of a running gateway and `clawgate restore` into a fresh state directory:
//! the sessions and schedules come back, the config comes back as written (secret references
//! stay references), a restore is refused while a gateway runs and for files that are not a
//! clawgate state, and the replaced state is kept as `*.bak`.

use std::path::Path;
use std::process::{Command, Output};
use std::time::Duration;

use clawgate_testkit::fake_openai::{FakeOpenAi, Script, Turn};
use clawgate_testkit::{RawClient, TestGateway};
use serde_json::{Value, json};

const BIN: &str = env!("CARGO_BIN_EXE_clawgate");
const TURN_WAIT: Duration = Duration::from_secs(30);

fn clawgate(args: &[&str], state: &Path) -> Output {
    Command::new(BIN)
        .args(args)
        .arg("--state-dir")
        .arg(state)
        .env_remove("CLAWGATE_CONFIG")
        .env_remove("CLAWGATE_STATE_DIR")
        .output()
        .expect("run clawgate")
}

fn text(out: &Output) -> String {
    format!(
        "status {:?}\nstdout:\n{}\nstderr:\n{}",
        out.status,
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    )
}

async fn connect(gw: &TestGateway) -> RawClient {
    let mut c = RawClient::connect(&gw.ws_url()).await.unwrap_or_else(|e| panic!("ws open: {e:#}"));
    c.handshake(gw.token(), &json!({})).await.unwrap_or_else(|e| panic!("handshake: {e:#}"));
    c
}

async fn call(c: &mut RawClient, method: &str, params: Value) -> Value {
    let res = c.request(method, Some(params)).await.unwrap_or_else(|e| panic!("{method}: {e:#}"));
    assert_eq!(res["ok"], true, "{method}: {res}");
    res["payload"].clone()
}

/// Sends a message on `session` and waits for the turn's final `chat` event.
async fn turn(c: &mut RawClient, session: &str, key: &str) {
    call(c, "chat.send", json!({"sessionKey": session, "message": format!("hello {session}"), "idempotencyKey": key}))
        .await;
    let deadline = tokio::time::Instant::now() + TURN_WAIT;
    loop {
        let left = deadline.saturating_duration_since(tokio::time::Instant::now());
        let ev = c.recv_event("chat", left).await.unwrap_or_else(|e| panic!("chat event of {key}: {e:#}"));
        if ev["payload"]["runId"] == key && ev["payload"]["state"] == "final" {
            return;
        }
    }
}

fn session_keys(list: &Value) -> Vec<String> {
    let mut keys: Vec<String> = list["sessions"]
        .as_array()
        .map(|s| s.iter().filter_map(|s| s["key"].as_str().map(str::to_owned)).collect())
        .unwrap_or_default();
    keys.sort();
    keys
}

#[tokio::test]
async fn a_backup_of_a_running_gateway_restores_into_a_fresh_state_dir_with_its_sessions() {
    let fake = FakeOpenAi::start(Script::new().otherwise(Turn::text(["ok"]))).await.expect("fake model");
    // Written by hand, with a secret reference that must survive as a reference.
    let config = format!(
        r#"// restored as written
{{
  models: {{providers: {{fake: {{baseUrl: "{}", apiKey: {{env: "BACKUP_TEST_KEY"}}, api: "openai-completions",
    models: [{{id: "m", name: "M"}}]}}}}}},
  agents: {{defaults: {{model: {{primary: "fake/m"}}}}}},
}}
"#,
        fake.base_url()
    );
    let source_dir = tempfile::tempdir().unwrap();
    let source = source_dir.path().join("state");
    std::fs::create_dir_all(&source).unwrap();
    std::fs::write(source.join("clawgate.json5"), &config).unwrap();
    let gw = TestGateway::builder(BIN)
        .state_dir(&source)
        .env("BACKUP_TEST_KEY", "k")
        .start()
        .await
        .unwrap_or_else(|e| panic!("start: {e:#}"));
    let mut c = connect(&gw).await;
    turn(&mut c, "alpha", "run-alpha").await;
    turn(&mut c, "beta", "run-beta").await;
    let job = json!({
        "name": "yearly", "schedule": {"kind": "cron", "expr": "0 0 9 1 1 *"}, "sessionTarget": "isolated",
        "wakeMode": "now", "payload": {"kind": "agentTurn", "message": "hi"},
    });
    call(&mut c, "cron.add", job).await;
    let before = session_keys(&call(&mut c, "sessions.list", json!({})).await);
    assert_eq!(before.len(), 2, "{before:?}");

    // Backed up while it runs; it keeps serving meanwhile.
    let work = tempfile::tempdir().unwrap();
    let file = work.path().join("cg.backup");
    let out = clawgate(&["backup", file.to_str().unwrap()], &source);
    assert!(out.status.success(), "{}", text(&out));
    assert!(String::from_utf8_lossy(&out.stdout).contains("schema"), "{}", text(&out));
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        let mode = std::fs::metadata(&file).unwrap().permissions().mode() & 0o777;
        assert_eq!(mode, 0o600, "the backup holds secrets");
    }
    call(&mut c, "health", json!({})).await;
    let again = clawgate(&["backup", file.to_str().unwrap()], &source);
    assert!(!again.status.success(), "an existing backup is not overwritten without --force");

    // A restore into the running gateway's directory is refused, naming it.
    let refused = clawgate(&["restore", file.to_str().unwrap()], &source);
    assert!(!refused.status.success(), "{}", text(&refused));
    let pid = gw.pid().expect("pid");
    assert!(String::from_utf8_lossy(&refused.stderr).contains(&format!("pid {pid}")), "{}", text(&refused));

    // Into a fresh directory: the config as written, and a gateway there has the sessions.
    let target = work.path().join("restored");
    let out = clawgate(&["restore", file.to_str().unwrap()], &target);
    assert!(out.status.success(), "{}", text(&out));
    assert_eq!(std::fs::read_to_string(target.join("clawgate.json5")).unwrap(), config, "config restored as written");
    drop(c);
    drop(gw);
    let mut restored = TestGateway::builder(BIN)
        .state_dir(&target)
        .env("BACKUP_TEST_KEY", "k")
        .start()
        .await
        .unwrap_or_else(|e| panic!("start on the restored state: {e:#}"));
    let mut c = connect(&restored).await;
    assert_eq!(session_keys(&call(&mut c, "sessions.list", json!({})).await), before);
    let history = call(&mut c, "chat.history", json!({"sessionKey": "alpha"})).await;
    assert!(history["messages"].to_string().contains("hello alpha"), "{history}");
    let jobs = call(&mut c, "cron.list", json!({})).await;
    assert_eq!(jobs["total"], 1, "the schedule came back: {jobs}");
    drop(c);
    restored.terminate().await.expect("stop the restored gateway");

    // Restoring over an existing state keeps it as *.bak.
    let out = clawgate(&["restore", file.to_str().unwrap()], &target);
    assert!(out.status.success(), "{}", text(&out));
    let names: Vec<String> =
        std::fs::read_dir(&target).unwrap().map(|e| e.unwrap().file_name().to_string_lossy().into_owned()).collect();
    assert!(names.iter().any(|n| n.starts_with("clawgate.db.") && n.ends_with(".bak")), "{names:?}");
    assert!(names.iter().any(|n| n.starts_with("clawgate.json5.") && n.ends_with(".bak")), "{names:?}");
    assert!(!names.iter().any(|n| n == "clawgate.db-wal"), "no stale WAL beside the restored database: {names:?}");
}

#[test]
fn restore_refuses_a_file_that_is_not_a_clawgate_state_and_changes_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let state = dir.path().join("state");
    std::fs::create_dir_all(&state).unwrap();
    std::fs::write(state.join("clawgate.db"), "the current database").unwrap();
    let bogus = dir.path().join("notes.backup");
    std::fs::write(&bogus, "not a database, just text that is long enough to look like a header").unwrap();
    let out = clawgate(&["restore", bogus.to_str().unwrap()], &state);
    assert!(!out.status.success(), "{}", text(&out));
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(stderr.contains("not a clawgate backup") && stderr.contains("not a SQLite database"), "{stderr}");
    assert_eq!(std::fs::read_to_string(state.join("clawgate.db")).unwrap(), "the current database");
    assert_eq!(std::fs::read_dir(&state).unwrap().count(), 1, "nothing was added or moved");
}
