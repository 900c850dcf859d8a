//! `direct`: the same turns as `chat`, sent straight to the model (no gateway), to get the
//! baseline that "gateway overhead" is measured against.
//!
//! `--sessions S` keep-alive HTTP/1.1 connections each send `--turns T` sequential streaming
//! `POST <model-url>/chat/completions` requests (a raw client: request bytes out, chunked SSE
//! in). TTFT is from just before the request is written to the first SSE chunk carrying
//! `delta.content`; inter-delta is between content chunks; turn is to `data: [DONE]`. "ack" has
//! no equivalent here and stays empty.

use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::{Result, bail};
use clap::Args;
use serde_json::{Value, json};
use tokio::io::AsyncWriteExt;
use tokio::net::TcpStream;
use tokio::sync::Barrier;
use tokio::task::JoinSet;
use tokio::time::timeout;

use super::chat::{TurnSamples, default_prefix};
use crate::http::{Chunked, HttpTarget, Reader};
use crate::procfs::{check_fd_room, maybe_sample};
use crate::progress::Progress;
use crate::report::{Report, client_cpu};

#[derive(Args, Debug)]
pub struct DirectArgs {
    /// The model's base URL (loopback only), e.g. http://127.0.0.1:28804/v1.
    #[arg(long, default_value = "http://127.0.0.1:28804/v1")]
    pub model_url: String,
    /// Model id sent in the request.
    #[arg(long, default_value = "fake-model")]
    pub model: String,
    /// Concurrent sessions, one keep-alive connection each.
    #[arg(long, default_value_t = 1)]
    pub sessions: u64,
    /// Sequential turns per session.
    #[arg(long, default_value_t = 20)]
    pub turns: u64,
    /// Bound on one turn, in ms.
    #[arg(long, default_value_t = 30_000)]
    pub turn_timeout_ms: u64,
    /// The model's text chunks per answer, for the report.
    #[arg(long, default_value_t = 8)]
    pub expect_chunks: u64,
    /// The model server's pid: adds its CPU and RSS to the report.
    #[arg(long)]
    pub pid: Option<u32>,
    /// Also print one JSON object line on stdout.
    #[arg(long)]
    pub json: bool,
    #[arg(long, default_value = "direct")]
    pub label: String,
    #[arg(long, default_value = "")]
    pub run_id: String,
}

pub async fn run(args: DirectArgs) -> Result<()> {
    let target = HttpTarget::parse(&args.model_url)?;
    let sessions = args.sessions.max(1);
    let turns = args.turns.max(1);
    let turn_timeout = Duration::from_millis(args.turn_timeout_ms.max(1));
    check_fd_room(sessions)?;
    eprintln!("direct: {sessions} sessions × {turns} turns straight to {}", args.model_url);
    let prefix = default_prefix();

    let mut sockets = Vec::with_capacity(sessions as usize);
    for _ in 0..sessions {
        let tcp = timeout(Duration::from_secs(10), TcpStream::connect(target.addr)).await??;
        tcp.set_nodelay(true)?;
        sockets.push(tcp);
    }
    let progress = Progress::start("turns", sessions * turns);
    let barrier = Arc::new(Barrier::new(sessions as usize + 1));
    let mut set = JoinSet::new();
    for (i, tcp) in sockets.into_iter().enumerate() {
        let (barrier, done, target) = (barrier.clone(), progress.done.clone(), target.clone());
        let model = args.model.clone();
        let content = format!("{prefix}-{i}");
        set.spawn(async move {
            barrier.wait().await;
            let mut out = TurnSamples::default();
            let mut conn = Some((tcp, Reader::new()));
            for t in 0..turns {
                // A broken connection is replaced once per turn (keeps S connections busy).
                let (mut tcp, mut reader) = match conn.take() {
                    Some(c) => c,
                    None => match TcpStream::connect(target.addr).await {
                        Ok(tcp) => (tcp, Reader::new()),
                        Err(e) => {
                            out.error(format!("reconnect: {e}"));
                            continue;
                        }
                    },
                };
                let body = json!({
                    "model": model, "stream": true, "stream_options": {"include_usage": true},
                    "messages": [{"role": "user", "content": format!("{content} turn {t}")}],
                });
                match timeout(turn_timeout, one_turn(&mut tcp, &mut reader, &target, &body, t, &mut out)).await {
                    Ok(Ok(())) => {
                        conn = Some((tcp, reader));
                        done.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
                    }
                    Ok(Err(e)) => out.error(format!("turn {t}: {e:#}")),
                    Err(_) => out.error(format!("turn {t}: no [DONE] within {turn_timeout:?}")),
                }
            }
            out
        });
    }
    let before = maybe_sample(args.pid)?;
    let cpu0 = client_cpu();
    barrier.wait().await;
    let t0 = Instant::now();
    let mut all = TurnSamples::default();
    while let Some(j) = set.join_next().await {
        all.merge(j?);
    }
    let wall = t0.elapsed();
    let client_cpu_s = client_cpu() - cpu0;
    let after = maybe_sample(args.pid)?;
    drop(progress);

    let mut r = Report::new("direct", &args.label, &args.run_id);
    r.param("url", args.model_url.as_str())
        .param("sessions", sessions)
        .param("turns", turns)
        .param("expect_chunks", args.expect_chunks);
    let first_error = all.first_error.clone().unwrap_or_else(|| "unknown".into());
    let completed = all.report(&mut r, wall, args.expect_chunks);
    if completed == 0 {
        bail!("no turn completed: {first_error}");
    }
    r.cpu(before.as_ref(), after.as_ref(), completed, "turn", wall, client_cpu_s);
    r.emit(args.json);
    Ok(())
}

