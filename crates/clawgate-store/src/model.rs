//! Records the store keeps. Plain data: no I/O, no policy.

/// A device whose public key an operator (or the silent local policy) approved.
#[derive(Debug, Clone, PartialEq, Eq, sqlx::FromRow)]
pub struct PairedDevice {
    /// Stable device id (derived from the public key by the client).
    pub device_id: String,
    /// The device's Ed25519 public key, as the client sent it; signatures are checked with it.
    pub public_key: String,
    /// Human-readable name shown in `devices list`.
    pub display_name: Option<String>,
    /// Platform pinned at approval; a different one later is a `metadata-upgrade`.
    pub platform: Option<String>,
    /// Device family pinned at approval; a different one later is a `metadata-upgrade`.
    pub device_family: Option<String>,
    /// `client.id` of the connection that was approved.
    pub client_id: Option<String>,
    /// `client.mode` of the connection that was approved.
    pub client_mode: Option<String>,
    /// Roles the device may connect as (`operator`, `node`).
    #[sqlx(json)]
    pub roles: Vec<String>,
    /// Scopes the device was approved for; asking for more is a `scope-upgrade`.
    #[sqlx(json)]
    pub scopes: Vec<String>,
    /// How the approval happened: `silent`, `cli` or `rpc`.
    pub approved_via: String,
    /// When the device was first paired.
    pub created_at_ms: i64,
    /// When the latest approval (first pairing or an upgrade) happened.
    pub approved_at_ms: i64,
    /// Last successful connect, if any.
    pub last_seen_at_ms: Option<i64>,
}

stored_enum! {
    /// Where a pairing request stands.
    PairingStatus ("pairing status") {
        /// Waiting for an operator.
        Pending => "pending",
        /// Approved; the device is paired.
        Approved => "approved",
        /// Rejected by an operator.
        Rejected => "rejected",
    }
}

/// An operator's answer to a pending pairing request.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum PairingDecision {
    /// Pair the device (see [`crate::PairingStore::approve_request`]).
    Approve,
    /// Refuse the request; the device stays unpaired.
    Reject,
}

/// What a connecting device asks for; input to
/// [`crate::PairingStore::create_or_refresh_request`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NewPairingRequest {
    /// Device id from the signed connect.
    pub device_id: String,
    /// The device's public key.
    pub public_key: String,
    /// Human-readable name, if the client sent one.
    pub display_name: Option<String>,
    /// Reported platform.
    pub platform: Option<String>,
    /// Reported device family.
    pub device_family: Option<String>,
    /// `client.id` of the connect.
    pub client_id: Option<String>,
    /// `client.mode` of the connect.
    pub client_mode: Option<String>,
    /// Role requested by the connect.
    pub role: String,
    /// Scopes requested by the connect.
    pub scopes: Vec<String>,
    /// Peer address, for the operator's benefit.
    pub remote_ip: Option<String>,
    /// Why pairing is needed: `not-paired`, `role-upgrade`, `scope-upgrade` or
    /// `metadata-upgrade`.
    pub reason: String,
}

/// A request to pair (or upgrade) a device, as stored.
#[derive(Debug, Clone, PartialEq, Eq, sqlx::FromRow)]
pub struct PairingRequest {
    /// Random UUID v4, reported to the client in `PAIRING_REQUIRED` details.
    pub request_id: String,
    /// Device id.
    pub device_id: String,
    /// The device's public key.
    pub public_key: String,
    /// Human-readable name.
    pub display_name: Option<String>,
    /// Reported platform.
    pub platform: Option<String>,
    /// Reported device family.
    pub device_family: Option<String>,
    /// `client.id` of the (latest) connect.
    pub client_id: Option<String>,
    /// `client.mode` of the (latest) connect.
    pub client_mode: Option<String>,
    /// Requested role.
    pub role: String,
    /// Requested scopes.
    #[sqlx(json)]
    pub scopes: Vec<String>,
    /// Peer address of the (latest) connect.
    pub remote_ip: Option<String>,
    /// `not-paired`, `role-upgrade`, `scope-upgrade` or `metadata-upgrade`.
    pub reason: String,
    /// Where the request stands.
    pub status: PairingStatus,
    /// When the request was first made.
    pub created_at_ms: i64,
    /// When a reconnect last refreshed it; expiry counts from here so a device that keeps
    /// trying keeps its request (and its request id) alive.
    pub updated_at_ms: i64,
    /// When it was approved or rejected.
    pub resolved_at_ms: Option<i64>,
    /// Who resolved it: `silent`, `cli` or `rpc` (copied to [`PairedDevice::approved_via`]).
    pub resolved_by: Option<String>,
}

/// A device token as stored; the token itself is never kept, only its SHA-256.
#[derive(Debug, Clone, PartialEq, Eq, sqlx::FromRow)]
pub struct DeviceTokenRecord {
    /// Device the token belongs to.
    pub device_id: String,
    /// Role the token was issued for (one live token per device and role).
    pub role: String,
    /// Scopes the token grants.
    #[sqlx(json)]
    pub scopes: Vec<String>,
    /// When it was issued (or last rotated).
    pub issued_at_ms: i64,
    /// When it was revoked; a revoked token never verifies.
    pub revoked_at_ms: Option<i64>,
}

/// A remembered outcome of an idempotent request.
#[derive(Debug, Clone, PartialEq, sqlx::FromRow)]
pub struct IdempotencyEntry {
    /// Scoped key, e.g. `chat.send:<client idempotency key>`.
    pub key: String,
    /// Caller-defined JSON: typically the response to replay for a duplicate.
    pub payload: serde_json::Value,
    /// Caller-defined state of the request, e.g. `started`, `ok`, `error`.
    pub status: String,
    /// When the key was first seen.
    pub created_at_ms: i64,
    /// When the entry last changed; pruning ages entries from here.
    pub updated_at_ms: i64,
}

/// Result of [`crate::IdempotencyStore::insert_if_absent`].
#[derive(Debug, Clone, PartialEq)]
pub enum InsertOutcome {
    /// The key was new; the caller owns the request and should run it.
    Inserted,
    /// The key was already there; the caller must not run the request again.
    Existing(IdempotencyEntry),
}
