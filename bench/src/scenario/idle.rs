//! `idle`: memory cost of authenticated idle connections.
//!
//! Reads the server's RSS (process tree), opens `--connections` authenticated sockets that
//! then only read (so pings are answered and events drained), waits `--settle-secs`, reads
//! RSS again, holds for `--hold-secs`, and closes everything. Meaningful on a fresh server:
//! a warm JS heap can absorb the growth in its slack.

use std::time::{Duration, Instant};

use anyhow::{Context, Result};
use clap::Args;
use futures_util::StreamExt;
use tokio::sync::watch;
use tokio::task::JoinSet;

use super::Common;
use crate::conn::{self, ADMIN_SCOPES, Ws};
use crate::procfs::{Sample, check_fd_room};
use crate::report::{Report, client_cpu};
use crate::stats::round3;

#[derive(Args, Debug)]
pub struct IdleArgs {
    #[command(flatten)]
    pub common: Common,
    /// Idle connections to open.
    #[arg(long, default_value_t = 1000)]
    pub connections: u64,
    /// Connects in flight at once while opening.
    #[arg(long, default_value_t = 16)]
    pub concurrency: u64,
    /// Wait after the last connect before reading RSS again.
    #[arg(long, default_value_t = 5)]
    pub settle_secs: u64,
    /// Keep the connections open this long after the second reading.
    #[arg(long, default_value_t = 0)]
    pub hold_secs: u64,
}

/// Keeps one socket alive: read (and drop) whatever comes until told to stop.
async fn hold(mut ws: Ws, mut stop: watch::Receiver<bool>) -> bool {
    let alive = loop {
        tokio::select! {
            _ = stop.changed() => break true,
            msg = ws.next() => match msg {
                Some(Ok(_)) => continue,
                _ => break false,
            },
        }
    };
    if alive {
        conn::close(ws, Duration::from_secs(2)).await;
    }
    alive
}

pub async fn run(args: IdleArgs) -> Result<()> {
    let c = &args.common;
    let pid = c.pid.context("idle needs --pid (the server's pid) to read its RSS")?;
    let target = c.target()?;
    let n = args.connections.max(1);
    check_fd_room(n)?;
    let connect = conn::connect_frame("c1", &c.token, ADMIN_SCOPES);
    eprintln!("idle: {n} connections to {} (server pid {pid})", c.url);

    let before = Sample::take(pid)?;
    let cpu0 = client_cpu();
    let t0 = Instant::now();
    let sockets = conn::connect_many(&target, &connect, n, args.concurrency, c.op_timeout(), None).await?;
    let open_secs = t0.elapsed().as_secs_f64();
    let (stop_tx, stop_rx) = watch::channel(false);
    let mut holders = JoinSet::new();
    for ws in sockets {
        holders.spawn(hold(ws, stop_rx.clone()));
    }
    eprintln!("idle: {n} open after {open_secs:.1} s; settling {} s", args.settle_secs);
    tokio::time::sleep(Duration::from_secs(args.settle_secs)).await;
    let after = Sample::take(pid)?;
    let closed_early = finished_count(&mut holders);
    if args.hold_secs > 0 {
        eprintln!("idle: holding {} s", args.hold_secs);
        tokio::time::sleep(Duration::from_secs(args.hold_secs)).await;
    }
    let _ = stop_tx.send(true);
    let mut still_open = 0u64;
    while let Some(j) = holders.join_next().await {
        if j.unwrap_or(false) {
            still_open += 1;
        }
    }
    let wall = t0.elapsed();
    let client_cpu_s = client_cpu() - cpu0;

    let delta_main = after.rss_main_kb as i64 - before.rss_main_kb as i64;
    let delta_tree = after.rss_tree_kb as i64 - before.rss_tree_kb as i64;
    let per_conn_main = delta_main as f64 / n as f64;
    let per_conn_tree = delta_tree as f64 / n as f64;
    let mut r = Report::new("idle", &c.label, &c.run_id);
    r.param("url", c.url.as_str()).param("connections", n).param("settle_secs", args.settle_secs);
    r.figure("before", before.to_json())
        .figure("after", after.to_json())
        .figure("open_s", round3(open_secs))
        .figure("rss_delta_main_kb", delta_main)
        .figure("rss_delta_tree_kb", delta_tree)
        .figure("kb_per_conn_main", round3(per_conn_main))
        .figure("kb_per_conn_tree", round3(per_conn_tree))
        .figure("closed_by_server_during_settle", closed_early as u64)
        .figure("still_open_at_close", still_open)
        .figure("server_cpu_s", round3(after.cpu_tree_s - before.cpu_tree_s))
        .figure("client_cpu_s", round3(client_cpu_s))
        .figure("wall_s", round3(wall.as_secs_f64()));
    r.line(format!(
        "RSS main: {:.1} MB → {:.1} MB ({delta_main:+} KB, {per_conn_main:.1} KB/conn)",
        before.rss_main_kb as f64 / 1024.0,
        after.rss_main_kb as f64 / 1024.0
    ))
    .line(format!(
        "RSS tree ({} procs): {:.1} MB → {:.1} MB ({delta_tree:+} KB, {per_conn_tree:.1} KB/conn)",
        after.pids.len(),
        before.rss_tree_kb as f64 / 1024.0,
        after.rss_tree_kb as f64 / 1024.0
    ))
    .line(format!("opened {n} in {open_secs:.1} s; {closed_early} closed by the server while idle"));
    r.emit(c.json);
    Ok(())
}

/// Holders that already returned (the server closed them) while we were settling.
fn finished_count(holders: &mut JoinSet<bool>) -> usize {
    let mut n = 0;
    while let Some(j) = holders.try_join_next() {
        if !j.unwrap_or(true) {
            n += 1;
        }
    }
    n
}
