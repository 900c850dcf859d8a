//! The ComfyUI workers: each one's client, health and load, the probes that keep them current,
//! the choice of a worker for the next job, and the templates directory they render from.
//!
//! A [`Pool`] is built once from the resolved `comfy.workers` ([`WorkerConfig`]); the gateway
//! core hands it to a [`crate::dispatch::Dispatcher`] and reads it for `comfy.workers.list`,
//! `/workers` and `/templates`.

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::time::Duration;

use parking_lot::{Mutex, RwLock};
use serde_json::Value;
use tokio::sync::Notify;
use tokio_util::sync::CancellationToken;

use clawgate_config::SecretUrl;
use clawgate_protocol::methods::comfy::ComfyWorker;

use crate::client::ComfyClient;
use crate::joined::{JoinRequest, JoinedLink};
use crate::openclaw::{BRIDGE_PROTOCOL_VERSION, BridgeHandshake, DeviceCredentials, OpenClawClient, OpenClawError};
use crate::templates::TemplateLibrary;

/// Health probe period.
const PROBE_EVERY: Duration = Duration::from_secs(5);

/// One ComfyUI server, as configured (`comfy.workers[i]`, secrets read).
#[derive(Debug, Clone, PartialEq)]
pub struct WorkerConfig {
    /// Unique name (`gpu-a`).
    pub name: String,
    /// Base URL of its HTTP API. A password in it is a secret: the type shows it redacted
    /// everywhere (`comfy.workers.list`, logs, `Debug`); only `expose()` gives the real URL.
    pub url: SecretUrl,
    /// `comfyui` (clawgate drives native ComfyUI) or `openclaw` (through the ComfyUI-OpenClaw
    /// extension's endpoints on the same server).
    pub mode: String,
    /// Credentials of an `openclaw` worker (`None` for `comfyui`).
    pub openclaw: Option<OpenClawAuth>,
    /// Jobs this gateway runs on it at once.
    pub max_concurrent: usize,
    /// Relative capacity when spreading jobs.
    pub weight: f64,
}

/// How clawgate authenticates to a ComfyUI-OpenClaw extension. Debug output names which
/// secrets are set, never their values.
#[derive(Clone, PartialEq, Default)]
pub struct OpenClawAuth {
    /// `adminToken`: sent as `X-OpenClaw-Admin-Token` (triggers, approvals, schedules, trace,
    /// jobs) — the extension's `OPENCLAW_ADMIN_TOKEN`.
    pub admin_token: Option<String>,
    /// `obsToken`: `X-OpenClaw-Obs-Token` for `/openclaw/templates` from a remote host.
    pub obs_token: Option<String>,
    /// `device.id`: `X-OpenClaw-Device-Id` for the bridge API.
    pub device_id: Option<String>,
    /// `device.token`: `X-OpenClaw-Device-Token` (the extension's
    /// `OPENCLAW_BRIDGE_DEVICE_TOKEN` or an issued device token).
    pub device_token: Option<String>,
    /// `device.scopes`: `X-OpenClaw-Scopes` (default `job:submit`, `job:status`).
    pub device_scopes: Vec<String>,
}

impl std::fmt::Debug for OpenClawAuth {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("OpenClawAuth")
            .field("admin_token", &self.admin_token.as_ref().map(|_| "***"))
            .field("obs_token", &self.obs_token.as_ref().map(|_| "***"))
            .field("device_id", &self.device_id)
            .field("device_token", &self.device_token.as_ref().map(|_| "***"))
            .field("device_scopes", &self.device_scopes)
            .finish()
    }
}

