//! Hot reload over the real binary: the config file is edited while clawgate runs, the file
//! watcher picks it up, and `config.changed` says per key what happened — `applied`,
//! `restarted` (a channel account, the ComfyUI pool), `restartRequired`, `failed` — and that is
//! what happened: jobs run on the new ComfyUI workers ([`FakeComfy`]), replies come from the
//! new bot token ([`FakeTelegram`]), the next turn goes to the new provider ([`FakeOpenAi`]).

use std::time::{Duration, Instant};

use clawgate_testkit::fake_comfy::FakeComfy;
use clawgate_testkit::fake_openai::{FakeOpenAi, Script, Turn};
use clawgate_testkit::fake_telegram::FakeTelegram;
use clawgate_testkit::{RawClient, TestGateway, wait_until};
use serde_json::{Value, json};

const BIN: &str = env!("CARGO_BIN_EXE_clawgate");
const WAIT: Duration = Duration::from_secs(40);

fn templates_dir() -> String {
    format!("{}/../../templates", env!("CARGO_MANIFEST_DIR"))
}

fn provider(model: &FakeOpenAi, key: &str) -> Value {
    json!({"providers": {"fake": {"baseUrl": model.base_url(), "apiKey": key, "api": "openai-completions",
                                  "models": [{"id": "m"}]}}})
}

async fn admin(gw: &TestGateway) -> RawClient {
    let mut c = RawClient::connect(&gw.ws_url()).await.expect("ws");
    c.handshake(gw.token(), &json!({})).await.expect("handshake");
    c
}

async fn call(gw: &TestGateway, method: &str, params: Value) -> Value {
    let res = admin(gw).await.request(method, Some(params)).await.expect(method);
    assert_eq!(res["ok"], true, "{method}: {res}");
    res["payload"].clone()
}

/// Write `cfg` over the config file, as an operator editing it would, and return the
/// `config.changed` the watcher broadcasts for it.
async fn edit_config(gw: &TestGateway, watcher: &mut RawClient, cfg: Value) -> Value {
    std::fs::write(gw.config_path().expect("config file"), cfg.to_string()).expect("write config");
    let event = watcher.recv_event("config.changed", WAIT).await.expect("config.changed");
    event["payload"].clone()
}

fn strings(v: &Value) -> Vec<String> {
    v.as_array().into_iter().flatten().filter_map(|s| s.as_str().map(str::to_owned)).collect()
}

async fn wait_job(gw: &TestGateway, id: &str, status: &str) -> Value {
    wait_until(WAIT, format_args!("job {id} is {status}"), || async {
        let job = call(gw, "comfy.jobs.get", json!({"jobId": id})).await["job"].clone();
        (job["status"] == status).then_some(job)
    })
    .await
    .unwrap()
}

fn comfy_config(model: &FakeOpenAi, workers: &[(&str, &FakeComfy)]) -> Value {
    let workers: Vec<Value> =
        workers.iter().map(|(name, w)| json!({"name": name, "url": w.base_url(), "maxConcurrent": 1})).collect();
    json!({
        "models": provider(model, "k"),
        "agents": {"defaults": {"model": {"primary": "fake/m"}}},
        "comfy": {"templatesDir": templates_dir(), "workers": workers},
    })
}

