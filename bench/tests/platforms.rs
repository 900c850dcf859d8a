//! The chat-platform scenarios, run small against the gateway binary built beside this tool:
//! each plays its platform, pushes 20 messages over 5 chats, and must see every one answered
//! exactly once (the tool itself exits non-zero on a missing or doubled reply; these tests also
//! read its JSON line). They show the scenarios work before anyone spends a release build on
//! them, and that the gateway still answers each platform under a little concurrency.

use std::path::PathBuf;
use std::process::Command;

use serde_json::Value;

const BENCH: &str = env!("CARGO_BIN_EXE_clawgate-bench");

/// The gateway binary of the same profile (`target/<profile>/clawgate`), or
/// `CLAWGATE_BENCH_GATEWAY_BIN`.
fn gateway_bin() -> PathBuf {
    if let Some(p) = std::env::var_os("CLAWGATE_BENCH_GATEWAY_BIN") {
        return PathBuf::from(p);
    }
    let bin = PathBuf::from(BENCH).with_file_name(format!("clawgate{}", std::env::consts::EXE_SUFFIX));
    assert!(
        bin.is_file(),
        "{} is missing: build the gateway first (cargo build -p clawgate), or set CLAWGATE_BENCH_GATEWAY_BIN",
        bin.display()
    );
    bin
}

/// Runs `clawgate-bench <scenario> <extra…>` small; its JSON figures.
fn run_small(scenario: &str, extra: &[&str]) -> Value {
    let out = Command::new(BENCH)
        .arg(scenario)
        .args(extra)
        .arg("--gateway-bin")
        .arg(gateway_bin())
        .args(["--chats", "5", "--messages", "20", "--warmup", "5", "--settle-ms", "500", "--json"])
        .output()
        .expect("running clawgate-bench");
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "clawgate-bench {scenario} failed ({}):\n{stderr}", out.status);
    let stdout = String::from_utf8_lossy(&out.stdout);
    let line = stdout.lines().find(|l| l.starts_with('{')).unwrap_or_else(|| panic!("no JSON line:\n{stderr}"));
    let v: Value = serde_json::from_str(line).expect("a JSON line");
    assert_eq!(v["scenario"], scenario);
    let f = v["figures"].clone();
    assert_eq!(
        (f["replies"].as_u64(), f["duplicates"].as_u64(), f["missing"].as_u64(), f["unexpected"].as_u64()),
        (Some(20), Some(0), Some(0), Some(0)),
        "{f}"
    );
    assert_eq!(f["latency"]["n"], 20, "{f}");
    f
}

#[test]
fn telegram_answers_every_message_exactly_once() {
    let f = run_small("telegram", &[]);
    assert!(f["get_updates_calls"].as_u64() > Some(0), "{f}");
}

#[test]
fn slack_events_api_answers_every_signed_post_exactly_once() {
    let f = run_small("slack", &["--mode", "http"]);
    // Warm-up and measured messages, each one signed POST answered 2xx.
    assert_eq!((f["webhook_posts"].as_u64(), f["webhook_refused"].as_u64()), (Some(25), Some(0)), "{f}");
    assert_eq!(f["post_message_calls"], 25, "{f}");
}

#[test]
fn slack_socket_mode_acknowledges_and_answers_every_envelope_once() {
    let f = run_small("slack", &["--mode", "socket"]);
    assert_eq!((f["envelopes"].as_u64(), f["acks"].as_u64()), (Some(25), Some(25)), "{f}");
}

#[test]
fn line_answers_every_webhook_once_by_reply_token() {
    let f = run_small("line", &[]);
    assert_eq!((f["webhook_posts"].as_u64(), f["webhook_refused"].as_u64()), (Some(25), Some(0)), "{f}");
    // Fresh tokens: every answer of the measured phase is a reply, none a push.
    assert_eq!((f["reply_calls"].as_u64(), f["push_fallbacks"].as_u64()), (Some(20), Some(0)), "{f}");
}

#[test]
fn whatsapp_answers_every_signed_webhook_exactly_once() {
    let f = run_small("whatsapp", &[]);
    assert_eq!((f["webhook_posts"].as_u64(), f["webhook_refused"].as_u64()), (Some(25), Some(0)), "{f}");
    assert_eq!((f["send_calls"].as_u64(), f["sends_rejected"].as_u64()), (Some(25), Some(0)), "{f}");
}

#[test]
fn whatsapp_delivery_statuses_make_no_turn() {
    let f = run_small("whatsapp", &["--statuses", "3"]);
    // Statuses are posted after each accepted send; whatever arrived was taken (2xx) and
    // answered by nothing (run_small checked: no duplicate, nothing unexpected).
    assert!(f["status_posts"].as_u64() > Some(0), "{f}");
    assert_eq!(f["webhook_refused"], 0, "{f}");
}
