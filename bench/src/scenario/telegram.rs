//! `telegram`: inbound message → reply through a gateway's Telegram channel, end to end.
//!
//! This tool plays Telegram: it serves a zero-delay Bot API on 127.0.0.1 (`getMe`,
//! `deleteWebhook`, long-polled `getUpdates`, `sendMessage`, `sendChatAction`), and by default
//! starts the gateway itself (`--gateway-bin`, a temp state dir, a generated config pointing
//! `channels.telegram.apiRoot` here, inbound rate limits off) and a zero-delay model
//! (`clawgate-bench fake-model`, a child process). Private chat `i` is user `CHAT_BASE + i`, so
//! each chat is one session `agent:main:telegram:direct:<user>`.
//!
//! - **latency**: from the moment an update is queued where a `getUpdates` poll can take it (a
//!   held long poll is woken at once) to the moment the head of the gateway's `sendMessage`
//!   for that chat has arrived here;
//! - **throughput**: `--messages` across `--chats`, at most `--concurrency` in flight and at
//!   most one per chat (so a reply is unambiguous and no message waits behind its own chat's
//!   previous turn); replies/s from the first message to the last reply;
//! - **exactly once**: every `sendMessage` to a chat with nothing outstanding is a duplicate,
//!   also during `--settle-ms` after the last reply; duplicates or missing replies fail the run
//!   after the report is printed;
//! - **memory**: the gateway's RSS every `--rss-every` answered messages after the warm-up:
//!   first/last/max and a least-squares slope per 10 000 messages (over all samples and over
//!   the second half, which leaves out caches still filling).
//!
//! Why not `clawgate-testkit`'s `FakeTelegram`: it is faithful but keeps every call with its
//! decoded parameters and answer in memory, and a test finds a reply by cloning that list. Over
//! 100 000 messages that is O(n²) scanning and hundreds of MB in this process, on the same two cores as
//! the gateway; this fake keeps only the unconfirmed update queue and hands each `sendMessage`
//! to the driver as it arrives. Only the calls the channel makes are implemented, with the
//! real envelope; anything else answers `{"ok":true,"result":true}`.

use std::collections::VecDeque;
use std::sync::atomic::{AtomicI64, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail};
use clap::Args;
use serde_json::{Value, json};
use tokio::net::TcpListener;
use tokio::sync::{mpsc, watch};

use super::platform::{self, Answer, Api, Inbound, PlatformArgs, Reply, Run, report_memory, report_replies, unix_now};
use crate::http::Head;
use crate::report::Report;
use crate::stats::round3;

/// The bot token the generated config carries; the fake answers 401 to any other.
const BOT_TOKEN: &str = "7000000001:AAFakeTelegramSecretForClawgateBench-x1";
const BOT_ID: i64 = 7_000_000_001;
/// Chat (= user) id of chat 0.
const CHAT_BASE: i64 = 1_000_000;

#[derive(Args, Debug)]
pub struct TelegramArgs {
    /// An externally started gateway: serve the Bot API at this root (loopback, e.g.
    /// `http://127.0.0.1:28810`); configure the gateway with that `apiRoot`, `botToken`
    /// `7000000001:AAFakeTelegramSecretForClawgateBench-x1`, `dmPolicy: "open"` and
    /// `rateLimit: {perSenderPerMinute: 0, perChatPerMinute: 0}`. Needs --pid.
    #[arg(long, requires = "pid")]
    pub api_root: Option<String>,
    /// The external gateway's pid (RSS and CPU come from /proc).
    #[arg(long, requires = "api_root")]
    pub pid: Option<u32>,
    /// Doubled replies to accept (counted and reported, not failed). Only for a run that kills
    /// the gateway mid-send (the failover run of `scripts/bench-cluster.sh`): a `sendMessage`
    /// whose answer the dead gateway never recorded is sent again by the survivor (Telegram has
    /// no idempotency key; docs/SCALING.md). A missing or unexpected reply still fails.
    #[arg(long, default_value_t = 0)]
    pub allow_duplicates: u64,
    #[command(flatten)]
    pub run: PlatformArgs,
}

