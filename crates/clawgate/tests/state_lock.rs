//! One gateway per state directory: a second `clawgate gateway` on the same state dir is refused
//! with a message naming the first, and a first one killed with SIGKILL leaves no stale lock.

use std::process::Command;

use clawgate_testkit::TestGateway;

const BIN: &str = env!("CARGO_BIN_EXE_clawgate");

#[tokio::test]
async fn a_second_gateway_on_the_same_state_dir_is_refused_until_the_first_dies() {
    let mut first = TestGateway::builder(BIN).config("{}").start().await.unwrap_or_else(|e| panic!("start: {e:#}"));
    let pid = first.pid().expect("first pid");
    let state = first.state_dir().to_path_buf();

    let second = Command::new(BIN)
        .args(["gateway", "--port", "0", "--bind", "loopback", "--state-dir"])
        .arg(&state)
        .env("NO_COLOR", "1")
        .output()
        .expect("run a second clawgate");
    let stderr = String::from_utf8_lossy(&second.stderr);
    assert!(!second.status.success(), "the second gateway must not start: {stderr}");
    assert!(
        stderr.contains(&format!("pid {pid}, port {}", first.port())),
        "the message names the running gateway's pid and port: {stderr}"
    );
    assert!(stderr.contains("--state-dir"), "and says what to do: {stderr}");
    assert!(!String::from_utf8_lossy(&second.stdout).contains("listening on"), "it never listened");
    // The refused start did not disturb the first: it still answers.
    let res = reqwest::get(format!("{}/healthz", first.http_url())).await.expect("GET /healthz");
    assert!(res.status().is_success(), "the first gateway still serves");

    let doctor = Command::new(BIN).args(["doctor", "--state-dir"]).arg(&state).output().expect("run doctor");
    let report = String::from_utf8_lossy(&doctor.stdout);
    assert!(report.contains(&format!("a gateway is running on this state directory (pid {pid}")), "{report}");

    // SIGKILL gives the first no chance to clean up; the lock still goes with the process.
    first.kill9().await.expect("kill -9 the first gateway");
    let third = TestGateway::builder(BIN)
        .config("{}")
        .state_dir(&state)
        .start()
        .await
        .unwrap_or_else(|e| panic!("a gateway starts once the first is dead: {e:#}"));
    let lock = std::fs::read_to_string(state.join("gateway.lock")).expect("lock file");
    assert!(lock.contains(&format!("\"pid\":{}", third.pid().expect("pid"))), "the new holder is recorded: {lock}");
    drop(third);
    drop(first);
}
