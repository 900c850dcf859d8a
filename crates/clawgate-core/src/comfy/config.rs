//! `comfy.*` config:
//!
//! ```json5
//! comfy: {
//!   templatesDir: "templates",            // relative to the config file's directory
//!   workers: [
//!     { name: "gpu-a", url: "http://127.0.0.1:8188", maxConcurrent: 1, weight: 1 },
//!     { name: "gpu-b", url: "http://10.0.0.7:8188", maxConcurrent: 2, weight: 2 },
//!     // A ComfyUI with the ComfyUI-OpenClaw extension: templates are rendered by the extension
//!     // (its data/templates), jobs go through its bridge (device) or triggers/fire (admin token).
//!     { name: "studio", url: "http://10.0.0.8:8188", mode: "openclaw",
//!       adminToken: { env: "OPENCLAW_ADMIN_TOKEN" },
//!       device: { id: "clawgate", token: { env: "OPENCLAW_BRIDGE_DEVICE_TOKEN" } } },
//!   ],
//!   delivery: { maxImages: 8, maxBytes: 52428800 },
//!   commands: { adminUsers: ["telegram:123"], trustedUsers: [], overrides: {} },
//! }
//! ```

use std::path::{Path, PathBuf};

use clawgate_comfy::pool::{OpenClawAuth, WorkerConfig};
use clawgate_config::{ComfyWorker, Secret, WorkerMode};

/// A secret of a worker, read now; `path` names it in errors.
fn secret(secret: Option<&Secret>, path: &str, base_dir: &Path) -> Result<Option<String>, String> {
    secret.map(|s| s.resolve(base_dir).map_err(|e| format!("{path}: {e}"))).transpose()
}

fn openclaw_auth(w: &ComfyWorker, path: &str, base_dir: &Path) -> Result<OpenClawAuth, String> {
    let mut auth = OpenClawAuth {
        admin_token: secret(w.admin_token.as_ref(), &format!("{path}.adminToken"), base_dir)?,
        obs_token: secret(w.obs_token.as_ref(), &format!("{path}.obsToken"), base_dir)?,
        ..OpenClawAuth::default()
    };
    if let Some(device) = &w.device {
        auth.device_id = Some(device.id.clone());
        auth.device_token = secret(device.token.as_ref(), &format!("{path}.device.token"), base_dir)?;
        auth.device_scopes =
            device.scopes.clone().unwrap_or_else(|| vec!["job:submit".to_owned(), "job:status".to_owned()]);
    }
    Ok(auth)
}

/// The `comfy` section, resolved.
#[derive(Debug, Clone)]
pub struct ComfyConfig {
    /// Workers in config order.
    pub workers: Vec<WorkerConfig>,
    /// The templates directory.
    pub templates_dir: PathBuf,
    /// Most images delivered per job.
    pub max_images: usize,
    /// Largest image delivered.
    pub max_bytes: u64,
    /// Who may run which command (`comfy.commands`), parsed once at load.
    pub policy: clawgate_comfy::command::CommandPolicy,
}

