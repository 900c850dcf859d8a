//! `history`: `chat.history` latency on a long transcript.
//!
//! 1. Fill: `--rows` `chat.inject {sessionKey, message}` calls (they append an assistant
//!    message without running the model), pipelined over `--fill-connections` connections at
//!    `--fill-depth` requests in flight each, bounded by `--fill-max-secs`. `--rows 0` skips the
//!    fill and measures whatever the session already holds (for a server without
//!    `chat.inject`, e.g. after a `chat` run: pass that run's session key).
//! 2. Measure: on a fresh connection, `--requests` sequential `chat.history {sessionKey,
//!    limit}` calls; latency from just before the frame is written to its `res`.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use anyhow::{Result, anyhow, bail};
use clap::Args;
use futures_util::SinkExt;
use serde_json::{Value, json};
use tokio::task::JoinSet;
use tokio_tungstenite::tungstenite::Message;

use super::Common;
use crate::conn::{self, ADMIN_SCOPES, Head, Ws};
use crate::procfs::maybe_sample;
use crate::progress::Progress;
use crate::report::{Report, client_cpu};
use crate::stats::{Summary, round3};

#[derive(Args, Debug)]
pub struct HistoryArgs {
    #[command(flatten)]
    pub common: Common,
    /// Transcript rows to add with `chat.inject` before measuring (0 = no fill).
    #[arg(long, default_value_t = 100_000)]
    pub rows: u64,
    /// Session to fill and read (default: a fresh `agent:main:bench-history-<unix ms>`).
    #[arg(long)]
    pub session_key: Option<String>,
    /// `chat.history` limit.
    #[arg(long, default_value_t = 50)]
    pub limit: u64,
    /// Timed `chat.history` calls.
    #[arg(long, default_value_t = 1000)]
    pub requests: u64,
    /// Connections used for the fill.
    #[arg(long, default_value_t = 4)]
    pub fill_connections: u64,
    /// `chat.inject` requests in flight per fill connection.
    #[arg(long, default_value_t = 32)]
    pub fill_depth: u64,
    /// Bound on the fill; past it the fill stops and the rows so far are measured.
    #[arg(long, default_value_t = 900)]
    pub fill_max_secs: u64,
}

pub async fn run(args: HistoryArgs) -> Result<()> {
    let c = &args.common;
    let target = c.target()?;
    let op_timeout = c.op_timeout();
    let key = args.session_key.clone().unwrap_or_else(|| format!("agent:main:{}", super::chat::default_prefix()));
    let connect = conn::connect_frame("c1", &c.token, ADMIN_SCOPES);
    let mut r = Report::new("history", &c.label, &c.run_id);
    r.param("url", c.url.as_str())
        .param("rows", args.rows)
        .param("limit", args.limit)
        .param("requests", args.requests)
        .param("session_key", key.as_str());

    // 1. Fill.
    if args.rows > 0 {
        let conns = args.fill_connections.clamp(1, args.rows);
        eprintln!("history: filling {key} with {} rows over {conns} connections, depth {}", args.rows, args.fill_depth);
        let sockets = conn::connect_many(&target, &connect, conns, 4, op_timeout, Some("operator.write")).await?;
        let progress = Progress::start("rows", args.rows);
        let next = Arc::new(AtomicU64::new(0));
        let deadline = Instant::now() + Duration::from_secs(args.fill_max_secs.max(1));
        let before = maybe_sample(c.pid)?;
        let t0 = Instant::now();
        let mut set = JoinSet::new();
        for ws in sockets {
            let (next, done, key) = (next.clone(), progress.done.clone(), key.clone());
            let (rows, depth) = (args.rows, args.fill_depth.max(1));
            set.spawn(async move { fill(ws, &key, rows, depth, &next, &done, deadline, op_timeout).await });
        }
        let (mut filled, mut errors, mut first_error) = (0u64, 0u64, None);
        while let Some(j) = set.join_next().await {
            let (ok, err, first, ws) = j??;
            filled += ok;
            errors += err;
            if first_error.is_none() {
                first_error = first;
            }
            conn::close(ws, Duration::from_secs(1)).await;
        }
        let wall = t0.elapsed();
        let after = maybe_sample(c.pid)?;
        drop(progress);
        let rate = filled as f64 / wall.as_secs_f64().max(1e-9);
        r.figure("filled", filled)
            .figure("fill_errors", errors)
            .figure("fill_wall_s", round3(wall.as_secs_f64()))
            .figure("fill_rows_per_s", round3(rate));
        r.line(format!("fill: {filled} rows in {:.1} s ({rate:.0} rows/s), {errors} errors", wall.as_secs_f64()));
        if let (Some(b), Some(a)) = (&before, &after) {
            let per_row = (a.cpu_tree_s - b.cpu_tree_s).max(0.0) * 1e6 / filled.max(1) as f64;
            r.figure("fill_server_cpu_per_row_us", round3(per_row));
            r.line(format!("fill: server CPU {per_row:.1} µs per row"));
        }
        if let Some(e) = &first_error {
            r.figure("fill_first_error", e.as_str());
            r.line(format!("fill: first error: {e}"));
        }
        if filled == 0 {
            bail!("chat.inject filled no rows: {}", first_error.unwrap_or_default());
        }
        if filled < args.rows {
            r.line(format!("fill stopped at {filled}/{} rows (--fill-max-secs {})", args.rows, args.fill_max_secs));
        }
    }

    // 2. Measure on a fresh connection (no backlog of inject events).
    let mut ws = conn::connect_many(&target, &connect, 1, 1, op_timeout, Some("operator.read"))
        .await?
        .pop()
        .ok_or_else(|| anyhow!("no connection"))?;
    let tail = format!(",\"method\":\"chat.history\",\"params\":{}}}", json!({"sessionKey": key, "limit": args.limit}));
    // One untimed call to check the answer's shape (and warm any cache, as a client would).
    let probe = call(&mut ws, "h0", &tail, op_timeout).await?;
    let payload = probe.0.get("payload").cloned().unwrap_or_default();
    let returned = payload.get("messages").and_then(Value::as_array).map_or(0, Vec::len);
    let total = payload.get("totalMessages").and_then(Value::as_u64);
    r.figure("messages_returned", returned as u64).figure("response_bytes", probe.1 as u64);
    if let Some(t) = total {
        r.figure("total_messages", t);
    }
    r.line(format!(
        "chat.history limit {} returns {returned} messages ({} bytes); session total {}",
        args.limit,
        probe.1,
        total.map_or("n/a".into(), |t| t.to_string())
    ));

    let before = maybe_sample(c.pid)?;
    let cpu0 = client_cpu();
    let t0 = Instant::now();
    let mut lat = Vec::with_capacity(args.requests as usize);
    for i in 1..=args.requests {
        let s = Instant::now();
        let (res, _) = call(&mut ws, &format!("h{i}"), &tail, op_timeout).await?;
        lat.push(s.elapsed().as_nanos() as u64);
        if res.get("ok").and_then(Value::as_bool) != Some(true) {
            bail!("chat.history failed: {}", res.get("error").cloned().unwrap_or_default());
        }
    }
    let wall = t0.elapsed();
    let client_cpu_s = client_cpu() - cpu0;
    let after = maybe_sample(c.pid)?;
    let lat = Summary::new(lat);
    r.figure("latency", lat.to_json()).figure("wall_s", round3(wall.as_secs_f64()));
    r.line(format!("chat.history latency: {}", lat.human()));
    r.cpu(before.as_ref(), after.as_ref(), args.requests, "chat.history", wall, client_cpu_s);
    r.emit(c.json);
    conn::close(ws, Duration::from_secs(1)).await;
    Ok(())
}

