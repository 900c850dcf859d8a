//! The backend-neutral conformance suite (`clawgate_store::testing`) run against SQLite: every
//! case as its own test, once on a fresh in-memory store (what service tests use) and once on a
//! fresh file-backed store (WAL, a real pool of connections, so the concurrency cases really
//! race). The case list comes from the suite itself, so a new case runs here without edits.

use std::path::Path;

use clawgate_store::SqliteStore;
use clawgate_store::testing;

async fn in_memory() -> SqliteStore {
    SqliteStore::open_in_memory().await.expect("open in-memory store")
}

async fn on_file(path: &Path) -> SqliteStore {
    SqliteStore::open(path).await.expect("open file store")
}

macro_rules! sqlite_cases {
    ($($case:ident),* $(,)?) => {
        mod in_memory {
            $(
                #[tokio::test]
                async fn $case() {
                    super::testing::$case(&super::in_memory().await).await;
                }
            )*
        }
        mod file_backed {
            $(
                #[tokio::test]
                async fn $case() {
                    let dir = tempfile::tempdir().expect("tempdir");
                    let store = super::on_file(&dir.path().join("gateway.db")).await;
                    super::testing::$case(&store).await;
                    store.close().await.expect("close");
                }
            )*
        }
    };
}

clawgate_store::for_each_conformance_case!(sqlite_cases);

/// The one-call entry point other backends (and fakes) use runs every case too.
#[tokio::test]
async fn whole_suite_passes_in_one_call() {
    testing::conformance_suite(in_memory).await;
}
