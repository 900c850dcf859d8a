//! Turning a parsed JSON value into a [`Config`], collecting every problem on the way.
//!
//! Decoding never stops at the first problem: a bad field keeps its default and the problem is
//! recorded with its key path, so one run reports everything that needs fixing. Positions are
//! added afterwards from the [`SourceMap`], which keeps this module independent of text.

use std::collections::BTreeMap;
use std::net::IpAddr;
use std::path::{Path, PathBuf};

use serde_json::{Map, Value};

use crate::error::{ConfigError, ConfigIssue};
use crate::model::{
    AuthConfig, AuthMode, Bind, ClusterConfig, Config, ControlUiConfig, EndpointToggle, GatewayConfig,
    GatewayRateLimitConfig, HttpConfig, HttpEndpointsConfig, IpCidr, LogRotateConfig, LoggingConfig, MetricsConfig,
    RateLimitConfig, ReloadConfig, ReloadMode, RequestRateConfig, StorageConfig, TlsConfig, storage_url_problem,
};
use crate::model::{DiscoveryConfig, MdnsConfig, MdnsMode, NodesConfig};
use crate::path::KeyPath;
use crate::secret::Secret;
use crate::sections;
use crate::source_map::Position;
use crate::source_map::SourceMap;
use crate::suggest::suggest;

/// Which part of a key/value pair an issue points at.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum IssueAt {
    /// The key itself (unknown keys).
    Key,
    /// The value (wrong type, bad value).
    Value,
}

/// A problem found while decoding or validating, before it is given a file position.
#[derive(Clone, Debug)]
pub(crate) struct Issue {
    /// The key the problem is about (shown to the user).
    pub(crate) key: KeyPath,
    /// Where to point in the source; usually `key`, but e.g. a missing password is best shown
    /// at the `mode` that requires it.
    pub(crate) anchor: KeyPath,
    pub(crate) at: IssueAt,
    /// `false` for problems that did not come from the file (environment variables).
    pub(crate) in_file: bool,
    pub(crate) message: String,
}

impl Issue {
    fn at_value(key: KeyPath, message: String) -> Self {
        Self { anchor: key.clone(), key, at: IssueAt::Value, in_file: true, message }
    }

    fn at_key(key: KeyPath, message: String) -> Self {
        Self { at: IssueAt::Key, ..Self::at_value(key, message) }
    }

    fn anchored(key: KeyPath, anchor: KeyPath, message: String) -> Self {
        Self { anchor, ..Self::at_value(key, message) }
    }

    pub(crate) fn unlocated(key: KeyPath, message: String) -> Self {
        Self { in_file: false, ..Self::at_value(key, message) }
    }
}

/// Builds the error for issues that have no source text to point into.
pub(crate) fn unlocated(issues: Vec<Issue>) -> ConfigError {
    ConfigError::Invalid {
        issues: issues
            .into_iter()
            .map(|issue| ConfigIssue {
                file: PathBuf::new(),
                position: None,
                key: issue.key.to_string(),
                message: issue.message,
            })
            .collect(),
    }
}

/// Builds the error for issues found in `file`, pointing each at its source position and
/// listing them in document order.
pub(crate) fn located(issues: Vec<Issue>, map: &SourceMap, file: &Path) -> ConfigError {
    ConfigError::Invalid { issues: placed(issues, map, file) }
}

/// The issues pointed at their source positions, in document order.
pub(crate) fn placed(issues: Vec<Issue>, map: &SourceMap, file: &Path) -> Vec<ConfigIssue> {
    let mut out: Vec<ConfigIssue> = issues
        .into_iter()
        .map(|issue| ConfigIssue {
            file: file.to_path_buf(),
            position: if issue.in_file { position_of(&issue, map) } else { None },
            key: issue.key.to_string(),
            message: issue.message,
        })
        .collect();
    // Stable: issues at the same place keep their decoding order; unplaced ones go last.
    out.sort_by_key(|issue| (issue.position.is_none(), issue.position));
    out
}

/// An issue about `key` found outside the decoder, placed in `map` like the decoder's own.
pub(crate) fn place_key(key: KeyPath, message: String, map: &SourceMap, file: &Path) -> ConfigIssue {
    placed(vec![Issue::at_value(key, message)], map, file).remove(0)
}

/// The position for an issue: its anchor if present in the source, else the key of the
/// nearest ancestor that is (a missing key is best shown at the object that should hold it).
fn position_of(issue: &Issue, map: &SourceMap) -> Option<Position> {
    let mut path = issue.anchor.clone();
    let mut at = issue.at;
    loop {
        if let Some(loc) = map.location(&path) {
            return Some(match at {
                IssueAt::Key => loc.key.unwrap_or(loc.value),
                IssueAt::Value => loc.value,
            });
        }
        path = path.parent()?;
        at = IssueAt::Key;
    }
}

impl Config {
    /// Decodes and validates a config from an already-parsed value, e.g. the result of a
    /// `config.patch` before it is written. Problems carry key paths but no positions.
    /// Applies no environment overlay.
    ///
    /// # Errors
    /// [`ConfigError::Invalid`] listing every problem.
    pub fn from_value(value: &Value) -> Result<Self, ConfigError> {
        let (config, mut issues) = decode(value);
        validate(&config, &mut issues);
        if issues.is_empty() { Ok(config) } else { Err(unlocated(issues)) }
    }
}

pub(crate) const CONFIG_KEYS: &[&str] = &[
    "$schema",
    "gateway",
    "logging",
    "channels",
    "agents",
    "models",
    "hooks",
    "session",
    "cron",
    "comfy",
    "tools",
    "storage",
    "cluster",
    "discovery",
];
pub(crate) const GATEWAY_KEYS: &[&str] = &[
    "port",
    "bind",
    "customBindHost",
    "publicUrl",
    "auth",
    "controlUi",
    "http",
    "reload",
    "handshakeTimeoutMs",
    "tickIntervalMs",
    "trustedProxies",
    "allowRealIpFallback",
    "tls",
    "allowInsecureBind",
    "metrics",
    "rateLimit",
    "nodes",
];
pub(crate) const NODES_KEYS: &[&str] = &["presenceTimeoutMs"];
pub(crate) const DISCOVERY_KEYS: &[&str] = &["mdns"];
pub(crate) const MDNS_KEYS: &[&str] = &["mode"];
pub(crate) const GATEWAY_RATE_LIMIT_KEYS: &[&str] = &["perConnection"];
pub(crate) const REQUEST_RATE_KEYS: &[&str] = &["requests", "per"];
pub(crate) const TLS_KEYS: &[&str] = &["enabled", "certPath", "keyPath"];
pub(crate) const METRICS_KEYS: &[&str] = &["listen"];
pub(crate) const AUTH_KEYS: &[&str] = &["mode", "token", "password", "rateLimit"];
pub(crate) const RATE_LIMIT_KEYS: &[&str] = &["maxAttempts", "windowMs", "lockoutMs", "exemptLoopback"];
pub(crate) const CONTROL_UI_KEYS: &[&str] =
    &["enabled", "basePath", "root", "allowedOrigins", "dangerouslyAllowHostHeaderOriginFallback"];
pub(crate) const HTTP_KEYS: &[&str] = &["endpoints", "headerTimeoutMs", "maxConnections"];
pub(crate) const ENDPOINTS_KEYS: &[&str] = &["chatCompletions", "responses"];
pub(crate) const ENDPOINT_KEYS: &[&str] = &["enabled"];
pub(crate) const RELOAD_KEYS: &[&str] = &["mode"];
pub(crate) const LOGGING_KEYS: &[&str] = &["file", "level", "rotate"];
pub(crate) const LOG_ROTATE_KEYS: &[&str] = &["maxBytes", "keep"];
pub(crate) const STORAGE_KEYS: &[&str] = &["url"];
pub(crate) const CLUSTER_KEYS: &[&str] = &["heartbeatMs", "leaseTtlMs"];
const SECRET_KEYS: &[&str] = &["env", "file"];

/// OpenClaw settings that clawgate does not implement, keyed by the path of the object they
/// would appear in; users migrating a config get told so instead of a bare "unknown key".
const OPENCLAW_ONLY: &[(&str, &[&str])] = &[
    (
        "",
        &[
            "auth",
            "messages",
            "skills",
            "plugins",
            "browser",
            "secrets",
            "web",
            "wizard",
            "ui",
            "env",
            "commands",
            "talk",
            "audio",
            "broadcast",
            "canvasHost",
        ],
    ),
    ("gateway", &["mode", "tailscale", "publicOrigin", "remote", "tools", "roles", "terminal"]),
    ("gateway.nodes", &["allowSkills", "browser", "commands", "pairing", "pluginTools"]),
    // Unicast DNS-SD zones over a tailnet: not implemented.
    ("discovery", &["wideArea"]),
    ("gateway.auth", &["allowTailscale", "identityScopes", "trustedProxy"]),
];

/// Decodes `value` into a config without semantic checks. Bad fields keep their defaults.
pub(crate) fn decode(value: &Value) -> (Config, Vec<Issue>) {
    let (config, issues, _) = decode_with_warnings(value);
    (config, issues)
}

