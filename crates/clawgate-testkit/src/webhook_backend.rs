//! A fake backend of clawgate's webhook channel on one `127.0.0.1:0` port: the web app that
//! posts its users' messages to the gateway and takes the agent's replies.
//!
//! Outbound (gateway → backend), it serves `POST /replies` and holds clawgate to the channel's
//! contract (`docs/OPERATIONS.md`, "Webhook channel"): `Content-Type: application/json`,
//! `X-Clawgate-Timestamp` within five minutes of now, `X-Clawgate-Signature: sha256=<hex>` of
//! HMAC-SHA256(secret, `"<timestamp>.<raw body>"`), an `Idempotency-Key` equal to the body's
//! `id`, and a body with `id`, `chat {id, type}`, `text` (and `inReplyTo`, `to`, `media` when
//! set). A request that breaks any of these is answered 401/400 and counted in
//! [`WebhookBackend::violations`], which a test asserts empty. Accepted replies are recorded
//! in order with the status the fake answered.
//!
//! It can be told to answer an error for the next N replies (503 by default, optionally with
//! `Retry-After`), or to be down: [`WebhookBackend::stop`] closes the port (connections are
//! refused) and [`WebhookBackend::restart`] opens the same port again.
//!
//! Inbound (backend → gateway), it builds messages, signs them with the secret (or a wrong one,
//! or a stale timestamp, for tests of the refusals) and POSTs them to the gateway.
//!
//! Known simplifications: one reply path; no TLS; the fake never deduplicates replies (a test
//! sees every delivery, which is how it checks "exactly once").

use std::net::SocketAddr;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use anyhow::Context as _;
use axum::Router;
use axum::body::Bytes;
use axum::extract::State;
use axum::http::{HeaderMap, StatusCode, header};
use axum::response::{IntoResponse, Response};
use hmac::{Hmac, Mac};
use serde_json::{Value, json};
use sha2::Sha256;
use tokio::sync::watch;
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;

/// The default shared secret.
pub const DEFAULT_SECRET: &str = "fake-backend-secret-0123456789abcdef";
/// The path replies are POSTed to.
pub const REPLY_PATH: &str = "/replies";
/// Signature header.
pub const SIGNATURE_HEADER: &str = "x-clawgate-signature";
/// Timestamp header.
pub const TIMESTAMP_HEADER: &str = "x-clawgate-timestamp";
/// Idempotency header.
pub const IDEMPOTENCY_HEADER: &str = "idempotency-key";
/// The largest clock difference the contract allows.
pub const MAX_SKEW_SECS: i64 = 300;

type HmacSha256 = Hmac<Sha256>;

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(PoisonError::into_inner)
}

/// Unix seconds now.
pub fn unix_now() -> i64 {
    SystemTime::now().duration_since(UNIX_EPOCH).map(|d| d.as_secs() as i64).unwrap_or(0)
}

/// `sha256=<hex>` of HMAC-SHA256(`secret`, `"<timestamp>.<body>"`).
pub fn sign(secret: &str, timestamp: i64, body: &[u8]) -> String {
    let mut mac = <HmacSha256 as Mac>::new_from_slice(secret.as_bytes()).expect("HMAC takes any key");
    mac.update(format!("{timestamp}.").as_bytes());
    mac.update(body);
    format!("sha256={}", hex::encode(mac.finalize().into_bytes()))
}

/// One reply the fake accepted (answered 2xx).
#[derive(Debug, Clone, PartialEq)]
pub struct Delivery {
    /// The body's `id`.
    pub id: String,
    /// `inReplyTo` (the inbound message it answers).
    pub in_reply_to: Option<String>,
    /// `chat.id`.
    pub chat_id: String,
    /// `chat.type` (`dm` or `group`).
    pub chat_type: String,
    /// `to`.
    pub to: Option<String>,
    /// `text`.
    pub text: String,
    /// `media`, as sent.
    pub media: Option<Value>,
    /// `X-Clawgate-Account`.
    pub account: Option<String>,
}

/// One POST the fake received on its reply path, whatever it answered.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Attempt {
    /// The body's `id`, when it had one.
    pub id: Option<String>,
    /// What the fake answered.
    pub status: u16,
}

