//! The one error type of the store, shaped by what the caller can do about it.

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
    /// The database could not be reached or refused the operation (I/O, locked past the busy
    /// timeout, pool closed, failed migration). Usually transient: retry later or report the
    /// store as unhealthy. The source holds details that must not be sent to clients.
    #[error("storage unavailable")]
    Unavailable {
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
    /// Wraps any error as [`StoreError::Unavailable`].
    pub(crate) fn unavailable(source: impl Into<Box<dyn std::error::Error + Send + Sync>>) -> Self {
        Self::Unavailable { source: source.into() }
    }
}

impl From<sqlx::Error> for StoreError {
    fn from(err: sqlx::Error) -> Self {
        match err {
            // Reading a row back failed: the data, not the database, is at fault.
            sqlx::Error::ColumnDecode { .. }
            | sqlx::Error::Decode(_)
            | sqlx::Error::ColumnNotFound(_)
            | sqlx::Error::ColumnIndexOutOfBounds { .. }
            | sqlx::Error::TypeNotFound { .. } => StoreError::Corrupt(err.to_string()),
            sqlx::Error::RowNotFound => StoreError::NotFound,
            other => StoreError::unavailable(other),
        }
    }
}

impl From<sqlx::migrate::MigrateError> for StoreError {
    fn from(err: sqlx::migrate::MigrateError) -> Self {
        StoreError::unavailable(err)
    }
}

impl From<std::io::Error> for StoreError {
    fn from(err: std::io::Error) -> Self {
        StoreError::unavailable(err)
    }
}
