//! [`AnyStore`]: the store the gateway opens from its config — SQLite or PostgreSQL — as one
//! type, so the services (generic over the capability traits, or naming core's `Store`) run on
//! either without knowing which.
//!
//! Every trait method delegates to the backend it holds; [`delegate!`] writes those
//! forwarding methods from each trait's signatures.

use std::collections::BTreeMap;
use std::path::Path;

use sqlx::migrate::Migrator;

use crate::usage::{TurnUsage, UsageQuery, UsageStore, UsageSums};
use crate::{AccessTokenRecord, AccessTokenStore, LockoutStore, NewAccessToken};
use crate::{
    ApprovalRecord, ApprovalStatus, ApprovalStore, BackupError, ChannelPairing, ChannelPairingStatus, ChannelStore,
    CronJob, CronRunRecord, CronStore, Degraded, DeviceStore, DeviceTokenRecord, DeviceTokenStore, EnqueueOutcome,
    EntryStatus, ExecPolicyRecord, IdempotencyEntry, IdempotencyStore, InboxRecord, InboxStatus, InsertOutcome,
    JobQuery, JobRecord, JobStatus, JobStore, KvStore, NewApproval, NewEntry, NewJob, NewOutbound, NewPairingRequest,
    OutboxCounts, OutboxRecord, OutboxStatus, PairedDevice, PairingDecision, PairingRequest, PairingStore, PgStore,
    Result, RunKind, RunRecord, RunStatus, RunStore, SessionQuery, SessionRecord, SessionStore, SqliteStore,
    StartedRun, StoreError, TranscriptEntry, TranscriptRole, TranscriptStore,
};
use crate::{BucketRate, RateBucketStore, RateTake};
use crate::{ClusterStore, GatewayRecord, LeaseRecord};

/// A store on either backend. Cloning is cheap (each backend's clones share one pool).
#[derive(Debug, Clone)]
pub enum AnyStore {
    /// The embedded SQLite file (the default).
    Sqlite(SqliteStore),
    /// A PostgreSQL database, possibly shared by several gateways.
    Postgres(PgStore),
}

impl AnyStore {
    /// Opens the SQLite database at `path` (see [`SqliteStore::open`]).
    pub async fn open_sqlite(path: &Path) -> Result<AnyStore> {
        Ok(AnyStore::Sqlite(SqliteStore::open(path).await?))
    }

    /// Connects to the PostgreSQL database at `url` and migrates it (see [`PgStore::open`]).
    pub async fn open_postgres(url: &str) -> Result<AnyStore> {
        Ok(AnyStore::Postgres(PgStore::open(url).await?))
    }

    /// A private, empty in-memory SQLite database (for tests).
    pub async fn open_in_memory() -> Result<AnyStore> {
        Ok(AnyStore::Sqlite(SqliteStore::open_in_memory().await?))
    }

    /// `"sqlite"` or `"postgres"`, for logs and status.
    pub fn backend(&self) -> &'static str {
        match self {
            AnyStore::Sqlite(_) => "sqlite",
            AnyStore::Postgres(_) => "postgres",
        }
    }

    /// The PostgreSQL store, when that is the backend: what only a shared database offers (the
    /// event relay between gateways) is reached through it.
    pub fn postgres(&self) -> Option<&PgStore> {
        match self {
            AnyStore::Sqlite(_) => None,
            AnyStore::Postgres(s) => Some(s),
        }
    }

    /// `Some(why)` while the storage is degraded (a write failed for a storage reason and none
    /// has succeeded since).
    pub fn degraded(&self) -> Option<Degraded> {
        match self {
            AnyStore::Sqlite(s) => s.degraded(),
            AnyStore::Postgres(s) => s.degraded(),
        }
    }

    /// Shuts the store down cleanly (see [`SqliteStore::close`], [`PgStore::close`]).
    pub async fn close(self) -> Result<()> {
        match self {
            AnyStore::Sqlite(s) => s.close().await,
            AnyStore::Postgres(s) => s.close().await,
        }
    }
}

