//! The typed config.
//!
//! Every field has a default, so `{}` (or no file) is a complete config. Values are built by
//! [`crate::decode`], not by `serde::Deserialize`: decoding collects every problem with its key
//! path instead of stopping at the first. `Serialize` and `JsonSchema` are derived so the
//! schema and written files follow these definitions; the doc comments become the schema's
//! descriptions.

use std::borrow::Cow;
use std::fmt;
use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::path::PathBuf;

use schemars::{JsonSchema, Schema, SchemaGenerator, json_schema};
use serde::{Serialize, Serializer};

use crate::redact::SecretUrl;
use crate::secret::Secret;
use crate::sections::{
    AgentsSection, ChannelsSection, ComfySection, CronSection, HooksSection, ModelsSection, SessionSection,
    ToolsSection, ser_shown, shown,
};

/// A clawgate config file.
///
/// `Debug` and `Serialize` hide secrets: typed ones are [`Secret`]s, and the sections the core
/// decodes itself are shown through [`crate::redacted`] (by [`crate::SECRET_PATHS`]).
#[derive(Clone, Default, PartialEq, Serialize, JsonSchema)]
#[serde(rename_all = "camelCase", default, deny_unknown_fields)]
#[schemars(title = "clawgate config")]
pub struct Config {
    /// Optional JSON Schema reference for editors; ignored by clawgate.
    #[serde(rename = "$schema", skip_serializing_if = "Option::is_none")]
    pub schema: Option<String>,
    /// The WebSocket/HTTP server.
    pub gateway: GatewayConfig,
    /// Log output.
    pub logging: LoggingConfig,
    /// Chat channels, one object per channel id (e.g. `telegram`).
    #[serde(serialize_with = "ser_channels")]
    pub channels: ChannelsSection,
    /// Agents (`defaults`, `list`).
    #[serde(serialize_with = "ser_agents")]
    pub agents: AgentsSection,
    /// Model providers.
    #[serde(serialize_with = "ser_models")]
    pub models: ModelsSection,
    /// Inbound webhooks.
    #[serde(serialize_with = "ser_hooks")]
    pub hooks: HooksSection,
    /// Session behaviour.
    #[serde(serialize_with = "ser_session")]
    pub session: SessionSection,
    /// Scheduled jobs.
    #[serde(serialize_with = "ser_cron")]
    pub cron: CronSection,
    /// ComfyUI workers, templates and delivery limits; `None` (no section) leaves ComfyUI off.
    #[serde(serialize_with = "ser_comfy", skip_serializing_if = "Option::is_none")]
    pub comfy: Option<ComfySection>,
    /// Agent tool policy.
    #[serde(serialize_with = "ser_tools")]
    pub tools: ToolsSection,
    /// Where the gateway keeps its state (default: the embedded SQLite file).
    #[serde(skip_serializing_if = "StorageConfig::is_default")]
    pub storage: StorageConfig,
    /// Several gateways on one PostgreSQL database: heartbeats and leases.
    #[serde(skip_serializing_if = "ClusterConfig::is_default")]
    pub cluster: ClusterConfig,
    /// Advertising the gateway on the local network (mDNS / DNS-SD), as OpenClaw's
    /// `discovery.*`.
    #[serde(skip_serializing_if = "DiscoveryConfig::is_default")]
    pub discovery: DiscoveryConfig,
}

