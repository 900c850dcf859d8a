//! `TelegramChannel` against the fake Bot API of clawgate-testkit, with an in-memory ingress.

use std::collections::HashMap;
use std::path::Path;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use async_trait::async_trait;
use clawgate_channels::telegram::{TelegramChannel, WebhookError};
use clawgate_channels::{
    Accepted, AccountKey, Channel, ChannelError, ChatKind, InboundMessage, Ingress, IngressError, MediaSource,
    OutboundMedia, OutboundMessage, SendError, accounts_from_value, chunk_text,
};
use clawgate_testkit::eventually;
use clawgate_testkit::fake_telegram::{self, FakeError, FakeTelegram, FakeUser};
use serde_json::{Value, json};
use tokio_util::sync::CancellationToken;

const WAIT: Duration = Duration::from_secs(10);

/// Records messages in memory; can be told to fail the next deliveries.
#[derive(Default)]
struct TestIngress {
    messages: Mutex<Vec<InboundMessage>>,
    state: Mutex<HashMap<String, String>>,
    /// Every offset saved, with the message ids recorded at that moment.
    saves: Mutex<Vec<(i64, Vec<String>)>>,
    fail_next: AtomicUsize,
    attempts: AtomicUsize,
}

impl TestIngress {
    fn messages(&self) -> Vec<InboundMessage> {
        self.messages.lock().unwrap().clone()
    }

    async fn wait_for(&self, n: usize) -> Vec<InboundMessage> {
        match eventually(WAIT, format_args!("{n} messages arrive"), || Some(self.messages()).filter(|m| m.len() >= n))
            .await
        {
            Ok(m) => m,
            Err(e) => panic!("{e:#}: {:?}", self.messages()),
        }
    }
}

#[async_trait]
impl Ingress for TestIngress {
    async fn deliver(&self, message: InboundMessage) -> Result<Accepted, IngressError> {
        self.attempts.fetch_add(1, Ordering::SeqCst);
        if self.fail_next.fetch_update(Ordering::SeqCst, Ordering::SeqCst, |n| n.checked_sub(1)).is_ok() {
            return Err(IngressError("disk full".into()));
        }
        let mut m = self.messages.lock().unwrap();
        if m.iter().any(|x| x.message_id == message.message_id) {
            return Ok(Accepted::Duplicate);
        }
        m.push(message);
        Ok(Accepted::New)
    }

    async fn load_state(&self, account: &AccountKey, key: &str) -> Option<String> {
        self.state.lock().unwrap().get(&format!("{account}/{key}")).cloned()
    }

    async fn save_state(&self, account: &AccountKey, key: &str, value: &str) -> Result<(), IngressError> {
        let ids = self.messages().into_iter().map(|m| m.message_id).collect();
        self.saves.lock().unwrap().push((value.parse().unwrap(), ids));
        self.state.lock().unwrap().insert(format!("{account}/{key}"), value.to_owned());
        Ok(())
    }
}

fn channel_with(tg: &FakeTelegram, token: &str, extra: Value) -> TelegramChannel {
    let mut section = json!({"botToken": token, "apiRoot": tg.api_root(), "pollTimeoutSeconds": 1});
    for (k, v) in extra.as_object().unwrap() {
        section[k] = v.clone();
    }
    let cfg = accounts_from_value(&json!({"channels": {"telegram": section}}), Path::new("/")).unwrap().remove(0);
    TelegramChannel::new(&cfg).unwrap()
}

fn channel(tg: &FakeTelegram) -> Arc<TelegramChannel> {
    Arc::new(channel_with(tg, tg.token(), json!({})))
}

