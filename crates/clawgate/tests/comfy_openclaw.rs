//! Workers in mode `openclaw`: the real binary drives a ComfyUI with the ComfyUI-OpenClaw
//! extension ([`FakeOpenClaw`], faithful to contracts/comfy-real.md §6) — jobs started through
//! the bridge (device token) or `triggers/fire` (admin token), the extension's own approvals,
//! schedules, jobs view and trace reachable from chat, and a crash between the worker accepting
//! a job and clawgate recording it that does not run the job twice.

use std::time::Duration;

use clawgate_testkit::fake_openai::{FakeOpenAi, Script, Turn};
use clawgate_testkit::fake_openclaw::{FakeOpenClaw, JobsMode, OpenClawRequest};
use clawgate_testkit::fake_telegram::FakeTelegram;
use clawgate_testkit::{RawClient, TestGateway, eventually};
use serde_json::{Value, json};

const BIN: &str = env!("CARGO_BIN_EXE_clawgate");
const WAIT: Duration = Duration::from_secs(40);
const ADMIN_TOKEN: &str = "test-admin-token-123";
const DEVICE_TOKEN: &str = "test-device-token-456";
/// The Telegram user that is trusted and an admin.
const OWNER: i64 = 100;

fn templates_dir() -> String {
    format!("{}/../../templates", env!("CARGO_MANIFEST_DIR"))
}

/// How clawgate authenticates to the extension.
#[derive(Clone, Copy)]
enum Auth {
    /// Admin token and a bridge device: jobs go through `/openclaw/bridge/submit`.
    Bridge,
    /// Admin token only: jobs go through `/openclaw/triggers/fire`.
    AdminOnly,
}

async fn gateway(model: &FakeOpenAi, tg: &FakeTelegram, worker: &FakeOpenClaw, auth: Auth) -> TestGateway {
    gateway_env(model, tg, worker, auth, &[]).await
}

