//! Native ComfyUI client: `POST /prompt`, `/queue`, `/interrupt`, `/history/{id}`, `/view`,
//! `/system_stats`, and the progress WebSocket `/ws?clientId=`.
//!
//! Shapes follow what a real ComfyUI 0.3.64 answered (`contracts/comfy-real.md` §4, §8). Two of
//! its habits shape this client:
//! - ComfyUI keeps one WebSocket per client id (a second connection with the same id silently
//!   takes the messages away from the first), so a [`ComfyClient`] opens at most one socket and
//!   fans its events out to every [`EventStream`].
//! - History is the only durable record of a finished prompt, and it is written *after*
//!   `execution_success` went out; a socket can also drop at any time. [`ComfyClient::wait_for`]
//!   therefore treats WebSocket events as hints and `/history/{id}` as the truth, polled every
//!   second as well.
//!
//! Every request has a timeout, and an answer that is not what ComfyUI sends is an error
//! ([`ComfyError::Malformed`]), never a panic.

use std::collections::VecDeque;
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;

use bytes::Bytes;
use clawgate_backoff::Backoff;
use futures_util::StreamExt;
use reqwest::{StatusCode, Url};
use serde_json::{Value, json};
use tokio::sync::broadcast;
use tokio_tungstenite::tungstenite::Message;

/// The `extra_data` key under which [`ComfyClient::submit_tagged`] stores its tag.
pub const TAG_KEY: &str = "clawgate_job";

/// History entries [`ComfyClient::find_tagged`] searches (newest first in ComfyUI's order).
pub const TAG_SEARCH_HISTORY: usize = 256;

/// Default timeout of one HTTP request.
pub const DEFAULT_REQUEST_TIMEOUT: Duration = Duration::from_secs(10);

/// How often [`ComfyClient::wait_for`] polls `/history/{id}` by default.
pub const DEFAULT_POLL_INTERVAL: Duration = Duration::from_secs(1);

/// Consecutive failed history polls after which [`ComfyClient::wait_for`] gives up on the worker.
const MAX_POLL_FAILURES: u32 = 3;

/// Events buffered per [`EventStream`] before the slowest one starts skipping.
const EVENT_BUFFER: usize = 256;

/// Recent events kept so [`ComfyClient::wait_for`], called after `submit` returned, still sees
/// the prompt's first events.
const RECENT_EVENTS: usize = 256;

/// WebSocket reconnect backoff: 100 ms doubling to 5 s.
const WS_BACKOFF: Backoff = Backoff::new(Duration::from_millis(100), Duration::from_secs(5));

/// Why a ComfyUI call failed. [`ComfyError::is_transient`] says whether retrying (later, or on
/// another worker) can help.
#[derive(Debug, thiserror::Error)]
pub enum ComfyError {
    /// ComfyUI refused the prompt (`400` with an `error` object): retrying the same prompt fails
    /// the same way.
    #[error("ComfyUI rejected the prompt ({kind}): {message}")]
    Invalid {
        /// `error.type`, e.g. `invalid_prompt`, `prompt_outputs_failed_validation`.
        kind: String,
        /// `error.message`.
        message: String,
        /// `error.details`.
        details: String,
        /// Per-node validation errors, as ComfyUI sent them (`{}` when none).
        node_errors: Value,
    },
    /// An HTTP status ComfyUI does not use for this call's success.
    #[error("ComfyUI answered HTTP {status} on {path}")]
    Status {
        /// The status code.
        status: u16,
        /// The request path.
        path: String,
        /// The start of the body, for logs.
        body: String,
    },
    /// The server could not be reached or the request timed out.
    #[error("could not reach ComfyUI on {path}")]
    Transport {
        /// The request path.
        path: String,
        /// What reqwest saw.
        #[source]
        source: reqwest::Error,
    },
    /// The answer was not in ComfyUI's shape.
    #[error("unexpected answer from ComfyUI on {path}: {reason}")]
    Malformed {
        /// The request path.
        path: String,
        /// What was wrong with it.
        reason: String,
    },
    /// [`ComfyClient::wait_for`] saw no result in time.
    #[error("no result for prompt {prompt_id} within {timeout:?}")]
    Timeout {
        /// The prompt waited for.
        prompt_id: String,
        /// The timeout given.
        timeout: Duration,
    },
    /// The base URL is not an `http(s)` URL.
    #[error("invalid ComfyUI base URL {0:?}")]
    InvalidUrl(String),
}

impl ComfyError {
    /// Whether retrying can succeed: transport failures, timeouts, 5xx, 408/429 and garbled
    /// answers (a proxy in between) are transient; a rejected prompt or a bad URL is not.
    pub fn is_transient(&self) -> bool {
        match self {
            Self::Transport { .. } | Self::Timeout { .. } | Self::Malformed { .. } => true,
            Self::Status { status, .. } => *status >= 500 || *status == 408 || *status == 429,
            Self::Invalid { .. } | Self::InvalidUrl(_) => false,
        }
    }
}

/// `POST /prompt` accepted the prompt.
#[derive(Debug, Clone, PartialEq)]
pub struct Submitted {
    /// The id to follow it by.
    pub prompt_id: String,
    /// Its queue number.
    pub number: u64,
    /// Errors of outputs ComfyUI dropped while running the rest (`{}` normally).
    pub node_errors: Value,
}

