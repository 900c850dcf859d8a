//! One WebSocket control connection: challenge, handshake, then the request loop.
//!
//! Shape (after mini-redis): a writer task owns the sink and drains the client's queue of
//! pre-serialized frames; the reader (this task) `select!`s between the next frame and
//! shutdown, answers the handshake inline, and runs each later request on its own task with a
//! per-connection bound.
//!
//! Class closed here: a peer that stops reading must not keep its socket or the gateway's memory.
//! Three rules do it. The reader stops reading requests while the client's unsent output is above
//! [`READ_PAUSE_BYTES`] (backpressure: a flood of requests cannot pile up answers). Every write has
//! a deadline ([`write_deadline`]); a write that misses it ends the connection. And whatever ends
//! the connection (abort, write failure, keepalive, the reader finishing) ends both halves: the
//! queue is dropped and the socket released.

use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::Duration;

use axum::extract::WebSocketUpgrade;
use axum::extract::ws::{CloseFrame, Message, Utf8Bytes, WebSocket};
use axum::http::HeaderMap;
use axum::response::Response;
use futures_util::{SinkExt, StreamExt};
use serde_json::json;
use tokio::sync::{Semaphore, mpsc};
use tokio_util::sync::CancellationToken;

use clawgate_core::broadcast::{ClientHandle, ClientIdentity, Outbound, QueueState};
use clawgate_core::dispatch::{self, CallContext, Dispatcher, Refusal};
use clawgate_core::events::Events;
use clawgate_core::handshake::{AuthService, ConnMeta};
use clawgate_core::health::HealthService;
use clawgate_core::tasks::Tasks;
use clawgate_protocol::connect::parse_connect_params;
use clawgate_protocol::events::names as ev;
use clawgate_protocol::frames::{EventFrame, FrameError, ResponseFrame, parse_request_frame};
use clawgate_protocol::{ErrorShape, close};

/// Requests one connection may have running at once; more wait (backpressure on the reader).
const MAX_INFLIGHT_PER_CONNECTION: usize = 64;
/// How often an authenticated socket is pinged.
const PING_INTERVAL: Duration = Duration::from_secs(30);
/// How long after a ping the peer has to show it is alive (any frame counts, a pong included).
const PONG_WINDOW: Duration = Duration::from_secs(25);
/// Unsent output above which the reader stops reading requests until the writer catches up.
const READ_PAUSE_BYTES: usize = 4 * 1024 * 1024;
/// Time any one frame may take to reach the socket, on top of [`MIN_WRITE_RATE`]: a client that
/// accepts nothing for this long is gone or hostile (upstream closes such clients within seconds).
const WRITE_TIMEOUT: Duration = Duration::from_secs(10);
/// The slowest link a large frame is still given time for (bytes per second).
const MIN_WRITE_RATE: usize = 64 * 1024;
/// Frames and bytes the writer sends with one flush at most.
const MAX_BATCH_FRAMES: usize = 64;
const MAX_BATCH_BYTES: usize = 256 * 1024;
/// How long a closing socket is given for its close frame and flush.
const CLOSE_GRACE: Duration = Duration::from_secs(1);

/// Deadline for writing one frame of `len` bytes.
fn write_deadline(len: usize) -> Duration {
    WRITE_TIMEOUT + Duration::from_secs((len / MIN_WRITE_RATE) as u64)
}

/// What one control connection uses: admission, the `hello-ok` snapshot, client registration
/// and presence, the task tracker its requests run under, and the method router.
#[derive(Debug, Clone)]
pub(crate) struct Connections {
    pub(crate) auth: AuthService,
    pub(crate) health: HealthService,
    pub(crate) events: Events,
    pub(crate) tasks: Tasks,
    pub(crate) dispatcher: Dispatcher,
    /// Told when a node connects and leaves (its registration, its pending invokes).
    pub(crate) nodes: clawgate_core::nodes::NodeService,
    /// Counts connections open and accepted.
    pub(crate) metrics: clawgate_core::metrics::Metrics,
}

