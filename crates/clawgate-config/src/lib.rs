//! clawgate's configuration: the JSON5 file, its typed form, and everything needed to load,
//! check, edit and watch it.
//!
//! This crate owns the config format: key names and defaults ([`Config`]), validation with
//! messages that name `file:line:column` and the key path ([`load`], [`ConfigError`]), secrets
//! given inline or by reference ([`Secret`]), the environment overlay ([`Env`]), the reload class
//! of every key ([`reload_class`], [`diff`]), merge patches and atomic writes
//! ([`merge_patch`], [`write_atomic`]), redaction ([`redacted`]), the JSON Schema and UI hints
//! ([`config_schema`], [`ui_hints`]) and the file watcher ([`ConfigWatcher`]).
//!
//! It must not act on the config: it does not bind sockets, start channels, apply reloads or
//! verify passwords, and it does not choose the config path (the binary does). Secrets are
//! resolved only when a caller asks, and are never written to logs or `Debug` output.
#![warn(missing_docs)]

mod decode;
mod edit;
mod env;
mod error;
mod load;
mod model;
mod path;
mod redact;
mod reload;
mod schema;
mod secret;
mod sections;
mod source_map;
mod suggest;
mod watch;

pub use edit::{merge_patch, merge_patch_replacing, write_atomic};
pub use env::{ENV_GATEWAY_PASSWORD, ENV_GATEWAY_PORT, ENV_GATEWAY_TOKEN, Env, apply_env_overlay};
pub use error::{ConfigError, ConfigIssue};
pub use load::{LoadedConfig, hash_text, load, load_with_env, parse_str, parse_str_with_env};
pub use model::rate_window_ms;
pub use model::{
    AuthConfig, AuthMode, Bind, ClusterConfig, Config, ControlUiConfig, DiscoveryConfig, EndpointToggle, GatewayConfig,
    GatewayRateLimitConfig, HttpConfig, HttpEndpointsConfig, IpCidr, LogRotateConfig, LoggingConfig, MdnsConfig,
    MdnsMode, MetricsConfig, NodesConfig, RateLimitConfig, ReloadConfig, ReloadMode, RequestRateConfig, StorageBackend,
    StorageConfig, TlsConfig, storage_url_problem,
};
pub use path::{InvalidKeyPath, KeyPath, Segment};
pub use redact::{
    REDACTED, SECRET_PATHS, SecretUrl, URL_PATHS, is_secret_path, redact_url_userinfo, redacted, redacted_section,
    restore_redacted,
};
pub use reload::{ConfigChange, RULES as RELOAD_RULES, ReloadClass, diff, reload_class, reload_class_of};
pub use schema::{config_schema, ui_hints};
pub use secret::{Secret, resolve_path};
pub use sections::{
    AgentDefaults, AgentEntry, AgentsSection, ChannelAccount, ChannelRateLimit, ChannelSection, ChannelsSection,
    ComfyDelivery, ComfyDevice, ComfyMedia, ComfySection, ComfyWorker, CronSection, DmPolicy, GroupPolicy,
    GroupSection, HooksSection, ModelChoice, ModelCost, ModelsSection, ProviderSection, SessionSection, ToolsSection,
    WorkerMode,
};
pub use source_map::{Location, Position, SourceMap};
pub use watch::{ConfigWatcher, ConfigWatcherBuilder, WatchEvent};
