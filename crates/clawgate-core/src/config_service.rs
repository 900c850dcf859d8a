//! The config file as the gateway sees it: the version in force, validated edits written
//! atomically, and how a change is applied (hot keys live, restart keys reported).

use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, RwLock};

use serde_json::{Value, json};

use clawgate_config::{ConfigChange, LoadedConfig, ReloadClass};

use crate::error::CoreError;
use crate::settings::{AuthMode, GatewaySettings, PasswordSecret, RateLimitSettings};

/// What the command line overrides; kept so a reload does not undo a flag.
#[derive(Debug, Clone, Default)]
pub struct Overrides {
    /// `--token`.
    pub token: Option<String>,
    /// `--port`.
    pub port: Option<u16>,
    /// `--bind`.
    pub bind: Option<String>,
}

/// Owner of the config file.
pub struct ConfigService {
    path: PathBuf,
    current: RwLock<Arc<LoadedConfig>>,
    watching: AtomicBool,
    write_lock: tokio::sync::Mutex<()>,
}

impl std::fmt::Debug for ConfigService {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ConfigService").field("path", &self.path).finish()
    }
}

impl ConfigService {
    /// Start with the config loaded at startup.
    pub fn new(path: PathBuf, loaded: LoadedConfig) -> Self {
        Self {
            path,
            current: RwLock::new(Arc::new(loaded)),
            watching: AtomicBool::new(false),
            write_lock: Default::default(),
        }
    }

    /// The config file path.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// The config in force.
    pub fn current(&self) -> Arc<LoadedConfig> {
        self.current.read().map(|c| c.clone()).unwrap_or_else(|p| p.into_inner().clone())
    }

    /// Whether the file watcher runs.
    pub fn watching(&self) -> bool {
        self.watching.load(Ordering::Relaxed)
    }

    /// Record that the file watcher runs.
    pub fn set_watching(&self, on: bool) {
        self.watching.store(on, Ordering::Relaxed);
    }

    /// Adopt a config loaded elsewhere (the file watcher); returns what changed.
    pub fn adopt(&self, loaded: LoadedConfig) -> Vec<ConfigChange> {
        let old = self.current();
        let changes = clawgate_config::diff(&old.value, &loaded.value);
        if let Ok(mut c) = self.current.write() {
            *c = Arc::new(loaded);
        }
        changes
    }

    /// Validate `text` as the whole new config, write it atomically and make it current.
    /// `base_hash`, when given, must match the config in force (optimistic concurrency).
    pub async fn write(
        &self,
        text: String,
        base_hash: Option<&str>,
    ) -> Result<(Arc<LoadedConfig>, Vec<ConfigChange>), CoreError> {
        let _guard = self.write_lock.lock().await;
        let old = self.current();
        if let Some(base) = base_hash
            && base != old.hash
        {
            return Err(CoreError::InvalidRequest {
                message: "config changed since it was read (baseHash mismatch); run config.get and retry".into(),
                details: Some(json!({"currentHash": old.hash})),
            });
        }
        let text = restore_redacted_secrets(text, &old.value)?;
        let loaded =
            clawgate_config::parse_str_with_env(&text, &self.path, &clawgate_config::Env::process()).map_err(|e| {
                let issues: Vec<Value> = e
                    .issues()
                    .iter()
                    .map(|i| json!({"key": i.key, "line": i.line(), "column": i.column(), "message": i.message}))
                    .collect();
                CoreError::InvalidRequest {
                    message: format!("invalid config: {e}"),
                    details: Some(json!({"issues": issues})),
                }
            })?;
        let path = self.path.clone();
        let raw = loaded.raw.clone();
        tokio::task::spawn_blocking(move || clawgate_config::write_atomic(&path, &raw))
            .await
            .map_err(CoreError::internal)?
            .map_err(CoreError::internal)?;
        let changes = self.adopt(loaded);
        Ok((self.current(), changes))
    }
}

/// A config written by a client that read it through `config.get` carries
/// [`clawgate_config::REDACTED`] for the secrets it did not edit: put the stored ones back, so
/// saving an unchanged form keeps the secrets, and refuse a placeholder with nothing behind it.
/// Text without the placeholder is kept as written (comments and all).
fn restore_redacted_secrets(text: String, current: &Value) -> Result<String, CoreError> {
    if !text.contains(clawgate_config::REDACTED) {
        return Ok(text);
    }
    let Ok(mut edited) = json5::from_str::<Value>(&text) else {
        // Not JSON5: the parser below reports it with line and column.
        return Ok(text);
    };
    let missing = clawgate_config::restore_redacted(&mut edited, current);
    if !missing.is_empty() {
        return Err(CoreError::invalid(format!(
            "invalid config: {} {} the redaction placeholder but no secret is stored there; give the value",
            missing.join(", "),
            if missing.len() == 1 { "holds" } else { "hold" }
        )));
    }
    serde_json::to_string_pretty(&edited).map_err(CoreError::internal)
}

