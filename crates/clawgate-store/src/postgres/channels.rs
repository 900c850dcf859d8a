//! [`ChannelStore`] on the `channel_inbox`, `channel_outbox` and `channel_pairings` tables.

use serde_json::Value;
use sqlx::PgConnection;

use super::{PgStore, count};
use crate::{
    ChannelPairing, ChannelPairingStatus, ChannelStore, InboxRecord, InboxStatus, NewOutbound, OutboxCounts,
    OutboxRecord, OutboxStatus, Result, StoreError,
};

const INBOX_COLUMNS: &str = "id, channel, account, message_id, chat_id, sender_id, message, status, reason, \
     run_id, session_key, received_at_ms, updated_at_ms";

const OUTBOX_COLUMNS: &str = "id, idempotency_key, channel, account, chat_id, payload, status, attempts, \
     next_attempt_at_ms, last_error, platform_message_id, inbox_id, created_at_ms, updated_at_ms";

const PAIRING_COLUMNS: &str =
    "channel, account, sender_id, sender_name, chat_id, code, status, created_at_ms, expires_at_ms, resolved_at_ms";

/// Reads one outbox row's status on `conn`, to explain why a conditional update matched
/// nothing.
async fn outbox_status(conn: &mut PgConnection, id: i64) -> Result<Option<OutboxStatus>> {
    let status = sqlx::query_scalar("SELECT status FROM channel_outbox WHERE id = $1").bind(id);
    Ok(status.fetch_optional(&mut *conn).await?)
}

/// Reads one pairing on `conn` (so it can take part in a transaction).
async fn fetch_pairing(
    conn: &mut PgConnection,
    channel: &str,
    account: &str,
    sender_id: &str,
) -> Result<Option<ChannelPairing>> {
    sqlx::query_as::<_, ChannelPairing>(&format!(
        "SELECT {PAIRING_COLUMNS} FROM channel_pairings WHERE channel = $1 AND account = $2 AND sender_id = $3"
    ))
    .bind(channel)
    .bind(account)
    .bind(sender_id)
    .fetch_optional(&mut *conn)
    .await
    .map_err(StoreError::from)
}

impl ChannelStore for PgStore {
    async fn record_inbound(
        &self,
        channel: &str,
        account: &str,
        message_id: &str,
        chat_id: &str,
        sender_id: &str,
        message: &Value,
        now_ms: i64,
    ) -> Result<Option<i64>> {
        // One statement: the unique index decides whether this is the first delivery, and a
        // conflicting insert returns no row.
        let id = sqlx::query_scalar(
            "INSERT INTO channel_inbox (channel, account, message_id, chat_id, sender_id, message, status, \
             received_at_ms, updated_at_ms) VALUES ($1, $2, $3, $4, $5, $6, 'received', $7, $7) \
             ON CONFLICT (channel, account, message_id) DO NOTHING RETURNING id",
        )
        .bind(channel)
        .bind(account)
        .bind(message_id)
        .bind(chat_id)
        .bind(sender_id)
        .bind(message)
        .bind(now_ms)
        .fetch_optional(self.pool())
        .await?;
        Ok(id)
    }

    async fn get_inbound(&self, id: i64) -> Result<Option<InboxRecord>> {
        sqlx::query_as::<_, InboxRecord>(&format!("SELECT {INBOX_COLUMNS} FROM channel_inbox WHERE id = $1"))
            .bind(id)
            .fetch_optional(self.pool())
            .await
            .map_err(StoreError::from)
    }

    async fn set_inbound_status(
        &self,
        id: i64,
        status: InboxStatus,
        reason: Option<&str>,
        run_id: Option<&str>,
        session_key: Option<&str>,
        now_ms: i64,
    ) -> Result<()> {
        let updated = sqlx::query(
            "UPDATE channel_inbox SET status = $1, reason = COALESCE($2, reason), run_id = COALESCE($3, run_id), \
             session_key = COALESCE($4, session_key), updated_at_ms = $5 WHERE id = $6",
        )
        .bind(status)
        .bind(reason)
        .bind(run_id)
        .bind(session_key)
        .bind(now_ms)
        .bind(id)
        .execute(self.pool())
        .await?
        .rows_affected();
        if updated == 0 { Err(StoreError::NotFound) } else { Ok(()) }
    }

