//! The typed method params and results (`clawgate_protocol::methods::*`) against the vendored
//! OpenClaw schema, and snapshots of their shapes.
//!
//! Every typed result is serialised from an example and, when upstream defines
//! `<Method>Result`, validated against it; every params type decodes a schema-valid example and,
//! where the schema is closed and clawgate refuses unknown params, refuses an extra field as the
//! schema does. A method with no upstream definition is listed as such, so adding a type for a
//! method that has one cannot skip the check.
//!
//! The schema is the copy vendored in the testkit (`clawgate-testkit/data/`), read from the
//! workspace: this crate cannot depend on the testkit, and one vendored copy is enough.

mod support;

use serde_json::{Map, Value, json};

use clawgate_protocol::methods::devices::*;
use clawgate_protocol::methods::health::*;
use clawgate_protocol::methods::logs::*;
use clawgate_protocol::methods::system::*;
use support::schema::{Decode, check_params, check_results, decodes, schema_errors};

/// Methods whose results upstream does not define; their shapes are pinned by the snapshots.
const RESULTS_WITHOUT_DEFINITION: &[&str] = &[
    "device.pair.list",
    "device.pair.approve",
    "device.pair.reject",
    "device.pair.remove",
    "device.token.revoke",
    "health",
    "status",
    "system-presence",
    "system-event",
    "last-heartbeat",
    "set-heartbeats",
    "wake",
];

fn device() -> PairedDeviceEntry {
    PairedDeviceEntry {
        device_id: "dev-1".into(),
        public_key: "pk".into(),
        display_name: Some("Laptop".into()),
        platform: None,
        device_family: None,
        client_id: Some("cli".into()),
        client_mode: Some("cli".into()),
        roles: vec!["operator".into()],
        scopes: vec!["operator.read".into()],
        approved_via: "operator".into(),
        created_at_ms: 1_700_000_000_000,
        approved_at_ms: 1_700_000_000_500,
        last_seen_at_ms: None,
    }
}