/// What the gateway answered an inbound POST.
#[derive(Debug, Clone, PartialEq)]
pub struct PostOutcome {
    /// HTTP status; `None` when no answer came (refused, timed out).
    pub status: Option<u16>,
    /// The body (JSON when the gateway answered JSON).
    pub body: String,
}

impl PostOutcome {
    /// The body as JSON (`Null` if it is not JSON).
    pub fn json(&self) -> Value {
        serde_json::from_str(&self.body).unwrap_or(Value::Null)
    }
}

#[derive(Default)]
struct Inner {
    delivered: Vec<Delivery>,
    attempts: Vec<Attempt>,
    violations: Vec<String>,
    /// Answer this status to the next `fail_left` replies.
    fail_status: u16,
    fail_left: u64,
    /// `Retry-After` (seconds) sent with those failures.
    retry_after: Option<u64>,
}

struct Shared {
    secret: String,
    inner: Mutex<Inner>,
    changed: watch::Sender<u64>,
}

impl Shared {
    fn bump(&self) {
        self.changed.send_modify(|n| *n += 1);
    }
}

/// The fake backend.
pub struct WebhookBackend {
    addr: SocketAddr,
    shared: Arc<Shared>,
    server: Mutex<Option<(CancellationToken, JoinHandle<()>)>>,
    http: reqwest::Client,
    ids: AtomicU64,
}

impl std::fmt::Debug for WebhookBackend {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("WebhookBackend").field("addr", &self.addr).finish_non_exhaustive()
    }
}

impl Drop for WebhookBackend {
    fn drop(&mut self) {
        if let Some((cancel, task)) = lock(&self.server).take() {
            cancel.cancel();
            task.abort();
        }
    }
}

async fn serve(listener: tokio::net::TcpListener, shared: Arc<Shared>) -> (CancellationToken, JoinHandle<()>) {
    let app = Router::new().route(REPLY_PATH, axum::routing::post(reply)).with_state(shared);
    let cancel = CancellationToken::new();
    let stop = cancel.clone();
    let task = tokio::spawn(async move {
        let serve = axum::serve(listener, app).with_graceful_shutdown(stop.cancelled_owned());
        if let Err(e) = serve.await {
            tracing::warn!(error = %e, "fake webhook backend stopped");
        }
    });
    (cancel, task)
}

impl WebhookBackend {
    /// Bind `127.0.0.1:0` and serve, with [`DEFAULT_SECRET`].
    pub async fn start() -> anyhow::Result<WebhookBackend> {
        Self::start_with_secret(DEFAULT_SECRET).await
    }

    /// Bind `127.0.0.1:0` and serve with this secret.
    pub async fn start_with_secret(secret: &str) -> anyhow::Result<WebhookBackend> {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.context("binding the fake backend")?;
        let addr = listener.local_addr()?;
        let shared = Arc::new(Shared {
            secret: secret.to_owned(),
            inner: Mutex::new(Inner::default()),
            changed: watch::Sender::new(0),
        });
        let server = serve(listener, Arc::clone(&shared)).await;
        Ok(WebhookBackend {
            addr,
            shared,
            server: Mutex::new(Some(server)),
            http: reqwest::Client::builder().timeout(Duration::from_secs(30)).build()?,
            ids: AtomicU64::new(0),
        })
    }

    /// The shared secret.
    pub fn secret(&self) -> &str {
        &self.shared.secret
    }

    /// What clawgate's `outboundUrl` takes.
    pub fn reply_url(&self) -> String {
        format!("http://{}{REPLY_PATH}", self.addr)
    }

    /// Close the port: replies are refused until [`WebhookBackend::restart`].
    pub async fn stop(&self) {
        let server = lock(&self.server).take();
        if let Some((cancel, task)) = server {
            cancel.cancel();
            let _ = task.await;
        }
    }

    /// Open the same port again.
    pub async fn restart(&self) -> anyhow::Result<()> {
        self.stop().await;
        let listener = tokio::net::TcpListener::bind(self.addr).await.context("rebinding the fake backend")?;
        let server = serve(listener, Arc::clone(&self.shared)).await;
        *lock(&self.server) = Some(server);
        Ok(())
    }