fn ser_channels<S: Serializer>(section: &ChannelsSection, s: S) -> Result<S::Ok, S::Error> {
    ser_shown("channels", section, s)
}
fn ser_agents<S: Serializer>(section: &AgentsSection, s: S) -> Result<S::Ok, S::Error> {
    ser_shown("agents", section, s)
}
fn ser_models<S: Serializer>(section: &ModelsSection, s: S) -> Result<S::Ok, S::Error> {
    ser_shown("models", section, s)
}
fn ser_hooks<S: Serializer>(section: &HooksSection, s: S) -> Result<S::Ok, S::Error> {
    ser_shown("hooks", section, s)
}
fn ser_session<S: Serializer>(section: &SessionSection, s: S) -> Result<S::Ok, S::Error> {
    ser_shown("session", section, s)
}
fn ser_cron<S: Serializer>(section: &CronSection, s: S) -> Result<S::Ok, S::Error> {
    ser_shown("cron", section, s)
}
fn ser_comfy<S: Serializer>(section: &Option<ComfySection>, s: S) -> Result<S::Ok, S::Error> {
    ser_shown("comfy", section, s)
}
fn ser_tools<S: Serializer>(section: &ToolsSection, s: S) -> Result<S::Ok, S::Error> {
    ser_shown("tools", section, s)
}

impl fmt::Debug for Config {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        // The opaque sections hold channel bot tokens, API keys and the like.
        f.debug_struct("Config")
            .field("schema", &self.schema)
            .field("gateway", &self.gateway)
            .field("logging", &self.logging)
            .field("channels", &shown("channels", &self.channels))
            .field("agents", &shown("agents", &self.agents))
            .field("models", &shown("models", &self.models))
            .field("hooks", &shown("hooks", &self.hooks))
            .field("session", &shown("session", &self.session))
            .field("cron", &shown("cron", &self.cron))
            .field("comfy", &shown("comfy", &self.comfy))
            .field("tools", &shown("tools", &self.tools))
            .field("storage", &self.storage)
            .field("cluster", &self.cluster)
            .field("discovery", &self.discovery)
            .finish()
    }
}

/// `gateway.*`: the WebSocket/HTTP server.
#[derive(Clone, Debug, PartialEq, Serialize, JsonSchema)]
#[serde(rename_all = "camelCase", default, deny_unknown_fields)]
pub struct GatewayConfig {
    /// TCP port for WebSocket and HTTP; 0 picks a free port.
    pub port: u16,
    /// Which address to listen on.
    pub bind: Bind,
    /// The IP address to listen on when `bind` is `"custom"`.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub custom_bind_host: Option<IpAddr>,
    /// The address the gateway is reachable at from the internet (`https://bot.example.com`,
    /// through a reverse proxy or tunnel): the root of the absolute media links sent to
    /// platforms that fetch images themselves (LINE). No trailing slash.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub public_url: Option<String>,
    /// How clients authenticate.
    pub auth: AuthConfig,
    /// The browser control UI.
    pub control_ui: ControlUiConfig,
    /// OpenAI-compatible HTTP endpoints.
    pub http: HttpConfig,
    /// What to do when this file changes.
    pub reload: ReloadConfig,
    /// How long a new WebSocket connection may take to send `connect`, in milliseconds.
    pub handshake_timeout_ms: u64,
    /// Interval between `tick` keep-alive events, in milliseconds.
    pub tick_interval_ms: u64,
    /// Reverse proxies (IP addresses or CIDR ranges) whose `X-Forwarded-For` / `Forwarded`
    /// headers name the real client. Headers from any other peer are ignored.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub trusted_proxies: Vec<IpCidr>,
    /// Also take the client address from `X-Real-IP` when a trusted proxy sends neither
    /// `X-Forwarded-For` nor `Forwarded`.
    #[serde(skip_serializing_if = "std::ops::Not::not")]
    pub allow_real_ip_fallback: bool,
    /// Serve `wss://` / `https://` on the gateway port with this certificate and key (PEM).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub tls: Option<TlsConfig>,
    /// Listen off loopback without TLS and without a trusted proxy in front (plain text on the
    /// network: only for a network you trust).
    #[serde(skip_serializing_if = "std::ops::Not::not")]
    pub allow_insecure_bind: bool,
    /// The Prometheus endpoint's optional separate listener.
    pub metrics: MetricsConfig,
    /// Request rate limits.
    pub rate_limit: GatewayRateLimitConfig,
    /// Nodes (`role: "node"` clients such as `openclaw node run`).
    pub nodes: NodesConfig,
}

