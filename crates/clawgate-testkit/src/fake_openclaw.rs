//! A fake ComfyUI-OpenClaw 1.0.7 extension, served by a [`FakeComfy`] on the same port as the
//! native API, as the real custom node is served by ComfyUI's own server.
//!
//! Shapes and texts follow what a real ComfyUI 0.3.64 with ComfyUI-OpenClaw answered
//! (`contracts/comfy-real.md` §6, §8) and `contracts/comfyui-openclaw.md` §1.3–1.4, §2.2, §7:
//!
//! - connector endpoints under `/openclaw`, `/api/openclaw` and `/moltbot`: `health`,
//!   `templates`, `triggers/fire` (dedupe by `trace_id`, 202 approval when asked or forced),
//!   `approvals` (list/get/approve/reject with the recorded 400/404 texts), `schedules`
//!   (list/run/toggle), `trace/{prompt}` (only bridge submits have one, holding `queued`),
//!   `jobs` (501, 503 or the v1 envelope built from the native queue and history);
//! - the bridge: `bridge/health|submit|deliver` under the same prefixes, with the static device
//!   token's auth algorithm (headers and `X-Moltbot-*` aliases, the exact 401/403 texts, the
//!   `BridgeScope.JOB_SUBMIT` spelling) and the idempotency trap (the key is recorded before the
//!   submit, so a retry after a failure dedupes to `prompt_id: null`); the unprefixed
//!   `/bridge/*` family (health, handshake, a 503 submit, worker poll/result/heartbeat).
//!
//! Every rendered template is submitted the way the extension does it: `POST {comfy}/prompt`
//! over loopback, with `extra_data.openclaw`/`moltbot` trace ids and
//! `comfy_usage_source: "comfyui-openclaw"`. Templates come from a ComfyUI-OpenClaw
//! `data/templates` folder (`manifest.json` + `<id>.json`); string values exactly `"{{key}}"`
//! are replaced by (defaults ∪ inputs)[key] of any JSON type; `allowed_inputs` is not enforced,
//! as in the real extension.
//!
//! Simplified: no tenants, no rate limits (the real 20/min buckets on bridge submits and `jobs`
//! are not emulated), no lifecycle device tokens (the static token only), no mTLS; the schedule
//! `run` answers at once (the real one blocks its event loop ~30 s, comfy-real.md §8.2).
//! Approvals, schedules and idempotency keys live in the fake's memory and survive
//! [`FakeComfy::restart`] as they survive a real restart on disk; traces are kept too (the real
//! ones are lost on restart).

use std::collections::HashMap;
use std::path::{Path as FsPath, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, OnceLock, PoisonError};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use anyhow::Context;
use axum::Router;
use axum::body::Bytes;
use axum::extract::{Path, Query, State};
use axum::http::{HeaderMap, StatusCode, Uri, header};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use serde_json::{Map, Value, json};

use crate::fake_comfy::{FakeComfy, FakeComfyBuilder};

/// What `GET /openclaw/jobs` answers.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum JobsMode {
    /// 501 `jobs_host_contract_unsupported` (ComfyUI 0.3.64 has no jobs API; recorded).
    #[default]
    Unsupported,
    /// 503 `jobs_backend_unavailable`.
    Unavailable,
    /// 200 with the jobs v1 envelope built from the native queue and history.
    Envelope,
}

/// One request to an extension route, as received.
#[derive(Debug, Clone, PartialEq)]
pub struct OpenClawRequest {
    /// `GET`, `POST`, …
    pub method: String,
    /// The path, without the query.
    pub path: String,
    /// `X-OpenClaw-Admin-Token`.
    pub admin_token: Option<String>,
    /// `X-OpenClaw-Device-Id` (or `X-Moltbot-Device-Id`).
    pub device_id: Option<String>,
    /// `X-OpenClaw-Device-Token` (or `X-Moltbot-Device-Token`).
    pub device_token: Option<String>,
    /// `X-OpenClaw-Scopes` (or `X-Moltbot-Scopes`).
    pub scopes: Option<String>,
    /// The JSON body; `Null` if empty or not JSON.
    pub body: Value,
}

/// Builder for [`FakeOpenClaw`].
#[derive(Debug, Clone)]
pub struct FakeOpenClawBuilder {
    admin_token: String,
    device_token: Option<String>,
    bridge_version: i64,
    jobs: JobsMode,
    force_approval: bool,
    templates_dir: PathBuf,
    comfy: FakeComfyBuilder,
}

impl Default for FakeOpenClawBuilder {
    fn default() -> Self {
        Self {
            admin_token: "test-admin-token-123".to_owned(),
            device_token: Some("test-device-token-456".to_owned()),
            bridge_version: 1,
            jobs: JobsMode::default(),
            force_approval: false,
            templates_dir: PathBuf::from(concat!(env!("CARGO_MANIFEST_DIR"), "/../../templates")),
            comfy: FakeComfy::builder(),
        }
    }
}

impl FakeOpenClawBuilder {
    /// `OPENCLAW_ADMIN_TOKEN` (default `test-admin-token-123`).
    pub fn admin_token(mut self, token: &str) -> Self {
        token.clone_into(&mut self.admin_token);
        self
    }

    /// `Some(token)`: the bridge is on with this static device token (default
    /// `test-device-token-456`); `None`: `OPENCLAW_BRIDGE_ENABLED=0`.
    pub fn bridge(mut self, device_token: Option<&str>) -> Self {
        self.device_token = device_token.map(str::to_owned);
        self
    }

    /// The extension's bridge protocol version `N` (`BRIDGE_PROTOCOL_VERSION`, default 1):
    /// `POST /bridge/handshake` accepts clients of version N and N-1 (at least 1) and answers
    /// 409 for others, as `services/bridge_handshake.py` does.
    pub fn bridge_version(mut self, version: i64) -> Self {
        self.bridge_version = version;
        self
    }