    async fn pending_inbound(&self, limit: u32) -> Result<Vec<InboxRecord>> {
        sqlx::query_as::<_, InboxRecord>(&format!(
            "SELECT {INBOX_COLUMNS} FROM channel_inbox WHERE status IN ('received', 'routed') ORDER BY id LIMIT $1"
        ))
        .bind(i64::from(limit))
        .fetch_all(self.pool())
        .await
        .map_err(StoreError::from)
    }

    async fn queue_outbound(&self, items: &[NewOutbound], answers: Option<i64>, now_ms: i64) -> Result<u64> {
        // The reply's chunks and the "answered" mark commit together or not at all, so after a
        // crash an answered inbox row always has its whole reply queued.
        let mut tx = self.begin_write().await?;
        let mut inserted = 0;
        for item in items {
            inserted += sqlx::query(
                "INSERT INTO channel_outbox (idempotency_key, channel, account, chat_id, payload, status, attempts, \
                 next_attempt_at_ms, inbox_id, created_at_ms, updated_at_ms) \
                 VALUES ($1, $2, $3, $4, $5, 'queued', 0, $6, $7, $6, $6) \
                 ON CONFLICT (idempotency_key) DO NOTHING",
            )
            .bind(&item.idempotency_key)
            .bind(&item.channel)
            .bind(&item.account)
            .bind(&item.chat_id)
            .bind(&item.payload)
            .bind(now_ms)
            .bind(answers)
            .execute(&mut *tx)
            .await?
            .rows_affected();
        }
        if let Some(inbox_id) = answers {
            let answered =
                sqlx::query("UPDATE channel_inbox SET status = 'answered', updated_at_ms = $1 WHERE id = $2")
                    .bind(now_ms)
                    .bind(inbox_id)
                    .execute(&mut *tx)
                    .await?
                    .rows_affected();
            if answered == 0 {
                // Dropping the transaction rolls the inserts back.
                return Err(StoreError::NotFound);
            }
        }
        self.commit(tx).await?;
        Ok(inserted)
    }

    async fn next_outbound(&self, channel: &str, account: &str) -> Result<Option<OutboxRecord>> {
        sqlx::query_as::<_, OutboxRecord>(&format!(
            "SELECT {OUTBOX_COLUMNS} FROM channel_outbox \
             WHERE channel = $1 AND account = $2 AND status = 'queued' ORDER BY id LIMIT 1"
        ))
        .bind(channel)
        .bind(account)
        .fetch_optional(self.pool())
        .await
        .map_err(StoreError::from)
    }

    async fn list_outbound(
        &self,
        channel: &str,
        account: &str,
        status: Option<OutboxStatus>,
        limit: u32,
    ) -> Result<Vec<OutboxRecord>> {
        sqlx::query_as::<_, OutboxRecord>(&format!(
            "SELECT {OUTBOX_COLUMNS} FROM channel_outbox \
             WHERE channel = $1 AND account = $2 AND ($3 IS NULL OR status = $3) ORDER BY id LIMIT $4"
        ))
        .bind(channel)
        .bind(account)
        .bind(status)
        .bind(i64::from(limit))
        .fetch_all(self.pool())
        .await
        .map_err(StoreError::from)
    }

    async fn outbound_by_key(&self, idempotency_key: &str) -> Result<Option<OutboxRecord>> {
        sqlx::query_as::<_, OutboxRecord>(&format!(
            "SELECT {OUTBOX_COLUMNS} FROM channel_outbox WHERE idempotency_key = $1"
        ))
        .bind(idempotency_key)
        .fetch_optional(self.pool())
        .await
        .map_err(StoreError::from)
    }

    async fn mark_outbound_sent(&self, id: i64, platform_message_id: &str, now_ms: i64) -> Result<()> {
        // Exactly one statement (its own implicit transaction): the sooner "sent" is durable,
        // the shorter the window in which a crash makes the sender repeat the message. A row
        // already sent keeps its first platform id and time.
        let updated = sqlx::query(
            "UPDATE channel_outbox SET \
             platform_message_id = CASE WHEN status = 'sent' THEN platform_message_id ELSE $1 END, \
             updated_at_ms = CASE WHEN status = 'sent' THEN updated_at_ms ELSE $2 END, \
             status = 'sent' WHERE id = $3",
        )
        .bind(platform_message_id)
        .bind(now_ms)
        .bind(id)
        .execute(self.pool())
        .await?
        .rows_affected();
        if updated == 0 { Err(StoreError::NotFound) } else { Ok(()) }
    }

