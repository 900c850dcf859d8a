//! `OpenClawClient` against `FakeOpenClaw` (the ComfyUI-OpenClaw 1.0.7 extension's behaviour in
//! `contracts/comfy-real.md` §6 and §8, on top of the fake native ComfyUI).

use std::time::Duration;

use clawgate_comfy::openclaw::{BridgeSubmit, DeviceCredentials, FireOutcome, JobsView, OpenClawClient, OpenClawError};
use clawgate_testkit::fake_openclaw::{FakeOpenClaw, JobsMode};
use serde_json::{Value, json};

const ADMIN: &str = "test-admin-token-123";
const DEVICE_TOKEN: &str = "test-device-token-456";

fn device(scopes: &[&str]) -> DeviceCredentials {
    DeviceCredentials {
        id: "gw-dev-1".into(),
        token: DEVICE_TOKEN.into(),
        scopes: scopes.iter().map(|s| (*s).to_owned()).collect(),
    }
}

fn client(fake: &FakeOpenClaw) -> OpenClawClient {
    OpenClawClient::new(
        &format!("{}/", fake.base_url()),
        Some(ADMIN.into()),
        Some(DeviceCredentials::new("gw-dev-1", DEVICE_TOKEN)),
    )
    .expect("client")
    .with_timeout(Duration::from_secs(5))
}

/// Inputs that differ per test, so the fake's ComfyUI cache never serves a result.
fn inputs(color: u32) -> Value {
    json!({"width": 32, "height": 16, "color": color})
}

fn submit<'a>(inputs: &'a Value, key: &'a str) -> BridgeSubmit<'a> {
    BridgeSubmit {
        template_id: "invert",
        inputs,
        idempotency_key: key,
        session_id: Some("gw-session-1"),
        trace_id: None,
    }
}

#[tokio::test]
async fn health_templates_and_bridge_health() -> anyhow::Result<()> {
    let fake = FakeOpenClaw::start().await?;
    let client = client(&fake);

    let health = client.health().await?;
    assert!(health.raw.is_object());

    let templates = client.templates().await?;
    let invert = templates.iter().find(|t| t.id == "invert").expect("invert template");
    assert!(invert.allowed_inputs.iter().any(|i| i == "color"), "{invert:?}");
    assert_eq!(invert.defaults.get("width"), Some(&json!(256)));

    let bridge = client.bridge_health().await?;
    assert_eq!(bridge["ok"], json!(true));

    let disabled = FakeOpenClaw::builder().bridge(None).start().await?;
    let error = self::client(&disabled).bridge_health().await.expect_err("bridge disabled");
    assert!(
        matches!(&error, OpenClawError::Refused { status: 403, error, .. } if error == "Bridge not enabled"),
        "{error:?}"
    );
    Ok(())
}

#[tokio::test]
async fn fire_queues_on_comfy_and_dedupes_by_trace_id() -> anyhow::Result<()> {
    let fake = FakeOpenClaw::start().await?;
    let client = client(&fake);
    let trace = "390bf172-84d8-451a-81f1-26e3975d7a7d";

    let first = client.fire("invert", &inputs(65280), trace, false).await?;
    let FireOutcome::Triggered { prompt_id, trace_id, deduped } = first else { panic!("not triggered: {first:?}") };
    assert_eq!(trace_id, trace);
    assert!(!deduped);
    let submitted = fake.comfy().submitted();
    assert_eq!(submitted.len(), 1);
    assert_eq!(submitted[0].prompt_id, prompt_id);

    let again = client.fire("invert", &inputs(65280), trace, false).await?;
    assert_eq!(again, FireOutcome::Triggered { prompt_id: prompt_id.clone(), trace_id: trace.into(), deduped: true });
    assert_eq!(fake.comfy().submitted().len(), 1, "a dedupe queues nothing");

    let request = fake.requests().into_iter().find(|r| r.path == "/openclaw/triggers/fire").expect("recorded");
    assert_eq!(request.admin_token.as_deref(), Some(ADMIN));
    assert_eq!(request.body["template_id"], json!("invert"));
    assert_eq!(request.body["trace_id"], json!(trace));
    assert_eq!(request.body["require_approval"], json!(false));
    assert_eq!(request.body["inputs"], inputs(65280));

    // An unknown template is the server's 404, not a transient failure.
    let error = client.fire("nope", &json!({}), "t-unknown", false).await.expect_err("unknown template");
    assert_eq!(error.status(), Some(404));
    assert!(!error.is_transient());
    Ok(())
}