/// Accept the upgrade with the protocol's frame limits.
pub(crate) fn upgrade(conns: Connections, addr: SocketAddr, headers: &HeaderMap, up: WebSocketUpgrade) -> Response {
    let header = |name: &str| headers.get(name).and_then(|v| v.to_str().ok()).map(str::to_owned);
    // The client behind any trusted proxy: lockouts, "is it local" and the logs all use it.
    let peer = clawgate_core::client_addr::client_peer(addr.ip(), headers, &conns.auth.settings().proxy_trust);
    let meta = ConnMeta {
        conn_id: uuid::Uuid::new_v4().to_string(),
        remote_ip: peer.ip,
        origin: header("origin"),
        host: header("host"),
        scopes_header: header("x-openclaw-scopes"),
        forwarded: peer.forwarded,
        nonce: uuid::Uuid::new_v4().to_string(),
    };
    // Small per-socket buffers (they grow for big frames): idle connections must stay cheap.
    up.read_buffer_size(8 * 1024)
        .write_buffer_size(8 * 1024)
        .max_message_size(clawgate_protocol::MAX_PAYLOAD_BYTES)
        .max_frame_size(clawgate_protocol::MAX_PAYLOAD_BYTES)
        .on_upgrade(move |socket| run(conns, meta, socket))
}

/// Queue side of a connection before it is registered with the broadcaster.
struct Queue {
    tx: mpsc::UnboundedSender<Outbound>,
    state: Arc<QueueState>,
}

impl Queue {
    fn text(&self, text: String) {
        self.state.queued.fetch_add(text.len(), Ordering::AcqRel);
        let _ = self.tx.send(Outbound::Text(text));
    }

    fn close(&self, code: u16, reason: &str) {
        let _ = self.tx.send(Outbound::Close(code, close::truncate_reason(reason)));
    }

    /// Answer a request with an error, then close.
    fn refuse(&self, id: String, error: ErrorShape, code: u16, reason: &str) {
        self.text(ResponseFrame::err(id, error).to_text());
        self.close(code, reason);
    }
}

/// Drains the queue into the socket until the queue ends, a close is sent, the reader is done and
/// nothing more is queued, a write fails or misses its deadline, or the connection is aborted.
/// On the way out it frees whatever is still queued and cancels `state.aborted`, so the reader
/// lets go of the socket too.
async fn writer(
    mut sink: futures_util::stream::SplitSink<WebSocket, Message>,
    mut rx: mpsc::UnboundedReceiver<Outbound>,
    state: Arc<QueueState>,
    reader_done: CancellationToken,
) {
    loop {
        let out = tokio::select! {
            biased;
            () = state.aborted.cancelled() => break,
            out = rx.recv() => out,
            () = reader_done.cancelled() => rx.try_recv().ok(),
        };
        let Some(out) = out else { break };
        // Whatever else is queued already goes out with it, up to a bound: one flush (one
        // syscall) per batch instead of one per frame, which is what a client hearing many
        // sessions' deltas at once costs the gateway.
        let mut batch = Vec::new();
        let (mut len, mut last) = (0, false);
        let mut next = Some(out);
        while let Some(out) = next.take() {
            let (message, n, is_close) = match out {
                Outbound::Text(text) => {
                    let n = text.len();
                    (Message::Text(Utf8Bytes::from(text)), n, false)
                }
                // A broadcast's frame, shared with every other recipient: this client's copy
                // (with its `seq`) is made here, on its own task, right before the write.
                Outbound::Event(frame, seq) => {
                    let text = frame.text(seq);
                    let n = text.len();
                    (Message::Text(Utf8Bytes::from(text)), n, false)
                }
                Outbound::Ping => (Message::Ping(Default::default()), 0, false),
                Outbound::Close(code, reason) => {
                    (Message::Close(Some(CloseFrame { code, reason: Utf8Bytes::from(reason) })), 0, true)
                }
            };
            batch.push(message);
            len += n;
            last = is_close;
            if last || batch.len() >= MAX_BATCH_FRAMES || len >= MAX_BATCH_BYTES {
                break;
            }
            next = rx.try_recv().ok();
        }
        let write = async {
            for message in batch {
                sink.feed(message).await?;
            }
            sink.flush().await
        };
        let sent = tokio::select! {
            biased;
            () = state.aborted.cancelled() => break,
            sent = tokio::time::timeout(write_deadline(len), write) => sent,
        };
        state.queued.fetch_sub(len, Ordering::AcqRel);
        state.drained.notify_one();
        match sent {
            Ok(Ok(())) if !last => {}
            Ok(Ok(())) | Ok(Err(_)) => break,
            Err(_elapsed) => {
                tracing::info!("a write missed its deadline: closing a client that does not read");
                state.abort(close::POLICY_VIOLATION, close::REASON_SLOW_CONSUMER);
                break;
            }
        }
    }
    // Nothing queued now will be sent: free it at once rather than when the last handle goes.
    rx.close();
    while rx.try_recv().is_ok() {}
    state.queued.store(0, Ordering::Release);
    state.drained.notify_one();
    if state.aborted.is_cancelled()
        && let Some((code, reason)) = state.abort_close()
    {
        let frame = Message::Close(Some(CloseFrame { code, reason: Utf8Bytes::from(reason) }));
        let _ = tokio::time::timeout(CLOSE_GRACE, sink.send(frame)).await;
    }
    let _ = tokio::time::timeout(CLOSE_GRACE, sink.close()).await;
    // The writer is done with the socket: the reader must let go of its half too.
    state.aborted.cancel();
}

