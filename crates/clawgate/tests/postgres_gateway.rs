//! The real binary on PostgreSQL (issue 16, item 1): `storage.url` names a database on a real
//! server (`TestPostgres`: Debian's binaries, a cluster in a temp dir on a free loopback port), a
//! chat turn with the fake model is kept there, and a restarted gateway still shows it — while no
//! SQLite state file is ever created. `clawgate store migrate` applies the schema once.
//!
//! The URL carries a password (trust authentication ignores it) so the tests can check that it
//! never shows up in anything clawgate prints or logs. Skipped with the reason printed when
//! PostgreSQL is not installed, unless `CLAWGATE_REQUIRE_PEERS` is set (as `scripts/test.sh` does).

use std::time::Duration;

use clawgate_testkit::fake_openai::{FakeOpenAi, Script};
use clawgate_testkit::wait::POLL;
use clawgate_testkit::{RawClient, TestGateway, TestPostgres};
use serde_json::{Value, json};

const BIN: &str = env!("CARGO_BIN_EXE_clawgate");
const HELLO: &str = "Hello from the fake model";
const PASSWORD: &str = "pg-pass-7c1e";
const TURN_WAIT: Duration = Duration::from_secs(30);
const SESSION: &str = "agent:main:pg";

/// A fresh database's URL with a password in it, or `None` when the test is skipped.
fn database_url() -> Option<String> {
    let server = TestPostgres::shared()?;
    let url = server.create_database().expect("create a database");
    Some(url.replacen("postgres@", &format!("postgres:{PASSWORD}@"), 1))
}

async fn connect(gw: &TestGateway) -> RawClient {
    let mut client = RawClient::connect(&gw.ws_url()).await.unwrap_or_else(|e| panic!("opening a websocket: {e:#}"));
    client.handshake(gw.token(), &json!({})).await.unwrap_or_else(|e| panic!("handshake: {e:#}"));
    client
}

/// The history's (role, text) pairs.
async fn history(client: &mut RawClient) -> Vec<(String, String)> {
    let res = client
        .request("chat.history", Some(json!({"sessionKey": SESSION, "limit": 100})))
        .await
        .unwrap_or_else(|e| panic!("chat.history: {e:#}"));
    assert_eq!(res["ok"], true, "{res}");
    let messages = res["payload"]["messages"].as_array().cloned().unwrap_or_default();
    messages
        .iter()
        .map(|m| {
            let text = match &m["content"] {
                Value::String(s) => s.clone(),
                Value::Array(parts) => parts.iter().filter_map(|p| p["text"].as_str()).collect(),
                _ => String::new(),
            };
            (m["role"].as_str().unwrap_or("?").to_owned(), text)
        })
        .collect()
}

fn expected_turn() -> Vec<(String, String)> {
    vec![("user".to_owned(), "Say hello".to_owned()), ("assistant".to_owned(), HELLO.to_owned())]
}

#[tokio::test]
async fn a_chat_turn_is_kept_in_postgres_and_survives_a_restart() {
    let Some(url) = database_url() else { return };
    let fake = FakeOpenAi::start(Script::default()).await.expect("fake model");
    let config = json!({
        "models": {"providers": {"fake": {
            "baseUrl": fake.base_url(), "apiKey": "fake-key", "api": "openai-completions",
            "models": [{"id": "fake-model", "name": "Fake Model"}],
        }}},
        "agents": {"defaults": {"model": {"primary": "fake/fake-model"}}},
        "storage": {"url": url},
    });
    let mut gw = TestGateway::builder(BIN).config(config.to_string()).start().await.expect("gateway on postgres");

    let mut client = connect(&gw).await;
    let ack = client
        .request(
            "chat.send",
            Some(json!({"sessionKey": SESSION, "message": "Say hello", "idempotencyKey": "pg-turn-1"})),
        )
        .await
        .expect("chat.send");
    assert_eq!(ack["ok"], true, "{ack}");
    // Polls the fact (the reply is in the history) on the one connection.
    let deadline = tokio::time::Instant::now() + TURN_WAIT;
    loop {
        let seen = history(&mut client).await;
        if seen == expected_turn() {
            break;
        }
        assert!(tokio::time::Instant::now() < deadline, "no reply in history: {seen:?}\n{}", gw.describe_output());
        tokio::time::sleep(POLL).await;
    }
    drop(client);

    gw.restart().await.expect("restart");
    let mut client = connect(&gw).await;
    assert_eq!(history(&mut client).await, expected_turn(), "the turn outlives the gateway process");

    let sqlite_files: Vec<_> = std::fs::read_dir(gw.state_dir())
        .expect("state dir")
        .flatten()
        .map(|e| e.file_name().to_string_lossy().into_owned())
        .filter(|name| name.ends_with(".db") || name.contains(".db-"))
        .collect();
    assert!(sqlite_files.is_empty(), "a gateway on postgres keeps no SQLite state: {sqlite_files:?}");
    let printed = gw.describe_output();
    assert!(!printed.contains(PASSWORD), "the database password leaked into the output:\n{printed}");
}

#[tokio::test]
async fn store_migrate_applies_the_schema_once_and_never_prints_the_password() {
    let Some(url) = database_url() else { return };
    let migrate = || {
        let out = std::process::Command::new(BIN)
            .args(["store", "migrate"])
            .env("CLAWGATE_STORAGE_URL", &url)
            .env("CLAWGATE_STATE_DIR", std::env::temp_dir().join("clawgate-store-migrate-unused"))
            .output()
            .expect("run clawgate store migrate");
        let text = format!("{}{}", String::from_utf8_lossy(&out.stdout), String::from_utf8_lossy(&out.stderr));
        assert!(out.status.success(), "{text}");
        assert!(!text.contains(PASSWORD), "{text}");
        text
    };
    let first = migrate();
    for line in ["applied 0001 gateway foundation", "applied 0005 turn usage"] {
        assert!(first.contains(line), "{first}");
    }
    assert!(first.contains("store: postgres://postgres:"), "{first}");
    let second = migrate();
    assert!(second.contains("nothing applied") && !second.contains("applied 0"), "{second}");
}

#[test]
fn store_migrate_help_shows_an_example() {
    let out = std::process::Command::new(BIN).args(["store", "migrate", "--help"]).output().expect("run --help");
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(out.status.success());
    assert!(text.contains("clawgate store migrate --url sqlite:"), "{text}");
    assert!(text.contains("CLAWGATE_STORAGE_URL=postgres://"), "{text}");
}
