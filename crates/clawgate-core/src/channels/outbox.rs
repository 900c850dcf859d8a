//! The durable outbox: the [`Outbox`] handle other services queue replies with, and the
//! sender of one account, which sends queued rows in order, only while the channel is ready,
//! honouring the platform's retry-after with capped, jittered backoff.

use std::collections::{BTreeSet, HashMap};
use std::sync::Arc;
use std::time::Duration;

use parking_lot::RwLock;
use serde_json::Value;
use tokio::sync::Notify;

use clawgate_backoff::Backoff;
use clawgate_channels::fault::crash_point;
use clawgate_channels::{AccountKey, Capabilities, OutboundMessage, SendError};
use clawgate_store::{ChannelStore, NewOutbound, OutboxRecord, StoreError};

use super::AccountRuntime;
use crate::gateway::Store;
use crate::metrics::{Direction, SendFailure};
use crate::time::now_ms;

/// The outbox as a service that only delivers sees it: rows go into the store, then the
/// account's sender is woken. Cheap to clone; built with the store alone, so a service that
/// sends to chats (ComfyUI results, cron replies, `send`) needs neither the channel service nor
/// the gateway. The channel service attaches each running account's sender to it.
#[derive(Clone)]
pub struct Outbox {
    store: Store,
    /// Messages sent and failed sends, by channel.
    metrics: crate::metrics::Metrics,
    /// The running accounts' senders: how to wake each, and how its platform measures text.
    senders: Arc<RwLock<HashMap<AccountKey, Attached>>>,
}

/// One running account's sender, as the outbox knows it.
#[derive(Clone)]
struct Attached {
    wake: Arc<Notify>,
    caps: Capabilities,
}

impl std::fmt::Debug for Outbox {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Outbox").field("accounts", &self.senders.read().len()).finish()
    }
}

impl Outbox {
    /// An outbox over `store` with no sender attached yet.
    pub fn new(store: Store, metrics: crate::metrics::Metrics) -> Self {
        Self { store, metrics, senders: Arc::default() }
    }

    /// The metrics the account senders and the ingress count into.
    pub(crate) fn metrics(&self) -> &crate::metrics::Metrics {
        &self.metrics
    }

    /// Queue `items` in one transaction (a row whose idempotency key exists already is not
    /// queued again), then wake the sender of every account they are for. `inbound` is the
    /// inbox row they answer: it is marked answered in the same transaction. Returns how many
    /// rows were new.
    pub async fn queue(&self, items: &[NewOutbound], inbound: Option<i64>) -> Result<u64, StoreError> {
        let result = self.metrics.time_store("outbox_queue", self.store.queue_outbound(items, inbound, now_ms())).await;
        let accounts: BTreeSet<(&str, &str)> = items.iter().map(|i| (i.channel.as_str(), i.account.as_str())).collect();
        for (channel, account) in accounts {
            self.wake(&AccountKey::new(channel, account));
        }
        result
    }

    /// Queue `messages` for one account under `send:<idempotency_key>:<n>` (so repeating a
    /// call queues nothing twice); the row keys, in order.
    pub async fn send(
        &self,
        key: &AccountKey,
        idempotency_key: &str,
        messages: Vec<OutboundMessage>,
    ) -> Result<Vec<String>, StoreError> {
        let items: Vec<NewOutbound> = messages
            .into_iter()
            .enumerate()
            .map(|(i, m)| NewOutbound {
                idempotency_key: format!("send:{idempotency_key}:{i}"),
                channel: key.channel.clone(),
                account: key.account.clone(),
                chat_id: m.chat_id.clone(),
                payload: serde_json::to_value(&m).unwrap_or(Value::Null),
            })
            .collect();
        let keys = items.iter().map(|i| i.idempotency_key.clone()).collect();
        self.queue(&items, None).await?;
        Ok(keys)
    }

    /// Wake the sender of `key` (something was queued for it). A sender that is not waiting
    /// keeps the wake-up for its next look; an account that is not running has no sender and
    /// finds its rows when it starts.
    pub fn wake(&self, key: &AccountKey) {
        if let Some(s) = self.senders.read().get(key) {
            s.wake.notify_one();
        }
    }

