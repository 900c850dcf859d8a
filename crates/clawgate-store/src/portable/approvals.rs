//! [`ApprovalStore`](crate::ApprovalStore) on the `approvals`, `exec_approval_policy` and
//! `exec_node_policies` tables, for both backends (`sqlite/approvals.rs` and
//! `postgres/approvals.rs` expand it).

/// Every column of an approval, in [`crate::ApprovalRecord`]'s order.
pub(crate) const APPROVAL_COLUMNS: &str = "id, kind, payload, requested_by, status, reason, decided_by, created_at_ms, expires_at_ms, decided_at_ms, decision";

/// An approval's status as of `$1` (now): a pending one past its expiry reads as expired.
pub(crate) const APPROVAL_STATUS_AS_OF: &str =
    "CASE WHEN status = 'pending' AND expires_at_ms <= $1 THEN 'expired' ELSE status END";

/// Implements `ApprovalStore` for `$store` (a `SqliteStore` or a `PgStore`).
macro_rules! approval_store {
    ($store:ty) => {
        impl $crate::ApprovalStore for $store {
            async fn create_approval(
                &self,
                approval: &$crate::NewApproval,
                now_ms: i64,
            ) -> $crate::Result<$crate::ApprovalRecord> {
                let inserted = sqlx::query(
                    "INSERT INTO approvals (id, kind, payload, requested_by, status, created_at_ms, expires_at_ms) \
                     VALUES ($1, $2, $3, $4, 'pending', $5, $6) ON CONFLICT (id) DO NOTHING",
                )
                .bind(&approval.id)
                .bind(&approval.kind)
                .bind(&approval.payload)
                .bind(&approval.requested_by)
                .bind(now_ms)
                .bind(approval.expires_at_ms)
                .execute(self.pool())
                .await?
                .rows_affected();
                if inserted == 0 {
                    return Err($crate::StoreError::Conflict(format!("approval id {:?} is taken", approval.id)));
                }
                Ok($crate::ApprovalRecord {
                    id: approval.id.clone(),
                    kind: approval.kind.clone(),
                    payload: approval.payload.clone(),
                    requested_by: approval.requested_by.clone(),
                    status: if approval.expires_at_ms <= now_ms {
                        $crate::ApprovalStatus::Expired
                    } else {
                        $crate::ApprovalStatus::Pending
                    },
                    reason: None,
                    decided_by: None,
                    created_at_ms: now_ms,
                    expires_at_ms: approval.expires_at_ms,
                    decided_at_ms: None,
                    decision: None,
                })
            }

            async fn get_approval(&self, id: &str, now_ms: i64) -> $crate::Result<Option<$crate::ApprovalRecord>> {
                sqlx::query_as::<_, $crate::ApprovalRecord>(&format!(
                    "SELECT id, kind, payload, requested_by, {} AS status, reason, decided_by, \
                     created_at_ms, expires_at_ms, decided_at_ms, decision FROM approvals WHERE id = $2",
                    $crate::portable::approvals::APPROVAL_STATUS_AS_OF,
                ))
                .bind(now_ms)
                .bind(id)
                .fetch_optional(self.pool())
                .await
                .map_err($crate::StoreError::from)
            }

            async fn list_approvals(
                &self,
                status: Option<$crate::ApprovalStatus>,
                now_ms: i64,
            ) -> $crate::Result<Vec<$crate::ApprovalRecord>> {
                sqlx::query_as::<_, $crate::ApprovalRecord>(&format!(
                    "SELECT id, kind, payload, requested_by, {as_of} AS status, reason, decided_by, \
                     created_at_ms, expires_at_ms, decided_at_ms, decision FROM approvals \
                     WHERE $2 IS NULL OR {as_of} = $2 ORDER BY created_at_ms DESC, id",
                    as_of = $crate::portable::approvals::APPROVAL_STATUS_AS_OF,
                ))
                .bind(now_ms)
                .bind(status)
                .fetch_all(self.pool())
                .await
                .map_err($crate::StoreError::from)
            }

            async fn decide_approval(
                &self,
                id: &str,
                approve: bool,
                decided_by: &str,
                reason: Option<&str>,
                now_ms: i64,
            ) -> $crate::Result<Option<$crate::ApprovalRecord>> {
                let status = if approve { $crate::ApprovalStatus::Approved } else { $crate::ApprovalStatus::Rejected };
                // The WHERE clause is the whole rule: pending and not yet expired, decided once.
                sqlx::query_as::<_, $crate::ApprovalRecord>(&format!(
                    "UPDATE approvals SET status = $2, decided_by = $3, reason = $4, decided_at_ms = $1 \
                     WHERE id = $5 AND status = 'pending' AND expires_at_ms > $1 RETURNING {}",
                    $crate::portable::approvals::APPROVAL_COLUMNS,
                ))
                .bind(now_ms)
                .bind(status)
                .bind(decided_by)
                .bind(reason)
                .bind(id)
                .fetch_optional(self.pool())
                .await
                .map_err($crate::StoreError::from)
            }

            async fn expire_approvals(&self, now_ms: i64) -> $crate::Result<u64> {
                let expired = sqlx::query(
                    "UPDATE approvals SET status = 'expired' WHERE status = 'pending' AND expires_at_ms <= $1",
                )
                .bind(now_ms)
                .execute(self.pool())
                .await?
                .rows_affected();
                Ok(expired)
            }

            async fn resolve_approval(
                &self,
                id: &str,
                decision: &str,
                decided_by: &str,
                reason: Option<&str>,
                now_ms: i64,
            ) -> $crate::Result<Option<$crate::ApprovalRecord>> {
                let approve = decision == "allow-once" || decision == "allow-always";
                let status = if approve { $crate::ApprovalStatus::Approved } else { $crate::ApprovalStatus::Rejected };
                sqlx::query_as::<_, $crate::ApprovalRecord>(&format!(
                    "UPDATE approvals SET status = $2, decided_by = $3, reason = $4, decided_at_ms = $1, decision = $6 \
                     WHERE id = $5 AND status = 'pending' AND expires_at_ms > $1 RETURNING {}",
                    $crate::portable::approvals::APPROVAL_COLUMNS,
                ))
                .bind(now_ms)
                .bind(status)
                .bind(decided_by)
                .bind(reason)
                .bind(id)
                .bind(decision)
                .fetch_optional(self.pool())
                .await
                .map_err($crate::StoreError::from)
            }

            async fn exec_policy(&self) -> $crate::Result<Option<$crate::ExecPolicyRecord>> {
                let row: Option<(serde_json::Value, String, i64)> =
                    sqlx::query_as("SELECT file, hash, updated_at_ms FROM exec_approval_policy WHERE id = 1")
                        .fetch_optional(self.pool())
                        .await?;
                Ok(row.map(|(file, hash, updated_at_ms)| $crate::ExecPolicyRecord { file, hash, updated_at_ms }))
            }

            async fn swap_exec_policy(
                &self,
                base_hash: Option<&str>,
                file: &serde_json::Value,
                hash: &str,
                now_ms: i64,
            ) -> $crate::Result<bool> {
                // One statement either way, so the compare and the write cannot be split by another
                // writer: insert only when no row exists, update only while the hash is the base.
                let written = match base_hash {
                    None => sqlx::query(
                        "INSERT INTO exec_approval_policy (id, file, hash, updated_at_ms) VALUES (1, $1, $2, $3) \
                         ON CONFLICT (id) DO NOTHING",
                    )
                    .bind(file)
                    .bind(hash)
                    .bind(now_ms)
                    .execute(self.pool())
                    .await?
                    .rows_affected(),
                    Some(base) => sqlx::query(
                        "UPDATE exec_approval_policy SET file = $1, hash = $2, updated_at_ms = $3 \
                         WHERE id = 1 AND hash = $4",
                    )
                    .bind(file)
                    .bind(hash)
                    .bind(now_ms)
                    .bind(base)
                    .execute(self.pool())
                    .await?
                    .rows_affected(),
                };
                Ok(written == 1)
            }

            async fn exec_node_policy(&self, node_id: &str) -> $crate::Result<Option<$crate::ExecPolicyRecord>> {
                let row: Option<(serde_json::Value, String, i64)> =
                    sqlx::query_as("SELECT file, hash, updated_at_ms FROM exec_node_policies WHERE node_id = $1")
                        .bind(node_id)
                        .fetch_optional(self.pool())
                        .await?;
                Ok(row.map(|(file, hash, updated_at_ms)| $crate::ExecPolicyRecord { file, hash, updated_at_ms }))
            }

            async fn swap_exec_node_policy(
                &self,
                node_id: &str,
                base_hash: Option<&str>,
                file: &serde_json::Value,
                hash: &str,
                now_ms: i64,
            ) -> $crate::Result<bool> {
                // As the gateway's policy: one statement compares and writes.
                let written = match base_hash {
                    None => sqlx::query(
                        "INSERT INTO exec_node_policies (node_id, file, hash, updated_at_ms) VALUES ($1, $2, $3, $4) \
                         ON CONFLICT (node_id) DO NOTHING",
                    )
                    .bind(node_id)
                    .bind(file)
                    .bind(hash)
                    .bind(now_ms)
                    .execute(self.pool())
                    .await?
                    .rows_affected(),
                    Some(base) => sqlx::query(
                        "UPDATE exec_node_policies SET file = $1, hash = $2, updated_at_ms = $3 \
                         WHERE node_id = $4 AND hash = $5",
                    )
                    .bind(file)
                    .bind(hash)
                    .bind(now_ms)
                    .bind(node_id)
                    .bind(base)
                    .execute(self.pool())
                    .await?
                    .rows_affected(),
                };
                Ok(written == 1)
            }
        }
    };
}

pub(crate) use approval_store;