/// `gateway.nodes.*`: what clawgate reads of OpenClaw's node settings, plus the presence
/// timeout.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, JsonSchema)]
#[serde(rename_all = "camelCase", default, deny_unknown_fields)]
pub struct NodesConfig {
    /// How long a node may stay silent (no frame, no answer to the gateway's pings) before it
    /// is marked disconnected and the invokes waiting for it fail, in milliseconds. It is
    /// pinged every half of this. Default 50000 (OpenClaw: a ping every 25 s, 25 s to answer).
    pub presence_timeout_ms: u64,
}

impl Default for NodesConfig {
    fn default() -> Self {
        Self { presence_timeout_ms: 50_000 }
    }
}

/// `discovery.*`: advertising the gateway on the local network, shaped as OpenClaw's.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, JsonSchema)]
#[serde(rename_all = "camelCase", default, deny_unknown_fields)]
pub struct DiscoveryConfig {
    /// mDNS / DNS-SD (Bonjour) advertisement of `_openclaw-gw._tcp`.
    #[serde(skip_serializing_if = "MdnsConfig::is_default")]
    pub mdns: MdnsConfig,
}

impl DiscoveryConfig {
    fn is_default(&self) -> bool {
        self.mdns.is_default()
    }
}

/// `discovery.mdns.*`.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, JsonSchema)]
#[serde(rename_all = "camelCase", default, deny_unknown_fields)]
pub struct MdnsConfig {
    /// `"off"`, `"minimal"` (the gateway's port, host and name) or `"full"` (also `sshPort` and
    /// `cliPath`). Unset: as OpenClaw, whose Bonjour plugin is on by default only on macOS —
    /// `"minimal"` there, off elsewhere.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub mode: Option<MdnsMode>,
}

impl MdnsConfig {
    fn is_default(&self) -> bool {
        self.mode.is_none()
    }

    /// The mode in force on this platform (`mode`, else OpenClaw's platform default).
    #[must_use]
    pub fn effective_mode(&self) -> MdnsMode {
        self.mode.unwrap_or(if cfg!(target_os = "macos") { MdnsMode::Minimal } else { MdnsMode::Off })
    }
}

/// `discovery.mdns.mode`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, JsonSchema)]
#[serde(rename_all = "lowercase")]
pub enum MdnsMode {
    /// Not advertised.
    Off,
    /// Port, host, display name (and TLS, reachability).
    Minimal,
    /// Also `sshPort` and `cliPath`.
    Full,
}

/// `gateway.rateLimit`: request rate limits (failed-auth throttling is `gateway.auth.rateLimit`).
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, JsonSchema)]
#[serde(rename_all = "camelCase", default, deny_unknown_fields)]
pub struct GatewayRateLimitConfig {
    /// Requests one WebSocket connection may make (a token bucket: `requests` at once, refilled
    /// at `requests` per `per`). Access tokens add their own limit (`clawgate tokens create --rate`).
    pub per_connection: RequestRateConfig,
}

/// A request rate: `requests` per `per` (`"1m"`, `"30s"`, `"1h"`, `"min"`…).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, JsonSchema)]
#[serde(rename_all = "camelCase", default, deny_unknown_fields)]
pub struct RequestRateConfig {
    /// Requests allowed per window (and as a burst), at least 1.
    pub requests: u32,
    /// The window: a number and a unit (`s`, `m`/`min`, `h`, `d`), 1 s to 1 day.
    pub per: String,
}

impl Default for RequestRateConfig {
    /// 60 000 a minute: a sustained 1 000 requests a second, far above any interactive client,
    /// low enough to stop a runaway loop.
    fn default() -> Self {
        Self { requests: 60_000, per: "1m".to_owned() }
    }
}