    /// How the running account `key` measures and bounds text (to chunk a reply before
    /// queueing it); `None` while the account is not running.
    pub fn capabilities(&self, key: &AccountKey) -> Option<Capabilities> {
        self.senders.read().get(key).map(|s| s.caps)
    }

    /// The sender of `key` now listens on `wake`.
    pub(crate) fn attach(&self, key: AccountKey, wake: Arc<Notify>, caps: Capabilities) {
        self.senders.write().insert(key, Attached { wake, caps });
    }

    /// The sender listening on `wake` stopped (a newer one of the same account stays).
    pub(crate) fn detach(&self, key: &AccountKey, wake: &Arc<Notify>) {
        let mut senders = self.senders.write();
        if senders.get(key).is_some_and(|s| Arc::ptr_eq(&s.wake, wake)) {
            senders.remove(key);
        }
    }
}

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
pub(crate) async fn sender(store: Store, metrics: crate::metrics::Metrics, rt: Arc<AccountRuntime>) {
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
        let row = match metrics.time_store("outbox_next", store.next_outbound(&key.channel, &key.account)).await {
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
        send_one(&store, &metrics, &rt, row).await;
    }
}

async fn sleep_or_cancel(rt: &AccountRuntime, d: Duration) -> bool {
    tokio::select! {
        () = rt.cancel.cancelled() => true,
        () = tokio::time::sleep(d) => false,
    }
}

async fn send_one(store: &Store, metrics: &crate::metrics::Metrics, rt: &AccountRuntime, row: OutboxRecord) {
    let key = &rt.cfg.key;
    let message: OutboundMessage = match serde_json::from_value(row.payload.clone()) {
        Ok(m) => OutboundMessage { retry_key: Some(format!("outbox:{}:{}", row.id, row.idempotency_key)), ..m },
        Err(e) => {
            let err = format!("outbox row is not a message: {e}");
            tracing::error!(account = %key, id = row.id, "{err}");
            metrics.channel_send_failure(&key.channel, SendFailure::Invalid);
            let _ = store.mark_outbound_failed(row.id, &err, now_ms()).await;
            return;
        }
    };
    // The account's own limit and backoff (the webhook channel's config), else the outbox's.
    let policy = rt.channel.retry_policy();
    let (max_attempts, backoff) =
        policy.map_or((MAX_ATTEMPTS, SEND_BACKOFF), |p| (i64::from(p.max_attempts), p.backoff));
    match rt.channel.send(&message).await {
        Ok(delivered) => {
            crash_point("outbox.accepted");
            metrics.channel_message(&key.channel, Direction::Outbound);
            // The duplicate window: the platform has the message; until this one-row write
            // lands, a crash would send it again.
            let mark = store.mark_outbound_sent(row.id, &delivered.message_id, now_ms());
            if let Err(e) = metrics.time_store("outbox_mark_sent", mark).await {
                tracing::error!(account = %key, id = row.id, error = %e,
                                "message sent but not marked; it may be sent again after a restart");
            }
            tracing::debug!(account = %key, id = row.id, chat = %row.chat_id, "outbox message sent");
        }
        Err(SendError::RetryAfter(_, why)) if policy.is_some_and(|p| row.attempts + 1 >= i64::from(p.max_attempts)) => {
            // A channel with its own limit counts waits it was asked for as attempts too.
            metrics.channel_send_failure(&key.channel, SendFailure::RateLimited);
            report_failure(store, rt, &row, &format!("gave up after {} attempts: {why}", row.attempts + 1)).await;
        }
        Err(SendError::RetryAfter(after, why)) => {
            metrics.channel_send_failure(&key.channel, SendFailure::RateLimited);
            // The platform's own wait, plus a little jitter so many rows don't return at once.
            let jitter = RETRY_AFTER_SPREAD.delay(0);
            let next = now_ms() + (after + jitter).min(MAX_BACKOFF).as_millis() as i64;
            tracing::warn!(account = %key, id = row.id, retry_after_ms = after.as_millis() as u64, "platform rate limit; waiting");
            let _ = store.mark_outbound_retry(row.id, next, &why, now_ms()).await;
        }
        Err(SendError::Transient(why)) => {
            metrics.channel_send_failure(&key.channel, SendFailure::Transient);
            if row.attempts + 1 >= max_attempts {
                report_failure(store, rt, &row, &format!("gave up after {} attempts: {why}", row.attempts + 1)).await;
            } else {
                let wait = backoff.delay(u32::try_from(row.attempts).unwrap_or(0));
                tracing::warn!(account = %key, id = row.id, attempt = row.attempts + 1, error = %why,
                               retry_in_ms = wait.as_millis() as u64, "send failed; will retry");
                let _ = store.mark_outbound_retry(row.id, now_ms() + wait.as_millis() as i64, &why, now_ms()).await;
            }
        }
        Err(SendError::Permanent(why)) => {
            metrics.channel_send_failure(&key.channel, SendFailure::Permanent);
            report_failure(store, rt, &row, &why).await
        }
    }
}