#[tokio::test]
async fn fire_with_approval_is_pending() -> anyhow::Result<()> {
    let fake = FakeOpenClaw::builder().require_approval_for_triggers(true).start().await?;
    let outcome = client(&fake).fire("invert", &inputs(1), "t-approval", false).await?;
    let FireOutcome::Pending { approval_id, trace_id, .. } = outcome else { panic!("not pending: {outcome:?}") };
    assert!(approval_id.starts_with("apr_"), "{approval_id}");
    assert_eq!(trace_id, "t-approval");
    assert!(fake.comfy().submitted().is_empty());

    let fake = FakeOpenClaw::start().await?;
    let outcome = client(&fake).fire("invert", &inputs(2), "t-asked", true).await?;
    assert!(matches!(outcome, FireOutcome::Pending { .. }), "{outcome:?}");
    Ok(())
}

#[tokio::test]
async fn wrong_admin_token_is_refused_with_the_servers_text() -> anyhow::Result<()> {
    let fake = FakeOpenClaw::start().await?;
    let client = OpenClawClient::new(&fake.base_url(), Some("wrong-token-secret".into()), None)?;
    let error = client.fire("invert", &inputs(3), "t-bad", false).await.expect_err("refused");
    match &error {
        OpenClawError::Refused { status, path, error, .. } => {
            assert_eq!(*status, 403);
            assert_eq!(path, "/openclaw/triggers/fire");
            assert_eq!(error, "Invalid admin token.");
        }
        other => panic!("{other:?}"),
    }
    assert!(!error.is_transient());
    let shown = format!("{error} {error:?} {client:?}");
    assert!(!shown.contains("wrong-token-secret"), "{shown}");
    assert!(fake.comfy().submitted().is_empty());

    let no_token = OpenClawClient::new(&fake.base_url(), None, None)?;
    assert_eq!(no_token.approvals(None).await.expect_err("no token").status(), Some(403));
    Ok(())
}

#[tokio::test]
async fn bridge_submit_dedupes_and_reports_the_recorded_key_trap() -> anyhow::Result<()> {
    let fake = FakeOpenClaw::start().await?;
    let client = client(&fake);

    let body = inputs(11_184_810);
    let first = client.bridge_submit(&submit(&body, "a7242693-b355-4ff3-b953-ac5e9d5d3171")).await?;
    let prompt_id = first.prompt_id.clone().expect("prompt id");
    assert!(!first.deduped);
    assert!(first.trace_id.is_some());
    assert!(fake.comfy().submitted().iter().any(|p| p.prompt_id == prompt_id));

    let request = fake.requests().into_iter().find(|r| r.path == "/openclaw/bridge/submit").expect("recorded");
    assert_eq!(request.device_id.as_deref(), Some("gw-dev-1"));
    assert_eq!(request.device_token.as_deref(), Some(DEVICE_TOKEN));
    assert_eq!(request.scopes.as_deref(), Some("job:submit,job:status"));
    assert_eq!(request.body["idempotency_key"], json!("a7242693-b355-4ff3-b953-ac5e9d5d3171"));
    assert_eq!(request.body["session_id"], json!("gw-session-1"));

    let dup = client.bridge_submit(&submit(&body, "a7242693-b355-4ff3-b953-ac5e9d5d3171")).await?;
    assert!(dup.deduped);
    assert_eq!(dup.prompt_id.as_deref(), Some(prompt_id.as_str()));
    assert_eq!(fake.comfy().submitted().len(), 1, "a dedupe queues nothing");

    // Unknown template: 500, and the key was recorded before the failed submit.
    let empty = json!({});
    let unknown = BridgeSubmit { template_id: "nope", ..submit(&empty, "k-unknown-tmpl") };
    let error = client.bridge_submit(&unknown).await.expect_err("500");
    assert_eq!(error.status(), Some(500));
    assert!(error.is_transient());
    let retry = client.bridge_submit(&unknown).await?;
    assert!(retry.deduped);
    assert_eq!(retry.prompt_id, None, "deduped with prompt_id null means unknown");
    Ok(())
}

