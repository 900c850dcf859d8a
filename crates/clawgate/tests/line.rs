//! LINE end to end: the real binary takes signed webhooks from a [`FakeLine`] platform
//! (contracts/line.md) on its own port and answers through a fake model that echoes each message.
//! These tests check what users and operators notice: a DM is answered once, by reply token when
//! one is fresh and by push otherwise; groups need a mention; a redelivered event is answered
//! once; a forged request is refused before anything reads it; a rate limit delays a reply
//! without doubling it; a `/run` image reaches LINE as an absolute HTTPS link that serves a PNG;
//! a `kill -9` between recording a message and replying loses and repeats nothing; and a plain
//! HTTP `gateway.publicUrl` is refused at start with its place in the file.

use std::time::Duration;

use clawgate_testkit::fake_comfy::FakeComfy;
use clawgate_testkit::fake_line::{FakeLine, INVALID_REPLY_TOKEN, Source, Via, line_id, sign};
use clawgate_testkit::fake_openai::{FakeOpenAi, Script, Turn};
use clawgate_testkit::{RawClient, TestGateway, eventually};
use serde_json::{Value, json};

const BIN: &str = env!("CARGO_BIN_EXE_clawgate");
const WAIT: Duration = Duration::from_secs(40);
/// The HTTPS origin a reverse proxy would give the gateway; the fake maps it to loopback.
const PUBLIC: &str = "https://clawgate.example";

async fn echo_model() -> FakeOpenAi {
    FakeOpenAi::start(Script::always(Turn::echo("echo: "))).await.expect("fake model")
}

fn config(model: &FakeOpenAi, line: &FakeLine, settings: Value) -> Value {
    let mut account = json!({"channelAccessToken": line.token(), "channelSecret": line.secret(),
                             "apiRoot": line.api_root(), "dmPolicy": "open"});
    if let (Some(a), Value::Object(extra)) = (account.as_object_mut(), settings) {
        a.extend(extra);
    }
    json!({
        "gateway": {"publicUrl": PUBLIC},
        "models": {"providers": {"fake": {"baseUrl": model.base_url(), "apiKey": "k", "api": "openai-completions",
                                          "models": [{"id": "m"}]}}},
        "agents": {"defaults": {"model": {"primary": "fake/m"}}},
        "channels": {"line": account},
    })
}

/// Start the gateway, point the fake's webhook at it, and wait until the account runs (it has
/// checked its token with `/v2/bot/info`).
async fn gateway(line: &FakeLine, config: Value, env: &[(&str, &str)]) -> TestGateway {
    let mut b = TestGateway::builder(BIN).config(config.to_string());
    for (k, v) in env {
        b = b.env(*k, *v);
    }
    let gw = b.start().await.expect("starting clawgate");
    attach(line, &gw, 1).await;
    gw
}

/// Point the fake at the gateway and wait for the account's `starts`-th token check.
async fn attach(line: &FakeLine, gw: &TestGateway, starts: usize) {
    line.set_webhook(format!("{}/line/webhook", gw.http_url()));
    line.map_public_origin(PUBLIC, &gw.http_url());
    eventually(WAIT, "the LINE account starts", || {
        (line.calls().iter().filter(|c| c.endpoint == "info" && c.status == 200).count() >= starts).then_some(())
    })
    .await
    .unwrap();
}

async fn call(gw: &TestGateway, method: &str, params: Value) -> Value {
    let mut c = RawClient::connect(&gw.ws_url()).await.expect("ws");
    c.handshake(gw.token(), &json!({})).await.expect("handshake");
    let res = c.request(method, Some(params)).await.expect(method);
    assert_eq!(res["ok"], true, "{method}: {res}");
    res["payload"].clone()
}

async fn post(line: &FakeLine, events: &[Value]) {
    let out = line.post_events(events).await.expect("webhook");
    assert_eq!(out.status, Some(200), "the webhook answers 200 within LINE's 2 s: {out:?}");
}

