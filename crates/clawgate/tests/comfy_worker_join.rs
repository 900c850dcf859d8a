//! ComfyUI workers that join by themselves: real `clawgate worker` processes, each next to its
//! own [`FakeComfy`] that the gateway is not configured with (only the worker knows its URL),
//! join a real gateway with a worker token, take jobs and deliver their images to a
//! [`FakeTelegram`] chat. A worker killed mid-job loses nothing: its job completes on the other
//! worker and reaches the chat once. A worker that rejoins under its name is listed once; a wrong
//! token is refused; a worker's connection may call the worker methods and nothing else.

use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::time::Duration;

use clawgate_testkit::fake_comfy::FakeComfy;
use clawgate_testkit::fake_openai::{FakeOpenAi, Script, Turn};
use clawgate_testkit::fake_telegram::FakeTelegram;
use clawgate_testkit::{RawClient, TestGateway, eventually, wait_until};
use serde_json::{Value, json};

const BIN: &str = env!("CARGO_BIN_EXE_clawgate");
const WAIT: Duration = Duration::from_secs(40);
const CHAT: i64 = 100;
const WORKER_TOKEN: &str = "worker-token-for-tests-0123456789";

fn templates_dir() -> String {
    format!("{}/../../templates", env!("CARGO_MANIFEST_DIR"))
}

/// A gateway with ComfyUI on but no configured worker: only joined ones.
async fn gateway(model: &FakeOpenAi, tg: &FakeTelegram) -> TestGateway {
    let cfg = json!({
        "models": {"providers": {"fake": {"baseUrl": model.base_url(), "apiKey": "k", "api": "openai-completions",
                                          "models": [{"id": "m"}]}}},
        "agents": {"defaults": {"model": {"primary": "fake/m"}}},
        "comfy": {"templatesDir": templates_dir(), "workerTokens": [WORKER_TOKEN]},
        "channels": {"telegram": {"botToken": tg.token(), "apiRoot": tg.api_root(), "pollTimeoutSeconds": 1,
                                  "dmPolicy": "open", "allowFrom": [CHAT.to_string()]}},
    });
    TestGateway::builder(BIN).config(cfg.to_string()).start().await.expect("starting clawgate")
}

/// A `clawgate worker` process; its log goes to a file shown when a test fails.
struct WorkerProc {
    child: tokio::process::Child,
    log: PathBuf,
}

impl WorkerProc {
    fn spawn(gw: &TestGateway, comfy: &FakeComfy, name: &str, token: &str, dir: &Path) -> Self {
        let log = dir.join(format!("{name}-{}.log", rand_suffix()));
        let file = std::fs::File::create(&log).expect("worker log");
        let child = tokio::process::Command::new(BIN)
            .args(["worker", "--gateway", &gw.ws_url(), "--token", token, "--comfy", &comfy.base_url(), "--name", name])
            .env("CLAWGATE_LOG", "info")
            .stdout(Stdio::null())
            .stderr(file)
            .kill_on_drop(true)
            .spawn()
            .expect("starting clawgate worker");
        Self { child, log }
    }

    fn log(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }

    async fn kill(&mut self) {
        self.child.kill().await.expect("killing the worker");
    }
}

fn rand_suffix() -> u128 {
    std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map(|d| d.as_nanos()).unwrap_or(0)
}

async fn call(gw: &TestGateway, method: &str, params: Value) -> Value {
    let mut c = RawClient::connect(&gw.ws_url()).await.expect("ws");
    c.handshake(gw.token(), &json!({})).await.expect("handshake");
    let res = c.request(method, Some(params)).await.expect(method);
    assert_eq!(res["ok"], true, "{method}: {res}");
    res["payload"].clone()
}

async fn run_job(gw: &TestGateway, i: usize) -> String {
    let r = call(
        gw,
        "comfy.run",
        json!({"templateId": "invert",
               "inputs": {"color": i, "width": 16, "height": 16, "filename_prefix": format!("j{i}")},
               "deliverTo": {"channel": "telegram", "chatId": CHAT.to_string()}}),
    )
    .await;
    r["jobId"].as_str().expect("a job id").to_owned()
}

async fn job(gw: &TestGateway, id: &str) -> Value {
    call(gw, "comfy.jobs.get", json!({"jobId": id})).await["job"].clone()
}

async fn wait_job(gw: &TestGateway, id: &str, what: &str, pred: impl Fn(&Value) -> bool) -> Value {
    let found = wait_until(WAIT, format_args!("job {id}: {what}"), || async {
        let j = job(gw, id).await;
        pred(&j).then_some(j)
    })
    .await;
    match found {
        Ok(j) => j,
        Err(e) => panic!("{e:#}: {}", job(gw, id).await),
    }
}

