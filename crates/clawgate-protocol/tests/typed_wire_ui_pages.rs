//! The typed params and results of what the Control UI's usage, skills, systems and config pages
//! call (`methods::session_usage`, `methods::ui_pages`) against the vendored OpenClaw schema, and
//! snapshots of their shapes. Every params type is closed, as upstream's definitions are; of the
//! results only `skills.search` and `environments.list` have an upstream definition.

mod support;

use serde_json::{Value, json};

use clawgate_protocol::methods::session_usage::*;
use clawgate_protocol::methods::ui_pages::*;
use support::schema::{Decode, check_params, check_results, decoder};

fn enc<T: serde::Serialize>(value: &T) -> Value {
    serde_json::to_value(value).expect("serialises")
}

fn totals(turns: u64, input: u64, output: u64, cost: f64) -> CostUsageTotals {
    CostUsageTotals {
        input,
        output,
        total_tokens: input + output,
        total_cost: cost,
        input_cost: cost,
        turns,
        ..CostUsageTotals::default()
    }
}

fn sessions_usage_example() -> SessionsUsageResult {
    let t = totals(2, 2_000, 400, 0.004);
    let model = ModelUsage { provider: Some("alpha".into()), model: Some("m1".into()), count: 2, totals: t.clone() };
    let day = DailyModelUsage {
        date: "2026-03-01".into(),
        provider: "alpha".into(),
        model: "m1".into(),
        tokens: 2_400,
        cost: 0.004,
        count: 2,
    };
    let usage = SessionCostSummary {
        session_id: "3f1c7f8e-6f2b-4c55-9d1e-2f0a9c1b7d10".into(),
        last_activity: 1_772_359_200_000,
        activity_dates: vec!["2026-03-01".into()],
        daily_breakdown: vec![DailyBreakdown {
            date: "2026-03-01".into(),
            tokens: 2_400,
            cost: 0.004,
            totals: t.clone(),
        }],
        daily_message_counts: vec![DailyMessageCounts { date: "2026-03-01".into(), counts: MessageCounts::turns(2) }],
        utc_quarter_hour_message_counts: vec![QuarterHourMessages {
            date: "2026-03-01".into(),
            quarter_index: 40,
            counts: MessageCounts::turns(2),
        }],
        utc_quarter_hour_token_usage: vec![QuarterHourTokens {
            date: "2026-03-01".into(),
            quarter_index: 40,
            input: 2_000,
            output: 400,
            cache_read: 0,
            cache_write: 0,
            total_tokens: 2_400,
            total_cost: 0.004,
        }],
        daily_model_usage: vec![day.clone()],
        message_counts: MessageCounts::turns(2),
        model_usage: vec![model.clone()],
        totals: t.clone(),
    };
    SessionsUsageResult {
        updated_at: 1_772_359_300_000,
        start_date: "2026-03-01".into(),
        end_date: "2026-03-01".into(),
        sessions: vec![SessionUsageEntry {
            key: "agent:main:main".into(),
            label: Some("Daily notes".into()),
            session_id: usage.session_id.clone(),
            scope: UsageScope::Family,
            session_family_key: Some("agent:main:main".into()),
            current_session_id: Some(usage.session_id.clone()),
            included_session_ids: Some(vec![usage.session_id.clone()]),
            historical_instance_count: Some(1),
            updated_at: 1_772_359_200_000,
            agent_id: "main".into(),
            creator_key: "[\"unknown\"]".into(),
            model_override: None,
            usage: Some(usage),
            has_context_weight: false,
            context_weight: Some(None),
        }],
        totals: t.clone(),
        aggregates: UsageAggregates {
            session_count: 1,
            messages: MessageCounts::turns(2),
            tools: ToolsSummary::default(),
            by_model: vec![model.clone()],
            by_provider: vec![ModelUsage { model: None, ..model }],
            by_agent: vec![AgentUsage { agent_id: "main".into(), totals: t.clone() }],
            by_channel: vec![],
            by_creator: vec![CreatorUsage {
                key: "[\"unknown\"]".into(),
                totals: t.clone(),
                session_count: 1,
                daily: vec![DatedTotals { date: "2026-03-01".into(), totals: t.clone() }],
                session_activity: vec![SessionActivity { dates: vec!["2026-03-01".into()], session_count: 1 }],
            }],
            cost_daily: vec![DatedTotals { date: "2026-03-01".into(), totals: t }],
            daily_latency: vec![],
            model_daily: vec![day],
            daily: vec![DailySummary {
                date: "2026-03-01".into(),
                tokens: 2_400,
                cost: 0.004,
                messages: 2,
                tool_calls: 0,
                errors: 0,
            }],
        },
        creator_options: vec![CreatorOption { key: "[\"unknown\"]".into() }],
        cache_status: UsageCacheStatus::FRESH,
    }
}

fn environments_example() -> EnvironmentsListResult {
    EnvironmentsListResult {
        environments: vec![
            EnvironmentSummary {
                id: "gateway".into(),
                kind: "local",
                label: Some("Gateway local".into()),
                status: EnvironmentStatus::Available,
                platform: Some("linux".into()),
                session_host: true,
                last_connected_at_ms: None,
                last_disconnected_at_ms: None,
                trust: EnvironmentTrust::Persistent,
                capabilities: vec!["agent.run".into(), "sessions".into(), "tools".into()],
            },
            EnvironmentSummary {
                id: "node:9b2f".into(),
                kind: "node",
                label: Some("build box".into()),
                status: EnvironmentStatus::Unavailable,
                platform: Some("linux".into()),
                session_host: false,
                last_connected_at_ms: Some(1_772_359_000_000),
                last_disconnected_at_ms: Some(1_772_359_100_000),
                trust: EnvironmentTrust::Persistent,
                capabilities: vec!["system".into(), "system.which".into()],
            },
        ],
    }
}

