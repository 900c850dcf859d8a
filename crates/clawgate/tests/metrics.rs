//! `/metrics` on the real binary: refused without the gateway token, and with it a page every
//! line of which parses in the Prometheus text format (a strict line grammar below), whose
//! counters move by exactly what the test did: a `health` request, a `chat.send` answered by the
//! fake model, a Telegram message in and its reply out. An unknown method adds no label value.

use std::collections::BTreeMap;
use std::time::Duration;

use clawgate_testkit::fake_openai::{FakeOpenAi, Script, Turn};
use clawgate_testkit::fake_telegram::FakeTelegram;
use clawgate_testkit::{RawClient, TestGateway, wait_until};
use serde_json::{Value, json};

const BIN: &str = env!("CARGO_BIN_EXE_clawgate");
const WAIT: Duration = Duration::from_secs(30);
/// What the fake model reports for each echo turn (`Answer::text` of two parts).
const INPUT_TOKENS: f64 = 42.0;
const OUTPUT_TOKENS: f64 = 3.0;

// ---- a strict parser of the Prometheus text format 0.0.4 ----

/// One scrape: each sample by `name{label="value",…}` (labels sorted), and each family's type.
#[derive(Debug, Default)]
struct Page {
    samples: BTreeMap<String, f64>,
    types: BTreeMap<String, String>,
}

impl Page {
    /// The value of a sample, 0 when absent (a counter not yet incremented has no child).
    fn get(&self, key: &str) -> f64 {
        self.samples.get(key).copied().unwrap_or(0.0)
    }

    /// How much each listed sample moved since `before`.
    fn delta(&self, before: &Page, key: &str) -> f64 {
        self.get(key) - before.get(key)
    }

    /// The values one label takes across a family's samples.
    fn label_values(&self, family: &str, label: &str) -> Vec<String> {
        let needle = format!("{label}=\"");
        let mut out: Vec<String> = self
            .samples
            .keys()
            .filter(|k| k.split('{').next() == Some(family))
            .filter_map(|k| {
                let start = k.find(&needle)? + needle.len();
                Some(k[start..].split('"').next()?.to_owned())
            })
            .collect();
        out.dedup();
        out
    }
}

fn is_name(s: &str, colon: bool) -> bool {
    let mut chars = s.chars();
    let ok_first = |c: char| c.is_ascii_alphabetic() || c == '_' || (colon && c == ':');
    chars.next().is_some_and(ok_first) && chars.all(|c| ok_first(c) || c.is_ascii_digit())
}

fn parse_value(s: &str) -> Result<f64, String> {
    match s {
        "+Inf" => Ok(f64::INFINITY),
        "-Inf" => Ok(f64::NEG_INFINITY),
        "NaN" => Ok(f64::NAN),
        _ => s.parse::<f64>().map_err(|e| format!("bad value {s:?}: {e}")),
    }
}

/// `{a="x",b="y"}` → sorted pairs, with the format's escapes (`\\`, `\"`, `\n`) undone.
fn parse_labels(s: &str) -> Result<Vec<(String, String)>, String> {
    let mut out = Vec::new();
    let mut rest = s;
    while !rest.is_empty() {
        let (name, after) = rest.split_once("=\"").ok_or_else(|| format!("label without =\": {rest:?}"))?;
        if !is_name(name, false) {
            return Err(format!("bad label name {name:?}"));
        }
        let mut value = String::new();
        let mut chars = after.char_indices();
        let end = loop {
            match chars.next() {
                Some((_, '\\')) => match chars.next() {
                    Some((_, '\\')) => value.push('\\'),
                    Some((_, '"')) => value.push('"'),
                    Some((_, 'n')) => value.push('\n'),
                    other => return Err(format!("bad escape {other:?}")),
                },
                Some((i, '"')) => break i,
                Some((_, c)) => value.push(c),
                None => return Err(format!("unterminated label value in {s:?}")),
            }
        };
        out.push((name.to_owned(), value));
        rest = &after[end + 1..];
        rest = match rest.strip_prefix(',') {
            Some(r) => r,
            None if rest.is_empty() => rest,
            None => return Err(format!("expected , or }} after a label in {s:?}")),
        };
    }
    out.sort();
    Ok(out)
}

