//! The typed params and results of the chat, agent, sessions and catalog methods
//! (`clawgate_protocol::methods::{agent, chat, sessions, catalog}`) against the vendored OpenClaw
//! schema, and snapshots of their shapes. Same checks as `typed_wire.rs`: every result is
//! validated against upstream's `<Method>Result` when there is one, every params type decodes a
//! schema-valid example, and closed params refuse what the closed schema refuses.

mod support;

use serde_json::{Map, Value, json};

use clawgate_protocol::methods::agent::*;
use clawgate_protocol::methods::catalog::*;
use clawgate_protocol::methods::chat::*;
use clawgate_protocol::methods::sessions::*;
use support::schema::{Decode, check_params, check_results, decodes, schema_errors};

/// Methods whose results upstream does not define; their shapes are pinned by the snapshots
/// (and their parts checked against the definitions upstream has, below).
const RESULTS_WITHOUT_DEFINITION: &[&str] = &[
    "agent",
    "agent.wait",
    "agent.identity.get",
    "chat.send",
    "chat.history",
    "chat.abort",
    "chat.inject",
    "sessions.list",
    "sessions.describe",
    "sessions.preview",
    "sessions.patch",
    "sessions.reset",
    "sessions.subscribe",
    "sessions.messages.subscribe",
];

fn session() -> SessionEntry {
    let mut meta = Map::new();
    meta.insert("thinkingLevel".into(), json!("high"));
    SessionEntry {
        key: "agent:main:main".into(),
        session_id: "sess-1".into(),
        agent_id: "main".into(),
        kind: SessionKind::Direct,
        created_at: 1_700_000_000_000,
        updated_at: 1_700_000_001_000,
        last_interaction_at: Some(1_700_000_001_000),
        message_count: 2,
        archived: false,
        pinned: true,
        unread: false,
        is_main: true,
        label: Some("Main".into()),
        last_message: None,
        meta,
    }
}

fn unsaved(describe: bool) -> UnsavedSession {
    UnsavedSession {
        key: "agent:main:new".into(),
        agent_id: "main".into(),
        kind: describe.then_some(SessionKind::Direct),
        message_count: describe.then_some(0),
        archived: false,
        pinned: false,
        unread: describe.then_some(false),
        updated_at: None,
    }
}

fn history(stored: bool) -> ChatHistoryResult {
    ChatHistoryResult {
        session_key: "agent:main:main".into(),
        session_id: stored.then(|| "sess-1".into()),
        messages: if stored { vec![json!({"role": "user", "content": "hi", "timestamp": 1})] } else { vec![] },
        pending_inputs: PendingInputs::none(),
        has_more: stored,
        total_messages: if stored { 3 } else { 0 },
        defaults: HistoryDefaults { model_provider: "openai".into(), model: "gpt-x".into() },
        session_info: if stored {
            SessionInfo::Stored(Box::new(session()))
        } else {
            SessionInfo::Unsaved(unsaved(false))
        },
        next_before: stored.then_some(2),
        in_flight_run: stored.then(|| InFlightRun { run_id: "run-1".into() }),
    }
}

fn enc<T: serde::Serialize>(value: &T) -> Value {
    serde_json::to_value(value).expect("serialises")
}