/// The joined workers `comfy.workers.list` shows.
async fn joined(gw: &TestGateway) -> Vec<Value> {
    let list = call(gw, "comfy.workers.list", json!({})).await;
    list["workers"].as_array().cloned().unwrap_or_default().into_iter().filter(|w| w["kind"] == "joined").collect()
}

async fn wait_joined(gw: &TestGateway, names: &[&str], workers: &[&WorkerProc]) {
    let ok = wait_until(WAIT, format_args!("workers {names:?} joined"), || async {
        let list = joined(gw).await;
        names.iter().all(|n| list.iter().any(|w| w["name"] == *n && w["healthy"] == true)).then_some(())
    })
    .await;
    if let Err(e) = ok {
        let logs: Vec<String> = workers.iter().map(|w| w.log()).collect();
        panic!("{e:#}: {:?}\nworker logs:\n{}", joined(gw).await, logs.join("\n---\n"));
    }
}

fn photos(tg: &FakeTelegram) -> Vec<String> {
    tg.calls("sendPhoto")
        .into_iter()
        .filter(|c| c.status == 200 && c.param_i64("chat_id") == Some(CHAT))
        .flat_map(|c| c.files.into_iter().filter_map(|f| f.filename))
        .collect()
}

/// Waits until `n` photos were sent, then until the chat's outbox has sent everything queued
/// before now (a reply to a later message comes through the same outbox), so that a duplicate
/// delivery would have shown up.
async fn wait_photos(tg: &FakeTelegram, n: usize) -> Vec<String> {
    if let Err(e) =
        eventually(WAIT, format_args!("{n} photos are sent"), || (photos(tg).len() >= n).then_some(())).await
    {
        panic!("{e:#}; only these photos arrived: {:?}", photos(tg));
    }
    let marker = format!("after {n} photos");
    tg.push_private_message(CHAT, "owner", &marker);
    tg.wait_for_sent(|c| c.status == 200 && c.param_str("text").is_some_and(|t| t.contains(&marker)), WAIT)
        .await
        .expect("a later reply comes through the same outbox");
    photos(tg)
}

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
async fn joined_workers_take_jobs_and_a_killed_workers_job_completes_on_the_other_once() {
    let dir = tempfile::tempdir().unwrap();
    let model = FakeOpenAi::start(Script::always(Turn::echo("echo: "))).await.unwrap();
    let tg = FakeTelegram::start().await.unwrap();
    let fast = || FakeComfy::builder().job_duration(Duration::from_millis(100)).start();
    let (comfy_a, comfy_b) = (fast().await.unwrap(), fast().await.unwrap());
    let gw = gateway(&model, &tg).await;

    let mut a = WorkerProc::spawn(&gw, &comfy_a, "gpu-a", WORKER_TOKEN, dir.path());
    let mut b = WorkerProc::spawn(&gw, &comfy_b, "gpu-b", WORKER_TOKEN, dir.path());
    wait_joined(&gw, &["gpu-a", "gpu-b"], &[&a, &b]).await;
    let list = joined(&gw).await;
    assert_eq!(list.len(), 2, "{list:?}");
    assert!(list.iter().all(|w| w["version"] == "0.3.64" && w["lastHeartbeat"].is_i64()), "{list:?}");

    // Two jobs at once: capacity 1 each, so one per worker; both reach the chat.
    let (j0, j1) = (run_job(&gw, 0).await, run_job(&gw, 1).await);
    let done0 = wait_job(&gw, &j0, "completed", |j| j["status"] == "completed").await;
    let done1 = wait_job(&gw, &j1, "completed", |j| j["status"] == "completed").await;
    let mut used = vec![done0["worker"].as_str().unwrap().to_owned(), done1["worker"].as_str().unwrap().to_owned()];
    used.sort();
    assert_eq!(used, ["gpu-a", "gpu-b"], "least-loaded: one job per worker");
    assert_eq!(done0["outputs"].as_array().map(Vec::len), Some(1), "{done0}");
    assert_eq!(comfy_a.completed_count() + comfy_b.completed_count(), 2);
    let sent = wait_photos(&tg, 2).await;
    assert_eq!(sent.len(), 2, "{sent:?}");

    // Hold every prompt, queue a job, and kill the worker that took it while it runs there.
    comfy_a.set_hang(true);
    comfy_b.set_hang(true);
    let j2 = run_job(&gw, 2).await;
    let running = wait_job(&gw, &j2, "running", |j| j["status"] == "running").await;
    assert_eq!(running["attempts"], 1);
    let (victim, victim_comfy, other_comfy, victim_name, other) = match running["worker"].as_str() {
        Some("gpu-a") => (&mut a, &comfy_a, &comfy_b, "gpu-a", "gpu-b"),
        Some("gpu-b") => (&mut b, &comfy_b, &comfy_a, "gpu-b", "gpu-a"),
        _ => panic!("{running}"),
    };
    victim.kill().await;
    // Its socket closed: the job goes back to the queue and runs on the other worker.
    let moved =
        wait_job(&gw, &j2, "running on the other worker", |j| j["status"] == "running" && j["worker"] == other).await;
    assert_eq!(moved["attempts"], 2, "{moved}");
    assert!(joined(&gw).await.iter().all(|w| w["name"] != victim_name), "the killed worker left the pool");
    other_comfy.set_hang(false);
    let done2 = wait_job(&gw, &j2, "completed", |j| j["status"] == "completed").await;
    assert_eq!(done2["worker"], other);

    // The killed worker comes back under its name: listed once.
    victim_comfy.set_hang(false);
    let back = WorkerProc::spawn(&gw, victim_comfy, victim_name, WORKER_TOKEN, dir.path());
    wait_joined(&gw, &["gpu-a", "gpu-b"], &[&back]).await;
    let names: Vec<String> = joined(&gw).await.iter().map(|w| w["name"].as_str().unwrap_or("").to_owned()).collect();
    assert_eq!(names.len(), 2, "{names:?}");
    assert_eq!(names.iter().filter(|n| *n == victim_name).count(), 1, "{names:?}");
    let (code, table) = cli(&gw, &["workers"]).await;
    assert_eq!(code, 0, "{table}");
    let rows: Vec<&str> = table.lines().filter(|l| l.starts_with(&format!("{victim_name} "))).collect();
    assert_eq!(rows.len(), 1, "{table}");
    assert!(rows[0].contains(" joined ") && rows[0].contains(" up "), "{table}");
    let status = call(&gw, "status", json!({})).await;
    let pool = status["workerPools"]["comfy"].as_array().cloned().unwrap_or_default();
    assert_eq!(pool.iter().filter(|w| w["name"] == victim_name).count(), 1, "{status}");

    // The held prompt on the killed worker's ComfyUI finished when released, but nobody
    // reported it: the job it belonged to was delivered once, by the other worker.
    let sent = wait_photos(&tg, 3).await;
    let j2_photos = sent.iter().filter(|f| f.starts_with("j2_")).count();
    assert_eq!(j2_photos, 1, "job 2's image reached the chat exactly once: {sent:?}");
    assert_eq!(sent.len(), 3, "{sent:?}");
    // And a job after the rejoin still runs.
    let j3 = run_job(&gw, 3).await;
    wait_job(&gw, &j3, "completed", |j| j["status"] == "completed").await;
}

