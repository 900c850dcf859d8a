//! Rust client SDK for the OpenClaw Gateway protocol 4, as spoken by clawgate.
//!
//! It owns the client side of the wire: the Ed25519 device identity and its signature payloads,
//! the `connect.challenge` → `connect` → `hello-ok` handshake, request/response matching by id
//! (including methods such as `agent` that answer twice), reconnecting with backoff (after a
//! restart, a `shutdown` event, a silent gateway or a dropped network) with subscriptions
//! replayed, per-session event streams, typed `agent` / `chat.*` calls, and a pool of
//! connections with sessions pinned by key. It is what the `clawgate` CLI, the end-to-end tests
//! and backends that use clawgate as a service (DESIGN §7) build on. It must not know anything
//! about the gateway's internals: it speaks only through `clawgate-protocol` types, as any
//! third-party client would.
//!
//! ```
//! use clawgate_client::{ClientOptions, ReconnectPolicy};
//! // What a web app's backend uses: reconnect forever, requests wait up to 5 s for a connection.
//! let opts = ClientOptions::new("ws://127.0.0.1:18789")
//!     .token("gateway-token")
//!     .scopes(["operator.read", "operator.write"])
//!     .reconnect(ReconnectPolicy::default().request_wait(std::time::Duration::from_secs(5)));
//! assert_eq!(opts.client_id_ref(), "gateway-client");
//! ```
#![warn(missing_docs)]

mod client;
mod conn;
mod error;
mod hub;
pub mod identity;
mod options;
mod pool;
mod session;

pub use client::{Client, ConnectionState};
pub use conn::{event_session_key, is_final, response_payload};
pub use error::{ClientError, CloseInfo};
pub use identity::{DeviceIdentity, IdentityError, SignatureInput, SignatureVersion};
pub use options::{
    ClientOptions, DEFAULT_CLIENT_ID, DEFAULT_CLIENT_MODE, DEFAULT_URL, ReconnectPolicy, SignedAtSource,
};
pub use pool::ClientPool;
pub use session::{
    AgentEvent, AgentRequest, AgentRun, ChatEvent, ChatState, SessionEvent, SessionEvents, SessionHandle,
};

pub use clawgate_protocol::hello::HelloOk;
pub use clawgate_protocol::methods::agent::{AgentAccepted, AgentParams, AgentResult};
pub use clawgate_protocol::methods::chat::{
    ChatAbortResult, ChatHistoryResult, ChatInjectResult, ChatSendParams, ChatSendResult, ChatSendStatus,
};
pub use clawgate_protocol::{ErrorShape, EventFrame, ResponseFrame};
