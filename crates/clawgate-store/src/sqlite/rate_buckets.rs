//! [`RateBucketStore`] on the `rate_buckets` table (the same statement as PostgreSQL's; a
//! single gateway keeps its buckets in memory and calls this only through the conformance suite).

use super::SqliteStore;
use crate::{BucketRate, RateBucketStore, RateTake, Result};

impl RateBucketStore for SqliteStore {
    async fn take_rate_token(&self, key: &str, rate: BucketRate, now_us: i64) -> Result<RateTake> {
        let (granted, tat_us) = sqlx::query_as::<_, (bool, i64)>(
            "INSERT INTO rate_buckets (key, tat_us, granted) VALUES (?1, ?2 + ?3, 1) \
             ON CONFLICT (key) DO UPDATE SET \
                granted = max(rate_buckets.tat_us, ?2) - ?2 <= ?4, \
                tat_us = CASE WHEN max(rate_buckets.tat_us, ?2) - ?2 <= ?4 \
                              THEN max(rate_buckets.tat_us, ?2) + ?3 ELSE rate_buckets.tat_us END \
             RETURNING granted, tat_us",
        )
        .bind(key)
        .bind(now_us)
        .bind(rate.interval_us())
        .bind(rate.tolerance_us())
        .fetch_one(self.pool())
        .await?;
        Ok(RateTake::from_row(granted, tat_us, rate, now_us))
    }

    async fn prune_rate_buckets(&self, now_us: i64) -> Result<u64> {
        let done = sqlx::query("DELETE FROM rate_buckets WHERE tat_us <= ?").bind(now_us).execute(self.pool()).await?;
        Ok(done.rows_affected())
    }
}
