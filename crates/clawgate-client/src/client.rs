//! [`Client`]: a gateway connection that keeps itself up.
//!
//! Shape: the client handle holds the current [`Conn`] (one WebSocket) in a watch channel and a
//! [`Hub`] that outlives connections. A supervisor task waits for the connection to end; then,
//! unless the close says "do not come back" or the policy is [`ReconnectPolicy::never`], it
//! marks every session stream [`SessionEvent::Disconnected`], waits (the `shutdown` event's
//! `restartExpectedMs`, then jittered exponential backoff), connects again with the same
//! options (the new connection's reader marks the streams [`SessionEvent::Reconnected`] before
//! its first event), replays the subscriptions made through [`Client::subscribe`] and publishes
//! the new connection.
//!
//! What a request sees: one made while connected is sent at once; if its connection dies before
//! the answer it fails at once with [`ClientError::ConnectionLost`] (it is never re-sent: the
//! gateway may have acted on it). One made while reconnecting waits for the connection up to
//! [`ReconnectPolicy::request_wait`], then fails with [`ClientError::Unavailable`]. Once the
//! client is closed for good every call is [`ClientError::Closed`].

use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;

use futures_util::{Stream, StreamExt};
use serde_json::Value;
use tokio::sync::{broadcast, watch};
use tokio::time::{Instant, timeout_at};

use clawgate_protocol::hello::HelloOk;
use clawgate_protocol::{EventFrame, ResponseFrame, close};

use crate::conn::{Conn, event_session_key, is_final, response_payload};
use crate::error::{ClientError, CloseInfo};
use crate::hub::Hub;
use crate::options::{ClientOptions, ReconnectPolicy};
use crate::session::{SessionEvent, SessionHandle};

/// Where the client's connection stands, for callers that show "assistant unavailable".
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ConnectionState {
    /// The first handshake is running. [`Client::connect`] returns once it is done, so a
    /// client's watch starts at `Connected`; the state exists for callers that model the whole
    /// lifecycle (e.g. a banner shown before `connect` returns).
    Connecting,
    /// A connection is up.
    Connected,
    /// The connection was lost; reconnect attempt `attempt` (from 1) is waiting or running.
    Reconnecting {
        /// The attempt in progress.
        attempt: u32,
    },
    /// Closed for good ([`Client::close`], a close that forbids coming back, a refused
    /// reconnect, or the policy gave up); [`Client::close_info`] says how.
    Closed,
}

/// A subscription to replay after a reconnect.
#[derive(Debug, Clone, PartialEq)]
struct Subscription {
    method: String,
    params: Value,
}

/// What the handles, the supervisor and the session handles share.
struct Core {
    opts: ClientOptions,
    hub: Arc<Hub>,
    /// The live connection; `None` while reconnecting and after the end.
    conn: watch::Sender<Option<Arc<Conn>>>,
    state: watch::Sender<ConnectionState>,
    /// The latest `hello-ok` (a reconnect brings a new one).
    hello: Mutex<Arc<HelloOk>>,
    /// Subscriptions made through the client, replayed in order after each reconnect.
    subscriptions: Mutex<Vec<Subscription>>,
    /// How the client ended, once it has.
    closed: watch::Sender<Option<CloseInfo>>,
    /// Set when the last handle is dropped or `close()` is called: the supervisor stops.
    stop: watch::Sender<bool>,
}

