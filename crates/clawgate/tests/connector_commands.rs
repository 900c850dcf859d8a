//! The ComfyUI connector's chat commands at parity, over the real binary with a [`FakeTelegram`]
//! chat and [`FakeComfy`] / [`FakeOpenClaw`] workers: `/status` shows every worker (queue,
//! system stats, the extension's logs summary) without waiting on a dead one, `/stop` without
//! ids stops every running job the sender may stop, and `/help` (or `!help`) shows what the
//! sender may use and how to type it on their platform — on Slack, where `/…` belongs to Slack,
//! as `!help` in a DM and `@bot !status` in a channel ([`FakeSlack`] in Socket Mode).

use std::time::Duration;

use clawgate_testkit::fake_comfy::FakeComfy;
use clawgate_testkit::fake_openai::{FakeOpenAi, Script, Turn};
use clawgate_testkit::fake_openclaw::FakeOpenClaw;
use clawgate_testkit::fake_slack::{BOT_USER_ID, FakeSlack};
use clawgate_testkit::fake_telegram::FakeTelegram;
use clawgate_testkit::{RawClient, TestGateway, eventually, wait_until};
use serde_json::{Value, json};

const BIN: &str = env!("CARGO_BIN_EXE_clawgate");
const WAIT: Duration = Duration::from_secs(40);
const ADMIN_TOKEN: &str = "test-admin-token-123";
/// Trusted (the channel's `allowFrom`) and an admin (`comfy.commands.adminUsers`).
const OWNER: i64 = 100;
/// Neither, unless a test's policy says otherwise.
const GUEST: i64 = 200;

fn templates_dir() -> String {
    format!("{}/../../templates", env!("CARGO_MANIFEST_DIR"))
}

/// A gateway with a Telegram chat and these `comfy.workers`, `comfy.commands` as given.
async fn gateway(model: &FakeOpenAi, tg: &FakeTelegram, workers: Vec<Value>, commands: Value) -> TestGateway {
    let cfg = json!({
        "models": {"providers": {"fake": {"baseUrl": model.base_url(), "apiKey": "k", "api": "openai-completions",
                                          "models": [{"id": "m"}]}}},
        "agents": {"defaults": {"model": {"primary": "fake/m"}}},
        "comfy": {"templatesDir": templates_dir(), "workers": workers, "commands": commands},
        "channels": {"telegram": {"botToken": tg.token(), "apiRoot": tg.api_root(), "pollTimeoutSeconds": 1,
                                  "dmPolicy": "open", "allowFrom": [OWNER.to_string()]}},
    });
    TestGateway::builder(BIN)
        .config(cfg.to_string())
        .env("STUDIO_ADMIN_TOKEN", ADMIN_TOKEN)
        .start()
        .await
        .expect("starting clawgate")
}

fn native(name: &str, comfy: &FakeComfy) -> Value {
    json!({"name": name, "url": comfy.base_url(), "maxConcurrent": 1})
}

fn admin_policy() -> Value {
    json!({"adminUsers": [format!("telegram:{OWNER}")]})
}

async fn call(gw: &TestGateway, method: &str, params: Value) -> Value {
    let mut c = RawClient::connect(&gw.ws_url()).await.expect("ws");
    c.handshake(gw.token(), &json!({})).await.expect("handshake");
    let res = c.request(method, Some(params)).await.expect(method);
    assert_eq!(res["ok"], true, "{method}: {res}");
    res["payload"].clone()
}

/// The first message to `chat` whose text contains `needle`.
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

/// Every text sent to `chat` so far.
fn texts_to(tg: &FakeTelegram, chat: i64) -> Vec<String> {
    tg.calls("sendMessage")
        .iter()
        .filter(|c| c.param_i64("chat_id") == Some(chat))
        .filter_map(|c| c.param_str("text"))
        .collect()
}

