//! The typed params and results of the Control UI's start-up methods clawgate answers with an
//! empty state (`progressCard.get`, `sessions.observer.visibility`, `update.status`,
//! `exec.approval.list`, `openclaw.approval.list`, `talk.catalog`, `tasks.list`, …) against the
//! vendored OpenClaw schema, and snapshots of their shapes. Upstream's params are closed for all
//! three, and so are the types. `chat.startup` takes `chat.history`'s params.

mod support;

use serde_json::{Value, json};

use clawgate_protocol::methods::catalog::{CommandCategory, CommandEntry, CommandScope, CommandSource, ModelEntry};
use clawgate_protocol::methods::chat::ChatHistoryParams;
use clawgate_protocol::methods::control_ui::*;
use support::schema::{Decode, check_params, check_results};

fn enc<T: serde::Serialize>(value: &T) -> Value {
    serde_json::to_value(value).expect("serialises")
}

fn result_examples() -> Vec<(&'static str, &'static str, Value)> {
    vec![
        ("progressCard.get", "progress_card_get", enc(&ProgressCardGetResult { card: None })),
        (
            "sessions.observer.visibility",
            "sessions_observer_visibility",
            enc(&SessionsObserverVisibilityResult { ok: true }),
        ),
        ("update.status", "update_status", enc(&UpdateStatusResult { sentinel: None, update_available: None })),
        (
            "sessions.companion.state",
            "sessions_companion_state",
            enc(&SessionsCompanionStateResult { exchanges: vec![] }),
        ),
        ("exec.approval.list", "exec_approval_list", enc::<ExecApprovalListResult>(&vec![])),
        ("openclaw.approval.list", "openclaw_approval_list", enc::<OpenclawApprovalListResult>(&vec![])),
        ("talk.catalog", "talk_catalog", enc(&TalkCatalogResult::empty())),
        ("tasks.list", "tasks_list", enc(&TasksListResult { tasks: vec![] })),
        ("models.authStatus", "models_auth_status", enc(&auth_status_example())),
        ("sessions.branches.list", "sessions_branches_list", enc(&SessionsBranchesListResult { branches: vec![] })),
        ("chat.metadata", "chat_metadata", enc(&chat_metadata_example())),
    ]
}

fn auth_status_example() -> ModelsAuthStatusResult {
    let provider = |id: &str, key| ProviderAuth {
        provider: id.into(),
        display_name: id.into(),
        status: ProviderAuthState::Static,
        profiles: vec![],
        api_key: key,
    };
    ModelsAuthStatusResult {
        ts: 1_795_312_143_660,
        providers: vec![
            provider("fake", Some(ApiKeySource { source: ApiKeySourceKind::Config })),
            provider("ollama", None),
        ],
    }
}

fn chat_metadata_example() -> ChatMetadataResult {
    ChatMetadataResult {
        models: vec![ModelEntry {
            id: "fake-model".into(),
            name: "Fake Model".into(),
            provider: "fake".into(),
            context_window: Some(128_000),
        }],
        commands: vec![CommandEntry {
            name: "new".into(),
            native_name: "new".into(),
            text_aliases: vec!["/new".into()],
            description: "Start a new session (the old transcript is kept).".into(),
            category: CommandCategory::Session,
            source: CommandSource::Native,
            scope: CommandScope::Both,
            accepts_args: false,
        }],
        swarm_enabled: false,
    }
}

#[test]
fn chat_metadata_lists_models_and_commands_as_models_list_and_commands_list_do() {
    // Upstream defines no `ChatMetadataResult`; its entries are those of the two list methods.
    let value = enc(&chat_metadata_example());
    let models = json!({"models": value["models"]});
    assert_eq!(support::schema::schema_errors("ModelsListResult", &models), Vec::<String>::new());
    let commands = json!({"commands": value["commands"]});
    assert_eq!(support::schema::schema_errors("CommandsListResult", &commands), Vec::<String>::new());
}

