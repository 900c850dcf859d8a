//! One benchmark client connection: open the socket, run the OpenClaw handshake, read frames.
//!
//! The handshake is the real one (protocol 4, shared token, `cli`/`cli` client so the requested
//! scopes are kept on loopback). Everything else in the tool goes through [`Target`], which only
//! accepts a loopback `ws://` URL: the tool must never load anything but a local server.

use std::borrow::Cow;
use std::net::{IpAddr, SocketAddr};
use std::time::{Duration, Instant};

use anyhow::{Context, Result, anyhow, bail};
use futures_util::{SinkExt, StreamExt};
use serde::Deserialize;
use tokio::net::TcpStream;
use tokio::time::timeout;
use tokio_tungstenite::WebSocketStream;
use tokio_tungstenite::tungstenite::Message;
use tokio_tungstenite::tungstenite::protocol::WebSocketConfig;

/// An open client WebSocket.
pub type Ws = WebSocketStream<TcpStream>;

/// Scopes of an operator that may do everything (the trigger and rpc clients).
pub const ADMIN_SCOPES: &[&str] = &["operator.admin", "operator.read", "operator.write"];
/// Scopes of a pure listener (receives `presence` broadcasts, nothing more).
pub const READ_SCOPES: &[&str] = &["operator.read"];

/// A checked loopback WebSocket endpoint.
#[derive(Clone, Debug)]
pub struct Target {
    /// The URL as given (sent as the HTTP request target).
    pub url: String,
    /// Where the TCP connection goes; always a loopback address.
    pub addr: SocketAddr,
}

impl Target {
    /// Accepts `ws://127.x.x.x:P[/path]`, `ws://[::1]:P[/path]` or `ws://localhost:P[/path]`.
    pub fn parse(url: &str) -> Result<Self> {
        let rest = url
            .strip_prefix("ws://")
            .ok_or_else(|| anyhow!("url must start with ws:// (got {url:?}); TLS is not supported"))?;
        let authority = rest.split('/').next().unwrap_or_default();
        let (host, port) =
            authority.rsplit_once(':').ok_or_else(|| anyhow!("url must carry an explicit port (got {url:?})"))?;
        let port: u16 = port.parse().with_context(|| format!("bad port in {url:?}"))?;
        let host = host.trim_start_matches('[').trim_end_matches(']');
        let ip: IpAddr = if host.eq_ignore_ascii_case("localhost") {
            IpAddr::from([127, 0, 0, 1])
        } else {
            host.parse().with_context(|| format!("host in {url:?} must be a loopback IP or localhost"))?
        };
        if !ip.is_loopback() {
            bail!("refusing to load {ip}: this tool only targets loopback addresses");
        }
        Ok(Self { url: url.to_owned(), addr: SocketAddr::new(ip, port) })
    }
}

/// The parts of any incoming frame the tool looks at. Unknown fields (payloads) are skipped
/// without being allocated.
#[derive(Deserialize)]
pub struct Head<'a> {
    #[serde(rename = "type", borrow)]
    pub kind: Cow<'a, str>,
    #[serde(borrow, default)]
    pub id: Option<Cow<'a, str>>,
    #[serde(default)]
    pub ok: Option<bool>,
    #[serde(borrow, default)]
    pub event: Option<Cow<'a, str>>,
}

impl<'a> Head<'a> {
    pub fn parse(text: &'a str) -> Option<Self> {
        serde_json::from_str(text).ok()
    }
}

/// What a successful handshake tells us.
pub struct Hello {
    /// Scopes the server granted (hello-ok `auth.scopes`), to catch a silently reduced grant.
    pub scopes: Vec<String>,
}

