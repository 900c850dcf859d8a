//! `chat`: agent chat turns through a gateway, streamed from a (fake) model.
//!
//! `--sessions S` authenticated connections (admin scopes, so `chat.send` is allowed) each own
//! one session `agent:main:<prefix>-<i>` and send `--turns T` `chat.send` turns one after
//! another; all sessions start together. For each turn:
//!
//! - **ack**: from just before the `chat.send` frame is written to its `res`;
//! - **TTFT**: from the same instant to the first `chat` event with `state:"delta"` of that run;
//! - **inter-delta**: between consecutive `chat` deltas of that run (as read by the client);
//! - **turn**: to the run's `chat` `state:"final"`.
//!
//! Events are broadcast to every operator connection (as upstream does), so each connection
//! also reads the other sessions' events; a cheap substring test on the run id skips them
//! before any JSON parsing. With `--scoped` each connection declares the `session-scoped-events`
//! cap and subscribes to its own session (`sessions.messages.subscribe`), so it hears only its
//! session's run events. Every wait is bounded by `--turn-timeout-ms`.
//!
//! `--report-at 10,1000` (one session, with `--pid`) also reports the server's CPU per turn over
//! the `--report-window` turns ending at each of those turns, from the scheduler's per-thread
//! nanosecond accounting: how per-turn cost grows with the session's length.

use std::borrow::Cow;
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::{Result, bail};
use clap::Args;
use futures_util::SinkExt;
use serde::Deserialize;
use serde_json::json;
use tokio::sync::Barrier;
use tokio::task::JoinSet;
use tokio_tungstenite::tungstenite::Message;

use super::Common;
use crate::conn::{self, ADMIN_SCOPES, Head, Ws};
use crate::procfs::{check_fd_room, maybe_sample};
use crate::progress::Progress;
use crate::report::{Report, client_cpu};
use crate::stats::{Summary, round3};

#[derive(Args, Debug)]
pub struct ChatArgs {
    #[command(flatten)]
    pub common: Common,
    /// Concurrent sessions, one connection each.
    #[arg(long, default_value_t = 1)]
    pub sessions: u64,
    /// Sequential turns per session.
    #[arg(long, default_value_t = 20)]
    pub turns: u64,
    /// Session keys are `agent:main:<prefix>-<i>`, idempotency keys `<prefix>-<i>-<turn>`
    /// (default: `bench-<unix ms>`, so every invocation uses fresh sessions and keys).
    #[arg(long)]
    pub session_prefix: Option<String>,
    /// Bound on one turn (send → final), in ms. Upstream needs seconds per turn.
    #[arg(long, default_value_t = 120_000)]
    pub turn_timeout_ms: u64,
    /// The model's text chunks per answer (from `fake-model --chunks`), to report how many
    /// deltas reached the client.
    #[arg(long, default_value_t = 8)]
    pub expect_chunks: u64,
    /// Diagnostic: re-arm TCP_QUICKACK on the client socket after every read, so the client
    /// never delays its ACKs. If that shortens time to first delta by ~40 ms, the server writes
    /// with Nagle's algorithm on (no TCP_NODELAY) and its small event frames wait for the
    /// client's delayed ACK.
    #[arg(long)]
    pub quickack: bool,
    /// Each connection declares the `session-scoped-events` cap and calls
    /// `sessions.messages.subscribe` for its own session before the turns start.
    #[arg(long)]
    pub scoped: bool,
    /// Turns (1-based) at which to report the server's CPU per turn, e.g. `10,1000`; needs
    /// `--pid` and `--sessions 1`.
    #[arg(long, value_delimiter = ',')]
    pub report_at: Vec<u64>,
    /// Turns averaged for each `--report-at` figure (the window ends at the named turn).
    #[arg(long, default_value_t = 5)]
    pub report_window: u64,
}

/// Server CPU over a window of one session's turns.
#[derive(Debug, Clone)]
pub struct CpuAt {
    /// The last turn of the window (1-based).
    pub turn: u64,
    /// Turns in the window.
    pub turns: u64,
    /// Server CPU over the window, ns.
    pub cpu_ns: u64,
    /// Time to first delta of each turn of the window, ns.
    pub ttft_ns: Vec<u64>,
}

/// Where and how to sample the server's CPU during a session's turns.
#[derive(Debug, Clone)]
struct CpuProbe {
    pid: u32,
    at: Vec<u64>,
    window: u64,
}