/// Start `run` in a task; cancel (and join) with the returned token and handle.
fn spawn_run(
    ch: &Arc<TelegramChannel>,
    ingress: &Arc<TestIngress>,
) -> (CancellationToken, tokio::task::JoinHandle<Result<(), ChannelError>>) {
    let cancel = CancellationToken::new();
    let (ch, ing, c) = (Arc::clone(ch), Arc::clone(ingress) as Arc<dyn Ingress>, cancel.clone());
    (cancel, tokio::spawn(async move { ch.run(ing, c).await }))
}

async fn stop(cancel: CancellationToken, task: tokio::task::JoinHandle<Result<(), ChannelError>>) {
    cancel.cancel();
    let r = tokio::time::timeout(WAIT, task).await.expect("run stops when cancelled").unwrap();
    assert_eq!(r, Ok(()));
}

#[tokio::test]
async fn dm_round_trip_is_normalised_and_the_reply_quotes_it() {
    let tg = FakeTelegram::start().await.unwrap();
    let ch = channel(&tg);
    let ingress = Arc::new(TestIngress::default());
    let (cancel, task) = spawn_run(&ch, &ingress);
    tg.push_private_message(42, "alice", "hello there");
    let m = ingress.wait_for(1).await.remove(0);
    assert_eq!(m.channel, "telegram");
    assert_eq!(m.account, "default");
    assert_eq!(m.message_id, "42:1");
    assert_eq!(m.chat_id, "42");
    assert_eq!(m.chat_kind, ChatKind::Direct);
    assert_eq!(m.sender_id, "42");
    assert_eq!(m.sender_username.as_deref(), Some("alice"));
    assert_eq!(m.text, "hello there");
    assert_eq!(m.thread_id, None);
    assert!(!m.sender_is_bot && !m.mentions_bot && m.addresses_bot());
    assert!(m.sent_at_ms > 1_600_000_000_000 && m.sent_at_ms % 1000 == 0);

    let snap = ch.status().snapshot();
    assert!(snap.connected && snap.ready);
    assert_eq!(snap.bot_id.as_deref(), Some(fake_telegram::DEFAULT_BOT_ID.to_string().as_str()));
    assert_eq!(snap.bot_username.as_deref(), Some(fake_telegram::DEFAULT_BOT_USERNAME));
    assert_eq!(snap.inbound_count, 1);

    let mut reply = OutboundMessage::text(&m.chat_id, m.thread_id.clone(), "hi alice");
    reply.reply_to = Some(m.message_id.clone());
    reply.silent = true;
    let delivered = ch.send(&reply).await.unwrap();
    assert_eq!(delivered.message_id, "42:2");
    let call = tg.calls("sendMessage").pop().unwrap();
    assert_eq!(call.params["chat_id"], 42);
    assert_eq!(call.params["text"], "hi alice");
    assert_eq!(call.params["reply_parameters"], json!({"message_id": 1, "allow_sending_without_reply": true}));
    assert_eq!(call.params["disable_notification"], true);
    assert!(call.params.get("message_thread_id").is_none());
    assert_eq!(ch.status().snapshot().outbound_count, 1);
    // getMe first, then deleteWebhook, then polling with the allowed updates.
    let methods: Vec<String> = tg.sent().iter().map(|c| c.method.clone()).take(3).collect();
    assert_eq!(methods, ["getMe", "deleteWebhook", "getUpdates"]);
    assert_eq!(tg.calls("getUpdates")[0].params["allowed_updates"], json!(["message", "channel_post"]));
    stop(cancel, task).await;
    assert!(!ch.status().snapshot().connected);
}

