//! `hello-ok`, the payload of a successful `connect` response (contract §3.7).

use serde::{Deserialize, Serialize};
use serde_json::Value;

use crate::frames::StateVersion;

/// The `hello-ok` payload.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct HelloOk {
    /// Always `"hello-ok"`.
    #[serde(rename = "type")]
    pub kind: String,
    /// Always 4.
    pub protocol: u32,
    /// Who answered.
    pub server: ServerInfo,
    /// What this server implements.
    pub features: Features,
    /// Initial state.
    pub snapshot: Snapshot,
    /// What was granted.
    pub auth: HelloAuth,
    /// Limits.
    pub policy: Policy,
}

/// `hello-ok.server`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct ServerInfo {
    /// Server version.
    pub version: String,
    /// Build id.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub build_id: Option<String>,
    /// Changes on every process start.
    pub boot_id: String,
    /// `"bundled"` or `"configured"`.
    pub control_ui_build_source: String,
    /// This connection's id.
    pub conn_id: String,
}

/// `hello-ok.features`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Features {
    /// Advertised methods.
    pub methods: Vec<String>,
    /// Emitted events.
    pub events: Vec<String>,
    /// Server capabilities.
    pub capabilities: Vec<String>,
}

/// `hello-ok.snapshot`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Snapshot {
    /// Presence entries.
    pub presence: Vec<Value>,
    /// Health snapshot.
    pub health: Value,
    /// Current state versions.
    pub state_version: StateVersion,
    /// Time since start (ms).
    pub uptime_ms: u64,
    /// `{phase: "accepting"}` while running normally.
    pub suspension: Value,
    /// Default session routing.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub session_defaults: Option<Value>,
    /// Resolved auth mode.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub auth_mode: Option<String>,
    /// Hash of the config in force (admin only).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub applied_config_hash: Option<String>,
    /// Config file path (admin only).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub config_path: Option<String>,
    /// State directory (admin only).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub state_dir: Option<String>,
}

/// `hello-ok.auth`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct HelloAuth {
    /// How the client authenticated: none, token, password, device-token.
    pub method: String,
    /// Granted role.
    pub role: String,
    /// Granted scopes (used for every later authorization).
    pub scopes: Vec<String>,
    /// Device token issued for (device, role).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub device_token: Option<String>,
    /// When the device token was issued.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub issued_at_ms: Option<i64>,
}

/// `hello-ok.policy`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Policy {
    /// Largest frame after hello.
    pub max_payload: usize,
    /// Slow-consumer threshold.
    pub max_buffered_bytes: usize,
    /// Tick interval (ms).
    pub tick_interval_ms: u64,
    /// Attachment limits.
    pub attachments: AttachmentPolicy,
}

/// `hello-ok.policy.attachments`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct AttachmentPolicy {
    /// Largest attachment.
    pub max_bytes: u64,
    /// Largest image.
    pub max_image_bytes: u64,
}

impl Policy {
    /// The limits clawgate enforces.
    pub fn standard(tick_interval_ms: u64) -> Self {
        Self {
            max_payload: crate::MAX_PAYLOAD_BYTES,
            max_buffered_bytes: crate::MAX_BUFFERED_BYTES,
            tick_interval_ms,
            attachments: AttachmentPolicy { max_bytes: 20 * 1024 * 1024, max_image_bytes: 6 * 1024 * 1024 },
        }
    }
}

/// Capabilities clawgate advertises in `hello-ok.features.capabilities`: none of upstream's
/// feature flags describe something clawgate implements yet, so it advertises none rather than
/// promise behaviour it lacks.
pub const CAPABILITIES: &[&str] = &[];