    /// Answer `status` (with `Retry-After: retry_after` seconds when given) to the next `n`
    /// replies; they are not recorded as delivered.
    pub fn fail_next(&self, n: u64, status: u16, retry_after: Option<u64>) {
        let mut inner = lock(&self.shared.inner);
        inner.fail_status = status;
        inner.fail_left = n;
        inner.retry_after = retry_after;
    }

    /// Answer `status` to every reply until [`WebhookBackend::heal`].
    pub fn fail_always(&self, status: u16) {
        self.fail_next(u64::MAX, status, None);
    }

    /// Accept replies again.
    pub fn heal(&self) {
        lock(&self.shared.inner).fail_left = 0;
    }

    /// Every reply accepted, in order.
    pub fn delivered(&self) -> Vec<Delivery> {
        lock(&self.shared.inner).delivered.clone()
    }

    /// Every POST on the reply path, in order.
    pub fn attempts(&self) -> Vec<Attempt> {
        lock(&self.shared.inner).attempts.clone()
    }

    /// Contract violations seen (forged or missing signatures, stale timestamps, bad bodies).
    pub fn violations(&self) -> Vec<String> {
        lock(&self.shared.inner).violations.clone()
    }

    /// Wait until an accepted reply matches `pred`.
    pub async fn wait_delivered(
        &self,
        pred: impl Fn(&Delivery) -> bool,
        timeout: Duration,
    ) -> anyhow::Result<Delivery> {
        self.wait(timeout, || lock(&self.shared.inner).delivered.iter().find(|d| pred(d)).cloned()).await
    }

    /// Wait until `n` POSTs reached the reply path.
    pub async fn wait_attempts(&self, n: usize, timeout: Duration) -> anyhow::Result<Vec<Attempt>> {
        self.wait(timeout, || {
            let a = lock(&self.shared.inner).attempts.clone();
            (a.len() >= n).then_some(a)
        })
        .await
    }

    async fn wait<T>(&self, timeout: Duration, mut probe: impl FnMut() -> Option<T>) -> anyhow::Result<T> {
        let mut rx = self.shared.changed.subscribe();
        let deadline = tokio::time::Instant::now() + timeout;
        loop {
            if let Some(v) = probe() {
                return Ok(v);
            }
            match tokio::time::timeout_at(deadline, rx.changed()).await {
                Ok(Ok(())) => {}
                Ok(Err(_)) | Err(_) => {
                    return probe().with_context(|| format!("fake backend: nothing matched within {timeout:?}"));
                }
            }
        }
    }

    /// A fresh message id (`m-<n>`).
    pub fn next_id(&self) -> String {
        format!("m-{}", self.ids.fetch_add(1, Ordering::Relaxed) + 1)
    }

    /// A direct message from `user` with a fresh id.
    pub fn message(&self, user: &str, text: &str) -> Value {
        json!({"id": self.next_id(), "from": {"id": user, "name": user}, "text": text})
    }

    /// POST `message` to `url`, signed with the secret now.
    pub async fn post(&self, url: &str, message: &Value) -> anyhow::Result<PostOutcome> {
        let body = message.to_string();
        let ts = unix_now();
        let sig = sign(&self.shared.secret, ts, body.as_bytes());
        self.post_raw(
            url,
            body.as_bytes(),
            &[("content-type", "application/json"), (TIMESTAMP_HEADER, &ts.to_string()), (SIGNATURE_HEADER, &sig)],
        )
        .await
    }

    /// POST exactly `body` with exactly these headers.
    pub async fn post_raw(&self, url: &str, body: &[u8], headers: &[(&str, &str)]) -> anyhow::Result<PostOutcome> {
        let mut req = self.http.post(url).body(body.to_vec());
        for (k, v) in headers {
            req = req.header(*k, *v);
        }
        match req.send().await {
            Ok(resp) => {
                let status = resp.status().as_u16();
                Ok(PostOutcome { status: Some(status), body: resp.text().await.unwrap_or_default() })
            }
            Err(e) => Ok(PostOutcome { status: None, body: e.to_string() }),
        }
    }
}