fn result_examples() -> Vec<(&'static str, &'static str, Value)> {
    vec![
        ("sessions.usage", "sessions_usage", enc(&sessions_usage_example())),
        ("skills.status", "skills_status", enc(&SkillsStatusResult { agent_id: "main".into(), skills: vec![] })),
        ("skills.search", "skills_search", enc(&SkillsSearchResult { results: vec![] })),
        (
            "skills.library.list",
            "skills_library_list",
            enc(&SkillsLibraryListResult {
                entries: vec![],
                profile_id: None,
                multiple_profiles: false,
                default_target: LibraryTarget::Unavailable,
                can_manage_workspace: false,
                default_selection_limit: 64,
                session: Some(LibrarySession {
                    session_key: "agent:main:main".into(),
                    selections: vec![],
                    attachable: vec![],
                }),
            }),
        ),
        ("environments.list", "environments_list", enc(&environments_example())),
        (
            "themes.list",
            "themes_list",
            enc(&ThemesListResult {
                current: ThemeSelection { id: "claw", mode: "system", scope: "gateway", overrides: Overrides {} },
                theme: ThemeDescriptor {
                    id: "claw",
                    name: "Claw",
                    description: "The Control UI's default theme, built into the UI.",
                    source: "builtin",
                    modes: ["light", "dark"],
                },
                themes: vec![],
            }),
        ),
    ]
}

/// Upstream has no `<Method>Result` for these (its handlers answer untyped objects).
const RESULTS_WITHOUT_DEFINITION: &[&str] = &["sessions.usage", "skills.status", "skills.library.list", "themes.list"];

#[test]
fn every_typed_result_matches_its_schema_definition() {
    check_results(&result_examples(), RESULTS_WITHOUT_DEFINITION);
}

#[test]
fn results_read_as_the_pages_read_them() {
    let examples = result_examples();
    let value =
        |method: &str| examples.iter().find(|(m, _, _)| *m == method).map(|(_, _, v)| v.clone()).expect("example");
    // The usage page: per-session `usage` with its day breakdown, aggregates, creator options.
    let usage = value("sessions.usage");
    assert_eq!(usage["sessions"][0]["usage"]["dailyBreakdown"][0]["tokens"], 2_400);
    assert_eq!(usage["sessions"][0]["usage"]["totalTokens"], 2_400);
    assert_eq!(usage["sessions"][0]["contextWeight"], Value::Null);
    assert_eq!(usage["aggregates"]["byProvider"][0].get("model"), None);
    assert_eq!(usage["aggregates"]["tools"], json!({"totalCalls": 0, "uniqueTools": 0, "tools": []}));
    // The config page's theme catalog reads `themes`, `current.requestedId` and `theme.source`.
    let themes = value("themes.list");
    assert_eq!((themes["themes"].clone(), themes["theme"]["source"].clone()), (json!([]), json!("builtin")));
    // The skills page reads `report.skills` and the library's `defaultTarget`.
    assert_eq!(value("skills.status")["skills"], json!([]));
    assert_eq!(value("skills.library.list")["defaultTarget"], "unavailable");
}

fn params_examples() -> Vec<(&'static str, Value, Decode, bool)> {
    vec![
        (
            "sessions.usage",
            json!({"startDate": "2026-03-01", "endDate": "2026-03-30", "agentScope": "all", "mode": "specific",
                   "timeZone": "Europe/Berlin", "utcOffset": "UTC+1", "groupBy": "family", "limit": 1000,
                   "includeContextWeight": false}),
            decoder::<SessionsUsageParams>,
            true,
        ),
        (
            "sessions.usage",
            json!({"key": "agent:main:main", "limit": 1, "range": "7d", "creatorKey": "[\"unknown\"]"}),
            decoder::<SessionsUsageParams>,
            true,
        ),
        ("skills.status", json!({"agentId": "main"}), decoder::<SkillsStatusParams>, true),
        ("skills.status", json!({"sessionKey": "agent:main:main"}), decoder::<SkillsStatusParams>, true),
        ("skills.search", json!({"limit": 20}), decoder::<SkillsSearchParams>, true),
        ("skills.search", json!({"query": "git", "limit": 100}), decoder::<SkillsSearchParams>, true),
        ("skills.library.list", json!({"scope": "all"}), decoder::<SkillsLibraryListParams>, true),
        (
            "skills.library.list",
            json!({"sessionKey": "main", "scope": "mine"}),
            decoder::<SkillsLibraryListParams>,
            true,
        ),
        ("environments.list", json!({}), decoder::<EnvironmentsListParams>, true),
        (
            "environments.list",
            json!({"runtimeId": "codex", "projection": "profiles", "includeDesktopSetup": true}),
            decoder::<EnvironmentsListParams>,
            true,
        ),
        ("themes.list", json!({}), decoder::<NoParams>, true),
    ]
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