#[tokio::test]
async fn offset_is_saved_only_after_delivery_and_a_failed_delivery_is_fetched_again() {
    let tg = FakeTelegram::start().await.unwrap();
    let ch = channel(&tg);
    let ingress = Arc::new(TestIngress::default());
    ingress.fail_next.store(1, Ordering::SeqCst);
    let first = tg.push_private_message(1, "a", "one");
    let second = tg.push_private_message(1, "a", "two");
    let (cancel, task) = spawn_run(&ch, &ingress);
    let got = ingress.wait_for(2).await;
    assert_eq!(got.iter().map(|m| m.text.as_str()).collect::<Vec<_>>(), ["one", "two"], "nothing lost, order kept");
    assert_eq!(ingress.attempts.load(Ordering::SeqCst), 3, "the refused update was offered once more");
    // Every saved offset covers only updates already recorded.
    let saves = ingress.saves.lock().unwrap().clone();
    assert!(!saves.is_empty());
    for (offset, recorded) in &saves {
        if *offset > first {
            assert!(recorded.contains(&"1:1".to_owned()), "offset {offset} saved before 1:1 was recorded");
        }
        if *offset > second {
            assert!(recorded.contains(&"1:2".to_owned()), "offset {offset} saved before 1:2 was recorded");
        }
    }
    assert_eq!(saves.last().unwrap().0, second + 1);
    // The refetch asked Telegram again without confirming the failed update.
    let polls = tg.calls("getUpdates");
    assert!(polls.iter().take(2).all(|c| c.param_i64("offset").is_none_or(|o| o <= first)));
    tg.wait_for_sent(|c| c.is("getUpdates") && c.param_i64("offset") == Some(second + 1), WAIT).await.unwrap();
    assert_eq!(tg.pending_updates(), 0, "the next poll confirmed both");
    stop(cancel, task).await;

    // A restart resumes from the saved offset.
    let restarted = Instant::now();
    let ch2 = channel(&tg);
    let (cancel, task) = spawn_run(&ch2, &ingress);
    let poll = tg.wait_for_sent(|c| c.is("getUpdates") && c.at >= restarted, WAIT).await.unwrap();
    assert_eq!(poll.param_i64("offset"), Some(second + 1));
    stop(cancel, task).await;
}

#[tokio::test]
async fn exactly_one_get_updates_is_in_flight() {
    let tg = FakeTelegram::start().await.unwrap();
    let ch = channel(&tg);
    let ingress = Arc::new(TestIngress::default());
    let (cancel, task) = spawn_run(&ch, &ingress);
    // One message per poll: each is pushed once the previous one has come through.
    for i in 0..5 {
        tg.push_private_message(10 + i, "u", "ping");
        ingress.wait_for(i as usize + 1).await;
    }
    // A second run of the same channel is refused instead of polling beside the first.
    let second = ch.run(Arc::clone(&ingress) as Arc<dyn Ingress>, CancellationToken::new()).await;
    assert!(matches!(second, Err(ChannelError::Fatal(_))), "{second:?}");
    // The first run goes on polling, still alone: two more polls answered after the refusal.
    let before = tg.calls("getUpdates").len();
    eventually(WAIT, "two more polls", || (tg.calls("getUpdates").len() >= before + 2).then_some(())).await.unwrap();
    assert_eq!(tg.max_concurrent_get_updates(), 1);
    assert!(tg.calls("getUpdates").iter().all(|c| c.status == 200));
    stop(cancel, task).await;
}

#[tokio::test]
async fn conflicts_back_off_without_a_storm_and_polling_recovers() {
    let tg = FakeTelegram::start().await.unwrap();
    tg.fail_next("getUpdates", 20, FakeError::conflict());
    let ch = channel(&tg);
    let ingress = Arc::new(TestIngress::default());
    let (cancel, task) = spawn_run(&ch, &ingress);
    // The receive loop's backoff (0.5 s doubling, equal jitter) waits at least half of
    // 0.5 s · 2^n after failure n: the gaps between tries grow instead of a storm.
    let polls = eventually(WAIT, "four polls", || Some(tg.calls("getUpdates")).filter(|p| p.len() >= 4)).await.unwrap();
    for (n, pair) in polls.windows(2).take(3).enumerate() {
        let gap = pair[1].at.duration_since(pair[0].at);
        let floor = Duration::from_millis(250) * (1 << n);
        assert!(gap >= floor, "try {} came {gap:?} after the previous one, before the backoff floor {floor:?}", n + 2);
    }
    let snap = ch.status().snapshot();
    assert!(!snap.connected);
    assert!(snap.last_error.as_deref().unwrap_or("").contains("Conflict"), "{snap:?}");
    assert_eq!(snap.reconnects, 1, "one disconnect, not one per failed try");
    stop(cancel, task).await;
}