/// Per-turn samples of one session (or of a direct-to-model client).
#[derive(Default)]
pub struct TurnSamples {
    pub ack_ns: Vec<u64>,
    pub ttft_ns: Vec<u64>,
    /// TTFT of turns after each session's first (upstream's first turn on a fresh session
    /// prepares a workspace and takes seconds).
    pub ttft_warm_ns: Vec<u64>,
    pub inter_ns: Vec<u64>,
    pub turn_ns: Vec<u64>,
    pub deltas: u64,
    pub errors: u64,
    pub first_error: Option<String>,
    /// Server CPU per turn at chosen turns (`chat --report-at`).
    pub cpu_at: Vec<CpuAt>,
}

impl TurnSamples {
    pub fn merge(&mut self, o: TurnSamples) {
        self.ack_ns.extend(o.ack_ns);
        self.ttft_ns.extend(o.ttft_ns);
        self.ttft_warm_ns.extend(o.ttft_warm_ns);
        self.inter_ns.extend(o.inter_ns);
        self.turn_ns.extend(o.turn_ns);
        self.deltas += o.deltas;
        self.errors += o.errors;
        if self.first_error.is_none() {
            self.first_error = o.first_error;
        }
        self.cpu_at.extend(o.cpu_at);
    }

    pub fn error(&mut self, e: String) {
        self.errors += 1;
        if self.first_error.is_none() {
            self.first_error = Some(e);
        }
    }

    /// Adds the figures (and human lines) every turn scenario reports.
    pub fn report(self, r: &mut Report, wall: Duration, expect_chunks: u64) -> u64 {
        let turns = self.turn_ns.len() as u64;
        let rate = turns as f64 / wall.as_secs_f64().max(1e-9);
        let deltas_per_turn = if turns > 0 { self.deltas as f64 / turns as f64 } else { 0.0 };
        let (ack, ttft, warm, inter, turn) = (
            Summary::new(self.ack_ns),
            Summary::new(self.ttft_ns),
            Summary::new(self.ttft_warm_ns),
            Summary::new(self.inter_ns),
            Summary::new(self.turn_ns),
        );
        r.figure("turns", turns)
            .figure("errors", self.errors)
            .figure("wall_s", round3(wall.as_secs_f64()))
            .figure("turns_per_s", round3(rate))
            .figure("deltas_per_turn", round3(deltas_per_turn))
            .figure("ack", if ack.count() > 0 { ack.to_json() } else { serde_json::Value::Null })
            .figure("ttft", ttft.to_json())
            .figure("ttft_warm", warm.to_json())
            .figure("inter_delta", inter.to_json())
            .figure("turn", turn.to_json());
        r.line(format!("{turns} turns in {:.2} s: {rate:.1} turns/s", wall.as_secs_f64()))
            .line(format!("ack:          {}", ack.human()))
            .line(format!("first delta:  {}", ttft.human()))
            .line(format!("  warm turns: {}", warm.human()))
            .line(format!("inter-delta:  {}", inter.human()))
            .line(format!("turn (final): {}", turn.human()))
            .line(format!("deltas per turn: {deltas_per_turn:.2} (the model streamed {expect_chunks} chunks)"));
        if !self.cpu_at.is_empty() {
            let mut at = serde_json::Map::new();
            for c in &self.cpu_at {
                let per_turn_us = c.cpu_ns as f64 / 1e3 / c.turns.max(1) as f64;
                let ttft = Summary::new(c.ttft_ns.clone());
                at.insert(
                    c.turn.to_string(),
                    json!({"turns": c.turns, "server_cpu_per_turn_us": round3(per_turn_us), "ttft": ttft.to_json()}),
                );
                r.line(format!(
                    "turns {}..{}: server CPU {per_turn_us:.0} µs per turn, first delta {}",
                    c.turn + 1 - c.turns,
                    c.turn,
                    ttft.human()
                ));
            }
            r.figure("cpu_at", serde_json::Value::Object(at));
        }
        if let Some(e) = &self.first_error {
            r.figure("first_error", e.as_str());
            r.line(format!("failed turns: {} (first: {e})", self.errors));
        }
        turns
    }
}

#[derive(Deserialize)]
struct ChatEvent<'a> {
    #[serde(borrow)]
    payload: ChatPayload<'a>,
}

#[derive(Deserialize)]
struct ChatPayload<'a> {
    #[serde(borrow, rename = "runId", default)]
    run_id: Option<Cow<'a, str>>,
    #[serde(borrow, default)]
    state: Option<Cow<'a, str>>,
}

pub fn default_prefix() -> String {
    let ms = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map(|d| d.as_millis()).unwrap_or(0);
    format!("bench-{ms}")
}

