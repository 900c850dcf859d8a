//! The built-in web chat (`crates/clawgate-server/assets/webchat/`), served by the real binary.
//!
//! The HTTP tests check how the page is served: content types, the Content-Security-Policy and
//! the other headers, revalidation, `gateway.controlUi.basePath` and `enabled`. The browser test
//! runs `tests/node/webchat.mjs`: headless Debian Chromium (driven by playwright-core, both
//! installed by `scripts/install-browser.sh`) opens the page against a gateway whose model is a
//! [`FakeOpenAi`] streaming a known reply slowly, chats, reloads, survives a gateway restart, and
//! saves a screenshot to `target/test-artifacts/webchat.png`.
//!
//! Without Chromium or playwright-core the browser test fails when `CLAWGATE_REQUIRE_PEERS` is
//! set (CI) and is skipped, loudly, otherwise. `CLAWGATE_CHROMIUM` points at another Chromium.

use std::path::PathBuf;
use std::process::Stdio;
use std::time::Duration;

use clawgate_testkit::fake_openai::{FakeOpenAi, Script, Turn};
use clawgate_testkit::{OpenClawPeers, RawClient, TestGateway};
use serde_json::{Value, json};
use tokio::io::{AsyncBufReadExt, AsyncReadExt, AsyncWriteExt, BufReader};
use tokio::net::TcpStream;
use tokio::process::Command;

const BIN: &str = env!("CARGO_BIN_EXE_clawgate");

/// The fake model's reply, streamed in these pieces.
const REPLY_PARTS: [&str; 8] =
    ["Hello", " from", " the", " fake", " model,", " streamed", " piece by piece", " into the browser."];

/// Time between two streamed pieces: slow enough that the page visibly renders partial text.
const PIECE_DELAY: Duration = Duration::from_millis(150);

/// Bound on the whole browser run (it has its own, shorter, hard timeout).
const BROWSER_RUN_TIMEOUT: Duration = Duration::from_secs(150);

// ---- plain HTTP ----

/// A parsed HTTP/1.1 answer.
#[derive(Debug)]
struct Answer {
    status: u16,
    /// Lower-cased names.
    headers: Vec<(String, String)>,
    body: String,
}

impl Answer {
    fn header(&self, name: &str) -> Option<&str> {
        self.headers.iter().find(|(k, _)| k == name).map(|(_, v)| v.as_str())
    }
}

/// One request on its own connection (`Connection: close`), read to the end.
async fn http(port: u16, method: &str, path: &str, extra: &[(&str, &str)]) -> Answer {
    let mut stream = TcpStream::connect(("127.0.0.1", port)).await.expect("connecting to the gateway");
    let mut request = format!("{method} {path} HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\nConnection: close\r\n");
    for (k, v) in extra {
        request.push_str(&format!("{k}: {v}\r\n"));
    }
    request.push_str("\r\n");
    stream.write_all(request.as_bytes()).await.expect("sending the request");
    let mut raw = Vec::new();
    tokio::time::timeout(Duration::from_secs(10), stream.read_to_end(&mut raw))
        .await
        .expect("the gateway answered within 10 s")
        .expect("reading the answer");
    let text = String::from_utf8_lossy(&raw).into_owned();
    let (head, body) = text.split_once("\r\n\r\n").unwrap_or((&text, ""));
    let mut lines = head.lines();
    let status_line = lines.next().unwrap_or_default();
    let status = status_line.split(' ').nth(1).and_then(|s| s.parse().ok()).unwrap_or(0);
    let headers = lines
        .filter_map(|l| l.split_once(':'))
        .map(|(k, v)| (k.trim().to_ascii_lowercase(), v.trim().to_owned()))
        .collect();
    Answer { status, headers, body: body.to_owned() }
}

async fn get(port: u16, path: &str) -> Answer {
    http(port, "GET", path, &[]).await
}

async fn gateway(config: &str) -> TestGateway {
    TestGateway::builder(BIN).config(config).start().await.unwrap_or_else(|e| panic!("starting clawgate: {e:#}"))
}

