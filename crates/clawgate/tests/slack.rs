//! Slack end to end: the real binary against a [`FakeSlack`] (contracts/slack.md), answering
//! through a fake model that echoes each message. HTTP mode: the fake signs Events API requests
//! and posts them to the gateway's port; Socket Mode: the gateway opens sockets on the fake and
//! acknowledges envelopes. These tests check what users notice: a DM gets exactly one reply, a
//! channel needs a mention and is answered in the thread, retried and redelivered events are
//! answered once, forged or stale requests are refused before anything reads them, a refreshed
//! or deaf socket loses no event, and Slack's 429 is waited out.

use std::time::Duration;

use clawgate_testkit::fake_openai::{FakeOpenAi, Script, Turn};
use clawgate_testkit::fake_slack::{BOT_USER_ID, FakeSlack, Posted};
use clawgate_testkit::{RawClient, TestGateway, wait_until};
use serde_json::{Value, json};

const BIN: &str = env!("CARGO_BIN_EXE_clawgate");
const WAIT: Duration = Duration::from_secs(40);

/// The user `allowFrom` lists, and their DM with the bot.
const ALICE: &str = "U0ALICE";
const ALICE_DM: &str = "D0ALICE";
/// Nobody listed.
const MALLORY: &str = "U0MALLORY";
const MALLORY_DM: &str = "D0MALLORY";
/// A channel listed with `requireMention: true`.
const CHANNEL: &str = "C0GENERAL";

async fn echo_model() -> FakeOpenAi {
    FakeOpenAi::start(Script::always(Turn::echo("echo: "))).await.expect("fake model")
}

/// DMs from ALICE only; CHANNEL listed with mention gating.
fn config(model: &FakeOpenAi, slack: &FakeSlack, mode: &str) -> String {
    let mut s = json!({
        "mode": mode,
        "botToken": slack.bot_token(),
        "apiRoot": slack.api_root(),
        "dmPolicy": "allowlist",
        "allowFrom": [ALICE],
        "channels": {CHANNEL: {"requireMention": true}},
    });
    if mode == "http" {
        s["signingSecret"] = json!(slack.signing_secret());
    } else {
        s["appToken"] = json!(slack.app_token());
    }
    json!({
        "models": {"providers": {"fake": {"baseUrl": model.base_url(), "apiKey": "k", "api": "openai-completions",
                                          "models": [{"id": "m"}]}}},
        "agents": {"defaults": {"model": {"primary": "fake/m"}}},
        "channels": {"slack": s},
    })
    .to_string()
}

async fn gateway(config: String) -> TestGateway {
    TestGateway::builder(BIN).config(config).start().await.expect("starting clawgate")
}

fn events_url(gw: &TestGateway) -> String {
    format!("{}/slack/events", gw.http_url())
}

fn texts_in(slack: &FakeSlack, channel: &str) -> Vec<String> {
    slack.posted().into_iter().filter(|p| p.channel == channel).map(|p| p.text).collect()
}

/// Wait until the bot posted `text` into `channel`.
async fn wait_posted(slack: &FakeSlack, channel: &str, text: &str) -> Posted {
    let find = || slack.posted().into_iter().find(|p| p.channel == channel && p.text == text);
    wait_until(WAIT, format!("{text:?} posted in {channel}"), || async { find() })
        .await
        .unwrap_or_else(|e| panic!("{e:#}; posted so far: {:?}", texts_in(slack, channel)))
}

async fn call(gw: &TestGateway, method: &str, params: Value) -> Value {
    let mut c = RawClient::connect(&gw.ws_url()).await.expect("ws");
    c.handshake(gw.token(), &json!({})).await.expect("handshake");
    let res = c.request(method, Some(params)).await.expect(method);
    assert_eq!(res["ok"], true, "{method}: {res}");
    res["payload"].clone()
}

async fn slack_status(gw: &TestGateway) -> Value {
    call(gw, "channels.status", json!({})).await["channelAccounts"]["slack"][0].clone()
}

/// Wait until the account reports connected (auth.test answered; in Socket Mode, `hello`).
async fn wait_connected(gw: &TestGateway) {
    wait_until(WAIT, "slack reported connected", || async {
        (slack_status(gw).await["connected"] == true).then_some(())
    })
    .await
    .unwrap();
}

fn model_saw(model: &FakeOpenAi, text: &str) -> bool {
    model.chat_requests().iter().any(|r| r.body.to_string().contains(text))
}

