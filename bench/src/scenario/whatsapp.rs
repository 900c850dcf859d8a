//! `whatsapp`: inbound WhatsApp message → reply through a gateway's WhatsApp channel, end to end.
//!
//! This tool plays Meta (contracts/whatsapp-cloud.md) the way `telegram` plays Telegram: a
//! zero-delay Graph API on 127.0.0.1 with only the calls the channel makes (`GET
//! /{version}/{phone-number-id}` to check the number, `POST /{version}/{phone-number-id}/messages`),
//! the gateway started with a generated config (`channels.whatsapp.apiRoot` pointing here,
//! `dmPolicy: "open"`, inbound rate limits off; no `gateway.publicUrl`, which only images need)
//! and the zero-delay fake model. Chat `i` is the user with `wa_id` `1555010<i>`, one session
//! each.
//!
//! Inbound is a webhook POST to the gateway's `/whatsapp/webhook`: one
//! `whatsapp_business_account` entry with one `messages` change per request, signed
//! `X-Hub-Signature-256: sha256=<hex HMAC-SHA256 of the raw body with the app secret>`, over
//! kept-alive connections; an answer other than 2xx fails the run. Ready = the number was checked
//! and the `GET` verification handshake echoed its `hub.challenge`, as Meta's console does it.
//!
//! A send must carry `messaging_product: "whatsapp"`, a text body of at most 4 096 characters,
//! and go to a user who wrote first (the 24-hour window; anyone else gets error 131047, counted).
//! Latency runs from the webhook POST written to the head of the accepted `/messages` call.

use std::collections::HashSet;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Instant;

use anyhow::{Result, bail};
use clap::Args;
use hmac::{Hmac, Mac};
use serde_json::{Value, json};
use sha2::Sha256;
use tokio::net::TcpListener;
use tokio::sync::mpsc;

use super::platform::{
    self, Answer, Api, Inbound, PlatformArgs, Reply, Run, WebhookClient, bearer, hex, report_memory, report_replies,
    unix_now,
};
use crate::http::Head;
use crate::report::Report;

const ACCESS_TOKEN: &str = "EAABenchWhatsAppSystemUserAccessToken0123456789";
const APP_SECRET: &str = "0b0b0b0bbenchwhatsappappsecret00";
const VERIFY_TOKEN: &str = "bench-verify-token";
const PHONE_NUMBER_ID: &str = "106540352242922";
const DISPLAY_NUMBER: &str = "15550783881";
const API_VERSION: &str = "v24.0";
const WEBHOOK_PATH: &str = "/whatsapp/webhook";
/// `wa_id` of chat 0.
const WA_BASE: u64 = 155_501_000_000;

#[derive(Args, Debug)]
pub struct WhatsappArgs {
    /// After each accepted send, POST this many delivery statuses for it (`sent`, `delivered`,
    /// `read`, in that order; 0 to 3), signed like every webhook, as Meta does: the load a
    /// production number puts on the webhook beside the messages themselves.
    #[arg(long, default_value_t = 0, value_parser = clap::value_parser!(u8).range(0..=3))]
    pub statuses: u8,
    #[command(flatten)]
    pub run: PlatformArgs,
}

fn wa_id(chat: usize) -> String {
    (WA_BASE + chat as u64).to_string()
}

fn chat_of(wa_id: &str) -> Option<usize> {
    usize::try_from(wa_id.parse::<u64>().ok()?.checked_sub(WA_BASE)?).ok()
}

/// `sha256=` + hex(HMAC-SHA256(app secret, body)), as Meta signs a webhook.
pub fn sign(secret: &str, body: &[u8]) -> String {
    let mut mac = <Hmac<Sha256> as Mac>::new_from_slice(secret.as_bytes()).expect("HMAC takes any key length");
    mac.update(body);
    format!("sha256={}", hex(&mac.finalize().into_bytes()))
}

/// A Graph error body.
fn graph_error(status: u16, code: i64, message: &str, details: &str) -> Answer {
    Answer::json(
        status,
        json!({"error": {"message": message, "type": "OAuthException", "code": code,
                         "error_data": {"messaging_product": "whatsapp", "details": details},
                         "fbtrace_id": "Bench0b0b0b0b"}})
        .to_string(),
    )
}