impl Core {
    fn subscriptions(&self) -> MutexGuard<'_, Vec<Subscription>> {
        self.subscriptions.lock().unwrap_or_else(|e| e.into_inner())
    }

    fn set_hello(&self, hello: Arc<HelloOk>) {
        *self.hello.lock().unwrap_or_else(|e| e.into_inner()) = hello;
    }

    fn close_error(&self) -> ClientError {
        match self.closed.borrow().as_ref() {
            Some(info) => ClientError::closed(info),
            None => ClientError::Closed { code: None, reason: "connection closed".to_owned() },
        }
    }

    /// The live connection, waiting for one while reconnecting (until `deadline`).
    async fn live(&self, method: &str, deadline: Instant) -> Result<Arc<Conn>, ClientError> {
        // Subscribe before looking, so a change between the look and the wait still wakes us.
        let mut conn_rx = self.conn.subscribe();
        let mut state_rx = self.state.subscribe();
        loop {
            if let Some(conn) = conn_rx.borrow_and_update().as_ref().filter(|c| !c.is_closing()) {
                return Ok(conn.clone());
            }
            let state = *state_rx.borrow_and_update();
            match state {
                ConnectionState::Closed => return Err(self.close_error()),
                ConnectionState::Reconnecting { .. } | ConnectionState::Connecting | ConnectionState::Connected => {}
            }
            let attempt = match state {
                ConnectionState::Reconnecting { attempt } => attempt,
                _ => 0,
            };
            let changed = timeout_at(deadline, async {
                tokio::select! {
                    r = conn_rx.changed() => r.is_ok(),
                    r = state_rx.changed() => r.is_ok(),
                }
            })
            .await;
            match changed {
                Ok(true) => {}
                Ok(false) => return Err(self.close_error()),
                Err(_) => {
                    // A connection that died between the check and now, with reconnects off:
                    // the supervisor is about to close the client.
                    if !self.opts.reconnect.enabled {
                        return Err(self.close_error_or_lost(method));
                    }
                    let attempt = match *self.state.borrow() {
                        ConnectionState::Reconnecting { attempt } => attempt,
                        ConnectionState::Closed => return Err(self.close_error()),
                        _ => attempt,
                    };
                    return Err(ClientError::Unavailable { method: method.to_owned(), attempt });
                }
            }
        }
    }

    fn close_error_or_lost(&self, method: &str) -> ClientError {
        match self.closed.borrow().as_ref() {
            Some(info) => ClientError::closed(info),
            None => ClientError::Unavailable { method: method.to_owned(), attempt: 0 },
        }
    }

    /// How long a request may wait for a connection.
    fn request_deadline(&self) -> Instant {
        let wait = if self.opts.reconnect.enabled { self.opts.reconnect.request_wait } else { Duration::ZERO };
        Instant::now() + wait
    }

    /// Run `f` on the live connection; a connection that refuses because it is closing (it died
    /// between the lookup and the send) is looked up again until the deadline.
    async fn with_conn<T, F, Fut>(&self, method: &str, f: F) -> Result<T, ClientError>
    where
        F: Fn(Arc<Conn>) -> Fut,
        Fut: std::future::Future<Output = Result<T, ClientError>>,
    {
        let deadline = self.request_deadline();
        loop {
            let conn = self.live(method, deadline).await?;
            match f(conn.clone()).await {
                // `register` refused: the request was never sent, so it is safe to try again.
                Err(ClientError::Closed { .. }) if conn.is_closing() => {
                    if *self.state.borrow() == ConnectionState::Closed || !self.opts.reconnect.enabled {
                        return Err(self.close_error_or_lost(method));
                    }
                    // Wait for the supervisor to notice.
                    let _ = timeout_at(deadline, conn.closed()).await;
                }
                other => return other,
            }
        }
    }
}

/// Flags the supervisor to stop when the last [`Client`] clone is dropped.
struct Handle {
    core: Arc<Core>,
}

impl Drop for Handle {
    fn drop(&mut self) {
        self.core.stop.send_replace(true);
    }
}

