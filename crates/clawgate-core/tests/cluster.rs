//! The cluster service on a real PostgreSQL (two members on one database, `TestPostgres`;
//! skipped with the reason printed when PostgreSQL is not installed, unless
//! `CLAWGATE_REQUIRE_PEERS` is set) and alone on SQLite: registration, leases that go to one
//! member and move when it leaves or its lease expires, a holder that stops at once when it
//! lost its lease, the sweep of a dead member's runs, and `status`.

use std::time::Duration;

use clawgate_core::cluster::{Cluster, ClusterSettings, Member};
use clawgate_core::tasks::Tasks;
use clawgate_store::{AnyStore, ClusterStore, GatewayRecord, RunKind, RunStatus, RunStore};
use clawgate_testkit::TestPostgres;
use tokio::sync::watch;

/// Short timings so a takeover happens within a test's patience.
const FAST: ClusterSettings =
    ClusterSettings { heartbeat: Duration::from_millis(100), lease_ttl: Duration::from_millis(900) };

/// How long a fact may take to show up (generous: the machine is shared).
const PATIENCE: Duration = Duration::from_secs(30);

fn member(id: &str) -> Member {
    Member { id: id.to_owned(), version: "test".to_owned(), started_at_ms: 1, listen_addr: format!("{id}:1") }
}

fn now_ms() -> i64 {
    clawgate_core::time::now_ms()
}

/// Waits until the lease receiver says `want`.
async fn until_held(rx: &mut watch::Receiver<bool>, want: bool) {
    tokio::time::timeout(PATIENCE, rx.wait_for(|held| *held == want))
        .await
        .unwrap_or_else(|_| panic!("the lease never became {want}"))
        .expect("the keeper is gone");
}

/// Two members on one fresh database, started; `None` when the test is skipped.
async fn two_members() -> Option<(Cluster, Tasks, Cluster, Tasks, AnyStore)> {
    two_members_with(FAST).await
}

/// As [`two_members`], with other timings.
async fn two_members_with(settings: ClusterSettings) -> Option<(Cluster, Tasks, Cluster, Tasks, AnyStore)> {
    let server = TestPostgres::shared()?;
    let url = server.create_database().expect("create a database");
    let open = || async { AnyStore::open_postgres(&url).await.expect("open") };
    let (tasks_a, tasks_b) = (Tasks::new(), Tasks::new());
    let a = Cluster::new(open().await, tasks_a.clone(), member("gw-a"), settings);
    let b = Cluster::new(open().await, tasks_b.clone(), member("gw-b"), settings);
    a.start().await;
    b.start().await;
    Some((a, tasks_a, b, tasks_b, open().await))
}

#[tokio::test]
async fn a_lease_goes_to_one_member_and_moves_when_it_leaves() {
    let Some((a, tasks_a, b, _tasks_b, store)) = two_members().await else { return };
    assert!(!a.is_solo());
    let mut on_a = a.hold("channel:telegram:default");
    until_held(&mut on_a, true).await;
    let mut on_b = b.hold("channel:telegram:default");
    // b's keeper is refused: the store still names a, and b does not say it holds it.
    assert!(!*on_b.borrow(), "two holders of one lease");
    let holders: Vec<String> = store.list_leases().await.expect("leases").into_iter().map(|l| l.holder).collect();
    assert_eq!(holders, ["gw-a"]);

    // A clean stop leaves the registry and releases the lease: b takes it over.
    tasks_a.cancel();
    tasks_a.shutdown(Duration::from_secs(10)).await;
    until_held(&mut on_b, true).await;
    let gateways: Vec<String> = store.list_gateways().await.expect("list").into_iter().map(|g| g.id).collect();
    assert_eq!(gateways, ["gw-b"], "a left the registry");
}

#[tokio::test]
async fn a_lease_of_a_member_that_died_is_taken_over_once_it_expires() {
    let Some((_a, _ta, b, _tb, store)) = two_members().await else { return };
    // A member that died holding the lease: its row stays until it expires.
    assert!(store.try_acquire_lease("cron", "gw-dead", 1_500, now_ms()).await.expect("dead member's lease"));
    let mut on_b = b.hold("cron");
    until_held(&mut on_b, true).await;
    let lease = store.list_leases().await.expect("leases").pop().expect("one lease");
    assert_eq!(lease.holder, "gw-b");
}

#[tokio::test]
async fn a_holder_stops_at_once_when_another_member_took_its_lease() {
    let Some((a, _ta, _b, _tb, store)) = two_members().await else { return };
    let mut on_a = a.hold("comfy:worker:w1");
    until_held(&mut on_a, true).await;
    assert!(a.holds("comfy:worker:w1"));
    // What a long pause of a's keeper would allow: its lease expired and an intruder took it.
    assert!(store.release_lease("comfy:worker:w1", "gw-a").await.expect("release"));
    assert!(store.try_acquire_lease("comfy:worker:w1", "gw-intruder", 60_000, now_ms()).await.expect("intrude"));
    until_held(&mut on_a, false).await;
    assert!(!a.holds("comfy:worker:w1"));
}

