//! WhatsApp Cloud API end to end: the real binary serves the webhook Meta calls and sends through
//! a [`FakeWhatsApp`] Graph API (contracts/whatsapp-cloud.md), answering with a fake model that
//! echoes each message. These tests check what a user and an operator notice: the console's
//! verification handshake, one reply per message however often Meta redelivers it, strangers and
//! forged requests get nothing, statuses make no turn, a closed 24-hour window is reported once
//! and not retried, rate limits are waited out, `/run` images arrive by upload, and a `kill -9`
//! between recording a message and answering it still gives exactly one reply.

use std::time::{Duration, SystemTime, UNIX_EPOCH};

use clawgate_testkit::fake_comfy::FakeComfy;
use clawgate_testkit::fake_openai::{FakeOpenAi, Script, Turn};
use clawgate_testkit::fake_whatsapp::{self, FakeWhatsApp, GraphError, codes};
use clawgate_testkit::{RawClient, TestGateway, wait_until};
use serde_json::{Value, json};

const BIN: &str = env!("CARGO_BIN_EXE_clawgate");
const WAIT: Duration = Duration::from_secs(40);
const OWNER: &str = "15550100";

async fn echo_model() -> FakeOpenAi {
    FakeOpenAi::start(Script::always(Turn::echo("echo: "))).await.expect("fake model")
}

fn templates_dir() -> String {
    format!("{}/../../templates", env!("CARGO_MANIFEST_DIR"))
}

/// A config with the WhatsApp account pointed at `wa` plus `settings`, and `extra` top-level
/// sections.
fn config(model: &FakeOpenAi, wa: &FakeWhatsApp, settings: Value, extra: Value) -> String {
    let mut whatsapp = wa.account_config();
    for (k, v) in settings.as_object().cloned().unwrap_or_default() {
        whatsapp[k] = v;
    }
    let mut cfg = json!({
        "models": {"providers": {"fake": {"baseUrl": model.base_url(), "apiKey": "k", "api": "openai-completions",
                                          "models": [{"id": "m"}]}}},
        "agents": {"defaults": {"model": {"primary": "fake/m"}}},
        "channels": {"whatsapp": whatsapp},
    });
    for (k, v) in extra.as_object().cloned().unwrap_or_default() {
        cfg[k] = v;
    }
    cfg.to_string()
}

/// Start the gateway, point the fake's callback URL at it, and wait until the account checked
/// its number (so webhooks reach it and replies can leave).
async fn start(config: String, wa: &FakeWhatsApp, env: &[(&str, &str)]) -> TestGateway {
    let mut b = TestGateway::builder(BIN).config(config);
    for (k, v) in env {
        b = b.env(*k, *v);
    }
    let gw = b.start().await.expect("starting clawgate");
    wa.set_callback(format!("{}/whatsapp/webhook", gw.http_url()));
    account_where(&gw, "the whatsapp account is connected", |a| a["connected"] == true).await;
    gw
}

async fn call(gw: &TestGateway, method: &str, params: Value) -> Value {
    let mut c = RawClient::connect(&gw.ws_url()).await.expect("ws");
    c.handshake(gw.token(), &json!({})).await.expect("handshake");
    let res = c.request(method, Some(params)).await.expect(method);
    assert_eq!(res["ok"], true, "{method}: {res}");
    res["payload"].clone()
}

/// Wait until the whatsapp account's `channels.status` entry satisfies `pred`; that entry.
async fn account_where(gw: &TestGateway, what: &str, pred: impl Fn(&Value) -> bool) -> Value {
    wait_until(WAIT, what, || async {
        let status = call(gw, "channels.status", json!({})).await;
        let acct = status["channelAccounts"]["whatsapp"][0].clone();
        pred(&acct).then_some(acct)
    })
    .await
    .unwrap()
}

async fn wait_text(wa: &FakeWhatsApp, to: &str, text: &str) {
    wa.wait_text(to, text, WAIT).await.unwrap_or_else(|e| panic!("no reply {text:?} to {to}: {e:#}"));
}

