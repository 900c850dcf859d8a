//! `/run … --approval` end to end on every chat surface: Telegram, Discord, Slack (Events API over
//! HTTP), LINE, WhatsApp and the web chat (`chat.send`), each against the real binary with the
//! platform's fake, a [`FakeComfy`] worker and a model that must never be asked.
//!
//! The same scenario runs on each: a user who is not an admin asks for a run with approval and is
//! answered `[Approval Requested]` with an id; the admin hears of it where that platform lets a
//! bot reach them (a private message; on the web chat, `plugin.approval.requested` on their
//! connection), answers `/approve <id>` and gets `[Approved] <id>` / `Executed: <job>`; the job
//! runs on ComfyUI with the requester's prompt and its image reaches **the requester's** chat
//! (never the admin's), checked as a PNG wherever the fake keeps the bytes. A `/reject` stops a
//! held run for good. On WhatsApp an admin who has not written within 24 hours cannot be sent a
//! free-form notice: that failure is recorded once, in words, and not retried, and the admin
//! still finds the request with `/approvals` once they write.
//!
//! Each case starts its own fakes and gateway (own state directory); they share the binary. The
//! per-platform driving is one [`Platform`] implementation each, so the cases read the same.

use std::time::Duration;

use clawgate_testkit::fake_comfy::FakeComfy;
use clawgate_testkit::fake_openai::{FakeOpenAi, Script, Turn};
use clawgate_testkit::fake_whatsapp::{FakeWhatsApp, codes};
use clawgate_testkit::{RawClient, TestGateway, wait_until};
use serde_json::{Value, json};
use tempfile::TempDir;

const BIN: &str = env!("CARGO_BIN_EXE_clawgate");
const WAIT: Duration = Duration::from_secs(40);
/// What the requester asks for: a template that takes free text, a prompt, and `--approval`.
const PROMPT: &str = "a lighthouse at dusk";

fn run_command() -> String {
    format!("/run sketch {PROMPT} width=48 height=24 --approval")
}

/// The two people in every scenario.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Who {
    /// Asks for the run; not an admin, not trusted.
    Guest,
    /// Listed in `comfy.commands.adminUsers` for the platform.
    Admin,
}

/// One chat surface driven from the outside.
trait Platform {
    /// The platform's name, as chats and `comfy.commands.adminUsers` scope ids.
    const NAME: &'static str;
    /// Add what points the gateway at the fake (the `channels` section, `gateway.publicUrl`).
    fn configure(&self, cfg: &mut Value);
    /// The person's id on the platform.
    fn id(&self, who: Who) -> String;
    /// Once the gateway runs: point the fake at it and wait until the account is up.
    async fn attach(&self, gw: &TestGateway);
    /// `who` writes `text` in their private chat with the bot.
    async fn say(&self, gw: &TestGateway, who: Who, text: &str);
    /// Wait until the bot wrote, in `who`'s chat, a text containing `needle`; that text.
    async fn wait_text(&self, gw: &TestGateway, who: Who, needle: &str) -> String;
    /// Wait until an image reached `who`'s chat, and check it is the PNG ComfyUI made.
    async fn wait_image(&self, gw: &TestGateway, who: Who);
    /// How many images reached `who`'s chat so far.
    async fn images_to(&self, gw: &TestGateway, who: Who) -> usize;
    /// Wait until the admin was told of approval `id` (by default: a private message naming the
    /// requester, with the command that decides it).
    async fn wait_admin_notice(&self, gw: &TestGateway, id: &str) {
        let notice = self.wait_text(gw, Who::Admin, &format!("Approve: /approve {id}")).await;
        let by = format!("Requested by: {}:{}", Self::NAME, self.id(Who::Guest));
        assert!(notice.contains(&by) && notice.contains("Template: sketch"), "{notice}");
    }
}

