//! A frame-level WebSocket client for protocol tests.
//!
//! Unlike a real SDK it does nothing on its own: the test decides what to send and when, and gets
//! every frame and the close code back. Every JSON frame the gateway sends is validated against
//! the OpenClaw schema ([`crate::SchemaValidator`]) as it arrives; a violation is returned as an
//! error from whichever call received the frame, so a test that uses `?` fails on it. Switch it
//! off for one frame with [`RawClient::recv_unvalidated`], or for the connection with
//! [`RawClient::set_validation`], only when a test deliberately looks at a malformed frame.

use std::collections::VecDeque;
use std::time::Duration;

use anyhow::{Context, bail};
use futures_util::{SinkExt, StreamExt};
use serde_json::{Value, json};
use tokio::net::TcpStream;
use tokio::time::{Instant, timeout};
use tokio_tungstenite::tungstenite::{self, Message, client::IntoClientRequest, http};
use tokio_tungstenite::{MaybeTlsStream, WebSocketStream};

use crate::schema::ConnectionValidator;

/// How long the convenience calls wait for a frame.
pub const DEFAULT_TIMEOUT: Duration = Duration::from_secs(10);

/// Close code reported when the TCP connection ended without a close frame (RFC 6455 1006).
pub const CLOSE_ABNORMAL: u16 = 1006;
/// Close code reported when a close frame carried no status (RFC 6455 1005).
pub const CLOSE_NO_STATUS: u16 = 1005;

type WsStream = WebSocketStream<MaybeTlsStream<TcpStream>>;

/// One thing read from the socket.
#[derive(Debug, Clone, PartialEq)]
pub enum Incoming {
    /// A text frame holding JSON.
    Json(Value),
    /// A text frame that is not JSON (only returned when validation is off).
    Text(String),
    /// A binary frame (the protocol never uses them).
    Binary(Vec<u8>),
    /// A close frame: code (1005 when none was given) and reason.
    Close {
        /// Close status code.
        code: u16,
        /// Close reason text.
        reason: String,
    },
    /// The TCP connection ended without a close frame (reported as code 1006).
    Ended,
}

/// Result of a WebSocket upgrade attempt.
#[derive(Debug)]
pub enum Upgrade {
    /// The server switched protocols.
    Accepted(Box<RawClient>),
    /// The server answered the upgrade with a plain HTTP response.
    Refused {
        /// HTTP status code.
        status: u16,
        /// Response body (lossy UTF-8).
        body: String,
    },
}

impl Upgrade {
    /// The client, or an error describing the refusal.
    pub fn accepted(self) -> anyhow::Result<RawClient> {
        match self {
            Upgrade::Accepted(client) => Ok(*client),
            Upgrade::Refused { status, body } => {
                bail!("websocket upgrade refused with HTTP {status}: {body}")
            }
        }
    }
}

/// A raw protocol client over one WebSocket connection.
pub struct RawClient {
    ws: WsStream,
    /// Maps request ids to methods so `res` payloads are checked against the right shape.
    tracker: ConnectionValidator,
    validate: bool,
    /// Frames read while waiting for something else (events during `request`, …), returned first
    /// by the next `recv*` call.
    pending: VecDeque<Value>,
    /// Every JSON frame received on this connection, in order.
    received: Vec<Value>,
    next_id: u64,
}

impl std::fmt::Debug for RawClient {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RawClient")
            .field("validate", &self.validate)
            .field("pending", &self.pending.len())
            .field("received", &self.received.len())
            .finish_non_exhaustive()
    }
}

impl RawClient {
    /// A client over an open WebSocket, validating every frame it receives.
    fn over(ws: WsStream) -> RawClient {
        RawClient {
            ws,
            tracker: ConnectionValidator::new(),
            validate: true,
            pending: VecDeque::new(),
            received: Vec::new(),
            next_id: 1,
        }
    }

    /// Opens a WebSocket to `url` with no extra headers.
    pub async fn connect(url: &str) -> anyhow::Result<RawClient> {
        Self::connect_with_headers(url, &[]).await?.accepted()
    }