/// A connection to a gateway that completed the handshake, and keeps itself up (see
/// [`ReconnectPolicy`]).
///
/// Cheap to clone; every clone is the same connection, and requests may be issued concurrently
/// from several tasks. Dropping the last clone (and every [`SessionHandle`] made from it)
/// closes the connection with a normal close.
///
/// ```no_run
/// use clawgate_client::{Client, ClientOptions};
/// # async fn run() -> Result<(), clawgate_client::ClientError> {
/// let client = Client::connect(
///     ClientOptions::new("ws://127.0.0.1:18789").token("gateway-token").scopes(["operator.read", "operator.write"]),
/// )
/// .await?;
/// let health = client.request("health", serde_json::json!({})).await?;
/// println!("gateway ok: {}", health["ok"]);
/// let mut state = client.state();
/// tokio::spawn(async move {
///     while state.changed().await.is_ok() {
///         println!("gateway connection: {:?}", *state.borrow());
///     }
/// });
/// # Ok(()) }
/// ```
#[derive(Clone)]
pub struct Client {
    handle: Arc<Handle>,
}

impl std::fmt::Debug for Client {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let hello = self.hello();
        f.debug_struct("Client")
            .field("conn_id", &hello.server.conn_id)
            .field("role", &hello.auth.role)
            .field("state", &self.current_state())
            .finish_non_exhaustive()
    }
}

impl Client {
    /// Open the WebSocket, wait for `connect.challenge`, send `connect` (with the device proof
    /// when an identity is set) and wait for `hello-ok`; then start the supervisor that keeps
    /// the connection up.
    ///
    /// The first connect is not retried: a refused `connect` is [`ClientError::Handshake`]
    /// carrying the gateway's error shape and close code, and each phase is bounded by the
    /// connect timeout ([`ClientError::Timeout`]). Retry it yourself (or start the gateway first)
    /// when the gateway may not be up yet.
    pub async fn connect(opts: ClientOptions) -> Result<Client, ClientError> {
        let hub = Hub::new(opts.event_capacity, opts.session_capacity);
        let conn = Arc::new(Conn::connect(&opts, hub.clone(), None).await?);
        let (conn_tx, _) = watch::channel(Some(conn.clone()));
        let (state, _) = watch::channel(ConnectionState::Connected);
        let (closed, _) = watch::channel(None);
        let (stop, _) = watch::channel(false);
        let core = Arc::new(Core {
            hello: Mutex::new(conn.hello().clone()),
            opts,
            hub,
            conn: conn_tx,
            state,
            subscriptions: Mutex::new(Vec::new()),
            closed,
            stop,
        });
        tokio::spawn(supervise(core.clone(), conn));
        Ok(Client { handle: Arc::new(Handle { core }) })
    }

    fn core(&self) -> &Arc<Core> {
        &self.handle.core
    }

    /// The `hello-ok` payload of the current (or last) connection.
    pub fn hello(&self) -> Arc<HelloOk> {
        self.core().hello.lock().unwrap_or_else(|e| e.into_inner()).clone()
    }

    /// The options this client connects (and reconnects) with.
    pub fn options(&self) -> &ClientOptions {
        &self.core().opts
    }

    /// A watch of the connection state: `Connected`, `Reconnecting { attempt }`, `Closed`.
    pub fn state(&self) -> watch::Receiver<ConnectionState> {
        self.core().state.subscribe()
    }

    /// The connection state now.
    pub fn current_state(&self) -> ConnectionState {
        *self.core().state.borrow()
    }

    /// Wait until the client is connected (returns at once when it is), at most `limit`.
    /// `false` when it is closed for good or the wait ran out.
    pub async fn wait_connected(&self, limit: Duration) -> bool {
        let mut rx = self.state();
        matches!(
            tokio::time::timeout(
                limit,
                rx.wait_for(|s| matches!(s, ConnectionState::Connected | ConnectionState::Closed))
            )
            .await,
            Ok(Ok(s)) if *s == ConnectionState::Connected
        )
    }

    /// Call `method` and return the `payload` of its (first) response; an `ok:false` response is
    /// [`ClientError::Rpc`] with the gateway's error shape. Bounded by the request timeout.
    pub async fn request(&self, method: &str, params: Value) -> Result<Value, ClientError> {
        response_payload(self.request_frame(method, params).await?)
    }

