//! The typed params and results of the operations methods (`config.*`, `channels.*`, `send`,
//! `comfy.*`, `cron.*`, `plugin.approval.*`) against the vendored OpenClaw schema, and snapshots
//! of their shapes.
//!
//! Every typed result is serialised from an example and, when upstream defines
//! `<Method>Result` (or the shape it names: `CronJob`, `CronRunLogEntry`,
//! `ConfigSchemaResponse`), validated against it; every params type decodes a schema-valid
//! example. None of these methods ever refused unknown params, so each one is checked to ignore
//! an extra field (no wire change), and the lenient reads (a wrong type reads as absent, the
//! handler names what is missing) are pinned.

mod support;

use serde_json::{Map, Value, json};

use clawgate_protocol::methods::approvals::*;
use clawgate_protocol::methods::channels::*;
use clawgate_protocol::methods::comfy::*;
use clawgate_protocol::methods::config::*;
use clawgate_protocol::methods::cron::*;
use support::schema::{Decode, check_params, check_results, decodes, has_definition, pascal, schema_errors};

/// Methods whose results upstream does not define (as `<Method>Result`); their shapes are
/// pinned by the snapshots, and by the definitions they embed where upstream has those.
const RESULTS_WITHOUT_DEFINITION: &[&str] = &[
    "config.get",
    "config.schema",
    "config.set",
    "config.patch",
    "config.apply",
    "channels.start",
    "channels.stop",
    "channels.logout",
    "send",
    "comfy.run",
    "comfy.jobs.get",
    "comfy.jobs.list",
    "comfy.jobs.cancel",
    "comfy.templates.list",
    "comfy.workers.list",
    "cron.list",
    "cron.status",
    "cron.update",
    "cron.remove",
    "cron.run",
    "cron.runs",
    "plugin.approval.list",
    "plugin.approval.request",
    "plugin.approval.waitDecision",
    "plugin.approval.resolve",
];

fn enc<T: serde::Serialize>(value: &T) -> Value {
    serde_json::to_value(value).expect("serialises")
}

fn agent_job() -> CronJob {
    CronJob {
        id: "job-1".into(),
        agent_id: Some("ops".into()),
        name: "morning digest".into(),
        enabled: true,
        created_at_ms: 1_700_000_000_000,
        updated_at_ms: 1_700_000_000_500,
        schedule: CronSchedule::Cron { expr: "0 9 * * *".into(), tz: Some("Europe/Berlin".into()) },
        session_target: "isolated".into(),
        wake_mode: "now",
        payload: CronPayload::AgentTurn(AgentTurnPayload {
            kind: "agentTurn",
            message: "summarize".into(),
            model: Some("gpt".into()),
        }),
        delete_after_run: None,
        delivery: Some(CronDelivery {
            mode: "announce",
            channel: Some("telegram".into()),
            to: Some("42".into()),
            account_id: Some("default".into()),
            thread_id: Some("7".into()),
        }),
        state: CronJobState {
            next_run_at_ms: Some(1_700_000_600_000),
            last_run_at_ms: Some(1_699_999_000_000),
            running_at_ms: None,
            last_run_status: Some(CronRunStatus::Ok),
            last_status: Some(CronRunStatus::Ok),
        },
    }
}

/// A completed ComfyUI job as `comfy.jobs.get|list` show it.
fn comfy_job_view() -> ComfyJob {
    ComfyJob {
        attempts: 1,
        created_at: 1_700_000_000_000,
        ended_at: Some(1_700_000_004_000),
        error: None,
        id: "job_1".into(),
        inputs: json!({"seed": "7"}),
        outputs: vec![ComfyJobOutput {
            bytes: Some(1234),
            filename: Some("out_00001_.png".into()),
            media_url: Some("/media/token".into()),
        }],
        position: None,
        progress: Some(json!({"value": 4, "max": 4})),
        prompt_id: Some("p-1".into()),
        started_at: Some(1_700_000_001_000),
        status: "completed".into(),
        template: "invert".into(),
        worker: Some("local".into()),
    }
}

fn comfy_job() -> CronJob {
    let mut fields = Map::new();
    fields.insert("templateId".into(), json!("invert"));
    fields.insert("inputs".into(), json!({"strength": 2}));
    CronJob {
        id: "job-2".into(),
        agent_id: None,
        name: "nightly render".into(),
        enabled: false,
        created_at_ms: 1_700_000_000_000,
        updated_at_ms: 1_700_000_000_000,
        schedule: CronSchedule::Cron { expr: "0 0 3 * * *".into(), tz: None },
        session_target: "session:agent:ops:main".into(),
        wake_mode: "now",
        payload: CronPayload::Stored { kind: "comfyRun".into(), fields },
        delete_after_run: None,
        delivery: None,
        state: CronJobState { running_at_ms: Some(1_700_000_100_000), ..CronJobState::default() },
    }
}

