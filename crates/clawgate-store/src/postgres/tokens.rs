//! [`DeviceTokenStore`] on the `device_tokens` table.

use sqlx::types::Json;

use super::PgStore;
use crate::token::{generate_token, hash_matches, hash_token};
use crate::{DeviceTokenRecord, DeviceTokenStore, Result, StoreError};

/// A `device_tokens` row: the record and the hash a presented token is checked against.
#[derive(sqlx::FromRow)]
struct TokenRow {
    token_hash: Vec<u8>,
    #[sqlx(flatten)]
    record: DeviceTokenRecord,
}

impl DeviceTokenStore for PgStore {
    async fn issue(
        &self,
        device_id: &str,
        role: &str,
        scopes: &[String],
        now_ms: i64,
    ) -> Result<(String, DeviceTokenRecord)> {
        let plain = generate_token();
        let hash = hash_token(&plain);
        let mut tx = self.begin_write().await?;
        let paired: Option<i64> = sqlx::query_scalar("SELECT 1::BIGINT FROM paired_devices WHERE device_id = $1")
            .bind(device_id)
            .fetch_optional(&mut *tx)
            .await?;
        if paired.is_none() {
            return Err(StoreError::NotFound);
        }
        // Rotation: one row per (device, role), so the new hash replaces the old one and the
        // previous token stops verifying in the same commit.
        sqlx::query(
            "INSERT INTO device_tokens (device_id, role, token_hash, scopes, issued_at_ms, \
                 revoked_at_ms) \
             VALUES ($1, $2, $3, $4, $5, NULL) \
             ON CONFLICT (device_id, role) DO UPDATE SET \
                 token_hash = excluded.token_hash, \
                 scopes = excluded.scopes, \
                 issued_at_ms = excluded.issued_at_ms, \
                 revoked_at_ms = NULL",
        )
        .bind(device_id)
        .bind(role)
        .bind(hash.as_slice())
        .bind(Json(scopes))
        .bind(now_ms)
        .execute(&mut *tx)
        .await?;
        self.commit(tx).await?;
        tracing::debug!(device_id, role, "device token issued");
        let record = DeviceTokenRecord {
            device_id: device_id.to_owned(),
            role: role.to_owned(),
            scopes: scopes.to_vec(),
            issued_at_ms: now_ms,
            revoked_at_ms: None,
        };
        Ok((plain, record))
    }

    async fn verify(&self, device_id: &str, plain_token: &str) -> Result<Option<DeviceTokenRecord>> {
        let presented = hash_token(plain_token);
        let rows =
            sqlx::query_as::<_, TokenRow>("SELECT * FROM device_tokens WHERE device_id = $1 AND revoked_at_ms IS NULL")
                .bind(device_id)
                .fetch_all(self.pool())
                .await?;
        // Compare against every live hash without stopping early, so timing says nothing about
        // which (if any) role matched.
        let mut matched = None;
        for row in rows {
            if hash_matches(&presented, &row.token_hash) && matched.is_none() {
                matched = Some(row);
            }
        }
        Ok(matched.map(|row| row.record))
    }

    async fn revoke(&self, device_id: &str, role: &str, now_ms: i64) -> Result<bool> {
        let revoked = sqlx::query(
            "UPDATE device_tokens SET revoked_at_ms = $1 \
             WHERE device_id = $2 AND role = $3 AND revoked_at_ms IS NULL",
        )
        .bind(now_ms)
        .bind(device_id)
        .bind(role)
        .execute(self.pool())
        .await?
        .rows_affected();
        if revoked > 0 {
            tracing::debug!(device_id, role, "device token revoked");
        }
        Ok(revoked > 0)
    }

    async fn list_for_device(&self, device_id: &str) -> Result<Vec<DeviceTokenRecord>> {
        sqlx::query_as::<_, DeviceTokenRecord>("SELECT * FROM device_tokens WHERE device_id = $1 ORDER BY role")
            .bind(device_id)
            .fetch_all(self.pool())
            .await
            .map_err(StoreError::from)
    }
}
