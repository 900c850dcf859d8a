//! Events relayed between the gateways of one database (issue 16), on the `cluster_events`
//! table and the `clawgate_events` notification channel.
//!
//! A publishing gateway writes a batch of event bodies and notifies the highest id it wrote
//! ([`PgStore::publish_cluster_events`]); every gateway listens ([`ClusterEventListener`]) and,
//! woken with an id, reads the rows up to it that other gateways wrote
//! ([`PgStore::cluster_events_between`]). The notification carries only the id; the bodies
//! are read from the table, so a listener that lost its connection catches up from the last
//! id it applied instead of losing what was notified meanwhile.
//!
//! Ids are visible in the order they are handed out: writers serialise on [`PUBLISH_LOCK`] (a
//! transaction-scoped advisory lock), so when a reader sees id N every smaller id is already
//! committed. Without it, a batch that took id 10 could commit after one that took id 11, and a
//! reader that had moved past 11 would never read 10.

use std::time::Duration;

use sqlx::postgres::{PgListener, PgPoolOptions};

use super::PgStore;
use crate::{Result, StoreError};

/// The notification channel; its payload is the highest id of the batch just committed.
pub const CLUSTER_EVENTS_CHANNEL: &str = "clawgate_events";

/// The `application_name` of each gateway's listening connection (operators see it in
/// `pg_stat_activity`).
pub const CLUSTER_LISTENER_NAME: &str = "clawgate-events";

/// The advisory lock every publishing transaction holds ("clev" in ASCII), distinct from the
/// store's write lock so relaying never waits behind a store write.
const PUBLISH_LOCK: i64 = 0x636c_6576;

/// How long the listener waits to (re)connect before reporting an error to its caller.
const LISTENER_CONNECT_TIMEOUT: Duration = Duration::from_secs(5);

/// One relayed event as read back.
#[derive(Debug, Clone, PartialEq, Eq, sqlx::FromRow)]
pub struct ClusterEvent {
    /// Its position in the relay order (increasing, with gaps).
    pub id: i64,
    /// The gateway that published it (its boot id).
    pub origin: String,
    /// When it was published (Unix ms, the publisher's clock).
    pub created_at: i64,
    /// The event, as the publisher serialised it (JSON text).
    pub body: String,
}

impl PgStore {
    /// Writes `bodies` (JSON texts, in order) as events of `origin` and notifies listeners of
    /// the highest id written, which is returned (0 for an empty batch, which writes nothing).
    /// One transaction: listeners are notified only once the rows are visible.
    pub async fn publish_cluster_events(&self, origin: &str, bodies: &[String], now_ms: i64) -> Result<i64> {
        if bodies.is_empty() {
            return Ok(0);
        }
        let written = async {
            let mut tx = self.pool().begin().await?;
            sqlx::query("SELECT pg_advisory_xact_lock($1)").bind(PUBLISH_LOCK).execute(&mut *tx).await?;
            // `ORDER BY n` hands the ids out in the batch's order.
            let max_id: Option<i64> = sqlx::query_scalar(
                "WITH written AS ( \
                     INSERT INTO cluster_events (origin, created_at, body) \
                     SELECT $1, $2, b::json FROM unnest($3::text[]) WITH ORDINALITY AS t(b, n) ORDER BY n \
                     RETURNING id) \
                 SELECT max(id) FROM written",
            )
            .bind(origin)
            .bind(now_ms)
            .bind(bodies)
            .fetch_one(&mut *tx)
            .await?;
            let max_id = max_id
                .ok_or_else(|| StoreError::Conflict("a non-empty batch of cluster events wrote no row".into()))?;
            // Delivered to listeners when the transaction commits, after the rows are visible.
            sqlx::query("SELECT pg_notify($1, $2)")
                .bind(CLUSTER_EVENTS_CHANNEL)
                .bind(max_id.to_string())
                .execute(&mut *tx)
                .await?;
            tx.commit().await?;
            Ok::<_, StoreError>(max_id)
        }
        .await;
        self.observed(written)
    }

