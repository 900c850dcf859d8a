//! [`RunStore`] on the `runs` table.

use serde_json::Value;
use sqlx::SqliteConnection;

use super::SqliteStore;
use super::sessions::fetch_session;
use super::transcripts::append_on;
use crate::{
    EnqueueOutcome, NewEntry, Result, RunKind, RunRecord, RunStatus, RunStore, SessionRecord, StartedRun, StoreError,
    TranscriptEntry,
};

/// The columns of a run, without the internal queue position.
const RUN_COLUMNS: &str =
    "run_id, session_key, kind, status, request, result, created_at_ms, started_at_ms, ended_at_ms, owner";

/// Reads one run on `conn` (so it can take part in a transaction).
async fn fetch_run(conn: &mut SqliteConnection, run_id: &str) -> Result<Option<RunRecord>> {
    sqlx::query_as::<_, RunRecord>(&format!("SELECT {RUN_COLUMNS} FROM runs WHERE run_id = ?"))
        .bind(run_id)
        .fetch_optional(&mut *conn)
        .await
        .map_err(StoreError::from)
}

/// Marks the session's first queued run running unless one runs (binds: now, session key,
/// owner or NULL).
fn claim_sql() -> String {
    format!(
        "UPDATE runs SET status = 'running', started_at_ms = ?1, owner = ?3 \
         WHERE queue_pos = (SELECT queue_pos FROM runs WHERE session_key = ?2 AND status = 'queued' \
                            ORDER BY queue_pos LIMIT 1) \
           AND NOT EXISTS (SELECT 1 FROM runs WHERE session_key = ?2 AND status = 'running') \
         RETURNING {RUN_COLUMNS}"
    )
}

impl RunStore for SqliteStore {
    async fn enqueue(
        &self,
        run_id: &str,
        session_key: &str,
        kind: RunKind,
        request: &Value,
        now_ms: i64,
    ) -> Result<EnqueueOutcome> {
        // As for idempotency claims: the insert decides the winner, and the loser reads the
        // winner's run in the same write transaction.
        let mut tx = self.begin_write().await?;
        let inserted = sqlx::query(
            "INSERT INTO runs (run_id, session_key, kind, status, request, created_at_ms) \
             VALUES (?, ?, ?, 'queued', ?, ?) ON CONFLICT (run_id) DO NOTHING",
        )
        .bind(run_id)
        .bind(session_key)
        .bind(kind)
        .bind(request)
        .bind(now_ms)
        .execute(&mut *tx)
        .await?
        .rows_affected();
        let run = fetch_run(&mut tx, run_id).await?.ok_or(StoreError::NotFound)?;
        self.commit(tx).await?;
        Ok(if inserted == 1 { EnqueueOutcome::Inserted(run) } else { EnqueueOutcome::Existing(run) })
    }

    async fn claim_next(&self, session_key: &str, now_ms: i64) -> Result<Option<RunRecord>> {
        // One statement, so one write transaction: "no run is running" and "take the first
        // queued one" cannot be separated by another claimer. The partial unique index on
        // running runs would refuse a second one anyway.
        let row = sqlx::query_as::<_, RunRecord>(&claim_sql())
            .bind(now_ms)
            .bind(session_key)
            .bind(None::<&str>)
            .fetch_optional(self.pool())
            .await
            .map_err(StoreError::from);
        self.observed(row)
    }

    async fn start_next<T, F>(
        &self,
        session_key: &str,
        owner: &str,
        now_ms: i64,
        prepare: F,
    ) -> Result<Option<StartedRun<T>>>
    where
        T: Send,
        F: FnOnce(&mut RunRecord, Option<&SessionRecord>) -> (T, Option<NewEntry>) + Send,
    {
        // One write transaction for what used to be two (the claim, then the user entry): the
        // turn reaches the model one commit (one fsync of the WAL) sooner, and a crash can no
        // longer fall between the two.
        let mut tx = self.begin_write().await?;
        let claimed = sqlx::query_as::<_, RunRecord>(&claim_sql())
            .bind(now_ms)
            .bind(session_key)
            .bind(owner)
            .fetch_optional(&mut *tx)
            .await?;
        let Some(mut run) = claimed else {
            // Nothing was written; ended explicitly so the connection goes back to the pool clean.
            self.commit(tx).await?;
            return Ok(None);
        };
        let session = fetch_session(&mut tx, session_key).await?;
        let (prepared, new_entry) = prepare(&mut run, session.as_ref());
        let entry = match (new_entry, &session) {
            (Some(e), Some(s)) => {
                let seq =
                    append_on(&mut tx, &s.session_id, e.role, &e.content, Some(&run.run_id), e.status, now_ms).await?;
                Some(TranscriptEntry {
                    session_id: s.session_id.clone(),
                    seq,
                    role: e.role,
                    content: e.content,
                    run_id: Some(run.run_id.clone()),
                    status: e.status,
                    created_at_ms: now_ms,
                })
            }
            _ => None,
        };
        self.commit(tx).await?;
        Ok(Some(StartedRun { run, session, entry, prepared }))
    }

