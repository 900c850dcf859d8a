//! The event relay's table and notifications on a real PostgreSQL (issue 16, item 2): what one
//! gateway publishes another reads back in order without its own, a listener is woken with the
//! highest id of a batch, a listener whose connection is killed says so after listening again,
//! concurrent publishers never make a reader skip a row, and old rows are pruned.
//! PostgreSQL only (a gateway on SQLite relays nothing); skipped with the reason printed when
//! PostgreSQL is not installed, unless `CLAWGATE_REQUIRE_PEERS` is set.

use std::collections::BTreeSet;
use std::time::Duration;

use clawgate_store::{CLUSTER_LISTENER_NAME, ClusterEvent, PgStore, Wake};
use clawgate_testkit::TestPostgres;

/// How long a test waits for a notification before failing (it normally comes in milliseconds).
const WAIT: Duration = Duration::from_secs(20);

async fn fresh() -> Option<PgStore> {
    Some(fresh_at().await?.0)
}

/// A store on a fresh database, and the database's URL.
async fn fresh_at() -> Option<(PgStore, String)> {
    let server = TestPostgres::shared()?;
    let url = server.create_database().expect("create a database");
    Some((PgStore::open(&url).await.expect("open the postgres store"), url))
}

fn bodies(texts: &[&str]) -> Vec<String> {
    texts.iter().map(|t| format!("{{\"t\":\"{t}\"}}")).collect()
}

fn texts(events: &[ClusterEvent]) -> Vec<String> {
    events
        .iter()
        .map(|e| {
            let v: serde_json::Value = serde_json::from_str(&e.body).expect("a body is JSON");
            v["t"].as_str().expect("t").to_owned()
        })
        .collect()
}

#[tokio::test]
async fn cluster_events_are_read_back_in_order_without_the_readers_own() {
    let Some(store) = fresh().await else { return };
    assert_eq!(store.latest_cluster_event_id().await.expect("latest"), 0);
    assert_eq!(store.publish_cluster_events("a", &[], 1).await.expect("empty batch"), 0);
    let first = store.publish_cluster_events("a", &bodies(&["a1", "a2", "a3"]), 10).await.expect("publish");
    store.publish_cluster_events("b", &bodies(&["b1"]), 11).await.expect("publish");
    let last = store.publish_cluster_events("a", &bodies(&["a4"]), 12).await.expect("publish");
    assert!(last > first);
    assert_eq!(store.latest_cluster_event_id().await.expect("latest"), last);

    let seen_by_b = store.cluster_events_between(0, last, "b", 100).await.expect("read");
    assert_eq!(texts(&seen_by_b), ["a1", "a2", "a3", "a4"]);
    assert!(seen_by_b.iter().all(|e| e.origin == "a"));
    assert_eq!(seen_by_b.iter().map(|e| e.created_at).collect::<Vec<_>>(), [10, 10, 10, 12]);
    assert_eq!(seen_by_b[2].id, first, "the batch's ids follow its order and it reports the highest");

    // Paged: a full page means "read on after its last id"; the upper bound is kept.
    let page = store.cluster_events_between(0, last, "b", 2).await.expect("page 1");
    assert_eq!(texts(&page), ["a1", "a2"]);
    let rest = store.cluster_events_between(page[1].id, first, "b", 2).await.expect("page 2");
    assert_eq!(texts(&rest), ["a3"]);
    assert_eq!(texts(&store.cluster_events_between(0, last, "a", 100).await.expect("read")), ["b1"]);
    store.close().await.expect("close");
}

#[tokio::test]
async fn a_cluster_event_listener_is_woken_with_the_highest_id_of_a_batch() {
    let Some(store) = fresh().await else { return };
    let mut listener = store.cluster_event_listener().await.expect("listen");
    let id = store.publish_cluster_events("a", &bodies(&["x", "y"]), 1).await.expect("publish");
    let woke = tokio::time::timeout(WAIT, listener.next()).await.expect("a notification").expect("listener");
    assert_eq!(woke, Wake::Notified(id));
    // Two batches before the listener looks: one wake-up with the later id, or two in order.
    let one = store.publish_cluster_events("a", &bodies(&["z"]), 2).await.expect("publish");
    let two = store.publish_cluster_events("b", &bodies(&["w"]), 3).await.expect("publish");
    let mut highest = 0;
    while highest < two {
        match tokio::time::timeout(WAIT, listener.next()).await.expect("a notification").expect("listener") {
            Wake::Notified(n) => {
                assert!(n == one || n == two, "{n}");
                assert!(n > highest, "notifications come in commit order");
                highest = n;
            }
            Wake::Reconnected => panic!("no connection was lost"),
        }
    }
    store.close().await.expect("close");
}

