//! The config file as the gateway sees it: the version in force, validated edits written
//! atomically, and how a change is applied (hot keys live, restart keys reported).

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};

use parking_lot::RwLock;

use serde_json::{Value, json};

use clawgate_config::{ConfigChange, ConfigError, LoadedConfig, ReloadClass};

use crate::agent::{AgentService, AgentSetup};
use crate::channels::{ChannelReload, ChannelService};
use crate::comfy::{ComfyReload, ComfyService};
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
    /// The config this process started with: what restart-only keys still run with, so
    /// [`ConfigService::restart_required`] is exact (a key changed back needs no restart).
    started: Arc<LoadedConfig>,
    /// Restart-only keys already logged as such (each is logged once, not at every change).
    warned: parking_lot::Mutex<BTreeSet<String>>,
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
        let loaded = Arc::new(loaded);
        Self {
            inner: Arc::new(ConfigInner {
                path,
                current: RwLock::new(loaded.clone()),
                started: loaded,
                warned: Default::default(),
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

    /// Keys whose value in the config in force differs from what this process started with
    /// and that only a restart of clawgate applies (`gateway.port`, `logging.file`, …), in
    /// path order. Empty when the running process is what the config says.
    pub fn restart_required(&self) -> Vec<String> {
        clawgate_config::diff(&self.inner.started.value, &self.current().value)
            .into_iter()
            .filter(|c| c.class == ReloadClass::RestartProcess)
            .map(|c| c.path)
            .collect()
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
    let mut worker_tokens = Vec::new();
    for (i, secret) in cfg.comfy.iter().flat_map(|c| c.worker_tokens.iter()).enumerate() {
        let token = secret.resolve(&base_dir).map_err(|e| format!("comfy.workerTokens[{i}]: {e}"))?;
        if !token.is_empty() {
            worker_tokens.push(token);
        }
    }
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
        per_connection_rate: {
            let r = &g.rate_limit.per_connection;
            let per = clawgate_config::rate_window_ms(&r.per).ok_or_else(|| {
                format!("gateway.rateLimit.perConnection.per: {:?} is not a window such as \"1m\"", r.per)
            })?;
            let rate = crate::access_tokens::Rate::new(r.requests, std::time::Duration::from_millis(per))
                .map_err(|e| format!("gateway.rateLimit.perConnection: {e}"))?;
            Some(rate)
        },
        worker_tokens,
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
    /// Channel accounts (reloaded when `channels.*` changed: only changed accounts restart).
    pub channels: &'a ChannelService,
    /// ComfyUI (its pool rebuilt in place when `comfy.workers` changed).
    pub comfy: &'a ComfyService,
    /// Clients: shared-secret ones are closed when the secret changes; `config.changed` goes out.
    pub events: &'a Events,
    /// Where the delayed close runs.
    pub tasks: &'a Tasks,
}

/// What applying one changed key did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Outcome {
    /// In force now, nothing restarted (read where it is used, or swapped in).
    Applied,
    /// In force now: its subsystem (a channel account, the ComfyUI pool) restarted with it.
    Restarted,
    /// Written, but the running process keeps the old value until clawgate restarts.
    RestartRequired,
    /// Not applied; the previous value stays in force. The reason is safe to show.
    Failed(String),
}

impl Outcome {
    /// The wire name (`config.changed`'s `changes[].outcome`).
    pub fn as_str(&self) -> &'static str {
        match self {
            Self::Applied => "applied",
            Self::Restarted => "restarted",
            Self::RestartRequired => "restartRequired",
            Self::Failed(_) => "failed",
        }
    }
}

/// `a` is `b`, or one of them is inside the other (`gateway.tls` and `gateway.tls.certFile`).
fn overlaps(a: &str, b: &str) -> bool {
    let inside = |long: &str, short: &str| {
        long.strip_prefix(short).is_some_and(|rest| rest.is_empty() || rest.starts_with(['.', '[']))
    };
    inside(a, b) || inside(b, a)
}

/// The first segment of a key path (`channels` of `channels.telegram.botToken`).
fn section(path: &str) -> &str {
    path.split(['.', '[']).next().unwrap_or(path)
}

/// A channel change's outcome from what the reload did to that channel's accounts.
fn channel_outcome(report: &ChannelReload, channel: Option<&str>) -> Outcome {
    if let Some(e) = &report.error {
        return Outcome::Failed(e.clone());
    }
    let failures = report.failures(channel);
    if !failures.is_empty() {
        Outcome::Failed(failures.join("; "))
    } else if report.touched(channel) {
        Outcome::Restarted
    } else {
        // No account's config changed (or the account is held stopped: its new config
        // applies at its next `channels.start`).
        Outcome::Applied
    }
}

/// A `comfy.*` change's outcome: the worker keys are what rebuilds the pool.
fn comfy_outcome(report: &ComfyReload, path: &str) -> Outcome {
    let pool_key = path == "comfy" || overlaps(path, "comfy.workers") || overlaps(path, "comfy.templatesDir");
    match report {
        ComfyReload::Failed(e) => Outcome::Failed(e.clone()),
        ComfyReload::Restarted { problems } if pool_key && !problems.is_empty() => Outcome::Failed(problems.join("; ")),
        ComfyReload::Restarted { .. } if pool_key => Outcome::Restarted,
        ComfyReload::Restarted { .. } | ComfyReload::Applied => Outcome::Applied,
    }
}

impl ConfigService {
    /// Apply a change of the config in force to a running gateway and report, per changed
    /// key, what happened ([`Outcome`]): gateway hot keys swap the settings (shared-secret
    /// clients are closed with 4001 when the secret changes); providers and agents are swapped
    /// for the next turn; `channels.*` restarts only the accounts whose config changed;
    /// `comfy.*` rebuilds the worker pool in place; restart-only keys are reported (and logged
    /// once). Nothing that did not take effect is reported applied. Broadcasts
    /// `config.changed` and returns its payload.
    pub async fn apply_changes(&self, to: Reconfigure<'_>, changes: &[ConfigChange]) -> Value {
        let current = self.current();
        let old = to.settings.get();
        let settings = match settings_from_config(&current, &old, to.overrides) {
            Ok(mut new) => {
                // Keys that need a process restart keep their running values until then.
                new.auth_mode = old.auth_mode;
                new.handshake_timeout = old.handshake_timeout;
                new.http_limits = old.http_limits;
                new.tick_interval_ms = old.tick_interval_ms;
                let secret_changed = new.token != old.token || new.password != old.password;
                let worker_tokens_changed = new.worker_tokens != old.worker_tokens;
                to.settings.replace(new);
                if secret_changed {
                    close_shared_secret_clients(to);
                }
                if worker_tokens_changed {
                    close_worker_clients(to);
                }
                Outcome::Applied
            }
            Err(e) => Outcome::Failed(e),
        };
        let touches = |name: &str| changes.iter().any(|c| section(&c.path) == name);
        let agents = if ["agents", "models", "session"].iter().any(|s| touches(s)) {
            let base_dir = current.path.parent().map(Path::to_path_buf).unwrap_or_default();
            match to.agents.reload(&current.config, &base_dir) {
                Ok(()) => Outcome::Applied,
                Err(e) => Outcome::Failed(e),
            }
        } else {
            Outcome::Applied
        };
        let channels = if touches("channels") { Some(to.channels.reload().await) } else { None };
        let comfy = if touches("comfy") { Some(to.comfy.reload().await) } else { None };
        let pending = self.restart_required();

        let mut out = clawgate_protocol::methods::config::ConfigChangesApplied::default();
        for c in changes {
            let path = c.path.as_str();
            let outcome = match (c.class, section(path)) {
                // A restart-only key set back to what the process runs with needs nothing.
                (ReloadClass::RestartProcess, _) if pending.iter().any(|p| overlaps(p, path)) => {
                    Outcome::RestartRequired
                }
                (ReloadClass::RestartProcess, _) => Outcome::Applied,
                (_, "gateway") if overlaps(path, "gateway.http.endpoints") => Outcome::Applied,
                (_, "gateway") => settings.clone(),
                (_, "agents" | "models" | "session") => agents.clone(),
                (_, "channels") => {
                    channels.as_ref().map_or(Outcome::Applied, |r| channel_outcome(r, c.channel().as_deref()))
                }
                (_, "comfy") => comfy.as_ref().map_or(Outcome::Applied, |r| comfy_outcome(r, path)),
                // Read where they are used (hooks, endpoints) or kept as written for OpenClaw.
                _ => Outcome::Applied,
            };
            match &outcome {
                Outcome::Applied => {
                    tracing::info!(key = %path, "config change applied");
                    out.applied.push(c.path.clone());
                }
                Outcome::Restarted => {
                    tracing::info!(key = %path, "config change applied by restarting its subsystem");
                    out.restarted.push(c.path.clone());
                }
                Outcome::RestartRequired => {
                    if self.inner.warned.lock().insert(c.path.clone()) {
                        tracing::warn!(key = %path, "config key changed that takes effect after a restart of clawgate");
                    }
                    out.restart_required.push(c.path.clone());
                }
                Outcome::Failed(e) => {
                    tracing::error!(key = %path, error = %e, "config change could not be applied; the previous value stays in force");
                    out.failed.push(clawgate_protocol::methods::config::ConfigChangeFailure {
                        path: c.path.clone(),
                        error: e.clone(),
                    });
                }
            }
            out.changes.push(clawgate_protocol::methods::config::ConfigChangeEntry {
                path: c.path.clone(),
                class: c.class.to_string(),
                outcome: Some(outcome.as_str().to_owned()),
                error: match outcome {
                    Outcome::Failed(e) => Some(e),
                    _ => None,
                },
            });
        }
        // A key changed back to its running value may be logged again if it changes once more.
        self.inner.warned.lock().retain(|k| pending.iter().any(|p| overlaps(p, k)));
        let mut payload = serde_json::to_value(&out).unwrap_or_else(|_| json!({}));
        payload["hash"] = json!(current.hash);
        to.events.config_changed(&payload);
        payload
    }
}

/// The gateway secret changed: shared-secret clients must reconnect with the new one. Closed
/// a moment later so a client that made the change over the protocol gets its response before
/// its own socket is closed.
fn close_shared_secret_clients(to: Reconfigure<'_>) {
    let clients = to.events.clients().clients();
    to.tasks.spawn("config", async move {
        tokio::time::sleep(std::time::Duration::from_millis(200)).await;
        let mut n = 0;
        // ComfyUI workers hold worker tokens, not the shared secret (see `close_worker_clients`).
        for c in clients.iter().filter(|c| c.auth_kind == crate::broadcast::AuthKind::SharedSecret && !is_worker(c)) {
            c.close(clawgate_protocol::close::CREDENTIALS_CHANGED, clawgate_protocol::close::REASON_AUTH_CHANGED);
            n += 1;
        }
        tracing::info!(closed = n, "gateway auth changed; shared-secret clients must reconnect");
    });
}

fn is_worker(c: &crate::broadcast::ClientHandle) -> bool {
    c.scopes.iter().any(|s| s == clawgate_protocol::scopes::WORKER)
}

/// `comfy.workerTokens` changed: every joined ComfyUI worker reconnects, so one whose token was
/// removed is refused (its running job is requeued, like any worker that leaves).
fn close_worker_clients(to: Reconfigure<'_>) {
    let clients = to.events.clients().clients();
    to.tasks.spawn("config", async move {
        tokio::time::sleep(std::time::Duration::from_millis(200)).await;
        let mut n = 0;
        for c in clients.iter().filter(|c| is_worker(c)) {
            c.close(clawgate_protocol::close::CREDENTIALS_CHANGED, clawgate_protocol::close::REASON_AUTH_CHANGED);
            n += 1;
        }
        tracing::info!(closed = n, "comfy.workerTokens changed; joined ComfyUI workers must reconnect");
    });
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
    fn overlapping_paths_are_whole_segments() {
        assert!(overlaps("gateway.tls", "gateway.tls.certFile"));
        assert!(overlaps("comfy.workers[0].url", "comfy.workers"));
        assert!(overlaps("gateway.port", "gateway.port"));
        assert!(!overlaps("gateway.portx", "gateway.port"));
        assert!(!overlaps("comfy.workersx", "comfy.workers"));
        assert_eq!(section("channels.telegram.botToken"), "channels");
        assert_eq!(section("comfy[0]"), "comfy");
    }

    fn key(channel: &str, account: &str) -> clawgate_channels::AccountKey {
        clawgate_channels::AccountKey { channel: channel.into(), account: account.into() }
    }

    #[test]
    fn a_channel_change_is_restarted_only_when_an_account_of_that_channel_restarted() {
        let report = ChannelReload { restarted: vec![key("telegram", "main")], ..Default::default() };
        assert_eq!(channel_outcome(&report, Some("telegram")), Outcome::Restarted);
        assert_eq!(channel_outcome(&report, Some("discord")), Outcome::Applied, "discord untouched");
        let report = ChannelReload {
            stopped: vec![key("slack", "default")],
            failed: vec![(key("slack", "default"), "no botToken configured".into())],
            ..Default::default()
        };
        assert_eq!(
            channel_outcome(&report, Some("slack")),
            Outcome::Failed("slack/default: no botToken configured".into())
        );
        let broken = ChannelReload { error: Some("channels: bad".into()), ..Default::default() };
        assert!(matches!(channel_outcome(&broken, None), Outcome::Failed(_)));
    }

    #[test]
    fn only_the_worker_keys_of_a_comfy_change_report_the_pool_restart() {
        let rebuilt = ComfyReload::Restarted { problems: Vec::new() };
        assert_eq!(comfy_outcome(&rebuilt, "comfy.workers"), Outcome::Restarted);
        assert_eq!(comfy_outcome(&rebuilt, "comfy.templatesDir"), Outcome::Restarted);
        assert_eq!(comfy_outcome(&rebuilt, "comfy.commands.adminUsers"), Outcome::Applied);
        let partial = ComfyReload::Restarted { problems: vec!["worker b: bad url".into()] };
        assert_eq!(comfy_outcome(&partial, "comfy.workers"), Outcome::Failed("worker b: bad url".into()));
        assert_eq!(comfy_outcome(&ComfyReload::Applied, "comfy.workers"), Outcome::Applied);
        assert!(matches!(comfy_outcome(&ComfyReload::Failed("x".into()), "comfy.delivery"), Outcome::Failed(_)));
    }

    /// A restart-only key is pending until the file says what the process runs with again.
    #[tokio::test]
    async fn restart_required_lists_restart_keys_that_differ_from_the_start() {
        let dir = tempfile::tempdir().unwrap();
        let svc = service(dir.path());
        assert!(svc.restart_required().is_empty());
        svc.write("{ gateway: { port: 1234, auth: { token: 'abcdefghijkl' } } }".into(), None).await.unwrap();
        assert_eq!(svc.restart_required(), vec!["gateway.port".to_owned()], "the token is hot");
        svc.write("{ gateway: { auth: { token: 'abcdefghijkl' } } }".into(), None).await.unwrap();
        assert!(svc.restart_required().is_empty(), "{:?}", svc.restart_required());
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