/// A DM from ALICE.
fn alice_says(slack: &FakeSlack, text: &str) -> Value {
    slack.event_callback(slack.message(ALICE_DM, "im", ALICE, text))
}

/// HTTP mode: push `body` signed and expect a 200.
async fn push_ok(slack: &FakeSlack, gw: &TestGateway, body: &Value) {
    let answer = slack.push(&events_url(gw), body, None).await.expect("push");
    assert_eq!(answer.status, 200, "{answer:?}");
}

/// ALICE writes once more and is answered: replies leave through one outbox in order, so a
/// duplicate of anything earlier would have been posted before this.
async fn answered_after_http(slack: &FakeSlack, gw: &TestGateway) {
    push_ok(slack, gw, &alice_says(slack, "later")).await;
    wait_posted(slack, ALICE_DM, "echo: later").await;
}

#[tokio::test]
async fn http_mode_answers_url_verification_and_a_dm_once() {
    let model = echo_model().await;
    let slack = FakeSlack::start().await.unwrap();
    let gw = gateway(config(&model, &slack, "http")).await;
    wait_connected(&gw).await;

    let challenge = "3eZbrw1aBm2rZgRNFdxV2595E9CY3gmdALWMmHkvFXO7tYXAYM8P";
    let answer = slack.push_url_verification(&events_url(&gw), challenge).await.unwrap();
    assert_eq!((answer.status, answer.body.as_str()), (200, challenge), "{answer:?}");

    push_ok(&slack, &gw, &alice_says(&slack, "hello & <welcome>")).await;
    let reply = wait_posted(&slack, ALICE_DM, "echo: hello &amp; &lt;welcome&gt;").await;
    assert_eq!(reply.thread_ts, None, "a DM reply is not threaded");
    assert!(model_saw(&model, "hello & <welcome>"), "the agent got the decoded text");

    // A stranger's DM runs nothing.
    let stranger = slack.event_callback(slack.message(MALLORY_DM, "im", MALLORY, "run this for me"));
    push_ok(&slack, &gw, &stranger).await;
    answered_after_http(&slack, &gw).await;
    assert_eq!(texts_in(&slack, ALICE_DM), vec!["echo: hello &amp; &lt;welcome&gt;", "echo: later"]);
    assert!(texts_in(&slack, MALLORY_DM).is_empty());
    assert!(!model_saw(&model, "run this for me"));

    let acct = slack_status(&gw).await;
    assert_eq!(acct["mode"], "http", "{acct}");
    assert_eq!(acct["botId"], BOT_USER_ID, "{acct}");
    let sessions = call(&gw, "sessions.list", json!({})).await;
    assert!(sessions.to_string().contains(&format!("agent:main:slack:direct:{ALICE}")), "{sessions}");
}

#[tokio::test]
async fn a_channel_message_needs_a_mention_and_is_answered_in_its_thread_once() {
    let model = echo_model().await;
    let slack = FakeSlack::start().await.unwrap();
    let gw = gateway(config(&model, &slack, "http")).await;
    wait_connected(&gw).await;

    let chatter = slack.message(CHANNEL, "channel", ALICE, "unmentioned chatter");
    push_ok(&slack, &gw, &slack.event_callback(chatter)).await;
    // A mention arrives twice: as `message` and as `app_mention`, same ts.
    let mention = slack.message(CHANNEL, "channel", ALICE, &format!("<@{BOT_USER_ID}> what is up"));
    let ts = mention["ts"].as_str().unwrap().to_owned();
    push_ok(&slack, &gw, &slack.event_callback(slack.app_mention_of(&mention))).await;
    push_ok(&slack, &gw, &slack.event_callback(mention)).await;

    // The mention that addresses the bot is not part of what the agent gets.
    let reply = wait_posted(&slack, CHANNEL, "echo: what is up").await;
    assert_eq!(reply.thread_ts.as_deref(), Some(ts.as_str()), "answered in the message's thread");
    answered_after_http(&slack, &gw).await;
    assert_eq!(texts_in(&slack, CHANNEL).len(), 1, "one reply: {:?}", texts_in(&slack, CHANNEL));
    assert!(!model_saw(&model, "unmentioned chatter"));

    // A reply in that thread, mentioning the bot again, stays in the thread.
    let mut more = slack.message(CHANNEL, "channel", ALICE, &format!("<@{BOT_USER_ID}> and more"));
    more["thread_ts"] = json!(ts);
    push_ok(&slack, &gw, &slack.event_callback(more)).await;
    let reply = wait_posted(&slack, CHANNEL, "echo: and more").await;
    assert_eq!(reply.thread_ts.as_deref(), Some(ts.as_str()));
}

