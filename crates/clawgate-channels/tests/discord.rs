//! The Discord adapter against the fake Discord (gateway + REST on loopback): normalising,
//! resuming without loss, re-identifying, fatal closes, zombie connections, sends and their
//! errors, rate limits and uploads.

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use async_trait::async_trait;
use clawgate_channels::discord::DiscordChannel;
use clawgate_channels::{
    Accepted, AccountKey, Channel, ChannelError, ChatKind, InboundMessage, Ingress, IngressError, MediaSource,
    OutboundMedia, OutboundMessage, SendError, accounts_from_value,
};
use clawgate_testkit::eventually;
use clawgate_testkit::fake_discord::{FakeDiscord, FakeUser};
use serde_json::json;
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;

const WAIT: Duration = Duration::from_secs(10);
const GUILD: &str = "300000000000000001";
const CHANNEL: &str = "300000000000000002";
const DM: &str = "300000000000000003";

/// An ingress that keeps what it is given; it can refuse the first few deliveries.
#[derive(Default)]
struct MemoryIngress {
    messages: Mutex<Vec<InboundMessage>>,
    refuse: AtomicUsize,
    attempts: AtomicUsize,
}

#[async_trait]
impl Ingress for MemoryIngress {
    async fn deliver(&self, message: InboundMessage) -> Result<Accepted, IngressError> {
        self.attempts.fetch_add(1, Ordering::SeqCst);
        if self.refuse.load(Ordering::SeqCst) > 0 {
            self.refuse.fetch_sub(1, Ordering::SeqCst);
            return Err(IngressError("disk full".into()));
        }
        self.messages.lock().unwrap().push(message);
        Ok(Accepted::New)
    }

    async fn load_state(&self, _: &AccountKey, _: &str) -> Option<String> {
        None
    }

    async fn save_state(&self, _: &AccountKey, _: &str, _: &str) -> Result<(), IngressError> {
        Ok(())
    }
}

impl MemoryIngress {
    fn texts(&self) -> Vec<String> {
        self.messages.lock().unwrap().iter().map(|m| m.text.clone()).collect()
    }

    async fn wait_for(&self, count: usize) -> Vec<InboundMessage> {
        let got = eventually(WAIT, format_args!("{count} messages arrive"), || {
            Some(self.messages.lock().unwrap().clone()).filter(|got| got.len() >= count)
        })
        .await;
        got.unwrap_or_else(|e| panic!("{e:#}: {:?}", self.texts()))
    }
}

fn channel_with_token(fake: &FakeDiscord, token: &str) -> DiscordChannel {
    let root = json!({"channels": {"discord": {
        "token": token, "gatewayUrl": fake.gateway_url(), "apiRoot": fake.api_root(),
    }}});
    let accounts = accounts_from_value(&root, std::path::Path::new("/")).unwrap();
    DiscordChannel::new(&accounts[0]).unwrap()
}

struct Running {
    channel: Arc<DiscordChannel>,
    ingress: Arc<MemoryIngress>,
    cancel: CancellationToken,
    task: JoinHandle<Result<(), ChannelError>>,
}

impl Running {
    fn start(channel: DiscordChannel) -> Self {
        let channel = Arc::new(channel);
        let ingress = Arc::new(MemoryIngress::default());
        let cancel = CancellationToken::new();
        let task = {
            let (channel, ingress, cancel) = (Arc::clone(&channel), Arc::clone(&ingress), cancel.clone());
            tokio::spawn(async move { channel.run(ingress, cancel).await })
        };
        Self { channel, ingress, cancel, task }
    }

    async fn ready(fake: &FakeDiscord) -> Self {
        let running = Self::start(channel_with_token(fake, fake.token()));
        running.wait_connected().await;
        running
    }

    async fn wait_connected(&self) {
        let mut ready = self.channel.status().ready();
        tokio::time::timeout(WAIT, ready.wait_for(|r| *r)).await.expect("READY in time").unwrap();
    }

    async fn stop(self) -> Result<(), ChannelError> {
        self.cancel.cancel();
        tokio::time::timeout(WAIT, self.task).await.expect("run stops").unwrap()
    }
}