/// A template that takes free text (a prompt input on a node ComfyUI does not need for the
/// image) around the weight-free invert workflow, in a directory of its own.
fn templates() -> TempDir {
    let dir = tempfile::tempdir().expect("a templates directory");
    let manifest = json!({"version": 1, "templates": {"sketch": {
        "path": "sketch.json",
        "description": "A solid colour image, inverted, with a caption prompt.",
        "allowed_inputs": ["prompt", "width", "height", "color"],
        "defaults": {"width": 64, "height": 64, "color": 3355443},
        "inputs": {
            "prompt": {"type": "string", "maxLength": 200},
            "width": {"type": "integer", "min": 1, "max": 512},
            "height": {"type": "integer", "min": 1, "max": 512},
            "color": {"type": "integer", "min": 0, "max": 16777215}
        }
    }}});
    let workflow = json!({
        "1": {"class_type": "EmptyImage",
              "inputs": {"width": "{{width}}", "height": "{{height}}", "batch_size": 1, "color": "{{color}}"}},
        "2": {"class_type": "ImageInvert", "inputs": {"image": ["1", 0]}},
        "3": {"class_type": "SaveImage", "inputs": {"images": ["2", 0], "filename_prefix": "sketch"}},
        "4": {"class_type": "CLIPTextEncode", "inputs": {"text": "{{prompt}}"}}
    });
    std::fs::write(dir.path().join("manifest.json"), manifest.to_string()).expect("manifest");
    std::fs::write(dir.path().join("sketch.json"), workflow.to_string()).expect("workflow");
    dir
}

/// Everything a case runs against; dropping it stops the gateway and the fakes.
struct World {
    gw: TestGateway,
    comfy: FakeComfy,
    model: FakeOpenAi,
    _templates: TempDir,
}

async fn start<P: Platform>(p: &P) -> World {
    let model = FakeOpenAi::start(Script::always(Turn::echo("echo: "))).await.expect("fake model");
    let comfy = FakeComfy::start().await.expect("fake ComfyUI");
    let templates = templates();
    let mut cfg = json!({
        "models": {"providers": {"fake": {"baseUrl": model.base_url(), "apiKey": "k", "api": "openai-completions",
                                          "models": [{"id": "m"}]}}},
        "agents": {"defaults": {"model": {"primary": "fake/m"}}},
        "comfy": {"templatesDir": templates.path(),
                  "workers": [{"name": "w0", "url": comfy.base_url(), "maxConcurrent": 1}],
                  "commands": {"adminUsers": [format!("{}:{}", P::NAME, p.id(Who::Admin))]}},
    });
    p.configure(&mut cfg);
    let gw = TestGateway::builder(BIN).config(cfg.to_string()).start().await.expect("starting clawgate");
    p.attach(&gw).await;
    World { gw, comfy, model, _templates: templates }
}

/// The `ID: ` line of a reply.
fn id_in(text: &str) -> String {
    text.lines()
        .find_map(|l| l.strip_prefix("ID: "))
        .unwrap_or_else(|| panic!("no ID line in {text:?}"))
        .trim()
        .to_owned()
}

async fn call(gw: &TestGateway, method: &str, params: Value) -> Value {
    let mut c = RawClient::connect(&gw.ws_url()).await.expect("ws");
    c.handshake(gw.token(), &json!({})).await.expect("handshake");
    let res = c.request(method, Some(params)).await.expect(method);
    assert_eq!(res["ok"], true, "{method}: {res}");
    res["payload"].clone()
}

async fn wait_job(gw: &TestGateway, id: &str, status: &str) -> Value {
    wait_until(WAIT, format_args!("job {id} is {status}"), || async {
        let job = call(gw, "comfy.jobs.get", json!({"jobId": id})).await["job"].clone();
        (job["status"] == status).then_some(job)
    })
    .await
    .unwrap()
}

/// The `channels.status` entry of the platform's account, once it satisfies `pred`.
async fn account_where(gw: &TestGateway, channel: &str, what: &str, pred: impl Fn(&Value) -> bool) -> Value {
    wait_until(WAIT, what, || async {
        let acct = call(gw, "channels.status", json!({})).await["channelAccounts"][channel][0].clone();
        pred(&acct).then_some(acct)
    })
    .await
    .unwrap()
}