// ---------------------------------------------------------------------------------------------
// The fake Bot API

/// Updates not yet confirmed by an `offset`, as serialized JSON.
#[derive(Default)]
struct Queue {
    pending: VecDeque<(i64, String)>,
    next_update_id: i64,
}

struct Platform {
    queue: Mutex<Queue>,
    /// Bumped whenever an update is queued; a held long poll waits on it.
    queued: watch::Sender<u64>,
    replies: mpsc::Sender<Reply>,
    next_message_id: AtomicI64,
    get_updates: AtomicU64,
    /// Updates handed out (with re-deliveries of unconfirmed ones): per poll, the batching.
    updates_served: AtomicU64,
    send_messages: AtomicU64,
    chat_actions: AtomicU64,
    other_calls: AtomicU64,
}

impl Platform {
    fn new(replies: mpsc::Sender<Reply>) -> Self {
        Self {
            queue: Mutex::new(Queue { pending: VecDeque::new(), next_update_id: 500_000_001 }),
            queued: watch::Sender::new(0),
            replies,
            next_message_id: AtomicI64::new(1_000_000),
            get_updates: AtomicU64::new(0),
            updates_served: AtomicU64::new(0),
            send_messages: AtomicU64::new(0),
            chat_actions: AtomicU64::new(0),
            other_calls: AtomicU64::new(0),
        }
    }

    /// Queues a private text message from user `chat`; returns when it became pollable.
    fn push(&self, chat: i64, message_id: i64, text: &str) -> Instant {
        let at = {
            let mut q = self.queue.lock().unwrap_or_else(PoisonError::into_inner);
            let id = q.next_update_id;
            q.next_update_id += 1;
            let update = json!({"update_id": id, "message": {
                "message_id": message_id, "date": unix_now(), "text": text,
                "from": {"id": chat, "is_bot": false, "first_name": "Bench", "username": format!("u{chat}")},
                "chat": {"id": chat, "type": "private", "first_name": "Bench", "username": format!("u{chat}")},
            }});
            q.pending.push_back((id, update.to_string()));
            Instant::now()
        };
        self.queued.send_modify(|n| *n += 1);
        at
    }

