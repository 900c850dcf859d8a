//! The config file as the gateway sees it: the version in force, validated edits written
//! atomically, and how a change is applied (hot keys live, restart keys reported).

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};

use parking_lot::RwLock;

use serde_json::{Value, json};

use clawgate_config::{ConfigChange, ConfigError, LoadedConfig, ReloadClass};

use crate::agent::{AgentService, AgentSetup};
use crate::channels::ChannelService;
use crate::error::CoreError;
use crate::events::Events;
use crate::settings::{AuthMode, GatewaySettings, PasswordSecret, RateLimitSettings, SharedSettings};
use crate::tasks::Tasks;

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

/// Owner of the config file. Cheap to clone: clones share the config in force.
#[derive(Clone)]
pub struct ConfigService {
    inner: Arc<ConfigInner>,
}

struct ConfigInner {
    path: PathBuf,
    current: RwLock<Arc<LoadedConfig>>,
    watching: AtomicBool,
    /// One edit at a time: `baseHash` is checked and the file written under it.
    write_lock: tokio::sync::Mutex<()>,
}

impl std::fmt::Debug for ConfigService {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ConfigService").field("path", &self.inner.path).finish()
    }
}

impl ConfigService {
    /// Start with the config loaded at startup.
    pub fn new(path: PathBuf, loaded: LoadedConfig) -> Self {
        Self {
            inner: Arc::new(ConfigInner {
                path,
                current: RwLock::new(Arc::new(loaded)),
                watching: AtomicBool::new(false),
                write_lock: Default::default(),
            }),
        }
    }

    /// The config file path.
    pub fn path(&self) -> &Path {
        &self.inner.path
    }

    /// The config in force.
    pub fn current(&self) -> Arc<LoadedConfig> {
        self.inner.current.read().clone()
    }

    /// Whether the file watcher runs.
    pub fn watching(&self) -> bool {
        self.inner.watching.load(Ordering::Relaxed)
    }

    /// Record that the file watcher runs.
    pub fn set_watching(&self, on: bool) {
        self.inner.watching.store(on, Ordering::Relaxed);
    }

    /// Adopt a config loaded elsewhere (the file watcher); returns what changed.
    pub fn adopt(&self, loaded: LoadedConfig) -> Vec<ConfigChange> {
        let old = self.current();
        let changes = clawgate_config::diff(&old.value, &loaded.value);
        *self.inner.current.write() = Arc::new(loaded);
        changes
    }

    /// Adopt a config the file watcher loaded, if it passes [`validate`]; the previous config
    /// stays in force otherwise.
    pub fn adopt_checked(&self, loaded: LoadedConfig) -> Result<Vec<ConfigChange>, ConfigError> {
        validate(&loaded)?;
        log_warnings(&loaded);
        Ok(self.adopt(loaded))
    }

    /// Validate `text` as the whole new config, write it atomically and make it current.
    /// `base_hash`, when given, must match the config in force (optimistic concurrency).
    pub async fn write(
        &self,
        text: String,
        base_hash: Option<&str>,
    ) -> Result<(Arc<LoadedConfig>, Vec<ConfigChange>), CoreError> {
        let _guard = self.inner.write_lock.lock().await;
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
        let loaded = clawgate_config::parse_str_with_env(&text, self.path(), &clawgate_config::Env::process())
            .map_err(|e| invalid_config(&e))?;
        validate(&loaded).map_err(|e| invalid_config(&e))?;
        log_warnings(&loaded);
        let path = self.inner.path.clone();
        let raw = loaded.raw.clone();
        tokio::task::spawn_blocking(move || clawgate_config::write_atomic(&path, &raw))
            .await
            .map_err(CoreError::internal)?
            .map_err(CoreError::internal)?;
        let changes = self.adopt(loaded);
        Ok((self.current(), changes))
    }
}

