//! `fanout`: how fast one event reaches many clients.
//!
//! `--listeners` connections with `operator.read` just listen. One trigger connection
//! (admin) calls `system-event {"text":"bench-<round>"}`; the server updates the caller's
//! presence entry and broadcasts a `presence` event to every operator.read client. A
//! listener's sample for a round is the time from just before the request is written to when
//! that listener reads the first `presence` event carrying the round's text. Rounds run one
//! after another, each bounded by `--timeout-ms`.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use anyhow::{Result, anyhow, bail};
use clap::Args;
use futures_util::{SinkExt, StreamExt};
use tokio::sync::{mpsc, watch};
use tokio::task::JoinSet;
use tokio_tungstenite::tungstenite::Message;

use super::Common;
use crate::conn::{self, ADMIN_SCOPES, Head, READ_SCOPES, Ws};
use crate::procfs::{check_fd_room, maybe_sample};
use crate::report::{Report, client_cpu};
use crate::stats::{Summary, round3};

#[derive(Args, Debug)]
pub struct FanoutArgs {
    #[command(flatten)]
    pub common: Common,
    /// Listening connections (scope operator.read).
    #[arg(long, default_value_t = 100)]
    pub listeners: u64,
    /// Broadcast rounds.
    #[arg(long, default_value_t = 30)]
    pub rounds: u64,
    /// Connects in flight at once while opening listeners.
    #[arg(long, default_value_t = 16)]
    pub concurrency: u64,
    /// Quiet time after the last listener connected, before round 1.
    #[arg(long, default_value_t = 1000)]
    pub settle_ms: u64,
    /// Pause between rounds.
    #[arg(long, default_value_t = 200)]
    pub interval_ms: u64,
}

/// The text of round `r`, quoted as it appears inside the JSON payload (so `bench-1` does
/// not match `bench-10`).
fn marker(round: u64) -> String {
    format!("\"bench-{round}\"")
}

/// One listener: report the first `presence` event of each round, drop everything else.
async fn listen(
    idx: u32,
    mut ws: Ws,
    round: Arc<AtomicU64>,
    tx: mpsc::UnboundedSender<(u64, u32, Instant)>,
    mut stop: watch::Receiver<bool>,
) {
    let mut last_reported = 0;
    loop {
        tokio::select! {
            _ = stop.changed() => break,
            msg = ws.next() => match msg {
                Some(Ok(Message::Text(t))) => {
                    let now = Instant::now();
                    let r = round.load(Ordering::Acquire);
                    if r > last_reported
                        && Head::parse(t.as_str()).is_some_and(|h| h.event.as_deref() == Some("presence"))
                        && t.as_str().contains(&marker(r))
                    {
                        last_reported = r;
                        let _ = tx.send((r, idx, now));
                    }
                }
                Some(Ok(_)) => continue,
                _ => return,
            },
        }
    }
    conn::close(ws, Duration::from_secs(2)).await;
}