/// `(method, example name, serialised example)` for every typed result.
fn result_examples() -> Vec<(&'static str, &'static str, Value)> {
    let command = CommandEntry {
        name: "new".into(),
        native_name: "new".into(),
        text_aliases: vec!["/new".into()],
        description: "Start a new session.".into(),
        category: CommandCategory::Session,
        source: CommandSource::Native,
        scope: CommandScope::Both,
        accepts_args: false,
    };
    let model = |context_window| ModelEntry {
        id: "gpt-x".into(),
        name: "GPT X".into(),
        provider: "openai".into(),
        context_window,
    };
    let usage = RunUsage { input: 42, output: 6, cache_read: 1, cache_write: 0, total_tokens: 48 };
    let agent_ok = AgentResult::Ok {
        run_id: "run-1".into(),
        summary: AgentSummary::Completed,
        result: AgentRunResult {
            payloads: vec![AgentPayload { text: "hello".into(), media_url: None }],
            meta: AgentRunMeta {
                duration_ms: 120,
                agent_meta: AgentMeta {
                    session_id: "sess-1".into(),
                    provider: "openai".into(),
                    model: "gpt-x".into(),
                    usage: Some(usage),
                },
            },
        },
    };
    let agent_timeout = AgentResult::Timeout {
        run_id: "run-1".into(),
        summary: AgentSummary::Aborted,
        stop_reason: "timeout".into(),
        timeout_phase: TimeoutPhase::Run,
        provider_started: true,
    };
    let mut with_last = session();
    with_last.last_message = Some(json!({"role": "assistant", "content": [{"type": "text", "text": "yo"}]}));
    vec![
        (
            "agent",
            "agent_accepted",
            enc(&AgentAccepted {
                run_id: "run-1".into(),
                session_key: "agent:main:main".into(),
                agent_id: "main".into(),
                status: AcceptedStatus::Accepted,
                accepted_at: 1_700_000_000_000,
            }),
        ),
        ("agent", "agent_ok", enc(&agent_ok)),
        ("agent", "agent_timeout", enc(&agent_timeout)),
        (
            "agent.wait",
            "agent_wait_ok",
            enc(&AgentWaitResult::Ok {
                run_id: "run-1".into(),
                ended_at: 1_700_000_000_000,
                stop_reason: "stop".into(),
                terminal_reply: TerminalReply { disposition: Disposition::Visible, text: "hello".into() },
            }),
        ),
        (
            "agent.wait",
            "agent_wait_timeout",
            enc(&AgentWaitResult::Timeout {
                run_id: "run-1".into(),
                ended_at: 1_700_000_000_000,
                stop_reason: "rpc".into(),
            }),
        ),
        (
            "agent.wait",
            "agent_wait_error",
            enc(&AgentWaitResult::Error {
                run_id: "run-1".into(),
                ended_at: Some(1_700_000_000_000),
                error: Some("no key".into()),
            }),
        ),
        (
            "agent.wait",
            "agent_wait_interrupted",
            enc(&AgentWaitResult::Error { run_id: "run-1".into(), ended_at: None, error: None }),
        ),
        ("agent.wait", "agent_wait_pending", enc(&AgentWaitResult::Pending { run_id: "run-1".into() })),
        (
            "agent.identity.get",
            "agent_identity_config",
            enc(&AgentIdentityGetResult {
                agent_id: "main".into(),
                name: "Molty".into(),
                name_source: NameSource::Config,
            }),
        ),
        (
            "agent.identity.get",
            "agent_identity_default",
            enc(&AgentIdentityGetResult {
                agent_id: "main".into(),
                name: "main".into(),
                name_source: NameSource::Default,
            }),
        ),
        (
            "agents.list",
            "agents_list",
            enc(&AgentsListResult {
                default_id: "main".into(),
                ownership: AgentOwnership::Sole,
                selection_required: false,
                main_key: "main".into(),
                scope: SessionScope::PerSender,
                agents: vec![
                    AgentEntry {
                        id: "main".into(),
                        kind: AgentKind::Agent,
                        name: Some("Molty".into()),
                        model: AgentModel { primary: "openai/gpt-x".into() },
                    },
                    AgentEntry {
                        id: "beta".into(),
                        kind: AgentKind::Agent,
                        name: None,
                        model: AgentModel { primary: "openai/gpt-y".into() },
                    },
                ],
            }),
        ),
        (
            "chat.send",
            "chat_send_started",
            enc(&ChatSendResult { run_id: "run-1".into(), status: ChatSendStatus::Started }),
        ),
        (
            "chat.send",
            "chat_send_in_flight",
            enc(&ChatSendResult { run_id: "run-1".into(), status: ChatSendStatus::InFlight }),
        ),
        ("chat.history", "chat_history_stored", enc(&history(true))),
        ("chat.history", "chat_history_unsaved", enc(&history(false))),
        ("chat.abort", "chat_abort", enc(&ChatAbortResult { ok: true, aborted: true, run_ids: vec!["run-1".into()] })),
        ("chat.inject", "chat_inject", enc(&ChatInjectResult { ok: true, message_id: "m-1".into() })),
        (
            "sessions.list",
            "sessions_list",
            enc(&SessionsListResult {
                ts: 1_700_000_002_000,
                count: 1,
                total_count: 3,
                limit_applied: 1,
                next_offset: Some(1),
                has_more: true,
                sessions: vec![with_last],
                defaults: None,
            }),
        ),
        (
            "sessions.list",
            "sessions_list_last_page",
            enc(&SessionsListResult {
                ts: 1_700_000_002_000,
                count: 0,
                total_count: 0,
                limit_applied: 50,
                next_offset: None,
                has_more: false,
                sessions: vec![],
                defaults: None,
            }),
        ),
        (
            "sessions.describe",
            "sessions_describe_stored",
            enc(&SessionsDescribeResult { session: SessionInfo::Stored(Box::new(session())) }),
        ),
        (
            "sessions.describe",
            "sessions_describe_unsaved",
            enc(&SessionsDescribeResult { session: SessionInfo::Unsaved(unsaved(true)) }),
        ),
        (
            "sessions.preview",
            "sessions_preview",
            enc(&SessionsPreviewResult {
                ts: 1_700_000_002_000,
                previews: vec![
                    SessionPreview {
                        key: "agent:main:main".into(),
                        status: PreviewStatus::Ok,
                        items: vec![PreviewItem { role: "user".into(), text: "hi".into(), seq: 1 }],
                    },
                    SessionPreview { key: "agent:main:x".into(), status: PreviewStatus::Missing, items: vec![] },
                    SessionPreview { key: "agent:main:y".into(), status: PreviewStatus::Empty, items: vec![] },
                ],
            }),
        ),
        (
            "sessions.patch",
            "sessions_patch",
            enc(&SessionsPatchResult { ok: true, key: "agent:main:main".into(), session: session() }),
        ),
        (
            "sessions.reset",
            "sessions_reset",
            enc(&SessionsResetResult {
                ok: true,
                key: "agent:main:main".into(),
                session_id: "sess-1".into(),
                session: session(),
            }),
        ),
        (
            "sessions.delete",
            "sessions_delete",
            enc(&SessionsDeleteResult { ok: true, key: "agent:main:main".into(), deleted: true, archived: vec![] }),
        ),
        ("sessions.subscribe", "sessions_subscribe", enc(&SessionsSubscribeResult { subscribed: true })),
        (
            "sessions.messages.subscribe",
            "sessions_messages_subscribe",
            enc(&SessionsMessagesResult { subscribed: true, key: "agent:main:main".into() }),
        ),
        ("commands.list", "commands_list", enc(&CommandsListResult { commands: vec![command] })),
        ("models.list", "models_list", enc(&ModelsListResult { models: vec![model(Some(128_000)), model(None)] })),
        ("question.list", "question_list", enc(&QuestionListResult { questions: vec![] })),
        ("taskSuggestions.list", "task_suggestions_list", enc(&TaskSuggestionsListResult { suggestions: vec![] })),
    ]
}