async fn run(conns: Connections, meta: ConnMeta, socket: WebSocket) {
    // Counted open until this task ends, whichever way it ends.
    let _open = conns.metrics.ws_connection();
    let (sink, mut stream) = socket.split();
    let (tx, rx) = mpsc::unbounded_channel();
    let state = Arc::new(QueueState::default());
    let reader_done = CancellationToken::new();
    let writer_task = tokio::spawn(writer(sink, rx, state.clone(), reader_done.clone()));
    let ending = Ending { writer: writer_task, reader_done, state: state.clone() };
    let q = Queue { tx: tx.clone(), state: state.clone() };
    let shutdown = conns.tasks.token();

    q.text(
        EventFrame::new(
            ev::CONNECT_CHALLENGE,
            json!({"nonce": meta.nonce, "ts": clawgate_core::time::now_ms(), "capabilities": ["model-catalog-snapshot"]}),
        )
        .to_text(),
    );

    // ---- handshake: the first frame must be `connect`, within the timeout ----
    let settings = conns.auth.settings();
    let deadline = tokio::time::Instant::now() + settings.handshake_timeout;
    let (connect_id, params, admission) = loop {
        let next = tokio::select! {
            n = tokio::time::timeout_at(deadline, stream.next()) => n,
            () = state.aborted.cancelled() => { ending.finish(tx).await; return; }
            _ = shutdown.cancelled() => { q.close(close::SERVICE_RESTART, close::REASON_SERVICE_RESTART); ending.finish(tx).await; return; }
        };
        let text = match next {
            Err(_elapsed) => {
                tracing::debug!(conn = %meta.conn_id, "handshake timeout");
                q.close(close::NORMAL, "");
                ending.finish(tx).await;
                return;
            }
            Ok(Some(Err(e))) => {
                if let Some((code, reason)) = close_for_read_error(e) {
                    q.close(code, reason);
                }
                ending.finish(tx).await;
                return;
            }
            Ok(None) | Ok(Some(Ok(Message::Close(_)))) => {
                ending.finish(tx).await;
                return;
            }
            Ok(Some(Ok(Message::Ping(_) | Message::Pong(_)))) => continue,
            Ok(Some(Ok(Message::Text(t)))) => t.to_string(),
            Ok(Some(Ok(Message::Binary(b)))) => String::from_utf8_lossy(&b).into_owned(),
        };
        if text.len() > clawgate_protocol::MAX_PREAUTH_PAYLOAD_BYTES {
            q.close(close::MESSAGE_TOO_BIG, close::REASON_PREAUTH_TOO_LARGE);
            ending.finish(tx).await;
            return;
        }
        let req = match parse_request_frame(&text) {
            Ok(r) => r,
            Err(FrameError::Json(e)) => {
                tracing::debug!(conn = %meta.conn_id, error = %e, "parse-error before connect");
                q.close(close::NORMAL, "");
                ending.finish(tx).await;
                return;
            }
            Err(e) => {
                let err = e.to_error_shape();
                let reason = err.message.clone();
                q.refuse(e.response_id(), err, close::POLICY_VIOLATION, &reason);
                ending.finish(tx).await;
                return;
            }
        };
        if req.method != clawgate_protocol::methods::names::CONNECT {
            let msg = "invalid handshake: first request must be connect";
            q.refuse(req.id, ErrorShape::invalid_request(msg), close::POLICY_VIOLATION, msg);
            ending.finish(tx).await;
            return;
        }
        let params = match parse_connect_params(&req.params_or_empty()) {
            Ok(p) => p,
            Err(msg) => {
                q.refuse(req.id, ErrorShape::invalid_request(msg.clone()), close::POLICY_VIOLATION, &msg);
                ending.finish(tx).await;
                return;
            }
        };
        match conns.auth.admit(&meta, &params).await {
            Ok(admission) => break (req.id, params, admission),
            Err(rej) => {
                tracing::info!(conn = %meta.conn_id, ip = %meta.remote_ip, client = %params.client.id, code = ?rej.error.detail_code(), "connect refused");
                q.refuse(req.id, rej.error, rej.close_code, &rej.close_reason);
                ending.finish(tx).await;
                return;
            }
        }
    };

    // ---- hello-ok, registration ----
    let hello = conns.health.hello_ok(&meta.conn_id, &admission);
    // Encoded directly: the same text as through its JSON tree (see `HelloOk`), built once.
    let hello_json = serde_json::to_string(&hello).unwrap_or_else(|_| "null".to_owned());
    q.text(ResponseFrame::ok_text(&connect_id, &hello_json));
    let identity = ClientIdentity {
        conn_id: meta.conn_id.clone(),
        role: admission.role.clone(),
        scopes: admission.scopes.clone(),
        device_id: admission.device.as_ref().map(|d| d.device_id.clone()),
        auth_kind: admission.auth_kind,
        client: (params.client.id.clone(), params.client.mode.clone()),
        caps: params.caps.clone(),
        access: admission.access.clone(),
        rate: settings.per_connection_rate,
    };
    let client = ClientHandle::with_queue(identity, tx.clone(), state.clone(), clawgate_protocol::MAX_BUFFERED_BYTES);
    tracing::info!(conn = %meta.conn_id, ip = %meta.remote_ip, client = %params.client.id, mode = %params.client.mode,
        role = %admission.role, method = admission.method, scopes = ?admission.scopes, "client connected");
    conns.events.client_connected(client.clone(), &params, &meta.remote_ip.to_string());
    conns.nodes.connected(client.clone(), &params, &meta.remote_ip.to_string());
    drop(q);

    // ---- request loop ----
    let inflight = Arc::new(Semaphore::new(MAX_INFLIGHT_PER_CONNECTION));
    let mut wrong_role_streak = 0u32;
    let mut last_turn = None;
    // A node's presence timeout is its own (`gateway.nodes.presenceTimeoutMs`): a silent node
    // must be marked gone, and its invokes failed, when the operator configured.
    let (ping_every, silent_limit) =
        conns.nodes.keepalive(&client).unwrap_or((PING_INTERVAL, PING_INTERVAL + PONG_WINDOW));
    let mut ping = tokio::time::interval_at(tokio::time::Instant::now() + ping_every, ping_every);
    let mut last_seen = tokio::time::Instant::now();
    loop {
        // Backpressure: while the client's answers are not being taken, take no more questions.
        let paused = state.queued() > READ_PAUSE_BYTES;
        let msg = tokio::select! {
            biased;
            () = state.aborted.cancelled() => break,
            _ = shutdown.cancelled() => break,
            _ = ping.tick() => {
                // A peer silent for a whole ping interval plus the pong window is gone.
                if last_seen.elapsed() > silent_limit {
                    tracing::info!(conn = %meta.conn_id, "no pong within the keepalive window; closing");
                    client.abort(close::NORMAL, "keepalive timeout");
                    break;
                }
                client.ping();
                continue;
            }
            () = state.drained.notified(), if paused => continue,
            m = stream.next(), if !paused => m,
        };
        last_seen = tokio::time::Instant::now();
        let text = match msg {
            Some(Err(e)) => {
                if let Some((code, reason)) = close_for_read_error(e) {
                    client.close(code, reason);
                }
                break;
            }
            None | Some(Ok(Message::Close(_))) => break,
            Some(Ok(Message::Ping(_) | Message::Pong(_))) => continue,
            Some(Ok(Message::Text(t))) => t,
            Some(Ok(Message::Binary(b))) => match Utf8Bytes::try_from(b) {
                Ok(t) => t,
                Err(_) => continue,
            },
        };
        let parsed = parse_request_frame(&text);
        // Memory per request stays a small multiple of its size: the frame's text is not kept
        // beside its parsed form, and the params are moved to the handler, not cloned.
        drop(text);
        let mut req = match parsed {
            Ok(r) => r,
            Err(FrameError::Json(e)) => {
                tracing::debug!(conn = %meta.conn_id, error = %e, "ignoring unparseable frame");
                continue;
            }
            Err(e) => {
                let _ = client.send(ResponseFrame::err(e.response_id(), e.to_error_shape()).to_text());
                continue;
            }
        };
        let params = req.take_params();
        match dispatch::authorize(&client, &req.method, &params).await {
            Ok(()) => wrong_role_streak = 0,
            Err(Refusal::MissingScope(err) | Refusal::Denied(err)) => {
                wrong_role_streak = 0;
                conns.metrics.request_refused(&req.method);
                let _ = client.send(ResponseFrame::err(req.id, err).to_text());
                continue;
            }
            Err(Refusal::WrongRole(err)) => {
                wrong_role_streak += 1;
                conns.metrics.request_refused(&req.method);
                let _ = client.send(ResponseFrame::err(req.id, err).to_text());
                if wrong_role_streak > clawgate_protocol::MAX_UNAUTHORIZED_ROLE_CALLS {
                    client.close(close::POLICY_VIOLATION, close::REASON_REPEATED_UNAUTHORIZED);
                    break;
                }
                continue;
            }
        }
        let permit = tokio::select! {
            p = inflight.clone().acquire_owned() => p,
            () = state.aborted.cancelled() => break,
        };
        let Ok(permit) = permit else { break };
        let dispatcher = conns.dispatcher.clone();
        // Requests that change a session take their turn now, in arrival order; they run on their
        // own tasks but each waits for the previous one's ordered part (see `dispatch::is_ordered`).
        let turn = dispatch::is_ordered(&req.method).then(|| dispatch::Turn::next(&mut last_turn));
        let ctx = CallContext { client: client.clone(), request_id: req.id.clone(), turn };
        conns.tasks.spawn("ws-requests", async move {
            let _permit = permit;
            let text = dispatcher.respond(&ctx, req.id, &req.method, params).await;
            let _ = ctx.client.send(text);
        });
    }

    conns.events.client_disconnected(&meta.conn_id);
    conns.nodes.disconnected(&client);
    tracing::info!(conn = %meta.conn_id, "client disconnected");
    drop(client);
    ending.finish(tx).await;
}

