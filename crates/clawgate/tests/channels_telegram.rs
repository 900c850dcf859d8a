//! Telegram end to end: the real binary long-polls a [`FakeTelegram`] (contracts/telegram-bot-api.md)
//! and answers through a fake model that echoes each message, so every reply names the message it
//! answers. These tests check what users notice: a DM gets exactly one reply, strangers get
//! nothing run, groups need a mention, topics keep their thread, long replies are split at 4096,
//! the platform's 429 is honoured, and a `kill -9` at any step of the path neither loses nor
//! repeats a reply.

use std::time::Duration;

use clawgate_testkit::fake_openai::{FakeOpenAi, Script, Turn};
use clawgate_testkit::fake_telegram::{ApiCall, FakeError, FakeTelegram, FakeUser, entity};
use clawgate_testkit::{RawClient, TestGateway, eventually, wait_until};
use serde_json::{Value, json};

const BIN: &str = env!("CARGO_BIN_EXE_clawgate");
const WAIT: Duration = Duration::from_secs(30);

/// The fake model answers "echo: <message>".
async fn echo_model() -> FakeOpenAi {
    FakeOpenAi::start(Script::always(Turn::echo("echo: "))).await.expect("fake model")
}

fn config(model: &FakeOpenAi, tg: &FakeTelegram, telegram: Value) -> String {
    let mut telegram = telegram;
    telegram["botToken"] = json!(tg.token());
    telegram["apiRoot"] = json!(tg.api_root());
    if telegram.get("pollTimeoutSeconds").is_none() {
        telegram["pollTimeoutSeconds"] = json!(1);
    }
    json!({
        "models": {"providers": {"fake": {"baseUrl": model.base_url(), "apiKey": "k", "api": "openai-completions",
                                          "models": [{"id": "m"}]}}},
        "agents": {"defaults": {"model": {"primary": "fake/m"}}},
        "channels": {"telegram": telegram},
    })
    .to_string()
}

async fn gateway(config: String, env: &[(&str, &str)]) -> TestGateway {
    let mut b = TestGateway::builder(BIN).config(config);
    for (k, v) in env {
        b = b.env(*k, *v);
    }
    b.start().await.expect("starting clawgate")
}

fn texts_to(tg: &FakeTelegram, chat: i64) -> Vec<String> {
    tg.calls("sendMessage")
        .into_iter()
        .filter(|c| c.status == 200 && c.param_i64("chat_id") == Some(chat))
        .filter_map(|c| c.param_str("text"))
        .collect()
}

async fn wait_text(tg: &FakeTelegram, chat: i64, text: &str) -> ApiCall {
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
    .unwrap_or_else(|e| panic!("no reply {text:?} to chat {chat}: {e:#}"))
}

async fn connect(gw: &TestGateway) -> RawClient {
    let mut c = RawClient::connect(&gw.ws_url()).await.expect("ws");
    c.handshake(gw.token(), &json!({})).await.expect("handshake");
    c
}

async fn call(gw: &TestGateway, method: &str, params: Value) -> Value {
    let mut c = connect(gw).await;
    let res = c.request(method, Some(params)).await.expect(method);
    assert_eq!(res["ok"], true, "{method}: {res}");
    res["payload"].clone()
}

/// A message from `chat` (an allowed sender) sent after the input under test, answered (the
/// model echoes it). Updates reach the gateway in order and each is routed before the next is
/// acknowledged, and replies leave through one outbox in insertion order: once this one is
/// answered, the earlier input has been processed and whatever it queued has been sent, so a
/// negative assertion about it can be made.
async fn answered_after(tg: &FakeTelegram, chat: i64, marker: &str) {
    tg.push_private_message(chat, "witness", marker);
    wait_text(tg, chat, &format!("echo: {marker}")).await;
}

