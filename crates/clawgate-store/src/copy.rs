//! Moving a gateway's state from SQLite to PostgreSQL (`clawgate store copy`): online,
//! resumable, verified.
//!
//! **What is copied** is [`TABLES`], one line per table, parents before the tables whose rows
//! refer to them. Columns are not listed: they are read from both catalogs (the target's column
//! types decide how a value is read, written and checksummed), so a migration that adds a column
//! needs nothing here. A table the source lacks (an older schema) is skipped; a table the source
//! has that is in neither [`TABLES`] nor [`NOT_COPIED`] fails a unit test, so a new migration
//! cannot silently leave its rows behind.
//!
//! **Online.** The source may be the live file of a running gateway: it is opened query-only and
//! read in batches in primary-key order, each batch one short read (WAL readers never block the
//! writer). A batch is written to the target in one transaction together with the table's
//! progress (the last key copied), in the target's `kv` table under [`MARKER_PREFIX`], so a
//! copy that is killed resumes after its last committed batch.
//!
//! **Converging, idempotent.** Each batch is upserted (`ON CONFLICT … DO UPDATE` only where a
//! value differs), and target rows in the batch's key range that the source no longer has are
//! deleted. A pass that finds nothing to do changes nothing; a pass run after the gateway has
//! stopped makes the target equal to the source, whatever the gateway did during an earlier,
//! online pass. A finished copy run again starts a new pass.
//!
//! **One source per target.** The first run records the source (its canonical path) in the
//! target; a target holding another source's copy, or clawgate data no copy put there, is refused.
//!
//! **Verified.** Per table, rows are counted on both sides and every row is hashed (SHA-256 over a
//! canonical text of each column by type: JSON re-serialised with sorted keys, booleans as
//! `true`/`false`, blobs as bytes). A table's digest is the sum of its rows' hashes modulo 2^256,
//! which does not depend on the order rows are read in — SQLite and PostgreSQL sort text keys
//! differently.
//!
//! Identity columns are moved past the highest id copied (and past SQLite's `AUTOINCREMENT`
//! counter: ids that were pruned are never handed out again). Triggers on a target table are off
//! while its batch is written: the rows they would derive (`turn_usage`) are copied themselves.

use std::borrow::Cow;
use std::collections::BTreeMap;
use std::fmt;
use std::path::{Path, PathBuf};
use std::time::Duration;

use serde_json::{Value as Json, json};
use sha2::{Digest as _, Sha256};
use sqlx::migrate::Migrator;
use sqlx::postgres::PgPool;
use sqlx::sqlite::{SqliteConnectOptions, SqlitePool, SqlitePoolOptions};
use sqlx::{Postgres, Row as _, Sqlite};

use crate::{PgStore, StoreError};

/// One table `clawgate store copy` carries from SQLite to PostgreSQL.
#[derive(Debug, Clone, Copy)]
pub struct Table {
    /// The table's name (the same on both backends).
    pub name: &'static str,
    /// The SQLite primary key (column names or `rowid`), in order: batches are read in this order
    /// and the progress records the last key copied.
    pub key: &'static [&'static str],
    /// Target columns filled from something other than the same-named source column:
    /// `(target column, SQLite expression)`.
    pub from: &'static [(&'static str, &'static str)],
    /// Rows left out on both sides (SQL valid on both backends, on unqualified columns).
    pub filter: Option<&'static str>,
    /// `(column, parent table, parent column)`: a row is written only once its parent is in the
    /// target. A row added to both while the copy runs is then caught by the next pass (and
    /// reported by the verification until then) instead of failing on the foreign key.
    pub parent: Option<(&'static str, &'static str, &'static str)>,
}

impl Table {
    const fn new(name: &'static str, key: &'static [&'static str]) -> Table {
        Table { name, key, from: &[], filter: None, parent: None }
    }
}

/// Where the copy keeps its own records in the target's `kv` table. These rows are neither
/// copied nor compared.
pub const MARKER_PREFIX: &str = "clawgate.copy.";

/// The `kv` filter that leaves the copy's own records out (14 = `MARKER_PREFIX.len()`).
const KV_FILTER: &str = "substr(key, 1, 14) <> 'clawgate.copy.'";

/// The tables copied, parents first. To add a table (a new migration in both `migrations/` and
/// `migrations-postgres/`): add its line here — name and SQLite primary key; `from` only for a
/// target column with no same-named source column; `parent` if it has a foreign key — or, if its
/// rows must not move (state of running gateways), its name to [`NOT_COPIED`].
pub const TABLES: &[Table] = &[
    Table { filter: Some(KV_FILTER), ..Table::new("kv", &["key"]) },
    Table::new("paired_devices", &["device_id"]),
    Table::new("pairing_requests", &["request_id"]),
    Table {
        parent: Some(("device_id", "paired_devices", "device_id")),
        ..Table::new("device_tokens", &["device_id", "role"])
    },
    Table::new("idempotency", &["key"]),
    Table::new("sessions", &["key"]),
    Table::new("transcript_heads", &["session_id"]),
    Table::new("transcript_entries", &["id"]),
    Table::new("runs", &["queue_pos"]),
    Table::new("channel_inbox", &["id"]),
    Table::new("channel_outbox", &["id"]),
    Table::new("channel_pairings", &["channel", "account", "sender_id"]),
    Table::new("comfy_jobs", &["seq"]),
    // SQLite's rowid is PostgreSQL's `id`: delivered outputs are listed in the order marked.
    Table {
        from: &[("id", "rowid")],
        parent: Some(("job_id", "comfy_jobs", "id")),
        ..Table::new("comfy_job_deliveries", &["rowid"])
    },
    Table::new("approvals", &["id"]),
    Table::new("exec_approval_policy", &["id"]),
    Table::new("exec_node_policies", &["node_id"]),
    Table::new("cron_jobs", &["id"]),
    Table::new("cron_runs", &["job_id", "slot_ms"]),
    Table::new("turn_usage", &["id"]),
    Table::new("access_tokens", &["id"]),
];

/// Tables of the SQLite schema that are deliberately not copied (`_sqlx_migrations` is the
/// schema's own record; the target gets its own by migrating).
/// The cluster's tables (migrations 0007, 0008) are the live state of running gateways — who is
/// up, who holds which lease, the event backlog — that a new target must not inherit.
/// Failed-auth lockouts (0011) and request-rate buckets (0012) are short-lived counters: a new
/// target starts with none (every bucket full), as after a restart.
pub const NOT_COPIED: &[&str] = &[
    "_sqlx_migrations",
    "sqlite_sequence",
    "cluster_gateways",
    "cluster_leases",
    "cluster_events",
    "auth_lockouts",
    "rate_buckets",
];

/// The PostgreSQL schema, to migrate the target to the source's version (not further).
static PG_MIGRATIONS: Migrator = sqlx::migrate!("./migrations-postgres");

/// The SQLite schema this clawgate knows.
static SQLITE_MIGRATIONS: Migrator = sqlx::migrate!("./migrations");

/// The kv key of the record naming the copy's source.
const SOURCE_KEY: &str = "clawgate.copy.source";

/// The kv key present once a pass has finished (the next run starts a new pass).
const PASS_KEY: &str = "clawgate.copy.finished";

/// The session-level advisory lock a copy holds on its target ("copy" in ASCII), so two copies
/// never write one target at once.
const COPY_LOCK: i64 = 0x636f_7079;

/// PostgreSQL takes at most this many parameters per statement.
const MAX_PARAMS: usize = 65_535;

/// Why a copy could not be done.
#[derive(Debug, thiserror::Error)]
pub enum CopyError {
    /// The copy was refused before anything was written (another source's copy, a schema this
    /// clawgate does not know, a source that is not a clawgate database): the message says why.
    #[error("{0}")]
    Refused(String),
    /// Reading, writing or comparing one table failed.
    #[error("table {table}")]
    Table {
        /// The table.
        table: &'static str,
        /// What failed.
        #[source]
        source: StoreError,
    },
    /// Opening or preparing either database failed.
    #[error(transparent)]
    Store(#[from] StoreError),
}

impl From<sqlx::Error> for CopyError {
    fn from(e: sqlx::Error) -> Self {
        CopyError::Store(e.into())
    }
}

type CopyResult<T> = Result<T, CopyError>;

/// What a copy reports as it goes (the CLI prints it).
#[derive(Debug, Clone, Copy)]
pub enum CopyEvent<'a> {
    /// A table is not in the source (an older schema): nothing to copy.
    Skipped {
        /// The table.
        table: &'a str,
    },
    /// A batch of the table was written.
    Progress {
        /// The table.
        table: &'a str,
        /// Rows of the source walked through so far in this pass (resumed batches included).
        done: u64,
        /// The source's rows when the table was started.
        total: u64,
    },
    /// The table's pass is complete.
    Finished {
        /// The table.
        table: &'a str,
        /// Rows walked through.
        rows: u64,
    },
}

/// How far a run of [`Copier::copy`] got.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CopyOutcome {
    /// Every table is copied and the target's identity counters are set.
    Complete {
        /// Rows walked through by this run.
        rows: u64,
    },
    /// The run stopped at its row limit; run again to continue.
    Stopped {
        /// Rows walked through by this run.
        rows: u64,
    },
}