/// Timeout of `GET /system_stats` (at most the client's request timeout): a status view must
/// not wait long for a worker that is busy or gone.
pub const SYSTEM_STATS_TIMEOUT: Duration = Duration::from_secs(5);

/// Largest `/system_stats` answer read.
pub const MAX_SYSTEM_STATS_BODY: usize = 64 * 1024;

/// What `GET /system_stats` says about a server (the fields `/status` shows; every one is
/// optional, as ComfyUI versions differ).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct SystemStats {
    /// `system.comfyui_version`, e.g. `0.3.64`.
    pub comfyui_version: Option<String>,
    /// `system.python_version`.
    pub python_version: Option<String>,
    /// `system.os`.
    pub os: Option<String>,
    /// `system.ram_total`, bytes.
    pub ram_total: Option<u64>,
    /// `system.ram_free`, bytes.
    pub ram_free: Option<u64>,
    /// `devices[]`.
    pub devices: Vec<Device>,
}

/// One compute device in `/system_stats`.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Device {
    /// `name`, e.g. `cuda:0 NVIDIA GeForce RTX 4090 : cudaMallocAsync` or `cpu`.
    pub name: String,
    /// `type`: `cuda`, `cpu`, `mps`, …
    pub kind: String,
    /// `vram_total`, bytes.
    pub vram_total: Option<u64>,
    /// `vram_free`, bytes.
    pub vram_free: Option<u64>,
}

impl SystemStats {
    /// Reads `{"system": {…}, "devices": [{…}]}`; `None` without a `system` object. Fields of
    /// the wrong type count as absent.
    pub fn parse(body: &Value) -> Option<Self> {
        let system = body.get("system")?.as_object()?;
        let text = |v: Option<&Value>| v.and_then(Value::as_str).map(str::to_owned);
        let devices = body
            .get("devices")
            .and_then(Value::as_array)
            .map(|list| {
                list.iter()
                    .filter_map(|d| {
                        Some(Device {
                            name: d.get("name")?.as_str()?.to_owned(),
                            kind: text(d.get("type")).unwrap_or_default(),
                            vram_total: d.get("vram_total").and_then(Value::as_u64),
                            vram_free: d.get("vram_free").and_then(Value::as_u64),
                        })
                    })
                    .collect()
            })
            .unwrap_or_default();
        Some(Self {
            comfyui_version: text(system.get("comfyui_version")),
            python_version: text(system.get("python_version")),
            os: text(system.get("os")),
            ram_total: system.get("ram_total").and_then(Value::as_u64),
            ram_free: system.get("ram_free").and_then(Value::as_u64),
            devices,
        })
    }
}

/// Prompt ids in the queue.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct QueueState {
    /// Running now (ComfyUI runs one at a time).
    pub running: Vec<String>,
    /// Waiting, in queue-number order.
    pub pending: Vec<String>,
}

/// One file a prompt produced, as `/view` wants it named.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct OutputFile {
    /// The node that produced it.
    pub node: String,
    /// File name, e.g. `gw_native_00001_.png`.
    pub filename: String,
    /// Sub-folder, usually empty.
    pub subfolder: String,
    /// `output`, `temp` or `input` (ComfyUI's `type`).
    pub kind: String,
}

/// How a finished prompt ended.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum JobStatus {
    /// `status_str: "success"`.
    Completed,
    /// An `execution_error`.
    Failed {
        /// `exception_type: exception_message`.
        message: String,
        /// The node that raised it.
        node_id: Option<String>,
    },
    /// Stopped by `/interrupt`.
    Interrupted,
    /// A status this client does not know.
    Other {
        /// ComfyUI's `status_str`, empty when absent.
        status_str: String,
    },
}

/// A prompt's entry in `/history/{id}`: present only once it finished.
#[derive(Debug, Clone, PartialEq)]
pub struct HistoryEntry {
    /// How it ended.
    pub status: JobStatus,
    /// Files it produced (on a cached re-run: the earlier run's files).
    pub outputs: Vec<OutputFile>,
}

/// A message from `/ws?clientId=`. Unknown message types (and binary previews) are skipped.
#[derive(Debug, Clone, PartialEq)]
pub enum ComfyEvent {
    /// Queue size, running prompt included. Sent on connect and whenever the queue changes.
    Status {
        /// `exec_info.queue_remaining`.
        queue_remaining: u64,
    },
    /// The prompt started.
    ExecutionStart {
        /// The prompt.
        prompt_id: String,
    },
    /// Nodes served from the cache (all of them for an identical re-submit).
    Cached {
        /// The prompt.
        prompt_id: String,
        /// Cached node ids.
        nodes: Vec<String>,
    },
    /// A node started; `None` once the prompt is over (whatever the outcome).
    Executing {
        /// The prompt.
        prompt_id: String,
        /// The node id.
        node: Option<String>,
    },
    /// Progress inside a node.
    Progress {
        /// The prompt.
        prompt_id: String,
        /// The node.
        node: Option<String>,
        /// Steps done.
        value: u64,
        /// Steps in all.
        max: u64,
    },
    /// An output node finished (also replayed for cached output nodes).
    Executed {
        /// The prompt.
        prompt_id: String,
        /// The node.
        node: String,
        /// Its files.
        images: Vec<OutputFile>,
    },
    /// The prompt finished successfully.
    Success {
        /// The prompt.
        prompt_id: String,
    },
    /// The prompt failed.
    Error {
        /// The prompt.
        prompt_id: String,
        /// `exception_type: exception_message`.
        message: String,
        /// The failing node.
        node_id: Option<String>,
    },
    /// The prompt was interrupted.
    Interrupted {
        /// The prompt.
        prompt_id: String,
    },
}

