//! ComfyUI chat commands through the built-in web chat: `chat.send` with `/run …` is answered by
//! the gateway (never the model), and the job's images come back into the same session as image
//! blocks with signed `/media/<token>` links.
//!
//! The protocol tests use a raw WebSocket client against the real binary with a [`FakeComfy`]
//! worker, the weight-free `invert` template from `templates/` and a [`FakeOpenAi`] model that must
//! never be asked. The browser test runs `tests/node/webchat_comfy.mjs`: headless Chromium (see
//! `webchat.rs` for the tools and the `CLAWGATE_REQUIRE_PEERS` skip rule) types `/run` into the
//! page and must show the finished image inline, live and after a reload; it saves a screenshot
//! to `target/test-artifacts/webchat_comfy.png`.

use std::path::PathBuf;
use std::process::Stdio;
use std::time::{Duration, Instant};

use clawgate_testkit::fake_comfy::FakeComfy;
use clawgate_testkit::fake_openai::{FakeOpenAi, Script, Turn};
use clawgate_testkit::{OpenClawPeers, RawClient, TestGateway, wait_until};
use serde_json::{Value, json};
use tokio::io::{AsyncBufReadExt, AsyncReadExt, BufReader};
use tokio::process::Command;

const BIN: &str = env!("CARGO_BIN_EXE_clawgate");
const WAIT: Duration = Duration::from_secs(40);
/// Bound on the whole browser run (the script has its own, shorter, hard timeout).
const BROWSER_RUN_TIMEOUT: Duration = Duration::from_secs(150);
const RUN: &str = "/run invert color=255 width=64 height=32";

fn templates_dir() -> String {
    format!("{}/../../templates", env!("CARGO_MANIFEST_DIR"))
}

async fn gateway(model: &FakeOpenAi, comfy: &FakeComfy, env: &[(&str, &str)]) -> TestGateway {
    let cfg = json!({
        "models": {"providers": {"fake": {"baseUrl": model.base_url(), "apiKey": "k", "api": "openai-completions",
                                          "models": [{"id": "m"}]}}},
        "agents": {"defaults": {"model": {"primary": "fake/m"}}},
        "comfy": {"templatesDir": templates_dir(),
                  "workers": [{"name": "w0", "url": comfy.base_url(), "maxConcurrent": 1}]},
    });
    let mut b = TestGateway::builder(BIN).config(cfg.to_string());
    for (k, v) in env {
        b = b.env(*k, *v);
    }
    b.start().await.expect("starting clawgate")
}

async fn client(gw: &TestGateway) -> RawClient {
    let mut c = RawClient::connect(&gw.ws_url()).await.expect("websocket");
    c.handshake(gw.token(), &json!({})).await.expect("handshake");
    c
}

async fn call(c: &mut RawClient, method: &str, params: Value) -> Value {
    let res = c.request(method, Some(params)).await.expect(method);
    assert_eq!(res["ok"], true, "{method}: {res}");
    res["payload"].clone()
}

async fn chat_send(c: &mut RawClient, message: &str, key: &str) -> Value {
    call(c, "chat.send", json!({"sessionKey": "main", "message": message, "idempotencyKey": key})).await
}

/// The plain text of a display message.
fn text_of(m: &Value) -> String {
    match &m["content"] {
        Value::String(s) => s.clone(),
        Value::Array(parts) => {
            parts.iter().filter(|p| p["type"] == "text").filter_map(|p| p["text"].as_str()).collect()
        }
        _ => String::new(),
    }
}

/// The next `chat` `final` event whose payload passes `pick` (other frames are kept).
async fn chat_final(c: &mut RawClient, what: &str, pick: impl Fn(&Value) -> bool) -> Value {
    let deadline = Instant::now() + WAIT;
    loop {
        let left = deadline.saturating_duration_since(Instant::now());
        let ev = c.recv_event("chat", left).await.unwrap_or_else(|e| panic!("no chat final {what}: {e:#}"));
        let p = &ev["payload"];
        if p["state"] == "final" && pick(p) {
            return p.clone();
        }
    }
}

