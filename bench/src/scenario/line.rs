//! `line`: inbound LINE message → reply through a gateway's LINE channel, end to end.
//!
//! This tool plays the LINE Platform (contracts/line.md) the way `telegram` plays Telegram: a
//! zero-delay Messaging API on 127.0.0.1 with only the calls the channel makes (`GET
//! /v2/bot/info`, `POST /v2/bot/message/reply`, `/v2/bot/message/push`,
//! `/v2/bot/chat/loading/start`), the gateway started with a generated config
//! (`channels.line.apiRoot` pointing here, `dmPolicy: "open"`, inbound rate limits off; no
//! `gateway.publicUrl`, which only images need) and the zero-delay fake model. Chat `i` is a
//! one-on-one chat with user `U<32 hex digits>`, one session each.
//!
//! Inbound is a webhook POST to the gateway's `/line/webhook`, one `message` event per request
//! with a fresh reply token, signed `x-line-signature` (Base64 HMAC-SHA256 of the raw body with
//! the channel secret), over kept-alive connections; an answer other than 2xx fails the run.
//! Ready = `/v2/bot/info` was called and a signed verify request (`events: []`) got 200, as the
//! console's "Verify" button does it.
//!
//! A reply token is good once and for a minute (a used, unknown or stale one gets LINE's `400
//! Invalid reply token`); a push is idempotent by `X-Line-Retry-Key` (a repeated key gets 409 and
//! `x-line-accepted-request-id`). Both deliver, so both end a message's latency (webhook POST
//! written → head of the accepted reply or push); pushes are counted as fallbacks, refused
//! replies and repeated retry keys too.

use std::collections::{HashMap, HashSet};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::{Duration, Instant};

use anyhow::{Result, bail};
use base64::Engine as _;
use base64::engine::general_purpose::STANDARD as B64;
use clap::Args;
use hmac::{Hmac, Mac};
use serde_json::{Value, json};
use sha2::Sha256;
use tokio::net::TcpListener;
use tokio::sync::mpsc;

use super::platform::{
    self, Answer, Api, Inbound, PlatformArgs, Reply, Run, WebhookClient, bearer, report_memory, report_replies,
    unix_now_ms,
};
use crate::http::Head;
use crate::report::Report;

const ACCESS_TOKEN: &str = "BenchLineChannelAccessToken0123456789abcdefBench=";
const CHANNEL_SECRET: &str = "0b0b0b0bbenchlinechannelsecret00";
/// The bot's user id (`destination` of every webhook).
const BOT_USER: &str = "Ub0b0b0b0b0b0b0b0b0b0b0b0b0b0b0b0";
const WEBHOOK_PATH: &str = "/line/webhook";
/// LINE takes a reply token for one minute.
const REPLY_TOKEN_TTL: Duration = Duration::from_secs(60);
/// User id of chat 0 (as a number; ids are `U` + 32 hex digits).
const USER_BASE: u128 = 0x0b00_0000_0000_0000_0000_0000_0000_0000;

#[derive(Args, Debug)]
pub struct LineArgs {
    #[command(flatten)]
    pub run: PlatformArgs,
}

fn user(chat: usize) -> String {
    format!("U{:032x}", USER_BASE + chat as u128)
}

fn chat_of(user: &str) -> Option<usize> {
    let n = u128::from_str_radix(user.strip_prefix('U')?, 16).ok()?;
    usize::try_from(n.checked_sub(USER_BASE)?).ok()
}

/// Base64(HMAC-SHA256(channel secret, body)), as LINE signs a webhook.
pub fn sign(secret: &str, body: &[u8]) -> String {
    let mut mac = <Hmac<Sha256> as Mac>::new_from_slice(secret.as_bytes()).expect("HMAC takes any key length");
    mac.update(body);
    B64.encode(mac.finalize().into_bytes())
}

/// A reply token handed out with a webhook: whose chat, when, and whether LINE took it.
struct Token {
    chat: usize,
    issued: Instant,
    used: bool,
}

struct Line {
    replies: mpsc::Sender<Reply>,
    webhook: Arc<WebhookClient>,
    tokens: Mutex<HashMap<String, Token>>,
    retry_keys: Mutex<HashSet<String>>,
    next_event: AtomicU64,
    next_message: AtomicU64,
    info_calls: AtomicU64,
    reply_calls: AtomicU64,
    replies_refused: AtomicU64,
    pushes: AtomicU64,
    retry_keys_repeated: AtomicU64,
    pushes_without_key: AtomicU64,
    loading_calls: AtomicU64,
    refused_calls: AtomicU64,
    other_calls: AtomicU64,
}

