//! ComfyUI approvals as OpenClaw plugin approvals (`plugin.approval.*`), signed media links
//! (`/media/{token}`) and the `clawgate jobs` / `clawgate workers` commands, end to end against
//! the real binary with [`FakeComfy`] and [`FakeTelegram`].

use std::time::{Duration, Instant};

use clawgate_testkit::fake_comfy::FakeComfy;
use clawgate_testkit::fake_openai::{FakeOpenAi, Script, Turn};
use clawgate_testkit::fake_telegram::FakeTelegram;
use clawgate_testkit::{RawClient, TestGateway, wait_until};
use serde_json::{Value, json};

const BIN: &str = env!("CARGO_BIN_EXE_clawgate");
const WAIT: Duration = Duration::from_secs(40);

async fn gateway(model: &FakeOpenAi, tg: Option<&FakeTelegram>, comfy: &FakeComfy, extra: Value) -> TestGateway {
    let mut cfg = json!({
        "models": {"providers": {"fake": {"baseUrl": model.base_url(), "apiKey": "k", "api": "openai-completions",
                                          "models": [{"id": "m"}]}}},
        "agents": {"defaults": {"model": {"primary": "fake/m"}}},
        "comfy": {"templatesDir": format!("{}/../../templates", env!("CARGO_MANIFEST_DIR")),
                  "workers": [{"name": "w0", "url": comfy.base_url(), "maxConcurrent": 1}],
                  "commands": {"adminUsers": ["telegram:100"]}},
    });
    if let Some(obj) = extra.as_object() {
        for (k, v) in obj {
            cfg["comfy"][k] = v.clone();
        }
    }
    if let Some(tg) = tg {
        cfg["channels"] = json!({"telegram": {"botToken": tg.token(), "apiRoot": tg.api_root(), "pollTimeoutSeconds": 1,
                                              "dmPolicy": "open", "allowFrom": ["100"]}});
    }
    TestGateway::builder(BIN).config(cfg.to_string()).start().await.expect("starting clawgate")
}

async fn client(gw: &TestGateway) -> RawClient {
    let mut c = RawClient::connect(&gw.ws_url()).await.expect("ws");
    c.handshake(gw.token(), &json!({})).await.expect("handshake");
    c
}

/// The whole `res` frame.
async fn request(gw: &TestGateway, method: &str, params: Value) -> Value {
    client(gw).await.request_with_timeout(method, Some(params), WAIT).await.expect(method)
}

async fn call(gw: &TestGateway, method: &str, params: Value) -> Value {
    let res = request(gw, method, params).await;
    assert_eq!(res["ok"], true, "{method}: {res}");
    res["payload"].clone()
}

async fn wait_job(gw: &TestGateway, id: &str, status: &str) -> Value {
    wait_until(WAIT, format_args!("job {id} is {status}"), || async {
        let job = call(gw, "comfy.jobs.get", json!({"jobId": id})).await["job"].clone();
        (job["status"] == status).then_some(job)
    })
    .await
    .unwrap()
}

/// `/run invert` from the untrusted sender 200, and the pending plugin approval it made.
async fn held_run(gw: &TestGateway, tg: &FakeTelegram, seen: &[String]) -> Value {
    tg.push_private_message(200, "guest", "/run invert");
    wait_until(WAIT, "a new approval is listed", || async {
        let list = call(gw, "plugin.approval.list", json!({})).await;
        let items = list.as_array().expect("plugin.approval.list answers an array").clone();
        items.into_iter().find(|a| !seen.iter().any(|s| a["id"] == s.as_str()))
    })
    .await
    .unwrap()
}

