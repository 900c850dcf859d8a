//! The typed params and results of the rest of the Control UI's start-up methods
//! (`methods::ui_startup`) against the vendored OpenClaw schema, and snapshots of their shapes.
//! Where upstream names a definition differently from the method (`board.get` answers a
//! `BoardSnapshot`, `sessions.github.options` is `SessionGitHubOptions…`), the examples are
//! checked against that definition by name.

mod support;

use serde_json::{Value, json};

use clawgate_protocol::methods::ui_startup::*;
use support::schema::{Decode, check_params, check_results, decoder, schema_errors};

fn enc<T: serde::Serialize>(value: &T) -> Value {
    serde_json::to_value(value).expect("serialises")
}

fn system_info_example() -> SystemInfoResult {
    SystemInfoResult {
        machine_name: "vm".into(),
        hostname: "vm".into(),
        platform: "linux".into(),
        release: "6.18.44".into(),
        arch: "x64".into(),
        os_label: "Linux 6.18.44".into(),
        node_version: "clawgate 0.1.0 (Rust)".into(),
        pid: 4242,
        process_instance_id: "12f4f011-2d9e-4d31-972e-7010365a9ef5".into(),
        uptime_ms: 860_572,
        cpu_count: 2,
        cpu_model: Some("Intel(R) Xeon(R) CPU @ 2.20GHz".into()),
        load_average: Some([0.5, 0.25, 0.125]),
        memory_total_bytes: 8_241_737_728,
        memory_free_bytes: 4_120_870_912,
    }
}

fn result_examples() -> Vec<(&'static str, &'static str, Value)> {
    vec![
        (
            "plugins.controlUi.list",
            "plugins_control_ui_list",
            enc(&PluginsControlUiListResult { revision: "none".into(), plugins: vec![], diagnostics: vec![] }),
        ),
        (
            "board.get",
            "board_get",
            enc(&BoardSnapshot { session_key: "agent:main:main".into(), revision: 0, tabs: vec![], widgets: vec![] }),
        ),
        ("projects.list", "projects_list", enc(&ProjectsListResult { projects: vec![], recents: vec![] })),
        (
            "sessions.viewers.set",
            "sessions_viewers_set",
            enc(&SessionsViewersSetResult { session_keys: vec!["agent:main:main".into()] }),
        ),
        (
            "sessions.github.options",
            "sessions_github_options",
            enc(&SessionsGithubOptionsResult {
                personal: None,
                shared: None,
                pending_personal: None,
                latest_shared: None,
            }),
        ),
        (
            "session.members.listEvidence",
            "session_members_list_evidence",
            enc(&SessionMembersListEvidenceResult {
                session_key: "agent:main:main".into(),
                members: vec![],
                identities: vec![],
                role: SessionRole::Admin,
                allowed_visibilities: vec![],
            }),
        ),
        (
            "controlUi.sessionPullRequests.subscribe",
            "session_pull_requests_subscribe",
            enc(&SessionPullRequestsSubscribeResult { subscribed: false }),
        ),
        ("users.prefs.get", "users_prefs_get", enc(&UsersPrefsResult::NoDurableIdentity)),
        ("users.prefs.set", "users_prefs_set", enc(&UsersPrefsResult::NoDurableIdentity)),
        (
            "sessions.groups.list",
            "sessions_groups_list",
            enc(&SessionsGroupsListResult { groups: vec![], section_order: vec![] }),
        ),
        (
            "sessions.groups.defaults",
            "sessions_groups_defaults",
            enc(&SessionsGroupsDefaultsResult { defaults: vec![] }),
        ),
        ("system.info", "system_info", enc(&system_info_example())),
        (
            "session.discussion.info",
            "session_discussion_info",
            enc(&SessionDiscussionInfoResult { state: DiscussionState::None }),
        ),
        (
            "mentions.list",
            "mentions_list",
            enc(&MentionsListResult {
                gateway_instance_id: "12f4f011-2d9e-4d31-972e-7010365a9ef5".into(),
                revision: 0,
                items: vec![],
            }),
        ),
        ("sessions.catalog.list", "sessions_catalog_list", enc(&SessionsCatalogListResult { catalogs: vec![] })),
        (
            "plugins.list",
            "plugins_list",
            enc(&PluginsListResult { plugins: vec![], diagnostics: vec![], mutation_allowed: false }),
        ),
        ("plugins.catalog.browse", "plugins_catalog_browse", enc(&PluginsCatalogBrowseResult { items: vec![] })),
        (
            "diagnostics.lanes",
            "diagnostics_lanes",
            enc(&DiagnosticsLanesResult {
                lanes: vec![LaneRow {
                    lane: "session:agent:main:main".into(),
                    active_count: 1,
                    max_concurrent: 1,
                    queued_count: 2,
                }],
            }),
        ),
    ]
}

