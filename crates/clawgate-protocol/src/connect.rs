//! `connect` parameters (contract §3.2) and their validation.

use serde::{Deserialize, Serialize};
use serde_json::Value;

use crate::validate::{Field, STR, STR1, Ty, opt, req, validate_object};

/// The closed set of `client.id` values.
pub const CLIENT_IDS: &[&str] = &[
    "webchat-ui",
    "openclaw-control-ui",
    "openclaw-browser-copilot",
    "openclaw-tui",
    "webchat",
    "cli",
    "gateway-client",
    "openclaw-macos",
    "openclaw-linux",
    "openclaw-ios",
    "openclaw-watchos",
    "openclaw-android",
    "node-host",
    "openclaw-worker",
    "test",
    "fingerprint",
    "openclaw-probe",
];

/// The closed set of `client.mode` values.
pub const CLIENT_MODES: &[&str] = &["webchat", "cli", "ui", "backend", "node", "worker", "probe", "test"];

/// Roles a client may connect as.
pub mod roles {
    /// Control-plane clients.
    pub const OPERATOR: &str = "operator";
    /// Capability hosts.
    pub const NODE: &str = "node";
}

/// A bounded descriptive string. Client metadata is stored with every pairing request and
/// broadcast to every pairing operator before anyone has vouched for the sender, so each field
/// has a length cap (issue 10, defect 5: 64 KB of metadata per request, 300 requests → 25 MB).
const fn bounded(max: usize) -> Ty {
    Ty::Str { min: 1, max: Some(max) }
}

/// Longest `client.displayName` (characters).
pub const MAX_DISPLAY_NAME: usize = 256;
/// Longest short client descriptor (`platform`, `deviceFamily`, `version`, …).
pub const MAX_DESCRIPTOR: usize = 128;

const CLIENT_FIELDS: &[Field] = &[
    req("id", Ty::Enum(CLIENT_IDS)),
    opt("displayName", bounded(MAX_DISPLAY_NAME)),
    req("version", bounded(MAX_DESCRIPTOR)),
    opt("buildId", Ty::Str { min: 1, max: Some(96) }),
    req("platform", bounded(MAX_DESCRIPTOR)),
    opt("deviceFamily", bounded(MAX_DESCRIPTOR)),
    opt("modelIdentifier", bounded(MAX_DESCRIPTOR)),
    opt("timeZone", Ty::Str { min: 1, max: Some(64) }),
    req("mode", Ty::Enum(CLIENT_MODES)),
    opt("instanceId", bounded(MAX_DESCRIPTOR)),
];

const DEVICE_FIELDS: &[Field] = &[
    // hex(sha256) is 64 characters; a PEM SPKI Ed25519 key is about 113.
    req("id", bounded(MAX_DESCRIPTOR)),
    req("publicKey", bounded(1024)),
    req("signature", bounded(256)),
    req("signedAt", Ty::Int { min: 0 }),
    req("nonce", bounded(256)),
];

const AUTH_FIELDS: &[Field] = &[
    opt("token", STR),
    opt("bootstrapToken", STR),
    opt("deviceToken", STR),
    opt("password", STR),
    opt("approvalRuntimeToken", STR),
    opt("agentRuntimeIdentityToken", STR),
];

const CONNECT_FIELDS: &[Field] = &[
    req("minProtocol", Ty::Int { min: 1 }),
    req("maxProtocol", Ty::Int { min: 1 }),
    req("client", Ty::Object(CLIENT_FIELDS)),
    opt("caps", Ty::StrArray { min: 1 }),
    opt("commands", Ty::StrArray { min: 1 }),
    opt("computerUse", Ty::Any),
    opt("workerRuns", Ty::OpenObject),
    opt("permissions", Ty::BoolMap),
    opt("pathEnv", STR),
    opt("role", STR1),
    opt("scopes", Ty::StrArray { min: 1 }),
    opt("modelCatalog", Ty::OpenObject),
    opt("device", Ty::Object(DEVICE_FIELDS)),
    opt("auth", Ty::Object(AUTH_FIELDS)),
    opt("locale", STR),
    opt("userAgent", STR),
];

/// Who the client says it is.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct ClientInfo {
    /// One of [`CLIENT_IDS`].
    pub id: String,
    /// Display name.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub display_name: Option<String>,
    /// Client version.
    pub version: String,
    /// Build id.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub build_id: Option<String>,
    /// Platform (signed in the v3 payload).
    pub platform: String,
    /// Device family (signed in the v3 payload).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub device_family: Option<String>,
    /// Hardware model.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub model_identifier: Option<String>,
    /// IANA time zone.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub time_zone: Option<String>,
    /// One of [`CLIENT_MODES`].
    pub mode: String,
    /// Presence key.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub instance_id: Option<String>,
}

/// Ed25519 device identity proof.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct DeviceProof {
    /// hex(sha256(raw public key)).
    pub id: String,
    /// base64url raw key (or PEM SPKI).
    pub public_key: String,
    /// base64url Ed25519 signature over the v3 or v2 payload.
    pub signature: String,
    /// Signing time (ms).
    pub signed_at: i64,
    /// The challenge nonce.
    pub nonce: String,
}

/// Credentials.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct ConnectAuth {
    /// Shared gateway token (or a device token, re-tried as such).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub token: Option<String>,
    /// Setup-code bootstrap token.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub bootstrap_token: Option<String>,
    /// Device token issued in an earlier hello-ok.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub device_token: Option<String>,
    /// Shared gateway password.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub password: Option<String>,
    /// Not used by clawgate; accepted for compatibility.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub approval_runtime_token: Option<String>,
    /// Not used by clawgate; accepted for compatibility.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub agent_runtime_identity_token: Option<String>,
}

