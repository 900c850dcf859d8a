//! `clawgate store copy` (issue 16, item 1): a gateway's SQLite state — chat turns with usage from
//! the fake model, Telegram inbox and outbox rows, a ComfyUI job with its delivered output, a
//! scoped access token — copied by the real binary into a real PostgreSQL (`TestPostgres`),
//! verified by row counts and checksums, and served unchanged by a gateway started on the
//! PostgreSQL URL. A copy taken while the gateway runs, cut short by `--limit`, resumes to the
//! same checksums as a copy made in one go; a changed target row makes `--verify-only` fail
//! naming its table, and the next pass repairs it.
//!
//! The URL carries a password (trust authentication ignores it): it must never be printed.
//! Skipped with the reason printed when PostgreSQL is not installed, unless
//! `CLAWGATE_REQUIRE_PEERS` is set (as `scripts/test.sh` does).

use std::path::{Path, PathBuf};
use std::process::Output;
use std::time::Duration;

use clawgate_store::{PgStore, SessionStore};
use clawgate_testkit::fake_comfy::FakeComfy;
use clawgate_testkit::fake_openai::{FakeOpenAi, Script, Turn};
use clawgate_testkit::fake_telegram::FakeTelegram;
use clawgate_testkit::{RawClient, TestGateway, TestPostgres, wait_until};
use serde_json::{Value, json};

const BIN: &str = env!("CARGO_BIN_EXE_clawgate");
const WAIT: Duration = Duration::from_secs(40);
const PASSWORD: &str = "copy-pass-51d3";
const SESSION: &str = "agent:main:copy";
const OWNER: i64 = 100;

/// A fresh database's URL with a password in it, or `None` when the test is skipped.
fn database_url() -> Option<String> {
    let server = TestPostgres::shared()?;
    let url = server.create_database().expect("create a database");
    Some(url.replacen("postgres@", &format!("postgres:{PASSWORD}@"), 1))
}

fn templates_dir() -> String {
    format!("{}/../../templates", env!("CARGO_MANIFEST_DIR"))
}

fn model_config(model: &FakeOpenAi) -> Value {
    json!({
        "models": {"providers": {"fake": {"baseUrl": model.base_url(), "apiKey": "k", "api": "openai-completions",
                                          "models": [{"id": "m"}]}}},
        "agents": {"defaults": {"model": {"primary": "fake/m"}}},
    })
}

/// The fakes the SQLite gateway talks to (kept alive as long as it runs).
struct Fakes {
    model: FakeOpenAi,
    _telegram: FakeTelegram,
    _comfy: FakeComfy,
}

async fn connect(gw: &TestGateway) -> RawClient {
    let mut c = RawClient::connect(&gw.ws_url()).await.unwrap_or_else(|e| panic!("opening a websocket: {e:#}"));
    c.handshake(gw.token(), &json!({})).await.unwrap_or_else(|e| panic!("handshake: {e:#}"));
    c
}

async fn call(gw: &TestGateway, method: &str, params: Value) -> Value {
    let mut c = connect(gw).await;
    let res = c.request(method, Some(params)).await.unwrap_or_else(|e| panic!("{method}: {e:#}"));
    assert_eq!(res["ok"], true, "{method}: {res}");
    res["payload"].clone()
}

async fn history(gw: &TestGateway) -> Value {
    call(gw, "chat.history", json!({"sessionKey": SESSION, "limit": 100})).await["messages"].clone()
}

/// The session list as the protocol shows it.
async fn sessions(gw: &TestGateway) -> Value {
    call(gw, "sessions.list", json!({})).await["sessions"].clone()
}

