//! The real OpenClaw clients holding agent conversations through clawgate (contracts:
//! openclaw-live.md §3, §4, §5, §8 and §12 rows C3, C4, C10, C11; transcripts
//! `cli-agent-message`, `cleanhome-call-agent-expect-final`, `node-client-chat`, `cli-tui`,
//! `mini-gw-vs-real-tui`).
//!
//! Each test starts clawgate pointed at a [`FakeOpenAi`] that always answers "Hello from the fake
//! model" (as upstream's recorded fake did), puts a [`RecordingProxy`] in front of it, runs one
//! real client (`openclaw` 2026.9.6 or `openclaw-node` 0.14.0, installed from npm by
//! `scripts/install-openclaw.sh`) against the proxy, checks that the client shows the reply, and
//! validates every frame clawgate sent against the OpenClaw schema. When npm cannot be reached
//! these tests fail; they never skip. The TUI test needs tmux and installs it with apt-get when
//! it is missing.

use std::path::{Path, PathBuf};
use std::process::Command as StdCommand;
use std::time::{Duration, Instant};

use clawgate_testkit::fake_openai::{FakeOpenAi, Script};
use clawgate_testkit::{OpenClawPeers, PeerOutput, RecordingProxy, TestGateway};
use serde_json::{Value, json};

const BIN: &str = env!("CARGO_BIN_EXE_clawgate");

/// What the fake model says, every time.
const HELLO: &str = "Hello from the fake model";

struct Setup {
    fake: FakeOpenAi,
    gateway: TestGateway,
    proxy: RecordingProxy,
    peers: OpenClawPeers,
}

async fn setup() -> Setup {
    let peers = OpenClawPeers::get().await.unwrap_or_else(|e| panic!("the real OpenClaw clients are required: {e:#}"));
    let fake = FakeOpenAi::start(Script::default()).await.expect("starting the fake model");
    let config = json!({
        "models": {"providers": {"fake": {
            "baseUrl": fake.base_url(), "apiKey": "fake-key", "api": "openai-completions",
            "models": [{"id": "fake-model", "name": "Fake Model"}],
        }}},
        "agents": {"defaults": {"model": {"primary": "fake/fake-model"}}},
    });
    let gateway = TestGateway::builder(BIN)
        .config(config.to_string())
        .start()
        .await
        .unwrap_or_else(|e| panic!("starting clawgate: {e:#}"));
    let proxy = RecordingProxy::start(&gateway.ws_url())
        .await
        .unwrap_or_else(|e| panic!("starting the recording proxy: {e:#}"));
    Setup { fake, gateway, proxy, peers }
}

impl Setup {
    fn token(&self) -> String {
        self.gateway.expect_token().to_owned()
    }

    /// Validates every recorded clawgate frame against the schema; at least `min` frames.
    async fn validate_frames(&self, min: usize) {
        let checked = self.proxy.validate_gateway_frames().await.unwrap_or_else(|e| panic!("{e:#}"));
        assert!(checked >= min, "expected at least {min} frames from clawgate, recorded {checked}");
    }

    /// Every client request with this method: `(conn, frame)`.
    fn requests(&self, method: &str) -> Vec<(u64, Value)> {
        self.proxy.client_frames().into_iter().filter(|(_, f)| f["type"] == "req" && f["method"] == method).collect()
    }

    /// The `params` of the first client request with this method.
    fn request_params(&self, method: &str) -> Value {
        self.requests(method)
            .first()
            .map(|(_, f)| f.get("params").cloned().unwrap_or(Value::Null))
            .unwrap_or_else(|| panic!("the client sent no {method:?} request; it sent {:?}", self.methods_sent()))
    }

    fn methods_sent(&self) -> Vec<String> {
        self.proxy.client_frames().iter().filter_map(|(_, f)| f["method"].as_str().map(str::to_owned)).collect()
    }

