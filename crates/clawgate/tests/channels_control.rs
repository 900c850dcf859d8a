//! `channels.start|stop|logout` and `clawgate channels …` against the real binary: two Telegram
//! accounts, each on its own [`FakeTelegram`], answered by a fake model that echoes each message
//! (so every reply names the message it answers), and a [`FakeLine`] for the webhook URL.
//!
//! What operators notice: stopping one account leaves the other answering and holds its
//! messages (at Telegram, unfetched) until a start, which answers each exactly once; a config
//! reload does not bring a stopped account back; a logout forgets the session (the next start
//! polls Telegram from scratch) and survives a restart; only admins may do any of it; a wrong
//! name is refused naming what is configured; the CLI shows each account with the webhook URL
//! the platform must call.

use std::time::Duration;

use clawgate_testkit::fake_line::FakeLine;
use clawgate_testkit::fake_openai::{FakeOpenAi, Script, Turn};
use clawgate_testkit::fake_telegram::FakeTelegram;
use clawgate_testkit::{RawClient, TestGateway, wait_until};
use serde_json::{Value, json};

const BIN: &str = env!("CARGO_BIN_EXE_clawgate");
const WAIT: Duration = Duration::from_secs(30);

async fn echo_model() -> FakeOpenAi {
    FakeOpenAi::start(Script::always(Turn::echo("echo: "))).await.expect("fake model")
}

/// `telegram/default` polls `first`, `telegram/second` polls `second`.
fn config(model: &FakeOpenAi, first: &FakeTelegram, second: &FakeTelegram) -> Value {
    json!({
        "models": {"providers": {"fake": {"baseUrl": model.base_url(), "apiKey": "k", "api": "openai-completions",
                                          "models": [{"id": "m"}]}}},
        "agents": {"defaults": {"model": {"primary": "fake/m"}}},
        "channels": {"telegram": {
            "botToken": first.token(), "apiRoot": first.api_root(), "pollTimeoutSeconds": 1, "dmPolicy": "open",
            "accounts": {"second": {"botToken": second.token(), "apiRoot": second.api_root()}},
        }},
    })
}

async fn admin(gw: &TestGateway) -> RawClient {
    let mut c = RawClient::connect(&gw.ws_url()).await.expect("ws");
    c.handshake(gw.token(), &json!({})).await.expect("handshake");
    c
}

/// The answer to `method` (ok or not).
async fn request(gw: &TestGateway, method: &str, params: Value) -> Value {
    admin(gw).await.request(method, Some(params)).await.expect(method)
}

/// The payload of a successful `method`.
async fn call(gw: &TestGateway, method: &str, params: Value) -> Value {
    let res = request(gw, method, params).await;
    assert_eq!(res["ok"], true, "{method}: {res}");
    res["payload"].clone()
}

/// `channels.status`'s entry for `telegram/<account>`.
async fn telegram_account(gw: &TestGateway, account: &str) -> Value {
    let status = call(gw, "channels.status", json!({"channel": "telegram"})).await;
    let list = status["channelAccounts"]["telegram"].as_array().cloned().unwrap_or_default();
    list.into_iter().find(|a| a["accountId"] == account).unwrap_or_else(|| panic!("no telegram/{account}: {status}"))
}

fn texts_to(tg: &FakeTelegram, chat: i64) -> Vec<String> {
    tg.calls("sendMessage")
        .into_iter()
        .filter(|c| c.status == 200 && c.param_i64("chat_id") == Some(chat))
        .filter_map(|c| c.param_str("text"))
        .collect()
}

async fn wait_text(tg: &FakeTelegram, chat: i64, text: &str) {
    let t = text.to_owned();
    tg.wait_for_sent(
        move |c| {
            c.is("sendMessage")
                && c.status == 200
                && c.param_i64("chat_id") == Some(chat)
                && c.param_str("text").as_deref() == Some(&t)
        },
        WAIT,
    )
    .await
    .unwrap_or_else(|e| panic!("no reply {text:?} to chat {chat}: {e:#}"));
}

/// A DM to `tg` answered: the account behind it runs and is routed.
async fn round_trip(tg: &FakeTelegram, chat: i64, text: &str) {
    tg.push_private_message(chat, "someone", text);
    wait_text(tg, chat, &format!("echo: {text}")).await;
}