async fn wait_text(line: &FakeLine, chat: &str, text: &str) -> clawgate_testkit::fake_line::Delivered {
    line.wait_delivered(|d| d.to == chat && d.text() == Some(text), WAIT)
        .await
        .unwrap_or_else(|e| panic!("no {text:?} to {chat}: {e:#}"))
}

/// A DM from another user, answered: webhooks are recorded in order and routed before the
/// answer of a later one is sent, so once this one is answered the input before it has been
/// processed and whatever it queued has been sent.
async fn answered_after(line: &FakeLine, n: u64, marker: &str) {
    let witness = Source::User(line_id('U', 9_000 + n));
    post(line, &[line.text_event(&witness, marker, false)]).await;
    wait_text(line, witness.chat_id(), &format!("echo: {marker}")).await;
}

#[tokio::test]
async fn a_dm_is_answered_once_by_reply_and_the_verify_request_gets_200() {
    let model = echo_model().await;
    let line = FakeLine::start().await.unwrap();
    let gw = gateway(&line, config(&model, &line, json!({})), &[]).await;
    assert_eq!(line.post_verify().await.unwrap().status, Some(200), "the console's Verify button works");

    let alice = Source::User(line_id('U', 1));
    post(&line, &[line.text_event(&alice, "hello there", false)]).await;
    let reply = wait_text(&line, alice.chat_id(), "echo: hello there").await;
    assert_eq!(reply.via, Via::Reply, "a fresh reply token is used (replies are free)");

    let status = call(&gw, "channels.status", json!({})).await;
    let acct = &status["channelAccounts"]["line"][0];
    assert_eq!((acct["connected"].clone(), acct["mode"].clone()), (json!(true), json!("webhook")), "{status}");
    assert!(acct["lastInboundAt"].is_i64() && acct["lastOutboundAt"].is_i64(), "{acct}");
    assert_eq!(acct["webhookUrl"], format!("{PUBLIC}/line/webhook"), "what to paste into the console: {acct}");
    let sessions = call(&gw, "sessions.list", json!({})).await;
    assert!(sessions.to_string().contains(&format!("agent:main:line:direct:{}", alice.chat_id())), "{sessions}");
    answered_after(&line, 1, "later").await;
    assert_eq!(line.texts_to(alice.chat_id()), vec!["echo: hello there"], "one reply, not more");
}

#[tokio::test]
async fn groups_answer_only_when_the_bot_is_mentioned() {
    let model = echo_model().await;
    let line = FakeLine::start().await.unwrap();
    let group = line_id('C', 1);
    let _gw =
        gateway(&line, config(&model, &line, json!({"groups": {group.clone(): {"requireMention": true}}})), &[]).await;
    let bob = Source::Group { group_id: group.clone(), user_id: line_id('U', 2) };
    let elsewhere = Source::Group { group_id: line_id('C', 2), user_id: line_id('U', 2) };
    post(
        &line,
        &[
            line.text_event(&bob, "just chatting", false),
            line.text_event_mentioning_other(&bob, "hi you", &line_id('U', 3)),
            line.text_event(&elsewhere, "not an allowed group", true),
        ],
    )
    .await;
    let asked = line.text_event(&bob, "what is up", true);
    let text = asked["message"]["text"].as_str().unwrap().to_owned();
    post(&line, &[asked]).await;
    wait_text(&line, &group, &format!("echo: {text}")).await;
    // The mention came after the other messages, so they were processed before its answer.
    assert_eq!(line.texts_to(&group).len(), 1, "unmentioned messages get nothing");
    assert!(line.texts_to(&line_id('C', 2)).is_empty(), "a group not in the allowlist gets nothing");
    assert_eq!(model.chat_requests().len(), 1);
}