    /// What `GET /openclaw/jobs` answers.
    pub fn jobs(mut self, mode: JobsMode) -> Self {
        self.jobs = mode;
        self
    }

    /// `OPENCLAW_REQUIRE_APPROVAL_FOR_TRIGGERS=1`: every trigger is held for approval.
    pub fn require_approval_for_triggers(mut self, on: bool) -> Self {
        self.force_approval = on;
        self
    }

    /// The extension's `data/templates` folder (default: the repo's `templates/`).
    pub fn templates_dir(mut self, dir: impl Into<PathBuf>) -> Self {
        self.templates_dir = dir.into();
        self
    }

    /// The native fake ComfyUI to serve the extension on.
    pub fn comfy(mut self, comfy: FakeComfyBuilder) -> Self {
        self.comfy = comfy;
        self
    }

    /// Starts the fake ComfyUI with the extension's routes on `127.0.0.1:0`.
    pub async fn start(self) -> anyhow::Result<FakeOpenClaw> {
        let state = Arc::new(Ext {
            admin_token: self.admin_token,
            device_token: self.device_token,
            bridge_version: self.bridge_version,
            jobs: self.jobs,
            force_approval: self.force_approval,
            templates_dir: self.templates_dir,
            comfy_url: OnceLock::new(),
            http: reqwest::Client::builder().timeout(Duration::from_secs(10)).build().context("http client")?,
            started: Instant::now(),
            data: Mutex::new(Data::default()),
        });
        let comfy = self.comfy.extension(routes(Arc::clone(&state))).start().await?;
        let _ = state.comfy_url.set(comfy.base_url());
        Ok(FakeOpenClaw { comfy, state })
    }
}

/// A running fake ComfyUI with the ComfyUI-OpenClaw extension.
#[derive(Debug)]
pub struct FakeOpenClaw {
    comfy: FakeComfy,
    state: Arc<Ext>,
}

impl FakeOpenClaw {
    /// A builder with the defaults.
    pub fn builder() -> FakeOpenClawBuilder {
        FakeOpenClawBuilder::default()
    }

    /// Starts one with the defaults (admin token, bridge on, jobs 501, the repo's templates).
    pub async fn start() -> anyhow::Result<Self> {
        Self::builder().start().await
    }

    /// The native fake it runs on (queue, history, kill, restart).
    pub fn comfy(&self) -> &FakeComfy {
        &self.comfy
    }

    /// `http://127.0.0.1:<port>`: the native API and the extension.
    pub fn base_url(&self) -> String {
        self.comfy.base_url()
    }

    /// Every request to an extension route, in order.
    pub fn requests(&self) -> Vec<OpenClawRequest> {
        self.state.data().requests.clone()
    }

    /// A pending approval, as a trigger with `require_approval` would make; its id.
    pub fn add_pending_approval(&self, template_id: &str, inputs: Value) -> String {
        let mut data = self.state.data();
        let trace = new_hex(32);
        data.add_approval(template_id, inputs, &trace, "trigger")
    }

    /// An enabled cron schedule; its id.
    pub fn add_schedule(&self, name: &str, template_id: &str, cron_expr: &str, inputs: Value) -> String {
        let id = format!("sched_{}", new_hex(12));
        let now = iso_now();
        let schedule = json!({
            "schedule_id": id, "name": name, "template_id": template_id, "trigger_type": "cron",
            "cron_expr": cron_expr, "interval_sec": null, "inputs": inputs, "delivery": null, "timezone": "local",
            "enabled": true, "created_at": now, "updated_at": now, "last_tick_ts": null, "last_run_id": null,
            "compute_error_count": 0, "last_compute_error": null,
        });
        self.state.data().schedules.push(schedule);
        id
    }

    /// How often `POST /openclaw/schedules/{id}/run` fired that schedule.
    pub fn schedule_runs(&self, schedule_id: &str) -> usize {
        self.state.data().schedule_runs.get(schedule_id).copied().unwrap_or(0)
    }

    /// While down, `/openclaw/health` answers 503 (the rest keeps working).
    pub fn set_health_down(&self, down: bool) {
        self.state.data().health_down = down;
    }
}

#[derive(Debug)]
struct Ext {
    admin_token: String,
    device_token: Option<String>,
    bridge_version: i64,
    jobs: JobsMode,
    force_approval: bool,
    templates_dir: PathBuf,
    comfy_url: OnceLock<String>,
    http: reqwest::Client,
    started: Instant,
    data: Mutex<Data>,
}

#[derive(Debug, Default)]
struct Data {
    requests: Vec<OpenClawRequest>,
    /// Newest last.
    approvals: Vec<Value>,
    schedules: Vec<Value>,
    schedule_runs: HashMap<String, usize>,
    /// triggers/fire: trace id → prompt id.
    fired: HashMap<String, String>,
    /// bridge submit: idempotency key → prompt id (None: recorded, the submit failed).
    bridge_keys: HashMap<String, Option<String>>,
    /// worker results: idempotency keys seen.
    worker_results: HashMap<String, String>,
    /// prompt id → trace.
    traces: HashMap<String, Value>,
    health_down: bool,
}

impl Data {
    fn add_approval(&mut self, template_id: &str, inputs: Value, trace: &str, source: &str) -> String {
        let id = format!("apr_{}", new_hex(12));
        let now = SystemTime::now();
        self.approvals.push(json!({
            "approval_id": id, "template_id": template_id, "inputs": inputs, "source": source,
            "trace_id": trace, "tenant_id": "default", "status": "pending", "requested_at": iso(now),
            "requested_by": null, "expires_at": iso(now + Duration::from_secs(3600)), "approved_at": null,
            "rejected_at": null, "decision_by": null, "delivery": null, "metadata": {},
        }));
        id
    }

    fn approval_mut(&mut self, id: &str) -> Option<&mut Value> {
        self.approvals.iter_mut().find(|a| a["approval_id"] == id)
    }
}

