//! [`Conn`]: one authenticated WebSocket to a gateway, the unit the [`Client`](crate::Client)
//! supervisor replaces when it reconnects.
//!
//! Shape: the handshake runs inline in [`Conn::connect`]; afterwards the socket is split into a
//! writer task (owning the sink, fed by a bounded channel, so requests take `&self` and run
//! concurrently) and a reader task that routes `res` frames to whoever waits for that id and
//! hands events to the client's [`Hub`], which outlives the connection. When the socket ends, the
//! reader fails every waiting request with [`ClientError::ConnectionLost`] at once (nothing waits
//! for a timeout) and resolves [`Conn::closed`], which is what the supervisor watches.

use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use futures_util::stream::{SplitSink, SplitStream};
use futures_util::{SinkExt, Stream, StreamExt};
use serde::Serialize;
use serde_json::Value;
use tokio::net::TcpStream;
use tokio::sync::{mpsc, oneshot, watch};
use tokio::time::timeout;
use tokio_tungstenite::tungstenite::protocol::CloseFrame;
use tokio_tungstenite::tungstenite::protocol::frame::coding::CloseCode;
use tokio_tungstenite::tungstenite::{self, Message};
use tokio_tungstenite::{MaybeTlsStream, WebSocketStream};

use clawgate_protocol::connect::{ClientInfo, ConnectAuth, ConnectParams};
use clawgate_protocol::hello::HelloOk;
use clawgate_protocol::{EventFrame, PROTOCOL_VERSION, RequestFrame, ResponseFrame, close, events, methods};

use crate::error::{ClientError, CloseInfo};
use crate::hub::Hub;
use crate::identity::SignatureInput;
use crate::options::{ClientOptions, SignedAtSource};
use crate::session::SessionEvent;

type Ws = WebSocketStream<MaybeTlsStream<TcpStream>>;

/// Frames queued for the writer before `request` waits for room.
const WRITER_QUEUE: usize = 256;
/// `res` frames one streaming request may have buffered, unread, before extra ones are dropped.
const STREAM_QUEUE: usize = 8;
/// How long a refused `connect` waits for the gateway's close frame (to report its code).
const CLOSE_GRACE: Duration = Duration::from_secs(2);
/// Client-side close code when the gateway falls silent (as the reference client).
const TICK_TIMEOUT_CODE: u16 = 4000;

/// Who is waiting for the `res` frames of one request id.
enum Waiter {
    /// A plain request: the first `res` completes it.
    Once(oneshot::Sender<Result<ResponseFrame, ClientError>>),
    /// A streaming request: every `res` until the final one.
    Stream(mpsc::Sender<Result<ResponseFrame, ClientError>>),
}

/// A waiting request: its method (named in [`ClientError::ConnectionLost`]) and its waiter.
struct Pending {
    method: String,
    waiter: Waiter,
}

impl Pending {
    fn fail(self, err: ClientError) {
        match self.waiter {
            Waiter::Once(tx) => {
                let _ = tx.send(Err(err));
            }
            Waiter::Stream(tx) => {
                let _ = tx.try_send(Err(err));
            }
        }
    }
}

/// Request bookkeeping, and whether new requests can still be sent. One lock so that a request
/// can never register after the reader has failed everything on close.
struct State {
    pending: HashMap<String, Pending>,
    closed: Option<CloseInfo>,
}

/// What the connection handle, the reader task and response streams share.
struct Shared {
    state: Mutex<State>,
    /// The client's event fan-out; it outlives this connection.
    hub: Arc<Hub>,
    /// Set once, to how the connection ended.
    closed_tx: watch::Sender<Option<CloseInfo>>,
    /// `restartExpectedMs` of a `shutdown` event: how long the supervisor waits before its
    /// first reconnect attempt.
    restart_expected_ms: Mutex<Option<u64>>,
    /// Per-connection request counter (`<n>:<uuid>` ids, as the upstream CLI).
    next_id: AtomicU64,
    /// Highest event `seq` seen on this connection (`seq` starts again at 1 on a new one).
    last_seq: AtomicU64,
}