#[tokio::test]
async fn a_stopped_account_holds_its_messages_and_answers_each_once_after_start() {
    let model = echo_model().await;
    let (first, second) = (FakeTelegram::start().await.unwrap(), FakeTelegram::start().await.unwrap());
    let gw = TestGateway::builder(BIN).config(config(&model, &first, &second).to_string()).start().await.unwrap();
    round_trip(&first, 1, "before").await;
    round_trip(&second, 2, "before").await;

    let stopped = call(&gw, "channels.stop", json!({"channel": "telegram", "accountId": "default"})).await;
    assert_eq!((stopped["channel"].as_str(), stopped["accountId"].as_str()), (Some("telegram"), Some("default")));
    assert_eq!((stopped["running"].as_bool(), stopped["stopped"].as_bool()), (Some(false), Some(true)), "{stopped}");
    assert_eq!(stopped["accounts"][0]["held"], "stopped", "{stopped}");
    assert!(stopped["accounts"][0]["lastStopAt"].as_i64().is_some(), "{stopped}");

    // The stop returned after the account's poll ended: what is written to it now stays at
    // Telegram, while the other account keeps answering.
    first.push_private_message(10, "alice", "while stopped");
    round_trip(&second, 20, "witness").await;
    assert!(texts_to(&first, 10).is_empty(), "a stopped account answers nothing");
    assert_eq!(first.pending_updates(), 1, "the message waits at Telegram, unfetched");
    let entry = telegram_account(&gw, "default").await;
    assert_eq!((entry["running"].as_bool(), entry["healthState"].as_str()), (Some(false), Some("stopped")), "{entry}");
    assert!(entry["lastStopAt"].as_i64() >= entry["lastStartAt"].as_i64(), "{entry}");
    assert!(entry["lastInboundAt"].as_i64().is_some(), "what the last run saw stays shown: {entry}");
    assert_eq!(telegram_account(&gw, "second").await["running"], true);

    // Stopping again changes nothing.
    let again = call(&gw, "channels.stop", json!({"channel": "telegram", "accountId": "default"})).await;
    assert_eq!(again["accounts"][0]["lastStopAt"], stopped["accounts"][0]["lastStopAt"]);

    // A config change restarts the account it touches (`second`) and not the stopped one.
    let second_started = telegram_account(&gw, "second").await["lastStartAt"].as_i64().unwrap();
    let hash = call(&gw, "config.get", json!({})).await["hash"].as_str().unwrap().to_owned();
    let patch = json!({"channels": {"telegram": {"accounts": {"second": {"pollTimeoutSeconds": 2}}}}});
    call(&gw, "config.patch", json!({"raw": patch.to_string(), "baseHash": hash})).await;
    wait_until(WAIT, "the reload restarts telegram/second", || async {
        let entry = telegram_account(&gw, "second").await;
        (entry["running"] == true && entry["lastStartAt"].as_i64() > Some(second_started)).then_some(())
    })
    .await
    .unwrap();
    assert_eq!(telegram_account(&gw, "default").await["running"], false, "the reload left the stopped account alone");
    round_trip(&second, 21, "after reload").await;
    assert_eq!(first.pending_updates(), 1);

    // Start: the held message is fetched and answered, once.
    let started = call(&gw, "channels.start", json!({"channel": "telegram", "accountId": "default"})).await;
    assert_eq!((started["running"].as_bool(), started["started"].as_bool()), (Some(true), Some(true)), "{started}");
    assert!(started["accounts"][0].get("held").is_none(), "{started}");
    wait_text(&first, 10, "echo: while stopped").await;
    round_trip(&first, 11, "after start").await;
    assert_eq!(texts_to(&first, 10), vec!["echo: while stopped"], "answered exactly once");
    // Starting a running account is fine and changes nothing.
    let running = call(&gw, "channels.start", json!({"channel": "telegram", "accountId": "default"})).await;
    assert_eq!(running["accounts"][0]["lastStartAt"], started["accounts"][0]["lastStartAt"]);
    assert_eq!(running["running"], true);

    // Without an account id, every account of the channel.
    let all = call(&gw, "channels.stop", json!({"channel": "telegram"})).await;
    assert!(all.get("accountId").is_none(), "{all}");
    let ids: Vec<&str> = all["accounts"].as_array().unwrap().iter().filter_map(|a| a["accountId"].as_str()).collect();
    assert_eq!(ids, ["default", "second"]);
    assert_eq!(all["running"], false);
}

