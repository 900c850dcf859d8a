//! The approval records of [`ApprovalStore`](crate::ApprovalStore) (create, read, list, decide,
//! expire) on the `approvals` table, for both backends. `resolve_approval` and the exec policy
//! stay in each backend's `approvals.rs` (exec approvals are still moving).

/// Every column of an approval, in [`crate::ApprovalRecord`]'s order.
pub(crate) const APPROVAL_COLUMNS: &str = "id, kind, payload, requested_by, status, reason, decided_by, created_at_ms, expires_at_ms, decided_at_ms, decision";

/// An approval's status as of `$1` (now): a pending one past its expiry reads as expired.
pub(crate) const APPROVAL_STATUS_AS_OF: &str =
    "CASE WHEN status = 'pending' AND expires_at_ms <= $1 THEN 'expired' ELSE status END";

/// The approval-record methods of `ApprovalStore`, expanded inside each backend's
/// `impl ApprovalStore`.
macro_rules! approval_methods {
    () => {
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
            let expired =
                sqlx::query("UPDATE approvals SET status = 'expired' WHERE status = 'pending' AND expires_at_ms <= $1")
                    .bind(now_ms)
                    .execute(self.pool())
                    .await?
                    .rows_affected();
            Ok(expired)
        }
    };
}

pub(crate) use approval_methods;
