//! Hostile tests for state, health and parsers (issue 10: defects 10 and 13, media links and
//! crash safety). Each test drives the real binary over real sockets; see `docs/SECURITY.md`,
//! section "State, health and parsers".

use std::time::Duration;

use clawgate_testkit::{RawClient, TestGateway};
use serde_json::{Value, json};

const BIN: &str = env!("CARGO_BIN_EXE_clawgate");

/// The session key a Telegram DM gets: it carries the sender's Telegram user id.
const TELEGRAM_SESSION: &str = "agent:main:telegram:direct:987654321";

async fn start(config: &str) -> TestGateway {
    TestGateway::builder(BIN).config(config).start().await.unwrap_or_else(|e| panic!("starting clawgate: {e:#}"))
}

async fn connected(gw: &TestGateway, overrides: Value) -> (RawClient, Value) {
    let mut c = RawClient::connect(&gw.ws_url()).await.expect("ws open");
    let hello = c.handshake(gw.token(), &overrides).await.unwrap_or_else(|e| panic!("handshake: {e:#}"));
    (c, hello)
}

fn ok_payload(res: &Value) -> &Value {
    assert_eq!(res["ok"], true, "expected ok: {res}");
    &res["payload"]
}

/// Private data a scope-less caller must not see in a health snapshot.
fn assert_public(what: &str, health: &Value, state_dir: &std::path::Path) {
    let text = health.to_string();
    assert!(!text.contains("clawgate.db"), "{what}: the database path leaks: {text}");
    assert!(!text.contains(&state_dir.display().to_string()), "{what}: the state dir leaks: {text}");
    assert!(!text.contains("987654321"), "{what}: a Telegram user id leaks: {text}");
    assert!(!text.contains("agent:main:"), "{what}: session keys leak: {text}");
    assert_eq!(health["sessions"]["recent"], json!([]), "{what}: {text}");
}

// ---- defect 13: `health` leaks to clients without scopes ----

#[tokio::test]
async fn health_shows_path_and_session_keys_only_to_operator_read() {
    let gw = start("{}").await;
    let (mut admin, _) = connected(&gw, json!({})).await;
    // A session whose key carries a Telegram user id (the run itself fails: no model is set up).
    let res = admin
        .request("chat.send", Some(json!({"sessionKey": TELEGRAM_SESSION, "message": "hi", "idempotencyKey": "h-1"})))
        .await
        .expect("chat.send");
    ok_payload(&res);
    let full = admin.request("health", Some(json!({"probe": true}))).await.expect("health");
    let full = ok_payload(&full);
    assert!(full["sessions"]["path"].as_str().is_some_and(|p| p.ends_with("clawgate.db")), "{full}");
    assert!(full.to_string().contains(TELEGRAM_SESSION), "an operator.read caller sees the keys: {full}");

    // A client connected with no scopes at all: same shape (schema-checked by RawClient), no
    // private data, in the `health` result and in the hello snapshot.
    let (mut none, hello) = connected(&gw, json!({"scopes": []})).await;
    assert_eq!(hello["auth"]["scopes"], json!([]), "{hello}");
    assert_public("hello-ok snapshot", &hello["snapshot"]["health"], gw.state_dir());
    for params in [None, Some(json!({"probe": true}))] {
        let res = none.request("health", params).await.expect("health");
        let public = ok_payload(&res);
        assert_eq!(public["ok"], true, "{public}");
        assert!(public["sessions"]["count"].as_u64().is_some_and(|n| n >= 1), "the count stays: {public}");
        assert_public("health result", public, gw.state_dir());
    }

    // operator.read alone is enough to see it all.
    let (mut reader, hello) = connected(&gw, json!({"scopes": ["operator.read"]})).await;
    assert!(hello["snapshot"]["health"].to_string().contains(TELEGRAM_SESSION), "{hello}");
    let res = reader.request("health", None).await.expect("health");
    assert!(ok_payload(&res).to_string().contains("clawgate.db"), "{res}");
}

// ---- defect 10: a full disk breaks transcript writes until restart ----