#[tokio::test]
async fn a_retried_event_is_answered_once() {
    let model = echo_model().await;
    let slack = FakeSlack::start().await.unwrap();
    let gw = gateway(config(&model, &slack, "http")).await;
    wait_connected(&gw).await;

    let event = alice_says(&slack, "only once please");
    push_ok(&slack, &gw, &event).await;
    for (n, reason) in [(1, "http_timeout"), (2, "http_error")] {
        let answer = slack.push(&events_url(&gw), &event, Some((n, reason))).await.unwrap();
        assert_eq!(answer.status, 200, "a retry is acknowledged too: {answer:?}");
    }
    wait_posted(&slack, ALICE_DM, "echo: only once please").await;
    answered_after_http(&slack, &gw).await;
    assert_eq!(texts_in(&slack, ALICE_DM), vec!["echo: only once please", "echo: later"]);
    assert_eq!(model.chat_requests().len(), 2);
}

#[tokio::test]
async fn forged_and_stale_requests_are_refused_before_parsing() {
    let model = echo_model().await;
    let slack = FakeSlack::start().await.unwrap();
    let gw = gateway(config(&model, &slack, "http")).await;
    wait_connected(&gw).await;
    let url = events_url(&gw);
    let now = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap().as_secs();

    let body = alice_says(&slack, "forged order").to_string().into_bytes();
    let headers = |ts: u64, sig: String| {
        vec![
            ("content-type".to_owned(), "application/json".to_owned()),
            ("x-slack-request-timestamp".to_owned(), ts.to_string()),
            ("x-slack-signature".to_owned(), sig),
        ]
    };
    // Signed with another secret.
    let forged = clawgate_testkit::fake_slack::sign("not-the-secret", &now.to_string(), &body);
    let a = slack.push_raw(&url, body.clone(), &headers(now, forged)).await.unwrap();
    assert_eq!(a.status, 401, "{a:?}");
    // Signed right, but six minutes old (a replay).
    let old = now - 360;
    let stale = slack.sign_now(&old.to_string(), &body);
    let a = slack.push_raw(&url, body.clone(), &headers(old, stale)).await.unwrap();
    assert_eq!(a.status, 401, "{a:?}");
    // No signature at all.
    let a = slack.push_raw(&url, body.clone(), &headers(now, String::new())).await.unwrap();
    assert_eq!(a.status, 401, "{a:?}");
    // Not even JSON: still 401 (not 400), since nothing is parsed before the signature passes.
    let junk = b"{not json".to_vec();
    let a = slack.push_raw(&url, junk, &headers(now, "v0=00".to_owned())).await.unwrap();
    assert_eq!(a.status, 401, "{a:?}");

    answered_after_http(&slack, &gw).await;
    assert_eq!(texts_in(&slack, ALICE_DM), vec!["echo: later"]);
    assert!(!model_saw(&model, "forged order"));
}

#[tokio::test]
async fn socket_mode_dm_round_trip_acks_and_a_redelivered_envelope_is_answered_once() {
    let model = echo_model().await;
    let slack = FakeSlack::start().await.unwrap();
    let gw = gateway(config(&model, &slack, "socket")).await;
    wait_connected(&gw).await;
    assert_eq!(slack.hellos(), 1);

    let event_id = slack.send_event(&alice_says(&slack, "hello over the socket"));
    wait_posted(&slack, ALICE_DM, "echo: hello over the socket").await;
    wait_until(WAIT, "the envelope acknowledged", || async { (slack.unacked() == 0).then_some(()) }).await.unwrap();
    let envelopes = slack.envelopes();
    assert!(envelopes.iter().all(|(_, e, _)| *e == event_id), "{envelopes:?}");
    assert!(slack.acks().contains(&envelopes[0].0), "the first delivery was acked");

    // Slack redelivers when an ack is late: the same event comes again under new envelope ids,
    // three more times.
    slack.set_late_acks(true);
    slack.set_ack_timeout(Duration::from_millis(200));
    let event_id = slack.send_event(&alice_says(&slack, "said once, delivered many times"));
    wait_until(WAIT, "all redeliveries sent", || async {
        (slack.envelopes().iter().filter(|(_, e, _)| *e == event_id).count() == 4).then_some(())
    })
    .await
    .unwrap();
    slack.set_late_acks(false);
    slack.set_ack_timeout(Duration::from_secs(3));
    let attempts: Vec<u32> =
        slack.envelopes().iter().filter(|(_, e, _)| *e == event_id).map(|(_, _, attempt)| *attempt).collect();
    assert_eq!(attempts, vec![0, 1, 2, 3], "retry_attempt counts up");
    wait_posted(&slack, ALICE_DM, "echo: said once, delivered many times").await;
    slack.send_event(&alice_says(&slack, "later"));
    wait_posted(&slack, ALICE_DM, "echo: later").await;
    assert_eq!(
        texts_in(&slack, ALICE_DM),
        vec!["echo: hello over the socket", "echo: said once, delivered many times", "echo: later"]
    );
    assert_eq!(slack_status(&gw).await["mode"], "socket");
}