impl ComfyEvent {
    /// The prompt this event is about (`None` for [`ComfyEvent::Status`]).
    pub fn prompt_id(&self) -> Option<&str> {
        match self {
            Self::Status { .. } => None,
            Self::ExecutionStart { prompt_id }
            | Self::Cached { prompt_id, .. }
            | Self::Executing { prompt_id, .. }
            | Self::Progress { prompt_id, .. }
            | Self::Executed { prompt_id, .. }
            | Self::Success { prompt_id }
            | Self::Error { prompt_id, .. }
            | Self::Interrupted { prompt_id } => Some(prompt_id),
        }
    }

    /// Whether the prompt is over after this event.
    pub fn is_terminal(&self) -> bool {
        matches!(
            self,
            Self::Success { .. } | Self::Error { .. } | Self::Interrupted { .. } | Self::Executing { node: None, .. }
        )
    }

    /// Parses one text frame; `None` for anything that is not a known, well-formed event.
    pub fn parse(text: &str) -> Option<Self> {
        let frame: Value = serde_json::from_str(text).ok()?;
        let data = frame.get("data")?;
        let str_of = |key: &str| data.get(key).and_then(Value::as_str).map(str::to_owned);
        let prompt_id = || str_of("prompt_id");
        Some(match frame.get("type")?.as_str()? {
            "status" => Self::Status { queue_remaining: data.pointer("/status/exec_info/queue_remaining")?.as_u64()? },
            "execution_start" => Self::ExecutionStart { prompt_id: prompt_id()? },
            "execution_cached" => Self::Cached {
                prompt_id: prompt_id()?,
                nodes: data
                    .get("nodes")
                    .and_then(Value::as_array)
                    .map(|nodes| nodes.iter().filter_map(Value::as_str).map(str::to_owned).collect())
                    .unwrap_or_default(),
            },
            "executing" => Self::Executing { prompt_id: prompt_id()?, node: str_of("node") },
            "progress" => Self::Progress {
                prompt_id: prompt_id()?,
                node: str_of("node"),
                value: data.get("value")?.as_u64()?,
                max: data.get("max")?.as_u64()?,
            },
            "executed" => {
                let node = str_of("node")?;
                let images = data.get("output").map(|out| node_files(&node, out)).unwrap_or_default();
                Self::Executed { prompt_id: prompt_id()?, node, images }
            }
            "execution_success" => Self::Success { prompt_id: prompt_id()? },
            "execution_error" => {
                Self::Error { prompt_id: prompt_id()?, message: error_message(data), node_id: str_of("node_id") }
            }
            "execution_interrupted" => Self::Interrupted { prompt_id: prompt_id()? },
            _ => return None,
        })
    }
}

/// `exception_type: exception_message` from an `execution_error` payload.
fn error_message(data: &Value) -> String {
    let field = |key: &str| data.get(key).and_then(Value::as_str).unwrap_or_default();
    match (field("exception_type"), field("exception_message")) {
        ("", "") => "execution error".to_owned(),
        ("", message) => message.to_owned(),
        (kind, message) => format!("{kind}: {message}"),
    }
}

/// The files in one node's output (`{"images": [{filename, subfolder, type}], …}`).
fn node_files(node: &str, output: &Value) -> Vec<OutputFile> {
    let Some(output) = output.as_object() else { return Vec::new() };
    output
        .values()
        .filter_map(Value::as_array)
        .flatten()
        .filter_map(|file| {
            Some(OutputFile {
                node: node.to_owned(),
                filename: file.get("filename")?.as_str()?.to_owned(),
                subfolder: file.get("subfolder").and_then(Value::as_str).unwrap_or_default().to_owned(),
                kind: file.get("type").and_then(Value::as_str).unwrap_or("output").to_owned(),
            })
        })
        .collect()
}

/// Numeric node ids in numeric order, others after them.
fn node_order(id: &str) -> (u64, &str) {
    (id.parse().unwrap_or(u64::MAX), id)
}

