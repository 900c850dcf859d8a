//! Backups of the SQLite state: an online, consistent copy taken while a gateway writes, and
//! the checks a restore makes before it trusts a file.
//!
//! The copy is `VACUUM INTO`: one read transaction over the source, so the copy is the database
//! as of one commit, whatever the gateway writes meanwhile (WAL readers never block the writer
//! and the writer never blocks them). It needs no `unsafe` (SQLite's C backup API is not exposed
//! by sqlx) and produces a compact file with no WAL beside it.
//!
//! These functions open the files themselves and never run migrations: a backup must not
//! upgrade the schema of a database a running (perhaps older) gateway is using, and a restore
//! must look at a file before anything trusts it. A backup carries small named texts
//! ("attachments", e.g. the config file as written) in a table of its own, which
//! [`SqliteStore::strip_backup_attachments`] removes before the file becomes a live state.

use std::collections::BTreeMap;
use std::path::Path;

use sqlx::sqlite::{SqliteConnectOptions, SqliteConnection};
use sqlx::{ConnectOptions, Connection};

use super::{BUSY_TIMEOUT, MIGRATOR, SqliteStore};
use crate::{Fault, StoreError};

/// The table a backup keeps its attachments in. Not part of the schema: a restore drops it.
const ATTACHMENTS_TABLE: &str = "clawgate_backup";

/// Why a file cannot be backed up or restored.
#[derive(Debug, thiserror::Error)]
pub enum BackupError {
    /// The file is not a SQLite database at all.
    #[error("not a SQLite database")]
    NotSqlite,
    /// A SQLite database, but not one clawgate made (no schema history).
    #[error("a SQLite database, but not a clawgate state (it has no clawgate schema history)")]
    NotClawgate,
    /// Made by a newer clawgate: this one does not know its schema.
    #[error("its schema version {found} is newer than this clawgate's ({known}); use a newer clawgate")]
    Newer {
        /// The highest schema version in the file.
        found: i64,
        /// The highest this build knows.
        known: i64,
    },
    /// Its schema history disagrees with this clawgate's (a migration this build does not have
    /// at a version it knows, or one that was changed).
    #[error("its schema history differs from this clawgate's at version {version}")]
    Foreign {
        /// The first version that differs.
        version: i64,
    },
    /// Reading or writing the files failed.
    #[error(transparent)]
    Store(#[from] StoreError),
}

/// What a state file (a live database or a backup) holds, as far as a restore cares.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StateFileInfo {
    /// The highest schema migration applied to it.
    pub schema_version: i64,
    /// Whether its schema is older than this build's (a gateway upgrades it at start).
    pub needs_upgrade: bool,
    /// The backup's attachments (empty for a live database).
    pub attachments: BTreeMap<String, String>,
}

impl SqliteStore {
    /// Copies the clawgate database at `source` into `dest` as one consistent snapshot, safe
    /// while a gateway is writing to `source`, and stores `attachments` in the copy. `dest` must
    /// not exist or be empty (SQLite refuses to overwrite a database). `source` is checked first
    /// ([`SqliteStore::inspect_state_file`]), and never migrated or otherwise written.
    pub async fn backup_into(
        source: &Path,
        dest: &Path,
        attachments: &BTreeMap<String, String>,
    ) -> Result<StateFileInfo, BackupError> {
        let mut conn = open_existing(source, true).await?;
        let mut info = schema_of(&mut conn).await?;
        let dest_text = dest.to_str().ok_or_else(|| {
            StoreError::from(std::io::Error::new(std::io::ErrorKind::InvalidInput, "backup path is not UTF-8"))
        })?;
        sqlx::query("VACUUM INTO ?").bind(dest_text).execute(&mut conn).await.map_err(StoreError::from)?;
        conn.close().await.map_err(StoreError::from)?;

        let mut copy = open_existing(dest, false).await?;
        let write = async {
            sqlx::query(&format!(
                "CREATE TABLE {ATTACHMENTS_TABLE} (name TEXT PRIMARY KEY, value TEXT NOT NULL) STRICT"
            ))
            .execute(&mut copy)
            .await?;
            for (name, value) in attachments {
                sqlx::query(&format!("INSERT INTO {ATTACHMENTS_TABLE} (name, value) VALUES (?, ?)"))
                    .bind(name)
                    .bind(value)
                    .execute(&mut copy)
                    .await?;
            }
            Ok::<_, sqlx::Error>(())
        };
        write.await.map_err(StoreError::from)?;
        copy.close().await.map_err(StoreError::from)?;
        // The copy is only a backup once it is on disk.
        tokio::fs::File::open(dest).await.map_err(StoreError::from)?.sync_all().await.map_err(StoreError::from)?;
        info.attachments = attachments.clone();
        Ok(info)
    }