#[tokio::test]
async fn wrong_tokens_are_refused_and_worker_connections_call_only_worker_methods() {
    let dir = tempfile::tempdir().unwrap();
    let model = FakeOpenAi::start(Script::always(Turn::echo("echo: "))).await.unwrap();
    let tg = FakeTelegram::start().await.unwrap();
    let comfy = FakeComfy::start().await.unwrap();
    let gw = gateway(&model, &tg).await;

    // A worker with a wrong token is refused for good: it exits 2 and says why.
    let mut wrong = WorkerProc::spawn(&gw, &comfy, "gpu-x", "not-the-token", dir.path());
    let status = tokio::time::timeout(WAIT, wrong.child.wait()).await.expect("the worker gives up").unwrap();
    assert_eq!(status.code(), Some(2), "{}", wrong.log());
    assert!(wrong.log().contains("refused"), "{}", wrong.log());
    assert!(joined(&gw).await.is_empty());

    // A worker-token connection: only comfy.worker.* — everything else is FORBIDDEN.
    let mut w = RawClient::connect(&gw.ws_url()).await.unwrap();
    w.set_validation(false);
    w.handshake(Some(WORKER_TOKEN), &json!({})).await.expect("a worker token is admitted");
    for method in ["status", "health", "comfy.run", "comfy.workers.list", "config.get"] {
        let res = w.request(method, Some(json!({}))).await.unwrap();
        assert_eq!(res["ok"], false, "{method}: {res}");
        assert_eq!(res["error"]["code"], "FORBIDDEN", "{method}: {res}");
    }
    let res = w.request("comfy.worker.pull", Some(json!({"waitMs": 10}))).await.unwrap();
    assert_eq!(res["ok"], false, "{res}");
    assert!(res["error"]["message"].as_str().unwrap_or("").contains("comfy.worker.join"), "{res}");
    let res = w.request("comfy.worker.join", Some(json!({"name": "manual", "capacity": 1}))).await.unwrap();
    assert_eq!(res["ok"], true, "{res}");
    assert_eq!(res["payload"]["name"], "manual");
    let res =
        w.request("comfy.worker.done", Some(json!({"jobId": "job_nope", "attempt": 1, "ok": true}))).await.unwrap();
    assert_eq!(res["payload"]["accepted"], false, "a job never handed out does not complete: {res}");
    assert_eq!(joined(&gw).await.len(), 1);

    // An operator, even an admin, is not a worker.
    let mut op = RawClient::connect(&gw.ws_url()).await.unwrap();
    op.handshake(gw.token(), &json!({})).await.unwrap();
    let res = op.request("comfy.worker.join", Some(json!({"name": "sneaky", "capacity": 1}))).await.unwrap();
    assert_eq!(res["error"]["code"], "FORBIDDEN", "{res}");

    // The worker's socket closes: it leaves the pool.
    drop(w);
    wait_until(WAIT, "the closed worker left", || async { joined(&gw).await.is_empty().then_some(()) }).await.unwrap();
}