impl HistoryEntry {
    /// Parses one entry (the value under the prompt id).
    pub fn parse(entry: &Value) -> Option<Self> {
        let entry = entry.as_object()?;
        let mut outputs = Vec::new();
        if let Some(by_node) = entry.get("outputs").and_then(Value::as_object) {
            let mut nodes: Vec<(&String, &Value)> = by_node.iter().collect();
            nodes.sort_by(|a, b| node_order(a.0).cmp(&node_order(b.0)));
            for (node, output) in nodes {
                outputs.extend(node_files(node, output));
            }
        }
        let status = entry.get("status").cloned().unwrap_or(Value::Null);
        let status_str = status.get("status_str").and_then(Value::as_str).unwrap_or_default();
        let messages = status.get("messages").and_then(Value::as_array).map(Vec::as_slice).unwrap_or_default();
        let message = |kind: &str| {
            messages.iter().find_map(|m| match m.as_array().map(Vec::as_slice) {
                Some([Value::String(k), data]) if k == kind => Some(data),
                _ => None,
            })
        };
        let status = match status_str {
            "success" => JobStatus::Completed,
            "error" => {
                if let Some(data) = message("execution_error") {
                    JobStatus::Failed {
                        message: error_message(data),
                        node_id: data.get("node_id").and_then(Value::as_str).map(str::to_owned),
                    }
                } else if message("execution_interrupted").is_some() {
                    JobStatus::Interrupted
                } else {
                    JobStatus::Failed { message: "execution error".to_owned(), node_id: None }
                }
            }
            other => JobStatus::Other { status_str: other.to_owned() },
        };
        Some(Self { status, outputs })
    }
}

/// Builder for [`ComfyClient`].
#[derive(Debug, Clone)]
pub struct ComfyClientBuilder {
    base_url: String,
    client_id: String,
    request_timeout: Duration,
    poll_interval: Duration,
}

impl ComfyClientBuilder {
    /// Timeout of each HTTP request (default [`DEFAULT_REQUEST_TIMEOUT`]).
    pub fn request_timeout(mut self, timeout: Duration) -> Self {
        self.request_timeout = timeout;
        self
    }

    /// History poll period of [`ComfyClient::wait_for`] (default [`DEFAULT_POLL_INTERVAL`]).
    pub fn poll_interval(mut self, interval: Duration) -> Self {
        self.poll_interval = interval;
        self
    }

    /// Checks the URL and builds the client.
    pub fn build(self) -> Result<ComfyClient, ComfyError> {
        let trimmed = self.base_url.trim().trim_end_matches('/');
        let url = Url::parse(trimmed).map_err(|_| ComfyError::InvalidUrl(self.base_url.clone()))?;
        let ws_scheme = match url.scheme() {
            "http" => "ws",
            "https" => "wss",
            _ => return Err(ComfyError::InvalidUrl(self.base_url)),
        };
        let ws_base = format!("{ws_scheme}{}", &trimmed[url.scheme().len()..]);
        let http = reqwest::Client::builder()
            .timeout(self.request_timeout)
            .connect_timeout(self.request_timeout.min(Duration::from_secs(5)))
            .build()
            .map_err(|source| ComfyError::Transport { path: String::new(), source })?;
        Ok(ComfyClient {
            inner: Arc::new(Inner {
                base: trimmed.to_owned(),
                ws_base,
                client_id: self.client_id,
                request_timeout: self.request_timeout,
                poll_interval: self.poll_interval,
                http,
                hub: Hub::default(),
            }),
        })
    }
}

/// A native ComfyUI server. Cheap to clone; clones share the HTTP pool and the WebSocket.
#[derive(Debug, Clone)]
pub struct ComfyClient {
    inner: Arc<Inner>,
}

#[derive(Debug)]
struct Inner {
    /// Base URL without a trailing slash.
    base: String,
    /// The same with `ws`/`wss`.
    ws_base: String,
    /// Sent with every prompt: ComfyUI sends its progress only to the socket with this id.
    client_id: String,
    request_timeout: Duration,
    poll_interval: Duration,
    http: reqwest::Client,
    /// The one WebSocket task's sender and recent events, while any [`EventStream`] exists.
    hub: Hub,
}

impl ComfyClient {
    /// A client with default timeouts. `base_url` is e.g. `http://127.0.0.1:8188` (a trailing
    /// slash is fine).
    pub fn new(base_url: &str, client_id: impl Into<String>) -> Result<Self, ComfyError> {
        Self::builder(base_url, client_id).build()
    }

    /// A builder, for non-default timeouts.
    pub fn builder(base_url: &str, client_id: impl Into<String>) -> ComfyClientBuilder {
        ComfyClientBuilder {
            base_url: base_url.to_owned(),
            client_id: client_id.into(),
            request_timeout: DEFAULT_REQUEST_TIMEOUT,
            poll_interval: DEFAULT_POLL_INTERVAL,
        }
    }

    /// The base URL, without a trailing slash.
    pub fn base_url(&self) -> &str {
        &self.inner.base
    }

    /// The client id sent with prompts and on the WebSocket.
    pub fn client_id(&self) -> &str {
        &self.inner.client_id
    }

    fn url(&self, path: &str) -> String {
        format!("{}{path}", self.inner.base)
    }

    async fn send(&self, path: &str, request: reqwest::RequestBuilder) -> Result<(StatusCode, Bytes), ComfyError> {
        let transport = |source| ComfyError::Transport { path: path.to_owned(), source };
        let response = request.send().await.map_err(transport)?;
        let status = response.status();
        let body = response.bytes().await.map_err(transport)?;
        Ok((status, body))
    }

    fn unexpected(path: &str, status: StatusCode, body: &[u8]) -> ComfyError {
        let text = String::from_utf8_lossy(&body[..body.len().min(512)]).into_owned();
        ComfyError::Status { status: status.as_u16(), path: path.to_owned(), body: text }
    }

