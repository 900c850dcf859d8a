//! `fake-model`: a zero-delay OpenAI-compatible model server, so chat benchmarks measure the
//! gateway and not a model.
//!
//! - `POST <any>/chat/completions` with `"stream": true`: `text/event-stream` (chunked), one
//!   `chat.completion.chunk` per piece of text (`--chunks N`; the first carries
//!   `role:"assistant"`), then a chunk with `finish_reason:"stop"`, a usage chunk with empty
//!   `choices`, and `data: [DONE]`. `--delay-ms D` waits D ms before each text chunk (0 = none).
//! - the same with `"stream": false` (or no `stream`): one `chat.completion` JSON document.
//! - `GET <any>/models`: the model list (`fake-model`).
//!
//! Raw HTTP/1.1 with keep-alive on a multi-threaded tokio runtime, bound to 127.0.0.1 only.
//! Every connection ends when the client goes away; `--max-secs` bounds unattended runs.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use anyhow::{Context, Result};
use clap::Args;
use serde_json::{Value, json};
use tokio::io::AsyncWriteExt;
use tokio::net::{TcpListener, TcpStream};

use crate::http::{self, Reader};

#[derive(Args, Debug, Clone)]
pub struct FakeModelArgs {
    /// Port on 127.0.0.1 (0 picks a free one; the chosen port is printed).
    #[arg(long, default_value_t = 28804)]
    pub port: u16,
    /// Text chunks per streamed answer.
    #[arg(long, default_value_t = 8)]
    pub chunks: u32,
    /// Delay before each text chunk, in ms (0 = stream everything at once).
    #[arg(long, default_value_t = 0)]
    pub delay_ms: u64,
    /// Worker threads of the server's tokio runtime.
    #[arg(long, default_value_t = 2)]
    pub threads: usize,
    /// Stop after this many seconds (a bound for unattended runs); 0 = run until killed.
    #[arg(long, default_value_t = 0)]
    pub max_secs: u64,
    /// Print one stderr line per request: body size, and the time from the end of the request
    /// head to the end of the body (a client that writes head and body separately without
    /// TCP_NODELAY shows ~40 ms here: Nagle's algorithm against delayed ACKs).
    #[arg(long)]
    pub trace: bool,
}

/// The text pieces: upstream's recorded fake model said "Hello from the fake model"; longer
/// answers continue with numbered tokens.
fn piece(i: u32) -> String {
    const HELLO: [&str; 5] = ["Hello", " from", " the", " fake", " model"];
    HELLO.get(i as usize).map_or_else(|| format!(" t{i}"), |s| (*s).to_owned())
}

fn text_of(chunks: u32) -> String {
    (0..chunks).map(piece).collect()
}

struct Shared {
    args: FakeModelArgs,
    requests: AtomicU64,
}

pub fn run(args: FakeModelArgs) -> Result<()> {
    let rt = tokio::runtime::Builder::new_multi_thread().worker_threads(args.threads.max(1)).enable_all().build()?;
    rt.block_on(serve(args))
}

async fn serve(args: FakeModelArgs) -> Result<()> {
    let listener = TcpListener::bind(("127.0.0.1", args.port))
        .await
        .with_context(|| format!("binding 127.0.0.1:{}", args.port))?;
    let addr = listener.local_addr()?;
    println!("fake-model listening on http://{addr}/v1 ({} chunks, {} ms apart)", args.chunks, args.delay_ms);
    let max_secs = args.max_secs;
    let shared = Arc::new(Shared { args, requests: AtomicU64::new(0) });
    let accept_loop = async {
        loop {
            let (tcp, _) = listener.accept().await?;
            let shared = shared.clone();
            tokio::spawn(async move {
                if let Err(e) = connection(tcp, &shared).await {
                    eprintln!("fake-model: connection ended: {e:#}");
                }
            });
        }
        #[allow(unreachable_code)]
        Ok::<(), anyhow::Error>(())
    };
    let result = if max_secs > 0 {
        match tokio::time::timeout(Duration::from_secs(max_secs), accept_loop).await {
            Ok(r) => r,
            Err(_) => {
                eprintln!("fake-model: --max-secs reached, stopping");
                Ok(())
            }
        }
    } else {
        accept_loop.await
    };
    eprintln!("fake-model: served {} requests", shared.requests.load(Ordering::Relaxed));
    result
}