#[tokio::test]
async fn a_dm_gets_one_reply_with_typing_and_status_shows_the_traffic() {
    let model = echo_model().await;
    let tg = FakeTelegram::start().await.unwrap();
    let gw = gateway(config(&model, &tg, json!({"dmPolicy": "open"})), &[]).await;
    tg.push_private_message(4242, "alice", "hello there");
    wait_text(&tg, 4242, "echo: hello there").await;
    assert!(tg.calls("sendChatAction").iter().any(|c| c.param_str("action").as_deref() == Some("typing")));
    assert_eq!(tg.max_concurrent_get_updates(), 1, "exactly one long poll in flight per token");

    let status = call(&gw, "channels.status", json!({})).await;
    let acct = &status["channelAccounts"]["telegram"][0];
    assert_eq!(acct["accountId"], "default");
    assert_eq!(acct["connected"], true, "{status}");
    assert!(acct["lastInboundAt"].as_i64().is_some() && acct["lastOutboundAt"].as_i64().is_some(), "{acct}");
    assert_eq!(acct["mode"], "polling");
    assert_eq!(status["channelOrder"], json!(["telegram"]));

    // The model saw the DM in its own session, and the transcript is readable over the protocol.
    let sessions = call(&gw, "sessions.list", json!({})).await;
    assert!(sessions.to_string().contains("agent:main:telegram:direct:4242"), "{sessions}");
    answered_after(&tg, 4343, "later").await;
    assert_eq!(texts_to(&tg, 4242), vec!["echo: hello there"], "one reply, not more");
    // CLI view of the same.
    let out = std::process::Command::new(BIN)
        .args(["channels", "status", "--url", &gw.ws_url(), "--token", gw.expect_token(), "--state-dir"])
        .arg(gw.state_dir())
        .output()
        .unwrap();
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(out.status.success() && text.contains("telegram") && text.contains("connected"), "{text}");
}

#[tokio::test]
async fn strangers_get_no_run_and_pairing_lets_them_in() {
    let model = echo_model().await;
    let tg = FakeTelegram::start().await.unwrap();
    let gw = gateway(config(&model, &tg, json!({"dmPolicy": "pairing", "allowFrom": ["42"]})), &[]).await;

    tg.push_private_message(42, "owner", "hi from the owner");
    wait_text(&tg, 42, "echo: hi from the owner").await;
    let model_calls = model.chat_requests().len();

    // A stranger gets a pairing code and nothing is run for them.
    tg.push_private_message(777, "stranger", "run something expensive");
    let reply = tg
        .wait_for_sent(|c| c.is("sendMessage") && c.param_i64("chat_id") == Some(777), WAIT)
        .await
        .expect("pairing reply");
    let text = reply.param_str("text").unwrap();
    assert!(text.contains("clawgate pairing approve telegram"), "{text}");
    let code = text.split("pairing code: ").nth(1).unwrap().split_whitespace().next().unwrap().to_owned();
    // Writing again does not spam a second code.
    tg.push_private_message(777, "stranger", "hello??");
    answered_after(&tg, 42, "later").await;
    assert_eq!(texts_to(&tg, 777).len(), 1);
    assert_eq!(model.chat_requests().len(), model_calls + 1, "no agent run for an unpaired sender, only the owner's");

    // The owner approves with the CLI; the next message is answered.
    let out = std::process::Command::new(BIN)
        .args(["pairing", "approve", "telegram", &code, "--url", &gw.ws_url(), "--token", gw.expect_token()])
        .arg("--state-dir")
        .arg(gw.state_dir())
        .output()
        .unwrap();
    assert!(out.status.success(), "{}{}", String::from_utf8_lossy(&out.stdout), String::from_utf8_lossy(&out.stderr));
    assert!(String::from_utf8_lossy(&out.stdout).contains("Approved"));
    tg.push_private_message(777, "stranger", "now?");
    wait_text(&tg, 777, "echo: now?").await;

    // An unknown code is a clear error.
    let mut c = connect(&gw).await;
    let res = c
        .request(
            "channels.pairing.approve",
            Some(json!({"channel": "telegram", "accountId": "default", "requestId": "NOPE2345"})),
        )
        .await
        .unwrap();
    assert_eq!(res["ok"], false);
    assert_eq!(res["error"]["details"]["code"], "PAIRING_CODE_UNKNOWN");
}

#[tokio::test]
async fn allowlist_policy_drops_unlisted_senders_silently() {
    let model = echo_model().await;
    let tg = FakeTelegram::start().await.unwrap();
    let _gw = gateway(config(&model, &tg, json!({"dmPolicy": "allowlist", "allowFrom": ["@Alice"]})), &[]).await;
    tg.push_private_message(99, "mallory", "let me in");
    tg.push_private_message(5, "alice", "it is me");
    // Alice wrote after Mallory: her answer means Mallory's message was processed too.
    wait_text(&tg, 5, "echo: it is me").await;
    assert!(texts_to(&tg, 99).is_empty(), "no answer at all to an unlisted sender");
    assert_eq!(model.chat_requests().len(), 1, "only the allowed sender's message ran");
}