/// Options of a copy run.
#[derive(Debug, Clone, Copy)]
pub struct CopyOptions {
    /// Rows per batch (one read of the source, one transaction on the target).
    pub batch: usize,
    /// Stop after this many rows in this run (the copy stays resumable).
    pub limit: Option<u64>,
}

impl Default for CopyOptions {
    fn default() -> Self {
        CopyOptions { batch: 500, limit: None }
    }
}

/// Row count and digest of one side of a table.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Tally {
    /// Rows.
    pub rows: u64,
    /// Sum of the rows' SHA-256 modulo 2^256, big-endian.
    pub digest: [u8; 32],
}

impl Tally {
    /// The digest's first 8 bytes in hex, for tables.
    pub fn short(&self) -> String {
        self.digest[..8].iter().map(|b| format!("{b:02x}")).collect()
    }
}

/// One table compared.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct TableCheck {
    /// The table.
    pub table: &'static str,
    /// The source's side (`None`: the source has no such table).
    pub source: Option<Tally>,
    /// The target's side (`None`: the target has no such table).
    pub target: Option<Tally>,
}

impl TableCheck {
    /// Whether both sides hold the same rows (a table neither side has matches).
    pub fn matches(&self) -> bool {
        match (self.source, self.target) {
            (Some(s), Some(t)) => s == t,
            (None, None) => true,
            // A table the source lacks may exist, empty, in the target (it is migrated further).
            (None, Some(t)) => t.rows == 0,
            (Some(_), None) => false,
        }
    }
}

/// How a column's values are read, written and hashed, from its PostgreSQL type.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Kind {
    Int,
    Bool,
    Float,
    Bytes,
    Json,
    Text,
}

impl Kind {
    fn of(pg_type: &str) -> Kind {
        match pg_type {
            "bigint" | "integer" | "smallint" => Kind::Int,
            "boolean" => Kind::Bool,
            "double precision" | "real" => Kind::Float,
            "bytea" => Kind::Bytes,
            "json" | "jsonb" => Kind::Json,
            _ => Kind::Text,
        }
    }
}

#[derive(Debug, Clone)]
struct Column {
    /// The target column.
    name: String,
    /// The SQLite expression read for it.
    source: String,
    /// `format_type` of the target column, the cast of every bound value.
    pg_type: String,
    kind: Kind,
}

/// A value in flight.
#[derive(Debug, Clone, PartialEq)]
enum Value {
    Null,
    Int(i64),
    Bool(bool),
    Float(f64),
    Bytes(Vec<u8>),
    Text(String),
}

impl Value {
    fn to_json(&self) -> Json {
        match self {
            Value::Int(i) => json!(i),
            Value::Text(s) => json!(s),
            _ => Json::Null,
        }
    }

    fn from_json(kind: Kind, v: &Json) -> Option<Value> {
        match kind {
            Kind::Int => v.as_i64().map(Value::Int),
            Kind::Text | Kind::Json => v.as_str().map(|s| Value::Text(s.to_owned())),
            _ => None,
        }
    }
}

/// The plan for one table present in the source: its columns and key.
#[derive(Debug, Clone)]
struct Plan {
    table: Table,
    columns: Vec<Column>,
    /// Indices into `columns` of the key, in [`Table::key`] order.
    key: Vec<usize>,
    /// Whether the target table has triggers of its own (switched off while writing).
    triggers: bool,
}

impl Plan {
    fn key_columns(&self) -> impl Iterator<Item = &Column> {
        self.key.iter().map(|&i| &self.columns[i])
    }

    fn key_of(&self, row: &[Value]) -> Vec<Value> {
        self.key.iter().map(|&i| row[i].clone()).collect()
    }

    fn filter_sql(&self) -> String {
        self.table.filter.map(|f| format!(" AND ({f})")).unwrap_or_default()
    }
}

/// Per-table progress, kept in the target's kv.
#[derive(Debug, Clone, Default)]
struct Progress {
    after: Option<Vec<Value>>,
    rows: u64,
    done: bool,
}

fn progress_key(table: &str) -> String {
    format!("{MARKER_PREFIX}table.{table}")
}

fn quote(ident: &str) -> String {
    format!("\"{}\"", ident.replace('"', "\"\""))
}