    /// Every `res` clawgate sent for requests with this method, in order.
    fn responses_to(&self, method: &str) -> Vec<Value> {
        let gateway = self.proxy.gateway_frames();
        let mut out = Vec::new();
        for (conn, req) in self.requests(method) {
            out.extend(
                gateway
                    .iter()
                    .filter(|(c, f)| *c == conn && f["type"] == "res" && f["id"] == req["id"])
                    .map(|(_, f)| f.clone()),
            );
        }
        out
    }

    /// Events clawgate sent with this name.
    fn events(&self, name: &str) -> Vec<Value> {
        self.proxy.gateway_frames().into_iter().filter(|(_, f)| f["event"] == name).map(|(_, f)| f).collect()
    }
}

fn assert_exit(out: &PeerOutput, code: i32) {
    assert_eq!(out.code, Some(code), "{}", out.describe());
}

/// `agent` answers twice with the same id: accepted, then the final result (live notes §5).
fn assert_two_phase_agent(s: &Setup) {
    let responses = s.responses_to("agent");
    assert_eq!(responses.len(), 2, "agent must answer twice: {responses:#?}");
    assert_eq!(responses[0]["payload"]["status"], "accepted", "{responses:#?}");
    assert_eq!(responses[1]["payload"]["status"], "ok", "{responses:#?}");
    assert_eq!(responses[1]["payload"]["summary"], "completed", "{responses:#?}");
    assert_eq!(responses[1]["payload"]["result"]["payloads"][0]["text"], HELLO, "{responses:#?}");
    assert_eq!(responses[0]["payload"]["runId"], responses[1]["payload"]["runId"], "{responses:#?}");
}

// ---- C3 ----

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn cli_gateway_call_agent_expect_final_prints_the_models_reply() {
    let s = setup().await;
    let params = r#"{"message":"hi","sessionKey":"agent:main:x","idempotencyKey":"k1"}"#;
    let out = s
        .peers
        .cli([
            "gateway",
            "call",
            "agent",
            "--url",
            &s.proxy.ws_url(),
            "--token",
            &s.token(),
            "--expect-final",
            "--params",
            params,
            "--json",
        ])
        .run()
        .await
        .expect("running openclaw");
    assert_exit(&out, 0);
    let printed = out.json().expect("JSON output");
    assert_eq!(printed["status"], "ok", "{}", out.describe());
    assert_eq!(printed["runId"], "k1", "{}", out.describe());
    assert_eq!(printed["result"]["payloads"][0]["text"], HELLO, "{}", out.describe());

    // The CLI prints the final res payload unchanged.
    assert_two_phase_agent(&s);
    assert_eq!(printed, s.responses_to("agent")[1]["payload"]);
    assert_eq!(s.request_params("agent")["idempotencyKey"], "k1");
    assert_eq!(s.fake.chat_requests().len(), 1);
    s.validate_frames(4).await;
}

// ---- C4 ----

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn cli_agent_with_url_and_token_from_the_environment_prints_the_reply() {
    let s = setup().await;
    let out = s
        .peers
        .cli(["agent", "--agent", "main", "--message", "Say hello", "--json"])
        .env("OPENCLAW_GATEWAY_URL", s.proxy.ws_url())
        .env("OPENCLAW_GATEWAY_TOKEN", s.token())
        .run()
        .await
        .expect("running openclaw");
    assert_exit(&out, 0);
    let printed = out.json().expect("JSON output");
    let payloads = printed["result"]["payloads"].as_array().or_else(|| printed["payloads"].as_array());
    let text = payloads.and_then(|p| p.first()).and_then(|p| p["text"].as_str());
    assert_eq!(text, Some(HELLO), "{}", out.describe());

    // What `openclaw agent` sends (live notes §3): agentId, deliver:false, timeout, a uuid key;
    // granted operator.write.
    let params = s.request_params("agent");
    assert_eq!(params["message"], "Say hello", "{params}");
    assert_eq!(params["agentId"], "main", "{params}");
    assert_eq!(params["deliver"], false, "{params}");
    assert!(params["idempotencyKey"].as_str().is_some_and(|k| !k.is_empty()), "{params}");
    let hello = &s.responses_to("connect")[0];
    let granted = hello["payload"]["auth"]["scopes"].as_array().cloned().unwrap_or_default();
    assert!(granted.contains(&json!("operator.write")), "{hello}");
    assert_two_phase_agent(&s);
    s.validate_frames(4).await;
}