struct Meta {
    replies: mpsc::Sender<Reply>,
    webhook: Arc<WebhookClient>,
    /// Users who wrote (their 24-hour windows are open for the whole run).
    wrote: Mutex<HashSet<String>>,
    /// Delivery statuses posted per accepted send.
    statuses: u8,
    status_posts: Arc<AtomicU64>,
    next_message: AtomicU64,
    number_checks: AtomicU64,
    sends: AtomicU64,
    rejected_sends: AtomicU64,
    refused_calls: AtomicU64,
    other_calls: AtomicU64,
}

impl Meta {
    fn new(replies: mpsc::Sender<Reply>, webhook: Arc<WebhookClient>, statuses: u8) -> Self {
        Self {
            replies,
            webhook,
            wrote: Mutex::new(HashSet::new()),
            statuses,
            status_posts: Arc::new(AtomicU64::new(0)),
            next_message: AtomicU64::new(1),
            number_checks: AtomicU64::new(0),
            sends: AtomicU64::new(0),
            rejected_sends: AtomicU64::new(0),
            refused_calls: AtomicU64::new(0),
            other_calls: AtomicU64::new(0),
        }
    }

    async fn send_message(&self, arrived: Instant, body: &[u8]) -> Answer {
        self.sends.fetch_add(1, Ordering::Relaxed);
        let reject = |code, message: &str, details: &str| {
            self.rejected_sends.fetch_add(1, Ordering::Relaxed);
            graph_error(400, code, message, details)
        };
        let Ok(v) = serde_json::from_slice::<Value>(body) else {
            return reject(100, "(#100) Invalid parameter", "the body is not JSON");
        };
        if v["messaging_product"] != "whatsapp" {
            return reject(100, "(#100) Invalid parameter", "messaging_product must be whatsapp");
        }
        let Some(to) = v["to"].as_str() else { return reject(100, "(#100) Invalid parameter", "to is required") };
        match v["type"].as_str() {
            Some("text") => {
                let text = v["text"]["body"].as_str().unwrap_or_default();
                if text.is_empty() || text.chars().count() > 4096 {
                    return reject(100, "(#100) Invalid parameter", "text.body must be 1 to 4096 characters");
                }
            }
            Some("image") if v["image"]["link"].is_string() != v["image"]["id"].is_string() => {}
            _ => return reject(100, "(#100) Invalid parameter", "unsupported message type"),
        }
        if !self.wrote.lock().unwrap_or_else(PoisonError::into_inner).contains(to) {
            return reject(
                131047,
                "(#131047) Re-engagement message",
                "Message failed to send because more than 24 hours have passed since the customer last replied to this number.",
            );
        }
        // Bounded: the driver reads continuously; a full channel slows the gateway, visibly.
        let _ = self.replies.send(Reply { chat: chat_of(to), at: arrived }).await;
        let id = self.next_message.fetch_add(1, Ordering::Relaxed);
        let wamid = format!("wamid.HBgLMTU1NTAxMDBCENCH{id:012}");
        self.post_statuses(&wamid, to);
        Answer::json(
            200,
            json!({"messaging_product": "whatsapp", "contacts": [{"input": to, "wa_id": to}],
                   "messages": [{"id": wamid, "message_status": "accepted"}]})
            .to_string(),
        )
    }

    /// `--statuses` of `sent`, `delivered`, `read` for one accepted send, posted in order on a
    /// task of their own (Meta sends them after it answered the send).
    fn post_statuses(&self, wamid: &str, to: &str) {
        if self.statuses == 0 {
            return;
        }
        let (webhook, posted, n) = (self.webhook.clone(), self.status_posts.clone(), self.statuses as usize);
        let bodies: Vec<Vec<u8>> =
            ["sent", "delivered", "read"][..n].iter().map(|s| status_body(wamid, to, s)).collect();
        tokio::spawn(async move {
            for body in bodies {
                let headers =
                    [("content-type", "application/json".to_owned()), ("x-hub-signature-256", sign(APP_SECRET, &body))];
                // A failed POST is counted by the client as a refusal, which fails the run.
                if webhook.post(WEBHOOK_PATH, &headers, &body).await.is_ok() {
                    posted.fetch_add(1, Ordering::Relaxed);
                }
            }
        });
    }
}

