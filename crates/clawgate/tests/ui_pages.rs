//! The methods the Control UI's usage, skills, systems and config pages call (issue 13 item 2),
//! over a real socket against the real binary: `sessions.usage` sums the turns the fake models
//! reported, per session and in aggregate, equal to `usage.cost`; the skills methods and
//! `themes.list` answer the honest empty state; `environments.list` lists the gateway host (and
//! asks `operator.write` to place a runtime). Answers with an upstream definition are checked
//! against the vendored schema.
//!
//! Setup: agent `main` uses `alpha/m1` ($2 input, $10 output per million tokens; every turn 1 000
//! input and 200 output tokens), agent `ops` uses `beta/m2` (no price; 3 000 and 50).

use std::time::Duration;

use clawgate_testkit::fake_openai::{FakeOpenAi, Script, Turn};
use clawgate_testkit::schema::SchemaValidator;
use clawgate_testkit::{RawClient, TestGateway};
use serde_json::{Value, json};

const BIN: &str = env!("CARGO_BIN_EXE_clawgate");
const TURN_WAIT: Duration = Duration::from_secs(30);
/// $ of one `main` turn: (1 000 × 2 + 200 × 10) / 1e6.
const MAIN_TURN_USD: f64 = 0.004;

struct Setup {
    _alpha: FakeOpenAi,
    _beta: FakeOpenAi,
    gateway: TestGateway,
}

