//! ComfyUI jobs survive a `kill -9` of the gateway: the real binary drives two [`FakeComfy`]
//! workers and delivers to a [`FakeTelegram`] chat; it is killed while jobs run and wait, then
//! restarted on the same state. Every job must complete once and every image reach the chat
//! once. Each job gets its own `filename_prefix`, so a photo names the job it belongs to (and a
//! second run of the same job on a worker shows up as `<prefix>_00002_.png`).

use std::collections::BTreeMap;
use std::time::Duration;

use clawgate_testkit::fake_comfy::FakeComfy;
use clawgate_testkit::fake_openai::{FakeOpenAi, Script, Turn};
use clawgate_testkit::fake_telegram::FakeTelegram;
use clawgate_testkit::{RawClient, TestGateway, eventually, wait_until};
use serde_json::{Value, json};

const BIN: &str = env!("CARGO_BIN_EXE_clawgate");
const WAIT: Duration = Duration::from_secs(40);
/// The chat jobs deliver to (also the only sender on the allow list).
const CHAT: i64 = 100;

fn templates_dir() -> String {
    format!("{}/../../templates", env!("CARGO_MANIFEST_DIR"))
}

async fn gateway(model: &FakeOpenAi, tg: &FakeTelegram, workers: &[&FakeComfy], env: &[(&str, &str)]) -> TestGateway {
    let workers: Vec<Value> = workers
        .iter()
        .enumerate()
        .map(|(i, w)| json!({"name": format!("w{i}"), "url": w.base_url(), "maxConcurrent": 1}))
        .collect();
    let cfg = json!({
        "models": {"providers": {"fake": {"baseUrl": model.base_url(), "apiKey": "k", "api": "openai-completions",
                                          "models": [{"id": "m"}]}}},
        "agents": {"defaults": {"model": {"primary": "fake/m"}}},
        "comfy": {"templatesDir": templates_dir(), "workers": workers},
        "channels": {"telegram": {"botToken": tg.token(), "apiRoot": tg.api_root(), "pollTimeoutSeconds": 1,
                                  "dmPolicy": "open", "allowFrom": [CHAT.to_string()]}},
    });
    let mut b = TestGateway::builder(BIN).config(cfg.to_string());
    for (k, v) in env {
        b = b.env(*k, *v);
    }
    b.start().await.expect("starting clawgate")
}

async fn call(gw: &TestGateway, method: &str, params: Value) -> Value {
    let mut c = RawClient::connect(&gw.ws_url()).await.expect("ws");
    c.handshake(gw.token(), &json!({})).await.expect("handshake");
    let res = c.request(method, Some(params)).await.expect(method);
    assert_eq!(res["ok"], true, "{method}: {res}");
    res["payload"].clone()
}

/// Queues job `i` (prefix `j<i>`) for the Telegram chat; returns its id.
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

/// Waits until `comfy.jobs.list` shows exactly `n` completed jobs; returns them.
async fn wait_completed(gw: &TestGateway, n: usize) -> Vec<Value> {
    let done = wait_until(WAIT, format_args!("{n} jobs completed"), || async {
        let list = call(gw, "comfy.jobs.list", json!({"status": ["completed"]})).await;
        let jobs = list["jobs"].as_array().cloned().unwrap_or_default();
        (jobs.len() >= n).then_some(jobs)
    })
    .await;
    match done {
        Ok(jobs) => jobs,
        Err(e) => panic!("{e:#}: {}", call(gw, "comfy.jobs.list", json!({})).await),
    }
}

/// Photos sent to the chat, by file name.
fn photos(tg: &FakeTelegram) -> Vec<String> {
    tg.calls("sendPhoto")
        .into_iter()
        .filter(|c| c.status == 200 && c.param_i64("chat_id") == Some(CHAT))
        .flat_map(|c| c.files.into_iter().filter_map(|f| f.filename))
        .collect()
}

/// `[Job Completed]` notices per job id.
fn completion_notices(tg: &FakeTelegram) -> BTreeMap<String, usize> {
    let mut out = BTreeMap::new();
    for c in tg.calls("sendMessage") {
        if c.status != 200 {
            continue;
        }
        let Some(text) = c.param_str("text") else { continue };
        if text.starts_with("[Job Completed]")
            && let Some(id) = text.lines().find_map(|l| l.strip_prefix("ID: "))
        {
            *out.entry(id.trim().to_owned()).or_default() += 1;
        }
    }
    out
}

/// Waits until `n` photos were sent and then until the outbox has sent everything queued before
/// now, so that any duplicate delivery would have shown up: the chat's outbox sends its rows one
/// at a time in insertion order, and a message sent now is answered through it (the model
/// echoes it) only after every earlier row.
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

/// The job prefix (`j3`) of a photo named `j3_00001_.png`.
fn prefix(file: &str) -> &str {
    file.split('_').next().unwrap_or(file)
}

