//! Nodes end to end against the real binary (contracts: `openclaw-live.md` §11, transcripts
//! `cli-node-run-*.jsonl`): a node connects, waits for an operator's approval
//! (`node.pair.*`), is listed with what it announced, and runs the commands an operator invokes
//! through the gateway; an invoke nobody answers times out, and one pending when the node goes
//! away fails at once.
//!
//! The first test plays the node with the testkit's device-signed node client (always runs). The second
//! drives the real `openclaw node run` host and the real `openclaw nodes …` CLI; it is skipped
//! with the reason when the OpenClaw peers are not installed (`scripts/install-openclaw.sh`),
//! unless `CLAWGATE_REQUIRE_PEERS=1`.

use std::time::Duration;

use clawgate_testkit::node_client::DEFAULT_COMMANDS as NODE_COMMANDS;
use clawgate_testkit::{NodeClient, NodeIdentity, OpenClawPeers, RawClient, TestGateway};
use serde_json::{Value, json};

const BIN: &str = env!("CARGO_BIN_EXE_clawgate");
/// Bound for each single wait.
const WAIT: Duration = Duration::from_secs(10);

async fn gateway() -> TestGateway {
    TestGateway::start(BIN).await.unwrap_or_else(|e| panic!("starting clawgate: {e:#}"))
}

/// A node the test plays (the testkit's node client), as `openclaw node run` connects.
async fn raw_node(gw: &TestGateway, identity: &NodeIdentity) -> NodeClient {
    NodeClient::connect(&gw.ws_url(), gw.expect_token(), identity).await.expect("node admitted")
}

async fn operator(gw: &TestGateway) -> RawClient {
    let mut c = RawClient::connect(&gw.ws_url()).await.expect("operator connects");
    c.handshake(
        Some(gw.expect_token()),
        &json!({"scopes": ["operator.admin", "operator.read", "operator.write", "operator.pairing"]}),
    )
    .await
    .expect("operator admitted");
    c
}

fn ok(res: &Value) -> &Value {
    assert_eq!(res["ok"], true, "expected ok: {res}");
    &res["payload"]
}

fn err_message(res: &Value) -> &str {
    assert_eq!(res["ok"], false, "expected an error: {res}");
    res["error"]["message"].as_str().unwrap_or_default()
}

/// Sends a request without waiting for its answer; returns its id.
async fn send(c: &mut RawClient, method: &str, params: Value) -> String {
    let id = c.next_id();
    c.send_json(&json!({"type": "req", "id": id, "method": method, "params": params})).await.expect("send");
    id
}