async fn report_failure(store: &Store, rt: &AccountRuntime, row: &OutboxRecord, why: &str) {
    tracing::error!(account = %rt.cfg.key, id = row.id, chat = %row.chat_id, error = %why, "message could not be delivered");
    rt.channel.status().mark_error(format!("delivery to chat {} failed: {why}", row.chat_id));
    let _ = store.mark_outbound_failed(row.id, why, now_ms()).await;
}

#[cfg(test)]
mod tests {
    use clawgate_channels::TextMeasure;
    use clawgate_store::{AnyStore, OutboxStatus};

    use super::*;

    fn caps() -> Capabilities {
        Capabilities {
            max_text: 4096,
            measure: TextMeasure::Utf16,
            max_caption: 1024,
            max_photo_bytes: 10 << 20,
            max_upload_bytes: 50 << 20,
            threads: true,
            typing: true,
            typing_interval: Duration::from_secs(5),
        }
    }

    #[tokio::test]
    async fn send_queues_once_per_key_and_wakes_only_that_accounts_sender() {
        let store = AnyStore::open_in_memory().await.expect("store");
        let outbox = Outbox::new(store.clone(), Default::default());
        let (tg, dc) = (AccountKey::new("telegram", "default"), AccountKey::new("discord", "default"));
        let (tg_wake, dc_wake) = (Arc::new(Notify::new()), Arc::new(Notify::new()));
        outbox.attach(tg.clone(), tg_wake.clone(), caps());
        outbox.attach(dc.clone(), dc_wake.clone(), caps());
        assert_eq!(outbox.capabilities(&tg), Some(caps()));

        let msgs = || vec![OutboundMessage::text("200", None, "one"), OutboundMessage::text("200", None, "two")];
        let keys = outbox.send(&tg, "k1", msgs()).await.expect("queued");
        assert_eq!(keys, ["send:k1:0", "send:k1:1"]);
        // The wake-up is kept for a sender that was not waiting.
        tg_wake.notified().await;
        let row = store.next_outbound("telegram", "default").await.expect("read").expect("a row");
        assert_eq!((row.chat_id.as_str(), row.status), ("200", OutboxStatus::Queued));
        // The same idempotency key queues nothing more.
        outbox.send(&tg, "k1", msgs()).await.expect("repeat");
        assert_eq!(store.outbox_counts("telegram", "default").await.expect("counts").queued, 2);
        assert_eq!(store.outbox_counts("discord", "default").await.expect("counts").queued, 0);
        let discord_woken = tokio::time::timeout(Duration::ZERO, dc_wake.notified()).await;
        assert!(discord_woken.is_err(), "another account's sender is left alone");
    }

    #[tokio::test]
    async fn a_stopped_sender_is_detached_but_a_newer_one_stays() {
        let store = AnyStore::open_in_memory().await.expect("store");
        let outbox = Outbox::new(store, Default::default());
        let key = AccountKey::new("telegram", "default");
        let (old, new) = (Arc::new(Notify::new()), Arc::new(Notify::new()));
        outbox.attach(key.clone(), old.clone(), caps());
        outbox.attach(key.clone(), new.clone(), caps());
        outbox.detach(&key, &old);
        assert!(outbox.capabilities(&key).is_some(), "the restarted account keeps its sender");
        outbox.detach(&key, &new);
        assert_eq!(outbox.capabilities(&key), None);
        // Waking an account that is not running is harmless: its rows wait for its start.
        outbox.wake(&key);
    }
}