/// One ComfyUI server: its clients and what the probes and the dispatcher last saw of it.
pub struct Worker {
    /// Its config.
    pub cfg: WorkerConfig,
    pub(crate) client: ComfyClient,
    /// The extension's endpoints (mode `openclaw`).
    openclaw: Option<OpenClawClient>,
    healthy: AtomicBool,
    /// Jobs this gateway runs on it now (the dispatcher counts them).
    running: AtomicUsize,
    last_error: Mutex<Option<String>>,
    queue_remaining: Mutex<Option<u64>>,
    /// The extension's version and template ids, from its last probe (mode `openclaw`).
    remote: Mutex<RemoteInfo>,
    /// A worker that joined by itself (`clawgate worker`): its connection. Its `client` is never
    /// called (its ComfyUI is reachable only from the worker).
    link: Option<Arc<JoinedLink>>,
    /// Whether this gateway drives it: `Some` while it does — always with one gateway; in a
    /// cluster while it holds the worker's lease ([`crate::dispatch::WorkerLeases`]). The token
    /// is cancelled when the lease is lost, which ends every task following a job on it.
    drive: Mutex<Option<CancellationToken>>,
}

#[derive(Debug, Default, Clone)]
struct RemoteInfo {
    version: Option<String>,
    templates: Option<Vec<String>>,
}

impl std::fmt::Debug for Worker {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Worker").field("name", &self.cfg.name).finish()
    }
}

