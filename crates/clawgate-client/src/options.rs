//! [`ClientOptions`]: everything [`Client::connect`](crate::Client::connect) needs to know.

use std::time::Duration;

use clawgate_backoff::Backoff;

use crate::identity::{DeviceIdentity, SignatureVersion};

/// Default gateway address.
pub const DEFAULT_URL: &str = "ws://127.0.0.1:18789";
/// Default `client.id`: a backend talking to the gateway on behalf of its own users.
pub const DEFAULT_CLIENT_ID: &str = "gateway-client";
/// Default `client.mode`.
pub const DEFAULT_CLIENT_MODE: &str = "backend";

/// Where `device.signedAt` comes from.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum SignedAtSource {
    /// The `ts` of the `connect.challenge` (what the upstream Control UI does): immune to a
    /// skewed local clock, since the gateway checks `|now - signedAt| <= 120 s` against its own.
    #[default]
    ChallengeTs,
    /// The local clock (what `openclaw-node` does).
    LocalClock,
}

/// What a [`Client`](crate::Client) does when an established connection ends.
///
/// Enabled (the default), a supervisor task reconnects after a socket close, a `shutdown` event
/// (waiting its `restartExpectedMs` first when the gateway gives one) or two silent tick
/// intervals, with jittered exponential backoff ([`clawgate_backoff::Backoff`]); it redoes the
/// handshake with the same identity and credentials and replays the subscriptions made through
/// the client. Closes that say "do not come back" (1008 policy or auth, 4001 credentials
/// revoked, 1002 protocol mismatch) and a refused `connect` end the client instead.
///
/// ```
/// use std::time::Duration;
/// use clawgate_client::{ClientOptions, ReconnectPolicy};
/// let backend = ClientOptions::new("ws://127.0.0.1:18789").reconnect(
///     ReconnectPolicy::default()
///         .backoff(Duration::from_millis(200), Duration::from_secs(10))
///         .request_wait(Duration::from_secs(5)),
/// );
/// let one_shot = ClientOptions::new("ws://127.0.0.1:18789").reconnect(ReconnectPolicy::never());
/// assert!(ReconnectPolicy::default().is_enabled() && !ReconnectPolicy::never().is_enabled());
/// # let _ = (backend, one_shot);
/// ```
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ReconnectPolicy {
    pub(crate) enabled: bool,
    pub(crate) backoff: Backoff,
    pub(crate) max_attempts: Option<u32>,
    pub(crate) request_wait: Duration,
}

impl Default for ReconnectPolicy {
    /// Reconnect forever, 250 ms doubling to 30 s (equal jitter); requests wait up to 10 s for
    /// a connection.
    fn default() -> Self {
        Self {
            enabled: true,
            backoff: Backoff::new(Duration::from_millis(250), Duration::from_secs(30)),
            max_attempts: None,
            request_wait: Duration::from_secs(10),
        }
    }
}

impl ReconnectPolicy {
    /// Never reconnect: when the connection ends, the client is closed (what a one-shot CLI
    /// command wants).
    pub fn never() -> Self {
        Self { enabled: false, request_wait: Duration::ZERO, ..Self::default() }
    }

    /// Whether the client reconnects at all.
    pub fn is_enabled(&self) -> bool {
        self.enabled
    }

    /// The wait before reconnect attempt `n` starts at about `base` and doubles up to `cap`.
    pub fn backoff(mut self, base: Duration, cap: Duration) -> Self {
        self.backoff = Backoff::new(base, cap);
        self
    }

    /// Give up (and close the client) after this many failed attempts in a row.
    pub fn max_attempts(mut self, attempts: u32) -> Self {
        self.max_attempts = Some(attempts.max(1));
        self
    }

    /// How long a request made while reconnecting waits for the connection before it fails
    /// with [`ClientError::Unavailable`](crate::ClientError::Unavailable).
    pub fn request_wait(mut self, wait: Duration) -> Self {
        self.request_wait = wait;
        self
    }
}

