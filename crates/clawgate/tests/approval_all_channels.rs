//! `/run … --approval` end to end on every chat surface: Telegram, Discord, Slack (Events API over
//! HTTP, and Socket Mode), LINE, WhatsApp and the web chat (`chat.send`), each against the real
//! binary with the platform's fake, a [`FakeComfy`] worker and a model that must never be asked.
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
use clawgate_testkit::fake_discord::{FakeDiscord, FakeUser as DiscordUser};
use clawgate_testkit::fake_line::{FAILED_TO_SEND, FakeLine, Source, line_id};
use clawgate_testkit::fake_openai::{FakeOpenAi, Script, Turn};
use clawgate_testkit::fake_slack::FakeSlack;
use clawgate_testkit::fake_telegram::FakeTelegram;
use clawgate_testkit::fake_whatsapp::{FakeWhatsApp, codes};
use clawgate_testkit::raw::Incoming;
use clawgate_testkit::{RawClient, TestGateway, eventually, wait_until};
use serde_json::{Value, json};
use tempfile::TempDir;

const BIN: &str = env!("CARGO_BIN_EXE_clawgate");
const WAIT: Duration = Duration::from_secs(40);
/// The HTTPS origin a reverse proxy would give the gateway (LINE fetches images from it; its fake
/// maps it to the gateway's loopback port).
const PUBLIC: &str = "https://clawgate.example";
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
    /// The admin as `comfy.commands.adminUsers` lists them.
    fn admin_entry(&self) -> String {
        format!("{}:{}", Self::NAME, self.id(Who::Admin))
    }
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
                  "commands": {"adminUsers": [p.admin_entry()]}},
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

/// A rejected run never runs, and the reason is kept.
async fn rejection<P: Platform>(p: P) {
    let w = start(&p).await;
    p.say(&w.gw, Who::Admin, "/help").await;
    p.wait_text(&w.gw, Who::Admin, "/reject").await;
    let (id, job) = held_run(&p, &w).await;
    p.wait_admin_notice(&w.gw, &id).await;
    p.say(&w.gw, Who::Admin, &format!("/reject {id} not tonight")).await;
    let rejected = p.wait_text(&w.gw, Who::Admin, &format!("[Rejected] {id}")).await;
    assert_eq!(rejected, format!("[Rejected] {id}\nReason: not tonight"));
    // The requester is told in their own chat, with the reason.
    let told = p.wait_text(&w.gw, Who::Guest, &format!("[Rejected] {id}")).await;
    assert_eq!(told, format!("[Rejected] {id}\nReason: not tonight\nYour /run sketch was not approved."));
    // Cancelled is terminal: the dispatcher never takes it.
    wait_job(&w.gw, &job, "cancelled").await;
    // Deciding again finds nothing pending.
    p.say(&w.gw, Who::Admin, &format!("/approve {id}")).await;
    p.wait_text(&w.gw, Who::Admin, &format!("no pending approval {id}")).await;
    assert!(w.comfy.submitted().is_empty(), "the rejected job never ran");
    assert_eq!(p.images_to(&w.gw, Who::Guest).await, 0);
}

// ---------------------------------------------------------------------------------------------
// WhatsApp

/// WhatsApp Cloud API: both people write to the business number; replies and notices are Graph
/// sends to their `wa_id`, images go up to `/media` first and are sent by id.
struct WhatsApp {
    wa: FakeWhatsApp,
    /// The admin's number as `adminUsers` lists it (people write it with a `+`).
    admin_entry: String,
}

impl WhatsApp {
    async fn new() -> Self {
        Self::listing_admin_as("whatsapp:15550100").await
    }