/// A tmpfs of `size` mounted for the test's state dir and unmounted when dropped.
///
/// Why a real filesystem: the defect is in how production code reacts to `ENOSPC` from the
/// kernel, through SQLite and its WAL; a test-only knob (`PRAGMA max_page_count`) would produce
/// `SQLITE_FULL` without the failed WAL write, i.e. not the failure users see. Mounting needs
/// root, which CI has; without it the test fails and says so rather than passing silently.
struct SmallDisk {
    _dir: tempfile::TempDir,
    mount: std::path::PathBuf,
}

impl SmallDisk {
    fn mount(size: &str) -> SmallDisk {
        let uid = std::process::Command::new("id").arg("-u").output().expect("run id -u");
        let uid = String::from_utf8_lossy(&uid.stdout).trim().to_owned();
        assert_eq!(uid, "0", "this test mounts a small tmpfs to fill the disk and needs root (CI runs as root)");
        let dir = tempfile::tempdir().expect("tempdir");
        let mount = dir.path().join("state");
        std::fs::create_dir_all(&mount).expect("mount point");
        let out = std::process::Command::new("mount")
            .args(["-t", "tmpfs", "-o", &format!("size={size}"), "tmpfs"])
            .arg(&mount)
            .output()
            .expect("run mount");
        assert!(out.status.success(), "mount -t tmpfs failed: {}", String::from_utf8_lossy(&out.stderr));
        SmallDisk { _dir: dir, mount }
    }

    /// Writes a filler file until the filesystem refuses with ENOSPC.
    fn fill(&self) -> std::path::PathBuf {
        use std::io::Write;
        let path = self.mount.join("filler");
        let mut f = std::fs::File::create(&path).expect("filler");
        let chunk = vec![0x5a_u8; 64 * 1024];
        loop {
            match f.write(&chunk) {
                Ok(0) => break,
                Ok(_) => {}
                Err(e) if e.raw_os_error() == Some(28) => break,
                Err(e) => panic!("filling the disk: {e}"),
            }
        }
        let _ = f.flush();
        path
    }
}

impl Drop for SmallDisk {
    fn drop(&mut self) {
        let _ = std::process::Command::new("umount").arg("-l").arg(&self.mount).status();
    }
}

async fn get(gw: &TestGateway, path: &str) -> (u16, Value) {
    let res = reqwest::get(format!("{}{path}", gw.http_url())).await.expect("GET");
    let status = res.status().as_u16();
    (status, res.json().await.unwrap_or(Value::Null))
}

/// Waits for the `chat` `final` (or `error`) of a run; returns its payload.
async fn run_end(c: &mut RawClient, run_id: &str) -> Value {
    let deadline = tokio::time::Instant::now() + Duration::from_secs(30);
    loop {
        let left = deadline.saturating_duration_since(tokio::time::Instant::now());
        let ev = c.recv_event("chat", left).await.unwrap_or_else(|e| panic!("chat event of {run_id}: {e:#}"));
        let p = &ev["payload"];
        if p["runId"] == run_id && matches!(p["state"].as_str(), Some("final" | "error" | "aborted")) {
            return p.clone();
        }
    }
}

