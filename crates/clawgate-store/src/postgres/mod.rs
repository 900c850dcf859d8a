//! The PostgreSQL implementation of every store trait, for several gateways sharing one state
//! (issue 16). It mirrors `sqlite/` file for file; the SQL differs per backend and stays in its
//! own file, the pure logic (session patches, pairing unions, token hashing) is shared, and a
//! trait whose SQL both backends run as written has one body in `portable/`.
//!
//! The schema lives in `migrations-postgres/`, one file per SQLite migration with the same
//! version, tables and columns. Where SQLite relied on its single writer:
//!
//! * Claims are one statement that locks the row it takes: the job queue takes its head with
//!   `FOR UPDATE SKIP LOCKED` (concurrent claimers take different jobs instead of waiting), run
//!   claims re-check `status = 'queued'` on the locked row, so two gateways never start one run.
//! * Transactions that read and then write (`BEGIN IMMEDIATE` on SQLite) first take one
//!   transaction-scoped advisory lock ([`WRITE_LOCK`]), so they see exactly the single-writer
//!   order SQLite gives them, across every gateway on the database. Single-statement writes
//!   (appends' seq hand-out, claims, inbox dedup) do not take it: their row locks suffice.

mod access_tokens;
mod approvals;
mod channels;
mod cluster;
pub(crate) mod cluster_events;
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

use std::str::FromStr;
use std::sync::Arc;
use std::time::Duration;

use sqlx::migrate::Migrator;
use sqlx::postgres::{PgConnectOptions, PgPool, PgPoolOptions};

use crate::health::{Degraded, StorageHealth};
use crate::{Result, StoreError};

pub(crate) use crate::sqlite::{count, union};

/// The schema, embedded at compile time from `crates/clawgate-store/migrations-postgres/`.
static MIGRATOR: Migrator = sqlx::migrate!("./migrations-postgres");

/// The advisory lock key every read-then-write transaction holds ("claw" in ASCII): the
/// PostgreSQL stand-in for SQLite's one writer.
const WRITE_LOCK: i64 = 0x636c_6177;

/// Connections per gateway. Postgres serves several gateways; each keeps its share small.
const MAX_CONNECTIONS: u32 = 8;

/// How long a caller waits for a free connection before failing as busy.
const ACQUIRE_TIMEOUT: Duration = Duration::from_secs(5);

/// Storage on one PostgreSQL database. Cloning is cheap and every clone shares the same pool.
#[derive(Debug, Clone)]
pub struct PgStore {
    pool: PgPool,
    health: Arc<StorageHealth>,
}

impl PgStore {
    /// Connects to the database at `url` (`postgres://user:password@host:port/db?sslmode=…`)
    /// and brings its schema up to date. A database written by a newer clawgate (unknown
    /// migrations) is refused as [`StoreError::Unavailable`] rather than used blindly. The URL
    /// may hold a password: it is never logged.
    pub async fn open(url: &str) -> Result<PgStore> {
        let store = Self::connect(url).await?;
        MIGRATOR.run(&store.pool).await?;
        tracing::debug!("postgres store opened");
        Ok(store)
    }

    /// Connects without migrating (for `clawgate store migrate`, which reports what it applies).
    pub async fn connect(url: &str) -> Result<PgStore> {
        let options = PgConnectOptions::from_str(url)
            .map_err(|e| StoreError::unavailable(format!("invalid PostgreSQL URL: {}", redact_error(&e))))?
            .application_name("clawgate");
        let pool = PgPoolOptions::new()
            .max_connections(MAX_CONNECTIONS)
            .acquire_timeout(ACQUIRE_TIMEOUT)
            .connect_with(options)
            .await?;
        Ok(PgStore { pool, health: Arc::default() })
    }

    /// Applies the migrations this database lacks; returns `(version, description)` of each one
    /// applied, oldest first (empty when it was up to date).
    pub async fn migrate(&self) -> Result<Vec<(i64, String)>> {
        let applied: Vec<i64> = applied_versions(&self.pool).await?;
        MIGRATOR.run(&self.pool).await?;
        Ok(MIGRATOR
            .iter()
            .filter(|m| !applied.contains(&m.version))
            .map(|m| (m.version, m.description.to_string()))
            .collect())
    }

    /// `Some(why)` while the storage is degraded (see [`crate::SqliteStore::degraded`]).
    pub fn degraded(&self) -> Option<Degraded> {
        self.health.degraded()
    }

    /// Closes every connection, waiting for those in use. Every clone fails with
    /// [`StoreError::Unavailable`] afterwards.
    pub async fn close(self) -> Result<()> {
        self.pool.close().await;
        Ok(())
    }

    /// Starts a write transaction holding [`WRITE_LOCK`]; a failure counts towards health.
    pub(crate) async fn begin_write(&self) -> Result<sqlx::Transaction<'static, sqlx::Postgres>> {
        let begun = async {
            let mut tx = self.pool.begin().await?;
            sqlx::query("SELECT pg_advisory_xact_lock($1)").bind(WRITE_LOCK).execute(&mut *tx).await?;
            Ok::<_, StoreError>(tx)
        }
        .await;
        if begun.is_err() {
            self.health.observe(&begun);
        }
        begun
    }

    /// Commits a write transaction; its outcome decides the store's health.
    pub(crate) async fn commit(&self, tx: sqlx::Transaction<'static, sqlx::Postgres>) -> Result<()> {
        let committed = tx.commit().await.map_err(StoreError::from);
        self.health.observe(&committed);
        committed
    }

    /// Passes the outcome of a single-statement write through the health record.
    pub(crate) fn observed<T>(&self, outcome: Result<T>) -> Result<T> {
        self.health.observe(&outcome);
        outcome
    }

    /// The pool, for this crate's implementations and tests only: SQL never leaves the store.
    pub(crate) fn pool(&self) -> &PgPool {
        &self.pool
    }
}

/// Versions recorded in `_sqlx_migrations` (none on a fresh database).
async fn applied_versions(pool: &PgPool) -> Result<Vec<i64>> {
    let exists: bool = sqlx::query_scalar("SELECT to_regclass('_sqlx_migrations') IS NOT NULL").fetch_one(pool).await?;
    if !exists {
        return Ok(Vec::new());
    }
    Ok(sqlx::query_scalar("SELECT version FROM _sqlx_migrations WHERE success ORDER BY version")
        .fetch_all(pool)
        .await?)
}

/// A URL parse error without the URL (it may hold a password).
fn redact_error(err: &sqlx::Error) -> String {
    match err {
        sqlx::Error::Configuration(inner) => inner.to_string().split(':').next().unwrap_or("bad URL").to_owned(),
        _ => "bad URL".to_owned(),
    }
}