#[tokio::test]
async fn kill9_mid_queue_completes_every_job_and_delivers_every_image_once() {
    const JOBS: usize = 8;
    let model = FakeOpenAi::start(Script::always(Turn::echo("echo: "))).await.unwrap();
    let tg = FakeTelegram::start().await.unwrap();
    let slow = || FakeComfy::builder().job_duration(Duration::from_millis(300)).start();
    let (a, b) = (slow().await.unwrap(), slow().await.unwrap());
    let mut gw = gateway(&model, &tg, &[&a, &b], &[]).await;
    let mut ids = Vec::new();
    for i in 0..JOBS {
        ids.push(run_job(&gw, i).await);
    }

    // Kill once two jobs are done and told to the chat and, mid-job, both workers hold a job the
    // gateway has recorded as running (so six are either running or still queued in the
    // gateway). The kill stays out of two narrower windows that tests of their own cover: the
    // outbox's send-then-mark step and the step between a worker accepting a prompt and the
    // gateway recording it as running.
    wait_until(WAIT, "two jobs are done and told, and both workers run another", || async {
        let done = a.completed_count() + b.completed_count();
        let told = completion_notices(&tg).len();
        if done < 2 || told < done || a.running_id().is_none() || b.running_id().is_none() {
            return None;
        }
        let running = call(&gw, "comfy.jobs.list", json!({"status": ["running"]})).await;
        (running["jobs"].as_array().map(Vec::len) == Some(2)).then_some(())
    })
    .await
    .unwrap();
    let running_at_kill = [a.running_id(), b.running_id()].iter().flatten().count();
    let done_at_kill = a.completed_count() + b.completed_count();
    gw.kill9().await.expect("kill -9");
    // The jobs running at the kill finish on the workers while nobody watches: after the
    // restart only /history can tell the gateway about them.
    eventually(WAIT, "both workers are idle", || {
        let idle = |w: &FakeComfy| w.running_id().is_none() && w.pending_ids().is_empty();
        (idle(&a) && idle(&b)).then_some(())
    })
    .await
    .unwrap();
    let status = call_while_down(&a, &b);
    gw.restart().await.expect("restart after kill -9");

    let completed = wait_completed(&gw, JOBS).await;
    let mut completed_ids: Vec<String> = completed.iter().filter_map(|j| j["id"].as_str().map(str::to_owned)).collect();
    completed_ids.sort();
    let mut expected = ids.clone();
    expected.sort();
    assert_eq!(completed_ids, expected, "every job completed, once each");
    for job in &completed {
        assert_eq!(job["outputs"].as_array().map(Vec::len), Some(1), "one stored image: {job}");
    }

    let sent = wait_photos(&tg, JOBS).await;
    let mut per_job: BTreeMap<&str, usize> = BTreeMap::new();
    for f in &sent {
        *per_job.entry(prefix(f)).or_default() += 1;
    }
    let want: BTreeMap<String, usize> = (0..JOBS).map(|i| (format!("j{i}"), 1)).collect();
    let got: BTreeMap<String, usize> = per_job.iter().map(|(k, v)| ((*k).to_owned(), *v)).collect();
    assert_eq!(got, want, "each job's image reaches the chat exactly once: {sent:?}");
    let notices = completion_notices(&tg);
    assert_eq!(notices.len(), JOBS, "{notices:?}");
    assert!(notices.values().all(|n| *n == 1), "one [Job Completed] per job: {notices:?}");

    // Work on the workers: a job running at the kill may run again only if the gateway could
    // not find it in /history; nothing else runs twice.
    let ran = a.completed_count() + b.completed_count();
    eprintln!(
        "kill -9 with {done_at_kill} done and {running_at_kill} running on the workers ({status}); \
         {ran} executions on the workers for {JOBS} jobs; photos {sent:?}"
    );
    assert!(ran >= JOBS && ran <= JOBS + running_at_kill, "{ran} executions for {JOBS} jobs");
    let submitted = a.submitted().len() + b.submitted().len();
    assert!(submitted <= JOBS + running_at_kill, "{submitted} prompts submitted for {JOBS} jobs");
}

/// What the workers did while the gateway was down, for the report line.
fn call_while_down(a: &FakeComfy, b: &FakeComfy) -> String {
    format!(
        "while down: {} done, running {:?}/{:?}",
        a.completed_count() + b.completed_count(),
        a.running_id(),
        b.running_id()
    )
}

