//! [`ApprovalStore`] on the `approvals` table: the approval records' methods are the body both
//! backends share ([`crate::portable::approvals`]); exec approvals' resolution and policy are here.

use super::PgStore;
use crate::portable::approvals::APPROVAL_COLUMNS;
use crate::{ApprovalRecord, ApprovalStatus, ApprovalStore, ExecPolicyRecord, Result, StoreError};

impl ApprovalStore for PgStore {
    crate::portable::approvals::approval_methods!();

    async fn resolve_approval(
        &self,
        id: &str,
        decision: &str,
        decided_by: &str,
        reason: Option<&str>,
        now_ms: i64,
    ) -> Result<Option<ApprovalRecord>> {
        let approve = decision == "allow-once" || decision == "allow-always";
        let status = if approve { ApprovalStatus::Approved } else { ApprovalStatus::Rejected };
        sqlx::query_as::<_, ApprovalRecord>(&format!(
            "UPDATE approvals SET status = $2, decided_by = $3, reason = $4, decided_at_ms = $1, decision = $6 \
             WHERE id = $5 AND status = 'pending' AND expires_at_ms > $1 RETURNING {APPROVAL_COLUMNS}"
        ))
        .bind(now_ms)
        .bind(status)
        .bind(decided_by)
        .bind(reason)
        .bind(id)
        .bind(decision)
        .fetch_optional(self.pool())
        .await
        .map_err(StoreError::from)
    }

    async fn exec_policy(&self) -> Result<Option<ExecPolicyRecord>> {
        let row: Option<(serde_json::Value, String, i64)> =
            sqlx::query_as("SELECT file, hash, updated_at_ms FROM exec_approval_policy WHERE id = 1")
                .fetch_optional(self.pool())
                .await?;
        Ok(row.map(|(file, hash, updated_at_ms)| ExecPolicyRecord { file, hash, updated_at_ms }))
    }

    async fn swap_exec_policy(
        &self,
        base_hash: Option<&str>,
        file: &serde_json::Value,
        hash: &str,
        now_ms: i64,
    ) -> Result<bool> {
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
                "UPDATE exec_approval_policy SET file = $1, hash = $2, updated_at_ms = $3 WHERE id = 1 AND hash = $4",
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

    async fn exec_node_policy(&self, node_id: &str) -> Result<Option<ExecPolicyRecord>> {
        let row: Option<(serde_json::Value, String, i64)> =
            sqlx::query_as("SELECT file, hash, updated_at_ms FROM exec_node_policies WHERE node_id = $1")
                .bind(node_id)
                .fetch_optional(self.pool())
                .await?;
        Ok(row.map(|(file, hash, updated_at_ms)| ExecPolicyRecord { file, hash, updated_at_ms }))
    }

    async fn swap_exec_node_policy(
        &self,
        node_id: &str,
        base_hash: Option<&str>,
        file: &serde_json::Value,
        hash: &str,
        now_ms: i64,
    ) -> Result<bool> {
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