/// The close a frame that could not be read earns (RFC 6455 §7.4.1): over the payload limit 1009
/// (refused from its header, before the payload is buffered), a text frame that is not UTF-8
/// 1007, any other broken frame 1002. `None` when the socket itself failed (nothing to say).
fn close_for_read_error(err: axum::Error) -> Option<(u16, &'static str)> {
    let err = err.into_inner().downcast::<tungstenite::Error>().ok()?;
    match *err {
        tungstenite::Error::Capacity(_) => Some((close::MESSAGE_TOO_BIG, close::REASON_MESSAGE_TOO_BIG)),
        tungstenite::Error::Utf8(_) => Some((close::INVALID_PAYLOAD, close::REASON_INVALID_UTF8)),
        tungstenite::Error::Protocol(_) => Some((close::PROTOCOL_ERROR, close::REASON_BAD_FRAME)),
        _ => None,
    }
}

/// How a connection ends, whichever side ends it.
struct Ending {
    writer: tokio::task::JoinHandle<()>,
    reader_done: CancellationToken,
    state: Arc<QueueState>,
}

impl Ending {
    /// The reader is done: let the writer flush what is queued (a close frame included) within
    /// its deadlines, then stop it, so neither half outlives the connection.
    async fn finish(self, tx: mpsc::UnboundedSender<Outbound>) {
        drop(tx);
        self.reader_done.cancel();
        let mut writer = self.writer;
        if tokio::time::timeout(Duration::from_secs(2), &mut writer).await.is_err() {
            self.state.abort(close::NORMAL, "");
            if tokio::time::timeout(CLOSE_GRACE * 2, &mut writer).await.is_err() {
                writer.abort();
            }
        }
    }
}