fn alice() -> FakeUser {
    FakeUser::new("400000000000000001", "alice")
}

#[tokio::test]
async fn discord_guild_message_and_dm_are_normalised() {
    let fake = FakeDiscord::start().await.unwrap();
    let run = Running::ready(&fake).await;
    let bot = fake.bot_user().clone();
    let snap = run.channel.status().snapshot();
    assert_eq!((snap.bot_id.as_deref(), snap.bot_username.as_deref()), (Some(bot.id.as_str()), Some("clawbot")));

    // The identify carries GUILD_MESSAGES | DIRECT_MESSAGES | MESSAGE_CONTENT, the token with
    // the `Bot ` prefix, one shard; the connection asked for zlib-stream.
    let ident = &fake.identifies()[0];
    assert_eq!(
        (ident.intents, ident.token.as_str(), ident.shard),
        (512 | 4096 | 32768, "Bot fake-discord-token", Some((0, 1)))
    );
    assert_eq!(fake.connections()[0].compress(), Some("zlib-stream"));

    let guild_id = fake.push_message_create(
        CHANNEL,
        Some(GUILD),
        &alice(),
        &format!("hey <@{}> look", bot.id),
        std::slice::from_ref(&bot),
    );
    fake.push_message_create(DM, None, &alice(), "just us", &[]);
    // A reply to one of the bot's messages, with an image attached.
    let mut reply = fake.message_json(CHANNEL, Some(GUILD), &alice(), "about that", &[]);
    let bots_own = fake.message_json(CHANNEL, Some(GUILD), &bot, "earlier answer", &[]);
    reply["message_reference"] = json!({"message_id": bots_own["id"], "channel_id": CHANNEL, "guild_id": GUILD});
    reply["referenced_message"] = bots_own.clone();
    reply["type"] = json!(19);
    reply["attachments"] = json!([{"id": "500", "filename": "cat.png", "size": 1234, "content_type": "image/png",
                                   "url": "https://cdn.example/cat.png", "proxy_url": "https://media.example/cat.png"}]);
    fake.push_dispatch("MESSAGE_CREATE", reply);
    // The bot's own message is not fed back in.
    fake.push_dispatch("MESSAGE_CREATE", bots_own.clone());
    fake.push_message_create(CHANNEL, Some(GUILD), &FakeUser::bot("400000000000000009", "otherbot"), "beep", &[]);

    // Dispatches are handled in order: "beep" came after the bot's own message, so once it is
    // in, the bot's own message has been seen (and dropped).
    let got = run.ingress.wait_for(4).await;
    assert_eq!(
        run.ingress.texts(),
        vec![format!("hey <@{}> look", bot.id), "just us".into(), "about that".into(), "beep".into()]
    );

    let g = &got[0];
    assert_eq!((g.channel.as_str(), g.account.as_str()), ("discord", "default"));
    assert_eq!((g.message_id.as_str(), g.chat_id.as_str(), g.chat_kind), (guild_id.as_str(), CHANNEL, ChatKind::Group));
    assert_eq!(g.space_id.as_deref(), Some(GUILD));
    assert_eq!(
        (g.sender_id.as_str(), g.sender_username.as_deref(), g.sender_is_bot),
        ("400000000000000001", Some("alice"), false)
    );
    assert_eq!(g.mentions, vec![bot.id.clone()]);
    assert!(g.mentions_bot && g.addresses_bot());
    assert!(g.sent_at_ms > 1_600_000_000_000);

    let d = &got[1];
    assert_eq!((d.chat_id.as_str(), d.chat_kind, d.space_id.as_deref()), (DM, ChatKind::Direct, None));
    assert!(!d.mentions_bot && d.addresses_bot());

    let r = &got[2];
    assert_eq!(r.reply_to.as_deref(), bots_own["id"].as_str());
    assert!(r.reply_to_bot && !r.mentions_bot);
    assert_eq!(r.media.len(), 1);
    assert_eq!((r.media[0].kind.as_str(), r.media[0].reference.as_str()), ("photo", "https://cdn.example/cat.png"));
    assert_eq!((r.media[0].mime_type.as_deref(), r.media[0].size), (Some("image/png"), Some(1234)));

    assert!(got[3].sender_is_bot);
    assert_eq!(run.channel.status().snapshot().inbound_count, 4);
    run.stop().await.unwrap();
    assert!(fake.client_close_codes().contains(&1000), "a stop closes the session with 1000");
}

