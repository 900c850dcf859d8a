//! A recording WebSocket proxy, so that real clients can be pointed at clawgate while every frame
//! clawgate sends is kept for schema validation.
//!
//! It listens on `127.0.0.1:0` and forwards each WebSocket connection to the gateway: the upgrade
//! request's path and headers (including `Origin`) go upstream, and an upstream refusal is passed
//! back with the same HTTP status. Frames go through unchanged and are recorded in both
//! directions, with close codes and reasons. Plain HTTP requests are forwarded byte for byte (not
//! recorded beyond their request line), so a client that also probes `/healthz` keeps working.

use std::net::SocketAddr;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use anyhow::{Context, bail};
use futures_util::{SinkExt, StreamExt};
use serde_json::Value;
use tokio::net::{TcpListener, TcpStream};
use tokio::task::JoinHandle;
use tokio::time::{Instant, timeout};
use tokio_tungstenite::tungstenite::handshake::server::{ErrorResponse, Request, Response};
use tokio_tungstenite::tungstenite::protocol::CloseFrame;
use tokio_tungstenite::tungstenite::{self, Message, client::IntoClientRequest, http};

use crate::schema::ConnectionValidator;

/// Which way a frame travelled.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Direction {
    /// From the real client to clawgate.
    ClientToGateway,
    /// From clawgate to the real client.
    GatewayToClient,
}

/// Who closed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Side {
    /// The real client.
    Client,
    /// clawgate.
    Gateway,
}

/// Payload of a recorded frame.
#[derive(Debug, Clone, PartialEq)]
pub enum RecordedFrame {
    /// A text frame that parsed as JSON.
    Json(Value),
    /// A text frame that did not parse.
    Text(String),
    /// A binary frame (its length).
    Binary(usize),
}

/// One entry of the proxy's log.
#[derive(Debug, Clone, PartialEq)]
pub enum ProxyRecord {
    /// A WebSocket upgrade request from the client.
    Upgrade {
        /// Connection number (1, 2, … in accept order).
        conn: u64,
        /// Request path.
        path: String,
        /// Request headers (lower-case names).
        headers: Vec<(String, String)>,
    },
    /// The gateway refused the upgrade with this HTTP status.
    UpgradeRefused {
        /// Connection number.
        conn: u64,
        /// HTTP status.
        status: u16,
    },
    /// A data frame.
    Frame {
        /// Connection number.
        conn: u64,
        /// Direction.
        dir: Direction,
        /// Contents.
        frame: RecordedFrame,
    },
    /// A close. `code` is 1005 for a close frame without status and 1006 when the TCP connection
    /// ended without a close frame.
    Close {
        /// Connection number.
        conn: u64,
        /// Who closed.
        by: Side,
        /// Close code.
        code: u16,
        /// Close reason.
        reason: String,
    },
    /// A plain HTTP request that was forwarded without recording.
    Http {
        /// Connection number.
        conn: u64,
        /// The request line, e.g. `GET /healthz HTTP/1.1`.
        request_line: String,
    },
}

#[derive(Default)]
struct Shared {
    records: Mutex<Vec<ProxyRecord>>,
    active: AtomicUsize,
    next_conn: AtomicU64,
}

impl Shared {
    fn record(&self, record: ProxyRecord) {
        if let Ok(mut records) = self.records.lock() {
            records.push(record);
        }
    }
}

/// A recording proxy in front of one gateway. Stops when dropped.
pub struct RecordingProxy {
    addr: SocketAddr,
    shared: Arc<Shared>,
    accept_task: JoinHandle<()>,
}

impl std::fmt::Debug for RecordingProxy {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RecordingProxy").field("addr", &self.addr).finish_non_exhaustive()
    }
}

impl Drop for RecordingProxy {
    fn drop(&mut self) {
        self.accept_task.abort();
    }
}