impl Ext {
    fn data(&self) -> MutexGuard<'_, Data> {
        self.data.lock().unwrap_or_else(PoisonError::into_inner)
    }

    fn is_admin(&self, headers: &HeaderMap) -> bool {
        header_str(headers, "x-openclaw-admin-token").is_some_and(|t| t == self.admin_token)
    }

    /// `data/templates/manifest.json`'s entry for `id` merged with its graph, or `None`.
    fn template(&self, id: &str) -> Option<(Value, Map<String, Value>)> {
        let manifest = read_json(&self.templates_dir.join("manifest.json")).unwrap_or(Value::Null);
        let entry = manifest.get("templates").and_then(|t| t.get(id));
        let file =
            entry.and_then(|e| e.get("path")).and_then(Value::as_str).map_or(format!("{id}.json"), str::to_owned);
        if file.contains("..") || file.contains('/') {
            return None;
        }
        let graph = read_json(&self.templates_dir.join(file))?;
        let defaults = entry.and_then(|e| e.get("defaults")).and_then(Value::as_object).cloned().unwrap_or_default();
        Some((graph, defaults))
    }

    fn template_list(&self) -> Vec<Value> {
        let manifest = read_json(&self.templates_dir.join("manifest.json")).unwrap_or(Value::Null);
        let mut out: Vec<Value> = manifest
            .get("templates")
            .and_then(Value::as_object)
            .into_iter()
            .flatten()
            .map(|(id, e)| {
                json!({"id": id, "allowed_inputs": e.get("allowed_inputs").cloned().unwrap_or(json!([])),
                       "defaults": e.get("defaults").cloned().unwrap_or(json!({}))})
            })
            .collect();
        out.sort_by(|a, b| a["id"].as_str().cmp(&b["id"].as_str()));
        out
    }

    /// Renders `template_id` with `inputs` and queues it on the fake ComfyUI, as the extension's
    /// queue-submit service does. `Err` is the reason (unknown template, ComfyUI refused).
    async fn submit(
        &self,
        template_id: &str,
        inputs: &Value,
        trace: &str,
        client_id: &str,
        source: Option<&str>,
    ) -> Result<String, String> {
        let (graph, defaults) =
            self.template(template_id).ok_or_else(|| format!("template_id '{template_id}' not found"))?;
        let mut values = defaults;
        if let Some(given) = inputs.as_object() {
            values.extend(given.clone());
        }
        let prompt = render(&graph, &values);
        let mut openclaw = json!({"trace_id": trace, "tenant_id": "default"});
        let mut moltbot = json!({"trace_id": trace});
        if let Some(src) = source {
            openclaw["source"] = json!(src);
            moltbot["source"] = json!(src);
        }
        let body = json!({"prompt": prompt, "client_id": client_id,
                          "extra_data": {"openclaw": openclaw, "moltbot": moltbot, "comfy_usage_source": "comfyui-openclaw"}});
        let url = format!("{}/prompt", self.comfy_url.get().ok_or("not started")?);
        let res = self.http.post(url).json(&body).send().await.map_err(|e| e.to_string())?;
        let status = res.status();
        let answer: Value = res.json().await.map_err(|e| e.to_string())?;
        match answer.get("prompt_id").and_then(Value::as_str) {
            Some(id) if status.is_success() => Ok(id.to_owned()),
            _ => Err(format!("ComfyUI refused the prompt: {answer}")),
        }
    }
}

fn routes(state: Arc<Ext>) -> Router {
    let prefixed = || {
        Router::new()
            .route("/health", get(health))
            .route("/templates", get(templates))
            .route("/triggers/fire", post(fire))
            .route("/approvals", get(approvals))
            .route("/approvals/{id}", get(approval))
            .route("/approvals/{id}/approve", post(approve))
            .route("/approvals/{id}/reject", post(reject))
            .route("/schedules", get(schedules))
            .route("/schedules/{id}/run", post(run_schedule))
            .route("/schedules/{id}/toggle", post(toggle_schedule))
            .route("/trace/{prompt_id}", get(trace))
            .route("/jobs", get(jobs))
            .route("/bridge/health", get(bridge_health))
            .route("/bridge/submit", post(bridge_submit))
            .route("/bridge/deliver", post(bridge_deliver))
    };
    let mut app =
        Router::new().nest("/openclaw", prefixed()).nest("/api/openclaw", prefixed()).nest("/moltbot", prefixed());
    if state.device_token.is_some() {
        // The unprefixed family is registered only with the bridge on (comfy-real.md §6.2).
        app = app
            .route("/bridge/health", get(bridge_health))
            .route("/bridge/handshake", post(handshake))
            .route("/bridge/submit", post(unwired_submit))
            .route("/bridge/worker/poll", get(worker_poll))
            .route("/bridge/worker/result/{job_id}", post(worker_result))
            .route("/bridge/worker/heartbeat", post(worker_heartbeat));
    }
    app.layer(axum::middleware::from_fn_with_state(Arc::clone(&state), record)).with_state(state)
}

/// Records every request (headers and JSON body) before the handler runs.
async fn record(State(state): State<Arc<Ext>>, req: axum::extract::Request, next: axum::middleware::Next) -> Response {
    let (parts, body) = req.into_parts();
    let Ok(bytes) = axum::body::to_bytes(body, 1 << 20).await else {
        return json_response(StatusCode::PAYLOAD_TOO_LARGE, &json!({"error": "Request body too large"}));
    };
    let h = &parts.headers;
    let alias = |a: &str, b: &str| header_str(h, a).or_else(|| header_str(h, b));
    state.data().requests.push(OpenClawRequest {
        method: parts.method.to_string(),
        path: parts.uri.path().to_owned(),
        admin_token: header_str(h, "x-openclaw-admin-token"),
        device_id: alias("x-openclaw-device-id", "x-moltbot-device-id"),
        device_token: alias("x-openclaw-device-token", "x-moltbot-device-token"),
        scopes: alias("x-openclaw-scopes", "x-moltbot-scopes"),
        body: serde_json::from_slice(&bytes).unwrap_or(Value::Null),
    });
    next.run(axum::extract::Request::from_parts(parts, axum::body::Body::from(bytes))).await
}