    /// Opens a WebSocket to `url` from the local address `source` (e.g. `127.0.0.2`), for tests
    /// of per-address policies such as the failed-auth lockout.
    pub async fn connect_from(url: &str, source: std::net::IpAddr) -> anyhow::Result<RawClient> {
        let request = url.into_client_request().with_context(|| format!("bad websocket url {url}"))?;
        let host = request.uri().host().context("websocket url without host")?.trim_matches(['[', ']']).to_owned();
        let port = request.uri().port_u16().unwrap_or(80);
        let target = std::net::SocketAddr::new(host.parse().context("websocket url host must be an IP address")?, port);
        let socket = if source.is_ipv4() { tokio::net::TcpSocket::new_v4()? } else { tokio::net::TcpSocket::new_v6()? };
        socket.bind(std::net::SocketAddr::new(source, 0)).with_context(|| format!("binding {source}"))?;
        let connecting = async {
            let stream = socket.connect(target).await?;
            Ok::<_, anyhow::Error>(tokio_tungstenite::client_async(request, MaybeTlsStream::Plain(stream)).await?)
        };
        let (ws, _response) = timeout(DEFAULT_TIMEOUT, connecting)
            .await
            .map_err(|_| anyhow::anyhow!("websocket upgrade to {url} from {source} timed out"))??;
        Ok(RawClient::over(ws))
    }

    /// Opens a WebSocket with an `Origin` header (as a browser would send it).
    pub async fn connect_with_origin(url: &str, origin: &str) -> anyhow::Result<Upgrade> {
        Self::connect_with_headers(url, &[("Origin", origin)]).await
    }

    /// Opens a WebSocket with extra request headers. An HTTP answer other than 101 is returned as
    /// [`Upgrade::Refused`], not as an error.
    pub async fn connect_with_headers(url: &str, headers: &[(&str, &str)]) -> anyhow::Result<Upgrade> {
        let mut request = url.into_client_request().with_context(|| format!("bad websocket url {url}"))?;
        for (name, value) in headers {
            request
                .headers_mut()
                .insert(http::HeaderName::from_bytes(name.as_bytes())?, http::HeaderValue::from_str(value)?);
        }
        let connecting = tokio_tungstenite::connect_async(request);
        match timeout(DEFAULT_TIMEOUT, connecting).await {
            Err(_) => bail!("websocket upgrade to {url} timed out"),
            Ok(Ok((ws, _response))) => Ok(Upgrade::Accepted(Box::new(RawClient::over(ws)))),
            Ok(Err(tungstenite::Error::Http(response))) => {
                let status = response.status().as_u16();
                let body =
                    response.body().as_deref().map(|b| String::from_utf8_lossy(b).into_owned()).unwrap_or_default();
                Ok(Upgrade::Refused { status, body })
            }
            Ok(Err(e)) => Err(e).with_context(|| format!("websocket upgrade to {url}")),
        }
    }

    /// Turns schema validation of received frames on or off for this connection.
    pub fn set_validation(&mut self, on: bool) {
        self.validate = on;
    }

    /// Every JSON frame received so far, in order.
    pub fn received(&self) -> &[Value] {
        &self.received
    }

    /// Takes the frames that were read while waiting for something else and not yet returned.
    pub fn take_pending(&mut self) -> Vec<Value> {
        self.pending.drain(..).collect()
    }

    /// Sends a JSON value as one text frame (notes `req` ids for result validation).
    pub async fn send_json(&mut self, frame: &Value) -> anyhow::Result<()> {
        self.tracker.note_client_frame(frame);
        self.send_text(&frame.to_string()).await
    }

    /// Sends a text frame verbatim.
    pub async fn send_text(&mut self, text: &str) -> anyhow::Result<()> {
        timeout(DEFAULT_TIMEOUT, self.ws.send(Message::text(text)))
            .await
            .context("sending a frame timed out")?
            .context("sending a frame")
    }

