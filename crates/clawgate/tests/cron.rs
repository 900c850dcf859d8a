//! Cron end to end: the real binary schedules jobs (6-field, per-second expressions keep the
//! tests short), runs agent turns against [`FakeOpenAi`] and ComfyUI templates against
//! [`FakeComfy`], delivers to a [`FakeTelegram`] chat, and answers `cron.*` — also to the real
//! `openclaw` CLI. Every frame a [`RawClient`] receives is checked against the protocol schema.

use std::time::Duration;

use clawgate_testkit::fake_comfy::FakeComfy;
use clawgate_testkit::fake_openai::{FakeOpenAi, Script, Turn};
use clawgate_testkit::fake_telegram::FakeTelegram;
use clawgate_testkit::{OpenClawPeers, RawClient, TestGateway, eventually, wait_until};
use serde_json::{Value, json};

const BIN: &str = env!("CARGO_BIN_EXE_clawgate");
const WAIT: Duration = Duration::from_secs(40);

async fn gateway(model: &FakeOpenAi, tg: &FakeTelegram, comfy: Option<&FakeComfy>) -> TestGateway {
    let mut cfg = json!({
        "models": {"providers": {"fake": {"baseUrl": model.base_url(), "apiKey": "k", "api": "openai-completions",
                                          "models": [{"id": "m"}]}}},
        "agents": {"defaults": {"model": {"primary": "fake/m"}}},
        "channels": {"telegram": {"botToken": tg.token(), "apiRoot": tg.api_root(), "pollTimeoutSeconds": 1,
                                  "dmPolicy": "open", "allowFrom": ["100"]}},
    });
    if let Some(c) = comfy {
        cfg["comfy"] = json!({"templatesDir": format!("{}/../../templates", env!("CARGO_MANIFEST_DIR")),
                              "workers": [{"name": "w0", "url": c.base_url()}]});
    }
    TestGateway::builder(BIN).config(cfg.to_string()).start().await.expect("starting clawgate")
}

async fn client(gw: &TestGateway) -> RawClient {
    let mut c = RawClient::connect(&gw.ws_url()).await.expect("ws");
    c.handshake(gw.token(), &json!({})).await.expect("handshake");
    c
}

async fn call(c: &mut RawClient, method: &str, params: Value) -> Value {
    let res = c.request(method, Some(params)).await.expect(method);
    assert_eq!(res["ok"], true, "{method}: {res}");
    res["payload"].clone()
}

fn agent_job(name: &str, expr: &str, message: &str, catch_up: &str) -> Value {
    json!({
        "name": name, "schedule": {"kind": "cron", "expr": expr}, "sessionTarget": "isolated", "wakeMode": "now",
        "payload": {"kind": "agentTurn", "message": message},
        "delivery": {"mode": "announce", "channel": "telegram", "to": "100"},
        "catchUp": catch_up,
    })
}

/// Finished runs of a job, newest first.
async fn runs(c: &mut RawClient, job_id: &str) -> Vec<Value> {
    call(c, "cron.runs", json!({"id": job_id})).await["entries"].as_array().cloned().unwrap_or_default()
}

async fn wait_runs(c: &mut RawClient, job_id: &str, n: usize) -> Vec<Value> {
    let shared = tokio::sync::Mutex::new(&mut *c);
    let done = wait_until(WAIT, format_args!("job {job_id} has {n} runs"), || async {
        let r = runs(*shared.lock().await, job_id).await;
        (r.len() >= n).then_some(r)
    })
    .await;
    match done {
        Ok(r) => r,
        Err(e) => panic!("{e:#}: {:?}", runs(c, job_id).await),
    }
}

/// Waits for a scheduler pass that ended at or after `after_ms` (`cron.status.lastPassAtMs`):
/// every slot due by then has been claimed and its run started.
async fn wait_pass(gw: &TestGateway, after_ms: i64) {
    wait_until(WAIT, format_args!("a scheduler pass after {after_ms}"), || async {
        let mut c = client(gw).await;
        let status = call(&mut c, "cron.status", json!({})).await;
        status["lastPassAtMs"].as_i64().filter(|t| *t >= after_ms).map(|_| ())
    })
    .await
    .unwrap();
}

fn model_turns_with(model: &FakeOpenAi, marker: &str) -> usize {
    model.chat_requests().iter().filter(|r| r.body["messages"].to_string().contains(marker)).count()
}

fn now_ms() -> i64 {
    std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map(|d| d.as_millis() as i64).unwrap_or(0)
}

