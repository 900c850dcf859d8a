//! Client for the ComfyUI-OpenClaw extension's HTTP endpoints (clawgate's `openclaw` worker mode).
//!
//! It speaks to a ComfyUI server with the ComfyUI-OpenClaw 1.0.7 extension the way that
//! extension's own chat connector does (`contracts/comfyui-openclaw.md` §2), plus the device-token
//! bridge submit (§1.3–1.4), with the connector's known bugs fixed (§3.10: schedules use
//! `schedule_id`/`cron_expr`/`interval_sec`, templates are read from the answer's top level) and
//! the habits of a real server taken into account (`contracts/comfy-real.md` §6, §8):
//!
//! - `GET /openclaw/jobs` answers `501 jobs_host_contract_unsupported` on ComfyUI hosts without
//!   the jobs API; [`OpenClawClient::jobs`] then falls back to the coarse `GET /api/prompt` queue
//!   count, and only on that answer (or `503 jobs_backend_unavailable`).
//! - `POST /openclaw/schedules/{id}/run` blocks the server for about 30 s before answering, so it
//!   gets [`SCHEDULE_RUN_TIMEOUT`] instead of the usual timeout.
//! - The approve reply carries the executed prompt's id at its top level (`approval.metadata` is
//!   still empty in it).
//! - `GET /openclaw/trace/{id}` is 404 for every prompt not submitted through the bridge.
//! - The bridge records an idempotency key *before* it tries the submit: after a failed submit
//!   (429, 5xx), the same key answers `deduped: true, prompt_id: null`, which
//!   [`BridgeSubmitted::prompt_id`] reports as `None` ("unknown": retry with a **new** key).
//!
//! Like the connector, it treats 200, 201 and 202 as success (204 is not) and turns every other
//! answer into [`OpenClawError::Refused`] with the server's `error` (else `message`) text. Every
//! request has a timeout, an answer that is not in the extension's shape is
//! [`OpenClawError::Malformed`], never a panic, and no token ever appears in `Debug` output or
//! an error message.

use std::fmt;
use std::time::Duration;

use bytes::{Bytes, BytesMut};
use reqwest::header::{HeaderMap, HeaderName, HeaderValue, RETRY_AFTER};
use reqwest::{Method, StatusCode, Url};
use serde::Deserialize;
use serde::de::{DeserializeOwned, Deserializer};
use serde_json::{Map, Value, json};

/// Scopes a bridge device asks for by default: what `bridge/submit` and job status need.
pub const DEFAULT_SCOPES: &[&str] = &["job:submit", "job:status"];

/// Default timeout of one request (the connector's).
pub const DEFAULT_TIMEOUT: Duration = Duration::from_secs(10);

/// Timeout of `POST /openclaw/schedules/{id}/run`, which a real server answers only after ~30 s.
pub const SCHEDULE_RUN_TIMEOUT: Duration = Duration::from_secs(45);

/// Largest answer body read; a bigger one is [`OpenClawError::Malformed`].
const MAX_BODY: usize = 8 * 1024 * 1024;

/// Longest error text kept from a refusal.
const MAX_ERROR_TEXT: usize = 500;

/// Most jobs a jobs v1 page may hold.
const MAX_JOBS: usize = 200;

/// Largest coarse queue count believed from `GET /api/prompt`.
const MAX_QUEUE_REMAINING: u64 = 1_000_000;

const ADMIN_TOKEN: &str = "x-openclaw-admin-token";
const OBS_TOKEN: &str = "x-openclaw-obs-token";
const DEVICE_ID: &str = "x-openclaw-device-id";
const DEVICE_TOKEN: &str = "x-openclaw-device-token";
const SCOPES: &str = "x-openclaw-scopes";
const TRACE_ID: &str = "x-openclaw-trace-id";

/// The jobs API codes after which the connector (and this client) fall back to the queue count.
const JOBS_UNSUPPORTED: (u16, &str) = (501, "jobs_host_contract_unsupported");
const JOBS_UNAVAILABLE: (u16, &str) = (503, "jobs_backend_unavailable");

/// A bridge device's credentials (`X-OpenClaw-Device-*` headers). `Debug` hides the token.
#[derive(Clone)]
pub struct DeviceCredentials {
    /// `X-OpenClaw-Device-Id`.
    pub id: String,
    /// `X-OpenClaw-Device-Token`: the static `OPENCLAW_BRIDGE_DEVICE_TOKEN` or a lifecycle token.
    pub token: String,
    /// Sent comma-joined as `X-OpenClaw-Scopes` (self-asserted on the static-token path); the
    /// header is left out when empty.
    pub scopes: Vec<String>,
}

impl DeviceCredentials {
    /// Credentials with [`DEFAULT_SCOPES`].
    pub fn new(id: impl Into<String>, token: impl Into<String>) -> Self {
        Self { id: id.into(), token: token.into(), scopes: DEFAULT_SCOPES.iter().map(|s| (*s).to_owned()).collect() }
    }
}

impl fmt::Debug for DeviceCredentials {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("DeviceCredentials")
            .field("id", &self.id)
            .field("token", &"<redacted>")
            .field("scopes", &self.scopes)
            .finish()
    }
}

/// Why an OpenClaw call failed. [`OpenClawError::is_transient`] says whether retrying (later, or
/// on another worker) can help.
#[derive(Debug, thiserror::Error)]
pub enum OpenClawError {
    /// Any answer other than 200, 201 or 202 (204 and redirects included).
    #[error("OpenClaw answered HTTP {status} on {path}: {error}")]
    Refused {
        /// The status code.
        status: u16,
        /// The request path.
        path: String,
        /// The body's `error`, else its `message`, else `HTTP <status>` (`HTTP <status>: <text>`
        /// for a non-JSON body), cut to a few hundred characters, tokens masked.
        error: String,
        /// `Retry-After` (seconds), else the body's `retry_after_sec`.
        retry_after: Option<Duration>,
    },
    /// The server could not be reached, or the request timed out.
    #[error("could not reach OpenClaw on {path}")]
    Transport {
        /// The request path.
        path: String,
        /// What reqwest saw.
        #[source]
        source: reqwest::Error,
    },
    /// A success answer not in the extension's shape (or too big).
    #[error("unexpected answer from OpenClaw on {path}: {reason}")]
    Malformed {
        /// The request path.
        path: String,
        /// What was wrong with it, naming the field.
        reason: String,
    },
    /// The client cannot be used as configured: a base URL that is not `http(s)`, a credential
    /// that cannot be sent as a header (never echoed), or a bridge call without device
    /// credentials.
    #[error("invalid OpenClaw client setting: {0}")]
    InvalidUrl(String),
}

impl OpenClawError {
    /// Whether retrying can succeed: transport failures, garbled answers, and refusals with 5xx,
    /// 408 or 429 are transient; other refusals and configuration errors are not.
    ///
    /// A transient failure of [`OpenClawClient::bridge_submit`] must be retried with a **new**
    /// idempotency key (the server recorded the old one before failing).
    pub fn is_transient(&self) -> bool {
        match self {
            Self::Transport { .. } | Self::Malformed { .. } => true,
            Self::Refused { status, .. } => *status >= 500 || *status == 408 || *status == 429,
            Self::InvalidUrl(_) => false,
        }
    }

    /// The HTTP status of a refusal.
    pub fn status(&self) -> Option<u16> {
        match self {
            Self::Refused { status, .. } => Some(*status),
            _ => None,
        }
    }
}

/// `GET /openclaw/health`.
#[derive(Debug, Clone, PartialEq)]
pub struct Health {
    /// `pack.version`, e.g. `1.0.7`.
    pub version: Option<String>,
    /// `stats.logs_processed` (0 when absent).
    pub logs_processed: u64,
    /// `stats.errors_captured` (0 when absent).
    pub errors_captured: u64,
    /// The whole answer.
    pub raw: Value,
}

/// One entry of `GET /openclaw/templates`.
#[derive(Debug, Clone, PartialEq, Deserialize)]
pub struct RemoteTemplate {
    /// The template id.
    pub id: String,
    /// Input names the manifest lists (the server does not enforce them).
    #[serde(default, deserialize_with = "null_as_default")]
    pub allowed_inputs: Vec<String>,
    /// Manifest defaults, merged under a request's inputs by the server.
    #[serde(default, deserialize_with = "null_as_default")]
    pub defaults: Map<String, Value>,
}

/// What `POST /openclaw/triggers/fire` did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum FireOutcome {
    /// 200: queued on ComfyUI (or, `deduped`, already queued earlier under the same trace id).
    Triggered {
        /// The ComfyUI prompt id.
        prompt_id: String,
        /// The trace id (the one sent).
        trace_id: String,
        /// A repeat of an earlier trace id: nothing new was queued.
        deduped: bool,
    },
    /// 202: waiting for an approval.
    Pending {
        /// `apr_<12 hex>`.
        approval_id: String,
        /// The trace id.
        trace_id: String,
        /// ISO 8601.
        expires_at: Option<String>,
    },
}

/// The bridge protocol version clawgate speaks (the extension's `BRIDGE_PROTOCOL_VERSION`).
pub const BRIDGE_PROTOCOL_VERSION: i64 = 1;

/// What `POST /bridge/handshake` answered.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum BridgeHandshake {
    /// 200: compatible.
    Compatible {
        /// The extension's bridge protocol version.
        server_version: Option<i64>,
    },
    /// 409: the versions do not fit (the extension's message says which way).
    Mismatch {
        /// The extension's message ("Client version 1 is too old. Minimum supported is 2.").
        message: String,
        /// The extension's bridge protocol version.
        server_version: Option<i64>,
        /// The oldest client version it accepts.
        min_supported: Option<i64>,
    },
    /// 404: no handshake endpoint (the bridge is off, or the extension predates it).
    Unavailable,
}

