//! A fake native ComfyUI server on `127.0.0.1:0`, faithful to what a real ComfyUI 0.3.64 answered
//! (`contracts/comfy-real.md` §4 and §8).
//!
//! It serves `POST /prompt` (with the real validation error shapes), `GET /prompt`, `GET|POST /queue`,
//! `POST /interrupt`, `GET /history[/{id}]`, `GET /view`, `GET /system_stats`, `GET /object_info`,
//! the same under `/api`, the recorded `405` on `/api/jobs/{id}/cancel` and `/api/jobs/cancel`, and
//! the `/ws?clientId=` WebSocket with ComfyUI's message sequence for the client that submitted.
//!
//! Execution is simulated, one job at a time, FIFO, each job taking [`FakeComfyBuilder::job_duration`]
//! split across the nodes it runs. The nodes a weight-free workflow uses (`EmptyImage`,
//! `ImageInvert`, `ImageBlur`, `SaveImage`, `PreviewImage`) are evaluated for real enough that
//! `EmptyImage → ImageInvert → SaveImage` yields a PNG of the requested size and (inverted) colour.
//! Like ComfyUI, it caches node outputs of the previous prompt: an identical re-submit is served
//! from the cache (`execution_cached` lists every node, no new file, `outputs` name the old file).
//!
//! Tests script it: [`FakeComfy::fail_next`] (an `execution_error`), [`FakeComfy::hang`] (the
//! running job stalls until interrupted), [`FakeComfy::set_paused`] (nothing leaves the pending
//! queue), [`FakeComfy::set_ws_enabled`] (the WebSocket goes away, HTTP stays) and
//! [`FakeComfy::kill`] (the whole worker disappears: listener and every open connection dropped).

