//! [`IdempotencyStore`] on the `idempotency` table.

use super::PgStore;
use crate::{IdempotencyEntry, IdempotencyStore, InsertOutcome, Result, StoreError};

impl IdempotencyStore for PgStore {
    async fn get(&self, scope_key: &str) -> Result<Option<IdempotencyEntry>> {
        sqlx::query_as::<_, IdempotencyEntry>("SELECT * FROM idempotency WHERE key = $1")
            .bind(scope_key)
            .fetch_optional(self.pool())
            .await
            .map_err(StoreError::from)
    }

    async fn insert_if_absent(
        &self,
        scope_key: &str,
        status: &str,
        payload: &serde_json::Value,
        now_ms: i64,
    ) -> Result<InsertOutcome> {
        // One write transaction: the insert decides the winner, and the read of the loser's
        // answer cannot see the entry pruned in between.
        let mut tx = self.begin_write().await?;
        let inserted = sqlx::query(
            "INSERT INTO idempotency (key, status, payload, created_at_ms, updated_at_ms) \
             VALUES ($1, $2, $3, $4, $5) ON CONFLICT (key) DO NOTHING",
        )
        .bind(scope_key)
        .bind(status)
        .bind(payload)
        .bind(now_ms)
        .bind(now_ms)
        .execute(&mut *tx)
        .await?
        .rows_affected();
        if inserted == 1 {
            self.commit(tx).await?;
            return Ok(InsertOutcome::Inserted);
        }
        let existing = sqlx::query_as::<_, IdempotencyEntry>("SELECT * FROM idempotency WHERE key = $1")
            .bind(scope_key)
            .fetch_one(&mut *tx)
            .await?;
        self.commit(tx).await?;
        Ok(InsertOutcome::Existing(existing))
    }

    async fn update(&self, scope_key: &str, status: &str, payload: &serde_json::Value, now_ms: i64) -> Result<()> {
        let updated =
            sqlx::query("UPDATE idempotency SET status = $1, payload = $2, updated_at_ms = $3 WHERE key = $4")
                .bind(status)
                .bind(payload)
                .bind(now_ms)
                .bind(scope_key)
                .execute(self.pool())
                .await?
                .rows_affected();
        if updated == 0 {
            return Err(StoreError::NotFound);
        }
        Ok(())
    }

    async fn prune(&self, older_than_ms: i64, keep_max: usize) -> Result<u64> {
        // `LIMIT` takes an i64; a cap beyond it is no cap.
        let keep = i64::try_from(keep_max).unwrap_or(i64::MAX);
        let mut tx = self.begin_write().await?;
        let expired = sqlx::query("DELETE FROM idempotency WHERE updated_at_ms < $1")
            .bind(older_than_ms)
            .execute(&mut *tx)
            .await?
            .rows_affected();
        let over_cap = sqlx::query(
            "DELETE FROM idempotency WHERE key NOT IN \
             (SELECT key FROM idempotency ORDER BY updated_at_ms DESC, key DESC LIMIT $1)",
        )
        .bind(keep)
        .execute(&mut *tx)
        .await?
        .rows_affected();
        self.commit(tx).await?;
        Ok(expired + over_cap)
    }
}
