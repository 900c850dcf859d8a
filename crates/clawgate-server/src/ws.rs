//! One WebSocket control connection: challenge, handshake, then the request loop.
//!
//! Shape (after mini-redis): a writer task owns the sink and drains the client's queue of
//! pre-serialized frames; the reader (this task) `select!`s between the next frame and
//! shutdown, answers the handshake inline, and runs each later request on its own task with a
//! per-connection bound.

use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use axum::extract::WebSocketUpgrade;
use axum::extract::ws::{CloseFrame, Message, Utf8Bytes, WebSocket};
use axum::http::HeaderMap;
use axum::response::Response;
use futures_util::{SinkExt, StreamExt};
use serde_json::json;
use tokio::sync::{Semaphore, mpsc};

use clawgate_core::Gateway;
use clawgate_core::broadcast::{ClientHandle, ClientIdentity, Outbound};
use clawgate_core::dispatch::{self, CallContext, Refusal};
use clawgate_core::handshake::{self, ConnMeta};
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

/// Accept the upgrade with the protocol's frame limits.
pub fn upgrade(gw: Arc<Gateway>, addr: SocketAddr, headers: &HeaderMap, up: WebSocketUpgrade) -> Response {
    let header = |name: &str| headers.get(name).and_then(|v| v.to_str().ok()).map(str::to_owned);
    let meta = ConnMeta {
        conn_id: uuid::Uuid::new_v4().to_string(),
        remote_ip: addr.ip(),
        origin: header("origin"),
        host: header("host"),
        scopes_header: header("x-openclaw-scopes"),
        forwarded: clawgate_core::auth::Peer::FORWARDING_HEADERS.iter().any(|h| headers.contains_key(*h)),
        nonce: uuid::Uuid::new_v4().to_string(),
    };
    // Small per-socket buffers (they grow for big frames): idle connections must stay cheap.
    up.read_buffer_size(8 * 1024)
        .write_buffer_size(8 * 1024)
        .max_message_size(clawgate_protocol::MAX_PAYLOAD_BYTES)
        .max_frame_size(clawgate_protocol::MAX_PAYLOAD_BYTES)
        .on_upgrade(move |socket| run(gw, meta, socket))
}

/// Queue side of a connection before it is registered with the broadcaster.
struct Queue {
    tx: mpsc::UnboundedSender<Outbound>,
    queued: Arc<AtomicUsize>,
}