async fn history(c: &mut RawClient) -> Vec<Value> {
    let h = call(c, "chat.history", json!({"sessionKey": "main"})).await;
    h["messages"].as_array().cloned().unwrap_or_default()
}

fn job_id_of(reply: &str) -> String {
    reply.lines().find_map(|l| l.strip_prefix("ID: ")).unwrap_or_else(|| panic!("no ID line in {reply:?}")).to_owned()
}

/// The `/media/` image blocks of a message.
fn images(m: &Value) -> Vec<Value> {
    m["content"].as_array().into_iter().flatten().filter(|p| p["type"] == "image").cloned().collect()
}

/// Fetch a gateway path: status, content type and body.
async fn get(gw: &TestGateway, path: &str) -> (u16, String, Vec<u8>) {
    let res = reqwest::get(format!("{}{path}", gw.http_url())).await.expect("GET");
    let status = res.status().as_u16();
    let ty = res.headers().get("content-type").and_then(|v| v.to_str().ok()).unwrap_or_default().to_owned();
    (status, ty, res.bytes().await.expect("body").to_vec())
}

/// A PNG's width and height from its IHDR chunk.
fn png_size(png: &[u8]) -> (u32, u32) {
    assert!(png.starts_with(b"\x89PNG\r\n\x1a\n") && png.len() > 24, "not a PNG: {:?}", &png[..png.len().min(16)]);
    let be = |at: usize| u32::from_be_bytes([png[at], png[at + 1], png[at + 2], png[at + 3]]);
    (be(16), be(20))
}

/// The same link with one character of its signature changed.
fn tampered(url: &str) -> String {
    let mut chars: Vec<char> = url.chars().collect();
    let last = chars.len() - 1;
    chars[last] = if chars[last] == 'A' { 'B' } else { 'A' };
    chars.into_iter().collect()
}