/// A crash after a job's images were stored locally and before the job is both queued for
/// delivery and marked completed: after the restart the image is still delivered, once.
async fn crash_in_finish_delivers_once(point: &str) {
    let model = FakeOpenAi::start(Script::always(Turn::echo("echo: "))).await.unwrap();
    let tg = FakeTelegram::start().await.unwrap();
    let comfy = FakeComfy::start().await.unwrap();
    let mut gw = gateway(&model, &tg, &[&comfy], &[("CLAWGATE_CRASH_AT", point)]).await;
    let id = run_job(&gw, 0).await;
    let status = gw.wait_exit(WAIT).await.unwrap_or_else(|e| panic!("gateway did not stop at {point}: {e:#}"));
    assert!(!status.success(), "the crash point aborts the process ({point})");
    gw.set_env("CLAWGATE_CRASH_AT", None);
    gw.restart().await.expect("restart after the crash");
    let done = wait_completed(&gw, 1).await;
    assert_eq!(done[0]["id"], json!(id));
    let sent = wait_photos(&tg, 1).await;
    assert_eq!(sent.len(), 1, "one photo after a crash at {point}: {sent:?}");
    assert_eq!(prefix(&sent[0]), "j0");
    assert_eq!(completion_notices(&tg).get(&id), Some(&1), "one [Job Completed] after a crash at {point}");
    assert_eq!(comfy.completed_count(), 1, "the finished job is not run again");
}

#[tokio::test]
async fn crash_after_outputs_stored_before_delivery_delivers_once() {
    crash_in_finish_delivers_once("comfy.outputs_stored").await;
}

#[tokio::test]
async fn crash_after_delivery_queued_before_completion_delivers_once() {
    crash_in_finish_delivers_once("comfy.delivery_queued").await;
}

/// The gateway dies while a job runs, and the worker restarts meanwhile (its queue and history
/// are gone). After the gateway's restart the job is not left waiting for a prompt nobody
/// knows: it goes back to the queue, runs again and is delivered once.
#[tokio::test]
async fn a_job_its_restarted_worker_forgot_runs_again_after_a_gateway_restart() {
    let model = FakeOpenAi::start(Script::always(Turn::echo("echo: "))).await.unwrap();
    let tg = FakeTelegram::start().await.unwrap();
    let comfy = FakeComfy::builder().job_duration(Duration::from_secs(3)).start().await.unwrap();
    let mut gw = gateway(&model, &tg, &[&comfy], &[]).await;
    let id = run_job(&gw, 0).await;
    eventually(WAIT, "the job starts on the worker", || comfy.running_id()).await.unwrap();
    gw.kill9().await.expect("kill -9");
    // The killed listener's task lets go of the port a moment later.
    wait_until(WAIT, "the worker restarts on its port", || async { comfy.restart().await.ok() })
        .await
        .expect("worker restart");
    comfy.set_job_duration(Duration::from_millis(100));
    gw.restart().await.expect("gateway restart");
    let done = wait_completed(&gw, 1).await;
    assert_eq!(done[0]["id"], json!(id));
    let sent = wait_photos(&tg, 1).await;
    assert_eq!(sent.len(), 1, "{sent:?}");
    assert_eq!(comfy.completed_count(), 1, "only the second run finished");
    assert_eq!(comfy.submitted().len(), 2, "submitted again after the worker lost it");
}

/// The gateway dies after ComfyUI accepted a job's prompt and before the job was marked
/// running. After the restart the prompt is found again on the worker by the attempt's tag in
/// `extra_data`: the job completes, the image arrives once and ComfyUI ran the prompt once.
#[tokio::test]
async fn crash_after_the_worker_accepted_the_prompt_does_not_run_it_twice() {
    let model = FakeOpenAi::start(Script::always(Turn::echo("echo: "))).await.unwrap();
    let tg = FakeTelegram::start().await.unwrap();
    let comfy = FakeComfy::builder().job_duration(Duration::from_millis(500)).start().await.unwrap();
    let mut gw = gateway(&model, &tg, &[&comfy], &[("CLAWGATE_CRASH_AT", "comfy.prompt_accepted")]).await;
    let id = run_job(&gw, 0).await;
    let status = gw.wait_exit(WAIT).await.expect("the gateway stops at the crash point");
    assert!(!status.success());
    assert_eq!(comfy.submitted().len(), 1, "the worker holds the prompt");
    assert_eq!(
        comfy.submitted()[0].extra_data["clawgate_job"],
        json!(format!("{id}-1")),
        "tagged with job and attempt"
    );
    gw.set_env("CLAWGATE_CRASH_AT", None);
    gw.restart().await.expect("restart after the crash");
    let done = wait_completed(&gw, 1).await;
    assert_eq!(done[0]["id"], json!(id));
    assert_eq!(done[0]["promptId"], json!(comfy.submitted()[0].prompt_id), "the prompt found again");
    let sent = wait_photos(&tg, 1).await;
    assert_eq!(sent.len(), 1, "{sent:?}");
    assert_eq!(comfy.submitted().len(), 1, "the prompt was not submitted again");
    assert_eq!(comfy.completed_count(), 1);
    assert_eq!(completion_notices(&tg).get(&id), Some(&1));
}