#[tokio::test]
async fn a_full_disk_is_reported_and_recovered_from_without_restart() {
    use clawgate_testkit::fake_openai::{FakeOpenAi, Script, Turn};
    let disk = SmallDisk::mount("8m");
    // The second turn hangs until the run's timeout: the disk fills while it runs.
    let script = Script::new().turn(Turn::text(["ok"])).turn(Turn::hang()).otherwise(Turn::text(["ok"]));
    let fake = FakeOpenAi::start(script).await.expect("fake model");
    let config = json!({
        "models": {"providers": {"fake": {"baseUrl": fake.base_url(), "apiKey": "k", "api": "openai-completions",
            "models": [{"id": "m", "name": "M"}]}}},
        "agents": {"defaults": {"model": {"primary": "fake/m"}}},
    });
    let gw = TestGateway::builder(BIN)
        .config(config.to_string())
        .state_dir(&disk.mount)
        .start()
        .await
        .unwrap_or_else(|e| panic!("starting clawgate: {e:#}"));
    let (mut c, _) = connected(&gw, json!({})).await;
    let send = |key: &str, message: String| json!({"sessionKey": "main", "message": message, "idempotencyKey": key});
    let res = c.request("chat.send", Some(send("before", "hello".into()))).await.expect("chat.send");
    ok_payload(&res);
    assert_eq!(run_end(&mut c, "before").await["state"], "final");
    let (status, ready) = get(&gw, "/readyz").await;
    assert_eq!((status, &ready["ready"]), (200, &json!(true)), "{ready}");

    // A turn is running when the disk fills, and is aborted: its end cannot be stored yet. (The
    // old code forgot it while the store kept it `running`, which wedged the session's lane.)
    let res = c.request("chat.send", Some(send("mid", "a turn the disk fills under".into()))).await.expect("chat.send");
    ok_payload(&res);
    fake.wait_for_requests(2, Duration::from_secs(30)).await.expect("the second turn reached the model");
    let filler = disk.fill();
    let res = c.request("chat.abort", Some(json!({"sessionKey": "main", "runId": "mid"}))).await.expect("chat.abort");
    ok_payload(&res);

    // Writes fail while the disk is full (messages large enough to need new pages).
    let big = "x".repeat(64 * 1024);
    let mut refused = None;
    for i in 0..40 {
        let res = c.request("chat.send", Some(send(&format!("full-{i}"), big.clone()))).await.expect("chat.send");
        if res["ok"] != true {
            refused = Some(res);
            break;
        }
    }
    let refused = refused.unwrap_or_else(|| panic!("no chat.send failed on a full disk\n{}", gw.describe_output()));
    assert_eq!(refused["error"]["code"], "UNAVAILABLE", "{refused}");
    let message = refused["error"]["message"].as_str().unwrap_or_default();
    assert!(message.contains("disk full"), "the error says why: {refused}");
    let (status, ready) = get(&gw, "/readyz").await;
    assert_eq!(status, 503, "not ready while the disk is full: {ready}");
    assert_eq!(ready["ready"], false, "{ready}");
    assert!(ready["reason"].as_str().is_some_and(|r| r.contains("disk full")), "{ready}");
    // A second failure in the same episode does not log again.
    let res = c.request("chat.send", Some(send("full-again", big.clone()))).await.expect("chat.send");
    assert_eq!(res["error"]["code"], "UNAVAILABLE", "{res}");
    let stderr = || std::fs::read_to_string(gw.stderr_path()).unwrap_or_default();
    let episodes = stderr().matches("disk full; storage degraded").count();
    assert_eq!(episodes, 1, "the log says disk full once per episode\n{}", stderr());

    // Free the space: the next write succeeds, without a restart, and readiness comes back.
    std::fs::remove_file(&filler).expect("free the space");
    let res = c.request("chat.send", Some(send("after", "hello again".into()))).await.expect("chat.send");
    ok_payload(&res);
    assert_eq!(run_end(&mut c, "mid").await["state"], "aborted", "the aborted turn's end is stored late");
    assert_eq!(run_end(&mut c, "after").await["state"], "final", "the session's lane was not wedged");
    let (status, ready) = get(&gw, "/readyz").await;
    assert_eq!((status, &ready["ready"]), (200, &json!(true)), "ready again: {ready}");
    assert_eq!(ready["failing"], json!([]), "{ready}");
    let history = c.request("chat.history", Some(json!({"sessionKey": "main", "limit": 100}))).await.expect("history");
    let texts = ok_payload(&history)["messages"].to_string();
    assert!(texts.contains("hello again"), "the transcript takes writes again: {texts}");
    assert!(stderr().contains("storage recovered"), "the log says the episode ended\n{}", stderr());
    drop(gw);
}

// ---- media links: forgery and traversal (already refused; kept so) ----