/// Opens TCP (no Nagle) and upgrades to WebSocket.
pub async fn open(target: &Target, op_timeout: Duration) -> Result<Ws> {
    let fut = async {
        let tcp = TcpStream::connect(target.addr).await.with_context(|| format!("tcp connect to {}", target.addr))?;
        tcp.set_nodelay(true)?;
        // 16 KiB instead of the 128 KiB default read buffer: thousands of client sockets
        // in one process, none of them reading much.
        let config = WebSocketConfig::default().read_buffer_size(16 * 1024);
        let (ws, _resp) = tokio_tungstenite::client_async_with_config(target.url.as_str(), tcp, Some(config))
            .await
            .context("websocket upgrade")?;
        Ok::<_, anyhow::Error>(ws)
    };
    timeout(op_timeout, fut).await.map_err(|_| anyhow!("timed out opening {}", target.url))?
}

/// The `connect` request body, built once per scope set.
pub fn connect_frame(id: &str, token: &str, scopes: &[&str]) -> String {
    connect_frame_with_caps(id, token, scopes, &[])
}

/// [`connect_frame`] declaring client capabilities (e.g. `session-scoped-events`).
pub fn connect_frame_with_caps(id: &str, token: &str, scopes: &[&str], caps: &[&str]) -> String {
    serde_json::json!({
        "type": "req",
        "id": id,
        "method": "connect",
        "params": {
            "minProtocol": 4,
            "maxProtocol": 4,
            "client": {"id": "cli", "version": "bench", "platform": "linux", "mode": "cli"},
            "role": "operator",
            "scopes": scopes,
            "caps": caps,
            "auth": {"token": token},
        },
    })
    .to_string()
}

/// Reads the next text frame, answering nothing (tungstenite queues pongs by itself).
/// `Ok(None)` means the peer closed.
pub async fn next_text(ws: &mut Ws, op_timeout: Duration) -> Result<Option<String>> {
    loop {
        let msg = timeout(op_timeout, ws.next())
            .await
            .map_err(|_| anyhow!("timed out after {op_timeout:?} waiting for a frame"))?;
        match msg {
            None => return Ok(None),
            Some(Err(e)) => return Err(e).context("reading frame"),
            Some(Ok(Message::Text(t))) => return Ok(Some(t.as_str().to_owned())),
            Some(Ok(Message::Close(frame))) => {
                if let Some(f) = frame {
                    bail!("server closed: {} {:?}", u16::from(f.code), f.reason.as_str());
                }
                return Ok(None);
            }
            Some(Ok(_)) => continue,
        }
    }
}

/// Waits for the `res` with this id, skipping events and other responses.
pub async fn wait_res(ws: &mut Ws, id: &str, op_timeout: Duration) -> Result<serde_json::Value> {
    let deadline = Instant::now() + op_timeout;
    loop {
        let left = deadline.saturating_duration_since(Instant::now());
        let Some(text) = next_text(ws, left).await? else {
            bail!("connection closed while waiting for res {id}");
        };
        let Some(head) = Head::parse(&text) else {
            continue;
        };
        if head.kind == "res" && head.id.as_deref() == Some(id) {
            return serde_json::from_str(&text).context("parsing res");
        }
    }
}

/// Runs the handshake on an open socket: challenge → connect → hello-ok.
pub async fn handshake(ws: &mut Ws, connect: &str, op_timeout: Duration) -> Result<Hello> {
    let deadline = Instant::now() + op_timeout;
    // Server speaks first; the challenge nonce only matters for device auth, which we don't use.
    loop {
        let left = deadline.saturating_duration_since(Instant::now());
        let Some(text) = next_text(ws, left).await? else {
            bail!("connection closed before connect.challenge");
        };
        if let Some(h) = Head::parse(&text)
            && h.kind == "event"
            && h.event.as_deref() == Some("connect.challenge")
        {
            break;
        }
    }
    ws.send(Message::text(connect)).await.context("sending connect")?;
    let left = deadline.saturating_duration_since(Instant::now());
    let res = wait_res(ws, "c1", left).await?;
    if res.get("ok").and_then(|v| v.as_bool()) != Some(true) {
        let err = res.get("error").cloned().unwrap_or_default();
        bail!("connect refused: {err}");
    }
    let payload = res.get("payload").cloned().unwrap_or_default();
    if payload.get("type").and_then(|v| v.as_str()) != Some("hello-ok") {
        bail!("connect answered without hello-ok: {payload}");
    }
    let scopes = payload
        .pointer("/auth/scopes")
        .and_then(|v| v.as_array())
        .map(|a| a.iter().filter_map(|s| s.as_str().map(str::to_owned)).collect())
        .unwrap_or_default();
    Ok(Hello { scopes })
}