impl Shared {
    fn lock(&self) -> MutexGuard<'_, State> {
        // A poisoned lock only means a panic elsewhere mid-update of a map; the map is still usable.
        self.state.lock().unwrap_or_else(|e| e.into_inner())
    }

    fn register(&self, id: &str, pending: Pending) -> Result<(), ClientError> {
        let mut state = self.lock();
        if let Some(info) = &state.closed {
            return Err(ClientError::closed(info));
        }
        state.pending.insert(id.to_owned(), pending);
        Ok(())
    }

    /// Refuse new requests and fail the waiting ones with [`ClientError::ConnectionLost`]; the
    /// socket may still deliver events.
    fn begin_close(&self, info: CloseInfo) {
        let pending = {
            let mut state = self.lock();
            state.closed.get_or_insert(info.clone());
            std::mem::take(&mut state.pending)
        };
        for (_, pending) in pending {
            let err = ClientError::lost(&pending.method, &info);
            pending.fail(err);
        }
    }

    /// The socket is gone: record how, fail everything, tell the supervisor.
    fn finish(&self, info: CloseInfo) {
        self.lock().closed = Some(info.clone());
        self.begin_close(info.clone());
        self.closed_tx.send_replace(Some(info));
    }

    fn dispatch_response(&self, frame: ResponseFrame) {
        let mut state = self.lock();
        let Some(waiter) = state.pending.get(&frame.id) else {
            // A second `res` for a plain request (e.g. `agent`'s final answer), or a late one
            // after a timeout: nobody asked for it.
            tracing::debug!(id = %frame.id, ok = frame.ok, "response with no waiting request");
            return;
        };
        match &waiter.waiter {
            Waiter::Once(_) => {
                if let Some(Pending { waiter: Waiter::Once(tx), .. }) = state.pending.remove(&frame.id) {
                    let _ = tx.send(Ok(frame));
                }
            }
            Waiter::Stream(tx) => {
                let id = frame.id.clone();
                let last = is_final(&frame);
                if tx.try_send(Ok(frame)).is_err() {
                    tracing::warn!(%id, "response stream not being read; dropping a response");
                }
                if last {
                    state.pending.remove(&id);
                }
            }
        }
    }

    fn dispatch_error(&self, id: &str, err: ClientError) {
        match self.lock().pending.remove(id) {
            Some(pending) => pending.fail(err),
            None => tracing::warn!(%id, error = %err, "malformed response with no waiting request"),
        }
    }

    fn track_seq(&self, seq: u64, event: &str) {
        let last = self.last_seq.load(Ordering::Relaxed);
        if seq > last + 1 {
            let skipped = seq - last - 1;
            self.hub.count_gap(skipped);
            tracing::warn!(expected = last + 1, got = seq, skipped, event, "event sequence gap: events were lost");
        } else if seq <= last {
            tracing::debug!(last, got = seq, event, "event seq not increasing");
        }
        if seq > last {
            self.last_seq.store(seq, Ordering::Relaxed);
        }
    }
}

/// Removes a request's waiter when the caller stops waiting (timeout, dropped future or stream),
/// so abandoned ids do not accumulate.
struct PendingGuard {
    shared: Arc<Shared>,
    id: String,
}

impl Drop for PendingGuard {
    fn drop(&mut self) {
        self.shared.lock().pending.remove(&self.id);
    }
}

/// What the writer task is asked to do.
enum Outgoing {
    Text(String),
    Close(u16, String),
}

/// Whether this `res` ends its request: everything except an ok `{status:"accepted"}`
/// acknowledgement (`agent`, two-phase `exec.approval.request`), which a final `res` with the
/// same id follows.
pub fn is_final(frame: &ResponseFrame) -> bool {
    !(frame.ok && frame.payload.as_ref().and_then(|p| p.get("status")).and_then(Value::as_str) == Some("accepted"))
}