/// An agent turn every 30 minutes from its anchor, as the Control UI's form creates one.
fn every_job() -> CronJob {
    CronJob {
        schedule: CronSchedule::Every { every_ms: 1_800_000, anchor_ms: Some(1_700_000_000_000) },
        delivery: None,
        ..agent_job()
    }
}

/// A one-shot agent turn that is removed once it ran.
fn at_job() -> CronJob {
    CronJob {
        schedule: CronSchedule::At { at: "2026-12-08T09:00:00.000Z".into() },
        delete_after_run: Some(true),
        state: CronJobState { next_run_at_ms: Some(1_796_720_400_000), ..CronJobState::default() },
        ..agent_job()
    }
}

fn run_entry() -> CronRunLogEntry {
    CronRunLogEntry {
        ts: 1_700_000_001_000,
        job_id: "job-1".into(),
        action: "finished",
        status: "ok".into(),
        run_id: "manual:job-1:1700000000000".into(),
        run_at_ms: 1_700_000_000_000,
        duration_ms: Some(1000),
        summary: Some("done".into()),
        error: None,
        job_name: Some("morning digest".into()),
    }
}

fn held_run() -> ApprovalRequestView {
    ApprovalRequestView::HeldRun(HeldRunRequest {
        plugin_id: "comfy",
        title: "Run ComfyUI template invert".into(),
        description: "telegram:200 (@guest) asked to run the ComfyUI template \"invert\" (job job_1).".into(),
        detail: "{\n  \"jobId\": \"job_1\"\n}".into(),
        severity: PluginApprovalSeverity::Warning,
        tool_name: "comfy.run".into(),
        allowed_decisions: ["allow-once", "deny"],
        turn_source_channel: Some("telegram".into()),
        turn_source_to: None,
    })
}

fn approval_entry() -> PluginApprovalEntry {
    PluginApprovalEntry {
        id: "apr_1".into(),
        approval_kind: "plugin",
        request: held_run(),
        created_at_ms: 10,
        expires_at_ms: 20,
        status: "rejected".into(),
        decision: Some(ApprovalDecision::Deny),
        reason: Some("not today".into()),
        resolved_by: Some("device:dev-1".into()),
        resolved_at_ms: Some(15),
        kind: "comfy.run".into(),
        payload: json!({"jobId": "job_1", "template": "invert"}),
    }
}

fn requested_entry() -> PluginApprovalEntry {
    let mut request = Map::new();
    request.insert("title".into(), json!("Deploy"));
    request.insert("description".into(), json!("Ship it?"));
    request.insert("pluginId".into(), json!("deployer"));
    request.insert("allowedDecisions".into(), json!(["allow-once", "deny"]));
    PluginApprovalEntry {
        id: "apr_2".into(),
        approval_kind: "plugin",
        request: ApprovalRequestView::Requested(request.clone()),
        created_at_ms: 10,
        expires_at_ms: 120_010,
        status: "pending".into(),
        decision: None,
        reason: None,
        resolved_by: None,
        resolved_at_ms: None,
        kind: "plugin".into(),
        payload: json!({ "request": request }),
    }
}

fn channels_status() -> ChannelsStatusResult {
    let snapshot = json!({
        "ts": 1_700_000_000_000_i64,
        "channelOrder": ["telegram"],
        "channelLabels": {"telegram": "Telegram"},
        "channels": {"telegram": {"configured": true, "connected": true}},
        "channelAccounts": {"telegram": [{"accountId": "default", "enabled": true, "configured": true,
            "running": true, "connected": true, "lastError": null, "healthState": "healthy"}]},
        "channelDefaultAccountId": {"telegram": "default"},
    });
    let Value::Object(map) = snapshot else { unreachable!("an object literal") };
    ChannelsStatusResult(map)
}

fn write_result() -> ConfigWriteResult {
    ConfigWriteResult {
        ok: true,
        path: "/state/clawgate.json5".into(),
        hash: "abc123".into(),
        changes: ConfigChangesApplied {
            changes: vec![
                ConfigChangeEntry {
                    path: "agents.defaults.model".into(),
                    class: "hot".into(),
                    outcome: Some("applied".into()),
                    error: None,
                },
                ConfigChangeEntry {
                    path: "comfy.workers".into(),
                    class: "restart-subsystem".into(),
                    outcome: Some("restarted".into()),
                    error: None,
                },
                ConfigChangeEntry {
                    path: "channels.telegram.botToken".into(),
                    class: "restart-subsystem".into(),
                    outcome: Some("failed".into()),
                    error: Some("telegram/default: no botToken configured".into()),
                },
                ConfigChangeEntry {
                    path: "gateway.port".into(),
                    class: "restart-process".into(),
                    outcome: Some("restartRequired".into()),
                    error: None,
                },
            ],
            applied: vec!["agents.defaults.model".into()],
            restarted: vec!["comfy.workers".into()],
            restart_required: vec!["gateway.port".into()],
            failed: vec![ConfigChangeFailure {
                path: "channels.telegram.botToken".into(),
                error: "telegram/default: no botToken configured".into(),
            }],
        },
    }
}

