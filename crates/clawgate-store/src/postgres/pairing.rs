//! [`PairingStore`] on the `pairing_requests` table (and `paired_devices` on approval).

use sqlx::PgConnection;
use sqlx::types::Json;

use super::devices::{fetch_device, write_device};
use super::{PgStore, union};
use crate::{
    NewPairingRequest, PairedDevice, PairingDecision, PairingRequest, PairingStatus, PairingStore, Result, StoreError,
};

async fn fetch_request(conn: &mut PgConnection, request_id: &str) -> Result<Option<PairingRequest>> {
    sqlx::query_as::<_, PairingRequest>("SELECT * FROM pairing_requests WHERE request_id = $1")
        .bind(request_id)
        .fetch_optional(&mut *conn)
        .await
        .map_err(StoreError::from)
}

/// Marks a pending request resolved and returns it. NotFound / Conflict otherwise.
async fn resolve_pending(
    conn: &mut PgConnection,
    request_id: &str,
    status: PairingStatus,
    resolved_by: &str,
    now_ms: i64,
) -> Result<PairingRequest> {
    let current = fetch_request(conn, request_id).await?.ok_or(StoreError::NotFound)?;
    if current.status != PairingStatus::Pending {
        return Err(StoreError::Conflict(format!("pairing request {request_id} is already {}", current.status)));
    }
    let row = sqlx::query_as::<_, PairingRequest>(
        "UPDATE pairing_requests SET status = $1, resolved_at_ms = $2, resolved_by = $3 \
         WHERE request_id = $4 AND status = 'pending' RETURNING *",
    )
    .bind(status)
    .bind(now_ms)
    .bind(resolved_by)
    .bind(request_id)
    .fetch_one(&mut *conn)
    .await?;
    Ok(row)
}

/// Creates or upgrades the paired device an approved request stands for.
async fn pair_device(
    conn: &mut PgConnection,
    request: &PairingRequest,
    approved_via: &str,
    now_ms: i64,
) -> Result<PairedDevice> {
    let existing = fetch_device(conn, &request.device_id).await?;
    let requested_role = std::slice::from_ref(&request.role);
    let device = match existing {
        Some(old) => PairedDevice {
            device_id: old.device_id,
            // The approved request describes the device as it is now (a metadata-upgrade is
            // exactly an approval of changed metadata); keep old values the request lacks.
            public_key: request.public_key.clone(),
            display_name: request.display_name.clone().or(old.display_name),
            platform: request.platform.clone().or(old.platform),
            device_family: request.device_family.clone().or(old.device_family),
            client_id: request.client_id.clone().or(old.client_id),
            client_mode: request.client_mode.clone().or(old.client_mode),
            roles: union(&old.roles, requested_role),
            scopes: union(&old.scopes, &request.scopes),
            approved_via: approved_via.to_owned(),
            created_at_ms: old.created_at_ms,
            approved_at_ms: now_ms,
            last_seen_at_ms: old.last_seen_at_ms,
        },
        None => PairedDevice {
            device_id: request.device_id.clone(),
            public_key: request.public_key.clone(),
            display_name: request.display_name.clone(),
            platform: request.platform.clone(),
            device_family: request.device_family.clone(),
            client_id: request.client_id.clone(),
            client_mode: request.client_mode.clone(),
            roles: requested_role.to_vec(),
            scopes: union(&[], &request.scopes),
            approved_via: approved_via.to_owned(),
            created_at_ms: now_ms,
            approved_at_ms: now_ms,
            last_seen_at_ms: None,
        },
    };
    write_device(conn, &device).await?;
    Ok(device)
}

impl PgStore {
    /// The approval transaction shared by `approve_request` and `resolve_request`.
    async fn approve_atomically(
        &self,
        request_id: &str,
        resolved_by: &str,
        now_ms: i64,
    ) -> Result<(PairingRequest, PairedDevice)> {
        let mut tx = self.begin_write().await?;
        let request = resolve_pending(&mut tx, request_id, PairingStatus::Approved, resolved_by, now_ms).await?;
        let device = pair_device(&mut tx, &request, resolved_by, now_ms).await?;
        self.commit(tx).await?;
        tracing::debug!(request_id, device_id = %device.device_id, "pairing request approved");
        Ok((request, device))
    }
}