#[tokio::test]
async fn rate_limit_waits_retry_after_then_delivers() {
    let tg = FakeTelegram::start().await.unwrap();
    tg.fail_next("getUpdates", 1, FakeError::RetryAfter(2));
    let ch = channel(&tg);
    let ingress = Arc::new(TestIngress::default());
    tg.push_private_message(5, "e", "after the limit");
    let (cancel, task) = spawn_run(&ch, &ingress);
    ingress.wait_for(1).await;
    let polls = tg.calls("getUpdates");
    assert_eq!(polls[0].status, 429);
    let gap = polls[1].at.duration_since(polls[0].at);
    assert!(gap >= Duration::from_millis(1900), "retried after {gap:?}, retry_after was 2 s");
    assert!(ch.status().snapshot().connected);
    stop(cancel, task).await;
}

#[tokio::test]
async fn forum_topic_thread_is_kept_end_to_end() {
    let tg = FakeTelegram::start().await.unwrap();
    let ch = channel(&tg);
    let ingress = Arc::new(TestIngress::default());
    let (cancel, task) = spawn_run(&ch, &ingress);
    let text = "hey @Clawgate_Test_Bot what's up";
    let mention = fake_telegram::entity(text, "@Clawgate_Test_Bot", "mention");
    let (_, mid) = tg.push_group_message(-1001234, &FakeUser::new(77, "carol"), text, Some(9), vec![mention]);
    let m = ingress.wait_for(1).await.remove(0);
    assert_eq!(m.chat_kind, ChatKind::Group);
    assert_eq!(m.chat_title.as_deref(), Some("Test Group"));
    assert_eq!(m.thread_id.as_deref(), Some("9"));
    assert!(m.mentions_bot, "mention matched case-insensitively");
    assert_eq!(m.message_id, format!("-1001234:{mid}"));

    let mut reply = OutboundMessage::text(&m.chat_id, m.thread_id.clone(), "answer in the topic");
    reply.reply_to = Some(m.message_id.clone());
    ch.send(&reply).await.unwrap();
    let call = tg.calls("sendMessage").pop().unwrap();
    assert_eq!(call.params["message_thread_id"], 9);
    assert_eq!(call.params["chat_id"], -1001234);
    assert_eq!(call.result().unwrap()["is_topic_message"], true);
    ch.typing(&m.chat_id, m.thread_id.as_deref()).await.unwrap();
    assert_eq!(tg.calls("sendChatAction")[0].params["message_thread_id"], 9);
    stop(cancel, task).await;
}

#[tokio::test]
async fn a_long_reply_chunked_with_chunk_text_fits_the_4096_limit() {
    let tg = FakeTelegram::start().await.unwrap();
    let ch = channel(&tg);
    let caps = ch.capabilities();
    // Emoji are two UTF-16 units each: a char count would overshoot Telegram's limit.
    let long: String = (0..1500).map(|i| format!("word{i} 😀😀 ")).collect();
    let unchunked = ch.send(&OutboundMessage::text("42", None, long.clone())).await;
    match unchunked {
        Err(SendError::Permanent(d)) => assert!(d.contains("message is too long"), "{d}"),
        other => panic!("expected a permanent error, got {other:?}"),
    }
    let chunks = chunk_text(&long, caps.max_text, caps.measure);
    assert!(chunks.len() >= 3);
    for c in &chunks {
        ch.send(&OutboundMessage::text("42", None, c.clone())).await.unwrap();
    }
    let sent: Vec<_> = tg.calls("sendMessage").into_iter().filter(|c| c.status == 200).collect();
    assert_eq!(sent.len(), chunks.len());
    assert!(sent.iter().all(|c| c.params["text"].as_str().unwrap().encode_utf16().count() <= 4096));
}

