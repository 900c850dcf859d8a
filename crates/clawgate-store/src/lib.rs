//! Durable storage for the clawgate gateway.
//!
//! This crate owns what must survive a restart of the gateway: settings, devices and their
//! tokens, chat sessions with their transcripts and runs, chat-channel state, and the ComfyUI
//! and cron work. It exposes them as capability traits that the rest of the gateway depends on,
//! and implements every one of them on SQLite ([`SqliteStore`], WAL mode, embedded
//! migrations) and on PostgreSQL ([`PgStore`], for several gateways sharing one state; its own
//! migrations beside SQLite's). [`AnyStore`] is either, as the config's `storage.url` chose. It must not make protocol or policy decisions — who may pair, which scopes a
//! role gets, when a request is auto-approved all belong to `clawgate-core` — and it must never
//! keep or log a device token in plain text, nor panic on what it reads back from disk (a row
//! it cannot understand is [`StoreError::Corrupt`]).
//!
//! # Capability traits
//!
//! Each trait is one thing a service may need from storage; a service asks for the few it uses.
//!
//! | Trait | For |
//! |---|---|
//! | [`KvStore`] | small named settings (the generated gateway token) |
//! | [`DeviceStore`] | paired devices, allowed to connect with their own key |
//! | [`PairingStore`] | device pairing requests waiting for (or resolved by) an operator |
//! | [`DeviceTokenStore`] | per-device bearer tokens, kept only as hashes |
//! | [`IdempotencyStore`] | request results replayed on a retried idempotency key |
//! | [`SessionStore`] | chat sessions: key → current transcript, label, meta |
//! | [`TranscriptStore`] | the append-only messages of a transcript, read in windows |
//! | [`RunStore`] | the durable per-session queue of agent runs |
//! | [`ChannelStore`] | chat-channel inbox, outbox and DM pairing requests |
//! | [`JobStore`] | the ComfyUI job queue and its delivery marks |
//! | [`ApprovalStore`] | operator approvals of actions that need a human's yes |
//! | [`CronStore`] | scheduled jobs, with one receipt per fired slot |
//! | [`UsageStore`] | per-turn token usage (recorded with each assistant entry) and its sums |
//! | [`AccessTokenStore`] | scoped access tokens for backends, kept only as hashes |
//! | [`ClusterStore`] | the gateways sharing one database, and the leases they hold |
//! | [`RateBucketStore`] | request-rate buckets shared by the gateways of one database |
//! | [`GatewayStore`] | all of the above: what the composition root opens |
//!
//! A service is generic over the traits it needs and owns a clone of the store
//! (`struct CronService<S: CronStore + JobStore> { store: S, .. }`); [`SqliteStore`] clones
//! share one pool, and every trait future is `Send`, so the service can hand store calls to
//! spawned tasks. Tests build the same service on [`SqliteStore::open_in_memory`]. Every
//! backend must pass the one conformance suite (`testing`, behind the `testing` feature), which
//! SQLite runs on in-memory and on file-backed stores, and PostgreSQL on a fresh database of a
//! real server.
//!
//! Records ([`JobRecord`], [`SessionRecord`], …) are plain data that decode themselves from a
//! row (`sqlx::FromRow`): JSON columns as `serde_json::Value` or JSON lists, stored enums as
//! text; a value that does not decode is [`StoreError::Corrupt`].
//!
//! Every timestamp is Unix epoch milliseconds supplied by the caller, so behaviour is
//! deterministic under test and one clock (core's) decides what "now" is.
//!
//! # Transcripts: appends, windows, compaction
//!
//! A transcript is the rows of one session id, numbered 1, 2, 3, … by the store. Each append
//! is one transaction, so after a crash every transcript is a prefix of what was appended:
//! contiguous seqs, no duplicates, no half-written entry. Core appends a turn's user message
//! when the run is accepted and the assistant message once, when the run ends (or is aborted,
//! with the partial text), so a crash mid-turn leaves the reply absent rather than torn.
//! Queueing a run and appending its user message, and appending its reply and finishing it,
//! are two transactions each: a crash in between leaves a queued run whose user message is
//! missing, or a run found interrupted whose reply is already stored. Recovery must accept
//! both (check [`TranscriptStore::find_by_run`] before appending again).
//! Transcripts are read in windows ([`TranscriptStore::tail`], paging backwards by seq) and
//! counted from a per-transcript head row, never loaded or scanned whole.
//!
//! Transcripts only grow until they are compacted. The policy is core's; the mechanism is
//! [`TranscriptStore::compact`]: when a session's current transcript exceeds the configured
//! cap of entries, core keeps the newest entries (the cap, or less to leave headroom) and the
//! older ones are deleted for good — there is no archive. Seq numbering carries on from where
//! it was, so client cursors stay valid and the first seq of a compacted transcript is
//! simply greater than 1. Transcripts left behind by [`SessionStore::reset_session`] are not
//! compacted; they go with [`SessionStore::delete_session`] when asked to delete transcripts.
//!
//! # Channels: inbox and outbox
//!
//! Every inbound platform message is recorded ([`ChannelStore::record_inbound`]) before
//! anything acts on it, unique on (channel, account, message id), so a redelivered update is
//! recognised and not processed twice — until the row is pruned: the prune age is the dedup
//! window. A reply's chunks are queued, each under its own idempotency key, in the same
//! transaction that marks the inbox row answered, so after a crash a message is either
//! answered with its whole reply queued or unanswered with none of it, and re-queueing the
//! same reply is a no-op. Unanswered rows ([`ChannelStore::pending_inbound`]) and accounts
//! with queued replies ([`ChannelStore::accounts_with_queued_outbound`]) are what a restart
//! picks up.
//!
//! Delivery is at least once, and there is exactly one window for a duplicate: the sender
//! hands an account's head of queue to the platform, then records it with
//! [`ChannelStore::mark_outbound_sent`], a single-row UPDATE. A crash after the platform
//! accepted the message and before that UPDATE committed leaves the row queued, and it is sent
//! again after the restart. The store cannot close that window (the platform is not part of
//! its transaction); it keeps it to one statement.
#![warn(missing_docs)]

