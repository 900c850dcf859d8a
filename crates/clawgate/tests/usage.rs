//! Usage and cost (issue 14 item 5): the real binary runs turns against two fake models that
//! report known token counts, and `usage.cost` / `usage.status` (and the real `openclaw gateway
//! usage-cost`) must show sums equal to the stored turns and costs equal to hand-computed ones.
//!
//! Setup: agent `main` uses `alpha/m1`, priced at $2 input and $10 output per million tokens, and
//! answers every turn with 1 000 input and 200 output tokens; agent `ops` uses `beta/m2`, which
//! has no price, and answers with 3 000 input and 50 output tokens. The two days are made by
//! setting the stored turns' timestamps (the gateway's clock is the machine's).

use std::time::Duration;

use clawgate_testkit::fake_openai::{FakeOpenAi, Script, Turn};
use clawgate_testkit::{OpenClawPeers, RawClient, TestGateway};
use serde_json::{Value, json};

const BIN: &str = env!("CARGO_BIN_EXE_clawgate");
const TURN_WAIT: Duration = Duration::from_secs(30);

/// 2026-03-01T10:00:00Z and a day later.
const DAY1: i64 = 1_772_359_200_000;
const DAY2: i64 = DAY1 + 86_400_000;

/// $ of one `main` turn: (1 000 × 2 + 200 × 10) / 1e6.
const MAIN_TURN_USD: f64 = 0.004;

struct Setup {
    _alpha: FakeOpenAi,
    _beta: FakeOpenAi,
    gateway: TestGateway,
}

async fn setup() -> Setup {
    let alpha = FakeOpenAi::start(Script::always(Turn::text(["from ", "alpha"]).usage(1_000, 200)))
        .await
        .expect("starting fake alpha");
    let beta = FakeOpenAi::start(Script::always(Turn::text(["from beta"]).usage(3_000, 50)))
        .await
        .expect("starting fake beta");
    let config = json!({
        "models": {"providers": {
            "alpha": {"baseUrl": alpha.base_url(), "apiKey": "k", "api": "openai-completions",
                      "models": [{"id": "m1", "cost": {"input": 2, "output": 10, "cacheRead": 0.5, "cacheWrite": 2.5}}]},
            "beta": {"baseUrl": beta.base_url(), "apiKey": "k", "api": "openai-completions",
                     "models": [{"id": "m2"}]},
        }},
        "agents": {
            "defaults": {"model": {"primary": "alpha/m1"}},
            "list": [{"id": "main"}, {"id": "ops", "model": {"primary": "beta/m2"}}],
        },
    });
    let gateway = TestGateway::builder(BIN)
        .config(config.to_string())
        .start()
        .await
        .unwrap_or_else(|e| panic!("starting clawgate: {e:#}"));
    Setup { _alpha: alpha, _beta: beta, gateway }
}

async fn connect(gw: &TestGateway) -> RawClient {
    let mut client = RawClient::connect(&gw.ws_url()).await.unwrap_or_else(|e| panic!("opening a websocket: {e:#}"));
    client.handshake(gw.token(), &json!({})).await.unwrap_or_else(|e| panic!("handshake: {e:#}"));
    client
}

async fn request(client: &mut RawClient, method: &str, params: Value) -> Value {
    client.request(method, Some(params)).await.unwrap_or_else(|e| panic!("{method}: {e:#}"))
}

fn ok_payload(res: &Value) -> &Value {
    assert_eq!(res["ok"], true, "expected an ok response: {res}");
    &res["payload"]
}

/// One `agent` turn, waited for to its final answer.
async fn turn(client: &mut RawClient, session: &str, key: &str) {
    let id = client.next_id();
    let params = json!({"message": "hi", "sessionKey": session, "idempotencyKey": key});
    client.send_json(&json!({"type": "req", "id": id, "method": "agent", "params": params})).await.expect("send");
    let accepted = client.recv_response(&id, TURN_WAIT).await.expect("accepted");
    assert_eq!(ok_payload(&accepted)["status"], "accepted", "{accepted}");
    let done = client.recv_response(&id, TURN_WAIT).await.expect("final");
    assert_eq!(ok_payload(&done)["status"], "ok", "{done}");
}