impl ConnectAuth {
    /// The token that a device signs: `auth.token ?? auth.deviceToken ?? auth.bootstrapToken ?? ""`.
    pub fn signed_token(&self) -> &str {
        self.token.as_deref().or(self.device_token.as_deref()).or(self.bootstrap_token.as_deref()).unwrap_or("")
    }
}

/// `connect` params.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct ConnectParams {
    /// Lowest protocol the client speaks.
    pub min_protocol: i64,
    /// Highest protocol the client speaks.
    pub max_protocol: i64,
    /// Client identity.
    pub client: ClientInfo,
    /// Client capabilities.
    #[serde(default)]
    pub caps: Vec<String>,
    /// Node command allowlist.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub commands: Option<Vec<String>>,
    /// Node permission toggles.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub permissions: Option<Value>,
    /// Node PATH.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub path_env: Option<String>,
    /// Requested role (default operator).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub role: Option<String>,
    /// Requested scopes, in the order sent (the order is signed).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub scopes: Option<Vec<String>>,
    /// Initial model-catalog scope.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub model_catalog: Option<Value>,
    /// Device identity proof.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub device: Option<DeviceProof>,
    /// Credentials.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub auth: Option<ConnectAuth>,
    /// Locale.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub locale: Option<String>,
    /// User agent.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub user_agent: Option<String>,
    /// Accepted for compatibility, unused.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub computer_use: Option<Value>,
    /// Accepted for compatibility, unused.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub worker_runs: Option<Value>,
}

impl ConnectParams {
    /// The resolved role (`operator` when absent).
    pub fn role(&self) -> &str {
        self.role.as_deref().unwrap_or(roles::OPERATOR)
    }

    /// Requested scopes (empty when absent).
    pub fn requested_scopes(&self) -> &[String] {
        self.scopes.as_deref().unwrap_or(&[])
    }

    /// Whether the client's protocol range is acceptable (contract §3.3).
    pub fn supports_protocol(&self) -> bool {
        let (min, max) = (self.min_protocol, self.max_protocol);
        let current = i64::from(crate::PROTOCOL_VERSION);
        let probe = i64::from(crate::MIN_PROBE_PROTOCOL);
        let supports_current = max >= current && min <= current;
        let supports_probe = self.client.mode == "probe" && max >= probe && min <= current;
        let supports_node = self.role() == roles::NODE && self.client.mode == "node" && max >= probe && min <= probe;
        supports_current || supports_probe || supports_node
    }
}

/// Validate raw `connect` params: closed objects and enums, with upstream-style messages
/// (`invalid connect params: must have required property 'minProtocol'; at root: unexpected property 'hello'`).
pub fn parse_connect_params(params: &Value) -> Result<ConnectParams, String> {
    let errors = validate_object(params, CONNECT_FIELDS);
    if !errors.is_empty() {
        return Err(format!("invalid connect params: {}", errors.join("; ")));
    }
    serde_json::from_value(params.clone()).map_err(|e| format!("invalid connect params: {e}"))
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn cli_connect() -> Value {
        json!({"minProtocol":4,"maxProtocol":4,"client":{"id":"cli","version":"2026.9.6","platform":"linux","deviceFamily":"Linux","mode":"cli","instanceId":"x"},"caps":[],"auth":{"token":"secret"},"role":"operator","scopes":["operator.read"]})
    }

    #[test]
    fn real_cli_connect_params_are_accepted() {
        let p = parse_connect_params(&cli_connect()).unwrap();
        assert_eq!(p.client.id, "cli");
        assert_eq!(p.role(), "operator");
        assert!(p.supports_protocol());
        assert_eq!(p.auth.unwrap().signed_token(), "secret");
    }

    #[test]
    fn unknown_property_message_matches_upstream() {
        let err = parse_connect_params(&json!({"hello":1})).unwrap_err();
        assert!(err.starts_with("invalid connect params: must have required property 'minProtocol'"), "{err}");
        assert!(err.ends_with("at root: unexpected property 'hello'"), "{err}");
    }

    #[test]
    fn unknown_client_id_is_rejected() {
        let mut v = cli_connect();
        v["client"]["id"] = json!("my-client");
        let err = parse_connect_params(&v).unwrap_err();
        assert!(err.contains("at /client/id: must be equal to one of the allowed values"), "{err}");
    }

    #[test]
    fn protocol_ranges_follow_negotiation_rules() {
        let mut v = cli_connect();
        v["minProtocol"] = json!(5);
        v["maxProtocol"] = json!(6);
        assert!(!parse_connect_params(&v).unwrap().supports_protocol());
        v["minProtocol"] = json!(3);
        v["maxProtocol"] = json!(3);
        assert!(!parse_connect_params(&v).unwrap().supports_protocol(), "cli may not speak 3");
        v["client"]["mode"] = json!("probe");
        v["maxProtocol"] = json!(4);
        assert!(parse_connect_params(&v).unwrap().supports_protocol(), "probe covers 3..4");
        v["client"]["mode"] = json!("node");
        v["role"] = json!("node");
        v["maxProtocol"] = json!(3);
        assert!(parse_connect_params(&v).unwrap().supports_protocol(), "nodes may speak 3");
    }
}
