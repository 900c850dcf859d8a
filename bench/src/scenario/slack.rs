//! `slack`: inbound Slack message → reply through a gateway's Slack channel, end to end.
//!
//! This tool plays Slack (contracts/slack.md) the way `telegram` plays Telegram: a zero-delay
//! Web API on 127.0.0.1 with only the calls the channel makes (`auth.test`, `chat.postMessage`,
//! and in Socket Mode `apps.connections.open`), the gateway started with a generated config
//! (`channels.slack.apiRoot` pointing here, `dmPolicy: "open"`, inbound rate limits off) and the
//! zero-delay fake model. Chat `i` is the DM `D0B<i>` with user `U0B<i>`, one session each.
//!
//! Inbound, as Slack pushes it:
//! - `--mode http` (the default): an Events API `event_callback` POSTed to the gateway's
//!   `/slack/events`, signed `v0` (HMAC-SHA256 of `v0:<timestamp>:<body>` with the signing secret
//!   of the generated config) with a current `X-Slack-Request-Timestamp`, over kept-alive
//!   connections; an answer other than 2xx fails the run. Ready = `auth.test` was called and a
//!   signed `url_verification` got its challenge back (what Slack does when the Request URL is
//!   set).
//! - `--mode socket`: `apps.connections.open` hands the gateway a WebSocket on this tool; `hello`
//!   first, then one `events_api` envelope per message; every envelope must be acknowledged
//!   (unacknowledged ones are counted and fail the run). Ready = the socket said `hello`.
//!
//! Latency runs from the moment the POST (or envelope) was written to the moment the head of the
//! gateway's `chat.postMessage` into that DM arrived; replies/s, exactly-once and memory are
//! counted as in `telegram`.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Instant;

use anyhow::{Context, Result, bail};
use clap::Args;
use futures_util::{SinkExt, StreamExt};
use hmac::{Hmac, Mac};
use serde_json::{Value, json};
use sha2::Sha256;
use tokio::net::TcpListener;
use tokio::sync::mpsc;
use tokio_tungstenite::tungstenite::Message;

use super::platform::{
    self, Answer, Api, Inbound, PlatformArgs, Reply, Run, WebhookClient, bearer, hex, report_memory, report_replies,
    unix_now,
};
use crate::http::Head;
use crate::report::Report;

const BOT_TOKEN: &str = "xoxb-7000000001-7000000002-BenchSlackBotToken";
const APP_TOKEN: &str = "xapp-1-A0BENCH-7000000003-BenchSlackAppToken";
const SIGNING_SECRET: &str = "8f742231b10e8888abcd99bench5a5bench";
const BOT_USER: &str = "U0BENCHBOT";
const TEAM: &str = "T0BENCH";
const APP_ID: &str = "A0BENCH";
/// Where the gateway serves the Events API in HTTP mode (the default account's path).
const EVENTS_PATH: &str = "/slack/events";

#[derive(Args, Debug)]
pub struct SlackArgs {
    /// How events reach the gateway: `http` (signed Events API POSTs to its webhook) or
    /// `socket` (Socket Mode envelopes on a WebSocket the gateway opens on this tool).
    #[arg(long, default_value = "http", value_parser = ["http", "socket"])]
    pub mode: String,
    #[command(flatten)]
    pub run: PlatformArgs,
}

fn dm(chat: usize) -> String {
    format!("D0B{chat:07}")
}

fn user(chat: usize) -> String {
    format!("U0B{chat:07}")
}

fn chat_of(channel: &str) -> Option<usize> {
    channel.strip_prefix("D0B")?.parse().ok()
}

/// `v0=` + hex(HMAC-SHA256(secret, `v0:<ts>:<body>`)), as Slack signs a request.
pub fn sign(secret: &str, ts: i64, body: &[u8]) -> String {
    let mut mac = <Hmac<Sha256> as Mac>::new_from_slice(secret.as_bytes()).expect("HMAC takes any key length");
    mac.update(format!("v0:{ts}:").as_bytes());
    mac.update(body);
    format!("v0={}", hex(&mac.finalize().into_bytes()))
}