/// The five turns: `main` three (two sessions), `ops` two.
async fn run_turns(client: &mut RawClient) {
    turn(client, "agent:main:a", "t1").await;
    turn(client, "agent:main:a", "t2").await;
    turn(client, "agent:main:b", "t3").await;
    turn(client, "agent:ops:c", "t4").await;
    turn(client, "agent:ops:c", "t5").await;
}

/// The usage the transcript kept on each assistant message of a session.
async fn transcript_usage(client: &mut RawClient, session: &str) -> Vec<(String, u64, u64)> {
    let res = request(client, "chat.history", json!({"sessionKey": session, "limit": 100})).await;
    ok_payload(&res)["messages"]
        .as_array()
        .expect("messages")
        .iter()
        .filter(|m| m["role"] == "assistant")
        .map(|m| {
            let model = format!("{}/{}", m["provider"].as_str().unwrap_or("?"), m["model"].as_str().unwrap_or("?"));
            (model, m["usage"]["input"].as_u64().unwrap_or(0), m["usage"]["output"].as_u64().unwrap_or(0))
        })
        .collect()
}

/// The stored turns as `(id, agent, provider/model, input, output)`, oldest first.
async fn stored_turns(pool: &sqlx::SqlitePool) -> Vec<(i64, String, String, i64, i64)> {
    sqlx::query_as("SELECT id, agent_id, provider || '/' || model, input, output FROM turn_usage ORDER BY id")
        .fetch_all(pool)
        .await
        .expect("reading turn_usage")
}

async fn state_db(gw: &TestGateway) -> sqlx::SqlitePool {
    let options = sqlx::sqlite::SqliteConnectOptions::new()
        .filename(gw.state_dir().join("clawgate.db"))
        .busy_timeout(Duration::from_secs(10));
    sqlx::SqlitePool::connect_with(options).await.expect("opening the state database")
}

fn close(a: f64, b: f64) -> bool {
    (a - b).abs() < 1e-12
}