/// Sends `/run invert` from `chat` and returns the job id of the `n`-th submission to it.
async fn run_job(tg: &FakeTelegram, chat: i64, color: u32, n: usize) -> String {
    tg.push_private_message(chat, "someone", &format!("/run invert color={color}"));
    let ids = || -> Vec<String> {
        texts_to(tg, chat)
            .iter()
            .filter(|t| t.starts_with("[Job Submitted]"))
            .filter_map(|t| t.lines().find_map(|l| l.strip_prefix("ID: ")).map(|s| s.trim().to_owned()))
            .collect()
    };
    let ids = eventually(WAIT, format_args!("submission {n} to chat {chat}"), || {
        let ids = ids();
        (ids.len() >= n).then_some(ids)
    })
    .await
    .unwrap();
    ids[n - 1].clone()
}

async fn job_status(gw: &TestGateway, id: &str) -> String {
    let job = call(gw, "comfy.jobs.get", json!({"jobId": id})).await;
    job["job"]["status"].as_str().unwrap_or_default().to_owned()
}

async fn wait_status(gw: &TestGateway, id: &str, status: &str) {
    wait_until(WAIT, format_args!("job {id} is {status}"), || async {
        (job_status(gw, id).await == status).then_some(())
    })
    .await
    .unwrap();
}

/// A worker that accepts connections and never answers: what a hung ComfyUI looks like.
async fn stalled_worker() -> (String, tokio::task::JoinHandle<()>) {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("http://{}", listener.local_addr().unwrap());
    let task = tokio::spawn(async move {
        let mut held = Vec::new();
        while let Ok((sock, _)) = listener.accept().await {
            held.push(sock);
        }
    });
    (url, task)
}

#[tokio::test]
async fn status_lists_every_worker_with_its_queue_stats_and_the_extensions_logs() {
    let model = FakeOpenAi::start(Script::always(Turn::echo("echo: "))).await.unwrap();
    let tg = FakeTelegram::start().await.unwrap();
    let comfy = FakeComfy::start().await.unwrap();
    let studio = FakeOpenClaw::start().await.unwrap();
    let (stalled, _held) = stalled_worker().await;
    let workers = vec![
        native("w0", &comfy),
        json!({"name": "studio", "url": studio.base_url(), "mode": "openclaw",
               "adminToken": {"env": "STUDIO_ADMIN_TOKEN"}}),
        json!({"name": "hung", "url": stalled}),
    ];
    let _gw = gateway(&model, &tg, workers, admin_policy()).await;

    tg.push_private_message(GUEST, "guest", "/status");
    let text = reply_containing(&tg, GUEST, "ComfyUI workers:").await;
    assert!(text.starts_with("Session: "), "the conversation comes first: {text}");
    assert!(text.contains("ComfyUI workers: 2 of 3 online"), "{text}");
    assert!(
        text.contains(
            "[Online] Worker w0 (comfyui)\n- Queue: 0 (0 running, 0 pending)\n- ComfyUI: 0.3.64, RAM 4.0 of 8.0 GiB free\n\
             - Device: cpu, VRAM 4.0 of 8.0 GiB free"
        ),
        "{text}"
    );
    let studio_block = text.split("[Online] Worker studio (openclaw)\n").nth(1).expect("the openclaw worker");
    assert!(studio_block.starts_with("- Extension: ComfyUI-OpenClaw 1.0.7\n- Logs: "), "{text}");
    assert!(studio_block.contains("\n- Errors: 0\n- Queue: 0 (0 running, 0 pending)\n- ComfyUI: 0.3.64"), "{text}");
    assert!(text.ends_with("[Offline] Worker hung (comfyui)\n- Error: no answer within 3 s"), "{text}");
    assert!(model.chat_requests().is_empty(), "/status never reaches the model");

    // The extension going down is a line, and the rest of the reply stays.
    studio.set_health_down(true);
    tg.push_private_message(GUEST, "guest", "!status");
    let text = reply_containing(&tg, GUEST, "ComfyUI workers: 1 of 3 online").await;
    assert!(text.contains("[Offline] Worker studio (openclaw)\n- Error: "), "{text}");
    assert!(text.contains("[Online] Worker w0 (comfyui)"), "{text}");
}