pub async fn run(args: ChatArgs) -> Result<()> {
    let c = &args.common;
    let target = c.target()?;
    let sessions = args.sessions.max(1);
    let turns = args.turns.max(1);
    let prefix = args.session_prefix.clone().unwrap_or_else(default_prefix);
    let op_timeout = c.op_timeout();
    let turn_timeout = Duration::from_millis(args.turn_timeout_ms.max(1));
    check_fd_room(sessions)?;
    let probe = if args.report_at.is_empty() {
        None
    } else {
        let Some(pid) = c.pid else { bail!("--report-at needs --pid (the server's CPU is sampled)") };
        if sessions != 1 {
            bail!("--report-at measures one session's turns: use --sessions 1");
        }
        let window = args.report_window.max(1);
        if let Some(bad) = args.report_at.iter().find(|&&n| n < window || n > turns) {
            bail!("--report-at {bad}: each turn must be between --report-window ({window}) and --turns ({turns})");
        }
        Some(CpuProbe { pid, at: args.report_at.clone(), window })
    };
    eprintln!(
        "chat: {sessions} sessions × {turns} turns, sessions agent:main:{prefix}-*, {}{}",
        c.url,
        if args.scoped { ", session-scoped clients" } else { "" }
    );

    let caps: &[&str] = if args.scoped { &["session-scoped-events"] } else { &[] };
    let connect = conn::connect_frame_with_caps("c1", &c.token, ADMIN_SCOPES, caps);
    let mut sockets = conn::connect_many(&target, &connect, sessions, 16, op_timeout, Some("operator.write")).await?;
    if args.scoped {
        for (i, ws) in sockets.iter_mut().enumerate() {
            let frame = json!({"type": "req", "id": "sub", "method": "sessions.messages.subscribe",
                "params": {"key": format!("agent:main:{prefix}-{i}")}})
            .to_string();
            ws.send(Message::text(frame)).await?;
            let res = conn::wait_res(ws, "sub", op_timeout).await?;
            if res["ok"] != true {
                bail!("sessions.messages.subscribe refused: {}", res["error"]);
            }
        }
    }

    let progress = Progress::start("turns", sessions * turns);
    let barrier = Arc::new(Barrier::new(sessions as usize + 1));
    let mut set = JoinSet::new();
    for (i, ws) in sockets.into_iter().enumerate() {
        let barrier = barrier.clone();
        let done = progress.done.clone();
        let key = format!("agent:main:{prefix}-{i}");
        let quickack = args.quickack;
        let run_prefix = format!("{prefix}-{i}");
        let probe = probe.clone();
        set.spawn(async move {
            barrier.wait().await;
            session(ws, &key, &run_prefix, turns, turn_timeout, quickack, probe, &done).await
        });
    }
    let before = maybe_sample(c.pid)?;
    let cpu0 = client_cpu();
    barrier.wait().await;
    let t0 = Instant::now();
    let mut all = TurnSamples::default();
    let mut open = Vec::new();
    while let Some(j) = set.join_next().await {
        let (samples, ws) = j?;
        all.merge(samples);
        if let Some(ws) = ws {
            open.push(ws);
        }
    }
    let wall = t0.elapsed();
    let client_cpu_s = client_cpu() - cpu0;
    let after = maybe_sample(c.pid)?;
    drop(progress);

    let mut r = Report::new("chat", &c.label, &c.run_id);
    r.param("url", c.url.as_str())
        .param("sessions", sessions)
        .param("turns", turns)
        .param("session_prefix", prefix.as_str())
        .param("expect_chunks", args.expect_chunks);
    if args.quickack {
        r.param("quickack", true);
    }
    if args.scoped {
        r.param("scoped", true);
    }
    if !args.report_at.is_empty() {
        r.param("report_at", json!(args.report_at)).param("report_window", args.report_window);
    }
    let first_error = all.first_error.clone().unwrap_or_else(|| "unknown".into());
    let completed = all.report(&mut r, wall, args.expect_chunks);
    if completed == 0 {
        bail!("no turn completed: {first_error}");
    }
    r.cpu(before.as_ref(), after.as_ref(), completed, "turn", wall, client_cpu_s);
    r.emit(c.json);
    let mut closing = JoinSet::new();
    for ws in open {
        closing.spawn(conn::close(ws, Duration::from_secs(1)));
    }
    while closing.join_next().await.is_some() {}
    Ok(())
}