/// A rate window (`1m`, `30s`, `min`, `h`, `2d`…) in milliseconds; `None` when it is not one
/// or is outside 1 s to 1 day. The one reader of the grammar (config and `--rate` alike).
#[must_use]
pub fn rate_window_ms(text: &str) -> Option<u64> {
    let text = text.trim();
    let digits = text.chars().take_while(char::is_ascii_digit).count();
    let (n, unit) = text.split_at(digits);
    let n: u64 = if n.is_empty() { 1 } else { n.parse().ok()? };
    let unit_ms: u64 = match unit.trim() {
        "s" | "sec" | "second" | "seconds" => 1_000,
        "m" | "min" | "minute" | "minutes" => 60_000,
        "h" | "hour" | "hours" => 3_600_000,
        "d" | "day" | "days" => 86_400_000,
        _ => return None,
    };
    let ms = n.checked_mul(unit_ms)?;
    (1_000..=86_400_000).contains(&ms).then_some(ms)
}

/// `gateway.tls`: the certificate chain and private key (PEM files, relative to the config
/// directory), re-read when either file changes.
#[derive(Clone, Debug, PartialEq, Serialize, JsonSchema)]
#[serde(rename_all = "camelCase", default, deny_unknown_fields)]
pub struct TlsConfig {
    /// Serve TLS (default true when the section is present).
    pub enabled: bool,
    /// The certificate chain, leaf first (PEM).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub cert_path: Option<PathBuf>,
    /// The private key (PEM: PKCS#8, PKCS#1 or SEC1).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub key_path: Option<PathBuf>,
}

impl Default for TlsConfig {
    fn default() -> Self {
        Self { enabled: true, cert_path: None, key_path: None }
    }
}

/// `gateway.metrics.*`. `/metrics` is always served on the gateway port behind the gateway's
/// secret; `listen` adds a listener without authentication, so it must be a loopback address.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, JsonSchema)]
#[serde(rename_all = "camelCase", default, deny_unknown_fields)]
pub struct MetricsConfig {
    /// A loopback `ip:port` serving only `GET /metrics`, without authentication (for a local
    /// Prometheus or agent); port 0 picks a free port.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub listen: Option<SocketAddr>,
}

impl Default for GatewayConfig {
    fn default() -> Self {
        Self {
            port: 18789,
            bind: Bind::Loopback,
            custom_bind_host: None,
            public_url: None,
            auth: AuthConfig::default(),
            control_ui: ControlUiConfig::default(),
            http: HttpConfig::default(),
            reload: ReloadConfig::default(),
            handshake_timeout_ms: 15_000,
            tick_interval_ms: 30_000,
            trusted_proxies: Vec::new(),
            allow_real_ip_fallback: false,
            tls: None,
            allow_insecure_bind: false,
            metrics: MetricsConfig::default(),
            rate_limit: GatewayRateLimitConfig::default(),
            nodes: NodesConfig::default(),
        }
    }
}

impl GatewayConfig {
    /// The IP address to listen on, or `None` for `bind: "custom"` without a valid
    /// `customBindHost` (validation rejects that).
    #[must_use]
    pub fn bind_host(&self) -> Option<IpAddr> {
        match self.bind {
            Bind::Loopback => Some(IpAddr::V4(Ipv4Addr::LOCALHOST)),
            Bind::Lan => Some(IpAddr::V4(Ipv4Addr::UNSPECIFIED)),
            Bind::Custom => self.custom_bind_host,
            Bind::Ip(ip) => Some(ip),
        }
    }

    /// The TLS files when TLS is on: `(certPath, keyPath)` as written (relative to the config
    /// directory). `None` when TLS is off or a path is missing (validation rejects that).
    #[must_use]
    pub fn tls_files(&self) -> Option<(&PathBuf, &PathBuf)> {
        let tls = self.tls.as_ref().filter(|t| t.enabled)?;
        Some((tls.cert_path.as_ref()?, tls.key_path.as_ref()?))
    }

    /// Whether only this machine can connect (the bind address is a loopback address).
    #[must_use]
    pub fn is_loopback_only(&self) -> bool {
        self.bind_host().is_some_and(|ip| ip.is_loopback())
    }
}