    /// Events after id `after` up to `up_to` (inclusive) not published by `skip_origin`,
    /// oldest first, at most `limit` of them. A caller that got fewer than `limit` has read
    /// everything up to `up_to`; otherwise it reads on after the last id it got.
    pub async fn cluster_events_between(
        &self,
        after: i64,
        up_to: i64,
        skip_origin: &str,
        limit: u32,
    ) -> Result<Vec<ClusterEvent>> {
        Ok(sqlx::query_as(
            "SELECT id, origin, created_at, body::text AS body FROM cluster_events \
             WHERE id > $1 AND id <= $2 AND origin <> $3 ORDER BY id LIMIT $4",
        )
        .bind(after)
        .bind(up_to)
        .bind(skip_origin)
        .bind(i64::from(limit))
        .fetch_all(self.pool())
        .await?)
    }

    /// The highest event id written so far (0 when there is none): where a listener that just
    /// started, or reconnected, reads up to.
    pub async fn latest_cluster_event_id(&self) -> Result<i64> {
        // `max` on the primary key reads one index entry. Pruned rows do not lower it below what
        // a reader has seen: rows are only pruned by age, and the newest row is never older than
        // the ones before it.
        let latest: Option<i64> =
            sqlx::query_scalar("SELECT max(id) FROM cluster_events").fetch_one(self.pool()).await?;
        Ok(latest.unwrap_or(0))
    }

    /// Deletes the events published before `older_than_ms`; returns how many.
    pub async fn prune_cluster_events(&self, older_than_ms: i64) -> Result<u64> {
        let done = sqlx::query("DELETE FROM cluster_events WHERE created_at < $1")
            .bind(older_than_ms)
            .execute(self.pool())
            .await
            .map(|r| r.rows_affected())
            .map_err(StoreError::from);
        self.observed(done)
    }

    /// A listener on [`CLUSTER_EVENTS_CHANNEL`], on a connection of its own (named
    /// [`CLUSTER_LISTENER_NAME`]) so it never holds one of the store's pooled connections.
    pub async fn cluster_event_listener(&self) -> Result<ClusterEventListener> {
        let options = (*self.pool().connect_options()).clone().application_name(CLUSTER_LISTENER_NAME);
        let pool = PgPoolOptions::new()
            .max_connections(1)
            .acquire_timeout(LISTENER_CONNECT_TIMEOUT)
            .max_lifetime(None)
            .idle_timeout(None)
            .connect_lazy_with(options);
        let mut listener = PgListener::connect_with(&pool).await?;
        listener.listen(CLUSTER_EVENTS_CHANNEL).await?;
        Ok(ClusterEventListener { listener })
    }
}

/// Why a [`ClusterEventListener`] woke.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Wake {
    /// Events up to this id are committed (the highest of every notification waiting).
    Notified(i64),
    /// The connection was lost and is listening again: notifications in between are gone, so the
    /// caller must read what was written meanwhile (up to [`PgStore::latest_cluster_event_id`]).
    Reconnected,
}

/// Waits for [`CLUSTER_EVENTS_CHANNEL`] notifications on its own connection.
pub struct ClusterEventListener {
    listener: PgListener,
}

impl std::fmt::Debug for ClusterEventListener {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ClusterEventListener").finish_non_exhaustive()
    }
}

impl ClusterEventListener {
    /// The next wake-up. Notifications already received are folded into one (their highest id),
    /// so a burst costs one read. An error means the listener could not reconnect; the caller
    /// drops it and opens a new one after a backoff.
    pub async fn next(&mut self) -> Result<Wake> {
        let Some(first) = self.listener.try_recv().await? else {
            // `try_recv` reconnects and listens again before it reports the loss.
            return Ok(Wake::Reconnected);
        };
        let mut highest = notified_id(first.payload());
        while let Some(more) = self.listener.next_buffered() {
            highest = highest.max(notified_id(more.payload()));
        }
        Ok(Wake::Notified(highest))
    }
}

/// The id a notification names; a payload that is not one (written by something else on the
/// channel) counts as 0, which reads nothing new.
fn notified_id(payload: &str) -> i64 {
    payload.trim().parse().unwrap_or(0)
}