fn header_str(headers: &HeaderMap, name: &str) -> Option<String> {
    headers.get(name).and_then(|v| v.to_str().ok()).map(str::to_owned)
}

fn json_response(status: StatusCode, body: &Value) -> Response {
    (status, [(header::CONTENT_TYPE, "application/json; charset=utf-8")], body.to_string()).into_response()
}

fn ok(body: &Value) -> Response {
    json_response(StatusCode::OK, body)
}

fn error(status: StatusCode, message: &str) -> Response {
    json_response(status, &json!({"error": message}))
}

fn invalid_admin() -> Response {
    error(StatusCode::FORBIDDEN, "Invalid admin token.")
}

fn parse_body(body: &Bytes) -> Result<Value, Response> {
    if body.is_empty() {
        return Ok(json!({}));
    }
    match serde_json::from_slice::<Value>(body) {
        Ok(v) if v.is_object() => Ok(v),
        _ => Err(error(StatusCode::BAD_REQUEST, "Invalid JSON")),
    }
}

fn read_json(path: &FsPath) -> Option<Value> {
    std::fs::read(path).ok().and_then(|b| serde_json::from_slice(&b).ok())
}

/// Replaces every string value exactly `"{{key}}"` with `values[key]` (any JSON type).
fn render(v: &Value, values: &Map<String, Value>) -> Value {
    match v {
        Value::String(s) => s
            .strip_prefix("{{")
            .and_then(|r| r.strip_suffix("}}"))
            .and_then(|key| values.get(key))
            .cloned()
            .unwrap_or_else(|| v.clone()),
        Value::Array(items) => Value::Array(items.iter().map(|i| render(i, values)).collect()),
        Value::Object(map) => Value::Object(map.iter().map(|(k, i)| (k.clone(), render(i, values))).collect()),
        other => other.clone(),
    }
}