/// [`decode`], also returning the warnings (problems that do not make the config invalid).
pub(crate) fn decode_with_warnings(value: &Value) -> (Config, Vec<Issue>, Vec<Issue>) {
    let mut d = Decoder::default();
    let mut config = Config::default();
    let root = KeyPath::root();
    if let Some(obj) = d.object(value, &root, CONFIG_KEYS) {
        d.field(obj, &root, "$schema", &mut config.schema, |d, v, p| d.string(v, p).map(Some));
        d.field(obj, &root, "gateway", &mut config.gateway, gateway);
        d.field(obj, &root, "logging", &mut config.logging, logging);
        d.field(obj, &root, "agents", &mut config.agents, sections::agents);
        d.field(obj, &root, "models", &mut config.models, sections::models);
        d.field(obj, &root, "session", &mut config.session, sections::session);
        d.field(obj, &root, "comfy", &mut config.comfy, sections::comfy);
        d.field(obj, &root, "hooks", &mut config.hooks, sections::hooks);
        d.field(obj, &root, "cron", &mut config.cron, sections::cron);
        d.field(obj, &root, "tools", &mut config.tools, sections::tools);
        d.field(obj, &root, "channels", &mut config.channels, sections::channels);
        d.field(obj, &root, "storage", &mut config.storage, storage);
        d.field(obj, &root, "cluster", &mut config.cluster, cluster);
        d.field(obj, &root, "discovery", &mut config.discovery, discovery);
    }
    (config, d.issues, d.warnings)
}

/// Cross-field checks. A check is skipped when one of its inputs already failed to decode,
/// so a typo is reported once, not again as a consequence.
pub(crate) fn validate(config: &Config, issues: &mut Vec<Issue>) {
    let gateway = KeyPath::root().child("gateway");
    let auth = gateway.child("auth");
    let failed = |issues: &[Issue], path: &KeyPath| issues.iter().any(|i| i.key.starts_with(path));
    let g = &config.gateway;

    let cluster = KeyPath::root().child("cluster");
    if !failed(issues, &cluster) && config.cluster.heartbeat_ms >= config.cluster.lease_ttl_ms {
        issues.push(Issue::at_value(
            cluster.child("heartbeatMs"),
            format!(
                "cluster.heartbeatMs ({}) must be shorter than cluster.leaseTtlMs ({}): a gateway that beats less \
                 often than the ttl looks dead to its peers between beats",
                config.cluster.heartbeat_ms, config.cluster.lease_ttl_ms
            ),
        ));
    }

    let bind_ok = !failed(issues, &gateway.child("bind")) && !failed(issues, &gateway.child("customBindHost"));
    if bind_ok && g.bind == Bind::Custom && g.custom_bind_host.is_none() {
        issues.push(Issue::anchored(
            gateway.child("customBindHost"),
            gateway.child("bind"),
            "gateway.bind is \"custom\" but no address is set; set gateway.customBindHost to \
             the IP address to listen on (e.g. \"192.168.1.10\")"
                .to_owned(),
        ));
    }

    // LINE (and WhatsApp) fetch images from the links we send them, and only over HTTPS.
    let public_url = gateway.child("publicUrl");
    // One entry per platform that needs it: (its name, whether it is configured).
    let needs_https = [("LINE", config.channels.line.is_some()), ("WhatsApp", config.channels.whatsapp.is_some())];
    if !failed(issues, &public_url)
        && let (Some(url), Some((platform, _))) = (&g.public_url, needs_https.iter().find(|(_, on)| *on))
        && !url.starts_with("https://")
    {
        issues.push(Issue::at_value(
            public_url,
            format!(
                "{platform} needs an HTTPS public URL: set gateway.publicUrl to https://… (the address of a \
                 TLS-terminating reverse proxy or tunnel in front of the gateway); {url:?} is plain HTTP"
            ),
        ));
    }

    let mode_ok = !failed(issues, &auth.child("mode"));
    if bind_ok
        && mode_ok
        && g.auth.mode == AuthMode::None
        && let Some(host) = g.bind_host().filter(|ip| !ip.is_loopback())
    {
        issues.push(Issue::at_value(
            auth.child("mode"),
            format!(
                "refusing to bind to a non-loopback address ({host}, from gateway.bind = \
                 \"{}\") without auth; set gateway.auth.mode to \"token\" or \"password\", \
                 or bind to \"loopback\"",
                g.bind
            ),
        ));
    }

    let tls = gateway.child("tls");
    if !failed(issues, &tls)
        && let Some(t) = g.tls.as_ref().filter(|t| t.enabled)
    {
        for (key, value) in [("certPath", &t.cert_path), ("keyPath", &t.key_path)] {
            if value.is_none() {
                issues.push(Issue::anchored(
                    tls.child(key),
                    tls.clone(),
                    format!(
                        "gateway.tls is on but gateway.tls.{key} is not set; give the PEM file's path \
                         (relative to the config file) or set gateway.tls.enabled to false"
                    ),
                ));
            }
        }
    }
    let insecure_ok = !failed(issues, &tls)
        && !failed(issues, &gateway.child("trustedProxies"))
        && !failed(issues, &gateway.child("allowInsecureBind"));
    if bind_ok
        && insecure_ok
        && g.tls_files().is_none()
        && g.trusted_proxies.is_empty()
        && !g.allow_insecure_bind
        // Without auth, the refusal below says what matters more.
        && !(mode_ok && g.auth.mode == AuthMode::None)
        && let Some(host) = g.bind_host().filter(|ip| !ip.is_loopback())
    {
        issues.push(Issue::at_value(
            gateway.child("bind"),
            format!(
                "refusing to listen on {host} (gateway.bind = \"{}\") in plain text: set gateway.tls \
                 {{certPath, keyPath}}, or list the reverse proxy in front of it in gateway.trustedProxies, \
                 or set gateway.allowInsecureBind to true (only on a network you trust)",
                g.bind
            ),
        ));
    }

    if mode_ok
        && !failed(issues, &auth.child("password"))
        && g.auth.mode == AuthMode::Password
        && g.auth.password.is_none()
    {
        issues.push(Issue::anchored(
            auth.child("password"),
            auth.child("mode"),
            format!(
                "gateway.auth.mode is \"password\" but no password is set; set \
                 gateway.auth.password (plain text, an argon2id hash \"$argon2id$…\", \
                 {{\"env\": \"NAME\"}} or {{\"file\": \"path\"}}) or the {} environment variable",
                crate::env::ENV_GATEWAY_PASSWORD
            ),
        ));
    }
}

fn gateway(d: &mut Decoder, v: &Value, p: &KeyPath) -> Option<GatewayConfig> {
    let obj = d.object(v, p, GATEWAY_KEYS)?;
    let mut out = GatewayConfig::default();
    d.field(obj, p, "port", &mut out.port, |d, v, p| {
        d.integer(v, p, 0, u64::from(u16::MAX), "a port number from 0 to 65535 (0 picks a free port)")
            .and_then(|n| u16::try_from(n).ok())
    });
    d.field(obj, p, "bind", &mut out.bind, bind);
    d.field(obj, p, "customBindHost", &mut out.custom_bind_host, |d, v, p| ip_address(d, v, p).map(Some));
    d.field(obj, p, "publicUrl", &mut out.public_url, |d, v, p| {
        let url = d.string(v, p)?;
        match check_public_url(&url) {
            Ok(url) => Some(Some(url)),
            Err(why) => d.fail(p, why),
        }
    });
    d.field(obj, p, "auth", &mut out.auth, auth);
    d.field(obj, p, "controlUi", &mut out.control_ui, control_ui);
    d.field(obj, p, "http", &mut out.http, http);
    d.field(obj, p, "reload", &mut out.reload, reload);
    d.field(obj, p, "handshakeTimeoutMs", &mut out.handshake_timeout_ms, Decoder::millis);
    d.field(obj, p, "tickIntervalMs", &mut out.tick_interval_ms, Decoder::millis);
    d.field(obj, p, "trustedProxies", &mut out.trusted_proxies, |d, v, p| {
        d.list(v, p, |d, v, p| {
            let text = d.string(v, p)?;
            match IpCidr::parse(&text) {
                Ok(cidr) => Some(cidr),
                Err(message) => d.fail(p, message),
            }
        })
    });
    d.field(obj, p, "allowRealIpFallback", &mut out.allow_real_ip_fallback, Decoder::boolean);
    d.field(obj, p, "tls", &mut out.tls, |d, v, p| {
        let obj = d.object(v, p, TLS_KEYS)?;
        let mut tls = TlsConfig::default();
        d.field(obj, p, "enabled", &mut tls.enabled, Decoder::boolean);
        d.field(obj, p, "certPath", &mut tls.cert_path, |d, v, p| d.string(v, p).map(|s| Some(PathBuf::from(s))));
        d.field(obj, p, "keyPath", &mut tls.key_path, |d, v, p| d.string(v, p).map(|s| Some(PathBuf::from(s))));
        Some(Some(tls))
    });
    d.field(obj, p, "allowInsecureBind", &mut out.allow_insecure_bind, Decoder::boolean);
    d.field(obj, p, "metrics", &mut out.metrics, metrics);
    d.field(obj, p, "rateLimit", &mut out.rate_limit, gateway_rate_limit);
    d.field(obj, p, "nodes", &mut out.nodes, nodes);
    Some(out)
}

