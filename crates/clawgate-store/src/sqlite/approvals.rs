//! [`ApprovalStore`](crate::ApprovalStore) on SQLite: the one body both backends share
//! ([`crate::portable::approvals`]).

crate::portable::approvals::approval_store!(super::SqliteStore);

#[cfg(test)]
mod tests {
    use super::super::SqliteStore;

    #[tokio::test]
    async fn schema_refuses_unknown_statuses() {
        let store = SqliteStore::open_in_memory().await.expect("open");
        let bad_approval = sqlx::query(
            "INSERT INTO approvals (id, kind, payload, status, created_at_ms, expires_at_ms) \
             VALUES ('a', 'comfy.run', '{}', 'maybe', 1, 2)",
        )
        .execute(store.pool())
        .await;
        assert!(bad_approval.is_err());
    }
}
