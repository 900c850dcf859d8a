//! [`TranscriptStore`] on the `transcript_entries` and `transcript_heads` tables.

use serde_json::Value;
use sqlx::SqliteConnection;

use super::{SqliteStore, count};
use crate::{EntryStatus, Result, StoreError, TranscriptEntry, TranscriptRole, TranscriptStore};

/// The columns of an entry, without the internal rowid.
const ENTRY_COLUMNS: &str = "session_id, seq, role, content, run_id, status, created_at_ms";

/// The newest entries below a seq, newest first: a range scan of the `(session_id, seq)`
/// index from its upper end that stops after `LIMIT` rows, however long the transcript.
/// Reversed in Rust rather than by an outer `ORDER BY`, which would sort through a temp b-tree.
const TAIL_SQL: &str = "SELECT session_id, seq, role, content, run_id, status, created_at_ms \
     FROM transcript_entries WHERE session_id = ? AND seq < ? ORDER BY seq DESC LIMIT ?";

/// Appends one entry on `conn`, inside the caller's write transaction: the head hands out the
/// seq, the entry is written, the session's activity follows. Returns the seq.
pub(super) async fn append_on(
    conn: &mut SqliteConnection,
    session_id: &str,
    role: TranscriptRole,
    content: &Value,
    run_id: Option<&str>,
    status: EntryStatus,
    now_ms: i64,
) -> Result<i64> {
    let seq: i64 = sqlx::query_scalar(
        "INSERT INTO transcript_heads (session_id, session_key, last_seq, entry_count, last_at_ms) \
         VALUES (?1, (SELECT key FROM sessions WHERE session_id = ?1), 1, 1, ?2) \
         ON CONFLICT (session_id) DO UPDATE SET \
             last_seq = last_seq + 1, \
             entry_count = entry_count + 1, \
             last_at_ms = MAX(last_at_ms, excluded.last_at_ms), \
             session_key = COALESCE(session_key, excluded.session_key) \
         RETURNING last_seq",
    )
    .bind(session_id)
    .bind(now_ms)
    .fetch_one(&mut *conn)
    .await?;
    // Nothing is read back: every column is an input, and a `RETURNING content` would bring
    // a large message back through SQLite, the driver and the JSON parser while the written
    // copies are still alive (a 25 MiB message cost ~75 MB more at the peak).
    sqlx::query(&format!("INSERT INTO transcript_entries ({ENTRY_COLUMNS}) VALUES (?, ?, ?, ?, ?, ?, ?)"))
        .bind(session_id)
        .bind(seq)
        .bind(role)
        .bind(content)
        .bind(run_id)
        .bind(status)
        .bind(now_ms)
        .execute(&mut *conn)
        .await?;
    sqlx::query("UPDATE sessions SET updated_at_ms = MAX(updated_at_ms, ?) WHERE session_id = ?")
        .bind(now_ms)
        .bind(session_id)
        .execute(&mut *conn)
        .await?;
    Ok(seq)
}

impl TranscriptStore for SqliteStore {
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
            "SELECT {ENTRY_COLUMNS} FROM transcript_entries WHERE session_id = ? AND seq = ?"
        ))
        .bind(session_id)
        .bind(seq)
        .fetch_optional(self.pool())
        .await
        .map_err(StoreError::from)
    }

    async fn count_entries(&self, session_id: &str) -> Result<u64> {
        let entries: Option<i64> = sqlx::query_scalar("SELECT entry_count FROM transcript_heads WHERE session_id = ?")
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
            "DELETE FROM transcript_entries WHERE session_id = ?1 AND seq <= \
                 (SELECT seq FROM transcript_entries WHERE session_id = ?1 \
                  ORDER BY seq DESC LIMIT 1 OFFSET ?2)",
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
                     (SELECT COUNT(*) FROM transcript_entries WHERE session_id = ?1) \
                 WHERE session_id = ?1",
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
            "SELECT {ENTRY_COLUMNS} FROM transcript_entries WHERE run_id = ? ORDER BY id"
        ))
        .bind(run_id)
        .fetch_all(self.pool())
        .await
        .map_err(StoreError::from)
    }
}

#[cfg(test)]
mod tests {
    use std::time::Instant;

    use serde_json::json;

    use super::*;

    /// Rows in the big transcript: enough that a full scan would show, far more than a window.
    const BIG: i64 = 100_000;

