//! The relay end to end (issue 15, "Relay in headless Chromium"): the real clawgate binary with
//! a fake model, the real `compose-relay` binary in front of it, and `tests/node/compose_relay.mjs`
//! driving two users in headless Chromium. The script prints `STOP` / `START` when it wants the
//! gateway stopped / started again; everything else it checks itself and reports as one JSON line.

use std::path::PathBuf;
use std::process::Stdio;
use std::time::Duration;

use clawgate_testkit::fake_openai::{FakeOpenAi, Script};
use clawgate_testkit::{OpenClawPeers, TestGateway};
use serde_json::{Value, json};
use tokio::io::{AsyncBufReadExt, AsyncReadExt, BufReader};
use tokio::process::Command;

const RELAY: &str = env!("CARGO_BIN_EXE_compose-relay");
/// What the default fake script streams.
const HELLO: &str = "Hello from the fake model";
const RUN_TIMEOUT: Duration = Duration::from_secs(300);

/// The clawgate binary of this build (`cargo nextest run --workspace` builds it with the tests).
fn clawgate_bin() -> PathBuf {
    let exe = std::env::current_exe().expect("the test's path");
    let dir = exe.parent().and_then(|deps| deps.parent()).expect("target/<profile>");
    let bin = dir.join(format!("clawgate{}", std::env::consts::EXE_SUFFIX));
    assert!(bin.exists(), "{} is missing: build it first (cargo build -p clawgate)", bin.display());
    bin
}

fn peers_required() -> bool {
    std::env::var("CLAWGATE_REQUIRE_PEERS").is_ok_and(|v| !v.is_empty() && v != "0")
}

