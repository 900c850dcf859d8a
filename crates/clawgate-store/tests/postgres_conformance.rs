//! The backend-neutral conformance suite (`clawgate_store::testing`) run against PostgreSQL:
//! every case as its own test on a fresh database of a real server (`TestPostgres`, started in a
//! temp dir by the testkit; skipped with the reason printed when PostgreSQL is not installed,
//! unless `CLAWGATE_REQUIRE_PEERS` is set). The case list comes from the suite itself, so a new
//! case runs here without edits — every case runs on both backends.
//!
//! SQLite-only, and so not here: the file-backed and crash-safety tests (`crash_safety*.rs`,
//! `sqlite_comfy_on_file.rs`: WAL, kill -9 of a writer process, the backup file) and the SQLite
//! unit tests (pragmas, `EXPLAIN QUERY PLAN`, rows damaged past the CHECK constraints).

use clawgate_store::PgStore;
use clawgate_store::testing;
use clawgate_testkit::TestPostgres;

/// A store on a fresh, empty database, or `None` when the test is skipped.
async fn fresh() -> Option<PgStore> {
    let server = TestPostgres::shared()?;
    let url = server.create_database().expect("create a database");
    Some(PgStore::open(&url).await.expect("open the postgres store"))
}

macro_rules! postgres_cases {
    ($($case:ident),* $(,)?) => {
        $(
            #[tokio::test]
            async fn $case() {
                let Some(store) = fresh().await else { return };
                testing::$case(&store).await;
                store.close().await.expect("close");
            }
        )*
    };
}

clawgate_store::for_each_conformance_case!(postgres_cases);

/// Migrating twice applies nothing the second time, and a second store on the same database
/// (a second gateway) sees the first one's rows.
#[tokio::test]
async fn migrations_apply_once_and_two_stores_share_one_database() {
    use clawgate_store::KvStore;
    let Some(server) = TestPostgres::shared() else { return };
    let url = server.create_database().expect("database");
    let fresh = PgStore::connect(&url).await.expect("connect");
    let applied = fresh.migrate().await.expect("migrate");
    assert_eq!(applied.iter().map(|(v, _)| *v).collect::<Vec<_>>(), vec![1, 2, 3, 4, 5, 6, 9]);
    assert_eq!(fresh.migrate().await.expect("migrate again"), vec![]);
    let a = PgStore::open(&url).await.expect("gateway a");
    let b = PgStore::open(&url).await.expect("gateway b");
    let token = a.get_or_init("gateway.token", || "from-a".to_owned()).await.expect("init on a");
    assert_eq!(b.get_or_init("gateway.token", || "from-b".to_owned()).await.expect("read on b"), token);
}

/// [`AnyStore`](clawgate_store::AnyStore), what the gateway opens, forwards every call: the
/// whole suite passes through it on SQLite (in memory, fast), and on PostgreSQL the cases whose
/// forwarding is not a plain call (the generic `start_next`, the `get_or_init` closure) and a
/// racing claim — the rest forwards through the same macro-written arms.
#[tokio::test]
async fn any_store_forwards_every_call_on_both_backends() {
    use clawgate_store::AnyStore;
    testing::conformance_suite(|| async { AnyStore::open_in_memory().await.expect("sqlite") }).await;
    let Some(server) = TestPostgres::shared() else { return };
    let fresh = || async {
        let url = server.create_database().expect("database");
        AnyStore::open_postgres(&url).await.expect("postgres")
    };
    testing::start_next_claims_and_writes_the_first_entry_together(&fresh().await).await;
    testing::kv_get_or_init_keeps_the_first_value(&fresh().await).await;
    testing::concurrent_claims_never_share_a_job(&fresh().await).await;
}