fn media_message(path: &Path, content_type: &str, force_document: bool) -> OutboundMessage {
    OutboundMessage {
        media: Some(OutboundMedia {
            filename: path.file_name().unwrap().to_string_lossy().into_owned(),
            content_type: content_type.into(),
            source: MediaSource::Path { path: path.to_owned() },
            size: None,
            force_document,
        }),
        ..OutboundMessage::text("42", None, "the caption")
    }
}

#[tokio::test]
async fn photos_up_to_10_mib_go_as_photos_and_bigger_ones_as_documents() {
    let tg = FakeTelegram::start().await.unwrap();
    let ch = channel(&tg);
    let dir = tempfile::tempdir().unwrap();
    let small = dir.path().join("small.png");
    std::fs::write(&small, vec![7u8; 2048]).unwrap();
    let big = dir.path().join("big.png");
    std::fs::write(&big, vec![7u8; 10 * 1024 * 1024 + 1]).unwrap();
    let pdf = dir.path().join("doc.pdf");
    std::fs::write(&pdf, b"%PDF-1.4").unwrap();

    let d = ch.send(&media_message(&small, "image/png", false)).await.unwrap();
    assert!(d.message_id.starts_with("42:"));
    let photo = tg.calls("sendPhoto").pop().expect("small image → sendPhoto");
    assert_eq!(photo.files.len(), 1);
    assert_eq!((photo.files[0].field.as_str(), photo.files[0].filename.as_deref()), ("photo", Some("small.png")));
    assert_eq!(photo.files[0].len, 2048);
    assert_eq!(photo.files[0].content_type.as_deref(), Some("image/png"));
    assert_eq!(photo.param_str("caption").as_deref(), Some("the caption"));
    assert_eq!(photo.param_i64("chat_id"), Some(42));

    ch.send(&media_message(&big, "image/png", false)).await.unwrap();
    ch.send(&media_message(&pdf, "application/pdf", false)).await.unwrap();
    ch.send(&media_message(&small, "image/png", true)).await.unwrap();
    let docs = tg.calls("sendDocument");
    assert_eq!(docs.len(), 3);
    assert_eq!(docs[0].files[0].field, "document");
    assert_eq!(docs[0].files[0].len, 10 * 1024 * 1024 + 1);
    assert!(docs.iter().all(|c| c.status == 200));
    assert_eq!(tg.calls("sendPhoto").len(), 1);

    // A URL is passed for Telegram to fetch.
    let url_msg = OutboundMessage {
        media: Some(OutboundMedia {
            filename: "x.jpg".into(),
            content_type: "image/jpeg".into(),
            source: MediaSource::Url { url: "https://example.invalid/x.jpg".into() },
            size: Some(1000),
            force_document: false,
        }),
        ..OutboundMessage::text("42", None, "")
    };
    ch.send(&url_msg).await.unwrap();
    assert_eq!(tg.calls("sendPhoto").pop().unwrap().params["photo"], "https://example.invalid/x.jpg");
}