/// `payload.sessionKey` of an event, the key [`Client::events_for_session`](crate::Client::events_for_session)
/// and [`SessionHandle::events`](crate::SessionHandle::events) route on.
pub fn event_session_key(event: &EventFrame) -> Option<&str> {
    event.payload.as_ref()?.get("sessionKey")?.as_str()
}

/// `payload` of an ok `res`, or its error as [`ClientError::Rpc`].
pub fn response_payload(frame: ResponseFrame) -> Result<Value, ClientError> {
    if frame.ok {
        return Ok(frame.payload.unwrap_or(Value::Null));
    }
    match frame.error {
        Some(error) => Err(ClientError::Rpc(Box::new(error))),
        None => Err(ClientError::Protocol(format!("res {} has ok:false and no error", frame.id))),
    }
}

/// The `req` frame on the wire: [`RequestFrame`] plus its `type` discriminator.
#[derive(Serialize)]
struct WireRequest<'a> {
    #[serde(rename = "type")]
    kind: &'static str,
    #[serde(flatten)]
    frame: &'a RequestFrame,
}

fn request_text(id: &str, method: &str, params: Value) -> Result<String, ClientError> {
    let frame = RequestFrame {
        id: id.to_owned(),
        method: method.to_owned(),
        params: (!params.is_null()).then_some(params),
        traceparent: None,
        expected_profile_id: None,
    };
    serde_json::to_string(&WireRequest { kind: "req", frame: &frame })
        .map_err(|e| ClientError::Protocol(format!("cannot encode request: {e}")))
}

fn now_ms() -> i64 {
    SystemTime::now().duration_since(UNIX_EPOCH).map(|d| d.as_millis() as i64).unwrap_or(0)
}

/// The `connect.challenge` payload fields a client uses.
struct Challenge {
    nonce: String,
    ts: Option<i64>,
}

/// One connection that completed the handshake.
pub(crate) struct Conn {
    shared: Arc<Shared>,
    hello: Arc<HelloOk>,
    writer: mpsc::Sender<Outgoing>,
}