async fn gateway_env(
    model: &FakeOpenAi,
    tg: &FakeTelegram,
    worker: &FakeOpenClaw,
    auth: Auth,
    env: &[(&str, &str)],
) -> TestGateway {
    let mut w = json!({"name": "studio", "url": worker.base_url(), "mode": "openclaw", "maxConcurrent": 2,
                       "adminToken": {"env": "STUDIO_ADMIN_TOKEN"}});
    if matches!(auth, Auth::Bridge) {
        w["device"] = json!({"id": "clawgate-test", "token": {"env": "STUDIO_DEVICE_TOKEN"}});
    }
    let cfg = json!({
        "models": {"providers": {"fake": {"baseUrl": model.base_url(), "apiKey": "k", "api": "openai-completions",
                                          "models": [{"id": "m"}]}}},
        "agents": {"defaults": {"model": {"primary": "fake/m"}}},
        "comfy": {"templatesDir": templates_dir(), "workers": [w],
                  "commands": {"adminUsers": [format!("telegram:{OWNER}")]}},
        "channels": {"telegram": {"botToken": tg.token(), "apiRoot": tg.api_root(), "pollTimeoutSeconds": 1,
                                  "dmPolicy": "open", "allowFrom": [OWNER.to_string()]}},
    });
    let mut b = TestGateway::builder(BIN)
        .config(cfg.to_string())
        .env("STUDIO_ADMIN_TOKEN", ADMIN_TOKEN)
        .env("STUDIO_DEVICE_TOKEN", DEVICE_TOKEN);
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

/// The next message to `chat` whose text contains `needle`.
async fn reply_containing(tg: &FakeTelegram, chat: i64, needle: &str) -> String {
    let call = tg
        .wait_for_sent(
            |c| c.param_i64("chat_id") == Some(chat) && c.param_str("text").is_some_and(|t| t.contains(needle)),
            WAIT,
        )
        .await
        .unwrap_or_else(|e| panic!("no reply containing {needle:?} in chat {chat}: {e:#}"));
    call.param_str("text").unwrap_or_default()
}

fn posts(worker: &FakeOpenClaw, path: &str) -> Vec<OpenClawRequest> {
    worker.requests().into_iter().filter(|r| r.method == "POST" && r.path == path).collect()
}

async fn wait_photos(tg: &FakeTelegram, chat: i64, n: usize) {
    let photos =
        || tg.calls("sendPhoto").iter().filter(|c| c.status == 200 && c.param_i64("chat_id") == Some(chat)).count();
    if let Err(e) =
        eventually(WAIT, format_args!("{n} photos reach chat {chat}"), || (photos() >= n).then_some(())).await
    {
        panic!("{e:#}; {} arrived", photos());
    }
}

/// Returns once the chat's outbox has sent everything queued before now, so that a duplicate
/// delivery would have shown up: the outbox sends one row at a time in insertion order, and a
/// message sent now is answered through it (the model echoes it) only after every earlier row.
async fn outbox_drained(tg: &FakeTelegram, marker: &str) {
    tg.push_private_message(OWNER, "owner", marker);
    reply_containing(tg, OWNER, &format!("echo: {marker}")).await;
}

fn texts(tg: &FakeTelegram) -> Vec<String> {
    tg.calls("sendMessage").iter().filter_map(|c| c.param_str("text")).collect()
}

fn approval_id(text: &str) -> String {
    text.split_whitespace().find(|w| w.starts_with("apr_")).expect("an approval id").trim_end_matches(',').to_owned()
}

#[tokio::test]
async fn run_through_the_bridge_delivers_the_image_and_the_worker_shows_in_clawgate() {
    let model = FakeOpenAi::start(Script::always(Turn::echo("echo: "))).await.unwrap();
    let tg = FakeTelegram::start().await.unwrap();
    let worker = FakeOpenClaw::start().await.unwrap();
    let gw = gateway(&model, &tg, &worker, Auth::Bridge).await;

    tg.push_private_message(OWNER, "owner", "/run invert color=255 width=64 height=32");
    let submitted = reply_containing(&tg, OWNER, "[Job Submitted]").await;
    let job_id = submitted.lines().find_map(|l| l.strip_prefix("ID: ")).expect("job id").trim().to_owned();
    wait_photos(&tg, OWNER, 1).await;
    reply_containing(&tg, OWNER, "[Job Completed]").await;

    // One bridge submit, with the device headers and the attempt's key; the extension rendered
    // the template and queued it on its ComfyUI.
    let submits = posts(&worker, "/openclaw/bridge/submit");
    assert_eq!(submits.len(), 1, "{submits:?}");
    let s = &submits[0];
    assert_eq!(s.device_id.as_deref(), Some("clawgate-test"));
    assert_eq!(s.device_token.as_deref(), Some(DEVICE_TOKEN));
    assert_eq!(s.scopes.as_deref(), Some("job:submit,job:status"));
    assert_eq!(s.body["template_id"], "invert");
    assert_eq!(s.body["idempotency_key"], json!(format!("{job_id}-1")));
    assert_eq!(s.body["inputs"]["width"], json!(64), "typed inputs: {}", s.body);
    let prompts = worker.comfy().submitted();
    assert_eq!(prompts.len(), 1);
    assert_eq!(prompts[0].prompt["1"]["inputs"]["width"], json!(64));
    assert_eq!(prompts[0].extra_data["comfy_usage_source"], "comfyui-openclaw");
    assert!(posts(&worker, "/openclaw/triggers/fire").is_empty(), "the bridge is preferred when a device is set");
    assert!(model.chat_requests().is_empty(), "commands never reach the model");

    // The job's trace includes the extension's own (bridge submits record `queued`).
    tg.push_private_message(OWNER, "owner", &format!("/trace {job_id}"));
    let trace = reply_containing(&tg, OWNER, "worker studio trace").await;
    assert!(trace.contains("queued"), "{trace}");

    // Clients see the worker's mode and the extension's version.
    let workers = call(&gw, "comfy.workers.list", json!({})).await;
    let w = &workers["workers"][0];
    assert_eq!(w["mode"], "openclaw", "{workers}");
    assert_eq!(w["healthy"], true, "{workers}");
    assert_eq!(w["version"], "1.0.7", "{workers}");
    assert!(w["templates"].as_array().is_some_and(|t| t.contains(&json!("invert"))), "{workers}");
    let job = call(&gw, "comfy.jobs.get", json!({"jobId": job_id})).await["job"].clone();
    assert_eq!(job["status"], "completed", "{job}");
    assert_eq!(job["promptId"], json!(prompts[0].prompt_id));
    // The admin token is never shown to clients.
    assert!(!workers.to_string().contains(ADMIN_TOKEN) && !workers.to_string().contains(DEVICE_TOKEN));
}

#[tokio::test]
async fn with_only_an_admin_token_jobs_go_through_triggers_fire() {
    let model = FakeOpenAi::start(Script::always(Turn::echo("echo: "))).await.unwrap();
    let tg = FakeTelegram::start().await.unwrap();
    let worker = FakeOpenClaw::start().await.unwrap();
    let _gw = gateway(&model, &tg, &worker, Auth::AdminOnly).await;
    tg.push_private_message(OWNER, "owner", "/run invert color=65280 width=16 height=16");
    wait_photos(&tg, OWNER, 1).await;
    let fires = posts(&worker, "/openclaw/triggers/fire");
    assert_eq!(fires.len(), 1, "{fires:?}");
    assert_eq!(fires[0].admin_token.as_deref(), Some(ADMIN_TOKEN));
    assert_eq!(fires[0].body["template_id"], "invert");
    assert_eq!(fires[0].body["require_approval"], false);
    let trace = fires[0].body["trace_id"].as_str().unwrap_or_default().to_owned();
    assert!(trace.starts_with("job_") && trace.ends_with("-1"), "the attempt's tag is the trace id: {trace}");
    assert!(posts(&worker, "/openclaw/bridge/submit").is_empty());
    assert_eq!(worker.comfy().submitted()[0].prompt["1"]["inputs"]["color"], json!(65280));
}

#[tokio::test]
async fn the_extensions_approvals_and_schedules_are_handled_from_chat() {
    let model = FakeOpenAi::start(Script::always(Turn::echo("echo: "))).await.unwrap();
    let tg = FakeTelegram::start().await.unwrap();
    let worker = FakeOpenClaw::start().await.unwrap();
    let _gw = gateway(&model, &tg, &worker, Auth::Bridge).await;

    // Approvals the extension holds (e.g. from its own webhooks) are listed beside clawgate's.
    let first = worker.add_pending_approval("invert", json!({"color": 7, "width": 24, "height": 24}));
    let second = worker.add_pending_approval("invert", json!({"color": 9}));
    tg.push_private_message(OWNER, "owner", "/approvals");
    let listed = reply_containing(&tg, OWNER, &first).await;
    assert!(listed.contains(&second) && listed.contains("worker studio"), "{listed}");

    // Approving one there runs it at once; its image comes to the approving chat.
    tg.push_private_message(OWNER, "owner", &format!("/approve {first}"));
    let approved = reply_containing(&tg, OWNER, "[Approved]").await;
    assert!(approved.contains("Executed:"), "{approved}");
    wait_photos(&tg, OWNER, 1).await;
    let approves = posts(&worker, &format!("/openclaw/approvals/{first}/approve"));
    assert_eq!(approves.len(), 1);
    assert_eq!(approves[0].body["auto_execute"], true);
    assert_eq!(approves[0].body["actor"], json!(format!("telegram:{OWNER}")));

    tg.push_private_message(OWNER, "owner", &format!("/reject {second} too dark"));
    let rejected = reply_containing(&tg, OWNER, "[Rejected]").await;
    assert!(rejected.contains("too dark"), "{rejected}");
    assert_eq!(posts(&worker, &format!("/openclaw/approvals/{second}/reject")).len(), 1);
    assert_eq!(worker.comfy().submitted().len(), 1, "only the approved one ran");

    // An unknown id is still a clear refusal.
    tg.push_private_message(OWNER, "owner", "/approve apr_000000000000");
    reply_containing(&tg, OWNER, "no pending approval apr_000000000000").await;

    // The extension's schedules, with its own field names, and run/disable on them.
    let sched = worker.add_schedule("nightly", "invert", "0 3 * * *", json!({"color": 1}));
    tg.push_private_message(OWNER, "owner", "/schedules");
    let schedules = reply_containing(&tg, OWNER, &sched).await;
    assert!(schedules.contains("0 3 * * *") && schedules.contains("invert (worker studio)"), "{schedules}");
    tg.push_private_message(OWNER, "owner", &format!("/schedule run {sched}"));
    reply_containing(&tg, OWNER, &format!("Schedule {sched} triggered")).await;
    assert_eq!(worker.schedule_runs(&sched), 1);
    tg.push_private_message(OWNER, "owner", &format!("/schedule disable {sched}"));
    reply_containing(&tg, OWNER, &format!("Schedule {sched} disabled")).await;
    assert_eq!(posts(&worker, &format!("/openclaw/schedules/{sched}/toggle")).len(), 1);
    tg.push_private_message(OWNER, "owner", &format!("/schedule disable {sched}"));
    let done = format!("Schedule {sched} disabled. (worker studio)");
    eventually(WAIT, "the second disable is answered", || {
        (texts(&tg).iter().filter(|t| t.contains(&done)).count() >= 2).then_some(())
    })
    .await
    .unwrap();
    assert_eq!(posts(&worker, &format!("/openclaw/schedules/{sched}/toggle")).len(), 1, "already off: no toggle");
    assert!(model.chat_requests().is_empty());
}

#[tokio::test]
async fn jobs_shows_the_extensions_view_or_falls_back_to_the_queue_count() {
    let model = FakeOpenAi::start(Script::always(Turn::echo("echo: "))).await.unwrap();
    for (mode, expect) in [
        (JobsMode::Unsupported, "[Jobs fallback] Queue remaining: 0"),
        (JobsMode::Unavailable, "[Jobs fallback] Queue remaining: 0"),
        (JobsMode::Envelope, "Worker studio: 0 pending, 0 in progress"),
    ] {
        let tg = FakeTelegram::start().await.unwrap();
        let worker = FakeOpenClaw::builder().jobs(mode).start().await.unwrap();
        let _gw = gateway(&model, &tg, &worker, Auth::Bridge).await;
        tg.push_private_message(OWNER, "owner", "/jobs");
        let text = reply_containing(&tg, OWNER, "studio").await;
        assert!(text.contains(expect), "{text}");
        let jobs_calls = worker.requests().into_iter().filter(|r| r.path == "/openclaw/jobs").count();
        assert_eq!(jobs_calls, 1);
    }
}

#[tokio::test]
async fn a_worker_that_holds_every_trigger_for_approval_releases_the_job_when_approved() {
    let model = FakeOpenAi::start(Script::always(Turn::echo("echo: "))).await.unwrap();
    let tg = FakeTelegram::start().await.unwrap();
    let worker = FakeOpenClaw::builder().require_approval_for_triggers(true).start().await.unwrap();
    let gw = gateway(&model, &tg, &worker, Auth::AdminOnly).await;
    // A trusted user's job; the extension itself insists on an approval.
    tg.push_private_message(OWNER, "owner", "/run invert color=3 width=8 height=8");
    let held = reply_containing(&tg, OWNER, "holds job").await;
    let apr = approval_id(&held);
    // The gateway is waiting on the worker's decision: it asks the extension about the approval.
    let asked = format!("/openclaw/approvals/{apr}");
    eventually(WAIT, "the gateway polls the worker's approval", || {
        worker.requests().iter().any(|r| r.method == "GET" && r.path == asked).then_some(())
    })
    .await
    .unwrap();
    assert!(worker.comfy().submitted().is_empty(), "nothing runs before the approval");
    tg.push_private_message(OWNER, "owner", &format!("/approve {apr}"));
    let approved = reply_containing(&tg, OWNER, "[Approved]").await;
    assert!(approved.contains("continues on worker studio"), "the held job picks it up: {approved}");
    wait_photos(&tg, OWNER, 1).await;
    reply_containing(&tg, OWNER, "[Job Completed]").await;
    let jobs = call(&gw, "comfy.jobs.list", json!({})).await;
    assert_eq!(jobs["jobs"].as_array().map(Vec::len), Some(1), "the approval made no second job: {jobs}");
    outbox_drained(&tg, "after the held job").await;
    let photos = tg.calls("sendPhoto").iter().filter(|c| c.status == 200).count();
    assert_eq!(photos, 1, "delivered once, by the held job only");
    assert_eq!(worker.comfy().submitted().len(), 1);
}

/// The gateway dies after the extension accepted the bridge submit and before the job was
/// recorded as running. On restart the same idempotency key is sent again; the extension
/// dedupes it to the same prompt, which is followed to the end: one prompt, one image.
#[tokio::test]
async fn crash_after_the_bridge_accepted_the_job_does_not_run_it_twice() {
    let model = FakeOpenAi::start(Script::always(Turn::echo("echo: "))).await.unwrap();
    let tg = FakeTelegram::start().await.unwrap();
    let worker = FakeOpenClaw::start().await.unwrap();
    let mut gw =
        gateway_env(&model, &tg, &worker, Auth::Bridge, &[("CLAWGATE_CRASH_AT", "comfy.prompt_accepted")]).await;
    tg.push_private_message(OWNER, "owner", "/run invert color=11 width=8 height=8");
    let status = gw.wait_exit(WAIT).await.expect("the gateway stops at the crash point");
    assert!(!status.success());
    assert_eq!(worker.comfy().submitted().len(), 1);
    gw.set_env("CLAWGATE_CRASH_AT", None);
    gw.restart().await.expect("restart");
    wait_photos(&tg, OWNER, 1).await;
    let submits = posts(&worker, "/openclaw/bridge/submit");
    assert_eq!(submits.len(), 2, "submitted again after the restart: {submits:?}");
    assert_eq!(submits[0].body["idempotency_key"], submits[1].body["idempotency_key"], "with the same key");
    outbox_drained(&tg, "after the crash").await;
    assert_eq!(worker.comfy().submitted().len(), 1, "the extension deduped it: the prompt ran once");
    let photos = tg.calls("sendPhoto").iter().filter(|c| c.status == 200).count();
    assert_eq!(photos, 1);
}