#[tokio::test]
async fn a_reply_finished_while_its_account_is_stopped_waits_in_the_outbox_until_start() {
    // The second turn is slow: the account is stopped while the model is still answering.
    let slow = Turn::echo("echo: ").first_chunk_delay(Duration::from_secs(2));
    let script = Script::new().turn(Turn::echo("echo: ")).turn(slow).otherwise(Turn::echo("echo: "));
    let model = FakeOpenAi::start(script).await.expect("fake model");
    let (first, second) = (FakeTelegram::start().await.unwrap(), FakeTelegram::start().await.unwrap());
    let gw = TestGateway::builder(BIN).config(config(&model, &first, &second).to_string()).start().await.unwrap();
    round_trip(&first, 1, "before").await;

    first.push_private_message(30, "carol", "slow one");
    model.wait_for_requests(2, WAIT).await.expect("the slow turn is asked for");
    call(&gw, "channels.stop", json!({"channel": "telegram", "accountId": "default"})).await;
    wait_until(WAIT, "the reply is queued in the outbox", || async {
        let entry = telegram_account(&gw, "default").await;
        (entry["outbox"]["queued"] == 1).then_some(())
    })
    .await
    .unwrap();
    assert!(texts_to(&first, 30).is_empty(), "a stopped account sends nothing");

    call(&gw, "channels.start", json!({"channel": "telegram", "accountId": "default"})).await;
    wait_text(&first, 30, "echo: slow one").await;
    round_trip(&first, 31, "witness").await;
    assert_eq!(texts_to(&first, 30), vec!["echo: slow one"], "sent exactly once");
    assert_eq!(telegram_account(&gw, "default").await["outbox"]["queued"], 0);
}

#[tokio::test]
async fn logout_forgets_the_session_and_holds_across_a_restart() {
    let model = echo_model().await;
    let (first, second) = (FakeTelegram::start().await.unwrap(), FakeTelegram::start().await.unwrap());
    let mut gw = TestGateway::builder(BIN).config(config(&model, &first, &second).to_string()).start().await.unwrap();
    round_trip(&first, 1, "before").await;
    round_trip(&second, 2, "before").await;

    let out = call(&gw, "channels.logout", json!({"channel": "telegram", "accountId": "default"})).await;
    assert_eq!((out["stopped"].as_bool(), out["cleared"].as_bool()), (Some(true), Some(true)), "{out}");
    assert_eq!(out["accounts"][0]["held"], "loggedOut", "{out}");
    let entry = telegram_account(&gw, "default").await;
    assert_eq!((entry["healthState"].as_str(), entry["loggedOut"].as_bool()), (Some("loggedOut"), Some(true)));

    // A restart keeps it logged out; the other account runs as configured.
    gw.restart().await.unwrap();
    let entry = telegram_account(&gw, "default").await;
    assert_eq!((entry["running"].as_bool(), entry["loggedOut"].as_bool()), (Some(false), Some(true)), "{entry}");
    round_trip(&second, 3, "after restart").await;

    // Start: a fresh session — the first poll carries no stored offset.
    let polls_before = first.calls("getUpdates").len();
    first.push_private_message(4, "bob", "after logout");
    let started = call(&gw, "channels.start", json!({"channel": "telegram", "accountId": "default"})).await;
    assert_eq!(started["running"], true, "{started}");
    wait_text(&first, 4, "echo: after logout").await;
    let first_poll = first.calls("getUpdates").into_iter().nth(polls_before).expect("a poll after the start");
    assert_eq!(first_poll.param_i64("offset"), None, "the stored offset was forgotten: {:?}", first_poll.params);
    assert_eq!(texts_to(&first, 1), vec!["echo: before"], "nothing confirmed before is answered again");

    // The start is persisted too: a restart runs the account.
    gw.restart().await.unwrap();
    round_trip(&first, 5, "after second restart").await;
}