#[test]
fn every_typed_result_matches_its_schema_definition() {
    check_results(&result_examples(), RESULTS_WITHOUT_DEFINITION);
}

/// `(method, schema-valid example, decode into the params type, closed)`.
fn params_examples() -> Vec<(&'static str, Value, Decode, bool)> {
    use support::schema::decoder as d;
    vec![
        (
            "agent",
            json!({"message": "hi", "idempotencyKey": "k1", "sessionKey": "agent:main:x"}),
            d::<AgentParams>,
            false,
        ),
        ("agent", json!({"message": "hi", "idempotencyKey": "k1", "timeout": 30}), d::<AgentParams>, false),
        ("agent.wait", json!({"runId": "k1", "timeoutMs": 1000}), d::<AgentWaitParams>, false),
        ("agent.identity.get", json!({"agentId": "main"}), d::<AgentIdentityGetParams>, false),
        ("agents.list", json!({}), d::<AgentsListParams>, false),
        (
            "chat.send",
            json!({"sessionKey": "main", "message": "hi", "idempotencyKey": "k1", "timeoutMs": 5000}),
            d::<ChatSendParams>,
            false,
        ),
        ("chat.history", json!({"sessionKey": "main", "limit": 5}), d::<ChatHistoryParams>, false),
        ("chat.abort", json!({"sessionKey": "main", "runId": "k1"}), d::<ChatAbortParams>, true),
        ("chat.inject", json!({"sessionKey": "main", "message": "note", "label": "ops"}), d::<ChatInjectParams>, true),
        ("sessions.list", json!({"limit": 10, "archived": "all", "agentId": "main"}), d::<SessionsListParams>, false),
        ("sessions.describe", json!({"key": "main"}), d::<SessionsDescribeParams>, false),
        ("sessions.preview", json!({"keys": ["main"], "limit": 2, "maxChars": 40}), d::<SessionsPreviewParams>, false),
        ("sessions.patch", json!({"key": "main", "label": "x", "pinned": true}), d::<SessionsPatchParams>, false),
        ("sessions.reset", json!({"key": "main", "reason": "new"}), d::<SessionsResetParams>, false),
        ("sessions.delete", json!({"key": "main", "archivedOnly": true}), d::<SessionsDeleteParams>, false),
        ("sessions.subscribe", json!({}), d::<SessionsSubscribeParams>, false),
        ("sessions.messages.subscribe", json!({"key": "agent:main:main"}), d::<SessionsMessagesSubscribeParams>, false),
        (
            "sessions.messages.unsubscribe",
            json!({"key": "agent:main:main"}),
            d::<SessionsMessagesUnsubscribeParams>,
            false,
        ),
        // The catalog methods ignore their params, as clawgate always did.
        ("commands.list", json!({"sessionKey": "main", "scope": "text"}), d::<CommandsListParams>, false),
        ("models.list", json!({"agentId": "main"}), d::<ModelsListParams>, false),
        ("question.list", json!({}), d::<QuestionListParams>, false),
        ("taskSuggestions.list", json!({"sessionKey": "main"}), d::<TaskSuggestionsListParams>, false),
    ]
}