fn parse_page(page: &str) -> Result<Page, String> {
    let mut parsed = Page::default();
    for (n, line) in page.lines().enumerate() {
        let fail = |e: String| format!("line {}: {e}: {line:?}", n + 1);
        if line.is_empty() {
            continue;
        }
        if let Some(comment) = line.strip_prefix("# ") {
            let mut parts = comment.splitn(3, ' ');
            match (parts.next(), parts.next(), parts.next()) {
                (Some("HELP"), Some(name), Some(_)) if is_name(name, true) => {}
                (Some("TYPE"), Some(name), Some(kind)) if is_name(name, true) => {
                    if !["counter", "gauge", "histogram", "summary", "untyped"].contains(&kind) {
                        return Err(fail(format!("unknown type {kind}")));
                    }
                    if parsed.types.insert(name.to_owned(), kind.to_owned()).is_some() {
                        return Err(fail("family typed twice".into()));
                    }
                }
                _ => return Err(fail("comment is neither HELP nor TYPE".into())),
            }
            continue;
        }
        let (series, value) = line.rsplit_once(' ').ok_or_else(|| fail("no value".into()))?;
        let value = parse_value(value).map_err(fail)?;
        let (name, labels) = match series.split_once('{') {
            Some((name, rest)) => {
                let inner = rest.strip_suffix('}').ok_or_else(|| fail("labels not closed".into()))?;
                (name, parse_labels(inner).map_err(fail)?)
            }
            None => (series, Vec::new()),
        };
        if !is_name(name, true) {
            return Err(fail(format!("bad metric name {name:?}")));
        }
        let family = ["_bucket", "_sum", "_count"]
            .iter()
            .find_map(|s| {
                name.strip_suffix(s).filter(|f| parsed.types.get(*f).map(String::as_str) == Some("histogram"))
            })
            .unwrap_or(name);
        if !parsed.types.contains_key(family) {
            return Err(fail(format!("sample of {family} before its TYPE line")));
        }
        let labels: Vec<String> = labels.iter().map(|(k, v)| format!("{k}=\"{v}\"")).collect();
        let key = if labels.is_empty() { name.to_owned() } else { format!("{name}{{{}}}", labels.join(",")) };
        if parsed.samples.insert(key, value).is_some() {
            return Err(fail("duplicate sample".into()));
        }
    }
    Ok(parsed)
}

// ---- the gateway ----

async fn scrape_raw(gw: &TestGateway, token: Option<&str>) -> reqwest::Response {
    let mut req = reqwest::Client::new().get(format!("{}/metrics", gw.http_url()));
    if let Some(token) = token {
        req = req.bearer_auth(token);
    }
    req.send().await.expect("GET /metrics")
}

async fn scrape(gw: &TestGateway) -> Page {
    let res = scrape_raw(gw, gw.token()).await;
    assert_eq!(res.status(), 200);
    let content_type = res.headers()["content-type"].to_str().unwrap().to_owned();
    assert_eq!(content_type, "text/plain; version=0.0.4; charset=utf-8");
    let body = res.text().await.unwrap();
    parse_page(&body).unwrap_or_else(|e| panic!("{e}\n{body}"))
}

/// Scrape until `key` has moved by `want` since `before` (a counter is incremented just after
/// the fact the test saw, e.g. a platform's answer), then return that page.
async fn scrape_when(gw: &TestGateway, before: &Page, key: &str, want: f64) -> Page {
    wait_until(WAIT, format!("{key} to move by {want}"), || async {
        let page = scrape(gw).await;
        (page.delta(before, key) >= want).then_some(page)
    })
    .await
    .unwrap_or_else(|e| panic!("{e:#}"))
}

async fn connect(gw: &TestGateway) -> RawClient {
    let mut c = RawClient::connect(&gw.ws_url()).await.expect("ws");
    c.handshake(gw.token(), &json!({})).await.expect("handshake");
    c
}

async fn request(c: &mut RawClient, method: &str, params: Value) -> Value {
    c.request(method, Some(params)).await.unwrap_or_else(|e| panic!("{method}: {e:#}"))
}

fn config(model: &FakeOpenAi, tg: &FakeTelegram) -> String {
    json!({
        "models": {"providers": {"fake": {"baseUrl": model.base_url(), "apiKey": "k", "api": "openai-completions",
                                          "models": [{"id": "m"}]}}},
        "agents": {"defaults": {"model": {"primary": "fake/m"}}},
        "channels": {"telegram": {"botToken": tg.token(), "apiRoot": tg.api_root(), "pollTimeoutSeconds": 1,
                                  "dmPolicy": "open"}},
    })
    .to_string()
}