/// A gateway on SQLite with real state: two chat turns (the fake model reports usage), a
/// Telegram DM answered through the inbox and outbox, a ComfyUI job run from Telegram and its
/// image delivered, and a scoped access token.
async fn populated_gateway() -> (Fakes, TestGateway) {
    let model = FakeOpenAi::start(Script::always(Turn::echo("echo: ").usage(12, 5))).await.expect("fake model");
    let telegram = FakeTelegram::start().await.expect("fake telegram");
    let comfy = FakeComfy::start().await.expect("fake comfy");
    let mut config = model_config(&model);
    config["channels"] = json!({"telegram": {"botToken": telegram.token(), "apiRoot": telegram.api_root(),
                                              "pollTimeoutSeconds": 1, "dmPolicy": "open", "allowFrom": [OWNER.to_string()]}});
    config["comfy"] = json!({"templatesDir": templates_dir(),
                             "workers": [{"name": "w0", "url": comfy.base_url(), "maxConcurrent": 1}]});
    let gw = TestGateway::builder(BIN).config(config.to_string()).start().await.expect("gateway on sqlite");

    for (i, text) in ["first question", "second question"].iter().enumerate() {
        let sent = call(
            &gw,
            "chat.send",
            json!({"sessionKey": SESSION, "message": text, "idempotencyKey": format!("copy-{i}")}),
        )
        .await;
        assert!(sent["runId"].is_string(), "{sent}");
        let want = format!("echo: {text}");
        wait_until(WAIT, format_args!("the reply {want:?}"), || async {
            history(&gw).await.to_string().contains(&want).then_some(())
        })
        .await
        .expect("a reply");
    }
    telegram.push_private_message(OWNER, "owner", "hello over telegram");
    telegram
        .wait_for_sent(|c| c.param_str("text").as_deref() == Some("echo: hello over telegram"), WAIT)
        .await
        .expect("the DM is answered");
    telegram.push_private_message(OWNER, "owner", "/run invert color=255 width=64 height=32");
    telegram.wait_for_sent(|c| c.is("sendPhoto") && c.status == 200, WAIT).await.expect("the image is delivered");
    telegram
        .wait_for_sent(|c| c.param_str("text").is_some_and(|t| t.contains("[Job Completed]")), WAIT)
        .await
        .expect("the job completes");
    let token =
        call(&gw, "tokens.create", json!({"name": "compose", "scopes": ["operator.write"], "sessions": ["compose:*"]}))
            .await;
    assert!(token["token"].is_string(), "{token}");
    (Fakes { model, _telegram: telegram, _comfy: comfy }, gw)
}

fn sqlite_file(gw: &TestGateway) -> PathBuf {
    gw.state_dir().join("clawgate.db")
}

/// Runs `clawgate store copy --from sqlite:<source> --to <url> <extra>`; checks the password
/// never shows.
fn store_copy(source: &Path, url: &str, extra: &[&str]) -> Output {
    let out = std::process::Command::new(BIN)
        .args(["store", "copy", "--from"])
        .arg(format!("sqlite:{}", source.display()))
        .args(["--to", url])
        .args(extra)
        .env("CLAWGATE_STATE_DIR", source.parent().expect("state dir").join("unused-by-copy"))
        .output()
        .expect("run clawgate store copy");
    let printed = format!("{}{}", String::from_utf8_lossy(&out.stdout), String::from_utf8_lossy(&out.stderr));
    assert!(!printed.contains(PASSWORD), "the database password was printed:\n{printed}");
    out
}

fn describe(out: &Output) -> String {
    format!(
        "exit {:?}\n--- stdout\n{}\n--- stderr\n{}",
        out.status.code(),
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    )
}

fn stdout(out: &Output) -> String {
    String::from_utf8_lossy(&out.stdout).into_owned()
}

/// The verification table's row of `table`, split into words (`table rows rows digest digest ok`).
fn check_row(out: &Output, table: &str) -> Vec<String> {
    let text = stdout(out);
    let verifying = text.split("verifying").nth(1).unwrap_or_else(|| panic!("no verification:\n{}", describe(out)));
    verifying
        .lines()
        .map(|l| l.split_whitespace().map(str::to_owned).collect::<Vec<_>>())
        .find(|words| words.first().map(String::as_str) == Some(table))
        .unwrap_or_else(|| panic!("no row for {table}:\n{}", describe(out)))
}

/// Every verification row's counts and digests.
fn digests(out: &Output) -> Vec<Vec<String>> {
    let tables = [
        "kv",
        "sessions",
        "transcript_entries",
        "turn_usage",
        "channel_inbox",
        "channel_outbox",
        "comfy_jobs",
        "comfy_job_deliveries",
        "access_tokens",
        "runs",
    ];
    tables.iter().map(|t| check_row(out, t)).collect()
}