fn decision(decision: Option<ApprovalDecision>, status: &str) -> PluginApprovalDecisionResult {
    PluginApprovalDecisionResult {
        id: "apr_2".into(),
        decision,
        created_at_ms: 10,
        expires_at_ms: 120_010,
        status: status.into(),
        reason: None,
        resolved_by: decision.map(|_| "client:cli".into()),
    }
}

/// `(method, example name, serialised example)` for every typed result.
fn result_examples() -> Vec<(&'static str, &'static str, Value)> {
    let mut hints = Map::new();
    hints.insert("gateway.port".into(), json!({"label": "Port", "help": "The port", "group": "Gateway"}));
    vec![
        (
            "config.get",
            "config_get_admin",
            enc(&ConfigGetResult {
                exists: true,
                valid: true,
                hash: "abc123".into(),
                config_revision_hash: "abc123".into(),
                config: json!({"gateway": {"auth": {"token": "__OPENCLAW_REDACTED__"}}}),
                raw: "{}".into(),
                issues: vec![],
                path: Some("/state/clawgate.json5".into()),
            }),
        ),
        (
            "config.get",
            "config_get_reader",
            enc(&ConfigGetResult {
                exists: false,
                valid: true,
                hash: "e3b0".into(),
                config_revision_hash: "e3b0".into(),
                config: json!({}),
                raw: "{}".into(),
                issues: vec![],
                path: None,
            }),
        ),
        (
            "config.schema",
            "config_schema",
            enc(&ConfigSchemaResult {
                schema: json!({"type": "object"}),
                ui_hints: hints,
                version: "0.1.0".into(),
                generated_at: "2023-11-14T22:13:20Z".into(),
            }),
        ),
        ("config.set", "config_write", enc(&write_result())),
        ("config.patch", "config_write", enc(&write_result())),
        ("config.apply", "config_write", enc(&write_result())),
        ("channels.status", "channels_status", enc(&channels_status())),
        (
            "channels.pairing.list",
            "channels_pairing_list",
            enc(&ChannelsPairingListResult {
                accounts: vec![PairingAccount {
                    channel: "telegram".into(),
                    channel_label: "Telegram".into(),
                    account_id: "default".into(),
                    notify_supported: true,
                }],
                requests: vec![ChannelPairingRequest {
                    request_id: "ABCD1234".into(),
                    channel: "telegram".into(),
                    channel_label: "Telegram".into(),
                    account_id: "default".into(),
                    sender_id: "200".into(),
                    sender_label: "guest".into(),
                    metadata: PairingRequestMetadata { chat_id: "200".into() },
                    created_at: "2023-11-14T22:13:20Z".into(),
                    last_seen_at: "2023-11-14T22:13:20Z".into(),
                    expires_at: "2023-11-14T23:13:20Z".into(),
                    notify_supported: true,
                }],
                command_owner_configured: false,
                limits: PairingLimits { pending_per_account: 1000, ttl_ms: 3_600_000 },
            }),
        ),
        (
            "channels.pairing.approve",
            "channels_pairing_approve",
            enc(&ChannelsPairingApproveResult {
                request_id: "ABCD1234".into(),
                sender_id: "200".into(),
                notification: PairingNotification::Sent,
                command_owner_bootstrap: CommandOwnerBootstrap::NotRequested,
            }),
        ),
        (
            "channels.pairing.dismiss",
            "channels_pairing_dismiss",
            enc(&ChannelsPairingDismissResult { request_id: "ABCD1234".into(), sender_id: "200".into() }),
        ),
        (
            "channels.start",
            "channels_start_every_account",
            enc(&ChannelsControlResult {
                channel: "telegram".into(),
                account_id: None,
                running: true,
                started: Some(true),
                stopped: None,
                cleared: None,
                accounts: vec![
                    ChannelAccountState {
                        account_id: "default".into(),
                        running: true,
                        held: None,
                        last_start_at: Some(1_700_000_000_000),
                        last_stop_at: Some(1_699_999_000_000),
                    },
                    ChannelAccountState {
                        account_id: "second".into(),
                        running: true,
                        held: None,
                        last_start_at: Some(1_700_000_000_000),
                        last_stop_at: None,
                    },
                ],
            }),
        ),
        (
            "channels.stop",
            "channels_stop",
            enc(&ChannelsControlResult {
                channel: "telegram".into(),
                account_id: Some("default".into()),
                running: false,
                started: None,
                stopped: Some(true),
                cleared: None,
                accounts: vec![ChannelAccountState {
                    account_id: "default".into(),
                    running: false,
                    held: Some(ChannelHold::Stopped),
                    last_start_at: Some(1_700_000_000_000),
                    last_stop_at: Some(1_700_000_100_000),
                }],
            }),
        ),
        (
            "channels.logout",
            "channels_logout",
            enc(&ChannelsControlResult {
                channel: "telegram".into(),
                account_id: Some("default".into()),
                running: false,
                started: None,
                stopped: Some(true),
                cleared: Some(true),
                accounts: vec![ChannelAccountState {
                    account_id: "default".into(),
                    running: false,
                    held: Some(ChannelHold::LoggedOut),
                    last_start_at: Some(1_700_000_000_000),
                    last_stop_at: Some(1_700_000_100_000),
                }],
            }),
        ),
        (
            "send",
            "send_sent",
            enc(&SendResult {
                run_id: "idem-1".into(),
                channel: "telegram".into(),
                chat_id: "42".into(),
                status: SendStatus::Sent,
                message_id: Some("1001".into()),
            }),
        ),
        (
            "send",
            "send_queued",
            enc(&SendResult {
                run_id: "idem-2".into(),
                channel: "discord".into(),
                chat_id: "123".into(),
                status: SendStatus::Queued,
                message_id: None,
            }),
        ),
        (
            "comfy.run",
            "comfy_run_queued",
            enc(&ComfyRunResult {
                job_id: "job_1".into(),
                status: "queued".into(),
                position: Some(QueuePosition { position: 1, total: 2 }),
            }),
        ),
        (
            "comfy.run",
            "comfy_run_held",
            enc(&ComfyRunResult { job_id: "job_2".into(), status: "held".into(), position: None }),
        ),
        ("comfy.jobs.get", "comfy_jobs_get", enc(&ComfyJobsGetResult { job: comfy_job_view() })),
        ("comfy.jobs.list", "comfy_jobs_list", enc(&ComfyJobsListResult { jobs: vec![comfy_job_view()] })),
        (
            "comfy.jobs.cancel",
            "comfy_jobs_cancel",
            enc(&ComfyJobsCancelResult { job_id: "job_1".into(), cancelled: true, status: Some("cancelled".into()) }),
        ),
        (
            "comfy.jobs.cancel",
            "comfy_jobs_cancel_unknown",
            enc(&ComfyJobsCancelResult { job_id: "nope".into(), cancelled: false, status: None }),
        ),
        (
            "comfy.templates.list",
            "comfy_templates_list",
            enc(&ComfyTemplatesListResult {
                templates: vec![
                    ComfyTemplateEntry {
                        id: "invert".into(),
                        description: Some("Inverts an image".into()),
                        allowed_inputs: vec!["image".into()],
                        defaults: Map::new(),
                    },
                    ComfyTemplateEntry {
                        id: "upscale".into(),
                        description: None,
                        allowed_inputs: vec![],
                        defaults: [("scale".to_owned(), json!(2))].into_iter().collect(),
                    },
                ],
                errors: vec![ComfyTemplateProblem { id: "broken".into(), error: "manifest.json: bad".into() }],
            }),
        ),
        (
            "comfy.workers.list",
            "comfy_workers_list",
            enc(&ComfyWorkersListResult {
                workers: vec![ComfyWorker {
                    healthy: true,
                    kind: "configured".into(),
                    last_error: None,
                    last_heartbeat: None,
                    max_concurrent: 1,
                    mode: "comfyui".into(),
                    name: "local".into(),
                    queue_remaining: Some(0),
                    running: 0,
                    templates: None,
                    url: "http://127.0.0.1:8188".into(),
                    version: Some("0.3.40".into()),
                    weight: 1.0,
                }],
            }),
        ),
        (
            "cron.list",
            "cron_list",
            enc(&CronListResult {
                jobs: vec![
                    CronListEntry { job: agent_job(), effective_agent_id: "ops".into() },
                    CronListEntry { job: comfy_job(), effective_agent_id: "main".into() },
                ],
                total: 3,
                offset: 0,
                limit: 2,
                has_more: true,
                next_offset: Some(2),
                snapshot_revision: "3-1700000000500".into(),
            }),
        ),
        (
            "cron.status",
            "cron_status",
            enc(&CronStatusResult {
                enabled: true,
                storage: "sqlite",
                jobs: 2,
                next_wake_at_ms: Some(1_700_000_600_000),
                last_pass_at_ms: None,
                last_error: None,
            }),
        ),
        ("cron.add", "cron_job_agent_turn", enc(&agent_job())),
        ("cron.update", "cron_job_comfy_run", enc(&comfy_job())),
        ("cron.add", "cron_job_every", enc(&every_job())),
        ("cron.add", "cron_job_at", enc(&at_job())),
        ("cron.remove", "cron_remove", enc(&CronRemoveResult { ok: true, removed: true })),
        (
            "cron.run",
            "cron_run_enqueued",
            enc(&CronRunResult::Enqueued {
                ok: true,
                enqueued: true,
                run_id: "manual:job-1:1700000000000".into(),
                process_instance_id: "boot".into(),
            }),
        ),
        (
            "cron.run",
            "cron_run_not_due",
            enc(&CronRunResult::NotRun { ok: true, ran: false, reason: "not-due", process_instance_id: "boot".into() }),
        ),
        (
            "cron.runs",
            "cron_runs",
            enc(&CronRunsResult {
                entries: vec![run_entry()],
                total: 1,
                offset: 0,
                limit: 50,
                has_more: false,
                next_offset: None,
            }),
        ),
        ("plugin.approval.list", "plugin_approval_list", enc(&vec![approval_entry(), requested_entry()])),
        (
            "plugin.approval.request",
            "plugin_approval_decided",
            enc(&decision(Some(ApprovalDecision::AllowOnce), "approved")),
        ),
        ("plugin.approval.waitDecision", "plugin_approval_pending", enc(&decision(None, "pending"))),
        (
            "plugin.approval.resolve",
            "plugin_approval_resolve_held_run",
            enc(&PluginApprovalResolveResult {
                ok: true,
                id: "apr_1".into(),
                decision: Some(ApprovalDecision::AllowOnce),
                status: "approved".into(),
                reason: None,
                job_id: Some(Some("job_1".into())),
                job_status: Some("queued".into()),
                job_error: None,
            }),
        ),
        (
            "plugin.approval.resolve",
            "plugin_approval_resolve_plugin",
            enc(&PluginApprovalResolveResult {
                ok: true,
                id: "apr_2".into(),
                decision: Some(ApprovalDecision::Deny),
                status: "rejected".into(),
                reason: Some("no".into()),
                job_id: None,
                job_status: None,
                job_error: None,
            }),
        ),
    ]
}

