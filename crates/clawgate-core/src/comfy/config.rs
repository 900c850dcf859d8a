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

use serde_json::Value;

/// One ComfyUI server.
#[derive(Debug, Clone, PartialEq)]
pub struct WorkerConfig {
    /// Unique name (`gpu-a`).
    pub name: String,
    /// Base URL of its HTTP API. A password in it is a secret: the type shows it redacted
    /// everywhere (`comfy.workers.list`, logs, `Debug`); only `expose()` gives the real URL.
    pub url: clawgate_config::SecretUrl,
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

/// A secret value: a string, `{env: "NAME"}` or `{file: "path"}`.
fn secret(v: Option<&Value>, path: &str, base_dir: &Path) -> Result<Option<String>, String> {
    let Some(v) = v.filter(|v| !v.is_null()) else { return Ok(None) };
    let shape = || format!("{path}: expected a string, {{env: \"NAME\"}} or {{file: \"path\"}}");
    let parsed = match v {
        Value::String(s) => clawgate_config::Secret::Plain(s.clone()),
        Value::Object(o) => match (o.get("env").and_then(Value::as_str), o.get("file").and_then(Value::as_str)) {
            (Some(env), None) => clawgate_config::Secret::Env { env: env.to_owned() },
            (None, Some(file)) => clawgate_config::Secret::File { file: file.into() },
            _ => return Err(shape()),
        },
        _ => return Err(shape()),
    };
    let value = parsed.resolve(base_dir).map_err(|e| format!("{path}: {e}"))?;
    if value.is_empty() {
        return Err(format!("{path}: is empty; set it or remove the key"));
    }
    Ok(Some(value))
}

fn openclaw_auth(w: &Value, path: &str, base_dir: &Path) -> Result<OpenClawAuth, String> {
    let mut auth = OpenClawAuth {
        admin_token: secret(w.get("adminToken"), &format!("{path}.adminToken"), base_dir)?,
        obs_token: secret(w.get("obsToken"), &format!("{path}.obsToken"), base_dir)?,
        ..OpenClawAuth::default()
    };
    if let Some(device) = w.get("device").filter(|d| !d.is_null()) {
        let dpath = format!("{path}.device");
        if !device.is_object() {
            return Err(format!(
                "{dpath}: must be an object like {{id: \"clawgate\", token: {{env: \"OPENCLAW_BRIDGE_DEVICE_TOKEN\"}}}}"
            ));
        }
        let id = device.get("id").and_then(Value::as_str).filter(|s| !s.is_empty());
        let Some(id) = id else { return Err(format!("{dpath}.id: give the device id the extension knows")) };
        let Some(token) = secret(device.get("token"), &format!("{dpath}.token"), base_dir)? else {
            return Err(format!(
                "{dpath}.token: give the device token (OPENCLAW_BRIDGE_DEVICE_TOKEN on the extension)"
            ));
        };
        auth.device_id = Some(id.to_owned());
        auth.device_token = Some(token);
        auth.device_scopes = match device.get("scopes") {
            None | Some(Value::Null) => vec!["job:submit".to_owned(), "job:status".to_owned()],
            Some(Value::Array(items)) => items
                .iter()
                .map(|s| s.as_str().map(str::to_owned).ok_or_else(|| format!("{dpath}.scopes: must be strings")))
                .collect::<Result<_, _>>()?,
            Some(_) => return Err(format!("{dpath}.scopes: must be a list like [\"job:submit\", \"job:status\"]")),
        };
    }
    if auth.admin_token.is_none() && auth.device_token.is_none() {
        return Err(format!(
            "{path}: mode \"openclaw\" needs adminToken (the extension's OPENCLAW_ADMIN_TOKEN) to fire templates, \
             or device {{id, token}} for its bridge API"
        ));
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
    /// `None` when there is no `comfy` section (ComfyUI off). Errors name the key.
    pub fn from_config(root: &Value, base_dir: &Path) -> Result<Option<Self>, String> {
        let Some(section) = root.get("comfy").filter(|v| !v.is_null()) else { return Ok(None) };
        let Some(section) = section.as_object() else { return Err("comfy: must be an object".into()) };
        let mut workers: Vec<WorkerConfig> = Vec::new();
        for (i, w) in section.get("workers").and_then(Value::as_array).into_iter().flatten().enumerate() {
            let path = format!("comfy.workers[{i}]");
            let url =
                w.get("url").and_then(Value::as_str).filter(|u| u.starts_with("http://") || u.starts_with("https://"));
            let Some(url) = url else {
                return Err(format!("{path}.url: give the ComfyUI server's base URL, e.g. \"http://127.0.0.1:8188\""));
            };
            let name =
                w.get("name").and_then(Value::as_str).map(str::to_owned).unwrap_or_else(|| format!("worker-{}", i + 1));
            if workers.iter().any(|x| x.name == name) {
                return Err(format!("{path}.name: \"{name}\" is used twice; worker names must be unique"));
            }
            let mode = w.get("mode").and_then(Value::as_str).unwrap_or("comfyui");
            let openclaw = match mode {
                "comfyui" => None,
                "openclaw" => Some(openclaw_auth(w, &path, base_dir)?),
                other => {
                    return Err(format!(
                        "{path}.mode: \"{other}\" is not a worker mode; use \"comfyui\" (native ComfyUI) or \
                         \"openclaw\" (ComfyUI with the ComfyUI-OpenClaw extension)"
                    ));
                }
            };
            let max_concurrent = w.get("maxConcurrent").and_then(Value::as_u64).unwrap_or(1).clamp(1, 64) as usize;
            let weight = w.get("weight").and_then(Value::as_f64).unwrap_or(1.0);
            if !(weight > 0.0 && weight.is_finite()) {
                return Err(format!("{path}.weight: must be a positive number"));
            }
            workers.push(WorkerConfig {
                name,
                url: clawgate_config::SecretUrl::new(url),
                mode: mode.to_owned(),
                openclaw,
                max_concurrent,
                weight,
            });
        }
        let dir = section.get("templatesDir").and_then(Value::as_str).unwrap_or("templates");
        let templates_dir = clawgate_config::resolve_path(base_dir, Path::new(dir));
        let delivery = section.get("delivery");
        let max_images =
            delivery.and_then(|d| d.get("maxImages")).and_then(Value::as_u64).unwrap_or(8).clamp(1, 100) as usize;
        let max_bytes = delivery.and_then(|d| d.get("maxBytes")).and_then(Value::as_u64).unwrap_or(50 * 1024 * 1024);
        let commands = section.get("commands").unwrap_or(&Value::Null);
        let policy = clawgate_comfy::command::CommandPolicy::from_config(commands)
            .map_err(|e| format!("comfy.commands: {e}"))?;
        Ok(Some(Self { workers, templates_dir, max_images, max_bytes, policy }))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn workers_and_defaults() {
        let c = ComfyConfig::from_config(
            &json!({"comfy": {"workers": [{"url": "http://a:8188"}, {"name": "b", "url": "http://b", "maxConcurrent": 2, "weight": 2}]}}),
            Path::new("/etc/clawgate"),
        )
        .unwrap()
        .unwrap();
        assert_eq!(c.workers[0].name, "worker-1");
        assert_eq!(c.workers[1].max_concurrent, 2);
        assert_eq!(c.templates_dir, PathBuf::from("/etc/clawgate/templates"));
        assert!(ComfyConfig::from_config(&json!({}), Path::new("/")).unwrap().is_none());
        let e =
            ComfyConfig::from_config(&json!({"comfy": {"workers": [{"url": "ftp://x"}]}}), Path::new("/")).unwrap_err();
        assert!(e.starts_with("comfy.workers[0].url"), "{e}");
    }

    #[test]
    fn openclaw_workers_need_a_credential_and_keep_secrets_out_of_debug() {
        let cfg = |w: Value| ComfyConfig::from_config(&json!({"comfy": {"workers": [w]}}), Path::new("/"));
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
