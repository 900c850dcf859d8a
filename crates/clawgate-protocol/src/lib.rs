//! Wire types of the OpenClaw Gateway protocol 4, as clawgate speaks it.
//!
//! This crate owns the shapes that cross the WebSocket: frames, `connect` parameters, `hello-ok`,
//! error shapes, error and close codes, method and event names, scopes and roles, and the
//! static method → scope table. It does no I/O and knows nothing about sockets, storage or
//! configuration; every wire string is written once here and used everywhere else.
#![warn(missing_docs)]

pub mod close;
pub mod connect;
pub mod error;
pub mod events;
pub mod frames;
pub mod hello;
pub mod methods;
pub mod scopes;
mod validate;

pub use error::{ErrorShape, codes, details};
pub use frames::{EventFrame, FrameError, RequestFrame, ResponseFrame, parse_request_frame};

/// The protocol version clawgate speaks (and reports in `hello-ok.protocol`).
pub const PROTOCOL_VERSION: u32 = 4;
/// The lowest protocol version accepted from probe clients and node clients.
pub const MIN_PROBE_PROTOCOL: u32 = 3;
/// Largest frame accepted before `hello-ok` (bytes).
pub const MAX_PREAUTH_PAYLOAD_BYTES: usize = 65_536;
/// Largest frame accepted after `hello-ok` (bytes); advertised as `policy.maxPayload`.
pub const MAX_PAYLOAD_BYTES: usize = 26_214_400;
/// Outbound bytes a client may have queued before it is a slow consumer; `policy.maxBufferedBytes`.
pub const MAX_BUFFERED_BYTES: usize = 52_428_800;
/// Interval of the `tick` event (ms); `policy.tickIntervalMs`.
pub const TICK_INTERVAL_MS: u64 = 30_000;
/// Default time a client has to complete the handshake (ms).
pub const HANDSHAKE_TIMEOUT_MS: u64 = 15_000;
/// Allowed clock skew of a device signature (ms).
pub const DEVICE_SIGNATURE_SKEW_MS: i64 = 120_000;
/// How many frames may queue behind a `connect` that is still being processed.
pub const MAX_PENDING_HANDSHAKE_FRAMES: usize = 15;
/// Consecutive `unauthorized role` errors after which the connection is closed.
pub const MAX_UNAUTHORIZED_ROLE_CALLS: u32 = 10;
/// Idempotency entries older than this are pruned (ms).
pub const DEDUPE_TTL_MS: i64 = 300_000;
/// At most this many idempotency entries are kept.
pub const DEDUPE_MAX: usize = 1_000;