/// A `POST /openclaw/bridge/submit` request.
#[derive(Debug, Clone, Copy)]
pub struct BridgeSubmit<'a> {
    /// The template to render.
    pub template_id: &'a str,
    /// Its inputs (a JSON object, at most 64 KB).
    pub inputs: &'a Value,
    /// Deduplicates for 24 h. Never reuse a key after a failed attempt.
    pub idempotency_key: &'a str,
    /// Becomes ComfyUI's `client_id` (server default `bridge`).
    pub session_id: Option<&'a str>,
    /// Trace id (`^[A-Za-z0-9_-]{1,64}$`), sent in the body and as `X-OpenClaw-Trace-Id`.
    pub trace_id: Option<&'a str>,
}

/// A successful `POST /openclaw/bridge/submit`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BridgeSubmitted {
    /// The ComfyUI prompt id. `None` only on a dedupe with `prompt_id: null`: an earlier attempt
    /// with this key failed and nothing is queued; submit again with a **new** key.
    pub prompt_id: Option<String>,
    /// The server's trace id (a dedupe answers a freshly generated one).
    pub trace_id: Option<String>,
    /// The key was seen before.
    pub deduped: bool,
}

/// An approval request (`GET /openclaw/approvals[/{id}]`).
#[derive(Debug, Clone, PartialEq)]
pub struct RemoteApproval {
    /// `apr_<12 hex>`.
    pub approval_id: String,
    /// The template to run once approved.
    pub template_id: String,
    /// Its inputs.
    pub inputs: Value,
    /// `trigger`, `chatops`, `sidecar`, `scheduler` or `manual`.
    pub source: Option<String>,
    /// `pending`, `approved`, `rejected` or `expired`.
    pub status: String,
    /// ISO 8601.
    pub requested_at: Option<String>,
    /// ISO 8601.
    pub expires_at: Option<String>,
    /// The `actor` of the decision.
    pub decision_by: Option<String>,
    /// `metadata.executed_prompt_id` (else `metadata.prompt_id`, else `prompt_id`): set on a later
    /// `GET` once an approved request ran.
    pub executed_prompt_id: Option<String>,
    /// The whole object.
    pub raw: Value,
}

/// What `POST /openclaw/approvals/{id}/approve` did.
#[derive(Debug, Clone, PartialEq)]
pub struct ApproveOutcome {
    /// The template was queued.
    pub executed: bool,
    /// The queued prompt (the reply's top-level `prompt_id`).
    pub prompt_id: Option<String>,
    /// Its trace id.
    pub trace_id: Option<String>,
    /// Why execution failed, when it did.
    pub execution_error: Option<String>,
    /// The approval as updated (`None` if the reply lacks a usable one).
    pub approval: Option<RemoteApproval>,
}

/// One entry of `GET /openclaw/schedules`.
#[derive(Debug, Clone, PartialEq, Deserialize)]
pub struct RemoteSchedule {
    /// `sched_<12 hex>`.
    pub schedule_id: String,
    /// Display name.
    #[serde(default, deserialize_with = "null_as_default")]
    pub name: String,
    /// The template it fires.
    pub template_id: String,
    /// `cron` or `interval`.
    #[serde(default, deserialize_with = "null_as_default")]
    pub trigger_type: String,
    /// For `cron`.
    pub cron_expr: Option<String>,
    /// For `interval` (≥ 60).
    pub interval_sec: Option<u64>,
    /// Whether the background tick fires it.
    pub enabled: bool,
    /// E.g. `local`.
    pub timezone: Option<String>,
    /// The last run record.
    pub last_run_id: Option<String>,
    /// The whole object.
    #[serde(skip)]
    pub raw: Value,
}

/// `GET /openclaw/trace/{prompt_id}`.
#[derive(Debug, Clone, PartialEq)]
pub struct Trace {
    /// The prompt.
    pub prompt_id: String,
    /// Its trace id.
    pub trace_id: Option<String>,
    /// At most 50 events (a real server records only `queued`).
    pub events: Vec<TraceEvent>,
}

/// One trace event.
#[derive(Debug, Clone, PartialEq, Deserialize)]
pub struct TraceEvent {
    /// Unix seconds (0 when absent).
    #[serde(default, deserialize_with = "null_as_default")]
    pub ts: f64,
    /// `queued`, `completed`, `error`, `delivered`, …
    pub event: String,
    /// Redacted details (`{}` when absent).
    #[serde(default = "empty_object", deserialize_with = "null_as_empty_object")]
    pub meta: Value,
}

/// `GET /openclaw/jobs`, or its fallback.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum JobsView {
    /// The authoritative jobs v1 snapshot (one page).
    Jobs {
        /// The page's jobs.
        jobs: Vec<RemoteJob>,
        /// `pagination.total`.
        total: u64,
    },
    /// The host has no jobs API: ComfyUI's coarse `exec_info.queue_remaining` only.
    QueueOnly {
        /// Prompts queued or running.
        queue_remaining: u64,
    },
}

/// One job of a jobs v1 snapshot.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
pub struct RemoteJob {
    /// The ComfyUI prompt id.
    pub id: String,
    /// `pending`, `in_progress`, `completed`, `failed` or `cancelled`.
    pub status: String,
}

/// A ComfyUI server with the ComfyUI-OpenClaw extension. Cheap to clone (clones share the HTTP
/// connection pool). `Debug` shows no secret.
#[derive(Clone)]
pub struct OpenClawClient {
    http: reqwest::Client,
    /// Base URL without a trailing slash.
    base: String,
    /// The same, parsed.
    url: Url,
    /// The base URL carries user info: reqwest errors must not show it.
    hide_url: bool,
    admin: Option<Secret>,
    obs: Option<Secret>,
    device: Option<Device>,
    timeout: Duration,
}

/// A token, kept as text (to mask it in error texts) and as a sensitive header value.
#[derive(Clone)]
struct Secret {
    text: String,
    header: HeaderValue,
}

impl Secret {
    fn new(text: String, what: &str) -> Result<Self, OpenClawError> {
        let mut header = HeaderValue::from_str(&text)
            .map_err(|_| OpenClawError::InvalidUrl(format!("the {what} is not a valid HTTP header value")))?;
        header.set_sensitive(true);
        Ok(Self { text, header })
    }
}

#[derive(Clone)]
struct Device {
    id: HeaderValue,
    id_text: String,
    token: Secret,
    scopes: Option<HeaderValue>,
}

impl fmt::Debug for OpenClawClient {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let mut shown = self.url.clone();
        if self.hide_url {
            let _ = shown.set_username("");
            let _ = shown.set_password(None);
        }
        f.debug_struct("OpenClawClient")
            .field("base_url", &shown.as_str().trim_end_matches('/'))
            .field("admin_token", &self.admin.as_ref().map(|_| "<redacted>"))
            .field("obs_token", &self.obs.as_ref().map(|_| "<redacted>"))
            .field("device_id", &self.device.as_ref().map(|d| d.id_text.as_str()))
            .field("timeout", &self.timeout)
            .finish()
    }
}

/// A raw answer.
struct Answer {
    status: StatusCode,
    retry_after: Option<Duration>,
    body: Bytes,
}

impl OpenClawClient {
    /// A client for `base_url` (e.g. `http://127.0.0.1:8188`; a trailing slash is fine), sending
    /// `admin_token` as `X-OpenClaw-Admin-Token` on every request when given, and `device` on
    /// bridge calls.
    pub fn new(
        base_url: &str,
        admin_token: Option<String>,
        device: Option<DeviceCredentials>,
    ) -> Result<Self, OpenClawError> {
        let trimmed = base_url.trim().trim_end_matches('/');
        let url = Url::parse(trimmed)
            .map_err(|_| OpenClawError::InvalidUrl(format!("base URL {:?} is not a URL", redact_url(trimmed))))?;
        if !matches!(url.scheme(), "http" | "https") || url.cannot_be_a_base() || url.host_str().is_none() {
            return Err(OpenClawError::InvalidUrl(format!("base URL {:?} is not an http(s) URL", redact_url(trimmed))));
        }
        if url.query().is_some() || url.fragment().is_some() {
            return Err(OpenClawError::InvalidUrl(format!(
                "base URL {:?} has a query or fragment",
                redact_url(trimmed)
            )));
        }
        let hide_url = !url.username().is_empty() || url.password().is_some();
        let admin = admin_token.map(|t| Secret::new(t, "admin token")).transpose()?;
        let device = device
            .map(|d| {
                let id = HeaderValue::from_str(&d.id)
                    .map_err(|_| OpenClawError::InvalidUrl("the device id is not a valid HTTP header value".into()))?;
                let scopes = if d.scopes.is_empty() {
                    None
                } else {
                    Some(HeaderValue::from_str(&d.scopes.join(",")).map_err(|_| {
                        OpenClawError::InvalidUrl("the device scopes are not a valid HTTP header value".into())
                    })?)
                };
                Ok::<_, OpenClawError>(Device {
                    id,
                    id_text: d.id,
                    token: Secret::new(d.token, "device token")?,
                    scopes,
                })
            })
            .transpose()?;
        let http = reqwest::Client::builder()
            .user_agent(concat!("clawgate/", env!("CARGO_PKG_VERSION")))
            .connect_timeout(Duration::from_secs(5))
            // A redirect would carry the tokens (custom headers) to wherever it points.
            .redirect(reqwest::redirect::Policy::none())
            .build()
            .map_err(|source| OpenClawError::Transport { path: String::new(), source })?;
        Ok(Self { http, base: trimmed.to_owned(), url, hide_url, admin, obs: None, device, timeout: DEFAULT_TIMEOUT })
    }

    /// Sends `token` as `X-OpenClaw-Obs-Token` on `/openclaw/templates` (observability access:
    /// the admin token alone is not accepted there from a remote host). A token that cannot be a
    /// header value is dropped (with a warning).
    pub fn with_obs_token(mut self, token: Option<String>) -> Self {
        self.obs = token.and_then(|t| match Secret::new(t, "observability token") {
            Ok(secret) => Some(secret),
            Err(e) => {
                tracing::warn!(error = %e, "OpenClaw observability token ignored");
                None
            }
        });
        self
    }

    /// Timeout of each request (default [`DEFAULT_TIMEOUT`]; schedule runs get at least
    /// [`SCHEDULE_RUN_TIMEOUT`]).
    pub fn with_timeout(mut self, t: Duration) -> Self {
        self.timeout = t;
        self
    }