    /// `getUpdates`: confirm by `offset`, answer what is queued, or hold until something is or
    /// the poll's `timeout` passes.
    async fn get_updates(&self, params: &Value) -> String {
        self.get_updates.fetch_add(1, Ordering::Relaxed);
        let offset = params.get("offset").and_then(Value::as_i64);
        let limit = params.get("limit").and_then(Value::as_u64).unwrap_or(100).clamp(1, 100) as usize;
        let timeout = params.get("timeout").and_then(Value::as_u64).unwrap_or(0).min(50);
        let deadline = tokio::time::Instant::now() + Duration::from_secs(timeout);
        // Subscribed before looking, so an update queued after the look wakes us.
        let mut wake = self.queued.subscribe();
        loop {
            {
                let mut q = self.queue.lock().unwrap_or_else(PoisonError::into_inner);
                if let Some(o) = offset {
                    while q.pending.front().is_some_and(|(id, _)| *id < o) {
                        q.pending.pop_front();
                    }
                }
                if !q.pending.is_empty() {
                    let batch: Vec<&str> = q.pending.iter().take(limit).map(|(_, u)| u.as_str()).collect();
                    self.updates_served.fetch_add(batch.len() as u64, Ordering::Relaxed);
                    return format!(r#"{{"ok":true,"result":[{}]}}"#, batch.join(","));
                }
            }
            match tokio::time::timeout_at(deadline, wake.changed()).await {
                Ok(Ok(())) => {}
                _ => return r#"{"ok":true,"result":[]}"#.to_owned(),
            }
        }
    }

    async fn send_message(&self, params: &Value) -> (u16, String) {
        let at = Instant::now();
        self.send_messages.fetch_add(1, Ordering::Relaxed);
        let chat = match params.get("chat_id") {
            Some(Value::Number(n)) => n.as_i64(),
            Some(Value::String(s)) => s.parse().ok(),
            _ => None,
        };
        let Some(chat) = chat else {
            return (400, r#"{"ok":false,"error_code":400,"description":"Bad Request: chat_id is empty"}"#.into());
        };
        // Bounded: the driver reads continuously; a full channel slows the gateway, visibly.
        let idx = chat.checked_sub(CHAT_BASE).and_then(|i| usize::try_from(i).ok());
        let _ = self.replies.send(Reply { chat: idx, at }).await;
        let mid = self.next_message_id.fetch_add(1, Ordering::Relaxed);
        let result = json!({"message_id": mid, "date": unix_now(), "chat": {"id": chat, "type": "private"},
                            "from": {"id": BOT_ID, "is_bot": true, "first_name": "Bench", "username": "bench_bot"}});
        (200, format!(r#"{{"ok":true,"result":{result}}}"#))
    }

    async fn answer(&self, method: &str, params: &Value) -> (u16, String) {
        match method.to_ascii_lowercase().as_str() {
            "getupdates" => (200, self.get_updates(params).await),
            "sendmessage" => self.send_message(params).await,
            "sendchataction" => {
                self.chat_actions.fetch_add(1, Ordering::Relaxed);
                (200, r#"{"ok":true,"result":true}"#.into())
            }
            "getme" => {
                self.other_calls.fetch_add(1, Ordering::Relaxed);
                let me = json!({"id": BOT_ID, "is_bot": true, "first_name": "Bench", "username": "bench_bot",
                                "can_join_groups": true, "can_read_all_group_messages": false,
                                "supports_inline_queries": false});
                (200, format!(r#"{{"ok":true,"result":{me}}}"#))
            }
            _ => {
                self.other_calls.fetch_add(1, Ordering::Relaxed);
                (200, r#"{"ok":true,"result":true}"#.into())
            }
        }
    }
}

impl Api for Platform {
    async fn respond(&self, head: &Head, _arrived: Instant, body: Vec<u8>) -> Answer {
        let path = head.second.split('?').next().unwrap_or_default();
        let (status, text) = match path.strip_prefix("/bot").and_then(|p| p.split_once('/')) {
            Some((token, _)) if token != BOT_TOKEN => {
                (401, r#"{"ok":false,"error_code":401,"description":"Unauthorized"}"#.to_owned())
            }
            Some((_, method)) => {
                let params: Value = serde_json::from_slice(&body).unwrap_or(Value::Null);
                self.answer(method, &params).await
            }
            None => (404, r#"{"ok":false,"error_code":404,"description":"Not Found"}"#.to_owned()),
        };
        Answer::json(status, text)
    }
}

impl Inbound for Platform {
    async fn send(&self, chat: usize, n: u64, seq: u64) -> Result<Instant> {
        let id = CHAT_BASE + chat as i64;
        Ok(self.push(id, n as i64, &format!("bench message {seq} to chat {id}")))
    }
}

fn gateway_config(api_root: &str, model_url: &str) -> String {
    let mut config = platform::model_config(model_url);
    config["channels"] = json!({"telegram": {
        "botToken": BOT_TOKEN, "apiRoot": api_root, "dmPolicy": "open", "pollTimeoutSeconds": 10,
        // 0 disables the inbound limits: a load test is one user flooding per chat.
        "rateLimit": {"perSenderPerMinute": 0, "perChatPerMinute": 0},
    }});
    config.to_string()
}

pub async fn run(args: TelegramArgs) -> Result<()> {
    let TelegramArgs { api_root, pid, allow_duplicates, run: args } = args;

    // The platform first: the gateway polls it as soon as it starts.
    let listener = match &api_root {
        Some(root) => {
            let addr = root.trim_start_matches("http://").trim_end_matches('/');
            let addr: std::net::SocketAddr = addr.parse().with_context(|| format!("--api-root {root:?}"))?;
            if !addr.ip().is_loopback() {
                bail!("--api-root must be a loopback address, got {root}");
            }
            TcpListener::bind(addr).await.with_context(|| format!("binding {addr}"))?
        }
        None => TcpListener::bind("127.0.0.1:0").await?,
    };
    let api_root = format!("http://{}", listener.local_addr()?);
    let (reply_tx, mut reply_rx) = mpsc::channel(65_536);
    let platform = Arc::new(Platform::new(reply_tx));
    let server = tokio::spawn(platform::serve(listener, platform.clone()));

    let mut run = Run::new("telegram")?;
    let external = pid.is_some();
    let pid = match pid {
        Some(pid) => {
            eprintln!("telegram: Bot API at {api_root}; waiting for gateway pid {pid} to poll it");
            pid
        }
        None => {
            let model_url = run.start_model(args.model_chunks).await?;
            let port = platform::free_port()?;
            let pid = run.start_gateway(&args, port, &gateway_config(&api_root, &model_url))?;
            eprintln!(
                "telegram: gateway {} (pid {pid}), Bot API {api_root}, model {model_url}, state {}",
                args.gateway_bin.display(),
                run.state_path().display()
            );
            pid
        }
    };

    // Ready = the channel is long-polling us.
    run.wait_ready("its first getUpdates call", async || platform.get_updates.load(Ordering::Relaxed) > 0).await?;

    let counters = || (platform.get_updates.load(Ordering::Relaxed), platform.updates_served.load(Ordering::Relaxed));
    let mut m = run.measure(platform.as_ref(), &mut reply_rx, &args, pid, counters).await?;
    let ((polls0, served0), (polls1, served1)) = m.counters;
    let (polls, served) = (polls1 - polls0, served1 - served0);

    let mut r = Report::new("telegram", &args.label, &args.run_id);
    args.report_params(&mut r, if external { "external".to_owned() } else { args.gateway_bin.display().to_string() });
    let tally = report_replies(&mut r, &mut m, args.messages(), "inbound → sendMessage");
    r.figure("get_updates_calls", polls)
        .figure("updates_per_poll", round3(served as f64 / polls.max(1) as f64))
        .figure("send_chat_action_calls", platform.chat_actions.load(Ordering::Relaxed));
    r.line(format!(
        "getUpdates: {polls} polls, {:.2} updates per poll; sendChatAction: {}",
        served as f64 / polls.max(1) as f64,
        platform.chat_actions.load(Ordering::Relaxed)
    ));
    report_memory(&mut r, &m.out, tally.rate);
    r.cpu(m.before.as_ref(), m.after.as_ref(), m.out.answered, "message", m.out.wall, m.client_cpu_s);
    r.emit(args.json);
    server.abort();
    run.finish(args.keep_state);
    tally.at_most_duplicates(allow_duplicates)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn a_held_poll_wakes_on_push_and_offset_confirms() {
        let (tx, mut rx) = mpsc::channel(4);
        let p = Arc::new(Platform::new(tx));
        let poll = {
            let p = p.clone();
            tokio::spawn(async move { p.get_updates(&json!({"timeout": 5})).await })
        };
        tokio::time::sleep(Duration::from_millis(20)).await;
        p.push(CHAT_BASE, 1, "hi");
        let got: Value = serde_json::from_str(&poll.await.unwrap()).unwrap();
        let id = got["result"][0]["update_id"].as_i64().unwrap();
        assert_eq!(got["result"][0]["message"]["chat"]["id"], CHAT_BASE);
        let empty: Value = serde_json::from_str(&p.get_updates(&json!({"offset": id + 1})).await).unwrap();
        assert_eq!(empty["result"], json!([]));
        let (status, _) = p.send_message(&json!({"chat_id": CHAT_BASE.to_string(), "text": "x"})).await;
        assert_eq!(status, 200);
        assert_eq!(rx.recv().await.unwrap().chat, Some(0));
    }
}