/// One session's turns. A failed turn is counted and the session goes on with the next; a
/// broken connection ends the session (its remaining turns are counted as failed).
#[allow(clippy::too_many_arguments)]
async fn session(
    mut ws: Ws,
    key: &str,
    run_prefix: &str,
    turns: u64,
    turn_timeout: Duration,
    quickack: bool,
    probe: Option<CpuProbe>,
    done: &std::sync::atomic::AtomicU64,
) -> (TurnSamples, Option<Ws>) {
    let mut out = TurnSamples::default();
    // (window end, CPU ns at the window's start, completed turns then)
    let mut open: Vec<(u64, u64, usize)> = Vec::new();
    for t in 0..turns {
        let n = t + 1;
        if let Some(p) = &probe {
            for &end in p.at.iter().filter(|&&end| end + 1 - p.window == n) {
                match crate::procfs::sched_cpu_ns(p.pid) {
                    Ok(ns) => open.push((end, ns, out.ttft_ns.len())),
                    Err(e) => out.error(format!("sampling the server's CPU: {e:#}")),
                }
            }
        }
        if let Err(e) = turn(&mut ws, key, run_prefix, t, turn_timeout, quickack, &mut out).await {
            out.error(format!("turn {t}: {e:#}"));
            out.errors += turns - t - 1;
            return (out, None);
        }
        if let Some(p) = &probe {
            let now = crate::procfs::sched_cpu_ns(p.pid).ok();
            for (end, start_ns, from) in open.extract_if(.., |(end, _, _)| *end == n) {
                let Some(now) = now else { continue };
                let ttft_ns = out.ttft_ns[from..].to_vec();
                out.cpu_at.push(CpuAt { turn: end, turns: p.window, cpu_ns: now.saturating_sub(start_ns), ttft_ns });
            }
        }
        done.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
    }
    (out, Some(ws))
}

async fn turn(
    ws: &mut Ws,
    key: &str,
    run_prefix: &str,
    t: u64,
    turn_timeout: Duration,
    quickack: bool,
    out: &mut TurnSamples,
) -> Result<()> {
    let run_id = format!("{run_prefix}-{t}");
    let req_id = format!("t{t}");
    let marker = format!("\"runId\":\"{run_id}\"");
    let frame = json!({
        "type": "req", "id": req_id, "method": "chat.send",
        "params": {"sessionKey": key, "message": format!("bench turn {t}"), "idempotencyKey": run_id},
    })
    .to_string();
    if quickack {
        let _ = ws.get_ref().set_quickack(true);
    }
    let t0 = Instant::now();
    ws.send(Message::text(frame)).await?;
    let deadline = t0 + turn_timeout;
    let (mut acked, mut first, mut last) = (false, None::<Instant>, None::<Instant>);
    let mut deltas = 0u64;
    let mut inter = Vec::new();
    // Bounded by the deadline: each read times out at it.
    loop {
        let left = deadline.saturating_duration_since(Instant::now());
        if left.is_zero() {
            bail!("no final within {turn_timeout:?} (acked: {acked}, deltas: {deltas})");
        }
        let Some(text) = conn::next_text(ws, left).await? else {
            bail!("server closed the connection");
        };
        let now = Instant::now();
        if quickack {
            let _ = ws.get_ref().set_quickack(true);
        }
        let mine = text.contains(&marker);
        if !mine && !text.contains("\"type\":\"res\"") {
            continue;
        }
        let Some(head) = Head::parse(&text) else { continue };
        if head.kind == "res" {
            if head.id.as_deref() != Some(req_id.as_str()) {
                continue;
            }
            if head.ok != Some(true) {
                let v: serde_json::Value = serde_json::from_str(&text).unwrap_or_default();
                // Not fatal for the session: count it and go on with the next turn.
                out.error(format!("chat.send refused: {}", v.get("error").cloned().unwrap_or_default()));
                return Ok(());
            }
            out.ack_ns.push(now.duration_since(t0).as_nanos() as u64);
            acked = true;
            continue;
        }
        if !mine || head.kind != "event" || head.event.as_deref() != Some("chat") {
            continue;
        }
        let Ok(ev) = serde_json::from_str::<ChatEvent>(&text) else { continue };
        if ev.payload.run_id.as_deref() != Some(run_id.as_str()) {
            continue;
        }
        match ev.payload.state.as_deref() {
            Some("delta") => {
                deltas += 1;
                if first.is_none() {
                    first = Some(now);
                } else if let Some(l) = last {
                    inter.push(now.duration_since(l).as_nanos() as u64);
                }
                last = Some(now);
            }
            Some("final") => {
                let Some(f) = first else {
                    out.error("final without any delta".into());
                    return Ok(());
                };
                let ttft = f.duration_since(t0).as_nanos() as u64;
                out.ttft_ns.push(ttft);
                if t > 0 {
                    out.ttft_warm_ns.push(ttft);
                }
                out.inter_ns.extend(inter);
                out.turn_ns.push(now.duration_since(t0).as_nanos() as u64);
                out.deltas += deltas;
                return Ok(());
            }
            Some(s @ ("error" | "aborted")) => {
                out.error(format!("run ended with state {s}: {}", cut(&text, 300)));
                return Ok(());
            }
            _ => {}
        }
    }
}

fn cut(s: &str, n: usize) -> &str {
    match s.char_indices().nth(n) {
        Some((i, _)) => &s[..i],
        None => s,
    }
}