/// The Events API body of a DM from `user(chat)`: what Slack POSTs and wraps in an envelope.
fn event_callback(chat: usize, n: u64, seq: u64, event_id: u64) -> Value {
    let ts = format!("{}.{n:06}", unix_now());
    json!({
        "type": "event_callback", "token": "BenchVerificationToken", "team_id": TEAM, "api_app_id": APP_ID,
        "event": {"type": "message", "channel": dm(chat), "user": user(chat), "channel_type": "im",
                  "text": format!("bench message {seq} to chat {}", dm(chat)), "ts": ts, "event_ts": ts,
                  "client_msg_id": format!("00000000-0000-4000-8000-{event_id:012}"), "team": TEAM},
        "event_id": format!("Ev0B{event_id:09}"), "event_time": unix_now(),
        "authorizations": [{"enterprise_id": null, "team_id": TEAM, "user_id": BOT_USER, "is_bot": true,
                            "is_enterprise_install": false}],
        "is_ext_shared_channel": false, "context_team_id": TEAM, "context_enterprise_id": null,
    })
}

// ---------------------------------------------------------------------------------------------
// The fake Web API and Socket Mode server

struct Slack {
    replies: mpsc::Sender<Reply>,
    /// `ws://…/link/` of the Socket Mode listener (socket mode only).
    socket_url: Option<String>,
    /// Envelopes to the newest socket that said `hello`.
    socket: Mutex<Option<mpsc::UnboundedSender<String>>>,
    webhook: Option<Arc<WebhookClient>>,
    next_event: AtomicU64,
    next_ts: AtomicU64,
    auth_tests: AtomicU64,
    post_messages: AtomicU64,
    connections_opened: AtomicU64,
    sockets_hello: AtomicU64,
    envelopes: AtomicU64,
    acks: AtomicU64,
    refused_calls: AtomicU64,
    other_calls: AtomicU64,
}

fn ok(v: Value) -> Answer {
    Answer::json(200, v.to_string())
}

fn error(code: &str) -> Answer {
    Answer::json(200, json!({"ok": false, "error": code}).to_string())
}

impl Slack {
    fn new(replies: mpsc::Sender<Reply>, socket_url: Option<String>, webhook: Option<Arc<WebhookClient>>) -> Self {
        Self {
            replies,
            socket_url,
            socket: Mutex::new(None),
            webhook,
            next_event: AtomicU64::new(1),
            next_ts: AtomicU64::new(1),
            auth_tests: AtomicU64::new(0),
            post_messages: AtomicU64::new(0),
            connections_opened: AtomicU64::new(0),
            sockets_hello: AtomicU64::new(0),
            envelopes: AtomicU64::new(0),
            acks: AtomicU64::new(0),
            refused_calls: AtomicU64::new(0),
            other_calls: AtomicU64::new(0),
        }
    }

    async fn post_message(&self, arrived: Instant, body: &[u8]) -> Answer {
        self.post_messages.fetch_add(1, Ordering::Relaxed);
        let Ok(params) = serde_json::from_slice::<Value>(body) else { return error("invalid_json") };
        let Some(channel) = params["channel"].as_str() else { return error("channel_not_found") };
        let text = params["text"].as_str().unwrap_or_default();
        if text.is_empty() {
            return error("no_text");
        }
        // Bounded: the driver reads continuously; a full channel slows the gateway, visibly.
        let _ = self.replies.send(Reply { chat: chat_of(channel), at: arrived }).await;
        let ts = format!("{}.{:06}", unix_now(), self.next_ts.fetch_add(1, Ordering::Relaxed) % 1_000_000);
        ok(json!({"ok": true, "channel": channel, "ts": ts,
                  "message": {"text": text, "bot_id": "B0BENCH", "type": "message", "subtype": "bot_message",
                              "user": BOT_USER, "ts": ts}}))
    }
}