#[tokio::test]
async fn bridge_scopes_are_checked() -> anyhow::Result<()> {
    let fake = FakeOpenClaw::start().await?;
    let body = inputs(4);

    let wrong_scope = OpenClawClient::new(&fake.base_url(), Some(ADMIN.into()), Some(device(&["job:status"])))?;
    let error = wrong_scope.bridge_submit(&submit(&body, "k-wrongscope")).await.expect_err("401");
    assert!(
        matches!(&error, OpenClawError::Refused { status: 401, error, .. } if error.starts_with("Missing required scope")),
        "{error:?}"
    );
    assert!(!error.is_transient());

    let no_scopes = OpenClawClient::new(&fake.base_url(), Some(ADMIN.into()), Some(device(&[])))?;
    let error = no_scopes.bridge_submit(&submit(&body, "k-noscope")).await.expect_err("401");
    assert!(
        matches!(&error, OpenClawError::Refused { status: 401, error, .. } if error == "Missing X-OpenClaw-Scopes header"),
        "{error:?}"
    );

    let bad_token =
        OpenClawClient::new(&fake.base_url(), None, Some(DeviceCredentials::new("gw-dev-1", "not-the-device-secret")))?;
    let error = bad_token.bridge_submit(&submit(&body, "k-bad")).await.expect_err("401");
    assert_eq!(error.status(), Some(401));
    assert!(!format!("{error} {error:?}").contains("not-the-device-secret"));
    assert!(fake.comfy().submitted().is_empty());
    Ok(())
}

#[tokio::test]
async fn jobs_falls_back_to_the_queue_count_only_on_501() -> anyhow::Result<()> {
    let fake = FakeOpenClaw::start().await?;
    let client = client(&fake);
    // Two prompts waiting: the fallback's count comes from the native `GET /api/prompt`.
    fake.comfy().set_paused(true);
    client.fire("invert", &inputs(1), "t-fallback-1", false).await?;
    client.fire("invert", &inputs(2), "t-fallback-2", false).await?;
    let view = client.jobs().await?;
    assert_eq!(view, JobsView::QueueOnly { queue_remaining: 2 }, "{view:?}");
    let paths: Vec<String> = fake.requests().into_iter().map(|r| r.path).collect();
    assert!(paths.iter().any(|p| p == "/openclaw/jobs"), "{paths:?}");
    fake.comfy().set_paused(false);

    let unavailable = FakeOpenClaw::builder().jobs(JobsMode::Unavailable).start().await?;
    let view = self::client(&unavailable).jobs().await?;
    assert!(matches!(view, JobsView::QueueOnly { .. }), "{view:?}");

    let envelope = FakeOpenClaw::builder().jobs(JobsMode::Envelope).start().await?;
    let client = self::client(&envelope);
    let FireOutcome::Triggered { prompt_id, .. } = client.fire("invert", &inputs(5), "t-jobs", false).await? else {
        panic!("not triggered")
    };
    let view = client.jobs().await?;
    let JobsView::Jobs { jobs, total } = view else { panic!("not the envelope: {view:?}") };
    assert!(total >= 1);
    assert!(jobs.iter().any(|j| j.id == prompt_id), "{jobs:?}");

    // Without the admin token: 403, which must not fall back.
    let anonymous = OpenClawClient::new(&envelope.base_url(), None, None)?;
    assert_eq!(anonymous.jobs().await.expect_err("403").status(), Some(403));
    Ok(())
}

