//! `comfy.*` config:
//!
//! ```json5
//! comfy: {
//!   templatesDir: "templates",            // relative to the config file's directory
//!   workers: [
//!     { name: "gpu-a", url: "http://127.0.0.1:8188", maxConcurrent: 1, weight: 1 },
//!     { name: "gpu-b", url: "http://10.0.0.7:8188", maxConcurrent: 2, weight: 2 },
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
    /// Base URL of its HTTP API.
    pub url: String,
    /// `comfyui` (clawgate drives native ComfyUI).
    pub mode: String,
    /// Jobs this gateway runs on it at once.
    pub max_concurrent: usize,
    /// Relative capacity when spreading jobs.
    pub weight: f64,
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
            if mode != "comfyui" {
                return Err(format!("{path}.mode: \"{mode}\" is not supported by this build; use \"comfyui\""));
            }
            let max_concurrent = w.get("maxConcurrent").and_then(Value::as_u64).unwrap_or(1).clamp(1, 64) as usize;
            let weight = w.get("weight").and_then(Value::as_f64).unwrap_or(1.0);
            if !(weight > 0.0 && weight.is_finite()) {
                return Err(format!("{path}.weight: must be a positive number"));
            }
            workers.push(WorkerConfig { name, url: url.to_owned(), mode: mode.to_owned(), max_concurrent, weight });
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
}