#[tokio::test]
async fn held_runs_are_plugin_approvals_that_operators_resolve() {
    let model = FakeOpenAi::start(Script::always(Turn::echo("echo: "))).await.unwrap();
    let tg = FakeTelegram::start().await.unwrap();
    let comfy = FakeComfy::start().await.unwrap();
    let gw = gateway(&model, Some(&tg), &comfy, Value::Null).await;
    let mut watcher = client(&gw).await;

    let first = held_run(&gw, &tg, &[]).await;
    let id = first["id"].as_str().unwrap().to_owned();
    assert_eq!(first["approvalKind"], "plugin", "{first}");
    assert_eq!(first["status"], "pending");
    assert_eq!(first["kind"], "comfy.run");
    assert_eq!(first["request"]["pluginId"], "comfy");
    assert_eq!(first["request"]["title"], "Run ComfyUI template invert");
    assert_eq!(first["request"]["allowedDecisions"], json!(["allow-once", "deny"]));
    assert!(first["request"]["description"].as_str().unwrap().contains("telegram:200"), "{first}");
    assert!(first["expiresAtMs"].as_i64().unwrap() > first["createdAtMs"].as_i64().unwrap());
    let job_id = first["payload"]["jobId"].as_str().unwrap().to_owned();
    assert_eq!(wait_job(&gw, &job_id, "awaiting_approval").await["template"], "invert");
    assert!(comfy.submitted().is_empty(), "nothing runs before the approval");

    // Operators holding operator.approvals hear about it.
    let deadline = Instant::now() + WAIT;
    let requested = loop {
        let frame = watcher.recv(WAIT).await.expect("an event");
        let frame = match frame {
            clawgate_testkit::raw::Incoming::Json(f) => f,
            other => panic!("{other:?}"),
        };
        if frame["event"] == "plugin.approval.requested" {
            break frame["payload"].clone();
        }
        assert!(Instant::now() < deadline, "no plugin.approval.requested event");
    };
    assert_eq!(requested["id"], id.as_str());
    assert_eq!(requested["request"]["pluginId"], "comfy");

    // A waiter started before the decision gets it. The gateway reads a connection's requests in
    // order, so once a later request on the same connection is answered (and still lists the
    // approval as pending), the wait has started before the decision.
    let mut waiter = client(&gw).await;
    let wait_req = waiter.next_id();
    let frame = json!({"type": "req", "id": wait_req, "method": "plugin.approval.waitDecision",
                       "params": {"id": id, "timeoutMs": 30000}});
    waiter.send_json(&frame).await.expect("send waitDecision");
    let listed = waiter.request("plugin.approval.list", Some(json!({}))).await.expect("list");
    assert!(listed["payload"].as_array().is_some_and(|a| a.iter().any(|x| x["id"] == id.as_str())), "{listed}");
    let resolved = call(&gw, "plugin.approval.resolve", json!({"id": id, "decision": "allow-once"})).await;
    assert_eq!(resolved["status"], "approved", "{resolved}");
    assert_eq!(resolved["jobId"], job_id.as_str());
    assert_eq!(resolved["jobStatus"], "queued");
    let waited = waiter.recv_response(&wait_req, WAIT).await.expect("waitDecision answers");
    assert_eq!(waited["ok"], true, "{waited}");
    assert_eq!(waited["payload"]["decision"], "allow-once", "{waited}");
    let photo =
        tg.wait_for_sent(|c| c.is("sendPhoto") && c.status == 200, WAIT).await.expect("delivered after approval");
    assert_eq!(photo.param_i64("chat_id"), Some(200), "to the chat that asked");

    // A second one is denied with a reason: the job is cancelled, the reason is kept.
    let second = held_run(&gw, &tg, std::slice::from_ref(&id)).await;
    let second_id = second["id"].as_str().unwrap().to_owned();
    let second_job = second["payload"]["jobId"].as_str().unwrap().to_owned();
    let denied =
        call(&gw, "plugin.approval.resolve", json!({"id": second_id, "decision": "deny", "reason": "not today"})).await;
    assert_eq!((denied["status"].as_str(), denied["reason"].as_str()), (Some("rejected"), Some("not today")));
    assert_eq!(wait_job(&gw, &second_job, "cancelled").await["id"], second_job.as_str());
    let waited = call(&gw, "plugin.approval.waitDecision", json!({"id": second_id, "timeoutMs": 5000})).await;
    assert_eq!((waited["decision"].as_str(), waited["reason"].as_str()), (Some("deny"), Some("not today")));
    assert_eq!(call(&gw, "plugin.approval.list", json!({})).await, json!([]), "nothing is pending any more");
    let all = call(&gw, "plugin.approval.list", json!({"status": "all"})).await;
    let kept = all.as_array().unwrap().iter().find(|a| a["id"] == second_id.as_str()).expect("listed").clone();
    assert_eq!((kept["decision"].as_str(), kept["reason"].as_str()), (Some("deny"), Some("not today")), "{kept}");

    // Deciding twice, or an unknown id, is APPROVAL_NOT_FOUND; a bad decision is refused.
    let again = request(&gw, "plugin.approval.resolve", json!({"id": second_id, "decision": "allow-once"})).await;
    assert_eq!(again["error"]["code"], "APPROVAL_NOT_FOUND", "{again}");
    let bad = request(&gw, "plugin.approval.resolve", json!({"id": "apr_x", "decision": "maybe"})).await;
    assert_eq!(bad["error"]["code"], "INVALID_REQUEST", "{bad}");
    // The denied job was seen cancelled above, a terminal state: it can never run.
    assert_eq!(comfy.submitted().len(), 1, "the denied job never ran");
}

#[tokio::test]
async fn wait_decision_gives_up_after_its_timeout() {
    let model = FakeOpenAi::start(Script::always(Turn::echo("echo: "))).await.unwrap();
    let tg = FakeTelegram::start().await.unwrap();
    let comfy = FakeComfy::start().await.unwrap();
    let gw = gateway(&model, Some(&tg), &comfy, Value::Null).await;
    let held = held_run(&gw, &tg, &[]).await;
    let started = Instant::now();
    let waited = call(&gw, "plugin.approval.waitDecision", json!({"id": held["id"], "timeoutMs": 700})).await;
    assert!(started.elapsed() >= Duration::from_millis(650), "it waited: {:?}", started.elapsed());
    assert_eq!((waited["decision"].clone(), waited["status"].as_str()), (Value::Null, Some("pending")), "{waited}");
    let unknown = request(&gw, "plugin.approval.waitDecision", json!({"id": "apr_nope", "timeoutMs": 100})).await;
    assert_eq!(unknown["error"]["code"], "APPROVAL_NOT_FOUND", "{unknown}");
}