#[tokio::test]
async fn a_node_is_approved_listed_and_runs_what_an_operator_invokes() {
    let gw = gateway().await;
    let identity = NodeIdentity::generate();
    let node_id = identity.device_id().to_owned();
    let mut node = raw_node(&gw, &identity).await;
    let mut op = operator(&gw).await;

    // Waiting for approval: the node's publication is refused with the command to run, and
    // nothing may be invoked on it yet.
    let res = node
        .request("node.runnerInventory.update", Some(json!({"protocolFeatures": ["node-worker-supervisor-v6"]})))
        .await
        .expect("inventory answered");
    assert_eq!(res["error"]["code"], "UNAVAILABLE", "{res}");
    // Its events too, as upstream answers an unapproved node (capture `cli-node-run-fresh-device`).
    let stats = json!({"cpuCount": 2, "memoryTotalBytes": 1000, "memoryFreeBytes": 400});
    let event = json!({"event": "node.host.stats", "payloadJSON": stats.to_string()});
    let refused = node.request("node.event", Some(event.clone())).await.expect("event answered");
    assert_eq!(err_message(&refused), "node pairing changed while invocation was active");
    assert_eq!(refused["error"]["details"], json!({"code": "PAIRING_CHANGED"}));
    assert_eq!(refused["error"]["retryable"], true);
    let pending = op.request("node.pair.list", Some(json!({}))).await.expect("pair list");
    let pending = ok(&pending)["pending"].as_array().expect("pending").clone();
    assert_eq!(pending.len(), 1, "{pending:?}");
    assert_eq!(pending[0]["nodeId"], node_id.as_str());
    assert_eq!(pending[0]["commands"], json!(NODE_COMMANDS));
    let request_id = pending[0]["requestId"].as_str().expect("requestId").to_owned();
    assert!(err_message(&res).contains(&format!("openclaw nodes approve {request_id}")), "{res}");
    let params =
        json!({"nodeId": node_id, "command": "system.which", "params": {"bins": ["sh"]}, "idempotencyKey": "k0"});
    let res = op.request("node.invoke", Some(params.clone())).await.expect("invoke answered");
    assert!(err_message(&res).contains("awaiting operator approval"), "{res}");

    // Approval: the node hears it, and its publication is accepted.
    let res = op.request("node.pair.approve", Some(json!({"requestId": request_id}))).await.expect("approve");
    assert_eq!(ok(&res)["node"]["nodeId"], node_id.as_str());
    let resolved = node.recv_event("node.pair.resolved", WAIT).await.expect("node told");
    assert_eq!(resolved["payload"]["decision"], "approved");
    let res = node
        .request("node.runnerInventory.update", Some(json!({"protocolFeatures": ["node-worker-supervisor-v6"]})))
        .await
        .expect("inventory answered");
    ok(&res);

    // Its host stats are kept and relayed to operators as `node.hostStats`.
    let res = node.request("node.event", Some(event)).await.expect("event answered");
    assert_eq!(ok(&res)["handled"], true, "{res}");
    let relayed = op.recv_event("node.hostStats", WAIT).await.expect("operators told");
    assert_eq!(relayed["payload"]["nodeId"], node_id.as_str());
    assert_eq!(relayed["payload"]["hostStats"]["cpuCount"], 2);
    let res = node.request("node.event", Some(json!({"event": "made.up", "payload": {}}))).await.expect("answered");
    assert_eq!(ok(&res)["reason"], "unsupported_event");

    // Listed with what it announced.
    let res = op.request("node.list", Some(json!({}))).await.expect("list");
    let nodes = ok(&res)["nodes"].as_array().expect("nodes").clone();
    assert_eq!(nodes.len(), 1);
    assert_eq!(nodes[0]["nodeId"], node_id.as_str());
    assert_eq!(nodes[0]["connected"], true);
    assert_eq!(nodes[0]["paired"], true);
    assert_eq!(nodes[0]["displayName"], "raw-node");
    assert_eq!(nodes[0]["caps"], json!(["system"]));
    let res = op.request("node.describe", Some(json!({"nodeId": node_id}))).await.expect("describe");
    assert_eq!(ok(&res)["commands"], json!(NODE_COMMANDS));
    assert_eq!(ok(&res)["approvalState"], "approved");

    // An invoke goes to the node as `node.invoke.request` and comes back with its answer.
    let call = send(&mut op, "node.invoke", params).await;
    let req = node.recv_event("node.invoke.request", WAIT).await.expect("node asked");
    let req = &req["payload"];
    assert_eq!(req["command"], "system.which");
    assert_eq!(
        serde_json::from_str::<Value>(req["paramsJSON"].as_str().expect("paramsJSON")).unwrap(),
        json!({"bins": ["sh"]})
    );
    let answer =
        json!({"id": req["id"], "nodeId": node_id, "ok": true, "payloadJSON": "{\"bins\":{\"sh\":\"/bin/sh\"}}"});
    let res = node.request("node.invoke.result", Some(answer.clone())).await.expect("result taken");
    assert_eq!(ok(&res)["ok"], true);
    let res = op.recv_response(&call, WAIT).await.expect("invoke answered");
    assert_eq!(ok(&res)["payload"], json!({"bins": {"sh": "/bin/sh"}}));
    assert_eq!(ok(&res)["command"], "system.which");
    // The same answer again is late: acknowledged, ignored.
    let res = node.request("node.invoke.result", Some(answer)).await.expect("late result");
    assert_eq!(ok(&res)["ignored"], true);

    // A node's error is the caller's error.
    let call =
        send(&mut op, "node.invoke", json!({"nodeId": node_id, "command": "system.run", "idempotencyKey": "k1"})).await;
    let req = node.recv_event("node.invoke.request", WAIT).await.expect("node asked");
    let failure = json!({"id": req["payload"]["id"], "nodeId": node_id, "ok": false,
                         "error": {"code": "SYSTEM_RUN_DENIED", "message": "denied by policy"}});
    ok(&node.request("node.invoke.result", Some(failure)).await.expect("result taken"));
    let res = op.recv_response(&call, WAIT).await.expect("invoke answered");
    assert_eq!(res["error"]["code"], "UNAVAILABLE", "{res}");
    assert_eq!(err_message(&res), "SYSTEM_RUN_DENIED: denied by policy");
    assert_eq!(
        res["error"]["details"],
        json!({"nodeError": {"code": "SYSTEM_RUN_DENIED", "message": "denied by policy"}, "nodeCommandDispatched": true})
    );

    // Nobody answers: the invoke's own timeout ends it.
    let res = op
        .request(
            "node.invoke",
            Some(json!({"nodeId": node_id, "command": "system.which", "timeoutMs": 200, "idempotencyKey": "k2"})),
        )
        .await
        .expect("invoke answered");
    assert_eq!(err_message(&res), "TIMEOUT: node invoke timed out");
    assert_eq!(res["error"]["details"]["nodeError"]["code"], "TIMEOUT");
    node.recv_event("node.invoke.request", WAIT).await.expect("the timed-out request reached the node");

    // Wrong callers and names.
    let res = op
        .request("node.invoke.result", Some(json!({"id": "x", "nodeId": node_id, "ok": true})))
        .await
        .expect("answered");
    assert_eq!(err_message(&res), "unauthorized role: operator");
    let res = node.request("node.list", Some(json!({}))).await.expect("answered");
    assert_eq!(err_message(&res), "unauthorized role: node");
    let res = op
        .request(
            "node.invoke",
            Some(json!({"nodeId": "no-such-node", "command": "system.which", "idempotencyKey": "k3"})),
        )
        .await
        .expect("answered");
    assert_eq!(err_message(&res), "unknown nodeId: no-such-node");
    let res = op
        .request("node.invoke", Some(json!({"nodeId": node_id, "command": "camera.snap", "idempotencyKey": "k4"})))
        .await
        .expect("answered");
    assert!(err_message(&res).contains("did not declare \"camera.snap\""), "{res}");
    let res = op.request("node.describe", Some(json!({"nodeId": "no-such-node"}))).await.expect("answered");
    assert_eq!(err_message(&res), "unknown nodeId");

    // Renamed: the new name is what the list shows.
    let res = op.request("node.rename", Some(json!({"nodeId": node_id, "displayName": "desk"}))).await.expect("rename");
    assert_eq!(ok(&res)["displayName"], "desk");

    // The node goes away with an invoke pending (10 minutes' timeout): it fails at once.
    let call = send(
        &mut op,
        "node.invoke",
        json!({"nodeId": node_id, "command": "system.run", "timeoutMs": 600_000, "idempotencyKey": "k5"}),
    )
    .await;
    node.recv_event("node.invoke.request", WAIT).await.expect("node asked");
    drop(node);
    let res = op.recv_response(&call, WAIT).await.expect("invoke failed within the wait, not after its timeout");
    assert_eq!(err_message(&res), "DISCONNECTED: node disconnected (system.run)");
    assert_eq!(res["error"]["details"]["nodeError"]["code"], "DISCONNECTED", "{res}");
    let res = op.request("node.list", Some(json!({}))).await.expect("list");
    let nodes = ok(&res)["nodes"].as_array().expect("nodes").clone();
    assert_eq!(nodes[0]["connected"], false);
    assert_eq!(nodes[0]["displayName"], "desk");
    let res = op
        .request("node.invoke", Some(json!({"nodeId": node_id, "command": "system.which", "idempotencyKey": "k6"})))
        .await
        .expect("answered");
    assert_eq!(err_message(&res), "node not connected");
    assert_eq!(res["error"]["details"]["code"], "NOT_CONNECTED", "{res}");
    assert_eq!(res["error"]["details"]["nodeCommandDispatched"], false, "{res}");
}