/// A message from an allowed sender after the input under test, answered. Webhooks are recorded
/// before their 200 and replies leave one outbox in order, so once this is answered whatever the
/// earlier input caused has been sent: a negative assertion about it can be made.
async fn answered_after(wa: &FakeWhatsApp, from: &str, marker: &str) {
    let (_, status) = wa.post_text(from, "Witness", marker).await.unwrap();
    assert_eq!(status, 200);
    wait_text(wa, from, &format!("echo: {marker}")).await;
}

fn unix_now() -> i64 {
    SystemTime::now().duration_since(UNIX_EPOCH).unwrap().as_secs() as i64
}

#[tokio::test]
async fn the_console_verification_echoes_the_challenge_only_for_the_right_token() {
    let model = echo_model().await;
    let wa = FakeWhatsApp::start().await.unwrap();
    let gw = start(config(&model, &wa, json!({"dmPolicy": "open"}), json!({})), &wa, &[]).await;
    let ok = wa.verify(fake_whatsapp::DEFAULT_VERIFY_TOKEN).await.unwrap();
    assert!(ok.accepted(), "{ok:?}");
    assert!(ok.content_type.as_deref().is_some_and(|t| t.starts_with("text/plain")), "{ok:?}");
    let wrong = wa.verify("not-the-verify-token").await.unwrap();
    assert_eq!(wrong.status, 403, "{wrong:?}");
    assert!(!wrong.body.contains(&wrong.challenge), "{wrong:?}");
    let acct = account_where(&gw, "status", |_| true).await;
    assert_eq!(acct["mode"], "webhook", "{acct}");
    assert_eq!(acct["botId"], fake_whatsapp::PHONE_NUMBER_ID, "{acct}");
    assert_eq!(acct["webhookPath"], "/whatsapp/webhook", "the path the callback URL must reach: {acct}");
}

#[tokio::test]
async fn a_dm_is_answered_once_and_strangers_and_statuses_make_no_turn() {
    let model = echo_model().await;
    let wa = FakeWhatsApp::start().await.unwrap();
    let settings = json!({"dmPolicy": "allowlist", "allowFrom": [format!("+{OWNER}")]});
    let gw = start(config(&model, &wa, settings, json!({})), &wa, &[]).await;

    let (wamid, status) = wa.post_text(OWNER, "Owner", "hello there ünïcode").await.unwrap();
    assert_eq!(status, 200);
    wait_text(&wa, OWNER, "echo: hello there ünïcode").await;
    let sessions = call(&gw, "sessions.list", json!({})).await;
    assert!(sessions.to_string().contains(&format!("agent:main:whatsapp:direct:{OWNER}")), "{sessions}");

    // A stranger (not in allowFrom) is dropped: no reply, no model call.
    assert_eq!(wa.post_text("15550999", "Stranger", "let me in").await.unwrap().1, 200);
    // Meta redelivers the first message: recorded once, answered once.
    assert_eq!(wa.redeliver(&wamid).await.unwrap(), 200);
    // Status-only webhooks for the reply: no turn.
    let reply = wa.sends_to(OWNER).into_iter().find(|c| c.status == 200).unwrap();
    for s in ["sent", "delivered", "read"] {
        assert_eq!(wa.post_status(reply.wamid().unwrap(), OWNER, s).await.unwrap(), 200);
    }
    answered_after(&wa, OWNER, "witness").await;
    assert!(wa.sends_to("15550999").is_empty(), "the stranger got nothing");
    assert_eq!(wa.texts_to(OWNER), vec!["echo: hello there ünïcode", "echo: witness"], "one reply per message");
    assert_eq!(model.chat_requests().len(), 2, "only the two allowed messages reached the model");

    let acct = account_where(&gw, "traffic shows", |a| a["lastOutboundAt"].is_i64()).await;
    assert!(acct["lastInboundAt"].is_i64(), "{acct}");
    assert_eq!(acct["lastError"], Value::Null, "{acct}");
}

