//! What the chat-platform scenarios (`telegram`, `slack`, `line`, `whatsapp`) share.
//!
//! Each of them plays one platform on 127.0.0.1 and measures inbound message → reply through a
//! gateway it starts itself. What differs is how a message gets in (a long-polled queue, signed
//! webhook POSTs) and which call carries the reply; everything else lives here:
//!
//! - [`PlatformArgs`]: the options every such scenario takes;
//! - [`Run`]: the temp dir, the fake model and gateway child processes (stopped by pid when the
//!   run ends), waiting until the platform sees the gateway ready, and the measured phases;
//! - [`Phase`]: the driver. `--messages` spread over `--chats`, at most `--concurrency` in
//!   flight and at most one per chat, so each reply is paired with the one message outstanding
//!   in its chat; a reply to a chat with nothing outstanding is a duplicate;
//! - [`serve`]: the keep-alive HTTP/1.1 loop of a fake platform API ([`Api`] answers a request);
//! - [`WebhookClient`]: keep-alive POSTs to the gateway's webhook, answered in the background;
//! - the report lines all of them print ([`report_replies`], [`report_memory`]).
//!
//! The fakes are lean on purpose, not `clawgate-testkit`'s: those record every call with its
//! decoded body for tests to search, which over many messages costs this process memory and CPU
//! on the cores the gateway runs on. These keep only what pairing a reply with its message
//! needs, and hand each reply to the driver the moment its head arrives.

use std::collections::VecDeque;
use std::future::Future;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use anyhow::{Context, Result, bail};
use clap::Args;
use serde_json::json;
use tokio::io::{AsyncBufReadExt, AsyncWriteExt, BufReader};
use tokio::net::{TcpListener, TcpStream};
use tokio::process::{Child, Command};
use tokio::sync::mpsc;

use crate::http::{Head, Reader};
use crate::procfs::{self, Sample, maybe_sample};
use crate::progress::Progress;
use crate::report::{Report, client_cpu};
use crate::stats::{Summary, round3};

/// The gateway's shared token (unused by these scenarios, but the gateway wants one).
pub const GATEWAY_TOKEN: &str = "bench-token-0123456789";

/// The options every chat-platform scenario takes.
#[derive(Args, Debug)]
pub struct PlatformArgs {
    /// The gateway binary to start (with a temp state dir and a generated config).
    #[arg(long, default_value = "target/release/clawgate")]
    pub gateway_bin: PathBuf,
    /// Pin the started gateway to these CPUs (`taskset -c LIST`), e.g. `0`; pin this tool
    /// (and with it the fake model) with `taskset -c 1 clawgate-bench …`.
    #[arg(long)]
    pub gateway_cpus: Option<String>,
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

impl PlatformArgs {
    pub fn chats(&self) -> u64 {
        self.chats.max(1)
    }

    pub fn messages(&self) -> u64 {
        self.messages.max(1)
    }

    pub fn concurrency(&self) -> usize {
        self.concurrency.unwrap_or(self.chats()).clamp(1, self.chats()) as usize
    }

    pub fn rss_every(&self) -> u64 {
        self.rss_every.unwrap_or((self.messages() / 100).max(100)).max(1)
    }

    /// What the JSON error line of a failed run carries.
    pub fn error_params(&self) -> ErrorLine {
        ErrorLine {
            json: self.json,
            label: self.label.clone(),
            run_id: self.run_id.clone(),
            params: json!({"chats": self.chats, "messages": self.messages}),
        }
    }