/// `(method, example name, serialised example)` for every typed result.
fn result_examples() -> Vec<(&'static str, &'static str, Value)> {
    let request = DevicePairRequested {
        request_id: "req-1".into(),
        device_id: "dev-1".into(),
        public_key: "pk".into(),
        display_name: Some("Laptop".into()),
        platform: None,
        device_family: None,
        client_id: Some("cli".into()),
        client_mode: None,
        role: "operator".into(),
        roles: vec!["operator".into()],
        scopes: vec!["operator.read".into()],
        remote_ip: Some("127.0.0.1".into()),
        silent: false,
        is_repair: false,
        ts: 1_700_000_000_000,
    };
    let rotated = |delivery| DeviceTokenRotateResult {
        device_id: "dev-1".into(),
        role: "operator".into(),
        scopes: vec!["operator.read".into()],
        rotated_at_ms: 1_700_000_000_000,
        delivery,
    };
    let mut snapshot = Map::new();
    snapshot.insert("ok".into(), json!(true));
    snapshot.insert("ts".into(), json!(1_700_000_000_000_i64));
    let status = |admin: bool| StatusResult {
        ok: true,
        version: "0.1.0".into(),
        boot_id: "boot".into(),
        pid: 42,
        started_at: "2023-11-14T22:13:20Z".into(),
        uptime_ms: 1000,
        listen: "127.0.0.1:18789".into(),
        auth_mode: "token".into(),
        connections: StatusConnections { total: 2, operators: 1, nodes: 1 },
        pairing: StatusPairing { pending: 1, paired: 3 },
        sessions: StatusSessions {
            count: 3,
            recent: vec![RecentSession { key: "agent:main:main".into(), updated_at: 1_700_000_000_000, age: 5 }],
        },
        runs: StatusRuns { in_flight: 1 },
        channels: json!({"telegram": {"configured": true, "running": true, "connected": false,
            "lastError": "getUpdates: 401", "accounts": {"default": {"configured": true, "running": true,
            "connected": false, "lastError": "getUpdates: 401", "healthState": "connecting"}}}})
        .as_object()
        .cloned()
        .unwrap(),
        channel_order: vec!["telegram".into()],
        heartbeat: LastHeartbeatResult(Some(
            json!({"ts": 1_700_000_000_000_i64, "status": "ok-token", "durationMs": 12}),
        )),
        heartbeat_seconds: 1800,
        store: StatusStore { ok: false, reason: Some("disk full: database or disk is full".into()) },
        worker_pools: StatusWorkerPools::default(),
        model_runtime: ModelRuntime::default(),
        restart_required: vec!["gateway.port".into()],
        state_dir: admin.then(|| "/state".into()),
        config_path: admin.then(|| "/state/clawgate.json5".into()),
        cluster: admin.then(|| StatusCluster {
            id: "boot".into(),
            mode: "shared".into(),
            heartbeat_ms: 2000,
            lease_ttl_ms: 10_000,
            gateways: vec![
                StatusClusterGateway {
                    id: "boot".into(),
                    addr: "127.0.0.1:18789".into(),
                    version: "0.1.0".into(),
                    started_at_ms: 1_700_000_000_000,
                    alive: true,
                    seen_ago_ms: 800,
                    is_self: true,
                },
                StatusClusterGateway {
                    id: "peer".into(),
                    addr: "10.0.0.2:18789".into(),
                    version: "0.1.0".into(),
                    started_at_ms: 1_700_000_000_000,
                    alive: false,
                    seen_ago_ms: 42_000,
                    is_self: false,
                },
            ],
            leases: vec![StatusClusterLease {
                name: "channel:telegram:default".into(),
                holder: "boot".into(),
                expires_in_ms: Some(7000),
            }],
            error: None,
        }),
    };
    vec![
        (
            "device.pair.list",
            "device_pair_list",
            enc(&DevicePairListResult { pending: vec![request], paired: vec![device()] }),
        ),
        (
            "device.pair.approve",
            "device_pair_approve",
            enc(&DevicePairApproveResult {
                request_id: "req-1".into(),
                device_id: "dev-1".into(),
                decision: PairDecision::Approved,
                device: device(),
            }),
        ),
        (
            "device.pair.reject",
            "device_pair_reject",
            enc(&DevicePairRejectResult {
                request_id: "req-1".into(),
                device_id: "dev-1".into(),
                decision: PairDecision::Rejected,
            }),
        ),
        (
            "device.pair.remove",
            "device_pair_remove",
            enc(&DevicePairRemoveResult { ok: true, device_id: "dev-1".into(), removed: true }),
        ),
        (
            "device.token.rotate",
            "device_token_rotate_in_band",
            enc(&rotated(TokenDelivery::InBand { token: "secret-token".into() })),
        ),
        ("device.token.rotate", "device_token_rotate_withheld", enc(&rotated(TokenDelivery::WithheldCrossDevice))),
        (
            "device.token.revoke",
            "device_token_revoke",
            enc(&DeviceTokenRevokeResult {
                ok: true,
                device_id: "dev-1".into(),
                role: "operator".into(),
                revoked: true,
            }),
        ),
        (
            "logs.tail",
            "logs_tail_plain",
            enc(&LogsTailResult {
                file: "/state/logs/clawgate.log".into(),
                cursor: 120,
                size: 120,
                lines: vec!["one".into(), "two".into()],
                truncated: false,
                reset: false,
                skipped_bytes: 0,
            }),
        ),
        (
            "logs.tail",
            "logs_tail_flags",
            enc(&LogsTailResult {
                file: "/state/logs/clawgate.log".into(),
                cursor: 4096,
                size: 8192,
                lines: vec![],
                truncated: true,
                reset: true,
                skipped_bytes: 100,
            }),
        ),
        ("health", "health", enc(&HealthResult { snapshot: snapshot.clone(), model_runtime: ModelRuntime::default() })),
        ("status", "status_admin", enc(&status(true))),
        ("status", "status_reader", enc(&status(false))),
        (
            "system-presence",
            "system_presence",
            enc(&SystemPresenceResult(vec![json!({"clientId": "cli", "roles": ["operator"], "ts": 1})])),
        ),
        ("system-event", "system_event", enc(&SystemEventResult { ok: true, ts: 1_700_000_000_000 })),
        ("last-heartbeat", "last_heartbeat", enc(&LastHeartbeatResult(None))),
        ("set-heartbeats", "set_heartbeats", enc(&SetHeartbeatsResult { ok: true, enabled: false })),
        ("wake", "wake", enc(&WakeResult { ok: true, mode: WakeMode::Now, event_outcome: "queued".into() })),
    ]
}

fn enc<T: serde::Serialize>(value: &T) -> Value {
    serde_json::to_value(value).expect("serialises")
}

#[test]
fn every_typed_result_matches_its_schema_definition() {
    check_results(&result_examples(), RESULTS_WITHOUT_DEFINITION);
}

#[test]
fn results_upstream_does_not_define_match_the_shapes_it_does() {
    // No `DevicePairListResult` upstream, but its pending requests are `DevicePairRequested[]`
    // (a closed object: nothing beside its fields) and `system-presence` is a `PresenceEntry[]`.
    let examples = result_examples();
    let get = |name: &str| examples.iter().find(|(_, n, _)| *n == name).map(|(_, _, v)| v.clone()).unwrap();
    for pending in get("device_pair_list")["pending"].as_array().unwrap() {
        let errors = schema_errors("DevicePairRequestedEvent", pending);
        assert!(errors.is_empty(), "{errors:?}");
    }
    for entry in get("system_presence").as_array().unwrap() {
        let errors = schema_errors("PresenceEntry", entry);
        assert!(errors.is_empty(), "{errors:?}");
    }
    assert_eq!(get("last_heartbeat"), Value::Null);
}