#[tokio::test]
async fn forged_signatures_are_refused_before_parsing_without_a_log_line_each() {
    let model = echo_model().await;
    let wa = FakeWhatsApp::start().await.unwrap();
    let gw = start(config(&model, &wa, json!({"dmPolicy": "open"}), json!({})), &wa, &[]).await;
    // A real-looking message signed with the wrong secret, one without a signature, and bytes
    // that are not even JSON: all 401, so the signature is checked before the body is read.
    let forged = json!({"object": "whatsapp_business_account", "entry": [{"id": fake_whatsapp::WABA_ID, "changes": [
        {"field": "messages", "value": {"messaging_product": "whatsapp",
            "metadata": {"phone_number_id": fake_whatsapp::PHONE_NUMBER_ID},
            "messages": [{"from": "15550666", "id": "wamid.FORGED", "timestamp": unix_now().to_string(),
                          "type": "text", "text": {"body": "forged"}}]}}]}]})
    .to_string();
    assert_eq!(wa.post_forged(forged.as_bytes()).await.unwrap(), 401);
    assert_eq!(wa.post_unsigned(forged.as_bytes()).await.unwrap(), 401);
    assert_eq!(wa.post_forged(b"{not json").await.unwrap(), 401);
    assert_eq!(wa.post_forged(b"{not json either").await.unwrap(), 401);
    answered_after(&wa, OWNER, "still works").await;
    assert!(wa.sends_to("15550666").is_empty(), "nothing forged was answered");
    let log = gw.read_log();
    let lines = log.lines().filter(|l| l.contains("wrong secret refused")).count();
    assert_eq!(lines, 1, "one line when the address starts failing, not one per request:\n{log}");
    assert!(!log.contains("forged"), "the body of a refused request is never logged");
}

#[tokio::test]
async fn outside_the_24_hour_window_the_failure_is_reported_once_and_not_retried() {
    let model = echo_model().await;
    let wa = FakeWhatsApp::start().await.unwrap();
    let gw = start(config(&model, &wa, json!({"dmPolicy": "open"}), json!({})), &wa, &[]).await;
    // A message written 25 hours ago and delivered late: the reply falls outside the window.
    let late = unix_now() - 25 * 3600;
    assert_eq!(wa.post_text_at("15550201", "Late", "are you there", late).await.unwrap().1, 200);
    let acct = account_where(&gw, "the failure is reported", |a| a["outbox"]["failed"] == 1).await;
    let err = acct["lastError"].as_str().unwrap_or_default();
    assert!(err.contains("24-hour") && err.contains("15550201") && err.contains("not retried"), "{acct}");
    let tries = wa.sends_to("15550201");
    assert_eq!(tries.len(), 1, "a closed window is not retried: {tries:?}");
    assert_eq!(tries[0].error_code(), Some(codes::RE_ENGAGEMENT));
    // The log is written by a background writer: wait for the line rather than race it.
    wait_until(WAIT, "the log says it in words", || async {
        gw.read_log().contains("24-hour customer-service window").then_some(())
    })
    .await
    .unwrap();

    // The same failure reported later by a `failed` status webhook is reported too.
    wa.window_failures_async(true);
    assert_eq!(wa.post_text_at("15550202", "Later", "hello?", late).await.unwrap().1, 200);
    let acct = account_where(&gw, "the async failure is reported", |a| {
        a["lastError"].as_str().is_some_and(|e| e.contains("15550202") && e.contains("24-hour"))
    })
    .await;
    assert_eq!(acct["outbox"]["failed"], 1, "the send itself was accepted: {acct}");
    assert_eq!(wa.sends_to("15550202").len(), 1);
}