use std::collections::{BTreeMap, HashMap, HashSet, VecDeque};
use std::future::Future;
use std::io::{self, Write};
use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};
use std::task::{Context as TaskContext, Poll};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use anyhow::Context;
use axum::Router;
use axum::body::Bytes;
use axum::extract::ws::{Message, WebSocket, WebSocketUpgrade};
use axum::extract::{Path, Query, State};
use axum::http::{StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::{any, get, post};
use serde_json::{Map, Value, json};
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::{Notify, mpsc};
use tokio::task::JoinHandle;
use tokio_util::sync::{CancellationToken, WaitForCancellationFutureOwned};

/// How long a job takes when the builder does not say (the real CPU server took 58-127 ms for the
/// weight-free workflow).
pub const DEFAULT_JOB_DURATION: Duration = Duration::from_millis(60);

/// Messages queued per WebSocket client before the fake drops further ones (a stuck reader).
const WS_BUFFER: usize = 1024;

/// One prompt the fake accepted, as submitted.
#[derive(Debug, Clone, PartialEq)]
pub struct SubmittedPrompt {
    /// The id the fake answered with.
    pub prompt_id: String,
    /// The queue number the fake answered with.
    pub number: u64,
    /// `client_id` from the request body, if any: the WebSocket client that gets the progress.
    pub client_id: Option<String>,
    /// The API-format graph.
    pub prompt: Value,
    /// `extra_data` as stored (with `client_id` merged in, as ComfyUI does).
    pub extra_data: Value,
}

/// Builder for [`FakeComfy`].
#[derive(Debug, Clone)]
pub struct FakeComfyBuilder {
    job_duration: Duration,
    progress_steps: u32,
    extra_classes: Vec<(String, bool)>,
    extension: Option<Router>,
}

impl Default for FakeComfyBuilder {
    fn default() -> Self {
        Self { job_duration: DEFAULT_JOB_DURATION, progress_steps: 2, extra_classes: Vec::new(), extension: None }
    }
}

impl FakeComfyBuilder {
    /// How long one (uncached) job runs, split evenly across the nodes it executes.
    pub fn job_duration(mut self, duration: Duration) -> Self {
        self.job_duration = duration;
        self
    }

    /// How many `progress` messages each executed non-output node sends (0: none).
    pub fn progress_steps(mut self, steps: u32) -> Self {
        self.progress_steps = steps;
        self
    }

    /// Accepts another node class (inputs not validated). `output` marks an output node like
    /// `SaveImage`; a prompt needs at least one.
    pub fn node_class(mut self, class_type: &str, output: bool) -> Self {
        self.extra_classes.push((class_type.to_owned(), output));
        self
    }

    /// More routes served on the same port, as a custom node's routes are served by ComfyUI's own
    /// server (the fake ComfyUI-OpenClaw extension uses this). They survive a restart.
    pub fn extension(mut self, routes: Router) -> Self {
        self.extension = Some(routes);
        self
    }

    /// Binds `127.0.0.1:0` and starts serving.
    pub async fn start(self) -> anyhow::Result<FakeComfy> {
        let listener = TcpListener::bind("127.0.0.1:0").await.context("binding the fake ComfyUI")?;
        let addr = listener.local_addr()?;
        let mut classes: HashMap<String, bool> =
            BUILTIN_CLASSES.iter().map(|(name, output)| ((*name).to_owned(), *output)).collect();
        classes.extend(self.extra_classes);
        let seed = SystemTime::now().duration_since(UNIX_EPOCH).map(|d| d.as_nanos() as u64).unwrap_or(0)
            ^ u64::from(addr.port()).rotate_left(40);
        let shared = Arc::new(Shared {
            inner: Mutex::new(Inner::new(self.job_duration, self.progress_steps, seed)),
            classes,
            wake: Notify::new(),
            extension: self.extension,
        });
        let life = Life::start(listener, Arc::clone(&shared));
        Ok(FakeComfy { addr, shared, life: Mutex::new(Some(life)) })
    }
}

/// A running fake ComfyUI. Dropping it stops the server, its worker and every connection.
#[derive(Debug)]
pub struct FakeComfy {
    addr: SocketAddr,
    shared: Arc<Shared>,
    /// `None` while killed.
    life: Mutex<Option<Life>>,
}

impl FakeComfy {
    /// A builder with the defaults ([`DEFAULT_JOB_DURATION`], two progress steps per node).
    pub fn builder() -> FakeComfyBuilder {
        FakeComfyBuilder::default()
    }

    /// Starts a fake with the defaults.
    pub async fn start() -> anyhow::Result<Self> {
        Self::builder().start().await
    }

    /// The bound address.
    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// `http://127.0.0.1:<port>`, without a trailing slash.
    pub fn base_url(&self) -> String {
        format!("http://{}", self.addr)
    }

    /// `ws://127.0.0.1:<port>/ws?clientId=<client_id>`.
    pub fn ws_url(&self, client_id: &str) -> String {
        format!("ws://{}/ws?clientId={client_id}", self.addr)
    }

    /// The next `n` jobs fail with an `execution_error` (at their first executed node).
    pub fn fail_next(&self, n: usize) {
        self.shared.lock().fail_next += n;
    }

    /// The running job, and every later one, stalls at its first node until interrupted (or
    /// until `set_hang(false)`). It stays in `queue_running`.
    pub fn hang(&self) {
        self.set_hang(true);
    }

    /// Turns [`FakeComfy::hang`] on or off.
    pub fn set_hang(&self, hang: bool) {
        self.shared.lock().hang = hang;
    }

    /// While paused no job starts: submitted prompts stay in `queue_pending`.
    pub fn set_paused(&self, paused: bool) {
        self.shared.lock().paused = paused;
        self.shared.wake.notify_one();
    }

    /// Changes the duration of jobs that start from now on.
    pub fn set_job_duration(&self, duration: Duration) {
        self.shared.lock().job_duration = duration;
    }

    /// Closes every open WebSocket (HTTP keeps working); clients may reconnect.
    pub fn drop_ws_connections(&self) {
        let mut inner = self.shared.lock();
        inner.ws_generation.cancel();
        inner.ws_generation = CancellationToken::new();
    }

    /// With `false`, closes every WebSocket and answers further upgrades with 503, so only HTTP
    /// polling sees progress.
    pub fn set_ws_enabled(&self, enabled: bool) {
        self.shared.lock().ws_enabled = enabled;
        if !enabled {
            self.drop_ws_connections();
        }
    }

    /// Stops serving at once: the listener and every open connection (HTTP keep-alive and
    /// WebSocket) are dropped and the running job is lost, as when a worker process dies.
    pub fn kill(&self) {
        if let Some(life) = self.life.lock().unwrap_or_else(PoisonError::into_inner).take() {
            life.stop();
        }
    }

    /// Starts serving again on the same port after [`FakeComfy::kill`], with ComfyUI's in-memory
    /// state (queue, history, output files, cache) gone, as after a real restart. Counters stay.
    pub async fn restart(&self) -> anyhow::Result<()> {
        self.kill();
        let listener = TcpListener::bind(self.addr).await.context("re-binding the fake ComfyUI")?;
        self.shared.lock().reset();
        let life = Life::start(listener, Arc::clone(&self.shared));
        *self.life.lock().unwrap_or_else(PoisonError::into_inner) = Some(life);
        Ok(())
    }

    /// Every prompt accepted by `POST /prompt`, in order.
    pub fn submitted(&self) -> Vec<SubmittedPrompt> {
        self.shared.lock().submitted.clone()
    }

    /// Jobs that finished with `execution_success` (cached ones included).
    pub fn completed_count(&self) -> usize {
        self.shared.lock().completed
    }

    /// Pending prompts removed by `POST /queue` (`delete` or `clear`).
    pub fn deleted_from_queue(&self) -> usize {
        self.shared.lock().deleted
    }

    /// Running jobs stopped by `POST /interrupt`.
    pub fn interrupt_count(&self) -> usize {
        self.shared.lock().interrupts
    }

    /// Ids of the pending prompts, in queue order.
    pub fn pending_ids(&self) -> Vec<String> {
        self.shared.lock().pending.iter().map(|job| job.prompt_id.clone()).collect()
    }

    /// Id of the running prompt.
    pub fn running_id(&self) -> Option<String> {
        self.shared.lock().running.as_ref().map(|run| run.job.prompt_id.clone())
    }

    /// Bytes of an output file, as `/view` would serve them.
    pub fn file(&self, filename: &str, subfolder: &str, kind: &str) -> Option<Bytes> {
        self.shared.lock().files.get(&(filename.to_owned(), subfolder.to_owned(), kind.to_owned())).cloned()
    }
}

impl Drop for FakeComfy {
    fn drop(&mut self) {
        self.kill();
    }
}

/// The tasks of one serving period (between start/restart and kill).
#[derive(Debug)]
struct Life {
    kill: CancellationToken,
    accept: JoinHandle<()>,
    worker: JoinHandle<()>,
}

impl Life {
    fn start(listener: TcpListener, shared: Arc<Shared>) -> Self {
        let kill = CancellationToken::new();
        shared.lock().kill = kill.clone();
        let app = router(Arc::clone(&shared));
        let listener = KillableListener { inner: listener, kill: kill.clone() };
        let accept = tokio::spawn(async move {
            if let Err(e) = axum::serve(listener, app).await {
                tracing::warn!(error = %e, "fake ComfyUI stopped");
            }
        });
        let worker = tokio::spawn(worker(shared, kill.clone()));
        Self { kill, accept, worker }
    }

    fn stop(self) {
        self.kill.cancel();
        self.accept.abort();
        self.worker.abort();
    }
}

/// A listener whose connections all fail once `kill` is cancelled, so killing the fake also drops
/// keep-alive and upgraded (WebSocket) connections, which `axum::serve` would otherwise keep.
struct KillableListener {
    inner: TcpListener,
    kill: CancellationToken,
}

impl axum::serve::Listener for KillableListener {
    type Io = KillableStream;
    type Addr = SocketAddr;

    async fn accept(&mut self) -> (Self::Io, Self::Addr) {
        loop {
            match self.inner.accept().await {
                Ok((stream, addr)) => {
                    let killed = Box::pin(self.kill.clone().cancelled_owned());
                    return (KillableStream { inner: stream, kill: self.kill.clone(), killed }, addr);
                }
                Err(e) => {
                    tracing::debug!(error = %e, "fake ComfyUI accept failed");
                    tokio::time::sleep(Duration::from_millis(10)).await;
                }
            }
        }
    }

    fn local_addr(&self) -> io::Result<Self::Addr> {
        self.inner.local_addr()
    }
}

struct KillableStream {
    inner: TcpStream,
    kill: CancellationToken,
    /// Polled on every read and write so a kill wakes connections blocked on I/O.
    killed: Pin<Box<WaitForCancellationFutureOwned>>,
}

impl KillableStream {
    fn check(&mut self, cx: &mut TaskContext<'_>) -> io::Result<()> {
        // Checked first so the future is never polled again after it completed.
        if self.kill.is_cancelled() || self.killed.as_mut().poll(cx).is_ready() {
            return Err(io::Error::new(io::ErrorKind::ConnectionAborted, "fake ComfyUI killed"));
        }
        Ok(())
    }
}

impl AsyncRead for KillableStream {
    fn poll_read(self: Pin<&mut Self>, cx: &mut TaskContext<'_>, buf: &mut ReadBuf<'_>) -> Poll<io::Result<()>> {
        let this = self.get_mut();
        if let Err(e) = this.check(cx) {
            return Poll::Ready(Err(e));
        }
        Pin::new(&mut this.inner).poll_read(cx, buf)
    }
}

impl AsyncWrite for KillableStream {
    fn poll_write(self: Pin<&mut Self>, cx: &mut TaskContext<'_>, buf: &[u8]) -> Poll<io::Result<usize>> {
        let this = self.get_mut();
        if let Err(e) = this.check(cx) {
            return Poll::Ready(Err(e));
        }
        Pin::new(&mut this.inner).poll_write(cx, buf)
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut TaskContext<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.get_mut().inner).poll_flush(cx)
    }

    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut TaskContext<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.get_mut().inner).poll_shutdown(cx)
    }
}

/// Node classes the fake knows, with whether each is an output node.
const BUILTIN_CLASSES: &[(&str, bool)] = &[
    ("EmptyImage", false),
    ("ImageInvert", false),
    ("ImageBlur", false),
    ("SaveImage", true),
    ("PreviewImage", true),
    ("LoadImage", false),
    ("CheckpointLoaderSimple", false),
    ("CLIPTextEncode", false),
    ("EmptyLatentImage", false),
    ("KSampler", false),
    ("VAEDecode", false),
];

#[derive(Debug)]
struct Shared {
    inner: Mutex<Inner>,
    /// class_type → is an output node.
    classes: HashMap<String, bool>,
    /// Wakes the worker: a prompt was queued or the queue was unpaused.
    wake: Notify,
    /// Routes of an emulated custom node, merged into the server's.
    extension: Option<Router>,
}