/// A copy between one SQLite file and one PostgreSQL database.
#[derive(Debug)]
pub struct Copier {
    source: SqlitePool,
    source_path: PathBuf,
    schema: i64,
    target: PgStore,
    /// The connection holding [`COPY_LOCK`] for as long as this copier lives.
    lock: sqlx::pool::PoolConnection<Postgres>,
}

impl Copier {
    /// Opens the SQLite file at `source` query-only (a running gateway may be using it) and
    /// connects to the PostgreSQL database at `target_url`. Nothing is written yet.
    pub async fn open(source: &Path, target_url: &str) -> CopyResult<Copier> {
        let source_path = std::fs::canonicalize(source)
            .map_err(|e| CopyError::Refused(format!("cannot open the source {}: {e}", source.display())))?;
        let options = SqliteConnectOptions::new()
            .filename(&source_path)
            .create_if_missing(false)
            .busy_timeout(Duration::from_secs(5))
            .pragma("query_only", "ON");
        let pool = SqlitePoolOptions::new().max_connections(2).connect_with(options).await?;
        let has_schema: bool = sqlx::query_scalar(
            "SELECT EXISTS (SELECT 1 FROM sqlite_master WHERE type = 'table' AND name = '_sqlx_migrations')",
        )
        .fetch_one(&pool)
        .await?;
        if !has_schema {
            return Err(CopyError::Refused(format!(
                "{} is not a clawgate state database (it has no schema record)",
                source_path.display()
            )));
        }
        let schema: Option<i64> =
            sqlx::query_scalar("SELECT max(version) FROM _sqlx_migrations WHERE success").fetch_one(&pool).await?;
        let schema = schema.unwrap_or(0);
        let known = SQLITE_MIGRATIONS.iter().map(|m| m.version).max().unwrap_or(0);
        if schema > known {
            return Err(CopyError::Refused(format!(
                "the source's schema is version {schema}, newer than this clawgate knows ({known}): use the clawgate that wrote it"
            )));
        }
        let target = PgStore::connect(target_url).await?;
        let mut lock = target.pool().acquire().await?;
        // Never back into the pool with the lock held, even when the copier is dropped unclosed.
        lock.close_on_drop();
        // A copy that just ended may still be leaving (its server process releases the lock as
        // it exits): wait a little before calling the target busy.
        sqlx::query("SET lock_timeout = '5s'").execute(&mut *lock).await?;
        let locked = sqlx::query("SELECT pg_advisory_lock($1)").bind(COPY_LOCK).execute(&mut *lock).await;
        match locked {
            Ok(_) => {}
            Err(sqlx::Error::Database(e)) if e.code().as_deref() == Some("55P03") => {
                return Err(CopyError::Refused(
                    "another clawgate store copy is using the target: wait for it to end".into(),
                ));
            }
            Err(e) => return Err(e.into()),
        }
        Ok(Copier { source: pool, source_path, schema, target, lock })
    }

    /// The source's schema version.
    pub fn schema(&self) -> i64 {
        self.schema
    }

    /// The source file (canonical path).
    pub fn source_path(&self) -> &Path {
        &self.source_path
    }

    /// Brings the target to the source's schema version (never further) and checks that it
    /// holds nothing but this source's copy, recording the source on first use. Returns the
    /// migrations applied now.
    pub async fn prepare(&self) -> CopyResult<Vec<(i64, String)>> {
        let pool = self.target.pool();
        let target_schema = target_schema(pool).await?;
        if target_schema > self.schema {
            return Err(CopyError::Refused(format!(
                "the target's schema (version {target_schema}) is newer than the source's ({}): \
                 upgrade the source first (clawgate store migrate --url sqlite:{})",
                self.schema,
                self.source_path.display()
            )));
        }
        let migrator = Migrator {
            migrations: Cow::Owned(PG_MIGRATIONS.iter().filter(|m| m.version <= self.schema).cloned().collect()),
            ignore_missing: true,
            locking: true,
            no_tx: false,
        };
        migrator.run(pool).await.map_err(StoreError::from)?;
        let applied = PG_MIGRATIONS
            .iter()
            .filter(|m| m.version > target_schema && m.version <= self.schema)
            .map(|m| (m.version, m.description.to_string()))
            .collect();

        let source = self.source_path.display().to_string();
        let marker: Option<String> =
            sqlx::query_scalar("SELECT value FROM kv WHERE key = $1").bind(SOURCE_KEY).fetch_optional(pool).await?;
        match marker {
            Some(text) => {
                let recorded = serde_json::from_str::<Json>(&text)
                    .ok()
                    .and_then(|v| v["source"].as_str().map(str::to_owned))
                    .unwrap_or_default();
                if recorded != source {
                    return Err(CopyError::Refused(format!(
                        "the target holds a copy of {recorded}, not of {source}: copy into an empty database"
                    )));
                }
            }
            None => {
                for table in TABLES {
                    if !target_has_table(pool, table.name).await? {
                        continue;
                    }
                    let filter = table.filter.map(|f| format!(" WHERE {f}")).unwrap_or_default();
                    let sql = format!("SELECT EXISTS (SELECT 1 FROM {}{filter})", quote(table.name));
                    let used: bool = sqlx::query_scalar(&sql).fetch_one(pool).await?;
                    if used {
                        return Err(CopyError::Refused(format!(
                            "the target already holds clawgate data (table {}) that no copy of {source} put there: \
                             copy into an empty database",
                            table.name
                        )));
                    }
                }
                let record =
                    json!({"source": source, "copyId": uuid::Uuid::new_v4().to_string(), "schema": self.schema});
                sqlx::query("INSERT INTO kv (key, value) VALUES ($1, $2) ON CONFLICT (key) DO NOTHING")
                    .bind(SOURCE_KEY)
                    .bind(record.to_string())
                    .execute(pool)
                    .await?;
            }
        }
        Ok(applied)
    }