impl Queue {
    fn text(&self, text: String) {
        self.queued.fetch_add(text.len(), Ordering::AcqRel);
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

async fn writer(
    mut sink: futures_util::stream::SplitSink<WebSocket, Message>,
    mut rx: mpsc::UnboundedReceiver<Outbound>,
    queued: Arc<AtomicUsize>,
) {
    while let Some(out) = rx.recv().await {
        match out {
            Outbound::Text(text) => {
                let len = text.len();
                let res = sink.send(Message::Text(Utf8Bytes::from(text))).await;
                queued.fetch_sub(len, Ordering::AcqRel);
                if res.is_err() {
                    break;
                }
            }
            Outbound::Ping => {
                if sink.send(Message::Ping(Default::default())).await.is_err() {
                    break;
                }
            }
            Outbound::Close(code, reason) => {
                let _ = sink.send(Message::Close(Some(CloseFrame { code, reason: Utf8Bytes::from(reason) }))).await;
                break;
            }
        }
    }
    let _ = sink.close().await;
}

async fn run(gw: Arc<Gateway>, meta: ConnMeta, socket: WebSocket) {
    let (sink, mut stream) = socket.split();
    let (tx, rx) = mpsc::unbounded_channel();
    let queued = Arc::new(AtomicUsize::new(0));
    let writer_task = tokio::spawn(writer(sink, rx, queued.clone()));
    let q = Queue { tx: tx.clone(), queued: queued.clone() };
    let shutdown = gw.shutdown_token();

    q.text(
        EventFrame::new(
            ev::CONNECT_CHALLENGE,
            json!({"nonce": meta.nonce, "ts": clawgate_core::time::now_ms(), "capabilities": ["model-catalog-snapshot"]}),
        )
        .to_text(),
    );

    // ---- handshake: the first frame must be `connect`, within the timeout ----
    let settings = gw.settings();
    let deadline = tokio::time::Instant::now() + settings.handshake_timeout;
    let (connect_id, params, admission) = loop {
        let next = tokio::select! {
            n = tokio::time::timeout_at(deadline, stream.next()) => n,
            _ = shutdown.cancelled() => { q.close(close::SERVICE_RESTART, close::REASON_SERVICE_RESTART); break_out(writer_task, tx).await; return; }
        };
        let text = match next {
            Err(_elapsed) => {
                tracing::debug!(conn = %meta.conn_id, "handshake timeout");
                q.close(close::NORMAL, "");
                break_out(writer_task, tx).await;
                return;
            }
            Ok(None) | Ok(Some(Err(_))) | Ok(Some(Ok(Message::Close(_)))) => {
                break_out(writer_task, tx).await;
                return;
            }
            Ok(Some(Ok(Message::Ping(_) | Message::Pong(_)))) => continue,
            Ok(Some(Ok(Message::Text(t)))) => t.to_string(),
            Ok(Some(Ok(Message::Binary(b)))) => String::from_utf8_lossy(&b).into_owned(),
        };
        if text.len() > clawgate_protocol::MAX_PREAUTH_PAYLOAD_BYTES {
            q.close(close::MESSAGE_TOO_BIG, close::REASON_PREAUTH_TOO_LARGE);
            break_out(writer_task, tx).await;
            return;
        }
        let req = match parse_request_frame(&text) {
            Ok(r) => r,
            Err(FrameError::Json(e)) => {
                tracing::debug!(conn = %meta.conn_id, error = %e, "parse-error before connect");
                q.close(close::NORMAL, "");
                break_out(writer_task, tx).await;
                return;
            }
            Err(e) => {
                let err = e.to_error_shape();
                let reason = err.message.clone();
                q.refuse(e.response_id(), err, close::POLICY_VIOLATION, &reason);
                break_out(writer_task, tx).await;
                return;
            }
        };
        if req.method != clawgate_protocol::methods::names::CONNECT {
            let msg = "invalid handshake: first request must be connect";
            q.refuse(req.id, ErrorShape::invalid_request(msg), close::POLICY_VIOLATION, msg);
            break_out(writer_task, tx).await;
            return;
        }
        let params = match parse_connect_params(&req.params_or_empty()) {
            Ok(p) => p,
            Err(msg) => {
                q.refuse(req.id, ErrorShape::invalid_request(msg.clone()), close::POLICY_VIOLATION, &msg);
                break_out(writer_task, tx).await;
                return;
            }
        };
        match handshake::admit(&gw, &meta, &params).await {
            Ok(admission) => break (req.id, params, admission),
            Err(rej) => {
                tracing::info!(conn = %meta.conn_id, ip = %meta.remote_ip, client = %params.client.id, code = ?rej.error.detail_code(), "connect refused");
                q.refuse(req.id, rej.error, rej.close_code, &rej.close_reason);
                break_out(writer_task, tx).await;
                return;
            }
        }
    };

    // ---- hello-ok, registration ----
    let hello = gw.hello_ok(&meta.conn_id, &admission);
    let hello_json = serde_json::to_value(&hello).unwrap_or_default();
    q.text(ResponseFrame::ok(connect_id, hello_json).to_text());
    let identity = ClientIdentity {
        conn_id: meta.conn_id.clone(),
        role: admission.role.clone(),
        scopes: admission.scopes.clone(),
        device_id: admission.device.as_ref().map(|d| d.device_id.clone()),
        auth_kind: admission.auth_kind,
        client: (params.client.id.clone(), params.client.mode.clone()),
        caps: params.caps.clone(),
    };
    let client = ClientHandle::with_queue(identity, tx.clone(), queued.clone(), clawgate_protocol::MAX_BUFFERED_BYTES);
    tracing::info!(conn = %meta.conn_id, ip = %meta.remote_ip, client = %params.client.id, mode = %params.client.mode,
        role = %admission.role, method = admission.method, scopes = ?admission.scopes, "client connected");
    gw.client_connected(client.clone(), &params, &meta.remote_ip.to_string());
    drop(q);

    // ---- request loop ----
    let inflight = Arc::new(Semaphore::new(MAX_INFLIGHT_PER_CONNECTION));
    let mut wrong_role_streak = 0u32;
    let mut ping = tokio::time::interval_at(tokio::time::Instant::now() + PING_INTERVAL, PING_INTERVAL);
    let mut last_seen = tokio::time::Instant::now();
    loop {
        let msg = tokio::select! {
            m = stream.next() => m,
            _ = ping.tick() => {
                // A peer silent for a whole ping interval plus the pong window is gone.
                if last_seen.elapsed() > PING_INTERVAL + PONG_WINDOW {
                    tracing::info!(conn = %meta.conn_id, "no pong within the keepalive window; closing");
                    client.close(close::NORMAL, "keepalive timeout");
                    break;
                }
                client.ping();
                continue;
            }
            _ = shutdown.cancelled() => break,
        };
        last_seen = tokio::time::Instant::now();
        let text = match msg {
            None | Some(Err(_)) | Some(Ok(Message::Close(_))) => break,
            Some(Ok(Message::Ping(_) | Message::Pong(_))) => continue,
            Some(Ok(Message::Text(t))) => t,
            Some(Ok(Message::Binary(b))) => match Utf8Bytes::try_from(b) {
                Ok(t) => t,
                Err(_) => continue,
            },
        };
        let req = match parse_request_frame(&text) {
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
        let params = req.params_or_empty();
        match dispatch::authorize(&client, &req.method, &params) {
            Ok(()) => wrong_role_streak = 0,
            Err(Refusal::MissingScope(err)) => {
                wrong_role_streak = 0;
                let _ = client.send(ResponseFrame::err(req.id, err).to_text());
                continue;
            }
            Err(Refusal::WrongRole(err)) => {
                wrong_role_streak += 1;
                let _ = client.send(ResponseFrame::err(req.id, err).to_text());
                if wrong_role_streak > clawgate_protocol::MAX_UNAUTHORIZED_ROLE_CALLS {
                    client.close(close::POLICY_VIOLATION, close::REASON_REPEATED_UNAUTHORIZED);
                    break;
                }
                continue;
            }
        }
        let Ok(permit) = inflight.clone().acquire_owned().await else { break };
        let gw = gw.clone();
        let ctx = CallContext { client: client.clone(), request_id: req.id.clone() };
        tokio::spawn(async move {
            let _permit = permit;
            let frame = match dispatch::dispatch(&gw, &ctx, &req.method, params).await {
                Ok(payload) => ResponseFrame::ok(req.id, payload),
                Err(err) => ResponseFrame::err(req.id, err),
            };
            let _ = ctx.client.send(frame.to_text());
        });
    }

    gw.client_disconnected(&meta.conn_id);
    tracing::info!(conn = %meta.conn_id, "client disconnected");
    drop(client);
    break_out(writer_task, tx).await;
}

/// Let the writer flush what is queued (including a close frame) and finish.
async fn break_out(writer: tokio::task::JoinHandle<()>, tx: mpsc::UnboundedSender<Outbound>) {
    drop(tx);
    let _ = tokio::time::timeout(std::time::Duration::from_secs(2), writer).await;
}