#[test]
fn every_typed_result_matches_its_schema_definition() {
    check_results(&result_examples(), RESULTS_WITHOUT_DEFINITION);
}

#[test]
fn results_match_the_upstream_shapes_they_embed() {
    let examples = result_examples();
    let get = |name: &str| examples.iter().find(|(_, n, _)| *n == name).map(|(_, _, v)| v.clone()).unwrap();
    let valid = |definition: &str, value: &Value| {
        let errors = schema_errors(definition, value);
        assert!(errors.is_empty(), "not a {definition}: {errors:?}\n{value:#}");
    };
    // `config.schema` is upstream's `ConfigSchemaResponse`.
    valid("ConfigSchemaResponse", &get("config_schema"));
    // An agent-turn job is a `CronJob` wherever it appears (a `comfyRun` one is clawgate's own).
    valid("CronJob", &get("cron_job_agent_turn"));
    let mut listed = get("cron_list")["jobs"][0].clone();
    assert_eq!(listed.as_object_mut().unwrap().remove("effectiveAgentId"), Some(json!("ops")));
    valid("CronJob", &listed);
    for entry in get("cron_runs")["entries"].as_array().unwrap() {
        valid("CronRunLogEntry", entry);
    }
    // The request shown for a held `/run` is a `PluginApprovalRequestParams`.
    valid("PluginApprovalRequestParams", &get("plugin_approval_list")[0]["request"]);
    // The not-found details of a cron job.
    valid("CronJobNotFoundErrorDetails", &json!({"code": "CRON_JOB_NOT_FOUND", "jobId": "job-1"}));
}