async fn setup() -> Setup {
    let alpha = FakeOpenAi::start(Script::always(Turn::text(["from alpha"]).usage(1_000, 200)))
        .await
        .expect("starting fake alpha");
    let beta = FakeOpenAi::start(Script::always(Turn::text(["from beta"]).usage(3_000, 50)))
        .await
        .expect("starting fake beta");
    let config = json!({
        "models": {"providers": {
            "alpha": {"baseUrl": alpha.base_url(), "apiKey": "k", "api": "openai-completions",
                      "models": [{"id": "m1", "cost": {"input": 2, "output": 10}}]},
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

async fn connect(gw: &TestGateway, overrides: Value) -> RawClient {
    let mut client = RawClient::connect(&gw.ws_url()).await.unwrap_or_else(|e| panic!("opening a websocket: {e:#}"));
    client.handshake(gw.token(), &overrides).await.unwrap_or_else(|e| panic!("handshake: {e:#}"));
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

fn close(a: &Value, want: f64) -> bool {
    a.as_f64().is_some_and(|got| (got - want).abs() < 1e-12)
}

fn session<'a>(payload: &'a Value, key: &str) -> &'a Value {
    payload["sessions"]
        .as_array()
        .and_then(|s| s.iter().find(|s| s["key"] == key))
        .unwrap_or_else(|| panic!("no {key} in {payload:#}"))
}

/// The params the usage page sends (`usage-CjeftFQT.js`): today's range in the browser's zone,
/// every agent, `groupBy` from its scope switch, at most 1 000 sessions.
fn page_params(group_by: &str) -> Value {
    json!({"startDate": "2000-01-01", "endDate": "2000-01-01", "agentScope": "all", "mode": "specific",
           "timeZone": "UTC", "utcOffset": "UTC+0", "groupBy": group_by, "limit": 1000,
           "includeContextWeight": false})
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sessions_usage_sums_each_sessions_turns_and_agrees_with_usage_cost() {
    let s = setup().await;
    let mut client = connect(&s.gateway, json!({})).await;
    turn(&mut client, "agent:main:a", "t1").await;
    turn(&mut client, "agent:main:a", "t2").await;
    turn(&mut client, "agent:ops:c", "t3").await;
    // A reset starts a new transcript under the same key: `instance` counts the new one only,
    // `family` both.
    let res = request(&mut client, "sessions.reset", json!({"key": "agent:main:a"})).await;
    ok_payload(&res);
    turn(&mut client, "agent:main:a", "t4").await;

    // The last 7 days (in UTC) hold every turn; the answer names the days.
    let mut params = page_params("family");
    params
        .as_object_mut()
        .expect("object")
        .retain(|k, _| !["startDate", "endDate", "mode", "timeZone"].contains(&k.as_str()));
    params["range"] = json!("7d");
    let res = request(&mut client, "sessions.usage", params.clone()).await;
    let family = ok_payload(&res);
    let (start, end) = (family["startDate"].clone(), family["endDate"].clone());
    assert_eq!(family["sessions"].as_array().map(Vec::len), Some(2), "{family:#}");
    let a = session(family, "agent:main:a");
    assert_eq!(a["scope"], "family", "{a:#}");
    assert_eq!(a["historicalInstanceCount"], 2, "{a:#}");
    assert_eq!(a["agentId"], "main");
    let usage = &a["usage"];
    assert_eq!((usage["input"].as_u64(), usage["output"].as_u64()), (Some(3_000), Some(600)), "{a:#}");
    assert!(close(&usage["totalCost"], 3.0 * MAIN_TURN_USD), "{a:#}");
    assert_eq!(usage["messageCounts"]["assistant"], 3, "{a:#}");
    let day = usage["activityDates"][0].clone();
    assert_eq!(usage["activityDates"].as_array().map(Vec::len), Some(1), "{a:#}");
    assert!(day.as_str() >= start.as_str() && day.as_str() <= end.as_str(), "{a:#}");
    assert_eq!(usage["modelUsage"][0]["model"], "m1", "{a:#}");
    let quarters: u64 = usage["utcQuarterHourTokenUsage"]
        .as_array()
        .expect("quarters")
        .iter()
        .filter_map(|q| q["totalTokens"].as_u64())
        .sum();
    assert_eq!(quarters, 3_600, "{a:#}");
    let c = session(family, "agent:ops:c");
    assert_eq!((c["agentId"].as_str(), c["usage"]["missingCostEntries"].as_u64()), (Some("ops"), Some(1)), "{c:#}");

    // The totals and aggregates cover every session; they equal `usage.cost` over the same days.
    let totals = &family["totals"];
    assert_eq!((totals["input"].as_u64(), totals["output"].as_u64()), (Some(6_000), Some(650)), "{totals}");
    let agg = &family["aggregates"];
    assert_eq!(agg["sessionCount"], 2, "{agg:#}");
    assert_eq!(agg["messages"]["total"], 4, "{agg:#}");
    let agents: Vec<&str> =
        agg["byAgent"].as_array().expect("byAgent").iter().filter_map(|a| a["agentId"].as_str()).collect();
    assert_eq!(agents, ["main", "ops"], "{agg:#}");
    assert_eq!(agg["byProvider"].as_array().map(Vec::len), Some(2), "{agg:#}");
    assert_eq!(agg["daily"][0]["date"], day, "{agg:#}");
    assert_eq!(family["creatorOptions"], json!([{"key": "[\"unknown\"]"}]));
    assert_eq!(family["cacheStatus"]["status"], "fresh");
    let cost =
        request(&mut client, "usage.cost", json!({"startDate": start, "endDate": end, "agentScope": "all"})).await;
    let cost_totals = &ok_payload(&cost)["totals"];
    for field in ["input", "output", "totalTokens", "missingCostEntries"] {
        assert_eq!(totals[field], cost_totals[field], "{field}: {totals} vs {cost_totals}");
    }
    assert!(close(&totals["totalCost"], cost_totals["totalCost"].as_f64().unwrap_or(-1.0)), "{totals}");

    // `instance` (the default): the reset session counts its current transcript only.
    params["groupBy"] = json!("instance");
    let res = request(&mut client, "sessions.usage", params.clone()).await;
    let instance = ok_payload(&res);
    let a = session(instance, "agent:main:a");
    assert_eq!((a["scope"].as_str(), a["usage"]["input"].as_u64()), (Some("instance"), Some(1_000)), "{a:#}");
    assert_eq!(instance["totals"]["input"], 4_000, "{instance:#}");

    // What the page sends for one selected session; and the default agent alone.
    let one = json!({"key": "agent:ops:c", "range": "7d", "limit": 1});
    let res = request(&mut client, "sessions.usage", one).await;
    let sessions = ok_payload(&res)["sessions"].as_array().expect("sessions").clone();
    assert_eq!(sessions.len(), 1);
    assert_eq!(sessions[0]["usage"]["input"], 3_000);
    let res = request(&mut client, "sessions.usage", json!({"range": "7d"})).await;
    let keys: Vec<&str> =
        ok_payload(&res)["sessions"].as_array().expect("sessions").iter().filter_map(|s| s["key"].as_str()).collect();
    assert_eq!(keys, ["agent:main:a"], "{res}");
    // A creator clawgate does not know has no sessions.
    let mut other = params.clone();
    other["creatorKey"] = json!("[\"profile\",\"someone\"]");
    let res = request(&mut client, "sessions.usage", other).await;
    assert_eq!(ok_payload(&res)["sessions"], json!([]));
    assert_eq!(ok_payload(&res)["aggregates"]["sessionCount"], 0);

    // A range without turns: empty, not an error.
    let res = request(&mut client, "sessions.usage", page_params("instance")).await;
    let empty = ok_payload(&res);
    assert_eq!((empty["sessions"].clone(), empty["totals"]["totalTokens"].clone()), (json!([]), json!(0)), "{empty}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bad_sessions_usage_params_say_what_is_wrong() {
    let s = setup().await;
    let mut client = connect(&s.gateway, json!({})).await;
    let cases = [
        (json!({"key": ""}), "invalid sessions.usage params: key must not be empty"),
        (
            json!({"agentScope": "all", "key": "agent:main:main"}),
            "agentScope=all cannot be combined with key or agentId",
        ),
        (json!({"groupBy": "agent"}), "invalid sessions.usage params: groupBy must be one of instance, family"),
        (json!({"limit": 0}), "invalid sessions.usage params: limit must be at least 1"),
        (json!({"startDate": "2026-03-01"}), "startDate and endDate must be provided together"),
        (json!({"agentId": "nobody"}), "unknown agent id \"nobody\""),
    ];
    for (params, message) in cases {
        let res = request(&mut client, "sessions.usage", params.clone()).await;
        assert_eq!(res["ok"], false, "{params} → {res}");
        assert_eq!(res["error"]["code"], "INVALID_REQUEST", "{params} → {res}");
        assert_eq!(res["error"]["message"], message, "{params} → {res}");
    }
    // Closed params, as upstream's schema.
    let res = request(&mut client, "sessions.usage", json!({"days": 7})).await;
    assert_eq!(res["error"]["code"], "INVALID_REQUEST", "{res}");
    assert!(res["error"]["message"].as_str().is_some_and(|m| m.starts_with("invalid sessions.usage params")), "{res}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn skills_themes_and_environments_answer_what_clawgate_has() {
    let s = setup().await;
    let mut client = RawClient::connect(&s.gateway.ws_url()).await.expect("opening a websocket");
    let hello = client.handshake(s.gateway.token(), &json!({})).await.expect("handshake");
    // Advertised because implemented; `sessions.usage` is not, as upstream does not advertise it.
    let methods: Vec<&str> =
        hello["features"]["methods"].as_array().expect("methods").iter().filter_map(Value::as_str).collect();
    for method in ["skills.status", "skills.search", "skills.library.list", "environments.list", "themes.list"] {
        assert!(methods.contains(&method), "{method} not advertised");
    }
    assert!(!methods.contains(&"sessions.usage"));
    let schema = SchemaValidator::global();

    let res = request(&mut client, "skills.status", json!({"agentId": "ops"})).await;
    assert_eq!(ok_payload(&res), &json!({"agentId": "ops", "skills": []}));
    let res = request(&mut client, "skills.status", json!({})).await;
    assert_eq!(ok_payload(&res)["agentId"], "main");
    let res = request(&mut client, "skills.search", json!({"limit": 20})).await;
    let search = ok_payload(&res);
    assert_eq!(search, &json!({"results": []}));
    schema.validate_shape("SkillsSearchResult", search, "skills.search").unwrap_or_else(|v| panic!("{v}"));
    let res = request(&mut client, "skills.library.list", json!({"scope": "all", "sessionKey": "main"})).await;
    let library = ok_payload(&res);
    assert_eq!(library["entries"], json!([]));
    assert_eq!(
        (library["defaultTarget"].as_str(), library["canManageWorkspace"].as_bool()),
        (Some("unavailable"), Some(false))
    );
    assert_eq!(library["session"]["sessionKey"], "agent:main:main", "{library}");

    let res = request(&mut client, "themes.list", json!({})).await;
    let themes = ok_payload(&res);
    assert_eq!(themes["themes"], json!([]), "{themes}");
    assert_eq!((themes["current"]["id"].as_str(), themes["theme"]["id"].as_str()), (Some("claw"), Some("claw")));

    let res = request(&mut client, "environments.list", json!({})).await;
    let envs = ok_payload(&res);
    schema.validate_shape("EnvironmentsListResult", envs, "environments.list").unwrap_or_else(|v| panic!("{v}"));
    let gateway = &envs["environments"][0];
    assert_eq!((gateway["id"].as_str(), gateway["status"].as_str()), (Some("gateway"), Some("available")), "{envs}");
    assert_eq!(gateway["sessionHost"], true);

    let bad = [
        ("skills.status", json!({"agentId": "nobody"}), "unknown agent id \"nobody\""),
        ("skills.search", json!({"limit": 101}), "invalid skills.search params: limit must be between 1 and 100"),
        ("skills.search", json!({"query": ""}), "invalid skills.search params: query must not be empty"),
        (
            "environments.list",
            json!({"runtimeId": "x".repeat(129)}),
            "invalid environments.list params: runtimeId must be 1 to 128 characters",
        ),
    ];
    for (method, params, message) in bad {
        let res = request(&mut client, method, params.clone()).await;
        assert_eq!(
            (res["error"]["code"].as_str(), res["error"]["message"].as_str()),
            (Some("INVALID_REQUEST"), Some(message)),
            "{method} {params} → {res}"
        );
    }
    for (method, params) in [("themes.list", json!({"x": 1})), ("skills.library.list", json!({"scope": "everyone"}))] {
        let res = request(&mut client, method, params.clone()).await;
        assert_eq!(res["error"]["code"], "INVALID_REQUEST", "{method} {params} → {res}");
    }

    // Listing needs read; placing a runtime needs write (the dynamic scope).
    let mut reader = connect(&s.gateway, json!({"scopes": ["operator.read"]})).await;
    let res = request(&mut reader, "environments.list", json!({})).await;
    ok_payload(&res);
    let res = request(&mut reader, "environments.list", json!({"runtimeId": "codex"})).await;
    assert_eq!(res["error"]["code"], "FORBIDDEN", "{res}");
    assert_eq!(res["error"]["message"], "missing scope: operator.write", "{res}");
}
