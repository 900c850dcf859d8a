//! [`SessionStore`] on the `sessions` table (joined with `transcript_heads` for the counts).

use serde_json::Value;
use sqlx::PgConnection;

use super::PgStore;
use crate::session::apply_session_patch;
use crate::{Result, SessionQuery, SessionRecord, SessionStore, StoreError};

/// Every session read goes through this, so the counts always describe the current session
/// id: after a reset the join simply finds no head yet.
const SELECT_SESSION: &str = "SELECT s.key, s.agent_id, s.session_id, s.label, s.meta, s.created_at_ms, \
         s.updated_at_ms, h.last_at_ms AS last_message_at_ms, \
         COALESCE(h.entry_count, 0) AS message_count \
     FROM sessions s LEFT JOIN transcript_heads h ON h.session_id = s.session_id";

/// Reads one session on `conn` (so it can take part in a transaction).
pub(super) async fn fetch_session(conn: &mut PgConnection, key: &str) -> Result<Option<SessionRecord>> {
    sqlx::query_as::<_, SessionRecord>(&format!("{SELECT_SESSION} WHERE s.key = $1"))
        .bind(key)
        .fetch_optional(&mut *conn)
        .await
        .map_err(StoreError::from)
}

/// `LIMIT`/`OFFSET` take an i64; anything beyond it is no bound.
fn sql_count(n: usize) -> i64 {
    i64::try_from(n).unwrap_or(i64::MAX)
}

impl SessionStore for PgStore {
    async fn ensure_session(&self, key: &str, agent_id: &str, now_ms: i64) -> Result<SessionRecord> {
        // Fast path without the write lock: every chat turn calls this, and the session
        // nearly always exists.
        if let Some(existing) = self.get_session(key).await? {
            return Ok(existing);
        }
        let mut tx = self.begin_write().await?;
        let created = sqlx::query(
            "INSERT INTO sessions (key, agent_id, session_id, label, meta, created_at_ms, updated_at_ms) \
             VALUES ($1, $2, $3, NULL, '{}', $4, $5) ON CONFLICT (key) DO NOTHING",
        )
        .bind(key)
        .bind(agent_id)
        .bind(uuid::Uuid::new_v4().to_string())
        .bind(now_ms)
        .bind(now_ms)
        .execute(&mut *tx)
        .await?
        .rows_affected();
        let session = fetch_session(&mut tx, key).await?.ok_or(StoreError::NotFound)?;
        self.commit(tx).await?;
        if created == 1 {
            tracing::debug!(key, session_id = %session.session_id, "session created");
        }
        Ok(session)
    }

    async fn get_session(&self, key: &str) -> Result<Option<SessionRecord>> {
        let mut conn = self.pool().acquire().await?;
        fetch_session(&mut conn, key).await
    }

    async fn list_sessions(&self, query: &SessionQuery) -> Result<Vec<SessionRecord>> {
        // `strpos` rather than LIKE, so `%` and `_` in a search are plain text.
        sqlx::query_as::<_, SessionRecord>(&format!(
            "{SELECT_SESSION} \
             WHERE ($1 IS NULL OR s.agent_id = $1) \
               AND ($2 IS NULL OR strpos(lower(s.key), lower($2)) > 0 \
                    OR strpos(lower(COALESCE(s.label, '')), lower($2)) > 0) \
               AND ($3 OR COALESCE(s.meta -> 'archived' IN ('true'::jsonb, '1'::jsonb), FALSE) = FALSE) \
             ORDER BY s.updated_at_ms DESC, s.key \
             LIMIT $4 OFFSET $5"
        ))
        .bind(&query.agent_id)
        .bind(&query.search)
        .bind(query.include_archived)
        .bind(sql_count(query.limit))
        .bind(sql_count(query.offset))
        .fetch_all(self.pool())
        .await
        .map_err(StoreError::from)
    }

    async fn patch_session(&self, key: &str, patch: &Value, now_ms: i64) -> Result<SessionRecord> {
        let mut tx = self.begin_write().await?;
        let current = fetch_session(&mut tx, key).await?.ok_or(StoreError::NotFound)?;
        let (label, meta) = apply_session_patch(&current.meta, patch)?;
        let label = label.unwrap_or(current.label);
        sqlx::query("UPDATE sessions SET label = $1, meta = $2, updated_at_ms = $3 WHERE key = $4")
            .bind(&label)
            .bind(&meta)
            .bind(now_ms)
            .bind(key)
            .execute(&mut *tx)
            .await?;
        let patched = fetch_session(&mut tx, key).await?.ok_or(StoreError::NotFound)?;
        self.commit(tx).await?;
        Ok(patched)
    }

    async fn reset_session(&self, key: &str, now_ms: i64) -> Result<SessionRecord> {
        let mut tx = self.begin_write().await?;
        let reset = sqlx::query("UPDATE sessions SET session_id = $1, updated_at_ms = $2 WHERE key = $3")
            .bind(uuid::Uuid::new_v4().to_string())
            .bind(now_ms)
            .bind(key)
            .execute(&mut *tx)
            .await?
            .rows_affected();
        if reset == 0 {
            return Err(StoreError::NotFound);
        }
        let session = fetch_session(&mut tx, key).await?.ok_or(StoreError::NotFound)?;
        self.commit(tx).await?;
        tracing::debug!(key, session_id = %session.session_id, "session reset");
        Ok(session)
    }

    async fn delete_session(&self, key: &str, delete_transcript: bool) -> Result<bool> {
        let mut tx = self.begin_write().await?;
        let session_id: Option<String> = sqlx::query_scalar("DELETE FROM sessions WHERE key = $1 RETURNING session_id")
            .bind(key)
            .fetch_optional(&mut *tx)
            .await?;
        let Some(session_id) = session_id else {
            return Ok(false);
        };
        if delete_transcript {
            // The current transcript by its id (its head may predate the session row and so
            // lack the key), and earlier generations by the key their heads recorded.
            let owned = "SELECT session_id FROM transcript_heads WHERE session_key = $2";
            sqlx::query(&format!("DELETE FROM transcript_entries WHERE session_id = $1 OR session_id IN ({owned})"))
                .bind(&session_id)
                .bind(key)
                .execute(&mut *tx)
                .await?;
            sqlx::query("DELETE FROM transcript_heads WHERE session_id = $1 OR session_key = $2")
                .bind(&session_id)
                .bind(key)
                .execute(&mut *tx)
                .await?;
        }
        self.commit(tx).await?;
        tracing::debug!(key, delete_transcript, "session deleted");
        Ok(true)
    }

    async fn count_sessions(&self) -> Result<u64> {
        let count: i64 = sqlx::query_scalar("SELECT COUNT(*) FROM sessions").fetch_one(self.pool()).await?;
        Ok(u64::try_from(count).unwrap_or(0))
    }
}
