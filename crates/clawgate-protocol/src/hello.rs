//! `hello-ok`, the payload of a successful `connect` response (contract §3.7).

use serde::{Deserialize, Serialize};
use serde_json::Value;

use crate::frames::StateVersion;

/// The `hello-ok` payload.
///
/// The fields of this struct and of every struct in it are declared in the order of their wire
/// names, so that encoding it directly gives the same text as encoding its JSON tree (whose
/// objects keep their keys sorted): a handshake encodes its `hello-ok` once, without building the
/// tree first (callgrind: the tree and its second encoding were 40 % of a handshake's
/// instructions). `hello_ok_encodes_the_same_as_its_json_tree` pins it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct HelloOk {
    /// What was granted.
    pub auth: HelloAuth,
    /// What this server implements.
    pub features: Features,
    /// Limits.
    pub policy: Policy,
    /// Always 4.
    pub protocol: u32,
    /// Who answered.
    pub server: ServerInfo,
    /// Initial state.
    pub snapshot: Snapshot,
    /// Always `"hello-ok"`.
    #[serde(rename = "type")]
    pub kind: String,
}

/// `hello-ok.server`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct ServerInfo {
    /// Changes on every process start.
    pub boot_id: String,
    /// Build id.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub build_id: Option<String>,
    /// This connection's id.
    pub conn_id: String,
    /// `"bundled"` or `"configured"`.
    pub control_ui_build_source: String,
    /// Server version.
    pub version: String,
}

/// `hello-ok.features`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Features {
    /// Server capabilities.
    pub capabilities: Vec<String>,
    /// Emitted events.
    pub events: Vec<String>,
    /// Advertised methods.
    pub methods: Vec<String>,
}

/// `hello-ok.snapshot`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Snapshot {
    /// Hash of the config in force (admin only).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub applied_config_hash: Option<String>,
    /// Resolved auth mode.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub auth_mode: Option<String>,
    /// Config file path (admin only).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub config_path: Option<String>,
    /// Health snapshot.
    pub health: Value,
    /// Presence entries.
    pub presence: Vec<Value>,
    /// Default session routing.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub session_defaults: Option<Value>,
    /// State directory (admin only).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub state_dir: Option<String>,
    /// Current state versions (keys in sorted order, as everywhere in `hello-ok`).
    #[serde(serialize_with = "state_version_sorted")]
    pub state_version: StateVersion,
    /// `{phase: "accepting"}` while running normally.
    pub suspension: Value,
    /// Time since start (ms).
    pub uptime_ms: u64,
}

/// `hello-ok.auth`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct HelloAuth {
    /// Device token issued for (device, role).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub device_token: Option<String>,
    /// When the device token was issued.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub issued_at_ms: Option<i64>,
    /// How the client authenticated: none, token, password, device-token.
    pub method: String,
    /// Granted role.
    pub role: String,
    /// Granted scopes (used for every later authorization).
    pub scopes: Vec<String>,
}

/// `hello-ok.policy`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Policy {
    /// Attachment limits.
    pub attachments: AttachmentPolicy,
    /// Slow-consumer threshold.
    pub max_buffered_bytes: usize,
    /// Largest frame after hello.
    pub max_payload: usize,
    /// Tick interval (ms).
    pub tick_interval_ms: u64,
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

/// A [`StateVersion`] with its keys in sorted order (`health`, `presence`): its own `Serialize`
/// keeps declaration order, which events' frames use.
fn state_version_sorted<S: serde::Serializer>(v: &StateVersion, serializer: S) -> Result<S::Ok, S::Error> {
    use serde::ser::SerializeStruct;
    let mut s = serializer.serialize_struct("StateVersion", 2)?;
    s.serialize_field("health", &v.health)?;
    s.serialize_field("presence", &v.presence)?;
    s.end()
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

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn hello(full: bool) -> HelloOk {
        let some = |s: &str| full.then(|| s.to_owned());
        HelloOk {
            kind: "hello-ok".into(),
            protocol: crate::PROTOCOL_VERSION,
            server: ServerInfo {
                version: "1.2.3".into(),
                build_id: some("clawgate-1.2.3"),
                boot_id: "b".into(),
                control_ui_build_source: "bundled".into(),
                conn_id: "c".into(),
            },
            features: Features {
                methods: vec!["health".into(), "chat.send".into()],
                events: vec!["tick".into()],
                capabilities: vec![],
            },
            snapshot: Snapshot {
                presence: vec![json!({"host": "h", "connId": "c", "mode": "cli"})],
                health: json!({"ok": true, "sessions": {"path": "/p", "count": 1}, "agents": []}),
                state_version: StateVersion { presence: 3, health: 7 },
                uptime_ms: 42,
                suspension: json!({"phase": "accepting"}),
                session_defaults: full.then(|| json!({"mainKey": "main", "defaultAgentId": "main"})),
                auth_mode: some("token"),
                applied_config_hash: some("abc"),
                config_path: some("/c.json5"),
                state_dir: some("/s"),
            },
            auth: HelloAuth {
                method: "token".into(),
                role: "operator".into(),
                scopes: vec!["operator.admin".into()],
                device_token: some("dt"),
                issued_at_ms: full.then_some(5),
            },
            policy: Policy::standard(15_000),
        }
    }

    #[test]
    fn hello_ok_encodes_the_same_as_its_json_tree() {
        for full in [true, false] {
            let h = hello(full);
            let tree = serde_json::to_value(&h).unwrap();
            assert_eq!(serde_json::to_string(&h).unwrap(), tree.to_string(), "full: {full}");
            assert_eq!(tree["snapshot"]["stateVersion"], json!({"presence": 3, "health": 7}));
        }
    }
}
