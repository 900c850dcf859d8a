//! Exec approvals end to end against the real binary (issue 13 item 4; upstream's
//! `exec-approval.ts`, `approval.ts`, `exec-approvals.ts` in 2026.9.6): the methods with their
//! shapes and errors, a pending approval surviving a restart, the policy with its base hash, and
//! the agent's `node_invoke` tool behind them — a model's command on a node waits for an
//! operator, runs when allowed, is refused when denied, and needs no approval once allowed
//! always.
//!
//! The node is played by the testkit's device-signed node client (always runs); the last tests
//! drive the real `openclaw` CLI (`approvals resolve`, `approvals get|allowlist … --node`) and the
//! real `openclaw node run` host, and are skipped with the reason when the OpenClaw peers are
//! not installed (`scripts/install-openclaw.sh`), unless `CLAWGATE_REQUIRE_PEERS=1`.

use std::process::Stdio;
use std::time::Duration;

use clawgate_testkit::fake_openai::{FakeOpenAi, Script, Turn};
use clawgate_testkit::{NodeClient, NodeIdentity, OpenClawPeers, RawClient, TestGateway};
use serde_json::{Value, json};

const BIN: &str = env!("CARGO_BIN_EXE_clawgate");
/// Bound for each single wait.
const WAIT: Duration = Duration::from_secs(10);
/// Bound for an agent turn (a model round trip on a loaded machine).
const TURN_WAIT: Duration = Duration::from_secs(60);
const APPROVER_SCOPES: &[&str] = &["operator.admin", "operator.read", "operator.write", "operator.approvals"];

async fn gateway() -> TestGateway {
    TestGateway::start(BIN).await.unwrap_or_else(|e| panic!("starting clawgate: {e:#}"))
}

/// A gateway whose default agent talks to the fake model.
async fn gateway_with_model(fake: &FakeOpenAi) -> TestGateway {
    let config = json!({
        "models": {"providers": {"fake": {
            "baseUrl": fake.base_url(), "apiKey": "fake-key", "api": "openai-completions",
            "models": [{"id": "fake-model", "name": "Fake Model"}],
        }}},
        "agents": {"defaults": {"model": {"primary": "fake/fake-model"}}},
    })
    .to_string();
    TestGateway::builder(BIN).config(config).start().await.unwrap_or_else(|e| panic!("starting clawgate: {e:#}"))
}

async fn operator_with(gw: &TestGateway, scopes: &[&str]) -> RawClient {
    let mut c = RawClient::connect(&gw.ws_url()).await.expect("operator connects");
    let scopes: Vec<&str> = scopes.to_vec();
    c.handshake(Some(gw.expect_token()), &json!({"scopes": scopes})).await.expect("operator admitted");
    c
}

