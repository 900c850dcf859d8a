//! Records of chat-channel state: inbound messages, queued replies and DM pairing requests.
//! Plain data: no I/O, no policy.

use serde_json::Value;

stored_enum! {
    /// How far the gateway got with an inbound message.
    InboxStatus ("inbox status") {
        /// Recorded, not yet acted on.
        Received => "received",
        /// Handed to a run (`run_id`, `session_key` say which); the reply is not queued yet.
        Routed => "routed",
        /// Its reply is in the outbox (queued in the same transaction as this status).
        Answered => "answered",
        /// Deliberately not answered (`reason` says why: not allowed, rate limited, …).
        Dropped => "dropped",
    }
}

stored_enum! {
    /// Where a queued reply stands.
    OutboxStatus ("outbox status") {
        /// Waiting to be sent (possibly after a failed attempt, see `next_attempt_at_ms`).
        Queued => "queued",
        /// The platform accepted it.
        Sent => "sent",
        /// Given up on.
        Failed => "failed",
    }
}

stored_enum! {
    /// Where a DM sender's pairing stands.
    ChannelPairingStatus ("channel pairing status") {
        /// Waiting for an operator to approve the code.
        Pending => "pending",
        /// The sender may talk to the agent.
        Approved => "approved",
        /// An operator refused the request.
        Rejected => "rejected",
    }
}

/// An inbound platform message as recorded in the inbox.
#[derive(Debug, Clone, PartialEq, Eq, sqlx::FromRow)]
pub struct InboxRecord {
    /// Store-assigned, ascending in arrival order and never reused.
    pub id: i64,
    /// Channel kind (`telegram`, `discord`, …).
    pub channel: String,
    /// Which configured account of the channel received it.
    pub account: String,
    /// The platform's id of the message (unique per channel and account): the dedup key.
    pub message_id: String,
    /// Where it was posted, so a reply can go back there.
    pub chat_id: String,
    /// Who sent it (platform user id).
    pub sender_id: String,
    /// The normalised message. Opaque to the store.
    pub message: Value,
    /// How far the gateway got with it.
    pub status: InboxStatus,
    /// Why it was dropped (or another note on its last transition).
    pub reason: Option<String>,
    /// The run it was handed to.
    pub run_id: Option<String>,
    /// The session that run belongs to.
    pub session_key: Option<String>,
    /// When it was recorded.
    pub received_at_ms: i64,
    /// Last status change.
    pub updated_at_ms: i64,
}

/// A reply (or one chunk of one) to queue for delivery.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NewOutbound {
    /// Unique per reply chunk; queueing the same key again does nothing, so a retried
    /// "queue the reply" step cannot send twice.
    pub idempotency_key: String,
    /// Channel kind to send through.
    pub channel: String,
    /// Account to send from.
    pub account: String,
    /// Chat to send to.
    pub chat_id: String,
    /// What to send (text, reply-to, …). Opaque to the store.
    pub payload: Value,
}

/// A queued (or delivered, or abandoned) reply.
#[derive(Debug, Clone, PartialEq, Eq, sqlx::FromRow)]
pub struct OutboxRecord {
    /// Store-assigned; an account's rows are delivered in id order.
    pub id: i64,
    /// The key it was queued under.
    pub idempotency_key: String,
    /// Channel kind to send through.
    pub channel: String,
    /// Account to send from.
    pub account: String,
    /// Chat to send to.
    pub chat_id: String,
    /// What to send.
    pub payload: Value,
    /// Where it stands.
    pub status: OutboxStatus,
    /// Failed delivery attempts so far.
    pub attempts: i64,
    /// Not to be tried before this (the queue time until a retry is scheduled).
    pub next_attempt_at_ms: i64,
    /// What went wrong on the last failed attempt.
    pub last_error: Option<String>,
    /// The platform's id of the sent message.
    pub platform_message_id: Option<String>,
    /// The inbox row it answers, if it is a reply.
    pub inbox_id: Option<i64>,
    /// When it was queued.
    pub created_at_ms: i64,
    /// Last change.
    pub updated_at_ms: i64,
}

/// A DM sender's pairing: a pending request with its code, or the operator's decision.
#[derive(Debug, Clone, PartialEq, Eq, sqlx::FromRow)]
pub struct ChannelPairing {
    /// Channel kind.
    pub channel: String,
    /// Account the sender wrote to.
    pub account: String,
    /// The sender's platform user id.
    pub sender_id: String,
    /// Display name, for the operator.
    pub sender_name: Option<String>,
    /// The DM chat, so the sender can be told the outcome.
    pub chat_id: String,
    /// The code the operator approves with (matched case-insensitively).
    pub code: String,
    /// Where it stands.
    pub status: ChannelPairingStatus,
    /// When the current request was made.
    pub created_at_ms: i64,
    /// A pending request is void from this moment on.
    pub expires_at_ms: i64,
    /// When it was approved or rejected.
    pub resolved_at_ms: Option<i64>,
}

/// How many outbox rows of one account are in each state.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct OutboxCounts {
    /// Waiting to be sent.
    pub queued: u64,
    /// Given up on.
    pub failed: u64,
    /// Delivered (and not yet pruned).
    pub sent: u64,
}