    /// Writes a `BIG`-entry transcript in one statement (appending one by one would only
    /// slow the test down), plus a small neighbour on either side of it in the index.
    async fn store_with_big_transcript() -> SqliteStore {
        let store = SqliteStore::open_in_memory().await.expect("open");
        for (session_id, n) in [("big", BIG), ("a-small", 3), ("z-small", 3)] {
            sqlx::query(
                "WITH RECURSIVE n(seq) AS (SELECT 1 UNION ALL SELECT seq + 1 FROM n WHERE seq < ?2) \
                 INSERT INTO transcript_entries (session_id, seq, role, content, run_id, status, created_at_ms) \
                 SELECT ?1, seq, IIF(seq % 2 = 1, 'user', 'assistant'), \
                        json_object('role', 'user', 'content', 'message ' || seq), \
                        'run-' || ((seq + 1) / 2), 'final', seq FROM n",
            )
            .bind(session_id)
            .bind(n)
            .execute(store.pool())
            .await
            .expect("bulk insert");
            sqlx::query(
                "INSERT INTO transcript_heads (session_id, last_seq, entry_count, last_at_ms) VALUES (?1, ?2, ?2, ?2)",
            )
            .bind(session_id)
            .bind(n)
            .execute(store.pool())
            .await
            .expect("head");
        }
        sqlx::query("ANALYZE").execute(store.pool()).await.expect("analyze");
        store
    }

    #[tokio::test]
    async fn tail_reads_a_window_through_the_index_not_the_whole_transcript() {
        let store = store_with_big_transcript().await;

        // The plan is the proof: a SEARCH bounded by (session_id=? AND seq<?) on the unique
        // index, no SCAN of the table, no sort (rows come off the index already ordered).
        let steps = sqlx::query_as::<_, (i64, i64, i64, String)>(&format!("EXPLAIN QUERY PLAN {TAIL_SQL}"))
            .bind("big")
            .bind(i64::MAX)
            .bind(50_i64)
            .fetch_all(store.pool())
            .await
            .expect("explain");
        let details: Vec<&str> = steps.iter().map(|(_, _, _, detail)| detail.as_str()).collect();
        assert!(
            matches!(
                details.as_slice(),
                [only] if only.starts_with("SEARCH transcript_entries USING INDEX transcript_entries_by_session_seq")
                    && only.contains("session_id=? AND seq<?")
            ),
            "tail must be one bounded index search, without a scan or a sort: {details:?}"
        );

        let started = Instant::now();
        let last = store.tail("big", 50, None).await.expect("tail");
        let elapsed = started.elapsed();
        let seqs: Vec<i64> = last.iter().map(|e| e.seq).collect();
        assert_eq!(seqs, (BIG - 49..=BIG).collect::<Vec<_>>());
        assert_eq!(last[49].content, json!({"role": "user", "content": format!("message {BIG}")}));
        // Not the assertion that matters (the plan is), only a tripwire for a gross regression.
        assert!(elapsed.as_secs() < 5, "tail of 50 took {elapsed:?}");

        let page = store.tail("big", 50, Some(BIG - 49)).await.expect("previous page");
        assert_eq!(page.first().map(|e| e.seq), Some(BIG - 99));
        assert_eq!(page.last().map(|e| e.seq), Some(BIG - 50));
        assert_eq!(store.count_entries("big").await.expect("count"), u64::try_from(BIG).expect("fits"));
    }

    #[tokio::test]
    async fn compaction_of_a_long_transcript_keeps_the_newest_and_continues_numbering() {
        let store = store_with_big_transcript().await;
        assert_eq!(store.compact("big", 1_000).await.expect("compact"), u64::try_from(BIG - 1_000).expect("fits"));
        assert_eq!(store.count_entries("big").await.expect("count"), 1_000);
        assert_eq!(store.tail("big", 1, Some(BIG - 999)).await.expect("below window"), vec![]);
        let next = store
            .append("big", TranscriptRole::User, &json!("next"), None, EntryStatus::Final, 1)
            .await
            .expect("append");
        assert_eq!(next.seq, BIG + 1);
        assert_eq!(store.count_entries("a-small").await.expect("neighbour untouched"), 3);
    }

    #[tokio::test]
    async fn corrupt_transcript_content_is_reported_not_panicked() {
        let store = SqliteStore::open_in_memory().await.expect("open");
        sqlx::query(
            "INSERT INTO transcript_entries (session_id, seq, role, content, status, created_at_ms) \
             VALUES ('s', 1, 'user', '{broken', 'final', 1)",
        )
        .execute(store.pool())
        .await
        .expect("insert");
        assert!(matches!(store.get_entry("s", 1).await, Err(StoreError::Corrupt(_))));
        assert!(matches!(store.tail("s", 10, None).await, Err(StoreError::Corrupt(_))));
    }

    #[tokio::test]
    async fn unknown_transcript_role_is_reported_not_panicked() {
        let store = SqliteStore::open_in_memory().await.expect("open");
        store.append("s", TranscriptRole::User, &json!("hi"), None, EntryStatus::Final, 1).await.expect("append");
        sqlx::query("PRAGMA ignore_check_constraints = ON").execute(store.pool()).await.expect("pragma");
        sqlx::query("UPDATE transcript_entries SET role = 'robot'").execute(store.pool()).await.expect("update");
        assert!(matches!(store.get_entry("s", 1).await, Err(StoreError::Corrupt(_))));
    }
}