    async fn listing_admin_as(entry: &str) -> Self {
        Self { wa: FakeWhatsApp::start().await.expect("fake Graph API"), admin_entry: entry.to_owned() }
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

    fn admin_entry(&self) -> String {
        self.admin_entry.clone()
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
/// `/approve` works. The admin is listed as people write numbers, with a `+`.
#[tokio::test]
async fn a_whatsapp_admin_outside_the_24_hour_window_is_a_recorded_permanent_failure() {
    let p = WhatsApp::listing_admin_as("whatsapp:+15550100").await;
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

// ---------------------------------------------------------------------------------------------
// Telegram

/// Telegram long polling: a user's id is also their private chat's id.
struct Telegram {
    tg: FakeTelegram,
}

impl Telegram {
    async fn new() -> Self {
        Self { tg: FakeTelegram::start().await.expect("fake Bot API") }
    }

    fn chat(who: Who) -> i64 {
        match who {
            Who::Guest => 200,
            Who::Admin => 100,
        }
    }
}

impl Platform for Telegram {
    const NAME: &'static str = "telegram";

    fn configure(&self, cfg: &mut Value) {
        cfg["channels"] = json!({"telegram": {"botToken": self.tg.token(), "apiRoot": self.tg.api_root(),
                                              "pollTimeoutSeconds": 1, "dmPolicy": "open"}});
    }

    fn id(&self, who: Who) -> String {
        Self::chat(who).to_string()
    }

    async fn attach(&self, gw: &TestGateway) {
        account_where(gw, "telegram", "the telegram account is connected", |a| a["connected"] == true).await;
    }

    async fn say(&self, _gw: &TestGateway, who: Who, text: &str) {
        let name = if who == Who::Admin { "admin" } else { "guest" };
        self.tg.push_private_message(Self::chat(who), name, text);
    }

    async fn wait_text(&self, _gw: &TestGateway, who: Who, needle: &str) -> String {
        let chat = Self::chat(who);
        let sent = self
            .tg
            .wait_for_sent(
                |c| {
                    c.is("sendMessage")
                        && c.status == 200
                        && c.param_i64("chat_id") == Some(chat)
                        && c.param_str("text").is_some_and(|t| t.contains(needle))
                },
                WAIT,
            )
            .await
            .unwrap_or_else(|e| panic!("no text with {needle:?} to {chat}: {e:#}"));
        sent.param_str("text").unwrap_or_default()
    }

    async fn wait_image(&self, _gw: &TestGateway, who: Who) {
        let chat = Self::chat(who);
        let photo = self
            .tg
            .wait_for_sent(|c| c.is("sendPhoto") && c.status == 200 && c.param_i64("chat_id") == Some(chat), WAIT)
            .await
            .expect("an image is delivered");
        // The fake keeps the size and type of an upload, not its bytes.
        assert_eq!(photo.files.len(), 1, "{photo:?}");
        assert!(photo.files[0].len > 50, "a real image: {:?}", photo.files[0]);
    }

    async fn images_to(&self, _gw: &TestGateway, who: Who) -> usize {
        let chat = Self::chat(who);
        self.tg.calls("sendPhoto").iter().filter(|c| c.status == 200 && c.param_i64("chat_id") == Some(chat)).count()
    }
}

#[tokio::test]
async fn telegram_admins_are_told_and_their_approval_delivers_to_the_requester() {
    approval_round_trip(Telegram::new().await).await;
}

// ---------------------------------------------------------------------------------------------
// Discord

/// Discord: each person writes in their DM channel with the bot; the admin's notice goes to the
/// DM channel the gateway opens for them (`POST /users/@me/channels`).
struct Discord {
    dc: FakeDiscord,
}

const DISCORD_GUEST: &str = "230000000000000002";
const DISCORD_GUEST_DM: &str = "330000000000000002";
const DISCORD_ADMIN: &str = "230000000000000001";
const DISCORD_ADMIN_DM: &str = "330000000000000001";

impl Discord {
    async fn new() -> Self {
        Self { dc: FakeDiscord::start().await.expect("fake Discord") }
    }

    /// The channels that are `who`'s private chats with the bot.
    fn chats(&self, who: Who) -> Vec<String> {
        match who {
            Who::Guest => vec![DISCORD_GUEST_DM.to_owned()],
            Who::Admin => {
                let mut chats = vec![DISCORD_ADMIN_DM.to_owned()];
                chats.extend(self.dc.dm_channel_of(DISCORD_ADMIN));
                chats
            }
        }
    }

    fn sent_to(&self, who: Who) -> Vec<clawgate_testkit::fake_discord::SentMessage> {
        let chats = self.chats(who);
        self.dc.sent_messages().into_iter().filter(|m| chats.contains(&m.channel_id)).collect()
    }
}

impl Platform for Discord {
    const NAME: &'static str = "discord";

    fn configure(&self, cfg: &mut Value) {
        cfg["channels"] = json!({"discord": {"token": self.dc.token(), "gatewayUrl": self.dc.gateway_url(),
                                             "apiRoot": self.dc.api_root(), "dmPolicy": "open"}});
    }

    fn id(&self, who: Who) -> String {
        match who {
            Who::Guest => DISCORD_GUEST.into(),
            Who::Admin => DISCORD_ADMIN.into(),
        }
    }

    async fn attach(&self, _gw: &TestGateway) {
        eventually(WAIT, "the gateway holds a Discord session", || {
            (self.dc.connection_count() > 0 && self.dc.is_session_bound()).then_some(())
        })
        .await
        .unwrap();
    }

    async fn say(&self, _gw: &TestGateway, who: Who, text: &str) {
        // The admin answers in the DM the notice came in, once there is one.
        let chat = self.chats(who).pop().expect("a chat");
        let author = DiscordUser::new(self.id(who), if who == Who::Admin { "admin" } else { "guest" });
        self.dc.push_message_create(&chat, None, &author, text, &[]);
    }

    async fn wait_text(&self, _gw: &TestGateway, who: Who, needle: &str) -> String {
        let find = || {
            self.sent_to(who).into_iter().find_map(|m| m.content().filter(|c| c.contains(needle)).map(str::to_owned))
        };
        eventually(WAIT, format!("{needle:?} sent to the {who:?}"), find).await.unwrap()
    }

    async fn wait_image(&self, _gw: &TestGateway, who: Who) {
        let found = eventually(WAIT, "an image is delivered", || {
            self.sent_to(who).into_iter().find(|m| m.status == 200 && !m.files.is_empty())
        })
        .await
        .unwrap();
        assert!(is_png(&found.files[0].data), "the PNG ComfyUI made: {:?}", found.files[0].filename);
    }

    async fn images_to(&self, _gw: &TestGateway, who: Who) -> usize {
        self.sent_to(who).iter().filter(|m| m.status == 200 && !m.files.is_empty()).count()
    }
}

#[tokio::test]
async fn discord_admins_are_told_and_their_approval_delivers_to_the_requester() {
    approval_round_trip(Discord::new().await).await;
}

// ---------------------------------------------------------------------------------------------
// Slack

/// Slack over the Events API (HTTP mode: the fake signs each event and posts it to the gateway's
/// port) or Socket Mode (the gateway holds a socket on the fake and acks envelopes). The admin's
/// notice is posted to their user id (Slack puts it in the app's DM with them).
struct Slack {
    slack: FakeSlack,
    socket_mode: bool,
}

const SLACK_GUEST: &str = "U0GUEST";
const SLACK_GUEST_DM: &str = "D0GUEST";
const SLACK_ADMIN: &str = "U0ADMIN";
const SLACK_ADMIN_DM: &str = "D0ADMIN";

impl Slack {
    async fn new(socket_mode: bool) -> Self {
        Self { slack: FakeSlack::start().await.expect("fake Slack"), socket_mode }
    }

    /// Conversations that reach `who` privately: their DM with the app, and their user id.
    fn chats(who: Who) -> [&'static str; 2] {
        match who {
            Who::Guest => [SLACK_GUEST_DM, SLACK_GUEST],
            Who::Admin => [SLACK_ADMIN_DM, SLACK_ADMIN],
        }
    }
}

impl Platform for Slack {
    const NAME: &'static str = "slack";

    fn configure(&self, cfg: &mut Value) {
        let mut slack =
            json!({"botToken": self.slack.bot_token(), "apiRoot": self.slack.api_root(), "dmPolicy": "open"});
        if self.socket_mode {
            slack["mode"] = json!("socket");
            slack["appToken"] = json!(self.slack.app_token());
        } else {
            slack["mode"] = json!("http");
            slack["signingSecret"] = json!(self.slack.signing_secret());
        }
        cfg["channels"] = json!({"slack": slack});
    }

    fn id(&self, who: Who) -> String {
        Self::chats(who)[1].to_owned()
    }

    async fn attach(&self, gw: &TestGateway) {
        account_where(gw, "slack", "the slack account is connected", |a| a["connected"] == true).await;
    }

    async fn say(&self, gw: &TestGateway, who: Who, text: &str) {
        let [dm, user] = Self::chats(who);
        let body = self.slack.event_callback(self.slack.message(dm, "im", user, text));
        if self.socket_mode {
            self.slack.send_event(&body);
            return;
        }
        let answer = self.slack.push(&format!("{}/slack/events", gw.http_url()), &body, None).await.expect("push");
        assert_eq!(answer.status, 200, "{answer:?}");
    }

    async fn wait_text(&self, _gw: &TestGateway, who: Who, needle: &str) -> String {
        let chats = Self::chats(who);
        // Slack escapes `&`, `<` and `>` in what it stores; the needles here have none.
        let find =
            || self.slack.posted().into_iter().find(|p| chats.contains(&p.channel.as_str()) && p.text.contains(needle));
        eventually(WAIT, format!("{needle:?} posted to the {who:?}"), find).await.unwrap().text
    }

    async fn wait_image(&self, _gw: &TestGateway, who: Who) {
        let chats = Self::chats(who);
        let file = eventually(WAIT, "an image is shared", || {
            self.slack.files().into_iter().find(|f| f.channel.as_deref().is_some_and(|c| chats.contains(&c)))
        })
        .await
        .unwrap();
        assert!(file.is_png() && file.bytes.len() > 50, "the PNG ComfyUI made: {}", file.filename);
    }

    async fn images_to(&self, _gw: &TestGateway, who: Who) -> usize {
        let chats = Self::chats(who);
        self.slack.files().iter().filter(|f| f.channel.as_deref().is_some_and(|c| chats.contains(&c))).count()
    }
}

#[tokio::test]
async fn slack_admins_are_told_and_their_approval_delivers_to_the_requester() {
    approval_round_trip(Slack::new(false).await).await;
}

#[tokio::test]
async fn slack_socket_mode_admins_are_told_and_their_approval_delivers_to_the_requester() {
    approval_round_trip(Slack::new(true).await).await;
}

#[tokio::test]
async fn a_rejected_run_never_runs() {
    rejection(Slack::new(false).await).await;
}

// ---------------------------------------------------------------------------------------------
// LINE

/// LINE: signed webhooks from the fake platform; replies by reply token or push, images as
/// absolute HTTPS links under `gateway.publicUrl` that the fake fetches.
struct Line {
    line: FakeLine,
}

impl Line {
    async fn new() -> Self {
        Self { line: FakeLine::start().await.expect("fake LINE") }
    }

    fn source(who: Who) -> Source {
        Source::User(line_id('U', if who == Who::Admin { 1 } else { 2 }))
    }
}

impl Platform for Line {
    const NAME: &'static str = "line";

    fn configure(&self, cfg: &mut Value) {
        cfg["gateway"] = json!({"publicUrl": PUBLIC});
        cfg["channels"] = json!({"line": {"channelAccessToken": self.line.token(), "channelSecret": self.line.secret(),
                                          "apiRoot": self.line.api_root(), "dmPolicy": "open"}});
    }

    fn id(&self, who: Who) -> String {
        Self::source(who).chat_id().to_owned()
    }

    async fn attach(&self, gw: &TestGateway) {
        self.line.set_webhook(format!("{}/line/webhook", gw.http_url()));
        self.line.map_public_origin(PUBLIC, &gw.http_url());
        eventually(WAIT, "the LINE account starts", || {
            self.line.calls().iter().any(|c| c.endpoint == "info" && c.status == 200).then_some(())
        })
        .await
        .unwrap();
    }

    async fn say(&self, _gw: &TestGateway, who: Who, text: &str) {
        let out =
            self.line.post_events(&[self.line.text_event(&Self::source(who), text, false)]).await.expect("webhook");
        assert_eq!(out.status, Some(200), "{out:?}");
    }

    async fn wait_text(&self, _gw: &TestGateway, who: Who, needle: &str) -> String {
        let to = self.id(who);
        let d = self
            .line
            .wait_delivered(|d| d.to == to && d.text().is_some_and(|t| t.contains(needle)), WAIT)
            .await
            .unwrap_or_else(|e| panic!("no text with {needle:?} to {to}: {e:#}"));
        d.text().unwrap_or_default().to_owned()
    }

    async fn wait_image(&self, _gw: &TestGateway, who: Who) {
        let to = self.id(who);
        let image =
            self.line.wait_delivered(|d| d.to == to && d.message["type"] == "image", WAIT).await.expect("an image");
        let url = image.message["originalContentUrl"].as_str().unwrap_or_default();
        assert!(url.starts_with(&format!("{PUBLIC}/media/")), "an absolute HTTPS link: {url}");
        // LINE fetches the original and the preview.
        let fetched = self.line.wait_fetched(2, WAIT).await.expect("LINE fetches the image");
        for f in &fetched {
            assert_eq!((f.status, f.error.as_deref(), f.is_png), (Some(200), None, true), "{f:?}");
        }
    }

    async fn images_to(&self, _gw: &TestGateway, who: Who) -> usize {
        let to = self.id(who);
        self.line.delivered().iter().filter(|d| d.to == to && d.message["type"] == "image").count()
    }
}

#[tokio::test]
async fn line_admins_are_told_and_their_approval_delivers_to_the_requester() {
    approval_round_trip(Line::new().await).await;
}

/// LINE pushes only to users who added the bot as a friend: an admin who never did cannot be
/// told. The push is refused once and recorded as a permanent failure for that chat; the
/// requester is answered all the same.
#[tokio::test]
async fn a_line_admin_the_bot_cannot_reach_is_a_recorded_permanent_failure() {
    let p = Line::new().await;
    let w = start(&p).await;
    let admin = p.id(Who::Admin);
    let (id, _job) = held_run(&p, &w).await;
    let refused = p
        .line
        .wait_call(|c| c.endpoint == "push" && c.body["to"] == admin.as_str(), WAIT)
        .await
        .expect("the notice is tried");
    assert_eq!((refused.status, refused.response["message"].as_str()), (400, Some(FAILED_TO_SEND)), "{refused:?}");
    assert!(refused.body.to_string().contains(&format!("/approve {id}")), "{refused:?}");
    let acct = account_where(&w.gw, "line", "the failure is recorded", |a| a["outbox"]["failed"] == 1).await;
    let err = acct["lastError"].as_str().unwrap_or_default();
    assert!(err.contains(&admin) && err.contains("LINE refused the message"), "{acct}");
    // Later traffic goes on, and the notice is not pushed again.
    p.say(&w.gw, Who::Guest, "/approvals").await;
    p.wait_text(&w.gw, Who::Guest, "[Access Denied]").await;
    let pushes = p.line.calls().into_iter().filter(|c| c.endpoint == "push" && c.body["to"] == admin.as_str()).count();
    assert_eq!(pushes, 1, "a refused push is not retried");
}

// ---------------------------------------------------------------------------------------------
// The web chat

/// The built-in web chat: `chat.send` over the gateway's WebSocket, each person in a session of
/// their own. Every `chat.send` client is an operator, so both may use admin commands; the guest
/// asks for approval with `--approval`. There is no private chat a bot writes to: the admin hears
/// of the request as `plugin.approval.requested` on their connection.
struct WebChat {
    /// The admin's open connection, which receives the approval events.
    admin: tokio::sync::Mutex<Option<RawClient>>,
    sent: std::sync::atomic::AtomicU32,
}

impl WebChat {
    fn new() -> Self {
        Self { admin: tokio::sync::Mutex::new(None), sent: std::sync::atomic::AtomicU32::new(0) }
    }

    fn session(who: Who) -> &'static str {
        match who {
            Who::Guest => "guest-chat",
            Who::Admin => "admin-chat",
        }
    }

    async fn history(gw: &TestGateway, who: Who) -> Vec<Value> {
        let h = call(gw, "chat.history", json!({"sessionKey": Self::session(who)})).await;
        h["messages"].as_array().cloned().unwrap_or_default()
    }

    /// The plain text of a display message.
    fn text_of(m: &Value) -> String {
        match &m["content"] {
            Value::String(s) => s.clone(),
            Value::Array(parts) => {
                parts.iter().filter(|p| p["type"] == "text").filter_map(|p| p["text"].as_str()).collect()
            }
            _ => String::new(),
        }
    }

    /// The image blocks of a display message.
    fn images(m: &Value) -> Vec<Value> {
        m["content"].as_array().into_iter().flatten().filter(|p| p["type"] == "image").cloned().collect()
    }
}

impl Platform for WebChat {
    const NAME: &'static str = "webchat";

    fn configure(&self, _cfg: &mut Value) {}

    fn id(&self, who: Who) -> String {
        Self::session(who).to_owned()
    }

    async fn attach(&self, gw: &TestGateway) {
        let mut c = RawClient::connect(&gw.ws_url()).await.expect("ws");
        c.handshake(gw.token(), &json!({})).await.expect("handshake");
        *self.admin.lock().await = Some(c);
    }

    async fn say(&self, gw: &TestGateway, who: Who, text: &str) {
        let n = self.sent.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        let ack = call(
            gw,
            "chat.send",
            json!({"sessionKey": Self::session(who), "message": text, "idempotencyKey": format!("web-{n}")}),
        )
        .await;
        assert_eq!(ack["status"], "ok", "{ack}");
    }

    async fn wait_text(&self, gw: &TestGateway, who: Who, needle: &str) -> String {
        wait_until(WAIT, format!("{needle:?} in the {who:?}'s session"), || async {
            Self::history(gw, who)
                .await
                .iter()
                .filter(|m| m["role"] == "assistant")
                .map(Self::text_of)
                .find(|t| t.contains(needle))
        })
        .await
        .unwrap()
    }

    async fn wait_image(&self, gw: &TestGateway, who: Who) {
        let url = wait_until(WAIT, format!("an image in the {who:?}'s session"), || async {
            let history = Self::history(gw, who).await;
            history.iter().flat_map(Self::images).find_map(|b| b["url"].as_str().map(str::to_owned))
        })
        .await
        .unwrap();
        assert!(url.starts_with("/media/"), "{url}");
        let res = reqwest::get(format!("{}{url}", gw.http_url())).await.expect("GET the image");
        assert_eq!(res.status(), 200);
        assert!(is_png(&res.bytes().await.expect("body")), "the PNG ComfyUI made");
    }

    async fn images_to(&self, gw: &TestGateway, who: Who) -> usize {
        Self::history(gw, who).await.iter().map(|m| Self::images(m).len()).sum()
    }

    async fn wait_admin_notice(&self, _gw: &TestGateway, id: &str) {
        let mut guard = self.admin.lock().await;
        let admin = guard.as_mut().expect("attached");
        let deadline = tokio::time::Instant::now() + WAIT;
        loop {
            let left = deadline.saturating_duration_since(tokio::time::Instant::now());
            let frame = match admin.recv(left).await.expect("plugin.approval.requested for the admin") {
                Incoming::Json(f) => f,
                other => panic!("{other:?}"),
            };
            if frame["event"] == "plugin.approval.requested" && frame["payload"]["id"] == id {
                let request = &frame["payload"]["request"];
                assert_eq!(request["title"], "Run ComfyUI template sketch", "{frame}");
                break;
            }
        }
    }
}

#[tokio::test]
async fn web_chat_admins_are_told_and_their_approval_delivers_to_the_requester() {
    approval_round_trip(WebChat::new()).await;
}