    async fn get_json(&self, path: &str) -> Result<Value, ComfyError> {
        let (status, body) = self.send(path, self.inner.http.get(self.url(path))).await?;
        if status != StatusCode::OK {
            return Err(Self::unexpected(path, status, &body));
        }
        serde_json::from_slice(&body)
            .map_err(|e| ComfyError::Malformed { path: path.to_owned(), reason: format!("not JSON: {e}") })
    }

    async fn post_ok(&self, path: &str, body: &Value) -> Result<(), ComfyError> {
        let (status, answer) = self.send(path, self.inner.http.post(self.url(path)).json(body)).await?;
        if status.is_success() { Ok(()) } else { Err(Self::unexpected(path, status, &answer)) }
    }

    /// `POST /prompt` with this client's id.
    pub async fn submit(&self, prompt: &Value) -> Result<Submitted, ComfyError> {
        self.submit_with(prompt, None).await
    }

    /// `POST /prompt` with `extra_data` (ComfyUI stores it with the prompt and adds `client_id`).
    pub async fn submit_with(&self, prompt: &Value, extra_data: Option<&Value>) -> Result<Submitted, ComfyError> {
        const PATH: &str = "/prompt";
        let mut body = json!({"prompt": prompt, "client_id": self.inner.client_id});
        if let Some(extra) = extra_data {
            body["extra_data"] = extra.clone();
        }
        let (status, answer) = self.send(PATH, self.inner.http.post(self.url(PATH)).json(&body)).await?;
        let malformed = |reason: &str| ComfyError::Malformed { path: PATH.to_owned(), reason: reason.to_owned() };
        let parsed: Option<Value> = serde_json::from_slice(&answer).ok();
        match status {
            StatusCode::OK => {
                let parsed = parsed.ok_or_else(|| malformed("not JSON"))?;
                let prompt_id =
                    parsed.get("prompt_id").and_then(Value::as_str).ok_or_else(|| malformed("no prompt_id"))?;
                Ok(Submitted {
                    prompt_id: prompt_id.to_owned(),
                    number: parsed.get("number").and_then(Value::as_u64).unwrap_or_default(),
                    node_errors: parsed.get("node_errors").cloned().unwrap_or_else(|| json!({})),
                })
            }
            StatusCode::BAD_REQUEST => match parsed.as_ref().and_then(|p| Some((p, p.get("error")?.as_object()?))) {
                Some((parsed, error)) => {
                    let field = |key: &str| error.get(key).and_then(Value::as_str).unwrap_or_default().to_owned();
                    Err(ComfyError::Invalid {
                        kind: field("type"),
                        message: field("message"),
                        details: field("details"),
                        node_errors: parsed.get("node_errors").cloned().unwrap_or_else(|| json!({})),
                    })
                }
                None => Err(Self::unexpected(PATH, status, &answer)),
            },
            _ => Err(Self::unexpected(PATH, status, &answer)),
        }
    }

    /// `GET /queue`: running and pending prompt ids.
    pub async fn queue(&self) -> Result<QueueState, ComfyError> {
        const PATH: &str = "/queue";
        let body = self.get_json(PATH).await?;
        let list = |key: &str| -> Result<Vec<String>, ComfyError> {
            let items = body
                .get(key)
                .and_then(Value::as_array)
                .ok_or_else(|| ComfyError::Malformed { path: PATH.to_owned(), reason: format!("no {key} array") })?;
            let mut entries: Vec<(u64, String)> = items
                .iter()
                .filter_map(|item| {
                    let number = item.get(0).and_then(Value::as_u64).unwrap_or(u64::MAX);
                    Some((number, item.get(1)?.as_str()?.to_owned()))
                })
                .collect();
            // ComfyUI lists its heap, not in queue order.
            entries.sort();
            Ok(entries.into_iter().map(|(_, id)| id).collect())
        };
        Ok(QueueState { running: list("queue_running")?, pending: list("queue_pending")? })
    }

    /// The id of a prompt whose `extra_data` carries `tag` under [`TAG_KEY`] (as
    /// [`ComfyClient::submit_tagged`] sends it), looked up in the queue (running and pending)
    /// and then in the newest [`TAG_SEARCH_HISTORY`] history entries. This is how a gateway
    /// that died between ComfyUI's answer to `POST /prompt` and recording it finds the prompt
    /// again instead of running the job twice.
    pub async fn find_tagged(&self, tag: &str) -> Result<Option<String>, ComfyError> {
        let tagged = |tuple: &Value| tuple.get(3).and_then(|e| e.get(TAG_KEY)).and_then(Value::as_str) == Some(tag);
        let queue = self.get_json("/queue").await?;
        for key in ["queue_running", "queue_pending"] {
            for item in queue.get(key).and_then(Value::as_array).into_iter().flatten() {
                if tagged(item) {
                    return Ok(item.get(1).and_then(Value::as_str).map(str::to_owned));
                }
            }
        }
        let history = self.get_json(&format!("/history?max_items={TAG_SEARCH_HISTORY}")).await?;
        Ok(history
            .as_object()
            .into_iter()
            .flatten()
            .find(|(_, entry)| entry.get("prompt").is_some_and(tagged))
            .map(|(id, _)| id.clone()))
    }