#[tokio::test]
async fn approvals_list_approve_and_reject() -> anyhow::Result<()> {
    let fake = FakeOpenClaw::start().await?;
    let client = client(&fake);
    let first = fake.add_pending_approval("invert", inputs(255));
    let second = fake.add_pending_approval("invert", inputs(12_345));

    let pending = client.approvals(Some("pending")).await?;
    let ids: Vec<&str> = pending.iter().map(|a| a.approval_id.as_str()).collect();
    assert!(ids.contains(&first.as_str()) && ids.contains(&second.as_str()), "{ids:?}");
    assert!(pending.iter().all(|a| a.status == "pending" && a.template_id == "invert"));
    let request = fake.requests().into_iter().find(|r| r.path.starts_with("/openclaw/approvals")).expect("recorded");
    assert_eq!(request.admin_token.as_deref(), Some(ADMIN));

    let one = client.approval(&first).await?.expect("known approval");
    assert_eq!(one.inputs, inputs(255));
    assert_eq!(client.approval("apr_000000000000").await?, None);

    let approved = client.approve(&first, Some("gw-admin"), true).await?;
    assert!(approved.executed, "{approved:?}");
    let prompt_id = approved.prompt_id.clone().expect("executed prompt id");
    assert!(fake.comfy().submitted().iter().any(|p| p.prompt_id == prompt_id));
    if let Some(approval) = &approved.approval {
        assert_eq!(approval.status, "approved");
    }
    let after = client.approval(&first).await?.expect("still known");
    assert_eq!(after.status, "approved");
    assert_eq!(after.executed_prompt_id.as_deref(), Some(prompt_id.as_str()));

    let again = client.approve(&first, None, true).await.expect_err("already approved");
    assert_eq!(again.status(), Some(400));

    let rejected = client.reject(&second, Some("gw-admin"), Some("Rejected via chat")).await?;
    assert_eq!(rejected.approval_id, second);
    assert_eq!(rejected.status, "rejected");
    let request = fake.requests().into_iter().rfind(|r| r.path.ends_with("/reject")).expect("recorded");
    assert_eq!(request.body["actor"], json!("gw-admin"));

    assert!(client.approvals(Some("pending")).await?.is_empty());
    assert_eq!(client.approvals(None).await?.len(), 2);
    Ok(())
}

#[tokio::test]
async fn schedules_list_run_and_toggle() -> anyhow::Result<()> {
    let fake = FakeOpenClaw::start().await?;
    let client = client(&fake);
    let id = fake.add_schedule("gw cron test", "invert", "0 3 * * *", inputs(8_421_504));

    let schedules = client.schedules().await?;
    let schedule = schedules.iter().find(|s| s.schedule_id == id).expect("listed");
    assert_eq!(schedule.name, "gw cron test");
    assert_eq!(schedule.template_id, "invert");
    assert_eq!(schedule.cron_expr.as_deref(), Some("0 3 * * *"));
    assert!(schedule.enabled);

    client.run_schedule(&id).await?;
    assert_eq!(fake.schedule_runs(&id), 1);
    let error = client.run_schedule("sched_000000000000").await.expect_err("unknown schedule");
    assert_eq!(error.status(), Some(404));

    assert!(!client.toggle_schedule(&id).await?);
    assert!(!client.schedules().await?.iter().find(|s| s.schedule_id == id).expect("listed").enabled);
    assert!(client.toggle_schedule(&id).await?);
    Ok(())
}

#[tokio::test]
async fn traces_exist_only_for_bridge_submits() -> anyhow::Result<()> {
    let fake = FakeOpenClaw::start().await?;
    let client = client(&fake);

    let FireOutcome::Triggered { prompt_id, .. } = client.fire("invert", &inputs(6), "t-trace", false).await? else {
        panic!("not triggered")
    };
    assert_eq!(client.trace(&prompt_id).await?, None);
    assert_eq!(client.trace("nope").await?, None);

    let body = inputs(7);
    let submitted = client.bridge_submit(&submit(&body, "k-trace")).await?;
    let prompt_id = submitted.prompt_id.expect("prompt id");
    let trace = client.trace(&prompt_id).await?.expect("bridge prompts have a trace");
    assert_eq!(trace.prompt_id, prompt_id);
    assert_eq!(trace.trace_id, submitted.trace_id);
    assert!(trace.events.iter().any(|e| e.event == "queued"), "{trace:?}");
    Ok(())
}

#[tokio::test]
async fn a_dead_server_is_a_transient_transport_error() -> anyhow::Result<()> {
    let fake = FakeOpenClaw::start().await?;
    let client = client(&fake).with_timeout(Duration::from_secs(2));
    client.health().await?;

    fake.comfy().kill();
    let error = client.health().await.expect_err("server gone");
    assert!(matches!(error, OpenClawError::Transport { .. }), "{error:?}");
    assert!(error.is_transient());
    assert_eq!(error.status(), None);
    let error = client.jobs().await.expect_err("server gone");
    assert!(matches!(error, OpenClawError::Transport { .. }), "no fallback on transport errors: {error:?}");

    fake.comfy().restart().await?;
    client.health().await?;
    Ok(())
}