/// `gateway.bind`: the listen address.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum Bind {
    /// `"loopback"`: 127.0.0.1 only.
    #[default]
    Loopback,
    /// `"lan"`: all interfaces (0.0.0.0).
    Lan,
    /// `"custom"`: the address in `gateway.customBindHost`.
    Custom,
    /// A literal IP address.
    Ip(IpAddr),
}

impl Bind {
    /// The named forms, as written in the config.
    pub const NAMES: [&'static str; 3] = ["loopback", "lan", "custom"];
}

impl fmt::Display for Bind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Loopback => f.write_str("loopback"),
            Self::Lan => f.write_str("lan"),
            Self::Custom => f.write_str("custom"),
            Self::Ip(ip) => write!(f, "{ip}"),
        }
    }
}

impl Serialize for Bind {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.collect_str(self)
    }
}

impl JsonSchema for Bind {
    fn schema_name() -> Cow<'static, str> {
        "Bind".into()
    }

    fn json_schema(_: &mut SchemaGenerator) -> Schema {
        json_schema!({
            "description": "\"loopback\" (127.0.0.1), \"lan\" (0.0.0.0), \"custom\" (use customBindHost) or an IP address.",
            "anyOf": [
                { "type": "string", "enum": ["loopback", "lan", "custom"] },
                { "type": "string", "format": "ipv4" },
                { "type": "string", "format": "ipv6" }
            ]
        })
    }
}

/// An IP address or a CIDR range (`10.0.0.0/8`, `fd00::/8`): an entry of
/// `gateway.trustedProxies`. A bare address is a range of one.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct IpCidr {
    network: IpAddr,
    prefix: u8,
}

impl IpCidr {
    /// Parses `"10.0.0.1"`, `"10.0.0.0/8"`, `"::1"` or `"fd00::/8"`. Host bits below the prefix
    /// are cleared (`10.1.2.3/8` is `10.0.0.0/8`).
    ///
    /// # Errors
    /// A message naming what is wrong.
    pub fn parse(text: &str) -> Result<Self, String> {
        let text = text.trim();
        let (addr, prefix) = match text.split_once('/') {
            Some((addr, prefix)) => (addr, Some(prefix)),
            None => (text, None),
        };
        let network: IpAddr = addr.parse().map_err(|_| {
            format!(
                "{text:?} is not an IP address or CIDR range; give e.g. \"127.0.0.1\", \"10.0.0.0/8\" or \
                 \"fd00::/8\" (host names are not resolved)"
            )
        })?;
        let max = if network.is_ipv4() { 32 } else { 128 };
        let prefix = match prefix {
            None => max,
            Some(p) => match p.parse::<u8>() {
                Ok(n) if n <= max => n,
                _ => return Err(format!("{text:?}: the prefix length must be a number from 0 to {max}")),
            },
        };
        Ok(Self { network: mask(network, prefix), prefix })
    }

    /// Whether `ip` is in the range. IPv4-mapped IPv6 addresses (`::ffff:10.0.0.1`) match
    /// IPv4 ranges.
    #[must_use]
    pub fn contains(&self, ip: IpAddr) -> bool {
        let ip = match ip {
            IpAddr::V6(v6) if self.network.is_ipv4() => match v6.to_ipv4_mapped() {
                Some(v4) => IpAddr::V4(v4),
                None => return false,
            },
            other => other,
        };
        ip.is_ipv4() == self.network.is_ipv4() && mask(ip, self.prefix) == self.network
    }
}

/// `ip` with every bit after the first `prefix` cleared.
fn mask(ip: IpAddr, prefix: u8) -> IpAddr {
    match ip {
        IpAddr::V4(v4) => {
            let bits = u32::from(v4);
            let keep = u32::MAX.checked_shl(32 - u32::from(prefix)).unwrap_or(0);
            IpAddr::V4((bits & keep).into())
        }
        IpAddr::V6(v6) => {
            let bits = u128::from(v6);
            let keep = u128::MAX.checked_shl(128 - u32::from(prefix)).unwrap_or(0);
            IpAddr::V6((bits & keep).into())
        }
    }
}