    /// Whether `prompt_id` is pending, running or finished here. The queue is read before the
    /// history: a prompt leaves the queue only into the history, so one finishing in between is
    /// not missed. A server that cannot be asked counts as knowing it (following the prompt then
    /// fails over as usual).
    pub async fn knows_prompt(&self, prompt_id: &str) -> bool {
        match self.queue().await {
            Ok(q) if q.running.iter().chain(&q.pending).any(|p| p == prompt_id) => return true,
            Ok(_) => {}
            Err(_) => return true,
        }
        !matches!(self.history(prompt_id).await, Ok(None))
    }

    /// `POST /prompt` with `extra_data.`[`TAG_KEY`]` = tag`, findable later with
    /// [`ComfyClient::find_tagged`].
    pub async fn submit_tagged(&self, prompt: &Value, tag: &str) -> Result<Submitted, ComfyError> {
        self.submit_with(prompt, Some(&json!({ TAG_KEY: tag }))).await
    }

    /// `GET /history/{id}`: `None` while the prompt is pending, running, deleted or unknown.
    pub async fn history(&self, prompt_id: &str) -> Result<Option<HistoryEntry>, ComfyError> {
        let mut url = Url::parse(&self.url("/history")).map_err(|_| ComfyError::InvalidUrl(self.inner.base.clone()))?;
        if let Ok(mut segments) = url.path_segments_mut() {
            segments.push(prompt_id);
        }
        let path = url.path().to_owned();
        let (status, body) = self.send(&path, self.inner.http.get(url)).await?;
        if status != StatusCode::OK {
            return Err(Self::unexpected(&path, status, &body));
        }
        let malformed = |reason: &str| ComfyError::Malformed { path: path.clone(), reason: reason.to_owned() };
        let body: Value = serde_json::from_slice(&body).map_err(|_| malformed("not JSON"))?;
        let all = body.as_object().ok_or_else(|| malformed("not an object"))?;
        match all.get(prompt_id) {
            None => Ok(None),
            Some(entry) => HistoryEntry::parse(entry).map(Some).ok_or_else(|| malformed("entry is not an object")),
        }
    }

    /// `GET /view?filename=&subfolder=&type=`: the file's bytes.
    pub async fn view(&self, file: &OutputFile) -> Result<Bytes, ComfyError> {
        const PATH: &str = "/view";
        let url = Url::parse_with_params(
            &self.url(PATH),
            [("filename", &file.filename), ("subfolder", &file.subfolder), ("type", &file.kind)],
        )
        .map_err(|_| ComfyError::InvalidUrl(self.inner.base.clone()))?;
        let (status, body) = self.send(PATH, self.inner.http.get(url)).await?;
        if status != StatusCode::OK {
            return Err(Self::unexpected(PATH, status, &body));
        }
        Ok(body)
    }

    /// `POST /queue {"delete": [id]}`: removes a pending prompt (a running one is unaffected; it
    /// never reaches history).
    pub async fn cancel_pending(&self, prompt_id: &str) -> Result<(), ComfyError> {
        self.post_ok("/queue", &json!({"delete": [prompt_id]})).await
    }

    /// `POST /interrupt`: stops whatever is running.
    pub async fn interrupt(&self) -> Result<(), ComfyError> {
        self.post_ok("/interrupt", &json!({})).await
    }

    /// `POST /interrupt {"prompt_id": id}`: stops that prompt only if it is the running one.
    pub async fn interrupt_prompt(&self, prompt_id: &str) -> Result<(), ComfyError> {
        self.post_ok("/interrupt", &json!({"prompt_id": prompt_id})).await
    }

    /// `GET /system_stats`, the health probe: read with [`SYSTEM_STATS_TIMEOUT`] and at most
    /// [`MAX_SYSTEM_STATS_BODY`] bytes (a real answer is about 1 KiB).
    pub async fn system_stats(&self) -> Result<Value, ComfyError> {
        const PATH: &str = "/system_stats";
        let timeout = self.inner.request_timeout.min(SYSTEM_STATS_TIMEOUT);
        let request = self.inner.http.get(self.url(PATH)).timeout(timeout);
        let (status, body) = self.send_bounded(PATH, request, MAX_SYSTEM_STATS_BODY).await?;
        if status != StatusCode::OK {
            return Err(Self::unexpected(PATH, status, &body));
        }
        serde_json::from_slice(&body)
            .map_err(|e| ComfyError::Malformed { path: PATH.to_owned(), reason: format!("not JSON: {e}") })
    }

    /// `GET /system_stats` read into [`SystemStats`] (what `/status` shows of a worker).
    pub async fn system_info(&self) -> Result<SystemStats, ComfyError> {
        let body = self.system_stats().await?;
        SystemStats::parse(&body).ok_or_else(|| ComfyError::Malformed {
            path: "/system_stats".to_owned(),
            reason: "no system object".into(),
        })
    }