    /// Copies every table of [`TABLES`] the source has, continuing a pass a killed or limited run
    /// left unfinished (or starting a new pass when the last one was complete).
    pub async fn copy(
        &self,
        options: CopyOptions,
        report: &mut (dyn FnMut(CopyEvent<'_>) + Send),
    ) -> CopyResult<CopyOutcome> {
        let pool = self.target.pool();
        let finished: Option<String> =
            sqlx::query_scalar("SELECT value FROM kv WHERE key = $1").bind(PASS_KEY).fetch_optional(pool).await?;
        if finished.is_some() {
            // The last pass finished: this run is a new one (catching up with the source). Not
            // "every table has finished": a run stopped between two tables has not.
            let mut tx = pool.begin().await?;
            sqlx::query("DELETE FROM kv WHERE substr(key, 1, length($1)) = $1")
                .bind(format!("{MARKER_PREFIX}table."))
                .execute(&mut *tx)
                .await?;
            sqlx::query("DELETE FROM kv WHERE key = $1").bind(PASS_KEY).execute(&mut *tx).await?;
            tx.commit().await?;
        }
        let mut progress = self.load_progress().await?;
        let batch = options.batch.max(1);
        let mut budget = options.limit;
        let mut walked = 0u64;
        for table in TABLES {
            let Some(plan) = self.plan(table).await? else {
                report(CopyEvent::Skipped { table: table.name });
                continue;
            };
            let mut state = progress.remove(table.name).unwrap_or_default();
            if state.done {
                report(CopyEvent::Finished { table: table.name, rows: state.rows });
                continue;
            }
            let total =
                self.count_source(&plan).await.map_err(|source| CopyError::Table { table: table.name, source })?;
            let per_statement = batch.min(MAX_PARAMS / plan.columns.len().max(1)).max(1);
            loop {
                let mut want = per_statement;
                if let Some(left) = budget {
                    if left == 0 {
                        return Ok(CopyOutcome::Stopped { rows: walked });
                    }
                    want = want.min(usize::try_from(left).unwrap_or(usize::MAX));
                }
                let step = async {
                    let rows = self.read_source(&plan, state.after.as_deref(), want).await?;
                    let next = Progress {
                        after: rows.last().map(|r| plan.key_of(r)).or_else(|| state.after.clone()),
                        rows: state.rows + rows.len() as u64,
                        // A short batch is the last one (a full one is followed by a read that
                        // may find nothing more).
                        done: rows.len() < want,
                    };
                    self.write_batch(&plan, &rows, state.after.as_deref(), &next).await?;
                    Ok::<_, StoreError>((rows.len() as u64, next))
                };
                let (n, next) = step.await.map_err(|source| CopyError::Table { table: table.name, source })?;
                walked += n;
                if let Some(left) = budget.as_mut() {
                    *left -= n;
                }
                state = next;
                report(CopyEvent::Progress { table: table.name, done: state.rows, total: total.max(state.rows) });
                if state.done {
                    break;
                }
            }
            report(CopyEvent::Finished { table: table.name, rows: state.rows });
        }
        self.set_identities().await?;
        sqlx::query(
            "INSERT INTO kv (key, value) VALUES ($1, $2) ON CONFLICT (key) DO UPDATE SET value = excluded.value",
        )
        .bind(PASS_KEY)
        .bind(json!({"walked": walked}).to_string())
        .execute(pool)
        .await?;
        Ok(CopyOutcome::Complete { rows: walked })
    }

    /// Counts and hashes every table of [`TABLES`] on both sides.
    pub async fn verify(
        &self,
        batch: usize,
        report: &mut (dyn FnMut(&TableCheck) + Send),
    ) -> CopyResult<Vec<TableCheck>> {
        let batch = batch.max(1);
        let mut checks = Vec::with_capacity(TABLES.len());
        for table in TABLES {
            let check = async {
                let in_source = source_has_table(&self.source, table.name).await?;
                let in_target = target_has_table(self.target.pool(), table.name).await?;
                let plan = if in_source && in_target { self.plan(table).await.map_err(into_store)? } else { None };
                let check = match plan {
                    Some(plan) => TableCheck {
                        table: table.name,
                        source: Some(self.tally_source(&plan, batch).await?),
                        target: Some(self.tally_target(&plan, batch).await?),
                    },
                    // One side lacks the table: its rows are only counted.
                    None => TableCheck {
                        table: table.name,
                        source: match in_source {
                            true => Some(count_source_only(&self.source, table.name).await?),
                            false => None,
                        },
                        target: match in_target {
                            true => Some(count_target_only(self.target.pool(), table.name).await?),
                            false => None,
                        },
                    },
                };
                Ok::<_, StoreError>(check)
            };
            let check = check.await.map_err(|source| CopyError::Table { table: table.name, source })?;
            report(&check);
            checks.push(check);
        }
        Ok(checks)
    }

    /// Closes both connections.
    pub async fn close(self) {
        self.source.close().await;
        let mut lock = self.lock;
        let _ = sqlx::query("SELECT pg_advisory_unlock($1)").bind(COPY_LOCK).execute(&mut *lock).await;
        let _ = lock.close().await;
        let _ = self.target.close().await;
    }

    async fn load_progress(&self) -> CopyResult<BTreeMap<String, Progress>> {
        let prefix = format!("{MARKER_PREFIX}table.");
        let rows: Vec<(String, String)> =
            sqlx::query_as("SELECT key, value FROM kv WHERE substr(key, 1, length($1)) = $1")
                .bind(&prefix)
                .fetch_all(self.target.pool())
                .await?;
        let mut out = BTreeMap::new();
        for (key, value) in rows {
            let name = key[prefix.len()..].to_owned();
            let Some(table) = TABLES.iter().find(|t| t.name == name) else { continue };
            let Some(plan) = self.plan(table).await? else { continue };
            let v: Json = serde_json::from_str(&value)
                .map_err(|e| StoreError::Corrupt(format!("copy progress of {name}: {e}")))?;
            let after = match v["after"].as_array() {
                Some(items) if items.len() == plan.key.len() => Some(
                    plan.key_columns()
                        .zip(items)
                        .map(|(c, item)| Value::from_json(c.kind, item))
                        .collect::<Option<Vec<_>>>()
                        .ok_or_else(|| StoreError::Corrupt(format!("copy progress of {name}: bad key")))?,
                ),
                _ => None,
            };
            let progress =
                Progress { after, rows: v["rows"].as_u64().unwrap_or(0), done: v["done"].as_bool().unwrap_or(false) };
            out.insert(name, progress);
        }
        Ok(out)
    }

    /// The table's plan, or `None` when the source has no such table.
    async fn plan(&self, table: &Table) -> CopyResult<Option<Plan>> {
        if !source_has_table(&self.source, table.name).await? {
            return Ok(None);
        }
        let source_columns: Vec<String> = sqlx::query_scalar("SELECT name FROM pragma_table_info(?)")
            .bind(table.name)
            .fetch_all(&self.source)
            .await?;
        let target_columns: Vec<(String, String)> = sqlx::query_as(
            "SELECT a.attname::text, format_type(a.atttypid, a.atttypmod) FROM pg_attribute a \
             WHERE a.attrelid = to_regclass($1) AND a.attnum > 0 AND NOT a.attisdropped ORDER BY a.attnum",
        )
        .bind(quote(table.name))
        .fetch_all(self.target.pool())
        .await?;
        let mismatch = |what: String| CopyError::Refused(format!("cannot copy table {}: {what}", table.name));
        if target_columns.is_empty() {
            return Err(mismatch("the target has no such table (is its schema older than the source's?)".into()));
        }
        let mut columns = Vec::new();
        for (name, pg_type) in target_columns {
            let source = match table.from.iter().find(|(to, _)| *to == name) {
                Some((_, expr)) => (*expr).to_owned(),
                None if source_columns.contains(&name) => quote(&name),
                // A target-only column keeps its default.
                None => continue,
            };
            columns.push(Column { kind: Kind::of(&pg_type), name, source, pg_type });
        }
        if let Some(extra) = source_columns.iter().find(|s| !columns.iter().any(|c| &c.name == *s)) {
            return Err(mismatch(format!("the target has no column {extra}")));
        }
        let mut key = Vec::new();
        for part in table.key {
            let target_name = table.from.iter().find(|(_, expr)| expr == part).map_or(*part, |(to, _)| *to);
            let index = columns
                .iter()
                .position(|c| c.name == target_name)
                .ok_or_else(|| mismatch(format!("no key column {part}")))?;
            if !matches!(columns[index].kind, Kind::Int | Kind::Text) {
                return Err(mismatch(format!("key column {part} is neither an integer nor text")));
            }
            key.push(index);
        }
        let triggers: bool = sqlx::query_scalar(
            "SELECT EXISTS (SELECT 1 FROM pg_trigger WHERE tgrelid = to_regclass($1) AND NOT tgisinternal)",
        )
        .bind(quote(table.name))
        .fetch_one(self.target.pool())
        .await?;
        Ok(Some(Plan { table: *table, columns, key, triggers }))
    }

    async fn count_source(&self, plan: &Plan) -> Result<u64, StoreError> {
        let sql = format!("SELECT count(*) FROM {} WHERE 1 = 1{}", quote(plan.table.name), plan.filter_sql());
        let n: i64 = sqlx::query_scalar(&sql).fetch_one(&self.source).await?;
        Ok(u64::try_from(n).unwrap_or(0))
    }

    /// Up to `limit` source rows after `after`, in key order: one statement, one short read.
    async fn read_source(
        &self,
        plan: &Plan,
        after: Option<&[Value]>,
        limit: usize,
    ) -> Result<Vec<Vec<Value>>, StoreError> {
        let select = plan.columns.iter().map(|c| c.source.as_str()).collect::<Vec<_>>().join(", ");
        let keys = plan.key_columns().map(|c| c.source.as_str()).collect::<Vec<_>>().join(", ");
        let lower = match after {
            Some(_) => format!(" AND ({keys}) > ({})", vec!["?"; plan.key.len()].join(", ")),
            None => String::new(),
        };
        let sql = format!(
            "SELECT {select} FROM {} WHERE 1 = 1{lower}{} ORDER BY {keys} LIMIT ?",
            quote(plan.table.name),
            plan.filter_sql()
        );
        let mut query = sqlx::query(&sql);
        for value in after.unwrap_or_default() {
            query = bind_sqlite(query, value);
        }
        let rows = query.bind(i64::try_from(limit).unwrap_or(i64::MAX)).fetch_all(&self.source).await?;
        rows.iter().map(|row| read_sqlite_row(plan, row)).collect()
    }

    /// Writes one batch and the progress after it in one transaction: rows upserted, target rows
    /// in the batch's key range that the source lacks deleted.
    async fn write_batch(
        &self,
        plan: &Plan,
        rows: &[Vec<Value>],
        after: Option<&[Value]>,
        next: &Progress,
    ) -> Result<(), StoreError> {
        let name = quote(plan.table.name);
        let mut tx = self.target.pool().begin().await?;
        if plan.triggers {
            sqlx::query(&format!("ALTER TABLE {name} DISABLE TRIGGER USER")).execute(&mut *tx).await?;
        }
        if !rows.is_empty() {
            let (sql, values) = upsert_sql(plan, rows);
            let mut query = sqlx::query(&sql);
            for value in values {
                query = bind_pg(query, value);
            }
            query.execute(&mut *tx).await?;
        }
        // Target rows in (after, last key] — or past `after` when the source has no more — that
        // the source no longer has.
        let (sql, values) = delete_sql(plan, rows, after, next.done);
        let mut query = sqlx::query(&sql);
        for value in values {
            query = bind_pg(query, value);
        }
        query.execute(&mut *tx).await?;
        if plan.triggers {
            sqlx::query(&format!("ALTER TABLE {name} ENABLE TRIGGER USER")).execute(&mut *tx).await?;
        }
        let record = json!({
            "after": next.after.as_ref().map(|k| k.iter().map(Value::to_json).collect::<Vec<_>>()),
            "rows": next.rows,
            "done": next.done,
        });
        sqlx::query(
            "INSERT INTO kv (key, value) VALUES ($1, $2) ON CONFLICT (key) DO UPDATE SET value = excluded.value",
        )
        .bind(progress_key(plan.table.name))
        .bind(record.to_string())
        .execute(&mut *tx)
        .await?;
        tx.commit().await?;
        Ok(())
    }

    /// Moves every identity column past the highest id copied and past SQLite's
    /// `AUTOINCREMENT` counter of its table.
    async fn set_identities(&self) -> CopyResult<()> {
        let pool = self.target.pool();
        let has_sequence_table = source_has_table(&self.source, "sqlite_sequence").await?;
        for table in TABLES {
            let Some(plan) = self.plan(table).await? else { continue };
            for column in plan.columns.iter().filter(|c| c.kind == Kind::Int) {
                let sequence: Option<String> = sqlx::query_scalar("SELECT pg_get_serial_sequence($1, $2)")
                    .bind(quote(table.name))
                    .bind(&column.name)
                    .fetch_one(pool)
                    .await?;
                let Some(sequence) = sequence else { continue };
                let max: Option<i64> =
                    sqlx::query_scalar(&format!("SELECT max({}) FROM {}", quote(&column.name), quote(table.name)))
                        .fetch_one(pool)
                        .await?;
                let mut high = max.unwrap_or(0);
                let is_key = plan.key.len() == 1 && plan.columns[plan.key[0]].name == column.name;
                if has_sequence_table && is_key {
                    let counter: Option<i64> = sqlx::query_scalar("SELECT seq FROM sqlite_sequence WHERE name = ?")
                        .bind(table.name)
                        .fetch_optional(&self.source)
                        .await?;
                    high = high.max(counter.unwrap_or(0));
                }
                if high > 0 {
                    sqlx::query(
                        "SELECT setval($1::regclass, GREATEST($2, COALESCE(pg_sequence_last_value($1::regclass), 0)))",
                    )
                    .bind(&sequence)
                    .bind(high)
                    .execute(pool)
                    .await?;
                }
            }
        }
        Ok(())
    }

    async fn tally_source(&self, plan: &Plan, batch: usize) -> Result<Tally, StoreError> {
        let mut acc = Accumulator::default();
        let mut after: Option<Vec<Value>> = None;
        loop {
            let rows = self.read_source(plan, after.as_deref(), batch).await?;
            for row in &rows {
                acc.add(plan, row);
            }
            if rows.len() < batch {
                return Ok(acc.tally());
            }
            after = rows.last().map(|r| plan.key_of(r));
        }
    }

    async fn tally_target(&self, plan: &Plan, batch: usize) -> Result<Tally, StoreError> {
        let select = plan.columns.iter().map(pg_select).collect::<Vec<_>>().join(", ");
        let keys = plan.key_columns().map(|c| quote(&c.name)).collect::<Vec<_>>().join(", ");
        let mut acc = Accumulator::default();
        let mut after: Option<Vec<Value>> = None;
        loop {
            let mut n = 0;
            let lower = match &after {
                Some(_) => format!(
                    " AND ({keys}) > ({})",
                    plan.key_columns().map(|c| cast_param(&mut n, c)).collect::<Vec<_>>().join(", ")
                ),
                None => String::new(),
            };
            let sql = format!(
                "SELECT {select} FROM {} WHERE 1 = 1{lower}{} ORDER BY {keys} LIMIT {batch}",
                quote(plan.table.name),
                plan.filter_sql()
            );
            let mut query = sqlx::query(&sql);
            for value in after.iter().flatten() {
                query = bind_pg(query, value);
            }
            let rows = query.fetch_all(self.target.pool()).await?;
            let rows = rows.iter().map(|row| read_pg_row(plan, row)).collect::<Result<Vec<_>, _>>()?;
            for row in &rows {
                acc.add(plan, row);
            }
            if rows.len() < batch {
                return Ok(acc.tally());
            }
            after = rows.last().map(|r| plan.key_of(r));
        }
    }
}

/// A table's row count without hashing, for a table only one side has.
async fn count_source_only(pool: &SqlitePool, table: &str) -> Result<Tally, StoreError> {
    let n: i64 = sqlx::query_scalar(&format!("SELECT count(*) FROM {}", quote(table))).fetch_one(pool).await?;
    Ok(Tally { rows: u64::try_from(n).unwrap_or(0), digest: [0; 32] })
}

/// See [`count_source_only`].
async fn count_target_only(pool: &PgPool, table: &str) -> Result<Tally, StoreError> {
    let n: i64 = sqlx::query_scalar(&format!("SELECT count(*) FROM {}", quote(table))).fetch_one(pool).await?;
    Ok(Tally { rows: u64::try_from(n).unwrap_or(0), digest: [0; 32] })
}

fn into_store(e: CopyError) -> StoreError {
    match e {
        CopyError::Store(e) | CopyError::Table { source: e, .. } => e,
        CopyError::Refused(why) => StoreError::Conflict(why),
    }
}

async fn source_has_table(pool: &SqlitePool, name: &str) -> Result<bool, StoreError> {
    Ok(sqlx::query_scalar("SELECT EXISTS (SELECT 1 FROM sqlite_master WHERE type = 'table' AND name = ?)")
        .bind(name)
        .fetch_one(pool)
        .await?)
}

async fn target_has_table(pool: &PgPool, name: &str) -> Result<bool, StoreError> {
    Ok(sqlx::query_scalar("SELECT to_regclass($1) IS NOT NULL").bind(quote(name)).fetch_one(pool).await?)
}

/// The highest migration applied to the target (0 on a fresh database).
async fn target_schema(pool: &PgPool) -> Result<i64, StoreError> {
    if !target_has_table(pool, "_sqlx_migrations").await? {
        return Ok(0);
    }
    let v: Option<i64> =
        sqlx::query_scalar("SELECT max(version) FROM _sqlx_migrations WHERE success").fetch_one(pool).await?;
    Ok(v.unwrap_or(0))
}

/// `CAST($n AS type)` for the next parameter.
fn cast_param(n: &mut usize, column: &Column) -> String {
    *n += 1;
    format!("CAST(${n} AS {})", column.pg_type)
}

/// How the target's column is selected so it reads as its [`Kind`].
fn pg_select(column: &Column) -> String {
    let name = quote(&column.name);
    match column.kind {
        Kind::Int => format!("CAST({name} AS bigint)"),
        Kind::Float => format!("CAST({name} AS double precision)"),
        Kind::Bool | Kind::Bytes => name,
        Kind::Json | Kind::Text => format!("CAST({name} AS text)"),
    }
}

/// A key column compared in SQLite's order (text bytewise).
fn pg_key_in_source_order(column: &Column, alias: &str) -> String {
    match column.kind {
        Kind::Text | Kind::Json => format!("{alias}.{} COLLATE \"C\"", quote(&column.name)),
        _ => format!("{alias}.{}", quote(&column.name)),
    }
}

fn upsert_sql<'a>(plan: &Plan, rows: &'a [Vec<Value>]) -> (String, Vec<&'a Value>) {
    let name = quote(plan.table.name);
    let names = plan.columns.iter().map(|c| quote(&c.name)).collect::<Vec<_>>().join(", ");
    let mut n = 0;
    let mut values = Vec::with_capacity(rows.len() * plan.columns.len());
    let tuples = rows
        .iter()
        .map(|row| {
            values.extend(row.iter());
            format!("({})", plan.columns.iter().map(|c| cast_param(&mut n, c)).collect::<Vec<_>>().join(", "))
        })
        .collect::<Vec<_>>()
        .join(", ");
    let mut conditions = Vec::new();
    if let Some(filter) = plan.table.filter {
        conditions.push(format!("({filter})"));
    }
    if let Some((column, parent, parent_column)) = plan.table.parent {
        conditions.push(format!(
            "EXISTS (SELECT 1 FROM {} p WHERE p.{} = v.{})",
            quote(parent),
            quote(parent_column),
            quote(column)
        ));
    }
    let filter = if conditions.is_empty() { String::new() } else { format!(" WHERE {}", conditions.join(" AND ")) };
    let conflict = plan.key_columns().map(|c| quote(&c.name)).collect::<Vec<_>>().join(", ");
    let rest: Vec<&Column> =
        plan.columns.iter().enumerate().filter(|(i, _)| !plan.key.contains(i)).map(|(_, c)| c).collect();
    let on_conflict = if rest.is_empty() {
        "DO NOTHING".to_owned()
    } else {
        let set = rest.iter().map(|c| format!("{0} = EXCLUDED.{0}", quote(&c.name))).collect::<Vec<_>>().join(", ");
        // JSON has no equality operator: compare its text.
        let side = |alias: &str| {
            rest.iter()
                .map(|c| match c.pg_type.as_str() {
                    "json" => format!("{alias}.{}::text", quote(&c.name)),
                    _ => format!("{alias}.{}", quote(&c.name)),
                })
                .collect::<Vec<_>>()
                .join(", ")
        };
        format!("DO UPDATE SET {set} WHERE ROW({}) IS DISTINCT FROM ROW({})", side(&name), side("EXCLUDED"))
    };
    let sql = format!(
        "INSERT INTO {name} ({names}) SELECT * FROM (VALUES {tuples}) AS v ({names}){filter} \
         ON CONFLICT ({conflict}) {on_conflict}"
    );
    (sql, values)
}

fn delete_sql<'a>(
    plan: &Plan,
    rows: &'a [Vec<Value>],
    after: Option<&'a [Value]>,
    last: bool,
) -> (String, Vec<&'a Value>) {
    let mut n = 0;
    let mut values = Vec::new();
    let keys = plan.key_columns().map(|c| pg_key_in_source_order(c, "t")).collect::<Vec<_>>().join(", ");
    let mut conditions = Vec::new();
    if let Some(after) = after {
        values.extend(after.iter());
        let params = plan.key_columns().map(|c| cast_param(&mut n, c)).collect::<Vec<_>>().join(", ");
        conditions.push(format!("ROW({keys}) > ROW({params})"));
    }
    if let Some(last_row) = rows.last().filter(|_| !last) {
        values.extend(plan.key.iter().map(|&i| &last_row[i]));
        let params = plan.key_columns().map(|c| cast_param(&mut n, c)).collect::<Vec<_>>().join(", ");
        conditions.push(format!("ROW({keys}) <= ROW({params})"));
    }
    if let Some(filter) = plan.table.filter {
        conditions.push(format!("({filter})"));
    }
    if !rows.is_empty() {
        let key_names = plan.key_columns().map(|c| quote(&c.name)).collect::<Vec<_>>();
        let tuples = rows
            .iter()
            .map(|row| {
                values.extend(plan.key.iter().map(|&i| &row[i]));
                format!("({})", plan.key_columns().map(|c| cast_param(&mut n, c)).collect::<Vec<_>>().join(", "))
            })
            .collect::<Vec<_>>()
            .join(", ");
        let equal = key_names.iter().map(|k| format!("v.{k} = t.{k}")).collect::<Vec<_>>().join(" AND ");
        conditions.push(format!(
            "NOT EXISTS (SELECT 1 FROM (VALUES {tuples}) AS v ({}) WHERE {equal})",
            key_names.join(", ")
        ));
    }
    let conditions = if conditions.is_empty() { "TRUE".to_owned() } else { conditions.join(" AND ") };
    (format!("DELETE FROM {} AS t WHERE {conditions}", quote(plan.table.name)), values)
}