/// Why a configured worker cannot be used (its URL or its extension credentials).
#[derive(Debug, thiserror::Error)]
pub enum WorkerError {
    /// The native client refused the URL.
    #[error(transparent)]
    Client(#[from] crate::client::ComfyError),
    /// The extension client refused the URL or credentials.
    #[error(transparent)]
    OpenClaw(#[from] OpenClawError),
}

impl Worker {
    /// A worker from its config, not yet probed (so not healthy). `client_id` names this
    /// gateway to ComfyUI (its WS events are addressed to it).
    pub fn new(cfg: WorkerConfig, client_id: &str) -> Result<Self, WorkerError> {
        let client = ComfyClient::new(cfg.url.expose(), client_id)?;
        let openclaw = cfg.openclaw.as_ref().map(|auth| openclaw_client(cfg.url.expose(), auth)).transpose()?;
        Ok(Self {
            cfg,
            client,
            openclaw,
            healthy: AtomicBool::new(false),
            running: AtomicUsize::new(0),
            last_error: Mutex::new(None),
            queue_remaining: Mutex::new(None),
            remote: Mutex::new(RemoteInfo::default()),
            link: None,
            drive: Mutex::new(Some(CancellationToken::new())),
        })
    }

    /// A worker that joined by itself on a connection (`link`): healthy from the start (it just
    /// spoke), never probed (its heartbeats say how its ComfyUI is).
    pub(crate) fn joined(req: &JoinRequest, link: Arc<JoinedLink>) -> Result<Self, WorkerError> {
        let cfg = WorkerConfig {
            name: req.name.clone(),
            url: SecretUrl::new("-"),
            mode: "comfyui".to_owned(),
            openclaw: None,
            max_concurrent: req.capacity.clamp(1, 64),
            weight: 1.0,
        };
        // Never called: the dispatcher hands a joined worker's jobs to its link.
        let client = ComfyClient::new("http://joined.invalid", req.name.clone())?;
        Ok(Self {
            cfg,
            client,
            openclaw: None,
            healthy: AtomicBool::new(true),
            running: AtomicUsize::new(0),
            last_error: Mutex::new(None),
            queue_remaining: Mutex::new(None),
            remote: Mutex::new(RemoteInfo { version: req.comfy_version.clone(), templates: req.templates.clone() }),
            link: Some(link),
            drive: Mutex::new(Some(CancellationToken::new())),
        })
    }

    /// A joined worker's connection (`None` for a configured worker).
    pub fn link(&self) -> Option<&Arc<JoinedLink>> {
        self.link.as_ref()
    }

    /// A joined worker's heartbeat: how its ComfyUI answered the worker's last look.
    pub fn heartbeat(&self, now_ms: i64, comfy_error: Option<String>, queue_remaining: Option<u64>) {
        if let Some(link) = &self.link {
            link.seen(now_ms);
        }
        *self.queue_remaining.lock() = queue_remaining;
        let healthy = comfy_error.is_none();
        self.mark(healthy, comfy_error);
    }

    /// Whether this gateway drives the worker now (in a cluster: holds its lease).
    pub fn driven(&self) -> bool {
        self.drive.lock().is_some()
    }

    /// Cancelled when this gateway stops driving the worker (`None`: it does not drive it now).
    pub(crate) fn drive_token(&self) -> Option<CancellationToken> {
        self.drive.lock().clone()
    }

    /// Start (`true`) or stop (`false`) driving the worker. Stopping cancels the tasks that
    /// follow its jobs: the gateway that drives it next reconciles them. Whether it changed.
    pub(crate) fn set_driven(&self, driven: bool) -> bool {
        let mut drive = self.drive.lock();
        match (driven, drive.is_some()) {
            (true, false) => {
                *drive = Some(CancellationToken::new());
                true
            }
            (false, true) => {
                if let Some(token) = drive.take() {
                    token.cancel();
                }
                true
            }
            _ => false,
        }
    }

    /// Did the last probe succeed?
    pub fn healthy(&self) -> bool {
        self.healthy.load(Ordering::Relaxed)
    }

    /// Jobs this gateway runs on it now.
    pub fn running(&self) -> usize {
        self.running.load(Ordering::Relaxed)
    }

    /// The native ComfyUI client.
    pub fn client(&self) -> &ComfyClient {
        &self.client
    }

    /// The ComfyUI-OpenClaw extension's client (mode `openclaw`).
    pub fn openclaw(&self) -> Option<&OpenClawClient> {
        self.openclaw.as_ref()
    }

    /// The extension's version from the last probe (mode `openclaw`).
    pub fn remote_version(&self) -> Option<String> {
        self.remote.lock().version.clone()
    }

    /// What `comfy.workers.list` shows of it.
    pub fn summary(&self) -> ComfyWorker {
        let remote = self.remote.lock().clone();
        ComfyWorker {
            healthy: self.healthy(),
            kind: if self.link.is_some() { "joined" } else { "configured" }.to_owned(),
            last_error: self.last_error.lock().clone(),
            last_heartbeat: self.link.as_ref().map(|l| l.last_seen_ms()),
            max_concurrent: self.cfg.max_concurrent,
            mode: self.cfg.mode.clone(),
            name: self.cfg.name.clone(),
            queue_remaining: *self.queue_remaining.lock(),
            running: self.running(),
            templates: remote.templates,
            url: self.cfg.url.to_string(),
            version: remote.version,
            weight: self.cfg.weight,
        }
    }

    /// One more job of ours runs on it; the guard counts it off when dropped.
    pub(crate) fn occupy(self: &Arc<Self>) -> Occupied {
        self.running.fetch_add(1, Ordering::Relaxed);
        Occupied(self.clone())
    }

    pub(crate) fn mark(&self, healthy: bool, error: Option<String>) {
        // Errors from the HTTP client may quote the URL; its password never leaves the worker.
        let error = error.map(|e| self.cfg.url.scrub(&e));
        let was = self.healthy.swap(healthy, Ordering::Relaxed);
        if was != healthy {
            if healthy {
                tracing::info!(worker = %self.cfg.name, "ComfyUI worker is reachable");
            } else {
                tracing::warn!(worker = %self.cfg.name, error = ?error, "ComfyUI worker is unreachable");
            }
        }
        if let Some(e) = error {
            *self.last_error.lock() = Some(e);
        }
    }
}

/// A job of ours running on a worker; counted off when dropped (also when its task is
/// cancelled mid-way).
pub(crate) struct Occupied(Arc<Worker>);

impl Drop for Occupied {
    fn drop(&mut self) {
        self.0.running.fetch_sub(1, Ordering::Relaxed);
    }
}

fn openclaw_client(url: &str, auth: &OpenClawAuth) -> Result<OpenClawClient, OpenClawError> {
    let device = match (&auth.device_id, &auth.device_token) {
        (Some(id), Some(token)) => {
            Some(DeviceCredentials { id: id.clone(), token: token.clone(), scopes: auth.device_scopes.clone() })
        }
        _ => None,
    };
    Ok(OpenClawClient::new(url, auth.admin_token.clone(), device)?.with_obs_token(auth.obs_token.clone()))
}

/// The workers, the templates directory, and the wake-up of the dispatcher.
pub struct Pool {
    workers: Vec<Arc<Worker>>,
    templates: Templates,
    /// Rung when a job may have become runnable (queued, released, a worker freed or back up).
    kick: Notify,
}

impl std::fmt::Debug for Pool {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Pool").field("workers", &self.workers).finish_non_exhaustive()
    }
}

impl Pool {
    /// The configured workers (in config order; one that cannot be used is logged and left
    /// out) and the templates in `templates_dir`, loaded now.
    pub fn new(workers: &[WorkerConfig], templates_dir: &Path, client_id: &str) -> Self {
        Self::rebuild(None, workers, templates_dir, client_id).0
    }