    /// The base URL, without a trailing slash.
    pub fn base_url(&self) -> &str {
        &self.base
    }

    /// Whether bridge device credentials are configured.
    pub fn has_device(&self) -> bool {
        self.device.is_some()
    }

    /// `GET /openclaw/health` (public).
    pub async fn health(&self) -> Result<Health, OpenClawError> {
        let url = self.endpoint(&["openclaw", "health"])?;
        let (path, body) = self.call(Method::GET, url, None, HeaderMap::new(), self.timeout).await?;
        parse_health(body).map_err(|reason| malformed(&path, reason))
    }

    /// `GET /openclaw/templates` (observability access): every runnable template.
    pub async fn templates(&self) -> Result<Vec<RemoteTemplate>, OpenClawError> {
        let url = self.endpoint(&["openclaw", "templates"])?;
        let mut headers = HeaderMap::new();
        if let Some(obs) = &self.obs {
            headers.insert(HeaderName::from_static(OBS_TOKEN), obs.header.clone());
        }
        let (path, body) = self.call(Method::GET, url, None, headers, self.timeout).await?;
        parse_templates(&body).map_err(|reason| malformed(&path, reason))
    }

    /// `POST /openclaw/triggers/fire` (admin): renders `template_id` with `inputs` and queues it,
    /// or (`require_approval`, or the server forces approvals) files an approval request. A
    /// repeated `trace_id` is deduplicated by the server.
    pub async fn fire(
        &self,
        template_id: &str,
        inputs: &Value,
        trace_id: &str,
        require_approval: bool,
    ) -> Result<FireOutcome, OpenClawError> {
        let url = self.endpoint(&["openclaw", "triggers", "fire"])?;
        let body = json!({
            "template_id": template_id,
            "inputs": inputs,
            "trace_id": trace_id,
            "require_approval": require_approval,
        });
        let path = url.path().to_owned();
        let answer = self.exchange(Method::POST, url, Some(&body), HeaderMap::new(), self.timeout).await?;
        let status = answer.status;
        let body = self.success_object(&path, answer)?;
        parse_fire(status, &body, trace_id).map_err(|reason| malformed(&path, reason))
    }

    /// `GET /openclaw/bridge/health` (no auth; 403 when the bridge is disabled).
    pub async fn bridge_health(&self) -> Result<Value, OpenClawError> {
        let url = self.endpoint(&["openclaw", "bridge", "health"])?;
        let (_, body) = self.call(Method::GET, url, None, HeaderMap::new(), self.timeout).await?;
        Ok(body)
    }

    /// `POST /bridge/handshake {"version": 1}` (no auth): is the extension's bridge protocol
    /// compatible with clawgate's ([`BRIDGE_PROTOCOL_VERSION`], N/N-1 policy)? A 409 is an
    /// answer ([`BridgeHandshake::Mismatch`]); a 404 means the extension has no handshake (the
    /// bridge is off, or the extension predates it).
    pub async fn bridge_handshake(&self) -> Result<BridgeHandshake, OpenClawError> {
        let url = self.endpoint(&["bridge", "handshake"])?;
        let path = url.path().to_owned();
        let body = serde_json::json!({"version": BRIDGE_PROTOCOL_VERSION});
        let answer = self.exchange(Method::POST, url, Some(&body), HeaderMap::new(), self.timeout).await?;
        let object = parse_object(&answer.body).ok();
        let field = |key: &str| object.as_ref().and_then(|o| o.pointer(key)).and_then(Value::as_i64);
        match answer.status.as_u16() {
            200 => Ok(BridgeHandshake::Compatible { server_version: field("/metadata/server_version") }),
            409 => Ok(BridgeHandshake::Mismatch {
                message: object
                    .as_ref()
                    .and_then(|o| o.get("message").or_else(|| o.get("error")))
                    .and_then(Value::as_str)
                    .map(|m| truncate(m.to_owned(), 300))
                    .unwrap_or_else(|| "incompatible bridge protocol".to_owned()),
                server_version: field("/metadata/server_version"),
                min_supported: field("/metadata/min_supported"),
            }),
            404 => Ok(BridgeHandshake::Unavailable),
            _ => Err(self.refused(&path, &answer)),
        }
    }

    /// `POST /openclaw/bridge/submit` with the device headers (scope `job:submit`). Fails with
    /// [`OpenClawError::InvalidUrl`] when the client has no device credentials.
    pub async fn bridge_submit(&self, req: &BridgeSubmit<'_>) -> Result<BridgeSubmitted, OpenClawError> {
        let device = self
            .device
            .as_ref()
            .ok_or_else(|| OpenClawError::InvalidUrl("no bridge device credentials configured".into()))?;
        let url = self.endpoint(&["openclaw", "bridge", "submit"])?;
        let mut headers = HeaderMap::new();
        headers.insert(HeaderName::from_static(DEVICE_ID), device.id.clone());
        headers.insert(HeaderName::from_static(DEVICE_TOKEN), device.token.header.clone());
        if let Some(scopes) = &device.scopes {
            headers.insert(HeaderName::from_static(SCOPES), scopes.clone());
        }
        let mut body = json!({
            "template_id": req.template_id,
            "inputs": req.inputs,
            "idempotency_key": req.idempotency_key,
        });
        if let Some(session) = req.session_id {
            body["session_id"] = json!(session);
        }
        if let Some(trace) = req.trace_id {
            body["trace_id"] = json!(trace);
            // The body carries it anyway; a value that cannot be a header is left to the body.
            if let Ok(value) = HeaderValue::from_str(trace) {
                headers.insert(HeaderName::from_static(TRACE_ID), value);
            }
        }
        let (path, body) = self.call(Method::POST, url, Some(&body), headers, self.timeout).await?;
        parse_bridge_submitted(&body).map_err(|reason| malformed(&path, reason))
    }

    /// `GET /openclaw/approvals[?status=]` (admin), newest first.
    pub async fn approvals(&self, status: Option<&str>) -> Result<Vec<RemoteApproval>, OpenClawError> {
        let mut url = self.endpoint(&["openclaw", "approvals"])?;
        if let Some(status) = status {
            url.query_pairs_mut().append_pair("status", status);
        }
        let (path, body) = self.call(Method::GET, url, None, HeaderMap::new(), self.timeout).await?;
        parse_approvals(&body).map_err(|reason| malformed(&path, reason))
    }

    /// `GET /openclaw/approvals/{id}` (admin); `None` when the server does not know it (a JSON
    /// 404; a 404 without JSON, i.e. no extension at all, is a refusal).
    pub async fn approval(&self, id: &str) -> Result<Option<RemoteApproval>, OpenClawError> {
        let url = self.endpoint(&["openclaw", "approvals", id])?;
        let Some((path, body)) = self.call_or_none(url).await? else { return Ok(None) };
        parse_approval_envelope(&body).map(Some).map_err(|reason| malformed(&path, reason))
    }

    /// `POST /openclaw/approvals/{id}/approve` (admin) with `auto_execute` and `actor` (which
    /// becomes `decision_by`).
    pub async fn approve(
        &self,
        id: &str,
        actor: Option<&str>,
        auto_execute: bool,
    ) -> Result<ApproveOutcome, OpenClawError> {
        let url = self.endpoint(&["openclaw", "approvals", id, "approve"])?;
        let mut body = json!({"auto_execute": auto_execute});
        if let Some(actor) = actor {
            body["actor"] = json!(actor);
        }
        let (path, body) = self.call(Method::POST, url, Some(&body), HeaderMap::new(), self.timeout).await?;
        parse_approve(&body).map_err(|reason| malformed(&path, reason))
    }

    /// `POST /openclaw/approvals/{id}/reject` (admin) with `actor` and `reason` (the server keeps
    /// only `actor`).
    pub async fn reject(
        &self,
        id: &str,
        actor: Option<&str>,
        reason: Option<&str>,
    ) -> Result<RemoteApproval, OpenClawError> {
        let url = self.endpoint(&["openclaw", "approvals", id, "reject"])?;
        let mut body = json!({});
        if let Some(actor) = actor {
            body["actor"] = json!(actor);
        }
        if let Some(reason) = reason {
            body["reason"] = json!(reason);
        }
        let (path, body) = self.call(Method::POST, url, Some(&body), HeaderMap::new(), self.timeout).await?;
        parse_approval_envelope(&body).map_err(|reason| malformed(&path, reason))
    }

    /// `GET /openclaw/schedules` (admin).
    pub async fn schedules(&self) -> Result<Vec<RemoteSchedule>, OpenClawError> {
        let url = self.endpoint(&["openclaw", "schedules"])?;
        let (path, body) = self.call(Method::GET, url, None, HeaderMap::new(), self.timeout).await?;
        parse_schedules(&body).map_err(|reason| malformed(&path, reason))
    }

    /// `POST /openclaw/schedules/{id}/run` (admin), with [`SCHEDULE_RUN_TIMEOUT`]: a real server
    /// blocks ~30 s before answering, then queues the prompt.
    pub async fn run_schedule(&self, id: &str) -> Result<(), OpenClawError> {
        let url = self.endpoint(&["openclaw", "schedules", id, "run"])?;
        let path = url.path().to_owned();
        let timeout = self.timeout.max(SCHEDULE_RUN_TIMEOUT);
        let answer = self.exchange(Method::POST, url, None, HeaderMap::new(), timeout).await?;
        if is_success(answer.status) { Ok(()) } else { Err(self.refused(&path, &answer)) }
    }

    /// `POST /openclaw/schedules/{id}/toggle {}` (admin): the schedule's new `enabled`.
    pub async fn toggle_schedule(&self, id: &str) -> Result<bool, OpenClawError> {
        let url = self.endpoint(&["openclaw", "schedules", id, "toggle"])?;
        let (path, body) = self.call(Method::POST, url, Some(&json!({})), HeaderMap::new(), self.timeout).await?;
        decode::<Toggled>(&body).map(|t| t.enabled).map_err(|reason| malformed(&path, reason))
    }

