//! What can go wrong talking to a gateway, by what the caller can do about it.

use std::time::Duration;

use clawgate_protocol::ErrorShape;

use crate::identity::IdentityError;

/// How a connection ended: the WebSocket close code and reason, when the peer sent one.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CloseInfo {
    /// The close code (`None` when the socket dropped without a close frame).
    pub code: Option<u16>,
    /// The close reason (may be empty).
    pub reason: String,
}

impl std::fmt::Display for CloseInfo {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match (self.code, self.reason.is_empty()) {
            (Some(code), false) => write!(f, "{code} {}", self.reason),
            (Some(code), true) => write!(f, "{code}"),
            (None, false) => f.write_str(&self.reason),
            (None, true) => f.write_str("no close frame"),
        }
    }
}

/// An error from [`Client`](crate::Client).
#[derive(Debug, thiserror::Error)]
pub enum ClientError {
    /// The URL is not a `ws://` or `wss://` URL this client can open.
    #[error("invalid gateway url: {0}")]
    InvalidUrl(String),
    /// The TCP connection or the WebSocket upgrade failed (refused, unreachable, HTTP error).
    /// `kind()` of the source tells refused from the rest.
    #[error("cannot connect to gateway: {0}")]
    Connect(#[source] std::io::Error),
    /// The gateway refused the `connect` request. `error` is the gateway's error shape as sent,
    /// so `details.code` (`PAIRING_REQUIRED`, `AUTH_TOKEN_MISMATCH`, …) and
    /// `details.requestId` stay readable; the close code and reason follow when the gateway
    /// closed the socket within a short grace period.
    #[error("gateway refused connect: {} ({})", error.message, error.code)]
    Handshake {
        /// The `res.error` of the refused `connect` (boxed to keep `Result`s small).
        error: Box<ErrorShape>,
        /// The close code that followed (1008 for auth, device and pairing failures).
        close_code: Option<u16>,
        /// The close reason that followed.
        close_reason: Option<String>,
    },
    /// Something did not happen in time.
    #[error("timed out after {after:?} waiting for {waiting_for}")]
    Timeout {
        /// What was awaited (`connect.challenge`, `hello-ok`, `res of health`, …).
        waiting_for: String,
        /// How long we waited.
        after: Duration,
    },
    /// The connection is closed (by the gateway, by [`Client::close`](crate::Client::close), or
    /// because the socket dropped). After a `shutdown` event the code is 1012.
    #[error("connection closed ({})", CloseInfo { code: *code, reason: reason.clone() })]
    Closed {
        /// The close code, if the peer sent one.
        code: Option<u16>,
        /// The close reason (may be empty).
        reason: String,
    },
    /// The connection carrying this request died before its (final) response arrived: the
    /// gateway restarted, sent `shutdown`, fell silent, or the network dropped. The request may
    /// or may not have taken effect; it is never retried by the client (re-send it with the
    /// same idempotency key to be safe).
    #[error("connection lost while waiting for {method} ({})", CloseInfo { code: *code, reason: reason.clone() })]
    ConnectionLost {
        /// The method that was waiting.
        method: String,
        /// The close code, if the peer sent one.
        code: Option<u16>,
        /// The close reason (may be empty).
        reason: String,
    },
    /// The client is reconnecting and did not get a connection back within the policy's
    /// [`request_wait`](crate::ReconnectPolicy::request_wait): show "assistant unavailable" and
    /// try again later.
    #[error("gateway unavailable for {method}: reconnecting (attempt {attempt})")]
    Unavailable {
        /// The method that could not be sent.
        method: String,
        /// The reconnect attempt in progress when the wait ended.
        attempt: u32,
    },
    /// A per-session stream fell behind and `skipped` of its events were dropped (the stream
    /// stays bounded instead of growing); refetch `chat.history` to catch up.
    #[error("session event stream fell behind; {skipped} events dropped")]
    Lagged {
        /// How many events were dropped.
        skipped: u64,
    },
    /// The gateway answered a request with `ok:false` (boxed to keep `Result`s small).
    #[error("{} ({})", .0.message, .0.code)]
    Rpc(Box<ErrorShape>),
    /// The gateway sent something that is not protocol 4 as this client understands it.
    #[error("protocol error: {0}")]
    Protocol(String),
    /// The device identity file could not be loaded or created.
    #[error(transparent)]
    Identity(#[from] IdentityError),
}

impl ClientError {
    /// The gateway's error shape, for [`ClientError::Handshake`] and [`ClientError::Rpc`].
    pub fn error_shape(&self) -> Option<&ErrorShape> {
        match self {
            ClientError::Handshake { error, .. } | ClientError::Rpc(error) => Some(error.as_ref()),
            _ => None,
        }
    }

    /// `details.code` of the gateway's error shape (`PAIRING_REQUIRED`, `MISSING_SCOPE`, …).
    pub fn detail_code(&self) -> Option<&str> {
        self.error_shape()?.detail_code()
    }

    pub(crate) fn closed(info: &CloseInfo) -> Self {
        ClientError::Closed { code: info.code, reason: info.reason.clone() }
    }

    pub(crate) fn lost(method: &str, info: &CloseInfo) -> Self {
        ClientError::ConnectionLost { method: method.to_owned(), code: info.code, reason: info.reason.clone() }
    }

    /// Whether the gateway may simply not be reachable right now (connection lost, reconnecting,
    /// timed out, refused, `UNAVAILABLE`), as opposed to a request it will never accept: what a
    /// backend shows as "assistant unavailable, try again".
    pub fn is_transient(&self) -> bool {
        match self {
            ClientError::ConnectionLost { .. }
            | ClientError::Unavailable { .. }
            | ClientError::Timeout { .. }
            | ClientError::Connect(_) => true,
            ClientError::Rpc(e) => e.code == "UNAVAILABLE" || e.retryable == Some(true),
            _ => false,
        }
    }
}