#[tokio::test]
async fn removing_a_worker_token_sends_its_workers_away_for_good() {
    let dir = tempfile::tempdir().unwrap();
    let model = FakeOpenAi::start(Script::always(Turn::echo("echo: "))).await.unwrap();
    let tg = FakeTelegram::start().await.unwrap();
    let comfy = FakeComfy::start().await.unwrap();
    let gw = gateway(&model, &tg).await;
    let mut w = WorkerProc::spawn(&gw, &comfy, "gpu-r", WORKER_TOKEN, dir.path());
    wait_joined(&gw, &["gpu-r"], &[&w]).await;

    let path = gw.config_path().expect("config file").to_owned();
    let mut cfg: Value = serde_json::from_str(&std::fs::read_to_string(&path).unwrap()).expect("the test wrote JSON");
    cfg["comfy"]["workerTokens"] = json!(["a-different-worker-token-0123456789"]);
    std::fs::write(&path, cfg.to_string()).unwrap();

    // Its connection is closed; reconnecting with the removed token is refused, and it stops.
    let status = tokio::time::timeout(WAIT, w.child.wait()).await.expect("the worker stops").unwrap();
    assert_eq!(status.code(), Some(2), "{}", w.log());
    assert!(w.log().contains("refused"), "{}", w.log());
    wait_until(WAIT, "the worker left", || async { joined(&gw).await.is_empty().then_some(()) }).await.unwrap();
}

#[tokio::test]
async fn a_worker_reconnects_after_a_gateway_restart_and_its_interrupted_job_runs_again_once() {
    let dir = tempfile::tempdir().unwrap();
    let model = FakeOpenAi::start(Script::always(Turn::echo("echo: "))).await.unwrap();
    let tg = FakeTelegram::start().await.unwrap();
    let comfy = FakeComfy::builder().job_duration(Duration::from_millis(100)).start().await.unwrap();
    let mut gw = gateway(&model, &tg).await;
    let w = WorkerProc::spawn(&gw, &comfy, "gpu-s", WORKER_TOKEN, dir.path());
    wait_joined(&gw, &["gpu-s"], &[&w]).await;

    comfy.set_hang(true);
    let id = run_job(&gw, 7).await;
    wait_job(&gw, &id, "running", |j| j["status"] == "running").await;
    gw.restart().await.expect("restarting the gateway");
    // The worker lost its connection: it interrupts the prompt the gateway will run again.
    let interrupted =
        wait_until(WAIT, "the worker interrupted its prompt", || async { (comfy.interrupt_count() > 0).then_some(()) })
            .await;
    assert!(interrupted.is_ok(), "{}", w.log());
    comfy.set_hang(false);
    wait_joined(&gw, &["gpu-s"], &[&w]).await;
    let done = wait_job(&gw, &id, "completed", |j| j["status"] == "completed").await;
    assert_eq!(done["attempts"], 2, "{done}");
    let sent = wait_photos(&tg, 1).await;
    assert_eq!(sent.iter().filter(|f| f.starts_with("j7_")).count(), 1, "{sent:?}");
}
