//! Several gateways on one PostgreSQL database share the ComfyUI job queue, the cron schedule
//! and failed-auth lockouts (issue 16, item 2): 20 jobs submitted through both gateways run once
//! each on the fake workers although the gateway driving the workers is killed (`kill -9`)
//! halfway, a per-second cron job fires once per slot with both gateways up, and a guesser
//! locked out on one gateway is locked out on the other.
//!
//! Skipped with the reason printed when PostgreSQL is not installed, unless
//! `CLAWGATE_REQUIRE_PEERS` is set (as `scripts/test.sh` does).

use std::time::Duration;

use clawgate_testkit::fake_comfy::FakeComfy;
use clawgate_testkit::fake_openai::{FakeOpenAi, Script, Turn};
use clawgate_testkit::{RawClient, TestGateway, TestPostgres, connect_params, wait_until};
use serde_json::{Value, json};

const BIN: &str = env!("CARGO_BIN_EXE_clawgate");
const WAIT: Duration = Duration::from_secs(60);

fn templates_dir() -> String {
    format!("{}/../../templates", env!("CARGO_MANIFEST_DIR"))
}

fn database_url() -> Option<String> {
    let server = TestPostgres::shared()?;
    Some(server.create_database().expect("create a database"))
}

/// A gateway's config on the shared database; leases expire fast so the test sees a takeover.
fn config(url: &str, model: &FakeOpenAi, workers: &[&FakeComfy]) -> Value {
    let workers: Vec<Value> = workers
        .iter()
        .enumerate()
        .map(|(i, w)| json!({"name": format!("w{i}"), "url": w.base_url(), "maxConcurrent": 1}))
        .collect();
    let mut cfg = json!({
        "models": {"providers": {"fake": {"baseUrl": model.base_url(), "apiKey": "k", "api": "openai-completions",
                                          "models": [{"id": "m"}]}}},
        "agents": {"defaults": {"model": {"primary": "fake/m"}}},
        "storage": {"url": url},
        "cluster": {"leaseTtlMs": 1500, "heartbeatMs": 300},
    });
    if !workers.is_empty() {
        cfg["comfy"] = json!({"templatesDir": templates_dir(), "workers": workers});
    }
    cfg
}

async fn start(cfg: &Value, token: &str) -> TestGateway {
    TestGateway::builder(BIN).config(cfg.to_string()).token(token).start().await.expect("starting clawgate")
}

async fn call(gw: &TestGateway, method: &str, params: Value) -> Value {
    let mut c = RawClient::connect(&gw.ws_url()).await.expect("ws");
    c.handshake(gw.token(), &json!({})).await.expect("handshake");
    c.set_validation(false);
    let res = c.request(method, Some(params)).await.expect(method);
    assert_eq!(res["ok"], true, "{method}: {res}");
    res["payload"].clone()
}