#[tokio::test]
async fn discord_forced_disconnects_resume_without_reidentify_and_lose_nothing() {
    let fake = FakeDiscord::start().await.unwrap();
    let run = Running::ready(&fake).await;
    let mut expected = Vec::new();
    for (round, how) in ["drop", "op7", "close4000"].into_iter().enumerate() {
        let triggered = match how {
            "drop" => fake.drop_connection(),
            "op7" => fake.send_reconnect(),
            _ => fake.close_with(4000),
        };
        assert!(triggered, "{how}: a connection held the session");
        // Pushed while no connection holds the session: they must come with the Resume.
        for i in 0..2 {
            let text = format!("{how} #{i}");
            fake.push_message_create(CHANNEL, Some(GUILD), &alice(), &text, &[]);
            expected.push(text);
        }
        fake.wait_for("the resume", WAIT, |f| f.resume_count() == round + 1).await.unwrap();
        run.ingress.wait_for(expected.len()).await;
        run.wait_connected().await;
    }
    assert_eq!(run.ingress.texts(), expected, "every event exactly once, in order");
    assert_eq!(fake.identify_count(), 1, "resumes, never a new Identify");
    let paths: Vec<String> = fake.connections().into_iter().map(|c| c.path).collect();
    assert_eq!(paths, vec!["/", "/resume", "/resume", "/resume"], "resumes go to resume_gateway_url");
    let snap = run.channel.status().snapshot();
    assert!(snap.connected);
    assert_eq!(snap.reconnects, 3, "each break is seen as a disconnect: {snap:?}");
    run.stop().await.unwrap();
}

#[tokio::test]
async fn discord_invalid_session_reidentifies_unless_resumable() {
    let fake = FakeDiscord::start().await.unwrap();
    let run = Running::ready(&fake).await;
    assert!(fake.invalidate_session(true));
    fake.wait_for("a resume after op 9 true", WAIT, |f| f.resume_count() == 1).await.unwrap();
    assert_eq!(fake.identify_count(), 1);

    fake.wait_for("the session bound again", WAIT, |f| f.is_session_bound()).await.unwrap();
    assert!(fake.invalidate_session(false));
    // twilight's identify queue spaces Identifies 5 s apart.
    fake.wait_for("a second Identify", Duration::from_secs(15), |f| f.identify_count() == 2).await.unwrap();
    assert_eq!(fake.resume_count(), 1);
    assert!(fake.client_close_codes().contains(&1000), "op 9 false is answered by ending the session");
    fake.push_message_create(CHANNEL, Some(GUILD), &alice(), "after re-identify", &[]);
    run.ingress.wait_for(1).await;
    run.stop().await.unwrap();
}

#[tokio::test]
async fn discord_close_4004_stops_with_unauthorized() {
    let fake = FakeDiscord::start().await.unwrap();
    let run = Running::ready(&fake).await;
    assert!(fake.close_with(4004));
    let result = tokio::time::timeout(WAIT, run.task).await.expect("run returns").unwrap();
    match result {
        Err(ChannelError::Unauthorized(m)) => assert!(m.contains("channels.discord.token"), "{m}"),
        other => panic!("expected Unauthorized, got {other:?}"),
    }
    // `run` has returned, so nothing is left to reconnect.
    assert_eq!(fake.connection_count(), 1, "no reconnect after a fatal close");
    assert!(!run.channel.status().snapshot().connected);
}

#[tokio::test]
async fn discord_wrong_token_is_unauthorized_before_connecting() {
    let fake = FakeDiscord::start().await.unwrap();
    let run = Running::start(channel_with_token(&fake, "not-the-token"));
    let result = tokio::time::timeout(WAIT, run.task).await.expect("run returns").unwrap();
    assert!(
        matches!(result, Err(ChannelError::Unauthorized(ref m)) if m.contains("channels.discord.token")),
        "{result:?}"
    );
    assert_eq!(fake.connection_count(), 0);
}

