//! `handshake`: how fast the server admits new authenticated connections.
//!
//! Each of `--concurrency` workers loops: open TCP + WS, wait for `connect.challenge`, send
//! `connect`, wait for `hello-ok` (that span is the latency sample), then close politely.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use anyhow::{Result, bail};
use clap::Args;
use tokio::task::JoinSet;

use super::Common;
use crate::conn::{self, ADMIN_SCOPES};
use crate::procfs::maybe_sample;
use crate::progress::Progress;
use crate::report::{Report, client_cpu};
use crate::stats::{Summary, round3};

#[derive(Args, Debug)]
pub struct HandshakeArgs {
    #[command(flatten)]
    pub common: Common,
    /// Handshakes in total.
    #[arg(long, default_value_t = 1000)]
    pub count: u64,
    /// Workers doing handshakes at the same time.
    #[arg(long, default_value_t = 1)]
    pub concurrency: u64,
    /// Give up after this many failed handshakes.
    #[arg(long, default_value_t = 10)]
    pub max_errors: u64,
}

struct WorkerOut {
    latencies: Vec<Duration>,
    errors: u64,
    first_error: Option<String>,
}

pub async fn run(args: HandshakeArgs) -> Result<()> {
    let c = &args.common;
    let target = conn::Target::parse(&c.url)?;
    let connect = Arc::new(conn::connect_frame("c1", &c.token, ADMIN_SCOPES));
    let op_timeout = c.op_timeout();
    let concurrency = args.concurrency.clamp(1, args.count.max(1));
    eprintln!("handshake: {} handshakes, concurrency {concurrency}, {}", args.count, c.url);

    let next = Arc::new(AtomicU64::new(0));
    let errors = Arc::new(AtomicU64::new(0));
    let progress = Progress::start("handshakes", args.count);
    let before = maybe_sample(c.pid)?;
    let cpu0 = client_cpu();
    let t0 = Instant::now();
    let mut set = JoinSet::new();
    for _ in 0..concurrency {
        let (target, connect, next, errors) = (target.clone(), connect.clone(), next.clone(), errors.clone());
        let done = progress.done.clone();
        let (count, max_errors) = (args.count, args.max_errors);
        set.spawn(async move {
            let mut out = WorkerOut { latencies: Vec::new(), errors: 0, first_error: None };
            // Bounded by `count` (shared) and by `max_errors`.
            while next.fetch_add(1, Ordering::Relaxed) < count {
                if errors.load(Ordering::Relaxed) >= max_errors {
                    break;
                }
                let start = Instant::now();
                match conn::connect(&target, &connect, op_timeout).await {
                    Ok((ws, _hello)) => {
                        out.latencies.push(start.elapsed());
                        conn::close(ws, Duration::from_secs(1)).await;
                    }
                    Err(e) => {
                        out.errors += 1;
                        errors.fetch_add(1, Ordering::Relaxed);
                        out.first_error.get_or_insert_with(|| format!("{e:#}"));
                    }
                }
                done.fetch_add(1, Ordering::Relaxed);
            }
            out
        });
    }
    let mut latencies = Vec::with_capacity(args.count as usize);
    let mut error_count = 0;
    let mut first_error = None;
    while let Some(joined) = set.join_next().await {
        let out = joined?;
        latencies.extend(out.latencies);
        error_count += out.errors;
        if first_error.is_none() {
            first_error = out.first_error;
        }
    }
    let wall = t0.elapsed();
    let client_cpu_s = client_cpu() - cpu0;
    let after = maybe_sample(c.pid)?;
    drop(progress);

    if latencies.is_empty() {
        bail!("no handshake succeeded: {}", first_error.unwrap_or_default());
    }
    let ok = latencies.len() as u64;
    let rate = ok as f64 / wall.as_secs_f64();
    let lat = Summary::from_durations(&latencies);
    let mut r = Report::new("handshake", &c.label, &c.run_id);
    r.param("url", c.url.as_str()).param("count", args.count).param("concurrency", concurrency);
    r.figure("ok", ok)
        .figure("errors", error_count)
        .figure("wall_s", round3(wall.as_secs_f64()))
        .figure("rate_per_s", round3(rate))
        .figure("latency", lat.to_json());
    if let Some(e) = &first_error {
        r.figure("first_error", e.as_str());
        r.line(format!("errors: {error_count} (first: {e})"));
    }
    r.line(format!("{ok} handshakes in {:.2} s: {rate:.0}/s", wall.as_secs_f64()))
        .line(format!("open→hello-ok latency: {}", lat.human()));
    r.cpu(before.as_ref(), after.as_ref(), ok, "handshake", wall, client_cpu_s);
    r.emit(c.json);
    Ok(())
}