/// Upstream has no `<Method>Result` under the method's own name for these; the ones defined
/// under another name are checked in [`results_defined_under_another_name_match_it`].
const RESULTS_WITHOUT_DEFINITION: &[&str] = &[
    "plugins.controlUi.list",
    "board.get",
    "sessions.viewers.set",
    "sessions.github.options",
    "controlUi.sessionPullRequests.subscribe",
    "diagnostics.lanes",
];

#[test]
fn every_typed_result_matches_its_schema_definition() {
    check_results(&result_examples(), RESULTS_WITHOUT_DEFINITION);
}

#[test]
fn results_defined_under_another_name_match_it() {
    let examples = result_examples();
    let value =
        |method: &str| examples.iter().find(|(m, _, _)| *m == method).map(|(_, _, v)| v.clone()).expect("example");
    for (method, definition) in
        [("board.get", "BoardSnapshot"), ("sessions.github.options", "SessionGitHubOptionsResult")]
    {
        assert_eq!(schema_errors(definition, &value(method)), Vec::<String>::new(), "{method} as {definition}");
    }
    // The two captured answers of upstream without a definition, as the UI read them.
    assert_eq!(value("plugins.controlUi.list")["plugins"], json!([]));
    assert_eq!(value("controlUi.sessionPullRequests.subscribe"), json!({"subscribed": false}));
}

fn params_examples() -> Vec<(&'static str, Value, Decode, bool)> {
    let session = json!({"sessionKey": "agent:main:main", "agentId": "main"});
    vec![
        ("plugins.controlUi.list", json!({}), decoder::<NoParams>, true),
        ("board.get", session.clone(), decoder::<SessionRefParams>, true),
        ("projects.list", json!({}), decoder::<ProjectsListParams>, true),
        ("projects.list", json!({"includeObserved": true}), decoder::<ProjectsListParams>, true),
        ("users.prefs.get", json!({"keys": ["ui.theme", "ui.accent"]}), decoder::<UsersPrefsGetParams>, true),
        ("users.prefs.set", json!({"entries": {"ui.theme": "dark"}}), decoder::<UsersPrefsSetParams>, true),
        ("sessions.groups.list", json!({}), decoder::<NoParams>, true),
        ("sessions.groups.defaults", json!({}), decoder::<NoParams>, true),
        ("system.info", json!({}), decoder::<NoParams>, true),
        ("session.discussion.info", session, decoder::<SessionRefParams>, true),
        ("mentions.list", json!({}), decoder::<NoParams>, true),
        ("plugins.list", json!({}), decoder::<NoParams>, true),
        (
            "plugins.catalog.browse",
            json!({"searchSource": "openclaw-control-ui", "intent": "all", "pageSize": 24}),
            decoder::<PluginsCatalogBrowseParams>,
            true,
        ),
        (
            "sessions.catalog.list",
            json!({"agentId": "main", "limitPerHost": 40, "progressId": "e61a2512", "allowPartialResults": true}),
            decoder::<SessionsCatalogListParams>,
            true,
        ),
    ]
}

#[test]
fn every_params_type_decodes_schema_valid_params_and_refuses_unknown_fields() {
    check_params(&params_examples());
}

#[test]
fn params_without_a_definition_of_their_own_are_closed_too() {
    // As the UI sends them (`controlui-chromium.jsonl`); upstream validates these with closed
    // TypeBox objects as well.
    let cases: [(Value, Decode, Option<&str>); 4] = [
        (
            json!({"sessionKey": "agent:main:main", "agentId": "main"}),
            decoder::<SessionsGithubOptionsParams>,
            Some("SessionGitHubOptionsParams"),
        ),
        (json!({"sessionKey": "agent:main:main", "agentId": "main"}), decoder::<SessionRefParams>, None),
        (json!({"sessionKeys": ["agent:main:main"]}), decoder::<SessionsViewersSetParams>, None),
        (json!({"sessionKeys": []}), decoder::<SessionPullRequestsSubscribeParams>, None),
    ];
    for (example, decode, definition) in cases {
        if let Some(definition) = definition {
            assert_eq!(schema_errors(definition, &example), Vec::<String>::new(), "{example}");
        }
        decode(&example).unwrap_or_else(|e| panic!("{example}: {e}"));
        let mut extra = example.clone();
        extra["unexpected"] = json!(1);
        assert!(decode(&extra).is_err(), "{extra} was taken");
    }
}

#[test]
fn result_shapes() {
    for (_, example, value) in result_examples() {
        insta::assert_json_snapshot!(example, value);
    }
}