#[tokio::test]
async fn run_from_chat_send_is_answered_by_the_gateway_and_the_image_comes_back_inline() {
    let model = FakeOpenAi::start(Script::always(Turn::echo("echo: "))).await.unwrap();
    let comfy = FakeComfy::start().await.unwrap();
    let gw = gateway(&model, &comfy, &[]).await;
    let mut c = client(&gw).await;

    let ack = chat_send(&mut c, RUN, "web-run-1").await;
    assert_eq!(ack, json!({"runId": "web-run-1", "status": "ok"}));
    let reply = chat_final(&mut c, "for the command", |p| p["runId"] == "web-run-1").await;
    assert_eq!(reply["sessionKey"], "agent:main:main", "{reply}");
    let text = text_of(&reply["message"]);
    assert!(text.starts_with("[Job Submitted]") && text.contains("Template: invert"), "{text}");
    let job = job_id_of(&text);

    // The same idempotency key again runs nothing.
    let again = chat_send(&mut c, RUN, "web-run-1").await;
    assert_eq!(again["status"], "ok", "{again}");

    let done = chat_final(&mut c, "with the result", |p| text_of(&p["message"]).starts_with("[Job Completed]")).await;
    assert_eq!(done["sessionKey"], "agent:main:main", "{done}");
    assert_eq!(done["runId"], format!("comfy-job:{job}:done"));
    let done_text = text_of(&done["message"]);
    assert!(done_text.contains(&format!("ID: {job}")) && done_text.contains("Images: 1"), "{done_text}");
    assert_eq!(images(&done["message"]).len(), 1, "{done}");

    // The transcript: the command, its reply, the result, each once.
    let messages = history(&mut c).await;
    let texts: Vec<(String, String)> =
        messages.iter().map(|m| (m["role"].as_str().unwrap_or_default().to_owned(), text_of(m))).collect();
    assert_eq!(texts.len(), 3, "{texts:?}");
    assert_eq!(texts[0], ("user".to_owned(), RUN.to_owned()));
    assert_eq!(texts[1], ("assistant".to_owned(), text));
    assert_eq!(texts[2].0, "assistant");
    assert!(texts[2].1.starts_with("[Job Completed]"), "{texts:?}");
    let blocks = images(&messages[2]);
    assert_eq!(blocks.len(), 1, "{}", messages[2]);
    assert_eq!(blocks[0]["mimeType"], "image/png", "{}", blocks[0]);
    assert!(blocks[0]["filename"].as_str().is_some_and(|f| f.ends_with(".png")), "{}", blocks[0]);
    let url = blocks[0]["url"].as_str().expect("a url").to_owned();
    assert!(url.starts_with("/media/"), "{url}");

    // The link serves the real image; a tampered one is refused.
    let (status, ty, png) = get(&gw, &url).await;
    assert_eq!((status, ty.as_str()), (200, "image/png"));
    assert_eq!(png_size(&png), (64, 32), "the requested size");
    let (status, _, _) = get(&gw, &tampered(&url)).await;
    assert_eq!(status, 403, "a tampered link");
    let live = images(&done["message"])[0]["url"].as_str().unwrap().to_owned();
    assert_eq!(get(&gw, &live).await.0, 200, "the link sent live works too");

    assert_eq!(comfy.submitted().len(), 1, "the command ran once");
    assert!(model.chat_requests().is_empty(), "a command never reaches the model");

    // Other commands answer from the queue; plain text and a suppressed command go to the model.
    assert_eq!(chat_send(&mut c, &format!("/status {job}"), "web-status").await["status"], "ok");
    let status = chat_final(&mut c, "for /status", |p| p["runId"] == "web-status").await;
    assert!(text_of(&status["message"]).contains(&job), "{status}");
    assert_eq!(chat_send(&mut c, "/jobs", "web-jobs").await["status"], "ok");
    let jobs = chat_final(&mut c, "for /jobs", |p| p["runId"] == "web-jobs").await;
    assert!(text_of(&jobs["message"]).starts_with("[Jobs]"), "{jobs}");
    assert!(model.chat_requests().is_empty(), "/status and /jobs never reach the model");
    assert_eq!(chat_send(&mut c, "hello", "web-hello").await["status"], "started");
    let echo = chat_final(&mut c, "from the model", |p| p["runId"] == "web-hello").await;
    assert_eq!(text_of(&echo["message"]), "echo: hello");
    let suppressed = call(
        &mut c,
        "chat.send",
        json!({"sessionKey": "main", "message": "/jobs", "idempotencyKey": "web-literal",
               "suppressCommandInterpretation": true}),
    )
    .await;
    assert_eq!(suppressed["status"], "started", "{suppressed}");
    chat_final(&mut c, "for the literal /jobs", |p| p["runId"] == "web-literal").await;
    assert_eq!(model.chat_requests().len(), 2);
    assert_eq!(comfy.submitted().len(), 1);
}

#[tokio::test]
async fn a_failed_job_is_reported_in_the_web_chat_session() {
    let model = FakeOpenAi::start(Script::always(Turn::echo("echo: "))).await.unwrap();
    let comfy = FakeComfy::start().await.unwrap();
    comfy.fail_next(1);
    let gw = gateway(&model, &comfy, &[]).await;
    let mut c = client(&gw).await;
    assert_eq!(chat_send(&mut c, "/run invert", "web-fail").await["status"], "ok");
    let reply = chat_final(&mut c, "for the command", |p| p["runId"] == "web-fail").await;
    let job = job_id_of(&text_of(&reply["message"]));
    let failed = chat_final(&mut c, "with the failure", |p| text_of(&p["message"]).starts_with("[Job Failed]")).await;
    assert_eq!(failed["runId"], format!("comfy-job:{job}:failed"), "{failed}");
    assert!(text_of(&failed["message"]).contains(&format!("ID: {job}")), "{failed}");
    let messages = history(&mut c).await;
    let notices = messages.iter().filter(|m| text_of(m).starts_with("[Job Failed]")).count();
    assert_eq!((messages.len(), notices), (3, 1), "{messages:?}");
    assert!(model.chat_requests().is_empty());
}

