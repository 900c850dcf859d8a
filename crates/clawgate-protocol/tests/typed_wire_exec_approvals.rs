//! The typed params and results of `exec.approval.*`, `exec.approvals.get|set`,
//! `exec.approvals.node.get|set` and
//! `approval.get|resolve` against the vendored OpenClaw schema (2026.9.6): results validate
//! against upstream's definitions, schema-valid params decode, and — upstream's params being
//! closed — an unknown field is refused.

mod support;

use serde_json::{Value, json};

use clawgate_protocol::methods::exec_approvals::*;
use support::schema::schema_errors;

fn enc<T: serde::Serialize>(value: &T) -> Value {
    serde_json::to_value(value).expect("serialises")
}

fn valid(definition: &str, value: &Value) {
    let errors = schema_errors(definition, value);
    assert!(errors.is_empty(), "not a valid {definition}: {errors:?}\n{value:#}");
}

fn snapshot(status: &'static str, decision: Option<&str>, reason: Option<&'static str>) -> ApprovalSnapshot {
    ApprovalSnapshot {
        id: "3f1c".into(),
        url_path: "/approve/3f1c".into(),
        created_at_ms: 1,
        expires_at_ms: 2,
        presentation: json!({"kind": "exec", "commandText": "system.which {\"bins\":[\"sh\"]}", "commandPreview": null,
                             "warningText": null, "host": "node", "nodeId": "n1", "agentId": "main",
                             "allowedDecisions": ["allow-once", "allow-always", "deny"]}),
        status,
        resolved_at_ms: (status != "pending").then_some(2),
        decision: decision.map(str::to_owned),
        reason,
        resolver: decision.map(|_| ApprovalResolver { kind: "device".into(), id: Some("d1".into()) }),
    }
}

#[test]
fn results_match_upstream_definitions() {
    let policy = ExecApprovalsSnapshot {
        path: "clawgate-store:exec_approval_policy".into(),
        exists: true,
        hash: "ab".into(),
        file: json!({"version": 1, "defaults": {"security": "allowlist", "ask": "on-miss"},
                     "agents": {"main": {"allowlist": [{"id": "e1", "pattern": "ls", "source": "allow-always",
                                                        "commandText": "ls", "lastUsedAt": 5}]}}}),
        resolved_defaults: ExecResolvedDefaults {
            security: "allowlist".into(),
            ask: "on-miss".into(),
            ask_fallback: "deny".into(),
            auto_allow_skills: false,
        },
    };
    valid("ExecApprovalsSnapshot", &enc(&policy));
    let grant = ExecApprovalStandingGrant {
        grant_id: "g1".into(),
        minted_by_approval_id: "a1".into(),
        agent_id: "main".into(),
        cron_job_id: "job-1".into(),
        cron_job_name: None,
        command: "uptime".into(),
        cwd: None,
        created_at_ms: 1,
        expires_at_ms: None,
        revoked_at_ms: Some(2),
        revoked_by: Some("op".into()),
        last_used_at_ms: None,
        use_count: 0,
    };
    valid("ExecApprovalGrantsListResult", &enc(&ExecApprovalGrantsListResult { grants: vec![grant] }));
    valid("ExecApprovalGrantsListResult", &enc(&ExecApprovalGrantsListResult::default()));
    valid("ExecApprovalGrantsRevokeResult", &enc(&ExecApprovalGrantsRevokeResult { outcome: "not-found" }));
    // A node's own policy has the same shape: the file form of `ExecApprovalsNodeSnapshot`.
    let node_policy = ExecApprovalsSnapshot { path: "clawgate-store:exec_node_policies/n1".into(), ..policy };
    valid("ExecApprovalsNodeSnapshot", &enc(&node_policy));
    for s in [
        snapshot("pending", None, None),
        snapshot("allowed", Some("allow-always"), Some("user")),
        snapshot("denied", Some("deny"), Some("malformed-verdict")),
        snapshot("expired", None, Some("timeout")),
    ] {
        valid("ApprovalGetResult", &enc(&ApprovalGetResult { approval: s.clone() }));
        if s.status != "pending" {
            valid("ApprovalResolveResult", &enc(&ApprovalResolveResult { applied: true, approval: s }));
        }
    }
}