/// Approves the one pending node request through `op`; returns the request id.
async fn approve_pending(op: &mut RawClient, node_id: &str) -> String {
    let res = op.request("node.pair.list", Some(json!({}))).await.expect("pair list");
    let pending = ok(&res)["pending"].as_array().expect("pending").clone();
    let request = pending.iter().find(|p| p["nodeId"] == node_id).unwrap_or_else(|| panic!("{pending:?}"));
    let request_id = request["requestId"].as_str().expect("requestId").to_owned();
    ok(&op.request("node.pair.approve", Some(json!({"requestId": request_id}))).await.expect("approve"));
    request_id
}

#[tokio::test]
async fn a_silent_node_is_marked_gone_after_its_presence_timeout_and_its_invoke_fails_then() {
    let gw = TestGateway::builder(BIN)
        .config("{gateway: {nodes: {presenceTimeoutMs: 1000}}}")
        .start()
        .await
        .unwrap_or_else(|e| panic!("starting clawgate: {e:#}"));
    let identity = NodeIdentity::generate();
    let node_id = identity.device_id().to_owned();
    let mut node = raw_node(&gw, &identity).await;
    let mut op = operator(&gw).await;
    approve_pending(&mut op, &node_id).await;
    node.recv_event("node.pair.resolved", WAIT).await.expect("node told");

    // The node takes the request, then goes silent: it reads nothing more, so it answers no
    // ping (as a frozen or unplugged node host). Its socket stays open.
    let call = send(
        &mut op,
        "node.invoke",
        json!({"nodeId": node_id, "command": "system.run", "timeoutMs": 600_000, "idempotencyKey": "silent"}),
    )
    .await;
    node.recv_event("node.invoke.request", WAIT).await.expect("node asked");
    let res = op.recv_response(&call, WAIT).await.expect("the invoke failed once the node counted as gone");
    assert_eq!(err_message(&res), "DISCONNECTED: node disconnected (system.run)");
    let res = op.request("node.describe", Some(json!({"nodeId": node_id}))).await.expect("describe");
    assert_eq!(ok(&res)["connected"], false, "{res}");
    assert_eq!(ok(&res)["pendingInvokes"], 0, "{res}");
    drop(node);
}