#[tokio::test]
async fn discord_zombie_connection_is_dropped_and_resumed() {
    let fake = FakeDiscord::builder().heartbeat_interval(Duration::from_millis(300)).start().await.unwrap();
    let run = Running::ready(&fake).await;
    fake.wait_for("heartbeats", WAIT, |f| f.heartbeat_count() >= 2).await.unwrap();
    let received_before = run.channel.status().snapshot().last_received_at;
    assert!(received_before.is_some(), "heartbeat ACKs count as something received");
    assert!(fake.stop_acking_heartbeats());
    fake.push_message_create(CHANNEL, Some(GUILD), &alice(), "before the zombie", &[]);
    fake.wait_for("a resume on a new connection", WAIT, |f| f.resume_count() == 1).await.unwrap();
    assert_eq!((fake.identify_count(), fake.connection_count()), (1, 2));
    assert!(
        !fake.client_close_codes().iter().any(|c| matches!(c, 1000 | 1001)),
        "a zombie is dropped without ending the session: {:?}",
        fake.client_close_codes()
    );
    fake.push_message_create(CHANNEL, Some(GUILD), &alice(), "after", &[]);
    run.ingress.wait_for(2).await;
    assert!(run.channel.status().snapshot().reconnects >= 1);
    run.stop().await.unwrap();
}

#[tokio::test]
async fn discord_failed_ingress_is_retried() {
    let fake = FakeDiscord::start().await.unwrap();
    let run = Running::ready(&fake).await;
    run.ingress.refuse.store(2, Ordering::SeqCst);
    fake.push_message_create(DM, None, &alice(), "keep me", &[]);
    run.ingress.wait_for(1).await;
    assert_eq!(run.ingress.attempts.load(Ordering::SeqCst), 3);
    assert_eq!(run.ingress.texts(), vec!["keep me"]);
    run.stop().await.unwrap();
}

#[tokio::test]
async fn discord_send_text_reply_and_typing() {
    let fake = FakeDiscord::start().await.unwrap();
    let run = Running::ready(&fake).await;
    let mut out = OutboundMessage::text(CHANNEL, None, "hello @everyone");
    out.reply_to = Some("600000000000000001".into());
    let delivered = run.channel.send(&out).await.unwrap();
    let sent = fake.sent_messages();
    assert_eq!(sent.len(), 1);
    assert_eq!(sent[0].message_id.as_deref(), Some(delivered.message_id.as_str()));
    assert_eq!((sent[0].channel_id.as_str(), sent[0].content()), (CHANNEL, Some("hello @everyone")));
    assert_eq!(sent[0].payload["allowed_mentions"], json!({"parse": ["users"], "replied_user": false}));
    assert_eq!(
        sent[0].payload["message_reference"],
        json!({"message_id": "600000000000000001", "fail_if_not_exists": false})
    );
    assert!(!sent[0].multipart);
    assert_eq!(run.channel.status().snapshot().outbound_count, 1);

    // Into a thread: the thread is the channel.
    run.channel.send(&OutboundMessage::text(CHANNEL, Some("300000000000000777".into()), "in thread")).await.unwrap();
    assert_eq!(fake.sent_messages()[1].channel_id, "300000000000000777");

    run.channel.typing(DM, None).await.unwrap();
    assert_eq!(fake.typing_calls(), vec![DM.to_owned()]);

    // The fake echoes our sends as MESSAGE_CREATE by the bot; none reaches the ingress.
    fake.push_message_create(DM, None, &alice(), "sentinel", &[]);
    run.ingress.wait_for(1).await;
    assert_eq!(run.ingress.texts(), vec!["sentinel"]);
    run.stop().await.unwrap();
}

