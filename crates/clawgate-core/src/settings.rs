//! The resolved settings the gateway runs with: config values with secrets read and defaults
//! applied. Built from the config file (and CLI flags) by the binary; swapped atomically when
//! a hot-reloadable key changes.

use std::path::PathBuf;
use std::time::Duration;

/// How clients authenticate with a shared secret.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AuthMode {
    /// No shared secret (loopback only).
    None,
    /// `gateway.auth.token`.
    Token,
    /// `gateway.auth.password`.
    Password,
}

impl AuthMode {
    /// The wire name.
    pub fn as_str(self) -> &'static str {
        match self {
            AuthMode::None => "none",
            AuthMode::Token => "token",
            AuthMode::Password => "password",
        }
    }
}

/// The configured password: plain text, or an argon2id PHC hash.
#[derive(Clone, PartialEq, Eq)]
pub enum PasswordSecret {
    /// Compared in constant time.
    Plain(String),
    /// Verified with argon2.
    Argon2Hash(String),
}

impl PasswordSecret {
    /// Classify a configured password string.
    pub fn from_config(value: String) -> Self {
        if value.starts_with("$argon2") { PasswordSecret::Argon2Hash(value) } else { PasswordSecret::Plain(value) }
    }
}

impl std::fmt::Debug for PasswordSecret {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("PasswordSecret(***)")
    }
}

/// Failed-auth lockout policy.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RateLimitSettings {
    /// Failures allowed within the window.
    pub max_attempts: u32,
    /// Window length.
    pub window: Duration,
    /// How long an address is locked out after too many failures.
    pub lockout: Duration,
    /// Whether loopback clients are exempt (default false: local malware guesses too).
    pub exempt_loopback: bool,
}

impl Default for RateLimitSettings {
    fn default() -> Self {
        Self {
            max_attempts: 10,
            window: Duration::from_secs(60),
            lockout: Duration::from_secs(300),
            exempt_loopback: false,
        }
    }
}

/// What one listener lets strangers hold (`gateway.http.*`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct HttpLimits {
    /// Time to send a complete request head (also the keep-alive idle timeout).
    pub header_timeout: Duration,
    /// Open connections at once (an eighth kept for 127.0.0.1 and ::1).
    pub max_connections: usize,
}

impl Default for HttpLimits {
    fn default() -> Self {
        Self { header_timeout: Duration::from_secs(15), max_connections: 4096 }
    }
}

/// Everything the connection handling needs to know.
#[derive(Clone)]
pub struct GatewaySettings {
    /// Shared-secret mode.
    pub auth_mode: AuthMode,
    /// The gateway token (mode token).
    pub token: Option<String>,
    /// The gateway password (mode password).
    pub password: Option<PasswordSecret>,
    /// Failed-auth lockout.
    pub rate_limit: RateLimitSettings,
    /// Browser origins allowed besides loopback ones.
    pub allowed_origins: Vec<String>,
    /// `gateway.controlUi.dangerouslyAllowHostHeaderOriginFallback`: also accept an origin equal
    /// to the request's `Host` header (off: DNS rebinding makes any page match its own `Host`).
    pub allow_host_header_origin: bool,
    /// Time a client has to send `connect`.
    pub handshake_timeout: Duration,
    /// Limits of the listener (`gateway.http.*`; read when it starts).
    pub http_limits: HttpLimits,
    /// `tick` interval.
    pub tick_interval_ms: u64,
    /// Whether a device presenting a valid shared secret over loopback is paired silently.
    pub auto_approve_loopback: bool,
    /// Where state lives.
    pub state_dir: PathBuf,
    /// The config file.
    pub config_path: PathBuf,
    /// The log file `logs.tail` reads.
    pub log_file: Option<PathBuf>,
    /// The address the gateway listens on, for status output.
    pub listen_addr: String,
    /// Which peers may name the client (`gateway.trustedProxies`, `gateway.allowRealIpFallback`).
    pub proxy_trust: crate::client_addr::ProxyTrust,
    /// Requests one connection may make (`gateway.rateLimit.perConnection`).
    pub per_connection_rate: Option<crate::access_tokens::Rate>,
    /// `comfy.workerTokens`: a connect presenting one of these as `auth.token` is a ComfyUI
    /// worker (`clawgate worker`): scope `comfy.worker`, the `comfy.worker.*` methods only.
    pub worker_tokens: Vec<String>,
}

impl std::fmt::Debug for GatewaySettings {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("GatewaySettings")
            .field("auth_mode", &self.auth_mode)
            .field("token", &self.token.as_ref().map(|_| "***"))
            .field("password", &self.password)
            .field("rate_limit", &self.rate_limit)
            .field("allowed_origins", &self.allowed_origins)
            .field("allow_host_header_origin", &self.allow_host_header_origin)
            .field("handshake_timeout", &self.handshake_timeout)
            .field("http_limits", &self.http_limits)
            .field("tick_interval_ms", &self.tick_interval_ms)
            .field("auto_approve_loopback", &self.auto_approve_loopback)
            .field("state_dir", &self.state_dir)
            .field("config_path", &self.config_path)
            .field("listen_addr", &self.listen_addr)
            .field("proxy_trust", &self.proxy_trust)
            .field("per_connection_rate", &self.per_connection_rate)
            .field("worker_tokens", &self.worker_tokens.len())
            .finish()
    }
}

impl GatewaySettings {
    /// Settings for tests: token auth with the given token, everything else default.
    pub fn for_tests(token: &str, state_dir: PathBuf) -> Self {
        Self {
            auth_mode: AuthMode::Token,
            token: Some(token.to_owned()),
            password: None,
            rate_limit: RateLimitSettings::default(),
            allowed_origins: Vec::new(),
            allow_host_header_origin: false,
            handshake_timeout: Duration::from_millis(clawgate_protocol::HANDSHAKE_TIMEOUT_MS),
            http_limits: HttpLimits::default(),
            tick_interval_ms: clawgate_protocol::TICK_INTERVAL_MS,
            auto_approve_loopback: true,
            config_path: state_dir.join("clawgate.json5"),
            log_file: None,
            state_dir,
            listen_addr: "127.0.0.1:0".to_owned(),
            proxy_trust: crate::client_addr::ProxyTrust::default(),
            per_connection_rate: Some(crate::access_tokens::Rate::PER_CONNECTION_DEFAULT),
            worker_tokens: Vec::new(),
        }
    }
}

/// The settings in force, shared by the services that read them (admission, health, logs,
/// media) and swapped as a whole on a hot reload. Cheap to clone: clones see the same settings.
#[derive(Clone)]
pub struct SharedSettings(std::sync::Arc<parking_lot::RwLock<std::sync::Arc<GatewaySettings>>>);

impl std::fmt::Debug for SharedSettings {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        self.get().fmt(f)
    }
}

impl SharedSettings {
    /// Start with `settings`.
    pub fn new(settings: GatewaySettings) -> Self {
        Self(std::sync::Arc::new(parking_lot::RwLock::new(std::sync::Arc::new(settings))))
    }

    /// The settings in force (a snapshot: a later reload does not change it).
    pub fn get(&self) -> std::sync::Arc<GatewaySettings> {
        self.0.read().clone()
    }

    /// Swap in new settings (hot reload).
    pub fn replace(&self, new: GatewaySettings) {
        *self.0.write() = std::sync::Arc::new(new);
    }
}