fn new_hex(len: usize) -> String {
    static COUNTER: AtomicU64 = AtomicU64::new(0);
    let mut out = String::new();
    while out.len() < len {
        let n = COUNTER.fetch_add(1, Ordering::Relaxed);
        let nanos = SystemTime::now().duration_since(UNIX_EPOCH).map(|d| d.as_nanos() as u64).unwrap_or(0);
        let mut x = nanos ^ n.wrapping_mul(0x9e37_79b9_7f4a_7c15);
        x = (x ^ (x >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        x = (x ^ (x >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
        out.push_str(&format!("{:016x}", x ^ (x >> 31)));
    }
    out.truncate(len);
    out
}

/// ISO-8601 with microseconds and `+00:00`, as Python's `isoformat()` writes it.
fn iso(t: SystemTime) -> String {
    let d = t.duration_since(UNIX_EPOCH).unwrap_or_default();
    let secs = d.as_secs() as i64;
    let (days, rem) = (secs.div_euclid(86_400), secs.rem_euclid(86_400));
    // Civil from days (Howard Hinnant's algorithm).
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z - era * 146_097;
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let day = doy - (153 * mp + 2) / 5 + 1;
    let month = if mp < 10 { mp + 3 } else { mp - 9 };
    let year = yoe + era * 400 + i64::from(month <= 2);
    format!(
        "{year:04}-{month:02}-{day:02}T{:02}:{:02}:{:02}.{:06}+00:00",
        rem / 3600,
        rem % 3600 / 60,
        rem % 60,
        d.subsec_micros()
    )
}

fn iso_now() -> String {
    iso(SystemTime::now())
}

async fn health(State(state): State<Arc<Ext>>) -> Response {
    let (down, logs) = {
        let data = state.data();
        (data.health_down, data.requests.len())
    };
    if down {
        return error(StatusCode::SERVICE_UNAVAILABLE, "Service unavailable");
    }
    ok(&json!({
        "ok": true,
        "pack": {"name": "ComfyUI-OpenClaw", "version": "1.0.7", "dependencies": {"aiohttp": true, "watchdog": false}},
        "uptime_sec": state.started.elapsed().as_secs_f64(),
        "config": {"provider": "openai", "model": "gpt-4o-mini", "base_url": "", "api_type": "openai",
                   "llm_key_configured": false, "llm_key_required": true},
        "stats": {"errors_captured": 0, "logs_processed": logs, "executors": {}, "observability": {}},
        "startup": {"state": "ready"},
        "access_policy": {"observability": "loopback_only", "token_configured": false},
        "control_plane": {"mode": "embedded", "blocked_surfaces": []},
        "runtime_profile": "minimal",
    }))
}

/// Observability access: the fake is on loopback, so no token is needed (as recorded).
async fn templates(State(state): State<Arc<Ext>>) -> Response {
    let list = state.template_list();
    ok(&json!({"ok": true, "count": list.len(), "templates": list}))
}

async fn fire(State(state): State<Arc<Ext>>, headers: HeaderMap, body: Bytes) -> Response {
    if !state.is_admin(&headers) {
        return invalid_admin();
    }
    let body = match parse_body(&body) {
        Ok(b) => b,
        Err(r) => return r,
    };
    let Some(template_id) = body.get("template_id").and_then(Value::as_str).filter(|t| !t.is_empty()) else {
        return error(StatusCode::BAD_REQUEST, "template_id is required");
    };
    let inputs = body.get("inputs").cloned().unwrap_or(json!({}));
    if inputs.to_string().len() > 32 * 1024 {
        return error(StatusCode::BAD_REQUEST, "inputs too large (max 32KB)");
    }
    if state.template(template_id).is_none() {
        return error(StatusCode::NOT_FOUND, &format!("template_id '{template_id}' not found"));
    }
    let trace = body.get("trace_id").and_then(Value::as_str).map_or_else(|| new_hex(32), str::to_owned);
    let wants_approval = body.get("require_approval").and_then(Value::as_bool).unwrap_or(false);
    if wants_approval || state.force_approval {
        let (id, expires) = {
            let mut data = state.data();
            let id = data.add_approval(template_id, inputs, &trace, "trigger");
            let expires = data.approvals.last().map(|a| a["expires_at"].clone()).unwrap_or(Value::Null);
            (id, expires)
        };
        return json_response(
            StatusCode::ACCEPTED,
            &json!({"pending": true, "approval_id": id, "trace_id": trace, "expires_at": expires}),
        );
    }
    if let Some(prompt) = state.data().fired.get(&trace).cloned() {
        return ok(&json!({"triggered": true, "prompt_id": prompt, "trace_id": trace, "deduped": true}));
    }
    let client_id = new_uuid();
    match state.submit(template_id, &inputs, &trace, &client_id, Some("automation")).await {
        Ok(prompt) => {
            state.data().fired.insert(trace.clone(), prompt.clone());
            ok(&json!({"triggered": true, "prompt_id": prompt, "trace_id": trace, "deduped": false}))
        }
        Err(e) => error(StatusCode::INTERNAL_SERVER_ERROR, &e),
    }
}

fn new_uuid() -> String {
    let h = new_hex(32);
    format!("{}-{}-4{}-a{}-{}", &h[..8], &h[8..12], &h[13..16], &h[17..20], &h[20..32])
}

async fn approvals(
    State(state): State<Arc<Ext>>,
    headers: HeaderMap,
    Query(q): Query<HashMap<String, String>>,
) -> Response {
    if !state.is_admin(&headers) {
        return invalid_admin();
    }
    let status = q.get("status").cloned();
    if let Some(s) = &status
        && !["pending", "approved", "rejected", "expired"].contains(&s.as_str())
    {
        return error(StatusCode::BAD_REQUEST, &format!("Invalid status: {s}"));
    }
    let data = state.data();
    let list: Vec<Value> =
        data.approvals.iter().rev().filter(|a| status.as_deref().is_none_or(|s| a["status"] == s)).cloned().collect();
    let pending = data.approvals.iter().filter(|a| a["status"] == "pending").count();
    ok(&json!({
        "tenant_id": "default", "approvals": list, "count": list.len(), "pending_count": pending,
        "pagination": {"limit": 100, "offset": 0, "warnings": []},
        "scan": {"scanned": data.approvals.len(), "skipped_malformed": 0, "truncated": false},
    }))
}

async fn approval(State(state): State<Arc<Ext>>, headers: HeaderMap, Path(id): Path<String>) -> Response {
    if !state.is_admin(&headers) {
        return invalid_admin();
    }
    match state.data().approval_mut(&id) {
        Some(a) => ok(&json!({"tenant_id": "default", "approval": a.clone()})),
        None => error(StatusCode::NOT_FOUND, "Approval not found"),
    }
}

async fn approve(State(state): State<Arc<Ext>>, headers: HeaderMap, Path(id): Path<String>, body: Bytes) -> Response {
    if !state.is_admin(&headers) {
        return invalid_admin();
    }
    let body = match parse_body(&body) {
        Ok(b) => b,
        Err(r) => return r,
    };
    let actor = body.get("actor").cloned().unwrap_or(Value::Null);
    let execute = body.get("auto_execute").and_then(Value::as_bool).unwrap_or(true);
    let (approved, template, inputs, trace) = {
        let mut data = state.data();
        let Some(a) = data.approval_mut(&id) else {
            return error(StatusCode::BAD_REQUEST, &format!("Approval request not found: {id}"));
        };
        if a["status"] != "pending" {
            let s = a["status"].as_str().unwrap_or("?").to_owned();
            return error(StatusCode::BAD_REQUEST, &format!("Cannot approve request in status: {s}"));
        }
        a["status"] = json!("approved");
        a["approved_at"] = json!(iso_now());
        a["decision_by"] = actor;
        (
            a.clone(),
            a["template_id"].as_str().unwrap_or_default().to_owned(),
            a["inputs"].clone(),
            a["trace_id"].as_str().unwrap_or_default().to_owned(),
        )
    };
    let mut reply = json!({"tenant_id": "default", "approved": true, "approval": approved, "executed": false});
    if execute {
        match state.submit(&template, &inputs, &trace, &new_uuid(), Some("automation")).await {
            Ok(prompt) => {
                if let Some(a) = state.data().approval_mut(&id) {
                    a["metadata"] = json!({"executed_prompt_id": prompt, "executed_trace_id": trace,
                                           "executed_at": iso_now()});
                }
                reply["executed"] = json!(true);
                reply["prompt_id"] = json!(prompt);
                reply["trace_id"] = json!(trace);
            }
            Err(e) => reply["execution_error"] = json!(e),
        }
    }
    ok(&reply)
}

async fn reject(State(state): State<Arc<Ext>>, headers: HeaderMap, Path(id): Path<String>, body: Bytes) -> Response {
    if !state.is_admin(&headers) {
        return invalid_admin();
    }
    let body = match parse_body(&body) {
        Ok(b) => b,
        Err(r) => return r,
    };
    let mut data = state.data();
    let Some(a) = data.approval_mut(&id) else {
        return error(StatusCode::BAD_REQUEST, &format!("Approval request not found: {id}"));
    };
    if a["status"] != "pending" {
        let s = a["status"].as_str().unwrap_or("?").to_owned();
        return error(StatusCode::BAD_REQUEST, &format!("Cannot reject request in status: {s}"));
    }
    // `reason` is ignored, as by the real server; `actor` becomes `decision_by`.
    a["status"] = json!("rejected");
    a["rejected_at"] = json!(iso_now());
    a["decision_by"] = body.get("actor").cloned().unwrap_or(Value::Null);
    ok(&json!({"tenant_id": "default", "rejected": true, "approval": a.clone()}))
}

async fn schedules(
    State(state): State<Arc<Ext>>,
    headers: HeaderMap,
    Query(q): Query<HashMap<String, String>>,
) -> Response {
    if !state.is_admin(&headers) {
        return invalid_admin();
    }
    let enabled = q.get("enabled").map(|v| v == "true");
    let list: Vec<Value> =
        state.data().schedules.iter().filter(|s| enabled.is_none_or(|e| s["enabled"] == e)).cloned().collect();
    ok(&json!({"schedules": list, "count": list.len()}))
}

async fn run_schedule(State(state): State<Arc<Ext>>, headers: HeaderMap, Path(id): Path<String>) -> Response {
    if !state.is_admin(&headers) {
        return invalid_admin();
    }
    let Some(sched) = state.data().schedules.iter().find(|s| s["schedule_id"] == id).cloned() else {
        return error(StatusCode::NOT_FOUND, "Schedule not found");
    };
    let template = sched["template_id"].as_str().unwrap_or_default().to_owned();
    match state.submit(&template, &sched["inputs"], &new_hex(32), &new_uuid(), Some("scheduler")).await {
        Ok(_) => {
            *state.data().schedule_runs.entry(id.clone()).or_default() += 1;
            ok(&json!({"triggered": true, "schedule_id": id, "template_id": template}))
        }
        Err(e) => error(StatusCode::INTERNAL_SERVER_ERROR, &e),
    }
}

async fn toggle_schedule(State(state): State<Arc<Ext>>, headers: HeaderMap, Path(id): Path<String>) -> Response {
    if !state.is_admin(&headers) {
        return invalid_admin();
    }
    let mut data = state.data();
    let Some(s) = data.schedules.iter_mut().find(|s| s["schedule_id"] == id) else {
        return error(StatusCode::NOT_FOUND, "Schedule not found");
    };
    let enabled = s["enabled"] != true;
    s["enabled"] = json!(enabled);
    s["updated_at"] = json!(iso_now());
    ok(&json!({"schedule_id": id, "enabled": enabled}))
}

async fn trace(State(state): State<Arc<Ext>>, headers: HeaderMap, Path(prompt_id): Path<String>) -> Response {
    if !state.is_admin(&headers) {
        return json_response(StatusCode::FORBIDDEN, &json!({"ok": false, "error": "Invalid admin token."}));
    }
    match state.data().traces.get(&prompt_id) {
        Some(t) => ok(&json!({"ok": true, "trace": t})),
        None => json_response(StatusCode::NOT_FOUND, &json!({"ok": false, "error": "not_found"})),
    }
}

const JOBS_QUERY_FIELDS: &[&str] = &["status", "workflow_id", "sort_by", "sort_order", "limit", "offset"];

async fn jobs(State(state): State<Arc<Ext>>, headers: HeaderMap, uri: Uri) -> Response {
    if !state.is_admin(&headers) {
        return json_response(StatusCode::FORBIDDEN, &json!({"ok": false, "error": "jobs_admin_required"}));
    }
    let bad_query = uri.query().unwrap_or_default().split('&').filter(|p| !p.is_empty()).any(|p| {
        let key = p.split('=').next().unwrap_or_default();
        !JOBS_QUERY_FIELDS.contains(&key)
    });
    if bad_query {
        return json_response(StatusCode::BAD_REQUEST, &json!({"ok": false, "error": "jobs_query_invalid"}));
    }
    match state.jobs {
        JobsMode::Unsupported => {
            json_response(StatusCode::NOT_IMPLEMENTED, &json!({"ok": false, "error": "jobs_host_contract_unsupported"}))
        }
        JobsMode::Unavailable => {
            json_response(StatusCode::SERVICE_UNAVAILABLE, &json!({"ok": false, "error": "jobs_backend_unavailable"}))
        }
        JobsMode::Envelope => match native_jobs(&state).await {
            Ok(list) => ok(&json!({
                "ok": true, "contract_version": 1, "jobs": list,
                "pagination": {"limit": 50, "offset": 0, "warnings": [], "total": list.len(), "has_more": false},
                "source": {"adapter": "comfy_execution.jobs", "authority": "in_process"},
                "scan": {"window": 10000, "examined": list.len(), "excluded": 0, "malformed": 0, "truncated": false},
            })),
            Err(_) => json_response(
                StatusCode::SERVICE_UNAVAILABLE,
                &json!({"ok": false, "error": "jobs_backend_unavailable"}),
            ),
        },
    }
}

/// Jobs as ComfyUI's jobs API lists them: running, pending, then finished (at most 50).
async fn native_jobs(state: &Ext) -> Result<Vec<Value>, reqwest::Error> {
    let base = state.comfy_url.get().cloned().unwrap_or_default();
    let queue: Value = state.http.get(format!("{base}/queue")).send().await?.json().await?;
    let history: Value = state.http.get(format!("{base}/history?max_items=50")).send().await?.json().await?;
    let mut out = Vec::new();
    let ids = |key: &str| -> Vec<String> {
        queue[key].as_array().into_iter().flatten().filter_map(|t| t.get(1)?.as_str().map(str::to_owned)).collect()
    };
    out.extend(
        ids("queue_running").into_iter().map(|id| json!({"id": id, "status": "in_progress", "outputs_count": 0})),
    );
    out.extend(ids("queue_pending").into_iter().map(|id| json!({"id": id, "status": "pending", "outputs_count": 0})));
    for (id, entry) in history.as_object().into_iter().flatten() {
        let status = match entry.pointer("/status/status_str").and_then(Value::as_str) {
            Some("success") => "completed",
            _ => "failed",
        };
        let outputs = entry.get("outputs").and_then(Value::as_object).map_or(0, Map::len);
        out.push(json!({"id": id, "status": status, "outputs_count": outputs}));
    }
    out.truncate(50);
    Ok(out)
}

/// The static-token bridge auth of `services/sidecar/auth.py` (comfyui-openclaw.md §1.3), with
/// the texts a real server sent (comfy-real.md §6.2). `scope` is what the endpoint needs.
fn bridge_auth(state: &Ext, headers: &HeaderMap, scope: Option<(&str, &str)>) -> Result<(), Response> {
    let Some(expected) = &state.device_token else {
        return Err(error(StatusCode::FORBIDDEN, "Bridge not enabled"));
    };
    let alias = |a: &str, b: &str| header_str(headers, a).or_else(|| header_str(headers, b));
    if alias("x-openclaw-device-id", "x-moltbot-device-id").is_none_or(|d| d.is_empty()) {
        return Err(error(StatusCode::UNAUTHORIZED, "Missing device ID"));
    }
    let Some(token) = alias("x-openclaw-device-token", "x-moltbot-device-token").filter(|t| !t.is_empty()) else {
        return Err(error(StatusCode::UNAUTHORIZED, "Missing device token"));
    };
    if token != *expected {
        return Err(error(StatusCode::UNAUTHORIZED, "Invalid device token"));
    }
    if let Some((scope, repr)) = scope {
        let Some(scopes) = alias("x-openclaw-scopes", "x-moltbot-scopes") else {
            return Err(error(StatusCode::UNAUTHORIZED, "Missing X-OpenClaw-Scopes header"));
        };
        if !scopes.split(',').any(|s| s.trim() == scope) {
            return Err(error(StatusCode::UNAUTHORIZED, &format!("Missing required scope: {repr}")));
        }
    }
    Ok(())
}

async fn bridge_health(State(state): State<Arc<Ext>>) -> Response {
    if state.device_token.is_none() {
        return error(StatusCode::FORBIDDEN, "Bridge not enabled");
    }
    ok(&json!({"ok": true, "version": "unknown", "uptime_sec": state.started.elapsed().as_secs_f64(),
               "job_queue_depth": 0}))
}

/// `POST /bridge/handshake`: the N/N-1 policy of `services/bridge_handshake.py`
/// (comfyui-openclaw.md §1.4): 200 when compatible, 409 when not, 400 for a non-integer.
async fn handshake(State(state): State<Arc<Ext>>, body: Bytes) -> Response {
    let version = serde_json::from_slice::<Value>(&body).ok().and_then(|v| v.get("version").and_then(Value::as_i64));
    let Some(version) = version else { return error(StatusCode::BAD_REQUEST, "Invalid version format") };
    let server = state.bridge_version;
    let min = (server - 1).max(1);
    let metadata = json!({"server_version": server, "min_supported": min, "client_version": version});
    if version > server {
        json_response(
            StatusCode::CONFLICT,
            &json!({"ok": false, "message": format!("Client version {version} is newer than server {server}. Please upgrade Core."),
                    "metadata": metadata}),
        )
    } else if version < min {
        json_response(
            StatusCode::CONFLICT,
            &json!({"ok": false, "message": format!("Client version {version} is too old. Minimum supported is {min}."),
                    "metadata": metadata}),
        )
    } else {
        ok(&json!({"ok": true, "message": "Compatible", "metadata": metadata}))
    }
}

async fn bridge_submit(State(state): State<Arc<Ext>>, headers: HeaderMap, body: Bytes) -> Response {
    if let Err(r) = bridge_auth(&state, &headers, Some(("job:submit", "BridgeScope.JOB_SUBMIT"))) {
        return r;
    }
    let body = match parse_body(&body) {
        Ok(b) => b,
        Err(r) => return r,
    };
    let Some(template_id) = body.get("template_id").and_then(Value::as_str).filter(|t| !t.is_empty()) else {
        return error(StatusCode::BAD_REQUEST, "template_id required");
    };
    let Some(key) = body.get("idempotency_key").and_then(Value::as_str).filter(|k| !k.is_empty()) else {
        return error(StatusCode::BAD_REQUEST, "idempotency_key required");
    };
    let inputs = body.get("inputs").cloned().unwrap_or(json!({}));
    if inputs.to_string().len() > 64 * 1024 {
        return error(StatusCode::BAD_REQUEST, "inputs exceeds 64KB");
    }
    let trace = header_str(&headers, "x-openclaw-trace-id")
        .or_else(|| body.get("trace_id").and_then(Value::as_str).map(str::to_owned))
        .or_else(|| body.get("traceId").and_then(Value::as_str).map(str::to_owned))
        .unwrap_or_else(|| new_hex(32));
    // The key is recorded before the submit is tried (the trap of comfyui-openclaw.md §1.4).
    {
        let mut data = state.data();
        if let Some(prompt) = data.bridge_keys.get(key).cloned() {
            // A dedupe reply carries a new trace id (comfy-real.md §8.7).
            return ok(&json!({"ok": true, "deduped": true, "prompt_id": prompt, "trace_id": new_hex(32),
                              "status": "queued", "message": "Duplicate request suppressed"}));
        }
        data.bridge_keys.insert(key.to_owned(), None);
    }
    let session = body.get("session_id").and_then(Value::as_str).unwrap_or("bridge").to_owned();
    match state.submit(template_id, &inputs, &trace, &session, None).await {
        Ok(prompt) => {
            let mut data = state.data();
            data.bridge_keys.insert(key.to_owned(), Some(prompt.clone()));
            let now = SystemTime::now().duration_since(UNIX_EPOCH).map(|d| d.as_secs_f64()).unwrap_or(0.0);
            data.traces.insert(
                prompt.clone(),
                json!({"prompt_id": prompt, "trace_id": trace, "created_at": now,
                       "events": [{"ts": now, "event": "queued", "meta": {"source": "bridge"}}]}),
            );
            ok(&json!({"ok": true, "prompt_id": prompt, "trace_id": trace, "status": "queued"}))
        }
        // An unknown template is a ValueError the server maps to 500.
        Err(_) => error(StatusCode::INTERNAL_SERVER_ERROR, "Internal server error"),
    }
}

async fn unwired_submit(State(state): State<Arc<Ext>>, headers: HeaderMap) -> Response {
    if let Err(r) = bridge_auth(&state, &headers, Some(("job:submit", "BridgeScope.JOB_SUBMIT"))) {
        return r;
    }
    json_response(
        StatusCode::SERVICE_UNAVAILABLE,
        &json!({"error": "Bridge submit service not configured", "ok": false}),
    )
}

async fn bridge_deliver(State(state): State<Arc<Ext>>, headers: HeaderMap, body: Bytes) -> Response {
    if let Err(r) = bridge_auth(&state, &headers, Some(("delivery:send", "BridgeScope.DELIVERY_SEND"))) {
        return r;
    }
    let body = match parse_body(&body) {
        Ok(b) => b,
        Err(r) => return r,
    };
    if body.get("target").and_then(Value::as_str).is_none_or(str::is_empty) {
        return error(StatusCode::BAD_REQUEST, "target required");
    }
    if body.get("idempotency_key").and_then(Value::as_str).is_none_or(str::is_empty) {
        return error(StatusCode::BAD_REQUEST, "idempotency_key required");
    }
    if body.get("text").and_then(Value::as_str).is_some_and(|t| t.chars().count() > 8000) {
        return error(StatusCode::BAD_REQUEST, "text exceeds 8000 chars");
    }
    if body.get("files").and_then(Value::as_array).is_some_and(|f| f.len() > 10) {
        return error(StatusCode::BAD_REQUEST, "files exceeds 10");
    }
    // No delivery router is wired in production: it always reports delivered.
    ok(&json!({"ok": true, "status": "delivered"}))
}

async fn worker_poll(
    State(state): State<Arc<Ext>>,
    headers: HeaderMap,
    Query(q): Query<HashMap<String, String>>,
) -> Response {
    if let Err(r) = bridge_auth(&state, &headers, Some(("job:status", "BridgeScope.JOB_STATUS"))) {
        return r;
    }
    if let Some(b) = q.get("batch")
        && b.parse::<i64>().is_err()
    {
        return error(StatusCode::BAD_REQUEST, "batch must be an integer (1-5)");
    }
    // The worker queue is never filled in production.
    StatusCode::NO_CONTENT.into_response()
}

async fn worker_result(
    State(state): State<Arc<Ext>>,
    headers: HeaderMap,
    Path(job_id): Path<String>,
    body: Bytes,
) -> Response {
    if let Err(r) = bridge_auth(&state, &headers, Some(("job:submit", "BridgeScope.JOB_SUBMIT"))) {
        return r;
    }
    if let Err(r) = parse_body(&body) {
        return r;
    }
    if let Some(key) = header_str(&headers, "x-idempotency-key") {
        let mut data = state.data();
        if data.worker_results.contains_key(&key) {
            return ok(&json!({"ok": true, "job_id": job_id, "status": "accepted", "deduped": true}));
        }
        data.worker_results.insert(key, job_id.clone());
    }
    json_response(StatusCode::CREATED, &json!({"ok": true, "job_id": job_id, "status": "accepted"}))
}

async fn worker_heartbeat(State(state): State<Arc<Ext>>, headers: HeaderMap) -> Response {
    if let Err(r) = bridge_auth(&state, &headers, None) {
        return r;
    }
    ok(&json!({"ok": true}))
}

/// Ids of approvals in `data`, for tests of this module.
#[cfg(test)]
fn approval_ids(state: &Ext) -> std::collections::BTreeMap<String, String> {
    state
        .data()
        .approvals
        .iter()
        .map(|a| {
            (
                a["approval_id"].as_str().unwrap_or_default().to_owned(),
                a["status"].as_str().unwrap_or_default().to_owned(),
            )
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn render_replaces_exact_placeholders_with_any_json_type() {
        let graph = json!({"1": {"inputs": {"width": "{{width}}", "label": "size {{width}}", "list": ["{{c}}"]}}});
        let mut values = Map::new();
        values.insert("width".into(), json!(64));
        values.insert("c".into(), json!({"r": 1}));
        let out = render(&graph, &values);
        assert_eq!(out["1"]["inputs"]["width"], json!(64));
        assert_eq!(out["1"]["inputs"]["label"], "size {{width}}", "only exact placeholders");
        assert_eq!(out["1"]["inputs"]["list"][0], json!({"r": 1}));
    }

    #[test]
    fn ids_and_times_have_the_recorded_shapes() {
        let a = new_hex(12);
        assert_eq!(a.len(), 12);
        assert!(a.chars().all(|c| c.is_ascii_hexdigit() && !c.is_ascii_uppercase()));
        assert_ne!(a, new_hex(12));
        assert_eq!(iso(UNIX_EPOCH + Duration::from_micros(1_795_311_600_614_665)), "2026-11-22T01:40:00.614665+00:00");
        let u = new_uuid();
        assert_eq!(u.len(), 36);
        assert_eq!(&u[14..15], "4");
    }

    #[tokio::test]
    async fn approvals_are_decided_once() {
        let fake = FakeOpenClaw::start().await.expect("fake");
        let id = fake.add_pending_approval("invert", json!({"color": 1}));
        assert_eq!(approval_ids(&fake.state).get(&id).map(String::as_str), Some("pending"));
        let http = reqwest::Client::new();
        let url = format!("{}/openclaw/approvals/{id}/approve", fake.base_url());
        let first = http
            .post(&url)
            .header("X-OpenClaw-Admin-Token", "test-admin-token-123")
            .json(&json!({"auto_execute": true}))
            .send()
            .await
            .expect("approve");
        assert_eq!(first.status(), 200);
        let body: Value = first.json().await.expect("json");
        assert_eq!(body["executed"], true, "{body}");
        assert_eq!(fake.comfy().submitted().len(), 1);
        let again = http
            .post(&url)
            .header("X-OpenClaw-Admin-Token", "test-admin-token-123")
            .json(&json!({}))
            .send()
            .await
            .expect("again");
        assert_eq!(again.status(), 400);
        let body: Value = again.json().await.expect("json");
        assert_eq!(body["error"], "Cannot approve request in status: approved");
    }
}