async fn approver(gw: &TestGateway) -> RawClient {
    operator_with(gw, APPROVER_SCOPES).await
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
async fn exec_approvals_are_requested_listed_resolved_and_waited_for() {
    let gw = gateway().await;
    let mut requester = approver(&gw).await;
    let mut op = approver(&gw).await;

    // Two-phase: accepted at once, announced to approval operators, listed and shown.
    let call = send(
        &mut requester,
        "exec.approval.request",
        json!({"command": "ls -la", "commandArgv": ["ls", "-la"], "agentId": "main", "sessionKey": "agent:main:x",
               "timeoutMs": 60_000, "twoPhase": true}),
    )
    .await;
    let accepted = requester.recv_response(&call, WAIT).await.expect("accepted");
    let accepted = ok(&accepted).clone();
    assert_eq!(accepted["status"], "accepted", "{accepted}");
    assert_eq!(accepted["deliveryRoute"], "approval-client", "{accepted}");
    let id = accepted["id"].as_str().expect("id").to_owned();
    let requested = op.recv_event("exec.approval.requested", WAIT).await.expect("announced");
    assert_eq!(requested["payload"]["id"], id.as_str());
    assert_eq!(requested["payload"]["approvalKind"], "exec");
    assert_eq!(requested["payload"]["request"]["command"], "ls -la");

    let list = op.request("exec.approval.list", Some(json!({}))).await.expect("list");
    let list = ok(&list).as_array().expect("a bare array").clone();
    assert_eq!(list.len(), 1, "{list:?}");
    assert_eq!((list[0]["id"].as_str(), list[0]["request"]["agentId"].as_str()), (Some(id.as_str()), Some("main")));
    let got = op.request("exec.approval.get", Some(json!({"id": id}))).await.expect("get");
    let got = ok(&got);
    assert_eq!(got["commandText"], "ls -la");
    assert_eq!(got["allowedDecisions"], json!(["allow-once", "allow-always", "deny"]));
    let snap = op.request("approval.get", Some(json!({"id": id}))).await.expect("approval.get");
    let snap = &ok(&snap)["approval"];
    assert_eq!((snap["status"].as_str(), snap["presentation"]["kind"].as_str()), (Some("pending"), Some("exec")));
    assert_eq!(snap["urlPath"], format!("/approve/{id}"));

    // Bad decisions and ids; then the decision reaches the requester and every operator.
    let res =
        op.request("exec.approval.resolve", Some(json!({"id": id, "decision": "maybe"}))).await.expect("answered");
    assert_eq!(err_message(&res), "invalid decision");
    let res =
        op.request("exec.approval.resolve", Some(json!({"id": "nope", "decision": "deny"}))).await.expect("answered");
    assert_eq!(err_message(&res), "unknown or expired approval id");
    assert_eq!(res["error"]["details"]["reason"], "APPROVAL_NOT_FOUND", "{res}");
    let res =
        op.request("exec.approval.resolve", Some(json!({"id": id, "decision": "allow-once"}))).await.expect("resolve");
    assert_eq!(ok(&res)["ok"], true);
    let resolved = op.recv_event("exec.approval.resolved", WAIT).await.expect("resolved announced");
    assert_eq!(
        (resolved["payload"]["id"].as_str(), resolved["payload"]["decision"].as_str()),
        (Some(&*id), Some("allow-once"))
    );
    let fin = requester.recv_response(&call, WAIT).await.expect("final answer");
    let fin = ok(&fin);
    assert_eq!((fin["id"].as_str(), fin["decision"].as_str()), (Some(id.as_str()), Some("allow-once")), "{fin}");

    // Once decided: the same decision again is ok, another one is refused; waiting answers at once.
    let res = op.request("exec.approval.resolve", Some(json!({"id": id, "decision": "allow-once"}))).await.expect("r");
    assert_eq!(ok(&res)["ok"], true);
    let res = op.request("exec.approval.resolve", Some(json!({"id": id, "decision": "deny"}))).await.expect("r");
    assert_eq!(err_message(&res), "approval already resolved");
    let waited = op.request("exec.approval.waitDecision", Some(json!({"id": id}))).await.expect("wait");
    assert_eq!(ok(&waited)["decision"], "allow-once");
    let list = op.request("exec.approval.list", Some(json!({}))).await.expect("list");
    assert_eq!(ok(&list), &json!([]));
    let snap = op.request("approval.get", Some(json!({"id": id}))).await.expect("approval.get");
    let snap = &ok(&snap)["approval"];
    assert_eq!((snap["status"].as_str(), snap["decision"].as_str()), (Some("allowed"), Some("allow-once")));

    // Expiry: nobody answers, the request ends with decision null.
    let res = requester
        .request("exec.approval.request", Some(json!({"command": "sleep 1", "timeoutMs": 300})))
        .await
        .expect("answered");
    assert_eq!(ok(&res)["decision"], Value::Null, "{res}");
}

#[tokio::test]
async fn exec_approval_params_and_scopes_are_checked() {
    let gw = gateway().await;
    let mut op = approver(&gw).await;
    let res = op.request("exec.approval.request", Some(json!({"command": "ls", "bogus": 1}))).await.expect("answered");
    assert!(err_message(&res).starts_with("invalid exec.approval.request params: unknown field `bogus`"), "{res}");
    let res = op.request("exec.approval.request", Some(json!({"timeoutMs": 100}))).await.expect("answered");
    assert_eq!(err_message(&res), "command is required");
    let res = op.request("exec.approval.request", Some(json!({"command": "ls", "host": "node"}))).await.expect("a");
    assert_eq!(err_message(&res), "nodeId is required for host=node");
    let res = op.request("exec.approval.request", Some(json!({"command": "ls", "id": "plugin:x"}))).await.expect("a");
    assert_eq!(err_message(&res), "approval ids starting with plugin: are reserved");
    let res = op.request("exec.approval.waitDecision", Some(json!({"id": "nope"}))).await.expect("answered");
    assert_eq!(err_message(&res), "approval expired or not found");
    let res = op.request("approval.get", Some(json!({"id": "nope"}))).await.expect("answered");
    assert_eq!(err_message(&res), "approval not found");

    // Standing grants (upstream: minted by allow-always on cron jobs' approvals): clawgate keeps
    // every grant in the allowlists, so there are none to list or revoke.
    let res = op.request("exec.approval.grants.list", Some(json!({}))).await.expect("answered");
    assert_eq!(ok(&res), &json!({"grants": []}));
    let res = op.request("exec.approval.grants.revoke", Some(json!({"grantId": "g-1"}))).await.expect("answered");
    assert_eq!(ok(&res), &json!({"outcome": "not-found"}));
    let res = op.request("exec.approval.grants.list", Some(json!({"limit": 0}))).await.expect("answered");
    assert!(err_message(&res).contains("limit must be between 1 and 500"), "{res}");

    // Without operator.approvals (and without admin) the methods are refused; events too.
    let mut reader = operator_with(&gw, &["operator.read", "operator.write"]).await;
    for method in ["exec.approval.list", "exec.approval.resolve", "approval.get"] {
        let res = reader.request(method, Some(json!({"id": "x", "decision": "deny"}))).await.expect("answered");
        assert!(err_message(&res).contains("operator.approvals"), "{method}: {res}");
    }
    let res = reader.request("exec.approvals.get", Some(json!({}))).await.expect("answered");
    assert!(err_message(&res).contains("operator.admin"), "{res}");
}

#[tokio::test]
async fn the_policy_is_written_over_its_hash_and_allow_always_adds_to_the_allowlist() {
    let gw = gateway().await;
    let mut op = approver(&gw).await;
    let snap = op.request("exec.approvals.get", Some(json!({}))).await.expect("get");
    let snap = ok(&snap).clone();
    assert_eq!(snap["exists"], false, "{snap}");
    assert_eq!(snap["file"], json!({"version": 1}));
    assert_eq!(
        snap["resolvedDefaults"],
        json!({"security": "allowlist", "ask": "on-miss", "askFallback": "deny", "autoAllowSkills": false})
    );

    let file = json!({"version": 1, "defaults": {"security": "allowlist", "ask": "on-miss"}});
    let set = op.request("exec.approvals.set", Some(json!({"file": file}))).await.expect("set");
    let hash = ok(&set)["hash"].as_str().expect("hash").to_owned();
    assert_eq!(ok(&set)["exists"], true);
    let res = op.request("exec.approvals.set", Some(json!({"file": file}))).await.expect("answered");
    assert_eq!(err_message(&res), "exec approvals base hash required; re-run exec.approvals.get and retry");
    let res = op.request("exec.approvals.set", Some(json!({"file": file, "baseHash": "stale"}))).await.expect("a");
    assert_eq!(err_message(&res), "exec approvals changed since last load; re-run exec.approvals.get and retry");
    let res = op
        .request(
            "exec.approvals.set",
            Some(json!({"file": {"version": 1, "defaults": {"ask": "sometimes"}}, "baseHash": hash})),
        )
        .await
        .expect("answered");
    assert!(err_message(&res).contains("ask must be one of off, on-miss, always"), "{res}");

    // allow-always on a request adds its executable to the agent's allowlist.
    let call = send(
        &mut op,
        "exec.approval.request",
        json!({"command": "/usr/bin/uptime", "commandArgv": ["/usr/bin/uptime"], "agentId": "main",
               "twoPhase": true}),
    )
    .await;
    let id = ok(&op.recv_response(&call, WAIT).await.expect("accepted"))["id"].as_str().expect("id").to_owned();
    let res =
        op.request("exec.approval.resolve", Some(json!({"id": id, "decision": "allow-always"}))).await.expect("r");
    assert_eq!(ok(&res)["ok"], true);
    assert_eq!(ok(&op.recv_response(&call, WAIT).await.expect("final"))["decision"], "allow-always");
    let snap = op.request("exec.approvals.get", Some(json!({}))).await.expect("get");
    let entry = &ok(&snap)["file"]["agents"]["main"]["allowlist"][0];
    assert_eq!((entry["pattern"].as_str(), entry["source"].as_str()), (Some("/usr/bin/uptime"), Some("allow-always")));
    assert_ne!(ok(&snap)["hash"], hash.as_str());

    // Revoking is writing the policy without the entry (what `openclaw approvals allowlist remove` does).
    let mut file = ok(&snap)["file"].clone();
    file["agents"]["main"]["allowlist"] = json!([]);
    let base = ok(&snap)["hash"].clone();
    let set = op.request("exec.approvals.set", Some(json!({"file": file, "baseHash": base}))).await.expect("set");
    assert_eq!(ok(&set)["file"]["agents"]["main"]["allowlist"], json!([]));
}

#[tokio::test]
async fn a_pending_exec_approval_survives_a_restart_and_its_waiter_gets_the_decision() {
    let mut gw = gateway().await;
    let mut op = approver(&gw).await;
    let call = send(
        &mut op,
        "exec.approval.request",
        json!({"id": "survivor-1", "command": "make deploy", "timeoutMs": 600_000, "twoPhase": true}),
    )
    .await;
    ok(&op.recv_response(&call, WAIT).await.expect("accepted"));
    drop(op);
    gw.restart().await.expect("restart");

    let mut waiter = approver(&gw).await;
    let mut op = approver(&gw).await;
    let list = op.request("exec.approval.list", Some(json!({}))).await.expect("list");
    assert_eq!(ok(&list)[0]["id"], "survivor-1", "{list}");
    let wait = send(&mut waiter, "exec.approval.waitDecision", json!({"id": "survivor-1"})).await;
    let res =
        op.request("exec.approval.resolve", Some(json!({"id": "survivor-1", "decision": "deny"}))).await.expect("r");
    assert_eq!(ok(&res)["ok"], true);
    let decided = waiter.recv_response(&wait, WAIT).await.expect("the waiter hears");
    assert_eq!(ok(&decided)["decision"], "deny", "{decided}");
}

// ---- the agent's node tool ----

/// A node the test plays (the testkit's node client), as `openclaw node run` connects.
async fn raw_node(gw: &TestGateway, identity: &NodeIdentity) -> NodeClient {
    NodeClient::connect(&gw.ws_url(), gw.expect_token(), identity).await.expect("node admitted")
}

/// Approves the one pending node through `node.pair.*`.
async fn approve_pending_node(gw: &TestGateway) {
    let mut op = operator_with(gw, &["operator.admin", "operator.pairing"]).await;
    let pending = op.request("node.pair.list", Some(json!({}))).await.expect("pair list");
    let request_id = ok(&pending)["pending"][0]["requestId"].as_str().expect("a pending node").to_owned();
    ok(&op.request("node.pair.approve", Some(json!({"requestId": request_id}))).await.expect("approve"));
}

/// The text of the `tool` message the model got back in its `n`th request.
fn tool_result_sent(fake: &FakeOpenAi, n: usize) -> String {
    let requests = fake.chat_requests();
    let messages = requests.get(n).map(|r| r.body["messages"].clone()).unwrap_or_default();
    let tool = messages.as_array().into_iter().flatten().rev().find(|m| m["role"] == "tool").cloned();
    let tool = tool.unwrap_or_else(|| panic!("request {n} carries a tool result: {messages}"));
    match &tool["content"] {
        Value::String(s) => s.clone(),
        other => other.to_string(),
    }
}

/// The run's final `chat` event for `key` on `client`.
async fn final_chat(client: &mut RawClient, run: &str) -> Value {
    let deadline = tokio::time::Instant::now() + TURN_WAIT;
    loop {
        let left = deadline.saturating_duration_since(tokio::time::Instant::now());
        let ev = client.recv_event("chat", left).await.unwrap_or_else(|e| panic!("no final chat for {run}: {e:#}"));
        if ev["payload"]["runId"] == run && (ev["payload"]["state"] == "final" || ev["payload"]["state"] == "error") {
            return ev["payload"].clone();
        }
    }
}

fn node_call(bin: &str) -> String {
    json!({"node": "raw-node", "command": "system.which", "params": {"bins": [bin]}}).to_string()
}

/// Sends `message` in `session` from `chat`; the run id.
async fn chat_send(chat: &mut RawClient, session: &str, message: &str, key: &str) -> String {
    let res = chat
        .request("chat.send", Some(json!({"sessionKey": session, "message": message, "idempotencyKey": key})))
        .await
        .expect("chat.send");
    ok(&res)["runId"].as_str().expect("runId").to_owned()
}

/// A connected node, approved by an operator.
async fn approved_node(gw: &TestGateway, identity: &NodeIdentity) -> NodeClient {
    let mut node = raw_node(gw, identity).await;
    approve_pending_node(gw).await;
    node.recv_event("node.pair.resolved", WAIT).await.expect("node told");
    node
}

/// The node's next invoke: it must be `command`; answered with `payload`.
async fn answer_next(node: &mut NodeClient, command: &str, payload: Value, wait: Duration) {
    let invoke = node.next_invoke(wait).await.expect("the node is asked");
    assert_eq!(invoke.command, command, "{}", invoke.frame);
    node.answer(&invoke, payload).await.expect("result taken");
}

/// The allowlist entries of `agent` in a policy snapshot.
fn allowlist<'a>(snap: &'a Value, agent: &str) -> &'a [Value] {
    snap["file"]["agents"][agent]["allowlist"].as_array().map(Vec::as_slice).unwrap_or_default()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_agents_node_tool_waits_for_an_operator_and_allow_always_stops_asking_until_revoked() {
    let script = Script::new()
        .turn(Turn::tool_call("node_invoke", node_call("sh")))
        .turn(Turn::text(["Found sh."]))
        .turn(Turn::tool_call("node_invoke", node_call("sh")))
        .turn(Turn::text(["Was denied."]))
        .turn(Turn::tool_call("node_invoke", node_call("sh")))
        .turn(Turn::text(["Found it again."]))
        .turn(Turn::tool_call("node_invoke", node_call("sh")))
        .turn(Turn::text(["No question asked."]))
        .turn(Turn::tool_call("node_invoke", node_call("sh")))
        .turn(Turn::text(["Asked again."]));
    let fake = FakeOpenAi::start(script).await.expect("fake model");
    let gw = gateway_with_model(&fake).await;
    let identity = NodeIdentity::generate();
    let node_id = identity.device_id().to_owned();
    let mut node = approved_node(&gw, &identity).await;
    let mut op = approver(&gw).await;
    let mut chat = approver(&gw).await;
    let sh = json!({"bins": {"sh": "/bin/sh"}});

    // 1. The model's call waits for an approval; allowed once, the node runs it and the result
    //    reaches the model and the reply.
    let run = chat_send(&mut chat, "agent:main:ops", "where is sh?", "t1").await;
    let requested = op.recv_event("exec.approval.requested", TURN_WAIT).await.expect("an exec approval");
    let request = &requested["payload"]["request"];
    assert_eq!((request["nodeId"].as_str(), request["host"].as_str()), (Some(node_id.as_str()), Some("node")));
    assert_eq!(request["command"], r#"system.which {"bins":["sh"]}"#);
    assert_eq!(request["agentId"], "main");
    let id = requested["payload"]["id"].as_str().expect("id").to_owned();
    let res = op.request("exec.approval.resolve", Some(json!({"id": id, "decision": "allow-once"}))).await.expect("r");
    ok(&res);
    answer_next(&mut node, "system.which", sh.clone(), WAIT).await;
    let fin = final_chat(&mut chat, &run).await;
    assert_eq!(fin["state"], "final", "{fin}");
    assert!(tool_result_sent(&fake, 1).contains("/bin/sh"), "{}", tool_result_sent(&fake, 1));

    // 2. Denied: the node is never asked and the model is told.
    let run = chat_send(&mut chat, "agent:main:ops", "again", "t2").await;
    let requested = op.recv_event("exec.approval.requested", TURN_WAIT).await.expect("an exec approval");
    let id = requested["payload"]["id"].as_str().expect("id").to_owned();
    ok(&op.request("exec.approval.resolve", Some(json!({"id": id, "decision": "deny"}))).await.expect("r"));
    assert_eq!(final_chat(&mut chat, &run).await["state"], "final");
    let told = tool_result_sent(&fake, 3);
    assert!(told.contains("denied") && told.contains(&id), "{told}");

    // 3. allow-always: runs, and grants system.which to the agent: an allowlist entry with an id,
    //    the command it was granted for and when.
    let run = chat_send(&mut chat, "agent:main:ops", "always", "t3").await;
    let requested = op.recv_event("exec.approval.requested", TURN_WAIT).await.expect("an exec approval");
    let id = requested["payload"]["id"].as_str().expect("id").to_owned();
    ok(&op.request("exec.approval.resolve", Some(json!({"id": id, "decision": "allow-always"}))).await.expect("r"));
    answer_next(&mut node, "system.which", sh.clone(), WAIT).await;
    assert_eq!(final_chat(&mut chat, &run).await["state"], "final");
    let snap = op.request("exec.approvals.get", Some(json!({}))).await.expect("get");
    let grant = allowlist(ok(&snap), "main").first().cloned().unwrap_or_else(|| panic!("a grant: {snap}"));
    assert_eq!((grant["pattern"].as_str(), grant["source"].as_str()), (Some("system.which"), Some("allow-always")));
    assert_eq!(grant["commandText"], r#"system.which {"bins":["sh"]}"#);
    assert!(grant["id"].as_str().is_some_and(|g| !g.is_empty()), "{grant}");
    let granted_at = grant["lastUsedAt"].as_i64().expect("lastUsedAt");

    // … so the next call runs at once: the node is asked with no approval in between, and the
    //    grant notes its use.
    let run = chat_send(&mut chat, "agent:main:ops", "once more", "t4").await;
    answer_next(&mut node, "system.which", json!({"bins": {"sh": "/usr/bin/sh"}}), TURN_WAIT).await;
    assert_eq!(final_chat(&mut chat, &run).await["state"], "final");
    assert!(tool_result_sent(&fake, 7).contains("/usr/bin/sh"));
    let list = op.request("exec.approval.list", Some(json!({}))).await.expect("list");
    assert_eq!(ok(&list), &json!([]), "no approval was asked for the fourth call");
    let snap = op.request("exec.approvals.get", Some(json!({}))).await.expect("get");
    let snap = ok(&snap).clone();
    let used = &allowlist(&snap, "main")[0];
    assert_eq!(
        (used["id"].clone(), used["lastUsedCommand"].as_str()),
        (grant["id"].clone(), Some(r#"system.which {"bins":["sh"]}"#))
    );
    assert!(used["lastUsedAt"].as_i64().is_some_and(|t| t >= granted_at), "{used}");

    // 4. Revoked (the policy written without the entry, as `openclaw approvals allowlist
    //    remove` does): the next call asks again. An operator holding `operator.approvals` but
    //    not admin sees and resolves it: the agent's own requests belong to no one client.
    let mut file = snap["file"].clone();
    file["agents"]["main"]["allowlist"] = json!([]);
    let set = op.request("exec.approvals.set", Some(json!({"file": file, "baseHash": snap["hash"]}))).await.expect("s");
    assert_eq!(allowlist(ok(&set), "main").len(), 0);
    let mut reviewer = operator_with(&gw, &["operator.approvals"]).await;
    let run = chat_send(&mut chat, "agent:main:ops", "after revoke", "t5").await;
    let requested = reviewer.recv_event("exec.approval.requested", TURN_WAIT).await.expect("asked again");
    let id = requested["payload"]["id"].as_str().expect("id").to_owned();
    let list = reviewer.request("exec.approval.list", Some(json!({}))).await.expect("list");
    assert_eq!(ok(&list)[0]["id"], id.as_str(), "{list}");
    let res = reviewer.request("exec.approval.resolve", Some(json!({"id": id, "decision": "allow-once"}))).await;
    ok(&res.expect("resolve"));
    answer_next(&mut node, "system.which", sh, WAIT).await;
    assert_eq!(final_chat(&mut chat, &run).await["state"], "final");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_nodes_own_policy_decides_for_it_is_written_over_its_hash_and_survives_a_restart() {
    let script = Script::new()
        .turn(Turn::tool_call("node_invoke", node_call("sh")))
        .turn(Turn::text(["Ran under the node's policy."]))
        .turn(Turn::tool_call("node_invoke", node_call("sh")))
        .turn(Turn::text(["Still its policy after the restart."]))
        .turn(Turn::tool_call("node_invoke", node_call("sh")))
        .turn(Turn::text(["Refused by the node's policy."]));
    let fake = FakeOpenAi::start(script).await.expect("fake model");
    let mut gw = gateway_with_model(&fake).await;
    let identity = NodeIdentity::generate();
    let node_id = identity.device_id().to_owned();
    let mut node = approved_node(&gw, &identity).await;
    let mut op = approver(&gw).await;
    let mut chat = approver(&gw).await;

    // No policy of its own yet: the empty document, named after the node.
    let snap = op.request("exec.approvals.node.get", Some(json!({"nodeId": node_id}))).await.expect("get");
    let snap = ok(&snap).clone();
    assert_eq!((snap["exists"].clone(), snap["file"].clone()), (json!(false), json!({"version": 1})), "{snap}");
    assert!(snap["path"].as_str().is_some_and(|p| p.ends_with(&node_id)), "{snap}");
    let res = op.request("exec.approvals.node.get", Some(json!({"nodeId": "no-such-node"}))).await.expect("answered");
    assert_eq!(err_message(&res), "unknown nodeId");
    let res = op.request("exec.approvals.node.get", Some(json!({}))).await.expect("answered");
    assert_eq!(err_message(&res), "nodeId required");

    // Its own allowlist lets the model's command run unasked; the gateway's policy is untouched.
    let file = json!({"version": 1, "defaults": {"security": "allowlist", "ask": "on-miss"},
                      "agents": {"main": {"allowlist": [{"id": "n-1", "pattern": "system.which"}]}}});
    let set = op.request("exec.approvals.node.set", Some(json!({"nodeId": node_id, "file": file}))).await.expect("set");
    let hash = ok(&set)["hash"].as_str().expect("hash").to_owned();
    assert_eq!(ok(&set)["exists"], true);
    let res = op.request("exec.approvals.node.set", Some(json!({"nodeId": node_id, "file": file}))).await.expect("a");
    assert_eq!(err_message(&res), "exec approvals base hash required; re-run exec.approvals.get and retry");
    let res = op
        .request("exec.approvals.node.set", Some(json!({"nodeId": node_id, "file": file, "baseHash": "stale"})))
        .await
        .expect("answered");
    assert_eq!(err_message(&res), "exec approvals changed since last load; re-run exec.approvals.get and retry");
    let gateway_policy = op.request("exec.approvals.get", Some(json!({}))).await.expect("get");
    assert_eq!(ok(&gateway_policy)["exists"], false, "the node's policy is its own");

    let run = chat_send(&mut chat, "agent:main:node", "where is sh?", "n1").await;
    answer_next(&mut node, "system.which", json!({"bins": {"sh": "/bin/sh"}}), TURN_WAIT).await;
    assert_eq!(final_chat(&mut chat, &run).await["state"], "final");
    let list = op.request("exec.approval.list", Some(json!({}))).await.expect("list");
    assert_eq!(ok(&list), &json!([]), "nobody was asked");
    let snap = op.request("exec.approvals.node.get", Some(json!({"nodeId": node_id}))).await.expect("get");
    let snap = ok(&snap).clone();
    assert!(allowlist(&snap, "main")[0]["lastUsedAt"].is_i64(), "the node's entry notes its use: {snap}");
    assert_ne!(snap["hash"], hash.as_str());

    // Durable: after a restart the same document and hash, and it still decides.
    drop((node, op, chat));
    gw.restart().await.expect("restart");
    let mut node = raw_node(&gw, &identity).await;
    let mut op = approver(&gw).await;
    let mut chat = approver(&gw).await;
    let again = op.request("exec.approvals.node.get", Some(json!({"nodeId": node_id}))).await.expect("get");
    assert_eq!((ok(&again)["hash"].clone(), ok(&again)["file"].clone()), (snap["hash"].clone(), snap["file"].clone()));
    let run = chat_send(&mut chat, "agent:main:node", "and now?", "n2").await;
    answer_next(&mut node, "system.which", json!({"bins": {"sh": "/bin/sh"}}), TURN_WAIT).await;
    assert_eq!(final_chat(&mut chat, &run).await["state"], "final");

    // Its own `security: deny` refuses what the gateway's policy would have asked about (written
    // over the hash as it is now: the run above noted its use again).
    let now = op.request("exec.approvals.node.get", Some(json!({"nodeId": node_id}))).await.expect("get");
    assert_ne!(ok(&now)["hash"], snap["hash"], "the second use was noted too");
    let deny = json!({"version": 1, "defaults": {"security": "deny"}});
    let set = op
        .request(
            "exec.approvals.node.set",
            Some(json!({"nodeId": node_id, "file": deny, "baseHash": ok(&now)["hash"]})),
        )
        .await
        .expect("set");
    ok(&set);
    let run = chat_send(&mut chat, "agent:main:node", "try", "n3").await;
    assert_eq!(final_chat(&mut chat, &run).await["state"], "final");
    let told = tool_result_sent(&fake, 5);
    assert!(told.contains("security=deny"), "{told}");
    let list = op.request("exec.approval.list", Some(json!({}))).await.expect("list");
    assert_eq!(ok(&list), &json!([]), "denied without asking");
}

#[tokio::test]
async fn exec_approvals_are_shown_only_to_who_may_see_them() {
    let gw = gateway().await;
    let mut admin = approver(&gw).await;
    let mut mine = operator_with(&gw, &["operator.approvals"]).await;
    let mut other = operator_with(&gw, &["operator.approvals"]).await;
    let call = send(&mut mine, "exec.approval.request", json!({"command": "make test", "twoPhase": true})).await;
    let id = ok(&mine.recv_response(&call, WAIT).await.expect("accepted"))["id"].as_str().expect("id").to_owned();

    // Only the admin is told (the requester's own connection is not): by the time another
    // client's request is answered, an event sent to it would have arrived before the answer.
    let told = admin.recv_event("exec.approval.requested", WAIT).await.expect("the admin is told");
    assert_eq!(told["payload"]["id"], id.as_str());

    // The requester and an admin see it; another approvals client does not, and for it the id
    // does not exist: get, wait and resolve answer as for an unknown id.
    for (who, c) in [("requester", &mut mine), ("admin", &mut admin)] {
        let list = c.request("exec.approval.list", Some(json!({}))).await.expect("list");
        assert_eq!(ok(&list)[0]["id"], id.as_str(), "{who}: {list}");
    }
    let list = other.request("exec.approval.list", Some(json!({}))).await.expect("list");
    assert_eq!(ok(&list), &json!([]), "{list}");
    let res = other.request("exec.approval.get", Some(json!({"id": id}))).await.expect("answered");
    assert_eq!(err_message(&res), "unknown or expired approval id");
    let res = other.request("exec.approval.waitDecision", Some(json!({"id": id}))).await.expect("answered");
    assert_eq!(err_message(&res), "approval expired or not found");
    let res =
        other.request("exec.approval.resolve", Some(json!({"id": id, "decision": "allow-once"}))).await.expect("a");
    assert_eq!(err_message(&res), "unknown or expired approval id");
    assert_eq!(res["error"]["details"]["reason"], "APPROVAL_NOT_FOUND", "{res}");
    let got = admin.request("exec.approval.get", Some(json!({"id": id}))).await.expect("get");
    assert_eq!(ok(&got)["commandText"], "make test");

    // The refused resolve changed nothing: the admin decides, the requester hears of it.
    ok(&admin.request("exec.approval.resolve", Some(json!({"id": id, "decision": "deny"}))).await.expect("resolve"));
    let fin = mine.recv_response(&call, WAIT).await.expect("final answer");
    assert_eq!(ok(&fin)["decision"], "deny", "{fin}");
    let resolved = mine.recv_event("exec.approval.resolved", WAIT).await.expect("the requester hears");
    assert_eq!(resolved["payload"]["id"], id.as_str());
    ok(&other.request("exec.approval.list", Some(json!({}))).await.expect("a round trip after both events"));
    ok(&mine.request("exec.approval.list", Some(json!({}))).await.expect("a round trip"));
    let heard = |c: &RawClient, event: &str| c.received().iter().any(|f| f["event"] == event);
    assert!(!heard(&other, "exec.approval.requested") && !heard(&other, "exec.approval.resolved"), "not its approval");
    assert!(!heard(&mine, "exec.approval.requested"), "the requester is not asked to review its own request");
}

// ---- the real node host and the real `openclaw approvals resolve` ----

fn peers_required() -> bool {
    std::env::var("CLAWGATE_REQUIRE_PEERS").is_ok_and(|v| !v.is_empty() && v != "0")
}

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

/// A running `openclaw node run` in its own process group (killed on drop).
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
            .process_group(0);
        let child = cmd.spawn().expect("spawning openclaw node run");
        NodeHost { child, _home: home }
    }
}

impl Drop for NodeHost {
    fn drop(&mut self) {
        if let Some(pid) = self.child.id() {
            let _ = std::process::Command::new("kill").args(["-KILL", "--", &format!("-{pid}")]).status();
        }
    }
}

/// Polls `check` (every 50 ms) until it yields a value; panics naming `what` after `limit`.
async fn until<T>(limit: Duration, what: &str, mut check: impl AsyncFnMut() -> Option<T>) -> T {
    let deadline = tokio::time::Instant::now() + limit;
    loop {
        if let Some(v) = check().await {
            return v;
        }
        assert!(tokio::time::Instant::now() < deadline, "timed out after {limit:?} waiting until {what}");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_real_cli_allows_the_agents_command_on_the_real_node_host() {
    let test = "the_real_cli_allows_the_agents_command_on_the_real_node_host";
    let Some(peers) = peers(test).await else { return };
    let call = json!({"node": "cg-node", "command": "system.which", "params": {"bins": ["sh"]}}).to_string();
    let script = Script::new().turn(Turn::tool_call("node_invoke", call)).turn(Turn::text(["sh is there."]));
    let fake = FakeOpenAi::start(script).await.expect("fake model");
    let gw = gateway_with_model(&fake).await;
    let _host = NodeHost::start(&peers, &gw).await;
    let mut op = operator_with(
        &gw,
        &["operator.admin", "operator.read", "operator.write", "operator.approvals", "operator.pairing"],
    )
    .await;

    // The node host connects and is approved; then it is connected and approved.
    let request_id = until(Duration::from_secs(120), "the node host asks to be paired", async || {
        let res = op.request("node.pair.list", Some(json!({}))).await.expect("pair list");
        ok(&res)["pending"][0]["requestId"].as_str().map(str::to_owned)
    })
    .await;
    ok(&op.request("node.pair.approve", Some(json!({"requestId": request_id}))).await.expect("approve"));
    until(Duration::from_secs(60), "the node host is connected and approved", async || {
        let res = op.request("node.list", Some(json!({}))).await.expect("list");
        let nodes = ok(&res)["nodes"].as_array().cloned().unwrap_or_default();
        nodes
            .iter()
            .any(|n| n["displayName"] == "cg-node" && n["connected"] == true && n["approvalState"] == "approved")
            .then_some(())
    })
    .await;

    let res = op
        .request(
            "chat.send",
            Some(json!({"sessionKey": "agent:main:real", "message": "where is sh?", "idempotencyKey": "r1"})),
        )
        .await
        .expect("chat.send");
    let run = ok(&res)["runId"].as_str().expect("runId").to_owned();
    let requested = op.recv_event("exec.approval.requested", TURN_WAIT).await.expect("an exec approval");
    let id = requested["payload"]["id"].as_str().expect("id").to_owned();

    // `openclaw approvals pending` lists it; `openclaw approvals resolve <id> allow-once` allows it.
    let out = peers
        .cli(["approvals", "resolve", &id, "allow-once", "--json"])
        .arg("--url")
        .arg(gw.ws_url())
        .arg("--token")
        .arg(gw.expect_token())
        .run()
        .await
        .expect("openclaw approvals resolve ran");
    assert_eq!(out.code, Some(0), "{}", out.describe());
    let printed = out.json().unwrap_or_else(|e| panic!("JSON from {}: {e:#}", out.describe()));
    assert_eq!(printed["applied"], true, "{printed}");
    assert_eq!(printed["approval"]["decision"], "allow-once", "{printed}");

    let fin = final_chat(&mut op, &run).await;
    assert_eq!(fin["state"], "final", "{fin}");
    let told = tool_result_sent(&fake, 1);
    assert!(told.contains("/sh"), "the node host's answer reached the model: {told}");
}

/// Runs `openclaw <args> --url … --token …` against `gw`; its JSON output (it must exit 0).
async fn openclaw_json(peers: &OpenClawPeers, gw: &TestGateway, args: &[&str]) -> Value {
    let out = peers
        .cli(args.iter().copied())
        .arg("--url")
        .arg(gw.ws_url())
        .arg("--token")
        .arg(gw.expect_token())
        .run()
        .await
        .unwrap_or_else(|e| panic!("openclaw {args:?} ran: {e:#}"));
    assert_eq!(out.code, Some(0), "{}", out.describe());
    out.json().unwrap_or_else(|e| panic!("JSON from {}: {e:#}", out.describe()))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_real_cli_edits_a_nodes_allowlist_and_revokes_a_gateway_grant() {
    let test = "the_real_cli_edits_a_nodes_allowlist_and_revokes_a_gateway_grant";
    let Some(peers) = peers(test).await else { return };
    let gw = gateway().await;
    let identity = NodeIdentity::generate();
    let node_id = identity.device_id().to_owned();
    let _node = approved_node(&gw, &identity).await;
    let mut op = approver(&gw).await;

    // `approvals allowlist add --node <name>` writes the node's own policy (found by its name).
    let added = openclaw_json(
        &peers,
        &gw,
        &["approvals", "allowlist", "add", "--node", "raw-node", "/usr/bin/uname", "--json"],
    )
    .await;
    assert_eq!(allowlist(&added, "*")[0]["pattern"], "/usr/bin/uname", "{added}");
    let snap = op.request("exec.approvals.node.get", Some(json!({"nodeId": node_id}))).await.expect("get");
    assert_eq!(ok(&snap)["exists"], true);
    assert_eq!(allowlist(ok(&snap), "*")[0]["pattern"], "/usr/bin/uname", "{snap}");
    let shown = openclaw_json(&peers, &gw, &["approvals", "get", "--node", &node_id, "--json"]).await;
    assert_eq!(shown["hash"], ok(&snap)["hash"], "{shown}");
    let gateway_policy = op.request("exec.approvals.get", Some(json!({}))).await.expect("get");
    assert_eq!(ok(&gateway_policy)["exists"], false, "the gateway's policy is untouched");
    let removed = openclaw_json(
        &peers,
        &gw,
        &["approvals", "allowlist", "remove", "--node", "raw-node", "/usr/bin/uname", "--json"],
    )
    .await;
    assert_eq!(allowlist(&removed, "*").len(), 0, "{removed}");

    // A grant allow-always made for the default agent is revoked with `allowlist remove --gateway`.
    let file = json!({"version": 1, "agents": {"main": {"allowlist": [
        {"id": "g-1", "pattern": "system.which", "source": "allow-always", "commandText": "system.which", "lastUsedAt": 1}]}}});
    ok(&op.request("exec.approvals.set", Some(json!({"file": file}))).await.expect("set"));
    let shown = openclaw_json(&peers, &gw, &["approvals", "get", "--gateway", "--json"]).await;
    assert_eq!(allowlist(&shown, "main")[0]["id"], "g-1", "{shown}");
    openclaw_json(
        &peers,
        &gw,
        &["approvals", "allowlist", "remove", "--gateway", "--agent", "main", "system.which", "--json"],
    )
    .await;
    let snap = op.request("exec.approvals.get", Some(json!({}))).await.expect("get");
    assert!(allowlist(ok(&snap), "main").is_empty(), "revoked: {snap}");
    let grants = openclaw_json(&peers, &gw, &["approvals", "grants", "list", "--json"]).await;
    assert_eq!(grants, json!({"grants": []}), "no standing grants: they are allowlist entries here");
}