impl Conn {
    /// Open the WebSocket, wait for `connect.challenge`, send `connect` (with the device proof
    /// when an identity is set) and wait for `hello-ok`.
    ///
    /// A refused `connect` is [`ClientError::Handshake`] carrying the gateway's error shape and
    /// close code; each phase is bounded by the connect timeout ([`ClientError::Timeout`]).
    ///
    /// `first` is `None` for the client's first connection; for a reconnect it is the marker the
    /// reader queues on every session stream before the first event of the new socket, so the
    /// streams see it in order.
    pub(crate) async fn connect(
        opts: &ClientOptions,
        hub: Arc<Hub>,
        first: Option<SessionEvent>,
    ) -> Result<Conn, ClientError> {
        let url = url::Url::parse(&opts.url).map_err(|e| ClientError::InvalidUrl(format!("{}: {e}", opts.url)))?;
        if !matches!(url.scheme(), "ws" | "wss") {
            return Err(ClientError::InvalidUrl(format!("{}: scheme must be ws or wss", opts.url)));
        }
        let limit = opts.connect_timeout;
        let mut request = tungstenite::client::IntoClientRequest::into_client_request(opts.url.as_str())
            .map_err(|e| ClientError::InvalidUrl(format!("{}: {e}", opts.url)))?;
        for (name, value) in &opts.headers {
            let name = tungstenite::http::HeaderName::from_bytes(name.as_bytes())
                .map_err(|e| ClientError::InvalidUrl(format!("header {name:?}: {e}")))?;
            let value = tungstenite::http::HeaderValue::from_str(value)
                .map_err(|e| ClientError::InvalidUrl(format!("header {name}: {e}")))?;
            request.headers_mut().append(name, value);
        }
        let (mut ws, _response) = timeout(limit, tokio_tungstenite::connect_async(request))
            .await
            .map_err(|_| ClientError::Timeout { waiting_for: format!("WebSocket open of {}", opts.url), after: limit })?
            .map_err(connect_error)?;

        let challenge = match timeout(limit, wait_for_challenge(&mut ws)).await {
            Ok(Ok(challenge)) => challenge,
            Ok(Err(e)) => return Err(e),
            Err(_) => {
                let _ = close_ws(&mut ws, close::POLICY_VIOLATION, "connect challenge timeout").await;
                return Err(ClientError::Timeout { waiting_for: "connect.challenge".to_owned(), after: limit });
            }
        };

        let connect_id = format!("1:{}", uuid::Uuid::new_v4());
        let params = serde_json::to_value(connect_params(opts, &challenge))
            .map_err(|e| ClientError::Protocol(format!("cannot encode connect params: {e}")))?;
        let text = request_text(&connect_id, methods::names::CONNECT, params)?;
        ws.send(Message::Text(text.into())).await.map_err(|e| ws_closed(&e))?;

        let response = timeout(limit, wait_for_response(&mut ws, &connect_id))
            .await
            .map_err(|_| ClientError::Timeout { waiting_for: "hello-ok".to_owned(), after: limit })??;
        if !response.ok {
            let error = response.error.unwrap_or_else(|| {
                clawgate_protocol::ErrorShape::invalid_request("connect refused without an error shape")
            });
            let close = timeout(CLOSE_GRACE, wait_for_close(&mut ws)).await.ok().flatten();
            return Err(ClientError::Handshake {
                error: Box::new(error),
                close_code: close.as_ref().and_then(|c| c.code),
                close_reason: close.map(|c| c.reason),
            });
        }
        let hello: HelloOk = serde_json::from_value(response.payload.unwrap_or(Value::Null))
            .map_err(|e| ClientError::Protocol(format!("hello-ok payload: {e}")))?;

        Ok(Self::start(ws, hello, hub, first))
    }

    fn start(ws: Ws, hello: HelloOk, hub: Arc<Hub>, first: Option<SessionEvent>) -> Conn {
        let (closed_tx, _) = watch::channel(None);
        let shared = Arc::new(Shared {
            state: Mutex::new(State { pending: HashMap::new(), closed: None }),
            hub,
            closed_tx,
            restart_expected_ms: Mutex::new(None),
            next_id: AtomicU64::new(2),
            last_seq: AtomicU64::new(0),
        });
        let (sink, stream) = ws.split();
        let (writer_tx, writer_rx) = mpsc::channel(WRITER_QUEUE);
        // The gateway ticks every `tickIntervalMs` and pings; two intervals of silence means the
        // connection is dead even if TCP has not noticed (the reference client uses the same rule).
        let silence_limit = match hello.policy.tick_interval_ms {
            0 => None,
            ms => Some(Duration::from_millis(ms.saturating_mul(2))),
        };
        tokio::spawn(write_loop(sink, writer_rx));
        tokio::spawn(read_loop(stream, shared.clone(), writer_tx.downgrade(), silence_limit, first));
        Conn { shared, hello: Arc::new(hello), writer: writer_tx }
    }

    /// The `hello-ok` payload the gateway answered `connect` with.
    pub(crate) fn hello(&self) -> &Arc<HelloOk> {
        &self.hello
    }

    fn next_id(&self) -> String {
        format!("{}:{}", self.shared.next_id.fetch_add(1, Ordering::Relaxed), uuid::Uuid::new_v4())
    }

    async fn send(&self, method: &str, text: String) -> Result<(), ClientError> {
        self.writer.send(Outgoing::Text(text)).await.map_err(|_| match self.close_info() {
            Some(info) => ClientError::lost(method, &info),
            None => ClientError::lost(method, &unknown_close()),
        })
    }