/// The refusal of a config edit: every issue, with key and place, in the message and in
/// `details.issues`.
fn invalid_config(e: &ConfigError) -> CoreError {
    let issues: Vec<Value> = e
        .issues()
        .iter()
        .map(|i| json!({"key": i.key, "line": i.line(), "column": i.column(), "message": i.message}))
        .collect();
    CoreError::InvalidRequest { message: format!("invalid config: {e}"), details: Some(json!({"issues": issues})) }
}

/// Logs what the config accepts but would rather see fixed (see [`LoadedConfig::warnings`]).
pub fn log_warnings(loaded: &LoadedConfig) {
    for warning in &loaded.warnings {
        tracing::warn!(%warning, "config");
    }
}

/// What startup resolves from a config: gateway settings (secrets read) and the agents.
pub struct Checked {
    /// Gateway settings, secrets resolved.
    pub settings: GatewaySettings,
    /// Providers and agents.
    pub agents: AgentSetup,
}

/// The one validation path of a config beyond what [`clawgate_config`] decodes by itself: the
/// checks only the gateway can make (secret references that must resolve, model references
/// and provider entries the LLM client must accept, channel accounts, ComfyUI workers), each
/// issue placed `file:line:column: key.path: message` like the decoder's.
///
/// Class closed: *one entry point accepts a config another refuses*. `clawgate config
/// validate` and startup call this; `config.set`/`config.patch`/`config.apply` and the file
/// watcher call [`validate`], which is this with what `config validate` assumes.
pub fn check(loaded: &LoadedConfig, base: &GatewaySettings, overrides: &Overrides) -> Result<Checked, ConfigError> {
    let mut issues = Vec::new();
    let settings =
        settings_from_config(loaded, base, overrides).map_err(|m| issues.push(loaded.issue_from_message(&m)));
    let agents = AgentSetup::from_config(&loaded.config, loaded.base_dir())
        .map_err(|m| issues.push(loaded.issue_from_message(&m)));
    if let Err(e) = clawgate_channels::accounts_from_config(&loaded.config.channels, loaded.base_dir()) {
        issues.push(loaded.issue_at(&e.path, e.message));
    }
    if let Err(m) = crate::comfy::ComfyConfig::from_config(&loaded.config, loaded.base_dir()) {
        issues.push(loaded.issue_from_message(&m));
    }
    match (settings, agents) {
        (Ok(settings), Ok(agents)) if issues.is_empty() => Ok(Checked { settings, agents }),
        _ => Err(ConfigError::Invalid { issues }),
    }
}

/// [`check`] as `clawgate config validate` runs it (no command-line overrides), for configs
/// that arrive while the gateway runs.
pub fn validate(loaded: &LoadedConfig) -> Result<(), ConfigError> {
    let base = GatewaySettings::for_tests("", loaded.base_dir().to_path_buf());
    check(loaded, &base, &Overrides::default()).map(drop)
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
        proxy_trust: crate::client_addr::ProxyTrust {
            proxies: g.trusted_proxies.clone(),
            real_ip_fallback: g.allow_real_ip_fallback,
        },
    })
}

/// What a config change reconfigures in a running gateway: the handles
/// [`ConfigService::apply_changes`] touches, and nothing else.
#[derive(Debug, Clone, Copy)]
pub struct Reconfigure<'a> {
    /// The settings in force (swapped when gateway keys change).
    pub settings: &'a SharedSettings,
    /// The command-line overrides, kept across reloads.
    pub overrides: &'a Overrides,
    /// Providers and agents (reloaded in place).
    pub agents: &'a AgentService,
    /// Channel accounts (asked to reload when `channels.*` changed).
    pub channels: &'a ChannelService,
    /// Clients: shared-secret ones are closed when the secret changes; `config.changed` goes out.
    pub events: &'a Events,
    /// Where the delayed close runs.
    pub tasks: &'a Tasks,
}