impl ComfyConfig {
    /// `None` when there is no `comfy` section (ComfyUI off). The section's shape was checked
    /// when the config was decoded; this reads the secrets and the command policy. Errors name
    /// the key.
    pub fn from_config(config: &clawgate_config::Config, base_dir: &Path) -> Result<Option<Self>, String> {
        let Some(section) = &config.comfy else { return Ok(None) };
        let mut workers = Vec::with_capacity(section.workers.len());
        for (i, w) in section.workers.iter().enumerate() {
            let path = format!("comfy.workers[{i}]");
            let (mode, openclaw) = match w.mode {
                WorkerMode::Comfyui => ("comfyui", None),
                WorkerMode::Openclaw => ("openclaw", Some(openclaw_auth(w, &path, base_dir)?)),
            };
            workers.push(WorkerConfig {
                name: w.name.clone(),
                url: clawgate_config::SecretUrl::new(w.url.clone()),
                mode: mode.to_owned(),
                openclaw,
                max_concurrent: usize::try_from(w.max_concurrent.unwrap_or(1).clamp(1, 64)).unwrap_or(1),
                weight: w.weight.unwrap_or(1.0),
            });
        }
        let dir = section.templates_dir.as_deref().unwrap_or("templates");
        let templates_dir = clawgate_config::resolve_path(base_dir, Path::new(dir));
        let max_images = usize::try_from(section.delivery.max_images.unwrap_or(8).clamp(1, 100)).unwrap_or(8);
        let max_bytes = section.delivery.max_bytes.unwrap_or(50 * 1024 * 1024);
        let policy = clawgate_comfy::command::CommandPolicy::from_config(&section.commands)
            .map_err(|e| format!("comfy.commands: {e}"))?;
        Ok(Some(Self { workers, templates_dir, max_images, max_bytes, policy }))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::{Value, json};

    /// Decodes `value` as a whole config, then resolves its `comfy` section; either step's
    /// first error as `key: message`.
    fn comfy(value: Value, base_dir: &Path) -> Result<Option<ComfyConfig>, String> {
        let config = clawgate_config::Config::from_value(&value).map_err(|e| e.to_string())?;
        ComfyConfig::from_config(&config, base_dir)
    }

    #[test]
    fn workers_and_defaults() {
        let c = comfy(
            json!({"comfy": {"workers": [{"url": "http://a:8188"}, {"name": "b", "url": "http://b", "maxConcurrent": 2, "weight": 2}]}}),
            Path::new("/etc/clawgate"),
        )
        .unwrap()
        .unwrap();
        assert_eq!(c.workers[0].name, "worker-1");
        assert_eq!(c.workers[1].max_concurrent, 2);
        assert_eq!(c.templates_dir, PathBuf::from("/etc/clawgate/templates"));
        assert!(comfy(json!({}), Path::new("/")).unwrap().is_none());
        let e = comfy(json!({"comfy": {"workers": [{"url": "ftp://x"}]}}), Path::new("/")).unwrap_err();
        assert!(e.starts_with("comfy.workers[0].url"), "{e}");
    }

    #[test]
    fn openclaw_workers_need_a_credential_and_keep_secrets_out_of_debug() {
        let cfg = |w: Value| comfy(json!({"comfy": {"workers": [w]}}), Path::new("/"));
        let c = cfg(json!({"name": "studio", "url": "http://s:8188", "mode": "openclaw", "adminToken": "adm-secret",
                           "device": {"id": "gw", "token": "dev-secret"}}))
        .unwrap()
        .unwrap();
        let auth = c.workers[0].openclaw.clone().unwrap();
        assert_eq!(auth.admin_token.as_deref(), Some("adm-secret"));
        assert_eq!(auth.device_id.as_deref(), Some("gw"));
        assert_eq!(auth.device_scopes, vec!["job:submit", "job:status"]);
        let debug = format!("{c:?}");
        assert!(!debug.contains("adm-secret") && !debug.contains("dev-secret"), "{debug}");

        let e = cfg(json!({"url": "http://s", "mode": "openclaw"})).unwrap_err();
        assert!(e.starts_with("comfy.workers[0]: mode \"openclaw\" needs adminToken"), "{e}");
        let e = cfg(json!({"url": "http://s", "mode": "openclaw", "device": {"id": "gw"}})).unwrap_err();
        assert!(e.starts_with("comfy.workers[0].device.token"), "{e}");
        let e = cfg(json!({"url": "http://s", "mode": "sidecar"})).unwrap_err();
        assert!(e.starts_with("comfy.workers[0].mode: \"sidecar\" is not a worker mode"), "{e}");
        let e = cfg(json!({"url": "http://s", "mode": "openclaw", "adminToken": {"env": "CLAWGATE_TEST_UNSET_VAR_X"}}))
            .unwrap_err();
        assert!(e.starts_with("comfy.workers[0].adminToken"), "{e}");
        assert!(cfg(json!({"url": "http://s"})).unwrap().unwrap().workers[0].openclaw.is_none());
    }
}
