//! The SQLite implementation of every store trait.
//!
//! One file per capability; this module opens the database, runs the embedded migrations and
//! holds the helpers they share. Writes that touch several rows run in `BEGIN IMMEDIATE`
//! transactions: taking the write lock up front means a transaction never has to upgrade a
//! read snapshot, which SQLite would refuse with `SQLITE_BUSY` without waiting.

mod access_tokens;
mod approvals;
mod backup;
mod channels;
mod cluster;
mod cron;
mod devices;
mod idempotency;
mod jobs;
mod kv;
mod lockouts;
mod pairing;
mod rate_buckets;
mod runs;
mod sessions;
mod tokens;
mod transcripts;
mod usage;

use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use sqlx::migrate::Migrator;
use sqlx::sqlite::{SqliteConnectOptions, SqliteJournalMode, SqlitePool, SqlitePoolOptions, SqliteSynchronous};

pub use backup::{BackupError, StateFileInfo};

use crate::health::{Degraded, StorageHealth};
use crate::{Result, StoreError};

/// The schema, embedded at compile time from `crates/clawgate-store/migrations/`.
static MIGRATOR: Migrator = sqlx::migrate!();

/// How long a statement waits for another connection's (or process's) write lock before it
/// fails as [`StoreError::Unavailable`].
const BUSY_TIMEOUT: Duration = Duration::from_millis(5_000);

/// Connections in a file-backed pool. WAL lets readers run beside the one writer; more than a
/// handful buys nothing for the gateway's small, short transactions.
const MAX_CONNECTIONS: u32 = 8;

/// Page cache per connection, in KiB (SQLite's negative `cache_size`). SQLite's default is 2 000
/// KiB; with [`MAX_CONNECTIONS`] connections each filling its own cache as the database grows,
/// that is up to 16 MB of RSS that creeps up over hours. 1 MiB each bounds the pool at 8 MiB; the
/// OS page cache still holds the hot pages, so reads stay fast.
const CACHE_KIB: i64 = 1024;

/// Starts a transaction holding the write lock from its first statement.
const BEGIN_IMMEDIATE: &str = "BEGIN IMMEDIATE";

/// Storage on one SQLite database. Cloning is cheap and every clone shares the same
/// connection pool.
#[derive(Debug, Clone)]
pub struct SqliteStore {
    pool: SqlitePool,
    health: Arc<StorageHealth>,
}

impl SqliteStore {
    /// Opens (creating if needed, with its parent directory) the database at `path`, in WAL
    /// mode with `synchronous=NORMAL`, foreign keys on and a 5 s busy timeout, and brings its
    /// schema up to date. A database written by a newer clawgate (unknown migrations) is
    /// refused as [`StoreError::Unavailable`] rather than used blindly.
    pub async fn open(path: &Path) -> Result<SqliteStore> {
        if let Some(parent) = path.parent().filter(|p| !p.as_os_str().is_empty()) {
            tokio::fs::create_dir_all(parent).await?;
        }
        let options = SqliteConnectOptions::new()
            .filename(path)
            .create_if_missing(true)
            .journal_mode(SqliteJournalMode::Wal)
            // NORMAL in WAL mode cannot corrupt the database; a power loss may only drop the
            // last transactions, which every caller tolerates (DESIGN.md §4).
            .synchronous(SqliteSynchronous::Normal)
            .foreign_keys(true)
            .busy_timeout(BUSY_TIMEOUT)
            .pragma("cache_size", (-CACHE_KIB).to_string());
        let pool = SqlitePoolOptions::new()
            .max_connections(MAX_CONNECTIONS)
            .after_release(|conn, _| Box::pin(release_only_if_idle(conn)))
            .connect_with(options)
            .await?;
        let store = Self::migrated(pool).await?;
        tracing::debug!(path = %path.display(), "sqlite store opened");
        Ok(store)
    }