fn assert_cost(v: &Value, want: f64) {
    let got = v.as_f64().unwrap_or_else(|| panic!("expected a number, found {v}"));
    assert!(close(got, want), "cost {got} != {want}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn usage_cost_sums_stored_turns_by_day_agent_and_model_and_prices_them_from_config() {
    let s = setup().await;
    let mut client = connect(&s.gateway).await;
    run_turns(&mut client).await;

    // Each turn's usage is in its transcript message and in one stored usage row.
    let mut in_transcripts = Vec::new();
    for session in ["agent:main:a", "agent:main:b", "agent:ops:c"] {
        in_transcripts.extend(transcript_usage(&mut client, session).await);
    }
    let pool = state_db(&s.gateway).await;
    let stored = stored_turns(&pool).await;
    let stored_view: Vec<_> = stored.iter().map(|(_, _, m, i, o)| (m.clone(), *i as u64, *o as u64)).collect();
    assert_eq!(stored_view, in_transcripts);
    assert_eq!(
        stored.iter().map(|(_, a, m, i, o)| (a.as_str(), m.as_str(), *i, *o)).collect::<Vec<_>>(),
        [
            ("main", "alpha/m1", 1_000, 200),
            ("main", "alpha/m1", 1_000, 200),
            ("main", "alpha/m1", 1_000, 200),
            ("ops", "beta/m2", 3_000, 50),
            ("ops", "beta/m2", 3_000, 50),
        ]
    );

    // While the turns are recent, usage.status reports them per provider.
    let status = request(&mut client, "usage.status", json!({})).await;
    let providers = ok_payload(&status)["providers"].as_array().expect("providers").clone();
    let summary = |id: &str| {
        providers.iter().find(|p| p["provider"] == id).and_then(|p| p["summary"].as_str()).unwrap_or("").to_owned()
    };
    assert_eq!(summary("alpha"), "last 30 days: 3600 tokens in 3 turns, $0.0120 at configured prices", "{status}");
    assert_eq!(summary("beta"), "last 30 days: 6100 tokens in 2 turns, no price configured", "{status}");
    assert!(providers.iter().all(|p| p["windows"] == json!([])), "{status}");

    // Two days: turns 1, 2 (main) and 4 (ops) on 1 March, turns 3 (main) and 5 (ops) on 2 March.
    let days = [DAY1, DAY1 + 1, DAY2, DAY1 + 2, DAY2 + 1];
    for ((id, ..), ts) in stored.iter().zip(days) {
        sqlx::query("UPDATE turn_usage SET ts = ? WHERE id = ?").bind(ts).bind(id).execute(&pool).await.expect("ts");
    }

    let range = json!({"startDate": "2026-03-01", "endDate": "2026-03-02"});
    let all = |extra: Value| {
        let mut p = range.clone();
        p.as_object_mut().expect("object").extend(extra.as_object().expect("object").clone());
        p
    };

    let res = request(&mut client, "usage.cost", all(json!({"agentScope": "all"}))).await;
    let cost = ok_payload(&res);
    assert_eq!(cost["days"], 2, "{res}");
    assert_eq!(cost["cacheStatus"]["status"], "fresh", "{res}");
    let daily = cost["daily"].as_array().expect("daily");
    assert_eq!(
        daily.iter().map(|d| d["date"].as_str().unwrap_or("")).collect::<Vec<_>>(),
        ["2026-03-01", "2026-03-02"]
    );
    // Day 1: two main turns and one ops turn.
    let d1 = &daily[0];
    assert_eq!((d1["input"].as_u64(), d1["output"].as_u64()), (Some(5_000), Some(450)), "{d1}");
    assert_eq!(d1["totalTokens"], 5_450, "{d1}");
    assert_eq!(d1["turns"], 3, "{d1}");
    assert_cost(&d1["totalCost"], 2.0 * MAIN_TURN_USD);
    assert_cost(&d1["inputCost"], 2.0 * 0.002);
    assert_cost(&d1["outputCost"], 2.0 * 0.002);
    assert_eq!(d1["missingCostEntries"], 1, "{d1}");
    assert_eq!(d1["missingCostByModel"], json!({"beta/m2": 1}), "{d1}");
    // Day 2: one of each.
    let d2 = &daily[1];
    assert_eq!((d2["input"].as_u64(), d2["output"].as_u64()), (Some(4_000), Some(250)), "{d2}");
    assert_cost(&d2["totalCost"], MAIN_TURN_USD);
    assert_eq!(d2["missingCostEntries"], 1, "{d2}");
    // Totals: the sum of the stored turns.
    let totals = &cost["totals"];
    let stored_input: i64 = stored.iter().map(|t| t.3).sum();
    let stored_output: i64 = stored.iter().map(|t| t.4).sum();
    assert_eq!((totals["input"].as_i64(), totals["output"].as_i64()), (Some(stored_input), Some(stored_output)));
    assert_eq!(totals["turns"], 5, "{totals}");
    assert_cost(&totals["totalCost"], 3.0 * MAIN_TURN_USD);
    assert_eq!(totals["missingCostEntries"], 2, "{totals}");
    assert_eq!(totals["missingCostByModel"], json!({"beta/m2": 2}), "{totals}");

    // Without agentId or agentScope: the default agent only, as upstream.
    let res = request(&mut client, "usage.cost", range.clone()).await;
    let main_only = &ok_payload(&res)["totals"];
    assert_eq!((main_only["turns"].as_u64(), main_only["missingCostEntries"].as_u64()), (Some(3), Some(0)));
    assert_cost(&main_only["totalCost"], 3.0 * MAIN_TURN_USD);

    // By agent and by model: the unpriced model's cost is null, never a made-up 0.
    let res = request(&mut client, "usage.cost", all(json!({"agentScope": "all", "groupBy": "agent"}))).await;
    let groups = ok_payload(&res)["groups"].as_array().expect("groups").clone();
    assert_eq!(groups.iter().map(|g| g["key"].as_str().unwrap_or("")).collect::<Vec<_>>(), ["main", "ops"], "{res}");
    assert_cost(&groups[0]["cost"], 3.0 * MAIN_TURN_USD);
    assert_eq!(groups[1]["cost"], Value::Null, "{res}");
    assert_eq!((groups[1]["input"].as_u64(), groups[1]["turns"].as_u64()), (Some(6_000), Some(2)), "{res}");
    let res = request(&mut client, "usage.cost", all(json!({"agentId": "ops", "groupBy": "model"}))).await;
    let ops = ok_payload(&res);
    assert_eq!(ops["groups"][0]["key"], "beta/m2", "{res}");
    assert_eq!(ops["groups"][0]["cost"], Value::Null, "{res}");
    assert_eq!(ops["totals"]["missingCostEntries"], 2, "{res}");
    let res = request(&mut client, "usage.cost", all(json!({"agentScope": "all", "groupBy": "session"}))).await;
    let sessions: Vec<(String, u64)> = ok_payload(&res)["groups"]
        .as_array()
        .expect("groups")
        .iter()
        .map(|g| (g["key"].as_str().unwrap_or("").to_owned(), g["turns"].as_u64().unwrap_or(0)))
        .collect();
    assert_eq!(sessions, [("agent:main:a".into(), 2), ("agent:main:b".into(), 1), ("agent:ops:c".into(), 2)]);

    // Days cut at UTC-11: every turn (10:00Z) falls on the day before.
    let res = request(
        &mut client,
        "usage.cost",
        json!({"startDate": "2026-02-28", "endDate": "2026-03-01", "agentScope": "all",
               "mode": "specific", "utcOffset": "UTC-11"}),
    )
    .await;
    let shifted = ok_payload(&res)["daily"].as_array().expect("daily").clone();
    assert_eq!((shifted[0]["turns"].as_u64(), shifted[1]["turns"].as_u64()), (Some(3), Some(2)), "{res}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bad_usage_params_are_invalid_requests_that_say_what_is_wrong() {
    let s = setup().await;
    let mut client = connect(&s.gateway).await;
    let cases = [
        (
            json!({"startDate": "2026-02-30", "endDate": "2026-03-01"}),
            "invalid startDate: expected a valid YYYY-MM-DD calendar date",
        ),
        (json!({"startDate": "2026-03-01"}), "startDate and endDate must be provided together"),
        (json!({"days": 100000}), "range too large: 100000 days; at most 3660 days per request"),
        (
            json!({"startDate": "2000-01-01", "endDate": "2026-03-01"}),
            "range too large: 9557 days; at most 3660 days per request",
        ),
        (json!({"agentScope": "all", "agentId": "ops"}), "agentScope=all cannot be combined with agentId"),
        (json!({"groupBy": "color"}), "invalid groupBy \"color\": expected agent, model, provider or session"),
    ];
    for (params, message) in cases {
        let res = request(&mut client, "usage.cost", params.clone()).await;
        assert_eq!(res["ok"], false, "{params} → {res}");
        assert_eq!(res["error"]["code"], "INVALID_REQUEST", "{params} → {res}");
        assert_eq!(res["error"]["message"], message, "{params} → {res}");
    }
}

/// The real `openclaw gateway usage-cost` (which calls `usage.cost {days, agentScope}`) shows the
/// totals and names the model without a price.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_real_openclaw_cli_shows_the_usage_cost_summary() {
    let peers = OpenClawPeers::get().await.unwrap_or_else(|e| panic!("the real OpenClaw clients are required: {e:#}"));
    let s = setup().await;
    let mut client = connect(&s.gateway).await;
    run_turns(&mut client).await;

    let url = s.gateway.ws_url();
    let token = s.gateway.expect_token().to_owned();
    let base =
        ["gateway", "usage-cost", "--url", url.as_str(), "--token", token.as_str(), "--days", "2", "--all-agents"];
    let out = peers.cli(base.iter().copied().chain(["--json"])).run().await.expect("running openclaw");
    assert_eq!(out.code, Some(0), "{}", out.describe());
    let summary = out.json().expect("JSON summary");
    assert_eq!(summary["totals"]["input"], 9_000, "{summary}");
    assert_eq!(summary["totals"]["output"], 700, "{summary}");
    assert_cost(&summary["totals"]["totalCost"], 3.0 * MAIN_TURN_USD);
    assert_eq!(summary["totals"]["missingCostByModel"], json!({"beta/m2": 2}), "{summary}");

    let out = peers.cli(base).run().await.expect("running openclaw");
    assert_eq!(out.code, Some(0), "{}", out.describe());
    let text = out.combined();
    assert!(text.contains("Usage cost (2 days)"), "{}", out.describe());
    assert!(text.contains("$0.01"), "{}", out.describe());
    assert!(text.contains("Missing cost: 2 (beta/m2 2)"), "{}", out.describe());
}

/// `clawgate usage` over the real binary: the table by day and by model, and `--json`.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn clawgate_usage_prints_tables_by_day_and_model_and_json() {
    let s = setup().await;
    let mut client = connect(&s.gateway).await;
    run_turns(&mut client).await;

    // Today's turns, in a two-day range so that a run across midnight still sees them all.
    let by_day = clawgate_usage(&s.gateway, &["--days", "2"]).await;
    let lines: Vec<&str> = by_day.lines().collect();
    assert!(lines[0].ends_with("(2 days, all agents)"), "{by_day}");
    assert!(lines[1].starts_with("DAY ") && lines[1].ends_with("COST"), "{by_day}");
    let total = lines.iter().find(|l| l.starts_with("TOTAL")).unwrap_or_else(|| panic!("no total: {by_day}"));
    let cells: Vec<&str> = total.split_whitespace().collect();
    assert_eq!(cells[..7], ["TOTAL", "5", "9000", "700", "0", "0", "9700"], "{by_day}");
    assert!(total.ends_with("$0.0120 + 2 unpriced"), "{by_day}");
    assert!(by_day.contains("No price for: beta/m2 (2 turns)"), "{by_day}");

    let by_model = clawgate_usage(&s.gateway, &["--days", "2", "--by", "model"]).await;
    let row = |key: &str| {
        by_model.lines().find(|l| l.starts_with(key)).unwrap_or_else(|| panic!("no {key} row: {by_model}")).to_owned()
    };
    assert!(row("MODEL").starts_with("MODEL "), "{by_model}");
    assert!(row("alpha/m1").ends_with("$0.0120"), "{by_model}");
    assert!(row("alpha/m1").split_whitespace().nth(1) == Some("3"), "{by_model}");
    assert!(row("beta/m2").ends_with("n/a"), "{by_model}");

    let only_ops = clawgate_usage(&s.gateway, &["--days", "2", "--agent", "ops", "--json"]).await;
    let payload: Value = serde_json::from_str(only_ops.trim()).unwrap_or_else(|e| panic!("{e}: {only_ops}"));
    assert_eq!(payload["totals"]["turns"], 2, "{payload}");
    assert_eq!(payload["totals"]["input"], 6_000, "{payload}");

    // A bad range is the gateway's error, exit 1.
    let out = clawgate(&s.gateway, &["usage", "--from", "2026-02-30", "--to", "2026-03-01"]).await;
    assert_eq!(out.status.code(), Some(1), "{}", describe(&out));
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(stderr.contains("invalid startDate: expected a valid YYYY-MM-DD calendar date"), "{stderr}");
}