fn nodes(d: &mut Decoder, v: &Value, p: &KeyPath) -> Option<NodesConfig> {
    let obj = d.object(v, p, NODES_KEYS)?;
    let mut out = NodesConfig::default();
    d.field(obj, p, "presenceTimeoutMs", &mut out.presence_timeout_ms, |d, v, p| {
        d.integer(v, p, 200, 3_600_000, "a duration in milliseconds from 200 to 3600000")
    });
    Some(out)
}

fn discovery(d: &mut Decoder, v: &Value, p: &KeyPath) -> Option<DiscoveryConfig> {
    let obj = d.object(v, p, DISCOVERY_KEYS)?;
    let mut out = DiscoveryConfig::default();
    d.field(obj, p, "mdns", &mut out.mdns, |d, v, p| {
        let obj = d.object(v, p, MDNS_KEYS)?;
        let mut mdns = MdnsConfig::default();
        d.field(obj, p, "mode", &mut mdns.mode, |d, v, p| {
            let modes = [MdnsMode::Off, MdnsMode::Minimal, MdnsMode::Full];
            d.choice(v, p, &["off", "minimal", "full"], &[]).map(|i| Some(modes[i]))
        });
        Some(mdns)
    });
    Some(out)
}

fn gateway_rate_limit(d: &mut Decoder, v: &Value, p: &KeyPath) -> Option<GatewayRateLimitConfig> {
    let obj = d.object(v, p, GATEWAY_RATE_LIMIT_KEYS)?;
    let mut out = GatewayRateLimitConfig::default();
    d.field(obj, p, "perConnection", &mut out.per_connection, request_rate);
    Some(out)
}

fn request_rate(d: &mut Decoder, v: &Value, p: &KeyPath) -> Option<RequestRateConfig> {
    let obj = d.object(v, p, REQUEST_RATE_KEYS)?;
    let mut out = RequestRateConfig::default();
    d.field(obj, p, "requests", &mut out.requests, |d, v, p| {
        d.integer(v, p, 1, u64::from(u32::MAX), "a whole number of requests, at least 1")
            .and_then(|n| u32::try_from(n).ok())
    });
    d.field(obj, p, "per", &mut out.per, |d, v, p| {
        let text = d.string(v, p)?;
        match crate::model::rate_window_ms(&text) {
            Some(_) => Some(text),
            None => d.fail(p, format!("{text:?} is not a window from 1s to 1d such as \"1m\", \"30s\" or \"1h\"")),
        }
    });
    Some(out)
}

fn metrics(d: &mut Decoder, v: &Value, p: &KeyPath) -> Option<MetricsConfig> {
    let obj = d.object(v, p, METRICS_KEYS)?;
    let mut out = MetricsConfig::default();
    d.field(obj, p, "listen", &mut out.listen, |d, v, p| {
        let text = d.string(v, p)?;
        match text.parse::<std::net::SocketAddr>() {
            Ok(addr) if addr.ip().is_loopback() => Some(Some(addr)),
            Ok(_) => d.fail(
                p,
                format!(
                    "{text} is not a loopback address; this listener has no authentication, so it only binds \
                     127.0.0.1 or [::1] (scrape the gateway port with the token from elsewhere)"
                ),
            ),
            Err(_) => d.fail(p, format!("{text:?} is not an ip:port address such as \"127.0.0.1:9464\"")),
        }
    });
    Some(out)
}

fn auth(d: &mut Decoder, v: &Value, p: &KeyPath) -> Option<AuthConfig> {
    let obj = d.object(v, p, AUTH_KEYS)?;
    let mut out = AuthConfig::default();
    d.field(obj, p, "mode", &mut out.mode, |d, v, p| {
        let modes = [AuthMode::None, AuthMode::Token, AuthMode::Password];
        d.choice(v, p, &AuthMode::NAMES, &["trusted-proxy"]).and_then(|i| modes.get(i).copied())
    });
    d.field(obj, p, "token", &mut out.token, |d, v, p| secret(d, v, p).map(Some));
    d.field(obj, p, "password", &mut out.password, |d, v, p| secret(d, v, p).map(Some));
    d.field(obj, p, "rateLimit", &mut out.rate_limit, rate_limit);
    Some(out)
}

fn rate_limit(d: &mut Decoder, v: &Value, p: &KeyPath) -> Option<RateLimitConfig> {
    let obj = d.object(v, p, RATE_LIMIT_KEYS)?;
    let mut out = RateLimitConfig::default();
    d.field(obj, p, "maxAttempts", &mut out.max_attempts, |d, v, p| {
        d.integer(v, p, 1, u64::from(u32::MAX), "a whole number of attempts, at least 1")
            .and_then(|n| u32::try_from(n).ok())
    });
    d.field(obj, p, "windowMs", &mut out.window_ms, Decoder::millis);
    d.field(obj, p, "lockoutMs", &mut out.lockout_ms, |d, v, p| {
        d.integer(v, p, 0, u64::MAX, "a duration in milliseconds (0 or more)")
    });
    d.field(obj, p, "exemptLoopback", &mut out.exempt_loopback, Decoder::boolean);
    Some(out)
}

fn control_ui(d: &mut Decoder, v: &Value, p: &KeyPath) -> Option<ControlUiConfig> {
    let obj = d.object(v, p, CONTROL_UI_KEYS)?;
    let mut out = ControlUiConfig::default();
    d.field(obj, p, "enabled", &mut out.enabled, Decoder::boolean);
    d.field(obj, p, "basePath", &mut out.base_path, |d, v, p| {
        let path = d.string(v, p)?;
        match check_base_path(&path) {
            Ok(()) => Some(path),
            Err(message) => d.fail(p, message),
        }
    });
    d.field(obj, p, "root", &mut out.root, |d, v, p| {
        let root = d.string(v, p)?;
        if root.trim().is_empty() {
            return d.fail(
                p,
                "must be a directory path (a built Control UI, e.g. the openclaw package's dist/control-ui)".into(),
            );
        }
        Some(Some(PathBuf::from(root)))
    });
    d.field(obj, p, "allowedOrigins", &mut out.allowed_origins, |d, v, p| {
        d.list(v, p, |d, v, p| {
            let origin = d.string(v, p)?;
            match check_origin(&origin) {
                Ok(()) => Some(origin),
                Err(message) => d.fail(p, message),
            }
        })
    });
    d.field(
        obj,
        p,
        "dangerouslyAllowHostHeaderOriginFallback",
        &mut out.dangerously_allow_host_header_origin_fallback,
        Decoder::boolean,
    );
    Some(out)
}

fn http(d: &mut Decoder, v: &Value, p: &KeyPath) -> Option<HttpConfig> {
    let obj = d.object(v, p, HTTP_KEYS)?;
    let mut out = HttpConfig::default();
    d.field(obj, p, "endpoints", &mut out.endpoints, |d, v, p| {
        let obj = d.object(v, p, ENDPOINTS_KEYS)?;
        let mut out = HttpEndpointsConfig::default();
        d.field(obj, p, "chatCompletions", &mut out.chat_completions, endpoint);
        d.field(obj, p, "responses", &mut out.responses, endpoint);
        Some(out)
    });
    d.field(obj, p, "headerTimeoutMs", &mut out.header_timeout_ms, Decoder::millis);
    d.field(obj, p, "maxConnections", &mut out.max_connections, |d, v, p| {
        d.integer(v, p, 16, 1_000_000, "a whole number of connections, at least 16").and_then(|n| u32::try_from(n).ok())
    });
    Some(out)
}

fn endpoint(d: &mut Decoder, v: &Value, p: &KeyPath) -> Option<EndpointToggle> {
    let obj = d.object(v, p, ENDPOINT_KEYS)?;
    let mut out = EndpointToggle::default();
    d.field(obj, p, "enabled", &mut out.enabled, Decoder::boolean);
    Some(out)
}

fn reload(d: &mut Decoder, v: &Value, p: &KeyPath) -> Option<ReloadConfig> {
    let obj = d.object(v, p, RELOAD_KEYS)?;
    let mut out = ReloadConfig::default();
    d.field(obj, p, "mode", &mut out.mode, |d, v, p| {
        let modes = [ReloadMode::Hybrid, ReloadMode::Off];
        d.choice(v, p, &ReloadMode::NAMES, &["hot", "restart"]).and_then(|i| modes.get(i).copied())
    });
    Some(out)
}

fn logging(d: &mut Decoder, v: &Value, p: &KeyPath) -> Option<LoggingConfig> {
    let obj = d.object(v, p, LOGGING_KEYS)?;
    let mut out = LoggingConfig::default();
    d.field(obj, p, "file", &mut out.file, |d, v, p| {
        let file = d.string(v, p)?;
        if file.trim().is_empty() {
            return d.fail(p, "is empty; give a file path or remove the key".to_owned());
        }
        Some(Some(PathBuf::from(file)))
    });
    d.field(obj, p, "level", &mut out.level, |d, v, p| {
        let level = d.string(v, p)?;
        match check_log_level(&level) {
            Ok(()) => Some(level),
            Err(message) => d.fail(p, message),
        }
    });
    d.field(obj, p, "rotate", &mut out.rotate, log_rotate);
    Some(out)
}

fn storage(d: &mut Decoder, v: &Value, p: &KeyPath) -> Option<StorageConfig> {
    let obj = d.object(v, p, STORAGE_KEYS)?;
    let mut out = StorageConfig::default();
    d.field(obj, p, "url", &mut out.url, |d, v, p| {
        let url = d.string(v, p)?;
        match storage_url_problem(&url) {
            None => Some(Some(crate::SecretUrl::new(url))),
            // The message never quotes the URL: it may hold a password.
            Some(problem) => d.fail(p, problem),
        }
    });
    Some(out)
}