    /// A private, empty in-memory database (for tests). It lives as long as the store and its
    /// clones; the pool has a single connection that is never recycled, because each SQLite
    /// connection to `:memory:` would otherwise see a different database.
    pub async fn open_in_memory() -> Result<SqliteStore> {
        let options = SqliteConnectOptions::new().in_memory(true).foreign_keys(true).busy_timeout(BUSY_TIMEOUT);
        let pool = SqlitePoolOptions::new()
            .min_connections(1)
            .max_connections(1)
            .idle_timeout(None)
            .max_lifetime(None)
            .connect_with(options)
            .await?;
        Self::migrated(pool).await
    }

    async fn migrated(pool: SqlitePool) -> Result<SqliteStore> {
        MIGRATOR.run(&pool).await?;
        Ok(SqliteStore { pool, health: Arc::default() })
    }

    /// `Some(why)` while the storage is degraded: a write failed for a storage reason (disk
    /// full, I/O) and none has succeeded since. Clears by itself on the next successful write.
    pub fn degraded(&self) -> Option<Degraded> {
        self.health.degraded()
    }

    /// Starts a write transaction (holding the write lock from its first statement); a failure
    /// to start counts towards the store's health.
    pub(crate) async fn begin_write(&self) -> Result<sqlx::Transaction<'static, sqlx::Sqlite>> {
        let begun = self.pool.begin_with(BEGIN_IMMEDIATE).await.map_err(StoreError::from);
        if begun.is_err() {
            self.health.observe(&begun);
        }
        begun
    }

    /// Commits a write transaction. This is where a full disk shows (WAL pages are written at
    /// commit), so its outcome decides the store's health: a failure for a storage reason marks
    /// it degraded, a success clears that.
    pub(crate) async fn commit(&self, tx: sqlx::Transaction<'static, sqlx::Sqlite>) -> Result<()> {
        let committed = tx.commit().await.map_err(StoreError::from);
        self.health.observe(&committed);
        committed
    }

    /// Passes the outcome of a single-statement (autocommit) write through the health record.
    pub(crate) fn observed<T>(&self, outcome: Result<T>) -> Result<T> {
        self.health.observe(&outcome);
        outcome
    }

    /// Checks the database: SQLite's own `PRAGMA integrity_check` (b-trees, indexes,
    /// constraints) plus `PRAGMA foreign_key_check` (no device token without its device).
    /// `Ok(false)` means damaged; problems are logged.
    pub async fn integrity_check(&self) -> Result<bool> {
        let report: Vec<String> = sqlx::query_scalar("PRAGMA integrity_check").fetch_all(&self.pool).await?;
        let structure_ok = matches!(report.as_slice(), [only] if only == "ok");
        if !structure_ok {
            tracing::warn!(problems = ?report, "sqlite integrity_check failed");
        }
        let orphans = sqlx::query("PRAGMA foreign_key_check").fetch_all(&self.pool).await?.len();
        if orphans > 0 {
            tracing::warn!(orphans, "sqlite foreign_key_check found rows without parents");
        }
        Ok(structure_ok && orphans == 0)
    }

    /// Shuts the store down cleanly: folds the WAL back into the database file (so the file
    /// alone is a complete copy) and closes every connection, waiting for those in use. Every
    /// clone of this store fails with [`StoreError::Unavailable`] afterwards.
    pub async fn close(self) -> Result<()> {
        // A checkpoint that cannot finish because a reader is still active reports that in its
        // result row rather than failing; the WAL is then folded in on the next open.
        let checkpoint = sqlx::query("PRAGMA wal_checkpoint(TRUNCATE)").execute(&self.pool).await;
        self.pool.close().await;
        checkpoint?;
        Ok(())
    }

    /// The pool, for this crate's implementations and tests only: SQL never leaves the store.
    pub(crate) fn pool(&self) -> &SqlitePool {
        &self.pool
    }
}