type SqliteQuery<'q> = sqlx::query::Query<'q, Sqlite, sqlx::sqlite::SqliteArguments<'q>>;
type PgQuery<'q> = sqlx::query::Query<'q, Postgres, sqlx::postgres::PgArguments>;

fn bind_sqlite<'q>(query: SqliteQuery<'q>, value: &Value) -> SqliteQuery<'q> {
    match value {
        Value::Null => query.bind(None::<i64>),
        Value::Int(i) => query.bind(*i),
        Value::Bool(b) => query.bind(i64::from(*b)),
        Value::Float(f) => query.bind(*f),
        Value::Bytes(b) => query.bind(b.clone()),
        Value::Text(s) => query.bind(s.clone()),
    }
}

fn bind_pg<'q>(query: PgQuery<'q>, value: &'q Value) -> PgQuery<'q> {
    match value {
        // The cast beside the parameter gives it its type; an untyped NULL is text.
        Value::Null => query.bind(None::<String>),
        Value::Int(i) => query.bind(*i),
        Value::Bool(b) => query.bind(*b),
        Value::Float(f) => query.bind(*f),
        Value::Bytes(b) => query.bind(b.as_slice()),
        Value::Text(s) => query.bind(s.as_str()),
    }
}

fn read_sqlite_row(plan: &Plan, row: &sqlx::sqlite::SqliteRow) -> Result<Vec<Value>, StoreError> {
    plan.columns
        .iter()
        .enumerate()
        .map(|(i, c)| {
            let value = match c.kind {
                Kind::Int => row.try_get::<Option<i64>, _>(i)?.map(Value::Int),
                Kind::Bool => row.try_get::<Option<i64>, _>(i)?.map(|v| Value::Bool(v != 0)),
                Kind::Float => row.try_get::<Option<f64>, _>(i)?.map(Value::Float),
                Kind::Bytes => row.try_get::<Option<Vec<u8>>, _>(i)?.map(Value::Bytes),
                Kind::Json | Kind::Text => row.try_get::<Option<String>, _>(i)?.map(Value::Text),
            };
            Ok(value.unwrap_or(Value::Null))
        })
        .collect::<Result<_, sqlx::Error>>()
        .map_err(|e| StoreError::Corrupt(format!("{}: {e}", plan.table.name)))
}