/// Every family present has its documented type; those with a child by now are present.
fn assert_types(page: &Page) {
    let always = [
        ("clawgate_ws_connections", "gauge"),
        ("clawgate_ws_connections_opened_total", "counter"),
        ("clawgate_requests_total", "counter"),
        ("clawgate_request_duration_seconds", "histogram"),
        ("clawgate_agent_runs_in_flight", "gauge"),
        ("clawgate_outbox_depth", "gauge"),
        ("clawgate_comfy_job_duration_seconds", "histogram"),
        ("clawgate_store_op_duration_seconds", "histogram"),
    ];
    // Families with labels appear once they have a child (no ComfyUI worker here, no failure).
    let when_used = [
        ("clawgate_agent_runs_total", "counter"),
        ("clawgate_llm_tokens_total", "counter"),
        ("clawgate_channel_messages_total", "counter"),
        ("clawgate_channel_send_failures_total", "counter"),
        ("clawgate_comfy_queue_depth", "gauge"),
    ];
    for (family, kind) in always {
        assert_eq!(page.types.get(family).map(String::as_str), Some(kind), "{family}: {:?}", page.types);
    }
    for (family, kind) in when_used {
        if let Some(found) = page.types.get(family) {
            assert_eq!(found, kind, "{family}");
        }
    }
    let known: Vec<&str> = always.iter().chain(&when_used).map(|(f, _)| *f).collect();
    for family in page.types.keys() {
        assert!(known.contains(&family.as_str()), "undocumented family {family}");
    }
}

#[tokio::test]
async fn metrics_need_the_token_and_count_what_happened() {
    let model = FakeOpenAi::start(Script::always(Turn::echo("echo: "))).await.expect("fake model");
    let tg = FakeTelegram::start().await.expect("fake telegram");
    let gw = TestGateway::builder(BIN).config(config(&model, &tg)).start().await.expect("starting clawgate");

    // Refused without the token, and with a wrong one.
    let res = scrape_raw(&gw, None).await;
    assert_eq!(res.status(), 401);
    assert_eq!(res.headers()["www-authenticate"], "Bearer");
    assert_eq!(scrape_raw(&gw, Some("not-the-token")).await.status(), 401);

    let before = scrape(&gw).await;

    // One connection, one health request, one unknown method.
    let mut c = connect(&gw).await;
    let res = request(&mut c, "health", json!({})).await;
    assert_eq!(res["ok"], true, "{res}");
    let res = request(&mut c, "no.such.method", json!({})).await;
    assert_eq!(res["ok"], false, "{res}");
    let res = request(&mut c, "another.unknown.method", json!({})).await;
    assert_eq!(res["ok"], false, "{res}");

    let after = scrape(&gw).await;
    assert_types(&after);
    let health = "clawgate_requests_total{method=\"health\",outcome=\"ok\"}";
    assert_eq!(after.delta(&before, health), 1.0);
    assert_eq!(after.delta(&before, "clawgate_request_duration_seconds_count{method=\"health\"}"), 1.0);
    assert_eq!(after.delta(&before, "clawgate_requests_total{method=\"other\",outcome=\"error\"}"), 2.0);
    assert_eq!(after.label_values("clawgate_requests_total", "method"), ["health", "other"]);
    assert_eq!(after.delta(&before, "clawgate_ws_connections_opened_total"), 1.0);
    assert_eq!(after.get("clawgate_ws_connections"), 1.0);
    // The histogram's buckets are cumulative and end in +Inf = count.
    let inf = after.get("clawgate_request_duration_seconds_bucket{le=\"+Inf\",method=\"health\"}");
    assert_eq!(inf, after.get("clawgate_request_duration_seconds_count{method=\"health\"}"));

    // A chat.send answered by the model: one request, one completed run, its tokens.
    let res =
        request(&mut c, "chat.send", json!({"sessionKey": "main", "message": "hi", "idempotencyKey": "m1"})).await;
    assert_eq!(res["ok"], true, "{res}");
    let run_id = res["payload"]["runId"].as_str().expect("runId").to_owned();
    let waited = request(&mut c, "agent.wait", json!({"runId": run_id, "timeoutMs": 30000})).await;
    assert_eq!(waited["payload"]["status"], "ok", "{waited}");
    let completed = "clawgate_agent_runs_total{outcome=\"completed\"}";
    let chat = scrape_when(&gw, &after, completed, 1.0).await;
    assert_eq!(chat.delta(&after, completed), 1.0);
    assert_eq!(chat.delta(&after, "clawgate_requests_total{method=\"chat.send\",outcome=\"ok\"}"), 1.0);
    assert_eq!(chat.delta(&after, "clawgate_llm_tokens_total{direction=\"input\"}"), INPUT_TOKENS);
    assert_eq!(chat.delta(&after, "clawgate_llm_tokens_total{direction=\"output\"}"), OUTPUT_TOKENS);
    assert_eq!(chat.get("clawgate_agent_runs_in_flight"), 0.0);
    assert!(chat.delta(&after, "clawgate_store_op_duration_seconds_count{op=\"transcript_append\"}") >= 2.0);

    // A Telegram message in, its reply out.
    tg.push_private_message(4242, "alice", "hello there");
    tg.wait_for_sent(|call| call.is("sendMessage") && call.status == 200, WAIT).await.expect("telegram reply");
    let out = "clawgate_channel_messages_total{channel=\"telegram\",direction=\"out\"}";
    let telegram = scrape_when(&gw, &chat, out, 1.0).await;
    assert_eq!(telegram.delta(&chat, out), 1.0);
    assert_eq!(telegram.delta(&chat, "clawgate_channel_messages_total{channel=\"telegram\",direction=\"in\"}"), 1.0);
    assert_eq!(telegram.delta(&chat, completed), 1.0);
    assert_eq!(telegram.delta(&chat, "clawgate_llm_tokens_total{direction=\"input\"}"), INPUT_TOKENS);
    assert_eq!(telegram.get("clawgate_outbox_depth{channel=\"telegram\"}"), 0.0);
    assert_eq!(telegram.label_values("clawgate_channel_send_failures_total", "channel"), Vec::<String>::new());
    assert_types(&telegram);
    // Nothing a client sent grew the method label set.
    assert_eq!(
        telegram.label_values("clawgate_requests_total", "method"),
        ["agent.wait", "chat.send", "health", "other"]
    );
}