#[tokio::test]
async fn a_refresh_requested_disconnect_loses_no_event() {
    let model = echo_model().await;
    let slack = FakeSlack::start().await.unwrap();
    let gw = gateway(config(&model, &slack, "socket")).await;
    wait_connected(&gw).await;

    // Slack asks for a new connection and closes the old one shortly after; an event is sent
    // right away, to whichever connection is newest at that moment.
    slack.disconnect_all("refresh_requested", Some(Duration::from_secs(2)));
    slack.send_event(&alice_says(&slack, "during the refresh"));
    wait_posted(&slack, ALICE_DM, "echo: during the refresh").await;
    wait_until(WAIT, "a second socket opened", || async { (slack.hellos() >= 2).then_some(()) }).await.unwrap();
    wait_until(WAIT, "the old socket closed", || async { (slack.open_connections() == 1).then_some(()) })
        .await
        .unwrap();
    slack.send_event(&alice_says(&slack, "later"));
    wait_posted(&slack, ALICE_DM, "echo: later").await;
    assert_eq!(texts_in(&slack, ALICE_DM), vec!["echo: during the refresh", "echo: later"]);
    assert_eq!(slack_status(&gw).await["connected"], true);
}

#[tokio::test]
async fn a_half_open_socket_is_replaced() {
    let model = echo_model().await;
    let slack = FakeSlack::start().await.unwrap();
    let gw = gateway(config(&model, &slack, "socket")).await;
    wait_connected(&gw).await;

    // The socket stays up but nothing comes through it any more (no events, no pings, no pongs).
    slack.half_open_newest();
    wait_until(WAIT, "the silent socket replaced", || async { (slack.hellos() >= 2).then_some(()) }).await.unwrap();
    slack.send_event(&alice_says(&slack, "after the silence"));
    wait_posted(&slack, ALICE_DM, "echo: after the silence").await;
    let acct = slack_status(&gw).await;
    assert!(acct["reconnectAttempts"].as_u64().unwrap_or(0) >= 1, "{acct}");
    assert!(acct["lastError"].as_str().is_some_and(|e| e.contains("nothing from Slack")), "{acct}");
}

#[tokio::test]
async fn a_429_on_post_message_is_waited_out_and_the_reply_arrives_once() {
    let model = echo_model().await;
    let slack = FakeSlack::start().await.unwrap();
    let gw = gateway(config(&model, &slack, "socket")).await;
    wait_connected(&gw).await;

    slack.rate_limit_next_posts(1, 1);
    slack.send_event(&alice_says(&slack, "slow down"));
    wait_posted(&slack, ALICE_DM, "echo: slow down").await;
    let calls: Vec<u16> =
        slack.calls().into_iter().filter(|c| c.method == "chat.postMessage").map(|c| c.status).collect();
    assert_eq!(calls, vec![429, 200], "one 429, then the one accepted post");
    slack.send_event(&alice_says(&slack, "later"));
    wait_posted(&slack, ALICE_DM, "echo: later").await;
    assert_eq!(texts_in(&slack, ALICE_DM), vec!["echo: slow down", "echo: later"]);
}