    /// Whether new requests are refused (the socket ended, or is ending after `shutdown`).
    pub(crate) fn is_closing(&self) -> bool {
        self.shared.lock().closed.is_some()
    }

    /// Send `method` and wait (at most `limit`) for its first `res` frame.
    pub(crate) async fn request_frame(
        &self,
        method: &str,
        params: Value,
        limit: Duration,
    ) -> Result<ResponseFrame, ClientError> {
        let id = self.next_id();
        let text = request_text(&id, method, params)?;
        let (tx, rx) = oneshot::channel();
        self.shared.register(&id, Pending { method: method.to_owned(), waiter: Waiter::Once(tx) })?;
        let _guard = PendingGuard { shared: self.shared.clone(), id };
        self.send(method, text).await?;
        match timeout(limit, rx).await {
            Ok(Ok(result)) => result,
            Ok(Err(_)) => Err(ClientError::lost(method, &self.close_info().unwrap_or_else(unknown_close))),
            Err(_) => Err(ClientError::Timeout { waiting_for: format!("response to {method}"), after: limit }),
        }
    }

    /// Send `method` and stream every `res` frame with its id, ending after the final one. The
    /// first frame is bounded by `first_limit`, later ones are not.
    pub(crate) async fn request_stream(
        &self,
        method: &str,
        params: Value,
        first_limit: Duration,
    ) -> Result<ResponseStream, ClientError> {
        let id = self.next_id();
        let text = request_text(&id, method, params)?;
        let (tx, rx) = mpsc::channel(STREAM_QUEUE);
        self.shared.register(&id, Pending { method: method.to_owned(), waiter: Waiter::Stream(tx) })?;
        let guard = PendingGuard { shared: self.shared.clone(), id };
        self.send(method, text).await?;

        let waiting_for = format!("response to {method}");
        let stream = futures_util::stream::unfold(Some((rx, guard, true)), move |state| {
            let waiting_for = waiting_for.clone();
            async move {
                let (mut rx, guard, first) = state?;
                let next = if first {
                    match timeout(first_limit, rx.recv()).await {
                        Ok(next) => next,
                        Err(_) => Some(Err(ClientError::Timeout { waiting_for, after: first_limit })),
                    }
                } else {
                    rx.recv().await
                };
                match next? {
                    Ok(frame) => {
                        let rest = if is_final(&frame) { None } else { Some((rx, guard, false)) };
                        Some((Ok(frame), rest))
                    }
                    Err(e) => Some((Err(e), None)),
                }
            }
        });
        Ok(Box::pin(stream))
    }

    /// The highest event `seq` received on this connection.
    pub(crate) fn last_seq(&self) -> u64 {
        self.shared.last_seq.load(Ordering::Relaxed)
    }

    /// How the connection ended, once it has (or is ending after a `shutdown` event).
    pub(crate) fn close_info(&self) -> Option<CloseInfo> {
        self.shared.lock().closed.clone()
    }

    /// `restartExpectedMs` of the `shutdown` event that announced the end, if any.
    pub(crate) fn restart_expected(&self) -> Option<Duration> {
        self.shared.restart_expected_ms.lock().unwrap_or_else(|e| e.into_inner()).map(Duration::from_millis)
    }

    /// Wait until the socket has ended and return how.
    pub(crate) async fn closed(&self) -> CloseInfo {
        let mut rx = self.shared.closed_tx.subscribe();
        match rx.wait_for(Option::is_some).await {
            Ok(info) => info.clone().unwrap_or_else(unknown_close),
            // The sender lives in `shared`, which we hold: it cannot be dropped.
            Err(_) => unknown_close(),
        }
    }

