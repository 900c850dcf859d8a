//! [`DeviceStore`] on the `paired_devices` table.

use sqlx::PgConnection;

use sqlx::types::Json;

use super::PgStore;
use crate::{DeviceStore, PairedDevice, Result, StoreError};

/// Reads one paired device on `conn` (so it can take part in a transaction).
pub(super) async fn fetch_device(conn: &mut PgConnection, device_id: &str) -> Result<Option<PairedDevice>> {
    sqlx::query_as::<_, PairedDevice>("SELECT * FROM paired_devices WHERE device_id = $1")
        .bind(device_id)
        .fetch_optional(&mut *conn)
        .await
        .map_err(StoreError::from)
}

/// Inserts or fully replaces a device row on `conn`. An UPSERT rather than `INSERT OR
/// REPLACE`: the latter deletes the old row first, which would cascade to the device's tokens.
pub(super) async fn write_device(conn: &mut PgConnection, device: &PairedDevice) -> Result<()> {
    sqlx::query(
        "INSERT INTO paired_devices (device_id, public_key, display_name, platform, \
             device_family, client_id, client_mode, roles, scopes, approved_via, created_at_ms, \
             approved_at_ms, last_seen_at_ms) \
         VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13) \
         ON CONFLICT (device_id) DO UPDATE SET \
             public_key = excluded.public_key, \
             display_name = excluded.display_name, \
             platform = excluded.platform, \
             device_family = excluded.device_family, \
             client_id = excluded.client_id, \
             client_mode = excluded.client_mode, \
             roles = excluded.roles, \
             scopes = excluded.scopes, \
             approved_via = excluded.approved_via, \
             created_at_ms = excluded.created_at_ms, \
             approved_at_ms = excluded.approved_at_ms, \
             last_seen_at_ms = excluded.last_seen_at_ms",
    )
    .bind(&device.device_id)
    .bind(&device.public_key)
    .bind(&device.display_name)
    .bind(&device.platform)
    .bind(&device.device_family)
    .bind(&device.client_id)
    .bind(&device.client_mode)
    .bind(Json(&device.roles))
    .bind(Json(&device.scopes))
    .bind(&device.approved_via)
    .bind(device.created_at_ms)
    .bind(device.approved_at_ms)
    .bind(device.last_seen_at_ms)
    .execute(&mut *conn)
    .await?;
    Ok(())
}

impl DeviceStore for PgStore {
    async fn upsert_paired(&self, device: &PairedDevice) -> Result<()> {
        let mut conn = self.pool().acquire().await?;
        write_device(&mut conn, device).await
    }

    async fn get_paired(&self, device_id: &str) -> Result<Option<PairedDevice>> {
        let mut conn = self.pool().acquire().await?;
        fetch_device(&mut conn, device_id).await
    }

    async fn list_paired(&self) -> Result<Vec<PairedDevice>> {
        sqlx::query_as::<_, PairedDevice>("SELECT * FROM paired_devices ORDER BY created_at_ms, device_id")
            .fetch_all(self.pool())
            .await
            .map_err(StoreError::from)
    }

    async fn remove_paired(&self, device_id: &str) -> Result<bool> {
        let mut tx = self.begin_write().await?;
        let removed = sqlx::query("DELETE FROM paired_devices WHERE device_id = $1")
            .bind(device_id)
            .execute(&mut *tx)
            .await?
            .rows_affected();
        if removed == 0 {
            // Nothing was paired; leave any pending request for an operator to decide.
            return Ok(false);
        }
        // The foreign key would cascade, but saying it keeps the rule visible and independent
        // of the `foreign_keys` pragma.
        sqlx::query("DELETE FROM device_tokens WHERE device_id = $1").bind(device_id).execute(&mut *tx).await?;
        sqlx::query("DELETE FROM pairing_requests WHERE device_id = $1 AND status = 'pending'")
            .bind(device_id)
            .execute(&mut *tx)
            .await?;
        self.commit(tx).await?;
        tracing::debug!(device_id, "paired device removed");
        Ok(true)
    }

    async fn touch_last_seen(&self, device_id: &str, at_ms: i64) -> Result<bool> {
        let touched = sqlx::query("UPDATE paired_devices SET last_seen_at_ms = $1 WHERE device_id = $2")
            .bind(at_ms)
            .bind(device_id)
            .execute(self.pool())
            .await?
            .rows_affected();
        Ok(touched > 0)
    }
}
