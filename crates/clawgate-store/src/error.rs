//! The one error type of the store, shaped by what the caller can do about it.

use std::fmt;

/// Why the database could not do what was asked, as far as the caller can act on it. Every
/// storage failure is classified into one of these where it is converted
/// ([`From<sqlx::Error>`](StoreError#impl-From<Error>-for-StoreError)), so no caller has to read
/// driver messages to tell a full disk from a busy lock.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Fault {
    /// The filesystem (or SQLite's size limit) has no room (`SQLITE_FULL`, `ENOSPC`). Clears
    /// when space is freed; the store reports itself degraded until a write succeeds.
    DiskFull,
    /// Reading or writing the files failed (`SQLITE_IOERR`, `SQLITE_CANTOPEN`, read-only
    /// filesystem, other OS errors). The store reports itself degraded until a write succeeds.
    Io,
    /// Another connection or process held the lock past the busy timeout, or the pool had no
    /// free connection in time. Transient.
    Busy,
    /// The database file is damaged (`SQLITE_CORRUPT`, `SQLITE_NOTADB`).
    Corrupt,
    /// A constraint refused the write (unique, foreign key, check).
    Constraint,
    /// The store was closed (shutdown).
    Closed,
    /// Anything else the driver reported.
    Other,
}

impl Fault {
    /// Whether this fault means the storage itself is failing (as opposed to one statement):
    /// the store is then "degraded" until the next successful write.
    pub fn degrades(self) -> bool {
        matches!(self, Fault::DiskFull | Fault::Io)
    }
}

impl fmt::Display for Fault {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Fault::DiskFull => "disk full",
            Fault::Io => "I/O error",
            Fault::Busy => "database busy",
            Fault::Corrupt => "database corrupt",
            Fault::Constraint => "constraint violated",
            Fault::Closed => "store closed",
            Fault::Other => "database error",
        })
    }
}

/// A failed store operation.
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    /// The addressed record does not exist. Answer "not found"; retrying will not help.
    #[error("not found")]
    NotFound,
    /// The operation contradicts the stored state (e.g. resolving a request that is already
    /// resolved). Re-read and decide again; the message says what conflicted.
    #[error("conflict: {0}")]
    Conflict(String),
    /// The database could not be reached or refused the operation (full disk, I/O, locked past
    /// the busy timeout, pool closed, failed migration). `fault` says which; disk full, I/O and
    /// busy are usually transient: retry later. The source holds details that must not be sent
    /// to clients.
    #[error("storage unavailable: {fault}")]
    Unavailable {
        /// What kind of failure it was.
        fault: Fault,
        /// The underlying driver or I/O error.
        #[source]
        source: Box<dyn std::error::Error + Send + Sync + 'static>,
    },
    /// A stored row could not be understood (bad JSON in a list column, unknown enum value,
    /// wrong column type). Retrying will not help; the row needs repair.
    #[error("corrupt stored data: {0}")]
    Corrupt(String),
}

impl StoreError {
    /// Wraps any error as [`StoreError::Unavailable`] of an unclassified kind.
    pub(crate) fn unavailable(source: impl Into<Box<dyn std::error::Error + Send + Sync>>) -> Self {
        Self::Unavailable { fault: Fault::Other, source: source.into() }
    }

    /// The storage fault behind this error, if it is one (`Corrupt` rows count as
    /// [`Fault::Corrupt`]; `NotFound` and `Conflict` are answers, not faults).
    pub fn fault(&self) -> Option<Fault> {
        match self {
            StoreError::Unavailable { fault, .. } => Some(*fault),
            StoreError::Corrupt(_) => Some(Fault::Corrupt),
            StoreError::NotFound | StoreError::Conflict(_) => None,
        }
    }
}

/// SQLite primary result codes (the low byte of an extended code).
mod sqlite_codes {
    pub const BUSY: i64 = 5;
    pub const LOCKED: i64 = 6;
    pub const READONLY: i64 = 8;
    pub const IOERR: i64 = 10;
    pub const CORRUPT: i64 = 11;
    pub const FULL: i64 = 13;
    pub const CANTOPEN: i64 = 14;
    pub const CONSTRAINT: i64 = 19;
    pub const NOTADB: i64 = 26;
}

/// `ENOSPC` on Linux and the BSDs: the one OS error that means "no room".
const ENOSPC: i32 = 28;

fn classify_io(err: &std::io::Error) -> Fault {
    if err.kind() == std::io::ErrorKind::StorageFull || err.raw_os_error() == Some(ENOSPC) {
        Fault::DiskFull
    } else {
        Fault::Io
    }
}

/// The fault of a SQLite result code (extended codes are reduced to their primary code).
fn classify_sqlite_code(code: i64) -> Fault {
    use sqlite_codes::*;
    match code & 0xff {
        FULL => Fault::DiskFull,
        IOERR | CANTOPEN | READONLY => Fault::Io,
        BUSY | LOCKED => Fault::Busy,
        CORRUPT | NOTADB => Fault::Corrupt,
        CONSTRAINT => Fault::Constraint,
        _ => Fault::Other,
    }
}