/// Worker `a` is replaced by worker `b` in the file: the pool is rebuilt in place, the queued
/// jobs run on `b`, and the job `a` was running is followed to its end on `a`.
#[tokio::test]
async fn comfy_workers_swap_in_place_and_queued_jobs_run_on_the_new_pool() {
    let model = FakeOpenAi::start(Script::always(Turn::echo("echo: "))).await.unwrap();
    let a = FakeComfy::start().await.unwrap();
    let b = FakeComfy::start().await.unwrap();
    // `a` accepts the first prompt but does not start it until told: that job is running (from
    // the gateway's view) while the config changes; the others wait in the gateway's queue.
    a.set_paused(true);
    let gw = TestGateway::builder(BIN).config(comfy_config(&model, &[("a", &a)]).to_string()).start().await.unwrap();
    let mut ids = Vec::new();
    for i in 0..3 {
        let r = call(&gw, "comfy.run", json!({"templateId": "invert", "inputs": {"color": i}})).await;
        ids.push(r["jobId"].as_str().unwrap().to_owned());
    }
    let first = wait_job(&gw, &ids[0], "running").await;
    assert_eq!(first["worker"], "a", "{first}");
    for id in &ids[1..] {
        assert_eq!(call(&gw, "comfy.jobs.get", json!({"jobId": id})).await["job"]["status"], "queued");
    }

    let mut watcher = admin(&gw).await;
    let changed = edit_config(&gw, &mut watcher, comfy_config(&model, &[("b", &b)])).await;
    assert_eq!(strings(&changed["restarted"]), ["comfy.workers"], "{changed}");
    assert!(strings(&changed["applied"]).is_empty() && strings(&changed["restartRequired"]).is_empty(), "{changed}");
    assert_eq!(changed["failed"], json!([]), "{changed}");
    assert_eq!(changed["changes"][0]["outcome"], "restarted", "{changed}");

    // The queued jobs run on the new worker, without a restart of clawgate.
    for id in &ids[1..] {
        let job = wait_job(&gw, id, "completed").await;
        assert_eq!(job["worker"], "b", "{job}");
    }
    let workers = call(&gw, "comfy.workers.list", json!({})).await;
    let names: Vec<&str> = workers["workers"].as_array().unwrap().iter().filter_map(|w| w["name"].as_str()).collect();
    assert_eq!(names, ["b"], "{workers}");
    // The job `a` runs is still followed there: it completes on `a` once `a` gets to it.
    assert_eq!(call(&gw, "comfy.jobs.get", json!({"jobId": ids[0]})).await["job"]["status"], "running");
    a.set_paused(false);
    let job = wait_job(&gw, &ids[0], "completed").await;
    assert_eq!(job["worker"], "a", "{job}");
    assert_eq!(job["outputs"].as_array().map(Vec::len), Some(1), "{job}");
    assert_eq!((a.completed_count(), b.completed_count()), (1, 2));
    assert_eq!(a.submitted().len(), 1, "no job ran twice");
}

fn telegram_config(model: &FakeOpenAi, tg: &FakeTelegram, accounts: Value) -> Value {
    json!({
        "models": provider(model, "k"),
        "agents": {"defaults": {"model": {"primary": "fake/m"}}},
        "channels": {"telegram": {"apiRoot": tg.api_root(), "pollTimeoutSeconds": 1, "dmPolicy": "open",
                                  "accounts": accounts}},
    })
}

/// `channels.status`'s entry for `telegram/<account>`, if it is configured.
async fn telegram_account(gw: &TestGateway, account: &str) -> Option<Value> {
    let status = call(gw, "channels.status", json!({"channel": "telegram"})).await;
    let list = status["channelAccounts"]["telegram"].as_array().cloned().unwrap_or_default();
    list.into_iter().find(|a| a["accountId"] == account)
}

/// A message to the bot `token`, and the reply to it: sent with which token.
async fn reply_token(tg: &FakeTelegram, token: &str, chat: i64, text: &str) -> String {
    tg.push_update_for(
        token,
        json!({"message": {"message_id": chat * 100 + text.len() as i64, "date": 1_700_000_000,
                           "chat": {"id": chat, "type": "private"},
                           "from": {"id": chat, "is_bot": false, "first_name": "u"}, "text": text}}),
    );
    let want = format!("echo: {text}");
    let sent = tg
        .wait_for_sent(
            |c| {
                c.is("sendMessage") && c.param_i64("chat_id") == Some(chat) && c.param_str("text") == Some(want.clone())
            },
            WAIT,
        )
        .await
        .expect("a reply");
    sent.token
}