    /// Sends one text frame of exactly `len` bytes that is valid JSON (`{"pad":"xxx…"}`), for
    /// frame-size limits. `len` must be at least 11.
    pub async fn send_bytes_text(&mut self, len: usize) -> anyhow::Result<()> {
        let overhead = r#"{"pad":""}"#.len();
        anyhow::ensure!(len > overhead, "frame must be longer than {overhead} bytes");
        let text = format!(r#"{{"pad":"{}"}}"#, "x".repeat(len - overhead));
        debug_assert_eq!(text.len(), len);
        self.send_text(&text).await
    }

    /// Reads the next thing from the socket, validating JSON frames unless validation is off.
    pub async fn recv(&mut self, wait: Duration) -> anyhow::Result<Incoming> {
        let validate = self.validate;
        self.recv_inner(wait, validate).await
    }

    /// Reads the next thing from the socket without validating it, for tests that look at a
    /// frame the schema would refuse on purpose.
    pub async fn recv_unvalidated(&mut self, wait: Duration) -> anyhow::Result<Incoming> {
        self.recv_inner(wait, false).await
    }

    async fn recv_inner(&mut self, wait: Duration, validate: bool) -> anyhow::Result<Incoming> {
        if let Some(frame) = self.pending.pop_front() {
            return Ok(Incoming::Json(frame));
        }
        let deadline = Instant::now() + wait;
        loop {
            let next = tokio::time::timeout_at(deadline, self.ws.next())
                .await
                .with_context(|| format!("no frame from the gateway within {wait:?}"))?;
            let message = match next {
                None => return Ok(Incoming::Ended),
                Some(Ok(message)) => message,
                // A reset or an aborted handshake is how the socket looks when the peer went away
                // without a close frame.
                Some(Err(
                    tungstenite::Error::ConnectionClosed
                    | tungstenite::Error::AlreadyClosed
                    | tungstenite::Error::Io(_)
                    | tungstenite::Error::Protocol(tungstenite::error::ProtocolError::ResetWithoutClosingHandshake),
                )) => return Ok(Incoming::Ended),
                Some(Err(e)) => return Err(e).context("reading from the gateway"),
            };
            match message {
                Message::Text(text) => {
                    let parsed: Result<Value, _> = serde_json::from_str(text.as_str());
                    return match parsed {
                        Ok(frame) => {
                            if validate {
                                self.tracker.check_server_frame(&frame).map_err(anyhow::Error::new)?;
                            }
                            self.received.push(frame.clone());
                            Ok(Incoming::Json(frame))
                        }
                        Err(e) if validate => {
                            bail!("gateway sent a text frame that is not JSON ({e}): {text}")
                        }
                        Err(_) => Ok(Incoming::Text(text.as_str().to_owned())),
                    };
                }
                Message::Binary(bytes) => {
                    if validate {
                        bail!("gateway sent a binary frame ({} bytes)", bytes.len());
                    }
                    return Ok(Incoming::Binary(bytes.to_vec()));
                }
                Message::Close(frame) => {
                    let (code, reason) = match frame {
                        Some(f) => (u16::from(f.code), f.reason.as_str().to_owned()),
                        None => (CLOSE_NO_STATUS, String::new()),
                    };
                    return Ok(Incoming::Close { code, reason });
                }
                Message::Ping(_) | Message::Pong(_) | Message::Frame(_) => continue,
            }
        }
    }

    /// The next JSON frame; an error on close, timeout or schema violation.
    pub async fn recv_json(&mut self, wait: Duration) -> anyhow::Result<Value> {
        match self.recv(wait).await? {
            Incoming::Json(v) => Ok(v),
            other => bail!("expected a JSON frame, got {other:?}"),
        }
    }

    /// Reads until an event named `event` arrives and returns the whole event frame. Other frames
    /// are kept for later `recv*` calls.
    pub async fn recv_event(&mut self, event: &str, wait: Duration) -> anyhow::Result<Value> {
        if let Some(pos) = self.pending.iter().position(|f| is_event(f, event)) {
            return self.pending.remove(pos).context("pending frame vanished");
        }
        let deadline = Instant::now() + wait;
        let mut skipped = Vec::new();
        let result = loop {
            let left = deadline.saturating_duration_since(Instant::now());
            match self.recv_fresh(left).await {
                Ok(Incoming::Json(frame)) if is_event(&frame, event) => break Ok(frame),
                Ok(Incoming::Json(frame)) => skipped.push(frame),
                Ok(other) => break Err(anyhow::anyhow!("waiting for event {event:?}: got {other:?}")),
                Err(e) => break Err(e.context(format!("waiting for event {event:?}"))),
            }
        };
        self.pending.extend(skipped);
        result
    }

    /// Like `recv` but never returns a pending frame.
    async fn recv_fresh(&mut self, wait: Duration) -> anyhow::Result<Incoming> {
        let held: Vec<Value> = self.pending.drain(..).collect();
        let result = self.recv(wait).await;
        // Put back what was pending, ahead of anything newer.
        for frame in held.into_iter().rev() {
            self.pending.push_front(frame);
        }
        result
    }

    /// Reads until the `res` with this id arrives. Events and other responses read meanwhile are
    /// kept for later `recv*` calls.
    pub async fn recv_response(&mut self, id: &str, wait: Duration) -> anyhow::Result<Value> {
        if let Some(pos) = self.pending.iter().position(|f| is_response(f, id)) {
            return self.pending.remove(pos).context("pending frame vanished");
        }
        let deadline = Instant::now() + wait;
        let mut skipped = Vec::new();
        let result = loop {
            let left = deadline.saturating_duration_since(Instant::now());
            match self.recv_fresh(left).await {
                Ok(Incoming::Json(frame)) if is_response(&frame, id) => break Ok(frame),
                Ok(Incoming::Json(frame)) => skipped.push(frame),
                Ok(other) => {
                    break Err(anyhow::anyhow!("waiting for the response to {id:?}: got {other:?}"));
                }
                Err(e) => break Err(e.context(format!("waiting for the response to {id:?}"))),
            }
        };
        self.pending.extend(skipped);
        result
    }

    /// Reads until the socket closes and returns `(code, reason)`; 1006 when it ended without a
    /// close frame. JSON frames before the close are validated and kept in [`Self::received`].
    pub async fn expect_close(&mut self, wait: Duration) -> anyhow::Result<(u16, String)> {
        let deadline = Instant::now() + wait;
        loop {
            let left = deadline.saturating_duration_since(Instant::now());
            match self
                .recv_fresh(left)
                .await
                .with_context(|| format!("the gateway did not close the socket within {wait:?}"))?
            {
                Incoming::Close { code, reason } => return Ok((code, reason)),
                Incoming::Ended => return Ok((CLOSE_ABNORMAL, String::new())),
                Incoming::Json(frame) => self.pending.push_back(frame),
                Incoming::Text(_) | Incoming::Binary(_) => {}
            }
        }
    }

    /// Waits `wait` and fails if the socket closes or any `res` frame arrives meanwhile (events,
    /// such as `tick` or `health`, are allowed and kept).
    pub async fn expect_no_response(&mut self, wait: Duration) -> anyhow::Result<()> {
        let deadline = Instant::now() + wait;
        loop {
            let left = deadline.saturating_duration_since(Instant::now());
            if left.is_zero() {
                return Ok(());
            }
            match self.recv_fresh(left).await {
                Err(_) if Instant::now() >= deadline => return Ok(()),
                Err(e) => return Err(e),
                Ok(Incoming::Json(frame)) if frame["type"] == "res" => {
                    bail!("expected no response, got {frame}")
                }
                Ok(Incoming::Json(frame)) => self.pending.push_back(frame),
                Ok(other) => bail!("expected the socket to stay open and quiet, got {other:?}"),
            }
        }
    }

    /// Waits for the `connect.challenge` event and returns its payload.
    pub async fn challenge(&mut self, wait: Duration) -> anyhow::Result<Value> {
        let frame = self.recv_event("connect.challenge", wait).await?;
        Ok(frame.get("payload").cloned().unwrap_or(Value::Null))
    }

    /// A fresh request id (`r1`, `r2`, …).
    pub fn next_id(&mut self) -> String {
        let id = format!("r{}", self.next_id);
        self.next_id += 1;
        id
    }

    /// Sends a `connect` request built by [`connect_params`] and returns its id. Does not wait for
    /// the challenge: the caller decides the order.
    pub async fn send_connect(&mut self, token: Option<&str>, overrides: &Value) -> anyhow::Result<String> {
        let id = self.next_id();
        let frame = json!({"type": "req", "id": id, "method": "connect", "params": connect_params(token, overrides)});
        self.send_json(&frame).await?;
        Ok(id)
    }

    /// Waits for the challenge, sends `connect` and returns the whole `res` frame (ok or not).
    pub async fn try_handshake(&mut self, token: Option<&str>, overrides: &Value) -> anyhow::Result<Value> {
        self.challenge(DEFAULT_TIMEOUT).await?;
        let id = self.send_connect(token, overrides).await?;
        self.recv_response(&id, DEFAULT_TIMEOUT).await
    }

    /// Waits for the challenge, sends `connect` and returns the `hello-ok` payload; an error when
    /// the gateway refused.
    pub async fn handshake(&mut self, token: Option<&str>, overrides: &Value) -> anyhow::Result<Value> {
        let res = self.try_handshake(token, overrides).await?;
        if res["ok"] != true {
            bail!("connect refused: {res}");
        }
        Ok(res["payload"].clone())
    }

    /// Sends a request and waits (10 s) for its `res`, skipping events. `params: None` leaves the
    /// `params` key out, as `openclaw gateway health` does.
    pub async fn request(&mut self, method: &str, params: Option<Value>) -> anyhow::Result<Value> {
        self.request_with_timeout(method, params, DEFAULT_TIMEOUT).await
    }

    /// [`Self::request`] with an explicit timeout.
    pub async fn request_with_timeout(
        &mut self,
        method: &str,
        params: Option<Value>,
        wait: Duration,
    ) -> anyhow::Result<Value> {
        let id = self.next_id();
        let mut frame = json!({"type": "req", "id": id, "method": method});
        if let Some(params) = params {
            frame["params"] = params;
        }
        self.send_json(&frame).await?;
        self.recv_response(&id, wait).await
    }

    /// Starts the closing handshake (code 1000) and waits briefly for the server's answer.
    pub async fn close(mut self) -> anyhow::Result<()> {
        let _ = timeout(Duration::from_secs(2), self.ws.close(None)).await;
        let _ = timeout(Duration::from_secs(2), async { while let Some(Ok(_)) = self.ws.next().await {} }).await;
        Ok(())
    }
}

fn is_event(frame: &Value, event: &str) -> bool {
    frame["type"] == "event" && frame["event"] == event
}

fn is_response(frame: &Value, id: &str) -> bool {
    frame["type"] == "res" && frame["id"] == id
}

/// The connect params our raw tests send by default — the same as the upstream capture's raw
/// client: local CLI identity (`cli`/`cli`), protocol 4, operator with read/write/admin, token auth
/// when `token` is given. `overrides` is applied as a JSON merge patch (RFC 7396): objects merge,
/// `null` deletes a key (`{"auth": null}` drops auth), anything else replaces.
pub fn connect_params(token: Option<&str>, overrides: &Value) -> Value {
    let mut params = json!({
        "minProtocol": 4,
        "maxProtocol": 4,
        "client": {"id": "cli", "version": "0.0.1", "platform": "linux", "mode": "cli"},
        "role": "operator",
        "scopes": ["operator.read", "operator.write", "operator.admin"],
        "caps": [],
    });
    if let Some(token) = token {
        params["auth"] = json!({ "token": token });
    }
    merge_patch(&mut params, overrides);
    params
}

/// RFC 7396 JSON merge patch.
pub fn merge_patch(target: &mut Value, patch: &Value) {
    let Value::Object(patch_map) = patch else {
        *target = patch.clone();
        return;
    };
    if !target.is_object() {
        *target = Value::Object(serde_json::Map::new());
    }
    if let Value::Object(target_map) = target {
        for (key, value) in patch_map {
            if value.is_null() {
                target_map.remove(key);
            } else {
                merge_patch(target_map.entry(key.clone()).or_insert(Value::Null), value);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn merge_patch_merges_objects_and_deletes_nulls() {
        let params = connect_params(
            Some("t"),
            &json!({"auth": null, "client": {"mode": "probe"}, "minProtocol": 3, "scopes": []}),
        );
        assert!(params.get("auth").is_none());
        assert_eq!(params["client"]["mode"], "probe");
        assert_eq!(params["client"]["id"], "cli");
        assert_eq!(params["minProtocol"], 3);
        assert_eq!(params["scopes"], json!([]));
    }

    #[test]
    fn default_connect_params_are_a_valid_connect_request() {
        let frame =
            json!({"type": "req", "id": "r1", "method": "connect", "params": connect_params(Some("t"), &json!({}))});
        let v = crate::SchemaValidator::global();
        v.validate_shape("RequestFrame", &frame, "req").expect("req frame");
        v.validate_shape("ConnectParams", &frame["params"], "connect params").expect("connect params");
    }
}
