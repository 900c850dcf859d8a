//! Discord end to end: the real binary holds a gateway session with a [`FakeDiscord`]
//! (contracts/discord.md) and answers over its REST API through a fake model that echoes each
//! message, so every reply names the message it answers. These tests check what users notice: an
//! allowed DM gets exactly one reply, nobody else gets an agent run, guilds need a listing, a
//! listed user and a mention, long replies are split at 2000 characters, a dropped connection
//! resumes without losing the message sent meanwhile, and the platform's 429 is waited out.

use std::time::Duration;

use clawgate_testkit::fake_discord::{FakeDiscord, FakeUser, MAX_CONTENT_CHARS, SentMessage};
use clawgate_testkit::fake_openai::{FakeOpenAi, Script, Turn};
use clawgate_testkit::{RawClient, TestGateway, wait_until};
use serde_json::{Value, json};

const BIN: &str = env!("CARGO_BIN_EXE_clawgate");
const WAIT: Duration = Duration::from_secs(30);

/// The user `allowFrom` lists, and the DM channel they write in.
const ALICE: &str = "210000000000000001";
const ALICE_DM: &str = "310000000000000001";
/// Nobody listed anywhere, and their DM channel.
const MALLORY: &str = "210000000000000002";
const MALLORY_DM: &str = "310000000000000002";
/// A guild member listed in no `users` list.
const BOB: &str = "210000000000000003";
/// A guild listed with `requireMention: true`, and a channel in it.
const MENTION_GUILD: &str = "410000000000000001";
const MENTION_CHANNEL: &str = "510000000000000001";
/// A guild listed with `requireMention: false` that only lets ALICE in.
const USERS_GUILD: &str = "410000000000000002";
const USERS_CHANNEL: &str = "510000000000000002";
/// A guild the config does not list.
const OTHER_GUILD: &str = "410000000000000003";
const OTHER_CHANNEL: &str = "510000000000000003";

/// The fake model answers "echo: <message>".
async fn echo_model() -> FakeOpenAi {
    FakeOpenAi::start(Script::always(Turn::echo("echo: "))).await.expect("fake model")
}

/// DMs from ALICE only; guilds as the test gives them.
fn config(model: &FakeOpenAi, dc: &FakeDiscord, discord: Value) -> String {
    let mut discord = discord;
    discord["token"] = json!(dc.token());
    discord["gatewayUrl"] = json!(dc.gateway_url());
    discord["apiRoot"] = json!(dc.api_root());
    if discord.get("dmPolicy").is_none() {
        discord["dmPolicy"] = json!("allowlist");
        discord["allowFrom"] = json!([ALICE]);
    }
    json!({
        "models": {"providers": {"fake": {"baseUrl": model.base_url(), "apiKey": "k", "api": "openai-completions",
                                          "models": [{"id": "m"}]}}},
        "agents": {"defaults": {"model": {"primary": "fake/m"}}},
        "channels": {"discord": discord},
    })
    .to_string()
}

async fn gateway(config: String) -> TestGateway {
    TestGateway::builder(BIN).config(config).start().await.expect("starting clawgate")
}

fn alice() -> FakeUser {
    FakeUser::new(ALICE, "alice")
}

/// What the bot created in `channel`, in order.
fn texts_in(dc: &FakeDiscord, channel: &str) -> Vec<String> {
    dc.sent_messages()
        .into_iter()
        .filter(|m| m.channel_id == channel)
        .filter_map(|m| m.content().map(str::to_owned))
        .collect()
}

/// Wait until the bot created a message in `channel` whose content satisfies `matches`.
async fn wait_sent(dc: &FakeDiscord, channel: &str, what: &str, matches: impl Fn(&str) -> bool) -> SentMessage {
    let find = |dc: &FakeDiscord| {
        dc.sent_messages().into_iter().find(|m| m.channel_id == channel && m.content().is_some_and(&matches))
    };
    dc.wait_for(what, WAIT, |dc| find(dc).is_some())
        .await
        .unwrap_or_else(|e| panic!("{e:#}; sent so far: {:?}", texts_in(dc, channel)));
    find(dc).expect("found above")
}

async fn wait_text(dc: &FakeDiscord, channel: &str, text: &str) -> SentMessage {
    wait_sent(dc, channel, &format!("{text:?} in channel {channel}"), |c| c == text).await
}

async fn call(gw: &TestGateway, method: &str, params: Value) -> Value {
    let mut c = RawClient::connect(&gw.ws_url()).await.expect("ws");
    c.handshake(gw.token(), &json!({})).await.expect("handshake");
    let res = c.request(method, Some(params)).await.expect(method);
    assert_eq!(res["ok"], true, "{method}: {res}");
    res["payload"].clone()
}

async fn discord_status(gw: &TestGateway) -> Value {
    call(gw, "channels.status", json!({})).await["channelAccounts"]["discord"][0].clone()
}