fn read_pg_row(plan: &Plan, row: &sqlx::postgres::PgRow) -> Result<Vec<Value>, StoreError> {
    plan.columns
        .iter()
        .enumerate()
        .map(|(i, c)| {
            let value = match c.kind {
                Kind::Int => row.try_get::<Option<i64>, _>(i)?.map(Value::Int),
                Kind::Bool => row.try_get::<Option<bool>, _>(i)?.map(Value::Bool),
                Kind::Float => row.try_get::<Option<f64>, _>(i)?.map(Value::Float),
                Kind::Bytes => row.try_get::<Option<Vec<u8>>, _>(i)?.map(Value::Bytes),
                Kind::Json | Kind::Text => row.try_get::<Option<String>, _>(i)?.map(Value::Text),
            };
            Ok(value.unwrap_or(Value::Null))
        })
        .collect::<Result<_, sqlx::Error>>()
        .map_err(StoreError::from)
}

/// Row count and the running sum of row hashes.
#[derive(Debug, Default)]
struct Accumulator {
    rows: u64,
    /// Four big-endian 64-bit limbs, most significant first.
    sum: [u64; 4],
}

impl Accumulator {
    fn add(&mut self, plan: &Plan, row: &[Value]) {
        self.rows += 1;
        let hash = row_hash(plan, row);
        let mut carry = 0u64;
        for limb in (0..4).rev() {
            let mut part = [0u8; 8];
            part.copy_from_slice(&hash[limb * 8..limb * 8 + 8]);
            let (s1, c1) = self.sum[limb].overflowing_add(u64::from_be_bytes(part));
            let (s2, c2) = s1.overflowing_add(carry);
            self.sum[limb] = s2;
            carry = u64::from(c1) + u64::from(c2);
        }
    }