impl Api for Slack {
    async fn respond(&self, head: &Head, arrived: Instant, body: Vec<u8>) -> Answer {
        let path = head.second.split('?').next().unwrap_or_default();
        let Some(method) = path.strip_prefix("/api/") else {
            self.other_calls.fetch_add(1, Ordering::Relaxed);
            return Answer::json(404, r#"{"ok":false,"error":"unknown_method"}"#);
        };
        let token = bearer(head);
        if method == "apps.connections.open" {
            if token != Some(APP_TOKEN) {
                self.refused_calls.fetch_add(1, Ordering::Relaxed);
                return error("invalid_auth");
            }
            self.connections_opened.fetch_add(1, Ordering::Relaxed);
            let Some(url) = &self.socket_url else { return error("not_allowed_token_type") };
            let ticket = self.connections_opened.load(Ordering::Relaxed);
            return ok(json!({"ok": true, "url": format!("{url}?ticket=bench-{ticket}&app_id={APP_ID}")}));
        }
        if token != Some(BOT_TOKEN) {
            self.refused_calls.fetch_add(1, Ordering::Relaxed);
            return error(if token.is_none() { "not_authed" } else { "invalid_auth" });
        }
        match method {
            "auth.test" => {
                self.auth_tests.fetch_add(1, Ordering::Relaxed);
                ok(json!({"ok": true, "url": "https://bench.slack.com/", "team": "Bench", "user": "benchbot",
                          "team_id": TEAM, "user_id": BOT_USER, "bot_id": "B0BENCH", "is_enterprise_install": false}))
            }
            "chat.postMessage" => self.post_message(arrived, &body).await,
            _ => {
                self.other_calls.fetch_add(1, Ordering::Relaxed);
                error("unknown_method")
            }
        }
    }
}

/// Socket Mode: each connection gets `hello`, then becomes the one envelopes go to; acks are
/// counted as they come back.
async fn serve_sockets(listener: TcpListener, slack: Arc<Slack>) {
    loop {
        let Ok((tcp, _)) = listener.accept().await else { continue };
        let slack = slack.clone();
        tokio::spawn(async move {
            let _ = tcp.set_nodelay(true);
            let Ok(ws) = tokio_tungstenite::accept_async(tcp).await else { return };
            let (mut sink, mut stream) = ws.split();
            let hello = json!({"type": "hello", "num_connections": 1, "connection_info": {"app_id": APP_ID},
                               "debug_info": {"host": "applink-bench", "started": "2026-12-07 00:00:00.000",
                                              "build_number": 1, "approximate_connection_time": 18060}});
            if sink.send(Message::Text(hello.to_string().into())).await.is_err() {
                return;
            }
            let (tx, mut rx) = mpsc::unbounded_channel::<String>();
            *slack.socket.lock().unwrap_or_else(PoisonError::into_inner) = Some(tx);
            slack.sockets_hello.fetch_add(1, Ordering::Relaxed);
            let writer = tokio::spawn(async move {
                while let Some(text) = rx.recv().await {
                    if sink.send(Message::Text(text.into())).await.is_err() {
                        return;
                    }
                }
            });
            // Bounded by the gateway: the loop ends when it closes the socket.
            while let Some(Ok(frame)) = stream.next().await {
                if let Message::Text(t) = frame
                    && serde_json::from_str::<Value>(t.as_str()).is_ok_and(|v| v["envelope_id"].is_string())
                {
                    slack.acks.fetch_add(1, Ordering::Relaxed);
                }
            }
            writer.abort();
        });
    }
}

impl Inbound for Slack {
    async fn send(&self, chat: usize, n: u64, seq: u64) -> Result<Instant> {
        let event_id = self.next_event.fetch_add(1, Ordering::Relaxed);
        let callback = event_callback(chat, n, seq, event_id);
        match &self.webhook {
            Some(webhook) => {
                let body = callback.to_string().into_bytes();
                let ts = unix_now();
                let headers = [
                    ("content-type", "application/json".to_owned()),
                    ("x-slack-request-timestamp", ts.to_string()),
                    ("x-slack-signature", sign(SIGNING_SECRET, ts, &body)),
                ];
                webhook.post(EVENTS_PATH, &headers, &body).await
            }
            None => {
                let envelope = json!({"envelope_id": format!("0b000000-0000-4000-8000-{event_id:012}"),
                                      "type": "events_api", "accepts_response_payload": false,
                                      "payload": callback});
                let socket = self.socket.lock().unwrap_or_else(PoisonError::into_inner).clone();
                let socket = socket.context("no Socket Mode connection to send on")?;
                let at = Instant::now();
                socket.send(envelope.to_string()).map_err(|_| anyhow::anyhow!("the Socket Mode connection closed"))?;
                self.envelopes.fetch_add(1, Ordering::Relaxed);
                Ok(at)
            }
        }
    }