    async fn mark_outbound_retry(&self, id: i64, next_attempt_at_ms: i64, error: &str, now_ms: i64) -> Result<()> {
        let mut conn = self.pool().acquire().await?;
        let updated = sqlx::query(
            "UPDATE channel_outbox SET attempts = attempts + 1, next_attempt_at_ms = $1, last_error = $2, \
             updated_at_ms = $3 WHERE id = $4 AND status = 'queued'",
        )
        .bind(next_attempt_at_ms)
        .bind(error)
        .bind(now_ms)
        .bind(id)
        .execute(&mut *conn)
        .await?
        .rows_affected();
        if updated == 1 {
            return Ok(());
        }
        match outbox_status(&mut conn, id).await? {
            None => Err(StoreError::NotFound),
            Some(status) => Err(StoreError::Conflict(format!("outbox row {id} is {status}, not queued"))),
        }
    }

    async fn mark_outbound_failed(&self, id: i64, error: &str, now_ms: i64) -> Result<()> {
        let mut conn = self.pool().acquire().await?;
        let updated = sqlx::query(
            "UPDATE channel_outbox SET attempts = attempts + 1, status = 'failed', last_error = $1, \
             updated_at_ms = $2 WHERE id = $3 AND status = 'queued'",
        )
        .bind(error)
        .bind(now_ms)
        .bind(id)
        .execute(&mut *conn)
        .await?
        .rows_affected();
        if updated == 1 {
            return Ok(());
        }
        match outbox_status(&mut conn, id).await? {
            None => Err(StoreError::NotFound),
            Some(OutboxStatus::Failed) => Ok(()),
            Some(status) => Err(StoreError::Conflict(format!("outbox row {id} is {status}, cannot fail it"))),
        }
    }

    async fn outbox_counts(&self, channel: &str, account: &str) -> Result<OutboxCounts> {
        let rows: Vec<(OutboxStatus, i64)> = sqlx::query_as(
            "SELECT status, COUNT(*) FROM channel_outbox WHERE channel = $1 AND account = $2 GROUP BY status",
        )
        .bind(channel)
        .bind(account)
        .fetch_all(self.pool())
        .await?;
        let mut counts = OutboxCounts::default();
        for (status, n) in rows {
            let n = count("outbox", n)?;
            match status {
                OutboxStatus::Queued => counts.queued = n,
                OutboxStatus::Sent => counts.sent = n,
                OutboxStatus::Failed => counts.failed = n,
            }
        }
        Ok(counts)
    }

    async fn accounts_with_queued_outbound(&self) -> Result<Vec<(String, String)>> {
        let accounts = sqlx::query_as(
            "SELECT channel, account FROM channel_outbox WHERE status = 'queued' \
             GROUP BY channel, account ORDER BY MIN(id)",
        )
        .fetch_all(self.pool())
        .await?;
        Ok(accounts)
    }

    async fn prune_channel_rows(&self, older_than_ms: i64) -> Result<u64> {
        let mut tx = self.begin_write().await?;
        let inbox =
            sqlx::query("DELETE FROM channel_inbox WHERE status IN ('answered', 'dropped') AND updated_at_ms < $1")
                .bind(older_than_ms)
                .execute(&mut *tx)
                .await?
                .rows_affected();
        let outbox =
            sqlx::query("DELETE FROM channel_outbox WHERE status IN ('sent', 'failed') AND updated_at_ms < $1")
                .bind(older_than_ms)
                .execute(&mut *tx)
                .await?
                .rows_affected();
        self.commit(tx).await?;
        Ok(inbox + outbox)
    }