#[test]
fn optional_facts_keep_their_null_or_absent_wire_form() {
    let examples = result_examples();
    let get = |name: &str| examples.iter().find(|(_, n, _)| *n == name).map(|(_, _, v)| v.clone()).unwrap();
    // Always present, `null` when unknown.
    assert_eq!(get("cron_runs")["nextOffset"], Value::Null);
    assert_eq!(get("comfy_run_held")["position"], Value::Null);
    assert_eq!(get("comfy_jobs_cancel_unknown")["status"], Value::Null);
    assert_eq!(get("comfy_templates_list")["templates"][1]["description"], Value::Null);
    assert_eq!(get("plugin_approval_pending")["decision"], Value::Null);
    assert_eq!(get("cron_status")["lastPassAtMs"], Value::Null);
    // Left out when unknown.
    assert!(get("send_queued").get("messageId").is_none());
    assert!(get("config_get_reader").get("path").is_none());
    assert!(get("cron_job_comfy_run").get("delivery").is_none());
    assert!(get("cron_job_comfy_run").get("agentId").is_none());
    assert!(get("cron_job_comfy_run")["schedule"].get("tz").is_none());
    let plugin = get("plugin_approval_resolve_plugin");
    assert!(["jobId", "jobStatus", "jobError"].iter().all(|k| plugin.get(k).is_none()), "{plugin}");
    // A stored payload is shown as stored, with its kind.
    assert_eq!(
        get("cron_job_comfy_run")["payload"],
        json!({"kind": "comfyRun", "templateId": "invert", "inputs": {"strength": 2}})
    );
}