impl RecordingProxy {
    /// Starts a proxy forwarding to the gateway at `upstream_ws_url` (`ws://127.0.0.1:PORT`).
    pub async fn start(upstream_ws_url: &str) -> anyhow::Result<RecordingProxy> {
        let upstream = Upstream::parse(upstream_ws_url)?;
        let listener = TcpListener::bind("127.0.0.1:0").await?;
        let addr = listener.local_addr()?;
        let shared = Arc::new(Shared::default());
        let accept_shared = shared.clone();
        let accept_task = tokio::spawn(async move {
            while let Ok((stream, _)) = listener.accept().await {
                let conn = accept_shared.next_conn.fetch_add(1, Ordering::SeqCst) + 1;
                let shared = accept_shared.clone();
                let upstream = upstream.clone();
                shared.active.fetch_add(1, Ordering::SeqCst);
                tokio::spawn(async move {
                    if let Err(e) = handle_connection(conn, stream, &upstream, &shared).await {
                        tracing::debug!(conn, error = %format!("{e:#}"), "proxy connection ended with an error");
                    }
                    shared.active.fetch_sub(1, Ordering::SeqCst);
                });
            }
        });
        Ok(RecordingProxy { addr, shared, accept_task })
    }

    /// `ws://127.0.0.1:PORT` of the proxy.
    pub fn ws_url(&self) -> String {
        format!("ws://{}", self.addr)
    }

    /// `http://127.0.0.1:PORT` of the proxy.
    pub fn http_url(&self) -> String {
        format!("http://{}", self.addr)
    }

    /// Everything recorded so far.
    pub fn records(&self) -> Vec<ProxyRecord> {
        self.shared.records.lock().map(|r| r.clone()).unwrap_or_default()
    }

    /// Every JSON frame clawgate sent, with its connection number.
    pub fn gateway_frames(&self) -> Vec<(u64, Value)> {
        self.frames(Direction::GatewayToClient)
    }

    /// Every JSON frame the client sent, with its connection number.
    pub fn client_frames(&self) -> Vec<(u64, Value)> {
        self.frames(Direction::ClientToGateway)
    }

    fn frames(&self, want: Direction) -> Vec<(u64, Value)> {
        self.records()
            .into_iter()
            .filter_map(|r| match r {
                ProxyRecord::Frame { conn, dir, frame: RecordedFrame::Json(v) } if dir == want => Some((conn, v)),
                _ => None,
            })
            .collect()
    }

    /// Closes sent by clawgate: `(conn, code, reason)`.
    pub fn gateway_closes(&self) -> Vec<(u64, u16, String)> {
        self.records()
            .into_iter()
            .filter_map(|r| match r {
                ProxyRecord::Close { conn, by: Side::Gateway, code, reason } => Some((conn, code, reason)),
                _ => None,
            })
            .collect()
    }

    /// Number of connections accepted so far.
    pub fn connection_count(&self) -> u64 {
        self.shared.next_conn.load(Ordering::SeqCst)
    }