#[tokio::test]
async fn groups_need_a_mention_and_forum_topics_keep_their_thread() {
    let model = echo_model().await;
    let tg = FakeTelegram::start().await.unwrap();
    let _gw = gateway(config(&model, &tg, json!({"groups": {"-1001": {"requireMention": true}}})), &[]).await;
    let bob = FakeUser::new(7, "bob");
    let bot = format!("@{}", tg.bot_user().username.unwrap());

    tg.push_group_message(-1001, &bob, "just chatting", None, vec![]);
    tg.push_group_message(-2002, &bob, &format!("{bot} not an allowed group"), None, vec![]);
    let text = format!("{bot} what is up");
    let (_, mid) = tg.push_group_message(-1001, &bob, &text, Some(55), vec![entity(&text, &bot, "mention")]);
    let reply = wait_text(&tg, -1001, &format!("echo: {text}")).await;
    assert_eq!(reply.param_i64("message_thread_id"), Some(55), "reply stays in the forum topic");
    assert_eq!(reply.params["reply_parameters"]["message_id"], json!(mid), "{:?}", reply.params);
    // The mention came after the other two messages, so they were processed before its answer.
    assert_eq!(texts_to(&tg, -1001).len(), 1, "the unmentioned message got nothing");
    assert!(texts_to(&tg, -2002).is_empty(), "a group not in the allowlist gets nothing");
    assert_eq!(model.chat_requests().len(), 1);
}

#[tokio::test]
async fn long_replies_are_split_at_4096_and_commands_need_no_model() {
    let long = "word ".repeat(2000); // 10 000 characters
    let model = FakeOpenAi::start(Script::new().turn(Turn::text([long.clone()])).otherwise(Turn::echo("echo: ")))
        .await
        .unwrap();
    let tg = FakeTelegram::start().await.unwrap();
    let _gw = gateway(config(&model, &tg, json!({"dmPolicy": "open"})), &[]).await;
    tg.push_private_message(11, "carol", "tell me a lot");
    let _ = eventually(WAIT, "three parts are sent", || (texts_to(&tg, 11).len() >= 3).then_some(())).await;
    let parts = texts_to(&tg, 11);
    assert_eq!(parts.len(), 3, "{:?}", parts.iter().map(String::len).collect::<Vec<_>>());
    assert!(parts.iter().all(|p| p.encode_utf16().count() <= 4096));
    assert_eq!(parts.join(" ").split_whitespace().count(), 2000, "nothing lost at the cuts");

    tg.push_private_message(11, "carol", "/help");
    tg.wait_for_sent(|c| c.param_str("text").is_some_and(|t| t.contains("/reset")), WAIT).await.expect("help");
    tg.push_private_message(11, "carol", "/status");
    tg.wait_for_sent(|c| c.param_str("text").is_some_and(|t| t.contains("agent:main:telegram:direct:11")), WAIT)
        .await
        .expect("status");
    tg.push_private_message(11, "carol", "/new");
    tg.wait_for_sent(|c| c.param_str("text").is_some_and(|t| t.contains("new conversation")), WAIT).await.expect("new");
    assert_eq!(model.chat_requests().len(), 1, "commands never reach the model");
    tg.push_private_message(11, "carol", "after reset");
    wait_text(&tg, 11, "echo: after reset").await;
    let last = model.chat_requests().last().unwrap().body.clone();
    let users = last["messages"].as_array().unwrap().iter().filter(|m| m["role"] == "user").count();
    assert_eq!(users, 1, "after /new the model sees only the new message: {last}");
}

#[tokio::test]
async fn retry_after_is_honoured_and_permanent_failures_are_reported() {
    let model = echo_model().await;
    let tg = FakeTelegram::start().await.unwrap();
    let gw = gateway(config(&model, &tg, json!({"dmPolicy": "open"})), &[]).await;
    tg.fail_next("sendMessage", 1, FakeError::RetryAfter(2));
    tg.push_private_message(21, "dave", "slow down");
    wait_text(&tg, 21, "echo: slow down").await;
    let attempts: Vec<ApiCall> =
        tg.calls("sendMessage").into_iter().filter(|c| c.param_i64("chat_id") == Some(21)).collect();
    assert_eq!(attempts.len(), 2, "one 429, one success");
    let gap = attempts[1].at.duration_since(attempts[0].at);
    assert!(gap >= Duration::from_millis(1900), "waited {gap:?}, retry_after was 2 s");

    tg.forbid_chat(22, FakeError::blocked());
    tg.push_private_message(22, "erin", "are you there");
    let acct = wait_until(WAIT, "the permanent failure is reported", || async {
        let status = call(&gw, "channels.status", json!({})).await;
        let acct = status["channelAccounts"]["telegram"][0].clone();
        (acct["outbox"]["failed"] == 1).then_some(acct)
    })
    .await
    .unwrap();
    assert!(acct["lastError"].as_str().unwrap_or_default().contains("blocked"), "{acct}");
    // Failed is the row's last state: it is never picked up again.
    let tries = tg.calls("sendMessage").into_iter().filter(|c| c.param_i64("chat_id") == Some(22)).count();
    assert_eq!(tries, 1, "a permanent failure is not retried");
}