    /// Close with a normal close (1000) and wait briefly for the gateway's reply. Requests still
    /// waiting fail with [`ClientError::ConnectionLost`].
    pub(crate) async fn close(&self) {
        let info = CloseInfo { code: Some(close::NORMAL), reason: "closed by client".to_owned() };
        self.shared.begin_close(info);
        let _ = self.writer.send(Outgoing::Close(close::NORMAL, String::new())).await;
        let _ = timeout(CLOSE_GRACE, self.closed()).await;
    }
}

/// The `res` frames of one request, ending after the final one.
pub(crate) type ResponseStream =
    std::pin::Pin<Box<dyn Stream<Item = Result<ResponseFrame, ClientError>> + Send + 'static>>;

fn unknown_close() -> CloseInfo {
    CloseInfo { code: None, reason: "connection closed".to_owned() }
}

fn connect_params(opts: &ClientOptions, challenge: &Challenge) -> ConnectParams {
    let auth = ConnectAuth {
        token: opts.token.clone(),
        bootstrap_token: opts.bootstrap_token.clone(),
        device_token: opts.device_token.clone(),
        password: opts.password.clone(),
        ..ConnectAuth::default()
    };
    let device = opts.device.as_ref().map(|identity| {
        let signed_at_ms = match opts.signed_at {
            SignedAtSource::ChallengeTs => challenge.ts.unwrap_or_else(now_ms),
            SignedAtSource::LocalClock => now_ms(),
        };
        let input = SignatureInput {
            client_id: &opts.client_id,
            client_mode: &opts.mode,
            role: &opts.role,
            scopes: &opts.scopes,
            signed_at_ms,
            token: auth.signed_token(),
            nonce: &challenge.nonce,
            platform: Some(&opts.platform),
            device_family: opts.device_family.as_deref(),
        };
        identity.proof(opts.signature_version, &input)
    });
    let has_auth = auth != ConnectAuth::default();
    ConnectParams {
        min_protocol: i64::from(PROTOCOL_VERSION),
        max_protocol: i64::from(PROTOCOL_VERSION),
        client: ClientInfo {
            id: opts.client_id.clone(),
            display_name: opts.display_name.clone(),
            version: opts.version.clone(),
            build_id: None,
            platform: opts.platform.clone(),
            device_family: opts.device_family.clone(),
            model_identifier: None,
            time_zone: None,
            mode: opts.mode.clone(),
            instance_id: opts.instance_id.clone(),
        },
        caps: opts.caps.clone(),
        commands: None,
        permissions: None,
        path_env: None,
        role: Some(opts.role.clone()),
        scopes: Some(opts.scopes.clone()),
        model_catalog: None,
        device,
        auth: has_auth.then_some(auth),
        locale: None,
        user_agent: Some(concat!("clawgate-client/", env!("CARGO_PKG_VERSION")).to_owned()),
        computer_use: None,
        worker_runs: None,
    }
}

fn connect_error(e: tungstenite::Error) -> ClientError {
    match e {
        tungstenite::Error::Io(io) => ClientError::Connect(io),
        tungstenite::Error::Url(e) => ClientError::InvalidUrl(e.to_string()),
        tungstenite::Error::Http(response) => ClientError::Connect(std::io::Error::other(format!(
            "WebSocket upgrade refused with HTTP {}",
            response.status()
        ))),
        other => ClientError::Connect(std::io::Error::other(other)),
    }
}

fn ws_closed(e: &tungstenite::Error) -> ClientError {
    ClientError::Closed { code: None, reason: e.to_string() }
}

fn close_info(frame: Option<&CloseFrame>) -> CloseInfo {
    match frame {
        Some(f) => CloseInfo { code: Some(u16::from(f.code)), reason: f.reason.to_string() },
        None => CloseInfo { code: None, reason: String::new() },
    }
}

async fn close_ws(ws: &mut Ws, code: u16, reason: &str) -> Result<(), tungstenite::Error> {
    ws.send(Message::Close(Some(CloseFrame { code: CloseCode::from(code), reason: reason.to_owned().into() }))).await
}