    /// Like [`request`](Self::request) with an explicit bound.
    pub async fn request_with_timeout(
        &self,
        method: &str,
        params: Value,
        limit: Duration,
    ) -> Result<Value, ClientError> {
        response_payload(self.request_frame_with_timeout(method, params, limit).await?)
    }

    /// Call `method` and return its first `res` frame as received (ok or not).
    pub async fn request_frame(&self, method: &str, params: Value) -> Result<ResponseFrame, ClientError> {
        self.request_frame_with_timeout(method, params, self.core().opts.request_timeout).await
    }

    /// Like [`request_frame`](Self::request_frame) with an explicit bound (on the answer; the
    /// wait for a connection while reconnecting is bounded separately).
    pub async fn request_frame_with_timeout(
        &self,
        method: &str,
        params: Value,
        limit: Duration,
    ) -> Result<ResponseFrame, ClientError> {
        self.core().with_conn(method, |conn| conn_request(conn, method, params.clone(), limit)).await
    }

    /// Call `method` and stream every `res` frame with its id, ending after the final one (see
    /// [`is_final`]): `agent` yields its `accepted` acknowledgement and then its result.
    ///
    /// The first frame is bounded by the request timeout, later ones are not (an agent run
    /// takes as long as it takes); wrap the stream in your own timeout when that matters. A
    /// connection lost midway ends the stream with [`ClientError::ConnectionLost`].
    pub async fn request_stream(
        &self,
        method: &str,
        params: Value,
    ) -> Result<impl Stream<Item = Result<ResponseFrame, ClientError>> + Send + 'static + use<>, ClientError> {
        let first = self.core().opts.request_timeout;
        self.core().with_conn(method, |conn| conn_stream(conn, method, params.clone(), first)).await
    }

    /// Call a two-phase method (`agent`) and return the payload of its final response, skipping
    /// the `accepted` acknowledgement. Only the first response is bounded by the request timeout.
    pub async fn request_final(&self, method: &str, params: Value) -> Result<Value, ClientError> {
        response_payload(self.request_final_frame(method, params).await?)
    }

    /// Like [`request_final`](Self::request_final), returning the final `res` frame as received.
    pub async fn request_final_frame(&self, method: &str, params: Value) -> Result<ResponseFrame, ClientError> {
        let stream = self.request_stream(method, params).await?;
        let mut stream = std::pin::pin!(stream);
        while let Some(frame) = stream.next().await {
            let frame = frame?;
            if is_final(&frame) {
                return Ok(frame);
            }
        }
        Err(ClientError::lost(method, &self.close_info().unwrap_or_else(unknown_close)))
    }

    /// Call a subscription method (`sessions.subscribe`, `sessions.messages.subscribe {key}`, …)
    /// and remember it: after every reconnect the client calls it again, before requests made
    /// meanwhile go out. Calling the same method with the same params twice records it once.
    ///
    /// ```no_run
    /// # async fn run(client: clawgate_client::Client) -> Result<(), clawgate_client::ClientError> {
    /// // `sessions.changed` events, now and after every reconnect.
    /// client.subscribe("sessions.subscribe", serde_json::json!({})).await?;
    /// let mut events = client.subscribe_events();
    /// while let Ok(event) = events.recv().await {
    ///     if event.event == "sessions.changed" {
    ///         println!("{:?}", event.payload);
    ///     }
    /// }
    /// # Ok(()) }
    /// ```
    pub async fn subscribe(&self, method: &str, params: Value) -> Result<Value, ClientError> {
        let payload = self.request(method, params.clone()).await?;
        let sub = Subscription { method: method.to_owned(), params };
        let mut subs = self.core().subscriptions();
        if !subs.contains(&sub) {
            subs.push(sub);
        }
        Ok(payload)
    }

    /// Call `method` (an unsubscribe) and stop replaying the subscription `subscribed_with`
    /// made with the same params.
    pub async fn unsubscribe(&self, method: &str, subscribed_with: &str, params: Value) -> Result<Value, ClientError> {
        self.core().subscriptions().retain(|s| !(s.method == subscribed_with && s.params == params));
        self.request(method, params).await
    }

    /// Every event from now on (except `connect.challenge`), across reconnects. A receiver that
    /// falls more than the event capacity behind gets `RecvError::Lagged`; after the client is
    /// closed for good, `Closed`.
    pub fn subscribe_events(&self) -> broadcast::Receiver<EventFrame> {
        self.core().hub.subscribe_all()
    }

    /// Events whose `payload.sessionKey` equals `session_key` exactly, as raw frames. The
    /// stream ends when the client closes; events missed by a lagging reader are logged and
    /// skipped. [`Client::session`] gives typed, bounded streams with lag reports instead.
    pub fn events_for_session(&self, session_key: &str) -> impl Stream<Item = EventFrame> + Send + 'static + use<> {
        let rx = self.subscribe_events();
        futures_util::stream::unfold((rx, session_key.to_owned()), |(mut rx, key)| async move {
            loop {
                match rx.recv().await {
                    Ok(event) if event_session_key(&event) == Some(key.as_str()) => return Some((event, (rx, key))),
                    Ok(_) => {}
                    Err(broadcast::error::RecvError::Lagged(n)) => {
                        tracing::warn!(session_key = %key, skipped = n, "session event stream fell behind; events dropped");
                    }
                    Err(broadcast::error::RecvError::Closed) => return None,
                }
            }
        })
    }

    /// A handle on one session (`compose:doc:abc:ann`, or a full `agent:<id>:…` key): its event
    /// stream and typed `agent` / `chat.*` calls. See [`SessionHandle`].
    pub fn session(&self, key: impl Into<String>) -> SessionHandle {
        SessionHandle::new(self.clone(), key.into())
    }

    pub(crate) fn hub(&self) -> &Arc<Hub> {
        &self.core().hub
    }

    /// How many times the event `seq` jumped (each jump means the gateway dropped events for this
    /// client, e.g. `dropIfSlow` events while it was slow), over all connections.
    pub fn gaps(&self) -> u64 {
        self.core().hub.gaps()
    }

    /// How many events those gaps skipped in total.
    pub fn missed_events(&self) -> u64 {
        self.core().hub.missed()
    }

    /// The highest event `seq` received on the current connection (0 before any; a new
    /// connection starts again at 1).
    pub fn last_seq(&self) -> u64 {
        self.core().conn.borrow().as_ref().map(|c| c.last_seq()).unwrap_or(0)
    }

    /// How the client ended, once it has; while a connection is ending (after a `shutdown`
    /// event), how that one is ending.
    pub fn close_info(&self) -> Option<CloseInfo> {
        if let Some(info) = self.core().closed.borrow().clone() {
            return Some(info);
        }
        self.core().conn.borrow().as_ref().and_then(|c| c.close_info())
    }

    /// Wait until the client is closed for good and return how. With reconnects enabled a
    /// lost connection does not end the client; watch [`state`](Self::state) for that.
    pub async fn closed(&self) -> CloseInfo {
        let mut rx = self.core().closed.subscribe();
        match rx.wait_for(Option::is_some).await {
            Ok(info) => info.clone().unwrap_or_else(unknown_close),
            Err(_) => unknown_close(),
        }
    }

    /// Close the connection with a normal close (1000), stop reconnecting, and wait briefly for
    /// the gateway's reply. Requests still waiting fail with [`ClientError::ConnectionLost`];
    /// later ones with [`ClientError::Closed`].
    pub async fn close(&self) {
        let core = self.core();
        core.stop.send_replace(true);
        let _ = tokio::time::timeout(CLOSE_WAIT, self.closed()).await;
    }
}