async fn connection(mut tcp: TcpStream, shared: &Shared) -> Result<()> {
    tcp.set_nodelay(true)?;
    let mut reader = Reader::new();
    // Bounded by the client: each iteration consumes one request or ends at EOF.
    loop {
        let Some(head) = reader.head(&mut tcp).await? else { return Ok(()) };
        let head_at = std::time::Instant::now();
        let body = reader.body(&mut tcp, &head).await?;
        if shared.args.trace {
            eprintln!(
                "fake-model: {} {} body {} bytes, head→body end {:.3} ms",
                head.first,
                head.second,
                body.len(),
                head_at.elapsed().as_secs_f64() * 1e3
            );
        }
        shared.requests.fetch_add(1, Ordering::Relaxed);
        let close = head.wants_close();
        let path = head.second.split('?').next().unwrap_or_default();
        match (head.first.as_str(), path) {
            ("POST", p) if p.ends_with("/chat/completions") => {
                let req: Value = serde_json::from_slice(&body).unwrap_or(Value::Null);
                if req.get("stream").and_then(Value::as_bool) == Some(true) {
                    stream(&mut tcp, &shared.args, &req, close).await?;
                } else {
                    let doc = completion(&shared.args, &req);
                    respond(&mut tcp, "200 OK", "application/json", doc.to_string().as_bytes(), close).await?;
                }
            }
            ("GET", p) if p.ends_with("/models") => {
                let doc = json!({"object": "list", "data": [
                    {"id": "fake-model", "object": "model", "created": 0, "owned_by": "clawgate-bench"}
                ]});
                respond(&mut tcp, "200 OK", "application/json", doc.to_string().as_bytes(), close).await?;
            }
            _ => {
                let doc = json!({"error": {"message": "not found", "type": "invalid_request_error"}});
                respond(&mut tcp, "404 Not Found", "application/json", doc.to_string().as_bytes(), close).await?;
            }
        }
        if close {
            return Ok(());
        }
    }
}

async fn respond(tcp: &mut TcpStream, status: &str, ctype: &str, body: &[u8], close: bool) -> Result<()> {
    let conn = if close { "close" } else { "keep-alive" };
    let mut out = format!(
        "HTTP/1.1 {status}\r\ncontent-type: {ctype}\r\ncontent-length: {}\r\nconnection: {conn}\r\n\r\n",
        body.len()
    )
    .into_bytes();
    out.extend_from_slice(body);
    tcp.write_all(&out).await?;
    Ok(())
}

fn model_of(req: &Value) -> &str {
    req.get("model").and_then(Value::as_str).unwrap_or("fake-model")
}

fn usage(args: &FakeModelArgs) -> Value {
    json!({"prompt_tokens": 10, "completion_tokens": args.chunks, "total_tokens": 10 + args.chunks})
}

fn completion(args: &FakeModelArgs, req: &Value) -> Value {
    json!({
        "id": "chatcmpl-bench", "object": "chat.completion", "created": 0, "model": model_of(req),
        "choices": [{"index": 0, "message": {"role": "assistant", "content": text_of(args.chunks)},
                     "finish_reason": "stop"}],
        "usage": usage(args),
    })
}

/// Streams the answer. Each SSE event is its own HTTP chunk and its own write, like a real
/// token stream; with `--delay-ms 0` they leave back to back.
async fn stream(tcp: &mut TcpStream, args: &FakeModelArgs, req: &Value, close: bool) -> Result<()> {
    let conn = if close { "close" } else { "keep-alive" };
    let head = format!(
        "HTTP/1.1 200 OK\r\ncontent-type: text/event-stream\r\ncache-control: no-cache\r\n\
         transfer-encoding: chunked\r\nconnection: {conn}\r\n\r\n"
    );
    tcp.write_all(head.as_bytes()).await?;
    let model = model_of(req);
    let event = |v: Value| http::chunk(format!("data: {v}\n\n").as_bytes());
    let chunk = |delta: Value, finish: Value| {
        json!({"id": "chatcmpl-bench", "object": "chat.completion.chunk", "created": 0, "model": model,
               "choices": [{"index": 0, "delta": delta, "finish_reason": finish}]})
    };
    for i in 0..args.chunks {
        if args.delay_ms > 0 {
            tokio::time::sleep(Duration::from_millis(args.delay_ms)).await;
        }
        let delta =
            if i == 0 { json!({"role": "assistant", "content": piece(i)}) } else { json!({"content": piece(i)}) };
        tcp.write_all(&event(chunk(delta, Value::Null))).await?;
    }
    let include_usage = req.pointer("/stream_options/include_usage").and_then(Value::as_bool).unwrap_or(true);
    let mut tail = event(chunk(json!({}), json!("stop")));
    if include_usage {
        tail.extend(event(json!({"id": "chatcmpl-bench", "object": "chat.completion.chunk", "created": 0,
                                 "model": model, "choices": [], "usage": usage(args)})));
    }
    tail.extend(http::chunk(b"data: [DONE]\n\n"));
    tail.extend_from_slice(b"0\r\n\r\n");
    tcp.write_all(&tail).await?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn text_starts_like_upstreams_fake() {
        assert_eq!(text_of(5), "Hello from the fake model");
        assert_eq!(text_of(7), "Hello from the fake model t5 t6");
    }
}