impl Shared {
    fn lock(&self) -> MutexGuard<'_, Inner> {
        self.inner.lock().unwrap_or_else(PoisonError::into_inner)
    }
}

#[derive(Debug, Clone)]
struct Job {
    number: u64,
    prompt_id: String,
    prompt: Map<String, Value>,
    extra_data: Map<String, Value>,
    client_id: Option<String>,
    outputs: Vec<String>,
}

impl Job {
    /// ComfyUI's queue/history tuple: `[number, prompt_id, graph, extra_data, outputs]`.
    fn tuple(&self) -> Value {
        json!([self.number, self.prompt_id, self.prompt, self.extra_data, self.outputs])
    }
}

#[derive(Debug)]
struct Running {
    job: Job,
    /// The node executing now (sent again to a client that reconnects mid-job).
    node: Option<String>,
    interrupt: CancellationToken,
}

/// A solid-colour image batch: all the pixel data the simulated nodes need.
#[derive(Debug, Clone, Copy, PartialEq)]
struct Img {
    width: u32,
    height: u32,
    batch: u32,
    rgb: [u8; 3],
}

#[derive(Debug, Clone)]
struct Cached {
    img: Option<Img>,
    /// The `executed` output of an output node, replayed when it is served from the cache.
    ui: Option<Value>,
}

#[derive(Debug)]
struct Inner {
    job_duration: Duration,
    progress_steps: u32,
    paused: bool,
    hang: bool,
    fail_next: usize,
    number: u64,
    id_seed: u64,
    id_counter: u64,
    pending: VecDeque<Job>,
    running: Option<Running>,
    /// In completion order, as `GET /history` lists them.
    history: Vec<(String, Value)>,
    files: HashMap<(String, String, String), Bytes>,
    /// Next file counter per (subfolder, filename prefix, type).
    file_counters: HashMap<(String, String, String), u32>,
    /// Node signature → outputs, from the previous prompt (ComfyUI's default cache).
    cache: HashMap<String, Cached>,
    /// WebSocket clients by client id, with the session number that registered them; a
    /// reconnect with the same id replaces the old entry, as in ComfyUI.
    clients: HashMap<String, (u64, mpsc::Sender<String>)>,
    sessions: u64,
    ws_enabled: bool,
    ws_generation: CancellationToken,
    kill: CancellationToken,
    submitted: Vec<SubmittedPrompt>,
    completed: usize,
    deleted: usize,
    interrupts: usize,
}

impl Inner {
    fn new(job_duration: Duration, progress_steps: u32, id_seed: u64) -> Self {
        Self {
            job_duration,
            progress_steps,
            paused: false,
            hang: false,
            fail_next: 0,
            number: 0,
            id_seed,
            id_counter: 0,
            pending: VecDeque::new(),
            running: None,
            history: Vec::new(),
            files: HashMap::new(),
            file_counters: HashMap::new(),
            cache: HashMap::new(),
            clients: HashMap::new(),
            sessions: 0,
            ws_enabled: true,
            ws_generation: CancellationToken::new(),
            kill: CancellationToken::new(),
            submitted: Vec::new(),
            completed: 0,
            deleted: 0,
            interrupts: 0,
        }
    }

    /// What a process restart loses.
    fn reset(&mut self) {
        self.number = 0;
        self.pending.clear();
        self.running = None;
        self.history.clear();
        self.files.clear();
        self.file_counters.clear();
        self.cache.clear();
        self.clients.clear();
    }

    /// A fresh UUID-v4-shaped id (ComfyUI uses `uuid.uuid4()`).
    fn new_id(&mut self) -> String {
        self.id_counter += 1;
        let a = splitmix(self.id_seed ^ self.id_counter);
        let b = splitmix(a ^ 0x5bd1_e995);
        format!(
            "{:08x}-{:04x}-4{:03x}-{:04x}-{:012x}",
            a >> 32,
            (a >> 16) & 0xffff,
            a & 0xfff,
            0x8000 | ((b >> 48) & 0x3fff),
            b & 0xffff_ffff_ffff
        )
    }

    fn queue_remaining(&self) -> usize {
        self.pending.len() + usize::from(self.running.is_some())
    }

    fn status_message(&self, sid: Option<&str>) -> String {
        let mut data = json!({"status": {"exec_info": {"queue_remaining": self.queue_remaining()}}});
        if let Some(sid) = sid {
            data["sid"] = json!(sid);
        }
        json!({"type": "status", "data": data}).to_string()
    }

    fn send_to(&self, client_id: Option<&str>, kind: &str, data: Value) {
        if let Some((_, tx)) = client_id.and_then(|id| self.clients.get(id)) {
            let _ = tx.try_send(json!({"type": kind, "data": data}).to_string());
        }
    }

    fn broadcast_status(&self) {
        let msg = self.status_message(None);
        for (_, tx) in self.clients.values() {
            let _ = tx.try_send(msg.clone());
        }
    }
}