#[tokio::test]
async fn dropping_every_receiver_releases_the_lease() {
    let Some((a, _ta, _b, _tb, store)) = two_members().await else { return };
    let mut first = a.hold("l");
    let second = a.hold("l");
    until_held(&mut first, true).await;
    assert!(*second.borrow(), "receivers of one lease agree");
    drop(first);
    drop(second);
    tokio::time::timeout(PATIENCE, async {
        while !store.list_leases().await.expect("leases").is_empty() {
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    })
    .await
    .expect("the lease is released once nobody follows it");
}

#[tokio::test]
async fn the_sweep_ends_runs_of_a_dead_member_and_spares_a_live_ones() {
    // A member is dead when unseen for a lease ttl. With FAST's 900 ms a loaded machine could
    // delay a's heartbeat that long (it shares this test's thread) and a would look dead too;
    // this test is about the sweep, not about timings, so a's liveness is given a long ttl.
    let slow = ClusterSettings { heartbeat: Duration::from_millis(100), lease_ttl: Duration::from_secs(30) };
    let Some((a, _ta, b, _tb, store)) = two_members_with(slow).await else { return };
    let long_ago = now_ms() - 60_000;
    let dead = GatewayRecord {
        id: "gw-dead".into(),
        started_at_ms: long_ago,
        seen_at_ms: long_ago,
        listen_addr: "x:1".into(),
        version: "old".into(),
    };
    store.upsert_gateway(&dead).await.expect("dead member");
    for (run, owner) in [("r-dead", "gw-dead"), ("r-live", a.id())] {
        store.enqueue(run, run, RunKind::Chat, &serde_json::json!({}), now_ms()).await.expect("enqueue");
        let started = store.start_next(run, owner, now_ms(), |_, _| ((), None)).await.expect("start");
        assert!(started.is_some());
        // The turn began (a transcript entry): a cut-off run is interrupted, not queued again.
        clawgate_store::TranscriptStore::append(
            &store,
            "sid",
            clawgate_store::TranscriptRole::User,
            &serde_json::json!("hi"),
            Some(run),
            clawgate_store::EntryStatus::Final,
            now_ms(),
        )
        .await
        .expect("entry");
    }
    b.sweep().await;
    let status = |run: &'static str| {
        let store = store.clone();
        async move { store.get_run(run).await.expect("get").expect(run).status }
    };
    assert_eq!(status("r-dead").await, RunStatus::Interrupted);
    assert_eq!(status("r-live").await, RunStatus::Running, "a live member's run is never touched");
}

#[tokio::test]
async fn status_lists_both_members_and_the_lease_holder() {
    let Some((a, _ta, b, _tb, _store)) = two_members().await else { return };
    let mut on_a = a.hold("channel:telegram:default");
    until_held(&mut on_a, true).await;
    let seen = b.status().await;
    assert_eq!((seen.id.as_str(), seen.mode.as_str()), ("gw-b", "shared"));
    assert_eq!((seen.heartbeat_ms, seen.lease_ttl_ms), (100, 900));
    let gateways: Vec<(&str, &str, bool, bool)> =
        seen.gateways.iter().map(|g| (g.id.as_str(), g.addr.as_str(), g.alive, g.is_self)).collect();
    assert_eq!(gateways, [("gw-a", "gw-a:1", true, false), ("gw-b", "gw-b:1", true, true)]);
    let leases: Vec<(&str, &str)> = seen.leases.iter().map(|l| (l.name.as_str(), l.holder.as_str())).collect();
    assert_eq!(leases, [("channel:telegram:default", "gw-a")]);
    assert!(seen.leases[0].expires_in_ms.is_some_and(|ms| ms > 0 && ms <= 900), "{:?}", seen.leases);
}

#[tokio::test]
async fn alone_on_sqlite_every_lease_is_held_at_once() {
    let store = AnyStore::open_in_memory().await.expect("sqlite");
    // What a previous process left: on SQLite it was the only member, and it is gone.
    let old = GatewayRecord {
        id: "previous".into(),
        started_at_ms: 1,
        seen_at_ms: now_ms(),
        listen_addr: "x:1".into(),
        version: "old".into(),
    };
    store.upsert_gateway(&old).await.expect("previous process");
    let cluster = Cluster::new(store.clone(), Tasks::new(), member("gw-solo"), ClusterSettings::default());
    cluster.start().await;
    assert!(cluster.is_solo());
    assert!(*cluster.hold("channel:telegram:default").borrow(), "granted without waiting");
    assert!(cluster.holds("channel:telegram:default"));
    assert!(store.list_leases().await.expect("leases").is_empty(), "no lease row on a single gateway");
    let seen = cluster.status().await;
    assert_eq!(seen.mode, "single");
    let gateways: Vec<(&str, bool)> = seen.gateways.iter().map(|g| (g.id.as_str(), g.is_self)).collect();
    assert_eq!(gateways, [("gw-solo", true)]);
    assert_eq!(seen.leases.len(), 1);
    assert_eq!((seen.leases[0].holder.as_str(), seen.leases[0].expires_in_ms), ("gw-solo", None));
}