// ---- C11 ----

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn openclaw_node_chat_streams_agent_start_text_agent_end_done() {
    let s = setup().await;
    let session = "agent:main:main";
    let script = OpenClawPeers::workspace_root().join("tests/node/node-chat.mjs");
    let out = s
        .peers
        .node_script(&script)
        .env("GW_URL", s.proxy.ws_url())
        .env("GW_TOKEN", s.token())
        .env("SESSION_KEY", session)
        .timeout(Duration::from_secs(90))
        .run()
        .await
        .expect("running node");
    assert_exit(&out, 0);
    let result = out.json().expect("JSON output");
    assert_eq!(result["ok"], true, "{}", out.describe());

    // chat(): agent_start, the text, agent_end, done (live notes §4).
    let chunks = result["chunks"].as_array().cloned().unwrap_or_default();
    let types: Vec<&str> = chunks.iter().filter_map(|c| c["type"].as_str()).collect();
    assert_eq!(types.first(), Some(&"agent_start"), "{types:?}");
    assert_eq!(types.last(), Some(&"done"), "{types:?}");
    let end = types.iter().position(|t| *t == "agent_end").unwrap_or_else(|| panic!("no agent_end: {types:?}"));
    assert!(types[1..end].iter().all(|t| *t == "text") && end > 1, "text chunks between start and end: {types:?}");
    assert!(!types.contains(&"error"), "{chunks:#?}");
    let streamed: String = chunks.iter().filter(|c| c["type"] == "text").filter_map(|c| c["text"].as_str()).collect();
    assert_eq!(streamed, HELLO, "{chunks:#?}");

    // chat.send with an idempotency key, then its reply as chat events.
    assert_eq!(result["chatSend"]["status"], "started", "{result}");
    assert_eq!(result["chatSendFinal"], json!({"state": "final", "text": HELLO}), "{result}");
    let history: Vec<(String, String)> = result["history"]
        .as_array()
        .map(|h| {
            h.iter()
                .map(|m| (m["role"].as_str().unwrap_or("").into(), m["text"].as_str().unwrap_or("").into()))
                .collect()
        })
        .unwrap_or_default();
    let expected: Vec<(String, String)> = [
        ("user", "Say hello via openclaw-node"),
        ("assistant", HELLO),
        ("user", "Second message via chat.send"),
        ("assistant", HELLO),
    ]
    .iter()
    .map(|(r, t)| ((*r).to_owned(), (*t).to_owned()))
    .collect();
    assert_eq!(history, expected, "{result}");
    // The subscriber was told about each stored message (session.message events).
    let told: Vec<&str> = result["sessionMessages"]
        .as_array()
        .map(|m| m.iter().filter_map(|m| m["role"].as_str()).collect())
        .unwrap_or_default();
    assert_eq!(told, ["user", "assistant", "user", "assistant"], "{result}");

    assert_eq!(s.request_params("sessions.list"), json!({"limit": 10}));
    assert_eq!(s.request_params("sessions.messages.subscribe"), json!({"key": session}));
    assert_two_phase_agent(&s);
    s.validate_frames(10).await;
}

// ---- C10 ----

/// A tmux server of our own, on a socket in a temporary directory (`tmux -S`), killed on drop,
/// so the test never touches another tmux session on the machine and leaves no socket behind.
struct Tmux {
    dir: tempfile::TempDir,
}

impl Tmux {
    fn new() -> Tmux {
        ensure_tmux();
        Tmux { dir: tempfile::Builder::new().prefix("clawgate-tmux-").tempdir().expect("tmux socket dir") }
    }