#[test]
fn schema_valid_params_decode_and_unknown_fields_are_refused() {
    let request = json!({"id": "r1", "command": "ls -la", "commandArgv": ["ls", "-la"], "cwd": null,
        "host": "gateway", "agentId": "main", "sessionKey": "agent:main:x", "timeoutMs": 1000, "twoPhase": true,
        "env": {"A": "1"}, "unavailableDecisions": ["allow-always"], "turnSourceThreadId": 7});
    valid("ExecApprovalRequestParams", &request);
    let p: ExecApprovalRequestParams = serde_json::from_value(request).expect("decodes");
    assert_eq!((p.command.as_deref(), p.timeout_ms, p.two_phase), (Some("ls -la"), Some(1000), Some(true)));

    let resolve = json!({"id": "r1", "decision": "allow-once", "grantExpiresInDays": 3});
    valid("ExecApprovalResolveParams", &resolve);
    let p: ExecApprovalResolveParams = serde_json::from_value(resolve).expect("decodes");
    assert_eq!(p.decision.as_deref(), Some("allow-once"));

    let generic = json!({"id": "r1", "kind": "exec", "decision": "deny"});
    valid("ApprovalResolveParams", &generic);
    let p: ApprovalResolveParams = serde_json::from_value(generic).expect("decodes");
    assert_eq!(p.kind.as_deref(), Some("exec"));

    let set = json!({"file": {"version": 1, "agents": {"main": {"ask": "always"}}}, "baseHash": "ab"});
    valid("ExecApprovalsSetParams", &set);
    let p: ExecApprovalsSetParams = serde_json::from_value(set).expect("decodes");
    assert_eq!(p.base_hash.as_deref(), Some("ab"));

    let node_set = json!({"nodeId": "n1", "file": {"version": 1, "defaults": {"security": "full"}}, "baseHash": "cd"});
    valid("ExecApprovalsNodeSetParams", &node_set);
    let p: ExecApprovalsNodeSetParams = serde_json::from_value(node_set).expect("decodes");
    assert_eq!((p.node_id.as_deref(), p.base_hash.as_deref(), p.native), (Some("n1"), Some("cd"), None));
    valid("ExecApprovalsNodeGetParams", &json!({"nodeId": "n1"}));
    let p: ExecApprovalsNodeGetParams = serde_json::from_value(json!({"nodeId": "n1"})).expect("decodes");
    assert_eq!(p.node_id.as_deref(), Some("n1"));

    valid("ExecApprovalGrantsListParams", &json!({"limit": 5}));
    let p: ExecApprovalGrantsListParams = serde_json::from_value(json!({"limit": 5})).expect("decodes");
    assert_eq!(p.limit, Some(5));
    valid("ExecApprovalGrantsRevokeParams", &json!({"grantId": "g1"}));
    let p: ExecApprovalGrantsRevokeParams = serde_json::from_value(json!({"grantId": "g1"})).expect("decodes");
    assert_eq!(p.grant_id.as_deref(), Some("g1"));

    valid("ExecApprovalGetParams", &json!({"id": "r1"}));
    serde_json::from_value::<ExecApprovalIdParams>(json!({"id": "r1"})).expect("decodes");
    serde_json::from_value::<ApprovalGetParams>(json!({"id": "r1"})).expect("decodes");
    serde_json::from_value::<ExecApprovalsGetParams>(json!({})).expect("decodes");

    for (what, bad) in [
        ("request", serde_json::from_value::<ExecApprovalRequestParams>(json!({"command": "ls", "x": 1})).err()),
        ("resolve", serde_json::from_value::<ExecApprovalResolveParams>(json!({"id": "a", "x": 1})).err()),
        ("get", serde_json::from_value::<ExecApprovalIdParams>(json!({"id": "a", "x": 1})).err()),
        ("policy get", serde_json::from_value::<ExecApprovalsGetParams>(json!({"x": 1})).err()),
        ("node get", serde_json::from_value::<ExecApprovalsNodeGetParams>(json!({"nodeId": "n", "x": 1})).err()),
        ("node set", serde_json::from_value::<ExecApprovalsNodeSetParams>(json!({"nodeId": "n", "x": 1})).err()),
        ("approval.resolve", serde_json::from_value::<ApprovalResolveParams>(json!({"id": "a", "x": 1})).err()),
    ] {
        let e = bad.unwrap_or_else(|| panic!("{what}: an unknown field must be refused"));
        assert!(e.to_string().contains("unknown field `x`"), "{what}: {e}");
    }
}