fn cluster(d: &mut Decoder, v: &Value, p: &KeyPath) -> Option<ClusterConfig> {
    let obj = d.object(v, p, CLUSTER_KEYS)?;
    let mut out = ClusterConfig::default();
    let (min, max) = ClusterConfig::HEARTBEAT_RANGE;
    d.field(obj, p, "heartbeatMs", &mut out.heartbeat_ms, |d, v, p| {
        d.integer(v, p, min, max, &format!("a duration in milliseconds from {min} to {max}"))
    });
    let (min, max) = ClusterConfig::LEASE_TTL_RANGE;
    d.field(obj, p, "leaseTtlMs", &mut out.lease_ttl_ms, |d, v, p| {
        d.integer(v, p, min, max, &format!("a duration in milliseconds from {min} to {max}"))
    });
    Some(out)
}

fn log_rotate(d: &mut Decoder, v: &Value, p: &KeyPath) -> Option<LogRotateConfig> {
    let obj = d.object(v, p, LOG_ROTATE_KEYS)?;
    let mut out = LogRotateConfig::default();
    d.field(obj, p, "maxBytes", &mut out.max_bytes, |d, v, p| {
        let min = LogRotateConfig::MIN_MAX_BYTES;
        let what = format!("a size in bytes, at least {min} (or 0 to never rotate)");
        match d.integer(v, p, 0, u64::MAX, &what)? {
            n if n != 0 && n < min => d.fail(p, format!("{n} is too small; expected {what}")),
            n => Some(n),
        }
    });
    d.field(obj, p, "keep", &mut out.keep, |d, v, p| {
        let max = LogRotateConfig::MAX_KEEP;
        let n = d.integer(v, p, 0, u64::from(max), &format!("a count of old log files from 0 to {max}"))?;
        u32::try_from(n).ok()
    });
    Some(out)
}

fn bind(d: &mut Decoder, v: &Value, p: &KeyPath) -> Option<Bind> {
    let Value::String(text) = v else {
        return d
            .fail(p, format!("expected \"loopback\", \"lan\", \"custom\" or an IP address, found {}", describe(v)));
    };
    match text.as_str() {
        "loopback" => return Some(Bind::Loopback),
        "lan" => return Some(Bind::Lan),
        "custom" => return Some(Bind::Custom),
        _ => {}
    }
    if let Ok(ip) = text.parse::<IpAddr>() {
        return Some(Bind::Ip(ip));
    }
    let hint = match text.as_str() {
        "localhost" => " (did you mean \"loopback\"?)".to_owned(),
        "tailnet" | "auto" => {
            format!(" (\"{text}\" is an OpenClaw setting that clawgate does not support)")
        }
        _ => suggestion(text, &Bind::NAMES),
    };
    d.fail(
        p,
        format!(
            "unknown value {text:?}{hint}; expected \"loopback\", \"lan\", \"custom\" or an IP \
             address such as \"192.168.1.10\""
        ),
    )
}

fn ip_address(d: &mut Decoder, v: &Value, p: &KeyPath) -> Option<IpAddr> {
    let text = d.string(v, p)?;
    match text.trim().parse::<IpAddr>() {
        Ok(ip) => Some(ip),
        Err(_) => d.fail(
            p,
            format!(
                "{text:?} is not an IP address; give an IPv4 or IPv6 address such as \
                 \"192.168.1.10\" (host names are not resolved)"
            ),
        ),
    }
}

pub(crate) fn secret(d: &mut Decoder, v: &Value, p: &KeyPath) -> Option<Secret> {
    match v {
        Value::String(value) if value.is_empty() => d.fail(
            p,
            "is empty; set a value, use {\"env\": \"NAME\"} or {\"file\": \"path\"}, or remove \
             the key"
                .to_owned(),
        ),
        Value::String(value) => Some(Secret::Plain(value.clone())),
        Value::Object(_) => {
            let obj = d.object(v, p, SECRET_KEYS)?;
            let env = obj.get("env").filter(|v| !v.is_null());
            let file = obj.get("file").filter(|v| !v.is_null());
            match (env, file) {
                (Some(_), Some(_)) => d.fail(p, "has both \"env\" and \"file\"; keep one of them".to_owned()),
                (Some(env), None) => {
                    let path = p.child("env");
                    let name = d.string(env, &path)?;
                    if name.is_empty() || name.contains(['=', '\0']) {
                        return d.fail(&path, format!("{name:?} is not an environment variable name"));
                    }
                    Some(Secret::Env { env: name })
                }
                (None, Some(file)) => {
                    let path = p.child("file");
                    let name = d.string(file, &path)?;
                    if name.trim().is_empty() {
                        return d.fail(&path, "is empty; give the path of the secret file".to_owned());
                    }
                    Some(Secret::File { file: PathBuf::from(name) })
                }
                (None, None) => {
                    // Unknown keys were reported by `object`; only report an empty object here.
                    if obj.is_empty() {
                        d.fail(
                            p,
                            "is an empty object; expected {\"env\": \"NAME\"} or \
                             {\"file\": \"path\"}"
                                .to_owned(),
                        )
                    } else {
                        None
                    }
                }
            }
        }
        // Never echo the value: it may be the secret itself.
        other => d.fail(
            p,
            format!("expected a string, {{\"env\": \"NAME\"}} or {{\"file\": \"path\"}}, found {}", kind(other)),
        ),
    }
}

#[derive(Default)]
pub(crate) struct Decoder {
    pub(crate) issues: Vec<Issue>,
    /// Things worth saying that do not make the config invalid (a likely typo among the keys
    /// that are kept for OpenClaw).
    pub(crate) warnings: Vec<Issue>,
}

impl Decoder {
    /// Records a problem with the value at `path`; returns `None` so callers can `return` it.
    pub(crate) fn fail<T>(&mut self, path: &KeyPath, message: String) -> Option<T> {
        self.issues.push(Issue::at_value(path.clone(), message));
        None
    }

    /// Decodes `obj[key]` with `decode` into `slot`. Absent or `null` keeps the default; a
    /// value that fails to decode keeps it too (the problem has been recorded).
    pub(crate) fn field<T>(
        &mut self,
        obj: &Map<String, Value>,
        parent: &KeyPath,
        key: &str,
        slot: &mut T,
        decode: impl FnOnce(&mut Self, &Value, &KeyPath) -> Option<T>,
    ) {
        if let Some(value) = obj.get(key).filter(|v| !v.is_null())
            && let Some(decoded) = decode(self, value, &parent.child(key))
        {
            *slot = decoded;
        }
    }

