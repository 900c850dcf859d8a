//! [`KvStore`] on the `kv` table.

use super::PgStore;
use crate::{KvStore, Result};

impl KvStore for PgStore {
    async fn get(&self, key: &str) -> Result<Option<String>> {
        let value =
            sqlx::query_scalar("SELECT value FROM kv WHERE key = $1").bind(key).fetch_optional(self.pool()).await?;
        Ok(value)
    }

    async fn set(&self, key: &str, value: &str) -> Result<()> {
        sqlx::query(
            "INSERT INTO kv (key, value) VALUES ($1, $2) \
             ON CONFLICT (key) DO UPDATE SET value = excluded.value",
        )
        .bind(key)
        .bind(value)
        .execute(self.pool())
        .await?;
        Ok(())
    }

    async fn get_or_init(&self, key: &str, init: impl FnOnce() -> String + Send) -> Result<String> {
        // Fast path without a write: the key is normally there after the first start.
        if let Some(existing) = KvStore::get(self, key).await? {
            return Ok(existing);
        }
        let candidate = init();
        // One statement, so atomic: insert the candidate unless a racing caller got there
        // first, and in both cases return what is stored. The no-op update is only there
        // because `DO NOTHING` would make RETURNING yield no row.
        let stored = sqlx::query_scalar(
            "INSERT INTO kv (key, value) VALUES ($1, $2) \
             ON CONFLICT (key) DO UPDATE SET value = kv.value \
             RETURNING value",
        )
        .bind(key)
        .bind(candidate)
        .fetch_one(self.pool())
        .await?;
        Ok(stored)
    }

    async fn delete_prefix(&self, prefix: &str) -> Result<u64> {
        // `substr` rather than LIKE: account ids may hold `%` or `_`, which LIKE would match
        // as wildcards.
        let deleted = sqlx::query("DELETE FROM kv WHERE substr(key, 1, length($1)) = $1")
            .bind(prefix)
            .execute(self.pool())
            .await?
            .rows_affected();
        Ok(deleted)
    }
}