    async fn finish(&self, run_id: &str, status: RunStatus, result: Option<&Value>, now_ms: i64) -> Result<RunRecord> {
        if !status.is_terminal() {
            return Err(StoreError::Conflict(format!("cannot finish run {run_id} as {status}")));
        }
        let mut tx = self.begin_write().await?;
        let current = fetch_run(&mut tx, run_id).await?.ok_or(StoreError::NotFound)?;
        if current.status.is_terminal() {
            return Err(StoreError::Conflict(format!("run {run_id} is already {}", current.status)));
        }
        let row = sqlx::query_as::<_, RunRecord>(&format!(
            "UPDATE runs SET status = ?, result = ?, ended_at_ms = ? WHERE run_id = ? RETURNING {RUN_COLUMNS}"
        ))
        .bind(status)
        .bind(result)
        .bind(now_ms)
        .bind(run_id)
        .fetch_one(&mut *tx)
        .await?;
        self.commit(tx).await?;
        Ok(row)
    }

    async fn get_run(&self, run_id: &str) -> Result<Option<RunRecord>> {
        let mut conn = self.pool().acquire().await?;
        fetch_run(&mut conn, run_id).await
    }

    async fn list_queued_sessions(&self) -> Result<Vec<String>> {
        let sessions = sqlx::query_scalar(
            "SELECT session_key FROM runs WHERE status = 'queued' \
             GROUP BY session_key ORDER BY MIN(queue_pos)",
        )
        .fetch_all(self.pool())
        .await?;
        Ok(sessions)
    }

    async fn list_queued_runs(&self) -> Result<Vec<(String, String)>> {
        let runs = sqlx::query_as("SELECT run_id, session_key FROM runs WHERE status = 'queued' ORDER BY queue_pos")
            .fetch_all(self.pool())
            .await?;
        Ok(runs)
    }

    async fn mark_interrupted_running(&self, now_ms: i64, alive_since_ms: i64) -> Result<u64> {
        let mut tx = self.pool().begin().await?;
        // A run writes its user message before anything reaches the model (agent::run). A crash
        // between the claim and that write leaves a running run with no transcript entry: the
        // message was acknowledged but nothing of it happened yet, so it goes back to the queue
        // at its old place instead of being lost as "interrupted" (class: an acked message lost
        // in the gap between two writes).
        let requeued = sqlx::query(
            "UPDATE runs SET status = 'queued', started_at_ms = NULL, owner = NULL WHERE status = 'running' \
             AND (owner IS NULL OR owner NOT IN (SELECT id FROM cluster_gateways WHERE seen_at_ms >= ?1)) \
             AND NOT EXISTS (SELECT 1 FROM transcript_entries t WHERE t.run_id = runs.run_id)",
        )
        .bind(alive_since_ms)
        .execute(&mut *tx)
        .await?
        .rows_affected();
        let interrupted =
            sqlx::query("UPDATE runs SET status = 'interrupted', ended_at_ms = ?2 WHERE status = 'running' AND (owner IS NULL OR owner NOT IN (SELECT id FROM cluster_gateways WHERE seen_at_ms >= ?1))")
                .bind(alive_since_ms)
                .bind(now_ms)
                .execute(&mut *tx)
                .await?
                .rows_affected();
        tx.commit().await?;
        if requeued > 0 {
            tracing::info!(requeued, "runs claimed but not started by a gateway that is gone queued again");
        }
        if interrupted > 0 {
            tracing::info!(interrupted, "runs left running by a gateway that is gone marked interrupted");
        }
        Ok(interrupted)
    }

    async fn prune_finished(&self, older_than_ms: i64) -> Result<u64> {
        let pruned = sqlx::query(
            "DELETE FROM runs WHERE status IN ('completed', 'failed', 'aborted', 'interrupted') \
             AND ended_at_ms < ?",
        )
        .bind(older_than_ms)
        .execute(self.pool())
        .await?
        .rows_affected();
        Ok(pruned)
    }
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    #[tokio::test]
    async fn second_running_run_per_session_is_refused_by_the_schema() {
        let store = SqliteStore::open_in_memory().await.expect("open");
        for run_id in ["r1", "r2"] {
            store.enqueue(run_id, "s", RunKind::Chat, &json!({}), 1).await.expect("enqueue");
        }
        store.claim_next("s", 2).await.expect("claim").expect("r1 runs");
        let forced = sqlx::query("UPDATE runs SET status = 'running' WHERE run_id = 'r2'").execute(store.pool()).await;
        assert!(forced.is_err(), "the partial unique index must refuse a second running run");
    }

    #[tokio::test]
    async fn corrupt_run_request_is_reported_not_panicked() {
        let store = SqliteStore::open_in_memory().await.expect("open");
        sqlx::query(
            "INSERT INTO runs (run_id, session_key, kind, status, request, created_at_ms) \
             VALUES ('r', 's', 'chat', 'queued', '{broken', 1)",
        )
        .execute(store.pool())
        .await
        .expect("insert");
        assert!(matches!(store.get_run("r").await, Err(StoreError::Corrupt(_))));
        assert!(matches!(store.claim_next("s", 2).await, Err(StoreError::Corrupt(_))));
    }
}