/// Resolve gateway settings from a config, a base (for what the config does not hold), and the
/// command-line overrides.
pub fn settings_from_config(
    loaded: &LoadedConfig,
    base: &GatewaySettings,
    overrides: &Overrides,
) -> Result<GatewaySettings, String> {
    let cfg = &loaded.config;
    let base_dir = loaded.path.parent().map(Path::to_path_buf).unwrap_or_default();
    let g = &cfg.gateway;
    let auth_mode = match g.auth.mode {
        clawgate_config::AuthMode::None => AuthMode::None,
        clawgate_config::AuthMode::Token => AuthMode::Token,
        clawgate_config::AuthMode::Password => AuthMode::Password,
    };
    let token = match (&overrides.token, &g.auth.token) {
        (Some(t), _) => Some(t.clone()),
        (None, Some(secret)) => Some(secret.resolve(&base_dir).map_err(|e| format!("gateway.auth.token: {e}"))?),
        (None, None) => base.token.clone(),
    };
    let password = match &g.auth.password {
        Some(secret) => Some(PasswordSecret::from_config(
            secret.resolve(&base_dir).map_err(|e| format!("gateway.auth.password: {e}"))?,
        )),
        None => None,
    };
    let rl = &g.auth.rate_limit;
    Ok(GatewaySettings {
        auth_mode,
        token,
        password,
        rate_limit: RateLimitSettings {
            max_attempts: rl.max_attempts,
            window: std::time::Duration::from_millis(rl.window_ms),
            lockout: std::time::Duration::from_millis(rl.lockout_ms),
            exempt_loopback: rl.exempt_loopback,
        },
        allowed_origins: g.control_ui.allowed_origins.clone(),
        allow_host_header_origin: g.control_ui.dangerously_allow_host_header_origin_fallback,
        handshake_timeout: std::time::Duration::from_millis(g.handshake_timeout_ms),
        http_limits: crate::settings::HttpLimits {
            header_timeout: std::time::Duration::from_millis(g.http.header_timeout_ms),
            max_connections: g.http.max_connections as usize,
        },
        tick_interval_ms: g.tick_interval_ms,
        auto_approve_loopback: base.auto_approve_loopback,
        state_dir: base.state_dir.clone(),
        config_path: loaded.path.clone(),
        log_file: base.log_file.clone(),
        listen_addr: base.listen_addr.clone(),
    })
}

/// Apply a config change to a running gateway: hot keys take effect now (shared-secret clients
/// are closed with 4001 when the secret changes), restart keys are logged and reported.
pub fn apply_changes(gw: &crate::Gateway, overrides: &Overrides, changes: &[ConfigChange]) -> Value {
    let current = gw.config.current();
    let old = gw.settings();
    let mut restart_required: Vec<String> = Vec::new();
    let mut applied: Vec<String> = Vec::new();
    for c in changes {
        match c.class {
            ReloadClass::Hot => applied.push(c.path.to_string()),
            ReloadClass::RestartSubsystem => applied.push(c.path.to_string()),
            ReloadClass::RestartProcess => restart_required.push(c.path.to_string()),
        }
    }
    match settings_from_config(&current, &old, overrides) {
        Ok(mut new) => {
            // Keys that need a process restart keep their running values until then.
            new.auth_mode = old.auth_mode;
            new.handshake_timeout = old.handshake_timeout;
            new.http_limits = old.http_limits;
            new.tick_interval_ms = old.tick_interval_ms;
            let secret_changed = new.token != old.token || new.password != old.password;
            gw.replace_settings(new);
            if secret_changed {
                // Closed a moment later so a client that made the change over the protocol gets
                // its response before its own socket is closed.
                let clients = gw.clients.clients();
                gw.tasks().spawn("config", async move {
                    tokio::time::sleep(std::time::Duration::from_millis(200)).await;
                    let mut n = 0;
                    for c in clients.iter().filter(|c| c.auth_kind == crate::broadcast::AuthKind::SharedSecret) {
                        c.close(
                            clawgate_protocol::close::CREDENTIALS_CHANGED,
                            clawgate_protocol::close::REASON_AUTH_CHANGED,
                        );
                        n += 1;
                    }
                    tracing::info!(closed = n, "gateway auth changed; shared-secret clients must reconnect");
                });
            }
        }
        Err(e) => tracing::error!(error = %e, "config change could not be applied; previous settings stay in force"),
    }
    let base_dir = current.path.parent().map(Path::to_path_buf).unwrap_or_default();
    if let Err(e) = gw.agents.reload(&current.value, &base_dir) {
        tracing::error!(error = %e, "agents/models config could not be applied; previous ones stay in force");
    }
    if changes.iter().any(|c| c.path.to_string().starts_with("channels")) {
        crate::channels::reload(gw);
    }
    for path in &restart_required {
        tracing::warn!(key = %path, "config key changed that takes effect after a restart of clawgate");
    }
    let payload = json!({
        "hash": current.hash,
        "changes": changes.iter().map(|c| json!({"path": c.path.to_string(), "class": c.class.to_string()})).collect::<Vec<_>>(),
        "restartRequired": restart_required,
        "applied": applied,
    });
    gw.clients.broadcast(clawgate_protocol::events::names::CONFIG_CHANGED, &payload, None, false);
    payload
}