impl fmt::Display for IpCidr {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let max = if self.network.is_ipv4() { 32 } else { 128 };
        if self.prefix == max { write!(f, "{}", self.network) } else { write!(f, "{}/{}", self.network, self.prefix) }
    }
}

impl Serialize for IpCidr {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.collect_str(self)
    }
}

impl JsonSchema for IpCidr {
    fn schema_name() -> Cow<'static, str> {
        "IpCidr".into()
    }

    fn json_schema(_: &mut SchemaGenerator) -> Schema {
        json_schema!({
            "description": "An IP address (\"127.0.0.1\", \"::1\") or a CIDR range (\"10.0.0.0/8\", \"fd00::/8\").",
            "type": "string"
        })
    }
}

/// `gateway.auth.*`.
#[derive(Clone, Debug, Default, PartialEq, Serialize, JsonSchema)]
#[serde(rename_all = "camelCase", default, deny_unknown_fields)]
pub struct AuthConfig {
    /// How clients prove who they are.
    pub mode: AuthMode,
    /// The shared token (`mode: "token"`). Overridden by `CLAWGATE_GATEWAY_TOKEN`.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub token: Option<Secret>,
    /// The shared password (`mode: "password"`): plain text or an argon2id PHC hash
    /// (`$argon2id$…`). Overridden by `CLAWGATE_GATEWAY_PASSWORD`.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub password: Option<Secret>,
    /// Limits on failed authentication attempts.
    pub rate_limit: RateLimitConfig,
}

/// `gateway.auth.mode`.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash, Serialize, JsonSchema)]
#[serde(rename_all = "lowercase")]
pub enum AuthMode {
    /// No authentication; only allowed on a loopback bind.
    None,
    /// A shared token.
    #[default]
    Token,
    /// A shared password.
    Password,
}