#[tokio::test]
async fn stop_without_ids_interrupts_every_running_job() {
    let model = FakeOpenAi::start(Script::always(Turn::echo("echo: "))).await.unwrap();
    let tg = FakeTelegram::start().await.unwrap();
    let (a, b) = (FakeComfy::start().await.unwrap(), FakeComfy::start().await.unwrap());
    a.hang();
    b.hang();
    let gw = gateway(&model, &tg, vec![native("a", &a), native("b", &b)], admin_policy()).await;
    let first = run_job(&tg, OWNER, 1, 1).await;
    let second = run_job(&tg, OWNER, 2, 2).await;
    wait_status(&gw, &first, "running").await;
    wait_status(&gw, &second, "running").await;
    assert!(a.running_id().is_some() && b.running_id().is_some(), "one job runs on each worker");

    tg.push_private_message(OWNER, "owner", "/stop");
    let text = reply_containing(&tg, OWNER, "Stopped 2 of 2 jobs.").await;
    assert!(text.contains(&format!("Stopped {first}.")) && text.contains(&format!("Stopped {second}.")), "{text}");
    wait_status(&gw, &first, "cancelled").await;
    wait_status(&gw, &second, "cancelled").await;
    eventually(WAIT, "both workers are interrupted", || {
        (a.interrupt_count() > 0 && b.interrupt_count() > 0).then_some(())
    })
    .await
    .unwrap();
    assert!(a.running_id().is_none() && b.running_id().is_none(), "both workers are free again");
    tg.push_private_message(OWNER, "owner", "!stop");
    reply_containing(&tg, OWNER, "Nothing is running.").await;
    assert!(tg.calls("sendPhoto").is_empty(), "a stopped job delivers nothing");
}

#[tokio::test]
async fn a_sender_an_override_lets_stop_stops_only_their_own_jobs() {
    let model = FakeOpenAi::start(Script::always(Turn::echo("echo: "))).await.unwrap();
    let tg = FakeTelegram::start().await.unwrap();
    let (a, b) = (FakeComfy::start().await.unwrap(), FakeComfy::start().await.unwrap());
    a.hang();
    b.hang();
    let policy = json!({"adminUsers": [format!("telegram:{OWNER}")], "trustedUsers": [format!("telegram:{GUEST}")],
                        "overrides": {"stop": "run"}});
    let gw = gateway(&model, &tg, vec![native("a", &a), native("b", &b)], policy).await;
    let owners = run_job(&tg, OWNER, 1, 1).await;
    let guests = run_job(&tg, GUEST, 2, 1).await;
    wait_status(&gw, &owners, "running").await;
    wait_status(&gw, &guests, "running").await;

    tg.push_private_message(GUEST, "guest", "/stop");
    let text = reply_containing(&tg, GUEST, "Stopped ").await;
    assert_eq!(text, format!("Stopped {guests}."));
    wait_status(&gw, &guests, "cancelled").await;
    tg.push_private_message(GUEST, "guest", "/stop");
    reply_containing(&tg, GUEST, "Nothing of yours is running.").await;
    tg.push_private_message(GUEST, "guest", &format!("/stop {owners}"));
    reply_containing(&tg, GUEST, &format!("{owners}: you may stop only jobs you asked for.")).await;
    let many: Vec<String> = (0..51).map(|i| format!("job_{i}")).collect();
    tg.push_private_message(GUEST, "guest", &format!("/stop {}", many.join(" ")));
    reply_containing(&tg, GUEST, "[Error] name at most 50 jobs at once").await;
    assert_eq!(job_status(&gw, &owners).await, "running", "the owner's job runs on");

    tg.push_private_message(OWNER, "owner", "/stop");
    assert_eq!(reply_containing(&tg, OWNER, "Stopped ").await, format!("Stopped {owners}."));
    wait_status(&gw, &owners, "cancelled").await;
}

#[tokio::test]
async fn help_lists_what_the_sender_may_use_and_how_to_type_it_on_telegram() {
    let model = FakeOpenAi::start(Script::always(Turn::echo("echo: "))).await.unwrap();
    let tg = FakeTelegram::start().await.unwrap();
    let comfy = FakeComfy::start().await.unwrap();
    let _gw = gateway(&model, &tg, vec![native("w0", &comfy)], admin_policy()).await;

    tg.push_private_message(GUEST, "guest", "!help");
    let guest = reply_containing(&tg, GUEST, "Commands:").await;
    tg.push_private_message(OWNER, "owner", "/help@clawgate_bot");
    let owner = reply_containing(&tg, OWNER, "Commands:").await;
    for text in [&guest, &owner] {
        assert!(text.contains("\n/run ") && text.contains("\n/status [job] "), "{text}");
        assert!(text.contains("In a group, add my name (/status@my_bot)"), "{text}");
        assert!(!text.contains("start it with !"), "Slack's note is Slack's: {text}");
    }
    for admin_only in ["\n/approve ", "\n/stop ", "\n/jobs ", "\n/workers "] {
        assert!(!guest.contains(admin_only), "{admin_only:?} is not for the guest: {guest}");
        assert!(owner.contains(admin_only), "{admin_only:?} is for the admin: {owner}");
    }
    assert!(model.chat_requests().is_empty(), "commands never reach the model");
}