#[tokio::test]
async fn a_redelivered_event_is_answered_once() {
    let model = echo_model().await;
    let line = FakeLine::start().await.unwrap();
    let _gw = gateway(&line, config(&model, &line, json!({})), &[]).await;
    let carol = Source::User(line_id('U', 4));
    let event = line.text_event(&carol, "only once please", false);
    post(&line, std::slice::from_ref(&event)).await;
    wait_text(&line, carol.chat_id(), "echo: only once please").await;
    // LINE resends it (same webhookEventId and reply token, isRedelivery: true): the 200 comes
    // once the gateway found it already recorded.
    let again = line.redeliver(&event).await.unwrap();
    assert_eq!(again.status, Some(200), "{again:?}");
    answered_after(&line, 2, "witness").await;
    assert_eq!(line.texts_to(carol.chat_id()).len(), 1, "{:?}", line.delivered());
    assert_eq!(model.chat_requests().len(), 2, "the redelivery never reached the model");
}

#[tokio::test]
async fn forged_requests_are_refused_before_they_are_read() {
    let model = echo_model().await;
    let line = FakeLine::start().await.unwrap();
    let gw = gateway(&line, config(&model, &line, json!({})), &[]).await;
    let mallory = Source::User(line_id('U', 5));
    let event = line.text_event(&mallory, "forged order", false);
    let body = json!({"destination": "U0", "events": [event]}).to_string();

    // Not even JSON, with a wrong signature: 401, not 400 (the body is never parsed).
    let canary = b"canary-not-json {{{";
    let out = line.post_raw(canary, Some(&sign("wrong secret", canary))).await.unwrap();
    assert_eq!(out.status, Some(401), "{out:?}");
    assert_eq!(line.post_raw(body.as_bytes(), None).await.unwrap().status, Some(401), "no signature");
    let other = sign("another channel's secret", body.as_bytes());
    assert_eq!(line.post_raw(body.as_bytes(), Some(&other)).await.unwrap().status, Some(401));
    let tampered = body.replace("forged order", "forged ordex");
    let sig = sign(line.secret(), body.as_bytes());
    assert_eq!(line.post_raw(tampered.as_bytes(), Some(&sig)).await.unwrap().status, Some(401), "one byte changed");
    let ping = br#"{"destination":"U0","events":[]}"#;
    assert_eq!(line.post_raw(ping, None).await.unwrap().status, Some(401), "an unsigned verify request");
    // Correctly signed but not JSON: only now is it parsed.
    let out = line.post_raw(canary, Some(&sign(line.secret(), canary))).await.unwrap();
    assert_eq!(out.status, Some(400), "{out:?}");

    answered_after(&line, 3, "after the forgeries").await;
    assert!(line.texts_to(mallory.chat_id()).is_empty());
    assert_eq!(model.chat_requests().len(), 1, "nothing forged reached the model");
    let log = gw.read_log();
    assert!(!log.contains("canary-not-json") && !log.contains("forged order"), "request bodies are never logged");
    let refusals = log.lines().filter(|l| l.contains("missing or wrong secret")).count();
    assert_eq!(refusals, 1, "one line when an address starts failing, not one per request:\n{log}");
}