#[tokio::test]
async fn control_needs_admin_and_refuses_unknown_names_naming_the_configured_ones() {
    let model = echo_model().await;
    let (first, second) = (FakeTelegram::start().await.unwrap(), FakeTelegram::start().await.unwrap());
    let gw = TestGateway::builder(BIN).config(config(&model, &first, &second).to_string()).start().await.unwrap();

    let mut writer = RawClient::connect(&gw.ws_url()).await.unwrap();
    writer.handshake(gw.token(), &json!({"scopes": ["operator.read", "operator.write"]})).await.unwrap();
    for method in ["channels.start", "channels.stop", "channels.logout"] {
        let res = writer.request(method, Some(json!({"channel": "telegram"}))).await.unwrap();
        assert_eq!(res["error"]["code"], "FORBIDDEN", "{method}: {res}");
        assert_eq!(res["error"]["message"], "missing scope: operator.admin", "{method}: {res}");
    }

    let cases = [
        (json!({"channel": "slack"}), "unknown channel \"slack\"; configured channels: telegram"),
        (
            json!({"channel": "telegram", "accountId": "third"}),
            "channel telegram has no account \"third\"; configured accounts: default, second",
        ),
        (json!({}), "invalid channels.stop params: missing field `channel`"),
        (json!({"channel": "telegram", "force": true}), "invalid channels.stop params: unknown field `force`"),
    ];
    for (params, message) in cases {
        let res = request(&gw, "channels.stop", params.clone()).await;
        assert_eq!(res["error"]["code"], "INVALID_REQUEST", "{params}: {res}");
        let got = res["error"]["message"].as_str().unwrap_or_default();
        assert!(got.starts_with(message), "{params}: {got}");
    }
    // Nothing was stopped by the refused calls.
    round_trip(&first, 1, "still here").await;
    assert_eq!(telegram_account(&gw, "second").await["running"], true);
}

/// `clawgate channels …` against the running gateway, with the flags a user types.
fn cli(gw: &TestGateway, args: &[&str]) -> (bool, String, String) {
    let out = std::process::Command::new(BIN)
        .args(args)
        .args(["--url", &gw.ws_url(), "--token", gw.expect_token(), "--state-dir"])
        .arg(gw.state_dir())
        .output()
        .expect("running the CLI");
    (
        out.status.success(),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

#[tokio::test]
async fn cli_shows_each_account_with_its_webhook_url_and_stops_and_starts_one() {
    let model = echo_model().await;
    let tg = FakeTelegram::start().await.unwrap();
    let line = FakeLine::start().await.unwrap();
    let config = json!({
        "gateway": {"publicUrl": "https://clawgate.example/"},
        "models": {"providers": {"fake": {"baseUrl": model.base_url(), "apiKey": "k", "api": "openai-completions",
                                          "models": [{"id": "m"}]}}},
        "agents": {"defaults": {"model": {"primary": "fake/m"}}},
        "channels": {
            "telegram": {"botToken": tg.token(), "apiRoot": tg.api_root(), "pollTimeoutSeconds": 1, "dmPolicy": "open"},
            "line": {"channelAccessToken": line.token(), "channelSecret": line.secret(), "apiRoot": line.api_root()},
        },
    });
    let gw = TestGateway::builder(BIN).config(config.to_string()).start().await.unwrap();
    wait_until(WAIT, "both accounts are connected", || async {
        let status = call(&gw, "channels.status", json!({})).await;
        let accounts = status["channelAccounts"].as_object().cloned().unwrap_or_default();
        let connected = accounts.values().flat_map(|l| l.as_array().cloned().unwrap_or_default());
        connected.filter(|a| a["connected"] == true).count().eq(&2).then_some(())
    })
    .await
    .unwrap();

    let (ok, table, err) = cli(&gw, &["channels", "status"]);
    assert!(ok, "{err}");
    insta::assert_snapshot!("channels_status_table", table);

    let (ok, out, err) = cli(&gw, &["channels", "stop", "--channel", "telegram", "--account", "default"]);
    assert!(ok, "{err}");
    assert!(out.starts_with("Stopped telegram/default until"), "{out}");
    let (_, table, _) = cli(&gw, &["channels", "status"]);
    let row = table.lines().find(|l| l.starts_with("telegram")).unwrap_or_default().to_owned();
    assert!(row.contains("stopped"), "{table}");
    let (ok, out, err) = cli(&gw, &["channels", "start", "--channel", "telegram", "--json"]);
    assert!(ok, "{err}");
    let payload: Value = serde_json::from_str(out.trim()).expect("--json prints the raw result");
    assert_eq!((payload["channel"].as_str(), payload["running"].as_bool()), (Some("telegram"), Some(true)), "{out}");
    round_trip(&tg, 7, "back").await;

    // A refusal exits 1 with the gateway's message.
    let (ok, _, err) = cli(&gw, &["channels", "stop", "--channel", "discord"]);
    assert!(!ok && err.contains("unknown channel \"discord\"; configured channels: telegram, line"), "{err}");
    let (ok, json_out, _) = cli(&gw, &["channels", "status", "--json"]);
    assert!(ok);
    let raw: Value = serde_json::from_str(json_out.trim()).unwrap();
    assert_eq!(raw["channelAccounts"]["line"][0]["webhookUrl"], "https://clawgate.example/line/webhook", "{raw}");
}