    /// `GET /openclaw/trace/{prompt_id}` (admin); `None` for a prompt without a trace (only bridge
    /// submits record one; traces do not survive a restart).
    pub async fn trace(&self, prompt_id: &str) -> Result<Option<Trace>, OpenClawError> {
        let url = self.endpoint(&["openclaw", "trace", prompt_id])?;
        let Some((path, body)) = self.call_or_none(url).await? else { return Ok(None) };
        parse_trace(&body, prompt_id).map(Some).map_err(|reason| malformed(&path, reason))
    }

    /// `GET /openclaw/jobs` (admin), validated as strictly as the connector does; on exactly
    /// `501 jobs_host_contract_unsupported` or `503 jobs_backend_unavailable`, the coarse
    /// `GET /api/prompt` queue count instead.
    pub async fn jobs(&self) -> Result<JobsView, OpenClawError> {
        let url = self.endpoint(&["openclaw", "jobs"])?;
        let path = url.path().to_owned();
        let answer = self.exchange(Method::GET, url, None, HeaderMap::new(), self.timeout).await?;
        if !is_success(answer.status) {
            let code = error_field(&answer.body);
            let status = answer.status.as_u16();
            let fallback =
                [JOBS_UNSUPPORTED, JOBS_UNAVAILABLE].iter().any(|(s, c)| *s == status && code.as_deref() == Some(*c));
            if !fallback {
                return Err(self.refused(&path, &answer));
            }
            tracing::debug!(status, "OpenClaw jobs API unavailable; falling back to the queue count");
            let url = self.endpoint(&["api", "prompt"])?;
            let (path, body) = self.call(Method::GET, url, None, HeaderMap::new(), self.timeout).await?;
            return parse_queue_remaining(&body)
                .map(|queue_remaining| JobsView::QueueOnly { queue_remaining })
                .map_err(|reason| malformed(&path, reason));
        }
        let body = parse_object(&answer.body).map_err(|reason| malformed(&path, reason))?;
        validate_jobs(&body)
            .map(|(jobs, total)| JobsView::Jobs { jobs, total })
            .map_err(|reason| malformed(&path, reason))
    }

    /// The base URL plus `segments`, each percent-encoded as one path segment.
    fn endpoint(&self, segments: &[&str]) -> Result<Url, OpenClawError> {
        let mut url = self.url.clone();
        {
            let mut path = url
                .path_segments_mut()
                .map_err(|()| OpenClawError::InvalidUrl("base URL cannot take a path".into()))?;
            path.pop_if_empty().extend(segments);
        }
        Ok(url)
    }

    /// Sends one request and reads its answer (at most [`MAX_BODY`] bytes).
    async fn exchange(
        &self,
        method: Method,
        url: Url,
        body: Option<&Value>,
        headers: HeaderMap,
        timeout: Duration,
    ) -> Result<Answer, OpenClawError> {
        let path = url.path().to_owned();
        let transport = |source: reqwest::Error| OpenClawError::Transport {
            path: path.clone(),
            source: if self.hide_url { source.without_url() } else { source },
        };
        let mut request = self.http.request(method, url).timeout(timeout).headers(headers);
        if let Some(admin) = &self.admin {
            request = request.header(HeaderName::from_static(ADMIN_TOKEN), admin.header.clone());
        }
        if let Some(body) = body {
            request = request.json(body);
        }
        let mut response = request.send().await.map_err(transport)?;
        let status = response.status();
        let retry_after = response.headers().get(RETRY_AFTER).and_then(|v| v.to_str().ok()).and_then(parse_seconds);
        let mut buf = BytesMut::new();
        while let Some(chunk) = response.chunk().await.map_err(transport)? {
            if buf.len() + chunk.len() > MAX_BODY {
                return Err(malformed(&path, format!("answer larger than {MAX_BODY} bytes")));
            }
            buf.extend_from_slice(&chunk);
        }
        Ok(Answer { status, retry_after, body: buf.freeze() })
    }

    /// One request whose success answer must be a JSON object: `(path, object)`.
    async fn call(
        &self,
        method: Method,
        url: Url,
        body: Option<&Value>,
        headers: HeaderMap,
        timeout: Duration,
    ) -> Result<(String, Value), OpenClawError> {
        let path = url.path().to_owned();
        let answer = self.exchange(method, url, body, headers, timeout).await?;
        let object = self.success_object(&path, answer)?;
        Ok((path, object))
    }

    /// A `GET` where a JSON `404` means "no such thing".
    async fn call_or_none(&self, url: Url) -> Result<Option<(String, Value)>, OpenClawError> {
        let path = url.path().to_owned();
        let answer = self.exchange(Method::GET, url, None, HeaderMap::new(), self.timeout).await?;
        if answer.status == StatusCode::NOT_FOUND && parse_object(&answer.body).is_ok() {
            return Ok(None);
        }
        let object = self.success_object(&path, answer)?;
        Ok(Some((path, object)))
    }

    fn success_object(&self, path: &str, answer: Answer) -> Result<Value, OpenClawError> {
        if !is_success(answer.status) {
            return Err(self.refused(path, &answer));
        }
        parse_object(&answer.body).map_err(|reason| malformed(path, reason))
    }

    fn refused(&self, path: &str, answer: &Answer) -> OpenClawError {
        let status = answer.status.as_u16();
        let mut error = error_text(status, &answer.body);
        let secrets = self
            .admin
            .iter()
            .chain(self.obs.iter())
            .chain(self.device.iter().map(|d| &d.token))
            .map(|s| s.text.as_str());
        for secret in secrets {
            if !secret.is_empty() && error.contains(secret) {
                error = error.replace(secret, "<redacted>");
            }
        }
        let retry_after = answer.retry_after.or_else(|| {
            let body: Value = serde_json::from_slice(&answer.body).ok()?;
            match body.get("retry_after_sec")? {
                Value::Number(n) => seconds(n.as_f64()?),
                _ => None,
            }
        });
        OpenClawError::Refused { status, path: path.to_owned(), error, retry_after }
    }
}

fn is_success(status: StatusCode) -> bool {
    matches!(status.as_u16(), 200..=202)
}

fn malformed(path: &str, reason: String) -> OpenClawError {
    OpenClawError::Malformed { path: path.to_owned(), reason }
}

/// The URL with any password masked, for messages.
pub(crate) fn redact_url(text: &str) -> String {
    match Url::parse(text) {
        Ok(mut url) if url.password().is_some() => {
            let _ = url.set_password(Some("***"));
            url.to_string()
        }
        _ => text.to_owned(),
    }
}

/// `Retry-After` in (possibly fractional) seconds; HTTP dates are ignored.
fn parse_seconds(text: &str) -> Option<Duration> {
    let text = text.trim();
    match text.parse::<u64>() {
        Ok(secs) => Some(Duration::from_secs(secs)),
        Err(_) => seconds(text.parse().ok()?),
    }
}

fn seconds(secs: f64) -> Option<Duration> {
    if secs.is_finite() && secs >= 0.0 { Duration::try_from_secs_f64(secs).ok() } else { None }
}

/// Cuts `text` to at most `max` bytes on a character boundary.
fn truncate(mut text: String, max: usize) -> String {
    if text.len() > max {
        let mut end = max;
        while !text.is_char_boundary(end) {
            end -= 1;
        }
        text.truncate(end);
        text.push('…');
    }
    text
}

/// A JSON value the way Python's `x or y` sees it: present and not falsy.
fn truthy(value: &Value) -> Option<String> {
    match value {
        Value::Null | Value::Bool(false) => None,
        Value::String(s) if s.is_empty() => None,
        Value::String(s) => Some(s.clone()),
        Value::Array(a) if a.is_empty() => None,
        Value::Object(o) if o.is_empty() => None,
        Value::Number(n) if n.as_f64() == Some(0.0) => None,
        other => Some(other.to_string()),
    }
}

/// The connector wrapper's error text: `error`, else `message`, else `HTTP <status>`, or
/// `HTTP <status>: <text>` for a body that is not a JSON object.
fn error_text(status: u16, body: &[u8]) -> String {
    let text = match serde_json::from_slice::<Value>(body) {
        Ok(Value::Object(map)) => map
            .get("error")
            .and_then(truthy)
            .or_else(|| map.get("message").and_then(truthy))
            .unwrap_or_else(|| format!("HTTP {status}")),
        _ => {
            let text = String::from_utf8_lossy(&body[..body.len().min(MAX_ERROR_TEXT * 2)]);
            let text = text.trim();
            if text.is_empty() { format!("HTTP {status}") } else { format!("HTTP {status}: {text}") }
        }
    };
    let text: String = text.chars().map(|c| if c.is_control() { ' ' } else { c }).collect();
    truncate(text, MAX_ERROR_TEXT)
}

/// The body's `error` string, if any (for the jobs fallback codes).
fn error_field(body: &[u8]) -> Option<String> {
    match serde_json::from_slice::<Value>(body).ok()? {
        Value::Object(mut map) => match map.remove("error")? {
            Value::String(s) => Some(s),
            _ => None,
        },
        _ => None,
    }
}

/// The answer as a JSON object (every success answer of the extension is one).
fn parse_object(body: &[u8]) -> Result<Value, String> {
    match serde_json::from_slice::<Value>(body) {
        Ok(value @ Value::Object(_)) => Ok(value),
        Ok(_) => Err("not a JSON object".into()),
        Err(e) => Err(format!("not JSON: {e}")),
    }
}

/// Reads an answer as `T`. The reason names the field that does not fit, as a path from the top
/// (`stats.logs_processed: invalid type…`, `templates[0].id: missing`).
fn decode<T: DeserializeOwned>(value: &Value) -> Result<T, String> {
    decode_at(value, "")
}