/// A 6-field expression firing (daily) at the UTC seconds `at_ms + offsets`, all in one minute.
fn daily_at(at_ms: i64, offsets: &[i64]) -> (String, Vec<i64>) {
    let secs: Vec<i64> = offsets.iter().map(|o| (at_ms / 1000 + o) % 60).collect();
    let base = at_ms / 1000;
    let (m, h) = ((base / 60) % 60, (base / 3600) % 24);
    let list: Vec<String> = secs.iter().map(i64::to_string).collect();
    (format!("{} {m} {h} * * *", list.join(",")), offsets.iter().map(|o| (base + o) * 1000).collect())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn openclaw_cron_list_shows_clawgates_jobs_and_a_manual_run_leaves_a_receipt() {
    let peers = OpenClawPeers::get().await.unwrap_or_else(|e| panic!("the real OpenClaw clients are required: {e:#}"));
    let model = FakeOpenAi::start(Script::always(Turn::echo("echo: "))).await.unwrap();
    let tg = FakeTelegram::start().await.unwrap();
    let gw = gateway(&model, &tg, None).await;
    let mut c = client(&gw).await;
    // Yearly at a fixed second: never fires on its own during the test.
    let job = call(&mut c, "cron.add", agent_job("morning digest", "0 0 9 1 1 *", "digest-marker", "skip")).await;
    let id = job["id"].as_str().expect("id").to_owned();
    assert_eq!(job["schedule"], json!({"kind": "cron", "expr": "0 0 9 1 1 *"}));
    assert!(job["state"]["nextRunAtMs"].as_i64().is_some_and(|n| n > now_ms()), "{job}");
    let listed = call(&mut c, "cron.list", json!({})).await;
    assert_eq!(listed["total"], 1, "{listed}");
    assert_eq!(listed["jobs"][0]["id"], id.as_str());

    let out = peers
        .cli(["cron", "list", "--url", &gw.ws_url(), "--token", gw.expect_token()])
        .run()
        .await
        .expect("running openclaw");
    assert_eq!(out.code, Some(0), "{}", out.describe());
    let table = out.combined();
    assert!(table.contains(&id) && table.contains("morning digest"), "{}", out.describe());
    assert!(table.contains("cron 0 0 9 1 1 *"), "{}", out.describe());
    let out = peers
        .cli(["cron", "list", "--url", &gw.ws_url(), "--token", gw.expect_token(), "--json"])
        .run()
        .await
        .expect("running openclaw");
    assert_eq!(out.code, Some(0), "{}", out.describe());
    let printed = out.json().expect("JSON output");
    assert_eq!(printed["jobs"][0]["id"], id.as_str(), "{printed}");
    assert_eq!(printed["jobs"][0]["status"], "idle", "{printed}");

    // cron.run: runs now, announces it, delivers the reply, leaves a receipt.
    let ran = call(&mut c, "cron.run", json!({"id": id})).await;
    assert_eq!(ran["enqueued"], true, "{ran}");
    let mut actions = Vec::new();
    while !actions.contains(&"finished".to_owned()) {
        let ev = c.recv_event("cron", WAIT).await.expect("cron events");
        assert_eq!(ev["payload"]["jobId"], id.as_str(), "{ev}");
        actions.push(ev["payload"]["action"].as_str().unwrap_or_default().to_owned());
    }
    assert_eq!(actions, ["added", "started", "finished"]);
    let receipts = wait_runs(&mut c, &id, 1).await;
    assert_eq!(receipts[0]["status"], "ok", "{receipts:?}");
    assert_eq!(receipts[0]["runId"], ran["runId"]);
    assert_eq!(receipts[0]["jobName"], "morning digest");
    let reply = tg
        .wait_for_sent(|s| s.param_str("text").is_some_and(|t| t.contains("echo: digest-marker")), WAIT)
        .await
        .expect("the reply reaches the chat");
    assert_eq!(reply.param_i64("chat_id"), Some(100));
    let shown = call(&mut c, "cron.list", json!({})).await;
    assert_eq!(shown["jobs"][0]["state"]["lastRunStatus"], "ok", "{shown}");

    // Removing it removes it; a second removal names the code.
    call(&mut c, "cron.remove", json!({"id": id})).await;
    let again = c.request("cron.remove", Some(json!({"id": id}))).await.expect("res");
    assert_eq!(again["error"]["details"]["code"], "CRON_JOB_NOT_FOUND", "{again}");
    assert_eq!(call(&mut c, "cron.list", json!({})).await["total"], 0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn slots_due_during_downtime_follow_the_catch_up_policy_and_fire_once() {
    let model = FakeOpenAi::start(Script::always(Turn::echo("echo: "))).await.unwrap();
    let tg = FakeTelegram::start().await.unwrap();
    let mut gw = gateway(&model, &tg, None).await;
    let mut c = client(&gw).await;
    // Two slots, 4 s and 6 s from now, in one minute.
    let mut at = now_ms() + 4_000;
    if (at / 1000) % 60 > 52 {
        at += 10_000;
    }
    let (expr, slots) = daily_at(at, &[0, 2]);
    let mut ids = Vec::new();
    for policy in ["once", "skip", "all"] {
        let job = call(&mut c, "cron.add", agent_job(policy, &expr, &format!("missed-{policy}"), policy)).await;
        ids.push(job["id"].as_str().expect("id").to_owned());
    }
    drop(c);
    gw.kill9().await.expect("kill -9");
    // The fact to wait for is the clock: both slots pass while the gateway is down.
    let resume = slots[1] + 1_500;
    eventually(WAIT, "both slots are past", || (now_ms() >= resume).then_some(())).await.unwrap();
    gw.restart().await.expect("restart");
    let mut c = client(&gw).await;

    let once = wait_runs(&mut c, &ids[0], 1).await;
    let all = wait_runs(&mut c, &ids[2], 2).await;
    // A later pass (an update re-plans at once) must not fire a slot again; then restart
    // again and wait for the new process's first pass: receipts hold.
    let replan = now_ms();
    call(&mut c, "cron.update", json!({"id": ids[1], "patch": {"name": "skip"}})).await;
    wait_pass(&gw, replan).await;
    let restarted = now_ms();
    gw.restart().await.expect("second restart");
    let mut c = client(&gw).await;
    wait_pass(&gw, restarted).await;

    let once_after = runs(&mut c, &ids[0]).await;
    assert_eq!(once_after.len(), 1, "once fires the latest missed slot, once: {once_after:?}");
    assert_eq!(once[0]["runAtMs"], slots[1], "{once:?}");
    assert_eq!(once[0]["status"], "ok", "{once:?}");
    assert!(runs(&mut c, &ids[1]).await.is_empty(), "skip fires none of the missed slots");
    let all_after = runs(&mut c, &ids[2]).await;
    let mut fired: Vec<i64> = all_after.iter().filter_map(|r| r["runAtMs"].as_i64()).collect();
    fired.sort_unstable();
    assert_eq!(fired, slots, "all fires each missed slot once: {all:?}");
    assert_eq!(model_turns_with(&model, "missed-once"), 1);
    assert_eq!(model_turns_with(&model, "missed-skip"), 0);
    assert_eq!(model_turns_with(&model, "missed-all"), 2);
    let delivered = |tg: &FakeTelegram, m: &str| {
        tg.calls("sendMessage").iter().filter(|s| s.param_str("text").is_some_and(|t| t.contains(m))).count()
    };
    tg.wait_for_sent(|s| s.param_str("text").is_some_and(|t| t.contains("echo: missed-once")), WAIT)
        .await
        .expect("the catch-up reply reaches the chat");
    assert_eq!(delivered(&tg, "echo: missed-once"), 1);
    assert_eq!(delivered(&tg, "echo: missed-skip"), 0);
    // A skipped job still has its next slot (tomorrow).
    let listed = call(&mut c, "cron.list", json!({})).await;
    let skip = listed["jobs"].as_array().unwrap().iter().find(|j| j["id"] == ids[1].as_str()).cloned().unwrap();
    assert!(skip["state"]["nextRunAtMs"].as_i64().is_some_and(|n| n > now_ms()), "{skip}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_live_every_two_seconds_job_fires_each_slot_once() {
    let model = FakeOpenAi::start(Script::always(Turn::echo("echo: "))).await.unwrap();
    let tg = FakeTelegram::start().await.unwrap();
    let gw = gateway(&model, &tg, None).await;
    let mut c = client(&gw).await;
    let job = call(&mut c, "cron.add", agent_job("tick", "*/2 * * * * *", "tick-marker", "skip")).await;
    let id = job["id"].as_str().unwrap().to_owned();
    let r = wait_runs(&mut c, &id, 3).await;
    call(&mut c, "cron.update", json!({"id": id, "patch": {"enabled": false}})).await;
    let disabled_at = now_ms();
    let r_all = runs(&mut c, &id).await;
    let mut slots: Vec<i64> = r_all.iter().filter_map(|e| e["runAtMs"].as_i64()).collect();
    slots.sort_unstable();
    assert!(slots.windows(2).all(|w| w[1] - w[0] == 2_000), "consecutive even seconds, no repeats: {slots:?} {r:?}");
    assert!(slots.iter().all(|s| s % 2_000 == 0), "{slots:?}");
    // A witness on the same schedule, added after the disable: once it has run twice, the
    // scheduler has handled two slots at which the disabled job would have fired too.
    let witness = call(&mut c, "cron.add", agent_job("witness", "*/2 * * * * *", "witness-marker", "skip")).await;
    wait_runs(&mut c, witness["id"].as_str().unwrap(), 2).await;
    let after: Vec<i64> = runs(&mut c, &id).await.iter().filter_map(|e| e["runAtMs"].as_i64()).collect();
    assert!(
        after.iter().all(|s| *s <= disabled_at),
        "a disabled job does not fire: {after:?} (disabled at {disabled_at})"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_comfy_run_job_delivers_its_image_to_the_chat() {
    let model = FakeOpenAi::start(Script::always(Turn::echo("echo: "))).await.unwrap();
    let tg = FakeTelegram::start().await.unwrap();
    let comfy = FakeComfy::start().await.unwrap();
    let gw = gateway(&model, &tg, Some(&comfy)).await;
    let mut c = client(&gw).await;
    // The job JSON carries clawgate's own payload kind, which upstream's CronJob schema lacks.
    c.set_validation(false);
    let job = call(
        &mut c,
        "cron.add",
        json!({"name": "nightly image", "schedule": {"kind": "cron", "expr": "0 0 3 * * *"}, "sessionTarget": "isolated",
               "wakeMode": "now", "payload": {"kind": "comfyRun", "templateId": "invert", "inputs": {"width": 64, "height": 32}},
               "delivery": {"mode": "announce", "channel": "telegram", "to": "100"}}),
    )
    .await;
    assert_eq!(job["payload"]["kind"], "comfyRun", "{job}");
    let id = job["id"].as_str().unwrap().to_owned();
    call(&mut c, "cron.run", json!({"jobId": id})).await;
    let photo = tg.wait_for_sent(|s| s.is("sendPhoto") && s.status == 200, WAIT).await.expect("image delivered");
    assert_eq!(photo.param_i64("chat_id"), Some(100));
    let r = wait_runs(&mut c, &id, 1).await;
    assert_eq!(r[0]["status"], "ok", "{r:?}");
    assert_eq!(comfy.submitted().len(), 1);
    assert_eq!(comfy.submitted()[0].prompt["1"]["inputs"]["width"], json!(64));
    assert!(model.chat_requests().is_empty(), "a ComfyUI job never reaches the model");
}

/// `ms` as the Control UI sends an `at` time (`Date.toISOString()`: UTC, milliseconds, `Z`).
fn iso_utc(ms: i64) -> String {
    // Days to a civil date (Howard Hinnant's `civil_from_days`).
    let (days, rem) = (ms.div_euclid(86_400_000), ms.rem_euclid(86_400_000));
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z - era * 146_097;
    let yoe = (doe - doe / 1_460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let day = doy - (153 * mp + 2) / 5 + 1;
    let month = if mp < 10 { mp + 3 } else { mp - 9 };
    let year = yoe + era * 400 + i64::from(month <= 2);
    let (h, m, s, milli) = (rem / 3_600_000, rem / 60_000 % 60, rem / 1000 % 60, rem % 1000);
    format!("{year:04}-{month:02}-{day:02}T{h:02}:{m:02}:{s:02}.{milli:03}Z")
}

#[test]
fn iso_utc_writes_what_the_ui_sends() {
    assert_eq!(iso_utc(0), "1970-01-01T00:00:00.000Z");
    assert_eq!(iso_utc(1_796_720_400_123), "2026-12-08T09:00:00.123Z");
    assert_eq!(iso_utc(951_782_400_000), "2000-02-29T00:00:00.000Z");
}

fn job_with(name: &str, schedule: Value, message: &str) -> Value {
    json!({
        "name": name, "schedule": schedule, "sessionTarget": "isolated", "wakeMode": "now",
        "payload": {"kind": "agentTurn", "message": message},
        "delivery": {"mode": "announce", "channel": "telegram", "to": "100"}, "catchUp": "skip",
    })
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_every_job_fires_each_interval_and_an_at_job_fires_once_across_a_restart() {
    let model = FakeOpenAi::start(Script::always(Turn::echo("echo: "))).await.unwrap();
    let tg = FakeTelegram::start().await.unwrap();
    let mut gw = gateway(&model, &tg, None).await;
    let mut c = client(&gw).await;

    let added = now_ms();
    let every =
        call(&mut c, "cron.add", job_with("every", json!({"kind": "every", "everyMs": 2000}), "every-marker")).await;
    let anchor = every["schedule"]["anchorMs"].as_i64().expect("the anchor is the time it was added");
    assert!(anchor >= added && anchor <= now_ms(), "{every}");
    assert_eq!(every["schedule"], json!({"kind": "every", "everyMs": 2000, "anchorMs": anchor}));
    assert_eq!(every["state"]["nextRunAtMs"], anchor + 2000, "{every}");
    let every_id = every["id"].as_str().unwrap().to_owned();

    // Two one-shots at one time: one kept (disabled) after its run, one removed (the default).
    let at_ms = now_ms() + 3_000;
    let at = json!({"kind": "at", "at": iso_utc(at_ms)});
    let mut keep = job_with("at-keep", at.clone(), "at-keep-marker");
    keep["deleteAfterRun"] = json!(false);
    let keep = call(&mut c, "cron.add", keep).await;
    assert_eq!((&keep["schedule"], &keep["deleteAfterRun"]), (&at, &json!(false)), "{keep}");
    assert_eq!(keep["state"]["nextRunAtMs"], at_ms, "{keep}");
    let keep_id = keep["id"].as_str().unwrap().to_owned();
    let gone = call(&mut c, "cron.add", job_with("at-remove", at.clone(), "at-remove-marker")).await;
    assert_eq!(gone["deleteAfterRun"], true, "an `at` job is removed after its run unless it says not: {gone}");
    let gone_id = gone["id"].as_str().unwrap().to_owned();

    // Clear refusals for values that cannot run.
    for (schedule, why) in [
        (json!({"kind": "every", "everyMs": 500}), "schedule.everyMs must be ≥ 1000"),
        (json!({"kind": "at", "at": "next tuesday"}), "schedule.at must be an ISO 8601 time"),
    ] {
        let refused = c.request("cron.add", Some(job_with("bad", schedule, "x"))).await.expect("cron.add");
        assert_eq!(refused["error"]["code"], "INVALID_REQUEST", "{refused}");
        assert!(refused["error"]["message"].as_str().is_some_and(|m| m.contains(why)), "{refused}");
    }

    let fired = wait_runs(&mut c, &keep_id, 1).await;
    assert_eq!((fired[0]["runAtMs"].as_i64(), fired[0]["status"].as_str()), (Some(at_ms), Some("ok")), "{fired:?}");
    let shared = tokio::sync::Mutex::new(&mut c);
    wait_until(WAIT, "the removable one-shot is gone after its run", || async {
        let list = call(*shared.lock().await, "cron.list", json!({"includeDisabled": true})).await;
        let jobs = list["jobs"].as_array().cloned().unwrap_or_default();
        (!jobs.iter().any(|j| j["id"] == gone_id.as_str())).then_some(())
    })
    .await
    .unwrap();
    let r = wait_runs(&mut c, &every_id, 3).await;
    let mut slots: Vec<i64> = r.iter().filter_map(|e| e["runAtMs"].as_i64()).collect();
    slots.sort_unstable();
    assert!(slots.iter().all(|s| (s - anchor) % 2000 == 0 && *s > anchor), "slots on the anchor's grid: {slots:?}");
    assert!(slots.windows(2).all(|w| w[1] > w[0]), "no slot twice: {slots:?}");

    // Across a restart: the kept one-shot stays disabled with its one run; neither fires again.
    let restarted = now_ms();
    gw.restart().await.expect("restart");
    let mut c = client(&gw).await;
    wait_pass(&gw, restarted).await;
    let list = call(&mut c, "cron.list", json!({"includeDisabled": true})).await;
    let kept = list["jobs"].as_array().unwrap().iter().find(|j| j["id"] == keep_id.as_str()).cloned().expect("kept");
    assert_eq!(kept["enabled"], false, "{kept}");
    assert_eq!(kept["state"]["lastRunStatus"], "ok", "{kept}");
    assert_eq!(runs(&mut c, &keep_id).await.len(), 1);
    assert_eq!(model_turns_with(&model, "at-keep-marker"), 1);
    assert_eq!(model_turns_with(&model, "at-remove-marker"), 1);
    tg.wait_for_sent(|s| s.param_str("text").is_some_and(|t| t.contains("echo: at-remove-marker")), WAIT)
        .await
        .expect("the removed one-shot's reply reached the chat");
}