    fn run(&self, args: &[&str]) -> std::process::Output {
        StdCommand::new("tmux")
            .arg("-S")
            .arg(self.dir.path().join("tmux.sock"))
            .arg("-f")
            .arg("/dev/null")
            .args(args)
            .output()
            .unwrap_or_else(|e| panic!("running tmux {args:?}: {e}"))
    }

    fn ok(&self, args: &[&str]) {
        let out = self.run(args);
        assert!(out.status.success(), "tmux {args:?} failed: {}", String::from_utf8_lossy(&out.stderr));
    }

    fn screen(&self) -> String {
        String::from_utf8_lossy(&self.run(&["capture-pane", "-p", "-J", "-t", "tui"]).stdout).into_owned()
    }

    /// Polls the screen until it satisfies `pred`.
    async fn wait_for_screen(&self, what: &str, wait: Duration, pred: impl Fn(&str) -> bool) -> String {
        let deadline = Instant::now() + wait;
        loop {
            let screen = self.screen();
            if pred(&screen) {
                return screen;
            }
            assert!(Instant::now() < deadline, "the TUI never showed {what} within {wait:?}; screen:\n{screen}");
            tokio::time::sleep(Duration::from_millis(500)).await;
        }
    }
}

impl Drop for Tmux {
    fn drop(&mut self) {
        let _ = self.run(&["kill-server"]);
    }
}

/// tmux is needed to give the TUI a terminal; install it when it is missing (as root in CI).
fn ensure_tmux() {
    let present = || StdCommand::new("tmux").arg("-V").output().is_ok_and(|o| o.status.success());
    if present() {
        return;
    }
    let install = || {
        StdCommand::new("apt-get")
            .args(["install", "-y", "--no-install-recommends", "tmux"])
            .env("DEBIAN_FRONTEND", "noninteractive")
            .output()
    };
    let mut last = install();
    if !last.as_ref().is_ok_and(|o| o.status.success()) {
        let _ = StdCommand::new("apt-get").arg("update").output();
        last = install();
    }
    let why = match &last {
        Ok(o) => String::from_utf8_lossy(&o.stderr).into_owned(),
        Err(e) => e.to_string(),
    };
    assert!(
        present(),
        "the TUI conformance test needs tmux, and `apt-get install -y tmux` did not provide it \
         (install tmux and rerun): {why}"
    );
}

fn shell_quote(s: &str) -> String {
    format!("'{}'", s.replace('\'', r"'\''"))
}