#[tokio::test]
async fn send_method_delivers_once_per_idempotency_key() {
    let model = echo_model().await;
    let tg = FakeTelegram::start().await.unwrap();
    let gw = gateway(config(&model, &tg, json!({"dmPolicy": "open"})), &[]).await;
    // Wait until the channel is up.
    tg.wait_for_sent(|c| c.is("getUpdates"), WAIT).await.unwrap();
    let params = json!({"to": "31", "message": "scheduled hello", "channel": "telegram", "threadId": "9", "idempotencyKey": "k-1"});
    let first = call(&gw, "send", params.clone()).await;
    assert_eq!(first["status"], "sent", "{first}");
    assert_eq!(first["channel"], "telegram");
    assert!(first["messageId"].as_str().is_some(), "{first}");
    let again = call(&gw, "send", params).await;
    assert_eq!(again["messageId"], first["messageId"]);
    let sent = texts_to(&tg, 31);
    assert_eq!(sent, vec!["scheduled hello"], "same key, one message");
    assert_eq!(tg.calls("sendMessage")[0].param_i64("message_thread_id"), Some(9));
    let mut c = connect(&gw).await;
    let res = c
        .request("send", Some(json!({"to": "31", "message": "x", "channel": "discord", "idempotencyKey": "k-2"})))
        .await
        .unwrap();
    assert_eq!(res["ok"], false, "an account that does not run is an error: {res}");
}

#[tokio::test]
async fn webhook_mode_checks_the_secret_and_answers() {
    let model = echo_model().await;
    let tg = FakeTelegram::start().await.unwrap();
    // Start in polling mode, then switch the account to webhook mode with a config change: the
    // account restarts on its own (reload class restart-subsystem) and registers the webhook.
    let gw = gateway(config(&model, &tg, json!({"dmPolicy": "open"})), &[]).await;
    tg.wait_for_sent(|c| c.is("getUpdates"), WAIT).await.unwrap();
    let hash = call(&gw, "config.get", json!({})).await["hash"].as_str().unwrap().to_owned();
    let patch = json!({"channels": {"telegram": {
        "webhookUrl": format!("{}/telegram-webhook/default", gw.http_url()), "webhookSecret": "s3cret-token_ok"}}});
    call(&gw, "config.patch", json!({"raw": patch.to_string(), "baseHash": hash})).await;
    eventually(WAIT, "setWebhook is called", || tg.webhook()).await.unwrap();
    assert_eq!(tg.webhook().unwrap().secret_token.as_deref(), Some("s3cret-token_ok"));
    let update = json!({"message": {"message_id": 1, "date": 1, "chat": {"id": 61, "type": "private"},
                                     "from": {"id": 61, "is_bot": false, "first_name": "F"}, "text": "via webhook"}});
    assert_eq!(tg.post_webhook(update.clone()).await.unwrap(), 200);
    wait_text(&tg, 61, "echo: via webhook").await;
    // Wrong secret: 401, nothing recorded.
    let resp = reqwest::Client::new()
        .post(format!("{}/telegram-webhook/default", gw.http_url().trim_end_matches('/')))
        .header("X-Telegram-Bot-Api-Secret-Token", "wrong")
        .json(&json!({"update_id": 999, "message": {"message_id": 2, "date": 1, "chat": {"id": 62, "type": "private"},
                                                     "from": {"id": 62, "is_bot": false, "first_name": "G"}, "text": "forged"}}))
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status().as_u16(), 401);
    // Telegram redelivers the first update (same update_id): dropped as a duplicate.
    let mut again = update;
    again["update_id"] = json!(tg.sent().len() as i64 + 10_000);
    // The webhook answers only after the gateway recorded the update (or found it a duplicate),
    // and a duplicate is never routed: its 200 is the fact that it was processed.
    assert_eq!(tg.post_webhook(again).await.unwrap(), 200);
    assert!(texts_to(&tg, 62).is_empty());
    assert_eq!(texts_to(&tg, 61).len(), 1, "a redelivered message is answered once");
}