/// The fault of a PostgreSQL SQLSTATE (by its class, the first two characters, where the whole
/// class means one thing).
fn classify_sqlstate(code: &str) -> Fault {
    match code {
        "53100" => Fault::DiskFull,
        // Serialization failure, deadlock, lock not available, statement timeout, too many
        // connections, the server starting up: transient.
        "40001" | "40P01" | "55P03" | "57014" | "53300" | "57P03" => Fault::Busy,
        // Admin or crash shutdown of the server: the store cannot serve until it is back.
        "57P01" | "57P02" => Fault::Closed,
        "XX001" | "XX002" => Fault::Corrupt,
        _ => match code.get(..2) {
            Some("23") => Fault::Constraint,
            // Insufficient resources (out of memory, ...), system errors (I/O), connection lost.
            Some("53" | "58" | "08") => Fault::Io,
            _ => Fault::Other,
        },
    }
}

fn classify(err: &sqlx::Error) -> Fault {
    match err {
        sqlx::Error::Database(db) => match db.try_downcast_ref::<sqlx::postgres::PgDatabaseError>() {
            Some(pg) => classify_sqlstate(pg.code()),
            None => db.code().and_then(|c| c.parse::<i64>().ok()).map(classify_sqlite_code).unwrap_or(Fault::Other),
        },
        sqlx::Error::Io(io) => classify_io(io),
        sqlx::Error::PoolTimedOut => Fault::Busy,
        sqlx::Error::PoolClosed | sqlx::Error::WorkerCrashed => Fault::Closed,
        _ => Fault::Other,
    }
}

impl From<sqlx::Error> for StoreError {
    fn from(err: sqlx::Error) -> Self {
        match err {
            // A stored enum refused its text: keep the store's own error (it names the enum and
            // the spelling) rather than the driver's wrapper.
            sqlx::Error::ColumnDecode { index, source } => match source.downcast::<StoreError>() {
                Ok(ours) => *ours,
                Err(source) => StoreError::Corrupt(format!("cannot decode column {index}: {source}")),
            },
            // Reading a row back failed: the data, not the database, is at fault.
            sqlx::Error::Decode(_)
            | sqlx::Error::ColumnNotFound(_)
            | sqlx::Error::ColumnIndexOutOfBounds { .. }
            | sqlx::Error::TypeNotFound { .. } => StoreError::Corrupt(err.to_string()),
            sqlx::Error::RowNotFound => StoreError::NotFound,
            other => StoreError::Unavailable { fault: classify(&other), source: Box::new(other) },
        }
    }
}

impl From<sqlx::migrate::MigrateError> for StoreError {
    fn from(err: sqlx::migrate::MigrateError) -> Self {
        match err {
            sqlx::migrate::MigrateError::Execute(inner) => StoreError::from(inner),
            other => StoreError::unavailable(other),
        }
    }
}

impl From<std::io::Error> for StoreError {
    fn from(err: std::io::Error) -> Self {
        StoreError::Unavailable { fault: classify_io(&err), source: Box::new(err) }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sqlite_codes_are_classified_by_their_primary_code() {
        assert_eq!(classify_sqlite_code(13), Fault::DiskFull);
        assert_eq!(classify_sqlite_code(10 | (3 << 8)), Fault::Io, "SQLITE_IOERR_WRITE");
        assert_eq!(classify_sqlite_code(5 | (1 << 8)), Fault::Busy, "SQLITE_BUSY_RECOVERY");
        assert_eq!(classify_sqlite_code(11), Fault::Corrupt);
        assert_eq!(classify_sqlite_code(2067), Fault::Constraint, "SQLITE_CONSTRAINT_UNIQUE");
        assert_eq!(classify_sqlite_code(1), Fault::Other);
    }

    #[test]
    fn sqlstates_are_classified_by_code_then_class() {
        assert_eq!(classify_sqlstate("53100"), Fault::DiskFull);
        assert_eq!(classify_sqlstate("23505"), Fault::Constraint, "unique_violation");
        assert_eq!(classify_sqlstate("40P01"), Fault::Busy, "deadlock_detected");
        assert_eq!(classify_sqlstate("58030"), Fault::Io, "io_error");
        assert_eq!(classify_sqlstate("57P01"), Fault::Closed, "admin_shutdown");
        assert_eq!(classify_sqlstate("XX001"), Fault::Corrupt, "data_corrupted");
        assert_eq!(classify_sqlstate("42601"), Fault::Other, "syntax_error");
    }

    #[test]
    fn enospc_is_disk_full_and_other_io_is_io() {
        let full = StoreError::from(std::io::Error::from_raw_os_error(ENOSPC));
        assert_eq!(full.fault(), Some(Fault::DiskFull));
        assert_eq!(full.to_string(), "storage unavailable: disk full");
        let denied = StoreError::from(std::io::Error::from(std::io::ErrorKind::PermissionDenied));
        assert_eq!(denied.fault(), Some(Fault::Io));
        assert!(Fault::DiskFull.degrades() && Fault::Io.degrades() && !Fault::Busy.degrades());
    }
}
