//! [`LockoutStore`] on the `auth_lockouts` table.

use super::SqliteStore;
use crate::{LockoutStore, Result};

impl LockoutStore for SqliteStore {
    async fn share_lockout(&self, bucket: &str, until_ms: i64) -> Result<()> {
        sqlx::query(
            "INSERT INTO auth_lockouts (bucket, until_ms) VALUES (?, ?) \
             ON CONFLICT (bucket) DO UPDATE SET until_ms = max(auth_lockouts.until_ms, excluded.until_ms)",
        )
        .bind(bucket)
        .bind(until_ms)
        .execute(self.pool())
        .await?;
        Ok(())
    }

    async fn active_lockouts(&self, now_ms: i64, limit: usize) -> Result<Vec<(String, i64)>> {
        sqlx::query("DELETE FROM auth_lockouts WHERE until_ms <= ?").bind(now_ms).execute(self.pool()).await?;
        let rows = sqlx::query_as::<_, (String, i64)>(
            "SELECT bucket, until_ms FROM auth_lockouts WHERE until_ms > ? ORDER BY until_ms DESC LIMIT ?",
        )
        .bind(now_ms)
        .bind(i64::try_from(limit).unwrap_or(i64::MAX))
        .fetch_all(self.pool())
        .await?;
        Ok(rows)
    }
}