/// How to connect: address, credentials, self-description, device identity and timeouts.
///
/// ```
/// use clawgate_client::{ClientOptions, DeviceIdentity};
/// let opts = ClientOptions::new("ws://127.0.0.1:18789")
///     .token("s3cret")
///     .scopes(["operator.read", "operator.write"])
///     .device(DeviceIdentity::generate());
/// assert_eq!(opts.client_id_ref(), "gateway-client");
/// ```
#[derive(Clone)]
pub struct ClientOptions {
    pub(crate) url: String,
    pub(crate) token: Option<String>,
    pub(crate) password: Option<String>,
    pub(crate) device_token: Option<String>,
    pub(crate) bootstrap_token: Option<String>,
    pub(crate) client_id: String,
    pub(crate) mode: String,
    pub(crate) version: String,
    pub(crate) platform: String,
    pub(crate) device_family: Option<String>,
    pub(crate) display_name: Option<String>,
    pub(crate) instance_id: Option<String>,
    pub(crate) role: String,
    pub(crate) scopes: Vec<String>,
    pub(crate) caps: Vec<String>,
    pub(crate) device: Option<DeviceIdentity>,
    pub(crate) signature_version: SignatureVersion,
    pub(crate) signed_at: SignedAtSource,
    pub(crate) connect_timeout: Duration,
    pub(crate) request_timeout: Duration,
    pub(crate) event_capacity: usize,
    pub(crate) headers: Vec<(String, String)>,
    pub(crate) reconnect: ReconnectPolicy,
    pub(crate) session_capacity: usize,
}

impl std::fmt::Debug for ClientOptions {
    // Credentials and header values (a proxy's auth header) are never printed.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let set = |v: &Option<String>| v.as_ref().map(|_| "<redacted>");
        f.debug_struct("ClientOptions")
            .field("url", &self.url)
            .field("token", &set(&self.token))
            .field("password", &set(&self.password))
            .field("device_token", &set(&self.device_token))
            .field("bootstrap_token", &set(&self.bootstrap_token))
            .field("client_id", &self.client_id)
            .field("mode", &self.mode)
            .field("role", &self.role)
            .field("scopes", &self.scopes)
            .field("device", &self.device)
            .field("headers", &self.headers.iter().map(|(n, _)| n.as_str()).collect::<Vec<_>>())
            .field("reconnect", &self.reconnect)
            .finish_non_exhaustive()
    }
}

impl Default for ClientOptions {
    fn default() -> Self {
        Self::new(DEFAULT_URL)
    }
}

impl ClientOptions {
    /// Options for the gateway at `url` (`ws://host:port`), with the defaults: client id
    /// `gateway-client`, mode `backend`, role `operator`, no scopes, no credentials, v3
    /// signatures signed at the challenge `ts`, 10 s connect and 30 s request timeouts.
    pub fn new(url: impl Into<String>) -> Self {
        Self {
            url: url.into(),
            token: None,
            password: None,
            device_token: None,
            bootstrap_token: None,
            client_id: DEFAULT_CLIENT_ID.to_owned(),
            mode: DEFAULT_CLIENT_MODE.to_owned(),
            version: env!("CARGO_PKG_VERSION").to_owned(),
            platform: std::env::consts::OS.to_owned(),
            device_family: None,
            display_name: None,
            instance_id: None,
            role: clawgate_protocol::connect::roles::OPERATOR.to_owned(),
            scopes: Vec::new(),
            caps: Vec::new(),
            device: None,
            signature_version: SignatureVersion::V3,
            signed_at: SignedAtSource::ChallengeTs,
            connect_timeout: Duration::from_secs(10),
            request_timeout: Duration::from_secs(30),
            event_capacity: 1024,
            headers: Vec::new(),
            reconnect: ReconnectPolicy::default(),
            session_capacity: 256,
        }
    }

    /// Gateway URL.
    pub fn url(mut self, url: impl Into<String>) -> Self {
        self.url = url.into();
        self
    }

    /// Shared gateway token (`auth.token`).
    pub fn token(mut self, token: impl Into<String>) -> Self {
        self.token = Some(token.into());
        self
    }

    /// Shared gateway password (`auth.password`).
    pub fn password(mut self, password: impl Into<String>) -> Self {
        self.password = Some(password.into());
        self
    }

    /// Device token from an earlier `hello-ok.auth.deviceToken` (`auth.deviceToken`); needs
    /// [`device`](Self::device) too.
    pub fn device_token(mut self, token: impl Into<String>) -> Self {
        self.device_token = Some(token.into());
        self
    }

    /// Setup-code bootstrap token (`auth.bootstrapToken`).
    pub fn bootstrap_token(mut self, token: impl Into<String>) -> Self {
        self.bootstrap_token = Some(token.into());
        self
    }

    /// `client.id`; must be one of the protocol's closed set (`cli`, `gateway-client`, …).
    pub fn client_id(mut self, id: impl Into<String>) -> Self {
        self.client_id = id.into();
        self
    }

