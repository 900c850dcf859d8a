//! [`RateBucketStore`] on the `rate_buckets` table.

use super::PgStore;
use crate::{BucketRate, RateBucketStore, RateTake, Result, StoreError};

impl RateBucketStore for PgStore {
    async fn take_rate_token(&self, key: &str, rate: BucketRate, now_us: i64) -> Result<RateTake> {
        // One statement: the upsert locks the row, so concurrent takes on any gateway apply one
        // after another, each to the row the previous one left.
        let (granted, tat_us) = sqlx::query_as::<_, (bool, i64)>(
            "INSERT INTO rate_buckets (key, tat_us, granted) VALUES ($1, $2 + $3, TRUE) \
             ON CONFLICT (key) DO UPDATE SET \
                granted = GREATEST(rate_buckets.tat_us, $2) - $2 <= $4, \
                tat_us = CASE WHEN GREATEST(rate_buckets.tat_us, $2) - $2 <= $4 \
                              THEN GREATEST(rate_buckets.tat_us, $2) + $3 ELSE rate_buckets.tat_us END \
             RETURNING granted, tat_us",
        )
        .bind(key)
        .bind(now_us)
        .bind(rate.interval_us())
        .bind(rate.tolerance_us())
        .fetch_one(self.pool())
        .await
        .map_err(StoreError::from)?;
        Ok(RateTake::from_row(granted, tat_us, rate, now_us))
    }

    async fn prune_rate_buckets(&self, now_us: i64) -> Result<u64> {
        let done = sqlx::query("DELETE FROM rate_buckets WHERE tat_us <= $1")
            .bind(now_us)
            .execute(self.pool())
            .await
            .map_err(StoreError::from)?;
        Ok(done.rows_affected())
    }
}