#[tokio::test]
async fn send_errors_map_to_retry_after_transient_and_permanent() {
    let tg = FakeTelegram::start().await.unwrap();
    let ch = channel(&tg);
    let msg = OutboundMessage::text("42", None, "x");
    tg.fail_next("sendMessage", 1, FakeError::RetryAfter(7));
    match ch.send(&msg).await {
        Err(SendError::RetryAfter(d, _)) => assert_eq!(d, Duration::from_secs(7)),
        other => panic!("{other:?}"),
    }
    tg.fail_next("sendMessage", 1, FakeError::server_error());
    assert!(matches!(ch.send(&msg).await, Err(SendError::Transient(_))));
    tg.forbid_chat(42, FakeError::blocked());
    match ch.send(&msg).await {
        Err(SendError::Permanent(d)) => assert!(d.contains("bot was blocked by the user"), "{d}"),
        other => panic!("{other:?}"),
    }
    tg.forbid_chat(42, FakeError::chat_not_found());
    assert!(matches!(ch.send(&msg).await, Err(SendError::Permanent(d)) if d.contains("chat not found")));
    tg.allow_chat(42);
    ch.send(&msg).await.unwrap();
    assert_eq!(ch.status().snapshot().outbound_count, 1);
}

#[tokio::test]
async fn a_wrong_token_stops_run_with_a_hint_and_never_leaks_the_token() {
    let tg = FakeTelegram::start().await.unwrap();
    let token = "123456:WRONGwrongWRONGwrong";
    let ch = Arc::new(channel_with(&tg, token, json!({})));
    let ingress = Arc::new(TestIngress::default());
    let r = ch.run(Arc::clone(&ingress) as Arc<dyn Ingress>, CancellationToken::new()).await;
    match &r {
        Err(ChannelError::Unauthorized(msg)) => assert!(msg.contains("botToken"), "{msg}"),
        other => panic!("{other:?}"),
    }
    let snap = ch.status().snapshot();
    assert!(!snap.connected);
    assert!(!format!("{snap:?}{r:?}{ch:?}").contains("WRONGwrong"));

    // A network failure's text is token-free too.
    let addr = tg.addr();
    drop(tg);
    let cfg = accounts_from_value(
        &json!({"channels": {"telegram": {"botToken": token, "apiRoot": format!("http://{addr}")}}}),
        Path::new("/"),
    )
    .unwrap()
    .remove(0);
    let ch = TelegramChannel::new(&cfg).unwrap();
    let e = ch.send(&OutboundMessage::text("1", None, "x")).await.unwrap_err();
    assert!(matches!(e, SendError::Transient(_)), "{e:?}");
    assert!(!e.to_string().contains("WRONGwrong"), "{e}");
}

#[tokio::test]
async fn typing_failure_is_returned_and_harmless() {
    let tg = FakeTelegram::start().await.unwrap();
    let ch = channel(&tg);
    let ingress = Arc::new(TestIngress::default());
    let (cancel, task) = spawn_run(&ch, &ingress);
    tg.wait_for_sent(|c| c.is("getUpdates"), WAIT).await.unwrap();
    tg.fail_next("sendChatAction", 1, FakeError::server_error());
    assert!(matches!(ch.typing("42", None).await, Err(SendError::Transient(_))));
    assert!(ch.status().snapshot().connected, "a typing failure does not touch connectivity");
    ch.typing("42", None).await.unwrap();
    tg.push_private_message(42, "a", "still there?");
    ingress.wait_for(1).await;
    ch.send(&OutboundMessage::text("42", None, "yes")).await.unwrap();
    stop(cancel, task).await;
}

/// The gateway side of a webhook: one route calling `handle_webhook`, errors mapped to
/// statuses the way the gateway does.
async fn serve_webhook(ch: Arc<TelegramChannel>, ingress: Arc<TestIngress>) -> String {
    use axum::http::{HeaderMap, StatusCode};
    let path = ch.webhook_path().unwrap();
    let app = axum::Router::new().route(
        &path,
        axum::routing::post(move |headers: HeaderMap, body: axum::body::Bytes| {
            let (ch, ingress) = (Arc::clone(&ch), Arc::clone(&ingress));
            async move {
                let secret = headers.get(fake_telegram::SECRET_HEADER).and_then(|v| v.to_str().ok());
                match ch.handle_webhook(secret, &body, ingress.as_ref()).await {
                    Ok(()) => StatusCode::OK,
                    Err(WebhookError::Unauthorized) => StatusCode::UNAUTHORIZED,
                    Err(WebhookError::BadRequest(_)) => StatusCode::BAD_REQUEST,
                    Err(WebhookError::Unavailable(_)) => StatusCode::SERVICE_UNAVAILABLE,
                    Err(WebhookError::NotFound) => StatusCode::NOT_FOUND,
                    Err(WebhookError::Forbidden) => StatusCode::FORBIDDEN,
                }
            }
        }),
    );
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("http://{}{path}", listener.local_addr().unwrap());
    tokio::spawn(async move { axum::serve(listener, app).await });
    url
}