#[tokio::test]
async fn rate_limits_are_waited_out_and_the_message_delivered_once() {
    let model = echo_model().await;
    let wa = FakeWhatsApp::start().await.unwrap();
    let _gw = start(config(&model, &wa, json!({"dmPolicy": "open"}), json!({})), &wa, &[]).await;
    wa.fail_next(1, GraphError::rate_limit());
    wa.fail_next(1, GraphError::pair_rate_limit());
    assert_eq!(wa.post_text("15550301", "Busy", "slow down").await.unwrap().1, 200);
    wait_text(&wa, "15550301", "echo: slow down").await;
    let sends = wa.sends_to("15550301");
    let codes: Vec<Option<i64>> = sends.iter().map(|c| c.error_code()).collect();
    assert_eq!(codes, vec![Some(codes::RATE_LIMIT), Some(codes::PAIR_RATE_LIMIT), None], "{sends:?}");
    assert_eq!(wa.texts_to("15550301").len(), 1);
    // The pair limit (one message per 6 s to a user) was waited out, not hammered.
    let gap = sends[2].at.duration_since(sends[1].at);
    assert!(gap >= Duration::from_millis(5900), "waited {gap:?}");
}

#[tokio::test]
async fn run_delivers_the_image_by_upload() {
    let model = echo_model().await;
    let wa = FakeWhatsApp::start().await.unwrap();
    let comfy = FakeComfy::start().await.unwrap();
    let comfy_cfg = json!({"comfy": {"templatesDir": templates_dir(),
        "workers": [{"name": "w0", "url": comfy.base_url(), "maxConcurrent": 1}]}});
    let settings = json!({"dmPolicy": "allowlist", "allowFrom": [OWNER]});
    let _gw = start(config(&model, &wa, settings, comfy_cfg), &wa, &[]).await;
    assert_eq!(wa.post_text(OWNER, "Owner", "/run invert color=255 width=64 height=32").await.unwrap().1, 200);
    let image = wa
        .wait_for(|c| c.is_accepted_send() && c.to() == Some(OWNER) && c.kind() == "image", WAIT)
        .await
        .expect("an image is delivered");
    let id = image.body["image"]["id"].as_str().expect("sent by media id, after an upload");
    let upload = wa.media(id).expect("the media id came from an upload");
    assert_eq!(upload.mime_type, "image/png");
    assert!(upload.data.starts_with(b"\x89PNG\r\n\x1a\n") && upload.data.len() > 50, "a real PNG");
    wa.wait_for(|c| c.to() == Some(OWNER) && c.text().is_some_and(|t| t.contains("[Job Completed]")), WAIT)
        .await
        .expect("the job is reported done");
    assert!(wa.texts_to(OWNER).iter().any(|t| t.contains("[Job Submitted]")));
    assert!(model.chat_requests().is_empty(), "a command never reaches the model");
}

#[tokio::test]
async fn kill_9_between_the_inbox_write_and_the_reply_gives_exactly_one_reply() {
    let model = echo_model().await;
    let wa = FakeWhatsApp::start().await.unwrap();
    let cfg = config(&model, &wa, json!({"dmPolicy": "open"}), json!({}));
    let mut gw = start(cfg, &wa, &[("CLAWGATE_CRASH_AT", "inbox.recorded")]).await;
    // The gateway dies after recording the message and before answering the webhook: Meta sees
    // no 200 and redelivers until one comes.
    let posted = wa.post_text("15550401", "Crash", "survive this").await;
    assert!(posted.as_ref().map_or(true, |(_, s)| *s != 200), "no 200 from a process that died: {posted:?}");
    let status = gw.wait_exit(WAIT).await.expect("the crash point stops the gateway");
    assert!(!status.success());
    gw.set_env("CLAWGATE_CRASH_AT", None);
    gw.restart().await.expect("restart after the crash");
    let wamid = wa.sends_to("15550401").first().and_then(|c| c.wamid().map(str::to_owned));
    assert!(wamid.is_none(), "nothing was sent before the crash");
    let last = wa_last_message_id(&wa, "15550401");
    wa.redeliver_until_ok(&last, WAIT).await.expect("the redelivery is taken after the restart");
    wait_text(&wa, "15550401", "echo: survive this").await;
    answered_after(&wa, "15550402", "after the restart").await;
    assert_eq!(wa.texts_to("15550401"), vec!["echo: survive this"], "exactly one reply");
}

/// The `wamid` of the last message the fake posted from `from`.
fn wa_last_message_id(wa: &FakeWhatsApp, from: &str) -> String {
    wa.posted_from(from).pop().expect("a message was posted")
}