#[tokio::test]
async fn node_pairing_requests_and_approvals_survive_a_gateway_restart() {
    let mut gw = gateway().await;
    let identity = NodeIdentity::generate();
    let node_id = identity.device_id().to_owned();
    let node = raw_node(&gw, &identity).await;
    let mut op = operator(&gw).await;
    let res = op.request("node.pair.list", Some(json!({}))).await.expect("pair list");
    let request_id = ok(&res)["pending"][0]["requestId"].as_str().expect("a request").to_owned();
    drop((node, op));

    // Restarted while the request waits: it is still there, with the same id.
    gw.restart().await.expect("restart");
    let mut op = operator(&gw).await;
    let res = op.request("node.pair.list", Some(json!({}))).await.expect("pair list");
    assert_eq!(ok(&res)["pending"][0]["requestId"], request_id.as_str(), "{res}");
    assert_eq!(ok(&res)["pending"][0]["nodeId"], node_id.as_str(), "{res}");
    assert_eq!(approve_pending(&mut op, &node_id).await, request_id);
    let res = op.request("node.rename", Some(json!({"nodeId": node_id, "displayName": "desk"}))).await.expect("rename");
    ok(&res);
    drop(op);

    // Restarted after the approval: the node is known, paired and away, under its new name;
    // reconnecting, it is not asked again and may publish at once.
    gw.restart().await.expect("restart");
    let mut op = operator(&gw).await;
    let res = op.request("node.list", Some(json!({}))).await.expect("list");
    let nodes = ok(&res)["nodes"].as_array().expect("nodes").clone();
    assert_eq!(nodes.len(), 1, "{nodes:?}");
    assert_eq!((nodes[0]["paired"].clone(), nodes[0]["connected"].clone()), (json!(true), json!(false)));
    assert_eq!(nodes[0]["displayName"], "desk");
    let mut node = raw_node(&gw, &identity).await;
    let res = node
        .request("node.runnerInventory.update", Some(json!({"protocolFeatures": ["node-worker-supervisor-v6"]})))
        .await
        .expect("inventory answered");
    ok(&res);
    let res = op.request("node.pair.list", Some(json!({}))).await.expect("pair list");
    assert_eq!(ok(&res)["pending"], json!([]), "{res}");
    assert_eq!(ok(&res)["paired"][0]["nodeId"], node_id.as_str(), "{res}");
}

