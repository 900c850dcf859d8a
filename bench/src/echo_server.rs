//! `echo-server`: the physical-limit baseline the targets are relative to.
//!
//! A minimal single-threaded WebSocket server speaking just enough of the protocol for the
//! load scenarios: a canned `connect.challenge`, a canned small `hello-ok` for `connect`, a
//! canned `{"ok":true}` result for every other request (the id is parsed and echoed), and for
//! `system-event` a `presence` event broadcast to every connection. No auth, no state, no
//! validation: anything a real gateway does on top of this is overhead to account for.

use std::borrow::Cow;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use anyhow::{Context, Result};
use clap::Args;
use futures_util::{SinkExt, StreamExt};
use serde::Deserialize;
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::broadcast;
use tokio_tungstenite::tungstenite::protocol::WebSocketConfig;
use tokio_tungstenite::tungstenite::{Message, Utf8Bytes};

#[derive(Args, Debug)]
pub struct EchoArgs {
    /// Port on 127.0.0.1 (0 picks a free one; the chosen port is printed).
    #[arg(long, default_value_t = 18799)]
    pub port: u16,
    /// Stop after this many seconds (a bound for unattended runs); 0 = run until killed.
    #[arg(long, default_value_t = 0)]
    pub max_secs: u64,
}

const CHALLENGE: &str = r#"{"type":"event","event":"connect.challenge","payload":{"nonce":"00000000-0000-4000-8000-000000000000","ts":0,"capabilities":["model-catalog-snapshot"]}}"#;

#[derive(Deserialize)]
struct Req<'a> {
    #[serde(borrow, default)]
    id: Option<Cow<'a, str>>,
    #[serde(borrow, default)]
    method: Option<Cow<'a, str>>,
}

#[derive(Deserialize)]
struct SystemEvent<'a> {
    #[serde(borrow, default)]
    params: Option<SystemEventParams<'a>>,
}

#[derive(Deserialize)]
struct SystemEventParams<'a> {
    #[serde(borrow, default)]
    text: Option<Cow<'a, str>>,
}

fn hello_ok(id_json: &str) -> String {
    format!(
        concat!(
            r#"{{"type":"res","id":{},"ok":true,"payload":{{"type":"hello-ok","protocol":4,"#,
            r#""server":{{"version":"echo","connId":"echo"}},"features":{{"methods":[],"events":[]}},"#,
            r#""snapshot":{{}},"policy":{{"maxPayload":26214400,"maxBufferedBytes":52428800,"tickIntervalMs":30000}},"#,
            r#""auth":{{"method":"token","role":"operator","scopes":["operator.admin","operator.read","operator.write"]}}}}}}"#
        ),
        id_json
    )
}

fn ok_res(id_json: &str) -> String {
    format!(r#"{{"type":"res","id":{id_json},"ok":true,"payload":{{"ok":true}}}}"#)
}

/// The presence event carries the text the trigger sent, so listeners can tell rounds apart.
fn presence(text: &str) -> Result<String> {
    let ts = SystemTime::now().duration_since(UNIX_EPOCH).map(|d| d.as_millis()).unwrap_or(0);
    Ok(format!(
        r#"{{"type":"event","event":"presence","payload":{{"presence":[{{"text":{},"ts":{ts}}}]}}}}"#,
        serde_json::to_string(text)?
    ))
}

pub fn run(args: EchoArgs) -> Result<()> {
    let rt = tokio::runtime::Builder::new_current_thread().enable_all().build()?;
    rt.block_on(serve(args))
}

async fn serve(args: EchoArgs) -> Result<()> {
    let listener = TcpListener::bind(("127.0.0.1", args.port))
        .await
        .with_context(|| format!("binding 127.0.0.1:{}", args.port))?;
    let addr = listener.local_addr()?;
    println!("echo-server listening on ws://{addr}");
    // Capacity bounds memory if a listener stalls; a lagging one just misses events.
    let (events, _) = broadcast::channel::<Utf8Bytes>(1024);
    let accept_loop = async {
        loop {
            let (tcp, _) = listener.accept().await?;
            let events = events.clone();
            tokio::spawn(async move {
                let _ = connection(tcp, events).await;
            });
        }
        #[allow(unreachable_code)]
        Ok::<(), anyhow::Error>(())
    };
    if args.max_secs > 0 {
        match tokio::time::timeout(Duration::from_secs(args.max_secs), accept_loop).await {
            Ok(r) => r,
            Err(_) => {
                eprintln!("echo-server: --max-secs reached, stopping");
                Ok(())
            }
        }
    } else {
        accept_loop.await
    }
}

async fn connection(tcp: TcpStream, events: broadcast::Sender<Utf8Bytes>) -> Result<()> {
    tcp.set_nodelay(true)?;
    // tungstenite's advice for many mostly-idle connections: a 4 KiB read buffer instead of
    // the eagerly allocated 128 KiB default (which alone would cost 128 KiB per connection).
    let config = WebSocketConfig::default().read_buffer_size(4 * 1024);
    let mut ws = tokio_tungstenite::accept_async_with_config(tcp, Some(config)).await?;
    let mut rx = events.subscribe();
    ws.send(Message::text(CHALLENGE)).await?;
    loop {
        tokio::select! {
            msg = ws.next() => {
                let text = match msg {
                    Some(Ok(Message::Text(t))) => t,
                    Some(Ok(Message::Close(_))) | None | Some(Err(_)) => break,
                    Some(Ok(_)) => continue,
                };
                let Ok(req) = serde_json::from_str::<Req>(text.as_str()) else { continue };
                let id_json = serde_json::to_string(req.id.as_deref().unwrap_or("invalid"))?;
                match req.method.as_deref() {
                    Some("connect") => ws.send(Message::text(hello_ok(&id_json))).await?,
                    Some("system-event") => {
                        let text = serde_json::from_str::<SystemEvent>(text.as_str())
                            .ok()
                            .and_then(|e| e.params)
                            .and_then(|p| p.text)
                            .unwrap_or_default();
                        // Serialised once, shared by every recipient.
                        let _ = events.send(Utf8Bytes::from(presence(&text)?));
                        ws.send(Message::text(ok_res(&id_json))).await?;
                    }
                    _ => ws.send(Message::text(ok_res(&id_json))).await?,
                }
            }
            ev = rx.recv() => match ev {
                Ok(frame) => ws.send(Message::Text(frame)).await?,
                Err(broadcast::error::RecvError::Lagged(_)) => continue,
                Err(broadcast::error::RecvError::Closed) => break,
            },
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn canned_frames_are_valid_json() {
        for s in
            [CHALLENGE.to_owned(), hello_ok("\"c1\""), ok_res("\"b\\\"1\""), presence("bench-1").expect("presence")]
        {
            let v: serde_json::Value = serde_json::from_str(&s).expect("valid JSON");
            assert!(v.get("type").is_some());
        }
    }
}