/// A script that runs the TUI with the same clean environment the other peers get, then says how
/// it exited and keeps the pane open so the test can read that.
fn tui_script(dir: &Path, peers: &OpenClawPeers, home: &Path, args: &[String]) -> PathBuf {
    let mut path_env = peers.node_bin_dir().into_os_string();
    if let Some(path) = std::env::var_os("PATH") {
        path_env.push(":");
        path_env.push(path);
    }
    let exports = [
        ("HOME", home.as_os_str().to_owned()),
        ("PATH", path_env),
        ("XDG_CONFIG_HOME", home.join(".config").into_os_string()),
        ("XDG_CACHE_HOME", home.join(".cache").into_os_string()),
        ("XDG_DATA_HOME", home.join(".local/share").into_os_string()),
        ("XDG_STATE_HOME", home.join(".local/state").into_os_string()),
        ("OPENCLAW_NO_AUTO_UPDATE", "1".into()),
        ("OPENCLAW_OFFLINE", "1".into()),
        ("TERM", "xterm-256color".into()),
    ];
    let mut script = String::from("#!/bin/sh\n");
    // Nothing from the developer's own OpenClaw setup may leak into a conformance run.
    script.push_str("for v in $(env | sed -n 's/^\\(OPENCLAW_[A-Za-z0-9_]*\\)=.*/\\1/p'); do unset \"$v\"; done\n");
    for (key, value) in exports {
        script.push_str(&format!("export {key}={}\n", shell_quote(&value.to_string_lossy())));
    }
    script.push_str(&format!("cd {}\n", shell_quote(&home.to_string_lossy())));
    let command: Vec<String> = std::iter::once(peers.openclaw_cli().to_string_lossy().into_owned())
        .chain(args.iter().cloned())
        .map(|a| shell_quote(&a))
        .collect();
    script.push_str(&format!("{}\necho \"[tui exited with $?]\"\nsleep 600\n", command.join(" ")));
    let path = dir.join("run-tui.sh");
    std::fs::write(&path, script).expect("writing the TUI script");
    path
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn openclaw_tui_in_tmux_shows_the_streamed_reply_and_exits_on_slash_exit() {
    let s = setup().await;
    let tmux = Tmux::new();
    let dir = tempfile::Builder::new().prefix("openclaw-tui-").tempdir().expect("tempdir");
    let home = dir.path().join("home");
    std::fs::create_dir_all(&home).expect("home");
    let args: Vec<String> =
        ["tui", "--url", &s.proxy.ws_url(), "--token", &s.token(), "--session", "s", "--message", "hi"]
            .iter()
            .map(|a| (*a).to_owned())
            .collect();
    let script = tui_script(dir.path(), &s.peers, &home, &args);
    tmux.ok(&["new-session", "-d", "-s", "tui", "-x", "200", "-y", "50", &format!("sh {}", script.display())]);

    // The TUI draws the reply from `chat` events (live notes §8).
    let shown =
        tmux.wait_for_screen("the model's reply", Duration::from_secs(120), |screen| screen.contains(HELLO)).await;
    assert!(shown.contains("gateway connected"), "screen:\n{shown}");
    assert!(!shown.to_lowercase().contains("failed"), "the TUI reports a failure; screen:\n{shown}");
    tmux.ok(&["send-keys", "-t", "tui", "-l", "/exit"]);
    tmux.ok(&["send-keys", "-t", "tui", "Enter"]);
    let screen =
        tmux.wait_for_screen("its exit", Duration::from_secs(30), |screen| screen.contains("[tui exited with")).await;
    assert!(screen.contains("[tui exited with 0]"), "the TUI should exit cleanly on /exit; screen:\n{screen}");

    // What it did on the wire: a v3-signed UI client that subscribed, read history and sent the
    // message with chat.send (live notes §3, C10).
    let connect = s.request_params("connect");
    assert_eq!(connect["client"]["id"], "openclaw-tui", "{connect}");
    assert_eq!(connect["client"]["mode"], "ui", "{connect}");
    assert!(connect["device"]["signature"].as_str().is_some_and(|sig| !sig.is_empty()), "{connect}");
    let send = s.request_params("chat.send");
    assert_eq!(send["message"], "hi", "{send}");
    assert_eq!(send["sessionKey"], "agent:main:s", "{send}");
    let run_id = send["idempotencyKey"].as_str().unwrap_or_default().to_owned();
    // Full parity (C10): every method the TUI calls at start and after a turn answers ok.
    for method in [
        "sessions.subscribe",
        "agents.list",
        "question.list",
        "plugin.approval.list",
        "taskSuggestions.list",
        "chat.history",
        "chat.send",
        "commands.list",
        "sessions.describe",
        "sessions.list",
    ] {
        for res in s.responses_to(method) {
            assert_eq!(res["ok"], true, "{method} must answer ok for the TUI: {res}");
        }
    }
    assert!(!s.responses_to("chat.send").is_empty(), "sent: {:?}", s.methods_sent());
    let finals: Vec<Value> = s
        .events("chat")
        .into_iter()
        .filter(|e| e["payload"]["runId"] == run_id.as_str() && e["payload"]["state"] == "final")
        .collect();
    assert_eq!(finals.len(), 1, "one chat final for the TUI's run");
    assert!(!s.events("sessions.changed").is_empty(), "the subscribed TUI gets sessions.changed");
    drop(tmux);
    s.validate_frames(10).await;
}