    /// Checks that `path` is a clawgate state this build can run on (a live database or a
    /// backup), without changing it, and reads a backup's attachments.
    pub async fn inspect_state_file(path: &Path) -> Result<StateFileInfo, BackupError> {
        let mut conn = open_existing(path, true).await?;
        let mut info = schema_of(&mut conn).await?;
        info.attachments = read_attachments(&mut conn).await?;
        conn.close().await.map_err(StoreError::from)?;
        Ok(info)
    }

    /// Removes a backup's attachments from `path`, which is about to become a live state.
    pub async fn strip_backup_attachments(path: &Path) -> Result<(), BackupError> {
        let mut conn = open_existing(path, false).await?;
        schema_of(&mut conn).await?;
        sqlx::query(&format!("DROP TABLE IF EXISTS {ATTACHMENTS_TABLE}"))
            .execute(&mut conn)
            .await
            .map_err(StoreError::from)?;
        conn.close().await.map_err(StoreError::from)?;
        Ok(())
    }
}

/// One connection to an existing database file, without migrations or journal-mode changes.
async fn open_existing(path: &Path, read_only: bool) -> Result<SqliteConnection, BackupError> {
    if !tokio::fs::try_exists(path).await.map_err(StoreError::from)? {
        return Err(StoreError::from(std::io::Error::new(
            std::io::ErrorKind::NotFound,
            format!("{} does not exist", path.display()),
        ))
        .into());
    }
    let options = SqliteConnectOptions::new()
        .filename(path)
        .create_if_missing(false)
        .read_only(read_only)
        .busy_timeout(BUSY_TIMEOUT);
    options.connect().await.map_err(|e| classify(StoreError::from(e)))
}

/// `SQLITE_NOTADB` reads as a corrupt database; for a file someone hands us it means "not a
/// database".
fn classify(e: StoreError) -> BackupError {
    match e {
        StoreError::Unavailable { fault: Fault::Corrupt, .. } => BackupError::NotSqlite,
        other => BackupError::Store(other),
    }
}

async fn schema_of(conn: &mut SqliteConnection) -> Result<StateFileInfo, BackupError> {
    let has_history: i64 =
        sqlx::query_scalar("SELECT count(*) FROM sqlite_master WHERE type = 'table' AND name = '_sqlx_migrations'")
            .fetch_one(&mut *conn)
            .await
            .map_err(|e| classify(StoreError::from(e)))?;
    if has_history == 0 {
        return Err(BackupError::NotClawgate);
    }
    let applied: Vec<(i64, Vec<u8>)> =
        sqlx::query_as("SELECT version, checksum FROM _sqlx_migrations WHERE success = 1 ORDER BY version")
            .fetch_all(&mut *conn)
            .await
            .map_err(|e| classify(StoreError::from(e)))?;
    let known = MIGRATOR.iter().map(|m| m.version).max().unwrap_or(0);
    let Some(&(found, _)) = applied.last() else {
        return Err(BackupError::NotClawgate);
    };
    if found > known {
        return Err(BackupError::Newer { found, known });
    }
    for (version, checksum) in &applied {
        let ours = MIGRATOR.iter().find(|m| m.version == *version);
        if ours.is_none_or(|m| m.checksum.as_ref() != checksum.as_slice()) {
            return Err(BackupError::Foreign { version: *version });
        }
    }
    Ok(StateFileInfo { schema_version: found, needs_upgrade: found < known, attachments: BTreeMap::new() })
}