#[tokio::test]
async fn the_page_is_served_at_the_root_with_a_strict_policy() {
    let gw = gateway("{}").await;
    let page = get(gw.port(), "/").await;
    assert_eq!(page.status, 200, "{page:?}");
    assert_eq!(page.header("content-type"), Some("text/html; charset=utf-8"));
    let csp = page.header("content-security-policy").expect("a Content-Security-Policy");
    for directive in
        ["default-src 'none'", "script-src 'self'", "style-src 'self'", "connect-src 'self'", "frame-ancestors 'none'"]
    {
        assert!(csp.contains(directive), "missing {directive:?} in {csp}");
    }
    assert!(!csp.contains("unsafe-inline") && !csp.contains("unsafe-eval") && !csp.contains('*'), "{csp}");
    assert!(!csp.contains("http:") && !csp.contains("https:"), "no other origin may be allowed: {csp}");
    assert_eq!(page.header("x-frame-options"), Some("DENY"));
    assert_eq!(page.header("x-content-type-options"), Some("nosniff"));
    assert_eq!(page.header("referrer-policy"), Some("no-referrer"));
    assert_eq!(page.header("cache-control"), Some("no-cache"));
    assert!(page.header("etag").is_some_and(|e| e.starts_with('"')), "{page:?}");
    // Relative URLs only (a path prefix behind a proxy keeps working) and nothing from elsewhere.
    assert!(page.body.contains(r#"src="app.js""#) && page.body.contains(r#"href="app.css""#), "{}", page.body);
    for absolute in [r#"src="/"#, r#"href="/"#, r#"src="http"#, r#"href="http"#, "//cdn"] {
        assert!(!page.body.contains(absolute), "the page references {absolute:?}");
    }
    assert!(get(gw.port(), "/index.html").await.body == page.body);
}

#[tokio::test]
async fn assets_have_their_content_types_and_revalidate_by_etag() {
    let gw = gateway("{}").await;
    let js = get(gw.port(), "/app.js").await;
    assert_eq!(js.status, 200);
    assert_eq!(js.header("content-type"), Some("text/javascript; charset=utf-8"));
    assert!(js.body.contains("webchat-ui") && js.body.contains("'v2'"), "not the web chat script");
    assert!(!js.body.contains("innerHTML"), "model output must never become markup");
    let css = get(gw.port(), "/app.css").await;
    assert_eq!((css.status, css.header("content-type")), (200, Some("text/css; charset=utf-8")));
    let icon = get(gw.port(), "/favicon.svg").await;
    assert_eq!((icon.status, icon.header("content-type")), (200, Some("image/svg+xml")));

    let etag = js.header("etag").expect("an ETag").to_owned();
    assert_ne!(Some(etag.as_str()), css.header("etag"));
    let again = http(gw.port(), "GET", "/app.js", &[("If-None-Match", &etag)]).await;
    assert_eq!(again.status, 304, "{again:?}");
    assert!(again.body.is_empty());
    let stale = http(gw.port(), "GET", "/app.js", &[("If-None-Match", "\"0000000000000000\"")]).await;
    assert_eq!(stale.status, 200);

    let head = http(gw.port(), "HEAD", "/", &[]).await;
    assert_eq!(head.status, 200);
    assert!(head.body.is_empty(), "HEAD has no body");
    assert_eq!(http(gw.port(), "POST", "/app.js", &[("Content-Length", "0")]).await.status, 404);
    assert_eq!(get(gw.port(), "/nope").await.status, 404);
    assert_eq!(get(gw.port(), "/chat/").await.status, 404, "no prefix guessing without basePath");
    assert_eq!(get(gw.port(), "/healthz").await.status, 200);
}

#[tokio::test]
async fn a_base_path_serves_the_page_below_it_and_the_socket_still_works() {
    // A reverse proxy that keeps its prefix (`/chat/…` → gateway `/chat/…`) sets basePath; one
    // that strips it needs nothing: every URL in the page is relative, and the page opens its
    // WebSocket on its own directory, which the gateway accepts on any path.
    let gw = gateway(r#"{gateway: {controlUi: {basePath: "/chat"}}}"#).await;
    let page = get(gw.port(), "/chat/").await;
    assert_eq!(page.status, 200, "{page:?}");
    assert!(page.header("content-type").is_some_and(|t| t.starts_with("text/html")));
    assert!(page.header("content-security-policy").is_some());
    let bare = get(gw.port(), "/chat").await;
    assert_eq!(bare.status, 308, "{bare:?}");
    assert_eq!(bare.header("location"), Some("chat/"), "a relative redirect survives a prefix-stripping proxy");
    assert_eq!(get(gw.port(), "/chat/app.js").await.status, 200);
    assert_eq!(get(gw.port(), "/").await.status, 404);
    assert_eq!(get(gw.port(), "/app.js").await.status, 404);

    let mut client = RawClient::connect(&format!("{}/chat/", gw.ws_url())).await.expect("websocket on /chat/");
    let hello = client.handshake(gw.token(), &json!({})).await.expect("handshake on /chat/");
    assert_eq!(hello["protocol"], 4);
}

#[tokio::test]
async fn a_disabled_web_chat_is_not_served() {
    let gw = gateway("{gateway: {controlUi: {enabled: false}}}").await;
    assert_eq!(get(gw.port(), "/").await.status, 404);
    assert_eq!(get(gw.port(), "/app.js").await.status, 404);
    assert_eq!(get(gw.port(), "/healthz").await.status, 200);
    let mut client = RawClient::connect(&gw.ws_url()).await.expect("websocket");
    client.handshake(gw.token(), &json!({})).await.expect("the protocol is unaffected");
}

// ---- the browser ----

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

fn peers_required() -> bool {
    std::env::var("CLAWGATE_REQUIRE_PEERS").is_ok_and(|v| !v.is_empty() && v != "0")
}

#[tokio::test]
async fn chromium_chats_through_the_web_chat_and_sees_the_reply_stream() {
    let (node, playwright_dir) = match browser_tools().await {
        Ok(tools) => tools,
        Err(why) if peers_required() => {
            panic!("the web chat browser test needs Chromium and playwright-core (scripts/install-browser.sh): {why}")
        }
        Err(why) => {
            eprintln!(
                "\n*** SKIPPED chromium_chats_through_the_web_chat_and_sees_the_reply_stream: {why}\n\
                 *** run scripts/install-browser.sh (CLAWGATE_REQUIRE_PEERS=1 turns this skip into a failure)\n"
            );
            return;
        }
    };
    let reply: String = REPLY_PARTS.concat();
    let fake = FakeOpenAi::start(Script::always(Turn::text(REPLY_PARTS).chunk_delay(PIECE_DELAY)))
        .await
        .expect("starting the fake model");
    let config = json!({
        "models": {"providers": {"fake": {
            "baseUrl": fake.base_url(), "apiKey": "fake-key", "api": "openai-completions",
            "models": [{"id": "fake-model", "name": "Fake Model"}],
        }}},
        "agents": {"defaults": {"model": {"primary": "fake/fake-model"}}},
    })
    .to_string();
    let mut gw = gateway(&config).await;

    let root = OpenClawPeers::workspace_root();
    let artifacts = root.join("target/test-artifacts");
    std::fs::create_dir_all(&artifacts).expect("creating target/test-artifacts");
    let screenshot = artifacts.join("webchat.png");
    let _ = std::fs::remove_file(&screenshot);

    let mut child = Command::new(&node)
        .arg(root.join("tests/node/webchat.mjs"))
        .env("GW_HTTP", gw.http_url())
        .env("GW_TOKEN", gw.expect_token())
        .env("EXPECT_REPLY", &reply)
        .env("PLAYWRIGHT_DIR", &playwright_dir)
        .env("SCREENSHOT", &screenshot)
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
            if line.trim() == "RESTART" {
                // The page must notice, show it, and come back by itself.
                gw.restart().await.unwrap_or_else(|e| panic!("restarting the gateway: {e:#}"));
            }
            stdout.push(line);
        }
        child.wait().await.expect("waiting for node")
    };
    let status = tokio::time::timeout(BROWSER_RUN_TIMEOUT, run).await;
    let stderr = stderr_task.await.unwrap_or_default();
    let describe = format!("--- stdout ---\n{}\n--- stderr ---\n{stderr}", stdout.join("\n"));
    let status =
        status.unwrap_or_else(|_| panic!("the browser run took longer than {BROWSER_RUN_TIMEOUT:?}\n{describe}"));
    let result: Value = stdout
        .iter()
        .rev()
        .find_map(|l| serde_json::from_str(l).ok())
        .unwrap_or_else(|| panic!("no JSON result line\n{describe}"));
    assert!(status.success() && result["ok"] == true, "the browser run failed ({status})\n{describe}");

    assert!(result["deltaFrames"].as_u64().unwrap_or(0) >= 2, "{result}");
    assert!(result["partialRenders"].as_u64().unwrap_or(0) >= 1, "{result}");
    assert_eq!(result["authMethod"], "token", "{result}");
    assert!(
        result["disconnectedBanner"].as_str().is_some_and(|b| b.contains("reconnecting in")),
        "the disconnected state said: {result}"
    );
    let png = std::fs::read(&screenshot).expect("the screenshot was saved");
    assert!(png.starts_with(b"\x89PNG") && png.len() > 10_000, "not a real screenshot ({} bytes)", png.len());

    // The browser's device was paired silently on loopback, as the upstream Control UI is.
    let mut admin = RawClient::connect(&gw.ws_url()).await.expect("websocket");
    admin.handshake(gw.token(), &json!({})).await.expect("handshake");
    let list = admin.request("device.pair.list", Some(json!({}))).await.expect("device.pair.list");
    let device_id = result["deviceId"].as_str().expect("deviceId in the result");
    let paired = list["payload"]["paired"].as_array().cloned().unwrap_or_default();
    let webchat = paired.iter().find(|d| d["deviceId"] == device_id).unwrap_or_else(|| panic!("{list}"));
    assert_eq!(webchat["clientId"], "webchat-ui", "{webchat}");
    assert_eq!(webchat["approvedVia"], "silent", "{webchat}");
    assert_eq!(webchat["scopes"], json!(["operator.read", "operator.write"]), "{webchat}");

    // Three turns reached the model, the last with the whole conversation of its session.
    let requests = fake.chat_requests();
    assert_eq!(requests.len(), 3, "{requests:?}");
    let second = requests[1].body.to_string();
    assert!(second.contains("Hi there") && second.contains("Still there?"), "{second}");
}