#[tokio::test]
async fn an_expired_or_used_reply_token_falls_back_to_an_idempotent_push() {
    let long = "word ".repeat(1400); // 7 000 characters: two messages
    let model =
        FakeOpenAi::start(Script::new().turn(Turn::text([long])).otherwise(Turn::echo("echo: "))).await.unwrap();
    let line = FakeLine::start().await.unwrap();
    let _gw = gateway(&line, config(&model, &line, json!({})), &[]).await;

    // The token is spent by the first part; the second is pushed.
    let dave = Source::User(line_id('U', 6));
    post(&line, &[line.text_event(&dave, "tell me a lot", false)]).await;
    line.wait_delivered(|d| d.to == dave.chat_id() && d.via == Via::Push, WAIT)
        .await
        .expect("the second part is pushed");
    let sent: Vec<_> = line.delivered().into_iter().filter(|d| d.to == dave.chat_id()).collect();
    assert_eq!(sent.iter().map(|d| d.via).collect::<Vec<_>>(), vec![Via::Reply, Via::Push], "{sent:?}");
    assert!(sent.iter().all(|d| d.text().unwrap().encode_utf16().count() <= 5000));
    let words: usize = sent.iter().map(|d| d.text().unwrap().split_whitespace().count()).sum();
    assert_eq!(words, 1400, "nothing lost at the cut");
    let push = line.calls().into_iter().find(|c| c.endpoint == "push" && c.status == 200).unwrap();
    let key = push.retry_key.clone().expect("pushes carry X-Line-Retry-Key");
    assert_eq!(key.len(), 36, "a UUID: {key}");

    // Every token has expired by the time it is used: LINE refuses it and the answer is pushed.
    line.set_reply_token_ttl(Duration::ZERO);
    let erin = Source::User(line_id('U', 7));
    post(&line, &[line.text_event(&erin, "late", false)]).await;
    let d = wait_text(&line, erin.chat_id(), "echo: late").await;
    assert_eq!(d.via, Via::Push);
    assert!(
        line.calls()
            .iter()
            .any(|c| c.endpoint == "reply" && c.status == 400 && c.response["message"] == INVALID_REPLY_TOKEN),
        "the reply token was tried first"
    );
    assert_eq!(line.texts_to(erin.chat_id()).len(), 1);
}

#[tokio::test]
async fn a_rate_limited_reply_is_retried_and_delivered_once() {
    let model = echo_model().await;
    let line = FakeLine::start().await.unwrap();
    let _gw = gateway(&line, config(&model, &line, json!({})), &[]).await;
    line.rate_limit_next(2);
    let frank = Source::User(line_id('U', 8));
    post(&line, &[line.text_event(&frank, "slow down", false)]).await;
    wait_text(&line, frank.chat_id(), "echo: slow down").await;
    let limited = line.calls().iter().filter(|c| c.status == 429).count();
    assert_eq!(limited, 2, "both 429s were met and waited out");
    answered_after(&line, 4, "witness").await;
    assert_eq!(line.texts_to(frank.chat_id()).len(), 1, "{:?}", line.delivered());
}

#[tokio::test]
async fn a_run_delivers_the_image_as_an_absolute_https_link_line_can_fetch() {
    let model = echo_model().await;
    let line = FakeLine::start().await.unwrap();
    let comfy = FakeComfy::start().await.unwrap();
    let owner = Source::User(line_id('U', 10));
    let mut cfg = config(&model, &line, json!({"allowFrom": [owner.chat_id()]}));
    cfg["comfy"] = json!({"templatesDir": format!("{}/../../templates", env!("CARGO_MANIFEST_DIR")),
                          "workers": [{"name": "w0", "url": comfy.base_url(), "maxConcurrent": 1}]});
    let _gw = gateway(&line, cfg, &[]).await;
    post(&line, &[line.text_event(&owner, "/run invert color=255 width=64 height=32", false)]).await;
    let image = line.wait_delivered(|d| d.message["type"] == "image", WAIT).await.expect("an image is delivered");
    assert_eq!(image.to, owner.chat_id());
    let url = image.message["originalContentUrl"].as_str().unwrap();
    assert!(url.starts_with(&format!("{PUBLIC}/media/")) && url.len() <= 2000, "{url}");
    let fetched = line.wait_fetched(2, WAIT).await.unwrap();
    for f in &fetched {
        assert_eq!((f.status, f.error.as_deref(), f.is_png), (Some(200), None, true), "{f:?}");
        assert_eq!(f.content_type.as_deref(), Some("image/png"), "{f:?}");
    }
    line.wait_delivered(|d| d.text().is_some_and(|t| t.contains("[Job Completed]")), WAIT).await.unwrap();
    assert!(model.chat_requests().is_empty(), "a command never reaches the model");
}

