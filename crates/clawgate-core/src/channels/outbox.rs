//! The outbox sender of one account: sends queued rows in order, only while the channel is
//! ready, honouring the platform's retry-after with capped, jittered backoff.

use std::sync::Arc;
use std::time::Duration;

use clawgate_backoff::Backoff;
use clawgate_channels::fault::crash_point;
use clawgate_channels::{OutboundMessage, SendError};
use clawgate_store::{ChannelStore, OutboxRecord};

use super::AccountRuntime;
use crate::gateway::Store;
use crate::time::now_ms;

/// Give up on a row after this many transient failures (it is then reported as failed).
const MAX_ATTEMPTS: i64 = 12;
/// Longest wait between two attempts of one row.
const MAX_BACKOFF: Duration = Duration::from_secs(300);
/// Between transient failures of one row: 1 s doubling to [`MAX_BACKOFF`].
const SEND_BACKOFF: Backoff = Backoff::new(Duration::from_secs(1), MAX_BACKOFF);
/// Added to a platform's retry-after so that many rows do not return at once.
const RETRY_AFTER_SPREAD: Backoff = Backoff::new(Duration::from_millis(50), Duration::from_millis(250));
/// How often an idle sender looks at the store even without a kick.
const IDLE_POLL: Duration = Duration::from_secs(30);

/// Needs only the store and its account: no gateway.
pub(crate) async fn sender(store: Store, rt: Arc<AccountRuntime>) {
    let key = rt.cfg.key.clone();
    let mut ready = rt.channel.status().ready();
    loop {
        // Wait until the channel says it can send (after a restart: replay only then).
        while !*ready.borrow_and_update() {
            tokio::select! {
                () = rt.cancel.cancelled() => return,
                r = ready.changed() => if r.is_err() { return },
            }
        }
        let row = match store.next_outbound(&key.channel, &key.account).await {
            Ok(r) => r,
            Err(e) => {
                tracing::error!(account = %key, error = %e, "cannot read the outbox; retrying");
                if sleep_or_cancel(&rt, Duration::from_secs(2)).await {
                    return;
                }
                continue;
            }
        };
        let Some(row) = row else {
            tokio::select! {
                () = rt.cancel.cancelled() => return,
                () = rt.outbox_kick.notified() => {}
                () = tokio::time::sleep(IDLE_POLL) => {}
            }
            continue;
        };
        let wait = row.next_attempt_at_ms - now_ms();
        if wait > 0 {
            tokio::select! {
                () = rt.cancel.cancelled() => return,
                () = tokio::time::sleep(Duration::from_millis(wait as u64)) => {}
            }
            continue;
        }
        send_one(&store, &rt, row).await;
    }
}

async fn sleep_or_cancel(rt: &AccountRuntime, d: Duration) -> bool {
    tokio::select! {
        () = rt.cancel.cancelled() => true,
        () = tokio::time::sleep(d) => false,
    }
}

async fn send_one(store: &Store, rt: &AccountRuntime, row: OutboxRecord) {
    let key = &rt.cfg.key;
    let message: OutboundMessage = match serde_json::from_value(row.payload.clone()) {
        Ok(m) => OutboundMessage { retry_key: Some(format!("outbox:{}:{}", row.id, row.idempotency_key)), ..m },
        Err(e) => {
            let err = format!("outbox row is not a message: {e}");
            tracing::error!(account = %key, id = row.id, "{err}");
            let _ = store.mark_outbound_failed(row.id, &err, now_ms()).await;
            return;
        }
    };
    match rt.channel.send(&message).await {
        Ok(delivered) => {
            crash_point("outbox.accepted");
            // The duplicate window: the platform has the message; until this one-row write
            // lands, a crash would send it again.
            if let Err(e) = store.mark_outbound_sent(row.id, &delivered.message_id, now_ms()).await {
                tracing::error!(account = %key, id = row.id, error = %e,
                                "message sent but not marked; it may be sent again after a restart");
            }
            tracing::debug!(account = %key, id = row.id, chat = %row.chat_id, "outbox message sent");
        }
        Err(SendError::RetryAfter(after, why)) => {
            // The platform's own wait, plus a little jitter so many rows don't return at once.
            let jitter = RETRY_AFTER_SPREAD.delay(0);
            let next = now_ms() + (after + jitter).min(MAX_BACKOFF).as_millis() as i64;
            tracing::warn!(account = %key, id = row.id, retry_after_ms = after.as_millis() as u64, "platform rate limit; waiting");
            let _ = store.mark_outbound_retry(row.id, next, &why, now_ms()).await;
        }
        Err(SendError::Transient(why)) => {
            if row.attempts + 1 >= MAX_ATTEMPTS {
                report_failure(store, rt, &row, &format!("gave up after {} attempts: {why}", row.attempts + 1)).await;
            } else {
                let wait = SEND_BACKOFF.delay(u32::try_from(row.attempts).unwrap_or(0));
                tracing::warn!(account = %key, id = row.id, attempt = row.attempts + 1, error = %why,
                               retry_in_ms = wait.as_millis() as u64, "send failed; will retry");
                let _ = store.mark_outbound_retry(row.id, now_ms() + wait.as_millis() as i64, &why, now_ms()).await;
            }
        }
        Err(SendError::Permanent(why)) => report_failure(store, rt, &row, &why).await,
    }
}

async fn report_failure(store: &Store, rt: &AccountRuntime, row: &OutboxRecord, why: &str) {
    tracing::error!(account = %rt.cfg.key, id = row.id, chat = %row.chat_id, error = %why, "message could not be delivered");
    rt.channel.status().mark_error(format!("delivery to chat {} failed: {why}", row.chat_id));
    let _ = store.mark_outbound_failed(row.id, why, now_ms()).await;
}