async fn one_turn(
    tcp: &mut TcpStream,
    reader: &mut Reader,
    target: &HttpTarget,
    body: &Value,
    t: u64,
    out: &mut TurnSamples,
) -> Result<()> {
    let body = body.to_string();
    let req = format!(
        "POST {}/chat/completions HTTP/1.1\r\nhost: {}\r\ncontent-type: application/json\r\n\
         accept: text/event-stream\r\nauthorization: Bearer bench\r\ncontent-length: {}\r\n\r\n{body}",
        target.base_path,
        target.host,
        body.len()
    );
    let t0 = Instant::now();
    tcp.write_all(req.as_bytes()).await?;
    let Some(head) = reader.head(tcp).await? else { bail!("model closed the connection") };
    if head.second != "200" {
        let body = reader.body(tcp, &head).await.unwrap_or_default();
        bail!("model answered {}: {}", head.second, String::from_utf8_lossy(&body));
    }
    if !head.chunked() {
        bail!("expected a chunked event stream");
    }
    let mut dec = Chunked::default();
    let mut sse = Vec::new();
    let (mut first, mut last, mut deltas, mut inter) = (None::<Instant>, None::<Instant>, 0u64, Vec::new());
    let mut done_seen = false;
    // Bounded by the caller's timeout and by the stream's end.
    loop {
        let ended = dec.feed(&mut reader.buf, &mut sse)?;
        let now = Instant::now();
        while let Some(end) = sse.windows(2).position(|w| w == b"\n\n") {
            let event: Vec<u8> = sse.drain(..end + 2).collect();
            let text = String::from_utf8_lossy(&event);
            let Some(data) = text.trim().strip_prefix("data:").map(str::trim) else { continue };
            if data == "[DONE]" {
                done_seen = true;
                continue;
            }
            let Ok(v) = serde_json::from_str::<Value>(data) else { continue };
            let has_content =
                v.pointer("/choices/0/delta/content").and_then(Value::as_str).is_some_and(|s| !s.is_empty());
            if has_content {
                deltas += 1;
                if first.is_none() {
                    first = Some(now);
                } else if let Some(l) = last {
                    inter.push(now.duration_since(l).as_nanos() as u64);
                }
                last = Some(now);
            }
        }
        if ended {
            break;
        }
        if !reader.fill(tcp).await? {
            bail!("model closed the connection mid-stream");
        }
    }
    let end = Instant::now();
    if !done_seen {
        bail!("stream ended without [DONE]");
    }
    let Some(f) = first else { bail!("stream had no content delta") };
    let ttft = f.duration_since(t0).as_nanos() as u64;
    out.ttft_ns.push(ttft);
    if t > 0 {
        out.ttft_warm_ns.push(ttft);
    }
    out.inter_ns.extend(inter);
    out.turn_ns.push(end.duration_since(t0).as_nanos() as u64);
    out.deltas += deltas;
    Ok(())
}