/// `POST /replies`: check the contract, then record or fail as told.
async fn reply(State(shared): State<Arc<Shared>>, headers: HeaderMap, body: Bytes) -> Response {
    let out = check(&shared, &headers, &body);
    let mut inner = lock(&shared.inner);
    let response = match out {
        Err((status, why)) => {
            inner.violations.push(why.clone());
            inner.attempts.push(Attempt { id: None, status: status.as_u16() });
            (status, why).into_response()
        }
        Ok(delivery) if inner.fail_left > 0 => {
            inner.fail_left -= 1;
            let status = StatusCode::from_u16(inner.fail_status).unwrap_or(StatusCode::SERVICE_UNAVAILABLE);
            inner.attempts.push(Attempt { id: Some(delivery.id), status: status.as_u16() });
            match inner.retry_after {
                Some(secs) => (status, [(header::RETRY_AFTER, secs.to_string())], "try later").into_response(),
                None => (status, "try later").into_response(),
            }
        }
        Ok(delivery) => {
            inner.attempts.push(Attempt { id: Some(delivery.id.clone()), status: 200 });
            let id = delivery.id.clone();
            inner.delivered.push(delivery);
            (StatusCode::OK, axum::Json(json!({"ok": true, "id": id}))).into_response()
        }
    };
    drop(inner);
    shared.bump();
    response
}

fn check(shared: &Shared, headers: &HeaderMap, body: &[u8]) -> Result<Delivery, (StatusCode, String)> {
    let h = |name: &str| headers.get(name).and_then(|v| v.to_str().ok()).map(str::to_owned);
    let unauthorized = |why: &str| (StatusCode::UNAUTHORIZED, why.to_owned());
    let ts = h(TIMESTAMP_HEADER).ok_or_else(|| unauthorized("no X-Clawgate-Timestamp"))?;
    let sig = h(SIGNATURE_HEADER).ok_or_else(|| unauthorized("no X-Clawgate-Signature"))?;
    let ts: i64 = ts.parse().map_err(|_| unauthorized("X-Clawgate-Timestamp is not whole seconds"))?;
    if (unix_now() - ts).abs() > MAX_SKEW_SECS {
        return Err(unauthorized("X-Clawgate-Timestamp is stale"));
    }
    let given = sig
        .strip_prefix("sha256=")
        .and_then(|s| hex::decode(s).ok())
        .ok_or_else(|| unauthorized("malformed signature"))?;
    let mut mac = <HmacSha256 as Mac>::new_from_slice(shared.secret.as_bytes()).expect("HMAC takes any key");
    mac.update(format!("{ts}.").as_bytes());
    mac.update(body);
    mac.verify_slice(&given).map_err(|_| unauthorized("forged signature"))?;
    let bad = |why: String| (StatusCode::BAD_REQUEST, why);
    let ct = h("content-type").unwrap_or_default();
    if !ct.starts_with("application/json") {
        return Err(bad(format!("content type {ct:?}")));
    }
    let v: Value = serde_json::from_slice(body).map_err(|e| bad(format!("not JSON: {e}")))?;
    let s = |p: &str| v.pointer(p).and_then(Value::as_str).map(str::to_owned);
    let id = s("/id").ok_or_else(|| bad("no id".into()))?;
    if h(IDEMPOTENCY_HEADER).as_deref() != Some(id.as_str()) {
        return Err(bad("Idempotency-Key differs from id".into()));
    }
    let chat_id = s("/chat/id").ok_or_else(|| bad("no chat.id".into()))?;
    let chat_type = s("/chat/type").filter(|t| t == "dm" || t == "group").ok_or_else(|| bad("chat.type".into()))?;
    let text = s("/text").ok_or_else(|| bad("no text".into()))?;
    let media = v.get("media").filter(|m| !m.is_null()).cloned();
    if let Some(m) = &media {
        let ok = m.as_array().is_some_and(|a| {
            a.iter().all(|x| x["url"].as_str().is_some_and(|u| u.starts_with("http")) && x["mimeType"].is_string())
        });
        if !ok {
            return Err(bad(format!("media must be [{{url, mimeType}}]: {m}")));
        }
    }
    Ok(Delivery {
        id,
        in_reply_to: s("/inReplyTo"),
        chat_id,
        chat_type,
        to: s("/to"),
        text,
        media,
        account: h("x-clawgate-account"),
    })
}