/// [`decode`] for the part of an answer found at `at` (`approvals[2]`).
fn decode_at<T: DeserializeOwned>(value: &Value, at: &str) -> Result<T, String> {
    serde_path_to_error::deserialize(value).map_err(|e| {
        let path = match e.path().to_string() {
            root if root == "." => at.to_owned(),
            path if at.is_empty() => path,
            path => format!("{at}.{path}"),
        };
        let inner = e.into_inner().to_string();
        let missing = inner.strip_prefix("missing field `").and_then(|f| f.strip_suffix('`'));
        match (path.is_empty(), missing) {
            (true, Some(field)) => format!("{field}: missing"),
            (false, Some(field)) => format!("{path}.{field}: missing"),
            (true, None) => inner,
            (false, None) => format!("{path}: {inner}"),
        }
    })
}

/// `null` reads as the type's default (the extension writes `null` for "none").
fn null_as_default<'de, D: Deserializer<'de>, T: Deserialize<'de> + Default>(d: D) -> Result<T, D::Error> {
    Ok(Option::<T>::deserialize(d)?.unwrap_or_default())
}

/// A missing or `null` JSON value reads as `{}`.
fn null_as_empty_object<'de, D: Deserializer<'de>>(d: D) -> Result<Value, D::Error> {
    Ok(Option::<Value>::deserialize(d)?.filter(|v| !v.is_null()).unwrap_or_else(|| json!({})))
}

fn empty_object() -> Value {
    json!({})
}

/// `GET /openclaw/health`: only `pack.version` and two counters are read.
#[derive(Deserialize)]
struct HealthReply {
    pack: Option<HealthPack>,
    stats: Option<HealthStats>,
}

#[derive(Deserialize)]
struct HealthPack {
    version: Option<String>,
}

#[derive(Deserialize)]
struct HealthStats {
    logs_processed: Option<u64>,
    errors_captured: Option<u64>,
}

fn parse_health(body: Value) -> Result<Health, String> {
    let reply: HealthReply = decode(&body)?;
    let stats = reply.stats.map_or((0, 0), |s| (s.logs_processed.unwrap_or(0), s.errors_captured.unwrap_or(0)));
    Ok(Health {
        version: reply.pack.and_then(|p| p.version),
        logs_processed: stats.0,
        errors_captured: stats.1,
        raw: body,
    })
}

#[derive(Deserialize)]
struct TemplatesReply {
    templates: Vec<RemoteTemplate>,
}

fn parse_templates(body: &Value) -> Result<Vec<RemoteTemplate>, String> {
    decode::<TemplatesReply>(body).map(|r| r.templates)
}

/// `POST /openclaw/triggers/fire`: 200 `{triggered, prompt_id, trace_id, deduped}` or 202
/// `{pending, approval_id, trace_id, expires_at}`.
#[derive(Deserialize)]
struct FireReply {
    triggered: Option<bool>,
    pending: Option<bool>,
    prompt_id: Option<String>,
    approval_id: Option<String>,
    trace_id: Option<String>,
    expires_at: Option<String>,
    deduped: Option<bool>,
}

fn parse_fire(status: StatusCode, body: &Value, sent_trace: &str) -> Result<FireOutcome, String> {
    let reply: FireReply = decode(body)?;
    let trace_id = reply.trace_id.unwrap_or_else(|| sent_trace.to_owned());
    if status == StatusCode::ACCEPTED || reply.pending == Some(true) {
        return Ok(FireOutcome::Pending {
            approval_id: reply.approval_id.ok_or("approval_id: missing")?,
            trace_id,
            expires_at: reply.expires_at,
        });
    }
    if reply.triggered == Some(false) {
        return Err("triggered: false".into());
    }
    Ok(FireOutcome::Triggered {
        prompt_id: reply.prompt_id.ok_or("prompt_id: missing")?,
        trace_id,
        deduped: reply.deduped.unwrap_or(false),
    })
}

/// `POST /openclaw/bridge/submit`.
#[derive(Deserialize)]
struct BridgeReply {
    ok: Option<bool>,
    deduped: Option<bool>,
    prompt_id: Option<String>,
    trace_id: Option<String>,
}

fn parse_bridge_submitted(body: &Value) -> Result<BridgeSubmitted, String> {
    let reply: BridgeReply = decode(body)?;
    if reply.ok == Some(false) {
        return Err("ok: false".into());
    }
    let deduped = reply.deduped.unwrap_or(false);
    if reply.prompt_id.is_none() && !deduped {
        return Err("prompt_id: missing on a submit that was not deduplicated".into());
    }
    Ok(BridgeSubmitted { prompt_id: reply.prompt_id, trace_id: reply.trace_id, deduped })
}

/// One approval as the extension sends it.
#[derive(Deserialize)]
struct ApprovalWire {
    approval_id: String,
    template_id: String,
    #[serde(default = "empty_object", deserialize_with = "null_as_empty_object")]
    inputs: Value,
    source: Option<String>,
    status: String,
    requested_at: Option<String>,
    expires_at: Option<String>,
    decision_by: Option<String>,
    metadata: Option<ApprovalMetadata>,
    prompt_id: Option<String>,
}

#[derive(Deserialize)]
struct ApprovalMetadata {
    executed_prompt_id: Option<String>,
    prompt_id: Option<String>,
}

impl ApprovalWire {
    fn into_approval(self, raw: Value) -> RemoteApproval {
        let metadata = self.metadata.and_then(|m| m.executed_prompt_id.or(m.prompt_id));
        RemoteApproval {
            approval_id: self.approval_id,
            template_id: self.template_id,
            inputs: self.inputs,
            source: self.source,
            status: self.status,
            requested_at: self.requested_at,
            expires_at: self.expires_at,
            decision_by: self.decision_by,
            executed_prompt_id: metadata.or(self.prompt_id),
            raw,
        }
    }
}

/// `{approval: {…}}` (`GET /openclaw/approvals/{id}`, the reject reply).
#[derive(Deserialize)]
struct ApprovalEnvelope {
    approval: Value,
}

fn parse_approval_envelope(body: &Value) -> Result<RemoteApproval, String> {
    let envelope: ApprovalEnvelope = decode(body)?;
    let wire: ApprovalWire = decode_at(&envelope.approval, "approval")?;
    Ok(wire.into_approval(envelope.approval))
}

#[derive(Deserialize)]
struct ApprovalsReply {
    approvals: Vec<Value>,
}

fn parse_approvals(body: &Value) -> Result<Vec<RemoteApproval>, String> {
    let reply: ApprovalsReply = decode(body)?;
    reply
        .approvals
        .into_iter()
        .enumerate()
        .map(|(i, raw)| {
            let wire: ApprovalWire = decode_at(&raw, &format!("approvals[{i}]"))?;
            Ok(wire.into_approval(raw))
        })
        .collect()
}

/// `POST /openclaw/approvals/{id}/approve`.
#[derive(Deserialize)]
struct ApproveReply {
    approved: Option<bool>,
    approval: Option<Value>,
    executed: Option<bool>,
    prompt_id: Option<String>,
    trace_id: Option<String>,
    execution_error: Option<String>,
}

fn parse_approve(body: &Value) -> Result<ApproveOutcome, String> {
    let reply: ApproveReply = decode(body)?;
    if reply.approved == Some(false) {
        return Err("approved: false".into());
    }
    // The approval is informative; the execution fields are what matters, so an odd one is
    // dropped rather than failing a decision the server already took.
    let approval =
        reply.approval.filter(|a| !a.is_null()).and_then(|raw| match decode_at::<ApprovalWire>(&raw, "approval") {
            Ok(wire) => Some(wire.into_approval(raw)),
            Err(reason) => {
                tracing::debug!(%reason, "OpenClaw approve reply carries an unusable approval");
                None
            }
        });
    let prompt_id = reply.prompt_id.or_else(|| approval.as_ref().and_then(|a| a.executed_prompt_id.clone()));
    Ok(ApproveOutcome {
        executed: reply.executed.unwrap_or(false),
        prompt_id,
        trace_id: reply.trace_id,
        execution_error: reply.execution_error,
        approval,
    })
}

#[derive(Deserialize)]
struct SchedulesReply {
    schedules: Vec<Value>,
}

fn parse_schedules(body: &Value) -> Result<Vec<RemoteSchedule>, String> {
    let reply: SchedulesReply = decode(body)?;
    reply
        .schedules
        .into_iter()
        .enumerate()
        .map(|(i, raw)| {
            let schedule: RemoteSchedule = decode_at(&raw, &format!("schedules[{i}]"))?;
            Ok(RemoteSchedule { raw, ..schedule })
        })
        .collect()
}

/// `POST /openclaw/schedules/{id}/toggle`.
#[derive(Deserialize)]
struct Toggled {
    enabled: bool,
}

#[derive(Deserialize)]
struct TraceReply {
    trace: TraceWire,
}

#[derive(Deserialize)]
struct TraceWire {
    prompt_id: Option<String>,
    trace_id: Option<String>,
    #[serde(default, deserialize_with = "null_as_default")]
    events: Vec<TraceEvent>,
}

fn parse_trace(body: &Value, requested: &str) -> Result<Trace, String> {
    let TraceReply { trace } = decode(body)?;
    Ok(Trace {
        prompt_id: trace.prompt_id.unwrap_or_else(|| requested.to_owned()),
        trace_id: trace.trace_id,
        events: trace.events,
    })
}

/// `GET /api/prompt`.
#[derive(Deserialize)]
struct PromptInfo {
    exec_info: ExecInfo,
}

#[derive(Deserialize)]
struct ExecInfo {
    queue_remaining: u64,
}

/// `exec_info.queue_remaining` of `GET /api/prompt`: an integer in `0..=1_000_000`.
fn parse_queue_remaining(body: &Value) -> Result<u64, String> {
    let info: PromptInfo = decode(body)?;
    match info.exec_info.queue_remaining {
        n if n <= MAX_QUEUE_REMAINING => Ok(n),
        _ => Err("exec_info.queue_remaining: out of range".into()),
    }
}

fn is_job_id(id: &str) -> bool {
    let bytes = id.as_bytes();
    matches!(bytes.first(), Some(b) if b.is_ascii_alphanumeric())
        && bytes.len() <= 128
        && bytes[1..].iter().all(|b| b.is_ascii_alphanumeric() || matches!(b, b'.' | b'_' | b':' | b'-'))
}

