//! ComfyUI jobs end to end: the real binary drives [`FakeComfy`] workers (contracts/comfy-real.md)
//! with the weight-free template shipped in `templates/`, takes `/run` from a [`FakeTelegram`]
//! chat and delivers the image back with `sendPhoto`; clients use `comfy.*` over the protocol.

use std::time::Duration;

use clawgate_testkit::fake_comfy::FakeComfy;
use clawgate_testkit::fake_discord::{FakeDiscord, FakeUser};
use clawgate_testkit::fake_openai::{FakeOpenAi, Script, Turn};
use clawgate_testkit::fake_telegram::FakeTelegram;
use clawgate_testkit::{RawClient, TestGateway, eventually, wait_until};
use serde_json::{Value, json};

const BIN: &str = env!("CARGO_BIN_EXE_clawgate");
const WAIT: Duration = Duration::from_secs(40);

fn templates_dir() -> String {
    format!("{}/../../templates", env!("CARGO_MANIFEST_DIR"))
}

async fn gateway(
    model: &FakeOpenAi,
    tg: Option<&FakeTelegram>,
    workers: &[&FakeComfy],
    commands: Value,
) -> TestGateway {
    let workers: Vec<Value> = workers
        .iter()
        .enumerate()
        .map(|(i, w)| json!({"name": format!("w{i}"), "url": w.base_url(), "maxConcurrent": 1}))
        .collect();
    let mut cfg = json!({
        "models": {"providers": {"fake": {"baseUrl": model.base_url(), "apiKey": "k", "api": "openai-completions",
                                          "models": [{"id": "m"}]}}},
        "agents": {"defaults": {"model": {"primary": "fake/m"}}},
        "comfy": {"templatesDir": templates_dir(), "workers": workers, "commands": commands},
    });
    if let Some(tg) = tg {
        cfg["channels"] = json!({"telegram": {"botToken": tg.token(), "apiRoot": tg.api_root(), "pollTimeoutSeconds": 1,
                                              "dmPolicy": "open", "allowFrom": ["100"]}});
    }
    TestGateway::builder(BIN).config(cfg.to_string()).start().await.expect("starting clawgate")
}