    fn tally(&self) -> Tally {
        let mut digest = [0u8; 32];
        for (limb, value) in self.sum.iter().enumerate() {
            digest[limb * 8..limb * 8 + 8].copy_from_slice(&value.to_be_bytes());
        }
        Tally { rows: self.rows, digest }
    }
}

/// SHA-256 of a row's canonical form: per column `N` for NULL, else `V`, the length of its
/// canonical text (8 bytes, big-endian) and the text.
fn row_hash(plan: &Plan, row: &[Value]) -> [u8; 32] {
    let mut hasher = Sha256::new();
    for (column, value) in plan.columns.iter().zip(row) {
        let text: Cow<'_, [u8]> = match value {
            Value::Null => {
                hasher.update(b"N");
                continue;
            }
            Value::Int(i) => Cow::Owned(i.to_string().into_bytes()),
            Value::Bool(b) => Cow::Borrowed(if *b { b"true" } else { b"false" }),
            Value::Float(f) => Cow::Owned(canonical_float(*f).into_bytes()),
            Value::Bytes(b) => Cow::Borrowed(b),
            Value::Text(s) if column.kind == Kind::Json => Cow::Owned(canonical_json_text(s).into_bytes()),
            Value::Text(s) => Cow::Borrowed(s.as_bytes()),
        };
        hasher.update(b"V");
        hasher.update((text.len() as u64).to_be_bytes());
        hasher.update(&text);
    }
    hasher.finalize().into()
}