    /// A pool for a changed `comfy.*` (a config reload): a worker whose config is unchanged is
    /// the same [`Worker`] as in `previous` (its health and the jobs it runs carry over, so
    /// `maxConcurrent` still counts them); a new or changed one gets a fresh client. Also
    /// returns, per worker that cannot be used (left out, as in [`Pool::new`]), why.
    pub fn rebuild(
        previous: Option<&Pool>,
        workers: &[WorkerConfig],
        templates_dir: &Path,
        client_id: &str,
    ) -> (Self, Vec<String>) {
        let mut problems = Vec::new();
        let workers = workers
            .iter()
            .filter_map(|w| {
                if let Some(same) = previous.and_then(|p| p.workers.iter().find(|old| old.cfg == *w)) {
                    return Some(same.clone());
                }
                match Worker::new(w.clone(), client_id) {
                    Ok(worker) => Some(Arc::new(worker)),
                    Err(e) => {
                        tracing::error!(worker = %w.name, error = %e, "ComfyUI worker cannot be used");
                        problems.push(format!("worker {}: {}", w.name, w.url.scrub(&e.to_string())));
                        None
                    }
                }
            })
            .collect();
        (Self { workers, templates: Templates::new(templates_dir.to_owned()), kick: Notify::new() }, problems)
    }

    /// A pool of these workers (tests build workers themselves).
    pub fn with_workers(workers: Vec<Arc<Worker>>, templates_dir: &Path) -> Self {
        Self { workers, templates: Templates::new(templates_dir.to_owned()), kick: Notify::new() }
    }

    /// The workers.
    pub fn workers(&self) -> &[Arc<Worker>] {
        &self.workers
    }

    /// The worker named `name`.
    pub fn worker(&self, name: &str) -> Option<Arc<Worker>> {
        self.workers.iter().find(|w| w.cfg.name == name).cloned()
    }

    /// Workers in mode `openclaw`.
    pub fn openclaw_workers(&self) -> Vec<Arc<Worker>> {
        self.workers.iter().filter(|w| w.openclaw().is_some()).cloned().collect()
    }

    /// The loaded templates, reloaded first when a file in the templates directory changed
    /// (so a fixed template is picked up without a restart or a config change).
    pub fn library(&self) -> Option<Arc<TemplateLibrary>> {
        self.templates.current()
    }

    /// Wake the dispatcher: a job may have become runnable.
    pub fn kick(&self) {
        self.kick.notify_one();
    }

    pub(crate) async fn kicked(&self) {
        self.kick.notified().await;
    }

    /// The healthy worker with room and the least outstanding work per unit of weight.
    pub fn pick(&self) -> Option<Arc<Worker>> {
        pick_worker(&self.workers)
    }

    /// The same choice among the configured workers and `joined` ones.
    pub fn pick_with(&self, joined: &[Arc<Worker>]) -> Option<Arc<Worker>> {
        if joined.is_empty() {
            return self.pick();
        }
        let all: Vec<Arc<Worker>> = self.workers.iter().chain(joined).cloned().collect();
        pick_worker(&all)
    }