#[test]
fn every_params_type_decodes_schema_valid_params_and_refuses_what_the_closed_schema_refuses() {
    check_params(&params_examples());
}

#[test]
fn results_upstream_does_not_define_match_the_shapes_it_does() {
    let examples = result_examples();
    let get = |name: &str| examples.iter().find(|(_, n, _)| *n == name).map(|(_, _, v)| v.clone()).unwrap();
    let valid = |def: &str, v: &Value| {
        let errors = schema_errors(def, v);
        assert!(errors.is_empty(), "not a {def}: {errors:?}\n{v:#}");
    };
    // A stored session is a `SessionRow` wherever it appears.
    for name in ["sessions_patch", "sessions_reset", "sessions_describe_stored"] {
        valid("SessionRow", &get(name)["session"]);
    }
    valid("SessionRow", &get("sessions_list")["sessions"][0]);
    valid("SessionRow", &get("chat_history_stored")["sessionInfo"]);
    valid("ChatPendingInputsPage", &get("chat_history_stored")["pendingInputs"]);
    for name in ["agent_identity_config", "agent_identity_default"] {
        valid("AgentIdentityResult", &get(name));
    }
    // The session-lists' paging facts keep their names.
    let list = get("sessions_list");
    for k in ["ts", "count", "totalCount", "limitApplied", "nextOffset", "hasMore"] {
        assert!(list.get(k).is_some(), "{k}");
    }
    assert_eq!(get("sessions_list_last_page")["nextOffset"], Value::Null);
    // An unsaved session in chat.history carries only what clients read of it.
    assert_eq!(
        get("chat_history_unsaved")["sessionInfo"],
        json!({"key": "agent:main:new", "agentId": "main", "archived": false, "pinned": false, "updatedAt": null})
    );
    assert!(get("chat_history_unsaved").get("sessionId").is_none());
}