/// Where a store lives, as the config (`storage.url`) or the command line names it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum StoreLocation<'a> {
    /// A SQLite file.
    Sqlite(&'a Path),
    /// A PostgreSQL URL (it may hold a password: never print it).
    Postgres(&'a str),
}

/// The SQLite schema, for reporting what `migrate_at` applied (the store embeds the same files).
static SQLITE_MIGRATIONS: Migrator = sqlx::migrate!("./migrations");

impl AnyStore {
    /// Opens (and migrates) the store at `location`.
    pub async fn open_at(location: StoreLocation<'_>) -> Result<AnyStore> {
        match location {
            StoreLocation::Sqlite(path) => AnyStore::open_sqlite(path).await,
            StoreLocation::Postgres(url) => AnyStore::open_postgres(url).await,
        }
    }

    /// Brings the schema at `location` up to date (creating a SQLite file if there is none) and
    /// returns `(version, description)` of each migration applied now, oldest first; empty when
    /// it was up to date. A schema newer than this clawgate's is refused, as by `open`.
    pub async fn migrate_at(location: StoreLocation<'_>) -> Result<Vec<(i64, String)>> {
        match location {
            StoreLocation::Postgres(url) => {
                let store = PgStore::connect(url).await?;
                let applied = store.migrate().await;
                store.close().await?;
                applied
            }
            StoreLocation::Sqlite(path) => {
                let before = if tokio::fs::try_exists(path).await? {
                    match SqliteStore::inspect_state_file(path).await {
                        Ok(info) => info.schema_version,
                        Err(BackupError::Store(e)) => return Err(e),
                        Err(other) => return Err(StoreError::Conflict(other.to_string())),
                    }
                } else {
                    0
                };
                SqliteStore::open(path).await?.close().await?;
                Ok(SQLITE_MIGRATIONS
                    .iter()
                    .filter(|m| m.version > before)
                    .map(|m| (m.version, m.description.to_string()))
                    .collect())
            }
        }
    }
}

impl From<SqliteStore> for AnyStore {
    fn from(store: SqliteStore) -> Self {
        AnyStore::Sqlite(store)
    }
}

impl From<PgStore> for AnyStore {
    fn from(store: PgStore) -> Self {
        AnyStore::Postgres(store)
    }
}

/// `impl $trait for AnyStore`, each listed method forwarding its arguments to the backend.
macro_rules! delegate {
    ($trait:ident { $( fn $name:ident (&self $(, $arg:ident : $ty:ty)* $(,)?) -> $ret:ty; )* } $($extra:item)*) => {
        impl $trait for AnyStore {
            $($extra)*
            $(
                #[allow(clippy::too_many_arguments)]
                async fn $name(&self $(, $arg: $ty)*) -> $ret {
                    match self {
                        AnyStore::Sqlite(s) => <SqliteStore as $trait>::$name(s $(, $arg)*).await,
                        AnyStore::Postgres(s) => <PgStore as $trait>::$name(s $(, $arg)*).await,
                    }
                }
            )*
        }
    };
}

delegate! { KvStore {
    fn get(&self, key: &str) -> Result<Option<String>>;
    fn set(&self, key: &str, value: &str) -> Result<()>;
    fn get_or_init(&self, key: &str, init: impl FnOnce() -> String + Send) -> Result<String>;
    fn delete_prefix(&self, prefix: &str) -> Result<u64>;
} }

delegate! { DeviceStore {
    fn upsert_paired(&self, device: &PairedDevice) -> Result<()>;
    fn get_paired(&self, device_id: &str) -> Result<Option<PairedDevice>>;
    fn list_paired(&self) -> Result<Vec<PairedDevice>>;
    fn remove_paired(&self, device_id: &str) -> Result<bool>;
    fn touch_last_seen(&self, device_id: &str, at_ms: i64) -> Result<bool>;
} }

delegate! { PairingStore {
    fn create_or_refresh_request(&self, new: &NewPairingRequest, now_ms: i64) -> Result<PairingRequest>;
    fn get_request(&self, request_id: &str) -> Result<Option<PairingRequest>>;
    fn list_pending(&self) -> Result<Vec<PairingRequest>>;
    fn resolve_request(&self, request_id: &str, decision: PairingDecision, resolved_by: &str, now_ms: i64) -> Result<PairingRequest>;
    fn approve_request(&self, request_id: &str, resolved_by: &str, now_ms: i64) -> Result<PairedDevice>;
    fn expire_pending(&self, older_than_ms: i64) -> Result<u64>;
} }

delegate! { DeviceTokenStore {
    fn issue(&self, device_id: &str, role: &str, scopes: &[String], now_ms: i64) -> Result<(String, DeviceTokenRecord)>;
    fn verify(&self, device_id: &str, plain_token: &str) -> Result<Option<DeviceTokenRecord>>;
    fn revoke(&self, device_id: &str, role: &str, now_ms: i64) -> Result<bool>;
    fn list_for_device(&self, device_id: &str) -> Result<Vec<DeviceTokenRecord>>;
} }

delegate! { IdempotencyStore {
    fn get(&self, scope_key: &str) -> Result<Option<IdempotencyEntry>>;
    fn insert_if_absent(&self, scope_key: &str, status: &str, payload: &serde_json::Value, now_ms: i64) -> Result<InsertOutcome>;
    fn update(&self, scope_key: &str, status: &str, payload: &serde_json::Value, now_ms: i64) -> Result<()>;
    fn prune(&self, older_than_ms: i64, keep_max: usize) -> Result<u64>;
} }

delegate! { SessionStore {
    fn ensure_session(&self, key: &str, agent_id: &str, now_ms: i64) -> Result<SessionRecord>;
    fn get_session(&self, key: &str) -> Result<Option<SessionRecord>>;
    fn list_sessions(&self, query: &SessionQuery) -> Result<Vec<SessionRecord>>;
    fn patch_session(&self, key: &str, patch: &serde_json::Value, now_ms: i64) -> Result<SessionRecord>;
    fn reset_session(&self, key: &str, now_ms: i64) -> Result<SessionRecord>;
    fn delete_session(&self, key: &str, delete_transcript: bool) -> Result<bool>;
    fn count_sessions(&self) -> Result<u64>;
} }

delegate! { TranscriptStore {
    fn append(&self, session_id: &str, role: TranscriptRole, content: &serde_json::Value, run_id: Option<&str>, status: EntryStatus, now_ms: i64) -> Result<TranscriptEntry>;
    fn tail(&self, session_id: &str, limit: usize, before_seq: Option<i64>) -> Result<Vec<TranscriptEntry>>;
    fn get_entry(&self, session_id: &str, seq: i64) -> Result<Option<TranscriptEntry>>;
    fn count_entries(&self, session_id: &str) -> Result<u64>;
    fn compact(&self, session_id: &str, keep_last: usize) -> Result<u64>;
    fn find_by_run(&self, run_id: &str) -> Result<Vec<TranscriptEntry>>;
} }

delegate! { RunStore {
    fn enqueue(&self, run_id: &str, session_key: &str, kind: RunKind, request: &serde_json::Value, now_ms: i64) -> Result<EnqueueOutcome>;
    fn claim_next(&self, session_key: &str, now_ms: i64) -> Result<Option<RunRecord>>;
    fn finish(&self, run_id: &str, status: RunStatus, result: Option<&serde_json::Value>, now_ms: i64) -> Result<RunRecord>;
    fn get_run(&self, run_id: &str) -> Result<Option<RunRecord>>;
    fn list_queued_sessions(&self) -> Result<Vec<String>>;
    fn list_queued_runs(&self) -> Result<Vec<(String, String)>>;
    fn mark_interrupted_running(&self, now_ms: i64, alive_since_ms: i64) -> Result<u64>;
    fn prune_finished(&self, older_than_ms: i64) -> Result<u64>;
}
    async fn start_next<T, F>(&self, session_key: &str, owner: &str, now_ms: i64, prepare: F) -> Result<Option<StartedRun<T>>>
    where
        T: Send,
        F: FnOnce(&mut RunRecord, Option<&SessionRecord>) -> (T, Option<NewEntry>) + Send,
    {
        match self {
            AnyStore::Sqlite(s) => s.start_next(session_key, owner, now_ms, prepare).await,
            AnyStore::Postgres(s) => s.start_next(session_key, owner, now_ms, prepare).await,
        }
    }
}

delegate! { ChannelStore {
    fn record_inbound(&self, channel: &str, account: &str, message_id: &str, chat_id: &str, sender_id: &str, message: &serde_json::Value, now_ms: i64) -> Result<Option<i64>>;
    fn get_inbound(&self, id: i64) -> Result<Option<InboxRecord>>;
    fn set_inbound_status(&self, id: i64, status: InboxStatus, reason: Option<&str>, run_id: Option<&str>, session_key: Option<&str>, now_ms: i64) -> Result<()>;
    fn pending_inbound(&self, limit: u32) -> Result<Vec<InboxRecord>>;
    fn queue_outbound(&self, items: &[NewOutbound], answers: Option<i64>, now_ms: i64) -> Result<u64>;
    fn next_outbound(&self, channel: &str, account: &str) -> Result<Option<OutboxRecord>>;
    fn list_outbound(&self, channel: &str, account: &str, status: Option<OutboxStatus>, limit: u32) -> Result<Vec<OutboxRecord>>;
    fn outbound_by_key(&self, idempotency_key: &str) -> Result<Option<OutboxRecord>>;
    fn mark_outbound_sent(&self, id: i64, platform_message_id: &str, now_ms: i64) -> Result<()>;
    fn mark_outbound_retry(&self, id: i64, next_attempt_at_ms: i64, error: &str, now_ms: i64) -> Result<()>;
    fn mark_outbound_failed(&self, id: i64, error: &str, now_ms: i64) -> Result<()>;
    fn outbox_counts(&self, channel: &str, account: &str) -> Result<OutboxCounts>;
    fn accounts_with_queued_outbound(&self) -> Result<Vec<(String, String)>>;
    fn prune_channel_rows(&self, older_than_ms: i64) -> Result<u64>;
    fn request_channel_pairing(&self, channel: &str, account: &str, sender_id: &str, sender_name: Option<&str>, chat_id: &str, code: &str, now_ms: i64, expires_at_ms: i64) -> Result<ChannelPairing>;
    fn resolve_channel_pairing(&self, code: &str, channel: Option<&str>, approve: bool, now_ms: i64) -> Result<Option<ChannelPairing>>;
    fn is_channel_sender_paired(&self, channel: &str, account: &str, sender_id: &str) -> Result<bool>;
    fn list_channel_pairings(&self, status: Option<ChannelPairingStatus>, now_ms: i64) -> Result<Vec<ChannelPairing>>;
    fn remove_channel_pairing(&self, channel: &str, account: &str, sender_id: &str) -> Result<bool>;
} }

delegate! { JobStore {
    fn insert_job(&self, job: &NewJob, now_ms: i64) -> Result<JobRecord>;
    fn adopt_job(&self, job: &NewJob, worker: &str, prompt_id: &str, now_ms: i64) -> Result<JobRecord>;
    fn get_job(&self, id: &str) -> Result<Option<JobRecord>>;
    fn list_jobs(&self, query: &JobQuery) -> Result<Vec<JobRecord>>;
    fn queue_position(&self, id: &str) -> Result<Option<(u64, u64)>>;
    fn claim_next_queued(&self, worker: &str, now_ms: i64) -> Result<Option<JobRecord>>;
    fn set_job_running(&self, id: &str, prompt_id: &str, now_ms: i64) -> Result<JobRecord>;
    fn set_job_progress(&self, id: &str, progress: &serde_json::Value, now_ms: i64) -> Result<JobRecord>;
    fn complete_job(&self, id: &str, outputs: &serde_json::Value, now_ms: i64) -> Result<JobRecord>;
    fn fail_job(&self, id: &str, error: &str, now_ms: i64) -> Result<JobRecord>;
    fn cancel_job(&self, id: &str, now_ms: i64) -> Result<Option<JobRecord>>;
    fn requeue_job(&self, id: &str, error: &str, now_ms: i64) -> Result<JobStatus>;
    fn release_approval(&self, id: &str, approved: bool, now_ms: i64) -> Result<JobRecord>;
    fn jobs_on_worker(&self, worker: &str) -> Result<Vec<JobRecord>>;
    fn active_jobs(&self) -> Result<Vec<JobRecord>>;
    fn count_by_status(&self) -> Result<BTreeMap<String, u64>>;
    fn mark_output_delivered(&self, job_id: &str, filename: &str, now_ms: i64) -> Result<bool>;
    fn delivered_outputs(&self, job_id: &str) -> Result<Vec<String>>;
    fn prune_finished_jobs(&self, older_than_ms: i64) -> Result<u64>;
} }

delegate! { ApprovalStore {
    fn create_approval(&self, approval: &NewApproval, now_ms: i64) -> Result<ApprovalRecord>;
    fn get_approval(&self, id: &str, now_ms: i64) -> Result<Option<ApprovalRecord>>;
    fn list_approvals(&self, status: Option<ApprovalStatus>, now_ms: i64) -> Result<Vec<ApprovalRecord>>;
    fn decide_approval(&self, id: &str, approve: bool, decided_by: &str, reason: Option<&str>, now_ms: i64) -> Result<Option<ApprovalRecord>>;
    fn expire_approvals(&self, now_ms: i64) -> Result<u64>;
    fn resolve_approval(&self, id: &str, decision: &str, decided_by: &str, reason: Option<&str>, now_ms: i64) -> Result<Option<ApprovalRecord>>;
    fn exec_policy(&self) -> Result<Option<ExecPolicyRecord>>;
    fn swap_exec_policy(&self, base_hash: Option<&str>, file: &serde_json::Value, hash: &str, now_ms: i64) -> Result<bool>;
    fn exec_node_policy(&self, node_id: &str) -> Result<Option<ExecPolicyRecord>>;
    fn swap_exec_node_policy(&self, node_id: &str, base_hash: Option<&str>, file: &serde_json::Value, hash: &str, now_ms: i64) -> Result<bool>;
} }

delegate! { CronStore {
    fn upsert_cron_job(&self, job: &CronJob) -> Result<()>;
    fn get_cron_job(&self, id: &str) -> Result<Option<CronJob>>;
    fn list_cron_jobs(&self, include_disabled: bool) -> Result<Vec<CronJob>>;
    fn remove_cron_job(&self, id: &str) -> Result<bool>;
    fn set_cron_enabled(&self, id: &str, enabled: bool, now_ms: i64) -> Result<bool>;
    fn set_cron_next_run(&self, id: &str, next_run_at_ms: Option<i64>, now_ms: i64) -> Result<bool>;
    fn claim_cron_slot(&self, job_id: &str, slot_ms: i64, run_id: &str, now_ms: i64) -> Result<bool>;
    fn finish_cron_run(&self, job_id: &str, slot_ms: i64, status: &str, summary: Option<&str>, error: Option<&str>, now_ms: i64) -> Result<()>;
    fn list_cron_runs(&self, job_id: Option<&str>, limit: u32) -> Result<Vec<CronRunRecord>>;
    fn last_cron_slot(&self, job_id: &str) -> Result<Option<i64>>;
    fn prune_cron_runs(&self, older_than_ms: i64) -> Result<u64>;
} }

delegate! { UsageStore {
    fn usage_sums(&self, query: &UsageQuery) -> Result<UsageSums>;
    fn turn_usage(&self, start_ms: i64, end_ms: i64, limit: usize) -> Result<Vec<TurnUsage>>;
} }

delegate! { LockoutStore {
    fn share_lockout(&self, bucket: &str, until_ms: i64) -> Result<()>;
    fn active_lockouts(&self, now_ms: i64, limit: usize) -> Result<Vec<(String, i64)>>;
} }

delegate! { RateBucketStore {
    fn take_rate_token(&self, key: &str, rate: BucketRate, now_us: i64) -> Result<RateTake>;
    fn prune_rate_buckets(&self, now_us: i64) -> Result<u64>;
} }

delegate! { AccessTokenStore {
    fn create_access_token(&self, new: &NewAccessToken, now_ms: i64) -> Result<(String, AccessTokenRecord)>;
    fn verify_access_token(&self, presented: &str, now_ms: i64) -> Result<Option<AccessTokenRecord>>;
    fn list_access_tokens(&self) -> Result<Vec<AccessTokenRecord>>;
    fn revoke_access_token(&self, id_or_name: &str, now_ms: i64) -> Result<Option<AccessTokenRecord>>;
} }

delegate! { ClusterStore {
    fn upsert_gateway(&self, gateway: &GatewayRecord) -> Result<()>;
    fn list_gateways(&self) -> Result<Vec<GatewayRecord>>;
    fn remove_gateway(&self, id: &str) -> Result<bool>;
    fn forget_gateways(&self, seen_before_ms: i64) -> Result<u64>;
    fn try_acquire_lease(&self, name: &str, holder: &str, ttl_ms: i64, now_ms: i64) -> Result<bool>;
    fn release_lease(&self, name: &str, holder: &str) -> Result<bool>;
    fn list_leases(&self) -> Result<Vec<LeaseRecord>>;
} }