    /// Like `send`, but an answer longer than `max` bytes is [`ComfyError::Malformed`].
    async fn send_bounded(
        &self,
        path: &str,
        request: reqwest::RequestBuilder,
        max: usize,
    ) -> Result<(StatusCode, Bytes), ComfyError> {
        let transport = |source| ComfyError::Transport { path: path.to_owned(), source };
        let mut response = request.send().await.map_err(transport)?;
        let status = response.status();
        let mut body = Vec::new();
        while let Some(chunk) = response.chunk().await.map_err(transport)? {
            if body.len() + chunk.len() > max {
                return Err(ComfyError::Malformed {
                    path: path.to_owned(),
                    reason: format!("answer over {max} bytes"),
                });
            }
            body.extend_from_slice(&chunk);
        }
        Ok((status, Bytes::from(body)))
    }

    /// Progress events from `/ws?clientId=`. The first stream opens the socket; it reconnects with
    /// backoff until every stream is dropped. A `Status` event follows every (re)connect.
    pub fn events(&self) -> EventStream {
        self.subscribe(None).0
    }

    /// A stream, plus the already received events about `prompt_id` (taken under the same lock
    /// the socket task publishes under, so nothing is missed or seen twice).
    fn subscribe(&self, prompt_id: Option<&str>) -> (EventStream, Vec<ComfyEvent>) {
        let mut hub = self.inner.hub.lock();
        let replay = match prompt_id {
            Some(id) => hub.recent.iter().filter(|e| e.prompt_id() == Some(id)).cloned().collect(),
            None => Vec::new(),
        };
        if let Some(tx) = hub.tx.as_ref() {
            return (EventStream { rx: tx.subscribe() }, replay);
        }
        let (tx, rx) = broadcast::channel(EVENT_BUFFER);
        hub.tx = Some(tx.clone());
        hub.recent.clear();
        let url = format!("{}/ws?clientId={}", self.inner.ws_base, self.inner.client_id);
        tokio::spawn(ws_task(url, self.inner.request_timeout, self.inner.hub.clone(), tx));
        (EventStream { rx }, replay)
    }

    /// Waits until `prompt_id` finished and returns its history entry. WebSocket events for it
    /// go to `on_progress` (including those received before the call, while an [`EventStream`]
    /// of this client was open) and end the wait early; `/history/{id}` is polled meanwhile, so a lost
    /// socket never loses a completion. Fails after `timeout`, or when the server stays
    /// unreachable for several polls in a row.
    pub async fn wait_for(
        &self,
        prompt_id: &str,
        timeout: Duration,
        mut on_progress: impl FnMut(&ComfyEvent),
    ) -> Result<HistoryEntry, ComfyError> {
        let deadline = tokio::time::Instant::now() + timeout;
        let (stream, replay) = self.subscribe(Some(prompt_id));
        let mut events = Some(stream);
        for event in &replay {
            on_progress(event);
        }
        // The poll's first tick is immediate, so a replayed end is confirmed at once.
        let mut poll = tokio::time::interval(self.inner.poll_interval);
        poll.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        let mut failures = 0;
        loop {
            tokio::select! {
                event = next_event(&mut events) => match event {
                    Some(event) if event.prompt_id() == Some(prompt_id) => {
                        on_progress(&event);
                        // ComfyUI writes history just after announcing the end: look a few times
                        // quickly, then leave it to the poll.
                        if event.is_terminal() {
                            for _ in 0..5 {
                                if let Ok(Some(entry)) = self.history(prompt_id).await {
                                    return Ok(entry);
                                }
                                tokio::time::sleep(Duration::from_millis(50)).await;
                            }
                        }
                    }
                    Some(_) => {}
                    None => events = None,
                },
                _ = poll.tick() => match self.history(prompt_id).await {
                    Ok(Some(entry)) => return Ok(entry),
                    Ok(None) => failures = 0,
                    Err(e) if e.is_transient() => {
                        failures += 1;
                        tracing::debug!(error = %e, failures, "ComfyUI history poll failed");
                        if failures >= MAX_POLL_FAILURES {
                            return Err(e);
                        }
                    }
                    Err(e) => return Err(e),
                },
                () = tokio::time::sleep_until(deadline) => {
                    return Err(ComfyError::Timeout { prompt_id: prompt_id.to_owned(), timeout });
                }
            }
        }
    }
}

async fn next_event(events: &mut Option<EventStream>) -> Option<ComfyEvent> {
    match events {
        Some(stream) => stream.next().await,
        None => std::future::pending().await,
    }
}

/// Events from the client's WebSocket. Dropping every stream closes the socket.
#[derive(Debug)]
pub struct EventStream {
    rx: broadcast::Receiver<ComfyEvent>,
}

impl EventStream {
    /// The next event; `None` once the socket task is gone. A reader too slow to keep up skips
    /// the events it missed rather than blocking the others.
    pub async fn next(&mut self) -> Option<ComfyEvent> {
        loop {
            match self.rx.recv().await {
                Ok(event) => return Some(event),
                Err(broadcast::error::RecvError::Lagged(skipped)) => {
                    tracing::debug!(skipped, "ComfyUI event stream lagged");
                }
                Err(broadcast::error::RecvError::Closed) => return None,
            }
        }
    }
}

/// Shared between a client and its socket task.
#[derive(Debug, Clone, Default)]
struct Hub(Arc<Mutex<HubState>>);

#[derive(Debug, Default)]
struct HubState {
    /// Set while the socket task runs.
    tx: Option<broadcast::Sender<ComfyEvent>>,
    /// The last [`RECENT_EVENTS`] events, for late subscribers.
    recent: VecDeque<ComfyEvent>,
}