    /// Probe one worker now: reachable? its queue, its version; for an `openclaw` worker its
    /// extension's health and templates.
    pub async fn probe(&self, w: &Worker) {
        if let Some(oc) = &w.openclaw
            && let Err(e) = self.probe_extension(w, oc).await
        {
            return w.mark(false, Some(e));
        }
        if w.openclaw.is_none() && !w.healthy() {
            // Coming (back) up: `/system_stats` says it is ComfyUI, and which version.
            match w.client.system_stats().await {
                Ok(stats) => {
                    let version = stats.pointer("/system/comfyui_version").and_then(Value::as_str).map(str::to_owned);
                    w.remote.lock().version = version;
                }
                Err(e) => return w.mark(false, Some(e.to_string())),
            }
        }
        match w.client.queue().await {
            Ok(q) => {
                *w.queue_remaining.lock() = Some((q.running.len() + q.pending.len()) as u64);
                w.mark(true, None);
            }
            Err(e) => w.mark(false, Some(e.to_string())),
        }
    }

    /// Probe `w` every few seconds until `cancel`; a worker that comes back up wakes the
    /// dispatcher.
    pub async fn probe_loop(self: Arc<Self>, w: Arc<Worker>, cancel: CancellationToken) {
        loop {
            tokio::select! {
                () = cancel.cancelled() => return,
                () = tokio::time::sleep(PROBE_EVERY) => {}
            }
            let was = w.healthy();
            self.probe(&w).await;
            if !was && w.healthy() {
                self.kick();
            }
        }
    }

    /// An `openclaw` worker is healthy when its extension answers `/openclaw/health`; its
    /// template list is read when it comes (back) up, and templates clawgate has that it lacks
    /// are named.
    async fn probe_extension(&self, w: &Worker, oc: &OpenClawClient) -> Result<(), String> {
        let health = oc.health().await.map_err(|e| e.to_string())?;
        if !w.healthy() {
            // Coming (back) up: does its bridge speak our protocol version?
            match oc.bridge_handshake().await {
                Ok(BridgeHandshake::Mismatch { message, server_version, min_supported }) => {
                    let text = bridge_mismatch(&message, server_version, min_supported);
                    if oc.has_device() {
                        // Its jobs go through the bridge: they would fail there.
                        return Err(text);
                    }
                    tracing::warn!(worker = %w.cfg.name, "{text}");
                    *w.last_error.lock() = Some(text);
                }
                Ok(BridgeHandshake::Unavailable) if oc.has_device() => {
                    tracing::warn!(worker = %w.cfg.name,
                        "the extension has no POST /bridge/handshake (bridge off, or an older extension): \
                         bridge compatibility is not checked");
                }
                Ok(_) => {}
                Err(e) => tracing::debug!(worker = %w.cfg.name, error = %e, "bridge handshake failed"),
            }
        }
        let known = w.remote.lock().templates.is_some();
        let templates = if known && w.healthy() {
            None
        } else {
            match oc.templates().await {
                Ok(list) => Some(list.into_iter().map(|t| t.id).collect::<Vec<_>>()),
                Err(e) => {
                    tracing::warn!(worker = %w.cfg.name, error = %e, "cannot list the extension's templates");
                    None
                }
            }
        };
        let library = if templates.is_some() { self.library() } else { None };
        let mut remote = w.remote.lock();
        remote.version = health.version;
        if let Some(ids) = templates {
            if let Some(lib) = library {
                let missing: Vec<String> =
                    lib.list().iter().map(|t| t.id.clone()).filter(|id| !ids.contains(id)).collect();
                if !missing.is_empty() {
                    tracing::warn!(worker = %w.cfg.name, missing = ?missing,
                        "the worker's ComfyUI-OpenClaw extension lacks these templates; jobs using them fail there — \
                         copy them into its data/templates");
                }
            }
            remote.templates = Some(ids);
        }
        Ok(())
    }
}

/// How a bridge version mismatch reads in a worker's status.
fn bridge_mismatch(message: &str, server: Option<i64>, min: Option<i64>) -> String {
    let theirs = match (server, min) {
        (Some(s), Some(m)) => format!(" (the extension speaks bridge protocol {m}–{s})"),
        (Some(s), None) => format!(" (the extension speaks bridge protocol {s})"),
        _ => String::new(),
    };
    format!(
        "bridge version mismatch: clawgate speaks bridge protocol {BRIDGE_PROTOCOL_VERSION}{theirs}; the extension \
         says: {message}"
    )
}

/// The healthy worker with room and the least outstanding work per unit of weight.
fn pick_worker(workers: &[Arc<Worker>]) -> Option<Arc<Worker>> {
    workers
        .iter()
        .filter(|w| {
            w.healthy()
                && w.driven()
                && w.running() < w.cfg.max_concurrent
                && !w.link.as_ref().is_some_and(|l| l.is_gone())
        })
        .min_by(|a, b| {
            let la = (a.running() as f64 + 1.0) / a.cfg.weight;
            let lb = (b.running() as f64 + 1.0) / b.cfg.weight;
            la.partial_cmp(&lb).unwrap_or(std::cmp::Ordering::Equal)
        })
        .cloned()
}

/// Names, sizes and modification times of the files in a directory: when it changes, the
/// templates are read again.
type DirFingerprint = Vec<(std::ffi::OsString, u64, Option<std::time::SystemTime>)>;

/// The templates directory and what was loaded from it.
struct Templates {
    dir: PathBuf,
    library: RwLock<Option<Arc<TemplateLibrary>>>,
    /// What the directory looked like when `library` was loaded.
    seen: Mutex<Option<DirFingerprint>>,
}

impl Templates {
    fn new(dir: PathBuf) -> Self {
        let seen = dir_fingerprint(&dir);
        let library = load_templates(&dir);
        Self { dir, library: RwLock::new(library), seen: Mutex::new(Some(seen)) }
    }