/// Read the next text frame as JSON; `Err(Closed)` on close or end of stream.
async fn next_json(ws: &mut Ws) -> Result<Value, ClientError> {
    loop {
        match ws.next().await {
            None => return Err(ClientError::Closed { code: None, reason: "connection closed".to_owned() }),
            Some(Err(e)) => return Err(ws_closed(&e)),
            Some(Ok(Message::Close(frame))) => return Err(ClientError::closed(&close_info(frame.as_ref()))),
            Some(Ok(Message::Text(text))) => match serde_json::from_str(text.as_str()) {
                Ok(value) => return Ok(value),
                Err(e) => tracing::warn!(error = %e, "ignoring a frame that is not JSON"),
            },
            Some(Ok(_)) => {}
        }
    }
}

async fn wait_for_challenge(ws: &mut Ws) -> Result<Challenge, ClientError> {
    loop {
        let value = next_json(ws).await?;
        if value.get("type").and_then(Value::as_str) != Some("event")
            || value.get("event").and_then(Value::as_str) != Some(events::names::CONNECT_CHALLENGE)
        {
            tracing::debug!(frame = %value, "frame before connect.challenge ignored");
            continue;
        }
        let payload = value.get("payload");
        let nonce = payload.and_then(|p| p.get("nonce")).and_then(Value::as_str).map(str::trim).unwrap_or("");
        if nonce.is_empty() {
            let _ = close_ws(ws, close::POLICY_VIOLATION, "connect challenge missing nonce").await;
            return Err(ClientError::Protocol("connect challenge missing nonce".to_owned()));
        }
        let ts = payload.and_then(|p| p.get("ts")).and_then(Value::as_i64).filter(|ts| *ts >= 0);
        return Ok(Challenge { nonce: nonce.to_owned(), ts });
    }
}

async fn wait_for_response(ws: &mut Ws, id: &str) -> Result<ResponseFrame, ClientError> {
    loop {
        let value = next_json(ws).await?;
        match value.get("type").and_then(Value::as_str) {
            Some("res") if value.get("id").and_then(Value::as_str) == Some(id) => {
                return serde_json::from_value(value)
                    .map_err(|e| ClientError::Protocol(format!("connect response: {e}")));
            }
            _ => tracing::debug!(frame = %value, "frame before hello-ok ignored"),
        }
    }
}

/// After a refused `connect`: read until the gateway's close frame (`None` if the socket just ended).
async fn wait_for_close(ws: &mut Ws) -> Option<CloseInfo> {
    loop {
        match ws.next().await? {
            Ok(Message::Close(frame)) => return Some(close_info(frame.as_ref())),
            Ok(_) => {}
            Err(_) => return None,
        }
    }
}

async fn write_loop(mut sink: SplitSink<Ws, Message>, mut rx: mpsc::Receiver<Outgoing>) {
    while let Some(out) = rx.recv().await {
        match out {
            Outgoing::Text(text) => {
                if let Err(e) = sink.send(Message::Text(text.into())).await {
                    tracing::debug!(error = %e, "gateway write failed; writer stops");
                    return;
                }
            }
            Outgoing::Close(code, reason) => {
                let frame = CloseFrame { code: CloseCode::from(code), reason: reason.into() };
                let _ = sink.send(Message::Close(Some(frame))).await;
                return;
            }
        }
    }
    // Every sender is gone: the client was dropped without `close()`. Say goodbye properly.
    let _ = sink.send(Message::Close(Some(CloseFrame { code: CloseCode::Normal, reason: "".into() }))).await;
}