    /// Waits until no proxied connection is open (the client exited and both sides closed).
    pub async fn wait_idle(&self, wait: Duration) -> anyhow::Result<()> {
        let deadline = Instant::now() + wait;
        while self.shared.active.load(Ordering::SeqCst) > 0 {
            if Instant::now() >= deadline {
                bail!("{} proxied connection(s) still open after {wait:?}", self.shared.active.load(Ordering::SeqCst));
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        Ok(())
    }

    /// Waits (5 s) for the connections to finish, then validates every JSON frame clawgate sent
    /// against the OpenClaw schema, matching each `res` to its request's method. Returns how many
    /// frames were checked; fails listing every violation, and also on non-JSON or binary frames
    /// from the gateway.
    pub async fn validate_gateway_frames(&self) -> anyhow::Result<usize> {
        self.wait_idle(Duration::from_secs(5)).await?;
        let mut trackers: std::collections::HashMap<u64, ConnectionValidator> = std::collections::HashMap::new();
        let mut violations: Vec<String> = Vec::new();
        let mut checked = 0;
        for record in self.records() {
            let ProxyRecord::Frame { conn, dir, frame } = record else {
                continue;
            };
            let tracker = trackers.entry(conn).or_default();
            match (dir, frame) {
                (Direction::ClientToGateway, RecordedFrame::Json(v)) => tracker.note_client_frame(&v),
                (Direction::ClientToGateway, _) => {}
                (Direction::GatewayToClient, RecordedFrame::Json(v)) => {
                    checked += 1;
                    if let Err(violation) = tracker.check_server_frame(&v) {
                        violations.push(format!("conn {conn}: {violation}"));
                    }
                }
                (Direction::GatewayToClient, RecordedFrame::Text(t)) => {
                    violations.push(format!("conn {conn}: gateway sent a non-JSON text frame: {t}"));
                }
                (Direction::GatewayToClient, RecordedFrame::Binary(n)) => {
                    violations.push(format!("conn {conn}: gateway sent a binary frame of {n} bytes"));
                }
            }
        }
        if !violations.is_empty() {
            bail!(
                "{} of {checked} gateway frames violate the OpenClaw schema:\n{}",
                violations.len(),
                violations.join("\n")
            );
        }
        Ok(checked)
    }
}

#[derive(Debug, Clone)]
struct Upstream {
    /// `ws://host:port` without a trailing slash.
    base: String,
    /// `host:port` for plain TCP forwarding.
    authority: String,
}

impl Upstream {
    fn parse(url: &str) -> anyhow::Result<Upstream> {
        let rest = url.strip_prefix("ws://").with_context(|| format!("upstream must be a ws:// url, got {url}"))?;
        let authority = rest.split('/').next().unwrap_or(rest).to_owned();
        anyhow::ensure!(!authority.is_empty(), "upstream url {url} has no host");
        Ok(Upstream { base: format!("ws://{authority}"), authority })
    }
}

/// Headers that belong to one hop of the upgrade and must not be copied upstream.
const HOP_HEADERS: &[&str] = &[
    "host",
    "connection",
    "upgrade",
    "sec-websocket-key",
    "sec-websocket-version",
    "sec-websocket-extensions",
    "sec-websocket-accept",
    "content-length",
];

/// Reads the request head without consuming it, so it can still be handed to the WebSocket
/// acceptor or forwarded as raw bytes.
async fn peek_head(stream: &TcpStream) -> anyhow::Result<String> {
    let mut buf = vec![0u8; 16 * 1024];
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let n = timeout(deadline.saturating_duration_since(Instant::now()), stream.peek(&mut buf))
            .await
            .context("client sent no request head")??;
        if n == 0 {
            bail!("client closed before sending a request");
        }
        let text = String::from_utf8_lossy(&buf[..n]).into_owned();
        if text.contains("\r\n\r\n") || n == buf.len() {
            return Ok(text);
        }
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
}

// The refusal callback's `Err` type is tungstenite's `ErrorResponse`; we do not choose its size.
#[allow(clippy::result_large_err)]
async fn handle_connection(conn: u64, client: TcpStream, upstream: &Upstream, shared: &Shared) -> anyhow::Result<()> {
    let head = peek_head(&client).await?;
    let request_line = head.lines().next().unwrap_or_default().to_owned();
    let is_upgrade = head.lines().skip(1).any(|l| {
        let lower = l.to_ascii_lowercase();
        lower.starts_with("upgrade:") && lower.contains("websocket")
    });
    if !is_upgrade {
        shared.record(ProxyRecord::Http { conn, request_line });
        let mut client = client;
        let mut gateway = TcpStream::connect(&upstream.authority).await?;
        let _ = tokio::io::copy_bidirectional(&mut client, &mut gateway).await;
        return Ok(());
    }

    let path = request_line.split_whitespace().nth(1).unwrap_or("/").to_owned();
    let headers: Vec<(String, String)> = head
        .lines()
        .skip(1)
        .take_while(|l| !l.is_empty())
        .filter_map(|l| l.split_once(':'))
        .map(|(k, v)| (k.trim().to_ascii_lowercase(), v.trim().to_owned()))
        .collect();
    shared.record(ProxyRecord::Upgrade { conn, path: path.clone(), headers: headers.clone() });

    let mut request = format!("{}{}", upstream.base, path).into_client_request()?;
    for (name, value) in &headers {
        if HOP_HEADERS.contains(&name.as_str()) {
            continue;
        }
        if let (Ok(name), Ok(value)) =
            (http::HeaderName::from_bytes(name.as_bytes()), http::HeaderValue::from_str(value))
        {
            request.headers_mut().append(name, value);
        }
    }
    let gateway = match tokio_tungstenite::connect_async(request).await {
        Ok((gateway, _)) => gateway,
        Err(tungstenite::Error::Http(response)) => {
            let status = response.status();
            shared.record(ProxyRecord::UpgradeRefused { conn, status: status.as_u16() });
            let body = response.body().as_deref().map(|b| String::from_utf8_lossy(b).into_owned());
            // Answer the client's upgrade with the gateway's refusal.
            let _ = tokio_tungstenite::accept_hdr_async(client, move |_: &Request, _: Response| {
                let mut refusal = ErrorResponse::new(body);
                *refusal.status_mut() = status;
                Err(refusal)
            })
            .await;
            return Ok(());
        }
        Err(e) => return Err(e).context("connecting to the gateway"),
    };
    let client = tokio_tungstenite::accept_async(client).await?;
    pump(conn, client, gateway, shared).await;
    Ok(())
}

fn close_parts(frame: &Option<CloseFrame>) -> (u16, String) {
    match frame {
        Some(f) => (u16::from(f.code), f.reason.as_str().to_owned()),
        None => (1005, String::new()),
    }
}

fn record_frame(shared: &Shared, conn: u64, dir: Direction, message: &Message) {
    let frame = match message {
        Message::Text(text) => match serde_json::from_str::<Value>(text.as_str()) {
            Ok(v) => RecordedFrame::Json(v),
            Err(_) => RecordedFrame::Text(text.as_str().to_owned()),
        },
        Message::Binary(bytes) => RecordedFrame::Binary(bytes.len()),
        _ => return,
    };
    shared.record(ProxyRecord::Frame { conn, dir, frame });
}

async fn pump<C, G>(
    conn: u64,
    mut client: tokio_tungstenite::WebSocketStream<C>,
    mut gateway: tokio_tungstenite::WebSocketStream<G>,
    shared: &Shared,
) where
    C: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin,
    G: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin,
{
    loop {
        tokio::select! {
            from_gateway = gateway.next() => match from_gateway {
                Some(Ok(Message::Close(frame))) => {
                    let (code, reason) = close_parts(&frame);
                    shared.record(ProxyRecord::Close { conn, by: Side::Gateway, code, reason });
                    let _ = client.send(Message::Close(frame)).await;
                    finish(&mut client).await;
                    return;
                }
                Some(Ok(message @ (Message::Text(_) | Message::Binary(_)))) => {
                    record_frame(shared, conn, Direction::GatewayToClient, &message);
                    if client.send(message).await.is_err() {
                        return;
                    }
                }
                Some(Ok(_)) => {}
                None | Some(Err(_)) => {
                    shared.record(ProxyRecord::Close { conn, by: Side::Gateway, code: 1006, reason: String::new() });
                    let _ = client.close(None).await;
                    return;
                }
            },
            from_client = client.next() => match from_client {
                Some(Ok(Message::Close(frame))) => {
                    let (code, reason) = close_parts(&frame);
                    shared.record(ProxyRecord::Close { conn, by: Side::Client, code, reason });
                    let _ = gateway.send(Message::Close(frame)).await;
                    // Record the gateway's answer to the close (its code is part of the contract).
                    let _ = timeout(Duration::from_secs(3), async {
                        while let Some(next) = gateway.next().await {
                            match next {
                                Ok(Message::Close(frame)) => {
                                    let (code, reason) = close_parts(&frame);
                                    shared.record(ProxyRecord::Close { conn, by: Side::Gateway, code, reason });
                                    break;
                                }
                                Ok(message) => record_frame(shared, conn, Direction::GatewayToClient, &message),
                                Err(_) => break,
                            }
                        }
                    })
                    .await;
                    finish(&mut client).await;
                    return;
                }
                Some(Ok(message @ (Message::Text(_) | Message::Binary(_)))) => {
                    record_frame(shared, conn, Direction::ClientToGateway, &message);
                    if gateway.send(message).await.is_err() {
                        return;
                    }
                }
                Some(Ok(_)) => {}
                None | Some(Err(_)) => {
                    shared.record(ProxyRecord::Close { conn, by: Side::Client, code: 1006, reason: String::new() });
                    let _ = gateway.close(None).await;
                    let _ = timeout(Duration::from_secs(3), async {
                        while let Some(Ok(message)) = gateway.next().await {
                            if let Message::Close(frame) = message {
                                let (code, reason) = close_parts(&frame);
                                shared.record(ProxyRecord::Close { conn, by: Side::Gateway, code, reason });
                                break;
                            }
                            record_frame(shared, conn, Direction::GatewayToClient, &message);
                        }
                    })
                    .await;
                    return;
                }
            },
        }
    }
}

/// Lets the closing handshake on one side finish (bounded).
async fn finish<S>(ws: &mut tokio_tungstenite::WebSocketStream<S>)
where
    S: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin,
{
    let _ = timeout(Duration::from_secs(2), async { while let Some(Ok(_)) = ws.next().await {} }).await;
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    /// A tiny upstream that sends a challenge, answers one request, then closes with 1008.
    async fn fake_gateway() -> (String, JoinHandle<()>) {
        let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
        let url = format!("ws://{}", listener.local_addr().expect("addr"));
        let task = tokio::spawn(async move {
            let (stream, _) = listener.accept().await.expect("accept");
            let mut ws = tokio_tungstenite::accept_async(stream).await.expect("ws");
            let challenge = json!({"type":"event","event":"connect.challenge","payload":{"nonce":"n","ts":1}});
            ws.send(Message::text(challenge.to_string())).await.expect("send");
            if let Some(Ok(Message::Text(text))) = ws.next().await {
                let req: Value = serde_json::from_str(text.as_str()).expect("json");
                let res = if req["method"] == "logs.tail" {
                    // Not a LogsTailResult: `lines` must be strings.
                    json!({"type":"res","id":req["id"],"ok":true,"payload":{"file":"f","cursor":0,"size":0,"lines":[1]}})
                } else {
                    json!({"type":"res","id":req["id"],"ok":false,"error":{"code":"INVALID_REQUEST","message":"nope"}})
                };
                ws.send(Message::text(res.to_string())).await.expect("send");
                ws.send(Message::Close(Some(CloseFrame { code: 1008.into(), reason: "bye now".into() })))
                    .await
                    .expect("close");
                finish(&mut ws).await;
            }
        });
        (url, task)
    }

    #[tokio::test]
    async fn proxy_records_frames_and_the_gateway_close_and_validates_them() {
        let (url, task) = fake_gateway().await;
        let proxy = RecordingProxy::start(&url).await.expect("proxy");
        let mut client = crate::RawClient::connect(&proxy.ws_url()).await.expect("connect");
        client.challenge(Duration::from_secs(5)).await.expect("challenge");
        let res = client.request("health", Some(json!({}))).await.expect("res");
        assert_eq!(res["error"]["message"], "nope");
        let (code, reason) = client.expect_close(Duration::from_secs(5)).await.expect("close");
        assert_eq!((code, reason.as_str()), (1008, "bye now"));
        task.await.expect("fake gateway");
        proxy.wait_idle(Duration::from_secs(5)).await.expect("idle");
        assert_eq!(proxy.gateway_frames().len(), 2);
        assert_eq!(proxy.client_frames().len(), 1);
        assert_eq!(proxy.gateway_closes(), vec![(1, 1008, "bye now".to_owned())]);
        assert_eq!(proxy.validate_gateway_frames().await.expect("valid"), 2);
    }

    #[tokio::test]
    async fn proxy_validation_reports_a_bad_result_payload() {
        let (url, task) = fake_gateway().await;
        let proxy = RecordingProxy::start(&url).await.expect("proxy");
        let mut client = crate::RawClient::connect(&proxy.ws_url()).await.expect("connect");
        client.set_validation(false);
        client.challenge(Duration::from_secs(5)).await.expect("challenge");
        client.request("logs.tail", Some(json!({}))).await.expect("res");
        let _ = client.expect_close(Duration::from_secs(5)).await;
        task.await.expect("fake gateway");
        let err = proxy.validate_gateway_frames().await.expect_err("lines:[1] is not a LogsTailResult");
        assert!(format!("{err:#}").contains("LogsTailResult"), "{err:#}");
    }

    #[tokio::test]
    async fn raw_client_fails_on_a_frame_that_violates_the_schema() {
        let (url, task) = fake_gateway().await;
        let mut client = crate::RawClient::connect(&url).await.expect("connect");
        client.challenge(Duration::from_secs(5)).await.expect("challenge");
        let err = client.request("logs.tail", Some(json!({}))).await.expect_err("validation is on by default");
        assert!(format!("{err:#}").contains("LogsTailResult"), "{err:#}");
        drop(client);
        task.abort();
    }
}
