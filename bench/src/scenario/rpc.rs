//! `rpc`: request throughput and latency over already-authenticated connections.
//!
//! `--connections` sockets are opened and authenticated first (not timed). Then all start
//! together; each keeps up to `--depth` requests outstanding until it has had `--requests`
//! answers. Latency is from just before the request is written to when its `res` (matched by
//! id) is read; events arriving meanwhile are skipped.

use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::{Context, Result, anyhow, bail};
use clap::Args;
use futures_util::SinkExt;
use tokio::sync::Barrier;
use tokio::task::JoinSet;
use tokio_tungstenite::tungstenite::Message;

use super::Common;
use crate::conn::{self, ADMIN_SCOPES, Head, Ws};
use crate::procfs::maybe_sample;
use crate::progress::Progress;
use crate::report::{Report, client_cpu};
use crate::stats::{Summary, round3};

#[derive(Args, Debug)]
pub struct RpcArgs {
    #[command(flatten)]
    pub common: Common,
    /// Connections, each its own pipeline.
    #[arg(long, default_value_t = 1)]
    pub connections: u64,
    /// Requests per connection.
    #[arg(long, default_value_t = 1000)]
    pub requests: u64,
    /// Requests outstanding per connection (1 = strict request/response).
    #[arg(long, default_value_t = 1)]
    pub depth: u64,
    /// Method to call.
    #[arg(long, default_value = "health")]
    pub method: String,
    /// Params object, as JSON.
    #[arg(long, default_value = "{}")]
    pub params: String,
}

struct ConnOut {
    latencies_ns: Vec<u64>,
    errors: u64,
    first_error: Option<String>,
}

pub async fn run(args: RpcArgs) -> Result<()> {
    let c = &args.common;
    let target = conn::Target::parse(&c.url)?;
    let params: serde_json::Value = serde_json::from_str(&args.params).context("--params must be JSON")?;
    let op_timeout = c.op_timeout();
    let connections = args.connections.max(1);
    let depth = args.depth.max(1);
    let connect = conn::connect_frame("c1", &c.token, ADMIN_SCOPES);
    eprintln!("rpc: {} × {} `{}` requests, depth {depth}, {}", connections, args.requests, args.method, c.url);

    // Open and authenticate all connections first (not timed).
    let sockets = conn::connect_many(&target, &connect, connections, 16, op_timeout, None).await?;
    eprintln!("rpc: {} connections authenticated", sockets.len());

    // Prebuilt request prefix/suffix: only the id varies.
    let method_json = serde_json::to_string(&args.method)?;
    let params_json = params.to_string();
    let frame_tail: Arc<str> = format!(",\"method\":{method_json},\"params\":{params_json}}}").into();

    let total = connections * args.requests;
    let progress = Progress::start("responses", total);
    let barrier = Arc::new(Barrier::new(connections as usize + 1));
    let mut set = JoinSet::new();
    for ws in sockets {
        let barrier = barrier.clone();
        let tail = frame_tail.clone();
        let done = progress.done.clone();
        let requests = args.requests;
        set.spawn(async move {
            barrier.wait().await;
            pipeline(ws, requests, depth, &tail, op_timeout, &done).await
        });
    }
    let before = maybe_sample(c.pid)?;
    let cpu0 = client_cpu();
    barrier.wait().await;
    let t0 = Instant::now();
    let mut all = Vec::with_capacity(total as usize);
    let mut errors = 0;
    let mut first_error = None;
    let mut failures = Vec::new();
    let mut open_sockets = Vec::with_capacity(connections as usize);
    while let Some(j) = set.join_next().await {
        match j? {
            Ok((out, ws)) => {
                open_sockets.push(ws);
                all.extend(out.latencies_ns);
                errors += out.errors;
                if first_error.is_none() {
                    first_error = out.first_error;
                }
            }
            Err(e) => failures.push(format!("{e:#}")),
        }
    }
    let wall = t0.elapsed();
    let client_cpu_s = client_cpu() - cpu0;
    let after = maybe_sample(c.pid)?;
    drop(progress);
    if let Some(f) = failures.first() {
        bail!("{} of {connections} connections failed: {f}", failures.len());
    }

    let answered = all.len() as u64;
    let rate = answered as f64 / wall.as_secs_f64();
    let lat = Summary::new(all);
    let mut r = Report::new("rpc", &c.label, &c.run_id);
    r.param("url", c.url.as_str())
        .param("method", args.method.as_str())
        .param("connections", connections)
        .param("requests", args.requests)
        .param("depth", depth);
    r.figure("answered", answered)
        .figure("errors", errors)
        .figure("wall_s", round3(wall.as_secs_f64()))
        .figure("rate_per_s", round3(rate))
        .figure("latency", lat.to_json());
    r.line(format!("{answered} responses in {:.2} s: {rate:.0} req/s", wall.as_secs_f64()))
        .line(format!("latency: {}", lat.human()));
    if let Some(e) = &first_error {
        r.figure("first_error", e.as_str());
        r.line(format!("ok:false responses: {errors} (first: {e})"));
    }
    r.cpu(before.as_ref(), after.as_ref(), answered, "request", wall, client_cpu_s);
    r.emit(c.json);
    // Close after the measurement so close handling is not part of the timed window.
    let mut closing = JoinSet::new();
    for ws in open_sockets {
        closing.spawn(conn::close(ws, Duration::from_secs(1)));
    }
    while closing.join_next().await.is_some() {}
    Ok(())
}

async fn pipeline(
    mut ws: Ws,
    requests: u64,
    depth: u64,
    tail: &str,
    op_timeout: Duration,
    done: &std::sync::atomic::AtomicU64,
) -> Result<(ConnOut, Ws)> {
    let mut sent_at: Vec<Option<Instant>> = vec![None; requests as usize];
    let mut out = ConnOut { latencies_ns: Vec::with_capacity(requests as usize), errors: 0, first_error: None };
    let (mut next, mut inflight, mut answered) = (0u64, 0u64, 0u64);
    while answered < requests {
        if inflight < depth && next < requests {
            while inflight < depth && next < requests {
                let frame = format!("{{\"type\":\"req\",\"id\":\"b{next}\"{tail}");
                sent_at[next as usize] = Some(Instant::now());
                ws.feed(Message::text(frame)).await?;
                next += 1;
                inflight += 1;
            }
            ws.flush().await?;
        }
        let text = conn::next_text(&mut ws, op_timeout)
            .await?
            .ok_or_else(|| anyhow!("server closed after {answered} answers"))?;
        let Some(head) = Head::parse(&text) else {
            continue;
        };
        if head.kind != "res" {
            continue;
        }
        let Some(idx) = head.id.as_deref().and_then(|id| id.strip_prefix('b')).and_then(|n| n.parse::<usize>().ok())
        else {
            continue;
        };
        // Each id is answered once; a second answer (or a stray id) is not a sample.
        let Some(sent) = sent_at.get_mut(idx).and_then(Option::take) else {
            continue;
        };
        out.latencies_ns.push(sent.elapsed().as_nanos() as u64);
        if head.ok != Some(true) {
            out.errors += 1;
            if out.first_error.is_none() {
                let v: serde_json::Value = serde_json::from_str(&text).unwrap_or_default();
                out.first_error = Some(v.get("error").cloned().unwrap_or_default().to_string());
            }
        }
        inflight -= 1;
        answered += 1;
        done.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
    }
    Ok((out, ws))
}