#[tokio::test]
async fn a_cluster_event_listener_whose_connection_is_killed_listens_again_and_says_so() {
    let Some((store, url)) = fresh_at().await else { return };
    let mut listener = store.cluster_event_listener().await.expect("listen");
    // The listener's own connection, found by its name (what an operator would look for).
    let killed = terminate_listeners(&url).await;
    assert_eq!(killed, [true], "exactly one listening connection");
    let woke = tokio::time::timeout(WAIT, listener.next()).await.expect("woken by the loss");
    assert!(matches!(woke, Ok(Wake::Reconnected)), "{woke:?}");
    // Listening again: a batch published now wakes it.
    let id = store.publish_cluster_events("a", &bodies(&["after"]), 1).await.expect("publish");
    let woke = tokio::time::timeout(WAIT, listener.next()).await.expect("a notification").expect("listener");
    assert_eq!(woke, Wake::Notified(id));
    store.close().await.expect("close");
}

/// Terminates the connections named [`CLUSTER_LISTENER_NAME`] on the database at `url` (from a
/// connection of the test's own, as an operator or a network failure would).
async fn terminate_listeners(url: &str) -> Vec<bool> {
    let admin = sqlx::PgPool::connect(url).await.expect("connect as admin");
    let killed = sqlx::query_scalar(
        "SELECT pg_terminate_backend(pid) FROM pg_stat_activity \
         WHERE datname = current_database() AND application_name = $1",
    )
    .bind(CLUSTER_LISTENER_NAME)
    .fetch_all(&admin)
    .await
    .expect("terminate");
    admin.close().await;
    killed
}

#[tokio::test]
async fn concurrent_cluster_event_publishers_never_make_a_reader_skip_a_row() {
    let Some(store) = fresh().await else { return };
    const BATCHES: usize = 60;
    let publisher = |origin: &'static str| {
        let store = store.clone();
        tokio::spawn(async move {
            for i in 0..BATCHES {
                let batch = bodies(&[&format!("{origin}{i}-0"), &format!("{origin}{i}-1")]);
                store.publish_cluster_events(origin, &batch, i as i64).await.expect("publish");
            }
        })
    };
    let (a, b) = (publisher("a"), publisher("b"));
    // A reader that follows the latest id as it moves, like a listener catching up.
    let mut last = 0;
    let mut seen = Vec::new();
    loop {
        let done = a.is_finished() && b.is_finished();
        let up_to = store.latest_cluster_event_id().await.expect("latest");
        loop {
            let page = store.cluster_events_between(last, up_to, "reader", 7).await.expect("read");
            seen.extend(texts(&page));
            match page.last() {
                Some(e) if page.len() == 7 => last = e.id,
                _ => break,
            }
        }
        last = up_to;
        if done {
            break;
        }
        tokio::task::yield_now().await;
    }
    a.await.expect("publisher a");
    b.await.expect("publisher b");
    let unique: BTreeSet<&String> = seen.iter().collect();
    assert_eq!(unique.len(), seen.len(), "no row read twice");
    assert_eq!(seen.len(), 2 * BATCHES * 2, "every row read once");
    store.close().await.expect("close");
}

#[tokio::test]
async fn cluster_events_older_than_the_bound_are_pruned() {
    let Some(store) = fresh().await else { return };
    store.publish_cluster_events("a", &bodies(&["old1", "old2"]), 1_000).await.expect("publish");
    let latest = store.publish_cluster_events("a", &bodies(&["new"]), 5_000).await.expect("publish");
    assert_eq!(store.prune_cluster_events(3_000).await.expect("prune"), 2);
    assert_eq!(texts(&store.cluster_events_between(0, latest, "b", 100).await.expect("read")), ["new"]);
    assert_eq!(store.latest_cluster_event_id().await.expect("latest"), latest, "the newest row stays");
    assert_eq!(store.prune_cluster_events(3_000).await.expect("prune again"), 0);
    store.close().await.expect("close");
}