/// One request, waiting for its `res`; returns it parsed with the frame's size.
async fn call(ws: &mut Ws, id: &str, tail: &str, op_timeout: Duration) -> Result<(Value, usize)> {
    ws.send(Message::text(format!("{{\"type\":\"req\",\"id\":\"{id}\"{tail}"))).await?;
    let deadline = Instant::now() + op_timeout;
    loop {
        let left = deadline.saturating_duration_since(Instant::now());
        let Some(text) = conn::next_text(ws, left).await? else { bail!("server closed the connection") };
        if !text.contains("\"type\":\"res\"") {
            continue;
        }
        if let Some(h) = Head::parse(&text)
            && h.kind == "res"
            && h.id.as_deref() == Some(id)
        {
            return Ok((serde_json::from_str(&text)?, text.len()));
        }
    }
}

/// One fill connection: takes row numbers from `next` until `rows` are claimed or the
/// deadline passes, keeping up to `depth` injects in flight.
#[allow(clippy::too_many_arguments)]
async fn fill(
    mut ws: Ws,
    key: &str,
    rows: u64,
    depth: u64,
    next: &AtomicU64,
    done: &AtomicU64,
    deadline: Instant,
    op_timeout: Duration,
) -> Result<(u64, u64, Option<String>, Ws)> {
    let (mut inflight, mut ok, mut errors, mut first_error) = (0u64, 0u64, 0u64, None);
    let mut exhausted = false;
    // Bounded: at most `rows` requests are sent overall, and each read times out.
    loop {
        while !exhausted && inflight < depth && Instant::now() < deadline {
            let n = next.fetch_add(1, Ordering::Relaxed);
            if n >= rows {
                exhausted = true;
                break;
            }
            let frame = json!({
                "type": "req", "id": format!("i{n}"), "method": "chat.inject",
                "params": {"sessionKey": key, "message": format!("bench history row {n}: some ordinary assistant text")},
            })
            .to_string();
            ws.feed(Message::text(frame)).await?;
            inflight += 1;
        }
        if Instant::now() >= deadline {
            exhausted = true;
        }
        ws.flush().await?;
        if inflight == 0 {
            break;
        }
        let Some(text) = conn::next_text(&mut ws, op_timeout).await? else {
            bail!("server closed a fill connection");
        };
        if !text.contains("\"type\":\"res\"") {
            continue;
        }
        let Some(h) = Head::parse(&text) else { continue };
        if h.kind != "res" || !h.id.as_deref().is_some_and(|i| i.starts_with('i')) {
            continue;
        }
        inflight -= 1;
        if h.ok == Some(true) {
            ok += 1;
            done.fetch_add(1, Ordering::Relaxed);
        } else {
            errors += 1;
            if first_error.is_none() {
                let v: Value = serde_json::from_str(&text).unwrap_or_default();
                first_error = Some(v.get("error").cloned().unwrap_or_default().to_string());
            }
            // A server without chat.inject: stop at once instead of failing every row.
            if errors >= 100 && ok == 0 {
                exhausted = true;
            }
        }
    }
    Ok((ok, errors, first_error, ws))
}