async fn read_loop(
    mut stream: SplitStream<Ws>,
    shared: Arc<Shared>,
    // Weak: the reader must not keep the writer alive after the client is dropped, or the
    // goodbye close frame would never be sent.
    writer: mpsc::WeakSender<Outgoing>,
    silence_limit: Option<Duration>,
    first: Option<SessionEvent>,
) {
    if let Some(marker) = first {
        shared.hub.mark_all(marker);
    }
    let info = loop {
        let next = match silence_limit {
            Some(limit) => match timeout(limit, stream.next()).await {
                Ok(next) => next,
                Err(_) => {
                    tracing::warn!(?limit, "gateway silent for two tick intervals; closing");
                    if let Some(writer) = writer.upgrade() {
                        let _ = writer.try_send(Outgoing::Close(TICK_TIMEOUT_CODE, "tick timeout".to_owned()));
                    }
                    break CloseInfo { code: Some(TICK_TIMEOUT_CODE), reason: "tick timeout".to_owned() };
                }
            },
            None => stream.next().await,
        };
        match next {
            None => break CloseInfo { code: None, reason: "connection closed without a close frame".to_owned() },
            Some(Err(e)) => break CloseInfo { code: None, reason: e.to_string() },
            Some(Ok(Message::Close(frame))) => break close_info(frame.as_ref()),
            Some(Ok(Message::Text(text))) => handle_text(text.as_str(), &shared),
            Some(Ok(Message::Binary(_))) => tracing::debug!("ignoring binary frame"),
            Some(Ok(_)) => {}
        }
    };
    tracing::debug!(code = ?info.code, reason = %info.reason, "gateway connection ended");
    shared.finish(info);
    // Keep reading briefly: tungstenite sends our reply to the gateway's close frame while the
    // stream is polled, and the gateway waits for that reply to finish the close handshake.
    let _ = timeout(CLOSE_GRACE, async { while let Some(Ok(_)) = stream.next().await {} }).await;
}

fn handle_text(text: &str, shared: &Shared) {
    let value: Value = match serde_json::from_str(text) {
        Ok(v) => v,
        Err(e) => {
            tracing::warn!(error = %e, "ignoring a frame that is not JSON");
            return;
        }
    };
    match value.get("type").and_then(Value::as_str) {
        Some("res") => {
            let id = value.get("id").and_then(Value::as_str).map(str::to_owned);
            match (serde_json::from_value::<ResponseFrame>(value), id) {
                (Ok(frame), _) => shared.dispatch_response(frame),
                // Tell the caller rather than let it run into its timeout.
                (Err(e), Some(id)) => {
                    shared.dispatch_error(&id, ClientError::Protocol(format!("malformed res frame: {e}")))
                }
                (Err(e), None) => tracing::warn!(error = %e, "ignoring malformed res frame without id"),
            }
        }
        Some("event") => match serde_json::from_value::<EventFrame>(value) {
            Ok(event) => {
                if let Some(seq) = event.seq {
                    shared.track_seq(seq, &event.event);
                }
                let shutdown = (event.event == events::names::SHUTDOWN).then(|| shutdown_info(&event));
                if shutdown.is_some() {
                    let expected =
                        event.payload.as_ref().and_then(|p| p.get("restartExpectedMs")).and_then(Value::as_u64);
                    *shared.restart_expected_ms.lock().unwrap_or_else(|e| e.into_inner()) = expected;
                }
                shared.hub.deliver(event);
                if let Some(info) = shutdown {
                    // The gateway closes with 1012 right after; fail waiting requests now rather
                    // than let them run into their timeouts.
                    shared.begin_close(info);
                }
            }
            Err(e) => tracing::warn!(error = %e, "ignoring malformed event frame"),
        },
        other => tracing::debug!(kind = ?other, "ignoring frame of unknown type"),
    }
}

fn shutdown_info(event: &EventFrame) -> CloseInfo {
    let reason = event
        .payload
        .as_ref()
        .and_then(|p| p.get("reason"))
        .and_then(Value::as_str)
        .unwrap_or(close::REASON_SERVICE_RESTART);
    CloseInfo { code: Some(close::SERVICE_RESTART), reason: reason.to_owned() }
}