#[tokio::test]
async fn a_crash_between_recording_and_replying_gives_exactly_one_reply() {
    let model = echo_model().await;
    let line = FakeLine::start().await.unwrap();
    let mut gw = gateway(&line, config(&model, &line, json!({})), &[("CLAWGATE_CRASH_AT", "inbox.recorded")]).await;
    let gina = Source::User(line_id('U', 11));
    let event = line.text_event(&gina, "survive this", false);
    let out = line.post_events(std::slice::from_ref(&event)).await.unwrap();
    assert_eq!(out.status, None, "the process died before answering: {out:?}");
    let status = gw.wait_exit(WAIT).await.expect("the gateway stops at the crash point");
    assert!(!status.success());
    gw.set_env("CLAWGATE_CRASH_AT", None);
    gw.restart().await.expect("restart after the crash");
    attach(&line, &gw, 2).await;
    // The recorded message is answered after the restart (by push: the token was in memory)...
    let d = wait_text(&line, gina.chat_id(), "echo: survive this").await;
    assert_eq!(d.via, Via::Push);
    // ...and LINE's redelivery of the unanswered webhook is known and not answered again.
    assert_eq!(line.redeliver(&event).await.unwrap().status, Some(200));
    answered_after(&line, 5, "after the restart").await;
    assert_eq!(line.texts_to(gina.chat_id()), vec!["echo: survive this"]);
}

#[tokio::test]
async fn a_plain_http_public_url_is_refused_at_start_with_its_place() {
    let model = echo_model().await;
    let line = FakeLine::start().await.unwrap();
    let mut cfg = config(&model, &line, json!({}));
    cfg["gateway"]["publicUrl"] = json!("http://clawgate.example");
    let text = serde_json::to_string_pretty(&cfg).unwrap();
    let line_no = text.lines().position(|l| l.contains("publicUrl")).unwrap() + 1;
    let err = TestGateway::builder(BIN)
        .config(text)
        .ready_timeout(Duration::from_secs(20))
        .start()
        .await
        .expect_err("a plain-HTTP public URL with LINE is refused");
    let text = format!("{err:#}");
    assert!(text.contains("LINE needs an HTTPS public URL: set gateway.publicUrl to https://"), "{text}");
    assert!(text.contains(&format!("clawgate.json5:{line_no}:")), "the error names the file and line: {text}");
}

/// The window every platform has (the platform accepted a send, the process died before the
/// outbox row was marked sent) is closed for pushes: after the restart the same row is pushed
/// again with the same `X-Line-Retry-Key`, LINE answers 409 "already accepted", and the user sees
/// the message once.
#[tokio::test]
async fn a_crash_after_line_accepted_a_push_does_not_deliver_it_twice() {
    let model = echo_model().await;
    let line = FakeLine::start().await.unwrap();
    line.set_reply_token_ttl(Duration::ZERO);
    let mut gw = gateway(&line, config(&model, &line, json!({})), &[("CLAWGATE_CRASH_AT", "outbox.accepted")]).await;
    let hana = Source::User(line_id('U', 12));
    post(&line, &[line.text_event(&hana, "exactly once", false)]).await;
    let status = gw.wait_exit(WAIT).await.expect("the gateway stops after LINE accepted the push");
    assert!(!status.success());
    assert_eq!(line.texts_to(hana.chat_id()), vec!["echo: exactly once"], "accepted before the crash");
    gw.set_env("CLAWGATE_CRASH_AT", None);
    gw.restart().await.expect("restart after the crash");
    attach(&line, &gw, 2).await;
    let again = line
        .wait_call(|c| c.endpoint == "push" && c.status == 409, WAIT)
        .await
        .expect("the row is pushed again after the restart, under the same retry key");
    let first = line.calls().into_iter().find(|c| c.endpoint == "push" && c.status == 200).unwrap();
    assert_eq!(again.retry_key, first.retry_key);
    answered_after(&line, 6, "after the restart").await;
    assert_eq!(line.texts_to(hana.chat_id()), vec!["echo: exactly once"], "{:?}", line.delivered());
}