// ---- durability: kill -9 at each step ----

/// Start with `CLAWGATE_CRASH_AT=point`, send three DMs, let the gateway die at the point,
/// restart it without the crash point, and count replies.
async fn crash_and_recover(point: &str) -> (FakeTelegram, Vec<(i64, Vec<String>)>) {
    let model = echo_model().await;
    let tg = FakeTelegram::start().await.unwrap();
    let mut gw = gateway(config(&model, &tg, json!({"dmPolicy": "open"})), &[("CLAWGATE_CRASH_AT", point)]).await;
    for (i, chat) in [101, 102, 103].into_iter().enumerate() {
        tg.push_private_message(chat, "user", &format!("message {i}"));
    }
    let status = gw.wait_exit(WAIT).await.unwrap_or_else(|e| panic!("gateway did not stop at {point}: {e:#}"));
    assert!(!status.success(), "the crash point aborts the process ({point})");
    gw.set_env("CLAWGATE_CRASH_AT", None);
    gw.restart().await.expect("restart after the crash");
    for (i, chat) in [101, 102, 103].into_iter().enumerate() {
        wait_text(&tg, chat, &format!("echo: message {i}")).await;
    }
    answered_after(&tg, 104, "after the restart").await;
    let replies = [101, 102, 103].into_iter().map(|c| (c, texts_to(&tg, c))).collect();
    (tg, replies)
}

async fn every_message_answered_once(point: &str) {
    let (_tg, replies) = crash_and_recover(point).await;
    for (i, (chat, texts)) in replies.iter().enumerate() {
        assert_eq!(texts, &vec![format!("echo: message {i}")], "chat {chat} after a crash at {point}");
    }
}

#[tokio::test]
async fn crash_after_fetch_before_record_loses_nothing() {
    every_message_answered_once("telegram.fetched").await;
}

#[tokio::test]
async fn crash_after_record_before_routing_loses_nothing() {
    every_message_answered_once("inbox.recorded").await;
}

#[tokio::test]
async fn crash_after_the_run_before_queueing_the_reply_loses_nothing() {
    every_message_answered_once("run.finished").await;
}

#[tokio::test]
async fn crash_after_queueing_before_sending_loses_nothing() {
    every_message_answered_once("outbox.queued").await;
}

/// The documented window: the platform accepted the message and the process died before the
/// one-row "sent" write. That single chunk is sent again after the restart — and nothing else is.
#[tokio::test]
async fn crash_between_accept_and_mark_repeats_exactly_that_message() {
    let (_tg, replies) = crash_and_recover("outbox.accepted").await;
    let total: usize = replies.iter().map(|(_, t)| t.len()).sum();
    assert_eq!(total, 4, "exactly one duplicate, from the one send in flight at the crash: {replies:?}");
    for (i, (_, texts)) in replies.iter().enumerate() {
        assert!(texts.iter().all(|t| t == &format!("echo: message {i}")));
        assert!(!texts.is_empty() && texts.len() <= 2);
    }
}

#[tokio::test]
async fn per_sender_rate_limit_drops_the_excess_without_running_it() {
    let model = echo_model().await;
    let tg = FakeTelegram::start().await.unwrap();
    let _gw = gateway(
        config(&model, &tg, json!({"dmPolicy": "open", "rateLimit": {"perSenderPerMinute": 2, "perChatPerMinute": 0}})),
        &[],
    )
    .await;
    for i in 0..4 {
        tg.push_private_message(71, "flood", &format!("m{i}"));
    }
    eventually(WAIT, "the first two messages are answered", || (texts_to(&tg, 71).len() >= 2).then_some(()))
        .await
        .unwrap();
    // Written after the flood: its answer means the flood was processed.
    tg.push_private_message(72, "calm", "hello");
    wait_text(&tg, 72, "echo: hello").await;
    let replies = texts_to(&tg, 71);
    assert_eq!(replies.len(), 2, "two messages a minute per sender, the rest dropped: {replies:?}");
    assert!(replies.iter().all(|r| r.starts_with("echo: m")), "{replies:?}");
    assert_eq!(model.chat_requests().len(), 3, "dropped messages never reach the model");
}