/// Bound on [`Client::close`] waiting for the supervisor to finish the close handshake.
const CLOSE_WAIT: Duration = Duration::from_secs(3);

async fn conn_request(
    conn: Arc<Conn>,
    method: &str,
    params: Value,
    limit: Duration,
) -> Result<ResponseFrame, ClientError> {
    conn.request_frame(method, params, limit).await
}

async fn conn_stream(
    conn: Arc<Conn>,
    method: &str,
    params: Value,
    first: Duration,
) -> Result<crate::conn::ResponseStream, ClientError> {
    conn.request_stream(method, params, first).await
}

fn unknown_close() -> CloseInfo {
    CloseInfo { code: None, reason: "connection closed".to_owned() }
}

/// Whether a close forbids reconnecting: the gateway refused us (policy, auth, revoked
/// credentials, protocol), so trying again would only be refused again.
pub(crate) fn close_is_final(info: &CloseInfo) -> bool {
    match info.code {
        Some(close::POLICY_VIOLATION) => info.reason != close::REASON_SLOW_CONSUMER,
        Some(code) => matches!(code, close::PROTOCOL_ERROR | close::MESSAGE_TOO_BIG | close::CREDENTIALS_CHANGED),
        None => false,
    }
}

/// Whether a failed reconnect attempt should stop the client rather than be retried.
pub(crate) fn connect_error_is_final(err: &ClientError) -> bool {
    match err {
        ClientError::InvalidUrl(_) | ClientError::Identity(_) => true,
        ClientError::Handshake { error, close_code, .. } => {
            error.code != "UNAVAILABLE"
                && close_code.is_none_or(|c| c != close::TRY_AGAIN_LATER && c != close::SERVICE_RESTART)
        }
        _ => false,
    }
}