fn message_error(status: u16, message: &str) -> Answer {
    Answer::json(status, json!({"message": message}).to_string())
}

impl Line {
    fn new(replies: mpsc::Sender<Reply>, webhook: Arc<WebhookClient>) -> Self {
        Self {
            replies,
            webhook,
            tokens: Mutex::new(HashMap::new()),
            retry_keys: Mutex::new(HashSet::new()),
            next_event: AtomicU64::new(1),
            next_message: AtomicU64::new(1),
            info_calls: AtomicU64::new(0),
            reply_calls: AtomicU64::new(0),
            replies_refused: AtomicU64::new(0),
            pushes: AtomicU64::new(0),
            retry_keys_repeated: AtomicU64::new(0),
            pushes_without_key: AtomicU64::new(0),
            loading_calls: AtomicU64::new(0),
            refused_calls: AtomicU64::new(0),
            other_calls: AtomicU64::new(0),
        }
    }

    /// `sentMessages` for `n` message objects.
    fn sent(&self, n: usize) -> String {
        let sent: Vec<Value> = (0..n.max(1))
            .map(|_| {
                let id = self.next_message.fetch_add(1, Ordering::Relaxed);
                json!({"id": format!("{}", 500_000_000_000_000_000u64 + id), "quoteToken": format!("qt{id:030}")})
            })
            .collect();
        json!({"sentMessages": sent}).to_string()
    }

    /// 1 to 5 message objects, each a text of 1..=5 000 characters (or an image).
    fn messages_ok(body: &Value) -> Option<usize> {
        let messages = body["messages"].as_array()?;
        let fine = |m: &Value| match m["type"].as_str() {
            Some("text") => m["text"].as_str().is_some_and(|t| !t.is_empty() && t.encode_utf16().count() <= 5000),
            Some("image") => m["originalContentUrl"].is_string() && m["previewImageUrl"].is_string(),
            _ => false,
        };
        ((1..=5).contains(&messages.len()) && messages.iter().all(fine)).then_some(messages.len())
    }

    async fn reply(&self, arrived: Instant, body: &Value) -> Answer {
        self.reply_calls.fetch_add(1, Ordering::Relaxed);
        let Some(n) = Self::messages_ok(body) else { return message_error(400, "The request body has 1 error(s)") };
        let token = body["replyToken"].as_str().unwrap_or_default();
        let chat = {
            let mut tokens = self.tokens.lock().unwrap_or_else(PoisonError::into_inner);
            match tokens.get_mut(token) {
                Some(t) if !t.used && t.issued.elapsed() < REPLY_TOKEN_TTL => {
                    t.used = true;
                    Some(t.chat)
                }
                _ => None,
            }
        };
        let Some(chat) = chat else {
            self.replies_refused.fetch_add(1, Ordering::Relaxed);
            return message_error(400, "Invalid reply token");
        };
        // Bounded: the driver reads continuously; a full channel slows the gateway, visibly.
        let _ = self.replies.send(Reply { chat: Some(chat), at: arrived }).await;
        Answer::json(200, self.sent(n))
    }

    async fn push(&self, head: &Head, arrived: Instant, body: &Value) -> Answer {
        let Some(n) = Self::messages_ok(body) else { return message_error(400, "The request body has 1 error(s)") };
        match head.header("x-line-retry-key") {
            Some(key) => {
                if !self.retry_keys.lock().unwrap_or_else(PoisonError::into_inner).insert(key.to_owned()) {
                    self.retry_keys_repeated.fetch_add(1, Ordering::Relaxed);
                    let mut a = Answer::json(409, json!({"message": "The retry key is already accepted"}).to_string());
                    a.headers.push(("x-line-accepted-request-id", format!("bench-{key}")));
                    return a;
                }
            }
            None => {
                self.pushes_without_key.fetch_add(1, Ordering::Relaxed);
            }
        }
        let Some(to) = body["to"].as_str() else { return message_error(400, "The request body has 1 error(s)") };
        self.pushes.fetch_add(1, Ordering::Relaxed);
        let _ = self.replies.send(Reply { chat: chat_of(to), at: arrived }).await;
        Answer::json(200, self.sent(n))
    }
}