pub async fn run(args: FanoutArgs) -> Result<()> {
    let c = &args.common;
    let target = c.target()?;
    let n = args.listeners.max(1);
    let rounds = args.rounds.max(1);
    let op_timeout = c.op_timeout();
    check_fd_room(n + 1)?;
    eprintln!("fanout: {n} listeners, {rounds} rounds, {}", c.url);

    let listen_connect = conn::connect_frame("c1", &c.token, READ_SCOPES);
    let listeners =
        conn::connect_many(&target, &listen_connect, n, args.concurrency, op_timeout, Some("operator.read")).await?;
    let trigger_connect = conn::connect_frame("c1", &c.token, ADMIN_SCOPES);
    let mut trigger = conn::connect_many(&target, &trigger_connect, 1, 1, op_timeout, Some("operator.admin"))
        .await?
        .pop()
        .ok_or_else(|| anyhow!("no trigger connection"))?;

    let round = Arc::new(AtomicU64::new(0));
    let (tx, mut rx) = mpsc::unbounded_channel();
    let (stop_tx, stop_rx) = watch::channel(false);
    let mut tasks = JoinSet::new();
    for (i, ws) in listeners.into_iter().enumerate() {
        tasks.spawn(listen(i as u32, ws, round.clone(), tx.clone(), stop_rx.clone()));
    }
    drop(tx);
    eprintln!("fanout: all connected; settling {} ms", args.settle_ms);
    tokio::time::sleep(Duration::from_millis(args.settle_ms)).await;

    let mut delivery_ns = Vec::with_capacity((n * rounds) as usize);
    let mut all_reached_ns = Vec::with_capacity(rounds as usize);
    let mut rpc_ns = Vec::with_capacity(rounds as usize);
    let mut missed = 0u64;
    let before = maybe_sample(c.pid)?;
    let cpu0 = client_cpu();
    let t_start = Instant::now();
    for r in 1..=rounds {
        round.store(r, Ordering::Release);
        let id = format!("s{r}");
        let frame = serde_json::json!({
            "type": "req", "id": id, "method": "system-event",
            "params": {"text": format!("bench-{r}")},
        })
        .to_string();
        let t0 = Instant::now();
        trigger.send(Message::text(frame)).await?;
        let deadline = t0 + op_timeout;
        let (mut got, mut last) = (0u64, Duration::ZERO);
        let mut answered = false;
        // Bounded by the deadline: every branch either makes progress or times out.
        while got < n || !answered {
            let left = deadline.saturating_duration_since(Instant::now());
            if left.is_zero() {
                break;
            }
            tokio::select! {
                arrival = rx.recv() => {
                    let Some((rr, _idx, t)) = arrival else { bail!("all listeners are gone") };
                    if rr == r {
                        let d = t.saturating_duration_since(t0);
                        delivery_ns.push(d.as_nanos() as u64);
                        last = last.max(d);
                        got += 1;
                    }
                }
                text = conn::next_text(&mut trigger, left), if !answered => {
                    let Some(text) = text? else { bail!("server closed the trigger connection") };
                    if let Some(h) = Head::parse(&text)
                        && h.kind == "res" && h.id.as_deref() == Some(id.as_str())
                    {
                        if h.ok != Some(true) {
                            bail!("system-event refused: {text}");
                        }
                        rpc_ns.push(t0.elapsed().as_nanos() as u64);
                        answered = true;
                    }
                }
                _ = tokio::time::sleep(left) => {}
            }
        }
        if !answered {
            bail!("round {r}: no answer to system-event within {op_timeout:?}");
        }
        if got == n {
            all_reached_ns.push(last.as_nanos() as u64);
        } else {
            missed += n - got;
            eprintln!("  round {r}: only {got}/{n} listeners got the event in time");
        }
        if r % 10 == 0 || r == rounds {
            eprintln!("  round {r}/{rounds}: all reached in {:.2} ms", last.as_secs_f64() * 1e3);
        }
        tokio::time::sleep(Duration::from_millis(args.interval_ms)).await;
    }
    let wall = t_start.elapsed();
    let client_cpu_s = client_cpu() - cpu0;
    let after = maybe_sample(c.pid)?;
    let _ = stop_tx.send(true);
    conn::close(trigger, Duration::from_secs(2)).await;
    while tasks.join_next().await.is_some() {}

    let delivered = delivery_ns.len() as u64;
    let delivery = Summary::new(delivery_ns);
    let all = Summary::new(all_reached_ns);
    let rpc = Summary::new(rpc_ns);
    let mut rep = Report::new("fanout", &c.label, &c.run_id);
    rep.param("url", c.url.as_str())
        .param("listeners", n)
        .param("rounds", rounds)
        .param("interval_ms", args.interval_ms);
    rep.figure("delivered", delivered)
        .figure("missed", missed)
        .figure("delivery", delivery.to_json())
        .figure("all_reached", all.to_json())
        .figure("trigger_rpc", rpc.to_json())
        .figure("wall_s", round3(wall.as_secs_f64()));
    rep.line(format!("delivery per listener: {}", delivery.human()))
        .line(format!("all {n} reached:      {}", all.human()))
        .line(format!("system-event res:     {}", rpc.human()));
    if missed > 0 {
        rep.line(format!("missed deliveries: {missed}"));
    }
    rep.cpu(before.as_ref(), after.as_ref(), delivered, "delivered event", wall, client_cpu_s);
    rep.emit(c.json);
    Ok(())
}