    /// The parameters every platform scenario reports, in this order.
    pub fn report_params(&self, r: &mut Report, gateway: String) {
        r.param("chats", self.chats())
            .param("messages", self.messages())
            .param("concurrency", self.concurrency() as u64)
            .param("warmup", self.warmup)
            .param("rss_every", self.rss_every())
            .param("model_chunks", self.model_chunks)
            .param("gateway", gateway);
    }
}

/// Identifies a failed run in its JSON error line (`report::emit_error`).
pub struct ErrorLine {
    pub json: bool,
    pub label: String,
    pub run_id: String,
    pub params: serde_json::Value,
}

pub fn unix_now() -> i64 {
    SystemTime::now().duration_since(UNIX_EPOCH).map(|d| d.as_secs() as i64).unwrap_or(0)
}

pub fn unix_now_ms() -> i64 {
    SystemTime::now().duration_since(UNIX_EPOCH).map(|d| d.as_millis() as i64).unwrap_or(0)
}

pub fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

// ---------------------------------------------------------------------------------------------
// The fake platform API: one keep-alive HTTP/1.1 loop, the answers per platform

/// One answer of a fake platform API.
pub struct Answer {
    pub status: u16,
    pub body: String,
    /// Extra headers (the content type is always JSON).
    pub headers: Vec<(&'static str, String)>,
}

impl Answer {
    pub fn json(status: u16, body: impl Into<String>) -> Self {
        Self { status, body: body.into(), headers: Vec::new() }
    }
}

/// A fake platform API: answers one request (`arrived` = when its head was read).
pub trait Api: Send + Sync + 'static {
    fn respond(&self, head: &Head, arrived: Instant, body: Vec<u8>) -> impl Future<Output = Answer> + Send;
}

fn reason(status: u16) -> &'static str {
    match status {
        200 => "OK",
        202 => "Accepted",
        400 => "Bad Request",
        401 => "Unauthorized",
        404 => "Not Found",
        409 => "Conflict",
        429 => "Too Many Requests",
        _ => "Error",
    }
}

/// Accepts connections for ever; each is served on its own task.
pub async fn serve<A: Api>(listener: TcpListener, api: Arc<A>) {
    loop {
        let Ok((tcp, _)) = listener.accept().await else { continue };
        let api = api.clone();
        tokio::spawn(async move {
            // A connection error only ends that connection; the gateway reconnects.
            let _ = connection(tcp, api.as_ref()).await;
        });
    }
}

async fn connection<A: Api>(mut tcp: TcpStream, api: &A) -> Result<()> {
    tcp.set_nodelay(true)?;
    let mut reader = Reader::new();
    // Bounded by the client: each iteration consumes one request or ends at EOF.
    loop {
        let Some(head) = reader.head(&mut tcp).await? else { return Ok(()) };
        let arrived = Instant::now();
        let body = reader.body(&mut tcp, &head).await?;
        let answer = api.respond(&head, arrived, body).await;
        let close = head.wants_close();
        let mut out = format!(
            "HTTP/1.1 {} {}\r\ncontent-type: application/json\r\ncontent-length: {}\r\n",
            answer.status,
            reason(answer.status),
            answer.body.len()
        );
        for (k, v) in &answer.headers {
            out.push_str(&format!("{k}: {v}\r\n"));
        }
        if close {
            out.push_str("connection: close\r\n");
        }
        out.push_str("\r\n");
        out.push_str(&answer.body);
        tcp.write_all(out.as_bytes()).await?;
        if close {
            return Ok(());
        }
    }
}

/// The bearer token of a request, if any.
pub fn bearer(head: &Head) -> Option<&str> {
    head.header("authorization").and_then(|v| v.strip_prefix("Bearer "))
}

// ---------------------------------------------------------------------------------------------
// Webhooks: keep-alive POSTs to the gateway, answered in the background

/// A connection kept for the next POST, and when it was last used.
struct IdleConn {
    tcp: TcpStream,
    reader: Reader,
    since: Instant,
}

/// The platform's side of webhook delivery: POSTs to the gateway over kept-alive connections (as
/// the platforms do), each answer read on its own task so a slow 200 never holds back the next
/// message. An answer other than 2xx is a failure of the run: the real platform would redeliver,
/// this tool only counts it.
pub struct WebhookClient {
    addr: SocketAddr,
    idle: Mutex<Vec<IdleConn>>,
    /// POSTs sent.
    pub posts: AtomicU64,
    /// Answers other than 2xx, and connections lost before an answer.
    pub refused: AtomicU64,
    first_refusal: Mutex<Option<String>>,
}

/// The gateway closes a kept-alive connection that sends no request head within
/// `gateway.http.headerTimeoutMs` (15 s by default); a connection idle for longer than this is
/// not reused, so a POST never lands on one being closed.
const MAX_IDLE: Duration = Duration::from_secs(5);