/// A webhook body carrying one delivery status of a message we accepted.
fn status_body(wamid: &str, to: &str, status: &str) -> Vec<u8> {
    json!({"object": "whatsapp_business_account", "entry": [{"id": "102290129340398", "changes": [{
        "field": "messages",
        "value": {
            "messaging_product": "whatsapp",
            "metadata": {"display_phone_number": DISPLAY_NUMBER, "phone_number_id": PHONE_NUMBER_ID},
            "statuses": [{"id": wamid, "status": status, "timestamp": unix_now().to_string(), "recipient_id": to,
                          "conversation": {"id": "BENCHCONVERSATION", "origin": {"type": "service"}},
                          "pricing": {"billable": false, "pricing_model": "PMP", "category": "service"}}],
        },
    }]}]})
    .to_string()
    .into_bytes()
}

impl Api for Meta {
    async fn respond(&self, head: &Head, arrived: Instant, body: Vec<u8>) -> Answer {
        if bearer(head) != Some(ACCESS_TOKEN) {
            self.refused_calls.fetch_add(1, Ordering::Relaxed);
            let mut a = graph_error(401, 190, "Invalid OAuth access token - Cannot parse access token", "");
            a.headers.push(("www-authenticate", "OAuth \"Facebook Platform\" \"invalid_token\"".to_owned()));
            return a;
        }
        let path = head.second.split('?').next().unwrap_or_default();
        let number = format!("/{API_VERSION}/{PHONE_NUMBER_ID}");
        match (head.first.as_str(), path.strip_prefix(number.as_str())) {
            ("GET", Some("")) => {
                self.number_checks.fetch_add(1, Ordering::Relaxed);
                Answer::json(
                    200,
                    json!({"display_phone_number": DISPLAY_NUMBER, "verified_name": "Bench", "id": PHONE_NUMBER_ID})
                        .to_string(),
                )
            }
            ("POST", Some("/messages")) => self.send_message(arrived, &body).await,
            _ => {
                self.other_calls.fetch_add(1, Ordering::Relaxed);
                graph_error(
                    400,
                    100,
                    "Unsupported request - method type: get",
                    "this fake serves only the calls the channel makes",
                )
            }
        }
    }
}

impl Inbound for Meta {
    async fn send(&self, chat: usize, n: u64, seq: u64) -> Result<Instant> {
        let from = wa_id(chat);
        self.wrote.lock().unwrap_or_else(PoisonError::into_inner).insert(from.clone());
        let id = self.next_message.fetch_add(1, Ordering::Relaxed);
        let body = json!({"object": "whatsapp_business_account", "entry": [{"id": "102290129340398", "changes": [{
            "field": "messages",
            "value": {
                "messaging_product": "whatsapp",
                "metadata": {"display_phone_number": DISPLAY_NUMBER, "phone_number_id": PHONE_NUMBER_ID},
                "contacts": [{"profile": {"name": format!("Bench {chat}")}, "wa_id": from}],
                "messages": [{"from": from, "id": format!("wamid.HBgLMTU1NTAxMDBINBOUND{id:012}"),
                              "timestamp": unix_now().to_string(), "type": "text",
                              "text": {"body": format!("bench message {seq} to chat {from} ({n})")}}],
            },
        }]}]})
        .to_string()
        .into_bytes();
        let headers =
            [("content-type", "application/json".to_owned()), ("x-hub-signature-256", sign(APP_SECRET, &body))];
        self.webhook.post(WEBHOOK_PATH, &headers, &body).await
    }

    fn failure(&self) -> Option<String> {
        self.webhook.failure()
    }
}

fn gateway_config(api_root: &str, model_url: &str) -> String {
    let mut config = platform::model_config(model_url);
    config["channels"] = json!({"whatsapp": {
        "accessToken": ACCESS_TOKEN, "appSecret": APP_SECRET, "verifyToken": VERIFY_TOKEN,
        "phoneNumberId": PHONE_NUMBER_ID, "apiRoot": api_root, "apiVersion": API_VERSION, "dmPolicy": "open",
        // 0 disables the inbound limits: a load test is one user flooding per chat.
        "rateLimit": {"perSenderPerMinute": 0, "perChatPerMinute": 0},
    }});
    config.to_string()
}