    /// The configured `client.id`.
    pub fn client_id_ref(&self) -> &str {
        &self.client_id
    }

    /// `client.mode` (`backend`, `cli`, `ui`, `node`, …).
    pub fn mode(mut self, mode: impl Into<String>) -> Self {
        self.mode = mode.into();
        self
    }

    /// `client.version`.
    pub fn version(mut self, version: impl Into<String>) -> Self {
        self.version = version.into();
        self
    }

    /// `client.platform` (default: `std::env::consts::OS`); signed in v3.
    pub fn platform(mut self, platform: impl Into<String>) -> Self {
        self.platform = platform.into();
        self
    }

    /// `client.deviceFamily`; signed in v3.
    pub fn device_family(mut self, family: impl Into<String>) -> Self {
        self.device_family = Some(family.into());
        self
    }

    /// `client.displayName`.
    pub fn display_name(mut self, name: impl Into<String>) -> Self {
        self.display_name = Some(name.into());
        self
    }

    /// `client.instanceId` (the presence key).
    pub fn instance_id(mut self, id: impl Into<String>) -> Self {
        self.instance_id = Some(id.into());
        self
    }

    /// Requested role (`operator` or `node`).
    pub fn role(mut self, role: impl Into<String>) -> Self {
        self.role = role.into();
        self
    }

    /// Requested scopes, in the order to send (and sign).
    pub fn scopes<I, S>(mut self, scopes: I) -> Self
    where
        I: IntoIterator<Item = S>,
        S: Into<String>,
    {
        self.scopes = scopes.into_iter().map(Into::into).collect();
        self
    }

    /// Client capabilities (`caps`).
    pub fn caps<I, S>(mut self, caps: I) -> Self
    where
        I: IntoIterator<Item = S>,
        S: Into<String>,
    {
        self.caps = caps.into_iter().map(Into::into).collect();
        self
    }

    /// Prove a device identity in `connect`.
    pub fn device(mut self, identity: DeviceIdentity) -> Self {
        self.device = Some(identity);
        self
    }

    /// Which payload the device signs (v3 by default).
    pub fn signature_version(mut self, version: SignatureVersion) -> Self {
        self.signature_version = version;
        self
    }

    /// Where `device.signedAt` comes from (the challenge `ts` by default).
    pub fn signed_at(mut self, source: SignedAtSource) -> Self {
        self.signed_at = source;
        self
    }

    /// Bound on each handshake phase: WebSocket open, `connect.challenge`, `hello-ok`.
    pub fn connect_timeout(mut self, timeout: Duration) -> Self {
        self.connect_timeout = timeout;
        self
    }

    /// An extra HTTP header on the WebSocket upgrade (e.g. what a reverse proxy would add).
    pub fn header(mut self, name: impl Into<String>, value: impl Into<String>) -> Self {
        self.headers.push((name.into(), value.into()));
        self
    }

    /// Default bound on the first `res` of a request.
    pub fn request_timeout(mut self, timeout: Duration) -> Self {
        self.request_timeout = timeout;
        self
    }

    /// How many events a slow subscriber may fall behind before it misses some (default 1024).
    pub fn event_capacity(mut self, capacity: usize) -> Self {
        self.event_capacity = capacity.max(1);
        self
    }

    /// What to do when an established connection ends (default: reconnect with backoff; see
    /// [`ReconnectPolicy`]).
    pub fn reconnect(mut self, policy: ReconnectPolicy) -> Self {
        self.reconnect = policy;
        self
    }

    /// How many events one [`SessionHandle::events`](crate::SessionHandle::events) stream
    /// buffers before it drops events and reports [`SessionEvent::Lagged`](crate::SessionEvent::Lagged)
    /// (default 256).
    pub fn session_capacity(mut self, capacity: usize) -> Self {
        self.session_capacity = capacity.max(2);
        self
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn debug_output_redacts_credentials_and_header_values() {
        let opts =
            ClientOptions::new("ws://h:1").token("tok-secret").password("pw-secret").header("x-auth", "hdr-secret");
        let dbg = format!("{opts:?}");
        for secret in ["tok-secret", "pw-secret", "hdr-secret"] {
            assert!(!dbg.contains(secret), "{dbg}");
        }
        assert!(dbg.contains("x-auth") && dbg.contains("<redacted>"), "{dbg}");
    }
}
