//! `device.pair.*` and `device.token.*`: params and results.
//!
//! Params follow the schema's closed `DevicePair*Params` / `DeviceToken*Params` objects
//! (`deny_unknown_fields`). Field order matters: serde lists the expected fields in declaration
//! order in its "unknown field" message, which clients see in the `INVALID_REQUEST` text.

use serde::{Deserialize, Serialize};

use super::AnyParams;

pub use crate::events::pairing::DevicePairRequested;

/// `device.pair.list` params. The schema's `DevicePairListParams` is a closed `{}`, but clawgate
/// has always ignored whatever is sent here, so this accepts anything (no wire change).
pub type DevicePairListParams = AnyParams;

/// `device.pair.approve {requestId}`.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields, expecting = "struct RequestIdParams")]
pub struct DevicePairApproveParams {
    /// The pairing request to approve.
    pub request_id: String,
}

/// `device.pair.reject {requestId}`.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields, expecting = "struct RequestIdParams")]
pub struct DevicePairRejectParams {
    /// The pairing request to reject.
    pub request_id: String,
}

/// `device.pair.remove {deviceId}`.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields, expecting = "struct DeviceIdParams")]
pub struct DevicePairRemoveParams {
    /// The paired device to remove.
    pub device_id: String,
}

/// `device.token.rotate {deviceId, role, scopes?}`.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields, expecting = "struct RotateParams")]
pub struct DeviceTokenRotateParams {
    /// The device whose token is rotated.
    pub device_id: String,
    /// The role of the token.
    pub role: String,
    /// The new token's scopes; the device's approved scopes when absent.
    #[serde(default)]
    pub scopes: Option<Vec<String>>,
}

/// `device.token.revoke {deviceId, role}`.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields, expecting = "struct RevokeParams")]
pub struct DeviceTokenRevokeParams {
    /// The device whose token is revoked.
    pub device_id: String,
    /// The role of the token.
    pub role: String,
}

/// One paired device. Unknown optional facts are sent as `null` (as they always were).
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct PairedDeviceEntry {
    /// Device id.
    pub device_id: String,
    /// Its public key.
    pub public_key: String,
    /// Display name.
    pub display_name: Option<String>,
    /// Platform.
    pub platform: Option<String>,
    /// Device family.
    pub device_family: Option<String>,
    /// Client id.
    pub client_id: Option<String>,
    /// Client mode.
    pub client_mode: Option<String>,
    /// Approved roles.
    pub roles: Vec<String>,
    /// Approved scopes.
    pub scopes: Vec<String>,
    /// How it was approved (e.g. `operator`, `local`).
    pub approved_via: String,
    /// First seen (ms since the epoch).
    pub created_at_ms: i64,
    /// Approved (ms since the epoch).
    pub approved_at_ms: i64,
    /// Last connection (ms since the epoch).
    pub last_seen_at_ms: Option<i64>,
}

/// `device.pair.list` → `{pending, paired}`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct DevicePairListResult {
    /// Requests waiting for an operator, each exactly as `device.pair.requested` announced it
    /// (upstream: `pending: DevicePairRequested[]`, a closed object).
    pub pending: Vec<DevicePairRequested>,
    /// Paired devices.
    pub paired: Vec<PairedDeviceEntry>,
}

/// The decision on a pairing request (also the `decision` of `device.pair.resolved`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum PairDecision {
    /// Paired.
    Approved,
    /// Refused.
    Rejected,
}

/// `device.pair.approve` → the decision and the paired device.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct DevicePairApproveResult {
    /// The request approved.
    pub request_id: String,
    /// The device now paired.
    pub device_id: String,
    /// Always [`PairDecision::Approved`].
    pub decision: PairDecision,
    /// The paired device.
    pub device: PairedDeviceEntry,
}

/// `device.pair.reject` → the decision.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct DevicePairRejectResult {
    /// The request rejected.
    pub request_id: String,
    /// The device that asked.
    pub device_id: String,
    /// Always [`PairDecision::Rejected`].
    pub decision: PairDecision,
}

/// `device.pair.remove` → `{ok: true, deviceId, removed}`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct DevicePairRemoveResult {
    /// Always `true`.
    pub ok: bool,
    /// The device named.
    pub device_id: String,
    /// Whether it was paired.
    pub removed: bool,
}

/// How a rotated token reaches its owner (schema: `token` only with `tokenDelivery: "in-band"`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(tag = "tokenDelivery")]
pub enum TokenDelivery {
    /// The token is in the result: the caller is the device itself or an admin.
    #[serde(rename = "in-band")]
    InBand {
        /// The new device token.
        token: String,
    },
    /// The caller learns that the token was rotated, not the token.
    #[serde(rename = "withheld-cross-device")]
    WithheldCrossDevice,
}

/// `device.token.rotate` → the new token's facts (schema `DeviceTokenRotateResult`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct DeviceTokenRotateResult {
    /// The device.
    pub device_id: String,
    /// The token's role.
    pub role: String,
    /// The token's scopes.
    pub scopes: Vec<String>,
    /// When it was issued (ms since the epoch).
    pub rotated_at_ms: i64,
    /// `tokenDelivery`, and `token` when delivered in-band.
    #[serde(flatten)]
    pub delivery: TokenDelivery,
}

/// `device.token.revoke` → `{ok: true, deviceId, role, revoked}`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct DeviceTokenRevokeResult {
    /// Always `true`.
    pub ok: bool,
    /// The device.
    pub device_id: String,
    /// The token's role.
    pub role: String,
    /// Whether a live token was revoked.
    pub revoked: bool,
}