/// Run the CLI against the gateway; (exit code, stdout).
async fn cli(gw: &TestGateway, args: &[&str]) -> (i32, String) {
    let out = tokio::process::Command::new(BIN)
        .args(args)
        .args(["--url", &gw.ws_url(), "--token", gw.expect_token(), "--state-dir"])
        .arg(gw.state_dir())
        .kill_on_drop(true)
        .output()
        .await
        .expect("running the CLI");
    (out.status.code().unwrap_or(-1), String::from_utf8_lossy(&out.stdout).into_owned())
}

#[tokio::test]
async fn media_links_serve_the_image_and_refuse_tampered_or_expired_ones() {
    let model = FakeOpenAi::start(Script::always(Turn::echo("echo: "))).await.unwrap();
    let comfy = FakeComfy::start().await.unwrap();
    let ttl_secs = 4;
    let gw = gateway(&model, None, &comfy, json!({"media": {"ttlSeconds": ttl_secs}})).await;
    let run = call(&gw, "comfy.run", json!({"templateId": "invert", "inputs": {"width": 16, "height": 8}})).await;
    let job_id = run["jobId"].as_str().unwrap().to_owned();
    wait_job(&gw, &job_id, "completed").await;
    let job = call(&gw, "comfy.jobs.get", json!({"jobId": job_id})).await["job"].clone();
    let url = job["outputs"][0]["mediaUrl"].as_str().expect("a media URL").to_owned();
    let token = url.strip_prefix("/media/").expect("a relative /media/<token> URL").to_owned();
    assert!(!token.contains('/') && !url.contains('?'), "{url}");

    let http = reqwest::Client::new();
    let get = |path: String| {
        let http = http.clone();
        let base = gw.http_url();
        async move { http.get(format!("{base}{path}")).send().await.expect("GET") }
    };
    let res = get(url.clone()).await;
    assert_eq!(res.status(), 200);
    assert_eq!(res.headers()["content-type"], "image/png");
    assert_eq!(res.headers()["x-content-type-options"], "nosniff");
    let body = res.bytes().await.unwrap();
    assert!(body.starts_with(b"\x89PNG\r\n\x1a\n"), "a PNG: {} bytes", body.len());
    assert_eq!(job["outputs"][0]["bytes"].as_u64(), Some(body.len() as u64));

    // A changed signature, or a payload not matching its signature, is refused.
    let (payload, sig) = token.split_once('.').unwrap();
    let flip = |s: &str| {
        let mut chars: Vec<char> = s.chars().collect();
        let last = chars.len() - 1;
        chars[last] = if chars[last] == 'A' { 'B' } else { 'A' };
        chars.into_iter().collect::<String>()
    };
    for forged in [format!("{payload}.{}", flip(sig)), format!("{}.{sig}", flip(payload)), "garbage".to_owned()] {
        let res = get(format!("/media/{forged}")).await;
        assert_eq!(res.status(), 403, "{forged}");
        assert!(!res.text().await.unwrap().is_empty(), "says why");
    }
    // Traversal through the route goes nowhere.
    assert_ne!(get("/media/..%2F..%2Fconfig.json".into()).await.status(), 200);

    // The CLI shows the job and the worker.
    let (code, out) = cli(&gw, &["jobs", "list"]).await;
    assert_eq!(code, 0, "{out}");
    assert!(out.contains(&job_id) && out.contains("completed") && out.contains("invert"), "{out}");
    let (code, out) = cli(&gw, &["jobs", "show", &job_id]).await;
    assert_eq!(code, 0, "{out}");
    assert!(out.contains("Status:   completed"), "{out}");
    assert!(out.contains("/media/"), "{out}");
    let (code, out) = cli(&gw, &["jobs", "list", "--json"]).await;
    assert_eq!(code, 0);
    let listed: Value = serde_json::from_str(out.trim()).expect("--json is JSON");
    assert_eq!(listed["jobs"][0]["id"], job_id.as_str());
    let (code, out) = cli(&gw, &["workers"]).await;
    assert_eq!(code, 0, "{out}");
    let row = out.lines().find(|l| l.starts_with("w0 ")).unwrap_or_else(|| panic!("{out}"));
    assert!(row.contains(&comfy.base_url()) && row.contains(" up "), "{row}");
    let (code, out) = cli(&gw, &["jobs", "cancel", &job_id]).await;
    assert_eq!(code, 0);
    assert!(out.contains("already ended"), "{out}");

    // Once expired, the same link is refused (it was served above): ask until it is.
    let body = wait_until(Duration::from_secs(ttl_secs + 30), "the link expires", || async {
        let res = get(url.clone()).await;
        (res.status() == 403).then_some(res)
    })
    .await
    .unwrap();
    assert!(body.text().await.unwrap().contains("expired"));
}