impl Hub {
    fn lock(&self) -> std::sync::MutexGuard<'_, HubState> {
        self.0.lock().unwrap_or_else(PoisonError::into_inner)
    }

    fn publish(&self, tx: &broadcast::Sender<ComfyEvent>, event: ComfyEvent) {
        let mut hub = self.lock();
        if hub.recent.len() == RECENT_EVENTS {
            hub.recent.pop_front();
        }
        hub.recent.push_back(event.clone());
        let _ = tx.send(event);
    }

    /// Whether every stream is gone; if so the task unregisters itself (under the lock, so a
    /// new `events()` call either joins this task or starts a new one).
    fn abandoned(&self, tx: &broadcast::Sender<ComfyEvent>) -> bool {
        let mut hub = self.lock();
        if tx.receiver_count() == 0 {
            hub.tx = None;
            true
        } else {
            false
        }
    }
}

/// Keeps one WebSocket open and forwards its events, reconnecting with capped, jittered backoff.
async fn ws_task(url: String, connect_timeout: Duration, hub: Hub, tx: broadcast::Sender<ComfyEvent>) {
    // The URL may carry a password (`ws://user:pass@host`); logs get it masked.
    let shown = crate::openclaw::redact_url(&url);
    let mut attempt = 0u32;
    loop {
        if hub.abandoned(&tx) {
            return;
        }
        match tokio::time::timeout(connect_timeout, tokio_tungstenite::connect_async(url.as_str())).await {
            Ok(Ok((mut socket, _))) => {
                attempt = 0;
                loop {
                    // Wake up now and then to notice that nobody listens any more.
                    match tokio::time::timeout(Duration::from_secs(1), socket.next()).await {
                        Err(_) => {
                            if hub.abandoned(&tx) {
                                let _ = socket.close(None).await;
                                return;
                            }
                        }
                        Ok(Some(Ok(Message::Text(text)))) => {
                            if let Some(event) = ComfyEvent::parse(text.as_str()) {
                                hub.publish(&tx, event);
                            }
                        }
                        Ok(Some(Ok(Message::Close(_)))) | Ok(Some(Err(_))) | Ok(None) => break,
                        Ok(Some(Ok(_))) => {}
                    }
                }
                tracing::debug!(url = %shown, "ComfyUI WebSocket closed; reconnecting");
            }
            Ok(Err(e)) => tracing::debug!(url = %shown, error = %e, "ComfyUI WebSocket connect failed"),
            Err(_) => tracing::debug!(url = %shown, "ComfyUI WebSocket connect timed out"),
        }
        tokio::time::sleep(WS_BACKOFF.delay(attempt)).await;
        attempt = attempt.saturating_add(1);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_recorded_history_entry() {
        let entry = json!({
            "prompt": [7, "p", {}, {"client_id": "c"}, ["3"]],
            "outputs": {"3": {"images": [{"filename": "gw_rec_00001_.png", "subfolder": "", "type": "output"}]}},
            "status": {"status_str": "success", "completed": true, "messages": []},
        });
        let parsed = HistoryEntry::parse(&entry).expect("entry");
        assert_eq!(parsed.status, JobStatus::Completed);
        assert_eq!(parsed.outputs.len(), 1);
        assert_eq!(parsed.outputs[0].filename, "gw_rec_00001_.png");
        assert_eq!(parsed.outputs[0].kind, "output");
        assert_eq!(parsed.outputs[0].node, "3");
    }

    #[test]
    fn interrupted_history_entry_is_interrupted() {
        let entry = json!({"outputs": {}, "status": {"status_str": "error", "completed": false, "messages": [
            ["execution_start", {"prompt_id": "p"}],
            ["execution_interrupted", {"prompt_id": "p", "node_id": "5", "node_type": "ImageBlur", "executed": []}],
        ]}});
        assert_eq!(HistoryEntry::parse(&entry).map(|e| e.status), Some(JobStatus::Interrupted));
    }

    #[test]
    fn malformed_frames_are_skipped_not_fatal() {
        for frame in ["", "null", "[]", r#"{"type":"progress","data":{"value":"x"}}"#, r#"{"type":"status"}"#] {
            assert_eq!(ComfyEvent::parse(frame), None, "{frame}");
        }
        let done = ComfyEvent::parse(r#"{"type":"executing","data":{"node":null,"prompt_id":"p"}}"#);
        assert_eq!(done, Some(ComfyEvent::Executing { prompt_id: "p".into(), node: None }));
        assert!(done.is_some_and(|e| e.is_terminal()));
    }

    #[test]
    fn base_url_trailing_slash_and_scheme() {
        let client = ComfyClient::new("http://127.0.0.1:8188/", "c").expect("client");
        assert_eq!(client.base_url(), "http://127.0.0.1:8188");
        assert_eq!(client.inner.ws_base, "ws://127.0.0.1:8188");
        assert!(matches!(ComfyClient::new("ftp://x", "c"), Err(ComfyError::InvalidUrl(_))));
        assert!(matches!(ComfyClient::new("not a url", "c"), Err(ComfyError::InvalidUrl(_))));
    }
}