impl AuthMode {
    /// The values as written in the config.
    pub const NAMES: [&'static str; 3] = ["none", "token", "password"];
}

/// `gateway.auth.rateLimit.*`: failed-auth throttling per client address.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, JsonSchema)]
#[serde(rename_all = "camelCase", default, deny_unknown_fields)]
pub struct RateLimitConfig {
    /// Failed attempts allowed within `windowMs` before the client is locked out.
    pub max_attempts: u32,
    /// The window in which failures are counted, in milliseconds.
    pub window_ms: u64,
    /// How long a locked-out client is refused, in milliseconds.
    pub lockout_ms: u64,
    /// Whether loopback clients are never rate limited.
    pub exempt_loopback: bool,
}

impl Default for RateLimitConfig {
    fn default() -> Self {
        Self { max_attempts: 10, window_ms: 60_000, lockout_ms: 300_000, exempt_loopback: false }
    }
}

/// `gateway.controlUi.*`.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, JsonSchema)]
#[serde(rename_all = "camelCase", default, deny_unknown_fields)]
pub struct ControlUiConfig {
    /// Whether the control UI is served.
    pub enabled: bool,
    /// URL path prefix for the UI, e.g. `"/ui"`; empty serves it at `/`.
    pub base_path: String,
    /// A built Control UI directory (e.g. the `openclaw` package's `dist/control-ui`) served at
    /// `basePath` instead of the built-in web chat; relative to the config file's directory.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub root: Option<PathBuf>,
    /// Extra browser origins (`scheme://host[:port]`) allowed to open WebSocket connections and
    /// to POST to the HTTP API.
    pub allowed_origins: Vec<String>,
    /// Also accept a browser origin whose `host[:port]` equals the request's `Host` header.
    /// Off by default: after DNS rebinding a hostile page's origin matches its own `Host`, so
    /// this re-opens the gateway to any web page when it is reachable without a secret.
    pub dangerously_allow_host_header_origin_fallback: bool,
}

impl Default for ControlUiConfig {
    fn default() -> Self {
        Self {
            enabled: true,
            base_path: String::new(),
            root: None,
            allowed_origins: Vec::new(),
            dangerously_allow_host_header_origin_fallback: false,
        }
    }
}

/// `gateway.http.*`.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, JsonSchema)]
#[serde(rename_all = "camelCase", default, deny_unknown_fields)]
pub struct HttpConfig {
    /// Optional HTTP endpoints.
    pub endpoints: HttpEndpointsConfig,
    /// Time a connection has to send a complete request head, in milliseconds: the first one,
    /// and on a kept-alive connection the next one (so it is also the idle timeout). A silent or
    /// half-sent connection is closed when it runs out.
    pub header_timeout_ms: u64,
    /// Open TCP connections (HTTP and WebSocket) the gateway holds at once; more are closed on
    /// accept. An eighth of them is kept for the host's own address (127.0.0.1, ::1), so the local
    /// CLI still gets in when other peers hold the rest. Also capped below the process's limit
    /// of open files.
    pub max_connections: u32,
}

impl Default for HttpConfig {
    fn default() -> Self {
        Self { endpoints: HttpEndpointsConfig::default(), header_timeout_ms: 15_000, max_connections: 4096 }
    }
}

/// `gateway.http.endpoints.*`.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, JsonSchema)]
#[serde(rename_all = "camelCase", default, deny_unknown_fields)]
pub struct HttpEndpointsConfig {
    /// `POST /v1/chat/completions`.
    pub chat_completions: EndpointToggle,
    /// `POST /v1/responses`.
    pub responses: EndpointToggle,
}

/// An optional endpoint that is off unless enabled.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, JsonSchema)]
#[serde(rename_all = "camelCase", default, deny_unknown_fields)]
pub struct EndpointToggle {
    /// Whether the endpoint is served.
    pub enabled: bool,
}

/// `gateway.reload.*`.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, JsonSchema)]
#[serde(rename_all = "camelCase", default, deny_unknown_fields)]
pub struct ReloadConfig {
    /// `"hybrid"` applies changes live where possible and restarts otherwise; `"off"` ignores
    /// changes until the next start.
    pub mode: ReloadMode,
}

/// `gateway.reload.mode`.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash, Serialize, JsonSchema)]
#[serde(rename_all = "lowercase")]
pub enum ReloadMode {
    /// Apply what can be applied live; restart for the rest.
    #[default]
    Hybrid,
    /// Do not react to file changes.
    Off,
}

impl ReloadMode {
    /// The values as written in the config.
    pub const NAMES: [&'static str; 2] = ["hybrid", "off"];
}

/// `storage.*`: where the gateway keeps its state.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, JsonSchema)]
#[serde(rename_all = "camelCase", default, deny_unknown_fields)]
pub struct StorageConfig {
    /// `sqlite:<path>` (relative to the config file's directory) or
    /// `postgres://user:password@host:port/database` (several gateways may share one PostgreSQL
    /// database). Unset: the SQLite file `clawgate.db` in the state directory. The password is a
    /// secret: it never prints.
    #[serde(skip_serializing_if = "Option::is_none")]
    #[schemars(with = "Option<String>")]
    pub url: Option<SecretUrl>,
}

impl StorageConfig {
    fn is_default(&self) -> bool {
        self.url.is_none()
    }