/// Alice writes once more and is answered ("echo: later"). Dispatches reach the gateway in
/// order and replies leave through one outbox in insertion order, so by then everything the
/// earlier input caused has been sent: a duplicate would show up before this answer.
async fn answered_after(dc: &FakeDiscord) {
    dc.push_message_create(ALICE_DM, None, &alice(), "later", &[]);
    wait_text(dc, ALICE_DM, "echo: later").await;
}

/// Did any model request carry `text`? (Proves a dropped message never reached the agent.)
fn model_saw(model: &FakeOpenAi, text: &str) -> bool {
    model.chat_requests().iter().any(|r| r.body.to_string().contains(text))
}

#[tokio::test]
async fn an_allowed_dm_gets_one_reply_with_typing_and_status_shows_the_traffic() {
    let model = echo_model().await;
    let dc = FakeDiscord::start().await.unwrap();
    let gw = gateway(config(&model, &dc, json!({}))).await;

    dc.push_message_create(ALICE_DM, None, &alice(), "hello there", &[]);
    let reply = wait_text(&dc, ALICE_DM, "echo: hello there").await;
    assert!(reply.payload.get("message_reference").is_none_or(Value::is_null), "a DM reply is not a quote");
    assert!(dc.typing_calls().iter().any(|c| c == ALICE_DM), "typing shown in the DM: {:?}", dc.typing_calls());

    // The fake records the reply when it receives it; the gateway records the send once the
    // answer is back: wait for the status to show it rather than reading it at once.
    let acct = wait_until(WAIT, "the status shows the reply sent", || async {
        let acct = discord_status(&gw).await;
        acct["lastOutboundAt"].as_i64().is_some().then_some(acct)
    })
    .await
    .unwrap();
    assert_eq!(acct["accountId"], "default", "{acct}");
    assert_eq!(acct["connected"], true, "{acct}");
    assert!(acct["lastInboundAt"].as_i64().is_some(), "{acct}");

    let sessions = call(&gw, "sessions.list", json!({})).await;
    assert!(sessions.to_string().contains(&format!("agent:main:discord:direct:{ALICE}")), "{sessions}");
    answered_after(&dc).await;
    assert_eq!(texts_in(&dc, ALICE_DM), vec!["echo: hello there", "echo: later"], "one reply, not more");
    assert_eq!(model.chat_requests().len(), 2);
    assert_eq!(dc.identify_count(), 1);
}

#[tokio::test]
async fn only_allowed_senders_in_allowed_places_get_an_agent_run() {
    let model = echo_model().await;
    let dc = FakeDiscord::start().await.unwrap();
    let guilds = json!({
        MENTION_GUILD: {"requireMention": true},
        USERS_GUILD: {"requireMention": false, "users": [ALICE]},
    });
    let _gw = gateway(config(&model, &dc, json!({"guilds": guilds}))).await;
    let mallory = FakeUser::new(MALLORY, "mallory");
    let bob = FakeUser::new(BOB, "bob");
    let bot = dc.bot_user().clone();
    let mention = format!("<@{}>", bot.id);

    // Each of these must be dropped before the agent.
    dc.push_message_create(MALLORY_DM, None, &mallory, "stranger dm run this", &[]);
    dc.push_message_create(MENTION_CHANNEL, Some(MENTION_GUILD), &bob, "unmentioned chatter", &[]);
    dc.push_message_create(
        OTHER_CHANNEL,
        Some(OTHER_GUILD),
        &bob,
        &format!("{mention} unlisted guild"),
        std::slice::from_ref(&bot),
    );
    dc.push_message_create(USERS_CHANNEL, Some(USERS_GUILD), &mallory, "unlisted member", &[]);

    // And these are answered: they show the drops above were policy, not a dead account.
    let asked = format!("{mention} what is up");
    let mid = dc.push_message_create(MENTION_CHANNEL, Some(MENTION_GUILD), &bob, &asked, std::slice::from_ref(&bot));
    dc.push_message_create(USERS_CHANNEL, Some(USERS_GUILD), &alice(), "listed member", &[]);
    dc.push_message_create(ALICE_DM, None, &alice(), "listed dm", &[]);

    let reply =
        wait_sent(&dc, MENTION_CHANNEL, "the mentioned reply", |c| c.starts_with("echo: ") && c.contains("what is up"))
            .await;
    assert_eq!(reply.payload["message_reference"]["message_id"], json!(mid), "{}", reply.payload);
    wait_text(&dc, USERS_CHANNEL, "echo: listed member").await;
    // Those three were written after the dropped ones, which were therefore processed first.
    wait_text(&dc, ALICE_DM, "echo: listed dm").await;

    assert!(texts_in(&dc, MALLORY_DM).is_empty(), "no answer to a DM sender not in allowFrom");
    assert_eq!(texts_in(&dc, MENTION_CHANNEL).len(), 1, "the unmentioned message got nothing");
    assert!(texts_in(&dc, OTHER_CHANNEL).is_empty(), "a guild not listed gets nothing");
    assert_eq!(texts_in(&dc, USERS_CHANNEL), vec!["echo: listed member"], "a member not in users gets nothing");
    for dropped in ["stranger dm run this", "unmentioned chatter", "unlisted guild", "unlisted member"] {
        assert!(!model_saw(&model, dropped), "{dropped:?} reached the model");
    }
    assert_eq!(model.chat_requests().len(), 3, "only the three allowed messages ran");
    assert!(dc.typing_calls().iter().all(|c| c != MALLORY_DM && c != OTHER_CHANNEL), "{:?}", dc.typing_calls());
}