/// Whether a connection going back to the pool is outside any transaction; one that is not is
/// closed instead of being pooled.
///
/// Class closed: *a pooled connection poisoned by a failed transaction*. When `COMMIT` fails
/// with `SQLITE_FULL` (or an I/O error), SQLite has already rolled the transaction back, so the
/// driver's rollback-on-drop fails with "no transaction is active" and the driver keeps counting
/// the connection as inside a transaction: every later `BEGIN` on it failed
/// (`InvalidSavePointStatement`) for the life of the process, which is why writes stayed broken
/// after space was freed. Whatever left a connection in that state, it never serves again.
async fn release_only_if_idle(conn: &mut sqlx::SqliteConnection) -> std::result::Result<bool, sqlx::Error> {
    use sqlx::TransactionManager;
    type Manager = sqlx::sqlite::SqliteTransactionManager;
    if Manager::get_transaction_depth(conn) == 0 {
        return Ok(true);
    }
    // A rollback queued by a dropped transaction may still be on its way through the
    // connection's worker: taking the handle waits behind it (commands run in order).
    drop(conn.lock_handle().await?);
    let idle = Manager::get_transaction_depth(conn) == 0;
    if !idle {
        tracing::warn!("closing a database connection left inside a failed transaction");
    }
    Ok(idle)
}

/// A count read back from SQLite; a negative one can only come from a damaged database.
pub(crate) fn count(what: &str, n: i64) -> Result<u64> {
    u64::try_from(n).map_err(|_| StoreError::Corrupt(format!("negative {what} count {n}")))
}