fn peers_required() -> bool {
    std::env::var("CLAWGATE_REQUIRE_PEERS").is_ok_and(|v| !v.is_empty() && v != "0")
}

/// The peers (installed on first use, as the other peer tests); `None` (skip, with the reason
/// printed) when they cannot be had and `CLAWGATE_REQUIRE_PEERS` is not set.
async fn peers(test: &str) -> Option<OpenClawPeers> {
    match OpenClawPeers::get().await {
        Ok(p) => Some(p),
        Err(e) if peers_required() => panic!("{test} needs the real OpenClaw clients: {e:#}"),
        Err(e) => {
            eprintln!(
                "\n*** SKIPPED {test}: {e:#}\n*** run scripts/install-openclaw.sh \
                 (CLAWGATE_REQUIRE_PEERS=1 turns this skip into a failure)\n"
            );
            None
        }
    }
}

/// A running `openclaw node run` (killed on drop).
struct NodeHost {
    child: tokio::process::Child,
    _home: tempfile::TempDir,
}

impl NodeHost {
    async fn start(peers: &OpenClawPeers, gw: &TestGateway) -> NodeHost {
        let home = tempfile::Builder::new().prefix("openclaw-node-home-").tempdir().expect("home");
        let mut path = peers.node_bin_dir().into_os_string();
        if let Some(p) = std::env::var_os("PATH") {
            path.push(":");
            path.push(p);
        }
        let mut cmd = tokio::process::Command::new(peers.openclaw_cli());
        cmd.args(["node", "run", "--host", "127.0.0.1", "--port", &gw.port().to_string(), "--no-tls"])
            .args(["--display-name", "cg-node"]);
        for (key, _) in std::env::vars_os() {
            if key.to_string_lossy().starts_with("OPENCLAW_") {
                cmd.env_remove(&key);
            }
        }
        cmd.env("HOME", home.path())
            .env("PATH", path)
            .env("XDG_CONFIG_HOME", home.path().join(".config"))
            .env("XDG_CACHE_HOME", home.path().join(".cache"))
            .env("XDG_STATE_HOME", home.path().join(".local/state"))
            .env("XDG_DATA_HOME", home.path().join(".local/share"))
            .env("OPENCLAW_GATEWAY_TOKEN", gw.expect_token())
            .env("OPENCLAW_NO_AUTO_UPDATE", "1")
            .env("OPENCLAW_OFFLINE", "1")
            .env("NO_COLOR", "1")
            .current_dir(home.path())
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .kill_on_drop(true)
            // Its own process group: the node host runs its connection in a child process, and
            // holding or killing it means the whole group.
            .process_group(0);
        let child = cmd.spawn().expect("spawning openclaw node run");
        NodeHost { child, _home: home }
    }

    /// Signals the node host's process group (the one this test started).
    fn signal(&self, sig: &str) {
        if let Some(pid) = self.child.id() {
            let group = format!("-{pid}");
            let status = std::process::Command::new("kill").args([sig, "--", &group]).status().expect("kill");
            assert!(status.success(), "kill {sig} -- {group}");
        }
    }
}

impl Drop for NodeHost {
    fn drop(&mut self) {
        if let Some(pid) = self.child.id() {
            let _ = std::process::Command::new("kill").args(["-KILL", "--", &format!("-{pid}")]).status();
        }
    }
}

/// Runs `openclaw nodes ARGS --url … --token … --json` and returns its JSON output.
async fn nodes_cli(peers: &OpenClawPeers, gw: &TestGateway, args: &[&str]) -> Value {
    let mut cmd = peers.cli(["nodes"]);
    for a in args {
        cmd = cmd.arg(*a);
    }
    let out = cmd
        .arg("--url")
        .arg(gw.ws_url())
        .arg("--token")
        .arg(gw.expect_token())
        .arg("--json")
        .run()
        .await
        .expect("openclaw nodes ran");
    assert_eq!(out.code, Some(0), "{}", out.describe());
    out.json().unwrap_or_else(|e| panic!("JSON from {}: {e:#}", out.describe()))
}

