//! Slack slash commands end to end: the real binary against a [`FakeSlack`]. In Slack a message
//! starting with `/` is taken by the composer and never reaches the app, so `/help`, `/run`, …
//! arrive as slash commands: signed form POSTs in HTTP mode, `slash_commands` envelopes in Socket
//! Mode. These tests check what a Slack user notices: the command's reply is posted where they
//! typed it (a DM's into their DM with the app), Slack gets an empty 200 (nothing shown to the
//! invoker), a forged or replayed invocation runs nothing more, and a stranger is treated as a
//! message from them would be.

use std::time::Duration;

use clawgate_comfy::command::Verb;
use clawgate_testkit::fake_openai::{FakeOpenAi, Script, Turn};
use clawgate_testkit::fake_slack::{FakeSlack, PushAnswer, SlashInvocation};
use clawgate_testkit::{RawClient, TestGateway, wait_until};
use serde_json::json;

const BIN: &str = env!("CARGO_BIN_EXE_clawgate");
const WAIT: Duration = Duration::from_secs(40);

/// The user `allowFrom` lists, and their DM with the app.
const ALICE: &str = "U0ALICE";
const ALICE_DM: &str = "D0ALICE";
/// Nobody listed.
const MALLORY: &str = "U0MALLORY";
const MALLORY_DM: &str = "D0MALLORY";
/// A channel listed with `requireMention: true`.
const CHANNEL: &str = "C0GENERAL";
/// A channel not listed.
const UNLISTED: &str = "C0RANDOM";

async fn echo_model() -> FakeOpenAi {
    FakeOpenAi::start(Script::always(Turn::echo("echo: "))).await.expect("fake model")
}