/// A changed bot token restarts only that account (the new connection uses the new token); a
/// removed account stops polling; an untouched account keeps running as it was.
#[tokio::test]
async fn a_changed_or_removed_channel_account_restarts_only_that_account() {
    let model = FakeOpenAi::start(Script::always(Turn::echo("echo: "))).await.unwrap();
    let tg = FakeTelegram::start().await.unwrap();
    let old_token = tg.add_bot(7001, "old_bot");
    let new_token = tg.add_bot(7002, "new_bot");
    let steady = tg.token().to_owned();
    let cfg =
        |main: &str| telegram_config(&model, &tg, json!({"main": {"botToken": main}, "steady": {"botToken": steady}}));
    let gw = TestGateway::builder(BIN).config(cfg(&old_token).to_string()).start().await.unwrap();
    assert_eq!(reply_token(&tg, &old_token, 11, "before").await, old_token);
    assert_eq!(reply_token(&tg, &steady, 12, "steady before").await, steady);
    let steady_started = telegram_account(&gw, "steady").await.unwrap()["lastStartAt"].clone();

    // The token of `main` changes: `main` reconnects with it; `steady` is not restarted.
    let mut watcher = admin(&gw).await;
    let changed = edit_config(&gw, &mut watcher, cfg(&new_token)).await;
    assert_eq!(strings(&changed["restarted"]), ["channels.telegram.accounts.main.botToken"], "{changed}");
    assert_eq!(changed["failed"], json!([]), "{changed}");
    assert_eq!(reply_token(&tg, &new_token, 13, "after").await, new_token, "replies come from the new token");
    assert_eq!(telegram_account(&gw, "steady").await.unwrap()["lastStartAt"], steady_started, "steady untouched");
    assert_eq!(reply_token(&tg, &steady, 14, "steady after").await, steady);

    // `main` is removed: it stops polling (the stop is awaited before `config.changed`).
    let removed = telegram_config(&model, &tg, json!({"steady": {"botToken": steady}}));
    let changed = edit_config(&gw, &mut watcher, removed).await;
    let at = Instant::now();
    assert_eq!(strings(&changed["restarted"]), ["channels.telegram.accounts.main.botToken"], "{changed}");
    assert!(telegram_account(&gw, "main").await.is_none(), "no longer configured");
    tg.push_update_for(
        &new_token,
        json!({"message": {"message_id": 99, "date": 1_700_000_000, "chat": {"id": 15, "type": "private"},
                           "from": {"id": 15, "is_bot": false, "first_name": "u"}, "text": "anyone?"}}),
    );
    // `steady` polls the same fake after that message was queued: had `main` still polled, its
    // poll would have fetched the message meanwhile.
    assert_eq!(reply_token(&tg, &steady, 16, "steady last").await, steady);
    let polls_after = tg.calls("getUpdates").into_iter().filter(|c| c.token == new_token && c.at > at).count();
    assert_eq!(polls_after, 0, "the removed account polled after its removal");
    assert!(tg.calls("sendMessage").iter().all(|c| c.param_i64("chat_id") != Some(15)), "nobody answered it");
}

/// A provider's `baseUrl` and key change in the file: the next turn goes to the new endpoint
/// with the new key, without a restart; a restart-only key in the same edit is reported as
/// such and listed by `status` until the restart.
#[tokio::test]
async fn a_changed_provider_applies_to_the_next_turn() {
    let first = FakeOpenAi::start(Script::always(Turn::echo("echo: "))).await.unwrap();
    let second = FakeOpenAi::start(Script::always(Turn::echo("echo: ")).require_api_key("second-key")).await.unwrap();
    let tg = FakeTelegram::start().await.unwrap();
    let token = tg.token().to_owned();
    let cfg = |model: &FakeOpenAi, key: &str| {
        let mut c = telegram_config(model, &tg, json!({"default": {"botToken": token}}));
        c["models"] = provider(model, key);
        c
    };
    let gw = TestGateway::builder(BIN).config(cfg(&first, "k").to_string()).start().await.unwrap();
    reply_token(&tg, &token, 21, "one").await;
    assert_eq!(first.chat_requests().len(), 1);

    let mut watcher = admin(&gw).await;
    let mut edited = cfg(&second, "second-key");
    edited["logging"] = json!({"level": "debug"});
    let changed = edit_config(&gw, &mut watcher, edited).await;
    let applied = strings(&changed["applied"]);
    assert!(
        applied.iter().any(|p| p.starts_with("models.providers.fake"))
            && !applied.contains(&"logging.level".to_owned()),
        "{changed}"
    );
    assert_eq!(strings(&changed["restartRequired"]), ["logging.level"], "{changed}");
    reply_token(&tg, &token, 22, "two").await;
    assert_eq!(second.chat_requests().len(), 1, "the next turn went to the new provider");
    assert_eq!(first.chat_requests().len(), 1, "and not to the old one");

    let status = call(&gw, "status", json!({})).await;
    assert_eq!(strings(&status["restartRequired"]), ["logging.level"], "{status}");
    // Set back to what the process runs with: nothing waits for a restart any more.
    let changed = edit_config(&gw, &mut watcher, cfg(&second, "second-key")).await;
    assert_eq!(strings(&changed["applied"]), ["logging.level"], "{changed}");
    assert_eq!(call(&gw, "status", json!({})).await["restartRequired"], json!([]));
}