#[tokio::test]
async fn a_long_reply_is_split_at_2000_characters_without_losing_words() {
    let long = "word ".repeat(900); // 4500 characters
    let model =
        FakeOpenAi::start(Script::new().turn(Turn::text([long])).otherwise(Turn::echo("echo: "))).await.unwrap();
    let dc = FakeDiscord::start().await.unwrap();
    let _gw = gateway(config(&model, &dc, json!({}))).await;

    dc.push_message_create(ALICE_DM, None, &alice(), "tell me a lot", &[]);
    dc.wait_for("three parts", WAIT, |dc| texts_in(dc, ALICE_DM).len() >= 3)
        .await
        .unwrap_or_else(|e| panic!("{e:#}: {:?}", texts_in(&dc, ALICE_DM).iter().map(String::len).collect::<Vec<_>>()));
    answered_after(&dc).await;
    let mut parts = texts_in(&dc, ALICE_DM);
    assert_eq!(parts.pop().as_deref(), Some("echo: later"), "no part after the three: {parts:?}");
    assert_eq!(parts.len(), 3, "{:?}", parts.iter().map(|p| p.chars().count()).collect::<Vec<_>>());
    assert!(parts.iter().all(|p| p.chars().count() <= MAX_CONTENT_CHARS));
    assert_eq!(parts.join(" ").split_whitespace().count(), 900, "nothing lost at the cuts");
    assert!(parts.join(" ").split_whitespace().all(|w| w == "word"), "no word cut in half");
    assert!(dc.message_calls().iter().all(|m| m.status == 200), "Discord refused nothing");
}

#[tokio::test]
async fn a_message_sent_while_disconnected_is_answered_once_after_the_resume() {
    let model = echo_model().await;
    let dc = FakeDiscord::start().await.unwrap();
    let gw = gateway(config(&model, &dc, json!({}))).await;
    dc.push_message_create(ALICE_DM, None, &alice(), "before the drop", &[]);
    wait_text(&dc, ALICE_DM, "echo: before the drop").await;

    assert!(dc.drop_connection(), "a connection held the session");
    // Nobody holds the session now: the fake buffers this until a Resume replays it.
    dc.push_message_create(ALICE_DM, None, &alice(), "while away", &[]);
    wait_text(&dc, ALICE_DM, "echo: while away").await;
    assert!(dc.resume_count() >= 1, "the session was resumed, not replaced");

    // An op 7 Reconnect is the same story.
    assert!(dc.send_reconnect(), "a connection held the session again");
    dc.push_message_create(ALICE_DM, None, &alice(), "after op 7", &[]);
    wait_text(&dc, ALICE_DM, "echo: after op 7").await;
    assert!(dc.resume_count() >= 2, "resumed after op 7 too: {}", dc.resume_count());

    wait_until(WAIT, "reported connected again", || async {
        (discord_status(&gw).await["connected"] == true).then_some(())
    })
    .await
    .unwrap();
    answered_after(&dc).await;
    assert_eq!(
        texts_in(&dc, ALICE_DM),
        vec!["echo: before the drop", "echo: while away", "echo: after op 7", "echo: later"],
        "each message answered exactly once"
    );
    assert_eq!(dc.identify_count(), 1, "resumed every time, never identified again");
    assert_eq!(model.chat_requests().len(), 4);
}

#[tokio::test]
async fn a_429_on_the_reply_is_waited_out_and_the_reply_arrives_once() {
    // The model takes a moment, so the 429 can be armed after typing and hit the reply itself.
    let model = FakeOpenAi::start(Script::always(Turn::echo("echo: ").first_chunk_delay(Duration::from_millis(1500))))
        .await
        .unwrap();
    let dc = FakeDiscord::start().await.unwrap();
    let _gw = gateway(config(&model, &dc, json!({}))).await;

    dc.push_message_create(ALICE_DM, None, &alice(), "slow down", &[]);
    dc.wait_for("typing in the DM", WAIT, |dc| dc.typing_calls().iter().any(|c| c == ALICE_DM)).await.unwrap();
    assert!(texts_in(&dc, ALICE_DM).is_empty(), "the model is still thinking");
    dc.rate_limit_next(1, Duration::from_millis(500), false);

    wait_text(&dc, ALICE_DM, "echo: slow down").await;
    assert_eq!(dc.rate_limited_count(), 1, "the reply met the 429");
    answered_after(&dc).await;
    assert_eq!(texts_in(&dc, ALICE_DM), vec!["echo: slow down", "echo: later"], "exactly once");
    assert_eq!(dc.message_calls().len(), 2, "no call was refused besides the 429");
}