/// Keep the client connected until it is stopped or told not to come back.
async fn supervise(core: Arc<Core>, mut conn: Arc<Conn>) {
    let policy: ReconnectPolicy = core.opts.reconnect;
    let mut stop = core.stop.subscribe();
    let end = 'outer: loop {
        // Connected: wait for the end of this connection or a stop.
        let info = tokio::select! {
            info = conn.closed() => info,
            _ = stopped(&mut stop) => {
                conn.close().await;
                break 'outer CloseInfo { code: Some(close::NORMAL), reason: "closed by client".to_owned() };
            }
        };
        core.conn.send_replace(None);
        if !policy.enabled || close_is_final(&info) {
            tracing::debug!(code = ?info.code, reason = %info.reason, "gateway connection ended; not reconnecting");
            break info;
        }
        tracing::info!(code = ?info.code, reason = %info.reason, "gateway connection lost; reconnecting");
        core.hub.mark_all(SessionEvent::Disconnected);
        let mut wait = conn.restart_expected().map(|d| d.min(policy.backoff.cap) + policy.backoff.delay(0));
        let mut attempt: u32 = 0;
        conn = loop {
            attempt += 1;
            core.state.send_replace(ConnectionState::Reconnecting { attempt });
            let delay = wait.take().unwrap_or_else(|| policy.backoff.delay(attempt - 1));
            tokio::select! {
                _ = tokio::time::sleep(delay) => {}
                _ = stopped(&mut stop) => break 'outer CloseInfo { code: Some(close::NORMAL), reason: "closed by client".to_owned() },
            }
            let next = tokio::select! {
                next = Conn::connect(&core.opts, core.hub.clone(), Some(SessionEvent::Reconnected)) => next,
                _ = stopped(&mut stop) => break 'outer CloseInfo { code: Some(close::NORMAL), reason: "closed by client".to_owned() },
            };
            match next {
                Ok(next) => {
                    let next = Arc::new(next);
                    resubscribe(&core, &next).await;
                    break next;
                }
                Err(e) if connect_error_is_final(&e) => {
                    tracing::warn!(error = %e, "gateway refused the reconnect; giving up");
                    break 'outer match &e {
                        ClientError::Handshake { error, close_code, .. } => {
                            CloseInfo { code: *close_code, reason: error.message.clone() }
                        }
                        other => CloseInfo { code: None, reason: other.to_string() },
                    };
                }
                Err(e) => {
                    tracing::debug!(attempt, error = %e, "reconnect attempt failed");
                    if policy.max_attempts.is_some_and(|max| attempt >= max) {
                        break 'outer CloseInfo {
                            code: None,
                            reason: format!("gave up reconnecting after {attempt} attempts: {e}"),
                        };
                    }
                }
            }
        };
        core.set_hello(conn.hello().clone());
        core.conn.send_replace(Some(conn.clone()));
        core.state.send_replace(ConnectionState::Connected);
        tracing::info!(attempts = attempt, "gateway connection restored");
    };
    core.conn.send_replace(None);
    core.closed.send_replace(Some(end));
    core.state.send_replace(ConnectionState::Closed);
    core.hub.close();
}