impl Api for Line {
    async fn respond(&self, head: &Head, arrived: Instant, body: Vec<u8>) -> Answer {
        if bearer(head) != Some(ACCESS_TOKEN) {
            self.refused_calls.fetch_add(1, Ordering::Relaxed);
            return message_error(
                401,
                "Authentication failed. Confirm that the access token in the authorization header is valid.",
            );
        }
        let path = head.second.split('?').next().unwrap_or_default();
        match (head.first.as_str(), path) {
            ("GET", "/v2/bot/info") => {
                self.info_calls.fetch_add(1, Ordering::Relaxed);
                Answer::json(
                    200,
                    json!({"userId": BOT_USER, "basicId": "@bench", "displayName": "Bench", "chatMode": "bot",
                           "markAsReadMode": "manual"})
                    .to_string(),
                )
            }
            ("POST", "/v2/bot/message/reply" | "/v2/bot/message/push" | "/v2/bot/chat/loading/start") => {
                let Ok(v) = serde_json::from_slice::<Value>(&body) else {
                    return message_error(400, "The request body could not be parsed as JSON");
                };
                match path {
                    "/v2/bot/message/reply" => self.reply(arrived, &v).await,
                    "/v2/bot/message/push" => self.push(head, arrived, &v).await,
                    _ => {
                        self.loading_calls.fetch_add(1, Ordering::Relaxed);
                        Answer::json(202, "{}")
                    }
                }
            }
            _ => {
                self.other_calls.fetch_add(1, Ordering::Relaxed);
                message_error(404, "Not found")
            }
        }
    }
}

impl Inbound for Line {
    async fn send(&self, chat: usize, n: u64, seq: u64) -> Result<Instant> {
        let id = self.next_event.fetch_add(1, Ordering::Relaxed);
        let token = format!("{id:016x}b0b0b0b0b0b0b0b0");
        self.tokens
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .insert(token.clone(), Token { chat, issued: Instant::now(), used: false });
        let event = json!({
            "type": "message", "mode": "active", "timestamp": unix_now_ms(),
            "source": {"type": "user", "userId": user(chat)},
            // A ULID: 26 Crockford base-32 characters.
            "webhookEventId": format!("01B0BENCH{id:017}"),
            "deliveryContext": {"isRedelivery": false},
            "replyToken": token,
            "message": {"id": format!("{}", 600_000_000_000_000_000u64 + id), "type": "text",
                        "quoteToken": format!("q{id:031}"),
                        "text": format!("bench message {seq} to chat {} ({n})", user(chat))},
        });
        let body = json!({"destination": BOT_USER, "events": [event]}).to_string().into_bytes();
        let headers =
            [("content-type", "application/json".to_owned()), ("x-line-signature", sign(CHANNEL_SECRET, &body))];
        self.webhook.post(WEBHOOK_PATH, &headers, &body).await
    }

    fn failure(&self) -> Option<String> {
        self.webhook.failure()
    }
}

fn gateway_config(api_root: &str, model_url: &str) -> String {
    let mut config = platform::model_config(model_url);
    config["channels"] = json!({"line": {
        "channelAccessToken": ACCESS_TOKEN, "channelSecret": CHANNEL_SECRET, "apiRoot": api_root, "dmPolicy": "open",
        // 0 disables the inbound limits: a load test is one user flooding per chat.
        "rateLimit": {"perSenderPerMinute": 0, "perChatPerMinute": 0},
    }});
    config.to_string()
}