#[tokio::test]
async fn discord_send_refusals_are_permanent_with_discords_reason() {
    let fake = FakeDiscord::start().await.unwrap();
    let channel = channel_with_token(&fake, fake.token());
    let long = "x".repeat(2001);
    match channel.send(&OutboundMessage::text(CHANNEL, None, long)).await {
        Err(SendError::Permanent(m)) => assert!(m.contains("50035"), "{m}"),
        other => panic!("expected Permanent 50035, got {other:?}"),
    }
    assert_eq!(fake.message_calls()[0].status, 400, "the request reached Discord and was refused there");
    fake.unknown_channel("300000000000000404");
    match channel.send(&OutboundMessage::text("300000000000000404", None, "hi")).await {
        Err(SendError::Permanent(m)) => assert!(m.contains("10003"), "{m}"),
        other => panic!("expected Permanent 10003, got {other:?}"),
    }
    fake.forbid_channel("300000000000000403");
    match channel.send(&OutboundMessage::text("300000000000000403", None, "hi")).await {
        Err(SendError::Permanent(m)) => assert!(m.contains("50001"), "{m}"),
        other => panic!("expected Permanent 50001, got {other:?}"),
    }
    assert!(matches!(channel.send(&OutboundMessage::text("general", None, "hi")).await, Err(SendError::Permanent(_))));
    assert!(fake.sent_messages().is_empty());
}

#[tokio::test]
async fn discord_429_is_waited_out_by_the_rate_limiter_then_handed_back() {
    let fake = FakeDiscord::start().await.unwrap();
    let channel = channel_with_token(&fake, fake.token());
    // A per-route 429: twilight waits for the bucket reset and retries by itself.
    fake.rate_limit_next(1, Duration::from_millis(300), false);
    let started = tokio::time::Instant::now();
    channel.send(&OutboundMessage::text(CHANNEL, None, "after the wait")).await.unwrap();
    assert!(started.elapsed() >= Duration::from_millis(250), "waited for the bucket: {:?}", started.elapsed());
    assert_eq!((fake.rate_limited_count(), fake.sent_messages().len()), (1, 1));

    // A global limit that keeps answering 429: a bounded number of tries, then RetryAfter
    // for the outbox.
    fake.rate_limit_next(50, Duration::from_millis(1500), true);
    match channel.send(&OutboundMessage::text(CHANNEL, None, "limited")).await {
        Err(SendError::RetryAfter(wait, _)) => assert!(wait > Duration::ZERO),
        other => panic!("expected RetryAfter, got {other:?}"),
    }
    assert_eq!(fake.rate_limited_count(), 1 + 3, "three requests, not a retry storm");
    assert_eq!(fake.sent_messages().len(), 1);
}

#[tokio::test]
async fn discord_attachment_is_uploaded_as_multipart() {
    let fake = FakeDiscord::start().await.unwrap();
    let channel = channel_with_token(&fake, fake.token());
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("chart.png");
    std::fs::write(&path, b"\x89PNG fake bytes").unwrap();
    let mut out = OutboundMessage::text(DM, None, "the chart");
    out.media = Some(OutboundMedia {
        filename: "chart.png".into(),
        content_type: "image/png".into(),
        source: MediaSource::Path { path },
        size: None,
        force_document: false,
    });
    channel.send(&out).await.unwrap();
    let sent = fake.sent_messages();
    assert_eq!(sent.len(), 1);
    assert!(sent[0].multipart);
    assert_eq!(sent[0].content(), Some("the chart"));
    assert_eq!(sent[0].payload["attachments"], json!([{"id": 0, "filename": "chart.png"}]));
    assert_eq!(sent[0].files.len(), 1);
    assert_eq!((sent[0].files[0].field.as_str(), sent[0].files[0].filename.as_str()), ("files[0]", "chart.png"));
    assert_eq!(sent[0].files[0].data, b"\x89PNG fake bytes");

    let big = dir.path().join("big.bin");
    std::fs::write(&big, vec![0u8; 10 * 1024 * 1024 + 1]).unwrap();
    out.media.as_mut().unwrap().source = MediaSource::Path { path: big };
    assert!(matches!(channel.send(&out).await, Err(SendError::Permanent(_))));
    assert_eq!(fake.message_calls().len(), 1, "an oversized file is refused before any request");
}