/// JSON text in one canonical spelling (PostgreSQL's `jsonb` reorders keys and respells
/// numbers); text that is not JSON stands for itself.
fn canonical_json_text(text: &str) -> String {
    match serde_json::from_str::<Json>(text) {
        Ok(value) => {
            let mut out = String::with_capacity(text.len());
            write_canonical(&value, &mut out);
            out
        }
        Err(_) => format!("!{text}"),
    }
}

fn write_canonical(value: &Json, out: &mut String) {
    use std::fmt::Write as _;
    match value {
        Json::Null | Json::Bool(_) | Json::String(_) => out.push_str(&value.to_string()),
        Json::Number(n) => match (n.as_i64(), n.as_u64(), n.as_f64()) {
            (Some(i), _, _) => {
                let _ = write!(out, "{i}");
            }
            (None, Some(u), _) => {
                let _ = write!(out, "{u}");
            }
            (None, None, Some(f)) => out.push_str(&canonical_float(f)),
            (None, None, None) => out.push_str(&n.to_string()),
        },
        Json::Array(items) => {
            out.push('[');
            for (i, item) in items.iter().enumerate() {
                if i > 0 {
                    out.push(',');
                }
                write_canonical(item, out);
            }
            out.push(']');
        }
        Json::Object(map) => {
            let mut entries: Vec<_> = map.iter().collect();
            entries.sort_by(|a, b| a.0.cmp(b.0));
            out.push('{');
            for (i, (key, item)) in entries.into_iter().enumerate() {
                if i > 0 {
                    out.push(',');
                }
                out.push_str(&Json::String(key.clone()).to_string());
                out.push(':');
                write_canonical(item, out);
            }
            out.push('}');
        }
    }
}

/// A float with an integral value below 2^53 as that integer (`1e3` and `1000` are one number),
/// else Rust's shortest round-trip spelling.
fn canonical_float(f: f64) -> String {
    const EXACT: f64 = 9_007_199_254_740_992.0;
    if f.is_finite() && f.fract() == 0.0 && f.abs() < EXACT {
        // In range and integral: the conversion is exact.
        #[allow(clippy::cast_possible_truncation)]
        let i = f as i64;
        i.to_string()
    } else {
        format!("{f:?}")
    }
}

impl fmt::Display for Tally {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{} rows, {}", self.rows, self.short())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn canonical_json_ignores_key_order_spacing_and_number_spelling() {
        assert_eq!(canonical_json_text(r#"{"b": 1, "a": [1.0, 1e3, "x"]}"#), r#"{"a":[1,1000,"x"],"b":1}"#);
        assert_eq!(
            canonical_json_text(r#"{"a":[1,1000,"x"],"b":1}"#),
            canonical_json_text(r#"{ "b":1 ,"a":[1, 1000, "x"] }"#)
        );
        assert_eq!(canonical_json_text("0.5"), "0.5");
        assert_eq!(canonical_json_text("not json"), "!not json");
    }

    #[test]
    fn the_digest_does_not_depend_on_row_order_but_on_every_value() {
        let plan = Plan {
            table: Table::new("t", &["id"]),
            columns: vec![
                Column { name: "id".into(), source: "id".into(), pg_type: "bigint".into(), kind: Kind::Int },
                Column { name: "v".into(), source: "v".into(), pg_type: "text".into(), kind: Kind::Text },
            ],
            key: vec![0],
            triggers: false,
        };
        let rows: Vec<Vec<Value>> = (0..50).map(|i| vec![Value::Int(i), Value::Text(format!("row {i}"))]).collect();
        let mut forward = Accumulator::default();
        rows.iter().for_each(|r| forward.add(&plan, r));
        let mut backward = Accumulator::default();
        rows.iter().rev().for_each(|r| backward.add(&plan, r));
        assert_eq!(forward.tally(), backward.tally());

        let mut changed = Accumulator::default();
        for (i, row) in rows.iter().enumerate() {
            let mut row = row.clone();
            if i == 17 {
                row[1] = Value::Text("row 17 tampered".into());
            }
            changed.add(&plan, &row);
        }
        assert_eq!(changed.tally().rows, forward.tally().rows);
        assert_ne!(changed.tally().digest, forward.tally().digest);
        // NULL and the empty string are different values.
        assert_ne!(
            row_hash(&plan, &[Value::Int(1), Value::Null]),
            row_hash(&plan, &[Value::Int(1), Value::Text(String::new())])
        );
    }

    /// Every table the SQLite migrations create is either copied or named as left behind: a
    /// migration adding a table must say which (see [`TABLES`]).
    #[tokio::test]
    async fn every_sqlite_table_is_copied_or_deliberately_left_out() {
        let store = crate::SqliteStore::open_in_memory().await.expect("open");
        let tables: Vec<String> =
            sqlx::query_scalar("SELECT name FROM sqlite_master WHERE type = 'table' ORDER BY name")
                .fetch_all(store.pool())
                .await
                .expect("tables");
        let missing: Vec<&String> = tables
            .iter()
            .filter(|t| !TABLES.iter().any(|c| c.name == t.as_str()) && !NOT_COPIED.contains(&t.as_str()))
            .collect();
        assert!(
            missing.is_empty(),
            "tables neither in copy::TABLES nor in copy::NOT_COPIED (crates/clawgate-store/src/copy.rs): {missing:?}"
        );
        let stale: Vec<&str> = TABLES.iter().map(|t| t.name).filter(|name| !tables.iter().any(|t| t == name)).collect();
        assert!(stale.is_empty(), "copy::TABLES names tables the schema does not have: {stale:?}");
    }
}