#[test]
fn decode_errors_keep_the_texts_clients_see_today() {
    // These messages reach clients as `invalid <method> params: <message>` (INVALID_REQUEST).
    let cases: Vec<(Result<(), String>, &str)> = vec![
        (decodes::<AgentParams>(&json!({})).map(drop), "must have required property 'message'"),
        (decodes::<AgentParams>(&json!({"message": ""})).map(drop), "must have required property 'message'"),
        (decodes::<AgentParams>(&json!({"message": "hi"})).map(drop), "must have required property 'idempotencyKey'"),
        (decodes::<AgentWaitParams>(&json!({"runId": 7})).map(drop), "must have required property 'runId'"),
        (decodes::<SessionsPatchParams>(&json!("x")).map(drop), "must be object"),
        (decodes::<SessionsPatchParams>(&json!({"key": 5})).map(drop), "must have required property 'key'"),
        (
            decodes::<SessionsMessagesParams>(&json!({"key": 5, "sessionKey": "k"})).map(drop),
            "must have required property 'key'",
        ),
        (
            decodes::<ChatAbortParams>(&json!({"sessionKey": "k", "x": 1})).map(drop),
            "unknown field `x`, expected one of `sessionKey`, `agentId`, `runId`, `preserveSideRuns`",
        ),
        (
            decodes::<ChatInjectParams>(&json!("x")).map(drop),
            "invalid type: string \"x\", expected struct InjectParams",
        ),
        (decodes::<ChatHistoryParams>(&json!({})).map(drop), "missing field `sessionKey`"),
        // Params that are not an object name the params type, never a private helper.
        (decodes::<AgentParams>(&json!("x")).map(drop), "invalid type: string \"x\", expected struct AgentParams"),
        (decodes::<AgentWaitParams>(&json!(1)).map(drop), "invalid type: integer `1`, expected struct AgentWaitParams"),
        (
            decodes::<SessionsDescribeParams>(&json!(5)).map(drop),
            "invalid type: integer `5`, expected struct KeyParams",
        ),
    ];
    for (got, want) in cases {
        assert_eq!(got.unwrap_err(), want);
    }
}

#[test]
fn lenient_fields_read_only_their_json_type_as_they_always_did() {
    let p: ChatSendParams =
        decodes(&json!({"sessionKey": 5, "message": "hi", "timeoutMs": "9", "suppressCommandInterpretation": 1}))
            .unwrap();
    assert_eq!(p, ChatSendParams { message: Some("hi".into()), ..ChatSendParams::default() });
    let p: AgentParams =
        decodes(&json!({"message": "hi", "idempotencyKey": "k", "sessionKey": "", "timeout": 0})).unwrap();
    assert_eq!((p.session_key, p.timeout), (None, None));
    let p: SessionsMessagesParams = decodes(&json!({"sessionKey": "k"})).unwrap();
    assert_eq!(p.key, "k");
    let p: SessionsPatchParams = decodes(
        &json!({"key": "k", "agentId": 3, "expectedSessionId": "s", "expectedMarkedUnreadAt": 1, "label": null}),
    )
    .unwrap();
    assert_eq!((p.agent_id, p.expected_session_id.as_deref()), (None, Some("s")));
    assert_eq!(Value::Object(p.patch), json!({"label": null}));
    let p: SessionsListParams = decodes(&json!({"archived": "all"})).unwrap();
    assert!(p.archived.0);
    let p: SessionsListParams = decodes(&json!({"archived": "yes"})).unwrap();
    assert!(!p.archived.0);
}

#[test]
fn result_shapes() {
    for (_, example, value) in result_examples() {
        insta::assert_json_snapshot!(example, value);
    }
}