/// `(method, schema-valid example, decode into the params type)` for every typed params type.
fn params_examples() -> Vec<(&'static str, Value, Decode)> {
    use support::schema::decoder as d;
    vec![
        ("config.get", json!({}), d::<ConfigGetParams>),
        ("config.schema", json!({}), d::<ConfigSchemaParams>),
        ("config.set", json!({"raw": "{}", "baseHash": "abc"}), d::<ConfigSetParams>),
        (
            "config.patch",
            json!({"raw": "{gateway: {port: 1}}", "baseHash": "abc", "replacePaths": ["gateway"], "note": "n",
                   "sessionKey": "main", "restartDelayMs": 0, "deliveryContext": {"channel": "telegram", "to": "1"}}),
            d::<ConfigPatchParams>,
        ),
        ("config.apply", json!({"raw": "{}"}), d::<ConfigApplyParams>),
        (
            "channels.status",
            json!({"probe": true, "timeoutMs": 1000, "channel": "telegram"}),
            d::<ChannelsStatusParams>,
        ),
        (
            "channels.pairing.list",
            json!({"channel": "telegram", "accountId": "default"}),
            d::<ChannelsPairingListParams>,
        ),
        (
            "channels.pairing.approve",
            json!({"channel": "telegram", "accountId": "default", "requestId": "ABCD", "notify": true}),
            d::<ChannelsPairingApproveParams>,
        ),
        (
            "channels.pairing.dismiss",
            json!({"channel": "telegram", "accountId": "default", "requestId": "ABCD"}),
            d::<ChannelsPairingDismissParams>,
        ),
        (
            "send",
            json!({"to": "telegram:42", "message": "hi", "mediaUrls": ["https://x/a.png"], "threadId": "7",
                   "silent": true, "forceDocument": false, "replyToId": "9", "idempotencyKey": "k"}),
            d::<SendParams>,
        ),
        (
            "cron.list",
            json!({"includeDisabled": true, "limit": 10, "sortBy": "name", "sortDir": "desc"}),
            d::<CronListParams>,
        ),
        ("cron.status", json!({}), d::<CronStatusParams>),
        (
            "cron.add",
            json!({"name": "n", "schedule": {"kind": "cron", "expr": "0 9 * * *", "tz": "UTC"},
                   "sessionTarget": "isolated", "wakeMode": "now", "agentId": "ops",
                   "payload": {"kind": "agentTurn", "message": "m"},
                   "delivery": {"mode": "announce", "channel": "telegram", "to": "42", "threadId": 7}}),
            d::<CronAddParams>,
        ),
        ("cron.update", json!({"id": "job-1", "patch": {"enabled": false, "agentId": null}}), d::<CronUpdateParams>),
        ("cron.remove", json!({"jobId": "job-1"}), d::<CronRemoveParams>),
        ("cron.run", json!({"id": "job-1", "mode": "due"}), d::<CronRunParams>),
        (
            "cron.runs",
            json!({"scope": "job", "id": "job-1", "statuses": ["ok", "error"], "limit": 5}),
            d::<CronRunsParams>,
        ),
        (
            "plugin.approval.request",
            json!({"title": "Deploy", "description": "Ship it?", "pluginId": "deployer", "severity": "critical",
                   "timeoutMs": 1000, "twoPhase": true, "allowedDecisions": ["allow-once", "deny"]}),
            d::<PluginApprovalRequestParams>,
        ),
        (
            "plugin.approval.resolve",
            json!({"id": "apr_1", "decision": "deny",
                   "reviewer": {"channel": "telegram", "accountId": "default", "senderId": "1"}}),
            d::<PluginApprovalResolveParams>,
        ),
        // clawgate's own: no upstream params definition.
        ("plugin.approval.list", json!({"status": "all"}), d::<PluginApprovalListParams>),
        (
            "plugin.approval.waitDecision",
            json!({"id": "apr_1", "timeoutMs": 10}),
            d::<PluginApprovalWaitDecisionParams>,
        ),
        (
            "comfy.run",
            json!({"templateId": "invert", "inputs": {"a": 1}, "prompt": "p",
                   "deliverTo": {"channel": "telegram", "chatId": 42}}),
            d::<ComfyRunParams>,
        ),
        ("comfy.jobs.get", json!({"jobId": "job_1"}), d::<ComfyJobsGetParams>),
        ("comfy.jobs.list", json!({"status": ["queued"], "limit": 5}), d::<ComfyJobsListParams>),
        ("comfy.jobs.cancel", json!({"jobId": "job_1"}), d::<ComfyJobsCancelParams>),
        ("comfy.templates.list", json!({}), d::<ComfyTemplatesListParams>),
        ("comfy.workers.list", json!({}), d::<ComfyWorkersListParams>),
    ]
}