#[tokio::test]
async fn webhook_mode_registers_checks_the_secret_and_asks_for_redelivery() {
    let tg = FakeTelegram::start().await.unwrap();
    let ingress = Arc::new(TestIngress::default());
    // The URL is only known once the server is up; build a throwaway channel for the path.
    let probe = Arc::new(channel_with(
        &tg,
        tg.token(),
        json!({"webhookUrl": "https://placeholder", "webhookSecret": "s3cr3t-Token_1"}),
    ));
    assert_eq!(probe.webhook_path().as_deref(), Some("/telegram-webhook/default"));
    let listener_url = serve_webhook(Arc::clone(&probe), Arc::clone(&ingress)).await;
    let ch =
        Arc::new(channel_with(&tg, tg.token(), json!({"webhookUrl": listener_url, "webhookSecret": "s3cr3t-Token_1"})));
    let (cancel, task) = spawn_run(&ch, &ingress);
    tg.wait_for_sent(|c| c.is("setWebhook") && c.status == 200, WAIT).await.unwrap();
    let hook = tg.webhook().unwrap();
    assert_eq!(hook.url, listener_url);
    assert_eq!(hook.secret_token.as_deref(), Some("s3cr3t-Token_1"));
    assert!(tg.calls("getUpdates").is_empty(), "no polling in webhook mode");
    eventually(WAIT, "the channel is ready", || ch.status().is_ready().then_some(())).await.unwrap();

    let update = json!({"update_id": 900, "message": {"message_id": 3, "date": 1_700_000_000,
        "chat": {"id": 8, "type": "private", "first_name": "Dan"}, "from": {"id": 8, "is_bot": false, "first_name": "Dan"}, "text": "via hook"}});
    // The probe channel (same config, same secret) serves the route; first the ingress fails.
    ingress.fail_next.store(1, Ordering::SeqCst);
    assert_eq!(tg.post_webhook(update.clone()).await.unwrap(), 503, "not recorded → Telegram must redeliver");
    assert_eq!(tg.post_webhook(update.clone()).await.unwrap(), 200);
    let m = ingress.wait_for(1).await.remove(0);
    assert_eq!((m.message_id.as_str(), m.text.as_str()), ("8:3", "via hook"));

    let body = serde_json::to_vec(&update).unwrap();
    assert_eq!(probe.handle_webhook(Some("wrong"), &body, ingress.as_ref()).await, Err(WebhookError::Unauthorized));
    assert_eq!(probe.handle_webhook(None, &body, ingress.as_ref()).await, Err(WebhookError::Unauthorized));
    assert_eq!(
        probe.handle_webhook(Some("s3cr3t-Token_"), &body, ingress.as_ref()).await,
        Err(WebhookError::Unauthorized)
    );
    assert!(matches!(
        probe.handle_webhook(Some("s3cr3t-Token_1"), b"{not json", ingress.as_ref()).await,
        Err(WebhookError::BadRequest(_))
    ));
    // A polling channel takes no webhooks at all.
    let polling = channel(&tg);
    assert_eq!(polling.webhook_path(), None);
    assert_eq!(
        polling.handle_webhook(Some("s3cr3t-Token_1"), &body, ingress.as_ref()).await,
        Err(WebhookError::Unauthorized)
    );
    stop(cancel, task).await;
}
