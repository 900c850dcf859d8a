//! Rust client SDK for the OpenClaw Gateway protocol 4, as spoken by clawgate.
//!
//! It owns the client side of the wire: the Ed25519 device identity and its signature payloads,
//! the `connect.challenge` → `connect` → `hello-ok` handshake, request/response matching by id
//! (including methods such as `agent` that answer twice), and event fan-out with per-session
//! filtering and `seq` gap detection. It is what the `clawgate` CLI, the end-to-end tests and
//! backends that use clawgate as a service (DESIGN §7) build on. It must not know anything about
//! the gateway's internals: it speaks only through `clawgate-protocol` types, as any third-party
//! client would. Automatic reconnection is not implemented yet; a closed [`Client`] reports
//! [`ClientError::Closed`] and a caller reconnects with [`Client::connect`].
#![warn(missing_docs)]

mod client;
mod error;
pub mod identity;
mod options;

pub use client::{Client, event_session_key, is_final, response_payload};
pub use error::{ClientError, CloseInfo};
pub use identity::{DeviceIdentity, IdentityError, SignatureInput, SignatureVersion};
pub use options::{ClientOptions, DEFAULT_CLIENT_ID, DEFAULT_CLIENT_MODE, DEFAULT_URL, SignedAtSource};

pub use clawgate_protocol::hello::HelloOk;
pub use clawgate_protocol::{ErrorShape, EventFrame, ResponseFrame};