// `stored_enum!` is used by the model modules declared after it.
#[macro_use]
mod stored_enum;

mod any;
pub mod copy;

mod error;
mod health;
mod model;
mod session;

mod access_token;
mod channel_model;
mod cluster_model;
mod comfy_model;
mod cron_model;
// Trait bodies both backends run as written, expanded by `sqlite/` and `postgres/`.
mod portable;
mod postgres;
mod rate_bucket;
mod sqlite;
mod token;
mod traits;
mod usage;

#[cfg(feature = "testing")]
pub mod testing;

pub use access_token::{ACCESS_TOKEN_PREFIX, AccessTokenRecord, AccessTokenStore, NewAccessToken};
pub use any::{AnyStore, StoreLocation};
pub use channel_model::{
    ChannelPairing, ChannelPairingStatus, InboxRecord, InboxStatus, NewOutbound, OutboxCounts, OutboxRecord,
    OutboxStatus,
};
pub use cluster_model::{GatewayRecord, LeaseRecord};
pub use comfy_model::{
    ApprovalRecord, ApprovalStatus, ExecPolicyRecord, JobQuery, JobRecord, JobStatus, NewApproval, NewJob,
};
pub use cron_model::{CronJob, CronRunRecord};
pub use error::{Fault, StoreError};
pub use health::{Degraded, StorageHealth};
pub use model::{
    DeviceTokenRecord, IdempotencyEntry, InsertOutcome, NewPairingRequest, PairedDevice, PairingDecision,
    PairingRequest, PairingStatus,
};
pub use postgres::PgStore;
pub use postgres::cluster_events::{
    CLUSTER_EVENTS_CHANNEL, CLUSTER_LISTENER_NAME, ClusterEvent, ClusterEventListener, Wake,
};
pub use rate_bucket::{BucketRate, RateTake};
pub use session::{
    EnqueueOutcome, EntryStatus, NewEntry, RunKind, RunRecord, RunStatus, SessionQuery, SessionRecord, StartedRun,
    TranscriptEntry, TranscriptRole,
};
pub use sqlite::{BackupError, SqliteStore, StateFileInfo};
pub use traits::ChannelStore;
pub use traits::ClusterStore;
pub use traits::LockoutStore;
pub use traits::RateBucketStore;
pub use traits::{ApprovalStore, CronStore, JobStore};
pub use traits::{DeviceStore, DeviceTokenStore, GatewayStore, IdempotencyStore, KvStore, PairingStore};
pub use traits::{RunStore, SessionStore, TranscriptStore};
pub use usage::{DayZone, TurnUsage, UsageGrouping, UsageQuery, UsageStore, UsageSum, UsageSums};

/// Result type of every store operation.
pub type Result<T, E = StoreError> = std::result::Result<T, E>;
