//! Durable storage for the clawgate gateway.
//!
//! This crate owns what must survive a restart of the gateway's foundation: small settings
//! (the generated gateway token), paired devices, pairing requests, device tokens and
//! idempotency entries. It exposes them as capability traits ([`KvStore`], [`DeviceStore`],
//! [`PairingStore`], [`DeviceTokenStore`], [`IdempotencyStore`]) that the rest of the
//! gateway depends on, and implements them on SQLite ([`SqliteStore`], WAL mode, embedded
//! migrations). It must not make protocol or policy decisions — who may pair, which scopes a
//! role gets, when a request is auto-approved all belong to `clawgate-core` — and it must never
//! keep or log a device token in plain text, nor panic on what it reads back from disk.
//!
//! Every timestamp is Unix epoch milliseconds supplied by the caller, so behaviour is
//! deterministic under test and one clock (core's) decides what "now" is.
#![warn(missing_docs)]

mod error;
mod model;
mod sqlite;
mod token;
mod traits;

#[cfg(feature = "testing")]
pub mod testing;

pub use error::StoreError;
pub use model::{
    DeviceTokenRecord, IdempotencyEntry, InsertOutcome, NewPairingRequest, PairedDevice, PairingDecision,
    PairingRequest, PairingStatus,
};
pub use sqlite::SqliteStore;
pub use traits::{DeviceStore, DeviceTokenStore, GatewayStore, IdempotencyStore, KvStore, PairingStore};

/// Result type of every store operation.
pub type Result<T, E = StoreError> = std::result::Result<T, E>;