#[test]
fn rotate_result_carries_the_token_only_in_band() {
    let examples = result_examples();
    for (_, name, v) in examples.iter().filter(|(m, _, _)| *m == "device.token.rotate") {
        let in_band = v["tokenDelivery"] == "in-band";
        assert_eq!(v.get("token").is_some(), in_band, "{name}: {v}");
    }
    // The schema refuses a withheld token that still carries one, which the type cannot build.
    let mut bad = examples.iter().find(|(_, n, _)| *n == "device_token_rotate_withheld").unwrap().2.clone();
    bad["token"] = json!("leak");
    assert!(!schema_errors("DeviceTokenRotateResult", &bad).is_empty());
}

fn params_examples() -> Vec<(&'static str, Value, Decode, bool)> {
    use support::schema::decoder as d;
    vec![
        // `device.pair.list`, `status`, `system-presence`, `last-heartbeat`: any params are
        // ignored, as clawgate always did (upstream's `DevicePairListParams` is a closed `{}`).
        ("device.pair.list", json!({}), d::<DevicePairListParams>, false),
        ("device.pair.approve", json!({"requestId": "req-1"}), d::<DevicePairApproveParams>, true),
        ("device.pair.reject", json!({"requestId": "req-1"}), d::<DevicePairRejectParams>, true),
        ("device.pair.remove", json!({"deviceId": "dev-1"}), d::<DevicePairRemoveParams>, true),
        (
            "device.token.rotate",
            json!({"deviceId": "dev-1", "role": "operator", "scopes": ["operator.read"]}),
            d::<DeviceTokenRotateParams>,
            true,
        ),
        ("device.token.rotate", json!({"deviceId": "dev-1", "role": "operator"}), d::<DeviceTokenRotateParams>, true),
        ("device.token.revoke", json!({"deviceId": "dev-1", "role": "operator"}), d::<DeviceTokenRevokeParams>, true),
        ("logs.tail", json!({}), d::<LogsTailParams>, true),
        ("logs.tail", json!({"cursor": 0, "limit": 5000, "maxBytes": 1_000_000}), d::<LogsTailParams>, true),
        ("health", json!({"probe": true}), d::<HealthParams>, false),
        ("status", json!({}), d::<StatusParams>, false),
        ("system-presence", json!({}), d::<SystemPresenceParams>, false),
        ("system-event", json!({"text": "hi", "reason": "r", "tags": ["a"]}), d::<SystemEventParams>, false),
        ("last-heartbeat", json!({}), d::<LastHeartbeatParams>, false),
        ("set-heartbeats", json!({"enabled": false}), d::<SetHeartbeatsParams>, false),
        ("wake", json!({"mode": "now", "text": "check the disk"}), d::<WakeParams>, false),
        (
            "wake",
            json!({"mode": "next-heartbeat", "text": "x", "sessionKey": "agent:main:main", "agentId": "main"}),
            d::<WakeParams>,
            false,
        ),
    ]
}

#[test]
fn every_params_type_decodes_schema_valid_params_and_refuses_what_the_closed_schema_refuses() {
    check_params(&params_examples());
}

#[test]
fn decode_errors_keep_the_texts_clients_see_today() {
    // These messages reach clients as `invalid <method> params: <message>` (INVALID_REQUEST).
    let cases: [(Result<(), String>, &str); 5] = [
        (decodes::<DevicePairApproveParams>(&json!({})).map(|_| ()), "missing field `requestId`"),
        (
            decodes::<DevicePairApproveParams>(&json!({"requestId": "r", "x": 1})).map(|_| ()),
            "unknown field `x`, expected `requestId`",
        ),
        (
            decodes::<DevicePairRemoveParams>(&json!("x")).map(|_| ()),
            "invalid type: string \"x\", expected struct DeviceIdParams",
        ),
        (
            decodes::<DeviceTokenRotateParams>(&json!({"deviceId": "d", "role": "r", "scope": []})).map(|_| ()),
            "unknown field `scope`, expected one of `deviceId`, `role`, `scopes`",
        ),
        (decodes::<LogsTailParams>(&json!({"limit": -1})).map(|_| ()), "invalid value: integer `-1`, expected usize"),
    ];
    for (got, want) in cases {
        assert_eq!(got.unwrap_err(), want);
    }
    assert_eq!(decodes::<HealthParams>(&json!({"probe": "yes"})).unwrap(), HealthParams::default());
    assert_eq!(decodes::<HealthParams>(&json!([1])).unwrap(), HealthParams::default());
}

#[test]
fn result_shapes() {
    for (_, example, value) in result_examples() {
        insta::assert_json_snapshot!(example, value);
    }
}