async fn read_attachments(conn: &mut SqliteConnection) -> Result<BTreeMap<String, String>, BackupError> {
    let has: i64 = sqlx::query_scalar("SELECT count(*) FROM sqlite_master WHERE type = 'table' AND name = ?")
        .bind(ATTACHMENTS_TABLE)
        .fetch_one(&mut *conn)
        .await
        .map_err(StoreError::from)?;
    if has == 0 {
        return Ok(BTreeMap::new());
    }
    let rows: Vec<(String, String)> = sqlx::query_as(&format!("SELECT name, value FROM {ATTACHMENTS_TABLE}"))
        .fetch_all(&mut *conn)
        .await
        .map_err(StoreError::from)?;
    Ok(rows.into_iter().collect())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::KvStore;

    #[tokio::test]
    async fn a_backup_of_a_store_in_use_is_a_complete_state_with_its_attachments() {
        let dir = tempfile::tempdir().unwrap();
        let live = dir.path().join("clawgate.db");
        let store = SqliteStore::open(&live).await.unwrap();
        store.set("k", "before").await.unwrap();
        let backup = dir.path().join("backup.db");
        let attachments = BTreeMap::from([("config".to_owned(), "{gateway: {port: 1}}".to_owned())]);
        // The store stays open and in use: the backup is taken beside it.
        let info = SqliteStore::backup_into(&live, &backup, &attachments).await.unwrap();
        store.set("k", "after").await.unwrap();
        assert!(!info.needs_upgrade);

        let read = SqliteStore::inspect_state_file(&backup).await.unwrap();
        assert_eq!(read.attachments, attachments);
        assert_eq!(read.schema_version, info.schema_version);
        SqliteStore::strip_backup_attachments(&backup).await.unwrap();
        assert!(SqliteStore::inspect_state_file(&backup).await.unwrap().attachments.is_empty());
        let restored = SqliteStore::open(&backup).await.unwrap();
        assert_eq!(restored.get("k").await.unwrap().as_deref(), Some("before"), "the snapshot's value");
        restored.close().await.unwrap();
        store.close().await.unwrap();
    }

    #[tokio::test]
    async fn files_that_are_not_a_clawgate_state_are_named_as_such() {
        let dir = tempfile::tempdir().unwrap();
        let text = dir.path().join("notes.txt");
        std::fs::write(&text, "hello, this is not a database at all, just some text").unwrap();
        let err = SqliteStore::inspect_state_file(&text).await.unwrap_err();
        assert!(matches!(err, BackupError::NotSqlite), "{err:?}");

        let other = dir.path().join("other.db");
        let mut conn = SqliteConnectOptions::new().filename(&other).create_if_missing(true).connect().await.unwrap();
        sqlx::query("CREATE TABLE t (x)").execute(&mut conn).await.unwrap();
        conn.close().await.unwrap();
        let err = SqliteStore::inspect_state_file(&other).await.unwrap_err();
        assert!(matches!(err, BackupError::NotClawgate), "{err:?}");

        let newer = dir.path().join("newer.db");
        SqliteStore::open(&newer).await.unwrap().close().await.unwrap();
        let mut conn = SqliteConnectOptions::new().filename(&newer).connect().await.unwrap();
        sqlx::query(
            "INSERT INTO _sqlx_migrations (version, description, success, checksum, execution_time) \
             VALUES (99999, 'from the future', 1, x'00', 0)",
        )
        .execute(&mut conn)
        .await
        .unwrap();
        conn.close().await.unwrap();
        let err = SqliteStore::inspect_state_file(&newer).await.unwrap_err();
        assert!(matches!(err, BackupError::Newer { found: 99999, .. }), "{err:?}");
        assert!(err.to_string().contains("newer"), "{err}");

        let missing = SqliteStore::inspect_state_file(&dir.path().join("absent.db")).await.unwrap_err();
        assert!(matches!(missing, BackupError::Store(_)), "{missing:?}");
    }
}