    /// The backend `url` names.
    #[must_use]
    pub fn backend(&self) -> StorageBackend<'_> {
        match self.url.as_ref() {
            None => StorageBackend::DefaultSqlite,
            Some(url) => match url.expose().strip_prefix("sqlite:") {
                Some(path) => StorageBackend::Sqlite(std::path::Path::new(path)),
                None => StorageBackend::Postgres(url),
            },
        }
    }
}

/// `cluster.*`: how gateways sharing one PostgreSQL database keep track of each other. On
/// SQLite there is one gateway and these only pace its own heartbeat.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, JsonSchema)]
#[serde(rename_all = "camelCase", default, deny_unknown_fields)]
pub struct ClusterConfig {
    /// How often a gateway writes its heartbeat row and looks for peers that died (ms).
    #[schemars(range(min = 100, max = 60_000))]
    pub heartbeat_ms: u64,
    /// How long a lease (e.g. the right to drive a channel account) lasts without renewal, and
    /// how long a silent gateway is still taken for alive (ms). Its holder renews every third of
    /// it; when a gateway dies its peers take over after at most this long. Must exceed
    /// `heartbeatMs`.
    #[schemars(range(min = 500, max = 600_000))]
    pub lease_ttl_ms: u64,
}

impl ClusterConfig {
    /// Smallest and largest `heartbeatMs`.
    pub const HEARTBEAT_RANGE: (u64, u64) = (100, 60_000);
    /// Smallest and largest `leaseTtlMs`.
    pub const LEASE_TTL_RANGE: (u64, u64) = (500, 600_000);

    fn is_default(&self) -> bool {
        *self == Self::default()
    }
}

impl Default for ClusterConfig {
    fn default() -> Self {
        Self { heartbeat_ms: 2_000, lease_ttl_ms: 10_000 }
    }
}

/// What `storage.url` selects.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum StorageBackend<'a> {
    /// No URL: the SQLite file in the state directory.
    DefaultSqlite,
    /// `sqlite:<path>`: this SQLite file (relative paths are resolved by the caller).
    Sqlite(&'a std::path::Path),
    /// `postgres://…`: a PostgreSQL database.
    Postgres(&'a SecretUrl),
}

/// Whether `url` is a storage URL clawgate can open: `sqlite:<path>` or
/// `postgres://`/`postgresql://…`.
#[must_use]
pub fn storage_url_problem(url: &str) -> Option<String> {
    if let Some(path) = url.strip_prefix("sqlite:") {
        return path.trim().is_empty().then(|| "names no file; expected sqlite:<path>".to_owned());
    }
    if url.starts_with("postgres://") || url.starts_with("postgresql://") {
        return None;
    }
    Some("is not a storage URL; expected sqlite:<path> or postgres://user:password@host:port/database".to_owned())
}

/// `logging.*`.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, JsonSchema)]
#[serde(rename_all = "camelCase", default, deny_unknown_fields)]
pub struct LoggingConfig {
    /// Also write logs to this file (relative to the config file's directory).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub file: Option<PathBuf>,
    /// Level (`error`, `warn`, `info`, `debug`, `trace`, `off`), optionally with per-target
    /// directives: `"info,clawgate_server=debug"`.
    pub level: String,
    /// Size-based rotation of the log file.
    pub rotate: LogRotateConfig,
}

impl Default for LoggingConfig {
    fn default() -> Self {
        Self { file: None, level: "info".to_owned(), rotate: LogRotateConfig::default() }
    }
}

/// `logging.rotate.*`: the log file is renamed to `<file>.1` (older ones shifting to `.2`, …)
/// when the next line would take it past `maxBytes`, and only `keep` old files are kept.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, JsonSchema)]
#[serde(rename_all = "camelCase", default, deny_unknown_fields)]
pub struct LogRotateConfig {
    /// Size at which the log file is rotated, in bytes; 0 never rotates (for an external
    /// `logrotate` with `copytruncate`).
    pub max_bytes: u64,
    /// How many rotated files (`<file>.1` … `<file>.<keep>`) are kept besides the live one; 0
    /// keeps none (the file starts over).
    pub keep: u32,
}

impl LogRotateConfig {
    /// The smallest non-zero `maxBytes`: below it rotation would churn on every few lines.
    pub const MIN_MAX_BYTES: u64 = 4096;
    /// The most rotated files kept.
    pub const MAX_KEEP: u32 = 100;
}

impl Default for LogRotateConfig {
    fn default() -> Self {
        Self { max_bytes: 10 * 1024 * 1024, keep: 5 }
    }
}