    fn current(&self) -> Option<Arc<TemplateLibrary>> {
        let now = dir_fingerprint(&self.dir);
        let mut seen = self.seen.lock();
        if seen.as_ref() != Some(&now) {
            *self.library.write() = load_templates(&self.dir);
            *seen = Some(now);
        }
        drop(seen);
        self.library.read().clone()
    }
}

fn dir_fingerprint(dir: &Path) -> DirFingerprint {
    let mut out: DirFingerprint = std::fs::read_dir(dir)
        .into_iter()
        .flatten()
        .flatten()
        .filter_map(|e| {
            let meta = e.metadata().ok()?;
            Some((e.file_name(), meta.len(), meta.modified().ok()))
        })
        .collect();
    out.sort();
    out
}

/// Loads the templates directory, template by template: each bad template is logged by name
/// and the good ones are kept.
fn load_templates(dir: &Path) -> Option<Arc<TemplateLibrary>> {
    match TemplateLibrary::load(dir) {
        Ok(lib) => {
            for problem in lib.problems() {
                tracing::warn!(template = %problem.name, error = %problem.error, "ComfyUI template not loaded");
            }
            tracing::info!(dir = %dir.display(), templates = lib.list().len(), bad = lib.problems().len(),
                "ComfyUI templates loaded");
            Some(Arc::new(lib))
        }
        Err(e) => {
            tracing::error!(dir = %dir.display(), error = %e, "ComfyUI templates could not be loaded");
            None
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn worker(name: &str, max: usize, weight: f64, running: usize, healthy: bool) -> Arc<Worker> {
        let w = Worker::new(
            WorkerConfig {
                name: name.into(),
                url: SecretUrl::new("http://127.0.0.1:1"),
                mode: "comfyui".into(),
                openclaw: None,
                max_concurrent: max,
                weight,
            },
            "t",
        )
        .unwrap();
        w.healthy.store(healthy, Ordering::Relaxed);
        w.running.store(running, Ordering::Relaxed);
        Arc::new(w)
    }

    #[test]
    fn picks_the_least_loaded_healthy_worker_with_room() {
        let ws = vec![worker("a", 2, 1.0, 1, true), worker("b", 2, 1.0, 0, true), worker("c", 5, 1.0, 0, false)];
        assert_eq!(pick_worker(&ws).unwrap().cfg.name, "b");
        let ws = vec![worker("a", 1, 1.0, 1, true), worker("b", 1, 1.0, 1, true)];
        assert!(pick_worker(&ws).is_none(), "everyone is full");
        let ws = vec![worker("small", 4, 1.0, 1, true), worker("big", 4, 3.0, 2, true)];
        assert_eq!(
            pick_worker(&ws).unwrap().cfg.name,
            "big",
            "weight 3 with 2 running is lighter than weight 1 with 1"
        );
    }

    #[test]
    fn an_occupied_worker_is_freed_when_its_job_ends() {
        let w = worker("a", 1, 1.0, 0, true);
        let job = w.occupy();
        assert_eq!(w.running(), 1);
        assert!(pick_worker(std::slice::from_ref(&w)).is_none(), "full while the job runs");
        drop(job);
        assert_eq!(w.running(), 0);
    }
}

#[cfg(test)]
mod bridge_probe_tests {
    use super::*;
    use clawgate_testkit::fake_openclaw::FakeOpenClaw;

    fn openclaw_worker(url: &str, with_device: bool) -> Arc<Worker> {
        let auth = OpenClawAuth {
            admin_token: Some("test-admin-token-123".into()),
            device_id: with_device.then(|| "clawgate".to_owned()),
            device_token: with_device.then(|| "test-device-token-456".to_owned()),
            device_scopes: vec!["job:submit".into(), "job:status".into()],
            ..OpenClawAuth::default()
        };
        let cfg = WorkerConfig {
            name: "studio".into(),
            url: SecretUrl::new(url),
            mode: "openclaw".into(),
            openclaw: Some(auth),
            max_concurrent: 1,
            weight: 1.0,
        };
        Arc::new(Worker::new(cfg, "t").unwrap())
    }

    #[tokio::test]
    async fn the_bridge_handshake_answers_compatible_mismatch_or_unavailable() {
        let same = FakeOpenClaw::start().await.unwrap();
        let oc = openclaw_worker(&same.base_url(), true);
        let answer = oc.openclaw().unwrap().bridge_handshake().await.unwrap();
        assert_eq!(answer, BridgeHandshake::Compatible { server_version: Some(1) });

        let newer = FakeOpenClaw::builder().bridge_version(3).start().await.unwrap();
        let answer = openclaw_worker(&newer.base_url(), true).openclaw().unwrap().bridge_handshake().await.unwrap();
        match answer {
            BridgeHandshake::Mismatch { message, server_version: Some(3), min_supported: Some(2) } => {
                assert_eq!(message, "Client version 1 is too old. Minimum supported is 2.");
            }
            other => panic!("{other:?}"),
        }

        let off = FakeOpenClaw::builder().bridge(None).start().await.unwrap();
        let answer = openclaw_worker(&off.base_url(), false).openclaw().unwrap().bridge_handshake().await.unwrap();
        assert_eq!(answer, BridgeHandshake::Unavailable);
    }

    #[tokio::test]
    async fn a_bridge_worker_of_another_protocol_version_is_unhealthy_and_says_why() {
        let newer = FakeOpenClaw::builder().bridge_version(3).start().await.unwrap();
        let dir = tempfile::tempdir().unwrap();
        let bridge = openclaw_worker(&newer.base_url(), true);
        let triggers = openclaw_worker(&newer.base_url(), false);
        let pool = Pool::with_workers(vec![bridge.clone(), triggers.clone()], dir.path());
        pool.probe(&bridge).await;
        assert!(!bridge.healthy(), "its jobs would go through a bridge that does not speak our version");
        let error = bridge.summary().last_error.unwrap_or_default();
        assert!(error.starts_with("bridge version mismatch: clawgate speaks bridge protocol 1"), "{error}");
        assert!(error.contains("protocol 2–3") && error.contains("Minimum supported is 2"), "{error}");
        pool.probe(&triggers).await;
        assert!(triggers.healthy(), "a worker driven by triggers does not use the bridge");
        assert!(triggers.summary().last_error.unwrap_or_default().starts_with("bridge version mismatch"));
    }
}