#[test]
fn auth_status_has_what_the_control_ui_reads() {
    // No upstream definition: the UI iterates `providers[].profiles` and reads `status` (one of
    // expired, missing, expiring, ok, static), `apiKey.source` and `ts`.
    let value = enc(&auth_status_example());
    assert!(value["ts"].is_i64(), "{value}");
    for p in value["providers"].as_array().expect("providers") {
        assert!(p["profiles"].is_array() && p["provider"].is_string() && p["displayName"].is_string(), "{p}");
        assert!(
            ["expired", "missing", "expiring", "ok", "static"].contains(&p["status"].as_str().unwrap_or("")),
            "{p}"
        );
    }
    assert_eq!(value["providers"][0]["apiKey"], json!({"source": "config"}));
    assert!(value["providers"][1].get("apiKey").is_none(), "{value}");
}

/// Upstream defines no result for these; the UI's captured answers are bare arrays.
const RESULTS_WITHOUT_DEFINITION: &[&str] =
    &["exec.approval.list", "openclaw.approval.list", "models.authStatus", "chat.metadata"];

fn params_examples() -> Vec<(&'static str, Value, Decode, bool)> {
    use support::schema::decoder as d;
    vec![
        ("progressCard.get", json!({"sessionKey": "agent:main:main"}), d::<ProgressCardGetParams>, true),
        ("sessions.observer.visibility", json!({"visible": true}), d::<SessionsObserverVisibilityParams>, true),
        ("update.status", json!({}), d::<UpdateStatusParams>, true),
        ("update.status", json!({"refreshCheckout": false}), d::<UpdateStatusParams>, true),
        (
            "sessions.companion.state",
            json!({"sessionKey": "agent:main:main", "agentId": "main"}),
            d::<SessionsCompanionStateParams>,
            true,
        ),
        ("exec.approval.list", json!({}), d::<ExecApprovalListParams>, false),
        ("openclaw.approval.list", json!({}), d::<OpenclawApprovalListParams>, false),
        ("talk.catalog", json!({}), d::<TalkCatalogParams>, true),
        ("talk.catalog", json!({"provider": "openai", "model": "tts-1"}), d::<TalkCatalogParams>, true),
        (
            "tasks.list",
            json!({"sessionKey": "agent:main:main", "agentId": "main", "status": ["queued", "running"], "limit": 200}),
            d::<TasksListParams>,
            true,
        ),
        (
            "tasks.list",
            json!({"status": "timed_out", "sortBy": "endedAt", "limit": 100, "cursor": "c"}),
            d::<TasksListParams>,
            true,
        ),
        ("models.authStatus", json!({}), d::<ModelsAuthStatusParams>, true),
        ("sessions.branches.list", json!({"sessionKey": "agent:main:main"}), d::<SessionsBranchesListParams>, true),
        (
            "sessions.branches.list",
            json!({"sessionKey": "main", "agentId": "main"}),
            d::<SessionsBranchesListParams>,
            true,
        ),
        ("models.authStatus", json!({"agentId": "main", "refresh": true}), d::<ModelsAuthStatusParams>, true),
        ("chat.metadata", json!({"agentId": "main", "sessionKey": "agent:main:main"}), d::<ChatMetadataParams>, true),
        ("chat.metadata", json!({"agentId": "main", "authProfileId": "p1"}), d::<ChatMetadataParams>, true),
        // `chat.startup` is `chat.history` under another name (its params are the same branch).
        (
            "chat.startup",
            json!({"sessionKey": "agent:main:main", "limit": 80, "maxBytes": 262_144}),
            d::<ChatHistoryParams>,
            false,
        ),
    ]
}

#[test]
fn every_typed_result_matches_its_schema_definition() {
    check_results(&result_examples(), RESULTS_WITHOUT_DEFINITION);
}

#[test]
fn every_params_type_decodes_schema_valid_params_and_refuses_unknown_fields() {
    check_params(&params_examples());
}

#[test]
fn result_shapes() {
    for (_, example, value) in result_examples() {
        insta::assert_json_snapshot!(example, value);
    }
}