/// Polls `check` (every 20 ms, each poll e.g. one real CLI run) until it yields a value; panics
/// naming `what` after `limit`.
async fn until<T>(limit: Duration, what: &str, mut check: impl AsyncFnMut() -> Option<T>) -> T {
    let deadline = tokio::time::Instant::now() + limit;
    loop {
        if let Some(v) = check().await {
            return v;
        }
        assert!(tokio::time::Instant::now() < deadline, "timed out after {limit:?} waiting until {what}");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

use std::process::Stdio;

#[tokio::test]
async fn the_real_node_host_is_approved_with_the_real_cli_and_answers_invokes() {
    let test = "the_real_node_host_is_approved_with_the_real_cli_and_answers_invokes";
    let Some(peers) = peers(test).await else { return };
    let gw = gateway().await;
    let host = NodeHost::start(&peers, &gw).await;

    // It connects and waits for approval: `openclaw nodes pending` shows its request.
    let pending =
        until(Duration::from_secs(120), "the node host's request shows in `openclaw nodes pending`", async || {
            let list = nodes_cli(&peers, &gw, &["pending"]).await;
            list.as_array().filter(|a| !a.is_empty()).cloned()
        })
        .await;
    assert_eq!(pending[0]["displayName"], "cg-node", "{pending:?}");
    let node_id = pending[0]["nodeId"].as_str().expect("nodeId").to_owned();
    let request_id = pending[0]["requestId"].as_str().expect("requestId").to_owned();

    let approved = nodes_cli(&peers, &gw, &["approve", &request_id]).await;
    assert_eq!(approved["node"]["nodeId"], node_id.as_str(), "{approved}");

    // `openclaw nodes status` shows it connected and paired, with the commands it announced.
    let status = nodes_cli(&peers, &gw, &["status"]).await;
    let node = status["nodes"].as_array().and_then(|n| n.iter().find(|n| n["nodeId"] == node_id.as_str())).cloned();
    let node = node.unwrap_or_else(|| panic!("node in `openclaw nodes status`: {status}"));
    assert_eq!(node["connected"], true, "{node}");
    assert_eq!(node["paired"], true, "{node}");
    assert!(node["commands"].as_array().is_some_and(|c| c.iter().any(|c| c == "system.which")), "{node}");

    // `openclaw nodes invoke` runs system.which on the node host, through clawgate.
    let out = nodes_cli(
        &peers,
        &gw,
        &["invoke", "--node", &node_id, "--command", "system.which", "--params", r#"{"bins":["sh"]}"#],
    )
    .await;
    assert_eq!(out["ok"], true, "{out}");
    let sh = out["payload"]["bins"]["sh"].as_str().unwrap_or_else(|| panic!("a path for sh: {out}"));
    assert!(sh.ends_with("/sh"), "{out}");

    // Held (stopped) with an invoke pending, then killed: the invoke fails at once, long before
    // its 10 minutes.
    let mut op = operator(&gw).await;
    host.signal("-STOP");
    let call = send(
        &mut op,
        "node.invoke",
        json!({"nodeId": node_id, "command": "system.which", "params": {"bins": ["sh"]},
               "timeoutMs": 600_000, "idempotencyKey": "held"}),
    )
    .await;
    until(WAIT, "the invoke is pending at the gateway", async || {
        let res = op.request("node.describe", Some(json!({"nodeId": node_id}))).await.expect("describe");
        (ok(&res)["pendingInvokes"] == 1).then_some(())
    })
    .await;
    host.signal("-KILL");
    let res = op.recv_response(&call, Duration::from_secs(30)).await.expect("the pending invoke failed at once");
    assert_eq!(err_message(&res), "DISCONNECTED: node disconnected (system.which)");
}

/// Runs `clawgate ARGS --url … --token … --state-dir <tmp>`; asserts exit 0, returns stdout.
async fn clawgate_cli(gw: &TestGateway, state: &std::path::Path, args: &[&str]) -> String {
    let mut cmd = tokio::process::Command::new(BIN);
    cmd.args(args)
        .args(["--url", &gw.ws_url(), "--token", gw.expect_token(), "--state-dir"])
        .arg(state)
        .kill_on_drop(true);
    for var in ["CLAWGATE_URL", "CLAWGATE_GATEWAY_TOKEN", "CLAWGATE_GATEWAY_PASSWORD", "CLAWGATE_STATE_DIR"] {
        cmd.env_remove(var);
    }
    let out = tokio::time::timeout(Duration::from_secs(60), cmd.output())
        .await
        .unwrap_or_else(|_| panic!("`clawgate {}` did not finish", args.join(" ")))
        .expect("run clawgate");
    let stdout = String::from_utf8_lossy(&out.stdout).into_owned();
    assert!(
        out.status.success(),
        "`clawgate {}` failed\nstdout: {stdout}\nstderr: {}",
        args.join(" "),
        String::from_utf8_lossy(&out.stderr)
    );
    stdout
}

#[tokio::test]
async fn clawgate_nodes_cli_lists_approves_and_invokes() {
    let gw = gateway().await;
    let state = tempfile::tempdir().expect("cli state");
    let identity = NodeIdentity::generate();
    let node_id = identity.device_id().to_owned();
    let mut node = raw_node(&gw, &identity).await;

    let pending: Value =
        serde_json::from_str(&clawgate_cli(&gw, state.path(), &["nodes", "pending", "--json"]).await).expect("json");
    let request_id = pending["pending"][0]["requestId"].as_str().expect("a pending request").to_owned();
    let text = clawgate_cli(&gw, state.path(), &["nodes", "pending"]).await;
    assert!(text.contains(&request_id) && text.contains("clawgate nodes approve"), "{text}");

    // A unique prefix of the request id is enough.
    let text = clawgate_cli(&gw, state.path(), &["nodes", "approve", &request_id[..8]]).await;
    assert!(text.contains(&format!("Approved node {}", &node_id[..12])), "{text}");
    node.recv_event("node.pair.resolved", WAIT).await.expect("node told");

    let text = clawgate_cli(&gw, state.path(), &["nodes", "list"]).await;
    assert!(text.contains("raw-node") && text.contains("connected") && text.contains("approved"), "{text}");

    // `nodes invoke` by display name; the raw node answers while the CLI waits.
    let gw_url = gw.ws_url();
    let token = gw.expect_token().to_owned();
    let state_path = state.path().to_owned();
    let invoke = tokio::spawn(async move {
        let mut cmd = tokio::process::Command::new(BIN);
        cmd.args([
            "nodes",
            "invoke",
            "--node",
            "raw-node",
            "--command",
            "system.which",
            "--params",
            r#"{"bins":["sh"]}"#,
        ])
        .args(["--json", "--url", &gw_url, "--token", &token, "--state-dir"])
        .arg(&state_path)
        .kill_on_drop(true);
        for var in ["CLAWGATE_URL", "CLAWGATE_GATEWAY_TOKEN", "CLAWGATE_GATEWAY_PASSWORD", "CLAWGATE_STATE_DIR"] {
            cmd.env_remove(var);
        }
        tokio::time::timeout(Duration::from_secs(60), cmd.output()).await.expect("invoke finished").expect("ran")
    });
    let req = match node.recv_event("node.invoke.request", Duration::from_secs(60)).await {
        Ok(req) => req,
        Err(e) => {
            let out = invoke.await.expect("join");
            panic!(
                "node not asked ({e:#}); the CLI said: {} {}",
                String::from_utf8_lossy(&out.stdout),
                String::from_utf8_lossy(&out.stderr)
            );
        }
    };
    let answer =
        json!({"id": req["payload"]["id"], "nodeId": node_id, "ok": true, "payload": {"bins": {"sh": "/bin/sh"}}});
    ok(&node.request("node.invoke.result", Some(answer)).await.expect("result taken"));
    let out = invoke.await.expect("join");
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let printed: Value = serde_json::from_slice(&out.stdout).expect("json");
    assert_eq!(printed["payload"], json!({"bins": {"sh": "/bin/sh"}}));
    assert_eq!(printed["nodeId"], node_id.as_str());
}