/// Union of two lists, keeping `base`'s order and appending what `extra` adds.
pub(crate) fn union(base: &[String], extra: &[String]) -> Vec<String> {
    let mut out = base.to_vec();
    for item in extra {
        if !out.contains(item) {
            out.push(item.clone());
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::{DeviceStore, IdempotencyStore, KvStore, NewPairingRequest, PairingStore};

    fn strings(items: &[&str]) -> Vec<String> {
        items.iter().map(|s| (*s).to_owned()).collect()
    }

    #[test]
    fn union_keeps_order_and_drops_duplicates() {
        let merged = union(&strings(&["a", "b"]), &strings(&["b", "c", "a", "d"]));
        assert_eq!(merged, strings(&["a", "b", "c", "d"]));
    }

    #[tokio::test]
    async fn open_creates_parent_directory_and_uses_wal() {
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join("nested/state/gateway.db");
        let store = SqliteStore::open(&path).await.expect("open");
        assert!(path.exists());
        let mode: String =
            sqlx::query_scalar("PRAGMA journal_mode").fetch_one(store.pool()).await.expect("journal_mode");
        assert_eq!(mode, "wal");
        let synchronous: i64 =
            sqlx::query_scalar("PRAGMA synchronous").fetch_one(store.pool()).await.expect("synchronous");
        assert_eq!(synchronous, 1, "NORMAL");
        let foreign_keys: i64 =
            sqlx::query_scalar("PRAGMA foreign_keys").fetch_one(store.pool()).await.expect("foreign_keys");
        assert_eq!(foreign_keys, 1);
        let busy: i64 = sqlx::query_scalar("PRAGMA busy_timeout").fetch_one(store.pool()).await.expect("busy_timeout");
        assert_eq!(busy, 5_000);
        let cache: i64 = sqlx::query_scalar("PRAGMA cache_size").fetch_one(store.pool()).await.expect("cache_size");
        assert_eq!(cache, -CACHE_KIB, "page cache capped per connection");
        assert!(store.integrity_check().await.expect("integrity"));
        store.close().await.expect("close");
    }

    #[tokio::test]
    async fn data_survives_close_and_reopen() {
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join("gateway.db");
        let store = SqliteStore::open(&path).await.expect("open");
        let token = store.get_or_init("gateway.token", || "first".to_owned()).await.expect("init");
        store.close().await.expect("close");

        let reopened = SqliteStore::open(&path).await.expect("reopen");
        let again = reopened.get_or_init("gateway.token", || "second".to_owned()).await.expect("get");
        assert_eq!(again, token);
        reopened.close().await.expect("close");
    }

    #[tokio::test]
    async fn close_folds_the_wal_into_the_database_file() {
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join("gateway.db");
        let store = SqliteStore::open(&path).await.expect("open");
        for i in 0..50 {
            store.set(&format!("k{i}"), "v").await.expect("set");
        }
        store.close().await.expect("close");
        let wal = dir.path().join("gateway.db-wal");
        let wal_len = std::fs::metadata(&wal).map(|m| m.len()).unwrap_or(0);
        assert_eq!(wal_len, 0, "WAL should be truncated (or gone) after close");
    }

    #[tokio::test]
    async fn closed_store_reports_unavailable() {
        let store = SqliteStore::open_in_memory().await.expect("open");
        let clone = store.clone();
        store.close().await.expect("close");
        assert!(matches!(KvStore::get(&clone, "k").await, Err(StoreError::Unavailable { .. })));
    }

    #[tokio::test]
    async fn corrupt_list_column_is_reported_not_panicked() {
        let store = SqliteStore::open_in_memory().await.expect("open");
        sqlx::query(
            "INSERT INTO paired_devices (device_id, public_key, roles, scopes, approved_via, \
             created_at_ms, approved_at_ms) VALUES ('dev', 'pk', 'not json', '[]', 'cli', 1, 1)",
        )
        .execute(store.pool())
        .await
        .expect("insert");
        assert!(matches!(store.get_paired("dev").await, Err(StoreError::Corrupt(_))));
        assert!(matches!(store.list_paired().await, Err(StoreError::Corrupt(_))));
    }

    #[tokio::test]
    async fn corrupt_idempotency_payload_is_reported_not_panicked() {
        let store = SqliteStore::open_in_memory().await.expect("open");
        sqlx::query(
            "INSERT INTO idempotency (key, status, payload, created_at_ms, updated_at_ms) \
             VALUES ('k', 'ok', '{broken', 1, 1)",
        )
        .execute(store.pool())
        .await
        .expect("insert");
        assert!(matches!(IdempotencyStore::get(&store, "k").await, Err(StoreError::Corrupt(_))));
    }

    #[tokio::test]
    async fn unknown_pairing_status_is_reported_not_panicked() {
        let store = SqliteStore::open_in_memory().await.expect("open");
        let request = store
            .create_or_refresh_request(
                &NewPairingRequest {
                    device_id: "dev".into(),
                    public_key: "pk".into(),
                    display_name: None,
                    platform: None,
                    device_family: None,
                    client_id: None,
                    client_mode: None,
                    role: "operator".into(),
                    scopes: vec![],
                    remote_ip: None,
                    reason: "not-paired".into(),
                },
                1,
            )
            .await
            .expect("create");
        // The CHECK constraint keeps bad statuses out; bypass it to simulate a damaged row.
        sqlx::query("PRAGMA ignore_check_constraints = ON").execute(store.pool()).await.expect("pragma");
        sqlx::query("UPDATE pairing_requests SET status = 'weird' WHERE request_id = ?")
            .bind(&request.request_id)
            .execute(store.pool())
            .await
            .expect("update");
        assert!(matches!(store.get_request(&request.request_id).await, Err(StoreError::Corrupt(_))));
    }

    #[tokio::test]
    async fn device_tokens_are_stored_only_as_hashes() {
        use crate::DeviceTokenStore;
        let store = SqliteStore::open_in_memory().await.expect("open");
        store
            .upsert_paired(&crate::PairedDevice {
                device_id: "dev".into(),
                public_key: "pk".into(),
                display_name: None,
                platform: None,
                device_family: None,
                client_id: None,
                client_mode: None,
                roles: strings(&["operator"]),
                scopes: vec![],
                approved_via: "cli".into(),
                created_at_ms: 1,
                approved_at_ms: 1,
                last_seen_at_ms: None,
            })
            .await
            .expect("pair");
        let (plain, _) = store.issue("dev", "operator", &[], 2).await.expect("issue");
        let stored: Vec<u8> =
            sqlx::query_scalar("SELECT token_hash FROM device_tokens").fetch_one(store.pool()).await.expect("row");
        assert_eq!(stored.len(), 32);
        assert_ne!(stored, plain.as_bytes());
        let dump: Vec<String> =
            sqlx::query_scalar("SELECT device_id || role || hex(token_hash) || scopes FROM device_tokens")
                .fetch_all(store.pool())
                .await
                .expect("dump");
        assert!(dump.iter().all(|row| !row.contains(&plain)));
    }

    #[tokio::test]
    async fn migrations_are_idempotent_across_opens() {
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join("gateway.db");
        for _ in 0..3 {
            let store = SqliteStore::open(&path).await.expect("open");
            store.close().await.expect("close");
        }
    }
}