pub async fn run(args: WhatsappArgs) -> Result<()> {
    let WhatsappArgs { statuses, run: args } = args;
    let listener = TcpListener::bind("127.0.0.1:0").await?;
    let api_root = format!("http://{}", listener.local_addr()?);
    let port = platform::free_port()?;
    let webhook = WebhookClient::new(([127, 0, 0, 1], port).into());
    let (reply_tx, mut reply_rx) = mpsc::channel(65_536);
    let meta = Arc::new(Meta::new(reply_tx, webhook.clone(), statuses));
    let server = tokio::spawn(platform::serve(listener, meta.clone()));

    let mut run = Run::new("whatsapp")?;
    let model_url = run.start_model(args.model_chunks).await?;
    let pid = run.start_gateway(&args, port, &gateway_config(&api_root, &model_url))?;
    eprintln!(
        "whatsapp: gateway {} (pid {pid}), Graph API {api_root}, model {model_url}, state {}",
        args.gateway_bin.display(),
        run.state_path().display()
    );
    // Ready = the number checked and the callback URL verified, as Meta's console does it.
    let verify =
        format!("{WEBHOOK_PATH}?hub.mode=subscribe&hub.verify_token={VERIFY_TOKEN}&hub.challenge=bench0b0b0b0b");
    run.wait_ready("a verified callback URL", async || {
        meta.number_checks.load(Ordering::Relaxed) > 0
            && matches!(webhook.call("GET", &verify, &[], b"").await, Ok((200, text)) if text == "bench0b0b0b0b")
    })
    .await?;

    let mut m = run.measure(meta.as_ref(), &mut reply_rx, &args, pid, || ()).await?;

    let mut r = Report::new("whatsapp", &args.label, &args.run_id);
    r.param("statuses", statuses);
    args.report_params(&mut r, args.gateway_bin.display().to_string());
    let tally = report_replies(&mut r, &mut m, args.messages(), "webhook POST → /messages");
    let load = |c: &AtomicU64| c.load(Ordering::Relaxed);
    let (posts, refused) = (load(&webhook.posts), load(&webhook.refused));
    let (sends, rejected, refused_calls) = (load(&meta.sends), load(&meta.rejected_sends), load(&meta.refused_calls));
    let status_posts = load(&meta.status_posts);
    r.figure("webhook_posts", posts)
        .figure("status_posts", status_posts)
        .figure("webhook_refused", refused)
        .figure("send_calls", sends)
        .figure("sends_rejected", rejected);
    r.line(format!(
        "webhook (warm-up included): {posts} signed POSTs ({status_posts} of them statuses), {refused} not answered 2xx; /messages: {sends} calls, {rejected} rejected"
    ));
    report_memory(&mut r, &m.out, tally.rate);
    r.cpu(m.before.as_ref(), m.after.as_ref(), m.out.answered, "message", m.out.wall, m.client_cpu_s);
    r.emit(args.json);
    server.abort();
    run.finish(args.keep_state);
    tally.exactly_once()?;
    let mut trouble = Vec::new();
    if refused > 0 {
        trouble.push(format!("{refused} webhook POSTs refused ({})", webhook.failure().unwrap_or_default()));
    }
    if rejected > 0 {
        trouble.push(format!("{rejected} sends rejected by the Graph API"));
    }
    if refused_calls > 0 {
        trouble.push(format!("{refused_calls} Graph calls with a wrong token"));
    }
    if !trouble.is_empty() {
        bail!("{}", trouble.join("; "));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn wa_ids_map_back_to_their_chat() {
        assert_eq!(chat_of(&wa_id(99)), Some(99));
        assert_eq!(chat_of("15550783881"), None);
    }

    #[test]
    fn the_signature_is_hex_hmac_of_the_raw_body() {
        let sig = sign("secret", b"{}");
        assert!(sig.starts_with("sha256=") && sig.len() == 7 + 64, "{sig}");
    }

    #[tokio::test]
    async fn a_send_outside_the_window_or_malformed_is_rejected() {
        let (tx, mut rx) = mpsc::channel(4);
        let meta = Meta::new(tx, WebhookClient::new(([127, 0, 0, 1], 9).into()), 0);
        let send = |to: &str| {
            json!({"messaging_product": "whatsapp", "to": to, "type": "text", "text": {"body": "hi"}}).to_string()
        };
        let closed = meta.send_message(Instant::now(), send(&wa_id(1)).as_bytes()).await;
        assert_eq!((closed.status, closed.body.contains("131047")), (400, true));
        meta.wrote.lock().unwrap().insert(wa_id(1));
        assert_eq!(meta.send_message(Instant::now(), send(&wa_id(1)).as_bytes()).await.status, 200);
        assert_eq!(rx.recv().await.unwrap().chat, Some(1));
        let bad = json!({"to": wa_id(1), "type": "text", "text": {"body": "hi"}}).to_string();
        assert_eq!(meta.send_message(Instant::now(), bad.as_bytes()).await.status, 400);
    }
}