/// DMs from ALICE only (`dm_policy` for the rest); CHANNEL listed with mention gating.
fn config(model: &FakeOpenAi, slack: &FakeSlack, mode: &str, dm_policy: &str) -> String {
    let mut s = json!({
        "mode": mode,
        "botToken": slack.bot_token(),
        "apiRoot": slack.api_root(),
        "dmPolicy": dm_policy,
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

fn commands_url(gw: &TestGateway) -> String {
    format!("{}/slack/commands", gw.http_url())
}

fn events_url(gw: &TestGateway) -> String {
    format!("{}/slack/events", gw.http_url())
}

fn texts_in(slack: &FakeSlack, channel: &str) -> Vec<String> {
    slack.posted().into_iter().filter(|p| p.channel == channel).map(|p| p.text).collect()
}

/// Wait until the app posted into `channel` a text containing `part`; returns that text.
async fn wait_posted_containing(slack: &FakeSlack, channel: &str, part: &str) -> String {
    let find = || texts_in(slack, channel).into_iter().find(|t| t.contains(part));
    wait_until(WAIT, format!("a post containing {part:?} in {channel}"), || async { find() })
        .await
        .unwrap_or_else(|e| panic!("{e:#}; posted so far: {:?}", slack.posted()))
}

async fn wait_connected(gw: &TestGateway) {
    wait_until(WAIT, "slack reported connected", || async {
        let mut c = RawClient::connect(&gw.ws_url()).await.ok()?;
        c.handshake(gw.token(), &json!({})).await.ok()?;
        let res = c.request("channels.status", Some(json!({}))).await.ok()?;
        (res["payload"]["channelAccounts"]["slack"][0]["connected"] == true).then_some(())
    })
    .await
    .unwrap();
}

/// HTTP mode: what Slack must get for a slash command it may show nothing for: an empty 200.
fn assert_empty_200(answer: &PushAnswer) {
    assert_eq!((answer.status, answer.body.as_str()), (200, ""), "{answer:?}");
}

async fn push(slack: &FakeSlack, url: &str, invocation: &SlashInvocation) -> PushAnswer {
    slack.push_slash_command(url, invocation).await.expect("posting the slash command")
}

fn model_saw(model: &FakeOpenAi, text: &str) -> bool {
    model.chat_requests().iter().any(|r| r.body.to_string().contains(text))
}

#[tokio::test]
async fn help_over_http_is_answered_in_the_channel_and_in_the_dm() {
    let model = echo_model().await;
    let slack = FakeSlack::start().await.unwrap();
    let gw = gateway(config(&model, &slack, "http", "allowlist")).await;
    wait_connected(&gw).await;

    // In a channel that needs a mention: a slash command is addressed to the app.
    let answer = push(&slack, &commands_url(&gw), &slack.slash_command(CHANNEL, ALICE, "/help", "")).await;
    assert_empty_200(&answer);
    let help = wait_posted_containing(&slack, CHANNEL, "/new").await;
    assert!(help.contains("/status"), "{help}");
    let post = slack.posted().into_iter().find(|p| p.channel == CHANNEL).unwrap();
    assert_eq!(post.thread_ts, None, "a slash command has no message to thread under");

    // In a DM, through the events URL (Slack lets an app use one URL for both) and the
    // umbrella command: the reply goes to the user, i.e. their DM with the app.
    let umbrella = slack.slash_command(ALICE_DM, ALICE, "/clawgate", "help");
    assert_empty_200(&push(&slack, &events_url(&gw), &umbrella).await);
    let help = wait_posted_containing(&slack, ALICE, "/new").await;
    assert!(help.contains("/help"), "{help}");

    // An interaction (a button press: `payload=` JSON) and Slack's certificate check of the
    // command URL are acknowledged and ignored; a form that is none of these is refused.
    let now = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap().as_secs().to_string();
    let signed = |body: &[u8]| {
        [
            ("content-type".to_owned(), "application/x-www-form-urlencoded".to_owned()),
            ("x-slack-request-timestamp".to_owned(), now.clone()),
            ("x-slack-signature".to_owned(), slack.sign_now(&now, body)),
        ]
    };
    for body in [&b"payload=%7B%22type%22%3A%22block_actions%22%7D"[..], b"ssl_check=1&token=x"] {
        assert_empty_200(&slack.push_raw(&commands_url(&gw), body.to_vec(), &signed(body)).await.unwrap());
    }
    let a = slack.push_raw(&commands_url(&gw), b"text=hi".to_vec(), &signed(b"text=hi")).await.unwrap();
    assert_eq!(a.status, 400, "{a:?}");

    assert!(texts_in(&slack, ALICE_DM).is_empty(), "DM replies go to the user id");
    assert_eq!(slack.posted().len(), 2, "{:?}", slack.posted());
    assert!(model.chat_requests().is_empty(), "a command never reaches the model");
}

#[tokio::test]
async fn status_over_socket_mode_is_acked_and_answered() {
    let model = echo_model().await;
    let slack = FakeSlack::start().await.unwrap();
    let gw = gateway(config(&model, &slack, "socket", "allowlist")).await;
    wait_connected(&gw).await;

    // Slack keeps `/status` for itself, so the app's users type `/clawgate status`.
    let envelope = slack.send_slash_command(&slack.slash_command(ALICE_DM, ALICE, "/clawgate", "status")).unwrap();
    let status = wait_posted_containing(&slack, ALICE, "Session: agent:main:slack:direct:U0ALICE").await;
    assert!(status.contains("Model: fake/m"), "{status}");
    wait_until(WAIT, "the envelope acknowledged", || async { slack.acks().contains(&envelope).then_some(()) })
        .await
        .unwrap();

    // A command the app registers under its own name goes the same way.
    let envelope = slack.send_slash_command(&slack.slash_command(ALICE_DM, ALICE, "/new", "")).unwrap();
    wait_until(WAIT, "the second envelope acknowledged", || async { slack.acks().contains(&envelope).then_some(()) })
        .await
        .unwrap();
    wait_until(WAIT, "two replies to alice", || async { (texts_in(&slack, ALICE).len() == 2).then_some(()) })
        .await
        .unwrap_or_else(|e| panic!("{e:#}; posted: {:?}", slack.posted()));
    assert!(model.chat_requests().is_empty(), "commands never reach the model");
}

#[tokio::test]
async fn a_forged_or_stale_slash_command_is_refused_before_parsing() {
    let model = echo_model().await;
    let slack = FakeSlack::start().await.unwrap();
    let gw = gateway(config(&model, &slack, "http", "allowlist")).await;
    wait_connected(&gw).await;
    let url = commands_url(&gw);

    // Without ComfyUI, `/run` is no command: were it let through, the agent would get it.
    let forged = slack.slash_command(ALICE_DM, ALICE, "/run", "forged order");
    let a = slack.push_slash_command_signed_with(&url, &forged, "not-the-secret").await.unwrap();
    assert_eq!(a.status, 401, "{a:?}");

    // Signed right, six minutes ago (a replay past the window).
    let body = slack.slash_command(ALICE_DM, ALICE, "/run", "stale order").form_body();
    let old = (std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap().as_secs() - 360).to_string();
    let headers = |ts: &str, sig: String| {
        vec![
            ("content-type".to_owned(), "application/x-www-form-urlencoded".to_owned()),
            ("x-slack-request-timestamp".to_owned(), ts.to_owned()),
            ("x-slack-signature".to_owned(), sig),
        ]
    };
    let a = slack.push_raw(&url, body.clone(), &headers(&old, slack.sign_now(&old, &body))).await.unwrap();
    assert_eq!(a.status, 401, "{a:?}");
    // Not even a form, and unsigned: 401 (not 400), since nothing is parsed before the signature.
    let a = slack.push_raw(&url, b"%%%&&==".to_vec(), &headers(&old, "v0=00".to_owned())).await.unwrap();
    assert_eq!(a.status, 401, "{a:?}");

    // The real thing still works; nothing forged ran before it.
    let answer = push(&slack, &url, &slack.slash_command(ALICE_DM, ALICE, "/run", "a real order")).await;
    assert_empty_200(&answer);
    wait_posted_containing(&slack, ALICE, "echo: /run a real order").await;
    assert_eq!(texts_in(&slack, ALICE).len(), 1, "{:?}", slack.posted());
    assert!(!model_saw(&model, "forged order") && !model_saw(&model, "stale order"));
}

#[tokio::test]
async fn a_replayed_invocation_is_answered_once() {
    let model = echo_model().await;
    let slack = FakeSlack::start().await.unwrap();
    let gw = gateway(config(&model, &slack, "http", "allowlist")).await;
    wait_connected(&gw).await;
    let url = commands_url(&gw);

    // The same body with the same signature, twice, within the window; then re-signed.
    let invocation = slack.slash_command(ALICE_DM, ALICE, "/run", "only once");
    let body = invocation.form_body();
    let now = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap().as_secs().to_string();
    let headers = vec![
        ("content-type".to_owned(), "application/x-www-form-urlencoded".to_owned()),
        ("x-slack-request-timestamp".to_owned(), now.clone()),
        ("x-slack-signature".to_owned(), slack.sign_now(&now, &body)),
    ];
    for _ in 0..2 {
        assert_empty_200(&slack.push_raw(&url, body.clone(), &headers).await.unwrap());
    }
    assert_empty_200(&push(&slack, &url, &invocation).await);
    wait_posted_containing(&slack, ALICE, "echo: /run only once").await;

    // Replies leave one account's outbox in order: a duplicate would have been posted before this.
    assert_empty_200(&push(&slack, &url, &slack.slash_command(ALICE_DM, ALICE, "/run", "later")).await);
    wait_posted_containing(&slack, ALICE, "echo: /run later").await;
    assert_eq!(texts_in(&slack, ALICE), vec!["echo: /run only once", "echo: /run later"]);
    assert_eq!(model.chat_requests().len(), 2);
}

#[tokio::test]
async fn a_stranger_is_refused_as_a_message_would_be() {
    let model = echo_model().await;
    let slack = FakeSlack::start().await.unwrap();
    let gw = gateway(config(&model, &slack, "http", "pairing")).await;
    wait_connected(&gw).await;
    let url = commands_url(&gw);

    // An unknown sender's DM gets a pairing code, whether it is a message or a slash command;
    // the command does not run.
    assert_empty_200(&push(&slack, &url, &slack.slash_command(MALLORY_DM, MALLORY, "/help", "")).await);
    let pairing = wait_posted_containing(&slack, MALLORY, "pairing code").await;
    assert!(!pairing.contains("/new"), "the command did not run: {pairing}");
    // Asking again, and in a channel the app is not allowed in, gets nothing more.
    assert_empty_200(&push(&slack, &url, &slack.slash_command(MALLORY_DM, MALLORY, "/clawgate", "status")).await);
    assert_empty_200(&push(&slack, &url, &slack.slash_command(UNLISTED, ALICE, "/help", "")).await);

    assert_empty_200(&push(&slack, &url, &slack.slash_command(ALICE_DM, ALICE, "/run", "for alice")).await);
    wait_posted_containing(&slack, ALICE, "echo: /run for alice").await;
    assert_eq!(texts_in(&slack, MALLORY).len(), 1, "{:?}", slack.posted());
    assert!(texts_in(&slack, UNLISTED).is_empty() && texts_in(&slack, MALLORY_DM).is_empty());
    assert_eq!(model.chat_requests().len(), 1, "only alice's text reached the model");
}

/// The app manifest in the Slack guide registers every chat command (but the names Slack keeps
/// for itself, reached through `/clawgate`), each as Slack must send it: unescaped.
#[test]
fn the_documented_manifest_registers_every_chat_command() {
    let doc = include_str!("../../../docs/channels/slack.md");
    let registered: Vec<&str> = doc.lines().filter_map(|l| l.trim().strip_prefix("- command: ")).collect();
    let mut wanted = vec!["/clawgate", "/new", "/help"];
    wanted.extend(Verb::ALL.iter().map(|v| v.name()).filter(|n| *n != "/status"));
    for name in &wanted {
        assert!(registered.contains(name), "{name} is not in the manifest: {registered:?}");
    }
    assert!(!registered.contains(&"/status"), "Slack refuses its built-in names in a manifest");
    let unescaped = doc.lines().filter(|l| l.trim() == "should_escape: false").count();
    let urls = doc.lines().filter(|l| l.trim() == "url: https://bot.example.com/slack/commands").count();
    assert_eq!((unescaped, urls), (registered.len(), registered.len()));
}
