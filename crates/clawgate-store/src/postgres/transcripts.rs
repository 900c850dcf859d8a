//! [`TranscriptStore`] on the `transcript_entries` and `transcript_heads` tables.

use serde_json::Value;
use sqlx::PgConnection;

use super::{PgStore, count};
use crate::{EntryStatus, Result, StoreError, TranscriptEntry, TranscriptRole, TranscriptStore};

/// The columns of an entry, without the internal rowid.
const ENTRY_COLUMNS: &str = "session_id, seq, role, content, run_id, status, created_at_ms";

/// The newest entries below a seq, newest first: a range scan of the `(session_id, seq)`
/// index from its upper end that stops after `LIMIT` rows, however long the transcript.
/// Reversed in Rust rather than by an outer `ORDER BY`, which would sort through a temp b-tree.
const TAIL_SQL: &str = "SELECT session_id, seq, role, content, run_id, status, created_at_ms \
     FROM transcript_entries WHERE session_id = $1 AND seq < $2 ORDER BY seq DESC LIMIT $3";

/// Appends one entry on `conn`, inside the caller's write transaction: the head hands out the
/// seq, the entry is written, the session's activity follows. Returns the seq.
pub(super) async fn append_on(
    conn: &mut PgConnection,
    session_id: &str,
    role: TranscriptRole,
    content: &Value,
    run_id: Option<&str>,
    status: EntryStatus,
    now_ms: i64,
) -> Result<i64> {
    let seq: i64 = sqlx::query_scalar(
        "INSERT INTO transcript_heads (session_id, session_key, last_seq, entry_count, last_at_ms) \
         VALUES ($1, (SELECT key FROM sessions WHERE session_id = $1), 1, 1, $2) \
         ON CONFLICT (session_id) DO UPDATE SET \
             last_seq = transcript_heads.last_seq + 1, \
             entry_count = transcript_heads.entry_count + 1, \
             last_at_ms = GREATEST(transcript_heads.last_at_ms, excluded.last_at_ms), \
             session_key = COALESCE(transcript_heads.session_key, excluded.session_key) \
         RETURNING last_seq",
    )
    .bind(session_id)
    .bind(now_ms)
    .fetch_one(&mut *conn)
    .await?;
    // Nothing is read back: every column is an input, and a `RETURNING content` would bring
    // a large message back through SQLite, the driver and the JSON parser while the written
    // copies are still alive (a 25 MiB message cost ~75 MB more at the peak).
    sqlx::query(&format!("INSERT INTO transcript_entries ({ENTRY_COLUMNS}) VALUES ($1, $2, $3, $4, $5, $6, $7)"))
        .bind(session_id)
        .bind(seq)
        .bind(role)
        .bind(content)
        .bind(run_id)
        .bind(status)
        .bind(now_ms)
        .execute(&mut *conn)
        .await?;
    sqlx::query("UPDATE sessions SET updated_at_ms = GREATEST(updated_at_ms, $1) WHERE session_id = $2")
        .bind(now_ms)
        .bind(session_id)
        .execute(&mut *conn)
        .await?;
    Ok(seq)
}

impl TranscriptStore for PgStore {
    async fn append(
        &self,
        session_id: &str,
        role: TranscriptRole,
        content: &Value,
        run_id: Option<&str>,
        status: EntryStatus,
        now_ms: i64,
    ) -> Result<TranscriptEntry> {
        // One write transaction: the head hands out the seq, the entry is written, the
        // session's activity follows — all or nothing, and no other writer in between.
        let mut tx = self.begin_write().await?;
        let seq = append_on(&mut tx, session_id, role, content, run_id, status, now_ms).await?;
        self.commit(tx).await?;
        Ok(TranscriptEntry {
            session_id: session_id.to_owned(),
            seq,
            role,
            content: content.clone(),
            run_id: run_id.map(str::to_owned),
            status,
            created_at_ms: now_ms,
        })
    }

    async fn tail(&self, session_id: &str, limit: usize, before_seq: Option<i64>) -> Result<Vec<TranscriptEntry>> {
        let mut rows = sqlx::query_as::<_, TranscriptEntry>(TAIL_SQL)
            .bind(session_id)
            .bind(before_seq.unwrap_or(i64::MAX))
            .bind(i64::try_from(limit).unwrap_or(i64::MAX))
            .fetch_all(self.pool())
            .await?;
        rows.reverse();
        Ok(rows)
    }

    async fn get_entry(&self, session_id: &str, seq: i64) -> Result<Option<TranscriptEntry>> {
        sqlx::query_as::<_, TranscriptEntry>(&format!(
            "SELECT {ENTRY_COLUMNS} FROM transcript_entries WHERE session_id = $1 AND seq = $2"
        ))
        .bind(session_id)
        .bind(seq)
        .fetch_optional(self.pool())
        .await
        .map_err(StoreError::from)
    }

    async fn count_entries(&self, session_id: &str) -> Result<u64> {
        let entries: Option<i64> = sqlx::query_scalar("SELECT entry_count FROM transcript_heads WHERE session_id = $1")
            .bind(session_id)
            .fetch_optional(self.pool())
            .await?;
        count("transcript entry", entries.unwrap_or(0))
    }

    async fn compact(&self, session_id: &str, keep_last: usize) -> Result<u64> {
        let mut tx = self.begin_write().await?;
        // The newest entry that goes is the one `keep_last` places below the top; it and
        // everything older are deleted. Fewer entries than that: the subquery finds nothing.
        let deleted = sqlx::query(
            "DELETE FROM transcript_entries WHERE session_id = $1 AND seq <= \
                 (SELECT seq FROM transcript_entries WHERE session_id = $1 \
                  ORDER BY seq DESC LIMIT 1 OFFSET $2)",
        )
        .bind(session_id)
        .bind(i64::try_from(keep_last).unwrap_or(i64::MAX))
        .execute(&mut *tx)
        .await?
        .rows_affected();
        if deleted > 0 {
            // Recounted rather than decremented: what is left is small, and a count that had
            // drifted (it cannot, but) is repaired here.
            sqlx::query(
                "UPDATE transcript_heads SET entry_count = \
                     (SELECT COUNT(*) FROM transcript_entries WHERE session_id = $1) \
                 WHERE session_id = $1",
            )
            .bind(session_id)
            .execute(&mut *tx)
            .await?;
        }
        self.commit(tx).await?;
        if deleted > 0 {
            tracing::debug!(session_id, deleted, keep_last, "transcript compacted");
        }
        Ok(deleted)
    }

    async fn find_by_run(&self, run_id: &str) -> Result<Vec<TranscriptEntry>> {
        sqlx::query_as::<_, TranscriptEntry>(&format!(
            "SELECT {ENTRY_COLUMNS} FROM transcript_entries WHERE run_id = $1 ORDER BY id"
        ))
        .bind(run_id)
        .fetch_all(self.pool())
        .await
        .map_err(StoreError::from)
    }
}