#[tokio::test]
async fn media_links_refuse_forgery_expiry_traversal_and_overlong_tokens() {
    use clawgate_core::media::{Grant, KEY_NAME, encode};
    use clawgate_store::{KvStore, SqliteStore};
    // Seed the signing key, so this test can mint links exactly as the gateway does: a link
    // that is correctly signed but names a path outside the media directory must still fail.
    let dir = tempfile::tempdir().expect("tempdir");
    let state = dir.path().join("state");
    let key = [7u8; 32];
    let store = SqliteStore::open(&state.join("clawgate.db")).await.expect("open the store");
    store.set(KEY_NAME, &key.iter().map(|b| format!("{b:02x}")).collect::<String>()).await.expect("seed key");
    store.close().await.expect("close");
    std::fs::write(state.join("secret.txt"), "TOP-SECRET-STATE").expect("a file outside media/");
    let gw = TestGateway::builder(BIN)
        .config("{}")
        .state_dir(&state)
        .start()
        .await
        .unwrap_or_else(|e| panic!("starting clawgate: {e:#}"));
    let http = reqwest::Client::new();
    let fetch = |path: String| {
        let http = http.clone();
        let url = format!("{}{path}", gw.http_url());
        async move {
            let res = http.get(url).send().await.expect("GET");
            let status = res.status().as_u16();
            (status, res.text().await.unwrap_or_default())
        }
    };
    let far = i64::MAX / 2;
    let grant = |job: &str, file: &str, expires_at_ms: i64| Grant {
        job_id: job.into(),
        filename: file.into(),
        binding: "operator".into(),
        expires_at_ms,
    };
    let refused = |what: &str, (status, body): (u16, String)| {
        assert!(status == 403 || status == 404 || status == 400 || status == 414, "{what}: {status} {body}");
        assert!(!body.contains("TOP-SECRET") && !body.contains("SQLite format"), "{what} leaked a file: {body}");
    };

    // Correctly signed, but the names walk out of the media directory.
    for (job, file) in [
        ("job1", "../secret.txt"),
        ("job1", "../../state/secret.txt"),
        ("..", "secret.txt"),
        ("job1", "/etc/passwd"),
        ("job1", "..%2Fsecret.txt"),
        ("job1/../..", "clawgate.db"),
        ("job1", ".."),
        ("job1", "sub/../../secret.txt"),
    ] {
        let token = encode(&key, &grant(job, file, far));
        refused(&format!("signed {job}/{file}"), fetch(format!("/media/{token}")).await);
    }
    // A valid link to a job that does not exist is not found, not served.
    let (status, _) = fetch(format!("/media/{}", encode(&key, &grant("nojob", "out.png", far)))).await;
    assert_eq!(status, 404);
    // Expired: refused even though the signature is right.
    let (status, body) = fetch(format!("/media/{}", encode(&key, &grant("job1", "out.png", 1)))).await;
    assert_eq!(status, 403, "expired: {body}");
    // Tampered: another key, a flipped signature, a payload swapped under a valid signature.
    let other = encode(&[8u8; 32], &grant("job1", "out.png", far));
    let (status, _) = fetch(format!("/media/{other}")).await;
    assert_eq!(status, 403, "signed with another key");
    let good = encode(&key, &grant("job1", "out.png", far));
    let (payload, sig) = good.split_once('.').expect("payload.sig");
    let evil_payload = encode(&key, &grant("job1", "../secret.txt", far));
    let (evil_payload, _) = evil_payload.split_once('.').expect("payload.sig");
    for forged in [
        format!("{payload}.{}", sig.chars().rev().collect::<String>()),
        format!("{evil_payload}.{sig}"),
        format!("{payload}."),
        format!(".{sig}"),
        "%2e%2e%2fsecret.txt".to_owned(),
        "..%2F..%2Fclawgate.db".to_owned(),
    ] {
        refused(&format!("forged {forged}"), fetch(format!("/media/{forged}")).await);
    }
    // Overlong tokens are refused without trouble, and the gateway keeps serving.
    let long = "A".repeat(30 * 1024);
    refused("overlong", fetch(format!("/media/{long}.{long}")).await);
    let (status, _) = fetch("/healthz".into()).await;
    assert_eq!(status, 200, "still serving after hostile media requests");
}