/// Runs `clawgate usage ARGS` against the gateway; its stdout, after checking it exited 0.
async fn clawgate_usage(gw: &TestGateway, args: &[&str]) -> String {
    let mut all = vec!["usage"];
    all.extend_from_slice(args);
    let out = clawgate(gw, &all).await;
    assert_eq!(out.status.code(), Some(0), "{}", describe(&out));
    String::from_utf8_lossy(&out.stdout).into_owned()
}

async fn clawgate(gw: &TestGateway, args: &[&str]) -> std::process::Output {
    let mut cmd = tokio::process::Command::new(BIN);
    cmd.args(args)
        .args(["--url", &gw.ws_url(), "--token", gw.expect_token()])
        .arg("--state-dir")
        .arg(gw.state_dir())
        .env_remove("CLAWGATE_URL")
        .stdin(std::process::Stdio::null())
        .kill_on_drop(true);
    tokio::time::timeout(TURN_WAIT, cmd.output())
        .await
        .unwrap_or_else(|_| panic!("clawgate {args:?} did not finish within {TURN_WAIT:?}"))
        .unwrap_or_else(|e| panic!("running clawgate {args:?}: {e}"))
}

fn describe(out: &std::process::Output) -> String {
    format!(
        "exit {:?}\n--- stdout ---\n{}\n--- stderr ---\n{}",
        out.status.code(),
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    )
}