fn is_png(bytes: &[u8]) -> bool {
    bytes.starts_with(b"\x89PNG\r\n\x1a\n") && bytes.len() > 50
}

/// The guest asks for a held run; the approval id and its job id, once the job is stored as held.
async fn held_run<P: Platform>(p: &P, w: &World) -> (String, String) {
    p.say(&w.gw, Who::Guest, &run_command()).await;
    let reply = p.wait_text(&w.gw, Who::Guest, "[Approval Requested]").await;
    let id = id_in(&reply);
    assert!(id.starts_with("apr_"), "{reply}");
    let job = reply.lines().find_map(|l| l.strip_prefix("Trace: ")).expect("the job as its trace").trim().to_owned();
    assert!(reply.lines().any(|l| l.starts_with("Expires: ")), "{reply}");
    wait_job(&w.gw, &job, "awaiting_approval").await;
    (id, job)
}

/// The whole approval round trip on one platform.
async fn approval_round_trip<P: Platform>(p: P) {
    let w = start(&p).await;
    // The admin has talked to the bot before (LINE pushes only to users who did, WhatsApp only
    // within 24 hours of their last message).
    p.say(&w.gw, Who::Admin, "/help").await;
    p.wait_text(&w.gw, Who::Admin, "/approve").await;

    let (id, job) = held_run(&p, &w).await;
    p.wait_admin_notice(&w.gw, &id).await;
    assert!(w.comfy.submitted().is_empty(), "nothing runs before the approval");

    p.say(&w.gw, Who::Admin, &format!("/approve {id}")).await;
    let approved = p.wait_text(&w.gw, Who::Admin, &format!("[Approved] {id}")).await;
    assert_eq!(approved, format!("[Approved] {id}\nExecuted: {job}"));

    p.wait_image(&w.gw, Who::Guest).await;
    let done = p.wait_text(&w.gw, Who::Guest, "[Job Completed]").await;
    assert!(done.contains(&format!("ID: {job}")) && done.contains("Images: 1"), "{done}");
    let ran = w.comfy.submitted();
    assert_eq!(ran.len(), 1, "{ran:?}");
    assert_eq!(ran[0].prompt["4"]["inputs"]["text"], PROMPT, "the requester's prompt ran: {}", ran[0].prompt);
    assert_eq!(ran[0].prompt["1"]["inputs"]["width"], 48);
    assert_eq!(p.images_to(&w.gw, Who::Admin).await, 0, "the image went to the requester, not the approver");
    assert!(w.model.chat_requests().is_empty(), "commands never reach the model");
}

// ---------------------------------------------------------------------------------------------
// WhatsApp

/// WhatsApp Cloud API: both people write to the business number; replies and notices are Graph
/// sends to their `wa_id`, images go up to `/media` first and are sent by id.
struct WhatsApp {
    wa: FakeWhatsApp,
}

impl WhatsApp {
    async fn new() -> Self {
        Self { wa: FakeWhatsApp::start().await.expect("fake Graph API") }
    }
}

impl Platform for WhatsApp {
    const NAME: &'static str = "whatsapp";

    fn configure(&self, cfg: &mut Value) {
        let mut account = self.wa.account_config();
        account["dmPolicy"] = json!("open");
        cfg["channels"] = json!({"whatsapp": account});
    }

    fn id(&self, who: Who) -> String {
        match who {
            Who::Guest => "15550201".into(),
            Who::Admin => "15550100".into(),
        }
    }

    async fn attach(&self, gw: &TestGateway) {
        self.wa.set_callback(format!("{}/whatsapp/webhook", gw.http_url()));
        account_where(gw, "whatsapp", "the whatsapp account is connected", |a| a["connected"] == true).await;
    }

    async fn say(&self, _gw: &TestGateway, who: Who, text: &str) {
        let (_, status) = self.wa.post_text(&self.id(who), "Someone", text).await.expect("webhook");
        assert_eq!(status, 200);
    }