fn splitmix(mut x: u64) -> u64 {
    x = x.wrapping_add(0x9e37_79b9_7f4a_7c15);
    x = (x ^ (x >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
    x = (x ^ (x >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
    x ^ (x >> 31)
}

fn now_ms() -> u64 {
    SystemTime::now().duration_since(UNIX_EPOCH).map(|d| d.as_millis() as u64).unwrap_or(0)
}

fn router(shared: Arc<Shared>) -> Router {
    let extension = shared.extension.clone();
    let native = || {
        Router::new()
            .route("/prompt", post(post_prompt).get(get_prompt))
            .route("/queue", get(get_queue).post(post_queue))
            .route("/interrupt", post(post_interrupt))
            .route("/history", get(get_history))
            .route("/history/{prompt_id}", get(get_history_one))
            .route("/view", get(get_view))
            .route("/system_stats", get(get_system_stats))
            .route("/object_info", get(get_object_info))
            .route("/ws", get(ws_upgrade))
    };
    let app = Router::new()
        .merge(native())
        .nest("/api", native())
        .route("/api/jobs/{job_id}/cancel", any(method_not_allowed))
        .route("/api/jobs/cancel", any(method_not_allowed))
        .with_state(shared);
    match extension {
        Some(ext) => app.merge(ext),
        None => app,
    }
}

fn json_response(status: StatusCode, body: &Value) -> Response {
    (status, [(header::CONTENT_TYPE, "application/json; charset=utf-8")], body.to_string()).into_response()
}

/// `/api/jobs/…/cancel`: this ComfyUI has no jobs API; aiohttp answered 405 in plain text.
async fn method_not_allowed() -> Response {
    (StatusCode::METHOD_NOT_ALLOWED, [(header::CONTENT_TYPE, "text/plain; charset=utf-8")], "405: Method Not Allowed")
        .into_response()
}

fn prompt_error(kind: &str, message: &str, details: &str, node_errors: Value) -> Response {
    json_response(
        StatusCode::BAD_REQUEST,
        &json!({
            "error": {"type": kind, "message": message, "details": details, "extra_info": {}},
            "node_errors": node_errors,
        }),
    )
}

/// `POST /prompt`: validate, queue, answer `{prompt_id, number, node_errors}`.
async fn post_prompt(State(shared): State<Arc<Shared>>, body: Bytes) -> Response {
    let body: Value = serde_json::from_slice(&body).unwrap_or(Value::Null);
    let Some(prompt) = body.get("prompt") else {
        return prompt_error("no_prompt", "No prompt provided", "No prompt provided", json!({}));
    };
    let Some(graph) = prompt.as_object() else {
        return prompt_error("invalid_prompt", "Prompt is not a JSON object", "", json!({}));
    };
    let (outputs, node_errors) = match validate(graph, &shared.classes) {
        Ok(ok) => ok,
        Err(response) => return response,
    };
    let client_id = body.get("client_id").and_then(Value::as_str).map(str::to_owned);
    let mut extra_data = body.get("extra_data").and_then(Value::as_object).cloned().unwrap_or_default();
    if let Some(id) = &client_id {
        extra_data.insert("client_id".into(), json!(id));
    }
    let mut inner = shared.lock();
    let prompt_id = match body.get("prompt_id").and_then(Value::as_str) {
        Some(id) => id.to_owned(),
        None => inner.new_id(),
    };
    let number = inner.number;
    inner.number += 1;
    let job = Job {
        number,
        prompt_id: prompt_id.clone(),
        prompt: graph.clone(),
        extra_data: extra_data.clone(),
        client_id: client_id.clone(),
        outputs,
    };
    inner.submitted.push(SubmittedPrompt {
        prompt_id: prompt_id.clone(),
        number,
        client_id,
        prompt: prompt.clone(),
        extra_data: Value::Object(extra_data),
    });
    inner.pending.push_back(job);
    inner.broadcast_status();
    drop(inner);
    shared.wake.notify_one();
    json_response(StatusCode::OK, &json!({"prompt_id": prompt_id, "number": number, "node_errors": node_errors}))
}

/// An input of a validated node class.
#[derive(Debug, Clone, Copy)]
enum InputSpec {
    Int { default: i64, min: i64, max: i64 },
    Float,
    Text,
    Link,
}

impl InputSpec {
    fn config(self) -> Value {
        match self {
            Self::Int { default, min, max } => {
                json!(["INT", {"default": default, "min": min, "max": max, "step": 1}])
            }
            Self::Float => json!(["FLOAT", {}]),
            Self::Text => json!(["STRING", {}]),
            Self::Link => json!(["IMAGE", {}]),
        }
    }
}

fn input_specs(class_type: &str) -> &'static [(&'static str, InputSpec)] {
    const SIZE: InputSpec = InputSpec::Int { default: 512, min: 1, max: 16384 };
    match class_type {
        "EmptyImage" => &[
            ("width", SIZE),
            ("height", SIZE),
            ("batch_size", InputSpec::Int { default: 1, min: 1, max: 4096 }),
            ("color", InputSpec::Int { default: 0, min: 0, max: 0xFF_FFFF }),
        ],
        "ImageInvert" => &[("image", InputSpec::Link)],
        "ImageBlur" => &[
            ("image", InputSpec::Link),
            ("blur_radius", InputSpec::Int { default: 1, min: 1, max: 31 }),
            ("sigma", InputSpec::Float),
        ],
        "SaveImage" => &[("images", InputSpec::Link), ("filename_prefix", InputSpec::Text)],
        "PreviewImage" => &[("images", InputSpec::Link)],
        _ => &[],
    }
}

/// Python's `int(x)` on a JSON value, as ComfyUI converts INT inputs.
fn as_int(value: &Value) -> Result<i64, String> {
    match value {
        Value::Number(n) => n.as_i64().or_else(|| n.as_f64().map(|f| f as i64)).ok_or_else(|| n.to_string()),
        Value::String(s) => {
            s.trim().parse::<i64>().map_err(|_| format!("invalid literal for int() with base 10: '{s}'"))
        }
        Value::Bool(b) => Ok(i64::from(*b)),
        other => Err(format!("int() argument must be a string or a number, not '{other}'")),
    }
}

fn link_target(value: &Value) -> Option<&str> {
    match value.as_array()?.as_slice() {
        [Value::String(id), Value::Number(_)] => Some(id),
        _ => None,
    }
}

fn validate_node(node: &Value) -> Vec<Value> {
    let class_type = node.get("class_type").and_then(Value::as_str).unwrap_or_default();
    let inputs = node.get("inputs").and_then(Value::as_object);
    let mut errors = Vec::new();
    for (name, spec) in input_specs(class_type) {
        let Some(value) = inputs.and_then(|i| i.get(*name)) else {
            errors.push(json!({
                "type": "required_input_missing",
                "message": "Required input is missing",
                "details": name,
                "extra_info": {"input_name": name},
            }));
            continue;
        };
        if link_target(value).is_some() {
            continue;
        }
        if let InputSpec::Int { min, max, .. } = *spec {
            match as_int(value) {
                Err(exception) => {
                    let shown = value.as_str().map(str::to_owned).unwrap_or_else(|| value.to_string());
                    errors.push(json!({
                        "type": "invalid_input_type",
                        "message": "Failed to convert an input value to a INT value",
                        "details": format!("{name}, {shown}, {exception}"),
                        "extra_info": {
                            "input_name": name,
                            "input_config": spec.config(),
                            "received_value": value,
                            "exception_message": exception,
                        },
                    }));
                }
                Ok(v) if v < min => errors.push(json!({
                    "type": "value_smaller_than_min",
                    "message": format!("Value {v} smaller than min of {min}"),
                    "details": name,
                    "extra_info": {"input_name": name, "input_config": spec.config(), "received_value": v},
                })),
                Ok(v) if v > max => errors.push(json!({
                    "type": "value_bigger_than_max",
                    "message": format!("Value {v} bigger than max of {max}"),
                    "details": name,
                    "extra_info": {"input_name": name, "input_config": spec.config(), "received_value": v},
                })),
                Ok(_) => {}
            }
        }
    }
    errors
}

/// ComfyUI's `validate_prompt`: structure first (a 400 `invalid_prompt`), then every output's
/// inputs. Outputs with a bad ancestor are dropped; if none is left it is a 400, otherwise the
/// prompt runs and the 200 carries the `node_errors`.
fn validate(graph: &Map<String, Value>, classes: &HashMap<String, bool>) -> Result<(Vec<String>, Value), Response> {
    let mut outputs = Vec::new();
    for (id, node) in graph {
        let Some(class_type) = node.get("class_type").and_then(Value::as_str) else {
            return Err(prompt_error(
                "invalid_prompt",
                "Cannot execute because a node is missing the class_type property.",
                &format!("Node ID '#{id}'"),
                json!({}),
            ));
        };
        match classes.get(class_type) {
            None => {
                return Err(prompt_error(
                    "invalid_prompt",
                    &format!("Cannot execute because node {class_type} does not exist."),
                    &format!("Node ID '#{id}'"),
                    json!({}),
                ));
            }
            Some(true) => outputs.push(id.clone()),
            Some(false) => {}
        }
    }
    if outputs.is_empty() {
        return Err(prompt_error("prompt_no_outputs", "Prompt has no outputs", "", json!({})));
    }
    outputs.sort_by(|a, b| natural(a).cmp(&natural(b)));
    let mut node_errors: BTreeMap<String, (Vec<Value>, Vec<String>, String)> = BTreeMap::new();
    let mut good = Vec::new();
    for output in &outputs {
        let mut ok = true;
        for id in execution_order(graph, std::slice::from_ref(output)) {
            let node = &graph[&id];
            let errors = validate_node(node);
            if errors.is_empty() {
                continue;
            }
            ok = false;
            let class_type = node.get("class_type").and_then(Value::as_str).unwrap_or_default().to_owned();
            let entry = node_errors.entry(id).or_insert_with(|| (errors, Vec::new(), class_type));
            entry.1.push(output.clone());
        }
        if ok {
            good.push(output.clone());
        }
    }
    let node_errors: Map<String, Value> = node_errors
        .into_iter()
        .map(|(id, (errors, dependent, class_type))| {
            (id, json!({"errors": errors, "dependent_outputs": dependent, "class_type": class_type}))
        })
        .collect();
    if good.is_empty() {
        return Err(prompt_error(
            "prompt_outputs_failed_validation",
            "Prompt outputs failed validation",
            "",
            Value::Object(node_errors),
        ));
    }
    Ok((good, Value::Object(node_errors)))
}

/// Numeric ids sort numerically, others after them by text.
fn natural(id: &str) -> (u64, &str) {
    (id.parse().unwrap_or(u64::MAX), id)
}

/// The nodes the outputs need, dependencies first (depth-first post-order, as ComfyUI runs them).
fn execution_order(graph: &Map<String, Value>, outputs: &[String]) -> Vec<String> {
    fn visit(graph: &Map<String, Value>, id: &str, seen: &mut HashSet<String>, order: &mut Vec<String>) {
        if !graph.contains_key(id) || !seen.insert(id.to_owned()) {
            return;
        }
        if let Some(inputs) = graph[id].get("inputs").and_then(Value::as_object) {
            for value in inputs.values() {
                if let Some(target) = link_target(value) {
                    visit(graph, target, seen, order);
                }
            }
        }
        order.push(id.to_owned());
    }
    let mut seen = HashSet::new();
    let mut order = Vec::new();
    for output in outputs {
        visit(graph, output, &mut seen, &mut order);
    }
    order
}

/// A cache key for each node: its class and inputs with links replaced by the linked node's key,
/// so a change anywhere upstream changes it.
fn signatures(graph: &Map<String, Value>, order: &[String]) -> HashMap<String, String> {
    let mut sigs: HashMap<String, String> = HashMap::new();
    for id in order {
        let node = &graph[id];
        let mut inputs = Map::new();
        if let Some(given) = node.get("inputs").and_then(Value::as_object) {
            for (name, value) in given {
                let resolved = match link_target(value).and_then(|t| sigs.get(t)) {
                    Some(sig) => json!({"link": sig, "slot": value[1]}),
                    None => value.clone(),
                };
                inputs.insert(name.clone(), resolved);
            }
        }
        let sig = json!({"class_type": node.get("class_type"), "inputs": inputs}).to_string();
        sigs.insert(id.clone(), sig);
    }
    sigs
}

/// `GET /prompt`: `{"exec_info": {"queue_remaining": N}}`, the running job included.
async fn get_prompt(State(shared): State<Arc<Shared>>) -> Response {
    let remaining = shared.lock().queue_remaining();
    json_response(StatusCode::OK, &json!({"exec_info": {"queue_remaining": remaining}}))
}

/// `GET /queue`: running and pending as `[number, prompt_id, graph, extra_data, outputs]`.
async fn get_queue(State(shared): State<Arc<Shared>>) -> Response {
    let inner = shared.lock();
    let running: Vec<Value> = inner.running.iter().map(|run| run.job.tuple()).collect();
    let pending: Vec<Value> = inner.pending.iter().map(Job::tuple).collect();
    json_response(StatusCode::OK, &json!({"queue_running": running, "queue_pending": pending}))
}

/// `POST /queue`: `{"clear": true}` empties and `{"delete": [ids]}` removes pending prompts only;
/// a deleted prompt never reaches history.
async fn post_queue(State(shared): State<Arc<Shared>>, body: Bytes) -> Response {
    let body: Value = serde_json::from_slice(&body).unwrap_or(Value::Null);
    let mut inner = shared.lock();
    let before = inner.pending.len();
    if body.get("clear").and_then(Value::as_bool) == Some(true) {
        inner.pending.clear();
    }
    if let Some(ids) = body.get("delete").and_then(Value::as_array) {
        let ids: HashSet<&str> = ids.iter().filter_map(Value::as_str).collect();
        inner.pending.retain(|job| !ids.contains(job.prompt_id.as_str()));
    }
    let removed = before - inner.pending.len();
    inner.deleted += removed;
    if removed > 0 {
        inner.broadcast_status();
    }
    StatusCode::OK.into_response()
}

/// `POST /interrupt`: no `prompt_id` stops whatever runs; with one, only if it is the running
/// prompt (a pending id is a no-op, as recorded).
async fn post_interrupt(State(shared): State<Arc<Shared>>, body: Bytes) -> Response {
    let body: Value = serde_json::from_slice(&body).unwrap_or(Value::Null);
    let target = body.get("prompt_id").and_then(Value::as_str).filter(|id| !id.is_empty());
    let mut inner = shared.lock();
    let token = match (&inner.running, target) {
        (Some(run), None) => Some(run.interrupt.clone()),
        (Some(run), Some(id)) if run.job.prompt_id == id => Some(run.interrupt.clone()),
        _ => None,
    };
    if let Some(token) = token
        && !token.is_cancelled()
    {
        token.cancel();
        inner.interrupts += 1;
    }
    StatusCode::OK.into_response()
}

/// `GET /history[?max_items=N]`: every finished prompt, oldest first (the newest N with
/// `max_items`).
async fn get_history(State(shared): State<Arc<Shared>>, Query(query): Query<HashMap<String, String>>) -> Response {
    let max_items: Option<usize> = query.get("max_items").and_then(|v| v.parse().ok());
    let inner = shared.lock();
    let skip = max_items.map_or(0, |max| inner.history.len().saturating_sub(max));
    let all: Map<String, Value> = inner.history.iter().skip(skip).cloned().collect();
    json_response(StatusCode::OK, &Value::Object(all))
}

/// `GET /history/{prompt_id}`: `{}` until the prompt finished, then `{id: entry}`.
async fn get_history_one(State(shared): State<Arc<Shared>>, Path(prompt_id): Path<String>) -> Response {
    let inner = shared.lock();
    let body = match inner.history.iter().find(|(id, _)| *id == prompt_id) {
        Some((id, entry)) => json!({ id.clone(): entry }),
        None => json!({}),
    };
    json_response(StatusCode::OK, &body)
}

/// `GET /view?filename=&subfolder=&type=`: the PNG bytes, or an empty 404.
async fn get_view(State(shared): State<Arc<Shared>>, Query(query): Query<HashMap<String, String>>) -> Response {
    let field = |name: &str| query.get(name).cloned().unwrap_or_default();
    let kind = query.get("type").cloned().unwrap_or_else(|| "output".to_owned());
    let key = (field("filename"), field("subfolder"), kind);
    match shared.lock().files.get(&key) {
        Some(bytes) => (StatusCode::OK, [(header::CONTENT_TYPE, "image/png")], bytes.clone()).into_response(),
        None => StatusCode::NOT_FOUND.into_response(),
    }
}

/// `GET /system_stats`: the recorded shape, with this fake's numbers.
async fn get_system_stats() -> Response {
    let ram = 8u64 << 30;
    json_response(
        StatusCode::OK,
        &json!({
            "system": {
                "os": "posix",
                "ram_total": ram,
                "ram_free": ram / 2,
                "comfyui_version": "0.3.64",
                "required_frontend_version": "1.27.10",
                "installed_templates_version": "0.1.95",
                "required_templates_version": "0.1.95",
                "python_version": "3.11.7 (clawgate FakeComfy)",
                "pytorch_version": "2.8.0+cpu",
                "embedded_python": false,
                "argv": ["main.py", "--cpu"],
            },
            "devices": [{
                "name": "cpu", "type": "cpu", "index": null,
                "vram_total": ram, "vram_free": ram / 2, "torch_vram_total": ram, "torch_vram_free": ram / 2,
            }],
        }),
    )
}

/// `GET /object_info`: the known node classes, in ComfyUI's shape (without tooltips).
async fn get_object_info(State(shared): State<Arc<Shared>>) -> Response {
    let mut all = Map::new();
    for (class_type, output) in &shared.classes {
        let required: Map<String, Value> =
            input_specs(class_type).iter().map(|(name, spec)| ((*name).to_owned(), spec.config())).collect();
        let produces = if *output { json!([]) } else { json!(["IMAGE"]) };
        all.insert(
            class_type.clone(),
            json!({
                "input": {"required": required},
                "output": produces,
                "output_is_list": [false],
                "name": class_type,
                "display_name": class_type,
                "description": "",
                "category": "clawgate-fake",
                "output_node": output,
            }),
        );
    }
    json_response(StatusCode::OK, &Value::Object(all))
}

/// `GET /ws?clientId=…`: ComfyUI's progress socket.
async fn ws_upgrade(
    State(shared): State<Arc<Shared>>,
    Query(query): Query<HashMap<String, String>>,
    upgrade: WebSocketUpgrade,
) -> Response {
    let sid = {
        let mut inner = shared.lock();
        if !inner.ws_enabled {
            return StatusCode::SERVICE_UNAVAILABLE.into_response();
        }
        match query.get("clientId").filter(|id| !id.is_empty()) {
            Some(id) => id.clone(),
            None => inner.new_id().replace('-', ""),
        }
    };
    upgrade.on_upgrade(move |socket| ws_session(shared, sid, socket))
}

async fn ws_session(shared: Arc<Shared>, sid: String, mut socket: WebSocket) {
    let (tx, mut rx) = mpsc::channel::<String>(WS_BUFFER);
    let (session, hello, generation, kill) = {
        let mut inner = shared.lock();
        inner.sessions += 1;
        let session = inner.sessions;
        inner.clients.insert(sid.clone(), (session, tx));
        let mut hello = vec![inner.status_message(Some(&sid))];
        // ComfyUI tells a client that reconnects mid-job which of its nodes is executing.
        if let Some(run) = &inner.running
            && run.job.client_id.as_deref() == Some(sid.as_str())
            && let Some(node) = &run.node
        {
            hello.push(
                json!({"type": "executing", "data": {"node": node, "display_node": node, "prompt_id": run.job.prompt_id}})
                    .to_string(),
            );
        }
        (session, hello, inner.ws_generation.clone(), inner.kill.clone())
    };
    for msg in hello {
        if socket.send(Message::Text(msg.into())).await.is_err() {
            return;
        }
    }
    // After a newer socket took over this client id, this one stays open but gets nothing.
    let mut replaced = false;
    loop {
        tokio::select! {
            msg = rx.recv(), if !replaced => match msg {
                Some(msg) => {
                    if socket.send(Message::Text(msg.into())).await.is_err() {
                        break;
                    }
                }
                None => replaced = true,
            },
            incoming = socket.recv() => match incoming {
                Some(Ok(Message::Close(_))) | Some(Err(_)) | None => break,
                Some(Ok(_)) => {}
            },
            () = generation.cancelled() => break,
            () = kill.cancelled() => break,
        }
    }
    let mut inner = shared.lock();
    if inner.clients.get(&sid).is_some_and(|(id, _)| *id == session) {
        inner.clients.remove(&sid);
    }
}

/// Runs queued jobs one at a time until the fake is killed.
async fn worker(shared: Arc<Shared>, kill: CancellationToken) {
    loop {
        let started = {
            let mut inner = shared.lock();
            if inner.paused || inner.running.is_some() {
                None
            } else if let Some(job) = inner.pending.pop_front() {
                let interrupt = CancellationToken::new();
                inner.running = Some(Running { job: job.clone(), node: None, interrupt: interrupt.clone() });
                Some((job, interrupt))
            } else {
                None
            }
        };
        match started {
            Some((job, interrupt)) => run_job(&shared, job, &interrupt, &kill).await,
            None => tokio::select! {
                () = shared.wake.notified() => {}
                () = kill.cancelled() => return,
            },
        }
        if kill.is_cancelled() {
            return;
        }
    }
}

/// How a simulated node's time ended.
enum Slept {
    Done,
    Interrupted,
    Killed,
}

async fn sleep_interruptible(
    shared: &Shared,
    duration: Duration,
    interrupt: &CancellationToken,
    kill: &CancellationToken,
) -> Slept {
    let deadline = tokio::time::Instant::now() + duration;
    loop {
        let hang = shared.lock().hang;
        let until = if hang { tokio::time::Instant::now() + Duration::from_millis(10) } else { deadline };
        tokio::select! {
            () = tokio::time::sleep_until(until) => {
                if !hang && tokio::time::Instant::now() >= deadline {
                    return Slept::Done;
                }
            }
            () = interrupt.cancelled() => return Slept::Interrupted,
            () = kill.cancelled() => return Slept::Killed,
        }
    }
}

/// The end of a job, as recorded in its history entry.
enum Outcome {
    Success,
    Error { node: String, class_type: String },
    Interrupted { node: String, class_type: String },
}

async fn run_job(shared: &Shared, job: Job, interrupt: &CancellationToken, kill: &CancellationToken) {
    let prompt_id = job.prompt_id.clone();
    let client = job.client_id.clone();
    let graph = &job.prompt;
    let order = execution_order(graph, &job.outputs);
    let sigs = signatures(graph, &order);
    let mut messages: Vec<Value> = Vec::new();

    let (slice, steps, fail, cached) = {
        let mut inner = shared.lock();
        let fail = inner.fail_next > 0;
        if fail {
            inner.fail_next -= 1;
        }
        // A scripted failure must really execute, so it ignores the cache.
        let cached: Vec<String> = if fail {
            Vec::new()
        } else {
            order.iter().filter(|id| inner.cache.contains_key(&sigs[*id])).cloned().collect()
        };
        let to_run = u32::try_from(order.len() - cached.len()).unwrap_or(u32::MAX).max(1);
        let start = json!({"prompt_id": prompt_id, "timestamp": now_ms()});
        inner.send_to(client.as_deref(), "execution_start", start.clone());
        messages.push(json!(["execution_start", start]));
        let cached_msg = json!({"nodes": cached, "prompt_id": prompt_id, "timestamp": now_ms()});
        inner.send_to(client.as_deref(), "execution_cached", cached_msg.clone());
        messages.push(json!(["execution_cached", cached_msg]));
        (inner.job_duration / to_run, inner.progress_steps, fail, cached)
    };

    let mut values: HashMap<String, Option<Img>> = HashMap::new();
    let mut new_cache: HashMap<String, Cached> = HashMap::new();
    let mut outputs = Map::new();
    let mut executed: Vec<String> = Vec::new();
    let mut outcome = Outcome::Success;

    for id in &order {
        let node = &graph[id];
        let class_type = node.get("class_type").and_then(Value::as_str).unwrap_or_default().to_owned();
        let is_output = shared.classes.get(&class_type).copied().unwrap_or(false);
        let sig = &sigs[id];
        if cached.contains(id) {
            let hit = shared.lock().cache.get(sig).cloned();
            if let Some(hit) = hit {
                if let Some(ui) = &hit.ui {
                    outputs.insert(id.clone(), ui.clone());
                    let data = json!({"node": id, "display_node": id, "output": ui, "prompt_id": prompt_id});
                    shared.lock().send_to(client.as_deref(), "executed", data);
                }
                values.insert(id.clone(), hit.img);
                new_cache.insert(sig.clone(), hit);
                executed.push(id.clone());
                continue;
            }
        }
        {
            let mut inner = shared.lock();
            if let Some(run) = inner.running.as_mut() {
                run.node = Some(id.clone());
            }
            let data = json!({"node": id, "display_node": id, "prompt_id": prompt_id});
            inner.send_to(client.as_deref(), "executing", data);
        }
        let ticks = if is_output { 1 } else { steps.max(1) };
        let mut stopped = None;
        for step in 1..=ticks {
            match sleep_interruptible(shared, slice / ticks, interrupt, kill).await {
                Slept::Done => {}
                Slept::Interrupted => {
                    stopped = Some(Outcome::Interrupted { node: id.clone(), class_type: class_type.clone() });
                    break;
                }
                Slept::Killed => return,
            }
            if !is_output && steps > 0 {
                let data = json!({"value": step, "max": steps, "prompt_id": prompt_id, "node": id});
                shared.lock().send_to(client.as_deref(), "progress", data);
            }
        }
        if stopped.is_none() && fail {
            stopped = Some(Outcome::Error { node: id.clone(), class_type: class_type.clone() });
        }
        if let Some(stop) = stopped {
            outcome = stop;
            break;
        }
        let img = evaluate(&class_type, node, &values);
        let ui = if is_output {
            let ui = save_images(shared, &class_type, node, img);
            outputs.insert(id.clone(), ui.clone());
            let data = json!({"node": id, "display_node": id, "output": ui, "prompt_id": prompt_id});
            shared.lock().send_to(client.as_deref(), "executed", data);
            Some(ui)
        } else {
            None
        };
        values.insert(id.clone(), img);
        new_cache.insert(sig.clone(), Cached { img, ui });
        executed.push(id.clone());
    }

    let mut inner = shared.lock();
    let (status_str, completed, outputs) = match outcome {
        Outcome::Success => {
            let data = json!({"prompt_id": prompt_id, "timestamp": now_ms()});
            inner.send_to(client.as_deref(), "execution_success", data.clone());
            messages.push(json!(["execution_success", data]));
            inner.completed += 1;
            ("success", true, outputs)
        }
        Outcome::Error { node, class_type } => {
            let data = json!({
                "prompt_id": prompt_id,
                "node_id": node,
                "node_type": class_type,
                "executed": executed,
                "exception_message": "Scripted failure (FakeComfy.fail_next)",
                "exception_type": "RuntimeError",
                "traceback": ["  File \"execution.py\", line 1, in execute\n", "RuntimeError: scripted failure\n"],
                "current_inputs": {},
                "current_outputs": {},
                "timestamp": now_ms(),
            });
            inner.send_to(client.as_deref(), "execution_error", data.clone());
            messages.push(json!(["execution_error", data]));
            ("error", false, outputs)
        }
        Outcome::Interrupted { node, class_type } => {
            let data = json!({
                "prompt_id": prompt_id,
                "node_id": node,
                "node_type": class_type,
                "executed": executed,
                "timestamp": now_ms(),
            });
            inner.send_to(client.as_deref(), "execution_interrupted", data.clone());
            messages.push(json!(["execution_interrupted", data]));
            ("error", false, Map::new())
        }
    };
    // ComfyUI keeps what this prompt computed (even a failed one) and forgets the rest.
    inner.cache = new_cache;
    let meta: Map<String, Value> = outputs
        .keys()
        .map(|id| (id.clone(), json!({"node_id": id, "display_node": id, "parent_node": null, "real_node_id": id})))
        .collect();
    let entry = json!({
        "prompt": job.tuple(),
        "outputs": outputs,
        "status": {"status_str": status_str, "completed": completed, "messages": messages},
        "meta": meta,
    });
    inner.history.push((prompt_id.clone(), entry));
    inner.running = None;
    inner.send_to(client.as_deref(), "executing", json!({"node": null, "display_node": null, "prompt_id": prompt_id}));
    inner.broadcast_status();
}

fn input_int(node: &Value, name: &str, default: i64) -> i64 {
    node.get("inputs").and_then(|i| i.get(name)).and_then(|v| as_int(v).ok()).unwrap_or(default)
}

/// What a node produces, for the nodes whose pixels matter; others pass their first image on.
fn evaluate(class_type: &str, node: &Value, values: &HashMap<String, Option<Img>>) -> Option<Img> {
    let dim = |name: &str, default: i64| u32::try_from(input_int(node, name, default).clamp(1, 16384)).unwrap_or(1);
    let upstream = || {
        node.get("inputs")
            .and_then(Value::as_object)
            .into_iter()
            .flat_map(|inputs| inputs.values())
            .filter_map(|value| link_target(value).and_then(|t| values.get(t).copied().flatten()))
            .next()
    };
    match class_type {
        "EmptyImage" => {
            let color = input_int(node, "color", 0).clamp(0, 0xFF_FFFF);
            let [_, _, _, _, _, r, g, b] = color.to_be_bytes();
            Some(Img {
                width: dim("width", 512),
                height: dim("height", 512),
                batch: dim("batch_size", 1),
                rgb: [r, g, b],
            })
        }
        "EmptyLatentImage" => Some(Img {
            width: dim("width", 512),
            height: dim("height", 512),
            batch: dim("batch_size", 1),
            rgb: [128, 128, 128],
        }),
        "ImageInvert" => upstream().map(|img| Img { rgb: img.rgb.map(|c| 255 - c), ..img }),
        _ => upstream(),
    }
}

/// Writes one PNG per image of the batch and returns the node's `{"images": [...]}` output.
fn save_images(shared: &Shared, class_type: &str, node: &Value, img: Option<Img>) -> Value {
    let img = img.unwrap_or(Img { width: 64, height: 64, batch: 1, rgb: [128, 128, 128] });
    let (kind, prefix) = if class_type == "PreviewImage" {
        ("temp", "ComfyUI_temp_fake".to_owned())
    } else {
        let prefix = node.get("inputs").and_then(|i| i.get("filename_prefix")).and_then(Value::as_str);
        ("output", prefix.unwrap_or("ComfyUI").to_owned())
    };
    let (subfolder, prefix) = match prefix.rsplit_once('/') {
        Some((dir, name)) => (dir.to_owned(), name.to_owned()),
        None => (String::new(), prefix),
    };
    let png = Bytes::from(solid_png(img.width, img.height, img.rgb));
    let mut inner = shared.lock();
    let mut images = Vec::new();
    for _ in 0..img.batch {
        let counter = inner.file_counters.entry((subfolder.clone(), prefix.clone(), kind.to_owned())).or_insert(0);
        *counter += 1;
        let filename = format!("{prefix}_{:05}_.png", *counter);
        inner.files.insert((filename.clone(), subfolder.clone(), kind.to_owned()), png.clone());
        images.push(json!({"filename": filename, "subfolder": subfolder, "type": kind}));
    }
    json!({ "images": images })
}

/// An 8-bit RGB PNG of one colour, rows streamed through zlib so large sizes stay cheap.
fn solid_png(width: u32, height: u32, rgb: [u8; 3]) -> Vec<u8> {
    fn chunk(out: &mut Vec<u8>, kind: &[u8; 4], data: &[u8]) {
        let len = u32::try_from(data.len()).unwrap_or(u32::MAX);
        out.extend_from_slice(&len.to_be_bytes());
        out.extend_from_slice(kind);
        out.extend_from_slice(data);
        let mut crc = flate2::Crc::new();
        crc.update(kind);
        crc.update(data);
        out.extend_from_slice(&crc.sum().to_be_bytes());
    }
    let mut ihdr = Vec::with_capacity(13);
    ihdr.extend_from_slice(&width.to_be_bytes());
    ihdr.extend_from_slice(&height.to_be_bytes());
    ihdr.extend_from_slice(&[8, 2, 0, 0, 0]);
    let mut row = Vec::with_capacity(1 + width as usize * 3);
    row.push(0);
    for _ in 0..width {
        row.extend_from_slice(&rgb);
    }
    let mut z = flate2::write::ZlibEncoder::new(Vec::new(), flate2::Compression::default());
    for _ in 0..height {
        // Writing into a Vec cannot fail.
        let _ = z.write_all(&row);
    }
    let idat = z.finish().unwrap_or_default();
    let mut out = b"\x89PNG\r\n\x1a\n".to_vec();
    chunk(&mut out, b"IHDR", &ihdr);
    chunk(&mut out, b"IDAT", &idat);
    chunk(&mut out, b"IEND", &[]);
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn solid(color: u32) -> Value {
        json!({
            "1": {"class_type": "EmptyImage", "inputs": {"width": 4, "height": 3, "batch_size": 1, "color": color}},
            "2": {"class_type": "ImageInvert", "inputs": {"image": ["1", 0]}},
            "3": {"class_type": "SaveImage", "inputs": {"images": ["2", 0], "filename_prefix": "gw_rec"}}
        })
    }

    async fn post(http: &reqwest::Client, url: String, body: Value) -> anyhow::Result<(u16, String)> {
        let res = http.post(url).json(&body).send().await?;
        Ok((res.status().as_u16(), res.text().await?))
    }

    #[tokio::test]
    async fn answers_the_recorded_native_shapes() -> anyhow::Result<()> {
        let fake = FakeComfy::start().await?;
        let http = reqwest::Client::new();
        let base = fake.base_url();

        let (status, body) =
            post(&http, format!("{base}/prompt"), json!({"prompt": {"1": {"class_type": "NoSuchNode", "inputs": {}}}}))
                .await?;
        assert_eq!(status, 400);
        let body: Value = serde_json::from_str(&body)?;
        assert_eq!(
            body,
            json!({"error": {"type": "invalid_prompt", "message": "Cannot execute because node NoSuchNode does not exist.", "details": "Node ID '#1'", "extra_info": {}}, "node_errors": {}})
        );

        let cancel = http.post(format!("{base}/api/jobs/abc/cancel")).json(&json!({})).send().await?;
        assert_eq!(cancel.status().as_u16(), 405);
        assert_eq!(cancel.text().await?, "405: Method Not Allowed");

        let missing = http.get(format!("{base}/view?filename=nope.png&subfolder=&type=output")).send().await?;
        assert_eq!(missing.status().as_u16(), 404);
        assert_eq!(http.get(format!("{base}/history/does-not-exist")).send().await?.text().await?, "{}");
        let queue: Value = http.get(format!("{base}/api/queue")).send().await?.json().await?;
        assert_eq!(queue, json!({"queue_running": [], "queue_pending": []}));
        let prompt: Value = http.get(format!("{base}/api/prompt")).send().await?.json().await?;
        assert_eq!(prompt, json!({"exec_info": {"queue_remaining": 0}}));
        Ok(())
    }

    #[tokio::test]
    async fn saves_a_png_of_the_requested_size_and_inverted_colour() -> anyhow::Result<()> {
        let fake = FakeComfy::start().await?;
        let http = reqwest::Client::new();
        let (status, body) =
            post(&http, format!("{}/prompt", fake.base_url()), json!({"prompt": solid(0xFF0000), "client_id": "c"}))
                .await?;
        assert_eq!(status, 200);
        let id = serde_json::from_str::<Value>(&body)?["prompt_id"].as_str().unwrap_or_default().to_owned();
        let deadline = tokio::time::Instant::now() + Duration::from_secs(5);
        let entry = loop {
            let history: Value = http.get(format!("{}/history/{id}", fake.base_url())).send().await?.json().await?;
            if let Some(entry) = history.get(&id) {
                break entry.clone();
            }
            assert!(tokio::time::Instant::now() < deadline, "never finished");
            tokio::time::sleep(Duration::from_millis(20)).await;
        };
        assert_eq!(entry["status"]["status_str"], "success");
        assert_eq!(
            entry["outputs"]["3"]["images"][0],
            json!({"filename": "gw_rec_00001_.png", "subfolder": "", "type": "output"})
        );
        assert_eq!(entry["prompt"][3], json!({"client_id": "c"}));
        let png = http
            .get(format!("{}/view?filename=gw_rec_00001_.png&subfolder=&type=output", fake.base_url()))
            .send()
            .await?
            .bytes()
            .await?;
        assert_eq!(&png[..8], b"\x89PNG\r\n\x1a\n");
        assert_eq!(&png[16..24], &[0, 0, 0, 4, 0, 0, 0, 3]);
        // The pixel data: three rows of filter byte 0 and four cyan pixels.
        let idat_len = u32::from_be_bytes([png[33], png[34], png[35], png[36]]) as usize;
        let mut raw = Vec::new();
        std::io::Read::read_to_end(&mut flate2::read::ZlibDecoder::new(&png[41..41 + idat_len]), &mut raw)?;
        let row: Vec<u8> = std::iter::once(0).chain([0u8, 255, 255].repeat(4)).collect();
        assert_eq!(raw, row.repeat(3));
        Ok(())
    }

    #[tokio::test]
    async fn kill_drops_open_connections_and_restart_forgets_history() -> anyhow::Result<()> {
        let fake = FakeComfy::start().await?;
        let http = reqwest::Client::new();
        let stats = format!("{}/system_stats", fake.base_url());
        assert_eq!(http.get(&stats).send().await?.status().as_u16(), 200);
        let (mut ws, _) = tokio_tungstenite::connect_async(fake.ws_url("k")).await?;
        fake.kill();
        // The pooled keep-alive connection is gone too, not just the listener.
        assert!(http.get(&stats).send().await.is_err());
        let ended = tokio::time::timeout(Duration::from_secs(5), async {
            while let Some(Ok(_)) = futures_util::StreamExt::next(&mut ws).await {}
        })
        .await;
        assert!(ended.is_ok(), "WebSocket survived the kill");

        fake.restart().await?;
        assert_eq!(http.get(&stats).send().await?.status().as_u16(), 200);
        let history: Value = http.get(format!("{}/history", fake.base_url())).send().await?.json().await?;
        assert_eq!(history, json!({}));
        Ok(())
    }
}
