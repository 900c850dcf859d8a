//! [`LockoutStore`] on the `auth_lockouts` table.

use super::PgStore;
use crate::{LockoutStore, Result, StoreError};

impl LockoutStore for PgStore {
    async fn share_lockout(&self, bucket: &str, until_ms: i64) -> Result<()> {
        sqlx::query(
            "INSERT INTO auth_lockouts (bucket, until_ms) VALUES ($1, $2) \
             ON CONFLICT (bucket) DO UPDATE SET until_ms = GREATEST(auth_lockouts.until_ms, excluded.until_ms)",
        )
        .bind(bucket)
        .bind(until_ms)
        .execute(self.pool())
        .await
        .map_err(StoreError::from)?;
        Ok(())
    }

    async fn active_lockouts(&self, now_ms: i64, limit: usize) -> Result<Vec<(String, i64)>> {
        sqlx::query("DELETE FROM auth_lockouts WHERE until_ms <= $1")
            .bind(now_ms)
            .execute(self.pool())
            .await
            .map_err(StoreError::from)?;
        sqlx::query_as::<_, (String, i64)>(
            "SELECT bucket, until_ms FROM auth_lockouts WHERE until_ms > $1 ORDER BY until_ms DESC LIMIT $2",
        )
        .bind(now_ms)
        .bind(i64::try_from(limit).unwrap_or(i64::MAX))
        .fetch_all(self.pool())
        .await
        .map_err(StoreError::from)
    }
}