impl PairingStore for PgStore {
    async fn create_or_refresh_request(&self, new: &NewPairingRequest, now_ms: i64) -> Result<PairingRequest> {
        let scopes = Json(&new.scopes);
        let mut tx = self.begin_write().await?;
        let pending: Option<String> =
            sqlx::query_scalar("SELECT request_id FROM pairing_requests WHERE device_id = $1 AND status = 'pending'")
                .bind(&new.device_id)
                .fetch_optional(&mut *tx)
                .await?;
        let row = match pending {
            Some(request_id) => {
                sqlx::query_as::<_, PairingRequest>(
                    "UPDATE pairing_requests SET public_key = $1, display_name = $2, platform = $3, \
                         device_family = $4, client_id = $5, client_mode = $6, role = $7, scopes = $8, \
                         remote_ip = $9, reason = $10, updated_at_ms = $11 \
                     WHERE request_id = $12 RETURNING *",
                )
                .bind(&new.public_key)
                .bind(&new.display_name)
                .bind(&new.platform)
                .bind(&new.device_family)
                .bind(&new.client_id)
                .bind(&new.client_mode)
                .bind(&new.role)
                .bind(scopes)
                .bind(&new.remote_ip)
                .bind(&new.reason)
                .bind(now_ms)
                .bind(request_id)
                .fetch_one(&mut *tx)
                .await?
            }
            None => {
                sqlx::query_as::<_, PairingRequest>(
                    "INSERT INTO pairing_requests (request_id, device_id, public_key, \
                         display_name, platform, device_family, client_id, client_mode, role, \
                         scopes, remote_ip, reason, status, created_at_ms, updated_at_ms) \
                     VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, 'pending', $13, $14) RETURNING *",
                )
                .bind(uuid::Uuid::new_v4().to_string())
                .bind(&new.device_id)
                .bind(&new.public_key)
                .bind(&new.display_name)
                .bind(&new.platform)
                .bind(&new.device_family)
                .bind(&new.client_id)
                .bind(&new.client_mode)
                .bind(&new.role)
                .bind(scopes)
                .bind(&new.remote_ip)
                .bind(&new.reason)
                .bind(now_ms)
                .bind(now_ms)
                .fetch_one(&mut *tx)
                .await?
            }
        };
        self.commit(tx).await?;
        Ok(row)
    }

    async fn get_request(&self, request_id: &str) -> Result<Option<PairingRequest>> {
        let mut conn = self.pool().acquire().await?;
        fetch_request(&mut conn, request_id).await
    }

    async fn list_pending(&self) -> Result<Vec<PairingRequest>> {
        sqlx::query_as::<_, PairingRequest>(
            "SELECT * FROM pairing_requests WHERE status = 'pending' \
             ORDER BY created_at_ms, request_id",
        )
        .fetch_all(self.pool())
        .await
        .map_err(StoreError::from)
    }

    async fn resolve_request(
        &self,
        request_id: &str,
        decision: PairingDecision,
        resolved_by: &str,
        now_ms: i64,
    ) -> Result<PairingRequest> {
        match decision {
            PairingDecision::Approve => {
                let (request, _device) = self.approve_atomically(request_id, resolved_by, now_ms).await?;
                Ok(request)
            }
            PairingDecision::Reject => {
                let mut tx = self.begin_write().await?;
                let request =
                    resolve_pending(&mut tx, request_id, PairingStatus::Rejected, resolved_by, now_ms).await?;
                self.commit(tx).await?;
                tracing::debug!(request_id, "pairing request rejected");
                Ok(request)
            }
        }
    }

    async fn approve_request(&self, request_id: &str, resolved_by: &str, now_ms: i64) -> Result<PairedDevice> {
        let (_request, device) = self.approve_atomically(request_id, resolved_by, now_ms).await?;
        Ok(device)
    }

    async fn expire_pending(&self, older_than_ms: i64) -> Result<u64> {
        let expired = sqlx::query("DELETE FROM pairing_requests WHERE status = 'pending' AND updated_at_ms < $1")
            .bind(older_than_ms)
            .execute(self.pool())
            .await?
            .rows_affected();
        Ok(expired)
    }
}