    async fn wait_text(&self, _gw: &TestGateway, who: Who, needle: &str) -> String {
        let to = self.id(who);
        let sent = self
            .wa
            .wait_for(
                |c| c.is_accepted_send() && c.to() == Some(&to) && c.text().is_some_and(|t| t.contains(needle)),
                WAIT,
            )
            .await
            .unwrap_or_else(|e| panic!("no text with {needle:?} to {to}: {e:#}"));
        sent.text().unwrap_or_default().to_owned()
    }

    async fn wait_image(&self, _gw: &TestGateway, who: Who) {
        let to = self.id(who);
        let image = self
            .wa
            .wait_for(|c| c.is_accepted_send() && c.to() == Some(&to) && c.kind() == "image", WAIT)
            .await
            .expect("an image is delivered");
        let id = image.body["image"]["id"].as_str().expect("sent by media id, after an upload");
        let upload = self.wa.media(id).expect("the media id came from an upload");
        assert_eq!(upload.mime_type, "image/png");
        assert!(is_png(&upload.data), "the PNG ComfyUI made");
    }

    async fn images_to(&self, _gw: &TestGateway, who: Who) -> usize {
        self.wa.sends_to(&self.id(who)).iter().filter(|c| c.is_accepted_send() && c.kind() == "image").count()
    }
}

#[tokio::test]
async fn whatsapp_admins_are_told_and_their_approval_delivers_to_the_requester() {
    approval_round_trip(WhatsApp::new().await).await;
}

/// The admin has never written to the business number, so WhatsApp refuses a free-form notice
/// (131047): the outbox records one permanent failure that says why, sends it once, and the
/// requester's flow goes on; once the admin writes, `/approvals` shows the request and their
/// `/approve` works.
#[tokio::test]
async fn a_whatsapp_admin_outside_the_24_hour_window_is_a_recorded_permanent_failure() {
    let p = WhatsApp::new().await;
    let w = start(&p).await;
    let admin = p.id(Who::Admin);
    let (id, job) = held_run(&p, &w).await;

    let refused = p.wa.wait_for(|c| c.is_send() && c.to() == Some(&admin), WAIT).await.expect("the notice is tried");
    assert_eq!(refused.error_code(), Some(codes::RE_ENGAGEMENT), "{refused:?}");
    assert!(refused.text().is_some_and(|t| t.contains(&format!("/approve {id}"))), "{refused:?}");
    let acct = account_where(&w.gw, "whatsapp", "the failure is recorded", |a| a["outbox"]["failed"] == 1).await;
    let err = acct["lastError"].as_str().unwrap_or_default();
    assert!(err.contains("24-hour") && err.contains(&admin) && err.contains("not retried"), "{acct}");

    // The admin writes now: the request is listed for them and their approval runs it. Their
    // messages are answered through the same outbox, after the failed notice.
    p.say(&w.gw, Who::Admin, "/approvals").await;
    let listed = p.wait_text(&w.gw, Who::Admin, "Pending Approvals").await;
    assert!(listed.contains(&id) && listed.contains(&format!("by=whatsapp:{}", p.id(Who::Guest))), "{listed}");
    p.say(&w.gw, Who::Admin, &format!("/approve {id}")).await;
    let approved = p.wait_text(&w.gw, Who::Admin, &format!("[Approved] {id}")).await;
    assert_eq!(approved, format!("[Approved] {id}\nExecuted: {job}"));
    p.wait_image(&w.gw, Who::Guest).await;
    p.wait_text(&w.gw, Who::Guest, "[Job Completed]").await;

    let tries: Vec<_> = p.wa.sends_to(&admin).into_iter().filter(|c| c.error_code().is_some()).collect();
    assert_eq!(tries.len(), 1, "a closed window is not retried: {tries:?}");
    let acct = account_where(&w.gw, "whatsapp", "status", |_| true).await;
    assert_eq!(acct["outbox"]["failed"], 1, "{acct}");
}