#[test]
fn the_parser_refuses_what_prometheus_would() {
    let ok = "# HELP a_total A.\n# TYPE a_total counter\na_total{x=\"q\\\"\"} 3\n";
    assert_eq!(parse_page(ok).unwrap().get("a_total{x=\"q\"\"}"), 3.0);
    for bad in [
        "a_total 1\n",
        "# TYPE a counter\na{x=\"1\" 1\n",
        "# TYPE a counter\na{1x=\"1\"} 1\n",
        "# TYPE a counter\na one\n",
        "# TYPE a counter\na 1\na 2\n",
        "# TYPE a sometype\n",
        "# random comment\n",
    ] {
        assert!(parse_page(bad).is_err(), "{bad:?} parsed");
    }
}

#[tokio::test]
async fn the_loopback_listener_serves_metrics_without_the_token() {
    let config = json!({"gateway": {"metrics": {"listen": "127.0.0.1:0"}}}).to_string();
    let gw = TestGateway::builder(BIN).config(config).start().await.expect("starting clawgate");
    // The listener's address, from the log line the gateway writes once it is bound.
    let addr = wait_until(WAIT, "the metrics listener's log line", || async {
        gw.read_log().lines().find(|l| l.contains("metrics listening")).and_then(|l| {
            let line: Value = serde_json::from_str(l).ok()?;
            line["addr"].as_str().map(str::to_owned)
        })
    })
    .await
    .unwrap_or_else(|e| panic!("{e:#}"));
    let client = reqwest::Client::new();
    let res = client.get(format!("http://{addr}/metrics")).send().await.expect("GET /metrics");
    assert_eq!(res.status(), 200);
    let body = res.text().await.unwrap();
    let page = parse_page(&body).unwrap_or_else(|e| panic!("{e}\n{body}"));
    assert!(page.types.contains_key("clawgate_ws_connections"), "{body}");
    // Nothing else is served there; the gateway port still wants the token.
    assert_eq!(client.get(format!("http://{addr}/healthz")).send().await.unwrap().status(), 404);
    assert_eq!(scrape_raw(&gw, None).await.status(), 401);
}