    async fn request_channel_pairing(
        &self,
        channel: &str,
        account: &str,
        sender_id: &str,
        sender_name: Option<&str>,
        chat_id: &str,
        code: &str,
        now_ms: i64,
        expires_at_ms: i64,
    ) -> Result<ChannelPairing> {
        // The write lock up front serialises requests, so the code check below cannot race
        // another request taking the same code.
        let mut tx = self.begin_write().await?;
        if let Some(current) = fetch_pairing(&mut tx, channel, account, sender_id).await? {
            let live = match current.status {
                ChannelPairingStatus::Approved => true,
                ChannelPairingStatus::Pending => current.expires_at_ms > now_ms,
                ChannelPairingStatus::Rejected => false,
            };
            if live {
                self.commit(tx).await?;
                return Ok(current);
            }
        }
        let taken: Option<i64> = sqlx::query_scalar(
            "SELECT 1::BIGINT FROM channel_pairings WHERE lower(code) = lower($1) AND status = 'pending' \
             AND expires_at_ms > $2 AND NOT (channel = $3 AND account = $4 AND sender_id = $5) LIMIT 1",
        )
        .bind(code)
        .bind(now_ms)
        .bind(channel)
        .bind(account)
        .bind(sender_id)
        .fetch_optional(&mut *tx)
        .await?;
        if taken.is_some() {
            return Err(StoreError::Conflict(format!("pairing code {code:?} is already pending")));
        }
        let row = sqlx::query_as::<_, ChannelPairing>(&format!(
            "INSERT INTO channel_pairings ({PAIRING_COLUMNS}) VALUES ($1, $2, $3, $4, $5, $6, 'pending', $7, $8, NULL) \
             ON CONFLICT (channel, account, sender_id) DO UPDATE SET sender_name = excluded.sender_name, \
             chat_id = excluded.chat_id, code = excluded.code, status = 'pending', \
             created_at_ms = excluded.created_at_ms, expires_at_ms = excluded.expires_at_ms, \
             resolved_at_ms = NULL RETURNING {PAIRING_COLUMNS}"
        ))
        .bind(channel)
        .bind(account)
        .bind(sender_id)
        .bind(sender_name)
        .bind(chat_id)
        .bind(code)
        .bind(now_ms)
        .bind(expires_at_ms)
        .fetch_one(&mut *tx)
        .await?;
        self.commit(tx).await?;
        Ok(row)
    }

    async fn resolve_channel_pairing(
        &self,
        code: &str,
        channel: Option<&str>,
        approve: bool,
        now_ms: i64,
    ) -> Result<Option<ChannelPairing>> {
        let status = if approve { ChannelPairingStatus::Approved } else { ChannelPairingStatus::Rejected };
        // One statement: finding the pending request and resolving it cannot be separated by
        // a second resolver, so a code is resolved at most once.
        sqlx::query_as::<_, ChannelPairing>(&format!(
            "UPDATE channel_pairings SET status = $1, resolved_at_ms = $2 \
             WHERE (channel, account, sender_id) = (SELECT channel, account, sender_id FROM channel_pairings \
                            WHERE lower(code) = lower($3) AND status = 'pending' AND expires_at_ms > $2 \
                              AND ($4 IS NULL OR channel = $4) \
                            ORDER BY created_at_ms DESC LIMIT 1) \
             RETURNING {PAIRING_COLUMNS}"
        ))
        .bind(status)
        .bind(now_ms)
        .bind(code)
        .bind(channel)
        .fetch_optional(self.pool())
        .await
        .map_err(StoreError::from)
    }

    async fn is_channel_sender_paired(&self, channel: &str, account: &str, sender_id: &str) -> Result<bool> {
        let paired: Option<i64> = sqlx::query_scalar(
            "SELECT 1::BIGINT FROM channel_pairings \
             WHERE channel = $1 AND account = $2 AND sender_id = $3 AND status = 'approved'",
        )
        .bind(channel)
        .bind(account)
        .bind(sender_id)
        .fetch_optional(self.pool())
        .await?;
        Ok(paired.is_some())
    }

    async fn list_channel_pairings(
        &self,
        status: Option<ChannelPairingStatus>,
        now_ms: i64,
    ) -> Result<Vec<ChannelPairing>> {
        sqlx::query_as::<_, ChannelPairing>(&format!(
            "SELECT {PAIRING_COLUMNS} FROM channel_pairings \
             WHERE ($1 IS NULL OR status = $1) AND NOT (status = 'pending' AND expires_at_ms <= $2) \
             ORDER BY created_at_ms DESC, channel, account, sender_id"
        ))
        .bind(status)
        .bind(now_ms)
        .fetch_all(self.pool())
        .await
        .map_err(StoreError::from)
    }

    async fn remove_channel_pairing(&self, channel: &str, account: &str, sender_id: &str) -> Result<bool> {
        let removed =
            sqlx::query("DELETE FROM channel_pairings WHERE channel = $1 AND account = $2 AND sender_id = $3")
                .bind(channel)
                .bind(account)
                .bind(sender_id)
                .execute(self.pool())
                .await?
                .rows_affected();
        Ok(removed > 0)
    }
}