impl WebhookClient {
    pub fn new(addr: SocketAddr) -> Arc<Self> {
        Arc::new(Self {
            addr,
            idle: Mutex::new(Vec::new()),
            posts: AtomicU64::new(0),
            refused: AtomicU64::new(0),
            first_refusal: Mutex::new(None),
        })
    }

    fn request(&self, method: &str, path: &str, headers: &[(&str, String)], body: &[u8]) -> Vec<u8> {
        let mut out = format!("{method} {path} HTTP/1.1\r\nhost: {}\r\ncontent-length: {}\r\n", self.addr, body.len());
        for (k, v) in headers {
            out.push_str(&format!("{k}: {v}\r\n"));
        }
        out.push_str("\r\n");
        let mut out = out.into_bytes();
        out.extend_from_slice(body);
        out
    }

    async fn connect(&self) -> Result<TcpStream> {
        let tcp = TcpStream::connect(self.addr).await.with_context(|| format!("connecting to {}", self.addr))?;
        tcp.set_nodelay(true)?;
        Ok(tcp)
    }

    fn take_idle(&self) -> Option<(TcpStream, Reader)> {
        let mut idle = self.idle.lock().unwrap_or_else(PoisonError::into_inner);
        while let Some(c) = idle.pop() {
            if c.since.elapsed() < MAX_IDLE {
                return Some((c.tcp, c.reader));
            }
        }
        None
    }

    /// Sends one POST and returns when its last byte was written; the answer is read on a task.
    pub async fn post(self: &Arc<Self>, path: &str, headers: &[(&str, String)], body: &[u8]) -> Result<Instant> {
        let req = self.request("POST", path, headers, body);
        let (mut tcp, reader, at) = match self.take_idle() {
            Some((mut tcp, reader)) => {
                let at = Instant::now();
                match tcp.write_all(&req).await {
                    Ok(()) => (tcp, reader, at),
                    Err(_) => {
                        let mut tcp = self.connect().await?;
                        let at = Instant::now();
                        tcp.write_all(&req).await.context("writing a webhook POST")?;
                        (tcp, Reader::new(), at)
                    }
                }
            }
            None => {
                let mut tcp = self.connect().await?;
                let at = Instant::now();
                tcp.write_all(&req).await.context("writing a webhook POST")?;
                (tcp, Reader::new(), at)
            }
        };
        self.posts.fetch_add(1, Ordering::Relaxed);
        let this = self.clone();
        let mut reader = reader;
        tokio::spawn(async move {
            let answer = async {
                let head = reader.head(&mut tcp).await?.context("the gateway closed the connection")?;
                let body = reader.body(&mut tcp, &head).await?;
                anyhow::Ok((head, body))
            }
            .await;
            match answer {
                Ok((head, _)) if head.second.starts_with('2') => {
                    if !head.wants_close() {
                        let mut idle = this.idle.lock().unwrap_or_else(PoisonError::into_inner);
                        idle.push(IdleConn { tcp, reader, since: Instant::now() });
                    }
                }
                Ok((head, body)) => {
                    let text: String = String::from_utf8_lossy(&body).chars().take(200).collect();
                    this.refuse(format!("the webhook answered {}: {text}", head.second));
                }
                Err(e) => this.refuse(format!("no answer to a webhook POST: {e:#}")),
            }
        });
        Ok(at)
    }

    fn refuse(&self, why: String) {
        self.refused.fetch_add(1, Ordering::Relaxed);
        let mut first = self.first_refusal.lock().unwrap_or_else(PoisonError::into_inner);
        if first.is_none() {
            *first = Some(why);
        }
    }

    /// The first refusal, if any.
    pub fn failure(&self) -> Option<String> {
        self.first_refusal.lock().unwrap_or_else(PoisonError::into_inner).clone()
    }