#[tokio::test]
async fn on_slack_commands_start_with_a_bang_and_help_says_so() {
    const ALICE: &str = "U0ALICE";
    const ALICE_DM: &str = "D0ALICE";
    const CHANNEL: &str = "C0GENERAL";
    let model = FakeOpenAi::start(Script::always(Turn::echo("echo: "))).await.unwrap();
    let slack = FakeSlack::start().await.unwrap();
    let comfy = FakeComfy::start().await.unwrap();
    let cfg = json!({
        "models": {"providers": {"fake": {"baseUrl": model.base_url(), "apiKey": "k", "api": "openai-completions",
                                          "models": [{"id": "m"}]}}},
        "agents": {"defaults": {"model": {"primary": "fake/m"}}},
        "comfy": {"templatesDir": templates_dir(), "workers": [native("w0", &comfy)],
                  "commands": {"adminUsers": [format!("slack:{ALICE}")]}},
        "channels": {"slack": {"mode": "socket", "botToken": slack.bot_token(), "appToken": slack.app_token(),
                               "apiRoot": slack.api_root(), "dmPolicy": "allowlist", "allowFrom": [ALICE],
                               "channels": {CHANNEL: {"requireMention": true}}}},
    });
    let _gw = TestGateway::builder(BIN).config(cfg.to_string()).start().await.expect("starting clawgate");
    let posted = |channel: &str, needle: &str| {
        slack.posted().into_iter().find(|p| p.channel == channel && p.text.contains(needle)).map(|p| p.text)
    };

    slack.send_event(&slack.event_callback(slack.message(ALICE_DM, "im", ALICE, "!help")));
    let help = eventually(WAIT, "help in the DM", || posted(ALICE_DM, "Commands:")).await.unwrap();
    assert!(help.contains("On Slack, a message that starts with / goes to Slack's own commands"), "{help}");
    assert!(help.contains("\n/approve ") && !help.contains("/status@my_bot"), "Slack's admin, Slack's note: {help}");

    let mention = slack.message(CHANNEL, "channel", ALICE, &format!("<@{BOT_USER_ID}> !status"));
    slack.send_event(&slack.event_callback(mention));
    let status = eventually(WAIT, "status in the channel", || posted(CHANNEL, "ComfyUI workers:")).await.unwrap();
    assert!(status.contains("[Online] Worker w0 (comfyui)"), "{status}");
    assert!(model.chat_requests().is_empty(), "commands never reach the model");
}

#[tokio::test]
async fn workers_show_in_status_only_for_senders_the_policy_lets_ask_comfyui() {
    let model = FakeOpenAi::start(Script::always(Turn::echo("echo: "))).await.unwrap();
    let tg = FakeTelegram::start().await.unwrap();
    let comfy = FakeComfy::start().await.unwrap();
    let policy = json!({"adminUsers": [format!("telegram:{OWNER}")], "overrides": {"status": "admin"}});
    let _gw = gateway(&model, &tg, vec![native("w0", &comfy)], policy).await;

    tg.push_private_message(GUEST, "guest", "/status");
    let guest = reply_containing(&tg, GUEST, "Session: ").await;
    assert!(!guest.contains("ComfyUI") && !guest.contains("w0"), "the conversation only: {guest}");
    tg.push_private_message(OWNER, "owner", "/status");
    let owner = reply_containing(&tg, OWNER, "Session: ").await;
    assert!(owner.contains("\n\nComfyUI workers: 1 of 1 online\n[Online] Worker w0 (comfyui)"), "{owner}");
}