async fn call(gw: &TestGateway, method: &str, params: Value) -> Value {
    let mut c = RawClient::connect(&gw.ws_url()).await.expect("ws");
    c.handshake(gw.token(), &json!({})).await.expect("handshake");
    let res = c.request(method, Some(params)).await.expect(method);
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

/// The jobs in one status, as `comfy.jobs.list` reports them.
async fn jobs_in(gw: &TestGateway, status: &str) -> Vec<Value> {
    let list = call(gw, "comfy.jobs.list", json!({"status": [status]})).await;
    list["jobs"].as_array().cloned().unwrap_or_default()
}

#[tokio::test]
async fn run_from_telegram_delivers_the_image_and_never_reaches_the_model() {
    let model = FakeOpenAi::start(Script::always(Turn::echo("echo: "))).await.unwrap();
    let tg = FakeTelegram::start().await.unwrap();
    let comfy = FakeComfy::start().await.unwrap();
    let _gw = gateway(&model, Some(&tg), &[&comfy], Value::Null).await;
    tg.push_private_message(100, "owner", "/run invert color=255 width=64 height=32");
    let photo = tg.wait_for_sent(|c| c.is("sendPhoto") && c.status == 200, WAIT).await.expect("an image is delivered");
    assert_eq!(photo.param_i64("chat_id"), Some(100));
    assert_eq!(photo.files.len(), 1, "{photo:?}");
    assert!(photo.files[0].len > 50, "a real PNG: {:?}", photo.files[0]);
    let texts: Vec<String> = tg.calls("sendMessage").iter().filter_map(|c| c.param_str("text")).collect();
    assert!(texts.iter().any(|t| t.contains("[Job Submitted]")), "{texts:?}");
    tg.wait_for_sent(|c| c.param_str("text").is_some_and(|t| t.contains("[Job Completed]")), WAIT).await.unwrap();
    let sent = comfy.submitted();
    assert_eq!(sent.len(), 1);
    assert_eq!(sent[0].prompt["1"]["inputs"]["width"], json!(64), "typed inputs: {}", sent[0].prompt);
    assert_eq!(sent[0].prompt["1"]["inputs"]["color"], json!(255));
    assert!(model.chat_requests().is_empty(), "a command never reaches the model");
    // A bad input is a clear error naming the key.
    tg.push_private_message(100, "owner", "/run invert widht=3");
    let err = tg
        .wait_for_sent(|c| c.param_str("text").is_some_and(|t| t.contains("widht")), WAIT)
        .await
        .expect("error names the key");
    assert!(err.param_str("text").unwrap().contains("width"), "lists what is allowed");
}

#[tokio::test]
async fn untrusted_senders_need_an_admins_approval() {
    let model = FakeOpenAi::start(Script::always(Turn::echo("echo: "))).await.unwrap();
    let tg = FakeTelegram::start().await.unwrap();
    let comfy = FakeComfy::start().await.unwrap();
    let gw = gateway(&model, Some(&tg), &[&comfy], json!({"adminUsers": ["telegram:100"]})).await;
    tg.push_private_message(200, "guest", "/run invert");
    let held = tg
        .wait_for_sent(|c| c.param_str("text").is_some_and(|t| t.contains("[Approval Requested]")), WAIT)
        .await
        .expect("held for approval");
    let text = held.param_str("text").unwrap();
    let id = text.lines().find_map(|l| l.strip_prefix("ID: ")).unwrap().trim().to_owned();
    // The admin is told in their own chat, with the commands that decide it.
    let notice = tg
        .wait_for_sent(
            |c| c.param_i64("chat_id") == Some(100) && c.param_str("text").is_some_and(|t| t.contains(&id)),
            WAIT,
        )
        .await
        .expect("the admin is notified");
    let notice = notice.param_str("text").unwrap();
    assert!(
        notice.contains(&format!("Approve: /approve {id}")) && notice.contains("telegram:200 (@guest)"),
        "{notice}"
    );
    // The request was processed: its job is stored as held, which the dispatcher never takes.
    assert_eq!(jobs_in(&gw, "awaiting_approval").await.len(), 1, "the job is held");
    assert!(comfy.submitted().is_empty(), "nothing runs before the approval");
    tg.push_private_message(100, "owner", &format!("/approve {id}"));
    let photo =
        tg.wait_for_sent(|c| c.is("sendPhoto") && c.status == 200, WAIT).await.expect("delivered after approval");
    assert_eq!(photo.param_i64("chat_id"), Some(200), "to the chat that asked");
    // A rejection keeps its reason.
    tg.push_private_message(200, "guest", "/run invert");
    let approval_ids = |tg: &FakeTelegram| -> Vec<String> {
        tg.calls("sendMessage")
            .iter()
            .filter(|c| c.param_i64("chat_id") == Some(200))
            .filter_map(|c| c.param_str("text"))
            .filter(|t| t.contains("[Approval Requested]"))
            .filter_map(|t| t.lines().find_map(|l| l.strip_prefix("ID: ")).map(|s| s.trim().to_owned()))
            .collect()
    };
    let second = eventually(WAIT, "a second approval request", || approval_ids(&tg).into_iter().find(|s| s != &id))
        .await
        .unwrap();
    tg.push_private_message(100, "owner", &format!("/reject {second} not today"));
    tg.wait_for_sent(|c| c.param_str("text").is_some_and(|t| t.contains("not today")), WAIT)
        .await
        .expect("reason shown");
    // The rejection is stored (cancelled is terminal), so the job can never run.
    assert_eq!(jobs_in(&gw, "cancelled").await.len(), 1, "the rejected job is cancelled");
    assert!(jobs_in(&gw, "awaiting_approval").await.is_empty());
    assert_eq!(comfy.submitted().len(), 1, "the rejected job never ran");
}

#[tokio::test]
async fn jobs_spread_over_workers_and_survive_a_worker_dying() {
    let model = FakeOpenAi::start(Script::always(Turn::echo("echo: "))).await.unwrap();
    let slow = || FakeComfy::builder().job_duration(Duration::from_millis(300)).start();
    let (a, b, c) = (slow().await.unwrap(), slow().await.unwrap(), slow().await.unwrap());
    let gw = gateway(&model, None, &[&a, &b, &c], Value::Null).await;
    let workers = call(&gw, "comfy.workers.list", json!({})).await;
    assert_eq!(workers["workers"].as_array().unwrap().len(), 3, "{workers}");
    assert_eq!(workers["workers"][0]["version"], "0.3.64", "from /system_stats: {workers}");
    let templates = call(&gw, "comfy.templates.list", json!({})).await;
    assert_eq!(templates["templates"][0]["id"], "invert");

    let mut ids = Vec::new();
    for i in 0..20 {
        let r = call(&gw, "comfy.run", json!({"templateId": "invert", "inputs": {"color": i}})).await;
        assert_eq!(r["status"], "queued", "{r}");
        ids.push(r["jobId"].as_str().unwrap().to_owned());
    }
    // Kill one worker while jobs run on it; its job goes back to the queue and finishes elsewhere.
    eventually(WAIT, "worker a runs a job", || a.running_id()).await.unwrap();
    a.kill();
    for id in &ids {
        let job = wait_job(&gw, id, "completed").await;
        assert_eq!(job["outputs"].as_array().map(Vec::len), Some(1), "{job}");
    }
    let counts = [a.completed_count(), b.completed_count(), c.completed_count()];
    assert!(counts[1] >= 3 && counts[2] >= 3, "work is spread: {counts:?}");
    let done_elsewhere = counts[1] + counts[2];
    assert!(done_elsewhere + counts[0] >= 20, "{counts:?}");
    let list = call(&gw, "comfy.jobs.list", json!({"status": ["completed"]})).await;
    assert_eq!(list["jobs"].as_array().unwrap().len(), 20);

    // Cancel a queued job: it never starts.
    let r = call(&gw, "comfy.run", json!({"templateId": "invert"})).await;
    let id = r["jobId"].as_str().unwrap().to_owned();
    let cancelled = call(&gw, "comfy.jobs.cancel", json!({"jobId": id})).await;
    assert!(cancelled["status"] == "cancelled" || cancelled["status"] == "completed", "{cancelled}");
}

#[tokio::test]
async fn the_agent_tool_turns_plain_language_into_an_image_in_the_same_chat() {
    let model = FakeOpenAi::start(
        Script::new()
            .turn(Turn::tool_call("comfy_generate", r#"{"template":"invert","inputs":{"color":65280,"width":16}}"#))
            .turn(Turn::text(["On its way!"])),
    )
    .await
    .unwrap();
    let tg = FakeTelegram::start().await.unwrap();
    let comfy = FakeComfy::start().await.unwrap();
    let _gw = gateway(&model, Some(&tg), &[&comfy], Value::Null).await;
    tg.push_private_message(100, "owner", "please draw me something green");
    let photo = tg.wait_for_sent(|c| c.is("sendPhoto") && c.status == 200, WAIT).await.expect("image delivered");
    assert_eq!(photo.param_i64("chat_id"), Some(100));
    tg.wait_for_sent(|c| c.param_str("text").as_deref() == Some("On its way!"), WAIT).await.expect("the reply");
    let first = &model.chat_requests()[0].body;
    let tools: Vec<&str> =
        first["tools"].as_array().unwrap().iter().filter_map(|t| t["function"]["name"].as_str()).collect();
    assert!(tools.contains(&"comfy_generate"), "offered when ComfyUI is configured: {tools:?}");
    assert_eq!(comfy.submitted()[0].prompt["1"]["inputs"]["width"], json!(16));
}

#[tokio::test]
async fn schedules_history_and_trace_work_from_chat() {
    let model = FakeOpenAi::start(Script::always(Turn::echo("echo: "))).await.unwrap();
    let tg = FakeTelegram::start().await.unwrap();
    let comfy = FakeComfy::start().await.unwrap();
    let gw = gateway(&model, Some(&tg), &[&comfy], json!({"adminUsers": ["telegram:100"]})).await;
    let job = call(
        &gw,
        "cron.add",
        json!({"name": "yearly", "schedule": {"kind": "cron", "expr": "0 0 9 1 1 *"}, "sessionTarget": "isolated",
               "wakeMode": "now", "payload": {"kind": "agentTurn", "message": "hi"},
               "delivery": {"mode": "announce", "channel": "telegram", "to": "100"}}),
    )
    .await;
    let sched = job["id"].as_str().unwrap().to_owned();
    tg.push_private_message(100, "owner", "/schedules");
    tg.wait_for_sent(|c| c.param_str("text").is_some_and(|t| t.contains(&sched)), WAIT).await.expect("listed");
    tg.push_private_message(100, "owner", &format!("/schedule disable {sched}"));
    tg.wait_for_sent(|c| c.param_str("text").is_some_and(|t| t.contains("disabled")), WAIT).await.expect("disabled");
    let listed = call(&gw, "cron.list", json!({"includeDisabled": true})).await;
    assert_eq!(listed["jobs"][0]["enabled"], false, "{listed}");

    tg.push_private_message(100, "owner", "/run invert");
    tg.wait_for_sent(|c| c.is("sendPhoto") && c.status == 200, WAIT).await.expect("image");
    let jobs = call(&gw, "comfy.jobs.list", json!({})).await;
    let id = jobs["jobs"][0]["id"].as_str().unwrap().to_owned();
    tg.push_private_message(100, "owner", &format!("/history {id}"));
    tg.wait_for_sent(|c| c.param_str("text").is_some_and(|t| t.starts_with(&format!("Job {id}: completed"))), WAIT)
        .await
        .expect("history");
    tg.push_private_message(100, "owner", &format!("/trace {id}"));
    tg.wait_for_sent(|c| c.param_str("text").is_some_and(|t| t.contains("promptId")), WAIT).await.expect("trace");
    assert!(model.chat_requests().is_empty());
}

#[tokio::test]
async fn stop_from_chat_interrupts_the_running_job_on_its_worker() {
    let model = FakeOpenAi::start(Script::always(Turn::echo("echo: "))).await.unwrap();
    let tg = FakeTelegram::start().await.unwrap();
    let comfy = FakeComfy::start().await.unwrap();
    comfy.hang();
    let gw = gateway(&model, Some(&tg), &[&comfy], json!({"adminUsers": ["telegram:100"]})).await;
    tg.push_private_message(100, "owner", "/run invert color=5");
    eventually(WAIT, "the job starts", || comfy.running_id()).await.unwrap();
    let jobs = call(&gw, "comfy.jobs.list", json!({})).await;
    let id = jobs["jobs"][0]["id"].as_str().unwrap().to_owned();
    wait_job(&gw, &id, "running").await;
    tg.push_private_message(100, "owner", "/stop");
    tg.wait_for_sent(|c| c.param_str("text").is_some_and(|t| t == format!("Stopped {id}.")), WAIT)
        .await
        .expect("stop answered");
    wait_job(&gw, &id, "cancelled").await;
    eventually(WAIT, "ComfyUI is interrupted", || (comfy.interrupt_count() > 0).then_some(())).await.unwrap();
    assert!(comfy.running_id().is_none(), "the worker is free again");
    // Nothing left: a second /stop says so.
    tg.push_private_message(100, "owner", "/cancel");
    tg.wait_for_sent(|c| c.param_str("text").as_deref() == Some("Nothing is running."), WAIT).await.expect("nothing");
    assert!(tg.calls("sendPhoto").is_empty(), "a stopped job delivers nothing");
}

/// On Discord the admin has no conversation with the bot yet: the held `/run` is announced in a
/// DM channel the gateway opens for them, and their `/approve` there releases the job, whose
/// image goes to the asker's channel.
#[tokio::test]
async fn discord_admins_get_the_approval_request_in_a_dm() {
    const ADMIN: &str = "220000000000000001";
    const GUEST: &str = "220000000000000002";
    const GUEST_DM: &str = "320000000000000002";
    let model = FakeOpenAi::start(Script::always(Turn::echo("echo: "))).await.unwrap();
    let dc = FakeDiscord::start().await.unwrap();
    let comfy = FakeComfy::start().await.unwrap();
    let cfg = json!({
        "models": {"providers": {"fake": {"baseUrl": model.base_url(), "apiKey": "k", "api": "openai-completions",
                                          "models": [{"id": "m"}]}}},
        "agents": {"defaults": {"model": {"primary": "fake/m"}}},
        "comfy": {"templatesDir": templates_dir(), "workers": [{"name": "w0", "url": comfy.base_url()}],
                  "commands": {"adminUsers": [format!("discord:{ADMIN}")]}},
        "channels": {"discord": {"token": dc.token(), "gatewayUrl": dc.gateway_url(), "apiRoot": dc.api_root(),
                                 "dmPolicy": "open"}},
    });
    let _gw = TestGateway::builder(BIN).config(cfg.to_string()).start().await.expect("starting clawgate");
    let guest = FakeUser::new(GUEST, "guest");
    eventually(WAIT, "the gateway connects to Discord", || {
        (dc.connection_count() > 0 && dc.is_session_bound()).then_some(())
    })
    .await
    .unwrap();
    dc.push_message_create(GUEST_DM, None, &guest, "/run invert color=9", &[]);
    let sent_to = |channel: &str, needle: &str| {
        dc.sent_messages()
            .into_iter()
            .find(|m| m.channel_id == channel && m.content().is_some_and(|c| c.contains(needle)))
    };
    let held =
        eventually(WAIT, "the approval request is sent", || sent_to(GUEST_DM, "[Approval Requested]")).await.unwrap();
    let id = held.content().unwrap().lines().find_map(|l| l.strip_prefix("ID: ")).unwrap().trim().to_owned();
    let (admin_dm, m) = eventually(WAIT, "the admin is messaged", || {
        let dm = dc.dm_channel_of(ADMIN)?;
        let m = sent_to(&dm, &format!("Approve: /approve {id}"))?;
        Some((dm, m))
    })
    .await
    .unwrap();
    assert!(m.content().unwrap().contains(&format!("discord:{GUEST} (@guest)")), "{m:?}");
    assert!(comfy.submitted().is_empty(), "nothing runs before the approval");
    dc.push_message_create(&admin_dm, None, &FakeUser::new(ADMIN, "admin"), &format!("/approve {id}"), &[]);
    eventually(WAIT, "the guest gets the image", || {
        dc.sent_messages().iter().any(|m| m.channel_id == GUEST_DM && !m.files.is_empty()).then_some(())
    })
    .await
    .unwrap();
    assert_eq!(comfy.submitted().len(), 1);
}