/// How many prompts of job `id` the workers were given (each start carries `<job id>-<attempt>`).
fn submissions(id: &str, workers: &[&FakeComfy]) -> usize {
    let tag = format!("\"{id}-");
    workers.iter().flat_map(|w| w.submitted()).filter(|p| p.extra_data.to_string().contains(&tag)).count()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn jobs_submitted_to_two_gateways_run_once_each_when_one_is_killed_halfway() {
    let Some(url) = database_url() else { return };
    let model = FakeOpenAi::start(Script::always(Turn::echo("echo: "))).await.unwrap();
    let slow = || FakeComfy::builder().job_duration(Duration::from_millis(250)).start();
    let (w0, w1) = (slow().await.unwrap(), slow().await.unwrap());
    let workers = [&w0, &w1];
    let cfg = config(&url, &model, &workers);
    let token = "cluster-jobs-token-0123456789";
    // A starts first and takes both workers' leases; B waits for them.
    let mut a = start(&cfg, token).await;
    wait_until(WAIT, "gateway a drives both workers", || async {
        let list = call(&a, "comfy.workers.list", json!({})).await;
        let ws = list["workers"].as_array().cloned().unwrap_or_default();
        (ws.len() == 2 && ws.iter().all(|w| w["healthy"] == true)).then_some(())
    })
    .await
    .unwrap();
    let b = start(&cfg, token).await;

    let mut ids = Vec::new();
    for i in 0..20 {
        let gw = if i % 2 == 0 { &a } else { &b };
        let r = call(gw, "comfy.run", json!({"templateId": "invert", "inputs": {"color": i}})).await;
        assert_eq!(r["status"], "queued", "{r}");
        ids.push(r["jobId"].as_str().unwrap().to_owned());
    }
    // Halfway: some jobs done, others running on the workers a drives — then a dies.
    wait_until(WAIT, "a few jobs completed and one runs", || async {
        let done = w0.completed_count() + w1.completed_count();
        (done >= 6 && (w0.running_id().is_some() || w1.running_id().is_some())).then_some(())
    })
    .await
    .unwrap();
    a.kill9().await.unwrap();

    for id in &ids {
        wait_until(WAIT, format_args!("job {id} completed (through b)"), || async {
            let job = call(&b, "comfy.jobs.get", json!({"jobId": id})).await["job"].clone();
            (job["status"] == "completed").then_some(())
        })
        .await
        .unwrap();
    }
    for id in &ids {
        assert_eq!(submissions(id, &workers), 1, "job {id} ran once on the workers");
    }
    assert_eq!(w0.completed_count() + w1.completed_count(), 20, "20 prompts ran, no more");
    let list = call(&b, "comfy.jobs.list", json!({"status": ["completed"]})).await;
    assert_eq!(list["jobs"].as_array().map(Vec::len), Some(20));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_cron_job_fires_once_per_slot_with_two_gateways_up() {
    let Some(url) = database_url() else { return };
    let model = FakeOpenAi::start(Script::always(Turn::echo("echo: "))).await.unwrap();
    let cfg = config(&url, &model, &[]);
    let token = "cluster-cron-token-0123456789";
    let a = start(&cfg, token).await;
    let b = start(&cfg, token).await;
    let job = call(
        &a,
        "cron.add",
        json!({
            "name": "tick", "schedule": {"kind": "cron", "expr": "* * * * * *"}, "sessionTarget": "isolated",
            "wakeMode": "now", "payload": {"kind": "agentTurn", "message": "cluster-tick"},
            "delivery": {"mode": "none"}, "catchUp": "skip",
        }),
    )
    .await;
    let id = job["id"].as_str().unwrap().to_owned();
    let runs = wait_until(WAIT, "six slots ran", || async {
        let entries = call(&b, "cron.runs", json!({"id": id, "limit": 100})).await["entries"].clone();
        let entries = entries.as_array().cloned().unwrap_or_default();
        (entries.len() >= 6).then_some(entries)
    })
    .await
    .unwrap();
    call(&b, "cron.update", json!({"id": id, "patch": {"enabled": false}})).await;
    let mut slots: Vec<i64> = runs.iter().filter_map(|e| e["runAtMs"].as_i64()).collect();
    slots.sort_unstable();
    let before = slots.len();
    slots.dedup();
    assert_eq!(slots.len(), before, "no slot has two runs: {runs:?}");
    // Each finished run is one model call: a slot fired by both gateways would call it twice.
    let all = call(&a, "cron.runs", json!({"id": id, "limit": 100})).await["entries"].as_array().cloned().unwrap();
    let finished = all.iter().filter(|e| e["status"] != "running").count();
    let calls = model.chat_requests().iter().filter(|r| r.body.to_string().contains("cluster-tick")).count();
    assert!(calls >= finished && calls <= all.len(), "one model call per run: {calls} calls, runs {all:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_and_at_jobs_fire_once_per_slot_with_two_gateways_up() {
    let Some(url) = database_url() else { return };
    let model = FakeOpenAi::start(Script::always(Turn::echo("echo: "))).await.unwrap();
    let cfg = config(&url, &model, &[]);
    let token = "cluster-cron-kinds-token-0123456789";
    let a = start(&cfg, token).await;
    let b = start(&cfg, token).await;
    let job = |name: &str, schedule: Value, marker: &str| {
        json!({"name": name, "schedule": schedule, "sessionTarget": "isolated", "wakeMode": "now",
               "payload": {"kind": "agentTurn", "message": marker}, "delivery": {"mode": "none"},
               "catchUp": "skip", "deleteAfterRun": false})
    };
    let every = call(&a, "cron.add", job("every", json!({"kind": "every", "everyMs": 1000}), "cluster-every")).await;
    let every_id = every["id"].as_str().unwrap().to_owned();
    // Milliseconds since the epoch: one of the forms upstream reads an `at` in.
    let at_ms = every["createdAtMs"].as_i64().unwrap() + 2_000;
    let once = call(&b, "cron.add", job("once", json!({"kind": "at", "at": at_ms.to_string()}), "cluster-at")).await;
    let once_id = once["id"].as_str().unwrap().to_owned();
    let runs = wait_until(WAIT, "four interval slots and the one-shot ran", || async {
        let every = call(&b, "cron.runs", json!({"id": every_id, "limit": 100})).await["entries"].clone();
        let once = call(&a, "cron.runs", json!({"id": once_id})).await["entries"].clone();
        let every = every.as_array().cloned().unwrap_or_default();
        (every.len() >= 4 && once.as_array().is_some_and(|o| !o.is_empty())).then_some(every)
    })
    .await
    .unwrap();
    call(&b, "cron.update", json!({"id": every_id, "patch": {"enabled": false}})).await;
    let mut slots: Vec<i64> = runs.iter().filter_map(|e| e["runAtMs"].as_i64()).collect();
    slots.sort_unstable();
    let before = slots.len();
    slots.dedup();
    assert_eq!(slots.len(), before, "no interval slot has two runs: {runs:?}");
    let all =
        call(&a, "cron.runs", json!({"id": every_id, "limit": 100})).await["entries"].as_array().cloned().unwrap();
    let finished = all.iter().filter(|e| e["status"] != "running").count();
    let calls = |m: &str| model.chat_requests().iter().filter(|r| r.body.to_string().contains(m)).count();
    let every_calls = calls("cluster-every");
    assert!(every_calls >= finished && every_calls <= all.len(), "one model call per run: {every_calls}, {all:?}");
    // The one-shot: one receipt at its time, then disabled by whichever gateway ran it.
    let once_runs = call(&b, "cron.runs", json!({"id": once_id})).await["entries"].as_array().cloned().unwrap();
    assert_eq!(once_runs.len(), 1, "{once_runs:?}");
    assert_eq!(once_runs[0]["runAtMs"], at_ms, "{once_runs:?}");
    assert_eq!(calls("cluster-at"), 1, "the one-shot ran once across both gateways");
    let list = call(&a, "cron.list", json!({"includeDisabled": true})).await;
    let listed = list["jobs"].as_array().unwrap().iter().find(|j| j["id"] == once_id.as_str()).cloned().unwrap();
    assert_eq!(listed["enabled"], false, "{listed}");
}

/// `connect` with `token`; the `res` frame.
async fn connect_with(gw: &TestGateway, token: &str) -> Value {
    let mut c = RawClient::connect(&gw.ws_url()).await.expect("websocket upgrade");
    c.challenge(Duration::from_secs(10)).await.expect("connect.challenge");
    let id = c.next_id();
    c.send_json(
        &json!({"type": "req", "id": id, "method": "connect", "params": connect_params(Some(token), &json!({}))}),
    )
    .await
    .unwrap();
    c.recv_response(&id, Duration::from_secs(10)).await.expect("connect answer")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_lockout_started_on_one_gateway_holds_on_the_other() {
    let Some(url) = database_url() else { return };
    let cfg = json!({
        "storage": {"url": url},
        "gateway": {"auth": {"rateLimit": {"maxAttempts": 3, "windowMs": 60000, "lockoutMs": 60000}}},
    });
    let token = "cluster-lockout-token-0123456789";
    let a = start(&cfg, token).await;
    let b = start(&cfg, token).await;
    let code = |res: &Value| res["error"]["details"]["code"].as_str().unwrap_or_default().to_owned();
    assert_eq!(connect_with(&b, token).await["ok"], true, "b admits the right token before any guessing");
    for i in 0..3 {
        let res = connect_with(&a, &format!("wrong-{i}")).await;
        assert_eq!(code(&res), "AUTH_TOKEN_MISMATCH", "{res}");
    }
    assert_eq!(code(&connect_with(&a, token).await), "AUTH_RATE_LIMITED", "a locked the guesser out");
    // b never saw a wrong secret: only the shared lockout can refuse it there.
    let refused = wait_until(WAIT, "b applies a's lockout", || async {
        let res = connect_with(&b, token).await;
        (code(&res) == "AUTH_RATE_LIMITED").then_some(res)
    })
    .await
    .unwrap();
    assert!(refused["error"]["retryAfterMs"].as_u64().unwrap_or(0) > 0, "{refused}");
}