#[tokio::test]
async fn a_comfyui_without_the_extension_is_refused_not_absent() -> anyhow::Result<()> {
    let comfy = clawgate_testkit::fake_comfy::FakeComfy::start().await?;
    let client = OpenClawClient::new(&comfy.base_url(), Some(ADMIN.into()), None)?;
    // A 404 without a JSON body is the route missing, not "no such approval / trace".
    assert_eq!(client.approval("apr_000000000000").await.expect_err("no route").status(), Some(404));
    assert_eq!(client.trace("p").await.expect_err("no route").status(), Some(404));
    assert_eq!(client.jobs().await.expect_err("no fallback on 404").status(), Some(404));
    Ok(())
}

/// Serves one connection with `response`, returning the base URL and the request head received.
async fn one_shot(response: String) -> anyhow::Result<(String, tokio::task::JoinHandle<String>)> {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
    let url = format!("http://{}", listener.local_addr()?);
    let task = tokio::spawn(async move {
        let Ok((mut socket, _)) = listener.accept().await else { return String::new() };
        let mut head = Vec::new();
        let mut buf = [0u8; 4096];
        while !head.windows(4).any(|w| w == b"\r\n\r\n") {
            match socket.read(&mut buf).await {
                Ok(0) | Err(_) => break,
                Ok(n) => head.extend_from_slice(&buf[..n]),
            }
        }
        let _ = socket.write_all(response.as_bytes()).await;
        let _ = socket.shutdown().await;
        String::from_utf8_lossy(&head).to_lowercase()
    });
    Ok((url, task))
}

#[tokio::test]
async fn headers_redirects_204_and_retry_after() -> anyhow::Result<()> {
    // A redirect is not followed (it would carry the admin token elsewhere).
    let (url, head) = one_shot(
        "HTTP/1.1 302 Found\r\nLocation: http://127.0.0.1:9/steal\r\nContent-Length: 0\r\nConnection: close\r\n\r\n"
            .into(),
    )
    .await?;
    let client = OpenClawClient::new(&url, Some(ADMIN.into()), None)?;
    let error = client.health().await.expect_err("302");
    assert!(matches!(&error, OpenClawError::Refused { status: 302, error, .. } if error == "HTTP 302"), "{error:?}");
    let head = head.await?;
    assert!(head.starts_with("get /openclaw/health http/1.1"), "{head}");
    assert!(head.contains(&format!("user-agent: clawgate/{}", env!("CARGO_PKG_VERSION"))), "{head}");
    assert!(head.contains(&format!("x-openclaw-admin-token: {ADMIN}")), "{head}");

    // 204 is not a success, as for the connector.
    let (url, _head) = one_shot("HTTP/1.1 204 No Content\r\nConnection: close\r\n\r\n".into()).await?;
    let error = OpenClawClient::new(&url, None, None)?.schedules().await.expect_err("204");
    assert_eq!(error.status(), Some(204));

    // 429 with Retry-After, and the obs token on templates.
    let body = r#"{"error": "Rate limit exceeded", "code": "rate_limit_exceeded", "retry_after_sec": 2}"#;
    let (url, head) = one_shot(format!(
        "HTTP/1.1 429 Too Many Requests\r\nRetry-After: 3\r\nContent-Type: application/json\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
        body.len()
    ))
    .await?;
    let client = OpenClawClient::new(&url, None, None)?.with_obs_token(Some("obs-token-789".into()));
    let error = client.templates().await.expect_err("429");
    match &error {
        OpenClawError::Refused { status: 429, error, retry_after, .. } => {
            assert_eq!(error, "Rate limit exceeded");
            assert_eq!(*retry_after, Some(Duration::from_secs(3)));
        }
        other => panic!("{other:?}"),
    }
    assert!(error.is_transient());
    let head = head.await?;
    assert!(head.contains("x-openclaw-obs-token: obs-token-789"), "{head}");
    assert!(!head.contains("x-openclaw-admin-token"), "{head}");

    // A success that is not JSON is malformed.
    let (url, _head) =
        one_shot("HTTP/1.1 200 OK\r\nContent-Length: 5\r\nConnection: close\r\n\r\nhello".into()).await?;
    let error = OpenClawClient::new(&url, None, None)?.health().await.expect_err("not JSON");
    assert!(matches!(error, OpenClawError::Malformed { .. }), "{error:?}");
    assert!(error.is_transient());
    Ok(())
}
