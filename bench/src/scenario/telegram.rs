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
use std::path::PathBuf;
use std::process::Stdio;
use std::sync::atomic::{AtomicI64, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use anyhow::{Context, Result, bail};
use clap::Args;
use serde_json::{Value, json};
use tokio::io::{AsyncBufReadExt, AsyncWriteExt, BufReader};
use tokio::net::{TcpListener, TcpStream};
use tokio::process::{Child, Command};
use tokio::sync::{mpsc, watch};

use crate::http::Reader;
use crate::procfs::{self, maybe_sample};
use crate::progress::Progress;
use crate::report::{Report, client_cpu};
use crate::stats::{Summary, round3};

/// The bot token the generated config carries; the fake answers 401 to any other.
const BOT_TOKEN: &str = "7000000001:AAFakeTelegramSecretForClawgateBench-x1";
const BOT_ID: i64 = 7_000_000_001;
/// Chat (= user) id of chat 0.
const CHAT_BASE: i64 = 1_000_000;
/// The gateway's shared token (unused here, but the gateway wants one).
const GATEWAY_TOKEN: &str = "bench-token-0123456789";

#[derive(Args, Debug)]
pub struct TelegramArgs {
    /// The gateway binary to start (with a temp state dir and a generated config).
    #[arg(long, default_value = "target/release/clawgate")]
    pub gateway_bin: PathBuf,
    /// Pin the started gateway to these CPUs (`taskset -c LIST`), e.g. `0`; pin this tool
    /// (and with it the fake model) with `taskset -c 1 clawgate-bench …`.
    #[arg(long)]
    pub gateway_cpus: Option<String>,
    /// An externally started gateway: serve the Bot API at this root (loopback, e.g.
    /// `http://127.0.0.1:28810`); configure the gateway with that `apiRoot`, `botToken`
    /// `7000000001:AAFakeTelegramSecretForClawgateBench-x1`, `dmPolicy: "open"` and
    /// `rateLimit: {perSenderPerMinute: 0, perChatPerMinute: 0}`. Needs --pid.
    #[arg(long, requires = "pid")]
    pub api_root: Option<String>,
    /// The external gateway's pid (RSS and CPU come from /proc).
    #[arg(long, requires = "api_root")]
    pub pid: Option<u32>,
    /// Private chats (one user and one session each).
    #[arg(long, default_value_t = 100)]
    pub chats: u64,
    /// Measured inbound messages, spread evenly over the chats.
    #[arg(long, default_value_t = 1000)]
    pub messages: u64,
    /// Messages in flight at once (at most one per chat). Default: --chats.
    #[arg(long)]
    pub concurrency: Option<u64>,
    /// Messages answered before measuring (each chat's first turn creates its session).
    #[arg(long, default_value_t = 200)]
    pub warmup: u64,
    /// Sample the gateway's RSS every N answered messages (default: messages / 100, ≥ 100).
    #[arg(long)]
    pub rss_every: Option<u64>,
    /// Give up when no reply at all arrives for this long, in ms.
    #[arg(long, default_value_t = 30_000)]
    pub reply_timeout_ms: u64,
    /// After the last reply, wait this long for duplicate replies, in ms.
    #[arg(long, default_value_t = 2_000)]
    pub settle_ms: u64,
    /// Text chunks per fake-model answer.
    #[arg(long, default_value_t = 8)]
    pub model_chunks: u32,
    /// Abort when the gateway's process tree grows past this RSS (MiB), or the machine's
    /// MemAvailable drops under 1 GiB.
    #[arg(long, default_value_t = 4096)]
    pub max_server_rss_mb: u64,
    /// Keep the temp dir (config, state, gateway log) and print its path.
    #[arg(long)]
    pub keep_state: bool,
    /// Also print one JSON object line on stdout (the human summary then goes to stderr).
    #[arg(long)]
    pub json: bool,
    #[arg(long, default_value = "")]
    pub label: String,
    #[arg(long, default_value = "")]
    pub run_id: String,
}

// ---------------------------------------------------------------------------------------------
// The fake Bot API

/// One `sendMessage` as it arrived.
struct Reply {
    chat: i64,
    at: Instant,
}

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

fn unix_now() -> i64 {
    SystemTime::now().duration_since(UNIX_EPOCH).map(|d| d.as_secs() as i64).unwrap_or(0)
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
        let _ = self.replies.send(Reply { chat, at }).await;
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

async fn serve(listener: TcpListener, platform: Arc<Platform>) {
    loop {
        let Ok((tcp, _)) = listener.accept().await else { continue };
        let platform = platform.clone();
        tokio::spawn(async move {
            // A connection error only ends that connection; the gateway reconnects.
            let _ = connection(tcp, &platform).await;
        });
    }
}

async fn connection(mut tcp: TcpStream, platform: &Platform) -> Result<()> {
    tcp.set_nodelay(true)?;
    let mut reader = Reader::new();
    // Bounded by the client: each iteration consumes one request or ends at EOF.
    loop {
        let Some(head) = reader.head(&mut tcp).await? else { return Ok(()) };
        let body = reader.body(&mut tcp, &head).await?;
        let path = head.second.split('?').next().unwrap_or_default();
        let (status, text) = match path.strip_prefix("/bot").and_then(|p| p.split_once('/')) {
            Some((token, _)) if token != BOT_TOKEN => {
                (401, r#"{"ok":false,"error_code":401,"description":"Unauthorized"}"#.to_owned())
            }
            Some((_, method)) => {
                let params: Value = serde_json::from_slice(&body).unwrap_or(Value::Null);
                platform.answer(method, &params).await
            }
            None => (404, r#"{"ok":false,"error_code":404,"description":"Not Found"}"#.to_owned()),
        };
        let reason = match status {
            200 => "OK",
            400 => "Bad Request",
            401 => "Unauthorized",
            _ => "Not Found",
        };
        let close = head.wants_close();
        let out = format!(
            "HTTP/1.1 {status} {reason}\r\ncontent-type: application/json\r\ncontent-length: {}\r\n{}\r\n{text}",
            text.len(),
            if close { "connection: close\r\n" } else { "" }
        );
        tcp.write_all(out.as_bytes()).await?;
        if close {
            return Ok(());
        }
    }
}

// ---------------------------------------------------------------------------------------------
// The processes under test

/// Child processes this run started; stopped (by pid) when dropped.
struct Children {
    gateway: Option<Child>,
    model: Option<Child>,
}

impl Drop for Children {
    fn drop(&mut self) {
        for child in [self.gateway.as_mut(), self.model.as_mut()].into_iter().flatten() {
            // SIGTERM first so the gateway closes its database cleanly; the kill_on_drop set
            // at spawn is the backstop.
            if let Some(pid) = child.id() {
                let _ = std::process::Command::new("kill").arg("-TERM").arg(pid.to_string()).status();
            }
        }
        if let Some(g) = self.gateway.as_mut() {
            let deadline = Instant::now() + Duration::from_secs(10);
            while Instant::now() < deadline && matches!(g.try_wait(), Ok(None)) {
                std::thread::sleep(Duration::from_millis(50));
            }
        }
    }
}

/// Starts `clawgate-bench fake-model --port 0` and reads the URL it prints.
async fn start_model(chunks: u32) -> Result<(Child, String)> {
    let exe = std::env::current_exe().context("locating clawgate-bench")?;
    let mut child = Command::new(exe)
        .args(["fake-model", "--port", "0", "--threads", "1", "--chunks", &chunks.to_string()])
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .kill_on_drop(true)
        .spawn()
        .context("starting fake-model")?;
    let stdout = child.stdout.take().context("fake-model stdout")?;
    let mut line = String::new();
    tokio::time::timeout(Duration::from_secs(10), BufReader::new(stdout).read_line(&mut line))
        .await
        .context("fake-model did not print its address within 10 s")??;
    let url = line
        .split_whitespace()
        .find(|w| w.starts_with("http://"))
        .with_context(|| format!("fake-model printed {line:?}"))?
        .to_owned();
    Ok((child, url))
}

fn free_port() -> Result<u16> {
    let l = std::net::TcpListener::bind("127.0.0.1:0").context("finding a free port")?;
    Ok(l.local_addr()?.port())
}

fn gateway_config(api_root: &str, model_url: &str) -> String {
    json!({
        "models": {"providers": {"fake": {"baseUrl": model_url, "apiKey": "fake-key", "api": "openai-completions",
                                          "models": [{"id": "fake-model", "name": "Fake Model"}]}}},
        "agents": {"defaults": {"model": {"primary": "fake/fake-model"}}},
        "channels": {"telegram": {
            "botToken": BOT_TOKEN, "apiRoot": api_root, "dmPolicy": "open", "pollTimeoutSeconds": 10,
            // 0 disables the inbound limits: a load test is one user flooding per chat.
            "rateLimit": {"perSenderPerMinute": 0, "perChatPerMinute": 0},
        }},
    })
    .to_string()
}

fn log_tail(path: &std::path::Path) -> String {
    let text = std::fs::read_to_string(path).unwrap_or_default();
    let lines: Vec<&str> = text.lines().collect();
    lines[lines.len().saturating_sub(15)..].join("\n")
}

// ---------------------------------------------------------------------------------------------
// The driver

struct Chat {
    id: i64,
    next_message_id: i64,
    /// Messages this chat still sends in the current phase.
    quota: u64,
    /// When its one outstanding message became pollable.
    outstanding: Option<Instant>,
}

#[derive(Default)]
struct PhaseOut {
    latency_ns: Vec<u64>,
    answered: u64,
    duplicates: u64,
    unexpected: u64,
    wall: Duration,
    /// (answered so far, when, gateway RSS KiB) every `rss_every` messages.
    rss: Vec<(u64, Instant, u64)>,
}

struct Phase<'a> {
    platform: &'a Platform,
    replies: &'a mut mpsc::Receiver<Reply>,
    chats: &'a mut [Chat],
    concurrency: usize,
    reply_timeout: Duration,
    pid: u32,
    rss_every: Option<u64>,
    done: Option<&'a AtomicU64>,
}

impl Phase<'_> {
    fn send_next(&mut self, idx: usize, seq: u64) {
        let chat = &mut self.chats[idx];
        chat.quota -= 1;
        chat.next_message_id += 1;
        let text = format!("bench message {seq} to chat {}", chat.id);
        chat.outstanding = Some(self.platform.push(chat.id, chat.next_message_id, &text));
    }

    /// Sends `total` messages (spread over the chats) and waits for every reply.
    async fn run(&mut self, total: u64) -> Result<PhaseOut> {
        let n = self.chats.len() as u64;
        for (i, c) in self.chats.iter_mut().enumerate() {
            c.quota = total / n + u64::from((i as u64) < total % n);
        }
        let mut idle: VecDeque<usize> = (0..self.chats.len()).filter(|&i| self.chats[i].quota > 0).collect();
        let mut out = PhaseOut::default();
        let mut seq = 0u64;
        let t0 = Instant::now();
        if self.rss_every.is_some() {
            out.rss.push((0, t0, procfs::rss_kb(self.pid)?));
        }
        for _ in 0..self.concurrency {
            let Some(i) = idle.pop_front() else { break };
            self.send_next(i, seq);
            seq += 1;
        }
        while out.answered < total {
            let reply = match tokio::time::timeout(self.reply_timeout, self.replies.recv()).await {
                Ok(Some(r)) => r,
                Ok(None) => bail!("the fake Bot API stopped"),
                Err(_) => bail!(
                    "no reply for {:?}: {} of {total} answered, {} outstanding, {} duplicates so far",
                    self.reply_timeout,
                    out.answered,
                    self.chats.iter().filter(|c| c.outstanding.is_some()).count(),
                    out.duplicates
                ),
            };
            let idx = reply.chat - CHAT_BASE;
            if idx < 0 || idx as usize >= self.chats.len() {
                out.unexpected += 1;
                continue;
            }
            let idx = idx as usize;
            let Some(sent_at) = self.chats[idx].outstanding.take() else {
                out.duplicates += 1;
                continue;
            };
            out.latency_ns.push(reply.at.saturating_duration_since(sent_at).as_nanos() as u64);
            out.answered += 1;
            if let Some(d) = self.done {
                d.fetch_add(1, Ordering::Relaxed);
            }
            if self.chats[idx].quota > 0 {
                idle.push_back(idx);
            }
            if let Some(i) = idle.pop_front() {
                self.send_next(i, seq);
                seq += 1;
            }
            if let Some(every) = self.rss_every
                && out.answered % every == 0
            {
                let kb = procfs::rss_kb(self.pid)?;
                out.rss.push((out.answered, Instant::now(), kb));
                // A long run that is stopped early still leaves its memory curve in the log.
                if out.answered % (every * 10) == 0 {
                    eprintln!("  gateway RSS after {} messages: {:.1} MB", out.answered, kb as f64 / 1024.0);
                }
            }
        }
        out.wall = t0.elapsed();
        Ok(out)
    }

    /// Counts replies that arrive when nothing is outstanding.
    async fn settle(&mut self, d: Duration, out: &mut PhaseOut) {
        let deadline = tokio::time::Instant::now() + d;
        while let Ok(Some(r)) = tokio::time::timeout_at(deadline, self.replies.recv()).await {
            let idx = r.chat - CHAT_BASE;
            if idx < 0 || idx as usize >= self.chats.len() {
                out.unexpected += 1;
            } else {
                out.duplicates += 1;
            }
        }
    }
}

/// Least-squares slope of RSS (KiB) per 10 000 messages.
fn slope_per_10k(samples: &[(u64, Instant, u64)]) -> Option<f64> {
    if samples.len() < 3 {
        return None;
    }
    let n = samples.len() as f64;
    let mx = samples.iter().map(|s| s.0 as f64).sum::<f64>() / n;
    let my = samples.iter().map(|s| s.2 as f64).sum::<f64>() / n;
    let (mut sxy, mut sxx) = (0.0, 0.0);
    for s in samples {
        let dx = s.0 as f64 - mx;
        sxy += dx * (s.2 as f64 - my);
        sxx += dx * dx;
    }
    (sxx > 0.0).then(|| sxy / sxx * 10_000.0)
}

/// Replies/s between two RSS samples.
fn window_rate(a: &(u64, Instant, u64), b: &(u64, Instant, u64)) -> f64 {
    (b.0 - a.0) as f64 / b.1.duration_since(a.1).as_secs_f64().max(1e-9)
}

pub async fn run(args: TelegramArgs) -> Result<()> {
    let chats_n = args.chats.max(1);
    let messages = args.messages.max(1);
    let concurrency = args.concurrency.unwrap_or(chats_n).clamp(1, chats_n) as usize;
    let rss_every = args.rss_every.unwrap_or((messages / 100).max(100)).max(1);

    // The platform first: the gateway polls it as soon as it starts.
    let listener = match &args.api_root {
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
    let server = tokio::spawn(serve(listener, platform.clone()));

    let state = tempfile::Builder::new().prefix("clawgate-bench-telegram.").tempdir()?;
    let mut children = Children { gateway: None, model: None };
    let pid = match args.pid {
        Some(pid) => {
            eprintln!("telegram: Bot API at {api_root}; waiting for gateway pid {pid} to poll it");
            pid
        }
        None => {
            let (model, model_url) = start_model(args.model_chunks).await?;
            children.model = Some(model);
            let config_dir = state.path().join("config");
            std::fs::create_dir_all(&config_dir)?;
            let config = config_dir.join("clawgate.json5");
            std::fs::write(&config, gateway_config(&api_root, &model_url))?;
            let log = state.path().join("gateway.log");
            let port = free_port()?.to_string();
            let mut cmd = match &args.gateway_cpus {
                Some(cpus) => {
                    let mut c = Command::new("taskset");
                    c.arg("-c").arg(cpus).arg(&args.gateway_bin);
                    c
                }
                None => Command::new(&args.gateway_bin),
            };
            cmd.arg("gateway")
                .args(["--port", &port, "--token", GATEWAY_TOKEN])
                .arg("--config")
                .arg(&config)
                .arg("--state-dir")
                .arg(state.path().join("state"))
                .stdin(Stdio::null())
                .stdout(std::fs::File::create(&log)?)
                .stderr(std::fs::File::create(state.path().join("gateway.err"))?)
                .kill_on_drop(true);
            let child = cmd.spawn().with_context(|| format!("starting {}", args.gateway_bin.display()))?;
            let pid = child.id().context("gateway pid")?;
            children.gateway = Some(child);
            eprintln!(
                "telegram: gateway {} (pid {pid}), Bot API {api_root}, model {model_url}, state {}",
                args.gateway_bin.display(),
                state.path().display()
            );
            pid
        }
    };

    // Ready = the channel is long-polling us.
    let deadline = Instant::now() + Duration::from_secs(60);
    while platform.get_updates.load(Ordering::Relaxed) == 0 {
        if let Some(g) = children.gateway.as_mut()
            && let Some(status) = g.try_wait()?
        {
            bail!(
                "the gateway exited ({status}) before polling:\n{}\n{}",
                log_tail(&state.path().join("gateway.log")),
                log_tail(&state.path().join("gateway.err"))
            );
        }
        if Instant::now() > deadline {
            bail!("the gateway did not call getUpdates within 60 s");
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }

    let work = async {
        let mut chats: Vec<Chat> = (0..chats_n as i64)
            .map(|i| Chat { id: CHAT_BASE + i, next_message_id: 0, quota: 0, outstanding: None })
            .collect();
        let reply_timeout = Duration::from_millis(args.reply_timeout_ms.max(1));
        let mut warm_out = PhaseOut::default();
        if args.warmup > 0 {
            eprintln!("telegram: warm-up, {} messages", args.warmup);
            let mut warm = Phase {
                platform: &platform,
                replies: &mut reply_rx,
                chats: &mut chats,
                concurrency,
                reply_timeout,
                pid,
                rss_every: None,
                done: None,
            };
            warm_out = warm.run(args.warmup).await.context("warm-up")?;
            warm.settle(Duration::from_millis(500), &mut warm_out).await;
        }
        eprintln!("telegram: {messages} messages across {chats_n} chats, {concurrency} in flight");
        let progress = Progress::start("replies", messages);
        let done = progress.done.clone();
        let before = maybe_sample(Some(pid))?;
        let polls0 = platform.get_updates.load(Ordering::Relaxed);
        let served0 = platform.updates_served.load(Ordering::Relaxed);
        let cpu0 = client_cpu();
        let mut phase = Phase {
            platform: &platform,
            replies: &mut reply_rx,
            chats: &mut chats,
            concurrency,
            reply_timeout,
            pid,
            rss_every: Some(rss_every),
            done: Some(&done),
        };
        let mut out = phase.run(messages).await?;
        let client_cpu_s = client_cpu() - cpu0;
        let after = maybe_sample(Some(pid))?;
        let polls = platform.get_updates.load(Ordering::Relaxed) - polls0;
        let served = platform.updates_served.load(Ordering::Relaxed) - served0;
        drop(progress);
        phase.settle(Duration::from_millis(args.settle_ms), &mut out).await;
        Ok::<_, anyhow::Error>((warm_out, out, before, after, client_cpu_s, polls, served))
    };
    let result = tokio::select! {
        r = work => r,
        e = super::memory_guard(Some(pid), args.max_server_rss_mb) => Err(e),
    };
    let (warm, mut out, before, after, client_cpu_s, polls, served) = match result {
        Ok(v) => v,
        Err(e) if children.gateway.is_some() => {
            return Err(e.context(format!(
                "gateway log tail:\n{}\n{}",
                log_tail(&state.path().join("gateway.log")),
                log_tail(&state.path().join("gateway.err"))
            )));
        }
        Err(e) => return Err(e),
    };

    let mut r = Report::new("telegram", &args.label, &args.run_id);
    r.param("chats", chats_n)
        .param("messages", messages)
        .param("concurrency", concurrency as u64)
        .param("warmup", args.warmup)
        .param("rss_every", rss_every)
        .param("model_chunks", args.model_chunks)
        .param(
            "gateway",
            if args.pid.is_some() { "external".to_owned() } else { args.gateway_bin.display().to_string() },
        );
    let rate = out.answered as f64 / out.wall.as_secs_f64().max(1e-9);
    let latency = Summary::new(std::mem::take(&mut out.latency_ns));
    let duplicates = warm.duplicates + out.duplicates;
    let unexpected = warm.unexpected + out.unexpected;
    let missing = messages - out.answered;
    r.figure("replies", out.answered)
        .figure("duplicates", duplicates)
        .figure("missing", missing)
        .figure("unexpected", unexpected)
        .figure("wall_s", round3(out.wall.as_secs_f64()))
        .figure("replies_per_s", round3(rate))
        .figure("latency", latency.to_json())
        .figure("latency_p90_ms", round3(latency.pct_ms(90.0)))
        .figure("get_updates_calls", polls)
        .figure("updates_per_poll", round3(served as f64 / polls.max(1) as f64))
        .figure("send_chat_action_calls", platform.chat_actions.load(Ordering::Relaxed));
    r.line(format!(
        "{} replies in {:.2} s: {rate:.1} replies/s ({duplicates} duplicates, {missing} missing, {unexpected} to unknown chats)",
        out.answered,
        out.wall.as_secs_f64()
    ))
    .line(format!("inbound → sendMessage: {}  p90 {:.3} ms", latency.human(), latency.pct_ms(90.0)))
    .line(format!(
        "getUpdates: {polls} polls, {:.2} updates per poll; sendChatAction: {}",
        served as f64 / polls.max(1) as f64,
        platform.chat_actions.load(Ordering::Relaxed)
    ));
    if let (Some(first), Some(last)) = (out.rss.first(), out.rss.last()) {
        let max = out.rss.iter().map(|s| s.2).max().unwrap_or(0);
        let slope = slope_per_10k(&out.rss);
        let half = slope_per_10k(&out.rss[out.rss.len() / 2..]);
        let windows = out.rss.len().saturating_sub(1);
        // Replies/s over the first and last tenth of the run: a per-turn cost that grows with
        // the history shows here before it shows in the percentiles.
        let tenth = (windows / 10).max(1);
        let (early, late) = if windows >= 2 {
            (
                window_rate(&out.rss[0], &out.rss[tenth.min(windows)]),
                window_rate(&out.rss[windows - tenth.min(windows)], &out.rss[windows]),
            )
        } else {
            (rate, rate)
        };
        r.figure(
            "rss",
            json!({"samples": out.rss.len(), "first_kb": first.2, "last_kb": last.2, "max_kb": max,
                   "slope_kb_per_10k": slope.map(round3), "slope_second_half_kb_per_10k": half.map(round3)}),
        )
        .figure("replies_per_s_first_tenth", round3(early))
        .figure("replies_per_s_last_tenth", round3(late));
        r.line(format!(
            "gateway RSS: first {:.1} MB, last {:.1} MB, max {:.1} MB; slope {} per 10k messages ({} over the second half; {} samples)",
            first.2 as f64 / 1024.0,
            last.2 as f64 / 1024.0,
            max as f64 / 1024.0,
            slope.map_or("n/a".into(), |s| format!("{:+.1} MB", s / 1024.0)),
            half.map_or("n/a".into(), |s| format!("{:+.1} MB", s / 1024.0)),
            out.rss.len()
        ))
        .line(format!("replies/s over the first tenth {early:.1}, over the last tenth {late:.1}"));
    }
    r.cpu(before.as_ref(), after.as_ref(), out.answered, "message", out.wall, client_cpu_s);
    r.emit(args.json);
    server.abort();
    if args.keep_state {
        eprintln!("telegram: kept {}", state.keep().display());
    }
    drop(children);
    if duplicates > 0 || missing > 0 || unexpected > 0 {
        bail!("not exactly once: {duplicates} duplicate, {missing} missing, {unexpected} unexpected replies");
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn slope_is_per_ten_thousand_messages() {
        let t = Instant::now();
        let flat: Vec<_> = (0..10).map(|i| (i * 1000, t, 50_000)).collect();
        assert_eq!(slope_per_10k(&flat), Some(0.0));
        let growing: Vec<_> = (0..10).map(|i| (i * 1000, t, 50_000 + i * 100)).collect();
        assert!((slope_per_10k(&growing).unwrap() - 1000.0).abs() < 1e-6);
        assert_eq!(slope_per_10k(&growing[..2]), None);
    }

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
        assert_eq!(rx.recv().await.unwrap().chat, CHAT_BASE);
    }
}