    /// Checks that `v` is an object whose keys are all in `known`, reporting every unknown
    /// key with a hint.
    pub(crate) fn object<'v>(
        &mut self,
        v: &'v Value,
        path: &KeyPath,
        known: &[&str],
    ) -> Option<&'v Map<String, Value>> {
        let Value::Object(obj) = v else {
            return self.fail(path, format!("expected an object {{ … }}, found {}", kind(v)));
        };
        let here = path.to_string();
        let openclaw_only = OPENCLAW_ONLY.iter().find(|(at, _)| *at == here).map_or(&[][..], |(_, keys)| *keys);
        for key in obj.keys().filter(|k| !known.contains(&k.as_str())) {
            let hint = if openclaw_only.contains(&key.as_str()) {
                "; this is an OpenClaw setting that clawgate does not support, remove it".to_owned()
            } else {
                match suggest(key, known) {
                    Some(s) => format!("; did you mean \"{s}\"?"),
                    None => format!("; known keys here: {}", known.join(", ")),
                }
            };
            self.issues.push(Issue::at_key(path.child(key), format!("unknown key {key:?}{hint}")));
        }
        Some(obj)
    }

    /// Checks that `v` is an object of a section OpenClaw shares with clawgate. Keys in `known`
    /// are the caller's to decode; every other key is kept as written in `extra`, so an OpenClaw
    /// config keeps working and is written back whole. Such a key close to a known one that is
    /// not an OpenClaw key (`upstream`) is likely a typo: it gets a warning with the hint.
    pub(crate) fn open_object<'v>(
        &mut self,
        v: &'v Value,
        path: &KeyPath,
        known: &[&str],
        upstream: &[&str],
        extra: &mut Map<String, Value>,
    ) -> Option<&'v Map<String, Value>> {
        let Value::Object(obj) = v else {
            return self.fail(path, format!("expected an object {{ … }}, found {}", kind(v)));
        };
        for (key, value) in obj.iter().filter(|(k, _)| !known.contains(&k.as_str())) {
            if !upstream.contains(&key.as_str())
                && let Some(s) = suggest(key, known)
            {
                self.warnings.push(Issue::at_key(
                    path.child(key),
                    format!("unknown key {key:?} is kept but not used by clawgate; did you mean \"{s}\"?"),
                ));
            }
            extra.insert(key.clone(), value.clone());
        }
        Some(obj)
    }

    /// An optional string: `Some` of the text as written.
    pub(crate) fn opt_string(&mut self, v: &Value, p: &KeyPath) -> Option<Option<String>> {
        self.string(v, p).map(Some)
    }

    /// A list of strings.
    pub(crate) fn strings(&mut self, v: &Value, p: &KeyPath) -> Option<Vec<String>> {
        self.list(v, p, Self::string)
    }

    /// An object of strings (`headers`).
    pub(crate) fn string_map(&mut self, v: &Value, p: &KeyPath) -> Option<BTreeMap<String, String>> {
        let Value::Object(obj) = v else {
            return self.fail(p, format!("expected an object of strings {{ … }}, found {}", kind(v)));
        };
        let mut out = BTreeMap::new();
        for (key, value) in obj {
            if let Some(text) = self.string(value, &p.child(key)) {
                out.insert(key.clone(), text);
            }
        }
        Some(out)
    }

    /// A finite number.
    pub(crate) fn number(&mut self, v: &Value, p: &KeyPath) -> Option<f64> {
        match v {
            Value::Number(n) => n.as_f64(),
            Value::String(s) if s.trim().parse::<f64>().is_ok() => {
                self.fail(p, format!("expected a number, found string {s:?}; remove the quotes"))
            }
            other => self.fail(p, format!("expected a number, found {}", describe(other))),
        }
    }

    pub(crate) fn boolean(&mut self, v: &Value, p: &KeyPath) -> Option<bool> {
        match v {
            Value::Bool(b) => Some(*b),
            Value::String(s) if s == "true" || s == "false" => {
                self.fail(p, format!("expected {s} without quotes, found string {s:?}"))
            }
            other => self.fail(p, format!("expected true or false, found {}", describe(other))),
        }
    }

    pub(crate) fn string(&mut self, v: &Value, p: &KeyPath) -> Option<String> {
        match v {
            Value::String(s) => Some(s.clone()),
            other => self.fail(p, format!("expected a string, found {}", describe(other))),
        }
    }

    pub(crate) fn millis(&mut self, v: &Value, p: &KeyPath) -> Option<u64> {
        self.integer(v, p, 1, u64::MAX, "a duration in milliseconds (a whole number, at least 1)")
    }

    /// A whole number in `min..=max`; `what` describes the expected value in messages.
    pub(crate) fn integer(&mut self, v: &Value, p: &KeyPath, min: u64, max: u64, what: &str) -> Option<u64> {
        let number = match v {
            Value::Number(n) => n,
            Value::String(s) if s.trim().parse::<f64>().is_ok() => {
                return self.fail(p, format!("expected {what}, found string {s:?}; remove the quotes"));
            }
            other => return self.fail(p, format!("expected {what}, found {}", describe(other))),
        };
        if let Some(n) = number.as_u64() {
            return if (min..=max).contains(&n) {
                Some(n)
            } else {
                self.fail(p, format!("{number} is out of range; expected {what}"))
            };
        }
        // JSON5 allows `6e4` and `18789.0`: accept floats that are whole and in range.
        let f = number.as_f64().unwrap_or(f64::NAN);
        if !f.is_finite() || f.fract() != 0.0 {
            return self.fail(p, format!("{number} is not a whole number; expected {what}"));
        }
        if f < 0.0 {
            return self.fail(p, format!("{number} is negative; expected {what}"));
        }
        #[allow(
            clippy::cast_possible_truncation,
            clippy::cast_sign_loss,
            clippy::cast_precision_loss,
            reason = "f is finite, whole and non-negative; the bounds are checked before use"
        )]
        let (n, in_range) = (f as u64, f >= min as f64 && f <= max as f64);
        if in_range { Some(n) } else { self.fail(p, format!("{number} is out of range; expected {what}")) }
    }

    /// One of `names` (returns its index). `unsupported` lists OpenClaw values clawgate knows
    /// but does not implement, for a clearer message.
    pub(crate) fn choice(&mut self, v: &Value, p: &KeyPath, names: &[&str], unsupported: &[&str]) -> Option<usize> {
        let expected = format!("expected one of: {}", names.join(", "));
        let Value::String(text) = v else {
            return self.fail(p, format!("{expected}; found {}", describe(v)));
        };
        if let Some(i) = names.iter().position(|n| n == text) {
            return Some(i);
        }
        let hint = if unsupported.contains(&text.as_str()) {
            format!("; \"{text}\" is an OpenClaw setting that clawgate does not support")
        } else {
            match suggest(text, names) {
                Some(s) => format!("; did you mean \"{s}\"?"),
                None => String::new(),
            }
        };
        self.fail(p, format!("unknown value {text:?} ({expected}){hint}"))
    }

    /// An array whose elements decode with `item`; bad elements are reported at their index.
    pub(crate) fn list<T>(
        &mut self,
        v: &Value,
        p: &KeyPath,
        mut item: impl FnMut(&mut Self, &Value, &KeyPath) -> Option<T>,
    ) -> Option<Vec<T>> {
        let Value::Array(items) = v else {
            return self.fail(p, format!("expected an array [ … ], found {}", kind(v)));
        };
        Some(items.iter().enumerate().filter_map(|(i, v)| item(self, v, &p.index(i))).collect())
    }
}

pub(crate) fn suggestion(input: &str, names: &[&str]) -> String {
    suggest(input, names).map_or_else(String::new, |s| format!(" (did you mean \"{s}\"?)"))
}

/// A short description of a value for messages: its type and, for scalars, the value.
pub(crate) fn describe(v: &Value) -> String {
    match v {
        Value::Null => "null".to_owned(),
        Value::Bool(b) => b.to_string(),
        Value::Number(n) => format!("number {n}"),
        Value::String(s) if s.chars().count() > 40 => {
            let head: String = s.chars().take(37).collect();
            format!("string \"{head}…\"")
        }
        Value::String(s) => format!("string {s:?}"),
        Value::Array(_) => "an array".to_owned(),
        Value::Object(_) => "an object".to_owned(),
    }
}

/// The type of a value, without the value: for secrets, and for places where a whole object
/// was expected (a string there may well be a misplaced secret, e.g. `auth: "token"`).
pub(crate) fn kind(v: &Value) -> &'static str {
    match v {
        Value::Null => "null",
        Value::Bool(_) => "a boolean",
        Value::Number(_) => "a number",
        Value::String(_) => "a string",
        Value::Array(_) => "an array",
        Value::Object(_) => "an object",
    }
}

/// Accepts `scheme://host[:port]`, the form browsers send in the `Origin` header.
fn check_origin(origin: &str) -> Result<(), String> {
    let example = "expected an origin like \"https://example.com\" or \"http://localhost:5173\"";
    if origin.contains('*') {
        return Err(format!("{origin:?}: wildcards are not supported; list each origin ({example})"));
    }
    let Some((scheme, rest)) = origin.split_once("://") else {
        return Err(format!("{origin:?} is not an origin; {example}"));
    };
    let scheme_ok = scheme.starts_with(|c: char| c.is_ascii_alphabetic())
        && scheme.chars().all(|c| c.is_ascii_alphanumeric() || matches!(c, '+' | '-' | '.'));
    if !scheme_ok {
        return Err(format!("{origin:?} has an invalid scheme {scheme:?}; {example}"));
    }
    if let Some(cut) = rest.find(['/', '?', '#']) {
        let trimmed = &origin[..scheme.len() + 3 + cut];
        return Err(format!("{origin:?} has a path; an origin is only scheme://host[:port], use {trimmed:?}"));
    }
    if rest.contains('@') {
        return Err(format!("{origin:?} contains user info; {example}"));
    }
    let (host, port) = if let Some(v6) = rest.strip_prefix('[') {
        let Some((inside, after)) = v6.split_once(']') else {
            return Err(format!("{origin:?} has an unclosed IPv6 bracket; {example}"));
        };
        if inside.parse::<std::net::Ipv6Addr>().is_err() {
            return Err(format!("{origin:?} has an invalid IPv6 address; {example}"));
        }
        match after {
            "" => (inside, None),
            _ => match after.strip_prefix(':') {
                Some(port) => (inside, Some(port)),
                None => return Err(format!("{origin:?} is not an origin; {example}")),
            },
        }
    } else {
        match rest.rsplit_once(':') {
            Some((host, port)) => (host, Some(port)),
            None => (rest, None),
        }
    };
    if host.is_empty() {
        return Err(format!("{origin:?} has no host; {example}"));
    }
    if !rest.starts_with('[') && !host.chars().all(|c| c.is_alphanumeric() || matches!(c, '-' | '.' | '_')) {
        return Err(format!("{origin:?} has an invalid host {host:?}; {example}"));
    }
    if let Some(port) = port
        && (port.is_empty()
            || !port.chars().all(|c| c.is_ascii_digit())
            || port.parse::<u16>().map_or(true, |p| p == 0))
    {
        return Err(format!("{origin:?} has an invalid port {port:?} (expected 1-65535); {example}"));
    }
    Ok(())
}

/// `gateway.publicUrl`: an absolute `http(s)://host[:port][/path]` without query or fragment;
/// returned without its trailing slash. (Whether it must be HTTPS depends on the channels, see
/// [`validate`].)
fn check_public_url(url: &str) -> Result<String, String> {
    let url = url.trim();
    let Some((scheme, rest)) = url.split_once("://") else {
        return Err(format!("{url:?} is not a URL; write the full address, like \"https://bot.example.com\""));
    };
    if !matches!(scheme, "https" | "http") {
        return Err(format!("{url:?} must start with https://"));
    }
    let host = rest.split('/').next().unwrap_or("");
    if host.is_empty() || host.contains('@') || rest.contains(['?', '#']) || rest.contains(char::is_whitespace) {
        return Err(format!(
            "{url:?} must be a plain address like \"https://bot.example.com\" (a host, an optional port and \
             path; no user, query or fragment)"
        ));
    }
    Ok(url.trim_end_matches('/').to_owned())
}