#[tokio::test]
async fn run_delivers_the_image_by_upload_into_the_chat() {
    let model = echo_model().await;
    let slack = FakeSlack::start().await.unwrap();
    let comfy = clawgate_testkit::fake_comfy::FakeComfy::start().await.unwrap();
    let mut cfg: Value = serde_json::from_str(&config(&model, &slack, "socket")).unwrap();
    cfg["channels"]["slack"]["dmPolicy"] = json!("open");
    cfg["comfy"] = json!({
        "templatesDir": format!("{}/../../templates", env!("CARGO_MANIFEST_DIR")),
        "workers": [{"name": "w0", "url": comfy.base_url(), "maxConcurrent": 1}],
    });
    let gw = gateway(cfg.to_string()).await;
    wait_connected(&gw).await;

    slack.send_event(&alice_says(&slack, "/run invert color=255 width=64 height=32"));
    let file = wait_until(WAIT, "an image shared into the DM", || async {
        slack.files().into_iter().find(|f| f.channel.as_deref() == Some(ALICE_DM))
    })
    .await
    .unwrap_or_else(|e| panic!("{e:#}; posted: {:?}; calls: {:?}", texts_in(&slack, ALICE_DM), slack.calls()));
    assert!(file.is_png(), "a real PNG: {} bytes, {:?}", file.bytes.len(), &file.bytes[..file.bytes.len().min(8)]);
    assert!(file.bytes.len() > 50, "{}", file.bytes.len());
    assert_eq!(slack.files().len(), 1, "uploaded once");
    assert!(model.chat_requests().is_empty(), "a command never reaches the model");
}

#[tokio::test]
async fn kill_9_after_the_inbox_write_before_the_ack_answers_exactly_once_after_restart() {
    let model = echo_model().await;
    let slack = FakeSlack::start().await.unwrap();
    let mut gw = TestGateway::builder(BIN)
        .config(config(&model, &slack, "socket"))
        .env("CLAWGATE_CRASH_AT", "inbox.recorded")
        .start()
        .await
        .expect("starting clawgate");
    wait_connected(&gw).await;
    // Recorded, then the process dies before routing it and before the envelope is acked:
    // Slack redelivers it to the restarted gateway, which already has it in its inbox.
    slack.send_event(&alice_says(&slack, "through the crash"));
    let status = gw.wait_exit(WAIT).await.expect("the gateway stops at the crash point");
    assert!(!status.success());
    gw.set_env("CLAWGATE_CRASH_AT", None);
    gw.restart().await.expect("restart after the crash");
    wait_posted(&slack, ALICE_DM, "echo: through the crash").await;
    wait_until(WAIT, "the redelivery acknowledged", || async { (slack.unacked() == 0).then_some(()) }).await.unwrap();
    slack.send_event(&alice_says(&slack, "later"));
    wait_posted(&slack, ALICE_DM, "echo: later").await;
    assert_eq!(texts_in(&slack, ALICE_DM), vec!["echo: through the crash", "echo: later"]);
}

#[tokio::test]
async fn link_disabled_stops_the_account_and_says_why() {
    let model = echo_model().await;
    let slack = FakeSlack::start().await.unwrap();
    let gw = gateway(config(&model, &slack, "socket")).await;
    wait_connected(&gw).await;
    slack.disconnect_all("link_disabled", None);
    let acct = wait_until(WAIT, "the account reported stopped", || async {
        let acct = slack_status(&gw).await;
        (acct["healthState"] == "stopped").then_some(acct)
    })
    .await
    .unwrap();
    assert_eq!(acct["connected"], false, "{acct}");
    assert!(acct["lastError"].as_str().is_some_and(|e| e.contains("Socket Mode is turned off")), "{acct}");
    assert_eq!(slack.hellos(), 1, "no reconnect spin after link_disabled");
}

#[tokio::test]
async fn a_long_reply_is_split_at_4000_characters_without_losing_words() {
    let long = "word ".repeat(1800); // 9000 characters
    let model =
        FakeOpenAi::start(Script::new().turn(Turn::text([long])).otherwise(Turn::echo("echo: "))).await.unwrap();
    let slack = FakeSlack::start().await.unwrap();
    let gw = gateway(config(&model, &slack, "socket")).await;
    wait_connected(&gw).await;

    slack.send_event(&alice_says(&slack, "tell me a lot"));
    wait_until(WAIT, "three parts", || async { (texts_in(&slack, ALICE_DM).len() >= 3).then_some(()) }).await.unwrap();
    slack.send_event(&alice_says(&slack, "later"));
    wait_posted(&slack, ALICE_DM, "echo: later").await;
    let mut parts = texts_in(&slack, ALICE_DM);
    assert_eq!(parts.pop().as_deref(), Some("echo: later"), "no part after the three");
    assert_eq!(parts.len(), 3, "{:?}", parts.iter().map(|p| p.chars().count()).collect::<Vec<_>>());
    assert!(parts.iter().all(|p| p.chars().count() <= 4000));
    assert_eq!(parts.join(" ").split_whitespace().count(), 1800, "nothing lost at the cuts");
    assert!(parts.join(" ").split_whitespace().all(|w| w == "word"));
}