// ---- kill -9 during traffic (already safe; kept so) ----

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn kill_9_under_chat_load_loses_and_doubles_no_transcript_message() {
    use clawgate_testkit::fake_openai::{FakeOpenAi, Script, Turn};
    const SESSIONS: usize = 4;
    const PER_SESSION: usize = 10;
    let fake = FakeOpenAi::start(Script::always(Turn::text(["a", "b", "c"]).chunk_delay(Duration::from_millis(30))))
        .await
        .expect("fake model");
    let config = json!({
        "models": {"providers": {"fake": {"baseUrl": fake.base_url(), "apiKey": "k", "api": "openai-completions",
            "models": [{"id": "m", "name": "M"}]}}},
        "agents": {"defaults": {"model": {"primary": "fake/m"}}},
    });
    let mut gw = start(&config.to_string()).await;

    // One client per session sends its messages back to back; each remembers what was acked.
    let mut senders = Vec::new();
    for s in 0..SESSIONS {
        let (mut c, _) = connected(&gw, json!({})).await;
        senders.push(tokio::spawn(async move {
            let mut acked = Vec::new();
            for i in 0..PER_SESSION {
                let key = format!("s{s}-m{i}");
                let params = json!({"sessionKey": format!("load-{s}"), "message": key, "idempotencyKey": key});
                match c.request("chat.send", Some(params)).await {
                    Ok(res) if res["ok"] == true => acked.push(key),
                    _ => break,
                }
            }
            (s, acked)
        }));
    }
    // Kill while turns are streaming.
    fake.wait_for_requests(SESSIONS + 1, Duration::from_secs(30)).await.expect("turns reached the model");
    gw.kill9().await.expect("kill -9");
    let mut acked = Vec::new();
    for t in senders {
        acked.push(t.await.expect("sender task"));
    }
    gw.restart().await.expect("restart after kill -9");

    // Every acked run ends (queued ones resume, the running ones are interrupted).
    let (mut c, _) = connected(&gw, json!({})).await;
    for (_, keys) in &acked {
        for key in keys {
            let deadline = tokio::time::Instant::now() + Duration::from_secs(60);
            loop {
                let res =
                    c.request("agent.wait", Some(json!({"runId": key, "timeoutMs": 5000}))).await.expect("agent.wait");
                let status = res["payload"]["status"].as_str().unwrap_or_default().to_owned();
                if res["ok"] == true && status != "timeout" && status != "pending" {
                    break;
                }
                assert!(tokio::time::Instant::now() < deadline, "run {key} never ended after the restart: {res}");
            }
        }
    }
    for (s, keys) in &acked {
        let res = c
            .request("chat.history", Some(json!({"sessionKey": format!("load-{s}"), "limit": 1000})))
            .await
            .expect("chat.history");
        let messages = ok_payload(&res)["messages"].as_array().cloned().unwrap_or_default();
        let text = |m: &Value| match &m["content"] {
            Value::String(t) => t.clone(),
            Value::Array(parts) => parts.iter().filter_map(|p| p["text"].as_str()).collect(),
            _ => String::new(),
        };
        let users: Vec<String> = messages.iter().filter(|m| m["role"] == "user").map(text).collect();
        let assistants = messages.iter().filter(|m| m["role"] == "assistant").count();
        for key in keys {
            let n = users.iter().filter(|u| *u == key).count();
            assert_eq!(n, 1, "acked message {key} is in the transcript exactly once: {users:?}");
        }
        let mut unique = users.clone();
        unique.sort();
        unique.dedup();
        assert_eq!(unique.len(), users.len(), "no user message is doubled: {users:?}");
        assert!(users.len() <= PER_SESSION, "nothing invented: {users:?}");
        assert!(assistants <= users.len(), "at most one reply per message: {messages:#?}");
    }
}