#[test]
fn every_params_type_decodes_schema_valid_params_and_ignores_unknown_fields_as_it_always_did() {
    for (method, example, decode) in params_examples() {
        let name = format!("{}Params", pascal(method));
        if has_definition(&name) {
            let errors = schema_errors(&name, &example);
            assert!(errors.is_empty(), "{method}: example is not a valid {name}: {errors:?}");
        } else {
            assert!(
                method.starts_with("comfy.")
                    || ["plugin.approval.list", "plugin.approval.waitDecision"].contains(&method),
                "{method}: no upstream {name}"
            );
        }
        decode(&example).unwrap_or_err(method, &example);
        // No operations method ever refused an unknown field: the types keep ignoring them
        // (upstream's closed schemas would refuse these; clawgate's wire does not change here).
        let mut extra = example.clone();
        extra["unexpected"] = json!(1);
        decode(&extra).unwrap_or_err(method, &extra);
    }
}

#[test]
fn channel_control_params_are_closed_like_upstream() {
    use support::schema::decoder as d;
    let example = json!({"channel": "telegram", "accountId": "default"});
    check_params(&[
        ("channels.start", example.clone(), d::<ChannelsStartParams>, true),
        ("channels.stop", example.clone(), d::<ChannelsStopParams>, true),
        ("channels.logout", example, d::<ChannelsLogoutParams>, true),
        ("channels.stop", json!({"channel": "discord"}), d::<ChannelsStopParams>, true),
    ]);
    // What clients see after `invalid channels.stop params: `.
    assert_eq!(decodes::<ChannelsStopParams>(&json!({})).unwrap_err(), "missing field `channel`");
    assert_eq!(
        decodes::<ChannelsStopParams>(&json!({"channel": 1})).unwrap_err(),
        "invalid type: integer `1`, expected a string"
    );
    let all: ChannelsStartParams = decodes(&json!({"channel": "slack"})).unwrap();
    assert_eq!((all.channel.as_str(), all.account_id), ("slack", None));
}

trait UnwrapOrErr {
    fn unwrap_or_err(self, method: &str, value: &Value);
}

impl UnwrapOrErr for Result<(), String> {
    fn unwrap_or_err(self, method: &str, value: &Value) {
        if let Err(e) = self {
            panic!("{method}: {value} does not decode: {e}");
        }
    }
}