    fn failure(&self) -> Option<String> {
        self.webhook.as_ref().and_then(|w| w.failure())
    }
}

fn gateway_config(mode: &str, api_root: &str, model_url: &str) -> String {
    let mut slack = json!({
        "mode": mode, "botToken": BOT_TOKEN, "apiRoot": api_root, "dmPolicy": "open",
        // 0 disables the inbound limits: a load test is one user flooding per chat.
        "rateLimit": {"perSenderPerMinute": 0, "perChatPerMinute": 0},
    });
    if mode == "http" {
        slack["signingSecret"] = json!(SIGNING_SECRET);
    } else {
        slack["appToken"] = json!(APP_TOKEN);
    }
    let mut config = platform::model_config(model_url);
    config["channels"] = json!({"slack": slack});
    config.to_string()
}

pub async fn run(args: SlackArgs) -> Result<()> {
    let SlackArgs { mode, run: args } = args;
    let listener = TcpListener::bind("127.0.0.1:0").await?;
    let api_root = format!("http://{}/api", listener.local_addr()?);
    let port = platform::free_port()?;
    let gateway_addr: std::net::SocketAddr = ([127, 0, 0, 1], port).into();
    let (reply_tx, mut reply_rx) = mpsc::channel(65_536);
    let (slack, socket_server) = if mode == "socket" {
        let sockets = TcpListener::bind("127.0.0.1:0").await?;
        let url = format!("ws://{}/link/", sockets.local_addr()?);
        let slack = Arc::new(Slack::new(reply_tx, Some(url), None));
        let server = tokio::spawn(serve_sockets(sockets, slack.clone()));
        (slack, Some(server))
    } else {
        (Arc::new(Slack::new(reply_tx, None, Some(WebhookClient::new(gateway_addr)))), None)
    };
    let server = tokio::spawn(platform::serve(listener, slack.clone()));

    let mut run = Run::new("slack")?;
    let model_url = run.start_model(args.model_chunks).await?;
    let pid = run.start_gateway(&args, port, &gateway_config(&mode, &api_root, &model_url))?;
    eprintln!(
        "slack ({mode} mode): gateway {} (pid {pid}), Web API {api_root}, model {model_url}, state {}",
        args.gateway_bin.display(),
        run.state_path().display()
    );

    match &slack.webhook {
        // Ready = `auth.test` answered and the Request URL verified, as the app console does it.
        Some(webhook) => {
            run.wait_ready("a verified Request URL", async || {
                if slack.auth_tests.load(Ordering::Relaxed) == 0 {
                    return false;
                }
                let body = json!({"token": "BenchVerificationToken", "challenge": "bench-challenge-0b",
                                  "type": "url_verification"})
                .to_string();
                let ts = unix_now();
                let headers = [
                    ("content-type", "application/json".to_owned()),
                    ("x-slack-request-timestamp", ts.to_string()),
                    ("x-slack-signature", sign(SIGNING_SECRET, ts, body.as_bytes())),
                ];
                matches!(webhook.call("POST", EVENTS_PATH, &headers, body.as_bytes()).await,
                         Ok((200, text)) if text.contains("bench-challenge-0b"))
            })
            .await?
        }
        None => {
            run.wait_ready("the Socket Mode hello", async || slack.sockets_hello.load(Ordering::Relaxed) > 0).await?
        }
    }

    let mut m = run.measure(slack.as_ref(), &mut reply_rx, &args, pid, || ()).await?;

    let mut r = Report::new("slack", &args.label, &args.run_id);
    r.param("mode", mode.clone());
    args.report_params(&mut r, args.gateway_bin.display().to_string());
    let path = if mode == "http" { "event POST → chat.postMessage" } else { "envelope → chat.postMessage" };
    let tally = report_replies(&mut r, &mut m, args.messages(), path);
    let post_messages = slack.post_messages.load(Ordering::Relaxed);
    let refused_calls = slack.refused_calls.load(Ordering::Relaxed);
    r.figure("post_message_calls", post_messages).figure("refused_calls", refused_calls);
    let mut trouble = Vec::new();
    match &slack.webhook {
        Some(webhook) => {
            let (posts, refused) = (webhook.posts.load(Ordering::Relaxed), webhook.refused.load(Ordering::Relaxed));
            r.figure("webhook_posts", posts).figure("webhook_refused", refused);
            r.line(format!(
                "Events API (warm-up included): {posts} signed POSTs, {refused} not answered 2xx; chat.postMessage: {post_messages}"
            ));
            if refused > 0 {
                trouble.push(format!("{refused} webhook POSTs refused ({})", webhook.failure().unwrap_or_default()));
            }
        }
        None => {
            let (sent, acks) = (slack.envelopes.load(Ordering::Relaxed), slack.acks.load(Ordering::Relaxed));
            let opened = slack.connections_opened.load(Ordering::Relaxed);
            r.figure("envelopes", sent).figure("acks", acks).figure("connections_opened", opened);
            r.line(format!(
                "Socket Mode (warm-up included): {sent} envelopes, {acks} acknowledged, {opened} connections opened; chat.postMessage: {post_messages}"
            ));
            if acks < sent {
                trouble.push(format!("{} envelopes never acknowledged", sent - acks));
            }
        }
    }
    if refused_calls > 0 {
        trouble.push(format!("{refused_calls} Web API calls with a wrong token"));
    }
    report_memory(&mut r, &m.out, tally.rate);
    r.cpu(m.before.as_ref(), m.after.as_ref(), m.out.answered, "message", m.out.wall, m.client_cpu_s);
    r.emit(args.json);
    server.abort();
    if let Some(s) = socket_server {
        s.abort();
    }
    run.finish(args.keep_state);
    tally.exactly_once()?;
    if !trouble.is_empty() {
        bail!("{}", trouble.join("; "));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_signature_matches_slacks_known_answer() {
        // contracts/slack.md §3.1, from Slack's "Verifying requests" page.
        let body = "token=xyzz0WbapA4vBCDEFasx0q6G&team_id=T1DC2JH3J&team_domain=testteamnow&channel_id=G8PSS9T3V&channel_name=foobar&user_id=U2CERLKJA&user_name=roadrunner&command=%2Fwebhook-collect&text=&response_url=https%3A%2F%2Fhooks.slack.com%2Fcommands%2FT1DC2JH3J%2F397700885554%2F96rGlfmibIGlgcZRskXaIFfN&trigger_id=398738663015.47445629121.803a0bc887a14d10d2c447fce8b6703c";
        assert_eq!(
            sign("8f742231b10e8888abcd99yyyzzz85a5", 1531420618, body.as_bytes()),
            "v0=a2114d57b48eac39b9ad189dd8316235a7b4a8d21a10bd27519666489c69b503"
        );
    }

    #[test]
    fn dm_ids_map_back_to_their_chat() {
        assert_eq!(chat_of(&dm(42)), Some(42));
        assert_eq!(chat_of("C0GENERAL"), None);
        let v = event_callback(7, 3, 9, 11);
        assert_eq!(v["event"]["channel"], dm(7));
        assert_eq!(v["event"]["user"], user(7));
        assert_eq!(v["event"]["channel_type"], "im");
    }
}