/// Opens a connection and authenticates it.
pub async fn connect(target: &Target, connect: &str, op_timeout: Duration) -> Result<(Ws, Hello)> {
    let mut ws = open(target, op_timeout).await?;
    let hello = handshake(&mut ws, connect, op_timeout).await?;
    Ok((ws, hello))
}

/// Opens and authenticates `n` connections, `concurrency` at a time. Prints progress for
/// big batches. Any failure fails the whole batch (a benchmark with missing clients is void).
pub async fn connect_many(
    target: &Target,
    connect: &str,
    n: u64,
    concurrency: u64,
    op_timeout: Duration,
    need_scope: Option<&str>,
) -> Result<Vec<Ws>> {
    let connect: std::sync::Arc<str> = connect.into();
    let mut out = Vec::with_capacity(n as usize);
    let mut set = tokio::task::JoinSet::new();
    let mut started = 0u64;
    let mut last_report = Instant::now();
    // Bounded: every iteration either starts one of the `n` connects or joins one.
    while (out.len() as u64) < n {
        while started < n && (set.len() as u64) < concurrency.max(1) {
            let (target, connect) = (target.clone(), connect.clone());
            set.spawn(async move { self::connect(&target, &connect, op_timeout).await });
            started += 1;
        }
        let Some(joined) = set.join_next().await else {
            break;
        };
        let (ws, hello) =
            joined.context("connect task")?.with_context(|| format!("connection {} of {n} failed", out.len() + 1))?;
        if let Some(scope) = need_scope
            && !hello.scopes.iter().any(|s| s == scope || s == "operator.admin")
        {
            bail!(
                "server granted scopes {:?}, without {scope}: this client would miss the traffic under test",
                hello.scopes
            );
        }
        out.push(ws);
        if n >= 200 && last_report.elapsed() >= Duration::from_secs(2) {
            eprintln!("  connected {}/{n}", out.len());
            last_report = Instant::now();
        }
    }
    Ok(out)
}

/// Polite close: send a close frame, then drain until the server closes (bounded).
pub async fn close(mut ws: Ws, grace: Duration) {
    let _ = timeout(grace, async {
        let _ = ws.close(None).await;
        while let Some(Ok(_)) = ws.next().await {}
    })
    .await;
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_loopback_targets_are_accepted() {
        assert!(Target::parse("ws://127.0.0.1:18789").is_ok());
        assert!(Target::parse("ws://localhost:1/x").is_ok());
        assert!(Target::parse("ws://[::1]:5").is_ok());
        assert!(Target::parse("ws://10.0.0.1:18789").is_err());
        assert!(Target::parse("ws://example.com:80").is_err());
        assert!(Target::parse("wss://127.0.0.1:1").is_err());
        assert!(Target::parse("ws://127.0.0.1").is_err());
    }

    #[test]
    fn head_skips_payloads() {
        let h = Head::parse(r#"{"type":"res","id":"b7","ok":true,"payload":{"big":[1,2,{"x":"y"}]}}"#).expect("parses");
        assert_eq!(h.kind, "res");
        assert_eq!(h.id.as_deref(), Some("b7"));
        assert_eq!(h.ok, Some(true));
        let e = Head::parse(r#"{"type":"event","event":"tick","payload":{"ts":1},"seq":3}"#).expect("parses");
        assert_eq!(e.event.as_deref(), Some("tick"));
    }
}
