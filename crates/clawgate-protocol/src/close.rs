//! WebSocket close codes and reasons the gateway sends (contract §5.3).

/// Normal close: handshake timeout, unparseable first frame.
pub const NORMAL: u16 = 1000;
/// Protocol version negotiation failed.
pub const PROTOCOL_ERROR: u16 = 1002;
/// A text frame that is not valid UTF-8 (RFC 6455 §7.4.1, "invalid frame payload data").
pub const INVALID_PAYLOAD: u16 = 1007;
/// Policy violation: bad handshake, failed auth, device problems, slow consumer, abuse guards.
pub const POLICY_VIOLATION: u16 = 1008;
/// A frame too large (before hello: the pre-auth cap).
pub const MESSAGE_TOO_BIG: u16 = 1009;
/// Server fault.
pub const INTERNAL_ERROR: u16 = 1011;
/// The gateway is shutting down or restarting.
pub const SERVICE_RESTART: u16 = 1012;
/// Try again later (starting, draining).
pub const TRY_AGAIN_LATER: u16 = 1013;
/// Credentials were rotated or revoked.
pub const CREDENTIALS_CHANGED: u16 = 4001;

/// Reason sent with [`MESSAGE_TOO_BIG`] for a frame over the protocol's payload limit.
pub const REASON_MESSAGE_TOO_BIG: &str = "message too big";
/// Reason sent with [`INVALID_PAYLOAD`].
pub const REASON_INVALID_UTF8: &str = "invalid utf-8 in text frame";
/// Reason sent with [`PROTOCOL_ERROR`] for a frame that breaks RFC 6455.
pub const REASON_BAD_FRAME: &str = "websocket protocol error";

/// Reason sent with [`PROTOCOL_ERROR`].
pub const REASON_PROTOCOL_MISMATCH: &str = "protocol mismatch";
/// Reason sent when the pre-auth cap is exceeded.
pub const REASON_PREAUTH_TOO_LARGE: &str = "preauth payload too large";
/// Reason sent when the outbound buffer overflows.
pub const REASON_SLOW_CONSUMER: &str = "slow consumer";
/// Reason sent on shutdown.
pub const REASON_SERVICE_RESTART: &str = "service restart";
/// Reason sent when too many frames arrive during the handshake.
pub const REASON_TOO_MANY_PENDING: &str = "too many pending handshake frames";
/// Reason sent after repeated wrong-role calls.
pub const REASON_REPEATED_UNAUTHORIZED: &str = "repeated unauthorized calls";
/// Reason sent when a role other than operator/node is requested.
pub const REASON_INVALID_ROLE: &str = "invalid role";
/// Reason sent when a device's pairing or token was revoked.
pub const REASON_DEVICE_REVOKED: &str = "client invalidated: device access revoked";
/// Reason sent to shared-secret clients when the secret changed.
pub const REASON_AUTH_CHANGED: &str = "gateway auth changed";

/// WebSocket close reasons are limited to 123 bytes; cut at a char boundary.
pub fn truncate_reason(reason: &str) -> String {
    const MAX: usize = 123;
    if reason.len() <= MAX {
        return reason.to_owned();
    }
    let mut end = MAX;
    while !reason.is_char_boundary(end) {
        end -= 1;
    }
    reason[..end].to_owned()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn long_reason_is_cut_to_123_bytes_on_char_boundary() {
        let s = "é".repeat(100);
        let cut = truncate_reason(&s);
        assert!(cut.len() <= 123);
        assert!(s.starts_with(&cut));
        assert_eq!(truncate_reason("short"), "short");
    }
}