    /// One request on its own connection, answered before this returns (the verification
    /// requests a platform's console makes): status and body.
    pub async fn call(
        &self,
        method: &str,
        path: &str,
        headers: &[(&str, String)],
        body: &[u8],
    ) -> Result<(u16, String)> {
        let mut headers = headers.to_vec();
        headers.push(("connection", "close".to_owned()));
        let req = self.request(method, path, &headers, body);
        let mut tcp = self.connect().await?;
        tcp.write_all(&req).await?;
        let mut reader = Reader::new();
        let head = reader.head(&mut tcp).await?.context("the gateway closed the connection")?;
        let body = reader.body(&mut tcp, &head).await?;
        let status = head.second.parse().with_context(|| format!("status {:?}", head.second))?;
        Ok((status, String::from_utf8_lossy(&body).into_owned()))
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

/// One run of a platform scenario: its temp dir (config, state, gateway logs) and the child
/// processes it started.
pub struct Run {
    pub name: &'static str,
    state: tempfile::TempDir,
    children: Children,
}

/// The totals of a measured run.
pub struct Measured<S> {
    pub warm: PhaseOut,
    pub out: PhaseOut,
    pub before: Option<Sample>,
    pub after: Option<Sample>,
    pub client_cpu_s: f64,
    /// The scenario's own counters at the start and at the end of the measured phase.
    pub counters: (S, S),
}

impl Run {
    pub fn new(name: &'static str) -> Result<Self> {
        let state = tempfile::Builder::new().prefix(&format!("clawgate-bench-{name}.")).tempdir()?;
        Ok(Self { name, state, children: Children { gateway: None, model: None } })
    }

    /// Starts `clawgate-bench fake-model --port 0` and returns the URL it prints.
    pub async fn start_model(&mut self, chunks: u32) -> Result<String> {
        let exe = std::env::current_exe().context("locating clawgate-bench")?;
        let mut child = Command::new(exe)
            .args(["fake-model", "--port", "0", "--threads", "1", "--chunks", &chunks.to_string()])
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .kill_on_drop(true)
            .spawn()
            .context("starting fake-model")?;
        let stdout = child.stdout.take().context("fake-model stdout")?;
        self.children.model = Some(child);
        let mut line = String::new();
        tokio::time::timeout(Duration::from_secs(10), BufReader::new(stdout).read_line(&mut line))
            .await
            .context("fake-model did not print its address within 10 s")??;
        let url = line
            .split_whitespace()
            .find(|w| w.starts_with("http://"))
            .with_context(|| format!("fake-model printed {line:?}"))?
            .to_owned();
        Ok(url)
    }

    /// Writes `config`, starts the gateway on `port` and returns its pid.
    pub fn start_gateway(&mut self, args: &PlatformArgs, port: u16, config: &str) -> Result<u32> {
        let config_dir = self.state.path().join("config");
        std::fs::create_dir_all(&config_dir)?;
        let config_path = config_dir.join("clawgate.json5");
        std::fs::write(&config_path, config)?;
        let log = self.state.path().join("gateway.log");
        let mut cmd = match &args.gateway_cpus {
            Some(cpus) => {
                let mut c = Command::new("taskset");
                c.arg("-c").arg(cpus).arg(&args.gateway_bin);
                c
            }
            None => Command::new(&args.gateway_bin),
        };
        cmd.arg("gateway")
            .args(["--port", &port.to_string(), "--token", GATEWAY_TOKEN])
            .arg("--config")
            .arg(&config_path)
            .arg("--state-dir")
            .arg(self.state.path().join("state"))
            .stdin(Stdio::null())
            .stdout(std::fs::File::create(&log)?)
            .stderr(std::fs::File::create(self.state.path().join("gateway.err"))?)
            .kill_on_drop(true);
        let child = cmd.spawn().with_context(|| format!("starting {}", args.gateway_bin.display()))?;
        let pid = child.id().context("gateway pid")?;
        self.children.gateway = Some(child);
        Ok(pid)
    }

    pub fn state_path(&self) -> &Path {
        self.state.path()
    }

    /// The last lines of the gateway's logs.
    pub fn log_tails(&self) -> String {
        format!(
            "{}\n{}",
            log_tail(&self.state.path().join("gateway.log")),
            log_tail(&self.state.path().join("gateway.err"))
        )
    }

    /// Polls `ready` until it holds (at most 60 s); fails at once when the gateway exits.
    /// `what` names the awaited event ("the gateway exited before `what`", "waited 60 s for
    /// `what`").
    pub async fn wait_ready(&mut self, what: &str, mut ready: impl AsyncFnMut() -> bool) -> Result<()> {
        let deadline = Instant::now() + Duration::from_secs(60);
        while !ready().await {
            if let Some(g) = self.children.gateway.as_mut()
                && let Some(status) = g.try_wait()?
            {
                bail!("the gateway exited ({status}) before {what}:\n{}", self.log_tails());
            }
            if Instant::now() > deadline {
                bail!("waited 60 s for {what}:\n{}", self.log_tails());
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        Ok(())
    }

    /// The warm-up, then the measured phase and the settle time after it, guarded by the memory
    /// limit. `counters` is read right before and right after the measured phase.
    pub async fn measure<P: Inbound, S>(
        &self,
        platform: &P,
        replies: &mut mpsc::Receiver<Reply>,
        args: &PlatformArgs,
        pid: u32,
        mut counters: impl FnMut() -> S,
    ) -> Result<Measured<S>> {
        let name = self.name;
        let (chats_n, messages, concurrency) = (args.chats(), args.messages(), args.concurrency());
        let work = async {
            let mut chats: Vec<Chat> = (0..chats_n).map(|_| Chat::default()).collect();
            let reply_timeout = Duration::from_millis(args.reply_timeout_ms.max(1));
            let mut warm_out = PhaseOut::default();
            if args.warmup > 0 {
                eprintln!("{name}: warm-up, {} messages", args.warmup);
                let mut warm = Phase {
                    platform,
                    replies: &mut *replies,
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
            eprintln!("{name}: {messages} messages across {chats_n} chats, {concurrency} in flight");
            let progress = Progress::start("replies", messages);
            let done = progress.done.clone();
            let before = maybe_sample(Some(pid))?;
            let counters0 = counters();
            let cpu0 = client_cpu();
            let mut phase = Phase {
                platform,
                replies: &mut *replies,
                chats: &mut chats,
                concurrency,
                reply_timeout,
                pid,
                rss_every: Some(args.rss_every()),
                done: Some(&done),
            };
            let mut out = phase.run(messages).await?;
            let client_cpu_s = client_cpu() - cpu0;
            let after = maybe_sample(Some(pid))?;
            let counters1 = counters();
            drop(progress);
            phase.settle(Duration::from_millis(args.settle_ms), &mut out).await;
            Ok::<_, anyhow::Error>(Measured {
                warm: warm_out,
                out,
                before,
                after,
                client_cpu_s,
                counters: (counters0, counters1),
            })
        };
        let result = tokio::select! {
            r = work => r,
            e = super::memory_guard(Some(pid), args.max_server_rss_mb) => Err(e),
        };
        match result {
            Err(e) if self.children.gateway.is_some() => {
                Err(e.context(format!("gateway log tail:\n{}", self.log_tails())))
            }
            other => other,
        }
    }

    /// Keeps the temp dir when asked, stops the children.
    pub fn finish(self, keep_state: bool) {
        let Self { name, state, children } = self;
        if keep_state {
            eprintln!("{name}: kept {}", state.keep().display());
        }
        drop(children);
    }
}

pub fn free_port() -> Result<u16> {
    let l = std::net::TcpListener::bind("127.0.0.1:0").context("finding a free port")?;
    Ok(l.local_addr()?.port())
}

fn log_tail(path: &Path) -> String {
    let text = std::fs::read_to_string(path).unwrap_or_default();
    let lines: Vec<&str> = text.lines().collect();
    lines[lines.len().saturating_sub(15)..].join("\n")
}

/// The model provider and agent of every generated config (`model_url`: the fake model).
pub fn model_config(model_url: &str) -> serde_json::Value {
    json!({
        "models": {"providers": {"fake": {"baseUrl": model_url, "apiKey": "fake-key", "api": "openai-completions",
                                          "models": [{"id": "fake-model", "name": "Fake Model"}]}}},
        "agents": {"defaults": {"model": {"primary": "fake/fake-model"}}},
    })
}

// ---------------------------------------------------------------------------------------------
// The driver

/// One reply call as it arrived at the fake platform.
#[derive(Debug)]
pub struct Reply {
    /// The chat (its index in this run) the reply went to; `None` for a chat this run does not
    /// know.
    pub chat: Option<usize>,
    pub at: Instant,
}

/// How a scenario hands one message to the gateway.
pub trait Inbound {
    /// Sends message `n` (counted from 1 in its chat) of chat `chat`, the `seq`-th of its phase,
    /// the way the platform delivers it; returns the moment it was handed over.
    fn send(&self, chat: usize, n: u64, seq: u64) -> impl Future<Output = Result<Instant>>;

    /// Why the platform side failed (a webhook the gateway refused), if it did.
    fn failure(&self) -> Option<String> {
        None
    }
}

#[derive(Default)]
struct Chat {
    /// Messages this chat sent so far (all phases).
    sent: u64,
    /// Messages this chat still sends in the current phase.
    quota: u64,
    /// When its one outstanding message was handed over.
    outstanding: Option<Instant>,
}

#[derive(Default)]
pub struct PhaseOut {
    pub latency_ns: Vec<u64>,
    pub answered: u64,
    pub duplicates: u64,
    pub unexpected: u64,
    pub wall: Duration,
    /// (answered so far, when, gateway RSS KiB) every `rss_every` messages.
    pub rss: Vec<(u64, Instant, u64)>,
}

struct Phase<'a, P> {
    platform: &'a P,
    replies: &'a mut mpsc::Receiver<Reply>,
    chats: &'a mut [Chat],
    concurrency: usize,
    reply_timeout: Duration,
    pid: u32,
    rss_every: Option<u64>,
    done: Option<&'a AtomicU64>,
}

impl<P: Inbound> Phase<'_, P> {
    async fn send_next(&mut self, idx: usize, seq: u64) -> Result<()> {
        let chat = &mut self.chats[idx];
        chat.quota -= 1;
        chat.sent += 1;
        let n = chat.sent;
        let at = self.platform.send(idx, n, seq).await?;
        self.chats[idx].outstanding = Some(at);
        Ok(())
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
            self.send_next(i, seq).await?;
            seq += 1;
        }
        while out.answered < total {
            let reply = match tokio::time::timeout(self.reply_timeout, self.replies.recv()).await {
                Ok(Some(r)) => r,
                Ok(None) => bail!("the fake platform stopped"),
                Err(_) => bail!(
                    "no reply for {:?}: {} of {total} answered, {} outstanding, {} duplicates so far{}",
                    self.reply_timeout,
                    out.answered,
                    self.chats.iter().filter(|c| c.outstanding.is_some()).count(),
                    out.duplicates,
                    self.platform.failure().map(|f| format!("; {f}")).unwrap_or_default()
                ),
            };
            let Some(idx) = reply.chat.filter(|&i| i < self.chats.len()) else {
                out.unexpected += 1;
                continue;
            };
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
                self.send_next(i, seq).await?;
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
            match r.chat.filter(|&i| i < self.chats.len()) {
                Some(_) => out.duplicates += 1,
                None => out.unexpected += 1,
            }
        }
    }
}

// ---------------------------------------------------------------------------------------------
// The report

/// Least-squares slope of RSS (KiB) per 10 000 messages.
pub fn slope_per_10k(samples: &[(u64, Instant, u64)]) -> Option<f64> {
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

/// What decides whether a run passed.
pub struct Tally {
    pub rate: f64,
    pub duplicates: u64,
    pub missing: u64,
    pub unexpected: u64,
}

impl Tally {
    /// Fails unless every message was answered exactly once.
    pub fn exactly_once(&self) -> Result<()> {
        let Self { duplicates, missing, unexpected, .. } = self;
        if *duplicates > 0 || *missing > 0 || *unexpected > 0 {
            bail!("not exactly once: {duplicates} duplicate, {missing} missing, {unexpected} unexpected replies");
        }
        Ok(())
    }

    /// As [`Tally::exactly_once`], but up to `allowed` doubled replies pass.
    pub fn at_most_duplicates(&self, allowed: u64) -> Result<()> {
        let Self { duplicates, missing, unexpected, .. } = self;
        if *duplicates > allowed || *missing > 0 || *unexpected > 0 {
            bail!(
                "{duplicates} duplicate (at most {allowed} allowed), {missing} missing, {unexpected} unexpected replies"
            );
        }
        Ok(())
    }
}

/// The reply counts and the latency (`path`: what is timed, e.g. `inbound → sendMessage`).
pub fn report_replies<S>(r: &mut Report, m: &mut Measured<S>, messages: u64, path: &str) -> Tally {
    let out = &mut m.out;
    let rate = out.answered as f64 / out.wall.as_secs_f64().max(1e-9);
    let latency = Summary::new(std::mem::take(&mut out.latency_ns));
    let duplicates = m.warm.duplicates + out.duplicates;
    let unexpected = m.warm.unexpected + out.unexpected;
    let missing = messages - out.answered;
    r.figure("replies", out.answered)
        .figure("duplicates", duplicates)
        .figure("missing", missing)
        .figure("unexpected", unexpected)
        .figure("wall_s", round3(out.wall.as_secs_f64()))
        .figure("replies_per_s", round3(rate))
        .figure("latency", latency.to_json())
        .figure("latency_p90_ms", round3(latency.pct_ms(90.0)));
    r.line(format!(
        "{} replies in {:.2} s: {rate:.1} replies/s ({duplicates} duplicates, {missing} missing, {unexpected} to unknown chats)",
        out.answered,
        out.wall.as_secs_f64()
    ))
    .line(format!("{path}: {}  p90 {:.3} ms", latency.human(), latency.pct_ms(90.0)));
    Tally { rate, duplicates, missing, unexpected }
}

/// The RSS curve and the rate over the first and last tenth of the run.
pub fn report_memory(r: &mut Report, out: &PhaseOut, rate: f64) {
    let (Some(first), Some(last)) = (out.rss.first(), out.rss.last()) else { return };
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

    /// A platform that answers each message `copies` times at once (0: never).
    struct Echo {
        replies: mpsc::Sender<Reply>,
        copies: usize,
    }

    impl Inbound for Echo {
        async fn send(&self, chat: usize, _n: u64, _seq: u64) -> Result<Instant> {
            let at = Instant::now();
            for _ in 0..self.copies {
                self.replies.send(Reply { chat: Some(chat), at: Instant::now() }).await?;
            }
            Ok(at)
        }
    }

    async fn phase(copies: usize, total: u64) -> Result<PhaseOut> {
        let (tx, mut rx) = mpsc::channel(1024);
        let echo = Echo { replies: tx, copies };
        let mut chats: Vec<Chat> = (0..4).map(|_| Chat::default()).collect();
        let mut p = Phase {
            platform: &echo,
            replies: &mut rx,
            chats: &mut chats,
            concurrency: 2,
            reply_timeout: Duration::from_millis(200),
            pid: std::process::id(),
            rss_every: None,
            done: None,
        };
        let mut out = p.run(total).await?;
        p.settle(Duration::from_millis(50), &mut out).await;
        Ok(out)
    }

    #[tokio::test]
    async fn each_message_is_paired_with_one_reply() {
        let out = phase(1, 10).await.unwrap();
        assert_eq!((out.answered, out.duplicates, out.unexpected, out.latency_ns.len()), (10, 0, 0, 10));
    }

    #[tokio::test]
    async fn a_second_reply_to_a_chat_counts_as_a_duplicate() {
        let out = phase(2, 10).await.unwrap();
        assert_eq!(out.answered, 10);
        assert!(out.duplicates >= 1, "{} duplicates", out.duplicates);
    }

    #[tokio::test]
    async fn a_message_never_answered_ends_the_phase_with_an_error() {
        let e = phase(0, 3).await.err().expect("no replies at all");
        assert!(e.to_string().contains("0 of 3 answered"), "{e}");
    }

    #[test]
    fn a_run_with_a_duplicate_or_a_missing_reply_fails() {
        let ok = Tally { rate: 1.0, duplicates: 0, missing: 0, unexpected: 0 };
        assert!(ok.exactly_once().is_ok());
        assert!(Tally { duplicates: 1, ..ok }.exactly_once().is_err());
        let ok = Tally { rate: 1.0, duplicates: 0, missing: 0, unexpected: 0 };
        assert!(Tally { missing: 1, ..ok }.exactly_once().is_err());
        assert!(Tally { duplicates: 2, ..ok }.at_most_duplicates(2).is_ok());
        assert!(Tally { duplicates: 3, ..ok }.at_most_duplicates(2).is_err());
        assert!(Tally { missing: 1, ..ok }.at_most_duplicates(5).is_err());
    }
}