#[test]
fn wrong_types_read_as_absent_where_they_always_did() {
    // The handlers name what is missing in their own words; the types must not refuse first.
    let list: CronListParams =
        decodes(&json!({"includeDisabled": "yes", "limit": -1, "sortBy": "nope", "enabled": 3})).unwrap();
    assert_eq!(list, CronListParams::default());
    let update: CronUpdateParams = decodes(&json!({"id": 5, "jobId": "j", "patch": "x"})).unwrap();
    assert_eq!((update.id, update.job_id.as_deref(), update.patch), (None, Some("j"), None));
    let fields: CronJobFields = decodes(&json!({"name": 1, "enabled": "on", "agentId": null, "delivery": "x",
                                                "catchUp": 2, "schedule": [], "payload": "p"}))
    .unwrap();
    assert_eq!(fields.name, Some(None));
    assert_eq!(fields.enabled, Some(None));
    assert_eq!(fields.agent_id, Some(None));
    assert_eq!(fields.delivery, Some(Some(CronDeliveryParams::default())));
    assert_eq!(fields.catch_up, Some(None));
    assert_eq!(fields.payload, Some(None));
    assert_eq!(decodes::<CronJobFields>(&json!({"delivery": null})).unwrap().delivery, Some(None));
    assert_eq!(decodes::<CronJobFields>(&json!({})).unwrap(), CronJobFields::default());
    let delivery: CronDeliveryParams = decodes(&json!({"mode": "announce", "to": 42, "threadId": 7.5})).unwrap();
    assert_eq!((delivery.to.as_deref(), delivery.thread_id.as_deref()), (Some("42"), Some("7.5")));
    let send: SendParams = decodes(&json!({"to": 42, "idempotencyKey": "k", "threadId": 9, "silent": "yes"})).unwrap();
    assert_eq!((send.to, send.thread_id.as_deref(), send.silent), (None, Some("9"), None));
    // Lists keep their strings and drop the rest; comfy's job statuses keep the rest to refuse it.
    let runs: CronRunsParams = decodes(&json!({"statuses": ["ok", 1, "error"]})).unwrap();
    assert_eq!(runs.statuses, Some(vec!["ok".to_owned(), "error".to_owned()]));
    let send: SendParams = decodes(&json!({"mediaUrls": ["https://x/a.png", null]})).unwrap();
    assert_eq!(send.media_urls, Some(vec!["https://x/a.png".to_owned()]));
    let jobs: ComfyJobsListParams = decodes(&json!({"status": ["queued", 1], "limit": "5"})).unwrap();
    assert_eq!((jobs.status, jobs.limit), (Some(vec![Checked::Valid("queued".to_owned()), Checked::Invalid]), None));
    let run: ComfyRunParams = decodes(&json!({"templateId": "t", "inputs": null, "deliverTo": "x"})).unwrap();
    assert_eq!(run.inputs, Some(None));
    assert_eq!(run.deliver_to, Some(ComfyDeliverTo::default()));
    assert_eq!(decodes::<ComfyRunParams>(&json!({"deliverTo": null})).unwrap().deliver_to, None);
    let request: PluginApprovalRequestParams =
        decodes(&json!({"title": "t", "description": "d", "severity": "loud", "timeoutMs": null, "scope": null}))
            .unwrap();
    assert_eq!((request.severity, request.timeout_ms), (Checked::Invalid, Checked::Null));
    assert_eq!(request.rest.get("scope"), Some(&Value::Null));
    assert!(!request.rest.contains_key("title"), "named fields are not repeated in rest");
    let wait: PluginApprovalWaitDecisionParams = decodes(&json!({"id": "a", "timeoutMs": 0})).unwrap();
    assert_eq!(wait.timeout_ms, Checked::Valid(0));
    assert_eq!(
        decodes::<PluginApprovalWaitDecisionParams>(&json!({"timeoutMs": "1"})).unwrap().timeout_ms,
        Checked::Invalid
    );
    let resolve: PluginApprovalResolveParams =
        decodes(&json!({"id": "a", "decision": "deny", "reviewer": null})).unwrap();
    assert_eq!(resolve.reviewer, Some(ApprovalReviewer::default()));
    assert_eq!(decodes::<PluginApprovalResolveParams>(&json!({})).unwrap().reviewer, None);
}

#[test]
fn config_write_decode_errors_keep_the_texts_clients_see_today() {
    // These reach clients as `invalid config.set params: <message>` (INVALID_REQUEST).
    assert_eq!(decodes::<ConfigSetParams>(&json!({})).unwrap_err(), "missing field `raw`");
    assert_eq!(
        decodes::<ConfigSetParams>(&json!({"raw": 1})).unwrap_err(),
        "invalid type: integer `1`, expected a string"
    );
    assert_eq!(
        decodes::<ConfigSetParams>(&json!("x")).unwrap_err(),
        "invalid type: string \"x\", expected struct WriteParams"
    );
}

#[test]
fn result_shapes() {
    let mut seen = std::collections::HashSet::new();
    for (_, example, value) in result_examples() {
        if seen.insert(example) {
            insta::assert_json_snapshot!(example, value);
        }
    }
}

#[test]
fn params_that_are_not_an_object_read_as_no_fields() {
    // The dispatcher decodes these methods' params through `FieldsOf`: `params.get(k)` on a
    // string or `null` found nothing, so the handler answered as for `{}`.
    use clawgate_protocol::methods::FieldsOf;
    for sent in [Value::Null, json!("x"), json!([1]), json!(3)] {
        let FieldsOf(p) = decodes::<FieldsOf<CronRemoveParams>>(&sent).unwrap();
        assert_eq!(p, CronRemoveParams::default(), "{sent}");
        let FieldsOf(p) = decodes::<FieldsOf<CronListParams>>(&sent).unwrap();
        assert_eq!(p, CronListParams::default(), "{sent}");
    }
    let FieldsOf(p) = decodes::<FieldsOf<CronRemoveParams>>(&json!({"jobId": "j"})).unwrap();
    assert_eq!(p.job_id.as_deref(), Some("j"));
}
