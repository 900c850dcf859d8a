//! The ComfyUI workers: each one's client, health and load, the probes that keep them current,
//! and the choice of a worker for the next job.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};

use parking_lot::Mutex;
use std::time::Duration;

use serde_json::Value;

use clawgate_protocol::methods::comfy::ComfyWorker;

use clawgate_comfy::client::ComfyClient;
use clawgate_comfy::openclaw::{DeviceCredentials, OpenClawClient, OpenClawError};

use crate::gateway::Gateway;

use super::{OpenClawAuth, WorkerConfig};

/// Health probe period.
const PROBE_EVERY: Duration = Duration::from_secs(5);

/// One ComfyUI server.
pub struct Worker {
    /// Its config.
    pub cfg: WorkerConfig,
    pub(super) client: ComfyClient,
    /// The extension's endpoints (mode `openclaw`).
    pub(super) openclaw: Option<OpenClawClient>,
    pub(super) healthy: AtomicBool,
    pub(super) running: AtomicUsize,
    pub(super) last_error: Mutex<Option<String>>,
    pub(super) queue_remaining: Mutex<Option<u64>>,
    /// The extension's version and template ids, from its last probe (mode `openclaw`).
    pub(super) remote: Mutex<RemoteInfo>,
}

#[derive(Debug, Default, Clone)]
pub(super) struct RemoteInfo {
    version: Option<String>,
    templates: Option<Vec<String>>,
}

impl std::fmt::Debug for Worker {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Worker").field("name", &self.cfg.name).finish()
    }
}

impl Worker {
    /// Did the last probe succeed?
    pub fn healthy(&self) -> bool {
        self.healthy.load(Ordering::Relaxed)
    }

    /// Jobs this gateway runs on it now.
    pub fn running(&self) -> usize {
        self.running.load(Ordering::Relaxed)
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
            last_error: self.last_error.lock().clone(),
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

    pub(super) fn mark(&self, healthy: bool, error: Option<String>) {
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

pub(super) fn openclaw_client(url: &str, auth: &OpenClawAuth) -> Result<OpenClawClient, OpenClawError> {
    let device = match (&auth.device_id, &auth.device_token) {
        (Some(id), Some(token)) => {
            Some(DeviceCredentials { id: id.clone(), token: token.clone(), scopes: auth.device_scopes.clone() })
        }
        _ => None,
    };
    Ok(OpenClawClient::new(url, auth.admin_token.clone(), device)?.with_obs_token(auth.obs_token.clone()))
}

/// An `openclaw` worker is healthy when its extension answers `/openclaw/health`; its template
/// list is read when it comes (back) up, and templates clawgate has that it lacks are named.
async fn probe_extension(gw: &Gateway, w: &Worker, oc: &OpenClawClient) -> Result<(), String> {
    let health = oc.health().await.map_err(|e| e.to_string())?;
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
    let mut remote = w.remote.lock();
    remote.version = health.version;
    if let Some(ids) = templates {
        if let Some(lib) = gw.comfy.library() {
            let missing: Vec<String> = lib.list().iter().map(|t| t.id.clone()).filter(|id| !ids.contains(id)).collect();
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

pub(super) async fn probe(gw: &Gateway, w: &Worker) {
    if let Some(oc) = &w.openclaw
        && let Err(e) = probe_extension(gw, w, oc).await
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

pub(super) async fn probe_loop(gw: Arc<Gateway>, w: Arc<Worker>) {
    let cancel = gw.shutdown_token();
    loop {
        tokio::select! {
            () = cancel.cancelled() => return,
            () = tokio::time::sleep(PROBE_EVERY) => {}
        }
        let was = w.healthy();
        probe(&gw, &w).await;
        if !was && w.healthy() {
            gw.comfy.kick.notify_one();
        }
    }
}

/// The healthy worker with room and the least outstanding work per unit of weight.
pub(super) fn pick_worker(workers: &[Arc<Worker>]) -> Option<Arc<Worker>> {
    workers
        .iter()
        .filter(|w| w.healthy() && w.running() < w.cfg.max_concurrent)
        .min_by(|a, b| {
            let la = (a.running() as f64 + 1.0) / a.cfg.weight;
            let lb = (b.running() as f64 + 1.0) / b.cfg.weight;
            la.partial_cmp(&lb).unwrap_or(std::cmp::Ordering::Equal)
        })
        .cloned()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn worker(name: &str, max: usize, weight: f64, running: usize, healthy: bool) -> Arc<Worker> {
        Arc::new(Worker {
            cfg: WorkerConfig {
                name: name.into(),
                url: clawgate_config::SecretUrl::new("http://127.0.0.1:1"),
                mode: "comfyui".into(),
                openclaw: None,
                max_concurrent: max,
                weight,
            },
            client: ComfyClient::new("http://127.0.0.1:1", "t").unwrap(),
            openclaw: None,
            healthy: AtomicBool::new(healthy),
            running: AtomicUsize::new(running),
            last_error: Mutex::new(None),
            queue_remaining: Mutex::new(None),
            remote: Mutex::new(RemoteInfo::default()),
        })
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
}