fn check_base_path(path: &str) -> Result<(), String> {
    if path.is_empty() {
        return Ok(());
    }
    if !path.starts_with('/') {
        return Err(format!(
            "{path:?} must start with \"/\" (e.g. \"/{}\"), or be \"\" to serve the UI at /",
            path.trim_start_matches('/')
        ));
    }
    if path.contains(['?', '#']) || path.chars().any(char::is_whitespace) {
        return Err(format!("{path:?} must be a plain URL path without spaces, \"?\" or \"#\""));
    }
    Ok(())
}

/// Accepts `level` or comma-separated `level` / `target=level` directives.
fn check_log_level(spec: &str) -> Result<(), String> {
    const LEVELS: [&str; 6] = ["error", "warn", "info", "debug", "trace", "off"];
    let usage = "expected error, warn, info, debug, trace or off, optionally with per-target \
                 levels like \"info,clawgate_server=debug\"";
    let directives: Vec<&str> = spec.split(',').map(str::trim).filter(|d| !d.is_empty()).collect();
    if directives.is_empty() {
        return Err(format!("is empty; {usage}"));
    }
    for directive in directives {
        let (target, level) = match directive.split_once('=') {
            Some((target, level)) => (Some(target.trim()), level.trim()),
            None => (None, directive),
        };
        if target.is_some_and(|t| {
            t.is_empty() || !t.chars().all(|c| c.is_ascii_alphanumeric() || matches!(c, '_' | ':' | '-'))
        }) {
            return Err(format!("{directive:?} has an invalid target; {usage}"));
        }
        if !LEVELS.contains(&level.to_ascii_lowercase().as_str()) {
            let hint = suggestion(&level.to_ascii_lowercase(), &LEVELS);
            return Err(format!("unknown log level {level:?}{hint}; {usage}"));
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    fn issues(value: Value) -> Vec<(String, String)> {
        let (config, mut issues) = decode(&value);
        validate(&config, &mut issues);
        issues.into_iter().map(|i| (i.key.to_string(), i.message)).collect()
    }

    fn only_issue(value: Value) -> (String, String) {
        let mut all = issues(value);
        assert_eq!(all.len(), 1, "{all:#?}");
        all.remove(0)
    }

    #[test]
    fn empty_object_decodes_to_defaults() {
        let (config, issues) = decode(&json!({}));
        assert!(issues.is_empty());
        assert_eq!(config, Config::default());
        assert_eq!(config.gateway.port, 18789);
        assert_eq!(config.gateway.auth.mode, AuthMode::Token);
        assert_eq!(config.gateway.handshake_timeout_ms, 15_000);
        assert_eq!(config.gateway.tick_interval_ms, 30_000);
        assert_eq!(config.gateway.auth.rate_limit.max_attempts, 10);
        assert!(config.gateway.control_ui.enabled);
        assert_eq!(config.logging.level, "info");
    }

    #[test]
    fn full_config_decodes_every_field() {
        let value = json!({
            "$schema": "./schema.json",
            "gateway": {
                "port": 0, "bind": "custom", "customBindHost": "10.0.0.2",
                "auth": {
                    "mode": "password",
                    "token": {"env": "TOK"},
                    "password": "$argon2id$v=19$m=19456,t=2,p=1$c2FsdA$aGFzaA",
                    "rateLimit": {"maxAttempts": 3, "windowMs": 6e4, "lockoutMs": 0, "exemptLoopback": true}
                },
                "controlUi": {"enabled": false, "basePath": "/ui", "allowedOrigins": ["https://a.example", "http://[::1]:8080"]},
                "http": {"endpoints": {"chatCompletions": {"enabled": true}, "responses": {"enabled": true}}},
                "reload": {"mode": "off"},
                "handshakeTimeoutMs": 1000, "tickIntervalMs": 500
            },
            "logging": {"file": "logs/gw.log", "level": "debug,hyper=warn"},
            "channels": {"telegram": {"botToken": "x"}},
            "comfy": {"workers": []}
        });
        let (config, issues) = decode(&value);
        assert!(issues.is_empty(), "{issues:#?}");
        let g = &config.gateway;
        assert_eq!(g.port, 0);
        assert_eq!(g.bind, Bind::Custom);
        assert_eq!(g.bind_host(), Some("10.0.0.2".parse().unwrap()));
        assert_eq!(g.auth.mode, AuthMode::Password);
        assert_eq!(g.auth.token, Some(Secret::Env { env: "TOK".into() }));
        assert!(matches!(&g.auth.password, Some(Secret::Plain(p)) if p.starts_with("$argon2id$")));
        assert_eq!(g.auth.rate_limit.window_ms, 60_000);
        assert!(g.auth.rate_limit.exempt_loopback);
        assert_eq!(g.control_ui.allowed_origins.len(), 2);
        assert!(g.http.endpoints.chat_completions.enabled);
        assert_eq!(g.reload.mode, ReloadMode::Off);
        assert_eq!(config.logging.file, Some(PathBuf::from("logs/gw.log")));
        let telegram = config.channels.telegram.as_ref().unwrap();
        assert_eq!(telegram.base.bot_token, Some(Secret::Plain("x".into())));
        assert_eq!(config.schema.as_deref(), Some("./schema.json"));
    }

    #[test]
    fn trusted_proxies_take_addresses_and_ranges() {
        let (config, issues) = decode(&json!({"gateway": {
            "trustedProxies": ["127.0.0.1", "10.1.2.3/8", "fd00::/8", " ::1 "], "allowRealIpFallback": true
        }}));
        assert!(issues.is_empty(), "{issues:#?}");
        let g = &config.gateway;
        assert!(g.allow_real_ip_fallback);
        let shown: Vec<String> = g.trusted_proxies.iter().map(ToString::to_string).collect();
        assert_eq!(shown, ["127.0.0.1", "10.0.0.0/8", "fd00::/8", "::1"]);
        let ip = |s: &str| s.parse::<IpAddr>().unwrap();
        assert!(g.trusted_proxies[1].contains(ip("10.255.0.9")) && !g.trusted_proxies[1].contains(ip("11.0.0.1")));
        assert!(g.trusted_proxies[1].contains(ip("::ffff:10.0.0.7")), "IPv4-mapped addresses match IPv4 ranges");
        assert!(g.trusted_proxies[2].contains(ip("fd12::1")) && !g.trusted_proxies[2].contains(ip("fe80::1")));
        assert!(!g.trusted_proxies[0].contains(ip("127.0.0.2")) && !g.trusted_proxies[3].contains(ip("127.0.0.1")));
        assert!(IpCidr::parse("0.0.0.0/0").unwrap().contains(ip("8.8.8.8")));

        let (key, m) = only_issue(json!({"gateway": {"trustedProxies": ["10.0.0.1", "proxy.lan"]}}));
        assert_eq!(key, "gateway.trustedProxies[1]");
        assert!(m.contains("\"proxy.lan\" is not an IP address or CIDR range"), "{m}");
        let (_, m) = only_issue(json!({"gateway": {"trustedProxies": ["10.0.0.0/33"]}}));
        assert!(m.contains("from 0 to 32"), "{m}");
        let (_, m) = only_issue(json!({"gateway": {"trustedProxies": "10.0.0.1"}}));
        assert!(m.contains("list") || m.contains("array"), "{m}");
    }

    #[test]
    fn plain_text_off_loopback_needs_tls_a_trusted_proxy_or_an_explicit_yes() {
        let (key, m) = only_issue(json!({"gateway": {"bind": "lan"}}));
        assert_eq!(key, "gateway.bind");
        assert!(m.contains("in plain text") && m.contains("gateway.allowInsecureBind"), "{m}");
        for lifted in [
            json!({"gateway": {"bind": "lan", "tls": {"certPath": "c.pem", "keyPath": "k.pem"}}}),
            json!({"gateway": {"bind": "lan", "trustedProxies": ["10.0.0.0/8"]}}),
            json!({"gateway": {"bind": "lan", "allowInsecureBind": true}}),
            json!({"gateway": {"bind": "loopback"}}),
        ] {
            assert!(issues(lifted.clone()).is_empty(), "{lifted}");
        }
        // TLS switched off does not count; a half-set TLS section names the missing key.
        let (key, _) = only_issue(
            json!({"gateway": {"bind": "lan", "tls": {"enabled": false, "certPath": "c.pem", "keyPath": "k.pem"}}}),
        );
        assert_eq!(key, "gateway.bind");
        let (key, m) = only_issue(json!({"gateway": {"tls": {"certPath": "c.pem"}}}));
        assert_eq!(key, "gateway.tls.keyPath");
        assert!(m.contains("gateway.tls.keyPath is not set"), "{m}");
        let (config, _) = decode(&json!({"gateway": {"tls": {"certPath": "c.pem", "keyPath": "k.pem"}}}));
        assert_eq!(config.gateway.tls_files(), Some((&PathBuf::from("c.pem"), &PathBuf::from("k.pem"))));
    }

    #[test]
    fn serialized_config_decodes_back_to_itself() {
        let (config, issues) = decode(&json!({
            "gateway": {"bind": "192.168.1.5", "auth": {"token": {"file": "t"}}},
            "logging": {"file": "x.log", "rotate": {"maxBytes": 65536, "keep": 2}}, "agents": {"list": [{"id": "a", "model": "p/m", "workspace": "~/w"}]},
            "hooks": {"enabled": true, "token": {"env": "HOOK"}, "mappings": []}, "comfy": {"workers": [{"url": "http://c"}]}
        }));
        assert!(issues.is_empty());
        let value = serde_json::to_value(&config).unwrap();
        let (again, issues) = decode(&value);
        assert!(issues.is_empty(), "{issues:#?}");
        assert_eq!(again, config);
        assert_eq!(serde_json::to_value(Config::default()).unwrap()["gateway"]["bind"], "loopback");
    }

    #[test]
    fn log_rotation_has_defaults_and_checked_bounds() {
        let (config, issues) = decode(&json!({}));
        assert!(issues.is_empty());
        assert_eq!(config.logging.rotate, LogRotateConfig { max_bytes: 10 * 1024 * 1024, keep: 5 });
        let (config, issues) = decode(&json!({"logging": {"rotate": {"maxBytes": 0, "keep": 0}}}));
        assert!(issues.is_empty(), "{issues:#?}");
        assert_eq!(config.logging.rotate, LogRotateConfig { max_bytes: 0, keep: 0 });
        let (key, m) = only_issue(json!({"logging": {"rotate": {"maxBytes": 100}}}));
        assert_eq!(key, "logging.rotate.maxBytes");
        assert!(m.contains("too small") && m.contains("4096"), "{m}");
        let (key, m) = only_issue(json!({"logging": {"rotate": {"keep": 101}}}));
        assert_eq!(key, "logging.rotate.keep");
        assert!(m.contains("out of range"), "{m}");
        let (key, m) = only_issue(json!({"logging": {"rotate": {"maxbytes": 5000}}}));
        assert_eq!(key, "logging.rotate.maxbytes");
        assert!(m.contains("did you mean \"maxBytes\"?"), "{m}");
    }

    #[test]
    fn null_means_default() {
        let (config, issues) = decode(&json!({"gateway": {"port": null, "auth": null}}));
        assert!(issues.is_empty());
        assert_eq!(config.gateway.port, 18789);
    }

    #[test]
    fn unknown_keys_get_a_did_you_mean_hint() {
        let (key, message) = only_issue(json!({"gateway": {"prot": 1}}));
        assert_eq!(key, "gateway.prot");
        assert_eq!(message, "unknown key \"prot\"; did you mean \"port\"?");
        let (_, message) = only_issue(json!({"gateway": {"auth": {"rate_limit": {}}}}));
        assert!(message.contains("did you mean \"rateLimit\"?"), "{message}");
    }

    #[test]
    fn unknown_keys_without_a_near_match_list_the_known_keys() {
        let (key, message) = only_issue(json!({"logging": {"colour": true}}));
        assert_eq!(key, "logging.colour");
        assert!(message.ends_with("known keys here: file, level, rotate"), "{message}");
    }

    #[test]
    fn openclaw_only_keys_say_so() {
        let (_, message) = only_issue(json!({"gateway": {"tailscale": {"mode": "serve"}}}));
        assert!(message.contains("OpenClaw setting that clawgate does not support"), "{message}");
        let (_, message) = only_issue(json!({"gateway": {"auth": {"mode": "trusted-proxy"}}}));
        assert!(message.contains("does not support"), "{message}");
    }

    #[test]
    fn every_problem_is_reported_not_just_the_first() {
        let all = issues(json!({
            "gateway": {"port": "80", "bind": "lann", "auth": {"mode": "tokn"}, "tickIntervalMs": -5},
            "logging": {"level": "verbose"},
            "channels": [],
            "bogus": 1
        }));
        let keys: Vec<&str> = all.iter().map(|(k, _)| k.as_str()).collect();
        for want in [
            "gateway.port",
            "gateway.bind",
            "gateway.auth.mode",
            "gateway.tickIntervalMs",
            "logging.level",
            "channels",
            "bogus",
        ] {
            assert!(keys.contains(&want), "missing {want} in {all:#?}");
        }
    }

    #[test]
    fn enum_values_list_the_choices_and_suggest() {
        let (key, message) = only_issue(json!({"gateway": {"auth": {"mode": "tokn"}}}));
        assert_eq!(key, "gateway.auth.mode");
        assert_eq!(message, "unknown value \"tokn\" (expected one of: none, token, password); did you mean \"token\"?");
    }

    #[test]
    fn numbers_are_checked_for_type_and_range() {
        let (_, m) = only_issue(json!({"gateway": {"port": "18789"}}));
        assert!(m.contains("remove the quotes"), "{m}");
        let (_, m) = only_issue(json!({"gateway": {"port": 70000}}));
        assert!(m.contains("out of range"), "{m}");
        let (_, m) = only_issue(json!({"gateway": {"port": 1e23}}));
        assert!(m.contains("out of range"), "{m}");
        let (_, m) = only_issue(json!({"gateway": {"tickIntervalMs": -2.0}}));
        assert!(m.contains("negative"), "{m}");
        let (config, issues) = decode(&json!({"gateway": {"port": 8080.0}}));
        assert!(issues.is_empty());
        assert_eq!(config.gateway.port, 8080);
        let (_, m) = only_issue(json!({"gateway": {"port": 1.5}}));
        assert!(m.contains("not a whole number"), "{m}");
        let (_, m) = only_issue(json!({"gateway": {"handshakeTimeoutMs": 0}}));
        assert!(m.contains("at least 1"), "{m}");
        let (_, m) = only_issue(json!({"gateway": {"tickIntervalMs": -1}}));
        assert!(m.contains("negative"), "{m}");
        let (_, m) = only_issue(json!({"gateway": {"auth": {"rateLimit": {"exemptLoopback": "true"}}}}));
        assert!(m.contains("without quotes"), "{m}");
    }

    #[test]
    fn secrets_accept_string_env_and_file_forms_only() {
        let (key, m) = only_issue(json!({"gateway": {"auth": {"token": {"env": "A", "file": "b"}}}}));
        assert_eq!(key, "gateway.auth.token");
        assert!(m.contains("both"), "{m}");
        let (key, m) = only_issue(json!({"gateway": {"auth": {"token": {"evn": "A"}}}}));
        assert_eq!(key, "gateway.auth.token.evn");
        assert!(m.contains("did you mean \"env\""), "{m}");
        let (_, m) = only_issue(json!({"gateway": {"auth": {"token": ""}}}));
        assert!(m.contains("is empty"), "{m}");
        let (_, m) = only_issue(json!({"gateway": {"auth": {"token": {}}}}));
        assert!(m.contains("empty object"), "{m}");
    }

    #[test]
    fn secret_type_errors_do_not_echo_the_value() {
        let (_, m) = only_issue(json!({"gateway": {"auth": {"token": 123_456_789}}}));
        assert!(!m.contains("123456789"), "{m}");
        assert!(m.contains("a number"), "{m}");
    }

    #[test]
    fn non_loopback_bind_without_auth_is_refused() {
        let (key, m) = only_issue(json!({"gateway": {"bind": "lan", "auth": {"mode": "none"}}}));
        assert_eq!(key, "gateway.auth.mode");
        assert!(m.starts_with("refusing to bind to a non-loopback address"), "{m}");
        assert!(m.contains("set gateway.auth.mode to \"token\" or \"password\""), "{m}");
        assert!(issues(json!({"gateway": {"bind": "127.0.0.2", "auth": {"mode": "none"}}})).is_empty());
        assert!(issues(json!({"gateway": {"bind": "::1", "auth": {"mode": "none"}}})).is_empty());
        assert!(issues(json!({"gateway": {"auth": {"mode": "none"}}})).is_empty());
        assert_eq!(issues(json!({"gateway": {"bind": "0.0.0.0", "auth": {"mode": "none"}}})).len(), 1);
    }

    #[test]
    fn per_connection_rate_limit_reads_requests_and_a_window() {
        let (config, found) = decode(&json!({}));
        assert!(found.is_empty());
        assert_eq!(config.gateway.rate_limit.per_connection, RequestRateConfig::default());
        let (config, found) =
            decode(&json!({"gateway": {"rateLimit": {"perConnection": {"requests": 600, "per": "1m"}}}}));
        assert!(found.is_empty(), "{found:?}");
        assert_eq!(config.gateway.rate_limit.per_connection.requests, 600);
        assert_eq!(crate::model::rate_window_ms(&config.gateway.rate_limit.per_connection.per), Some(60_000));
        let (key, m) = only_issue(json!({"gateway": {"rateLimit": {"perConnection": {"per": "1 fortnight"}}}}));
        assert_eq!(key, "gateway.rateLimit.perConnection.per");
        assert!(m.contains("1m"), "{m}");
        let (key, _) = only_issue(json!({"gateway": {"rateLimit": {"perConnection": {"requests": 0}}}}));
        assert_eq!(key, "gateway.rateLimit.perConnection.requests");
    }

    #[test]
    fn discovery_mdns_mode_and_node_presence_timeout_decode_with_openclaws_shape() {
        let (config, found) = decode(&json!({
            "discovery": {"mdns": {"mode": "full"}},
            "gateway": {"nodes": {"presenceTimeoutMs": 1500}},
        }));
        assert!(found.is_empty(), "{found:?}");
        assert_eq!(config.discovery.mdns.mode, Some(MdnsMode::Full));
        assert_eq!(config.discovery.mdns.effective_mode(), MdnsMode::Full);
        assert_eq!(config.gateway.nodes.presence_timeout_ms, 1500);
        let (config, _) = decode(&json!({}));
        assert_eq!(config.gateway.nodes.presence_timeout_ms, 50_000);
        assert_eq!(config.discovery.mdns.mode, None);
        let default = if cfg!(target_os = "macos") { MdnsMode::Minimal } else { MdnsMode::Off };
        assert_eq!(config.discovery.mdns.effective_mode(), default, "OpenClaw's platform default");

        let (key, m) = only_issue(json!({"discovery": {"mdns": {"mode": "loud"}}}));
        assert_eq!(key, "discovery.mdns.mode");
        assert!(m.contains("off, minimal, full"), "{m}");
        let (key, m) = only_issue(json!({"discovery": {"wideArea": {"domain": "openclaw.internal"}}}));
        assert_eq!(key, "discovery.wideArea");
        assert!(m.contains("does not support"), "{m}");
        let (key, m) = only_issue(json!({"gateway": {"nodes": {"commands": {"allow": ["x"]}}}}));
        assert_eq!(key, "gateway.nodes.commands");
        assert!(m.contains("does not support"), "{m}");
        let (key, _) = only_issue(json!({"gateway": {"nodes": {"presenceTimeoutMs": 10}}}));
        assert_eq!(key, "gateway.nodes.presenceTimeoutMs");
    }

    #[test]
    fn the_unauthenticated_metrics_listener_must_be_loopback() {
        let (config, found) = decode(&json!({"gateway": {"metrics": {"listen": "[::1]:9464"}}}));
        assert!(found.is_empty());
        assert_eq!(config.gateway.metrics.listen, Some("[::1]:9464".parse().unwrap()));
        assert!(issues(json!({"gateway": {"metrics": {"listen": "127.0.0.1:0"}}})).is_empty());
        let (key, m) = only_issue(json!({"gateway": {"metrics": {"listen": "0.0.0.0:9464"}}}));
        assert_eq!(key, "gateway.metrics.listen");
        assert!(m.contains("not a loopback address"), "{m}");
        let (_, m) = only_issue(json!({"gateway": {"metrics": {"listen": "localhost:9464"}}}));
        assert!(m.contains("not an ip:port address"), "{m}");
    }

    #[test]
    fn password_mode_requires_a_password() {
        let (key, m) = only_issue(json!({"gateway": {"auth": {"mode": "password"}}}));
        assert_eq!(key, "gateway.auth.password");
        assert!(m.contains("CLAWGATE_GATEWAY_PASSWORD"), "{m}");
        assert!(issues(json!({"gateway": {"auth": {"mode": "password", "password": "pw"}}})).is_empty());
    }

    #[test]
    fn custom_bind_requires_a_host() {
        let (key, m) = only_issue(json!({"gateway": {"bind": "custom"}}));
        assert_eq!(key, "gateway.customBindHost");
        assert!(m.contains("set gateway.customBindHost"), "{m}");
        let (key, _) = only_issue(json!({"gateway": {"bind": "custom", "customBindHost": "myhost"}}));
        assert_eq!(key, "gateway.customBindHost");
    }

    #[test]
    fn consequences_of_a_typo_are_not_reported_twice() {
        // The bad password is reported; "password mode needs a password" is not added.
        let (key, _) = only_issue(json!({"gateway": {"auth": {"mode": "password", "password": 5}}}));
        assert_eq!(key, "gateway.auth.password");
    }

    #[test]
    fn origins_must_be_scheme_host_port() {
        for ok in [
            "https://example.com",
            "http://localhost:5173",
            "http://127.0.0.1:18789",
            "http://[::1]:8080",
            "app://tauri.local",
            "https://ünï.example",
        ] {
            assert_eq!(check_origin(ok), Ok(()), "{ok}");
        }
        for bad in [
            "example.com",
            "https://example.com/",
            "https://example.com/app",
            "https://",
            "https://:80",
            "https://a.com:",
            "https://a.com:0",
            "https://a.com:99999",
            "https://user@a.com",
            "*",
            "https://*.example.com",
            "1http://a.com",
            "http://[::1",
            "http://[zz]:1",
            "http://a b.com",
        ] {
            assert!(check_origin(bad).is_err(), "{bad} should be rejected");
        }
        let m = check_origin("https://example.com/app").unwrap_err();
        assert!(m.contains("use \"https://example.com\""), "{m}");
    }

    #[test]
    fn bad_origins_are_reported_at_their_index() {
        let (key, _) =
            only_issue(json!({"gateway": {"controlUi": {"allowedOrigins": ["https://ok.example", "nope"]}}}));
        assert_eq!(key, "gateway.controlUi.allowedOrigins[1]");
    }

    #[test]
    fn log_levels_accept_directives() {
        for ok in ["info", "DEBUG", "info,clawgate_server=debug", "warn, hyper::proto=off"] {
            assert_eq!(check_log_level(ok), Ok(()), "{ok}");
        }
        for bad in ["", "verbose", "info,=debug", "x=loud", "a b=info"] {
            assert!(check_log_level(bad).is_err(), "{bad}");
        }
        assert!(check_log_level("inof").unwrap_err().contains("did you mean \"info\""));
    }

    #[test]
    fn base_path_must_be_absolute() {
        assert_eq!(check_base_path(""), Ok(()));
        assert_eq!(check_base_path("/ui"), Ok(()));
        assert!(check_base_path("ui").unwrap_err().contains("\"/ui\""));
        assert!(check_base_path("/a b").is_err());
    }

    #[test]
    fn non_object_top_level_is_reported_at_the_root() {
        let (key, m) = only_issue(json!([1]));
        assert_eq!(key, "");
        assert!(m.contains("expected an object"), "{m}");
    }

    #[test]
    fn from_value_reports_paths_without_positions() {
        let err = Config::from_value(&json!({"gateway": {"port": true}})).unwrap_err();
        assert_eq!(err.issues()[0].position, None);
        assert_eq!(
            err.to_string(),
            "gateway.port: expected a port number from 0 to 65535 (0 picks a free port), found true"
        );
    }

    #[test]
    fn cluster_timings_default_decode_and_are_checked() {
        let (config, issues) = decode(&json!({}));
        assert!(issues.is_empty(), "{issues:?}");
        assert_eq!(config.cluster, ClusterConfig { heartbeat_ms: 2_000, lease_ttl_ms: 10_000 });
        let (config, issues) = decode(&json!({"cluster": {"heartbeatMs": 500, "leaseTtlMs": 1500}}));
        assert!(issues.is_empty(), "{issues:?}");
        assert_eq!(config.cluster, ClusterConfig { heartbeat_ms: 500, lease_ttl_ms: 1_500 });
        let (key, message) = only_issue(json!({"cluster": {"leaseTtlMs": 100}}));
        assert_eq!(key, "cluster.leaseTtlMs");
        assert!(message.contains("from 500 to 600000"), "{message}");
        let (key, _) = only_issue(json!({"cluster": {"heartbeat": 100}}));
        assert_eq!(key, "cluster.heartbeat");
        let (key, message) = only_issue(json!({"cluster": {"heartbeatMs": 5000, "leaseTtlMs": 4000}}));
        assert_eq!(key, "cluster.heartbeatMs");
        assert!(message.contains("must be shorter than cluster.leaseTtlMs"), "{message}");
    }

    #[test]
    fn storage_url_selects_the_backend_and_never_prints_its_password() {
        use crate::StorageBackend;
        let (config, issues) = decode(&json!({}));
        assert!(issues.is_empty());
        assert_eq!(config.storage.backend(), StorageBackend::DefaultSqlite);

        let (config, issues) = decode(&json!({"storage": {"url": "sqlite:state/gw.db"}}));
        assert!(issues.is_empty(), "{issues:?}");
        assert_eq!(config.storage.backend(), StorageBackend::Sqlite(Path::new("state/gw.db")));

        let url = "postgres://clawgate:pg-secret-9@db.internal:5432/clawgate";
        let (config, issues) = decode(&json!({"storage": {"url": url}}));
        assert!(issues.is_empty(), "{issues:?}");
        let StorageBackend::Postgres(found) = config.storage.backend() else { panic!("postgres") };
        assert_eq!(found.expose(), url);
        let shown = format!("{config:?} {}", serde_json::to_string(&config).expect("serialize"));
        assert!(!shown.contains("pg-secret-9"), "{shown}");
        assert!(shown.contains("db.internal:5432/clawgate"), "{shown}");

        for bad in ["mysql://u:pw-secret-8@h/db", "sqlite:", "clawgate.db"] {
            let (key, message) = only_issue(json!({"storage": {"url": bad}}));
            assert_eq!(key, "storage.url");
            assert!(!message.contains("pw-secret-8"), "{message}");
        }
        let (key, _) = only_issue(json!({"storage": {"uri": "sqlite:x"}}));
        assert_eq!(key, "storage.uri");
    }
}