#[tokio::test]
async fn a_stopped_gateways_state_is_copied_verified_and_served_the_same_from_postgres() {
    let Some(url) = database_url() else { return };
    let (fakes, mut gw) = populated_gateway().await;
    let before_history = history(&gw).await;
    let before_sessions = sessions(&gw).await;
    gw.terminate().await.expect("stop the sqlite gateway");

    let out = store_copy(&sqlite_file(&gw), &url, &[]);
    assert!(out.status.success(), "{}", describe(&out));
    let text = stdout(&out);
    assert!(text.contains("verified: every table matches"), "{}", describe(&out));
    assert!(text.contains("transcript_entries") && text.contains("(100%)"), "progress per table:\n{text}");
    for (table, at_least) in
        [("transcript_entries", 4), ("turn_usage", 2), ("channel_outbox", 1), ("comfy_jobs", 1), ("access_tokens", 1)]
    {
        let row = check_row(&out, table);
        let rows: u64 = row[1].parse().unwrap_or_else(|_| panic!("{row:?}"));
        assert!(rows >= at_least, "{table} holds the gateway's rows: {row:?}");
        assert_eq!(row[1], row[2], "{row:?}");
        assert_eq!(row.last().map(String::as_str), Some("ok"), "{row:?}");
    }

    let mut config = model_config(&fakes.model);
    config["storage"] = json!({"url": url});
    let pg = TestGateway::builder(BIN).config(config.to_string()).start().await.expect("gateway on postgres");
    assert_eq!(history(&pg).await, before_history, "chat.history is the same on PostgreSQL");
    assert_eq!(sessions(&pg).await, before_sessions, "sessions.list is the same on PostgreSQL");
    let tokens = call(&pg, "tokens.list", json!({})).await;
    assert!(tokens.to_string().contains("compose"), "the access token came along: {tokens}");
    assert!(!pg.describe_output().contains(PASSWORD), "the gateway printed the password");
}

#[tokio::test]
async fn an_online_copy_cut_short_resumes_to_the_same_checksums_and_a_changed_row_is_named() {
    let Some(resumed) = database_url() else { return };
    let Some(straight) = database_url() else { return };
    let (_fakes, mut gw) = populated_gateway().await;
    let source = sqlite_file(&gw);

    // While the gateway runs: a copy cut into pieces of 5 rows, each run resuming the last.
    let mut pieces = 0;
    let first = loop {
        let out = store_copy(&source, &resumed, &["--batch", "2", "--limit", "5"]);
        match out.status.code() {
            Some(3) => {
                assert!(stdout(&out).contains("stopped after 5 rows"), "{}", describe(&out));
                pieces += 1;
                assert!(pieces < 100, "the copy never finishes");
            }
            _ => break out,
        }
    };
    assert!(pieces >= 3, "the copy was cut at least three times: {pieces}");
    assert!(first.status.success(), "{}", describe(&first));
    gw.terminate().await.expect("stop the sqlite gateway");
    // After the gateway stopped, a last pass (as the docs say) and a copy in one go compare equal.
    let last = store_copy(&source, &resumed, &[]);
    assert!(last.status.success(), "{}", describe(&last));
    let once = store_copy(&source, &straight, &[]);
    assert!(once.status.success(), "{}", describe(&once));
    assert_eq!(digests(&last), digests(&once), "a resumed copy has the checksums of one made in one go");

    // A row changed in the target: --verify-only fails and names the table; the next pass repairs it.
    let pg = PgStore::open(&resumed).await.expect("open the copy");
    pg.patch_session(SESSION, &json!({"label": "changed behind the copy's back"}), 1).await.expect("tamper");
    pg.close().await.expect("close");
    let verify = store_copy(&source, &resumed, &["--verify-only"]);
    assert_eq!(verify.status.code(), Some(1), "{}", describe(&verify));
    let stderr = String::from_utf8_lossy(&verify.stderr);
    assert!(stderr.contains("verification failed: sessions differ"), "names the table: {}", describe(&verify));
    assert_eq!(check_row(&verify, "sessions").last().map(String::as_str), Some("DIFFERS"));
    assert!(!stdout(&verify).contains("copying"), "--verify-only writes nothing:\n{}", describe(&verify));
    let repaired = store_copy(&source, &resumed, &[]);
    assert!(repaired.status.success(), "{}", describe(&repaired));
    assert_eq!(digests(&repaired), digests(&once));
}

#[tokio::test]
async fn a_target_with_another_sources_copy_is_refused() {
    let Some(url) = database_url() else { return };
    let first = tempfile::tempdir().expect("tempdir");
    let second = tempfile::tempdir().expect("tempdir");
    for dir in [&first, &second] {
        let out = std::process::Command::new(BIN)
            .args(["store", "migrate", "--url"])
            .arg(format!("sqlite:{}", dir.path().join("clawgate.db").display()))
            .output()
            .expect("clawgate store migrate");
        assert!(out.status.success(), "{}", describe(&out));
    }
    let copied = store_copy(&first.path().join("clawgate.db"), &url, &[]);
    assert!(copied.status.success(), "{}", describe(&copied));
    let refused = store_copy(&second.path().join("clawgate.db"), &url, &[]);
    assert_eq!(refused.status.code(), Some(1), "{}", describe(&refused));
    let stderr = String::from_utf8_lossy(&refused.stderr);
    assert!(
        stderr.contains("the target holds a copy of") && stderr.contains("empty database"),
        "{}",
        describe(&refused)
    );
}