pub async fn run(args: LineArgs) -> Result<()> {
    let LineArgs { run: args } = args;
    let listener = TcpListener::bind("127.0.0.1:0").await?;
    let api_root = format!("http://{}", listener.local_addr()?);
    let port = platform::free_port()?;
    let webhook = WebhookClient::new(([127, 0, 0, 1], port).into());
    let (reply_tx, mut reply_rx) = mpsc::channel(65_536);
    let line = Arc::new(Line::new(reply_tx, webhook.clone()));
    let server = tokio::spawn(platform::serve(listener, line.clone()));

    let mut run = Run::new("line")?;
    let model_url = run.start_model(args.model_chunks).await?;
    let pid = run.start_gateway(&args, port, &gateway_config(&api_root, &model_url))?;
    eprintln!(
        "line: gateway {} (pid {pid}), Messaging API {api_root}, model {model_url}, state {}",
        args.gateway_bin.display(),
        run.state_path().display()
    );
    // Ready = the token checked and the webhook verified, as the console's "Verify" does it.
    run.wait_ready("a verified webhook", async || {
        if line.info_calls.load(Ordering::Relaxed) == 0 {
            return false;
        }
        let body = json!({"destination": BOT_USER, "events": []}).to_string();
        let headers = [
            ("content-type", "application/json".to_owned()),
            ("x-line-signature", sign(CHANNEL_SECRET, body.as_bytes())),
        ];
        matches!(webhook.call("POST", WEBHOOK_PATH, &headers, body.as_bytes()).await, Ok((200, _)))
    })
    .await?;

    let counters = || (line.reply_calls.load(Ordering::Relaxed), line.pushes.load(Ordering::Relaxed));
    let mut m = run.measure(line.as_ref(), &mut reply_rx, &args, pid, counters).await?;
    let ((replies0, pushes0), (replies1, pushes1)) = m.counters;

    let mut r = Report::new("line", &args.label, &args.run_id);
    args.report_params(&mut r, args.gateway_bin.display().to_string());
    let tally = report_replies(&mut r, &mut m, args.messages(), "webhook POST → reply (or push)");
    let load = |c: &AtomicU64| c.load(Ordering::Relaxed);
    let (posts, refused) = (load(&webhook.posts), load(&webhook.refused));
    let (replies_refused, repeated) = (load(&line.replies_refused), load(&line.retry_keys_repeated));
    let (without_key, refused_calls) = (load(&line.pushes_without_key), load(&line.refused_calls));
    r.figure("webhook_posts", posts)
        .figure("webhook_refused", refused)
        .figure("reply_calls", replies1 - replies0)
        .figure("push_fallbacks", pushes1 - pushes0)
        .figure("push_fallbacks_total", load(&line.pushes))
        .figure("replies_refused", replies_refused)
        .figure("retry_keys_repeated", repeated)
        .figure("pushes_without_retry_key", without_key)
        .figure("loading_calls", load(&line.loading_calls));
    r.line(format!(
        "webhook: {posts} signed POSTs, {refused} not answered 2xx; reply: {} calls ({replies_refused} tokens refused in the whole run); push fallbacks: {} ({} in the whole run, {repeated} repeated retry keys); loading animations: {}",
        replies1 - replies0,
        pushes1 - pushes0,
        load(&line.pushes),
        load(&line.loading_calls)
    ));
    report_memory(&mut r, &m.out, tally.rate);
    r.cpu(m.before.as_ref(), m.after.as_ref(), m.out.answered, "message", m.out.wall, m.client_cpu_s);
    r.emit(args.json);
    server.abort();
    run.finish(args.keep_state);
    tally.exactly_once()?;
    let mut trouble = Vec::new();
    if refused > 0 {
        trouble.push(format!("{refused} webhook POSTs refused ({})", webhook.failure().unwrap_or_default()));
    }
    if without_key > 0 {
        trouble.push(format!("{without_key} pushes without an X-Line-Retry-Key"));
    }
    if refused_calls > 0 {
        trouble.push(format!("{refused_calls} API calls with a wrong token"));
    }
    if !trouble.is_empty() {
        bail!("{}", trouble.join("; "));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn user_ids_are_line_shaped_and_map_back() {
        let u = user(42);
        assert_eq!(u.len(), 33);
        assert!(u.starts_with('U'));
        assert_eq!(chat_of(&u), Some(42));
        assert_eq!(chat_of(BOT_USER), None);
    }

    #[test]
    fn the_signature_is_base64_hmac_of_the_raw_body() {
        // The same bytes, signed the way the adapter checks (LineChannel::signature_valid).
        let sig = sign("secret", b"{\"events\":[]}");
        assert_eq!(B64.decode(&sig).unwrap().len(), 32);
        assert_ne!(sig, sign("secret", b"{\"events\": []}"));
    }

    #[tokio::test]
    async fn a_reply_token_is_taken_once() {
        let (tx, mut rx) = mpsc::channel(4);
        let line = Line::new(tx, WebhookClient::new(([127, 0, 0, 1], 9).into()));
        line.tokens.lock().unwrap().insert("t1".into(), Token { chat: 3, issued: Instant::now(), used: false });
        let body = json!({"replyToken": "t1", "messages": [{"type": "text", "text": "hi"}]});
        assert_eq!(line.reply(Instant::now(), &body).await.status, 200);
        assert_eq!(rx.recv().await.unwrap().chat, Some(3));
        let again = line.reply(Instant::now(), &body).await;
        assert_eq!((again.status, again.body.contains("Invalid reply token")), (400, true));
    }
}