/// Resolves once the client is told to stop (the guard of `wait_for` is not `Send`, so it must
/// not live in a `select!` arm).
async fn stopped(stop: &mut watch::Receiver<bool>) {
    let _ = stop.wait_for(|s| *s).await;
}

/// Replay the recorded subscriptions on a fresh connection (a failure is logged: the caller's
/// stream stays open and the next reconnect tries again).
async fn resubscribe(core: &Core, conn: &Conn) {
    let subs = core.subscriptions().clone();
    for sub in subs {
        match conn
            .request_frame(&sub.method, sub.params.clone(), core.opts.request_timeout)
            .await
            .and_then(response_payload)
        {
            Ok(_) => tracing::debug!(method = %sub.method, "subscription replayed"),
            Err(e) => tracing::warn!(method = %sub.method, error = %e, "cannot replay a subscription after reconnect"),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn info(code: Option<u16>, reason: &str) -> CloseInfo {
        CloseInfo { code, reason: reason.to_owned() }
    }

    #[test]
    fn restarts_drops_and_silence_are_retried_but_refusals_are_final() {
        for retry in [
            info(Some(1012), "service restart"),
            info(Some(1013), "gateway starting"),
            info(Some(1011), "internal error"),
            info(Some(1000), ""),
            info(Some(4000), "tick timeout"),
            info(None, "connection reset"),
            info(Some(1008), "slow consumer"),
        ] {
            assert!(!close_is_final(&retry), "{retry}");
        }
        for stop in [
            info(Some(1008), "pairing required"),
            info(Some(4001), "gateway auth changed"),
            info(Some(1002), "protocol mismatch"),
        ] {
            assert!(close_is_final(&stop), "{stop}");
        }
    }

    #[test]
    fn refused_handshakes_are_final_unless_the_gateway_is_only_busy() {
        let refused = |code: &str, close_code: Option<u16>| ClientError::Handshake {
            error: Box::new(clawgate_protocol::ErrorShape::new(code, "x")),
            close_code,
            close_reason: None,
        };
        assert!(connect_error_is_final(&refused("INVALID_REQUEST", Some(1008))));
        assert!(connect_error_is_final(&refused("NOT_PAIRED", Some(1008))));
        assert!(!connect_error_is_final(&refused("UNAVAILABLE", Some(1013))));
        assert!(!connect_error_is_final(&refused("INVALID_REQUEST", Some(1013))));
        assert!(!connect_error_is_final(&ClientError::Connect(std::io::ErrorKind::ConnectionRefused.into())));
        assert!(!connect_error_is_final(&ClientError::Timeout {
            waiting_for: "hello-ok".into(),
            after: Duration::from_secs(1)
        }));
        assert!(connect_error_is_final(&ClientError::InvalidUrl("x".into())));
    }
}