impl ConfigService {
    /// Apply a change of the config in force to a running gateway: hot keys take effect now
    /// (shared-secret clients are closed with 4001 when the secret changes), restart keys are
    /// logged and reported. Broadcasts `config.changed` and returns its payload.
    pub fn apply_changes(&self, to: Reconfigure<'_>, changes: &[ConfigChange]) -> Value {
        let current = self.current();
        let old = to.settings.get();
        let mut restart_required: Vec<String> = Vec::new();
        let mut applied: Vec<String> = Vec::new();
        for c in changes {
            match c.class {
                ReloadClass::Hot => applied.push(c.path.to_string()),
                ReloadClass::RestartSubsystem => applied.push(c.path.to_string()),
                ReloadClass::RestartProcess => restart_required.push(c.path.to_string()),
            }
        }
        match settings_from_config(&current, &old, to.overrides) {
            Ok(mut new) => {
                // Keys that need a process restart keep their running values until then.
                new.auth_mode = old.auth_mode;
                new.handshake_timeout = old.handshake_timeout;
                new.http_limits = old.http_limits;
                new.tick_interval_ms = old.tick_interval_ms;
                let secret_changed = new.token != old.token || new.password != old.password;
                to.settings.replace(new);
                if secret_changed {
                    // Closed a moment later so a client that made the change over the protocol
                    // gets its response before its own socket is closed.
                    let clients = to.events.clients().clients();
                    to.tasks.spawn("config", async move {
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
            Err(e) => {
                tracing::error!(error = %e, "config change could not be applied; previous settings stay in force")
            }
        }
        let base_dir = current.path.parent().map(Path::to_path_buf).unwrap_or_default();
        if let Err(e) = to.agents.reload(&current.config, &base_dir) {
            tracing::error!(error = %e, "agents/models config could not be applied; previous ones stay in force");
        }
        if changes.iter().any(|c| c.path.to_string().starts_with("channels")) {
            to.channels.request_reload();
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
        to.events.config_changed(&payload);
        payload
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn service(dir: &Path) -> ConfigService {
        let path = dir.join("clawgate.json5");
        ConfigService::new(path.clone(), LoadedConfig::defaults(&path))
    }

    /// Class: a config edit accepted over the protocol that startup would refuse. The model
    /// reference rule is the gateway's (not the decoder's), and it now refuses the write too.
    #[tokio::test]
    async fn a_write_is_refused_by_the_checks_startup_makes_with_the_place() {
        let dir = tempfile::tempdir().unwrap();
        let svc = service(dir.path());
        let text = "{\n  agents: {\n    defaults: { model: 'nomodel' },\n  },\n}".to_owned();
        let err = svc.write(text, None).await.unwrap_err();
        let CoreError::InvalidRequest { message, details } = err else { panic!("{err:?}") };
        assert!(message.contains("agents.defaults.model.primary"), "{message}");
        assert_eq!(details.unwrap()["issues"][0]["line"], 3, "placed at the key's line");
        assert!(!dir.path().join("clawgate.json5").exists(), "nothing written");

        let text = "{ comfy: { workers: [{ url: 'http://c', mode: 'openclaw', adminToken: { env: 'CLAWGATE_TEST_UNSET_ADMIN' } }] } }";
        let err = svc.write(text.to_owned(), None).await.unwrap_err();
        assert!(err.to_string().contains("comfy.workers[0].adminToken"), "{err}");

        let ok = "{ agents: { defaults: { model: 'ollama/llama3.2', workspace: '~/w' } } }".to_owned();
        let (loaded, _) = svc.write(ok, None).await.unwrap();
        assert_eq!(loaded.config.agents.defaults.extra["workspace"], "~/w", "OpenClaw keys are kept");
    }

    #[test]
    fn check_collects_problems_of_every_section() {
        let loaded = clawgate_config::parse_str(
            "{ agents: { list: [{ id: 'a', model: 'x' }] }, comfy: { commands: 5 } }",
            Path::new("c.json5"),
        )
        .unwrap();
        let err = validate(&loaded).unwrap_err();
        let keys: Vec<&str> = err.issues().iter().map(|i| i.key.as_str()).collect();
        assert!(
            keys.contains(&"agents.list[0].model") && keys.iter().any(|k| k.starts_with("comfy.commands")),
            "{err}"
        );
    }
}
