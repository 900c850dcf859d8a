//! Payloads of the device-pairing events (schema `DevicePairRequestedEvent`,
//! `DevicePairResolvedEvent`; contract §7.3).
//!
//! `DevicePairRequested` is also the shape upstream lists in `device.pair.list`'s `pending`
//! (contract §5: `{pending: DevicePairRequested[], paired}`).

use serde::Serialize;

pub use crate::methods::devices::PairDecision;

/// `device.pair.requested`: a device asks to be paired (or to widen its pairing). The schema
/// closes the object and wants every optional string non-empty: build it with
/// [`DevicePairRequested::non_empty`] for those.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct DevicePairRequested {
    /// Request id.
    pub request_id: String,
    /// The device asking.
    pub device_id: String,
    /// Its public key.
    pub public_key: String,
    /// Display name, when the device sent one.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub display_name: Option<String>,
    /// Platform, when known.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub platform: Option<String>,
    /// Device family, when known.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub device_family: Option<String>,
    /// Client id, when known.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub client_id: Option<String>,
    /// Client mode, when known.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub client_mode: Option<String>,
    /// The role it asks for.
    pub role: String,
    /// Every role it asks for (clawgate asks for one at a time).
    pub roles: Vec<String>,
    /// The scopes it asks for.
    pub scopes: Vec<String>,
    /// Remote address, when known.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub remote_ip: Option<String>,
    /// Approved on the spot (local connect with valid credentials).
    pub silent: bool,
    /// An already paired device asking for more (role, scopes, changed identity).
    pub is_repair: bool,
    /// Last update of the request (ms since the epoch).
    pub ts: i64,
}

impl DevicePairRequested {
    /// An optional string as the schema allows it: absent rather than empty.
    pub fn non_empty(v: Option<&str>) -> Option<String> {
        v.filter(|s| !s.is_empty()).map(str::to_owned)
    }
}

/// `device.pair.resolved`: a pairing request was decided.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct DevicePairResolved {
    /// Request id.
    pub request_id: String,
    /// The device it was for.
    pub device_id: String,
    /// The decision.
    pub decision: PairDecision,
    /// When it was decided (ms since the epoch).
    pub ts: i64,
}