const JOB_STATUSES: [&str; 5] = ["pending", "in_progress", "completed", "failed", "cancelled"];

/// The jobs v1 envelope. `source` and `scan` must be objects; their contents are not read.
#[derive(Deserialize)]
struct JobsReply {
    ok: Option<bool>,
    contract_version: Option<u64>,
    jobs: Vec<RemoteJob>,
    pagination: Option<Pagination>,
    source: Option<Map<String, Value>>,
    scan: Option<Map<String, Value>>,
}

#[derive(Deserialize)]
struct Pagination {
    offset: i64,
    limit: i64,
    total: i64,
    has_more: bool,
    warnings: Vec<Value>,
}

/// `value` when within `lo..=hi`.
fn within(value: i64, field: &str, lo: i64, hi: i64) -> Result<i64, String> {
    if (lo..=hi).contains(&value) { Ok(value) } else { Err(format!("{field}: {value} outside {lo}..={hi}")) }
}

/// The jobs v1 envelope, checked like the connector's `jobs_summary.py`: the page's jobs and
/// `pagination.total`, or the first violated field.
fn validate_jobs(body: &Value) -> Result<(Vec<RemoteJob>, u64), String> {
    let reply: JobsReply = decode(body)?;
    if reply.ok != Some(true) {
        return Err("ok: not true".into());
    }
    if reply.contract_version != Some(1) {
        return Err("contract_version: not 1".into());
    }
    let jobs = reply.jobs;
    if jobs.len() > MAX_JOBS {
        return Err(format!("jobs: {} entries, more than {MAX_JOBS}", jobs.len()));
    }
    let pagination = reply.pagination.ok_or("pagination: not an object")?;
    reply.source.ok_or("source: not an object")?;
    reply.scan.ok_or("scan: not an object")?;
    for (i, job) in jobs.iter().enumerate() {
        if !is_job_id(&job.id) {
            return Err(format!("jobs[{i}].id: not a valid job id"));
        }
        if !JOB_STATUSES.contains(&job.status.as_str()) {
            return Err(format!("jobs[{i}].status: unknown status {:?}", job.status));
        }
    }
    let offset = within(pagination.offset, "pagination.offset", 0, 10_000)?;
    let limit = within(pagination.limit, "pagination.limit", 1, 200)?;
    let total = within(pagination.total, "pagination.total", 0, 10_000)?;
    if pagination.warnings.len() > 2 {
        return Err("pagination.warnings: more than 2 entries".into());
    }
    // At most 200 entries, checked above.
    let returned = jobs.len() as i64;
    if returned > limit {
        return Err(format!("pagination.limit: {returned} jobs returned, limit {limit}"));
    }
    if offset + returned > total {
        return Err(format!("pagination.total: offset {offset} + {returned} returned exceeds total {total}"));
    }
    if pagination.has_more != (offset + returned < total) {
        return Err("pagination.has_more: inconsistent with offset, returned and total".into());
    }
    Ok((jobs, u64::try_from(total).unwrap_or_default()))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn obj(value: Value) -> Value {
        assert!(value.is_object(), "not an object: {value}");
        value
    }

    /// `b_graft_jobs` of comfy-real.md.
    fn recorded_jobs() -> Value {
        json!({"ok": true, "contract_version": 1, "jobs": [
            {"id": "9b7cf79c-2dd4-4733-90e8-626fe06b3275", "status": "in_progress", "priority": 1, "outputs_count": 0},
            {"id": "a373e759-09af-41ee-a0a0-89c9b7b3dd6b", "status": "pending", "priority": 2, "outputs_count": 0},
            {"id": "791dfbd2-e6c2-4f16-8715-ca90bcdd1551", "status": "completed", "priority": 0,
             "execution_start_time": 1_795_311_936_239_u64, "execution_end_time": 1_795_311_936_262_u64, "outputs_count": 1}],
            "pagination": {"limit": 50, "offset": 0, "warnings": [], "total": 3, "has_more": false},
            "source": {"adapter": "comfy_execution.jobs", "authority": "in_process"},
            "scan": {"window": 10000, "examined": 3, "excluded": 0, "malformed": 0, "truncated": false}})
    }

    #[test]
    fn recorded_jobs_envelope_is_valid() {
        let (jobs, total) = validate_jobs(&obj(recorded_jobs())).expect("valid");
        assert_eq!(total, 3);
        assert_eq!(jobs.len(), 3);
        assert_eq!(
            jobs[0],
            RemoteJob { id: "9b7cf79c-2dd4-4733-90e8-626fe06b3275".into(), status: "in_progress".into() }
        );
        let empty = json!({"ok": true, "contract_version": 1, "jobs": [],
            "pagination": {"limit": 50, "offset": 0, "warnings": [], "total": 0, "has_more": false},
            "source": {}, "scan": {}});
        assert_eq!(validate_jobs(&obj(empty)), Ok((vec![], 0)));
        // b_graft_jobs_sort: a later page.
        let page = json!({"ok": true, "contract_version": 1, "jobs": [
            {"id": "a373e759", "status": "pending"}, {"id": "791dfbd2", "status": "completed"}],
            "pagination": {"limit": 2, "offset": 1, "warnings": [], "total": 3, "has_more": false},
            "source": {}, "scan": {}});
        assert_eq!(validate_jobs(&obj(page)).map(|(j, t)| (j.len(), t)), Ok((2, 3)));
    }

    #[test]
    fn jobs_envelope_violations_name_the_field() {
        type Mutation = Box<dyn Fn(&mut Value)>;
        let cases: Vec<(&str, Mutation)> = vec![
            ("ok", Box::new(|v| v["ok"] = json!(1))),
            ("contract_version", Box::new(|v| v["contract_version"] = json!(true))),
            ("contract_version", Box::new(|v| v["contract_version"] = json!(1.0))),
            ("contract_version", Box::new(|v| v["contract_version"] = json!(2))),
            ("jobs", Box::new(|v| v["jobs"] = json!({}))),
            ("pagination", Box::new(|v| v["pagination"] = json!([]))),
            (
                "source",
                Box::new(|v| {
                    v.as_object_mut().map(|m| m.remove("source"));
                }),
            ),
            ("scan", Box::new(|v| v["scan"] = json!(null))),
            ("jobs[1].id", Box::new(|v| v["jobs"][1]["id"] = json!("-leading-dash"))),
            ("jobs[1].id", Box::new(|v| v["jobs"][1]["id"] = json!("has space"))),
            ("jobs[1].id", Box::new(|v| v["jobs"][1]["id"] = json!("x".repeat(129)))),
            ("jobs[1].id", Box::new(|v| v["jobs"][1]["id"] = json!(7))),
            ("jobs[2].status", Box::new(|v| v["jobs"][2]["status"] = json!("done"))),
            ("pagination.offset", Box::new(|v| v["pagination"]["offset"] = json!(-1))),
            ("pagination.offset", Box::new(|v| v["pagination"]["offset"] = json!(10_001))),
            ("pagination.limit", Box::new(|v| v["pagination"]["limit"] = json!(0))),
            ("pagination.limit", Box::new(|v| v["pagination"]["limit"] = json!(201))),
            ("pagination.limit", Box::new(|v| v["pagination"]["limit"] = json!(true))),
            ("pagination.limit", Box::new(|v| v["pagination"]["limit"] = json!(2))),
            ("pagination.total", Box::new(|v| v["pagination"]["total"] = json!(false))),
            ("pagination.total", Box::new(|v| v["pagination"]["total"] = json!(2))),
            ("pagination.total", Box::new(|v| v["pagination"]["total"] = json!(3.0))),
            ("pagination.has_more", Box::new(|v| v["pagination"]["has_more"] = json!(true))),
            ("pagination.has_more", Box::new(|v| v["pagination"]["has_more"] = json!(0))),
            ("pagination.warnings", Box::new(|v| v["pagination"]["warnings"] = json!(["a", "b", "c"]))),
            ("pagination.warnings", Box::new(|v| v["pagination"]["warnings"] = json!(null))),
        ];
        for (field, mutate) in cases {
            let mut body = recorded_jobs();
            mutate(&mut body);
            let reason = validate_jobs(&obj(body.clone())).expect_err(field);
            assert!(reason.starts_with(field), "{field}: {reason} for {body}");
        }
        // has_more must be true when more remain.
        let mut body = recorded_jobs();
        body["pagination"]["total"] = json!(4);
        assert!(validate_jobs(&obj(body.clone())).unwrap_err().starts_with("pagination.has_more"));
        body["pagination"]["has_more"] = json!(true);
        assert_eq!(validate_jobs(&obj(body)).map(|(_, t)| t), Ok(4));
        // More than 200 jobs.
        let mut body = recorded_jobs();
        body["jobs"] = Value::Array(vec![json!({"id": "a", "status": "pending"}); 201]);
        assert!(validate_jobs(&obj(body)).unwrap_err().starts_with("jobs:"));
    }

    #[test]
    fn job_ids() {
        for ok in ["a", "9b7cf79c-2dd4-4733-90e8-626fe06b3275", "A.b_c:d-e", &"x".repeat(128)] {
            assert!(is_job_id(ok), "{ok}");
        }
        for bad in ["", ".a", "_a", "a/b", "a b", "é", &"x".repeat(129)] {
            assert!(!is_job_id(bad), "{bad}");
        }
    }

    #[test]
    fn queue_remaining_is_bounded() {
        assert_eq!(parse_queue_remaining(&obj(json!({"exec_info": {"queue_remaining": 0}}))), Ok(0));
        assert_eq!(parse_queue_remaining(&obj(json!({"exec_info": {"queue_remaining": 3}}))), Ok(3));
        for bad in [
            json!({}),
            json!({"exec_info": []}),
            json!({"exec_info": {"queue_remaining": true}}),
            json!({"exec_info": {"queue_remaining": -1}}),
            json!({"exec_info": {"queue_remaining": 1.5}}),
            json!({"exec_info": {"queue_remaining": 1_000_001}}),
        ] {
            assert!(parse_queue_remaining(&obj(bad.clone())).is_err(), "{bad}");
        }
    }

    #[test]
    fn error_text_like_the_connector() {
        assert_eq!(error_text(403, br#"{"error": "Invalid admin token."}"#), "Invalid admin token.");
        assert_eq!(
            error_text(400, br#"{"ok": false, "message": "Client version 2 is newer"}"#),
            "Client version 2 is newer"
        );
        assert_eq!(error_text(400, br#"{"error": "", "message": "m"}"#), "m");
        assert_eq!(error_text(404, br#"{"ok": false}"#), "HTTP 404");
        assert_eq!(error_text(404, b""), "HTTP 404");
        assert_eq!(error_text(405, b"405: Method Not Allowed"), "HTTP 405: 405: Method Not Allowed");
        assert_eq!(error_text(500, br#"{"error": {"code": 1}}"#), r#"{"code":1}"#);
        assert_eq!(error_text(502, b"line1\nline2"), "HTTP 502: line1 line2");
        let long = error_text(500, format!(r#"{{"error": "{}"}}"#, "é".repeat(400)).as_bytes());
        assert!(long.len() <= MAX_ERROR_TEXT + '…'.len_utf8(), "{}", long.len());
        assert!(long.ends_with('…'));
        assert_eq!(error_text(500, &[0xff, 0xfe]), "HTTP 500: \u{fffd}\u{fffd}");
    }

    #[test]
    fn retry_after_seconds() {
        assert_eq!(parse_seconds("2"), Some(Duration::from_secs(2)));
        assert_eq!(parse_seconds(" 1.5 "), Some(Duration::from_millis(1500)));
        assert_eq!(parse_seconds("-1"), None);
        assert_eq!(parse_seconds("NaN"), None);
        assert_eq!(parse_seconds("1e400"), None);
        assert_eq!(parse_seconds("Wed, 21 Oct 2015 07:28:00 GMT"), None);
    }

    #[test]
    fn transient_and_status() {
        let refused =
            |status| OpenClawError::Refused { status, path: "/p".into(), error: "e".into(), retry_after: None };
        for status in [500, 501, 503, 408, 429] {
            assert!(refused(status).is_transient(), "{status}");
        }
        for status in [204, 302, 400, 401, 403, 404, 409] {
            assert!(!refused(status).is_transient(), "{status}");
        }
        assert_eq!(refused(403).status(), Some(403));
        assert!(OpenClawError::Malformed { path: "/p".into(), reason: "r".into() }.is_transient());
        assert!(!OpenClawError::InvalidUrl("x".into()).is_transient());
        assert_eq!(OpenClawError::InvalidUrl("x".into()).status(), None);
        assert_eq!(refused(403).to_string(), "OpenClaw answered HTTP 403 on /p: e");
    }

    #[test]
    fn parses_recorded_health() {
        let body = json!({"ok": true, "pack": {"name": "ComfyUI-OpenClaw", "version": "1.0.7", "dependencies": {"aiohttp": true, "watchdog": false}},
            "uptime_sec": 7.085, "stats": {"errors_captured": 2, "logs_processed": 5, "executors": {}, "observability": {}},
            "access_policy": {"observability": "loopback_only", "token_configured": false}, "runtime_profile": "minimal"});
        let health = parse_health(obj(body.clone())).expect("health");
        assert_eq!(health.version.as_deref(), Some("1.0.7"));
        assert_eq!((health.logs_processed, health.errors_captured), (5, 2));
        assert_eq!(health.raw, body);
        // The minimal fake shape.
        let minimal = parse_health(obj(json!({"ok": true, "stats": {"logs_processed": 0, "errors_captured": 0}})))
            .expect("minimal");
        assert_eq!(minimal.version, None);
        assert!(
            parse_health(obj(json!({"stats": {"logs_processed": "0"}})))
                .unwrap_err()
                .starts_with("stats.logs_processed")
        );
        assert!(parse_health(obj(json!({"stats": []}))).is_err());
    }

    #[test]
    fn parses_recorded_templates() {
        let body = json!({"ok": true, "templates": [
            {"id": "gw_slow", "allowed_inputs": ["size", "color"], "defaults": {"size": 512, "color": 3_355_443}},
            {"id": "gw_solid", "allowed_inputs": ["width", "height", "color", "prefix"], "defaults": {"width": 256, "height": 256, "color": 16_711_680, "prefix": "gw_tmpl"}},
            {"id": "bare"}], "count": 3});
        let templates = parse_templates(&obj(body)).expect("templates");
        assert_eq!(templates.len(), 3);
        assert_eq!(templates[0].id, "gw_slow");
        assert_eq!(templates[0].allowed_inputs, ["size", "color"]);
        assert_eq!(templates[1].defaults.get("prefix"), Some(&json!("gw_tmpl")));
        assert!(templates[2].allowed_inputs.is_empty() && templates[2].defaults.is_empty());
        // The connector's bug: templates are at the top level, not under `data`.
        assert!(parse_templates(&obj(json!({"data": {"templates": []}}))).unwrap_err().starts_with("templates"));
        assert!(
            parse_templates(&obj(json!({"templates": [{"id": "x", "allowed_inputs": [1]}]})))
                .unwrap_err()
                .starts_with("templates[0].allowed_inputs")
        );
        assert!(
            parse_templates(&obj(json!({"templates": [{"allowed_inputs": []}]})))
                .unwrap_err()
                .starts_with("templates[0].id")
        );
    }

    #[test]
    fn parses_recorded_fire_replies() {
        let direct = json!({"triggered": true, "prompt_id": "1f1af6a4-a47d-49a4-a047-06ab9e1383ac", "trace_id": "390bf172-84d8-451a-81f1-26e3975d7a7d", "deduped": false});
        assert_eq!(
            parse_fire(StatusCode::OK, &obj(direct), "390bf172-84d8-451a-81f1-26e3975d7a7d"),
            Ok(FireOutcome::Triggered {
                prompt_id: "1f1af6a4-a47d-49a4-a047-06ab9e1383ac".into(),
                trace_id: "390bf172-84d8-451a-81f1-26e3975d7a7d".into(),
                deduped: false
            })
        );
        let dup = json!({"triggered": true, "prompt_id": "p", "trace_id": "t", "deduped": true});
        assert!(matches!(parse_fire(StatusCode::OK, &obj(dup), "t"), Ok(FireOutcome::Triggered { deduped: true, .. })));
        let pending = json!({"pending": true, "approval_id": "apr_b0d02e05037f", "trace_id": "bbf595f2", "expires_at": "2026-11-22T02:38:06.119521+00:00"});
        assert_eq!(
            parse_fire(StatusCode::ACCEPTED, &obj(pending), "bbf595f2"),
            Ok(FireOutcome::Pending {
                approval_id: "apr_b0d02e05037f".into(),
                trace_id: "bbf595f2".into(),
                expires_at: Some("2026-11-22T02:38:06.119521+00:00".into())
            })
        );
        // A missing trace id falls back to the one sent.
        assert!(matches!(
            parse_fire(StatusCode::OK, &obj(json!({"triggered": true, "prompt_id": "p"})), "sent"),
            Ok(FireOutcome::Triggered { trace_id, .. }) if trace_id == "sent"
        ));
        assert!(
            parse_fire(StatusCode::OK, &obj(json!({"triggered": true})), "t").unwrap_err().starts_with("prompt_id")
        );
        assert!(
            parse_fire(StatusCode::ACCEPTED, &obj(json!({"pending": true})), "t")
                .unwrap_err()
                .starts_with("approval_id")
        );
    }

    #[test]
    fn parses_recorded_bridge_replies() {
        let first = json!({"ok": true, "prompt_id": "8866cb5a-22a4-4e5a-a7af-c84fb1519e15", "trace_id": "0b9654c4f9de45e9bf9fd1645f3c49cf", "status": "queued"});
        assert_eq!(
            parse_bridge_submitted(&obj(first)),
            Ok(BridgeSubmitted {
                prompt_id: Some("8866cb5a-22a4-4e5a-a7af-c84fb1519e15".into()),
                trace_id: Some("0b9654c4f9de45e9bf9fd1645f3c49cf".into()),
                deduped: false
            })
        );
        let dup = json!({"ok": true, "deduped": true, "prompt_id": "8866cb5a", "trace_id": "d2a32710", "status": "queued", "message": "Duplicate request suppressed"});
        assert_eq!(
            parse_bridge_submitted(&obj(dup)).map(|s| (s.prompt_id, s.deduped)),
            Ok((Some("8866cb5a".into()), true))
        );
        let unknown = json!({"ok": true, "deduped": true, "prompt_id": null, "trace_id": "03516bc9", "status": "queued", "message": "Duplicate request suppressed"});
        assert_eq!(parse_bridge_submitted(&obj(unknown)).map(|s| (s.prompt_id, s.deduped)), Ok((None, true)));
        assert!(parse_bridge_submitted(&obj(json!({"ok": true, "status": "queued"}))).is_err());
        assert!(parse_bridge_submitted(&obj(json!({"ok": false, "prompt_id": "p"}))).is_err());
        assert!(
            parse_bridge_submitted(&obj(json!({"ok": true, "prompt_id": 5}))).unwrap_err().starts_with("prompt_id")
        );
    }

    fn recorded_approval(status: &str, metadata: Value) -> Value {
        json!({"approval_id": "apr_b0d02e05037f", "template_id": "gw_solid", "inputs": {"width": 64, "height": 64, "color": 255},
            "source": "trigger", "trace_id": "bbf595f2-12b2-4da9-8879-7d0066340741", "tenant_id": "default", "status": status,
            "requested_at": "2026-11-22T01:38:06.119565+00:00", "requested_by": null, "expires_at": "2026-11-22T02:38:06.119521+00:00",
            "approved_at": null, "rejected_at": null, "decision_by": null, "delivery": null, "metadata": metadata})
    }

    #[test]
    fn parses_recorded_approvals() {
        let list = json!({"tenant_id": "default", "approvals": [recorded_approval("pending", json!({}))], "count": 1, "pending_count": 1,
            "pagination": {"limit": 100, "offset": 0, "warnings": []}, "scan": {"scanned": 1, "skipped_malformed": 0, "truncated": false}});
        let approvals = parse_approvals(&obj(list)).expect("approvals");
        assert_eq!(approvals.len(), 1);
        let a = &approvals[0];
        assert_eq!(
            (a.approval_id.as_str(), a.template_id.as_str(), a.status.as_str()),
            ("apr_b0d02e05037f", "gw_solid", "pending")
        );
        assert_eq!(a.inputs, json!({"width": 64, "height": 64, "color": 255}));
        assert_eq!(a.source.as_deref(), Some("trigger"));
        assert_eq!(a.expires_at.as_deref(), Some("2026-11-22T02:38:06.119521+00:00"));
        assert_eq!((a.decision_by.as_ref(), a.executed_prompt_id.as_ref()), (None, None));

        let after = recorded_approval(
            "approved",
            json!({"executed_prompt_id": "f0eca33c-5741-433a-b625-16f5ee9598a1", "executed_trace_id": "bbf595f2", "executed_at": "x"}),
        );
        let after = parse_approval_envelope(&json!({"approval": after})).expect("approval");
        assert_eq!(after.executed_prompt_id.as_deref(), Some("f0eca33c-5741-433a-b625-16f5ee9598a1"));

        let mut bad = recorded_approval("pending", json!({}));
        bad["status"] = json!(null);
        assert!(parse_approvals(&obj(json!({"approvals": [bad]}))).unwrap_err().starts_with("approvals[0].status"));
        assert!(parse_approvals(&obj(json!({"items": []}))).is_err());
        assert_eq!(parse_approval_envelope(&json!({"ok": true})).unwrap_err(), "approval: missing");
        let mut odd = recorded_approval("pending", json!([]));
        assert!(
            parse_approval_envelope(&json!({"approval": odd.clone()})).unwrap_err().starts_with("approval.metadata")
        );
        odd["metadata"] = json!({"executed_prompt_id": 5});
        assert!(
            parse_approval_envelope(&json!({"approval": odd}))
                .unwrap_err()
                .starts_with("approval.metadata.executed_prompt_id")
        );
    }

    #[test]
    fn parses_recorded_approve_replies() {
        let reply = json!({"tenant_id": "default", "approved": true, "approval": recorded_approval("approved", json!({})),
            "executed": true, "prompt_id": "f0eca33c-5741-433a-b625-16f5ee9598a1", "trace_id": "bbf595f2-12b2-4da9-8879-7d0066340741"});
        let outcome = parse_approve(&obj(reply)).expect("approve");
        assert!(outcome.executed);
        assert_eq!(outcome.prompt_id.as_deref(), Some("f0eca33c-5741-433a-b625-16f5ee9598a1"));
        assert_eq!(outcome.trace_id.as_deref(), Some("bbf595f2-12b2-4da9-8879-7d0066340741"));
        assert_eq!(outcome.execution_error, None);
        assert_eq!(outcome.approval.map(|a| a.status), Some("approved".into()));

        let noexec = json!({"tenant_id": "default", "approved": true, "approval": recorded_approval("approved", json!({})), "executed": false});
        let outcome = parse_approve(&obj(noexec)).expect("noexec");
        assert!(!outcome.executed);
        assert_eq!(outcome.prompt_id, None);

        let failed =
            json!({"approved": true, "approval": "odd", "executed": false, "execution_error": "Submit failed"});
        let outcome = parse_approve(&obj(failed)).expect("failed");
        assert_eq!(outcome.execution_error.as_deref(), Some("Submit failed"));
        assert_eq!(outcome.approval, None);
    }

    #[test]
    fn parses_recorded_schedules() {
        let body = json!({"schedules": [
            {"schedule_id": "sched_1b131e382a9d", "name": "gw cron test", "template_id": "gw_solid", "trigger_type": "cron", "cron_expr": "0 3 * * *",
             "interval_sec": null, "inputs": {"width": 48}, "delivery": null, "timezone": "local", "enabled": true, "created_at": "…",
             "updated_at": "…", "last_tick_ts": null, "last_run_id": null, "compute_error_count": 0, "last_compute_error": null},
            {"schedule_id": "sched_9b768004bdac", "name": "gw interval test", "template_id": "gw_solid", "trigger_type": "interval",
             "cron_expr": null, "interval_sec": 3600, "enabled": false, "timezone": "local", "last_run_id": "run_0a50beafd41e"}], "count": 2});
        let schedules = parse_schedules(&obj(body)).expect("schedules");
        assert_eq!(schedules.len(), 2);
        let cron = &schedules[0];
        assert_eq!(cron.schedule_id, "sched_1b131e382a9d");
        assert_eq!(cron.cron_expr.as_deref(), Some("0 3 * * *"));
        assert_eq!((cron.interval_sec, cron.enabled, cron.trigger_type.as_str()), (None, true, "cron"));
        let interval = &schedules[1];
        assert_eq!((interval.interval_sec, interval.enabled), (Some(3600), false));
        assert_eq!(interval.last_run_id.as_deref(), Some("run_0a50beafd41e"));
        // The connector's field names are not the server's.
        let connector_shape =
            json!({"schedules": [{"id": "s", "cron": "* * * * *", "template_id": "t", "enabled": true}]});
        assert!(parse_schedules(&obj(connector_shape)).unwrap_err().starts_with("schedules[0].schedule_id"));
    }

    #[test]
    fn parses_recorded_trace() {
        let body = json!({"ok": true, "trace": {"prompt_id": "8866cb5a-22a4-4e5a-a7af-c84fb1519e15", "trace_id": "0b9654c4f9de45e9bf9fd1645f3c49cf",
            "created_at": 1_795_311_600.614_665, "events": [{"ts": 1_795_311_600.614_678_9, "event": "queued", "meta": {"source": "bridge"}}]}});
        let trace = parse_trace(&obj(body), "8866cb5a-22a4-4e5a-a7af-c84fb1519e15").expect("trace");
        assert_eq!(trace.prompt_id, "8866cb5a-22a4-4e5a-a7af-c84fb1519e15");
        assert_eq!(trace.trace_id.as_deref(), Some("0b9654c4f9de45e9bf9fd1645f3c49cf"));
        assert_eq!(trace.events.len(), 1);
        assert_eq!(trace.events[0].event, "queued");
        assert_eq!(trace.events[0].meta, json!({"source": "bridge"}));
        assert!((trace.events[0].ts - 1_795_311_600.614_678_9).abs() < 1e-3);
        assert!(parse_trace(&obj(json!({"ok": true})), "p").unwrap_err().starts_with("trace"));
        assert!(
            parse_trace(&obj(json!({"trace": {"events": [{"ts": "x", "event": "queued"}]}})), "p")
                .unwrap_err()
                .starts_with("trace.events[0].ts")
        );
    }

    #[test]
    fn debug_hides_secrets() {
        let client = OpenClawClient::new(
            "http://user:url-password@127.0.0.1:8188/",
            Some("admin-secret".into()),
            Some(DeviceCredentials::new("dev-1", "device-secret")),
        )
        .expect("client")
        .with_obs_token(Some("obs-secret".into()));
        let shown = format!("{client:?} {:?}", DeviceCredentials::new("dev-1", "device-secret"));
        for secret in ["admin-secret", "device-secret", "obs-secret", "url-password"] {
            assert!(!shown.contains(secret), "{secret} in {shown}");
        }
        assert!(shown.contains("dev-1"), "{shown}");
        assert!(client.has_device());
        assert_eq!(client.base_url(), "http://user:url-password@127.0.0.1:8188");
    }

    #[test]
    fn refusal_masks_tokens() {
        let client = OpenClawClient::new("http://127.0.0.1:1", Some("admin-secret".into()), None).expect("client");
        let answer = Answer {
            status: StatusCode::FORBIDDEN,
            retry_after: None,
            body: Bytes::from_static(br#"{"error": "token admin-secret is wrong", "retry_after_sec": 3}"#),
        };
        let error = client.refused("/openclaw/jobs", &answer);
        let text = format!("{error} {error:?}");
        assert!(!text.contains("admin-secret"), "{text}");
        assert!(
            matches!(error, OpenClawError::Refused { status: 403, retry_after: Some(d), .. } if d == Duration::from_secs(3))
        );
    }

    #[test]
    fn base_urls_and_endpoints() {
        let client = OpenClawClient::new(" http://127.0.0.1:8188/ ", None, None).expect("client");
        assert_eq!(client.base_url(), "http://127.0.0.1:8188");
        assert!(!client.has_device());
        let url = client.endpoint(&["openclaw", "approvals", "apr/1 x", "approve"]).expect("url");
        assert_eq!(url.as_str(), "http://127.0.0.1:8188/openclaw/approvals/apr%2F1%20x/approve");
        let prefixed = OpenClawClient::new("https://host/comfy/", None, None).expect("client");
        assert_eq!(
            prefixed.endpoint(&["openclaw", "health"]).expect("url").as_str(),
            "https://host/comfy/openclaw/health"
        );
        for bad in ["ftp://x", "not a url", "http://h/?q=1", "mailto:a@b", ""] {
            assert!(matches!(OpenClawClient::new(bad, None, None), Err(OpenClawError::InvalidUrl(_))), "{bad}");
        }
        let bad_token = OpenClawClient::new("http://h", Some("line\nbreak-secret".into()), None).expect_err("token");
        assert!(matches!(bad_token, OpenClawError::InvalidUrl(_)));
        assert!(!bad_token.to_string().contains("secret"), "{bad_token}");
    }

    #[tokio::test]
    async fn bridge_submit_without_device_is_a_setting_error() {
        let client = OpenClawClient::new("http://127.0.0.1:1", None, None).expect("client");
        let inputs = json!({});
        let req =
            BridgeSubmit { template_id: "t", inputs: &inputs, idempotency_key: "k", session_id: None, trace_id: None };
        let error = client.bridge_submit(&req).await.expect_err("no device");
        assert!(matches!(error, OpenClawError::InvalidUrl(_)));
        assert!(!error.is_transient());
    }
}