/// A crash after the result was delivered and before the job was marked completed: the restart
/// finishes the job again, and the session still holds the result once, with a working link.
#[tokio::test]
async fn a_crash_before_completion_delivers_the_result_once() {
    let model = FakeOpenAi::start(Script::always(Turn::echo("echo: "))).await.unwrap();
    let comfy = FakeComfy::start().await.unwrap();
    let mut gw = gateway(&model, &comfy, &[("CLAWGATE_CRASH_AT", "comfy.delivery_queued")]).await;
    let mut c = client(&gw).await;
    assert_eq!(chat_send(&mut c, RUN, "web-crash").await["status"], "ok");
    let status = gw.wait_exit(WAIT).await.expect("the gateway stops at the crash point");
    assert!(!status.success(), "the crash point aborts the process");
    gw.set_env("CLAWGATE_CRASH_AT", None);
    gw.restart().await.expect("restart after the crash");
    let mut c = client(&gw).await;
    let job = wait_until(WAIT, "the job completes after the restart", || async {
        let mut c = client(&gw).await;
        let jobs = call(&mut c, "comfy.jobs.list", json!({})).await;
        (jobs["jobs"][0]["status"] == "completed").then(|| jobs["jobs"][0]["id"].as_str().unwrap().to_owned())
    })
    .await
    .unwrap();
    // A job's result is delivered before it is marked completed, and nothing finishes a
    // completed job again: every delivery there will be has landed by now.
    let messages = history(&mut c).await;
    let results: Vec<&Value> = messages.iter().filter(|m| text_of(m).starts_with("[Job Completed]")).collect();
    assert_eq!(results.len(), 1, "{messages:?}");
    assert!(text_of(results[0]).contains(&job));
    let url = images(results[0])[0]["url"].as_str().unwrap().to_owned();
    let (status, _, png) = get(&gw, &url).await;
    assert_eq!(status, 200);
    assert_eq!(png_size(&png), (64, 32));
    assert_eq!(comfy.completed_count(), 1, "the finished job is not run again");
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
async fn chromium_runs_a_comfy_job_from_the_web_chat_and_shows_the_image() {
    let (node, playwright_dir) = match browser_tools().await {
        Ok(tools) => tools,
        Err(why) if peers_required() => {
            panic!("the web chat browser test needs Chromium and playwright-core (scripts/install-browser.sh): {why}")
        }
        Err(why) => {
            eprintln!(
                "\n*** SKIPPED chromium_runs_a_comfy_job_from_the_web_chat_and_shows_the_image: {why}\n\
                 *** run scripts/install-browser.sh (CLAWGATE_REQUIRE_PEERS=1 turns this skip into a failure)\n"
            );
            return;
        }
    };
    let model = FakeOpenAi::start(Script::always(Turn::echo("echo: "))).await.unwrap();
    let comfy = FakeComfy::builder().job_duration(Duration::from_millis(500)).start().await.unwrap();
    let gw = gateway(&model, &comfy, &[]).await;

    let root = OpenClawPeers::workspace_root();
    let artifacts = root.join("target/test-artifacts");
    std::fs::create_dir_all(&artifacts).expect("creating target/test-artifacts");
    let screenshot = artifacts.join("webchat_comfy.png");
    let _ = std::fs::remove_file(&screenshot);

    let mut child = Command::new(&node)
        .arg(root.join("tests/node/webchat_comfy.mjs"))
        .env("GW_HTTP", gw.http_url())
        .env("GW_TOKEN", gw.expect_token())
        .env("RUN_COMMAND", RUN)
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

    assert_eq!(result["naturalWidth"], 64, "{result}");
    assert_eq!(result["naturalHeight"], 32, "{result}");
    let src = result["src"].as_str().unwrap_or_default();
    assert!(src.starts_with(&format!("{}/media/", gw.http_url())), "image source {src}");
    let png = std::fs::read(&screenshot).expect("the screenshot was saved");
    assert!(png.starts_with(b"\x89PNG") && png.len() > 10_000, "not a real screenshot ({} bytes)", png.len());
    assert_eq!(comfy.submitted().len(), 1, "{result}");
    assert!(model.chat_requests().is_empty(), "the command never reached the model");
}

/// Behind a proxy that keeps its prefix (`gateway.controlUi.basePath`), the page resolves its
/// image links below that prefix: `<basePath>/media/<token>` serves the same file, with the
/// same signature checks.
#[tokio::test]
async fn media_links_also_resolve_below_the_web_chats_base_path() {
    let model = FakeOpenAi::start(Script::always(Turn::echo("echo: "))).await.unwrap();
    let comfy = FakeComfy::start().await.unwrap();
    let cfg = json!({
        "gateway": {"controlUi": {"basePath": "/chat"}},
        "models": {"providers": {"fake": {"baseUrl": model.base_url(), "apiKey": "k", "api": "openai-completions",
                                          "models": [{"id": "m"}]}}},
        "agents": {"defaults": {"model": {"primary": "fake/m"}}},
        "comfy": {"templatesDir": templates_dir(),
                  "workers": [{"name": "w0", "url": comfy.base_url(), "maxConcurrent": 1}]},
    });
    let gw = TestGateway::builder(BIN).config(cfg.to_string()).start().await.expect("starting clawgate");
    let mut c = client(&gw).await;
    assert_eq!(chat_send(&mut c, RUN, "web-prefixed").await["status"], "ok");
    let done = chat_final(&mut c, "with the result", |p| text_of(&p["message"]).starts_with("[Job Completed]")).await;
    let url = images(&done["message"])[0]["url"].as_str().expect("a url").to_owned();
    let (status, ty, png) = get(&gw, &format!("/chat{url}")).await;
    assert_eq!((status, ty.as_str()), (200, "image/png"), "below the base path");
    assert_eq!(png_size(&png), (64, 32));
    assert_eq!(get(&gw, &format!("/chat{}", tampered(&url))).await.0, 403, "same checks below the base path");
    assert_eq!(get(&gw, &url).await.0, 200, "the root route still works");
    assert_eq!(get(&gw, "/other/media/x.y").await.0, 404, "only below the configured base path");
}

/// The web chat gets the same commands as Telegram and Discord, through the same registry:
/// `/help` lists the conversation commands and (for an operator client) every ComfyUI one, and
/// `/new` starts a fresh transcript that holds the command and its answer.
#[tokio::test]
async fn the_web_chat_gets_the_conversation_commands_too() {
    let model = FakeOpenAi::start(Script::always(Turn::echo("echo: "))).await.unwrap();
    let comfy = FakeComfy::start().await.unwrap();
    let gw = gateway(&model, &comfy, &[]).await;
    let mut c = client(&gw).await;
    assert_eq!(chat_send(&mut c, "hello", "web-first").await["status"], "started");
    chat_final(&mut c, "from the model", |p| p["runId"] == "web-first").await;

    assert_eq!(chat_send(&mut c, "/help", "web-help").await["status"], "ok");
    let help = text_of(&chat_final(&mut c, "for /help", |p| p["runId"] == "web-help").await["message"]);
    for name in ["/new or /reset", "/status [job]", "/run ", "/approvals", "/workers"] {
        assert!(help.contains(name), "{name} in {help}");
    }

    assert_eq!(chat_send(&mut c, "/new", "web-new").await["status"], "ok");
    let reset = text_of(&chat_final(&mut c, "for /new", |p| p["runId"] == "web-new").await["message"]);
    assert!(reset.starts_with("Started a new conversation"), "{reset}");
    let history = call(&mut c, "chat.history", json!({"sessionKey": "main"})).await;
    let texts: Vec<String> = history["messages"].as_array().expect("messages").iter().map(text_of).collect();
    assert_eq!(texts.len(), 2, "the fresh transcript holds /new and its answer: {texts:?}");
    assert_eq!(texts[0], "/new");
    assert_eq!(model.chat_requests().len(), 1, "only `hello` reached the model");
}