/// Chromium, playwright-core and node, or why not.
async fn browser_tools() -> Result<(PathBuf, PathBuf), String> {
    let script = OpenClawPeers::workspace_root().join("scripts/install-browser.sh");
    let check = std::process::Command::new("bash")
        .arg(&script)
        .arg("--check")
        .stdin(Stdio::null())
        .output()
        .map_err(|e| format!("running {}: {e}", script.display()))?;
    if !check.status.success() {
        return Err(String::from_utf8_lossy(&check.stderr).trim().to_owned());
    }
    let dir = String::from_utf8_lossy(&check.stdout).lines().last().unwrap_or_default().trim().to_owned();
    let peers = OpenClawPeers::get().await.map_err(|e| format!("node (from the OpenClaw peers install): {e:#}"))?;
    Ok((peers.node(), PathBuf::from(dir)))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_users_chat_privately_and_together_and_the_page_survives_a_gateway_restart() {
    let (node, playwright_dir) = match browser_tools().await {
        Ok(tools) => tools,
        Err(why) if peers_required() => panic!("the relay browser test needs Chromium and playwright-core: {why}"),
        Err(why) => {
            eprintln!("\n*** SKIPPED the relay browser test: {why}\n*** run scripts/install-browser.sh\n");
            return;
        }
    };
    let fake = FakeOpenAi::start(Script::default()).await.expect("starting the fake model");
    let config = json!({
        "models": {"providers": {"fake": {
            "baseUrl": fake.base_url(), "apiKey": "fake-key", "api": "openai-completions",
            "models": [{"id": "fake-model", "name": "Fake Model"}],
        }}},
        "agents": {"defaults": {"model": {"primary": "fake/fake-model"}}},
    })
    .to_string();
    let mut gw = TestGateway::builder(clawgate_bin()).config(config).start().await.expect("starting clawgate");

    let dir = tempfile::tempdir().expect("temp dir");
    let users = dir.path().join("users.txt");
    let acl = dir.path().join("acl.txt");
    std::fs::write(
        &users,
        format!(
            "ann:{}\nbob:{}\n",
            compose_relay::hash_password("ann-password").expect("hash"),
            compose_relay::hash_password("bob-password").expect("hash")
        ),
    )
    .expect("users file");
    std::fs::write(&acl, "plan: ann bob\nsecret: ann\n").expect("acl file");

    let mut relay = Command::new(RELAY)
        .args(["serve", "--listen", "127.0.0.1:0", "--gateway", &gw.ws_url()])
        .arg("--users")
        .arg(&users)
        .arg("--acl")
        .arg(&acl)
        .env("CLAWGATE_TOKEN", gw.expect_token())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .kill_on_drop(true)
        .spawn()
        .expect("starting compose-relay");
    let mut relay_out = BufReader::new(relay.stdout.take().expect("stdout")).lines();
    let port = tokio::time::timeout(Duration::from_secs(30), async {
        while let Some(line) = relay_out.next_line().await.expect("relay stdout") {
            if let Some(rest) = line.strip_prefix("compose-relay listening on http://127.0.0.1:") {
                return rest.trim_end_matches('/').parse::<u16>().expect("port");
            }
        }
        panic!("compose-relay exited before listening");
    })
    .await
    .expect("compose-relay listens within 30 s");

    let root = OpenClawPeers::workspace_root();
    let mut child = Command::new(&node)
        .arg(root.join("tests/node/compose_relay.mjs"))
        .env("RELAY_A", format!("http://127.0.0.1:{port}"))
        .env("RELAY_B", format!("http://localhost:{port}"))
        .env("EXPECT_REPLY", HELLO)
        .env("PLAYWRIGHT_DIR", &playwright_dir)
        .env("CHROMIUM", std::env::var("CLAWGATE_CHROMIUM").unwrap_or_else(|_| "/usr/bin/chromium".into()))
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .kill_on_drop(true)
        .spawn()
        .expect("starting node");
    let mut stderr = child.stderr.take().expect("stderr");
    let stderr_task = tokio::spawn(async move {
        let mut text = String::new();
        let _ = stderr.read_to_string(&mut text).await;
        text
    });
    let mut lines = BufReader::new(child.stdout.take().expect("stdout")).lines();
    let mut stdout = Vec::new();
    let run = async {
        while let Some(line) = lines.next_line().await.expect("reading the script's output") {
            match line.trim() {
                "STOP" => {
                    gw.terminate().await.unwrap_or_else(|e| panic!("stopping the gateway: {e:#}"));
                }
                "START" => gw.restart().await.unwrap_or_else(|e| panic!("starting the gateway again: {e:#}")),
                _ => {}
            }
            stdout.push(line);
        }
        child.wait().await.expect("waiting for node")
    };
    let status = tokio::time::timeout(RUN_TIMEOUT, run).await;
    let stderr = stderr_task.await.unwrap_or_default();
    let _ = relay.start_kill();
    let mut relay_err = String::new();
    if let Some(mut e) = relay.stderr.take() {
        let _ = tokio::time::timeout(Duration::from_secs(5), e.read_to_string(&mut relay_err)).await;
    }
    let describe = format!(
        "--- stdout ---\n{}\n--- stderr ---\n{stderr}\n--- relay stderr ---\n{relay_err}\n--- gateway ---\n{}",
        stdout.join("\n"),
        gw.describe_output()
    );
    let status = status.unwrap_or_else(|_| panic!("the browser run took longer than {RUN_TIMEOUT:?}\n{describe}"));
    let result: Value = stdout
        .iter()
        .rev()
        .find_map(|l| serde_json::from_str(l).ok())
        .unwrap_or_else(|| panic!("no JSON result line\n{describe}"));
    assert!(status.success() && result["ok"] == true, "the browser run failed ({status})\n{describe}");

    // What reached the model: each chat under its own session, with the page's context.
    let requests = fake.chat_requests();
    assert_eq!(requests.len(), 3, "three turns reached the model: {requests:#?}");
    let last_user = |i: usize| -> String {
        let messages = requests[i].body["messages"].as_array().cloned().unwrap_or_default();
        let last = messages.iter().rev().find(|m| m["role"] == "user").cloned().unwrap_or_default();
        last["content"].as_str().unwrap_or_default().to_owned()
    };
    assert!(last_user(0).starts_with("hello from ann\n\n<client-context>"), "{}", last_user(0));
    assert!(
        last_user(0).contains(r#""documentId":"plan""#) && last_user(0).contains(r#""from":"ann""#),
        "{}",
        last_user(0)
    );
    assert!(last_user(1).starts_with("[bob] bob in shared"), "{}", last_user(1));
    assert!(last_user(2).starts_with("after the restart"), "{}", last_user(2));
    // ann's private turn after the restart carried her earlier turn, and not bob's.
    let after = requests[2].body["messages"].to_string();
    assert!(after.contains("hello from ann") && !after.contains("bob in shared"), "{after}");
}
